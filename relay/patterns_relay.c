/* The pattern tracker inside the relay; the contract is in
 * patterns_relay.h.
 *
 * Ordering rules kept here:
 * - the tracker is fed from the incident's persistence, after the
 *   incident's row is queued: its own rows (the record, the engine's
 *   watermark, the alert, its dispatches) join the same batch, and its
 *   messages leave after that batch committed, so after a kill -9 the
 *   database has the alert whenever a post or a museum saw it;
 * - an alert's row is written before its dispatch rows, the dispatch rows
 *   before their messages (a dispatch that left is stored, with its
 *   attempt);
 * - rows are loaded back in the order written; alerts first, then the
 *   records (which rebuild the windows without re-deciding anything), then
 *   the dispatches, which attach to their alert. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "patterns.h"
#include "patterns_relay.h"
#include "utf8.h"
#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/strbuf.h"

#define NS_META         "meta"
#define NS_INC          "inc"
#define NS_ALERT        "alert"
#define NS_DISP         "disp"
#define MAX_POSTS       256
#define ACK_DEADLINE_MS 86400000ull /* one level: only re-sends matter */
#define POSTURE(x)      VIGIE__V1__POSTURE__POSTURE_##x

struct pat_disp {
	char post[VIGIE_ID_MAX + 1]; /* the post in scope */
	struct relay_ladder ladder;  /* one level: that post */
	struct esc_state esc;
	uint32_t version; /* of the alert, as last dispatched */
	char acked_by[VIGIE_ID_MAX + 1];
	uint64_t acked_us;
};

/* The relay's side of an alert (its `ud`). */
struct pat_ext {
	struct pat_disp *d;
	size_t n, cap;
	uint8_t *msg; /* the retained PatternAlert, for reconnections */
	size_t len;
	size_t sites_told; /* museums in it when the posts were last told */
};

struct row {
	char ns[16];
	char *key;
	uint64_t seq;
	uint8_t *data;
	size_t len;
};

struct patrelay {
	struct patrelay_host h;
	struct pat_engine *e;
	uint64_t seq; /* of the rows written */
	struct row *rows;
	size_t n_rows, cap_rows;
	bool loading;
	uint64_t dispatches, site_alerts, acks, bad_rows;
	/* The posture campaigns give each museum, recomputed when a campaign
	 * changed since (a museum's status asks at every publication). */
	uint64_t gen, posture_gen;
	uint8_t *posture;
	size_t n_posture;
};

static uint64_t now_us(const struct patrelay *p)
{
	return p->h.clock->now_us(p->h.clock);
}

