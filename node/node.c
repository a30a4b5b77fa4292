/* The node core: identity, outbox, publication on one of two paths,
 * re-sending until the relay's Receipt, heartbeats, birth and death.
 *
 * Ordering rules kept here:
 * - an event is appended to the outbox before it is published, and the
 *   outbox is the only copy until the Receipt: nothing else re-sends it;
 * - the source is confirmed only in the durable callback;
 * - the entry is dropped only on a Receipt, never on a PUBACK (one hop). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/outbox.h"
#include "vigie/sign.h"

#define PRIMARY   0
#define SECONDARY 1
/* Most re-sends a single tick hands to libmosquitto, so that a large
 * backlog after an outage drains over several loop turns instead of
 * stalling heartbeats and receipts. */
#define RESEND_BUDGET 5000
/* Re-send intervals double per attempt up to this many doublings. */
#define RESEND_MAX_SHIFT 4

enum failover_reason {
	FAILOVER_NONE = 0,
	FAILOVER_DISCONNECTED,
	FAILOVER_NO_RECEIPT,
};

struct path {
	struct vigie_node *node;
	struct vigie_mqtt *mqtt;
	const struct vigie_conf_broker *cfg;
	const char *name;
	bool started;
	bool up;
	uint64_t down_since_ms; /* monotonic; when it went down or started */
	uint64_t connects;      /* successful connections so far */
};

struct vigie_node {
	uv_loop_t *loop;
	const struct node_config *cfg;
	struct vigie_outbox *outbox;
	struct path paths[2];
	int n_paths;
	int active;
	uv_timer_t tick;
	uv_timer_t heartbeat;
	uint64_t boot_id;
	uint64_t seq;
	uint64_t hb_seq;
	uint64_t awaiting_since_ms; /* oldest publish with no receipt since */
	enum failover_reason failover;
	uint64_t failover_at_ms;
	uint64_t primary_connects_at_failover;
	bool loss_reported;
	char topic_event[VIGIE_TOPIC_MAX];
	char topic_state[VIGIE_TOPIC_MAX];
	char topic_heartbeat[VIGIE_TOPIC_MAX];
	char topic_receipt[VIGIE_TOPIC_MAX];
	uint8_t *will;
	size_t will_len;
	struct vigie_node_stats st;
	bool closing;
	int closes_pending;
	void (*close_cb)(void *arg);
	void *close_arg;
};

struct submit_ctx {
	struct vigie_node *node;
	vigie_node_submit_cb cb;
	void *arg;
	uint64_t boot_id, seq;
};

static uint64_t resend_interval(const struct vigie_node *n, uint32_t attempts)
{
	unsigned shift = attempts > 0 ? attempts - 1 : 0;

	if (shift > RESEND_MAX_SHIFT)
		shift = RESEND_MAX_SHIFT;
	return n->cfg->resend_ms << shift;
}

static struct path *active_path(struct vigie_node *n)
{
	return &n->paths[n->active];
}

static void publish_entry(struct vigie_node *n, struct vigie_outbox_entry *e,
			  uint64_t now)
{
	struct path *p = active_path(n);
	int rc;

	if (!p->up)
		return;
	rc = vigie_mqtt_publish(p->mqtt, n->topic_event, e->payload, e->len, 1,
				false, NULL);
	if (rc) {
		vigie_log_debug("publish #%llu.%llu on %s: %s",
				(unsigned long long)e->boot_id,
				(unsigned long long)e->seq, p->name,
				vigie_strerror(rc));
		return;
	}
	if (e->attempts)
		n->st.resent++;
	else
		n->st.published++;
	e->attempts++;
	e->last_sent_ms = now;
	if (!n->awaiting_since_ms)
		n->awaiting_since_ms = now;
}

/* Publish every entry that is due, oldest first, within the budget. */
static void resend_due(struct vigie_node *n, bool all)
{
	uint64_t now = vigie_clock_mono_ms();
	unsigned budget = RESEND_BUDGET;

	if (!active_path(n)->up)
		return;
	for (struct vigie_outbox_entry *e = vigie_outbox_first(n->outbox);
	     e && budget; e = vigie_outbox_next(n->outbox, e)) {
		if (all)
			e->last_sent_ms = 0;
		if (e->last_sent_ms &&
		    now - e->last_sent_ms < resend_interval(n, e->attempts))
			continue;
		publish_entry(n, e, now);
		budget--;
	}
	/* What the budget left over is published on the next tick. */
	if (all && !budget)
		for (struct vigie_outbox_entry *e =
			     vigie_outbox_first(n->outbox);
		     e; e = vigie_outbox_next(n->outbox, e))
			if (!e->attempts)
				e->last_sent_ms = 0;
}

