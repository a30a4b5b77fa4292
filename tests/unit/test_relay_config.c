/* vigie-relay's configuration: examples/relay.yaml's shape loads with its
 * defaults, and each mistake is reported as FILE:LINE: FIELD: reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "relay.h"
#include "vigie/error.h"

static char dir[64];

static int group_setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/vigie-test-relayconf-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static const char *write_file(const char *name, const char *text)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static const char base[] = "id: relay-paris\n"
			   "database: /tmp/relay.db\n"
			   "broker: {host: 127.0.0.1, port: 1883, username: "
			   "relay, password: pw}\n";

static void expect_error(const char *body, const char *want)
{
	struct relay_config cfg;
	char text[4096], err[512];
	const char *path;

	snprintf(text, sizeof(text), "%s%s", base, body);
	path = write_file("bad.yaml", text);
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 VIGIE_ECONFIG);
	if (!strstr(err, want))
		fail_msg("error \"%s\" does not contain \"%s\"", err, want);
	/* Always FILE:LINE: */
	assert_non_null(strstr(err, "bad.yaml:"));
}

static void test_minimal_defaults(void **state)
{
	struct relay_config cfg;
	char err[512];
	const char *path = write_file("min.yaml", base);

	(void)state;
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 0);
	assert_string_equal(cfg.id, "relay-paris");
	assert_string_equal(cfg.broker.client_id, "vigie-relay-relay-paris");
	assert_int_equal(cfg.broker.session_expiry_s, 86400);
	assert_true(cfg.sync_full);
	assert_int_equal(cfg.reporting_ms, 10000);
	assert_int_equal(cfg.ladder.n, 1);
	assert_true(cfg.ladder.levels[0].alert);
	assert_true(vigie__relayconf_immediate(
		&cfg, VIGIE__V1__EVENT_KIND__KIND_DURESS));
	assert_false(vigie__relayconf_immediate(
		&cfg, VIGIE__V1__EVENT_KIND__KIND_MOTION));
	assert_int_equal(vigie__relayconf_reporting(&cfg, "x", "y", 0), 10000);
	assert_int_equal(vigie__relayconf_reporting(&cfg, "x", "y", 3000),
			 3000);
	vigie__relayconf_free(&cfg);
}

