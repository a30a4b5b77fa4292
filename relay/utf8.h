/* UTF-8 checks for text the relay re-publishes: proto3 strings must be
 * valid UTF-8 (Python's protobuf, which posts and dashboards may use,
 * refuses a message that is not), so text from outside is checked before it
 * is used, and text we shorten is cut at a character boundary. */
#ifndef VIGIE_RELAY_UTF8_H
#define VIGIE_RELAY_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* vigie__relay_utf8_valid: `s` (NUL-terminated, NULL counts as valid) is
 * well-formed UTF-8: no overlongs, surrogates or code points over U+10FFFF. */
bool vigie__relay_utf8_valid(const char *s);

/* vigie__relay_utf8_trim: drop an incomplete sequence at the end of `s`
 * (left there by a truncation). */
void vigie__relay_utf8_trim(char *s);

/* vigie__relay_utf8_copy: copy at most cap - 1 bytes of `src` (NULL: "")
 * into dst, cut at a character boundary. */
void vigie__relay_utf8_copy(char *dst, size_t cap, const char *src);

#endif
