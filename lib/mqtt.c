/* libmosquitto driven from a libuv loop (see include/vigie/mqtt.h).
 *
 * One `struct conn` wraps the uv_poll of one socket. libmosquitto closes the
 * socket itself before it calls on_disconnect, so the poll of a dead socket
 * is stopped and closed right there, and each new connection gets a new poll
 * on its new fd. Callbacks of libmosquitto run inside mosquitto_loop_read /
 * _write / _misc; nothing is freed from inside them, only in uv_close
 * callbacks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/mqtt.h"

enum mstate {
	ST_IDLE,       /* created, not started */
	ST_CONNECTING, /* socket or probe in progress, no CONNACK yet */
	ST_CONNECTED,
	ST_WAITING, /* reconnect timer armed */
	ST_STOPPED,
	ST_CLOSING,
};

struct conn {
	uv_poll_t poll;
	struct vigie_mqtt *m;
	int events;
};

struct sub {
	char *pattern;
	int qos;
	int mid;      /* of the SUBSCRIBE in flight, 0: none */
	bool refused; /* the broker's last SUBACK refused it */
};

/* Probe of a host before a blocking connect; see connect_now(). */
struct probe {
	uv_getaddrinfo_t gai;
	uv_tcp_t tcp;
	uv_connect_t req;
	struct vigie_mqtt *m; /* NULL once cancelled */
	int refs;             /* the getaddrinfo request, then the tcp handle */
	int tcp_inited;
};

struct vigie_mqtt {
	uv_loop_t *loop;
	struct mosquitto *mosq;
	uv_timer_t misc_timer;
	uv_timer_t reconnect_timer;
	uv_timer_t connect_timer; /* bounds an attempt that hangs */
	uv_timer_t write_timer;   /* see the TLS note in poll_cb() */
	struct conn *conn;
	struct probe *probe;
	enum mstate state;
	struct vigie_mqtt_callbacks cb;
	void *ud;

	char *host, *client_id, *username, *password, *name;
	char *cafile, *capath, *certfile, *keyfile;
	int port, keepalive_s;
	bool clean_start, tls_insecure;
	uint32_t session_expiry_s;
	enum vigie_mqtt_protocol protocol;
	int proto_try; /* protocol of the current attempt: 5 or 4 */
	int proto_in_use;
	bool got_connack;
	bool has_connect_props; /* libmosquitto holds CONNECT properties */
	uint32_t reconnect_min_ms, reconnect_max_ms;
	uint32_t connect_timeout_ms;
	unsigned attempt;
	int write_stalls;

	struct sub *subs;
	size_t n_subs;

	int inflight;      /* QoS>0 publishes not yet acknowledged */
	int dispatching;   /* depth of mosquitto_loop_* calls on the stack */
	bool stop_pending; /* finish the disconnect once outside libmosquitto */
	bool draining;     /* stopping: waiting for in-flight PUBACKs */
	bool was_connected; /* at the stop: report on_disconnect(0) */
	bool close_requested;
	int handles_open;
	void (*close_cb)(void *arg);
	void *close_arg;
};

/* Connect attempts that neither succeed nor fail (a SYN into the void, a
 * broker that accepts TCP but never answers CONNECT) end after this unless
 * the options say otherwise. */
#define CONNECT_TIMEOUT_MS 10000
/* A misc tick each second drives PINGREQ and keepalive checks, whose
 * granularity in libmosquitto is one second anyway. */
#define MISC_INTERVAL_MS 1000
#define READ_BATCH       256
/* A clean stop waits this long at most for in-flight QoS 1 PUBACKs. */
#define DRAIN_TIMEOUT_MS 2000

static void schedule_reconnect(struct vigie_mqtt *m);
static void connect_now(struct vigie_mqtt *m);
static void connect_timeout_cb(uv_timer_t *t);
static void cancel_probe(struct vigie_mqtt *m);
static void restart_poll(struct conn *c);
static void finish_stop(struct vigie_mqtt *m);

/* Every call into libmosquitto's loop goes through here. Its callbacks run
 * inside these calls with libmosquitto's callback lock held, so a stop
 * asked for from a callback must not write (writing a DISCONNECT runs the
 * disconnect callback under that same lock): it is finished here, once the
 * call returned. */
enum loop_call { CALL_READ, CALL_WRITE, CALL_MISC };

static void call_loop(struct vigie_mqtt *m, enum loop_call what)
{
	m->dispatching++;
	if (what == CALL_READ)
		mosquitto_loop_read(m->mosq, READ_BATCH);
	else if (what == CALL_WRITE)
		mosquitto_loop_write(m->mosq, READ_BATCH);
	else
		mosquitto_loop_misc(m->mosq);
	m->dispatching--;
	if (!m->dispatching && m->stop_pending) {
		m->stop_pending = false;
		finish_stop(m);
	}
}

