/* Configuration files: libyaml's event stream built into our own tree, so
 * every value keeps its line and can name its dotted path in messages.
 *
 * The input comes from outside (an operator's file, later a fuzzer), so every
 * dimension is capped: bytes (VIGIE_CONF_MAX_BYTES), nesting depth and the
 * number of values. Paths are built only when asked for (errors, mostly):
 * built eagerly, a long key above a long list would cost its length once per
 * item. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "vigie/clock.h"
#include "vigie/config.h"
#include "vigie/error.h"

/* Deeper than any configuration we write; keeps recursion in free and path
 * building bounded. */
#define CONF_MAX_DEPTH 64
/* Values (scalars, maps, lists) in one file: far above a real site, low
 * enough that a hostile file cannot take gigabytes. */
#define CONF_MAX_NODES 1000000
/* Same as VIGIE_ID_MAX (vigie/codec.h, which pulls in generated code). */
#define CONF_ID_MAX 64
/* Longest piece of a value quoted back in a message. */
#define CONF_QUOTE_MAX 40
#define CONF_ERR_MAX   1024

enum node_type {
	NODE_SCALAR = 1,
	NODE_MAP,
	NODE_SEQ,
};

struct vigie_conf_node {
	struct vigie_conf_node *parent;
	struct vigie_conf_node **items; /* map values or list items */
	size_t len;
	size_t cap;
	size_t index;     /* position in the parent */
	const char *key;  /* in buf when the parent is a map, else NULL */
	const char *text; /* in buf for a scalar, else NULL */
	char *path;       /* built on first vigie_conf_path() */
	unsigned line;
	unsigned key_line; /* line of the key, or of the node itself */
	enum node_type type;
	bool null; /* plain "", "~" or "null": YAML's empty value */
	char buf[];
};

/* Strings the config owns beyond its tree (vigie_conf_intern). */
struct conf_string {
	struct conf_string *next;
	char text[];
};

struct vigie_conf {
	char *file;
	struct vigie_conf_node *root;
	size_t nodes;
	bool failed;
	struct conf_string *interned;
	char err[CONF_ERR_MAX];
};

/* ---- errors ---------------------------------------------------------- */

/* record: "FILE:LINE: PATH: message", or without LINE when it is 0, without
 * PATH when it is empty. `key` (optional) is appended to `path`, for keys
 * that are not in the tree (missing ones). Only the first error is kept. */
