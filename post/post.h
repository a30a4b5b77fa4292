/* vigie-post internals: the police post console. Internal (vigie__
 * prefix): main.c and the unit tests link them, nothing outside the
 * repository does.
 *
 * What is here and where:
 *   buf.c          a capped, growable text buffer
 *   utf8.c         a strict UTF-8 decoder (payload text is any bytes)
 *   post_config.c  the YAML configuration and the command-line overrides
 *   ack.c          Ack and PostState payloads, incident ids, operator names
 *   queue.c        the live queue of dispatches: one entry per dispatch id
 *   json.c         JSON lines for scripts (hand-escaped, any bytes)
 *   command.c      the stdin command language ("ack ID", "list" ...)
 *   render.c       the terminal screen, drawn into a buffer; key decoding
 *   post.c         the core on the loop: MQTT, birth/LWT, dispatches, acks
 *   console.c      the interactive terminal front end (termios raw mode)
 *   stream.c       the JSON-lines front end (stdout not a TTY, or --json)
 */
#ifndef VIGIE_POST_POST_H
#define VIGIE_POST_POST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vigie/codec.h"
#include "vigie/config.h"
#include "vigie/mqtt.h"

/* Longest dispatch or incident id accepted ("<incident>-l<level>"). */
#define POST_ID_MAX 128
/* Longest operator name (bytes of UTF-8). */
#define POST_NAME_MAX 64
/* Longest stdin command line. */
#define POST_LINE_MAX 1024
/* Central brokers held at once: `broker:` and an optional `standby:`. */
#define POST_MAX_BROKERS 2

/* ---- capped text buffer (post/buf.c) ---- */

/* Grows up to `max` bytes; past that (or on ENOMEM) it stops growing, keeps
 * what it had and remembers the failure, so a caller may append many pieces
 * and check once. `data` is NUL-terminated whenever it is not NULL. */
struct post_buf {
	char *data;
	size_t len;
	size_t size;
	size_t max;
	int err; /* first failure: VIGIE_ETOOBIG or VIGIE_ENOMEM */
};

