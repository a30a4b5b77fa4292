/* The node's durable outbox; the contract is in include/vigie/outbox.h.
 *
 * Threads: the SQLite connection is used by the loop thread in open and in
 * the final close, and by one thread-pool worker while a batch is in flight.
 * At most one batch is ever in flight and open/close touch the database only
 * when none is, so the connection is never used by two threads at once
 * (opened with SQLITE_OPEN_NOMUTEX for that reason). Everything else - the
 * in-memory list, the op queue, callbacks - belongs to the loop thread. The
 * worker reads only the fields of an item that never change after append
 * (boot_id, seq, time_us, data, len). */

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>
#include <uv.h>

#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/outbox.h"
#include "outbox_internal.h"

#define DEFAULT_MAX_PENDING     1000000
#define DEFAULT_MAX_BATCH       4096
#define DEFAULT_BUSY_TIMEOUT_MS 5000
#define SCHEMA_VERSION          1

#define container_of(ptr, type, member)                                        \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* WITHOUT ROWID: the primary key is the b-tree, so an insert writes one
 * tree, the load reads it in order and a receipt's range delete is one
 * seek. */
static const char schema_sql[] = "CREATE TABLE IF NOT EXISTS events ("
				 " boot_id INTEGER NOT NULL,"
				 " seq INTEGER NOT NULL,"
				 " time_us INTEGER NOT NULL,"
				 " payload BLOB NOT NULL,"
				 " PRIMARY KEY (boot_id, seq)) WITHOUT ROWID;"
				 "CREATE TABLE IF NOT EXISTS meta ("
				 " key TEXT PRIMARY KEY,"
				 " value INTEGER NOT NULL) WITHOUT ROWID;"
				 "PRAGMA user_version = 1;";

enum op_kind { OP_INSERT, OP_DELETE };

/* One step of a transaction, queued in the order the loop asked for it: an
 * insert followed by a delete that covers it must run in that order. */
struct op {
	struct op *next;
	enum op_kind kind;
};

/* An event: the public entry, its place in the list of unreceipted events
 * and its insert op. One allocation holds the payload too, so it is copied
 * once, and the insert can still read it after a receipt that arrived before
 * the commit (publish does not wait for the fsync) took it off the list. */
struct item {
	struct vigie_outbox_entry e;
	struct item *prev;
	struct item *next;
	struct op op;
	vigie_outbox_durable_cb cb;
	void *arg;
	bool committing; /* insert queued or in flight: op and data in use */
	bool receipted;  /* off the list; freed when the insert is done */
	uint8_t data[];
};

struct del_op {
	struct op op;
	uint64_t boot_id;
	uint64_t seq;
	/* Put back after a failed transaction. A retry rides along with the
	 * next batch but does not start one: on a broken disk it would fail
	 * again at once, forever. */
	bool retry;
};

/* Where each boot's run of entries starts in the list, so a receipt reaches
 * its boot without walking older boots' entries (after a long outage a
 * restarted node may hold a million of them). Sorted by boot_id like the
 * list; only boots with entries in memory have one. */
struct seg {
	uint64_t boot_id;
	struct item *first;
	size_t count;
};

enum ob_state { OB_OPEN, OB_CLOSING, OB_CLOSED };

struct vigie_outbox {
	uv_loop_t *loop;
	char *path;
	sqlite3 *db;
	sqlite3_stmt *st_begin;
	sqlite3_stmt *st_commit;
	sqlite3_stmt *st_rollback;
	sqlite3_stmt *st_insert;
	sqlite3_stmt *st_delete;
	uint64_t boot_id;
	uint64_t last_seq;
	size_t max_pending;
	size_t max_batch;

	/* Unreceipted events in (boot_id, seq) order. */
	struct item *head;
	struct item *tail;
	size_t pending;
	/* Items allocated: the list plus receipted ones whose insert is not
	 * done yet. max_pending caps this, so memory stays bounded even when
	 * the disk stalls while publishing and receipts go on. */
	size_t held;
	struct seg *segs;
	size_t nsegs;
	size_t segs_cap;

	/* Ops waiting for the next batch; fresh = those not retries. */
	struct op *q_head;
	struct op *q_tail;
	size_t q_fresh;
	size_t q_inserts; /* inserts among them */

	uv_idle_t kick;
	uv_timer_t linger; /* DELETE_LINGER_MS, then deletes go alone */
	bool lingered;
	uv_work_t work;
	bool in_flight;
	struct op *batch; /* owned by the worker while in_flight */
	size_t batch_inserts;
	int batch_rc;        /* SQLite code, set by the worker */
	char batch_err[256]; /* SQLite message, copied by the worker */
	uint64_t commits;

