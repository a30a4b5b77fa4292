/* vigie-relay's YAML configuration: see examples/relay.yaml for every key. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patterns.h"
#include "relay.h"
#include "vigie/error.h"
#include "vigie/sign.h"

static const char *const top_keys[] = {"id",
				       "database",
				       "synchronous",
				       "broker",
				       "standby",
				       "reporting_time",
				       "incident_window",
				       "confirmation_window",
				       "close_after",
				       "retain_closed",
				       "dispatch_resend",
				       "dispatch_resend_max",
				       "status_interval",
				       "max_backlog",
				       "immediate",
				       "posts",
				       "escalation",
				       "sites",
				       "serve",
				       "supervise_posts",
				       "trust",
				       "require_signatures",
				       "replay_window",
				       "patterns",
				       NULL};
static const char *const post_keys[] = {"id", "name", "backup", NULL};
static const char *const level_keys[] = {
	"name",   "alert",        "post", "ack_deadline",
	"police", "instructions", NULL};
static const char *const site_keys[] = {"id",      "name",       "region",
					"address", "location",   "zones",
					"nodes",   "escalation", NULL};
static const char *const zone_keys[] = {"id",      "name",        "floor",
					"facade",  "kind",        "location",
					"cameras", "action_plan", NULL};
static const char *const node_keys[] = {"id", "reporting_time", NULL};
static const char *const location_keys[] = {"lat", "lon", NULL};

static int load_location(struct vigie_conf *c,
			 const struct vigie_conf_node *map, double *lat,
			 double *lon, bool *has)
{
	const struct vigie_conf_node *loc = NULL;
	int rc;

	rc = vigie_conf_section(c, map, "location", false, VIGIE_CONF_OPTIONAL,
				&loc);
	if (rc || !loc)
		return rc;
	rc = vigie_conf_expect_map(c, loc, location_keys);
	rc |= vigie_conf_double(c, loc, "lat", -90, 90, VIGIE_CONF_REQUIRED,
				lat);
	rc |= vigie_conf_double(c, loc, "lon", -180, 180, VIGIE_CONF_REQUIRED,
				lon);
	if (rc)
		return VIGIE_ECONFIG;
	*has = true;
	return 0;
}

/* The connection is read like every Vigie config's (vigie_conf_broker);
 * the relay adds its session: a fixed client id and the MQTT 5 session
 * expiry. */
static int load_broker(struct vigie_conf *c, const struct vigie_conf_node *map,
		       struct relay_broker *b)
{
	static const char *const session_keys[] = {"client_id",
						   "session_expiry", NULL};
	uint64_t expiry_ms = 86400000;
	int rc;

	rc = vigie_conf_broker(c, map, 0, session_keys, &b->conn);
	rc |= vigie_conf_str(c, map, "client_id", VIGIE_CONF_OPTIONAL,
			     &b->client_id);
	/* MQTT 5 session expiry: without it the broker drops the session (and
	 * what queued for us) at disconnect. At most 2^32-2 s. */
	rc |= vigie_conf_duration(c, map, "session_expiry", 60000,
				  4294967294ull * 1000, VIGIE_CONF_OPTIONAL,
				  &expiry_ms);
	if (rc)
		return VIGIE_ECONFIG;
	b->session_expiry_s = expiry_ms / 1000;
	if (b->client_id && (strlen(b->client_id) > 64 || !*b->client_id))
		return vigie_conf_fail(c, vigie_conf_get(map, "client_id"),
				       "expected 1 to 64 characters");
	return 0;
}

/* `standby:` the second central broker, spelt like `broker:`. The same
 * broker twice would store nothing twice (events are deduplicated) but
 * would send every dispatch twice on one broker for no gain: refused. */
static int load_standby(struct vigie_conf *c, const struct vigie_conf_node *map,
			struct relay_config *cfg)
{
	const struct relay_broker *p = &cfg->broker;
	struct relay_broker *s = &cfg->standby;

	if (load_broker(c, map, s) ||
	    vigie_conf_standby_distinct(c, map, &p->conn, &s->conn))
		return VIGIE_ECONFIG;
	cfg->has_standby = true;
	return 0;
}

static int load_zone(struct vigie_conf *c, const struct vigie_conf_node *map,
		     struct relay_zone *z)
{
	int rc = 0;

