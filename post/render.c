/* The console screen, drawn into a buffer as one frame, and the decoding of
 * the keys the operator presses. No I/O here: console.c writes the frame.
 *
 * Every text of a dispatch comes from the wire and may hold anything,
 * escape sequences included; it reaches the terminal only through
 * vigie__postterm_clean(). */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "post.h"
#include "vigie/error.h"

#define SGR_RESET   "\033[0m"
#define SGR_BOLD    "\033[1m"
#define SGR_DIM     "\033[2m"
#define SGR_REVERSE "\033[7m"
#define SGR_RED     "\033[1;31m"
#define SGR_YELLOW  "\033[33m"
#define SGR_MAGENTA "\033[1;35m"
#define SGR_GREEN   "\033[32m"
#define SGR_HEADER  "\033[1;37;44m"

/* ---- text -------------------------------------------------------------- */

/* Columns a character takes. Wide East Asian and emoji ranges count two,
 * combining marks none; close enough for names and plans, and independent
 * of the locale, so the layout is the same everywhere. */
static size_t char_cols(uint32_t cp)
{
	if ((cp >= 0x300 && cp <= 0x36f) || (cp >= 0x1ab0 && cp <= 0x1aff) ||
	    (cp >= 0x20d0 && cp <= 0x20ff) || (cp >= 0xfe20 && cp <= 0xfe2f))
		return 0;
	if ((cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) ||
	    (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
	    (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
	    (cp >= 0xffe0 && cp <= 0xffe6) ||
	    (cp >= 0x1f300 && cp <= 0x1f64f) ||
	    (cp >= 0x1f900 && cp <= 0x1f9ff) ||
	    (cp >= 0x20000 && cp <= 0x3fffd))
		return 2;
	return 1;
}

/* Characters that must not reach a terminal: C0, DEL, C1 (which include
 * CSI as U+009B), and the invisible direction overrides that can make a
 * zone name read as another ("Trojan Source"). */
static bool unsafe(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) ||
	       (cp >= 0x200b && cp <= 0x200f) ||
	       (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2060 && cp <= 0x2069) || cp == 0xfeff;
}

size_t vigie__postterm_clean(struct post_buf *b, const char *s, size_t max_cols)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t len = strlen((const char *)p), i = 0, cols = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = vigie__postutf8_next(p + i, len - i, &cp);
		size_t w;

		if (!n || unsafe(cp)) {
			if (cols + 1 > max_cols)
				break;
			vigie__postbuf_addc(b, '?');
			cols++;
			i += n ? n : 1;
			continue;
		}
		w = char_cols(cp);
		if (cols + w > max_cols)
			break;
		vigie__postbuf_add(b, p + i, n);
		cols += w;
		i += n;
	}
	return cols;
}

static void pad(struct post_buf *b, size_t n)
{
	while (n--)
		vigie__postbuf_addc(b, ' ');
}

/* A line under construction: never more than `cols` columns. */
struct line {
	struct post_buf *b;
	size_t cols, used;
};

static void put(struct line *l, const char *s)
{
	if (l->used < l->cols)
		l->used += vigie__postterm_clean(l->b, s, l->cols - l->used);
}

