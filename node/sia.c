/* The SIA DC-09 receiver: TCP and UDP listeners for intrusion panels.
 *
 * A frame goes through, in order: framing (garbage or an oversized frame
 * closes a TCP connection), CRC and length (wrong: dropped unanswered, the
 * panel repeats it), header, account (unknown: NAK), key (cleartext from
 * an account that has one, or a region that does not decrypt: NAK),
 * timestamp window (outside: NAK with our time), then the payload (a code
 * we do not map: DUH and a log line).
 *
 * Ordering rules kept here:
 * - an event's ACK goes back only from the node's durable callback: the
 *   outbox is the only copy until the relay's Receipt, so the panel must
 *   keep its own copy until then;
 * - a TCP connection is answered in the order its frames came;
 * - a panel repeating an (account, seq) it sent recently, with the same
 *   data, gets the answer of the first copy (once that is durable) and
 *   nothing is submitted again, so one panel event is one Vigie event;
 * - the supervision timer restarts only on a message that passed the
 *   account, key and time checks: a forged cleartext NULL for a keyed
 *   account keeps nothing alive. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sia.h"
#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"

/* Frames of one connection waiting for their answer before we stop reading
 * from it (a panel sends one and waits; more is a flood). */
#define CONN_MAX_PENDING 64
/* UDP answers waiting for the outbox, across all panels. */
#define UDP_MAX_PENDING 4096
/* Warnings per second before the rest of that second is only counted. */
#define LOG_BURST    20
#define SWEEP_MIN_MS 20
#define SWEEP_MAX_MS 1000

#define K(x)         VIGIE__V1__EVENT_KIND__KIND_##x
#define S(x)         VIGIE__V1__EVENT_STATE__STATE_##x

struct sia_receiver;
struct conn;

struct listener {
	struct sia_receiver *rx;
	bool udp;
	union {
		uv_tcp_t tcp;
		uv_udp_t udp;
	} h;
	bool inited;
	int port;
	char name[80]; /* "tcp 127.0.0.1:9500" */
};

/* One frame waiting for its answer. */
struct sia_msg {
	struct sia_receiver *rx;
	struct conn *conn;    /* TCP; NULL for UDP */
	struct listener *udp; /* UDP: where the answer leaves from */
	struct sockaddr_storage peer;
	struct sia_msg *next;        /* the connection's answer order */
	struct sia_msg *next_waiter; /* in a remembered (account, seq) */
	bool ready;
	struct sia_frame req; /* what the answer echoes */
	const struct sia_account_conf *acct;
	size_t len; /* 0 when ready: no answer */
	char reply[SIA_REPLY_MAX];
};

struct conn {
	uv_tcp_t tcp;
	struct sia_receiver *rx;
	struct conn *next, *prev;
	char buf[2 * SIA_FRAME_MAX];
	size_t used;
	struct sia_msg *head, *tail;
	size_t pending;
	int refs; /* the handle + every message in the list */
	bool closing, reading;
	uint64_t last_ms;
	char peer[64];
};

/* A recently seen (account, seq): its answer is given again to a retry. */
struct seen {
	struct seen *hnext;
	struct seen *older, *newer;
	struct sia_receiver *rx;
	size_t acct;
	unsigned seq;
	uint64_t hash;
	uint64_t expires_ms; /* once settled */
	int remaining;       /* submitted events not reported yet */
	bool failed;
	bool durable;
	struct sia_msg *waiters;
	size_t n_waiters;
};

struct acct_state {
	uint64_t last_ms; /* last accepted message, monotonic */
	bool lost;        /* comm loss raised, no restore yet */
};

struct sia_receiver {
	uv_loop_t *loop;
	struct vigie_node *node;
	const struct sia_config *sc;
	struct listener *listeners;
	struct acct_state *acct;
	struct conn *conns;
	size_t n_conns;
	uv_timer_t sweep;
	bool sweep_inited;
	struct seen **buckets;
	size_t n_buckets; /* power of two */
	struct seen *oldest, *newest;
	size_t n_seen;
	size_t udp_pending;
	size_t pending_submits;
	int handles_open;
	bool closing;
	char udp_buf[SIA_FRAME_MAX + 64];
	uint64_t log_second, logged, suppressed;
	struct sia_stats st;
	void (*close_cb)(void *arg);
	void *close_arg;
};

/* ---- logging with a budget: a flood of garbage must not flood the log */

static bool log_budget(struct sia_receiver *rx)
{
	uint64_t sec = vigie_clock_mono_ms() / 1000;

	if (sec != rx->log_second) {
		if (rx->suppressed)
			vigie_log_warn(
				"panels: %llu more warning(s) suppressed",
				(unsigned long long)rx->suppressed);
		rx->log_second = sec;
		rx->logged = 0;
		rx->suppressed = 0;
	}
	if (rx->logged++ < LOG_BURST)
		return true;
	rx->suppressed++;
	return false;
}

#define rx_warn(rx, ...)                                                       \
	do {                                                                   \
		if (log_budget(rx))                                            \
			vigie_log_warn(__VA_ARGS__);                           \
	} while (0)

/* ---- lifetime ---- */

static void seen_free_all(struct sia_receiver *rx)
{
	while (rx->oldest) {
		struct seen *s = rx->oldest;

		rx->oldest = s->newer;
		free(s);
	}
	rx->newest = NULL;
	rx->n_seen = 0;
}

/* Free the receiver once its handles are closed and the node reported on
 * every event it was given (durable callbacks point into it). */
