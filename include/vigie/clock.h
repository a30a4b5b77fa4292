/* Time helpers. Wall time (Unix µs) stamps events; monotonic time (ms)
 * drives timeouts so a clock step never fires or stalls a deadline. */
#ifndef VIGIE_CLOCK_H
#define VIGIE_CLOCK_H

#include <stdint.h>

/* vigie_clock_now_us: wall clock, microseconds since the Unix epoch. */
uint64_t vigie_clock_now_us(void);

/* vigie_clock_mono_ms: monotonic clock in milliseconds. */
uint64_t vigie_clock_mono_ms(void);

/* vigie_clock_format_us: "2026-11-22T21:30:00.123456Z" into buf (>= 32 bytes).
 * Returns buf. */
char *vigie_clock_format_us(uint64_t us, char *buf, unsigned long len);

/* vigie_duration_parse: "250ms", "5s", "2m", "1h", "3d" or a bare number of
 * milliseconds -> milliseconds. Returns 0 or VIGIE_EINVAL. */
int vigie_duration_parse(const char *text, uint64_t *out_ms);

#endif
