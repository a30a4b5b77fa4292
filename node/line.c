/* The event line format: one event per line, space-separated key=value
 * words, values optionally "double quoted" with \" and \\ escapes.
 *
 *   kind=glass_break state=alarm zone=apollo-gallery sensor=gb-3 \
 *     text="window cut" tool=angle-grinder entry=window
 *
 * kind is required; state defaults to alarm. zone, sensor, text, code and
 * time (Unix seconds, fractions allowed) are fields of the event; every other
 * key is a modus-operandi attribute kept in order. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "vigie/error.h"

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static int key_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '-' || ch == '.';
}

/* Read one value at *p (quoted or bare) into out (cap bytes incl. NUL). */
static int read_value(const char **p, const char *end, char *out, size_t cap,
		      const char *key, char *err, size_t errlen)
{
	const char *s = *p;
	size_t n = 0;

	if (s < end && *s == '"') {
		s++;
		for (;;) {
			char ch;

			if (s >= end)
				return fail(err, errlen, VIGIE_EINVAL,
					    "%s: unterminated quoted value",
					    key);
			ch = *s++;
			if (ch == '"')
				break;
			if (ch == '\\') {
				if (s >= end)
					return fail(err, errlen, VIGIE_EINVAL,
						    "%s: dangling backslash",
						    key);
				ch = *s++;
				if (ch == 'n')
					ch = '\n';
				else if (ch != '"' && ch != '\\')
					return fail(err, errlen, VIGIE_EINVAL,
						    "%s: unknown escape \\%c",
						    key, ch);
			}
			if ((unsigned char)ch < 0x20 && ch != '\n')
				return fail(err, errlen, VIGIE_EINVAL,
					    "%s: control character in value",
					    key);
			if (n + 1 >= cap)
				return fail(err, errlen, VIGIE_ETOOBIG,
					    "%s: value longer than %zu bytes",
					    key, cap - 1);
			out[n++] = ch;
		}
		if (s < end && !isspace((unsigned char)*s))
			return fail(err, errlen, VIGIE_EINVAL,
				    "%s: text after closing quote", key);
	} else {
		while (s < end && !isspace((unsigned char)*s)) {
			if (*s == '"' || (unsigned char)*s < 0x20)
				return fail(err, errlen, VIGIE_EINVAL,
					    "%s: stray quote or control "
					    "character (quote the whole value)",
					    key);
			if (n + 1 >= cap)
				return fail(err, errlen, VIGIE_ETOOBIG,
					    "%s: value longer than %zu bytes",
					    key, cap - 1);
			out[n++] = *s++;
		}
	}
	out[n] = '\0';
	*p = s;
	return 0;
}

static int parse_time(const char *v, uint64_t *out)
{
	char *end;
	double secs;

	if (!*v || *v == '-')
		return VIGIE_EINVAL;
	secs = strtod(v, &end);
	/* Events are stamped from 2001 to 2100; anything else is a mistake
	 * (milliseconds given for seconds, say). */
	if (*end || secs < 1e9 || secs > 4102444800.0)
		return VIGIE_EINVAL;
	*out = (uint64_t)(secs * 1e6 + 0.5);
	return 0;
}

int vigie__line_parse(const char *line, size_t len, struct node_event *ev,
		      char *err, size_t errlen)
{
	const char *p = line, *end;
	int have_kind = 0, have_state = 0;
	int rc;

	memset(ev, 0, sizeof(*ev));
	if (len > NODE_LINE_MAX)
		return fail(err, errlen, VIGIE_ETOOBIG,
			    "line longer than %d bytes", NODE_LINE_MAX);
	end = line + len;
	/* A trailing CR (from a telnet/socat peer) is not part of the line. */
	while (end > line && (end[-1] == '\r' || end[-1] == '\n'))
		end--;
	if (memchr(line, '\0', (size_t)(end - line)))
		return fail(err, errlen, VIGIE_EINVAL, "NUL byte in line");

	for (;;) {
		char key[NODE_ATTR_KEY_MAX + 1];
		char value[NODE_TEXT_MAX + 1];
		size_t klen = 0;

		while (p < end && isspace((unsigned char)*p))
			p++;
		if (p >= end)
			break;
		while (p < end && *p != '=' && !isspace((unsigned char)*p)) {
			if (!key_char(*p))
				return fail(err, errlen, VIGIE_EINVAL,
					    "invalid character '%c' in key "
					    "(keys are [a-z0-9_.-])",
					    isprint((unsigned char)*p) ? *p
								       : '?');
			if (klen >= NODE_ATTR_KEY_MAX)
				return fail(err, errlen, VIGIE_ETOOBIG,
					    "key longer than %d characters",
					    NODE_ATTR_KEY_MAX);
			key[klen++] = *p++;
		}
		key[klen] = '\0';
		if (p >= end || *p != '=')
			return fail(err, errlen, VIGIE_EINVAL,
				    "expected key=value, got \"%s\"", key);
		if (!klen)
			return fail(err, errlen, VIGIE_EINVAL,
				    "empty key before '='");
		p++;
		rc = read_value(&p, end, value, sizeof(value), key, err,
				errlen);
		if (rc)
			return rc;

		if (strcmp(key, "kind") == 0) {
			if (vigie_kind_parse(value, &ev->kind))
				return fail(err, errlen, VIGIE_EINVAL,
					    "kind: unknown kind \"%s\"", value);
			have_kind = 1;
		} else if (strcmp(key, "state") == 0) {
			if (vigie_state_parse(value, &ev->state))
				return fail(err, errlen, VIGIE_EINVAL,
					    "state: unknown state \"%s\" "
					    "(alarm, restore, trouble, test)",
					    value);
			have_state = 1;
		} else if (strcmp(key, "zone") == 0 ||
			   strcmp(key, "sensor") == 0) {
			if (!vigie_id_valid(value))
				return fail(err, errlen, VIGIE_EINVAL,
					    "%s: \"%s\" is not an id "
					    "([a-z0-9_-], 1-64)",
					    key, value);
			strcpy(key[0] == 'z' ? ev->zone : ev->sensor, value);
		} else if (strcmp(key, "text") == 0) {
			strcpy(ev->text, value);
		} else if (strcmp(key, "code") == 0) {
			if (strlen(value) >= sizeof(ev->code))
				return fail(err, errlen, VIGIE_ETOOBIG,
					    "code: longer than %zu bytes",
					    sizeof(ev->code) - 1);
			strcpy(ev->code, value);
		} else if (strcmp(key, "time") == 0) {
			if (parse_time(value, &ev->time_us))
				return fail(err, errlen, VIGIE_EINVAL,
					    "time: \"%s\" is not Unix seconds",
					    value);
		} else {
			if (ev->n_attrs >= NODE_ATTR_MAX)
				return fail(err, errlen, VIGIE_ETOOBIG,
					    "more than %d attributes",
					    NODE_ATTR_MAX);
			if (strlen(value) > NODE_ATTR_VALUE_MAX)
				return fail(err, errlen, VIGIE_ETOOBIG,
					    "%s: value longer than %d bytes",
					    key, NODE_ATTR_VALUE_MAX);
			strcpy(ev->attrs[ev->n_attrs].key, key);
			strcpy(ev->attrs[ev->n_attrs].value, value);
			ev->n_attrs++;
		}
	}
	if (!have_kind)
		return fail(err, errlen, VIGIE_EINVAL,
			    "kind: missing (e.g. kind=intrusion)");
	if (!have_state)
		ev->state = VIGIE__V1__EVENT_STATE__STATE_ALARM;
	return 0;
}
