#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vigie/clock.h"
#include "vigie/codec.h"
#include "vigie/error.h"
#include "vigie/strbuf.h"

int vigie_id_valid(const char *s)
{
	size_t n = 0;

	if (!s)
		return 0;
	for (; s[n]; n++) {
		char ch = s[n];

		if (n >= VIGIE_ID_MAX)
			return 0;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '_'))
			return 0;
	}
	return n > 0;
}

/* Layout of each topic: a printf format with one or two %s, and whether the
 * second word is needed. Kept in one table so build and parse cannot drift. */
static const struct {
	enum vigie_topic_type type;
	const char *fmt;
	int words;
} topic_table[] = {
	{VIGIE_TOPIC_EVENT, "vigie/v1/site/%s/node/%s/event", 2},
	{VIGIE_TOPIC_STATE, "vigie/v1/site/%s/node/%s/state", 2},
	{VIGIE_TOPIC_HEARTBEAT, "vigie/v1/site/%s/node/%s/heartbeat", 2},
	{VIGIE_TOPIC_RECEIPT, "vigie/v1/relay/%s/receipt/%s", 2},
	{VIGIE_TOPIC_ALERT, "vigie/v1/relay/%s/alert", 1},
	{VIGIE_TOPIC_STATUS, "vigie/v1/status/%s", 1},
	{VIGIE_TOPIC_INCIDENT, "vigie/v1/incident/%s", 1},
	{VIGIE_TOPIC_DISPATCH, "vigie/v1/post/%s/dispatch", 1},
	{VIGIE_TOPIC_ACK, "vigie/v1/post/%s/ack", 1},
	{VIGIE_TOPIC_POST_STATE, "vigie/v1/post/%s/state", 1},
	{VIGIE_TOPIC_PATTERN, "vigie/v1/pattern/%s", 1},
};
#define TOPIC_TABLE_LEN (sizeof(topic_table) / sizeof(topic_table[0]))

int vigie_topic_build(char *buf, size_t len, enum vigie_topic_type type,
		      const char *a, const char *b)
{
	for (size_t i = 0; i < TOPIC_TABLE_LEN; i++) {
		int n;

		if (topic_table[i].type != type)
			continue;
		if (!vigie_id_valid(a))
			return VIGIE_EINVAL;
		if (topic_table[i].words == 2 && !vigie_id_valid(b))
			return VIGIE_EINVAL;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		n = snprintf(buf, len, topic_table[i].fmt, a, b);
#pragma GCC diagnostic pop
		if (n < 0 || (size_t)n >= len)
			return VIGIE_ETOOBIG;
		return 0;
	}
	return VIGIE_EINVAL;
}

/* Split `topic` on '/' into at most `max` words; returns the word count or -1
 * when there are more. Words point into `copy`. */
static int split_topic(char *copy, char **words, int max)
{
	int n = 0;
	char *p = copy;

	for (;;) {
		char *slash = strchr(p, '/');

		if (n == max)
			return -1;
		words[n++] = p;
		if (!slash)
			return n;
		*slash = '\0';
		p = slash + 1;
	}
}

static int copy_id(char *dst, const char *src)
{
	if (!vigie_id_valid(src))
		return VIGIE_EINVAL;
	strcpy(dst, src);
	return 0;
}

