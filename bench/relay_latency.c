/* relay.latency_p50 / relay.latency_p99: how long an alarm that goes
 * straight to the police takes from its source to the police post, along
 * the production path
 *
 *   node -> site broker -> bridge -> central -> vigie-relay -> central
 *        -> police post subscriber
 *
 * at a steady 1000 events/s. The node is played by a bare libmosquitto
 * publisher sending the node's SignedEvent bytes, stamped right before
 * mosquitto_publish (the node's own cost is node.latency's figure), and
 * subscribed to its Receipts like a node. The post is a libmosquitto
 * subscriber on vigie/v1/post/<post>/dispatch that decodes each Dispatch;
 * latency is its arrival time minus Dispatch.first_event_us, the time the
 * incident's first event was stamped at the source.
 *
 * The load: duress alarms (an immediate kind: straight to the police
 * level, with site security and HQ told on the way, as the ladder says),
 * each in a zone of its own, "z<seq>". An alarm opens an incident per
 * site and zone and an unacknowledged incident absorbs every later alarm
 * of its zone, so distinct zones are what makes every event open an
 * incident and yield exactly one police dispatch; nobody acknowledges and
 * re-sends are an hour away, so each dispatch the post sees is a first
 * send. The zones are not in the relay's configuration: the dispatch
 * carries the zone id, the site's name, address and location, not a
 * floor or cameras.
 *
 * Baseline: the same hops without Vigie logic. The same publisher sends
 * the same kind of payload; at the central broker a bare libmosquitto
 * forwarder republishes each message as it is to the post topic, and
 * receipts it, so the bridge carries Receipts down as it does for the
 * relay; the post subscriber decodes the forwarded SignedEvent. Both runs
 * use the same brokers, the baseline first (the relay is not started yet,
 * so it holds no session that would queue the baseline's events).
 *
 * BENCH_RELAY_DUMP=PATH keeps each run's latencies (see dump()). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "bench.h"
#include "vigie/clock.h"
#include "vigie/codec.h"
#include "vigie/error.h"

#define RATE          1000.0
#define SECONDS_FULL  10u
#define SECONDS_QUICK 2u
/* The first events pay for cold caches and connection warm-up. */
#define WARMUP         100u
#define DRAIN_FULL_MS  15000u
#define DRAIN_QUICK_MS 6000u
#define PUB_INFLIGHT   1000
#define NODE_BARE      "fwd-lat"
#define NODE_RELAY     "relay-lat"

/* ---- the police post ---- */

struct post {
	bool dispatches; /* Dispatch (relay) or forwarded SignedEvent */
	uint64_t n;
	uint32_t *lat; /* µs per seq 1..n; UINT32_MAX: not arrived */
	atomic_uint_fast64_t arrived;
	atomic_uint_fast64_t repeats, foreign;
};

static uint64_t zone_seq(const char *zone)
{
	char *end;
	unsigned long long v;

	if (!zone || zone[0] != 'z')
		return 0;
	v = strtoull(zone + 1, &end, 10);
	return *end ? 0 : v;
}

static uint32_t elapsed_us(uint64_t now, uint64_t t0)
{
	if (now <= t0)
		return 0;
	return now - t0 < UINT32_MAX ? (uint32_t)(now - t0) : UINT32_MAX - 1;
}

static void on_post_message(struct mosquitto *mosq, void *ud,
			    const struct mosquitto_message *msg)
{
	struct post *p = ud;
	uint64_t now = vigie_clock_now_us(), seq = 0, t0 = 0;
	bool resend = false;

	(void)mosq;
	if (p->dispatches) {
		Vigie__V1__Dispatch *d = vigie__v1__dispatch__unpack(
			NULL, (size_t)msg->payloadlen, msg->payload);

		if (d) {
			seq = zone_seq(d->zone ? d->zone->id : NULL);
			t0 = d->first_event_us;
			resend = d->attempt != 1;
			vigie__v1__dispatch__free_unpacked(d, NULL);
		}
	} else {
		Vigie__V1__SignedEvent *se;
		Vigie__V1__Event *ev;

		if (vigie_event_decode(msg->payload, (size_t)msg->payloadlen,
				       &se, &ev) == 0) {
			seq = zone_seq(ev->zone);
			t0 = ev->time_us;
			vigie_event_free(se, ev);
		}
	}
	if (seq == 0 || seq > p->n || t0 == 0) {
		atomic_fetch_add(&p->foreign, 1);
		return;
	}
	if (resend || p->lat[seq] != UINT32_MAX) {
		atomic_fetch_add(&p->repeats, 1);
		return;
	}
	p->lat[seq] = elapsed_us(now, t0);
	atomic_fetch_add(&p->arrived, 1);
}

