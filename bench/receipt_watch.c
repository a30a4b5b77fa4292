/* Receipts at the central broker, as the nodes would see them: which of
 * the nodes "<prefix>0" .. "<prefix><n-1>" had every seq up to `target`
 * receipted, and when the last of them got there. A Receipt says "every
 * seq <= this one of this boot is stored", so once all nodes reached their
 * target the relay has decoded, stored (committed) and receipted all of
 * their events of that boot. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "bench.h"
#include "vigie/codec.h"
#include "vigie/error.h"

struct bench_receipts {
	struct bench_sub *sub;
	char prefix[VIGIE_ID_MAX + 1];
	size_t prefix_len;
	unsigned n;
	uint64_t boot_id; /* 0: any */
	uint64_t target;
	uint64_t *seq; /* highest receipted per node; the sub's thread only */
	atomic_uint done;
	atomic_uint_fast64_t last_us;
	atomic_uint_fast64_t foreign;
};

static void on_receipt(struct mosquitto *mosq, void *ud,
		       const struct mosquitto_message *msg)
{
	struct bench_receipts *w = ud;
	Vigie__V1__Receipt *r;
	struct vigie_topic t;
	unsigned long idx;
	char *end;

	(void)mosq;
	if (vigie_topic_parse(msg->topic, &t) != 0 ||
	    strncmp(t.node, w->prefix, w->prefix_len) != 0)
		goto out_foreign;
	idx = strtoul(t.node + w->prefix_len, &end, 10);
	if (*end || end == t.node + w->prefix_len || idx >= w->n)
		goto out_foreign;
	r = vigie__v1__receipt__unpack(NULL, (size_t)msg->payloadlen,
				       msg->payload);
	if (!r)
		goto out_foreign;
	if (w->boot_id && r->boot_id != w->boot_id) {
		vigie__v1__receipt__free_unpacked(r, NULL);
		goto out_foreign;
	}
	if (r->seq > w->seq[idx]) {
		if (w->seq[idx] < w->target && r->seq >= w->target) {
			atomic_store(&w->last_us, bench_mono_us());
			atomic_fetch_add(&w->done, 1);
		}
		w->seq[idx] = r->seq;
	}
	vigie__v1__receipt__free_unpacked(r, NULL);
	return;
out_foreign:
	/* The readiness probe's receipts, another boot's, or not a node of
	 * ours. */
	atomic_fetch_add(&w->foreign, 1);
}

int bench_receipts_start(int port, const char *prefix, unsigned n,
			 uint64_t boot_id, uint64_t target,
			 struct bench_receipts **out)
{
	struct bench_receipts *w = calloc(1, sizeof(*w));
	char topic[VIGIE_TOPIC_MAX], client_id[VIGIE_ID_MAX + 32];
	int rc;

	if (!w)
		return VIGIE_ENOMEM;
	snprintf(w->prefix, sizeof(w->prefix), "%s", prefix);
	w->prefix_len = strlen(w->prefix);
	w->n = n;
	w->boot_id = boot_id;
	w->target = target;
	w->seq = calloc(n ? n : 1, sizeof(*w->seq));
	if (!w->seq) {
		rc = VIGIE_ENOMEM;
		goto out_free;
	}
	snprintf(topic, sizeof(topic), "vigie/v1/relay/%s/receipt/+",
		 BENCH_SITE);
	snprintf(client_id, sizeof(client_id), "vigie-bench-receipts-%s-%llu",
		 prefix, (unsigned long long)boot_id);
	rc = bench_sub_start(port, client_id, topic, on_receipt, w, &w->sub);
	if (rc)
		goto out_free;
	*out = w;
	return 0;
out_free:
	free(w->seq);
	free(w);
	return rc;
}

unsigned bench_receipts_done(struct bench_receipts *w)
{
	return atomic_load(&w->done);
}

uint64_t bench_receipts_last_us(struct bench_receipts *w)
{
	return atomic_load(&w->last_us);
}

void bench_receipts_stop(struct bench_receipts *w)
{
	if (!w)
		return;
	bench_sub_stop(w->sub);
	free(w->seq);
	free(w);
}
