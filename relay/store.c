/* The relay's database; the contract is in store.h.
 *
 * Threads: the connection is used by the loop thread in open, load and the
 * final close, and by one thread-pool worker while a batch is in flight;
 * at most one batch is ever in flight and open/load/close run only when
 * none is, so it is never used by two threads at once (SQLITE_OPEN_NOMUTEX).
 * A batch in flight is read by the worker only; everything else (the open
 * batch, deferred work, handles) belongs to the loop thread.
 *
 * Checkpoints: a second connection, used by one thread-pool worker at a
 * time, copies the WAL back into the database (PASSIVE: it never blocks the
 * writer) whenever the WAL has grown past CHECKPOINT_FRAMES; the writing
 * connection's autocheckpoint is off. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "hmap.h"
#include "store.h"
#include "vigie/error.h"
#include "vigie/log.h"

#define SCHEMA_VERSION  1
#define BUSY_TIMEOUT_MS 5000
#define CHUNK_SIZE      (256 * 1024)
#define RETRY_MS        1000
#define LINGER_MS       2  /* a small batch waits this long... */
#define LINGER_EVENTS   64 /* ...unless it holds this many events */
/* Retries of a failing batch while closing before giving up on it. */
#define CLOSE_RETRIES 3
/* WAL frames after which a checkpoint runs beside the writer. SQLite's own
 * autocheckpoint (also 1000) would run it inside a commit, and so in front
 * of the Receipts and Dispatches waiting for that commit: ~6 ms every ~60
 * alarms, measured. */
