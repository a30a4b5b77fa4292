/* The pattern tracker: declarative rules over incident summaries of every
 * museum, as a pure module. No I/O and no clock: time is the incidents' own
 * event time, so a replay at any speed gives what real time gives. The relay
 * side (persistence, messages, dispatches) is patterns_relay.c.
 *
 *   patterns_rules.c  the rules file (YAML, FILE:LINE: FIELD errors), the
 *                     site table and the atom table
 *   patterns.c        the engine: records, windows, groups, the four rule
 *                     types, campaigns (alerts) that grow
 *   patterns_text.c   plain-language explanations
 *   patterns_snap.c   compact snapshots of records, alerts and the engine,
 *                     for the relay's database
 *
 * Model:
 * - An incident is one record, placed in time at its first event. Each
 *   feed of the same incident (opened, joined, confirmed, acknowledged,
 *   closed) updates the record; a record that matched a rule's filter once
 *   stays a member of that rule's windows (a theft remains a theft when its
 *   incident is closed).
 * - The watermark is the latest event time seen. A record is held while its
 *   events are within the longest window plus `lateness` of the watermark
 *   (until every rule's periodic sweep passed it: at most an eighth of the
 *   rule's window more); a new incident older than that is too late and
 *   ignored.
 * - A match opens a campaign (struct pat_alert) for the rule and its group;
 *   later matching incidents of the same campaign join it (one alert that
 *   grows, same id); it ends once its newest incident left the rule's
 *   window.
 * Everything is bounded by the windows: records, entries, groups, atoms
 * (reference counted) and alerts all go when their time has passed. */
#ifndef VIGIE_RELAY_PATTERNS_H
#define VIGIE_RELAY_PATTERNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hmap.h"

struct vigie_conf;

#define PAT_MAX_SLOTS       64 /* filters (rules and steps) per file */
#define PAT_MAX_RULES       32
#define PAT_MAX_GROUP_BY    4
#define PAT_MAX_STEPS       8
#define PAT_MAX_ATTRS       24  /* attributes kept per incident */
#define PAT_MAX_MEMBERS     256 /* incidents listed per alert */
#define PAT_RULE_ID_MAX     40
#define PAT_ID_MAX          64 /* alert and incident ids (VIGIE_ID_MAX) */
#define PAT_GKEY_MAX        200
#define PAT_MAX_SITES       200000
#define PAT_EXPLANATION_MAX 2048

enum pat_type {
	PAT_COUNT = 1,
	PAT_DISTINCT_SITES,
	PAT_SEQUENCE,
	PAT_SIMILAR_MO,
};

/* What a group_by or distinct field reads of an incident. */
enum pat_field {
	PF_SITE = 1,
	PF_REGION,
	PF_ZONE,
	PF_KIND,
	PF_DAY,  /* calendar day of the first event (utc_offset applied) */
	PF_ATTR, /* an attribute's first value */
};

struct pat_fieldref {
	enum pat_field f;
	uint32_t key; /* PF_ATTR: key atom */
};

/* One attribute test: `key: [a, b]` (one of), `key: "*"` (present),
 * `key: ">=1"` (numeric comparison). */
struct pat_attr_test {
	uint32_t key;
	uint32_t *values;
	size_t n_values;
	bool present;
	int cmp; /* 0 none, else '<', 'l' (<=), '>', 'g' (>=), '=' */
	double num;
};

/* A filter: every field given must match (and), `any` needs one of its
 * filters to match. */
struct pat_filter {
	uint64_t kinds;  /* bit per EventKind (< 64); 0: any */
	unsigned states; /* bit per IncidentState; 0: any */
	int confirmed;   /* -1 any, 0 or 1 */
	int trouble;
	int min_priority;
	uint32_t *sites; /* site indexes */
	size_t n_sites;
	uint32_t *regions; /* atoms */
	size_t n_regions;
	struct pat_attr_test *attrs;
	size_t n_attrs;
	struct pat_filter *any;
	size_t n_any;
};

