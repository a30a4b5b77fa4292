/* vigie-post's queue: one entry per dispatch id, order, ack states,
 * escalation levels, the cap and pruning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "post.h"
#include "vigie/error.h"

#define NOW_US 1800000000000000ull
#define P_LOW  VIGIE__V1__PRIORITY__PRIORITY_LOW
#define P_HIGH VIGIE__V1__PRIORITY__PRIORITY_HIGH
#define P_CRIT VIGIE__V1__PRIORITY__PRIORITY_CRITICAL

/* A dispatch on the stack; strings point at literals. */
struct dsp {
	Vigie__V1__Dispatch d;
	Vigie__V1__Zone z;
};

static void make(struct dsp *m, const char *id, const char *incident,
		 int priority, uint64_t first_s_ago, uint32_t level,
		 uint32_t attempt)
{
	vigie__v1__dispatch__init(&m->d);
	vigie__v1__zone__init(&m->z);
	m->z.id = (char *)"apollo-gallery";
	m->z.name = (char *)"Galerie d'Apollon";
	m->d.id = (char *)id;
	m->d.incident = (char *)incident;
	m->d.post = (char *)"pp-paris";
	m->d.site = (char *)"louvre";
	m->d.zone = &m->z;
	m->d.kind = VIGIE__V1__EVENT_KIND__KIND_GLASS_BREAK;
	m->d.priority = priority;
	m->d.first_event_us = NOW_US - first_s_ago * 1000000u;
	m->d.sent_us = NOW_US + attempt;
	m->d.level = level;
	m->d.attempt = attempt;
}

static struct post_entry *upsert(struct post_queue *q, struct dsp *m,
				 enum post_upsert expect)
{
	struct post_entry *e = NULL;
	enum post_upsert what;

	assert_int_equal(vigie__postq_upsert(q, &m->d, NOW_US, 1000, &what, &e),
			 0);
	assert_int_equal(what, expect);
	assert_non_null(e);
	return e;
}

static void test_same_id_is_one_entry(void **state)
{
	struct post_queue q;
	struct dsp m;
	struct post_entry *e;

	(void)state;
	vigie__postq_init(&q, 16);
	make(&m, "louvre-17-l2", "louvre-17", P_CRIT, 30, 2, 1);
	e = upsert(&q, &m, POST_UPSERT_NEW);
	assert_string_equal(e->d.zone_name, "Galerie d'Apollon");
	/* The broker redelivers the same copy: nothing changes. */
	upsert(&q, &m, POST_UPSERT_SAME);
	/* The relay re-sends it: same id, next attempt. */
	make(&m, "louvre-17-l2", "louvre-17", P_CRIT, 30, 2, 2);
	m.d.confirmed = 1;
	e = upsert(&q, &m, POST_UPSERT_CHANGED);
	assert_int_equal(q.len, 1);
	assert_int_equal(e->d.attempt, 2);
	assert_true(e->d.confirmed);
	assert_int_equal(e->receptions, 3);
	/* A stale copy of attempt 1 arriving late does not go backwards. */
	make(&m, "louvre-17-l2", "louvre-17", P_CRIT, 30, 2, 1);
	e = upsert(&q, &m, POST_UPSERT_SAME);
	assert_int_equal(e->d.attempt, 2);
	assert_true(e->d.confirmed);
	assert_int_equal(q.len, 1);
	vigie__postq_free(&q);
}