	rc |= vigie_conf_expect_map(c, map, zone_keys);
	rc |= vigie_conf_id(c, map, "id", VIGIE_CONF_REQUIRED, &z->id);
	rc |= vigie_conf_str(c, map, "name", VIGIE_CONF_OPTIONAL, &z->name);
	rc |= vigie_conf_str(c, map, "floor", VIGIE_CONF_OPTIONAL, &z->floor);
	rc |= vigie_conf_str(c, map, "facade", VIGIE_CONF_OPTIONAL, &z->facade);
	rc |= vigie_conf_str(c, map, "kind", VIGIE_CONF_OPTIONAL, &z->kind);
	rc |= vigie_conf_str(c, map, "action_plan", VIGIE_CONF_OPTIONAL,
			     &z->action_plan);
	rc |= vigie_conf_str_list(c, map, "cameras", VIGIE_CONF_OPTIONAL,
				  &z->cameras, &z->n_cameras);
	if (rc)
		return VIGIE_ECONFIG;
	return load_location(c, map, &z->lat, &z->lon, &z->has_location);
}

static int load_node(struct vigie_conf *c, const struct vigie_conf_node *map,
		     struct relay_node_conf *n)
{
	int rc = 0;

	rc |= vigie_conf_expect_map(c, map, node_keys);
	rc |= vigie_conf_id(c, map, "id", VIGIE_CONF_REQUIRED, &n->id);
	rc |= vigie_conf_duration(c, map, "reporting_time", 200, 7200000,
				  VIGIE_CONF_OPTIONAL, &n->reporting_ms);
	return rc ? VIGIE_ECONFIG : 0;
}

static int load_ladder(struct vigie_conf *c, const struct vigie_conf_node *seq,
		       struct relay_config *cfg, struct relay_ladder *l)
{
	size_t n = vigie_conf_seq_len(seq);
	size_t flagged = RELAY_MAX_LEVELS;

	if (n == 0)
		return vigie_conf_fail(c, seq, "needs at least one level");
	if (n > RELAY_MAX_LEVELS)
		return vigie_conf_fail(c, seq, "at most %d levels",
				       RELAY_MAX_LEVELS);
	memset(l, 0, sizeof(*l));
	for (size_t i = 0; i < n; i++) {
		const struct vigie_conf_node *map = vigie_conf_seq_at(seq, i);
		struct relay_level *lv = &l->levels[i];
		bool police = false;
		int rc = 0;

		rc |= vigie_conf_expect_map(c, map, level_keys);
		rc |= vigie_conf_id(c, map, "name", VIGIE_CONF_REQUIRED,
				    &lv->name);
		rc |= vigie_conf_bool(c, map, "alert", VIGIE_CONF_OPTIONAL,
				      &lv->alert);
		rc |= vigie_conf_id(c, map, "post", VIGIE_CONF_OPTIONAL,
				    &lv->post);
		rc |= vigie_conf_duration(c, map, "ack_deadline", 1000,
					  86400000, VIGIE_CONF_REQUIRED,
					  &lv->ack_deadline_ms);
		rc |= vigie_conf_bool(c, map, "police", VIGIE_CONF_OPTIONAL,
				      &police);
		rc |= vigie_conf_str_list(
			c, map, "instructions", VIGIE_CONF_OPTIONAL,
			&lv->instructions, &lv->n_instructions);
		l->n = i + 1; /* so that free() finds the instructions */
		if (rc)
			return VIGIE_ECONFIG;
		if (lv->alert == (lv->post != NULL))
			return vigie_conf_fail(
				c, map,
				"a level has either `alert: true` (site "
				"security) or `post: ID`");
		if (lv->post && !vigie__relayconf_post(cfg, lv->post))
			return vigie_conf_fail(c, vigie_conf_get(map, "post"),
					       "post \"%s\" is not in posts",
					       lv->post);
		if (police && lv->alert)
			return vigie_conf_fail(
				c, vigie_conf_get(map, "police"),
				"the police level dispatches to a post");
		if (police && flagged != RELAY_MAX_LEVELS)
			return vigie_conf_fail(
				c, vigie_conf_get(map, "police"),
				"only one level is the police level");
		if (police)
			flagged = i;
		for (size_t j = 0; j < i; j++)
			if (strcmp(l->levels[j].name, lv->name) == 0)
				return vigie_conf_fail(
					c, vigie_conf_get(map, "name"),
					"duplicate level name \"%s\"",
					lv->name);
	}
	l->police = n;
	if (flagged != RELAY_MAX_LEVELS) {
		l->police = flagged;
	} else {
		for (size_t i = n; i-- > 0;)
			if (l->levels[i].post) {
				l->police = i;
				break;
			}
	}
	return 0;
}

