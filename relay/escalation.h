/* The escalation ladder of one incident, as a pure state machine: no I/O,
 * time from an injected clock, post liveness from an injected oracle. The
 * core turns the actions it returns into stored rows, audit lines and
 * messages.
 *
 * Rules:
 * - an incident starts at level 0, or at the police level at once
 *   (confirmed intrusion, duress, display case: `immediate`); starting at
 *   the police level also tells site security (level 0) when that is an
 *   alert level;
 * - each level has an ack deadline; unacked at the deadline, the next level
 *   is notified; the last level stays, its dispatch re-sent until acked;
 * - every dispatch sent and not acked is re-sent with the same id (the id
 *   derives from incident and level), the interval doubling from resend_ms
 *   up to resend_max_ms; site alerts are published once;
 * - a dispatch whose post is offline goes to the post's backup (same id);
 * - an ack stops everything; a later confirmation (`police`) re-arms the
 *   ladder at the police level if that level was not notified yet. */
#ifndef VIGIE_RELAY_ESCALATION_H
#define VIGIE_RELAY_ESCALATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay.h"

struct esc_dispatch {
	bool sent;
	bool alert;                        /* a SiteAlert, not a Dispatch */
	char post[VIGIE_ID_MAX + 1];       /* where it goes now */
	char backup_for[VIGIE_ID_MAX + 1]; /* original post when redirected */
	uint32_t attempts;
	uint64_t first_us, last_us, next_us;
};

struct esc_state {
	bool active; /* escalating or re-sending */
	bool acked;
	uint32_t level; /* highest level notified */
	uint64_t level_since_us;
	uint64_t deadline_us; /* ack deadline of `level`; 0 at the top */
	struct esc_dispatch d[RELAY_MAX_LEVELS];
};

/* Liveness of posts, as the supervisor knows it. */
struct esc_posts {
	/* true unless the post is known to be offline (unknown = online: its
	 * retained state or LWT tells otherwise soon after start). */
	bool (*online)(void *ud, const char *post);
	/* the configured backup of `post`, or NULL */
	const char *(*backup)(void *ud, const char *post);
	void *ud;
};

struct esc_params {
	const struct relay_ladder *ladder;
	const struct esc_posts *posts;
	const struct relay_clock *clock;
	uint64_t resend_ms, resend_max_ms;
};

enum esc_action_type {
	ESC_NOTIFY,   /* first publication of a level (alert or dispatch) */
	ESC_RESEND,   /* a dispatch again, same id, attempt > 1 */
	ESC_REDIRECT, /* a dispatch to the backup of an offline post */
	ESC_ESCALATE, /* level raised (deadline passed or immediate) */
};

struct esc_action {
	enum esc_action_type type;
	uint32_t level;
	uint32_t from_level; /* ESC_ESCALATE */
	bool deadline;       /* ESC_ESCALATE: because the deadline passed */
	bool alert;
	const char *post;      /* points into the state */
	const char *from_post; /* ESC_REDIRECT */
	uint32_t attempt;
};

#define ESC_MAX_ACTIONS (3 * RELAY_MAX_LEVELS + 2)

struct esc_actions {
	struct esc_action a[ESC_MAX_ACTIONS];
	size_t n;
};

/* vigie__esc_start: begin escalating (level 0, or the police level when
 * `immediate`). */
void vigie__esc_start(struct esc_state *s, const struct esc_params *p,
		      bool immediate, struct esc_actions *out);

/* vigie__esc_police: the incident became urgent (confirmed): go to the
 * police level now unless it was notified already. Re-arms an acked
 * incident in that case. */
void vigie__esc_police(struct esc_state *s, const struct esc_params *p,
		       struct esc_actions *out);

/* vigie__esc_tick: deadlines, re-sends and redirects due now. */
void vigie__esc_tick(struct esc_state *s, const struct esc_params *p,
		     struct esc_actions *out);

/* vigie__esc_resend_all: re-send every unacked dispatch now (after a
 * reconnect, when what was in flight may be lost). */
void vigie__esc_resend_all(struct esc_state *s, const struct esc_params *p,
			   struct esc_actions *out);

/* vigie__esc_ack: a human acknowledged; stop. Returns false if it was
 * acked already. */
bool vigie__esc_ack(struct esc_state *s);

/* vigie__esc_stop: the incident closed (a trouble restored). */
void vigie__esc_stop(struct esc_state *s);

/* vigie__esc_next_due: the earliest time something is due, 0 if none. */
uint64_t vigie__esc_next_due(const struct esc_state *s);

/* vigie__esc_dispatch_id: "<incident>-l<level>" into buf. */
void vigie__esc_dispatch_id(char *buf, size_t len, const char *incident,
			    uint32_t level);

/* vigie__esc_level_of: the level a dispatch id names for `incident`, or -1. */
int vigie__esc_level_of(const char *dispatch_id, const char *incident);

#endif
