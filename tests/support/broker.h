/* Test support: a real mosquitto process on a free loopback port. */
#ifndef VIGIE_TEST_BROKER_H
#define VIGIE_TEST_BROKER_H

#include <sys/types.h>

struct test_broker {
	pid_t pid;
	int port;
	char dir[64]; /* temp dir holding config, persistence, log */
	char conf[96];
};

/* test_free_port: a port nothing listens on right now (bind 0). */
int test_free_port(void);

/* test_broker_start: write a config (anonymous, 127.0.0.1 only, persistence
 * in a temp dir, `extra` lines appended) and start mosquitto; wait until it
 * accepts connections (deadline 10 s). port 0 picks a free one; a restart
 * passes the old port and dir. Returns 0 or -1. */
int test_broker_start(struct test_broker *b, int port, const char *extra);

/* test_broker_restart: start again on the same port with the same files. */
int test_broker_restart(struct test_broker *b);

/* test_broker_kill: signal the broker and reap it (SIGKILL: a crash). */
void test_broker_kill(struct test_broker *b, int sig);

/* test_broker_cleanup: kill if running and remove the temp dir. Registered
 * atexit by test_broker_start so that a failing test leaves nothing. */
void test_broker_cleanup(struct test_broker *b);

#endif
