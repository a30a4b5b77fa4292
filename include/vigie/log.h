/* Logging: one line per record on stderr,
 * "2026-11-22T21:30:00.123Z WARN node: text". */
#ifndef VIGIE_LOG_H
#define VIGIE_LOG_H

enum vigie_log_level {
	VIGIE_LOG_ERROR = 0,
	VIGIE_LOG_WARN = 1,
	VIGIE_LOG_INFO = 2,
	VIGIE_LOG_DEBUG = 3,
};

/* vigie_log_init: name the process in every line and set the level.
 * `ident` must outlive all logging (a string literal). */
void vigie_log_init(const char *ident, enum vigie_log_level level);

/* vigie_log_level_parse: "error", "warn", "info", "debug" -> level.
 * Returns 0, or VIGIE_EINVAL for an unknown name. */
int vigie_log_level_parse(const char *name, enum vigie_log_level *out);

/* vigie_log_level_arg: the same for a --log-level command-line argument;
 * on a bad name prints "PROG: --log-level: expected ..." to stderr and
 * returns VIGIE_EINVAL. */
int vigie_log_level_arg(const char *prog, const char *arg,
			enum vigie_log_level *out);

void vigie_log(enum vigie_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define vigie_log_error(...) vigie_log(VIGIE_LOG_ERROR, __VA_ARGS__)
#define vigie_log_warn(...)  vigie_log(VIGIE_LOG_WARN, __VA_ARGS__)
#define vigie_log_info(...)  vigie_log(VIGIE_LOG_INFO, __VA_ARGS__)
#define vigie_log_debug(...) vigie_log(VIGIE_LOG_DEBUG, __VA_ARGS__)

#endif
