/* The pattern tracker as a pure module: every rule type, filters, windows
 * and their expiry, the absence step, modus-operandi similarity, one alert
 * that grows per campaign, late and future incidents, the rules file's
 * errors, and state that survives a restart (snapshots). Time is the
 * incidents' own event time: a fake "now" only bounds the future. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "patterns.h"
#include "relay.h"
#include "vigie/codec.h"
#include "vigie/error.h"

#define K(x)   VIGIE__V1__EVENT_KIND__KIND_##x
#define P(x)   VIGIE__V1__PRIORITY__PRIORITY_##x
#define I(x)   VIGIE__V1__INCIDENT_STATE__INCIDENT_##x
#define SEC    1000000ull
#define MINUTE (60 * SEC)
#define HOUR   (60 * MINUTE)
#define DAY    (24 * HOUR)
/* 2025-09-01T00:00:00Z */
#define T0       1756684800000000ull
#define MAX_SEEN 64

static char dir[64];

struct seen {
	char id[PAT_ID_MAX + 1];
	enum pat_change what;
	uint32_t version, n_total;
	size_t n_sites;
	char explanation[PAT_EXPLANATION_MAX];
};

struct world {
	struct pat_rules *rules;
	struct pat_engine *e;
	struct seen seen[MAX_SEEN];
	size_t n_seen;
	size_t expired;
	unsigned seq;
};

static const struct pat_site_info sites[] = {
	{"louvre", "Louvre", "ile-de-france", 48.8606, 2.3376, true},
	{"mnhn", "Natural History Museum", "ile-de-france", 48.8440, 2.3560,
	 true},
	{"orsay", "Orsay", "ile-de-france", 48.8600, 2.3266, true},
	{"versailles", "Versailles", "ile-de-france", 48.8049, 2.1204, true},
	{"limoges", "Adrien Dubouche", "nouvelle-aquitaine", 45.8336, 1.2611,
	 true},
	{"langres", "Langres", "grand-est", 47.8625, 5.3331, true},
	{"lyon", "Lyon fine arts", "auvergne-rhone-alpes", 45.7670, 4.8336,
	 true},
	{"nowhere", "No location", "", 0, 0, false},
};

static void on_alert(void *ud, struct pat_alert *a, enum pat_change what)
{
	struct world *w = ud;
	struct seen *s;

	assert_true(w->n_seen < MAX_SEEN);
	s = &w->seen[w->n_seen++];
	snprintf(s->id, sizeof(s->id), "%s", a->id);
	s->what = what;
	s->version = a->version;
	s->n_total = a->n_total;
	s->n_sites = a->n_sites;
	snprintf(s->explanation, sizeof(s->explanation), "%s",
		 vigie__pat_alert_text(w->e, a));
}

static void on_expired(void *ud, const char *incident)
{
	struct world *w = ud;

	(void)incident;
	w->expired++;
}

static char *write_rules(const char *name, const char *text)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int load(struct world *w, const char *text)
{
	static const char *const posts[] = {"pp-paris", "pp-lyon"};
	struct pat_world pw = {sites, sizeof(sites) / sizeof(sites[0]), posts,
			       2};
	struct pat_sink sink = {on_alert, on_expired, w};
	char err[512];
	int rc;

	rc = vigie__patrules_load(write_rules("rules.yaml", text), &pw,
				  &w->rules, err, sizeof(err));
	if (rc) {
		print_error("%s\n", err);
		return rc;
	}
	return vigie__pat_open(w->rules, &sink, &w->e);
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));

	assert_non_null(w);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	vigie__pat_close(w->e);
	vigie__patrules_free(w->rules);
	free(w);
	return 0;
}

struct inc {
	const char *site, *zone;
	int kind;
	uint64_t first, last;
	bool trouble, confirmed;
	int state, priority;
	const char *attrs[12]; /* key, value, ... NULL */
	const char *id;        /* NULL: a new one */
};

static char last_id[PAT_ID_MAX + 1];

static int feed(struct world *w, const struct inc *i)
{
	const char *keys[6], *values[6];
	struct pat_input in;
	size_t n = 0;

	memset(&in, 0, sizeof(in));
	if (i->id) {
		if (i->id != last_id)
			snprintf(last_id, sizeof(last_id), "%s", i->id);
	} else {
		snprintf(last_id, sizeof(last_id), "%s-%u", i->site, ++w->seq);
	}
	in.id = last_id;
	in.site = i->site;
	in.zone = i->zone;
	in.kind = i->kind;
	in.state = i->state ? i->state : I(OPEN);
	in.priority = i->priority ? i->priority : P(HIGH);
	in.confirmed = i->confirmed;
	in.trouble = i->trouble;
	in.first_us = i->first;
	in.last_us = i->last ? i->last : i->first;
	for (; n < 6 && i->attrs[2 * n]; n++) {
		keys[n] = i->attrs[2 * n];
		values[n] = i->attrs[2 * n + 1];
	}
	in.attr_keys = keys;
	in.attr_values = values;
	in.n_attrs = n;
	return vigie__pat_feed(w->e, &in, T0 + 400 * DAY);
}

