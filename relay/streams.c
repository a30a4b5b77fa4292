#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streams.h"
#include "vigie/error.h"

void vigie__streams_init(struct streams *s, size_t max_streams,
			 size_t max_above)
{
	memset(s, 0, sizeof(*s));
	s->max_streams = max_streams;
	s->max_above = max_above;
}

void vigie__streams_free(struct streams *s)
{
	struct hmap_entry *e, *next;
	size_t pos = 0;

	/* Collect first: freeing while iterating would read freed entries. */
	for (e = vigie__hmap_first(&s->map, &pos); e; e = next) {
		struct stream *st = container_of(e, struct stream, he);

		next = vigie__hmap_next(&s->map, e, &pos);
		free(st->above);
		free(st);
	}
	vigie__hmap_free(&s->map);
}

int vigie__streams_get(struct streams *s, const char *site, const char *node,
		       uint64_t boot_id, bool create, struct stream **out)
{
	char key[sizeof(((struct stream *)0)->key)];
	struct hmap_entry *e;
	struct stream *st;
	int n;

	n = snprintf(key, sizeof(key), "%s/%s/%" PRIu64, site, node, boot_id);
	if (n < 0 || (size_t)n >= sizeof(key) || strlen(site) > VIGIE_ID_MAX ||
	    strlen(node) > VIGIE_ID_MAX)
		return VIGIE_EINVAL;
	e = vigie__hmap_find(&s->map, key);
	if (e) {
		*out = container_of(e, struct stream, he);
		return 0;
	}
	if (!create)
		return VIGIE_ENOTFOUND;
	if (s->map.count >= s->max_streams)
		return VIGIE_EFULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return VIGIE_ENOMEM;
	memcpy(st->key, key, (size_t)n + 1);
	strcpy(st->site, site);
	strcpy(st->node, node);
	st->boot_id = boot_id;
	st->he.key = st->key;
	if (vigie__hmap_insert(&s->map, &st->he)) {
		free(st);
		return VIGIE_ENOMEM;
	}
	*out = st;
	return 0;
}

/* Index of the first element >= seq. */
static size_t lower_bound(const uint64_t *a, size_t n, uint64_t seq)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a[mid] < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

enum stream_verdict vigie__stream_check(const struct streams *s,
					const struct stream *st, uint64_t seq)
{
	size_t i;

	if (seq <= st->contig)
		return STREAM_DUP;
	if (seq == st->contig + 1)
		return STREAM_NEW;
	i = lower_bound(st->above, st->n_above, seq);
	if (i < st->n_above && st->above[i] == seq)
		return STREAM_DUP;
	if (st->n_above >= s->max_above)
		return STREAM_FULL;
	return STREAM_NEW;
}

/* Drop above[0..drop) and take contig through what follows it without a
 * hole. */
static void close_gap(struct stream *st, size_t drop)
{
	while (drop < st->n_above && st->above[drop] == st->contig + 1)
		st->contig = st->above[drop++];
	if (drop) {
		memmove(st->above, st->above + drop,
			(st->n_above - drop) * sizeof(*st->above));
		st->n_above -= drop;
	}
}

bool vigie__stream_advance(struct stream *st, uint64_t seq)
{
	size_t drop = 0;

	if (seq <= st->contig)
		return false;
	st->contig = seq;
	while (drop < st->n_above && st->above[drop] <= seq)
		drop++;
	close_gap(st, drop);
	return true;
}

int vigie__stream_mark(const struct streams *s, struct stream *st, uint64_t seq)
{
	size_t i;

	if (seq == st->contig + 1) {
		st->contig = seq;
		/* Close the gap with what came early. */
		close_gap(st, 0);
		return 0;
	}
	if (st->n_above >= s->max_above)
		return VIGIE_EFULL;
	if (st->n_above == st->cap_above) {
		size_t cap = st->cap_above ? st->cap_above * 2 : 8;
		uint64_t *a = realloc(st->above, cap * sizeof(*a));

		if (!a)
			return VIGIE_ENOMEM;
		st->above = a;
		st->cap_above = cap;
	}
	i = lower_bound(st->above, st->n_above, seq);
	memmove(st->above + i + 1, st->above + i,
		(st->n_above - i) * sizeof(*st->above));
	st->above[i] = seq;
	st->n_above++;
	return 0;
}