static int pack_state(struct vigie_node *n, int status, const char *reason,
		      const char *path, uint8_t **out, size_t *len)
{
	const struct node_config *cfg = n->cfg;
	Vigie__V1__NodeState st = VIGIE__V1__NODE_STATE__INIT;
	Vigie__V1__Zone *zones = calloc(cfg->n_zones + 1, sizeof(*zones));
	Vigie__V1__Zone **zptr = calloc(cfg->n_zones + 1, sizeof(*zptr));
	Vigie__V1__Location *locs = calloc(cfg->n_zones + 1, sizeof(*locs));
	Vigie__V1__Sensor *sensors =
		calloc(cfg->n_sensors + 1, sizeof(*sensors));
	Vigie__V1__Sensor **sptr = calloc(cfg->n_sensors + 1, sizeof(*sptr));
	char **uncovered = calloc(cfg->n_zones + 1, sizeof(*uncovered));
	int rc = VIGIE_ENOMEM;

	if (!zones || !zptr || !locs || !sensors || !sptr || !uncovered)
		goto out_free;
	st.site = (char *)cfg->site;
	st.node = (char *)cfg->node;
	st.boot_id = n->boot_id;
	st.status = status;
	st.time_us = vigie_clock_now_us();
	st.version = (char *)VIGIE_VERSION;
	st.heartbeat_period_ms = (uint32_t)cfg->heartbeat_ms;
	st.reporting_time_ms = (uint32_t)cfg->reporting_ms;
	st.path = (char *)path;
	st.reason = (char *)reason;
	for (size_t i = 0; i < cfg->n_zones; i++) {
		const struct node_zone *z = &cfg->zones[i];

		vigie__v1__zone__init(&zones[i]);
		zones[i].id = (char *)z->id;
		zones[i].name = (char *)(z->name ? z->name : "");
		zones[i].floor = (char *)(z->floor ? z->floor : "");
		zones[i].facade = (char *)(z->facade ? z->facade : "");
		zones[i].kind = (char *)(z->kind ? z->kind : "");
		zones[i].action_plan =
			(char *)(z->action_plan ? z->action_plan : "");
		zones[i].cameras = (char **)z->cameras;
		zones[i].n_cameras = z->n_cameras;
		if (z->has_location) {
			vigie__v1__location__init(&locs[i]);
			locs[i].lat = z->lat;
			locs[i].lon = z->lon;
			zones[i].location = &locs[i];
		}
		zptr[i] = &zones[i];
		if (!vigie__nodeconf_covered(cfg, z->id))
			uncovered[st.n_uncovered_zones++] = (char *)z->id;
	}
	st.zones = zptr;
	st.n_zones = cfg->n_zones;
	for (size_t i = 0; i < cfg->n_sensors; i++) {
		const struct node_sensor *s = &cfg->sensors[i];

		vigie__v1__sensor__init(&sensors[i]);
		sensors[i].id = (char *)s->id;
		sensors[i].name = (char *)(s->name ? s->name : "");
		sensors[i].kind = s->kind;
		sensors[i].zones = (char **)s->zones;
		sensors[i].n_zones = s->n_zones;
		sptr[i] = &sensors[i];
	}
	st.sensors = sptr;
	st.n_sensors = cfg->n_sensors;
	st.uncovered_zones = uncovered;
	rc = vigie_pack(&st.base, out, len);
out_free:
	free(zones);
	free(zptr);
	free(locs);
	free(sensors);
	free(sptr);
	free(uncovered);
	return rc;
}

/* How far the relay receipted us: everything before the oldest unreceipted
 * event (seqs are dense, and only a Receipt removes an event), or this
 * whole boot. With several boots unreceipted, the oldest is told first; the
 * next one once it is drained. */
