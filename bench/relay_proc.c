/* The real vigie-relay (next to vigie-bench) as a child of the bench, for
 * the relay.* figures: its configuration is written into the temporary
 * directory, its SQLite database too, and it runs with its defaults where
 * production has them (synchronous=full, info log, MQTT 5 persistent
 * session). The escalation ladder is examples/relay.yaml's: site security
 * (a SiteAlert), museum HQ, then the police post, so an immediate alarm
 * costs the relay what it costs in service: one alert and two dispatches.
 *
 * On request it connects with TLS and a client certificate and verifies
 * signatures against a trust store (relay.throughput_signed): the same
 * configuration with broker.tls, trust and require_signatures added.
 *
 * Readiness is a probe event published at the central broker (on its
 * plaintext listener) and re-sent until its Receipt comes back: then the
 * relay is connected, subscribed and its store commits. The probe is signed
 * when the relay requires signatures. Stopped by PID with SIGTERM; a relay
 * that does not exit cleanly fails the figure. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "bench.h"
#include "vigie/clock.h"
#include "vigie/codec.h"
#include "vigie/error.h"
#include "vigie/sign.h"

#define READY_TIMEOUT_MS 15000
#define PROBE_EVERY_US   200000u
#define STOP_TIMEOUT_MS  15000

static int relay_binary(char *buf, size_t len)
{
	char dir[PATH_MAX];
	int rc = bench_self_dir(dir, sizeof(dir));

	if (rc)
		return rc;
	if (snprintf(buf, len, "%s/vigie-relay", dir) >= (int)len)
		return VIGIE_ETOOBIG;
	if (access(buf, X_OK) != 0) {
		fprintf(stderr,
			"vigie-bench: %s: %s (build the vigie-relay target)\n",
			buf, strerror(errno));
		return VIGIE_ESYS;
	}
	return 0;
}

static int write_conf(const struct bench_relay *r, const char *name,
		      const struct bench_relay_options *opts)
{
	FILE *f = fopen(r->conf, "w");

	if (!f) {
		fprintf(stderr, "vigie-bench: %s: %s\n", r->conf,
			strerror(errno));
		return VIGIE_ESYS;
	}
	fprintf(f,
		"# vigie-bench: %1$s\n"
		"id: %1$s\n"
		"database: %2$s\n"
		"broker:\n"
		"  host: 127.0.0.1\n"
		"  port: %3$d\n"
		"  client_id: vigie-relay-%1$s\n"
		"  session_expiry: 1h\n"
		"  keepalive: 10\n",
		name, r->db, r->port);
	if (opts->tls)
		fprintf(f, "  tls: {ca: %s, cert: %s, key: %s}\n",
			opts->tls->ca, opts->tls->cert, opts->tls->key);
	if (opts->trust)
		fprintf(f, "trust: %s\n", opts->trust);
	if (opts->require_signatures)
		fprintf(f, "require_signatures: true\n");
	/* Dispatches are not re-sent during a run (nobody acknowledges):
	 * each one the post sees is a first send. */
	fprintf(f,
		"dispatch_resend: 1h\n"
		"dispatch_resend_max: 1h\n"
		"posts:\n"
		"  - {id: %1$s, name: Police post, backup: %1$s-2}\n"
		"  - {id: %1$s-2, name: Backup police post}\n"
		"  - {id: hq-bench, name: Museum security HQ}\n"
		"escalation:\n"
		"  - name: site-security\n"
		"    alert: true\n"
		"    ack_deadline: 30s\n"
		"    instructions: [\"Guards to the zone\", \"Check the "
		"cameras\"]\n"
		"  - {name: museum-hq, post: hq-bench, ack_deadline: 60s}\n"
		"  - {name: police, post: %1$s, ack_deadline: 60s, police: "
		"true}\n"
		"sites:\n"
		"  - id: %2$s\n"
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
		BENCH_POST, BENCH_SITE);
	if (fclose(f) != 0) {
		fprintf(stderr, "vigie-bench: %s: %s\n", r->conf,
			strerror(errno));
		return VIGIE_ESYS;
	}
	return 0;
}

