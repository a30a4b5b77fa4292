/* Snapshots of the pattern engine for the relay's database: one per
 * record (the incident summary and the filters it matched), one per active
 * alert, one for the engine (watermark, alert counter). A small versioned
 * binary format of varints and length-prefixed strings; decoding checks
 * every length, since a damaged database is input like any other. */
#include <stdlib.h>
#include <string.h>

#include "patterns_int.h"
#include "vigie/error.h"

#define SNAP_VERSION 1
#define STR_MAX      4096

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

struct rbuf {
	const uint8_t *p;
	size_t len, pos;
	bool bad;
};

static void put_raw(struct wbuf *w, const void *data, size_t n)
{
	if (w->oom || !n)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 128;
		uint8_t *p;

		while (cap < w->len + n)
			cap *= 2;
		p = realloc(w->p, cap);
		if (!p) {
			w->oom = true;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, data, n);
	w->len += n;
}

static void put_u64(struct wbuf *w, uint64_t v)
{
	uint8_t b[10];
	size_t n = 0;

	do {
		b[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			b[n] |= 0x80;
		n++;
	} while (v);
	put_raw(w, b, n);
}

static void put_str(struct wbuf *w, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	put_u64(w, n);
	put_raw(w, s, n);
}

static uint64_t get_u64(struct rbuf *r)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t b;

		if (r->pos >= r->len) {
			r->bad = true;
			return 0;
		}
		b = r->p[r->pos++];
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

/* A string into buf (cap bytes with the NUL); bad if it does not fit. */
static void get_str(struct rbuf *r, char *buf, size_t cap)
{
	uint64_t n = get_u64(r);

	if (r->bad || n >= cap || n > r->len - r->pos) {
		r->bad = true;
		if (cap)
			buf[0] = '\0';
		return;
	}
	memcpy(buf, r->p + r->pos, n);
	buf[n] = '\0';
	r->pos += n;
}

static int finish(struct wbuf *w, uint8_t **out, size_t *len)
{
	if (w->oom) {
		free(w->p);
		return VIGIE_ENOMEM;
	}
	*out = w->p;
	*len = w->len;
	return 0;
}

/* ---- records ---- */

int vigie__pat_snap_record(const struct pat_engine *e, const char *incident,
			   uint8_t **out, size_t *len)
{
	const struct pat_rec *rec = vigie__pat_rec_find(e, incident);
	const struct pat_atoms *at = &e->r->atoms;
	struct wbuf w = {0};

	if (!rec)
		return VIGIE_ENOTFOUND;
	put_u64(&w, SNAP_VERSION);
	put_u64(&w, e->r->fingerprint);
	put_str(&w, rec->id);
	put_str(&w, e->r->sites[rec->site].id);
	put_str(&w, vigie__pat_atom_str(at, rec->zone));
	put_u64(&w, rec->first_us);
	put_u64(&w, rec->last_us);
	put_u64(&w, rec->matched);
	put_u64(&w, rec->kind);
	put_u64(&w, rec->state);
	put_u64(&w, rec->priority);
	put_u64(&w, rec->flags);
	put_u64(&w, rec->n_attrs);
	for (uint8_t i = 0; i < rec->n_attrs; i++) {
		put_str(&w, vigie__pat_atom_str(at, rec->attrs[2 * i]));
		put_str(&w, vigie__pat_atom_str(at, rec->attrs[2 * i + 1]));
	}
	return finish(&w, out, len);
}

static int cmp_pair(const void *a, const void *b)
{
	const uint32_t *x = a, *y = b;

	if (x[0] != y[0])
		return x[0] < y[0] ? -1 : 1;
	return x[1] < y[1] ? -1 : x[1] > y[1];
}

int vigie__pat_restore_record(struct pat_engine *e, const void *data,
			      size_t len)
{
	struct rbuf r = {data, len, 0, false};
	struct pat_rules *rules = e->r;
	char id[PAT_ID_MAX + 1], site[PAT_ID_MAX + 1], zone[PAT_ID_MAX + 1];
	uint32_t pairs[2 * PAT_MAX_ATTRS];
	uint64_t fp, first, last, matched, kind, state, prio, flags, n;
	size_t np = 0;
	struct pat_rec *rec;
	uint32_t s;

	if (get_u64(&r) != SNAP_VERSION)
		return VIGIE_EDECODE;
	fp = get_u64(&r);
	get_str(&r, id, sizeof(id));
	get_str(&r, site, sizeof(site));
	get_str(&r, zone, sizeof(zone));
	first = get_u64(&r);
	last = get_u64(&r);
	matched = get_u64(&r);
	kind = get_u64(&r);
	state = get_u64(&r);
	prio = get_u64(&r);
	flags = get_u64(&r);
	n = get_u64(&r);
	if (r.bad || !id[0] || !site[0] || !first || last < first ||
	    kind > 255 || state > 255 || prio > 255 || flags > 255 ||
	    n > PAT_MAX_ATTRS)
		return VIGIE_EDECODE;
	for (uint64_t i = 0; i < n; i++) {
		char k[64], v[STR_MAX];
		uint32_t ka, va;

		get_str(&r, k, sizeof(k));
		get_str(&r, v, sizeof(v));
		if (r.bad)
			return VIGIE_EDECODE;
		ka = vigie__pat_atom(&rules->atoms, k, false);
		if (ka == UINT32_MAX || !vigie__pat_key_used(rules, ka))
			continue; /* the rules no longer read it */
		va = vigie__pat_atom(&rules->atoms, v, true);
		if (va == UINT32_MAX)
			return VIGIE_ENOMEM;
		pairs[2 * np] = ka;
		pairs[2 * np + 1] = va;
		np++;
	}
	if (vigie__pat_rec_find(e, id))
		return VIGIE_EINVAL;
	if (pat_sec(last) < vigie__pat_restore_cut(e))
		return VIGIE_ENOTFOUND; /* its time passed while we were away */
	s = vigie__pat_site(rules, site, true);
	if (s == UINT32_MAX)
		return VIGIE_ENOMEM;
	rec = vigie__pat_rec_put(e, id, s);
	if (!rec)
		return VIGIE_ENOMEM;
	qsort(pairs, np, 2 * sizeof(*pairs), cmp_pair);
	if (vigie__pat_rec_set_attrs(e, rec, pairs, np))
		return VIGIE_ENOMEM;
	rec->zone = zone[0] ? vigie__pat_atom(&rules->atoms, zone, true) : 0;
	if (rec->zone == UINT32_MAX)
		rec->zone = 0;
	vigie__pat_atom_ref(&rules->atoms, rec->zone);
	rec->first_us = first;
	rec->last_us = last;
	rec->kind = (uint8_t)kind;
	rec->state = (uint8_t)state;
	rec->priority = (uint8_t)prio;
	rec->flags = (uint8_t)flags;
	/* Other rules: what it matched is asked again (their campaigns
	 * start afresh, the old ones are not restored). */
	if (fp == rules->fingerprint)
		rec->matched = matched;
	else
		vigie__pat_rec_rematch(e, rec);
	vigie__pat_rec_index(e, rec);
	return 0;
}

/* ---- alerts ---- */

int vigie__pat_snap_alert(const struct pat_engine *e, struct pat_alert *a,
			  uint8_t **out, size_t *len)
{
	const struct pat_alert_priv *p = pat_priv(a);
	const struct pat_atoms *at = &e->r->atoms;
	struct wbuf w = {0};
	uint64_t score;

	put_u64(&w, SNAP_VERSION);
	put_str(&w, a->id);
	put_str(&w, a->rule->id);
	put_str(&w, a->gkey);
	put_u64(&w, a->version);
	put_u64(&w, a->first_us);
	put_u64(&w, a->last_us);
	put_u64(&w, a->n_total);
	memcpy(&score, &a->score, sizeof(score));
	put_u64(&w, score);
	put_u64(&w, a->n_members);
	for (size_t i = 0; i < a->n_members; i++) {
		const struct pat_member *m = &a->members[i];

		put_str(&w, m->id);
		put_str(&w, e->r->sites[m->site].id);
		put_str(&w, vigie__pat_atom_str(at, m->zone));
		put_u64(&w, (uint64_t)(m->step + 1));
		put_u64(&w, m->kind);
		put_u64(&w, (m->trouble ? 1u : 0u) | (m->restored ? 2u : 0u));
		put_u64(&w, m->t_us);
		put_u64(&w, m->last_us);
		put_str(&w, m->mo);
	}
	put_u64(&w, a->n_sites);
	for (size_t i = 0; i < a->n_sites; i++)
		put_str(&w, e->r->sites[a->sites[i]].id);
	put_u64(&w, p->ids.size);
	for (uint32_t i = 0; i < p->ids.cap; i++)
		if (p->ids.h[i])
			put_u64(&w, p->ids.h[i]);
	put_str(&w, vigie__pat_alert_text(e, a));
	return finish(&w, out, len);
}

int vigie__pat_restore_alert(struct pat_engine *e, const void *data, size_t len,
			     struct pat_alert **out)
{
	struct rbuf r = {data, len, 0, false};
	char id[PAT_ID_MAX + 1], rule_id[PAT_ID_MAX + 1];
	char gkey[PAT_GKEY_MAX + 1];
	const struct pat_rule *rule;
	struct pat_alert *a;
	uint64_t version, first, last, total, score, n;
	int rc = VIGIE_EDECODE;

	if (out)
		*out = NULL;
	if (get_u64(&r) != SNAP_VERSION)
		return VIGIE_EDECODE;
	get_str(&r, id, sizeof(id));
	get_str(&r, rule_id, sizeof(rule_id));
	get_str(&r, gkey, sizeof(gkey));
	version = get_u64(&r);
	first = get_u64(&r);
	last = get_u64(&r);
	total = get_u64(&r);
	score = get_u64(&r);
	n = get_u64(&r);
	if (r.bad || !id[0] || n > PAT_MAX_MEMBERS || version > UINT32_MAX ||
	    total > UINT32_MAX)
		return VIGIE_EDECODE;
	rule = vigie__patrules_find(e->r, rule_id);
	if (!rule)
		return VIGIE_ENOTFOUND;
	if (vigie__pat_alert_find(e, id))
		return VIGIE_EINVAL;
	a = vigie__pat_alert_new(e, &e->rs[rule->index], id, gkey);
	if (!a)
		return VIGIE_ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		struct pat_member m;
		char site[PAT_ID_MAX + 1], zone[PAT_ID_MAX + 1];
		uint64_t step, kind, flags;
		uint32_t s;

		memset(&m, 0, sizeof(m));
		get_str(&r, m.id, sizeof(m.id));
		get_str(&r, site, sizeof(site));
		get_str(&r, zone, sizeof(zone));
		step = get_u64(&r);
		kind = get_u64(&r);
		flags = get_u64(&r);
		m.t_us = get_u64(&r);
		m.last_us = get_u64(&r);
		get_str(&r, m.mo, sizeof(m.mo));
		if (r.bad || step > PAT_MAX_STEPS || kind > 255)
			goto out_end;
		s = vigie__pat_site(e->r, site, true);
		if (s == UINT32_MAX) {
			rc = VIGIE_ENOMEM;
			goto out_end;
		}
		m.site = s;
		m.zone =
			zone[0] ? vigie__pat_atom(&e->r->atoms, zone, true) : 0;
		if (m.zone == UINT32_MAX)
			m.zone = 0;
		m.step = (int8_t)((int)step - 1);
		m.kind = (uint8_t)kind;
		m.trouble = flags & 1;
		m.restored = (flags & 2) != 0;
		rc = vigie__pat_alert_add_member(e, a, &m);
		/* A zone atom made for a member already listed goes again. */
		vigie__pat_atom_ref(&e->r->atoms, m.zone);
		vigie__pat_atom_unref(&e->r->atoms, m.zone);
		if (rc < 0)
			goto out_end;
		rc = VIGIE_EDECODE;
	}
	n = get_u64(&r);
	for (uint64_t i = 0; !r.bad && i < n && i < PAT_MAX_SITES; i++) {
		char site[PAT_ID_MAX + 1];
		uint32_t s;

		get_str(&r, site, sizeof(site));
		s = r.bad ? UINT32_MAX : vigie__pat_site(e->r, site, true);
		if (s != UINT32_MAX)
			vigie__pat_alert_add_site(a, s);
	}
	n = get_u64(&r);
	for (uint64_t i = 0; !r.bad && i < n && i < (1u << 24); i++)
		if (vigie__pat_alert_add_hash(e, a, get_u64(&r)) < 0) {
			rc = VIGIE_ENOMEM;
			goto out_end;
		}
	a->explanation = malloc(PAT_EXPLANATION_MAX);
	if (!a->explanation) {
		rc = VIGIE_ENOMEM;
		goto out_end;
	}
	get_str(&r, a->explanation, PAT_EXPLANATION_MAX);
	if (r.bad)
		goto out_end;
	pat_priv(a)->explained = true;
	a->version = (uint32_t)version;
	a->first_us = first;
	a->last_us = last;
	if (vigie__pat_alert_track_end(e, a)) {
		rc = VIGIE_ENOMEM;
		goto out_end;
	}
	a->n_total = (uint32_t)total;
	memcpy(&a->score, &score, sizeof(score));
	if (out)
		*out = a;
	return 0;
out_end:
	vigie__pat_alert_drop(e, a);
	return rc;
}

/* ---- the engine ---- */

int vigie__pat_snap_meta(const struct pat_engine *e, uint8_t **out, size_t *len)
{
	struct wbuf w = {0};

	put_u64(&w, SNAP_VERSION);
	put_u64(&w, e->wm);
	put_u64(&w, e->alert_seq);
	put_u64(&w, e->r->fingerprint);
	return finish(&w, out, len);
}

int vigie__pat_restore_meta(struct pat_engine *e, const void *data, size_t len)
{
	struct rbuf r = {data, len, 0, false};
	uint64_t wm, seq;

	if (get_u64(&r) != SNAP_VERSION)
		return VIGIE_EDECODE;
	wm = get_u64(&r);
	seq = get_u64(&r);
	(void)get_u64(&r);
	if (r.bad)
		return VIGIE_EDECODE;
	if (wm > e->wm)
		e->wm = wm;
	if (seq > e->alert_seq)
		e->alert_seq = seq;
	return 0;
}