#define CHECKPOINT_FRAMES 1000

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS events ("
	" site TEXT NOT NULL, node TEXT NOT NULL,"
	" boot_id INTEGER NOT NULL, seq INTEGER NOT NULL,"
	" time_us INTEGER NOT NULL, recv_us INTEGER NOT NULL,"
	" kind INTEGER NOT NULL, state INTEGER NOT NULL,"
	" zone TEXT NOT NULL, sensor TEXT NOT NULL, payload BLOB NOT NULL,"
	" PRIMARY KEY (site, node, boot_id, seq)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS streams ("
	" site TEXT NOT NULL, node TEXT NOT NULL, boot_id INTEGER NOT NULL,"
	" contig INTEGER NOT NULL,"
	" PRIMARY KEY (site, node, boot_id)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS nodes ("
	" site TEXT NOT NULL, node TEXT NOT NULL,"
	" reporting_ms INTEGER NOT NULL, seen_us INTEGER NOT NULL,"
	" PRIMARY KEY (site, node)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS incidents ("
	" id TEXT PRIMARY KEY NOT NULL, site TEXT NOT NULL, zone TEXT NOT NULL,"
	" subject TEXT NOT NULL, state INTEGER NOT NULL,"
	" trouble INTEGER NOT NULL, priority INTEGER NOT NULL,"
	" kind INTEGER NOT NULL, opened_us INTEGER NOT NULL,"
	" updated_us INTEGER NOT NULL, closed_us INTEGER NOT NULL,"
	" last_activity_us INTEGER NOT NULL, id_prefix TEXT NOT NULL,"
	" id_sec INTEGER NOT NULL, id_k INTEGER NOT NULL,"
	" detectors TEXT NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS incidents_open ON incidents (state)"
	" WHERE state != 4;"
	"CREATE INDEX IF NOT EXISTS incidents_prefix ON incidents"
	" (id_prefix, id_sec, id_k);"
	"CREATE TABLE IF NOT EXISTS escalations ("
	" incident TEXT PRIMARY KEY NOT NULL, active INTEGER NOT NULL,"
	" acked INTEGER NOT NULL, level INTEGER NOT NULL,"
	" level_since_us INTEGER NOT NULL, deadline_us INTEGER NOT NULL)"
	" WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS dispatches ("
	" id TEXT PRIMARY KEY NOT NULL, incident TEXT NOT NULL,"
	" level INTEGER NOT NULL, alert INTEGER NOT NULL, post TEXT NOT NULL,"
	" backup_for TEXT NOT NULL, attempts INTEGER NOT NULL,"
	" first_us INTEGER NOT NULL, last_us INTEGER NOT NULL,"
	" next_us INTEGER NOT NULL, acked_us INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS dispatches_incident ON dispatches "
	"(incident);"
	"CREATE TABLE IF NOT EXISTS acks ("
	" id INTEGER PRIMARY KEY, incident TEXT NOT NULL,"
	" dispatch TEXT NOT NULL, post TEXT NOT NULL, ack_by TEXT NOT NULL,"
	" source TEXT NOT NULL, note TEXT NOT NULL, time_us INTEGER NOT NULL,"
	" recv_us INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS acks_incident ON acks (incident);"
	"CREATE TABLE IF NOT EXISTS audit ("
	" id INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, incident TEXT,"
	" what TEXT NOT NULL, who TEXT NOT NULL, detail TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS audit_incident ON audit (incident, id);"
	/* Append-only, enforced by the database itself. */
	"CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"
	" BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
	"CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit"
	" BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
	/* The pattern tracker's state (patterns_relay.c): its rows, in the
	 * order they were last written within each namespace. */
	"CREATE TABLE IF NOT EXISTS pattern_state ("
	" ns TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,"
	" data BLOB NOT NULL, PRIMARY KEY (ns, key)) WITHOUT ROWID;"
	/* Closed incidents whose retained message was cleared. */
	"CREATE TABLE IF NOT EXISTS cleared ("
	" id TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;"
	"PRAGMA user_version = 1;";

enum stmt_id {
	S_EVENT,
	S_STREAM,
	S_NODE,
	S_INCIDENT,
	S_ESCALATION,
	S_DISPATCH,
	S_ACK,
	S_AUDIT,
	S_CLEARED,
	S_PATTERN_PUT,
	S_PATTERN_DEL,
	S_COUNT,
};

static const char *const stmt_sql[S_COUNT] = {
	[S_EVENT] = "INSERT OR IGNORE INTO events (site, node, boot_id, seq,"
		    " time_us, recv_us, kind, state, zone, sensor, payload)"
		    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[S_STREAM] = "INSERT OR REPLACE INTO streams (site, node, boot_id,"
		     " contig) VALUES (?1, ?2, ?3, ?4)",
	[S_NODE] = "INSERT OR REPLACE INTO nodes (site, node, reporting_ms,"
		   " seen_us) VALUES (?1, ?2, ?3, ?4)",
	[S_INCIDENT] = "INSERT OR REPLACE INTO incidents (id, site, zone,"
		       " subject, state, trouble, priority, kind, opened_us,"
		       " updated_us, closed_us, last_activity_us, id_prefix,"
		       " id_sec, id_k, detectors, data) VALUES (?1, ?2, ?3,"
		       " ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
		       " ?16, ?17)",
	[S_ESCALATION] = "INSERT OR REPLACE INTO escalations (incident, active,"
			 " acked, level, level_since_us, deadline_us) VALUES"
			 " (?1, ?2, ?3, ?4, ?5, ?6)",
	[S_DISPATCH] = "INSERT OR REPLACE INTO dispatches (id, incident, level,"
		       " alert, post, backup_for, attempts, first_us, last_us,"
		       " next_us, acked_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
		       " ?8, ?9, ?10, ?11)",
	[S_ACK] = "INSERT INTO acks (incident, dispatch, post, ack_by, source,"
		  " note, time_us, recv_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
		  " ?8)",
	[S_AUDIT] = "INSERT INTO audit (time_us, incident, what, who, detail)"
		    " VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_CLEARED] = "INSERT OR IGNORE INTO cleared (id) VALUES (?1)",
	[S_PATTERN_PUT] = "INSERT OR REPLACE INTO pattern_state (ns, key, seq,"
			  " data) VALUES (?1, ?2, ?3, ?4)",
	[S_PATTERN_DEL] = "DELETE FROM pattern_state WHERE ns = ?1 AND"
			  " key = ?2",
};

enum val_type { V_NULL, V_INT, V_TEXT, V_BLOB };

struct val {
	enum val_type type;
	uint32_t len;
	int64_t i;
	const void *p;
};

#define MAX_VALS 17

/* An op lives in its batch's arena: header then values, then the bytes of
 * its strings and blobs. */
struct op {
	uint16_t stmt;
	uint16_t n;
	struct val v[];
};

struct chunk {
	struct chunk *next;
	size_t used, cap;
	_Alignas(8) uint8_t data[];
};

enum { DEFERS_EARLY, DEFERS_DURABLE, DEFERS_ALL };

struct defer {
	store_defer_cb cb;
	void *arg;
	bool durable; /* after the fsync, not just the commit */
};

struct batch {
	struct chunk *chunks;
	struct op **ops;
	size_t n_ops, cap_ops;
	struct defer *defers;
	size_t n_defers, cap_defers;
	size_t n_events;
	bool needs_sync; /* holds durable defers: fsync the WAL after commit */
	int tries;
	struct batch *next; /* in the queue waiting for an fsync */
};

enum store_state { ST_OPEN, ST_CLOSING };

struct relay_store {
	uv_loop_t *loop;
	char *path;
	sqlite3 *db;
	sqlite3 *ckpt_db; /* checkpoints only */
	sqlite3_stmt *st_begin, *st_commit, *st_rollback;
	int wal_fd; /* the WAL, for the fsync after a commit; -1 until open */
	sqlite3_stmt *stmts[S_COUNT];
	struct store_options opt;

	struct batch *cur;      /* filling */
	struct batch *inflight; /* with the worker, or failed and waiting */
	struct batch *spare;    /* recycled */
	bool working;           /* the worker has `inflight` */
	bool sealing;
	bool want_seal; /* on_seal wanted even for an empty batch */
	uv_work_t work;
	/* Committed batches whose durable work waits for an fsync, oldest
	 * first; one fsync runs at a time, beside the next commits, and
	 * covers every batch queued when it started (up to sync_upto). */
	struct batch *synq, *synq_tail, *sync_upto;
	bool syncing;
	uv_work_t sync;
	int sync_errno;
	uv_work_t ckpt_work;
	bool ckpt_running;
	int wal_frames; /* after the last commit: written by the worker */
	uv_idle_t kick;
	uv_timer_t linger;
	uv_timer_t retry;
	int batch_rc;
	char batch_err[256];
	uint64_t commits, failures;

	enum store_state state;
	int handles_open;
	void (*close_cb)(void *arg);
	void *close_arg;
};

/* ---- batches ---- */

static struct batch *batch_new(struct relay_store *st)
{
	struct batch *b = st->spare;

	if (b) {
		st->spare = NULL;
		return b;
	}
	return calloc(1, sizeof(*b));
}

static void batch_free(struct batch *b)
{
	struct chunk *c, *next;

	if (!b)
		return;
	for (c = b->chunks; c; c = next) {
		next = c->next;
		free(c);
	}
	free(b->ops);
	free(b->defers);
	free(b);
}

/* Keep one emptied batch and its first chunk for the next round. */
static void batch_recycle(struct relay_store *st, struct batch *b)
{
	struct chunk *c, *next;

	if (st->spare) {
		batch_free(b);
		return;
	}
	if (b->chunks) {
		for (c = b->chunks->next; c; c = next) {
			next = c->next;
			free(c);
		}
		b->chunks->next = NULL;
		b->chunks->used = 0;
	}
	b->n_ops = 0;
	b->n_defers = 0;
	b->n_events = 0;
	b->needs_sync = false;
	b->tries = 0;
	b->next = NULL;
	st->spare = b;
}

static void *arena_alloc(struct batch *b, size_t size)
{
	struct chunk *c = b->chunks;
	void *p;

	size = (size + 7) & ~(size_t)7;
	if (!c || c->cap - c->used < size) {
		size_t cap = size > CHUNK_SIZE ? size : CHUNK_SIZE;

		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		c->next = b->chunks;
		b->chunks = c;
	}
	p = c->data + c->used;
	c->used += size;
	return p;
}

static void kick_cb(uv_idle_t *h);

/* Seal the open batch soon: a big one on the next loop turn (whatever the
 * I/O of this turn queues rides along), a small one - an alarm now and
 * then - after LINGER_MS, with whatever came meanwhile. Only Receipts wait
 * for the commit (what an event decides has left already, relay.c), and a
 * node only keeps the event that much longer; at 1,000 alarms/s it makes
 * one commit per 2 ms instead of one per alarm, CPU the alarms on their way
 * through the brokers then have (vigie-bench --only relay.latency). */
static void linger_cb(uv_timer_t *t);

static void start_kick(struct relay_store *st)
{
	if (st->state != ST_OPEN || st->working || st->inflight ||
	    uv_is_active((uv_handle_t *)&st->kick))
		return;
	if (st->cur->n_events < LINGER_EVENTS) {
		if (!uv_is_active((uv_handle_t *)&st->linger))
			uv_timer_start(&st->linger, linger_cb, LINGER_MS, 0);
		return;
	}
	uv_timer_stop(&st->linger); /* grown big while it lingered */
	uv_idle_start(&st->kick, kick_cb);
}

static int put(struct relay_store *st, enum stmt_id id, const struct val *vals,
	       uint16_t n)
{
	struct batch *b = st->cur;
	size_t size = sizeof(struct op) + n * sizeof(struct val);
	struct op *op;

	if (st->state != ST_OPEN && !st->sealing)
		return VIGIE_ECLOSED;
	for (uint16_t i = 0; i < n; i++)
		if (vals[i].type == V_TEXT || vals[i].type == V_BLOB)
			size += ((size_t)vals[i].len + 8) & ~(size_t)7;
	if (b->n_ops == b->cap_ops) {
		size_t cap = b->cap_ops ? b->cap_ops * 2 : 1024;
		struct op **ops = realloc(b->ops, cap * sizeof(*ops));

		if (!ops)
			return VIGIE_ENOMEM;
		b->ops = ops;
		b->cap_ops = cap;
	}
	op = arena_alloc(b, size);
	if (!op)
		return VIGIE_ENOMEM;
	op->stmt = (uint16_t)id;
	op->n = n;
	{
		uint8_t *bytes = (uint8_t *)&op->v[n];

		for (uint16_t i = 0; i < n; i++) {
			op->v[i] = vals[i];
			if (vals[i].type != V_TEXT && vals[i].type != V_BLOB)
				continue;
			if (vals[i].len)
				memcpy(bytes, vals[i].p, vals[i].len);
			bytes[vals[i].len] = 0;
			op->v[i].p = bytes;
			bytes += ((size_t)vals[i].len + 8) & ~(size_t)7;
		}
	}
	b->ops[b->n_ops++] = op;
	if (id == S_EVENT)
		b->n_events++;
	start_kick(st);
	return 0;
}

static struct val vint(int64_t i)
{
	struct val v = {.type = V_INT, .i = i};

	return v;
}

static struct val vu64(uint64_t u)
{
	/* SQLite integers are signed: ids and times above INT64_MAX are
	 * refused by the callers, this only keeps the cast explicit. */
	return vint(u > INT64_MAX ? INT64_MAX : (int64_t)u);
}

static struct val vtext(const char *s)
{
	struct val v = {.type = V_TEXT};
	size_t len = s ? strlen(s) : 0;

	v.p = s ? s : "";
	v.len = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
	return v;
}

static struct val vtext_or_null(const char *s)
{
	struct val v = {.type = V_NULL};

	return s ? vtext(s) : v;
}

static struct val vblob(const void *p, size_t len)
{
	struct val v = {.type = V_BLOB, .p = p};

	v.len = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
	return v;
}

int vigie__store_put_event(struct relay_store *st, const struct store_event *e)
{
	struct val v[11];

	v[0] = vtext(e->site);
	v[1] = vtext(e->node);
	v[2] = vu64(e->boot_id);
	v[3] = vu64(e->seq);
	v[4] = vu64(e->time_us);
	v[5] = vu64(e->recv_us);
	v[6] = vint(e->kind);
	v[7] = vint(e->state);
	v[8] = vtext(e->zone);
	v[9] = vtext(e->sensor);
	v[10] = vblob(e->payload, e->len);
	return put(st, S_EVENT, v, 11);
}

int vigie__store_put_stream(struct relay_store *st, const char *site,
			    const char *node, uint64_t boot_id, uint64_t contig)
{
	struct val v[4] = {vtext(site), vtext(node), vu64(boot_id),
			   vu64(contig)};

	return put(st, S_STREAM, v, 4);
}

int vigie__store_put_node(struct relay_store *st, const char *site,
			  const char *node, uint64_t reporting_ms,
			  uint64_t seen_us)
{
	struct val v[4] = {vtext(site), vtext(node), vu64(reporting_ms),
			   vu64(seen_us)};

	return put(st, S_NODE, v, 4);
}

int vigie__store_put_incident(struct relay_store *st,
			      const struct store_incident *i)
{
	struct val v[17];

	v[0] = vtext(i->id);
	v[1] = vtext(i->site);
	v[2] = vtext(i->zone);
	v[3] = vtext(i->subject);
	v[4] = vint(i->state);
	v[5] = vint(i->trouble);
	v[6] = vint(i->priority);
	v[7] = vint(i->kind);
	v[8] = vu64(i->opened_us);
	v[9] = vu64(i->updated_us);
	v[10] = vu64(i->closed_us);
	v[11] = vu64(i->last_activity_us);
	v[12] = vtext(i->id_prefix);
	v[13] = vu64(i->id_sec);
	v[14] = vint(i->id_k);
	v[15] = vtext(i->detectors);
	v[16] = vblob(i->data, i->len);
	return put(st, S_INCIDENT, v, 17);
}

int vigie__store_put_escalation(struct relay_store *st,
				const struct store_escalation *e)
{
	struct val v[6] = {vtext(e->incident),      vint(e->active),
			   vint(e->acked),          vint(e->level),
			   vu64(e->level_since_us), vu64(e->deadline_us)};

	return put(st, S_ESCALATION, v, 6);
}

int vigie__store_put_dispatch(struct relay_store *st,
			      const struct store_dispatch *d)
{
	struct val v[11] = {
		vtext(d->id),      vtext(d->incident), vint(d->level),
		vint(d->alert),    vtext(d->post),     vtext(d->backup_for),
		vint(d->attempts), vu64(d->first_us),  vu64(d->last_us),
		vu64(d->next_us),  vu64(d->acked_us)};

	return put(st, S_DISPATCH, v, 11);
}

int vigie__store_put_ack(struct relay_store *st, const struct store_ack *a)
{
	struct val v[8] = {vtext(a->incident), vtext(a->dispatch),
			   vtext(a->post),     vtext(a->by),
			   vtext(a->source),   vtext(a->note),
			   vu64(a->time_us),   vu64(a->recv_us)};

	return put(st, S_ACK, v, 8);
}

int vigie__store_audit(struct relay_store *st, uint64_t time_us,
		       const char *incident, const char *what, const char *who,
		       const char *detail)
{
	struct val v[5] = {vu64(time_us), vtext_or_null(incident), vtext(what),
			   vtext(who), vtext(detail)};

	return put(st, S_AUDIT, v, 5);
}

int vigie__store_put_cleared(struct relay_store *st, const char *id)
{
	struct val v[1] = {vtext(id)};

	return put(st, S_CLEARED, v, 1);
}

int vigie__store_put_pattern(struct relay_store *st, const char *ns,
			     const char *key, uint64_t seq, const void *data,
			     size_t len)
{
	struct val v[4] = {vtext(ns), vtext(key), vu64(seq), vblob(data, len)};

	return put(st, S_PATTERN_PUT, v, 4);
}

int vigie__store_del_pattern(struct relay_store *st, const char *ns,
			     const char *key)
{
	struct val v[2] = {vtext(ns), vtext(key)};

	return put(st, S_PATTERN_DEL, v, 2);
}

static int defer(struct relay_store *st, store_defer_cb cb, void *arg,
		 bool durable)
{
	struct batch *b = st->cur;

	if (st->state != ST_OPEN && !st->sealing)
		return VIGIE_ECLOSED;
	if (b->n_defers == b->cap_defers) {
		size_t cap = b->cap_defers ? b->cap_defers * 2 : 64;
		struct defer *d = realloc(b->defers, cap * sizeof(*d));

		if (!d)
			return VIGIE_ENOMEM;
		b->defers = d;
		b->cap_defers = cap;
	}
	b->defers[b->n_defers].cb = cb;
	b->defers[b->n_defers].arg = arg;
	b->defers[b->n_defers].durable = durable;
	b->n_defers++;
	if (durable && st->opt.sync_full)
		b->needs_sync = true;
	start_kick(st);
	return 0;
}

int vigie__store_defer(struct relay_store *st, store_defer_cb cb, void *arg)
{
	return defer(st, cb, arg, false);
}

int vigie__store_defer_durable(struct relay_store *st, store_defer_cb cb,
			       void *arg)
{
	return defer(st, cb, arg, true);
}

void vigie__store_kick(struct relay_store *st)
{
	if (st->state != ST_OPEN)
		return;
	st->want_seal = true;
	start_kick(st);
}

size_t vigie__store_backlog(const struct relay_store *st)
{
	return st->cur->n_events + (st->inflight ? st->inflight->n_events : 0);
}

uint64_t vigie__store_commits(const struct relay_store *st)
{
	return st->commits;
}

uint64_t vigie__store_failures(const struct relay_store *st)
{
	return st->failures;
}

/* ---- the worker ---- */

static int bind_op(sqlite3_stmt *s, const struct op *op)
{
	int rc = SQLITE_OK;

	for (uint16_t i = 0; i < op->n && rc == SQLITE_OK; i++) {
		const struct val *v = &op->v[i];
		int col = i + 1;

		switch (v->type) {
		case V_INT:
			rc = sqlite3_bind_int64(s, col, v->i);
			break;
		case V_TEXT:
			rc = sqlite3_bind_text(s, col, v->p, (int)v->len,
					       SQLITE_STATIC);
			break;
		case V_BLOB:
			rc = sqlite3_bind_blob(s, col, v->p, (int)v->len,
					       SQLITE_STATIC);
			break;
		case V_NULL:
		default:
			rc = sqlite3_bind_null(s, col);
			break;
		}
	}
	return rc;
}

static int step_reset(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void work_cb(uv_work_t *w)
{
	struct relay_store *st = container_of(w, struct relay_store, work);
	const struct batch *b = st->inflight;
	int rc;

	st->batch_err[0] = '\0';
	rc = step_reset(st->st_begin);
	for (size_t i = 0; rc == SQLITE_OK && i < b->n_ops; i++) {
		const struct op *op = b->ops[i];
		sqlite3_stmt *s = st->stmts[op->stmt];

		rc = bind_op(s, op);
		if (rc == SQLITE_OK)
			rc = step_reset(s);
		sqlite3_clear_bindings(s);
	}
	if (rc == SQLITE_OK)
		rc = step_reset(st->st_commit);
	if (rc != SQLITE_OK) {
		snprintf(st->batch_err, sizeof(st->batch_err), "%s",
			 sqlite3_errmsg(st->db));
		step_reset(st->st_rollback);
	}
	st->batch_rc = rc;
}

/* fsync the directory holding `path` (modified in place). */
static int fsync_dir_of(char *path)
{
	char *slash = strrchr(path, '/');
	int fd, rc;

	if (!slash)
		snprintf(path, 2, ".");
	else if (slash == path)
		path[1] = '\0';
	else
		*slash = '\0';
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* The second half of synchronous=FULL, after the commits' effects left:
 * the WAL's frames reach the disk. Our own descriptor, so that it never
 * touches the connection another worker may be committing with; an fsync
 * flushes the file, whichever descriptor wrote it. The first one also
 * makes the WAL's directory entry durable. */
static void sync_work_cb(uv_work_t *w)
{
	struct relay_store *st = container_of(w, struct relay_store, sync);
	char path[PATH_MAX];
	int fd;

	st->sync_errno = 0;
	if (st->wal_fd < 0) {
		snprintf(path, sizeof(path), "%s-wal", st->path);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			st->sync_errno = errno;
			return;
		}
		snprintf(path, sizeof(path), "%s", st->path);
		if (fsync_dir_of(path) != 0) {
			st->sync_errno = errno;
			close(fd);
			return;
		}
		st->wal_fd = fd;
	}
	if (fdatasync(st->wal_fd) != 0)
		st->sync_errno = errno;
}

static void finish_close(struct relay_store *st);
static void submit(struct relay_store *st);

static void retry_cb(uv_timer_t *t)
{
	submit(t->data);
}

/* Run the batch's deferred work of one kind (or both), in queue order. */
static void run_defers(struct batch *b, int status, int which)
{
	for (size_t i = 0; i < b->n_defers; i++)
		if (which == DEFERS_ALL ||
		    (which == DEFERS_DURABLE) == b->defers[i].durable)
			b->defers[i].cb(b->defers[i].arg, status);
}

static void maybe_checkpoint(struct relay_store *st);

static void after_sync_cb(uv_work_t *w, int status);

static void start_sync(struct relay_store *st)
{
	if (st->syncing || !st->synq)
		return;
	st->syncing = true;
	st->sync_upto = st->synq_tail;
	uv_queue_work(st->loop, &st->sync, sync_work_cb, after_sync_cb);
}

/* Run b's early work now, its durable work after the next fsync. */
static void queue_for_sync(struct relay_store *st, struct batch *b)
{
	run_defers(b, 0, DEFERS_EARLY);
	if (st->synq_tail)
		st->synq_tail->next = b;
	else
		st->synq = b;
	st->synq_tail = b;
	start_sync(st);
}

static void after_sync_cb(uv_work_t *w, int status)
{
	struct relay_store *st = container_of(w, struct relay_store, sync);
	int rc = status == 0 && st->sync_errno == 0 ? 0 : VIGIE_EIO;
	struct batch *b, *upto = st->sync_upto;

	st->syncing = false;
	if (rc) {
		/* The committed rows may not be on the disk: their Receipts
		 * are not sent. Nodes send those events again; the repeats
		 * are receipted after a later fsync. */
		st->failures++;
		vigie_log_error("relay store %s: fsync of the WAL: %s: "
				"receipts held back",
				st->path,
				status ? "cancelled"
				       : strerror(st->sync_errno));
	}
	do {
		b = st->synq;
		st->synq = b->next;
		if (!st->synq)
			st->synq_tail = NULL;
		run_defers(b, rc, DEFERS_DURABLE);
		batch_recycle(st, b);
	} while (b != upto);
	start_sync(st);
	if (st->state == ST_CLOSING)
		submit(st); /* finishes the close once all is done */
}

/* ---- checkpoints, beside the writer ---- */

/* Runs on the worker after each commit: the WAL's size in frames. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct relay_store *st = arg;

	(void)db;
	(void)name;
	st->wal_frames = frames;
	return SQLITE_OK;
}

static void ckpt_work_cb(uv_work_t *w)
{
	struct relay_store *st = container_of(w, struct relay_store, ckpt_work);
	int log = 0, done = 0;
	int rc = sqlite3_wal_checkpoint_v2(
		st->ckpt_db, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done);

	/* BUSY: another checkpoint (a `vigie-relay audit` closing, say) holds
	 * the lock; the next commit asks again. */
	if (rc != SQLITE_OK && rc != SQLITE_BUSY)
		vigie_log_warn("relay store %s: checkpoint: %s", st->path,
			       sqlite3_errmsg(st->ckpt_db));
}

static void ckpt_after_cb(uv_work_t *w, int status)
{
	struct relay_store *st = container_of(w, struct relay_store, ckpt_work);

	(void)status;
	st->ckpt_running = false;
	if (st->state == ST_CLOSING && !st->working && !st->inflight)
		submit(st); /* finishes the close */
}

static void maybe_checkpoint(struct relay_store *st)
{
	if (st->ckpt_running || !st->ckpt_db || st->state != ST_OPEN ||
	    st->wal_frames < CHECKPOINT_FRAMES)
		return;
	st->ckpt_running = true;
	uv_queue_work(st->loop, &st->ckpt_work, ckpt_work_cb, ckpt_after_cb);
}

static void after_work_cb(uv_work_t *w, int status)
{
	struct relay_store *st = container_of(w, struct relay_store, work);
	struct batch *b = st->inflight;

	st->working = false;
	if (status == 0 && st->batch_rc == SQLITE_OK) {
		st->commits++;
		st->inflight = NULL;
		/* Deferred work may queue more: it lands in `cur`. */
		if (!b->needs_sync) {
			run_defers(b, 0, DEFERS_ALL);
			batch_recycle(st, b);
		} else {
			/* In the OS (a kill -9 keeps it): what it decided
			 * leaves now, its Receipts once it is on the disk;
			 * the next batch commits meanwhile. */
			queue_for_sync(st, b);
		}
		submit(st);
		maybe_checkpoint(st);
		return;
	}
	st->failures++;
	b->tries++;
	vigie_log_error(
		"relay store %s: transaction of %zu writes failed (try %d): %s",
		st->path, b->n_ops, b->tries,
		st->batch_err[0] ? st->batch_err : "cancelled");
	if (st->state == ST_CLOSING && b->tries >= CLOSE_RETRIES) {
		vigie_log_error(
			"relay store %s: giving up on %zu events at close; "
			"unreceipted, their nodes will send them again",
			st->path, b->n_events);
		st->inflight = NULL;
		run_defers(b, VIGIE_EIO, DEFERS_ALL);
		batch_free(b);
		submit(st);
		return;
	}
	/* Keep it: nothing queued after it may commit before it does. */
	uv_timer_start(&st->retry, retry_cb, RETRY_MS, 0);
}

/* Hand the open batch (or the failed one, again) to the worker. */
static void submit(struct relay_store *st)
{
	struct batch *b;

	if (st->working)
		return;
	if (st->inflight) {
		if (uv_is_active((uv_handle_t *)&st->retry))
			return;
		st->working = true;
		uv_queue_work(st->loop, &st->work, work_cb, after_work_cb);
		return;
	}
	if (st->opt.on_seal &&
	    (st->cur->n_ops || st->cur->n_defers || st->want_seal)) {
		st->want_seal = false;
		st->sealing = true;
		st->opt.on_seal(st->opt.ud);
		st->sealing = false;
	}
	b = st->cur;
	if (!b->n_ops && !b->n_defers) {
		if (st->state == ST_CLOSING)
			finish_close(st);
		return;
	}
	if (!b->n_ops) {
		/* Nothing to write and nothing in flight: what it waits for
		 * is committed already, and on the disk unless an fsync is
		 * still to come. */
		struct batch *fresh = batch_new(st);

		if (!fresh)
			return; /* try again on the next kick */
		st->cur = fresh;
		if (b->needs_sync && st->synq) {
			queue_for_sync(st, b);
		} else {
			run_defers(b, 0, DEFERS_ALL);
			batch_recycle(st, b);
		}
		submit(st);
		return;
	}
	st->cur = batch_new(st);
	if (!st->cur) {
		st->cur = b; /* out of memory: leave it open, retry later */
		uv_timer_start(&st->retry, retry_cb, RETRY_MS, 0);
		return;
	}
	st->inflight = b;
	st->working = true;
	uv_queue_work(st->loop, &st->work, work_cb, after_work_cb);
}

static void linger_cb(uv_timer_t *t)
{
	submit(t->data);
}

static void kick_cb(uv_idle_t *h)
{
	uv_idle_stop(h);
	submit(h->data);
}

/* ---- open, load, close ---- */

static int db_fail(const struct relay_store *st, const char *what)
{
	vigie_log_error("relay store %s: %s: %s", st->path, what,
			st->db ? sqlite3_errmsg(st->db) : "no database");
	return VIGIE_EIO;
}

static int exec_sql(struct relay_store *st, const char *sql, const char *what)
{
	char *msg = NULL;
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		vigie_log_error("relay store %s: %s: %s", st->path, what,
				msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return VIGIE_EIO;
	}
	return 0;
}

static int prepare(struct relay_store *st, const char *sql, sqlite3_stmt **out)
{
	if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out,
			       NULL) != SQLITE_OK)
		return db_fail(st, "cannot prepare a statement");
	return 0;
}

