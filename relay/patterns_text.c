/* Plain-language explanations of pattern alerts: what the rule looks for,
 * which museums and incidents made it match, and when. Read by police
 * posts, guards and `vigie-relay patterns`, so no jargon beyond the event
 * kinds. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "patterns_int.h"
#include "utf8.h"
#include "vigie/codec.h"
#include "vigie/strbuf.h"

#define MAX_LISTED 12

void vigie__pat_time_text(const struct pat_rules *r, uint64_t us, char *buf,
			  size_t len)
{
	time_t t = (time_t)((int64_t)(us / 1000000u) + r->utc_offset_s);
	struct tm tm;

	gmtime_r(&t, &tm);
	if (!strftime(buf, len, "%Y-%m-%d %H:%M", &tm) && len)
		buf[0] = '\0';
}

static void span_text(uint64_t us, char *buf, size_t len)
{
	uint64_t s = us / 1000000u;

	if (s >= 86400 && s % 86400 == 0)
		snprintf(buf, len, "%llu day%s",
			 (unsigned long long)(s / 86400),
			 s == 86400 ? "" : "s");
	else if (s >= 3600 && s % 3600 == 0)
		snprintf(buf, len, "%llu h", (unsigned long long)(s / 3600));
	else if (s >= 60 && s % 60 == 0)
		snprintf(buf, len, "%llu min", (unsigned long long)(s / 60));
	else if (s >= 7200)
		snprintf(buf, len, "%.1f h", (double)s / 3600.0);
	else if (s >= 120)
		snprintf(buf, len, "%llu min", (unsigned long long)(s / 60));
	else
		snprintf(buf, len, "%llu s", (unsigned long long)s);
}

/* "display case" for display_case. */
static void kind_text(int kind, char *buf, size_t len)
{
	snprintf(buf, len, "%s", vigie_kind_name(kind));
	for (char *p = buf; *p; p++)
		if (*p == '_')
			*p = ' ';
}

static const char *site_name(const struct pat_engine *e, uint32_t site)
{
	return site < e->r->n_sites ? e->r->sites[site].name : "?";
}

static bool before(const struct pat_member *a, const struct pat_member *b)
{
	return a->t_us != b->t_us ? a->t_us < b->t_us : a->step < b->step;
}

static void member_text(const struct pat_engine *e, const struct pat_alert *a,
			const struct pat_member *m, char *buf, size_t len,
			size_t *pos)
{
	const struct pat_rule *rule = a->rule;
	const char *zone = vigie__pat_atom_str(&e->r->atoms, m->zone);
	char when[32], kind[40], span[32];

	vigie__pat_time_text(e->r, m->t_us, when, sizeof(when));
	kind_text(m->kind, kind, sizeof(kind));
	if (rule->type == PAT_SEQUENCE && m->step >= 0 &&
	    (size_t)m->step < rule->n_steps && rule->steps[m->step].name)
		vigie_appendf(buf, len, pos, "%s: ", rule->steps[m->step].name);
	vigie_appendf(buf, len, pos, "%s %s at %s", kind,
		      m->trouble ? "trouble" : "alarm", site_name(e, m->site));
	if (*zone)
		vigie_appendf(buf, len, pos, " (%s)", zone);
	vigie_appendf(buf, len, pos, " on %s", when);
	if (m->trouble) {
		if (m->restored) {
			span_text(m->last_us - m->t_us, span, sizeof(span));
			vigie_appendf(buf, len, pos, ", restored after %s",
				      span);
		} else {
			vigie_appendf(buf, len, pos, ", not restored");
		}
	}
	if (m->mo[0])
		vigie_appendf(buf, len, pos, " [%s]", m->mo);
}

static void list_members(const struct pat_engine *e, const struct pat_alert *a,
			 const char *sep, char *buf, size_t len, size_t *pos)
{
	size_t idx[PAT_MAX_MEMBERS];
	size_t n = a->n_members, shown;

	/* By time (insertion sort: a few hundred at most, mostly in order). */
	for (size_t i = 0; i < n; i++) {
		size_t j = i;

		for (; j > 0 && before(&a->members[i], &a->members[idx[j - 1]]);
		     j--)
			idx[j] = idx[j - 1];
		idx[j] = i;
	}
	/* The first ones show how it began, the last ones where it is. */
	shown = n <= MAX_LISTED ? n : MAX_LISTED;
	for (size_t i = 0; i < shown; i++) {
		size_t k = n <= MAX_LISTED || i < MAX_LISTED / 2
				   ? i
				   : n - (MAX_LISTED - i);

		if (i == MAX_LISTED / 2 && n > MAX_LISTED)
			vigie_appendf(buf, len, pos, "%s... %zu more ...", sep,
				      n - MAX_LISTED);
		vigie_appendf(buf, len, pos, "%s", i ? sep : "");
		member_text(e, a, &a->members[idx[k]], buf, len, pos);
	}
	if (a->n_total > a->n_members)
		vigie_appendf(buf, len, pos, "%s(and %u incidents not listed)",
			      sep, a->n_total - (uint32_t)a->n_members);
}

