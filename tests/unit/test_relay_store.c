/* The relay's store on a real loop and a real SQLite file: deferred work
 * runs only after its commit and in order, many events share a commit,
 * close commits what is queued, everything loads back after a reopen, the
 * audit log refuses updates and deletes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store.h"
#include "vigie/error.h"

struct ctx {
	uv_loop_t loop;
	char dir[64];
	char path[128];
	struct relay_store *st;
	int order[64];
	int n_order;
	int seals;
	bool closed;
	/* what a reload saw */
	uint64_t contig;
	int seqs, nodes, incidents, escalations, dispatches, ids;
	uint64_t last_seq;
	char incident_data[64];
};

static int64_t count_rows(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	int64_t n = -1;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return n;
}

static void on_seal(void *ud)
{
	struct ctx *c = ud;

	c->seals++;
}

static int setup(void **state)
{
	static struct ctx c;
	struct store_options o = {.sync_full = true, .on_seal = on_seal};

	memset(&c, 0, sizeof(c));
	snprintf(c.dir, sizeof(c.dir), "/tmp/vigie-test-store-XXXXXX");
	assert_non_null(mkdtemp(c.dir));
	snprintf(c.path, sizeof(c.path), "%s/relay.db", c.dir);
	assert_int_equal(uv_loop_init(&c.loop), 0);
	o.ud = &c;
	assert_int_equal(vigie__store_open(&c.loop, c.path, &o, &c.st), 0);
	*state = &c;
	return 0;
}

