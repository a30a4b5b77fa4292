/* Supervision of nodes, bridges and posts; the rules are in supervise.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervise.h"
#include "vigie/codec.h"

#define DEFAULT_MAX_NODES 200000

static uint64_t mono(const struct supervisor *s)
{
	return s->clock->mono_ms(s->clock);
}

void vigie__sup_init(struct supervisor *s, const struct relay_clock *clock,
		     const struct relay_config *cfg,
		     uint64_t default_reporting_ms, sup_change_cb cb, void *ud)
{
	memset(s, 0, sizeof(*s));
	s->clock = clock;
	s->cfg = cfg;
	s->default_reporting_ms =
		default_reporting_ms ? default_reporting_ms : 10000;
	s->cb = cb;
	s->ud = ud;
	s->max_nodes = DEFAULT_MAX_NODES;
}

static void free_map(struct hmap *m, size_t offset)
{
	struct hmap_entry *h, *next;
	size_t pos = 0;

	for (h = vigie__hmap_first(m, &pos); h; h = next) {
		next = vigie__hmap_next(m, h, &pos);
		free((char *)h - offset);
	}
	vigie__hmap_free(m);
}

void vigie__sup_free(struct supervisor *s)
{
	struct hmap_entry *h;
	size_t pos = 0;

	for (h = vigie__hmap_first(&s->nodes, &pos); h;
	     h = vigie__hmap_next(&s->nodes, h, &pos)) {
		struct sup_node *n = container_of(h, struct sup_node, he);

		for (size_t i = 0; i < n->n_uncovered; i++)
			free(n->uncovered[i]);
		free(n->uncovered);
	}
	free_map(&s->nodes, offsetof(struct sup_node, he));
	free_map(&s->sites, offsetof(struct sup_site, he));
	free_map(&s->posts, offsetof(struct sup_post, he));
}

static void report(struct supervisor *s, const struct sup_change *c)
{
	if (s->cb)
		s->cb(s->ud, c);
}

struct sup_site *vigie__sup_site(struct supervisor *s, const char *site,
				 bool create)
{
	struct hmap_entry *h;
	struct sup_site *st;

	if (!vigie_id_valid(site))
		return NULL;
	h = vigie__hmap_find(&s->sites, site);
	if (h)
		return container_of(h, struct sup_site, he);
	if (!create)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	strcpy(st->id, site);
	st->he.key = st->id;
	if (vigie__hmap_insert(&s->sites, &st->he)) {
		free(st);
		return NULL;
	}
	return st;
}

static void node_key(char *buf, size_t len, const char *site, const char *node)
{
	snprintf(buf, len, "%s/%s", site, node);
}

struct sup_node *vigie__sup_find(const struct supervisor *s, const char *site,
				 const char *node)
{
	char key[2 * VIGIE_ID_MAX + 2];
	struct hmap_entry *h;

	if (!vigie_id_valid(site) || !vigie_id_valid(node))
		return NULL;
	node_key(key, sizeof(key), site, node);
	h = vigie__hmap_find(&s->nodes, key);
	return h ? container_of(h, struct sup_node, he) : NULL;
}

static void update_reporting(struct supervisor *s, struct sup_node *n)
{
	if (s->cfg)
		n->reporting_ms = vigie__relayconf_reporting(
			s->cfg, n->site, n->node, n->advertised_ms);
	else
		n->reporting_ms = n->advertised_ms ? n->advertised_ms
						   : s->default_reporting_ms;
}

struct sup_node *vigie__sup_watch(struct supervisor *s, const char *site,
				  const char *node)
{
	struct sup_node *n = vigie__sup_find(s, site, node);
	struct sup_site *st;

	if (n)
		return n;
	if (!vigie_id_valid(site) || !vigie_id_valid(node) ||
	    s->nodes.count >= s->max_nodes)
		return NULL;
	st = vigie__sup_site(s, site, true);
	n = calloc(1, sizeof(*n));
	if (!st || !n) {
		free(n);
		return NULL;
	}
	strcpy(n->site, site);
	strcpy(n->node, node);
	node_key(n->key, sizeof(n->key), site, node);
	n->he.key = n->key;
	if (vigie__hmap_insert(&s->nodes, &n->he)) {
		free(n);
		return NULL;
	}
	n->last_seen_ms = mono(s);
	update_reporting(s, n);
	n->site_next = st->nodes;
	st->nodes = n;
	st->n_nodes++;
	return n;
}

static void node_back(struct supervisor *s, struct sup_node *n,
		      const char *reason)
{
	struct sup_change c = {.what = SUP_NODE,
			       .site = n->site,
			       .id = n->node,
			       .lost = false,
			       .reason = reason};

	if (!n->lost)
		return;
	n->lost = false;
	report(s, &c);
}

static void node_lost(struct supervisor *s, struct sup_node *n,
		      const char *reason, uint64_t silent_ms)
{
	struct sup_change c = {.what = SUP_NODE,
			       .site = n->site,
			       .id = n->node,
			       .lost = true,
			       .reason = reason,
			       .silent_ms = silent_ms};

	if (n->lost)
		return;
	n->lost = true;
	report(s, &c);
}

void vigie__sup_heartbeat(struct supervisor *s, const char *site,
			  const char *node, uint64_t boot_id,
			  uint64_t advertised_ms, uint64_t hb_time_us,
			  uint32_t outbox_pending, const char *path)
{
	struct sup_node *n = vigie__sup_watch(s, site, node);

	if (!n || boot_id < n->boot_id)
		return; /* a boot that is over */
	if (n->offline_boot && boot_id <= n->offline_boot)
		return; /* the dead boot's heartbeat, still in flight */
	n->offline_boot = 0;
	n->boot_id = boot_id;
	if (advertised_ms && advertised_ms != n->advertised_ms) {
		n->advertised_ms = advertised_ms;
		update_reporting(s, n);
	}
	n->last_seen_ms = mono(s);
	n->last_hb_us = hb_time_us;
	n->outbox_pending = outbox_pending;
	snprintf(n->path, sizeof(n->path), "%s", path ? path : "");
	node_back(s, n, "heartbeat");
}

