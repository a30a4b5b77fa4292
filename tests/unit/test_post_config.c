/* vigie-post's configuration: the file, its errors (FILE:LINE: FIELD), and
 * the command-line flags that override it or stand without it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "post.h"
#include "vigie/error.h"

static char path[64];

static void write_file(const char *text)
{
	FILE *f;
	int fd;

	strcpy(path, "/tmp/vigie-post-conf-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int load(const char *text, const struct post_overrides *ov,
		struct post_config *cfg, char *err)
{
	int rc;

	write_file(text);
	rc = vigie__postconf_load(path, ov, cfg, err, 512);
	unlink(path);
	return rc;
}

static void test_full(void **state)
{
	struct post_config cfg;
	char err[512] = "";

	(void)state;
	assert_int_equal(
		load("post: pp-paris\n"
		     "name: Préfecture de police, salle d'information\n"
		     "operator: Brigadier Dupont\n"
		     "session_expiry: 2d\n"
		     "keep_acked: 5m\n"
		     "max_dispatches: 100\n"
		     "follow_incidents: false\n"
		     "broker:\n"
		     "  host: central.example\n"
		     "  port: 8883\n"
		     "  username: post-pp-paris\n"
		     "  password: secret\n"
		     "  protocol: 3.1.1\n"
		     "  keepalive: 30\n"
		     "  tls: {ca: /etc/vigie/ca.crt, cert: /c.crt, key: "
		     "/c.key}\n",
		     NULL, &cfg, err),
		0);
	assert_string_equal(cfg.post, "pp-paris");
	assert_string_equal(cfg.name,
			    "Préfecture de police, salle d'information");
	assert_string_equal(cfg.operator_name, "Brigadier Dupont");
	assert_int_equal(cfg.session_expiry_ms, 2 * 86400 * 1000ull);
	assert_int_equal(cfg.keep_acked_ms, 300000);
	assert_int_equal(cfg.max_dispatches, 100);
	assert_false(cfg.follow_incidents);
	assert_string_equal(cfg.broker.host, "central.example");
	assert_int_equal(cfg.broker.port, 8883);
	assert_string_equal(cfg.broker.username, "post-pp-paris");
	assert_int_equal(cfg.broker.protocol, VIGIE_MQTT_V311);
	assert_int_equal(cfg.broker.keepalive_s, 30);
	assert_string_equal(cfg.broker.tls.cafile, "/etc/vigie/ca.crt");
	vigie__postconf_free(&cfg);
}

static void test_defaults_and_overrides(void **state)
{
	struct post_config cfg;
	struct post_overrides ov;
	char err[512] = "";

	(void)state;
	memset(&ov, 0, sizeof(ov));
	assert_int_equal(load("post: pp-paris\nbroker: {host: a.example}\n",
			      &ov, &cfg, err),
			 0);
	assert_string_equal(cfg.name, "pp-paris");
	assert_null(cfg.operator_name);
	assert_int_equal(cfg.broker.port, 1883);
	assert_int_equal(cfg.session_expiry_ms, 86400 * 1000ull);
	assert_true(cfg.follow_incidents);
	assert_int_equal(cfg.max_dispatches, 4096);
	vigie__postconf_free(&cfg);

	ov.host = "127.0.0.1";
	ov.port = 2883;
	ov.operator_name = "Martin";
	ov.user = "post-pp-lyon";
	ov.password = "pw";
	ov.post = "pp-lyon";
	assert_int_equal(load("post: pp-paris\nbroker: {host: a.example}\n",
			      &ov, &cfg, err),
			 0);
	assert_string_equal(cfg.post, "pp-lyon");
	assert_string_equal(cfg.broker.host, "127.0.0.1");
	assert_int_equal(cfg.broker.port, 2883);
	assert_string_equal(cfg.operator_name, "Martin");
	assert_string_equal(cfg.broker.password, "pw");
	vigie__postconf_free(&cfg);
}

static void test_password_file(void **state)
{
	struct post_config cfg;
	char err[512] = "", pw[64], text[256];
	FILE *f;
	int fd;

	(void)state;
	strcpy(pw, "/tmp/vigie-post-pw-XXXXXX");
	fd = mkstemp(pw);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs("s3cret\nignored\n", f);
	fclose(f);
	snprintf(text, sizeof(text),
		 "post: p1\nbroker:\n  host: a\n  username: post-p1\n"
		 "  password_file: %s\n",
		 pw);
	assert_int_equal(load(text, NULL, &cfg, err), 0);
	unlink(pw);
	assert_string_equal(cfg.broker.password, "s3cret");
	vigie__postconf_free(&cfg);
}

static void test_flags_only(void **state)
{
	struct post_config cfg;
	struct post_overrides ov;
	char err[512] = "";

	(void)state;
	memset(&ov, 0, sizeof(ov));
	assert_int_equal(
		vigie__postconf_load(NULL, &ov, &cfg, err, sizeof(err)),
		VIGIE_ECONFIG);
	assert_non_null(strstr(err, "--post"));
	ov.post = "Bad Id";
	assert_int_equal(
		vigie__postconf_load(NULL, &ov, &cfg, err, sizeof(err)),
		VIGIE_ECONFIG);
	assert_non_null(strstr(err, "--post"));
	ov.post = "p1";
	ov.password = "x";
	assert_int_equal(
		vigie__postconf_load(NULL, &ov, &cfg, err, sizeof(err)),
		VIGIE_ECONFIG);
	assert_non_null(strstr(err, "--user"));
	ov.password = NULL;
	ov.operator_name = "bad\x1bname";
	assert_int_equal(
		vigie__postconf_load(NULL, &ov, &cfg, err, sizeof(err)),
		VIGIE_ECONFIG);
	assert_non_null(strstr(err, "--by"));
	ov.operator_name = NULL;
	assert_int_equal(
		vigie__postconf_load(NULL, &ov, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.post, "p1");
	assert_string_equal(cfg.broker.host, "127.0.0.1");
	assert_int_equal(cfg.broker.port, 1883);
	assert_null(cfg.broker.username);
	vigie__postconf_free(&cfg);
}

static void expect_error(const char *text, const char *needle)
{
	struct post_config cfg;
	char err[512] = "";

	assert_int_equal(load(text, NULL, &cfg, err), VIGIE_ECONFIG);
	if (!strstr(err, needle) || !strstr(err, "/tmp/vigie-post-conf-"))
		fail_msg("error \"%s\" lacks \"%s\"", err, needle);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("post: pp-paris\n", ":1: broker");
	expect_error("broker: {host: a}\n", "post");
	expect_error("post: PP Paris\nbroker: {host: a}\n", ":1: post");
	expect_error("post: p\nbroker: {host: a}\nbakcup: x\n", ":3: bakcup");
	expect_error("post: p\nbroker:\n  host: a\n  port: 70000\n",
		     ":4: broker.port");
	expect_error("post: p\nbroker:\n  host: a\n  password: x\n",
		     ":4: broker.password");
	expect_error("post: p\nbroker:\n  host: a\n  protocol: 4\n",
		     ":4: broker.protocol");
	expect_error("post: p\nbroker:\n  host: a\n  tls: {cert: /c}\n",
		     "broker.tls");
	expect_error("post: p\noperator: \"a\\x1bb\"\nbroker: {host: a}\n",
		     ":2: operator");
	expect_error("post: p\nmax_dispatches: 1\nbroker: {host: a}\n",
		     ":2: max_dispatches");
	expect_error("post: [p\n", "/tmp/vigie-post-conf-");
}

/* Issue 8: `standby:` a second central broker held at the same time. */
static void test_standby(void **state)
{
	struct post_config cfg;
	char err[512];

	(void)state;
	assert_int_equal(load("post: p\nbroker: {host: a}\n", NULL, &cfg, err),
			 0);
	assert_false(cfg.has_standby);
	vigie__postconf_free(&cfg);
	assert_int_equal(load("post: p\nbroker: {host: a}\n"
			      "standby: {host: b, port: 1884, username: u, "
			      "password: pw}\n",
			      NULL, &cfg, err),
			 0);
	assert_true(cfg.has_standby);
	assert_string_equal(cfg.standby.host, "b");
	assert_int_equal(cfg.standby.port, 1884);
	assert_string_equal(cfg.standby.username, "u");
	vigie__postconf_free(&cfg);
	expect_error("post: p\nbroker: {host: a}\nstandby:\n  host: b\n"
		     "  port: 0\n",
		     ":5: standby.port");
	expect_error("post: p\nbroker: {host: a}\nstandby:\n  host: b\n"
		     "  password: x\n",
		     ":5: standby.password");
	expect_error("post: p\nbroker: {host: a}\nstandby: {port: 2}\n",
		     ":3: standby.host");
	expect_error("post: p\nbroker: {host: a}\nstandby: {host: a}\n",
		     ":3: standby: the standby is the broker itself");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_defaults_and_overrides),
		cmocka_unit_test(test_password_file),
		cmocka_unit_test(test_flags_only),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_standby),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
