/* node.publish_rate: events per second through an in-process node with its
 * outbox on (SQLite WAL, synchronous=FULL, in the temporary directory) to a
 * site broker configured like production. An event counts once it is both
 * durable (the submit callback, what a source waits for) and received by a
 * subscriber on the broker; the rate is that count over the time from the
 * first submit to the last of those. The subscriber plays the relay and
 * publishes Receipts, so the outbox drains as in service.
 *
 * Events are submitted as fast as the node takes them, for SECONDS or up to
 * N events, in chunks per loop turn so that its I/O interleaves as it would
 * with a busy socket input, and with at most WINDOW events not yet
 * complete: a slower broker then shows as a lower rate, not as a queue that
 * outgrows the re-send timeout and doubles the traffic.
 *
 * Baseline: bench_bare_rate, as many same-size payloads from a bare
 * libmosquitto QoS 1 publisher to the same broker and subscriber. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "vigie/error.h"
#include "vigie/log.h"

#define N_FULL        100000u
#define N_QUICK       20000u
#define SECONDS_FULL  10u
#define SECONDS_QUICK 3u
/* At the ~2000/s of a broker that saves on every change this is 2 s of
 * queue, well inside the node's 5 s re-send timeout. */
#define WINDOW 4000u
#define CHUNK  256
/* After the last submit, for what is in flight to complete. */
#define DRAIN_FULL_MS      60000u
#define DRAIN_QUICK_MS     10000u
#define BIRTH_TIMEOUT_MS   10000u
#define RECEIPT_TIMEOUT_MS 10000u

struct rate_run {
	struct bench_node bn;
	struct bench_sink *relay;
	uv_idle_t pump;
	uv_timer_t check;
	uint64_t n, submitted, durable, failed;
	uint64_t t_start, t_last_durable, submit_until, deadline;
	unsigned drain_ms;
	int rc;
};

static void on_durable(void *arg, int status, uint64_t boot_id, uint64_t seq,
		       const char *err)
{
	struct rate_run *r = arg;

	(void)boot_id;
	if (status) {
		if (r->failed++ == 0)
			vigie_log_error("bench: event %llu not stored: %s",
					(unsigned long long)seq, err);
		return;
	}
	r->durable++;
	r->t_last_durable = bench_mono_us();
}

static uint64_t outstanding(const struct rate_run *r, uint64_t received)
{
	uint64_t done = r->durable < received ? r->durable : received;

	return r->submitted > done ? r->submitted - done : 0;
}

static void pump_cb(uv_idle_t *h)
{
	struct rate_run *r = h->data;
	uint64_t out = outstanding(r, bench_sink_received(r->relay));

	if (bench_mono_us() >= r->submit_until)
		r->n = r->submitted; /* time is up: finish what is in flight */
	for (int k = 0; k < CHUNK && r->submitted < r->n && out < WINDOW;
	     k++, out++) {
		if (bench_node_submit(&r->bn, on_durable, r) != 0) {
			r->rc = VIGIE_EIO;
			uv_stop(h->loop);
			return;
		}
		r->submitted++;
	}
	/* Window full: the check timer starts us again when it opens. */
	if (r->submitted == r->n || out >= WINDOW)
		uv_idle_stop(h);
}

static void check_cb(uv_timer_t *t)
{
	struct rate_run *r = t->data;
	uint64_t received = bench_sink_received(r->relay);

	if (bench_mono_us() >= r->submit_until && r->submitted < r->n)
		r->n = r->submitted;
	if (r->submitted == r->n && r->durable + r->failed >= r->n &&
	    received >= r->n) {
		if (r->failed)
			r->rc = VIGIE_EIO;
		uv_stop(t->loop);
		return;
	}
	if (bench_mono_us() >= r->deadline) {
		fprintf(stderr,
			"vigie-bench: node: %llu submitted, %llu durable, %llu "
			"received, %u s after the last submit\n",
			(unsigned long long)r->submitted,
			(unsigned long long)r->durable,
			(unsigned long long)received, r->drain_ms / 1000);
		r->rc = VIGIE_EIO;
		uv_stop(t->loop);
		return;
	}
	if (r->submitted < r->n && outstanding(r, received) < WINDOW &&
	    !uv_is_active((uv_handle_t *)&r->pump))
		uv_idle_start(&r->pump, pump_cb);
}

static bool node_born(void *arg)
{
	struct rate_run *r = arg;

	return bench_sink_online_boot(r->relay) ==
	       vigie__node_boot_id(r->bn.node);
}

static bool outbox_drained(void *arg)
{
	struct rate_run *r = arg;
	struct vigie_node_stats st;

	vigie__node_stats(r->bn.node, &st);
	return st.pending == 0;
}

