/* vigie-bench: measures the node, its panel receiver and the relay, and
 * prints one JSON object per figure on stdout,
 *   {"name":..,"value":..,"unit":..[,"baseline":..,"ratio":..]};
 * progress goes to stderr. Everything runs on 127.0.0.1 with brokers,
 * nodes and relays it starts itself and stops again, also when
 * interrupted. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "tls_bench.h"
#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/mqtt.h"

#define EXIT_USAGE 2
#define MAX_ONLY   16

static const char usage[] =
	"usage: vigie-bench [--quick] [--only PREFIX]... [--no-persistence]\n"
	"                   [--realtime] [--verbose]\n"
	"  --only PREFIX     run only the figures whose name starts with "
	"PREFIX\n"
	"                    (repeatable), e.g. --only node.latency\n"
	"  --quick           short run (CI smoke test, under 45 s)\n"
	"  --no-persistence  site brokers without persistence, to take the\n"
	"                    broker's disk out of the figures (production has "
	"it)\n"
	"  --realtime        run every process of the run under SCHED_FIFO\n"
	"                    (root or CAP_SYS_NICE): on a shared machine,\n"
	"                    other load then waits (\"sched\" in each figure)\n"
	"  --verbose         log the node's and libvigie's info messages\n"
	"  --help            this text\n"
	"figures: node.publish_rate (events/s), node.latency_p50 and\n"
	"node.latency_p99 (us), node.idle_rss (MB), node.idle_cpu (%),\n"
	"panels.frame_rate and panels.frame_rate_aes (frames/s),\n"
	"panels.latency_p99 and panels.ack_latency_p99 (us),\n"
	"relay.latency_p50 and relay.latency_p99 (us), relay.throughput\n"
	"(events/s), relay.rss_10k_nodes (MB), patterns.eval_rate\n"
	"(incidents/s), patterns.bytes_per_incident, security.verify_us,\n"
	"relay.throughput_signed (events/s), security.tls_reconnect_ms\n"
	"output: one JSON object per line on stdout; progress on stderr\n"
	"exit status: 0 all figures measured, 1 some failed, 2 bad usage\n";

struct figure {
	const char *names[6]; /* what it emits, NULL-terminated */
	int (*run)(const struct bench_opts *o);
};

static const struct figure figures[] = {
	{{"node.publish_rate", NULL}, bench_publish_rate},
	{{"node.latency_p50", "node.latency_p99", NULL}, bench_latency},
	{{"node.idle_rss", "node.idle_cpu", NULL}, bench_idle},
	{{"panels.frame_rate", "panels.frame_rate_aes", "panels.latency_p99",
	  "panels.ack_latency_p99", NULL},
	 bench_panels},
	{{"relay.latency_p50", "relay.latency_p99", NULL}, bench_relay_latency},
	{{"relay.throughput", NULL}, bench_relay_throughput},
	{{"relay.rss_10k_nodes", NULL}, bench_relay_rss},
	{{"patterns.eval_rate", "patterns.bytes_per_incident", NULL},
	 bench_patterns},
	{{"security.verify_us", NULL}, bench_security},
	{{"relay.throughput_signed", NULL}, bench_relay_throughput_signed},
	{{"security.tls_reconnect_ms", NULL}, bench_tls_reconnect},
};

bool bench_wanted(const struct bench_opts *o, const char *name)
{
	if (!o->only)
		return true;
	for (const char *const *p = o->only; *p; p++)
		if (strncmp(name, *p, strlen(*p)) == 0)
			return true;
	return false;
}

void bench_progress(const char *fmt, ...)
{
	va_list ap;

	fputs("vigie-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Numbers as JSON allows them: finite, no locale. */
static void put_number(double v)
{
	if (!isfinite(v))
		v = 0;
	/* Six significant digits, but never an exponent for large values. */
	if (fabs(v) >= 1e5)
		printf("%.0f", v);
	else
		printf("%.6g", v);
}

void bench_emit(const struct bench_opts *o, const char *name, double value,
		const char *unit, double baseline)
{
	if (!bench_wanted(o, name))
		return;
	printf("{\"name\":\"%s\",\"value\":", name);
	put_number(value);
	printf(",\"unit\":\"%s\"", unit);
	printf(",\"sched\":\"%s\"", o->realtime ? "fifo" : "other");
	if (baseline > 0) {
		printf(",\"baseline\":");
		put_number(baseline);
		printf(",\"ratio\":%.3f", value / baseline);
	}
	printf("}\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"only", required_argument, NULL, 'o'},
		{"quick", no_argument, NULL, 'q'},
		{"no-persistence", no_argument, NULL, 'P'},
		{"verbose", no_argument, NULL, 'v'},
		{"realtime", no_argument, NULL, 'R'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *only[MAX_ONLY + 1] = {NULL};
	struct bench_opts o = {0};
	enum vigie_log_level level = VIGIE_LOG_WARN;
	size_t n_only = 0;
	int failed = 0, ran = 0, c, rc;

	while ((c = getopt_long(argc, argv, "o:qvh", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (n_only == MAX_ONLY) {
				fprintf(stderr,
					"vigie-bench: at most %d --only\n",
					MAX_ONLY);
				return EXIT_USAGE;
			}
			only[n_only++] = optarg;
			break;
		case 'q':
			o.quick = true;
			break;
		case 'P':
			o.no_persistence = true;
			break;
		case 'v':
			level = VIGIE_LOG_INFO;
			break;
		case 'R':
			o.realtime = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "vigie-bench: unexpected argument \"%s\"\n%s",
			argv[optind], usage);
		return EXIT_USAGE;
	}
	if (n_only)
		o.only = only;
	vigie_log_init("vigie-bench", level);
	if (o.realtime) {
		/* Inherited by every thread and process started from here. */
		struct sched_param sp = {.sched_priority = 10};

		if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) {
			fprintf(stderr,
				"vigie-bench: --realtime: cannot use "
				"SCHED_FIFO: %s (needs root or "
				"CAP_SYS_NICE)\n",
				strerror(errno));
			return 1;
		}
	}
	rc = bench_proc_init();
	if (rc) {
		fprintf(stderr, "vigie-bench: cannot set up: %s\n",
			vigie_strerror(rc));
		return 1;
	}
	vigie_mqtt_lib_init();
	for (size_t i = 0; i < sizeof(figures) / sizeof(figures[0]); i++) {
		const struct figure *f = &figures[i];
		bool wanted = false;

		for (const char *const *n = f->names; *n; n++)
			wanted = wanted || bench_wanted(&o, *n);
		if (!wanted)
			continue;
		ran++;
		rc = f->run(&o);
		if (rc) {
			fprintf(stderr, "vigie-bench: %s: failed: %s\n",
				f->names[0], vigie_strerror(rc));
			failed++;
		}
	}
	if (!ran) {
		fprintf(stderr, "vigie-bench: no figure matches --only\n");
		failed++;
	}
	vigie_mqtt_lib_cleanup();
	bench_proc_cleanup();
	return failed ? 1 : 0;
}
