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
 * disk is not in the figure.
 *
 * relay.throughput_signed: the same run with signatures and TLS on. The
 * events are signed (beforehand, like the rest of their encoding) by each
 * publisher's Ed25519 key; the relay has a trust store of those keys and
 * require_signatures, and it and the publishers talk to the central broker
 * over TLS with client certificates (broker-config's listener). The
 * publishers behave like nodes: each gets its Receipts on its own
 * connection (so they travel over TLS too) and keeps at most RECEIPT_WINDOW
 * events unreceipted. Without that bound they outrun signature checking,
 * the relay's verifier queue fills and it sheds events (unreceipted: a node
 * sends them again, a bare publisher never does), which measures nothing.
 * The rate is all events over first publish to the Receipt that covered
 * the last of them, as the publishers saw it.
 *
 * Its baseline, in the same run: the very same signed bytes, from the same
 * publishers, to a plaintext broker with the same settings and a relay with
 * no trust store, which neither verifies nor speaks TLS. Each side has its
 * own broker and relay, up for the whole figure (a relay subscribes to
 * every site, so two relays on one broker would each take both streams).
 * The TLS broker's plaintext listener serves only the relay's readiness
 * probe. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <mosquitto.h>

#include "bench.h"
#include "tls_bench.h"
#include "vigie/clock.h"
#include "vigie/codec.h"
#include "vigie/error.h"
#include "vigie/sign.h"

#define PUBLISHERS     4
#define N_FULL         200000u /* per round */
#define N_QUICK        40000u
#define N_QUICK_SIGNED 20000u
#define ROUNDS_FULL    3
#define ROUNDS_QUICK   2
/* QoS 1 messages a publisher has not had PUBACKed yet. */
#define WINDOW 1000u
/* Node-like publishers (signed run): events sent and not yet receipted. */
#define RECEIPT_WINDOW    2500u
#define TIMEOUT_MS        120000u
#define SUBACK_TIMEOUT_MS 5000u
#define NODE              "tp" /* nodes tp0 .. tp<PUBLISHERS-1> */
#define NODE_SIGNED       "sg"

struct publisher {
	pthread_t thread;
	char node[VIGIE_ID_MAX + 1];
	char topic[VIGIE_TOPIC_MAX];      /* its events' topic */
	char bare_topic[VIGIE_TOPIC_MAX]; /* the baseline's copy */
	char receipt_topic[VIGIE_TOPIC_MAX];
	struct vigie_sign_key key; /* when the run signs */
	struct bench_msgs msgs;    /* one round's events, for both sides */
	struct mosquitto *mosq;
	atomic_int *go;
	uint64_t receipt_window; /* 0: as fast as the broker takes them */
	uint64_t boot_id;
	uint64_t done_us; /* with a receipt window: all receipted */
	int rc;
};

/* One side of a round: where the publishers send, and what takes the
 * stream in there. */
struct side {
	const char *what;
	const struct bench_broker *broker;
	int port;                    /* its plaintext port or tls_port */
	const struct bench_tls *tls; /* the publishers'; NULL: plaintext */
	/* NULL: the bare subscriber (publishers without a receipt window) */
	const struct bench_relay *relay;
};

/* A figure: its publishers, and two sides that take turns each round,
 * each keeping its best. Brokers and relays stopped when it ends. */
struct run {
	const char *figure;
	const char *node; /* the publishers' node ids: node0 .. */
	bool sign;
	uint64_t receipt_window;
	uint64_t per_node;
	unsigned rounds;
	struct publisher pubs[PUBLISHERS];
	struct bench_broker brokers[2];
	struct bench_relay relays[2];
	struct side side[2]; /* the baseline, then the figure */
	double best[2];
};

static void *publish_thread(void *arg)
{
	struct publisher *p = arg;
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 100000};

	while (!atomic_load(p->go))
		nanosleep(&ts, NULL);
	if (p->receipt_window)
		p->rc = bench_publish_receipted(p->mosq, &p->msgs, WINDOW,
						p->receipt_window, p->boot_id,
						TIMEOUT_MS, &p->done_us);
	else
		p->rc = bench_publish_all(p->mosq, &p->msgs, WINDOW,
					  TIMEOUT_MS);
	return NULL;
}

