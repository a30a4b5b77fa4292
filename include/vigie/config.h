/* Configuration files: YAML read with libyaml into a tree that remembers the
 * line and the dotted path of every value, and typed getters that report the
 * first problem as "FILE:LINE: FIELD: what is wrong".
 *
 * Getters take VIGIE_CONF_REQUIRED or VIGIE_CONF_OPTIONAL; an optional key
 * that is absent leaves *out untouched and returns 0. `key:`, `key: ~` and
 * `key: null` count as absent; a quoted "" is a real empty string. A NULL map
 * (an optional section that is absent) reads as absent even for a required
 * key, so "tls.ca is required when tls is present" needs no `if`. Every
 * getter returns 0, VIGIE_ECONFIG or VIGIE_ENOMEM, and records only the first
 * error (vigie_conf_error). Errors with no line read "FILE: what". Aliases,
 * more than one document, nesting deeper than 64 and over 1,000,000 values
 * are refused. */
#ifndef VIGIE_CONFIG_H
#define VIGIE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vigie/mqtt.h"

struct vigie_conf;
struct vigie_conf_node;

#define VIGIE_CONF_OPTIONAL 0
#define VIGIE_CONF_REQUIRED 1

/* Largest configuration file read. */
#define VIGIE_CONF_MAX_BYTES (8 * 1024 * 1024)

/* vigie_conf_load: read and parse `path`. On a YAML syntax error, or when the
 * file cannot be read, returns VIGIE_ECONFIG and *out is still set so that
 * vigie_conf_error() says why; free it with vigie_conf_free. */
int vigie_conf_load(const char *path, struct vigie_conf **out);

/* vigie_conf_parse: the same from memory; `name` stands for the file name
 * in messages. */
int vigie_conf_parse(const char *text, size_t len, const char *name,
		     struct vigie_conf **out);

void vigie_conf_free(struct vigie_conf *c);

/* vigie_conf_error: the first error recorded, or NULL. */
const char *vigie_conf_error(const struct vigie_conf *c);
const char *vigie_conf_file(const struct vigie_conf *c);

/* vigie_conf_fail: record an error at `n` (its line and path). Returns
 * VIGIE_ECONFIG. */