static void audit(struct patrelay *p, const char *pattern, const char *what,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void audit(struct patrelay *p, const char *pattern, const char *what,
		  const char *fmt, ...)
{
	char detail[2560];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	vigie__relay_utf8_trim(detail);
	vigie__store_audit(p->h.store, now_us(p), pattern, what,
			   "relay:patterns", detail);
	vigie_log_info("pattern %s: %s", pattern, detail);
}

/* ---- rows ---- */

static void put_row(struct patrelay *p, const char *ns, const char *key,
		    uint8_t *data, size_t len)
{
	int rc = vigie__store_put_pattern(p->h.store, ns, key, ++p->seq, data,
					  len);

	if (rc)
		vigie_log_error("pattern state %s/%s not queued: %s", ns, key,
				vigie_strerror(rc));
	free(data);
}

static void put_meta(struct patrelay *p)
{
	uint8_t *buf;
	size_t len;

	if (vigie__pat_snap_meta(p->e, &buf, &len) == 0)
		put_row(p, NS_META, "engine", buf, len);
}

static void disp_key(char *buf, size_t len, const char *pattern,
		     const char *post)
{
	snprintf(buf, len, "%s/%s", pattern, post);
}

/* "v=1 version=3 active=1 acked=0 level=0 attempts=2 first=.. last=..
 * next=.. acked_us=.. post=P backup_for=B acked_by=<rest of the line>" */
static void put_disp(struct patrelay *p, const struct pat_alert *a,
		     const struct pat_disp *d)
{
	char key[2 * VIGIE_ID_MAX + 2], *text;
	const struct esc_dispatch *ed = &d->esc.d[0];
	int n;

	text = malloc(1024);
	if (!text)
		return;
	n = snprintf(text, 1024,
		     "v=1 version=%u active=%d acked=%d sent=%d attempts=%u "
		     "first=%" PRIu64 " last=%" PRIu64 " next=%" PRIu64
		     " acked_us=%" PRIu64 " post=%s current=%s backup_for=%s "
		     "acked_by=%s",
		     d->version, d->esc.active, d->esc.acked, ed->sent,
		     ed->attempts, ed->first_us, ed->last_us, ed->next_us,
		     d->acked_us, d->post, ed->post[0] ? ed->post : d->post,
		     ed->backup_for[0] ? ed->backup_for : "-",
		     d->acked_by[0] ? d->acked_by : "-");
	disp_key(key, sizeof(key), a->id, d->post);
	put_row(p, NS_DISP, key, (uint8_t *)text,
		n > 0 && n < 1024 ? (size_t)n : strlen(text));
}

/* ---- scope and posts ---- */

static const char *police_post(const struct relay_config *cfg, const char *site)
{
	const struct relay_ladder *l = vigie__relayconf_ladder(cfg, site);

	if (l->police < l->n && l->levels[l->police].post)
		return l->levels[l->police].post;
	return NULL;
}

/* The posts to tell: the rule's own, else the police posts of the museums
 * in scope. Returns how many (pointers into the config). */
static size_t scope_posts(const struct patrelay *p, const struct pat_alert *a,
			  const uint32_t *scope, size_t n_scope,
			  const char **out)
{
	const struct pat_rules *r = vigie__pat_rules(p->e);
	size_t n = 0;

	if (a->rule->n_posts) {
		for (size_t i = 0; i < a->rule->n_posts && n < MAX_POSTS; i++)
			out[n++] = a->rule->posts[i];
		return n;
	}
	for (size_t i = 0; i < n_scope; i++) {
		const char *post = police_post(p->h.cfg, r->sites[scope[i]].id);
		bool dup = false;

		if (!post)
			continue;
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(out[j], post) == 0;
		if (!dup && n < MAX_POSTS)
			out[n++] = post;
	}
	return n;
}

/* ---- messages ---- */

static const char *region_of(const struct patrelay *p,
			     const struct pat_alert *a, char *buf, size_t len)
{
	const struct pat_rules *r = vigie__pat_rules(p->e);
	const char *g = strstr(a->gkey, "region=");
	uint32_t region = 0;

	if (g) {
		size_t n = strcspn(g + 7, ",");

		snprintf(buf, len, "%.*s", (int)n, g + 7);
		return buf;
	}
	for (size_t i = 0; i < a->n_sites; i++) {
		uint32_t rg = r->sites[a->sites[i]].region;

		if (i == 0)
			region = rg;
		else if (rg != region)
			region = 0;
	}
	snprintf(buf, len, "%s", vigie__pat_atom_str(&r->atoms, region));
	return buf;
}

static int pattern_msg(struct patrelay *p, const struct pat_alert *a,
		       const char **posts, size_t n_posts, bool active,
		       uint8_t **out, size_t *len)
{
	const struct pat_rules *r = vigie__pat_rules(p->e);
	Vigie__V1__PatternAlert m = VIGIE__V1__PATTERN_ALERT__INIT;
	char **sites = calloc(a->n_sites + 1, sizeof(*sites));
	char *incs[PAT_MAX_MEMBERS];
	char region[VIGIE_ID_MAX + 1];
	int rc;

	if (!sites)
		return VIGIE_ENOMEM;
	for (size_t i = 0; i < a->n_sites; i++)
		sites[i] = r->sites[a->sites[i]].id;
	for (size_t i = 0; i < a->n_members; i++)
		incs[i] = (char *)a->members[i].id;
	m.id = (char *)a->id;
	m.rule = (char *)a->rule->id;
	m.title = (char *)a->rule->title;
	m.explanation =
		(char *)vigie__pat_alert_text(p->e, (struct pat_alert *)a);
	m.sites = sites;
	m.n_sites = a->n_sites;
	m.incidents = incs;
	m.n_incidents = a->n_members;
	m.first_us = a->first_us;
	m.last_us = a->last_us;
	m.updated_us = now_us(p);
	m.priority = a->rule->priority;
	m.posture = active ? a->rule->posture : POSTURE(NORMAL);
	m.instructions = (char **)a->rule->instructions;
	m.n_instructions = a->rule->n_instructions;
	m.posts = (char **)posts;
	m.n_posts = n_posts;
	m.active = active;
	m.region = (char *)region_of(p, a, region, sizeof(region));
	rc = vigie_pack(&m.base, out, len);
	free(sites);
	return rc;
}

/* `posture` is the museum's after an alert ended (other campaigns may
 * keep it raised); ignored for an active one. */
static void send_site_alert(struct patrelay *p, const struct pat_alert *a,
			    const char *site, bool active, int posture)
{
	Vigie__V1__SiteAlert m = VIGIE__V1__SITE_ALERT__INIT;
	char id[VIGIE_ID_MAX + 16], topic[VIGIE_TOPIC_MAX], title[200];
	uint8_t *buf;
	size_t len;

	if (vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_ALERT, site,
			      NULL))
		return;
	if (active)
		snprintf(id, sizeof(id), "%s-v%u", a->id, a->version);
	else
		snprintf(id, sizeof(id), "%s-end", a->id);
	snprintf(title, sizeof(title), "%s: %s",
		 active ? "Pattern alert" : "Pattern ended", a->rule->title);
	vigie__relay_utf8_trim(title);
	m.site = (char *)site;
	m.id = id;
	m.time_us = now_us(p);
	m.posture = active                      ? a->rule->posture
		    : posture > POSTURE(NORMAL) ? posture
						: POSTURE(NORMAL);
	m.title = title;
	m.text = active ? (char *)vigie__pat_alert_text(p->e,
							(struct pat_alert *)a)
		 : m.posture > POSTURE(NORMAL)
			 ? "The campaign left the rule's window; another one "
			   "keeps this museum's posture raised."
			 : "The campaign left the rule's window: back to the "
			   "normal posture.";
	if (active) {
		m.instructions = (char **)a->rule->instructions;
		m.n_instructions = a->rule->n_instructions;
	}
	m.pattern = (char *)a->id;
	m.priority = a->rule->priority;
	if (vigie_pack(&m.base, &buf, &len))
		return;
	p->site_alerts++;
	p->h.emit(p->h.ud, PATRELAY_ALERT, topic, buf, len, false);
}