static int db_open(struct relay_store *st)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *mode;
	int rc;

	rc = sqlite3_open_v2(st->path, &st->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK)
		return db_fail(st, "cannot open");
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
	/* Checked, not assumed: the durability argument is WAL's. */
	if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &s,
			       NULL) != SQLITE_OK)
		return db_fail(st, "cannot open the database");
	if (sqlite3_step(s) != SQLITE_ROW) {
		sqlite3_finalize(s);
		return db_fail(st, "cannot switch to WAL");
	}
	mode = sqlite3_column_text(s, 0);
	if (!mode || strcmp((const char *)mode, "wal") != 0) {
		vigie_log_error(
			"relay store %s: journal mode is %s, WAL is required",
			st->path, mode ? (const char *)mode : "unknown");
		sqlite3_finalize(s);
		return VIGIE_EIO;
	}
	sqlite3_finalize(s);
	/* The connection commits with NORMAL: a commit is in the OS when
	 * COMMIT returns (a kill -9 keeps it), and the WAL is fsync'd after
	 * it, by sync_work_cb, when sync_full and the batch holds durable
	 * work (a Receipt lets a node forget its event: that waits for the
	 * disk). NORMAL alone survives a kill -9 but not a power cut. */
	rc = exec_sql(st, "PRAGMA synchronous=NORMAL",
		      "cannot configure the database");
	if (rc)
		return rc;
	rc = exec_sql(st,
		      "PRAGMA journal_size_limit=67108864;"
		      "PRAGMA wal_autocheckpoint=0;",
		      "cannot configure the database");
	if (rc)
		return rc;
	sqlite3_wal_hook(st->db, wal_hook, st);
	/* The checkpointer's connection; WAL mode is the database's now. */
	rc = sqlite3_open_v2(st->path, &st->ckpt_db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		vigie_log_error("relay store %s: cannot open: %s", st->path,
				st->ckpt_db ? sqlite3_errmsg(st->ckpt_db)
					    : sqlite3_errstr(rc));
		return VIGIE_EIO;
	}
	sqlite3_busy_timeout(st->ckpt_db, BUSY_TIMEOUT_MS);
	return 0;
}

