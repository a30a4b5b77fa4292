/* The incident state machine on a fake clock: open/join by site and zone,
 * sequential confirmation, priority by kind, troubles closed only by their
 * restore, acknowledged incidents closing when quiet, ids that never
 * repeat. No broker, no database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "incident.h"
#include "utf8.h"
#include "vigie/error.h"

#define K(x) VIGIE__V1__EVENT_KIND__KIND_##x
#define S(x) VIGIE__V1__EVENT_STATE__STATE_##x
#define P(x) VIGIE__V1__PRIORITY__PRIORITY_##x
#define I(x) VIGIE__V1__INCIDENT_STATE__INCIDENT_##x

struct fake_clock {
	struct relay_clock c;
	uint64_t us;
};

static uint64_t fake_now(const struct relay_clock *c)
{
	return ((const struct fake_clock *)c)->us;
}

static uint64_t fake_mono(const struct relay_clock *c)
{
	return ((const struct fake_clock *)c)->us / 1000;
}

struct world {
	struct fake_clock clock;
	struct inc_engine e;
	int immediate[2];
	uint64_t seq;
};

/* 2025-10-19T09:34:12Z, the morning of the Louvre heist. */
#define T0 1760866452000000ull

static int setup(void **state)
{
	static struct world w;
	struct inc_params p;

	memset(&w, 0, sizeof(w));
	w.clock.c.now_us = fake_now;
	w.clock.c.mono_ms = fake_mono;
	w.clock.us = T0;
	w.immediate[0] = K(DURESS);
	w.immediate[1] = K(DISPLAY_CASE);
	memset(&p, 0, sizeof(p));
	p.clock = &w.clock.c;
	p.window_ms = 600000;         /* 10 min */
	p.confirm_window_ms = 300000; /* 5 min */
	p.close_after_ms = 120000;    /* 2 min */
	p.immediate_kinds = w.immediate;
	p.n_immediate = 2;
	vigie__inc_init(&w.e, &p);
	*state = &w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	vigie__inc_free(&w->e);
	return 0;
}

static void advance(struct world *w, uint64_t ms)
{
	w->clock.us += ms * 1000;
}

static struct inc_result ev(struct world *w, const char *zone,
			    const char *sensor, int kind, int state)
{
	struct inc_input in;
	struct inc_result res;

	memset(&in, 0, sizeof(in));
	in.site = "louvre";
	in.node = "apollo-1";
	in.zone = zone;
	in.sensor = sensor;
	in.boot_id = 7;
	in.seq = ++w->seq;
	in.time_us = w->clock.us;
	in.kind = kind;
	in.state = state;
	assert_int_equal(vigie__inc_event(&w->e, &in, &res), 0);
	/* As the relay does after every change it persists. */
	if (res.inc)
		assert_int_equal(vigie__inc_schedule(&w->e, res.inc), 0);
	return res;
}

static unsigned ack(struct world *w, struct incident *inc, const char *by)
{
	unsigned changes = vigie__inc_ack(&w->e, inc, by);

	assert_int_equal(vigie__inc_schedule(&w->e, inc), 0);
	return changes;
}

/* The relay's tick, for the closing part: what is due, once each. */
static void tick(struct world *w)
{
	struct incident *due[64];
	size_t n = 0;

	while (n < 64 && (due[n] = vigie__inc_next_due(&w->e, w->clock.us)))
		n++;
	for (size_t i = 0; i < n; i++)
		if (!vigie__inc_close_if_quiet(&w->e, due[i]))
			assert_int_equal(vigie__inc_schedule(&w->e, due[i]), 0);
}

static void test_second_detector_confirms(void **state)
{
	struct world *w = *state;
	struct inc_result r1, r2, r3;

	r1 = ev(w, "apollo-balcony", "seismic-w2", K(VIBRATION), S(ALARM));
	assert_non_null(r1.inc);
	assert_true(r1.changes & INC_OPENED);
	assert_false(r1.immediate);
	assert_int_equal(r1.inc->state, I(OPEN));
	assert_int_equal(r1.inc->priority, P(HIGH));
	assert_string_equal(r1.inc->id, "louvre-20251019-093412");

	/* The same detector again is no confirmation. */
	advance(w, 1000);
	r2 = ev(w, "apollo-balcony", "seismic-w2", K(VIBRATION), S(ALARM));
	assert_ptr_equal(r2.inc, r1.inc);
	assert_true(r2.changes & INC_JOINED);
	assert_false(r2.changes & INC_CONFIRMED);

	advance(w, 20000);
	r3 = ev(w, "apollo-balcony", "gb-w2", K(GLASS_BREAK), S(ALARM));
	assert_ptr_equal(r3.inc, r1.inc);
	assert_true(r3.changes & INC_CONFIRMED);
	assert_true(r3.changes & INC_PRIORITY);
	assert_true(r3.immediate);
	assert_true(r3.inc->confirmed);
	assert_int_equal(r3.inc->state, I(CONFIRMED));
	assert_int_equal(r3.inc->priority, P(CRITICAL));
	assert_int_equal(r3.inc->event_count, 3);
	assert_int_equal(r3.inc->n_detectors, 2);
	assert_int_equal(w->e.open, 1);
}