static void receipted_so_far(struct vigie_node *n, uint64_t *boot_id,
			     uint64_t *seq)
{
	struct vigie_outbox_entry *e = vigie_outbox_first(n->outbox);

	if (e) {
		*boot_id = e->boot_id;
		*seq = e->seq - 1;
	} else {
		*boot_id = n->boot_id;
		*seq = n->seq;
	}
}

static void publish_heartbeat(struct vigie_node *n)
{
	Vigie__V1__HeartbeatBody body = VIGIE__V1__HEARTBEAT_BODY__INIT;
	struct path *p = active_path(n);
	uint8_t *buf;
	size_t len;

	if (!p->up)
		return;
	body.site = (char *)n->cfg->site;
	body.node = (char *)n->cfg->node;
	body.boot_id = n->boot_id;
	body.time_us = vigie_clock_now_us();
	body.last_seq = n->seq;
	body.outbox_pending = (uint32_t)vigie_outbox_pending(n->outbox);
	body.period_ms = (uint32_t)n->cfg->heartbeat_ms;
	body.reporting_time_ms = (uint32_t)n->cfg->reporting_ms;
	body.path = (char *)p->name;
	body.hb_seq = ++n->hb_seq;
	receipted_so_far(n, &body.receipted_boot, &body.receipted_seq);
	/* Signed like an event: a forged heartbeat would hide a cut link. */
	if (vigie_sign_heartbeat(n->cfg->signing_key, &body, &buf, &len) == 0) {
		/* QoS 0: a heartbeat is only worth anything when it is fresh.
		 */
		vigie_mqtt_publish(p->mqtt, n->topic_heartbeat, buf, len, 0,
				   false, NULL);
		free(buf);
	}
}

static void heartbeat_cb(uv_timer_t *t)
{
	publish_heartbeat(t->data);
}

static void publish_birth(struct vigie_node *n, struct path *p)
{
	uint8_t *buf;
	size_t len;

	if (pack_state(n, VIGIE__V1__NODE_STATUS__NODE_ONLINE, "", p->name,
		       &buf, &len))
		return;
	vigie_mqtt_publish(p->mqtt, n->topic_state, buf, len, 1, true, NULL);
	free(buf);
}

/* Events the node raises about itself (path loss) go through the same
 * outbox as any other: they too must reach the relay exactly once. */
static void raise_path_event(struct vigie_node *n, int state,
			     const char *reason)
{
	struct node_event ev;
	char err[128];

	memset(&ev, 0, sizeof(ev));
	ev.kind = VIGIE__V1__EVENT_KIND__KIND_PATH_LOSS;
	ev.state = state;
	snprintf(ev.text, sizeof(ev.text), "%s path %s: %s",
		 n->paths[PRIMARY].name,
		 state == VIGIE__V1__EVENT_STATE__STATE_RESTORE ? "restored"
								: "lost",
		 reason);
	snprintf(ev.attrs[0].key, sizeof(ev.attrs[0].key), "path");
	snprintf(ev.attrs[0].value, sizeof(ev.attrs[0].value), "primary");
	snprintf(ev.attrs[1].key, sizeof(ev.attrs[1].key), "reason");
	snprintf(ev.attrs[1].value, sizeof(ev.attrs[1].value), "%s", reason);
	ev.n_attrs = 2;
	if (vigie__node_submit(n, &ev, "node", NULL, NULL, err, sizeof(err)))
		vigie_log_error("cannot record path event: %s", err);
}

static void switch_path(struct vigie_node *n, int to)
{
	struct path *p = &n->paths[to];

	if (n->active == to)
		return;
	vigie_log_warn("switching to the %s path", p->name);
	n->active = to;
	n->awaiting_since_ms = 0;
	if (!p->started) {
		p->started = true;
		p->down_since_ms = vigie_clock_mono_ms();
		vigie_mqtt_start(p->mqtt);
	}
	/* Everything unreceipted goes out again on the new path; the relay's
	 * identity-based dedupe makes the overlap harmless. */
	resend_due(n, true);
}

/* Dual path (EN 50136-1 DP): leave the primary when it is down for the
 * failover time, or when it is up but no Receipt came back through it for
 * that long; come back when it reconnected (or, after a receipt stall, try
 * it again after a while). */
