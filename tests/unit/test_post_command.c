/* vigie-post's stdin commands, and the names and payloads of acks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "post.h"
#include "vigie/error.h"

static int parse(const char *line, struct post_cmd *cmd, char *err)
{
	return vigie__postcmd_parse(line, strlen(line), cmd, err, 200);
}

static void test_ack(void **state)
{
	struct post_cmd cmd;
	char err[200];

	(void)state;
	assert_int_equal(parse("ack louvre-17-l2\n", &cmd, err), 0);
	assert_int_equal(cmd.type, POST_CMD_ACK);
	assert_string_equal(cmd.id, "louvre-17-l2");
	assert_string_equal(cmd.by, "");
	/* The name is the rest of the line, spaces inside kept. */
	assert_int_equal(
		parse("  ack\tlouvre-17-l2   Jeanne  Dupont \r\n", &cmd, err),
		0);
	assert_string_equal(cmd.by, "Jeanne  Dupont");
	assert_int_equal(parse("ack x-l1 Éloïse", &cmd, err), 0);
	assert_string_equal(cmd.by, "Éloïse");
}

static void expect_error(const char *line, const char *needle)
{
	struct post_cmd cmd;
	char err[200] = "";

	assert_int_equal(parse(line, &cmd, err), VIGIE_EINVAL);
	if (!strstr(err, needle))
		fail_msg("\"%s\": error \"%s\" lacks \"%s\"", line, err,
			 needle);
}

static void test_errors(void **state)
{
	char long_id[POST_ID_MAX + 10];
	char long_name[POST_NAME_MAX + 20];
	struct post_cmd cmd;
	char err[200];

	(void)state;
	expect_error("ack", "usage");
	expect_error("ack   \n", "usage");
	expect_error("ack bad\x1bid", "dispatch id");
	expect_error("ack x-l1 bad\x01name", "name");
	expect_error("ack x-l1 \xff\xfe", "name");
	expect_error("acknowledge x", "unknown command");
	expect_error("list all", "takes no argument");
	expect_error("quit now", "takes no argument");
	memset(long_id, 'a', sizeof(long_id) - 1);
	memcpy(long_id, "ack ", 4);
	long_id[sizeof(long_id) - 1] = '\0';
	expect_error(long_id, "longer than");
	strcpy(long_name, "ack x-l1 ");
	memset(long_name + 9, 'n', sizeof(long_name) - 10);
	long_name[sizeof(long_name) - 1] = '\0';
	expect_error(long_name, "longer than");
	/* A NUL inside the line. */
	assert_int_equal(
		vigie__postcmd_parse("ack x\0y", 7, &cmd, err, sizeof(err)),
		VIGIE_EINVAL);
}

static void test_others(void **state)
{
	struct post_cmd cmd;
	char err[200];

	(void)state;
	assert_int_equal(parse("list", &cmd, err), 0);
	assert_int_equal(cmd.type, POST_CMD_LIST);
	assert_int_equal(parse("stats\r\n", &cmd, err), 0);
	assert_int_equal(cmd.type, POST_CMD_STATS);
	assert_int_equal(parse("quit", &cmd, err), 0);
	assert_int_equal(cmd.type, POST_CMD_QUIT);
	assert_int_equal(parse("exit", &cmd, err), 0);
	assert_int_equal(cmd.type, POST_CMD_QUIT);
	assert_int_equal(parse("", &cmd, err), 0);
	assert_int_equal(cmd.type, POST_CMD_NONE);
	assert_int_equal(parse("   \t\r\n", &cmd, err), 0);
	assert_int_equal(cmd.type, POST_CMD_NONE);
	assert_int_equal(parse("# a comment", &cmd, err), 0);
	assert_int_equal(cmd.type, POST_CMD_NONE);
}