static void publishers_free(struct publisher *pubs)
{
	for (unsigned i = 0; i < PUBLISHERS; i++) {
		bench_msgs_free(&pubs[i].msgs);
		vigie_sign_key_wipe(&pubs[i].key);
	}
}

/* The publishers' names and topics, and their keys when the run signs. */
static int run_init(struct run *run, const struct bench_opts *o,
		    const char *figure, const char *node, uint64_t n_quick,
		    bool sign, uint64_t receipt_window)
{
	int rc = 0;

	memset(run, 0, sizeof(*run));
	run->figure = figure;
	run->node = node;
	run->sign = sign;
	run->receipt_window = receipt_window;
	run->per_node = (o->quick ? n_quick : N_FULL) / PUBLISHERS;
	run->rounds = o->quick ? ROUNDS_QUICK : ROUNDS_FULL;
	for (unsigned i = 0; rc == 0 && i < PUBLISHERS; i++) {
		struct publisher *p = &run->pubs[i];

		snprintf(p->node, sizeof(p->node), "%s%u", node, i);
		p->receipt_window = receipt_window;
		rc = vigie_topic_build(p->topic, sizeof(p->topic),
				       VIGIE_TOPIC_EVENT, BENCH_SITE, p->node);
		if (rc == 0)
			rc = vigie_topic_build(
				p->receipt_topic, sizeof(p->receipt_topic),
				VIGIE_TOPIC_RECEIPT, BENCH_SITE, p->node);
		/* "vigie/..." -> "bench/...": same length, same depth. */
		snprintf(p->bare_topic, sizeof(p->bare_topic), "bench%s",
			 p->topic + strlen("vigie"));
		if (rc == 0 && sign && vigie_sign_keygen(&p->key) != 0)
			rc = VIGIE_ESYS;
	}
	return rc;
}

/* A trust store naming the publishers' keys and the relay's probe key. */
static int write_trust(const struct run *run,
		       const struct vigie_sign_key *probe, const char *path)
{
	char line[256];
	FILE *f = fopen(path, "w");
	int rc;

	if (!f) {
		fprintf(stderr, "vigie-bench: %s: %s\n", path, strerror(errno));
		return VIGIE_ESYS;
	}
	rc = vigie_sign_trust_line(probe, BENCH_SITE, BENCH_PROBE_NODE, line,
				   sizeof(line));
	if (rc == 0)
		fputs(line, f);
	for (unsigned i = 0; rc == 0 && i < PUBLISHERS; i++) {
		const struct publisher *p = &run->pubs[i];

		rc = vigie_sign_trust_line(&p->key, BENCH_SITE, p->node, line,
					   sizeof(line));
		if (rc == 0)
			fputs(line, f);
	}
	if (fclose(f) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	return rc;
}

/* One round's events: seq 1..per_node of boot `boot_id` of every node,
 * signed when the run signs. */
static int publishers_encode(struct run *run, uint64_t boot_id)
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
	for (unsigned i = 0; rc == 0 && i < PUBLISHERS; i++) {
		struct publisher *p = &run->pubs[i];

		bench_msgs_free(&p->msgs);
		rc = bench_msgs_alloc(&p->msgs, run->per_node, false);
		ev.node = p->node;
		for (uint64_t k = 0; rc == 0 && k < run->per_node; k++) {
			uint8_t **out = &p->msgs.payloads[k];
			size_t *len = &p->msgs.lens[k];

			ev.seq = k + 1;
			ev.time_us = vigie_clock_now_us();
			if (run->sign)
				rc = vigie_sign_event(&p->key, &ev, out, len);
			else
				rc = vigie_event_encode(&ev, NULL, 0, NULL, out,
							len);
		}
	}
	return rc;
}

