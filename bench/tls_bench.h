/* vigie-bench: the figures of issue 5 (security) that need TLS.
 *
 *   tls_bench.c   relay.throughput_signed and security.tls_reconnect_ms,
 *                 with their own certificates (openssl) and a TLS broker
 *
 * Same conventions as bench.h: 0 or a negative VIGIE_E* code. */
#ifndef VIGIE_BENCH_TLS_BENCH_H
#define VIGIE_BENCH_TLS_BENCH_H

#include "bench.h"

/* relay.throughput_signed: signed events/s through vigie-relay with
 * signature verification and TLS on; baseline the same events with both
 * off. */
int bench_relay_throughput_signed(const struct bench_opts *o);

/* security.tls_reconnect_ms: a vigie_mqtt client with the node's settings
 * back on a TLS broker after its connection dropped; baseline the same over
 * plaintext. */
int bench_tls_reconnect(const struct bench_opts *o);

#endif
