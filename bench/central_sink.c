/* The central end of the node figures: subscribes at the central broker to
 * one node's events and state, counts each event identity once, records its
 * latency, and (optionally) publishes the Receipts that let the node drain
 * its outbox, as vigie-relay would. The node figures measure the node and
 * the broker path alone; the relay has figures of its own, measured on the
 * real vigie-relay.
 *
 * It runs on a thread with its own libuv loop and vigie_mqtt client, so the
 * node under test keeps its loop to itself. What the figures read while it
 * runs is atomic; the seen-map and the latency table belong to the sink's
 * thread until bench_sink_stop has joined it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "vigie/clock.h"
#include "vigie/codec.h"
#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/mqtt.h"

#define READY_TIMEOUT_MS 10000
/* A receipt covers what arrived in this long: a relay acknowledges once
 * per store batch, not once per event. */
#define RECEIPT_DELAY_MS 5
#define RECEIPT_RETRY_MS 100
#define MAX_TRACKED_SEQ  (50u * 1000u * 1000u)
#define PROBE_NODE       "probe"

struct bench_sink {
	struct bench_sink_options o;
	char site[VIGIE_ID_MAX + 1];
	char node[VIGIE_ID_MAX + 1];
	char topic_events[VIGIE_TOPIC_MAX];
	char topic_state[VIGIE_TOPIC_MAX];
	char topic_receipt[VIGIE_TOPIC_MAX];
	char topic_probe[VIGIE_TOPIC_MAX];

	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t stop;
	uv_timer_t receipt_timer;
	struct vigie_mqtt *mqtt;
	bool loop_inited, handles_inited, thread_started, stopped;

	/* The sink's thread only. */
	uint64_t boot_id;    /* of the tracked node's events; 0 until one */
	uint8_t *seen;       /* bit per seq, 1..max_seq */
	uint32_t *latency;   /* µs per seq; UINT32_MAX: not (yet) seen */
	uint64_t contiguous; /* every seq <= this has arrived */
	uint64_t receipted;  /* highest seq receipted */
	uint64_t foreign, undecodable, receipts_sent;

	/* Shared. */
	atomic_uint_fast64_t received;
	atomic_uint_fast64_t last_new_us;
	atomic_uint_fast64_t online_boot;
	atomic_uint_fast64_t duplicates;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int ready; /* under mu: 1 once the probe came back */
};

static bool seen_get(const struct bench_sink *r, uint64_t seq)
{
	return (r->seen[seq >> 3] >> (seq & 7)) & 1u;
}

static void seen_set(struct bench_sink *r, uint64_t seq)
{
	r->seen[seq >> 3] |= (uint8_t)(1u << (seq & 7));
}

