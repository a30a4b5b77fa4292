#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"

#define MAX_BROKERS 16

static struct test_broker *live[MAX_BROKERS];
static int atexit_done;

static void cleanup_all(void)
{
	for (int i = 0; i < MAX_BROKERS; i++)
		if (live[i])
			test_broker_cleanup(live[i]);
}

static void on_fatal_signal(int sig)
{
	cleanup_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

int test_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int can_connect(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int ok;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static int spawn(struct test_broker *b)
{
	char log[128];
	struct timespec pause = {0, 20 * 1000 * 1000};

	snprintf(log, sizeof(log), "%s/mosquitto.log", b->dir);
	b->pid = fork();
	if (b->pid < 0)
		return -1;
	if (b->pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("mosquitto", "mosquitto", "-c", b->conf, (char *)NULL);
		_exit(127);
	}
	/* Ready when it accepts a TCP connection; 10 s deadline. */
	for (int i = 0; i < 500; i++) {
		int status;

		if (can_connect(b->port))
			return 0;
		if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
			fprintf(stderr, "mosquitto exited early, see %s\n",
				log);
			b->pid = 0;
			return -1;
		}
		nanosleep(&pause, NULL);
	}
	fprintf(stderr, "mosquitto not ready on port %d\n", b->port);
	return -1;
}

int test_broker_start(struct test_broker *b, int port, const char *extra)
{
	FILE *f;

	memset(b, 0, sizeof(b->pid) + sizeof(b->port));
	b->port = port ? port : test_free_port();
	strcpy(b->dir, "/tmp/vigie-test-XXXXXX");
	if (b->port <= 0 || !mkdtemp(b->dir))
		return -1;
	snprintf(b->conf, sizeof(b->conf), "%s/mosquitto.conf", b->dir);
	f = fopen(b->conf, "w");
	if (!f)
		return -1;
	fprintf(f,
		"listener %d 127.0.0.1\n"
		"allow_anonymous true\n"
		"set_tcp_nodelay true\n"
		"persistence true\n"
		"persistence_location %s/\n"
		"autosave_on_changes true\n"
		"autosave_interval 1\n"
		"max_queued_messages 1000000\n"
		"%s"
		"%s\n",
		b->port, b->dir, geteuid() == 0 ? "user root\n" : "",
		extra ? extra : "");
	fclose(f);
	if (!atexit_done) {
		atexit_done = 1;
		atexit(cleanup_all);
		signal(SIGTERM, on_fatal_signal);
		signal(SIGINT, on_fatal_signal);
		signal(SIGABRT, on_fatal_signal);
		signal(SIGSEGV, on_fatal_signal);
	}
	for (int i = 0; i < MAX_BROKERS; i++) {
		if (!live[i]) {
			live[i] = b;
			break;
		}
	}
	return spawn(b);
}

int test_broker_restart(struct test_broker *b)
{
	return spawn(b);
}

void test_broker_kill(struct test_broker *b, int sig)
{
	int status;

	if (b->pid <= 0)
		return;
	kill(b->pid, sig);
	waitpid(b->pid, &status, 0);
	b->pid = 0;
}

void test_broker_cleanup(struct test_broker *b)
{
	char cmd[128];

	test_broker_kill(b, SIGKILL);
	for (int i = 0; i < MAX_BROKERS; i++)
		if (live[i] == b)
			live[i] = NULL;
	if (b->dir[0] && strncmp(b->dir, "/tmp/vigie-test-", 16) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", b->dir);
	}
	b->dir[0] = '\0';
}
