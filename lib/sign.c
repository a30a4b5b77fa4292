/* Ed25519 node signatures and the trust store; the contract is in
 * include/vigie/sign.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "vigie/error.h"
#include "vigie/sign.h"

#define SECRET_TAG "vigie-ed25519-secret"
/* A trust store line is short; longer ones are refused, not cut. */
#define TRUST_LINE_MAX 512
/* More entries than any deployment has nodes, so a runaway file is an
 * error and not an out-of-memory. */
#define TRUST_MAX_ENTRIES 1000000

struct vigie_trust {
	struct vigie_trust_entry *e; /* sorted by key_id */
	size_t n, cap;
};

int vigie_sign_init(void)
{
	return sodium_init() < 0 ? VIGIE_ESYS : 0;
}

void vigie_sign_key_id(const uint8_t *pk, char *out)
{
	uint8_t h[crypto_generichash_BYTES];

	crypto_generichash(h, sizeof(h), pk, VIGIE_SIGN_PK_BYTES, NULL, 0);
	sodium_bin2hex(out, VIGIE_SIGN_ID_CHARS + 1, h,
		       VIGIE_SIGN_ID_CHARS / 2);
}

static void from_seed(struct vigie_sign_key *k, const uint8_t *seed)
{
	crypto_sign_seed_keypair(k->pk, k->sk, seed);
	vigie_sign_key_id(k->pk, k->key_id);
}

int vigie_sign_keygen(struct vigie_sign_key *k)
{
	uint8_t seed[crypto_sign_SEEDBYTES];

	if (vigie_sign_init())
		return VIGIE_ESYS;
	randombytes_buf(seed, sizeof(seed));
	from_seed(k, seed);
	sodium_memzero(seed, sizeof(seed));
	return 0;
}

void vigie_sign_key_wipe(struct vigie_sign_key *k)
{
	sodium_memzero(k, sizeof(*k));
}

int vigie_sign_key_save(const struct vigie_sign_key *k, const char *path)
{
	char line[sizeof(SECRET_TAG) + 2 * crypto_sign_SEEDBYTES + 4];
	size_t len, off = 0;
	int fd, rc = 0;

	/* O_EXCL: a key is never silently replaced (provisioning is
	 * idempotent by keeping what exists). */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return VIGIE_EIO;
	memcpy(line, SECRET_TAG " ", sizeof(SECRET_TAG));
	/* libsodium's secret key starts with the seed. */
	sodium_bin2hex(line + sizeof(SECRET_TAG),
		       sizeof(line) - sizeof(SECRET_TAG), k->sk,
		       crypto_sign_SEEDBYTES);
	len = strlen(line);
	line[len++] = '\n';
	while (off < len) {
		ssize_t n = write(fd, line + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = VIGIE_EIO;
			break;
		}
		off += (size_t)n;
	}
	if (rc == 0 && fsync(fd) != 0)
		rc = VIGIE_EIO;
	if (close(fd) != 0)
		rc = VIGIE_EIO;
	sodium_memzero(line, sizeof(line));
	if (rc)
		unlink(path);
	return rc;
}

int vigie_sign_key_load(const char *path, struct vigie_sign_key *k, char *err,
			size_t errlen)
{
	char buf[256], scratch[8];
	uint8_t seed[crypto_sign_SEEDBYTES];
	const char *hex;
	struct stat sb;
	size_t bin_len = 0, len = 0;
	ssize_t n;
	int fd, rc = 0;

	if (!err) {
		err = scratch;
		errlen = sizeof(scratch);
	}
	if (vigie_sign_init()) {
		snprintf(err, errlen, "libsodium did not initialise");
		return VIGIE_ESYS;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return VIGIE_EIO;
	}
	if (fstat(fd, &sb) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		rc = VIGIE_EIO;
		goto out_close;
	}
	if (sb.st_mode & 077) {
		snprintf(err, errlen,
			 "%s: a signing key must not be readable by others "
			 "(mode %03o; chmod 600)",
			 path, (unsigned)(sb.st_mode & 0777));
		rc = VIGIE_EAUTH;
		goto out_close;
	}
	while (len < sizeof(buf) - 1) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			rc = VIGIE_EIO;
			goto out_wipe;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
		       buf[len - 1] == ' '))
		buf[--len] = '\0';
	if (strncmp(buf, SECRET_TAG " ", sizeof(SECRET_TAG)) != 0 ||
	    len != sizeof(SECRET_TAG) + 2 * crypto_sign_SEEDBYTES) {
		snprintf(err, errlen,
			 "%s: not a Vigie signing key (one line \"" SECRET_TAG
			 " <64 hex digits>\")",
			 path);
		rc = VIGIE_EINVAL;
		goto out_wipe;
	}
	hex = buf + sizeof(SECRET_TAG);
	if (sodium_hex2bin(seed, sizeof(seed), hex, strlen(hex), NULL, &bin_len,
			   NULL) != 0 ||
	    bin_len != sizeof(seed)) {
		snprintf(err, errlen, "%s: the key is not 64 hex digits", path);
		rc = VIGIE_EINVAL;
		goto out_wipe;
	}
	from_seed(k, seed);