static int db_schema(struct relay_store *st)
{
	sqlite3_stmt *s;
	int64_t version = 0;
	int rc;

	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) !=
	    SQLITE_OK)
		return db_fail(st, "cannot read the database");
	if (sqlite3_step(s) == SQLITE_ROW)
		version = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	if (version > SCHEMA_VERSION) {
		vigie_log_error("relay store %s: schema version %" PRId64
				" is newer than this program's (%d)",
				st->path, version, SCHEMA_VERSION);
		return VIGIE_EIO;
	}
	rc = exec_sql(st, "BEGIN IMMEDIATE", "cannot start a transaction");
	if (rc)
		return rc;
	rc = exec_sql(st, schema_sql, "cannot create the schema");
	if (rc) {
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	return exec_sql(st, "COMMIT", "cannot create the schema");
}

static void finalize_all(struct relay_store *st)
{
	sqlite3_finalize(st->st_begin);
	sqlite3_finalize(st->st_commit);
	sqlite3_finalize(st->st_rollback);
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(st->stmts[i]);
}

int vigie__store_open(uv_loop_t *loop, const char *path,
		      const struct store_options *o, struct relay_store **out)
{
	struct relay_store *st = calloc(1, sizeof(*st));
	int rc = VIGIE_ENOMEM;

	if (!st)
		return VIGIE_ENOMEM;
	st->loop = loop;
	st->wal_fd = -1;
	st->path = strdup(path);
	if (o)
		st->opt = *o;
	else
		st->opt.sync_full = true;
	st->cur = calloc(1, sizeof(*st->cur));
	if (!st->path || !st->cur)
		goto out_free;
	rc = db_open(st);
	if (rc == 0)
		rc = db_schema(st);
	if (rc == 0)
		rc = prepare(st, "BEGIN IMMEDIATE", &st->st_begin);
	if (rc == 0)
		rc = prepare(st, "COMMIT", &st->st_commit);
	if (rc == 0)
		rc = prepare(st, "ROLLBACK", &st->st_rollback);
	for (int i = 0; rc == 0 && i < S_COUNT; i++)
		rc = prepare(st, stmt_sql[i], &st->stmts[i]);
	if (rc)
		goto out_close;
	uv_idle_init(loop, &st->kick);
	uv_timer_init(loop, &st->linger);
	st->linger.data = st;
	uv_timer_init(loop, &st->retry);
	st->kick.data = st->retry.data = st;
	st->handles_open = 3;
	*out = st;
	return 0;
out_close:
	finalize_all(st);
	sqlite3_close(st->ckpt_db);
	sqlite3_close(st->db);
out_free:
	free(st->cur);
	free(st->path);
	free(st);
	return rc;
}