static void test_detectors_too_far_apart_do_not_confirm(void **state)
{
	struct world *w = *state;
	struct inc_result r1, r2;

	r1 = ev(w, "gallery", "pir-1", K(MOTION), S(ALARM));
	advance(w, 300001);
	r2 = ev(w, "gallery", "pir-2", K(MOTION), S(ALARM));
	/* Unacked: still the same incident, but not confirmed. */
	assert_ptr_equal(r2.inc, r1.inc);
	assert_false(r2.inc->confirmed);
	assert_false(r2.immediate);
}

static void test_zones_make_separate_incidents(void **state)
{
	struct world *w = *state;
	struct inc_result a, b;

	a = ev(w, "quai-facade", "radar-quai", K(VEHICLE), S(ALARM));
	b = ev(w, "apollo-gallery", "pir-apollo", K(MOTION), S(ALARM));
	assert_ptr_not_equal(a.inc, b.inc);
	assert_true(b.changes & INC_OPENED);
	/* Same second, same site: distinct ids. */
	assert_string_equal(a.inc->id, "louvre-20251019-093412");
	assert_string_equal(b.inc->id, "louvre-20251019-093412-2");
	assert_false(b.inc->confirmed);
	assert_int_equal(w->e.open, 2);
}

static void test_duress_and_display_case_go_at_once(void **state)
{
	struct world *w = *state;
	struct inc_result r;

	r = ev(w, "apollo-gallery", "case-regalia", K(DISPLAY_CASE), S(ALARM));
	assert_true(r.immediate);
	assert_int_equal(r.inc->priority, P(CRITICAL));
	r = ev(w, "desk", "panic-1", K(DURESS), S(ALARM));
	assert_true(r.immediate);
	assert_int_equal(r.inc->kind, K(DURESS));
	/* Duress is no detector of intrusion: it confirms nothing. */
	assert_int_equal(r.inc->n_detectors, 0);
}

static void test_trouble_closes_only_on_restore(void **state)
{
	struct world *w = *state;
	struct inc_result r1, r2, r3, r4;
	char first[VIGIE_ID_MAX + 1];

	r1 = ev(w, "apollo-balcony", "cam-quai-3", K(CAMERA_MOVED), S(TROUBLE));
	assert_true(r1.changes & INC_OPENED);
	assert_true(r1.inc->trouble);
	assert_string_equal(r1.inc->subject, "apollo-1/cam-quai-3");
	snprintf(first, sizeof(first), "%s", r1.inc->id);
	/* Acked: still open until the camera is back. */
	assert_int_equal(ack(w, r1.inc, "dupont"), INC_ACKED);
	advance(w, 3600000);
	tick(w);
	assert_int_equal(r1.inc->state, I(ACKNOWLEDGED));
	r2 = ev(w, "apollo-balcony", "cam-quai-3", K(CAMERA_MOVED), S(TROUBLE));
	assert_ptr_equal(r2.inc, r1.inc);
	/* Another camera's restore closes nothing. */
	r3 = ev(w, "apollo-balcony", "cam-quai-4", K(CAMERA_MOVED), S(RESTORE));
	assert_null(r3.inc);
	r4 = ev(w, "apollo-balcony", "cam-quai-3", K(CAMERA_MOVED), S(RESTORE));
	assert_ptr_equal(r4.inc, r1.inc);
	assert_true(r4.changes & INC_RESTORED);
	assert_true(r4.changes & INC_CLOSED);
	assert_int_equal(r4.inc->state, I(CLOSED));
	assert_int_equal(w->e.open, 0);
	vigie__inc_forget(&w->e, r4.inc);
	/* Again later: a new incident, a new id. */
	advance(w, 1000);
	r1 = ev(w, "apollo-balcony", "cam-quai-3", K(CAMERA_MOVED), S(TROUBLE));
	assert_true(r1.changes & INC_OPENED);
	assert_string_not_equal(r1.inc->id, first);
}