static char *dup_opt(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int translate(int mosq_rc)
{
	switch (mosq_rc) {
	case MOSQ_ERR_SUCCESS:
		return 0;
	case MOSQ_ERR_NOMEM:
		return VIGIE_ENOMEM;
	case MOSQ_ERR_INVAL:
	case MOSQ_ERR_MALFORMED_UTF8:
	case MOSQ_ERR_QOS_NOT_SUPPORTED:
		return VIGIE_EINVAL;
	case MOSQ_ERR_NO_CONN:
	case MOSQ_ERR_CONN_LOST:
	case MOSQ_ERR_KEEPALIVE:
		return VIGIE_ENOCONN;
	case MOSQ_ERR_TLS:
	case MOSQ_ERR_TLS_HANDSHAKE:
		return VIGIE_ETLS;
	case MOSQ_ERR_PAYLOAD_SIZE:
	case MOSQ_ERR_OVERSIZE_PACKET:
		return VIGIE_ETOOBIG;
	case MOSQ_ERR_AUTH:
	case MOSQ_ERR_ACL_DENIED:
	case MOSQ_ERR_CONN_REFUSED:
		return VIGIE_EAUTH;
	case MOSQ_ERR_ERRNO:
		return VIGIE_ESYS;
	default:
		return VIGIE_EPROTO;
	}
}

static void on_handle_closed(uv_handle_t *h)
{
	struct vigie_mqtt *m = h->data;

	if (--m->handles_open > 0)
		return;
	/* Last handle gone: nothing on the loop points at `m` any more. */
	mosquitto_destroy(m->mosq);
	for (size_t i = 0; i < m->n_subs; i++)
		free(m->subs[i].pattern);
	free(m->subs);
	free(m->host);
	free(m->client_id);
	free(m->username);
	free(m->password);
	free(m->name);
	free(m->cafile);
	free(m->capath);
	free(m->certfile);
	free(m->keyfile);
	if (m->close_cb)
		m->close_cb(m->close_arg);
	free(m);
}

static void on_conn_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Stop watching the socket. libmosquitto owns the fd: it is already closed
 * when this runs from on_disconnect, or it is closed later by
 * mosquitto__reconnect / mosquitto_destroy, never while the poll still
 * watches it. */
static void detach(struct vigie_mqtt *m)
{
	struct conn *c = m->conn;

	if (!c)
		return;
	m->conn = NULL;
	c->poll.data = c;
	uv_close((uv_handle_t *)&c->poll, on_conn_closed);
	uv_timer_stop(&m->misc_timer);
	uv_timer_stop(&m->write_timer);
}

static void update_poll(struct vigie_mqtt *m)
{
	struct conn *c = m->conn;
	int events = UV_READABLE;

	if (!c)
		return;
	/* Writable interest only while libmosquitto has bytes queued: a socket
	 * is nearly always writable, so watching it otherwise spins the loop.
	 */
	if (mosquitto_want_write(m->mosq) &&
	    !uv_is_active((uv_handle_t *)&m->write_timer))
		events |= UV_WRITABLE;
	if (events != c->events) {
		c->events = events;
		restart_poll(c);
	}
}

static void poll_cb(uv_poll_t *h, int status, int events);
static void write_timer_cb(uv_timer_t *t);

static void restart_poll(struct conn *c)
{
	uv_poll_start(&c->poll, c->events, poll_cb);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct conn *c = h->data;
	struct vigie_mqtt *m = c->m;

	if (m->conn != c)
		return;
	if (status < 0) {
		/* Let libmosquitto find and report the socket error. */
		events = UV_READABLE | UV_WRITABLE;
	}
	if (events & UV_WRITABLE) {
		call_loop(m, CALL_WRITE);
		if (m->conn != c)
			return;
		/* During a TLS handshake mosquitto_want_write() stays true even
		 * when there is nothing to write (eclipse/mosquitto issue
		 * 3745): a writable socket would then wake us in a tight loop.
		 * When a write pass leaves want_write set before the CONNACK,
		 * poll for readability only and retry writing on a short timer.
		 */
		if (m->cafile && !m->got_connack &&
		    mosquitto_want_write(m->mosq)) {
			if (++m->write_stalls > 2)
				uv_timer_start(&m->write_timer, write_timer_cb,
					       5, 0);
		} else {
			m->write_stalls = 0;
		}
	}
	if (events & UV_READABLE) {
		call_loop(m, CALL_READ);
		if (m->conn != c)
			return;
		/* What the callbacks published (a dispatch, a PUBACK) leaves
		 * now, not one loop turn later behind whatever else is ready:
		 * libmosquitto only queues a packet from inside a callback. */
		if (m->got_connack && mosquitto_want_write(m->mosq)) {
			call_loop(m, CALL_WRITE);
			if (m->conn != c)
				return;
		}
	}
	update_poll(m);
}

static void write_timer_cb(uv_timer_t *t)
{
	struct vigie_mqtt *m = t->data;

	if (!m->conn)
		return;
	call_loop(m, CALL_WRITE);
	if (!m->conn)
		return;
	if (!m->got_connack && mosquitto_want_write(m->mosq)) {
		uv_timer_start(&m->write_timer, write_timer_cb, 5, 0);
		return;
	}
	m->write_stalls = 0;
	update_poll(m);
}

static void misc_cb(uv_timer_t *t)
{
	struct vigie_mqtt *m = t->data;

	if (!m->conn)
		return;
	call_loop(m, CALL_MISC);
	update_poll(m);
}

static void attach(struct vigie_mqtt *m)
{
	int fd = mosquitto_socket(m->mosq);
	struct conn *c;

	if (fd < 0) {
		schedule_reconnect(m);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || uv_poll_init_socket(m->loop, &c->poll, fd) != 0) {
		free(c);
		vigie_log_error("mqtt %s: cannot watch socket", m->name);
		schedule_reconnect(m);
		return;
	}
	c->m = m;
	c->poll.data = c;
	c->events =
		UV_READABLE | UV_WRITABLE; /* first write completes connect */
	m->conn = c;
	m->write_stalls = 0;
	m->got_connack = false;
	restart_poll(c);
	uv_timer_start(&m->misc_timer, misc_cb, MISC_INTERVAL_MS,
		       MISC_INTERVAL_MS);
}

static void connect_timeout_cb(uv_timer_t *t)
{
	struct vigie_mqtt *m = t->data;

	if (m->state != ST_CONNECTING)
		return;
	vigie_log_warn("mqtt %s: no CONNACK from %s:%d within %u ms (broker "
		       "hung or unreachable)",
		       m->name, m->host, m->port, m->connect_timeout_ms);
	cancel_probe(m);
	detach(m);
	if (m->cb.on_disconnect)
		m->cb.on_disconnect(m, m->ud, VIGIE_ENOCONN);
	if (m->state == ST_CONNECTING)
		schedule_reconnect(m);
}

static void reconnect_cb(uv_timer_t *t)
{
	struct vigie_mqtt *m = t->data;

	if (m->state == ST_WAITING)
		connect_now(m);
}

static void schedule_reconnect(struct vigie_mqtt *m)
{
	uint64_t delay = m->reconnect_min_ms;

	if (m->state == ST_STOPPED || m->state == ST_CLOSING)
		return;
	uv_timer_stop(&m->connect_timer);
	/* Bounded exponential backoff with jitter: a whole museum's nodes that
	 * lose their broker together must not come back in lockstep. */
	for (unsigned i = 0; i < m->attempt && delay < m->reconnect_max_ms; i++)
		delay *= 2;
	if (delay > m->reconnect_max_ms)
		delay = m->reconnect_max_ms;
	delay = delay / 2 + (uint64_t)rand() % (delay / 2 + 1);
	m->attempt++;
	m->state = ST_WAITING;
	uv_timer_start(&m->reconnect_timer, reconnect_cb, delay, 0);
}

static void probe_release(struct probe *p)
{
	if (--p->refs == 0)
		free(p);
}

static void probe_tcp_closed(uv_handle_t *h)
{
	probe_release(h->data);
}

/* Forget the probe in progress; its callbacks then find p->m == NULL. */
static void cancel_probe(struct vigie_mqtt *m)
{
	struct probe *p = m->probe;

	if (!p)
		return;
	m->probe = NULL;
	p->m = NULL;
	if (p->tcp_inited) {
		if (!uv_is_closing((uv_handle_t *)&p->tcp))
			uv_close((uv_handle_t *)&p->tcp, probe_tcp_closed);
	} else {
		uv_cancel((uv_req_t *)&p->gai);
	}
}

/* Connect with the MQTT 5 session expiry interval. libmosquitto 2.0 sends
 * CONNECT properties only from the blocking mosquitto_connect_bind_v5();
 * its async calls send none, and an MQTT 5 session without an expiry ends
 * at disconnect, which would lose what queued for us while we were away.
 * So reachability is first probed without blocking; only when a TCP
 * connection just succeeded does the blocking connect run, and it then
 * completes at once. (libmosquitto makes the socket non-blocking right after
 * the TCP connect, so a TLS handshake still runs on the loop.)
 *
 * libmosquitto keeps those properties for every later connect and refuses
 * any 3.1.1 connect while it holds them (MOSQ_ERR_NOT_SUPPORTED): a
 * fallback to 3.1.1 after such an attempt comes this way too, with none,
 * which clears them. */
static void finish_v5_connect(struct vigie_mqtt *m)
{
	mosquitto_property *props = NULL;
	int rc;

	if (m->proto_try == 5)
		mosquitto_property_add_int32(&props,
					     MQTT_PROP_SESSION_EXPIRY_INTERVAL,
					     m->session_expiry_s);
	m->has_connect_props = props != NULL;
	rc = mosquitto_connect_bind_v5(m->mosq, m->host, m->port,
				       m->keepalive_s, NULL, props);
	mosquitto_property_free_all(&props);
	if (rc != MOSQ_ERR_SUCCESS) {
		vigie_log_warn("mqtt %s: connect to %s:%d: %s", m->name,
			       m->host, m->port,
			       rc == MOSQ_ERR_ERRNO ? strerror(errno)
						    : mosquitto_strerror(rc));
		if (m->cb.on_disconnect)
			m->cb.on_disconnect(m, m->ud, translate(rc));
		schedule_reconnect(m);
		return;
	}
	attach(m);
}

static void probe_connected(uv_connect_t *req, int status)
{
	struct probe *p = req->data;
	struct vigie_mqtt *m = p->m;

	if (!uv_is_closing((uv_handle_t *)&p->tcp))
		uv_close((uv_handle_t *)&p->tcp, probe_tcp_closed);
	if (!m)
		return;
	m->probe = NULL;
	if (status < 0) {
		vigie_log_debug("mqtt %s: %s:%d unreachable: %s", m->name,
				m->host, m->port, uv_strerror(status));
		if (m->cb.on_disconnect)
			m->cb.on_disconnect(m, m->ud, VIGIE_ENOCONN);
		schedule_reconnect(m);
		return;
	}
	finish_v5_connect(m);
}

static void probe_resolved(uv_getaddrinfo_t *req, int status,
			   struct addrinfo *res)
{
	struct probe *p = req->data;
	struct vigie_mqtt *m = p->m;

	if (!m) {
		uv_freeaddrinfo(res);
		probe_release(p);
		return;
	}
	if (status < 0 || !res) {
		vigie_log_warn("mqtt %s: cannot resolve %s: %s", m->name,
			       m->host, uv_strerror(status));
		goto fail;
	}
	if (uv_tcp_init(m->loop, &p->tcp) != 0)
		goto fail;
	p->tcp_inited = 1;
	p->tcp.data = p;
	p->req.data = p;
	/* The getaddrinfo reference passes to the tcp handle. */
	if (uv_tcp_connect(&p->req, &p->tcp, res->ai_addr, probe_connected) !=
	    0) {
		uv_close((uv_handle_t *)&p->tcp, probe_tcp_closed);
		m->probe = NULL;
		uv_freeaddrinfo(res);
		schedule_reconnect(m);
		return;
	}
	uv_freeaddrinfo(res);
	return;
fail:
	uv_freeaddrinfo(res);
	m->probe = NULL;
	probe_release(p);
	schedule_reconnect(m);
}

static void start_probe(struct vigie_mqtt *m)
{
	struct addrinfo hints;
	char port[8];
	struct probe *p = calloc(1, sizeof(*p));

	if (!p) {
		schedule_reconnect(m);
		return;
	}
	p->m = m;
	p->refs = 1;
	p->gai.data = p;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", m->port);
	if (uv_getaddrinfo(m->loop, &p->gai, probe_resolved, m->host, port,
			   &hints) != 0) {
		free(p);
		schedule_reconnect(m);
		return;
	}
	m->probe = p;
	uv_timer_start(&m->connect_timer, connect_timeout_cb,
		       m->connect_timeout_ms, 0);
}

static void connect_now(struct vigie_mqtt *m)
{
	int rc;

	m->state = ST_CONNECTING;
	mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION,
			     m->proto_try == 5 ? MQTT_PROTOCOL_V5
					       : MQTT_PROTOCOL_V311);
	if ((m->proto_try == 5 && !m->clean_start && m->session_expiry_s) ||
	    m->has_connect_props) {
		start_probe(m);
		return;
	}
	rc = mosquitto_connect_bind_async(m->mosq, m->host, m->port,
					  m->keepalive_s, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		vigie_log_debug("mqtt %s: connect to %s:%d: %s", m->name,
				m->host, m->port,
				rc == MOSQ_ERR_ERRNO ? strerror(errno)
						     : mosquitto_strerror(rc));
		if (m->cb.on_disconnect)
			m->cb.on_disconnect(m, m->ud, translate(rc));
		schedule_reconnect(m);
		return;
	}
	attach(m);
	uv_timer_start(&m->connect_timer, connect_timeout_cb,
		       m->connect_timeout_ms, 0);
}

