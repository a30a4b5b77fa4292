/* A small intrusive hash map keyed by strings: the owner embeds a
 * `struct hmap_entry` and keeps the key; the map never allocates entries,
 * only its bucket array (grown by doubling, load factor <= 1). */
#ifndef VIGIE_RELAY_HMAP_H
#define VIGIE_RELAY_HMAP_H

#include <stddef.h>
#include <stdint.h>

struct hmap_entry {
	struct hmap_entry *next;
	uint64_t hash;
	const char *key; /* owned by the entry's owner, stable while mapped */
};

struct hmap {
	struct hmap_entry **buckets;
	size_t n_buckets; /* a power of two, or 0 before the first insert */
	size_t count;
};

#define container_of(ptr, type, member)                                        \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

uint64_t vigie__hash_str(const char *s);

/* vigie__hmap_find: the entry with `key`, or NULL. */
struct hmap_entry *vigie__hmap_find(const struct hmap *m, const char *key);

/* vigie__hmap_insert: add `e` (e->key set, not already in the map).
 * Returns 0 or VIGIE_ENOMEM (then `e` is not in the map). */
int vigie__hmap_insert(struct hmap *m, struct hmap_entry *e);

void vigie__hmap_remove(struct hmap *m, struct hmap_entry *e);

/* Iterate: for (e = vigie__hmap_first(m, &i); e; e = vigie__hmap_next(m, e,
 * &i)). Do not insert or remove while iterating. */
struct hmap_entry *vigie__hmap_first(const struct hmap *m, size_t *pos);
struct hmap_entry *vigie__hmap_next(const struct hmap *m, struct hmap_entry *e,
				    size_t *pos);

void vigie__hmap_free(struct hmap *m);

#endif
