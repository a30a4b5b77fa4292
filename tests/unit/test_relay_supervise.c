/* Supervision on a fake clock: silence beyond the reporting time, LWT,
 * late heartbeats of a dead boot, bridge drops, posts; and the stream
 * index that recognises repeats. No broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "streams.h"
#include "supervise.h"
#include "vigie/error.h"

struct fake_clock {
	struct relay_clock c;
	uint64_t ms;
};

static uint64_t fake_now(const struct relay_clock *c)
{
	return ((const struct fake_clock *)c)->ms * 1000 + 1700000000000000ull;
}

static uint64_t fake_mono(const struct relay_clock *c)
{
	return ((const struct fake_clock *)c)->ms;
}

struct world {
	struct fake_clock clock;
	struct supervisor s;
	struct sup_change last;
	char last_id[VIGIE_ID_MAX + 1];
	int changes;
};

static void on_change(void *ud, const struct sup_change *c)
{
	struct world *w = ud;

	w->last = *c;
	snprintf(w->last_id, sizeof(w->last_id), "%s", c->id ? c->id : "");
	w->changes++;
}

static int setup(void **state)
{
	static struct world w;

	memset(&w, 0, sizeof(w));
	w.clock.c.now_us = fake_now;
	w.clock.c.mono_ms = fake_mono;
	w.clock.ms = 1000;
	vigie__sup_init(&w.s, &w.clock.c, NULL, 10000, on_change, &w);
	*state = &w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	vigie__sup_free(&w->s);
	return 0;
}

static void at(struct world *w, uint64_t ms)
{
	w->clock.ms = ms;
	vigie__sup_tick(&w->s);
}

static void hb(struct world *w, const char *node, uint64_t boot,
	       uint32_t reporting_ms)
{
	vigie__sup_heartbeat(&w->s, "louvre", node, boot, reporting_ms, 0, 0,
			     "primary");
}

static void test_silence_beyond_reporting_time(void **state)
{
	struct world *w = *state;

	hb(w, "n1", 5, 3000);
	at(w, 4000); /* exactly the reporting time: not yet */
	assert_int_equal(w->changes, 0);
	at(w, 4001);
	assert_int_equal(w->changes, 1);
	assert_true(w->last.lost);
	assert_int_equal(w->last.what, SUP_NODE);
	assert_string_equal(w->last.reason, "silence");
	assert_int_equal(w->last.silent_ms, 3001);
	at(w, 9000); /* reported once */
	assert_int_equal(w->changes, 1);
	hb(w, "n1", 5, 3000);
	assert_int_equal(w->changes, 2);
	assert_false(w->last.lost);
}

static void test_default_reporting_time(void **state)
{
	struct world *w = *state;

	vigie__sup_watch(&w->s, "louvre", "silent-1");
	at(w, 11000);
	assert_int_equal(w->changes, 0);
	at(w, 11001);
	assert_int_equal(w->changes, 1);
	assert_string_equal(w->last_id, "silent-1");
}

static void test_lwt_then_dead_boot_heartbeat_ignored(void **state)
{
	struct world *w = *state;

	hb(w, "n1", 5, 10000);
	vigie__sup_node_state(&w->s, "louvre", "n1", 5, false, "lwt", 0, false);
	assert_int_equal(w->changes, 1);
	assert_true(w->last.lost);
	assert_string_equal(w->last.reason, "lwt");
	/* A heartbeat of the boot that died, still in flight. */
	hb(w, "n1", 5, 10000);
	assert_int_equal(w->changes, 1);
	/* The node restarted: a new boot's heartbeat is proof of life. */
	hb(w, "n1", 6, 10000);
	assert_int_equal(w->changes, 2);
	assert_false(w->last.lost);
	/* A stale retained death of the old boot changes nothing. */
	vigie__sup_node_state(&w->s, "louvre", "n1", 5, false, "lwt", 0, true);
	assert_int_equal(w->changes, 2);
}

