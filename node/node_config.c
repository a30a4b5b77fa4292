/* vigie-node's YAML configuration: see examples/node.yaml for every key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "sia.h"
#include "vigie/error.h"
#include "vigie/sign.h"

static const char *const top_keys[] = {"site",
				       "node",
				       "outbox",
				       "socket",
				       "heartbeat_period",
				       "reporting_time",
				       "resend_timeout",
				       "failover_time",
				       "max_pending",
				       "brokers",
				       "zones",
				       "sensors",
				       "panels",
				       "signing_key",
				       "key_id",
				       NULL};
static const char *const zone_keys[] = {"id",      "name",        "floor",
					"facade",  "kind",        "location",
					"cameras", "action_plan", NULL};
static const char *const sensor_keys[] = {"id", "name", "kind", "zones", NULL};
static const char *const location_keys[] = {"lat", "lon", NULL};

static int load_zone(struct vigie_conf *c, const struct vigie_conf_node *map,
		     struct node_zone *z)
{
	const struct vigie_conf_node *loc = NULL;
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
	rc |= vigie_conf_section(c, map, "location", false, VIGIE_CONF_OPTIONAL,
				 &loc);
	if (rc)
		return VIGIE_ECONFIG;
	if (loc) {
		rc |= vigie_conf_expect_map(c, loc, location_keys);
		rc |= vigie_conf_double(c, loc, "lat", -90, 90,
					VIGIE_CONF_REQUIRED, &z->lat);
		rc |= vigie_conf_double(c, loc, "lon", -180, 180,
					VIGIE_CONF_REQUIRED, &z->lon);
		z->has_location = true;
	}
	return rc ? VIGIE_ECONFIG : 0;
}

static int load_sensor(struct vigie_conf *c, const struct vigie_conf_node *map,
		       struct node_sensor *s)
{
	const char *kind = NULL;
	int rc = 0;

	rc |= vigie_conf_expect_map(c, map, sensor_keys);
	rc |= vigie_conf_id(c, map, "id", VIGIE_CONF_REQUIRED, &s->id);
	rc |= vigie_conf_str(c, map, "name", VIGIE_CONF_OPTIONAL, &s->name);
	rc |= vigie_conf_str(c, map, "kind", VIGIE_CONF_REQUIRED, &kind);
	rc |= vigie_conf_str_list(c, map, "zones", VIGIE_CONF_REQUIRED,
				  &s->zones, &s->n_zones);
	if (rc)
		return VIGIE_ECONFIG;
	if (vigie_kind_parse(kind, &s->kind))
		return vigie_conf_fail(c, vigie_conf_get(map, "kind"),
				       "unknown event kind \"%s\"", kind);
	if (!s->n_zones)
		return vigie_conf_fail(c, vigie_conf_get(map, "zones"),
				       "a sensor covers at least one zone");
	return 0;
}

const struct node_zone *vigie__nodeconf_zone(const struct node_config *cfg,
					     const char *id)
{
	for (size_t i = 0; i < cfg->n_zones; i++)
		if (strcmp(cfg->zones[i].id, id) == 0)
			return &cfg->zones[i];
	return NULL;
}

const struct node_sensor *vigie__nodeconf_sensor(const struct node_config *cfg,
						 const char *id)
{
	for (size_t i = 0; i < cfg->n_sensors; i++)
		if (strcmp(cfg->sensors[i].id, id) == 0)
			return &cfg->sensors[i];
	return NULL;
}

bool vigie__nodeconf_covered(const struct node_config *cfg, const char *id)
{
	for (size_t i = 0; i < cfg->n_sensors; i++)
		for (size_t j = 0; j < cfg->sensors[i].n_zones; j++)
			if (strcmp(cfg->sensors[i].zones[j], id) == 0)
				return true;
	return false;
}

/* `signing_key: FILE` (0600) and optionally `key_id`, which must then be
 * the key's: a config copied to the wrong node fails here, not at the
 * relay. */
static int load_key(struct vigie_conf *c, const struct vigie_conf_node *root,
		    struct node_config *cfg)
{
	const char *file = NULL, *key_id = NULL;
	char why[512];

