/* Incidents, as a pure state machine: no I/O, time from an injected clock.
 *
 * - An alarm (intrusion family, duress, fire, or a kind this relay does not
 *   know) opens an incident for its site and zone, or joins the open one:
 *   an unacknowledged incident absorbs every later alarm of its zone, an
 *   acknowledged one only those within `window_ms` of its last event.
 * - Two independent detectors (distinct node/sensor, intrusion family) with
 *   alarms within `confirm_window_ms` of each other confirm it (EN 50131-9
 *   sequential confirmation): priority critical.
 * - Priority is the highest of its events' kinds (see vigie__inc_priority).
 * - A trouble (camera tamper/moved/blind, comm loss, node tamper, path loss,
 *   power, battery, forged traffic; or any detector reporting a trouble
 *   state) opens an incident keyed by site, subject (node or node/sensor)
 *   and kind; it closes only when its restore arrives.
 * - An acknowledged alarm incident closes after `close_after_ms` without a
 *   new event; an unacknowledged one never closes by itself.
 * States: OPEN -> CONFIRMED -> ACKNOWLEDGED -> CLOSED (a confirmation after
 * an acknowledgement below the police level re-arms it: see relay.c). */
#ifndef VIGIE_RELAY_INCIDENT_H
#define VIGIE_RELAY_INCIDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "escalation.h"
#include "hmap.h"
#include "relay.h"

#define INC_MAX_REFS       64 /* event references kept (the first ones) */
#define INC_MAX_DETECTORS  32
#define INC_MAX_ATTRS      16
#define INC_SUBJECT_MAX    (2 * VIGIE_ID_MAX + 8)
#define INC_DETECTOR_MAX   (2 * VIGIE_ID_MAX + 2)
#define INC_ATTR_KEY_MAX   32
#define INC_ATTR_VALUE_MAX 128
#define INC_KEY_MAX        (VIGIE_ID_MAX + INC_SUBJECT_MAX + 32)

struct inc_ref {
	char node[VIGIE_ID_MAX + 1];
	uint64_t boot_id, seq, time_us;
	int kind, state;
	char sensor[VIGIE_ID_MAX + 1];
	char zone[VIGIE_ID_MAX + 1];
};

struct inc_detector {
	char id[INC_DETECTOR_MAX + 1]; /* "node/sensor" or "node/kind" */
	uint64_t last_us;              /* its latest alarm, event time */
};

struct inc_attr {
	char key[INC_ATTR_KEY_MAX + 1];
	char value[INC_ATTR_VALUE_MAX + 1];
};

struct incident {
	struct hmap_entry by_id;
	struct hmap_entry by_key; /* while open */
	char id[VIGIE_ID_MAX + 1];
	char key[INC_KEY_MAX + 1];
	char site[VIGIE_ID_MAX + 1];
	char zone[VIGIE_ID_MAX + 1];
	char subject[INC_SUBJECT_MAX + 1]; /* troubles: what is in trouble */
	int state;                         /* Vigie__V1__IncidentState */
	int priority;                      /* Vigie__V1__Priority */
	int kind;                          /* kind of its most severe event */
	bool confirmed, trouble;
	uint64_t opened_us, first_event_us, last_event_us, confirmed_us;
	uint64_t acked_us, closed_us, updated_us, last_activity_us;
	char acked_by[VIGIE_ID_MAX + 1];
	uint32_t event_count;
	struct inc_ref *refs;
	size_t n_refs;
	struct inc_detector *detectors;
	size_t n_detectors;
	struct inc_attr *attrs;
	size_t n_attrs;
	char text[256]; /* latest event text */
	/* id allocation, persisted so ids never repeat */
	char id_prefix[VIGIE_ID_MAX + 1];
	uint64_t id_sec;
	uint32_t id_k;
	/* escalation, owned by escalation.c, kept here */
	struct esc_state esc;
	/* when the relay's tick must look at it (vigie__inc_schedule) */
	uint64_t wake_us;
	size_t wake_pos; /* 1 + its index in the engine's heap; 0: none */
	/* free for the core */
	bool dirty;
	struct incident *dirty_next;
};

struct inc_params {
	const struct relay_clock *clock;
	uint64_t window_ms, confirm_window_ms, close_after_ms;
	const int *immediate_kinds; /* go to the police at once */
	size_t n_immediate;
};

struct inc_engine {
	struct inc_params p;
	struct hmap by_id;  /* every incident in memory */
	struct hmap by_key; /* open ones by alarm zone or trouble subject */
	struct hmap prefixes;
	struct hmap reserved; /* struct inc_reservation by key */
	size_t open;
	/* Open incidents that will need the tick, earliest first (a binary
	 * min-heap on wake_us): the tick visits what is due, not every open
	 * incident (thousands during a storm, every 100 ms). */
	struct incident **wake;
	size_t n_wake, cap_wake;
};

/* An event as the incident engine sees it: a decoded Event, or a
 * supervision trouble the relay raises itself (then `subject` names it). */