static int record(struct vigie_conf *c, unsigned line, const char *path,
		  const char *key, const char *fmt, va_list ap)
{
	size_t n = 0;
	int w;

	if (!c)
		return VIGIE_ECONFIG;
	if (c->failed)
		return VIGIE_ECONFIG;
	c->failed = true;
	if (!path)
		path = "";
	w = line ? snprintf(c->err, sizeof(c->err), "%s:%u: ", c->file, line)
		 : snprintf(c->err, sizeof(c->err), "%s: ", c->file);
	if (w > 0)
		n = (size_t)w;
	if (n < sizeof(c->err) && (*path || key)) {
		w = snprintf(c->err + n, sizeof(c->err) - n, "%s%s%s: ", path,
			     *path && key ? "." : "", key ? key : "");
		if (w > 0)
			n += (size_t)w;
	}
	if (n < sizeof(c->err))
		vsnprintf(c->err + n, sizeof(c->err) - n, fmt, ap);
	/* Keys and values come from the file: keep the message one clean
	 * log line whatever they hold. */
	for (char *p = c->err; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	return VIGIE_ECONFIG;
}

static int fail_at(struct vigie_conf *c, unsigned line, const char *path,
		   const char *key, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int fail_at(struct vigie_conf *c, unsigned line, const char *path,
		   const char *key, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record(c, line, path, key, fmt, ap);
	va_end(ap);
	return rc;
}

int vigie_conf_fail(struct vigie_conf *c, const struct vigie_conf_node *n,
		    const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record(c, vigie_conf_line(n), vigie_conf_path(n), NULL, fmt, ap);
	va_end(ap);
	return rc;
}

/* fail_key: an error about a key itself (unknown, duplicate): its line. */
static int fail_key(struct vigie_conf *c, const struct vigie_conf_node *n,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail_key(struct vigie_conf *c, const struct vigie_conf_node *n,
		    const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record(c, n->key_line, vigie_conf_path(n), NULL, fmt, ap);
	va_end(ap);
	return rc;
}

static int fail_nomem(struct vigie_conf *c, const struct vigie_conf_node *n)
{
	vigie_conf_fail(c, n, "out of memory");
	return VIGIE_ENOMEM;
}

/* describe: what a node is, for "got ..." in messages. */
static const char *describe(const struct vigie_conf_node *n, char *buf,
			    size_t size)
{
	size_t len;
	bool cut;

	if (n->type == NODE_MAP)
		return "a map";
	if (n->type == NODE_SEQ)
		return "a list";
	if (n->null)
		return "an empty value";
	len = strlen(n->text);
	cut = len > CONF_QUOTE_MAX;
	if (cut) {
		len = CONF_QUOTE_MAX;
		/* Don't split a UTF-8 sequence. */
		while (len > 0 && ((unsigned char)n->text[len] & 0xc0) == 0x80)
			len--;
	}
	snprintf(buf, size, "\"%.*s%s\"", (int)len, n->text, cut ? "..." : "");
	return buf;
}

/* ---- tree ------------------------------------------------------------ */

static void node_free(struct vigie_conf_node *n)
{
	if (!n)
		return;
	/* Depth is capped at load (CONF_MAX_DEPTH): recursion is bounded. */
	for (size_t i = 0; i < n->len; i++)
		node_free(n->items[i]);
	free(n->items);
	free(n->path);
	free(n);
}

/* node_new: a node holding copies of `key` (may be NULL) and `text` (NULL
 * for a container) in one allocation. */
static struct vigie_conf_node *node_new(enum node_type type, const char *key,
					size_t key_len, const char *text,
					size_t text_len)
{
	struct vigie_conf_node *n;
	size_t extra = 0;
	char *p;

	if (key)
		extra += key_len + 1;
	if (text)
		extra += text_len + 1;
	n = calloc(1, sizeof(*n) + extra);
	if (!n)
		return NULL;
	n->type = type;
	p = n->buf;
	if (key) {
		memcpy(p, key, key_len);
		p[key_len] = '\0';
		n->key = p;
		p += key_len + 1;
	}
	if (text) {
		memcpy(p, text, text_len);
		p[text_len] = '\0';
		n->text = p;
	}
	return n;
}

static int node_append(struct vigie_conf_node *parent,
		       struct vigie_conf_node *child)
{
	if (parent->len == parent->cap) {
		size_t cap = parent->cap ? parent->cap * 2 : 4;
		struct vigie_conf_node **items;

		items = realloc(parent->items, cap * sizeof(*items));
		if (!items)
			return VIGIE_ENOMEM;
		parent->items = items;
		parent->cap = cap;
	}
	child->parent = parent;
	child->index = parent->len;
	parent->items[parent->len++] = child;
	return 0;
}

static size_t digits(size_t v)
{
	size_t d = 1;

	while (v >= 10) {
		v /= 10;
		d++;
	}
	return d;
}

/* path_len / path_put: the dotted path, "a.b[2].c"; the root is "". */
static size_t path_len(const struct vigie_conf_node *n)
{
	size_t up;

	if (!n->parent)
		return 0;
	up = path_len(n->parent);
	if (n->parent->type == NODE_SEQ)
		return up + digits(n->index) + 2;
	return up + (up ? 1 : 0) + strlen(n->key);
}

static char *path_put(const struct vigie_conf_node *n, char *p)
{
	char *start;

	if (!n->parent)
		return p;
	start = p;
	p = path_put(n->parent, p);
	if (n->parent->type == NODE_SEQ)
		return p + sprintf(p, "[%zu]", n->index);
	if (p != start)
		*p++ = '.';
	return stpcpy(p, n->key);
}

const char *vigie_conf_path(const struct vigie_conf_node *n)
{
	struct vigie_conf_node *w;
	char *path;

	if (!n)
		return "";
	if (n->path)
		return n->path;
	path = malloc(path_len(n) + 1);
	if (!path)
		return "";
	*path_put(n, path) = '\0';
	/* The tree is ours and never const underneath; caching here keeps
	 * the getters' const interface. Not thread-safe, like the rest. */
	w = (struct vigie_conf_node *)n;
	w->path = path;
	return path;
}

/* ---- building from libyaml events ------------------------------------ */

/* A set of the keys of one map being read, to find duplicates without a
 * quadratic scan. Open addressing over pointers into the nodes. */
struct keyset {
	const char **slots;
	size_t cap; /* power of two */
	size_t used;
};

static uint64_t key_hash(const char *s)
{
	uint64_t h = 1469598103934665603u; /* FNV-1a */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211u;
	}
	return h;
}

static bool keyset_has(const struct keyset *ks, const char *key)
{
	size_t i;

	if (!ks->cap)
		return false;
	i = (size_t)key_hash(key) & (ks->cap - 1);
	while (ks->slots[i]) {
		if (strcmp(ks->slots[i], key) == 0)
			return true;
		i = (i + 1) & (ks->cap - 1);
	}
	return false;
}

static void keyset_put_slot(const char **slots, size_t cap, const char *key)
{
	size_t i = (size_t)key_hash(key) & (cap - 1);

	while (slots[i])
		i = (i + 1) & (cap - 1);
	slots[i] = key;
}

static int keyset_add(struct keyset *ks, const char *key)
{
	if ((ks->used + 1) * 2 > ks->cap) {
		size_t cap = ks->cap ? ks->cap * 2 : 16;
		const char **slots = calloc(cap, sizeof(*slots));

		if (!slots)
			return VIGIE_ENOMEM;
		for (size_t i = 0; i < ks->cap; i++) {
			if (ks->slots[i])
				keyset_put_slot(slots, cap, ks->slots[i]);
		}
		free(ks->slots);
		ks->slots = slots;
		ks->cap = cap;
	}
	keyset_put_slot(ks->slots, ks->cap, key);
	ks->used++;
	return 0;
}

struct frame {
	struct vigie_conf_node *node;
	struct keyset keys; /* maps only */
	char *key;          /* maps: the key read, waiting for its value */
	size_t key_len;
	unsigned key_line;
};

struct builder {
	struct vigie_conf *c;
	struct frame stack[CONF_MAX_DEPTH];
	int depth;
	int documents;
};

static unsigned mark_line(yaml_mark_t m)
{
	return m.line >= 0xfffffffeu ? 0xffffffffu : (unsigned)m.line + 1;
}

static void frame_clear(struct frame *f)
{
	free(f->keys.slots);
	free(f->key);
	memset(f, 0, sizeof(*f));
}

/* is_null_text: YAML's plain empty value (core schema). */
static bool is_null_text(const char *t, size_t len)
{
	return len == 0 || (len == 1 && t[0] == '~') ||
	       (len == 4 &&
		(memcmp(t, "null", 4) == 0 || memcmp(t, "Null", 4) == 0 ||
		 memcmp(t, "NULL", 4) == 0));
}

/* take_key: a scalar in key position of the innermost map. */
static int take_key(struct builder *b, const yaml_event_t *ev)
{
	struct frame *f = &b->stack[b->depth - 1];
	const char *text = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	unsigned line = mark_line(ev->start_mark);
	const char *path = vigie_conf_path(f->node);

	if (memchr(text, '\0', len))
		return fail_at(b->c, line, path, NULL,
			       "key contains a NUL character");
	f->key = malloc(len + 1);
	if (!f->key) {
		fail_at(b->c, line, path, NULL, "out of memory");
		return VIGIE_ENOMEM;
	}
	memcpy(f->key, text, len);
	f->key[len] = '\0';
	f->key_len = len;
	f->key_line = line;
	if (keyset_has(&f->keys, f->key))
		return fail_at(b->c, line, path, f->key, "duplicate key");
	return 0;
}

/* add_value: a scalar (`text` set) or a map or list in value position,
 * put in the tree at once so that an error in it has its path. */
static int add_value(struct builder *b, enum node_type type, unsigned line,
		     const char *text, size_t text_len,
		     struct vigie_conf_node **out)
{
	struct vigie_conf *c = b->c;
	struct frame *f = b->depth ? &b->stack[b->depth - 1] : NULL;
	struct vigie_conf_node *n;

	n = node_new(type, f && f->key ? f->key : NULL, f ? f->key_len : 0,
		     text, text_len);
	if (!n) {
		fail_at(c, line, f ? vigie_conf_path(f->node) : "", NULL,
			"out of memory");
		return VIGIE_ENOMEM;
	}
	n->line = line;
	n->key_line = f && f->key ? f->key_line : n->line;
	*out = n;
	if (!f) {
		c->root = n;
	} else if (node_append(f->node, n)) {
		fail_at(c, n->line, vigie_conf_path(f->node), NULL,
			"out of memory");
		free(n);
		return VIGIE_ENOMEM;
	}
	c->nodes++;
	if (f && f->key) {
		free(f->key);
		f->key = NULL;
		f->key_len = 0;
		/* Points into the node, which lives as long as the set. */
		if (keyset_add(&f->keys, n->key))
			return fail_nomem(c, n);
	}
	if (c->nodes > CONF_MAX_NODES)
		return vigie_conf_fail(c, n, "more than %d values in one file",
				       CONF_MAX_NODES);
	return 0;
}

static int on_event(struct builder *b, const yaml_event_t *ev)
{
	struct frame *f = b->depth ? &b->stack[b->depth - 1] : NULL;
	bool want_key = f && f->node->type == NODE_MAP && !f->key;
	unsigned line = mark_line(ev->start_mark);
	struct vigie_conf_node *n;
	const char *text;
	size_t len;
	int rc;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++b->documents > 1)
			return fail_at(b->c, line, "", NULL,
				       "more than one YAML document (a "
				       "configuration file holds one)");
		return 0;
	case YAML_ALIAS_EVENT:
		/* Aliases would give one node two paths, and nested ones grow
		 * exponentially: configurations spell values out. */
		if (want_key)
			return fail_at(b->c, line, vigie_conf_path(f->node),
				       NULL,
				       "YAML aliases (*%s) are not "
				       "supported; write the key out",
				       (const char *)ev->data.alias.anchor);
		text = (const char *)ev->data.alias.anchor;
		rc = add_value(b, NODE_SCALAR, line, text, strlen(text), &n);
		if (rc)
			return rc;
		return vigie_conf_fail(b->c, n,
				       "YAML aliases (*%s) are not supported; "
				       "write the value out",
				       text);
	case YAML_SCALAR_EVENT:
		if (want_key)
			return take_key(b, ev);
		text = (const char *)ev->data.scalar.value;
		len = ev->data.scalar.length;
		rc = add_value(b, NODE_SCALAR, line, text, len, &n);
		if (rc)
			return rc;
		n->null = ev->data.scalar.plain_implicit &&
			  ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
			  is_null_text(text, len);
		if (memchr(text, '\0', len))
			return vigie_conf_fail(b->c, n,
					       "contains a NUL character");
		return 0;
	case YAML_MAPPING_START_EVENT:
	case YAML_SEQUENCE_START_EVENT:
		if (want_key)
			return fail_at(b->c, line, vigie_conf_path(f->node),
				       NULL,
				       "a key must be a string, not a "
				       "map or a list");
		rc = add_value(b,
			       ev->type == YAML_MAPPING_START_EVENT ? NODE_MAP
								    : NODE_SEQ,
			       line, NULL, 0, &n);
		if (rc)
			return rc;
		if (b->depth == CONF_MAX_DEPTH)
			return vigie_conf_fail(b->c, n,
					       "nested deeper than %d levels",
					       CONF_MAX_DEPTH);
		b->stack[b->depth++].node = n;
		return 0;
	case YAML_MAPPING_END_EVENT:
	case YAML_SEQUENCE_END_EVENT:
		if (f) {
			frame_clear(f);
			b->depth--;
		}
		return 0;
	default:
		return 0;
	}
}