	enum ob_state state;
	void (*close_cb)(void *arg);
	void *close_arg;
};

static int db_fail(const struct vigie_outbox *ob, const char *what)
{
	vigie_log_error("outbox %s: %s: %s", ob->path, what,
			sqlite3_errmsg(ob->db));
	return VIGIE_EIO;
}

static int exec_sql(struct vigie_outbox *ob, const char *sql, const char *what)
{
	char *msg = NULL;
	int rc;

	rc = sqlite3_exec(ob->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		vigie_log_error("outbox %s: %s: %s", ob->path, what,
				msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return VIGIE_EIO;
	}
	return 0;
}

/* First column of the first row of `sql` (with ?1 bound to `param` when
 * `bind`); 0 when there is no row or it is NULL. */
static int query_int(struct vigie_outbox *ob, const char *sql, bool bind,
		     int64_t param, int64_t *out)
{
	sqlite3_stmt *st;
	int rc;

	*out = 0;
	rc = sqlite3_prepare_v2(ob->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(ob, "cannot read the database");
	if (bind) {
		rc = sqlite3_bind_int64(st, 1, param);
		if (rc != SQLITE_OK) {
			rc = db_fail(ob, "cannot bind");
			goto out_finalize;
		}
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = 0;
	} else {
		rc = db_fail(ob, "cannot read the database");
	}
out_finalize:
	sqlite3_finalize(st);
	return rc;
}

static int db_open(struct vigie_outbox *ob)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *mode;
	int rc;

	rc = sqlite3_open_v2(ob->path, &ob->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		vigie_log_error("outbox %s: cannot open: %s", ob->path,
				ob->db ? sqlite3_errmsg(ob->db)
				       : sqlite3_errstr(rc));
		rc = VIGIE_EIO;
		goto out_close_db;
	}
	sqlite3_extended_result_codes(ob->db, 1);
	sqlite3_busy_timeout(ob->db, DEFAULT_BUSY_TIMEOUT_MS);

	/* The first statement reads the header: a file that is not SQLite
	 * fails here with "file is not a database". The mode is checked, not
	 * assumed: SQLite keeps the old journal mode where WAL cannot work
	 * (no shared memory) and our durability argument is WAL's. */
	rc = sqlite3_prepare_v2(ob->db, "PRAGMA journal_mode=WAL", -1, &st,
				NULL);
	if (rc != SQLITE_OK) {
		rc = db_fail(ob, "cannot open the database");
		goto out_close_db;
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = db_fail(ob, "cannot switch to WAL");
		goto out_finalize;
	}
	mode = sqlite3_column_text(st, 0);
	if (!mode || strcmp((const char *)mode, "wal") != 0) {
		vigie_log_error(
			"outbox %s: journal mode is %s, WAL is required",
			ob->path, mode ? (const char *)mode : "unknown");
		rc = VIGIE_EIO;
		goto out_finalize;
	}
	sqlite3_finalize(st);

	/* FULL: a commit in WAL mode is fsync'd before COMMIT returns, which
	 * is what the durable callback promises. The size limit gives back
	 * the disk a burst after an outage grew the WAL to. */
	rc = exec_sql(ob,
		      "PRAGMA synchronous=FULL;"
		      "PRAGMA journal_size_limit=67108864;",
		      "cannot configure the database");
	if (rc != 0)
		goto out_close_db;
	return 0;

out_finalize:
	sqlite3_finalize(st);
out_close_db:
	sqlite3_close(ob->db);
	ob->db = NULL;
	return rc;
}

/* Schema and the new boot id in one transaction, committed (fsync'd) before
 * open returns: an id handed out is never handed out again, even if we die
 * right after. */
static int db_start_boot(struct vigie_outbox *ob)
{
	int64_t version, old_boot, max_boot, unused;
	uint64_t boot, now_s;
	int rc;

	rc = exec_sql(ob, "BEGIN IMMEDIATE", "cannot start a transaction");
	if (rc != 0)
		return rc;
	rc = query_int(ob, "PRAGMA user_version", false, 0, &version);
	if (rc != 0)
		goto out_rollback;
	if (version > SCHEMA_VERSION) {
		vigie_log_error("outbox %s: schema version %" PRId64
				" is newer than this program's (%d)",
				ob->path, version, SCHEMA_VERSION);
		rc = VIGIE_EIO;
		goto out_rollback;
	}
	rc = exec_sql(ob, schema_sql, "cannot create the schema");
	if (rc != 0)
		goto out_rollback;
	rc = query_int(ob, "SELECT value FROM meta WHERE key = 'boot_id'",
		       false, 0, &old_boot);
	if (rc != 0)
		goto out_rollback;
	/* Also above every stored event's boot: a lost or edited meta row
	 * must not make us reuse (boot_id, seq) pairs still on disk. */
	rc = query_int(ob, "SELECT max(boot_id) FROM events", false, 0,
		       &max_boot);
	if (rc != 0)
		goto out_rollback;
	if (old_boot < 0 || old_boot == INT64_MAX || max_boot < 0 ||
	    max_boot == INT64_MAX) {
		vigie_log_error("outbox %s: stored boot id out of range "
				"(meta %" PRId64 ", events %" PRId64 ")",
				ob->path, old_boot, max_boot);
		rc = VIGIE_EIO;
		goto out_rollback;
	}
	boot = (uint64_t)old_boot + 1;
	if ((uint64_t)max_boot + 1 > boot)
		boot = (uint64_t)max_boot + 1;
	/* Not below the clock: a node whose file was lost or replaced still
	 * starts above every boot id it used before. */
	now_s = vigie_clock_now_us() / 1000000;
	if (now_s > boot)
		boot = now_s;
	rc = query_int(ob,
		       "INSERT OR REPLACE INTO meta (key, value) "
		       "VALUES ('boot_id', ?1)",
		       true, (int64_t)boot, &unused);
	if (rc != 0)
		goto out_rollback;
	rc = exec_sql(ob, "COMMIT", "cannot commit the new boot id");
	if (rc != 0)
		goto out_rollback;
	ob->boot_id = boot;
	return 0;

out_rollback:
	/* Its own failure changes nothing: closing the connection rolls
	 * back as well. */
	sqlite3_exec(ob->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int prepare(struct vigie_outbox *ob, const char *sql, sqlite3_stmt **out)
{
	int rc;

	rc = sqlite3_prepare_v3(ob->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out,
				NULL);
	if (rc != SQLITE_OK)
		return db_fail(ob, "cannot prepare a statement");
	return 0;
}

static void finalize_statements(struct vigie_outbox *ob)
{
	sqlite3_finalize(ob->st_begin);
	sqlite3_finalize(ob->st_commit);
	sqlite3_finalize(ob->st_rollback);
	sqlite3_finalize(ob->st_insert);
	sqlite3_finalize(ob->st_delete);
	ob->st_begin = NULL;
	ob->st_commit = NULL;
	ob->st_rollback = NULL;
	ob->st_insert = NULL;
	ob->st_delete = NULL;
}

/* Prepared once and reused by every batch: at 20k events/s re-parsing the
 * SQL per event would cost more than the inserts. */
static int prepare_statements(struct vigie_outbox *ob)
{
	int rc;

	rc = prepare(ob, "BEGIN IMMEDIATE", &ob->st_begin);
	if (rc == 0)
		rc = prepare(ob, "COMMIT", &ob->st_commit);
	if (rc == 0)
		rc = prepare(ob, "ROLLBACK", &ob->st_rollback);
	if (rc == 0)
		rc = prepare(ob,
			     "INSERT INTO events (boot_id, seq, time_us, "
			     "payload) VALUES (?1, ?2, ?3, ?4)",
			     &ob->st_insert);
	if (rc == 0)
		rc = prepare(ob,
			     "DELETE FROM events WHERE boot_id = ?1 "
			     "AND seq <= ?2",
			     &ob->st_delete);
	if (rc != 0)
		finalize_statements(ob);
	return rc;
}

static struct item *item_new(struct vigie_outbox *ob, uint64_t boot_id,
			     uint64_t seq, uint64_t time_us,
			     const void *payload, size_t len)
{
	struct item *it;

	it = malloc(sizeof(*it) + len);
	if (!it)
		return NULL;
	memset(it, 0, sizeof(*it));
	it->e.boot_id = boot_id;
	it->e.seq = seq;
	it->e.time_us = time_us;
	it->e.payload = it->data;
	it->e.len = len;
	it->op.kind = OP_INSERT;
	if (len > 0)
		memcpy(it->data, payload, len);
	ob->held++;
	return it;
}

static void item_free(struct vigie_outbox *ob, struct item *it)
{
	ob->held--;
	free(it);
}

/* Records `it`, the new last entry of the list, in its boot's segment.
 * Called before the item is linked so that ENOMEM leaves nothing behind. */
static int seg_add(struct vigie_outbox *ob, struct item *it)
{
	struct seg *s;
	size_t cap;

	if (ob->nsegs > 0 && ob->segs[ob->nsegs - 1].boot_id == it->e.boot_id) {
		ob->segs[ob->nsegs - 1].count++;
		return 0;
	}
	if (ob->nsegs == ob->segs_cap) {
		cap = ob->segs_cap ? ob->segs_cap * 2 : 8;
		s = realloc(ob->segs, cap * sizeof(*s));
		if (!s)
			return VIGIE_ENOMEM;
		ob->segs = s;
		ob->segs_cap = cap;
	}
	s = &ob->segs[ob->nsegs++];
	s->boot_id = it->e.boot_id;
	s->first = it;
	s->count = 1;
	return 0;
}

static struct seg *seg_find(struct vigie_outbox *ob, uint64_t boot_id)
{
	size_t i;

	/* From the end: receipts are mostly for the current boot. */
	for (i = ob->nsegs; i > 0; i--) {
		if (ob->segs[i - 1].boot_id == boot_id)
			return &ob->segs[i - 1];
	}
	return NULL;
}

static void seg_remove(struct vigie_outbox *ob, struct seg *s)
{
	size_t i = (size_t)(s - ob->segs);

	memmove(s, s + 1, (ob->nsegs - i - 1) * sizeof(*s));
	ob->nsegs--;
}

static void list_append(struct vigie_outbox *ob, struct item *it)
{
	it->prev = ob->tail;
	it->next = NULL;
	if (ob->tail)
		ob->tail->next = it;
	else
		ob->head = it;
	ob->tail = it;
	ob->pending++;
}

static void list_unlink(struct vigie_outbox *ob, struct item *it)
{
	if (it->prev)
		it->prev->next = it->next;
	else
		ob->head = it->next;
	if (it->next)
		it->next->prev = it->prev;
	else
		ob->tail = it->prev;
	it->prev = NULL;
	it->next = NULL;
	ob->pending--;
}

static void free_entries(struct vigie_outbox *ob)
{
	struct item *it, *next;

	for (it = ob->head; it; it = next) {
		next = it->next;
		item_free(ob, it);
	}
	ob->head = NULL;
	ob->tail = NULL;
	ob->pending = 0;
	free(ob->segs);
	ob->segs = NULL;
	ob->nsegs = 0;
	ob->segs_cap = 0;
}

static int load_entries(struct vigie_outbox *ob)
{
	sqlite3_stmt *st;
	struct item *it;
	const void *blob;
	int64_t boot_id, seq;
	size_t skipped = 0;
	int rc;

	rc = sqlite3_prepare_v2(ob->db,
				"SELECT boot_id, seq, time_us, payload "
				"FROM events ORDER BY boot_id, seq",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_fail(ob, "cannot read the events");
	for (;;) {
		rc = sqlite3_step(st);
		if (rc != SQLITE_ROW)
			break;
		boot_id = sqlite3_column_int64(st, 0);
		seq = sqlite3_column_int64(st, 1);
		/* We never write these; a row edited by hand would break
		 * the (boot_id, seq) order the list relies on. */
		if (boot_id < 0 || seq < 0) {
			skipped++;
			continue;
		}
		/* blob before bytes, as sqlite3_column_blob's doc asks. */
		blob = sqlite3_column_blob(st, 3);
		it = item_new(ob, (uint64_t)boot_id, (uint64_t)seq,
			      (uint64_t)sqlite3_column_int64(st, 2), blob,
			      (size_t)sqlite3_column_bytes(st, 3));
		if (!it) {
			rc = VIGIE_ENOMEM;
			goto out_finalize;
		}
		if (seg_add(ob, it) != 0) {
			item_free(ob, it);
			rc = VIGIE_ENOMEM;
			goto out_finalize;
		}
		list_append(ob, it);
	}
	if (rc != SQLITE_DONE) {
		rc = db_fail(ob, "cannot read the events");
		goto out_finalize;
	}
	rc = 0;
	if (skipped > 0)
		vigie_log_warn("outbox %s: ignored %zu rows with a negative "
			       "boot_id or seq",
			       ob->path, skipped);
out_finalize:
	sqlite3_finalize(st);
	return rc;
}

static bool op_is_retry(const struct op *op)
{
	return op->kind == OP_DELETE &&
	       container_of(op, struct del_op, op)->retry;
}

static void queue_push(struct vigie_outbox *ob, struct op *op)
{
	op->next = NULL;
	if (ob->q_tail)
		ob->q_tail->next = op;
	else
		ob->q_head = op;
	ob->q_tail = op;
	if (!op_is_retry(op))
		ob->q_fresh++;
	if (op->kind == OP_INSERT)
		ob->q_inserts++;
}

/* Takes ops from the head of the queue, at most max_batch inserts; deletes
 * ride along uncounted (each one dropped an appended event, so they are
 * bounded by the appends). */
static struct op *queue_cut(struct vigie_outbox *ob, size_t *inserts)
{
	struct op *first = ob->q_head;
	struct op *op = first;
	struct op *last = NULL;

	*inserts = 0;
	while (op) {
		if (op->kind == OP_INSERT) {
			if (*inserts == ob->max_batch)
				break;
			(*inserts)++;
			ob->q_inserts--;
		}
		if (!op_is_retry(op))
			ob->q_fresh--;
		last = op;
		op = op->next;
	}
	ob->q_head = op;
	if (!op)
		ob->q_tail = NULL;
	if (last)
		last->next = NULL;
	return first;
}

static int step_reset(sqlite3_stmt *st)
{
	int rc;

	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc;
}

static int run_insert(struct vigie_outbox *ob, const struct item *it)
{
	sqlite3_stmt *st = ob->st_insert;
	int rc;

	rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)it->e.boot_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)it->e.seq);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)it->e.time_us);
	/* STATIC, no copy: the item outlives the batch (committing). */
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(st, 4, it->data, (int)it->e.len,
				       SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return rc;
	return step_reset(st);
}

