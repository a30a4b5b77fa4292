/* The baselines: a bare libmosquitto QoS 1 publisher, no outbox, no loop
 * library, driven by poll(2) the way libmosquitto's own examples are. It
 * publishes the same SignedEvent bytes the node would, to the same broker,
 * through the same relay stand-in, so the ratio shows what the node adds. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

#include "bench.h"
#include "vigie/clock.h"
#include "vigie/codec.h"
#include "vigie/error.h"

/* vigie_mqtt's default, so both sides have as many PUBACKs outstanding. */
#define MAX_INFLIGHT 1000
/* Publishes per pass between two polls. */
#define CHUNK           256
#define RATE_TIMEOUT_MS 120000

int bench_bare_payload(const char *node, uint64_t boot_id, uint64_t seq,
		       uint64_t time_us, uint8_t **out, size_t *len)
{
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;
	Vigie__V1__Attribute a[2], *ap[2];

	/* Field for field what node/node.c makes of bench_node_open's line. */
	for (int i = 0; i < 2; i++) {
		vigie__v1__attribute__init(&a[i]);
		ap[i] = &a[i];
	}
	a[0].key = (char *)"tool";
	a[0].value = (char *)"angle-grinder";
	a[1].key = (char *)"entry";
	a[1].value = (char *)"window";
	ev.site = (char *)BENCH_SITE;
	ev.node = (char *)node;
	ev.boot_id = boot_id;
	ev.seq = seq;
	ev.time_us = time_us;
	ev.kind = VIGIE__V1__EVENT_KIND__KIND_GLASS_BREAK;
	ev.state = VIGIE__V1__EVENT_STATE__STATE_ALARM;
	ev.zone = (char *)"apollo-gallery";
	ev.sensor = (char *)"gb-w2";
	ev.text = (char *)"window cut";
	ev.attributes = ap;
	ev.n_attributes = 2;
	ev.source = (char *)"socket";
	ev.source_code = (char *)"";
	ev.path = (char *)"primary";
	return vigie_event_encode(&ev, NULL, 0, NULL, out, len);
}

int bench_mosq_pump(struct mosquitto *mosq, int timeout_us, uint64_t *next_misc)
{
	struct pollfd pfd = {.fd = mosquitto_socket(mosq), .events = POLLIN};
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)timeout_us * 1000L};
	int rc = MOSQ_ERR_SUCCESS;

	if (pfd.fd < 0)
		return VIGIE_ENOCONN;
	if (mosquitto_want_write(mosq))
		pfd.events |= POLLOUT;
	if (ppoll(&pfd, 1, &ts, NULL) < 0 && errno != EINTR)
		return VIGIE_ENOCONN;
	if (pfd.revents & (POLLIN | POLLERR | POLLHUP))
		rc = mosquitto_loop_read(mosq, 1);
	if (rc == MOSQ_ERR_SUCCESS && (pfd.revents & POLLOUT))
		rc = mosquitto_loop_write(mosq, 1);
	if (rc == MOSQ_ERR_SUCCESS && bench_mono_us() >= *next_misc) {
		rc = mosquitto_loop_misc(mosq);
		*next_misc = bench_mono_us() + 1000000u;
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "vigie-bench: bare publisher: %s\n",
			mosquitto_strerror(rc));
		return VIGIE_ENOCONN;
	}
	return 0;
}

/* Connected, and subscribed to its Receipts like a node: they are ignored,
 * but the site broker then delivers them as it does to the node. The
 * SUBSCRIBE goes out before any event, so no receipt can precede it. */
static int bare_connect(int port, const char *node, struct mosquitto **out)
{
	char client_id[VIGIE_ID_MAX + 16], topic[VIGIE_TOPIC_MAX];
	int rc, mrc;

	rc = vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_RECEIPT,
			       BENCH_SITE, node);
	if (rc)
		return rc;
	snprintf(client_id, sizeof(client_id), "vigie-bench-%s", node);
	rc = bench_mosq_connect(port, client_id, MAX_INFLIGHT, NULL, out);
	if (rc)
		return rc;
	mrc = mosquitto_subscribe(*out, NULL, topic, 1);
	if (mrc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "vigie-bench: bare subscribe: %s\n",
			mosquitto_strerror(mrc));
		mosquitto_destroy(*out);
		*out = NULL;
		return VIGIE_ENOCONN;
	}
	return 0;
}

static void free_payloads(uint8_t **p, uint64_t n)
{
	for (uint64_t i = 0; p && i < n; i++)
		free(p[i]);
	free(p);
}

