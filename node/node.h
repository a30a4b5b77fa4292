/* vigie-node internals: the node core, its configuration, the event line
 * format and the scenario player. Internal (vigie__ prefix): the bench and
 * tests link them, nothing outside the repository does. */
#ifndef VIGIE_NODE_NODE_H
#define VIGIE_NODE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vigie/codec.h"
#include "vigie/config.h"
#include "vigie/mqtt.h"

/* ---- configuration (node/node_config.c) ---- */

struct node_zone {
	const char *id, *name, *floor, *facade, *kind, *action_plan;
	double lat, lon;
	bool has_location;
	const char **cameras;
	size_t n_cameras;
};

struct node_sensor {
	const char *id, *name;
	int kind;
	const char **zones;
	size_t n_zones;
};

struct sia_config;
struct vigie_sign_key;

struct node_config {
	struct vigie_conf *conf; /* owns every string below */
	const char *path;
	const char *site, *node;
	const char *outbox;
	const char *socket_path; /* NULL: no socket input */
	uint64_t heartbeat_ms, reporting_ms, resend_ms, failover_ms;
	uint64_t max_pending;
	struct vigie_conf_broker primary, secondary;
	bool has_secondary;
	struct node_zone *zones;
	size_t n_zones;
	struct node_sensor *sensors;
	size_t n_sensors;
	struct sia_config *panels; /* NULL: no SIA DC-09 receiver (sia.h) */
	/* NULL: events and heartbeats go unsigned (a relay with a trust
	 * store refuses them). Loaded from `signing_key`, wiped at free. */
	struct vigie_sign_key *signing_key;
};

/* vigie__nodeconf_load: read and validate a node config. On error returns
 * VIGIE_ECONFIG and `err` holds "FILE:LINE: FIELD: reason". */
int vigie__nodeconf_load(const char *path, struct node_config *cfg, char *err,
			 size_t errlen);
void vigie__nodeconf_free(struct node_config *cfg);
const struct node_zone *vigie__nodeconf_zone(const struct node_config *cfg,
					     const char *id);
const struct node_sensor *vigie__nodeconf_sensor(const struct node_config *cfg,
						 const char *id);
/* vigie__nodeconf_covered: is some sensor watching zone `id`? */
bool vigie__nodeconf_covered(const struct node_config *cfg, const char *id);

/* ---- the event line format (node/line.c) ---- */

#define NODE_LINE_MAX       4096
#define NODE_ATTR_MAX       32
#define NODE_TEXT_MAX       512
#define NODE_ATTR_KEY_MAX   32
#define NODE_ATTR_VALUE_MAX 128

/* An event as a source describes it, before it gets its identity. */
struct node_event {
	int kind;
	int state;
	char zone[VIGIE_ID_MAX + 1];
	char sensor[VIGIE_ID_MAX + 1];
	char text[NODE_TEXT_MAX + 1];
	char code[33];
	uint64_t time_us; /* 0: now */
	size_t n_attrs;
	struct {
		char key[NODE_ATTR_KEY_MAX + 1];
		char value[NODE_ATTR_VALUE_MAX + 1];
	} attrs[NODE_ATTR_MAX];
};

/* vigie__line_parse: parse one event line (see README, "Event line
 * format"). Returns 0, or VIGIE_EINVAL / VIGIE_ETOOBIG with the reason in
 * `err`. */
int vigie__line_parse(const char *line, size_t len, struct node_event *ev,
		      char *err, size_t errlen);

/* ---- the node core (node/node.c) ---- */

struct vigie_node;

/* Called once the event is durable in the outbox (status 0) or was refused
 * (negative VIGIE_E*, `err` says why). */
typedef void (*vigie_node_submit_cb)(void *arg, int status, uint64_t boot_id,
				     uint64_t seq, const char *err);

struct vigie_node_stats {
	uint64_t accepted, durable, refused, published, resent, receipted;
	uint64_t receipts, bad_receipts, failovers;
	size_t pending;
	const char *active_path;
};

/* vigie__node_open: open the outbox and set up both paths; nothing is sent
 * before vigie__node_start. `cfg` must outlive the node. */
int vigie__node_open(uv_loop_t *loop, const struct node_config *cfg,
		     struct vigie_node **out);
int vigie__node_start(struct vigie_node *n);

/* vigie__node_submit: give the event its identity, store it, publish it.
 * Returns 0 (cb follows) or a negative code with nothing stored and cb not
 * called; `err` (may be NULL) then says why. */
int vigie__node_submit(struct vigie_node *n, const struct node_event *ev,
		       const char *source, vigie_node_submit_cb cb, void *arg,
		       char *err, size_t errlen);

void vigie__node_stats(const struct vigie_node *n, struct vigie_node_stats *st);
uint64_t vigie__node_boot_id(const struct vigie_node *n);

/* vigie__node_close: announce a clean shutdown, flush the outbox, release
 * everything, then cb(arg). */
void vigie__node_close(struct vigie_node *n, void (*cb)(void *arg), void *arg);

/* ---- local socket input (node/input.c) ---- */

struct node_input;
int vigie__input_open(uv_loop_t *loop, struct vigie_node *n, const char *path,
		      struct node_input **out);
void vigie__input_close(struct node_input *in, void (*cb)(void *arg),
			void *arg);

/* ---- scenario replay (node/scenario.c) ---- */

struct node_scenario;
/* vigie__scenario_load: parse a scenario file; errors name file and line. */
int vigie__scenario_load(const char *path, struct node_scenario **out,
			 char *err, size_t errlen);
/* Play it on the loop at `speed` times real time; `loop_count` 0 plays it
 * forever. `done` runs after the last event was durable. */
int vigie__scenario_play(struct node_scenario *s, uv_loop_t *loop,
			 struct vigie_node *n, double speed,
			 unsigned loop_count, void (*done)(void *arg),
			 void *arg);
size_t vigie__scenario_len(const struct node_scenario *s);
/* vigie__scenario_stop: submit nothing more. */
void vigie__scenario_stop(struct node_scenario *s);
/* vigie__scenario_close: free it; only after the node it played into has
 * closed (durable callbacks point at the scenario). */
void vigie__scenario_close(struct node_scenario *s);

#endif