static void check_paths(struct vigie_node *n, uint64_t now)
{
	struct path *pri = &n->paths[PRIMARY];
	uint64_t fo = n->cfg->failover_ms;

	if (n->active == PRIMARY) {
		enum failover_reason why = FAILOVER_NONE;

		if (!pri->up && now - pri->down_since_ms >= fo)
			why = FAILOVER_DISCONNECTED;
		else if (pri->up && n->awaiting_since_ms &&
			 now - n->awaiting_since_ms >= fo)
			why = FAILOVER_NO_RECEIPT;
		if (why == FAILOVER_NONE)
			return;
		/* Switch first: the loss report then leaves on the path that
		 * works. */
		if (n->n_paths > 1) {
			n->st.failovers++;
			switch_path(n, SECONDARY);
		}
		if (!n->loss_reported) {
			n->loss_reported = true;
			n->failover = why;
			n->failover_at_ms = now;
			n->primary_connects_at_failover = pri->connects;
			vigie_log_warn("primary path lost: %s",
				       why == FAILOVER_DISCONNECTED
					       ? "broker unreachable"
					       : "no receipt");
			raise_path_event(
				n, VIGIE__V1__EVENT_STATE__STATE_TROUBLE,
				why == FAILOVER_DISCONNECTED ? "disconnected"
							     : "no-receipt");
		}
		return;
	}
	/* On the secondary. */
	if (!pri->up)
		return;
	if (n->failover == FAILOVER_DISCONNECTED &&
	    pri->connects == n->primary_connects_at_failover)
		return;
	if (n->failover == FAILOVER_NO_RECEIPT &&
	    now - n->failover_at_ms < 6 * fo)
		return;
	switch_path(n, PRIMARY);
	/* The secondary is used only while needed: a clean disconnect, so
	 * its will does not announce a death. */
	vigie_mqtt_stop(n->paths[SECONDARY].mqtt);
	n->paths[SECONDARY].started = false;
	n->paths[SECONDARY].up = false;
	if (n->loss_reported) {
		n->loss_reported = false;
		raise_path_event(n, VIGIE__V1__EVENT_STATE__STATE_RESTORE,
				 n->failover == FAILOVER_DISCONNECTED
					 ? "disconnected"
					 : "no-receipt");
	}
	n->failover = FAILOVER_NONE;
}

static void tick_cb(uv_timer_t *t)
{
	struct vigie_node *n = t->data;
	uint64_t now = vigie_clock_mono_ms();

	check_paths(n, now);
	/* Path loss without a secondary is still recorded (delivered once the
	 * primary works again, so the relay sees how long it lasted) and
	 * restored when the primary is connected and receipts flow. */
	if (n->n_paths == 1 && n->loss_reported && n->paths[PRIMARY].up &&
	    (n->failover == FAILOVER_DISCONNECTED || !n->awaiting_since_ms ||
	     now - n->awaiting_since_ms < n->cfg->failover_ms)) {
		n->loss_reported = false;
		raise_path_event(n, VIGIE__V1__EVENT_STATE__STATE_RESTORE,
				 n->failover == FAILOVER_NO_RECEIPT
					 ? "no-receipt"
					 : "disconnected");
		n->failover = FAILOVER_NONE;
	}
	resend_due(n, false);
}

static void on_connect(struct vigie_mqtt *m, void *ud, bool session_present)
{
	struct path *p = ud;
	struct vigie_node *n = p->node;

	(void)m;
	(void)session_present;
	p->up = true;
	p->connects++;
	publish_birth(n, p);
	if (p == active_path(n)) {
		/* What was in flight on the lost connection may be gone with
		 * the broker (kill -9): send every unreceipted event again. */
		n->awaiting_since_ms = 0;
		resend_due(n, true);
		publish_heartbeat(n);
	}
}

static void on_disconnect(struct vigie_mqtt *m, void *ud, int reason)
{
	struct path *p = ud;

	(void)m;
	(void)reason;
	if (p->up)
		p->down_since_ms = vigie_clock_mono_ms();
	p->up = false;
}

