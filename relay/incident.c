/* The incident state machine; the rules are in incident.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "incident.h"
#include "utf8.h"
#include "vigie/error.h"

#define K(x) VIGIE__V1__EVENT_KIND__KIND_##x
#define S(x) VIGIE__V1__EVENT_STATE__STATE_##x
#define P(x) VIGIE__V1__PRIORITY__PRIORITY_##x
#define I(x) VIGIE__V1__INCIDENT_STATE__INCIDENT_##x

/* Characters kept from the site id in an incident id, so that
 * "<prefix>-YYYYMMDD-HHMMSS-kk" and the dispatch id's "-lN" stay short. */
#define ID_PREFIX_MAX 40

struct prefix {
	struct hmap_entry he;
	char name[VIGIE_ID_MAX + 1];
	uint64_t last_sec;
	uint32_t k;
};

struct inc_reservation {
	struct hmap_entry he; /* by key */
	char key[INC_KEY_MAX + 1];
	char id[VIGIE_ID_MAX + 1];
	char prefix[VIGIE_ID_MAX + 1];
	uint64_t sec, first_event_us;
	uint32_t k;
	struct inc_reservation *gone_next; /* vigie__inc_drop_reserved */
};

enum cls {
	CLS_NONE,
	CLS_ALARM,
	CLS_TROUBLE,
	CLS_RESTORE, /* of a trouble, or of an alarm detector */
};

static bool intrusion_family(int kind)
{
	return kind >= K(INTRUSION) && kind <= K(VEHICLE);
}

bool vigie__inc_is_trouble_kind(int kind)
{
	switch (kind) {
	case K(CAMERA_TAMPER):
	case K(CAMERA_MOVED):
	case K(CAMERA_SIGNAL_LOST):
	case K(POWER_LOSS):
	case K(BATTERY):
	case K(COMM_LOSS):
	case K(NODE_TAMPER):
	case K(PATH_LOSS):
	case K(SECURITY):
		return true;
	default:
		return false;
	}
}

static bool operational_kind(int kind)
{
	return kind == K(TEST) || kind == K(BYPASS) || kind == K(OPEN_CLOSE);
}

int vigie__inc_priority(int kind, int state)
{
	if (state == S(TROUBLE) && !vigie__inc_is_trouble_kind(kind))
		return P(MEDIUM); /* a detector out of order */
	switch (kind) {
	case K(DURESS):
	case K(DISPLAY_CASE):
	case K(FIRE):
		return P(CRITICAL);
	case K(INTRUSION):
	case K(PERIMETER):
	case K(GLASS_BREAK):
	case K(VIBRATION):
	case K(MOTION):
	case K(DOOR_CONTACT):
	case K(VEHICLE):
	case K(CAMERA_TAMPER):
	case K(CAMERA_MOVED):
	case K(CAMERA_SIGNAL_LOST):
	case K(COMM_LOSS):
	case K(NODE_TAMPER):
	case K(SECURITY):
		return P(HIGH);
	case K(PATH_LOSS):
	case K(POWER_LOSS):
		return P(MEDIUM);
	case K(BATTERY):
		return P(LOW);
	default:
		return P(MEDIUM); /* a kind newer than this relay */
	}
}

static enum cls classify(int kind, int state)
{
	if (state == S(TEST) || operational_kind(kind))
		return CLS_NONE;
	if (state == S(RESTORE))
		return CLS_RESTORE;
	if (state == S(TROUBLE) || vigie__inc_is_trouble_kind(kind))
		return CLS_TROUBLE;
	/* ALARM, UNSPECIFIED or a state we do not know: an alarm kind fails
	 * safe, as an alarm. */
	return CLS_ALARM;
}

static bool immediate_kind(const struct inc_engine *e, int kind)
{
	for (size_t i = 0; i < e->p.n_immediate; i++)
		if (e->p.immediate_kinds[i] == kind)
			return true;
	return false;
}

static uint64_t now_us(const struct inc_engine *e)
{
	return e->p.clock->now_us(e->p.clock);
}

void vigie__inc_init(struct inc_engine *e, const struct inc_params *p)
{
	memset(e, 0, sizeof(*e));
	e->p = *p;
}

struct incident *vigie__inc_new(void)
{
	return calloc(1, sizeof(struct incident));
}