int bench_bare_rate(int port, const char *node, uint64_t n, uint64_t window,
		    struct bench_sink *relay, uint64_t *elapsed_us)
{
	char topic[VIGIE_TOPIC_MAX];
	struct mosquitto *mosq = NULL;
	uint8_t **payloads = calloc(n, sizeof(*payloads));
	size_t *lens = calloc(n, sizeof(*lens));
	uint64_t sent = 0, t0, deadline, next_misc = 0;
	int rc;

	if (!payloads || !lens) {
		rc = VIGIE_ENOMEM;
		goto out_free;
	}
	rc = vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_EVENT,
			       BENCH_SITE, node);
	/* Encoded beforehand: the baseline is the transport alone. */
	for (uint64_t i = 0; rc == 0 && i < n; i++)
		rc = bench_bare_payload(node, 1, i + 1, vigie_clock_now_us(),
					&payloads[i], &lens[i]);
	if (rc)
		goto out_free;
	rc = bare_connect(port, node, &mosq);
	if (rc)
		goto out_free;
	t0 = bench_mono_us();
	deadline = t0 + RATE_TIMEOUT_MS * 1000u;
	for (;;) {
		uint64_t received = bench_sink_received(relay);
		bool room;

		if (received >= n)
			break;
		if (bench_mono_us() >= deadline) {
			fprintf(stderr,
				"vigie-bench: bare publisher: %llu of %llu "
				"events arrived in %d s\n",
				(unsigned long long)received,
				(unsigned long long)n, RATE_TIMEOUT_MS / 1000);
			rc = VIGIE_EIO;
			goto out_destroy;
		}
		for (int k = 0;
		     k < CHUNK && sent < n && sent - received < window;
		     k++, sent++) {
			int mrc = mosquitto_publish(mosq, NULL, topic,
						    (int)lens[sent],
						    payloads[sent], 1, false);

			if (mrc != MOSQ_ERR_SUCCESS) {
				fprintf(stderr,
					"vigie-bench: bare publish: %s\n",
					mosquitto_strerror(mrc));
				rc = VIGIE_ENOCONN;
				goto out_destroy;
			}
		}
		room = sent < n && sent - received < window;
		rc = bench_mosq_pump(mosq, room ? 0 : 1000, &next_misc);
		if (rc)
			goto out_destroy;
	}
	*elapsed_us = bench_sink_last_new_us(relay) - t0;
out_destroy:
	mosquitto_disconnect(mosq);
	mosquitto_destroy(mosq);
out_free:
	free_payloads(payloads, n);
	free(lens);
	return rc;
}

int bench_bare_paced(int port, const char *node, uint64_t n, double rate,
		     struct bench_sink *relay, unsigned drain_ms)
{
	char topic[VIGIE_TOPIC_MAX];
	struct mosquitto *mosq = NULL;
	uint64_t sent = 0, t0, deadline, next_misc = 0;
	double period_us = 1e6 / rate;
	int rc;

	rc = vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_EVENT,
			       BENCH_SITE, node);
	if (rc)
		return rc;
	rc = bare_connect(port, node, &mosq);
	if (rc)
		return rc;
	t0 = bench_mono_us();
	while (sent < n) {
		uint64_t now = bench_mono_us();
		uint64_t due_at = t0 + (uint64_t)((double)sent * period_us);
		int wait_us;

		if (now >= due_at) {
			uint8_t *buf;
			size_t len;
			int mrc;

			/* Stamped, encoded and published at once, as the node
			 * stamps an event when it is submitted. */
			rc = bench_bare_payload(node, 1, sent + 1,
						vigie_clock_now_us(), &buf,
						&len);
			if (rc)
				goto out_destroy;
			mrc = mosquitto_publish(mosq, NULL, topic, (int)len,
						buf, 1, false);
			free(buf);
			if (mrc != MOSQ_ERR_SUCCESS) {
				fprintf(stderr,
					"vigie-bench: bare publish: %s\n",
					mosquitto_strerror(mrc));
				rc = VIGIE_ENOCONN;
				goto out_destroy;
			}
			sent++;
			continue;
		}
		wait_us = due_at - now < 500000 ? (int)(due_at - now) : 500000;
		rc = bench_mosq_pump(mosq, wait_us, &next_misc);
		if (rc)
			goto out_destroy;
	}
	deadline = bench_mono_us() + (uint64_t)drain_ms * 1000u;
	while (bench_sink_received(relay) < n && bench_mono_us() < deadline) {
		rc = bench_mosq_pump(mosq, 1000, &next_misc);
		if (rc)
			goto out_destroy;
	}
out_destroy:
	mosquitto_disconnect(mosq);
	mosquitto_destroy(mosq);
	return rc;
}
