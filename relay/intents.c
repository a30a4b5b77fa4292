/* The intent log (intents.h). A line:
 *
 *   i <id> <prefix> <sec> <k> <first_event_us> <key>\n
 *
 * with the key percent-encoded (spaces, controls, '%' and bytes above 0x7e
 * as %XX): keys hold zone and sensor names taken from events. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "incident.h"
#include "intents.h"
#include "vigie/codec.h"
#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/strbuf.h"

#define LINE_MAX_BYTES (3 * INC_KEY_MAX + 3 * VIGIE_ID_MAX + 96)

static size_t encode(char *dst, size_t cap, const char *src)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (const unsigned char *c = (const unsigned char *)src; *c; c++) {
		if (*c <= ' ' || *c == '%' || *c > '~') {
			if (n + 3 >= cap)
				return 0;
			dst[n++] = '%';
			dst[n++] = hex[*c >> 4];
			dst[n++] = hex[*c & 15];
		} else {
			if (n + 1 >= cap)
				return 0;
			dst[n++] = (char)*c;
		}
	}
	dst[n] = '\0';
	return n;
}

/* In place; false on a bad escape or an empty result. */
static bool decode(char *s)
{
	char *w = s;

	for (char *c = s; *c; c++) {
		if (*c != '%') {
			*w++ = *c;
			continue;
		}
		int hi = vigie_hex_digit(c[1]),
		    lo = hi < 0 ? -1 : vigie_hex_digit(c[2]);

		if (lo < 0)
			return false;
		*w++ = (char)(hi << 4 | lo);
		c += 2;
	}
	*w = '\0';
	return w != s && memchr(s, '\0', (size_t)(w - s)) == NULL;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!*s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool parse_line(char *line, struct intent_rec *rec)
{
	char *f[7], *save = NULL;
	uint64_t k;
	size_t n = 0;

	for (char *t = strtok_r(line, " ", &save); t && n < 8;
	     t = strtok_r(NULL, " ", &save)) {
		if (n == 7)
			return false;
		f[n++] = t;
	}
	if (n != 7 || strcmp(f[0], "i") != 0 || !vigie_id_valid(f[1]) ||
	    !vigie_id_valid(f[2]) || !parse_u64(f[3], &rec->sec) ||
	    !parse_u64(f[4], &k) || k > UINT32_MAX ||
	    !parse_u64(f[5], &rec->first_event_us) || !decode(f[6]) ||
	    strlen(f[6]) > INC_KEY_MAX)
		return false;
	rec->id = f[1];
	rec->prefix = f[2];
	rec->k = (uint32_t)k;
	rec->key = f[6];
	return true;
}

static void read_back(struct intent_log *l, intent_each_fn each, void *ud)
{
	int fd = dup(l->fd);
	FILE *f = fd < 0 ? NULL : fdopen(fd, "r");
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t n;

	if (!f) {
		if (fd >= 0)
			close(fd);
		vigie_log_warn("intent log %s: cannot read it: %s", l->path,
			       strerror(errno));
		return;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		struct intent_rec rec;

		lineno++;
		if (line[n - 1] != '\n') {
			/* Cut by a crash mid-write: its message never left. */
			vigie_log_info("intent log %s: line %zu incomplete, "
				       "skipped",
				       l->path, lineno);
			break;
		}
		line[n - 1] = '\0';
		if (!parse_line(line, &rec)) {
			l->bad_lines++;
			vigie_log_warn("intent log %s: line %zu is not an "
				       "intent line, skipped",
				       l->path, lineno);
			continue;
		}
		each(ud, &rec);
	}
	free(line);
	fclose(f);
}

int vigie__intents_open(struct intent_log *l, const char *db_path,
			intent_each_fn each, void *ud)
{
	struct stat sb;
	int n;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	n = snprintf(l->path, sizeof(l->path), "%s-intents", db_path);
	if (n < 0 || (size_t)n >= sizeof(l->path))
		return VIGIE_EINVAL;
	l->fd = open(l->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (l->fd < 0) {
		vigie_log_error("intent log %s: %s", l->path, strerror(errno));
		return VIGIE_EIO;
	}
	if (fstat(l->fd, &sb) == 0)
		l->size = (uint64_t)sb.st_size;
	if (l->size)
		read_back(l, each, ud);
	return 0;
}

int vigie__intents_append(struct intent_log *l, const struct intent_rec *rec)
{
	char line[LINE_MAX_BYTES], key[3 * INC_KEY_MAX + 1];
	ssize_t w;
	int n;

	if (l->fd < 0)
		return VIGIE_EIO;
	if (!vigie_id_valid(rec->id) || !vigie_id_valid(rec->prefix) ||
	    !encode(key, sizeof(key), rec->key))
		return VIGIE_EINVAL;
	n = snprintf(line, sizeof(line),
		     "i %s %s %" PRIu64 " %" PRIu32 " %" PRIu64 " %s\n",
		     rec->id, rec->prefix, rec->sec, rec->k,
		     rec->first_event_us, key);
	if (n <= 0 || (size_t)n >= sizeof(line))
		return VIGIE_EINVAL;
	/* One write of the whole line: O_APPEND places it whole. */
	w = write(l->fd, line, (size_t)n);
	if (w != n) {
		vigie_log_error("intent log %s: write: %s", l->path,
				w < 0 ? strerror(errno) : "short write");
		return VIGIE_EIO;
	}
	l->size += (uint64_t)n;
	return 0;
}

int vigie__intents_reset(struct intent_log *l)
{
	if (l->fd < 0)
		return VIGIE_EIO;
	if (ftruncate(l->fd, 0) != 0) {
		vigie_log_warn("intent log %s: cannot empty it: %s", l->path,
			       strerror(errno));
		return VIGIE_EIO;
	}
	l->size = 0;
	return 0;
}

void vigie__intents_close(struct intent_log *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}
