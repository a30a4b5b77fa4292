/* vigie-relay internals: configuration, the injected clock and the relay
 * core. Internal (vigie__ prefix): the tests and the bench link them through
 * the static library vigierelay, nothing outside the repository does.
 *
 * The relay is split by concern:
 *   relay_config.c  YAML configuration (file:line:field errors)
 *   streams.c       which (site, node, boot_id, seq) were seen: dedupe and
 *                   the highest contiguous seq of each boot, for receipts
 *   store.c         SQLite (WAL): events, incidents, escalations,
 *                   dispatches, acks, append-only audit; group commit on the
 *                   thread pool, effects released only after their commit
 *   incident.c      incident state machine (pure, injected clock)
 *   escalation.c    escalation ladder state machine (pure, injected clock)
 *   supervise.c     node, bridge and post liveness (pure, injected clock)
 *   relay.c         the core: MQTT in and out, wiring of the above
 *   message.c       building outgoing messages (Dispatch, Incident ...)
 *   audit.c         `vigie-relay audit` and `incidents` (read-only)
 *   patterns*.c     the pattern tracker: campaigns across museums
 *                   (patterns.h the engine, patterns_relay.h its wiring)
 */
#ifndef VIGIE_RELAY_RELAY_H
#define VIGIE_RELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "vigie/codec.h"
#include "vigie/config.h"
#include "vigie/mqtt.h"

struct vigie_trust;
struct pat_rules;

/* ---- the clock, injected so the state machines run on a fake one ---- */

struct relay_clock {
	/* Wall clock, Unix µs: stamps and durable deadlines. */
	uint64_t (*now_us)(const struct relay_clock *c);
	/* Monotonic ms: liveness timeouts (a clock step must not fire them). */
	uint64_t (*mono_ms)(const struct relay_clock *c);
	void *ud;
};

/* vigie__clock_real: the system clocks. */
const struct relay_clock *vigie__clock_real(void);

/* ---- configuration (relay/relay_config.c) ---- */

#define RELAY_MAX_LEVELS 8

struct relay_zone {
	const char *id, *name, *floor, *facade, *kind, *action_plan;
	double lat, lon;
	bool has_location;
	const char **cameras;
	size_t n_cameras;
};

struct relay_node_conf {
	const char *id;
	uint64_t reporting_ms; /* 0: the node's advertised one */
};

struct relay_level {
	const char *name;
	bool alert; /* site security: SiteAlert on vigie/v1/relay/{site}/alert
		     */
	const char *post; /* otherwise: a Dispatch to this post */
	uint64_t ack_deadline_ms;
	const char **instructions;
	size_t n_instructions;
};

struct relay_ladder {
	struct relay_level levels[RELAY_MAX_LEVELS];
	size_t n;
	/* Index of the police level (immediate dispatches go there): the level
	 * flagged `police: true`, else the last level with a post; n if none.
	 */
	size_t police;
};

struct relay_post {
	const char *id, *name;
	const char *backup; /* post that takes over while this one is offline */
};

struct relay_site {
	const char *id, *name, *region, *address;
	double lat, lon;
	bool has_location;
	struct relay_zone *zones;
	size_t n_zones;
	struct relay_node_conf *nodes;
	size_t n_nodes;
	const struct relay_ladder *ladder; /* own or the default one */
	struct relay_ladder own_ladder;
};

struct relay_broker {
	struct vigie_conf_broker conn; /* host, port, credentials, TLS */
	const char *client_id;
	uint64_t session_expiry_s;
};

struct relay_config {
	struct vigie_conf *conf; /* owns every string below */
	const char *path;
	const char *id;
	const char *database;
	bool sync_full;
	struct relay_broker broker;
	/* `standby:`, a second central broker held at the same time (issue
	 * #8): subscribed alike, every output published on both. */
	struct relay_broker standby;
	bool has_standby;
	char client_id_buf[VIGIE_ID_MAX + 16];

	uint64_t reporting_ms; /* default node reporting time */
	uint64_t
		incident_window_ms; /* an alarm joins an incident this recent */
	uint64_t confirm_window_ms; /* second detector within this: confirmed */
	uint64_t close_after_ms;    /* acked and quiet this long: closed */
	uint64_t retain_closed_ms;  /* closed: retained state kept (0: ever) */
	uint64_t resend_ms;         /* unacked dispatch re-sent after this... */
	uint64_t resend_max_ms;     /* ...doubling up to this */
	uint64_t status_interval_ms; /* SiteStatus at most this often */
	uint64_t max_backlog;        /* uncommitted events before shedding */
	int immediate_kinds[16];     /* kinds that go to the police at once */
	size_t n_immediate;

	struct relay_post *posts;
	size_t n_posts;
	struct relay_ladder ladder; /* default ladder */
	struct relay_site *sites;
	size_t n_sites;
	/* `serve:` (issue #8, static partition). false (`all`, the default):
	 * every site heard is served, `sites:` only adds details. true
	 * (`listed`): only the sites of `sites:` - subscribed per site, the
	 * bridges and any traffic of other sites ignored (counted), so that
	 * relays on one broker split the sites between them. */
	bool serve_listed;
	/* `supervise_posts:` open the "police post offline" trouble (default
	 * true). false: post states are still followed (dispatches fail over
	 * to the backup) but the trouble is left to the one relay of a
	 * partition that supervises the shared posts. */
	bool supervise_posts;
	bool supervise_posts_set; /* given in the file */

