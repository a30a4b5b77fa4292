/* The node's durable outbox: every event lives here, on disk, from the moment
 * it is accepted until the relay's Receipt says it is stored centrally.
 *
 * SQLite in WAL mode with synchronous=FULL. Appends are visible in memory at
 * once (so the caller can publish before the fsync) and are committed in
 * groups on libuv's thread pool: while one transaction is being written and
 * fsync'd, new appends gather for the next one, so many events share one
 * fsync and the loop never blocks on the disk. A source is confirmed only in
 * the durable callback, after its transaction committed. */
#ifndef VIGIE_OUTBOX_H
#define VIGIE_OUTBOX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct vigie_outbox;

/* An unreceipted event, in memory. Owned by the outbox; valid until the
 * event is receipted or the outbox closed. The caller may update
 * last_sent_ms, attempts and path_flags for its re-send bookkeeping. */
struct vigie_outbox_entry {
	uint64_t boot_id;
	uint64_t seq;
	uint64_t time_us;
	const uint8_t *payload; /* read by the commit thread: never write it */
	size_t len;
	uint64_t last_sent_ms; /* 0: never sent */
	uint32_t attempts;
	unsigned path_flags; /* free for the caller */
};

struct vigie_outbox_options {
	size_t max_pending; /* cap on unreceipted events; default 1,000,000 */
	size_t max_batch;   /* appends per transaction; default 4096 */
};

/* Called once per append on the loop thread: status 0 when the event is
 * durable, a negative VIGIE_E* when its transaction failed. */
typedef void (*vigie_outbox_durable_cb)(void *arg, int status);

/* vigie_outbox_open: open or create the outbox at `path`, load every
 * unreceipted event into memory in (boot_id, seq) order, and start a new boot:
 * the boot id is persisted, greater than every earlier one and at least the
 * current Unix time in seconds, so a lost file does not reuse ids.
 * `opt` may be NULL. Returns 0, VIGIE_EIO (with the SQLite reason logged),
 * VIGIE_EINVAL or VIGIE_ENOMEM. */
int vigie_outbox_open(uv_loop_t *loop, const char *path,
		      const struct vigie_outbox_options *opt,
		      struct vigie_outbox **out);

/* vigie_outbox_boot_id: the boot id of this run. */
uint64_t vigie_outbox_boot_id(const struct vigie_outbox *ob);

/* vigie_outbox_append: add event (boot_id of this run, seq) with its encoded
 * payload (copied). The entry is in memory on return (*out may be NULL) and
 * `cb` runs once it is durable. If its transaction fails, `cb` gets
 * VIGIE_EIO and the entry stays in memory, unreceipted but not on disk.
 * Returns 0; VIGIE_EFULL at max_pending (which also counts receipted entries
 * whose insert is not committed yet, so memory stays capped when the disk
 * stalls); VIGIE_EINVAL if seq is not greater than the last appended seq, is
 * over INT64_MAX, or the payload is empty; VIGIE_ETOOBIG over 1 MiB;
 * VIGIE_ENOMEM; VIGIE_ECLOSED while closing. On error `cb` is never called. */
int vigie_outbox_append(struct vigie_outbox *ob, uint64_t seq, uint64_t time_us,
			const void *payload, size_t len,
			vigie_outbox_durable_cb cb, void *arg,
			struct vigie_outbox_entry **out);

/* vigie_outbox_receipt: the relay stores every seq <= `seq` of `boot_id`:
 * drop those entries from memory now and from disk in the next transaction.
 * Returns how many entries were dropped (0 for a stale or unknown receipt). */
size_t vigie_outbox_receipt(struct vigie_outbox *ob, uint64_t boot_id,
			    uint64_t seq);

/* Iterate over unreceipted entries in (boot_id, seq) order. Do not append or
 * receipt while iterating. */
struct vigie_outbox_entry *vigie_outbox_first(struct vigie_outbox *ob);
struct vigie_outbox_entry *vigie_outbox_next(struct vigie_outbox *ob,
					     struct vigie_outbox_entry *e);

/* vigie_outbox_pending: unreceipted events in memory. */
size_t vigie_outbox_pending(const struct vigie_outbox *ob);

/* vigie_outbox_last_seq: highest seq appended in this boot (0 if none). */
uint64_t vigie_outbox_last_seq(const struct vigie_outbox *ob);

/* vigie_outbox_close: finish the transaction in flight, commit what is
 * queued (firing its durable callbacks), close the database and free
 * everything; then call `cb` (may be NULL) on the loop. */
void vigie_outbox_close(struct vigie_outbox *ob, void (*cb)(void *arg),
			void *arg);

#endif