static void test_retained_birth_proves_nothing(void **state)
{
	struct world *w = *state;

	vigie__sup_node_state(&w->s, "louvre", "n2", 9, true, "", 2000, true);
	at(w, 3001);
	assert_int_equal(w->changes, 1);
	assert_true(w->last.lost);
	/* A live birth does. */
	vigie__sup_node_state(&w->s, "louvre", "n2", 9, true, "", 2000, false);
	assert_int_equal(w->changes, 2);
	assert_false(w->last.lost);
}

static void test_bridge_down_suspends_node_judgement(void **state)
{
	struct world *w = *state;

	hb(w, "n1", 5, 3000);
	vigie__sup_bridge(&w->s, "louvre", false);
	assert_int_equal(w->changes, 1);
	assert_int_equal(w->last.what, SUP_BRIDGE);
	assert_true(w->last.lost);
	assert_int_equal(vigie__sup_bridge_state(&w->s, "louvre"), 0);
	at(w, 60000);
	assert_int_equal(w->changes, 1); /* no node trouble on top */
	vigie__sup_bridge(&w->s, "louvre", true);
	assert_int_equal(w->changes, 2);
	assert_false(w->last.lost);
	/* A fresh reporting time from the bridge's return. */
	at(w, 63000);
	assert_int_equal(w->changes, 2);
	at(w, 63001);
	assert_int_equal(w->changes, 3);
	assert_int_equal(w->last.what, SUP_NODE);
}

/* The relay's own broker connection down: silence is the relay's, not the
 * nodes'; nobody is lost, and everybody gets a fresh reporting time back. */
static void test_blind_relay_judges_no_one(void **state)
{
	struct world *w = *state;

	hb(w, "n1", 5, 3000);
	vigie__sup_blind(&w->s, true);
	at(w, 60000);
	assert_int_equal(w->changes, 0);
	vigie__sup_blind(&w->s, false);
	at(w, 63000);
	assert_int_equal(w->changes, 0);
	at(w, 63001);
	assert_int_equal(w->changes, 1);
	assert_int_equal(w->last.what, SUP_NODE);
	assert_true(w->last.lost);
}

static void test_posts(void **state)
{
	struct world *w = *state;

	assert_true(vigie__sup_post_online(&w->s, "pp-1")); /* never heard of */
	vigie__sup_post(&w->s, "pp-1", true);
	assert_int_equal(w->changes, 0);
	vigie__sup_post(&w->s, "pp-1", false);
	assert_int_equal(w->changes, 1);
	assert_false(vigie__sup_post_online(&w->s, "pp-1"));
	vigie__sup_post(&w->s, "pp-1", false);
	assert_int_equal(w->changes, 1);
	vigie__sup_post(&w->s, "pp-1", true);
	assert_int_equal(w->changes, 2);
	assert_false(w->last.lost);
}

static void test_marked_lost_reports_return(void **state)
{
	struct world *w = *state;

	/* After a restart the database says n1's trouble is open. */
	vigie__sup_mark_lost(&w->s, SUP_NODE, "louvre", "n1");
	at(w, 100000);
	assert_int_equal(w->changes, 0); /* not reported twice */
	hb(w, "n1", 5, 3000);
	assert_int_equal(w->changes, 1);
	assert_false(w->last.lost);
}

/* ---- streams ---- */