static size_t count_what(const struct world *w, enum pat_change what)
{
	size_t n = 0;

	for (size_t i = 0; i < w->n_seen; i++)
		n += w->seen[i].what == what;
	return n;
}

/* ---- the rules file ---- */

static void expect_error(const char *text, const char *needle)
{
	struct pat_rules *r = NULL;
	char err[512];
	int rc;

	rc = vigie__patrules_load(write_rules("bad.yaml", text), NULL, &r, err,
				  sizeof(err));
	if (rc != VIGIE_ECONFIG || !strstr(err, needle))
		print_error("got \"%s\", wanted \"%s\"\n", err, needle);
	assert_int_equal(rc, VIGIE_ECONFIG);
	assert_non_null(strstr(err, needle));
	assert_null(r);
}

static void test_rules_file_errors(void **state)
{
	(void)state;
	expect_error("rules:\n  - id: a\n    type: counting\n    window: 1h\n",
		     "bad.yaml:3: rules[0].type: expected count, "
		     "distinct_sites, sequence or similar_mo");
	expect_error("rules:\n  - id: a\n    type: count\n    window: 1h\n"
		     "    min: 2\n    match: {kind: [glass_brake]}\n",
		     "bad.yaml:6: rules[0].match.kind[0]: unknown event kind "
		     "\"glass_brake\"");
	expect_error("rules:\n  - id: a\n    type: count\n    min: 2\n",
		     "bad.yaml:2: rules[0].window: missing required key");
	expect_error("rules:\n  - id: s\n    type: sequence\n    within: 1h\n"
		     "    steps:\n      - absent: restore\n        for: 2m\n"
		     "      - match: {kind: intrusion}\n",
		     "an absent step follows a step that matches");
	expect_error("rules:\n  - id: s\n    type: sequence\n    within: 1h\n"
		     "    steps:\n      - match: {kind: vehicle}\n",
		     "at least two steps");
	expect_error("rules:\n  - id: d\n    type: distinct_sites\n"
		     "    window: 60d\n    min_sites: 2\n"
		     "    match: {site: [atlantis]}\n",
		     "bad.yaml:6: rules[0].match.site[0]: site \"atlantis\" is "
		     "not in the relay configuration");
	expect_error("rules:\n  - id: d\n    type: distinct_sites\n"
		     "    window: 60d\n    min: 2\n",
		     "bad.yaml:5: rules[0].min: not a key of this rule type");
	expect_error("rules:\n  - id: c\n    type: count\n    window: 1h\n"
		     "    min: 2\n    alert: {posts: [pp-nowhere]}\n",
		     "post \"pp-nowhere\" is not in the relay's posts");
	expect_error("rules:\n  - id: c\n    type: count\n    window: 1h\n"
		     "    min: 2\n    colour: red\n",
		     "bad.yaml:6: rules[0].colour");
	expect_error("utc_offset: paris\nrules: []\n",
		     "bad.yaml:1: utc_offset: expected +HH:MM");
	expect_error("rules:\n  - id: m\n    type: similar_mo\n    window: 1d\n"
		     "    attributes: {tool: heavy}\n",
		     "bad.yaml:5: rules[0].attributes.tool: expected a number");
}

/* ---- count ---- */

static const char count_rules[] =
	"rules:\n"
	"  - id: perimeter-burst\n"
	"    title: perimeter alarms at one museum\n"
	"    type: count\n"
	"    window: 1h\n"
	"    min: 3\n"
	"    group_by: [site]\n"
	"    match: {kind: [perimeter, vehicle], trouble: false}\n"
	"  - id: recon\n"
	"    title: vehicles stopping at one facade\n"
	"    type: count\n"
	"    window: 14d\n"
	"    min: 3\n"
	"    distinct: day\n"
	"    group_by: [site, facade]\n"
	"    match: {kind: vehicle}\n";

