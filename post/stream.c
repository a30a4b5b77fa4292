/* The JSON-lines front end: used when stdout is not a terminal, or with
 * --json. One object per line on stdout (see json.c); commands one per line
 * on stdin (see command.c). The end of stdin ends the commands, not the
 * post: a console whose input closed still receives and shows dispatches.
 *
 * stdout is written synchronously, a line at a time and flushed: a reader
 * that stops reading stalls the loop, the keepalive lapses and the broker
 * announces the post dead with its will, which is the truth. A reader that
 * goes away (EPIPE) stops the post with status 1 for the same reason. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "post.h"
#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"

/* One dispatch with every text at the payload cap, escaped, fits. */
#define OUT_MAX (1024 * 1024)

enum input_kind {
	INPUT_NONE = 0,
	INPUT_TTY,
	INPUT_PIPE,
	INPUT_FILE,
};

struct post_stream {
	struct post_ui_ctx ctx;
	enum input_kind kind;
	uv_tty_t tty;
	uv_pipe_t pipe;
	uv_fs_t fsreq;
	bool fs_busy;
	char readbuf[4096];
	char line[POST_LINE_MAX + 1];
	size_t line_len;
	bool discarding;
	struct post_buf out;
	bool out_failed;
	bool closing;
	int closes_pending;
	void (*close_cb)(void *arg);
	void *close_arg;
};

static void emit(struct post_stream *s)
{
	if (s->out.err) {
		/* Too long to print (or out of memory): say so instead. */
		vigie__postbuf_reset(&s->out);
		vigie__postjson_error(&s->out, "",
				      "output line over its size cap");
	}
	if (s->out_failed || !s->out.len)
		goto out_reset;
	if (fwrite(s->out.data, 1, s->out.len, stdout) != s->out.len ||
	    fflush(stdout) != 0) {
		s->out_failed = true;
		vigie_log_error("stdout: %s: nobody reads the dispatches any "
				"more, stopping",
				strerror(errno));
		s->ctx.quit(s->ctx.arg, 1);
	}
out_reset:
	vigie__postbuf_reset(&s->out);
}

static void print_stats(struct post_stream *s)
{
	const struct post_queue *q = vigie__post_queue(s->ctx.post);
	struct post_stats st;

	vigie__post_stats(s->ctx.post, &st);
	vigie__postbuf_addf(
		&s->out,
		"{\"type\":\"stats\",\"connected\":%s,\"received\":%llu,"
		"\"new\":%llu,\"updates\":%llu,\"duplicates\":%llu,"
		"\"bad_payloads\":%llu,\"refused_full\":%llu,"
		"\"acks_sent\":%llu,\"acks_published\":%llu,"
		"\"incidents\":%llu,\"connects\":%llu,\"queue\":%zu,"
		"\"open\":%zu}\n",
		vigie__post_connected(s->ctx.post) ? "true" : "false",
		(unsigned long long)st.received,
		(unsigned long long)st.new_dispatches,
		(unsigned long long)st.updates,
		(unsigned long long)st.duplicates,
		(unsigned long long)st.bad_payloads,
		(unsigned long long)st.refused_full,
		(unsigned long long)st.acks_sent,
		(unsigned long long)st.acks_published,
		(unsigned long long)st.incidents,
		(unsigned long long)st.connects, q->len,
		vigie__postq_open_count(q));
	emit(s);
}

static void run_line(struct post_stream *s, const char *line, size_t len)
{
	const struct post_queue *q;
	struct post_cmd cmd;
	const char *by;
	char err[256];
	uint64_t now;

	if (vigie__postcmd_parse(line, len, &cmd, err, sizeof(err))) {
		vigie__postbuf_adds(&s->out,
				    "{\"type\":\"error\",\"command\":");
		vigie__postjson_str(&s->out, line, len);
		vigie__postbuf_adds(&s->out, ",\"error\":");
		vigie__postjson_cstr(&s->out, err);
		vigie__postbuf_adds(&s->out, "}\n");
		emit(s);
		return;
	}
	switch (cmd.type) {
	case POST_CMD_ACK:
		by = cmd.by[0] ? cmd.by : s->ctx.cfg->operator_name;
		if (!by) {
			vigie__postjson_error(&s->out, "ack",
					      "no operator name: start with "
					      "--by NAME, set operator: in the "
					      "config, or write: ack ID NAME");
			emit(s);
			return;
		}
		/* The ack line follows at the broker's PUBACK. */
		if (vigie__post_ack(s->ctx.post, cmd.id, by, err,
				    sizeof(err))) {
			vigie__postjson_error(&s->out, "ack", err);
			emit(s);
		}
		return;
	case POST_CMD_LIST:
		q = vigie__post_queue(s->ctx.post);
		now = vigie_clock_now_us();
		for (size_t i = 0; i < q->len && !s->out_failed; i++) {
			vigie__postjson_dispatch(&s->out, q->v[i], now, false);
			emit(s);
		}
		return;
	case POST_CMD_STATS:
		print_stats(s);
		return;
	case POST_CMD_QUIT:
		s->ctx.quit(s->ctx.arg, 0);
		return;
	default:
		return;
	}
}

static void feed(struct post_stream *s, const char *data, size_t n)
{
	for (size_t i = 0; i < n && !s->closing; i++) {
		char c = data[i];

		if (c == '\n') {
			if (s->discarding) {
				vigie__postjson_error(
					&s->out, "",
					"command line too long: ignored");
				emit(s);
			} else {
				run_line(s, s->line, s->line_len);
			}
			s->line_len = 0;
			s->discarding = false;
			continue;
		}
		if (s->line_len < POST_LINE_MAX)
			s->line[s->line_len++] = c;
		else
			s->discarding = true;
	}
}

