/* Local socket input: integrators and scripts write one event per line
 * (node/line.c) to a Unix socket; each line is answered, in order, with
 *   OK <boot_id> <seq>     once the event is durable (the event's identity
 *                          is then site, node, boot_id, seq), or
 *   ERR <reason>           when it was refused.
 * A line over NODE_LINE_MAX bytes is answered with ERR and the connection is
 * closed: the rest of such a stream cannot be trusted to be aligned. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node.h"
#include "vigie/error.h"
#include "vigie/log.h"

/* Lines a client may have waiting for durability before we stop reading
 * from it (backpressure instead of an unbounded queue). */
#define CLIENT_MAX_PENDING 4096
#define REPLY_MAX          192

struct reply {
	struct reply *next;
	struct client *client;
	bool ready;
	char text[REPLY_MAX];
};

struct client {
	uv_pipe_t pipe;
	struct node_input *in;
	struct client *next, *prev;
	char buf[NODE_LINE_MAX + 2];
	size_t used;
	struct reply *head, *tail;
	size_t pending;
	int refs; /* the pipe handle + replies awaiting durability */
	bool closing;
	bool reading;
	bool discard; /* skip until newline (after an oversized line) */
};

struct node_input {
	uv_pipe_t server;
	uv_loop_t *loop;
	struct vigie_node *node;
	struct client *clients;
	char *path;
	uint64_t lines, refused;
	void (*close_cb)(void *arg);
	void *close_arg;
};

static void client_release(struct client *c)
{
	if (--c->refs > 0)
		return;
	while (c->head) {
		struct reply *r = c->head;

		c->head = r->next;
		free(r);
	}
	free(c);
}

static void on_client_closed(uv_handle_t *h)
{
	client_release(h->data);
}

static void client_close(struct client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		c->in->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	uv_close((uv_handle_t *)&c->pipe, on_client_closed);
}