struct pat_step {
	const char *name;
	bool absent;
	bool restore;    /* absent: the previous step's trouble restored */
	uint64_t for_us; /* absent: within this long */
	struct pat_filter match;
	unsigned slot;
};

enum pat_scope {
	PAT_SCOPE_MATCHED = 1, /* the museums with incidents in it */
	PAT_SCOPE_REGION,      /* every museum of their regions */
	PAT_SCOPE_RADIUS,      /* every museum within scope_km of them */
	PAT_SCOPE_ALL,
};

struct pat_weight {
	uint32_t key;
	double w;
	bool distinctive; /* incidents must share one distinctive key */
};

struct pat_rule {
	const char *id, *title, *description;
	enum pat_type type;
	unsigned index;
	uint64_t window_us; /* window, or a sequence's maximum span */
	struct pat_filter match;
	unsigned slot;
	struct pat_fieldref group_by[PAT_MAX_GROUP_BY];
	size_t n_group_by;
	/* count */
	uint32_t min;
	bool has_distinct;
	struct pat_fieldref distinct;
	/* distinct_sites */
	uint32_t min_sites;
	double radius_km; /* 0: anywhere */
	/* sequence */
	struct pat_step steps[PAT_MAX_STEPS];
	size_t n_steps;
	/* similar_mo */
	double threshold;
	uint32_t min_common;
	struct pat_weight *weights;
	size_t n_weights;
	/* the alert */
	int priority; /* Vigie__V1__Priority */
	int posture;  /* Vigie__V1__Posture */
	enum pat_scope scope;
	double scope_km;
	const char **instructions;
	size_t n_instructions;
	const char **posts; /* explicit posts; NULL: the scope's police posts */
	size_t n_posts;
};

/* ---- atoms: interned strings, reference counted ---- */

struct pat_atom {
	struct hmap_entry he;
	uint32_t id;
	uint32_t refs; /* 0 and not pinned: free */
	bool pinned;   /* used by the rules */
	bool is_num;
	double num;
	char s[];
};

struct pat_atoms {
	struct hmap map;
	struct pat_atom **v; /* by id; v[0] is "" */
	uint32_t n, cap;
	uint32_t *free_ids;
	uint32_t n_free, cap_free;
};

/* ---- sites ---- */

struct pat_site {
	struct hmap_entry he;
	char *id;
	char *name;
	uint32_t region; /* atom, 0: none */
	bool has_location;
	bool configured;
	double lat, lon;       /* degrees */
	double rlat, rlon, cl; /* radians, cos(lat) */
};

struct pat_site_info {
	const char *id, *name, *region;
	double lat, lon;
	bool has_location;
};

/* ---- the rule set ---- */

struct pat_rules {
	struct vigie_conf *conf; /* owns the rules' strings */
	char *path;
	struct pat_rule rules[PAT_MAX_RULES];
	size_t n_rules;
	unsigned n_slots;
	uint64_t lateness_us;
	int64_t utc_offset_s;
	uint64_t max_window_us;
	uint64_t fingerprint; /* changes when the rules do */
	bool key_used_init;
	/* grown at run time by the engine (one engine per rule set) */
	struct pat_atoms atoms;
	struct pat_site *sites;
	uint32_t n_sites, cap_sites;
	struct hmap site_map;
	/* attribute keys any rule reads (atoms), sorted */
	uint32_t *keys;
	size_t n_keys;
	uint32_t a_time_of_day, a_duration, a_facade, a_floor, a_zone_kind;
};

/* What the rules are checked against: the relay's sites and posts. */
struct pat_world {
	const struct pat_site_info *sites;
	size_t n_sites;
	const char *const *posts;
	size_t n_posts;
};

/* vigie__patrules_load: read and validate the rules file `path` against
 * the configured sites and posts (`w` may be NULL: none). Returns 0,
 * VIGIE_ECONFIG with "FILE:LINE: FIELD: reason" in err, or VIGIE_ENOMEM. */
