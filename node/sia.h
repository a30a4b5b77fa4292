/* SIA DC-09 receiver of vigie-node: intrusion panels that already report to
 * an alarm receiving centre over IP report to the node instead (or as well),
 * and their events enter the mesh like any other.
 *
 *   sia_codec.c   frames: CRC, length, header, AES-CBC, timestamps, replies
 *   sia_codes.c   payloads: SIA DCS (DC-03) and Contact ID (DC-05) codes
 *   sia_config.c  the `panels:` section of the node configuration
 *   sia.c         TCP and UDP listeners, answers, retries, supervision
 *
 * The codec functions touch no loop and no socket: the unit tests, the
 * fuzzer and the panel simulator call them directly. Internal (vigie__
 * prefix), like node.h. */
#ifndef VIGIE_NODE_SIA_H
#define VIGIE_NODE_SIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "node.h"

/* ---- limits ---- */

/* Longest message body (from the opening quote to the CR) taken from a
 * panel. The length field allows 4095; real messages are under 200. A
 * longer frame closes its TCP connection. */
#define SIA_BODY_MAX 1024
/* LF, CRC (4), length (4), body, CR. */
#define SIA_FRAME_MAX   (SIA_BODY_MAX + 10)
#define SIA_ACCOUNT_MAX 16 /* hex digits */
#define SIA_FIELD_MAX   6  /* hex digits of the receiver and line fields */
#define SIA_TOKEN_MAX   15 /* "SIA-DCS", "ADM-CID", "NULL" ... */
#define SIA_TS_LEN      20 /* "_HH:MM:SS,MM-DD-YYYY" */
/* Largest answer we build: an encrypted ACK with the longest fields. */
#define SIA_REPLY_MAX 256
/* Events one SIA DCS message may carry ("/"-separated). */
#define SIA_EVENTS_MAX     8
#define SIA_PANEL_TEXT_MAX 64

/* ---- frames (sia_codec.c) ---- */

enum sia_token {
	SIA_TOKEN_OTHER = 0, /* well-formed but not one we process */
	SIA_TOKEN_DCS,       /* "SIA-DCS" */
	SIA_TOKEN_CID,       /* "ADM-CID" */
	SIA_TOKEN_NULL,      /* "NULL": link test */
	SIA_TOKEN_ACK,
	SIA_TOKEN_NAK,
	SIA_TOKEN_DUH,
};

/* The header of a message: everything up to the opening '[' of the data. */
struct sia_frame {
	bool encrypted; /* '*' before the id token */
	enum sia_token token;
	char id[SIA_TOKEN_MAX + 1]; /* the token as sent, without '*' */
	unsigned seq;               /* 0..9999 */
	bool has_rcvr;
	char rcvr[SIA_FIELD_MAX + 1];      /* R field, as sent */
	char line[SIA_FIELD_MAX + 1];      /* L field, as sent */
	char account[SIA_ACCOUNT_MAX + 1]; /* # field, upper-cased; "" absent */
	const char *rest;                  /* after '[': cleartext or hex */
	size_t rest_len;
};

/* What lies inside the brackets, in clear (decrypted if it was not). */
struct sia_content {
	const char *data; /* between '[' (or the pad's '|') and ']' */
	size_t data_len;
	const char *xdata; /* "[X..][V..]" blocks after the data, verbatim */
	size_t xdata_len;
	bool has_time;
	int64_t time_s; /* the timestamp, Unix seconds (it is UTC) */
};

/* vigie__sia_crc: CRC-16/ARC (poly 0xA001 reflected, init 0, no final
 * xor) as DC-09 uses it: "123456789" gives 0xBB3D. */
uint16_t vigie__sia_crc(const void *data, size_t len);

/* vigie__sia_scan: find the next frame in a TCP stream buffer. Bytes a
 * panel may leave between frames (NUL, CR) are skipped. Returns 1 when the
 * frame buf[*skip .. *skip + *frame_len) (LF .. CR) is complete, 0 when
 * more bytes are needed (*skip is still set: filler that may be dropped),
 * VIGIE_EDECODE for garbage (something else than a frame) and VIGIE_ETOOBIG
 * for a frame over SIA_FRAME_MAX; `err` says why. */
int vigie__sia_scan(const char *buf, size_t len, size_t *skip,
		    size_t *frame_len, char *err, size_t errlen);

/* vigie__sia_frame_check: a complete frame (LF .. CR): check the CRC and
 * length fields (either case of hex) against the body and point at the
 * body. Returns 0, VIGIE_EDECODE (not shaped like a frame) or VIGIE_EINVAL
 * (bad CRC or length: a frame damaged in transit, which gets no answer). */
int vigie__sia_frame_check(const char *frame, size_t len, const char **body,
			   size_t *body_len, char *err, size_t errlen);