static int load_site(struct vigie_conf *c, const struct vigie_conf_node *map,
		     struct relay_config *cfg, struct relay_site *s)
{
	const struct vigie_conf_node *zones = NULL, *nodes = NULL, *esc = NULL;
	int rc = 0;

	rc |= vigie_conf_expect_map(c, map, site_keys);
	rc |= vigie_conf_id(c, map, "id", VIGIE_CONF_REQUIRED, &s->id);
	rc |= vigie_conf_str(c, map, "name", VIGIE_CONF_OPTIONAL, &s->name);
	rc |= vigie_conf_str(c, map, "region", VIGIE_CONF_OPTIONAL, &s->region);
	rc |= vigie_conf_str(c, map, "address", VIGIE_CONF_OPTIONAL,
			     &s->address);
	rc |= vigie_conf_section(c, map, "zones", true, VIGIE_CONF_OPTIONAL,
				 &zones);
	rc |= vigie_conf_section(c, map, "nodes", true, VIGIE_CONF_OPTIONAL,
				 &nodes);
	rc |= vigie_conf_section(c, map, "escalation", true,
				 VIGIE_CONF_OPTIONAL, &esc);
	if (rc || load_location(c, map, &s->lat, &s->lon, &s->has_location))
		return VIGIE_ECONFIG;
	s->zones = calloc(vigie_conf_seq_len(zones) + 1, sizeof(*s->zones));
	s->nodes = calloc(vigie_conf_seq_len(nodes) + 1, sizeof(*s->nodes));
	if (!s->zones || !s->nodes)
		return vigie_conf_fail(c, map, "out of memory");
	for (size_t i = 0; i < vigie_conf_seq_len(zones); i++) {
		const struct vigie_conf_node *zn = vigie_conf_seq_at(zones, i);

		s->n_zones = i + 1;
		if (load_zone(c, zn, &s->zones[i]))
			return VIGIE_ECONFIG;
		for (size_t j = 0; j < i; j++)
			if (strcmp(s->zones[j].id, s->zones[i].id) == 0)
				return vigie_conf_fail(
					c, zn, "duplicate zone id \"%s\"",
					s->zones[i].id);
	}
	for (size_t i = 0; i < vigie_conf_seq_len(nodes); i++) {
		const struct vigie_conf_node *nn = vigie_conf_seq_at(nodes, i);

		s->n_nodes = i + 1;
		if (load_node(c, nn, &s->nodes[i]))
			return VIGIE_ECONFIG;
		for (size_t j = 0; j < i; j++)
			if (strcmp(s->nodes[j].id, s->nodes[i].id) == 0)
				return vigie_conf_fail(
					c, nn, "duplicate node id \"%s\"",
					s->nodes[i].id);
	}
	s->ladder = &cfg->ladder;
	if (esc) {
		if (load_ladder(c, esc, cfg, &s->own_ladder))
			return VIGIE_ECONFIG;
		s->ladder = &s->own_ladder;
	}
	return 0;
}

static int load_posts(struct vigie_conf *c, const struct vigie_conf_node *seq,
		      struct relay_config *cfg)
{
	size_t n = vigie_conf_seq_len(seq);

	cfg->posts = calloc(n + 1, sizeof(*cfg->posts));
	if (!cfg->posts)
		return vigie_conf_fail(c, seq, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct vigie_conf_node *map = vigie_conf_seq_at(seq, i);
		struct relay_post *p = &cfg->posts[i];
		int rc = 0;

		rc |= vigie_conf_expect_map(c, map, post_keys);
		rc |= vigie_conf_id(c, map, "id", VIGIE_CONF_REQUIRED, &p->id);
		rc |= vigie_conf_str(c, map, "name", VIGIE_CONF_OPTIONAL,
				     &p->name);
		rc |= vigie_conf_id(c, map, "backup", VIGIE_CONF_OPTIONAL,
				    &p->backup);
		if (rc)
			return VIGIE_ECONFIG;
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->posts[j].id, p->id) == 0)
				return vigie_conf_fail(
					c, map, "duplicate post id \"%s\"",
					p->id);
		cfg->n_posts = i + 1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct relay_post *p = &cfg->posts[i];
		const struct vigie_conf_node *at =
			vigie_conf_get(vigie_conf_seq_at(seq, i), "backup");

		if (!p->backup)
			continue;
		if (strcmp(p->backup, p->id) == 0)
			return vigie_conf_fail(c, at,
					       "a post cannot back itself up");
		if (!vigie__relayconf_post(cfg, p->backup))
			return vigie_conf_fail(c, at,
					       "post \"%s\" is not in posts",
					       p->backup);
	}
	return 0;
}

