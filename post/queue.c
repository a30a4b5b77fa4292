/* The live queue of the post's dispatches.
 *
 * The relay re-sends a dispatch with the same id until it is acknowledged,
 * so the id is the key: a re-send updates its entry (attempt, content) and
 * never adds a row. A new escalation level of an incident comes with a new
 * id; the lower levels are then marked superseded, so the console shows the
 * incident once, at its current level. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "post.h"
#include "vigie/error.h"

/* ---- owned copies ---------------------------------------------------- */

static char *dup_text(const char *s, bool *failed)
{
	char *d = strdup(s ? s : "");

	if (!d)
		*failed = true;
	return d;
}

static void dispatch_free(struct post_dispatch *d)
{
	free(d->id);
	free(d->incident);
	free(d->site);
	free(d->site_name);
	free(d->address);
	free(d->zone_id);
	free(d->zone_name);
	free(d->zone_floor);
	free(d->zone_facade);
	free(d->zone_kind);
	free(d->zone_action_plan);
	for (size_t i = 0; d->cameras && i < d->n_cameras; i++)
		free(d->cameras[i]);
	free(d->cameras);
	free(d->level_name);
	free(d->action_plan);
	free(d->text);
	free(d->pattern);
	free(d->backup_for);
	for (size_t i = 0; d->attrs && i < d->n_attrs; i++) {
		free(d->attrs[i].key);
		free(d->attrs[i].value);
	}
	free(d->attrs);
	memset(d, 0, sizeof(*d));
}

static int dispatch_copy(struct post_dispatch *d, const Vigie__V1__Dispatch *m)
{
	const Vigie__V1__Zone *z = m->zone;
	bool failed = false;
	char derived[POST_ID_MAX + 1];

	memset(d, 0, sizeof(*d));
	d->id = dup_text(m->id, &failed);
	/* The Ack must name the incident; an older relay that leaves it empty
	 * still follows the "<incident>-l<level>" id format. */
	if ((!m->incident || !*m->incident) &&
	    vigie__postmsg_incident_from_id(m->id, derived, sizeof(derived)) ==
		    0)
		d->incident = dup_text(derived, &failed);
	else
		d->incident = dup_text(m->incident, &failed);
	d->site = dup_text(m->site, &failed);
	d->site_name = dup_text(m->site_name, &failed);
	d->address = dup_text(m->address, &failed);
	d->zone_id = dup_text(z ? z->id : NULL, &failed);
	d->zone_name = dup_text(z ? z->name : NULL, &failed);
	d->zone_floor = dup_text(z ? z->floor : NULL, &failed);
	d->zone_facade = dup_text(z ? z->facade : NULL, &failed);
	d->zone_kind = dup_text(z ? z->kind : NULL, &failed);
	d->zone_action_plan = dup_text(z ? z->action_plan : NULL, &failed);
	if (z && z->location) {
		d->has_zone_location = true;
		d->zone_lat = z->location->lat;
		d->zone_lon = z->location->lon;
	}
	if (z && z->n_cameras) {
		d->cameras = calloc(z->n_cameras, sizeof(*d->cameras));
		if (!d->cameras)
			failed = true;
		else
			d->n_cameras = z->n_cameras;
		for (size_t i = 0; d->cameras && i < z->n_cameras; i++)
			d->cameras[i] = dup_text(z->cameras[i], &failed);
	}
	d->kind = m->kind;
	d->priority = m->priority;
	d->confirmed = m->confirmed;
	d->first_event_us = m->first_event_us;
	d->sent_us = m->sent_us;
	d->level = m->level;
	d->attempt = m->attempt;
	d->level_name = dup_text(m->level_name, &failed);
	d->action_plan = dup_text(m->action_plan, &failed);
	d->text = dup_text(m->text, &failed);
	d->pattern = dup_text(m->pattern, &failed);
	d->backup_for = dup_text(m->backup_for, &failed);
	if (m->n_attributes) {
		d->attrs = calloc(m->n_attributes, sizeof(*d->attrs));
		if (!d->attrs)
			failed = true;
		else
			d->n_attrs = m->n_attributes;
		for (size_t i = 0; d->attrs && i < m->n_attributes; i++) {
			const Vigie__V1__Attribute *a = m->attributes[i];

			d->attrs[i].key = dup_text(a ? a->key : NULL, &failed);
			d->attrs[i].value =
				dup_text(a ? a->value : NULL, &failed);
		}
	}
	if (m->site_location) {
		d->has_site_location = true;
		d->site_lat = m->site_location->lat;
		d->site_lon = m->site_location->lon;
	}
	if (failed) {
		dispatch_free(d);
		return VIGIE_ENOMEM;
	}
	return 0;
}