static void send_dispatch(struct patrelay *p, const struct pat_alert *a,
			  const struct pat_disp *d)
{
	const struct pat_rules *r = vigie__pat_rules(p->e);
	const struct esc_dispatch *ed = &d->esc.d[0];
	Vigie__V1__Dispatch m = VIGIE__V1__DISPATCH__INIT;
	char id[VIGIE_ID_MAX + 16], topic[VIGIE_TOPIC_MAX];
	char names[300], plan[600];
	size_t pos = 0;
	uint8_t *buf;
	size_t len;

	if (vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_DISPATCH,
			      ed->post, NULL))
		return;
	snprintf(id, sizeof(id), "%s-v%u", a->id, d->version);
	names[0] = plan[0] = '\0';
	for (size_t i = 0; i < a->n_sites; i++)
		vigie_appendf(names, sizeof(names), &pos, "%s%s", i ? ", " : "",
			      r->sites[a->sites[i]].name);
	vigie__relay_utf8_trim(names);
	pos = 0;
	for (size_t i = 0; i < a->rule->n_instructions; i++)
		vigie_appendf(plan, sizeof(plan), &pos, "%s%s", i ? "; " : "",
			      a->rule->instructions[i]);
	vigie__relay_utf8_trim(plan);
	m.id = id;
	m.incident = (char *)a->id;
	m.post = (char *)ed->post;
	m.site = a->n_sites == 1 ? r->sites[a->sites[0]].id : "";
	m.site_name = names;
	m.kind = a->n_members ? a->members[a->n_members - 1].kind : 0;
	m.priority = a->rule->priority;
	m.first_event_us = a->first_us;
	m.sent_us = now_us(p);
	/* The version as the level: a post keeps the newest only. */
	m.level = d->version;
	m.level_name = "pattern";
	m.attempt = ed->attempts;
	m.action_plan = plan;
	m.text = (char *)vigie__pat_alert_text(p->e, (struct pat_alert *)a);
	m.pattern = (char *)a->id;
	m.backup_for = (char *)ed->backup_for;
	if (vigie_pack(&m.base, &buf, &len))
		return;
	p->dispatches++;
	p->h.emit(p->h.ud, PATRELAY_DISPATCH, topic, buf, len, false);
}

/* ---- dispatch state ---- */

static void esc_params(const struct patrelay *p, const struct pat_disp *d,
		       struct esc_params *ep)
{
	ep->ladder = &d->ladder;
	ep->posts = p->h.posts;
	ep->clock = p->h.clock;
	ep->resend_ms = p->h.cfg->resend_ms;
	ep->resend_max_ms = p->h.cfg->resend_max_ms;
}

static void disp_ladder(struct pat_disp *d)
{
	memset(&d->ladder, 0, sizeof(d->ladder));
	d->ladder.n = 1;
	d->ladder.police = 0;
	d->ladder.levels[0].name = "pattern";
	d->ladder.levels[0].post = d->post;
	d->ladder.levels[0].ack_deadline_ms = ACK_DEADLINE_MS;
}

static struct pat_ext *ext_of(struct pat_alert *a)
{
	if (!a->ud)
		a->ud = calloc(1, sizeof(struct pat_ext));
	return a->ud;
}

static void ext_free(struct pat_alert *a)
{
	struct pat_ext *x = a->ud;

	if (!x)
		return;
	free(x->d);
	free(x->msg);
	free(x);
	a->ud = NULL;
}

static struct pat_disp *disp_get(struct pat_ext *x, const char *post, bool add)
{
	for (size_t i = 0; i < x->n; i++)
		if (strcmp(x->d[i].post, post) == 0)
			return &x->d[i];
	if (!add)
		return NULL;
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 4;
		struct pat_disp *d = realloc(x->d, cap * sizeof(*d));

		if (!d)
			return NULL;
		x->d = d;
		x->cap = cap;
		/* The ladders point at their own post names. */
		for (size_t i = 0; i < x->n; i++)
			x->d[i].ladder.levels[0].post = x->d[i].post;
	}
	memset(&x->d[x->n], 0, sizeof(x->d[x->n]));
	snprintf(x->d[x->n].post, sizeof(x->d[x->n].post), "%s", post);
	disp_ladder(&x->d[x->n]);
	return &x->d[x->n++];
}

static void apply(struct patrelay *p, const struct pat_alert *a,
		  struct pat_disp *d, const struct esc_actions *acts)
{
	char id[VIGIE_ID_MAX + 16];

	if (!acts->n)
		return;
	put_disp(p, a, d);
	snprintf(id, sizeof(id), "%s-v%u", a->id, d->version);
	for (size_t i = 0; i < acts->n; i++) {
		const struct esc_action *ac = &acts->a[i];

		switch (ac->type) {
		case ESC_NOTIFY:
			send_dispatch(p, a, d);
			audit(p, a->id, "dispatch",
			      "dispatch %s to post %s%s%s%s", id, ac->post,
			      ac->from_post ? " (backup of " : "",
			      ac->from_post ? ac->from_post : "",
			      ac->from_post ? ", offline)" : "");
			break;
		case ESC_RESEND:
		case ESC_REDIRECT:
			send_dispatch(p, a, d);
			audit(p, a->id,
			      ac->type == ESC_RESEND ? "resend" : "redirect",
			      "dispatch %s %s post %s, attempt %u", id,
			      ac->type == ESC_RESEND ? "re-sent to"
						     : "redirected to",
			      ac->post, ac->attempt);
			break;
		case ESC_ESCALATE:
		default:
			break;
		}
	}
}

/* ---- the engine's callbacks ---- */

/* A campaign opened or grew. The retained alert, its row and the audit
 * follow every change; the posts and the museums in scope are told when it
 * opens and whenever it reaches another museum (a new version each post
 * acknowledges), not at every incident of the same museums: an unacked
 * dispatch's re-sends carry the newest text anyway. */