static void maybe_free(struct sia_receiver *rx)
{
	void (*cb)(void *arg);
	void *arg;

	if (!rx->closing || rx->handles_open > 0 || rx->pending_submits > 0)
		return;
	cb = rx->close_cb;
	arg = rx->close_arg;
	seen_free_all(rx);
	free(rx->buckets);
	free(rx->listeners);
	free(rx->acct);
	free(rx);
	if (cb)
		cb(arg);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct sia_receiver *rx = h->data;

	rx->handles_open--;
	maybe_free(rx);
}

/* ---- TCP connections ---- */

static void conn_release(struct conn *c)
{
	if (--c->refs > 0)
		return;
	free(c);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct sia_receiver *rx = c->rx;

	conn_release(c);
	rx->handles_open--;
	maybe_free(rx);
}

static void conn_close(struct conn *c)
{
	struct sia_receiver *rx = c->rx;

	if (c->closing)
		return;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		rx->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	rx->n_conns--;
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_written(uv_write_t *req, int status)
{
	(void)status;
	free(req);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Write the answers at the head of the queue that are ready, in order. */
static void flush_replies(struct conn *c)
{
	while (c->head && c->head->ready) {
		struct sia_msg *m = c->head;

		c->head = m->next;
		if (!c->head)
			c->tail = NULL;
		c->pending--;
		if (!c->closing && m->len) {
			/* The write request and its bytes share one block. */
			uv_write_t *req = malloc(sizeof(*req) + m->len);

			if (req) {
				uv_buf_t b;

				memcpy(req + 1, m->reply, m->len);
				b = uv_buf_init((char *)(req + 1),
						(unsigned)m->len);
				if (uv_write(req, (uv_stream_t *)&c->tcp, &b, 1,
					     on_written))
					free(req);
			}
		}
		free(m);
		conn_release(c);
	}
	if (!c->closing && !c->reading && c->pending < CONN_MAX_PENDING / 2) {
		c->reading = true;
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	}
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	(void)status;
	free(req);
	conn_close(c);
	conn_release(c);
}

/* Close once what is already written has left, so that the answers sent
 * before the bad frame still reach the panel. */
static void close_after_writes(struct conn *c)
{
	uv_shutdown_t *sd;

	if (c->closing)
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = false;
	c->used = 0;
	sd = malloc(sizeof(*sd));
	if (sd) {
		sd->data = c;
		c->refs++;
		if (uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
			return;
		c->refs--;
		free(sd);
	}
	conn_close(c);
}

/* ---- answers ---- */

static void on_udp_sent(uv_udp_send_t *req, int status)
{
	(void)status;
	free(req);
}

static void udp_deliver(struct sia_msg *m)
{
	struct sia_receiver *rx = m->rx;

	rx->udp_pending--;
	if (!rx->closing && m->len) {
		uv_buf_t b = uv_buf_init(m->reply, (unsigned)m->len);
		int n = uv_udp_try_send(&m->udp->h.udp, &b, 1,
					(const struct sockaddr *)&m->peer);

		if (n == UV_EAGAIN) {
			uv_udp_send_t *req = malloc(sizeof(*req) + m->len);

			if (req) {
				memcpy(req + 1, m->reply, m->len);
				b = uv_buf_init((char *)(req + 1),
						(unsigned)m->len);
				if (uv_udp_send(
					    req, &m->udp->h.udp, &b, 1,
					    (const struct sockaddr *)&m->peer,
					    on_udp_sent))
					free(req);
			}
		}
	}
	free(m);
}

enum answer { ANSWER_NONE, ANSWER_ACK, ANSWER_NAK, ANSWER_DUH };

/* Build the answer now (an encrypted ACK carries the time it leaves) and
 * hand it to its connection's queue or to the UDP socket. */
static void answer(struct sia_msg *m, enum answer a)
{
	struct sia_receiver *rx = m->rx;
	int64_t now_s = (int64_t)(vigie_clock_now_us() / 1000000u);
	int rc = 0;

	m->len = 0;
	switch (a) {
	case ANSWER_NONE:
		break;
	case ANSWER_ACK:
		rc = vigie__sia_ack(&m->req, m->acct ? m->acct->key : NULL,
				    m->acct ? m->acct->key_len : 0, now_s,
				    m->reply, sizeof(m->reply), &m->len);
		if (rc == 0)
			rx->st.acked++;
		break;
	case ANSWER_NAK:
		rc = vigie__sia_nak(now_s, m->reply, sizeof(m->reply), &m->len);
		if (rc == 0)
			rx->st.naked++;
		break;
	case ANSWER_DUH:
		rc = vigie__sia_duh(&m->req, m->reply, sizeof(m->reply),
				    &m->len);
		if (rc == 0)
			rx->st.duhed++;
		break;
	}
	if (rc) {
		vigie_log_error("panels: cannot build an answer: %s",
				vigie_strerror(rc));
		m->len = 0;
	}
	m->ready = true;
	if (m->conn)
		flush_replies(m->conn);
	else
		udp_deliver(m);
}

static struct sia_msg *msg_new(struct sia_receiver *rx, struct conn *c,
			       struct listener *udp,
			       const struct sockaddr *peer)
{
	struct sia_msg *m;

	if (!c && rx->udp_pending >= UDP_MAX_PENDING)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->rx = rx;
	m->conn = c;
	m->udp = udp;
	if (c) {
		if (c->tail)
			c->tail->next = m;
		else
			c->head = m;
		c->tail = m;
		c->pending++;
		c->refs++;
	} else {
		memcpy(&m->peer, peer,
		       peer->sa_family == AF_INET6
			       ? sizeof(struct sockaddr_in6)
			       : sizeof(struct sockaddr_in));
		rx->udp_pending++;
	}
	return m;
}

/* ---- remembered (account, seq) ---- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

static size_t seen_bucket(const struct sia_receiver *rx, size_t acct,
			  unsigned seq)
{
	uint64_t k = (uint64_t)acct * 10007u + seq;

	return (size_t)((k * 11400714819323198485ull) >> 40) &
	       (rx->n_buckets - 1);
}

static struct seen *seen_find(struct sia_receiver *rx, size_t acct,
			      unsigned seq)
{
	for (struct seen *s = rx->buckets[seen_bucket(rx, acct, seq)]; s;
	     s = s->hnext)
		if (s->acct == acct && s->seq == seq)
			return s;
	return NULL;
}

static void seen_remove(struct sia_receiver *rx, struct seen *s)
{
	struct seen **pp = &rx->buckets[seen_bucket(rx, s->acct, s->seq)];

	while (*pp && *pp != s)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = s->hnext;
	if (s->older)
		s->older->newer = s->newer;
	else
		rx->oldest = s->newer;
	if (s->newer)
		s->newer->older = s->older;
	else
		rx->newest = s->older;
	rx->n_seen--;
	free(s);
}

/* Forget what expired; with `room`, also the oldest settled entry so that
 * a new one fits under the cap. */
static void seen_expire(struct sia_receiver *rx, uint64_t now, bool room)
{
	while (rx->oldest && rx->oldest->remaining == 0 &&
	       (rx->oldest->expires_ms <= now ||
		(room && rx->n_seen >= rx->sc->max_remembered)))
		seen_remove(rx, rx->oldest);
}

static struct seen *seen_add(struct sia_receiver *rx, size_t acct, unsigned seq,
			     uint64_t hash)
{
	size_t b;
	struct seen *s;

	seen_expire(rx, vigie_clock_mono_ms(), true);
	if (rx->n_seen >= rx->sc->max_remembered)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->rx = rx;
	s->acct = acct;
	s->seq = seq;
	s->hash = hash;
	b = seen_bucket(rx, acct, seq);
	s->hnext = rx->buckets[b];
	rx->buckets[b] = s;
	s->older = rx->newest;
	if (rx->newest)
		rx->newest->newer = s;
	else
		rx->oldest = s;
	rx->newest = s;
	rx->n_seen++;
	return s;
}

static void seen_wait(struct seen *s, struct sia_msg *m)
{
	m->next_waiter = s->waiters;
	s->waiters = m;
	s->n_waiters++;
}

/* Every event of the message is reported on: answer everyone waiting. */
static void seen_settle(struct seen *s)
{
	struct sia_receiver *rx = s->rx;
	struct sia_msg *m = s->waiters;

	s->waiters = NULL;
	s->n_waiters = 0;
	if (!s->failed) {
		s->durable = true;
		s->expires_ms = vigie_clock_mono_ms() + rx->sc->remember_ms;
	}
	while (m) {
		struct sia_msg *next = m->next_waiter;

		/* Stored: ACK. Not stored: no answer, so that the panel
		 * repeats the message (or fails over to its backup receiver)
		 * rather than drop it, as a NAK or DUH could make it do. */
		answer(m, s->failed ? ANSWER_NONE : ANSWER_ACK);
		m = next;
	}
	if (s->failed)
		seen_remove(rx, s);
}

static void on_submitted(void *arg, int status, uint64_t boot_id, uint64_t seq,
			 const char *err)
{
	struct seen *s = arg;
	struct sia_receiver *rx = s->rx;

	(void)boot_id;
	(void)seq;
	rx->pending_submits--;
	if (status) {
		s->failed = true;
		vigie_log_error("panels: account %s seq %04u not stored: %s",
				rx->sc->accounts[s->acct].id, s->seq,
				err ? err : vigie_strerror(status));
	}
	if (--s->remaining == 0)
		seen_settle(s);
	maybe_free(rx);
}

/* ---- events ---- */

static bool intrusion_family(int kind)
{
	return kind >= K(INTRUSION) && kind <= K(VEHICLE);
}

static const struct sia_map *map_event(const struct sia_account_conf *a,
				       const struct sia_event *e)
{
	for (size_t i = 0; i < a->n_map; i++) {
		const struct sia_map *m = &a->map[i];

		if (m->has_zone && (!e->has_zone || e->zone != m->zone))
			continue;
		if (m->has_area && (!e->has_area || e->area != m->area))
			continue;
		return m;
	}
	return a->dflt.vzone || a->dflt.sensor ? &a->dflt : NULL;
}

static void add_attr(struct node_event *ev, const char *key, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));

static void add_attr(struct node_event *ev, const char *key, const char *fmt,
		     ...)
{
	va_list ap;

	if (ev->n_attrs >= NODE_ATTR_MAX)
		return;
	snprintf(ev->attrs[ev->n_attrs].key, sizeof(ev->attrs[0].key), "%s",
		 key);
	va_start(ap, fmt);
	vsnprintf(ev->attrs[ev->n_attrs].value, sizeof(ev->attrs[0].value), fmt,
		  ap);
	va_end(ap);
	ev->n_attrs++;
}

static void make_event(const struct sia_account_conf *a,
		       const struct sia_frame *f, const struct sia_content *c,
		       const struct sia_event *e, uint64_t now_us,
		       struct node_event *ev)
{
	const struct sia_map *m = map_event(a, e);
	size_t n;

	memset(ev, 0, sizeof(*ev));
	ev->kind = e->kind;
	ev->state = e->state;
	/* The panel's clock is only trusted to the window; ours stamps. */
	ev->time_us = now_us;
	snprintf(ev->code, sizeof(ev->code), "%s", e->code);
	if (m) {
		if (m->vzone)
			snprintf(ev->zone, sizeof(ev->zone), "%s", m->vzone);
		if (m->sensor)
			snprintf(ev->sensor, sizeof(ev->sensor), "%s",
				 m->sensor);
		/* "Burglary" says little; the detector behind the zone says
		 * glass break, vibration, door ... */
		if (intrusion_family(ev->kind) &&
		    intrusion_family(m->sensor_kind))
			ev->kind = m->sensor_kind;
	}
	n = (size_t)snprintf(ev->text, sizeof(ev->text), "%s", e->name);
	if (e->has_zone && n < sizeof(ev->text))
		n += (size_t)snprintf(ev->text + n, sizeof(ev->text) - n,
				      ", panel zone %u", e->zone);
	if (e->has_area && n < sizeof(ev->text))
		n += (size_t)snprintf(ev->text + n, sizeof(ev->text) - n,
				      ", area %u", e->area);
	if (e->has_user && n < sizeof(ev->text))
		n += (size_t)snprintf(ev->text + n, sizeof(ev->text) - n,
				      ", user %u", e->user);
	if (e->text[0] && n < sizeof(ev->text))
		n += (size_t)snprintf(ev->text + n, sizeof(ev->text) - n,
				      ": %s", e->text);
	if (n < sizeof(ev->text))
		snprintf(ev->text + n, sizeof(ev->text) - n, " (panel %s)",
			 a->name);
	add_attr(ev, "panel", "%s", a->name);
	add_attr(ev, "account", "%s", a->id);
	add_attr(ev, "dc09_seq", "%04u", f->seq);
	if (e->has_area)
		add_attr(ev, "area", "%u", e->area);
	if (e->has_zone)
		add_attr(ev, "panel_zone", "%u", e->zone);
	if (e->has_user)
		add_attr(ev, "user", "%u", e->user);
	if (e->kind == K(OPEN_CLOSE))
		add_attr(ev, "action", "%s",
			 e->state == S(RESTORE) ? "close" : "open");
	if (e->still_present)
		add_attr(ev, "status", "still-present");
	if (c->has_time) {
		char ts[40];

		vigie_clock_format_us((uint64_t)c->time_s * 1000000u, ts,
				      sizeof(ts));
		add_attr(ev, "panel_time", "%s", ts);
	}
}

/* Supervision: a comm-loss trouble, or its restore, for a panel. */
static int raise_link_event(struct sia_receiver *rx, size_t i, int state,
			    uint64_t silent_ms)
{
	const struct sia_account_conf *a = &rx->sc->accounts[i];
	struct node_event ev;
	char err[160];
	int rc;

	memset(&ev, 0, sizeof(ev));
	ev.kind = K(COMM_LOSS);
	ev.state = state;
	if (a->dflt.vzone)
		snprintf(ev.zone, sizeof(ev.zone), "%s", a->dflt.vzone);
	if (a->dflt.sensor)
		snprintf(ev.sensor, sizeof(ev.sensor), "%s", a->dflt.sensor);
	if (state == S(TROUBLE))
		snprintf(ev.text, sizeof(ev.text),
			 "panel %s (account %s): no message for %llu s "
			 "(supervision %llu s)",
			 a->name, a->id, (unsigned long long)(silent_ms / 1000),
			 (unsigned long long)(a->supervision_ms / 1000));
	else
		snprintf(ev.text, sizeof(ev.text),
			 "panel %s (account %s) reports again after %llu s",
			 a->name, a->id,
			 (unsigned long long)(silent_ms / 1000));
	add_attr(&ev, "panel", "%s", a->name);
	add_attr(&ev, "account", "%s", a->id);
	add_attr(&ev, "reason", "supervision");
	rc = vigie__node_submit(rx->node, &ev, "node", NULL, NULL, err,
				sizeof(err));
	if (rc) {
		rx_warn(rx, "panels: cannot record the link %s of panel %s: %s",
			state == S(TROUBLE) ? "loss" : "restore", a->name, err);
		return rc;
	}
	vigie_log_warn("panels: %s", ev.text);
	if (state == S(TROUBLE))
		rx->st.comm_losses++;
	else
		rx->st.comm_restores++;
	return 0;
}

/* A message passed the account, key and time checks: the link works. */
static void link_alive(struct sia_receiver *rx, size_t i)
{
	struct acct_state *st = &rx->acct[i];
	uint64_t now = vigie_clock_mono_ms();

	/* The restore goes in before the message's own events. */
	if (st->lost &&
	    raise_link_event(rx, i, S(RESTORE), now - st->last_ms) == 0)
		st->lost = false;
	st->last_ms = now;
}

/* ---- one frame ---- */

struct frame_ctx {
	struct sia_receiver *rx;
	struct conn *conn;
	struct listener *udp;
	const struct sockaddr *peer;
	const char *from;
};

static size_t acct_index(const struct sia_receiver *rx,
			 const struct sia_account_conf *a)
{
	return (size_t)(a - rx->sc->accounts);
}

static const char *token_source(enum sia_token t)
{
	return t == SIA_TOKEN_CID ? "contact-id" : "sia-dcs";
}

/* An event message whose header, account and time are fine. */
static void handle_events(const struct frame_ctx *x, struct sia_msg *m,
			  const struct sia_content *c)
{
	struct sia_receiver *rx = x->rx;
	const struct sia_account_conf *a = m->acct;
	size_t ai = acct_index(rx, a);
	struct sia_payload p;
	struct seen *s;
	uint64_t hash, now_us = vigie_clock_now_us();
	char err[160];
	int rc;

	if (m->req.token == SIA_TOKEN_DCS)
		rc = vigie__sia_dcs_parse(c->data, c->data_len, &p, err,
					  sizeof(err));
	else
		rc = vigie__sia_cid_parse(c->data, c->data_len, &p, err,
					  sizeof(err));
	if (rc == 0 && p.account[0] && strcmp(p.account, a->id) != 0) {
		snprintf(err, sizeof(err),
			 "account %s in the data, %s in the header", p.account,
			 a->id);
		rc = VIGIE_EINVAL;
	}
	if (rc) {
		rx_warn(rx, "panels: %s: account %s seq %04u: %s: DUH (%.*s)",
			x->from, a->id, m->req.seq, err,
			(int)(c->data_len > 80 ? 80 : c->data_len), c->data);
		answer(m, ANSWER_DUH);
		return;
	}
	hash = fnv1a(1469598103934665603ull, &m->req.token,
		     sizeof(m->req.token));
	hash = fnv1a(hash, c->data, c->data_len);
	hash = fnv1a(hash, c->xdata, c->xdata_len);
	s = seen_find(rx, ai, m->req.seq);
	if (s && s->hash == hash) {
		/* The panel did not get (or did not wait for) our answer. */
		rx->st.retries++;
		vigie_log_debug("panels: %s: account %s seq %04u again",
				x->from, a->id, m->req.seq);
		if (s->durable)
			answer(m, ANSWER_ACK);
		else if (s->n_waiters < 8)
			seen_wait(s, m);
		else
			answer(m, ANSWER_NONE);
		return;
	}
	if (s && s->remaining) {
		/* Other data under a seq still in flight: answer nothing, the
		 * panel repeats it once the first one is settled. */
		rx->st.busy++;
		rx_warn(rx,
			"panels: %s: account %s seq %04u: other data while "
			"the first is being stored, not answered",
			x->from, a->id, m->req.seq);
		answer(m, ANSWER_NONE);
		return;
	}
	if (s)
		/* Same seq, other data: the panel restarted its numbering. */
		seen_remove(rx, s);
	s = seen_add(rx, ai, m->req.seq, hash);
	if (!s) {
		rx->st.busy++;
		rx_warn(rx,
			"panels: %s: account %s seq %04u: too many messages "
			"in flight, not answered",
			x->from, a->id, m->req.seq);
		answer(m, ANSWER_NONE);
		return;
	}
	seen_wait(s, m);
	/* One reference for the loop below, so that a synchronous failure
	 * cannot settle the entry while events are still being handed. */
	s->remaining = 1;
	for (size_t i = 0; i < p.n; i++) {
		struct node_event ev;

		make_event(a, &m->req, c, &p.ev[i], now_us, &ev);
		s->remaining++;
		rx->pending_submits++;
		rc = vigie__node_submit(rx->node, &ev,
					token_source(m->req.token),
					on_submitted, s, err, sizeof(err));
		if (rc) {
			s->remaining--;
			rx->pending_submits--;
			s->failed = true;
			rx_warn(rx,
				"panels: %s: account %s seq %04u: event %s "
				"not accepted: %s",
				x->from, a->id, m->req.seq, p.ev[i].code, err);
			break;
		}
		rx->st.events++;
	}
	if (--s->remaining == 0)
		seen_settle(s);
}

/* Returns false when the connection must be closed (garbage). */
static bool handle_frame(const struct frame_ctx *x, const char *frame,
			 size_t len)
{
	struct sia_receiver *rx = x->rx;
	char err[160], plain[SIA_BODY_MAX];
	const struct sia_account_conf *a = NULL;
	struct sia_content c;
	struct sia_frame f;
	struct sia_msg *m;
	const char *body;
	size_t blen, plen;
	int64_t now_s;
	int rc;

	rc = vigie__sia_frame_check(frame, len, &body, &blen, err, sizeof(err));
	if (rc == VIGIE_EDECODE) {
		rx_warn(rx, "panels: %s: %s", x->from, err);
		return false;
	}
	if (rc) {
		/* Damaged in transit: the panel repeats it when no answer
		 * comes; answering would echo fields we cannot trust. */
		rx->st.bad_crc++;
		rx_warn(rx, "panels: %s: frame dropped, not answered: %s",
			x->from, err);
		return true;
	}
	rx->st.frames++;
	rc = vigie__sia_frame_parse(body, blen, &f, err, sizeof(err));
	if (rc) {
		rx->st.malformed++;
		rx_warn(rx,
			"panels: %s: unreadable header, not answered: %s "
			"(%.*s)",
			x->from, err, (int)(blen > 60 ? 60 : blen), body);
		return true;
	}
	m = msg_new(rx, x->conn, x->udp, x->peer);
	if (!m) {
		rx->st.busy++;
		rx_warn(rx,
			"panels: %s: too many answers pending, frame dropped",
			x->from);
		return true;
	}
	m->req = f;
	m->req.rest = NULL;
	m->req.rest_len = 0;
	if (f.account[0])
		a = vigie__sia_conf_account(rx->sc, f.account);
	m->acct = a;
	if (f.encrypted) {
		if (!a || !a->key_len) {
			rx->st.refused++;
			rx_warn(rx,
				"panels: %s: encrypted message from %s account "
				"\"%s\": NAK",
				x->from, a ? "keyless" : "unknown",
				f.account[0] ? f.account : "(none)");
			m->acct = NULL;
			answer(m, ANSWER_NAK);
			return true;
		}
		rc = vigie__sia_decrypt(a->key, a->key_len, f.rest, f.rest_len,
					plain, sizeof(plain), &plen);
		if (rc == 0)
			rc = vigie__sia_content_parse(plain, plen, true, &c,
						      err, sizeof(err));
		else
			snprintf(
				err, sizeof(err),
				"encrypted region is not whole hex AES blocks");
		if (rc == 0 && !c.has_time) {
			snprintf(err, sizeof(err),
				 "encrypted message without timestamp");
			rc = VIGIE_EINVAL;
		}
		if (rc) {
			rx->st.refused++;
			rx_warn(rx, "panels: %s: account %s seq %04u: %s: NAK",
				x->from, a->id, f.seq, err);
			m->acct = NULL;
			answer(m, ANSWER_NAK);
			return true;
		}
	} else {
		rc = vigie__sia_content_parse(f.rest, f.rest_len, false, &c,
					      err, sizeof(err));
		if (rc == 0 && !f.account[0] &&
		    (f.token == SIA_TOKEN_DCS || f.token == SIA_TOKEN_CID)) {
			/* DC-09-2007 style: the account only inside the data.
			 */
			struct sia_payload p;

			/* Only the account is wanted here; the data is judged
			 * (and DUHed) once the account is known. */
			if (f.token == SIA_TOKEN_DCS)
				(void)vigie__sia_dcs_parse(c.data, c.data_len,
							   &p, NULL, 0);
			else
				(void)vigie__sia_cid_parse(c.data, c.data_len,
							   &p, NULL, 0);
			if (p.account[0]) {
				a = vigie__sia_conf_account(rx->sc, p.account);
				snprintf(m->req.account, sizeof(m->req.account),
					 "%s", p.account);
				m->acct = a;
			}
		}
		if (!a) {
			rx->st.refused++;
			rx_warn(rx, "panels: %s: unknown account \"%s\": NAK",
				x->from,
				m->req.account[0] ? m->req.account : "(none)");
			answer(m, ANSWER_NAK);
			return true;
		}
		if (a->key_len) {
			rx->st.refused++;
			rx_warn(rx,
				"panels: %s: account %s has a key but sent in "
				"clear: NAK",
				x->from, a->id);
			m->acct = NULL;
			answer(m, ANSWER_NAK);
			return true;
		}
		if (rc) {
			rx_warn(rx, "panels: %s: account %s seq %04u: %s: DUH",
				x->from, a->id, f.seq, err);
			answer(m, ANSWER_DUH);
			return true;
		}
	}
	now_s = (int64_t)(vigie_clock_now_us() / 1000000u);
	if (c.has_time &&
	    (c.time_s < now_s - (int64_t)(rx->sc->past_ms / 1000) ||
	     c.time_s > now_s + (int64_t)(rx->sc->future_ms / 1000))) {
		char ts[SIA_TS_LEN + 1];

		rx->st.refused++;
		vigie__sia_timestamp(c.time_s, ts);
		rx_warn(rx,
			"panels: %s: account %s seq %04u: timestamp %s is "
			"%+lld s from ours, outside -%llu/+%llu s: NAK",
			x->from, a->id, f.seq, ts + 1,
			(long long)(c.time_s - now_s),
			(unsigned long long)(rx->sc->past_ms / 1000),
			(unsigned long long)(rx->sc->future_ms / 1000));
		answer(m, ANSWER_NAK);
		return true;
	}
	link_alive(rx, acct_index(rx, a));
	switch (f.token) {
	case SIA_TOKEN_NULL:
		rx->st.nulls++;
		answer(m, ANSWER_ACK);
		break;
	case SIA_TOKEN_DCS:
	case SIA_TOKEN_CID:
		handle_events(x, m, &c);
		break;
	default:
		rx_warn(rx,
			"panels: %s: account %s seq %04u: id token \"%s\" "
			"not handled: DUH",
			x->from, a->id, f.seq, f.id);
		answer(m, ANSWER_DUH);
		break;
	}
	return true;
}

/* ---- TCP ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)suggested;
	buf->base = c->buf + c->used;
	buf->len = sizeof(c->buf) - c->used;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	struct sia_receiver *rx = c->rx;
	struct frame_ctx x = {.rx = rx, .conn = c, .from = c->peer};
	size_t off = 0;
	char err[160];

	(void)buf;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	c->used += (size_t)nread;
	c->last_ms = vigie_clock_mono_ms();
	for (;;) {
		size_t skip, flen;
		int rc = vigie__sia_scan(c->buf + off, c->used - off, &skip,
					 &flen, err, sizeof(err));

		if (rc == 0) {
			off += skip;
			break;
		}
		if (rc == 1) {
			if (!handle_frame(&x, c->buf + off + skip, flen)) {
				rc = VIGIE_EDECODE;
			} else {
				off += skip + flen;
				if (c->closing)
					return;
				continue;
			}
		} else {
			rx_warn(rx, "panels: %s: %s: closing the connection",
				c->peer, err);
		}
		rx->st.garbage++;
		rx->st.garbage_closes++;
		close_after_writes(c);
		return;
	}
	memmove(c->buf, c->buf + off, c->used - off);
	c->used -= off;
	flush_replies(c);
	if (c->pending >= CONN_MAX_PENDING && c->reading) {
		uv_read_stop(s);
		c->reading = false;
	}
}

static void peer_name(const struct sockaddr *sa, const char *proto, char *out,
		      size_t len)
{
	char host[64] = "?";
	int port = 0;

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		uv_ip6_name(s6, host, sizeof(host));
		port = ntohs(s6->sin6_port);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		uv_ip4_name(s4, host, sizeof(host));
		port = ntohs(s4->sin_port);
	}
	snprintf(out, len, "%s %s:%d", proto, host, port);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	struct sia_receiver *rx = l->rx;
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	struct conn *c;

	if (status < 0 || rx->closing)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->rx = rx;
	c->refs = 1;
	uv_tcp_init(rx->loop, &c->tcp);
	c->tcp.data = c;
	rx->handles_open++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
		c->closing = true;
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
		return;
	}
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0)
		peer_name((struct sockaddr *)&ss, "tcp", c->peer,
			  sizeof(c->peer));
	else
		snprintf(c->peer, sizeof(c->peer), "tcp ?");
	if (rx->n_conns >= rx->sc->max_connections) {
		rx->st.busy++;
		rx_warn(rx, "panels: %s: %zu connections already, refused",
			c->peer, rx->n_conns);
		c->closing = true;
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
		return;
	}
	/* An ACK is one small segment the panel waits for. */
	uv_tcp_nodelay(&c->tcp, 1);
	c->last_ms = vigie_clock_mono_ms();
	c->next = rx->conns;
	if (rx->conns)
		rx->conns->prev = c;
	rx->conns = c;
	rx->n_conns++;
	c->reading = true;
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- UDP ---- */

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct listener *l = h->data;

	(void)suggested;
	buf->base = l->rx->udp_buf;
	buf->len = sizeof(l->rx->udp_buf);
}

static void on_udp_read(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			const struct sockaddr *addr, unsigned flags)
{
	struct listener *l = h->data;
	struct sia_receiver *rx = l->rx;
	struct frame_ctx x = {.rx = rx, .udp = l, .peer = addr};
	char from[64], err[160];
	size_t skip, flen;
	int rc;

	if (nread <= 0 || !addr || rx->closing)
		return;
	peer_name(addr, "udp", from, sizeof(from));
	x.from = from;
	if (flags & UV_UDP_PARTIAL) {
		rx->st.garbage++;
		rx_warn(rx, "panels: %s: datagram over %zu bytes dropped", from,
			sizeof(rx->udp_buf));
		return;
	}
	/* A datagram is one frame. */
	rc = vigie__sia_scan(buf->base, (size_t)nread, &skip, &flen, err,
			     sizeof(err));
	if (rc == 0) {
		rc = VIGIE_EDECODE;
		snprintf(err, sizeof(err), "datagram holds no whole frame");
	}
	if (rc == 1 && handle_frame(&x, buf->base + skip, flen))
		return;
	if (rc == 1)
		snprintf(err, sizeof(err), "not a frame");
	rx->st.garbage++;
	rx_warn(rx, "panels: %s: %s: datagram dropped", from, err);
}

/* ---- supervision and housekeeping ---- */

static void sweep_cb(uv_timer_t *t)
{
	struct sia_receiver *rx = t->data;
	uint64_t now = vigie_clock_mono_ms();

	for (size_t i = 0; i < rx->sc->n_accounts; i++) {
		const struct sia_account_conf *a = &rx->sc->accounts[i];
		struct acct_state *st = &rx->acct[i];

		if (!a->supervision_ms || st->lost ||
		    now - st->last_ms <= a->supervision_ms)
			continue;
		if (raise_link_event(rx, i, S(TROUBLE), now - st->last_ms) == 0)
			st->lost = true;
	}
	for (struct conn *c = rx->conns, *next; c; c = next) {
		next = c->next;
		if (!c->pending && now - c->last_ms >= rx->sc->idle_ms) {
			vigie_log_debug("panels: %s: idle, closing", c->peer);
			conn_close(c);
		}
	}
	seen_expire(rx, now, false);
}

static uint64_t sweep_period(const struct sia_config *sc)
{
	uint64_t p = sc->idle_ms;

	if (sc->remember_ms < p)
		p = sc->remember_ms;
	for (size_t i = 0; i < sc->n_accounts; i++)
		if (sc->accounts[i].supervision_ms &&
		    sc->accounts[i].supervision_ms < p)
			p = sc->accounts[i].supervision_ms;
	p /= 4;
	if (p < SWEEP_MIN_MS)
		p = SWEEP_MIN_MS;
	if (p > SWEEP_MAX_MS)
		p = SWEEP_MAX_MS;
	return p;
}

/* ---- open, close ---- */

static int open_listener(struct sia_receiver *rx, struct listener *l,
			 const struct sia_listen_conf *lc)
{
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	int rc;

	l->rx = rx;
	l->udp = lc->udp;
	snprintf(l->name, sizeof(l->name), "%s %s:%d", lc->udp ? "udp" : "tcp",
		 lc->host, lc->port);
	rc = uv_ip4_addr(lc->host, lc->port, (struct sockaddr_in *)&ss);
	if (rc)
		rc = uv_ip6_addr(lc->host, lc->port,
				 (struct sockaddr_in6 *)&ss);
	if (rc) {
		vigie_log_error("panels: %s: not an IP address", l->name);
		return VIGIE_EINVAL;
	}
	if (lc->udp) {
		uv_udp_init(rx->loop, &l->h.udp);
		l->h.udp.data = l;
		rc = uv_udp_bind(&l->h.udp, (struct sockaddr *)&ss, 0);
		if (rc == 0)
			rc = uv_udp_recv_start(&l->h.udp, on_udp_alloc,
					       on_udp_read);
		if (rc == 0)
			rc = uv_udp_getsockname(&l->h.udp,
						(struct sockaddr *)&ss, &sslen);
	} else {
		uv_tcp_init(rx->loop, &l->h.tcp);
		l->h.tcp.data = l;
		rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0);
		if (rc == 0)
			rc = uv_listen((uv_stream_t *)&l->h.tcp, 128,
				       on_connection);
		if (rc == 0)
			rc = uv_tcp_getsockname(&l->h.tcp,
						(struct sockaddr *)&ss, &sslen);
	}
	l->inited = true;
	rx->handles_open++;
	if (rc) {
		vigie_log_error("panels: cannot listen on %s: %s", l->name,
				uv_strerror(rc));
		return VIGIE_EIO;
	}
	l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	vigie_log_info("panels: listening on %s %s:%d", lc->udp ? "udp" : "tcp",
		       lc->host, l->port);
	return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;
	struct sia_receiver *rx = l->rx;

	rx->handles_open--;
	maybe_free(rx);
}

