/* Which central broker's report to believe (see arbiter.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbiter.h"

struct arb_entry {
	struct hmap_entry he;
	char key[2 * VIGIE_ID_MAX + 2];
	enum arb_view view[ARB_MAX_BROKERS]; /* posts, bridges */
	/* nodes: where and when it was last heard */
	unsigned alive_via;
	uint64_t alive_ms;
	bool alive;
};

void vigie__arb_init(struct arbiter *a, size_t n_brokers, size_t max_entries)
{
	memset(a, 0, sizeof(*a));
	a->n_brokers =
		n_brokers > ARB_MAX_BROKERS ? ARB_MAX_BROKERS : n_brokers;
	a->max_entries = max_entries;
}

static void free_map(struct hmap *m)
{
	struct hmap_entry *h, *next;
	size_t pos = 0;

	for (h = vigie__hmap_first(m, &pos); h; h = next) {
		next = vigie__hmap_next(m, h, &pos);
		free(container_of(h, struct arb_entry, he));
	}
	vigie__hmap_free(m);
}

void vigie__arb_free(struct arbiter *a)
{
	free_map(&a->posts);
	free_map(&a->bridges);
	free_map(&a->nodes);
}

/* NULL when out of memory or over the cap: the caller then falls back to
 * believing the report as it stands, as with a single broker. */
static struct arb_entry *get(struct arbiter *a, struct hmap *m, const char *key)
{
	struct hmap_entry *h = vigie__hmap_find(m, key);
	struct arb_entry *e;

	if (h)
		return container_of(h, struct arb_entry, he);
	if (strlen(key) >= sizeof(e->key) || m->count >= a->max_entries)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	strcpy(e->key, key);
	e->he.key = e->key;
	if (vigie__hmap_insert(m, &e->he)) {
		free(e);
		return NULL;
	}
	return e;
}

static void forget(struct hmap *m, unsigned b)
{
	struct hmap_entry *h;
	size_t pos = 0;

	for (h = vigie__hmap_first(m, &pos); h;
	     h = vigie__hmap_next(m, h, &pos))
		container_of(h, struct arb_entry, he)->view[b] = ARB_UNKNOWN;
}

void vigie__arb_connected(struct arbiter *a, unsigned b, bool up)
{
	if (b >= a->n_brokers)
		return;
	a->connected[b] = up;
	if (up)
		return;
	forget(&a->posts, b);
	forget(&a->bridges, b);
}

static enum arb_view judge(struct arbiter *a, struct hmap *m, unsigned b,
			   const char *key, bool up)
{
	struct arb_entry *e = b < a->n_brokers ? get(a, m, key) : NULL;
	bool any_down = false;

	if (!e)
		return up ? ARB_UP : ARB_DOWN;
	e->view[b] = up ? ARB_UP : ARB_DOWN;
	for (size_t i = 0; i < a->n_brokers; i++) {
		/* The reporting broker counts even if we have not yet seen
		 * its CONNACK callback (it is connected: it just spoke). */
		if (i != b && !a->connected[i])
			continue;
		if (e->view[i] == ARB_UP)
			return ARB_UP;
		if (e->view[i] == ARB_DOWN)
			any_down = true;
	}
	return any_down ? ARB_DOWN : (up ? ARB_UP : ARB_DOWN);
}

enum arb_view vigie__arb_post(struct arbiter *a, unsigned b, const char *post,
			      bool up)
{
	return judge(a, &a->posts, b, post, up);
}

enum arb_view vigie__arb_bridge(struct arbiter *a, unsigned b, const char *site,
				bool up)
{
	return judge(a, &a->bridges, b, site, up);
}

static void node_key(char *buf, size_t len, const char *site, const char *node)
{
	snprintf(buf, len, "%s/%s", site, node);
}

void vigie__arb_node_alive(struct arbiter *a, unsigned b, const char *site,
			   const char *node, uint64_t now_ms)
{
	char key[2 * VIGIE_ID_MAX + 2];
	struct arb_entry *e;

	if (b >= a->n_brokers || !vigie_id_valid(site) || !vigie_id_valid(node))
		return;
	node_key(key, sizeof(key), site, node);
	e = get(a, &a->nodes, key);
	if (!e)
		return;
	e->alive = true;
	e->alive_via = b;
	e->alive_ms = now_ms;
}

bool vigie__arb_node_offline(struct arbiter *a, unsigned b, const char *site,
			     const char *node, uint64_t now_ms,
			     uint64_t reporting_ms, unsigned *via)
{
	char key[2 * VIGIE_ID_MAX + 2];
	struct hmap_entry *h;
	const struct arb_entry *e;

	if (!vigie_id_valid(site) || !vigie_id_valid(node))
		return true;
	node_key(key, sizeof(key), site, node);
	h = vigie__hmap_find(&a->nodes, key);
	if (!h)
		return true;
	e = container_of(h, struct arb_entry, he);
	if (!e->alive || e->alive_via == b || e->alive_via >= a->n_brokers ||
	    !a->connected[e->alive_via] || now_ms < e->alive_ms ||
	    now_ms - e->alive_ms >= reporting_ms)
		return true;
	if (via)
		*via = e->alive_via;
	return false;
}
