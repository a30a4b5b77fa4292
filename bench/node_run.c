/* An in-process node (node/node.h) on a loop of its own, configured from a
 * YAML file like a deployed one, and the loop helper the figures wait with. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "vigie/error.h"
#include "vigie/log.h"

/* What a glass-break detector on a display case reports; the node checks
 * the sensor and zone against its configuration like any other event. */
static const char event_line[] =
	"kind=glass_break state=alarm sensor=gb-w2 zone=apollo-gallery "
	"text=\"window cut\" tool=angle-grinder entry=window";

int bench_node_yaml(const char *path, const char *id, int port,
		    const char *heartbeat)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		fprintf(stderr, "vigie-bench: %s: %s\n", path, strerror(errno));
		return VIGIE_ESYS;
	}
	fprintf(f,
		"site: %s\n"
		"node: %s\n"
		"outbox: %s/%s.db\n"
		"socket: %s/%s.sock\n"
		"heartbeat_period: %s\n"
		"reporting_time: 10s\n"
		"resend_timeout: 5s\n"
		"failover_time: 10s\n"
		"brokers:\n"
		"  primary:\n"
		"    host: 127.0.0.1\n"
		"    port: %d\n"
		"    keepalive: 10\n"
		"zones:\n"
		"  - id: apollo-gallery\n"
		"    name: Galerie d'Apollon\n"
		"    kind: gallery\n"
		"    floor: \"1\"\n"
		"    facade: seine\n"
		"    location: {lat: 48.86085, lon: 2.33700}\n"
		"    cameras: [cam-apollo-east, cam-apollo-west]\n"
		"  - id: apollo-balcony\n"
		"    name: Balcony over the quai\n"
		"    kind: balcony\n"
		"    floor: \"1\"\n"
		"    facade: seine\n"
		"    cameras: [cam-quai-3]\n"
		"  - id: quai-facade\n"
		"    kind: facade\n"
		"sensors:\n"
		"  - {id: radar-quai, kind: vehicle, zones: [quai-facade]}\n"
		"  - {id: seismic-w2, kind: vibration, zones: "
		"[apollo-balcony]}\n"
		"  - {id: gb-w2, kind: glass_break, zones: [apollo-balcony, "
		"apollo-gallery]}\n"
		"  - {id: pir-apollo, kind: motion, zones: [apollo-gallery]}\n"
		"  - {id: case-regalia, kind: display_case, zones: "
		"[apollo-gallery]}\n",
		BENCH_SITE, id, bench_tmpdir(), id, bench_tmpdir(), id,
		heartbeat, port);
	if (fclose(f) != 0) {
		fprintf(stderr, "vigie-bench: %s: %s\n", path, strerror(errno));
		return VIGIE_ESYS;
	}
	return 0;
}

int bench_node_open(struct bench_node *bn, const char *id, int port)
{
	char name[VIGIE_ID_MAX + 8], err[512];
	int rc;

	memset(bn, 0, sizeof(*bn));
	snprintf(name, sizeof(name), "%s.yaml", id);
	rc = bench_path(bn->yaml, sizeof(bn->yaml), name);
	if (rc == 0)
		rc = bench_node_yaml(bn->yaml, id, port, "5s");
	if (rc)
		return rc;
	rc = vigie__line_parse(event_line, strlen(event_line), &bn->ev, err,
			       sizeof(err));
	if (rc) {
		fprintf(stderr, "vigie-bench: event line: %s\n", err);
		return rc;
	}
	rc = vigie__nodeconf_load(bn->yaml, &bn->cfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "vigie-bench: %s\n", err);
		vigie__nodeconf_free(&bn->cfg);
		return rc;
	}
	bn->cfg_loaded = true;
	if (uv_loop_init(&bn->loop) != 0)
		return VIGIE_ESYS;
	bn->loop_open = true;
	rc = vigie__node_open(&bn->loop, &bn->cfg, &bn->node);
	if (rc)
		return rc;
	return vigie__node_start(bn->node);
}

int bench_node_submit(struct bench_node *bn, vigie_node_submit_cb cb, void *arg)
{
	char err[160];
	int rc;

	rc = vigie__node_submit(bn->node, &bn->ev, "socket", cb, arg, err,
				sizeof(err));
	if (rc)
		vigie_log_error("bench: submit: %s", err);
	return rc;
}

struct until {
	uv_timer_t timer;
	bool (*cond)(void *arg);
	void *arg;
	uint64_t deadline_us;
	bool met;
};

static void until_cb(uv_timer_t *t)
{
	struct until *u = t->data;

	u->met = u->cond(u->arg);
	if (u->met || bench_mono_us() >= u->deadline_us)
		uv_stop(t->loop);
}

int bench_loop_until(uv_loop_t *loop, bool (*cond)(void *arg), void *arg,
		     unsigned check_ms, unsigned timeout_ms)
{
	struct until u = {.cond = cond, .arg = arg};

	if (cond(arg))
		return 0;
	u.deadline_us = bench_mono_us() + (uint64_t)timeout_ms * 1000u;
	uv_timer_init(loop, &u.timer);
	u.timer.data = &u;
	uv_timer_start(&u.timer, until_cb, check_ms, check_ms);
	uv_run(loop, UV_RUN_DEFAULT);
	/* The timer lives on this stack frame: closed before returning. */
	uv_close((uv_handle_t *)&u.timer, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return u.met ? 0 : VIGIE_ENOCONN;
}

static void on_node_closed(void *arg)
{
	struct bench_node *bn = arg;

	bn->node = NULL;
}

int bench_node_close(struct bench_node *bn)
{
	int rc = 0;

	if (bn->node) {
		vigie__node_close(bn->node, on_node_closed, bn);
		uv_run(&bn->loop, UV_RUN_DEFAULT);
	}
	if (bn->loop_open) {
		/* Runs what a failed open left closing, then checks. */
		uv_run(&bn->loop, UV_RUN_DEFAULT);
		if (uv_loop_close(&bn->loop) != 0) {
			fprintf(stderr,
				"vigie-bench: the node left handles open\n");
			rc = VIGIE_EIO;
		}
		bn->loop_open = false;
	}
	if (bn->cfg_loaded)
		vigie__nodeconf_free(&bn->cfg);
	bn->cfg_loaded = false;
	return rc;
}
