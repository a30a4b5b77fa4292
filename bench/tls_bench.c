/* The certificates of the TLS figures, and security.tls_reconnect_ms
 * (issue 5).
 *
 * Certificates: a CA, a server certificate for 127.0.0.1 and a client
 * certificate, ECDSA P-256 like broker-config/vigie-keys, made with
 * openssl in the temporary directory.
 *
 * security.tls_reconnect_ms: how long a client through vigie_mqtt, with
 * the node's settings (persistent MQTT 5 session, backoff 100 ms .. 5 s
 * with jitter), takes to be connected again after its connection dropped:
 * from its on_disconnect to its next on_connect, the median of several
 * drops. The drop is the broker's: another client takes the session over
 * (same client id, on the broker's plaintext listener), so the broker
 * closes the connection as it would on a restart or a network cut. TLS
 * listener with a client certificate against the same broker's plaintext
 * listener as the baseline. The first retry comes after 50..100 ms of
 * jittered backoff, which both pay; the median connect time without it
 * (reconnect_min_ms 1) goes to stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "tls_bench.h"
#include "vigie/error.h"
#include "vigie/mqtt.h"

#define OPENSSL_BIN        "/usr/bin/openssl"
#define CONNECT_TIMEOUT_MS 5000u
/* -addext values of one certificate, at most. */
#define MAX_EXT     4

#define DROPS_FULL  20
#define DROPS_QUICK 5

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Run a tool to completion (its output appended to `log`). */
static int run_tool(char *const argv[], const char *log)
{
	uint64_t deadline = bench_mono_us() + 30000000u;
	int status = 0, rc;
	pid_t pid;

	rc = bench_spawn(argv, log, &pid);
	if (rc)
		return rc;
	while (bench_child_alive(pid, &status)) {
		if (bench_mono_us() >= deadline) {
			bench_child_stop(pid, 1000, NULL);
			return VIGIE_ESYS;
		}
		sleep_ms(5);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(stderr, "vigie-bench: %s failed (status 0x%x)\n", argv[0],
		status);
	bench_log_tail(log, argv[0]);
	return VIGIE_ESYS;
}

/* ---- certificates ---- */

/* A new P-256 key into `key` and its certificate for `subj` into `crt`,
 * valid two days: self-signed when `by_ca` is false, else signed by the
 * CA; `ext`: -addext values, NULL-terminated, at most MAX_EXT. */
static int make_cert(const struct bench_pki *p, const char *key,
		     const char *crt, const char *subj, bool by_ca,
		     const char *const *ext)
{
	char *argv[20 + 2 * MAX_EXT] = {
		(char *)OPENSSL_BIN,
		(char *)"req",
		(char *)"-x509",
		(char *)"-newkey",
		(char *)"ec",
		(char *)"-pkeyopt",
		(char *)"ec_paramgen_curve:P-256",
		(char *)"-nodes",
		(char *)"-keyout",
		(char *)key,
		(char *)"-out",
		(char *)crt,
		(char *)"-subj",
		(char *)subj,
		(char *)"-days",
		(char *)"2",
	};
	size_t n = 16;

	if (by_ca) {
		argv[n++] = (char *)"-CA";
		argv[n++] = (char *)p->ca;
		argv[n++] = (char *)"-CAkey";
		argv[n++] = (char *)p->ca_key;
	}
	for (size_t i = 0; i < MAX_EXT && ext[i]; i++) {
		argv[n++] = (char *)"-addext";
		argv[n++] = (char *)ext[i];
	}
	argv[n] = NULL;
	return run_tool(argv, p->log);
}

int bench_pki_make(struct bench_pki *p)
{
	static const char *const no_ext[] = {NULL};
	static const char *const server_ext[] = {
		"subjectAltName=IP:127.0.0.1,DNS:localhost",
		"basicConstraints=critical,CA:FALSE",
		"extendedKeyUsage=serverAuth", NULL};
	static const char *const client_ext[] = {
		"basicConstraints=critical,CA:FALSE",
		"extendedKeyUsage=clientAuth", NULL};
	/* Every path of struct bench_pki is sizeof(p->ca) long. */
	const struct {
		char *path;
		const char *name;
	} files[] = {
		{p->ca, "tls/ca.crt"},
		{p->ca_key, "tls/ca.key"},
		{p->server_crt, "tls/server.crt"},
		{p->server_key, "tls/server.key"},
		{p->client_crt, "tls/client.crt"},
		{p->client_key, "tls/client.key"},
		{p->log, "tls/openssl.log"},
	};
	char dir[256];
	int rc;

	memset(p, 0, sizeof(*p));
	rc = bench_path(dir, sizeof(dir), "tls");
	if (rc)
		return rc;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "vigie-bench: %s: %s\n", dir, strerror(errno));
		return VIGIE_ESYS;
	}
	for (size_t i = 0; rc == 0 && i < sizeof(files) / sizeof(files[0]); i++)
		rc = bench_path(files[i].path, sizeof(p->ca), files[i].name);
	if (rc)
		return rc;
	p->server = (struct bench_tls){p->ca, p->server_crt, p->server_key};
	p->client = (struct bench_tls){p->ca, p->client_crt, p->client_key};
	if (access(OPENSSL_BIN, X_OK) != 0) {
		fprintf(stderr, "vigie-bench: %s: %s\n", OPENSSL_BIN,
			strerror(errno));
		return VIGIE_ESYS;
	}
	rc = make_cert(p, p->ca_key, p->ca, "/O=Vigie/CN=vigie-bench CA", false,
		       no_ext);
	if (rc == 0)
		rc = make_cert(p, p->server_key, p->server_crt,
			       "/O=Vigie/CN=127.0.0.1", true, server_ext);
	if (rc == 0)
		rc = make_cert(p, p->client_key, p->client_crt,
			       "/O=Vigie/CN=vigie-bench", true, client_ext);
	return rc;
}