out_wipe:
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(buf, sizeof(buf));
out_close:
	close(fd);
	return rc;
}

int vigie_sign_trust_line(const struct vigie_sign_key *k, const char *site,
			  const char *node, char *buf, size_t len)
{
	char hex[2 * VIGIE_SIGN_PK_BYTES + 1];
	int n;

	if (!vigie_id_valid(site) || !vigie_id_valid(node))
		return VIGIE_EINVAL;
	sodium_bin2hex(hex, sizeof(hex), k->pk, sizeof(k->pk));
	n = snprintf(buf, len, "%s %s %s %s\n", k->key_id, site, node, hex);
	if (n < 0 || (size_t)n >= len)
		return VIGIE_ETOOBIG;
	return 0;
}

void vigie_sign_detached(const struct vigie_sign_key *k, const void *msg,
			 size_t len, uint8_t *sig)
{
	crypto_sign_detached(sig, NULL, msg, len, k->sk);
}

int vigie_sign_verify(const uint8_t *pk, const void *msg, size_t len,
		      const uint8_t *sig, size_t sig_len)
{
	if (!sig || sig_len != crypto_sign_BYTES)
		return VIGIE_EAUTH;
	if (crypto_sign_verify_detached(sig, msg, len, pk) != 0)
		return VIGIE_EAUTH;
	return 0;
}

void vigie_sign_digest(const void *msg, size_t len, uint8_t *out)
{
	crypto_generichash(out, VIGIE_SIGN_DIGEST, msg, len, NULL, 0);
}

/* Pack `inner`, sign it, pack the wrapper whose field 1 holds the bytes.
 * SignedEvent and Heartbeat share their layout (bytes, bytes, string). */
static int sign_wrap(const struct vigie_sign_key *k,
		     const ProtobufCMessage *inner, ProtobufCMessage *wrapper,
		     ProtobufCBinaryData *body, ProtobufCBinaryData *sigf,
		     char **key_id, uint8_t **out, size_t *out_len)
{
	uint8_t sig[VIGIE_SIGN_BYTES];
	uint8_t *bytes;
	size_t len;
	int rc;

	rc = vigie_pack(inner, &bytes, &len);
	if (rc)
		return rc;
	body->data = bytes;
	body->len = len;
	if (k) {
		vigie_sign_detached(k, bytes, len, sig);
		sigf->data = sig;
		sigf->len = sizeof(sig);
		*key_id = (char *)k->key_id;
	}
	rc = vigie_pack(wrapper, out, out_len);
	free(bytes);
	return rc;
}

int vigie_sign_event(const struct vigie_sign_key *k, const Vigie__V1__Event *ev,
		     uint8_t **out, size_t *out_len)
{
	Vigie__V1__SignedEvent se = VIGIE__V1__SIGNED_EVENT__INIT;

	return sign_wrap(k, &ev->base, &se.base, &se.event, &se.signature,
			 &se.key_id, out, out_len);
}

int vigie_sign_heartbeat(const struct vigie_sign_key *k,
			 const Vigie__V1__HeartbeatBody *body, uint8_t **out,
			 size_t *out_len)
{
	Vigie__V1__Heartbeat hb = VIGIE__V1__HEARTBEAT__INIT;

	return sign_wrap(k, &body->base, &hb.base, &hb.body, &hb.signature,
			 &hb.key_id, out, out_len);
}

/* ---- trust store ---- */

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct vigie_trust_entry *)a)->key_id,
		      ((const struct vigie_trust_entry *)b)->key_id);
}

static int trust_add(struct vigie_trust *t, const struct vigie_trust_entry *e)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct vigie_trust_entry *ne;

		if (cap > TRUST_MAX_ENTRIES)
			return VIGIE_ETOOBIG;
		ne = realloc(t->e, cap * sizeof(*ne));
		if (!ne)
			return VIGIE_ENOMEM;
		t->e = ne;
		t->cap = cap;
	}
	t->e[t->n++] = *e;
	return 0;
}