static void test_order_priority_then_age(void **state)
{
	struct post_queue q;
	struct dsp m;

	(void)state;
	vigie__postq_init(&q, 16);
	make(&m, "a-l1", "a", P_LOW, 500, 1, 1);
	upsert(&q, &m, POST_UPSERT_NEW);
	make(&m, "b-l1", "b", P_CRIT, 10, 1, 1);
	upsert(&q, &m, POST_UPSERT_NEW);
	make(&m, "c-l1", "c", P_CRIT, 90, 1, 1);
	upsert(&q, &m, POST_UPSERT_NEW);
	make(&m, "d-l1", "d", P_HIGH, 1000, 1, 1);
	upsert(&q, &m, POST_UPSERT_NEW);
	/* Same priority and age as c: the id decides, so the order is total. */
	make(&m, "bb-l1", "bb", P_CRIT, 90, 1, 1);
	upsert(&q, &m, POST_UPSERT_NEW);
	assert_int_equal(q.len, 5);
	assert_string_equal(q.v[0]->d.id, "bb-l1");
	assert_string_equal(q.v[1]->d.id, "c-l1");
	assert_string_equal(q.v[2]->d.id, "b-l1");
	assert_string_equal(q.v[3]->d.id, "d-l1");
	assert_string_equal(q.v[4]->d.id, "a-l1");
	vigie__postq_free(&q);
}

static void test_ack_states(void **state)
{
	struct post_queue q;
	struct dsp m;
	struct post_entry *e;

	(void)state;
	vigie__postq_init(&q, 16);
	make(&m, "crit-l1", "crit", P_CRIT, 10, 1, 1);
	e = upsert(&q, &m, POST_UPSERT_NEW);
	make(&m, "low-l1", "low", P_LOW, 10, 1, 1);
	upsert(&q, &m, POST_UPSERT_NEW);
	assert_ptr_equal(q.v[0], e);
	assert_int_equal(vigie__postq_open_count(&q), 2);

	/* Pending: the human acked, the broker does not have it yet. */
	assert_int_equal(vigie__postq_set_ack(&q, e, POST_ACK_PENDING, "Dupont",
					      NOW_US + 5, 2000),
			 0);
	assert_false(vigie__postq_entry_done(e));
	assert_ptr_equal(q.v[0], e);
	/* Sent: done, greyed, below what is still open. */
	assert_int_equal(
		vigie__postq_set_ack(&q, e, POST_ACK_SENT, NULL, 0, 2100), 0);
	assert_true(vigie__postq_entry_done(e));
	assert_ptr_equal(q.v[1], e);
	assert_int_equal(vigie__postq_open_count(&q), 1);
	assert_string_equal(e->acked_by, "Dupont");
	assert_int_equal(e->acked_us, NOW_US + 5);
	assert_int_equal(e->done_ms, 2100);
	/* Confirmed by the relay; never backwards afterwards. */
	vigie__postq_set_ack(&q, e, POST_ACK_CONFIRMED, "Other", 1, 3000);
	assert_int_equal(e->ack, POST_ACK_CONFIRMED);
	vigie__postq_set_ack(&q, e, POST_ACK_PENDING, "Other", 1, 3000);
	assert_int_equal(e->ack, POST_ACK_CONFIRMED);
	assert_string_equal(e->acked_by, "Dupont");
	assert_int_equal(e->done_ms, 2100);
	/* A re-send after the ack keeps the ack state. */
	make(&m, "crit-l1", "crit", P_CRIT, 10, 1, 2);
	e = upsert(&q, &m, POST_UPSERT_CHANGED);
	assert_int_equal(e->ack, POST_ACK_CONFIRMED);
	vigie__postq_free(&q);
}

static void test_escalation_supersedes(void **state)
{
	struct post_queue q;
	struct dsp m;
	struct post_entry *l1, *l2, *late;

	(void)state;
	vigie__postq_init(&q, 16);
	make(&m, "inc-1-l1", "inc-1", P_HIGH, 60, 1, 3);
	l1 = upsert(&q, &m, POST_UPSERT_NEW);
	make(&m, "inc-1-l2", "inc-1", P_CRIT, 60, 2, 1);
	l2 = upsert(&q, &m, POST_UPSERT_NEW);
	assert_int_equal(q.len, 2);
	assert_true(l1->superseded);
	assert_false(vigie__postq_entry_visible(l1));
	assert_false(l2->superseded);
	assert_int_equal(vigie__postq_open_count(&q), 1);
	/* A level-0 copy still in flight shows up late: superseded at once. */
	make(&m, "inc-1-l0", "inc-1", P_HIGH, 60, 0, 1);
	late = upsert(&q, &m, POST_UPSERT_NEW);
	assert_true(late->superseded);
	assert_false(l2->superseded);
	/* Another incident is not touched. */
	make(&m, "inc-2-l1", "inc-2", P_LOW, 5, 1, 1);
	assert_false(upsert(&q, &m, POST_UPSERT_NEW)->superseded);
	vigie__postq_free(&q);
}

