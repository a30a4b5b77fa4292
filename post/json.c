/* JSON lines for scripts: one object per line, fields in a fixed order.
 *
 * No JSON library: the only hard part is strings, and those come from the
 * wire, where protobuf-c does not check that a `string` holds UTF-8. So the
 * escaper takes any bytes and always produces valid JSON in valid UTF-8:
 * invalid sequences become U+FFFD, control characters (C0, DEL, C1) are
 * \u-escaped so no escape sequence reaches a terminal that shows the
 * stream, and U+2028/U+2029 are escaped for JavaScript consumers. */
#include <math.h>
#include <string.h>

#include "post.h"
#include "vigie/error.h"

static int add_u(struct post_buf *b, uint32_t cp)
{
	return vigie__postbuf_addf(b, "\\u%04x", (unsigned)cp);
}

int vigie__postjson_str(struct post_buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	vigie__postbuf_addc(b, '"');
	while (i < len) {
		unsigned char c = p[i];
		uint32_t cp;
		size_t n;

		if (c < 0x80) {
			switch (c) {
			case '"':
				vigie__postbuf_adds(b, "\\\"");
				break;
			case '\\':
				vigie__postbuf_adds(b, "\\\\");
				break;
			case '\n':
				vigie__postbuf_adds(b, "\\n");
				break;
			case '\r':
				vigie__postbuf_adds(b, "\\r");
				break;
			case '\t':
				vigie__postbuf_adds(b, "\\t");
				break;
			case '\b':
				vigie__postbuf_adds(b, "\\b");
				break;
			case '\f':
				vigie__postbuf_adds(b, "\\f");
				break;
			default:
				if (c < 0x20 || c == 0x7f)
					add_u(b, c);
				else
					vigie__postbuf_addc(b, (char)c);
			}
			i++;
			continue;
		}
		n = vigie__postutf8_next(p + i, len - i, &cp);
		if (!n) {
			/* One replacement per invalid byte: simple, and never
			 * swallows a valid character that follows. */
			vigie__postbuf_adds(b, "\\ufffd");
			i++;
			continue;
		}
		if (cp < 0xa0 || cp == 0x2028 || cp == 0x2029)
			add_u(b, cp);
		else
			vigie__postbuf_add(b, p + i, n);
		i += n;
	}
	vigie__postbuf_addc(b, '"');
	return b->err;
}

int vigie__postjson_cstr(struct post_buf *b, const char *s)
{
	if (!s)
		return vigie__postbuf_adds(b, "null");
	return vigie__postjson_str(b, s, strlen(s));
}

/* A key and a string value, with the comma before. */
static void kv_str(struct post_buf *b, const char *key, const char *value)
{
	vigie__postbuf_addf(b, ",\"%s\":", key);
	vigie__postjson_cstr(b, value);
}

/* An optional string: null when empty. */
static void kv_opt(struct post_buf *b, const char *key, const char *value)
{
	kv_str(b, key, value && *value ? value : NULL);
}

static void kv_u64(struct post_buf *b, const char *key, uint64_t v)
{
	vigie__postbuf_addf(b, ",\"%s\":%llu", key, (unsigned long long)v);
}

static void kv_bool(struct post_buf *b, const char *key, bool v)
{
	vigie__postbuf_addf(b, ",\"%s\":%s", key, v ? "true" : "false");
}

/* NaN and infinities are not JSON: a location holding one is null. */
static void kv_location(struct post_buf *b, const char *key, bool has,
			double lat, double lon)
{
	if (!has || !isfinite(lat) || !isfinite(lon)) {
		vigie__postbuf_addf(b, ",\"%s\":null", key);
		return;
	}
	vigie__postbuf_addf(b, ",\"%s\":{\"lat\":%.7f,\"lon\":%.7f}", key, lat,
			    lon);
}

static const char *ack_name(enum post_ack_state s)
{
	switch (s) {
	case POST_ACK_PENDING:
		return "pending";
	case POST_ACK_SENT:
		return "sent";
	case POST_ACK_CONFIRMED:
		return "confirmed";
	default:
		return "none";
	}
}

