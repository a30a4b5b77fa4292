/* panels.*: intrusion panels reporting over SIA DC-09 to an in-process node
 * (node/sia.h) with its outbox on, along the production path
 *
 *   panels (TCP) -> node -> site broker -> bridge -> central broker -> sub
 *
 * panels.frame_rate, panels.frame_rate_aes: frames per second parsed,
 *   stored (durable in the outbox) and acknowledged, with PANELS panels
 *   connected at once, each sending its next frame as soon as its ACK
 *   came (what a panel does); in clear, then AES-128. Only group commit
 *   across panels makes this more than one fsync per frame.
 * panels.ack_latency_p99: frame sent -> its ACK back at the panel, at a
 *   steady LAT_RATE frames/s from LAT_PANELS panels.
 * panels.latency_p99: the same frames, sent -> the event's arrival at a
 *   subscriber on the central broker (where the relay sits). The police
 *   post is one relay hop further; the relay is not in this path yet, so
 *   this is "to the central", not "to the police post".
 *
 * The panels run on a thread and loop of their own; the node keeps the
 * bench's loop. A relay stand-in publishes Receipts so the outbox drains
 * as in service. Times are the monotonic clock of this one process. */
#include <mosquitto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "sia.h"
#include "vigie/clock.h"
#include "vigie/codec.h"
#include "vigie/error.h"
#include "vigie/log.h"

#define NODE_ID            "panels"
#define PANELS_FULL        200u
#define PANELS_QUICK       50u
#define FRAMES_FULL        20000u /* per rate run */
#define FRAMES_QUICK       4000u
#define LAT_PANELS         20u
#define LAT_RATE           500.0
#define LAT_SECONDS_FULL   10u
#define LAT_SECONDS_QUICK  2u
#define WARMUP             100u
#define RUN_TIMEOUT_MS     120000u
#define ARRIVAL_TIMEOUT_MS 15000u
#define DRAIN_TIMEOUT_MS   120000u
#define BIRTH_TIMEOUT_MS   10000u

/* Accounts: clear A00000+i, AES B00000+i, latency C00000+i. */
#define ACCT_CLEAR 0xA00000u
#define ACCT_AES   0xB00000u
#define ACCT_LAT   0xC00000u
static const char key_hex[] = "000102030405060708090A0B0C0D0E0F";
static const uint8_t key[16] = {0, 1, 2,  3,  4,  5,  6,  7,
				8, 9, 10, 11, 12, 13, 14, 15};

/* ---- the panels' side ---- */

struct client;

struct panel {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_write_t wreq;
	struct client *cl;
	unsigned idx;
	char account[12];
	unsigned seq; /* of the frame in flight or last sent */
	uint64_t sent_us;
	uint64_t frame; /* its frame number (paced runs) */
	uint64_t left;  /* frames still to send (closed loop) */
	bool busy;
	char out[SIA_FRAME_MAX];
	char in[1024];
	size_t in_len;
};

struct client {
	uv_loop_t loop;
	uv_thread_t thread;
	uv_timer_t pace;
	uv_async_t stop;
	struct panel *p;
	size_t n;
	int port;
	unsigned base; /* account number of panel 0 */
	bool aes;
	bool paced;
	uint64_t per_panel; /* closed loop */
	double rate;        /* paced */
	uint64_t total;
	uint64_t issued, acked, failed, connected;
	uint64_t t0, t_last;
	uint32_t *ack_us;  /* per frame number: frame -> ACK */
	uint64_t *sent_us; /* per frame number */
	bool started, closing;
	atomic_int done;
	int rc;
};

static void on_written(uv_write_t *req, int status)
{
	struct panel *p = req->data;

	if (status && !p->cl->closing)
		p->cl->failed++;
}

