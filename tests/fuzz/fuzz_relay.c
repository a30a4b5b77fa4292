/* libFuzzer: the relay's handling of what nodes publish — event and
 * heartbeat payloads decoded, their key looked up and their signature
 * checked, as the relay's verifier threads do (relay/verify.c). The first
 * input byte picks the topic, the rest is the payload. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "verify.h"
#include "vigie/codec.h"
#include "vigie/sign.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vigie_trust *trust;

/* A trust store with one real key, so that lookups and signature checks
 * run, not only the decoders. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/vigie-fuzz-trust-XXXXXX";
	struct vigie_sign_key k;
	char line[256], err[256];
	int fd;

	(void)argc;
	(void)argv;
	if (vigie_sign_init() || vigie_sign_keygen(&k))
		abort();
	fd = mkstemp(path);
	if (fd < 0 ||
	    vigie_sign_trust_line(&k, "louvre", "n1", line, sizeof(line)) !=
		    0 ||
	    write(fd, line, strlen(line)) < 0)
		abort();
	close(fd);
	if (vigie_trust_load(path, &trust, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_relay: %s\n", err);
		abort();
	}
	unlink(path);
	vigie_sign_key_wipe(&k);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const topics[] = {
		"vigie/v1/site/louvre/node/n1/event",
		"vigie/v1/site/louvre/node/n1/heartbeat",
		"vigie/v1/site/orsay/node/n2/event",
	};
	struct verify_job *j;

	if (size < 1 || size > VIGIE_MAX_PAYLOAD)
		return 0;
	j = calloc(1, sizeof(*j) + size);
	if (!j)
		return 0;
	snprintf(j->topic, sizeof(j->topic), "%s", topics[data[0] % 3]);
	if (vigie_topic_parse(j->topic, &j->t) != 0) {
		free(j);
		return 0;
	}
	j->len = size - 1;
	memcpy(j->payload, data + 1, size - 1);
	vigie__verify_job_run(trust, j);
	vigie__verify_job_free(j);
	return 0;
}