static void test_count_grows_one_alert(void **state)
{
	struct world *w = *state;
	struct inc in = {
		.site = "louvre", .zone = "quai", .kind = K(PERIMETER)};

	assert_int_equal(load(w, count_rules), 0);
	in.first = T0;
	assert_int_equal(feed(w, &in), PAT_FEED_CHANGED);
	in.first = T0 + 10 * MINUTE;
	feed(w, &in);
	assert_int_equal(w->n_seen, 0);
	/* Another museum's alarm is another group. */
	in.site = "orsay";
	in.first = T0 + 20 * MINUTE;
	feed(w, &in);
	assert_int_equal(w->n_seen, 0);
	in.site = "louvre";
	in.first = T0 + 30 * MINUTE;
	feed(w, &in);
	assert_int_equal(w->n_seen, 1);
	assert_int_equal(w->seen[0].what, PAT_NEW);
	assert_int_equal(w->seen[0].n_total, 3);
	assert_int_equal(w->seen[0].version, 1);
	assert_non_null(strstr(w->seen[0].id, "perimeter-burst-20250901-"));
	assert_non_null(strstr(w->seen[0].explanation,
			       "3 incidents matching \"perimeter alarms at one "
			       "museum\" at site=louvre within 1 h"));
	/* The campaign goes on: the same alert grows. */
	in.first = T0 + 50 * MINUTE;
	feed(w, &in);
	assert_int_equal(w->n_seen, 2);
	assert_int_equal(w->seen[1].what, PAT_GROWN);
	assert_string_equal(w->seen[1].id, w->seen[0].id);
	assert_int_equal(w->seen[1].version, 2);
	assert_int_equal(w->seen[1].n_total, 4);
	/* The same incident fed again (updated, same content): nothing. */
	in.id = last_id;
	assert_int_equal(feed(w, &in), PAT_FEED_SAME);
	assert_int_equal(w->n_seen, 2);
}

static void test_count_distinct_days(void **state)
{
	struct world *w = *state;
	struct inc in = {.site = "louvre",
			 .zone = "quai",
			 .kind = K(VEHICLE),
			 .attrs = {"facade", "seine"}};

	assert_int_equal(load(w, count_rules), 0);
	/* Three stops in one day: one day. */
	for (int i = 0; i < 3; i++) {
		in.first = T0 + 8 * DAY + (uint64_t)i * 3 * HOUR;
		feed(w, &in);
	}
	assert_int_equal(count_what(w, PAT_NEW), 0);
	in.first = T0 + 11 * DAY + 22 * HOUR;
	feed(w, &in);
	/* Another facade is another group. */
	in.attrs[1] = "north";
	in.first = T0 + 12 * DAY;
	feed(w, &in);
	assert_int_equal(count_what(w, PAT_NEW), 0);
	in.attrs[1] = "seine";
	in.first = T0 + 15 * DAY + 9 * HOUR;
	feed(w, &in);
	assert_int_equal(count_what(w, PAT_NEW), 1);
	assert_non_null(strstr(w->seen[0].explanation, "on different days"));
	assert_non_null(strstr(w->seen[0].explanation, "facade=seine"));
	assert_int_equal(w->seen[0].n_total, 5);
}

static void test_window_expiry_and_end(void **state)
{
	struct world *w = *state;
	struct inc in = {.site = "louvre", .kind = K(PERIMETER)};
	struct pat_stats st;

	assert_int_equal(load(w, count_rules), 0);
	/* Spread beyond the window: never three within an hour. */
	for (int i = 0; i < 6; i++) {
		in.first = T0 + (uint64_t)i * 40 * MINUTE;
		feed(w, &in);
	}
	assert_int_equal(w->n_seen, 0);
	for (int i = 0; i < 3; i++) {
		in.first = T0 + 5 * HOUR + (uint64_t)i * MINUTE;
		feed(w, &in);
	}
	assert_int_equal(count_what(w, PAT_NEW), 1);
	assert_int_equal(w->seen[0].n_total, 3);
	vigie__pat_stats(w->e, &st);
	assert_int_equal(st.alerts, 1);
	/* A day and more later (window + lateness): it ended, and the
	 * records went with the windows. */
	in.site = "orsay";
	in.first = T0 + 3 * DAY;
	feed(w, &in);
	assert_int_equal(count_what(w, PAT_ENDED), 1);
	vigie__pat_stats(w->e, &st);
	assert_int_equal(st.alerts, 0);
	in.first = T0 + 20 * DAY;
	feed(w, &in);
	vigie__pat_stats(w->e, &st);
	assert_int_equal(st.records, 1);
	assert_int_equal(w->expired, 10);
}