static void send_frame(struct panel *p, uint64_t frame)
{
	struct client *cl = p->cl;
	struct sia_build b = {
		.token = "SIA-DCS",
		.line = "0",
		.account = p->account,
		.data = "Nri1/BA03",
		.timestamp = true,
		.time_s = (int64_t)(vigie_clock_now_us() / 1000000u),
		.key = cl->aes ? key : NULL,
		.key_len = cl->aes ? sizeof(key) : 0,
	};
	uv_buf_t buf;
	size_t len;

	p->seq = p->seq % 9999u + 1;
	b.seq = p->seq;
	if (vigie__sia_build(&b, p->out, sizeof(p->out), &len) != 0) {
		cl->failed++;
		return;
	}
	p->busy = true;
	p->frame = frame;
	p->sent_us = bench_mono_us();
	if (cl->sent_us)
		cl->sent_us[frame] = p->sent_us;
	cl->issued++;
	buf = uv_buf_init(p->out, (unsigned)len);
	p->wreq.data = p;
	if (uv_write(&p->wreq, (uv_stream_t *)&p->tcp, &buf, 1, on_written)) {
		cl->failed++;
		p->busy = false;
	}
}

static void client_close(struct client *cl);

static void check_done(struct client *cl)
{
	if (cl->acked + cl->failed >= cl->total && cl->issued >= cl->total)
		client_close(cl);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct panel *p = h->data;

	(void)suggested;
	buf->base = p->in + p->in_len;
	buf->len = sizeof(p->in) - p->in_len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct panel *p = s->data;
	struct client *cl = p->cl;
	char err[160];
	size_t skip, flen;

	(void)buf;
	if (nread < 0) {
		if (!cl->closing) {
			vigie_log_error("bench: panel %s: connection lost: %s",
					p->account, uv_strerror((int)nread));
			cl->rc = VIGIE_ENOCONN;
			client_close(cl);
		}
		return;
	}
	p->in_len += (size_t)nread;
	while (vigie__sia_scan(p->in, p->in_len, &skip, &flen, err,
			       sizeof(err)) == 1) {
		const char *body;
		size_t blen;
		struct sia_frame f;
		uint64_t now = bench_mono_us();

		if (vigie__sia_frame_check(p->in + skip, flen, &body, &blen,
					   err, sizeof(err)) ||
		    vigie__sia_frame_parse(body, blen, &f, err, sizeof(err)) ||
		    f.token != SIA_TOKEN_ACK || f.seq != p->seq ||
		    f.encrypted != cl->aes) {
			if (cl->failed++ == 0)
				vigie_log_error("bench: panel %s: not the ACK "
						"of seq %u",
						p->account, p->seq);
		} else {
			cl->acked++;
			cl->t_last = now;
			if (cl->ack_us)
				cl->ack_us[p->frame] =
					(uint32_t)(now - p->sent_us);
		}
		memmove(p->in, p->in + skip + flen, p->in_len - skip - flen);
		p->in_len -= skip + flen;
		p->busy = false;
		if (!cl->paced && p->left) {
			p->left--;
			send_frame(p, cl->issued);
		}
	}
	if (p->in_len == sizeof(p->in))
		p->in_len = 0;
	check_done(cl);
}

static void pace_cb(uv_timer_t *t)
{
	struct client *cl = t->data;
	uint64_t due = (uint64_t)((double)(bench_mono_us() - cl->t0) *
				  cl->rate / 1e6) +
		       1;

	if (due > cl->total)
		due = cl->total;
	/* Frame f goes to panel f % n: a panel sends its next frame only
	 * once its last one was answered, like a real one. */
	while (cl->issued < due) {
		struct panel *p = &cl->p[cl->issued % cl->n];

		if (p->busy)
			break;
		send_frame(p, cl->issued);
	}
	if (cl->issued >= cl->total)
		uv_timer_stop(t);
}

static void start_sending(struct client *cl)
{
	cl->started = true;
	cl->t0 = bench_mono_us();
	if (cl->paced) {
		uv_timer_start(&cl->pace, pace_cb, 0, 1);
		return;
	}
	for (size_t i = 0; i < cl->n; i++) {
		struct panel *p = &cl->p[i];

		if (p->left) {
			p->left--;
			send_frame(p, cl->issued);
		}
	}
}