int vigie__postjson_dispatch(struct post_buf *b, const struct post_entry *e,
			     uint64_t now_us, bool is_new)
{
	const struct post_dispatch *d = &e->d;
	uint64_t first = d->first_event_us ? d->first_event_us : e->received_us;
	uint64_t age = now_us > first ? (now_us - first) / 1000000u : 0;

	/* The fields scripts rely on come first, in the documented order. */
	vigie__postbuf_adds(b, "{\"type\":\"dispatch\"");
	kv_str(b, "id", d->id);
	kv_str(b, "incident", d->incident);
	kv_str(b, "site", d->site);
	kv_str(b, "zone", d->zone_id);
	kv_str(b, "kind", vigie_kind_name(d->kind));
	kv_str(b, "priority", vigie_priority_name(d->priority));
	kv_bool(b, "confirmed", d->confirmed);
	kv_u64(b, "level", d->level);
	kv_u64(b, "attempt", d->attempt);
	kv_u64(b, "first_event_us", d->first_event_us);
	kv_u64(b, "age_s", age);
	kv_opt(b, "pattern", d->pattern);
	/* Then the rest, also stable. */
	kv_bool(b, "new", is_new);
	kv_opt(b, "backup_for", d->backup_for);
	kv_str(b, "ack", ack_name(e->ack));
	kv_bool(b, "acked", e->ack >= POST_ACK_SENT);
	kv_opt(b, "acked_by", e->acked_by);
	kv_bool(b, "superseded", e->superseded);
	kv_bool(b, "closed", e->closed);
	kv_u64(b, "sent_us", d->sent_us);
	kv_u64(b, "received_us", e->received_us);
	kv_opt(b, "level_name", d->level_name);
	kv_opt(b, "site_name", d->site_name);
	kv_opt(b, "address", d->address);
	kv_location(b, "site_location", d->has_site_location, d->site_lat,
		    d->site_lon);
	kv_opt(b, "zone_name", d->zone_name);
	kv_opt(b, "floor", d->zone_floor);
	kv_opt(b, "facade", d->zone_facade);
	kv_opt(b, "zone_kind", d->zone_kind);
	kv_location(b, "location", d->has_zone_location, d->zone_lat,
		    d->zone_lon);
	vigie__postbuf_adds(b, ",\"cameras\":[");
	for (size_t i = 0; i < d->n_cameras; i++) {
		if (i)
			vigie__postbuf_addc(b, ',');
		vigie__postjson_cstr(b, d->cameras[i]);
	}
	vigie__postbuf_addc(b, ']');
	kv_opt(b, "action_plan",
	       *d->action_plan ? d->action_plan : d->zone_action_plan);
	kv_opt(b, "text", d->text);
	vigie__postbuf_adds(b, ",\"attributes\":[");
	for (size_t i = 0; i < d->n_attrs; i++) {
		vigie__postbuf_adds(b, i ? ",{\"key\":" : "{\"key\":");
		vigie__postjson_cstr(b, d->attrs[i].key);
		vigie__postbuf_adds(b, ",\"value\":");
		vigie__postjson_cstr(b, d->attrs[i].value);
		vigie__postbuf_addc(b, '}');
	}
	vigie__postbuf_adds(b, "]}\n");
	return b->err;
}

int vigie__postjson_ack(struct post_buf *b, const char *dispatch,
			const char *incident, const char *by, uint64_t time_us)
{
	vigie__postbuf_adds(b, "{\"type\":\"ack\"");
	kv_str(b, "dispatch", dispatch);
	kv_str(b, "incident", incident);
	kv_str(b, "by", by);
	kv_u64(b, "time_us", time_us);
	vigie__postbuf_adds(b, "}\n");
	return b->err;
}

int vigie__postjson_error(struct post_buf *b, const char *command,
			  const char *error)
{
	vigie__postbuf_adds(b, "{\"type\":\"error\"");
	kv_str(b, "command", command);
	kv_str(b, "error", error);
	vigie__postbuf_adds(b, "}\n");
	return b->err;
}

int vigie__postjson_status(struct post_buf *b, const char *post, bool connected,
			   bool session_present)
{
	vigie__postbuf_adds(b, "{\"type\":\"status\"");
	kv_str(b, "post", post);
	kv_bool(b, "connected", connected);
	kv_bool(b, "session_present", session_present);
	vigie__postbuf_adds(b, "}\n");
	return b->err;
}