int vigie_topic_parse(const char *topic, struct vigie_topic *out)
{
	char copy[VIGIE_TOPIC_MAX + 1];
	char *w[8];
	int n;

	memset(out, 0, sizeof(*out));
	if (!topic || strlen(topic) > VIGIE_TOPIC_MAX)
		return VIGIE_EINVAL;
	strcpy(copy, topic);
	n = split_topic(copy, w, 8);
	if (n < 4 || strcmp(w[0], "vigie") != 0 || strcmp(w[1], "v1") != 0)
		return VIGIE_EINVAL;

	if (strcmp(w[2], "site") == 0 && n == 7 && strcmp(w[4], "node") == 0) {
		if (strcmp(w[6], "event") == 0)
			out->type = VIGIE_TOPIC_EVENT;
		else if (strcmp(w[6], "state") == 0)
			out->type = VIGIE_TOPIC_STATE;
		else if (strcmp(w[6], "heartbeat") == 0)
			out->type = VIGIE_TOPIC_HEARTBEAT;
		else
			return VIGIE_EINVAL;
		if (copy_id(out->site, w[3]) || copy_id(out->node, w[5]))
			goto invalid;
		return 0;
	}
	if (strcmp(w[2], "relay") == 0) {
		if (n == 6 && strcmp(w[4], "receipt") == 0) {
			out->type = VIGIE_TOPIC_RECEIPT;
			if (copy_id(out->site, w[3]) ||
			    copy_id(out->node, w[5]))
				goto invalid;
			return 0;
		}
		if (n == 5 && strcmp(w[4], "alert") == 0) {
			out->type = VIGIE_TOPIC_ALERT;
			if (copy_id(out->site, w[3]))
				goto invalid;
			return 0;
		}
		return VIGIE_EINVAL;
	}
	if (n == 4 && strcmp(w[2], "status") == 0) {
		out->type = VIGIE_TOPIC_STATUS;
		if (copy_id(out->site, w[3]))
			goto invalid;
		return 0;
	}
	if (n == 4 && strcmp(w[2], "incident") == 0) {
		out->type = VIGIE_TOPIC_INCIDENT;
		if (copy_id(out->id, w[3]))
			goto invalid;
		return 0;
	}
	if (n == 4 && strcmp(w[2], "pattern") == 0) {
		out->type = VIGIE_TOPIC_PATTERN;
		if (copy_id(out->id, w[3]))
			goto invalid;
		return 0;
	}
	if (n == 5 && strcmp(w[2], "post") == 0) {
		if (strcmp(w[4], "dispatch") == 0)
			out->type = VIGIE_TOPIC_DISPATCH;
		else if (strcmp(w[4], "ack") == 0)
			out->type = VIGIE_TOPIC_ACK;
		else if (strcmp(w[4], "state") == 0)
			out->type = VIGIE_TOPIC_POST_STATE;
		else
			return VIGIE_EINVAL;
		if (copy_id(out->id, w[3]))
			goto invalid;
		return 0;
	}
	return VIGIE_EINVAL;
invalid:
	out->type = VIGIE_TOPIC_UNKNOWN;
	return VIGIE_EINVAL;
}

/* Enum names come from the generated descriptors, minus their prefix and in
 * lower case, so a kind added to the proto needs no code here. */
static const char *enum_name(const ProtobufCEnumDescriptor *d, int value,
			     size_t prefix_len, char (*names)[40])
{
	for (unsigned i = 0; i < d->n_values; i++) {
		if (d->values[i].value != value)
			continue;
		if (!names[i][0]) {
			const char *src = d->values[i].name + prefix_len;
			size_t j = 0;

			for (; src[j] && j < 39; j++)
				names[i][j] =
					(char)tolower((unsigned char)src[j]);
			names[i][j] = '\0';
		}
		return names[i];
	}
	return "unknown";
}

static int enum_parse(const ProtobufCEnumDescriptor *d, const char *prefix,
		      const char *name, int *out)
{
	size_t plen = strlen(prefix);
	char norm[64];
	size_t j = 0;

	if (!name || !*name)
		return VIGIE_EINVAL;
	if (strncasecmp(name, prefix, plen) == 0)
		name += plen;
	for (; name[j]; j++) {
		char ch = name[j];

		if (j + plen + 1 >= sizeof(norm))
			return VIGIE_EINVAL;
		norm[j] = ch == '-' ? '_' : (char)toupper((unsigned char)ch);
	}
	norm[j] = '\0';
	for (unsigned i = 0; i < d->n_values; i++) {
		const char *vn = d->values[i].name;

		if (strncmp(vn, prefix, plen) == 0 &&
		    strcmp(vn + plen, norm) == 0 && d->values[i].value != 0) {
			*out = d->values[i].value;
			return 0;
		}
	}
	return VIGIE_EINVAL;
}

/* Lowered names are cached on first use; the loop is single-threaded and
 * the strings are the same in any thread, so a race would write equal bytes. */
static char kind_names[64][40];
static char state_names[16][40];
static char priority_names[16][40];

const char *vigie_kind_name(int kind)
{
	if (vigie__v1__event_kind__descriptor.n_values > 64)
		return "unknown";
	return enum_name(&vigie__v1__event_kind__descriptor, kind,
			 strlen("KIND_"), kind_names);
}

