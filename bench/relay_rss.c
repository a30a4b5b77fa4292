/* relay.rss_10k_nodes: the real vigie-relay's VmRSS (MB) once NODES
 * distinct nodes of one site have each sent a heartbeat and an event, so
 * that it knows every one of them: supervised (last heartbeat, reporting
 * time, outbox, path), a stream each for dedupe and receipts, a row each
 * in its database.
 *
 * A bare libmosquitto publisher at the central broker sends every node's
 * heartbeat, then every node's event (QoS 1, one connection: the relay
 * gets them in that order); the figure is read once a Receipt came back
 * for every node, so every heartbeat before them was handled too. The
 * heartbeats advertise a one-hour reporting time: nobody goes silent
 * during the run, so no comm-loss trouble is raised for 10k nodes at once.
 * The events are test reports (no incident): this is the cost of nodes
 * known, not of incidents open.
 *
 * Baseline: the same relay's VmRSS before any node was heard (started,
 * connected, its probe event stored). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

#include "bench.h"
#include "vigie/clock.h"
#include "vigie/codec.h"
#include "vigie/error.h"

#define NODES              10000u
#define NODE               "n" /* nodes n00000 .. n09999 */
#define WINDOW             1000u
#define PUBLISH_TIMEOUT_MS 60000u
#define RECEIPT_TIMEOUT_MS 60000u
#define SETTLE_FULL_MS     1000u
#define SETTLE_QUICK_MS    300u
#define REPORTING_MS       3600000u

static int heartbeat(const char *node, uint8_t **out, size_t *len)
{
	Vigie__V1__HeartbeatBody b = VIGIE__V1__HEARTBEAT_BODY__INIT;
	Vigie__V1__Heartbeat hb = VIGIE__V1__HEARTBEAT__INIT;
	uint8_t *body;
	size_t body_len;
	int rc;

	b.site = (char *)BENCH_SITE;
	b.node = (char *)node;
	b.boot_id = 1;
	b.time_us = vigie_clock_now_us();
	b.last_seq = 1;
	b.period_ms = REPORTING_MS / 3;
	b.reporting_time_ms = REPORTING_MS;
	b.path = (char *)"primary";
	b.hb_seq = 1;
	rc = vigie_pack(&b.base, &body, &body_len);
	if (rc)
		return rc;
	hb.body.data = body;
	hb.body.len = body_len;
	rc = vigie_pack(&hb.base, out, len);
	free(body);
	return rc;
}

static int event(const char *node, uint8_t **out, size_t *len)
{
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;

	ev.site = (char *)BENCH_SITE;
	ev.node = (char *)node;
	ev.boot_id = 1;
	ev.seq = 1;
	ev.time_us = vigie_clock_now_us();
	ev.kind = VIGIE__V1__EVENT_KIND__KIND_TEST;
	ev.state = VIGIE__V1__EVENT_STATE__STATE_TEST;
	ev.zone = (char *)"apollo-gallery";
	ev.sensor = (char *)"gb-w2";
	ev.text = (char *)"periodic test";
	ev.source = (char *)"socket";
	ev.path = (char *)"primary";
	return vigie_event_encode(&ev, NULL, 0, NULL, out, len);
}

/* Heartbeats of every node, then their events. */
static int build(struct bench_msgs *m)
{
	char node[VIGIE_ID_MAX + 1], topic[VIGIE_TOPIC_MAX];
	int rc = bench_msgs_alloc(m, 2 * (uint64_t)NODES, true);

	for (unsigned i = 0; rc == 0 && i < 2 * NODES; i++) {
		bool hb = i < NODES;

		snprintf(node, sizeof(node), NODE "%05u", i % NODES);
		rc = vigie_topic_build(topic, sizeof(topic),
				       hb ? VIGIE_TOPIC_HEARTBEAT
					  : VIGIE_TOPIC_EVENT,
				       BENCH_SITE, node);
		if (rc == 0) {
			m->topics[i] = strdup(topic);
			if (!m->topics[i])
				rc = VIGIE_ENOMEM;
		}
		if (rc == 0)
			rc = hb ? heartbeat(node, &m->payloads[i], &m->lens[i])
				: event(node, &m->payloads[i], &m->lens[i]);
	}
	return rc;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static int run(struct bench_relay *relay, int port, const struct bench_msgs *m)
{
	struct bench_receipts *w = NULL;
	struct mosquitto *mosq = NULL;
	uint64_t t0 = bench_mono_us(), deadline;
	int rc;

	rc = bench_receipts_start(port, NODE, NODES, 1, 1, &w);
	if (rc == 0)
		rc = bench_mosq_connect(port, "vigie-bench-nodes", (int)WINDOW,
					NULL, &mosq);
	if (rc == 0) {
		rc = bench_publish_all(mosq, m, WINDOW, PUBLISH_TIMEOUT_MS);
		mosquitto_disconnect(mosq);
		mosquitto_destroy(mosq);
	}
	deadline = bench_mono_us() + RECEIPT_TIMEOUT_MS * 1000u;
	while (rc == 0 && bench_receipts_done(w) < NODES &&
	       bench_mono_us() < deadline)
		sleep_ms(5);
	if (rc == 0 && bench_receipts_done(w) < NODES) {
		fprintf(stderr,
			"vigie-bench: vigie-relay receipted %u of %u nodes in "
			"%u s\n",
			bench_receipts_done(w), NODES,
			RECEIPT_TIMEOUT_MS / 1000);
		bench_log_tail(relay->log, "vigie-relay");
		rc = VIGIE_EIO;
	}
	if (rc == 0)
		bench_progress("relay.rss: %u nodes heard and receipted in "
			       "%.2f s",
			       NODES, (double)(bench_mono_us() - t0) / 1e6);
	bench_receipts_stop(w);
	return rc;
}

int bench_relay_rss(const struct bench_opts *o)
{
	struct bench_broker central;
	struct bench_relay relay;
	struct bench_msgs m;
	unsigned settle = o->quick ? SETTLE_QUICK_MS : SETTLE_FULL_MS;
	double idle = 0, known = 0;
	int rc, stop_rc;

	rc = build(&m);
	if (rc) {
		bench_msgs_free(&m);
		return rc;
	}
	rc = bench_broker_start(&central, "central", NULL);
	if (rc) {
		bench_msgs_free(&m);
		return rc;
	}
	rc = bench_relay_start(&relay, "relay-rss", central.port, NULL);
	if (rc == 0) {
		rc = bench_relay_rss_mb(&relay, settle, &idle);
		if (rc == 0)
			rc = run(&relay, central.port, &m);
		if (rc == 0)
			rc = bench_relay_rss_mb(&relay, settle, &known);
		stop_rc = bench_relay_stop(&relay);
		bench_relay_report(&relay);
		if (rc == 0)
			rc = stop_rc;
	}
	if (bench_broker_stop(&central) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	bench_msgs_free(&m);
	if (rc)
		return rc;
	bench_progress("relay.rss: VmRSS %.2f MiB idle, %.2f MiB with %u "
		       "nodes known",
		       idle, known, NODES);
	bench_emit(o, "relay.rss_10k_nodes", known, "MB", idle);
	return 0;
}