static void changed(struct patrelay *p, struct pat_alert *a, bool is_new)
{
	const struct pat_rules *r = vigie__pat_rules(p->e);
	const char *posts[MAX_POSTS];
	char topic[VIGIE_TOPIC_MAX];
	struct pat_ext *x = ext_of(a);
	uint32_t *scope = NULL;
	size_t n_scope = 0, n_posts, len, snap_len;
	uint8_t *msg, *snap, *row;
	bool spread;

	if (!x || vigie__pat_scope(p->e, a, &scope, &n_scope)) {
		vigie_log_error("pattern %s: out of memory, not published",
				a->id);
		return;
	}
	spread = is_new || a->n_sites > x->sites_told;
	n_posts = scope_posts(p, a, scope, n_scope, posts);
	if (pattern_msg(p, a, posts, n_posts, true, &msg, &len) ||
	    vigie__pat_snap_alert(p->e, a, &snap, &snap_len)) {
		vigie_log_error("pattern %s: cannot encode", a->id);
		free(scope);
		return;
	}
	/* Row: the PatternAlert (for `vigie-relay patterns` and the
	 * reconnections) then the engine's snapshot. */
	row = malloc(10 + len + snap_len);
	if (row) {
		size_t n = 0, v = len;

		do {
			row[n++] =
				(uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
			v >>= 7;
		} while (v);
		memcpy(row + n, msg, len);
		memcpy(row + n + len, snap, snap_len);
		put_row(p, NS_ALERT, a->id, row, n + len + snap_len);
	}
	free(snap);
	free(x->msg);
	x->msg = msg;
	x->len = len;
	audit(p, a->id, is_new ? "pattern" : "pattern-grown",
	      "%s (version %u, %u incident(s) at %zu museum(s), %zu museum(s) "
	      "in scope, %zu post(s)%s): %s",
	      a->rule->title, a->version, a->n_total, a->n_sites, n_scope,
	      n_posts, spread ? "" : "; same museums, posts not told again",
	      vigie__pat_alert_text(p->e, a));
	if (vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_PATTERN, a->id,
			      NULL) == 0) {
		uint8_t *copy = malloc(len);

		if (copy) {
			memcpy(copy, msg, len);
			p->h.emit(p->h.ud, PATRELAY_PATTERN, topic, copy, len,
				  true);
		}
	}
	if (!spread) {
		free(scope);
		return;
	}
	x->sites_told = a->n_sites;
	for (size_t i = 0; i < n_scope; i++)
		send_site_alert(p, a, r->sites[scope[i]].id, true, 0);
	/* Each post in scope gets this version, re-sent until it acks. */
	for (size_t i = 0; i < n_posts; i++) {
		struct pat_disp *d = disp_get(x, posts[i], true);
		struct esc_actions acts = {.n = 0};
		struct esc_params ep;

		if (!d)
			continue;
		d->version = a->version;
		d->acked_by[0] = '\0';
		d->acked_us = 0;
		esc_params(p, d, &ep);
		vigie__esc_start(&d->esc, &ep, false, &acts);
		apply(p, a, d, &acts);
	}
	free(scope);
}

static void ended(struct patrelay *p, struct pat_alert *a)
{
	const struct pat_rules *r = vigie__pat_rules(p->e);
	struct pat_ext *x = a->ud;
	char topic[VIGIE_TOPIC_MAX], key[2 * VIGIE_ID_MAX + 2];
	uint32_t *scope = NULL;
	size_t n_scope = 0, len;
	uint8_t *msg;

	audit(p, a->id, "pattern-ended",
	      "%s: no new incident within the rule's window; %u incident(s) "
	      "at %zu museum(s) in all",
	      a->rule->title, a->n_total, a->n_sites);
	vigie__store_del_pattern(p->h.store, NS_ALERT, a->id);
	for (size_t i = 0; x && i < x->n; i++) {
		vigie__esc_stop(&x->d[i].esc);
		disp_key(key, sizeof(key), a->id, x->d[i].post);
		vigie__store_del_pattern(p->h.store, NS_DISP, key);
	}
	/* Retained, inactive: dashboards show it ended. */
	if (pattern_msg(p, a, NULL, 0, false, &msg, &len) == 0) {
		if (vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_PATTERN,
				      a->id, NULL) == 0)
			p->h.emit(p->h.ud, PATRELAY_PATTERN, topic, msg, len,
				  true);
		else
			free(msg);
	}
	if (vigie__pat_scope(p->e, a, &scope, &n_scope) == 0) {
		/* It is out of the engine's campaigns already: what the
		 * others give each museum is what it keeps. */
		for (size_t i = 0; i < n_scope; i++)
			send_site_alert(p, a, r->sites[scope[i]].id, false,
					vigie__patrelay_posture(
						p, r->sites[scope[i]].id));
		free(scope);
	}
	ext_free(a);
}

static void on_alert(void *ud, struct pat_alert *a, enum pat_change what)
{
	struct patrelay *p = ud;

	p->gen++;
	if (what == PAT_ENDED)
		ended(p, a);
	else
		changed(p, a, what == PAT_NEW);
}

static void on_expired(void *ud, const char *incident)
{
	struct patrelay *p = ud;

	vigie__store_del_pattern(p->h.store, NS_INC, incident);
}

/* ---- feeding ---- */

static bool has_key(const struct incident *inc, const char *key)
{
	for (size_t i = 0; i < inc->n_attrs; i++)
		if (strcmp(inc->attrs[i].key, key) == 0)
			return true;
	return false;
}