static void on_connect(struct mosquitto *mosq, void *ud, int rc, int flags,
		       const mosquitto_property *props)
{
	struct vigie_mqtt *m = ud;

	(void)mosq;
	(void)props;
	m->got_connack = true;
	if (rc != 0) {
		/* A broker that speaks only 3.1.1 answers an MQTT 5 CONNECT
		 * with "unacceptable protocol version". */
		if (m->protocol == VIGIE_MQTT_AUTO &&
		    (rc == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION ||
		     rc == CONNACK_REFUSED_PROTOCOL_VERSION)) {
			m->proto_try = m->proto_try == 5 ? 4 : 5;
			vigie_log_info("mqtt %s: broker refused the protocol "
				       "version, trying MQTT %s",
				       m->name,
				       m->proto_try == 5 ? "5" : "3.1.1");
			m->attempt = 0;
			return;
		}
		vigie_log_error("mqtt %s: %s:%d refused the connection: %s",
				m->name, m->host, m->port,
				m->proto_try == 5
					? mosquitto_reason_string(rc)
					: mosquitto_connack_string(rc));
		return; /* libmosquitto follows with on_disconnect */
	}
	uv_timer_stop(&m->connect_timer);
	m->state = ST_CONNECTED;
	m->attempt = 0;
	m->inflight = 0;
	m->proto_in_use = m->proto_try;
	vigie_log_info("mqtt %s: connected to %s:%d (MQTT %s%s)", m->name,
		       m->host, m->port, m->proto_try == 5 ? "5" : "3.1.1",
		       (flags & 1) ? ", session resumed" : "");
	for (size_t i = 0; i < m->n_subs; i++)
		mosquitto_subscribe(m->mosq, &m->subs[i].mid,
				    m->subs[i].pattern, m->subs[i].qos);
	if (m->cb.on_connect)
		m->cb.on_connect(m, m->ud, (flags & 1) != 0);
}

