/* Node signatures: Ed25519 (libsodium) over the exact serialized Event and
 * HeartbeatBody bytes, and the relay's trust store of node public keys.
 *
 * Files (all text, written by `vigie-node keygen` and
 * broker-config/vigie-keys): secret key   one line "vigie-ed25519-secret <64
 * hex: the 32-byte seed>", mode 0600; a key readable by group or others is
 * refused, as ssh does. trust line   "<key_id> <site> <node> <64 hex: public
 * key>"; a trust store is a file of such lines or a directory of *.pub files
 *                holding them. '#' starts a comment line.
 * A key id is the hex of the first 8 bytes of BLAKE2b(public key): 16
 * characters, so it can be checked against the key it names.
 *
 * Thread safety: after vigie_sign_init, signing and verifying may run on any
 * thread; a loaded trust store is read-only and may be shared. */
#ifndef VIGIE_SIGN_H
#define VIGIE_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "vigie/codec.h"

#define VIGIE_SIGN_PK_BYTES 32
#define VIGIE_SIGN_SK_BYTES 64
#define VIGIE_SIGN_BYTES    64
#define VIGIE_SIGN_ID_CHARS 16
#define VIGIE_SIGN_DIGEST   16 /* vigie_sign_digest output */

struct vigie_sign_key {
	uint8_t sk[VIGIE_SIGN_SK_BYTES]; /* libsodium's seed || public key */
	uint8_t pk[VIGIE_SIGN_PK_BYTES];
	char key_id[VIGIE_SIGN_ID_CHARS + 1];
};

/* vigie_sign_init: initialise libsodium; call once before anything below
 * (it is cheap and safe to call again). Returns 0 or VIGIE_ESYS. */
int vigie_sign_init(void);

/* vigie_sign_keygen: a fresh key pair from the system's random source.
 * Returns 0 or VIGIE_ESYS. */
int vigie_sign_keygen(struct vigie_sign_key *k);

/* vigie_sign_key_id: the key id of public key `pk` into out (17 bytes). */
void vigie_sign_key_id(const uint8_t *pk, char *out);

/* vigie_sign_key_save: write the secret key file at `path`, created 0600
 * (never over an existing file: VIGIE_EIO then, with errno EEXIST).
 * Returns 0 or VIGIE_EIO. */
int vigie_sign_key_save(const struct vigie_sign_key *k, const char *path);

/* vigie_sign_key_load: read a secret key file. Returns 0, VIGIE_EIO (cannot
 * read), VIGIE_EAUTH (readable by group or others) or VIGIE_EINVAL (not a
 * key file); `err` (may be NULL) says why. */
int vigie_sign_key_load(const char *path, struct vigie_sign_key *k, char *err,
			size_t errlen);

/* vigie_sign_key_wipe: erase a key from memory. */
void vigie_sign_key_wipe(struct vigie_sign_key *k);

/* vigie_sign_trust_line: the trust store line naming `k` as site/node's key
 * (with a newline). Returns 0, VIGIE_EINVAL (bad id) or VIGIE_ETOOBIG. */
int vigie_sign_trust_line(const struct vigie_sign_key *k, const char *site,
			  const char *node, char *buf, size_t len);

/* vigie_sign_detached / vigie_sign_verify: Ed25519 over msg[0..len).
 * verify returns 0 or VIGIE_EAUTH (bad signature or wrong length). */
void vigie_sign_detached(const struct vigie_sign_key *k, const void *msg,
			 size_t len, uint8_t *sig);
int vigie_sign_verify(const uint8_t *pk, const void *msg, size_t len,
		      const uint8_t *sig, size_t sig_len);

/* vigie_sign_digest: BLAKE2b-128 of msg, to tell two payloads apart. */
void vigie_sign_digest(const void *msg, size_t len, uint8_t *out);

/* vigie_sign_event: serialize `ev`, sign those bytes with `k` (NULL: no
 * signature) and wrap them in a SignedEvent. *out is malloc'd; free() it.
 * Returns 0, VIGIE_ENOMEM or VIGIE_ETOOBIG. */
int vigie_sign_event(const struct vigie_sign_key *k, const Vigie__V1__Event *ev,
		     uint8_t **out, size_t *out_len);

/* vigie_sign_heartbeat: the same for a HeartbeatBody in a Heartbeat. */
int vigie_sign_heartbeat(const struct vigie_sign_key *k,
			 const Vigie__V1__HeartbeatBody *body, uint8_t **out,
			 size_t *out_len);

/* ---- the trust store ---- */

struct vigie_trust_entry {
	char key_id[VIGIE_SIGN_ID_CHARS + 1];
	char site[VIGIE_ID_MAX + 1];
	char node[VIGIE_ID_MAX + 1];
	uint8_t pk[VIGIE_SIGN_PK_BYTES];
};

struct vigie_trust;

/* vigie_trust_load: read a trust file, or every *.pub file of a directory.
 * A line whose key id is not its key's, a duplicate key id, or a bad line is
 * an error ("FILE:LINE: reason" in err). Returns 0, VIGIE_ECONFIG, VIGIE_EIO
 * or VIGIE_ENOMEM. */
int vigie_trust_load(const char *path, struct vigie_trust **out, char *err,
		     size_t errlen);
void vigie_trust_free(struct vigie_trust *t);
size_t vigie_trust_count(const struct vigie_trust *t);

/* vigie_trust_find: the entry of `key_id`, or NULL (a binary search:
 * thread-safe, no allocation). */
const struct vigie_trust_entry *vigie_trust_find(const struct vigie_trust *t,
						 const char *key_id);

#endif
