/* The pattern engine's insides, shared by patterns.c, patterns_snap.c and
 * patterns_text.c only. */
#ifndef VIGIE_RELAY_PATTERNS_INT_H
#define VIGIE_RELAY_PATTERNS_INT_H

#include "patterns.h"

#define REC_CONFIRMED 0x01
#define REC_TROUBLE   0x02
#define REC_RESTORED  0x04 /* a trouble whose restore arrived (closed) */

/* One incident in the windows. */
struct pat_rec {
	struct hmap_entry he; /* by incident id */
	uint64_t first_us, last_us;
	uint64_t matched; /* filter slots it matched (PAT_MAX_SLOTS bits) */
	uint32_t site;    /* index in the rules' site table */
	uint32_t zone;    /* atom, referenced */
	uint32_t slot;    /* in the engine's record table */
	uint32_t *attrs;  /* (key, value) atom pairs, sorted, referenced */
	uint8_t n_attrs;
	uint8_t kind, state, priority, flags;
	char id[];
};

/* An entry of a window: a record, its time (s) and the value the rule
 * counts (a site, a day ...), kept so that dropping it needs no record. */
struct pat_ent {
	uint32_t rec;
	uint32_t t;
	uint32_t val;
};

/* Entries sorted by time, a deque: old ones leave at the head. */
struct pat_list {
	struct pat_ent *v;
	uint32_t head, len, cap;
};

/* value -> count, open addressing (UINT32_MAX: empty). */
struct pat_counter {
	uint32_t *k, *c;
	uint32_t cap, size;
};

struct pat_group {
	uint64_t hash;
	uint64_t alert; /* serial of its campaign, 0: none (or ended) */
	uint32_t key[PAT_MAX_GROUP_BY];
	uint32_t tmax; /* newest entry (s) */
	struct pat_counter distinct;
	struct pat_list lists[]; /* one, or one per sequence step */
};

struct pat_posting {
	uint32_t key, value;
	struct pat_list list;
};

/* (end, serial) of campaigns, a min-heap by end. An entry whose campaign
 * grew (its end moved) or is gone is stale, and skipped when it comes up. */
struct pat_heap {
	struct pat_end {
		uint64_t end, serial;
	} * v;
	size_t n, cap;
};

/* id hash -> serial: which campaign of a similar_mo rule an incident is
 * in (0: empty). */
struct pat_hmap64 {
	uint64_t *k, *v;
	uint32_t cap, size;
};

struct pat_rstate {
	const struct pat_rule *rule;
	uint32_t wsec; /* window in seconds, rounded up */
	uint32_t nlists;
	struct pat_group **gt; /* open addressing by group hash */
	uint32_t gcap, gcount;
	struct pat_posting **pt; /* similar_mo: (key, value) -> entries */
	uint32_t pcap, pcount;
	struct pat_alert *active;
	uint32_t unlinked;         /* restored alerts no group points at yet */
	struct pat_hmap64 members; /* similar_mo: incident -> campaign */
	uint64_t swept_wm_us;
	uint32_t swept_cut; /* every entry older than this is gone (s) */
};

/* Member ids of an alert, hashed: counts members beyond the listed ones
 * exactly. */
struct pat_idset {
	uint64_t *h;
	uint32_t cap, size;
};

struct pat_alert_priv {
	struct pat_alert *prev; /* in the rule's active list */
	struct pat_idset ids;
	uint64_t serial; /* engine-wide, never reused */
	bool linked;     /* a group points at it */
	bool dirty;
	bool is_new;
	bool explained; /* a->explanation is up to date */
};

struct pat_engine {
	struct pat_rules *r;
	struct pat_sink sink;
	struct hmap by_id;
	struct pat_rec **recs; /* by slot */
	uint32_t n_recs, cap_recs;
	uint32_t *free_slots;
	uint32_t n_free, cap_free;
	uint32_t *fifo; /* slots in order of arrival (a ring) */
	uint32_t fifo_head, fifo_len, fifo_cap;
	uint64_t wm;          /* latest event time seen (µs) */
	struct pat_heap ends; /* when campaigns end, earliest first */
	struct pat_rstate rs[PAT_MAX_RULES];
	struct hmap alerts;        /* active ones, by id */
	struct pat_hmap64 serials; /* active alerts by serial (address) */
	uint64_t alert_seq;        /* in alert ids, persisted */
	uint64_t serial_seq;       /* serials, this run only */
	size_t entries;
	struct pat_stats st;
	struct pat_alert *dirty[64];
	size_t n_dirty;
	uint32_t *scratch;
	size_t cap_scratch;
	uint32_t tod[4], dur[3]; /* atoms of the derived attributes */
};

static inline uint32_t pat_sec(uint64_t us)
{
	uint64_t s = us / 1000000u;

	return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

struct pat_alert_full {
	struct pat_alert a;
	struct pat_alert_priv p;
};

static inline struct pat_alert_priv *pat_priv(struct pat_alert *a)
{
	return &container_of(a, struct pat_alert_full, a)->p;
}

/* patterns.c, for the snapshots */
struct pat_rec *vigie__pat_rec_put(struct pat_engine *e, const char *id,
				   uint32_t site);
void vigie__pat_rec_index(struct pat_engine *e, struct pat_rec *rec);
int vigie__pat_rec_set_attrs(struct pat_engine *e, struct pat_rec *rec,
			     const uint32_t *pairs, size_t n);
struct pat_alert *vigie__pat_alert_new(struct pat_engine *e,
				       struct pat_rstate *rs, const char *id,
				       const char *gkey);
/* Returns 1 when added, 0 when a member already, or VIGIE_ENOMEM. */
int vigie__pat_alert_add_member(struct pat_engine *e, struct pat_alert *a,
				const struct pat_member *m);
void vigie__pat_alert_add_site(struct pat_alert *a, uint32_t site);
/* After its last_us was set (restore): when it ends. */
int vigie__pat_alert_track_end(struct pat_engine *e, struct pat_alert *a);
int vigie__pat_alert_add_hash(struct pat_engine *e, struct pat_alert *a,
			      uint64_t h);
/* Unlink and free without telling the sink (a failed restore). */
void vigie__pat_alert_drop(struct pat_engine *e, struct pat_alert *a);
/* Which filters the record matches, asked again (rules changed). */
void vigie__pat_rec_rematch(struct pat_engine *e, struct pat_rec *rec);
/* Records with their last event before this (s) are not restored. */
uint32_t vigie__pat_restore_cut(const struct pat_engine *e);
void vigie__pat_expire(struct pat_engine *e);

#endif
