/* Signatures: keys on disk, sign/verify, the trust store, signed events and
 * heartbeats, and the relay's verifier (thread pool, order kept) and replay
 * memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "replay.h"
#include "verify.h"
#include "vigie/error.h"
#include "vigie/sign.h"

static char tmpdir[] = "/tmp/vigie-test-sign-XXXXXX";

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	return vigie_sign_init();
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_sign_verify(void **state)
{
	struct vigie_sign_key k, other;
	uint8_t sig[VIGIE_SIGN_BYTES];
	const char msg[] = "louvre/apollo-1 #3.17 glass_break alarm";

	(void)state;
	assert_int_equal(vigie_sign_keygen(&k), 0);
	assert_int_equal(vigie_sign_keygen(&other), 0);
	assert_int_equal(strlen(k.key_id), VIGIE_SIGN_ID_CHARS);
	assert_string_not_equal(k.key_id, other.key_id);
	vigie_sign_detached(&k, msg, sizeof(msg), sig);
	assert_int_equal(
		vigie_sign_verify(k.pk, msg, sizeof(msg), sig, sizeof(sig)), 0);
	/* Another key, a flipped bit, a short signature: all refused. */
	assert_int_equal(
		vigie_sign_verify(other.pk, msg, sizeof(msg), sig, sizeof(sig)),
		VIGIE_EAUTH);
	sig[5] ^= 1;
	assert_int_equal(
		vigie_sign_verify(k.pk, msg, sizeof(msg), sig, sizeof(sig)),
		VIGIE_EAUTH);
	sig[5] ^= 1;
	assert_int_equal(
		vigie_sign_verify(k.pk, msg, sizeof(msg) - 1, sig, sizeof(sig)),
		VIGIE_EAUTH);
	assert_int_equal(vigie_sign_verify(k.pk, msg, sizeof(msg), sig, 63),
			 VIGIE_EAUTH);
	assert_int_equal(vigie_sign_verify(k.pk, msg, sizeof(msg), NULL, 0),
			 VIGIE_EAUTH);
}