static void on_message(struct vigie_mqtt *m, void *ud, const char *topic,
		       const void *payload, size_t len, int qos, bool retain)
{
	struct path *p = ud;
	struct vigie_node *n = p->node;
	Vigie__V1__Receipt *r;
	size_t removed;

	(void)m;
	(void)qos;
	(void)retain;
	if (strcmp(topic, n->topic_receipt) != 0)
		return;
	n->st.receipts++;
	r = vigie__v1__receipt__unpack(NULL, len, payload);
	if (!r) {
		n->st.bad_receipts++;
		vigie_log_warn("receipt on %s: payload does not decode (%zu "
			       "bytes), dropped",
			       topic, len);
		return;
	}
	if (strcmp(r->site, n->cfg->site) != 0 ||
	    strcmp(r->node, n->cfg->node) != 0) {
		n->st.bad_receipts++;
		vigie_log_warn(
			"receipt on %s names %s/%s, not this node: dropped",
			topic, r->site, r->node);
		goto out_free;
	}
	removed = vigie_outbox_receipt(n->outbox, r->boot_id, r->seq);
	n->st.receipted += removed;
	if (removed || !vigie_outbox_pending(n->outbox))
		n->awaiting_since_ms = vigie_outbox_pending(n->outbox)
					       ? vigie_clock_mono_ms()
					       : 0;
out_free:
	vigie__v1__receipt__free_unpacked(r, NULL);
}

static void on_durable(void *arg, int status)
{
	struct submit_ctx *ctx = arg;

	if (status == 0)
		ctx->node->st.durable++;
	if (ctx->cb)
		ctx->cb(ctx->arg, status, ctx->boot_id, ctx->seq,
			status ? vigie_strerror(status) : NULL);
	free(ctx);
}

static int check_event(const struct vigie_node *n, struct node_event *ev,
		       char *err, size_t errlen)
{
	const struct node_config *cfg = n->cfg;

	if (ev->sensor[0] && cfg->n_sensors) {
		const struct node_sensor *s =
			vigie__nodeconf_sensor(cfg, ev->sensor);

		if (!s) {
			snprintf(err, errlen, "sensor: \"%s\" is not in %s",
				 ev->sensor, cfg->path);
			return VIGIE_EINVAL;
		}
		if (!ev->zone[0])
			snprintf(ev->zone, sizeof(ev->zone), "%s", s->zones[0]);
	}
	if (ev->zone[0] && cfg->n_zones &&
	    !vigie__nodeconf_zone(cfg, ev->zone)) {
		snprintf(err, errlen, "zone: \"%s\" is not in %s", ev->zone,
			 cfg->path);
		return VIGIE_EINVAL;
	}
	return 0;
}

int vigie__node_submit(struct vigie_node *n, const struct node_event *in,
		       const char *source, vigie_node_submit_cb cb, void *arg,
		       char *err, size_t errlen)
{
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;
	Vigie__V1__Attribute attrs[NODE_ATTR_MAX];
	Vigie__V1__Attribute *aptr[NODE_ATTR_MAX];
	struct vigie_outbox_entry *entry;
	struct node_event checked = *in;
	struct submit_ctx *ctx;
	char scratch[160];
	uint8_t *payload;
	size_t len;
	int rc;

	if (!err) {
		err = scratch;
		errlen = sizeof(scratch);
	}
	if (n->closing) {
		snprintf(err, errlen, "node is shutting down");
		return VIGIE_ECLOSED;
	}
	rc = check_event(n, &checked, err, errlen);
	if (rc) {
		n->st.refused++;
		return rc;
	}
	ev.site = (char *)n->cfg->site;
	ev.node = (char *)n->cfg->node;
	ev.boot_id = n->boot_id;
	ev.seq = n->seq + 1;
	ev.time_us = checked.time_us ? checked.time_us : vigie_clock_now_us();
	ev.kind = checked.kind;
	ev.state = checked.state;
	ev.zone = checked.zone;
	ev.sensor = checked.sensor;
	ev.text = checked.text;
	ev.source = (char *)(source ? source : "");
	ev.source_code = checked.code;
	ev.path = (char *)active_path(n)->name;
	for (size_t i = 0; i < checked.n_attrs; i++) {
		vigie__v1__attribute__init(&attrs[i]);
		attrs[i].key = checked.attrs[i].key;
		attrs[i].value = checked.attrs[i].value;
		aptr[i] = &attrs[i];
	}
	ev.attributes = aptr;
	ev.n_attributes = checked.n_attrs;

	/* The signature covers the exact Event bytes, stored in the outbox
	 * with it: a re-send is byte for byte the first publication. */
	rc = vigie_sign_event(n->cfg->signing_key, &ev, &payload, &len);
	if (rc) {
		snprintf(err, errlen, "cannot encode event: %s",
			 vigie_strerror(rc));
		n->st.refused++;
		return rc;
	}
	ctx = malloc(sizeof(*ctx));
	if (!ctx) {
		rc = VIGIE_ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out_free_payload;
	}
	ctx->node = n;
	ctx->cb = cb;
	ctx->arg = arg;
	ctx->boot_id = ev.boot_id;
	ctx->seq = ev.seq;
	/* Stored before published: the outbox is the only copy until the
	 * Receipt. Publishing need not wait for the fsync. */
	rc = vigie_outbox_append(n->outbox, ev.seq, ev.time_us, payload, len,
				 on_durable, ctx, &entry);
	if (rc) {
		snprintf(err, errlen, "%s",
			 rc == VIGIE_EFULL
				 ? "outbox full: relay unreachable for too long"
				 : vigie_strerror(rc));
		n->st.refused++;
		free(ctx);
		goto out_free_payload;
	}
	n->seq = ev.seq;
	n->st.accepted++;
	publish_entry(n, entry, vigie_clock_mono_ms());
out_free_payload:
	free(payload);
	return rc;
}

