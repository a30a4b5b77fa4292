/* Mosquitto brokers for the figures: configured like broker-config/'s
 * production templates where it matters for speed (persistence saved each
 * second, TCP_NODELAY, queue and in-flight limits, the bridge, the TLS
 * listener requiring client certificates), but anonymous and on 127.0.0.1
 * only, and started like production brokers with libvigie-nodelay
 * preloaded. A broker with TLS keeps a plaintext listener for the bench's
 * instruments (probes, baselines). Each listener is on a port found free by
 * binding port 0; readiness is a TCP connect polled with a deadline.
 *
 * Two properties of Mosquitto 2.0.11 shaped those templates:
 * - autosave_on_changes true rewrites and fsyncs the whole persistence file
 *   after every QoS 1 message (one open, write, fsync, rename per message
 *   under strace): about 2000 messages/s here. Production saves each second.
 * - the bridge's outgoing socket gets no TCP_NODELAY (set_tcp_nodelay
 *   covers accepted sockets only), so once Receipts flow down the bridge
 *   while events flow up, Nagle holds events for up to ~20 ms. Production
 *   preloads broker-config/nodelay.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "bench.h"
#include "vigie/error.h"

#define MOSQUITTO_BIN      "/usr/sbin/mosquitto"
#define READY_TIMEOUT_MS   5000
#define CONNECT_TIMEOUT_MS 5000
/* A port found free may be taken before mosquitto binds it. */
#define START_ATTEMPTS 3
/* broker-config's default; the node and the baseline share it. */
#define MAX_INFLIGHT 100

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
	sa.sin_port = 0;
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

static int write_conf(const struct bench_broker *b, const char *persist_dir,
		      const struct bench_broker_options *opts)
{
	FILE *f = fopen(b->conf, "w");

	if (!f) {
		fprintf(stderr, "vigie-bench: %s: %s\n", b->conf,
			strerror(errno));
		return VIGIE_ESYS;
	}
	fprintf(f, "# vigie-bench: %s broker\n", b->name);
	/* Started as root, mosquitto drops to user "mosquitto", which could
	 * not write the persistence directory we made. */
	if (geteuid() == 0)
		fprintf(f, "user root\n");
	fprintf(f,
		"per_listener_settings false\n"
		"allow_anonymous true\n"
		"listener %d 127.0.0.1\n"
		"max_queued_messages 1000000\n"
		"max_queued_bytes 0\n"
		"max_inflight_messages %d\n"
		"max_inflight_bytes 0\n"
		"queue_qos0_messages false\n"
		"set_tcp_nodelay true\n"
		"persistence %s\n"
		"persistence_location %s/\n"
		"persistence_file mosquitto.db\n"
		"autosave_on_changes false\n"
		"autosave_interval 1\n"
		"log_dest stderr\n"
		"log_type error\n"
		"log_type warning\n"
		"log_type notice\n"
		"log_timestamp true\n",
		b->port, MAX_INFLIGHT, opts->persistence ? "true" : "false",
		persist_dir);
	/* broker-config's TLS listener (--certfile --cafile
	 * [--require-certificate]); per_listener_settings false: the settings
	 * above hold for it too. Before the bridge, whose section runs to the
	 * end of the file. */
	if (opts->tls)
		fprintf(f,
			"listener %d 127.0.0.1\n"
			"cafile %s\n"
			"certfile %s\n"
			"keyfile %s\n"
			"tls_version tlsv1.2\n"
			"require_certificate %s\n",
			b->tls_port, opts->tls->ca, opts->tls->cert,
			opts->tls->key,
			opts->require_certificate ? "true" : "false");
	if (opts->bridge)
		fprintf(f,
			"connection vigie-bridge-%1$s\n"
			"address 127.0.0.1:%2$d\n"
			"bridge_protocol_version mqttv311\n"
			"cleansession false\n"
			"local_cleansession false\n"
			"remote_clientid vigie-bridge-%1$s\n"
			"local_clientid vigie-bridge-%1$s-local\n"
			"try_private true\n"
			"notifications true\n"
			"start_type automatic\n"
			"restart_timeout 1 10\n"
			"keepalive_interval 5\n"
			"topic vigie/v1/site/%1$s/# out 1\n"
			"topic vigie/v1/relay/%1$s/# in 1\n",
			opts->bridge->site, opts->bridge->central_port);
	if (fclose(f) != 0) {
		fprintf(stderr, "vigie-bench: %s: %s\n", b->conf,
			strerror(errno));
		return VIGIE_ESYS;
	}
	return 0;
}

/* Polls a TCP connect until the broker listens, it dies, or the deadline. */
static int wait_ready(struct bench_broker *b)
{
	uint64_t deadline = bench_mono_us() + READY_TIMEOUT_MS * 1000u;
	struct timespec step = {.tv_sec = 0, .tv_nsec = 10 * 1000000L};

	while (bench_mono_us() < deadline) {
		int status = 0;

		if (!bench_child_alive(b->pid, &status)) {
			b->pid = 0;
			return VIGIE_ENOCONN;
		}
		if (port_accepts(b->port) &&
		    (!b->tls_port || port_accepts(b->tls_port)))
			return 0;
		nanosleep(&step, NULL);
	}
	return VIGIE_ENOCONN;
}