static void on_suback(struct mosquitto *mosq, void *ud, int mid, int n,
		      const int *granted)
{
	(void)mosq;
	(void)mid;
	(void)n;
	(void)granted;
	*(int *)ud = 1;
}

/* Subscribed to its Receipts, like a node, before it publishes. */
static int subscribe_receipts(struct publisher *p)
{
	uint64_t deadline = bench_mono_us() + SUBACK_TIMEOUT_MS * 1000u;
	int subacked = 0, rc = 0;

	/* The SUBACK flag is the user data until then. */
	mosquitto_user_data_set(p->mosq, &subacked);
	mosquitto_subscribe_callback_set(p->mosq, on_suback);
	if (mosquitto_subscribe(p->mosq, NULL, p->receipt_topic, 1) !=
	    MOSQ_ERR_SUCCESS)
		rc = VIGIE_ENOCONN;
	while (rc == 0 && !subacked && bench_mono_us() < deadline)
		if (mosquitto_loop(p->mosq, 10, 1) != MOSQ_ERR_SUCCESS)
			rc = VIGIE_ENOCONN;
	mosquitto_subscribe_callback_set(p->mosq, NULL);
	mosquitto_user_data_set(p->mosq, NULL);
	if (rc == 0 && !subacked)
		rc = VIGIE_ENOCONN;
	if (rc)
		fprintf(stderr, "vigie-bench: %s: cannot subscribe to %s\n",
			p->node, p->receipt_topic);
	return rc;
}

/* Connect every publisher to the side's broker (and subscribe it to its
 * Receipts when it waits for them), then start them together on their own
 * topics, or the baseline's when the side has no relay; *t0 is the start,
 * *t1 when they all finished. */