static void on_connect(uv_connect_t *req, int status)
{
	struct panel *p = req->data;
	struct client *cl = p->cl;

	if (cl->closing)
		return;
	if (status) {
		vigie_log_error("bench: panel %s: cannot connect: %s",
				p->account, uv_strerror(status));
		cl->rc = VIGIE_ENOCONN;
		client_close(cl);
		return;
	}
	uv_tcp_nodelay(&p->tcp, 1);
	uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
	if (++cl->connected == cl->n)
		start_sending(cl);
}

static void client_close(struct client *cl)
{
	if (cl->closing)
		return;
	cl->closing = true;
	uv_close((uv_handle_t *)&cl->pace, NULL);
	uv_close((uv_handle_t *)&cl->stop, NULL);
	for (size_t i = 0; i < cl->n; i++)
		uv_close((uv_handle_t *)&cl->p[i].tcp, NULL);
}

static void on_stop(uv_async_t *a)
{
	struct client *cl = a->data;

	if (!cl->rc)
		cl->rc = VIGIE_ENOCONN;
	client_close(cl);
}

static void client_thread(void *arg)
{
	struct client *cl = arg;
	struct sockaddr_in sa;

	uv_ip4_addr("127.0.0.1", cl->port, &sa);
	for (size_t i = 0; i < cl->n; i++) {
		struct panel *p = &cl->p[i];

		p->cl = cl;
		p->idx = (unsigned)i;
		snprintf(p->account, sizeof(p->account), "%X",
			 cl->base + (unsigned)i);
		uv_tcp_init(&cl->loop, &p->tcp);
		p->tcp.data = p;
		p->creq.data = p;
		if (uv_tcp_connect(&p->creq, &p->tcp, (struct sockaddr *)&sa,
				   on_connect)) {
			cl->rc = VIGIE_ENOCONN;
			client_close(cl);
			break;
		}
	}
	uv_run(&cl->loop, UV_RUN_DEFAULT);
	atomic_store(&cl->done, 1);
}

/* Set up the panels and start their thread. */
static int client_start(struct client *cl)
{
	cl->p = calloc(cl->n, sizeof(*cl->p));
	if (!cl->p)
		return VIGIE_ENOMEM;
	for (size_t i = 0; i < cl->n; i++)
		cl->p[i].left = cl->per_panel;
	if (uv_loop_init(&cl->loop))
		return VIGIE_ESYS;
	uv_timer_init(&cl->loop, &cl->pace);
	cl->pace.data = cl;
	uv_async_init(&cl->loop, &cl->stop, on_stop);
	cl->stop.data = cl;
	if (uv_thread_create(&cl->thread, client_thread, cl)) {
		uv_close((uv_handle_t *)&cl->pace, NULL);
		uv_close((uv_handle_t *)&cl->stop, NULL);
		uv_run(&cl->loop, UV_RUN_DEFAULT);
		uv_loop_close(&cl->loop);
		return VIGIE_ESYS;
	}
	return 0;
}

/* Join the thread (asking it to stop if it has not finished). */
static int client_join(struct client *cl)
{
	if (!atomic_load(&cl->done))
		uv_async_send(&cl->stop);
	uv_thread_join(&cl->thread);
	if (uv_loop_close(&cl->loop) != 0) {
		fprintf(stderr, "vigie-bench: panels left handles open\n");
		if (!cl->rc)
			cl->rc = VIGIE_EIO;
	}
	free(cl->p);
	cl->p = NULL;
	return cl->rc;
}

/* ---- the node's side ---- */

struct pnode {
	uv_loop_t loop;
	struct node_config cfg;
	struct vigie_node *node;
	struct sia_receiver *rx;
	char yaml[256];
	int port;
	bool cfg_loaded, loop_open;
};