static void test_late_and_future(void **state)
{
	struct world *w = *state;
	struct inc in = {.site = "louvre", .kind = K(PERIMETER)};
	struct pat_stats st;

	assert_int_equal(load(w, count_rules), 0);
	in.first = T0 + 30 * DAY;
	assert_int_equal(feed(w, &in), PAT_FEED_CHANGED);
	/* Older than the longest window and the lateness: ignored. */
	in.first = T0;
	assert_int_equal(feed(w, &in), PAT_FEED_LATE);
	/* Within the lateness (one day by default): kept. */
	in.first = T0 + 30 * DAY - 2 * HOUR;
	assert_int_equal(feed(w, &in), PAT_FEED_CHANGED);
	/* A node with a clock years ahead moves nothing. */
	in.first = T0 + 3000 * DAY;
	assert_int_equal(feed(w, &in), PAT_FEED_FUTURE);
	vigie__pat_stats(w->e, &st);
	assert_int_equal(st.watermark_us, T0 + 30 * DAY);
	assert_int_equal(st.late, 1);
	assert_int_equal(st.future, 1);
}

/* ---- distinct sites ---- */

static const char region_rules[] =
	"utc_offset: \"+02:00\"\n"
	"rules:\n"
	"  - id: region-thefts\n"
	"    title: display-case or precious-metal thefts\n"
	"    type: distinct_sites\n"
	"    window: 60d\n"
	"    min_sites: 2\n"
	"    group_by: [region]\n"
	"    match:\n"
	"      trouble: false\n"
	"      any:\n"
	"        - {kind: display_case}\n"
	"        - {attributes: {target: [gold, jewellery, coins]}}\n"
	"    alert: {scope: region, posture: heightened}\n";

static const char near_rules[] = "rules:\n"
				 "  - id: near-thefts\n"
				 "    title: thefts near each other\n"
				 "    type: distinct_sites\n"
				 "    window: 60d\n"
				 "    min_sites: 2\n"
				 "    radius_km: 50\n"
				 "    match: {kind: display_case}\n";

static void test_distinct_sites_by_region(void **state)
{
	struct world *w = *state;
	struct inc in = {.kind = K(DISPLAY_CASE)};
	struct pat_alert *a;
	size_t pos;
	uint32_t *scope;
	size_t n;

	assert_int_equal(load(w, region_rules), 0);
	in.site = "limoges";
	in.first = T0 + 2 * DAY;
	feed(w, &in);
	/* Another region, and far: nothing. */
	in.site = "mnhn";
	in.first = T0 + 15 * DAY;
	feed(w, &in);
	assert_int_equal(w->n_seen, 0);
	/* Gold taken at a second museum of the region, without a display
	 * case: the `any` filter. */
	in.site = "louvre";
	in.kind = K(GLASS_BREAK);
	in.attrs[0] = "target";
	in.attrs[1] = "jewellery";
	in.first = T0 + 48 * DAY;
	feed(w, &in);
	assert_int_equal(w->n_seen, 1);
	assert_non_null(strstr(w->seen[0].id, "region-thefts-20251019"));
	assert_int_equal(w->seen[0].n_sites, 2);
	assert_non_null(strstr(w->seen[0].explanation,
			       "2 museums (region=ile-de-france)"));
	a = vigie__pat_alert_first(w->e, &pos);
	assert_non_null(a);
	assert_null(vigie__pat_alert_next(w->e, a, &pos));
	/* Region scope: the region's other museums are told, not Lyon. */
	assert_true(vigie__pat_in_scope(
		w->e, a, vigie__pat_site(w->rules, "orsay", false)));
	assert_false(vigie__pat_in_scope(
		w->e, a, vigie__pat_site(w->rules, "lyon", false)));
	assert_int_equal(vigie__pat_scope(w->e, a, &scope, &n), 0);
	assert_int_equal(n, 4);
	free(scope);
}

static void test_distinct_sites_within_radius(void **state)
{
	struct world *w = *state;
	struct inc in = {.kind = K(DISPLAY_CASE)};

	assert_int_equal(load(w, near_rules), 0);
	in.site = "lyon";
	in.first = T0;
	feed(w, &in);
	in.site = "langres";
	in.first = T0 + DAY;
	feed(w, &in);
	/* No location: never "near". */
	in.site = "nowhere";
	in.first = T0 + 2 * DAY;
	feed(w, &in);
	assert_int_equal(w->n_seen, 0);
	in.site = "versailles"; /* 16 km from the Louvre */
	in.first = T0 + 3 * DAY;
	feed(w, &in);
	assert_int_equal(w->n_seen, 0);
	in.site = "louvre";
	in.first = T0 + 4 * DAY;
	feed(w, &in);
	assert_int_equal(w->n_seen, 1);
	assert_non_null(strstr(w->seen[0].id, "near-thefts-"));
	assert_int_equal(w->seen[0].n_sites, 2);
	assert_non_null(
		strstr(w->seen[0].explanation, "within 50 km of each other"));
	/* Orsay is near: the campaign spreads; Lyon again is not. */
	in.site = "orsay";
	in.first = T0 + 5 * DAY;
	feed(w, &in);
	in.site = "lyon";
	in.first = T0 + 6 * DAY;
	feed(w, &in);
	assert_int_equal(w->n_seen, 2);
	assert_int_equal(w->seen[1].what, PAT_GROWN);
	assert_int_equal(w->seen[1].n_sites, 3);
}

