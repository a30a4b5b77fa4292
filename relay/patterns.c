/* The pattern engine; the model is in patterns.h.
 *
 * Ordering rules kept here:
 * - within one feed: the watermark moves first and campaigns that it ends
 *   are ended, then the incident is placed and the rules evaluated, then
 *   records and entries past the windows are dropped; callbacks for
 *   campaigns that changed run once per feed, after the evaluation, so a
 *   campaign that several rules' steps touched changes once;
 * - an entry is dropped from a window before its record is freed: a rule's
 *   sweep drops every entry older than its window (plus lateness), and a
 *   record is freed only once its last event is older than what every
 *   rule's last sweep dropped, so no window ever reaches a freed record
 *   (entries also carry the value they count, for dropping them). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "patterns_int.h"
#include "utf8.h"
#include "vigie/codec.h"
#include "vigie/error.h"

#define FUTURE_US     3600000000ull /* an hour ahead of the wall clock */
#define SWEEP_MIN_US  60000000ull
#define INITIAL_TABLE 16u

/* ---- small helpers ---- */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static uint32_t sub_sat(uint32_t a, uint64_t b)
{
	return b >= a ? 0 : (uint32_t)(a - b);
}

static uint32_t cut_rule(const struct pat_engine *e,
			 const struct pat_rstate *rs)
{
	return sub_sat(pat_sec(e->wm),
		       (uint64_t)rs->wsec + e->r->lateness_us / 1000000u);
}

static uint32_t cut_global(const struct pat_engine *e)
{
	return sub_sat(pat_sec(e->wm), e->r->max_window_us / 1000000u + 1 +
					       e->r->lateness_us / 1000000u +
					       1);
}

static int64_t local_sec(const struct pat_rules *r, uint64_t us)
{
	return (int64_t)(us / 1000000u) + r->utc_offset_s;
}

static uint32_t day_of(const struct pat_rules *r, uint64_t us)
{
	int64_t s = local_sec(r, us);

	return s < 0 ? 0 : (uint32_t)(s / 86400);
}

/* ---- lists ---- */

static int list_insert(struct pat_list *l, const struct pat_ent *ent)
{
	uint32_t lo = 0, hi = l->len;

	if (l->head + l->len == l->cap) {
		if (l->head && l->head >= l->len) {
			memmove(l->v, l->v + l->head, l->len * sizeof(*l->v));
			l->head = 0;
		} else {
			uint32_t cap = l->cap ? l->cap * 2 : 4;
			struct pat_ent *v = realloc(l->v, cap * sizeof(*v));

			if (!v)
				return VIGIE_ENOMEM;
			l->v = v;
			l->cap = cap;
		}
	}
	/* Mostly appended: check the tail before searching. */
	if (!l->len || l->v[l->head + l->len - 1].t <= ent->t) {
		l->v[l->head + l->len++] = *ent;
		return 0;
	}
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (l->v[l->head + mid].t <= ent->t)
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(l->v + l->head + lo + 1, l->v + l->head + lo,
		(l->len - lo) * sizeof(*l->v));
	l->v[l->head + lo] = *ent;
	l->len++;
	return 0;
}

static const struct pat_ent *list_at(const struct pat_list *l, uint32_t i)
{
	return &l->v[l->head + i];
}

