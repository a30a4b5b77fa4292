/* A capped text buffer (curl's dynbuf): frames and JSON lines are built in
 * one, so a hostile payload can make a line long but never unbounded. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "post.h"
#include "vigie/error.h"

void vigie__postbuf_init(struct post_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void vigie__postbuf_free(struct post_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->size = 0;
	b->err = 0;
}

void vigie__postbuf_reset(struct post_buf *b)
{
	b->len = 0;
	b->err = 0;
	if (b->data)
		b->data[0] = '\0';
}

/* Make room for `more` bytes plus the NUL. */
static int grow(struct post_buf *b, size_t more)
{
	size_t need, size;
	char *p;

	if (b->err)
		return b->err;
	if (more > b->max || b->len + more > b->max) {
		b->err = VIGIE_ETOOBIG;
		return b->err;
	}
	need = b->len + more + 1;
	if (need <= b->size)
		return 0;
	size = b->size ? b->size : 256;
	while (size < need)
		size *= 2;
	if (size > b->max + 1)
		size = b->max + 1;
	p = realloc(b->data, size);
	if (!p) {
		b->err = VIGIE_ENOMEM;
		return b->err;
	}
	b->data = p;
	b->size = size;
	return 0;
}

int vigie__postbuf_add(struct post_buf *b, const void *data, size_t len)
{
	int rc = grow(b, len);

	if (rc)
		return rc;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int vigie__postbuf_addc(struct post_buf *b, char c)
{
	return vigie__postbuf_add(b, &c, 1);
}

int vigie__postbuf_adds(struct post_buf *b, const char *s)
{
	return vigie__postbuf_add(b, s, strlen(s));
}

int vigie__postbuf_addf(struct post_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return VIGIE_EINVAL;
	rc = grow(b, (size_t)n);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}