static void entry_free(struct post_entry *e)
{
	if (!e)
		return;
	dispatch_free(&e->d);
	free(e->acked_by);
	free(e);
}

/* ---- checks ---------------------------------------------------------- */

int vigie__postq_check(const Vigie__V1__Dispatch *d, const char *post,
		       char *err, size_t errlen)
{
	if (!d->id || !vigie__postmsg_id_valid(d->id)) {
		snprintf(err, errlen,
			 "dispatch id is empty, longer than %d or not of "
			 "[A-Za-z0-9._:-]",
			 POST_ID_MAX);
		return VIGIE_EINVAL;
	}
	if (d->incident && *d->incident &&
	    !vigie__postmsg_id_valid(d->incident)) {
		snprintf(err, errlen, "dispatch %s: invalid incident id",
			 d->id);
		return VIGIE_EINVAL;
	}
	if (d->post && *d->post && strcmp(d->post, post) != 0) {
		/* Printable: it passed no check, so show only its length. */
		snprintf(err, errlen,
			 "dispatch %s names another post (%zu bytes), not %s",
			 d->id, strlen(d->post), post);
		return VIGIE_EINVAL;
	}
	return 0;
}

/* ---- order ----------------------------------------------------------- */

bool vigie__postq_entry_done(const struct post_entry *e)
{
	return e->ack >= POST_ACK_SENT || e->closed || e->superseded;
}

bool vigie__postq_entry_visible(const struct post_entry *e)
{
	return !e->superseded;
}

static uint64_t entry_age_key(const struct post_entry *e)
{
	return e->d.first_event_us ? e->d.first_event_us : e->received_us;
}

static int compare(const void *pa, const void *pb)
{
	const struct post_entry *a = *(const struct post_entry *const *)pa;
	const struct post_entry *b = *(const struct post_entry *const *)pb;
	bool da = vigie__postq_entry_done(a), db = vigie__postq_entry_done(b);
	uint64_t ta, tb;

	/* What still needs a human comes first. */
	if (da != db)
		return da ? 1 : -1;
	if (a->d.priority != b->d.priority)
		return a->d.priority > b->d.priority ? -1 : 1;
	/* The one waiting longest first. */
	ta = entry_age_key(a);
	tb = entry_age_key(b);
	if (ta != tb)
		return ta < tb ? -1 : 1;
	return strcmp(a->d.id, b->d.id);
}

static void sort(struct post_queue *q)
{
	if (q->len > 1)
		qsort(q->v, q->len, sizeof(*q->v), compare);
}

/* ---- the queue ------------------------------------------------------- */

void vigie__postq_init(struct post_queue *q, size_t max)
{
	memset(q, 0, sizeof(*q));
	q->max = max ? max : 1;
}

void vigie__postq_free(struct post_queue *q)
{
	for (size_t i = 0; i < q->len; i++)
		entry_free(q->v[i]);
	free(q->v);
	memset(q, 0, sizeof(*q));
}

struct post_entry *vigie__postq_find(const struct post_queue *q, const char *id)
{
	if (!id)
		return NULL;
	for (size_t i = 0; i < q->len; i++)
		if (strcmp(q->v[i]->d.id, id) == 0)
			return q->v[i];
	return NULL;
}

static void remove_at(struct post_queue *q, size_t i)
{
	entry_free(q->v[i]);
	memmove(&q->v[i], &q->v[i + 1], (q->len - i - 1) * sizeof(*q->v));
	q->len--;
}

/* make_room: at the cap, drop the entry finished longest ago. An open one
 * is never dropped: the alarm would vanish from the screen. */
static int make_room(struct post_queue *q)
{
	size_t victim = q->len;

	if (q->len < q->max)
		return 0;
	for (size_t i = 0; i < q->len; i++) {
		if (!vigie__postq_entry_done(q->v[i]))
			continue;
		if (victim == q->len ||
		    q->v[i]->done_ms < q->v[victim]->done_ms)
			victim = i;
	}
	if (victim == q->len)
		return VIGIE_EFULL;
	remove_at(q, victim);
	q->evicted++;
	return 0;
}

static void mark_done(struct post_entry *e, uint64_t now_ms)
{
	if (!e->done_ms)
		e->done_ms = now_ms ? now_ms : 1;
}

/* Escalation: only the highest level of an incident stays in view. */
static void supersede(struct post_queue *q, struct post_entry *e,
		      uint64_t now_ms)
{
	if (!*e->d.incident)
		return;
	for (size_t i = 0; i < q->len; i++) {
		struct post_entry *o = q->v[i];

		if (o == e || strcmp(o->d.incident, e->d.incident) != 0)
			continue;
		if (o->d.level < e->d.level && !o->superseded) {
			o->superseded = true;
			mark_done(o, now_ms);
		} else if (o->d.level > e->d.level && !e->superseded) {
			e->superseded = true;
			mark_done(e, now_ms);
		}
	}
}