/* "LD_PRELOAD=<build>/lib/libvigie-nodelay.so", next to our bin/ folder
 * (build tree) or in lib/vigie/ (installed). */
static int nodelay_preload(char *buf, size_t len)
{
	static const char *const rel[] = {"../lib/libvigie-nodelay.so",
					  "../lib/vigie/libvigie-nodelay.so"};
	char dir[PATH_MAX];
	int rc = bench_self_dir(dir, sizeof(dir));

	if (rc)
		return rc;
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		if (snprintf(buf, len, "LD_PRELOAD=%s/%s", dir, rel[i]) >=
		    (int)len)
			return VIGIE_ETOOBIG;
		if (access(buf + strlen("LD_PRELOAD="), R_OK) == 0)
			return 0;
	}
	fprintf(stderr,
		"vigie-bench: libvigie-nodelay.so not found near %s "
		"(build the vigie_nodelay target)\n",
		dir);
	return VIGIE_ENOTFOUND;
}

int bench_broker_start(struct bench_broker *b, const char *name,
		       const struct bench_broker_options *opts)
{
	static const struct bench_broker_options defaults = {0};
	char persist_dir[256], file[64];
	char preload[PATH_MAX + 16];
	char *argv[] = {(char *)"/usr/bin/env", preload, (char *)MOSQUITTO_BIN,
			(char *)"-c",           b->conf, NULL};
	int rc;

	if (!opts)
		opts = &defaults;
	memset(b, 0, sizeof(*b));
	snprintf(b->name, sizeof(b->name), "%s", name);
	snprintf(file, sizeof(file), "%s.conf", name);
	rc = bench_path(b->conf, sizeof(b->conf), file);
	snprintf(file, sizeof(file), "%s.log", name);
	if (rc == 0)
		rc = bench_path(b->log, sizeof(b->log), file);
	snprintf(file, sizeof(file), "%s-db", name);
	if (rc == 0)
		rc = bench_path(persist_dir, sizeof(persist_dir), file);
	if (rc)
		return rc;
	if (mkdir(persist_dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "vigie-bench: %s: %s\n", persist_dir,
			strerror(errno));
		return VIGIE_ESYS;
	}
	rc = nodelay_preload(preload, sizeof(preload));
	if (rc)
		return rc;
	if (access(MOSQUITTO_BIN, X_OK) != 0) {
		fprintf(stderr, "vigie-bench: %s: %s\n", MOSQUITTO_BIN,
			strerror(errno));
		return VIGIE_ESYS;
	}
	for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
		rc = free_port(&b->port);
		/* Two ports found free one after the other can be the same. */
		b->tls_port = 0;
		while (rc == 0 && opts->tls &&
		       (b->tls_port == 0 || b->tls_port == b->port))
			rc = free_port(&b->tls_port);
		if (rc == 0)
			rc = write_conf(b, persist_dir, opts);
		if (rc == 0)
			rc = bench_spawn(argv, b->log, &b->pid);
		if (rc)
			return rc;
		rc = wait_ready(b);
		if (rc == 0) {
			char tls[32] = "";

			if (b->tls_port)
				snprintf(tls, sizeof(tls), ", TLS :%d",
					 b->tls_port);
			bench_progress("%s broker: pid %d, 127.0.0.1:%d%s",
				       b->name, (int)b->pid, b->port, tls);
			return 0;
		}
		if (b->pid) {
			/* Alive but not listening within the deadline. */
			bench_child_stop(b->pid, 1000, NULL);
			b->pid = 0;
			break;
		}
		/* It exited: maybe the port was taken meanwhile. */
	}
	fprintf(stderr, "vigie-bench: %s broker did not start\n", b->name);
	bench_log_tail(b->log, b->name);
	return VIGIE_ENOCONN;
}

int bench_broker_stop(struct bench_broker *b)
{
	int status = 0, rc;

	if (b->pid <= 0)
		return 0;
	rc = bench_child_stop(b->pid, 3000, &status);
	b->pid = 0;
	if (rc)
		fprintf(stderr, "vigie-bench: %s broker had to be killed\n",
			b->name);
	return rc;
}

/* ---- blocking libmosquitto clients ---- */

static void on_connack(struct mosquitto *mosq, void *ud, int rc, int flags,
		       const mosquitto_property *props)
{
	(void)mosq;
	(void)flags;
	(void)props;
	*(int *)ud = rc == 0 ? 1 : -1;
}

int bench_mosq_connect(int port, const char *client_id, int max_inflight,
		       void *userdata, struct mosquitto **out)
{
	return bench_mosq_connect_tls(port, NULL, client_id, max_inflight,
				      userdata, out);
}