	/* Signed events (relay/verify.c). No trust store: everything is
	 * accepted unsigned, as before signing existed (said at start). */
	const char *trust;               /* file or directory; NULL: none */
	struct vigie_trust *trust_store; /* loaded with the config */
	bool require_signatures;         /* unsigned refused (default with
					    a trust store) */
	uint64_t replay_window_ms;       /* an unknown older boot is accepted
					    only this recent */

	/* Pattern tracker (relay/patterns*.c): `patterns: {rules: FILE}`,
	 * loaded and checked with the config; NULL: no tracker. */
	const char *pattern_rules_path;
	struct pat_rules *pattern_rules;
};

/* vigie__relayconf_load: read and validate a relay config. On error returns
 * VIGIE_ECONFIG (or VIGIE_ENOMEM) and `err` holds "FILE:LINE: FIELD:
 * reason". */
int vigie__relayconf_load(const char *path, struct relay_config *cfg, char *err,
			  size_t errlen);
void vigie__relayconf_free(struct relay_config *cfg);
const struct relay_site *vigie__relayconf_site(const struct relay_config *cfg,
					       const char *id);
const struct relay_zone *vigie__relayconf_zone(const struct relay_site *s,
					       const char *id);
const struct relay_post *vigie__relayconf_post(const struct relay_config *cfg,
					       const char *id);
/* The ladder for `site` (the default one for an unconfigured site). */
const struct relay_ladder *
vigie__relayconf_ladder(const struct relay_config *cfg, const char *site);
/* Reporting time of a node: the config's override, else `advertised`,
 * else the default. */
uint64_t vigie__relayconf_reporting(const struct relay_config *cfg,
				    const char *site, const char *node,
				    uint64_t advertised_ms);
bool vigie__relayconf_immediate(const struct relay_config *cfg, int kind);
/* Does this relay serve `site`? Always with `serve: all`; with `serve:
 * listed` only a site of `sites:`. */
bool vigie__relayconf_serves(const struct relay_config *cfg, const char *site);

/* ---- the relay core (relay/relay.c) ---- */

struct vigie_relay;

struct vigie_relay_stats {
	uint64_t messages;    /* MQTT messages received */
	uint64_t events;      /* events decoded and valid */
	uint64_t stored;      /* new events committed */
	uint64_t duplicates;  /* repeats recognised */
	uint64_t receipts;    /* receipts published */
	uint64_t rejected;    /* all rejections below */
	uint64_t bad_payload; /* does not decode, wrong type, invalid */
	uint64_t mismatch;    /* topic names another site/node */
	uint64_t unknown_topic;
	uint64_t not_served; /* `serve: listed`: another relay's site */
	uint64_t shed;       /* dropped unreceipted under backlog */
	uint64_t forged;     /* security: bad or unknown key, wrong owner */
	uint64_t replayed;   /* security: replays and stale heartbeats */
	uint64_t unsigned_accepted;
	uint64_t security_incidents;
	uint64_t heartbeats;
	uint64_t acks;
	uint64_t dispatches; /* dispatch publications, re-sends included */
	uint64_t alerts;
	uint64_t incidents_opened;
	uint64_t commits;
	uint64_t commit_failures;
	size_t open_incidents;
	size_t backlog;
};

/* vigie__relay_open: open the database, load the durable state (open
 * incidents, escalations, dispatches, streams, known nodes) and set up the
 * MQTT client; nothing is sent before vigie__relay_start. `cfg` and `clock`
 * must outlive the relay. Returns 0 or VIGIE_E*. */
int vigie__relay_open(uv_loop_t *loop, const struct relay_config *cfg,
		      const struct relay_clock *clock,
		      struct vigie_relay **out);
int vigie__relay_start(struct vigie_relay *r);
void vigie__relay_stats(const struct vigie_relay *r,
			struct vigie_relay_stats *st);
/* vigie__relay_close: commit what is queued, disconnect, release
 * everything, then cb(arg). */
void vigie__relay_close(struct vigie_relay *r, void (*cb)(void *arg),
			void *arg);

/* ---- read-only commands (relay/audit.c) ---- */

/* vigie__audit_print: an incident's history from the database at `path`
 * (the relay may be running). Returns 0, VIGIE_ENOTFOUND or VIGIE_EIO. */
int vigie__audit_print(const char *path, const char *incident, FILE *out);
/* vigie__relay_backup: a checked, online copy of the database at `path` to
 * `out` (never overwritten), one line on `report`. Returns 0, VIGIE_EINVAL
 * (out exists, not a relay database) or VIGIE_EIO; errors on stderr. */
int vigie__relay_backup(const char *path, const char *out, FILE *report);
/* vigie__incidents_print: incidents, open ones only unless `all`. */
int vigie__incidents_print(const char *path, bool all, FILE *out);

#endif
