/* Codec: topics, enum names, event round trips, malformed payloads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vigie/codec.h"
#include "vigie/error.h"

static void test_ids(void **state)
{
	char long_id[VIGIE_ID_MAX + 2];

	(void)state;
	assert_true(vigie_id_valid("louvre"));
	assert_true(vigie_id_valid("apollo-1_b"));
	assert_false(vigie_id_valid(""));
	assert_false(vigie_id_valid(NULL));
	assert_false(vigie_id_valid("Louvre"));
	assert_false(vigie_id_valid("a/b"));
	assert_false(vigie_id_valid("a+"));
	assert_false(vigie_id_valid("#"));
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[VIGIE_ID_MAX] = '\0';
	assert_true(vigie_id_valid(long_id));
	long_id[VIGIE_ID_MAX] = 'a';
	long_id[VIGIE_ID_MAX + 1] = '\0';
	assert_false(vigie_id_valid(long_id));
}

static void test_topic_round_trip(void **state)
{
	static const struct {
		enum vigie_topic_type type;
		const char *a, *b, *expect;
	} cases[] = {
		{VIGIE_TOPIC_EVENT, "louvre", "n1",
		 "vigie/v1/site/louvre/node/n1/event"},
		{VIGIE_TOPIC_STATE, "louvre", "n1",
		 "vigie/v1/site/louvre/node/n1/state"},
		{VIGIE_TOPIC_HEARTBEAT, "louvre", "n1",
		 "vigie/v1/site/louvre/node/n1/heartbeat"},
		{VIGIE_TOPIC_RECEIPT, "louvre", "n1",
		 "vigie/v1/relay/louvre/receipt/n1"},
		{VIGIE_TOPIC_ALERT, "louvre", NULL,
		 "vigie/v1/relay/louvre/alert"},
		{VIGIE_TOPIC_STATUS, "louvre", NULL, "vigie/v1/status/louvre"},
		{VIGIE_TOPIC_INCIDENT, "inc-1", NULL,
		 "vigie/v1/incident/inc-1"},
		{VIGIE_TOPIC_DISPATCH, "p1", NULL, "vigie/v1/post/p1/dispatch"},
		{VIGIE_TOPIC_ACK, "p1", NULL, "vigie/v1/post/p1/ack"},
		{VIGIE_TOPIC_POST_STATE, "p1", NULL, "vigie/v1/post/p1/state"},
		{VIGIE_TOPIC_PATTERN, "pat-1", NULL, "vigie/v1/pattern/pat-1"},
	};
	char buf[VIGIE_TOPIC_MAX];
	struct vigie_topic t;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(vigie_topic_build(buf, sizeof(buf),
						   cases[i].type, cases[i].a,
						   cases[i].b),
				 0);
		assert_string_equal(buf, cases[i].expect);
		assert_int_equal(vigie_topic_parse(buf, &t), 0);
		assert_int_equal(t.type, cases[i].type);
		if (cases[i].b) {
			assert_string_equal(t.site, cases[i].a);
			assert_string_equal(t.node, cases[i].b);
		}
	}
}

static void test_topic_rejects(void **state)
{
	static const char *const bad[] = {
		"",
		"vigie",
		"vigie/v2/site/a/node/b/event",
		"vigie/v1/site/A/node/b/event",
		"vigie/v1/site/a/node/b/evil",
		"vigie/v1/site/a/node/b/event/x",
		"vigie/v1/site//node/b/event",
		"vigie/v1/relay/a/receipt",
		"vigie/v1/post/p1/other",
		"vigie/v1/incident/",
		"other/v1/status/a",
	};
	char buf[16];
	struct vigie_topic t;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(vigie_topic_parse(bad[i], &t), VIGIE_EINVAL);
	assert_int_equal(vigie_topic_build(buf, sizeof(buf), VIGIE_TOPIC_EVENT,
					   "louvre", "n1"),
			 VIGIE_ETOOBIG);
	assert_int_equal(vigie_topic_build(buf, sizeof(buf), VIGIE_TOPIC_EVENT,
					   "lou/vre", "n1"),
			 VIGIE_EINVAL);
	assert_int_equal(vigie_topic_build(buf, sizeof(buf), VIGIE_TOPIC_EVENT,
					   "a", NULL),
			 VIGIE_EINVAL);
}

static void test_enum_names(void **state)
{
	int v;

	(void)state;
	assert_string_equal(
		vigie_kind_name(VIGIE__V1__EVENT_KIND__KIND_GLASS_BREAK),
		"glass_break");
	assert_string_equal(vigie_kind_name(9999), "unknown");
	assert_string_equal(
		vigie_state_name(VIGIE__V1__EVENT_STATE__STATE_RESTORE),
		"restore");
	assert_int_equal(vigie_kind_parse("glass-break", &v), 0);
	assert_int_equal(v, VIGIE__V1__EVENT_KIND__KIND_GLASS_BREAK);
	assert_int_equal(vigie_kind_parse("KIND_DURESS", &v), 0);
	assert_int_equal(v, VIGIE__V1__EVENT_KIND__KIND_DURESS);
	assert_int_equal(vigie_kind_parse("Display_Case", &v), 0);
	assert_int_equal(v, VIGIE__V1__EVENT_KIND__KIND_DISPLAY_CASE);
	assert_int_equal(vigie_kind_parse("unspecified", &v), VIGIE_EINVAL);
	assert_int_equal(vigie_kind_parse("", &v), VIGIE_EINVAL);
	assert_int_equal(vigie_kind_parse("nonsense", &v), VIGIE_EINVAL);
	assert_int_equal(vigie_state_parse("trouble", &v), 0);
	assert_int_equal(v, VIGIE__V1__EVENT_STATE__STATE_TROUBLE);
	/* Every kind's name parses back to itself. */
	for (unsigned i = 1; i < vigie__v1__event_kind__descriptor.n_values;
	     i++) {
		int kind = vigie__v1__event_kind__descriptor.values[i].value;

		assert_int_equal(vigie_kind_parse(vigie_kind_name(kind), &v),
				 0);
		assert_int_equal(v, kind);
	}
}