static void end_of_input(struct post_stream *s)
{
	/* A last line without its newline still counts. */
	if (s->line_len && !s->discarding && !s->closing)
		run_line(s, s->line, s->line_len);
	s->line_len = 0;
	vigie_log_info(
		"stdin closed: no more commands; still receiving dispatches");
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct post_stream *s = h->data;

	(void)suggested;
	buf->base = s->readbuf;
	buf->len = sizeof(s->readbuf);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct post_stream *s = st->data;

	if (nread > 0) {
		feed(s, buf->base, (size_t)nread);
		return;
	}
	if (nread == 0)
		return;
	uv_read_stop(st);
	if (nread != UV_EOF)
		vigie_log_warn("stdin: %s: no more commands",
			       uv_strerror((int)nread));
	else
		end_of_input(s);
}

static void close_step(struct post_stream *s)
{
	if (--s->closes_pending > 0)
		return;
	vigie__postbuf_free(&s->out);
	if (s->close_cb)
		s->close_cb(s->close_arg);
	free(s);
}

static void fs_read_cb(uv_fs_t *req);

static void fs_read_next(struct post_stream *s)
{
	uv_buf_t b = uv_buf_init(s->readbuf, sizeof(s->readbuf));

	if (uv_fs_read(s->ctx.loop, &s->fsreq, STDIN_FILENO, &b, 1, -1,
		       fs_read_cb) == 0)
		s->fs_busy = true;
}

static void fs_read_cb(uv_fs_t *req)
{
	struct post_stream *s = req->data;
	ssize_t n = req->result;

	uv_fs_req_cleanup(req);
	s->fs_busy = false;
	if (s->closing) {
		close_step(s);
		return;
	}
	if (n > 0) {
		feed(s, s->readbuf, (size_t)n);
		if (!s->closing)
			fs_read_next(s);
		return;
	}
	if (n < 0)
		vigie_log_warn("stdin: %s: no more commands",
			       uv_strerror((int)n));
	else
		end_of_input(s);
}

static void open_input(struct post_stream *s)
{
	struct stat sb;
	int rc;

	switch (uv_guess_handle(STDIN_FILENO)) {
	case UV_TTY:
		rc = uv_tty_init(s->ctx.loop, &s->tty, STDIN_FILENO, 1);
		if (rc)
			break;
		s->kind = INPUT_TTY;
		s->tty.data = s;
		rc = uv_read_start((uv_stream_t *)&s->tty, alloc_cb, read_cb);
		break;
	case UV_NAMED_PIPE:
		rc = uv_pipe_init(s->ctx.loop, &s->pipe, 0);
		if (rc)
			break;
		s->kind = INPUT_PIPE;
		s->pipe.data = s;
		rc = uv_pipe_open(&s->pipe, STDIN_FILENO);
		if (!rc)
			rc = uv_read_start((uv_stream_t *)&s->pipe, alloc_cb,
					   read_cb);
		break;
	default:
		/* Only a regular file is read on the thread pool: a read
		 * there ends, so shutdown never waits on it. A device
		 * (/dev/null included) gives no commands. */
		if (fstat(STDIN_FILENO, &sb) != 0 || !S_ISREG(sb.st_mode)) {
			vigie_log_debug("stdin is no pipe, terminal or file: "
					"no commands");
			return;
		}
		s->kind = INPUT_FILE;
		s->fsreq.data = s;
		fs_read_next(s);
		return;
	}
	if (rc)
		vigie_log_warn("stdin: %s: no commands will be read",
			       uv_strerror(rc));
}

int vigie__poststream_open(const struct post_ui_ctx *ctx,
			   struct post_stream **out)
{
	struct post_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return VIGIE_ENOMEM;
	s->ctx = *ctx;
	vigie__postbuf_init(&s->out, OUT_MAX);
	open_input(s);
	*out = s;
	return 0;
}

void vigie__poststream_dispatch(struct post_stream *s,
				const struct post_entry *e, bool is_new)
{
	vigie__postjson_dispatch(&s->out, e, vigie_clock_now_us(), is_new);
	emit(s);
}

void vigie__poststream_ack(struct post_stream *s, const struct post_entry *e)
{
	vigie__postjson_ack(&s->out, e->d.id, e->d.incident,
			    e->acked_by ? e->acked_by : "", e->acked_us);
	emit(s);
}

void vigie__poststream_connection(struct post_stream *s, bool up,
				  bool session_present)
{
	vigie__postjson_status(&s->out, s->ctx.cfg->post, up, session_present);
	emit(s);
}

static void on_input_closed(uv_handle_t *h)
{
	close_step(h->data);
}

void vigie__poststream_close(struct post_stream *s, void (*cb)(void *arg),
			     void *arg)
{
	if (s->closing)
		return;
	s->closing = true;
	s->close_cb = cb;
	s->close_arg = arg;
	s->closes_pending = 1;
	if (s->kind == INPUT_TTY) {
		s->closes_pending++;
		uv_close((uv_handle_t *)&s->tty, on_input_closed);
	} else if (s->kind == INPUT_PIPE) {
		s->closes_pending++;
		uv_close((uv_handle_t *)&s->pipe, on_input_closed);
	} else if (s->kind == INPUT_FILE && s->fs_busy) {
		s->closes_pending++; /* fs_read_cb finishes it */
	}
	close_step(s);
}
