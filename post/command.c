/* The command language read on stdin in JSON mode, one command a line:
 *
 *   ack ID [NAME]   acknowledge dispatch ID as NAME (default: --by/operator)
 *   list            print every entry of the queue as a dispatch line
 *   stats           print the counters as one line
 *   quit            stop (clean shutdown: OFFLINE "shutdown")
 *
 * Blank lines and lines starting with '#' are ignored. */
#include <stdio.h>
#include <string.h>

#include "post.h"
#include "vigie/error.h"

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* next_word: the word at *pos (skipping blanks); its start and length. */
static size_t next_word(const char *s, size_t len, size_t *pos,
			const char **start)
{
	size_t i = *pos, n = 0;

	while (i < len && is_space(s[i]))
		i++;
	*start = s + i;
	while (i + n < len && !is_space(s[i + n]))
		n++;
	*pos = i + n;
	return n;
}

static bool word_is(const char *w, size_t n, const char *name)
{
	return n == strlen(name) && memcmp(w, name, n) == 0;
}

int vigie__postcmd_parse(const char *line, size_t len, struct post_cmd *out,
			 char *err, size_t errlen)
{
	const char *w, *arg;
	size_t pos = 0, n, an, end;

	memset(out, 0, sizeof(*out));
	if (memchr(line, '\0', len)) {
		snprintf(err, errlen, "the line holds a NUL byte");
		return VIGIE_EINVAL;
	}
	n = next_word(line, len, &pos, &w);
	if (n == 0 || w[0] == '#') {
		out->type = POST_CMD_NONE;
		return 0;
	}
	if (word_is(w, n, "ack")) {
		an = next_word(line, len, &pos, &arg);
		if (an == 0) {
			snprintf(err, errlen, "usage: ack DISPATCH-ID [NAME]");
			return VIGIE_EINVAL;
		}
		if (an > POST_ID_MAX) {
			snprintf(err, errlen, "dispatch id longer than %d",
				 POST_ID_MAX);
			return VIGIE_EINVAL;
		}
		memcpy(out->id, arg, an);
		out->id[an] = '\0';
		if (!vigie__postmsg_id_valid(out->id)) {
			snprintf(err, errlen,
				 "dispatch id: expected [A-Za-z0-9._:-]");
			return VIGIE_EINVAL;
		}
		/* The name is the rest of the line: "Jeanne Dupont" is one. */
		while (pos < len && is_space(line[pos]))
			pos++;
		end = len;
		while (end > pos && is_space(line[end - 1]))
			end--;
		if (end > pos) {
			if (end - pos > POST_NAME_MAX) {
				snprintf(err, errlen,
					 "name longer than %d bytes",
					 POST_NAME_MAX);
				return VIGIE_EINVAL;
			}
			memcpy(out->by, line + pos, end - pos);
			out->by[end - pos] = '\0';
			if (!vigie__postmsg_operator_valid(out->by)) {
				snprintf(err, errlen,
					 "name: expected UTF-8 text without "
					 "control characters");
				return VIGIE_EINVAL;
			}
		}
		out->type = POST_CMD_ACK;
		return 0;
	}
	if (word_is(w, n, "list"))
		out->type = POST_CMD_LIST;
	else if (word_is(w, n, "stats"))
		out->type = POST_CMD_STATS;
	else if (word_is(w, n, "quit") || word_is(w, n, "exit"))
		out->type = POST_CMD_QUIT;
	else {
		snprintf(err, errlen,
			 "unknown command \"%.*s\": expected ack, list, stats "
			 "or quit",
			 (int)(n > 32 ? 32 : n), w);
		return VIGIE_EINVAL;
	}
	if (next_word(line, len, &pos, &arg)) {
		snprintf(err, errlen, "%.*s takes no argument", (int)n, w);
		return VIGIE_EINVAL;
	}
	return 0;
}
