/* vigie-node --simulate N: N virtual nodes per config template, all in one
 * process on one loop, each a full node core (node.c): its own id, outbox,
 * MQTT connection(s), birth, will, heartbeats, receipts and failover.
 *
 * A template is an ordinary node config. Virtual node i of a template whose
 * node id is "hall" is "hall-0001" (four digits, more when needed), numbered
 * from --simulate-first. The template's `outbox` names a DIRECTORY here
 * (created if missing, one level): virtual node hall-0001 of site louvre
 * keeps its outbox in OUTBOX/louvre-hall-0001.db (+ -wal, -shm). Every
 * virtual node logs in with the template's credentials, so the site broker
 * needs a shared node user (the generator's `node`), and signs with the
 * template's key (a relay with a trust store needs a line per virtual node).
 * The socket input and the panel receiver of a template are not started.
 *
 * File descriptors: each virtual node holds the SQLite database, its WAL
 * and its shared-memory file, and per configured path the MQTT socket and
 * libmosquitto's internal socket pair: 6 per node, 9 with a secondary path
 * (measured: 1809 for 300 nodes). RLIMIT_NOFILE is raised to what that
 * needs, above the hard limit too when the process may (root). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "node.h"
#include "simulate.h"
#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"

#define EXIT_USAGE      2
#define MAX_TEMPLATES   4096
#define MAX_VIRTUAL     1000000
#define FDS_DB          3 /* database, -wal, -shm */
#define FDS_PATH        3 /* socket, libmosquitto's socket pair */
#define FDS_SPARE       256
#define RATE_TICK_MS    10
#define RAMP_TICK_MS    10
#define DEFAULT_RAMP    1000 /* connections started per second */
#define DEFAULT_STATS_S 10
#define DEFAULT_LINE    "kind=test state=test text=\"simulated event\""

static const char sim_usage[] =
	"usage: vigie-node --simulate N -c TEMPLATE [-c TEMPLATE ...] "
	"[options]\n"
	"  run N virtual nodes per template in this process; node ids get a\n"
	"  suffix (hall -> hall-0001 ...), the template's outbox names a "
	"directory\n"
	"      --simulate-first K      number of the first virtual node "
	"(default 1)\n"
	"      --simulate-rate R       events per second, spread round-robin "
	"over\n"
	"                              the virtual nodes once all are started\n"
	"                              (default 0: heartbeats only)\n"
	"      --simulate-count M      stop generating after M events "
	"(default: no end)\n"
	"      --simulate-line LINE    the event line submitted (default: a "
	"test event)\n"
	"      --simulate-ramp C       connections started per second "
	"(default 1000)\n"
	"      --simulate-stats S      log totals every S seconds (default 10, "
	"0 off)\n"
	"      --simulate-duration S   stop after S seconds (default: until "
	"SIGTERM)\n"
	"      --log-level LEVEL       error, warn, info (default), debug\n";

struct simulate;

struct sim_node {
	struct simulate *sim;
	struct node_config cfg; /* the template's, with node and outbox set */
	struct vigie_node *node;
	char id[VIGIE_ID_MAX + 1];
	char *outbox;
};

struct simulate {
	uv_loop_t loop;
	struct node_config *templates;
	size_t n_templates;
	struct sim_node *nodes;
	size_t n_nodes;
	size_t opened;  /* nodes[0..opened) have a node core */
	size_t started; /* nodes[0..started) were started */
	size_t open_left;
	unsigned long first;
	double rate, ramp, credit;
	uint64_t max_events; /* 0: no end */
	uint64_t last_rate_ms, start_ms;
	size_t next_submit;
	struct node_event ev;
	uint64_t submitted, refused, durable, failed;
	uv_timer_t rate_timer, ramp_timer, stats_timer, stop_timer;
	uv_signal_t sigint, sigterm;
	int handles_open;
	bool stopping;
	int status;
};

bool vigie__simulate_wanted(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return false;
		if (strcmp(argv[i], "--simulate") == 0 ||
		    strncmp(argv[i], "--simulate=", 11) == 0)
			return true;
	}
	return false;
}

static int parse_count(const char *opt, const char *s, unsigned long min,
		       unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || !*s || s[0] == '-' || v < min || v > max) {
		fprintf(stderr,
			"vigie-node: %s: expected a whole number from %lu to "
			"%lu, got \"%s\"\n",
			opt, min, max, s);
		return EXIT_USAGE;
	}
	*out = v;
	return 0;
}