static void test_supervision_trouble_subject(void **state)
{
	struct world *w = *state;
	struct inc_input in;
	struct inc_result r;

	memset(&in, 0, sizeof(in));
	in.site = "";
	in.subject = "post:pp-paris-1";
	in.kind = K(COMM_LOSS);
	in.state = S(TROUBLE);
	assert_int_equal(vigie__inc_event(&w->e, &in, &r), 0);
	assert_true(r.changes & INC_OPENED);
	/* Ids are topic words: the subject's ':' is not. */
	assert_string_equal(r.inc->id, "post-pp-paris-1-20251019-093412");
	assert_true(vigie_id_valid(r.inc->id));
	in.state = S(RESTORE);
	assert_int_equal(vigie__inc_event(&w->e, &in, &r), 0);
	assert_true(r.changes & INC_CLOSED);
}

static void test_acked_incident_closes_when_quiet(void **state)
{
	struct world *w = *state;
	struct inc_result r, again;
	struct incident *unacked;

	r = ev(w, "gallery", "pir-1", K(MOTION), S(ALARM));
	unacked = ev(w, "office", "door-2", K(DOOR_CONTACT), S(ALARM)).inc;
	assert_int_equal(ack(w, r.inc, "dupont"), INC_ACKED);
	assert_int_equal(ack(w, r.inc, "dupont"), 0);
	assert_int_equal(r.inc->state, I(ACKNOWLEDGED));
	/* Within the window an alarm joins the acked incident. */
	advance(w, 60000);
	again = ev(w, "gallery", "pir-1", K(MOTION), S(ALARM));
	assert_ptr_equal(again.inc, r.inc);
	advance(w, 119999);
	tick(w);
	assert_int_equal(r.inc->state, I(ACKNOWLEDGED));
	advance(w, 1);
	tick(w);
	assert_int_equal(r.inc->state, I(CLOSED));
	/* Never acked: never closed by itself. */
	advance(w, 86400000);
	tick(w);
	assert_int_equal(unacked->state, I(OPEN));
}

/* The tick sees what is due and only that, whatever the order incidents
 * were scheduled in (the wake heap), and a closed one leaves the schedule. */
static void test_schedule_visits_only_what_is_due(void **state)
{
	struct world *w = *state;
	struct incident *inc[40];
	char zone[16];
	size_t closed = 0;

	/* Acked in a shuffled order, 1 s apart: each closes 2 min after. */
	for (int i = 0; i < 40; i++) {
		int k = (i * 17) % 40;

		snprintf(zone, sizeof(zone), "z%d", k);
		inc[k] = ev(w, zone, "pir-1", K(MOTION), S(ALARM)).inc;
		assert_int_equal(ack(w, inc[k], "dupont"), INC_ACKED);
		advance(w, 1000);
	}
	assert_int_equal(w->e.n_wake, 40);
	/* 2 min after the 20th ack: the first 20 acked are due. */
	advance(w, 120000 + 19000 - 40000);
	tick(w);
	for (int i = 0; i < 40; i++) {
		int k = (i * 17) % 40;

		if (inc[k]->state == I(CLOSED)) {
			assert_true(i < 20);
			closed++;
		} else {
			assert_true(i >= 20);
		}
	}
	assert_int_equal(closed, 20);
	assert_int_equal(w->e.n_wake, 20);
	advance(w, 60000);
	tick(w);
	assert_int_equal(w->e.n_wake, 0);
	assert_int_equal(w->e.open, 0);
}

static void test_acked_and_aged_out_makes_a_new_incident(void **state)
{
	struct world *w = *state;
	struct inc_result r1, r2;

	w->e.p.close_after_ms = 86400000; /* the tick does not close it first */
	r1 = ev(w, "gallery", "pir-1", K(MOTION), S(ALARM));
	vigie__inc_ack(&w->e, r1.inc, "dupont");
	advance(w, 600001);
	r2 = ev(w, "gallery", "pir-1", K(MOTION), S(ALARM));
	assert_ptr_equal(r2.closed, r1.inc);
	assert_int_equal(r1.inc->state, I(CLOSED));
	assert_true(r2.changes & INC_OPENED);
	assert_ptr_not_equal(r2.inc, r1.inc);
}