void vigie__patrelay_incident(struct patrelay *p, const struct incident *inc,
			      const struct zone_info *zone)
{
	const char *keys[INC_MAX_ATTRS + 3], *values[INC_MAX_ATTRS + 3];
	struct pat_input in;
	size_t n = 0;
	uint8_t *buf;
	size_t len;
	int rc;

	if (!p || !inc->site[0])
		return; /* a post's trouble concerns no museum */
	memset(&in, 0, sizeof(in));
	in.id = inc->id;
	in.site = inc->site;
	in.zone = inc->zone;
	in.kind = inc->kind;
	in.state = inc->state;
	in.priority = inc->priority;
	in.confirmed = inc->confirmed;
	in.trouble = inc->trouble;
	in.first_us = inc->first_event_us;
	in.last_us = inc->last_event_us;
	for (size_t i = 0; i < inc->n_attrs && n < INC_MAX_ATTRS; i++) {
		keys[n] = inc->attrs[i].key;
		values[n] = inc->attrs[i].value;
		n++;
	}
	/* Where it happened, from the zone, unless the event said. */
	if (zone && zone->facade && *zone->facade && !has_key(inc, "facade")) {
		keys[n] = "facade";
		values[n++] = zone->facade;
	}
	if (zone && zone->floor && *zone->floor && !has_key(inc, "floor")) {
		keys[n] = "floor";
		values[n++] = zone->floor;
	}
	if (zone && zone->kind && *zone->kind && !has_key(inc, "zone_kind")) {
		keys[n] = "zone_kind";
		values[n++] = zone->kind;
	}
	in.attr_keys = keys;
	in.attr_values = values;
	in.n_attrs = n;
	rc = vigie__pat_feed(p->e, &in, now_us(p));
	if (rc < 0) {
		vigie_log_error(
			"pattern tracker: incident %s not evaluated: %s",
			inc->id, vigie_strerror(rc));
		return;
	}
	if (rc == PAT_FEED_LATE)
		vigie_log_debug(
			"pattern tracker: incident %s is older than the "
			"windows: not evaluated",
			inc->id);
	else if (rc == PAT_FEED_FUTURE)
		vigie_log_warn(
			"pattern tracker: incident %s has event times "
			"ahead of this clock (a node's clock is wrong?): "
			"not evaluated",
			inc->id);
	if (rc != PAT_FEED_CHANGED)
		return;
	if (vigie__pat_snap_record(p->e, inc->id, &buf, &len) == 0)
		put_row(p, NS_INC, inc->id, buf, len);
	put_meta(p);
}

void vigie__patrelay_tick(struct patrelay *p)
{
	uint64_t now;
	struct pat_alert *a;
	size_t pos;

	if (!p)
		return;
	now = now_us(p);
	for (a = vigie__pat_alert_first(p->e, &pos); a;
	     a = vigie__pat_alert_next(p->e, a, &pos)) {
		struct pat_ext *x = a->ud;

		for (size_t i = 0; x && i < x->n; i++) {
			struct pat_disp *d = &x->d[i];
			uint64_t due = vigie__esc_next_due(&d->esc);
			struct esc_actions acts = {.n = 0};
			struct esc_params ep;

			if (!due || due > now)
				continue;
			esc_params(p, d, &ep);
			vigie__esc_tick(&d->esc, &ep, &acts);
			apply(p, a, d, &acts);
		}
	}
}

void vigie__patrelay_connected(struct patrelay *p)
{
	char topic[VIGIE_TOPIC_MAX];
	struct pat_alert *a;
	size_t pos;

	if (!p)
		return;
	for (a = vigie__pat_alert_first(p->e, &pos); a;
	     a = vigie__pat_alert_next(p->e, a, &pos)) {
		struct pat_ext *x = a->ud;

		if (!x)
			continue;
		if (x->msg &&
		    vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_PATTERN,
				      a->id, NULL) == 0) {
			uint8_t *copy = malloc(x->len);

			if (copy) {
				memcpy(copy, x->msg, x->len);
				p->h.emit(p->h.ud, PATRELAY_PATTERN, topic,
					  copy, x->len, true);
			}
		}
		for (size_t i = 0; i < x->n; i++) {
			struct esc_actions acts = {.n = 0};
			struct esc_params ep;

			esc_params(p, &x->d[i], &ep);
			vigie__esc_resend_all(&x->d[i].esc, &ep, &acts);
			apply(p, a, &x->d[i], &acts);
		}
	}
}

/* "<pattern>-v<version>": the version, or 0. */
static uint32_t version_of(const char *dispatch, const char *pattern)
{
	size_t n = strlen(pattern);
	char *end;
	unsigned long v;

	if (strncmp(dispatch, pattern, n) != 0 || dispatch[n] != '-' ||
	    dispatch[n + 1] != 'v' || dispatch[n + 2] < '0' ||
	    dispatch[n + 2] > '9')
		return 0;
	v = strtoul(dispatch + n + 2, &end, 10);
	return *end || v > UINT32_MAX ? 0 : (uint32_t)v;
}