/* A SUBACK: a refused subscription (the broker's ACL, mostly) would be
 * silence on that pattern for as long as the process runs, and silence
 * must never look like calm: say it loudly, once per refusal. MQTT 3.1.1
 * says 0x80, MQTT 5 a reason code >= 0x80 (0x87: not authorised). */
static void on_subscribe(struct mosquitto *mosq, void *ud, int mid,
			 int qos_count, const int *granted,
			 const mosquitto_property *props)
{
	struct vigie_mqtt *m = ud;

	(void)mosq;
	(void)props;
	for (size_t i = 0; i < m->n_subs; i++) {
		struct sub *s = &m->subs[i];

		if (s->mid != mid)
			continue;
		s->mid = 0;
		if (qos_count < 1 || granted[0] >= 0x80) {
			if (!s->refused)
				vigie_log_error(
					"mqtt %s: the broker refused our "
					"subscription to %s (code 0x%02x%s): "
					"nothing will arrive on it",
					m->name, s->pattern,
					qos_count < 1 ? 0 : granted[0],
					qos_count >= 1 && granted[0] == 0x87
						? ", not authorised: its ACL?"
						: "");
			s->refused = true;
		} else {
			if (s->refused)
				vigie_log_info("mqtt %s: subscription to %s "
					       "granted now",
					       m->name, s->pattern);
			else if (granted[0] < s->qos)
				vigie_log_warn("mqtt %s: subscription to %s "
					       "granted at QoS %d, not %d",
					       m->name, s->pattern, granted[0],
					       s->qos);
			s->refused = false;
		}
		return;
	}
}