static void sleep_us(uint64_t us)
{
	struct timespec ts = {.tv_sec = (time_t)(us / 1000000u),
			      .tv_nsec = (long)(us % 1000000u) * 1000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void on_probe_receipt(struct mosquitto *mosq, void *ud,
			     const struct mosquitto_message *msg)
{
	(void)mosq;
	(void)msg;
	*(int *)ud = 1;
}

/* Until the relay receipts the probe event (published and watched on
 * `probe_port`, signed by `key` unless NULL), it dies, or the deadline. */
static int wait_ready(struct bench_relay *r, int probe_port,
		      const struct vigie_sign_key *key)
{
	uint64_t deadline = bench_mono_us() + READY_TIMEOUT_MS * 1000u;
	uint64_t next_probe = 0;
	char event_topic[VIGIE_TOPIC_MAX], receipt_topic[VIGIE_TOPIC_MAX];
	struct mosquitto *mosq = NULL;
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;
	uint8_t *buf = NULL;
	size_t len = 0;
	int got = 0, status = 0, rc;

	rc = vigie_topic_build(event_topic, sizeof(event_topic),
			       VIGIE_TOPIC_EVENT, BENCH_SITE, BENCH_PROBE_NODE);
	if (rc == 0)
		rc = vigie_topic_build(receipt_topic, sizeof(receipt_topic),
				       VIGIE_TOPIC_RECEIPT, BENCH_SITE,
				       BENCH_PROBE_NODE);
	ev.site = (char *)BENCH_SITE;
	ev.node = (char *)BENCH_PROBE_NODE;
	ev.boot_id = 1;
	ev.seq = 1;
	ev.time_us = vigie_clock_now_us();
	ev.kind = VIGIE__V1__EVENT_KIND__KIND_TEST;
	ev.state = VIGIE__V1__EVENT_STATE__STATE_TEST;
	if (rc == 0 && key)
		rc = vigie_sign_event(key, &ev, &buf, &len);
	else if (rc == 0)
		rc = vigie_event_encode(&ev, NULL, 0, NULL, &buf, &len);
	if (rc == 0)
		rc = bench_mosq_connect(probe_port, "vigie-bench-relay-probe",
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
		/* Re-sent (same identity: a repeat is re-receipted) until
		 * the relay has subscribed and answers. */
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

int bench_relay_start(struct bench_relay *r, const char *name, int port,
		      const struct bench_relay_options *opts)
{
	static const struct bench_relay_options defaults = {0};
	char bin[PATH_MAX], file[VIGIE_ID_MAX + 16];
	char *argv[] = {bin, (char *)"-c", r->conf, NULL};
	int rc;

	if (!opts)
		opts = &defaults;
	memset(r, 0, sizeof(*r));
	r->port = port;
	snprintf(file, sizeof(file), "%s.yaml", name);
	rc = relay_binary(bin, sizeof(bin));
	if (rc == 0)
		rc = bench_path(r->conf, sizeof(r->conf), file);
	snprintf(file, sizeof(file), "%s.db", name);
	if (rc == 0)
		rc = bench_path(r->db, sizeof(r->db), file);
	snprintf(file, sizeof(file), "%s.log", name);
	if (rc == 0)
		rc = bench_path(r->log, sizeof(r->log), file);
	if (rc == 0)
		rc = write_conf(r, name, opts);
	if (rc == 0)
		rc = bench_spawn(argv, r->log, &r->pid);
	if (rc)
		return rc;
	rc = wait_ready(r, opts->probe_port ? opts->probe_port : port,
			opts->probe_key);
	if (rc) {
		fprintf(stderr,
			"vigie-bench: vigie-relay %s did not receipt a "
			"probe event within %d s\n",
			name, READY_TIMEOUT_MS / 1000);
		bench_log_tail(r->log, "vigie-relay");
		bench_relay_stop(r);
		return rc;
	}
	bench_progress("vigie-relay %s: pid %d, database %s%s%s", name,
		       (int)r->pid, r->db, opts->tls ? ", TLS" : "",
		       opts->require_signatures ? ", verifying signatures"
						: "");
	return 0;
}

int bench_relay_stop(struct bench_relay *r)
{
	int status = 0, rc;

	if (r->pid <= 0)
		return 0;
	rc = bench_child_stop(r->pid, STOP_TIMEOUT_MS, &status);
	r->pid = 0;
	if (rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(stderr,
		"vigie-bench: vigie-relay did not exit cleanly on SIGTERM "
		"(status 0x%x)\n",
		status);
	bench_log_tail(r->log, "vigie-relay");
	return VIGIE_EIO;
}

int bench_relay_rss_mb(const struct bench_relay *r, unsigned settle_ms,
		       double *mb)
{
	unsigned long kib = 0, max_kib = 0;
	uint64_t end = bench_mono_us() + (uint64_t)settle_ms * 1000u;
	int rc;

	/* The largest of a few samples: memory the relay frees again right
	 * after a burst (SQLite's page cache stays) is still its footprint. */
	do {
		rc = bench_rss_kib(r->pid, &kib);
		if (rc)
			return rc;
		if (kib > max_kib)
			max_kib = kib;
		if (bench_mono_us() < end)
			sleep_us(50000);
	} while (bench_mono_us() < end);
	*mb = (double)max_kib / 1024.0;
	return 0;
}

void bench_relay_report(const struct bench_relay *r)
{
	char line[1024], last[1024] = "";
	FILE *f = fopen(r->log, "r");

	if (!f)
		return;
	/* The relay logs its counters when it stops. */
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " stats: "))
			memcpy(last, line, sizeof(last));
	fclose(f);
	last[strcspn(last, "\n")] = '\0';
	if (last[0])
		bench_progress("vigie-relay %s", strstr(last, "stats: "));
}