static unsigned offset_line(const char *text, size_t len, size_t offset)
{
	unsigned line = 1;

	for (size_t i = 0; i < offset && i < len; i++) {
		if (text[i] == '\n')
			line++;
	}
	return line;
}

static int syntax_error(struct vigie_conf *c, const yaml_parser_t *p,
			const char *text, size_t len)
{
	const char *problem = p->problem ? p->problem : "unknown problem";

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		fail_at(c, 0, "", NULL, "out of memory");
		return VIGIE_ENOMEM;
	case YAML_READER_ERROR:
		/* The reader has no line marks, only a byte offset. */
		return fail_at(c, offset_line(text, len, p->problem_offset), "",
			       NULL, "YAML syntax error: %s (byte %zu)",
			       problem, p->problem_offset);
	default:
		if (p->context)
			return fail_at(c, mark_line(p->problem_mark), "", NULL,
				       "YAML syntax error: %s (%s)", problem,
				       p->context);
		return fail_at(c, mark_line(p->problem_mark), "", NULL,
			       "YAML syntax error: %s", problem);
	}
}

static int build(struct vigie_conf *c, const char *text, size_t len)
{
	struct builder *b;
	yaml_parser_t parser;
	yaml_event_t ev;
	bool done = false;
	int rc = 0;

	b = calloc(1, sizeof(*b));
	if (!b) {
		fail_at(c, 0, "", NULL, "out of memory");
		return VIGIE_ENOMEM;
	}
	b->c = c;
	if (!yaml_parser_initialize(&parser)) {
		fail_at(c, 0, "", NULL, "out of memory");
		rc = VIGIE_ENOMEM;
		goto out_free_builder;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	while (!done && rc == 0) {
		if (!yaml_parser_parse(&parser, &ev)) {
			rc = syntax_error(c, &parser, text, len);
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		rc = on_event(b, &ev);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	/* Containers still open after an error are already in the tree. */
	for (int i = 0; i < CONF_MAX_DEPTH; i++)
		frame_clear(&b->stack[i]);
out_free_builder:
	free(b);
	return rc;
}

/* ---- loading --------------------------------------------------------- */

static struct vigie_conf *conf_new(const char *name)
{
	struct vigie_conf *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->file = strdup(name ? name : "(config)");
	if (!c->file) {
		free(c);
		return NULL;
	}
	return c;
}

/* finish: an empty file (or one holding only "~") is an empty map, so that
 * required keys report "missing" rather than a shape error. */
static int finish(struct vigie_conf *c, int rc)
{
	if (!c->root || (c->root->type == NODE_SCALAR && c->root->null)) {
		struct vigie_conf_node *n =
			node_new(NODE_MAP, NULL, 0, NULL, 0);

		if (!n) {
			if (!rc)
				fail_at(c, 0, "", NULL, "out of memory");
			return rc ? rc : VIGIE_ENOMEM;
		}
		n->line = c->root ? c->root->line : 1;
		n->key_line = n->line;
		node_free(c->root);
		c->root = n;
	}
	return rc;
}

int vigie_conf_parse(const char *text, size_t len, const char *name,
		     struct vigie_conf **out)
{
	struct vigie_conf *c;
	int rc;

	if (!out)
		return VIGIE_EINVAL;
	*out = NULL;
	c = conf_new(name);
	if (!c)
		return VIGIE_ENOMEM;
	*out = c;
	if (!text)
		len = 0;
	if (len > VIGIE_CONF_MAX_BYTES)
		rc = fail_at(c, 0, "", NULL, "larger than %d bytes",
			     VIGIE_CONF_MAX_BYTES);
	else
		rc = build(c, text ? text : "", len);
	return finish(c, rc);
}

/* read_file: the whole file into a malloc'd buffer, refusing more than
 * VIGIE_CONF_MAX_BYTES. Reads until EOF rather than trusting st_size so
 * pipes and /proc files work too. */
static int read_file(struct vigie_conf *c, const char *path, char **out,
		     size_t *out_len)
{
	FILE *f;
	char *buf = NULL;
	size_t len = 0;
	size_t cap = 0;
	int rc = 0;

	f = fopen(path, "rb");
	if (!f)
		return fail_at(c, 0, "", NULL, "cannot open: %s",
			       strerror(errno));
	for (;;) {
		size_t got;

		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 64 * 1024;
			char *nbuf;

			if (ncap > (size_t)VIGIE_CONF_MAX_BYTES + 1)
				ncap = (size_t)VIGIE_CONF_MAX_BYTES + 1;
			if (ncap == cap) {
				rc = fail_at(c, 0, "", NULL,
					     "larger than %d bytes",
					     VIGIE_CONF_MAX_BYTES);
				goto out_free_buf;
			}
			nbuf = realloc(buf, ncap);
			if (!nbuf) {
				fail_at(c, 0, "", NULL, "out of memory");
				rc = VIGIE_ENOMEM;
				goto out_free_buf;
			}
			buf = nbuf;
			cap = ncap;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		rc = fail_at(c, 0, "", NULL, "cannot read: %s",
			     strerror(errno));
		goto out_free_buf;
	}
	fclose(f);
	*out = buf;
	*out_len = len;
	return 0;

out_free_buf:
	free(buf);
	fclose(f);
	return rc;
}

int vigie_conf_load(const char *path, struct vigie_conf **out)
{
	struct vigie_conf *c;
	char *text = NULL;
	size_t len = 0;
	int rc;

	if (!out)
		return VIGIE_EINVAL;
	*out = NULL;
	c = conf_new(path);
	if (!c)
		return VIGIE_ENOMEM;
	*out = c;
	if (!path)
		return fail_at(c, 0, "", NULL, "no file name given");
	rc = read_file(c, path, &text, &len);
	if (rc == 0)
		rc = build(c, text ? text : "", len);
	free(text);
	return finish(c, rc);
}

const char *vigie_conf_intern(struct vigie_conf *c, const char *s, size_t len)
{
	struct conf_string *cs;

	if (!c || !s)
		return NULL;
	cs = malloc(sizeof(*cs) + len + 1);
	if (!cs)
		return NULL;
	memcpy(cs->text, s, len);
	cs->text[len] = '\0';
	cs->next = c->interned;
	c->interned = cs;
	return cs->text;
}

void vigie_conf_free(struct vigie_conf *c)
{
	if (!c)
		return;
	while (c->interned) {
		struct conf_string *next = c->interned->next;

		/* Interned strings are secrets read from files: don't leave
		 * them in freed memory. */
		explicit_bzero(c->interned->text, strlen(c->interned->text));
		free(c->interned);
		c->interned = next;
	}
	node_free(c->root);
	free(c->file);
	free(c);
}

const char *vigie_conf_error(const struct vigie_conf *c)
{
	return c && c->failed ? c->err : NULL;
}

const char *vigie_conf_file(const struct vigie_conf *c)
{
	return c ? c->file : NULL;
}

const struct vigie_conf_node *vigie_conf_root(const struct vigie_conf *c)
{
	return c ? c->root : NULL;
}

/* ---- inspection ------------------------------------------------------ */

bool vigie_conf_is_map(const struct vigie_conf_node *n)
{
	return n && n->type == NODE_MAP;
}

bool vigie_conf_is_seq(const struct vigie_conf_node *n)
{
	return n && n->type == NODE_SEQ;
}

bool vigie_conf_is_scalar(const struct vigie_conf_node *n)
{
	return n && n->type == NODE_SCALAR;
}

unsigned vigie_conf_line(const struct vigie_conf_node *n)
{
	return n ? n->line : 0;
}

const char *vigie_conf_scalar(const struct vigie_conf_node *n)
{
	return vigie_conf_is_scalar(n) ? n->text : NULL;
}

const struct vigie_conf_node *vigie_conf_get(const struct vigie_conf_node *map,
					     const char *key)
{
	if (!vigie_conf_is_map(map) || !key)
		return NULL;
	for (size_t i = 0; i < map->len; i++) {
		if (strcmp(map->items[i]->key, key) == 0)
			return map->items[i];
	}
	return NULL;
}

size_t vigie_conf_map_len(const struct vigie_conf_node *map)
{
	return vigie_conf_is_map(map) ? map->len : 0;
}

const char *vigie_conf_map_key(const struct vigie_conf_node *map, size_t i)
{
	return vigie_conf_is_map(map) && i < map->len ? map->items[i]->key
						      : NULL;
}

const struct vigie_conf_node *
vigie_conf_map_value(const struct vigie_conf_node *map, size_t i)
{
	return vigie_conf_is_map(map) && i < map->len ? map->items[i] : NULL;
}

size_t vigie_conf_seq_len(const struct vigie_conf_node *seq)
{
	return vigie_conf_is_seq(seq) ? seq->len : 0;
}

const struct vigie_conf_node *
vigie_conf_seq_at(const struct vigie_conf_node *seq, size_t i)
{
	return vigie_conf_is_seq(seq) && i < seq->len ? seq->items[i] : NULL;
}

/* ---- checks and getters ---------------------------------------------- */

int vigie_conf_expect_map(struct vigie_conf *c, const struct vigie_conf_node *n,
			  const char *const *allowed)
{
	char got[CONF_QUOTE_MAX + 8];

	if (!n || (n->type == NODE_SCALAR && n->null))
		return 0;
	if (n->type != NODE_MAP)
		return vigie_conf_fail(c, n, "expected a map, got %s",
				       describe(n, got, sizeof(got)));
	for (size_t i = 0; i < n->len; i++) {
		const struct vigie_conf_node *v = n->items[i];
		char list[CONF_ERR_MAX / 2];
		size_t used = 0;
		bool known = false;

		for (size_t k = 0; allowed && allowed[k]; k++) {
			if (strcmp(allowed[k], v->key) == 0) {
				known = true;
				break;
			}
		}
		if (known)
			continue;
		list[0] = '\0';
		for (size_t k = 0; allowed && allowed[k]; k++) {
			int w = snprintf(list + used, sizeof(list) - used,
					 "%s%s", k ? ", " : "", allowed[k]);

			if (w < 0 || (size_t)w >= sizeof(list) - used)
				break;
			used += (size_t)w;
		}
		if (!used)
			return fail_key(c, v, "unknown key (none are allowed)");
		return fail_key(c, v, "unknown key (expected one of: %s)",
				list);
	}
	return 0;
}

/* lookup: the value under `key` in `map`. Returns 1 with *out set, 0 when
 * absent and optional, or VIGIE_ECONFIG. An empty YAML value ("key:" or
 * "key: ~") counts as absent. A NULL map is an optional section that is
 * absent (or empty): nothing in it is required then, so callers need not
 * test for it. */
static int lookup(struct vigie_conf *c, const struct vigie_conf_node *map,
		  const char *key, int flags,
		  const struct vigie_conf_node **out)
{
	const struct vigie_conf_node *n;
	char got[CONF_QUOTE_MAX + 8];

	if (!map || (map->type == NODE_SCALAR && map->null))
		return 0;
	if (map->type != NODE_MAP)
		return vigie_conf_fail(c, map, "expected a map, got %s",
				       describe(map, got, sizeof(got)));
	n = vigie_conf_get(map, key);
	if (n && !(n->type == NODE_SCALAR && n->null)) {
		*out = n;
		return 1;
	}
	if (flags != VIGIE_CONF_REQUIRED)
		return 0;
	if (n)
		return vigie_conf_fail(c, n, "must not be empty");
	return fail_at(c, map->line, vigie_conf_path(map), key,
		       "missing required key");
}

/* scalar_of: the text of `n`, or an error naming what was expected. */
static int scalar_of(struct vigie_conf *c, const struct vigie_conf_node *n,
		     const char *expected, const char **text)
{
	char got[CONF_QUOTE_MAX + 8];

	*text = "";
	if (n->type != NODE_SCALAR)
		return vigie_conf_fail(c, n, "expected %s, got %s", expected,
				       describe(n, got, sizeof(got)));
	*text = n->text;
	return 0;
}

int vigie_conf_section(struct vigie_conf *c, const struct vigie_conf_node *map,
		       const char *key, bool want_seq, int flags,
		       const struct vigie_conf_node **out)
{
	const struct vigie_conf_node *n;
	char got[CONF_QUOTE_MAX + 8];
	int rc;

	*out = NULL;
	rc = lookup(c, map, key, flags, &n);
	if (rc <= 0)
		return rc;
	if (n->type != (want_seq ? NODE_SEQ : NODE_MAP))
		return vigie_conf_fail(c, n, "expected %s, got %s",
				       want_seq ? "a list" : "a map",
				       describe(n, got, sizeof(got)));
	*out = n;
	return 0;
}

int vigie_conf_str(struct vigie_conf *c, const struct vigie_conf_node *map,
		   const char *key, int flags, const char **out)
{
	const struct vigie_conf_node *n;
	const char *text = NULL;
	int rc;

	rc = lookup(c, map, key, flags, &n);
	if (rc <= 0)
		return rc;
	rc = scalar_of(c, n, "a string", &text);
	if (rc)
		return rc;
	if (!*text && flags == VIGIE_CONF_REQUIRED)
		return vigie_conf_fail(c, n, "must not be empty");
	*out = text;
	return 0;
}

static bool id_ok(const char *s)
{
	size_t len = 0;

	for (; *s; s++, len++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '_' || *s == '-'))
			return false;
	}
	return len >= 1 && len <= CONF_ID_MAX;
}

int vigie_conf_id(struct vigie_conf *c, const struct vigie_conf_node *map,
		  const char *key, int flags, const char **out)
{
	static const char expected[] = "an id of 1 to 64 characters "
				       "a-z, 0-9, '_' or '-'";
	const struct vigie_conf_node *n;
	const char *text = NULL;
	char got[CONF_QUOTE_MAX + 8];
	int rc;

	rc = lookup(c, map, key, flags, &n);
	if (rc <= 0)
		return rc;
	rc = scalar_of(c, n, expected, &text);
	if (rc)
		return rc;
	if (!id_ok(text))
		return vigie_conf_fail(c, n, "expected %s, got %s", expected,
				       describe(n, got, sizeof(got)));
	*out = text;
	return 0;
}

/* parse_u64: decimal digits only; no sign, space, base prefix or suffix. */
static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned d;

		if (*s < '0' || *s > '9')
			return false;
		d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

int vigie_conf_uint(struct vigie_conf *c, const struct vigie_conf_node *map,
		    const char *key, uint64_t min, uint64_t max, int flags,
		    uint64_t *out)
{
	const struct vigie_conf_node *n;
	char expected[96];
	char got[CONF_QUOTE_MAX + 8];
	const char *text = NULL;
	uint64_t v = 0;
	int rc;

	rc = lookup(c, map, key, flags, &n);
	if (rc <= 0)
		return rc;
	if (n->type == NODE_SCALAR)
		text = n->text;
	if (text && parse_u64(text, &v) && v >= min && v <= max) {
		*out = v;
		return 0;
	}
	if (max == UINT64_MAX)
		snprintf(expected, sizeof(expected),
			 "an integer of at least %llu",
			 (unsigned long long)min);
	else
		snprintf(expected, sizeof(expected),
			 "an integer from %llu to %llu",
			 (unsigned long long)min, (unsigned long long)max);
	return vigie_conf_fail(c, n, "expected %s, got %s", expected,
			       describe(n, got, sizeof(got)));
}

/* parse_double: a plain decimal number; strtod alone would also take "nan",
 * "inf", hex floats and leading spaces. */
static bool parse_double(const char *s, double *out)
{
	char *end;
	double v;

	if (!*s || strspn(s, "0123456789.eE+-") != strlen(s))
		return false;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end || !isfinite(v))
		return false;
	*out = v;
	return true;
}