static int load_immediate(struct vigie_conf *c,
			  const struct vigie_conf_node *root,
			  struct relay_config *cfg)
{
	const char **kinds = NULL;
	size_t n = 0;
	int rc;

	if (!vigie_conf_get(root, "immediate")) {
		cfg->immediate_kinds[0] = VIGIE__V1__EVENT_KIND__KIND_DURESS;
		cfg->immediate_kinds[1] =
			VIGIE__V1__EVENT_KIND__KIND_DISPLAY_CASE;
		cfg->n_immediate = 2;
		return 0;
	}
	rc = vigie_conf_str_list(c, root, "immediate", VIGIE_CONF_OPTIONAL,
				 &kinds, &n);
	if (rc)
		return rc;
	if (n >
	    sizeof(cfg->immediate_kinds) / sizeof(cfg->immediate_kinds[0])) {
		free(kinds);
		return vigie_conf_fail(c, vigie_conf_get(root, "immediate"),
				       "at most 16 kinds");
	}
	for (size_t i = 0; i < n; i++) {
		if (vigie_kind_parse(kinds[i], &cfg->immediate_kinds[i])) {
			rc = vigie_conf_fail(
				c, vigie_conf_get(root, "immediate"),
				"unknown event kind \"%s\"", kinds[i]);
			free(kinds);
			return rc;
		}
	}
	cfg->n_immediate = n;
	free(kinds);
	return 0;
}

const struct relay_site *vigie__relayconf_site(const struct relay_config *cfg,
					       const char *id)
{
	for (size_t i = 0; id && i < cfg->n_sites; i++)
		if (strcmp(cfg->sites[i].id, id) == 0)
			return &cfg->sites[i];
	return NULL;
}

const struct relay_zone *vigie__relayconf_zone(const struct relay_site *s,
					       const char *id)
{
	for (size_t i = 0; s && id && i < s->n_zones; i++)
		if (strcmp(s->zones[i].id, id) == 0)
			return &s->zones[i];
	return NULL;
}

const struct relay_post *vigie__relayconf_post(const struct relay_config *cfg,
					       const char *id)
{
	for (size_t i = 0; id && i < cfg->n_posts; i++)
		if (strcmp(cfg->posts[i].id, id) == 0)
			return &cfg->posts[i];
	return NULL;
}

const struct relay_ladder *
vigie__relayconf_ladder(const struct relay_config *cfg, const char *site)
{
	const struct relay_site *s = vigie__relayconf_site(cfg, site);

	return s ? s->ladder : &cfg->ladder;
}

uint64_t vigie__relayconf_reporting(const struct relay_config *cfg,
				    const char *site, const char *node,
				    uint64_t advertised_ms)
{
	const struct relay_site *s = vigie__relayconf_site(cfg, site);

	for (size_t i = 0; s && i < s->n_nodes; i++)
		if (strcmp(s->nodes[i].id, node) == 0 &&
		    s->nodes[i].reporting_ms)
			return s->nodes[i].reporting_ms;
	return advertised_ms ? advertised_ms : cfg->reporting_ms;
}

bool vigie__relayconf_serves(const struct relay_config *cfg, const char *site)
{
	return !cfg->serve_listed || vigie__relayconf_site(cfg, site) != NULL;
}

bool vigie__relayconf_immediate(const struct relay_config *cfg, int kind)
{
	for (size_t i = 0; i < cfg->n_immediate; i++)
		if (cfg->immediate_kinds[i] == kind)
			return true;
	return false;
}

