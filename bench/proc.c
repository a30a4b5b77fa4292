/* The temporary directory and the child processes (brokers, vigie-node).
 *
 * Every child is recorded by PID the moment it is forked and stopped by PID
 * in bench_proc_cleanup, which runs at exit (atexit) and, on SIGINT, SIGTERM
 * or SIGHUP, from a thread that waits for those signals: they are blocked in
 * every other thread, so the cleanup runs in a normal context instead of a
 * signal handler and may use waitpid, nftw and stdio. A child also gets
 * PR_SET_PDEATHSIG, so even a SIGKILL of the bench does not leave brokers
 * behind. */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "vigie/error.h"

#define MAX_CHILDREN    16
#define STOP_TIMEOUT_MS 3000

static char tmpdir[PATH_MAX];
/* `lock` guards children[] and `cleaned`; `cleanup_lock` is held for a
 * whole cleanup, so that a signal arriving during the atexit cleanup waits
 * for it to finish before _exit. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cleanup_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t children[MAX_CHILDREN];
static bool cleaned;
static sigset_t stop_signals;

static void forget_child(pid_t pid)
{
	pthread_mutex_lock(&lock);
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
	pthread_mutex_unlock(&lock);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

bool bench_child_alive(pid_t pid, int *status)
{
	int st = 0;
	pid_t r = waitpid(pid, &st, WNOHANG);

	if (r == 0)
		return true;
	if (r == pid && status)
		*status = st;
	forget_child(pid);
	return false;
}

int bench_child_stop(pid_t pid, unsigned timeout_ms, int *status)
{
	uint64_t deadline = bench_mono_us() + (uint64_t)timeout_ms * 1000u;
	int st = 0;

	if (pid <= 0)
		return 0;
	if (kill(pid, SIGTERM) != 0 && errno == ESRCH) {
		/* Already gone; reap it if it is ours. */
		waitpid(pid, &st, WNOHANG);
		forget_child(pid);
		if (status)
			*status = st;
		return 0;
	}
	/* Polled with a deadline: waitpid has no timeout. */
	while (bench_mono_us() < deadline) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid || (r < 0 && errno == ECHILD)) {
			forget_child(pid);
			if (status)
				*status = st;
			return 0;
		}
		sleep_ms(5);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	forget_child(pid);
	if (status)
		*status = st;
	return VIGIE_ESYS;
}

static int remove_entry(const char *path, const struct stat *sb, int flag,
			struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0)
		fprintf(stderr, "vigie-bench: cannot remove %s: %s\n", path,
			strerror(errno));
	return 0;
}

void bench_proc_cleanup(void)
{
	pid_t left[MAX_CHILDREN];
	int n = 0;

	pthread_mutex_lock(&cleanup_lock);
	pthread_mutex_lock(&lock);
	if (cleaned) {
		pthread_mutex_unlock(&lock);
		pthread_mutex_unlock(&cleanup_lock);
		return;
	}
	cleaned = true;
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] > 0)
			left[n++] = children[i];
	pthread_mutex_unlock(&lock);
	for (int i = 0; i < n; i++)
		if (bench_child_stop(left[i], STOP_TIMEOUT_MS, NULL) != 0)
			fprintf(stderr, "vigie-bench: child %d killed\n",
				(int)left[i]);
	if (tmpdir[0] &&
	    nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "vigie-bench: cannot remove %s: %s\n", tmpdir,
			strerror(errno));
	tmpdir[0] = '\0';
	pthread_mutex_unlock(&cleanup_lock);
}

static void *signal_thread(void *arg)
{
	int sig = 0;

	(void)arg;
	if (sigwait(&stop_signals, &sig) != 0)
		return NULL;
	fprintf(stderr, "vigie-bench: %s, stopping\n", strsignal(sig));
	bench_proc_cleanup();
	_exit(128 + sig);
	return NULL;
}

