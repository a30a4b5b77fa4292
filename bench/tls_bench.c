/* The security figures that need TLS (issue 5).
 *
 * relay.throughput_signed: signed events per second the real vigie-relay
 * takes in with signature verification on (a trust store of the
 * publishers' Ed25519 keys, require_signatures) and TLS on every link it
 * uses: the publishers (playing nodes) and the relay talk to a central
 * broker whose listener speaks TLS only and requires client certificates.
 * Events are signed before the timed phase. The rate is all events over
 * first publish to the Receipt that covered the last of them, as in
 * relay.throughput (relay_throughput.c), whose structure this follows.
 * Each publisher behaves like a node: it gets its Receipts on its own
 * connection (so they travel over TLS too) and keeps at most
 * RECEIPT_WINDOW events unreceipted. Without that bound the publishers
 * outrun signature checking, the relay's verifier queue fills and it sheds
 * events (unreceipted: a node sends them again, a bare publisher never
 * does), which measures nothing.
 *
 * Baseline, measured in the same run: the very same signed bytes, from the
 * same publishers, to a plaintext broker with the same settings
 * (bench_broker_start) and a relay with no trust store, which neither
 * verifies nor speaks TLS. Each has its own broker and relay, up for the
 * whole figure (a relay subscribes to every site, so two relays on one
 * broker would each take both streams); rounds alternate and each side
 * keeps its best, since the machine is shared. Round r sends boot r+1.
 *
 * The TLS broker has a second, plaintext listener on 127.0.0.1 for the
 * bench's instruments only: the relay's readiness probe and the session
 * take-over below.
 *
 * security.tls_reconnect_ms: how long a client through vigie_mqtt, with
 * the node's settings (persistent MQTT 5 session, backoff 100 ms .. 5 s
 * with jitter), takes to be connected again after its connection dropped:
 * from its on_disconnect to its next on_connect, the median of several
 * drops. The drop is the broker's: another client takes the session over
 * (same client id), so the broker closes the connection as it would on a
 * restart or a network cut. TLS listener with a client certificate against
 * the same broker's plaintext listener as the baseline. The first retry
 * comes after 50..100 ms of jittered backoff, which both pay; the median
 * connect time without it (reconnect_min_ms 1) goes to stderr.
 *
 * Certificates: a CA, a server certificate for 127.0.0.1 and a client
 * certificate, ECDSA P-256 like broker-config/vigie-keys, made with
 * openssl in the temporary directory. */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "tls_bench.h"
#include "vigie/clock.h"
#include "vigie/codec.h"
#include "vigie/error.h"
#include "vigie/mqtt.h"
#include "vigie/sign.h"

#define OPENSSL_BIN        "/usr/bin/openssl"
#define MOSQUITTO_BIN      "/usr/sbin/mosquitto"
#define READY_TIMEOUT_MS   5000u
#define CONNECT_TIMEOUT_MS 5000u
#define RELAY_READY_MS     15000u
#define PROBE_EVERY_US     200000u
#define START_ATTEMPTS     3
#define MAX_INFLIGHT       100 /* broker-config's default */

#define PUBLISHERS         4
#define N_FULL             200000u /* per round */
#define N_QUICK            20000u
#define ROUNDS_FULL        3
#define ROUNDS_QUICK       2
#define WINDOW             1000u
/* Per publisher: events sent and not yet receipted (see publish_thread). */
#define RECEIPT_WINDOW 2500u
#define TIMEOUT_MS     120000u
#define NODE           "sg" /* nodes sg0 .. sg<PUBLISHERS-1> */
#define PROBE_NODE     "relay-probe"

#define DROPS_FULL     20
#define DROPS_QUICK    5

struct pki {
	char ca[256], ca_key[256];
	char server_crt[256], server_key[256];
	char client_crt[256], client_key[256];
	char log[256];
};

/* A broker with a TLS listener (`port`) and a plaintext one on 127.0.0.1
 * (`plain_port`) for the bench's instruments and baselines. */
struct tls_broker {
	int port, plain_port;
	pid_t pid;
	char conf[256], log[256];
};

/* ---- small helpers ---- */

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int free_port(int *port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc = VIGIE_ESYS;

	if (fd < 0)
		return VIGIE_ESYS;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
		*port = ntohs(sa.sin_port);
		rc = 0;
	}
	close(fd);
	return rc;
}