/* ---- sequences ---- */

static const char seq_rules[] =
	"rules:\n"
	"  - id: lift-then-upper-floor\n"
	"    title: vehicle at a facade, then entry upstairs\n"
	"    type: sequence\n"
	"    within: 30m\n"
	"    group_by: [site]\n"
	"    steps:\n"
	"      - name: vehicle at the facade\n"
	"        match: {kind: vehicle}\n"
	"      - name: entry on an upper floor\n"
	"        match:\n"
	"          kind: [perimeter, glass_break, vibration, intrusion]\n"
	"          attributes: {floor: \">=1\"}\n"
	"  - id: offline-then-intrusion\n"
	"    title: security knocked offline before an intrusion\n"
	"    type: sequence\n"
	"    within: 60d\n"
	"    group_by: [site]\n"
	"    steps:\n"
	"      - name: alarm or video offline\n"
	"        match: {kind: [camera_signal_lost, comm_loss], trouble: "
	"true}\n"
	"      - absent: restore\n"
	"        for: 2m\n"
	"      - name: intrusion\n"
	"        match: {kind: [intrusion, vibration, display_case], trouble: "
	"false}\n";

static void test_sequence_per_site(void **state)
{
	struct world *w = *state;
	struct inc v = {.site = "louvre", .zone = "quai", .kind = K(VEHICLE)};
	struct inc up = {.site = "louvre",
			 .zone = "balcony",
			 .kind = K(PERIMETER),
			 .attrs = {"floor", "1", "entry", "balcony"}};
	struct inc ground = {.site = "louvre",
			     .zone = "door",
			     .kind = K(PERIMETER),
			     .attrs = {"floor", "0"}};

	assert_int_equal(load(w, seq_rules), 0);
	/* Entry upstairs first, then a vehicle: wrong order. */
	up.first = T0;
	feed(w, &up);
	v.first = T0 + 5 * MINUTE;
	feed(w, &v);
	assert_int_equal(w->n_seen, 0);
	/* Ground floor: not upstairs. */
	ground.first = T0 + 6 * MINUTE;
	feed(w, &ground);
	assert_int_equal(w->n_seen, 0);
	/* Too late: beyond 30 minutes of the vehicle. */
	up.first = T0 + 40 * MINUTE;
	feed(w, &up);
	assert_int_equal(w->n_seen, 0);
	/* At another museum: per site. */
	up.site = "orsay";
	up.first = T0 + 7 * MINUTE;
	feed(w, &up);
	assert_int_equal(w->n_seen, 0);
	up.site = "louvre";
	v.first = T0 + 2 * HOUR;
	feed(w, &v);
	up.first = T0 + 2 * HOUR + 35 * SEC;
	feed(w, &up);
	assert_int_equal(w->n_seen, 1);
	assert_non_null(strstr(w->seen[0].explanation,
			       "vehicle at the facade: vehicle alarm at Louvre "
			       "(quai)"));
	assert_non_null(strstr(w->seen[0].explanation,
			       "then entry on an upper floor: perimeter alarm "
			       "at Louvre (balcony)"));
	assert_int_equal(w->seen[0].n_total, 2);
}

static void test_sequence_out_of_order_arrival(void **state)
{
	struct world *w = *state;
	struct inc v = {.site = "louvre", .kind = K(VEHICLE)};
	struct inc up = {.site = "louvre",
			 .kind = K(GLASS_BREAK),
			 .attrs = {"floor", "2"}};

	assert_int_equal(load(w, seq_rules), 0);
	/* The later step arrives first (another node, a slower path). */
	up.first = T0 + 3 * MINUTE;
	feed(w, &up);
	v.first = T0;
	feed(w, &v);
	assert_int_equal(w->n_seen, 1);
}