void vigie__inc_destroy(struct incident *inc)
{
	if (!inc)
		return;
	free(inc->refs);
	free(inc->detectors);
	free(inc->attrs);
	free(inc);
}

void vigie__inc_free(struct inc_engine *e)
{
	struct hmap_entry *h, *next;
	size_t pos = 0;

	for (h = vigie__hmap_first(&e->by_id, &pos); h; h = next) {
		next = vigie__hmap_next(&e->by_id, h, &pos);
		vigie__inc_destroy(container_of(h, struct incident, by_id));
	}
	for (h = vigie__hmap_first(&e->prefixes, &pos); h; h = next) {
		next = vigie__hmap_next(&e->prefixes, h, &pos);
		free(container_of(h, struct prefix, he));
	}
	for (h = vigie__hmap_first(&e->reserved, &pos); h; h = next) {
		next = vigie__hmap_next(&e->reserved, h, &pos);
		free(container_of(h, struct inc_reservation, he));
	}
	vigie__hmap_free(&e->reserved);
	vigie__hmap_free(&e->by_id);
	vigie__hmap_free(&e->by_key);
	vigie__hmap_free(&e->prefixes);
	free(e->wake);
	e->wake = NULL;
	e->n_wake = e->cap_wake = 0;
	e->open = 0;
}

struct incident *vigie__inc_find(const struct inc_engine *e, const char *id)
{
	struct hmap_entry *h = vigie__hmap_find(&e->by_id, id);

	return h ? container_of(h, struct incident, by_id) : NULL;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

static void alarm_key(char *buf, size_t len, const char *site, const char *zone)
{
	snprintf(buf, len, "a/%s/%s", site, zone ? zone : "");
}

static void trouble_key(char *buf, size_t len, const char *site,
			const char *subject, int kind)
{
	snprintf(buf, len, "t/%s/%s/%d", site, subject, kind);
}

void vigie__inc_rekey(struct incident *inc)
{
	if (inc->trouble)
		trouble_key(inc->key, sizeof(inc->key), inc->site, inc->subject,
			    inc->kind);
	else
		alarm_key(inc->key, sizeof(inc->key), inc->site, inc->zone);
}

static struct incident *find_open(const struct inc_engine *e, const char *key)
{
	struct hmap_entry *h = vigie__hmap_find(&e->by_key, key);

	return h ? container_of(h, struct incident, by_key) : NULL;
}

static struct prefix *get_prefix(struct inc_engine *e, const char *name)
{
	struct hmap_entry *h = vigie__hmap_find(&e->prefixes, name);
	struct prefix *p;

