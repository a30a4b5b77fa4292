/* The broker section shared by every Vigie config (see config.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vigie/config.h"
#include "vigie/error.h"

#define BROKER_KEYS_MAX   32
#define PASSWORD_FILE_MAX 4096

static const char *const broker_keys[] = {
	"host",     "port",      "username", "password", "password_file",
	"protocol", "keepalive", "tls",      NULL};
static const char *const tls_keys[] = {"ca",  "capath",   "cert",
				       "key", "insecure", NULL};

static int read_password_file(struct vigie_conf *c,
			      const struct vigie_conf_node *map,
			      const char *path, const char **out)
{
	const struct vigie_conf_node *at = vigie_conf_get(map, "password_file");
	char buf[PASSWORD_FILE_MAX + 2];
	FILE *f = fopen(path, "r");
	size_t len;

	if (!f)
		return vigie_conf_fail(c, at, "cannot read %s: %s", path,
				       strerror(errno));
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	len = strcspn(buf, "\r\n");
	if (!len)
		return vigie_conf_fail(c, at, "%s: the first line is empty",
				       path);
	if (len > PASSWORD_FILE_MAX)
		return vigie_conf_fail(c, at,
				       "%s: password longer than %d bytes",
				       path, PASSWORD_FILE_MAX);
	*out = vigie_conf_intern(c, buf, len);
	return *out ? 0 : VIGIE_ENOMEM;
}

static int load_tls(struct vigie_conf *c, const struct vigie_conf_node *tls,
		    struct vigie_mqtt_tls *t)
{
	int rc = 0;

	rc |= vigie_conf_expect_map(c, tls, tls_keys);
	rc |= vigie_conf_str(c, tls, "ca", VIGIE_CONF_OPTIONAL, &t->cafile);
	rc |= vigie_conf_str(c, tls, "capath", VIGIE_CONF_OPTIONAL, &t->capath);
	rc |= vigie_conf_str(c, tls, "cert", VIGIE_CONF_OPTIONAL, &t->certfile);
	rc |= vigie_conf_str(c, tls, "key", VIGIE_CONF_OPTIONAL, &t->keyfile);
	rc |= vigie_conf_bool(c, tls, "insecure", VIGIE_CONF_OPTIONAL,
			      &t->insecure);
	if (rc)
		return VIGIE_ECONFIG;
	if (!t->cafile && !t->capath)
		return vigie_conf_fail(c, tls, "tls needs ca or capath");
	if (!t->certfile != !t->keyfile)
		return vigie_conf_fail(c, tls, "cert and key go together");
	return 0;
}

int vigie_conf_broker(struct vigie_conf *c, const struct vigie_conf_node *map,
		      int default_port, const char *const *extra_keys,
		      struct vigie_conf_broker *b)
{
	const char *keys[BROKER_KEYS_MAX];
	const struct vigie_conf_node *tls = NULL;
	const char *proto = NULL, *pwfile = NULL;
	uint64_t port = (uint64_t)default_port, keepalive = 10;
	size_t n = 0;
	int rc = 0;

	memset(b, 0, sizeof(*b));
	for (size_t i = 0; broker_keys[i] && n < BROKER_KEYS_MAX - 1; i++)
		keys[n++] = broker_keys[i];
	for (size_t i = 0;
	     extra_keys && extra_keys[i] && n < BROKER_KEYS_MAX - 1; i++)
		keys[n++] = extra_keys[i];
	keys[n] = NULL;
	rc |= vigie_conf_expect_map(c, map, keys);
	rc |= vigie_conf_str(c, map, "host", VIGIE_CONF_REQUIRED, &b->host);
	rc |= vigie_conf_uint(c, map, "port", 1, 65535,
			      default_port ? VIGIE_CONF_OPTIONAL
					   : VIGIE_CONF_REQUIRED,
			      &port);
	rc |= vigie_conf_str(c, map, "username", VIGIE_CONF_OPTIONAL,
			     &b->username);
	rc |= vigie_conf_str(c, map, "password", VIGIE_CONF_OPTIONAL,
			     &b->password);
	rc |= vigie_conf_str(c, map, "password_file", VIGIE_CONF_OPTIONAL,
			     &pwfile);
	rc |= vigie_conf_uint(c, map, "keepalive", 5, 3600, VIGIE_CONF_OPTIONAL,
			      &keepalive);
	rc |= vigie_conf_str(c, map, "protocol", VIGIE_CONF_OPTIONAL, &proto);
	rc |= vigie_conf_section(c, map, "tls", false, VIGIE_CONF_OPTIONAL,
				 &tls);
	if (rc)
		return VIGIE_ECONFIG;
	b->port = (int)port;
	b->keepalive_s = (int)keepalive;
	b->protocol = VIGIE_MQTT_AUTO;
	if (proto) {
		if (strcmp(proto, "5") == 0)
			b->protocol = VIGIE_MQTT_V5;
		else if (strcmp(proto, "3.1.1") == 0)
			b->protocol = VIGIE_MQTT_V311;
		else if (strcmp(proto, "auto") != 0)
			return vigie_conf_fail(
				c, vigie_conf_get(map, "protocol"),
				"expected auto, 5 or 3.1.1, got \"%s\"", proto);
	}
	if (b->password && pwfile)
		return vigie_conf_fail(
			c, vigie_conf_get(map, "password_file"),
			"give password or password_file, not both");
	if (pwfile && read_password_file(c, map, pwfile, &b->password))
		return VIGIE_ECONFIG;
	if (b->password && !b->username)
		return vigie_conf_fail(
			c,
			vigie_conf_get(map,
				       pwfile ? "password_file" : "password"),
			"a password needs a username");
	if (tls && load_tls(c, tls, &b->tls))
		return VIGIE_ECONFIG;
	return 0;
}

int vigie_conf_standby_distinct(struct vigie_conf *c,
				const struct vigie_conf_node *map,
				const struct vigie_conf_broker *primary,
				const struct vigie_conf_broker *standby)
{
	if (strcmp(standby->host, primary->host) != 0 ||
	    standby->port != primary->port)
		return 0;
	return vigie_conf_fail(c, map,
			       "the standby is the broker itself (%s:%d): give "
			       "the second central broker",
			       standby->host, standby->port);
}

void vigie_conf_broker_apply(const struct vigie_conf_broker *b,
			     struct vigie_mqtt_options *o)
{
	o->host = b->host;
	o->port = b->port;
	o->username = b->username;
	o->password = b->password;
	o->tls = b->tls;
	o->protocol = b->protocol;
	o->keepalive_s = b->keepalive_s;
}