static const char *col_text(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	return t ? (const char *)t : "";
}

static uint64_t col_u64(sqlite3_stmt *s, int i)
{
	int64_t v = sqlite3_column_int64(s, i);

	return v < 0 ? 0 : (uint64_t)v;
}

/* Run `sql` and hand each row to `row`. */
static int each_row(struct relay_store *st, const char *sql,
		    void (*row)(sqlite3_stmt *s, const struct store_loader *l),
		    const struct store_loader *l)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return db_fail(st, "cannot read the database");
	for (;;) {
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		row(s, l);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return db_fail(st, "cannot read the database");
	return 0;
}

static void row_stream(sqlite3_stmt *s, const struct store_loader *l)
{
	if (l->stream)
		l->stream(l->ud, col_text(s, 0), col_text(s, 1), col_u64(s, 2),
			  col_u64(s, 3));
}

static void row_seq(sqlite3_stmt *s, const struct store_loader *l)
{
	if (l->seq)
		l->seq(l->ud, col_text(s, 0), col_text(s, 1), col_u64(s, 2),
		       col_u64(s, 3));
}

static void row_node(sqlite3_stmt *s, const struct store_loader *l)
{
	if (l->node)
		l->node(l->ud, col_text(s, 0), col_text(s, 1), col_u64(s, 2));
}

