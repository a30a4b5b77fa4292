/* node.latency_p50 / node.latency_p99: how long an alarm takes from the
 * moment a source hands it to the node to its arrival at the central
 * broker's subscriber (where the relay sits), along the production path:
 *
 *   node -> site broker -> bridge (QoS 1, mqttv311) -> central broker -> sub
 *
 * at a steady 1000 events/s. Latency is the subscriber's receive time minus
 * Event.time_us, which the node stamps when the event is submitted, so it
 * includes the node's own work (encode, outbox append, publish); the fsync
 * runs alongside, as in service. The subscriber publishes Receipts on the
 * central broker, which the bridge carries back down to the node.
 *
 * Baseline: bench_bare_paced, a bare libmosquitto publisher at the same rate
 * on the same path, each payload stamped just before mosquitto_publish. The
 * relay stand-in receipts its events too and it subscribes to them, so the
 * bridge carries the same traffic both ways: the ratio is the node's own
 * cost. (A publisher that gets no Receipts sees far better figures through a
 * Mosquitto 2.0.11 bridge; see broker.c.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "vigie/error.h"
#include "vigie/log.h"

#define RATE          1000.0
#define SECONDS_FULL  10u
#define SECONDS_QUICK 2u
/* The first events pay for cold caches and connection warm-up. */
#define WARMUP 100u
/* After the last event is sent, for stragglers (a re-send takes 5 s). */
#define DRAIN_FULL_MS    15000u
#define DRAIN_QUICK_MS   6000u
#define BIRTH_TIMEOUT_MS 10000u

struct lat_run {
	struct bench_node bn;
	struct bench_sink *relay;
	uv_timer_t pace;
	uint64_t n, submitted, durable, failed;
	uint64_t t0;
	unsigned drain_ms;
	int rc;
};

struct percentiles {
	uint32_t p50, p99;
};

static void on_durable(void *arg, int status, uint64_t boot_id, uint64_t seq,
		       const char *err)
{
	struct lat_run *r = arg;

	(void)boot_id;
	if (status) {
		if (r->failed++ == 0)
			vigie_log_error("bench: event %llu not stored: %s",
					(unsigned long long)seq, err);
		return;
	}
	r->durable++;
}

static void pace_cb(uv_timer_t *t)
{
	struct lat_run *r = t->data;
	uint64_t due =
		(uint64_t)((double)(bench_mono_us() - r->t0) * RATE / 1e6) + 1;

	if (due > r->n)
		due = r->n;
	while (r->submitted < due) {
		if (bench_node_submit(&r->bn, on_durable, r) != 0) {
			r->rc = VIGIE_EIO;
			uv_timer_stop(t);
			return;
		}
		r->submitted++;
	}
	if (r->submitted == r->n)
		uv_timer_stop(t);
}

static bool node_born(void *arg)
{
	struct lat_run *r = arg;

	return bench_sink_online_boot(r->relay) ==
	       vigie__node_boot_id(r->bn.node);
}

static bool all_arrived(void *arg)
{
	struct lat_run *r = arg;

	if (r->rc)
		return true;
	return r->submitted == r->n && r->durable + r->failed >= r->n &&
	       bench_sink_received(r->relay) >= r->n;
}

/* Percentiles over seq WARMUP+1 .. n of a stopped relay stand-in. */
static int collect(const struct bench_sink *relay, uint64_t n, const char *who,
		   struct percentiles *out)
{
	uint32_t *v = malloc((n + 1) * sizeof(*v));
	size_t count = 0;
	uint64_t missing = 0;

