#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vigie/clock.h"
#include "vigie/error.h"

uint64_t vigie_clock_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t vigie_clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

char *vigie_clock_format_us(uint64_t us, char *buf, unsigned long len)
{
	time_t secs = (time_t)(us / 1000000u);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06luZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (unsigned long)(us % 1000000u));
	return buf;
}

int vigie_duration_parse(const char *text, uint64_t *out_ms)
{
	static const struct {
		const char *suffix;
		double ms;
	} units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
		     {"h", 3600000}, {"d", 86400000}, {"", 1}};
	char *end;
	double v;

	if (!text || !*text || isspace((unsigned char)*text) || *text == '-')
		return VIGIE_EINVAL;
	v = strtod(text, &end);
	/* !(v >= 0) also refuses NaN; converting NaN or inf to an integer is
	 * undefined behaviour. */
	if (end == text || !(v >= 0) || !isfinite(v))
		return VIGIE_EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			double ms = v * units[i].ms;

			if (ms > 1e15)
				return VIGIE_EINVAL;
			*out_ms = (uint64_t)(ms + 0.5);
			return 0;
		}
	}
	return VIGIE_EINVAL;
}
