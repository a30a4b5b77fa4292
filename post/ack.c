/* What the post says on the wire: its Ack and its PostState, and the names
 * that go into them. */
#include <stdio.h>
#include <string.h>

#include "post.h"
#include "vigie/error.h"

int vigie__postmsg_incident_from_id(const char *id, char *out, size_t len)
{
	const char *dash;
	size_t digits, prefix;

	if (!id || !len)
		return VIGIE_EINVAL;
	dash = strrchr(id, '-');
	if (!dash || dash == id || dash[1] != 'l')
		return VIGIE_EINVAL;
	digits = strspn(dash + 2, "0123456789");
	if (digits == 0 || dash[2 + digits] != '\0')
		return VIGIE_EINVAL;
	prefix = (size_t)(dash - id);
	if (prefix >= len)
		return VIGIE_ETOOBIG;
	memcpy(out, id, prefix);
	out[prefix] = '\0';
	return 0;
}

int vigie__postmsg_operator_valid(const char *name)
{
	const unsigned char *s = (const unsigned char *)name;
	size_t len, i = 0;
	int printable = 0;

	if (!name)
		return 0;
	len = strlen(name);
	if (len == 0 || len > POST_NAME_MAX)
		return 0;
	while (i < len) {
		uint32_t cp;
		size_t n = vigie__postutf8_next(s + i, len - i, &cp);

		if (!n || cp < 0x20 || cp == 0x7f ||
		    (cp >= 0x80 && cp < 0xa0) || cp == 0x2028 || cp == 0x2029)
			return 0;
		if (cp != ' ')
			printable = 1;
		i += n;
	}
	return printable;
}

int vigie__postmsg_id_valid(const char *id)
{
	size_t n;

	if (!id)
		return 0;
	n = strspn(id, "abcdefghijklmnopqrstuvwxyz"
		       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-");
	return n > 0 && n <= POST_ID_MAX && id[n] == '\0';
}

int vigie__postmsg_ack_pack(const char *post, const char *dispatch,
			    const char *incident, const char *by,
			    uint64_t time_us, uint8_t **out, size_t *len)
{
	Vigie__V1__Ack ack = VIGIE__V1__ACK__INIT;

	ack.dispatch = (char *)dispatch;
	ack.incident = (char *)(incident ? incident : "");
	ack.post = (char *)post;
	ack.by = (char *)by;
	ack.time_us = time_us;
	ack.source = (char *)"post";
	return vigie_pack(&ack.base, out, len);
}

int vigie__postmsg_state_pack(const char *post, int status, const char *name,
			      const char *reason, uint64_t time_us,
			      uint8_t **out, size_t *len)
{
	Vigie__V1__PostState st = VIGIE__V1__POST_STATE__INIT;

	st.post = (char *)post;
	st.status = status;
	st.time_us = time_us;
	st.name = (char *)(name ? name : "");
	st.version = (char *)VIGIE_VERSION;
	st.reason = (char *)(reason ? reason : "");
	return vigie_pack(&st.base, out, len);
}
