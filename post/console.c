/* The interactive console: the queue on a terminal, redrawn on every change
 * and each second (the age column counts), keys to select and acknowledge.
 *
 * The terminal is put in raw mode with termios and always given back: on a
 * normal exit, on SIGINT/SIGTERM/SIGHUP (through the loop), on Ctrl-Z
 * (restored while stopped, raw again on continue), at exit() and on a fatal
 * signal (an async-signal-safe handler restores it, then the signal does
 * what it would have done).
 *
 * stderr is the same terminal, so log lines would tear the screen: they go
 * through a pipe into the footer (and the last ones are printed again once
 * the terminal is restored), or to --log-file. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "post.h"
#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"

#define FRAME_MAX       (4 * 1024 * 1024)
#define REDRAW_DELAY_MS 10
#define MESSAGE_MS      15000
#define LOG_LINES       64
#define LOG_LINE_MAX    512
#define LOG_REPLAY      20

#define SCREEN_ENTER    "\033[?1049h\033[?25l\033[2J"
#define SCREEN_LEAVE    "\033[0m\033[?25h\033[?1049l"

/* ---- the terminal, process-wide ---------------------------------------
 * One terminal per process, and the fatal-signal and atexit paths can only
 * reach it through a global. */

static struct {
	volatile sig_atomic_t raw;
	int fd;
	struct termios saved;
	bool saved_ok;
	bool handlers;
} term = {0, -1, {0}, false, false};

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Async-signal-safe: write() and tcsetattr() only. */
static void term_restore(void)
{
	if (!term.raw)
		return;
	term.raw = 0;
	write_all(STDOUT_FILENO, SCREEN_LEAVE, sizeof(SCREEN_LEAVE) - 1);
	if (term.saved_ok)
		tcsetattr(term.fd, TCSADRAIN, &term.saved);
}

static void fatal_signal(int sig)
{
	int saved_errno = errno;

	term_restore();
	errno = saved_errno;
	/* SA_RESETHAND put the default action back. */
	raise(sig);
}

static void install_handlers(void)
{
	static const int sigs[] = {SIGSEGV, SIGBUS,  SIGFPE,
				   SIGILL,  SIGABRT, SIGQUIT};
	struct sigaction sa;

	if (term.handlers)
		return;
	term.handlers = true;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fatal_signal;
	sa.sa_flags = (int)(SA_RESETHAND | SA_NODEFER);
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	atexit(term_restore);
}

static int term_enter(void)
{
	struct termios raw;

	if (!term.saved_ok) {
		if (tcgetattr(STDIN_FILENO, &term.saved) != 0)
			return VIGIE_ESYS;
		term.saved_ok = true;
		term.fd = STDIN_FILENO;
	}
	raw = term.saved;
	/* No line editing, no echo; Ctrl-S/Ctrl-Q do not freeze the screen.
	 * ISIG stays: Ctrl-C and Ctrl-Z arrive as signals and take the same
	 * paths as kill(1). */
	raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO | IEXTEN);
	raw.c_iflag &= ~(tcflag_t)(IXON | ICRNL | INLCR | ISTRIP);
	raw.c_cc[VMIN] = 1;
	raw.c_cc[VTIME] = 0;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) != 0)
		return VIGIE_ESYS;
	term.raw = 1;
	write_all(STDOUT_FILENO, SCREEN_ENTER, sizeof(SCREEN_ENTER) - 1);
	return 0;
}

/* ---- the console ------------------------------------------------------- */

enum prompt_kind {
	PROMPT_NONE = 0,
	PROMPT_NAME,
	PROMPT_QUIT,
};

struct post_console {
	struct post_ui_ctx ctx;
	uv_tty_t in;
	uv_timer_t tick;
	uv_timer_t redraw;
	uv_signal_t winch;
	uv_signal_t tstp;
	uv_pipe_t logpipe;
	bool logpipe_open;
	int saved_stderr;
	bool color;
	int rows, cols;
	char readbuf[256];
	struct post_keydec keys;
	struct post_buf frame;
	char selected[POST_ID_MAX + 1];
	char operator_name[POST_NAME_MAX + 1];
	enum prompt_kind prompt;
	char input[POST_NAME_MAX + 1];
	size_t input_len;
	char ack_target[POST_ID_MAX + 1];
	char message[LOG_LINE_MAX];
	uint64_t message_until_ms;
	bool bell;
	/* Captured log lines, a ring. */
	char logbuf[LOG_LINE_MAX];
	size_t log_len;
	char logs[LOG_LINES][LOG_LINE_MAX];
	size_t log_next, log_count;
	bool closing;
	int closes_pending;
	void (*close_cb)(void *arg);
	void *close_arg;
};

