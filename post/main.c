/* vigie-post: the command line. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "post.h"
#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"

#define EXIT_FAIL      1
#define EXIT_USAGE     2
#define ACK_TIMEOUT_MS 10000

static const char usage[] =
	"usage: vigie-post [run] [-c FILE] [options]        the police post "
	"console\n"
	"       vigie-post ack ID --by NAME [-c FILE] [options]\n"
	"                                                  acknowledge "
	"dispatch ID and exit\n"
	"       vigie-post check-config FILE               validate a "
	"configuration\n"
	"connection (override the file, or replace it):\n"
	"  -c, --config FILE      post configuration (YAML, see "
	"examples/post.yaml)\n"
	"      --post ID          post id (topics vigie/v1/post/ID/...)\n"
	"      --name TEXT        the post's name as shown and announced\n"
	"      --host HOST        central broker (default 127.0.0.1)\n"
	"      --port PORT        (default 1883)\n"
	"      --user USER        broker user (the broker config names it "
	"post-ID)\n"
	"      --password PASS    its password (visible to ps: prefer the "
	"file)\n"
	"      --cafile FILE      TLS: CA certificate (enables TLS)\n"
	"      --cert FILE, --key FILE   TLS client certificate and key\n"
	"run options:\n"
	"      --by NAME          operator name used for acknowledgements\n"
	"      --json             JSON lines on stdout, commands on stdin (the "
	"default\n"
	"                         when stdout is not a terminal)\n"
	"      --no-color         no colours on the terminal (also "
	"NO_COLOR=1)\n"
	"      --log-file FILE    terminal mode: log there instead of the "
	"footer\n"
	"      --log-level LEVEL  error, warn, info (default), debug\n"
	"ack options:\n"
	"      --by NAME          who acknowledges (required unless operator: "
	"is set)\n"
	"      --incident ID      the incident (default: ID without its "
	"-l<level>)\n"
	"      --timeout SECONDS  give up without a PUBACK after this (default "
	"10)\n"
	"      --json             print the ack as a JSON line\n"
	"stdin commands in JSON mode: ack ID [NAME] | list | stats | quit\n"
	"exit status: 0 ok, 1 runtime failure, 2 bad usage or invalid "
	"configuration\n";

struct options {
	const char *config;
	struct post_overrides ov;
	bool json;
	bool no_color;
	const char *log_file;
	const char *incident;
	uint64_t timeout_ms;
};

/* ---- run: the console -------------------------------------------------- */

struct app {
	uv_loop_t loop;
	struct post_config cfg;
	struct vigie_post *post;
	struct post_console *console;
	struct post_stream *stream;
	uv_signal_t sigint, sigterm, sighup;
	uv_timer_t quit_timer;
	bool stopping;
	int status;
};

static void on_handle_closed(uv_handle_t *h)
{
	(void)h;
}

static void ui_closed(void *arg)
{
	struct app *a = arg;

	uv_close((uv_handle_t *)&a->sigint, on_handle_closed);
	uv_close((uv_handle_t *)&a->sigterm, on_handle_closed);
	uv_close((uv_handle_t *)&a->sighup, on_handle_closed);
	uv_close((uv_handle_t *)&a->quit_timer, on_handle_closed);
}

/* The core is gone: now the front end. It stayed open meanwhile so that
 * a dispatch arriving while the core says goodbye is still shown. */
static void core_closed(void *arg)
{
	struct app *a = arg;

	a->post = NULL;
	if (a->console) {
		vigie__postcons_close(a->console, ui_closed, a);
		a->console = NULL;
	} else if (a->stream) {
		vigie__poststream_close(a->stream, ui_closed, a);
		a->stream = NULL;
	} else {
		ui_closed(a);
	}
}

static void shutdown_app(struct app *a)
{
	if (a->stopping)
		return;
	a->stopping = true;
	vigie_log_info("stopping");
	uv_timer_stop(&a->quit_timer);
	if (a->post)
		vigie__post_close(a->post, core_closed, a);
	else
		core_closed(a);
}

static void quit_cb(uv_timer_t *t)
{
	shutdown_app(t->data);
}

/* Front ends ask to stop from inside their own callbacks, some of them
 * running inside libmosquitto's (a dispatch line that cannot be written):
 * the shutdown, which frees the front end and closes the client, runs on
 * the next loop turn. Closing a connected client from inside libmosquitto's
 * callbacks deadlocks on its callback lock. */