static int write_yaml(const char *path, int site_port, unsigned panels)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		perror(path);
		return VIGIE_ESYS;
	}
	fprintf(f,
		"site: %s\nnode: %s\noutbox: %s/%s.db\n"
		"heartbeat_period: 5s\nreporting_time: 10s\n"
		"resend_timeout: 5s\nfailover_time: 10s\n"
		"brokers:\n  primary: {host: 127.0.0.1, port: %d, keepalive: "
		"10}\n"
		"zones:\n  - {id: apollo-gallery, kind: gallery}\n"
		"  - {id: apollo-balcony, kind: balcony}\n"
		"sensors:\n"
		"  - {id: gb-w2, kind: glass_break, zones: [apollo-balcony, "
		"apollo-gallery]}\n"
		"panels:\n"
		"  listen: [{protocol: tcp, host: 127.0.0.1, port: 0}]\n"
		"  max_connections: 1024\n"
		"  accounts:\n",
		BENCH_SITE, NODE_ID, bench_tmpdir(), NODE_ID, site_port);
	for (unsigned i = 0; i < panels; i++)
		fprintf(f,
			"    - {id: %X, zone: apollo-gallery, map: "
			"[{panel_zone: 3, sensor: gb-w2}]}\n"
			"    - {id: %X, key: %s, zone: apollo-gallery}\n",
			ACCT_CLEAR + i, ACCT_AES + i, key_hex);
	for (unsigned i = 0; i < LAT_PANELS; i++)
		fprintf(f, "    - {id: %X, zone: apollo-gallery}\n",
			ACCT_LAT + i);
	if (fclose(f) != 0) {
		perror(path);
		return VIGIE_ESYS;
	}
	return 0;
}

static int pnode_open(struct pnode *pn, int site_port, unsigned panels)
{
	char err[512];
	int rc;

	rc = bench_path(pn->yaml, sizeof(pn->yaml), NODE_ID ".yaml");
	if (rc == 0)
		rc = write_yaml(pn->yaml, site_port, panels);
	if (rc)
		return rc;
	rc = vigie__nodeconf_load(pn->yaml, &pn->cfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "vigie-bench: %s\n", err);
		return rc;
	}
	pn->cfg_loaded = true;
	if (uv_loop_init(&pn->loop))
		return VIGIE_ESYS;
	pn->loop_open = true;
	rc = vigie__node_open(&pn->loop, &pn->cfg, &pn->node);
	if (rc)
		return rc;
	rc = vigie__node_start(pn->node);
	if (rc)
		return rc;
	rc = vigie__sia_open(&pn->loop, pn->node, pn->cfg.panels, &pn->rx);
	if (rc)
		return rc;
	pn->port = vigie__sia_port(pn->rx, 0);
	return 0;
}

static void on_node_closed(void *arg)
{
	struct pnode *pn = arg;

	pn->node = NULL;
}

static int pnode_close(struct pnode *pn)
{
	int rc = 0;

	if (pn->rx)
		vigie__sia_close(pn->rx, NULL, NULL);
	pn->rx = NULL;
	if (pn->node) {
		vigie__node_close(pn->node, on_node_closed, pn);
		uv_run(&pn->loop, UV_RUN_DEFAULT);
	}
	if (pn->loop_open) {
		uv_run(&pn->loop, UV_RUN_DEFAULT);
		if (uv_loop_close(&pn->loop) != 0) {
			fprintf(stderr,
				"vigie-bench: the node left handles open\n");
			rc = VIGIE_EIO;
		}
		pn->loop_open = false;
	}
	if (pn->cfg_loaded)
		vigie__nodeconf_free(&pn->cfg);
	pn->cfg_loaded = false;
	return rc;
}

/* ---- the central's side: when each latency frame's event arrived ---- */

struct arrivals {
	uint64_t *at_us; /* per frame number */
	uint64_t total;
	size_t n_panels;
	atomic_uint_fast64_t count;
};