static void on_disconnect(struct mosquitto *mosq, void *ud, int rc,
			  const mosquitto_property *props)
{
	struct vigie_mqtt *m = ud;
	bool was = m->state == ST_CONNECTED;

	(void)mosq;
	(void)props;
	detach(m);
	if (m->state == ST_STOPPED || m->state == ST_CLOSING)
		return;
	/* MQTT 5 against a 3.1.1-only broker may also end in a malformed or
	 * protocol error before any CONNACK, or in the broker closing the
	 * connection without a word (RabbitMQ 3.10): try the other version
	 * next. */
	if (!was && !m->got_connack && m->protocol == VIGIE_MQTT_AUTO &&
	    (rc == MOSQ_ERR_PROTOCOL || rc == MOSQ_ERR_MALFORMED_PACKET ||
	     rc == MOSQ_ERR_CONN_LOST)) {
		m->proto_try = m->proto_try == 5 ? 4 : 5;
		vigie_log_info("mqtt %s: %s:%d closed the connection before "
			       "any CONNACK: trying MQTT %s",
			       m->name, m->host, m->port,
			       m->proto_try == 5 ? "5" : "3.1.1");
	}
	/* libmosquitto 2.0 has no text for MOSQ_ERR_KEEPALIVE. */
	if (was)
		vigie_log_warn("mqtt %s: connection to %s:%d lost: %s", m->name,
			       m->host, m->port,
			       rc == MOSQ_ERR_KEEPALIVE
				       ? "no answer within the keepalive "
					 "(broker hung or link cut)"
				       : mosquitto_strerror(rc));
	if (m->cb.on_disconnect)
		m->cb.on_disconnect(m, m->ud,
				    rc ? translate(rc) : VIGIE_ENOCONN);
	schedule_reconnect(m);
}