/* First index with t >= `t`. */
static uint32_t list_lower(const struct pat_list *l, uint32_t t)
{
	uint32_t lo = 0, hi = l->len;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (list_at(l, mid)->t < t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void list_release(struct pat_list *l)
{
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* ---- counters ---- */

static uint32_t counter_slot(const struct pat_counter *c, uint32_t k)
{
	return (uint32_t)mix64(k) & (c->cap - 1);
}

static int counter_grow(struct pat_counter *c)
{
	uint32_t cap = c->cap ? c->cap * 2 : 8;
	uint32_t *k = malloc(cap * sizeof(*k)), *n = calloc(cap, sizeof(*n));
	struct pat_counter old = *c;

	if (!k || !n) {
		free(k);
		free(n);
		return VIGIE_ENOMEM;
	}
	memset(k, 0xff, cap * sizeof(*k));
	c->k = k;
	c->c = n;
	c->cap = cap;
	for (uint32_t i = 0; i < old.cap; i++) {
		uint32_t s;

		if (old.k[i] == UINT32_MAX)
			continue;
		s = counter_slot(c, old.k[i]);
		while (c->k[s] != UINT32_MAX)
			s = (s + 1) & (cap - 1);
		c->k[s] = old.k[i];
		c->c[s] = old.c[i];
	}
	free(old.k);
	free(old.c);
	return 0;
}

static int counter_inc(struct pat_counter *c, uint32_t key)
{
	uint32_t s;

	if ((c->size + 1) * 4 > c->cap * 3 && counter_grow(c))
		return VIGIE_ENOMEM;
	s = counter_slot(c, key);
	while (c->k[s] != UINT32_MAX && c->k[s] != key)
		s = (s + 1) & (c->cap - 1);
	if (c->k[s] == UINT32_MAX) {
		c->k[s] = key;
		c->c[s] = 0;
		c->size++;
	}
	c->c[s]++;
	return 0;
}

static void counter_dec(struct pat_counter *c, uint32_t key)
{
	uint32_t s, j;

	if (!c->cap)
		return;
	s = counter_slot(c, key);
	while (c->k[s] != UINT32_MAX && c->k[s] != key)
		s = (s + 1) & (c->cap - 1);
	if (c->k[s] == UINT32_MAX || --c->c[s])
		return;
	/* Backward-shift deletion keeps probe chains whole. */
	c->size--;
	j = s;
	for (;;) {
		uint32_t home;

		c->k[s] = UINT32_MAX;
		do {
			j = (j + 1) & (c->cap - 1);
			if (c->k[j] == UINT32_MAX)
				return;
			home = counter_slot(c, c->k[j]);
		} while (s <= j ? (s < home && home <= j)
				: (s < home || home <= j));
		c->k[s] = c->k[j];
		c->c[s] = c->c[j];
		s = j;
	}
}

static void counter_release(struct pat_counter *c)
{
	free(c->k);
	free(c->c);
	memset(c, 0, sizeof(*c));
}

/* ---- id sets (members of an alert) ---- */

static int idset_add_hash(struct pat_idset *s, uint64_t h)
{
	uint32_t i;

	if ((s->size + 1) * 2 > s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 16;
		uint64_t *v = calloc(cap, sizeof(*v));

		if (!v)
			return VIGIE_ENOMEM;
		for (uint32_t j = 0; j < s->cap; j++) {
			if (!s->h[j])
				continue;
			i = (uint32_t)s->h[j] & (cap - 1);
			while (v[i])
				i = (i + 1) & (cap - 1);
			v[i] = s->h[j];
		}
		free(s->h);
		s->h = v;
		s->cap = cap;
	}
	i = (uint32_t)h & (s->cap - 1);
	while (s->h[i]) {
		if (s->h[i] == h)
			return 1;
		i = (i + 1) & (s->cap - 1);
	}
	s->h[i] = h;
	s->size++;
	return 0;
}

static int idset_add(struct pat_idset *s, const char *id)
{
	return idset_add_hash(s, vigie__hash_str(id) | 1);
}

static bool idset_has(const struct pat_idset *s, const char *id)
{
	uint64_t h = vigie__hash_str(id) | 1;
	uint32_t i;

	if (!s->cap)
		return false;
	i = (uint32_t)h & (s->cap - 1);
	while (s->h[i]) {
		if (s->h[i] == h)
			return true;
		i = (i + 1) & (s->cap - 1);
	}
	return false;
}

/* ---- ends of campaigns ---- */

static int heap_push(struct pat_heap *h, uint64_t end, uint64_t serial)
{
	size_t i;

	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct pat_end *v = realloc(h->v, cap * sizeof(*v));

		if (!v)
			return VIGIE_ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	for (i = h->n++; i > 0 && h->v[(i - 1) / 2].end > end; i = (i - 1) / 2)
		h->v[i] = h->v[(i - 1) / 2];
	h->v[i].end = end;
	h->v[i].serial = serial;
	return 0;
}

static void heap_pop(struct pat_heap *h)
{
	struct pat_end last = h->v[--h->n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1].end < h->v[c].end)
			c++;
		if (h->v[c].end >= last.end)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
}

/* ---- uint64 -> uint64 maps (incident -> campaign, serial -> alert) ---- */

static uint32_t hm_slot(const struct pat_hmap64 *m, uint64_t k)
{
	return (uint32_t)mix64(k) & (m->cap - 1);
}

static uint64_t hm_get(const struct pat_hmap64 *m, uint64_t k)
{
	uint32_t i;

	if (!m->cap)
		return 0;
	for (i = hm_slot(m, k); m->k[i]; i = (i + 1) & (m->cap - 1))
		if (m->k[i] == k)
			return m->v[i];
	return 0;
}

static int hm_put(struct pat_hmap64 *m, uint64_t k, uint64_t v)
{
	uint32_t i;

	if ((m->size + 1) * 2 > m->cap) {
		struct pat_hmap64 n = {NULL, NULL, m->cap ? m->cap * 2 : 64, 0};

		n.k = calloc(n.cap, sizeof(*n.k));
		n.v = calloc(n.cap, sizeof(*n.v));
		if (!n.k || !n.v) {
			free(n.k);
			free(n.v);
			return VIGIE_ENOMEM;
		}
		for (uint32_t j = 0; j < m->cap; j++) {
			if (!m->k[j])
				continue;
			for (i = hm_slot(&n, m->k[j]); n.k[i];
			     i = (i + 1) & (n.cap - 1))
				;
			n.k[i] = m->k[j];
			n.v[i] = m->v[j];
			n.size++;
		}
		free(m->k);
		free(m->v);
		*m = n;
	}
	for (i = hm_slot(m, k); m->k[i] && m->k[i] != k;
	     i = (i + 1) & (m->cap - 1))
		;
	if (!m->k[i])
		m->size++;
	m->k[i] = k;
	m->v[i] = v;
	return 0;
}

/* Remove k if it still maps to v. */
static void hm_del(struct pat_hmap64 *m, uint64_t k, uint64_t v)
{
	uint32_t i, j;

	if (!m->cap)
		return;
	for (i = hm_slot(m, k); m->k[i] && m->k[i] != k;
	     i = (i + 1) & (m->cap - 1))
		;
	if (!m->k[i] || m->v[i] != v)
		return;
	m->size--;
	j = i;
	for (;;) {
		uint32_t home;

		m->k[i] = 0;
		m->v[i] = 0;
		do {
			j = (j + 1) & (m->cap - 1);
			if (!m->k[j])
				return;
			home = hm_slot(m, m->k[j]);
		} while (i <= j ? (i < home && home <= j)
				: (i < home || home <= j));
		m->k[i] = m->k[j];
		m->v[i] = m->v[j];
		i = j;
	}
}

/* ---- alerts by serial: the same map, the alert's address as value ---- */

static struct pat_alert *smap_find(const struct pat_hmap64 *m, uint64_t k)
{
	return k ? (struct pat_alert *)(uintptr_t)hm_get(m, k) : NULL;
}

static int smap_put(struct pat_hmap64 *m, uint64_t k, struct pat_alert *a)
{
	return hm_put(m, k, (uint64_t)(uintptr_t)a);
}

static void smap_del(struct pat_hmap64 *m, uint64_t k)
{
	if (k)
		hm_del(m, k, hm_get(m, k));
}

/* ---- records ---- */

const struct pat_rec *vigie__pat_rec_find(const struct pat_engine *e,
					  const char *id)
{
	struct hmap_entry *h = vigie__hmap_find(&e->by_id, id);

	return h ? container_of(h, struct pat_rec, he) : NULL;
}

static struct pat_rec *rec_find(struct pat_engine *e, const char *id)
{
	struct hmap_entry *h = vigie__hmap_find(&e->by_id, id);

	return h ? container_of(h, struct pat_rec, he) : NULL;
}

static int fifo_push(struct pat_engine *e, uint32_t slot)
{
	if (e->fifo_len == e->fifo_cap) {
		uint32_t cap = e->fifo_cap ? e->fifo_cap * 2 : 1024;
		uint32_t *v = malloc(cap * sizeof(*v));

		if (!v)
			return VIGIE_ENOMEM;
		for (uint32_t i = 0; i < e->fifo_len; i++)
			v[i] = e->fifo[(e->fifo_head + i) % e->fifo_cap];
		free(e->fifo);
		e->fifo = v;
		e->fifo_cap = cap;
		e->fifo_head = 0;
	}
	e->fifo[(e->fifo_head + e->fifo_len++) % e->fifo_cap] = slot;
	return 0;
}

struct pat_rec *vigie__pat_rec_put(struct pat_engine *e, const char *id,
				   uint32_t site)
{
	size_t len = strlen(id);
	struct pat_rec *rec;
	uint32_t slot;

	if (!len || len > PAT_ID_MAX)
		return NULL;
	rec = calloc(1, offsetof(struct pat_rec, id) + len + 1);
	if (!rec)
		return NULL;
	memcpy(rec->id, id, len + 1);
	rec->site = site;
	rec->he.key = rec->id;
	if (e->n_free) {
		slot = e->free_slots[e->n_free - 1];
	} else {
		if (e->n_recs == e->cap_recs) {
			uint32_t cap = e->cap_recs ? e->cap_recs * 2 : 1024;
			struct pat_rec **v = realloc(e->recs, cap * sizeof(*v));

			if (!v) {
				free(rec);
				return NULL;
			}
			e->recs = v;
			e->cap_recs = cap;
		}
		slot = e->n_recs;
	}
	if (vigie__hmap_insert(&e->by_id, &rec->he)) {
		free(rec);
		return NULL;
	}
	if (fifo_push(e, slot)) {
		vigie__hmap_remove(&e->by_id, &rec->he);
		free(rec);
		return NULL;
	}
	if (e->n_free)
		e->n_free--;
	else
		e->n_recs++;
	e->recs[slot] = rec;
	rec->slot = slot;
	return rec;
}

static void rec_free(struct pat_engine *e, uint32_t slot)
{
	struct pat_rec *rec = e->recs[slot];

	if (!rec)
		return;
	vigie__hmap_remove(&e->by_id, &rec->he);
	for (uint8_t i = 0; i < rec->n_attrs; i++) {
		vigie__pat_atom_unref(&e->r->atoms, rec->attrs[2 * i]);
		vigie__pat_atom_unref(&e->r->atoms, rec->attrs[2 * i + 1]);
	}
	vigie__pat_atom_unref(&e->r->atoms, rec->zone);
	free(rec->attrs);
	free(rec);
	e->recs[slot] = NULL;
	if (e->n_free == e->cap_free) {
		uint32_t cap = e->cap_free ? e->cap_free * 2 : 1024;
		uint32_t *v = realloc(e->free_slots, cap * sizeof(*v));

		if (!v)
			return; /* the slot stays unused: harmless */
		e->free_slots = v;
		e->cap_free = cap;
	}
	e->free_slots[e->n_free++] = slot;
}

static int cmp_pair(const void *a, const void *b)
{
	const uint32_t *x = a, *y = b;

	if (x[0] != y[0])
		return x[0] < y[0] ? -1 : 1;
	return x[1] < y[1] ? -1 : x[1] > y[1];
}

int vigie__pat_rec_set_attrs(struct pat_engine *e, struct pat_rec *rec,
			     const uint32_t *pairs, size_t n)
{
	uint32_t *v = NULL;

	if (n) {
		v = malloc(2 * n * sizeof(*v));
		if (!v)
			return VIGIE_ENOMEM;
		memcpy(v, pairs, 2 * n * sizeof(*v));
		for (size_t i = 0; i < 2 * n; i++)
			vigie__pat_atom_ref(&e->r->atoms, v[i]);
	}
	for (uint8_t i = 0; i < rec->n_attrs; i++) {
		vigie__pat_atom_unref(&e->r->atoms, rec->attrs[2 * i]);
		vigie__pat_atom_unref(&e->r->atoms, rec->attrs[2 * i + 1]);
	}
	free(rec->attrs);
	rec->attrs = v;
	rec->n_attrs = (uint8_t)n;
	return 0;
}

/* First value of `key`, or 0. */
static uint32_t rec_attr(const struct pat_rec *rec, uint32_t key)
{
	for (uint8_t i = 0; i < rec->n_attrs; i++)
		if (rec->attrs[2 * i] == key)
			return rec->attrs[2 * i + 1];
	return 0;
}

/* ---- filters ---- */

static bool attr_test(const struct pat_engine *e, const struct pat_attr_test *t,
		      const struct pat_rec *rec)
{
	for (uint8_t i = 0; i < rec->n_attrs; i++) {
		uint32_t v = rec->attrs[2 * i + 1];
		const struct pat_atom *at;

		if (rec->attrs[2 * i] != t->key)
			continue;
		if (t->present)
			return true;
		for (size_t j = 0; j < t->n_values; j++)
			if (t->values[j] == v)
				return true;
		if (!t->cmp)
			continue;
		at = e->r->atoms.v[v];
		if (!at || !at->is_num)
			continue;
		switch (t->cmp) {
		case '<':
			if (at->num < t->num)
				return true;
			break;
		case 'l':
			if (at->num <= t->num)
				return true;
			break;
		case '>':
			if (at->num > t->num)
				return true;
			break;
		case 'g':
			if (at->num >= t->num)
				return true;
			break;
		default:
			break;
		}
	}
	return false;
}

static bool filter_match(const struct pat_engine *e, const struct pat_filter *f,
			 const struct pat_rec *rec)
{
	bool ok;

	if (f->kinds && (rec->kind >= 64 || !(f->kinds & (1ull << rec->kind))))
		return false;
	if (f->states &&
	    (rec->state >= 32 || !(f->states & (1u << rec->state))))
		return false;
	if (f->confirmed >= 0 && f->confirmed != !!(rec->flags & REC_CONFIRMED))
		return false;
	if (f->trouble >= 0 && f->trouble != !!(rec->flags & REC_TROUBLE))
		return false;
	if (f->min_priority > 0 && rec->priority < f->min_priority)
		return false;
	if (f->n_sites) {
		ok = false;
		for (size_t i = 0; i < f->n_sites && !ok; i++)
			ok = f->sites[i] == rec->site;
		if (!ok)
			return false;
	}
	if (f->n_regions) {
		uint32_t region = e->r->sites[rec->site].region;

		ok = false;
		for (size_t i = 0; i < f->n_regions && !ok; i++)
			ok = region && f->regions[i] == region;
		if (!ok)
			return false;
	}
	for (size_t i = 0; i < f->n_attrs; i++)
		if (!attr_test(e, &f->attrs[i], rec))
			return false;
	if (f->n_any) {
		ok = false;
		for (size_t i = 0; i < f->n_any && !ok; i++)
			ok = filter_match(e, &f->any[i], rec);
		if (!ok)
			return false;
	}
	return true;
}

/* ---- groups ---- */

static bool field_value(const struct pat_engine *e,
			const struct pat_fieldref *f, const struct pat_rec *rec,
			uint32_t *out)
{
	switch (f->f) {
	case PF_SITE:
		*out = rec->site;
		return true;
	case PF_REGION:
		*out = e->r->sites[rec->site].region;
		return *out != 0;
	case PF_ZONE:
		*out = rec->zone;
		return *out != 0;
	case PF_KIND:
		*out = rec->kind;
		return true;
	case PF_DAY:
		*out = day_of(e->r, rec->first_us);
		return true;
	case PF_ATTR:
		*out = rec_attr(rec, f->key);
		return *out != 0;
	}
	return false;
}

static bool group_key(const struct pat_engine *e, const struct pat_rule *rule,
		      const struct pat_rec *rec, uint32_t *key, uint64_t *hash)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ rule->index;

	memset(key, 0, PAT_MAX_GROUP_BY * sizeof(*key));
	for (size_t i = 0; i < rule->n_group_by; i++) {
		if (!field_value(e, &rule->group_by[i], rec, &key[i]))
			return false;
		h = mix64(h ^ ((uint64_t)key[i] + (i << 32)));
	}
	*hash = h;
	return true;
}

static struct pat_group *group_lookup(struct pat_rstate *rs,
				      const uint32_t *key, uint64_t hash,
				      uint32_t *slot)
{
	uint32_t i;

	if (!rs->gcap) {
		*slot = UINT32_MAX;
		return NULL;
	}
	i = (uint32_t)hash & (rs->gcap - 1);
	while (rs->gt[i]) {
		if (rs->gt[i]->hash == hash &&
		    !memcmp(rs->gt[i]->key, key,
			    PAT_MAX_GROUP_BY * sizeof(*key)))
			return rs->gt[i];
		i = (i + 1) & (rs->gcap - 1);
	}
	*slot = i;
	return NULL;
}

static int gtable_resize(struct pat_rstate *rs, uint32_t cap)
{
	struct pat_group **t = calloc(cap, sizeof(*t));

	if (!t)
		return VIGIE_ENOMEM;
	for (uint32_t j = 0; j < rs->gcap; j++) {
		uint32_t i;

		if (!rs->gt[j])
			continue;
		i = (uint32_t)rs->gt[j]->hash & (cap - 1);
		while (t[i])
			i = (i + 1) & (cap - 1);
		t[i] = rs->gt[j];
	}
	free(rs->gt);
	rs->gt = t;
	rs->gcap = cap;
	return 0;
}

static size_t group_size(const struct pat_rstate *rs)
{
	return sizeof(struct pat_group) + rs->nlists * sizeof(struct pat_list);
}

static struct pat_group *group_get(struct pat_engine *e, struct pat_rstate *rs,
				   const struct pat_rec *rec)
{
	uint32_t key[PAT_MAX_GROUP_BY], slot;
	uint64_t hash;
	struct pat_group *g;

	if (!group_key(e, rs->rule, rec, key, &hash))
		return NULL;
	g = group_lookup(rs, key, hash, &slot);
	if (g)
		return g;
	if ((rs->gcount + 1) * 2 > rs->gcap) {
		if (gtable_resize(rs, rs->gcap ? rs->gcap * 2 : INITIAL_TABLE))
			return NULL;
		group_lookup(rs, key, hash, &slot);
	}
	g = calloc(1, group_size(rs));
	if (!g)
		return NULL;
	g->hash = hash;
	memcpy(g->key, key, sizeof(key));
	rs->gt[slot] = g;
	rs->gcount++;
	return g;
}

static void group_free(struct pat_rstate *rs, struct pat_group *g)
{
	for (uint32_t i = 0; i < rs->nlists; i++)
		list_release(&g->lists[i]);
	counter_release(&g->distinct);
	free(g);
}

/* Text of a group for alerts: "region=ile-de-france, facade=seine". */
static void group_text(const struct pat_engine *e, const struct pat_rule *rule,
		       const struct pat_rec *rec, char *buf, size_t len)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < rule->n_group_by && pos + 1 < len; i++) {
		const struct pat_fieldref *f = &rule->group_by[i];
		uint32_t v = 0;
		const char *name, *val;
		char num[16];
		int n;

		field_value(e, f, rec, &v);
		switch (f->f) {
		case PF_SITE:
			name = "site";
			val = e->r->sites[v].id;
			break;
		case PF_REGION:
			name = "region";
			val = vigie__pat_atom_str(&e->r->atoms, v);
			break;
		case PF_ZONE:
			name = "zone";
			val = vigie__pat_atom_str(&e->r->atoms, v);
			break;
		case PF_KIND:
			name = "kind";
			val = vigie_kind_name((int)v);
			break;
		case PF_DAY:
			name = "day";
			snprintf(num, sizeof(num), "%u", v);
			val = num;
			break;
		case PF_ATTR:
		default:
			name = vigie__pat_atom_str(&e->r->atoms, f->key);
			val = vigie__pat_atom_str(&e->r->atoms, v);
			break;
		}
		n = snprintf(buf + pos, len - pos, "%s%s=%s", i ? ", " : "",
			     name, val);
		if (n < 0)
			break;
		pos += (size_t)n;
	}
	if (pos >= len)
		buf[len - 1] = '\0';
}

