/* The post's core: one MQTT client with a persistent session, the birth and
 * the will, the queue of dispatches and the acknowledgements.
 *
 * Ordering rules kept here:
 * - the session is persistent (fixed client id, clean start off, session
 *   expiry): dispatches the relay sends while the console is down wait in
 *   the broker and arrive when it returns;
 * - the birth is published after the subscriptions are renewed on the same
 *   connection, so whoever sees ONLINE knows dispatches will be received;
 * - an Ack is "sent" only at its PUBACK; until then it is re-published on
 *   every connect and every ACK_RETRY_MS (an Ack is idempotent: the relay
 *   keys it by dispatch id).
 *
 * With a `standby:` central broker the post holds both connections at once,
 * each with its session, birth and will: a dispatch is shown once whichever
 * broker brings it (the queue keys it by id, a repeat is counted and
 * dropped), an Ack is published on every connected one and is sent at the
 * first PUBACK. The post is "connected" while either is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "post.h"
#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"

#define TICK_MS 1000
/* A pending Ack with no PUBACK after this is published again. */
#define ACK_RETRY_MS 10000
/* The relay still re-sends a dispatch this long after our Ack's PUBACK:
 * it may have lost the Ack (a restart without persistence); say it again. */
#define ACK_REPEAT_MS 5000
/* Bad payloads logged one by one before the log thins out. */
#define BAD_LOG_FIRST   20
#define BAD_LOG_EVERY   1000
#define INCIDENT_TOPICS "vigie/v1/incident/+"
/* At shutdown, longest wait for the PUBACK of the OFFLINE state. */
#define CLOSE_WAIT_MS 2000

/* One central broker connection. */
struct post_link {
	struct vigie_post *p;
	struct vigie_mqtt *mqtt;
	unsigned index; /* 0 `broker:`, 1 `standby:` */
	bool up;
	bool session_present; /* of this connection */
	int birth_mid;
	int offline_mid;
	bool offline_acked; /* at shutdown: its OFFLINE state is stored */
};

struct vigie_post {
	uv_loop_t *loop;
	const struct post_config *cfg;
	struct post_link links[POST_MAX_BROKERS];
	size_t n_links;
	struct post_events ev;
	void *ud;
	struct post_queue q;
	uv_timer_t tick;
	char topic_dispatch[VIGIE_TOPIC_MAX];
	char topic_ack[VIGIE_TOPIC_MAX];
	char topic_state[VIGIE_TOPIC_MAX];
	uint8_t *will;
	size_t will_len;
	struct post_stats st;
	bool up; /* connected to at least one central broker */
	bool closing;
	bool announced; /* on_connection(true) given for this connection */
	bool session_present;       /* of the connection that announced */
	bool close_waiting;         /* for the PUBACKs of OFFLINE "shutdown" */
	uint64_t close_deadline_ms; /* monotonic: stop waiting then */
	int closes_pending;
	void (*close_cb)(void *arg);
	void *close_arg;
};

static void close_wait_cb(uv_timer_t *t);

static void changed(struct vigie_post *p)
{
	if (p->ev.on_change)
		p->ev.on_change(p->ud);
}