static void test_event_round_trip(void **state)
{
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;
	Vigie__V1__Attribute a = VIGIE__V1__ATTRIBUTE__INIT;
	Vigie__V1__Attribute *ap = &a;
	Vigie__V1__SignedEvent *se;
	Vigie__V1__Event *out;
	uint8_t sig[64];
	uint8_t *buf;
	size_t len;
	char line[512];

	(void)state;
	memset(sig, 0xab, sizeof(sig));
	ev.site = "louvre";
	ev.node = "apollo-1";
	ev.boot_id = 1795383729;
	ev.seq = 42;
	ev.time_us = 1760862000123456ULL;
	ev.kind = VIGIE__V1__EVENT_KIND__KIND_DISPLAY_CASE;
	ev.state = VIGIE__V1__EVENT_STATE__STATE_ALARM;
	ev.zone = "apollo-gallery";
	ev.sensor = "case-7";
	ev.text = "case glass cut";
	a.key = "tool";
	a.value = "disc-cutter";
	ev.attributes = &ap;
	ev.n_attributes = 1;
	assert_int_equal(
		vigie_event_encode(&ev, sig, sizeof(sig), "k1", &buf, &len), 0);
	assert_int_equal(vigie_event_decode(buf, len, &se, &out), 0);
	assert_string_equal(out->site, "louvre");
	assert_int_equal(out->seq, 42);
	assert_int_equal(out->boot_id, 1795383729);
	assert_int_equal(out->time_us, 1760862000123456ULL);
	assert_int_equal(out->kind, VIGIE__V1__EVENT_KIND__KIND_DISPLAY_CASE);
	assert_int_equal(out->n_attributes, 1);
	assert_string_equal(out->attributes[0]->value, "disc-cutter");
	assert_int_equal(se->signature.len, 64);
	assert_string_equal(se->key_id, "k1");
	vigie_event_format(out, line, sizeof(line));
	assert_non_null(strstr(
		line, "louvre/apollo-1 #1795383729.42 display_case alarm"));
	assert_non_null(strstr(line, "tool=disc-cutter"));
	/* A short buffer truncates, never overflows. */
	vigie_event_format(out, line, 8);
	assert_int_equal(strlen(line), 7);
	vigie_event_free(se, out);
	free(buf);
}

static void test_decode_garbage(void **state)
{
	Vigie__V1__SignedEvent *se = NULL;
	Vigie__V1__Event *ev = NULL;
	uint8_t junk[512];
	uint32_t x = 12345;

	(void)state;
	/* Deterministic noise: decoders must refuse, never crash. */
	for (int round = 0; round < 2000; round++) {
		size_t len = (size_t)(x % sizeof(junk));

		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			junk[i] = (uint8_t)(x >> 16);
		}
		if (vigie_event_decode(junk, len, &se, &ev) == 0)
			vigie_event_free(se, ev);
	}
	/* A SignedEvent whose inner bytes are not an Event. */
	{
		Vigie__V1__SignedEvent outer = VIGIE__V1__SIGNED_EVENT__INIT;
		uint8_t inner[] = {0xff, 0xff, 0xff};
		uint8_t *buf;
		size_t len;

		outer.event.data = inner;
		outer.event.len = sizeof(inner);
		assert_int_equal(vigie_pack(&outer.base, &buf, &len), 0);
		assert_int_equal(vigie_event_decode(buf, len, &se, &ev),
				 VIGIE_EDECODE);
		free(buf);
	}
	assert_int_equal(
		vigie_event_decode(junk, VIGIE_MAX_PAYLOAD + 1, &se, &ev),
		VIGIE_ETOOBIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_topic_round_trip),
		cmocka_unit_test(test_topic_rejects),
		cmocka_unit_test(test_enum_names),
		cmocka_unit_test(test_event_round_trip),
		cmocka_unit_test(test_decode_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