static void test_operational_events_open_nothing(void **state)
{
	struct world *w = *state;

	assert_null(ev(w, "gallery", "pir-1", K(TEST), S(TEST)).inc);
	assert_null(ev(w, "gallery", "pir-1", K(MOTION), S(TEST)).inc);
	assert_null(ev(w, "", "", K(OPEN_CLOSE), S(ALARM)).inc);
	assert_null(ev(w, "", "", K(BYPASS), S(ALARM)).inc);
	/* A restore with nothing open changes nothing. */
	assert_null(ev(w, "gallery", "pir-1", K(MOTION), S(RESTORE)).inc);
	assert_int_equal(w->e.open, 0);
}

static void test_unknown_kind_fails_safe(void **state)
{
	struct world *w = *state;
	struct inc_result r;

	r = ev(w, "gallery", "x-1", 99, S(ALARM));
	assert_non_null(r.inc);
	assert_false(r.inc->trouble);
	assert_int_equal(r.inc->priority, P(MEDIUM));
	/* Unknown state of an alarm kind: an alarm too. */
	r = ev(w, "gallery2", "pir-9", K(MOTION), 42);
	assert_non_null(r.inc);
	assert_true(r.changes & INC_OPENED);
}

static void test_detector_trouble_is_a_trouble(void **state)
{
	struct world *w = *state;
	struct inc_result r;

	r = ev(w, "gallery", "pir-1", K(MOTION), S(TROUBLE));
	assert_true(r.inc->trouble);
	assert_int_equal(r.inc->priority, P(MEDIUM));
	r = ev(w, "gallery", "pir-1", K(MOTION), S(RESTORE));
	assert_true(r.changes & INC_CLOSED);
}

static void test_ids_never_repeat_after_reload(void **state)
{
	struct world *w = *state;
	struct inc_result r;

	/* The database says this second was used up to -3 already. */
	assert_int_equal(vigie__inc_note_id(&w->e, "louvre", T0 / 1000000, 3),
			 0);
	r = ev(w, "gallery", "pir-1", K(MOTION), S(ALARM));
	assert_string_equal(r.inc->id, "louvre-20251019-093412-4");
	/* A clock stepped back reuses the last second with a higher k. */
	w->clock.us -= 3600000000ull;
	r = ev(w, "office", "pir-2", K(MOTION), S(ALARM));
	assert_string_equal(r.inc->id, "louvre-20251019-093412-5");
}

/* After a crash the relay reserves the ids it published without storing
 * (its intent log): the alarm, sent again, opens its incident under the
 * same id, whichever of its events comes back first; nothing else gets it. */
static void test_reserved_id_comes_back_after_a_crash(void **state)
{
	struct world *w = *state;
	char id[VIGIE_ID_MAX + 1], key[INC_KEY_MAX + 1],
		prefix[VIGIE_ID_MAX + 1];
	uint64_t sec, first;
	uint32_t k;
	struct inc_params params = w->e.p;
	struct inc_result r;

	r = ev(w, "apollo", "vib-1", K(VIBRATION), S(ALARM));
	advance(w, 100);
	ev(w, "apollo", "glass-1", K(GLASS_BREAK), S(ALARM));
	snprintf(id, sizeof(id), "%s", r.inc->id);
	snprintf(key, sizeof(key), "%s", r.inc->key);
	snprintf(prefix, sizeof(prefix), "%s", r.inc->id_prefix);
	sec = r.inc->id_sec;
	k = r.inc->id_k;
	first = r.inc->first_event_us;
	assert_string_equal(id, "louvre-20251019-093412");

	/* kill -9 before the commit, restarted within the same second:
	 * nothing in memory, the id only in the intent log. */
	vigie__inc_free(&w->e);
	vigie__inc_init(&w->e, &params);
	assert_int_equal(
		vigie__inc_reserve(&w->e, key, id, prefix, sec, k, first), 0);
	assert_int_equal(vigie__inc_reserved(&w->e), 1);
	/* Another zone opens first: not that id (without the reservation
	 * it would get it: same prefix, same second, first of it). */
	r = ev(w, "office", "pir-2", K(MOTION), S(ALARM));
	assert_string_equal(r.inc->id, "louvre-20251019-093412-2");
	/* The second detector's event comes back before the first one's. */
	advance(w, 2000);
	r = ev(w, "apollo", "glass-1", K(GLASS_BREAK), S(ALARM));
	assert_true(r.changes & INC_OPENED);
	assert_string_equal(r.inc->id, id);
	assert_int_equal(vigie__inc_reserved(&w->e), 0);
	r = ev(w, "apollo", "vib-1", K(VIBRATION), S(ALARM));
	assert_true(r.changes & INC_CONFIRMED);
	assert_string_equal(r.inc->id, id);

	/* A reservation whose alarm never comes back within the incident
	 * window is not given to a later incident of the key. */
	assert_int_equal(vigie__inc_reserve(&w->e, "a/louvre/cellar",
					    "louvre-20251019-093000", "louvre",
					    sec - 132, 1,
					    w->clock.us - 3000000),
			 0);
	advance(w, 11 * 60 * 1000);
	r = ev(w, "cellar", "pir-9", K(MOTION), S(ALARM));
	assert_string_not_equal(r.inc->id, "louvre-20251019-093000");
	assert_int_equal(vigie__inc_drop_reserved(&w->e, w->clock.us), 1);
	assert_int_equal(vigie__inc_reserved(&w->e), 0);
	/* Malformed: refused, nothing kept. */
	assert_int_equal(
		vigie__inc_reserve(&w->e, "", id, prefix, sec, k, first),
		VIGIE_EINVAL);
	assert_int_equal(vigie__inc_reserved(&w->e), 0);
}

