/* The relay's database: SQLite in WAL mode.
 *
 * Writes are queued as ops in the open batch and committed in order, one
 * transaction per batch, on libuv's thread pool: while one batch is written
 * the loop fills the next, so many events share one commit and one fsync
 * and the loop never waits for the disk (group commit). Work that must
 * follow a commit - a Dispatch, a retained Incident - is deferred with
 * vigie__store_defer and runs on the loop, in order, once every op queued
 * before it is committed: nothing leaves the relay that the database would
 * not show after a kill -9. Work that must wait for the disk itself - a
 * Receipt, which lets a node forget its event - is deferred with
 * vigie__store_defer_durable and runs once the commit is also fsync'd
 * (with sync_full; the fsync follows the commit's other effects, so it
 * adds no latency to a dispatch). A failed transaction is retried (the
 * batch and its deferred work wait); nothing is ever half applied.
 *
 * The one window this leaves: a power cut of the relay's host between a
 * Dispatch leaving and the fsync (~0.3 ms here) loses the incident's rows
 * but not the event (unreceipted, its node sends it again), which then
 * opens a new incident: that alarm can reach the post twice. A kill -9
 * cannot do this.
 *
 * Tables: events (once per identity), streams (highest contiguous seq per
 * boot), nodes, incidents, escalations, dispatches, acks and audit, which
 * triggers keep append-only; pattern_state for the pattern tracker.
 * Strings and blobs given to the put functions are copied. */
#ifndef VIGIE_RELAY_STORE_H
#define VIGIE_RELAY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct relay_store;

struct store_options {
	bool sync_full; /* fsync before durable work (default) or never */
	/* Called on the loop just before a batch is handed to the worker:
	 * ops put and work deferred from here join that batch. */
	void (*on_seal)(void *ud);
	void *ud;
};

/* Deferred work: status 0 once committed, VIGIE_EIO when the store closed
 * without committing it. */
typedef void (*store_defer_cb)(void *arg, int status);

/* vigie__store_open: open or create the database at `path` (schema
 * created or checked). Returns 0, VIGIE_EIO (reason logged) or
 * VIGIE_ENOMEM. */
int vigie__store_open(uv_loop_t *loop, const char *path,
		      const struct store_options *o, struct relay_store **out);

/* ---- writes, queued in the open batch ---- */

struct store_event {
	const char *site, *node;
	uint64_t boot_id, seq, time_us, recv_us;
	int kind, state;
	const char *zone, *sensor;
	const void *payload;
	size_t len;
};
int vigie__store_put_event(struct relay_store *st, const struct store_event *e);
int vigie__store_put_stream(struct relay_store *st, const char *site,
			    const char *node, uint64_t boot_id,
			    uint64_t contig);
int vigie__store_put_node(struct relay_store *st, const char *site,
			  const char *node, uint64_t reporting_ms,
			  uint64_t seen_us);

struct store_incident {
	const char *id, *site, *zone, *subject;
	int state, priority, kind;
	bool trouble;
	uint64_t opened_us, updated_us, closed_us, last_activity_us;
	const char *id_prefix;
	uint64_t id_sec;
	uint32_t id_k;
	const char *detectors; /* "id@us;id@us" */
	const void *data;      /* the Incident message */
	size_t len;
};
int vigie__store_put_incident(struct relay_store *st,
			      const struct store_incident *i);

struct store_escalation {
	const char *incident;
	bool active, acked;
	uint32_t level;
	uint64_t level_since_us, deadline_us;
};
int vigie__store_put_escalation(struct relay_store *st,
				const struct store_escalation *e);

struct store_dispatch {
	const char *id, *incident;
	uint32_t level;
	bool alert;
	const char *post, *backup_for;
	uint32_t attempts;
	uint64_t first_us, last_us, next_us, acked_us;
};
int vigie__store_put_dispatch(struct relay_store *st,
			      const struct store_dispatch *d);

struct store_ack {
	const char *incident, *dispatch, *post, *by, *source, *note;
	uint64_t time_us, recv_us;
};
int vigie__store_put_ack(struct relay_store *st, const struct store_ack *a);

/* vigie__store_audit: one line of the append-only audit log. `incident`
 * may be NULL (relay-wide lines). */
int vigie__store_audit(struct relay_store *st, uint64_t time_us,
		       const char *incident, const char *what, const char *who,
		       const char *detail);

/* vigie__store_put_cleared: the retained message of closed incident `id`
 * is cleared (published empty after this batch commits). */
int vigie__store_put_cleared(struct relay_store *st, const char *id);

/* The pattern tracker's state: opaque rows keyed by (ns, key), loaded in
 * `seq` order within each namespace. */
int vigie__store_put_pattern(struct relay_store *st, const char *ns,
			     const char *key, uint64_t seq, const void *data,
			     size_t len);
int vigie__store_del_pattern(struct relay_store *st, const char *ns,
			     const char *key);

/* vigie__store_defer: run cb(arg, 0) once everything queued so far is
 * committed. Returns 0 or VIGIE_ENOMEM / VIGIE_ECLOSED (cb not called).
 * vigie__store_defer_durable: the same, once it is also on the disk
 * (sync_full); cb(arg, VIGIE_EIO) if the fsync failed. */
int vigie__store_defer(struct relay_store *st, store_defer_cb cb, void *arg);
int vigie__store_defer_durable(struct relay_store *st, store_defer_cb cb,
			       void *arg);

/* vigie__store_kick: seal the open batch (calling on_seal) when it is next
 * due - a small batch lingers 2 ms - even if it is empty (its owner has
 * something to add there). */
void vigie__store_kick(struct relay_store *st);

/* Events queued or in flight, not committed yet. */
size_t vigie__store_backlog(const struct relay_store *st);
uint64_t vigie__store_commits(const struct relay_store *st);
uint64_t vigie__store_failures(const struct relay_store *st);

/* ---- loading at start (loop thread, before the loop runs) ---- */

struct store_loader {
	void (*stream)(void *ud, const char *site, const char *node,
		       uint64_t boot_id, uint64_t contig);
	/* a stored seq above its stream's contig (out of order) */
	void (*seq)(void *ud, const char *site, const char *node,
		    uint64_t boot_id, uint64_t seq);
	void (*node)(void *ud, const char *site, const char *node,
		     uint64_t reporting_ms);
	/* an incident not closed; `i->data` is its Incident message */
	void (*incident)(void *ud, const struct store_incident *i);
	void (*escalation)(void *ud, const struct store_escalation *e);
	void (*dispatch)(void *ud, const struct store_dispatch *d);
	/* the latest id of each prefix, closed incidents included */
	void (*id)(void *ud, const char *prefix, uint64_t sec, uint32_t k);
	/* a closed incident whose retained message is not cleared yet, in
	 * the order they closed */
	void (*closed)(void *ud, const char *id, uint64_t closed_us);
	/* a row of the pattern tracker's state */
	void (*pattern)(void *ud, const char *ns, const char *key, uint64_t seq,
			const void *data, size_t len);
	void *ud;
};
int vigie__store_load(struct relay_store *st, const struct store_loader *l);
/* vigie__store_has_incident: whether incident `id` has a row (loading
 * only). Returns 0 (`*has` set) or VIGIE_EIO. */
int vigie__store_has_incident(struct relay_store *st, const char *id,
			      bool *has);

/* vigie__store_close: commit what is queued (running its deferred work),
 * close the database, free everything, then cb(arg) on the loop. */
void vigie__store_close(struct relay_store *st, void (*cb)(void *arg),
			void *arg);

#endif
