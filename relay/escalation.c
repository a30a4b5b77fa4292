/* The escalation ladder state machine; the rules are in escalation.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escalation.h"

static uint64_t now_us(const struct esc_params *p)
{
	return p->clock->now_us(p->clock);
}

static uint64_t resend_interval_us(const struct esc_params *p,
				   uint32_t attempts)
{
	uint64_t ms = p->resend_ms;

	for (uint32_t i = 1; i < attempts && ms < p->resend_max_ms; i++)
		ms *= 2;
	if (ms > p->resend_max_ms)
		ms = p->resend_max_ms;
	return ms * 1000;
}

static bool post_online(const struct esc_params *p, const char *post)
{
	return !p->posts || !p->posts->online ||
	       p->posts->online(p->posts->ud, post);
}

static const char *post_backup(const struct esc_params *p, const char *post)
{
	if (!p->posts || !p->posts->backup)
		return NULL;
	return p->posts->backup(p->posts->ud, post);
}

static void push(struct esc_actions *out, const struct esc_action *a)
{
	/* The array is sized for the worst case of one call; never more. */
	if (out->n < ESC_MAX_ACTIONS)
		out->a[out->n++] = *a;
}

static void copy_id(char *dst, const char *src)
{
	snprintf(dst, VIGIE_ID_MAX + 1, "%s", src ? src : "");
}

/* First publication of level `i`, to its post or, while that is offline,
 * to its backup. */
static void notify(struct esc_state *s, const struct esc_params *p, uint32_t i,
		   uint64_t now, struct esc_actions *out)
{
	const struct relay_level *lv = &p->ladder->levels[i];
	struct esc_dispatch *d = &s->d[i];
	struct esc_action a = {.type = ESC_NOTIFY, .level = i, .attempt = 1};

	if (d->sent)
		return;
	memset(d, 0, sizeof(*d));
	d->sent = true;
	d->alert = lv->alert;
	d->attempts = 1;
	d->first_us = d->last_us = now;
	if (!lv->alert) {
		const char *b = post_backup(p, lv->post);

		copy_id(d->post, lv->post);
		if (!post_online(p, lv->post) && b && post_online(p, b)) {
			copy_id(d->backup_for, lv->post);
			copy_id(d->post, b);
		}
		d->next_us = now + resend_interval_us(p, 1);
		a.post = d->post;
		a.from_post = d->backup_for[0] ? d->backup_for : NULL;
	}
	a.alert = lv->alert;
	push(out, &a);
}

static void set_level(struct esc_state *s, const struct esc_params *p,
		      uint32_t level, uint64_t now)
{
	s->level = level;
	s->level_since_us = now;
	s->deadline_us =
		level + 1 < p->ladder->n
			? now + p->ladder->levels[level].ack_deadline_ms * 1000
			: 0;
}

/* Notify every level up to `target` not told yet: jumping to the police
 * does not leave site security or HQ in the dark. */
static void jump(struct esc_state *s, const struct esc_params *p,
		 uint32_t target, uint64_t now, struct esc_actions *out)
{
	uint32_t from = s->level;

	if (target > from) {
		struct esc_action a = {.type = ESC_ESCALATE,
				       .level = target,
				       .from_level = from};

		push(out, &a);
	}
	/* The target first: on a jump to the police, the police dispatch
	 * leaves before site security and HQ are told. */
	for (uint32_t i = target + 1; i-- > 0;)
		notify(s, p, i, now, out);
	set_level(s, p, target, now);
}

void vigie__esc_start(struct esc_state *s, const struct esc_params *p,
		      bool immediate, struct esc_actions *out)
{
	uint64_t now = now_us(p);
	uint32_t target = 0;

	memset(s, 0, sizeof(*s));
	if (!p->ladder->n)
		return;
	s->active = true;
	if (immediate && p->ladder->police < p->ladder->n)
		target = (uint32_t)p->ladder->police;
	jump(s, p, target, now, out);
}

void vigie__esc_police(struct esc_state *s, const struct esc_params *p,
		       struct esc_actions *out)
{
	size_t police = p->ladder->police;

	if (police >= p->ladder->n || s->d[police].sent)
		return;
	s->acked = false;
	s->active = true;
	jump(s, p, (uint32_t)police, now_us(p), out);
}

/* Move a dispatch whose post is offline to one that is not: the backup of
 * its original post, or the original again once it is back. */