static void set_ready(struct bench_sink *r)
{
	pthread_mutex_lock(&r->mu);
	r->ready = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void receipt_cb(uv_timer_t *t);

static void send_receipt(struct bench_sink *r)
{
	Vigie__V1__Receipt rc = VIGIE__V1__RECEIPT__INIT;
	uint8_t *buf;
	size_t len;

	if (r->contiguous <= r->receipted)
		return;
	rc.site = r->site;
	rc.node = r->node;
	rc.boot_id = r->boot_id;
	rc.seq = r->contiguous;
	rc.time_us = vigie_clock_now_us();
	rc.relay = (char *)"vigie-bench";
	if (vigie_pack(&rc.base, &buf, &len) != 0)
		return;
	if (vigie_mqtt_publish(r->mqtt, r->topic_receipt, buf, len, 1, false,
			       NULL) == 0) {
		r->receipted = r->contiguous;
		r->receipts_sent++;
	} else {
		/* Not connected: try again, even if no event comes to
		 * trigger it. */
		uv_timer_start(&r->receipt_timer, receipt_cb, RECEIPT_RETRY_MS,
			       0);
	}
	free(buf);
}

static void receipt_cb(uv_timer_t *t)
{
	send_receipt(t->data);
}

static void on_event(struct bench_sink *r, const void *payload, size_t len)
{
	uint64_t now_us = vigie_clock_now_us();
	Vigie__V1__SignedEvent *se;
	Vigie__V1__Event *ev;
	uint64_t seq, lat;

	if (vigie_event_decode(payload, len, &se, &ev) != 0) {
		if (r->undecodable++ == 0)
			vigie_log_warn(
				"bench relay: an event of %s does not decode",
				r->node);
		return;
	}
	if (!r->boot_id)
		r->boot_id = ev->boot_id;
	seq = ev->seq;
	if (ev->boot_id != r->boot_id || seq == 0 || seq > r->o.max_seq) {
		if (r->foreign++ == 0)
			vigie_log_warn("bench relay: event %llu.%llu of %s is "
				       "not tracked",
				       (unsigned long long)ev->boot_id,
				       (unsigned long long)seq, r->node);
		goto out_free;
	}
	if (seen_get(r, seq)) {
		atomic_fetch_add(&r->duplicates, 1);
		goto out_free;
	}
	seen_set(r, seq);
	lat = now_us > ev->time_us ? now_us - ev->time_us : 0;
	r->latency[seq] = lat < UINT32_MAX ? (uint32_t)lat : UINT32_MAX - 1;
	atomic_store(&r->last_new_us, bench_mono_us());
	atomic_fetch_add(&r->received, 1);
	while (r->contiguous < r->o.max_seq && seen_get(r, r->contiguous + 1))
		r->contiguous++;
	if (r->o.receipts && r->contiguous > r->receipted &&
	    !uv_is_active((uv_handle_t *)&r->receipt_timer))
		uv_timer_start(&r->receipt_timer, receipt_cb, RECEIPT_DELAY_MS,
			       0);
out_free:
	vigie_event_free(se, ev);
}

static void on_state(struct bench_sink *r, const void *payload, size_t len)
{
	Vigie__V1__NodeState *st =
		vigie__v1__node_state__unpack(NULL, len, payload);

	if (!st) {
		r->undecodable++;
		return;
	}
	if (st->status == VIGIE__V1__NODE_STATUS__NODE_ONLINE)
		atomic_store(&r->online_boot, st->boot_id);
	vigie__v1__node_state__free_unpacked(st, NULL);
}

static void on_message(struct vigie_mqtt *m, void *ud, const char *topic,
		       const void *payload, size_t len, int qos, bool retain)
{
	struct bench_sink *r = ud;
	struct vigie_topic t;

	(void)m;
	(void)qos;
	(void)retain;
	if (vigie_topic_parse(topic, &t) != 0)
		return;
	if (t.type == VIGIE_TOPIC_EVENT && strcmp(t.node, PROBE_NODE) == 0) {
		set_ready(r);
		return;
	}
	if (strcmp(t.node, r->node) != 0)
		return;
	if (t.type == VIGIE_TOPIC_EVENT)
		on_event(r, payload, len);
	else if (t.type == VIGIE_TOPIC_STATE)
		on_state(r, payload, len);
}

static void on_connect(struct vigie_mqtt *m, void *ud, bool session_present)
{
	struct bench_sink *r = ud;

	(void)session_present;
	/* Sent after the SUBSCRIBEs on the same connection: when it comes
	 * back, the subscriptions are in place. */
	vigie_mqtt_publish(m, r->topic_probe, "probe", 5, 1, false, NULL);
}

static void stop_cb(uv_async_t *h)
{
	struct bench_sink *r = h->data;

	vigie_mqtt_close(r->mqtt, NULL, NULL);
	r->mqtt = NULL;
	uv_close((uv_handle_t *)&r->receipt_timer, NULL);
	uv_close((uv_handle_t *)&r->stop, NULL);
}

static void thread_main(void *arg)
{
	struct bench_sink *r = arg;

	uv_run(&r->loop, UV_RUN_DEFAULT);
}

static int setup(struct bench_sink *r)
{
	static const struct vigie_mqtt_callbacks cbs = {
		.on_connect = on_connect,
		.on_message = on_message,
	};
	struct vigie_mqtt_options mo;
	char client_id[VIGIE_ID_MAX + 32];
	int rc;

	if (uv_loop_init(&r->loop) != 0)
		return VIGIE_ESYS;
	r->loop_inited = true;
	uv_async_init(&r->loop, &r->stop, stop_cb);
	uv_timer_init(&r->loop, &r->receipt_timer);
	r->stop.data = r->receipt_timer.data = r;
	r->handles_inited = true;
	memset(&mo, 0, sizeof(mo));
	snprintf(client_id, sizeof(client_id), "vigie-bench-relay-%s", r->node);
	mo.host = "127.0.0.1";
	mo.port = r->o.port;
	mo.client_id = client_id;
	mo.clean_start = true;
	mo.name = "bench-relay";
	rc = vigie_mqtt_open(&r->loop, &mo, &cbs, r, &r->mqtt);
	if (rc)
		return rc;
	rc = vigie_mqtt_subscribe(r->mqtt, r->topic_events, 1);
	if (rc == 0)
		rc = vigie_mqtt_subscribe(r->mqtt, r->topic_state, 1);
	if (rc == 0)
		rc = vigie_mqtt_start(r->mqtt);
	return rc;
}

static int wait_ready(struct bench_sink *r)
{
	struct timespec until;
	int ready;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += READY_TIMEOUT_MS / 1000;
	pthread_mutex_lock(&r->mu);
	while (!r->ready)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &until) != 0)
			break;
	ready = r->ready;
	pthread_mutex_unlock(&r->mu);
	return ready ? 0 : VIGIE_ENOCONN;
}