static bool port_accepts(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
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

static int pki_make(struct pki *p)
{
	char dir[256];
	int rc;

	rc = bench_path(dir, sizeof(dir), "tls");
	if (rc)
		return rc;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "vigie-bench: %s: %s\n", dir, strerror(errno));
		return VIGIE_ESYS;
	}
	rc = bench_path(p->ca, sizeof(p->ca), "tls/ca.crt");
	if (rc == 0)
		rc = bench_path(p->ca_key, sizeof(p->ca_key), "tls/ca.key");
	if (rc == 0)
		rc = bench_path(p->server_crt, sizeof(p->server_crt),
				"tls/server.crt");
	if (rc == 0)
		rc = bench_path(p->server_key, sizeof(p->server_key),
				"tls/server.key");
	if (rc == 0)
		rc = bench_path(p->client_crt, sizeof(p->client_crt),
				"tls/client.crt");
	if (rc == 0)
		rc = bench_path(p->client_key, sizeof(p->client_key),
				"tls/client.key");
	if (rc == 0)
		rc = bench_path(p->log, sizeof(p->log), "tls/openssl.log");
	if (rc)
		return rc;
	{
		char *ca[] = {(char *)OPENSSL_BIN,
			      (char *)"req",
			      (char *)"-x509",
			      (char *)"-newkey",
			      (char *)"ec",
			      (char *)"-pkeyopt",
			      (char *)"ec_paramgen_curve:P-256",
			      (char *)"-nodes",
			      (char *)"-keyout",
			      p->ca_key,
			      (char *)"-out",
			      p->ca,
			      (char *)"-subj",
			      (char *)"/O=Vigie/CN=vigie-bench CA",
			      (char *)"-days",
			      (char *)"2",
			      NULL};
		char *server[] = {(char *)OPENSSL_BIN,
				  (char *)"req",
				  (char *)"-x509",
				  (char *)"-newkey",
				  (char *)"ec",
				  (char *)"-pkeyopt",
				  (char *)"ec_paramgen_curve:P-256",
				  (char *)"-nodes",
				  (char *)"-keyout",
				  p->server_key,
				  (char *)"-out",
				  p->server_crt,
				  (char *)"-subj",
				  (char *)"/O=Vigie/CN=127.0.0.1",
				  (char *)"-days",
				  (char *)"2",
				  (char *)"-CA",
				  p->ca,
				  (char *)"-CAkey",
				  p->ca_key,
				  (char *)"-addext",
				  (char *)"subjectAltName=IP:127.0.0.1,DNS:"
					  "localhost",
				  (char *)"-addext",
				  (char *)"basicConstraints=critical,CA:FALSE",
				  (char *)"-addext",
				  (char *)"extendedKeyUsage=serverAuth",
				  NULL};
		char *client[] = {(char *)OPENSSL_BIN,
				  (char *)"req",
				  (char *)"-x509",
				  (char *)"-newkey",
				  (char *)"ec",
				  (char *)"-pkeyopt",
				  (char *)"ec_paramgen_curve:P-256",
				  (char *)"-nodes",
				  (char *)"-keyout",
				  p->client_key,
				  (char *)"-out",
				  p->client_crt,
				  (char *)"-subj",
				  (char *)"/O=Vigie/CN=vigie-bench",
				  (char *)"-days",
				  (char *)"2",
				  (char *)"-CA",
				  p->ca,
				  (char *)"-CAkey",
				  p->ca_key,
				  (char *)"-addext",
				  (char *)"basicConstraints=critical,CA:FALSE",
				  (char *)"-addext",
				  (char *)"extendedKeyUsage=clientAuth",
				  NULL};

		if (access(OPENSSL_BIN, X_OK) != 0) {
			fprintf(stderr, "vigie-bench: %s: %s\n", OPENSSL_BIN,
				strerror(errno));
			return VIGIE_ESYS;
		}
		rc = run_tool(ca, p->log);
		if (rc == 0)
			rc = run_tool(server, p->log);
		if (rc == 0)
			rc = run_tool(client, p->log);
	}
	return rc;
}

/* ---- the TLS broker ---- */

static int write_broker_conf(const struct tls_broker *b, const struct pki *p)
{
	FILE *f = fopen(b->conf, "w");

	if (!f) {
		fprintf(stderr, "vigie-bench: %s: %s\n", b->conf,
			strerror(errno));
		return VIGIE_ESYS;
	}
	fprintf(f, "# vigie-bench: TLS central broker\n");
	if (geteuid() == 0)
		fprintf(f, "user root\n");
	/* broker.c's settings, no persistence (as relay.throughput's), plus
	 * the TLS listener of broker-config (--certfile --cafile
	 * --require-certificate). */
	fprintf(f,
		"per_listener_settings false\n"
		"allow_anonymous true\n"
		"max_queued_messages 1000000\n"
		"max_queued_bytes 0\n"
		"max_inflight_messages %d\n"
		"max_inflight_bytes 0\n"
		"queue_qos0_messages false\n"
		"set_tcp_nodelay true\n"
		"persistence false\n"
		"log_dest stderr\n"
		"log_type error\n"
		"log_type warning\n"
		"log_type notice\n"
		"log_timestamp true\n"
		"listener %d 127.0.0.1\n"
		"protocol mqtt\n"
		"cafile %s\n"
		"certfile %s\n"
		"keyfile %s\n"
		"tls_version tlsv1.2\n"
		"require_certificate true\n"
		"listener %d 127.0.0.1\n"
		"protocol mqtt\n",
		MAX_INFLIGHT, b->port, p->ca, p->server_crt, p->server_key,
		b->plain_port);
	if (fclose(f) != 0) {
		fprintf(stderr, "vigie-bench: %s: %s\n", b->conf,
			strerror(errno));
		return VIGIE_ESYS;
	}
	return 0;
}