static void quit(void *arg, int status)
{
	struct app *a = arg;

	if (status > a->status)
		a->status = status;
	if (!a->stopping)
		uv_timer_start(&a->quit_timer, quit_cb, 0, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct app *a = h->data;

	if (signum == SIGHUP)
		vigie_log_warn("hangup: the terminal is gone");
	shutdown_app(a);
}

static void ev_dispatch(void *ud, const struct post_entry *e, bool is_new)
{
	struct app *a = ud;

	if (a->console)
		vigie__postcons_dispatch(a->console, e, is_new);
	if (a->stream)
		vigie__poststream_dispatch(a->stream, e, is_new);
}

static void ev_ack(void *ud, const struct post_entry *e)
{
	struct app *a = ud;

	if (a->console)
		vigie__postcons_ack(a->console, e);
	if (a->stream)
		vigie__poststream_ack(a->stream, e);
}

static void ev_change(void *ud)
{
	struct app *a = ud;

	if (a->console)
		vigie__postcons_changed(a->console);
}

static void ev_connection(void *ud, bool up, bool session_present)
{
	struct app *a = ud;

	if (a->console)
		vigie__postcons_connection(a->console, up);
	if (a->stream)
		vigie__poststream_connection(a->stream, up, session_present);
}

static int load_config(const struct options *o, struct post_config *cfg)
{
	char err[512];

	if (vigie__postconf_load(o->config, &o->ov, cfg, err, sizeof(err))) {
		fprintf(stderr, "vigie-post: %s\n", err);
		return EXIT_USAGE;
	}
	return 0;
}

static int cmd_run(const struct options *o)
{
	static const struct post_events events = {
		.on_dispatch = ev_dispatch,
		.on_ack = ev_ack,
		.on_change = ev_change,
		.on_connection = ev_connection,
	};
	static struct app a;
	struct post_ui_ctx ctx;
	bool tty, color;
	int rc;

	memset(&a, 0, sizeof(a));
	if (load_config(o, &a.cfg))
		return EXIT_USAGE;
	tty = !o->json && isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
	color = !o->no_color && !getenv("NO_COLOR") &&
		!(getenv("TERM") && strcmp(getenv("TERM"), "dumb") == 0);
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&a.loop);
	vigie_mqtt_lib_init();
	uv_signal_init(&a.loop, &a.sigint);
	uv_signal_init(&a.loop, &a.sigterm);
	uv_signal_init(&a.loop, &a.sighup);
	uv_timer_init(&a.loop, &a.quit_timer);
	a.sigint.data = a.sigterm.data = a.sighup.data = &a;
	a.quit_timer.data = &a;
	uv_signal_start(&a.sigint, on_signal, SIGINT);
	uv_signal_start(&a.sigterm, on_signal, SIGTERM);
	uv_signal_start(&a.sighup, on_signal, SIGHUP);
	rc = vigie__post_open(&a.loop, &a.cfg, &events, &a, &a.post);
	if (rc) {
		a.status = EXIT_FAIL;
		shutdown_app(&a);
		goto out_run;
	}
	ctx.loop = &a.loop;
	ctx.post = a.post;
	ctx.cfg = &a.cfg;
	ctx.quit = quit;
	ctx.arg = &a;
	if (tty)
		rc = vigie__postcons_open(&ctx, o->log_file, color, &a.console);
	else
		rc = vigie__poststream_open(&ctx, &a.stream);
	if (rc) {
		a.status = EXIT_FAIL;
		shutdown_app(&a);
		goto out_run;
	}
	vigie__post_start(a.post);
out_run:
	uv_run(&a.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&a.loop) != 0) {
		vigie_log_error("handles left open at exit");
		a.status = EXIT_FAIL;
	}
	vigie_mqtt_lib_cleanup();
	vigie__postconf_free(&a.cfg);
	return a.status;
}

/* ---- ack: one acknowledgement from the command line ------------------- */

struct ackcmd {
	uv_loop_t loop;
	struct vigie_mqtt *m;
	uv_timer_t timeout;
	uv_signal_t sigint, sigterm;
	const char *topic;
	uint8_t *payload;
	size_t len;
	bool done;
	int status;
};