static void test_incident_from_relay(void **state)
{
	struct post_queue q;
	struct dsp m;
	struct post_entry *a, *b;

	(void)state;
	vigie__postq_init(&q, 16);
	/* No incident in the payload: derived from the id for the Ack. */
	make(&m, "louvre-3-l1", "", P_CRIT, 5, 1, 1);
	a = upsert(&q, &m, POST_UPSERT_NEW);
	assert_string_equal(a->d.incident, "louvre-3");
	make(&m, "orsay-9-l1", "orsay-9", P_CRIT, 5, 1, 1);
	b = upsert(&q, &m, POST_UPSERT_NEW);
	/* A dashboard acknowledged louvre-3: the relay's Incident says so. */
	assert_int_equal(
		vigie__postq_incident(
			&q, "louvre-3",
			VIGIE__V1__INCIDENT_STATE__INCIDENT_ACKNOWLEDGED,
			"HQ Martin", NOW_US + 9, 5000),
		1);
	assert_int_equal(a->ack, POST_ACK_CONFIRMED);
	assert_string_equal(a->acked_by, "HQ Martin");
	assert_int_equal(b->ack, POST_ACK_NONE);
	/* Repeated (retained at every resubscribe): no change. */
	assert_int_equal(
		vigie__postq_incident(
			&q, "louvre-3",
			VIGIE__V1__INCIDENT_STATE__INCIDENT_ACKNOWLEDGED,
			"HQ Martin", NOW_US + 9, 5000),
		0);
	/* Open states change nothing; closed closes. */
	assert_int_equal(
		vigie__postq_incident(&q, "orsay-9",
				      VIGIE__V1__INCIDENT_STATE__INCIDENT_OPEN,
				      "", 0, 5000),
		0);
	assert_int_equal(vigie__postq_incident(
				 &q, "orsay-9",
				 VIGIE__V1__INCIDENT_STATE__INCIDENT_CLOSED, "",
				 0, 6000),
			 1);
	assert_true(b->closed);
	assert_true(vigie__postq_entry_done(b));
	assert_int_equal(vigie__postq_incident(&q, "", 2, "x", 0, 1), 0);
	vigie__postq_free(&q);
}

static void test_cap_and_prune(void **state)
{
	struct post_queue q;
	struct dsp m;
	struct post_entry *e = NULL, *a;
	enum post_upsert what;

	(void)state;
	vigie__postq_init(&q, 2);
	make(&m, "a-l1", "a", P_CRIT, 5, 1, 1);
	a = upsert(&q, &m, POST_UPSERT_NEW);
	make(&m, "b-l1", "b", P_CRIT, 5, 1, 1);
	upsert(&q, &m, POST_UPSERT_NEW);
	/* Full of open alarms: a third is refused, none is dropped. */
	make(&m, "c-l1", "c", P_CRIT, 5, 1, 1);
	assert_int_equal(vigie__postq_upsert(&q, &m.d, NOW_US, 1, &what, &e),
			 VIGIE_EFULL);
	assert_int_equal(q.len, 2);
	/* A re-send of a known id still updates at the cap. */
	make(&m, "b-l1", "b", P_CRIT, 5, 1, 2);
	upsert(&q, &m, POST_UPSERT_CHANGED);
	/* Once one is acknowledged it makes room. */
	vigie__postq_set_ack(&q, a, POST_ACK_SENT, "x", 1, 100);
	make(&m, "c-l1", "c", P_CRIT, 5, 1, 1);
	upsert(&q, &m, POST_UPSERT_NEW);
	assert_int_equal(q.len, 2);
	assert_int_equal(q.evicted, 1);
	assert_null(vigie__postq_find(&q, "a-l1"));

	/* Prune: finished entries leave after keep_ms; pending ones never. */
	e = vigie__postq_find(&q, "b-l1");
	vigie__postq_set_ack(&q, e, POST_ACK_SENT, "x", 1, 1000);
	e = vigie__postq_find(&q, "c-l1");
	vigie__postq_set_ack(&q, e, POST_ACK_PENDING, "x", 1, 1000);
	assert_int_equal(vigie__postq_prune(&q, 1500, 1000), 0);
	assert_int_equal(vigie__postq_prune(&q, 2000, 1000), 1);
	assert_int_equal(q.len, 1);
	assert_int_equal(vigie__postq_prune(&q, 99999, 1000), 0);
	vigie__postq_free(&q);
}