static int load_top(struct vigie_conf *c, const struct vigie_conf_node *root,
		    struct relay_config *cfg)
{
	const struct vigie_conf_node *broker = NULL, *posts = NULL, *esc = NULL;
	const struct vigie_conf_node *sites = NULL, *standby = NULL;
	const char *sync = NULL, *serve = NULL;
	int rc = 0;

	rc |= vigie_conf_expect_map(c, root, top_keys);
	rc |= vigie_conf_id(c, root, "id", VIGIE_CONF_REQUIRED, &cfg->id);
	rc |= vigie_conf_str(c, root, "database", VIGIE_CONF_REQUIRED,
			     &cfg->database);
	rc |= vigie_conf_str(c, root, "synchronous", VIGIE_CONF_OPTIONAL,
			     &sync);
	rc |= vigie_conf_duration(c, root, "reporting_time", 200, 7200000,
				  VIGIE_CONF_OPTIONAL, &cfg->reporting_ms);
	rc |= vigie_conf_duration(c, root, "incident_window", 1000, 86400000,
				  VIGIE_CONF_OPTIONAL,
				  &cfg->incident_window_ms);
	rc |= vigie_conf_duration(c, root, "confirmation_window", 1000,
				  86400000, VIGIE_CONF_OPTIONAL,
				  &cfg->confirm_window_ms);
	rc |= vigie_conf_duration(c, root, "close_after", 0, 86400000 * 7ull,
				  VIGIE_CONF_OPTIONAL, &cfg->close_after_ms);
	rc |= vigie_conf_duration(c, root, "retain_closed", 0,
				  86400000 * 366ull, VIGIE_CONF_OPTIONAL,
				  &cfg->retain_closed_ms);
	rc |= vigie_conf_duration(c, root, "dispatch_resend", 100, 3600000,
				  VIGIE_CONF_OPTIONAL, &cfg->resend_ms);
	rc |= vigie_conf_duration(c, root, "dispatch_resend_max", 100, 3600000,
				  VIGIE_CONF_OPTIONAL, &cfg->resend_max_ms);
	rc |= vigie_conf_duration(c, root, "status_interval", 100, 3600000,
				  VIGIE_CONF_OPTIONAL,
				  &cfg->status_interval_ms);
	rc |= vigie_conf_uint(c, root, "max_backlog", 1000, 100000000,
			      VIGIE_CONF_OPTIONAL, &cfg->max_backlog);
	rc |= vigie_conf_section(c, root, "broker", false, VIGIE_CONF_REQUIRED,
				 &broker);
	rc |= vigie_conf_section(c, root, "standby", false, VIGIE_CONF_OPTIONAL,
				 &standby);
	rc |= vigie_conf_section(c, root, "posts", true, VIGIE_CONF_OPTIONAL,
				 &posts);
	rc |= vigie_conf_section(c, root, "escalation", true,
				 VIGIE_CONF_OPTIONAL, &esc);
	rc |= vigie_conf_section(c, root, "sites", true, VIGIE_CONF_OPTIONAL,
				 &sites);
	rc |= vigie_conf_str(c, root, "serve", VIGIE_CONF_OPTIONAL, &serve);
	rc |= vigie_conf_bool(c, root, "supervise_posts", VIGIE_CONF_OPTIONAL,
			      &cfg->supervise_posts);
	if (rc)
		return VIGIE_ECONFIG;
	cfg->supervise_posts_set =
		vigie_conf_get(root, "supervise_posts") != NULL;
	if (serve) {
		if (strcmp(serve, "listed") == 0)
			cfg->serve_listed = true;
		else if (strcmp(serve, "all") != 0)
			return vigie_conf_fail(c, vigie_conf_get(root, "serve"),
					       "expected all or listed, got "
					       "\"%s\"",
					       serve);
	}
	/* A partitioned relay with no site would subscribe to nothing and
	 * still look healthy: the sites meant for it would go unserved. */
	if (cfg->serve_listed && vigie_conf_seq_len(sites) == 0)
		return vigie_conf_fail(c, vigie_conf_get(root, "serve"),
				       "listed serves only the sites of "
				       "sites:, and there is none: list this "
				       "relay's sites, or serve: all");
	if (sync) {
		if (strcmp(sync, "full") == 0)
			cfg->sync_full = true;
		else if (strcmp(sync, "normal") == 0)
			cfg->sync_full = false;
		else
			return vigie_conf_fail(
				c, vigie_conf_get(root, "synchronous"),
				"expected full or normal, got \"%s\"", sync);
	}
	if (cfg->resend_max_ms < cfg->resend_ms)
		return vigie_conf_fail(
			c, vigie_conf_get(root, "dispatch_resend_max"),
			"must be at least dispatch_resend (%llu ms)",
			(unsigned long long)cfg->resend_ms);
	if (load_broker(c, broker, &cfg->broker) ||
	    (standby && load_standby(c, standby, cfg)) ||
	    load_immediate(c, root, cfg) || load_posts(c, posts, cfg))
		return VIGIE_ECONFIG;
	if (esc) {
		if (load_ladder(c, esc, cfg, &cfg->ladder))
			return VIGIE_ECONFIG;
	} else {
		/* No ladder configured: the site's own guards are told, and
		 * re-told, until someone acknowledges. */
		cfg->ladder.n = 1;
		cfg->ladder.levels[0].name = "site-security";
		cfg->ladder.levels[0].alert = true;
		cfg->ladder.levels[0].ack_deadline_ms = 60000;
		cfg->ladder.police = 1;
	}
	cfg->sites = calloc(vigie_conf_seq_len(sites) + 1, sizeof(*cfg->sites));
	if (!cfg->sites)
		return vigie_conf_fail(c, root, "out of memory");
	for (size_t i = 0; i < vigie_conf_seq_len(sites); i++) {
		const struct vigie_conf_node *sn = vigie_conf_seq_at(sites, i);

		cfg->n_sites = i + 1;
		if (load_site(c, sn, cfg, &cfg->sites[i]))
			return VIGIE_ECONFIG;
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->sites[j].id, cfg->sites[i].id) == 0)
				return vigie_conf_fail(
					c, sn, "duplicate site id \"%s\"",
					cfg->sites[i].id);
	}
	return 0;
}

