/* Signature checks on libuv's thread pool.
 *
 * An Ed25519 check costs tens of µs, more than the broker spends on a
 * message, so the loop only copies each signed-topic message into the open
 * batch; a batch goes to the pool when it is full or at the end of the loop
 * turn (uv_idle), several batches in flight so that every core works.
 * Workers decode, look the key up in the (read-only) trust store and verify;
 * results come back on the loop strictly in arrival order (batches are
 * delivered FIFO), so a node's events and heartbeats keep their order into
 * the ingest path. Everything is capped: past VERIFY_MAX_JOBS waiting, a
 * message is refused (an event stays unreceipted and comes again). */
#ifndef VIGIE_RELAY_VERIFY_H
#define VIGIE_RELAY_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vigie/codec.h"
#include "vigie/sign.h"

#define VERIFY_BATCH_MAX    128
#define VERIFY_MAX_INFLIGHT 8
#define VERIFY_MAX_JOBS     50000

enum verify_verdict {
	VERIFY_OK = 0,        /* signed by a trusted key of its own site/node */
	VERIFY_UNSIGNED,      /* decodes, carries no signature */
	VERIFY_DECODE,        /* does not decode: the ingest path says why */
	VERIFY_UNKNOWN_KEY,   /* key id not in the trust store */
	VERIFY_BAD_SIGNATURE, /* signature does not verify */
	VERIFY_WRONG_OWNER,   /* the key belongs to another site/node */
	VERIFY_NOT_CHECKED,   /* no worker ran it: drop, unreceipted */
};

struct verify_job {
	struct verify_job *next;
	struct vigie_topic t;
	char topic[VIGIE_TOPIC_MAX + 1];
	enum verify_verdict verdict;
	const struct vigie_trust_entry *key; /* OK, WRONG_OWNER */
	/* Decoded by the worker, freed by the verifier after delivery. */
	Vigie__V1__SignedEvent *se;
	Vigie__V1__Event *ev;
	Vigie__V1__Heartbeat *hb;
	Vigie__V1__HeartbeatBody *body;
	uint8_t digest[VIGIE_SIGN_DIGEST]; /* of the signed bytes */
	size_t len;
	uint8_t payload[];
};

/* Called on the loop, in arrival order; the job is freed after it. */
typedef void (*verify_done_cb)(void *ud, struct verify_job *j);

struct verifier;

/* vigie__verify_open: `trust` must outlive the verifier. Returns 0 or
 * VIGIE_ENOMEM. */
int vigie__verify_open(uv_loop_t *loop, const struct vigie_trust *trust,
		       verify_done_cb cb, void *ud, struct verifier **out);

/* vigie__verify_submit: queue an event or heartbeat message (copied).
 * Returns 0, VIGIE_EFULL (over VERIFY_MAX_JOBS) or VIGIE_ENOMEM; the
 * callback follows only on 0. */
int vigie__verify_submit(struct verifier *v, const struct vigie_topic *t,
			 const char *topic, const void *payload, size_t len);

/* Messages queued or being checked, not delivered yet. */
size_t vigie__verify_pending(const struct verifier *v);

/* vigie__verify_close: deliver nothing more, wait for the workers, free
 * everything, then cb(arg) on the loop. */
void vigie__verify_close(struct verifier *v, void (*cb)(void *arg), void *arg);

/* vigie__verify_job_run: the worker's part for one job (decode, key, check),
 * exposed for the fuzzer and the bench. */
void vigie__verify_job_run(const struct vigie_trust *trust,
			   struct verify_job *j);
/* vigie__verify_job_free: release what the worker decoded, and the job. */
void vigie__verify_job_free(struct verify_job *j);

#endif