static int run_delete(struct vigie_outbox *ob, const struct del_op *d)
{
	sqlite3_stmt *st = ob->st_delete;
	int rc;

	rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)d->boot_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)d->seq);
	if (rc != SQLITE_OK)
		return rc;
	return step_reset(st);
}

/* A small batch (low rate: an alarm now and then) waits this long on its
 * pool thread before its transaction starts. The event was published just
 * before the batch was queued; for the next few hundred microseconds its
 * path (this node's socket, the site broker, the bridge, the central
 * broker) needs the CPU that the SQLite work and the fsync's page writes
 * would take on a small machine: measured on 2 cores, the node's p99 to the
 * central subscriber went from 1.7-1.8x a bare publisher's to 1.0-1.5x
 * (vigie-bench --only node.latency). Durability is only confirmed that
 * much later; a busy outbox (more inserts in the batch) does not wait. */
#define SETTLE_NS          500000L
#define SETTLE_MAX_INSERTS 4
/* Deletes alone wait this long for an insert to ride with (pump()). */
#define DELETE_LINGER_MS 100

/* Thread pool: one transaction for the whole batch, so its events share one
 * fsync. Touches only the connection, the batch and the batch_* fields. */
static void batch_work(uv_work_t *req)
{
	struct vigie_outbox *ob = container_of(req, struct vigie_outbox, work);
	struct op *op;
	int rc;

	if (ob->batch_inserts <= SETTLE_MAX_INSERTS) {
		struct timespec ts = {0, SETTLE_NS};

		nanosleep(&ts, NULL);
	}
	rc = step_reset(ob->st_begin);
	if (rc != SQLITE_DONE)
		goto out_fail;
	for (op = ob->batch; op; op = op->next) {
		if (op->kind == OP_INSERT)
			rc = run_insert(ob, container_of(op, struct item, op));
		else
			rc = run_delete(ob,
					container_of(op, struct del_op, op));
		if (rc != SQLITE_DONE)
			goto out_fail;
	}
	rc = step_reset(ob->st_commit);
	if (rc != SQLITE_DONE)
		goto out_fail;
	ob->batch_rc = SQLITE_OK;
	return;

out_fail:
	/* Copy the message now: the rollback replaces it. */
	snprintf(ob->batch_err, sizeof(ob->batch_err), "%s",
		 sqlite3_errmsg(ob->db));
	ob->batch_rc = rc;
	/* A failed statement leaves the transaction open (a failed COMMIT
	 * too); a failed BEGIN leaves none. */
	if (!sqlite3_get_autocommit(ob->db))
		step_reset(ob->st_rollback);
}

