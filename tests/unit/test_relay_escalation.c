/* The escalation ladder state machine on a fake clock: deadlines, re-sends
 * with the same id and backoff, immediate police, backup posts, acks,
 * re-arming after a confirmation. No broker, no database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "escalation.h"

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
	struct relay_ladder ladder;
	struct esc_posts posts;
	struct esc_params p;
	bool offline[4]; /* p1, p1b, hq, spare */
	struct esc_state s;
	struct esc_actions acts;
};

static const char *const post_names[] = {"p1", "p1b", "hq", "spare"};

static int post_index(const char *post)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(post_names[i], post) == 0)
			return i;
	return -1;
}

static bool online(void *ud, const char *post)
{
	struct world *w = ud;
	int i = post_index(post);

	return i < 0 || !w->offline[i];
}

static const char *backup(void *ud, const char *post)
{
	(void)ud;
	return strcmp(post, "p1") == 0 ? "p1b" : NULL;
}

static void advance(struct world *w, uint64_t ms)
{
	w->clock.us += ms * 1000;
}

static void tick(struct world *w)
{
	w->acts.n = 0;
	vigie__esc_tick(&w->s, &w->p, &w->acts);
}

/* Ladder: site security (alert, 30 s) -> hq (60 s) -> police p1 (60 s). */
static int setup(void **state)
{
	static struct world w;

	memset(&w, 0, sizeof(w));
	w.clock.c.now_us = fake_now;
	w.clock.c.mono_ms = fake_mono;
	w.clock.us = 1700000000000000ull;
	w.ladder.n = 3;
	w.ladder.levels[0].name = "site-security";
	w.ladder.levels[0].alert = true;
	w.ladder.levels[0].ack_deadline_ms = 30000;
	w.ladder.levels[1].name = "museum-hq";
	w.ladder.levels[1].post = "hq";
	w.ladder.levels[1].ack_deadline_ms = 60000;
	w.ladder.levels[2].name = "police";
	w.ladder.levels[2].post = "p1";
	w.ladder.levels[2].ack_deadline_ms = 60000;
	w.ladder.police = 2;
	w.posts.online = online;
	w.posts.backup = backup;
	w.posts.ud = &w;
	w.p.ladder = &w.ladder;
	w.p.posts = &w.posts;
	w.p.clock = &w.clock.c;
	w.p.resend_ms = 5000;
	w.p.resend_max_ms = 20000;
	*state = &w;
	return 0;
}

static void test_ladder_climbs_at_each_deadline(void **state)
{
	struct world *w = *state;

	vigie__esc_start(&w->s, &w->p, false, &w->acts);
	assert_int_equal(w->acts.n, 1);
	assert_int_equal(w->acts.a[0].type, ESC_NOTIFY);
	assert_true(w->acts.a[0].alert);
	assert_int_equal(w->s.level, 0);

	advance(w, 29999);
	tick(w);
	assert_int_equal(w->acts.n, 0);
	assert_int_equal(w->s.level, 0);

	advance(w, 1);
	tick(w);
	assert_int_equal(w->acts.n, 2);
	assert_int_equal(w->acts.a[0].type, ESC_ESCALATE);
	assert_true(w->acts.a[0].deadline);
	assert_int_equal(w->acts.a[0].from_level, 0);
	assert_int_equal(w->acts.a[0].level, 1);
	assert_int_equal(w->acts.a[1].type, ESC_NOTIFY);
	assert_string_equal(w->acts.a[1].post, "hq");
	assert_int_equal(w->s.level, 1);

	advance(w, 60000);
	tick(w);
	/* hq re-sent (its 5 s passed long ago), then the police level. */
	assert_int_equal(w->s.level, 2);
	assert_int_equal(w->acts.a[w->acts.n - 1].type, ESC_NOTIFY);
	assert_string_equal(w->acts.a[w->acts.n - 1].post, "p1");
	/* The top level has no deadline: it stays, re-sent until acked. */
	assert_int_equal(w->s.deadline_us, 0);
	advance(w, 3600000);
	tick(w);
	assert_int_equal(w->s.level, 2);
	for (size_t i = 0; i < w->acts.n; i++)
		assert_int_equal(w->acts.a[i].type, ESC_RESEND);
}

static void test_resend_same_level_with_backoff_until_ack(void **state)
{
	struct world *w = *state;
	uint64_t gaps[] = {5000, 10000, 20000, 20000};

	vigie__esc_start(&w->s, &w->p, true, &w->acts);
	assert_int_equal(w->s.level, 2);
	assert_int_equal(w->s.d[2].attempts, 1);
	for (size_t i = 0; i < sizeof(gaps) / sizeof(gaps[0]); i++) {
		advance(w, gaps[i] - 1);
		tick(w);
		for (size_t j = 0; j < w->acts.n; j++)
			assert_true(w->acts.a[j].level != 2);
		advance(w, 1);
		tick(w);
		bool resent = false;

		for (size_t j = 0; j < w->acts.n; j++)
			if (w->acts.a[j].level == 2) {
				assert_int_equal(w->acts.a[j].type, ESC_RESEND);
				assert_int_equal(w->acts.a[j].attempt, i + 2);
				assert_string_equal(w->acts.a[j].post, "p1");
				resent = true;
			}
		assert_true(resent);
	}
	assert_true(vigie__esc_ack(&w->s));
	assert_false(vigie__esc_ack(&w->s)); /* a repeat changes nothing */
	advance(w, 3600000);
	tick(w);
	assert_int_equal(w->acts.n, 0);
	assert_int_equal(vigie__esc_next_due(&w->s), 0);
}

