/* The relay's intent log on a real file: lines read back as written (keys
 * with spaces, '%' and UTF-8 included), a line cut by a crash and lines
 * that are not intent lines skipped without harm, a reset empties it. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "intents.h"
#include "vigie/error.h"

#define MAX_SEEN 8

struct seen {
	size_t n;
	char id[MAX_SEEN][80], key[MAX_SEEN][300], prefix[MAX_SEEN][80];
	uint64_t sec[MAX_SEEN], first[MAX_SEEN];
	uint32_t k[MAX_SEEN];
};

struct ctx {
	char dir[64];
	char db[128];
	char log[160];
};

static void each(void *ud, const struct intent_rec *rec)
{
	struct seen *s = ud;

	assert_true(s->n < MAX_SEEN);
	snprintf(s->id[s->n], sizeof(s->id[0]), "%s", rec->id);
	snprintf(s->key[s->n], sizeof(s->key[0]), "%s", rec->key);
	snprintf(s->prefix[s->n], sizeof(s->prefix[0]), "%s", rec->prefix);
	s->sec[s->n] = rec->sec;
	s->first[s->n] = rec->first_event_us;
	s->k[s->n] = rec->k;
	s->n++;
}

static int setup(void **state)
{
	static struct ctx c;

	snprintf(c.dir, sizeof(c.dir), "/tmp/vigie-test-intents-XXXXXX");
	assert_non_null(mkdtemp(c.dir));
	snprintf(c.db, sizeof(c.db), "%s/relay.db", c.dir);
	snprintf(c.log, sizeof(c.log), "%s-intents", c.db);
	*state = &c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;

	unlink(c->log);
	rmdir(c->dir);
	return 0;
}

static void append_raw(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_APPEND);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_lines_come_back_as_written(void **state)
{
	struct ctx *c = *state;
	struct intent_log l;
	struct seen s = {0};
	const struct intent_rec a = {
		.id = "louvre-20251019-093412",
		.key = "a/louvre/apollo-gallery",
		.prefix = "louvre",
		.sec = 1760866452,
		.k = 1,
		.first_event_us = 1760866452000123ull,
	};
	const struct intent_rec b = {
		.id = "post-pp-paris-20251019-093413-2",
		.key = "t/louvre/cam 3 %fa\xc3\xa7"
		       "ade/12",
		.prefix = "post-pp-paris",
		.sec = 1760866453,
		.k = 2,
		.first_event_us = 1760866453000000ull,
	};
	const struct intent_rec bad = {
		.id = "Not An Id",
		.key = "a/x/y",
		.prefix = "x",
	};

	assert_int_equal(vigie__intents_open(&l, c->db, each, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(vigie__intents_append(&l, &a), 0);
	assert_int_equal(vigie__intents_append(&l, &b), 0);
	/* Refused, the file untouched: an id a line could not carry. */
	assert_int_equal(vigie__intents_append(&l, &bad), VIGIE_EINVAL);
	vigie__intents_close(&l);

	assert_int_equal(vigie__intents_open(&l, c->db, each, &s), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.id[0], a.id);
	assert_string_equal(s.key[0], a.key);
	assert_string_equal(s.prefix[0], a.prefix);
	assert_int_equal(s.sec[0], a.sec);
	assert_int_equal(s.k[0], 1);
	assert_int_equal(s.first[0], a.first_event_us);
	assert_string_equal(s.id[1], b.id);
	assert_string_equal(s.key[1], b.key);
	assert_int_equal(s.k[1], 2);
	assert_int_equal(l.bad_lines, 0);

	/* Emptied: nothing comes back. */
	assert_int_equal(vigie__intents_reset(&l), 0);
	vigie__intents_close(&l);
	s.n = 0;
	assert_int_equal(vigie__intents_open(&l, c->db, each, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(l.size, 0);
	vigie__intents_close(&l);
}

static void test_damaged_lines_are_skipped(void **state)
{
	struct ctx *c = *state;
	struct intent_log l;
	struct seen s = {0};
	const struct intent_rec a = {
		.id = "orsay-20251019-093412",
		.key = "a/orsay/z1",
		.prefix = "orsay",
		.sec = 1760866452,
		.k = 1,
		.first_event_us = 1760866452000000ull,
	};

	assert_int_equal(vigie__intents_open(&l, c->db, each, &s), 0);
	vigie__intents_close(&l);
	append_raw(c->log, "garbage\n"
			   "i x y 1 2 3\n"                     /* six fields */
			   "i ok-1 ok 1 2 3 a/b/c extra\n"     /* eight */
			   "i ok-1 ok 1 99999999999 3 a/b/c\n" /* k too big */
			   "i ok-1 ok 1 2 3 a/%zz/c\n"         /* bad escape */
			   "i ok-1 ok 1 2 3 a/%00/c\n"         /* NUL */
			   "i ok-1 ok -1 2 3 a/b/c\n"          /* negative */
			   "\n");
	assert_int_equal(vigie__intents_open(&l, c->db, each, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(l.bad_lines, 8);
	assert_int_equal(vigie__intents_append(&l, &a), 0);
	vigie__intents_close(&l);
	/* A crash in the middle of a write leaves a line without its end. */
	append_raw(c->log, "i orsay-20251019-093413 orsay 17608");

	s.n = 0;
	assert_int_equal(vigie__intents_open(&l, c->db, each, &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.id[0], a.id);
	assert_string_equal(s.key[0], a.key);
	vigie__intents_close(&l);
}

static void test_unwritable_place_is_an_error(void **state)
{
	struct intent_log l;
	struct seen s = {0};

	(void)state;
	assert_int_equal(
		vigie__intents_open(&l, "/nonexistent-dir/relay.db", each, &s),
		VIGIE_EIO);
	assert_int_equal(vigie__intents_append(&l,
					       &(struct intent_rec){
						       .id = "a-1",
						       .key = "k",
						       .prefix = "a",
					       }),
			 VIGIE_EIO);
	vigie__intents_close(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lines_come_back_as_written,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_lines_are_skipped,
						setup, teardown),
		cmocka_unit_test(test_unwritable_place_is_an_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