/* ---- security.tls_reconnect_ms ---- */

struct rc_client {
	uv_loop_t loop;
	struct vigie_mqtt *m;
	unsigned connects;
	uint64_t disc_us, conn_us;
	bool closed;
};

static void rc_on_connect(struct vigie_mqtt *m, void *ud, bool session)
{
	struct rc_client *c = ud;

	(void)m;
	(void)session;
	c->connects++;
	c->conn_us = bench_mono_us();
}

static void rc_on_disconnect(struct vigie_mqtt *m, void *ud, int reason)
{
	struct rc_client *c = ud;

	(void)m;
	(void)reason;
	if (!c->disc_us)
		c->disc_us = bench_mono_us();
}

static void rc_on_closed(void *arg)
{
	((struct rc_client *)arg)->closed = true;
}

static unsigned rc_target;

static bool rc_reconnected(void *arg)
{
	return ((struct rc_client *)arg)->connects >= rc_target;
}

static bool rc_is_closed(void *arg)
{
	return ((struct rc_client *)arg)->closed;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Another client takes the session over: the broker drops ours. */
static int take_over(int plain_port, const char *client_id)
{
	struct mosquitto *mosq = NULL;
	int rc = bench_mosq_connect(plain_port, client_id, 10, NULL, &mosq);

	if (rc)
		return rc;
	mosquitto_disconnect(mosq);
	mosquitto_loop(mosq, 10, 1);
	mosquitto_destroy(mosq);
	return 0;
}

/* Median µs from a drop to the next connect, over `drops` drops, of a
 * vigie_mqtt client on `port` of broker `b` (TLS with `tls`). */
static int reconnect_median(const struct bench_broker *b, int port,
			    const struct bench_tls *tls, unsigned drops,
			    uint32_t min_ms, double *median_ms)
{
	static const struct vigie_mqtt_callbacks cbs = {
		.on_connect = rc_on_connect,
		.on_disconnect = rc_on_disconnect,
	};
	struct vigie_mqtt_options mo;
	struct rc_client c;
	uint32_t us[DROPS_FULL];
	unsigned n = 0;
	int rc;

	memset(&c, 0, sizeof(c));
	memset(&mo, 0, sizeof(mo));
	if (drops > DROPS_FULL)
		drops = DROPS_FULL;
	if (uv_loop_init(&c.loop) != 0)
		return VIGIE_ESYS;
	/* The node's settings (node/node.c). */
	mo.host = "127.0.0.1";
	mo.port = port;
	mo.client_id = "vigie-bench-reconnect";
	mo.keepalive_s = 10;
	mo.clean_start = false;
	mo.session_expiry_s = 3600;
	mo.reconnect_min_ms = min_ms;
	mo.reconnect_max_ms = 5000;
	mo.name = tls ? "tls" : "plaintext";
	if (tls) {
		mo.tls.cafile = tls->ca;
		mo.tls.certfile = tls->cert;
		mo.tls.keyfile = tls->key;
	}
	rc = vigie_mqtt_open(&c.loop, &mo, &cbs, &c, &c.m);
	if (rc) {
		uv_loop_close(&c.loop);
		return rc;
	}
	rc = vigie_mqtt_start(c.m);
	rc_target = 1;
	if (rc == 0)
		rc = bench_loop_until(&c.loop, rc_reconnected, &c, 1,
				      CONNECT_TIMEOUT_MS);
	for (unsigned i = 0; rc == 0 && i < drops; i++) {
		c.disc_us = 0;
		rc_target = c.connects + 1;
		rc = take_over(b->port, mo.client_id);
		if (rc == 0)
			rc = bench_loop_until(&c.loop, rc_reconnected, &c, 1,
					      10000);
		if (rc == 0 && c.disc_us && c.conn_us > c.disc_us)
			us[n++] = (uint32_t)(c.conn_us - c.disc_us);
	}
	vigie_mqtt_close(c.m, rc_on_closed, &c);
	bench_loop_until(&c.loop, rc_is_closed, &c, 1, 5000);
	uv_run(&c.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&c.loop) != 0 && rc == 0)
		rc = VIGIE_EIO;
	if (rc == 0 && n == 0)
		rc = VIGIE_EIO;
	if (rc)
		return rc;
	qsort(us, n, sizeof(us[0]), cmp_u32);
	*median_ms = (double)us[n / 2] / 1000.0;
	return 0;
}