static int tls_broker_start(struct tls_broker *b, const struct pki *p)
{
	char *argv[] = {(char *)MOSQUITTO_BIN, (char *)"-c", b->conf, NULL};
	int rc;

	memset(b, 0, sizeof(*b));
	rc = bench_path(b->conf, sizeof(b->conf), "central-tls.conf");
	if (rc == 0)
		rc = bench_path(b->log, sizeof(b->log), "central-tls.log");
	if (rc)
		return rc;
	for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
		uint64_t deadline = bench_mono_us() + READY_TIMEOUT_MS * 1000u;
		int status = 0;

		rc = free_port(&b->port);
		do {
			if (rc == 0)
				rc = free_port(&b->plain_port);
		} while (rc == 0 && b->plain_port == b->port);
		if (rc == 0)
			rc = write_broker_conf(b, p);
		if (rc == 0)
			rc = bench_spawn(argv, b->log, &b->pid);
		if (rc)
			return rc;
		while (bench_mono_us() < deadline &&
		       bench_child_alive(b->pid, &status) &&
		       !(port_accepts(b->port) && port_accepts(b->plain_port)))
			sleep_ms(10);
		if (!bench_child_alive(b->pid, &status)) {
			b->pid = 0; /* a port taken meanwhile: again */
			continue;
		}
		if (port_accepts(b->port) && port_accepts(b->plain_port)) {
			bench_progress("central-tls broker: pid %d, TLS "
				       "127.0.0.1:%d, plaintext (instruments) "
				       ":%d",
				       (int)b->pid, b->port, b->plain_port);
			return 0;
		}
		break;
	}
	fprintf(stderr, "vigie-bench: the TLS broker did not start\n");
	bench_log_tail(b->log, "central-tls");
	if (b->pid > 0)
		bench_child_stop(b->pid, 1000, NULL);
	b->pid = 0;
	return VIGIE_ENOCONN;
}

static void tls_broker_stop(struct tls_broker *b)
{
	if (b->pid > 0 && bench_child_stop(b->pid, 3000, NULL) != 0)
		fprintf(stderr, "vigie-bench: the TLS broker had to be "
				"killed\n");
	b->pid = 0;
}

/* ---- blocking libmosquitto clients, TLS or not ---- */

static void on_connack(struct mosquitto *mosq, void *ud, int rc, int flags,
		       const mosquitto_property *props)
{
	(void)mosq;
	(void)flags;
	(void)props;
	*(int *)ud = rc == 0 ? 1 : -1;
}

/* As bench_mosq_connect, with TLS and the client certificate when `p`. */
static int mosq_connect(int port, const struct pki *p, const char *client_id,
			int max_inflight, void *userdata,
			struct mosquitto **out)
{
	uint64_t deadline = bench_mono_us() + CONNECT_TIMEOUT_MS * 1000u;
	struct mosquitto *mosq = mosquitto_new(client_id, true, NULL);
	int connack = 0, rc = MOSQ_ERR_SUCCESS;

	if (!mosq)
		return VIGIE_ENOMEM;
	mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_int_option(mosq, MOSQ_OPT_SEND_MAXIMUM, max_inflight);
	if (p)
		rc = mosquitto_tls_set(mosq, p->ca, NULL, p->client_crt,
				       p->client_key, NULL);
	mosquitto_user_data_set(mosq, &connack);
	mosquitto_connect_v5_callback_set(mosq, on_connack);
	if (rc == MOSQ_ERR_SUCCESS)
		rc = mosquitto_connect(mosq, "127.0.0.1", port, 30);
	while (rc == MOSQ_ERR_SUCCESS && connack == 0 &&
	       bench_mono_us() < deadline)
		rc = mosquitto_loop(mosq, 50, 1);
	mosquitto_connect_v5_callback_set(mosq, NULL);
	mosquitto_user_data_set(mosq, userdata);
	if (rc != MOSQ_ERR_SUCCESS || connack != 1) {
		fprintf(stderr,
			"vigie-bench: %s: cannot connect to 127.0.0.1:%d%s: "
			"%s\n",
			client_id, port, p ? " (TLS)" : "",
			rc != MOSQ_ERR_SUCCESS ? mosquitto_strerror(rc)
			: connack              ? "refused"
					       : "no CONNACK");
		mosquitto_destroy(mosq);
		return VIGIE_ENOCONN;
	}
	*out = mosq;
	return 0;
}

/* ---- the relay that verifies, on TLS ---- */

