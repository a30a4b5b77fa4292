/* relay.throughput: events per second the real vigie-relay decodes, stores
 * (SQLite WAL, synchronous=full, group commit) and receipts, on a stream
 * that PUBLISHERS bare libmosquitto publishers, each playing one node,
 * send to the central broker as fast as it takes them (QoS 1). Their
 * SignedEvents are encoded beforehand, so the publishers cost what the
 * broker's input costs and no more. The rate is all events over the time
 * from the first publish to the Receipt that covered the last of them,
 * seen by a subscriber on the receipt topics as the nodes would see it.
 *
 * Baseline: the same stream (the same bytes from the same publishers to
 * the same broker) consumed by a bare libmosquitto QoS 1 subscriber that
 * only counts: first publish to the last arrival. Its copy of the stream
 * goes to topics of the same length and depth under "bench/" instead of
 * "vigie/", which the relay does not subscribe to: the relay stays up for
 * the whole figure (its persistent session would otherwise queue the
 * baseline's events for it) and idles meanwhile. A ratio near 1 says the
 * broker, not the relay, is the limit.
 *
 * The machine is shared with whatever else runs, so baseline and relay
 * alternate for a few rounds and each keeps its best round. Round r sends
 * boot r+1 of every node: new events for the relay each time.
 *
 * The events are test reports (kind test, state test): decoded, checked,
 * deduplicated, stored and receipted like any event, but opening no
 * incident, so the figure is the ingest path; alarms cost their incident
 * on top (relay.latency). The central broker keeps no persistence, so its
 * disk is not in the figure. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <mosquitto.h>

#include "bench.h"
#include "vigie/clock.h"
#include "vigie/codec.h"
#include "vigie/error.h"

#define PUBLISHERS   4
#define N_FULL       200000u /* per round */
#define N_QUICK      40000u
#define ROUNDS_FULL  3
#define ROUNDS_QUICK 2
/* QoS 1 messages a publisher has not had PUBACKed yet. */
#define WINDOW     1000u
#define TIMEOUT_MS 120000u
#define NODE       "tp" /* nodes tp0 .. tp<PUBLISHERS-1> */

struct publisher {
	pthread_t thread;
	char node[VIGIE_ID_MAX + 1];
	char topic[VIGIE_TOPIC_MAX];      /* its events' topic */
	char bare_topic[VIGIE_TOPIC_MAX]; /* the baseline's copy */
	struct bench_msgs msgs; /* one round's events, for both runs */
	struct mosquitto *mosq;
	atomic_int *go;
	int rc;
};

static void *publish_thread(void *arg)
{
	struct publisher *p = arg;
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 100000};

	while (!atomic_load(p->go))
		nanosleep(&ts, NULL);
	p->rc = bench_publish_all(p->mosq, &p->msgs, WINDOW, TIMEOUT_MS);
	return NULL;
}

static void publishers_free(struct publisher *pubs)
{
	for (unsigned i = 0; i < PUBLISHERS; i++)
		bench_msgs_free(&pubs[i].msgs);
}

static int publishers_init(struct publisher *pubs)
{
	int rc = 0;

	memset(pubs, 0, PUBLISHERS * sizeof(*pubs));
	for (unsigned i = 0; rc == 0 && i < PUBLISHERS; i++) {
		struct publisher *p = &pubs[i];

		snprintf(p->node, sizeof(p->node), NODE "%u", i);
		rc = vigie_topic_build(p->topic, sizeof(p->topic),
				       VIGIE_TOPIC_EVENT, BENCH_SITE, p->node);
		/* "vigie/..." -> "bench/...": same length, same depth. */
		snprintf(p->bare_topic, sizeof(p->bare_topic), "bench%s",
			 p->topic + strlen("vigie"));
	}
	return rc;
}

/* One round's events: seq 1..per_node of boot `boot_id` of every node. */
static int publishers_encode(struct publisher *pubs, uint64_t per_node,
			     uint64_t boot_id)
{
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;
	int rc = 0;

	ev.site = (char *)BENCH_SITE;
	ev.boot_id = boot_id;
	ev.kind = VIGIE__V1__EVENT_KIND__KIND_TEST;
	ev.state = VIGIE__V1__EVENT_STATE__STATE_TEST;
	ev.zone = (char *)"apollo-gallery";
	ev.sensor = (char *)"gb-w2";
	ev.text = (char *)"periodic test";
	ev.source = (char *)"socket";
	ev.path = (char *)"primary";
	publishers_free(pubs);
	for (unsigned i = 0; rc == 0 && i < PUBLISHERS; i++) {
		struct publisher *p = &pubs[i];

		rc = bench_msgs_alloc(&p->msgs, per_node, false);
		ev.node = p->node;
		for (uint64_t k = 0; rc == 0 && k < per_node; k++) {
			ev.seq = k + 1;
			ev.time_us = vigie_clock_now_us();
			rc = vigie_event_encode(&ev, NULL, 0, NULL,
						&p->msgs.payloads[k],
						&p->msgs.lens[k]);
		}
	}
	return rc;
}

