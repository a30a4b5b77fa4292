/* Two central brokers' reports about posts, bridges and nodes (issue 8):
 * a hung broker that resumes tells old news, which must not mark an
 * online post, bridge or node offline. No broker, no clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arbiter.h"

enum { PRIMARY = 0, STANDBY = 1 };

static void both_connected(struct arbiter *a)
{
	vigie__arb_init(a, 2, 1000);
	vigie__arb_connected(a, PRIMARY, true);
	vigie__arb_connected(a, STANDBY, true);
}

/* The primary hangs; the post's link to it dies; the post stays on the
 * standby. When the primary resumes it publishes the post's will: the
 * standby still says ONLINE, so the post stays online. */
static void test_stale_post_will_after_hang(void **state)
{
	struct arbiter a;

	(void)state;
	both_connected(&a);
	assert_int_equal(vigie__arb_post(&a, PRIMARY, "pp1", true), ARB_UP);
	assert_int_equal(vigie__arb_post(&a, STANDBY, "pp1", true), ARB_UP);
	vigie__arb_connected(&a, PRIMARY, false); /* our keepalive ends it */
	vigie__arb_connected(&a, PRIMARY, true);  /* resumed */
	assert_int_equal(vigie__arb_post(&a, PRIMARY, "pp1", false), ARB_UP);
	/* The post's new birth on the primary. */
	assert_int_equal(vigie__arb_post(&a, PRIMARY, "pp1", true), ARB_UP);
	vigie__arb_free(&a);
}

/* A post that really goes: offline once every broker says so. */
static void test_post_dead_everywhere(void **state)
{
	struct arbiter a;

	(void)state;
	both_connected(&a);
	vigie__arb_post(&a, PRIMARY, "pp1", true);
	vigie__arb_post(&a, STANDBY, "pp1", true);
	assert_int_equal(vigie__arb_post(&a, PRIMARY, "pp1", false), ARB_UP);
	assert_int_equal(vigie__arb_post(&a, STANDBY, "pp1", false), ARB_DOWN);
	/* Back on one broker is back. */
	assert_int_equal(vigie__arb_post(&a, STANDBY, "pp1", true), ARB_UP);
	vigie__arb_free(&a);
}

/* What a broker we lost said is forgotten: it cannot keep a dead post
 * online. */
static void test_disconnected_broker_forgotten(void **state)
{
	struct arbiter a;

	(void)state;
	both_connected(&a);
	vigie__arb_post(&a, PRIMARY, "pp1", true);
	vigie__arb_post(&a, STANDBY, "pp1", true);
	vigie__arb_connected(&a, PRIMARY, false);
	assert_int_equal(vigie__arb_post(&a, STANDBY, "pp1", false), ARB_DOWN);
	vigie__arb_free(&a);
}

/* A bridge lists both centrals and is on one: the other one's "0" is
 * where it is not. */
static void test_bridge_moves_between_centrals(void **state)
{
	struct arbiter a;

	(void)state;
	both_connected(&a);
	assert_int_equal(vigie__arb_bridge(&a, PRIMARY, "louvre", true),
			 ARB_UP);
	assert_int_equal(vigie__arb_bridge(&a, STANDBY, "louvre", false),
			 ARB_UP);
	vigie__arb_connected(&a, PRIMARY, false); /* the primary hangs */
	assert_int_equal(vigie__arb_bridge(&a, STANDBY, "louvre", true),
			 ARB_UP);
	vigie__arb_connected(&a, PRIMARY, true);
	/* Retained "1" from before the hang, then the bridge's will. */
	assert_int_equal(vigie__arb_bridge(&a, PRIMARY, "louvre", true),
			 ARB_UP);
	assert_int_equal(vigie__arb_bridge(&a, PRIMARY, "louvre", false),
			 ARB_UP);
	/* The site broker dies: its will on the standby too. */
	assert_int_equal(vigie__arb_bridge(&a, STANDBY, "louvre", false),
			 ARB_DOWN);
	vigie__arb_free(&a);
}

/* A node's will from the broker it no longer uses, while it heartbeats
 * through the other: set aside. From the broker it uses: believed. */
static void test_node_will_from_the_other_broker(void **state)
{
	struct arbiter a;
	unsigned via = 9;

	(void)state;
	both_connected(&a);
	/* Unknown node: believed. */
	assert_true(vigie__arb_node_offline(&a, STANDBY, "louvre", "n1", 1000,
					    10000, &via));
	vigie__arb_node_alive(&a, PRIMARY, "louvre", "n1", 1000);
	assert_false(vigie__arb_node_offline(&a, STANDBY, "louvre", "n1", 2000,
					     10000, &via));
	assert_int_equal(via, PRIMARY);
	/* The broker it uses says it is gone: believed. */
	assert_true(vigie__arb_node_offline(&a, PRIMARY, "louvre", "n1", 2000,
					    10000, NULL));
	/* Not heard for its reporting time: believed. */
	assert_true(vigie__arb_node_offline(&a, STANDBY, "louvre", "n1", 11000,
					    10000, NULL));
	/* Heard through a broker we lost since: believed. */
	vigie__arb_node_alive(&a, PRIMARY, "louvre", "n1", 12000);
	vigie__arb_connected(&a, PRIMARY, false);
	assert_true(vigie__arb_node_offline(&a, STANDBY, "louvre", "n1", 12500,
					    10000, NULL));
	/* Ids from outside are checked. */
	assert_true(vigie__arb_node_offline(&a, STANDBY, "Bad Site", "n1",
					    12500, 10000, NULL));
	vigie__arb_free(&a);
}

/* Past the cap the reports are believed as they stand (as with one
 * broker), nothing grows. */
static void test_cap(void **state)
{
	struct arbiter a;

	(void)state;
	vigie__arb_init(&a, 2, 1);
	vigie__arb_connected(&a, PRIMARY, true);
	vigie__arb_connected(&a, STANDBY, true);
	vigie__arb_post(&a, STANDBY, "p1", true);
	assert_int_equal(vigie__arb_post(&a, PRIMARY, "p1", false), ARB_UP);
	assert_int_equal(vigie__arb_post(&a, PRIMARY, "p2", false), ARB_DOWN);
	assert_int_equal(a.posts.count, 1);
	vigie__arb_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stale_post_will_after_hang),
		cmocka_unit_test(test_post_dead_everywhere),
		cmocka_unit_test(test_disconnected_broker_forgotten),
		cmocka_unit_test(test_bridge_moves_between_centrals),
		cmocka_unit_test(test_node_will_from_the_other_broker),
		cmocka_unit_test(test_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