static int signed_relay_conf(const struct bench_relay *r, const char *name,
			     const struct pki *p, const char *trust)
{
	FILE *f = fopen(r->conf, "w");

	if (!f) {
		fprintf(stderr, "vigie-bench: %s: %s\n", r->conf,
			strerror(errno));
		return VIGIE_ESYS;
	}
	/* relay_proc.c's configuration (the baseline's), plus TLS and the
	 * trust store. */
	fprintf(f,
		"# vigie-bench: %1$s\n"
		"id: %1$s\n"
		"database: %2$s\n"
		"broker:\n"
		"  host: 127.0.0.1\n"
		"  port: %3$d\n"
		"  client_id: vigie-relay-%1$s\n"
		"  session_expiry: 1h\n"
		"  keepalive: 10\n"
		"  tls: {ca: %6$s, cert: %7$s, key: %8$s}\n"
		"trust: %9$s\n"
		"require_signatures: true\n"
		"dispatch_resend: 1h\n"
		"dispatch_resend_max: 1h\n"
		"posts:\n"
		"  - {id: %4$s, name: Police post, backup: %4$s-2}\n"
		"  - {id: %4$s-2, name: Backup police post}\n"
		"  - {id: hq-bench, name: Museum security HQ}\n"
		"escalation:\n"
		"  - name: site-security\n"
		"    alert: true\n"
		"    ack_deadline: 30s\n"
		"    instructions: [\"Guards to the zone\", \"Check the "
		"cameras\"]\n"
		"  - {name: museum-hq, post: hq-bench, ack_deadline: 60s}\n"
		"  - {name: police, post: %4$s, ack_deadline: 60s, police: "
		"true}\n"
		"sites:\n"
		"  - id: %5$s\n"
		"    name: Bench museum\n"
		"    region: bench\n"
		"    address: \"Rue de Rivoli, 75001 Paris\"\n"
		"    location: {lat: 48.8606, lon: 2.3376}\n"
		"    zones:\n"
		"      - id: apollo-gallery\n"
		"        name: Galerie d'Apollon\n"
		"        kind: gallery\n"
		"        floor: \"1\"\n"
		"        facade: seine\n"
		"        location: {lat: 48.86085, lon: 2.33700}\n"
		"        cameras: [cam-apollo-east, cam-apollo-west]\n"
		"        action_plan: \"Close the grille; guards to both "
		"ends.\"\n",
		name, r->db, r->port, BENCH_POST, BENCH_SITE, p->ca,
		p->client_crt, p->client_key, trust);
	if (fclose(f) != 0) {
		fprintf(stderr, "vigie-bench: %s: %s\n", r->conf,
			strerror(errno));
		return VIGIE_ESYS;
	}
	return 0;
}

static void on_probe_receipt(struct mosquitto *mosq, void *ud,
			     const struct mosquitto_message *msg)
{
	(void)mosq;
	(void)msg;
	*(int *)ud = 1;
}

/* Until the relay receipts a probe event signed by `key` (published and
 * watched on the broker's plaintext listener), it dies, or the deadline. */