/* Connect every publisher, then start them together on their own topics
 * or the baseline's; *t0 is the start, *t1 when the broker had PUBACKed
 * them all. */
static int publishers_run(struct publisher *pubs, int port, bool bare,
			  uint64_t *t0, uint64_t *t1)
{
	atomic_int go = 0;
	unsigned started = 0;
	int rc = 0;

	for (unsigned i = 0; rc == 0 && i < PUBLISHERS; i++) {
		struct publisher *p = &pubs[i];
		char client_id[VIGIE_ID_MAX + 16];

		snprintf(client_id, sizeof(client_id), "vigie-bench-%s",
			 p->node);
		p->go = &go;
		p->rc = 0;
		p->msgs.topic = bare ? p->bare_topic : p->topic;
		rc = bench_mosq_connect(port, client_id, (int)WINDOW, NULL,
					&p->mosq);
	}
	for (unsigned i = 0; rc == 0 && i < PUBLISHERS; i++) {
		if (pthread_create(&pubs[i].thread, NULL, publish_thread,
				   &pubs[i]) != 0) {
			rc = VIGIE_ESYS;
			break;
		}
		started++;
	}
	*t0 = bench_mono_us();
	/* Also when not all started: those that did run to completion, so
	 * the joins below never hang. */
	atomic_store(&go, 1);
	for (unsigned i = 0; i < started; i++) {
		pthread_join(pubs[i].thread, NULL);
		if (rc == 0)
			rc = pubs[i].rc;
	}
	*t1 = bench_mono_us();
	for (unsigned i = 0; i < PUBLISHERS; i++) {
		if (!pubs[i].mosq)
			continue;
		mosquitto_disconnect(pubs[i].mosq);
		mosquitto_destroy(pubs[i].mosq);
		pubs[i].mosq = NULL;
	}
	return rc;
}

/* ---- where the CPU went ---- */

struct cpu_mark {
	pid_t pid; /* 0: this process */
	unsigned long long ns;
	bool ok;
};

/* This process by getrusage, which counts the publishers' threads after
 * they ended; a child by schedstat (its threads live to the end). */
static int cpu_ns(pid_t pid, unsigned long long *ns)
{
	struct rusage ru;

	if (pid > 0)
		return bench_cpu_ns(pid, ns);
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return VIGIE_ESYS;
	*ns = ((unsigned long long)ru.ru_utime.tv_sec +
	       (unsigned long long)ru.ru_stime.tv_sec) *
		      1000000000ull +
	      ((unsigned long long)ru.ru_utime.tv_usec +
	       (unsigned long long)ru.ru_stime.tv_usec) *
		      1000ull;
	return 0;
}

static void cpu_mark(struct cpu_mark *m, pid_t pid)
{
	m->pid = pid;
	m->ok = cpu_ns(pid, &m->ns) == 0;
}

/* Percent of one core used since the mark, over `us`; -1 if unknown. */
static double cpu_since(const struct cpu_mark *m, uint64_t us)
{
	unsigned long long ns;

	if (!m->ok || !us || cpu_ns(m->pid, &ns) != 0 || ns < m->ns)
		return -1;
	return (double)(ns - m->ns) / 10.0 / (double)us;
}

/* ---- the baseline's subscriber ---- */

struct counter {
	uint64_t total;
	atomic_uint_fast64_t arrived;
	atomic_uint_fast64_t last_us;
};

