/* Supervision: is every node, site bridge and police post still there?
 * A pure state machine on an injected monotonic clock; it reports each
 * change (lost / back) through a callback and does nothing else.
 *
 * - A node is lost when no heartbeat came for its reporting time (the
 *   config's override, else what it advertises, else the default), or at
 *   once when its state says OFFLINE (LWT or shutdown). After an OFFLINE
 *   only a live birth or a heartbeat of a newer boot brings it back (a
 *   heartbeat of the dead boot still in flight must not); after mere
 *   silence any heartbeat does.
 * - While a site's bridge is down its nodes are not judged (the bridge's
 *   own trouble says it all); when it comes back they get a fresh
 *   reporting time.
 * - A retained birth proves nothing about now (DESIGN.md: liveness comes
 *   from heartbeats and bridge state): it only makes the node known.
 * - Posts and bridges are lost and back exactly when their state says. */
#ifndef VIGIE_RELAY_SUPERVISE_H
#define VIGIE_RELAY_SUPERVISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hmap.h"
#include "relay.h"

enum sup_what { SUP_NODE, SUP_BRIDGE, SUP_POST };

struct sup_change {
	enum sup_what what;
	const char *site;   /* node, bridge; NULL for a post */
	const char *id;     /* node or post id; NULL for a bridge */
	bool lost;          /* false: back */
	const char *reason; /* "silence", "lwt", "shutdown", "bridge" ... */
	uint64_t silent_ms; /* node lost by silence: how long */
};

typedef void (*sup_change_cb)(void *ud, const struct sup_change *c);

struct sup_node {
	struct hmap_entry he;
	char key[2 * VIGIE_ID_MAX + 2];
	char site[VIGIE_ID_MAX + 1];
	char node[VIGIE_ID_MAX + 1];
	uint64_t advertised_ms; /* reporting time it announces, 0 unknown */
	uint64_t reporting_ms;  /* effective */
	uint64_t last_seen_ms;  /* monotonic: last sign of life or start */
	uint64_t last_hb_us;    /* wall: last heartbeat */
	uint64_t boot_id;
	uint64_t offline_boot; /* boot that went OFFLINE, 0 if none */
	uint32_t outbox_pending;
	char path[16];
	bool lost;
	struct sup_node *site_next; /* the site's nodes */
	/* Free for the core: what its birth said, what was persisted. */
	char **uncovered;
	size_t n_uncovered;
	uint64_t persisted_ms;
	bool persisted;
};

struct sup_site {
	struct hmap_entry he;
	char id[VIGIE_ID_MAX + 1];
	bool bridge_known;
	bool bridge_up;
	bool bridge_lost; /* trouble raised */
	struct sup_node *nodes;
	size_t n_nodes;
};

struct sup_post {
	struct hmap_entry he;
	char id[VIGIE_ID_MAX + 1];
	int status; /* Vigie__V1__PostStatus, UNSPECIFIED = not heard of */
	bool lost;
};

struct supervisor {
	const struct relay_clock *clock;
	const struct relay_config
		*cfg; /* reporting-time overrides; may be NULL */
	uint64_t default_reporting_ms;
	sup_change_cb cb;
	void *ud;
	struct hmap nodes, sites, posts;
	size_t max_nodes;
	bool blind; /* the relay hears nothing (no broker): judge no one */
};

void vigie__sup_init(struct supervisor *s, const struct relay_clock *clock,
		     const struct relay_config *cfg,
		     uint64_t default_reporting_ms, sup_change_cb cb, void *ud);
void vigie__sup_free(struct supervisor *s);

/* vigie__sup_watch: supervise a node from now on (config, database).
 * Returns the node or NULL (out of memory, invalid ids, too many). */
struct sup_node *vigie__sup_watch(struct supervisor *s, const char *site,
				  const char *node);
struct sup_node *vigie__sup_find(const struct supervisor *s, const char *site,
				 const char *node);
struct sup_site *vigie__sup_site(struct supervisor *s, const char *site,
				 bool create);

/* A heartbeat arrived. */
void vigie__sup_heartbeat(struct supervisor *s, const char *site,
			  const char *node, uint64_t boot_id,
			  uint64_t advertised_ms, uint64_t hb_time_us,
			  uint32_t outbox_pending, const char *path);

/* A node state (birth or death). `retained`: delivered from the broker's
 * store at subscribe time, not live. */
void vigie__sup_node_state(struct supervisor *s, const char *site,
			   const char *node, uint64_t boot_id, bool online,
			   const char *reason, uint64_t advertised_ms,
			   bool retained);

void vigie__sup_bridge(struct supervisor *s, const char *site, bool up);
void vigie__sup_post(struct supervisor *s, const char *post, bool online);

/* vigie__sup_blind: the relay lost (true) or regained (false) its every
 * broker connection. Silence heard while blind is the relay's, not the
 * nodes': nobody is judged, and on regaining every node gets a fresh
 * reporting time, as a site's nodes do when its bridge comes back. */
void vigie__sup_blind(struct supervisor *s, bool blind);

/* vigie__sup_tick: judge silence now. */
void vigie__sup_tick(struct supervisor *s);

/* Restore after a restart: a trouble is open for it in the database, so
 * its return must be reported. */
void vigie__sup_mark_lost(struct supervisor *s, enum sup_what what,
			  const char *site, const char *id);

bool vigie__sup_post_online(const struct supervisor *s, const char *post);
/* 1 up, 0 down, -1 never heard of. */
int vigie__sup_bridge_state(const struct supervisor *s, const char *site);

#endif