	if (vigie_conf_str(c, root, "signing_key", VIGIE_CONF_OPTIONAL,
			   &file) ||
	    vigie_conf_str(c, root, "key_id", VIGIE_CONF_OPTIONAL, &key_id))
		return VIGIE_ECONFIG;
	if (!file) {
		if (key_id)
			return vigie_conf_fail(c,
					       vigie_conf_get(root, "key_id"),
					       "key_id needs signing_key");
		return 0;
	}
	cfg->signing_key = malloc(sizeof(*cfg->signing_key));
	if (!cfg->signing_key)
		return vigie_conf_fail(c, NULL, "out of memory");
	if (vigie_sign_key_load(file, cfg->signing_key, why, sizeof(why)))
		return vigie_conf_fail(c, vigie_conf_get(root, "signing_key"),
				       "%s", why);
	if (key_id && strcmp(key_id, cfg->signing_key->key_id) != 0)
		return vigie_conf_fail(c, vigie_conf_get(root, "key_id"),
				       "%s is not the id of %s (%s)", key_id,
				       file, cfg->signing_key->key_id);
	return 0;
}

/* Cross-checks once every section parsed: ids unique, sensors name zones
 * that exist, timings consistent. */
static int check_refs(struct vigie_conf *c, const struct vigie_conf_node *root,
		      struct node_config *cfg)
{
	const struct vigie_conf_node *zones = vigie_conf_get(root, "zones");
	const struct vigie_conf_node *sensors = vigie_conf_get(root, "sensors");

	for (size_t i = 0; i < cfg->n_zones; i++)
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->zones[i].id, cfg->zones[j].id) == 0)
				return vigie_conf_fail(
					c, vigie_conf_seq_at(zones, i),
					"duplicate zone id \"%s\"",
					cfg->zones[i].id);
	for (size_t i = 0; i < cfg->n_sensors; i++) {
		const struct node_sensor *s = &cfg->sensors[i];

		for (size_t j = 0; j < i; j++)
			if (strcmp(s->id, cfg->sensors[j].id) == 0)
				return vigie_conf_fail(
					c, vigie_conf_seq_at(sensors, i),
					"duplicate sensor id \"%s\"", s->id);
		for (size_t j = 0; j < s->n_zones; j++)
			if (!vigie__nodeconf_zone(cfg, s->zones[j]))
				return vigie_conf_fail(
					c,
					vigie_conf_get(
						vigie_conf_seq_at(sensors, i),
						"zones"),
					"sensor %s covers zone \"%s\", which "
					"is not in zones",
					s->id, s->zones[j]);
	}
	if (cfg->reporting_ms <= cfg->heartbeat_ms)
		return vigie_conf_fail(
			c, vigie_conf_get(root, "reporting_time"),
			"must be longer than heartbeat_period (%llu ms)",
			(unsigned long long)cfg->heartbeat_ms);
	return 0;
}

