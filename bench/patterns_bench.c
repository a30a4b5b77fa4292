/* patterns.eval_rate and patterns.bytes_per_incident: the pattern tracker
 * (relay/patterns.c) in process, one core, with the default rules
 * (examples/patterns.yaml), 10,000 museums and 1,000,000 incidents inside
 * the windows (--quick: 1,000 and 100,000).
 *
 * The stream is background noise as a national deployment would carry it:
 * two incidents a day per museum over 50 days (the longest window is 60),
 * each fed twice like the relay does (opened, then acknowledged or
 * restored), perimeter and motion alarms mostly, troubles that come back
 * within a minute but one in a hundred, a few incidents with modus-operandi
 * attributes. Event times advance with the stream, a few minutes out of
 * order. What matches makes alerts as it would in the relay; publishing
 * them (explanations, rows, messages) is the relay's work per change, not
 * the evaluation measured here.
 *
 *   eval_rate           incident updates evaluated per second
 *   bytes_per_incident  heap the tracker holds (records, windows, groups,
 *                       atoms, alerts) per incident in the windows, from
 *                       malloc's own count (mallinfo2) */

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "patterns.h"
#include "vigie/codec.h"
#include "vigie/error.h"
#include "vigie/log.h"

#define K(x)       VIGIE__V1__EVENT_KIND__KIND_##x
#define SEC        1000000ull
#define DAY        (86400 * SEC)
#define SPAN_US    (50 * DAY)
#define UPDATE_LAG 64 /* the second feed comes this many incidents later */
#define N_REGIONS  13
/* 2025-09-01T00:00:00Z */
#define T0 1756684800000000ull

static const char *const tools[] = {
	"angle-grinder", "blowtorch",   "crowbar",     "hammer",
	"drill",         "disc-cutter", "screwdriver", "jack",
	"ladder",        "bolt-cutter", "saw",         "axe",
	"sledgehammer",  "pliers",      "chisel",      "grinder",
	"torch",         "pry-bar",     "rope",        "glass-cutter"};
static const char *const targets[] = {
	"gold",      "silver",    "jewellery", "coins",     "porcelain",
	"paintings", "gems",      "sculpture", "meteorite", "manuscript",
	"watches",   "tapestry",  "ivory",     "bronze",    "ceramics",
	"drawings",  "prints",    "clocks",    "armour",    "weapons",
	"medals",    "furniture", "textiles",  "glass",     "enamel",
	"icons",     "masks",     "fossils",   "minerals",  "books"};
static const char *const entries[] = {"window",  "door", "roof",     "skylight",
				      "balcony", "wall", "basement", "vent"};
static const char *const vehicles[] = {
	"van",       "car",     "scooter", "truck",  "lift-truck",
	"motorbike", "bicycle", "bus",     "pickup", "taxi"};
static const char *const facades[] = {"north", "south", "east"};
static const char *const floors[] = {"0", "1", "2", "3"};
static const char *const zones[] = {"z0", "z1", "z2", "z3",
				    "z4", "z5", "z6", "z7"};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
	/* xorshift64*: reproducible across runs. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)(((rng_state * 2685821657736338717ull) >> 32) % n);
}

struct gen_inc {
	uint32_t site;
	uint8_t kind, zone, n_attrs;
	bool trouble, confirmed, long_outage;
	uint64_t first, last;
	const char *keys[6], *values[6];
};

static int pick_kind(bool *trouble)
{
	uint32_t r = rnd(1000);

	*trouble = false;
	if (r < 300)
		return K(PERIMETER);
	if (r < 550)
		return K(MOTION);
	if (r < 700)
		return K(DOOR_CONTACT);
	if (r < 760)
		return K(VEHICLE);
	if (r < 790)
		return K(GLASS_BREAK);
	if (r < 810)
		return K(VIBRATION);
	if (r < 830)
		return K(INTRUSION);
	if (r < 832)
		return K(DISPLAY_CASE);
	*trouble = true;
	if (r < 890)
		return K(CAMERA_SIGNAL_LOST);
	if (r < 940)
		return K(COMM_LOSS);
	return K(POWER_LOSS);
}

static void gen(struct gen_inc *g, uint32_t i, uint32_t n, uint32_t n_sites)
{
	int64_t jitter = (int64_t)rnd(600) - 300;
	size_t k = 0;
	bool mo;

	memset(g, 0, sizeof(*g));
	g->site = rnd(n_sites);
	g->kind = (uint8_t)pick_kind(&g->trouble);
	g->zone = (uint8_t)rnd(8);
	g->first = T0 + (uint64_t)((double)i * (double)SPAN_US / n) +
		   (uint64_t)(jitter * (int64_t)SEC + 3600 * (int64_t)SEC);
	if (g->trouble) {
		g->long_outage = rnd(100) == 0;
		g->last =
			g->first + (g->long_outage ? (2 + rnd(18)) * 3600 * SEC
						   : (10 + rnd(80)) * SEC);
	} else {
		g->last = g->first + rnd(300) * SEC;
		g->confirmed = rnd(5) == 0;
	}
	/* Where: the zone's floor, and its facade for three zones in eight. */
	g->keys[k] = "floor";
	g->values[k++] = floors[g->zone % 4];
	if (g->zone < 3) {
		g->keys[k] = "facade";
		g->values[k++] = facades[g->zone];
	}
	/* How: rarely known. */
	mo = !g->trouble && g->kind != K(PERIMETER) && g->kind != K(MOTION) &&
	     rnd(20) == 0;
	if (mo && g->kind == K(VEHICLE)) {
		g->keys[k] = "vehicle";
		g->values[k++] = vehicles[rnd(10)];
	} else if (mo) {
		g->keys[k] = "tool";
		g->values[k++] = tools[rnd(20)];
		g->keys[k] = "target";
		g->values[k++] = targets[rnd(30)];
		g->keys[k] = "entry";
		g->values[k++] = entries[rnd(8)];
	}
	g->n_attrs = (uint8_t)k;
}

