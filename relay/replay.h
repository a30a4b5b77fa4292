/* What the relay remembers to tell a replay or a forgery from a re-send,
 * once signatures are checked (relay/verify.c). Pure: no I/O, no clock.
 *
 * - Per node: the newest boot seen (from stored streams at start, then from
 *   events and heartbeats) and the last heartbeat (boot, hb_seq) accepted.
 * - Per recent identity (site, node, boot_id, seq): a digest of the signed
 *   Event bytes, in a fixed direct-mapped table. A repeat whose digest is
 *   known and differs is a forgery; a repeat whose slot was reused is only
 *   "unknown", and is still never processed again (the streams say it is
 *   stored), so forgetting costs detection, never safety. */
#ifndef VIGIE_RELAY_REPLAY_H
#define VIGIE_RELAY_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hmap.h"
#include "vigie/sign.h"

struct replay_slot {
	uint64_t id; /* hash of the identity; 0: empty */
	uint8_t digest[VIGIE_SIGN_DIGEST];
};

struct replay_guard {
	struct hmap nodes;
	size_t max_nodes;
	struct replay_slot *slots;
	size_t n_slots; /* a power of two */
};

enum replay_same {
	REPLAY_UNKNOWN = 0, /* not remembered */
	REPLAY_SAME,        /* the same bytes: a harmless re-send */
	REPLAY_DIFFERENT,   /* other bytes under a stored identity: forgery */
};

/* vigie__replay_init: `n_slots` is rounded up to a power of two. Returns 0
 * or VIGIE_ENOMEM. */
int vigie__replay_init(struct replay_guard *g, size_t max_nodes,
		       size_t n_slots);
void vigie__replay_free(struct replay_guard *g);

/* vigie__replay_note_boot: `boot` was seen (stored or heartbeating) for
 * site/node; the newest is kept. */
void vigie__replay_note_boot(struct replay_guard *g, const char *site,
			     const char *node, uint64_t boot);
/* The newest boot seen, 0 if none. */
uint64_t vigie__replay_newest_boot(const struct replay_guard *g,
				   const char *site, const char *node);

/* vigie__replay_heartbeat: accept a heartbeat only if it is newer than the
 * last one accepted (a later boot, or a higher hb_seq in the same boot);
 * then remember it. Returns true when accepted. */
bool vigie__replay_heartbeat(struct replay_guard *g, const char *site,
			     const char *node, uint64_t boot, uint64_t hb_seq);

/* vigie__replay_remember / vigie__replay_compare: the digest of a stored
 * identity; compare a repeat's digest with it. */
void vigie__replay_remember(struct replay_guard *g, const char *site,
			    const char *node, uint64_t boot, uint64_t seq,
			    const uint8_t *digest);
enum replay_same vigie__replay_compare(const struct replay_guard *g,
				       const char *site, const char *node,
				       uint64_t boot, uint64_t seq,
				       const uint8_t *digest);

#endif