static int open_path(struct vigie_node *n, int idx,
		     const struct vigie_conf_broker *b, const char *name)
{
	static const struct vigie_mqtt_callbacks cbs = {
		.on_connect = on_connect,
		.on_disconnect = on_disconnect,
		.on_message = on_message,
	};
	struct vigie_mqtt_options o;
	struct path *p = &n->paths[idx];
	char client_id[2 * VIGIE_ID_MAX + 16];
	int rc;

	memset(&o, 0, sizeof(o));
	snprintf(client_id, sizeof(client_id), "vigie-%s-%s%s", n->cfg->site,
		 n->cfg->node, idx == PRIMARY ? "" : "-2");
	vigie_conf_broker_apply(b, &o);
	o.client_id = client_id;
	/* No broker session: what a lost connection held is re-sent from the
	 * outbox, and receipts are re-triggered by the re-send. */
	o.clean_start = true;
	o.will_topic = n->topic_state;
	o.will_payload = n->will;
	o.will_len = n->will_len;
	o.will_qos = 1;
	o.will_retain = true;
	o.reconnect_min_ms = 100;
	o.reconnect_max_ms = 5000;
	o.name = name;
	p->node = n;
	p->cfg = b;
	p->name = name;
	rc = vigie_mqtt_open(n->loop, &o, &cbs, p, &p->mqtt);
	if (rc)
		return rc;
	n->n_paths++;
	return vigie_mqtt_subscribe(p->mqtt, n->topic_receipt, 1);
}

int vigie__node_open(uv_loop_t *loop, const struct node_config *cfg,
		     struct vigie_node **out)
{
	struct vigie_outbox_options oo = {.max_pending = cfg->max_pending};
	struct vigie_node *n = calloc(1, sizeof(*n));
	int rc;