static void close_handles(struct sia_receiver *rx)
{
	rx->closing = true;
	if (rx->sweep_inited) {
		uv_timer_stop(&rx->sweep);
		uv_close((uv_handle_t *)&rx->sweep, on_handle_closed);
	}
	for (size_t i = 0; i < rx->sc->n_listen; i++)
		if (rx->listeners[i].inited)
			uv_close((uv_handle_t *)&rx->listeners[i].h,
				 on_listener_closed);
	while (rx->conns)
		conn_close(rx->conns);
}

int vigie__sia_open(uv_loop_t *loop, struct vigie_node *n,
		    const struct sia_config *sc, struct sia_receiver **out)
{
	struct sia_receiver *rx = calloc(1, sizeof(*rx));
	uint64_t now = vigie_clock_mono_ms();
	int rc = VIGIE_ENOMEM;

	if (!rx)
		return VIGIE_ENOMEM;
	rx->loop = loop;
	rx->node = n;
	rx->sc = sc;
	rx->n_buckets = 1024;
	while (rx->n_buckets < sc->max_remembered && rx->n_buckets < (1u << 20))
		rx->n_buckets <<= 1;
	rx->buckets = calloc(rx->n_buckets, sizeof(*rx->buckets));
	rx->listeners = calloc(sc->n_listen, sizeof(*rx->listeners));
	rx->acct = calloc(sc->n_accounts, sizeof(*rx->acct));
	if (!rx->buckets || !rx->listeners || !rx->acct) {
		free(rx->buckets);
		free(rx->listeners);
		free(rx->acct);
		free(rx);
		return VIGIE_ENOMEM;
	}
	/* Supervision runs from now: a panel that never reports is lost
	 * after its interval. */
	for (size_t i = 0; i < sc->n_accounts; i++)
		rx->acct[i].last_ms = now;
	uv_timer_init(loop, &rx->sweep);
	rx->sweep.data = rx;
	rx->sweep_inited = true;
	rx->handles_open++;
	for (size_t i = 0; i < sc->n_listen; i++) {
		rc = open_listener(rx, &rx->listeners[i], &sc->listen[i]);
		if (rc)
			goto out_close;
	}
	uv_timer_start(&rx->sweep, sweep_cb, sweep_period(sc),
		       sweep_period(sc));
	vigie_log_info("panels: %zu account(s), time window -%llu/+%llu s",
		       sc->n_accounts, (unsigned long long)(sc->past_ms / 1000),
		       (unsigned long long)(sc->future_ms / 1000));
	*out = rx;
	return 0;
out_close:
	/* Freed by the last close callback once the loop runs. */
	close_handles(rx);
	return rc;
}

