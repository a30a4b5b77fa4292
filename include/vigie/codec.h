/* The wire contract: topic names of DESIGN.md's tree (version 1) and the
 * protobuf payloads of proto/vigie.proto. */
#ifndef VIGIE_CODEC_H
#define VIGIE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "vigie/vigie.pb-c.h"

/* Largest payload any Vigie process accepts or sends. */
#define VIGIE_MAX_PAYLOAD (64 * 1024)
/* Longest id (site, node, post, incident, pattern) in a topic. */
#define VIGIE_ID_MAX 64
/* Longest topic we build. */
#define VIGIE_TOPIC_MAX 256

enum vigie_topic_type {
	VIGIE_TOPIC_UNKNOWN = 0,
	VIGIE_TOPIC_EVENT,      /* vigie/v1/site/{site}/node/{node}/event */
	VIGIE_TOPIC_STATE,      /* vigie/v1/site/{site}/node/{node}/state */
	VIGIE_TOPIC_HEARTBEAT,  /* vigie/v1/site/{site}/node/{node}/heartbeat */
	VIGIE_TOPIC_RECEIPT,    /* vigie/v1/relay/{site}/receipt/{node} */
	VIGIE_TOPIC_ALERT,      /* vigie/v1/relay/{site}/alert */
	VIGIE_TOPIC_STATUS,     /* vigie/v1/status/{site} */
	VIGIE_TOPIC_INCIDENT,   /* vigie/v1/incident/{id} */
	VIGIE_TOPIC_DISPATCH,   /* vigie/v1/post/{post}/dispatch */
	VIGIE_TOPIC_ACK,        /* vigie/v1/post/{post}/ack */
	VIGIE_TOPIC_POST_STATE, /* vigie/v1/post/{post}/state */
	VIGIE_TOPIC_PATTERN,    /* vigie/v1/pattern/{id} */
};

/* A parsed topic. `site` and `node` hold the ids the topic names; for post,
 * incident and pattern topics the id is in `id`. */
struct vigie_topic {
	enum vigie_topic_type type;
	char site[VIGIE_ID_MAX + 1];
	char node[VIGIE_ID_MAX + 1];
	char id[VIGIE_ID_MAX + 1];
};

/* vigie_id_valid: 1 if `s` is a topic word of [a-z0-9_-], 1..VIGIE_ID_MAX
 * characters; 0 otherwise. */
int vigie_id_valid(const char *s);

/* vigie_topic_build: write the topic of `type` into buf. `a` is the site (or
 * the post, incident or pattern id), `b` the node (event, state, heartbeat,
 * receipt) or NULL. Returns 0, VIGIE_EINVAL for an invalid id or type, or
 * VIGIE_ETOOBIG when buf is too small. */
int vigie_topic_build(char *buf, size_t len, enum vigie_topic_type type,
		      const char *a, const char *b);

/* vigie_topic_parse: recognise a version 1 topic. Returns 0, or VIGIE_EINVAL
 * when the topic is not one of the tree's or an id in it is invalid. */
int vigie_topic_parse(const char *topic, struct vigie_topic *out);

/* Names of enum values as used in configs, scenario files and logs:
 * "glass_break", "alarm", "critical" ... Unknown values give "unknown". */
const char *vigie_kind_name(int kind);
const char *vigie_state_name(int state);
const char *vigie_priority_name(int priority);

/* vigie_kind_parse / vigie_state_parse: accept "glass_break", "glass-break"
 * or "KIND_GLASS_BREAK" (any case). Return 0 or VIGIE_EINVAL. */
int vigie_kind_parse(const char *name, int *out);
int vigie_state_parse(const char *name, int *out);

/* vigie_event_encode: serialize `ev` and wrap it in a SignedEvent with the
 * given signature (NULL/0 for unsigned). *out is malloc'd; free() it.
 * Returns 0, VIGIE_ENOMEM or VIGIE_ETOOBIG. */
int vigie_event_encode(const Vigie__V1__Event *ev, const uint8_t *sig,
		       size_t sig_len, const char *key_id, uint8_t **out,
		       size_t *out_len);

/* vigie_event_decode: unpack a SignedEvent payload and the Event inside it.
 * On success the caller owns both and releases them with vigie_event_free.
 * Returns 0, VIGIE_ETOOBIG or VIGIE_EDECODE (nothing to free then). */
int vigie_event_decode(const void *payload, size_t len,
		       Vigie__V1__SignedEvent **signed_out,
		       Vigie__V1__Event **event_out);
void vigie_event_free(Vigie__V1__SignedEvent *se, Vigie__V1__Event *ev);

/* vigie_event_format: one readable line for logs and consoles:
 * "louvre/apollo-1 #3.17 glass_break alarm zone=apollo-gallery ...".
 * Returns buf. */
char *vigie_event_format(const Vigie__V1__Event *ev, char *buf, size_t len);

/* vigie_pack: serialize any protobuf-c message into a malloc'd buffer.
 * Returns 0, VIGIE_ENOMEM or VIGIE_ETOOBIG. */
int vigie_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len);

#endif