	if (!n)
		return VIGIE_ENOMEM;
	n->loop = loop;
	n->cfg = cfg;
	if (vigie_topic_build(n->topic_event, sizeof(n->topic_event),
			      VIGIE_TOPIC_EVENT, cfg->site, cfg->node) ||
	    vigie_topic_build(n->topic_state, sizeof(n->topic_state),
			      VIGIE_TOPIC_STATE, cfg->site, cfg->node) ||
	    vigie_topic_build(n->topic_heartbeat, sizeof(n->topic_heartbeat),
			      VIGIE_TOPIC_HEARTBEAT, cfg->site, cfg->node) ||
	    vigie_topic_build(n->topic_receipt, sizeof(n->topic_receipt),
			      VIGIE_TOPIC_RECEIPT, cfg->site, cfg->node)) {
		free(n);
		return VIGIE_EINVAL;
	}
	rc = vigie_outbox_open(loop, cfg->outbox, &oo, &n->outbox);
	if (rc) {
		free(n);
		return rc;
	}
	n->boot_id = vigie_outbox_boot_id(n->outbox);
	rc = pack_state(n, VIGIE__V1__NODE_STATUS__NODE_OFFLINE, "lwt", "",
			&n->will, &n->will_len);
	if (rc)
		goto out_close;
	rc = open_path(n, PRIMARY, &cfg->primary, "primary");
	if (rc)
		goto out_close;
	if (cfg->has_secondary) {
		rc = open_path(n, SECONDARY, &cfg->secondary, "secondary");
		if (rc)
			goto out_close;
	}
	uv_timer_init(loop, &n->tick);
	uv_timer_init(loop, &n->heartbeat);
	n->tick.data = n->heartbeat.data = n;
	*out = n;
	return 0;
out_close:
	/* Nothing ran yet: the paths and outbox close asynchronously, so hand
	 * the half-built node to the regular close path without timers. */
	vigie_log_error("node %s/%s: setup failed: %s", cfg->site, cfg->node,
			vigie_strerror(rc));
	n->closing = true;
	for (int i = 0; i < n->n_paths; i++)
		vigie_mqtt_close(n->paths[i].mqtt, NULL, NULL);
	vigie_outbox_close(n->outbox, NULL, NULL);
	free(n->will);
	free(n);
	return rc;
}

int vigie__node_start(struct vigie_node *n)
{
	uint64_t tick = n->cfg->resend_ms / 4;

	if (tick > 250)
		tick = 250;
	if (tick < 20)
		tick = 20;
	vigie_log_info("node %s/%s boot %llu: %zu unreceipted event(s) in %s",
		       n->cfg->site, n->cfg->node,
		       (unsigned long long)n->boot_id,
		       vigie_outbox_pending(n->outbox), n->cfg->outbox);
	n->paths[PRIMARY].started = true;
	n->paths[PRIMARY].down_since_ms = vigie_clock_mono_ms();
	uv_timer_start(&n->tick, tick_cb, tick, tick);
	uv_timer_start(&n->heartbeat, heartbeat_cb, n->cfg->heartbeat_ms,
		       n->cfg->heartbeat_ms);
	return vigie_mqtt_start(n->paths[PRIMARY].mqtt);
}

void vigie__node_stats(const struct vigie_node *n, struct vigie_node_stats *st)
{
	*st = n->st;
	st->pending = vigie_outbox_pending(n->outbox);
	st->active_path = n->paths[n->active].name;
}

uint64_t vigie__node_boot_id(const struct vigie_node *n)
{
	return n->boot_id;
}

static void close_step(void *arg)
{
	struct vigie_node *n = arg;

	if (--n->closes_pending > 0)
		return;
	free(n->will);
	if (n->close_cb)
		n->close_cb(n->close_arg);
	free(n);
}

static void on_timer_closed(uv_handle_t *h)
{
	close_step(h->data);
}

void vigie__node_close(struct vigie_node *n, void (*cb)(void *arg), void *arg)
{
	if (n->closing)
		return;
	n->closing = true;
	n->close_cb = cb;
	n->close_arg = arg;
	/* A clean stop is announced, retained, so that dashboards and the
	 * relay tell "stopped" from "vanished". */
	for (int i = 0; i < n->n_paths; i++) {
		struct path *p = &n->paths[i];
		uint8_t *buf;
		size_t len;

		if (p->up && pack_state(n, VIGIE__V1__NODE_STATUS__NODE_OFFLINE,
					"shutdown", p->name, &buf, &len) == 0) {
			vigie_mqtt_publish(p->mqtt, n->topic_state, buf, len, 1,
					   true, NULL);
			free(buf);
		}
	}
	n->closes_pending = 2 + n->n_paths + 1;
	uv_timer_stop(&n->tick);
	uv_timer_stop(&n->heartbeat);
	uv_close((uv_handle_t *)&n->tick, on_timer_closed);
	uv_close((uv_handle_t *)&n->heartbeat, on_timer_closed);
	for (int i = 0; i < n->n_paths; i++)
		vigie_mqtt_close(n->paths[i].mqtt, close_step, n);
	vigie_outbox_close(n->outbox, close_step, n);
}