static void test_streams_dedupe_and_contig(void **state)
{
	struct streams ss;
	struct stream *s, *again;

	(void)state;
	vigie__streams_init(&ss, 10, 4);
	assert_int_equal(vigie__streams_get(&ss, "louvre", "n1", 7, false, &s),
			 VIGIE_ENOTFOUND);
	assert_int_equal(vigie__streams_get(&ss, "louvre", "n1", 7, true, &s),
			 0);
	assert_int_equal(
		vigie__streams_get(&ss, "louvre", "n1", 7, true, &again), 0);
	assert_ptr_equal(s, again);
	assert_int_equal(vigie__stream_check(&ss, s, 1), STREAM_NEW);
	assert_int_equal(vigie__stream_mark(&ss, s, 1), 0);
	assert_int_equal(vigie__stream_check(&ss, s, 1), STREAM_DUP);
	/* Out of order: 4 and 3 before 2. */
	assert_int_equal(vigie__stream_mark(&ss, s, 4), 0);
	assert_int_equal(vigie__stream_mark(&ss, s, 3), 0);
	assert_int_equal(s->contig, 1);
	assert_int_equal(vigie__stream_check(&ss, s, 4), STREAM_DUP);
	assert_int_equal(vigie__stream_check(&ss, s, 2), STREAM_NEW);
	assert_int_equal(vigie__stream_mark(&ss, s, 2), 0);
	assert_int_equal(s->contig, 4);
	assert_int_equal(s->n_above, 0);
	/* At most 4 held above a gap; the next stays unreceipted. */
	for (uint64_t q = 10; q < 14; q++)
		assert_int_equal(vigie__stream_mark(&ss, s, q), 0);
	assert_int_equal(vigie__stream_check(&ss, s, 20), STREAM_FULL);
	assert_int_equal(vigie__stream_check(&ss, s, 5), STREAM_NEW);
	/* A new boot is a new stream. */
	assert_int_equal(
		vigie__streams_get(&ss, "louvre", "n1", 8, true, &again), 0);
	assert_ptr_not_equal(s, again);
	assert_int_equal(vigie__stream_check(&ss, again, 1), STREAM_NEW);
	vigie__streams_free(&ss);
}

/* A relay that lost its records of a boot takes the node's receipts: what
 * came above them since joins, the rest stays a gap. */
static void test_streams_advance_on_receipts(void **state)
{
	struct streams ss;
	struct stream *s;

	(void)state;
	vigie__streams_init(&ss, 10, 16);
	assert_int_equal(vigie__streams_get(&ss, "louvre", "n1", 7, true, &s),
			 0);
	/* Re-sent after the loss: 501..503 and 506. */
	for (uint64_t q = 501; q <= 503; q++)
		assert_int_equal(vigie__stream_mark(&ss, s, q), 0);
	assert_int_equal(vigie__stream_mark(&ss, s, 506), 0);
	assert_int_equal(s->contig, 0);
	/* Older news than what is on record changes nothing. */
	assert_false(vigie__stream_advance(s, 0));
	/* The node holds receipts up to 500. */
	assert_true(vigie__stream_advance(s, 500));
	assert_int_equal(s->contig, 503);
	assert_int_equal(s->n_above, 1);
	assert_int_equal(s->above[0], 506);
	assert_int_equal(vigie__stream_check(&ss, s, 400), STREAM_DUP);
	assert_int_equal(vigie__stream_check(&ss, s, 504), STREAM_NEW);
	assert_false(vigie__stream_advance(s, 503));
	/* Past what came early: it is covered too. */
	assert_true(vigie__stream_advance(s, 507));
	assert_int_equal(s->contig, 507);
	assert_int_equal(s->n_above, 0);
	vigie__streams_free(&ss);
}

static void test_streams_capped(void **state)
{
	struct streams ss;
	struct stream *s;

	(void)state;
	vigie__streams_init(&ss, 2, 4);
	assert_int_equal(vigie__streams_get(&ss, "a", "n", 1, true, &s), 0);
	assert_int_equal(vigie__streams_get(&ss, "a", "n", 2, true, &s), 0);
	assert_int_equal(vigie__streams_get(&ss, "a", "n", 3, true, &s),
			 VIGIE_EFULL);
	vigie__streams_free(&ss);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_silence_beyond_reporting_time),
		T(test_default_reporting_time),
		T(test_lwt_then_dead_boot_heartbeat_ignored),
		T(test_retained_birth_proves_nothing),
		T(test_bridge_down_suspends_node_judgement),
		T(test_blind_relay_judges_no_one),
		T(test_posts),
		T(test_marked_lost_reports_return),
		cmocka_unit_test(test_streams_dedupe_and_contig),
		cmocka_unit_test(test_streams_advance_on_receipts),
		cmocka_unit_test(test_streams_capped),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