static void batch_done(uv_work_t *req, int status);
static void finish(struct vigie_outbox *ob);

static void start_batch(struct vigie_outbox *ob)
{
	int rc;

	uv_idle_stop(&ob->kick);
	ob->batch = queue_cut(ob, &ob->batch_inserts);
	ob->batch_rc = SQLITE_OK;
	ob->batch_err[0] = '\0';
	ob->in_flight = true;
	rc = uv_queue_work(ob->loop, &ob->work, batch_work, batch_done);
	if (rc != 0) {
		/* Only a NULL work callback makes this fail; fail the batch
		 * like a broken disk rather than lose its callbacks. */
		ob->batch_rc = SQLITE_MISUSE;
		snprintf(ob->batch_err, sizeof(ob->batch_err), "%s",
			 uv_strerror(rc));
		batch_done(&ob->work, rc);
	}
}

static void on_linger(uv_timer_t *t);

/* Loop thread, whenever nothing is in flight: start the next batch, or
 * finish a close once everything queued is written. */
static void pump(struct vigie_outbox *ob)
{
	if (ob->in_flight || ob->state == OB_CLOSED)
		return;
	/* While closing, retries go too: it is their last chance. */
	if (ob->state == OB_CLOSING) {
		if (ob->q_head)
			start_batch(ob);
		else
			finish(ob);
		return;
	}
	/* Deletes (receipts) are never urgent: a receipted event still on
	 * disk is only sent again after a restart, and the relay knows it.
	 * Alone they wait for the next insert, or DELETE_LINGER_MS: at an
	 * alarm now and then that is one transaction and one fsync per event,
	 * not two. */
	if (ob->q_inserts > 0 || (ob->q_fresh > 0 && ob->lingered)) {
		ob->lingered = false;
		uv_timer_stop(&ob->linger);
		start_batch(ob);
	} else if (ob->q_fresh > 0 &&
		   !uv_is_active((uv_handle_t *)&ob->linger)) {
		uv_timer_start(&ob->linger, on_linger, DELETE_LINGER_MS, 0);
	}
}

