/* The `panels:` section of the node configuration (examples/node.yaml has
 * every key): where the SIA DC-09 receiver listens, which panel accounts it
 * accepts with which keys, how their link is supervised and which panel
 * zone is which Vigie zone and sensor. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "sia.h"
#include "vigie/error.h"
#include "vigie/strbuf.h"

static const char *const panels_keys[] = {
	"listen",   "accounts",        "time_window",    "idle_timeout",
	"remember", "max_connections", "max_remembered", NULL};
static const char *const listen_keys[] = {"protocol", "host", "port", NULL};
static const char *const window_keys[] = {"past", "future", NULL};
static const char *const account_keys[] = {
	"id", "name", "key", "supervision", "zone", "sensor", "map", NULL};
static const char *const map_keys[] = {"panel_zone", "area", "zone", "sensor",
				       NULL};

#define DAY_MS (24ull * 3600 * 1000)

static int load_listen(struct vigie_conf *c, const struct vigie_conf_node *n,
		       struct sia_listen_conf *l)
{
	const char *proto = NULL;
	uint64_t port = 0;
	int rc = 0;

	rc |= vigie_conf_expect_map(c, n, listen_keys);
	rc |= vigie_conf_str(c, n, "protocol", VIGIE_CONF_REQUIRED, &proto);
	rc |= vigie_conf_str(c, n, "host", VIGIE_CONF_REQUIRED, &l->host);
	rc |= vigie_conf_uint(c, n, "port", 0, 65535, VIGIE_CONF_REQUIRED,
			      &port);
	if (rc)
		return VIGIE_ECONFIG;
	if (strcmp(proto, "tcp") == 0)
		l->udp = false;
	else if (strcmp(proto, "udp") == 0)
		l->udp = true;
	else
		return vigie_conf_fail(c, vigie_conf_get(n, "protocol"),
				       "expected tcp or udp, got \"%s\"",
				       proto);
	l->port = (int)port;
	return 0;
}

/* A Vigie zone and sensor named under `n` must exist in the node's
 * configuration (when it lists any), and the sensor must cover the zone. */
static int load_target(struct vigie_conf *c, const struct vigie_conf_node *n,
		       const struct node_config *cfg, struct sia_map *m)
{
	const struct node_sensor *s = NULL;
	int rc = 0;

	rc |= vigie_conf_id(c, n, "zone", VIGIE_CONF_OPTIONAL, &m->vzone);
	rc |= vigie_conf_id(c, n, "sensor", VIGIE_CONF_OPTIONAL, &m->sensor);
	if (rc)
		return VIGIE_ECONFIG;
	if (m->vzone && cfg->n_zones && !vigie__nodeconf_zone(cfg, m->vzone))
		return vigie_conf_fail(c, vigie_conf_get(n, "zone"),
				       "zone \"%s\" is not in zones", m->vzone);
	if (m->sensor && cfg->n_sensors) {
		s = vigie__nodeconf_sensor(cfg, m->sensor);
		if (!s)
			return vigie_conf_fail(
				c, vigie_conf_get(n, "sensor"),
				"sensor \"%s\" is not in sensors", m->sensor);
		m->sensor_kind = s->kind;
	}
	if (s && m->vzone) {
		bool covers = false;

		for (size_t i = 0; i < s->n_zones; i++)
			covers = covers || strcmp(s->zones[i], m->vzone) == 0;
		if (!covers)
			return vigie_conf_fail(
				c, vigie_conf_get(n, "sensor"),
				"sensor %s does not cover zone %s", m->sensor,
				m->vzone);
	}
	return 0;
}

static int load_map(struct vigie_conf *c, const struct vigie_conf_node *n,
		    const struct node_config *cfg, struct sia_map *m)
{
	uint64_t v;
	int rc;

	rc = vigie_conf_expect_map(c, n, map_keys);
	if (rc)
		return rc;
	v = UINT64_MAX;
	if (vigie_conf_uint(c, n, "panel_zone", 0, 999999, VIGIE_CONF_OPTIONAL,
			    &v))
		return VIGIE_ECONFIG;
	m->has_zone = v != UINT64_MAX;
	m->zone = m->has_zone ? (unsigned)v : 0;
	v = UINT64_MAX;
	if (vigie_conf_uint(c, n, "area", 0, 999999, VIGIE_CONF_OPTIONAL, &v))
		return VIGIE_ECONFIG;
	m->has_area = v != UINT64_MAX;
	m->area = m->has_area ? (unsigned)v : 0;
	if (!m->has_zone && !m->has_area)
		return vigie_conf_fail(c, n, "give panel_zone, area or both");
	if (load_target(c, n, cfg, m))
		return VIGIE_ECONFIG;
	if (!m->vzone && !m->sensor)
		return vigie_conf_fail(c, n,
				       "give the Vigie zone, sensor or both");
	return 0;
}