static void say(struct post_console *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(struct post_console *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->message, sizeof(c->message), fmt, ap);
	va_end(ap);
	c->message_until_ms = vigie_clock_mono_ms() + MESSAGE_MS;
}

static void query_size(struct post_console *c)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 &&
	    ws.ws_col > 0) {
		c->rows = ws.ws_row;
		c->cols = ws.ws_col;
		return;
	}
	c->rows = 24;
	c->cols = 80;
}

/* The selection follows an id, not a row: a new, higher-priority dispatch
 * moves rows down, and Enter must still acknowledge what the operator was
 * looking at. */
static const struct post_entry *selected_entry(struct post_console *c)
{
	const struct post_queue *q = vigie__post_queue(c->ctx.post);
	const struct post_entry *e = vigie__postterm_select(q, c->selected, 0);

	if (e)
		snprintf(c->selected, sizeof(c->selected), "%s", e->d.id);
	else
		c->selected[0] = '\0';
	return e;
}

static void draw(struct post_console *c)
{
	struct post_stats st;
	struct post_view v;
	const char *prompt = NULL;
	char quit_prompt[128];

	if (c->closing || !term.raw)
		return;
	selected_entry(c);
	vigie__post_stats(c->ctx.post, &st);
	if (c->message[0] && vigie_clock_mono_ms() > c->message_until_ms)
		c->message[0] = '\0';
	if (c->prompt == PROMPT_NAME) {
		prompt =
			"Operator name (Enter to acknowledge, Esc to cancel): ";
	} else if (c->prompt == PROMPT_QUIT) {
		snprintf(quit_prompt, sizeof(quit_prompt),
			 "%zu dispatch(es) not acknowledged. Quit anyway? "
			 "(y/N) ",
			 vigie__postq_open_count(
				 vigie__post_queue(c->ctx.post)));
		prompt = quit_prompt;
	}
	memset(&v, 0, sizeof(v));
	v.q = vigie__post_queue(c->ctx.post);
	v.selected = c->selected[0] ? c->selected : NULL;
	v.rows = c->rows;
	v.cols = c->cols;
	v.now_us = vigie_clock_now_us();
	v.post = c->ctx.cfg->post;
	v.name = c->ctx.cfg->name;
	v.operator_name = c->operator_name[0] ? c->operator_name : NULL;
	v.connected = vigie__post_connected(c->ctx.post);
	v.color = c->color;
	v.message = c->message[0] ? c->message : NULL;
	v.prompt = prompt;
	v.input = c->prompt == PROMPT_NAME ? c->input : "";
	v.bad_payloads = st.bad_payloads;
	vigie__postbuf_reset(&c->frame);
	if (c->bell) {
		vigie__postbuf_addc(&c->frame, '\a');
		c->bell = false;
	}
	vigie__postterm_render(&c->frame, &v);
	if (!c->frame.err)
		write_all(STDOUT_FILENO, c->frame.data, c->frame.len);
}

static void redraw_cb(uv_timer_t *t)
{
	draw(t->data);
}

static void redraw_soon(struct post_console *c)
{
	if (c->closing)
		return;
	/* Coalesced: a burst of dispatches costs one frame. */
	if (!uv_is_active((uv_handle_t *)&c->redraw))
		uv_timer_start(&c->redraw, redraw_cb, REDRAW_DELAY_MS, 0);
}

static void tick_cb(uv_timer_t *t)
{
	draw(t->data);
}

static void do_ack(struct post_console *c, const char *id)
{
	char err[256];

	if (vigie__post_ack(c->ctx.post, id, c->operator_name, err,
			    sizeof(err)))
		say(c, "%s", err);
	else if (vigie__post_connected(c->ctx.post))
		say(c, "acknowledging %s as %s ...", id, c->operator_name);
	else
		say(c,
		    "%s acknowledged as %s; it is sent when the broker is back",
		    id, c->operator_name);
}