static void on_linger(uv_timer_t *t)
{
	struct vigie_outbox *ob = container_of(t, struct vigie_outbox, linger);

	ob->lingered = true;
	pump(ob);
}

static void on_kick(uv_idle_t *handle)
{
	struct vigie_outbox *ob =
		container_of(handle, struct vigie_outbox, kick);

	uv_idle_stop(handle);
	pump(ob);
}

/* Starting on the next idle turn rather than at once lets every append of
 * this loop iteration join the first batch; the idle handle also keeps the
 * loop from sleeping in poll meanwhile. */
static void kick(struct vigie_outbox *ob)
{
	if (!ob->in_flight && ob->state != OB_CLOSED)
		uv_idle_start(&ob->kick, on_kick);
}

static void insert_done(struct vigie_outbox *ob, struct item *it, int status)
{
	/* Still committing during the callback: a receipt it makes for this
	 * very entry only marks it, and we free it below. */
	if (it->cb)
		it->cb(it->arg, status);
	it->committing = false;
	if (it->receipted)
		item_free(ob, it);
}

static void batch_done(uv_work_t *req, int status)
{
	struct vigie_outbox *ob = container_of(req, struct vigie_outbox, work);
	struct op *op, *next;
	struct op *retry_head = NULL;
	struct op *retry_last = NULL;
	struct del_op *d;
	int cb_status = 0;

	ob->in_flight = false;
	op = ob->batch;
	ob->batch = NULL;
	if (status != 0 || ob->batch_rc != SQLITE_OK) {
		cb_status = VIGIE_EIO;
		vigie_log_error(
			"outbox %s: transaction with %zu appends failed: "
			"%s (%d)",
			ob->path, ob->batch_inserts, ob->batch_err,
			ob->batch_rc);
	} else {
		ob->commits++;
	}
	/* In op order, so durable callbacks run in append order. */
	for (; op; op = next) {
		next = op->next;
		if (op->kind == OP_INSERT) {
			insert_done(ob, container_of(op, struct item, op),
				    cb_status);
			continue;
		}
		d = container_of(op, struct del_op, op);
		if (cb_status != 0 && ob->state == OB_OPEN) {
			/* Kept, or the rows would be re-sent after a
			 * restart (harmless, the relay dedups, but
			 * avoidable). */
			d->retry = true;
			op->next = NULL;
			if (retry_last)
				retry_last->next = op;
			else
				retry_head = op;
			retry_last = op;
		} else {
			free(d);
		}
	}
	if (retry_head) {
		/* At the front: they were queued before everything that is
		 * queued now, and order matters. */
		retry_last->next = ob->q_head;
		if (!ob->q_head)
			ob->q_tail = retry_last;
		ob->q_head = retry_head;
	}
	/* Directly, not via the idle turn: what gathered during this fsync
	 * is the next group. */
	pump(ob);
}