int vigie__postq_upsert(struct post_queue *q, const Vigie__V1__Dispatch *d,
			uint64_t now_us, uint64_t now_ms,
			enum post_upsert *what, struct post_entry **out)
{
	struct post_entry *e = vigie__postq_find(q, d->id);
	struct post_dispatch fresh;
	int rc;

	if (e) {
		e->receptions++;
		*out = e;
		*what = POST_UPSERT_SAME;
		/* A re-send carries a higher attempt; a copy redelivered by the
		 * broker (QoS 1, or a session replay) does not: keep the newer.
		 */
		if (d->attempt < e->d.attempt ||
		    (d->attempt == e->d.attempt && d->sent_us <= e->d.sent_us))
			return 0;
		rc = dispatch_copy(&fresh, d);
		if (rc)
			return rc;
		dispatch_free(&e->d);
		e->d = fresh;
		*what = POST_UPSERT_CHANGED;
		sort(q);
		return 0;
	}
	rc = make_room(q);
	if (rc)
		return rc;
	if (q->len + 1 > q->max)
		return VIGIE_EFULL;
	if (q->len == q->alloc) {
		size_t n = q->alloc ? q->alloc * 2 : 16;
		struct post_entry **v;

		if (n > q->max)
			n = q->max;
		v = realloc(q->v, n * sizeof(*v));
		if (!v)
			return VIGIE_ENOMEM;
		q->v = v;
		q->alloc = n;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return VIGIE_ENOMEM;
	rc = dispatch_copy(&e->d, d);
	if (rc) {
		free(e);
		return rc;
	}
	e->received_us = now_us;
	e->receptions = 1;
	q->v[q->len++] = e;
	supersede(q, e, now_ms);
	sort(q);
	*what = POST_UPSERT_NEW;
	*out = e;
	return 0;
}

int vigie__postq_set_ack(struct post_queue *q, struct post_entry *e,
			 enum post_ack_state state, const char *by,
			 uint64_t time_us, uint64_t now_ms)
{
	if (state <= e->ack)
		return 0;
	if (!e->acked_by && by && *by) {
		e->acked_by = strdup(by);
		if (!e->acked_by)
			return VIGIE_ENOMEM;
	}
	if (!e->acked_us)
		e->acked_us = time_us;
	e->ack = state;
	if (state >= POST_ACK_SENT)
		mark_done(e, now_ms);
	sort(q);
	return 0;
}

size_t vigie__postq_incident(struct post_queue *q, const char *incident,
			     int state, const char *acked_by, uint64_t acked_us,
			     uint64_t now_ms)
{
	size_t changed = 0;

	if (!incident || !*incident)
		return 0;
	for (size_t i = 0; i < q->len; i++) {
		struct post_entry *e = q->v[i];

		if (strcmp(e->d.incident, incident) != 0)
			continue;
		if (state == VIGIE__V1__INCIDENT_STATE__INCIDENT_ACKNOWLEDGED &&
		    e->ack < POST_ACK_CONFIRMED) {
			/* Out of memory for the name: the state still moves. */
			(void)vigie__postq_set_ack(q, e, POST_ACK_CONFIRMED,
						   acked_by, acked_us, now_ms);
			changed++;
		} else if (state ==
				   VIGIE__V1__INCIDENT_STATE__INCIDENT_CLOSED &&
			   !e->closed) {
			e->closed = true;
			mark_done(e, now_ms);
			changed++;
		}
	}
	if (changed)
		sort(q);
	return changed;
}

size_t vigie__postq_prune(struct post_queue *q, uint64_t now_ms,
			  uint64_t keep_ms)
{
	size_t removed = 0;

	for (size_t i = 0; i < q->len;) {
		struct post_entry *e = q->v[i];

		if (vigie__postq_entry_done(e) && e->ack != POST_ACK_PENDING &&
		    now_ms >= e->done_ms && now_ms - e->done_ms >= keep_ms) {
			remove_at(q, i);
			removed++;
			continue;
		}
		i++;
	}
	return removed;
}

size_t vigie__postq_open_count(const struct post_queue *q)
{
	size_t n = 0;

	for (size_t i = 0; i < q->len; i++)
		if (!vigie__postq_entry_done(q->v[i]))
			n++;
	return n;
}

const char *vigie__postq_entry_incident(const struct post_entry *e, char *buf,
					size_t len)
{
	if (*e->d.incident)
		return e->d.incident;
	if (len && vigie__postmsg_incident_from_id(e->d.id, buf, len) == 0)
		return buf;
	return "";
}