static int parse_real(const char *opt, const char *s, double max, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (*end || !*s || !(v >= 0) || v > max) {
		fprintf(stderr,
			"vigie-node: %s: expected a number from 0 to %g, got "
			"\"%s\"\n",
			opt, max, s);
		return EXIT_USAGE;
	}
	*out = v;
	return 0;
}

/* Raise RLIMIT_NOFILE to what `need` descriptors take: the soft limit up to
 * the hard one, and the hard one too when we may (CAP_SYS_RESOURCE). */
static int raise_nofile(uint64_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		vigie_log_error("getrlimit(RLIMIT_NOFILE): %s",
				strerror(errno));
		return VIGIE_ESYS;
	}
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
		struct rlimit want = {.rlim_cur = need, .rlim_max = need};

		if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
			vigie_log_info("file descriptor limit raised to %llu "
				       "(hard limit was %llu)",
				       (unsigned long long)need,
				       (unsigned long long)rl.rlim_max);
			return 0;
		}
		vigie_log_error("%llu virtual node descriptors need "
				"RLIMIT_NOFILE >= %llu but the hard limit is "
				"%llu and cannot be raised (%s): raise it "
				"(ulimit -Hn, systemd LimitNOFILE=, "
				"docker --ulimit nofile=) or simulate fewer "
				"nodes",
				(unsigned long long)(need - FDS_SPARE),
				(unsigned long long)need,
				(unsigned long long)rl.rlim_max,
				strerror(errno));
		return VIGIE_ESYS;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			vigie_log_error("setrlimit(RLIMIT_NOFILE): %s",
					strerror(errno));
			return VIGIE_ESYS;
		}
	}
	return 0;
}

static int make_outbox_dir(const char *path)
{
	struct stat sb;

	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		vigie_log_error("outbox directory %s: %s", path,
				strerror(errno));
		return VIGIE_EIO;
	}
	if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		vigie_log_error("outbox %s: with --simulate the template's "
				"outbox names a directory (one file per "
				"virtual node in it)",
				path);
		return VIGIE_EINVAL;
	}
	return 0;
}

/* Give virtual node `sn` its id and outbox, from template `t`. */
static int setup_node(struct sim_node *sn, const struct node_config *t,
		      unsigned long number, int width)
{
	int len;

	len = snprintf(sn->id, sizeof(sn->id), "%s-%0*lu", t->node, width,
		       number);
	if (len < 0 || (size_t)len >= sizeof(sn->id) ||
	    !vigie_id_valid(sn->id)) {
		vigie_log_error("%s: node id \"%s-%0*lu\" is not a valid id "
				"(at most %d characters of [a-z0-9_-])",
				t->path, t->node, width, number, VIGIE_ID_MAX);
		return VIGIE_EINVAL;
	}
	len = snprintf(NULL, 0, "%s/%s-%s.db", t->outbox, t->site, sn->id);
	sn->outbox = malloc((size_t)len + 1);
	if (!sn->outbox)
		return VIGIE_ENOMEM;
	snprintf(sn->outbox, (size_t)len + 1, "%s/%s-%s.db", t->outbox, t->site,
		 sn->id);
	/* A shallow copy: zones, sensors, brokers and key stay the
	 * template's, which outlives every virtual node. */
	sn->cfg = *t;
	sn->cfg.node = sn->id;
	sn->cfg.outbox = sn->outbox;
	sn->cfg.socket_path = NULL;
	sn->cfg.panels = NULL;
	return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct simulate *s = h->data;

	s->handles_open--;
}

static void close_handles(struct simulate *s)
{
	uv_handle_t *hs[] = {
		(uv_handle_t *)&s->rate_timer,  (uv_handle_t *)&s->ramp_timer,
		(uv_handle_t *)&s->stats_timer, (uv_handle_t *)&s->stop_timer,
		(uv_handle_t *)&s->sigint,      (uv_handle_t *)&s->sigterm,
	};

	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		uv_close(hs[i], on_handle_closed);
}

static void log_stats(struct simulate *s, const char *when)
{
	struct vigie_node_stats st;
	uint64_t accepted = 0, receipted = 0, failovers = 0, resent = 0;
	size_t pending = 0, secondary = 0;

	for (size_t i = 0; i < s->opened; i++) {
		if (!s->nodes[i].node)
			continue;
		vigie__node_stats(s->nodes[i].node, &st);
		accepted += st.accepted;
		receipted += st.receipted;
		failovers += st.failovers;
		resent += st.resent;
		pending += st.pending;
		if (strcmp(st.active_path, "primary") != 0)
			secondary++;
	}
	vigie_log_info(
		"simulate %s: %zu of %zu virtual node(s) started, "
		"%llu submitted, %llu accepted, %llu durable, "
		"%llu receipted, %zu pending, %llu resent, "
		"%llu refused, %llu failover(s), %zu on secondary",
		when, s->started, s->n_nodes, (unsigned long long)s->submitted,
		(unsigned long long)accepted, (unsigned long long)s->durable,
		(unsigned long long)receipted, pending,
		(unsigned long long)resent, (unsigned long long)s->refused,
		(unsigned long long)failovers, secondary);
}