static void on_closed(uv_handle_t *handle)
{
	struct vigie_outbox *ob =
		container_of(handle, struct vigie_outbox, kick);
	void (*cb)(void *arg) = ob->close_cb;
	void *arg = ob->close_arg;

	free_entries(ob);
	free(ob->path);
	free(ob);
	if (cb)
		cb(arg);
}

static void on_linger_closed(uv_handle_t *handle)
{
	struct vigie_outbox *ob =
		container_of(handle, struct vigie_outbox, linger);

	uv_close((uv_handle_t *)&ob->kick, on_closed);
}

/* Everything queued is written and nothing is in flight: the connection is
 * the loop thread's again. */
static void finish(struct vigie_outbox *ob)
{
	ob->state = OB_CLOSED;
	finalize_statements(ob);
	if (sqlite3_close(ob->db) != SQLITE_OK)
		db_fail(ob, "cannot close the database");
	ob->db = NULL;
	/* Freed in the last close callback: the handles are ours until then.
	 */
	uv_close((uv_handle_t *)&ob->linger, on_linger_closed);
}

int vigie_outbox_open(uv_loop_t *loop, const char *path,
		      const struct vigie_outbox_options *opt,
		      struct vigie_outbox **out)
{
	struct vigie_outbox *ob;
	int rc;