/* vigie__sia_frame_parse: the header of a checked body. Returns 0 or
 * VIGIE_EINVAL with the reason in `err`. */
int vigie__sia_frame_parse(const char *body, size_t len, struct sia_frame *f,
			   char *err, size_t errlen);

/* vigie__sia_content_parse: the data, x-data and timestamp of cleartext
 * `text` (what follows '['). With `padded`, text is a decrypted region:
 * pad, '|', data, ']' ..., and the pad is skipped first. Returns 0 or
 * VIGIE_EINVAL. The content points into `text`. */
int vigie__sia_content_parse(const char *text, size_t len, bool padded,
			     struct sia_content *c, char *err, size_t errlen);

/* vigie__sia_decrypt: AES-CBC with a zero IV of the hex region (either
 * case) with a 16, 24 or 32 byte key into out (len/2 bytes). Returns 0 or
 * VIGIE_EINVAL (odd length, not a multiple of the block, not hex, too
 * long for out, wrong key size). */
int vigie__sia_decrypt(const uint8_t *key, size_t key_len, const char *hex,
		       size_t hex_len, char *out, size_t cap, size_t *out_len);

/* vigie__sia_encrypt: the encrypted region of a message: pseudo-random
 * pad, '|', then `text` (data ']' [x-data] timestamp), padded so that it is
 * a multiple of 16 bytes (16 pad bytes when it already is), encrypted with
 * AES-CBC, zero IV, and written as upper-case hex. Returns 0,
 * VIGIE_ETOOBIG or VIGIE_EINVAL. */
int vigie__sia_encrypt(const uint8_t *key, size_t key_len, const char *text,
		       size_t len, char *hex, size_t cap, size_t *hex_len);

/* vigie__sia_timestamp: "_HH:MM:SS,MM-DD-YYYY" (UTC) of `unix_s` into out
 * (SIA_TS_LEN + 1 bytes). */
void vigie__sia_timestamp(int64_t unix_s, char *out);

/* What vigie__sia_build writes. */
struct sia_build {
	const char *token;   /* "SIA-DCS", "ADM-CID", "NULL", "ACK" ... */
	unsigned seq;        /* 0..9999 */
	const char *rcvr;    /* NULL: no R field */
	const char *line;    /* L field; NULL gives "0" */
	const char *account; /* NULL: no # field */
	const char *data;    /* inside the brackets; NULL is "" */
	const char *xdata;   /* "[..]" blocks after the data, or NULL */
	bool timestamp;      /* add one (always done when encrypting) */
	int64_t time_s;
	const uint8_t *key; /* encrypt (and '*' the token) when key_len */
	size_t key_len;
};

/* vigie__sia_build: a whole frame, LF .. CR, with CRC and length. Returns
 * 0, VIGIE_ETOOBIG (over cap or SIA_BODY_MAX) or VIGIE_EINVAL. */
int vigie__sia_build(const struct sia_build *b, char *out, size_t cap,
		     size_t *len);

/* Answers as DC-09 defines them. ACK and DUH echo the request's sequence,
 * receiver, line and account; an ACK to an encrypted request is encrypted
 * with `key` and carries our timestamp; NAK ("0000R0L0A0[]") carries only
 * our time so that the panel can correct its clock; it is never
 * encrypted. Return 0 or VIGIE_ETOOBIG. */
int vigie__sia_ack(const struct sia_frame *req, const uint8_t *key,
		   size_t key_len, int64_t now_s, char *out, size_t cap,
		   size_t *len);
int vigie__sia_duh(const struct sia_frame *req, char *out, size_t cap,
		   size_t *len);
int vigie__sia_nak(int64_t now_s, char *out, size_t cap, size_t *len);

/* ---- payloads (sia_codes.c) ---- */

/* One event of a panel message, mapped to Vigie's kind and state. */
struct sia_event {
	int kind;         /* VIGIE__V1__EVENT_KIND__* */
	int state;        /* VIGIE__V1__EVENT_STATE__* */
	char code[8];     /* kept verbatim in Event.source_code: "BA", "E130" */
	const char *name; /* "Burglary Alarm" */
	bool has_area, has_zone, has_user;
	unsigned area, zone, user; /* the panel's own numbers */
	bool still_present;        /* Contact ID qualifier 6: a status report */
	char text[SIA_PANEL_TEXT_MAX + 1]; /* ^free text^ of a DCS event */
};

struct sia_payload {
	char account[SIA_ACCOUNT_MAX + 1]; /* "#acct|" inside the data, or "" */
	size_t n;
	struct sia_event ev[SIA_EVENTS_MAX];
};

