/* An MQTT client driven by a libuv loop.
 *
 * libmosquitto does the protocol; this module drives it from the caller's
 * loop (one uv_poll on the socket, writable interest only while
 * mosquitto_want_write(), a timer for mosquitto_loop_misc) and reconnects on
 * its own timer with bounded exponential backoff and jitter. Subscriptions are
 * remembered and renewed on every connect. MQTT 5 is tried first; a broker
 * that refuses the protocol version is retried with 3.1.1. */
#ifndef VIGIE_MQTT_H
#define VIGIE_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct vigie_mqtt;

enum vigie_mqtt_protocol {
	VIGIE_MQTT_AUTO = 0, /* 5, falling back to 3.1.1 */
	VIGIE_MQTT_V5 = 5,
	VIGIE_MQTT_V311 = 4,
};

struct vigie_mqtt_tls {
	const char *cafile; /* NULL: no TLS */
	const char *capath;
	const char *certfile; /* client certificate, optional */
	const char *keyfile;
	bool insecure; /* skip host name check (tests only) */
};

struct vigie_mqtt_options {
	const char *host;
	int port;
	const char *client_id;
	const char *username;      /* optional */
	const char *password;      /* optional */
	int keepalive_s;           /* default 10 */
	bool clean_start;          /* false: persistent session */
	uint32_t session_expiry_s; /* MQTT 5 session expiry when !clean_start */
	enum vigie_mqtt_protocol protocol;
	/* Last will; topic NULL for none. */
	const char *will_topic;
	const void *will_payload;
	size_t will_len;
	int will_qos;
	bool will_retain;
	struct vigie_mqtt_tls tls;
	uint32_t reconnect_min_ms; /* default 100 */
	uint32_t reconnect_max_ms; /* default 5000 */
	int max_inflight;          /* default 1000 */
	const char *name;          /* for log lines, e.g. "primary" */
	/* An attempt with no CONNACK after this is abandoned and retried
	 * (default 10000). A hung broker (SIGSTOPped, or a wedged host whose
	 * kernel still accepts) takes the TCP connection and never answers:
	 * only this ends the attempt. Once connected, a broker that stops
	 * answering is noticed by the keepalive: a PINGREQ goes out once
	 * nothing came in for keepalive_s, and no PINGRESP within another
	 * keepalive_s ends the connection (libmosquitto's MOSQ_ERR_KEEPALIVE,
	 * reported to on_disconnect as VIGIE_ENOCONN): about 2 keepalives. */
	uint32_t connect_timeout_ms;
};

struct vigie_mqtt_callbacks {
	/* Connected (CONNACK success). The remembered subscriptions have been
	 * sent again; their SUBACKs follow. */
	void (*on_connect)(struct vigie_mqtt *m, void *ud,
			   bool session_present);
	/* The connection is gone (or an attempt failed); a reconnect is
	 * scheduled. `reason` is a VIGIE_E* code, 0 after our own disconnect.
	 */
	void (*on_disconnect)(struct vigie_mqtt *m, void *ud, int reason);
	void (*on_message)(struct vigie_mqtt *m, void *ud, const char *topic,
			   const void *payload, size_t len, int qos,
			   bool retain);
	/* A QoS 1/2 publish was acknowledged by the broker (one hop only):
	 * status 0, or VIGIE_EAUTH when the broker refused it (MQTT 5 reason
	 * code >= 0x80, e.g. not authorised). */
	void (*on_publish)(struct vigie_mqtt *m, void *ud, int mid, int status);
};

/* vigie_mqtt_open: create a client bound to `loop`. Strings in `opt` are
 * copied. Nothing connects until vigie_mqtt_start(). Returns 0, VIGIE_EINVAL
 * (bad options, named in the log), VIGIE_ETLS or VIGIE_ENOMEM. */
int vigie_mqtt_open(uv_loop_t *loop, const struct vigie_mqtt_options *opt,
		    const struct vigie_mqtt_callbacks *cb, void *ud,
		    struct vigie_mqtt **out);

/* vigie_mqtt_start: begin connecting; failures are retried with backoff. */
int vigie_mqtt_start(struct vigie_mqtt *m);

/* vigie_mqtt_subscribe: remember `pattern` and subscribe now if connected.
 * Returns 0 or VIGIE_E*. */
int vigie_mqtt_subscribe(struct vigie_mqtt *m, const char *pattern, int qos);

/* vigie_mqtt_refused_subscriptions: how many remembered subscriptions the
 * broker's last SUBACK for them refused (each refusal is logged as an
 * error when it comes). */
size_t vigie_mqtt_refused_subscriptions(const struct vigie_mqtt *m);

/* vigie_mqtt_unsubscribe: forget `pattern` (no longer subscribed at
 * reconnects) and, if connected, send an UNSUBSCRIBE for it now. Also for
 * a pattern never given to vigie_mqtt_subscribe: a persistent session may
 * hold a subscription of an earlier run. Returns 0, VIGIE_ENOCONN when not
 * connected (nothing sent), or VIGIE_E*. */
int vigie_mqtt_unsubscribe(struct vigie_mqtt *m, const char *pattern);

/* vigie_mqtt_publish: publish now. Returns VIGIE_ENOCONN when not connected
 * and then queues nothing: the caller owns re-sending (an outbox), so no
 * hidden second queue can duplicate it. *mid (may be NULL) gets the message
 * id for on_publish. */
int vigie_mqtt_publish(struct vigie_mqtt *m, const char *topic,
		       const void *payload, size_t len, int qos, bool retain,
		       int *mid);

bool vigie_mqtt_connected(const struct vigie_mqtt *m);

/* vigie_mqtt_protocol_in_use: 5 or 4 (3.1.1) for the current connection. */
int vigie_mqtt_protocol_in_use(const struct vigie_mqtt *m);

/* vigie_mqtt_name: the name given in the options (for logs). */
const char *vigie_mqtt_name(const struct vigie_mqtt *m);

/* vigie_mqtt_stop: stop reconnecting and disconnect cleanly, so the will is
 * not sent: QoS 1 messages still in flight are first given up to 2 s to be
 * acknowledged, and what the broker already sent is read, since closing on
 * unread data resets the connection and the broker would then publish the
 * will. on_disconnect follows with reason 0. Safe from inside the client's
 * own callbacks (the disconnect is then finished once libmosquitto's call
 * returns). */
void vigie_mqtt_stop(struct vigie_mqtt *m);

/* vigie_mqtt_close: stop, close every handle and free the client; `cb`
 * (may be NULL) runs once everything is released. Safe from inside the
 * client's own callbacks: the free is deferred to the last uv_close
 * callback. */
void vigie_mqtt_close(struct vigie_mqtt *m, void (*cb)(void *arg), void *arg);

/* vigie_mqtt_lib_init / _cleanup: once per process. */
void vigie_mqtt_lib_init(void);
void vigie_mqtt_lib_cleanup(void);

#endif