static void ask_ack(struct post_console *c)
{
	const struct post_entry *e = selected_entry(c);

	if (!e) {
		say(c, "nothing to acknowledge");
		return;
	}
	if (e->ack != POST_ACK_NONE) {
		say(c, "%s is already acknowledged", e->d.id);
		return;
	}
	if (!c->operator_name[0]) {
		/* The only question ever asked, once per session. */
		snprintf(c->ack_target, sizeof(c->ack_target), "%s", e->d.id);
		c->prompt = PROMPT_NAME;
		c->input_len = 0;
		c->input[0] = '\0';
		return;
	}
	do_ack(c, e->d.id);
}

static void name_key(struct post_console *c, int k)
{
	if (k == POST_KEY_ESC) {
		c->prompt = PROMPT_NONE;
		say(c, "not acknowledged");
		return;
	}
	if (k == POST_KEY_ENTER) {
		if (!vigie__postmsg_operator_valid(c->input)) {
			say(c, "a name is needed to acknowledge");
			return;
		}
		snprintf(c->operator_name, sizeof(c->operator_name), "%s",
			 c->input);
		c->prompt = PROMPT_NONE;
		do_ack(c, c->ack_target);
		return;
	}
	if (k == POST_KEY_BACKSPACE) {
		/* Remove one whole UTF-8 character. */
		while (c->input_len &&
		       ((unsigned char)c->input[--c->input_len] & 0xc0) == 0x80)
			;
		c->input[c->input_len] = '\0';
		return;
	}
	if (k >= 0x20 && k < 0x100 && k != 0x7f &&
	    c->input_len + 1 < sizeof(c->input)) {
		c->input[c->input_len++] = (char)k;
		c->input[c->input_len] = '\0';
	}
}

static int page(const struct post_console *c)
{
	return c->rows > 10 ? c->rows / 3 : 1;
}

static void move(struct post_console *c, int delta)
{
	const struct post_entry *e = vigie__postterm_select(
		vigie__post_queue(c->ctx.post),
		c->selected[0] ? c->selected : NULL, delta);

	if (e)
		snprintf(c->selected, sizeof(c->selected), "%s", e->d.id);
}

