/* security.verify_us: what the relay's verifier pays per signed event
 * (decode the SignedEvent and its Event, find the key, Ed25519 verify), one
 * thread, events signed before the timed phase. The relay itself is
 * measured by relay.throughput_signed (bench/tls_bench.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "vigie/error.h"
#include "vigie/sign.h"

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_security(const struct bench_opts *o)
{
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;
	size_t n = o->quick ? 2000 : 20000, ok = 0;
	struct vigie_sign_key k;
	uint8_t **bufs;
	size_t *lens;
	double t0, dt;
	int rc = 0;

	if (!bench_wanted(o, "security.verify_us"))
		return 0;
	if (vigie_sign_keygen(&k))
		return VIGIE_ESYS;
	bufs = calloc(n, sizeof(*bufs));
	lens = calloc(n, sizeof(*lens));
	if (!bufs || !lens) {
		rc = VIGIE_ENOMEM;
		goto out_free;
	}
	ev.site = "louvre";
	ev.node = "apollo-1";
	ev.boot_id = 1;
	ev.zone = "apollo-gallery";
	ev.sensor = "pir-3";
	ev.text = "motion in the Apollo Gallery";
	ev.kind = VIGIE__V1__EVENT_KIND__KIND_MOTION;
	ev.state = VIGIE__V1__EVENT_STATE__STATE_ALARM;
	for (size_t i = 0; i < n; i++) {
		ev.seq = i + 1;
		ev.time_us = 1700000000000000ull + i;
		rc = vigie_sign_event(&k, &ev, &bufs[i], &lens[i]);
		if (rc)
			goto out_free;
	}
	t0 = mono_s();
	for (size_t i = 0; i < n; i++) {
		Vigie__V1__SignedEvent *se;
		Vigie__V1__Event *e;

		if (vigie_event_decode(bufs[i], lens[i], &se, &e))
			continue;
		if (strcmp(se->key_id, k.key_id) == 0 &&
		    vigie_sign_verify(k.pk, se->event.data, se->event.len,
				      se->signature.data,
				      se->signature.len) == 0)
			ok++;
		vigie_event_free(se, e);
	}
	dt = mono_s() - t0;
	if (ok != n) {
		bench_progress("security: %zu of %zu signatures verified", ok,
			       n);
		rc = VIGIE_EAUTH;
		goto out_free;
	}
	bench_progress("security: %zu signed events verified in %.3f s", n, dt);
	bench_emit(o, "security.verify_us", dt * 1e6 / (double)n, "us", 0);
out_free:
	for (size_t i = 0; bufs && i < n; i++)
		free(bufs[i]);
	free(bufs);
	free(lens);
	vigie_sign_key_wipe(&k);
	return rc;
}