/* ---- postings (similar_mo) ---- */

static uint64_t posting_hash(uint32_t k, uint32_t v)
{
	return mix64(((uint64_t)k << 32) | v);
}

static struct pat_posting *posting_get(struct pat_rstate *rs, uint32_t k,
				       uint32_t v, bool add)
{
	uint64_t h = posting_hash(k, v);
	uint32_t i;
	struct pat_posting *p;

	if (rs->pcap) {
		i = (uint32_t)h & (rs->pcap - 1);
		while (rs->pt[i]) {
			if (rs->pt[i]->key == k && rs->pt[i]->value == v)
				return rs->pt[i];
			i = (i + 1) & (rs->pcap - 1);
		}
	}
	if (!add)
		return NULL;
	if ((rs->pcount + 1) * 2 > rs->pcap) {
		uint32_t cap = rs->pcap ? rs->pcap * 2 : INITIAL_TABLE;
		struct pat_posting **t = calloc(cap, sizeof(*t));

		if (!t)
			return NULL;
		for (uint32_t j = 0; j < rs->pcap; j++) {
			if (!rs->pt[j])
				continue;
			i = (uint32_t)posting_hash(rs->pt[j]->key,
						   rs->pt[j]->value) &
			    (cap - 1);
			while (t[i])
				i = (i + 1) & (cap - 1);
			t[i] = rs->pt[j];
		}
		free(rs->pt);
		rs->pt = t;
		rs->pcap = cap;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->key = k;
	p->value = v;
	i = (uint32_t)h & (rs->pcap - 1);
	while (rs->pt[i])
		i = (i + 1) & (rs->pcap - 1);
	rs->pt[i] = p;
	rs->pcount++;
	return p;
}

/* ---- pruning ---- */

static void prune_list(struct pat_engine *e, struct pat_list *l, uint32_t cut,
		       struct pat_counter *c)
{
	while (l->len && list_at(l, 0)->t < cut) {
		if (c)
			counter_dec(c, list_at(l, 0)->val);
		l->head++;
		l->len--;
		e->entries--;
	}
	if (!l->len)
		list_release(l);
}

static bool rule_counts(const struct pat_rule *rule)
{
	return rule->type == PAT_COUNT || rule->type == PAT_DISTINCT_SITES;
}

/* Drop what left the rule's window everywhere, free empty groups and
 * postings. */
static void sweep_rule(struct pat_engine *e, struct pat_rstate *rs)
{
	uint32_t cut = cut_rule(e, rs);
	uint32_t n = 0;

	for (uint32_t i = 0; i < rs->gcap; i++) {
		struct pat_group *g = rs->gt[i];
		bool empty = true;

		if (!g)
			continue;
		for (uint32_t j = 0; j < rs->nlists; j++) {
			prune_list(e, &g->lists[j], cut,
				   rule_counts(rs->rule) ? &g->distinct : NULL);
			empty = empty && !g->lists[j].len;
		}
		if (empty) {
			group_free(rs, g);
			rs->gt[i] = NULL;
			n++;
		}
	}
	if (n) {
		rs->gcount -= n;
		gtable_resize(rs, rs->gcap); /* re-packs the probe chains */
	}
	n = 0;
	for (uint32_t i = 0; i < rs->pcap; i++) {
		struct pat_posting *p = rs->pt[i];

		if (!p)
			continue;
		prune_list(e, &p->list, cut, NULL);
		if (!p->list.len) {
			free(p);
			rs->pt[i] = NULL;
			n++;
		}
	}
	if (n) {
		struct pat_posting **old = rs->pt;
		uint32_t cap = rs->pcap;

		rs->pt = calloc(cap, sizeof(*rs->pt));
		if (!rs->pt) {
			rs->pt = old; /* keep the holes: lookups stop early */
			return;
		}
		rs->pcount -= n;
		for (uint32_t j = 0; j < cap; j++) {
			uint32_t i;

			if (!old[j])
				continue;
			i = (uint32_t)posting_hash(old[j]->key, old[j]->value) &
			    (cap - 1);
			while (rs->pt[i])
				i = (i + 1) & (cap - 1);
			rs->pt[i] = old[j];
		}
		free(old);
	}
	rs->swept_wm_us = e->wm;
	rs->swept_cut = cut;
}

/* ---- alerts ---- */

static void alert_free(struct pat_engine *e, struct pat_alert *a)
{
	struct pat_alert_priv *p = pat_priv(a);

	smap_del(&e->serials, p->serial);
	if (!p->linked && e->rs[a->rule->index].unlinked)
		e->rs[a->rule->index].unlinked--;
	if (a->rule->type == PAT_SIMILAR_MO)
		for (uint32_t i = 0; i < p->ids.cap; i++)
			if (p->ids.h[i])
				hm_del(&e->rs[a->rule->index].members,
				       p->ids.h[i], p->serial);
	for (size_t i = 0; i < a->n_members; i++)
		vigie__pat_atom_unref(&e->r->atoms, a->members[i].zone);
	free(a->members);
	free(a->sites);
	free(a->explanation);
	free(pat_priv(a)->ids.h);
	free(container_of(a, struct pat_alert_full, a));
}

static void flush_dirty(struct pat_engine *e)
{
	for (size_t i = 0; i < e->n_dirty; i++) {
		struct pat_alert *a = e->dirty[i];
		struct pat_alert_priv *p = pat_priv(a);
		bool is_new = p->is_new;

		p->dirty = false;
		p->is_new = false;
		a->version++;
		if (is_new)
			e->st.alerts_opened++;
		else
			e->st.alerts_grown++;
		if (e->sink.alert)
			e->sink.alert(e->sink.ud, a,
				      is_new ? PAT_NEW : PAT_GROWN);
	}
	e->n_dirty = 0;
}

static void mark_dirty(struct pat_engine *e, struct pat_alert *a)
{
	struct pat_alert_priv *p = pat_priv(a);

	p->explained = false;
	if (p->dirty)
		return;
	if (e->n_dirty == sizeof(e->dirty) / sizeof(e->dirty[0]))
		flush_dirty(e);
	p->dirty = true;
	e->dirty[e->n_dirty++] = a;
}

struct pat_alert *vigie__pat_alert_new(struct pat_engine *e,
				       struct pat_rstate *rs, const char *id,
				       const char *gkey)
{
	struct pat_alert_full *f = calloc(1, sizeof(*f));
	struct pat_alert *a;

	if (!f)
		return NULL;
	a = &f->a;
	snprintf(a->id, sizeof(a->id), "%s", id);
	snprintf(a->gkey, sizeof(a->gkey), "%s", gkey ? gkey : "");
	a->rule = rs->rule;
	a->active = true;
	a->by_id.key = a->id;
	f->p.serial = ++e->serial_seq;
	if (smap_put(&e->serials, f->p.serial, a)) {
		free(f);
		return NULL;
	}
	if (vigie__hmap_insert(&e->alerts, &a->by_id)) {
		smap_del(&e->serials, f->p.serial);
		free(f);
		return NULL;
	}
	/* Until a group points at it (restored alerts: at the first
	 * incident of their group). */
	rs->unlinked++;
	a->next = rs->active;
	if (rs->active)
		pat_priv(rs->active)->prev = a;
	rs->active = a;
	return a;
}

static struct pat_alert *alert_create(struct pat_engine *e,
				      struct pat_rstate *rs, const char *gkey,
				      uint64_t t_us)
{
	char id[PAT_ID_MAX + 1], day[16];
	time_t t = (time_t)local_sec(e->r, t_us);
	struct tm tm;
	struct pat_alert *a;

	gmtime_r(&t, &tm);
	strftime(day, sizeof(day), "%Y%m%d", &tm);
	snprintf(id, sizeof(id), "%s-%s-%llu", rs->rule->id, day,
		 (unsigned long long)++e->alert_seq);
	a = vigie__pat_alert_new(e, rs, id, gkey);
	if (!a)
		return NULL;
	pat_priv(a)->is_new = true;
	mark_dirty(e, a);
	return a;
}

void vigie__pat_alert_add_site(struct pat_alert *a, uint32_t site)
{
	uint32_t *v;

	for (size_t i = 0; i < a->n_sites; i++)
		if (a->sites[i] == site)
			return;
	if (a->n_sites == a->cap_sites) {
		size_t cap = a->cap_sites ? a->cap_sites * 2 : 8;

		v = realloc(a->sites, cap * sizeof(*v));
		if (!v)
			return;
		a->sites = v;
		a->cap_sites = cap;
	}
	a->sites[a->n_sites++] = site;
}

static uint64_t end_of(const struct pat_engine *e, const struct pat_alert *a)
{
	return a->last_us + a->rule->window_us + e->r->lateness_us;
}

int vigie__pat_alert_track_end(struct pat_engine *e, struct pat_alert *a)
{
	return heap_push(&e->ends, end_of(e, a), pat_priv(a)->serial);
}

int vigie__pat_alert_add_member(struct pat_engine *e, struct pat_alert *a,
				const struct pat_member *m)
{
	int rc = idset_add(&pat_priv(a)->ids, m->id);

	if (rc)
		return rc < 0 ? rc : 0; /* 1: a member already */
	a->n_total++;
	if (a->rule->type == PAT_SIMILAR_MO)
		hm_put(&e->rs[a->rule->index].members,
		       vigie__hash_str(m->id) | 1, pat_priv(a)->serial);
	if (!a->first_us || m->t_us < a->first_us)
		a->first_us = m->t_us;
	if (m->t_us > a->last_us || a->n_total == 1) {
		if (m->t_us > a->last_us)
			a->last_us = m->t_us;
		if (heap_push(&e->ends, end_of(e, a), pat_priv(a)->serial))
			return VIGIE_ENOMEM;
	}
	vigie__pat_alert_add_site(a, m->site);
	if (a->n_members == a->cap_members &&
	    a->cap_members < PAT_MAX_MEMBERS) {
		/* Grown as needed: most campaigns list a handful. */
		size_t cap = a->cap_members ? a->cap_members * 2 : 4;
		struct pat_member *v;

		if (cap > PAT_MAX_MEMBERS)
			cap = PAT_MAX_MEMBERS;
		v = realloc(a->members, cap * sizeof(*v));
		if (v) {
			a->members = v;
			a->cap_members = cap;
		}
	}
	if (a->n_members < a->cap_members) {
		a->members[a->n_members] = *m;
		vigie__pat_atom_ref(&e->r->atoms, m->zone);
		a->n_members++;
	}
	return 1;
}

static void mo_text(const struct pat_engine *e, const struct pat_rec *rec,
		    char *buf, size_t len)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (uint8_t i = 0; i < rec->n_attrs && pos + 1 < len; i++) {
		int n = snprintf(
			buf + pos, len - pos, "%s%s=%s", i ? ", " : "",
			vigie__pat_atom_str(&e->r->atoms, rec->attrs[2 * i]),
			vigie__pat_atom_str(&e->r->atoms,
					    rec->attrs[2 * i + 1]));

		if (n < 0)
			break;
		pos += (size_t)n;
	}
	if (pos >= len) {
		/* Cut at a whole attribute. */
		char *comma = strrchr(buf, ',');

		if (comma)
			*comma = '\0';
		vigie__relay_utf8_trim(buf);
	}
}