/* vigie__sia_dcs_parse: SIA DCS data ("#1234|Nri1/BA03/BA04^text^").
 * vigie__sia_cid_parse: Contact ID data ("#1234|1130 01 015").
 * Return 0, VIGIE_ENOTFOUND for a well-formed event whose code we do not
 * map (`err` names it), or VIGIE_EINVAL for malformed data. */
int vigie__sia_dcs_parse(const char *data, size_t len, struct sia_payload *p,
			 char *err, size_t errlen);
int vigie__sia_cid_parse(const char *data, size_t len, struct sia_payload *p,
			 char *err, size_t errlen);

/* Mapping tables, for tests and documentation: kind/state and name of a
 * DCS code ("BA") or Contact ID event (130, qualifier 1/3/6). Return 0 or
 * VIGIE_ENOTFOUND. */
int vigie__sia_dcs_map(const char *code, int *kind, int *state,
		       const char **name);
int vigie__sia_cid_map(unsigned event, unsigned qualifier, int *kind,
		       int *state, const char **name);

/* ---- configuration (sia_config.c) ---- */

/* A panel zone or area that names a Vigie zone and sensor. An absent
 * number matches any. */
struct sia_map {
	bool has_area, has_zone;
	unsigned area, zone;
	const char *vzone;  /* Vigie zone id or NULL */
	const char *sensor; /* Vigie sensor id or NULL */
	int sensor_kind;    /* that sensor's kind, 0 if none */
};

struct sia_account_conf {
	const char *id;   /* upper-case hex */
	const char *name; /* label for logs and events; the id when absent */
	uint8_t key[32];
	size_t key_len;          /* 0: cleartext account */
	uint64_t supervision_ms; /* 0: link not supervised */
	struct sia_map dflt;     /* zone and sensor when no entry matches */
	struct sia_map *map;
	size_t n_map;
};

struct sia_listen_conf {
	bool udp;
	const char *host;
	int port; /* 0: any free port (tests, bench) */
};

struct sia_config {
	struct sia_listen_conf *listen;
	size_t n_listen;
	struct sia_account_conf *accounts;
	size_t n_accounts;
	uint64_t past_ms, future_ms; /* timestamp window around our clock */
	uint64_t idle_ms;            /* close a silent TCP connection */
	uint64_t remember_ms;        /* how long a (account, seq) is known */
	size_t max_connections;
	size_t max_remembered;
};

/* vigie__sia_conf_load: read the `panels:` map (NULL: no panels; *out is
 * then NULL). Zones and sensors are checked against `cfg`, which must be
 * loaded already. Errors are recorded in `c` as FILE:LINE: FIELD: reason
 * and VIGIE_ECONFIG (or VIGIE_ENOMEM) returned. */
int vigie__sia_conf_load(struct vigie_conf *c,
			 const struct vigie_conf_node *map,
			 const struct node_config *cfg,
			 struct sia_config **out);
void vigie__sia_conf_free(struct sia_config *sc);
const struct sia_account_conf *
vigie__sia_conf_account(const struct sia_config *sc, const char *id);

/* ---- the receiver (sia.c) ---- */

struct sia_receiver;

struct sia_stats {
	uint64_t frames; /* frames that passed CRC and length */
	uint64_t acked, naked, duhed;
	uint64_t bad_crc;        /* dropped, unanswered: CRC or length wrong */
	uint64_t malformed;      /* CRC right, header unreadable: unanswered */
	uint64_t garbage;        /* not frames, or too big: dropped */
	uint64_t garbage_closes; /* TCP connections closed for those */
	uint64_t refused;        /* NAKed: unknown account, key, time */
	uint64_t retries;        /* same account+seq again: re-answered */
	uint64_t events;         /* submitted to the node */
	uint64_t nulls;          /* link tests */
	uint64_t busy;           /* unanswered: a cap was reached */
	uint64_t comm_losses, comm_restores;
	size_t connections;
};

/* vigie__sia_open: bind every listener of `sc` and start serving; events
 * go to node `n`. `sc` must outlive the receiver. Returns 0, VIGIE_EIO
 * (a listener could not bind; logged) or VIGIE_ENOMEM. On error nothing is
 * left open once the loop has run. */
int vigie__sia_open(uv_loop_t *loop, struct vigie_node *n,
		    const struct sia_config *sc, struct sia_receiver **out);

/* vigie__sia_port: the port listener `i` (in config order) is bound to. */
int vigie__sia_port(const struct sia_receiver *rx, size_t i);

void vigie__sia_stats(const struct sia_receiver *rx, struct sia_stats *st);

/* vigie__sia_close: stop listening and close every connection. Answers
 * still waiting for the outbox are dropped (the panels retry). Close it
 * before the node: its memory is released, and `cb` called, once the node
 * has reported on every event it was given, which vigie__node_close
 * ensures. */
void vigie__sia_close(struct sia_receiver *rx, void (*cb)(void *arg),
		      void *arg);

#endif
