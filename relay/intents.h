/* The intent log: the ids of incidents whose messages left before their
 * rows committed.
 *
 * The relay publishes what an event decides (a Dispatch, a site alert, the
 * incident's retained state) at once, not after the store's commit: the
 * commit is most of the way from a sensor to the police post. What keeps a
 * kill -9 from sending the same alarm again under a new id is this file,
 * "<database>-intents": one line per incident opened, written (a single
 * write(2), in the operating system once it returns, as a commit with
 * synchronous=NORMAL is) before any of its messages is published. After a
 * crash the relay reads back the lines whose incidents never reached the
 * database and reserves their ids (vigie__inc_reserve): the node sends the
 * unreceipted event again and it opens its incident under the same id, so
 * the post recognises the repeat.
 *
 * The file is emptied when every incident it names is committed and no
 * reservation waits, once it has grown past a size. Loop thread only. */
#ifndef VIGIE_RELAY_INTENTS_H
#define VIGIE_RELAY_INTENTS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct intent_rec {
	const char *id, *key, *prefix;
	uint64_t sec, first_event_us;
	uint32_t k;
};

struct intent_log {
	int fd;
	char path[PATH_MAX];
	uint64_t size;
	uint64_t pending;   /* lines whose incidents are not committed yet */
	uint64_t bad_lines; /* read back at open, skipped */
};

typedef void (*intent_each_fn)(void *ud, const struct intent_rec *rec);

/* vigie__intents_open: open (create) the log beside `db_path`, calling
 * `each` for every well-formed line in it, in order. A line that does not
 * parse is reported and skipped. Returns 0 or a VIGIE_E* code. */
int vigie__intents_open(struct intent_log *l, const char *db_path,
			intent_each_fn each, void *ud);

/* vigie__intents_append: one line, before the incident's first message.
 * Returns 0 or VIGIE_EIO/EINVAL (then the message still leaves: an alarm
 * is never held back for its bookkeeping). */
int vigie__intents_append(struct intent_log *l, const struct intent_rec *rec);

/* vigie__intents_reset: empty the log (every line in it is committed or
 * moot). Returns 0 or VIGIE_EIO. */
int vigie__intents_reset(struct intent_log *l);

void vigie__intents_close(struct intent_log *l);

#endif