int vigie_conf_fail(struct vigie_conf *c, const struct vigie_conf_node *n,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

const struct vigie_conf_node *vigie_conf_root(const struct vigie_conf *c);

/* Node inspection. */
bool vigie_conf_is_map(const struct vigie_conf_node *n);
bool vigie_conf_is_seq(const struct vigie_conf_node *n);
bool vigie_conf_is_scalar(const struct vigie_conf_node *n);
unsigned vigie_conf_line(const struct vigie_conf_node *n);
const char *vigie_conf_path(const struct vigie_conf_node *n);
/* vigie_conf_scalar: the text of a scalar node, NULL otherwise. */
const char *vigie_conf_scalar(const struct vigie_conf_node *n);

/* vigie_conf_get: the value under `key` of a map, or NULL. */
const struct vigie_conf_node *vigie_conf_get(const struct vigie_conf_node *map,
					     const char *key);
/* Map entries by index: key text and value. */
size_t vigie_conf_map_len(const struct vigie_conf_node *map);
const char *vigie_conf_map_key(const struct vigie_conf_node *map, size_t i);
const struct vigie_conf_node *
vigie_conf_map_value(const struct vigie_conf_node *map, size_t i);
/* Sequence items. */
size_t vigie_conf_seq_len(const struct vigie_conf_node *seq);
const struct vigie_conf_node *
vigie_conf_seq_at(const struct vigie_conf_node *seq, size_t i);

/* vigie_conf_expect_map: `n` must be a map whose keys are all in `allowed`
 * (NULL-terminated): a misspelt key is an error, not silently ignored. */
int vigie_conf_expect_map(struct vigie_conf *c, const struct vigie_conf_node *n,
			  const char *const *allowed);

/* vigie_conf_section: the map or sequence under `key`; *out is set to NULL
 * when it is absent and optional. `want_seq` chooses which shape is
 * required. */
int vigie_conf_section(struct vigie_conf *c, const struct vigie_conf_node *map,
		       const char *key, bool want_seq, int flags,
		       const struct vigie_conf_node **out);

/* Typed getters. Strings point into the tree: valid until vigie_conf_free. */
int vigie_conf_str(struct vigie_conf *c, const struct vigie_conf_node *map,
		   const char *key, int flags, const char **out);
/* A topic id: [a-z0-9_-], 1..64 characters. */
int vigie_conf_id(struct vigie_conf *c, const struct vigie_conf_node *map,
		  const char *key, int flags, const char **out);
int vigie_conf_uint(struct vigie_conf *c, const struct vigie_conf_node *map,
		    const char *key, uint64_t min, uint64_t max, int flags,
		    uint64_t *out);
int vigie_conf_double(struct vigie_conf *c, const struct vigie_conf_node *map,
		      const char *key, double min, double max, int flags,
		      double *out);
int vigie_conf_bool(struct vigie_conf *c, const struct vigie_conf_node *map,
		    const char *key, int flags, bool *out);
/* A duration: "250ms", "5s", "2m", "1h" or bare milliseconds. */
int vigie_conf_duration(struct vigie_conf *c, const struct vigie_conf_node *map,
			const char *key, uint64_t min_ms, uint64_t max_ms,
			int flags, uint64_t *out_ms);
/* vigie_conf_str_list: a sequence of scalars (or one scalar) under `key`.
 * *out is a malloc'd array of pointers into the tree; free() it. */
int vigie_conf_str_list(struct vigie_conf *c, const struct vigie_conf_node *map,
			const char *key, int flags, const char ***out,
			size_t *count);

/* vigie_conf_intern: a copy of s[0..len) owned by the config, freed with it
 * (for values read from elsewhere, e.g. a password file). NULL when out of
 * memory. */
const char *vigie_conf_intern(struct vigie_conf *c, const char *s, size_t len);

/* A broker connection, spelt the same in every Vigie config:
 *   host: 127.0.0.1          (required)
 *   port: 1883               (default: the caller's)
 *   username: node
 *   password: secret         or  password_file: /etc/vigie/node.pw
 *                            (its first line; keeps the secret out of a
 *                            config that is often world-readable)
 *   protocol: auto           auto (MQTT 5, falling back to 3.1.1), 5, 3.1.1
 *   keepalive: 10            seconds, 5..3600
 *   tls: {ca: FILE, capath: DIR, cert: FILE, key: FILE, insecure: false}
 * `extra_keys` (NULL-terminated, may be NULL) are further keys the caller
 * reads itself from the same map. */
struct vigie_conf_broker {
	const char *host;
	int port;
	const char *username;
	const char *password;
	struct vigie_mqtt_tls tls;
	enum vigie_mqtt_protocol protocol;
	int keepalive_s;
};

/* vigie_conf_broker: read the broker map `map` into *out. Returns 0 or
 * VIGIE_ECONFIG (the first error recorded as usual). */
int vigie_conf_broker(struct vigie_conf *c, const struct vigie_conf_node *map,
		      int default_port, const char *const *extra_keys,
		      struct vigie_conf_broker *out);

/* vigie_conf_standby_distinct: a standby central (read from `map`) must be
 * another broker than the primary: the same one twice would carry every
 * message twice for no gain. Returns 0 or VIGIE_ECONFIG (error recorded
 * at `map`). */
int vigie_conf_standby_distinct(struct vigie_conf *c,
				const struct vigie_conf_node *map,
				const struct vigie_conf_broker *primary,
				const struct vigie_conf_broker *standby);

/* vigie_conf_broker_apply: copy the connection fields (host, port,
 * credentials, TLS, protocol, keepalive) into MQTT client options. */
void vigie_conf_broker_apply(const struct vigie_conf_broker *b,
			     struct vigie_mqtt_options *o);

#endif
