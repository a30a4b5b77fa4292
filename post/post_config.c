/* vigie-post's YAML configuration (examples/post.yaml shows every key), and
 * the command-line flags that override it or replace it for quick use. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "post.h"
#include "vigie/error.h"

static const char *const top_keys[] = {
	"post",       "name",           "operator",
	"broker",     "standby",        "session_expiry",
	"keep_acked", "max_dispatches", "follow_incidents",
	NULL};

#define DEFAULT_HOST              "127.0.0.1"
#define DEFAULT_PORT              1883
#define DEFAULT_SESSION_EXPIRY_MS (24ull * 3600 * 1000)
#define DEFAULT_KEEP_ACKED_MS     (15ull * 60 * 1000)
#define DEFAULT_MAX_DISPATCHES    4096

static void set_defaults(struct post_config *cfg)
{
	cfg->broker.host = DEFAULT_HOST;
	cfg->broker.port = DEFAULT_PORT;
	cfg->broker.keepalive_s = 10;
	cfg->broker.protocol = VIGIE_MQTT_AUTO;
	cfg->session_expiry_ms = DEFAULT_SESSION_EXPIRY_MS;
	cfg->keep_acked_ms = DEFAULT_KEEP_ACKED_MS;
	cfg->max_dispatches = DEFAULT_MAX_DISPATCHES;
	cfg->follow_incidents = true;
}

static int load_file(const char *path, struct post_config *cfg)
{
	const struct vigie_conf_node *root, *broker = NULL, *standby = NULL;
	struct vigie_conf *c = NULL;
	const char *op = NULL;
	int rc;

	rc = vigie_conf_load(path, &c);
	cfg->conf = c;
	if (rc)
		return rc;
	root = vigie_conf_root(c);
	rc = vigie_conf_expect_map(c, root, top_keys);
	rc |= vigie_conf_id(c, root, "post", VIGIE_CONF_REQUIRED, &cfg->post);
	rc |= vigie_conf_str(c, root, "name", VIGIE_CONF_OPTIONAL, &cfg->name);
	rc |= vigie_conf_str(c, root, "operator", VIGIE_CONF_OPTIONAL, &op);
	rc |= vigie_conf_duration(c, root, "session_expiry", 1000,
				  (uint64_t)UINT32_MAX * 1000,
				  VIGIE_CONF_OPTIONAL, &cfg->session_expiry_ms);
	rc |= vigie_conf_duration(c, root, "keep_acked", 0, 7ull * 86400 * 1000,
				  VIGIE_CONF_OPTIONAL, &cfg->keep_acked_ms);
	rc |= vigie_conf_uint(c, root, "max_dispatches", 16, 1000000,
			      VIGIE_CONF_OPTIONAL, &cfg->max_dispatches);
	rc |= vigie_conf_bool(c, root, "follow_incidents", VIGIE_CONF_OPTIONAL,
			      &cfg->follow_incidents);
	rc |= vigie_conf_section(c, root, "broker", false, VIGIE_CONF_REQUIRED,
				 &broker);
	rc |= vigie_conf_section(c, root, "standby", false, VIGIE_CONF_OPTIONAL,
				 &standby);
	if (rc)
		return VIGIE_ECONFIG;
	if (op && !vigie__postmsg_operator_valid(op))
		return vigie_conf_fail(c, vigie_conf_get(root, "operator"),
				       "expected a name of 1 to %d bytes "
				       "without control characters",
				       POST_NAME_MAX);
	cfg->operator_name = op;
	rc = vigie_conf_broker(c, broker, DEFAULT_PORT, NULL, &cfg->broker);
	if (rc || !standby)
		return rc;
	rc = vigie_conf_broker(c, standby, DEFAULT_PORT, NULL, &cfg->standby);
	if (rc)
		return rc;
	if (vigie_conf_standby_distinct(c, standby, &cfg->broker,
					&cfg->standby))
		return VIGIE_ECONFIG;
	cfg->has_standby = true;
	return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return VIGIE_ECONFIG;
}

static int apply_overrides(const struct post_overrides *ov,
			   struct post_config *cfg, char *err, size_t errlen)
{
	if (ov->post)
		cfg->post = ov->post;
	if (ov->name)
		cfg->name = ov->name;
	if (ov->operator_name)
		cfg->operator_name = ov->operator_name;
	if (ov->host)
		cfg->broker.host = ov->host;
	if (ov->port)
		cfg->broker.port = ov->port;
	if (ov->user)
		cfg->broker.username = ov->user;
	if (ov->password)
		cfg->broker.password = ov->password;
	if (ov->cafile)
		cfg->broker.tls.cafile = ov->cafile;
	if (ov->certfile)
		cfg->broker.tls.certfile = ov->certfile;
	if (ov->keyfile)
		cfg->broker.tls.keyfile = ov->keyfile;
	if (!cfg->post)
		return fail(err, errlen,
			    "--post: a post id is required (or -c FILE with "
			    "post:)");
	if (!vigie_id_valid(cfg->post))
		return fail(err, errlen,
			    "--post: expected an id of [a-z0-9_-], 1 to %d "
			    "characters, got \"%s\"",
			    VIGIE_ID_MAX, cfg->post);
	if (ov->operator_name &&
	    !vigie__postmsg_operator_valid(ov->operator_name))
		return fail(err, errlen,
			    "--by: expected a name of 1 to %d bytes without "
			    "control characters",
			    POST_NAME_MAX);
	if (ov->name && !*ov->name)
		return fail(err, errlen, "--name: must not be empty");
	if (!*cfg->broker.host)
		return fail(err, errlen, "--host: must not be empty");
	if (cfg->broker.password && !cfg->broker.username)
		return fail(err, errlen, "--password: a password needs --user");
	if (!cfg->broker.tls.cafile && !cfg->broker.tls.capath &&
	    cfg->broker.tls.certfile)
		return fail(err, errlen, "--cert: TLS needs --cafile");
	if (!cfg->broker.tls.certfile != !cfg->broker.tls.keyfile)
		return fail(err, errlen, "--cert and --key go together");
	if (!cfg->name)
		cfg->name = cfg->post;
	return 0;
}

int vigie__postconf_load(const char *path, const struct post_overrides *ov,
			 struct post_config *cfg, char *err, size_t errlen)
{
	static const struct post_overrides none;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	set_defaults(cfg);
	cfg->path = path;
	if (path) {
		rc = load_file(path, cfg);
		if (rc) {
			snprintf(err, errlen, "%s",
				 cfg->conf && vigie_conf_error(cfg->conf)
					 ? vigie_conf_error(cfg->conf)
					 : "invalid configuration");
			vigie__postconf_free(cfg);
			return rc == VIGIE_ENOMEM ? rc : VIGIE_ECONFIG;
		}
	}
	rc = apply_overrides(ov ? ov : &none, cfg, err, errlen);
	if (rc)
		vigie__postconf_free(cfg);
	return rc;
}

void vigie__postconf_free(struct post_config *cfg)
{
	vigie_conf_free(cfg->conf);
	memset(cfg, 0, sizeof(*cfg));
}
