/* Unit tests of lib/config.c: the tree, every getter, and the exact text of
 * each kind of error, since operators read those messages to fix files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vigie/config.h"
#include "vigie/error.h"

static const char good_yaml[] =
	"site: louvre-denon\n"                    /* 1 */
	"node: gw-01\n"                           /* 2 */
	"description: \"Aile Denon, niveau 1\"\n" /* 3 */
	"brokers:\n"                              /* 4 */
	"  primary:\n"                            /* 5 */
	"    host: 10.0.0.5\n"                    /* 6 */
	"    port: 8883\n"                        /* 7 */
	"    tls: Yes\n"                          /* 8 */
	"  backup:\n"                             /* 9 */
	"    host: 10.0.0.6\n"                    /* 10 */
	"heartbeat: 5s\n"                         /* 11 */
	"retry: 1500\n"                           /* 12 */
	"loss_ratio: 0.25\n"                      /* 13 */
	"topics: [alarms, doors]\n"               /* 14 */
	"extra: single\n"                         /* 15 */
	"unset:\n"                                /* 16 */
	"zones:\n"                                /* 17 */
	"  - id: salle-711\n"                     /* 18 */
	"    name: Joconde\n"                     /* 19 */
	"    floor: 1\n"                          /* 20 */
	"    sensors: [pir-1, door-2]\n"          /* 21 */
	"  - id: salle-712\n"                     /* 22 */
	"    sensors:\n"                          /* 23 */
	"      - pir-3\n"                         /* 24 */
	"      - vib-4\n";                        /* 25 */

static struct vigie_conf *parse_ok(const char *text)
{
	struct vigie_conf *c = NULL;
	int rc = vigie_conf_parse(text, strlen(text), "node.yaml", &c);

	if (rc)
		print_error("unexpected: %s\n", vigie_conf_error(c));
	assert_int_equal(rc, 0);
	assert_non_null(c);
	assert_null(vigie_conf_error(c));
	return c;
}

/* expect_parse_error: parsing fails with exactly `msg`. */
static void expect_parse_error(const char *text, const char *msg)
{
	struct vigie_conf *c = NULL;

	assert_int_equal(vigie_conf_parse(text, strlen(text), "node.yaml", &c),
			 VIGIE_ECONFIG);
	assert_non_null(c);
	assert_string_equal(vigie_conf_error(c), msg);
	vigie_conf_free(c);
}

static const struct vigie_conf_node *sub(const struct vigie_conf_node *map,
					 const char *key)
{
	const struct vigie_conf_node *n = vigie_conf_get(map, key);

	assert_non_null(n);
	return n;
}

static void test_good_config(void **state)
{
	static const char *const top_keys[] = {
		"site",      "node",  "description", "brokers",
		"heartbeat", "retry", "loss_ratio",  "topics",
		"extra",     "unset", "zones",       NULL};
	static const char *const zone_keys[] = {"id", "name", "floor",
						"sensors", NULL};
	struct vigie_conf *c = parse_ok(good_yaml);
	const struct vigie_conf_node *root = vigie_conf_root(c);
	const struct vigie_conf_node *brokers = NULL;
	const struct vigie_conf_node *primary = NULL;
	const struct vigie_conf_node *backup = NULL;
	const struct vigie_conf_node *zones = NULL;
	const struct vigie_conf_node *tls = NULL;
	const char *s = NULL;
	const char **list = NULL;
	size_t count = 0;
	uint64_t u = 0;
	double d = 0;
	bool b = false;

	(void)state;
	assert_string_equal(vigie_conf_file(c), "node.yaml");
	assert_true(vigie_conf_is_map(root));
	assert_string_equal(vigie_conf_path(root), "");
	assert_int_equal(vigie_conf_expect_map(c, root, top_keys), 0);

	assert_int_equal(
		vigie_conf_id(c, root, "site", VIGIE_CONF_REQUIRED, &s), 0);
	assert_string_equal(s, "louvre-denon");
	assert_int_equal(
		vigie_conf_id(c, root, "node", VIGIE_CONF_REQUIRED, &s), 0);
	assert_string_equal(s, "gw-01");
	assert_int_equal(
		vigie_conf_str(c, root, "description", VIGIE_CONF_REQUIRED, &s),
		0);
	assert_string_equal(s, "Aile Denon, niveau 1");

	assert_int_equal(vigie_conf_section(c, root, "brokers", false,
					    VIGIE_CONF_REQUIRED, &brokers),
			 0);
	assert_int_equal(vigie_conf_section(c, brokers, "primary", false,
					    VIGIE_CONF_REQUIRED, &primary),
			 0);
	assert_int_equal(vigie_conf_section(c, brokers, "backup", false,
					    VIGIE_CONF_OPTIONAL, &backup),
			 0);
	assert_non_null(backup);
	assert_int_equal(
		vigie_conf_str(c, primary, "host", VIGIE_CONF_REQUIRED, &s), 0);
	assert_string_equal(s, "10.0.0.5");
	assert_int_equal(vigie_conf_uint(c, primary, "port", 1, 65535,
					 VIGIE_CONF_REQUIRED, &u),
			 0);
	assert_int_equal(u, 8883);
	assert_int_equal(vigie_conf_line(sub(primary, "port")), 7);
	assert_string_equal(vigie_conf_path(sub(primary, "port")),
			    "brokers.primary.port");
	assert_int_equal(
		vigie_conf_bool(c, primary, "tls", VIGIE_CONF_REQUIRED, &b), 0);
	assert_true(b);
	/* Optional and absent: untouched, no error. */
	u = 1883;
	assert_int_equal(vigie_conf_uint(c, backup, "port", 1, 65535,
					 VIGIE_CONF_OPTIONAL, &u),
			 0);
	assert_int_equal(u, 1883);
	b = true;
	assert_int_equal(
		vigie_conf_bool(c, backup, "tls", VIGIE_CONF_OPTIONAL, &b), 0);
	assert_true(b);
	assert_int_equal(vigie_conf_section(c, brokers, "tertiary", false,
					    VIGIE_CONF_OPTIONAL, &tls),
			 0);
	assert_null(tls);

	assert_int_equal(vigie_conf_duration(c, root, "heartbeat", 1000,
					     3600000, VIGIE_CONF_REQUIRED, &u),
			 0);
	assert_int_equal(u, 5000);
	assert_int_equal(vigie_conf_duration(c, root, "retry", 0, UINT64_MAX,
					     VIGIE_CONF_REQUIRED, &u),
			 0);
	assert_int_equal(u, 1500);
	assert_int_equal(vigie_conf_double(c, root, "loss_ratio", 0.0, 1.0,
					   VIGIE_CONF_REQUIRED, &d),
			 0);
	assert_true(d > 0.2499 && d < 0.2501);

	assert_int_equal(vigie_conf_str_list(c, root, "topics",
					     VIGIE_CONF_REQUIRED, &list,
					     &count),
			 0);
	assert_int_equal(count, 2);
	assert_string_equal(list[0], "alarms");
	assert_string_equal(list[1], "doors");
	free(list);
	assert_int_equal(vigie_conf_str_list(c, root, "extra",
					     VIGIE_CONF_REQUIRED, &list,
					     &count),
			 0);
	assert_int_equal(count, 1);
	assert_string_equal(list[0], "single");
	free(list);

	/* "unset:" is YAML's empty value: absent when optional. */
	s = "default";
	assert_int_equal(
		vigie_conf_str(c, root, "unset", VIGIE_CONF_OPTIONAL, &s), 0);
	assert_string_equal(s, "default");
	assert_non_null(vigie_conf_get(root, "unset"));

	assert_int_equal(vigie_conf_section(c, root, "zones", true,
					    VIGIE_CONF_REQUIRED, &zones),
			 0);
	assert_true(vigie_conf_is_seq(zones));
	assert_int_equal(vigie_conf_seq_len(zones), 2);
	for (size_t i = 0; i < vigie_conf_seq_len(zones); i++) {
		const struct vigie_conf_node *z = vigie_conf_seq_at(zones, i);

		assert_int_equal(vigie_conf_expect_map(c, z, zone_keys), 0);
		assert_int_equal(
			vigie_conf_id(c, z, "id", VIGIE_CONF_REQUIRED, &s), 0);
	}
	u = 99;
	assert_int_equal(vigie_conf_uint(c, vigie_conf_seq_at(zones, 1),
					 "floor", 0, 10, VIGIE_CONF_OPTIONAL,
					 &u),
			 0);
	assert_int_equal(u, 99);
	assert_null(vigie_conf_error(c));
	vigie_conf_free(c);
}