static void on_event(struct mosquitto *mosq, void *ud,
		     const struct mosquitto_message *msg)
{
	struct counter *c = ud;

	(void)mosq;
	(void)msg;
	if (atomic_fetch_add(&c->arrived, 1) + 1 == c->total)
		atomic_store(&c->last_us, bench_mono_us());
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static int run_bare(struct publisher *pubs, const struct bench_broker *b,
		    uint64_t total, double *rate)
{
	struct counter c = {.total = total};
	struct cpu_mark broker, self;
	struct bench_sub *sub = NULL;
	char topic[VIGIE_TOPIC_MAX];
	uint64_t t0 = 0, t1 = 0, deadline;
	int rc;

	snprintf(topic, sizeof(topic), "bench/v1/site/%s/node/+/event",
		 BENCH_SITE);
	rc = bench_sub_start(b->port, "vigie-bench-bare-subscriber", topic,
			     on_event, &c, &sub);
	if (rc)
		return rc;
	cpu_mark(&broker, b->pid);
	cpu_mark(&self, 0);
	rc = publishers_run(pubs, b->port, true, &t0, &t1);
	deadline = bench_mono_us() + TIMEOUT_MS * 1000u;
	while (rc == 0 && atomic_load(&c.arrived) < total &&
	       bench_mono_us() < deadline)
		sleep_ms(1);
	bench_progress("relay.throughput: CPU, %% of a core: central broker "
		       "%.0f, publishers and subscriber %.0f",
		       cpu_since(&broker, bench_mono_us() - t0),
		       cpu_since(&self, bench_mono_us() - t0));
	bench_sub_stop(sub);
	if (rc == 0 && atomic_load(&c.arrived) < total) {
		fprintf(stderr,
			"vigie-bench: bare subscriber: %llu of %llu events\n",
			(unsigned long long)atomic_load(&c.arrived),
			(unsigned long long)total);
		rc = VIGIE_EIO;
	}
	if (rc)
		return rc;
	*rate = (double)total * 1e6 / (double)(atomic_load(&c.last_us) - t0);
	bench_progress("relay.throughput: bare subscriber: %llu events in "
		       "%.2f s, %.0f/s (all PUBACKed after %.2f s)",
		       (unsigned long long)total,
		       (double)(atomic_load(&c.last_us) - t0) / 1e6, *rate,
		       (double)(t1 - t0) / 1e6);
	return 0;
}

static int run_relay(struct publisher *pubs, const struct bench_broker *b,
		     const struct bench_relay *relay, uint64_t per_node,
		     uint64_t boot_id, double *rate)
{
	struct cpu_mark broker, relay_cpu, self;
	struct bench_receipts *w = NULL;
	uint64_t t0 = 0, t1 = 0, deadline, us;
	uint64_t total = per_node * PUBLISHERS;
	int rc;

	rc = bench_receipts_start(b->port, NODE, PUBLISHERS, boot_id, per_node,
				  &w);
	if (rc)
		return rc;
	cpu_mark(&broker, b->pid);
	cpu_mark(&relay_cpu, relay->pid);
	cpu_mark(&self, 0);
	rc = publishers_run(pubs, b->port, false, &t0, &t1);
	deadline = bench_mono_us() + TIMEOUT_MS * 1000u;
	while (rc == 0 && bench_receipts_done(w) < PUBLISHERS &&
	       bench_mono_us() < deadline)
		sleep_ms(1);
	bench_progress("relay.throughput: CPU, %% of a core: central broker "
		       "%.0f, vigie-relay %.0f, publishers and receipt "
		       "watcher %.0f",
		       cpu_since(&broker, bench_mono_us() - t0),
		       cpu_since(&relay_cpu, bench_mono_us() - t0),
		       cpu_since(&self, bench_mono_us() - t0));
	if (rc == 0 && bench_receipts_done(w) < PUBLISHERS) {
		fprintf(stderr,
			"vigie-bench: vigie-relay: %u of %u nodes fully "
			"receipted after %u s\n",
			bench_receipts_done(w), PUBLISHERS, TIMEOUT_MS / 1000);
		rc = VIGIE_EIO;
	}
	if (rc == 0) {
		us = bench_receipts_last_us(w) - t0;
		*rate = (double)total * 1e6 / (double)us;
		bench_progress("relay.throughput: vigie-relay: %llu events "
			       "stored and receipted in %.2f s, %.0f/s (all "
			       "PUBACKed after %.2f s)",
			       (unsigned long long)total, (double)us / 1e6,
			       *rate, (double)(t1 - t0) / 1e6);
	}
	bench_receipts_stop(w);
	return rc;
}

static int run_rounds(struct publisher *pubs, const struct bench_broker *b,
		      uint64_t per_node, unsigned rounds, double *relay_rate,
		      double *bare_rate)
{
	struct bench_relay relay;
	int rc, stop_rc;

	rc = bench_relay_start(&relay, "relay-tp", b->port);
	for (unsigned r = 0; rc == 0 && r < rounds; r++) {
		double bare = 0, rate = 0;

		bench_progress("relay.throughput: round %u of %u", r + 1,
			       rounds);
		rc = publishers_encode(pubs, per_node, r + 1);
		if (rc == 0)
			rc = run_bare(pubs, b, per_node * PUBLISHERS, &bare);
		if (rc == 0)
			rc = run_relay(pubs, b, &relay, per_node, r + 1, &rate);
		if (bare > *bare_rate)
			*bare_rate = bare;
		if (rate > *relay_rate)
			*relay_rate = rate;
	}
	stop_rc = bench_relay_stop(&relay);
	bench_relay_report(&relay);
	return rc ? rc : stop_rc;
}

int bench_relay_throughput(const struct bench_opts *o)
{
	static struct publisher pubs[PUBLISHERS];
	struct bench_broker central;
	uint64_t per_node = (o->quick ? N_QUICK : N_FULL) / PUBLISHERS;
	unsigned rounds = o->quick ? ROUNDS_QUICK : ROUNDS_FULL;
	double relay = 0, bare = 0;
	int rc;

	rc = publishers_init(pubs);
	if (rc)
		return rc;
	rc = bench_broker_start(&central, "central", false, NULL);
	if (rc)
		return rc;
	bench_progress("relay.throughput: %u publishers, %llu events each, "
		       "%u rounds",
		       PUBLISHERS, (unsigned long long)per_node, rounds);
	rc = run_rounds(pubs, &central, per_node, rounds, &relay, &bare);
	if (bench_broker_stop(&central) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	publishers_free(pubs);
	if (rc)
		return rc;
	bench_progress("relay.throughput: best rounds: vigie-relay %.0f/s, "
		       "bare subscriber %.0f/s",
		       relay, bare);
	bench_emit(o, "relay.throughput", relay, "events/s", bare);
	return 0;
}