/* Add a record to an alert; marks it changed when it is a new member. */
static void alert_take(struct pat_engine *e, struct pat_alert *a,
		       const struct pat_rec *rec, int step)
{
	struct pat_member m;

	if (idset_has(&pat_priv(a)->ids, rec->id))
		return;
	memset(&m, 0, sizeof(m));
	snprintf(m.id, sizeof(m.id), "%s", rec->id);
	m.site = rec->site;
	m.zone = rec->zone;
	m.step = (int8_t)step;
	m.kind = rec->kind;
	m.trouble = !!(rec->flags & REC_TROUBLE);
	m.restored = !!(rec->flags & REC_RESTORED);
	m.t_us = rec->first_us;
	m.last_us = rec->last_us;
	mo_text(e, rec, m.mo, sizeof(m.mo));
	if (vigie__pat_alert_add_member(e, a, &m) > 0)
		mark_dirty(e, a);
}

int vigie__pat_alert_add_hash(struct pat_engine *e, struct pat_alert *a,
			      uint64_t h)
{
	int rc = idset_add_hash(&pat_priv(a)->ids, h | 1);

	if (rc < 0)
		return rc;
	if (a->rule->type == PAT_SIMILAR_MO)
		return hm_put(&e->rs[a->rule->index].members, h | 1,
			      pat_priv(a)->serial);
	return 0;
}

static void unlink_active(struct pat_rstate *rs, struct pat_alert *a)
{
	struct pat_alert *prev = pat_priv(a)->prev;

	if (prev)
		prev->next = a->next;
	else if (rs->active == a)
		rs->active = a->next;
	if (a->next)
		pat_priv(a->next)->prev = prev;
	a->next = NULL;
	pat_priv(a)->prev = NULL;
}

void vigie__pat_alert_drop(struct pat_engine *e, struct pat_alert *a)
{
	unlink_active(&e->rs[a->rule->index], a);
	vigie__hmap_remove(&e->alerts, &a->by_id);
	alert_free(e, a);
}

static void linked(struct pat_rstate *rs, struct pat_alert *a)
{
	struct pat_alert_priv *p = pat_priv(a);

	if (p->linked)
		return;
	p->linked = true;
	if (rs->unlinked)
		rs->unlinked--;
}

static void link_group(struct pat_rstate *rs, struct pat_group *g,
		       struct pat_alert *a)
{
	g->alert = pat_priv(a)->serial;
	linked(rs, a);
}

/* The active campaign of a group: by its serial, or for alerts restored
 * from the database (no group points at them yet) by the group's text. */
static struct pat_alert *group_alert(struct pat_engine *e,
				     struct pat_rstate *rs, struct pat_group *g,
				     const struct pat_rec *rec)
{
	char gkey[PAT_GKEY_MAX + 1];
	struct pat_alert *a;

	if (g->alert) {
		a = smap_find(&e->serials, g->alert);
		if (a)
			return a;
		g->alert = 0; /* it ended */
	}
	if (!rs->unlinked)
		return NULL;
	group_text(e, rs->rule, rec, gkey, sizeof(gkey));
	for (a = rs->active; a; a = a->next)
		if (!pat_priv(a)->linked && strcmp(a->gkey, gkey) == 0) {
			link_group(rs, g, a);
			return a;
		}
	return NULL;
}

/* Still one campaign: the newcomer is within the window of its newest
 * incident. */