int vigie__patrules_load(const char *path, const struct pat_world *w,
			 struct pat_rules **out, char *err, size_t errlen);
void vigie__patrules_free(struct pat_rules *r);
/* One line per rule, for check-config. */
void vigie__patrules_describe(const struct pat_rules *r, FILE *out);

/* Atoms and sites (also used by the engine). */
uint32_t vigie__pat_atom(struct pat_atoms *a, const char *s, bool add);
const char *vigie__pat_atom_str(const struct pat_atoms *a, uint32_t id);
void vigie__pat_atom_ref(struct pat_atoms *a, uint32_t id);
void vigie__pat_atom_unref(struct pat_atoms *a, uint32_t id);
/* vigie__pat_site: index of site `id`, added (unconfigured) when `add`;
 * UINT32_MAX when unknown or the table is full. */
uint32_t vigie__pat_site(struct pat_rules *r, const char *id, bool add);
double vigie__pat_distance_km(const struct pat_site *a,
			      const struct pat_site *b);
bool vigie__pat_key_used(const struct pat_rules *r, uint32_t key);
const struct pat_rule *vigie__patrules_find(const struct pat_rules *r,
					    const char *id);

/* ---- the engine ---- */

struct pat_engine;

/* An incident as the tracker reads it (an incident summary). */
struct pat_input {
	const char *id, *site, *zone;
	int kind, state, priority;
	bool confirmed, trouble;
	uint64_t first_us, last_us; /* event time */
	const char *const *attr_keys;
	const char *const *attr_values;
	size_t n_attrs;
};

/* One incident of an alert, copied: it outlives the record. */
struct pat_member {
	char id[PAT_ID_MAX + 1];
	uint32_t site;
	uint32_t zone; /* atom (referenced) */
	int8_t step;   /* sequence: step index; -1 otherwise */
	uint8_t kind;
	bool trouble;
	bool restored;
	uint64_t t_us;    /* first event */
	uint64_t last_us; /* last event (a trouble's restore) */
	char mo[160];     /* its attributes, "tool=angle-grinder, ..." */
};

struct pat_alert {
	struct hmap_entry by_id;
	char id[PAT_ID_MAX + 1];
	const struct pat_rule *rule;
	char gkey[PAT_GKEY_MAX + 1]; /* the group, "region=ile-de-france" */
	uint32_t version;            /* 1 at the first match, +1 per change */
	bool active;
	uint64_t first_us, last_us; /* first events of its incidents */
	struct pat_member *members; /* the first PAT_MAX_MEMBERS */
	size_t n_members, cap_members;
	uint32_t n_total; /* incidents in it, listed or not */
	uint32_t *sites;  /* distinct site indexes, in order of appearance */
	size_t n_sites, cap_sites;
	double score;           /* similar_mo: best similarity seen */
	char *explanation;      /* see vigie__pat_alert_text */
	struct pat_alert *next; /* the rule's active alerts */
	void *ud;               /* the relay side's state */
};

enum pat_change {
	PAT_NEW = 1,
	PAT_GROWN,
	PAT_ENDED, /* the alert is freed when the callback returns */
};

struct pat_sink {
	void (*alert)(void *ud, struct pat_alert *a, enum pat_change what);
	/* a record left the windows: its snapshot may go */
	void (*expired)(void *ud, const char *incident);
	void *ud;
};

enum pat_feed_result {
	PAT_FEED_SAME = 0,    /* nothing the tracker keeps changed */
	PAT_FEED_CHANGED = 1, /* new or updated record: persist it */
	PAT_FEED_LATE = 2,    /* older than the windows: ignored */
	PAT_FEED_FUTURE = 3,  /* first event ahead of `now`: ignored */
	PAT_FEED_INVALID = 4,
};

