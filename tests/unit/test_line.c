/* The event line format of the node's socket and scenario files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "node.h"
#include "vigie/error.h"

static int parse(const char *s, struct node_event *ev, char *err)
{
	return vigie__line_parse(s, strlen(s), ev, err, 200);
}

static void test_full_line(void **state)
{
	struct node_event ev;
	char err[200];

	(void)state;
	assert_int_equal(
		parse("kind=glass_break state=alarm zone=apollo-gallery "
		      "sensor=gb-3 text=\"window \\\"cut\\\"\" "
		      "tool=angle-grinder "
		      "entry=window time=1760862000.5 code=E130\r\n",
		      &ev, err),
		0);
	assert_int_equal(ev.kind, VIGIE__V1__EVENT_KIND__KIND_GLASS_BREAK);
	assert_int_equal(ev.state, VIGIE__V1__EVENT_STATE__STATE_ALARM);
	assert_string_equal(ev.zone, "apollo-gallery");
	assert_string_equal(ev.sensor, "gb-3");
	assert_string_equal(ev.text, "window \"cut\"");
	assert_string_equal(ev.code, "E130");
	assert_int_equal(ev.time_us, 1760862000500000ULL);
	assert_int_equal(ev.n_attrs, 2);
	assert_string_equal(ev.attrs[0].key, "tool");
	assert_string_equal(ev.attrs[1].value, "window");
}

static void test_defaults(void **state)
{
	struct node_event ev;
	char err[200];

	(void)state;
	assert_int_equal(parse("  kind=duress  ", &ev, err), 0);
	assert_int_equal(ev.state, VIGIE__V1__EVENT_STATE__STATE_ALARM);
	assert_int_equal(ev.time_us, 0);
	assert_int_equal(ev.n_attrs, 0);
}

static void expect_error(const char *line, int rc, const char *needle)
{
	struct node_event ev;
	char err[200] = "";

	assert_int_equal(parse(line, &ev, err), rc);
	if (!strstr(err, needle))
		fail_msg("line <%s>: error <%s> lacks <%s>", line, err, needle);
}

static void test_errors(void **state)
{
	char big[NODE_LINE_MAX + 10];

	(void)state;
	expect_error("", VIGIE_EINVAL, "kind: missing");
	expect_error("state=alarm", VIGIE_EINVAL, "kind: missing");
	expect_error("kind=teleport", VIGIE_EINVAL,
		     "unknown kind \"teleport\"");
	expect_error("kind=motion state=panic", VIGIE_EINVAL, "unknown state");
	expect_error("kind=motion zone=Gallery", VIGIE_EINVAL, "not an id");
	expect_error("kind=motion text=\"open", VIGIE_EINVAL, "unterminated");
	expect_error("kind=motion text=\"a\"b", VIGIE_EINVAL,
		     "after closing quote");
	expect_error("kind=motion text=\"\\q\"", VIGIE_EINVAL,
		     "unknown escape");
	expect_error("kind=motion Tool=x", VIGIE_EINVAL,
		     "invalid character 'T'");
	expect_error("kind=motion =x", VIGIE_EINVAL, "empty key");
	expect_error("kind=motion loose", VIGIE_EINVAL, "expected key=value");
	expect_error("kind=motion time=1760862000000", VIGIE_EINVAL,
		     "not Unix seconds");
	expect_error("kind=motion a=\x01", VIGIE_EINVAL, "control character");
	memset(big, 'a', sizeof(big));
	memcpy(big, "kind=motion x=", 14);
	big[sizeof(big) - 1] = '\0';
	expect_error(big, VIGIE_ETOOBIG, "line longer than");
	{
		char many[NODE_LINE_MAX];
		size_t pos =
			(size_t)snprintf(many, sizeof(many), "kind=motion");

		for (int i = 0; i <= NODE_ATTR_MAX; i++)
			pos += (size_t)snprintf(many + pos, sizeof(many) - pos,
						" k%d=v", i);
		expect_error(many, VIGIE_ETOOBIG, "more than");
	}
	{
		struct node_event ev;
		char err[200];
		const char nul[] = "kind=motion\0zone=x";

		assert_int_equal(vigie__line_parse(nul, sizeof(nul) - 1, &ev,
						   err, sizeof(err)),
				 VIGIE_EINVAL);
	}
}

static void test_random_lines_never_crash(void **state)
{
	static const char alphabet[] = "kind=motionzone \"\\\r\n\t=ab-_9Z#\x01";
	struct node_event ev;
	char line[300], err[200];
	uint32_t x = 7;

	(void)state;
	for (int round = 0; round < 20000; round++) {
		size_t len;

		x = x * 1664525u + 1013904223u;
		len = (x >> 8) % sizeof(line);
		for (size_t i = 0; i < len; i++) {
			x = x * 1664525u + 1013904223u;
			line[i] = alphabet[(x >> 16) % (sizeof(alphabet) - 1)];
		}
		(void)vigie__line_parse(line, len, &ev, err, sizeof(err));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_line),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_random_lines_never_crash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