static void test_map_order_and_inspection(void **state)
{
	struct vigie_conf *c = parse_ok(good_yaml);
	const struct vigie_conf_node *root = vigie_conf_root(c);
	const struct vigie_conf_node *primary =
		sub(sub(root, "brokers"), "primary");

	(void)state;
	assert_int_equal(vigie_conf_map_len(root), 11);
	assert_string_equal(vigie_conf_map_key(root, 0), "site");
	assert_string_equal(vigie_conf_map_key(root, 3), "brokers");
	assert_string_equal(vigie_conf_map_key(root, 10), "zones");
	assert_null(vigie_conf_map_key(root, 11));
	assert_null(vigie_conf_map_value(root, 11));
	assert_int_equal(vigie_conf_map_len(primary), 3);
	assert_string_equal(vigie_conf_map_key(primary, 2), "tls");
	assert_string_equal(vigie_conf_scalar(vigie_conf_map_value(primary, 2)),
			    "Yes");
	assert_true(vigie_conf_is_scalar(vigie_conf_map_value(primary, 2)));
	assert_null(vigie_conf_scalar(primary));
	assert_false(vigie_conf_is_seq(primary));
	/* Shape-specific accessors on the wrong shape answer "nothing". */
	assert_int_equal(vigie_conf_seq_len(primary), 0);
	assert_null(vigie_conf_seq_at(primary, 0));
	assert_int_equal(vigie_conf_map_len(sub(root, "topics")), 0);
	assert_null(vigie_conf_get(sub(root, "site"), "x"));
	vigie_conf_free(c);
}

static void test_nested_paths(void **state)
{
	struct vigie_conf *c = parse_ok(good_yaml);
	const struct vigie_conf_node *zones = sub(vigie_conf_root(c), "zones");
	const struct vigie_conf_node *z1 = vigie_conf_seq_at(zones, 1);
	const struct vigie_conf_node *sensors = sub(z1, "sensors");
	const struct vigie_conf_node *s0 = vigie_conf_seq_at(sensors, 0);
	const struct vigie_conf_node *t1 =
		vigie_conf_seq_at(sub(vigie_conf_root(c), "topics"), 1);

	(void)state;
	assert_string_equal(vigie_conf_path(zones), "zones");
	assert_string_equal(vigie_conf_path(z1), "zones[1]");
	assert_string_equal(vigie_conf_path(sensors), "zones[1].sensors");
	assert_string_equal(vigie_conf_path(s0), "zones[1].sensors[0]");
	assert_string_equal(vigie_conf_scalar(s0), "pir-3");
	assert_int_equal(vigie_conf_line(s0), 24);
	assert_int_equal(vigie_conf_line(z1), 22);
	assert_string_equal(vigie_conf_path(t1), "topics[1]");
	/* Cached: the same string twice. */
	assert_ptr_equal(vigie_conf_path(s0), vigie_conf_path(s0));
	vigie_conf_free(c);

	c = parse_ok("- [a, [b, c]]\n- {k: [x]}\n");
	assert_string_equal(
		vigie_conf_path(vigie_conf_seq_at(
			vigie_conf_seq_at(
				vigie_conf_seq_at(vigie_conf_root(c), 0), 1),
			1)),
		"[0][1][1]");
	assert_string_equal(
		vigie_conf_path(vigie_conf_seq_at(
			sub(vigie_conf_seq_at(vigie_conf_root(c), 1), "k"), 0)),
		"[1].k[0]");
	vigie_conf_free(c);
}