static void row_incident(sqlite3_stmt *s, const struct store_loader *l)
{
	struct store_incident i;

	if (!l->incident)
		return;
	memset(&i, 0, sizeof(i));
	i.id = col_text(s, 0);
	i.site = col_text(s, 1);
	i.zone = col_text(s, 2);
	i.subject = col_text(s, 3);
	i.state = sqlite3_column_int(s, 4);
	i.trouble = sqlite3_column_int(s, 5) != 0;
	i.priority = sqlite3_column_int(s, 6);
	i.kind = sqlite3_column_int(s, 7);
	i.opened_us = col_u64(s, 8);
	i.updated_us = col_u64(s, 9);
	i.closed_us = col_u64(s, 10);
	i.last_activity_us = col_u64(s, 11);
	i.id_prefix = col_text(s, 12);
	i.id_sec = col_u64(s, 13);
	i.id_k = (uint32_t)sqlite3_column_int64(s, 14);
	i.detectors = col_text(s, 15);
	i.data = sqlite3_column_blob(s, 16);
	i.len = (size_t)sqlite3_column_bytes(s, 16);
	l->incident(l->ud, &i);
}

static void row_escalation(sqlite3_stmt *s, const struct store_loader *l)
{
	struct store_escalation e;

	if (!l->escalation)
		return;
	e.incident = col_text(s, 0);
	e.active = sqlite3_column_int(s, 1) != 0;
	e.acked = sqlite3_column_int(s, 2) != 0;
	e.level = (uint32_t)sqlite3_column_int(s, 3);
	e.level_since_us = col_u64(s, 4);
	e.deadline_us = col_u64(s, 5);
	l->escalation(l->ud, &e);
}

