/* vigie-bench: the figures of issue 5 (security) that need TLS.
 *
 *   tls_bench.c   the certificates they use (openssl), and
 *                 security.tls_reconnect_ms; relay.throughput_signed is
 *                 relay_throughput.c's run with TLS and signatures on
 *
 * Same conventions as bench.h: 0 or a negative VIGIE_E* code. */
#ifndef VIGIE_BENCH_TLS_BENCH_H
#define VIGIE_BENCH_TLS_BENCH_H

#include "bench.h"

/* A CA, a server certificate for 127.0.0.1 and a client certificate, with
 * their keys, in the temporary directory. */
struct bench_pki {
	char ca[256], ca_key[256];
	char server_crt[256], server_key[256];
	char client_crt[256], client_key[256];
	char log[256];
	/* Views of the files above, for brokers and clients; they point into
	 * this struct, which is therefore not to be copied. */
	struct bench_tls server, client;
};

/* bench_pki_make: make them (ECDSA P-256 like broker-config/vigie-keys).
 * Returns 0, VIGIE_ETOOBIG or VIGIE_ESYS. */
int bench_pki_make(struct bench_pki *p);

/* security.tls_reconnect_ms: a vigie_mqtt client with the node's settings
 * back on a TLS broker after its connection dropped; baseline the same over
 * plaintext. */
int bench_tls_reconnect(const struct bench_opts *o);

#endif
