/* The MQTT-on-libuv client against a real mosquitto: round trip, no busy
 * loop while idle, reconnect with bounded backoff after kill -9, renewed
 * subscriptions, publish while disconnected, MQTT 5 persistent sessions. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker.h"
#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/mqtt.h"

struct client {
	struct vigie_mqtt *m;
	bool close_on_puback; /* regression: close from inside a callback */
	struct ctx *x;
	int connects;
	int disconnects;
	int messages;
	int pubacks;
	bool session_present;
	char last_topic[128];
	char last_payload[128];
};

static void on_closed_from_cb(void *arg);

struct ctx {
	uv_loop_t loop;
	struct test_broker broker;
	struct client a, b;
	uv_timer_t deadline;
	uv_check_t check;
	uint64_t iterations;
	int closed;
};

static void on_connect(struct vigie_mqtt *m, void *ud, bool session_present)
{
	struct client *c = ud;

	(void)m;
	c->connects++;
	c->session_present = session_present;
}

static void on_disconnect(struct vigie_mqtt *m, void *ud, int reason)
{
	struct client *c = ud;

	(void)m;
	(void)reason;
	c->disconnects++;
}

static void on_message(struct vigie_mqtt *m, void *ud, const char *topic,
		       const void *payload, size_t len, int qos, bool retain)
{
	struct client *c = ud;

	(void)m;
	(void)qos;
	(void)retain;
	c->messages++;
	snprintf(c->last_topic, sizeof(c->last_topic), "%s", topic);
	snprintf(c->last_payload, sizeof(c->last_payload), "%.*s", (int)len,
		 (const char *)payload);
}

static void on_publish(struct vigie_mqtt *m, void *ud, int mid, int status)
{
	struct client *c = ud;

	(void)m;
	(void)mid;
	assert_int_equal(status, 0);
	c->pubacks++;
	if (c->close_on_puback) {
		c->close_on_puback = false;
		vigie_mqtt_close(c->m, on_closed_from_cb, c->x);
	}
}

static const struct vigie_mqtt_callbacks cbs = {
	.on_connect = on_connect,
	.on_disconnect = on_disconnect,
	.on_message = on_message,
	.on_publish = on_publish,
};

static void open_client(struct ctx *x, struct client *c, const char *id,
			bool clean, uint32_t expiry)
{
	struct vigie_mqtt_options o;

	memset(&o, 0, sizeof(o));
	o.host = "127.0.0.1";
	o.port = x->broker.port;
	o.client_id = id;
	o.clean_start = clean;
	o.session_expiry_s = expiry;
	o.reconnect_min_ms = 50;
	o.reconnect_max_ms = 400;
	o.name = id;
	assert_int_equal(vigie_mqtt_open(&x->loop, &o, &cbs, c, &c->m), 0);
	assert_int_equal(vigie_mqtt_start(c->m), 0);
}

static void on_closed(void *arg)
{
	((struct ctx *)arg)->closed++;
}

/* Run the loop until cond() holds or `ms` pass; returns whether it held. */
static bool run_until(struct ctx *x, bool (*cond)(struct ctx *), uint64_t ms)
{
	uint64_t end = vigie_clock_mono_ms() + ms;

	while (!cond(x)) {
		if (vigie_clock_mono_ms() > end)
			return false;
		uv_run(&x->loop, UV_RUN_ONCE);
	}
	return true;
}

static void tick(uv_timer_t *t)
{
	(void)t;
}

static void count_iteration(uv_check_t *h)
{
	((struct ctx *)h->data)->iterations++;
}

