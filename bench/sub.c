/* Subscribers for the relay figures: the police post stand-in, the bare
 * forwarder, the throughput baseline and the receipt watchers. Each is a
 * bare libmosquitto client on a thread of its own, driven by
 * bench_mosq_pump like the baselines' publishers: one poll(2) of its
 * socket, then read and write. (libmosquitto's own network thread,
 * mosquitto_loop_start, costs a select over two descriptors and a wake-up
 * pipe per message: about twice the CPU per message, which on a small
 * machine starves the broker it measures.) bench_sub_start returns once
 * the broker acknowledged the subscription, so nothing published
 * afterwards is missed. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <mosquitto.h>

#include "bench.h"
#include "vigie/error.h"

#define SUBACK_TIMEOUT_MS 5000
#define SUB_INFLIGHT      1000
/* How long a poll may wait: also how long a stop may take. */
#define POLL_US 20000

struct bench_sub {
	struct mosquitto *mosq;
	bench_sub_cb cb;
	void *ud;
	pthread_t thread;
	atomic_int subacked;
	atomic_int stop;
	bool running;
};

static void on_message(struct mosquitto *mosq, void *ud,
		       const struct mosquitto_message *msg)
{
	struct bench_sub *s = ud;

	s->cb(mosq, s->ud, msg);
}

static void on_subscribe(struct mosquitto *mosq, void *ud, int mid,
			 int qos_count, const int *granted)
{
	struct bench_sub *s = ud;

	(void)mosq;
	(void)mid;
	/* 0x80 and up: refused. */
	atomic_store(&s->subacked, qos_count > 0 && granted[0] < 0x80 ? 1 : -1);
}

static void *sub_thread(void *arg)
{
	struct bench_sub *s = arg;
	uint64_t next_misc = 0;

	while (!atomic_load(&s->stop))
		if (bench_mosq_pump(s->mosq, POLL_US, &next_misc) != 0)
			break; /* said once by the pump; the figure times out */
	return NULL;
}

int bench_sub_start(int port, const char *client_id, const char *topic,
		    bench_sub_cb cb, void *ud, struct bench_sub **out)
{
	struct bench_sub *s = calloc(1, sizeof(*s));
	uint64_t deadline;
	int rc, mrc;

	if (!s)
		return VIGIE_ENOMEM;
	s->cb = cb;
	s->ud = ud;
	rc = bench_mosq_connect(port, client_id, SUB_INFLIGHT, s, &s->mosq);
	if (rc)
		goto out_free;
	mosquitto_message_callback_set(s->mosq, on_message);
	mosquitto_subscribe_callback_set(s->mosq, on_subscribe);
	mrc = mosquitto_subscribe(s->mosq, NULL, topic, 1);
	deadline = bench_mono_us() + SUBACK_TIMEOUT_MS * 1000u;
	while (mrc == MOSQ_ERR_SUCCESS && atomic_load(&s->subacked) == 0 &&
	       bench_mono_us() < deadline)
		mrc = mosquitto_loop(s->mosq, 50, 1);
	if (mrc != MOSQ_ERR_SUCCESS || atomic_load(&s->subacked) != 1) {
		const char *why =
			atomic_load(&s->subacked) ? "refused" : "no SUBACK";

		fprintf(stderr, "vigie-bench: %s: cannot subscribe to %s: %s\n",
			client_id, topic,
			mrc != MOSQ_ERR_SUCCESS ? mosquitto_strerror(mrc)
						: why);
		rc = VIGIE_ENOCONN;
		goto out_destroy;
	}
	if (pthread_create(&s->thread, NULL, sub_thread, s) != 0) {
		fprintf(stderr, "vigie-bench: %s: cannot start its thread\n",
			client_id);
		rc = VIGIE_ESYS;
		goto out_destroy;
	}
	s->running = true;
	*out = s;
	return 0;
out_destroy:
	mosquitto_disconnect(s->mosq);
	mosquitto_destroy(s->mosq);
out_free:
	free(s);
	return rc;
}

void bench_sub_stop(struct bench_sub *s)
{
	if (!s)
		return;
	if (s->running) {
		atomic_store(&s->stop, 1);
		pthread_join(s->thread, NULL);
	}
	/* Joined: the client is this thread's again. */
	mosquitto_disconnect(s->mosq);
	mosquitto_destroy(s->mosq);
	free(s);
}
