/* Several central brokers (a primary and a `standby:`): which of their
 * reports about posts, site bridges and nodes to believe. A pure state
 * machine (no clock of its own, no I/O), used only when the relay holds
 * more than one central connection; with one, reports go straight to the
 * supervisor as before.
 *
 * Each broker tells what it saw of a post, bridge or node: a post's
 * retained state and will, a bridge's notification, a node's LWT. A broker
 * that hung and resumes tells old news: the will of a connection that died
 * while it was frozen (the post had moved on to the other broker long
 * before), a bridge that left it. So:
 *
 * - posts and bridges: each broker's latest report is kept; a post is
 *   online (a bridge up) when any connected broker's latest report says so,
 *   else offline (down) when one says so. Both are reachable through any
 *   broker: the relay publishes dispatches on every one, a bridge on any
 *   one carries the site. A disconnected broker's reports are forgotten
 *   (it re-sends its retained state when we are back); forgetting changes
 *   nothing by itself, as with a single broker.
 * - nodes: an OFFLINE (LWT) from broker b is set aside when the node's last
 *   sign of life (heartbeat, live birth) came through another connected
 *   broker within its reporting time: b's connection to it is gone, not the
 *   node. A node that is really dead stops heartbeating everywhere, so the
 *   LWT of the broker it last used is believed, or silence catches it. */
#ifndef VIGIE_RELAY_ARBITER_H
#define VIGIE_RELAY_ARBITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hmap.h"
#include "vigie/codec.h"

#define ARB_MAX_BROKERS 2

enum arb_view { ARB_UNKNOWN = 0, ARB_UP, ARB_DOWN };

struct arbiter {
	size_t n_brokers;
	bool connected[ARB_MAX_BROKERS];
	struct hmap posts, bridges, nodes;
	size_t max_entries; /* cap on each map: ids come from outside */
};

void vigie__arb_init(struct arbiter *a, size_t n_brokers, size_t max_entries);
void vigie__arb_free(struct arbiter *a);

/* Broker `b` connected or went away; on going away its reports are
 * forgotten. */
void vigie__arb_connected(struct arbiter *a, unsigned b, bool up);

/* A post state (`up`: ONLINE) or a bridge notification ("1") from broker
 * `b`. Returns the state to give the supervisor: ARB_UP or ARB_DOWN. */
enum arb_view vigie__arb_post(struct arbiter *a, unsigned b, const char *post,
			      bool up);
enum arb_view vigie__arb_bridge(struct arbiter *a, unsigned b, const char *site,
				bool up);

/* A sign of life of site/node through broker `b` at monotonic `now_ms`. */
void vigie__arb_node_alive(struct arbiter *a, unsigned b, const char *site,
			   const char *node, uint64_t now_ms);

/* An OFFLINE node state through broker `b`: true when it is to be believed,
 * false when the node was heard through another connected broker less
 * than `reporting_ms` ago (*via gets that broker). */
bool vigie__arb_node_offline(struct arbiter *a, unsigned b, const char *site,
			     const char *node, uint64_t now_ms,
			     uint64_t reporting_ms, unsigned *via);

#endif