int vigie_conf_double(struct vigie_conf *c, const struct vigie_conf_node *map,
		      const char *key, double min, double max, int flags,
		      double *out)
{
	const struct vigie_conf_node *n;
	char got[CONF_QUOTE_MAX + 8];
	double v = 0;
	int rc;

	rc = lookup(c, map, key, flags, &n);
	if (rc <= 0)
		return rc;
	if (n->type == NODE_SCALAR && parse_double(n->text, &v) && v >= min &&
	    v <= max) {
		*out = v;
		return 0;
	}
	return vigie_conf_fail(c, n, "expected a number from %g to %g, got %s",
			       min, max, describe(n, got, sizeof(got)));
}

int vigie_conf_bool(struct vigie_conf *c, const struct vigie_conf_node *map,
		    const char *key, int flags, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on"};
	static const char *const no[] = {"false", "no", "off"};
	const struct vigie_conf_node *n;
	char got[CONF_QUOTE_MAX + 8];
	int rc;

	rc = lookup(c, map, key, flags, &n);
	if (rc <= 0)
		return rc;
	for (size_t i = 0; n->type == NODE_SCALAR && i < 3; i++) {
		if (strcasecmp(n->text, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(n->text, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return vigie_conf_fail(c, n, "expected true or false, got %s",
			       describe(n, got, sizeof(got)));
}

/* format_ms: a duration the way an operator would write it. */
static void format_ms(uint64_t ms, char *buf, size_t size)
{
	static const struct {
		uint64_t ms;
		const char *unit;
	} units[] = {
		{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};

	for (size_t i = 0; ms && i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms % units[i].ms == 0) {
			snprintf(buf, size, "%llu%s",
				 (unsigned long long)(ms / units[i].ms),
				 units[i].unit);
			return;
		}
	}
	snprintf(buf, size, "%llums", (unsigned long long)ms);
}

/* duration_shape: digits, an optional fraction, an optional unit. Checked
 * before vigie_duration_parse, which relies on strtod and would take
 * "nan", "inf" or "1e3s". */
static bool duration_shape(const char *s)
{
	size_t n = strspn(s, "0123456789");

	if (!n)
		return false;
	s += n;
	if (*s == '.') {
		n = strspn(++s, "0123456789");
		if (!n)
			return false;
		s += n;
	}
	return strspn(s, "abcdefghijklmnopqrstuvwxyz") == strlen(s);
}

int vigie_conf_duration(struct vigie_conf *c, const struct vigie_conf_node *map,
			const char *key, uint64_t min_ms, uint64_t max_ms,
			int flags, uint64_t *out_ms)
{
	const struct vigie_conf_node *n;
	char got[CONF_QUOTE_MAX + 8];
	char lo[32];
	char hi[32];
	uint64_t v = 0;
	int rc;

	rc = lookup(c, map, key, flags, &n);
	if (rc <= 0)
		return rc;
	if (n->type == NODE_SCALAR && duration_shape(n->text) &&
	    vigie_duration_parse(n->text, &v) == 0 && v >= min_ms &&
	    v <= max_ms) {
		*out_ms = v;
		return 0;
	}
	format_ms(min_ms, lo, sizeof(lo));
	if (max_ms == UINT64_MAX)
		return vigie_conf_fail(c, n,
				       "expected a duration of at least %s "
				       "(250ms, 5s, 2m, 1h), got %s",
				       lo, describe(n, got, sizeof(got)));
	format_ms(max_ms, hi, sizeof(hi));
	return vigie_conf_fail(c, n,
			       "expected a duration from %s to %s (250ms, 5s, "
			       "2m, 1h), got %s",
			       lo, hi, describe(n, got, sizeof(got)));
}

int vigie_conf_str_list(struct vigie_conf *c, const struct vigie_conf_node *map,
			const char *key, int flags, const char ***out,
			size_t *count)
{
	const struct vigie_conf_node *n;
	const char **list;
	const char *text = NULL;
	char got[CONF_QUOTE_MAX + 8];
	size_t len;
	int rc;

	rc = lookup(c, map, key, flags, &n);
	if (rc <= 0)
		return rc;
	if (n->type == NODE_MAP)
		return vigie_conf_fail(c, n,
				       "expected a string or a list of "
				       "strings, got %s",
				       describe(n, got, sizeof(got)));
	len = n->type == NODE_SEQ ? n->len : 1;
	if (!len) {
		if (flags == VIGIE_CONF_REQUIRED)
			return vigie_conf_fail(c, n, "must not be empty");
		*out = NULL;
		*count = 0;
		return 0;
	}
	list = malloc(len * sizeof(*list));
	if (!list)
		return fail_nomem(c, n);
	for (size_t i = 0; i < len; i++) {
		const struct vigie_conf_node *item =
			n->type == NODE_SEQ ? n->items[i] : n;

		rc = scalar_of(c, item, "a string", &text);
		if (!rc && !*text)
			rc = vigie_conf_fail(c, item, "must not be empty");
		if (rc) {
			free(list);
			return rc;
		}
		list[i] = text;
	}
	*out = list;
	*count = len;
	return 0;
}