static bool continues(const struct pat_alert *a, const struct pat_rec *rec)
{
	return rec->first_us <= a->last_us + a->rule->window_us &&
	       rec->first_us + a->rule->window_us >= a->first_us;
}

/* End the campaigns the watermark passed, earliest end first. */
static void end_alerts(struct pat_engine *e)
{
	while (e->ends.n && e->ends.v[0].end < e->wm) {
		struct pat_end top = e->ends.v[0];
		struct pat_alert *a = smap_find(&e->serials, top.serial);

		heap_pop(&e->ends);
		if (!a || end_of(e, a) != top.end)
			continue; /* gone, or grew since: a later entry */
		unlink_active(&e->rs[a->rule->index], a);
		vigie__hmap_remove(&e->alerts, &a->by_id);
		a->active = false;
		if (pat_priv(a)->dirty) {
			/* Changed and ended in one feed: say it ended. */
			for (size_t j = 0; j < e->n_dirty; j++)
				if (e->dirty[j] == a)
					e->dirty[j] = e->dirty[--e->n_dirty];
			pat_priv(a)->dirty = false;
		}
		e->st.alerts_ended++;
		if (e->sink.alert)
			e->sink.alert(e->sink.ud, a, PAT_ENDED);
		alert_free(e, a);
	}
}

/* ---- indexing (shared by feeding and restoring) ---- */

/* count and distinct_sites: the group's window. Returns the group, or
 * NULL when the record does not fall in it. */
static struct pat_group *index_count(struct pat_engine *e,
				     struct pat_rstate *rs,
				     const struct pat_rec *rec, uint32_t slot)
{
	const struct pat_rule *rule = rs->rule;
	struct pat_ent ent = {slot, pat_sec(rec->first_us), 0};
	struct pat_group *g;

	if (ent.t < cut_rule(e, rs))
		return NULL;
	if (rule->type == PAT_DISTINCT_SITES)
		ent.val = rec->site;
	else if (rule->has_distinct &&
		 !field_value(e, &rule->distinct, rec, &ent.val))
		return NULL;
	g = group_get(e, rs, rec);
	if (!g)
		return NULL;
	if (g->lists[0].len && (uint64_t)ent.t + rs->wsec < g->tmax)
		return NULL; /* older than the group's window */
	if (counter_inc(&g->distinct, ent.val))
		return NULL;
	if (list_insert(&g->lists[0], &ent)) {
		counter_dec(&g->distinct, ent.val);
		return NULL;
	}
	e->entries++;
	if (ent.t > g->tmax) {
		g->tmax = ent.t;
		prune_list(e, &g->lists[0], sub_sat(g->tmax, rs->wsec),
			   &g->distinct);
	}
	return g;
}

static struct pat_group *index_step(struct pat_engine *e, struct pat_rstate *rs,
				    const struct pat_rec *rec, uint32_t slot,
				    size_t step)
{
	struct pat_ent ent = {slot, pat_sec(rec->first_us), 0};
	struct pat_group *g;

	if (ent.t < cut_rule(e, rs))
		return NULL;
	g = group_get(e, rs, rec);
	if (!g || list_insert(&g->lists[step], &ent))
		return NULL;
	e->entries++;
	if (ent.t > g->tmax)
		g->tmax = ent.t;
	return g;
}

/* Only distinctive attributes are posted: an incident qualifies only by
 * sharing one, so they find every candidate; the others are read from the
 * candidates' records. */
static bool distinctive(const struct pat_rule *rule, uint32_t key)
{
	for (size_t i = 0; i < rule->n_weights; i++)
		if (rule->weights[i].key == key)
			return rule->weights[i].distinctive;
	return false;
}

static bool has_pair(const uint32_t *pairs, size_t n, uint32_t k, uint32_t v)
{
	for (size_t i = 0; i < n; i++)
		if (pairs[2 * i] == k && pairs[2 * i + 1] == v)
			return true;
	return false;
}

/* Post the record's weighted pairs that `old` did not have. */
static void index_postings(struct pat_engine *e, struct pat_rstate *rs,
			   const struct pat_rec *rec, uint32_t slot,
			   const uint32_t *old, size_t n_old)
{
	struct pat_ent ent = {slot, pat_sec(rec->first_us), rec->site};

	if (ent.t < cut_rule(e, rs))
		return;
	for (uint8_t i = 0; i < rec->n_attrs; i++) {
		uint32_t k = rec->attrs[2 * i], v = rec->attrs[2 * i + 1];
		struct pat_posting *p;

		if (!distinctive(rs->rule, k) || has_pair(old, n_old, k, v))
			continue;
		p = posting_get(rs, k, v, true);
		if (p && list_insert(&p->list, &ent) == 0)
			e->entries++;
	}
}

void vigie__pat_rec_rematch(struct pat_engine *e, struct pat_rec *rec)
{
	rec->matched = 0;
	for (size_t i = 0; i < e->r->n_rules; i++) {
		const struct pat_rule *rule = &e->r->rules[i];

		if (rule->type != PAT_SEQUENCE) {
			if (filter_match(e, &rule->match, rec))
				rec->matched |= 1ull << rule->slot;
			continue;
		}
		for (size_t s = 0; s < rule->n_steps; s++)
			if (!rule->steps[s].restore &&
			    filter_match(e, &rule->steps[s].match, rec))
				rec->matched |= 1ull << rule->steps[s].slot;
	}
}

uint32_t vigie__pat_restore_cut(const struct pat_engine *e)
{
	return cut_global(e);
}

void vigie__pat_restore_done(struct pat_engine *e)
{
	end_alerts(e);
	vigie__pat_expire(e);
}

void vigie__pat_rec_index(struct pat_engine *e, struct pat_rec *rec)
{
	uint32_t slot = rec->slot;

	for (size_t i = 0; i < e->r->n_rules; i++) {
		struct pat_rstate *rs = &e->rs[i];
		const struct pat_rule *rule = rs->rule;

		if (rule->type == PAT_SEQUENCE) {
			for (size_t s = 0; s < rule->n_steps; s++)
				if (!rule->steps[s].restore &&
				    (rec->matched >> rule->steps[s].slot & 1))
					index_step(e, rs, rec, slot, s);
			continue;
		}
		if (!(rec->matched >> rule->slot & 1))
			continue;
		if (rule->type == PAT_SIMILAR_MO)
			index_postings(e, rs, rec, slot, NULL, 0);
		else
			index_count(e, rs, rec, slot);
	}
}

/* ---- evaluation ---- */

static void take_window(struct pat_engine *e, struct pat_alert *a,
			const struct pat_group *g, const struct pat_rec *rec,
			double radius_km)
{
	const struct pat_site *here = &e->r->sites[rec->site];

	for (uint32_t i = 0; i < g->lists[0].len; i++) {
		const struct pat_ent *ent = list_at(&g->lists[0], i);
		const struct pat_rec *m = e->recs[ent->rec];

		if (!m)
			continue;
		if (radius_km > 0 &&
		    (!here->has_location ||
		     !e->r->sites[m->site].has_location ||
		     vigie__pat_distance_km(here, &e->r->sites[m->site]) >
			     radius_km))
			continue;
		alert_take(e, a, m, -1);
	}
}

static void eval_count(struct pat_engine *e, struct pat_rstate *rs,
		       struct pat_group *g, const struct pat_rec *rec)
{
	const struct pat_rule *rule = rs->rule;
	uint32_t n = rule->has_distinct ? g->distinct.size : g->lists[0].len;
	char gkey[PAT_GKEY_MAX + 1];
	struct pat_alert *a = group_alert(e, rs, g, rec);

	if (a && continues(a, rec)) {
		alert_take(e, a, rec, -1);
		return;
	}
	if (n < rule->min)
		return;
	group_text(e, rule, rec, gkey, sizeof(gkey));
	a = alert_create(e, rs, gkey, rec->first_us);
	if (!a)
		return;
	link_group(rs, g, a);
	take_window(e, a, g, rec, 0);
}

static bool near_site(const struct pat_engine *e, const struct pat_site *here,
		      uint32_t site, double km)
{
	const struct pat_site *s = &e->r->sites[site];

	if (here == s)
		return true;
	return here->has_location && s->has_location &&
	       vigie__pat_distance_km(here, s) <= km;
}

static void eval_distinct(struct pat_engine *e, struct pat_rstate *rs,
			  struct pat_group *g, const struct pat_rec *rec)
{
	const struct pat_rule *rule = rs->rule;
	const struct pat_site *here = &e->r->sites[rec->site];
	char gkey[PAT_GKEY_MAX + 1];
	struct pat_alert *a = NULL;
	uint32_t n = 0;

	if (rule->radius_km <= 0) {
		a = group_alert(e, rs, g, rec);
		if (a && !continues(a, rec))
			a = NULL;
	} else {
		/* Several campaigns may share a group, each around its own
		 * museums. */
		group_text(e, rule, rec, gkey, sizeof(gkey));
		for (struct pat_alert *x = rs->active; x && !a; x = x->next) {
			if (strcmp(x->gkey, gkey) != 0 || !continues(x, rec))
				continue;
			for (size_t i = 0; i < x->n_sites && !a; i++)
				if (near_site(e, here, x->sites[i],
					      rule->radius_km))
					a = x;
		}
	}
	if (a) {
		alert_take(e, a, rec, -1);
		return;
	}
	if (rule->radius_km <= 0) {
		n = g->distinct.size;
	} else {
		for (uint32_t i = 0; i < g->distinct.cap; i++)
			if (g->distinct.k[i] != UINT32_MAX &&
			    near_site(e, here, g->distinct.k[i],
				      rule->radius_km))
				n++;
	}
	if (n < rule->min_sites)
		return;
	group_text(e, rule, rec, gkey, sizeof(gkey));
	a = alert_create(e, rs, gkey, rec->first_us);
	if (!a)
		return;
	if (rule->radius_km <= 0)
		link_group(rs, g, a);
	else
		linked(rs, a);
	take_window(e, a, g, rec, rule->radius_km);
}