int bench_mosq_connect_tls(int port, const struct bench_tls *tls,
			   const char *client_id, int max_inflight,
			   void *userdata, struct mosquitto **out)
{
	uint64_t deadline = bench_mono_us() + CONNECT_TIMEOUT_MS * 1000u;
	struct mosquitto *mosq = mosquitto_new(client_id, true, NULL);
	int connack = 0, rc = MOSQ_ERR_SUCCESS;

	if (!mosq)
		return VIGIE_ENOMEM;
	mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_int_option(mosq, MOSQ_OPT_SEND_MAXIMUM, max_inflight);
	if (tls)
		rc = mosquitto_tls_set(mosq, tls->ca, NULL, tls->cert, tls->key,
				       NULL);
	/* The CONNACK flag is the user data until connected. */
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
			client_id, port, tls ? " (TLS)" : "",
			rc != MOSQ_ERR_SUCCESS ? mosquitto_strerror(rc)
			: connack              ? "refused"
					       : "no CONNACK");
		mosquitto_destroy(mosq);
		return VIGIE_ENOCONN;
	}
	*out = mosq;
	return 0;
}

static void on_probe(struct mosquitto *mosq, void *ud,
		     const struct mosquitto_message *msg)
{
	(void)mosq;
	(void)msg;
	*(int *)ud = 1;
}

int bench_bridge_wait(const struct bench_broker *site,
		      const struct bench_broker *central, const char *site_id,
		      unsigned timeout_ms)
{
	uint64_t deadline = bench_mono_us() + (uint64_t)timeout_ms * 1000u;
	uint64_t next_probe = 0;
	struct mosquitto *up = NULL, *down = NULL;
	char up_topic[VIGIE_TOPIC_MAX], down_topic[VIGIE_TOPIC_MAX];
	int got_up = 0, got_down = 0, rc;

	/* Under the bridged subtrees, outside every topic the figures use. */
	snprintf(up_topic, sizeof(up_topic), "vigie/v1/site/%s/bench/probe",
		 site_id);
	snprintf(down_topic, sizeof(down_topic),
		 "vigie/v1/relay/%s/bench/probe", site_id);
	rc = bench_mosq_connect(central->port, "bench-probe-central", 10,
				&got_up, &up);
	if (rc == 0)
		rc = bench_mosq_connect(site->port, "bench-probe-site", 10,
					&got_down, &down);
	if (rc)
		goto out_destroy;
	mosquitto_message_callback_set(up, on_probe);
	mosquitto_message_callback_set(down, on_probe);
	mosquitto_subscribe(up, NULL, up_topic, 0);
	mosquitto_subscribe(down, NULL, down_topic, 0);
	rc = VIGIE_ENOCONN;
	while (bench_mono_us() < deadline) {
		/* Re-sent until it arrives: a probe sent before the bridge
		 * subscribed on the central broker is simply gone. */
		if (bench_mono_us() >= next_probe) {
			if (!got_up)
				mosquitto_publish(down, NULL, up_topic, 5,
						  "probe", 0, false);
			if (!got_down)
				mosquitto_publish(up, NULL, down_topic, 5,
						  "probe", 0, false);
			next_probe = bench_mono_us() + 100000u;
		}
		if (mosquitto_loop(up, 5, 1) != MOSQ_ERR_SUCCESS ||
		    mosquitto_loop(down, 5, 1) != MOSQ_ERR_SUCCESS)
			break;
		if (got_up && got_down) {
			rc = 0;
			break;
		}
	}
	if (rc)
		fprintf(stderr,
			"vigie-bench: bridge %s: %s did not pass within %u "
			"ms\n",
			site_id,
			!got_up ? "site -> central" : "central -> site",
			timeout_ms);
out_destroy:
	if (up) {
		mosquitto_disconnect(up);
		mosquitto_destroy(up);
	}
	if (down) {
		mosquitto_disconnect(down);
		mosquitto_destroy(down);
	}
	return rc;
}

int bench_mesh_start(const struct bench_opts *o, const char *site_name,
		     struct bench_broker *central, struct bench_broker *site)
{
	struct bench_bridge bridge = {.site = BENCH_SITE};
	struct bench_broker_options site_opts = {
		.persistence = !o->no_persistence,
		.bridge = &bridge,
	};
	int rc;

	memset(site, 0, sizeof(*site));
	/* The site broker persists as in production; the central one is
	 * whatever the deployment scales to (DESIGN.md, "Scale"), and its disk
	 * is not what these figures measure. */
	rc = bench_broker_start(central, "central", NULL);
	if (rc)
		return rc;
	bridge.central_port = central->port;
	rc = bench_broker_start(site, site_name, &site_opts);
	if (rc == 0)
		rc = bench_bridge_wait(site, central, BENCH_SITE,
				       BENCH_BRIDGE_TIMEOUT_MS);
	return rc;
}