static void row_dispatch(sqlite3_stmt *s, const struct store_loader *l)
{
	struct store_dispatch d;

	if (!l->dispatch)
		return;
	d.id = col_text(s, 0);
	d.incident = col_text(s, 1);
	d.level = (uint32_t)sqlite3_column_int(s, 2);
	d.alert = sqlite3_column_int(s, 3) != 0;
	d.post = col_text(s, 4);
	d.backup_for = col_text(s, 5);
	d.attempts = (uint32_t)sqlite3_column_int(s, 6);
	d.first_us = col_u64(s, 7);
	d.last_us = col_u64(s, 8);
	d.next_us = col_u64(s, 9);
	d.acked_us = col_u64(s, 10);
	l->dispatch(l->ud, &d);
}

static void row_closed(sqlite3_stmt *s, const struct store_loader *l)
{
	l->closed(l->ud, col_text(s, 0), col_u64(s, 1));
}

static void row_pattern(sqlite3_stmt *s, const struct store_loader *l)
{
	if (l->pattern)
		l->pattern(l->ud, col_text(s, 0), col_text(s, 1), col_u64(s, 2),
			   sqlite3_column_blob(s, 3),
			   (size_t)sqlite3_column_bytes(s, 3));
}

static void row_id(sqlite3_stmt *s, const struct store_loader *l)
{
	if (l->id)
		l->id(l->ud, col_text(s, 0), col_u64(s, 1),
		      (uint32_t)sqlite3_column_int64(s, 2));
}

