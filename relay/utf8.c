#include <stdint.h>
#include <string.h>

#include "utf8.h"

/* Length of the sequence starting at s (1-4), or 0 if it is not valid. */
static size_t seq_len(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (s[0] >= 0xe0 && s[0] <= 0xef) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if (s[0] == 0xe0 && s[1] < 0xa0)
			return 0; /* overlong */
		if (s[0] == 0xed && s[1] >= 0xa0)
			return 0; /* surrogate */
		return 3;
	}
	if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (s[3] & 0xc0) != 0x80)
			return 0;
		if (s[0] == 0xf0 && s[1] < 0x90)
			return 0; /* overlong */
		if (s[0] == 0xf4 && s[1] >= 0x90)
			return 0; /* over U+10FFFF */
		return 4;
	}
	return 0;
}

bool vigie__relay_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	/* A NUL inside a continuation fails the 0x80 test, so reading
	 * s[1..3] never goes past the terminator. */
	while (p && *p) {
		size_t n = seq_len(p);

		if (!n)
			return false;
		p += n;
	}
	return true;
}

void vigie__relay_utf8_trim(char *s)
{
	size_t len = strlen(s), i = len, need;

	/* Back to the start of the last sequence (at most 3 steps). */
	while (i > 0 && len - i < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0)
		return;
	i--;
	if ((unsigned char)s[i] < 0x80)
		return;
	need = (unsigned char)s[i] >= 0xf0   ? 4
	       : (unsigned char)s[i] >= 0xe0 ? 3
	       : (unsigned char)s[i] >= 0xc0 ? 2
					     : 1;
	if (len - i < need)
		s[i] = '\0';
}

void vigie__relay_utf8_copy(char *dst, size_t cap, const char *src)
{
	size_t n;

	if (!cap)
		return;
	n = src ? strlen(src) : 0;
	if (n >= cap)
		n = cap - 1;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
	vigie__relay_utf8_trim(dst);
}