static void test_immediate_tells_every_level_below_police(void **state)
{
	struct world *w = *state;

	vigie__esc_start(&w->s, &w->p, true, &w->acts);
	assert_int_equal(w->acts.n, 4);
	assert_int_equal(w->acts.a[0].type, ESC_ESCALATE);
	assert_false(w->acts.a[0].deadline);
	assert_int_equal(w->acts.a[0].level, 2);
	/* The police first, then the levels below, told on the way. */
	assert_string_equal(w->acts.a[1].post, "p1");
	assert_int_equal(w->acts.a[1].level, 2);
	assert_string_equal(w->acts.a[2].post, "hq");
	assert_true(w->acts.a[3].alert);
	assert_int_equal(w->acts.a[3].level, 0);
	assert_int_equal(w->s.level, 2);
}

static void test_offline_post_goes_to_backup_and_back(void **state)
{
	struct world *w = *state;

	w->offline[0] = true; /* p1 */
	vigie__esc_start(&w->s, &w->p, true, &w->acts);
	assert_string_equal(w->acts.a[1].post, "p1b");
	assert_string_equal(w->acts.a[1].from_post, "p1");
	assert_string_equal(w->s.d[2].backup_for, "p1");

	/* The dispatch follows the posts' liveness, same id, next attempt. */
	w->offline[0] = false;
	w->offline[1] = true;
	advance(w, 100);
	tick(w);
	assert_int_equal(w->acts.n, 1);
	assert_int_equal(w->acts.a[0].type, ESC_REDIRECT);
	assert_string_equal(w->acts.a[0].post, "p1");
	assert_null(w->acts.a[0].from_post);
	assert_int_equal(w->acts.a[0].attempt, 2);
	assert_string_equal(w->s.d[2].backup_for, "");
}

static void test_dispatch_moves_when_its_post_dies(void **state)
{
	struct world *w = *state;

	vigie__esc_start(&w->s, &w->p, true, &w->acts);
	assert_string_equal(w->s.d[2].post, "p1");
	w->offline[0] = true;
	advance(w, 100);
	tick(w);
	assert_int_equal(w->acts.n, 1);
	assert_int_equal(w->acts.a[0].type, ESC_REDIRECT);
	assert_string_equal(w->acts.a[0].post, "p1b");
	assert_string_equal(w->acts.a[0].from_post, "p1");
	/* Both down: it stays where it is and is re-sent there. */
	w->offline[1] = true;
	advance(w, 100);
	tick(w);
	assert_int_equal(w->acts.n, 0);
	advance(w, 20000);
	tick(w);
	assert_int_equal(w->acts.a[w->acts.n - 1].type, ESC_RESEND);
	assert_string_equal(w->acts.a[w->acts.n - 1].post, "p1b");
}

static void test_confirmation_after_ack_rearms_police(void **state)
{
	struct world *w = *state;

	vigie__esc_start(&w->s, &w->p, false, &w->acts);
	assert_true(vigie__esc_ack(&w->s));
	w->acts.n = 0;
	vigie__esc_police(&w->s, &w->p, &w->acts);
	assert_false(w->s.acked);
	assert_true(w->s.active);
	assert_int_equal(w->s.level, 2);
	assert_int_equal(w->acts.a[0].type, ESC_ESCALATE);
	/* Police told once: a second confirmation adds nothing. */
	w->acts.n = 0;
	vigie__esc_police(&w->s, &w->p, &w->acts);
	assert_int_equal(w->acts.n, 0);
}

static void test_resend_all_after_reconnect(void **state)
{
	struct world *w = *state;

	vigie__esc_start(&w->s, &w->p, true, &w->acts);
	w->acts.n = 0;
	vigie__esc_resend_all(&w->s, &w->p, &w->acts);
	/* hq and police, not the alert. */
	assert_int_equal(w->acts.n, 2);
	assert_int_equal(w->acts.a[0].attempt, 2);
	assert_int_equal(w->acts.a[1].attempt, 2);
}

static void test_dispatch_ids(void **state)
{
	char id[80];

	(void)state;
	vigie__esc_dispatch_id(id, sizeof(id), "louvre-20251019-093412", 2);
	assert_string_equal(id, "louvre-20251019-093412-l2");
	assert_int_equal(vigie__esc_level_of(id, "louvre-20251019-093412"), 2);
	assert_int_equal(vigie__esc_level_of(id, "louvre-20251019-09341"), -1);
	assert_int_equal(vigie__esc_level_of("louvre-x-lx", "louvre-x"), -1);
	assert_int_equal(vigie__esc_level_of("louvre-x-l99", "louvre-x"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_ladder_climbs_at_each_deadline,
				       setup),
		cmocka_unit_test_setup(
			test_resend_same_level_with_backoff_until_ack, setup),
		cmocka_unit_test_setup(
			test_immediate_tells_every_level_below_police, setup),
		cmocka_unit_test_setup(
			test_offline_post_goes_to_backup_and_back, setup),
		cmocka_unit_test_setup(test_dispatch_moves_when_its_post_dies,
				       setup),
		cmocka_unit_test_setup(
			test_confirmation_after_ack_rearms_police, setup),
		cmocka_unit_test_setup(test_resend_all_after_reconnect, setup),
		cmocka_unit_test(test_dispatch_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