void vigie__postbuf_init(struct post_buf *b, size_t max);
void vigie__postbuf_free(struct post_buf *b);
void vigie__postbuf_reset(struct post_buf *b);
int vigie__postbuf_add(struct post_buf *b, const void *data, size_t len);
int vigie__postbuf_addc(struct post_buf *b, char c);
int vigie__postbuf_adds(struct post_buf *b, const char *s);
int vigie__postbuf_addf(struct post_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- UTF-8 (post/utf8.c) ---- */

/* vigie__postutf8_next: decode the sequence at s[0..len): its length (1..4)
 * and *cp, or 0 when it is not valid UTF-8 (overlong forms, surrogates,
 * beyond U+10FFFF and truncated sequences included). */
size_t vigie__postutf8_next(const unsigned char *s, size_t len, uint32_t *cp);

/* ---- configuration (post/post_config.c) ---- */

struct post_config {
	struct vigie_conf *conf;   /* owns the strings read from the file */
	const char *path;          /* NULL: flags only */
	const char *post;          /* topic id */
	const char *name;          /* shown and announced; defaults to post */
	const char *operator_name; /* NULL: asked for at the first ack */
	struct vigie_conf_broker broker; /* the file's, then the flags' */
	/* `standby:` the second central broker, held at the same time: each
	 * dispatch is shown once whichever brings it, acks go to both. */
	struct vigie_conf_broker standby;
	bool has_standby;
	uint64_t session_expiry_ms;
	uint64_t keep_acked_ms;  /* acknowledged entries leave the view after */
	uint64_t max_dispatches; /* cap on the queue */
	bool follow_incidents;   /* see acks made elsewhere (dashboards) */
};

/* Command-line values; each non-NULL (port: non-zero) one wins over the
 * file. Pointers must outlive the config (argv). */
struct post_overrides {
	const char *host, *post, *user, *password, *name, *operator_name;
	const char *cafile, *certfile, *keyfile;
	int port;
};

/* vigie__postconf_load: read `path` (NULL: no file, flags only) and apply
 * the overrides. On error returns VIGIE_ECONFIG (or VIGIE_ENOMEM) and `err`
 * holds "FILE:LINE: FIELD: reason" or "--flag: reason". */
int vigie__postconf_load(const char *path, const struct post_overrides *ov,
			 struct post_config *cfg, char *err, size_t errlen);
void vigie__postconf_free(struct post_config *cfg);

/* ---- payloads and names (post/ack.c) ---- */

/* vigie__postmsg_incident_from_id: "<incident>-l<N>" -> "<incident>". Returns
 * 0, or VIGIE_EINVAL when `id` has no such suffix or the rest is empty. */
int vigie__postmsg_incident_from_id(const char *id, char *out, size_t len);

/* vigie__postmsg_operator_valid: 1 if `name` is 1..POST_NAME_MAX bytes of valid
 * UTF-8 without control characters and not only spaces. */
int vigie__postmsg_operator_valid(const char *name);

/* vigie__postmsg_id_valid: 1 if `id` is 1..POST_ID_MAX characters of
 * [A-Za-z0-9._:-] (no space: it is a word of the command language). */
int vigie__postmsg_id_valid(const char *id);

/* vigie__postmsg_ack_pack: an Ack payload (source "post"); *out is malloc'd.
 * Returns 0, VIGIE_ENOMEM or VIGIE_ETOOBIG. */
int vigie__postmsg_ack_pack(const char *post, const char *dispatch,
			    const char *incident, const char *by,
			    uint64_t time_us, uint8_t **out, size_t *len);

/* vigie__postmsg_state_pack: a PostState payload; *out is malloc'd. */
int vigie__postmsg_state_pack(const char *post, int status, const char *name,
			      const char *reason, uint64_t time_us,
			      uint8_t **out, size_t *len);

/* ---- the queue (post/queue.c) ---- */

enum post_ack_state {
	POST_ACK_NONE = 0,
	POST_ACK_PENDING,   /* acked here, not yet PUBACKed by the broker */
	POST_ACK_SENT,      /* the broker has our Ack */
	POST_ACK_CONFIRMED, /* the relay says the incident is acknowledged */
};

struct post_attr {
	char *key, *value;
};

/* An owned copy of a Dispatch: the unpacked message is freed where it was
 * unpacked, so nothing outlives protobuf-c's allocation. */
struct post_dispatch {
	char *id, *incident, *site, *site_name, *address;
	char *zone_id, *zone_name, *zone_floor, *zone_facade, *zone_kind;
	char *zone_action_plan;
	bool has_zone_location;
	double zone_lat, zone_lon;
	char **cameras;
	size_t n_cameras;
	int kind, priority;
	bool confirmed;
	uint64_t first_event_us, sent_us;
	uint32_t level, attempt;
	char *level_name, *action_plan, *text, *pattern;
	char *backup_for; /* we cover for this post (it is offline) */
	struct post_attr *attrs;
	size_t n_attrs;
	bool has_site_location;
	double site_lat, site_lon;
};

struct post_entry {
	struct post_dispatch d;
	enum post_ack_state ack;
	char *acked_by;       /* NULL until acked */
	uint64_t acked_us;    /* wall time of the human's ack */
	uint64_t ack_sent_ms; /* monotonic: last Ack publication */
	/* mid of the last Ack publication on each central broker (the
	 * `broker:`, the `standby:`), 0: none */
	int ack_mid[POST_MAX_BROKERS];
	bool ack_told;        /* on_ack reported: once, at the first PUBACK */
	bool superseded;      /* a higher level of the incident arrived */
	bool closed;          /* the relay closed the incident */
	uint64_t received_us; /* first reception, wall */
	uint64_t done_ms;     /* monotonic: became acked/closed/superseded */
	uint32_t receptions;
};

/* Entries sorted for display: open ones first, then by priority (highest
 * first), then by age (oldest first event first), then by id. */
struct post_queue {
	struct post_entry **v;
	size_t len;
	size_t alloc;
	size_t max;
	uint64_t evicted;
};

/* What an upsert did. */
enum post_upsert {
	POST_UPSERT_SAME = 0, /* a duplicate: nothing visible changed */
	POST_UPSERT_NEW,
	POST_UPSERT_CHANGED,
};

void vigie__postq_init(struct post_queue *q, size_t max);
void vigie__postq_free(struct post_queue *q);

/* vigie__postq_check: is `d` a dispatch this post may show? `post` is our
 * id. Returns 0 or VIGIE_EINVAL with the reason in `err`. */
int vigie__postq_check(const Vigie__V1__Dispatch *d, const char *post,
		       char *err, size_t errlen);

/* vigie__postq_upsert: insert `d` (already checked) or update the entry of
 * its id: a re-send (higher attempt) replaces the content, a stale copy only
 * counts as a reception. A higher level of the same incident marks the
 * lower ones superseded. When the queue is full the oldest finished entry
 * makes room; with none, VIGIE_EFULL. Returns 0 (*what, *out set),
 * VIGIE_EFULL or VIGIE_ENOMEM. */
int vigie__postq_upsert(struct post_queue *q, const Vigie__V1__Dispatch *d,
			uint64_t now_us, uint64_t now_ms,
			enum post_upsert *what, struct post_entry **out);

struct post_entry *vigie__postq_find(const struct post_queue *q,
				     const char *id);

/* vigie__postq_set_ack: move `e` to `state` (never backwards), recording
 * who and when if not known yet. Re-sorts. */
int vigie__postq_set_ack(struct post_queue *q, struct post_entry *e,
			 enum post_ack_state state, const char *by,
			 uint64_t time_us, uint64_t now_ms);

/* vigie__postq_incident: the relay's view of an incident changed:
 * ACKNOWLEDGED confirms the ack of its entries, CLOSED closes them.
 * Returns how many entries changed. */
size_t vigie__postq_incident(struct post_queue *q, const char *incident,
			     int state, const char *acked_by, uint64_t acked_us,
			     uint64_t now_ms);

/* vigie__postq_prune: drop entries finished for more than keep_ms.
 * Returns how many. */
size_t vigie__postq_prune(struct post_queue *q, uint64_t now_ms,
			  uint64_t keep_ms);

/* vigie__postq_entry_done: acknowledged (sent or confirmed), closed or
 * superseded: nothing is asked of the operator any more. */
bool vigie__postq_entry_done(const struct post_entry *e);
/* vigie__postq_entry_visible: shown in the console list (not superseded). */
bool vigie__postq_entry_visible(const struct post_entry *e);
size_t vigie__postq_open_count(const struct post_queue *q);
/* vigie__postq_entry_incident: the incident the Ack names: the dispatch's own,
 * or derived from its id. Returns `buf` or "". */
const char *vigie__postq_entry_incident(const struct post_entry *e, char *buf,
					size_t len);

/* ---- JSON lines (post/json.c) ---- */

/* vigie__postjson_str: append `s` (len bytes, any bytes at all) as a JSON
 * string: quotes, backslashes and control characters escaped, invalid UTF-8
 * replaced by U+FFFD, U+2028/U+2029 escaped. */
int vigie__postjson_str(struct post_buf *b, const char *s, size_t len);
/* vigie__postjson_cstr: the same for a C string; NULL gives null. */
int vigie__postjson_cstr(struct post_buf *b, const char *s);

/* One line each, ending in '\n'. */
int vigie__postjson_dispatch(struct post_buf *b, const struct post_entry *e,
			     uint64_t now_us, bool is_new);
int vigie__postjson_ack(struct post_buf *b, const char *dispatch,
			const char *incident, const char *by, uint64_t time_us);
int vigie__postjson_error(struct post_buf *b, const char *command,
			  const char *error);
int vigie__postjson_status(struct post_buf *b, const char *post, bool connected,
			   bool session_present);

/* ---- stdin commands (post/command.c) ---- */

enum post_cmd_type {
	POST_CMD_NONE = 0, /* blank line or # comment */
	POST_CMD_ACK,      /* ack ID [NAME...] */
	POST_CMD_LIST,     /* list: every entry as a dispatch line */
	POST_CMD_STATS,    /* stats: counters as one line */
	POST_CMD_QUIT,     /* quit */
};

struct post_cmd {
	enum post_cmd_type type;
	char id[POST_ID_MAX + 1];
	char by[POST_NAME_MAX + 1]; /* "" when not given */
};

/* vigie__postcmd_parse: one line (without or with its newline). Returns 0
 * or VIGIE_EINVAL with the reason in `err`. */
int vigie__postcmd_parse(const char *line, size_t len, struct post_cmd *out,
			 char *err, size_t errlen);

/* ---- the terminal screen (post/render.c) ---- */

/* vigie__postterm_clean: append `s` for a terminal: control characters
 * (C0, DEL, C1, so no escape sequence from a payload reaches the terminal)
 * and invalid UTF-8 become '?', at most `max_cols` columns; returns the
 * columns used. */
size_t vigie__postterm_clean(struct post_buf *b, const char *s,
			     size_t max_cols);

struct post_view {
	const struct post_queue *q;
	const char *selected; /* id of the selected entry, or NULL */
	int rows, cols;
	uint64_t now_us;
	const char *post, *name, *operator_name;
	bool connected;
	bool color;
	const char *message; /* footer: last status or log line, or NULL */
	const char *prompt;  /* non-NULL: the footer is this prompt */
	const char *input;   /* text typed at the prompt */
	uint64_t bad_payloads;
};

/* vigie__postterm_render: one full frame (cursor home, every line, clear to
 * end). */
void vigie__postterm_render(struct post_buf *b, const struct post_view *v);

/* vigie__postterm_select: the entry to select after `delta` rows from
 * `current` (NULL: the first visible). Returns NULL on an empty view. */
const struct post_entry *vigie__postterm_select(const struct post_queue *q,
						const char *current, int delta);

enum post_key {
	POST_KEY_NONE = 0,
	POST_KEY_UP = 0x100,
	POST_KEY_DOWN,
	POST_KEY_PGUP,
	POST_KEY_PGDN,
	POST_KEY_HOME,
	POST_KEY_END,
	POST_KEY_ENTER,
	POST_KEY_ESC,
	POST_KEY_BACKSPACE,
	/* Below 0x100: the byte itself (printable ASCII or a UTF-8 byte). */
};

/* Escape-sequence decoder: feed one byte at a time. */
struct post_keydec {
	int state;
	char params[8];
	size_t n;
};

/* vigie__postterm_key_feed: the key the byte completes, or POST_KEY_NONE while
 * a sequence is incomplete or was not one we know. A lone ESC is reported by
 * vigie__postterm_key_flush (call it when a read ends inside a sequence). */
int vigie__postterm_key_feed(struct post_keydec *k, unsigned char byte);
int vigie__postterm_key_flush(struct post_keydec *k);

/* ---- the core (post/post.c) ---- */

struct vigie_post;

struct post_stats {
	uint64_t received; /* dispatch messages received */
	uint64_t new_dispatches;
	uint64_t updates;
	uint64_t duplicates;
	uint64_t bad_payloads; /* undecodable or invalid, on any topic */
	uint64_t refused_full;
	uint64_t acks_sent;      /* PUBACKed */
	uint64_t acks_published; /* Ack publications, repeats included */
	uint64_t incidents;      /* incident updates read */
	uint64_t connects;
};

struct post_events {
	/* A dispatch arrived new or changed. */
	void (*on_dispatch)(void *ud, const struct post_entry *e, bool is_new);
	/* The broker has our Ack for `e` (PUBACK). */
	void (*on_ack)(void *ud, const struct post_entry *e);
	/* Something else changed (ack states, pruning, connection). */
	void (*on_change)(void *ud);
	/* up: connected, subscribed and announced (the birth's PUBACK came),
	 * so what is published for us from now on arrives; then false once
	 * that connection is lost. */
	void (*on_connection)(void *ud, bool up, bool session_present);
};

/* vigie__post_open: set up the client; nothing connects before
 * vigie__post_start. `cfg` must outlive the post. */
int vigie__post_open(uv_loop_t *loop, const struct post_config *cfg,
		     const struct post_events *ev, void *ud,
		     struct vigie_post **out);
int vigie__post_start(struct vigie_post *p);

/* vigie__post_ack: the operator `by` acknowledges dispatch `id`. The Ack is
 * published now, or when the connection is back; on_ack follows the PUBACK.
 * Returns 0, VIGIE_ENOTFOUND (no such dispatch), VIGIE_EINVAL (bad name,
 * already acknowledged) with the reason in `err`, or VIGIE_ENOMEM. */
int vigie__post_ack(struct vigie_post *p, const char *id, const char *by,
		    char *err, size_t errlen);

const struct post_queue *vigie__post_queue(const struct vigie_post *p);
void vigie__post_stats(const struct vigie_post *p, struct post_stats *st);
bool vigie__post_connected(const struct vigie_post *p);

/* vigie__post_close: announce OFFLINE "shutdown" (retained), disconnect
 * cleanly (the broker keeps the session and drops the will), release
 * everything, then cb(arg). */
void vigie__post_close(struct vigie_post *p, void (*cb)(void *arg), void *arg);

/* ---- front ends (post/console.c, post/stream.c) ---- */

/* Both call quit(arg) when the operator or a script asks to stop, and are
 * told of the core's events through their *_notify functions. */
struct post_ui_ctx {
	uv_loop_t *loop;
	struct vigie_post *post;
	const struct post_config *cfg;
	void (*quit)(void *arg, int status);
	void *arg;
};

struct post_console;
/* vigie__postcons_open: take the terminal (raw mode, alternate screen) and
 * capture stderr into the footer unless `log_file` names a file for it. */
int vigie__postcons_open(const struct post_ui_ctx *ctx, const char *log_file,
			 bool color, struct post_console **out);
void vigie__postcons_dispatch(struct post_console *c,
			      const struct post_entry *e, bool is_new);
void vigie__postcons_ack(struct post_console *c, const struct post_entry *e);
void vigie__postcons_changed(struct post_console *c);
void vigie__postcons_connection(struct post_console *c, bool up);
/* vigie__postcons_close: give the terminal back, then cb(arg). */
void vigie__postcons_close(struct post_console *c, void (*cb)(void *arg),
			   void *arg);

struct post_stream;
int vigie__poststream_open(const struct post_ui_ctx *ctx,
			   struct post_stream **out);
void vigie__poststream_dispatch(struct post_stream *s,
				const struct post_entry *e, bool is_new);
void vigie__poststream_ack(struct post_stream *s, const struct post_entry *e);
void vigie__poststream_connection(struct post_stream *s, bool up,
				  bool session_present);
void vigie__poststream_close(struct post_stream *s, void (*cb)(void *arg),
			     void *arg);

#endif