static void ack_finish_cb(uv_timer_t *t)
{
	struct ackcmd *k = t->data;

	uv_close((uv_handle_t *)&k->timeout, on_handle_closed);
	uv_close((uv_handle_t *)&k->sigint, on_handle_closed);
	uv_close((uv_handle_t *)&k->sigterm, on_handle_closed);
	vigie_mqtt_close(k->m, NULL, NULL);
}

/* ack_finish: record the outcome and close on the next loop turn. Not
 * from here: this runs inside libmosquitto's callbacks, and closing a
 * connected client there deadlocks (its DISCONNECT write takes the
 * callback lock that is already held). */
static void ack_finish(struct ackcmd *k, int status)
{
	if (k->done)
		return;
	k->done = true;
	k->status = status;
	uv_timer_start(&k->timeout, ack_finish_cb, 0, 0);
}

static void ack_connect(struct vigie_mqtt *m, void *ud, bool session_present)
{
	struct ackcmd *k = ud;
	int rc;

	(void)session_present;
	if (k->done)
		return;
	/* Again after a reconnect: an Ack is idempotent, and the one in
	 * flight on the lost connection may be gone. */
	rc = vigie_mqtt_publish(m, k->topic, k->payload, k->len, 1, false,
				NULL);
	if (rc) {
		vigie_log_error("publish: %s", vigie_strerror(rc));
		ack_finish(k, EXIT_FAIL);
	}
}

static void ack_disconnect(struct vigie_mqtt *m, void *ud, int reason)
{
	struct ackcmd *k = ud;

	(void)m;
	if (reason == VIGIE_EAUTH) {
		vigie_log_error("the broker refused us: %s",
				vigie_strerror(reason));
		ack_finish(k, EXIT_FAIL);
	}
}

static void ack_published(struct vigie_mqtt *m, void *ud, int mid, int status)
{
	struct ackcmd *k = ud;

	(void)m;
	(void)mid;
	/* This client publishes nothing else at QoS 1: any PUBACK is ours. */
	if (status) {
		vigie_log_error("the broker refused the ack: %s",
				vigie_strerror(status));
		ack_finish(k, EXIT_FAIL);
		return;
	}
	ack_finish(k, 0);
}

static void ack_timeout(uv_timer_t *t)
{
	struct ackcmd *k = t->data;

	vigie_log_error("no PUBACK from the broker in time: not acknowledged");
	ack_finish(k, EXIT_FAIL);
}

static void ack_signal(uv_signal_t *h, int signum)
{
	(void)signum;
	ack_finish(h->data, EXIT_FAIL);
}

static int cmd_ack(const struct options *o, const char *id)
{
	static const struct vigie_mqtt_callbacks cbs = {
		.on_connect = ack_connect,
		.on_disconnect = ack_disconnect,
		.on_publish = ack_published,
	};
	struct post_config cfg;
	struct vigie_mqtt_options mo;
	struct ackcmd k;
	char incident[POST_ID_MAX + 1], topic[VIGIE_TOPIC_MAX];
	char client_id[VIGIE_ID_MAX + 48];
	uint64_t now_us = vigie_clock_now_us();
	int rc;

	if (!vigie__postmsg_id_valid(id)) {
		fprintf(stderr,
			"vigie-post ack: dispatch id: expected 1 to %d "
			"characters of [A-Za-z0-9._:-], got \"%s\"\n",
			POST_ID_MAX, id);
		return EXIT_USAGE;
	}
	if (o->incident) {
		if (!vigie__postmsg_id_valid(o->incident)) {
			fprintf(stderr, "vigie-post ack: --incident: expected "
					"[A-Za-z0-9._:-]\n");
			return EXIT_USAGE;
		}
		snprintf(incident, sizeof(incident), "%s", o->incident);
	} else if (vigie__postmsg_incident_from_id(id, incident,
						   sizeof(incident))) {
		fprintf(stderr,
			"vigie-post ack: %s does not end in -l<level>: give "
			"--incident\n",
			id);
		return EXIT_USAGE;
	}
	if (load_config(o, &cfg))
		return EXIT_USAGE;
	if (!cfg.operator_name) {
		fprintf(stderr, "vigie-post ack: --by NAME is required (or "
				"operator: in the config)\n");
		vigie__postconf_free(&cfg);
		return EXIT_USAGE;
	}
	memset(&k, 0, sizeof(k));
	k.status = EXIT_FAIL;
	rc = vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_ACK, cfg.post,
			       NULL);
	if (!rc)
		rc = vigie__postmsg_ack_pack(cfg.post, id, incident,
					     cfg.operator_name, now_us,
					     &k.payload, &k.len);
	if (rc) {
		fprintf(stderr, "vigie-post ack: %s\n", vigie_strerror(rc));
		vigie__postconf_free(&cfg);
		return EXIT_FAIL;
	}
	k.topic = topic;
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&k.loop);
	vigie_mqtt_lib_init();
	memset(&mo, 0, sizeof(mo));
	/* Not the console's client id: taking over its session would
	 * disconnect it (and the broker would announce its death). */
	snprintf(client_id, sizeof(client_id), "vigie-post-%s-ack-%ld",
		 cfg.post, (long)getpid());
	vigie_conf_broker_apply(&cfg.broker, &mo);
	mo.client_id = client_id;
	mo.clean_start = true;
	mo.reconnect_min_ms = 100;
	mo.reconnect_max_ms = 1000;
	mo.name = "central";
	rc = vigie_mqtt_open(&k.loop, &mo, &cbs, &k, &k.m);
	if (rc) {
		fprintf(stderr, "vigie-post ack: %s\n", vigie_strerror(rc));
		goto out_loop;
	}
	uv_timer_init(&k.loop, &k.timeout);
	uv_signal_init(&k.loop, &k.sigint);
	uv_signal_init(&k.loop, &k.sigterm);
	k.timeout.data = k.sigint.data = k.sigterm.data = &k;
	uv_timer_start(&k.timeout, ack_timeout, o->timeout_ms, 0);
	uv_signal_start(&k.sigint, ack_signal, SIGINT);
	uv_signal_start(&k.sigterm, ack_signal, SIGTERM);
	vigie_mqtt_start(k.m);