static void on_node_closed(void *arg)
{
	struct sim_node *sn = arg;
	struct simulate *s = sn->sim;

	sn->node = NULL;
	if (--s->open_left == 0)
		close_handles(s);
}

static void stop_sim(struct simulate *s)
{
	if (s->stopping)
		return;
	s->stopping = true;
	log_stats(s, "totals");
	vigie_log_info("stopping %zu virtual node(s)", s->opened);
	uv_timer_stop(&s->rate_timer);
	uv_timer_stop(&s->ramp_timer);
	uv_timer_stop(&s->stats_timer);
	uv_timer_stop(&s->stop_timer);
	s->open_left = 0;
	for (size_t i = 0; i < s->opened; i++)
		if (s->nodes[i].node)
			s->open_left++;
	if (s->open_left == 0) {
		close_handles(s);
		return;
	}
	for (size_t i = 0; i < s->opened; i++)
		if (s->nodes[i].node)
			vigie__node_close(s->nodes[i].node, on_node_closed,
					  &s->nodes[i]);
}

static void on_signal(uv_signal_t *h, int signum)
{
	(void)signum;
	stop_sim(h->data);
}

static void stop_timer_cb(uv_timer_t *t)
{
	stop_sim(t->data);
}

static void stats_cb(uv_timer_t *t)
{
	log_stats(t->data, "stats");
}

static void rate_cb(uv_timer_t *t);

/* Connections are started a few at a time: ten thousand SYNs at once
 * overflow the brokers' listen backlog and every node then backs off. */
static void ramp_cb(uv_timer_t *t)
{
	struct simulate *s = t->data;
	uint64_t elapsed = vigie_clock_mono_ms() - s->start_ms;
	double due = s->ramp > 0 ? (double)elapsed * s->ramp / 1000.0 + 1
				 : (double)s->n_nodes;
	size_t target = due >= (double)s->n_nodes ? s->n_nodes : (size_t)due;

	while (s->started < target) {
		struct sim_node *sn = &s->nodes[s->started++];
		int rc = vigie__node_start(sn->node);

		if (rc)
			vigie_log_warn("virtual node %s/%s: start: %s (it "
				       "retries)",
				       sn->cfg.site, sn->id,
				       vigie_strerror(rc));
	}
	if (s->started == s->n_nodes) {
		uv_timer_stop(&s->ramp_timer);
		vigie_log_info("all %zu virtual node(s) started in %llu ms",
			       s->n_nodes, (unsigned long long)elapsed);
		/* Events only once every node runs: generated during the
		 * ramp, round-robin over a growing set would leave the last
		 * nodes started without any. */
		if (s->rate > 0) {
			s->last_rate_ms = vigie_clock_mono_ms();
			uv_timer_start(&s->rate_timer, rate_cb, RATE_TICK_MS,
				       RATE_TICK_MS);
		}
	}
}

static void on_durable(void *arg, int status, uint64_t boot_id, uint64_t seq,
		       const char *err)
{
	struct simulate *s = arg;

	(void)boot_id;
	(void)seq;
	(void)err;
	if (status == 0)
		s->durable++;
	else
		s->failed++;
}

/* Events are spread round-robin over the virtual nodes, at the mean rate
 * asked, in bursts of one tick's worth. */
static void rate_cb(uv_timer_t *t)
{
	struct simulate *s = t->data;
	uint64_t now = vigie_clock_mono_ms();
	char err[256];

	s->credit += (double)(now - s->last_rate_ms) * s->rate / 1000.0;
	s->last_rate_ms = now;
	/* A stalled loop does not turn into a burst of its backlog. */
	if (s->credit > s->rate + 1)
		s->credit = s->rate + 1;
	while (s->credit >= 1 && s->started > 0) {
		if (s->max_events && s->submitted >= s->max_events) {
			vigie_log_info("simulate: %llu event(s) submitted, "
				       "generator stopped",
				       (unsigned long long)s->submitted);
			uv_timer_stop(&s->rate_timer);
			break;
		}
		struct sim_node *sn;
		int rc;

		s->credit -= 1;
		if (s->next_submit >= s->started)
			s->next_submit = 0;
		sn = &s->nodes[s->next_submit++];
		rc = vigie__node_submit(sn->node, &s->ev, "simulate",
					on_durable, s, err, sizeof(err));
		if (rc) {
			if (s->refused++ == 0)
				vigie_log_warn("virtual node %s/%s refused an "
					       "event: %s (counted, logged "
					       "once)",
					       sn->cfg.site, sn->id, err);
			continue;
		}
		s->submitted++;
	}
}