static bool redirect(struct esc_dispatch *d, const struct esc_params *p,
		     uint32_t level, uint64_t now, struct esc_actions *out)
{
	struct esc_action a = {.type = ESC_REDIRECT, .level = level};
	char orig[VIGIE_ID_MAX + 1];
	const char *b;

	if (post_online(p, d->post))
		return false;
	copy_id(orig, d->backup_for[0] ? d->backup_for : d->post);
	b = post_backup(p, orig);
	if (d->backup_for[0] && post_online(p, orig)) {
		d->backup_for[0] = '\0';
		copy_id(d->post, orig);
	} else if (b && strcmp(b, d->post) != 0 && post_online(p, b)) {
		copy_id(d->backup_for, orig);
		copy_id(d->post, b);
	} else {
		return false;
	}
	d->attempts++;
	d->last_us = now;
	d->next_us = now + resend_interval_us(p, d->attempts);
	a.post = d->post;
	a.from_post = d->backup_for[0] ? d->backup_for : NULL;
	a.attempt = d->attempts;
	push(out, &a);
	return true;
}

static void resend(struct esc_dispatch *d, const struct esc_params *p,
		   uint32_t level, uint64_t now, struct esc_actions *out)
{
	struct esc_action a = {.type = ESC_RESEND, .level = level};

	d->attempts++;
	d->last_us = now;
	d->next_us = now + resend_interval_us(p, d->attempts);
	a.post = d->post;
	a.from_post = d->backup_for[0] ? d->backup_for : NULL;
	a.attempt = d->attempts;
	push(out, &a);
}

void vigie__esc_tick(struct esc_state *s, const struct esc_params *p,
		     struct esc_actions *out)
{
	uint64_t now = now_us(p);

	if (!s->active || s->acked)
		return;
	for (uint32_t i = 0; i <= s->level && i < p->ladder->n; i++) {
		struct esc_dispatch *d = &s->d[i];

		if (!d->sent || d->alert)
			continue;
		if (redirect(d, p, i, now, out))
			continue;
		if (now >= d->next_us)
			resend(d, p, i, now, out);
	}
	if (s->deadline_us && now >= s->deadline_us &&
	    s->level + 1 < p->ladder->n) {
		uint32_t from = s->level;
		struct esc_action a = {.type = ESC_ESCALATE,
				       .deadline = true,
				       .from_level = from,
				       .level = from + 1};

		push(out, &a);
		notify(s, p, from + 1, now, out);
		set_level(s, p, from + 1, now);
	}
}

void vigie__esc_resend_all(struct esc_state *s, const struct esc_params *p,
			   struct esc_actions *out)
{
	uint64_t now = now_us(p);

	if (!s->active || s->acked)
		return;
	for (uint32_t i = 0; i <= s->level && i < p->ladder->n; i++) {
		struct esc_dispatch *d = &s->d[i];

		if (!d->sent || d->alert)
			continue;
		if (!redirect(d, p, i, now, out))
			resend(d, p, i, now, out);
	}
}

bool vigie__esc_ack(struct esc_state *s)
{
	if (s->acked)
		return false;
	s->acked = true;
	s->active = false;
	return true;
}

void vigie__esc_stop(struct esc_state *s)
{
	s->active = false;
}

uint64_t vigie__esc_next_due(const struct esc_state *s)
{
	uint64_t due = 0;

	if (!s->active || s->acked)
		return 0;
	if (s->deadline_us)
		due = s->deadline_us;
	for (uint32_t i = 0; i <= s->level && i < RELAY_MAX_LEVELS; i++) {
		const struct esc_dispatch *d = &s->d[i];

		if (d->sent && !d->alert && (!due || d->next_us < due))
			due = d->next_us;
	}
	return due;
}

void vigie__esc_dispatch_id(char *buf, size_t len, const char *incident,
			    uint32_t level)
{
	snprintf(buf, len, "%s-l%u", incident, level);
}

int vigie__esc_level_of(const char *dispatch_id, const char *incident)
{
	size_t n = strlen(incident);
	const char *p;
	char *end;
	unsigned long level;

	if (strncmp(dispatch_id, incident, n) != 0 || dispatch_id[n] != '-' ||
	    dispatch_id[n + 1] != 'l')
		return -1;
	p = dispatch_id + n + 2;
	if (*p < '0' || *p > '9')
		return -1;
	level = strtoul(p, &end, 10);
	if (*end || level >= RELAY_MAX_LEVELS)
		return -1;
	return (int)level;
}