static void on_message(struct mosquitto *mosq, void *ud,
		       const struct mosquitto_message *msg,
		       const mosquitto_property *props)
{
	struct vigie_mqtt *m = ud;

	(void)mosq;
	(void)props;
	if (m->cb.on_message && m->state == ST_CONNECTED)
		m->cb.on_message(m, m->ud, msg->topic, msg->payload,
				 (size_t)msg->payloadlen, msg->qos,
				 msg->retain);
}

static void on_publish(struct mosquitto *mosq, void *ud, int mid, int rc,
		       const mosquitto_property *props)
{
	struct vigie_mqtt *m = ud;

	(void)mosq;
	(void)props;
	if (rc >= 128)
		vigie_log_warn("mqtt %s: broker refused message %d: %s",
			       m->name, mid, mosquitto_reason_string(rc));
	if (m->inflight > 0)
		m->inflight--;
	if (m->cb.on_publish)
		m->cb.on_publish(m, m->ud, mid, rc >= 128 ? VIGIE_EAUTH : 0);
	if (m->draining && m->inflight == 0) {
		/* Everything we sent is acknowledged: nothing more will come
		 * back for it, so the close cannot race an unread PUBACK. */
		m->draining = false;
		uv_timer_stop(&m->connect_timer);
		finish_stop(m);
	}
}

static void on_log(struct mosquitto *mosq, void *ud, int level, const char *s)
{
	struct vigie_mqtt *m = ud;

	(void)mosq;
	if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING))
		vigie_log_warn("mqtt %s: libmosquitto: %s", m->name, s);
}