static int open_nodes(struct simulate *s, unsigned long per_template)
{
	unsigned long last = s->first + per_template - 1;
	int width = 4;
	int rc;

	for (unsigned long v = last; v >= 10000; v /= 10)
		width++;
	for (size_t t = 0; t < s->n_templates; t++) {
		rc = make_outbox_dir(s->templates[t].outbox);
		if (rc)
			return rc;
	}
	for (size_t t = 0, i = 0; t < s->n_templates; t++) {
		for (unsigned long k = 0; k < per_template; k++, i++) {
			struct sim_node *sn = &s->nodes[i];

			sn->sim = s;
			rc = setup_node(sn, &s->templates[t], s->first + k,
					width);
			if (rc)
				return rc;
		}
	}
	/* Open every outbox before any connection starts: opening commits a
	 * new boot id (an fsync each) and must not hold the loop while the
	 * first nodes are already keeping MQTT sessions alive. */
	for (size_t i = 0; i < s->n_nodes; i++) {
		struct sim_node *sn = &s->nodes[i];

		rc = vigie__node_open(&s->loop, &sn->cfg, &sn->node);
		if (rc) {
			vigie_log_error("virtual node %s/%s: cannot open: %s",
					sn->cfg.site, sn->id,
					vigie_strerror(rc));
			sn->node = NULL;
			return rc;
		}
		s->opened = i + 1;
	}
	return 0;
}