static void test_check(void **state)
{
	struct dsp m;
	char err[256];

	(void)state;
	make(&m, "louvre-17-l2", "louvre-17", P_CRIT, 5, 2, 1);
	assert_int_equal(vigie__postq_check(&m.d, "pp-paris", err, sizeof(err)),
			 0);
	m.d.post = (char *)"";
	assert_int_equal(vigie__postq_check(&m.d, "pp-paris", err, sizeof(err)),
			 0);
	m.d.post = (char *)"pp-lyon";
	assert_int_equal(vigie__postq_check(&m.d, "pp-paris", err, sizeof(err)),
			 VIGIE_EINVAL);
	assert_non_null(strstr(err, "another post"));
	m.d.post = (char *)"pp-paris";
	m.d.id = (char *)"";
	assert_int_equal(vigie__postq_check(&m.d, "pp-paris", err, sizeof(err)),
			 VIGIE_EINVAL);
	m.d.id = (char *)"has space";
	assert_int_equal(vigie__postq_check(&m.d, "pp-paris", err, sizeof(err)),
			 VIGIE_EINVAL);
	m.d.id = (char *)"esc\033[2J";
	assert_int_equal(vigie__postq_check(&m.d, "pp-paris", err, sizeof(err)),
			 VIGIE_EINVAL);
	m.d.id = (char *)"ok-l1";
	m.d.incident = (char *)"bad\nincident";
	assert_int_equal(vigie__postq_check(&m.d, "pp-paris", err, sizeof(err)),
			 VIGIE_EINVAL);
}

/* A Dispatch decoded from the wire with every optional part absent. */
static void test_minimal_dispatch(void **state)
{
	Vigie__V1__Dispatch d = VIGIE__V1__DISPATCH__INIT;
	struct post_queue q;
	struct post_entry *e;
	enum post_upsert what;
	uint8_t *buf;
	size_t len;
	Vigie__V1__Dispatch *u;

	(void)state;
	d.id = (char *)"x-l1";
	assert_int_equal(vigie_pack(&d.base, &buf, &len), 0);
	u = vigie__v1__dispatch__unpack(NULL, len, buf);
	free(buf);
	assert_non_null(u);
	vigie__postq_init(&q, 4);
	assert_int_equal(vigie__postq_upsert(&q, u, NOW_US, 1, &what, &e), 0);
	vigie__v1__dispatch__free_unpacked(u, NULL);
	assert_string_equal(e->d.zone_id, "");
	assert_string_equal(e->d.incident, "x");
	assert_false(e->d.has_zone_location);
	assert_int_equal(e->d.n_cameras, 0);
	vigie__postq_free(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_id_is_one_entry),
		cmocka_unit_test(test_order_priority_then_age),
		cmocka_unit_test(test_ack_states),
		cmocka_unit_test(test_escalation_supersedes),
		cmocka_unit_test(test_incident_from_relay),
		cmocka_unit_test(test_cap_and_prune),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_minimal_dispatch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