static void report_stats(struct rate_run *r)
{
	struct vigie_node_stats st;

	/* Not part of the figure: that receipts empty the outbox. */
	if (bench_loop_until(&r->bn.loop, outbox_drained, r, 5,
			     RECEIPT_TIMEOUT_MS) != 0)
		bench_progress("node: outbox not drained after %u s",
			       RECEIPT_TIMEOUT_MS / 1000);
	vigie__node_stats(r->bn.node, &st);
	bench_progress("node: %llu durable, %llu published, %llu re-sent, "
		       "%llu receipts, %zu pending, %llu duplicate(s) seen",
		       (unsigned long long)st.durable,
		       (unsigned long long)st.published,
		       (unsigned long long)st.resent,
		       (unsigned long long)st.receipts, st.pending,
		       (unsigned long long)bench_sink_duplicates(r->relay));
}

/* Runs the node; r->n is the most to submit on entry and what was
 * submitted on return. */
static int run_node(struct rate_run *r, int port, unsigned seconds,
		    uint64_t *elapsed_us)
{
	struct bench_sink_options ro = {
		.port = port,
		.site = BENCH_SITE,
		.node = "rate",
		.receipts = true,
		.max_seq = r->n + 1000,
	};
	uint64_t end;
	int rc;

	rc = bench_sink_start(&ro, &r->relay);
	if (rc)
		return rc;
	rc = bench_node_open(&r->bn, "rate", port);
	if (rc == 0) {
		rc = bench_loop_until(&r->bn.loop, node_born, r, 5,
				      BIRTH_TIMEOUT_MS);
		if (rc)
			fprintf(stderr,
				"vigie-bench: node did not come online\n");
	}
	if (rc)
		goto out_close;
	uv_idle_init(&r->bn.loop, &r->pump);
	uv_timer_init(&r->bn.loop, &r->check);
	r->pump.data = r->check.data = r;
	r->t_start = bench_mono_us();
	r->submit_until = r->t_start + (uint64_t)seconds * 1000000u;
	r->deadline = r->submit_until + (uint64_t)r->drain_ms * 1000u;
	uv_idle_start(&r->pump, pump_cb);
	uv_timer_start(&r->check, check_cb, 1, 1);
	uv_run(&r->bn.loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&r->pump, NULL);
	uv_close((uv_handle_t *)&r->check, NULL);
	rc = r->rc;
	if (rc == 0) {
		end = bench_sink_last_new_us(r->relay);
		if (r->t_last_durable > end)
			end = r->t_last_durable;
		*elapsed_us = end - r->t_start;
		report_stats(r);
	}
out_close:
	if (bench_node_close(&r->bn) != 0 && rc == 0)
		rc = VIGIE_EIO;
	bench_sink_free(r->relay);
	r->relay = NULL;
	return rc;
}

static int run_bare(int port, uint64_t n, uint64_t *elapsed_us)
{
	struct bench_sink_options ro = {
		.port = port,
		.site = BENCH_SITE,
		.node = "bare-rate",
		.receipts = true,
		.max_seq = n,
	};
	struct bench_sink *relay;
	int rc;

	rc = bench_sink_start(&ro, &relay);
	if (rc)
		return rc;
	rc = bench_bare_rate(port, "bare-rate", n, WINDOW, relay, elapsed_us);
	bench_sink_free(relay);
	return rc;
}

int bench_publish_rate(const struct bench_opts *o)
{
	static struct rate_run r;
	struct bench_broker site;
	struct bench_broker_options bo = {.persistence = !o->no_persistence};
	unsigned seconds = o->quick ? SECONDS_QUICK : SECONDS_FULL;
	uint64_t node_us = 0, bare_us = 0;
	double node_rate, bare_rate;
	int rc;

	memset(&r, 0, sizeof(r));
	r.n = o->quick ? N_QUICK : N_FULL;
	r.drain_ms = o->quick ? DRAIN_QUICK_MS : DRAIN_FULL_MS;
	rc = bench_broker_start(&site, "rate-site", &bo);
	if (rc)
		return rc;
	bench_progress("node.publish_rate: node, up to %llu events or %u s",
		       (unsigned long long)r.n, seconds);
	rc = run_node(&r, site.port, seconds, &node_us);
	if (rc == 0 && r.n == 0)
		rc = VIGIE_EIO;
	if (rc == 0) {
		bench_progress(
			"node.publish_rate: bare libmosquitto, %llu events",
			(unsigned long long)r.n);
		rc = run_bare(site.port, r.n, &bare_us);
	}
	if (bench_broker_stop(&site) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	if (rc)
		return rc;
	node_rate = (double)r.n * 1e6 / (double)(node_us ? node_us : 1);
	bare_rate = (double)r.n * 1e6 / (double)(bare_us ? bare_us : 1);
	bench_progress("node.publish_rate: node %.0f/s (%llu in %.2f s), bare "
		       "%.0f/s (%.2f s)",
		       node_rate, (unsigned long long)r.n,
		       (double)node_us / 1e6, bare_rate, (double)bare_us / 1e6);
	bench_emit(o, "node.publish_rate", node_rate, "events/s", bare_rate);
	return 0;
}