/* `trust: FILE|DIR` of node public keys; `require_signatures` defaults to
 * true once there is a trust store, and cannot be true without one. */
static int load_security(struct vigie_conf *c,
			 const struct vigie_conf_node *root,
			 struct relay_config *cfg)
{
	char why[512];
	bool require = true;
	int rc = 0;

	rc |= vigie_conf_str(c, root, "trust", VIGIE_CONF_OPTIONAL,
			     &cfg->trust);
	rc |= vigie_conf_bool(c, root, "require_signatures",
			      VIGIE_CONF_OPTIONAL, &require);
	rc |= vigie_conf_duration(c, root, "replay_window", 1000,
				  86400000 * 365ull, VIGIE_CONF_OPTIONAL,
				  &cfg->replay_window_ms);
	if (rc)
		return VIGIE_ECONFIG;
	if (!cfg->trust) {
		if (vigie_conf_get(root, "require_signatures") && require)
			return vigie_conf_fail(
				c, vigie_conf_get(root, "require_signatures"),
				"needs a trust store (trust: FILE or DIR of "
				"node public keys)");
		return 0;
	}
	cfg->require_signatures = require;
	rc = vigie_trust_load(cfg->trust, &cfg->trust_store, why, sizeof(why));
	if (rc)
		return vigie_conf_fail(c, vigie_conf_get(root, "trust"), "%s",
				       why);
	return 0;
}

/* `patterns: {rules: FILE}`: the pattern tracker's rules, read and checked
 * now against the sites and posts (FILE:LINE errors name the rules file).
 * A relative FILE is read from the config's folder. */
static int load_patterns(struct vigie_conf *c,
			 const struct vigie_conf_node *root,
			 struct relay_config *cfg, char *err, size_t errlen)
{
	static const char *const keys[] = {"rules", NULL};
	const struct vigie_conf_node *map = NULL;
	struct pat_site_info *sites;
	const char **posts;
	struct pat_world w;
	const char *rules = NULL, *slash;
	char *full;
	size_t n;
	int rc;

