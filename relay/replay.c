/* Replay memory of the relay; the contract is in replay.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "vigie/codec.h"
#include "vigie/error.h"

struct replay_node {
	struct hmap_entry he;
	char key[2 * VIGIE_ID_MAX + 2]; /* "site/node" */
	uint64_t newest_boot;
	uint64_t hb_boot, hb_seq;
};

int vigie__replay_init(struct replay_guard *g, size_t max_nodes, size_t n_slots)
{
	size_t n = 1;

	memset(g, 0, sizeof(*g));
	while (n < n_slots)
		n <<= 1;
	g->slots = calloc(n, sizeof(*g->slots));
	if (!g->slots)
		return VIGIE_ENOMEM;
	g->n_slots = n;
	g->max_nodes = max_nodes;
	return 0;
}

void vigie__replay_free(struct replay_guard *g)
{
	struct hmap_entry *h, *next;
	size_t pos = 0;

	for (h = vigie__hmap_first(&g->nodes, &pos); h; h = next) {
		next = vigie__hmap_next(&g->nodes, h, &pos);
		free(container_of(h, struct replay_node, he));
	}
	vigie__hmap_free(&g->nodes);
	free(g->slots);
	memset(g, 0, sizeof(*g));
}

static void node_key(char *buf, size_t len, const char *site, const char *node)
{
	snprintf(buf, len, "%s/%s", site, node);
}

static struct replay_node *find(const struct replay_guard *g, const char *site,
				const char *node)
{
	char key[2 * VIGIE_ID_MAX + 2];
	struct hmap_entry *h;

	node_key(key, sizeof(key), site, node);
	h = vigie__hmap_find(&g->nodes, key);
	return h ? container_of(h, struct replay_node, he) : NULL;
}

static struct replay_node *get(struct replay_guard *g, const char *site,
			       const char *node)
{
	struct replay_node *n = find(g, site, node);

	if (n || g->nodes.count >= g->max_nodes)
		return n;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	node_key(n->key, sizeof(n->key), site, node);
	n->he.key = n->key;
	if (vigie__hmap_insert(&g->nodes, &n->he)) {
		free(n);
		return NULL;
	}
	return n;
}

void vigie__replay_note_boot(struct replay_guard *g, const char *site,
			     const char *node, uint64_t boot)
{
	struct replay_node *n = get(g, site, node);

	if (n && boot > n->newest_boot)
		n->newest_boot = boot;
}

uint64_t vigie__replay_newest_boot(const struct replay_guard *g,
				   const char *site, const char *node)
{
	const struct replay_node *n = find(g, site, node);

	return n ? n->newest_boot : 0;
}

bool vigie__replay_heartbeat(struct replay_guard *g, const char *site,
			     const char *node, uint64_t boot, uint64_t hb_seq)
{
	struct replay_node *n = get(g, site, node);

	if (!n)
		return true; /* no room to remember: judge by signature only */
	if (boot < n->hb_boot || (boot == n->hb_boot && hb_seq <= n->hb_seq))
		return false;
	n->hb_boot = boot;
	n->hb_seq = hb_seq;
	if (boot > n->newest_boot)
		n->newest_boot = boot;
	return true;
}

/* FNV-1a over the identity; never 0 (0 marks an empty slot). */
static uint64_t ident_hash(const char *site, const char *node, uint64_t boot,
			   uint64_t seq)
{
	uint64_t h = 1469598103934665603ULL;
	const char *parts[2] = {site, node};

	for (int i = 0; i < 2; i++) {
		for (const char *p = parts[i]; *p; p++) {
			h ^= (unsigned char)*p;
			h *= 1099511628211ULL;
		}
		h ^= '/';
		h *= 1099511628211ULL;
	}
	for (int i = 0; i < 8; i++) {
		h ^= (boot >> (8 * i)) & 0xff;
		h *= 1099511628211ULL;
	}
	for (int i = 0; i < 8; i++) {
		h ^= (seq >> (8 * i)) & 0xff;
		h *= 1099511628211ULL;
	}
	return h ? h : 1;
}

void vigie__replay_remember(struct replay_guard *g, const char *site,
			    const char *node, uint64_t boot, uint64_t seq,
			    const uint8_t *digest)
{
	uint64_t id = ident_hash(site, node, boot, seq);
	struct replay_slot *s = &g->slots[id & (g->n_slots - 1)];

	s->id = id;
	memcpy(s->digest, digest, sizeof(s->digest));
}

enum replay_same vigie__replay_compare(const struct replay_guard *g,
				       const char *site, const char *node,
				       uint64_t boot, uint64_t seq,
				       const uint8_t *digest)
{
	uint64_t id = ident_hash(site, node, boot, seq);
	const struct replay_slot *s = &g->slots[id & (g->n_slots - 1)];

	if (s->id != id)
		return REPLAY_UNKNOWN;
	return memcmp(s->digest, digest, sizeof(s->digest)) == 0
		       ? REPLAY_SAME
		       : REPLAY_DIFFERENT;
}