/* Median µs of a bare blocking libmosquitto connect (TCP, TLS with `tls`,
 * CONNECT/CONNACK): what the connect costs without vigie_mqtt's loop. */
static int bare_connect_median(int port, const struct bench_tls *tls,
			       unsigned n, double *median_ms)
{
	uint32_t us[DROPS_FULL];
	unsigned got = 0;

	if (n > DROPS_FULL)
		n = DROPS_FULL;
	for (unsigned i = 0; i < n; i++) {
		struct mosquitto *mosq = NULL;
		uint64_t t0 = bench_mono_us();
		int rc = bench_mosq_connect_tls(
			port, tls, "vigie-bench-bare-connect", 10, NULL, &mosq);

		if (rc)
			return rc;
		us[got++] = (uint32_t)(bench_mono_us() - t0);
		mosquitto_disconnect(mosq);
		mosquitto_loop(mosq, 10, 1);
		mosquitto_destroy(mosq);
	}
	qsort(us, got, sizeof(us[0]), cmp_u32);
	*median_ms = (double)us[got / 2] / 1000.0;
	return 0;
}

int bench_tls_reconnect(const struct bench_opts *o)
{
	unsigned drops = o->quick ? DROPS_QUICK : DROPS_FULL;
	double tls_ms = 0, plain_ms = 0, tls_fast = 0, plain_fast = 0;
	double tls_bare = 0, plain_bare = 0;
	struct bench_broker b;
	struct bench_pki p;
	struct bench_broker_options bo = {.require_certificate = true};
	int rc;

	if (!bench_wanted(o, "security.tls_reconnect_ms"))
		return 0;
	memset(&b, 0, sizeof(b));
	bench_progress("security.tls_reconnect_ms: %u drops on each listener, "
		       "each logged as a lost connection",
		       drops);
	rc = bench_pki_make(&p);
	bo.tls = &p.server;
	if (rc == 0)
		rc = bench_broker_start(&b, "central-tls", &bo);
	/* With the node's backoff, then without it (the connect alone). */
	if (rc == 0)
		rc = reconnect_median(&b, b.port, NULL, drops, 100, &plain_ms);
	if (rc == 0)
		rc = reconnect_median(&b, b.tls_port, &p.client, drops, 100,
				      &tls_ms);
	if (rc == 0)
		rc = reconnect_median(&b, b.port, NULL, drops, 1, &plain_fast);
	if (rc == 0)
		rc = reconnect_median(&b, b.tls_port, &p.client, drops, 1,
				      &tls_fast);
	if (rc == 0)
		rc = bare_connect_median(b.port, NULL, drops, &plain_bare);
	if (rc == 0)
		rc = bare_connect_median(b.tls_port, &p.client, drops,
					 &tls_bare);
	bench_broker_stop(&b);
	if (rc)
		return rc;
	bench_progress("security.tls_reconnect_ms: median of %u drops: TLS "
		       "%.1f ms, plaintext %.1f ms (node backoff 50..100 ms "
		       "included); the connect alone: TLS %.2f ms, plaintext "
		       "%.2f ms; a bare blocking libmosquitto connect: TLS "
		       "%.2f ms, plaintext %.2f ms",
		       drops, tls_ms, plain_ms, tls_fast, plain_fast, tls_bare,
		       plain_bare);
	bench_emit(o, "security.tls_reconnect_ms", tls_ms, "ms", plain_ms);
	return 0;
}
