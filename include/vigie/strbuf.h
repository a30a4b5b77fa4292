/* Bounded text building for log lines, summaries and consoles, and the
 * small pieces of text parsing shared by the daemons. */
#ifndef VIGIE_STRBUF_H
#define VIGIE_STRBUF_H

#include <stddef.h>

/* vigie_appendf: printf at buf + *pos, never past len (buf stays
 * NUL-terminated); *pos advances by what was written and stops at len - 1,
 * so a too-long text is cut, never overflowed. */
void vigie_appendf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* vigie_hex_digit: the value of hex digit `ch` (either case), or -1. */
int vigie_hex_digit(char ch);

#endif