static void test_incident_from_id(void **state)
{
	char out[POST_ID_MAX + 1];
	char tiny[4];

	(void)state;
	assert_int_equal(vigie__postmsg_incident_from_id("louvre-17-l2", out,
							 sizeof(out)),
			 0);
	assert_string_equal(out, "louvre-17");
	/* Only the last "-l<digits>" goes. */
	assert_int_equal(vigie__postmsg_incident_from_id("lobby-l3-l12", out,
							 sizeof(out)),
			 0);
	assert_string_equal(out, "lobby-l3");
	assert_int_equal(vigie__postmsg_incident_from_id("louvre-lobby", out,
							 sizeof(out)),
			 VIGIE_EINVAL);
	assert_int_equal(
		vigie__postmsg_incident_from_id("x-l", out, sizeof(out)),
		VIGIE_EINVAL);
	assert_int_equal(
		vigie__postmsg_incident_from_id("x-l2a", out, sizeof(out)),
		VIGIE_EINVAL);
	assert_int_equal(
		vigie__postmsg_incident_from_id("-l2", out, sizeof(out)),
		VIGIE_EINVAL);
	assert_int_equal(
		vigie__postmsg_incident_from_id("plain", out, sizeof(out)),
		VIGIE_EINVAL);
	assert_int_equal(vigie__postmsg_incident_from_id("abcdef-l1", tiny,
							 sizeof(tiny)),
			 VIGIE_ETOOBIG);
	assert_int_equal(
		vigie__postmsg_incident_from_id(NULL, out, sizeof(out)),
		VIGIE_EINVAL);
}

static void test_names(void **state)
{
	char long_name[POST_NAME_MAX + 2];

	(void)state;
	assert_true(vigie__postmsg_operator_valid("Dupont"));
	assert_true(vigie__postmsg_operator_valid("Brigadier J. Dupont"));
	assert_true(vigie__postmsg_operator_valid("Zoë Ørsted"));
	assert_false(vigie__postmsg_operator_valid(""));
	assert_false(vigie__postmsg_operator_valid("   "));
	assert_false(vigie__postmsg_operator_valid(NULL));
	assert_false(vigie__postmsg_operator_valid("a\tb"));
	assert_false(vigie__postmsg_operator_valid("a\x1b[2Jb"));
	assert_false(vigie__postmsg_operator_valid("a\xc2\x9b"
						   "b"));
	assert_false(vigie__postmsg_operator_valid("\xff"));
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[POST_NAME_MAX] = '\0';
	assert_true(vigie__postmsg_operator_valid(long_name));
	long_name[POST_NAME_MAX] = 'n';
	long_name[POST_NAME_MAX + 1] = '\0';
	assert_false(vigie__postmsg_operator_valid(long_name));

	assert_true(vigie__postmsg_id_valid("louvre-17-l2"));
	assert_true(vigie__postmsg_id_valid("Louvre.17:x_y"));
	assert_false(vigie__postmsg_id_valid(""));
	assert_false(vigie__postmsg_id_valid("a b"));
	assert_false(vigie__postmsg_id_valid("a/b"));
	assert_false(vigie__postmsg_id_valid("a\"b"));
}

static void test_payloads(void **state)
{
	Vigie__V1__Ack *ack;
	Vigie__V1__PostState *st;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(vigie__postmsg_ack_pack("pp-paris", "louvre-17-l2",
						 "louvre-17", "Dupont", 42,
						 &buf, &len),
			 0);
	ack = vigie__v1__ack__unpack(NULL, len, buf);
	free(buf);
	assert_non_null(ack);
	assert_string_equal(ack->dispatch, "louvre-17-l2");
	assert_string_equal(ack->incident, "louvre-17");
	assert_string_equal(ack->post, "pp-paris");
	assert_string_equal(ack->by, "Dupont");
	assert_string_equal(ack->source, "post");
	assert_int_equal(ack->time_us, 42);
	vigie__v1__ack__free_unpacked(ack, NULL);

	assert_int_equal(
		vigie__postmsg_state_pack("pp-paris",
					  VIGIE__V1__POST_STATUS__POST_OFFLINE,
					  "Préfecture", "lwt", 7, &buf, &len),
		0);
	st = vigie__v1__post_state__unpack(NULL, len, buf);
	free(buf);
	assert_non_null(st);
	assert_int_equal(st->status, VIGIE__V1__POST_STATUS__POST_OFFLINE);
	assert_string_equal(st->reason, "lwt");
	assert_string_equal(st->name, "Préfecture");
	assert_string_equal(st->version, VIGIE_VERSION);
	vigie__v1__post_state__free_unpacked(st, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ack),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_others),
		cmocka_unit_test(test_incident_from_id),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_payloads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