int vigie__nodeconf_load(const char *path, struct node_config *cfg, char *err,
			 size_t errlen)
{
	const struct vigie_conf_node *root, *brokers = NULL, *zones = NULL;
	const struct vigie_conf_node *sensors = NULL, *n;
	struct vigie_conf *c = NULL;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->path = path;
	cfg->heartbeat_ms = 5000;
	cfg->reporting_ms = 10000;
	cfg->resend_ms = 5000;
	cfg->failover_ms = 10000;
	cfg->max_pending = 1000000;
	rc = vigie_conf_load(path, &c);
	cfg->conf = c;
	if (rc)
		goto out_err;
	root = vigie_conf_root(c);
	rc = vigie_conf_expect_map(c, root, top_keys);
	rc |= vigie_conf_id(c, root, "site", VIGIE_CONF_REQUIRED, &cfg->site);
	rc |= vigie_conf_id(c, root, "node", VIGIE_CONF_REQUIRED, &cfg->node);
	rc |= vigie_conf_str(c, root, "outbox", VIGIE_CONF_REQUIRED,
			     &cfg->outbox);
	rc |= vigie_conf_str(c, root, "socket", VIGIE_CONF_OPTIONAL,
			     &cfg->socket_path);
	rc |= vigie_conf_duration(c, root, "heartbeat_period", 100, 3600000,
				  VIGIE_CONF_OPTIONAL, &cfg->heartbeat_ms);
	rc |= vigie_conf_duration(c, root, "reporting_time", 200, 7200000,
				  VIGIE_CONF_OPTIONAL, &cfg->reporting_ms);
	rc |= vigie_conf_duration(c, root, "resend_timeout", 100, 3600000,
				  VIGIE_CONF_OPTIONAL, &cfg->resend_ms);
	rc |= vigie_conf_duration(c, root, "failover_time", 100, 3600000,
				  VIGIE_CONF_OPTIONAL, &cfg->failover_ms);
	rc |= vigie_conf_uint(c, root, "max_pending", 100, 100000000,
			      VIGIE_CONF_OPTIONAL, &cfg->max_pending);
	rc |= vigie_conf_section(c, root, "brokers", false, VIGIE_CONF_REQUIRED,
				 &brokers);
	rc |= vigie_conf_section(c, root, "zones", true, VIGIE_CONF_OPTIONAL,
				 &zones);
	rc |= vigie_conf_section(c, root, "sensors", true, VIGIE_CONF_OPTIONAL,
				 &sensors);
	if (rc)
		goto out_err;
	static const char *const path_keys[] = {"primary", "secondary", NULL};
	if (vigie_conf_expect_map(c, brokers, path_keys))
		goto out_err;
	rc = vigie_conf_section(c, brokers, "primary", false,
				VIGIE_CONF_REQUIRED, &n);
	if (rc || vigie_conf_broker(c, n, 0, NULL, &cfg->primary))
		goto out_err;
	n = NULL;
	rc = vigie_conf_section(c, brokers, "secondary", false,
				VIGIE_CONF_OPTIONAL, &n);
	if (rc || (n && vigie_conf_broker(c, n, 0, NULL, &cfg->secondary)))
		goto out_err;
	cfg->has_secondary = n != NULL;

	cfg->n_zones = vigie_conf_seq_len(zones);
	cfg->n_sensors = vigie_conf_seq_len(sensors);
	cfg->zones = calloc(cfg->n_zones + 1, sizeof(*cfg->zones));
	cfg->sensors = calloc(cfg->n_sensors + 1, sizeof(*cfg->sensors));
	if (!cfg->zones || !cfg->sensors) {
		snprintf(err, errlen, "%s: out of memory", path);
		vigie__nodeconf_free(cfg);
		return VIGIE_ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_zones; i++)
		if (load_zone(c, vigie_conf_seq_at(zones, i), &cfg->zones[i]))
			goto out_err;
	for (size_t i = 0; i < cfg->n_sensors; i++)
		if (load_sensor(c, vigie_conf_seq_at(sensors, i),
				&cfg->sensors[i]))
			goto out_err;
	if (check_refs(c, root, cfg) || load_key(c, root, cfg))
		goto out_err;
	/* Panels last: their mapping names the zones and sensors above. */
	n = NULL;
	if (vigie_conf_section(c, root, "panels", false, VIGIE_CONF_OPTIONAL,
			       &n) ||
	    vigie__sia_conf_load(c, n, cfg, &cfg->panels))
		goto out_err;
	return 0;
out_err:
	snprintf(err, errlen, "%s",
		 c && vigie_conf_error(c) ? vigie_conf_error(c)
					  : "invalid configuration");
	vigie__nodeconf_free(cfg);
	return VIGIE_ECONFIG;
}

void vigie__nodeconf_free(struct node_config *cfg)
{
	for (size_t i = 0; cfg->zones && i < cfg->n_zones; i++)
		free(cfg->zones[i].cameras);
	for (size_t i = 0; cfg->sensors && i < cfg->n_sensors; i++)
		free(cfg->sensors[i].zones);
	free(cfg->zones);
	free(cfg->sensors);
	vigie__sia_conf_free(cfg->panels);
	if (cfg->signing_key) {
		vigie_sign_key_wipe(cfg->signing_key);
		free(cfg->signing_key);
	}
	vigie_conf_free(cfg->conf);
	memset(cfg, 0, sizeof(*cfg));
}