static int load_account(struct vigie_conf *c, const struct vigie_conf_node *n,
			const struct node_config *cfg,
			struct sia_account_conf *a)
{
	const struct vigie_conf_node *map = NULL;
	const char *id = NULL, *key = NULL;
	char up[SIA_ACCOUNT_MAX + 1];
	size_t len;
	int rc = 0;

	rc |= vigie_conf_expect_map(c, n, account_keys);
	rc |= vigie_conf_str(c, n, "id", VIGIE_CONF_REQUIRED, &id);
	rc |= vigie_conf_str(c, n, "name", VIGIE_CONF_OPTIONAL, &a->name);
	rc |= vigie_conf_str(c, n, "key", VIGIE_CONF_OPTIONAL, &key);
	rc |= vigie_conf_duration(c, n, "supervision", 1000, DAY_MS,
				  VIGIE_CONF_OPTIONAL, &a->supervision_ms);
	rc |= vigie_conf_section(c, n, "map", true, VIGIE_CONF_OPTIONAL, &map);
	if (rc)
		return VIGIE_ECONFIG;
	len = strlen(id);
	if (len < 3 || len > SIA_ACCOUNT_MAX)
		return vigie_conf_fail(
			c, vigie_conf_get(n, "id"),
			"an account is 3 to 16 hex digits, got \"%s\"", id);
	for (size_t i = 0; i < len; i++) {
		if (vigie_hex_digit(id[i]) < 0)
			return vigie_conf_fail(
				c, vigie_conf_get(n, "id"),
				"an account is 3 to 16 hex digits, got \"%s\"",
				id);
		up[i] = (char)toupper((unsigned char)id[i]);
	}
	up[len] = '\0';
	a->id = vigie_conf_intern(c, up, len);
	if (!a->id)
		return VIGIE_ENOMEM;
	if (!a->name)
		a->name = a->id;
	if (key) {
		size_t klen = strlen(key);

		if (klen != 32 && klen != 48 && klen != 64)
			return vigie_conf_fail(
				c, vigie_conf_get(n, "key"),
				"an AES key is 32, 48 or 64 hex digits "
				"(AES-128, -192, -256), got %zu characters",
				klen);
		for (size_t i = 0; i < klen / 2; i++) {
			int hi = vigie_hex_digit(key[2 * i]);
			int lo = vigie_hex_digit(key[2 * i + 1]);

			if (hi < 0 || lo < 0)
				return vigie_conf_fail(
					c, vigie_conf_get(n, "key"),
					"an AES key is hex digits only");
			a->key[i] = (uint8_t)(hi * 16 + lo);
		}
		a->key_len = klen / 2;
	}
	if (load_target(c, n, cfg, &a->dflt))
		return VIGIE_ECONFIG;
	a->n_map = vigie_conf_seq_len(map);
	if (a->n_map) {
		a->map = calloc(a->n_map, sizeof(*a->map));
		if (!a->map)
			return VIGIE_ENOMEM;
	}
	for (size_t i = 0; i < a->n_map; i++)
		if (load_map(c, vigie_conf_seq_at(map, i), cfg, &a->map[i]))
			return VIGIE_ECONFIG;
	return 0;
}