static int post_init(struct post *p, uint64_t n, bool dispatches)
{
	memset(p, 0, sizeof(*p));
	p->n = n;
	p->dispatches = dispatches;
	p->lat = malloc((n + 1) * sizeof(*p->lat));
	if (!p->lat)
		return VIGIE_ENOMEM;
	memset(p->lat, 0xff, (n + 1) * sizeof(*p->lat));
	return 0;
}

/* ---- the bare forwarder ---- */

struct forwarder {
	char post_topic[VIGIE_TOPIC_MAX];
	uint64_t seq; /* events forwarded: the publisher's are in order */
	uint64_t failed;
};

static void on_forward(struct mosquitto *mosq, void *ud,
		       const struct mosquitto_message *msg)
{
	Vigie__V1__Receipt receipt = VIGIE__V1__RECEIPT__INIT;
	struct forwarder *f = ud;
	char topic[VIGIE_TOPIC_MAX];
	struct vigie_topic t;
	uint8_t *buf;
	size_t len;

	if (mosquitto_publish(mosq, NULL, f->post_topic, msg->payloadlen,
			      msg->payload, 1, false) != MOSQ_ERR_SUCCESS)
		f->failed++;
	/* After the forward, so it does not delay it: what the relay sends
	 * back down the bridge, without looking inside the event. */
	f->seq++;
	if (vigie_topic_parse(msg->topic, &t) != 0 ||
	    vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_RECEIPT, t.site,
			      t.node) != 0)
		return;
	receipt.site = t.site;
	receipt.node = t.node;
	receipt.boot_id = 1;
	receipt.seq = f->seq;
	receipt.time_us = vigie_clock_now_us();
	receipt.relay = (char *)"vigie-bench-forwarder";
	if (vigie_pack(&receipt.base, &buf, &len) != 0)
		return;
	mosquitto_publish(mosq, NULL, topic, (int)len, buf, 1, false);
	free(buf);
}

/* ---- the node's side ---- */

/* An alarm that goes to the police at once, in zone "z<seq>". */
static int alarm_payload(const char *node, uint64_t seq, uint64_t time_us,
			 uint8_t **out, size_t *len)
{
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;
	Vigie__V1__Attribute a = VIGIE__V1__ATTRIBUTE__INIT, *ap = &a;
	char zone[32];

	snprintf(zone, sizeof(zone), "z%llu", (unsigned long long)seq);
	a.key = (char *)"button";
	a.value = (char *)"front-desk";
	ev.site = (char *)BENCH_SITE;
	ev.node = (char *)node;
	ev.boot_id = 1;
	ev.seq = seq;
	ev.time_us = time_us;
	ev.kind = VIGIE__V1__EVENT_KIND__KIND_DURESS;
	ev.state = VIGIE__V1__EVENT_STATE__STATE_ALARM;
	ev.zone = zone;
	ev.sensor = (char *)"panic-desk";
	ev.text = (char *)"panic button pressed";
	ev.attributes = &ap;
	ev.n_attributes = 1;
	ev.source = (char *)"socket";
	ev.source_code = (char *)"";
	ev.path = (char *)"primary";
	return vigie_event_encode(&ev, NULL, 0, NULL, out, len);
}

/* Publish seq 1..n at RATE from the site broker, each stamped right before
 * mosquitto_publish, then wait until the post saw them all or `drain_ms`
 * passed. */
static int publish_paced(int site_port, const char *node, uint64_t n,
			 struct post *p, unsigned drain_ms)
{
	char topic[VIGIE_TOPIC_MAX], receipts[VIGIE_TOPIC_MAX];
	char client_id[VIGIE_ID_MAX + 16];
	struct mosquitto *mosq = NULL;
	uint64_t sent = 0, t0, deadline, next_misc = 0;
	double period_us = 1e6 / RATE;
	int rc, mrc;

