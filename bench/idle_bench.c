/* node.idle_rss / node.idle_cpu: the real vigie-node binary (next to
 * vigie-bench) as a child, connected to a site broker with a 5 s heartbeat,
 * its socket input open, nothing to do. Sampled from /proc/PID: the largest
 * VmRSS seen, and the CPU time used over the window as a share of one core
 * (from the threads' schedstat, which counts in ns; utime+stime of
 * /proc/PID/stat, in 10 ms ticks, where schedstat is missing). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "vigie/error.h"

#define SECONDS_FULL     10u
#define SECONDS_QUICK    3u
#define SAMPLE_MS        250u
#define BIRTH_TIMEOUT_MS 10000u
/* Startup allocations and the first heartbeat are not idleness. */
#define SETTLE_MS 500u

static int node_binary(char *buf, size_t len)
{
	char dir[PATH_MAX];
	int rc = bench_self_dir(dir, sizeof(dir));

	if (rc)
		return rc;
	if (snprintf(buf, len, "%s/vigie-node", dir) >= (int)len)
		return VIGIE_ETOOBIG;
	if (access(buf, X_OK) != 0) {
		fprintf(stderr,
			"vigie-bench: %s: %s (build the vigie-node target)\n",
			buf, strerror(errno));
		return VIGIE_ESYS;
	}
	return 0;
}

static long clk_tck(void)
{
	long hz = sysconf(_SC_CLK_TCK);

	return hz > 0 ? hz : 100;
}

/* utime + stime of `pid` (all its threads, living or gone) in ns; the
 * kernel counts them in clock ticks (10 ms here). */
static int read_cpu_ticks_ns(pid_t pid, unsigned long long *out)
{
	char path[64], buf[1024];
	unsigned long long utime, stime;
	const char *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return VIGIE_ESYS;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields are
	 * counted from the last ')'. utime and stime are fields 14 and 15,
	 * the 12th and 13th after it. */
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 1,
		   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
		   &utime, &stime) != 2)
		return VIGIE_EDECODE;
	*out = (utime + stime) *
	       (1000000000ull / (unsigned long long)clk_tck());
	return 0;
}

static int read_cpu_ns(pid_t pid, bool sched, unsigned long long *out)
{
	return sched ? bench_cpu_ns(pid, out) : read_cpu_ticks_ns(pid, out);
}

static void sleep_until(uint64_t mono_us)
{
	struct timespec ts = {.tv_sec = (time_t)(mono_us / 1000000u),
			      .tv_nsec = (long)(mono_us % 1000000u) * 1000L};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

static int wait_birth(struct bench_sink *relay, pid_t pid, const char *log)
{
	uint64_t deadline = bench_mono_us() + BIRTH_TIMEOUT_MS * 1000u;
	int status = 0;

	while (bench_mono_us() < deadline) {
		if (bench_sink_online_boot(relay))
			return 0;
		if (!bench_child_alive(pid, &status)) {
			fprintf(stderr,
				"vigie-bench: vigie-node exited (status %d)\n",
				WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			bench_log_tail(log, "vigie-node");
			return VIGIE_ENOCONN;
		}
		sleep_until(bench_mono_us() + 10000u);
	}
	fprintf(stderr, "vigie-bench: vigie-node did not come online\n");
	bench_log_tail(log, "vigie-node");
	return VIGIE_ENOCONN;
}

/* Sample for `seconds`; rss in MiB, cpu in % of one core. */
static int sample(pid_t pid, unsigned seconds, double *rss_mb, double *cpu)
{
	unsigned long rss = 0, max_rss = 0;
	unsigned long long t0, t1;
	uint64_t start, end, next;
	bool sched = bench_cpu_ns(pid, &t0) == 0;
	int rc;

	rc = read_cpu_ns(pid, sched, &t0);
	if (rc)
		return rc;
	start = bench_mono_us();
	end = start + (uint64_t)seconds * 1000000u;
	for (next = start; next <= end; next += SAMPLE_MS * 1000u) {
		sleep_until(next);
		rc = bench_rss_kib(pid, &rss);
		if (rc)
			return rc;
		if (rss > max_rss)
			max_rss = rss;
	}
	rc = read_cpu_ns(pid, sched, &t1);
	if (rc)
		return rc;
	end = bench_mono_us();
	*rss_mb = (double)max_rss / 1024.0;
	*cpu = (double)(t1 > t0 ? t1 - t0 : 0) / 1e3 / (double)(end - start) *
	       100.0;
	return 0;
}

int bench_idle(const struct bench_opts *o)
{
	struct bench_broker site;
	struct bench_broker_options bo = {.persistence = !o->no_persistence};
	struct bench_sink_options ro = {
		.site = BENCH_SITE,
		.node = "idle",
		.receipts = true,
		.max_seq = 1000,
	};
	struct bench_sink *relay = NULL;
	char bin[PATH_MAX], yaml[256], log[256];
	char *argv[] = {bin, (char *)"-c", yaml, NULL};
	unsigned seconds = o->quick ? SECONDS_QUICK : SECONDS_FULL;
	double rss_mb = 0, cpu = 0;
	pid_t pid = 0;
	int status = 0, rc;

	rc = node_binary(bin, sizeof(bin));
	if (rc == 0)
		rc = bench_path(yaml, sizeof(yaml), "idle.yaml");
	if (rc == 0)
		rc = bench_path(log, sizeof(log), "idle-node.log");
	if (rc)
		return rc;
	rc = bench_broker_start(&site, "idle-site", &bo);
	if (rc)
		return rc;
	ro.port = site.port;
	rc = bench_node_yaml(yaml, "idle", site.port, "5s");
	if (rc == 0)
		rc = bench_sink_start(&ro, &relay);
	if (rc == 0)
		rc = bench_spawn(argv, log, &pid);
	if (rc == 0)
		rc = wait_birth(relay, pid, log);
	/* Done with it: its own wake-ups are not the node's. */
	bench_sink_free(relay);
	if (rc == 0) {
		bench_progress(
			"node.idle: vigie-node pid %d online, sampling %u s",
			(int)pid, seconds);
		sleep_until(bench_mono_us() + SETTLE_MS * 1000u);
		rc = sample(pid, seconds, &rss_mb, &cpu);
		if (rc)
			fprintf(stderr,
				"vigie-bench: cannot sample vigie-node: %s\n",
				vigie_strerror(rc));
	}
	if (pid > 0) {
		if (bench_child_stop(pid, 5000, &status) != 0 && rc == 0)
			rc = VIGIE_ESYS;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr,
				"vigie-bench: vigie-node did not exit cleanly "
				"on SIGTERM (status 0x%x)\n",
				status);
			bench_log_tail(log, "vigie-node");
			if (rc == 0)
				rc = VIGIE_EIO;
		}
	}
	if (bench_broker_stop(&site) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	if (rc)
		return rc;
	bench_progress("node.idle: VmRSS %.2f MiB, CPU %.3f %%", rss_mb, cpu);
	bench_emit(o, "node.idle_rss", rss_mb, "MB", 0);
	bench_emit(o, "node.idle_cpu", cpu, "%", 0);
	return 0;
}