static int parse_line(char *line, struct vigie_trust_entry *e, char *why,
		      size_t whylen)
{
	char *f[5], *save = NULL, *p = line;
	char id[VIGIE_SIGN_ID_CHARS + 1];
	size_t n = 0, bin_len = 0;

	while (n < 5) {
		char *tok = strtok_r(p, " \t", &save);

		p = NULL;
		if (!tok)
			break;
		f[n++] = tok;
	}
	if (n != 4) {
		snprintf(why, whylen,
			 "expected \"KEY_ID SITE NODE PUBLIC_KEY_HEX\"");
		return VIGIE_ECONFIG;
	}
	if (strlen(f[0]) != VIGIE_SIGN_ID_CHARS) {
		snprintf(why, whylen, "key id must be %d hex digits",
			 VIGIE_SIGN_ID_CHARS);
		return VIGIE_ECONFIG;
	}
	if (!vigie_id_valid(f[1]) || !vigie_id_valid(f[2])) {
		snprintf(why, whylen, "site and node must be ids ([a-z0-9_-])");
		return VIGIE_ECONFIG;
	}
	if (strlen(f[3]) != 2 * VIGIE_SIGN_PK_BYTES ||
	    sodium_hex2bin(e->pk, sizeof(e->pk), f[3], strlen(f[3]), NULL,
			   &bin_len, NULL) != 0 ||
	    bin_len != sizeof(e->pk)) {
		snprintf(why, whylen, "public key must be %d hex digits",
			 2 * VIGIE_SIGN_PK_BYTES);
		return VIGIE_ECONFIG;
	}
	vigie_sign_key_id(e->pk, id);
	if (strcmp(id, f[0]) != 0) {
		snprintf(why, whylen,
			 "key id %s does not match its key (which is %s)", f[0],
			 id);
		return VIGIE_ECONFIG;
	}
	strcpy(e->key_id, id);
	strcpy(e->site, f[1]);
	strcpy(e->node, f[2]);
	return 0;
}

static int load_file(struct vigie_trust *t, const char *path, char *err,
		     size_t errlen)
{
	char line[TRUST_LINE_MAX + 2], why[160];
	unsigned lineno = 0;
	FILE *f = fopen(path, "re");
	int rc = 0;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return VIGIE_EIO;
	}
	while (fgets(line, sizeof(line), f)) {
		struct vigie_trust_entry e;
		size_t len = strlen(line);
		char *p = line;

		lineno++;
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			snprintf(err, errlen, "%s:%u: line too long", path,
				 lineno);
			rc = VIGIE_ECONFIG;
			break;
		}
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			continue;
		rc = parse_line(p, &e, why, sizeof(why));
		if (rc) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			break;
		}
		rc = trust_add(t, &e);
		if (rc) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno,
				 vigie_strerror(rc));
			break;
		}
	}
	fclose(f);
	return rc;
}

static int pub_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return d->d_name[0] != '.' && n > 4 &&
	       strcmp(d->d_name + n - 4, ".pub") == 0;
}

int vigie_trust_load(const char *path, struct vigie_trust **out, char *err,
		     size_t errlen)
{
	struct vigie_trust *t;
	struct stat sb;
	int rc = 0;

	if (vigie_sign_init()) {
		snprintf(err, errlen, "libsodium did not initialise");
		return VIGIE_ESYS;
	}
	if (stat(path, &sb) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return VIGIE_EIO;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return VIGIE_ENOMEM;
	if (S_ISDIR(sb.st_mode)) {
		struct dirent **names = NULL;
		int n = scandir(path, &names, pub_filter, alphasort);

		if (n < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			rc = VIGIE_EIO;
		}
		for (int i = 0; i < n; i++) {
			char file[4096];

			if (rc == 0) {
				snprintf(file, sizeof(file), "%s/%s", path,
					 names[i]->d_name);
				rc = load_file(t, file, err, errlen);
			}
			free(names[i]);
		}
		free(names);
	} else {
		rc = load_file(t, path, err, errlen);
	}
	if (rc == 0 && t->n)
		qsort(t->e, t->n, sizeof(t->e[0]), entry_cmp);
	for (size_t i = 1; rc == 0 && i < t->n; i++)
		if (strcmp(t->e[i].key_id, t->e[i - 1].key_id) == 0) {
			snprintf(err, errlen,
				 "%s: key id %s listed twice (%s/%s and %s/%s)",
				 path, t->e[i].key_id, t->e[i - 1].site,
				 t->e[i - 1].node, t->e[i].site, t->e[i].node);
			rc = VIGIE_ECONFIG;
		}
	if (rc) {
		vigie_trust_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void vigie_trust_free(struct vigie_trust *t)
{
	if (!t)
		return;
	free(t->e);
	free(t);
}

size_t vigie_trust_count(const struct vigie_trust *t)
{
	return t ? t->n : 0;
}

const struct vigie_trust_entry *vigie_trust_find(const struct vigie_trust *t,
						 const char *key_id)
{
	size_t lo = 0, hi;

	if (!t || !key_id || strlen(key_id) != VIGIE_SIGN_ID_CHARS)
		return NULL;
	hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key_id, t->e[mid].key_id);

		if (c == 0)
			return &t->e[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}