static void key(struct post_console *c, int k)
{
	if (k == POST_KEY_NONE)
		return;
	if (c->prompt == PROMPT_NAME) {
		name_key(c, k);
		return;
	}
	if (c->prompt == PROMPT_QUIT) {
		c->prompt = PROMPT_NONE;
		if (k == 'y' || k == 'Y')
			c->ctx.quit(c->ctx.arg, 0);
		return;
	}
	switch (k) {
	case POST_KEY_UP:
	case 'k':
		move(c, -1);
		break;
	case POST_KEY_DOWN:
	case 'j':
		move(c, 1);
		break;
	case POST_KEY_PGUP:
		move(c, -page(c));
		break;
	case POST_KEY_PGDN:
		move(c, page(c));
		break;
	case POST_KEY_HOME:
	case 'g':
		move(c, INT_MIN);
		break;
	case POST_KEY_END:
	case 'G':
		move(c, INT_MAX);
		break;
	case POST_KEY_ENTER:
	case 'a':
		ask_ack(c);
		break;
	case 'q':
		/* Quitting takes the post offline and the relay fails over
		 * to the backup: ask first if something is still open. */
		if (vigie__postq_open_count(vigie__post_queue(c->ctx.post)))
			c->prompt = PROMPT_QUIT;
		else
			c->ctx.quit(c->ctx.arg, 0);
		break;
	case 0x0c: /* Ctrl-L */
		write_all(STDOUT_FILENO, "\033[2J", 4);
		break;
	default:
		return;
	}
	redraw_soon(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct post_console *c = h->data;

	(void)suggested;
	buf->base = c->readbuf;
	buf->len = sizeof(c->readbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct post_console *c = s->data;

	if (nread < 0) {
		uv_read_stop(s);
		vigie_log_error("terminal input: %s", uv_strerror((int)nread));
		c->ctx.quit(c->ctx.arg, 1);
		return;
	}
	for (ssize_t i = 0; i < nread && !c->closing; i++)
		key(c, vigie__postterm_key_feed(&c->keys,
						(unsigned char)buf->base[i]));
	/* A read that ends on a lone ESC was the Esc key. */
	if (!c->closing)
		key(c, vigie__postterm_key_flush(&c->keys));
	redraw_soon(c);
}

static void winch_cb(uv_signal_t *h, int signum)
{
	struct post_console *c = h->data;

	(void)signum;
	query_size(c);
	write_all(STDOUT_FILENO, "\033[2J", 4);
	draw(c);
}

static void tstp_cb(uv_signal_t *h, int signum)
{
	struct post_console *c = h->data;

	(void)signum;
	/* Give the shell a sane terminal while we are stopped. */
	term_restore();
	kill(getpid(), SIGSTOP);
	/* Continued (fg). */
	if (!c->closing && term_enter() == 0) {
		query_size(c);
		draw(c);
	}
}

/* ---- log capture ------------------------------------------------------- */

static void log_line(struct post_console *c, const char *line)
{
	snprintf(c->logs[c->log_next], LOG_LINE_MAX, "%s", line);
	c->log_next = (c->log_next + 1) % LOG_LINES;
	if (c->log_count < LOG_LINES)
		c->log_count++;
	/* The footer shows it without the timestamp. */
	say(c, "%s", strlen(line) > 25 ? line + 25 : line);
	redraw_soon(c);
}

static void log_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char chunk[4096];

	(void)h;
	(void)suggested;
	buf->base = chunk;
	buf->len = sizeof(chunk);
}

static void log_feed(struct post_console *c, const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = data[i];

		if (ch == '\n' || c->log_len + 1 >= sizeof(c->logbuf)) {
			c->logbuf[c->log_len] = '\0';
			log_line(c, c->logbuf);
			c->log_len = 0;
			if (ch == '\n')
				continue;
		}
		c->logbuf[c->log_len++] = ch;
	}
}

static void log_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct post_console *c = s->data;

	if (nread < 0) {
		uv_read_stop(s);
		return;
	}
	log_feed(c, buf->base, (size_t)nread);
}

/* What is still in the pipe, now (its read end is non-blocking). */
static void log_drain(struct post_console *c)
{
	uv_os_fd_t fd;
	char chunk[4096];
	ssize_t n;

	if (!c->logpipe_open || uv_fileno((uv_handle_t *)&c->logpipe, &fd))
		return;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		log_feed(c, chunk, (size_t)n);
}

static int capture_logs(struct post_console *c, const char *log_file)
{
	int fds[2], fd, flags;

	if (log_file) {
		fd = open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			  0640);
		if (fd < 0) {
			vigie_log_error("--log-file %s: %s", log_file,
					strerror(errno));
			return VIGIE_EIO;
		}
		c->saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
		dup2(fd, STDERR_FILENO);
		close(fd);
		return 0;
	}
	if (pipe2(fds, O_CLOEXEC) != 0)
		return VIGIE_ESYS;
	/* A full pipe (the loop busy elsewhere) drops log lines rather than
	 * blocking the only thread that could drain it. */
	flags = fcntl(fds[1], F_GETFL);
	fcntl(fds[1], F_SETFL, flags | O_NONBLOCK);
	if (uv_pipe_init(c->ctx.loop, &c->logpipe, 0) != 0) {
		close(fds[0]);
		close(fds[1]);
		return VIGIE_ESYS;
	}
	c->logpipe_open = true;
	c->logpipe.data = c;
	if (uv_pipe_open(&c->logpipe, fds[0]) != 0) {
		close(fds[0]);
		close(fds[1]);
		return VIGIE_ESYS;
	}
	c->saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	dup2(fds[1], STDERR_FILENO);
	close(fds[1]);
	uv_read_start((uv_stream_t *)&c->logpipe, log_alloc_cb, log_read_cb);
	return 0;
}

static void release_logs(struct post_console *c)
{
	if (c->saved_stderr < 0)
		return;
	dup2(c->saved_stderr, STDERR_FILENO);
	close(c->saved_stderr);
	c->saved_stderr = -1;
}

