/* libvigie-internal view of the outbox: limits shared with the tests and
 * hooks that only tests call. Not installed; nothing here is API. */
#ifndef VIGIE_OUTBOX_INTERNAL_H
#define VIGIE_OUTBOX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "vigie/outbox.h"

/* Largest payload vigie_outbox_append accepts (larger: VIGIE_ETOOBIG). */
#define VIGIE__OUTBOX_MAX_PAYLOAD ((size_t)1 << 20)

/* vigie__outbox_commits: transactions committed since open, so a test can
 * see that group commit groups. Read on the loop thread. */
uint64_t vigie__outbox_commits(const struct vigie_outbox *ob);

/* vigie__outbox_set_busy_timeout: how long a transaction waits for a lock
 * held by another connection before failing (default 5000 ms). Tests set 0
 * to make a locked database fail at once. Returns 0, or VIGIE_EINVAL while a
 * transaction is in flight (the connection belongs to the worker then). */
int vigie__outbox_set_busy_timeout(struct vigie_outbox *ob, int ms);

#endif
