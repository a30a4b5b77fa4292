/* Which events the relay has: one `struct stream` per (site, node, boot_id)
 * with the highest contiguous seq seen and the few seqs seen above it (out
 * of order). A seq is a repeat if it is <= contig or among those above.
 * `committed` trails `contig`: it is what the Receipt may claim, updated by
 * the core once the store committed. Pure: no I/O. */
#ifndef VIGIE_RELAY_STREAMS_H
#define VIGIE_RELAY_STREAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hmap.h"
#include "vigie/codec.h"

struct stream {
	struct hmap_entry he;
	char key[2 * VIGIE_ID_MAX + 24]; /* "site/node/boot_id" */
	char site[VIGIE_ID_MAX + 1];
	char node[VIGIE_ID_MAX + 1];
	uint64_t boot_id;
	uint64_t contig;    /* every seq <= contig is stored or queued */
	uint64_t committed; /* every seq <= committed is durable */
	uint64_t *above;    /* sorted seqs > contig + 1 seen, capped */
	size_t n_above, cap_above;
	/* Owned by the core: the store batch listing this stream. */
	uint64_t batch;
	uint64_t batch_contig;
};

enum stream_verdict {
	STREAM_NEW = 0,
	STREAM_DUP,  /* already stored or queued */
	STREAM_FULL, /* too far out of order: leave it unreceipted for now */
};

struct streams {
	struct hmap map;
	size_t max_streams;
	size_t max_above;
};

void vigie__streams_init(struct streams *s, size_t max_streams,
			 size_t max_above);
void vigie__streams_free(struct streams *s);

/* vigie__streams_get: the stream of (site, node, boot_id), created if
 * `create`. Returns 0, VIGIE_ENOTFOUND, VIGIE_EFULL (max_streams reached)
 * or VIGIE_ENOMEM. */
int vigie__streams_get(struct streams *s, const char *site, const char *node,
		       uint64_t boot_id, bool create, struct stream **out);

enum stream_verdict vigie__stream_check(const struct streams *s,
					const struct stream *st, uint64_t seq);

/* vigie__stream_mark: record `seq` (vigie__stream_check said NEW).
 * Returns 0, VIGIE_EFULL or VIGIE_ENOMEM (then nothing is recorded). */
int vigie__stream_mark(const struct streams *s, struct stream *st,
		       uint64_t seq);

/* vigie__stream_advance: every seq <= `seq` counts as stored, on the node's
 * word (it holds receipts that far, from records this relay no longer
 * has); what came early above it closes the gap as marks do. Returns true
 * if contig moved. */
bool vigie__stream_advance(struct stream *st, uint64_t seq);

#endif