	rc = vigie_conf_section(c, root, "patterns", false, VIGIE_CONF_OPTIONAL,
				&map);
	if (!rc && map)
		rc = vigie_conf_expect_map(c, map, keys);
	if (!rc && map)
		rc = vigie_conf_str(c, map, "rules", VIGIE_CONF_REQUIRED,
				    &rules);
	if (rc || !rules)
		return rc;
	slash = strrchr(cfg->path, '/');
	n = rules[0] != '/' && slash ? (size_t)(slash - cfg->path) + 1 : 0;
	full = malloc(n + strlen(rules) + 1);
	if (!full)
		return VIGIE_ENOMEM;
	memcpy(full, cfg->path, n);
	strcpy(full + n, rules);
	cfg->pattern_rules_path = vigie_conf_intern(c, full, strlen(full));
	free(full);
	sites = calloc(cfg->n_sites + 1, sizeof(*sites));
	posts = calloc(cfg->n_posts + 1, sizeof(*posts));
	if (!cfg->pattern_rules_path || !sites || !posts) {
		free(sites);
		free(posts);
		return VIGIE_ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_sites; i++) {
		const struct relay_site *s = &cfg->sites[i];

		sites[i].id = s->id;
		sites[i].name = s->name;
		sites[i].region = s->region;
		sites[i].lat = s->lat;
		sites[i].lon = s->lon;
		sites[i].has_location = s->has_location;
	}
	for (size_t i = 0; i < cfg->n_posts; i++)
		posts[i] = cfg->posts[i].id;
	w.sites = sites;
	w.n_sites = cfg->n_sites;
	w.posts = posts;
	w.n_posts = cfg->n_posts;
	rc = vigie__patrules_load(cfg->pattern_rules_path, &w,
				  &cfg->pattern_rules, err, errlen);
	free(sites);
	free(posts);
	return rc;
}

int vigie__relayconf_load(const char *path, struct relay_config *cfg, char *err,
			  size_t errlen)
{
	struct vigie_conf *c = NULL;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->path = path;
	cfg->sync_full = true;
	cfg->reporting_ms = 10000;
	cfg->incident_window_ms = 30 * 60000;
	cfg->confirm_window_ms = 30 * 60000;
	cfg->close_after_ms = 10 * 60000;
	cfg->retain_closed_ms = 86400000;
	cfg->resend_ms = 5000;
	cfg->resend_max_ms = 30000;
	cfg->status_interval_ms = 1000;
	cfg->max_backlog = 200000;
	cfg->replay_window_ms = 7 * 86400000ull;
	cfg->supervise_posts = true;
	rc = vigie_conf_load(path, &c);
	cfg->conf = c;
	if (rc == 0)
		rc = load_top(c, vigie_conf_root(c), cfg);
	if (rc == 0)
		rc = load_security(c, vigie_conf_root(c), cfg);
	if (rc == 0) {
		err[0] = '\0';
		rc = load_patterns(c, vigie_conf_root(c), cfg, err, errlen);
		if (rc && err[0]) {
			/* The rules file's own error (its FILE:LINE). */
			vigie__relayconf_free(cfg);
			return rc == VIGIE_ENOMEM ? VIGIE_ENOMEM
						  : VIGIE_ECONFIG;
		}
	}
	if (rc) {
		snprintf(err, errlen, "%s",
			 c && vigie_conf_error(c) ? vigie_conf_error(c)
						  : "invalid configuration");
		vigie__relayconf_free(cfg);
		return rc == VIGIE_ENOMEM ? VIGIE_ENOMEM : VIGIE_ECONFIG;
	}
	if (!cfg->broker.client_id) {
		snprintf(cfg->client_id_buf, sizeof(cfg->client_id_buf),
			 "vigie-relay-%s", cfg->id);
		cfg->broker.client_id = cfg->client_id_buf;
	}
	/* One session per broker, under the same name on each. */
	if (cfg->has_standby && !cfg->standby.client_id)
		cfg->standby.client_id = cfg->broker.client_id;
	return 0;
}

static void free_ladder(struct relay_ladder *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->levels[i].instructions);
}

void vigie__relayconf_free(struct relay_config *cfg)
{
	for (size_t i = 0; cfg->sites && i < cfg->n_sites; i++) {
		struct relay_site *s = &cfg->sites[i];

		for (size_t j = 0; s->zones && j < s->n_zones; j++)
			free(s->zones[j].cameras);
		free(s->zones);
		free(s->nodes);
		free_ladder(&s->own_ladder);
	}
	free(cfg->sites);
	free(cfg->posts);
	free_ladder(&cfg->ladder);
	vigie_trust_free(cfg->trust_store);
	vigie__patrules_free(cfg->pattern_rules);
	vigie_conf_free(cfg->conf);
	memset(cfg, 0, sizeof(*cfg));
}
