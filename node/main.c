/* vigie-node: the command line. */
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "node.h"
#include "sia.h"
#include "simulate.h"
#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/sign.h"

#define EXIT_USAGE 2

static const char usage[] =
	"usage: vigie-node [run] -c FILE [options]   run a node\n"
	"       vigie-node check-config FILE         validate a config, list "
	"uncovered zones\n"
	"       vigie-node inject -c FILE|-s SOCKET [LINE ...]\n"
	"                                            send event lines (stdin "
	"without LINE)\n"
	"       vigie-node keygen --site S --node N --out FILE\n"
	"                                            create an Ed25519 "
	"signing key\n"
	"                                            (FILE, 0600) and its "
	"trust line (FILE.pub)\n"
	"run options:\n"
	"  -c, --config FILE          node configuration (YAML)\n"
	"      --scenario FILE        replay a scenario file of timed events\n"
	"      --speed X              scenario speed factor (default 1)\n"
	"      --loop N               play the scenario N times, 0 = forever "
	"(default 1)\n"
	"      --exit-after-scenario  stop once the scenario is played and "
	"receipted\n"
	"      --log-level LEVEL      error, warn, info (default), debug\n"
	"exit status: 0 ok, 1 runtime failure, 2 bad usage or invalid "
	"configuration\n";

struct app {
	uv_loop_t loop;
	struct node_config cfg;
	struct vigie_node *node;
	struct node_input *input;
	struct sia_receiver *panels;
	struct node_scenario *scenario;
	uv_signal_t sigint, sigterm;
	uv_timer_t drain;
	bool exit_after_scenario;
	bool stopping;
	int status;
};

static void on_handle_closed(uv_handle_t *h)
{
	(void)h;
}

static void on_node_closed(void *arg)
{
	struct app *a = arg;

	a->node = NULL;
	if (a->scenario)
		vigie__scenario_close(a->scenario);
	a->scenario = NULL;
	uv_close((uv_handle_t *)&a->sigint, on_handle_closed);
	uv_close((uv_handle_t *)&a->sigterm, on_handle_closed);
	uv_close((uv_handle_t *)&a->drain, on_handle_closed);
}

static void shutdown_app(struct app *a)
{
	if (a->stopping)
		return;
	a->stopping = true;
	vigie_log_info("stopping");
	if (a->scenario)
		vigie__scenario_stop(a->scenario);
	uv_timer_stop(&a->drain);
	if (a->input)
		vigie__input_close(a->input, NULL, NULL);
	a->input = NULL;
	/* Before the node: the receiver is released once the node has
	 * reported on every panel event it was given. */
	if (a->panels)
		vigie__sia_close(a->panels, NULL, NULL);
	a->panels = NULL;
	vigie__node_close(a->node, on_node_closed, a);
}

static void on_signal(uv_signal_t *h, int signum)
{
	(void)signum;
	shutdown_app(h->data);
}

static void drain_cb(uv_timer_t *t)
{
	struct app *a = t->data;
	struct vigie_node_stats st;

	vigie__node_stats(a->node, &st);
	if (st.pending == 0) {
		vigie_log_info("scenario played and receipted");
		shutdown_app(a);
	}
}

static void on_scenario_done(void *arg)
{
	struct app *a = arg;

	vigie_log_info("scenario played");
	if (a->exit_after_scenario)
		uv_timer_start(&a->drain, drain_cb, 0, 100);
}