int vigie__store_has_incident(struct relay_store *st, const char *id, bool *has)
{
	sqlite3_stmt *s;
	int rc;

	if (st->working || st->inflight)
		return VIGIE_EINVAL;
	if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM incidents WHERE id = ?",
			       -1, &s, NULL) != SQLITE_OK)
		return db_fail(st, "cannot read the database");
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(st, "cannot read the database");
	*has = rc == SQLITE_ROW;
	return 0;
}

int vigie__store_load(struct relay_store *st, const struct store_loader *l)
{
	int rc;

	if (st->working || st->inflight)
		return VIGIE_EINVAL;
	rc = each_row(st, "SELECT site, node, boot_id, contig FROM streams",
		      row_stream, l);
	/* Streams drive the join (CROSS JOIN keeps that order): one index
	 * seek per stream instead of a scan of every event ever stored. */
	if (rc == 0)
		rc = each_row(
			st,
			"SELECT e.site, e.node, e.boot_id, e.seq FROM streams s"
			" CROSS JOIN events e ON e.site = s.site AND"
			" e.node = s.node AND e.boot_id = s.boot_id AND"
			" e.seq > s.contig ORDER BY 1, 2, 3, 4",
			row_seq, l);
	if (rc == 0)
		rc = each_row(st, "SELECT site, node, reporting_ms FROM nodes",
			      row_node, l);
	if (rc == 0)
		rc = each_row(
			st,
			"SELECT id_prefix, id_sec, max(id_k) FROM incidents i"
			" WHERE id_sec = (SELECT max(id_sec) FROM incidents j"
			" WHERE j.id_prefix = i.id_prefix) GROUP BY id_prefix",
			row_id, l);
	if (rc == 0)
		rc = each_row(
			st,
			"SELECT id, site, zone, subject, state, trouble,"
			" priority, kind, opened_us, updated_us, closed_us,"
			" last_activity_us, id_prefix, id_sec, id_k,"
			" detectors, data FROM incidents WHERE state != 4"
			" ORDER BY opened_us",
			row_incident, l);
	if (rc == 0)
		rc = each_row(
			st,
			"SELECT e.incident, e.active, e.acked, e.level,"
			" e.level_since_us, e.deadline_us FROM escalations e"
			" JOIN incidents i ON i.id = e.incident"
			" WHERE i.state != 4",
			row_escalation, l);
	if (rc == 0)
		rc = each_row(
			st,
			"SELECT d.id, d.incident, d.level, d.alert, d.post,"
			" d.backup_for, d.attempts, d.first_us, d.last_us,"
			" d.next_us, d.acked_us FROM dispatches d"
			" JOIN incidents i ON i.id = d.incident"
			" WHERE i.state != 4",
			row_dispatch, l);
	if (rc == 0 && l->closed)
		rc = each_row(st,
			      "SELECT i.id, i.closed_us FROM incidents i"
			      " WHERE i.state = 4 AND NOT EXISTS (SELECT 1"
			      " FROM cleared c WHERE c.id = i.id)"
			      " ORDER BY i.closed_us, i.id",
			      row_closed, l);
	if (rc == 0 && l->pattern)
		rc = each_row(st,
			      "SELECT ns, key, seq, data FROM pattern_state"
			      " ORDER BY ns, seq",
			      row_pattern, l);
	return rc;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct relay_store *st = h->data;
	void (*cb)(void *) = st->close_cb;
	void *arg = st->close_arg;

	if (--st->handles_open > 0)
		return;
	batch_free(st->cur);
	batch_free(st->spare);
	free(st->path);
	free(st);
	if (cb)
		cb(arg);
}

static void finish_close(struct relay_store *st)
{
	if (st->handles_open == 0 || uv_is_closing((uv_handle_t *)&st->kick) ||
	    st->ckpt_running || st->syncing || st->synq)
		return; /* a running checkpoint or fsync calls back when done */
	finalize_all(st);
	if (st->wal_fd >= 0)
		close(st->wal_fd);
	st->wal_fd = -1;
	/* Closed first: the last connection's close checkpoints what is
	 * left of the WAL and removes it. */
	if (sqlite3_close(st->ckpt_db) != SQLITE_OK)
		vigie_log_warn("relay store %s: close: %s", st->path,
			       sqlite3_errmsg(st->ckpt_db));
	st->ckpt_db = NULL;
	if (sqlite3_close(st->db) != SQLITE_OK)
		vigie_log_warn("relay store %s: close: %s", st->path,
			       sqlite3_errmsg(st->db));
	st->db = NULL;
	uv_close((uv_handle_t *)&st->kick, on_handle_closed);
	uv_close((uv_handle_t *)&st->linger, on_handle_closed);
	uv_close((uv_handle_t *)&st->retry, on_handle_closed);
}

void vigie__store_close(struct relay_store *st, void (*cb)(void *arg),
			void *arg)
{
	if (st->state == ST_CLOSING)
		return;
	st->state = ST_CLOSING;
	st->close_cb = cb;
	st->close_arg = arg;
	uv_idle_stop(&st->kick);
	uv_timer_stop(&st->linger);
	if (st->inflight && !st->working) {
		/* Failed and waiting: try it now. */
		uv_timer_stop(&st->retry);
	}
	submit(st);
}