	if (!out)
		return VIGIE_EINVAL;
	*out = NULL;
	if (!loop || !path || !*path)
		return VIGIE_EINVAL;
	ob = calloc(1, sizeof(*ob));
	if (!ob)
		return VIGIE_ENOMEM;
	ob->loop = loop;
	ob->max_pending = opt && opt->max_pending ? opt->max_pending
						  : DEFAULT_MAX_PENDING;
	ob->max_batch =
		opt && opt->max_batch ? opt->max_batch : DEFAULT_MAX_BATCH;
	ob->path = strdup(path);
	if (!ob->path) {
		rc = VIGIE_ENOMEM;
		goto out_free_ob;
	}
	rc = db_open(ob);
	if (rc != 0)
		goto out_free_path;
	rc = db_start_boot(ob);
	if (rc != 0)
		goto out_close_db;
	rc = prepare_statements(ob);
	if (rc != 0)
		goto out_close_db;
	rc = load_entries(ob);
	if (rc != 0)
		goto out_free_entries;
	/* Last: an initialised handle must be closed before the loop can
	 * be, so nothing may fail after this. */
	rc = uv_idle_init(loop, &ob->kick);
	if (rc == 0)
		rc = uv_timer_init(loop, &ob->linger);
	if (rc != 0) {
		/* libuv never fails this for a live loop. */
		vigie_log_error("outbox %s: %s", path, uv_strerror(rc));
		rc = VIGIE_EINVAL;
		goto out_free_entries;
	}
	if (ob->pending > ob->max_pending)
		vigie_log_warn("outbox %s: %zu unreceipted events exceed "
			       "max_pending %zu; appends wait for receipts",
			       path, ob->pending, ob->max_pending);
	vigie_log_info("outbox %s: boot %" PRIu64
		       ", %zu unreceipted events loaded",
		       path, ob->boot_id, ob->pending);
	*out = ob;
	return 0;

out_free_entries:
	free_entries(ob);
	finalize_statements(ob);
out_close_db:
	sqlite3_close(ob->db);
out_free_path:
	free(ob->path);
out_free_ob:
	free(ob);
	return rc;
}

uint64_t vigie_outbox_boot_id(const struct vigie_outbox *ob)
{
	return ob ? ob->boot_id : 0;
}

int vigie_outbox_append(struct vigie_outbox *ob, uint64_t seq, uint64_t time_us,
			const void *payload, size_t len,
			vigie_outbox_durable_cb cb, void *arg,
			struct vigie_outbox_entry **out)
{
	struct item *it;
	int rc;