const char *vigie_state_name(int state)
{
	return enum_name(&vigie__v1__event_state__descriptor, state,
			 strlen("STATE_"), state_names);
}

const char *vigie_priority_name(int priority)
{
	return enum_name(&vigie__v1__priority__descriptor, priority,
			 strlen("PRIORITY_"), priority_names);
}

int vigie_kind_parse(const char *name, int *out)
{
	return enum_parse(&vigie__v1__event_kind__descriptor, "KIND_", name,
			  out);
}

int vigie_state_parse(const char *name, int *out)
{
	return enum_parse(&vigie__v1__event_state__descriptor, "STATE_", name,
			  out);
}

int vigie_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf;

	if (len > VIGIE_MAX_PAYLOAD)
		return VIGIE_ETOOBIG;
	/* malloc(0) may return NULL: keep one byte for empty messages. */
	buf = malloc(len ? len : 1);
	if (!buf)
		return VIGIE_ENOMEM;
	protobuf_c_message_pack(msg, buf);
	*out = buf;
	*out_len = len;
	return 0;
}

int vigie_event_encode(const Vigie__V1__Event *ev, const uint8_t *sig,
		       size_t sig_len, const char *key_id, uint8_t **out,
		       size_t *out_len)
{
	Vigie__V1__SignedEvent se = VIGIE__V1__SIGNED_EVENT__INIT;
	uint8_t *inner;
	size_t inner_len;
	int rc;

	rc = vigie_pack(&ev->base, &inner, &inner_len);
	if (rc)
		return rc;
	se.event.data = inner;
	se.event.len = inner_len;
	se.signature.data = (uint8_t *)sig;
	se.signature.len = sig ? sig_len : 0;
	se.key_id = (char *)(key_id ? key_id : "");
	rc = vigie_pack(&se.base, out, out_len);
	free(inner);
	return rc;
}

int vigie_event_decode(const void *payload, size_t len,
		       Vigie__V1__SignedEvent **signed_out,
		       Vigie__V1__Event **event_out)
{
	Vigie__V1__SignedEvent *se;
	Vigie__V1__Event *ev;

	if (len > VIGIE_MAX_PAYLOAD)
		return VIGIE_ETOOBIG;
	se = vigie__v1__signed_event__unpack(NULL, len, payload);
	if (!se)
		return VIGIE_EDECODE;
	ev = vigie__v1__event__unpack(NULL, se->event.len, se->event.data);
	if (!ev) {
		vigie__v1__signed_event__free_unpacked(se, NULL);
		return VIGIE_EDECODE;
	}
	*signed_out = se;
	*event_out = ev;
	return 0;
}

void vigie_event_free(Vigie__V1__SignedEvent *se, Vigie__V1__Event *ev)
{
	if (ev)
		vigie__v1__event__free_unpacked(ev, NULL);
	if (se)
		vigie__v1__signed_event__free_unpacked(se, NULL);
}

char *vigie_event_format(const Vigie__V1__Event *ev, char *buf, size_t len)
{
	char stamp[40];
	size_t pos = 0;

	if (!len)
		return buf;
	buf[0] = '\0';
	vigie_clock_format_us(ev->time_us, stamp, sizeof(stamp));
	vigie_appendf(buf, len, &pos, "%s %s/%s #%llu.%llu %s %s", stamp,
		      ev->site, ev->node, (unsigned long long)ev->boot_id,
		      (unsigned long long)ev->seq, vigie_kind_name(ev->kind),
		      vigie_state_name(ev->state));
	if (ev->zone && *ev->zone)
		vigie_appendf(buf, len, &pos, " zone=%s", ev->zone);
	if (ev->sensor && *ev->sensor)
		vigie_appendf(buf, len, &pos, " sensor=%s", ev->sensor);
	for (size_t i = 0; i < ev->n_attributes; i++)
		vigie_appendf(buf, len, &pos, " %s=%s", ev->attributes[i]->key,
			      ev->attributes[i]->value);
	if (ev->source_code && *ev->source_code)
		vigie_appendf(buf, len, &pos, " code=%s", ev->source_code);
	if (ev->text && *ev->text)
		vigie_appendf(buf, len, &pos, " \"%s\"", ev->text);
	return buf;
}