out_loop:
	uv_run(&k.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&k.loop) != 0) {
		vigie_log_error("handles left open at exit");
		k.status = EXIT_FAIL;
	}
	vigie_mqtt_lib_cleanup();
	if (k.status == 0) {
		if (o->json) {
			struct post_buf b;

			vigie__postbuf_init(&b, 64 * 1024);
			vigie__postjson_ack(&b, id, incident, cfg.operator_name,
					    now_us);
			if (!b.err)
				fputs(b.data, stdout);
			vigie__postbuf_free(&b);
		} else {
			printf("acknowledged %s (incident %s) as %s\n", id,
			       incident, cfg.operator_name);
		}
		if (fflush(stdout) != 0)
			k.status = EXIT_FAIL;
	}
	free(k.payload);
	vigie__postconf_free(&cfg);
	return k.status;
}

/* ---- check-config ------------------------------------------------------ */

static int cmd_check(const struct options *o)
{
	struct post_config cfg;

	if (load_config(o, &cfg))
		return EXIT_USAGE;
	printf("%s: valid: post %s (%s), broker %s:%d%s, operator %s\n",
	       cfg.path ? cfg.path : "(flags)", cfg.post, cfg.name,
	       cfg.broker.host, cfg.broker.port,
	       cfg.broker.tls.cafile || cfg.broker.tls.capath ? " TLS" : "",
	       cfg.operator_name ? cfg.operator_name
				 : "asked at the first ack");
	if (cfg.has_standby)
		printf("standby central broker %s:%d%s (both held)\n",
		       cfg.standby.host, cfg.standby.port,
		       cfg.standby.tls.cafile || cfg.standby.tls.capath ? " TLS"
									: "");
	vigie__postconf_free(&cfg);
	return 0;
}

/* ---- arguments --------------------------------------------------------- */