static int setup(void **state)
{
	struct ctx *x = calloc(1, sizeof(*x));

	vigie_log_init("test_mqtt", VIGIE_LOG_WARN);
	vigie_mqtt_lib_init();
	uv_loop_init(&x->loop);
	/* A slow tick so that UV_RUN_ONCE returns regularly in run_until. */
	uv_timer_init(&x->loop, &x->deadline);
	uv_timer_start(&x->deadline, tick, 20, 20);
	uv_check_init(&x->loop, &x->check);
	x->check.data = x;
	uv_check_start(&x->check, count_iteration);
	if (test_broker_start(&x->broker, 0, NULL)) {
		free(x);
		return -1;
	}
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *x = *state;
	int expected = 0;

	if (x->a.m) {
		vigie_mqtt_close(x->a.m, on_closed, x);
		expected++;
	}
	if (x->b.m) {
		vigie_mqtt_close(x->b.m, on_closed, x);
		expected++;
	}
	uv_close((uv_handle_t *)&x->deadline, NULL);
	uv_close((uv_handle_t *)&x->check, NULL);
	uv_run(&x->loop, UV_RUN_DEFAULT);
	assert_int_equal(x->closed, expected);
	/* A leaked handle fails here (libuv's own test rule). */
	assert_int_equal(uv_loop_close(&x->loop), 0);
	test_broker_cleanup(&x->broker);
	vigie_mqtt_lib_cleanup();
	free(x);
	return 0;
}

static bool both_connected(struct ctx *x)
{
	return vigie_mqtt_connected(x->a.m) && vigie_mqtt_connected(x->b.m);
}

static bool b_got_one(struct ctx *x)
{
	return x->b.messages >= 1;
}

static bool a_got_puback(struct ctx *x)
{
	return x->a.pubacks >= 1;
}

static void test_round_trip_and_idle(void **state)
{
	struct ctx *x = *state;
	uint64_t before;

	open_client(x, &x->a, "pub", true, 0);
	open_client(x, &x->b, "sub", true, 0);
	assert_int_equal(vigie_mqtt_subscribe(x->b.m, "t/#", 1), 0);
	assert_true(run_until(x, both_connected, 5000));
	assert_int_equal(vigie_mqtt_protocol_in_use(x->a.m), 5);
	/* Let the SUBACK arrive before publishing. */
	run_until(x, b_got_one, 200);
	assert_int_equal(
		vigie_mqtt_publish(x->a.m, "t/1", "hello", 5, 1, false, NULL),
		0);
	assert_true(run_until(x, b_got_one, 3000));
	assert_true(run_until(x, a_got_puback, 3000));
	assert_string_equal(x->b.last_topic, "t/1");
	assert_string_equal(x->b.last_payload, "hello");
	assert_int_equal(vigie_mqtt_subscribe(x->b.m, "bad/#/x", 1),
			 VIGIE_EINVAL);

	/* Idle and connected for one second: the loop wakes for our 20 ms tick
	 * and the 1 s misc timer, not for an always-writable socket. */
	before = x->iterations;
	{
		uint64_t end = vigie_clock_mono_ms() + 1000;

		while (vigie_clock_mono_ms() < end)
			uv_run(&x->loop, UV_RUN_ONCE);
	}
	assert_in_range(x->iterations - before, 1, 120);
}

static bool a_down(struct ctx *x)
{
	return !vigie_mqtt_connected(x->a.m);
}

static bool a_up(struct ctx *x)
{
	return vigie_mqtt_connected(x->a.m);
}

static bool a_up_and_b_up(struct ctx *x)
{
	return both_connected(x);
}

static void test_reconnect_after_kill9(void **state)
{
	struct ctx *x = *state;
	int disconnects_before;
	uint64_t t0;

	open_client(x, &x->a, "pub", true, 0);
	open_client(x, &x->b, "sub", true, 0);
	assert_int_equal(vigie_mqtt_subscribe(x->b.m, "t/#", 1), 0);
	assert_true(run_until(x, both_connected, 5000));

	test_broker_kill(&x->broker, SIGKILL);
	assert_true(run_until(x, a_down, 5000));
	assert_int_equal(
		vigie_mqtt_publish(x->a.m, "t/x", "lost", 4, 1, false, NULL),
		VIGIE_ENOCONN);

	/* Two seconds without a broker: attempts back off from 50 ms to at most
	 * 400 ms (with jitter, 200-400 ms), so between 4 and 40 of them. */
	disconnects_before = x->a.disconnects;
	t0 = vigie_clock_mono_ms();
	while (vigie_clock_mono_ms() - t0 < 2000)
		uv_run(&x->loop, UV_RUN_ONCE);
	assert_in_range(x->a.disconnects - disconnects_before, 4, 40);

	assert_int_equal(test_broker_restart(&x->broker), 0);
	t0 = vigie_clock_mono_ms();
	assert_true(run_until(x, a_up_and_b_up, 5000));
	/* Back within about one maximum backoff interval. */
	assert_in_range(vigie_clock_mono_ms() - t0, 0, 2000);

	/* The subscription was renewed on the new connection. */
	x->b.messages = 0;
	{
		uint64_t end = vigie_clock_mono_ms() + 200;

		while (vigie_clock_mono_ms() < end)
			uv_run(&x->loop, UV_RUN_ONCE);
	}
	assert_int_equal(vigie_mqtt_publish(x->a.m, "t/again", "back", 4, 1,
					    false, NULL),
			 0);
	assert_true(run_until(x, b_got_one, 3000));
	assert_string_equal(x->b.last_payload, "back");
	(void)a_up;
}