	if (out)
		*out = NULL;
	if (!ob)
		return VIGIE_EINVAL;
	if (ob->state != OB_OPEN)
		return VIGIE_ECLOSED;
	if (!payload || len == 0)
		return VIGIE_EINVAL;
	if (len > VIGIE__OUTBOX_MAX_PAYLOAD)
		return VIGIE_ETOOBIG;
	/* SQLite integers are signed: a larger seq would sort first. */
	if (seq <= ob->last_seq || seq > (uint64_t)INT64_MAX)
		return VIGIE_EINVAL;
	if (ob->held >= ob->max_pending)
		return VIGIE_EFULL;
	it = item_new(ob, ob->boot_id, seq, time_us, payload, len);
	if (!it)
		return VIGIE_ENOMEM;
	it->cb = cb;
	it->arg = arg;
	it->committing = true;
	rc = seg_add(ob, it);
	if (rc != 0)
		goto out_free_item;
	list_append(ob, it);
	queue_push(ob, &it->op);
	ob->last_seq = seq;
	kick(ob);
	if (out)
		*out = &it->e;
	return 0;

out_free_item:
	item_free(ob, it);
	return rc;
}

/* Queues "delete seq <= `seq` of `boot_id`", merged into the last queued op
 * when that is already a delete of the same boot (nothing queued between
 * them can be lost by moving the bound up). */
static int queue_delete(struct vigie_outbox *ob, uint64_t boot_id, uint64_t seq)
{
	struct del_op *d;

	if (seq > (uint64_t)INT64_MAX)
		seq = (uint64_t)INT64_MAX;
	if (ob->q_tail && ob->q_tail->kind == OP_DELETE) {
		d = container_of(ob->q_tail, struct del_op, op);
		if (!d->retry && d->boot_id == boot_id) {
			if (seq > d->seq)
				d->seq = seq;
			return 0;
		}
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return VIGIE_ENOMEM;
	d->op.kind = OP_DELETE;
	d->boot_id = boot_id;
	d->seq = seq;
	queue_push(ob, &d->op);
	return 0;
}

size_t vigie_outbox_receipt(struct vigie_outbox *ob, uint64_t boot_id,
			    uint64_t seq)
{
	struct seg *s;
	struct item *it, *next;
	size_t n = 0;

	if (!ob || ob->state == OB_CLOSED)
		return 0;
	s = seg_find(ob, boot_id);
	if (!s || s->first->e.seq > seq)
		return 0;
	/* Queued before anything is dropped: without the delete the memory
	 * and the disk would disagree until a restart re-sends them. */
	if (queue_delete(ob, boot_id, seq) != 0) {
		vigie_log_warn("outbox %s: no memory for receipt %" PRIu64
			       "/%" PRIu64 "; kept until the next one",
			       ob->path, boot_id, seq);
		return 0;
	}
	it = s->first;
	while (it && it->e.boot_id == boot_id && it->e.seq <= seq) {
		next = it->next;
		list_unlink(ob, it);
		if (it->committing)
			it->receipted = true;
		else
			item_free(ob, it);
		n++;
		it = next;
	}
	s->count -= n;
	if (s->count == 0)
		seg_remove(ob, s);
	else
		s->first = it;
	kick(ob);
	return n;
}

struct vigie_outbox_entry *vigie_outbox_first(struct vigie_outbox *ob)
{
	return ob && ob->head ? &ob->head->e : NULL;
}

struct vigie_outbox_entry *vigie_outbox_next(struct vigie_outbox *ob,
					     struct vigie_outbox_entry *e)
{
	struct item *it;

	(void)ob;
	if (!e)
		return NULL;
	it = container_of(e, struct item, e)->next;
	return it ? &it->e : NULL;
}

size_t vigie_outbox_pending(const struct vigie_outbox *ob)
{
	return ob ? ob->pending : 0;
}

uint64_t vigie_outbox_last_seq(const struct vigie_outbox *ob)
{
	return ob ? ob->last_seq : 0;
}

void vigie_outbox_close(struct vigie_outbox *ob, void (*cb)(void *arg),
			void *arg)
{
	if (!ob)
		return;
	if (ob->state != OB_OPEN) {
		vigie_log_warn("outbox %s: closed twice", ob->path);
		return;
	}
	ob->state = OB_CLOSING;
	ob->close_cb = cb;
	ob->close_arg = arg;
	/* Never finished from here: the caller may be inside one of our
	 * callbacks. With a batch in flight, batch_done takes over. */
	kick(ob);
}

uint64_t vigie__outbox_commits(const struct vigie_outbox *ob)
{
	return ob->commits;
}

int vigie__outbox_set_busy_timeout(struct vigie_outbox *ob, int ms)
{
	if (ob->in_flight || ob->state == OB_CLOSED)
		return VIGIE_EINVAL;
	sqlite3_busy_timeout(ob->db, ms);
	return 0;
}