static int signed_relay_wait(struct bench_relay *r, int plain_port,
			     const struct vigie_sign_key *key)
{
	uint64_t deadline = bench_mono_us() + RELAY_READY_MS * 1000u;
	uint64_t next_probe = 0;
	char event_topic[VIGIE_TOPIC_MAX], receipt_topic[VIGIE_TOPIC_MAX];
	struct mosquitto *mosq = NULL;
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;
	uint8_t *buf = NULL;
	size_t len = 0;
	int got = 0, status = 0, rc;

	rc = vigie_topic_build(event_topic, sizeof(event_topic),
			       VIGIE_TOPIC_EVENT, BENCH_SITE, PROBE_NODE);
	if (rc == 0)
		rc = vigie_topic_build(receipt_topic, sizeof(receipt_topic),
				       VIGIE_TOPIC_RECEIPT, BENCH_SITE,
				       PROBE_NODE);
	ev.site = (char *)BENCH_SITE;
	ev.node = (char *)PROBE_NODE;
	ev.boot_id = 1;
	ev.seq = 1;
	ev.time_us = vigie_clock_now_us();
	ev.kind = VIGIE__V1__EVENT_KIND__KIND_TEST;
	ev.state = VIGIE__V1__EVENT_STATE__STATE_TEST;
	if (rc == 0)
		rc = vigie_sign_event(key, &ev, &buf, &len);
	if (rc == 0)
		rc = mosq_connect(plain_port, NULL, "vigie-bench-signed-probe",
				  10, &got, &mosq);
	if (rc)
		goto out_free;
	mosquitto_message_callback_set(mosq, on_probe_receipt);
	mosquitto_subscribe(mosq, NULL, receipt_topic, 1);
	rc = VIGIE_ENOCONN;
	while (bench_mono_us() < deadline) {
		if (!bench_child_alive(r->pid, &status)) {
			fprintf(stderr,
				"vigie-bench: vigie-relay exited (status "
				"%d)\n",
				WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			r->pid = 0;
			break;
		}
		if (bench_mono_us() >= next_probe) {
			mosquitto_publish(mosq, NULL, event_topic, (int)len,
					  buf, 1, false);
			next_probe = bench_mono_us() + PROBE_EVERY_US;
		}
		if (mosquitto_loop(mosq, 10, 1) != MOSQ_ERR_SUCCESS)
			break;
		if (got) {
			rc = 0;
			break;
		}
	}
	mosquitto_disconnect(mosq);
	mosquitto_destroy(mosq);
out_free:
	free(buf);
	return rc;
}

static int signed_relay_start(struct bench_relay *r, const char *name,
			      const struct tls_broker *b, const struct pki *p,
			      const char *trust,
			      const struct vigie_sign_key *probe)
{
	char dir[PATH_MAX], bin[PATH_MAX + 16], file[VIGIE_ID_MAX + 16];
	char *argv[] = {bin, (char *)"-c", r->conf, NULL};
	int rc;

	memset(r, 0, sizeof(*r));
	r->port = b->port;
	rc = bench_self_dir(dir, sizeof(dir));
	if (rc == 0 && snprintf(bin, sizeof(bin), "%s/vigie-relay", dir) >=
			       (int)sizeof(bin))
		rc = VIGIE_ETOOBIG;
	snprintf(file, sizeof(file), "%s.yaml", name);
	if (rc == 0)
		rc = bench_path(r->conf, sizeof(r->conf), file);
	snprintf(file, sizeof(file), "%s.db", name);
	if (rc == 0)
		rc = bench_path(r->db, sizeof(r->db), file);
	snprintf(file, sizeof(file), "%s.log", name);
	if (rc == 0)
		rc = bench_path(r->log, sizeof(r->log), file);
	if (rc == 0)
		rc = signed_relay_conf(r, name, p, trust);
	if (rc == 0)
		rc = bench_spawn(argv, r->log, &r->pid);
	if (rc)
		return rc;
	rc = signed_relay_wait(r, b->plain_port, probe);
	if (rc) {
		fprintf(stderr,
			"vigie-bench: vigie-relay %s did not receipt a signed "
			"probe within %u s\n",
			name, RELAY_READY_MS / 1000);
		bench_log_tail(r->log, "vigie-relay");
		bench_relay_stop(r);
		return rc;
	}
	bench_progress("vigie-relay %s: pid %d, TLS to :%d, verifying", name,
		       (int)r->pid, b->port);
	return 0;
}

/* ---- publishers of signed events ---- */

struct publisher {
	pthread_t thread;
	char node[VIGIE_ID_MAX + 1];
	char topic[VIGIE_TOPIC_MAX];
	char receipt_topic[VIGIE_TOPIC_MAX];
	struct vigie_sign_key key;
	struct bench_msgs msgs;
	struct mosquitto *mosq;
	atomic_int *go;
	uint64_t boot_id;
	uint64_t acked;     /* PUBACKs */
	uint64_t receipted; /* highest seq of boot_id the relay receipted */
	uint64_t done_us;   /* when receipted reached msgs.n */
	int subacked;
	int rc;
};

static void on_puback(struct mosquitto *mosq, void *ud, int mid)
{
	(void)mosq;
	(void)mid;
	((struct publisher *)ud)->acked++;
}

static void on_suback(struct mosquitto *mosq, void *ud, int mid, int n,
		      const int *granted)
{
	(void)mosq;
	(void)mid;
	(void)n;
	(void)granted;
	((struct publisher *)ud)->subacked = 1;
}

static void on_receipt(struct mosquitto *mosq, void *ud,
		       const struct mosquitto_message *msg)
{
	struct publisher *p = ud;
	Vigie__V1__Receipt *r;

	(void)mosq;
	r = vigie__v1__receipt__unpack(NULL, (size_t)msg->payloadlen,
				       msg->payload);
	if (!r)
		return;
	if (r->boot_id == p->boot_id && r->seq > p->receipted) {
		p->receipted = r->seq;
		if (p->receipted >= p->msgs.n && !p->done_us)
			p->done_us = bench_mono_us();
	}
	vigie__v1__receipt__free_unpacked(r, NULL);
}

/* Like a node: at most WINDOW events not PUBACKed and RECEIPT_WINDOW not
 * receipted (a node keeps everything unreceipted in its outbox and re-sends
 * it; a bare publisher that outran the relay would only see it shed). */
static void *publish_thread(void *arg)
{
	struct publisher *p = arg;
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 100000};
	uint64_t deadline, next_misc = 0, sent = 0;
	int rc = 0;

	while (!atomic_load(p->go))
		nanosleep(&ts, NULL);
	deadline = bench_mono_us() + TIMEOUT_MS * 1000u;
	mosquitto_publish_callback_set(p->mosq, on_puback);
	while (p->receipted < p->msgs.n) {
		bool room;

		while (sent < p->msgs.n && sent - p->acked < WINDOW &&
		       sent - p->receipted < RECEIPT_WINDOW) {
			int mrc = mosquitto_publish(p->mosq, NULL, p->topic,
						    (int)p->msgs.lens[sent],
						    p->msgs.payloads[sent], 1,
						    false);

			if (mrc != MOSQ_ERR_SUCCESS) {
				fprintf(stderr, "vigie-bench: publish: %s\n",
					mosquitto_strerror(mrc));
				rc = VIGIE_ENOCONN;
				goto out;
			}
			sent++;
		}
		if (bench_mono_us() >= deadline) {
			fprintf(stderr,
				"vigie-bench: %s: %llu of %llu events "
				"receipted in %u s\n",
				p->node, (unsigned long long)p->receipted,
				(unsigned long long)p->msgs.n,
				TIMEOUT_MS / 1000);
			rc = VIGIE_EIO;
			goto out;
		}
		room = sent < p->msgs.n && sent - p->acked < WINDOW &&
		       sent - p->receipted < RECEIPT_WINDOW;
		rc = bench_mosq_pump(p->mosq, room ? 0 : 1000, &next_misc);
		if (rc)
			goto out;
	}
out:
	mosquitto_publish_callback_set(p->mosq, NULL);
	p->rc = rc;
	return NULL;
}