static bool b_got_five(struct ctx *x)
{
	return x->b.messages >= 5;
}

static bool b_up(struct ctx *x)
{
	return x->b.m && vigie_mqtt_connected(x->b.m);
}

static bool b_closed(struct ctx *x)
{
	return x->closed >= 1;
}

/* MQTT 5 with clean start off and a session expiry: messages published
 * while the subscriber is away are delivered when it comes back. Without
 * the expiry an MQTT 5 session ends at disconnect and they are lost. */
static void test_v5_persistent_session(void **state)
{
	struct ctx *x = *state;

	open_client(x, &x->a, "pub", true, 0);
	open_client(x, &x->b, "relay-like", false, 300);
	assert_int_equal(vigie_mqtt_subscribe(x->b.m, "q/#", 1), 0);
	assert_true(run_until(x, both_connected, 5000));
	assert_false(x->b.session_present);
	{
		uint64_t end = vigie_clock_mono_ms() + 200;

		while (vigie_clock_mono_ms() < end)
			uv_run(&x->loop, UV_RUN_ONCE);
	}
	vigie_mqtt_close(x->b.m, on_closed, x);
	x->b.m = NULL;
	assert_true(run_until(x, b_closed, 2000));
	x->closed = 0;
	for (int i = 0; i < 5; i++) {
		char msg[8];

		snprintf(msg, sizeof(msg), "m%d", i);
		assert_int_equal(vigie_mqtt_publish(x->a.m, "q/1", msg,
						    strlen(msg), 1, false,
						    NULL),
				 0);
	}
	x->a.pubacks = 0;
	{
		uint64_t end = vigie_clock_mono_ms() + 300;

		while (vigie_clock_mono_ms() < end)
			uv_run(&x->loop, UV_RUN_ONCE);
	}
	memset(&x->b, 0, sizeof(x->b));
	open_client(x, &x->b, "relay-like", false, 300);
	assert_true(run_until(x, b_up, 5000));
	assert_true(x->b.session_present);
	assert_true(run_until(x, b_got_five, 3000));
	assert_string_equal(x->b.last_payload, "m4");
}

static void on_closed_from_cb(void *arg)
{
	struct ctx *x = arg;

	x->closed++;
	x->a.m = NULL;
}

static bool a_closed(struct ctx *x)
{
	return x->a.m == NULL;
}

static bool b_got_state(struct ctx *x)
{
	return strcmp(x->b.last_payload, "offline-clean") == 0 ||
	       strcmp(x->b.last_payload, "will") == 0;
}

/* Regression: vigie_mqtt_close() from inside on_publish deadlocked on
 * libmosquitto's callback lock (writing DISCONNECT runs the disconnect
 * callback under it). And a close right after a QoS 1 publish must still be
 * clean: closing on an unread PUBACK resets the connection and the broker
 * then publishes the will. */