struct inc_input {
	const char *site, *node, *zone, *sensor, *text;
	const char *subject; /* NULL: node or node/sensor */
	uint64_t boot_id, seq, time_us;
	int kind, state;
	const char *const *attr_keys;
	const char *const *attr_values;
	size_t n_attrs;
};

enum inc_change {
	INC_OPENED = 1 << 0,
	INC_JOINED = 1 << 1,
	INC_CONFIRMED = 1 << 2,
	INC_RESTORED = 1 << 3, /* a trouble's restore arrived */
	INC_CLOSED = 1 << 4,
	INC_PRIORITY = 1 << 5, /* priority raised */
	INC_ACKED = 1 << 6,
};

struct inc_result {
	struct incident *inc; /* NULL: the event concerns no incident */
	unsigned changes;
	bool immediate; /* this event goes to the police at once */
	/* An acked alarm incident that aged out when this event came: it was
	 * closed (changes INC_CLOSED on it) before a new one opened. */
	struct incident *closed;
};

void vigie__inc_init(struct inc_engine *e, const struct inc_params *p);
/* vigie__inc_free: every incident in memory. */
void vigie__inc_free(struct inc_engine *e);

/* vigie__inc_event: apply an event. Returns 0 (res says what changed) or
 * VIGIE_ENOMEM (nothing changed). */
int vigie__inc_event(struct inc_engine *e, const struct inc_input *in,
		     struct inc_result *res);

/* vigie__inc_ack: a human acknowledged. Returns INC_ACKED, or 0 when it was
 * acked or closed already. */
unsigned vigie__inc_ack(struct inc_engine *e, struct incident *inc,
			const char *by);

/* vigie__inc_rearm: acked, then confirmed: escalating again. */
void vigie__inc_rearm(struct inc_engine *e, struct incident *inc);

/* vigie__inc_schedule: (re)compute when `inc` next needs the tick: the
 * earliest of its escalation's next due time and, for an acknowledged
 * alarm incident, the time it closes if it stays quiet. Call after every
 * change of an incident or its escalation. Returns 0 or VIGIE_ENOMEM (then
 * it is not scheduled: logged by the caller). */
int vigie__inc_schedule(struct inc_engine *e, struct incident *inc);

/* vigie__inc_next_due: the earliest incident due at or before `now_us`,
 * taken off the schedule (vigie__inc_schedule puts it back); NULL when
 * none is due. */
struct incident *vigie__inc_next_due(struct inc_engine *e, uint64_t now_us);

/* vigie__inc_close_if_quiet: close an acknowledged alarm incident quiet
 * for close_after. Returns true if it closed it. */
bool vigie__inc_close_if_quiet(struct inc_engine *e, struct incident *inc);

/* vigie__inc_find: by id (open, or closed and not forgotten yet). */
struct incident *vigie__inc_find(const struct inc_engine *e, const char *id);

/* vigie__inc_forget: drop a closed incident from memory. */
void vigie__inc_forget(struct inc_engine *e, struct incident *inc);

/* vigie__inc_adopt: take an incident restored from the database (fields
 * set, key built by vigie__inc_rekey). Returns 0 or VIGIE_ENOMEM/EINVAL. */
int vigie__inc_adopt(struct inc_engine *e, struct incident *inc);
void vigie__inc_rekey(struct incident *inc);

/* vigie__inc_note_id: an id used earlier (from the database), so that
 * allocation never repeats it. */
int vigie__inc_note_id(struct inc_engine *e, const char *prefix, uint64_t sec,
		       uint32_t k);

/* vigie__inc_reserve: an id given out (published) before its incident
 * reached the database, read back after a crash from the relay's intent
 * log. The same alarm, sent again by its node, opens its incident under
 * this id: an incident of `key` opened with an event time within the
 * incident window of `first_event_us` takes it, once; whichever of the
 * incident's events comes back first. The prefix's counter moves past it,
 * so no other incident gets it. Returns 0 or VIGIE_ENOMEM/EINVAL. */
int vigie__inc_reserve(struct inc_engine *e, const char *key, const char *id,
		       const char *prefix, uint64_t sec, uint32_t k,
		       uint64_t first_event_us);
/* vigie__inc_reserved: reservations not taken yet. */
size_t vigie__inc_reserved(const struct inc_engine *e);
/* vigie__inc_drop_reserved: forget those whose window has passed at
 * `now_us` (their alarm never came back). Returns how many. */
size_t vigie__inc_drop_reserved(struct inc_engine *e, uint64_t now_us);

/* vigie__inc_new: an empty incident (for restoring); free with
 * vigie__inc_destroy when not adopted. */
struct incident *vigie__inc_new(void);
void vigie__inc_destroy(struct incident *inc);

/* Classification, exposed for tests and messages. */
int vigie__inc_priority(int kind, int state);
bool vigie__inc_is_trouble_kind(int kind);

#endif