static void test_priority_table(void **state)
{
	(void)state;
	assert_int_equal(vigie__inc_priority(K(DURESS), S(ALARM)), P(CRITICAL));
	assert_int_equal(vigie__inc_priority(K(FIRE), S(ALARM)), P(CRITICAL));
	assert_int_equal(vigie__inc_priority(K(GLASS_BREAK), S(ALARM)),
			 P(HIGH));
	assert_int_equal(vigie__inc_priority(K(CAMERA_MOVED), S(TROUBLE)),
			 P(HIGH));
	assert_int_equal(vigie__inc_priority(K(COMM_LOSS), S(TROUBLE)),
			 P(HIGH));
	assert_int_equal(vigie__inc_priority(K(POWER_LOSS), S(TROUBLE)),
			 P(MEDIUM));
	assert_int_equal(vigie__inc_priority(K(BATTERY), S(TROUBLE)), P(LOW));
}

static void test_text_stays_utf8(void **state)
{
	struct world *w = *state;
	const char *keys[] = {"note"};
	char value[420], cut[8];
	const char *values[] = {value};
	struct inc_input in;
	struct inc_result r;

	/* 200 x "é" (2 bytes each): cut to 128 bytes, never mid-character. */
	value[0] = '\0';
	for (int i = 0; i < 199; i++)
		strcat(value, "\xc3\xa9");
	strcat(value, "x\xc3\xa9");
	memset(&in, 0, sizeof(in));
	in.site = "louvre";
	in.node = "n1";
	in.zone = "z";
	in.kind = K(MOTION);
	in.state = S(ALARM);
	in.attr_keys = keys;
	in.attr_values = values;
	in.n_attrs = 1;
	assert_int_equal(vigie__inc_event(&w->e, &in, &r), 0);
	assert_true(vigie__relay_utf8_valid(r.inc->attrs[0].value));
	assert_true(strlen(r.inc->attrs[0].value) <= INC_ATTR_VALUE_MAX);
	assert_true(vigie__relay_utf8_valid(
		"Lef\xc3\xa8vre \xe2\x82\xac \xf0\x9f\x9a\x93"));
	assert_false(vigie__relay_utf8_valid("\xc3"));
	assert_false(vigie__relay_utf8_valid("\xc0\xaf"));     /* overlong */
	assert_false(vigie__relay_utf8_valid("\xed\xa0\x80")); /* surrogate */
	assert_false(
		vigie__relay_utf8_valid("\xf4\x90\x80\x80")); /* > U+10FFFF */
	assert_false(vigie__relay_utf8_valid("\xff"));
	vigie__relay_utf8_copy(cut, sizeof(cut), "abcde\xe2\x82\xac");
	assert_string_equal(cut, "abcde");
	vigie__relay_utf8_copy(cut, sizeof(cut), "ab\xe2\x82\xac");
	assert_string_equal(cut, "ab\xe2\x82\xac");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_second_detector_confirms),
		T(test_detectors_too_far_apart_do_not_confirm),
		T(test_zones_make_separate_incidents),
		T(test_duress_and_display_case_go_at_once),
		T(test_trouble_closes_only_on_restore),
		T(test_supervision_trouble_subject),
		T(test_acked_incident_closes_when_quiet),
		T(test_acked_and_aged_out_makes_a_new_incident),
		T(test_operational_events_open_nothing),
		T(test_unknown_kind_fails_safe),
		T(test_detector_trouble_is_a_trouble),
		T(test_ids_never_repeat_after_reload),
		T(test_reserved_id_comes_back_after_a_crash),
		T(test_text_stays_utf8),
		T(test_schedule_visits_only_what_is_due),
		cmocka_unit_test(test_priority_table),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