static void on_written(uv_write_t *req, int status)
{
	(void)status;
	free(req);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void close_after_writes(struct client *c);

/* Write the ready replies at the head of the queue, keeping line order. */
static void flush_replies(struct client *c)
{
	while (c->head && c->head->ready) {
		struct reply *r = c->head;
		size_t len = strlen(r->text);

		c->head = r->next;
		if (!c->head)
			c->tail = NULL;
		c->pending--;
		if (!c->closing) {
			/* The write request and its bytes share one block. */
			uv_write_t *req = malloc(sizeof(*req) + len);

			if (req) {
				uv_buf_t b;

				memcpy(req + 1, r->text, len);
				b = uv_buf_init((char *)(req + 1),
						(unsigned)len);
				if (uv_write(req, (uv_stream_t *)&c->pipe, &b,
					     1, on_written))
					free(req);
			}
		}
		free(r);
	}
	if (!c->closing && !c->reading && c->pending < CLIENT_MAX_PENDING / 2) {
		c->reading = true;
		uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
	}
}

static struct reply *reply_new(struct client *c)
{
	struct reply *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->client = c;
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	c->pending++;
	return r;
}

static void on_durable(void *arg, int status, uint64_t boot_id, uint64_t seq,
		       const char *err)
{
	struct reply *r = arg;
	struct client *c = r->client;

	if (status)
		snprintf(r->text, sizeof(r->text), "ERR %s\n", err);
	else
		snprintf(r->text, sizeof(r->text), "OK %llu %llu\n",
			 (unsigned long long)boot_id, (unsigned long long)seq);
	r->ready = true;
	flush_replies(c);
	client_release(c);
}

static void handle_line(struct client *c, const char *line, size_t len)
{
	struct node_input *in = c->in;
	struct node_event ev;
	char err[160];
	struct reply *r;
	int rc;

	/* Blank lines and comments let people pipe annotated files in. */
	while (len && (line[len - 1] == '\r'))
		len--;
	if (!len || line[0] == '#')
		return;
	in->lines++;
	r = reply_new(c);
	if (!r) {
		vigie_log_error("input: out of memory, closing client");
		client_close(c);
		return;
	}
	rc = vigie__line_parse(line, len, &ev, err, sizeof(err));
	if (rc == 0) {
		c->refs++;
		rc = vigie__node_submit(in->node, &ev, "socket", on_durable, r,
					err, sizeof(err));
		if (rc == 0)
			return;
		c->refs--;
	}
	in->refused++;
	vigie_log_warn("input: line refused: %s: %.*s", err,
		       (int)(len > 200 ? 200 : len), line);
	snprintf(r->text, sizeof(r->text), "ERR %s\n", err);
	r->ready = true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct client *c = h->data;

	(void)suggested;
	buf->base = c->buf + c->used;
	buf->len = sizeof(c->buf) - c->used;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct client *c = s->data;
	size_t start = 0;

	(void)buf;
	if (nread < 0) {
		client_close(c);
		return;
	}
	c->used += (size_t)nread;
	for (size_t i = 0; i < c->used; i++) {
		if (c->buf[i] != '\n')
			continue;
		if (c->discard)
			c->discard = false;
		else
			handle_line(c, c->buf + start, i - start);
		start = i + 1;
		if (c->closing)
			return;
	}
	memmove(c->buf, c->buf + start, c->used - start);
	c->used -= start;
	if (c->used > NODE_LINE_MAX) {
		struct reply *r = reply_new(c);

		c->in->refused++;
		vigie_log_warn("input: line longer than %d bytes refused, "
			       "closing the connection",
			       NODE_LINE_MAX);
		if (r) {
			snprintf(r->text, sizeof(r->text),
				 "ERR line longer than %d bytes\n",
				 NODE_LINE_MAX);
			r->ready = true;
		}
		flush_replies(c);
		close_after_writes(c);
		return;
	}
	flush_replies(c);
	if (c->pending >= CLIENT_MAX_PENDING && c->reading) {
		uv_read_stop(s);
		c->reading = false;
	}
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct client *c = req->data;

	(void)status;
	free(req);
	client_close(c);
	client_release(c);
}

/* Close once the replies already queued are written, so that the peer
 * reads why it is being cut off. */
static void close_after_writes(struct client *c)
{
	uv_shutdown_t *sd = malloc(sizeof(*sd));

	uv_read_stop((uv_stream_t *)&c->pipe);
	c->reading = false;
	c->used = 0;
	c->discard = true;
	if (sd) {
		sd->data = c;
		c->refs++;
		if (uv_shutdown(sd, (uv_stream_t *)&c->pipe, on_shutdown) == 0)
			return;
		c->refs--;
		free(sd);
	}
	client_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct node_input *in = server->data;
	struct client *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->in = in;
	c->refs = 1;
	uv_pipe_init(in->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe)) {
		uv_close((uv_handle_t *)&c->pipe, on_client_closed);
		return;
	}
	c->next = in->clients;
	if (in->clients)
		in->clients->prev = c;
	in->clients = c;
	c->reading = true;
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

static void on_server_closed(uv_handle_t *h);

int vigie__input_open(uv_loop_t *loop, struct vigie_node *n, const char *path,
		      struct node_input **out)
{
	struct node_input *in;
	struct stat sb;
	int rc;

	in = calloc(1, sizeof(*in));
	if (!in)
		return VIGIE_ENOMEM;
	in->loop = loop;
	in->node = n;
	in->path = strdup(path);
	if (!in->path) {
		free(in);
		return VIGIE_ENOMEM;
	}
	/* A socket left by a killed node is stale; anything else at that
	 * path is not ours to remove. */
	if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode))
		unlink(path);
	uv_pipe_init(loop, &in->server, 0);
	in->server.data = in;
	rc = uv_pipe_bind(&in->server, path);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&in->server, 64, on_connection);
	if (rc) {
		vigie_log_error("input: cannot listen on %s: %s", path,
				uv_strerror(rc));
		/* Freed by on_server_closed once the loop runs. */
		uv_close((uv_handle_t *)&in->server, on_server_closed);
		return VIGIE_EIO;
	}
	chmod(path, 0660);
	*out = in;
	return 0;
}

static void on_server_closed(uv_handle_t *h)
{
	struct node_input *in = h->data;

	if (in->close_cb)
		in->close_cb(in->close_arg);
	free(in->path);
	free(in);
}

void vigie__input_close(struct node_input *in, void (*cb)(void *arg), void *arg)
{
	in->close_cb = cb;
	in->close_arg = arg;
	while (in->clients)
		client_close(in->clients);
	unlink(in->path);
	uv_close((uv_handle_t *)&in->server, on_server_closed);
}
