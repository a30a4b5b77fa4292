/* Signature checks on the thread pool; the contract is in verify.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify.h"
#include "vigie/error.h"

struct verify_batch {
	uv_work_t work;
	struct verifier *v;
	struct verify_job *head, **tail;
	size_t n;
	bool queued; /* handed to the pool */
	bool done;
	struct verify_batch *next; /* FIFO of submitted batches */
};

struct verifier {
	uv_loop_t *loop;
	const struct vigie_trust *trust;
	verify_done_cb cb;
	void *ud;
	uv_idle_t idle; /* active while a batch is open */
	struct verify_batch *open;
	struct verify_batch *fifo_head, *fifo_tail;
	size_t inflight;
	size_t jobs; /* not delivered yet */
	bool closing;
	bool idle_closed;
	void (*close_cb)(void *arg);
	void *close_arg;
};

void vigie__verify_job_free(struct verify_job *j)
{
	if (j->ev || j->se)
		vigie_event_free(j->se, j->ev);
	if (j->body)
		vigie__v1__heartbeat_body__free_unpacked(j->body, NULL);
	if (j->hb)
		vigie__v1__heartbeat__free_unpacked(j->hb, NULL);
	free(j);
}

/* The key named by the message, its signature over `bytes`, and whether
 * the key's owner is the site/node the message claims. */
static enum verify_verdict check_sig(const struct vigie_trust *trust,
				     struct verify_job *j, const char *key_id,
				     const ProtobufCBinaryData *sig,
				     const ProtobufCBinaryData *bytes,
				     const char *site, const char *node)
{
	if (!sig->len && (!key_id || !*key_id))
		return VERIFY_UNSIGNED;
	j->key = vigie_trust_find(trust, key_id);
	if (!j->key)
		return VERIFY_UNKNOWN_KEY;
	if (vigie_sign_verify(j->key->pk, bytes->data, bytes->len, sig->data,
			      sig->len))
		return VERIFY_BAD_SIGNATURE;
	if (strcmp(j->key->site, site) != 0 || strcmp(j->key->node, node) != 0)
		return VERIFY_WRONG_OWNER;
	return VERIFY_OK;
}

void vigie__verify_job_run(const struct vigie_trust *trust,
			   struct verify_job *j)
{
	if (j->t.type == VIGIE_TOPIC_EVENT) {
		if (vigie_event_decode(j->payload, j->len, &j->se, &j->ev)) {
			j->se = NULL;
			j->ev = NULL;
			j->verdict = VERIFY_DECODE;
			return;
		}
		vigie_sign_digest(j->se->event.data, j->se->event.len,
				  j->digest);
		j->verdict =
			check_sig(trust, j, j->se->key_id, &j->se->signature,
				  &j->se->event, j->ev->site, j->ev->node);
		return;
	}
	j->hb = vigie__v1__heartbeat__unpack(NULL, j->len, j->payload);
	if (j->hb)
		j->body = vigie__v1__heartbeat_body__unpack(
			NULL, j->hb->body.len, j->hb->body.data);
	if (!j->body) {
		j->verdict = VERIFY_DECODE;
		return;
	}
	j->verdict = check_sig(trust, j, j->hb->key_id, &j->hb->signature,
			       &j->hb->body, j->body->site, j->body->node);
}

static void work_cb(uv_work_t *w)
{
	struct verify_batch *b = w->data;

	for (struct verify_job *j = b->head; j; j = j->next)
		vigie__verify_job_run(b->v->trust, j);
}

static void free_jobs(struct verify_batch *b)
{
	struct verify_job *j = b->head, *next;

	for (; j; j = next) {
		next = j->next;
		vigie__verify_job_free(j);
	}
	b->head = NULL;
	b->tail = &b->head;
}

static void maybe_closed(struct verifier *v)
{
	void (*cb)(void *) = v->close_cb;
	void *arg = v->close_arg;

	if (!v->closing || v->inflight || !v->idle_closed)
		return;
	free(v);
	if (cb)
		cb(arg);
}

static void flush(struct verifier *v);
static void idle_cb(uv_idle_t *h);