static void putf(struct line *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void putf(struct line *l, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	put(l, tmp);
}

/* A cell: `s` cut or padded to `width`, then one space. */
static void cell(struct line *l, const char *s, size_t width)
{
	size_t room, w;

	if (l->used >= l->cols)
		return;
	room = l->cols - l->used;
	if (width > room)
		width = room;
	w = vigie__postterm_clean(l->b, s, width);
	pad(l->b, width - w);
	l->used += width;
	if (l->used < l->cols) {
		vigie__postbuf_addc(l->b, ' ');
		l->used++;
	}
}

static void fill(struct line *l)
{
	if (l->used < l->cols)
		pad(l->b, l->cols - l->used);
	l->used = l->cols;
}

/* ---- pieces ------------------------------------------------------------ */

static void clock_local(uint64_t us, char *buf, size_t len)
{
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;

	if (!us || !localtime_r(&t, &tm)) {
		snprintf(buf, len, "--:--:--");
		return;
	}
	snprintf(buf, len, "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void format_age(uint64_t secs, char *buf, size_t len)
{
	if (secs >= 100 * 3600)
		snprintf(buf, len, ">99h");
	else if (secs >= 3600)
		snprintf(buf, len, "%llu:%02llu:%02llu",
			 (unsigned long long)(secs / 3600),
			 (unsigned long long)(secs / 60 % 60),
			 (unsigned long long)(secs % 60));
	else
		snprintf(buf, len, "%02llu:%02llu",
			 (unsigned long long)(secs / 60),
			 (unsigned long long)(secs % 60));
}

static uint64_t entry_age_s(const struct post_entry *e, uint64_t now_us)
{
	uint64_t first =
		e->d.first_event_us ? e->d.first_event_us : e->received_us;

	return now_us > first ? (now_us - first) / 1000000u : 0;
}

static void upper(char *dst, const char *src, size_t len)
{
	size_t i = 0;

	for (; src[i] && i + 1 < len; i++)
		dst[i] = (src[i] >= 'a' && src[i] <= 'z') ? (char)(src[i] - 32)
							  : src[i];
	dst[i] = '\0';
}

static const char *row_color(const struct post_entry *e)
{
	if (vigie__postq_entry_done(e))
		return SGR_DIM;
	if (*e->d.pattern)
		return SGR_MAGENTA;
	if (e->d.confirmed ||
	    e->d.priority >= VIGIE__V1__PRIORITY__PRIORITY_CRITICAL)
		return SGR_RED;
	if (e->d.priority == VIGIE__V1__PRIORITY__PRIORITY_HIGH)
		return SGR_YELLOW;
	return "";
}

static void ack_text(const struct post_entry *e, char *buf, size_t len)
{
	const char *by = e->acked_by ? e->acked_by : "?";

	switch (e->ack) {
	case POST_ACK_PENDING:
		snprintf(buf, len, "ACK SENDING (%s)", by);
		return;
	case POST_ACK_SENT:
		snprintf(buf, len, "acked by %s", by);
		return;
	case POST_ACK_CONFIRMED:
		snprintf(buf, len, "acked by %s, relay confirmed", by);
		return;
	default:
		break;
	}
	if (e->closed)
		snprintf(buf, len, "closed by the relay");
	else if (e->d.attempt > 1)
		snprintf(buf, len, "NOT ACKED, sent %u times", e->d.attempt);
	else
		snprintf(buf, len, "NOT ACKED");
}

static void begin_row(struct post_buf *b, int row)
{
	vigie__postbuf_addf(b, "\033[%d;1H", row + 1);
}

static void end_row(struct post_buf *b, bool color)
{
	if (color)
		vigie__postbuf_adds(b, SGR_RESET);
	vigie__postbuf_adds(b, "\033[K");
}

/* ---- the frame ------------------------------------------------------- */

static void header(struct post_buf *b, const struct post_view *v)
{
	struct line l = {b, (size_t)v->cols, 0};
	char now[16];

	begin_row(b, 0);
	if (v->color)
		vigie__postbuf_adds(b, SGR_HEADER);
	clock_local(v->now_us, now, sizeof(now));
	put(&l, " VIGIE POST ");
	put(&l, v->name);
	if (strcmp(v->name, v->post) != 0) {
		put(&l, " (");
		put(&l, v->post);
		put(&l, ")");
	}
	putf(&l, "  %s  %zu open",
	     v->connected ? "[ONLINE]" : "[OFFLINE, reconnecting]",
	     vigie__postq_open_count(v->q));
	if (v->bad_payloads)
		putf(&l, "  %llu bad payload(s)",
		     (unsigned long long)v->bad_payloads);
	put(&l, "  operator: ");
	put(&l,
	    v->operator_name ? v->operator_name : "(asked at the first ack)");
	putf(&l, "  %s ", now);
	fill(&l);
	end_row(b, v->color);
}

/* Column widths: fixed ones, then what is left split between site and
 * zone (the zone gets more: it is what the police need). */
struct widths {
	size_t age, pri, lvl, conf, state, kind, site, zone;
};

static struct widths widths_for(int cols)
{
	struct widths w = {7, 8, 3, 4, 9, 12, 0, 0};
	size_t fixed = 2 + w.age + 1 + w.pri + 1 + w.lvl + 1 + w.conf + 1 +
		       w.state + 1 + w.kind + 1 + 2;
	size_t rest = (size_t)cols > fixed + 20 ? (size_t)cols - fixed : 20;

	w.site = rest * 2 / 5;
	if (w.site > 28)
		w.site = 28;
	w.zone = rest - w.site;
	return w;
}

static void titles(struct post_buf *b, const struct post_view *v)
{
	struct line l = {b, (size_t)v->cols, 0};
	struct widths w = widths_for(v->cols);

	begin_row(b, 1);
	if (v->color)
		vigie__postbuf_adds(b, SGR_BOLD);
	cell(&l, "", 1);
	cell(&l, "AGE", w.age);
	cell(&l, "PRIORITY", w.pri);
	cell(&l, "LVL", w.lvl);
	cell(&l, "CONF", w.conf);
	cell(&l, "STATE", w.state);
	cell(&l, "SITE", w.site);
	cell(&l, "ZONE", w.zone);
	put(&l, "KIND");
	end_row(b, v->color);
}

/* The state in a word or two, for the list; the details say more. */
static void state_short(const struct post_entry *e, char *buf, size_t len)
{
	switch (e->ack) {
	case POST_ACK_PENDING:
		snprintf(buf, len, "SENDING");
		return;
	case POST_ACK_SENT:
		snprintf(buf, len, "acked");
		return;
	case POST_ACK_CONFIRMED:
		snprintf(buf, len, "acked+");
		return;
	default:
		break;
	}
	if (e->closed)
		snprintf(buf, len, "closed");
	else if (e->d.attempt > 1)
		snprintf(buf, len, "OPEN x%u", e->d.attempt);
	else
		snprintf(buf, len, "OPEN");
}

static void list_row(struct post_buf *b, const struct post_view *v, int row,
		     const struct post_entry *e, bool selected)
{
	struct line l = {b, (size_t)v->cols, 0};
	struct widths w = widths_for(v->cols);
	char age[16], pri[24], lvl[12], state[32];

	begin_row(b, row);
	if (v->color) {
		vigie__postbuf_adds(b, row_color(e));
		if (selected)
			vigie__postbuf_adds(b, SGR_REVERSE);
	}
	format_age(entry_age_s(e, v->now_us), age, sizeof(age));
	upper(pri, vigie_priority_name(e->d.priority), sizeof(pri));
	snprintf(lvl, sizeof(lvl), "L%u", e->d.level);
	state_short(e, state, sizeof(state));
	cell(&l, selected ? ">" : "", 1);
	cell(&l, age, w.age);
	cell(&l, pri, w.pri);
	cell(&l, lvl, w.lvl);
	cell(&l, e->d.confirmed ? "CONF" : "", w.conf);
	cell(&l, state, w.state);
	if (*e->d.pattern) {
		/* A pattern spans museums: site and zone columns. */
		char pat[160];

		snprintf(pat, sizeof(pat), "** PATTERN %s **", e->d.pattern);
		cell(&l, pat, w.site + 1 + w.zone);
	} else {
		cell(&l, *e->d.site_name ? e->d.site_name : e->d.site, w.site);
		cell(&l, *e->d.zone_name ? e->d.zone_name : e->d.zone_id,
		     w.zone);
	}
	put(&l, vigie_kind_name(e->d.kind));
	if (*e->d.backup_for) {
		put(&l, "  [backup for ");
		put(&l, e->d.backup_for);
		put(&l, "]");
	}
	if (selected)
		fill(&l);
	end_row(b, v->color);
}

static void location(struct line *l, bool has, double lat, double lon)
{
	if (has && isfinite(lat) && isfinite(lon))
		putf(l, "  [%.5f, %.5f]", lat, lon);
}

/* The selected dispatch in full: where exactly, what to do, what was seen.
 * Returns the lines used. */
static int details(struct post_buf *b, const struct post_view *v, int row,
		   int height, const struct post_entry *e)
{
	const struct post_dispatch *d = &e->d;
	char t1[16], t2[16], state[128];
	int used = 0;

#define DETAIL_LINE()                                                          \
	struct line l = {b, (size_t)v->cols, 0};                               \
	if (used >= height)                                                    \
		return used;                                                   \
	begin_row(b, row + used++)

	{
		DETAIL_LINE();
		if (v->color)
			vigie__postbuf_adds(b, SGR_BOLD);
		put(&l, "-- ");
		put(&l, d->id);
		put(&l, "  incident ");
		put(&l, *d->incident ? d->incident : "?");
		putf(&l, "  level %u", d->level);
		if (*d->level_name) {
			put(&l, " (");
			put(&l, d->level_name);
			put(&l, ")");
		}
		clock_local(d->sent_us, t1, sizeof(t1));
		putf(&l, "  attempt %u, sent %s ", d->attempt, t1);
		while (l.used < l.cols)
			put(&l, "-");
		end_row(b, v->color);
	}
	if (*d->pattern) {
		DETAIL_LINE();
		if (v->color)
			vigie__postbuf_adds(b, SGR_MAGENTA);
		put(&l, "PATTERN   ");
		put(&l, d->pattern);
		put(&l, ": several sites, one campaign");
		end_row(b, v->color);
	}
	if (*d->backup_for) {
		DETAIL_LINE();
		if (v->color)
			vigie__postbuf_adds(b, SGR_YELLOW);
		put(&l, "BACKUP    sent here because post ");
		put(&l, d->backup_for);
		put(&l, " is offline: you answer for it");
		end_row(b, v->color);
	}
	{
		DETAIL_LINE();
		put(&l, "Site      ");
		put(&l, *d->site_name ? d->site_name : d->site);
		if (*d->site_name && *d->site) {
			put(&l, " (");
			put(&l, d->site);
			put(&l, ")");
		}
		if (*d->address) {
			put(&l, ", ");
			put(&l, d->address);
		}
		location(&l, d->has_site_location, d->site_lat, d->site_lon);
		end_row(b, v->color);
	}
	{
		DETAIL_LINE();
		if (v->color)
			vigie__postbuf_adds(b, SGR_BOLD);
		put(&l, "Zone      ");
		put(&l, *d->zone_name ? d->zone_name : d->zone_id);
		if (*d->zone_name && *d->zone_id) {
			put(&l, " (");
			put(&l, d->zone_id);
			put(&l, ")");
		}
		if (*d->zone_kind) {
			put(&l, ", ");
			put(&l, d->zone_kind);
		}
		if (*d->zone_floor) {
			put(&l, ", floor ");
			put(&l, d->zone_floor);
		}
		if (*d->zone_facade) {
			put(&l, ", facade ");
			put(&l, d->zone_facade);
		}
		location(&l, d->has_zone_location, d->zone_lat, d->zone_lon);
		end_row(b, v->color);
	}
	{
		DETAIL_LINE();
		put(&l, "Cameras   ");
		for (size_t i = 0; i < d->n_cameras; i++) {
			if (i)
				put(&l, ", ");
			put(&l, d->cameras[i]);
		}
		if (!d->n_cameras)
			put(&l, "(none listed)");
		end_row(b, v->color);
	}
	{
		DETAIL_LINE();
		if (v->color)
			vigie__postbuf_adds(b, SGR_BOLD);
		put(&l, "Plan      ");
		put(&l, *d->action_plan        ? d->action_plan
			: *d->zone_action_plan ? d->zone_action_plan
					       : "(none)");
		end_row(b, v->color);
	}
	if (d->n_attrs) {
		DETAIL_LINE();
		put(&l, "Seen      ");
		for (size_t i = 0; i < d->n_attrs; i++) {
			if (i)
				put(&l, "  ");
			put(&l, d->attrs[i].key);
			put(&l, "=");
			put(&l, d->attrs[i].value);
		}
		end_row(b, v->color);
	}
	if (*d->text) {
		DETAIL_LINE();
		put(&l, "Text      ");
		put(&l, d->text);
		end_row(b, v->color);
	}
	{
		DETAIL_LINE();
		clock_local(d->first_event_us ? d->first_event_us
					      : e->received_us,
			    t1, sizeof(t1));
		clock_local(e->received_us, t2, sizeof(t2));
		putf(&l,
		     "When      first event %s, %llu s ago; received here %s",
		     t1, (unsigned long long)entry_age_s(e, v->now_us), t2);
		end_row(b, v->color);
	}
	{
		DETAIL_LINE();
		ack_text(e, state, sizeof(state));
		if (v->color && !vigie__postq_entry_done(e))
			vigie__postbuf_adds(b, SGR_RED);
		else if (v->color)
			vigie__postbuf_adds(b, SGR_GREEN);
		put(&l, "Ack       ");
		put(&l, state);
		if (e->ack >= POST_ACK_PENDING) {
			clock_local(e->acked_us, t1, sizeof(t1));
			putf(&l, " at %s", t1);
		} else if (!e->closed) {
			put(&l, "  (Enter or a to acknowledge)");
		}
		end_row(b, v->color);
	}
#undef DETAIL_LINE
	return used;
}

static void footer(struct post_buf *b, const struct post_view *v, int row)
{
	/* One column short: writing the last cell of the last row would make
	 * some terminals scroll. */
	struct line l = {b, v->cols > 1 ? (size_t)v->cols - 1 : 0, 0};

	begin_row(b, row);
	if (v->prompt) {
		if (v->color)
			vigie__postbuf_adds(b, SGR_BOLD);
		put(&l, v->prompt);
		put(&l, v->input ? v->input : "");
		put(&l, "_");
	} else {
		put(&l, "Up/Down j/k select  Enter/a acknowledge  q quit");
		if (v->message) {
			put(&l, "  |  ");
			put(&l, v->message);
		}
	}
	end_row(b, v->color);
}

static size_t visible_index(const struct post_queue *q, const char *id)
{
	size_t n = 0;

	for (size_t i = 0; i < q->len; i++) {
		if (!vigie__postq_entry_visible(q->v[i]))
			continue;
		if (id && strcmp(q->v[i]->d.id, id) == 0)
			return n;
		n++;
	}
	return SIZE_MAX;
}

void vigie__postterm_render(struct post_buf *b, const struct post_view *v)
{
	const struct post_entry *sel = NULL;
	int rows = v->rows, avail, detail_h, list_h, row;
	size_t sel_idx, skip, shown = 0, n = 0;

	vigie__postbuf_adds(b, "\033[H");
	if (rows < 4 || v->cols < 20) {
		vigie__postbuf_adds(b, "\033[2Jterminal too small");
		return;
	}
	avail = rows - 3;
	detail_h = avail >= 20 ? 11 : avail >= 12 ? 6 : 0;
	list_h = avail - detail_h;
	header(b, v);
	titles(b, v);
	sel_idx = visible_index(v->q, v->selected);
	/* Keep the selected row in view. */
	skip = sel_idx != SIZE_MAX && sel_idx >= (size_t)list_h
		       ? sel_idx - (size_t)list_h + 1
		       : 0;
	row = 2;
	for (size_t i = 0; i < v->q->len && shown < (size_t)list_h; i++) {
		const struct post_entry *e = v->q->v[i];
		bool selected;

		if (!vigie__postq_entry_visible(e))
			continue;
		if (n++ < skip)
			continue;
		selected = sel_idx != SIZE_MAX && n - 1 == sel_idx;
		if (selected)
			sel = e;
		list_row(b, v, row++, e, selected);
		shown++;
	}
	if (!shown) {
		begin_row(b, row++);
		vigie__postbuf_adds(b, "  no dispatch: waiting for the relay");
		end_row(b, false);
		shown++;
	}
	for (; row < 2 + list_h; row++) {
		begin_row(b, row);
		end_row(b, false);
	}
	if (detail_h) {
		int used = sel ? details(b, v, row, detail_h, sel) : 0;

		for (; used < detail_h; used++) {
			begin_row(b, row + used);
			end_row(b, false);
		}
		row += detail_h;
	}
	footer(b, v, rows - 1);
}

const struct post_entry *vigie__postterm_select(const struct post_queue *q,
						const char *current, int delta)
{
	size_t count = 0, idx, target;
	long long t;

	for (size_t i = 0; i < q->len; i++)
		if (vigie__postq_entry_visible(q->v[i]))
			count++;
	if (!count)
		return NULL;
	idx = visible_index(q, current);
	if (idx == SIZE_MAX) {
		idx = 0;
		delta = 0;
	}
	t = (long long)idx + delta;
	if (t < 0)
		t = 0;
	if (t >= (long long)count)
		t = (long long)count - 1;
	target = (size_t)t;
	for (size_t i = 0, n = 0; i < q->len; i++) {
		if (!vigie__postq_entry_visible(q->v[i]))
			continue;
		if (n++ == target)
			return q->v[i];
	}
	return NULL;
}

/* ---- keys -------------------------------------------------------------- */

enum {
	KS_GROUND = 0,
	KS_ESC,
	KS_CSI,
	KS_SS3,
};

static int csi_key(const struct post_keydec *k, unsigned char final)
{
	switch (final) {
	case 'A':
		return POST_KEY_UP;
	case 'B':
		return POST_KEY_DOWN;
	case 'H':
		return POST_KEY_HOME;
	case 'F':
		return POST_KEY_END;
	case '~':
		if (strcmp(k->params, "1") == 0 || strcmp(k->params, "7") == 0)
			return POST_KEY_HOME;
		if (strcmp(k->params, "4") == 0 || strcmp(k->params, "8") == 0)
			return POST_KEY_END;
		if (strcmp(k->params, "5") == 0)
			return POST_KEY_PGUP;
		if (strcmp(k->params, "6") == 0)
			return POST_KEY_PGDN;
		return POST_KEY_NONE;
	default:
		return POST_KEY_NONE;
	}
}

int vigie__postterm_key_feed(struct post_keydec *k, unsigned char c)
{
	switch (k->state) {
	case KS_ESC:
		if (c == '[') {
			k->state = KS_CSI;
			k->n = 0;
			k->params[0] = '\0';
			return POST_KEY_NONE;
		}
		if (c == 'O') {
			k->state = KS_SS3;
			return POST_KEY_NONE;
		}
		/* ESC then a key (Alt+key, or Esc typed quickly): the ESC. */
		k->state = KS_GROUND;
		return POST_KEY_ESC;
	case KS_CSI:
		if (c >= 0x30 && c <= 0x3f) {
			if (k->n + 1 < sizeof(k->params)) {
				k->params[k->n++] = (char)c;
				k->params[k->n] = '\0';
			}
			return POST_KEY_NONE;
		}
		if (c >= 0x20 && c <= 0x2f)
			return POST_KEY_NONE;
		k->state = KS_GROUND;
		if (c >= 0x40 && c <= 0x7e)
			return csi_key(k, c);
		return POST_KEY_NONE;
	case KS_SS3:
		k->state = KS_GROUND;
		switch (c) {
		case 'A':
			return POST_KEY_UP;
		case 'B':
			return POST_KEY_DOWN;
		case 'H':
			return POST_KEY_HOME;
		case 'F':
			return POST_KEY_END;
		case 'M':
			return POST_KEY_ENTER;
		default:
			return POST_KEY_NONE;
		}
	default:
		break;
	}
	switch (c) {
	case 0x1b:
		k->state = KS_ESC;
		return POST_KEY_NONE;
	case '\r':
	case '\n':
		return POST_KEY_ENTER;
	case 0x7f:
	case 0x08:
		return POST_KEY_BACKSPACE;
	default:
		return c;
	}
}

int vigie__postterm_key_flush(struct post_keydec *k)
{
	if (k->state == KS_ESC) {
		k->state = KS_GROUND;
		return POST_KEY_ESC;
	}
	return POST_KEY_NONE;
}
