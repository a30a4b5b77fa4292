#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"

static const char *log_ident = "vigie";
static enum vigie_log_level log_level = VIGIE_LOG_INFO;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void vigie_log_init(const char *ident, enum vigie_log_level level)
{
	if (ident)
		log_ident = ident;
	log_level = level;
}

int vigie_log_level_parse(const char *name, enum vigie_log_level *out)
{
	for (int i = 0; i <= (int)VIGIE_LOG_DEBUG; i++) {
		if (name && strcasecmp(name, level_names[i]) == 0) {
			*out = (enum vigie_log_level)i;
			return 0;
		}
	}
	if (name && strcasecmp(name, "warning") == 0) {
		*out = VIGIE_LOG_WARN;
		return 0;
	}
	return VIGIE_EINVAL;
}

int vigie_log_level_arg(const char *prog, const char *arg,
			enum vigie_log_level *out)
{
	if (vigie_log_level_parse(arg, out) == 0)
		return 0;
	fprintf(stderr,
		"%s: --log-level: expected error, warn, info or debug, got "
		"\"%s\"\n",
		prog, arg ? arg : "");
	return VIGIE_EINVAL;
}

void vigie_log(enum vigie_log_level level, const char *fmt, ...)
{
	char stamp[40];
	char line[2048];
	va_list ap;
	int n;

	if (level > log_level)
		return;
	vigie_clock_format_us(vigie_clock_now_us(), stamp, sizeof(stamp));
	/* Millisecond precision is enough in logs: cut the µs digits. */
	if (strlen(stamp) > 24) {
		stamp[23] = 'Z';
		stamp[24] = '\0';
	}
	n = snprintf(line, sizeof(line), "%s %s %s: ", stamp,
		     level_names[level], log_ident);
	if (n < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write per record so lines of concurrent processes don't mix. */
	fprintf(stderr, "%s\n", line);
}