	snprintf(client_id, sizeof(client_id), "vigie-bench-%s", node);
	rc = vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_EVENT,
			       BENCH_SITE, node);
	if (rc == 0)
		rc = vigie_topic_build(receipts, sizeof(receipts),
				       VIGIE_TOPIC_RECEIPT, BENCH_SITE, node);
	if (rc == 0)
		rc = bench_mosq_connect(site_port, client_id, PUB_INFLIGHT,
					NULL, &mosq);
	if (rc)
		return rc;
	/* Like a node: its Receipts come down the bridge to it. */
	mrc = mosquitto_subscribe(mosq, NULL, receipts, 1);
	if (mrc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "vigie-bench: %s: subscribe: %s\n", node,
			mosquitto_strerror(mrc));
		rc = VIGIE_ENOCONN;
		goto out_destroy;
	}
	t0 = bench_mono_us();
	while (sent < n) {
		uint64_t now = bench_mono_us();
		uint64_t due_at = t0 + (uint64_t)((double)sent * period_us);
		uint8_t *buf;
		size_t len;

		if (now < due_at) {
			rc = bench_mosq_pump(mosq,
					     due_at - now < 500000
						     ? (int)(due_at - now)
						     : 500000,
					     &next_misc);
			if (rc)
				goto out_destroy;
			continue;
		}
		rc = alarm_payload(node, sent + 1, vigie_clock_now_us(), &buf,
				   &len);
		if (rc)
			goto out_destroy;
		mrc = mosquitto_publish(mosq, NULL, topic, (int)len, buf, 1,
					false);
		free(buf);
		if (mrc != MOSQ_ERR_SUCCESS) {
			fprintf(stderr, "vigie-bench: %s: publish: %s\n", node,
				mosquitto_strerror(mrc));
			rc = VIGIE_ENOCONN;
			goto out_destroy;
		}
		sent++;
	}
	deadline = bench_mono_us() + (uint64_t)drain_ms * 1000u;
	while (atomic_load(&p->arrived) < n && bench_mono_us() < deadline) {
		rc = bench_mosq_pump(mosq, 1000, &next_misc);
		if (rc)
			goto out_destroy;
	}
out_destroy:
	mosquitto_disconnect(mosq);
	mosquitto_destroy(mosq);
	return rc;
}

/* ---- the runs ---- */

struct percentiles {
	uint32_t p50, p99;
};

/* BENCH_RELAY_DUMP=PATH: "seq latency_us" per event into PATH.bare and
 * PATH.relay, for diagnosis (a stall shows as a run of falling values). */
static void dump(const struct post *p)
{
	const char *base = getenv("BENCH_RELAY_DUMP");
	char path[512];
	FILE *f;

	if (!base)
		return;
	snprintf(path, sizeof(path), "%s.%s", base,
		 p->dispatches ? "relay" : "bare");
	f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "vigie-bench: %s: cannot write\n", path);
		return;
	}
	for (uint64_t seq = 1; seq <= p->n; seq++)
		fprintf(f, "%llu %u\n", (unsigned long long)seq, p->lat[seq]);
	fclose(f);
}

/* Percentiles over seq WARMUP+1 .. n; every one must have arrived. */
static int collect(const struct post *p, const char *who,
		   struct percentiles *out)
{
	uint32_t *v = malloc((p->n + 1) * sizeof(*v));
	uint64_t missing = 0;
	size_t count = 0;

	if (!v)
		return VIGIE_ENOMEM;
	dump(p);
	for (uint64_t seq = WARMUP + 1; seq <= p->n; seq++) {
		if (p->lat[seq] == UINT32_MAX)
			missing++;
		else
			v[count++] = p->lat[seq];
	}
	if (missing || !count) {
		fprintf(stderr,
			"vigie-bench: %s: %llu of %llu events reached no "
			"police post (%llu foreign, %llu repeated)\n",
			who, (unsigned long long)missing,
			(unsigned long long)(p->n - WARMUP),
			(unsigned long long)atomic_load(&p->foreign),
			(unsigned long long)atomic_load(&p->repeats));
		free(v);
		return VIGIE_EIO;
	}
	out->p50 = bench_percentile(v, count, 50);
	out->p99 = bench_percentile(v, count, 99);
	bench_progress("%s: %zu events, p50 %u us, p99 %u us, max %u us", who,
		       count, out->p50, out->p99, v[count - 1]);
	free(v);
	return 0;
}