static int publishers_run(struct run *run, const struct side *s,
			  uint64_t boot_id, uint64_t *t0, uint64_t *t1)
{
	struct publisher *pubs = run->pubs;
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
		p->boot_id = boot_id;
		p->done_us = 0;
		p->msgs.topic = s->relay ? p->topic : p->bare_topic;
		rc = bench_mosq_connect_tls(s->port, s->tls, client_id,
					    (int)WINDOW, NULL, &p->mosq);
		if (rc == 0 && p->receipt_window)
			rc = subscribe_receipts(p);
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

static int run_bare(struct run *run, const struct side *s, double *rate)
{
	uint64_t total = run->per_node * PUBLISHERS;
	struct counter c = {.total = total};
	struct cpu_mark broker, self;
	struct bench_sub *sub = NULL;
	char topic[VIGIE_TOPIC_MAX];
	uint64_t t0 = 0, t1 = 0, deadline;
	int rc;

	snprintf(topic, sizeof(topic), "bench/v1/site/%s/node/+/event",
		 BENCH_SITE);
	rc = bench_sub_start(s->port, "vigie-bench-bare-subscriber", topic,
			     on_event, &c, &sub);
	if (rc)
		return rc;
	cpu_mark(&broker, s->broker->pid);
	cpu_mark(&self, 0);
	rc = publishers_run(run, s, 0, &t0, &t1);
	deadline = bench_mono_us() + TIMEOUT_MS * 1000u;
	while (rc == 0 && atomic_load(&c.arrived) < total &&
	       bench_mono_us() < deadline)
		sleep_ms(1);
	bench_progress("%s: CPU, %% of a core: central broker %.0f, "
		       "publishers and subscriber %.0f",
		       run->figure, cpu_since(&broker, bench_mono_us() - t0),
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
	bench_progress("%s: %s: %llu events in %.2f s, %.0f/s (all PUBACKed "
		       "after %.2f s)",
		       run->figure, s->what, (unsigned long long)total,
		       (double)(atomic_load(&c.last_us) - t0) / 1e6, *rate,
		       (double)(t1 - t0) / 1e6);
	return 0;
}

/* Until every event of the round is receipted: as a watcher at the broker
 * sees it (publishers that do not wait for Receipts), or as the publishers
 * themselves do. */
static int run_relay(struct run *run, const struct side *s, uint64_t boot_id,
		     double *rate)
{
	struct cpu_mark broker, relay_cpu, self;
	struct bench_receipts *w = NULL;
	uint64_t t0 = 0, t1 = 0, last = 0, deadline, us;
	uint64_t total = run->per_node * PUBLISHERS;
	char acked[64] = "";
	int rc = 0;

	if (!run->receipt_window)
		rc = bench_receipts_start(s->broker->port, run->node,
					  PUBLISHERS, boot_id, run->per_node,
					  &w);
	if (rc)
		return rc;
	cpu_mark(&broker, s->broker->pid);
	cpu_mark(&relay_cpu, s->relay->pid);
	cpu_mark(&self, 0);
	rc = publishers_run(run, s, boot_id, &t0, &t1);
	deadline = bench_mono_us() + TIMEOUT_MS * 1000u;
	while (w && rc == 0 && bench_receipts_done(w) < PUBLISHERS &&
	       bench_mono_us() < deadline)
		sleep_ms(1);
	bench_progress("%s: CPU, %% of a core: central broker %.0f, "
		       "vigie-relay %.0f, publishers%s %.0f",
		       run->figure, cpu_since(&broker, bench_mono_us() - t0),
		       cpu_since(&relay_cpu, bench_mono_us() - t0),
		       w ? " and receipt watcher" : "",
		       cpu_since(&self, bench_mono_us() - t0));
	if (w && rc == 0 && bench_receipts_done(w) < PUBLISHERS) {
		fprintf(stderr,
			"vigie-bench: vigie-relay: %u of %u nodes fully "
			"receipted after %u s\n",
			bench_receipts_done(w), PUBLISHERS, TIMEOUT_MS / 1000);
		rc = VIGIE_EIO;
	}
	if (w)
		last = bench_receipts_last_us(w);
	for (unsigned i = 0; !w && i < PUBLISHERS; i++)
		if (run->pubs[i].done_us > last)
			last = run->pubs[i].done_us;
	bench_receipts_stop(w);
	if (rc == 0 && last <= t0)
		rc = VIGIE_EIO;
	if (rc) {
		fprintf(stderr, "vigie-bench: %s: %s: failed\n", run->figure,
			s->what);
		return rc;
	}
	us = last - t0;
	*rate = (double)total * 1e6 / (double)us;
	if (!run->receipt_window)
		snprintf(acked, sizeof(acked), " (all PUBACKed after %.2f s)",
			 (double)(t1 - t0) / 1e6);
	bench_progress("%s: %s: %llu %sevents stored and receipted in %.2f s, "
		       "%.0f/s%s",
		       run->figure, s->what, (unsigned long long)total,
		       run->sign ? "signed " : "", (double)us / 1e6, *rate,
		       acked);
	return 0;
}

/* Round r sends boot r+1 of every node: new events for the relays. */
static int run_rounds(struct run *run)
{
	int rc = 0;

	bench_progress("%s: %u publishers, %llu %sevents each, %u rounds",
		       run->figure, PUBLISHERS,
		       (unsigned long long)run->per_node,
		       run->sign ? "signed " : "", run->rounds);
	for (unsigned r = 0; rc == 0 && r < run->rounds; r++) {
		bench_progress("%s: round %u of %u", run->figure, r + 1,
			       run->rounds);
		rc = publishers_encode(run, r + 1);
		for (unsigned i = 0; rc == 0 && i < 2; i++) {
			const struct side *s = &run->side[i];
			double rate = 0;

			if (s->relay)
				rc = run_relay(run, s, r + 1, &rate);
			else
				rc = run_bare(run, s, &rate);
			if (rate > run->best[i])
				run->best[i] = rate;
		}
	}
	return rc;
}

/* Stop the relays and brokers that run, free the events and keys; `rc`
 * is what the run came to. */
static int run_stop(struct run *run, int rc)
{
	int stop_rc = 0;

	for (unsigned i = 2; i-- > 0;) {
		if (run->relays[i].pid <= 0)
			continue;
		if (bench_relay_stop(&run->relays[i]) != 0)
			stop_rc = VIGIE_EIO;
		bench_relay_report(&run->relays[i]);
	}
	for (unsigned i = 0; i < 2; i++)
		if (bench_broker_stop(&run->brokers[i]) != 0 && stop_rc == 0)
			stop_rc = VIGIE_ESYS;
	publishers_free(run->pubs);
	return rc ? rc : stop_rc;
}

int bench_relay_throughput(const struct bench_opts *o)
{
	static struct run run;
	struct bench_broker *central = &run.brokers[0];
	struct bench_relay *relay = &run.relays[1];
	int rc;

	rc = run_init(&run, o, "relay.throughput", NODE, N_QUICK, false, 0);
	if (rc == 0)
		rc = bench_broker_start(central, "central", NULL);
	if (rc == 0)
		rc = bench_relay_start(relay, "relay-tp", central->port, NULL);
	run.side[0] = (struct side){.what = "bare subscriber",
				    .broker = central,
				    .port = central->port};
	run.side[1] = (struct side){.what = "vigie-relay",
				    .broker = central,
				    .port = central->port,
				    .relay = relay};
	if (rc == 0)
		rc = run_rounds(&run);
	rc = run_stop(&run, rc);
	if (rc)
		return rc;
	bench_progress("relay.throughput: best rounds: vigie-relay %.0f/s, "
		       "bare subscriber %.0f/s",
		       run.best[1], run.best[0]);
	bench_emit(o, "relay.throughput", run.best[1], "events/s", run.best[0]);
	return 0;
}

int bench_relay_throughput_signed(const struct bench_opts *o)
{
	static struct run run;
	static struct bench_pki pki;
	struct bench_broker *plain = &run.brokers[0], *tls = &run.brokers[1];
	struct vigie_sign_key probe;
	struct bench_broker_options tls_opts = {
		.tls = &pki.server,
		.require_certificate = true,
	};
	struct bench_relay_options verifying = {
		.tls = &pki.client,
		.require_signatures = true,
		.probe_key = &probe,
	};
	char trust[256];
	int rc;

	if (vigie_sign_init() != 0 || vigie_sign_keygen(&probe) != 0)
		return VIGIE_ESYS;
	verifying.trust = trust;
	rc = run_init(&run, o, "relay.throughput_signed", NODE_SIGNED,
		      N_QUICK_SIGNED, true, RECEIPT_WINDOW);
	if (rc == 0)
		rc = bench_path(trust, sizeof(trust), "trust-signed.txt");
	if (rc == 0)
		rc = write_trust(&run, &probe, trust);
	if (rc == 0)
		rc = bench_pki_make(&pki);
	if (rc == 0)
		rc = bench_broker_start(plain, "central-plain", NULL);
	if (rc == 0)
		rc = bench_broker_start(tls, "central-tls", &tls_opts);
	if (rc == 0)
		rc = bench_relay_start(&run.relays[0], "relay-plain",
				       plain->port, NULL);
	/* Its probe on the plaintext listener, the bench's own. */
	verifying.probe_port = tls->port;
	if (rc == 0)
		rc = bench_relay_start(&run.relays[1], "relay-signed",
				       tls->tls_port, &verifying);
	run.side[0] = (struct side){.what = "plaintext, not verified",
				    .broker = plain,
				    .port = plain->port,
				    .relay = &run.relays[0]};
	run.side[1] = (struct side){.what = "TLS, verified",
				    .broker = tls,
				    .port = tls->tls_port,
				    .tls = &pki.client,
				    .relay = &run.relays[1]};
	if (rc == 0)
		rc = run_rounds(&run);
	rc = run_stop(&run, rc);
	vigie_sign_key_wipe(&probe);
	if (rc)
		return rc;
	bench_progress("relay.throughput_signed: best rounds: TLS and "
		       "verification %.0f/s, both off %.0f/s",
		       run.best[1], run.best[0]);
	bench_emit(o, "relay.throughput_signed", run.best[1], "events/s",
		   run.best[0]);
	return 0;
}