	if (h)
		return container_of(h, struct prefix, he);
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	copy_str(p->name, sizeof(p->name), name);
	p->he.key = p->name;
	if (vigie__hmap_insert(&e->prefixes, &p->he)) {
		free(p);
		return NULL;
	}
	return p;
}

int vigie__inc_note_id(struct inc_engine *e, const char *prefix, uint64_t sec,
		       uint32_t k)
{
	struct prefix *p = get_prefix(e, prefix);

	if (!p)
		return VIGIE_ENOMEM;
	if (sec > p->last_sec || (sec == p->last_sec && k > p->k)) {
		p->last_sec = sec;
		p->k = k;
	}
	return 0;
}

int vigie__inc_reserve(struct inc_engine *e, const char *key, const char *id,
		       const char *prefix, uint64_t sec, uint32_t k,
		       uint64_t first_event_us)
{
	struct hmap_entry *h = vigie__hmap_find(&e->reserved, key);
	struct inc_reservation *rv;
	int rc;

	if (!*key || !*id || strlen(key) > INC_KEY_MAX ||
	    strlen(id) > VIGIE_ID_MAX || strlen(prefix) > VIGIE_ID_MAX)
		return VIGIE_EINVAL;
	rc = vigie__inc_note_id(e, prefix, sec, k);
	if (rc)
		return rc;
	if (h) {
		/* The key's later incident: the earlier one closed (only
		 * one is open per key) and, not stored either, is gone. */
		rv = container_of(h, struct inc_reservation, he);
		if (first_event_us < rv->first_event_us)
			return 0;
	} else {
		rv = calloc(1, sizeof(*rv));
		if (!rv)
			return VIGIE_ENOMEM;
		copy_str(rv->key, sizeof(rv->key), key);
		rv->he.key = rv->key;
		if (vigie__hmap_insert(&e->reserved, &rv->he)) {
			free(rv);
			return VIGIE_ENOMEM;
		}
	}
	copy_str(rv->id, sizeof(rv->id), id);
	copy_str(rv->prefix, sizeof(rv->prefix), prefix);
	rv->sec = sec;
	rv->k = k;
	rv->first_event_us = first_event_us;
	return 0;
}

size_t vigie__inc_reserved(const struct inc_engine *e)
{
	return e->reserved.count;
}

size_t vigie__inc_drop_reserved(struct inc_engine *e, uint64_t now_us)
{
	struct inc_reservation *gone = NULL, *rv;
	struct hmap_entry *h;
	uint64_t win = e->p.window_ms * 1000;
	size_t pos = 0, n = 0;

	/* Collected first: the map may not change during the walk. */
	for (h = vigie__hmap_first(&e->reserved, &pos); h;
	     h = vigie__hmap_next(&e->reserved, h, &pos)) {
		rv = container_of(h, struct inc_reservation, he);
		if (now_us > rv->first_event_us + win) {
			rv->gone_next = gone;
			gone = rv;
		}
	}
	while ((rv = gone) != NULL) {
		gone = rv->gone_next;
		vigie__hmap_remove(&e->reserved, &rv->he);
		free(rv);
		n++;
	}
	return n;
}

/* The id reserved for `key` when `t` falls in its window, taken (the
 * reservation is used up); false when there is none. */
static bool take_reserved(struct inc_engine *e, struct incident *inc,
			  const char *key, uint64_t t)
{
	struct hmap_entry *h = vigie__hmap_find(&e->reserved, key);
	struct inc_reservation *rv;
	uint64_t win = e->p.window_ms * 1000;

	if (!h)
		return false;
	rv = container_of(h, struct inc_reservation, he);
	if (t + win < rv->first_event_us || t > rv->first_event_us + win ||
	    vigie__inc_find(e, rv->id))
		return false;
	copy_str(inc->id, sizeof(inc->id), rv->id);
	copy_str(inc->id_prefix, sizeof(inc->id_prefix), rv->prefix);
	inc->id_sec = rv->sec;
	inc->id_k = rv->k;
	vigie__hmap_remove(&e->reserved, h);
	free(rv);
	return true;
}

/* "<prefix>-YYYYMMDD-HHMMSS", "-k" appended for the k-th incident of the
 * same prefix in the same second. The second never goes back (a clock step
 * backwards reuses the last one with a higher k), so ids never repeat, also
 * after a lost database: the prefix's time moves on. */
static int alloc_id(struct inc_engine *e, struct incident *inc,
		    const char *prefix_src)
{
	char prefix[ID_PREFIX_MAX + 1], id[2 * VIGIE_ID_MAX];
	struct prefix *p;
	struct tm tm;
	time_t t;
	int n;
	uint64_t sec = now_us(e) / 1000000;

	copy_str(prefix, sizeof(prefix), prefix_src);
	/* Subjects such as "post:pp-paris" hold characters ids may not. */
	for (char *c = prefix; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
		      *c == '_' || *c == '-'))
			*c = '-';
	if (!prefix[0])
		copy_str(prefix, sizeof(prefix), "incident");
	p = get_prefix(e, prefix);
	if (!p)
		return VIGIE_ENOMEM;
	if (sec > p->last_sec) {
		p->last_sec = sec;
		p->k = 1;
	} else {
		sec = p->last_sec;
		p->k++;
	}
	t = (time_t)sec;
	gmtime_r(&t, &tm);
	n = snprintf(id, sizeof(id), "%s-%04u%02u%02u-%02u%02u%02u", prefix,
		     (unsigned)(tm.tm_year + 1900) % 10000u,
		     (unsigned)(tm.tm_mon + 1) % 100u,
		     (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
		     (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u);
	if (n > 0 && p->k > 1)
		n += snprintf(id + n, sizeof(id) - (size_t)n, "-%u", p->k);
	if (n <= 0 || (size_t)n > VIGIE_ID_MAX)
		return VIGIE_EINVAL;
	memcpy(inc->id, id, (size_t)n + 1);
	copy_str(inc->id_prefix, sizeof(inc->id_prefix), prefix);
	inc->id_sec = sec;
	inc->id_k = p->k;
	return 0;
}

int vigie__inc_adopt(struct inc_engine *e, struct incident *inc)
{
	if (!inc->id[0] || vigie__inc_find(e, inc->id))
		return VIGIE_EINVAL;
	inc->by_id.key = inc->id;
	if (vigie__hmap_insert(&e->by_id, &inc->by_id))
		return VIGIE_ENOMEM;
	if (inc->state != I(CLOSED)) {
		inc->by_key.key = inc->key;
		if (find_open(e, inc->key) ||
		    vigie__hmap_insert(&e->by_key, &inc->by_key)) {
			/* Two open incidents with one key cannot come from
			 * this engine; keep the first, the other is reachable
			 * by id only. */
			inc->by_key.key = NULL;
		} else {
			e->open++;
		}
	}
	if (inc->id_prefix[0])
		vigie__inc_note_id(e, inc->id_prefix, inc->id_sec, inc->id_k);
	return 0;
}

/* ---- the wake heap: a binary min-heap on wake_us ---- */

static void wake_put(struct inc_engine *e, size_t i, struct incident *inc)
{
	e->wake[i] = inc;
	inc->wake_pos = i + 1;
}

static void wake_up(struct inc_engine *e, size_t i)
{
	struct incident *inc = e->wake[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (e->wake[parent]->wake_us <= inc->wake_us)
			break;
		wake_put(e, i, e->wake[parent]);
		i = parent;
	}
	wake_put(e, i, inc);
}

static void wake_down(struct inc_engine *e, size_t i)
{
	struct incident *inc = e->wake[i];

	for (;;) {
		size_t l = 2 * i + 1, min = l;

		if (l >= e->n_wake)
			break;
		if (l + 1 < e->n_wake &&
		    e->wake[l + 1]->wake_us < e->wake[l]->wake_us)
			min = l + 1;
		if (inc->wake_us <= e->wake[min]->wake_us)
			break;
		wake_put(e, i, e->wake[min]);
		i = min;
	}
	wake_put(e, i, inc);
}

/* Schedule `inc` at `at`, or take it off the schedule (0). */
static int wake_set(struct inc_engine *e, struct incident *inc, uint64_t at)
{
	size_t i;

	if (!inc->wake_pos) {
		if (!at)
			return 0;
		if (e->n_wake == e->cap_wake) {
			size_t cap = e->cap_wake ? 2 * e->cap_wake : 64;
			struct incident **w =
				realloc(e->wake, cap * sizeof(*w));

			if (!w)
				return VIGIE_ENOMEM;
			e->wake = w;
			e->cap_wake = cap;
		}
		inc->wake_us = at;
		wake_put(e, e->n_wake++, inc);
		wake_up(e, e->n_wake - 1);
		return 0;
	}
	i = inc->wake_pos - 1;
	if (!at) {
		struct incident *last = e->wake[--e->n_wake];

		inc->wake_pos = 0;
		inc->wake_us = 0;
		if (last == inc)
			return 0;
		wake_put(e, i, last);
		wake_up(e, i);
		wake_down(e, last->wake_pos - 1);
		return 0;
	}
	inc->wake_us = at;
	wake_up(e, i);
	wake_down(e, inc->wake_pos - 1);
	return 0;
}

static void close_incident(struct inc_engine *e, struct incident *inc,
			   uint64_t now)
{
	wake_set(e, inc, 0);
	if (inc->state == I(CLOSED))
		return;
	inc->state = I(CLOSED);
	inc->closed_us = now;
	inc->updated_us = now;
	vigie__esc_stop(&inc->esc);
	if (inc->by_key.key) {
		vigie__hmap_remove(&e->by_key, &inc->by_key);
		inc->by_key.key = NULL;
		e->open--;
	}
}

void vigie__inc_forget(struct inc_engine *e, struct incident *inc)
{
	wake_set(e, inc, 0);
	if (inc->by_key.key) {
		vigie__hmap_remove(&e->by_key, &inc->by_key);
		e->open--;
	}
	vigie__hmap_remove(&e->by_id, &inc->by_id);
	vigie__inc_destroy(inc);
}

static void add_ref(struct incident *inc, const struct inc_input *in)
{
	struct inc_ref *r;

	inc->event_count++;
	if (inc->n_refs >= INC_MAX_REFS)
		return;
	if (!inc->refs) {
		inc->refs = calloc(INC_MAX_REFS, sizeof(*inc->refs));
		if (!inc->refs)
			return; /* the references are informative only */
	}
	r = &inc->refs[inc->n_refs++];
	copy_str(r->node, sizeof(r->node), in->node);
	r->boot_id = in->boot_id;
	r->seq = in->seq;
	r->time_us = in->time_us;
	r->kind = in->kind;
	r->state = in->state;
	copy_str(r->sensor, sizeof(r->sensor), in->sensor);
	copy_str(r->zone, sizeof(r->zone), in->zone);
}

static void merge_attrs(struct incident *inc, const struct inc_input *in)
{
	for (size_t i = 0; i < in->n_attrs; i++) {
		const char *k = in->attr_keys[i], *v = in->attr_values[i];
		bool have = false;

		if (!k || !*k || !v)
			continue;
		for (size_t j = 0; j < inc->n_attrs && !have; j++)
			have = strncmp(inc->attrs[j].key, k,
				       INC_ATTR_KEY_MAX) == 0 &&
			       strncmp(inc->attrs[j].value, v,
				       INC_ATTR_VALUE_MAX) == 0;
		if (have || inc->n_attrs >= INC_MAX_ATTRS)
			continue;
		if (!inc->attrs) {
			inc->attrs = calloc(INC_MAX_ATTRS, sizeof(*inc->attrs));
			if (!inc->attrs)
				return;
		}
		vigie__relay_utf8_copy(inc->attrs[inc->n_attrs].key,
				       INC_ATTR_KEY_MAX + 1, k);
		vigie__relay_utf8_copy(inc->attrs[inc->n_attrs].value,
				       INC_ATTR_VALUE_MAX + 1, v);
		inc->n_attrs++;
	}
}

/* Record the detector of an intrusion-family alarm; true when a second,
 * independent one alarmed within the confirmation window. */
static bool add_detector(struct inc_engine *e, struct incident *inc,
			 const struct inc_input *in, uint64_t t)
{
	char id[INC_DETECTOR_MAX + 1];
	uint64_t win = e->p.confirm_window_ms * 1000;
	bool confirms = false;
	size_t i;

	/* Only intrusion detectors confirm (and kinds newer than this relay,
	 * failing safe): duress and fire go their own way. */
	if (!intrusion_family(in->kind) &&
	    protobuf_c_enum_descriptor_get_value(
		    &vigie__v1__event_kind__descriptor, in->kind))
		return false;
	if (in->sensor && *in->sensor)
		snprintf(id, sizeof(id), "%s/%s", in->node ? in->node : "",
			 in->sensor);
	else
		snprintf(id, sizeof(id), "%s/%s", in->node ? in->node : "",
			 vigie_kind_name(in->kind));
	for (i = 0; i < inc->n_detectors; i++) {
		struct inc_detector *d = &inc->detectors[i];
		uint64_t gap;

		if (strcmp(d->id, id) == 0)
			continue;
		gap = d->last_us > t ? d->last_us - t : t - d->last_us;
		if (gap <= win)
			confirms = true;
	}
	for (i = 0; i < inc->n_detectors; i++)
		if (strcmp(inc->detectors[i].id, id) == 0)
			break;
	if (i == inc->n_detectors) {
		if (inc->n_detectors >= INC_MAX_DETECTORS)
			return confirms;
		if (!inc->detectors) {
			inc->detectors = calloc(INC_MAX_DETECTORS,
						sizeof(*inc->detectors));
			if (!inc->detectors)
				return confirms;
		}
		copy_str(inc->detectors[i].id, sizeof(inc->detectors[i].id),
			 id);
		inc->n_detectors++;
	}
	if (t > inc->detectors[i].last_us)
		inc->detectors[i].last_us = t;
	return confirms;
}

static void raise_priority(struct incident *inc, int kind, int state,
			   unsigned *changes)
{
	int p = vigie__inc_priority(kind, state);

	if (p > inc->priority) {
		if (inc->priority)
			*changes |= INC_PRIORITY;
		inc->priority = p;
		inc->kind = kind;
	}
}

static struct incident *
open_incident(struct inc_engine *e, const struct inc_input *in, const char *key,
	      bool trouble, const char *subject, uint64_t t, uint64_t now)
{
	struct incident *inc = vigie__inc_new();

	if (!inc)
		return NULL;
	copy_str(inc->key, sizeof(inc->key), key);
	copy_str(inc->site, sizeof(inc->site), in->site);
	copy_str(inc->zone, sizeof(inc->zone), in->zone);
	copy_str(inc->subject, sizeof(inc->subject), subject);
	if (!take_reserved(e, inc, key, t) &&
	    alloc_id(e, inc, in->site && *in->site ? in->site : subject)) {
		vigie__inc_destroy(inc);
		return NULL;
	}
	inc->state = I(OPEN);
	inc->trouble = trouble;
	inc->kind = in->kind;
	inc->opened_us = now;
	inc->first_event_us = t;
	inc->last_event_us = t;
	inc->updated_us = now;
	inc->last_activity_us = now;
	inc->by_id.key = inc->id;
	inc->by_key.key = inc->key;
	if (vigie__hmap_insert(&e->by_id, &inc->by_id)) {
		vigie__inc_destroy(inc);
		return NULL;
	}
	if (vigie__hmap_insert(&e->by_key, &inc->by_key)) {
		vigie__hmap_remove(&e->by_id, &inc->by_id);
		vigie__inc_destroy(inc);
		return NULL;
	}
	e->open++;
	return inc;
}

static void touch(struct incident *inc, const struct inc_input *in, uint64_t t,
		  uint64_t now)
{
	add_ref(inc, in);
	merge_attrs(inc, in);
	if (t < inc->first_event_us)
		inc->first_event_us = t;
	if (t > inc->last_event_us)
		inc->last_event_us = t;
	inc->updated_us = now;
	inc->last_activity_us = now;
	if (in->text && *in->text)
		vigie__relay_utf8_copy(inc->text, sizeof(inc->text), in->text);
}

static int on_alarm(struct inc_engine *e, const struct inc_input *in,
		    uint64_t t, uint64_t now, struct inc_result *res)
{
	char key[INC_KEY_MAX + 1];
	struct incident *inc;

	alarm_key(key, sizeof(key), in->site, in->zone);
	inc = find_open(e, key);
	if (inc && inc->state == I(ACKNOWLEDGED) &&
	    t > inc->last_event_us + e->p.window_ms * 1000) {
		/* Handled and long quiet: this is a new intrusion. */
		close_incident(e, inc, now);
		res->closed = inc;
		inc = NULL;
	}
	if (!inc) {
		inc = open_incident(e, in, key, false, "", t, now);
		if (!inc)
			return VIGIE_ENOMEM;
		res->changes |= INC_OPENED;
	} else {
		res->changes |= INC_JOINED;
	}
	res->inc = inc;
	touch(inc, in, t, now);
	raise_priority(inc, in->kind, in->state, &res->changes);
	if (add_detector(e, inc, in, t) && !inc->confirmed) {
		inc->confirmed = true;
		inc->confirmed_us = now;
		if (inc->state == I(OPEN))
			inc->state = I(CONFIRMED);
		if (inc->priority < P(CRITICAL)) {
			inc->priority = P(CRITICAL);
			if (!(res->changes & INC_OPENED))
				res->changes |= INC_PRIORITY;
		}
		res->changes |= INC_CONFIRMED;
		res->immediate = true;
	}
	if (immediate_kind(e, in->kind))
		res->immediate = true;
	return 0;
}

static void subject_of(const struct inc_input *in, char *buf, size_t len)
{
	if (in->subject && *in->subject)
		snprintf(buf, len, "%s", in->subject);
	else if (in->sensor && *in->sensor)
		snprintf(buf, len, "%s/%s", in->node ? in->node : "",
			 in->sensor);
	else
		snprintf(buf, len, "%s", in->node ? in->node : "");
}

static int on_trouble(struct inc_engine *e, const struct inc_input *in,
		      uint64_t t, uint64_t now, struct inc_result *res)
{
	char key[INC_KEY_MAX + 1], subject[INC_SUBJECT_MAX + 1];
	struct incident *inc;

	subject_of(in, subject, sizeof(subject));
	trouble_key(key, sizeof(key), in->site ? in->site : "", subject,
		    in->kind);
	inc = find_open(e, key);
	if (!inc) {
		inc = open_incident(e, in, key, true, subject, t, now);
		if (!inc)
			return VIGIE_ENOMEM;
		res->changes |= INC_OPENED;
	} else {
		res->changes |= INC_JOINED;
	}
	res->inc = inc;
	touch(inc, in, t, now);
	raise_priority(inc, in->kind, in->state, &res->changes);
	if (immediate_kind(e, in->kind))
		res->immediate = true;
	return 0;
}

static int on_restore(struct inc_engine *e, const struct inc_input *in,
		      uint64_t t, uint64_t now, struct inc_result *res)
{
	char key[INC_KEY_MAX + 1], subject[INC_SUBJECT_MAX + 1];
	struct incident *inc;

	subject_of(in, subject, sizeof(subject));
	trouble_key(key, sizeof(key), in->site ? in->site : "", subject,
		    in->kind);
	inc = find_open(e, key);
	if (inc) {
		res->inc = inc;
		touch(inc, in, t, now);
		close_incident(e, inc, now);
		res->changes |= INC_RESTORED | INC_CLOSED;
		return 0;
	}
	/* A detector back to normal: part of its zone's story, no change. */
	if (vigie__inc_is_trouble_kind(in->kind))
		return 0;
	alarm_key(key, sizeof(key), in->site, in->zone);
	inc = find_open(e, key);
	if (inc) {
		res->inc = inc;
		touch(inc, in, t, now);
		res->changes |= INC_JOINED;
	}
	return 0;
}

int vigie__inc_event(struct inc_engine *e, const struct inc_input *in,
		     struct inc_result *res)
{
	uint64_t now = now_us(e);
	uint64_t t = in->time_us ? in->time_us : now;

	memset(res, 0, sizeof(*res));
	switch (classify(in->kind, in->state)) {
	case CLS_ALARM:
		return on_alarm(e, in, t, now, res);
	case CLS_TROUBLE:
		return on_trouble(e, in, t, now, res);
	case CLS_RESTORE:
		return on_restore(e, in, t, now, res);
	case CLS_NONE:
	default:
		return 0;
	}
}

unsigned vigie__inc_ack(struct inc_engine *e, struct incident *inc,
			const char *by)
{
	uint64_t now = now_us(e);

	if (inc->state == I(CLOSED) || inc->state == I(ACKNOWLEDGED))
		return 0;
	inc->state = I(ACKNOWLEDGED);
	inc->acked_us = now;
	inc->updated_us = now;
	inc->last_activity_us = now;
	vigie__relay_utf8_copy(inc->acked_by, sizeof(inc->acked_by), by);
	return INC_ACKED;
}

void vigie__inc_rearm(struct inc_engine *e, struct incident *inc)
{
	if (inc->state != I(ACKNOWLEDGED))
		return;
	inc->state = inc->confirmed ? I(CONFIRMED) : I(OPEN);
	inc->updated_us = now_us(e);
}

static uint64_t quiet_close_us(const struct inc_engine *e,
			       const struct incident *inc)
{
	if (inc->trouble || inc->state != I(ACKNOWLEDGED))
		return 0;
	return inc->last_activity_us + e->p.close_after_ms * 1000;
}

bool vigie__inc_close_if_quiet(struct inc_engine *e, struct incident *inc)
{
	uint64_t at = quiet_close_us(e, inc), now = now_us(e);

	if (!at || now < at)
		return false;
	close_incident(e, inc, now);
	return true;
}

int vigie__inc_schedule(struct inc_engine *e, struct incident *inc)
{
	uint64_t esc = vigie__esc_next_due(&inc->esc);
	uint64_t quiet = quiet_close_us(e, inc);
	uint64_t at = esc && (!quiet || esc < quiet) ? esc : quiet;

	if (inc->state == I(CLOSED))
		at = 0;
	return wake_set(e, inc, at);
}

struct incident *vigie__inc_next_due(struct inc_engine *e, uint64_t now_us)
{
	struct incident *inc;

	if (!e->n_wake || e->wake[0]->wake_us > now_us)
		return NULL;
	inc = e->wake[0];
	wake_set(e, inc, 0);
	return inc;
}
