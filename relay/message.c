/* Building the relay's outgoing messages; see message.h. Messages are
 * built on the stack with __INIT, pointing at the caller's strings, and
 * packed with vigie_pack. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "utf8.h"
#include "vigie/error.h"
#include "vigie/strbuf.h"

#define S(x) ((char *)((x) ? (x) : ""))

int vigie__msg_receipt(const char *site, const char *node, uint64_t boot_id,
		       uint64_t seq, uint64_t now_us, const char *relay,
		       uint8_t **out, size_t *len)
{
	Vigie__V1__Receipt r = VIGIE__V1__RECEIPT__INIT;

	r.site = S(site);
	r.node = S(node);
	r.boot_id = boot_id;
	r.seq = seq;
	r.time_us = now_us;
	r.relay = S(relay);
	return vigie_pack(&r.base, out, len);
}

int vigie__msg_incident(const struct incident *inc, const char *level_name,
			const char *region, uint8_t **out, size_t *len)
{
	Vigie__V1__Incident m = VIGIE__V1__INCIDENT__INIT;
	Vigie__V1__EventRef refs[INC_MAX_REFS], *rp[INC_MAX_REFS];
	Vigie__V1__Attribute attrs[INC_MAX_ATTRS], *ap[INC_MAX_ATTRS];
	char *det[INC_MAX_DETECTORS];

	m.id = S(inc->id);
	m.site = S(inc->site);
	m.zone = S(inc->zone);
	m.state = inc->state;
	m.priority = inc->priority;
	m.kind = inc->kind;
	m.confirmed = inc->confirmed;
	m.trouble = inc->trouble;
	m.first_event_us = inc->first_event_us;
	m.last_event_us = inc->last_event_us;
	m.level = inc->esc.level;
	m.level_name = S(level_name);
	for (size_t i = 0; i < inc->n_refs && i < INC_MAX_REFS; i++) {
		const struct inc_ref *r = &inc->refs[i];

		vigie__v1__event_ref__init(&refs[i]);
		refs[i].node = S(r->node);
		refs[i].boot_id = r->boot_id;
		refs[i].seq = r->seq;
		refs[i].time_us = r->time_us;
		refs[i].kind = r->kind;
		refs[i].state = r->state;
		refs[i].sensor = S(r->sensor);
		refs[i].zone = S(r->zone);
		rp[i] = &refs[i];
	}
	m.events = rp;
	m.n_events = inc->n_refs;
	m.acked_by = S(inc->acked_by);
	m.acked_us = inc->acked_us;
	for (size_t i = 0; i < inc->n_attrs && i < INC_MAX_ATTRS; i++) {
		vigie__v1__attribute__init(&attrs[i]);
		attrs[i].key = S(inc->attrs[i].key);
		attrs[i].value = S(inc->attrs[i].value);
		ap[i] = &attrs[i];
	}
	m.attributes = ap;
	m.n_attributes = inc->n_attrs;
	m.updated_us = inc->updated_us;
	m.region = S(region);
	m.event_count = inc->event_count;
	for (size_t i = 0; i < inc->n_detectors && i < INC_MAX_DETECTORS; i++)
		det[i] = S(inc->detectors[i].id);
	m.detectors = det;
	m.n_detectors = inc->n_detectors;
	m.confirmed_us = inc->confirmed_us;
	m.closed_us = inc->closed_us;
	m.subject = S(inc->subject);
	return vigie_pack(&m.base, out, len);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	vigie__relay_utf8_copy(dst, cap, src);
}

void vigie__msg_detectors_format(const struct incident *inc, char *buf,
				 size_t len)
{
	size_t pos = 0;

	if (!len)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < inc->n_detectors; i++) {
		int n = snprintf(buf + pos, len - pos, "%s%s@%" PRIu64,
				 i ? ";" : "", inc->detectors[i].id,
				 inc->detectors[i].last_us);

		if (n < 0 || (size_t)n >= len - pos) {
			buf[pos] = '\0'; /* whole entries only */
			return;
		}
		pos += (size_t)n;
	}
}

static void parse_detectors(const char *text, struct incident *inc)
{
	const char *p = text;

	while (p && *p && inc->n_detectors < INC_MAX_DETECTORS) {
		const char *end = strchr(p, ';');
		const char *at;
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char item[INC_DETECTOR_MAX + 32];
		struct inc_detector *d;

		if (n < sizeof(item)) {
			memcpy(item, p, n);
			item[n] = '\0';
			at = strrchr(item, '@');
			if (at && at != item) {
				if (!inc->detectors)
					inc->detectors =
						calloc(INC_MAX_DETECTORS,
						       sizeof(*inc->detectors));
				if (!inc->detectors)
					return;
				d = &inc->detectors[inc->n_detectors++];
				snprintf(d->id, sizeof(d->id), "%.*s",
					 (int)(at - item), item);
				d->last_us = strtoull(at + 1, NULL, 10);
			}
		}
		p = end ? end + 1 : NULL;
	}
}