/* After the terminal is back: what was logged, for the record. */
static void replay_logs(struct post_console *c)
{
	size_t n = c->log_count < LOG_REPLAY ? c->log_count : LOG_REPLAY;
	size_t start = (c->log_next + LOG_LINES - n) % LOG_LINES;

	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "%s\n", c->logs[(start + i) % LOG_LINES]);
}

/* ---- open / events / close ------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
	struct post_console *c = h->data;

	if (--c->closes_pending > 0)
		return;
	vigie__postbuf_free(&c->frame);
	if (c->close_cb)
		c->close_cb(c->close_arg);
	free(c);
}

int vigie__postcons_open(const struct post_ui_ctx *ctx, const char *log_file,
			 bool color, struct post_console **out)
{
	struct post_console *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return VIGIE_ENOMEM;
	c->ctx = *ctx;
	c->color = color;
	c->saved_stderr = -1;
	vigie__postbuf_init(&c->frame, FRAME_MAX);
	if (ctx->cfg->operator_name)
		snprintf(c->operator_name, sizeof(c->operator_name), "%s",
			 ctx->cfg->operator_name);
	rc = uv_tty_init(ctx->loop, &c->in, STDIN_FILENO, 1);
	if (rc) {
		vigie_log_error("terminal: %s", uv_strerror(rc));
		vigie__postbuf_free(&c->frame);
		free(c);
		return VIGIE_ESYS;
	}
	uv_timer_init(ctx->loop, &c->tick);
	uv_timer_init(ctx->loop, &c->redraw);
	uv_signal_init(ctx->loop, &c->winch);
	uv_signal_init(ctx->loop, &c->tstp);
	c->in.data = c->tick.data = c->redraw.data = c;
	c->winch.data = c->tstp.data = c;
	*out = c;
	install_handlers();
	rc = term_enter();
	if (rc) {
		vigie_log_error("terminal: cannot enter raw mode: %s",
				strerror(errno));
		return rc; /* the caller closes c */
	}
	rc = capture_logs(c, log_file);
	if (rc)
		return rc;
	query_size(c);
	uv_read_start((uv_stream_t *)&c->in, alloc_cb, read_cb);
	uv_signal_start(&c->winch, winch_cb, SIGWINCH);
	uv_signal_start(&c->tstp, tstp_cb, SIGTSTP);
	uv_timer_start(&c->tick, tick_cb, 1000, 1000);
	draw(c);
	return 0;
}

void vigie__postcons_dispatch(struct post_console *c,
			      const struct post_entry *e, bool is_new)
{
	if (is_new && !vigie__postq_entry_done(e))
		c->bell = true;
	redraw_soon(c);
}

void vigie__postcons_ack(struct post_console *c, const struct post_entry *e)
{
	say(c, "%s acknowledged by %s: the broker has it", e->d.id,
	    e->acked_by ? e->acked_by : "?");
	redraw_soon(c);
}

void vigie__postcons_changed(struct post_console *c)
{
	redraw_soon(c);
}

void vigie__postcons_connection(struct post_console *c, bool up)
{
	say(c, up ? "connected" : "connection lost: reconnecting");
	redraw_soon(c);
}

void vigie__postcons_close(struct post_console *c, void (*cb)(void *arg),
			   void *arg)
{
	if (c->closing)
		return;
	c->closing = true;
	c->close_cb = cb;
	c->close_arg = arg;
	term_restore();
	/* The terminal is ours again: what was logged goes back to it, the
	 * last lines first (for the record), then whatever the shutdown
	 * logs. */
	log_drain(c);
	release_logs(c);
	replay_logs(c);
	c->closes_pending = 5 + (c->logpipe_open ? 1 : 0);
	uv_close((uv_handle_t *)&c->in, on_closed);
	uv_close((uv_handle_t *)&c->tick, on_closed);
	uv_close((uv_handle_t *)&c->redraw, on_closed);
	uv_close((uv_handle_t *)&c->winch, on_closed);
	uv_close((uv_handle_t *)&c->tstp, on_closed);
	if (c->logpipe_open) {
		c->logpipe.data = c;
		uv_close((uv_handle_t *)&c->logpipe, on_closed);
	}
}