static int cmd_check(const char *path)
{
	struct node_config cfg;
	char err[512];
	size_t uncovered = 0;

	if (vigie__nodeconf_load(path, &cfg, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return EXIT_USAGE;
	}
	printf("%s: valid: site %s, node %s, %zu zone(s), %zu sensor(s)%s\n",
	       path, cfg.site, cfg.node, cfg.n_zones, cfg.n_sensors,
	       cfg.has_secondary ? ", dual path" : "");
	if (cfg.panels)
		printf("panels: %zu listener(s), %zu account(s)\n",
		       cfg.panels->n_listen, cfg.panels->n_accounts);
	for (size_t i = 0; i < cfg.n_zones; i++) {
		if (vigie__nodeconf_covered(&cfg, cfg.zones[i].id))
			continue;
		printf("uncovered zone: %s%s%s%s\n", cfg.zones[i].id,
		       cfg.zones[i].name ? " (" : "",
		       cfg.zones[i].name ? cfg.zones[i].name : "",
		       cfg.zones[i].name ? ")" : "");
		uncovered++;
	}
	if (!uncovered)
		printf("every zone is covered by at least one sensor\n");
	vigie__nodeconf_free(&cfg);
	return 0;
}

/* inject: send event lines and print the node's answer to each. Lines are
 * pipelined (a file of thousands of events is not paced by the fsyncs) while
 * answers, one per line in order, are read as they come. */
struct inject {
	int fd;
	int argc, next_arg;
	char **argv;
	bool input_done;
	char out[NODE_LINE_MAX + 2];
	size_t out_len, out_off;
	char in[4096];
	size_t in_len;
	unsigned long sent, answered, failures;
};

/* Fetch the next line to send into out; false at the end of the input. */
static bool inject_next_line(struct inject *j)
{
	size_t len;

	for (;;) {
		if (j->argc > 0) {
			if (j->next_arg >= j->argc)
				return false;
			snprintf(j->out, sizeof(j->out), "%s",
				 j->argv[j->next_arg++]);
		} else if (!fgets(j->out, sizeof(j->out), stdin)) {
			return false;
		}
		len = strlen(j->out);
		if (len == sizeof(j->out) - 1 && j->out[len - 1] != '\n') {
			fprintf(stderr,
				"vigie-node inject: line longer than %d bytes, "
				"stopping\n",
				NODE_LINE_MAX);
			j->failures++;
			return false;
		}
		while (len &&
		       (j->out[len - 1] == '\n' || j->out[len - 1] == '\r'))
			len--;
		if (!len || j->out[0] == '#')
			continue;
		j->out[len++] = '\n';
		j->out_len = len;
		j->out_off = 0;
		return true;
	}
}

static void inject_read_answers(struct inject *j)
{
	char *nl;

	while ((nl = memchr(j->in, '\n', j->in_len))) {
		size_t n = (size_t)(nl - j->in) + 1;

		fwrite(j->in, 1, n, stdout);
		if (strncmp(j->in, "OK", 2) != 0)
			j->failures++;
		j->answered++;
		memmove(j->in, j->in + n, j->in_len - n);
		j->in_len -= n;
	}
}

static int cmd_inject(const char *sock_path, int argc, char **argv)
{
	struct inject j = {.argc = argc, .argv = argv};
	struct sockaddr_un sa;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(sock_path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "vigie-node inject: socket path too long: %s\n",
			sock_path);
		return EXIT_USAGE;
	}
	strcpy(sa.sun_path, sock_path);
	signal(SIGPIPE, SIG_IGN);
	j.fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (j.fd < 0 || connect(j.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror(sock_path);
		if (j.fd >= 0)
			close(j.fd);
		return 1;
	}
	j.input_done = !inject_next_line(&j);
	while (!j.input_done || j.answered < j.sent) {
		struct pollfd pfd = {.fd = j.fd, .events = POLLIN};
		ssize_t n;

		if (!j.input_done)
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, -1) < 0)
			break;
		if (pfd.revents & POLLOUT) {
			n = write(j.fd, j.out + j.out_off,
				  j.out_len - j.out_off);
			if (n < 0) {
				perror("vigie-node inject: write");
				j.failures++;
				break;
			}
			j.out_off += (size_t)n;
			if (j.out_off == j.out_len) {
				j.sent++;
				j.input_done = !inject_next_line(&j);
			}
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(j.fd, j.in + j.in_len,
				 sizeof(j.in) - j.in_len);
			if (n <= 0) {
				fprintf(stderr, "vigie-node inject: connection "
						"closed by the node\n");
				j.failures++;
				break;
			}
			j.in_len += (size_t)n;
			inject_read_answers(&j);
			if (j.in_len == sizeof(j.in)) {
				fprintf(stderr, "vigie-node inject: answer "
						"line too long\n");
				j.failures++;
				break;
			}
		}
	}
	close(j.fd);
	if (j.answered < j.sent)
		fprintf(stderr,
			"vigie-node inject: %lu of %lu line(s) unanswered\n",
			j.sent - j.answered, j.sent);
	return j.failures || j.answered < j.sent ? 1 : 0;
}

/* keygen: idempotent. An existing key is kept (never replaced: the relay's
 * trust store names it) and its .pub written again if missing. */
