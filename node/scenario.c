/* Scenario files: timed events for demos and tests.
 *
 *   # the 2025 Apollo Gallery approach
 *   0     kind=vehicle zone=quai-facade sensor=radar-1 vehicle=lift-truck
 *   +42.5 kind=vibration zone=apollo-window sensor=seismic-2 tool=disc-cutter
 *
 * Each line is an offset in seconds and an event line (node/line.c). A bare
 * offset counts from the start of the scenario; "+N" counts from the line
 * before. Lines starting with # and blank lines are skipped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"

/* A scenario is a demo or a test script, not a data feed. */
#define SCENARIO_MAX_EVENTS 1000000

struct step {
	uint64_t at_us; /* offset from the start */
	struct node_event ev;
	unsigned line;
};

struct node_scenario {
	struct step *steps;
	size_t n_steps;
	uv_timer_t timer;
	struct vigie_node *node;
	double speed;
	unsigned loops_left; /* 0: forever */
	bool forever;
	size_t next;
	uint64_t start_ms;
	uint64_t submitted, settled;
	bool all_submitted;
	bool playing;
	void (*done)(void *arg);
	void *done_arg;
	char *path;
};

static int parse_offset(const char *s, size_t len, uint64_t prev, uint64_t *out)
{
	char buf[32];
	bool rel = false;
	double secs;
	char *end;

	if (len == 0 || len >= sizeof(buf))
		return VIGIE_EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (buf[0] == '+') {
		rel = true;
		memmove(buf, buf + 1, len);
	}
	if (!buf[0] || buf[0] == '-' || buf[0] == '+')
		return VIGIE_EINVAL;
	errno = 0;
	secs = strtod(buf, &end);
	if (*end || errno || secs < 0 || secs > 1e7)
		return VIGIE_EINVAL;
	*out = (rel ? prev : 0) + (uint64_t)(secs * 1e6 + 0.5);
	return 0;
}

int vigie__scenario_load(const char *path, struct node_scenario **out,
			 char *err, size_t errlen)
{
	struct node_scenario *s;
	FILE *f = fopen(path, "r");
	char line[NODE_LINE_MAX + 64];
	unsigned lineno = 0;
	uint64_t prev = 0;
	size_t cap = 0;
	int rc = 0;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return VIGIE_EIO;
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path))) {
		free(s);
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return VIGIE_ENOMEM;
	}
	while (fgets(line, sizeof(line), f)) {
		size_t len = strlen(line);
		char *p = line, *sp;
		char why[200];
		struct step *st;

		lineno++;
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			snprintf(err, errlen,
				 "%s:%u: line longer than %d bytes", path,
				 lineno, NODE_LINE_MAX);
			rc = VIGIE_ETOOBIG;
			goto out_fail;
		}
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '#' || *p == '\n' || *p == '\r' || !*p)
			continue;
		sp = p + strcspn(p, " \t\r\n");
		if (s->n_steps == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct step *ns;

			if (s->n_steps >= SCENARIO_MAX_EVENTS) {
				snprintf(err, errlen,
					 "%s:%u: more than %d events", path,
					 lineno, SCENARIO_MAX_EVENTS);
				rc = VIGIE_ETOOBIG;
				goto out_fail;
			}
			ns = realloc(s->steps, ncap * sizeof(*ns));
			if (!ns) {
				snprintf(err, errlen, "%s: out of memory",
					 path);
				rc = VIGIE_ENOMEM;
				goto out_fail;
			}
			s->steps = ns;
			cap = ncap;
		}
		st = &s->steps[s->n_steps];
		if (parse_offset(p, (size_t)(sp - p), prev, &st->at_us)) {
			snprintf(err, errlen,
				 "%s:%u: expected a time offset in seconds "
				 "(\"12.5\" or \"+2\") first, got \"%.*s\"",
				 path, lineno, (int)(sp - p > 40 ? 40 : sp - p),
				 p);
			rc = VIGIE_EINVAL;
			goto out_fail;
		}
		if (st->at_us < prev) {
			snprintf(err, errlen, "%s:%u: offset goes back in time",
				 path, lineno);
			rc = VIGIE_EINVAL;
			goto out_fail;
		}
		rc = vigie__line_parse(sp, strlen(sp), &st->ev, why,
				       sizeof(why));
		if (rc) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			goto out_fail;
		}
		st->line = lineno;
		prev = st->at_us;
		s->n_steps++;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		rc = VIGIE_EIO;
		goto out_fail;
	}
	fclose(f);
	*out = s;
	return 0;