static int feed(struct pat_engine *e, const struct gen_inc *g, const char *id,
		const char *site, bool update)
{
	struct pat_input in;
	int rc;

	memset(&in, 0, sizeof(in));
	in.id = id;
	in.site = site;
	in.zone = zones[g->zone];
	in.kind = g->kind;
	in.trouble = g->trouble;
	in.confirmed = g->confirmed;
	in.priority = g->trouble ? 2 : 3;
	in.state = !update ? 1 : g->trouble ? 4 : 3;
	in.first_us = g->first;
	in.last_us = update ? g->last : g->first;
	in.attr_keys = g->keys;
	in.attr_values = g->values;
	in.n_attrs = g->n_attrs;
	rc = vigie__pat_feed(e, &in, 0);
	return rc < 0 ? rc : 0;
}

static int find_rules(char *path, size_t len)
{
	const char *src = getenv("VIGIE_SOURCE");
	char dir[512];

	if (src) {
		snprintf(path, len, "%s/examples/patterns.yaml", src);
		if (access(path, R_OK) == 0)
			return 0;
	}
	if (bench_self_dir(dir, sizeof(dir)) == 0) {
		/* build/bin -> the source tree, then an installed tree */
		snprintf(path, len, "%s/../../examples/patterns.yaml", dir);
		if (access(path, R_OK) == 0)
			return 0;
		snprintf(path, len, "%s/../share/vigie/examples/patterns.yaml",
			 dir);
		if (access(path, R_OK) == 0)
			return 0;
	}
	return VIGIE_ENOTFOUND;
}

/* Campaigns opened, per rule: what the noise makes of the rules. */
static void on_alert(void *ud, struct pat_alert *a, enum pat_change what)
{
	uint64_t *opened = ud;

	if (what == PAT_NEW)
		opened[a->rule->index]++;
}

