#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "vigie/error.h"

uint64_t vigie__hash_str(const char *s)
{
	/* FNV-1a, then a final mix so that low bits (the bucket index) depend
	 * on every byte. */
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

struct hmap_entry *vigie__hmap_find(const struct hmap *m, const char *key)
{
	uint64_t h;

	if (!m->n_buckets)
		return NULL;
	h = vigie__hash_str(key);
	for (struct hmap_entry *e = m->buckets[h & (m->n_buckets - 1)]; e;
	     e = e->next)
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static int grow(struct hmap *m)
{
	size_t n = m->n_buckets ? m->n_buckets * 2 : 64;
	struct hmap_entry **b = calloc(n, sizeof(*b));

	if (!b)
		return VIGIE_ENOMEM;
	for (size_t i = 0; i < m->n_buckets; i++) {
		struct hmap_entry *e = m->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->n_buckets = n;
	return 0;
}

int vigie__hmap_insert(struct hmap *m, struct hmap_entry *e)
{
	size_t i;

	if (m->count >= m->n_buckets && grow(m))
		return VIGIE_ENOMEM;
	e->hash = vigie__hash_str(e->key);
	i = e->hash & (m->n_buckets - 1);
	e->next = m->buckets[i];
	m->buckets[i] = e;
	m->count++;
	return 0;
}

void vigie__hmap_remove(struct hmap *m, struct hmap_entry *e)
{
	struct hmap_entry **pp;

	if (!m->n_buckets)
		return;
	for (pp = &m->buckets[e->hash & (m->n_buckets - 1)]; *pp;
	     pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			e->next = NULL;
			m->count--;
			return;
		}
	}
}

struct hmap_entry *vigie__hmap_first(const struct hmap *m, size_t *pos)
{
	for (size_t i = 0; i < m->n_buckets; i++) {
		if (m->buckets[i]) {
			*pos = i;
			return m->buckets[i];
		}
	}
	return NULL;
}

struct hmap_entry *vigie__hmap_next(const struct hmap *m, struct hmap_entry *e,
				    size_t *pos)
{
	if (e->next)
		return e->next;
	for (size_t i = *pos + 1; i < m->n_buckets; i++) {
		if (m->buckets[i]) {
			*pos = i;
			return m->buckets[i];
		}
	}
	return NULL;
}

void vigie__hmap_free(struct hmap *m)
{
	free(m->buckets);
	memset(m, 0, sizeof(*m));
}