static void on_event(struct mosquitto *mosq, void *ud,
		     const struct mosquitto_message *msg)
{
	struct arrivals *a = ud;
	uint64_t now = bench_mono_us();
	Vigie__V1__SignedEvent *se;
	Vigie__V1__Event *ev;
	unsigned long acct = 0, seq = 0;

	(void)mosq;
	if (vigie_event_decode(msg->payload, (size_t)msg->payloadlen, &se, &ev))
		return;
	for (size_t i = 0; i < ev->n_attributes; i++) {
		if (strcmp(ev->attributes[i]->key, "account") == 0)
			acct = strtoul(ev->attributes[i]->value, NULL, 16);
		else if (strcmp(ev->attributes[i]->key, "dc09_seq") == 0)
			seq = strtoul(ev->attributes[i]->value, NULL, 10);
	}
	vigie_event_free(se, ev);
	/* Frame f went to panel f % n as that panel's seq f / n + 1. */
	if (acct >= ACCT_LAT && acct < ACCT_LAT + a->n_panels && seq >= 1) {
		uint64_t f = (seq - 1) * a->n_panels + (acct - ACCT_LAT);

		if (f < a->total && !a->at_us[f]) {
			a->at_us[f] = now;
			atomic_fetch_add(&a->count, 1);
		}
	}
}

/* ---- the runs ---- */

static bool client_done(void *arg)
{
	return atomic_load(&((struct client *)arg)->done) != 0;
}

static bool node_born(void *arg)
{
	void **v = arg;
	struct bench_sink *relay = v[0];
	struct pnode *pn = v[1];

	return bench_sink_online_boot(relay) == vigie__node_boot_id(pn->node);
}

/* Everything the node took is at the central and receipted: the next run
 * starts on an empty pipeline. */
static bool drained(void *arg)
{
	void **v = arg;
	struct bench_sink *relay = v[0];
	struct pnode *pn = v[1];
	struct vigie_node_stats st;

	vigie__node_stats(pn->node, &st);
	return st.pending == 0 && bench_sink_received(relay) >= st.accepted;
}

static bool all_arrived(void *arg)
{
	struct arrivals *a = arg;

	return atomic_load(&a->count) >= a->total;
}

/* Closed loop: every panel sends its next frame once its ACK is back. */
static int run_rate(struct pnode *pn, unsigned panels, uint64_t frames,
		    bool aes, double *rate)
{
	struct client cl;
	int rc;

	memset(&cl, 0, sizeof(cl));
	cl.n = panels;
	cl.port = pn->port;
	cl.base = aes ? ACCT_AES : ACCT_CLEAR;
	cl.aes = aes;
	cl.per_panel = frames / panels;
	cl.total = cl.per_panel * panels;
	rc = client_start(&cl);
	if (rc)
		return rc;
	rc = bench_loop_until(&pn->loop, client_done, &cl, 5, RUN_TIMEOUT_MS);
	if (client_join(&cl) && !rc)
		rc = cl.rc ? cl.rc : VIGIE_EIO;
	if (!rc && (cl.failed || cl.acked != cl.total)) {
		fprintf(stderr,
			"vigie-bench: panels: %llu of %llu frames not ACKed\n",
			(unsigned long long)(cl.total - cl.acked),
			(unsigned long long)cl.total);
		rc = VIGIE_EIO;
	}
	if (rc)
		return rc;
	*rate = (double)cl.acked * 1e6 / (double)(cl.t_last - cl.t0);
	bench_progress("panels.frame_rate%s: %u panels, %llu frames in %.2f s: "
		       "%.0f frames/s",
		       aes ? "_aes" : "", panels, (unsigned long long)cl.acked,
		       (double)(cl.t_last - cl.t0) / 1e6, *rate);
	return 0;
}

struct lat_result {
	uint32_t ack_p50, ack_p99, central_p50, central_p99;
};

static int run_latency(struct pnode *pn, int central_port, uint64_t frames,
		       struct lat_result *out)
{
	struct arrivals a;
	struct client cl;
	struct mosquitto *mosq = NULL;
	uint32_t *ack = NULL, *central = NULL;
	size_t n_ack = 0, n_central = 0;
	char topic[VIGIE_TOPIC_MAX];
	int rc;