int vigie__sia_port(const struct sia_receiver *rx, size_t i)
{
	return i < rx->sc->n_listen ? rx->listeners[i].port : 0;
}

void vigie__sia_stats(const struct sia_receiver *rx, struct sia_stats *st)
{
	*st = rx->st;
	st->connections = rx->n_conns;
}

void vigie__sia_close(struct sia_receiver *rx, void (*cb)(void *arg), void *arg)
{
	const struct sia_stats *st = &rx->st;

	if (rx->closing)
		return;
	vigie_log_info(
		"panels: %llu frame(s): %llu ACK, %llu NAK, %llu DUH, "
		"%llu retried, %llu event(s), %llu link test(s); "
		"unanswered: %llu damaged, %llu unreadable, %llu busy; "
		"%llu garbage frame(s) (%llu TCP connections closed)",
		(unsigned long long)st->frames, (unsigned long long)st->acked,
		(unsigned long long)st->naked, (unsigned long long)st->duhed,
		(unsigned long long)st->retries, (unsigned long long)st->events,
		(unsigned long long)st->nulls, (unsigned long long)st->bad_crc,
		(unsigned long long)st->malformed, (unsigned long long)st->busy,
		(unsigned long long)st->garbage,
		(unsigned long long)st->garbage_closes);
	rx->close_cb = cb;
	rx->close_arg = arg;
	close_handles(rx);
}