bool vigie__patrelay_ack(struct patrelay *p, const char *post,
			 const Vigie__V1__Ack *ack)
{
	char pattern[VIGIE_ID_MAX + 1], by[VIGIE_ID_MAX + 1];
	struct pat_alert *a;
	struct pat_ext *x;
	struct pat_disp *d = NULL;
	uint32_t version = 0;

	if (!p)
		return false;
	snprintf(pattern, sizeof(pattern), "%s", ack->incident);
	if (!pattern[0] && ack->dispatch[0]) {
		const char *dash = strrchr(ack->dispatch, '-');
		size_t n = dash ? (size_t)(dash - ack->dispatch) : 0;

		if (n && n <= VIGIE_ID_MAX)
			snprintf(pattern, sizeof(pattern), "%.*s", (int)n,
				 ack->dispatch);
	}
	a = vigie__pat_alert_find(p->e, pattern);
	if (!a)
		return false; /* an incident's (or an ended pattern's) */
	x = a->ud;
	if (ack->dispatch[0])
		version = version_of(ack->dispatch, a->id);
	for (size_t i = 0; x && i < x->n && !d; i++)
		if (strcmp(x->d[i].post, post) == 0 ||
		    strcmp(x->d[i].esc.d[0].post, post) == 0)
			d = &x->d[i];
	if (!d) {
		vigie_log_info("pattern %s: ack from post %s, which it was not "
			       "dispatched to",
			       a->id, post);
		return true;
	}
	if (!vigie__relay_utf8_valid(ack->by)) {
		vigie_log_warn("pattern %s: ack from post %s with a name that "
			       "is not UTF-8: ignored",
			       a->id, post);
		return true;
	}
	if (version && version < d->version) {
		/* The post saw an older version: the newer one still needs
		 * a human. */
		vigie_log_info("pattern %s: post %s acknowledged version %u; "
			       "version %u is still out",
			       a->id, post, version, d->version);
		return true;
	}
	vigie__relay_utf8_copy(by, sizeof(by), *ack->by ? ack->by : "unknown");
	for (char *c = by; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
	if (!vigie__esc_ack(&d->esc))
		return true; /* acknowledged already */
	p->acks++;
	snprintf(d->acked_by, sizeof(d->acked_by), "%s", by);
	d->acked_us = now_us(p);
	put_disp(p, a, d);
	audit(p, a->id, "acknowledged",
	      "version %u acknowledged by %s at post %s", d->version, by, post);
	return true;
}

static int compute_postures(struct patrelay *p)
{
	const struct pat_rules *r = vigie__pat_rules(p->e);
	struct pat_alert *a;
	size_t pos;

	if (p->n_posture < r->n_sites) {
		uint8_t *v = realloc(p->posture, r->n_sites);

		if (!v)
			return VIGIE_ENOMEM;
		p->posture = v;
		p->n_posture = r->n_sites;
	}
	memset(p->posture, 0, p->n_posture);
	for (a = vigie__pat_alert_first(p->e, &pos); a;
	     a = vigie__pat_alert_next(p->e, a, &pos)) {
		uint32_t *scope;
		size_t n;

		if (vigie__pat_scope(p->e, a, &scope, &n))
			return VIGIE_ENOMEM;
		for (size_t i = 0; i < n; i++)
			if (p->posture[scope[i]] < a->rule->posture)
				p->posture[scope[i]] =
					(uint8_t)a->rule->posture;
		free(scope);
	}
	p->posture_gen = p->gen;
	return 0;
}

int vigie__patrelay_posture(struct patrelay *p, const char *site)
{
	uint32_t idx;

	if (!p)
		return VIGIE__V1__POSTURE__POSTURE_UNSPECIFIED;
	if (p->posture_gen != p->gen && compute_postures(p))
		return VIGIE__V1__POSTURE__POSTURE_UNSPECIFIED;
	idx = vigie__pat_site(vigie__pat_rules(p->e), site, false);
	if (idx == UINT32_MAX || idx >= p->n_posture)
		return VIGIE__V1__POSTURE__POSTURE_UNSPECIFIED;
	return p->posture[idx];
}

void vigie__patrelay_log_stats(const struct patrelay *p)
{
	struct pat_stats st;

	if (!p)
		return;
	vigie__pat_stats(p->e, &st);
	vigie_log_info(
		"patterns: %" PRIu64 " incident updates, %zu in the "
		"windows, %zu active alert(s) (%" PRIu64 " opened, %" PRIu64
		" grown, %" PRIu64 " ended), %" PRIu64 " dispatches, %" PRIu64
		" site alerts, %" PRIu64 " late, %" PRIu64 " from the future",
		st.fed, st.records, st.alerts, st.alerts_opened,
		st.alerts_grown, st.alerts_ended, p->dispatches, p->site_alerts,
		st.late, st.future);
}

/* ---- open, load, close ---- */

int vigie__patrelay_open(const struct patrelay_host *h, struct patrelay **out)
{
	struct pat_sink sink;
	struct patrelay *p;
	int rc;

	*out = NULL;
	if (!h->cfg->pattern_rules)
		return 0;
	p = calloc(1, sizeof(*p));
	if (!p)
		return VIGIE_ENOMEM;
	p->h = *h;
	sink.alert = on_alert;
	sink.expired = on_expired;
	sink.ud = p;
	rc = vigie__pat_open(h->cfg->pattern_rules, &sink, &p->e);
	if (rc) {
		free(p);
		return rc;
	}
	p->loading = true;
	p->gen = 1; /* postures computed at the first question */
	*out = p;
	return 0;
}

void vigie__patrelay_load_row(struct patrelay *p, const char *ns,
			      const char *key, uint64_t seq, const void *data,
			      size_t len)
{
	struct row *r;

	if (!p || !p->loading)
		return;
	if (seq > p->seq)
		p->seq = seq;
	if (p->n_rows == p->cap_rows) {
		size_t cap = p->cap_rows ? p->cap_rows * 2 : 256;
		struct row *v = realloc(p->rows, cap * sizeof(*v));

		if (!v) {
			p->bad_rows++;
			return;
		}
		p->rows = v;
		p->cap_rows = cap;
	}
	r = &p->rows[p->n_rows];
	snprintf(r->ns, sizeof(r->ns), "%s", ns);
	r->key = strdup(key);
	r->data = malloc(len ? len : 1);
	if (!r->key || !r->data) {
		free(r->key);
		free(r->data);
		p->bad_rows++;
		return;
	}
	if (len)
		memcpy(r->data, data, len);
	r->len = len;
	r->seq = seq;
	p->n_rows++;
}

static uint64_t read_varint(const uint8_t *d, size_t len, size_t *pos)
{
	uint64_t v = 0;

	for (unsigned shift = 0; *pos < len && shift < 64; shift += 7) {
		uint8_t b = d[(*pos)++];

		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	*pos = len + 1; /* bad */
	return 0;
}

static uint64_t field_u64(const char *text, const char *name)
{
	char pat[32];
	const char *f;

	snprintf(pat, sizeof(pat), " %s=", name);
	f = strstr(text, pat);
	return f ? strtoull(f + strlen(pat), NULL, 10) : 0;
}

static void field_str(const char *text, const char *name, char *buf, size_t len,
		      bool rest)
{
	char pat[32];
	const char *f;
	size_t n;

	snprintf(pat, sizeof(pat), " %s=", name);
	f = strstr(text, pat);
	buf[0] = '\0';
	if (!f)
		return;
	f += strlen(pat);
	n = rest ? strlen(f) : strcspn(f, " ");
	if (n >= len)
		n = len - 1;
	memcpy(buf, f, n);
	buf[n] = '\0';
	if (strcmp(buf, "-") == 0)
		buf[0] = '\0';
}

static void load_alert(struct patrelay *p, struct row *r)
{
	size_t pos = 0;
	uint64_t mlen = read_varint(r->data, r->len, &pos);
	struct pat_alert *a;
	struct pat_ext *x;
	int rc;

	if (pos > r->len || mlen > r->len - pos) {
		rc = VIGIE_EDECODE;
	} else {
		rc = vigie__pat_restore_alert(p->e, r->data + pos + mlen,
					      r->len - pos - mlen, &a);
	}
	if (rc == 0) {
		x = ext_of(a);
		if (x) {
			/* Its last change was told as far as it had to be. */
			x->sites_told = a->n_sites;
			x->msg = malloc(mlen ? mlen : 1);
			if (x->msg) {
				memcpy(x->msg, r->data + pos, mlen);
				x->len = mlen;
			}
		}
		return;
	}
	vigie_log_warn("pattern %s: stored state %s: dropped", r->key,
		       rc == VIGIE_ENOTFOUND ? "of a rule no longer configured"
					     : "does not decode");
	vigie__store_del_pattern(p->h.store, NS_ALERT, r->key);
	p->bad_rows++;
}

static void load_disp(struct patrelay *p, struct row *r)
{
	char pattern[VIGIE_ID_MAX + 1], post[VIGIE_ID_MAX + 1];
	char text[1100], cur[VIGIE_ID_MAX + 1], backup[VIGIE_ID_MAX + 1];
	const char *slash = strchr(r->key, '/');
	struct pat_alert *a = NULL;
	struct pat_ext *x;
	struct pat_disp *d;
	struct esc_dispatch *ed;

	if (slash && (size_t)(slash - r->key) <= VIGIE_ID_MAX) {
		snprintf(pattern, sizeof(pattern), "%.*s",
			 (int)(slash - r->key), r->key);
		a = vigie__pat_alert_find(p->e, pattern);
	}
	if (!a || r->len >= sizeof(text) - 1) {
		vigie__store_del_pattern(p->h.store, NS_DISP, r->key);
		return;
	}
	text[0] = ' ';
	memcpy(text + 1, r->data, r->len);
	text[r->len + 1] = '\0';
	field_str(text, "post", post, sizeof(post), false);
	x = ext_of(a);
	d = x && vigie_id_valid(post) ? disp_get(x, post, true) : NULL;
	if (!d)
		return;
	ed = &d->esc.d[0];
	d->version = (uint32_t)field_u64(text, "version");
	d->esc.active = field_u64(text, "active") != 0;
	d->esc.acked = field_u64(text, "acked") != 0;
	d->esc.level = 0;
	ed->sent = field_u64(text, "sent") != 0;
	ed->attempts = (uint32_t)field_u64(text, "attempts");
	ed->first_us = field_u64(text, "first");
	ed->last_us = field_u64(text, "last");
	ed->next_us = field_u64(text, "next");
	d->acked_us = field_u64(text, "acked_us");
	field_str(text, "current", cur, sizeof(cur), false);
	field_str(text, "backup_for", backup, sizeof(backup), false);
	field_str(text, "acked_by", d->acked_by, sizeof(d->acked_by), true);
	snprintf(ed->post, sizeof(ed->post), "%s", cur[0] ? cur : post);
	snprintf(ed->backup_for, sizeof(ed->backup_for), "%s", backup);
}

static int by_seq(const void *pa, const void *pb)
{
	const struct row *a = pa, *b = pb;

	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

int vigie__patrelay_loaded(struct patrelay *p)
{
	size_t records = 0, alerts = 0, late = 0;
	struct pat_stats st;

	if (!p)
		return 0;
	if (p->n_rows)
		qsort(p->rows, p->n_rows, sizeof(*p->rows), by_seq);
	for (size_t i = 0; i < p->n_rows; i++)
		if (strcmp(p->rows[i].ns, NS_META) == 0 &&
		    vigie__pat_restore_meta(p->e, p->rows[i].data,
					    p->rows[i].len))
			p->bad_rows++;
	for (size_t i = 0; i < p->n_rows; i++)
		if (strcmp(p->rows[i].ns, NS_ALERT) == 0) {
			load_alert(p, &p->rows[i]);
			alerts++;
		}
	for (size_t i = 0; i < p->n_rows; i++) {
		struct row *r = &p->rows[i];
		int rc;

		if (strcmp(r->ns, NS_INC) != 0)
			continue;
		rc = vigie__pat_restore_record(p->e, r->data, r->len);
		if (rc == 0) {
			records++;
			continue;
		}
		if (rc == VIGIE_ENOMEM)
			return rc;
		if (rc == VIGIE_ENOTFOUND)
			late++;
		else
			p->bad_rows++;
		vigie__store_del_pattern(p->h.store, NS_INC, r->key);
	}
	for (size_t i = 0; i < p->n_rows; i++)
		if (strcmp(p->rows[i].ns, NS_DISP) == 0)
			load_disp(p, &p->rows[i]);
	for (size_t i = 0; i < p->n_rows; i++) {
		free(p->rows[i].key);
		free(p->rows[i].data);
	}
	free(p->rows);
	p->rows = NULL;
	p->n_rows = p->cap_rows = 0;
	p->loading = false;
	/* What the restored watermark says is over ends now. */
	vigie__pat_restore_done(p->e);
	vigie__pat_stats(p->e, &st);
	vigie_log_info("pattern tracker: %zu rule(s), %zu incident(s) in the "
		       "windows, %zu active alert(s) resumed%s",
		       vigie__pat_rules(p->e)->n_rules, records, st.alerts,
		       p->bad_rows
			       ? " (some stored state unreadable, see above)"
			       : "");
	(void)alerts;
	(void)late;
	return 0;
}

void vigie__patrelay_close(struct patrelay *p)
{
	struct pat_alert *a;
	size_t pos;

	if (!p)
		return;
	for (a = vigie__pat_alert_first(p->e, &pos); a;
	     a = vigie__pat_alert_next(p->e, a, &pos))
		ext_free(a);
	vigie__pat_close(p->e);
	free(p->posture);
	for (size_t i = 0; i < p->n_rows; i++) {
		free(p->rows[i].key);
		free(p->rows[i].data);
	}
	free(p->rows);
	free(p);
}

/* ---- `vigie-relay patterns` ---- */

static const char *posture_name(int p)
{
	switch (p) {
	case VIGIE__V1__POSTURE__POSTURE_NORMAL:
		return "normal";
	case VIGIE__V1__POSTURE__POSTURE_HEIGHTENED:
		return "heightened";
	case VIGIE__V1__POSTURE__POSTURE_CRITICAL:
		return "critical";
	default:
		return "unspecified";
	}
}

static void print_alert(sqlite3 *db, const Vigie__V1__PatternAlert *m,
			FILE *out)
{
	sqlite3_stmt *s = NULL;
	char t1[40], t2[40], t3[40];

	fprintf(out, "pattern %s  (rule %s)\n", m->id, m->rule);
	fprintf(out, "  %s\n", m->title);
	fprintf(out, "  priority %s, posture %s%s%s\n",
		vigie_priority_name(m->priority), posture_name(m->posture),
		*m->region ? ", region " : "", m->region);
	fprintf(out, "  first %s, last %s, updated %s\n",
		vigie_clock_format_us(m->first_us, t1, sizeof(t1)),
		vigie_clock_format_us(m->last_us, t2, sizeof(t2)),
		vigie_clock_format_us(m->updated_us, t3, sizeof(t3)));
	fprintf(out, "  museums (%zu):", m->n_sites);
	for (size_t i = 0; i < m->n_sites; i++)
		fprintf(out, "%s %s", i ? "," : "", m->sites[i]);
	fprintf(out, "\n  incidents (%zu listed):", m->n_incidents);
	for (size_t i = 0; i < m->n_incidents; i++)
		fprintf(out, "%s %s", i ? "," : "", m->incidents[i]);
	fprintf(out, "\n  why: %s\n", m->explanation);
	for (size_t i = 0; i < m->n_instructions; i++)
		fprintf(out, "  instruction: %s\n", m->instructions[i]);
	if (sqlite3_prepare_v2(
		    db,
		    "SELECT data FROM pattern_state WHERE ns = 'disp'"
		    " AND key >= ?1 || '/' AND key < ?1 || '0'"
		    " ORDER BY key",
		    -1, &s, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
	while (sqlite3_step(s) == SQLITE_ROW) {
		char text[1100], post[VIGIE_ID_MAX + 1], by[VIGIE_ID_MAX + 1];
		int n = sqlite3_column_bytes(s, 0);

		if (n <= 0 || (size_t)n >= sizeof(text) - 1)
			continue;
		text[0] = ' ';
		memcpy(text + 1, sqlite3_column_blob(s, 0), (size_t)n);
		text[n + 1] = '\0';
		field_str(text, "post", post, sizeof(post), false);
		field_str(text, "acked_by", by, sizeof(by), true);
		if (field_u64(text, "acked"))
			fprintf(out,
				"  post %s: version %" PRIu64
				" acknowledged by %s\n",
				post, field_u64(text, "version"), by);
		else
			fprintf(out,
				"  post %s: version %" PRIu64
				" NOT acknowledged (%" PRIu64 " attempt(s))\n",
				post, field_u64(text, "version"),
				field_u64(text, "attempts"));
	}
	sqlite3_finalize(s);
}

int vigie__patterns_print(const char *path, FILE *out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int rc, n = 0;

	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "%s: cannot open: %s\n", path,
			db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return VIGIE_EIO;
	}
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_prepare_v2(db,
			       "SELECT key, data FROM pattern_state WHERE ns ="
			       " 'alert' ORDER BY seq",
			       -1, &s, NULL) != SQLITE_OK) {
		/* A database from before the tracker: nothing to list. */
		fprintf(out, "no active pattern\n");
		sqlite3_close(db);
		return 0;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const uint8_t *d = sqlite3_column_blob(s, 1);
		size_t len = (size_t)sqlite3_column_bytes(s, 1), pos = 0;
		uint64_t mlen = d ? read_varint(d, len, &pos) : 0;
		Vigie__V1__PatternAlert *m = NULL;

		if (d && pos <= len && mlen <= len - pos)
			m = vigie__v1__pattern_alert__unpack(NULL, mlen,
							     d + pos);
		if (!m) {
			fprintf(out, "pattern %s: stored state unreadable\n",
				(const char *)sqlite3_column_text(s, 0));
			continue;
		}
		if (n++)
			fputc('\n', out);
		print_alert(db, m, out);
		vigie__v1__pattern_alert__free_unpacked(m, NULL);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
		sqlite3_close(db);
		return VIGIE_EIO;
	}
	if (!n)
		fprintf(out, "no active pattern\n");
	sqlite3_close(db);
	return 0;
}