	memset(&cl, 0, sizeof(cl));
	memset(&a, 0, sizeof(a));
	cl.n = LAT_PANELS;
	cl.port = pn->port;
	cl.base = ACCT_LAT;
	cl.paced = true;
	cl.rate = LAT_RATE;
	cl.total = frames;
	cl.ack_us = calloc(frames, sizeof(*cl.ack_us));
	cl.sent_us = calloc(frames, sizeof(*cl.sent_us));
	a.at_us = calloc(frames, sizeof(*a.at_us));
	a.total = frames;
	a.n_panels = LAT_PANELS;
	ack = calloc(frames, sizeof(*ack));
	central = calloc(frames, sizeof(*central));
	rc = VIGIE_ENOMEM;
	if (!cl.ack_us || !cl.sent_us || !a.at_us || !ack || !central)
		goto out_free;
	rc = vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_EVENT,
			       BENCH_SITE, NODE_ID);
	if (rc == 0)
		rc = bench_mosq_connect(central_port, "bench-panels-latency",
					100, &a, &mosq);
	if (rc)
		goto out_free;
	mosquitto_message_callback_set(mosq, on_event);
	if (mosquitto_subscribe(mosq, NULL, topic, 1) != MOSQ_ERR_SUCCESS ||
	    mosquitto_loop_start(mosq) != MOSQ_ERR_SUCCESS) {
		rc = VIGIE_ENOCONN;
		goto out_destroy;
	}
	rc = client_start(&cl);
	if (rc == 0) {
		rc = bench_loop_until(
			&pn->loop, client_done, &cl, 5,
			(unsigned)(frames * 1000 / (uint64_t)LAT_RATE) +
				RUN_TIMEOUT_MS);
		if (client_join(&cl) && !rc)
			rc = cl.rc ? cl.rc : VIGIE_EIO;
	}
	if (rc == 0 && (cl.failed || cl.acked != cl.total))
		rc = VIGIE_EIO;
	if (rc == 0)
		rc = bench_loop_until(&pn->loop, all_arrived, &a, 5,
				      ARRIVAL_TIMEOUT_MS);
	mosquitto_disconnect(mosq);
	mosquitto_loop_stop(mosq, false);
	if (rc) {
		fprintf(stderr,
			"vigie-bench: panels latency: %llu of %llu ACKed, "
			"%llu at the central\n",
			(unsigned long long)cl.acked,
			(unsigned long long)frames,
			(unsigned long long)atomic_load(&a.count));
		goto out_destroy;
	}
	if (getenv("BENCH_PANELS_DUMP")) {
		FILE *df = fopen(getenv("BENCH_PANELS_DUMP"), "w");

		for (uint64_t f = 0; df && f < frames; f++)
			fprintf(df, "%llu %llu %u %llu\n",
				(unsigned long long)f,
				(unsigned long long)cl.sent_us[f], cl.ack_us[f],
				(unsigned long long)(a.at_us[f] -
						     cl.sent_us[f]));
		if (df)
			fclose(df);
	}
	for (uint64_t f = WARMUP; f < frames; f++) {
		ack[n_ack++] = cl.ack_us[f];
		central[n_central++] = (uint32_t)(a.at_us[f] - cl.sent_us[f]);
	}
	out->ack_p50 = bench_percentile(ack, n_ack, 50);
	out->ack_p99 = bench_percentile(ack, n_ack, 99);
	out->central_p50 = bench_percentile(central, n_central, 50);
	out->central_p99 = bench_percentile(central, n_central, 99);
	bench_progress("panels.latency: %zu frames at %.0f/s from %u panels: "
		       "frame -> ACK p50 %u us p99 %u us; frame -> central "
		       "subscriber p50 %u us p99 %u us (max %u us)",
		       n_ack, LAT_RATE, LAT_PANELS, out->ack_p50, out->ack_p99,
		       out->central_p50, out->central_p99,
		       central[n_central - 1]);