int vigie__sia_conf_load(struct vigie_conf *c,
			 const struct vigie_conf_node *map,
			 const struct node_config *cfg, struct sia_config **out)
{
	const struct vigie_conf_node *listen = NULL, *accounts = NULL;
	const struct vigie_conf_node *window = NULL;
	struct sia_config *sc;
	uint64_t maxc = 256, maxr = 100000;
	int rc = 0;

	*out = NULL;
	if (!map)
		return 0;
	sc = calloc(1, sizeof(*sc));
	if (!sc)
		return VIGIE_ENOMEM;
	sc->past_ms = 40000;
	sc->future_ms = 20000;
	sc->idle_ms = 5 * 60 * 1000;
	sc->remember_ms = 10 * 60 * 1000;
	rc |= vigie_conf_expect_map(c, map, panels_keys);
	rc |= vigie_conf_section(c, map, "listen", true, VIGIE_CONF_REQUIRED,
				 &listen);
	rc |= vigie_conf_section(c, map, "accounts", true, VIGIE_CONF_REQUIRED,
				 &accounts);
	rc |= vigie_conf_section(c, map, "time_window", false,
				 VIGIE_CONF_OPTIONAL, &window);
	rc |= vigie_conf_duration(c, map, "idle_timeout", 1000, DAY_MS,
				  VIGIE_CONF_OPTIONAL, &sc->idle_ms);
	rc |= vigie_conf_duration(c, map, "remember", 1000, DAY_MS,
				  VIGIE_CONF_OPTIONAL, &sc->remember_ms);
	rc |= vigie_conf_uint(c, map, "max_connections", 1, 65536,
			      VIGIE_CONF_OPTIONAL, &maxc);
	rc |= vigie_conf_uint(c, map, "max_remembered", 16, 10000000,
			      VIGIE_CONF_OPTIONAL, &maxr);
	if (rc)
		goto out_err;
	if (window) {
		rc |= vigie_conf_expect_map(c, window, window_keys);
		rc |= vigie_conf_duration(c, window, "past", 0, 3600000,
					  VIGIE_CONF_OPTIONAL, &sc->past_ms);
		rc |= vigie_conf_duration(c, window, "future", 0, 3600000,
					  VIGIE_CONF_OPTIONAL, &sc->future_ms);
		if (rc)
			goto out_err;
	}
	sc->max_connections = (size_t)maxc;
	sc->max_remembered = (size_t)maxr;
	sc->n_listen = vigie_conf_seq_len(listen);
	sc->n_accounts = vigie_conf_seq_len(accounts);
	if (!sc->n_listen) {
		rc = vigie_conf_fail(c, listen, "give at least one listener");
		goto out_err;
	}
	if (!sc->n_accounts) {
		rc = vigie_conf_fail(c, accounts, "give at least one account");
		goto out_err;
	}
	sc->listen = calloc(sc->n_listen, sizeof(*sc->listen));
	sc->accounts = calloc(sc->n_accounts, sizeof(*sc->accounts));
	if (!sc->listen || !sc->accounts) {
		rc = VIGIE_ENOMEM;
		goto out_err;
	}
	for (size_t i = 0; i < sc->n_listen; i++) {
		rc = load_listen(c, vigie_conf_seq_at(listen, i),
				 &sc->listen[i]);
		if (rc)
			goto out_err;
	}
	for (size_t i = 0; i < sc->n_accounts; i++) {
		rc = load_account(c, vigie_conf_seq_at(accounts, i), cfg,
				  &sc->accounts[i]);
		if (rc)
			goto out_err;
		for (size_t j = 0; j < i; j++)
			if (strcmp(sc->accounts[j].id, sc->accounts[i].id) ==
			    0) {
				rc = vigie_conf_fail(
					c, vigie_conf_seq_at(accounts, i),
					"duplicate account \"%s\"",
					sc->accounts[i].id);
				goto out_err;
			}
	}
	*out = sc;
	return 0;
out_err:
	vigie__sia_conf_free(sc);
	return rc == VIGIE_ENOMEM ? VIGIE_ENOMEM : VIGIE_ECONFIG;
}

void vigie__sia_conf_free(struct sia_config *sc)
{
	if (!sc)
		return;
	for (size_t i = 0; sc->accounts && i < sc->n_accounts; i++)
		free(sc->accounts[i].map);
	/* Keys are secrets: do not leave them in freed memory. */
	for (size_t i = 0; sc->accounts && i < sc->n_accounts; i++)
		OPENSSL_cleanse(sc->accounts[i].key,
				sizeof(sc->accounts[i].key));
	free(sc->accounts);
	free(sc->listen);
	free(sc);
}

const struct sia_account_conf *
vigie__sia_conf_account(const struct sia_config *sc, const char *id)
{
	for (size_t i = 0; i < sc->n_accounts; i++)
		if (strcmp(sc->accounts[i].id, id) == 0)
			return &sc->accounts[i];
	return NULL;
}