static int cmd_keygen(int argc, char **argv)
{
	const char *site = NULL, *node = NULL, *out = NULL;
	struct vigie_sign_key k;
	char line[256], pub[4096], err[512];
	bool created = false;
	FILE *f;
	int rc;

	for (int i = 0; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--site") == 0)
			site = argv[i + 1];
		else if (strcmp(argv[i], "--node") == 0)
			node = argv[i + 1];
		else if (strcmp(argv[i], "--out") == 0)
			out = argv[i + 1];
		else
			break;
	}
	if (!site || !node || !out || argc % 2) {
		fprintf(stderr, "usage: vigie-node keygen --site S --node N "
				"--out FILE\n");
		return EXIT_USAGE;
	}
	if (!vigie_id_valid(site) || !vigie_id_valid(node)) {
		fprintf(stderr, "vigie-node keygen: site and node are ids "
				"([a-z0-9_-], 1..64)\n");
		return EXIT_USAGE;
	}
	if (access(out, F_OK) == 0) {
		rc = vigie_sign_key_load(out, &k, err, sizeof(err));
	} else {
		rc = vigie_sign_keygen(&k);
		if (rc == 0)
			rc = vigie_sign_key_save(&k, out);
		if (rc)
			snprintf(err, sizeof(err), "%s: cannot write: %s", out,
				 vigie_strerror(rc));
		created = rc == 0;
	}
	if (rc) {
		fprintf(stderr, "vigie-node keygen: %s\n", err);
		return 1;
	}
	rc = vigie_sign_trust_line(&k, site, node, line, sizeof(line));
	snprintf(pub, sizeof(pub), "%s.pub", out);
	f = rc ? NULL : fopen(pub, "we");
	if (!f || fputs(line, f) == EOF || fclose(f) != 0) {
		fprintf(stderr, "vigie-node keygen: cannot write %s\n", pub);
		vigie_sign_key_wipe(&k);
		return 1;
	}
	printf("%s %s key %s for %s/%s\n", created ? "created" : "kept", out,
	       k.key_id, site, node);
	vigie_sign_key_wipe(&k);
	return 0;
}

