/* The relay core: MQTT in and out, wiring of the store, the stream index,
 * the incident and escalation state machines and the supervisor.
 *
 * Ordering rules kept here:
 * - an event is recognised as new or repeat from memory (streams.c) and
 *   processed at once; everything it causes - its row, the incident rows,
 *   the audit lines - is queued in the store's open batch;
 * - what it decides (Dispatch, SiteAlert, retained Incident and
 *   SiteStatus) leaves at once, before the commit: a new incident's id is
 *   first written to the intent log (intents.h), so that after a kill -9
 *   the same alarm, sent again by its node, comes back under the same id,
 *   and a dispatch's id derives from its incident's: nothing is sent twice
 *   under a new id;
 * - a Receipt waits until the rows are on the disk (commit, then fsync of
 *   the WAL): nothing receipted is missing after a crash, and until then
 *   the node keeps the event and sends it again;
 * - a Receipt names the highest contiguous seq of the boot as of the
 *   commit, never more;
 * - repeats are never processed again, only re-receipted;
 * - what the clock decides (deadlines, re-sends, redirects) and the
 *   pattern tracker's messages follow the commit of their rows, so that
 *   attempt numbers and pattern ids carry on across a kill -9;
 * - incidents are never freed from inside a callback that still uses them:
 *   a closed incident's messages are built (bytes) before it is forgotten. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbiter.h"
#include "escalation.h"
#include "incident.h"
#include "intents.h"
#include "message.h"
#include "patterns_relay.h"
#include "relay.h"
#include "replay.h"
#include "store.h"
#include "streams.h"
#include "supervise.h"
#include "utf8.h"
#include "verify.h"
#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"

#define TICK_MS              100
#define CLEAR_PER_TICK       20 /* retained closed incidents cleared */
#define STATS_INTERVAL_MS    60000
#define MAX_STREAMS          2000000
#define MAX_ABOVE            65536 /* out-of-order seqs kept per boot */
#define MAX_LEARNED_ZONES    100000
#define MAX_ARB_ENTRIES      2000000 /* posts, bridges, nodes (2 centrals) */
#define MAX_UNCOVERED        64
#define MAX_STATUS_NODES     256
#define MAX_STATUS_INCIDENTS 64
#define LOG_BURST            100   /* rejection lines per window... */
#define LOG_WINDOW_MS        10000 /* ...then a summary */
#define BRIDGE_PREFIX        "$SYS/broker/connection/vigie-bridge-"
/* What `serve: all` subscribes to; `serve: listed` subscribes per site. */
#define ALL_SITES_TOPIC   "vigie/v1/site/+/node/+/#"
#define ALL_BRIDGES_TOPIC "$SYS/broker/connection/+/state"
/* One security incident per site per window, however many attempts. */
#define SECURITY_WINDOW_MS (10 * 60000)
#define REPLAY_MAX_NODES   2000000
#define REPLAY_SLOTS       (1u << 16) /* recent identities' digests */
/* The intent log is emptied, when it can be, past this size. */
#define INTENTS_RESET_BYTES (256u * 1024u)

#define I(x)                VIGIE__V1__INCIDENT_STATE__INCIDENT_##x
#define K(x)                VIGIE__V1__EVENT_KIND__KIND_##x
#define ST(x)               VIGIE__V1__EVENT_STATE__STATE_##x

/* ---- the real clock ---- */

static uint64_t real_now_us(const struct relay_clock *c)
{
	(void)c;
	return vigie_clock_now_us();
}

static uint64_t real_mono_ms(const struct relay_clock *c)
{
	(void)c;
	return vigie_clock_mono_ms();
}

const struct relay_clock *vigie__clock_real(void)
{
	static const struct relay_clock clock = {real_now_us, real_mono_ms,
						 NULL};

	return &clock;
}

/* ---- state ---- */

struct learned_zone {
	struct hmap_entry he;
	char key[2 * VIGIE_ID_MAX + 2];
	Vigie__V1__Zone *zone; /* unpacked copy of what a birth said */
};

struct site_state {
	struct hmap_entry he;
	char id[VIGIE_ID_MAX + 1];
	bool dirty;
	bool warned; /* "not in the config" said once */
	uint64_t last_pub_ms;
	bool security_raised; /* a security incident in this window */
	uint64_t security_ms;
	uint64_t security_attempts;
};

struct ratelimit {
	uint64_t start_ms;
	unsigned count;
	uint64_t suppressed;
};

struct receipt_entry {
	struct stream *s;
	uint64_t contig;
};

struct receipts {
	struct vigie_relay *r;
	size_t n;
	struct receipt_entry e[];
};

enum effect_kind { FX_DISPATCH, FX_ALERT, FX_INCIDENT, FX_STATUS };

/* A message to publish once the batch it depends on committed. */
struct effect {
	struct vigie_relay *r;
	enum effect_kind kind;
	int only; /* one central broker's index, or -1: every one */
	int qos;
	bool retain;
	char topic[VIGIE_TOPIC_MAX];
	size_t len;
	uint8_t payload[];
};

struct post_ladder {
	struct relay_ladder ladder; /* one level: the backup post */
};

/* One central broker connection. With a `standby:` the relay holds two at
 * once, subscribed alike: what comes in is deduplicated as it always was
 * (events by identity, acks by incident), what goes out is published on
 * every connected one, so the traffic finds the relay and the posts
 * through whichever central still answers. */
struct relay_link {
	struct vigie_relay *r;
	struct vigie_mqtt *mqtt;
	unsigned index; /* 0 the `broker:`, 1 the `standby:` */
	bool up;
};

struct to_clear {
	uint64_t due_us;
	char id[VIGIE_ID_MAX + 1];
};

struct vigie_relay {
	uv_loop_t *loop;
	const struct relay_config *cfg;
	const struct relay_clock *clock;
	struct relay_store *store;
	struct intent_log intents;
	struct relay_link links[ARB_MAX_BROKERS];
	size_t n_links;
	struct arbiter arb; /* which broker's report to believe (n_links > 1) */
	int emit_only; /* during one broker's on_connect: its index, else -1 */
	struct streams streams;
	struct inc_engine inc;
	struct supervisor sup;
	struct esc_posts posts;
	struct post_ladder *post_ladders; /* parallel to cfg->posts */
	struct relay_ladder no_ladder;
	struct hmap zones;
	struct hmap sites;
	uv_timer_t tick;
	/* Signed traffic: NULL without a trust store (then unsigned). */
	struct verifier *verifier;
	struct replay_guard replay;
	struct patrelay *patterns; /* pattern tracker; NULL: no rules */

	/* Closed incidents whose retained message is still on the brokers, in
	 * the order they closed: cleared retain_closed after. */
	struct to_clear *clear_q;
	size_t clear_head, clear_len, clear_cap;

	/* streams touched since the open batch began: receipts at its commit */
	struct stream **touched;
	size_t n_touched, cap_touched;
	uint64_t batch_gen;

	struct vigie_relay_stats st;
	struct ratelimit rl;
	uint64_t last_stats_ms;
	struct vigie_relay_stats last_logged;
	bool shedding;
	bool connected;
	bool closing;
	int closes_pending;
	void (*close_cb)(void *arg);
	void *close_arg;
};

/* ---- helpers ---- */

static uint64_t now_us(const struct vigie_relay *r)
{
	return r->clock->now_us(r->clock);
}

static uint64_t mono_ms(const struct vigie_relay *r)
{
	return r->clock->mono_ms(r->clock);
}

/* Text from outside, fit for a log line: printable ASCII kept, the rest
 * shown as '?', at most `cap - 1` bytes. */