static void test_key_file(void **state)
{
	struct vigie_sign_key k, back;
	char path[256], err[512];
	struct stat sb;

	(void)state;
	path_of(path, sizeof(path), "n1.key");
	assert_int_equal(vigie_sign_keygen(&k), 0);
	assert_int_equal(vigie_sign_key_save(&k, path), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* Never over an existing key. */
	assert_int_equal(vigie_sign_key_save(&k, path), VIGIE_EIO);
	assert_int_equal(vigie_sign_key_load(path, &back, err, sizeof(err)), 0);
	assert_memory_equal(back.sk, k.sk, sizeof(k.sk));
	assert_string_equal(back.key_id, k.key_id);
	/* Readable by others: refused. */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(vigie_sign_key_load(path, &back, err, sizeof(err)),
			 VIGIE_EAUTH);
	assert_non_null(strstr(err, "chmod 600"));
	/* Not a key. */
	path_of(path, sizeof(path), "bad.key");
	write_file(path, "vigie-ed25519-secret 1234\n");
	chmod(path, 0600);
	assert_int_equal(vigie_sign_key_load(path, &back, err, sizeof(err)),
			 VIGIE_EINVAL);
	path_of(path, sizeof(path), "missing.key");
	assert_int_equal(vigie_sign_key_load(path, &back, err, sizeof(err)),
			 VIGIE_EIO);
}

static void test_trust_store(void **state)
{
	struct vigie_sign_key a, b;
	struct vigie_trust *t = NULL;
	char file[256], dir[256], line[256], text[1024], err[512];
	const struct vigie_trust_entry *e;

	(void)state;
	vigie_sign_keygen(&a);
	vigie_sign_keygen(&b);
	path_of(file, sizeof(file), "trust.txt");
	vigie_sign_trust_line(&a, "louvre", "n1", line, sizeof(line));
	snprintf(text, sizeof(text), "# comment\n\n%s", line);
	vigie_sign_trust_line(&b, "orsay", "n2", line, sizeof(line));
	strcat(text, line);
	write_file(file, text);
	assert_int_equal(vigie_trust_load(file, &t, err, sizeof(err)), 0);
	assert_int_equal(vigie_trust_count(t), 2);
	e = vigie_trust_find(t, a.key_id);
	assert_non_null(e);
	assert_string_equal(e->site, "louvre");
	assert_string_equal(e->node, "n1");
	assert_memory_equal(e->pk, a.pk, sizeof(a.pk));
	e = vigie_trust_find(t, b.key_id);
	assert_non_null(e);
	assert_string_equal(e->node, "n2");
	assert_null(vigie_trust_find(t, "0000000000000000"));
	assert_null(vigie_trust_find(t, "short"));
	assert_null(vigie_trust_find(t, NULL));
	vigie_trust_free(t);

	/* A directory of .pub files; other files ignored. */
	path_of(dir, sizeof(dir), "trust.d");
	mkdir(dir, 0700);
	snprintf(file, sizeof(file), "%s/n1.pub", dir);
	vigie_sign_trust_line(&a, "louvre", "n1", line, sizeof(line));
	write_file(file, line);
	snprintf(file, sizeof(file), "%s/README", dir);
	write_file(file, "not a key\n");
	assert_int_equal(vigie_trust_load(dir, &t, err, sizeof(err)), 0);
	assert_int_equal(vigie_trust_count(t), 1);
	vigie_trust_free(t);

	/* A key id that is not its key's; a duplicate; a bad line. */
	path_of(file, sizeof(file), "bad.txt");
	vigie_sign_trust_line(&a, "louvre", "n1", line, sizeof(line));
	memcpy(line, b.key_id, VIGIE_SIGN_ID_CHARS);
	write_file(file, line);
	assert_int_equal(vigie_trust_load(file, &t, err, sizeof(err)),
			 VIGIE_ECONFIG);
	assert_non_null(strstr(err, "bad.txt:1: key id"));
	vigie_sign_trust_line(&a, "louvre", "n1", line, sizeof(line));
	snprintf(text, sizeof(text), "%s%s", line, line);
	write_file(file, text);
	assert_int_equal(vigie_trust_load(file, &t, err, sizeof(err)),
			 VIGIE_ECONFIG);
	assert_non_null(strstr(err, "listed twice"));
	write_file(file, "# ok\nabc louvre\n");
	assert_int_equal(vigie_trust_load(file, &t, err, sizeof(err)),
			 VIGIE_ECONFIG);
	assert_non_null(strstr(err, "bad.txt:2:"));
}

static void test_signed_event_round_trip(void **state)
{
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;
	Vigie__V1__SignedEvent *se;
	Vigie__V1__Event *back;
	struct vigie_sign_key k;
	uint8_t *buf;
	size_t len;

	(void)state;
	vigie_sign_keygen(&k);
	ev.site = "louvre";
	ev.node = "n1";
	ev.boot_id = 3;
	ev.seq = 17;
	assert_int_equal(vigie_sign_event(&k, &ev, &buf, &len), 0);
	assert_int_equal(vigie_event_decode(buf, len, &se, &back), 0);
	assert_string_equal(se->key_id, k.key_id);
	assert_int_equal(se->signature.len, VIGIE_SIGN_BYTES);
	assert_int_equal(vigie_sign_verify(k.pk, se->event.data, se->event.len,
					   se->signature.data,
					   se->signature.len),
			 0);
	assert_int_equal(back->seq, 17);
	vigie_event_free(se, back);
	free(buf);
	/* Without a key: unsigned, as before signing existed. */
	assert_int_equal(vigie_sign_event(NULL, &ev, &buf, &len), 0);
	assert_int_equal(vigie_event_decode(buf, len, &se, &back), 0);
	assert_int_equal(se->signature.len, 0);
	assert_string_equal(se->key_id, "");
	vigie_event_free(se, back);
	free(buf);
}

/* ---- the relay's verifier ---- */

struct collected {
	enum verify_verdict verdicts[64];
	uint64_t seqs[64];
	size_t n;
};

static void on_done(void *ud, struct verify_job *j)
{
	struct collected *c = ud;

	c->verdicts[c->n] = j->verdict;
	c->seqs[c->n] = j->ev ? j->ev->seq : (j->body ? j->body->hb_seq : 0);
	c->n++;
}

static void closed_cb(void *arg)
{
	*(int *)arg = 1;
}

static void test_verifier_order_and_verdicts(void **state)
{
	Vigie__V1__Event ev = VIGIE__V1__EVENT__INIT;
	Vigie__V1__HeartbeatBody hb = VIGIE__V1__HEARTBEAT_BODY__INIT;
	struct vigie_sign_key k, stranger, other_node;
	struct vigie_trust *t = NULL;
	struct verifier *v;
	struct vigie_topic topic;
	struct collected c;
	char file[256], line[256], text[1024], err[512];
	uv_loop_t loop;
	uint8_t *buf;
	size_t len;
	int closed = 0;

	(void)state;
	memset(&c, 0, sizeof(c));
	vigie_sign_keygen(&k);
	vigie_sign_keygen(&stranger);
	vigie_sign_keygen(&other_node);
	path_of(file, sizeof(file), "verifier.txt");
	vigie_sign_trust_line(&k, "louvre", "n1", line, sizeof(line));
	strcpy(text, line);
	vigie_sign_trust_line(&other_node, "louvre", "n2", line, sizeof(line));
	strcat(text, line);
	write_file(file, text);
	assert_int_equal(vigie_trust_load(file, &t, err, sizeof(err)), 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(vigie__verify_open(&loop, t, on_done, &c, &v), 0);
	assert_int_equal(
		vigie_topic_parse("vigie/v1/site/louvre/node/n1/event", &topic),
		0);
	ev.site = "louvre";
	ev.node = "n1";
	ev.boot_id = 1;
	/* 40 good events, in order across several batches and workers. */
	for (uint64_t s = 1; s <= 40; s++) {
		ev.seq = s;
		vigie_sign_event(&k, &ev, &buf, &len);
		assert_int_equal(vigie__verify_submit(v, &topic, "t", buf, len),
				 0);
		free(buf);
	}
	ev.seq = 41;
	vigie_sign_event(&stranger, &ev, &buf, &len);
	vigie__verify_submit(v, &topic, "t", buf, len);
	free(buf);
	ev.seq = 42;
	vigie_sign_event(&other_node, &ev, &buf, &len);
	vigie__verify_submit(v, &topic, "t", buf, len);
	free(buf);
	ev.seq = 43;
	vigie_sign_event(&k, &ev, &buf, &len);
	buf[len - 30] ^= 0x40; /* inside the signature */
	vigie__verify_submit(v, &topic, "t", buf, len);
	free(buf);
	ev.seq = 44;
	vigie_sign_event(NULL, &ev, &buf, &len);
	vigie__verify_submit(v, &topic, "t", buf, len);
	free(buf);
	vigie__verify_submit(v, &topic, "t", "\xff\xff", 2);
	assert_int_equal(
		vigie_topic_parse("vigie/v1/site/louvre/node/n1/heartbeat",
				  &topic),
		0);
	hb.site = "louvre";
	hb.node = "n1";
	hb.boot_id = 1;
	hb.hb_seq = 9;
	vigie_sign_heartbeat(&k, &hb, &buf, &len);
	vigie__verify_submit(v, &topic, "t", buf, len);
	free(buf);
	/* The open batch and the work in flight keep the loop alive until
	 * everything is delivered. */
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(c.n, 46);
	for (size_t i = 0; i < 40; i++) {
		assert_int_equal(c.verdicts[i], VERIFY_OK);
		assert_int_equal(c.seqs[i], i + 1);
	}
	assert_int_equal(c.verdicts[40], VERIFY_UNKNOWN_KEY);
	assert_int_equal(c.verdicts[41], VERIFY_WRONG_OWNER);
	assert_int_equal(c.verdicts[42], VERIFY_BAD_SIGNATURE);
	assert_int_equal(c.verdicts[43], VERIFY_UNSIGNED);
	assert_int_equal(c.verdicts[44], VERIFY_DECODE);
	assert_int_equal(c.verdicts[45], VERIFY_OK);
	assert_int_equal(c.seqs[45], 9);
	assert_int_equal(vigie__verify_pending(v), 0);
	vigie__verify_close(v, closed_cb, &closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(closed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	vigie_trust_free(t);
}

static void test_replay_guard(void **state)
{
	struct replay_guard g;
	uint8_t d1[VIGIE_SIGN_DIGEST], d2[VIGIE_SIGN_DIGEST];

	(void)state;
	assert_int_equal(vigie__replay_init(&g, 100, 1000), 0);
	assert_int_equal(g.n_slots, 1024);
	vigie_sign_digest("a", 1, d1);
	vigie_sign_digest("b", 1, d2);
	assert_int_equal(vigie__replay_newest_boot(&g, "louvre", "n1"), 0);
	vigie__replay_note_boot(&g, "louvre", "n1", 5);
	vigie__replay_note_boot(&g, "louvre", "n1", 3);
	assert_int_equal(vigie__replay_newest_boot(&g, "louvre", "n1"), 5);
	assert_int_equal(vigie__replay_newest_boot(&g, "louvre", "n2"), 0);
	/* Heartbeats: only newer ones count. */
	assert_true(vigie__replay_heartbeat(&g, "louvre", "n1", 5, 1));
	assert_true(vigie__replay_heartbeat(&g, "louvre", "n1", 5, 2));
	assert_false(vigie__replay_heartbeat(&g, "louvre", "n1", 5, 2));
	assert_false(vigie__replay_heartbeat(&g, "louvre", "n1", 5, 1));
	assert_false(vigie__replay_heartbeat(&g, "louvre", "n1", 4, 99));
	assert_true(vigie__replay_heartbeat(&g, "louvre", "n1", 6, 1));
	assert_int_equal(vigie__replay_newest_boot(&g, "louvre", "n1"), 6);
	/* Digests of stored identities. */
	assert_int_equal(vigie__replay_compare(&g, "louvre", "n1", 5, 7, d1),
			 REPLAY_UNKNOWN);
	vigie__replay_remember(&g, "louvre", "n1", 5, 7, d1);
	assert_int_equal(vigie__replay_compare(&g, "louvre", "n1", 5, 7, d1),
			 REPLAY_SAME);
	assert_int_equal(vigie__replay_compare(&g, "louvre", "n1", 5, 7, d2),
			 REPLAY_DIFFERENT);
	assert_int_equal(vigie__replay_compare(&g, "louvre", "n1", 5, 8, d1),
			 REPLAY_UNKNOWN);
	vigie__replay_free(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_key_file),
		cmocka_unit_test(test_trust_store),
		cmocka_unit_test(test_signed_event_round_trip),
		cmocka_unit_test(test_verifier_order_and_verdicts),
		cmocka_unit_test(test_replay_guard),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