static void test_absence_step(void **state)
{
	struct world *w = *state;
	struct inc cam = {.site = "mnhn",
			  .zone = "vms",
			  .kind = K(CAMERA_SIGNAL_LOST),
			  .trouble = true,
			  .priority = P(MEDIUM)};
	struct inc intr = {
		.site = "mnhn", .zone = "gallery", .kind = K(VIBRATION)};

	assert_int_equal(load(w, seq_rules), 0);
	/* A glitch: restored after 30 s, intrusion ten minutes later. */
	cam.first = T0;
	feed(w, &cam);
	cam.id = last_id;
	cam.state = I(CLOSED);
	cam.last = T0 + 30 * SEC;
	feed(w, &cam);
	intr.first = T0 + 10 * MINUTE;
	feed(w, &intr);
	assert_int_equal(w->n_seen, 0);
	/* Out for five minutes, restored, intrusion later: it counts. */
	cam.id = NULL;
	cam.state = 0;
	cam.last = 0;
	cam.first = T0 + HOUR;
	feed(w, &cam);
	cam.id = last_id;
	cam.state = I(CLOSED);
	cam.last = T0 + HOUR + 5 * MINUTE;
	feed(w, &cam);
	intr.first = T0 + 2 * HOUR;
	feed(w, &intr);
	assert_int_equal(w->n_seen, 1);
	assert_non_null(strstr(w->seen[0].explanation, "restored after 5 min"));
	assert_non_null(
		strstr(w->seen[0].explanation, "not restored within 2 min"));
}

static void test_absence_step_still_out(void **state)
{
	struct world *w = *state;
	struct inc cam = {.site = "mnhn",
			  .kind = K(COMM_LOSS),
			  .trouble = true,
			  .zone = "panel"};
	struct inc intr = {.site = "mnhn",
			   .kind = K(DISPLAY_CASE),
			   .attrs = {"target", "gold"}};

	assert_int_equal(load(w, seq_rules), 0);
	/* Knocked out in July, never restored; the theft weeks later. */
	cam.first = T0 - 40 * DAY;
	feed(w, &cam);
	intr.first = T0 + 15 * DAY;
	feed(w, &intr);
	assert_int_equal(w->n_seen, 1);
	assert_non_null(strstr(w->seen[0].explanation, "not restored"));
	/* Intrusion one minute into an outage still going: also. */
	cam.site = intr.site = "orsay";
	cam.first = T0 + 20 * DAY;
	feed(w, &cam);
	intr.first = T0 + 20 * DAY + MINUTE;
	feed(w, &intr);
	assert_int_equal(count_what(w, PAT_NEW), 2);
}

/* ---- similarity ---- */

static const char mo_rules[] =
	"rules:\n"
	"  - id: same-mo\n"
	"    title: same modus operandi\n"
	"    type: similar_mo\n"
	"    window: 60d\n"
	"    threshold: 0.6\n"
	"    min_common: 2\n"
	"    attributes: {tool: 3, target: 3, entry: 2, vehicle: 2, floor: 1,"
	" time_of_day: 1}\n"
	"    match: {trouble: false}\n";

static void test_similar_mo_across_museums(void **state)
{
	struct world *w = *state;
	struct inc a = {.site = "mnhn",
			.kind = K(VIBRATION),
			.attrs = {"tool", "angle-grinder", "target", "gold",
				  "entry", "door"}};
	struct inc b = a;
	struct inc other = {.site = "lyon",
			    .kind = K(GLASS_BREAK),
			    .attrs = {"tool", "crowbar", "target", "paintings",
				      "entry", "window"}};

	assert_int_equal(load(w, mo_rules), 0);
	a.first = T0 + 2 * HOUR; /* night */
	feed(w, &a);
	/* The same museum again is no campaign. */
	a.first = T0 + 3 * HOUR;
	feed(w, &a);
	other.first = T0 + DAY;
	feed(w, &other);
	assert_int_equal(w->n_seen, 0);
	b.site = "langres";
	b.attrs[5] = "window"; /* entry differs */
	b.first = T0 + 20 * DAY + HOUR;
	feed(w, &b);
	assert_int_equal(w->n_seen, 1);
	assert_int_equal(w->seen[0].n_sites, 2);
	assert_int_equal(w->seen[0].n_total, 3);
	assert_non_null(
		strstr(w->seen[0].explanation,
		       "share a modus operandi (similarity up to 0.78"));
	/* A third museum with the same tools joins the same alert. */
	b.site = "limoges";
	b.first = T0 + 30 * DAY;
	feed(w, &b);
	assert_int_equal(w->n_seen, 2);
	assert_int_equal(w->seen[1].what, PAT_GROWN);
	assert_string_equal(w->seen[1].id, w->seen[0].id);
	assert_int_equal(w->seen[1].n_sites, 3);
}