int bench_proc_init(void)
{
	const char *base = getenv("TMPDIR");
	pthread_t th;
	pthread_attr_t attr;
	int rc;

	if (!base || !*base)
		base = "/tmp";
	if (snprintf(tmpdir, sizeof(tmpdir), "%s/vigie-bench.XXXXXX", base) >=
	    (int)sizeof(tmpdir)) {
		tmpdir[0] = '\0';
		return VIGIE_ETOOBIG;
	}
	if (!mkdtemp(tmpdir)) {
		fprintf(stderr, "vigie-bench: mkdtemp %s: %s\n", tmpdir,
			strerror(errno));
		tmpdir[0] = '\0';
		return VIGIE_ESYS;
	}
	atexit(bench_proc_cleanup);
	/* A broker that drops a connection must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGHUP);
	/* A shell starts background jobs with SIGINT ignored, and an ignored
	 * signal is discarded, never seen by sigwait: take them back. */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	/* Before any other thread exists, so that all of them inherit it. */
	rc = pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	if (rc == 0)
		rc = pthread_attr_init(&attr);
	if (rc == 0) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&th, &attr, signal_thread, NULL);
		pthread_attr_destroy(&attr);
	}
	if (rc != 0) {
		fprintf(stderr, "vigie-bench: signal thread: %s\n",
			strerror(rc));
		return VIGIE_ESYS;
	}
	return 0;
}

const char *bench_tmpdir(void)
{
	return tmpdir;
}

int bench_path(char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", tmpdir, name);

	return n < 0 || (size_t)n >= len ? VIGIE_ETOOBIG : 0;
}

int bench_spawn(char *const argv[], const char *log_path, pid_t *out)
{
	sigset_t none;
	int slot = -1;
	pid_t pid;

	pthread_mutex_lock(&lock);
	for (int i = 0; i < MAX_CHILDREN && slot < 0; i++)
		if (children[i] == 0)
			slot = i;
	if (slot < 0 || cleaned) {
		pthread_mutex_unlock(&lock);
		fprintf(stderr, "vigie-bench: cannot start %s: %s\n", argv[0],
			cleaned ? "shutting down" : "too many children");
		return VIGIE_ESYS;
	}
	sigemptyset(&none);
	/* Forked under the lock: the cleanup cannot run between the fork and
	 * the moment the PID is recorded. */
	pid = fork();
	if (pid == 0) {
		/* Only async-signal-safe calls until exec. */
		int fd = open(log_path,
			      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

		prctl(PR_SET_PDEATHSIG, SIGTERM);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (fd < 0 || devnull < 0 || dup2(devnull, 0) < 0 ||
		    dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid > 0)
		children[slot] = pid;
	pthread_mutex_unlock(&lock);
	if (pid < 0) {
		fprintf(stderr, "vigie-bench: fork: %s\n", strerror(errno));
		return VIGIE_ESYS;
	}
	*out = pid;
	return 0;
}

void bench_log_tail(const char *log_path, const char *who)
{
	char lines[8][512];
	char line[512];
	size_t n = 0;
	FILE *f = fopen(log_path, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		memcpy(lines[n++ % 8], line, sizeof(line));
	fclose(f);
	fprintf(stderr, "vigie-bench: last lines of %s (%s):\n", who, log_path);
	for (size_t i = n > 8 ? n - 8 : 0; i < n; i++)
		fprintf(stderr, "  %s", lines[i % 8]);
}

int bench_self_dir(char *buf, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n < 0)
		return VIGIE_ESYS;
	self[n] = '\0';
	if (snprintf(buf, len, "%s", dirname(self)) >= (int)len)
		return VIGIE_ETOOBIG;
	return 0;
}

int bench_rss_kib(pid_t pid, unsigned long *out)
{
	char path[64], line[256];
	FILE *f;
	int rc = VIGIE_ESYS;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return VIGIE_ESYS;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %lu kB", out) == 1) {
			rc = 0;
			break;
		}
	fclose(f);
	return rc;
}

/* The run time of each thread from /proc/PID/task/TID/schedstat: an idle
 * node uses less than one tick over a whole window, so utime+stime alone
 * (10 ms ticks) reads 0. */
int bench_cpu_ns(pid_t pid, unsigned long long *out)
{
	char path[64], file[64 + 256 + 16];
	unsigned long long sum = 0, ns;
	struct dirent *de;
	DIR *d;
	FILE *f;
	int rc = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return VIGIE_ESYS;
	while (rc == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s/schedstat", path,
			 de->d_name);
		f = fopen(file, "r");
		if (!f)
			continue; /* the thread just ended */
		if (fscanf(f, "%llu", &ns) == 1)
			sum += ns;
		else
			rc = VIGIE_EDECODE;
		fclose(f);
	}
	closedir(d);
	*out = sum;
	return rc;
}