static int parse_port(const char *s, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (!*s || *end || v < 1 || v > 65535)
		return VIGIE_EINVAL;
	*out = (int)v;
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		OPT_HOST = 256,
		OPT_PORT,
		OPT_POST,
		OPT_USER,
		OPT_PASSWORD,
		OPT_NAME,
		OPT_BY,
		OPT_JSON,
		OPT_NO_COLOR,
		OPT_LOG_FILE,
		OPT_LOG_LEVEL,
		OPT_INCIDENT,
		OPT_TIMEOUT,
		OPT_CAFILE,
		OPT_CERT,
		OPT_KEY,
		OPT_VERSION,
	};
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"host", required_argument, NULL, OPT_HOST},
		{"port", required_argument, NULL, OPT_PORT},
		{"post", required_argument, NULL, OPT_POST},
		{"user", required_argument, NULL, OPT_USER},
		{"password", required_argument, NULL, OPT_PASSWORD},
		{"name", required_argument, NULL, OPT_NAME},
		{"by", required_argument, NULL, OPT_BY},
		{"json", no_argument, NULL, OPT_JSON},
		{"no-color", no_argument, NULL, OPT_NO_COLOR},
		{"log-file", required_argument, NULL, OPT_LOG_FILE},
		{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
		{"incident", required_argument, NULL, OPT_INCIDENT},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"cafile", required_argument, NULL, OPT_CAFILE},
		{"cert", required_argument, NULL, OPT_CERT},
		{"key", required_argument, NULL, OPT_KEY},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, OPT_VERSION},
		{NULL, 0, NULL, 0},
	};
	const char *cmd = "run";
	enum vigie_log_level level = VIGIE_LOG_INFO;
	struct options o;
	char *end;
	double secs;
	int c;

	memset(&o, 0, sizeof(o));
	o.timeout_ms = ACK_TIMEOUT_MS;
	if (argc > 1 && argv[1][0] != '-') {
		cmd = argv[1];
		argv++;
		argc--;
	}
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config = optarg;
			break;
		case OPT_HOST:
			o.ov.host = optarg;
			break;
		case OPT_PORT:
			if (parse_port(optarg, &o.ov.port)) {
				fprintf(stderr,
					"vigie-post: --port: expected 1 to "
					"65535, got \"%s\"\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case OPT_POST:
			o.ov.post = optarg;
			break;
		case OPT_USER:
			o.ov.user = optarg;
			break;
		case OPT_PASSWORD:
			o.ov.password = optarg;
			break;
		case OPT_NAME:
			o.ov.name = optarg;
			break;
		case OPT_BY:
			o.ov.operator_name = optarg;
			break;
		case OPT_JSON:
			o.json = true;
			break;
		case OPT_NO_COLOR:
			o.no_color = true;
			break;
		case OPT_LOG_FILE:
			o.log_file = optarg;
			break;
		case OPT_LOG_LEVEL:
			if (vigie_log_level_arg("vigie-post", optarg, &level)) {
				return EXIT_USAGE;
			}
			break;
		case OPT_INCIDENT:
			o.incident = optarg;
			break;
		case OPT_TIMEOUT:
			secs = strtod(optarg, &end);
			if (*end || !(secs > 0) || secs > 3600) {
				fprintf(stderr,
					"vigie-post: --timeout: expected "
					"seconds (0 < s <= 3600), got \"%s\"\n",
					optarg);
				return EXIT_USAGE;
			}
			o.timeout_ms = (uint64_t)(secs * 1000.0 + 0.5);
			break;
		case OPT_CAFILE:
			o.ov.cafile = optarg;
			break;
		case OPT_CERT:
			o.ov.certfile = optarg;
			break;
		case OPT_KEY:
			o.ov.keyfile = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case OPT_VERSION:
			printf("vigie-post %s\n", VIGIE_VERSION);
			return 0;
		default:
			fputs(usage, stderr);
			return EXIT_USAGE;
		}
	}
	vigie_log_init("vigie-post", level);
	if (strcmp(cmd, "ack") == 0) {
		if (optind + 1 != argc) {
			fprintf(stderr, "usage: vigie-post ack ID --by NAME "
					"[-c FILE] [options]\n");
			return EXIT_USAGE;
		}
		return cmd_ack(&o, argv[optind]);
	}
	if (strcmp(cmd, "check-config") == 0) {
		if (optind < argc && !o.config)
			o.config = argv[optind++];
		if (optind != argc || (!o.config && !o.ov.post)) {
			fprintf(stderr,
				"usage: vigie-post check-config FILE\n");
			return EXIT_USAGE;
		}
		return cmd_check(&o);
	}
	if (strcmp(cmd, "run") != 0) {
		fprintf(stderr, "vigie-post: unknown command \"%s\"\n%s", cmd,
			usage);
		return EXIT_USAGE;
	}
	if (optind != argc) {
		fprintf(stderr, "vigie-post: unexpected argument \"%s\"\n%s",
			argv[optind], usage);
		return EXIT_USAGE;
	}
	return cmd_run(&o);
}
