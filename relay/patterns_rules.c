/* The pattern rules file, the site table and the atom table; see
 * patterns.h and README.patterns.md for the format. Every problem is
 * reported as "FILE:LINE: FIELD: what is wrong", before the relay starts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "patterns.h"
#include "vigie/codec.h"
#include "vigie/config.h"
#include "vigie/error.h"

#define PI 3.14159265358979323846

static const char *const top_keys[] = {"lateness", "utc_offset", "rules", NULL};
static const char *const rule_keys[] = {
	"id",         "title",       "description", "type",      "window",
	"within",     "match",       "group_by",    "min",       "distinct",
	"min_sites",  "radius_km",   "steps",       "threshold", "min_common",
	"attributes", "distinctive", "alert",       NULL};
static const char *const filter_keys[] = {
	"kind", "state",  "confirmed",  "trouble", "min_priority",
	"site", "region", "attributes", "any",     NULL};
static const char *const step_keys[] = {"name", "match", "absent", "for", NULL};
static const char *const alert_keys[] = {"priority", "posture",      "scope",
					 "scope_km", "instructions", "posts",
					 NULL};

/* ---- atoms ---- */

static int atoms_init(struct pat_atoms *a)
{
	memset(a, 0, sizeof(*a));
	return vigie__pat_atom(a, "", true) == 0 ? 0 : VIGIE_ENOMEM;
}

