/* libFuzzer: the police post's handling of what it reads from the central
 * broker — Dispatch payloads on its dispatch topic and Incident payloads
 * (the relay's view, which confirms or closes acks) — through the post's
 * own message callback (post/post.c), then what the front ends make of the
 * result: the JSON line of each new or changed dispatch (post/stream.c's
 * path) and a full terminal frame (post/console.c's path), both of which
 * copy payload text to a terminal or to scripts.
 *
 * The real core is opened with vigie__post_open (nothing connects); the
 * callbacks it gives libmosquitto's wrapper are captured with
 * -Wl,--wrap=vigie_mqtt_open (tests/fuzz/CMakeLists.txt), so messages go
 * through the same on_message as from a broker, not through a copy.
 *
 * Input: a sequence of messages, each
 *   byte 0      topic (its value mod 4): 0 our dispatch topic, 1 an
 *               incident topic, 2 another post's dispatch topic, 3 an
 *               unexpected topic; the other bits shape the frame drawn
 *               after the message
 *   bytes 1-2   payload length, big endian (clipped to what is left)
 *   payload
 * so one input can build a queue (re-sends, escalation levels, evictions)
 * and then close or confirm its entries. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "post.h"
#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/mqtt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int __real_vigie_mqtt_open(uv_loop_t *loop, const struct vigie_mqtt_options *o,
			   const struct vigie_mqtt_callbacks *cb, void *ud,
			   struct vigie_mqtt **out);
int __wrap_vigie_mqtt_open(uv_loop_t *loop, const struct vigie_mqtt_options *o,
			   const struct vigie_mqtt_callbacks *cb, void *ud,
			   struct vigie_mqtt **out);

/* A small queue, so that eviction and "queue full" run too. */
#define MAX_DISPATCHES 6

static uv_loop_t loop;
static struct vigie_mqtt_callbacks captured;
static void *captured_ud;
static struct vigie_mqtt *captured_mqtt;
static struct post_buf out;
static struct post_queue const *view_queue;

int __wrap_vigie_mqtt_open(uv_loop_t *l, const struct vigie_mqtt_options *o,
			   const struct vigie_mqtt_callbacks *cb, void *ud,
			   struct vigie_mqtt **m)
{
	int rc = __real_vigie_mqtt_open(l, o, cb, ud, m);

	if (rc == 0) {
		captured = *cb;
		captured_ud = ud;
		captured_mqtt = *m;
	}
	return rc;
}

/* The console's frame; `shape` (the message's topic byte) picks the
 * terminal size, colours and the selected row, so narrow and tall screens
 * are drawn too. */
static void render_frame(uint8_t shape)
{
	struct post_view v;

	if (!view_queue)
		return;
	memset(&v, 0, sizeof(v));
	v.q = view_queue;
	v.rows = 2 + (shape >> 2) % 40;
	v.cols = 8 + (shape >> 1) % 160;
	v.now_us = 1700000000000000ULL;
	v.post = "p1";
	v.name = "Post 1";
	v.connected = shape & 1;
	v.color = shape & 2;
	if (view_queue->len)
		v.selected = view_queue->v[shape % view_queue->len]->d.id;
	if (shape & 0x80) {
		v.prompt = "Operator name: ";
		v.input = "Brigadier Dupont";
	}
	vigie__postbuf_reset(&out);
	vigie__postterm_render(&out, &v);
}

static void on_dispatch(void *ud, const struct post_entry *e, bool is_new)
{
	(void)ud;
	vigie__postbuf_reset(&out);
	vigie__postjson_dispatch(&out, e, 1700000000000000ULL, is_new);
}

static void on_change(void *ud)
{
	(void)ud;
}

static void on_closed(void *arg)
{
	*(int *)arg = 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Errors only: a bad payload is logged, and the log is not what is
	 * being fuzzed. */
	vigie_log_init("fuzz_post", VIGIE_LOG_ERROR);
	vigie_mqtt_lib_init();
	if (uv_loop_init(&loop))
		abort();
	vigie__postbuf_init(&out, 1 << 20);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const topics[] = {
		"vigie/v1/post/p1/dispatch",
		"vigie/v1/incident/louvre-1",
		"vigie/v1/post/p2/dispatch",
		"vigie/v1/site/louvre/node/n1/event",
	};
	static const struct post_events ev = {
		.on_dispatch = on_dispatch,
		.on_change = on_change,
	};
	struct post_config cfg;
	struct vigie_post *p = NULL;
	int closed = 0;
	size_t at = 0;

	if (size > 4 * VIGIE_MAX_PAYLOAD)
		return 0;
	memset(&cfg, 0, sizeof(cfg));
	cfg.post = "p1";
	cfg.name = "Post 1";
	cfg.broker.host = "127.0.0.1";
	cfg.broker.port = 1;
	cfg.session_expiry_ms = 3600000;
	cfg.keep_acked_ms = 0;
	cfg.max_dispatches = MAX_DISPATCHES;
	cfg.follow_incidents = true;
	memset(&captured, 0, sizeof(captured));
	if (vigie__post_open(&loop, &cfg, &ev, NULL, &p) != 0 ||
	    !captured.on_message)
		abort();
	view_queue = vigie__post_queue(p);
	while (at < size) {
		uint8_t shape = data[at];
		const char *topic = topics[shape % 4];
		size_t len = 0;

		if (at + 3 <= size)
			len = (size_t)data[at + 1] << 8 | data[at + 2];
		at = at + 3 <= size ? at + 3 : size;
		if (len > size - at)
			len = size - at;
		captured.on_message(captured_mqtt, captured_ud, topic,
				    data + at, len, 1, false);
		at += len;
		/* The operator acknowledges the newest open entry: the
		 * incident updates that follow then confirm or close it. */
		for (size_t i = 0; i < view_queue->len; i++) {
			const struct post_entry *e = view_queue->v[i];
			char err[256];

			if (!vigie__postq_entry_done(e)) {
				vigie__post_ack(p, e->d.id, "Brigadier Dupont",
						err, sizeof(err));
				break;
			}
		}
		render_frame(shape);
	}
	view_queue = NULL;
	vigie__post_close(p, on_closed, &closed);
	while (!closed)
		uv_run(&loop, UV_RUN_ONCE);
	return 0;
}