/* The absent step between positive steps a (earlier) and b holds. */
static bool absence_holds(const struct pat_engine *e, const struct pat_step *s,
			  const struct pat_group *g, size_t list,
			  const struct pat_rec *a, const struct pat_rec *b)
{
	uint64_t end = a->first_us + s->for_us;

	if (b->first_us < end)
		end = b->first_us;
	if (s->restore)
		return !((a->flags & REC_RESTORED) && a->last_us <= end);
	for (uint32_t i = list_lower(&g->lists[list], pat_sec(a->first_us));
	     i < g->lists[list].len; i++) {
		const struct pat_ent *ent = list_at(&g->lists[list], i);
		const struct pat_rec *c = e->recs[ent->rec];

		if ((uint64_t)ent->t * 1000000u > end)
			break;
		if (!c || c == a || c == b)
			continue;
		if (c->first_us > a->first_us && c->first_us <= end)
			return false;
	}
	return true;
}

/* The absent step right after step `k`, or NULL. */
static const struct pat_step *absent_after(const struct pat_rule *rule,
					   size_t k, size_t *list)
{
	if (k + 1 < rule->n_steps && rule->steps[k + 1].absent) {
		*list = k + 1;
		return &rule->steps[k + 1];
	}
	return NULL;
}

static bool chosen_has(const struct pat_rec *const *chosen, size_t n,
		       const struct pat_rec *r)
{
	for (size_t i = 0; i < n; i++)
		if (chosen[i] == r)
			return true;
	return false;
}

/* A complete sequence with `rec` at step `at`: for earlier steps the
 * latest fitting incident, for later ones the earliest (the shortest span),
 * skipping those an absent step rules out. chosen[k] is step k's incident
 * (NULL for absent steps). */
static bool find_chain(const struct pat_engine *e, const struct pat_rstate *rs,
		       const struct pat_group *g, const struct pat_rec *rec,
		       size_t at, const struct pat_rec **chosen)
{
	const struct pat_rule *rule = rs->rule;
	const struct pat_step *abs;
	size_t al = 0;

	memset(chosen, 0, PAT_MAX_STEPS * sizeof(*chosen));
	chosen[at] = rec;
	/* Backwards. */
	for (size_t k = at; k-- > 0;) {
		const struct pat_rec *next = NULL;
		const struct pat_list *l;
		uint32_t i;

		if (rule->steps[k].absent)
			continue;
		for (size_t j = k + 1; j < rule->n_steps && !next; j++)
			next = chosen[j];
		l = &g->lists[k];
		abs = absent_after(rule, k, &al);
		for (i = list_lower(l, pat_sec(next->first_us) + 1); i-- > 0;) {
			const struct pat_rec *c = e->recs[list_at(l, i)->rec];

			if (!c || c->first_us > next->first_us ||
			    chosen_has(chosen, PAT_MAX_STEPS, c))
				continue;
			if (rec->first_us - c->first_us > rule->window_us)
				break;
			if (abs && !absence_holds(e, abs, g, al, c, next))
				continue;
			chosen[k] = c;
			break;
		}
		if (!chosen[k])
			return false;
	}
	/* Forwards. */
	for (size_t k = at + 1; k < rule->n_steps; k++) {
		const struct pat_rec *prev = NULL, *first = NULL;
		const struct pat_list *l;
		size_t pk = 0;

		if (rule->steps[k].absent)
			continue;
		for (size_t j = k; j-- > 0 && !prev;)
			if (chosen[j]) {
				prev = chosen[j];
				pk = j;
			}
		for (size_t j = 0; j < rule->n_steps && !first; j++)
			first = chosen[j];
		l = &g->lists[k];
		abs = absent_after(rule, pk, &al);
		for (uint32_t i = list_lower(l, pat_sec(prev->first_us));
		     i < l->len; i++) {
			const struct pat_rec *c = e->recs[list_at(l, i)->rec];

			if (!c || c->first_us < prev->first_us ||
			    chosen_has(chosen, PAT_MAX_STEPS, c))
				continue;
			if (c->first_us - first->first_us > rule->window_us)
				break;
			if (abs && !absence_holds(e, abs, g, al, prev, c))
				continue;
			chosen[k] = c;
			break;
		}
		if (!chosen[k])
			return false;
	}
	return true;
}

static void eval_sequence(struct pat_engine *e, struct pat_rstate *rs,
			  struct pat_group *g, const struct pat_rec *rec,
			  size_t step)
{
	const struct pat_rule *rule = rs->rule;
	const struct pat_rec *chosen[PAT_MAX_STEPS];
	char gkey[PAT_GKEY_MAX + 1];
	struct pat_alert *a;

	if (!find_chain(e, rs, g, rec, step, chosen))
		return;
	a = group_alert(e, rs, g, rec);
	if (!a || !continues(a, rec)) {
		group_text(e, rule, rec, gkey, sizeof(gkey));
		a = alert_create(e, rs, gkey, rec->first_us);
		if (!a)
			return;
		link_group(rs, g, a);
	}
	for (size_t k = 0; k < rule->n_steps; k++)
		if (chosen[k])
			alert_take(e, a, chosen[k], (int)k);
}

/* Weighted similarity of two incidents' modus operandi: the weight of the
 * attributes they share over the weight of those either has. *distinct is
 * set when they share a distinctive one. */