static void test_syntax_error(void **state)
{
	(void)state;
	expect_parse_error("site: a\nnode: [1, 2\n",
			   "node.yaml:3: YAML syntax error: did not find "
			   "expected ',' or ']' (while parsing a flow "
			   "sequence)");
	expect_parse_error("site: a\n  node: b\n",
			   "node.yaml:2: YAML syntax error: mapping values are "
			   "not allowed in this context");
	expect_parse_error("a: \"unterminated\n",
			   "node.yaml:2: YAML syntax error: found unexpected "
			   "end of stream (while scanning a quoted scalar)");
	/* The reader reports a byte offset; the line is counted from it. */
	expect_parse_error("a: b\n\xc3\x28: 1\n",
			   "node.yaml:2: YAML syntax error: invalid trailing "
			   "UTF-8 octet (byte 6)");
}

static void test_structure_errors(void **state)
{
	(void)state;
	expect_parse_error("site: a\nzones:\n  - id: x\n    id: y\n",
			   "node.yaml:4: zones[0].id: duplicate key");
	expect_parse_error("a: 1\n---\nb: 2\n",
			   "node.yaml:2: more than one YAML document (a "
			   "configuration file holds one)");
	expect_parse_error("base: &b 1\nport: *b\n",
			   "node.yaml:2: port: YAML aliases (*b) are not "
			   "supported; write the value out");
	expect_parse_error("hosts:\n  - &h a\n  - *h\n",
			   "node.yaml:3: hosts[1]: YAML aliases (*h) are not "
			   "supported; write the value out");
	expect_parse_error("? [a]\n: 1\n", "node.yaml:1: a key must be a "
					   "string, not a map or a list");
	expect_parse_error("a: \"x\\0y\"\n",
			   "node.yaml:1: a: contains a NUL character");
}

static void test_duplicate_key_in_large_map(void **state)
{
	size_t cap = 4000 * 16;
	char *text = malloc(cap);
	size_t n = 0;

	(void)state;
	assert_non_null(text);
	for (int i = 0; i < 4000; i++)
		n += (size_t)snprintf(text + n, cap - n, "k%d: %d\n", i, i);
	snprintf(text + n, cap - n, "k1234: again\n");
	expect_parse_error(text, "node.yaml:4001: k1234: duplicate key");
	free(text);
}

static void test_deep_nesting(void **state)
{
	char text[20001];
	struct vigie_conf *c = NULL;

	(void)state;
	memset(text, '[', 20000);
	text[20000] = '\0';
	assert_int_equal(vigie_conf_parse(text, 20000, "node.yaml", &c),
			 VIGIE_ECONFIG);
	assert_non_null(
		strstr(vigie_conf_error(c), "nested deeper than 64 levels"));
	vigie_conf_free(c);
}

static void test_missing_key(void **state)
{
	struct vigie_conf *c = parse_ok("node: gw\nbrokers:\n  primary:\n"
					"    host: h\n");
	const struct vigie_conf_node *root = vigie_conf_root(c);
	const struct vigie_conf_node *primary =
		sub(sub(root, "brokers"), "primary");
	const char *s = NULL;
	uint64_t port = 0;

	(void)state;
	assert_int_equal(
		vigie_conf_str(c, root, "site", VIGIE_CONF_REQUIRED, &s),
		VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: site: missing required key");
	vigie_conf_free(c);

	c = parse_ok("node: gw\nbrokers:\n  primary:\n    host: h\n");
	primary = sub(sub(vigie_conf_root(c), "brokers"), "primary");
	assert_int_equal(vigie_conf_uint(c, primary, "port", 1, 65535,
					 VIGIE_CONF_REQUIRED, &port),
			 VIGIE_ECONFIG);
	assert_string_equal(
		vigie_conf_error(c),
		"node.yaml:4: brokers.primary.port: missing required key");
	vigie_conf_free(c);
}

static void test_wrong_type(void **state)
{
	struct vigie_conf *c =
		parse_ok("site: a\nnode: b\n# the broker\nbrokers:\n"
			 "  primary:\n    host: h\n    port: http\n");
	const struct vigie_conf_node *primary =
		sub(sub(vigie_conf_root(c), "brokers"), "primary");
	uint64_t port = 7;

	(void)state;
	assert_int_equal(vigie_conf_uint(c, primary, "port", 1, 65535,
					 VIGIE_CONF_REQUIRED, &port),
			 VIGIE_ECONFIG);
	assert_int_equal(port, 7);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:7: brokers.primary.port: expected an "
			    "integer from 1 to 65535, got \"http\"");
	vigie_conf_free(c);
}