static int cmd_run(const char *config, const char *scenario_path, double speed,
		   unsigned loops, bool exit_after)
{
	static struct app a;
	char err[512];
	int rc;

	memset(&a, 0, sizeof(a));
	if (vigie__nodeconf_load(config, &a.cfg, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return EXIT_USAGE;
	}
	if (a.cfg.signing_key)
		vigie_log_info("signing events and heartbeats with key %s",
			       a.cfg.signing_key->key_id);
	else
		vigie_log_warn("no signing_key in %s: events and heartbeats "
			       "go unsigned (a relay with a trust store "
			       "refuses them)",
			       config);
	if (scenario_path && vigie__scenario_load(scenario_path, &a.scenario,
						  err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		vigie__nodeconf_free(&a.cfg);
		return EXIT_USAGE;
	}
	a.exit_after_scenario = exit_after;
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&a.loop);
	vigie_mqtt_lib_init();
	for (size_t i = 0; i < a.cfg.n_zones; i++)
		if (!vigie__nodeconf_covered(&a.cfg, a.cfg.zones[i].id))
			vigie_log_warn("zone %s is covered by no sensor",
				       a.cfg.zones[i].id);
	rc = vigie__node_open(&a.loop, &a.cfg, &a.node);
	if (rc) {
		vigie_log_error("cannot start node: %s", vigie_strerror(rc));
		a.status = 1;
		goto out_loop;
	}
	uv_signal_init(&a.loop, &a.sigint);
	uv_signal_init(&a.loop, &a.sigterm);
	uv_timer_init(&a.loop, &a.drain);
	a.sigint.data = a.sigterm.data = a.drain.data = &a;
	uv_signal_start(&a.sigint, on_signal, SIGINT);
	uv_signal_start(&a.sigterm, on_signal, SIGTERM);
	if (a.cfg.socket_path) {
		rc = vigie__input_open(&a.loop, a.node, a.cfg.socket_path,
				       &a.input);
		if (rc) {
			a.status = 1;
			shutdown_app(&a);
		}
	}
	if (!a.stopping && a.cfg.panels) {
		rc = vigie__sia_open(&a.loop, a.node, a.cfg.panels, &a.panels);
		if (rc) {
			vigie_log_error("cannot start the panel receiver: %s",
					vigie_strerror(rc));
			a.status = 1;
			shutdown_app(&a);
		}
	}
	if (!a.stopping) {
		vigie__node_start(a.node);
		if (a.scenario) {
			vigie_log_info("playing %zu event(s) from %s at x%g",
				       vigie__scenario_len(a.scenario),
				       scenario_path, speed);
			vigie__scenario_play(a.scenario, &a.loop, a.node, speed,
					     loops, on_scenario_done, &a);
		}
	}
	uv_run(&a.loop, UV_RUN_DEFAULT);
out_loop:
	if (a.scenario)
		vigie__scenario_close(a.scenario);
	uv_run(&a.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&a.loop) != 0) {
		vigie_log_error("handles left open at exit");
		a.status = 1;
	}
	vigie_mqtt_lib_cleanup();
	vigie__nodeconf_free(&a.cfg);
	return a.status;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"socket", required_argument, NULL, 's'},
		{"scenario", required_argument, NULL, 'S'},
		{"speed", required_argument, NULL, 'x'},
		{"loop", required_argument, NULL, 'l'},
		{"exit-after-scenario", no_argument, NULL, 'e'},
		{"log-level", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *cmd = "run", *config = NULL, *sock = NULL, *scenario = NULL;
	enum vigie_log_level level = VIGIE_LOG_INFO;
	bool exit_after = false;
	double speed = 1.0;
	unsigned long loops = 1;
	char *end;
	int c;

	if (argc > 1 && argv[1][0] != '-') {
		cmd = argv[1];
		argv++;
		argc--;
	}
	if (strcmp(cmd, "keygen") == 0)
		return cmd_keygen(argc - 1, argv + 1);
	if (vigie__simulate_wanted(argc, argv))
		return vigie__simulate_main(argc, argv);
	while ((c = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 's':
			sock = optarg;
			break;
		case 'S':
			scenario = optarg;
			break;
		case 'x':
			speed = strtod(optarg, &end);
			if (*end || !(speed > 0) || speed > 1e6) {
				fprintf(stderr,
					"vigie-node: --speed: expected a "
					"positive number, got \"%s\"\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'l':
			loops = strtoul(optarg, &end, 10);
			if (*end || !*optarg || optarg[0] == '-' ||
			    loops > 1000000) {
				fprintf(stderr,
					"vigie-node: --loop: expected a count "
					"from 0 to 1000000, got \"%s\"\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'e':
			exit_after = true;
			break;
		case 'L':
			if (vigie_log_level_arg("vigie-node", optarg, &level)) {
				return EXIT_USAGE;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case 'V':
			printf("vigie-node %s\n", VIGIE_VERSION);
			return 0;
		default:
			fputs(usage, stderr);
			return EXIT_USAGE;
		}
	}
	vigie_log_init("vigie-node", level);
	if (strcmp(cmd, "check-config") == 0) {
		if (optind < argc)
			config = argv[optind++];
		if (!config || optind != argc) {
			fprintf(stderr,
				"usage: vigie-node check-config FILE\n");
			return EXIT_USAGE;
		}
		return cmd_check(config);
	}
	if (strcmp(cmd, "inject") == 0) {
		struct node_config cfg;
		char err[512];
		int rc;

		if (!sock && config) {
			if (vigie__nodeconf_load(config, &cfg, err,
						 sizeof(err))) {
				fprintf(stderr, "%s\n", err);
				return EXIT_USAGE;
			}
			if (!cfg.socket_path) {
				fprintf(stderr, "%s: no socket configured\n",
					config);
				vigie__nodeconf_free(&cfg);
				return EXIT_USAGE;
			}
			rc = cmd_inject(cfg.socket_path, argc - optind,
					argv + optind);
			vigie__nodeconf_free(&cfg);
			return rc;
		}
		if (!sock) {
			fprintf(stderr, "vigie-node inject: give -s SOCKET or "
					"-c CONFIG\n");
			return EXIT_USAGE;
		}
		return cmd_inject(sock, argc - optind, argv + optind);
	}
	if (strcmp(cmd, "run") != 0) {
		fprintf(stderr, "vigie-node: unknown command \"%s\"\n%s", cmd,
			usage);
		return EXIT_USAGE;
	}
	if (!config || optind != argc) {
		fprintf(stderr, "vigie-node: %s\n%s",
			config ? "unexpected argument" : "-c FILE is required",
			usage);
		return EXIT_USAGE;
	}
	if (exit_after && !scenario) {
		fprintf(stderr,
			"vigie-node: --exit-after-scenario needs --scenario\n");
		return EXIT_USAGE;
	}
	return cmd_run(config, scenario, speed, (unsigned)loops, exit_after);
}