/* ---- filters ---- */

static void test_filters(void **state)
{
	struct world *w = *state;
	struct inc in = {.site = "louvre", .kind = K(INTRUSION)};

	assert_int_equal(
		load(w, "rules:\n"
			"  - id: f\n"
			"    type: count\n"
			"    window: 1d\n"
			"    min: 1\n"
			"    match:\n"
			"      kind: [intrusion]\n"
			"      state: [confirmed, acknowledged]\n"
			"      confirmed: true\n"
			"      min_priority: critical\n"
			"      region: [ile-de-france]\n"
			"      attributes: {floor: \">=1\", tool: \"*\"}\n"),
		0);
	in.first = T0;
	in.state = I(CONFIRMED);
	in.confirmed = true;
	in.priority = P(CRITICAL);
	in.attrs[0] = "floor";
	in.attrs[1] = "0";
	in.attrs[2] = "tool";
	in.attrs[3] = "ladder";
	feed(w, &in); /* ground floor */
	in.attrs[1] = "1";
	in.priority = P(HIGH);
	feed(w, &in); /* not critical */
	in.priority = P(CRITICAL);
	in.site = "lyon";
	feed(w, &in); /* other region */
	in.site = "louvre";
	in.attrs[2] = NULL;
	feed(w, &in); /* no tool */
	in.attrs[2] = "tool";
	in.state = I(OPEN);
	feed(w, &in); /* open */
	assert_int_equal(w->n_seen, 0);
	/* Updated to confirmed: it matches now, and stays a member. */
	in.id = last_id;
	in.state = I(CONFIRMED);
	feed(w, &in);
	assert_int_equal(w->n_seen, 1);
	in.state = I(CLOSED);
	feed(w, &in);
	assert_int_equal(w->n_seen, 1);
}

/* ---- restart ---- */

struct rows {
	uint8_t *data[64];
	size_t len[64];
	size_t n;
};

static void snap_all(struct world *w, const char *const *ids, size_t n_ids,
		     struct rows *recs, struct rows *alerts, struct rows *meta)
{
	struct pat_alert *a;
	size_t pos;

	for (size_t i = 0; i < n_ids; i++)
		if (vigie__pat_snap_record(w->e, ids[i], &recs->data[recs->n],
					   &recs->len[recs->n]) == 0)
			recs->n++;
	for (a = vigie__pat_alert_first(w->e, &pos); a;
	     a = vigie__pat_alert_next(w->e, a, &pos)) {
		assert_int_equal(vigie__pat_snap_alert(w->e, a,
						       &alerts->data[alerts->n],
						       &alerts->len[alerts->n]),
				 0);
		alerts->n++;
	}
	assert_int_equal(
		vigie__pat_snap_meta(w->e, &meta->data[0], &meta->len[0]), 0);
	meta->n = 1;
}

static void free_rows(struct rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->data[i]);
}

static void test_state_survives_restart(void **state)
{
	struct world *w = *state;
	struct inc in = {.kind = K(DISPLAY_CASE)};
	struct rows recs = {0}, alerts = {0}, meta = {0};
	char ids[3][PAT_ID_MAX + 1];
	const char *idp[3] = {ids[0], ids[1], ids[2]};
	struct pat_sink sink = {on_alert, on_expired, w};
	char first_alert[PAT_ID_MAX + 1];

	assert_int_equal(load(w, region_rules), 0);
	in.site = "mnhn";
	in.first = T0;
	feed(w, &in);
	snprintf(ids[0], sizeof(ids[0]), "%s", last_id);
	in.site = "louvre";
	in.first = T0 + 30 * DAY;
	feed(w, &in);
	snprintf(ids[1], sizeof(ids[1]), "%s", last_id);
	assert_int_equal(w->n_seen, 1);
	snprintf(first_alert, sizeof(first_alert), "%s", w->seen[0].id);
	/* One more incident in the window that made no alert yet. */
	in.site = "limoges";
	in.first = T0 + 31 * DAY;
	feed(w, &in);
	snprintf(ids[2], sizeof(ids[2]), "%s", last_id);
	snap_all(w, idp, 3, &recs, &alerts, &meta);
	assert_int_equal(recs.n, 3);
	assert_int_equal(alerts.n, 1);

	/* Restart: a new engine from the snapshots. */
	vigie__pat_close(w->e);
	w->n_seen = 0;
	assert_int_equal(vigie__pat_open(w->rules, &sink, &w->e), 0);
	assert_int_equal(
		vigie__pat_restore_meta(w->e, meta.data[0], meta.len[0]), 0);
	for (size_t i = 0; i < alerts.n; i++)
		assert_int_equal(vigie__pat_restore_alert(w->e, alerts.data[i],
							  alerts.len[i], NULL),
				 0);
	for (size_t i = 0; i < recs.n; i++)
		assert_int_equal(vigie__pat_restore_record(w->e, recs.data[i],
							   recs.len[i]),
				 0);
	vigie__pat_restore_done(w->e);
	assert_int_equal(w->n_seen, 0);
	/* The campaign grows under its old id... */
	in.site = "orsay";
	in.first = T0 + 40 * DAY;
	feed(w, &in);
	assert_int_equal(w->n_seen, 1);
	assert_int_equal(w->seen[0].what, PAT_GROWN);
	assert_string_equal(w->seen[0].id, first_alert);
	assert_int_equal(w->seen[0].version, 2);
	assert_int_equal(w->seen[0].n_total, 3);
	/* ... and the restored window still holds Limoges: Langres near
	 * nothing, but the national picture has them both. */
	in.site = "langres";
	in.first = T0 + 41 * DAY;
	feed(w, &in);
	assert_int_equal(count_what(w, PAT_NEW), 0);
	/* A snapshot of nonsense is refused, not a crash. */
	assert_int_equal(vigie__pat_restore_record(w->e, "\x01\x02", 2),
			 VIGIE_EDECODE);
	assert_int_equal(vigie__pat_restore_alert(w->e, "\x01", 1, NULL),
			 VIGIE_EDECODE);
	free_rows(&recs);
	free_rows(&alerts);
	free_rows(&meta);
}