static void publishers_free(struct publisher *pubs)
{
	for (unsigned i = 0; i < PUBLISHERS; i++) {
		bench_msgs_free(&pubs[i].msgs);
		vigie_sign_key_wipe(&pubs[i].key);
	}
}

/* Keys, and the trust store naming them and the probe's key. */
static int publishers_init(struct publisher *pubs,
			   const struct vigie_sign_key *probe,
			   const char *trust)
{
	char line[256];
	FILE *f;
	int rc = 0;

	memset(pubs, 0, PUBLISHERS * sizeof(*pubs));
	f = fopen(trust, "w");
	if (!f) {
		fprintf(stderr, "vigie-bench: %s: %s\n", trust,
			strerror(errno));
		return VIGIE_ESYS;
	}
	rc = vigie_sign_trust_line(probe, BENCH_SITE, PROBE_NODE, line,
				   sizeof(line));
	if (rc == 0)
		fputs(line, f);
	for (unsigned i = 0; rc == 0 && i < PUBLISHERS; i++) {
		struct publisher *p = &pubs[i];

		snprintf(p->node, sizeof(p->node), NODE "%u", i);
		rc = vigie_topic_build(p->topic, sizeof(p->topic),
				       VIGIE_TOPIC_EVENT, BENCH_SITE, p->node);
		if (rc == 0)
			rc = vigie_topic_build(
				p->receipt_topic, sizeof(p->receipt_topic),
				VIGIE_TOPIC_RECEIPT, BENCH_SITE, p->node);
		if (rc == 0 && vigie_sign_keygen(&p->key) != 0)
			rc = VIGIE_ESYS;
		if (rc == 0)
			rc = vigie_sign_trust_line(&p->key, BENCH_SITE, p->node,
						   line, sizeof(line));
		if (rc == 0)
			fputs(line, f);
	}
	if (fclose(f) != 0 && rc == 0)
		rc = VIGIE_ESYS;
	return rc;
}

/* One round's events, signed: seq 1..per_node of boot `boot_id`. */
static int publishers_encode(struct publisher *pubs, uint64_t per_node,
			     uint64_t boot_id)
{
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;
	int rc = 0;

	ev.site = (char *)BENCH_SITE;
	ev.boot_id = boot_id;
	ev.kind = VIGIE__V1__EVENT_KIND__KIND_TEST;
	ev.state = VIGIE__V1__EVENT_STATE__STATE_TEST;
	ev.zone = (char *)"apollo-gallery";
	ev.sensor = (char *)"gb-w2";
	ev.text = (char *)"periodic test";
	ev.source = (char *)"socket";
	ev.path = (char *)"primary";
	for (unsigned i = 0; rc == 0 && i < PUBLISHERS; i++) {
		struct publisher *p = &pubs[i];

		bench_msgs_free(&p->msgs);
		rc = bench_msgs_alloc(&p->msgs, per_node, false);
		p->msgs.topic = p->topic;
		p->boot_id = boot_id;
		ev.node = p->node;
		for (uint64_t k = 0; rc == 0 && k < per_node; k++) {
			ev.seq = k + 1;
			ev.time_us = vigie_clock_now_us();
			rc = vigie_sign_event(&p->key, &ev,
					      &p->msgs.payloads[k],
					      &p->msgs.lens[k]);
		}
	}
	return rc;
}

/* Connect every publisher (TLS when `tls`), subscribed to its Receipts,
 * then start them together; *elapsed_us: start to the Receipt that covered
 * the last event of the slowest. */