static void after_work_cb(uv_work_t *w, int status)
{
	struct verify_batch *b = w->data;
	struct verifier *v = b->v;

	(void)status;
	b->done = true;
	v->inflight--;
	/* Deliver in submission order: a later batch that finished first
	 * waits for the earlier ones. */
	while (v->fifo_head && v->fifo_head->done) {
		struct verify_batch *h = v->fifo_head;
		struct verify_job *j = h->head, *next;

		v->fifo_head = h->next;
		if (!v->fifo_head)
			v->fifo_tail = NULL;
		for (; j; j = next) {
			next = j->next;
			if (!v->closing)
				v->cb(v->ud, j);
			vigie__verify_job_free(j);
		}
		v->jobs -= h->n;
		free(h);
	}
	if (v->closing)
		maybe_closed(v);
	else
		flush(v);
}

/* Seal the open batch into the FIFO, then hand sealed batches to the pool
 * while fewer than VERIFY_MAX_INFLIGHT are there. */
static void flush(struct verifier *v)
{
	struct verify_batch *b = v->open;

	if (b && b->n) {
		v->open = NULL;
		uv_idle_stop(&v->idle);
		if (v->fifo_tail)
			v->fifo_tail->next = b;
		else
			v->fifo_head = b;
		v->fifo_tail = b;
	}
	for (b = v->fifo_head; b && v->inflight < VERIFY_MAX_INFLIGHT;
	     b = b->next) {
		if (b->queued)
			continue;
		b->work.data = b;
		if (uv_queue_work(v->loop, &b->work, work_cb, after_work_cb) !=
		    0) {
			/* Cannot happen with valid arguments: its jobs are
			 * delivered VERIFY_NOT_CHECKED, dropped unreceipted
			 * (their nodes send them again). */
			b->done = true;
			b->queued = true;
			continue;
		}
		b->queued = true;
		v->inflight++;
	}
}

/* The loop turn after messages were queued: they go to the pool. */
static void idle_cb(uv_idle_t *h)
{
	flush(h->data);
}

int vigie__verify_open(uv_loop_t *loop, const struct vigie_trust *trust,
		       verify_done_cb cb, void *ud, struct verifier **out)
{
	struct verifier *v = calloc(1, sizeof(*v));

	if (!v)
		return VIGIE_ENOMEM;
	v->loop = loop;
	v->trust = trust;
	v->cb = cb;
	v->ud = ud;
	uv_idle_init(loop, &v->idle);
	v->idle.data = v;
	*out = v;
	return 0;
}

int vigie__verify_submit(struct verifier *v, const struct vigie_topic *t,
			 const char *topic, const void *payload, size_t len)
{
	struct verify_batch *b = v->open;
	struct verify_job *j;

	if (v->closing)
		return VIGIE_ECLOSED;
	if (v->jobs >= VERIFY_MAX_JOBS)
		return VIGIE_EFULL;
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return VIGIE_ENOMEM;
		b->v = v;
		b->tail = &b->head;
		v->open = b;
		/* Sealed at the next loop turn, after this turn's reads:
		 * an active idle handle also keeps poll from blocking. */
		uv_idle_start(&v->idle, idle_cb);
	}
	j = calloc(1, sizeof(*j) + len);
	if (!j)
		return VIGIE_ENOMEM;
	j->verdict = VERIFY_NOT_CHECKED; /* until a worker ran it */
	j->t = *t;
	snprintf(j->topic, sizeof(j->topic), "%s", topic);
	j->len = len;
	memcpy(j->payload, payload, len);
	*b->tail = j;
	b->tail = &j->next;
	b->n++;
	v->jobs++;
	if (b->n >= VERIFY_BATCH_MAX)
		flush(v);
	return 0;
}

size_t vigie__verify_pending(const struct verifier *v)
{
	return v ? v->jobs : 0;
}

static void on_idle_closed(uv_handle_t *h)
{
	struct verifier *v = h->data;

	v->idle_closed = true;
	maybe_closed(v);
}

void vigie__verify_close(struct verifier *v, void (*cb)(void *arg), void *arg)
{
	if (v->closing)
		return;
	v->closing = true;
	v->close_cb = cb;
	v->close_arg = arg;
	if (v->open) {
		v->jobs -= v->open->n;
		free_jobs(v->open);
		free(v->open);
		v->open = NULL;
	}
	uv_idle_stop(&v->idle);
	uv_close((uv_handle_t *)&v->idle, on_idle_closed);
}