static void absent_text(const struct pat_step *s, char *buf, size_t len,
			size_t *pos)
{
	char span[32];

	span_text(s->for_us, span, sizeof(span));
	if (s->restore)
		vigie_appendf(
			buf, len, pos,
			"not restored within %s (or still out when the next "
			"step came)",
			span);
	else
		vigie_appendf(buf, len, pos, "%s%sno such incident within %s",
			      s->name ? s->name : "", s->name ? ": " : "",
			      span);
}

void vigie__pat_explain(const struct pat_engine *e, const struct pat_alert *a,
			char *buf, size_t len)
{
	const struct pat_rule *rule = a->rule;
	char win[32];
	size_t pos = 0;

	if (!len)
		return;
	buf[0] = '\0';
	span_text(rule->window_us, win, sizeof(win));
	switch (rule->type) {
	case PAT_COUNT:
		vigie_appendf(buf, len, &pos, "%u incidents matching \"%s\"",
			      a->n_total, rule->title);
		if (rule->has_distinct && rule->distinct.f == PF_DAY)
			vigie_appendf(buf, len, &pos, " on different days");
		if (a->gkey[0])
			vigie_appendf(buf, len, &pos, " at %s", a->gkey);
		vigie_appendf(buf, len, &pos,
			      " within %s (the rule needs %u%s): ", win,
			      rule->min, rule->has_distinct ? " distinct" : "");
		list_members(e, a, "; ", buf, len, &pos);
		vigie_appendf(buf, len, &pos, ".");
		break;
	case PAT_DISTINCT_SITES:
		vigie_appendf(buf, len, &pos, "%zu museums", a->n_sites);
		if (rule->radius_km > 0)
			vigie_appendf(buf, len, &pos,
				      " within %.0f km of each other",
				      rule->radius_km);
		if (a->gkey[0])
			vigie_appendf(buf, len, &pos, " (%s)", a->gkey);
		vigie_appendf(
			buf, len, &pos,
			" had incidents matching \"%s\" within %s (the rule "
			"needs %u museums): ",
			rule->title, win, rule->min_sites);
		list_members(e, a, "; ", buf, len, &pos);
		vigie_appendf(buf, len, &pos, ".");
		break;
	case PAT_SEQUENCE:
		vigie_appendf(buf, len, &pos, "\"%s\"", rule->title);
		if (a->gkey[0])
			vigie_appendf(buf, len, &pos, " at %s", a->gkey);
		vigie_appendf(buf, len, &pos,
			      ": the steps happened in order within %s", win);
		for (size_t i = 0; i < rule->n_steps; i++)
			if (rule->steps[i].absent) {
				vigie_appendf(buf, len, &pos, ", the trouble ");
				absent_text(&rule->steps[i], buf, len, &pos);
			}
		vigie_appendf(buf, len, &pos, ": ");
		list_members(e, a, "; then ", buf, len, &pos);
		vigie_appendf(buf, len, &pos, ".");
		break;
	case PAT_SIMILAR_MO:
		vigie_appendf(
			buf, len, &pos,
			"%u incidents at %zu museums share a modus operandi "
			"(similarity up to %.2f, the rule needs %.2f) within "
			"%s: ",
			a->n_total, a->n_sites, a->score, rule->threshold, win);
		list_members(e, a, "; ", buf, len, &pos);
		vigie_appendf(buf, len, &pos, ".");
		break;
	}
	if (rule->description)
		vigie_appendf(buf, len, &pos, " Why it matters: %s",
			      rule->description);
	/* Cut at the buffer's end: never inside a character (proto3 strings
	 * are UTF-8, and museum names have accents). */
	vigie__relay_utf8_trim(buf);
}