static int setup(struct vigie_mqtt *m, const struct vigie_mqtt_options *o)
{
	int rc;

	m->mosq = mosquitto_new(m->client_id, m->clean_start, m);
	if (!m->mosq)
		return errno == EINVAL ? VIGIE_EINVAL : VIGIE_ENOMEM;
	mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_int_option(m->mosq, MOSQ_OPT_SEND_MAXIMUM,
			     o->max_inflight > 0 ? o->max_inflight : 1000);
	mosquitto_connect_v5_callback_set(m->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(m->mosq, on_disconnect);
	mosquitto_message_v5_callback_set(m->mosq, on_message);
	mosquitto_publish_v5_callback_set(m->mosq, on_publish);
	mosquitto_subscribe_v5_callback_set(m->mosq, on_subscribe);
	mosquitto_log_callback_set(m->mosq, on_log);
	if (m->username) {
		rc = mosquitto_username_pw_set(m->mosq, m->username,
					       m->password);
		if (rc)
			return translate(rc);
	}
	if (o->will_topic) {
		rc = mosquitto_will_set(m->mosq, o->will_topic,
					(int)o->will_len, o->will_payload,
					o->will_qos, o->will_retain);
		if (rc) {
			vigie_log_error("mqtt %s: invalid will: %s", m->name,
					mosquitto_strerror(rc));
			return translate(rc);
		}
	}
	if (m->cafile || m->capath) {
		rc = mosquitto_tls_set(m->mosq, m->cafile, m->capath,
				       m->certfile, m->keyfile, NULL);
		if (rc) {
			vigie_log_error(
				"mqtt %s: TLS setup (ca %s, cert %s): %s",
				m->name, m->cafile ? m->cafile : m->capath,
				m->certfile ? m->certfile : "none",
				mosquitto_strerror(rc));
			return VIGIE_ETLS;
		}
		if (m->tls_insecure)
			mosquitto_tls_insecure_set(m->mosq, true);
	}
	return 0;
}

int vigie_mqtt_open(uv_loop_t *loop, const struct vigie_mqtt_options *o,
		    const struct vigie_mqtt_callbacks *cb, void *ud,
		    struct vigie_mqtt **out)
{
	struct vigie_mqtt *m;
	int rc;

	if (!loop || !o || !o->host || !*o->host || o->port <= 0 ||
	    o->port > 65535 || !o->client_id || !*o->client_id) {
		vigie_log_error("mqtt: host, port (1-65535) and client id are "
				"required");
		return VIGIE_EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return VIGIE_ENOMEM;
	m->loop = loop;
	m->cb = *cb;
	m->ud = ud;
	m->host = dup_opt(o->host);
	m->client_id = dup_opt(o->client_id);
	m->username = dup_opt(o->username);
	m->password = dup_opt(o->password);
	m->name = dup_opt(o->name ? o->name : o->client_id);
	m->cafile = dup_opt(o->tls.cafile);
	m->capath = dup_opt(o->tls.capath);
	m->certfile = dup_opt(o->tls.certfile);
	m->keyfile = dup_opt(o->tls.keyfile);
	m->tls_insecure = o->tls.insecure;
	m->port = o->port;
	m->keepalive_s = o->keepalive_s >= 5 ? o->keepalive_s : 10;
	m->clean_start = o->clean_start;
	m->session_expiry_s = o->session_expiry_s;
	m->protocol = o->protocol;
	m->proto_try = o->protocol == VIGIE_MQTT_V311 ? 4 : 5;
	m->reconnect_min_ms = o->reconnect_min_ms ? o->reconnect_min_ms : 100;
	m->reconnect_max_ms = o->reconnect_max_ms ? o->reconnect_max_ms : 5000;
	if (m->reconnect_max_ms < m->reconnect_min_ms)
		m->reconnect_max_ms = m->reconnect_min_ms;
	m->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms
						      : CONNECT_TIMEOUT_MS;
	if (!m->host || !m->client_id || !m->name) {
		rc = VIGIE_ENOMEM;
		goto out_free;
	}
	rc = setup(m, o);
	if (rc)
		goto out_free;
	uv_timer_init(loop, &m->misc_timer);
	uv_timer_init(loop, &m->reconnect_timer);
	uv_timer_init(loop, &m->connect_timer);
	uv_timer_init(loop, &m->write_timer);
	m->misc_timer.data = m->reconnect_timer.data = m;
	m->connect_timer.data = m->write_timer.data = m;
	m->handles_open = 4;
	*out = m;
	return 0;
out_free:
	if (m->mosq)
		mosquitto_destroy(m->mosq);
	free(m->host);
	free(m->client_id);
	free(m->username);
	free(m->password);
	free(m->name);
	free(m->cafile);
	free(m->capath);
	free(m->certfile);
	free(m->keyfile);
	free(m);
	return rc;
}

int vigie_mqtt_start(struct vigie_mqtt *m)
{
	if (m->state != ST_IDLE && m->state != ST_STOPPED)
		return m->state == ST_CLOSING ? VIGIE_ECLOSED : 0;
	m->attempt = 0;
	connect_now(m);
	return 0;
}

int vigie_mqtt_subscribe(struct vigie_mqtt *m, const char *pattern, int qos)
{
	struct sub *subs;
	int rc;

	if (!pattern ||
	    mosquitto_sub_topic_check(pattern) != MOSQ_ERR_SUCCESS || qos < 0 ||
	    qos > 2)
		return VIGIE_EINVAL;
	subs = realloc(m->subs, (m->n_subs + 1) * sizeof(*subs));
	if (!subs)
		return VIGIE_ENOMEM;
	m->subs = subs;
	subs[m->n_subs].pattern = strdup(pattern);
	if (!subs[m->n_subs].pattern)
		return VIGIE_ENOMEM;
	subs[m->n_subs].qos = qos;
	subs[m->n_subs].mid = 0;
	subs[m->n_subs].refused = false;
	m->n_subs++;
	if (m->state != ST_CONNECTED)
		return 0;
	rc = mosquitto_subscribe(m->mosq, &subs[m->n_subs - 1].mid, pattern,
				 qos);
	update_poll(m);
	return translate(rc);
}

int vigie_mqtt_unsubscribe(struct vigie_mqtt *m, const char *pattern)
{
	int rc;

	if (!pattern || mosquitto_sub_topic_check(pattern) != MOSQ_ERR_SUCCESS)
		return VIGIE_EINVAL;
	for (size_t i = 0; i < m->n_subs; i++) {
		if (strcmp(m->subs[i].pattern, pattern) != 0)
			continue;
		free(m->subs[i].pattern);
		m->subs[i] = m->subs[--m->n_subs];
		break;
	}
	if (m->state != ST_CONNECTED)
		return VIGIE_ENOCONN;
	rc = mosquitto_unsubscribe(m->mosq, NULL, pattern);
	update_poll(m);
	return translate(rc);
}

int vigie_mqtt_publish(struct vigie_mqtt *m, const char *topic,
		       const void *payload, size_t len, int qos, bool retain,
		       int *mid)
{
	int rc;

	if (m->state != ST_CONNECTED)
		return VIGIE_ENOCONN;
	if (len > INT32_MAX)
		return VIGIE_ETOOBIG;
	rc = mosquitto_publish(m->mosq, mid, topic, (int)len, payload, qos,
			       retain);
	if (rc == MOSQ_ERR_NO_CONN && qos > 0) {
		/* libmosquitto has queued it anyway and will send it after the
		 * reconnect: report success so the caller does not send it a
		 * second time. */
		return 0;
	}
	if (rc == MOSQ_ERR_SUCCESS && qos > 0)
		m->inflight++;
	update_poll(m);
	return translate(rc);
}

bool vigie_mqtt_connected(const struct vigie_mqtt *m)
{
	return m->state == ST_CONNECTED;
}

int vigie_mqtt_protocol_in_use(const struct vigie_mqtt *m)
{
	return m->proto_in_use;
}

const char *vigie_mqtt_name(const struct vigie_mqtt *m)
{
	return m->name;
}

static void close_handles(struct vigie_mqtt *m)
{
	m->state = ST_CLOSING;
	uv_close((uv_handle_t *)&m->misc_timer, on_handle_closed);
	uv_close((uv_handle_t *)&m->reconnect_timer, on_handle_closed);
	uv_close((uv_handle_t *)&m->connect_timer, on_handle_closed);
	uv_close((uv_handle_t *)&m->write_timer, on_handle_closed);
}

/* The end of a stop: read what the broker already sent (closing a socket
 * with unread data sends a RST, and the broker then discards our DISCONNECT
 * unread and publishes the will: a clean stop announced as a death), send
 * DISCONNECT, stop watching the socket. */
static void finish_stop(struct vigie_mqtt *m)
{
	bool was = m->was_connected;

	if (m->dispatching) {
		m->stop_pending = true;
		return;
	}
	m->was_connected = false;
	if (m->conn && was) {
		call_loop(m, CALL_READ);
		if (m->conn) {
			mosquitto_disconnect(m->mosq);
			call_loop(m, CALL_WRITE);
		}
	}
	detach(m);
	if (was && m->cb.on_disconnect)
		m->cb.on_disconnect(m, m->ud, 0);
	if (m->close_requested && m->state != ST_CLOSING)
		close_handles(m);
}

static void drain_timeout_cb(uv_timer_t *t)
{
	struct vigie_mqtt *m = t->data;

	if (!m->draining)
		return;
	vigie_log_warn(
		"mqtt %s: %d message(s) still unacknowledged at the stop",
		m->name, m->inflight);
	m->draining = false;
	finish_stop(m);
}

void vigie_mqtt_stop(struct vigie_mqtt *m)
{
	if (m->state == ST_STOPPED || m->state == ST_CLOSING)
		return;
	m->was_connected = m->state == ST_CONNECTED;
	m->state = ST_STOPPED;
	uv_timer_stop(&m->reconnect_timer);
	uv_timer_stop(&m->connect_timer);
	cancel_probe(m);
	if (m->was_connected && m->inflight > 0) {
		/* Let the broker acknowledge what we just sent (a last state,
		 * an ack) before the DISCONNECT. */
		m->draining = true;
		uv_timer_start(&m->connect_timer, drain_timeout_cb,
			       DRAIN_TIMEOUT_MS, 0);
		return;
	}
	finish_stop(m);
}

void vigie_mqtt_close(struct vigie_mqtt *m, void (*cb)(void *arg), void *arg)
{
	if (!m || m->close_requested)
		return;
	m->close_requested = true;
	m->close_cb = cb;
	m->close_arg = arg;
	if (m->state != ST_STOPPED)
		vigie_mqtt_stop(m);
	/* Otherwise finish_stop() closes the handles once the stop is done. */
	if (!m->draining && !m->stop_pending && m->state != ST_CLOSING)
		close_handles(m);
}

void vigie_mqtt_lib_init(void)
{
	mosquitto_lib_init();
}

void vigie_mqtt_lib_cleanup(void)
{
	mosquitto_lib_cleanup();
}

size_t vigie_mqtt_refused_subscriptions(const struct vigie_mqtt *m)
{
	size_t n = 0;

	for (size_t i = 0; i < m->n_subs; i++)
		n += m->subs[i].refused;
	return n;
}