static int post_topic(char *buf, size_t len)
{
	return vigie_topic_build(buf, len, VIGIE_TOPIC_DISPATCH, BENCH_POST,
				 NULL);
}

static int run_bare(int site_port, int central_port, uint64_t n,
		    unsigned drain_ms, struct percentiles *out)
{
	struct forwarder fwd;
	struct post p;
	struct bench_sub *post_sub = NULL, *fwd_sub = NULL;
	char topic[VIGIE_TOPIC_MAX], events[VIGIE_TOPIC_MAX];
	int rc;

	memset(&fwd, 0, sizeof(fwd));
	snprintf(events, sizeof(events), "vigie/v1/site/%s/node/%s/event",
		 BENCH_SITE, NODE_BARE);
	rc = post_init(&p, n, false);
	if (rc == 0)
		rc = post_topic(topic, sizeof(topic));
	if (rc == 0)
		rc = post_topic(fwd.post_topic, sizeof(fwd.post_topic));
	if (rc == 0)
		rc = bench_sub_start(central_port, "vigie-bench-post-bare",
				     topic, on_post_message, &p, &post_sub);
	if (rc == 0)
		rc = bench_sub_start(central_port, "vigie-bench-forwarder",
				     events, on_forward, &fwd, &fwd_sub);
	if (rc == 0)
		rc = publish_paced(site_port, NODE_BARE, n, &p, drain_ms);
	/* Forwarder first: the post's counters are read after its thread
	 * stopped. */
	bench_sub_stop(fwd_sub);
	bench_sub_stop(post_sub);
	if (rc == 0 && fwd.failed)
		fprintf(stderr, "vigie-bench: forwarder: %llu failed\n",
			(unsigned long long)fwd.failed);
	if (rc == 0)
		rc = collect(&p, "relay.latency: bare forwarder", out);
	free(p.lat);
	return rc;
}

static int run_relay(int site_port, int central_port, uint64_t n,
		     unsigned drain_ms, struct percentiles *out)
{
	struct bench_relay relay;
	struct bench_sub *post_sub = NULL;
	struct post p;
	char topic[VIGIE_TOPIC_MAX];
	int rc, stop_rc;

	rc = post_init(&p, n, true);
	if (rc == 0)
		rc = post_topic(topic, sizeof(topic));
	if (rc == 0)
		rc = bench_sub_start(central_port, "vigie-bench-post-relay",
				     topic, on_post_message, &p, &post_sub);
	if (rc) {
		free(p.lat);
		return rc;
	}
	rc = bench_relay_start(&relay, "relay-lat", central_port, NULL);
	if (rc == 0)
		rc = publish_paced(site_port, NODE_RELAY, n, &p, drain_ms);
	stop_rc = bench_relay_stop(&relay);
	bench_sub_stop(post_sub);
	bench_relay_report(&relay);
	if (rc == 0)
		rc = stop_rc;
	if (rc == 0)
		rc = collect(&p, "relay.latency: vigie-relay", out);
	free(p.lat);
	return rc;
}

int bench_relay_latency(const struct bench_opts *o)
{
	struct bench_broker central, site;
	struct percentiles relay = {0}, bare = {0};
	uint64_t n = (uint64_t)RATE * (o->quick ? SECONDS_QUICK : SECONDS_FULL);
	unsigned drain_ms = o->quick ? DRAIN_QUICK_MS : DRAIN_FULL_MS;
	int rc;

	rc = bench_mesh_start(o, "relay-site", &central, &site);
	if (rc == 0) {
		bench_progress("relay.latency: bare forwarder, %llu alarms at "
			       "%.0f/s",
			       (unsigned long long)n, RATE);
		rc = run_bare(site.port, central.port, n, drain_ms, &bare);
	}
	if (rc == 0) {
		bench_progress("relay.latency: vigie-relay, %llu duress alarms "
			       "at %.0f/s, one incident each",
			       (unsigned long long)n, RATE);
		rc = run_relay(site.port, central.port, n, drain_ms, &relay);
	}
	if (bench_broker_stop(&site) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	if (bench_broker_stop(&central) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	if (rc)
		return rc;
	bench_emit(o, "relay.latency_p50", relay.p50, "us", bare.p50);
	bench_emit(o, "relay.latency_p99", relay.p99, "us", bare.p99);
	return 0;
}