static double similarity(const struct pat_rule *rule, const struct pat_rec *x,
			 const struct pat_rec *y, uint32_t *common,
			 bool *distinct)
{
	double shared = 0, all = 0;

	*common = 0;
	*distinct = false;
	for (size_t i = 0; i < rule->n_weights; i++) {
		uint32_t k = rule->weights[i].key;
		bool hx = false, hy = false, both = false;

		for (uint8_t a = 0; a < x->n_attrs; a++) {
			if (x->attrs[2 * a] != k)
				continue;
			hx = true;
			for (uint8_t b = 0; b < y->n_attrs && !both; b++)
				both = y->attrs[2 * b] == k &&
				       y->attrs[2 * b + 1] ==
					       x->attrs[2 * a + 1];
		}
		for (uint8_t b = 0; b < y->n_attrs && !hy; b++)
			hy = y->attrs[2 * b] == k;
		if (hx || hy)
			all += rule->weights[i].w;
		if (both) {
			shared += rule->weights[i].w;
			(*common)++;
			*distinct = *distinct || rule->weights[i].distinctive;
		}
	}
	return all > 0 ? shared / all : 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int scratch_push(struct pat_engine *e, size_t *n, uint32_t v)
{
	if (*n == e->cap_scratch) {
		size_t cap = e->cap_scratch ? e->cap_scratch * 2 : 256;
		uint32_t *s = realloc(e->scratch, cap * sizeof(*s));

		if (!s)
			return VIGIE_ENOMEM;
		e->scratch = s;
		e->cap_scratch = cap;
	}
	e->scratch[(*n)++] = v;
	return 0;
}

static void eval_similar(struct pat_engine *e, struct pat_rstate *rs,
			 const struct pat_rec *rec, uint32_t slot)
{
	const struct pat_rule *rule = rs->rule;
	size_t n = 0, nm = 0, nk = 0;
	double best = 0;
	uint32_t lo = sub_sat(pat_sec(rec->first_us), rs->wsec);
	uint64_t hi = (uint64_t)pat_sec(rec->first_us) + rs->wsec;
	uint32_t cut = cut_rule(e, rs);
	struct pat_alert *a = NULL;
	bool any = false;

	struct probe {
		uint32_t key;
		double w;
		size_t size;
		bool read;
	} pk[PAT_MAX_ATTRS];
	size_t np = 0;
	double wx = 0, aside = 0;

	/* Enough weighted keys, one of them distinctive, or nothing can
	 * qualify. */
	for (size_t i = 0; i < rule->n_weights; i++)
		for (uint8_t j = 0; j < rec->n_attrs; j++) {
			struct pat_posting *p;

			if (rec->attrs[2 * j] != rule->weights[i].key)
				continue;
			wx += rule->weights[i].w;
			nk++;
			if (!rule->weights[i].distinctive) {
				aside += rule->weights[i].w;
				break;
			}
			any = true;
			pk[np].key = rule->weights[i].key;
			pk[np].w = rule->weights[i].w;
			pk[np].size = 0;
			pk[np].read = true;
			for (uint8_t v = 0; v < rec->n_attrs; v++) {
				if (rec->attrs[2 * v] != pk[np].key)
					continue;
				p = posting_get(rs, pk[np].key,
						rec->attrs[2 * v + 1], false);
				if (p) {
					prune_list(e, &p->list, cut, NULL);
					pk[np].size += p->list.len;
				}
			}
			np++;
			break;
		}
	if (!any || nk < rule->min_common)
		return;
	/* Prefix filtering: a qualifying incident shares at least
	 * threshold x (the weight of what this one has). Set aside the keys
	 * it may lack - the undistinctive ones (never posted), then the most
	 * common distinctive ones - as long as what is set aside weighs less
	 * than that; it shares one of those left, which are read. */
	if (aside < rule->threshold * wx - 1e-9) {
		for (size_t i = 1; i < np; i++)
			for (size_t j = i; j > 0 && pk[j].size > pk[j - 1].size;
			     j--) {
				struct probe t = pk[j];

				pk[j] = pk[j - 1];
				pk[j - 1] = t;
			}
		for (size_t i = 0; i + 1 < np; i++) {
			if (aside + pk[i].w >= rule->threshold * wx - 1e-9)
				break;
			aside += pk[i].w;
			pk[i].read = false;
		}
	}
	for (size_t i = 0; i < np; i++) {
		if (!pk[i].read)
			continue;
		for (uint8_t j = 0; j < rec->n_attrs; j++) {
			struct pat_posting *p;

			if (rec->attrs[2 * j] != pk[i].key)
				continue;
			p = posting_get(rs, rec->attrs[2 * j],
					rec->attrs[2 * j + 1], false);
			if (!p)
				continue;
			for (uint32_t k = list_lower(&p->list, lo);
			     k < p->list.len; k++) {
				const struct pat_ent *ent =
					list_at(&p->list, k);

				if (ent->t > hi)
					break;
				if (ent->rec == slot || ent->val == rec->site)
					continue;
				if (scratch_push(e, &n, ent->rec))
					return;
			}
		}
	}
	if (!n)
		return;
	qsort(e->scratch, n, sizeof(*e->scratch), cmp_u32);
	for (size_t i = 0; i < n; i++) {
		const struct pat_rec *c;
		uint32_t common;
		bool distinct;
		double s;

		if (i && e->scratch[i] == e->scratch[i - 1])
			continue;
		c = e->recs[e->scratch[i]];
		if (!c || c->site == rec->site)
			continue;
		s = similarity(rule, rec, c, &common, &distinct);
		if (s + 1e-9 < rule->threshold || common < rule->min_common ||
		    !distinct)
			continue;
		e->scratch[nm++] = e->scratch[i];
		if (s > best)
			best = s;
	}
	if (!nm)
		return;
	/* The campaign one of them is in already. */
	for (size_t i = 0; i <= nm && !a; i++) {
		const char *id = i < nm ? e->recs[e->scratch[i]]->id : rec->id;

		a = smap_find(&e->serials,
			      hm_get(&rs->members, vigie__hash_str(id) | 1));
		if (a && !continues(a, rec))
			a = NULL;
	}
	if (!a) {
		a = alert_create(e, rs, "", rec->first_us);
		if (!a)
			return;
		linked(rs, a);
	}
	if (best > a->score) {
		a->score = best;
		if (!pat_priv(a)->is_new)
			mark_dirty(e, a);
	}
	alert_take(e, a, rec, -1);
	for (size_t i = 0; i < nm; i++)
		alert_take(e, a, e->recs[e->scratch[i]], -1);
}

static void evaluate(struct pat_engine *e, struct pat_rec *rec, uint32_t slot,
		     const uint32_t *old_attrs, size_t n_old,
		     bool attrs_changed)
{
	for (size_t i = 0; i < e->r->n_rules; i++) {
		struct pat_rstate *rs = &e->rs[i];
		const struct pat_rule *rule = rs->rule;
		struct pat_group *g;

		if (rule->type == PAT_SEQUENCE) {
			uint64_t fresh = 0;

			for (size_t s = 0; s < rule->n_steps; s++) {
				const struct pat_step *st = &rule->steps[s];

				if (st->restore ||
				    (rec->matched >> st->slot & 1) ||
				    !filter_match(e, &st->match, rec))
					continue;
				rec->matched |= 1ull << st->slot;
				if (index_step(e, rs, rec, slot, s))
					fresh |= 1ull << s;
			}
			for (size_t s = 0; s < rule->n_steps; s++) {
				if (!(fresh >> s & 1) || rule->steps[s].absent)
					continue;
				g = group_get(e, rs, rec);
				if (g)
					eval_sequence(e, rs, g, rec, s);
			}
			continue;
		}
		if (rec->matched >> rule->slot & 1) {
			if (rule->type == PAT_SIMILAR_MO && attrs_changed) {
				index_postings(e, rs, rec, slot, old_attrs,
					       n_old);
				eval_similar(e, rs, rec, slot);
			}
			continue;
		}
		if (!filter_match(e, &rule->match, rec))
			continue;
		rec->matched |= 1ull << rule->slot;
		switch (rule->type) {
		case PAT_COUNT:
			g = index_count(e, rs, rec, slot);
			if (g)
				eval_count(e, rs, g, rec);
			break;
		case PAT_DISTINCT_SITES:
			g = index_count(e, rs, rec, slot);
			if (g)
				eval_distinct(e, rs, g, rec);
			break;
		case PAT_SIMILAR_MO:
			index_postings(e, rs, rec, slot, NULL, 0);
			eval_similar(e, rs, rec, slot);
			break;
		default:
			break;
		}
	}
}

/* ---- feeding ---- */

/* The attributes the tracker keeps of an input, plus the derived ones,
 * as sorted (key, value) atom pairs. Atoms are created, not referenced. */
static size_t build_attrs(struct pat_engine *e, const struct pat_input *in,
			  uint64_t first, uint64_t last, uint32_t *pairs)
{
	struct pat_rules *r = e->r;
	size_t n = 0;
	bool tod = false, dur = false;

	for (size_t i = 0; i < in->n_attrs && n < PAT_MAX_ATTRS - 2; i++) {
		const char *k = in->attr_keys[i], *v = in->attr_values[i];
		uint32_t ka, va;

		if (!k || !v || !*v || strlen(v) > 128)
			continue;
		ka = vigie__pat_atom(&r->atoms, k, false);
		if (ka == UINT32_MAX || !vigie__pat_key_used(r, ka))
			continue;
		va = vigie__pat_atom(&r->atoms, v, true);
		if (va == UINT32_MAX || has_pair(pairs, n, ka, va))
			continue;
		pairs[2 * n] = ka;
		pairs[2 * n + 1] = va;
		n++;
		tod = tod || ka == r->a_time_of_day;
		dur = dur || ka == r->a_duration;
	}
	if (!tod && vigie__pat_key_used(r, r->a_time_of_day)) {
		int64_t s = local_sec(r, first) % 86400;
		unsigned h = (unsigned)((s < 0 ? s + 86400 : s) / 3600);

		pairs[2 * n] = r->a_time_of_day;
		pairs[2 * n + 1] = h < 6 || h >= 22 ? e->tod[0]
				   : h < 12         ? e->tod[1]
				   : h < 18         ? e->tod[2]
						    : e->tod[3];
		n++;
	}
	if (!dur && vigie__pat_key_used(r, r->a_duration)) {
		uint64_t d = last - first;

		pairs[2 * n] = r->a_duration;
		pairs[2 * n + 1] = d < 600000000ull    ? e->dur[0]
				   : d < 3600000000ull ? e->dur[1]
						       : e->dur[2];
		n++;
	}
	qsort(pairs, n, 2 * sizeof(*pairs), cmp_pair);
	return n;
}

/* Atoms made by build_attrs but not taken by the record go again. */
static void drop_unused(struct pat_engine *e, const uint32_t *pairs, size_t n)
{
	for (size_t i = 0; i < 2 * n; i++) {
		vigie__pat_atom_ref(&e->r->atoms, pairs[i]);
		vigie__pat_atom_unref(&e->r->atoms, pairs[i]);
	}
}

void vigie__pat_expire(struct pat_engine *e)
{
	uint32_t cut = cut_global(e);

	for (size_t i = 0; i < e->r->n_rules; i++) {
		struct pat_rstate *rs = &e->rs[i];
		uint64_t every = (uint64_t)rs->wsec * 1000000u / 8;

		if (every < SWEEP_MIN_US)
			every = SWEEP_MIN_US;
		if (!rs->swept_wm_us || e->wm >= rs->swept_wm_us + every)
			sweep_rule(e, rs);
		/* A record goes once every rule's last sweep dropped what
		 * could point at it: no sweep just for that. */
		if (rs->swept_cut < cut)
			cut = rs->swept_cut;
	}
	while (e->fifo_len) {
		uint32_t slot = e->fifo[e->fifo_head];
		struct pat_rec *rec = e->recs[slot];

		/* By its last event: entries never lie after it. */
		if (rec && pat_sec(rec->last_us) >= cut)
			break;
		if (rec) {
			if (e->sink.expired)
				e->sink.expired(e->sink.ud, rec->id);
			rec_free(e, slot);
		}
		e->fifo_head = (e->fifo_head + 1) % e->fifo_cap;
		e->fifo_len--;
	}
}

int vigie__pat_feed(struct pat_engine *e, const struct pat_input *in,
		    uint64_t now_us)
{
	uint32_t pairs[2 * PAT_MAX_ATTRS], old[2 * PAT_MAX_ATTRS];
	uint64_t first = in->first_us, last = in->last_us;
	size_t n, n_old = 0;
	struct pat_rec *rec;
	bool changed = false, attrs_changed;
	uint8_t flags;
	uint32_t slot, zone;

	e->st.fed++;
	if (!in->id || !*in->id || strlen(in->id) > PAT_ID_MAX || !in->site ||
	    !*in->site || !first || in->kind < 0 || in->kind > 255 ||
	    in->state < 0 || in->state > 255 || in->priority < 0 ||
	    in->priority > 255) {
		e->st.invalid++;
		return PAT_FEED_INVALID;
	}
	if (last < first)
		last = first;
	if (now_us && last > now_us + FUTURE_US) {
		e->st.future++;
		return PAT_FEED_FUTURE;
	}
	if (last > e->wm) {
		e->wm = last;
		end_alerts(e);
	}
	rec = rec_find(e, in->id);
	if (!rec) {
		uint32_t site;

		if (pat_sec(first) < cut_global(e) + 1) {
			e->st.late++;
			return PAT_FEED_LATE;
		}
		site = vigie__pat_site(e->r, in->site, true);
		if (site == UINT32_MAX) {
			e->st.invalid++;
			return PAT_FEED_INVALID;
		}
		rec = vigie__pat_rec_put(e, in->id, site);
		if (!rec)
			return VIGIE_ENOMEM;
		changed = true;
	}
	slot = rec->slot;
	n = build_attrs(e, in,
			first < rec->first_us || !rec->first_us ? first
								: rec->first_us,
			last, pairs);
	attrs_changed =
		n != rec->n_attrs ||
		(n && memcmp(pairs, rec->attrs, 2 * n * sizeof(*pairs)) != 0);
	if (attrs_changed) {
		n_old = rec->n_attrs;
		if (n_old)
			memcpy(old, rec->attrs, 2 * n_old * sizeof(*old));
		if (vigie__pat_rec_set_attrs(e, rec, pairs, n)) {
			drop_unused(e, pairs, n);
			return VIGIE_ENOMEM;
		}
		changed = true;
	} else {
		drop_unused(e, pairs, n);
	}
	zone = in->zone && *in->zone
		       ? vigie__pat_atom(&e->r->atoms, in->zone, true)
		       : 0;
	if (zone == UINT32_MAX)
		zone = 0;
	if (zone != rec->zone) {
		vigie__pat_atom_ref(&e->r->atoms, zone);
		vigie__pat_atom_unref(&e->r->atoms, rec->zone);
		rec->zone = zone;
		changed = true;
	} else if (zone) {
		vigie__pat_atom_ref(&e->r->atoms, zone);
		vigie__pat_atom_unref(&e->r->atoms, zone);
	}
	flags = (uint8_t)((in->confirmed ? REC_CONFIRMED : 0) |
			  (in->trouble ? REC_TROUBLE : 0) |
			  (in->trouble && in->state == 4 ? REC_RESTORED : 0));
	if (!rec->first_us || first < rec->first_us) {
		rec->first_us = first;
		changed = true;
	}
	if (last != rec->last_us || flags != rec->flags ||
	    rec->kind != in->kind || rec->state != in->state ||
	    rec->priority != in->priority)
		changed = true;
	rec->last_us = last > rec->last_us ? last : rec->last_us;
	rec->flags = flags;
	rec->kind = (uint8_t)in->kind;
	rec->state = (uint8_t)in->state;
	rec->priority = (uint8_t)in->priority;
	if (!changed)
		return PAT_FEED_SAME;
	evaluate(e, rec, slot, old, n_old, attrs_changed);
	flush_dirty(e);
	vigie__pat_expire(e);
	return PAT_FEED_CHANGED;
}

/* ---- open, close, queries ---- */

int vigie__pat_open(struct pat_rules *rules, const struct pat_sink *sink,
		    struct pat_engine **out)
{
	static const char *const tod[4] = {"night", "morning", "afternoon",
					   "evening"};
	static const char *const dur[3] = {"short", "medium", "long"};
	struct pat_engine *e = calloc(1, sizeof(*e));

	if (!e)
		return VIGIE_ENOMEM;
	e->r = rules;
	if (sink)
		e->sink = *sink;
	for (int i = 0; i < 4; i++) {
		e->tod[i] = vigie__pat_atom(&rules->atoms, tod[i], true);
		if (e->tod[i] == UINT32_MAX)
			goto out_free;
		rules->atoms.v[e->tod[i]]->pinned = true;
	}
	for (int i = 0; i < 3; i++) {
		e->dur[i] = vigie__pat_atom(&rules->atoms, dur[i], true);
		if (e->dur[i] == UINT32_MAX)
			goto out_free;
		rules->atoms.v[e->dur[i]]->pinned = true;
	}
	for (size_t i = 0; i < rules->n_rules; i++) {
		struct pat_rstate *rs = &e->rs[i];
		const struct pat_rule *rule = &rules->rules[i];

		rs->rule = rule;
		rs->wsec = (uint32_t)((rule->window_us + 999999u) / 1000000u);
		rs->nlists = rule->type == PAT_SEQUENCE
				     ? (uint32_t)rule->n_steps
			     : rule->type == PAT_SIMILAR_MO ? 0
							    : 1;
	}
	*out = e;
	return 0;
out_free:
	free(e);
	return VIGIE_ENOMEM;
}

void vigie__pat_close(struct pat_engine *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->r->n_rules; i++) {
		struct pat_rstate *rs = &e->rs[i];

		while (rs->active) {
			struct pat_alert *a = rs->active;

			unlink_active(rs, a);
			vigie__hmap_remove(&e->alerts, &a->by_id);
			alert_free(e, a);
		}
		for (uint32_t j = 0; j < rs->gcap; j++)
			if (rs->gt[j])
				group_free(rs, rs->gt[j]);
		free(rs->gt);
		for (uint32_t j = 0; j < rs->pcap; j++)
			if (rs->pt[j]) {
				list_release(&rs->pt[j]->list);
				free(rs->pt[j]);
			}
		free(rs->pt);
		free(rs->members.k);
		free(rs->members.v);
	}
	for (uint32_t i = 0; i < e->n_recs; i++)
		if (e->recs[i])
			rec_free(e, i);
	vigie__hmap_free(&e->by_id);
	vigie__hmap_free(&e->alerts);
	free(e->serials.k);
	free(e->serials.v);
	free(e->ends.v);
	free(e->recs);
	free(e->free_slots);
	free(e->fifo);
	free(e->scratch);
	free(e);
}