int bench_sink_start(const struct bench_sink_options *o,
		     struct bench_sink **out)
{
	struct bench_sink *r;
	int rc;

	if (!vigie_id_valid(o->site) || !vigie_id_valid(o->node) ||
	    strcmp(o->node, PROBE_NODE) == 0 || o->max_seq == 0 ||
	    o->max_seq > MAX_TRACKED_SEQ)
		return VIGIE_EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return VIGIE_ENOMEM;
	r->o = *o;
	snprintf(r->site, sizeof(r->site), "%s", o->site);
	snprintf(r->node, sizeof(r->node), "%s", o->node);
	r->o.site = r->site;
	r->o.node = r->node;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->seen = calloc(o->max_seq / 8 + 1, 1);
	r->latency = malloc((o->max_seq + 1) * sizeof(*r->latency));
	if (!r->seen || !r->latency) {
		rc = VIGIE_ENOMEM;
		goto out_free;
	}
	memset(r->latency, 0xff, (o->max_seq + 1) * sizeof(*r->latency));
	snprintf(r->topic_events, sizeof(r->topic_events),
		 "vigie/v1/site/%s/node/+/event", r->site);
	rc = vigie_topic_build(r->topic_state, sizeof(r->topic_state),
			       VIGIE_TOPIC_STATE, r->site, r->node);
	if (rc == 0)
		rc = vigie_topic_build(r->topic_receipt,
				       sizeof(r->topic_receipt),
				       VIGIE_TOPIC_RECEIPT, r->site, r->node);
	if (rc == 0)
		rc = vigie_topic_build(r->topic_probe, sizeof(r->topic_probe),
				       VIGIE_TOPIC_EVENT, r->site, PROBE_NODE);
	if (rc == 0)
		rc = setup(r);
	if (rc == 0) {
		rc = uv_thread_create(&r->thread, thread_main, r) == 0
			     ? 0
			     : VIGIE_ESYS;
		r->thread_started = rc == 0;
	}
	if (rc == 0)
		rc = wait_ready(r);
	if (rc) {
		fprintf(stderr,
			"vigie-bench: relay stand-in on 127.0.0.1:%d: %s\n",
			o->port, vigie_strerror(rc));
		goto out_free;
	}
	*out = r;
	return 0;
out_free:
	bench_sink_free(r);
	return rc;
}

uint64_t bench_sink_received(struct bench_sink *r)
{
	return atomic_load(&r->received);
}

uint64_t bench_sink_last_new_us(struct bench_sink *r)
{
	return atomic_load(&r->last_new_us);
}

uint64_t bench_sink_online_boot(struct bench_sink *r)
{
	return atomic_load(&r->online_boot);
}

uint64_t bench_sink_duplicates(struct bench_sink *r)
{
	return atomic_load(&r->duplicates);
}

void bench_sink_stop(struct bench_sink *r)
{
	if (!r || r->stopped)
		return;
	r->stopped = true;
	if (r->thread_started) {
		uv_async_send(&r->stop);
		uv_thread_join(&r->thread);
	} else if (r->handles_inited) {
		/* Never ran: close on this thread. */
		stop_cb(&r->stop);
		uv_run(&r->loop, UV_RUN_DEFAULT);
	}
	if (r->loop_inited && uv_loop_close(&r->loop) != 0)
		fprintf(stderr,
			"vigie-bench: relay stand-in left handles open\n");
	r->loop_inited = false;
	if (r->foreign || r->undecodable)
		bench_progress("relay stand-in: %llu untracked, %llu "
			       "undecodable event(s)",
			       (unsigned long long)r->foreign,
			       (unsigned long long)r->undecodable);
}

uint32_t bench_sink_latency(const struct bench_sink *r, uint64_t seq)
{
	if (seq == 0 || seq > r->o.max_seq)
		return UINT32_MAX;
	return r->latency[seq];
}

void bench_sink_free(struct bench_sink *r)
{
	if (!r)
		return;
	bench_sink_stop(r);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r->seen);
	free(r->latency);
	free(r);
}