static void test_close_from_callback_is_clean(void **state)
{
	struct ctx *x = *state;
	struct vigie_mqtt_options o;

	open_client(x, &x->b, "watcher", true, 0);
	assert_int_equal(vigie_mqtt_subscribe(x->b.m, "st/#", 1), 0);
	memset(&o, 0, sizeof(o));
	o.host = "127.0.0.1";
	o.port = x->broker.port;
	o.client_id = "closer";
	o.clean_start = true;
	o.will_topic = "st/closer";
	o.will_payload = "will";
	o.will_len = 4;
	o.will_qos = 1;
	o.name = "closer";
	x->a.x = x;
	assert_int_equal(vigie_mqtt_open(&x->loop, &o, &cbs, &x->a, &x->a.m),
			 0);
	assert_int_equal(vigie_mqtt_start(x->a.m), 0);
	assert_true(run_until(x, both_connected, 5000));
	{
		uint64_t end = vigie_clock_mono_ms() + 200;

		while (vigie_clock_mono_ms() < end)
			uv_run(&x->loop, UV_RUN_ONCE);
	}
	x->a.close_on_puback = true;
	assert_int_equal(vigie_mqtt_publish(x->a.m, "st/closer",
					    "offline-clean", 13, 1, false,
					    NULL),
			 0);
	assert_true(run_until(x, a_closed, 5000));
	x->closed = 0;
	assert_true(run_until(x, b_got_state, 3000));
	assert_string_equal(x->b.last_payload, "offline-clean");
	/* The will, had it been published, would follow at once. */
	{
		uint64_t end = vigie_clock_mono_ms() + 500;

		while (vigie_clock_mono_ms() < end)
			uv_run(&x->loop, UV_RUN_ONCE);
	}
	assert_string_equal(x->b.last_payload, "offline-clean");
}

/* A peer that speaks only MQTT 3.1.1: it answers an MQTT 5 CONNECT with a
 * 3.1.1 CONNACK "unacceptable protocol version", as such brokers do, and
 * accepts a 3.1.1 CONNECT. No mosquitto can be told to refuse MQTT 5, so
 * this one branch is tested against a scripted peer. */
struct v311_peer {
	uv_tcp_t server;
	uv_tcp_t conn[4];
	int n_conn;
	int levels[4];
	char buf[256];
	size_t used;
};

static void peer_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	struct v311_peer *p = h->data;

	(void)size;
	buf->base = p->buf + p->used;
	buf->len = sizeof(p->buf) - p->used;
}

static void peer_written(uv_write_t *req, int status)
{
	(void)status;
	free(req);
}

static void peer_send(uv_tcp_t *c, const char *bytes, size_t len)
{
	uv_write_t *req = malloc(sizeof(*req) + len);
	uv_buf_t b;

	memcpy(req + 1, bytes, len);
	b = uv_buf_init((char *)(req + 1), (unsigned)len);
	uv_write(req, (uv_stream_t *)c, &b, 1, peer_written);
}

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct v311_peer *p = s->data;
	int idx = (int)((uv_tcp_t *)s - p->conn);

	(void)buf;
	if (n < 0) {
		if (!uv_is_closing((uv_handle_t *)s))
			uv_close((uv_handle_t *)s, NULL);
		return;
	}
	p->used += (size_t)n;
	/* CONNECT: type, remaining length (one byte here), 00 04 "MQTT", level
	 */
	if (p->used < 9 || p->levels[idx])
		return;
	p->levels[idx] = (unsigned char)p->buf[8];
	p->used = 0;
	if (p->levels[idx] == 5) {
		peer_send((uv_tcp_t *)s, "\x20\x02\x00\x01", 4);
		uv_close((uv_handle_t *)s, NULL);
	} else {
		peer_send((uv_tcp_t *)s, "\x20\x02\x00\x00", 4);
	}
}

static void peer_connection(uv_stream_t *server, int status)
{
	struct v311_peer *p = server->data;
	uv_tcp_t *c;

	if (status < 0 || p->n_conn == 4)
		return;
	c = &p->conn[p->n_conn++];
	uv_tcp_init(server->loop, c);
	c->data = p;
	if (uv_accept(server, (uv_stream_t *)c) == 0)
		uv_read_start((uv_stream_t *)c, peer_alloc, peer_read);
}

static bool a_connected(struct ctx *x)
{
	return x->a.m && vigie_mqtt_connected(x->a.m);
}