int bench_patterns(const struct bench_opts *o)
{
	uint32_t n_sites = o->quick ? 1000 : 10000;
	uint32_t n = o->quick ? 100000 : 1000000;
	struct pat_site_info *sites = NULL;
	uint64_t opened[PAT_MAX_RULES] = {0};
	struct pat_sink sink = {on_alert, NULL, opened};
	struct gen_inc *incs = NULL;
	struct pat_rules *rules = NULL;
	struct pat_engine *e = NULL;
	struct pat_stats st;
	struct mallinfo2 before, after;
	char path[600], err[512], (*ids)[12] = NULL, (*sids)[8] = NULL;
	char(*regions)[8] = NULL;
	struct pat_world w;
	uint64_t t0, t1, feeds = 0;
	double rate, bytes;
	int rc;

	if (!bench_wanted(o, "patterns."))
		return 0;
	rc = find_rules(path, sizeof(path));
	if (rc) {
		vigie_log_error(
			"patterns bench: examples/patterns.yaml not found "
			"(set VIGIE_SOURCE to the source tree)");
		return rc;
	}
	sites = calloc(n_sites, sizeof(*sites));
	sids = calloc(n_sites, sizeof(*sids));
	regions = calloc(N_REGIONS, sizeof(*regions));
	incs = calloc(n, sizeof(*incs));
	ids = calloc(n, sizeof(*ids));
	rc = VIGIE_ENOMEM;
	if (!sites || !sids || !regions || !incs || !ids)
		goto out_free;
	for (uint32_t i = 0; i < N_REGIONS; i++)
		snprintf(regions[i], sizeof(regions[i]), "r%02u", i);
	for (uint32_t i = 0; i < n_sites; i++) {
		/* Metropolitan France, more or less. */
		double lat = 42.5 + rnd(8500) / 1000.0;
		double lon = -4.5 + rnd(12500) / 1000.0;
		uint32_t cell = (uint32_t)((lat - 42.5) / 2.2) * 4 +
				(uint32_t)((lon + 4.5) / 3.2);

		snprintf(sids[i], sizeof(sids[i]), "m%05u", i);
		sites[i].id = sids[i];
		sites[i].name = sids[i];
		sites[i].region = regions[cell % N_REGIONS];
		sites[i].lat = lat;
		sites[i].lon = lon;
		sites[i].has_location = true;
	}
	for (uint32_t i = 0; i < n; i++) {
		gen(&incs[i], i, n, n_sites);
		snprintf(ids[i], sizeof(ids[i]), "i%07u", i);
	}
	memset(&w, 0, sizeof(w));
	w.sites = sites;
	w.n_sites = n_sites;
	rc = vigie__patrules_load(path, &w, &rules, err, sizeof(err));
	if (rc) {
		vigie_log_error("patterns bench: %s", err);
		goto out_free;
	}
	before = mallinfo2();
	rc = vigie__pat_open(rules, &sink, &e);
	if (rc)
		goto out_free;
	bench_progress("patterns: %u incidents at %u museums over 50 days, "
		       "%zu rules of %s",
		       n, n_sites, rules->n_rules, path);
	t0 = bench_mono_us();
	for (uint32_t i = 0; i < n && rc == 0; i++) {
		rc = feed(e, &incs[i], ids[i], sids[incs[i].site], false);
		feeds++;
		if (rc == 0 && i >= UPDATE_LAG) {
			uint32_t j = i - UPDATE_LAG;

			rc = feed(e, &incs[j], ids[j], sids[incs[j].site],
				  true);
			feeds++;
		}
	}
	for (uint32_t j = n > UPDATE_LAG ? n - UPDATE_LAG : 0; j < n && rc == 0;
	     j++) {
		rc = feed(e, &incs[j], ids[j], sids[incs[j].site], true);
		feeds++;
	}
	t1 = bench_mono_us();
	if (rc)
		goto out_close;
	after = mallinfo2();
	vigie__pat_stats(e, &st);
	rate = (double)feeds * 1e6 / (double)(t1 - t0 ? t1 - t0 : 1);
	bytes = st.records ? (double)(after.uordblks - before.uordblks) /
				     (double)st.records
			   : 0;
	bench_progress("patterns: %llu updates in %.2f s; %zu incidents in the "
		       "windows, %zu entries, %zu groups, %zu atoms; alerts: "
		       "%llu opened, %llu grown, %llu ended, %zu active; "
		       "%.1f MiB held",
		       (unsigned long long)feeds, (double)(t1 - t0) / 1e6,
		       st.records, st.entries, st.groups, st.atoms,
		       (unsigned long long)st.alerts_opened,
		       (unsigned long long)st.alerts_grown,
		       (unsigned long long)st.alerts_ended, st.alerts,
		       (double)(after.uordblks - before.uordblks) / 1048576.0);
	for (size_t i = 0; i < rules->n_rules; i++)
		bench_progress("patterns:   rule %s: %llu campaign(s)",
			       rules->rules[i].id,
			       (unsigned long long)opened[i]);
	bench_emit(o, "patterns.eval_rate", rate, "incidents/s", 0);
	bench_emit(o, "patterns.bytes_per_incident", bytes, "bytes", 0);
	rc = 0;
out_close:
	vigie__pat_close(e);
out_free:
	vigie__patrules_free(rules);
	free(ids);
	free(incs);
	free(regions);
	free(sids);
	free(sites);
	return rc;
}
