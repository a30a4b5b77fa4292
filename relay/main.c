/* vigie-relay: the command line. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patterns.h"
#include "patterns_relay.h"
#include "relay.h"
#include "vigie/error.h"
#include "vigie/log.h"

#define EXIT_USAGE 2

static const char usage[] =
	"usage: vigie-relay [run] -c FILE [--log-level LEVEL]   run the relay\n"
	"       vigie-relay check-config FILE                  validate a "
	"config\n"
	"       vigie-relay audit (-c FILE | --db PATH) --incident ID\n"
	"                                                      an incident's "
	"history\n"
	"       vigie-relay incidents (-c FILE | --db PATH) [--all]\n"
	"                                                      open (or all) "
	"incidents\n"
	"       vigie-relay patterns (-c FILE | --db PATH)     active pattern "
	"alerts, explained\n"
	"       vigie-relay backup (-c FILE | --db PATH) OUT   a checked copy "
	"of the\n"
	"                                                      database, "
	"taken while\n"
	"                                                      the relay "
	"runs\n"
	"options:\n"
	"  -c, --config FILE      relay configuration (YAML)\n"
	"      --db PATH          the relay's database (instead of -c)\n"
	"      --incident ID      incident to show\n"
	"      --all              closed incidents too\n"
	"      --log-level LEVEL  error, warn, info (default), debug\n"
	"exit status: 0 ok, 1 runtime failure, 2 bad usage or invalid "
	"configuration,\n"
	"             3 no such incident\n";

struct app {
	uv_loop_t loop;
	struct relay_config cfg;
	struct vigie_relay *relay;
	uv_signal_t sigint, sigterm;
	bool stopping;
	int status;
};

static void on_handle_closed(uv_handle_t *h)
{
	(void)h;
}

static void on_relay_closed(void *arg)
{
	struct app *a = arg;

	a->relay = NULL;
	uv_close((uv_handle_t *)&a->sigint, on_handle_closed);
	uv_close((uv_handle_t *)&a->sigterm, on_handle_closed);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct app *a = h->data;

	if (a->stopping)
		return;
	a->stopping = true;
	vigie_log_info("stopping (signal %d)", signum);
	vigie__relay_close(a->relay, on_relay_closed, a);
}

static int cmd_check(const char *path)
{
	struct relay_config cfg;
	char err[512];
	size_t zones = 0, nodes = 0;

	if (vigie__relayconf_load(path, &cfg, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < cfg.n_sites; i++) {
		zones += cfg.sites[i].n_zones;
		nodes += cfg.sites[i].n_nodes;
	}
	printf("%s: valid: relay %s, %zu site(s), %zu zone(s), %zu node "
	       "override(s), %zu post(s), %zu-level default ladder\n",
	       path, cfg.id, cfg.n_sites, zones, nodes, cfg.n_posts,
	       cfg.ladder.n);
	if (cfg.has_standby)
		printf("central brokers: %s:%d and standby %s:%d (both held, "
		       "outputs published on each)\n",
		       cfg.broker.conn.host, cfg.broker.conn.port,
		       cfg.standby.conn.host, cfg.standby.conn.port);
	if (cfg.serve_listed) {
		printf("serve: listed: only");
		for (size_t i = 0; i < cfg.n_sites; i++)
			printf("%s %s", i ? "," : "", cfg.sites[i].id);
		printf(" (subscribed per site; other sites are other "
		       "relays')\n");
	}
	if (!cfg.supervise_posts)
		printf("supervise_posts: false: post states followed, a lost "
		       "post raised by another relay\n");
	for (size_t i = 0; i < cfg.n_sites; i++) {
		const struct relay_site *s = &cfg.sites[i];

		printf("site %s: ladder", s->id);
		for (size_t j = 0; j < s->ladder->n; j++)
			printf("%s %s (%s, %llu s%s)", j ? " ->" : "",
			       s->ladder->levels[j].name,
			       s->ladder->levels[j].alert
				       ? "site alert"
				       : s->ladder->levels[j].post,
			       (unsigned long long)(s->ladder->levels[j]
							    .ack_deadline_ms /
						    1000),
			       j == s->ladder->police ? ", police" : "");
		printf("\n");
	}
	if (cfg.pattern_rules) /* patterns */
		vigie__patrules_describe(cfg.pattern_rules, stdout);
	vigie__relayconf_free(&cfg);
	return 0;
}