static void atoms_free(struct pat_atoms *a)
{
	for (uint32_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	free(a->free_ids);
	vigie__hmap_free(&a->map);
	memset(a, 0, sizeof(*a));
}

uint32_t vigie__pat_atom(struct pat_atoms *a, const char *s, bool add)
{
	struct hmap_entry *h;
	struct pat_atom *at;
	size_t len;
	uint32_t id;
	char *end;

	if (!s)
		s = "";
	h = vigie__hmap_find(&a->map, s);
	if (h)
		return container_of(h, struct pat_atom, he)->id;
	if (!add)
		return UINT32_MAX;
	len = strlen(s);
	at = malloc(sizeof(*at) + len + 1);
	if (!at)
		return UINT32_MAX;
	memcpy(at->s, s, len + 1);
	at->refs = 0;
	at->pinned = false;
	at->num = strtod(s, &end);
	at->is_num = len && end != s && !*end && isfinite(at->num);
	if (a->n_free) {
		id = a->free_ids[--a->n_free];
	} else {
		if (a->n == a->cap) {
			uint32_t cap = a->cap ? a->cap * 2 : 256;
			struct pat_atom **v = realloc(a->v, cap * sizeof(*v));

			if (!v) {
				free(at);
				return UINT32_MAX;
			}
			a->v = v;
			a->cap = cap;
		}
		id = a->n++;
	}
	at->id = id;
	at->he.key = at->s;
	a->v[id] = at;
	if (vigie__hmap_insert(&a->map, &at->he)) {
		a->v[id] = NULL;
		if (id == a->n - 1)
			a->n--;
		free(at);
		return UINT32_MAX;
	}
	if (id == 0)
		at->pinned = true;
	return id;
}

const char *vigie__pat_atom_str(const struct pat_atoms *a, uint32_t id)
{
	return id < a->n && a->v[id] ? a->v[id]->s : "";
}

void vigie__pat_atom_ref(struct pat_atoms *a, uint32_t id)
{
	if (id && id < a->n && a->v[id])
		a->v[id]->refs++;
}

void vigie__pat_atom_unref(struct pat_atoms *a, uint32_t id)
{
	struct pat_atom *at;

	if (!id || id >= a->n || !a->v[id])
		return;
	at = a->v[id];
	if (at->refs)
		at->refs--;
	if (at->refs || at->pinned)
		return;
	/* Nobody holds it: its id goes back to the pool (groups keyed by it
	 * only hold entries older than the windows, dropped before use). */
	if (a->n_free == a->cap_free) {
		uint32_t cap = a->cap_free ? a->cap_free * 2 : 256;
		uint32_t *f = realloc(a->free_ids, cap * sizeof(*f));

		if (!f)
			return; /* kept: a leak of one atom, not a fault */
		a->free_ids = f;
		a->cap_free = cap;
	}
	vigie__hmap_remove(&a->map, &at->he);
	a->v[id] = NULL;
	free(at);
	a->free_ids[a->n_free++] = id;
}

static uint32_t pin(struct pat_atoms *a, const char *s)
{
	uint32_t id = vigie__pat_atom(a, s, true);

	if (id != UINT32_MAX)
		a->v[id]->pinned = true;
	return id;
}

/* ---- sites ---- */

static int site_add(struct pat_rules *r, const char *id, const char *name,
		    const char *region, bool has_loc, double lat, double lon,
		    bool configured, uint32_t *out)
{
	struct pat_site *s;

	if (r->n_sites >= PAT_MAX_SITES)
		return VIGIE_EFULL;
	if (r->n_sites == r->cap_sites) {
		uint32_t cap = r->cap_sites ? r->cap_sites * 2 : 64;
		struct pat_site *v;

		/* The hmap points into the array: rebuild it after moving. */
		v = realloc(r->sites, cap * sizeof(*v));
		if (!v)
			return VIGIE_ENOMEM;
		r->sites = v;
		r->cap_sites = cap;
		vigie__hmap_free(&r->site_map);
		memset(&r->site_map, 0, sizeof(r->site_map));
		for (uint32_t i = 0; i < r->n_sites; i++) {
			r->sites[i].he.key = r->sites[i].id;
			if (vigie__hmap_insert(&r->site_map, &r->sites[i].he))
				return VIGIE_ENOMEM;
		}
	}
	s = &r->sites[r->n_sites];
	memset(s, 0, sizeof(*s));
	s->id = strdup(id);
	s->name = strdup(name && *name ? name : id);
	if (!s->id || !s->name) {
		free(s->id);
		free(s->name);
		return VIGIE_ENOMEM;
	}
	s->region = region && *region ? pin(&r->atoms, region) : 0;
	if (s->region == UINT32_MAX)
		s->region = 0;
	s->has_location = has_loc;
	s->configured = configured;
	s->lat = lat;
	s->lon = lon;
	s->rlat = lat * PI / 180.0;
	s->rlon = lon * PI / 180.0;
	s->cl = cos(s->rlat);
	s->he.key = s->id;
	if (vigie__hmap_insert(&r->site_map, &s->he)) {
		free(s->id);
		free(s->name);
		return VIGIE_ENOMEM;
	}
	*out = r->n_sites++;
	return 0;
}

uint32_t vigie__pat_site(struct pat_rules *r, const char *id, bool add)
{
	struct hmap_entry *h = id ? vigie__hmap_find(&r->site_map, id) : NULL;
	uint32_t idx;

	if (h)
		return (uint32_t)(container_of(h, struct pat_site, he) -
				  r->sites);
	if (!add || !id || !*id)
		return UINT32_MAX;
	if (site_add(r, id, id, NULL, false, 0, 0, false, &idx))
		return UINT32_MAX;
	return idx;
}

double vigie__pat_distance_km(const struct pat_site *a,
			      const struct pat_site *b)
{
	double dlat = b->rlat - a->rlat, dlon = b->rlon - a->rlon;
	double h = sin(dlat / 2) * sin(dlat / 2) +
		   a->cl * b->cl * sin(dlon / 2) * sin(dlon / 2);

	if (h > 1)
		h = 1;
	return 2 * 6371.0088 * asin(sqrt(h));
}

/* ---- parsing ---- */

struct loader {
	struct vigie_conf *c;
	struct pat_rules *r;
	const char *const *posts;
	size_t n_posts;
	uint32_t keys[256];
	size_t n_keys;
};

/* An attribute some rule reads: the tracker keeps only those. */
static int key_note(struct loader *l, const struct vigie_conf_node *n,
		    uint32_t key)
{
	for (size_t i = 0; i < l->n_keys; i++)
		if (l->keys[i] == key)
			return 0;
	if (l->n_keys == sizeof(l->keys) / sizeof(l->keys[0]))
		return vigie_conf_fail(l->c, n,
				       "the rules read at most %zu different "
				       "attributes",
				       sizeof(l->keys) / sizeof(l->keys[0]));
	l->keys[l->n_keys++] = key;
	return 0;
}

static int fail_oom(struct loader *l, const struct vigie_conf_node *n)
{
	vigie_conf_fail(l->c, n, "out of memory");
	return VIGIE_ENOMEM;
}

/* A scalar or a list of scalars under `key` of `map`, each checked by
 * `one`. */
static int each_scalar(struct loader *l, const struct vigie_conf_node *map,
		       const char *key,
		       int (*one)(struct loader *l,
				  const struct vigie_conf_node *n,
				  const char *text, void *arg),
		       void *arg)
{
	const struct vigie_conf_node *n = vigie_conf_get(map, key);
	int rc;

	if (!n)
		return 0;
	if (vigie_conf_is_scalar(n))
		return one(l, n, vigie_conf_scalar(n), arg);
	if (!vigie_conf_is_seq(n))
		return vigie_conf_fail(l->c, n,
				       "expected a value or a list of values");
	for (size_t i = 0; i < vigie_conf_seq_len(n); i++) {
		const struct vigie_conf_node *it = vigie_conf_seq_at(n, i);

		if (!vigie_conf_is_scalar(it))
			return vigie_conf_fail(l->c, it, "expected a value");
		rc = one(l, it, vigie_conf_scalar(it), arg);
		if (rc)
			return rc;
	}
	return 0;
}

static int one_kind(struct loader *l, const struct vigie_conf_node *n,
		    const char *text, void *arg)
{
	uint64_t *kinds = arg;
	int k;

	if (vigie_kind_parse(text, &k) || k <= 0 || k >= 64)
		return vigie_conf_fail(
			l->c, n,
			"unknown event kind \"%s\" (glass_break, "
			"display_case, vehicle ...)",
			text);
	*kinds |= 1ull << k;
	return 0;
}

static int state_parse(const char *s)
{
	static const char *const names[] = {"", "open", "confirmed",
					    "acknowledged", "closed"};

	for (int i = 1; i < 5; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

static int one_state(struct loader *l, const struct vigie_conf_node *n,
		     const char *text, void *arg)
{
	unsigned *states = arg;
	int s = state_parse(text);

	if (s < 0)
		return vigie_conf_fail(l->c, n,
				       "unknown incident state \"%s\" (open, "
				       "confirmed, acknowledged, closed)",
				       text);
	*states |= 1u << s;
	return 0;
}

static int priority_parse(const char *s)
{
	static const char *const names[] = {"", "low", "medium", "high",
					    "critical"};

	for (int i = 1; i < 5; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

struct idlist {
	uint32_t *v;
	size_t n;
	bool site; /* site ids (indexes), else atoms */
};

static int one_id(struct loader *l, const struct vigie_conf_node *n,
		  const char *text, void *arg)
{
	struct idlist *il = arg;
	uint32_t *v = realloc(il->v, (il->n + 1) * sizeof(*v));
	uint32_t id;

	if (!v)
		return fail_oom(l, n);
	il->v = v;
	if (il->site) {
		id = vigie__pat_site(l->r, text, false);
		if (id == UINT32_MAX || !l->r->sites[id].configured)
			return vigie_conf_fail(
				l->c, n,
				"site \"%s\" is not in the relay "
				"configuration",
				text);
	} else {
		id = pin(&l->r->atoms, text);
		if (id == UINT32_MAX)
			return fail_oom(l, n);
	}
	il->v[il->n++] = id;
	return 0;
}

static int one_value(struct loader *l, const struct vigie_conf_node *n,
		     const char *text, void *arg)
{
	struct pat_attr_test *t = arg;
	uint32_t *v;
	uint32_t id;
	int op = 0;
	const char *num = NULL;
	char *end;

	if (strcmp(text, "*") == 0) {
		t->present = true;
		return 0;
	}
	if (!strncmp(text, ">=", 2) || !strncmp(text, "<=", 2)) {
		op = text[0] == '>' ? 'g' : 'l';
		num = text + 2;
	} else if (text[0] == '>' || text[0] == '<') {
		op = text[0];
		num = text + 1;
	}
	if (op) {
		if (t->cmp)
			return vigie_conf_fail(l->c, n,
					       "one comparison per attribute");
		t->num = strtod(num, &end);
		if (end == num || *end || !isfinite(t->num))
			return vigie_conf_fail(l->c, n,
					       "expected a number after %.*s, "
					       "got \"%s\"",
					       (int)(num - text), text, text);
		t->cmp = op;
		return 0;
	}
	v = realloc(t->values, (t->n_values + 1) * sizeof(*v));
	if (!v)
		return fail_oom(l, n);
	t->values = v;
	id = pin(&l->r->atoms, text);
	if (id == UINT32_MAX)
		return fail_oom(l, n);
	t->values[t->n_values++] = id;
	return 0;
}

static int load_filter(struct loader *l, const struct vigie_conf_node *map,
		       struct pat_filter *f, int depth);

static int load_attr_tests(struct loader *l, const struct vigie_conf_node *n,
			   struct pat_filter *f)
{
	size_t len = vigie_conf_map_len(n);

	if (!vigie_conf_is_map(n))
		return vigie_conf_fail(l->c, n,
				       "expected a map of attribute: value(s)");
	f->attrs = calloc(len + 1, sizeof(*f->attrs));
	if (!f->attrs)
		return fail_oom(l, n);
	for (size_t i = 0; i < len; i++) {
		struct pat_attr_test *t = &f->attrs[i];
		const char *key = vigie_conf_map_key(n, i);
		const struct vigie_conf_node *v = vigie_conf_map_value(n, i);
		int rc;

		f->n_attrs = i + 1;
		if (!key || !*key || strlen(key) > 32)
			return vigie_conf_fail(l->c, v,
					       "attribute names have 1 to 32 "
					       "characters");
		t->key = pin(&l->r->atoms, key);
		if (t->key == UINT32_MAX)
			return fail_oom(l, v);
		rc = key_note(l, v, t->key);
		if (!rc)
			rc = each_scalar(l, n, key, one_value, t);
		if (rc)
			return rc;
		if (!t->present && !t->cmp && !t->n_values)
			return vigie_conf_fail(l->c, v,
					       "give values, \"*\" or a "
					       "comparison such as \">=1\"");
	}
	return 0;
}

static int tri_bool(struct loader *l, const struct vigie_conf_node *map,
		    const char *key, int *out)
{
	bool b;
	int rc;

	*out = -1;
	if (!vigie_conf_get(map, key))
		return 0;
	rc = vigie_conf_bool(l->c, map, key, VIGIE_CONF_REQUIRED, &b);
	if (rc)
		return rc;
	*out = b;
	return 0;
}

static int load_filter(struct loader *l, const struct vigie_conf_node *map,
		       struct pat_filter *f, int depth)
{
	const struct vigie_conf_node *n;
	const char *prio = NULL;
	struct idlist sites = {NULL, 0, true}, regions = {NULL, 0, false};
	int rc;

	memset(f, 0, sizeof(*f));
	f->confirmed = f->trouble = -1;
	if (!map)
		return 0;
	rc = vigie_conf_expect_map(l->c, map, filter_keys);
	if (!rc)
		rc = each_scalar(l, map, "kind", one_kind, &f->kinds);
	if (!rc)
		rc = each_scalar(l, map, "state", one_state, &f->states);
	if (!rc)
		rc = tri_bool(l, map, "confirmed", &f->confirmed);
	if (!rc)
		rc = tri_bool(l, map, "trouble", &f->trouble);
	if (!rc)
		rc = vigie_conf_str(l->c, map, "min_priority",
				    VIGIE_CONF_OPTIONAL, &prio);
	if (rc)
		return rc;
	if (prio) {
		f->min_priority = priority_parse(prio);
		if (f->min_priority < 0)
			return vigie_conf_fail(
				l->c, vigie_conf_get(map, "min_priority"),
				"expected low, medium, high or critical, got "
				"\"%s\"",
				prio);
	}
	rc = each_scalar(l, map, "site", one_id, &sites);
	f->sites = sites.v;
	f->n_sites = sites.n;
	if (rc)
		return rc;
	rc = each_scalar(l, map, "region", one_id, &regions);
	f->regions = regions.v;
	f->n_regions = regions.n;
	if (rc)
		return rc;
	n = vigie_conf_get(map, "attributes");
	if (n) {
		rc = load_attr_tests(l, n, f);
		if (rc)
			return rc;
	}
	n = vigie_conf_get(map, "any");
	if (n) {
		size_t len = vigie_conf_seq_len(n);

		if (!vigie_conf_is_seq(n) || len == 0)
			return vigie_conf_fail(
				l->c, n,
				"expected a list of filters, one "
				"of which must match");
		if (depth >= 4)
			return vigie_conf_fail(l->c, n,
					       "`any` nested too deep");
		f->any = calloc(len, sizeof(*f->any));
		if (!f->any)
			return fail_oom(l, n);
		for (size_t i = 0; i < len; i++) {
			f->n_any = i + 1;
			rc = load_filter(l, vigie_conf_seq_at(n, i), &f->any[i],
					 depth + 1);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static void free_filter(struct pat_filter *f)
{
	for (size_t i = 0; i < f->n_attrs; i++)
		free(f->attrs[i].values);
	free(f->attrs);
	for (size_t i = 0; i < f->n_any; i++)
		free_filter(&f->any[i]);
	free(f->any);
	free(f->sites);
	free(f->regions);
	memset(f, 0, sizeof(*f));
}

static int field_parse(struct loader *l, const struct vigie_conf_node *n,
		       const char *text, struct pat_fieldref *out)
{
	static const struct {
		const char *name;
		enum pat_field f;
	} names[] = {{"site", PF_SITE},
		     {"region", PF_REGION},
		     {"zone", PF_ZONE},
		     {"kind", PF_KIND},
		     {"day", PF_DAY}};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(text, names[i].name) == 0) {
			out->f = names[i].f;
			out->key = 0;
			return 0;
		}
	if (!*text || strlen(text) > 32)
		return vigie_conf_fail(l->c, n,
				       "expected site, region, zone, kind, day "
				       "or an attribute name");
	out->f = PF_ATTR;
	out->key = pin(&l->r->atoms, text);
	if (out->key == UINT32_MAX)
		return fail_oom(l, n);
	return key_note(l, n, out->key);
}

static int one_group(struct loader *l, const struct vigie_conf_node *n,
		     const char *text, void *arg)
{
	struct pat_rule *rule = arg;

	if (rule->n_group_by >= PAT_MAX_GROUP_BY)
		return vigie_conf_fail(l->c, n, "at most %d fields",
				       PAT_MAX_GROUP_BY);
	return field_parse(l, n, text, &rule->group_by[rule->n_group_by++]);
}

static int take_slot(struct loader *l, const struct vigie_conf_node *n,
		     unsigned *slot)
{
	if (l->r->n_slots >= PAT_MAX_SLOTS)
		return vigie_conf_fail(l->c, n,
				       "at most %d filters (rules and steps) "
				       "in one file",
				       PAT_MAX_SLOTS);
	*slot = l->r->n_slots++;
	return 0;
}

static int load_steps(struct loader *l, const struct vigie_conf_node *seq,
		      struct pat_rule *rule)
{
	size_t n = vigie_conf_seq_len(seq);
	size_t positive = 0;
	int rc;

	if (!seq || !vigie_conf_is_seq(seq))
		return vigie_conf_fail(l->c, seq ? seq : NULL,
				       "a sequence needs `steps`, a list");
	if (n > PAT_MAX_STEPS)
		return vigie_conf_fail(l->c, seq, "at most %d steps",
				       PAT_MAX_STEPS);
	for (size_t i = 0; i < n; i++) {
		const struct vigie_conf_node *map = vigie_conf_seq_at(seq, i);
		const struct vigie_conf_node *abs;
		struct pat_step *s = &rule->steps[i];

		rule->n_steps = i + 1;
		rc = vigie_conf_expect_map(l->c, map, step_keys);
		if (!rc)
			rc = vigie_conf_str(l->c, map, "name",
					    VIGIE_CONF_OPTIONAL, &s->name);
		if (rc)
			return rc;
		abs = vigie_conf_get(map, "absent");
		if (abs) {
			s->absent = true;
			if (vigie_conf_get(map, "match"))
				return vigie_conf_fail(
					l->c, vigie_conf_get(map, "match"),
					"an absent step names what is absent "
					"in `absent`");
			rc = vigie_conf_duration(
				l->c, map, "for", 1000, 86400000ull * 366,
				VIGIE_CONF_REQUIRED, &s->for_us);
			if (rc)
				return rc;
			s->for_us *= 1000;
			if (i == 0 || rule->steps[i - 1].absent)
				return vigie_conf_fail(
					l->c, map,
					"an absent step follows a step that "
					"matches an incident");
			if (i + 1 == n)
				return vigie_conf_fail(
					l->c, map,
					"an absent step is followed by a step "
					"that matches an incident (it ends "
					"when that one happens)");
			if (vigie_conf_is_scalar(abs)) {
				if (strcmp(vigie_conf_scalar(abs), "restore"))
					return vigie_conf_fail(
						l->c, abs,
						"expected `restore` or a "
						"filter");
				s->restore = true;
				continue;
			}
			rc = load_filter(l, abs, &s->match, 0);
			if (!rc)
				rc = take_slot(l, abs, &s->slot);
			if (rc)
				return rc;
			continue;
		}
		if (vigie_conf_get(map, "for"))
			return vigie_conf_fail(l->c, vigie_conf_get(map, "for"),
					       "`for` belongs to absent steps");
		if (!vigie_conf_get(map, "match"))
			return vigie_conf_fail(l->c, map,
					       "a step has `match` (a filter) "
					       "or `absent`");
		rc = load_filter(l, vigie_conf_get(map, "match"), &s->match, 0);
		if (!rc)
			rc = take_slot(l, map, &s->slot);
		if (rc)
			return rc;
		positive++;
	}
	if (positive < 2)
		return vigie_conf_fail(l->c, seq,
				       "a sequence has at least two steps that "
				       "match incidents");
	return 0;
}

static int load_weights(struct loader *l, const struct vigie_conf_node *n,
			struct pat_rule *rule)
{
	size_t len = vigie_conf_map_len(n);

	if (!n || !vigie_conf_is_map(n) || !len)
		return vigie_conf_fail(
			l->c, n,
			"similar_mo needs `attributes`: a map of "
			"attribute: weight");
	rule->weights = calloc(len, sizeof(*rule->weights));
	if (!rule->weights)
		return fail_oom(l, n);
	for (size_t i = 0; i < len; i++) {
		const char *key = vigie_conf_map_key(n, i);
		struct pat_weight *w = &rule->weights[i];
		int rc;

		rc = vigie_conf_double(l->c, n, key, 0.01, 100,
				       VIGIE_CONF_REQUIRED, &w->w);
		if (rc)
			return rc;
		w->key = pin(&l->r->atoms, key);
		if (w->key == UINT32_MAX)
			return fail_oom(l, n);
		rc = key_note(l, vigie_conf_get(n, key), w->key);
		if (rc)
			return rc;
		rule->n_weights = i + 1;
	}
	return 0;
}

static int one_distinctive(struct loader *l, const struct vigie_conf_node *n,
			   const char *text, void *arg)
{
	struct pat_rule *rule = arg;

	for (size_t i = 0; i < rule->n_weights; i++)
		if (strcmp(vigie__pat_atom_str(&l->r->atoms,
					       rule->weights[i].key),
			   text) == 0) {
			rule->weights[i].distinctive = true;
			return 0;
		}
	return vigie_conf_fail(l->c, n, "\"%s\" is not one of `attributes`",
			       text);
}

/* `distinctive: [tool, target]`: two incidents are compared only when they
 * share one of these. Default: the attributes weighing 2 or more (night
 * and short alone make no campaign), or all when none does. */
static int load_distinctive(struct loader *l, const struct vigie_conf_node *map,
			    struct pat_rule *rule)
{
	bool any = false;
	int rc;

	if (vigie_conf_get(map, "distinctive")) {
		rc = each_scalar(l, map, "distinctive", one_distinctive, rule);
		if (rc)
			return rc;
		for (size_t i = 0; i < rule->n_weights; i++)
			any = any || rule->weights[i].distinctive;
		if (!any)
			return vigie_conf_fail(
				l->c, vigie_conf_get(map, "distinctive"),
				"name at least one attribute");
		return 0;
	}
	for (size_t i = 0; i < rule->n_weights; i++) {
		rule->weights[i].distinctive = rule->weights[i].w >= 2;
		any = any || rule->weights[i].distinctive;
	}
	for (size_t i = 0; !any && i < rule->n_weights; i++)
		rule->weights[i].distinctive = true;
	return 0;
}

static int load_alert(struct loader *l, const struct vigie_conf_node *map,
		      struct pat_rule *rule)
{
	const char *prio = NULL, *posture = NULL, *scope = NULL;
	int rc = 0;

	rule->priority = 3; /* high */
	rule->posture = 2;  /* heightened */
	rule->scope = PAT_SCOPE_MATCHED;
	if (!map)
		return 0;
	rc |= vigie_conf_expect_map(l->c, map, alert_keys);
	rc |= vigie_conf_str(l->c, map, "priority", VIGIE_CONF_OPTIONAL, &prio);
	rc |= vigie_conf_str(l->c, map, "posture", VIGIE_CONF_OPTIONAL,
			     &posture);
	rc |= vigie_conf_str(l->c, map, "scope", VIGIE_CONF_OPTIONAL, &scope);
	rc |= vigie_conf_double(l->c, map, "scope_km", 0.1, 5000,
				VIGIE_CONF_OPTIONAL, &rule->scope_km);
	rc |= vigie_conf_str_list(l->c, map, "instructions",
				  VIGIE_CONF_OPTIONAL, &rule->instructions,
				  &rule->n_instructions);
	rc |= vigie_conf_str_list(l->c, map, "posts", VIGIE_CONF_OPTIONAL,
				  &rule->posts, &rule->n_posts);
	if (rc)
		return VIGIE_ECONFIG;
	if (prio) {
		rule->priority = priority_parse(prio);
		if (rule->priority < 0)
			return vigie_conf_fail(
				l->c, vigie_conf_get(map, "priority"),
				"expected low, medium, high or critical");
	}
	if (posture) {
		if (strcmp(posture, "heightened") == 0)
			rule->posture = 2;
		else if (strcmp(posture, "critical") == 0)
			rule->posture = 3;
		else
			return vigie_conf_fail(
				l->c, vigie_conf_get(map, "posture"),
				"expected heightened or critical");
	}
	if (scope) {
		if (strcmp(scope, "matched") == 0)
			rule->scope = PAT_SCOPE_MATCHED;
		else if (strcmp(scope, "region") == 0)
			rule->scope = PAT_SCOPE_REGION;
		else if (strcmp(scope, "all") == 0)
			rule->scope = PAT_SCOPE_ALL;
		else if (strcmp(scope, "radius") == 0)
			rule->scope = PAT_SCOPE_RADIUS;
		else
			return vigie_conf_fail(
				l->c, vigie_conf_get(map, "scope"),
				"expected matched, region, radius "
				"or all");
	}
	if ((rule->scope == PAT_SCOPE_RADIUS) != (rule->scope_km > 0))
		return vigie_conf_fail(l->c, map,
				       "`scope: radius` goes with `scope_km`");
	for (size_t i = 0; i < rule->n_instructions; i++)
		if (strlen(rule->instructions[i]) > 200)
			return vigie_conf_fail(
				l->c, vigie_conf_get(map, "instructions"),
				"instructions have at most 200 characters");
	if (rule->n_instructions > 16)
		return vigie_conf_fail(l->c,
				       vigie_conf_get(map, "instructions"),
				       "at most 16 instructions");
	for (size_t i = 0; i < rule->n_posts; i++) {
		bool known = false;

		for (size_t j = 0; j < l->n_posts && !known; j++)
			known = strcmp(l->posts[j], rule->posts[i]) == 0;
		if (!known)
			return vigie_conf_fail(
				l->c, vigie_conf_get(map, "posts"),
				"post \"%s\" is not in the relay's "
				"posts",
				rule->posts[i]);
	}
	return 0;
}

static int type_parse(const char *s)
{
	if (strcmp(s, "count") == 0)
		return PAT_COUNT;
	if (strcmp(s, "distinct_sites") == 0)
		return PAT_DISTINCT_SITES;
	if (strcmp(s, "sequence") == 0)
		return PAT_SEQUENCE;
	if (strcmp(s, "similar_mo") == 0)
		return PAT_SIMILAR_MO;
	return -1;
}

/* Keys that belong to one type only: a misplaced one is an error, not
 * silently ignored. */
static int check_type_keys(struct loader *l, const struct vigie_conf_node *map,
			   enum pat_type t)
{
	static const struct {
		const char *key;
		enum pat_type type;
	} own[] = {{"min", PAT_COUNT},
		   {"distinct", PAT_COUNT},
		   {"min_sites", PAT_DISTINCT_SITES},
		   {"radius_km", PAT_DISTINCT_SITES},
		   {"steps", PAT_SEQUENCE},
		   {"within", PAT_SEQUENCE},
		   {"threshold", PAT_SIMILAR_MO},
		   {"min_common", PAT_SIMILAR_MO},
		   {"attributes", PAT_SIMILAR_MO},
		   {"distinctive", PAT_SIMILAR_MO}};

	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
		const struct vigie_conf_node *n =
			vigie_conf_get(map, own[i].key);

		if (n && own[i].type != t)
			return vigie_conf_fail(l->c, n,
					       "not a key of this rule type");
	}
	if (t == PAT_SEQUENCE && vigie_conf_get(map, "window"))
		return vigie_conf_fail(l->c, vigie_conf_get(map, "window"),
				       "a sequence's span is `within`");
	if (t == PAT_SEQUENCE && vigie_conf_get(map, "match"))
		return vigie_conf_fail(l->c, vigie_conf_get(map, "match"),
				       "a sequence filters in its steps");
	if (t == PAT_SIMILAR_MO && vigie_conf_get(map, "group_by"))
		return vigie_conf_fail(l->c, vigie_conf_get(map, "group_by"),
				       "similar_mo compares across museums, "
				       "without groups");
	return 0;
}

static int load_rule(struct loader *l, const struct vigie_conf_node *map,
		     struct pat_rule *rule)
{
	const char *type = NULL, *distinct = NULL;
	uint64_t u = 0;
	int rc = 0, t;

	rc |= vigie_conf_expect_map(l->c, map, rule_keys);
	rc |= vigie_conf_id(l->c, map, "id", VIGIE_CONF_REQUIRED, &rule->id);
	rc |= vigie_conf_str(l->c, map, "title", VIGIE_CONF_OPTIONAL,
			     &rule->title);
	rc |= vigie_conf_str(l->c, map, "description", VIGIE_CONF_OPTIONAL,
			     &rule->description);
	rc |= vigie_conf_str(l->c, map, "type", VIGIE_CONF_REQUIRED, &type);
	if (rc)
		return VIGIE_ECONFIG;
	if (strlen(rule->id) > PAT_RULE_ID_MAX)
		return vigie_conf_fail(l->c, vigie_conf_get(map, "id"),
				       "rule ids have at most %d characters "
				       "(alert ids add a date and a number)",
				       PAT_RULE_ID_MAX);
	if (!rule->title)
		rule->title = rule->id;
	if (rule->title && strlen(rule->title) > 150)
		return vigie_conf_fail(l->c, vigie_conf_get(map, "title"),
				       "at most 150 characters");
	if (rule->description && strlen(rule->description) > 400)
		return vigie_conf_fail(l->c, vigie_conf_get(map, "description"),
				       "at most 400 characters");
	t = type_parse(type);
	if (t < 0)
		return vigie_conf_fail(l->c, vigie_conf_get(map, "type"),
				       "expected count, distinct_sites, "
				       "sequence or similar_mo, got \"%s\"",
				       type);
	rule->type = (enum pat_type)t;
	rc = check_type_keys(l, map, rule->type);
	if (rc)
		return rc;
	rc = vigie_conf_duration(
		l->c, map, rule->type == PAT_SEQUENCE ? "within" : "window",
		1000, 86400000ull * 366, VIGIE_CONF_REQUIRED, &rule->window_us);
	if (rc)
		return rc;
	rule->window_us *= 1000;
	rc = each_scalar(l, map, "group_by", one_group, rule);
	if (rc)
		return rc;
	if (rule->type != PAT_SEQUENCE) {
		rc = load_filter(l, vigie_conf_get(map, "match"), &rule->match,
				 0);
		if (!rc)
			rc = take_slot(l, map, &rule->slot);
		if (rc)
			return rc;
	}
	switch (rule->type) {
	case PAT_COUNT:
		rc = vigie_conf_uint(l->c, map, "min", 1, 100000,
				     VIGIE_CONF_REQUIRED, &u);
		rule->min = (uint32_t)u;
		if (!rc)
			rc = vigie_conf_str(l->c, map, "distinct",
					    VIGIE_CONF_OPTIONAL, &distinct);
		if (!rc && distinct) {
			rule->has_distinct = true;
			rc = field_parse(l, vigie_conf_get(map, "distinct"),
					 distinct, &rule->distinct);
		}
		break;
	case PAT_DISTINCT_SITES:
		rc = vigie_conf_uint(l->c, map, "min_sites", 2, 100000,
				     VIGIE_CONF_REQUIRED, &u);
		rule->min_sites = (uint32_t)u;
		if (!rc)
			rc = vigie_conf_double(l->c, map, "radius_km", 0.01,
					       20000, VIGIE_CONF_OPTIONAL,
					       &rule->radius_km);
		break;
	case PAT_SEQUENCE:
		rc = load_steps(l, vigie_conf_get(map, "steps"), rule);
		break;
	case PAT_SIMILAR_MO:
		rule->threshold = 0.6;
		rule->min_common = 2;
		rc = vigie_conf_double(l->c, map, "threshold", 0.05, 1,
				       VIGIE_CONF_OPTIONAL, &rule->threshold);
		u = rule->min_common;
		if (!rc)
			rc = vigie_conf_uint(l->c, map, "min_common", 1, 16,
					     VIGIE_CONF_OPTIONAL, &u);
		rule->min_common = (uint32_t)u;
		if (!rc)
			rc = load_weights(l, vigie_conf_get(map, "attributes"),
					  rule);
		if (!rc)
			rc = load_distinctive(l, map, rule);
		break;
	}
	if (rc)
		return rc;
	return load_alert(l, vigie_conf_get(map, "alert"), rule);
}

static int parse_offset(const char *s, int64_t *out)
{
	int sign = 1, h = 0, m = 0;
	char extra;

	if (strcmp(s, "0") == 0 || strcmp(s, "Z") == 0) {
		*out = 0;
		return 0;
	}
	if (*s == '+' || *s == '-')
		sign = *s++ == '-' ? -1 : 1;
	else
		return -1;
	if (sscanf(s, "%2d:%2d%c", &h, &m, &extra) != 2 || h > 14 || m > 59 ||
	    h < 0 || m < 0)
		return -1;
	*out = sign * (int64_t)(h * 3600 + m * 60);
	return 0;
}

static uint64_t fnv(uint64_t h, const char *s)
{
	for (; s && *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return (h ^ 0xff) * 1099511628211ull;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int load_top(struct loader *l, const struct vigie_conf_node *root)
{
	const struct vigie_conf_node *rules = NULL;
	struct pat_rules *r = l->r;
	const char *offset = NULL;
	int rc = 0;

	r->lateness_us = 86400000ull;
	rc |= vigie_conf_expect_map(l->c, root, top_keys);
	rc |= vigie_conf_duration(l->c, root, "lateness", 0, 86400000ull * 30,
				  VIGIE_CONF_OPTIONAL, &r->lateness_us);
	rc |= vigie_conf_str(l->c, root, "utc_offset", VIGIE_CONF_OPTIONAL,
			     &offset);
	rc |= vigie_conf_section(l->c, root, "rules", true, VIGIE_CONF_REQUIRED,
				 &rules);
	if (rc)
		return VIGIE_ECONFIG;
	r->lateness_us *= 1000;
	if (offset && parse_offset(offset, &r->utc_offset_s))
		return vigie_conf_fail(l->c, vigie_conf_get(root, "utc_offset"),
				       "expected +HH:MM or -HH:MM, got \"%s\"",
				       offset);
	if (vigie_conf_seq_len(rules) > PAT_MAX_RULES)
		return vigie_conf_fail(l->c, rules, "at most %d rules",
				       PAT_MAX_RULES);
	r->fingerprint = 1469598103934665603ull;
	for (size_t i = 0; i < vigie_conf_seq_len(rules); i++) {
		const struct vigie_conf_node *map = vigie_conf_seq_at(rules, i);
		struct pat_rule *rule = &r->rules[i];
		char type[8];

		r->n_rules = i + 1;
		rule->index = (unsigned)i;
		rc = load_rule(l, map, rule);
		if (rc)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (strcmp(r->rules[j].id, rule->id) == 0)
				return vigie_conf_fail(
					l->c, vigie_conf_get(map, "id"),
					"duplicate rule id \"%s\"", rule->id);
		if (rule->window_us > r->max_window_us)
			r->max_window_us = rule->window_us;
		snprintf(type, sizeof(type), "%d/%zu", rule->type,
			 rule->n_steps);
		r->fingerprint = fnv(fnv(r->fingerprint, rule->id), type);
	}
	r->keys = malloc((l->n_keys + 8) * sizeof(*r->keys));
	if (!r->keys)
		return fail_oom(l, root);
	memcpy(r->keys, l->keys, l->n_keys * sizeof(*r->keys));
	r->n_keys = l->n_keys;
	/* Read by the engine itself (derived or from the zone). */
	r->a_time_of_day = pin(&r->atoms, "time_of_day");
	r->a_duration = pin(&r->atoms, "duration");
	r->a_facade = pin(&r->atoms, "facade");
	r->a_floor = pin(&r->atoms, "floor");
	r->a_zone_kind = pin(&r->atoms, "zone_kind");
	if (r->a_time_of_day == UINT32_MAX || r->a_duration == UINT32_MAX ||
	    r->a_facade == UINT32_MAX || r->a_floor == UINT32_MAX ||
	    r->a_zone_kind == UINT32_MAX)
		return fail_oom(l, root);
	qsort(r->keys, r->n_keys, sizeof(*r->keys), cmp_u32);
	return 0;
}

bool vigie__pat_key_used(const struct pat_rules *r, uint32_t key)
{
	size_t lo = 0, hi = r->n_keys;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (r->keys[mid] == key)
			return true;
		if (r->keys[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

const struct pat_rule *vigie__patrules_find(const struct pat_rules *r,
					    const char *id)
{
	for (size_t i = 0; id && i < r->n_rules; i++)
		if (strcmp(r->rules[i].id, id) == 0)
			return &r->rules[i];
	return NULL;
}

int vigie__patrules_load(const char *path, const struct pat_world *w,
			 struct pat_rules **out, char *err, size_t errlen)
{
	struct pat_rules *r = calloc(1, sizeof(*r));
	struct loader l;
	int rc;

	if (!r) {
		snprintf(err, errlen, "%s: out of memory", path);
		return VIGIE_ENOMEM;
	}
	memset(&l, 0, sizeof(l));
	l.r = r;
	l.posts = w ? w->posts : NULL;
	l.n_posts = w ? w->n_posts : 0;
	r->path = strdup(path);
	rc = r->path ? atoms_init(&r->atoms) : VIGIE_ENOMEM;
	for (size_t i = 0; rc == 0 && w && i < w->n_sites; i++) {
		const struct pat_site_info *si = &w->sites[i];
		uint32_t idx;

		if (vigie__pat_site(r, si->id, false) != UINT32_MAX)
			continue;
		rc = site_add(r, si->id, si->name, si->region, si->has_location,
			      si->lat, si->lon, true, &idx);
	}
	if (rc) {
		snprintf(err, errlen, "%s: out of memory", path);
		vigie__patrules_free(r);
		return VIGIE_ENOMEM;
	}
	rc = vigie_conf_load(path, &l.c);
	r->conf = l.c;
	if (rc == 0)
		rc = load_top(&l, vigie_conf_root(l.c));
	if (rc) {
		snprintf(err, errlen, "%s",
			 l.c && vigie_conf_error(l.c) ? vigie_conf_error(l.c)
						      : "invalid rules file");
		vigie__patrules_free(r);
		return rc == VIGIE_ENOMEM ? VIGIE_ENOMEM : VIGIE_ECONFIG;
	}
	*out = r;
	return 0;
}

void vigie__patrules_free(struct pat_rules *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_rules; i++) {
		struct pat_rule *rule = &r->rules[i];

		free_filter(&rule->match);
		for (size_t j = 0; j < rule->n_steps; j++)
			free_filter(&rule->steps[j].match);
		free(rule->weights);
		free(rule->instructions);
		free(rule->posts);
	}
	for (uint32_t i = 0; i < r->n_sites; i++) {
		free(r->sites[i].id);
		free(r->sites[i].name);
	}
	free(r->sites);
	vigie__hmap_free(&r->site_map);
	atoms_free(&r->atoms);
	free(r->keys);
	vigie_conf_free(r->conf);
	free(r->path);
	free(r);
}

static const char *type_name(enum pat_type t)
{
	switch (t) {
	case PAT_COUNT:
		return "count";
	case PAT_DISTINCT_SITES:
		return "distinct_sites";
	case PAT_SEQUENCE:
		return "sequence";
	case PAT_SIMILAR_MO:
		return "similar_mo";
	}
	return "?";
}

static const char *span(uint64_t us, char *buf, size_t len)
{
	uint64_t s = us / 1000000u;

	if (s >= 86400 && s % 86400 == 0)
		snprintf(buf, len, "%llu d", (unsigned long long)(s / 86400));
	else if (s >= 3600 && s % 3600 == 0)
		snprintf(buf, len, "%llu h", (unsigned long long)(s / 3600));
	else if (s >= 60 && s % 60 == 0)
		snprintf(buf, len, "%llu min", (unsigned long long)(s / 60));
	else
		snprintf(buf, len, "%llu s", (unsigned long long)s);
	return buf;
}

void vigie__patrules_describe(const struct pat_rules *r, FILE *out)
{
	char a[32], b[32];

	fprintf(out,
		"%s: %zu pattern rule(s), longest window %s, lateness %s\n",
		r->path, r->n_rules, span(r->max_window_us, a, sizeof(a)),
		span(r->lateness_us, b, sizeof(b)));
	for (size_t i = 0; i < r->n_rules; i++) {
		const struct pat_rule *rule = &r->rules[i];

		fprintf(out, "pattern %s: %s within %s: %s\n", rule->id,
			type_name(rule->type),
			span(rule->window_us, a, sizeof(a)), rule->title);
	}
}