static void on_closed(void *arg)
{
	((struct ctx *)arg)->closed = true;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	char cmd[160];

	if (c->st && !c->closed) {
		vigie__store_close(c->st, on_closed, c);
		uv_run(&c->loop, UV_RUN_DEFAULT);
	}
	assert_int_equal(uv_loop_close(&c->loop), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

struct defer_arg {
	struct ctx *c;
	int id;
	int64_t rows_seen; /* events on disk when it ran */
};

static void record(void *arg, int status)
{
	struct defer_arg *d = arg;

	assert_int_equal(status, 0);
	d->c->order[d->c->n_order++] = d->id;
	d->rows_seen = count_rows(d->c->path, "SELECT count(*) FROM events");
}

static void put_event(struct ctx *c, const char *node, uint64_t boot,
		      uint64_t seq)
{
	struct store_event e = {
		.site = "louvre",
		.node = node,
		.boot_id = boot,
		.seq = seq,
		.time_us = 1,
		.recv_us = 2,
		.kind = 3,
		.state = 1,
		.zone = "gallery",
		.sensor = "pir-1",
		.payload = "\x0a\x01x",
		.len = 3,
	};

	assert_int_equal(vigie__store_put_event(c->st, &e), 0);
}

static void test_defer_after_commit_in_order(void **state)
{
	struct ctx *c = *state;
	struct defer_arg a = {c, 1, 0}, b = {c, 2, 0};

	put_event(c, "n1", 7, 1);
	assert_int_equal(vigie__store_defer(c->st, record, &a), 0);
	put_event(c, "n1", 7, 2);
	assert_int_equal(vigie__store_defer(c->st, record, &b), 0);
	assert_int_equal(vigie__store_backlog(c->st), 2);
	/* Nothing runs before the loop commits. */
	assert_int_equal(c->n_order, 0);
	while (c->n_order < 2)
		uv_run(&c->loop, UV_RUN_ONCE);
	assert_int_equal(c->order[0], 1);
	assert_int_equal(c->order[1], 2);
	assert_int_equal(a.rows_seen, 2);
	assert_int_equal(vigie__store_backlog(c->st), 0);
	assert_true(c->seals >= 1);
}

static int position(const struct ctx *c, int id)
{
	for (int i = 0; i < c->n_order; i++)
		if (c->order[i] == id)
			return i;
	return -1;
}

/* A commit's effects leave at the commit; its durable work (Receipts)
 * only after the fsync that follows, and in order with the durable work
 * of later batches, also of a batch with nothing to write. */
static void test_durable_work_waits_for_the_fsync(void **state)
{
	struct ctx *c = *state;
	struct defer_arg d1 = {c, 1, 0}, e1 = {c, 2, 0}, d2 = {c, 3, 0},
			 e2 = {c, 4, 0};

	put_event(c, "n1", 7, 1);
	assert_int_equal(vigie__store_defer_durable(c->st, record, &d1), 0);
	assert_int_equal(vigie__store_defer(c->st, record, &e1), 0);
	while (c->n_order < 1)
		uv_run(&c->loop, UV_RUN_ONCE);
	/* Queued second, ran first: it does not wait for the disk. */
	assert_int_equal(c->order[0], 2);
	assert_int_equal(e1.rows_seen, 1);
	assert_int_equal(vigie__store_defer_durable(c->st, record, &d2), 0);
	assert_int_equal(vigie__store_defer(c->st, record, &e2), 0);
	while (c->n_order < 4)
		uv_run(&c->loop, UV_RUN_ONCE);
	assert_true(position(c, 1) < position(c, 3));
	assert_int_equal(d1.rows_seen, 1);
	assert_int_equal(vigie__store_backlog(c->st), 0);
}

static void test_group_commit(void **state)
{
	struct ctx *c = *state;
	struct defer_arg last = {c, 9, 0};
	uint64_t commits;

	for (uint64_t s = 1; s <= 5000; s++)
		put_event(c, "n2", 1, s);
	assert_int_equal(vigie__store_defer(c->st, record, &last), 0);
	while (c->n_order < 1)
		uv_run(&c->loop, UV_RUN_ONCE);
	commits = vigie__store_commits(c->st);
	assert_true(commits >= 1 && commits <= 2);
	assert_int_equal(last.rows_seen, 5000);
	/* A repeat is ignored by the database too. */
	put_event(c, "n2", 1, 17);
	last.id = 10;
	assert_int_equal(vigie__store_defer(c->st, record, &last), 0);
	while (c->n_order < 2)
		uv_run(&c->loop, UV_RUN_ONCE);
	assert_int_equal(last.rows_seen, 5000);
}

static void test_empty_batch_defer_runs_without_commit(void **state)
{
	struct ctx *c = *state;
	struct defer_arg a = {c, 5, 0};

	assert_int_equal(vigie__store_defer(c->st, record, &a), 0);
	while (c->n_order < 1)
		uv_run(&c->loop, UV_RUN_ONCE);
	assert_int_equal(vigie__store_commits(c->st), 0);
	/* A kick seals an empty batch: the owner gets its on_seal, once the
	 * small batch's linger is over. */
	c->seals = 0;
	vigie__store_kick(c->st);
	while (c->seals < 1)
		uv_run(&c->loop, UV_RUN_ONCE);
	uv_run(&c->loop, UV_RUN_NOWAIT);
	assert_int_equal(c->seals, 1);
}

static void l_stream(void *ud, const char *site, const char *node,
		     uint64_t boot_id, uint64_t contig)
{
	struct ctx *c = ud;

	assert_string_equal(site, "louvre");
	assert_string_equal(node, "n1");
	assert_int_equal(boot_id, 7);
	c->contig = contig;
}

static void l_seq(void *ud, const char *site, const char *node,
		  uint64_t boot_id, uint64_t seq)
{
	struct ctx *c = ud;

	(void)site;
	(void)node;
	(void)boot_id;
	c->seqs++;
	c->last_seq = seq;
}

static void l_node(void *ud, const char *site, const char *node,
		   uint64_t reporting_ms)
{
	struct ctx *c = ud;

	(void)site;
	(void)node;
	assert_int_equal(reporting_ms, 20000);
	c->nodes++;
}

static void l_incident(void *ud, const struct store_incident *i)
{
	struct ctx *c = ud;

	assert_string_equal(i->id, "louvre-20251019-093412");
	assert_string_equal(i->detectors, "n1/pir-1@5");
	assert_int_equal(i->len, 4);
	memcpy(c->incident_data, i->data, i->len);
	c->incidents++;
}

static void l_escalation(void *ud, const struct store_escalation *e)
{
	struct ctx *c = ud;

	assert_int_equal(e->level, 2);
	assert_true(e->active);
	assert_int_equal(e->deadline_us, 123);
	c->escalations++;
}

static void l_dispatch(void *ud, const struct store_dispatch *d)
{
	struct ctx *c = ud;

	assert_string_equal(d->id, "louvre-20251019-093412-l2");
	assert_string_equal(d->post, "pp-2");
	assert_string_equal(d->backup_for, "pp-1");
	assert_int_equal(d->attempts, 3);
	c->dispatches++;
}

static void l_id(void *ud, const char *prefix, uint64_t sec, uint32_t k)
{
	struct ctx *c = ud;

	assert_string_equal(prefix, "louvre");
	assert_int_equal(sec, 1760866452);
	assert_int_equal(k, 2);
	c->ids++;
}

static void test_close_commits_and_reload(void **state)
{
	struct ctx *c = *state;
	struct store_options o = {.sync_full = false};
	struct store_incident si = {
		.id = "louvre-20251019-093412",
		.site = "louvre",
		.zone = "gallery",
		.subject = "",
		.state = 1,
		.priority = 3,
		.kind = 5,
		.opened_us = 1,
		.updated_us = 2,
		.id_prefix = "louvre",
		.id_sec = 1760866452,
		.id_k = 1,
		.detectors = "n1/pir-1@5",
		.data = "\x01\x02\x03\x04",
		.len = 4,
	};
	struct store_incident closed = si;
	struct store_escalation se = {.incident = si.id,
				      .active = true,
				      .level = 2,
				      .deadline_us = 123};
	struct store_dispatch sd = {.id = "louvre-20251019-093412-l2",
				    .incident = si.id,
				    .level = 2,
				    .post = "pp-2",
				    .backup_for = "pp-1",
				    .attempts = 3};
	struct store_loader l = {
		.stream = l_stream,
		.seq = l_seq,
		.node = l_node,
		.incident = l_incident,
		.escalation = l_escalation,
		.dispatch = l_dispatch,
		.id = l_id,
		.ud = c,
	};
	struct defer_arg a = {c, 1, 0};

	put_event(c, "n1", 7, 1);
	put_event(c, "n1", 7, 2);
	put_event(c, "n1", 7, 5); /* above a gap */
	assert_int_equal(vigie__store_put_stream(c->st, "louvre", "n1", 7, 2),
			 0);
	assert_int_equal(vigie__store_put_node(c->st, "louvre", "n1", 20000, 9),
			 0);
	assert_int_equal(vigie__store_put_incident(c->st, &si), 0);
	closed.id = "louvre-20251019-093412-2";
	closed.state = 4; /* closed: not loaded, but its id is remembered */
	closed.id_k = 2;
	assert_int_equal(vigie__store_put_incident(c->st, &closed), 0);
	assert_int_equal(vigie__store_put_escalation(c->st, &se), 0);
	assert_int_equal(vigie__store_put_dispatch(c->st, &sd), 0);
	assert_int_equal(vigie__store_audit(c->st, 10, si.id, "opened",
					    "node:louvre/n1", "motion"),
			 0);
	assert_int_equal(
		vigie__store_audit(c->st, 11, NULL, "started", "relay", ""), 0);
	assert_int_equal(vigie__store_defer(c->st, record, &a), 0);
	/* Closed before the loop ran: close commits and runs the work. */
	vigie__store_close(c->st, on_closed, c);
	assert_int_equal(vigie__store_put_node(c->st, "louvre", "n9", 1, 1),
			 VIGIE_ECLOSED);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	assert_true(c->closed);
	assert_int_equal(c->n_order, 1);
	assert_int_equal(count_rows(c->path, "SELECT count(*) FROM audit"), 2);

	c->closed = false;
	assert_int_equal(vigie__store_open(&c->loop, c->path, &o, &c->st), 0);
	assert_int_equal(vigie__store_load(c->st, &l), 0);
	assert_int_equal(c->contig, 2);
	assert_int_equal(c->seqs, 1);
	assert_int_equal(c->last_seq, 5);
	assert_int_equal(c->nodes, 1);
	assert_int_equal(c->incidents, 1);
	assert_memory_equal(c->incident_data, "\x01\x02\x03\x04", 4);
	assert_int_equal(c->escalations, 1);
	assert_int_equal(c->dispatches, 1);
	assert_int_equal(c->ids, 1);
}

static void test_audit_is_append_only(void **state)
{
	struct ctx *c = *state;
	struct defer_arg a = {c, 1, 0};
	sqlite3 *db;
	char *err = NULL;

	assert_int_equal(
		vigie__store_audit(c->st, 10, "x", "opened", "relay", "d"), 0);
	assert_int_equal(vigie__store_defer(c->st, record, &a), 0);
	while (c->n_order < 1)
		uv_run(&c->loop, UV_RUN_ONCE);
	assert_int_equal(sqlite3_open(c->path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_not_equal(sqlite3_exec(db,
					  "UPDATE audit SET what = 'forged'",
					  NULL, NULL, &err),
			     SQLITE_OK);
	assert_non_null(strstr(err, "append-only"));
	sqlite3_free(err);
	err = NULL;
	assert_int_not_equal(
		sqlite3_exec(db, "DELETE FROM audit", NULL, NULL, &err),
		SQLITE_OK);
	sqlite3_free(err);
	sqlite3_close(db);
	assert_int_equal(count_rows(c->path, "SELECT count(*) FROM audit"), 1);
}

static void test_not_a_database(void **state)
{
	struct ctx *c = *state;
	struct relay_store *st = NULL;
	char path[160];
	FILE *f;

	snprintf(path, sizeof(path), "%s/garbage.db", c->dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("this is not SQLite, just some bytes long enough to be "
	      "read.....\n"
	      "................................................................"
	      "\n",
	      f);
	fclose(f);
	assert_int_equal(vigie__store_open(&c->loop, path, NULL, &st),
			 VIGIE_EIO);
	assert_null(st);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_defer_after_commit_in_order),
		T(test_durable_work_waits_for_the_fsync),
		T(test_group_commit),
		T(test_empty_batch_defer_runs_without_commit),
		T(test_close_commits_and_reload),
		T(test_audit_is_append_only),
		T(test_not_a_database),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