out_destroy:
	mosquitto_destroy(mosq);
out_free:
	free(cl.ack_us);
	free(cl.sent_us);
	free(a.at_us);
	free(ack);
	free(central);
	return rc;
}

int bench_panels(const struct bench_opts *o)
{
	static struct pnode pn;
	struct bench_broker central, site;
	struct bench_sink *relay = NULL;
	unsigned panels = o->quick ? PANELS_QUICK : PANELS_FULL;
	uint64_t frames = o->quick ? FRAMES_QUICK : FRAMES_FULL;
	uint64_t lat_frames = (uint64_t)LAT_RATE *
			      (o->quick ? LAT_SECONDS_QUICK : LAT_SECONDS_FULL);
	bool want_rate = bench_wanted(o, "panels.frame_rate"),
	     want_aes = bench_wanted(o, "panels.frame_rate_aes"),
	     want_lat = bench_wanted(o, "panels.latency_p99") ||
			bench_wanted(o, "panels.ack_latency_p99");
	double rate = 0, rate_aes = 0;
	struct lat_result lat = {0};
	void *born[2];
	int rc;

	memset(&pn, 0, sizeof(pn));
	rc = bench_mesh_start(o, "panels-site", &central, &site);
	if (rc == 0) {
		struct bench_sink_options ro = {
			.port = central.port,
			.site = BENCH_SITE,
			.node = NODE_ID,
			.receipts = true,
			.max_seq = 2 * frames + lat_frames + 10000,
		};

		rc = bench_sink_start(&ro, &relay);
	}
	if (rc == 0)
		rc = pnode_open(&pn, site.port, panels);
	if (rc == 0) {
		born[0] = relay;
		born[1] = &pn;
		rc = bench_loop_until(&pn.loop, node_born, born, 5,
				      BIRTH_TIMEOUT_MS);
		if (rc)
			fprintf(stderr, "vigie-bench: panels: node did not "
					"come online\n");
	}
	if (rc == 0 && want_rate)
		rc = run_rate(&pn, panels, frames, false, &rate);
	if (rc == 0 && want_aes)
		rc = run_rate(&pn, panels, frames, true, &rate_aes);
	if (rc == 0 && want_lat) {
		/* The rate runs leave the brokers a backlog to forward. */
		rc = bench_loop_until(&pn.loop, drained, born, 10,
				      DRAIN_TIMEOUT_MS);
		if (rc)
			fprintf(stderr,
				"vigie-bench: panels: the rate runs' events "
				"did not drain\n");
	}
	if (rc == 0 && want_lat)
		rc = run_latency(&pn, central.port, lat_frames, &lat);
	if (pn.rx) {
		struct sia_stats st;

		vigie__sia_stats(pn.rx, &st);
		bench_progress(
			"panels: receiver saw %llu frames, %llu ACK, %llu "
			"NAK, %llu DUH, %llu retries, %llu busy",
			(unsigned long long)st.frames,
			(unsigned long long)st.acked,
			(unsigned long long)st.naked,
			(unsigned long long)st.duhed,
			(unsigned long long)st.retries,
			(unsigned long long)st.busy);
	}
	if (pnode_close(&pn) != 0 && rc == 0)
		rc = VIGIE_EIO;
	if (relay) {
		bench_sink_stop(relay);
		bench_sink_free(relay);
	}
	if (bench_broker_stop(&site) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	if (bench_broker_stop(&central) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	if (rc)
		return rc;
	if (want_rate)
		bench_emit(o, "panels.frame_rate", rate, "frames/s", 0);
	if (want_aes)
		bench_emit(o, "panels.frame_rate_aes", rate_aes, "frames/s", 0);
	if (want_lat) {
		bench_emit(o, "panels.ack_latency_p99", lat.ack_p99, "us", 0);
		bench_emit(o, "panels.latency_p99", lat.central_p99, "us", 0);
	}
	return 0;
}