int vigie__msg_incident_restore(const void *data, size_t len,
				const char *detectors, struct incident *inc)
{
	Vigie__V1__Incident *m;

	m = vigie__v1__incident__unpack(NULL, len, data);
	if (!m)
		return VIGIE_EDECODE;
	copy_str(inc->id, sizeof(inc->id), m->id);
	copy_str(inc->site, sizeof(inc->site), m->site);
	copy_str(inc->zone, sizeof(inc->zone), m->zone);
	copy_str(inc->subject, sizeof(inc->subject), m->subject);
	inc->state = m->state;
	inc->priority = m->priority;
	inc->kind = m->kind;
	inc->confirmed = m->confirmed;
	inc->trouble = m->trouble;
	inc->first_event_us = m->first_event_us;
	inc->last_event_us = m->last_event_us;
	inc->confirmed_us = m->confirmed_us;
	inc->acked_us = m->acked_us;
	inc->closed_us = m->closed_us;
	inc->updated_us = m->updated_us;
	inc->event_count = m->event_count;
	copy_str(inc->acked_by, sizeof(inc->acked_by), m->acked_by);
	if (m->n_events) {
		size_t n =
			m->n_events < INC_MAX_REFS ? m->n_events : INC_MAX_REFS;

		inc->refs = calloc(INC_MAX_REFS, sizeof(*inc->refs));
		for (size_t i = 0; inc->refs && i < n; i++) {
			const Vigie__V1__EventRef *r = m->events[i];
			struct inc_ref *d = &inc->refs[i];

			copy_str(d->node, sizeof(d->node), r->node);
			d->boot_id = r->boot_id;
			d->seq = r->seq;
			d->time_us = r->time_us;
			d->kind = r->kind;
			d->state = r->state;
			copy_str(d->sensor, sizeof(d->sensor), r->sensor);
			copy_str(d->zone, sizeof(d->zone), r->zone);
			inc->n_refs = i + 1;
		}
	}
	if (m->n_attributes) {
		size_t n = m->n_attributes < INC_MAX_ATTRS ? m->n_attributes
							   : INC_MAX_ATTRS;

		inc->attrs = calloc(INC_MAX_ATTRS, sizeof(*inc->attrs));
		for (size_t i = 0; inc->attrs && i < n; i++) {
			copy_str(inc->attrs[i].key, sizeof(inc->attrs[i].key),
				 m->attributes[i]->key);
			copy_str(inc->attrs[i].value,
				 sizeof(inc->attrs[i].value),
				 m->attributes[i]->value);
			inc->n_attrs = i + 1;
		}
	}
	vigie__v1__incident__free_unpacked(m, NULL);
	parse_detectors(detectors, inc);
	return 0;
}

void vigie__msg_summary(const struct incident *inc, const struct zone_info *z,
			char *buf, size_t len)
{
	size_t pos = 0, shown = 0;

	if (!len)
		return;
	buf[0] = '\0';
	if (inc->trouble)
		vigie_appendf(buf, len, &pos, "TROUBLE %s",
			      vigie_kind_name(inc->kind));
	else
		vigie_appendf(buf, len, &pos, "%s%s",
			      inc->confirmed ? "CONFIRMED " : "",
			      vigie_kind_name(inc->kind));
	if (inc->trouble && inc->subject[0])
		vigie_appendf(buf, len, &pos, " %s", inc->subject);
	if (z && z->name && *z->name)
		vigie_appendf(buf, len, &pos, ", %s", z->name);
	else if (inc->zone[0])
		vigie_appendf(buf, len, &pos, ", zone %s", inc->zone);
	if (z && ((z->floor && *z->floor) || (z->facade && *z->facade))) {
		vigie_appendf(buf, len, &pos, " (");
		if (z->floor && *z->floor)
			vigie_appendf(buf, len, &pos, "floor %s", z->floor);
		if (z->facade && *z->facade)
			vigie_appendf(buf, len, &pos, "%sfacade %s",
				      z->floor && *z->floor ? ", " : "",
				      z->facade);
		vigie_appendf(buf, len, &pos, ")");
	}
	for (size_t i = 0; i < inc->n_refs && shown < 6; i++) {
		const struct inc_ref *r = &inc->refs[i];

		if (r->state == VIGIE__V1__EVENT_STATE__STATE_RESTORE)
			continue;
		vigie_appendf(buf, len, &pos, "%s%s%s%s", shown ? ", " : ": ",
			      vigie_kind_name(r->kind), r->sensor[0] ? " " : "",
			      r->sensor);
		shown++;
	}
	vigie_appendf(buf, len, &pos, " - %u event%s", inc->event_count,
		      inc->event_count == 1 ? "" : "s");
	vigie__relay_utf8_trim(buf);
}

