/* Bulk QoS 1 publishing with a bare libmosquitto client: messages encoded
 * beforehand, sent as fast as the broker PUBACKs them, with at most
 * `window` not yet PUBACKed, on the caller's thread (driven by
 * bench_mosq_pump, as the baselines are). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "bench.h"
#include "vigie/error.h"

#define CHUNK 256

static void on_puback(struct mosquitto *mosq, void *ud, int mid)
{
	(void)mosq;
	(void)mid;
	(*(uint64_t *)ud)++;
}

int bench_publish_all(struct mosquitto *mosq, const struct bench_msgs *m,
		      unsigned window, unsigned timeout_ms)
{
	uint64_t sent = 0, acked = 0, next_misc = 0;
	uint64_t deadline = bench_mono_us() + (uint64_t)timeout_ms * 1000u;
	int rc = 0;

	/* PUBACKs are counted in the user data while this runs. */
	mosquitto_user_data_set(mosq, &acked);
	mosquitto_publish_callback_set(mosq, on_puback);
	while (acked < m->n) {
		bool room;

		for (int k = 0;
		     k < CHUNK && sent < m->n && sent - acked < window;
		     k++, sent++) {
			int mrc = mosquitto_publish(
				mosq, NULL,
				m->topics ? m->topics[sent] : m->topic,
				(int)m->lens[sent], m->payloads[sent], 1,
				false);

			if (mrc != MOSQ_ERR_SUCCESS) {
				fprintf(stderr, "vigie-bench: publish: %s\n",
					mosquitto_strerror(mrc));
				rc = VIGIE_ENOCONN;
				goto out;
			}
		}
		if (bench_mono_us() >= deadline) {
			fprintf(stderr,
				"vigie-bench: %llu of %llu messages PUBACKed "
				"in %u s\n",
				(unsigned long long)acked,
				(unsigned long long)m->n, timeout_ms / 1000);
			rc = VIGIE_EIO;
			goto out;
		}
		room = sent < m->n && sent - acked < window;
		rc = bench_mosq_pump(mosq, room ? 0 : 1000, &next_misc);
		if (rc)
			goto out;
	}
out:
	mosquitto_publish_callback_set(mosq, NULL);
	mosquitto_user_data_set(mosq, NULL);
	return rc;
}

void bench_msgs_free(struct bench_msgs *m)
{
	for (uint64_t i = 0; i < m->n; i++) {
		if (m->payloads)
			free(m->payloads[i]);
		if (m->topics)
			free(m->topics[i]);
	}
	free(m->payloads);
	free(m->topics);
	free(m->lens);
	memset(m, 0, sizeof(*m));
}

int bench_msgs_alloc(struct bench_msgs *m, uint64_t n, bool topics)
{
	memset(m, 0, sizeof(*m));
	m->payloads = calloc(n ? n : 1, sizeof(*m->payloads));
	m->lens = calloc(n ? n : 1, sizeof(*m->lens));
	if (topics)
		m->topics = calloc(n ? n : 1, sizeof(*m->topics));
	if (!m->payloads || !m->lens || (topics && !m->topics)) {
		bench_msgs_free(m);
		return VIGIE_ENOMEM;
	}
	/* Slots filled by the caller; freeing n of them is safe (NULL). */
	m->n = n;
	return 0;
}