void vigie__sup_node_state(struct supervisor *s, const char *site,
			   const char *node, uint64_t boot_id, bool online,
			   const char *reason, uint64_t advertised_ms,
			   bool retained)
{
	struct sup_node *n = vigie__sup_watch(s, site, node);

	if (!n || (boot_id && boot_id < n->boot_id))
		return;
	if (boot_id > n->boot_id)
		n->boot_id = boot_id;
	if (advertised_ms && advertised_ms != n->advertised_ms) {
		n->advertised_ms = advertised_ms;
		update_reporting(s, n);
	}
	if (online) {
		if (retained)
			return;
		n->offline_boot = 0;
		n->last_seen_ms = mono(s);
		node_back(s, n, "birth");
		return;
	}
	n->offline_boot = n->boot_id;
	node_lost(s, n, reason && *reason ? reason : "offline", 0);
}

void vigie__sup_bridge(struct supervisor *s, const char *site, bool up)
{
	struct sup_site *st = vigie__sup_site(s, site, true);
	struct sup_change c = {
		.what = SUP_BRIDGE, .lost = !up, .reason = "bridge"};

	if (!st)
		return;
	st->bridge_known = true;
	st->bridge_up = up;
	c.site = st->id;
	if (up) {
		/* Its nodes were not judged while it was down: from now on
		 * they have a full reporting time to be heard again. */
		uint64_t now = mono(s);

		for (struct sup_node *n = st->nodes; n; n = n->site_next)
			n->last_seen_ms = now;
		if (!st->bridge_lost)
			return;
		st->bridge_lost = false;
		report(s, &c);
		return;
	}
	if (st->bridge_lost)
		return;
	st->bridge_lost = true;
	report(s, &c);
}

static struct sup_post *get_post(struct supervisor *s, const char *post)
{
	struct hmap_entry *h;
	struct sup_post *p;

	if (!vigie_id_valid(post))
		return NULL;
	h = vigie__hmap_find(&s->posts, post);
	if (h)
		return container_of(h, struct sup_post, he);
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	strcpy(p->id, post);
	p->he.key = p->id;
	if (vigie__hmap_insert(&s->posts, &p->he)) {
		free(p);
		return NULL;
	}
	return p;
}

void vigie__sup_post(struct supervisor *s, const char *post, bool online)
{
	struct sup_post *p = get_post(s, post);
	struct sup_change c = {.what = SUP_POST, .lost = !online};

	if (!p)
		return;
	p->status = online ? VIGIE__V1__POST_STATUS__POST_ONLINE
			   : VIGIE__V1__POST_STATUS__POST_OFFLINE;
	c.id = p->id;
	c.reason = online ? "online" : "offline";
	if (p->lost == !online)
		return;
	p->lost = !online;
	report(s, &c);
}

void vigie__sup_blind(struct supervisor *s, bool blind)
{
	struct hmap_entry *h;
	size_t pos = 0;
	uint64_t now = mono(s);

	if (s->blind == blind)
		return;
	s->blind = blind;
	if (blind)
		return;
	for (h = vigie__hmap_first(&s->nodes, &pos); h;
	     h = vigie__hmap_next(&s->nodes, h, &pos))
		container_of(h, struct sup_node, he)->last_seen_ms = now;
}

void vigie__sup_tick(struct supervisor *s)
{
	uint64_t now = mono(s);
	struct hmap_entry *h;
	size_t pos = 0;

	if (s->blind)
		return;
	for (h = vigie__hmap_first(&s->sites, &pos); h;
	     h = vigie__hmap_next(&s->sites, h, &pos)) {
		struct sup_site *st = container_of(h, struct sup_site, he);

		if (st->bridge_known && !st->bridge_up)
			continue;
		for (struct sup_node *n = st->nodes; n; n = n->site_next) {
			uint64_t silent = now - n->last_seen_ms;

			if (!n->lost && now > n->last_seen_ms &&
			    silent > n->reporting_ms)
				node_lost(s, n, "silence", silent);
		}
	}
}

void vigie__sup_mark_lost(struct supervisor *s, enum sup_what what,
			  const char *site, const char *id)
{
	switch (what) {
	case SUP_NODE: {
		struct sup_node *n = vigie__sup_watch(s, site, id);

		if (n)
			n->lost = true;
		break;
	}
	case SUP_BRIDGE: {
		struct sup_site *st = vigie__sup_site(s, site, true);

		if (st)
			st->bridge_lost = true;
		break;
	}
	case SUP_POST: {
		struct sup_post *p = get_post(s, id);

		if (p)
			p->lost = true;
		break;
	}
	}
}

bool vigie__sup_post_online(const struct supervisor *s, const char *post)
{
	struct hmap_entry *h = vigie__hmap_find(&s->posts, post);

	return !h || container_of(h, struct sup_post, he)->status !=
			     VIGIE__V1__POST_STATUS__POST_OFFLINE;
}

int vigie__sup_bridge_state(const struct supervisor *s, const char *site)
{
	struct hmap_entry *h = vigie__hmap_find(&s->sites, site);
	const struct sup_site *st;

	if (!h)
		return -1;
	st = container_of(h, struct sup_site, he);
	return st->bridge_known ? (st->bridge_up ? 1 : 0) : -1;
}