/* expect_uint_error: `value` under key "n" is refused with `msg`. */
static void expect_uint_error(const char *yaml, uint64_t min, uint64_t max,
			      const char *msg)
{
	struct vigie_conf *c = parse_ok(yaml);
	uint64_t v = 42;

	assert_int_equal(vigie_conf_uint(c, vigie_conf_root(c), "n", min, max,
					 VIGIE_CONF_REQUIRED, &v),
			 VIGIE_ECONFIG);
	assert_int_equal(v, 42);
	assert_string_equal(vigie_conf_error(c), msg);
	vigie_conf_free(c);
}

static void test_uint(void **state)
{
	struct vigie_conf *c;
	uint64_t v = 0;

	(void)state;
	expect_uint_error("n: 70000\n", 1, 65535,
			  "node.yaml:1: n: expected an integer from 1 to "
			  "65535, got \"70000\"");
	expect_uint_error("n: 0\n", 1, 65535,
			  "node.yaml:1: n: expected an integer from 1 to "
			  "65535, got \"0\"");
	expect_uint_error("n: 12abc\n", 0, 100,
			  "node.yaml:1: n: expected an integer from 0 to 100, "
			  "got \"12abc\"");
	expect_uint_error("n: \"\"\n", 0, 100,
			  "node.yaml:1: n: expected an integer from 0 to 100, "
			  "got \"\"");
	expect_uint_error("n: -1\n", 0, 100,
			  "node.yaml:1: n: expected an integer from 0 to 100, "
			  "got \"-1\"");
	expect_uint_error("n: +5\n", 0, 100,
			  "node.yaml:1: n: expected an integer from 0 to 100, "
			  "got \"+5\"");
	expect_uint_error("n: 0x10\n", 0, 100,
			  "node.yaml:1: n: expected an integer from 0 to 100, "
			  "got \"0x10\"");
	expect_uint_error("n: \" 5\"\n", 0, 100,
			  "node.yaml:1: n: expected an integer from 0 to 100, "
			  "got \" 5\"");
	expect_uint_error("n: 18446744073709551616\n", 0, UINT64_MAX,
			  "node.yaml:1: n: expected an integer of at least 0, "
			  "got \"18446744073709551616\"");
	expect_uint_error("n: [1]\n", 0, 100,
			  "node.yaml:1: n: expected an integer from 0 to 100, "
			  "got a list");
	expect_uint_error("n:\n", 0, 100, "node.yaml:1: n: must not be empty");

	c = parse_ok("n: 18446744073709551615\nq: \"0042\"\n");
	assert_int_equal(vigie_conf_uint(c, vigie_conf_root(c), "n", 0,
					 UINT64_MAX, VIGIE_CONF_REQUIRED, &v),
			 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(vigie_conf_uint(c, vigie_conf_root(c), "q", 0, 100,
					 VIGIE_CONF_REQUIRED, &v),
			 0);
	assert_int_equal(v, 42);
	vigie_conf_free(c);
}

static void test_double(void **state)
{
	static const char *const bad[] = {"nan",   "inf", ".inf", "0x10",
					  "1e999", "1.5", "-0.1", "abc",
					  "1,5",   NULL};
	struct vigie_conf *c;
	char yaml[64];
	double d = 0;

	(void)state;
	c = parse_ok("a: -2.5e-1\nb: 3\n");
	assert_int_equal(vigie_conf_double(c, vigie_conf_root(c), "a", -1, 1,
					   VIGIE_CONF_REQUIRED, &d),
			 0);
	assert_true(d == -0.25);
	assert_int_equal(vigie_conf_double(c, vigie_conf_root(c), "b", 0, 10,
					   VIGIE_CONF_REQUIRED, &d),
			 0);
	assert_true(d == 3.0);
	vigie_conf_free(c);

	for (size_t i = 0; bad[i]; i++) {
		char msg[128];

		snprintf(yaml, sizeof(yaml), "r: %s\n", bad[i]);
		snprintf(msg, sizeof(msg),
			 "node.yaml:1: r: expected a number from 0 to 1, got "
			 "\"%s\"",
			 bad[i]);
		c = parse_ok(yaml);
		d = 7;
		assert_int_equal(vigie_conf_double(c, vigie_conf_root(c), "r",
						   0, 1, VIGIE_CONF_REQUIRED,
						   &d),
				 VIGIE_ECONFIG);
		assert_true(d == 7);
		assert_string_equal(vigie_conf_error(c), msg);
		vigie_conf_free(c);
	}
}

static void test_bool(void **state)
{
	static const char *const yes[] = {"true", "TRUE", "yes", "On", NULL};
	static const char *const no[] = {"false", "No", "off", "OFF", NULL};
	struct vigie_conf *c;
	char yaml[32];
	bool b;

	(void)state;
	for (size_t i = 0; yes[i]; i++) {
		snprintf(yaml, sizeof(yaml), "b: %s\n", yes[i]);
		c = parse_ok(yaml);
		b = false;
		assert_int_equal(vigie_conf_bool(c, vigie_conf_root(c), "b",
						 VIGIE_CONF_REQUIRED, &b),
				 0);
		assert_true(b);
		vigie_conf_free(c);
	}
	for (size_t i = 0; no[i]; i++) {
		snprintf(yaml, sizeof(yaml), "b: %s\n", no[i]);
		c = parse_ok(yaml);
		b = true;
		assert_int_equal(vigie_conf_bool(c, vigie_conf_root(c), "b",
						 VIGIE_CONF_REQUIRED, &b),
				 0);
		assert_false(b);
		vigie_conf_free(c);
	}
	c = parse_ok("b: 1\n");
	assert_int_equal(vigie_conf_bool(c, vigie_conf_root(c), "b",
					 VIGIE_CONF_REQUIRED, &b),
			 VIGIE_ECONFIG);
	assert_string_equal(
		vigie_conf_error(c),
		"node.yaml:1: b: expected true or false, got \"1\"");
	vigie_conf_free(c);
}

static void test_unknown_key(void **state)
{
	static const char *const zone_keys[] = {"id", "name", "floor",
						"sensors", NULL};
	static const char *const none[] = {NULL};
	struct vigie_conf *c = parse_ok("zones:\n"
					"  - id: a\n"
					"    sensors: [x]\n"
					"  - id: b\n"
					"    name: B\n"
					"    senors: [y]\n");
	const struct vigie_conf_node *zones = sub(vigie_conf_root(c), "zones");

	(void)state;
	assert_int_equal(vigie_conf_expect_map(c, vigie_conf_seq_at(zones, 0),
					       zone_keys),
			 0);
	assert_int_equal(vigie_conf_expect_map(c, vigie_conf_seq_at(zones, 1),
					       zone_keys),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:6: zones[1].senors: unknown key "
			    "(expected one of: id, name, floor, sensors)");
	vigie_conf_free(c);

	c = parse_ok("a: {x: 1}\n");
	assert_int_equal(
		vigie_conf_expect_map(c, sub(vigie_conf_root(c), "a"), none),
		VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: a.x: unknown key (none are allowed)");
	vigie_conf_free(c);

	/* The key's line, not its value's. */
	c = parse_ok("id: a\nbad:\n  x: 1\n");
	assert_int_equal(
		vigie_conf_expect_map(c, vigie_conf_root(c), zone_keys),
		VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:2: bad: unknown key (expected one of: "
			    "id, name, floor, sensors)");
	vigie_conf_free(c);
}

static void test_bad_id(void **state)
{
	struct vigie_conf *c = parse_ok(
		"site: Salle 7\nlong: "
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaa\nok: "
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaa\nempty: \"\"\n");
	const struct vigie_conf_node *root = vigie_conf_root(c);
	const char *s = "untouched";

	(void)state;
	assert_int_equal(vigie_conf_id(c, root, "ok", VIGIE_CONF_REQUIRED, &s),
			 0);
	assert_int_equal(strlen(s), 64);
	s = "untouched";
	assert_int_equal(
		vigie_conf_id(c, root, "site", VIGIE_CONF_REQUIRED, &s),
		VIGIE_ECONFIG);
	assert_string_equal(s, "untouched");
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: site: expected an id of 1 to 64 "
			    "characters a-z, 0-9, '_' or '-', got \"Salle 7\"");
	vigie_conf_free(c);

	c = parse_ok(
		"long: "
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaa\n");
	assert_int_equal(vigie_conf_id(c, vigie_conf_root(c), "long",
				       VIGIE_CONF_REQUIRED, &s),
			 VIGIE_ECONFIG);
	/* Long values are cut in messages. */
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: long: expected an id of 1 to 64 "
			    "characters a-z, 0-9, '_' or '-', got "
			    "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
	vigie_conf_free(c);
}

static void test_duration(void **state)
{
	static const struct {
		const char *text;
		uint64_t ms;
	} good[] = {{"250ms", 250},  {"5s", 5000},   {"2m", 120000},
		    {"1h", 3600000}, {"1.5s", 1500}, {"750", 750}};
	static const char *const bad[] = {"5 parsecs", "nan", "inf",
					  "1e3s",      "-5s", "5S",
					  ".5s",       "2h",  NULL};
	struct vigie_conf *c;
	char yaml[64];
	uint64_t ms;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(yaml, sizeof(yaml), "t: %s\n", good[i].text);
		c = parse_ok(yaml);
		assert_int_equal(vigie_conf_duration(c, vigie_conf_root(c), "t",
						     0, 3600000,
						     VIGIE_CONF_REQUIRED, &ms),
				 0);
		assert_int_equal(ms, good[i].ms);
		vigie_conf_free(c);
	}
	for (size_t i = 0; bad[i]; i++) {
		char msg[160];

		snprintf(yaml, sizeof(yaml), "t: %s\n", bad[i]);
		snprintf(msg, sizeof(msg),
			 "node.yaml:1: t: expected a duration from 1s to 1h "
			 "(250ms, 5s, 2m, 1h), got \"%s\"",
			 bad[i]);
		c = parse_ok(yaml);
		ms = 3;
		assert_int_equal(vigie_conf_duration(c, vigie_conf_root(c), "t",
						     1000, 3600000,
						     VIGIE_CONF_REQUIRED, &ms),
				 VIGIE_ECONFIG);
		assert_int_equal(ms, 3);
		assert_string_equal(vigie_conf_error(c), msg);
		vigie_conf_free(c);
	}
	c = parse_ok("t: 10ms\n");
	assert_int_equal(vigie_conf_duration(c, vigie_conf_root(c), "t", 250,
					     UINT64_MAX, VIGIE_CONF_REQUIRED,
					     &ms),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: t: expected a duration of at least "
			    "250ms (250ms, 5s, 2m, 1h), got \"10ms\"");
	vigie_conf_free(c);
}

static void test_wrong_shape(void **state)
{
	struct vigie_conf *c = parse_ok("site:\n  name: x\n"
					"zones: {a: 1}\n"
					"brokers: [a, b]\n"
					"topics:\n  - a\n  - {b: 1}\n"
					"port: 8883\n");
	const struct vigie_conf_node *root = vigie_conf_root(c);
	const struct vigie_conf_node *n = NULL;
	const char **list = NULL;
	size_t count = 0;
	const char *s = NULL;
	uint64_t u;

	(void)state;
	assert_int_equal(
		vigie_conf_str(c, root, "site", VIGIE_CONF_REQUIRED, &s),
		VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:2: site: expected a string, got a map");
	vigie_conf_free(c);

	c = parse_ok("zones: {a: 1}\n");
	assert_int_equal(vigie_conf_section(c, vigie_conf_root(c), "zones",
					    true, VIGIE_CONF_REQUIRED, &n),
			 VIGIE_ECONFIG);
	assert_null(n);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: zones: expected a list, got a map");
	vigie_conf_free(c);

	c = parse_ok("brokers: [a, b]\n");
	assert_int_equal(vigie_conf_section(c, vigie_conf_root(c), "brokers",
					    false, VIGIE_CONF_REQUIRED, &n),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: brokers: expected a map, got a list");
	vigie_conf_free(c);

	c = parse_ok("brokers: localhost\n");
	assert_int_equal(vigie_conf_section(c, vigie_conf_root(c), "brokers",
					    false, VIGIE_CONF_REQUIRED, &n),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: brokers: expected a map, got "
			    "\"localhost\"");
	vigie_conf_free(c);

	c = parse_ok("zones:\n  - sensors:\n      - a\n      - {b: 1}\n");
	n = vigie_conf_seq_at(sub(vigie_conf_root(c), "zones"), 0);
	assert_int_equal(vigie_conf_str_list(c, n, "sensors",
					     VIGIE_CONF_REQUIRED, &list,
					     &count),
			 VIGIE_ECONFIG);
	assert_null(list);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:4: zones[0].sensors[1]: expected a "
			    "string, got a map");
	vigie_conf_free(c);

	c = parse_ok("topics: {a: 1}\n");
	assert_int_equal(vigie_conf_str_list(c, vigie_conf_root(c), "topics",
					     VIGIE_CONF_REQUIRED, &list,
					     &count),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: topics: expected a string or a list "
			    "of strings, got a map");
	vigie_conf_free(c);

	/* A getter given a scalar where the map should be. */
	c = parse_ok("brokers: localhost\n");
	assert_int_equal(vigie_conf_uint(c, sub(vigie_conf_root(c), "brokers"),
					 "port", 1, 65535, VIGIE_CONF_OPTIONAL,
					 &u),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: brokers: expected a map, got "
			    "\"localhost\"");
	vigie_conf_free(c);

	/* The whole file is a list. */
	c = parse_ok("- a\n- b\n");
	assert_int_equal(vigie_conf_str(c, vigie_conf_root(c), "site",
					VIGIE_CONF_REQUIRED, &s),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: expected a map, got a list");
	vigie_conf_free(c);
}

static void test_empty_values(void **state)
{
	struct vigie_conf *c = parse_ok("site: \"\"\nnode: ~\nlist: []\n");
	const struct vigie_conf_node *root = vigie_conf_root(c);
	const char **list = (const char **)&list;
	size_t count = 9;
	const char *s = NULL;

	(void)state;
	assert_int_equal(
		vigie_conf_str(c, root, "site", VIGIE_CONF_OPTIONAL, &s), 0);
	assert_string_equal(s, "");
	assert_int_equal(vigie_conf_str_list(c, root, "list",
					     VIGIE_CONF_OPTIONAL, &list,
					     &count),
			 0);
	assert_null(list);
	assert_int_equal(count, 0);
	assert_int_equal(
		vigie_conf_str(c, root, "site", VIGIE_CONF_REQUIRED, &s),
		VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: site: must not be empty");
	vigie_conf_free(c);

	c = parse_ok("site: \"\"\nnode: ~\nlist: []\n");
	assert_int_equal(vigie_conf_str(c, vigie_conf_root(c), "node",
					VIGIE_CONF_REQUIRED, &s),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:2: node: must not be empty");
	vigie_conf_free(c);

	c = parse_ok("site: \"\"\nnode: ~\nlist: []\n");
	assert_int_equal(vigie_conf_str_list(c, vigie_conf_root(c), "list",
					     VIGIE_CONF_REQUIRED, &list,
					     &count),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:3: list: must not be empty");
	vigie_conf_free(c);
}

static void test_first_error_wins(void **state)
{
	struct vigie_conf *c = parse_ok("a: x\nb: y\n");
	const struct vigie_conf_node *root = vigie_conf_root(c);
	uint64_t u;
	bool b;

	(void)state;
	assert_int_equal(
		vigie_conf_uint(c, root, "a", 0, 9, VIGIE_CONF_REQUIRED, &u),
		VIGIE_ECONFIG);
	assert_int_equal(vigie_conf_bool(c, root, "b", VIGIE_CONF_REQUIRED, &b),
			 VIGIE_ECONFIG);
	assert_int_equal(vigie_conf_fail(c, sub(root, "b"), "custom %d", 1),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:1: a: expected an integer from 0 to 9, "
			    "got \"x\"");
	vigie_conf_free(c);

	c = parse_ok("a: x\nb: y\n");
	assert_int_equal(vigie_conf_fail(c, sub(vigie_conf_root(c), "b"),
					 "must differ from %s", "a"),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml:2: b: must differ from a");
	vigie_conf_free(c);

	c = parse_ok("a: x\n");
	assert_int_equal(vigie_conf_fail(c, vigie_conf_root(c), "bad root"),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c), "node.yaml:1: bad root");
	vigie_conf_free(c);
}

/* A NULL map is an optional section that is absent: nothing is read and
 * nothing is required in it. */
static void test_null_safety(void **state)
{
	struct vigie_conf *c = parse_ok("a: 1\n");
	const struct vigie_conf_node *n = (const struct vigie_conf_node *)&n;
	const char *s = "kept";
	const char **list = NULL;
	size_t count = 5;
	uint64_t u = 5;
	double d = 5;
	bool b = true;

	(void)state;
	assert_int_equal(vigie_conf_str(c, NULL, "x", VIGIE_CONF_REQUIRED, &s),
			 0);
	assert_int_equal(vigie_conf_id(c, NULL, "x", VIGIE_CONF_OPTIONAL, &s),
			 0);
	assert_int_equal(
		vigie_conf_uint(c, NULL, "x", 0, 9, VIGIE_CONF_REQUIRED, &u),
		0);
	assert_int_equal(
		vigie_conf_double(c, NULL, "x", 0, 9, VIGIE_CONF_OPTIONAL, &d),
		0);
	assert_int_equal(vigie_conf_bool(c, NULL, "x", VIGIE_CONF_OPTIONAL, &b),
			 0);
	assert_int_equal(vigie_conf_duration(c, NULL, "x", 0, 9,
					     VIGIE_CONF_OPTIONAL, &u),
			 0);
	assert_int_equal(vigie_conf_str_list(c, NULL, "x", VIGIE_CONF_OPTIONAL,
					     &list, &count),
			 0);
	assert_int_equal(vigie_conf_section(c, NULL, "x", false,
					    VIGIE_CONF_OPTIONAL, &n),
			 0);
	assert_null(n);
	assert_int_equal(vigie_conf_expect_map(c, NULL, NULL), 0);
	assert_string_equal(s, "kept");
	assert_int_equal(u, 5);
	assert_true(d == 5);
	assert_true(b);
	assert_null(list);
	assert_int_equal(count, 5);
	assert_null(vigie_conf_error(c));

	assert_false(vigie_conf_is_map(NULL));
	assert_false(vigie_conf_is_seq(NULL));
	assert_false(vigie_conf_is_scalar(NULL));
	assert_int_equal(vigie_conf_line(NULL), 0);
	assert_string_equal(vigie_conf_path(NULL), "");
	assert_null(vigie_conf_scalar(NULL));
	assert_null(vigie_conf_get(NULL, "a"));
	assert_null(vigie_conf_get(vigie_conf_root(c), NULL));
	assert_int_equal(vigie_conf_map_len(NULL), 0);
	assert_null(vigie_conf_map_key(NULL, 0));
	assert_null(vigie_conf_map_value(NULL, 0));
	assert_int_equal(vigie_conf_seq_len(NULL), 0);
	assert_null(vigie_conf_seq_at(NULL, 0));
	assert_null(vigie_conf_root(NULL));
	assert_null(vigie_conf_error(NULL));
	assert_int_equal(vigie_conf_fail(NULL, NULL, "x"), VIGIE_ECONFIG);
	vigie_conf_free(NULL);
	vigie_conf_free(c);
}

static void test_empty_file(void **state)
{
	char path[] = "/tmp/vigie-test-config-XXXXXX";
	int fd = mkstemp(path);
	struct vigie_conf *c = NULL;
	const char *s;
	char msg[128];

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(vigie_conf_load(path, &c), 0);
	assert_true(vigie_conf_is_map(vigie_conf_root(c)));
	assert_int_equal(vigie_conf_map_len(vigie_conf_root(c)), 0);
	assert_int_equal(vigie_conf_str(c, vigie_conf_root(c), "site",
					VIGIE_CONF_REQUIRED, &s),
			 VIGIE_ECONFIG);
	snprintf(msg, sizeof(msg), "%s:1: site: missing required key", path);
	assert_string_equal(vigie_conf_error(c), msg);
	assert_string_equal(vigie_conf_file(c), path);
	vigie_conf_free(c);
	unlink(path);

	/* Comments only, a bare document marker, "~": all empty. */
	c = parse_ok("# nothing yet\n");
	assert_true(vigie_conf_is_map(vigie_conf_root(c)));
	vigie_conf_free(c);
	c = parse_ok("---\n");
	assert_true(vigie_conf_is_map(vigie_conf_root(c)));
	vigie_conf_free(c);
	c = parse_ok("~\n");
	assert_true(vigie_conf_is_map(vigie_conf_root(c)));
	vigie_conf_free(c);
	assert_int_equal(vigie_conf_parse(NULL, 0, NULL, &c), 0);
	assert_true(vigie_conf_is_map(vigie_conf_root(c)));
	assert_string_equal(vigie_conf_file(c), "(config)");
	vigie_conf_free(c);
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/vigie-test-config-XXXXXX";
	int fd = mkstemp(path);
	struct vigie_conf *c = NULL;
	const char *s = NULL;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, good_yaml, strlen(good_yaml)),
			 (ssize_t)strlen(good_yaml));
	close(fd);
	assert_int_equal(vigie_conf_load(path, &c), 0);
	assert_int_equal(vigie_conf_id(c, vigie_conf_root(c), "site",
				       VIGIE_CONF_REQUIRED, &s),
			 0);
	assert_string_equal(s, "louvre-denon");
	vigie_conf_free(c);
	unlink(path);
}

static void test_file_not_found(void **state)
{
	struct vigie_conf *c = NULL;

	(void)state;
	assert_int_equal(vigie_conf_load("/nonexistent/vigie/node.yaml", &c),
			 VIGIE_ECONFIG);
	assert_non_null(c);
	assert_string_equal(
		vigie_conf_error(c),
		"/nonexistent/vigie/node.yaml: cannot open: No such "
		"file or directory");
	assert_false(vigie_conf_is_map(NULL));
	/* Still a usable (empty) tree: getters report, never crash. */
	assert_true(vigie_conf_is_map(vigie_conf_root(c)));
	vigie_conf_free(c);

	assert_int_equal(vigie_conf_load("/", &c), VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "/: cannot read: Is a directory");
	vigie_conf_free(c);
}

static void test_too_big(void **state)
{
	char path[] = "/tmp/vigie-test-config-XXXXXX";
	int fd = mkstemp(path);
	struct vigie_conf *c = NULL;
	char msg[128];
	char *big;

	(void)state;
	assert_true(fd >= 0);
	/* Sparse: reads as zeros without using the disk. */
	assert_int_equal(ftruncate(fd, VIGIE_CONF_MAX_BYTES + 1), 0);
	close(fd);
	assert_int_equal(vigie_conf_load(path, &c), VIGIE_ECONFIG);
	snprintf(msg, sizeof(msg), "%s: larger than 8388608 bytes", path);
	assert_string_equal(vigie_conf_error(c), msg);
	vigie_conf_free(c);
	unlink(path);

	big = calloc(1, (size_t)VIGIE_CONF_MAX_BYTES + 1);
	assert_non_null(big);
	assert_int_equal(vigie_conf_parse(big, (size_t)VIGIE_CONF_MAX_BYTES + 1,
					  "node.yaml", &c),
			 VIGIE_ECONFIG);
	assert_string_equal(vigie_conf_error(c),
			    "node.yaml: larger than 8388608 bytes");
	vigie_conf_free(c);
	free(big);
}

/* Deterministic xorshift64 so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* poke: walk the tree calling every getter, as a daemon's loader would on
 * whatever a file holds. Only the absence of crashes and leaks matters. */
static void poke(struct vigie_conf *c, const struct vigie_conf_node *n,
		 int depth)
{
	static const char *const keys[] = {"a", "id", NULL};
	const struct vigie_conf_node *sec;
	const char **list;
	const char *s;
	size_t count;
	uint64_t u;
	double d;
	bool b;

	if (!n || depth > 80)
		return;
	(void)vigie_conf_path(n);
	(void)vigie_conf_line(n);
	(void)vigie_conf_scalar(n);
	vigie_conf_str(c, n, "a", VIGIE_CONF_REQUIRED, &s);
	vigie_conf_id(c, n, "id", VIGIE_CONF_OPTIONAL, &s);
	vigie_conf_uint(c, n, "a", 0, 100, VIGIE_CONF_OPTIONAL, &u);
	vigie_conf_double(c, n, "a", -1, 1, VIGIE_CONF_OPTIONAL, &d);
	vigie_conf_bool(c, n, "a", VIGIE_CONF_OPTIONAL, &b);
	vigie_conf_duration(c, n, "a", 0, 1000, VIGIE_CONF_OPTIONAL, &u);
	vigie_conf_section(c, n, "a", true, VIGIE_CONF_OPTIONAL, &sec);
	vigie_conf_expect_map(c, n, keys);
	list = NULL;
	if (vigie_conf_str_list(c, n, "a", VIGIE_CONF_OPTIONAL, &list,
				&count) == 0)
		free(list);
	for (size_t i = 0; i < vigie_conf_map_len(n); i++) {
		(void)vigie_conf_map_key(n, i);
		poke(c, vigie_conf_map_value(n, i), depth + 1);
	}
	for (size_t i = 0; i < vigie_conf_seq_len(n); i++)
		poke(c, vigie_conf_seq_at(n, i), depth + 1);
}

static void parse_and_poke(const char *buf, size_t len)
{
	struct vigie_conf *c = NULL;
	int rc = vigie_conf_parse(buf, len, "fuzz.yaml", &c);

	assert_non_null(c);
	if (rc)
		assert_non_null(vigie_conf_error(c));
	poke(c, vigie_conf_root(c), 0);
	vigie_conf_free(c);
}

static void test_random_bytes_do_not_crash(void **state)
{
	/* Bytes YAML gives meaning to, so the parser gets past line 1. */
	static const char alphabet[] = "ab:- \n\t[]{},&*!|>'\"#?%@`~\\01.x";
	size_t cap = 8192;
	char *buf = malloc(cap);

	(void)state;
	assert_non_null(buf);
	for (int iter = 0; iter < 300; iter++) {
		size_t len = (size_t)(rng() % cap);

		for (size_t i = 0; i < len; i++) {
			uint64_t r = rng();

			buf[i] = (r & 1) ? (char)(r >> 8)
					 : alphabet[(r >> 8) %
						    (sizeof(alphabet) - 1)];
		}
		parse_and_poke(buf, len);
	}
	/* Mutations of a valid file reach deeper than noise. */
	for (int iter = 0; iter < 300; iter++) {
		size_t len = strlen(good_yaml);

		memcpy(buf, good_yaml, len);
		for (int k = (int)(rng() % 8); k >= 0; k--) {
			uint64_t r = rng();

			buf[(r >> 16) % len] =
				(r & 1) ? (char)(r >> 8)
					: alphabet[(r >> 8) %
						   (sizeof(alphabet) - 1)];
		}
		parse_and_poke(buf, len);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_config),
		cmocka_unit_test(test_map_order_and_inspection),
		cmocka_unit_test(test_nested_paths),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_structure_errors),
		cmocka_unit_test(test_duplicate_key_in_large_map),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_missing_key),
		cmocka_unit_test(test_wrong_type),
		cmocka_unit_test(test_uint),
		cmocka_unit_test(test_double),
		cmocka_unit_test(test_bool),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_bad_id),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_wrong_shape),
		cmocka_unit_test(test_empty_values),
		cmocka_unit_test(test_first_error_wins),
		cmocka_unit_test(test_null_safety),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_file_not_found),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_random_bytes_do_not_crash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