/* Topics and names from the wire go into log lines only through this. */
static const char *printable(const char *s, char *buf, size_t len)
{
	size_t i = 0;

	for (; s && s[i] && i + 1 < len; i++) {
		unsigned char c = (unsigned char)s[i];

		buf[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	buf[i] = '\0';
	return buf;
}

static void bad_payload(struct vigie_post *p, const char *topic, size_t len,
			const char *reason)
{
	char t[VIGIE_TOPIC_MAX];

	p->st.bad_payloads++;
	if (p->st.bad_payloads <= BAD_LOG_FIRST ||
	    p->st.bad_payloads % BAD_LOG_EVERY == 0)
		vigie_log_warn("%s: %s (%zu bytes), dropped [%llu bad "
			       "payload(s) so far]",
			       printable(topic, t, sizeof(t)), reason, len,
			       (unsigned long long)p->st.bad_payloads);
	changed(p);
}

static void publish_ack(struct vigie_post *p, struct post_entry *e)
{
	uint8_t *buf;
	size_t len;
	int rc = VIGIE_ENOCONN;
	bool sent = false;

	if (!p->up)
		return; /* published again on connect */
	rc = vigie__postmsg_ack_pack(p->cfg->post, e->d.id, e->d.incident,
				     e->acked_by ? e->acked_by : "",
				     e->acked_us, &buf, &len);
	if (rc) {
		vigie_log_error("ack %s: cannot encode: %s", e->d.id,
				vigie_strerror(rc));
		return;
	}
	/* On every connected central: the relay holds both and keys an Ack
	 * by its incident, so the second copy changes nothing there. */
	for (size_t i = 0; i < p->n_links; i++) {
		struct post_link *l = &p->links[i];
		int mid = 0, err;

		e->ack_mid[i] = 0;
		if (!l->up)
			continue;
		err = vigie_mqtt_publish(l->mqtt, p->topic_ack, buf, len, 1,
					 false, &mid);
		if (err) {
			rc = err;
			continue;
		}
		e->ack_mid[i] = mid;
		sent = true;
	}
	free(buf);
	e->ack_sent_ms = vigie_clock_mono_ms();
	if (!sent) {
		vigie_log_warn("ack %s: publish failed: %s; retrying", e->d.id,
			       vigie_strerror(rc));
		return;
	}
	p->st.acks_published++;
	vigie_log_info("ack %s (incident %s) by %s published", e->d.id,
		       *e->d.incident ? e->d.incident : "?", e->acked_by);
}

static int publish_state(struct vigie_post *p, struct post_link *l, int status,
			 const char *reason, int *mid)
{
	uint8_t *buf;
	size_t len;
	int rc;

	rc = vigie__postmsg_state_pack(p->cfg->post, status, p->cfg->name,
				       reason, vigie_clock_now_us(), &buf,
				       &len);
	if (rc) {
		vigie_log_error("post state: cannot encode: %s",
				vigie_strerror(rc));
		return rc;
	}
	rc = vigie_mqtt_publish(l->mqtt, p->topic_state, buf, len, 1, true,
				mid);
	if (rc)
		vigie_log_warn("post state: publish failed: %s",
			       vigie_strerror(rc));
	free(buf);
	return rc;
}

static void announce(struct vigie_post *p, struct post_link *l)
{
	if (p->announced)
		return;
	p->announced = true;
	p->session_present = l->session_present;
	if (p->ev.on_connection)
		p->ev.on_connection(p->ud, true, p->session_present);
}

static void on_connect(struct vigie_mqtt *m, void *ud, bool session_present)
{
	struct post_link *l = ud;
	struct vigie_post *p = l->p;

	(void)m;
	l->up = true;
	p->up = true;
	p->st.connects++;
	if (!session_present && p->st.connects > p->n_links)
		vigie_log_warn("the broker%s%s kept no session for us: "
			       "dispatches sent while we were away are lost "
			       "to this console (the relay re-sends open ones)",
			       p->n_links > 1 ? " " : "",
			       p->n_links > 1 ? vigie_mqtt_name(m) : "");
	l->session_present = session_present;
	l->birth_mid = 0;
	for (size_t i = 0; i < p->q.len; i++)
		if (p->q.v[i]->ack == POST_ACK_PENDING)
			publish_ack(p, p->q.v[i]);
	/* "Connected" is announced at the birth's PUBACK: the broker handles
	 * a connection's packets in order, so by then it has our SUBSCRIBE
	 * (sent before on_connect) and whatever is published for us from now
	 * on reaches us, also on a first connection with no session yet. */
	if (publish_state(p, l, VIGIE__V1__POST_STATUS__POST_ONLINE, "",
			  &l->birth_mid))
		announce(p, l);
}

static void on_disconnect(struct vigie_mqtt *m, void *ud, int reason)
{
	struct post_link *l = ud;
	struct vigie_post *p = l->p;
	bool any = false;

	(void)m;
	(void)reason;
	l->up = false;
	/* No PUBACK comes for what this connection sent: a pending Ack is
	 * published again on connect, and the message ids of the others
	 * must not match a later message's PUBACK. */
	for (size_t i = 0; i < p->q.len; i++)
		if (p->q.v[i]->ack != POST_ACK_PENDING)
			p->q.v[i]->ack_mid[l->index] = 0;
	if (p->close_waiting)
		uv_timer_start(&p->tick, close_wait_cb, 0, 0);
	for (size_t i = 0; i < p->n_links; i++)
		any = any || p->links[i].up;
	if (!p->up || any)
		return;
	p->up = false;
	if (p->announced && p->ev.on_connection)
		p->ev.on_connection(p->ud, false, false);
	p->announced = false;
}

static void handle_dispatch(struct vigie_post *p, const char *topic,
			    const void *payload, size_t len)
{
	Vigie__V1__Dispatch *d;
	struct post_entry *e;
	enum post_upsert what;
	uint64_t now_ms = vigie_clock_mono_ms();
	char err[256];
	int rc;

	p->st.received++;
	d = vigie__v1__dispatch__unpack(NULL, len, payload);
	if (!d) {
		bad_payload(p, topic, len, "not a Dispatch");
		return;
	}
	if (vigie__postq_check(d, p->cfg->post, err, sizeof(err))) {
		bad_payload(p, topic, len, err);
		goto out_free;
	}
	rc = vigie__postq_upsert(&p->q, d, vigie_clock_now_us(), now_ms, &what,
				 &e);
	if (rc == VIGIE_EFULL) {
		p->st.refused_full++;
		vigie_log_error(
			"queue full (%zu open dispatches): dispatch %s not "
			"shown; the relay re-sends it until it is acknowledged",
			vigie__postq_open_count(&p->q), d->id);
		goto out_free;
	}
	if (rc) {
		vigie_log_error("dispatch %s: %s", d->id, vigie_strerror(rc));
		goto out_free;
	}
	switch (what) {
	case POST_UPSERT_NEW:
		p->st.new_dispatches++;
		vigie_log_info("dispatch %s: %s %s, level %u, attempt %u%s%s",
			       e->d.id, vigie_priority_name(e->d.priority),
			       vigie_kind_name(e->d.kind), e->d.level,
			       e->d.attempt,
			       e->d.confirmed ? ", confirmed" : "",
			       *e->d.pattern ? ", pattern" : "");
		break;
	case POST_UPSERT_CHANGED:
		p->st.updates++;
		if (e->ack == POST_ACK_SENT &&
		    now_ms - e->ack_sent_ms >= ACK_REPEAT_MS) {
			vigie_log_warn("dispatch %s re-sent (attempt %u) after "
				       "our ack: acknowledging again",
				       e->d.id, e->d.attempt);
			publish_ack(p, e);
		}
		break;
	default:
		p->st.duplicates++;
		goto out_free;
	}
	if (p->ev.on_dispatch)
		p->ev.on_dispatch(p->ud, e, what == POST_UPSERT_NEW);
out_free:
	vigie__v1__dispatch__free_unpacked(d, NULL);
}

static void handle_incident(struct vigie_post *p, const char *topic,
			    const void *payload, size_t len)
{
	Vigie__V1__Incident *inc;

	inc = vigie__v1__incident__unpack(NULL, len, payload);
	if (!inc) {
		bad_payload(p, topic, len, "not an Incident");
		return;
	}
	p->st.incidents++;
	if (vigie__postq_incident(&p->q, inc->id, inc->state, inc->acked_by,
				  inc->acked_us, vigie_clock_mono_ms()))
		changed(p);
	vigie__v1__incident__free_unpacked(inc, NULL);
}

static void on_message(struct vigie_mqtt *m, void *ud, const char *topic,
		       const void *payload, size_t len, int qos, bool retain)
{
	struct vigie_post *p = ((struct post_link *)ud)->p;
	struct vigie_topic t;

	(void)m;
	(void)qos;
	(void)retain;
	if (len > VIGIE_MAX_PAYLOAD) {
		bad_payload(p, topic, len, "payload over the size cap");
		return;
	}
	if (strcmp(topic, p->topic_dispatch) == 0) {
		handle_dispatch(p, topic, payload, len);
		return;
	}
	if (vigie_topic_parse(topic, &t) == 0 &&
	    t.type == VIGIE_TOPIC_INCIDENT) {
		/* Empty: the relay cleared a long-closed incident's retained
		 * state; what this console shows of it is already closed. */
		if (len)
			handle_incident(p, topic, payload, len);
		return;
	}
	vigie_log_debug("message on an unexpected topic (%zu bytes) ignored",
			len);
}

static void on_publish(struct vigie_mqtt *m, void *ud, int mid, int status)
{
	struct post_link *l = ud;
	struct vigie_post *p = l->p;

	(void)m;
	if (l->up && mid == l->birth_mid) {
		l->birth_mid = 0;
		announce(p, l);
		return;
	}
	if (p->close_waiting && mid == l->offline_mid) {
		l->offline_acked = true;
		/* Not from inside libmosquitto's callback: next loop turn. */
		uv_timer_start(&p->tick, close_wait_cb, 0, 0);
		return;
	}
	for (size_t i = 0; i < p->q.len; i++) {
		struct post_entry *e = p->q.v[i];

		if (e->ack == POST_ACK_NONE || e->ack_mid[l->index] != mid)
			continue;
		if (status && e->ack == POST_ACK_PENDING) {
			/* Refused (not authorised): the ack stays pending, and
			 * the relay keeps re-sending, so nobody believes the
			 * police answered. */
			vigie_log_error("ack %s: the broker refused it: %s",
					e->d.id, vigie_strerror(status));
			return;
		}
		for (size_t j = 0; j < p->n_links; j++)
			e->ack_mid[j] = 0;
		if (status || e->ack_told)
			return;
		e->ack_told = true;
		p->st.acks_sent++;
		vigie_log_info("ack %s: the broker has it", e->d.id);
		/* A broker that confirms once it has stored the message (as
		 * RabbitMQ does) can be slower than the relay, whose Incident
		 * may have made the entry CONFIRMED already: it stays so. The
		 * entry moves when the queue re-sorts: stop here. */
		if (e->ack == POST_ACK_PENDING)
			vigie__postq_set_ack(&p->q, e, POST_ACK_SENT, NULL, 0,
					     vigie_clock_mono_ms());
		if (p->ev.on_ack)
			p->ev.on_ack(p->ud, e);
		changed(p);
		return;
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct vigie_post *p = t->data;
	uint64_t now = vigie_clock_mono_ms();

	if (vigie__postq_prune(&p->q, now, p->cfg->keep_acked_ms))
		changed(p);
	if (!p->up)
		return;
	for (size_t i = 0; i < p->q.len; i++) {
		struct post_entry *e = p->q.v[i];

		bool published = false;

		for (size_t j = 0; j < p->n_links; j++)
			published = published || e->ack_mid[j] != 0;
		if (e->ack == POST_ACK_PENDING &&
		    (!published || now - e->ack_sent_ms >= ACK_RETRY_MS))
			publish_ack(p, e);
	}
}

/* One central connection: the same session name, will and subscriptions
 * on each broker. */
static int open_link(struct vigie_post *p, const struct vigie_conf_broker *b,
		     const char *name)
{
	static const struct vigie_mqtt_callbacks cbs = {
		.on_connect = on_connect,
		.on_disconnect = on_disconnect,
		.on_message = on_message,
		.on_publish = on_publish,
	};
	const struct post_config *cfg = p->cfg;
	struct post_link *l = &p->links[p->n_links];
	struct vigie_mqtt_options o;
	char client_id[VIGIE_ID_MAX + 16];
	int rc;

	memset(&o, 0, sizeof(o));
	snprintf(client_id, sizeof(client_id), "vigie-post-%s", cfg->post);
	vigie_conf_broker_apply(b, &o);
	o.client_id = client_id;
	o.clean_start = false;
	o.session_expiry_s =
		cfg->session_expiry_ms / 1000 > UINT32_MAX
			? UINT32_MAX
			: (uint32_t)(cfg->session_expiry_ms / 1000);
	o.will_topic = p->topic_state;
	o.will_payload = p->will;
	o.will_len = p->will_len;
	o.will_qos = 1;
	o.will_retain = true;
	o.reconnect_min_ms = 100;
	o.reconnect_max_ms = 5000;
	o.name = name;
	/* With a standby, a hung central is left within one keepalive. */
	if (cfg->has_standby)
		o.connect_timeout_ms = (uint32_t)b->keepalive_s * 1000;
	l->p = p;
	l->index = (unsigned)p->n_links;
	rc = vigie_mqtt_open(p->loop, &o, &cbs, l, &l->mqtt);
	if (rc)
		return rc;
	p->n_links++;
	rc = vigie_mqtt_subscribe(l->mqtt, p->topic_dispatch, 1);
	/* Incidents at QoS 0: the retained copy gives the current state at
	 * every (re)subscribe, so nothing needs queueing while we are away. */
	if (!rc && cfg->follow_incidents)
		rc = vigie_mqtt_subscribe(l->mqtt, INCIDENT_TOPICS, 0);
	return rc;
}

int vigie__post_open(uv_loop_t *loop, const struct post_config *cfg,
		     const struct post_events *ev, void *ud,
		     struct vigie_post **out)
{
	struct vigie_post *p;
	int rc;

	p = calloc(1, sizeof(*p));
	if (!p)
		return VIGIE_ENOMEM;
	p->loop = loop;
	p->cfg = cfg;
	p->ud = ud;
	if (ev)
		p->ev = *ev;
	vigie__postq_init(&p->q, (size_t)cfg->max_dispatches);
	if (vigie_topic_build(p->topic_dispatch, sizeof(p->topic_dispatch),
			      VIGIE_TOPIC_DISPATCH, cfg->post, NULL) ||
	    vigie_topic_build(p->topic_ack, sizeof(p->topic_ack),
			      VIGIE_TOPIC_ACK, cfg->post, NULL) ||
	    vigie_topic_build(p->topic_state, sizeof(p->topic_state),
			      VIGIE_TOPIC_POST_STATE, cfg->post, NULL)) {
		rc = VIGIE_EINVAL;
		goto out_free;
	}
	/* The will is fixed at connect: its time is when the post started. */
	rc = vigie__postmsg_state_pack(
		cfg->post, VIGIE__V1__POST_STATUS__POST_OFFLINE, cfg->name,
		"lwt", vigie_clock_now_us(), &p->will, &p->will_len);
	if (rc)
		goto out_free;
	rc = open_link(p, &cfg->broker,
		       cfg->has_standby ? "primary" : "central");
	if (!rc && cfg->has_standby)
		rc = open_link(p, &cfg->standby, "standby");
	if (rc) {
		for (size_t i = 0; i < p->n_links; i++)
			vigie_mqtt_close(p->links[i].mqtt, NULL, NULL);
		goto out_free;
	}
	uv_timer_init(loop, &p->tick);
	p->tick.data = p;
	*out = p;
	return 0;
out_free:
	vigie_log_error("post %s: setup failed: %s", cfg->post,
			vigie_strerror(rc));
	vigie__postq_free(&p->q);
	free(p->will);
	free(p);
	return rc;
}

int vigie__post_start(struct vigie_post *p)
{
	vigie_log_info("post %s (%s): connecting to %s:%d as %s", p->cfg->post,
		       p->cfg->name, p->cfg->broker.host, p->cfg->broker.port,
		       p->cfg->broker.username ? p->cfg->broker.username
					       : "(anonymous)");
	if (p->cfg->has_standby)
		vigie_log_info("post %s: standby central broker %s:%d held "
			       "as well",
			       p->cfg->post, p->cfg->standby.host,
			       p->cfg->standby.port);
	uv_timer_start(&p->tick, tick_cb, TICK_MS, TICK_MS);
	for (size_t i = 0; i < p->n_links; i++) {
		int rc = vigie_mqtt_start(p->links[i].mqtt);

		if (rc)
			return rc;
	}
	return 0;
}

int vigie__post_ack(struct vigie_post *p, const char *id, const char *by,
		    char *err, size_t errlen)
{
	struct post_entry *e = vigie__postq_find(&p->q, id);
	int rc;

	if (!e) {
		snprintf(err, errlen, "no dispatch %s in the queue", id);
		return VIGIE_ENOTFOUND;
	}
	if (!vigie__postmsg_operator_valid(by)) {
		snprintf(err, errlen,
			 "operator name: expected 1 to %d bytes without "
			 "control characters",
			 POST_NAME_MAX);
		return VIGIE_EINVAL;
	}
	if (e->ack == POST_ACK_PENDING) {
		snprintf(err, errlen,
			 "dispatch %s: acknowledgement already being sent", id);
		return VIGIE_EINVAL;
	}
	if (e->ack >= POST_ACK_SENT) {
		snprintf(err, errlen, "dispatch %s: already acknowledged", id);
		return VIGIE_EINVAL;
	}
	rc = vigie__postq_set_ack(&p->q, e, POST_ACK_PENDING, by,
				  vigie_clock_now_us(), vigie_clock_mono_ms());
	if (rc) {
		snprintf(err, errlen, "%s", vigie_strerror(rc));
		return rc;
	}
	publish_ack(p, e);
	changed(p);
	return 0;
}

const struct post_queue *vigie__post_queue(const struct vigie_post *p)
{
	return &p->q;
}

void vigie__post_stats(const struct vigie_post *p, struct post_stats *st)
{
	*st = p->st;
}

bool vigie__post_connected(const struct vigie_post *p)
{
	return p->up;
}

static void close_step(void *arg)
{
	struct vigie_post *p = arg;

	if (--p->closes_pending > 0)
		return;
	vigie__postq_free(&p->q);
	free(p->will);
	if (p->close_cb)
		p->close_cb(p->close_arg);
	free(p);
}

static void on_tick_closed(uv_handle_t *h)
{
	close_step(h->data);
}

static void close_now(struct vigie_post *p)
{
	p->close_waiting = false;
	p->closes_pending = 1 + (int)p->n_links;
	uv_timer_stop(&p->tick);
	uv_close((uv_handle_t *)&p->tick, on_tick_closed);
	for (size_t i = 0; i < p->n_links; i++)
		vigie_mqtt_close(p->links[i].mqtt, close_step, p);
}

/* Closed once every connected central has stored the OFFLINE state (or
 * at CLOSE_WAIT_MS). */
static void close_wait_cb(uv_timer_t *t)
{
	struct vigie_post *p = t->data;
	uint64_t now = vigie_clock_mono_ms();

	if (!p->close_waiting)
		return;
	for (size_t i = 0; i < p->n_links; i++) {
		const struct post_link *l = &p->links[i];

		if (l->up && l->offline_mid && !l->offline_acked &&
		    now < p->close_deadline_ms) {
			uv_timer_start(&p->tick, close_wait_cb,
				       p->close_deadline_ms - now, 0);
			return;
		}
	}
	close_now(p);
}

void vigie__post_close(struct vigie_post *p, void (*cb)(void *arg), void *arg)
{
	if (p->closing)
		return;
	p->closing = true;
	p->close_cb = cb;
	p->close_arg = arg;
	uv_timer_stop(&p->tick);
	for (size_t i = 0; i < p->q.len; i++)
		if (p->q.v[i]->ack == POST_ACK_PENDING)
			vigie_log_warn("ack %s not confirmed by the broker at "
				       "shutdown: the relay keeps re-sending "
				       "the dispatch",
				       p->q.v[i]->d.id);
	/* Announced and retained, so the relay and dashboards tell a post
	 * that was closed from one that vanished (the will says "lwt").
	 * Disconnect only once the broker has it: libmosquitto closes the
	 * socket right after writing DISCONNECT, and with a PUBACK still
	 * unread the kernel sends RST, the broker may drop the unread
	 * OFFLINE and DISCONNECT, and publishes the will instead. Reading
	 * up to our own PUBACK empties the socket first. Dispatches that
	 * arrive meanwhile are still handled (the front end closes after
	 * us). */
	for (size_t i = 0; i < p->n_links; i++) {
		struct post_link *l = &p->links[i];

		if (l->up &&
		    publish_state(p, l, VIGIE__V1__POST_STATUS__POST_OFFLINE,
				  "shutdown", &l->offline_mid) == 0)
			p->close_waiting = true;
	}
	if (p->close_waiting) {
		p->close_deadline_ms = vigie_clock_mono_ms() + CLOSE_WAIT_MS;
		uv_timer_start(&p->tick, close_wait_cb, CLOSE_WAIT_MS, 0);
		return;
	}
	close_now(p);
}