static const char *safe(char *dst, size_t cap, const char *src)
{
	size_t i = 0;

	if (!cap)
		return "";
	for (; src && src[i] && i + 1 < cap; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	dst[i] = '\0';
	return dst;
}

static bool rl_allow(struct vigie_relay *r)
{
	uint64_t now = mono_ms(r);

	if (now - r->rl.start_ms >= LOG_WINDOW_MS) {
		if (r->rl.suppressed)
			vigie_log_warn("%" PRIu64 " more rejected message(s) "
				       "not logged in the last %d s",
				       r->rl.suppressed, LOG_WINDOW_MS / 1000);
		r->rl.start_ms = now;
		r->rl.count = 0;
		r->rl.suppressed = 0;
	}
	if (r->rl.count < LOG_BURST) {
		r->rl.count++;
		return true;
	}
	r->rl.suppressed++;
	return false;
}

/* UTF-8 text from outside, kept as text (names with accents stay), cut at a
 * character boundary, control characters made spaces. */
static void printable(char *dst, size_t cap, const char *src)
{
	vigie__relay_utf8_copy(dst, cap, src);
	for (char *p = dst; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

enum reject_kind { REJ_BAD, REJ_MISMATCH };

static void reject(struct vigie_relay *r, enum reject_kind kind,
		   const char *topic, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void reject(struct vigie_relay *r, enum reject_kind kind,
		   const char *topic, const char *fmt, ...)
{
	char why[256], t[VIGIE_TOPIC_MAX + 1];
	va_list ap;

	r->st.rejected++;
	if (kind == REJ_MISMATCH)
		r->st.mismatch++;
	else
		r->st.bad_payload++;
	if (!rl_allow(r))
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	vigie_log_warn("rejected %s: %s (%s so far: %" PRIu64 ")",
		       safe(t, sizeof(t), topic), why,
		       kind == REJ_MISMATCH ? "topic/content mismatches"
					    : "bad payloads",
		       kind == REJ_MISMATCH ? r->st.mismatch
					    : r->st.bad_payload);
}

static struct site_state *site_state(struct vigie_relay *r, const char *site)
{
	struct hmap_entry *h;
	struct site_state *s;

	if (!vigie_id_valid(site))
		return NULL;
	h = vigie__hmap_find(&r->sites, site);
	if (h)
		return container_of(h, struct site_state, he);
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	strcpy(s->id, site);
	s->he.key = s->id;
	s->dirty = true;
	if (vigie__hmap_insert(&r->sites, &s->he)) {
		free(s);
		return NULL;
	}
	if (!vigie__relayconf_site(r->cfg, site)) {
		s->warned = true;
		vigie_log_warn("site %s is not in %s: its incidents use the "
			       "default ladder and carry no zone details "
			       "beyond what its nodes announce",
			       site, r->cfg->path);
	}
	return s;
}

static void site_dirty(struct vigie_relay *r, const char *site)
{
	struct site_state *s = site && *site ? site_state(r, site) : NULL;

	if (s)
		s->dirty = true;
}

/* `serve: listed`: traffic of a site another relay serves. It reaches us
 * only through a subscription of an earlier run still in our persistent
 * session (dropped at connect) or a broker that delivers more than was
 * asked: never processed - no store, receipt or supervision - only
 * counted, since the relay serving that site does all of it. */
static bool not_served(struct vigie_relay *r, const char *site,
		       const char *topic)
{
	char t[VIGIE_TOPIC_MAX + 1];

	if (vigie__relayconf_serves(r->cfg, site))
		return false;
	r->st.not_served++;
	vigie_log_debug("ignored %s: site %s is not served here (serve: "
			"listed; %" PRIu64 " so far)",
			safe(t, sizeof(t), topic), site, r->st.not_served);
	return true;
}

/* ---- publication on the central broker(s) ---- */

/* Publish on broker `only`, or on every connected one when it is -1.
 * Returns 0 when at least one took it, VIGIE_ENOCONN when none is
 * connected, else the last error. */
static int publish(struct vigie_relay *r, int only, const char *topic,
		   const void *payload, size_t len, int qos, bool retain)
{
	int rc = VIGIE_ENOCONN;
	bool sent = false;

	for (size_t i = 0; i < r->n_links; i++) {
		int err;

		if (only >= 0 && (size_t)only != i)
			continue;
		err = vigie_mqtt_publish(r->links[i].mqtt, topic, payload, len,
					 qos, retain, NULL);
		if (err == 0)
			sent = true;
		else if (err != VIGIE_ENOCONN)
			rc = err;
	}
	return sent ? 0 : rc;
}

/* ---- effects: what leaves the relay ---- */

static void deliver(struct vigie_relay *r, enum effect_kind kind, int only,
		    const char *topic, const uint8_t *payload, size_t len,
		    int qos, bool retain)
{
	int rc = publish(r, only, topic, payload, len, qos, retain);

	if (rc == 0) {
		switch (kind) {
		case FX_DISPATCH:
			r->st.dispatches++;
			break;
		case FX_ALERT:
			r->st.alerts++;
			break;
		default:
			break;
		}
	} else if (rc != VIGIE_ENOCONN) {
		vigie_log_warn("publish %s: %s", topic, vigie_strerror(rc));
	}
	/* Not connected: dispatches are re-sent at the reconnect, incidents
	 * and status republished. */
}

/* Publish `payload` (consumed: freed here) now. What an incident decides
 * leaves at once: its id is in the intent log already (intents.h), its
 * rows follow in the open batch. */
static void emit(struct vigie_relay *r, enum effect_kind kind,
		 const char *topic, uint8_t *payload, size_t len, int qos,
		 bool retain)
{
	deliver(r, kind, r->emit_only, topic, payload, len, qos, retain);
	free(payload);
}

static void effect_cb(void *arg, int status)
{
	struct effect *fx = arg;

	if (status == 0)
		deliver(fx->r, fx->kind, fx->only, fx->topic, fx->payload,
			fx->len, fx->qos, fx->retain);
	free(fx);
}

/* Queue `payload` (consumed: freed here) for after the open batch: what
 * must not be sent again under another attempt or id after a crash (the
 * clock's escalations, the pattern tracker's messages). */
static void emit_after_commit(struct vigie_relay *r, enum effect_kind kind,
			      const char *topic, uint8_t *payload, size_t len,
			      int qos, bool retain)
{
	struct effect *fx = malloc(sizeof(*fx) + len);

	if (!fx) {
		vigie_log_error("out of memory: %s not published", topic);
		free(payload);
		return;
	}
	fx->r = r;
	fx->kind = kind;
	fx->only = r->emit_only;
	fx->qos = qos;
	fx->retain = retain;
	snprintf(fx->topic, sizeof(fx->topic), "%s", topic);
	fx->len = len;
	if (len) /* an empty retained message clears the topic */
		memcpy(fx->payload, payload, len);
	free(payload);
	if (vigie__store_defer(r->store, effect_cb, fx)) {
		vigie_log_error("cannot queue %s", topic);
		free(fx);
	}
}

/* ---- ladders, posts, zones ---- */

static const struct relay_ladder *ladder_for(const struct vigie_relay *r,
					     const struct incident *inc)
{
	if (inc->site[0])
		return vigie__relayconf_ladder(r->cfg, inc->site);
	if (strncmp(inc->subject, "post:", 5) == 0) {
		for (size_t i = 0; i < r->cfg->n_posts; i++)
			if (strcmp(r->cfg->posts[i].id, inc->subject + 5) == 0)
				return &r->post_ladders[i].ladder;
	}
	return &r->no_ladder;
}

static const char *level_name(const struct vigie_relay *r,
			      const struct incident *inc)
{
	const struct relay_ladder *l = ladder_for(r, inc);

	if (inc->esc.level >= l->n || !inc->esc.d[inc->esc.level].sent)
		return "";
	return l->levels[inc->esc.level].name;
}

static bool post_online(void *ud, const char *post)
{
	struct vigie_relay *r = ud;

	return vigie__sup_post_online(&r->sup, post);
}

static const char *post_backup(void *ud, const char *post)
{
	struct vigie_relay *r = ud;
	const struct relay_post *p = vigie__relayconf_post(r->cfg, post);

	return p ? p->backup : NULL;
}

static void esc_params(const struct vigie_relay *r, const struct incident *inc,
		       struct esc_params *p)
{
	p->ladder = ladder_for(r, inc);
	p->posts = &r->posts;
	p->clock = r->clock;
	p->resend_ms = r->cfg->resend_ms;
	p->resend_max_ms = r->cfg->resend_max_ms;
}

static bool zone_of(const struct vigie_relay *r, const char *site,
		    const char *zone, struct zone_info *zi)
{
	const struct relay_zone *z = vigie__relayconf_zone(
		vigie__relayconf_site(r->cfg, site), zone);
	char key[2 * VIGIE_ID_MAX + 2];
	struct hmap_entry *h;

	memset(zi, 0, sizeof(*zi));
	if (z) {
		zi->id = z->id;
		zi->name = z->name;
		zi->floor = z->floor;
		zi->facade = z->facade;
		zi->kind = z->kind;
		zi->action_plan = z->action_plan;
		zi->has_location = z->has_location;
		zi->lat = z->lat;
		zi->lon = z->lon;
		zi->cameras = (char **)z->cameras;
		zi->n_cameras = z->n_cameras;
		return true;
	}
	snprintf(key, sizeof(key), "%s/%s", site, zone ? zone : "");
	h = vigie__hmap_find(&r->zones, key);
	if (h) {
		const Vigie__V1__Zone *lz =
			container_of(h, struct learned_zone, he)->zone;

		zi->id = lz->id;
		zi->name = lz->name;
		zi->floor = lz->floor;
		zi->facade = lz->facade;
		zi->kind = lz->kind;
		zi->action_plan = lz->action_plan;
		zi->has_location = lz->location != NULL;
		zi->lat = lz->location ? lz->location->lat : 0;
		zi->lon = lz->location ? lz->location->lon : 0;
		zi->cameras = lz->cameras;
		zi->n_cameras = lz->n_cameras;
		return true;
	}
	return false;
}

static void learn_zone(struct vigie_relay *r, const char *site,
		       const Vigie__V1__Zone *z)
{
	char key[2 * VIGIE_ID_MAX + 2];
	struct learned_zone *lz;
	struct hmap_entry *h;
	Vigie__V1__Zone *copy;
	uint8_t *buf;
	size_t len;

	if (!vigie_id_valid(z->id) || !vigie__relay_utf8_valid(z->name) ||
	    !vigie__relay_utf8_valid(z->floor) ||
	    !vigie__relay_utf8_valid(z->facade) ||
	    !vigie__relay_utf8_valid(z->kind) ||
	    !vigie__relay_utf8_valid(z->action_plan))
		return; /* re-published in dispatches: must be UTF-8 */
	for (size_t i = 0; i < z->n_cameras; i++)
		if (!vigie__relay_utf8_valid(z->cameras[i]))
			return;
	snprintf(key, sizeof(key), "%s/%s", site, z->id);
	if (vigie_pack(&z->base, &buf, &len))
		return;
	copy = vigie__v1__zone__unpack(NULL, len, buf);
	free(buf);
	if (!copy)
		return;
	h = vigie__hmap_find(&r->zones, key);
	if (h) {
		lz = container_of(h, struct learned_zone, he);
		vigie__v1__zone__free_unpacked(lz->zone, NULL);
		lz->zone = copy;
		return;
	}
	lz = calloc(1, sizeof(*lz));
	if (!lz || r->zones.count >= MAX_LEARNED_ZONES) {
		free(lz);
		vigie__v1__zone__free_unpacked(copy, NULL);
		return;
	}
	strcpy(lz->key, key);
	lz->he.key = lz->key;
	lz->zone = copy;
	if (vigie__hmap_insert(&r->zones, &lz->he)) {
		vigie__v1__zone__free_unpacked(copy, NULL);
		free(lz);
	}
}

/* ---- persistence and publication of an incident ---- */

/* Every change of an incident or its escalation is persisted through here:
 * it also tells the tick when the incident next needs it. */
static void persist_escalation(struct vigie_relay *r, struct incident *inc)
{
	struct store_escalation e = {
		.incident = inc->id,
		.active = inc->esc.active,
		.acked = inc->esc.acked,
		.level = inc->esc.level,
		.level_since_us = inc->esc.level_since_us,
		.deadline_us = inc->esc.deadline_us,
	};

	vigie__store_put_escalation(r->store, &e);
	if (vigie__inc_schedule(&r->inc, inc))
		vigie_log_error("incident %s: out of memory: its escalation "
				"waits for the next change",
				inc->id);
}

static int persist_dispatch(struct vigie_relay *r, const struct incident *inc,
			    uint32_t level)
{
	const struct esc_dispatch *d = &inc->esc.d[level];
	char id[VIGIE_ID_MAX + 16];
	struct store_dispatch sd = {
		.id = id,
		.incident = inc->id,
		.level = level,
		.alert = d->alert,
		.post = d->post,
		.backup_for = d->backup_for,
		.attempts = d->attempts,
		.first_us = d->first_us,
		.last_us = d->last_us,
		.next_us = d->next_us,
		.acked_us = inc->esc.acked ? inc->acked_us : 0,
	};

	vigie__esc_dispatch_id(id, sizeof(id), inc->id, level);
	return vigie__store_put_dispatch(r->store, &sd);
}

/* ---- retained state of closed incidents ---- */

/* A closed incident's retained message goes retain_closed after it closed:
 * a dashboard that subscribes then gets today's picture, not every
 * incident the museum ever had (the database keeps them all). Out of
 * memory, it stays until the next start loads it again. */
static void queue_clear(struct vigie_relay *r, const char *id,
			uint64_t closed_us)
{
	struct to_clear *c;

	if (!r->cfg->retain_closed_ms)
		return;
	if (r->clear_head + r->clear_len == r->clear_cap) {
		if (r->clear_head > r->clear_cap / 2) {
			memmove(r->clear_q, r->clear_q + r->clear_head,
				r->clear_len * sizeof(*r->clear_q));
			r->clear_head = 0;
		} else {
			size_t cap = r->clear_cap ? r->clear_cap * 2 : 64;
			struct to_clear *q =
				realloc(r->clear_q, cap * sizeof(*q));

			if (!q)
				return;
			r->clear_q = q;
			r->clear_cap = cap;
		}
	}
	c = &r->clear_q[r->clear_head + r->clear_len++];
	c->due_us = closed_us + r->cfg->retain_closed_ms * 1000;
	snprintf(c->id, sizeof(c->id), "%s", id);
}

/* Only while every central broker is connected: a broker that missed the
 * empty message would keep the incident for good. A few a tick, so that a
 * first start over years of closed incidents does not flood the brokers. */
static void clear_closed(struct vigie_relay *r, uint64_t now)
{
	for (size_t i = 0; i < r->n_links; i++)
		if (!r->links[i].up)
			return;
	for (unsigned n = 0; r->clear_len && n < CLEAR_PER_TICK; n++) {
		struct to_clear *c = &r->clear_q[r->clear_head];
		char topic[VIGIE_TOPIC_MAX];

		if (c->due_us > now)
			break;
		if (vigie__store_put_cleared(r->store, c->id) == 0 &&
		    vigie_topic_build(topic, sizeof(topic),
				      VIGIE_TOPIC_INCIDENT, c->id, NULL) == 0)
			emit(r, FX_INCIDENT, topic, NULL, 0, 1, true);
		r->clear_head++;
		r->clear_len--;
	}
	if (!r->clear_len)
		r->clear_head = 0;
}

/* Queue the incident's row and publish its retained state. */
static void persist_incident(struct vigie_relay *r, struct incident *inc)
{
	const struct relay_site *site =
		vigie__relayconf_site(r->cfg, inc->site);
	char detectors[INC_MAX_DETECTORS * (INC_DETECTOR_MAX + 24)];
	char topic[VIGIE_TOPIC_MAX];
	struct store_incident si;
	uint8_t *buf;
	size_t len;
	int rc;

	if (vigie__msg_incident(inc, level_name(r, inc),
				site && site->region ? site->region : "", &buf,
				&len)) {
		vigie_log_error("incident %s: cannot encode", inc->id);
		return;
	}
	vigie__msg_detectors_format(inc, detectors, sizeof(detectors));
	memset(&si, 0, sizeof(si));
	si.id = inc->id;
	si.site = inc->site;
	si.zone = inc->zone;
	si.subject = inc->subject;
	si.state = inc->state;
	si.priority = inc->priority;
	si.kind = inc->kind;
	si.trouble = inc->trouble;
	si.opened_us = inc->opened_us;
	si.updated_us = inc->updated_us;
	si.closed_us = inc->closed_us;
	si.last_activity_us = inc->last_activity_us;
	si.id_prefix = inc->id_prefix;
	si.id_sec = inc->id_sec;
	si.id_k = inc->id_k;
	si.detectors = detectors;
	si.data = buf;
	si.len = len;
	rc = vigie__store_put_incident(r->store, &si);
	persist_escalation(r, inc);
	/* Published only what is queued: a state the relay could not
	 * store must not reach a dashboard. */
	if (rc) {
		vigie_log_error("incident %s: cannot queue its row: %s",
				inc->id, vigie_strerror(rc));
		free(buf);
	} else if (vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_INCIDENT,
				     inc->id, NULL) == 0) {
		emit(r, FX_INCIDENT, topic, buf, len, 1, true);
		if (inc->state == I(CLOSED))
			queue_clear(r, inc->id, inc->closed_us);
	} else {
		free(buf);
	}
	site_dirty(r, inc->site);
	/* patterns: the tracker reads every change of an incident; its rows
	 * join this batch, its messages follow its commit. */
	if (r->patterns) {
		struct zone_info zi;
		bool have_zone = zone_of(r, inc->site, inc->zone, &zi);

		vigie__patrelay_incident(r->patterns, inc,
					 have_zone ? &zi : NULL);
	}
}

static void audit(struct vigie_relay *r, const struct incident *inc,
		  const char *what, const char *who, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void audit(struct vigie_relay *r, const struct incident *inc,
		  const char *what, const char *who, const char *fmt, ...)
{
	char detail[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	vigie__store_audit(r->store, now_us(r), inc ? inc->id : NULL, what, who,
			   detail);
	if (inc)
		vigie_log_info("incident %s: %s", inc->id,
			       detail[0] ? detail : what);
	else
		vigie_log_info("%s", detail[0] ? detail : what);
}

/* ---- escalation actions into rows, audit lines and messages ---- */

/* What an event decides goes `now`: an alarm on its way to the police.
 * What the clock decides (deadlines, re-sends, redirects, the re-sends of a
 * reconnect) follows the commit of its row, so that its attempt number
 * carries on across a kill -9 instead of being sent again. */
static void send_msg(struct vigie_relay *r, bool now, enum effect_kind kind,
		     const char *topic, uint8_t *buf, size_t len)
{
	if (now)
		emit(r, kind, topic, buf, len, 1, false);
	else
		emit_after_commit(r, kind, topic, buf, len, 1, false);
}

static void send_dispatch(struct vigie_relay *r, const struct incident *inc,
			  uint32_t level, const struct esc_dispatch *d,
			  bool now)
{
	const struct relay_ladder *l = ladder_for(r, inc);
	char id[VIGIE_ID_MAX + 16], topic[VIGIE_TOPIC_MAX];
	struct zone_info zi;
	struct dispatch_in in;
	uint8_t *buf;
	size_t len;
	bool have_zone = zone_of(r, inc->site, inc->zone, &zi);

	vigie__esc_dispatch_id(id, sizeof(id), inc->id, level);
	memset(&in, 0, sizeof(in));
	in.id = id;
	in.inc = inc;
	in.post = d->post;
	in.backup_for = d->backup_for;
	in.site = vigie__relayconf_site(r->cfg, inc->site);
	in.zone = have_zone ? &zi : NULL;
	in.level = level;
	in.level_name = level < l->n ? l->levels[level].name : "";
	in.attempt = d->attempts;
	in.sent_us = now_us(r);
	if (vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_DISPATCH,
			      d->post, NULL) ||
	    vigie__msg_dispatch(&in, &buf, &len)) {
		vigie_log_error("incident %s: cannot build dispatch %s to %s",
				inc->id, id, d->post);
		return;
	}
	send_msg(r, now, FX_DISPATCH, topic, buf, len);
}

static void send_alert(struct vigie_relay *r, const struct incident *inc,
		       uint32_t level, bool now)
{
	const struct relay_ladder *l = ladder_for(r, inc);
	char id[VIGIE_ID_MAX + 16], topic[VIGIE_TOPIC_MAX];
	struct zone_info zi;
	struct alert_in in;
	uint8_t *buf;
	size_t len;
	bool have_zone = zone_of(r, inc->site, inc->zone, &zi);

	if (vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_ALERT,
			      inc->site, NULL))
		return; /* no site (a post's trouble): nobody to alert */
	vigie__esc_dispatch_id(id, sizeof(id), inc->id, level);
	memset(&in, 0, sizeof(in));
	in.id = id;
	in.inc = inc;
	in.level = level < l->n ? &l->levels[level] : NULL;
	in.level_index = level;
	in.zone = have_zone ? &zi : NULL;
	in.now_us = now_us(r);
	if (vigie__msg_alert(&in, &buf, &len))
		return;
	send_msg(r, now, FX_ALERT, topic, buf, len);
}

/* The dispatch's row queued, then the dispatch sent: not sent when its row
 * cannot even be queued (the store is closing or out of memory). */
static bool store_then_send(struct vigie_relay *r, struct incident *inc,
			    uint32_t level, bool alert, bool now)
{
	int rc = persist_dispatch(r, inc, level);

	if (rc) {
		vigie_log_error("incident %s: level %u not sent, its row "
				"cannot be queued: %s",
				inc->id, level, vigie_strerror(rc));
		return false;
	}
	if (alert)
		send_alert(r, inc, level, now);
	else
		send_dispatch(r, inc, level, &inc->esc.d[level], now);
	return true;
}

/* Returns true when the incident itself changed (its level). `now`: an
 * event decided them (send_msg). */
static bool apply_actions(struct vigie_relay *r, struct incident *inc,
			  const struct esc_actions *acts, bool now)
{
	const struct relay_ladder *l = ladder_for(r, inc);
	const char *who = "relay:escalation";
	bool changed = false;

	for (size_t i = 0; i < acts->n; i++) {
		const struct esc_action *a = &acts->a[i];
		const char *lname =
			a->level < l->n ? l->levels[a->level].name : "?";
		char id[VIGIE_ID_MAX + 16];

		vigie__esc_dispatch_id(id, sizeof(id), inc->id, a->level);
		switch (a->type) {
		case ESC_NOTIFY:
			if (!store_then_send(r, inc, a->level, a->alert, now))
				break;
			if (a->alert) {
				audit(r, inc, "alert", who,
				      "level %u (%s): site alert %s to site "
				      "security of %s",
				      a->level, lname, id, inc->site);
			} else {
				audit(r, inc, "dispatch", who,
				      "level %u (%s): dispatch %s to post "
				      "%s%s%s%s",
				      a->level, lname, id, a->post,
				      a->from_post ? " (backup of " : "",
				      a->from_post ? a->from_post : "",
				      a->from_post ? ", offline)" : "");
			}
			break;
		case ESC_RESEND:
			if (!store_then_send(r, inc, a->level, false, now))
				break;
			audit(r, inc, "resend", who,
			      "dispatch %s re-sent to post %s, attempt %u (not "
			      "acknowledged)",
			      id, a->post, a->attempt);
			break;
		case ESC_REDIRECT:
			if (!store_then_send(r, inc, a->level, false, now))
				break;
			if (a->from_post)
				audit(r, inc, "redirect", who,
				      "post %s is offline: dispatch %s sent to "
				      "its backup %s, attempt %u",
				      a->from_post, id, a->post, a->attempt);
			else
				audit(r, inc, "redirect", who,
				      "post %s is back: dispatch %s sent to it "
				      "again, attempt %u",
				      a->post, id, a->attempt);
			break;
		case ESC_ESCALATE:
			changed = true;
			audit(r, inc, "escalated", who,
			      "level %u (%s) -> level %u (%s): %s",
			      a->from_level,
			      a->from_level < l->n
				      ? l->levels[a->from_level].name
				      : "?",
			      a->level, lname,
			      a->deadline ? "not acknowledged within the ack "
					    "deadline"
			      : inc->confirmed
				      ? "confirmed: straight to the police"
				      : "straight to the police");
			break;
		}
	}
	return changed;
}

/* ---- incident results ---- */

static void describe_input(const struct inc_input *in, char *buf, size_t len)
{
	char zone[VIGIE_ID_MAX + 1], sensor[VIGIE_ID_MAX + 1], text[160];

	printable(zone, sizeof(zone), in->zone);
	printable(sensor, sizeof(sensor), in->sensor);
	printable(text, sizeof(text), in->text);
	if (in->seq)
		snprintf(buf, len,
			 "%s %s zone=%s sensor=%s from %s/%s #%" PRIu64
			 ".%" PRIu64 "%s%s%s",
			 vigie_kind_name(in->kind), vigie_state_name(in->state),
			 zone, sensor, in->site, in->node ? in->node : "",
			 in->boot_id, in->seq, text[0] ? " \"" : "", text,
			 text[0] ? "\"" : "");
	else
		snprintf(buf, len, "%s %s: %s", vigie_kind_name(in->kind),
			 vigie_state_name(in->state), text);
}

static void intent_committed(void *arg, int status)
{
	struct vigie_relay *r = arg;

	r->intents.pending--;
	if (status == 0 && !r->intents.pending &&
	    r->intents.size > INTENTS_RESET_BYTES &&
	    !vigie__inc_reserved(&r->inc))
		vigie__intents_reset(&r->intents);
}

/* A new incident's id in the intent log, before anything about it leaves;
 * the line is moot once the batch holding its row committed. */
static void note_intent(struct vigie_relay *r, const struct incident *inc)
{
	struct intent_rec rec = {
		.id = inc->id,
		.key = inc->key,
		.prefix = inc->id_prefix,
		.sec = inc->id_sec,
		.k = inc->id_k,
		.first_event_us = inc->first_event_us,
	};
	int rc = vigie__intents_append(&r->intents, &rec);

	/* Not written: its messages leave all the same (an alarm is never
	 * held for its bookkeeping); a crash before the commit would then
	 * give it a new id. */
	if (rc)
		vigie_log_error("incident %s: not in the intent log: %s",
				inc->id, vigie_strerror(rc));
	else if (vigie__store_defer(r->store, intent_committed, r) == 0)
		r->intents.pending++;
}

static void closed_and_forget(struct vigie_relay *r, struct incident *inc,
			      const char *who, const char *why)
{
	audit(r, inc, "closed", who, "%s", why);
	persist_incident(r, inc);
	vigie__inc_forget(&r->inc, inc);
}

static void apply_result(struct vigie_relay *r, const struct inc_input *in,
			 struct inc_result *res, const char *who)
{
	struct incident *inc = res->inc;
	struct esc_actions acts = {.n = 0};
	struct esc_params p;
	char what[512];

	if (res->closed)
		closed_and_forget(
			r, res->closed, "relay",
			"acknowledged and quiet longer than the incident "
			"window: a new alarm opens a new incident");
	if (!inc)
		return;
	describe_input(in, what, sizeof(what));
	if (res->changes & INC_OPENED) {
		note_intent(r, inc);
		r->st.incidents_opened++;
		audit(r, inc, "opened", who, "%s %s incident, priority %s: %s",
		      inc->trouble ? "trouble" : "alarm",
		      vigie_kind_name(inc->kind),
		      vigie_priority_name(inc->priority), what);
	} else if (res->changes & (INC_JOINED | INC_RESTORED)) {
		audit(r, inc, "event", who, "%s", what);
	}
	if (res->changes & INC_CONFIRMED) {
		char list[256];
		size_t pos = 0;

		list[0] = '\0';
		for (size_t i = 0;
		     i < inc->n_detectors && pos + 1 < sizeof(list); i++) {
			int n = snprintf(list + pos, sizeof(list) - pos, "%s%s",
					 i ? ", " : "", inc->detectors[i].id);

			if (n < 0)
				break;
			pos += (size_t)n;
		}
		audit(r, inc, "confirmed", who,
		      "second independent detector (sequential confirmation): "
		      "%s",
		      list);
	}
	if (res->changes & INC_PRIORITY)
		audit(r, inc, "priority", who, "priority raised to %s (%s)",
		      vigie_priority_name(inc->priority),
		      vigie_kind_name(inc->kind));
	esc_params(r, inc, &p);
	if (res->changes & INC_OPENED) {
		vigie__esc_start(&inc->esc, &p, res->immediate, &acts);
	} else if (res->immediate && inc->state != I(CLOSED)) {
		vigie__esc_police(&inc->esc, &p, &acts);
		if (acts.n && inc->state == I(ACKNOWLEDGED)) {
			vigie__inc_rearm(&r->inc, inc);
			audit(r, inc, "rearmed", who,
			      "acknowledged below the police level, now %s: "
			      "escalating again",
			      inc->confirmed ? "confirmed" : "urgent");
		}
	}
	apply_actions(r, inc, &acts, true);
	if (res->changes & INC_CLOSED) {
		closed_and_forget(r, inc, who,
				  res->changes & INC_RESTORED
					  ? "restore received"
					  : "closed");
		return;
	}
	persist_incident(r, inc);
}

/* ---- receipts ---- */

static void receipts_cb(void *arg, int status)
{
	struct receipts *rc = arg;
	struct vigie_relay *r = rc->r;

	for (size_t i = 0; status == 0 && i < rc->n; i++) {
		struct stream *s = rc->e[i].s;
		char topic[VIGIE_TOPIC_MAX];
		uint8_t *buf;
		size_t len;
		int err;

		if (rc->e[i].contig > s->committed)
			s->committed = rc->e[i].contig;
		if (!s->committed)
			continue; /* seq 1 of this boot not seen yet */
		if (vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_RECEIPT,
				      s->site, s->node) ||
		    vigie__msg_receipt(s->site, s->node, s->boot_id,
				       s->committed, now_us(r), r->cfg->id,
				       &buf, &len))
			continue;
		/* Published now: this runs after the commit already. */
		err = publish(r, -1, topic, buf, len, 1, false);
		if (err == 0)
			r->st.receipts++;
		free(buf);
	}
	free(rc);
}

/* The store is about to seal the open batch: record each touched stream's
 * contig in it and owe their receipts to its commit. */
static void on_seal(void *ud)
{
	struct vigie_relay *r = ud;
	struct receipts *rc;
	size_t n = r->n_touched;

	r->batch_gen++;
	if (!n)
		return;
	rc = malloc(sizeof(*rc) + n * sizeof(rc->e[0]));
	for (size_t i = 0; i < n; i++) {
		struct stream *s = r->touched[i];

		if (s->batch_contig != s->contig) {
			vigie__store_put_stream(r->store, s->site, s->node,
						s->boot_id, s->contig);
			s->batch_contig = s->contig;
		}
		if (rc) {
			rc->e[i].s = s;
			rc->e[i].contig = s->contig;
		}
	}
	r->n_touched = 0;
	if (!rc)
		return; /* receipts follow the next batch, or the next repeat */
	rc->r = r;
	rc->n = n;
	if (vigie__store_defer_durable(r->store, receipts_cb, rc))
		free(rc);
}

static void touch_stream(struct vigie_relay *r, struct stream *s)
{
	if (s->batch == r->batch_gen + 1)
		return;
	if (r->n_touched == r->cap_touched) {
		size_t cap = r->cap_touched ? r->cap_touched * 2 : 256;
		struct stream **t = realloc(r->touched, cap * sizeof(*t));

		if (!t)
			return;
		r->touched = t;
		r->cap_touched = cap;
	}
	/* batch_gen counts sealed batches: the open one is gen + 1. */
	s->batch = r->batch_gen + 1;
	r->touched[r->n_touched++] = s;
	/* A repeat queues no write: make sure the batch is sealed anyway, so
	 * its receipt goes out. */
	if (r->n_touched == 1)
		vigie__store_kick(r->store);
}

/* ---- inbound: events ---- */

static bool optional_id(const char *s)
{
	return !s || !*s || vigie_id_valid(s);
}

/* proto3 strings are UTF-8; ours are re-published (incidents, dispatches),
 * so one that is not would break the posts that parse them. */
static bool event_text_valid(const Vigie__V1__Event *ev)
{
	if (!vigie__relay_utf8_valid(ev->text) ||
	    !vigie__relay_utf8_valid(ev->source) ||
	    !vigie__relay_utf8_valid(ev->source_code) ||
	    !vigie__relay_utf8_valid(ev->path))
		return false;
	for (size_t i = 0; i < ev->n_attributes; i++)
		if (!vigie__relay_utf8_valid(ev->attributes[i]->key) ||
		    !vigie__relay_utf8_valid(ev->attributes[i]->value))
			return false;
	return true;
}

static void process_event(struct vigie_relay *r, const Vigie__V1__Event *ev)
{
	const char *keys[32], *values[32];
	struct inc_input in;
	struct inc_result res;
	char who[2 * VIGIE_ID_MAX + 8];
	size_t n = 0;

	memset(&in, 0, sizeof(in));
	in.site = ev->site;
	in.node = ev->node;
	in.zone = ev->zone;
	in.sensor = ev->sensor;
	in.text = ev->text;
	in.boot_id = ev->boot_id;
	in.seq = ev->seq;
	in.time_us = ev->time_us;
	in.kind = ev->kind;
	in.state = ev->state;
	for (size_t i = 0; i < ev->n_attributes && n < 32; i++) {
		keys[n] = ev->attributes[i]->key;
		values[n] = ev->attributes[i]->value;
		n++;
	}
	in.attr_keys = keys;
	in.attr_values = values;
	in.n_attrs = n;
	if (vigie__inc_event(&r->inc, &in, &res)) {
		vigie_log_error("out of memory: event %s/%s #%" PRIu64
				".%" PRIu64 " stored but opened no incident",
				ev->site, ev->node, ev->boot_id, ev->seq);
		return;
	}
	snprintf(who, sizeof(who), "node:%s/%s", ev->site, ev->node);
	apply_result(r, &in, &res, who);
}

/* ---- security: forged and replayed traffic ---- */

/* A forgery or replay: rejected, counted, logged (rate-limited), and one
 * security trouble incident per site and SECURITY_WINDOW_MS however many
 * attempts follow, so that a flood cannot bury the police post. The site is
 * the topic's: broker ACLs make it the site the traffic came from. */
static void security(struct vigie_relay *r, const struct vigie_topic *t,
		     const char *topic, bool replay, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void security(struct vigie_relay *r, const struct vigie_topic *t,
		     const char *topic, bool replay, const char *fmt, ...)
{
	const char *reason_key = "reason", *reason;
	char why[256], tb[VIGIE_TOPIC_MAX + 1], text[400];
	struct site_state *ss;
	struct inc_input in;
	struct inc_result res;
	uint64_t now = mono_ms(r);
	va_list ap;

	r->st.rejected++;
	if (replay)
		r->st.replayed++;
	else
		r->st.forged++;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (rl_allow(r))
		vigie_log_warn("SECURITY: rejected %s: %s (%" PRIu64
			       " forged, %" PRIu64 " replayed so far)",
			       safe(tb, sizeof(tb), topic), why, r->st.forged,
			       r->st.replayed);
	ss = site_state(r, t->site);
	if (!ss || r->closing)
		return;
	ss->security_attempts++;
	if (ss->security_raised && now - ss->security_ms < SECURITY_WINDOW_MS)
		return;
	ss->security_raised = true;
	ss->security_ms = now;
	r->st.security_incidents++;
	snprintf(text, sizeof(text),
		 "forged or replayed traffic on site %s: %s (%" PRIu64
		 " attempt(s) so far)",
		 t->site, why, ss->security_attempts);
	reason = why;
	memset(&in, 0, sizeof(in));
	in.kind = K(SECURITY);
	in.state = ST(TROUBLE);
	in.site = t->site;
	in.node = t->node;
	in.subject = "security";
	in.text = text;
	in.time_us = now_us(r);
	in.attr_keys = &reason_key;
	in.attr_values = &reason;
	in.n_attrs = 1;
	if (vigie__inc_event(&r->inc, &in, &res)) {
		vigie_log_error("out of memory: security incident not raised");
		return;
	}
	apply_result(r, &in, &res, "relay:security");
	site_dirty(r, t->site);
}

static void ingest_event(struct vigie_relay *r, const struct vigie_topic *t,
			 const char *topic, const void *payload, size_t len,
			 const Vigie__V1__Event *ev,
			 const struct verify_job *j);

static void handle_event(struct vigie_relay *r, const struct vigie_topic *t,
			 const char *topic, const void *payload, size_t len)
{
	Vigie__V1__SignedEvent *se;
	Vigie__V1__Event *ev;
	int rc;

	rc = vigie_event_decode(payload, len, &se, &ev);
	if (rc) {
		reject(r, REJ_BAD, topic,
		       "%s (%zu bytes, not a SignedEvent with an Event)",
		       rc == VIGIE_ETOOBIG ? "payload over 64 KiB"
					   : "does not decode",
		       len);
		return;
	}
	ingest_event(r, t, topic, payload, len, ev, NULL);
	vigie_event_free(se, ev);
}

/* The ingest path proper. `j` is the verified job when signatures are
 * checked (then the replay rules apply), NULL otherwise. */
/* Replays of old boots. A node re-sends its unreceipted events of older
 * boots after a restart, so an older boot is not a replay by itself:
 * - a boot the relay has a stream for is judged by the stream (exact
 *   dedupe: what is stored is a repeat, what is not is a late re-send);
 * - a boot never seen, older than the node's newest, is accepted only if
 *   its event is younger than replay_window: a node holds unreceipted
 *   events only so long, while old captured traffic (replayed after the
 *   relay's memory of it was lost) is older.
 * Bytes cannot be made up without the key, so only genuine events are
 * judged here. */
static bool boot_acceptable(struct vigie_relay *r, const Vigie__V1__Event *ev)
{
	uint64_t newest =
		vigie__replay_newest_boot(&r->replay, ev->site, ev->node);
	uint64_t window_us = r->cfg->replay_window_ms * 1000;
	struct stream *s;

	if (ev->boot_id >= newest)
		return true;
	if (vigie__streams_get(&r->streams, ev->site, ev->node, ev->boot_id,
			       false, &s) == 0)
		return true;
	return ev->time_us + window_us >= now_us(r);
}

static void ingest_event(struct vigie_relay *r, const struct vigie_topic *t,
			 const char *topic, const void *payload, size_t len,
			 const Vigie__V1__Event *ev, const struct verify_job *j)
{
	struct store_event sev;
	struct stream *s;
	char a[VIGIE_ID_MAX + 1], b[VIGIE_ID_MAX + 1];
	int rc;

	if (!*ev->site && !*ev->node) {
		reject(r, REJ_BAD, topic,
		       "no site and no node: not an Event (%zu bytes)", len);
		return;
	}
	if (j && (strcmp(ev->site, t->site) != 0 ||
		  strcmp(ev->node, t->node) != 0)) {
		/* Signed by its owner but published under another name: a
		 * genuine event replayed where it does not belong. */
		security(r, t, topic, true,
			 "signed event of %s/%s published as %s/%s",
			 safe(a, sizeof(a), ev->site),
			 safe(b, sizeof(b), ev->node), t->site, t->node);
		return;
	}
	if (strcmp(ev->site, t->site) != 0 || strcmp(ev->node, t->node) != 0) {
		reject(r, REJ_MISMATCH, topic,
		       "event names %s/%s, the topic %s/%s",
		       safe(a, sizeof(a), ev->site),
		       safe(b, sizeof(b), ev->node), t->site, t->node);
		return;
	}
	if (ev->boot_id == 0 || ev->seq == 0 || ev->boot_id > INT64_MAX ||
	    ev->seq > INT64_MAX) {
		reject(r, REJ_BAD, topic,
		       "boot_id %" PRIu64 " / seq %" PRIu64
		       ": both start at 1 (and stay below 2^63)",
		       ev->boot_id, ev->seq);
		return;
	}
	if (!optional_id(ev->zone) || !optional_id(ev->sensor)) {
		reject(r, REJ_BAD, topic,
		       "zone \"%s\" or sensor \"%s\" is not an id",
		       safe(a, sizeof(a), ev->zone),
		       safe(b, sizeof(b), ev->sensor));
		return;
	}
	if (!event_text_valid(ev)) {
		reject(r, REJ_BAD, topic,
		       "a string of event #%" PRIu64 ".%" PRIu64
		       " is not UTF-8",
		       ev->boot_id, ev->seq);
		return;
	}
	if (j && !boot_acceptable(r, ev)) {
		security(r, t, topic, true,
			 "boot %" PRIu64
			 " is older than %s/%s's newest (%" PRIu64
			 "), never seen here, and its event #%" PRIu64
			 " is older than the replay window",
			 ev->boot_id, ev->site, ev->node,
			 vigie__replay_newest_boot(&r->replay, ev->site,
						   ev->node),
			 ev->seq);
		return;
	}
	r->st.events++;
	rc = vigie__streams_get(&r->streams, ev->site, ev->node, ev->boot_id,
				true, &s);
	if (rc) {
		r->st.shed++;
		return;
	}
	switch (vigie__stream_check(&r->streams, s, ev->seq)) {
	case STREAM_DUP:
		/* The same bytes again are a re-send (the node lost our
		 * receipt, or someone replays it: harmless either way); other
		 * bytes under a stored identity are a forgery. */
		if (j && vigie__replay_compare(&r->replay, ev->site, ev->node,
					       ev->boot_id, ev->seq,
					       j->digest) == REPLAY_DIFFERENT) {
			r->st.events--;
			security(r, t, topic, true,
				 "event #%" PRIu64 ".%" PRIu64
				 " is stored already with other content",
				 ev->boot_id, ev->seq);
			return;
		}
		/* Stored already: never processed again, receipted again
		 * (the node may have lost our receipt). */
		r->st.duplicates++;
		touch_stream(r, s);
		return;
	case STREAM_FULL:
		r->st.shed++;
		return;
	case STREAM_NEW:
	default:
		break;
	}
	if (vigie__store_backlog(r->store) >= r->cfg->max_backlog) {
		/* Unreceipted, so its node sends it again later: shedding
		 * here loses nothing and caps memory while the disk lags. */
		r->st.shed++;
		if (!r->shedding) {
			r->shedding = true;
			vigie_log_warn(
				"store backlog at %zu events: new events are "
				"left unreceipted until it drains",
				vigie__store_backlog(r->store));
		}
		return;
	}
	memset(&sev, 0, sizeof(sev));
	sev.site = ev->site;
	sev.node = ev->node;
	sev.boot_id = ev->boot_id;
	sev.seq = ev->seq;
	sev.time_us = ev->time_us;
	sev.recv_us = now_us(r);
	sev.kind = ev->kind;
	sev.state = ev->state;
	sev.zone = ev->zone;
	sev.sensor = ev->sensor;
	sev.payload = payload;
	sev.len = len;
	rc = vigie__store_put_event(r->store, &sev);
	if (rc == 0)
		rc = vigie__stream_mark(&r->streams, s, ev->seq);
	if (rc) {
		r->st.shed++;
		return;
	}
	touch_stream(r, s);
	if (j) {
		vigie__replay_remember(&r->replay, ev->site, ev->node,
				       ev->boot_id, ev->seq, j->digest);
		vigie__replay_note_boot(&r->replay, ev->site, ev->node,
					ev->boot_id);
	}
	process_event(r, ev);
}

/* ---- inbound: supervision ---- */

static void persist_node(struct vigie_relay *r, struct sup_node *n)
{
	if (n->persisted && n->persisted_ms == n->reporting_ms)
		return;
	n->persisted = true;
	n->persisted_ms = n->reporting_ms;
	vigie__store_put_node(r->store, n->site, n->node, n->reporting_ms,
			      now_us(r));
}

/* The node holds receipts for boot `boot_id` up to `seq`, past what this
 * relay has on record: those records were lost (a database replaced, or
 * restored from a backup) and what the node was receipted for was stored
 * then. Without taking its word, receipts could never pass the gap, and the
 * node would keep all it sends from now on, re-sending it, until its outbox
 * is full. Only the word of a verified heartbeat when the relay has a
 * trust store; without one, events themselves are taken on the broker's
 * ACL alone. */
static void catch_up(struct vigie_relay *r, const struct vigie_topic *t,
		     uint64_t boot_id, uint64_t seq)
{
	struct stream *s;
	uint64_t was;

	if (seq > INT64_MAX || boot_id > INT64_MAX)
		return;
	if (vigie__streams_get(&r->streams, t->site, t->node, boot_id, true,
			       &s) != 0 ||
	    seq <= s->contig)
		return;
	was = s->contig;
	vigie__stream_advance(s, seq);
	vigie_log_warn("%s/%s boot %" PRIu64 ": the node holds receipts up "
		       "to #%" PRIu64 ", this relay's records stop at #%" PRIu64
		       ": taken as stored (records lost: a database replaced "
		       "or restored?); receipting from #%" PRIu64,
		       t->site, t->node, boot_id, seq, was, s->contig);
	touch_stream(r, s);
}

static void ingest_heartbeat(struct vigie_relay *r, const struct vigie_topic *t,
			     const char *topic,
			     const Vigie__V1__HeartbeatBody *b,
			     const struct verify_job *j)
{
	char a[VIGIE_ID_MAX + 1], c[VIGIE_ID_MAX + 1];
	struct sup_node *n;

	if (!*b->site && !*b->node) {
		reject(r, REJ_BAD, topic,
		       "no site and no node: not a Heartbeat");
		return;
	}
	if (strcmp(b->site, t->site) != 0 || strcmp(b->node, t->node) != 0) {
		if (j) {
			security(r, t, topic, true,
				 "signed heartbeat of %s/%s published as "
				 "%s/%s",
				 safe(a, sizeof(a), b->site),
				 safe(c, sizeof(c), b->node), t->site, t->node);
			return;
		}
		reject(r, REJ_MISMATCH, topic,
		       "heartbeat names %s/%s, the topic %s/%s",
		       safe(a, sizeof(a), b->site), safe(c, sizeof(c), b->node),
		       t->site, t->node);
		return;
	}
	if (b->boot_id == 0) {
		reject(r, REJ_BAD, topic, "heartbeat without a boot id");
		return;
	}
	/* A replayed heartbeat would keep a cut node "alive": only a newer
	 * one than the last accepted counts. Not an incident by itself (a
	 * failover can reorder two), but never a sign of life. */
	if (j && !vigie__replay_heartbeat(&r->replay, t->site, t->node,
					  b->boot_id, b->hb_seq)) {
		r->st.replayed++;
		r->st.rejected++;
		if (rl_allow(r))
			vigie_log_warn("ignored stale heartbeat of %s/%s "
				       "(boot %" PRIu64 ", #%" PRIu64 ")",
				       t->site, t->node, b->boot_id, b->hb_seq);
		return;
	}
	r->st.heartbeats++;
	site_state(r, t->site);
	vigie__sup_heartbeat(&r->sup, t->site, t->node, b->boot_id,
			     b->reporting_time_ms, b->time_us,
			     b->outbox_pending, b->path);
	n = vigie__sup_find(&r->sup, t->site, t->node);
	if (n)
		persist_node(r, n);
	/* With a trust store, only a signature makes the claim believable:
	 * an unsigned one (accepted while signatures are not required) could
	 * make the relay skip events never stored. */
	if (b->receipted_boot && b->receipted_seq &&
	    (!j || j->verdict == VERIFY_OK))
		catch_up(r, t, b->receipted_boot, b->receipted_seq);
}

static void handle_heartbeat(struct vigie_relay *r, const struct vigie_topic *t,
			     const char *topic, const void *payload, size_t len)
{
	Vigie__V1__Heartbeat *hb;
	Vigie__V1__HeartbeatBody *b = NULL;

	hb = vigie__v1__heartbeat__unpack(NULL, len, payload);
	if (!hb) {
		reject(r, REJ_BAD, topic,
		       "does not decode as a Heartbeat (%zu bytes)", len);
		return;
	}
	b = vigie__v1__heartbeat_body__unpack(NULL, hb->body.len,
					      hb->body.data);
	if (!b) {
		reject(r, REJ_BAD, topic,
		       "heartbeat body does not decode (%zu bytes)",
		       hb->body.len);
		goto out_free;
	}
	ingest_heartbeat(r, t, topic, b, NULL);
out_free:
	if (b)
		vigie__v1__heartbeat_body__free_unpacked(b, NULL);
	vigie__v1__heartbeat__free_unpacked(hb, NULL);
}

/* A message back from the verifier, in arrival order. */
static void on_verified(void *ud, struct verify_job *j)
{
	struct vigie_relay *r = ud;
	const char *what =
		j->t.type == VIGIE_TOPIC_EVENT ? "event" : "heartbeat";
	const char *key_id = j->t.type == VIGIE_TOPIC_EVENT
				     ? (j->se ? j->se->key_id : "")
				     : (j->hb ? j->hb->key_id : "");
	char k[VIGIE_SIGN_ID_CHARS + 8];

	if (r->closing)
		return;
	switch (j->verdict) {
	case VERIFY_NOT_CHECKED:
		if (j->t.type == VIGIE_TOPIC_EVENT) {
			r->st.events++;
			r->st.shed++;
		}
		return;
	case VERIFY_DECODE:
		/* Decoded again on the loop for the reason; rare. */
		if (j->t.type == VIGIE_TOPIC_EVENT)
			handle_event(r, &j->t, j->topic, j->payload, j->len);
		else
			handle_heartbeat(r, &j->t, j->topic, j->payload,
					 j->len);
		return;
	case VERIFY_UNKNOWN_KEY:
		security(r, &j->t, j->topic, false,
			 "%s signed with unknown key id \"%s\"", what,
			 safe(k, sizeof(k), key_id));
		return;
	case VERIFY_BAD_SIGNATURE:
		security(r, &j->t, j->topic, false,
			 "%s signature does not verify with key %s (%s/%s)",
			 what, j->key->key_id, j->key->site, j->key->node);
		return;
	case VERIFY_WRONG_OWNER:
		security(r, &j->t, j->topic, false,
			 "%s claims to come from %s/%s but is signed with the "
			 "key of %s/%s",
			 what,
			 j->ev ? safe(k, sizeof(k), j->ev->site)
			       : safe(k, sizeof(k), j->body->site),
			 j->ev ? j->ev->node : j->body->node, j->key->site,
			 j->key->node);
		return;
	case VERIFY_UNSIGNED:
		if (r->cfg->require_signatures) {
			security(r, &j->t, j->topic, false,
				 "unsigned %s (signatures are required)", what);
			return;
		}
		r->st.unsigned_accepted++;
		break;
	case VERIFY_OK:
	default:
		break;
	}
	if (j->t.type == VIGIE_TOPIC_EVENT)
		ingest_event(r, &j->t, j->topic, j->payload, j->len, j->ev, j);
	else
		ingest_heartbeat(r, &j->t, j->topic, j->body, j);
}

static void set_uncovered(struct vigie_relay *r, struct sup_node *n,
			  const Vigie__V1__NodeState *ns)
{
	size_t count = ns->n_uncovered_zones < MAX_UNCOVERED
			       ? ns->n_uncovered_zones
			       : MAX_UNCOVERED;
	char **list = count ? calloc(count, sizeof(*list)) : NULL;
	size_t k = 0;

	for (size_t i = 0; list && i < count; i++)
		if (vigie_id_valid(ns->uncovered_zones[i]))
			list[k++] = strdup(ns->uncovered_zones[i]);
	for (size_t i = 0; i < n->n_uncovered; i++)
		free(n->uncovered[i]);
	free(n->uncovered);
	n->uncovered = list;
	n->n_uncovered = 0;
	for (size_t i = 0; i < k; i++)
		if (list[i])
			list[n->n_uncovered++] = list[i];
	site_dirty(r, n->site);
}

/* The central broker of index `b`, for log lines. */
static const char *central_name(const struct vigie_relay *r, unsigned b)
{
	return b < r->n_links ? vigie_mqtt_name(r->links[b].mqtt) : "?";
}

/* With two central brokers, an OFFLINE from one of them about a node heard
 * through the other a moment ago is the end of that broker's connection to
 * it (a stale will after a hang), not the node's death (arbiter.h). */
static bool node_offline_believed(struct vigie_relay *r, unsigned b,
				  const struct vigie_topic *t)
{
	const struct sup_node *n = vigie__sup_find(&r->sup, t->site, t->node);
	uint64_t reporting = n ? n->reporting_ms : r->cfg->reporting_ms;
	unsigned via = 0;

	if (r->n_links < 2 ||
	    vigie__arb_node_offline(&r->arb, b, t->site, t->node, mono_ms(r),
				    reporting, &via))
		return true;
	vigie_log_warn("node %s/%s offline on central %s, but heard through "
		       "%s within its reporting time: that broker's link to it "
		       "ended, not the node (ignored)",
		       t->site, t->node, central_name(r, b),
		       central_name(r, via));
	return false;
}

static void handle_node_state(struct vigie_relay *r, unsigned b,
			      const struct vigie_topic *t, const char *topic,
			      const void *payload, size_t len, bool retained)
{
	Vigie__V1__NodeState *ns;
	char a[VIGIE_ID_MAX + 1], c[VIGIE_ID_MAX + 1];
	struct sup_node *n;
	bool online;

	if (len == 0)
		return; /* a retained state being cleared */
	ns = vigie__v1__node_state__unpack(NULL, len, payload);
	if (!ns) {
		reject(r, REJ_BAD, topic,
		       "does not decode as a NodeState (%zu bytes)", len);
		return;
	}
	if (strcmp(ns->site, t->site) != 0 || strcmp(ns->node, t->node) != 0) {
		reject(r, ns->site[0] || ns->node[0] ? REJ_MISMATCH : REJ_BAD,
		       topic, "node state names %s/%s, the topic %s/%s",
		       safe(a, sizeof(a), ns->site),
		       safe(c, sizeof(c), ns->node), t->site, t->node);
		goto out_free;
	}
	if (ns->status != VIGIE__V1__NODE_STATUS__NODE_ONLINE &&
	    ns->status != VIGIE__V1__NODE_STATUS__NODE_OFFLINE) {
		reject(r, REJ_BAD, topic, "node state with status %d",
		       ns->status);
		goto out_free;
	}
	online = ns->status == VIGIE__V1__NODE_STATUS__NODE_ONLINE;
	if (!online && !node_offline_believed(r, b, t))
		goto out_free;
	if (online && !retained && r->n_links > 1)
		vigie__arb_node_alive(&r->arb, b, t->site, t->node, mono_ms(r));
	site_state(r, t->site);
	for (size_t i = 0; i < ns->n_zones && i < 4096; i++)
		learn_zone(r, t->site, ns->zones[i]);
	vigie__sup_node_state(&r->sup, t->site, t->node, ns->boot_id, online,
			      ns->reason, ns->reporting_time_ms, retained);
	n = vigie__sup_find(&r->sup, t->site, t->node);
	if (n) {
		if (online)
			set_uncovered(r, n, ns);
		persist_node(r, n);
	}
	vigie_log_info("node %s/%s %s%s%s (boot %" PRIu64 ")%s", t->site,
		       t->node, online ? "online" : "offline",
		       ns->reason[0] ? ": " : "",
		       safe(a, sizeof(a), ns->reason), ns->boot_id,
		       retained ? ", retained" : "");
out_free:
	vigie__v1__node_state__free_unpacked(ns, NULL);
}

static void handle_post_state(struct vigie_relay *r, unsigned b,
			      const struct vigie_topic *t, const char *topic,
			      const void *payload, size_t len)
{
	Vigie__V1__PostState *ps;
	char a[VIGIE_ID_MAX + 1];

	if (len == 0)
		return;
	ps = vigie__v1__post_state__unpack(NULL, len, payload);
	if (!ps) {
		reject(r, REJ_BAD, topic,
		       "does not decode as a PostState (%zu bytes)", len);
		return;
	}
	if (*ps->post && strcmp(ps->post, t->id) != 0) {
		reject(r, REJ_MISMATCH, topic,
		       "post state names %s, the topic %s",
		       safe(a, sizeof(a), ps->post), t->id);
	} else if (ps->status != VIGIE__V1__POST_STATUS__POST_ONLINE &&
		   ps->status != VIGIE__V1__POST_STATUS__POST_OFFLINE) {
		reject(r, REJ_BAD, topic, "post state with status %d",
		       ps->status);
	} else {
		bool online = ps->status == VIGIE__V1__POST_STATUS__POST_ONLINE;

		vigie_log_info("post %s %s%s%s%s%s", t->id,
			       online ? "online" : "offline",
			       ps->reason[0] ? ": " : "",
			       safe(a, sizeof(a), ps->reason),
			       r->n_links > 1 ? " on central " : "",
			       r->n_links > 1 ? central_name(r, b) : "");
		/* Two centrals: online while either says so (arbiter.h). */
		if (r->n_links > 1 &&
		    (vigie__arb_post(&r->arb, b, t->id, online) == ARB_UP) !=
			    online) {
			vigie_log_info("post %s still online on the other "
				       "central broker",
				       t->id);
			online = true;
		}
		vigie__sup_post(&r->sup, t->id, online);
	}
	vigie__v1__post_state__free_unpacked(ps, NULL);
}

static void handle_bridge(struct vigie_relay *r, unsigned b, const char *topic,
			  const void *payload, size_t len)
{
	const char *site = topic + strlen(BRIDGE_PREFIX);
	const char *slash = strchr(site, '/');
	char id[VIGIE_ID_MAX + 1];
	const char *p = payload;
	bool up;

	if (!slash || strcmp(slash, "/state") != 0 ||
	    (size_t)(slash - site) > VIGIE_ID_MAX) {
		r->st.unknown_topic++;
		return;
	}
	memcpy(id, site, (size_t)(slash - site));
	id[slash - site] = '\0';
	if (!vigie_id_valid(id)) {
		reject(r, REJ_BAD, topic, "bridge of an invalid site id");
		return;
	}
	/* broker-config names a site's bridge vigie-bridge-<site>: the
	 * bridge of a site another relay serves is that relay's to judge. */
	if (not_served(r, id, topic))
		return;
	if (len == 0)
		return;
	if (len != 1 || (p[0] != '0' && p[0] != '1')) {
		reject(r, REJ_BAD, topic,
		       "bridge state is \"0\" or \"1\", got %zu bytes", len);
		return;
	}
	up = p[0] == '1';
	if (r->n_links > 1) {
		/* A bridge lists both centrals and is on one at a time: the
		 * other's "0" is where it is not (arbiter.h). */
		vigie_log_info("site %s bridge %s on central %s", id,
			       up ? "up" : "down", central_name(r, b));
		if ((vigie__arb_bridge(&r->arb, b, id, up) == ARB_UP) != up) {
			vigie_log_info("site %s bridge still up on the other "
				       "central broker",
				       id);
			up = true;
		}
	} else {
		vigie_log_info("site %s bridge %s", id, up ? "up" : "down");
	}
	site_state(r, id);
	vigie__sup_bridge(&r->sup, id, up);
	site_dirty(r, id);
}

/* A change the supervisor saw, as a trouble event (raised or restored). */
static void on_sup_change(void *ud, const struct sup_change *c)
{
	struct vigie_relay *r = ud;
	struct inc_input in;
	struct inc_result res;
	char subject[INC_SUBJECT_MAX + 1], text[256];
	const char *reason_key = "reason";

	if (r->closing)
		return;
	memset(&in, 0, sizeof(in));
	in.kind = K(COMM_LOSS);
	in.state = c->lost ? ST(TROUBLE) : ST(RESTORE);
	in.attr_keys = &reason_key;
	in.attr_values = &c->reason;
	in.n_attrs = 1;
	switch (c->what) {
	case SUP_NODE: {
		struct sup_node *n = vigie__sup_find(&r->sup, c->site, c->id);

		snprintf(subject, sizeof(subject), "node:%s", c->id);
		in.site = c->site;
		in.node = c->id;
		if (!c->lost)
			snprintf(text, sizeof(text), "node %s heard again (%s)",
				 c->id, c->reason);
		else if (c->silent_ms)
			snprintf(text, sizeof(text),
				 "node %s silent for %.1f s (reporting time "
				 "%.1f s)",
				 c->id, (double)c->silent_ms / 1000.0,
				 n ? (double)n->reporting_ms / 1000.0 : 0.0);
		else
			snprintf(text, sizeof(text), "node %s offline (%s)",
				 c->id, c->reason);
		break;
	}
	case SUP_BRIDGE:
		snprintf(subject, sizeof(subject), "bridge");
		in.site = c->site;
		snprintf(text, sizeof(text), "site bridge of %s %s", c->site,
			 c->lost ? "down" : "up again");
		break;
	case SUP_POST:
	default:
		/* `supervise_posts: false`: the post's state still moves its
		 * dispatches to the backup (post_online); the trouble itself
		 * is the supervising relay's, so that the backup post is not
		 * called once per relay for one fact. A restore still goes
		 * through: it closes a trouble raised before the change. */
		if (!r->cfg->supervise_posts && c->lost) {
			vigie_log_info("police post %s offline: not raised "
				       "here (supervise_posts: false)",
				       c->id);
			return;
		}
		snprintf(subject, sizeof(subject), "post:%s", c->id);
		in.site = "";
		snprintf(text, sizeof(text), "police post %s %s", c->id,
			 c->lost ? "offline" : "online again");
		break;
	}
	in.subject = subject;
	in.text = text;
	vigie_log_warn("supervision: %s", text);
	if (vigie__inc_event(&r->inc, &in, &res)) {
		vigie_log_error(
			"out of memory: supervision trouble not recorded");
		return;
	}
	apply_result(r, &in, &res, "relay:supervision");
	if (in.site && *in.site)
		site_dirty(r, in.site);
}

/* ---- inbound: acks ---- */

static void handle_ack(struct vigie_relay *r, const struct vigie_topic *t,
		       const char *topic, const void *payload, size_t len)
{
	Vigie__V1__Ack *ack;
	struct incident *inc;
	char incident[VIGIE_ID_MAX + 1], by[VIGIE_ID_MAX + 1], note[200];
	char a[VIGIE_ID_MAX + 1], who[2 * VIGIE_ID_MAX + 16];
	const char *id;
	int level = -1;

	ack = vigie__v1__ack__unpack(NULL, len, payload);
	if (!ack) {
		reject(r, REJ_BAD, topic,
		       "does not decode as an Ack (%zu bytes)", len);
		return;
	}
	if (*ack->post && strcmp(ack->post, t->id) != 0) {
		reject(r, REJ_MISMATCH, topic,
		       "ack names post %s, the topic %s",
		       safe(a, sizeof(a), ack->post), t->id);
		goto out_free;
	}
	id = ack->incident;
	if (!*id && *ack->dispatch) {
		/* "<incident>-l<level>" */
		const char *dash = strrchr(ack->dispatch, '-');
		size_t n = dash ? (size_t)(dash - ack->dispatch) : 0;

		if (n && n <= VIGIE_ID_MAX) {
			memcpy(incident, ack->dispatch, n);
			incident[n] = '\0';
			id = incident;
		}
	}
	if (!*id || !vigie_id_valid(id)) {
		reject(r, REJ_BAD, topic,
		       "ack names no valid incident or dispatch id");
		goto out_free;
	}
	/* patterns: a pattern dispatch's ack is the tracker's. */
	if (vigie__patrelay_ack(r->patterns, t->id, ack)) {
		r->st.acks++;
		goto out_free;
	}
	inc = vigie__inc_find(&r->inc, id);
	if (!inc) {
		/* Posts are shared: with `serve: listed` the acks of the
		 * other relays' incidents come here too, as a matter of
		 * course. */
		if (r->cfg->serve_listed)
			vigie_log_debug(
				"ack on %s for %s: not an open incident "
				"of this relay (another relay's, or "
				"closed)",
				topic, id);
		else if (rl_allow(r))
			vigie_log_info("ack on %s for %s: no open incident of "
				       "that id (closed, or unknown)",
				       topic, id);
		goto out_free;
	}
	if (*ack->dispatch) {
		level = vigie__esc_level_of(ack->dispatch, inc->id);
		if (level < 0) {
			reject(r, REJ_MISMATCH, topic,
			       "dispatch %s is not of incident %s",
			       safe(a, sizeof(a), ack->dispatch), inc->id);
			goto out_free;
		}
	}
	if (!vigie__relay_utf8_valid(ack->by) ||
	    !vigie__relay_utf8_valid(ack->note) ||
	    !vigie__relay_utf8_valid(ack->source)) {
		reject(r, REJ_BAD, topic,
		       "ack with a name or note that is not UTF-8");
		goto out_free;
	}
	r->st.acks++;
	printable(by, sizeof(by), *ack->by ? ack->by : "unknown");
	printable(note, sizeof(note), ack->note);
	snprintf(who, sizeof(who), "post:%s/%s", t->id, by);
	{
		struct store_ack sa = {
			.incident = inc->id,
			.dispatch = ack->dispatch,
			.post = t->id,
			.by = by,
			.source = ack->source,
			.note = note,
			.time_us = ack->time_us,
			.recv_us = now_us(r),
		};

		if (!vigie__inc_ack(&r->inc, inc, by)) {
			vigie_log_debug("incident %s acknowledged again by %s",
					inc->id, by);
			goto out_free;
		}
		vigie__store_put_ack(r->store, &sa);
	}
	vigie__esc_ack(&inc->esc);
	audit(r, inc, "acknowledged", who,
	      "acknowledged by %s at post %s%s%s%s%s%s", by, t->id,
	      *ack->dispatch ? " (dispatch " : "",
	      *ack->dispatch ? safe(a, sizeof(a), ack->dispatch) : "",
	      *ack->dispatch ? ")" : "", note[0] ? ": " : "", note);
	for (uint32_t i = 0; i < RELAY_MAX_LEVELS; i++)
		if (inc->esc.d[i].sent)
			persist_dispatch(r, inc, i);
	persist_incident(r, inc);
out_free:
	vigie__v1__ack__free_unpacked(ack, NULL);
}

/* ---- MQTT ---- */

static void on_message(struct vigie_mqtt *m, void *ud, const char *topic,
		       const void *payload, size_t len, int qos, bool retain)
{
	struct relay_link *l = ud;
	struct vigie_relay *r = l->r;
	struct vigie_topic t;

	(void)m;
	(void)qos;
	r->st.messages++;
	if (r->closing)
		return;
	if (strncmp(topic, BRIDGE_PREFIX, strlen(BRIDGE_PREFIX)) == 0) {
		handle_bridge(r, l->index, topic, payload, len);
		return;
	}
	if (vigie_topic_parse(topic, &t)) {
		r->st.unknown_topic++;
		return;
	}
	if ((t.type == VIGIE_TOPIC_EVENT || t.type == VIGIE_TOPIC_HEARTBEAT ||
	     t.type == VIGIE_TOPIC_STATE) &&
	    not_served(r, t.site, topic))
		return;
	if (len > VIGIE_MAX_PAYLOAD) {
		reject(r, REJ_BAD, topic, "payload of %zu bytes, over 64 KiB",
		       len);
		return;
	}
	/* Where the node's traffic comes through, to judge a will from the
	 * other central (arbiter.h). Noted before the signature is checked:
	 * at worst a forged heartbeat postpones such a will until silence
	 * (the supervisor counts only checked heartbeats) says the same. */
	if (r->n_links > 1 && t.type == VIGIE_TOPIC_HEARTBEAT)
		vigie__arb_node_alive(&r->arb, l->index, t.site, t.node,
				      mono_ms(r));
	if (r->verifier &&
	    (t.type == VIGIE_TOPIC_EVENT || t.type == VIGIE_TOPIC_HEARTBEAT)) {
		/* Checked on the thread pool; back in order in on_verified.
		 * Refused when the verifier is full: an event stays
		 * unreceipted and comes again. */
		if (vigie__verify_submit(r->verifier, &t, topic, payload,
					 len) &&
		    t.type == VIGIE_TOPIC_EVENT) {
			r->st.events++;
			r->st.shed++;
		}
		return;
	}
	switch (t.type) {
	case VIGIE_TOPIC_EVENT:
		handle_event(r, &t, topic, payload, len);
		break;
	case VIGIE_TOPIC_HEARTBEAT:
		handle_heartbeat(r, &t, topic, payload, len);
		break;
	case VIGIE_TOPIC_STATE:
		handle_node_state(r, l->index, &t, topic, payload, len, retain);
		break;
	case VIGIE_TOPIC_POST_STATE:
		handle_post_state(r, l->index, &t, topic, payload, len);
		break;
	case VIGIE_TOPIC_ACK:
		handle_ack(r, &t, topic, payload, len);
		break;
	default:
		r->st.unknown_topic++;
		break;
	}
}

/* What was in flight on a lost connection may be gone: re-send every
 * unacked dispatch, republish every open incident and every site status.
 * With two centrals, only on the one that just connected: the other one
 * carried everything meanwhile. */
static void on_connect(struct vigie_mqtt *m, void *ud, bool session_present)
{
	struct relay_link *l = ud;
	struct vigie_relay *r = l->r;
	struct incident **list;
	struct hmap_entry *h;
	size_t pos = 0, n = 0;

	l->up = true;
	r->connected = true;
	vigie__sup_blind(&r->sup, false);
	if (r->n_links > 1)
		vigie__arb_connected(&r->arb, l->index, true);
	vigie_log_info("connected to the central broker%s%s (%s)",
		       r->n_links > 1 ? " " : "",
		       r->n_links > 1 ? vigie_mqtt_name(m) : "",
		       session_present
			       ? "session resumed"
			       : "new session: what was queued for us while "
				 "away is lost; nodes re-send it");
	/* A resumed session keeps the subscriptions of an earlier run: a
	 * relay that served every site before must not go on receiving them
	 * (what still comes is ignored, not_served()). */
	if (r->cfg->serve_listed && session_present) {
		vigie_mqtt_unsubscribe(m, ALL_SITES_TOPIC);
		vigie_mqtt_unsubscribe(m, ALL_BRIDGES_TOPIC);
	}
	for (h = vigie__hmap_first(&r->sites, &pos); h;
	     h = vigie__hmap_next(&r->sites, h, &pos))
		container_of(h, struct site_state, he)->dirty = true;
	list = malloc((r->inc.by_key.count + 1) * sizeof(*list));
	if (!list) {
		vigie_log_error("out of memory: open dispatches re-sent at "
				"their next due time");
		return;
	}
	/* Collected first: nothing below may run while the map is walked. */
	pos = 0;
	for (h = vigie__hmap_first(&r->inc.by_key, &pos); h;
	     h = vigie__hmap_next(&r->inc.by_key, h, &pos))
		list[n++] = container_of(h, struct incident, by_key);
	r->emit_only = r->n_links > 1 ? (int)l->index : -1;
	for (size_t i = 0; i < n; i++) {
		struct esc_actions acts = {.n = 0};
		struct esc_params p;

		esc_params(r, list[i], &p);
		vigie__esc_resend_all(&list[i]->esc, &p, &acts);
		apply_actions(r, list[i], &acts, false);
		persist_incident(r, list[i]);
	}
	free(list);
	vigie__patrelay_connected(r->patterns); /* patterns */
	r->emit_only = -1;
}

static void on_disconnect(struct vigie_mqtt *m, void *ud, int reason)
{
	struct relay_link *l = ud;
	struct vigie_relay *r = l->r;
	bool any = false;

	if (l->up)
		vigie_log_warn("disconnected from the central broker%s%s: %s",
			       r->n_links > 1 ? " " : "",
			       r->n_links > 1 ? vigie_mqtt_name(m) : "",
			       reason ? vigie_strerror(reason) : "stopped");
	l->up = false;
	if (r->n_links > 1)
		vigie__arb_connected(&r->arb, l->index, false);
	for (size_t i = 0; i < r->n_links; i++)
		any = any || r->links[i].up;
	r->connected = any;
	if (!any)
		vigie__sup_blind(&r->sup, true);
}

/* ---- site status ---- */

static int site_state_value(const struct vigie_relay *r, const char *site,
			    bool *alarm, bool *critical)
{
	struct hmap_entry *h;
	size_t pos = 0;
	bool trouble = false;

	*alarm = *critical = false;
	for (h = vigie__hmap_first(&r->inc.by_key, &pos); h;
	     h = vigie__hmap_next(&r->inc.by_key, h, &pos)) {
		const struct incident *inc =
			container_of(h, struct incident, by_key);

		if (strcmp(inc->site, site) != 0)
			continue;
		if (inc->trouble) {
			trouble = true;
			continue;
		}
		*alarm = true;
		if ((inc->confirmed ||
		     inc->priority >= VIGIE__V1__PRIORITY__PRIORITY_CRITICAL) &&
		    inc->state != I(ACKNOWLEDGED))
			*critical = true;
	}
	if (vigie__sup_bridge_state(&r->sup, site) == 0)
		return VIGIE__V1__SITE_STATE__SITE_OFFLINE;
	if (*alarm)
		return VIGIE__V1__SITE_STATE__SITE_ALARM;
	return trouble ? VIGIE__V1__SITE_STATE__SITE_TROUBLE
		       : VIGIE__V1__SITE_STATE__SITE_NORMAL;
}

static void publish_status(struct vigie_relay *r, struct site_state *ss)
{
	const struct relay_site *cs = vigie__relayconf_site(r->cfg, ss->id);
	Vigie__V1__SiteStatus m = VIGIE__V1__SITE_STATUS__INIT;
	Vigie__V1__Location loc = VIGIE__V1__LOCATION__INIT;
	Vigie__V1__NodeHealth health[MAX_STATUS_NODES], *hp[MAX_STATUS_NODES];
	char *open[MAX_STATUS_INCIDENTS], *uncovered[MAX_UNCOVERED];
	struct sup_site *sup = vigie__sup_site(&r->sup, ss->id, false);
	char topic[VIGIE_TOPIC_MAX];
	struct hmap_entry *h;
	size_t pos = 0;
	bool alarm, critical;
	uint8_t *buf;
	size_t len;

	m.site = ss->id;
	m.name = (char *)(cs && cs->name ? cs->name : ss->id);
	m.time_us = now_us(r);
	m.state = site_state_value(r, ss->id, &alarm, &critical);
	m.posture = critical ? VIGIE__V1__POSTURE__POSTURE_CRITICAL
		    : alarm  ? VIGIE__V1__POSTURE__POSTURE_HEIGHTENED
			     : VIGIE__V1__POSTURE__POSTURE_NORMAL;
	/* patterns: a campaign in scope raises the posture. */
	if (vigie__patrelay_posture(r->patterns, ss->id) > (int)m.posture)
		m.posture = vigie__patrelay_posture(r->patterns, ss->id);
	if (cs && cs->has_location) {
		loc.lat = cs->lat;
		loc.lon = cs->lon;
		m.location = &loc;
	}
	m.region = (char *)(cs && cs->region ? cs->region : "");
	for (h = vigie__hmap_first(&r->inc.by_key, &pos);
	     h && m.n_open_incidents < MAX_STATUS_INCIDENTS;
	     h = vigie__hmap_next(&r->inc.by_key, h, &pos)) {
		struct incident *inc = container_of(h, struct incident, by_key);

		if (strcmp(inc->site, ss->id) == 0)
			open[m.n_open_incidents++] = inc->id;
	}
	m.open_incidents = open;
	for (struct sup_node *n = sup ? sup->nodes : NULL;
	     n && m.n_nodes < MAX_STATUS_NODES; n = n->site_next) {
		Vigie__V1__NodeHealth *nh = &health[m.n_nodes];

		vigie__v1__node_health__init(nh);
		nh->node = n->node;
		nh->online = !n->lost;
		nh->last_heartbeat_us = n->last_hb_us;
		nh->outbox_pending = n->outbox_pending;
		nh->path = n->path;
		hp[m.n_nodes++] = nh;
		for (size_t i = 0;
		     i < n->n_uncovered && m.n_uncovered_zones < MAX_UNCOVERED;
		     i++) {
			bool dup = false;

			for (size_t j = 0; j < m.n_uncovered_zones && !dup; j++)
				dup = strcmp(uncovered[j], n->uncovered[i]) ==
				      0;
			if (!dup)
				uncovered[m.n_uncovered_zones++] =
					n->uncovered[i];
		}
	}
	m.nodes = hp;
	m.uncovered_zones = uncovered;
	m.bridge_up = vigie__sup_bridge_state(&r->sup, ss->id) != 0;
	if (vigie_topic_build(topic, sizeof(topic), VIGIE_TOPIC_STATUS, ss->id,
			      NULL) ||
	    vigie_pack(&m.base, &buf, &len))
		return;
	emit(r, FX_STATUS, topic, buf, len, 1, true);
	ss->dirty = false;
	ss->last_pub_ms = mono_ms(r);
}

/* ---- the tick ---- */

static void on_quiet_closed(void *ud, struct incident *inc)
{
	struct vigie_relay *r = ud;

	audit(r, inc, "closed", "relay",
	      "acknowledged by %s and quiet for %llu s", inc->acked_by,
	      (unsigned long long)(r->cfg->close_after_ms / 1000));
	persist_incident(r, inc);
	vigie__inc_forget(&r->inc, inc);
}

static void log_stats(struct vigie_relay *r, bool force)
{
	struct vigie_relay_stats s;
	char listed[48] = "";

	vigie__relay_stats(r, &s);
	if (!force && s.messages == r->last_logged.messages &&
	    s.open_incidents == r->last_logged.open_incidents)
		return;
	if (r->cfg->serve_listed)
		snprintf(listed, sizeof(listed), ", %" PRIu64 " not served",
			 s.not_served);
	r->last_logged = s;
	vigie_log_info(
		"stats: %" PRIu64 " messages, %" PRIu64 " events (%" PRIu64
		" stored, %" PRIu64 " repeats, %" PRIu64 " shed), %" PRIu64
		" receipts, %" PRIu64 " rejected (%" PRIu64 " bad, %" PRIu64
		" mismatched), %" PRIu64 " heartbeats, %" PRIu64
		" acks, %" PRIu64 " dispatches, %zu open incidents, %" PRIu64
		" commits, %" PRIu64 " forged, %" PRIu64 " replayed, %" PRIu64
		" unsigned%s",
		s.messages, s.events, s.stored, s.duplicates, s.shed,
		s.receipts, s.rejected, s.bad_payload, s.mismatch, s.heartbeats,
		s.acks, s.dispatches, s.open_incidents, s.commits, s.forged,
		s.replayed, s.unsigned_accepted, listed);
	vigie__patrelay_log_stats(r->patterns); /* patterns */
}

static void tick_cb(uv_timer_t *t)
{
	struct vigie_relay *r = t->data;
	uint64_t now = now_us(r), mono = mono_ms(r);
	struct incident *due[256];
	struct hmap_entry *h;
	size_t pos = 0, n = 0;

	vigie__sup_tick(&r->sup);
	if (vigie__inc_reserved(&r->inc)) {
		size_t gone = vigie__inc_drop_reserved(&r->inc, now);

		if (gone)
			vigie_log_info("%zu id(s) of the intent log not "
				       "claimed within the incident window: "
				       "their alarms did not come back",
				       gone);
	}
	/* Only what is due, earliest first (taken off the schedule: each is
	 * seen once a tick); at most 256, the rest on the next tick. */
	while (n < 256 && (due[n] = vigie__inc_next_due(&r->inc, now)))
		n++;
	for (size_t i = 0; i < n; i++) {
		struct incident *inc = due[i];
		uint64_t d = vigie__esc_next_due(&inc->esc);

		if (d && d <= now) {
			struct esc_actions acts = {.n = 0};
			struct esc_params p;

			esc_params(r, inc, &p);
			vigie__esc_tick(&inc->esc, &p, &acts);
			if (apply_actions(r, inc, &acts, false))
				persist_incident(r, inc);
			else if (acts.n)
				persist_escalation(r, inc);
		}
		if (vigie__inc_close_if_quiet(&r->inc, inc))
			on_quiet_closed(r, inc);
		else
			vigie__inc_schedule(&r->inc, inc);
	}
	vigie__patrelay_tick(r->patterns); /* patterns: re-sends */
	clear_closed(r, now);
	pos = 0;
	for (h = vigie__hmap_first(&r->sites, &pos); h;
	     h = vigie__hmap_next(&r->sites, h, &pos)) {
		struct site_state *ss = container_of(h, struct site_state, he);

		if (ss->dirty &&
		    mono - ss->last_pub_ms >= r->cfg->status_interval_ms)
			publish_status(r, ss);
	}
	if (r->shedding &&
	    vigie__store_backlog(r->store) < r->cfg->max_backlog / 2) {
		r->shedding = false;
		vigie_log_info(
			"store backlog drained: accepting new events again");
	}
	if (mono - r->last_stats_ms >= STATS_INTERVAL_MS) {
		r->last_stats_ms = mono;
		log_stats(r, false);
	}
}

/* ---- loading the durable state ---- */

struct loader_ctx {
	struct vigie_relay *r;
	size_t incidents, escalating, bad;
};

static void load_stream(void *ud, const char *site, const char *node,
			uint64_t boot_id, uint64_t contig)
{
	struct loader_ctx *lc = ud;
	struct stream *s;

	vigie__replay_note_boot(&lc->r->replay, site, node, boot_id);
	if (vigie__streams_get(&lc->r->streams, site, node, boot_id, true, &s))
		return;
	s->contig = s->committed = s->batch_contig = contig;
}

static void load_seq(void *ud, const char *site, const char *node,
		     uint64_t boot_id, uint64_t seq)
{
	struct loader_ctx *lc = ud;
	struct stream *s;

	if (vigie__streams_get(&lc->r->streams, site, node, boot_id, true, &s))
		return;
	if (vigie__stream_check(&lc->r->streams, s, seq) == STREAM_NEW)
		vigie__stream_mark(&lc->r->streams, s, seq);
}

static void load_node(void *ud, const char *site, const char *node,
		      uint64_t reporting_ms)
{
	struct loader_ctx *lc = ud;
	struct sup_node *n = vigie__sup_watch(&lc->r->sup, site, node);

	if (!n)
		return;
	n->persisted = true;
	n->persisted_ms = reporting_ms;
	site_state(lc->r, site);
}

static void load_id(void *ud, const char *prefix, uint64_t sec, uint32_t k)
{
	struct loader_ctx *lc = ud;

	vigie__inc_note_id(&lc->r->inc, prefix, sec, k);
}

static void load_incident(void *ud, const struct store_incident *si)
{
	struct loader_ctx *lc = ud;
	struct vigie_relay *r = lc->r;
	struct incident *inc = vigie__inc_new();

	if (!inc || vigie__msg_incident_restore(si->data, si->len,
						si->detectors, inc)) {
		vigie_log_error(
			"incident %s: stored state does not decode, skipped",
			si->id);
		vigie__inc_destroy(inc);
		lc->bad++;
		return;
	}
	snprintf(inc->id, sizeof(inc->id), "%s", si->id);
	snprintf(inc->subject, sizeof(inc->subject), "%s", si->subject);
	snprintf(inc->id_prefix, sizeof(inc->id_prefix), "%s", si->id_prefix);
	inc->state = si->state;
	inc->opened_us = si->opened_us;
	inc->last_activity_us = si->last_activity_us;
	inc->id_sec = si->id_sec;
	inc->id_k = si->id_k;
	vigie__inc_rekey(inc);
	if (vigie__inc_adopt(&r->inc, inc)) {
		vigie__inc_destroy(inc);
		lc->bad++;
		return;
	}
	lc->incidents++;
	/* Its trouble is open: supervision must report the return. */
	if (inc->trouble && inc->kind == K(COMM_LOSS)) {
		if (strncmp(inc->subject, "node:", 5) == 0)
			vigie__sup_mark_lost(&r->sup, SUP_NODE, inc->site,
					     inc->subject + 5);
		else if (strcmp(inc->subject, "bridge") == 0)
			vigie__sup_mark_lost(&r->sup, SUP_BRIDGE, inc->site,
					     NULL);
		else if (strncmp(inc->subject, "post:", 5) == 0)
			vigie__sup_mark_lost(&r->sup, SUP_POST, NULL,
					     inc->subject + 5);
	}
	if (inc->site[0])
		site_state(r, inc->site);
}

static void load_escalation(void *ud, const struct store_escalation *e)
{
	struct loader_ctx *lc = ud;
	struct incident *inc = vigie__inc_find(&lc->r->inc, e->incident);

	if (!inc)
		return;
	inc->esc.active = e->active;
	inc->esc.acked = e->acked;
	inc->esc.level =
		e->level < RELAY_MAX_LEVELS ? e->level : RELAY_MAX_LEVELS - 1;
	inc->esc.level_since_us = e->level_since_us;
	inc->esc.deadline_us = e->deadline_us;
	if (e->active && !e->acked)
		lc->escalating++;
}

static void load_dispatch(void *ud, const struct store_dispatch *d)
{
	struct loader_ctx *lc = ud;
	struct incident *inc = vigie__inc_find(&lc->r->inc, d->incident);
	struct esc_dispatch *ed;

	if (!inc || d->level >= RELAY_MAX_LEVELS)
		return;
	ed = &inc->esc.d[d->level];
	ed->sent = true;
	ed->alert = d->alert;
	snprintf(ed->post, sizeof(ed->post), "%s", d->post);
	snprintf(ed->backup_for, sizeof(ed->backup_for), "%s", d->backup_for);
	ed->attempts = d->attempts;
	ed->first_us = d->first_us;
	ed->last_us = d->last_us;
	ed->next_us = d->next_us;
}

/* ---- open, start, close ---- */

/* ---- patterns: the tracker's hooks (relay/patterns_relay.c) ---- */

static void pattern_emit(void *ud, enum patrelay_emit kind, const char *topic,
			 uint8_t *payload, size_t len, bool retain)
{
	struct vigie_relay *r = ud;
	struct vigie_topic t;

	/* A museum told to raise its posture shows it in its status. */
	if (kind == PATRELAY_ALERT && vigie_topic_parse(topic, &t) == 0)
		site_dirty(r, t.site);
	emit_after_commit(r,
			  kind == PATRELAY_DISPATCH ? FX_DISPATCH
			  : kind == PATRELAY_ALERT  ? FX_ALERT
						    : FX_INCIDENT,
			  topic, payload, len, 1, retain);
}

struct intent_ctx {
	struct vigie_relay *r;
	size_t reserved, failed;
};

/* A line of the intent log: an incident whose messages may have left
 * without its row. */
static void load_intent(void *ud, const struct intent_rec *rec)
{
	struct intent_ctx *ic = ud;
	bool has = false;

	if (vigie__store_has_incident(ic->r->store, rec->id, &has)) {
		ic->failed++;
		return;
	}
	if (has)
		return;
	if (vigie__inc_reserve(&ic->r->inc, rec->key, rec->id, rec->prefix,
			       rec->sec, rec->k, rec->first_event_us))
		ic->failed++;
	else
		ic->reserved++;
}

static int load_intents(struct vigie_relay *r)
{
	struct intent_ctx ic = {.r = r};
	int rc = vigie__intents_open(&r->intents, r->cfg->database, load_intent,
				     &ic);

	if (rc)
		return rc;
	if (ic.reserved)
		vigie_log_warn("intent log %s: %zu incident(s) published but "
			       "not stored before the relay stopped: their "
			       "ids are kept for their alarms, sent again",
			       r->intents.path, ic.reserved);
	if (ic.failed)
		vigie_log_error("intent log %s: %zu line(s) could not be "
				"checked or kept",
				r->intents.path, ic.failed);
	if (!vigie__inc_reserved(&r->inc) && r->intents.size)
		vigie__intents_reset(&r->intents);
	return 0;
}

static void load_closed(void *ud, const char *id, uint64_t closed_us)
{
	struct loader_ctx *lc = ud;

	queue_clear(lc->r, id, closed_us);
}

static void load_pattern_row(void *ud, const char *ns, const char *key,
			     uint64_t seq, const void *data, size_t len)
{
	struct loader_ctx *lc = ud;

	vigie__patrelay_load_row(lc->r->patterns, ns, key, seq, data, len);
}

static int open_patterns(struct vigie_relay *r)
{
	struct patrelay_host h = {
		.store = r->store,
		.cfg = r->cfg,
		.clock = r->clock,
		.posts = &r->posts,
		.emit = pattern_emit,
		.ud = r,
	};

	return vigie__patrelay_open(&h, &r->patterns);
}

/* `serve: listed`: the upward subtree and the bridge state of each listed
 * site (broker-config names a site's bridge vigie-bridge-<site>), so the
 * broker sends nothing of the other relays' sites and an ACL may allow
 * this relay no more than its sites' topics. */
static int subscribe_listed(struct vigie_relay *r, struct relay_link *l)
{
	char topic[VIGIE_TOPIC_MAX];
	int rc = 0;

	for (size_t i = 0; !rc && i < r->cfg->n_sites; i++) {
		const char *site = r->cfg->sites[i].id;

		snprintf(topic, sizeof(topic), "vigie/v1/site/%s/node/+/#",
			 site);
		rc = vigie_mqtt_subscribe(l->mqtt, topic, 1);
		if (rc)
			break;
		snprintf(topic, sizeof(topic), "%s%s/state", BRIDGE_PREFIX,
			 site);
		rc = vigie_mqtt_subscribe(l->mqtt, topic, 1);
	}
	return rc;
}

/* One central connection: the relay's persistent session there and the
 * same subscriptions on each. */
static int open_link(struct vigie_relay *r, const struct relay_broker *b,
		     const char *name)
{
	static const struct vigie_mqtt_callbacks cbs = {
		.on_connect = on_connect,
		.on_disconnect = on_disconnect,
		.on_message = on_message,
	};
	struct relay_link *l = &r->links[r->n_links];
	struct vigie_mqtt_options mo;
	int rc;

	memset(&mo, 0, sizeof(mo));
	vigie_conf_broker_apply(&b->conn, &mo);
	mo.client_id = b->client_id;
	/* Persistent session: what is published for us while we are away
	 * (restart, kill -9) waits at the broker. */
	mo.clean_start = false;
	mo.session_expiry_s = (uint32_t)b->session_expiry_s;
	mo.reconnect_min_ms = 100;
	mo.reconnect_max_ms = 5000;
	mo.max_inflight = 1000;
	mo.name = name;
	/* With a standby, a hung central must be left quickly: an attempt
	 * that gets no CONNACK ends within one keepalive (the default 10 s
	 * otherwise). */
	if (r->cfg->has_standby)
		mo.connect_timeout_ms = (uint32_t)b->conn.keepalive_s * 1000;
	l->r = r;
	l->index = (unsigned)r->n_links;
	rc = vigie_mqtt_open(r->loop, &mo, &cbs, l, &l->mqtt);
	if (rc)
		return rc;
	r->n_links++;
	if (!r->cfg->serve_listed) {
		rc = vigie_mqtt_subscribe(l->mqtt, ALL_SITES_TOPIC, 1);
		if (!rc)
			rc = vigie_mqtt_subscribe(l->mqtt, ALL_BRIDGES_TOPIC,
						  1);
	} else {
		rc = subscribe_listed(r, l);
	}
	/* Posts are shared between the relays of a partition: each follows
	 * every post's state (its dispatches fail over) and hears every ack
	 * (those of incidents it does not hold are ignored). */
	if (!rc)
		rc = vigie_mqtt_subscribe(l->mqtt, "vigie/v1/post/+/state", 1);
	if (!rc)
		rc = vigie_mqtt_subscribe(l->mqtt, "vigie/v1/post/+/ack", 1);
	return rc;
}

/* `serve: listed`, said at start: which sites, what of the posts, and
 * the open incidents of sites no longer served (a relay that served every
 * site before): they stay here until acknowledged and closed, since the
 * relay that serves their site now never heard of them. */
static void log_partition(struct vigie_relay *r)
{
	const struct relay_config *cfg = r->cfg;
	char list[512];
	struct hmap_entry *h;
	size_t pos = 0, used = 0, foreign = 0;

	list[0] = '\0';
	for (size_t i = 0; i < cfg->n_sites; i++) {
		int k = snprintf(list + used, sizeof(list) - used, "%s%s",
				 i ? ", " : "", cfg->sites[i].id);

		if (k < 0 || (size_t)k >= sizeof(list) - used) {
			snprintf(list + used, sizeof(list) - used, ", ...");
			break;
		}
		used += (size_t)k;
	}
	vigie_log_info("serve: listed: %zu site(s) served here (%s); other "
		       "sites' traffic and bridges are ignored",
		       cfg->n_sites, list);
	if (cfg->supervise_posts && !cfg->supervise_posts_set && cfg->n_posts)
		vigie_log_info("police posts supervised here too: relays that "
			       "share posts each raise a post's loss; set "
			       "supervise_posts: false on all but one of them");
	for (h = vigie__hmap_first(&r->inc.by_key, &pos); h;
	     h = vigie__hmap_next(&r->inc.by_key, h, &pos)) {
		const struct incident *inc =
			container_of(h, struct incident, by_key);

		if (inc->site[0] && !vigie__relayconf_serves(cfg, inc->site))
			foreign++;
	}
	if (foreign)
		vigie_log_warn("%zu open incident(s) of sites not served here "
			       "any more: escalated here until acknowledged; "
			       "a trouble among them sees no restore here",
			       foreign);
}

int vigie__relay_open(uv_loop_t *loop, const struct relay_config *cfg,
		      const struct relay_clock *clock, struct vigie_relay **out)
{
	struct store_options so;
	struct store_loader sl;
	struct loader_ctx lc;
	struct inc_params ip;
	struct vigie_relay *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return VIGIE_ENOMEM;
	r->loop = loop;
	r->emit_only = -1;
	r->intents.fd = -1; /* not open yet */
	vigie__arb_init(&r->arb, cfg->has_standby ? 2 : 1, MAX_ARB_ENTRIES);
	r->cfg = cfg;
	r->clock = clock ? clock : vigie__clock_real();
	r->posts.online = post_online;
	r->posts.backup = post_backup;
	r->posts.ud = r;
	r->post_ladders = calloc(cfg->n_posts + 1, sizeof(*r->post_ladders));
	if (!r->post_ladders) {
		free(r);
		return VIGIE_ENOMEM;
	}
	/* A post that goes away: its backup is told, until someone acks. */
	for (size_t i = 0; i < cfg->n_posts; i++) {
		struct relay_ladder *l = &r->post_ladders[i].ladder;

		l->police = 1;
		if (!cfg->posts[i].backup)
			continue;
		l->n = 1;
		l->levels[0].name = "backup-post";
		l->levels[0].post = cfg->posts[i].backup;
		l->levels[0].ack_deadline_ms = 60000;
	}
	vigie__streams_init(&r->streams, MAX_STREAMS, MAX_ABOVE);
	if (vigie__replay_init(&r->replay, REPLAY_MAX_NODES, REPLAY_SLOTS)) {
		free(r->post_ladders);
		free(r);
		return VIGIE_ENOMEM;
	}
	memset(&ip, 0, sizeof(ip));
	ip.clock = r->clock;
	ip.window_ms = cfg->incident_window_ms;
	ip.confirm_window_ms = cfg->confirm_window_ms;
	ip.close_after_ms = cfg->close_after_ms;
	ip.immediate_kinds = cfg->immediate_kinds;
	ip.n_immediate = cfg->n_immediate;
	vigie__inc_init(&r->inc, &ip);
	vigie__sup_init(&r->sup, r->clock, cfg, cfg->reporting_ms,
			on_sup_change, r);
	/* Not connected yet: nobody's silence is theirs until we are. */
	vigie__sup_blind(&r->sup, true);

	memset(&so, 0, sizeof(so));
	so.sync_full = cfg->sync_full;
	so.on_seal = on_seal;
	so.ud = r;
	rc = vigie__store_open(loop, cfg->database, &so, &r->store);
	if (rc)
		goto out_free;
	rc = open_patterns(r); /* patterns */
	if (rc)
		goto out_close_store;
	memset(&lc, 0, sizeof(lc));
	lc.r = r;
	memset(&sl, 0, sizeof(sl));
	sl.stream = load_stream;
	sl.seq = load_seq;
	sl.node = load_node;
	sl.incident = load_incident;
	sl.escalation = load_escalation;
	sl.dispatch = load_dispatch;
	sl.id = load_id;
	sl.closed = load_closed;
	sl.pattern = load_pattern_row; /* patterns */
	sl.ud = &lc;
	rc = vigie__store_load(r->store, &sl);
	if (!rc)
		rc = vigie__patrelay_loaded(r->patterns); /* patterns */
	if (rc)
		goto out_close_store;
	{
		/* Everything loaded is durable. */
		struct hmap_entry *h;
		size_t pos = 0;

		for (h = vigie__hmap_first(&r->streams.map, &pos); h;
		     h = vigie__hmap_next(&r->streams.map, h, &pos)) {
			struct stream *s = container_of(h, struct stream, he);

			s->committed = s->batch_contig = s->contig;
		}
		/* Every resumed incident on the tick's schedule. */
		pos = 0;
		for (h = vigie__hmap_first(&r->inc.by_key, &pos); h;
		     h = vigie__hmap_next(&r->inc.by_key, h, &pos))
			if (vigie__inc_schedule(
				    &r->inc,
				    container_of(h, struct incident, by_key))) {
				rc = VIGIE_ENOMEM;
				goto out_close_store;
			}
	}
	rc = load_intents(r);
	if (rc)
		goto out_close_store;
	/* Configured nodes are supervised from the start, heard or not. */
	for (size_t i = 0; i < cfg->n_sites; i++) {
		site_state(r, cfg->sites[i].id);
		for (size_t j = 0; j < cfg->sites[i].n_nodes; j++)
			vigie__sup_watch(&r->sup, cfg->sites[i].id,
					 cfg->sites[i].nodes[j].id);
	}
	vigie_log_info("relay %s: database %s: %zu open incident(s) resumed "
		       "(%zu escalating), %zu stream(s), %zu known node(s)%s",
		       cfg->id, cfg->database, lc.incidents, lc.escalating,
		       r->streams.map.count, r->sup.nodes.count,
		       lc.bad ? ", some incidents unreadable (see above)" : "");

	if (cfg->serve_listed)
		log_partition(r);
	rc = open_link(r, &cfg->broker,
		       cfg->has_standby ? "primary" : "central");
	if (!rc && cfg->has_standby)
		rc = open_link(r, &cfg->standby, "standby");
	if (rc)
		goto out_close_links;
	if (cfg->trust_store) {
		rc = vigie__verify_open(loop, cfg->trust_store, on_verified, r,
					&r->verifier);
		if (rc)
			goto out_close_links;
		vigie_log_info("signatures checked against %zu key(s) of %s; "
			       "unsigned events and heartbeats are %s",
			       vigie_trust_count(cfg->trust_store), cfg->trust,
			       cfg->require_signatures ? "refused"
						       : "accepted (logged)");
	} else {
		vigie_log_warn("no trust store (trust: in %s): events and "
			       "heartbeats are accepted UNSIGNED - anyone who "
			       "can publish on a site's topics can forge "
			       "alarms or hide a cut link",
			       cfg->path);
	}
	uv_timer_init(loop, &r->tick);
	r->tick.data = r;
	*out = r;
	return 0;
out_close_links:
	for (size_t i = 0; i < r->n_links; i++)
		vigie_mqtt_close(r->links[i].mqtt, NULL, NULL);
out_close_store:
	/* Nothing ran yet: the store closes on the loop, then frees itself. */
	vigie__store_close(r->store, NULL, NULL);
out_free:
	vigie__intents_close(&r->intents);
	vigie__patrelay_close(r->patterns); /* patterns */
	vigie__arb_free(&r->arb);
	vigie__inc_free(&r->inc);
	vigie__sup_free(&r->sup);
	vigie__streams_free(&r->streams);
	vigie__replay_free(&r->replay);
	free(r->post_ladders);
	free(r);
	return rc;
}

int vigie__relay_start(struct vigie_relay *r)
{
	vigie__store_audit(r->store, now_us(r), NULL, "started", "relay",
			   "relay started");
	r->last_stats_ms = mono_ms(r);
	uv_timer_start(&r->tick, tick_cb, TICK_MS, TICK_MS);
	for (size_t i = 0; i < r->n_links; i++) {
		int rc = vigie_mqtt_start(r->links[i].mqtt);

		if (rc)
			return rc;
	}
	return 0;
}

void vigie__relay_stats(const struct vigie_relay *r,
			struct vigie_relay_stats *st)
{
	*st = r->st;
	st->open_incidents = r->inc.open;
	st->backlog = vigie__store_backlog(r->store);
	st->commits = vigie__store_commits(r->store);
	st->commit_failures = vigie__store_failures(r->store);
	st->stored = st->events - st->duplicates - st->shed;
}

static void free_all(struct vigie_relay *r)
{
	struct hmap_entry *h, *next;
	size_t pos = 0;

	vigie__intents_close(&r->intents);
	for (h = vigie__hmap_first(&r->zones, &pos); h; h = next) {
		struct learned_zone *lz =
			container_of(h, struct learned_zone, he);

		next = vigie__hmap_next(&r->zones, h, &pos);
		vigie__v1__zone__free_unpacked(lz->zone, NULL);
		free(lz);
	}
	vigie__hmap_free(&r->zones);
	for (h = vigie__hmap_first(&r->sites, &pos); h; h = next) {
		next = vigie__hmap_next(&r->sites, h, &pos);
		free(container_of(h, struct site_state, he));
	}
	vigie__hmap_free(&r->sites);
	vigie__patrelay_close(r->patterns); /* patterns */
	vigie__arb_free(&r->arb);
	vigie__inc_free(&r->inc);
	vigie__sup_free(&r->sup);
	vigie__streams_free(&r->streams);
	vigie__replay_free(&r->replay);
	free(r->touched);
	free(r->clear_q);
	free(r->post_ladders);
}

static void close_step(void *arg)
{
	struct vigie_relay *r = arg;
	void (*cb)(void *) = r->close_cb;
	void *cb_arg = r->close_arg;

	if (--r->closes_pending > 0)
		return;
	free_all(r);
	free(r);
	if (cb)
		cb(cb_arg);
}

static void on_tick_closed(uv_handle_t *h)
{
	close_step(h->data);
}

static void on_store_closed(void *arg)
{
	struct vigie_relay *r = arg;

	/* Deferred messages went out during the store's close; now the
	 * connections can go (cleanly: no will). */
	for (size_t i = 0; i < r->n_links; i++)
		vigie_mqtt_close(r->links[i].mqtt, close_step, r);
}

void vigie__relay_close(struct vigie_relay *r, void (*cb)(void *arg), void *arg)
{
	if (r->closing)
		return;
	log_stats(r, true);
	vigie__store_audit(r->store, now_us(r), NULL, "stopped", "relay",
			   "relay stopped");
	r->closing = true;
	r->close_cb = cb;
	r->close_arg = arg;
	r->closes_pending = (r->verifier ? 2 : 1) + (int)r->n_links;
	/* What the verifier still holds is dropped: unreceipted, it comes
	 * again. */
	if (r->verifier)
		vigie__verify_close(r->verifier, close_step, r);
	uv_timer_stop(&r->tick);
	uv_close((uv_handle_t *)&r->tick, on_tick_closed);
	vigie__store_close(r->store, on_store_closed, r);
}