static void fill_zone(Vigie__V1__Zone *zm, Vigie__V1__Location *loc,
		      const struct zone_info *z, const char *fallback_id)
{
	vigie__v1__zone__init(zm);
	zm->id = S(z ? z->id : fallback_id);
	if (!z)
		return;
	zm->name = S(z->name);
	zm->floor = S(z->floor);
	zm->facade = S(z->facade);
	zm->kind = S(z->kind);
	zm->action_plan = S(z->action_plan);
	zm->cameras = z->cameras;
	zm->n_cameras = z->n_cameras;
	if (z->has_location) {
		vigie__v1__location__init(loc);
		loc->lat = z->lat;
		loc->lon = z->lon;
		zm->location = loc;
	}
}

int vigie__msg_dispatch(const struct dispatch_in *in, uint8_t **out,
			size_t *len)
{
	Vigie__V1__Dispatch d = VIGIE__V1__DISPATCH__INIT;
	Vigie__V1__Zone zone;
	Vigie__V1__Location zloc, sloc;
	Vigie__V1__Attribute attrs[INC_MAX_ATTRS], *ap[INC_MAX_ATTRS];
	const struct incident *inc = in->inc;
	char text[512];

	d.id = S(in->id);
	d.incident = S(inc->id);
	d.post = S(in->post);
	d.site = S(inc->site);
	d.site_name = S(in->site ? in->site->name : inc->site);
	fill_zone(&zone, &zloc, in->zone, inc->zone);
	d.zone = &zone;
	d.kind = inc->kind;
	d.priority = inc->priority;
	d.confirmed = inc->confirmed;
	d.first_event_us = inc->first_event_us;
	d.sent_us = in->sent_us;
	d.level = in->level;
	d.level_name = S(in->level_name);
	d.attempt = in->attempt;
	d.action_plan = S(in->zone ? in->zone->action_plan : NULL);
	vigie__msg_summary(inc, in->zone, text, sizeof(text));
	d.text = text;
	for (size_t i = 0; i < inc->n_attrs && i < INC_MAX_ATTRS; i++) {
		vigie__v1__attribute__init(&attrs[i]);
		attrs[i].key = S(inc->attrs[i].key);
		attrs[i].value = S(inc->attrs[i].value);
		ap[i] = &attrs[i];
	}
	d.attributes = ap;
	d.n_attributes = inc->n_attrs;
	if (in->site && in->site->has_location) {
		vigie__v1__location__init(&sloc);
		sloc.lat = in->site->lat;
		sloc.lon = in->site->lon;
		d.site_location = &sloc;
	}
	d.address = S(in->site ? in->site->address : NULL);
	d.backup_for = S(in->backup_for);
	return vigie_pack(&d.base, out, len);
}

int vigie__msg_alert(const struct alert_in *in, uint8_t **out, size_t *len)
{
	Vigie__V1__SiteAlert a = VIGIE__V1__SITE_ALERT__INIT;
	const struct incident *inc = in->inc;
	char *instr[33];
	char title[160], text[512];
	size_t n = 0;

	a.site = S(inc->site);
	a.id = S(in->id);
	a.time_us = in->now_us;
	a.incident = S(inc->id);
	a.posture =
		inc->trouble ? VIGIE__V1__POSTURE__POSTURE_NORMAL
		: inc->confirmed ||
				inc->priority >=
					VIGIE__V1__PRIORITY__PRIORITY_CRITICAL
			? VIGIE__V1__POSTURE__POSTURE_CRITICAL
			: VIGIE__V1__POSTURE__POSTURE_HEIGHTENED;
	snprintf(title, sizeof(title), "%s%s%s%s",
		 inc->trouble     ? "Trouble: "
		 : inc->confirmed ? "Confirmed "
				  : "",
		 vigie_kind_name(inc->kind),
		 in->zone && in->zone->name && *in->zone->name ? " - " : "",
		 in->zone && in->zone->name ? in->zone->name : "");
	vigie__relay_utf8_trim(title);
	a.title = title;
	vigie__msg_summary(inc, in->zone, text, sizeof(text));
	a.text = text;
	/* The zone's action plan first: what to do there, then the level's
	 * standing instructions. */
	if (in->zone && in->zone->action_plan && *in->zone->action_plan)
		instr[n++] = (char *)in->zone->action_plan;
	for (size_t i = 0; in->level && i < in->level->n_instructions && n < 33;
	     i++)
		instr[n++] = (char *)in->level->instructions[i];
	a.instructions = instr;
	a.n_instructions = n;
	a.priority = inc->priority;
	a.level = in->level_index;
	return vigie_pack(&a.base, out, len);
}