void vigie__pat_stats(const struct pat_engine *e, struct pat_stats *st)
{
	*st = e->st;
	st->records = e->by_id.count;
	st->entries = e->entries;
	st->alerts = e->alerts.count;
	st->atoms = e->r->atoms.map.count;
	st->watermark_us = e->wm;
	st->groups = 0;
	for (size_t i = 0; i < e->r->n_rules; i++)
		st->groups += e->rs[i].gcount + e->rs[i].pcount;
}

struct pat_alert *vigie__pat_alert_find(const struct pat_engine *e,
					const char *id)
{
	struct hmap_entry *h = id ? vigie__hmap_find(&e->alerts, id) : NULL;

	return h ? container_of(h, struct pat_alert, by_id) : NULL;
}

struct pat_alert *vigie__pat_alert_first(const struct pat_engine *e,
					 size_t *pos)
{
	struct hmap_entry *h = vigie__hmap_first(&e->alerts, pos);

	return h ? container_of(h, struct pat_alert, by_id) : NULL;
}

struct pat_alert *vigie__pat_alert_next(const struct pat_engine *e,
					const struct pat_alert *a, size_t *pos)
{
	struct hmap_entry *h = vigie__hmap_next(
		&e->alerts, (struct hmap_entry *)&a->by_id, pos);

	return h ? container_of(h, struct pat_alert, by_id) : NULL;
}

const char *vigie__pat_alert_text(const struct pat_engine *e,
				  struct pat_alert *a)
{
	struct pat_alert_priv *p = pat_priv(a);

	if (!a->explanation)
		a->explanation = calloc(1, PAT_EXPLANATION_MAX);
	if (!p->explained && a->explanation) {
		vigie__pat_explain(e, a, a->explanation, PAT_EXPLANATION_MAX);
		p->explained = true;
	}
	return a->explanation ? a->explanation : "";
}

struct pat_rules *vigie__pat_rules(const struct pat_engine *e)
{
	return e->r;
}

bool vigie__pat_in_scope(const struct pat_engine *e, const struct pat_alert *a,
			 uint32_t site)
{
	const struct pat_site *s;

	if (site >= e->r->n_sites)
		return false;
	s = &e->r->sites[site];
	switch (a->rule->scope) {
	case PAT_SCOPE_ALL:
		return true;
	case PAT_SCOPE_REGION:
		for (size_t i = 0; i < a->n_sites; i++)
			if (a->sites[i] == site ||
			    (s->region &&
			     e->r->sites[a->sites[i]].region == s->region))
				return true;
		return false;
	case PAT_SCOPE_RADIUS:
		for (size_t i = 0; i < a->n_sites; i++)
			if (near_site(e, s, a->sites[i], a->rule->scope_km))
				return true;
		return false;
	case PAT_SCOPE_MATCHED:
	default:
		for (size_t i = 0; i < a->n_sites; i++)
			if (a->sites[i] == site)
				return true;
		return false;
	}
}

int vigie__pat_scope(const struct pat_engine *e, const struct pat_alert *a,
		     uint32_t **out, size_t *n)
{
	const struct pat_rules *r = e->r;
	uint8_t *in = calloc(r->n_sites + 1, 1);
	uint32_t *v = malloc((r->n_sites + 1) * sizeof(*v));
	uint32_t regions[64];
	size_t k = 0, nr = 0;

	if (!in || !v) {
		free(in);
		free(v);
		return VIGIE_ENOMEM;
	}
	/* Linear in the museums: a national campaign may hold thousands. */
	for (size_t j = 0; j < a->n_sites; j++)
		in[a->sites[j]] = 1;
	if (a->rule->scope == PAT_SCOPE_REGION)
		for (size_t j = 0; j < a->n_sites && nr < 64; j++) {
			uint32_t rg = r->sites[a->sites[j]].region;
			bool dup = !rg;

			for (size_t q = 0; q < nr && !dup; q++)
				dup = regions[q] == rg;
			if (!dup)
				regions[nr++] = rg;
		}
	for (uint32_t i = 0; i < r->n_sites; i++) {
		bool take = in[i];

		/* Unconfigured museums are told only of their own campaign. */
		if (take || !r->sites[i].configured) {
			if (take)
				v[k++] = i;
			continue;
		}
		switch (a->rule->scope) {
		case PAT_SCOPE_ALL:
			take = true;
			break;
		case PAT_SCOPE_REGION:
			for (size_t q = 0; q < nr && !take; q++)
				take = r->sites[i].region == regions[q];
			break;
		case PAT_SCOPE_RADIUS:
			take = vigie__pat_in_scope(e, a, i);
			break;
		case PAT_SCOPE_MATCHED:
		default:
			break;
		}
		if (take)
			v[k++] = i;
	}
	free(in);
	*out = v;
	*n = k;
	return 0;
}