static int run(struct simulate *s, unsigned long per_template, double stats_s,
	       double duration_s)
{
	uint64_t open_ms = vigie_clock_mono_ms();
	int rc;

	signal(SIGPIPE, SIG_IGN);
	/* Outbox commits run on libuv's pool: with thousands of files, more
	 * fsyncs in flight at once. Read when the pool first starts. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	uv_loop_init(&s->loop);
	vigie_mqtt_lib_init();
	uv_timer_init(&s->loop, &s->rate_timer);
	uv_timer_init(&s->loop, &s->ramp_timer);
	uv_timer_init(&s->loop, &s->stats_timer);
	uv_timer_init(&s->loop, &s->stop_timer);
	uv_signal_init(&s->loop, &s->sigint);
	uv_signal_init(&s->loop, &s->sigterm);
	s->rate_timer.data = s->ramp_timer.data = s;
	s->stats_timer.data = s->stop_timer.data = s;
	s->sigint.data = s->sigterm.data = s;
	s->handles_open = 6;
	uv_signal_start(&s->sigint, on_signal, SIGINT);
	uv_signal_start(&s->sigterm, on_signal, SIGTERM);

	rc = open_nodes(s, per_template);
	if (rc) {
		s->status = 1;
		stop_sim(s);
		goto out_run;
	}
	vigie_log_info(
		"simulating %zu virtual node(s) from %zu template(s): "
		"outboxes opened in %llu ms, starting %g connection(s)/s",
		s->n_nodes, s->n_templates,
		(unsigned long long)(vigie_clock_mono_ms() - open_ms), s->ramp);
	s->start_ms = vigie_clock_mono_ms();
	uv_timer_start(&s->ramp_timer, ramp_cb, 0, RAMP_TICK_MS);
	if (stats_s > 0)
		uv_timer_start(&s->stats_timer, stats_cb,
			       (uint64_t)(stats_s * 1000),
			       (uint64_t)(stats_s * 1000));
	if (duration_s > 0)
		uv_timer_start(&s->stop_timer, stop_timer_cb,
			       (uint64_t)(duration_s * 1000), 0);
out_run:
	uv_run(&s->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&s->loop) != 0) {
		vigie_log_error("handles left open at exit");
		s->status = 1;
	}
	vigie_mqtt_lib_cleanup();
	return s->status;
}

int vigie__simulate_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"simulate", required_argument, NULL, 'n'},
		{"simulate-first", required_argument, NULL, 'f'},
		{"simulate-rate", required_argument, NULL, 'r'},
		{"simulate-line", required_argument, NULL, 'l'},
		{"simulate-count", required_argument, NULL, 'm'},
		{"simulate-ramp", required_argument, NULL, 'R'},
		{"simulate-stats", required_argument, NULL, 's'},
		{"simulate-duration", required_argument, NULL, 'd'},
		{"log-level", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static struct simulate s;
	enum vigie_log_level level = VIGIE_LOG_INFO;
	const char *line = DEFAULT_LINE;
	const char **paths = calloc(MAX_TEMPLATES, sizeof(*paths));
	size_t n_paths = 0;
	unsigned long per = 0, first = 1, max_events = 0;
	uint64_t fds = 0;
	double stats_s = DEFAULT_STATS_S, duration_s = 0;
	char err[512];
	int c, rc = EXIT_USAGE;

	memset(&s, 0, sizeof(s));
	s.ramp = DEFAULT_RAMP;
	if (!paths) {
		fprintf(stderr, "vigie-node: out of memory\n");
		return 1;
	}
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (n_paths == MAX_TEMPLATES) {
				fprintf(stderr,
					"vigie-node: at most %d templates\n",
					MAX_TEMPLATES);
				goto out_free_paths;
			}
			paths[n_paths++] = optarg;
			break;
		case 'n':
			if (parse_count("--simulate", optarg, 1, MAX_VIRTUAL,
					&per))
				goto out_free_paths;
			break;
		case 'f':
			if (parse_count("--simulate-first", optarg, 0,
					MAX_VIRTUAL, &first))
				goto out_free_paths;
			break;
		case 'r':
			if (parse_real("--simulate-rate", optarg, 1e6, &s.rate))
				goto out_free_paths;
			break;
		case 'l':
			line = optarg;
			break;
		case 'm':
			if (parse_count("--simulate-count", optarg, 1,
					1000000000UL, &max_events))
				goto out_free_paths;
			s.max_events = max_events;
			break;
		case 'R':
			if (parse_real("--simulate-ramp", optarg, 1e6, &s.ramp))
				goto out_free_paths;
			break;
		case 's':
			if (parse_real("--simulate-stats", optarg, 86400,
				       &stats_s))
				goto out_free_paths;
			break;
		case 'd':
			if (parse_real("--simulate-duration", optarg, 1e7,
				       &duration_s))
				goto out_free_paths;
			break;
		case 'L':
			if (vigie_log_level_arg("vigie-node", optarg, &level)) {
				goto out_free_paths;
			}
			break;
		case 'h':
			fputs(sim_usage, stdout);
			rc = 0;
			goto out_free_paths;
		default:
			fputs(sim_usage, stderr);
			goto out_free_paths;
		}
	}
	if (!per || !n_paths || optind != argc) {
		fprintf(stderr, "vigie-node: %s\n%s",
			!n_paths ? "-c TEMPLATE is required"
				 : "unexpected argument",
			sim_usage);
		goto out_free_paths;
	}
	vigie_log_init("vigie-node", level);
	if (vigie__line_parse(line, strlen(line), &s.ev, err, sizeof(err))) {
		fprintf(stderr, "vigie-node: --simulate-line: %s\n", err);
		goto out_free_paths;
	}
	s.first = first;
	s.n_templates = n_paths;
	s.n_nodes = n_paths * per;
	s.templates = calloc(n_paths, sizeof(*s.templates));
	s.nodes = calloc(s.n_nodes, sizeof(*s.nodes));
	if (!s.templates || !s.nodes) {
		fprintf(stderr, "vigie-node: out of memory for %zu nodes\n",
			s.n_nodes);
		rc = 1;
		goto out_free;
	}
	s.n_templates = 0;
	for (size_t t = 0; t < n_paths; t++) {
		if (vigie__nodeconf_load(paths[t], &s.templates[t], err,
					 sizeof(err))) {
			fprintf(stderr, "%s\n", err);
			goto out_free;
		}
		s.n_templates = t + 1;
	}
	for (size_t t = 0; t < n_paths; t++)
		fds += (uint64_t)per *
		       (FDS_DB +
			FDS_PATH * (s.templates[t].has_secondary ? 2u : 1u));
	if (raise_nofile(fds + FDS_SPARE)) {
		rc = 1;
		goto out_free;
	}
	rc = run(&s, per, stats_s, duration_s);
out_free:
	if (s.nodes)
		for (size_t i = 0; i < s.n_nodes; i++)
			free(s.nodes[i].outbox);
	free(s.nodes);
	if (s.templates)
		for (size_t t = 0; t < s.n_templates; t++)
			vigie__nodeconf_free(&s.templates[t]);
	free(s.templates);
out_free_paths:
	free(paths);
	return rc;
}