static void test_full(void **state)
{
	struct relay_config cfg;
	char err[512];
	const struct relay_site *s;
	const struct relay_zone *z;
	const char *path;
	const char *pw = write_file("pw", "s3cret\nignored\n");
	char text[4096];

	(void)state;
	snprintf(text, sizeof(text),
		 "id: r1\n"
		 "database: /tmp/r.db\n"
		 "synchronous: normal\n"
		 "broker:\n"
		 "  host: central\n"
		 "  port: 8883\n"
		 "  username: relay\n"
		 "  password_file: %s\n"
		 "  session_expiry: 2h\n"
		 "  tls: {ca: /etc/ca.crt}\n"
		 "immediate: [duress, fire]\n"
		 "posts:\n"
		 "  - {id: pp-1, backup: pp-2}\n"
		 "  - {id: pp-2}\n"
		 "  - {id: hq}\n"
		 "escalation:\n"
		 "  - {name: site-security, alert: true, ack_deadline: 30s}\n"
		 "  - {name: hq, post: hq, ack_deadline: 1m}\n"
		 "  - {name: police, post: pp-1, ack_deadline: 1m}\n"
		 "sites:\n"
		 "  - id: louvre\n"
		 "    name: Louvre\n"
		 "    location: {lat: 48.86, lon: 2.33}\n"
		 "    nodes: [{id: apollo-1, reporting_time: 20s}]\n"
		 "    zones:\n"
		 "      - {id: apollo, name: Apollon, floor: \"1\", cameras: "
		 "[c1, c2], action_plan: go}\n"
		 "  - id: orsay\n"
		 "    escalation:\n"
		 "      - {name: guards, alert: true, ack_deadline: 10s}\n"
		 "      - {name: police, post: pp-2, ack_deadline: 10s}\n"
		 "      - {name: hq, post: hq, ack_deadline: 10s, police: "
		 "false}\n",
		 pw);
	path = write_file("full.yaml", text);
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 0);
	assert_false(cfg.sync_full);
	assert_string_equal(cfg.broker.conn.password, "s3cret");
	assert_int_equal(cfg.broker.session_expiry_s, 7200);
	assert_string_equal(cfg.broker.conn.tls.cafile, "/etc/ca.crt");
	assert_true(vigie__relayconf_immediate(
		&cfg, VIGIE__V1__EVENT_KIND__KIND_FIRE));
	assert_false(vigie__relayconf_immediate(
		&cfg, VIGIE__V1__EVENT_KIND__KIND_DISPLAY_CASE));
	assert_int_equal(cfg.ladder.n, 3);
	assert_int_equal(cfg.ladder.police, 2);
	s = vigie__relayconf_site(&cfg, "louvre");
	assert_non_null(s);
	assert_ptr_equal(s->ladder, &cfg.ladder);
	z = vigie__relayconf_zone(s, "apollo");
	assert_non_null(z);
	assert_int_equal(z->n_cameras, 2);
	assert_string_equal(z->action_plan, "go");
	assert_int_equal(
		vigie__relayconf_reporting(&cfg, "louvre", "apollo-1", 5000),
		20000);
	s = vigie__relayconf_site(&cfg, "orsay");
	assert_int_equal(s->ladder->n, 3);
	/* The last level with a post is the police unless one is flagged. */
	assert_int_equal(s->ladder->police, 2);
	assert_ptr_equal(vigie__relayconf_ladder(&cfg, "nowhere"), &cfg.ladder);
	assert_string_equal(vigie__relayconf_post(&cfg, "pp-1")->backup,
			    "pp-2");
	vigie__relayconf_free(&cfg);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("colour: blue\n", ":4: colour: unknown key");
	expect_error("synchronous: sometimes\n",
		     "synchronous: expected full or normal");
	expect_error(
		"escalation:\n  - {name: x, post: nope, ack_deadline: 1s}\n",
		":5: escalation[0].post: post \"nope\" is not in posts");
	expect_error("escalation:\n  - {name: x, ack_deadline: 1s}\n",
		     "either `alert: true`");
	expect_error("escalation:\n  - {name: x, alert: true}\n",
		     "ack_deadline");
	expect_error("posts: [{id: a, backup: a}]\n", "cannot back itself up");
	expect_error("posts: [{id: a, backup: b}]\n",
		     "post \"b\" is not in posts");
	expect_error("posts: [{id: a}, {id: a}]\n", "duplicate post id");
	expect_error("sites:\n  - id: Louvre\n", "sites[0].id");
	expect_error("sites:\n  - id: l\n    zones: [{id: z}, {id: z}]\n",
		     "duplicate zone id");
	expect_error("sites:\n  - id: l\n    nodes: [{id: n, reporting_time: "
		     "soon}]\n",
		     "reporting_time");
	expect_error("immediate: [teleport]\n",
		     "unknown event kind \"teleport\"");
	expect_error("dispatch_resend: 10s\ndispatch_resend_max: 5s\n",
		     "must be at least dispatch_resend");
	expect_error("reporting_time: 50ms\n", "reporting_time");
}

static void test_broker_errors(void **state)
{
	struct relay_config cfg;
	char err[512];
	const char *path;

	(void)state;
	path = write_file("b.yaml",
			  "id: r\ndatabase: d\n"
			  "broker: {host: h, port: 1, password: x}\n");
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 VIGIE_ECONFIG);
	assert_non_null(strstr(err, "a password needs a username"));
	path = write_file("b.yaml",
			  "id: r\ndatabase: d\n"
			  "broker: {host: h, port: 1, tls: {cert: c}}\n");
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 VIGIE_ECONFIG);
	assert_non_null(strstr(err, "tls needs ca or capath"));
	path = write_file("b.yaml", "id: r\ndatabase: d\n"
				    "broker: {host: h, port: 1, username: u,"
				    " password_file: /nonexistent/pw}\n");
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 VIGIE_ECONFIG);
	assert_non_null(strstr(
		err, "broker.password_file: cannot read /nonexistent/pw"));
	path = write_file("b.yaml",
			  "id: r\ndatabase: d\n"
			  "broker: {host: h, port: 1, session_expiry: 1s}\n");
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 VIGIE_ECONFIG);
	assert_non_null(strstr(err, "session_expiry"));
	path = write_file("b.yaml", "id: r\ndatabase: d\n");
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 VIGIE_ECONFIG);
	assert_non_null(strstr(err, "broker"));
}