struct pat_stats {
	uint64_t fed, late, future, invalid;
	size_t records, entries, groups, alerts, atoms;
	uint64_t watermark_us;
	uint64_t alerts_opened, alerts_grown, alerts_ended;
};

/* vigie__pat_open: an engine over `rules` (which it extends: atoms,
 * unconfigured sites). Returns 0 or VIGIE_ENOMEM. */
int vigie__pat_open(struct pat_rules *rules, const struct pat_sink *sink,
		    struct pat_engine **out);
void vigie__pat_close(struct pat_engine *e);

/* vigie__pat_feed: one incident summary. `now_us` is the caller's wall
 * clock, used only to refuse event times far in the future (a node with a
 * wrong clock must not expire everything). Callbacks run from inside.
 * Returns a pat_feed_result, or VIGIE_ENOMEM. */
int vigie__pat_feed(struct pat_engine *e, const struct pat_input *in,
		    uint64_t now_us);

void vigie__pat_stats(const struct pat_engine *e, struct pat_stats *st);
struct pat_alert *vigie__pat_alert_find(const struct pat_engine *e,
					const char *id);
/* Active alerts: for (a = first(e, &i); a; a = next(e, a, &i)); nothing
 * may be fed meanwhile. */
struct pat_alert *vigie__pat_alert_first(const struct pat_engine *e,
					 size_t *pos);
struct pat_alert *vigie__pat_alert_next(const struct pat_engine *e,
					const struct pat_alert *a, size_t *pos);
struct pat_rules *vigie__pat_rules(const struct pat_engine *e);

/* vigie__pat_alert_text: the alert's explanation, brought up to date
 * (built when asked, not at every change). */
const char *vigie__pat_alert_text(const struct pat_engine *e,
				  struct pat_alert *a);

/* vigie__pat_in_scope: is site index `site` in the alert's scope? */
bool vigie__pat_in_scope(const struct pat_engine *e, const struct pat_alert *a,
			 uint32_t site);
/* vigie__pat_scope: the scope's site indexes into a malloc'd array. */
int vigie__pat_scope(const struct pat_engine *e, const struct pat_alert *a,
		     uint32_t **out, size_t *n);

/* ---- snapshots (patterns_snap.c): the state that survives a restart ---
 * Records are restored without evaluating the rules: the alerts they made
 * are restored from their own snapshots. Buffers are malloc'd. */
int vigie__pat_snap_record(const struct pat_engine *e, const char *incident,
			   uint8_t **out, size_t *len);
int vigie__pat_restore_record(struct pat_engine *e, const void *data,
			      size_t len);
int vigie__pat_snap_alert(const struct pat_engine *e, struct pat_alert *a,
			  uint8_t **out, size_t *len);
/* Returns 0, VIGIE_EDECODE, VIGIE_ENOTFOUND (its rule is gone) or
 * VIGIE_ENOMEM. *out (may be NULL) is the restored alert. */
int vigie__pat_restore_alert(struct pat_engine *e, const void *data, size_t len,
			     struct pat_alert **out);
int vigie__pat_snap_meta(const struct pat_engine *e, uint8_t **out,
			 size_t *len);
int vigie__pat_restore_meta(struct pat_engine *e, const void *data, size_t len);
/* vigie__pat_restore_done: after restoring, end what the restored
 * watermark says is over (callbacks run). */
void vigie__pat_restore_done(struct pat_engine *e);

/* ---- explanations (patterns_text.c) ---- */

/* vigie__pat_explain: the alert's plain-language explanation into buf. */
void vigie__pat_explain(const struct pat_engine *e, const struct pat_alert *a,
			char *buf, size_t len);
/* "2025-10-19 09:34" in the rules' local time (utc_offset). */
void vigie__pat_time_text(const struct pat_rules *r, uint64_t us, char *buf,
			  size_t len);

/* ---- internal to the pattern files ---- */

struct pat_rec;
const struct pat_rec *vigie__pat_rec_find(const struct pat_engine *e,
					  const char *id);

#endif