static int publishers_run(struct publisher *pubs, int port,
			  const struct pki *tls, uint64_t *elapsed_us)
{
	atomic_int go = 0;
	unsigned started = 0;
	uint64_t t0, last = 0;
	int rc = 0;

	for (unsigned i = 0; rc == 0 && i < PUBLISHERS; i++) {
		struct publisher *p = &pubs[i];
		char client_id[VIGIE_ID_MAX + 16];
		uint64_t deadline =
			bench_mono_us() + CONNECT_TIMEOUT_MS * 1000u;

		snprintf(client_id, sizeof(client_id), "vigie-bench-%s",
			 p->node);
		p->go = &go;
		p->rc = 0;
		p->acked = p->receipted = p->done_us = 0;
		p->subacked = 0;
		rc = mosq_connect(port, tls, client_id, (int)WINDOW, p,
				  &p->mosq);
		if (rc)
			break;
		mosquitto_message_callback_set(p->mosq, on_receipt);
		mosquitto_subscribe_callback_set(p->mosq, on_suback);
		if (mosquitto_subscribe(p->mosq, NULL, p->receipt_topic, 1) !=
		    MOSQ_ERR_SUCCESS)
			rc = VIGIE_ENOCONN;
		while (rc == 0 && !p->subacked && bench_mono_us() < deadline)
			if (mosquitto_loop(p->mosq, 10, 1) != MOSQ_ERR_SUCCESS)
				rc = VIGIE_ENOCONN;
		if (rc == 0 && !p->subacked)
			rc = VIGIE_ENOCONN;
	}
	for (unsigned i = 0; rc == 0 && i < PUBLISHERS; i++) {
		if (pthread_create(&pubs[i].thread, NULL, publish_thread,
				   &pubs[i]) != 0) {
			rc = VIGIE_ESYS;
			break;
		}
		started++;
	}
	t0 = bench_mono_us();
	/* Also when not all started: those that did run to completion, so
	 * the joins below never hang. */
	atomic_store(&go, 1);
	for (unsigned i = 0; i < started; i++) {
		pthread_join(pubs[i].thread, NULL);
		if (rc == 0)
			rc = pubs[i].rc;
		if (pubs[i].done_us > last)
			last = pubs[i].done_us;
	}
	for (unsigned i = 0; i < PUBLISHERS; i++) {
		if (!pubs[i].mosq)
			continue;
		mosquitto_disconnect(pubs[i].mosq);
		mosquitto_destroy(pubs[i].mosq);
		pubs[i].mosq = NULL;
	}
	if (rc == 0 && last > t0)
		*elapsed_us = last - t0;
	else if (rc == 0)
		rc = VIGIE_EIO;
	return rc;
}

/* One side of a round: publish to `port` (TLS when `tls`) until every
 * event is receipted. */
static int run_side(struct publisher *pubs, const char *what, int port,
		    const struct pki *tls, uint64_t per_node, double *rate)
{
	uint64_t total = per_node * PUBLISHERS, us = 0;
	int rc;

	rc = publishers_run(pubs, port, tls, &us);
	if (rc) {
		fprintf(stderr,
			"vigie-bench: relay.throughput_signed: %s: "
			"failed\n",
			what);
		return rc;
	}
	*rate = (double)total * 1e6 / (double)us;
	bench_progress("relay.throughput_signed: %s: %llu signed events "
		       "stored and receipted in %.2f s, %.0f/s",
		       what, (unsigned long long)total, (double)us / 1e6,
		       *rate);
	return 0;
}

struct signed_run {
	struct publisher pubs[PUBLISHERS];
	struct vigie_sign_key probe;
	struct pki pki;
	struct bench_broker plain;
	struct tls_broker tls;
	struct bench_relay base_relay, sig_relay;
	char trust[256];
};

static int signed_rounds(struct signed_run *s, uint64_t per_node,
			 unsigned rounds, double *signed_rate,
			 double *base_rate)
{
	int rc = 0;

	for (unsigned r = 0; rc == 0 && r < rounds; r++) {
		double base = 0, sig = 0;

		bench_progress("relay.throughput_signed: round %u of %u", r + 1,
			       rounds);
		rc = publishers_encode(s->pubs, per_node, r + 1);
		if (rc == 0)
			rc = run_side(s->pubs, "plaintext, not verified",
				      s->plain.port, NULL, per_node, &base);
		if (rc == 0)
			rc = run_side(s->pubs, "TLS, verified", s->tls.port,
				      &s->pki, per_node, &sig);
		if (base > *base_rate)
			*base_rate = base;
		if (sig > *signed_rate)
			*signed_rate = sig;
	}
	return rc;
}