	if (!v)
		return VIGIE_ENOMEM;
	for (uint64_t seq = WARMUP + 1; seq <= n; seq++) {
		uint32_t lat = bench_sink_latency(relay, seq);

		if (lat == UINT32_MAX)
			missing++;
		else
			v[count++] = lat;
	}
	if (missing || !count) {
		fprintf(stderr,
			"vigie-bench: %s: %llu of %llu events never arrived\n",
			who, (unsigned long long)missing,
			(unsigned long long)(n - WARMUP));
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

static int run_node(struct lat_run *r, int site_port, int central_port,
		    struct percentiles *out)
{
	struct bench_sink_options ro = {
		.port = central_port,
		.site = BENCH_SITE,
		.node = "latency",
		.receipts = true,
		.max_seq = r->n + 1000,
	};
	int rc;

	rc = bench_sink_start(&ro, &r->relay);
	if (rc)
		return rc;
	rc = bench_node_open(&r->bn, "latency", site_port);
	if (rc == 0) {
		/* The birth comes over the bridge: the node is connected and
		 * the upward path works. */
		rc = bench_loop_until(&r->bn.loop, node_born, r, 5,
				      BIRTH_TIMEOUT_MS);
		if (rc)
			fprintf(stderr, "vigie-bench: node did not come online "
					"at the central broker\n");
	}
	if (rc)
		goto out_close;
	uv_timer_init(&r->bn.loop, &r->pace);
	r->pace.data = r;
	r->t0 = bench_mono_us();
	uv_timer_start(&r->pace, pace_cb, 0, 1);
	rc = bench_loop_until(&r->bn.loop, all_arrived, r, 5,
			      (unsigned)(r->n * 1000 / (uint64_t)RATE) +
				      r->drain_ms);
	uv_timer_stop(&r->pace);
	uv_close((uv_handle_t *)&r->pace, NULL);
	if (rc)
		fprintf(stderr,
			"vigie-bench: node: %llu submitted, %llu durable, %llu "
			"received, %u s after the last submit\n",
			(unsigned long long)r->submitted,
			(unsigned long long)r->durable,
			(unsigned long long)bench_sink_received(r->relay),
			r->drain_ms / 1000);
	if (rc == 0)
		rc = r->rc;
	if (rc == 0 && r->failed)
		rc = VIGIE_EIO;
out_close:
	if (bench_node_close(&r->bn) != 0 && rc == 0)
		rc = VIGIE_EIO;
	bench_sink_stop(r->relay);
	if (rc == 0)
		rc = collect(r->relay, r->n, "node.latency: node", out);
	bench_sink_free(r->relay);
	r->relay = NULL;
	return rc;
}

static int run_bare(int site_port, int central_port, uint64_t n,
		    unsigned drain_ms, struct percentiles *out)
{
	struct bench_sink_options ro = {
		.port = central_port,
		.site = BENCH_SITE,
		.node = "bare-latency",
		.receipts = true,
		.max_seq = n,
	};
	struct bench_sink *relay;
	int rc;

	rc = bench_sink_start(&ro, &relay);
	if (rc)
		return rc;
	rc = bench_bare_paced(site_port, "bare-latency", n, RATE, relay,
			      drain_ms);
	bench_sink_stop(relay);
	if (rc == 0)
		rc = collect(relay, n, "node.latency: bare", out);
	bench_sink_free(relay);
	return rc;
}

int bench_latency(const struct bench_opts *o)
{
	static struct lat_run r;
	struct bench_broker central, site;
	struct percentiles node = {0}, bare = {0};
	uint64_t n = (uint64_t)RATE * (o->quick ? SECONDS_QUICK : SECONDS_FULL);
	int rc;

	memset(&r, 0, sizeof(r));
	r.n = n;
	r.drain_ms = o->quick ? DRAIN_QUICK_MS : DRAIN_FULL_MS;
	rc = bench_mesh_start(o, "latency-site", &central, &site);
	if (rc == 0) {
		bench_progress("node.latency: bare libmosquitto, %llu events "
			       "at %.0f/s",
			       (unsigned long long)n, RATE);
		rc = run_bare(site.port, central.port, n, r.drain_ms, &bare);
	}
	if (rc == 0) {
		bench_progress("node.latency: node, %llu events at %.0f/s",
			       (unsigned long long)n, RATE);
		rc = run_node(&r, site.port, central.port, &node);
	}
	if (bench_broker_stop(&site) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	if (bench_broker_stop(&central) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	if (rc)
		return rc;
	bench_emit(o, "node.latency_p50", node.p50, "us", bare.p50);
	bench_emit(o, "node.latency_p99", node.p99, "us", bare.p99);
	return 0;
}
