/* The pattern tracker inside the relay: feeds it the incident summaries,
 * keeps its state in the relay's database (pattern_state rows, in the same
 * batches as the incidents that changed it), and turns its alerts into
 * messages:
 *   - a retained PatternAlert on vigie/v1/pattern/{id}, updated as the
 *     campaign grows, active=false when it ends;
 *   - a Dispatch with `pattern` set to each police post in scope, id
 *     "<pattern>-v<version>" (incident = the pattern id, level = the
 *     version, so a post shows the newest only), re-sent until that post
 *     acknowledges it, through the escalation machinery (one level: the
 *     post; its backup while it is offline);
 *   - a SiteAlert raising the posture of every museum in scope, at each
 *     change, and one back to normal when it ends.
 * Every message leaves after the batch holding its rows committed (the
 * host's emit), like the incidents'. */
#ifndef VIGIE_RELAY_PATTERNS_RELAY_H
#define VIGIE_RELAY_PATTERNS_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "escalation.h"
#include "incident.h"
#include "message.h"
#include "relay.h"
#include "store.h"

enum patrelay_emit {
	PATRELAY_DISPATCH,
	PATRELAY_ALERT,
	PATRELAY_PATTERN,
};

struct patrelay_host {
	struct relay_store *store;
	const struct relay_config *cfg;
	const struct relay_clock *clock;
	const struct esc_posts *posts;
	/* Publish after the open batch committed; `payload` is consumed. */
	void (*emit)(void *ud, enum patrelay_emit kind, const char *topic,
		     uint8_t *payload, size_t len, bool retain);
	void *ud;
};

struct patrelay;

/* vigie__patrelay_open: NULL in *out (and 0) when the config has no
 * pattern rules. Returns 0 or VIGIE_ENOMEM. Call before the store loads
 * (its rows come through vigie__patrelay_load_row), then
 * vigie__patrelay_loaded. */
int vigie__patrelay_open(const struct patrelay_host *h, struct patrelay **out);
void vigie__patrelay_close(struct patrelay *p);
void vigie__patrelay_load_row(struct patrelay *p, const char *ns,
			      const char *key, uint64_t seq, const void *data,
			      size_t len);
/* vigie__patrelay_loaded: rebuild the windows and campaigns from the rows
 * loaded. Returns 0 or VIGIE_ENOMEM. */
int vigie__patrelay_loaded(struct patrelay *p);

/* An incident changed (opened, joined, confirmed, acknowledged, closed);
 * `zone` (may be NULL) adds the zone's facade, floor and kind. */
void vigie__patrelay_incident(struct patrelay *p, const struct incident *inc,
			      const struct zone_info *zone);
/* Re-sends and redirects of pattern dispatches that are due. */
void vigie__patrelay_tick(struct patrelay *p);
/* An Ack on vigie/v1/post/{post}/ack: true when it was for a pattern
 * dispatch (handled here), false when it is the incidents' business. */
bool vigie__patrelay_ack(struct patrelay *p, const char *post,
			 const Vigie__V1__Ack *ack);
/* After a (re)connection: retained alerts again, unacked dispatches
 * re-sent. */
void vigie__patrelay_connected(struct patrelay *p);
/* The highest posture active campaigns give `site` (POSTURE_UNSPECIFIED
 * when none). */
int vigie__patrelay_posture(struct patrelay *p, const char *site);
void vigie__patrelay_log_stats(const struct patrelay *p);

/* ---- `vigie-relay patterns` (read-only, like audit) ---- */

/* vigie__patterns_print: the active pattern alerts in the database at
 * `path`, each explained, with its dispatches. Returns 0 or VIGIE_EIO. */
int vigie__patterns_print(const char *path, FILE *out);

#endif