/* relay.yaml names the rules file, relative to itself; the rules file's
 * own errors come back with its name and line. */
static void test_relay_config_reads_the_rules(void **state)
{
	struct relay_config cfg;
	char err[512], path[160];
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/relay.yaml", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "id: r\ndatabase: /tmp/r.db\nbroker: {host: h, port: 1}\n"
		   "posts: [{id: pp-paris}]\n"
		   "sites:\n  - {id: louvre, region: ile-de-france}\n"
		   "patterns: {rules: rules.yaml}\n");
	fclose(f);
	write_rules("rules.yaml",
		    "rules:\n  - id: c\n    type: count\n    window: 1h\n"
		    "    min: 2\n    match: {site: louvre}\n"
		    "    alert: {posts: [pp-paris]}\n");
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 0);
	assert_non_null(cfg.pattern_rules);
	assert_int_equal(cfg.pattern_rules->n_rules, 1);
	assert_non_null(strstr(cfg.pattern_rules_path, "/rules.yaml"));
	vigie__relayconf_free(&cfg);
	write_rules("rules.yaml",
		    "rules:\n  - id: c\n    type: count\n    window: 1h\n"
		    "    min: 2\n    match: {site: orsay}\n");
	assert_int_equal(vigie__relayconf_load(path, &cfg, err, sizeof(err)),
			 VIGIE_ECONFIG);
	assert_non_null(strstr(err, "rules.yaml:6: rules[0].match.site"));
	assert_non_null(strstr(err, "\"orsay\" is not in the relay"));
	unlink(path);
}

static void test_default_rules_load(void **state)
{
	struct pat_rules *r = NULL;
	char err[512], path[512];
	const char *slash = strrchr(__FILE__, '/');

	(void)state;
	/* tests/unit/ -> examples/ */
	snprintf(path, sizeof(path), "%.*s/../../examples/patterns.yaml",
		 slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".");
	if (access(path, R_OK) != 0)
		skip();
	assert_int_equal(vigie__patrules_load(path, NULL, &r, err, sizeof(err)),
			 0);
	assert_true(r->n_rules >= 5);
	vigie__patrules_free(r);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rules_file_errors),
		T(test_count_grows_one_alert),
		T(test_count_distinct_days),
		T(test_window_expiry_and_end),
		T(test_late_and_future),
		T(test_distinct_sites_by_region),
		T(test_distinct_sites_within_radius),
		T(test_sequence_per_site),
		T(test_sequence_out_of_order_arrival),
		T(test_absence_step),
		T(test_absence_step_still_out),
		T(test_similar_mo_across_museums),
		T(test_filters),
		T(test_state_survives_restart),
		cmocka_unit_test(test_relay_config_reads_the_rules),
		cmocka_unit_test(test_default_rules_load),
	};
#undef T
	int rc;

	snprintf(dir, sizeof(dir), "/tmp/vigie-test-patterns-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(write_rules("rules.yaml", ""));
	unlink(write_rules("bad.yaml", ""));
	rmdir(dir);
	return rc;
}