/* Issue 8: `standby:` a second central broker, spelt like `broker:`. */
static void test_standby(void **state)
{
	struct relay_config cfg;
	char text[4096], err[512];
	const char *path;

	(void)state;
	path = write_file("ok.yaml", base);
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 0);
	assert_false(cfg.has_standby); /* none: one broker, as before */
	vigie__relayconf_free(&cfg);
	snprintf(text, sizeof(text),
		 "%sstandby:\n  host: 127.0.0.2\n  port: 1884\n"
		 "  username: relay\n  password: pw\n  keepalive: 5\n",
		 base);
	path = write_file("ok.yaml", text);
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 0);
	assert_true(cfg.has_standby);
	assert_string_equal(cfg.standby.conn.host, "127.0.0.2");
	assert_int_equal(cfg.standby.conn.port, 1884);
	assert_int_equal(cfg.standby.conn.keepalive_s, 5);
	/* One session name on both brokers. */
	assert_string_equal(cfg.standby.client_id, cfg.broker.client_id);
	assert_int_equal(cfg.standby.session_expiry_s, 86400);
	vigie__relayconf_free(&cfg);

	expect_error("standby: {host: 127.0.0.2}\n", ":4: standby.port");
	expect_error("standby:\n  host: 127.0.0.2\n  port: 1884\n"
		     "  colour: blue\n",
		     ":7: standby.colour: unknown key");
	expect_error("standby:\n  host: 127.0.0.2\n  port: 1884\n"
		     "  password: x\n",
		     ":7: standby.password: a password needs a username");
	expect_error("standby:\n  host: 127.0.0.2\n  port: 1884\n"
		     "  session_expiry: 1s\n",
		     ":7: standby.session_expiry");
	expect_error("standby: {host: 127.0.0.1, port: 1883}\n",
		     ":4: standby: the standby is the broker itself");
	expect_error("standby: [127.0.0.2]\n", ":4: standby");
}

/* Issue 8: `serve: all | listed`, relays that split sites between them. */
static void test_serve(void **state)
{
	struct relay_config cfg;
	char text[4096], err[512];
	const char *path;

	(void)state;
	/* Default: every site, as before; posts supervised. */
	path = write_file("ok.yaml", base);
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 0);
	assert_false(cfg.serve_listed);
	assert_true(cfg.supervise_posts);
	assert_false(cfg.supervise_posts_set);
	assert_true(vigie__relayconf_serves(&cfg, "louvre"));
	assert_true(vigie__relayconf_serves(&cfg, "anywhere"));
	vigie__relayconf_free(&cfg);

	snprintf(text, sizeof(text), "%sserve: all\nsites: [{id: louvre}]\n",
		 base);
	path = write_file("ok.yaml", text);
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 0);
	assert_false(cfg.serve_listed);
	assert_true(vigie__relayconf_serves(&cfg, "orsay"));
	vigie__relayconf_free(&cfg);

	snprintf(text, sizeof(text),
		 "%sserve: listed\nsupervise_posts: false\n"
		 "sites:\n  - id: louvre\n  - id: orsay\n",
		 base);
	path = write_file("ok.yaml", text);
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 0);
	assert_true(cfg.serve_listed);
	assert_false(cfg.supervise_posts);
	assert_true(cfg.supervise_posts_set);
	assert_true(vigie__relayconf_serves(&cfg, "louvre"));
	assert_true(vigie__relayconf_serves(&cfg, "orsay"));
	assert_false(vigie__relayconf_serves(&cfg, "mnhn"));
	assert_false(vigie__relayconf_serves(&cfg, NULL));
	vigie__relayconf_free(&cfg);

	/* Listed with nothing listed: refused, not a relay serving nothing. */
	expect_error("serve: listed\n",
		     ":4: serve: listed serves only the sites of sites:, "
		     "and there is none");
	expect_error("serve: listed\nsites: []\n",
		     ":4: serve: listed serves only the sites of sites:");
	expect_error("sites: []\nserve: listed\n", ":5: serve: listed");
	expect_error("serve: some\nsites: [{id: louvre}]\n",
		     ":4: serve: expected all or listed, got \"some\"");
	expect_error("serve: [louvre]\n", ":4: serve");
	expect_error("supervise_posts: maybe\n", ":4: supervise_posts");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_broker_errors),
		cmocka_unit_test(test_standby),
		cmocka_unit_test(test_serve),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
