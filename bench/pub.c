/* Bulk QoS 1 publishing with a bare libmosquitto client: messages encoded
 * beforehand, sent as fast as the broker PUBACKs them, with at most
 * `window` not yet PUBACKed, on the caller's thread (driven by
 * bench_mosq_pump, as the baselines are). Optionally like a node, which
 * keeps what is not receipted in its outbox and sends no further ahead of
 * the relay than its receipt window: a bare publisher that outran a relay
 * would only see it shed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "bench.h"
#include "vigie/codec.h"
#include "vigie/error.h"

#define CHUNK 256

/* The user data while publishing. */
struct progress {
	uint64_t acked;
	uint64_t boot_id;
	uint64_t receipted; /* highest seq of boot_id receipted */
	uint64_t n;
	uint64_t done_us; /* when receipted reached n */
};

static void on_puback(struct mosquitto *mosq, void *ud, int mid)
{
	(void)mosq;
	(void)mid;
	((struct progress *)ud)->acked++;
}

static void on_receipt(struct mosquitto *mosq, void *ud,
		       const struct mosquitto_message *msg)
{
	struct progress *p = ud;
	Vigie__V1__Receipt *r;

	(void)mosq;
	r = vigie__v1__receipt__unpack(NULL, (size_t)msg->payloadlen,
				       msg->payload);
	if (!r)
		return;
	if (r->boot_id == p->boot_id && r->seq > p->receipted) {
		p->receipted = r->seq;
		if (p->receipted >= p->n && !p->done_us)
			p->done_us = bench_mono_us();
	}
	vigie__v1__receipt__free_unpacked(r, NULL);
}

/* `receipt_window` 0: until every message is PUBACKed; else until every
 * one is receipted, at most that many ahead of the Receipts. */
int bench_publish_receipted(struct mosquitto *mosq, const struct bench_msgs *m,
			    unsigned window, uint64_t receipt_window,
			    uint64_t boot_id, unsigned timeout_ms,
			    uint64_t *done_us)
{
	struct progress p = {.boot_id = boot_id, .n = m->n};
	const uint64_t *done = receipt_window ? &p.receipted : &p.acked;
	uint64_t sent = 0, next_misc = 0;
	uint64_t deadline = bench_mono_us() + (uint64_t)timeout_ms * 1000u;
	int rc = 0;

	mosquitto_user_data_set(mosq, &p);
	mosquitto_publish_callback_set(mosq, on_puback);
	if (receipt_window)
		mosquitto_message_callback_set(mosq, on_receipt);
	while (*done < m->n) {
		bool room;

		for (int k = 0;
		     k < CHUNK && sent < m->n && sent - p.acked < window &&
		     (!receipt_window || sent - p.receipted < receipt_window);
		     k++, sent++) {
			int mrc = mosquitto_publish(
				mosq, NULL,
				m->topics ? m->topics[sent] : m->topic,
				(int)m->lens[sent], m->payloads[sent], 1,
				false);

			if (mrc != MOSQ_ERR_SUCCESS) {
				fprintf(stderr, "vigie-bench: publish: %s\n",
					mosquitto_strerror(mrc));
				rc = VIGIE_ENOCONN;
				goto out;
			}
		}
		if (bench_mono_us() >= deadline) {
			fprintf(stderr,
				"vigie-bench: %llu of %llu messages %s in %u "
				"s\n",
				(unsigned long long)*done,
				(unsigned long long)m->n,
				receipt_window ? "receipted" : "PUBACKed",
				timeout_ms / 1000);
			rc = VIGIE_EIO;
			goto out;
		}
		room = sent < m->n && sent - p.acked < window &&
		       (!receipt_window || sent - p.receipted < receipt_window);
		rc = bench_mosq_pump(mosq, room ? 0 : 1000, &next_misc);
		if (rc)
			goto out;
	}
	if (done_us)
		*done_us = p.done_us;
out:
	if (receipt_window)
		mosquitto_message_callback_set(mosq, NULL);
	mosquitto_publish_callback_set(mosq, NULL);
	mosquitto_user_data_set(mosq, NULL);
	return rc;
}

int bench_publish_all(struct mosquitto *mosq, const struct bench_msgs *m,
		      unsigned window, unsigned timeout_ms)
{
	return bench_publish_receipted(mosq, m, window, 0, 0, timeout_ms, NULL);
}

void bench_msgs_free(struct bench_msgs *m)
{
	for (uint64_t i = 0; i < m->n; i++) {
		if (m->payloads)
			free(m->payloads[i]);
		if (m->topics)
			free(m->topics[i]);
	}
	free(m->payloads);
	free(m->topics);
	free(m->lens);
	memset(m, 0, sizeof(*m));
}

int bench_msgs_alloc(struct bench_msgs *m, uint64_t n, bool topics)
{
	memset(m, 0, sizeof(*m));
	m->payloads = calloc(n ? n : 1, sizeof(*m->payloads));
	m->lens = calloc(n ? n : 1, sizeof(*m->lens));
	if (topics)
		m->topics = calloc(n ? n : 1, sizeof(*m->topics));
	if (!m->payloads || !m->lens || (topics && !m->topics)) {
		bench_msgs_free(m);
		return VIGIE_ENOMEM;
	}
	/* Slots filled by the caller; freeing n of them is safe (NULL). */
	m->n = n;
	return 0;
}