out_fail:
	fclose(f);
	free(s->steps);
	free(s->path);
	free(s);
	return rc;
}

size_t vigie__scenario_len(const struct node_scenario *s)
{
	return s->n_steps;
}

static void check_done(struct node_scenario *s)
{
	if (s->all_submitted && s->settled == s->submitted && s->done) {
		void (*done)(void *) = s->done;

		s->done = NULL;
		done(s->done_arg);
	}
}

static void on_settled(void *arg, int status, uint64_t boot_id, uint64_t seq,
		       const char *err)
{
	struct node_scenario *s = arg;

	(void)boot_id;
	(void)seq;
	if (status)
		vigie_log_error("scenario event not stored: %s", err);
	s->settled++;
	check_done(s);
}

static void arm(struct node_scenario *s);

static void timer_cb(uv_timer_t *t)
{
	struct node_scenario *s = t->data;
	uint64_t elapsed_us = (vigie_clock_mono_ms() - s->start_ms) * 1000u;

	while (s->next < s->n_steps &&
	       (double)s->steps[s->next].at_us / s->speed <=
		       (double)elapsed_us) {
		struct step *st = &s->steps[s->next++];
		char err[200];

		s->submitted++;
		if (vigie__node_submit(s->node, &st->ev, "scenario", on_settled,
				       s, err, sizeof(err))) {
			vigie_log_error("%s:%u: event refused: %s", s->path,
					st->line, err);
			s->settled++;
		}
	}
	if (s->next == s->n_steps) {
		if (s->forever || --s->loops_left > 0) {
			s->next = 0;
			s->start_ms = vigie_clock_mono_ms();
		} else {
			s->all_submitted = true;
			check_done(s);
			return;
		}
	}
	arm(s);
}

static void arm(struct node_scenario *s)
{
	double due_ms = (double)s->steps[s->next].at_us / s->speed / 1000.0;
	double elapsed = (double)(vigie_clock_mono_ms() - s->start_ms);
	uint64_t delay = due_ms > elapsed ? (uint64_t)(due_ms - elapsed) : 0;

	uv_timer_start(&s->timer, timer_cb, delay, 0);
}

int vigie__scenario_play(struct node_scenario *s, uv_loop_t *loop,
			 struct vigie_node *n, double speed,
			 unsigned loop_count, void (*done)(void *arg),
			 void *arg)
{
	if (speed <= 0 || s->playing)
		return VIGIE_EINVAL;
	s->node = n;
	s->speed = speed;
	s->forever = loop_count == 0;
	s->loops_left = loop_count;
	s->done = done;
	s->done_arg = arg;
	s->playing = true;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	s->start_ms = vigie_clock_mono_ms();
	if (!s->n_steps) {
		s->all_submitted = true;
		check_done(s);
		return 0;
	}
	arm(s);
	return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct node_scenario *s = h->data;

	free(s->steps);
	free(s->path);
	free(s);
}

void vigie__scenario_stop(struct node_scenario *s)
{
	if (s->playing)
		uv_timer_stop(&s->timer);
}

void vigie__scenario_close(struct node_scenario *s)
{
	/* Called after the node closed: its outbox has fired every durable
	 * callback that names `s` by then. */
	if (!s->playing) {
		free(s->steps);
		free(s->path);
		free(s);
		return;
	}
	s->done = NULL;
	uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}