int bench_relay_throughput_signed(const struct bench_opts *o)
{
	static struct signed_run s;
	uint64_t per_node = (o->quick ? N_QUICK : N_FULL) / PUBLISHERS;
	unsigned rounds = o->quick ? ROUNDS_QUICK : ROUNDS_FULL;
	double sig = 0, base = 0;
	int rc, stop_rc = 0;

	if (!bench_wanted(o, "relay.throughput_signed"))
		return 0;
	memset(&s, 0, sizeof(s));
	if (vigie_sign_init() != 0 || vigie_sign_keygen(&s.probe) != 0)
		return VIGIE_ESYS;
	rc = bench_path(s.trust, sizeof(s.trust), "trust-signed.txt");
	if (rc == 0)
		rc = publishers_init(s.pubs, &s.probe, s.trust);
	if (rc == 0)
		rc = pki_make(&s.pki);
	if (rc == 0)
		rc = bench_broker_start(&s.plain, "central-plain", false, NULL);
	if (rc == 0)
		rc = tls_broker_start(&s.tls, &s.pki);
	if (rc == 0)
		rc = bench_relay_start(&s.base_relay, "relay-plain",
				       s.plain.port);
	if (rc == 0)
		rc = signed_relay_start(&s.sig_relay, "relay-signed", &s.tls,
					&s.pki, s.trust, &s.probe);
	if (rc == 0) {
		bench_progress("relay.throughput_signed: %u publishers, %llu "
			       "signed events each, %u rounds",
			       PUBLISHERS, (unsigned long long)per_node,
			       rounds);
		rc = signed_rounds(&s, per_node, rounds, &sig, &base);
	}
	if (s.sig_relay.pid > 0) {
		stop_rc = bench_relay_stop(&s.sig_relay);
		bench_relay_report(&s.sig_relay);
	}
	if (s.base_relay.pid > 0) {
		if (bench_relay_stop(&s.base_relay) != 0 && stop_rc == 0)
			stop_rc = VIGIE_EIO;
		bench_relay_report(&s.base_relay);
	}
	tls_broker_stop(&s.tls);
	bench_broker_stop(&s.plain);
	publishers_free(s.pubs);
	vigie_sign_key_wipe(&s.probe);
	if (rc == 0)
		rc = stop_rc;
	if (rc)
		return rc;
	bench_progress("relay.throughput_signed: best rounds: TLS and "
		       "verification %.0f/s, both off %.0f/s",
		       sig, base);
	bench_emit(o, "relay.throughput_signed", sig, "events/s", base);
	return 0;
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
	int rc = mosq_connect(plain_port, NULL, client_id, 10, NULL, &mosq);

	if (rc)
		return rc;
	mosquitto_disconnect(mosq);
	mosquitto_loop(mosq, 10, 1);
	mosquitto_destroy(mosq);
	return 0;
}

/* Median µs from a drop to the next connect, over `drops` drops, of a
 * vigie_mqtt client on `port` (TLS with `p`). */
static int reconnect_median(const struct tls_broker *b, int port,
			    const struct pki *p, unsigned drops,
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
	mo.name = p ? "tls" : "plaintext";
	if (p) {
		mo.tls.cafile = p->ca;
		mo.tls.certfile = p->client_crt;
		mo.tls.keyfile = p->client_key;
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
		rc = take_over(b->plain_port, mo.client_id);
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

/* Median µs of a bare blocking libmosquitto connect (TCP, TLS when `p`,
 * CONNECT/CONNACK): what the connect costs without vigie_mqtt's loop. */
static int bare_connect_median(int port, const struct pki *p, unsigned n,
			       double *median_ms)
{
	uint32_t us[DROPS_FULL];
	unsigned got = 0;

	if (n > DROPS_FULL)
		n = DROPS_FULL;
	for (unsigned i = 0; i < n; i++) {
		struct mosquitto *mosq = NULL;
		uint64_t t0 = bench_mono_us();
		int rc = mosq_connect(port, p, "vigie-bench-bare-connect", 10,
				      NULL, &mosq);

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
	struct tls_broker b;
	struct pki p;
	int rc;

	if (!bench_wanted(o, "security.tls_reconnect_ms"))
		return 0;
	memset(&b, 0, sizeof(b));
	bench_progress("security.tls_reconnect_ms: %u drops on each listener, "
		       "each logged as a lost connection",
		       drops);
	rc = pki_make(&p);
	if (rc == 0)
		rc = tls_broker_start(&b, &p);
	/* With the node's backoff, then without it (the connect alone). */
	if (rc == 0)
		rc = reconnect_median(&b, b.plain_port, NULL, drops, 100,
				      &plain_ms);
	if (rc == 0)
		rc = reconnect_median(&b, b.port, &p, drops, 100, &tls_ms);
	if (rc == 0)
		rc = reconnect_median(&b, b.plain_port, NULL, drops, 1,
				      &plain_fast);
	if (rc == 0)
		rc = reconnect_median(&b, b.port, &p, drops, 1, &tls_fast);
	if (rc == 0)
		rc = bare_connect_median(b.plain_port, NULL, drops,
					 &plain_bare);
	if (rc == 0)
		rc = bare_connect_median(b.port, &p, drops, &tls_bare);
	tls_broker_stop(&b);
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