static int cmd_run(const char *config)
{
	static struct app a;
	char err[512];
	int rc;

	memset(&a, 0, sizeof(a));
	if (vigie__relayconf_load(config, &a.cfg, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&a.loop);
	vigie_mqtt_lib_init();
	rc = vigie__relay_open(&a.loop, &a.cfg, vigie__clock_real(), &a.relay);
	if (rc) {
		vigie_log_error("cannot start the relay: %s",
				vigie_strerror(rc));
		a.status = 1;
		goto out_loop;
	}
	uv_signal_init(&a.loop, &a.sigint);
	uv_signal_init(&a.loop, &a.sigterm);
	a.sigint.data = a.sigterm.data = &a;
	uv_signal_start(&a.sigint, on_signal, SIGINT);
	uv_signal_start(&a.sigterm, on_signal, SIGTERM);
	vigie__relay_start(a.relay);
out_loop:
	uv_run(&a.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&a.loop) != 0) {
		vigie_log_error("handles left open at exit");
		a.status = 1;
	}
	vigie_mqtt_lib_cleanup();
	vigie__relayconf_free(&a.cfg);
	return a.status;
}

/* The database of -c FILE, or --db PATH. */
static int db_path(const char *config, const char *db, struct relay_config *cfg,
		   const char **out)
{
	char err[512];

	if (db) {
		*out = db;
		return 0;
	}
	if (!config) {
		fprintf(stderr, "vigie-relay: give -c FILE or --db PATH\n");
		return EXIT_USAGE;
	}
	if (vigie__relayconf_load(config, cfg, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return EXIT_USAGE;
	}
	*out = cfg->database;
	return 0;
}

/* The commands on the database (the relay may be running): patterns,
 * backup OUT, audit --incident ID, incidents [--all]. */
static int cmd_db(const char *cmd, const char *config, const char *db,
		  const char *incident, bool all, int n_args, char **args)
{
	bool backup = strcmp(cmd, "backup") == 0;
	bool audit = strcmp(cmd, "audit") == 0;
	const char *why = NULL, *path = NULL;
	struct relay_config cfg;
	int rc;

	if (n_args != (backup ? 1 : 0))
		why = backup ? "backup needs OUT, the file to write"
			     : "unexpected argument";
	else if (audit && !incident)
		why = "audit needs --incident ID";
	if (why) {
		fprintf(stderr, "vigie-relay: %s\n%s", why, usage);
		return EXIT_USAGE;
	}
	memset(&cfg, 0, sizeof(cfg));
	rc = db_path(config, db, &cfg, &path);
	if (rc)
		return rc;
	if (backup)
		rc = vigie__relay_backup(path, args[0], stdout);
	else if (audit)
		rc = vigie__audit_print(path, incident, stdout);
	else if (strcmp(cmd, "incidents") == 0)
		rc = vigie__incidents_print(path, all, stdout);
	else
		rc = vigie__patterns_print(path, stdout) ? VIGIE_EIO : 0;
	if (!db)
		vigie__relayconf_free(&cfg);
	if (rc == VIGIE_EINVAL && backup)
		return EXIT_USAGE;
	return rc == VIGIE_ENOTFOUND ? 3 : rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"db", required_argument, NULL, 'd'},
		{"incident", required_argument, NULL, 'i'},
		{"all", no_argument, NULL, 'a'},
		{"log-level", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *cmd = "run", *config = NULL, *db = NULL, *incident = NULL;
	enum vigie_log_level level = VIGIE_LOG_INFO;
	bool all = false;
	int c;

	if (argc > 1 && argv[1][0] != '-') {
		cmd = argv[1];
		argv++;
		argc--;
	}
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'd':
			db = optarg;
			break;
		case 'i':
			incident = optarg;
			break;
		case 'a':
			all = true;
			break;
		case 'L':
			if (vigie_log_level_arg("vigie-relay", optarg,
						&level)) {
				return EXIT_USAGE;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case 'V':
			printf("vigie-relay %s\n", VIGIE_VERSION);
			return 0;
		default:
			fputs(usage, stderr);
			return EXIT_USAGE;
		}
	}
	vigie_log_init("vigie-relay", level);
	if (strcmp(cmd, "check-config") == 0) {
		if (optind < argc)
			config = argv[optind++];
		if (!config || optind != argc) {
			fprintf(stderr,
				"usage: vigie-relay check-config FILE\n");
			return EXIT_USAGE;
		}
		return cmd_check(config);
	}
	if (strcmp(cmd, "patterns") == 0 || strcmp(cmd, "backup") == 0 ||
	    strcmp(cmd, "audit") == 0 || strcmp(cmd, "incidents") == 0)
		return cmd_db(cmd, config, db, incident, all, argc - optind,
			      argv + optind);
	if (strcmp(cmd, "run") != 0) {
		fprintf(stderr, "vigie-relay: unknown command \"%s\"\n%s", cmd,
			usage);
		return EXIT_USAGE;
	}
	if (!config || optind != argc) {
		fprintf(stderr, "vigie-relay: %s\n%s",
			config ? "unexpected argument" : "-c FILE is required",
			usage);
		return EXIT_USAGE;
	}
	return cmd_run(config);
}