static void test_falls_back_to_311(void **state)
{
	struct ctx *x = *state;
	struct v311_peer p;
	struct sockaddr_in sa;
	int port = test_free_port();

	memset(&p, 0, sizeof(p));
	uv_tcp_init(&x->loop, &p.server);
	p.server.data = &p;
	uv_ip4_addr("127.0.0.1", port, &sa);
	assert_int_equal(uv_tcp_bind(&p.server, (struct sockaddr *)&sa, 0), 0);
	assert_int_equal(
		uv_listen((uv_stream_t *)&p.server, 8, peer_connection), 0);
	x->broker.port = port; /* open_client connects here */
	open_client(x, &x->a, "old-broker", true, 0);
	assert_true(run_until(x, a_connected, 5000));
	assert_int_equal(p.levels[0], 5);
	assert_int_equal(p.levels[1], 4);
	assert_int_equal(vigie_mqtt_protocol_in_use(x->a.m), 4);
	vigie_mqtt_close(x->a.m, on_closed, x);
	x->a.m = NULL;
	for (int i = 0; i < p.n_conn; i++)
		if (!uv_is_closing((uv_handle_t *)&p.conn[i]))
			uv_close((uv_handle_t *)&p.conn[i], NULL);
	uv_close((uv_handle_t *)&p.server, NULL);
	uv_run(&x->loop, UV_RUN_NOWAIT);
	while (x->closed < 1)
		uv_run(&x->loop, UV_RUN_ONCE);
	x->closed = 0;
}

#define DYNSEC "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"

static bool a_refused_one(struct ctx *x)
{
	return vigie_mqtt_refused_subscriptions(x->a.m) == 1;
}

static bool a_got_one(struct ctx *x)
{
	return x->a.messages >= 1;
}

/* A broker that refuses a subscription (here Mosquitto's dynamic security
 * plugin: SUBACK 0x87, not authorised) is told apart from one that grants
 * it, and the granted one still works. */
static void test_refused_subscription_is_counted(void **state)
{
	struct ctx *x = *state;
	char path[160];
	FILE *f;

	if (access(DYNSEC, R_OK) != 0) {
		fprintf(stderr,
			"%s is missing (Debian's mosquitto package "
			"ships it on amd64)\n",
			DYNSEC);
		skip();
	}
	test_broker_kill(&x->broker, SIGTERM);
	snprintf(path, sizeof(path), "%s/dynsec.json", x->broker.dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"defaultACLAccess\": {\"publishClientSend\": false,"
	      " \"publishClientReceive\": true, \"subscribe\": false,"
	      " \"unsubscribe\": true}, \"clients\": [],"
	      " \"groups\": [{\"groupname\": \"anon\","
	      " \"roles\": [{\"rolename\": \"r\"}]}],"
	      " \"anonymousGroup\": \"anon\","
	      " \"roles\": [{\"rolename\": \"r\", \"acls\": ["
	      "{\"acltype\": \"subscribePattern\", \"topic\": \"t/#\","
	      " \"allow\": true},"
	      " {\"acltype\": \"publishClientSend\", \"topic\": \"t/#\","
	      " \"allow\": true}]}]}\n",
	      f);
	fclose(f);
	f = fopen(x->broker.conf, "a");
	assert_non_null(f);
	fprintf(f, "plugin %s\nplugin_opt_config_file %s\n", DYNSEC, path);
	fclose(f);
	assert_int_equal(test_broker_restart(&x->broker), 0);
	open_client(x, &x->a, "refused", true, 0);
	assert_int_equal(vigie_mqtt_subscribe(x->a.m, "secret/#", 1), 0);
	assert_int_equal(vigie_mqtt_subscribe(x->a.m, "t/#", 1), 0);
	assert_true(run_until(x, a_refused_one, 5000));
	assert_int_equal(
		vigie_mqtt_publish(x->a.m, "t/1", "granted", 7, 1, false, NULL),
		0);
	assert_true(run_until(x, a_got_one, 3000));
	assert_string_equal(x->a.last_topic, "t/1");
	/* Refused again after a reconnect: still one, not two. */
	test_broker_kill(&x->broker, SIGKILL);
	assert_true(run_until(x, a_down, 5000));
	assert_int_equal(test_broker_restart(&x->broker), 0);
	x->a.messages = 0;
	assert_true(run_until(x, a_up, 5000));
	assert_int_equal(
		vigie_mqtt_publish(x->a.m, "t/2", "again", 5, 1, false, NULL),
		0);
	assert_true(run_until(x, a_got_one, 5000));
	assert_int_equal(vigie_mqtt_refused_subscriptions(x->a.m), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_and_idle, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reconnect_after_kill9,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_v5_persistent_session,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_falls_back_to_311, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_close_from_callback_is_clean, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_refused_subscription_is_counted, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
