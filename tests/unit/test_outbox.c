/* Unit tests of lib/outbox.c against a real SQLite file in a temporary
 * folder (removed at the end). Every test ends with uv_loop_close() == 0, so
 * a handle or request left behind fails it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <uv.h>

#include "vigie/clock.h"
#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/outbox.h"
#include "../../lib/outbox_internal.h"

struct fixture {
	char dir[256];
	char path[320];
	uv_loop_t loop;
};

/* Durable callbacks of the current test, in the order they ran; the
 * callback arg is the seq. */
static struct {
	uint64_t *seq;
	int *status;
	size_t n;
	size_t cap;
} dlog;

static void on_durable(void *arg, int status)
{
	if (dlog.n == dlog.cap) {
		dlog.cap = dlog.cap ? dlog.cap * 2 : 1024;
		dlog.seq = realloc(dlog.seq, dlog.cap * sizeof(*dlog.seq));
		dlog.status =
			realloc(dlog.status, dlog.cap * sizeof(*dlog.status));
		assert_non_null(dlog.seq);
		assert_non_null(dlog.status);
	}
	dlog.seq[dlog.n] = (uint64_t)(uintptr_t)arg;
	dlog.status[dlog.n] = status;
	dlog.n++;
}

static void dlog_reset(void)
{
	free(dlog.seq);
	free(dlog.status);
	memset(&dlog, 0, sizeof(dlog));
}

static void remove_dir(const char *dir)
{
	char path[600];
	struct dirent *de;
	DIR *d;

	d = opendir(dir);
	if (!d)
		return;
	for (;;) {
		de = readdir(d);
		if (!de)
			break;
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static int setup(void **state)
{
	struct fixture *f;
	const char *tmp = getenv("TMPDIR");

	f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/vigie-outbox-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/outbox.db", f->dir);
	if (uv_loop_init(&f->loop) != 0) {
		remove_dir(f->dir);
		free(f);
		return -1;
	}
	dlog_reset();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	remove_dir(f->dir);
	dlog_reset();
	free(f);
	return 0;
}

/* "event <seq>" padded to a length that depends on seq, so a mix-up of
 * payloads between entries shows. */
static size_t make_payload(uint64_t seq, char *buf, size_t cap)
{
	size_t len = 20 + (size_t)(seq % 50);
	int n;

	memset(buf, 'x', len);
	n = snprintf(buf, cap, "event %" PRIu64 " ", seq);
	assert_true(n > 0 && (size_t)n < len);
	buf[n] = ' ';
	return len;
}

static void check_payload(const struct vigie_outbox_entry *e)
{
	char buf[128];
	size_t len = make_payload(e->seq, buf, sizeof(buf));

	assert_int_equal(e->len, len);
	assert_memory_equal(e->payload, buf, len);
	assert_int_equal(e->time_us, e->seq * 1000);
}

static void append_ok(struct vigie_outbox *ob, uint64_t seq)
{
	char buf[128];
	size_t len = make_payload(seq, buf, sizeof(buf));
	struct vigie_outbox_entry *e = NULL;

	assert_int_equal(vigie_outbox_append(ob, seq, seq * 1000, buf, len,
					     on_durable, (void *)(uintptr_t)seq,
					     &e),
			 0);
	assert_non_null(e);
	assert_int_equal(e->seq, seq);
	assert_int_equal(e->boot_id, vigie_outbox_boot_id(ob));
	check_payload(e);
}

static int append_rc(struct vigie_outbox *ob, uint64_t seq)
{
	char buf[128];
	size_t len = make_payload(seq, buf, sizeof(buf));

	return vigie_outbox_append(ob, seq, seq * 1000, buf, len, on_durable,
				   (void *)(uintptr_t)seq, NULL);
}

static struct vigie_outbox *open_ok(struct fixture *f,
				    const struct vigie_outbox_options *opt)
{
	struct vigie_outbox *ob = NULL;

	assert_int_equal(vigie_outbox_open(&f->loop, f->path, opt, &ob), 0);
	assert_non_null(ob);
	return ob;
}

static void on_closed(void *arg)
{
	(*(int *)arg)++;
}

static void close_ok(struct fixture *f, struct vigie_outbox *ob)
{
	int closed = 0;

	vigie_outbox_close(ob, on_closed, &closed);
	/* Never from inside close: the caller may be in our callback. */
	assert_int_equal(closed, 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(closed, 1);
}

/* From `e` on, the entries are `boot`'s seqs first..last in order, with
 * their payloads; returns the entry after them. */
static struct vigie_outbox_entry *check_run(struct vigie_outbox *ob,
					    struct vigie_outbox_entry *e,
					    uint64_t boot, uint64_t first,
					    uint64_t last)
{
	uint64_t seq;

	for (seq = first; seq <= last; seq++) {
		assert_non_null(e);
		assert_int_equal(e->boot_id, boot);
		assert_int_equal(e->seq, seq);
		check_payload(e);
		e = vigie_outbox_next(ob, e);
	}
	return e;
}

static void check_dlog(uint64_t first, uint64_t last, int status)
{
	size_t i;

	assert_int_equal(dlog.n, last - first + 1);
	for (i = 0; i < dlog.n; i++) {
		assert_int_equal(dlog.seq[i], first + i);
		assert_int_equal(dlog.status[i], status);
	}
}

static void test_append_durable_reopen(void **state)
{
	struct fixture *f = *state;
	struct vigie_outbox *ob;
	uint64_t boot1, seq;

	ob = open_ok(f, NULL);
	boot1 = vigie_outbox_boot_id(ob);
	assert_true(boot1 >= vigie_clock_now_us() / 1000000 - 1);
	assert_int_equal(vigie_outbox_pending(ob), 0);
	assert_null(vigie_outbox_first(ob));
	for (seq = 1; seq <= 5; seq++)
		append_ok(ob, seq);
	/* In memory at once, durable only after the commit. */
	assert_int_equal(vigie_outbox_pending(ob), 5);
	assert_int_equal(vigie_outbox_last_seq(ob), 5);
	assert_null(check_run(ob, vigie_outbox_first(ob), boot1, 1, 5));
	assert_int_equal(dlog.n, 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	check_dlog(1, 5, 0);
	assert_true(vigie__outbox_commits(ob) >= 1);
	close_ok(f, ob);

	ob = open_ok(f, NULL);
	assert_true(vigie_outbox_boot_id(ob) > boot1);
	assert_int_equal(vigie_outbox_pending(ob), 5);
	assert_int_equal(vigie_outbox_last_seq(ob), 0);
	assert_null(check_run(ob, vigie_outbox_first(ob), boot1, 1, 5));
	close_ok(f, ob);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	assert_int_equal(dlog.n, 5);
}

static void test_receipt_drops(void **state)
{
	struct fixture *f = *state;
	struct vigie_outbox *ob;
	uint64_t boot1, boot2, seq;
	struct vigie_outbox_entry *e;

	ob = open_ok(f, NULL);
	boot1 = vigie_outbox_boot_id(ob);
	for (seq = 1; seq <= 10; seq++)
		append_ok(ob, seq);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	check_dlog(1, 10, 0);

	assert_int_equal(vigie_outbox_receipt(ob, boot1, 4), 4);
	assert_int_equal(vigie_outbox_pending(ob), 6);
	assert_null(check_run(ob, vigie_outbox_first(ob), boot1, 5, 10));
	/* Stale and unknown receipts change nothing. */
	assert_int_equal(vigie_outbox_receipt(ob, boot1, 4), 0);
	assert_int_equal(vigie_outbox_receipt(ob, boot1, 2), 0);
	assert_int_equal(vigie_outbox_receipt(ob, boot1, 0), 0);
	assert_int_equal(vigie_outbox_receipt(ob, boot1 - 1, 100), 0);
	assert_int_equal(vigie_outbox_receipt(ob, boot1 + 1, 100), 0);
	assert_int_equal(vigie_outbox_pending(ob), 6);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	close_ok(f, ob);

	/* Receipts of the old boot and of the new one, interleaved in the
	 * list: old boot first. */
	ob = open_ok(f, NULL);
	boot2 = vigie_outbox_boot_id(ob);
	assert_int_equal(vigie_outbox_pending(ob), 6);
	for (seq = 1; seq <= 3; seq++)
		append_ok(ob, seq);
	e = check_run(ob, vigie_outbox_first(ob), boot1, 5, 10);
	assert_null(check_run(ob, e, boot2, 1, 3));
	assert_int_equal(vigie_outbox_receipt(ob, boot2, 2), 2);
	assert_int_equal(vigie_outbox_receipt(ob, boot1, 7), 3);
	e = check_run(ob, vigie_outbox_first(ob), boot1, 8, 10);
	assert_null(check_run(ob, e, boot2, 3, 3));
	/* A receipt beyond the last seq drops what is there, no more. */
	assert_int_equal(vigie_outbox_receipt(ob, boot1, UINT64_MAX), 3);
	assert_null(check_run(ob, vigie_outbox_first(ob), boot2, 3, 3));
	uv_run(&f->loop, UV_RUN_DEFAULT);
	close_ok(f, ob);

	ob = open_ok(f, NULL);
	assert_int_equal(vigie_outbox_pending(ob), 1);
	assert_null(check_run(ob, vigie_outbox_first(ob), boot2, 3, 3));
	close_ok(f, ob);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Publish happens before the fsync, so the Receipt can come back before
 * the insert is committed: the insert must still run (then the delete), the
 * durable callback must still fire, and nothing may be left on disk. */
static void test_receipt_before_commit(void **state)
{
	struct fixture *f = *state;
	struct vigie_outbox *ob;
	uint64_t boot, seq;

	ob = open_ok(f, NULL);
	boot = vigie_outbox_boot_id(ob);
	/* Still queued. */
	for (seq = 1; seq <= 100; seq++)
		append_ok(ob, seq);
	assert_int_equal(vigie_outbox_receipt(ob, boot, 60), 60);
	assert_int_equal(vigie_outbox_pending(ob), 40);
	/* In flight on the thread pool (the idle turn starts the batch). */
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(vigie_outbox_receipt(ob, boot, 100), 40);
	assert_int_equal(vigie_outbox_pending(ob), 0);
	assert_null(vigie_outbox_first(ob));
	uv_run(&f->loop, UV_RUN_DEFAULT);
	check_dlog(1, 100, 0);
	close_ok(f, ob);

	ob = open_ok(f, NULL);
	assert_int_equal(vigie_outbox_pending(ob), 0);
	close_ok(f, ob);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* A durable callback that receipts entries of its own batch, its own
 * included, and one that closes the outbox. */
static struct vigie_outbox *cb_ob;

static void on_durable_receipt(void *arg, int status)
{
	on_durable(arg, status);
	if ((uintptr_t)arg == 2)
		assert_int_equal(vigie_outbox_receipt(
					 cb_ob, vigie_outbox_boot_id(cb_ob), 8),
				 8);
	if ((uintptr_t)arg == 9) {
		assert_int_equal(append_rc(cb_ob, 11), 0);
		vigie_outbox_close(cb_ob, NULL, NULL);
		assert_int_equal(append_rc(cb_ob, 12), VIGIE_ECLOSED);
	}
}

static void test_receipt_and_close_from_callback(void **state)
{
	struct fixture *f = *state;
	char buf[128];
	size_t len;
	uint64_t seq, boot;

	cb_ob = open_ok(f, NULL);
	boot = vigie_outbox_boot_id(cb_ob);
	for (seq = 1; seq <= 10; seq++) {
		len = make_payload(seq, buf, sizeof(buf));
		assert_int_equal(
			vigie_outbox_append(cb_ob, seq, seq * 1000, buf, len,
					    on_durable_receipt,
					    (void *)(uintptr_t)seq, NULL),
			0);
	}
	uv_run(&f->loop, UV_RUN_DEFAULT);
	check_dlog(1, 11, 0);

	cb_ob = open_ok(f, NULL);
	assert_int_equal(vigie_outbox_pending(cb_ob), 3);
	assert_null(check_run(cb_ob, vigie_outbox_first(cb_ob), boot, 9, 11));
	close_ok(f, cb_ob);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Close commits what is queued, firing its callbacks, before its own. */
static void test_close_flushes(void **state)
{
	struct fixture *f = *state;
	struct vigie_outbox *ob;
	uint64_t boot, seq;

	ob = open_ok(f, NULL);
	boot = vigie_outbox_boot_id(ob);
	for (seq = 1; seq <= 20; seq++)
		append_ok(ob, seq);
	assert_int_equal(vigie_outbox_receipt(ob, boot, 5), 5);
	close_ok(f, ob);
	check_dlog(1, 20, 0);

	ob = open_ok(f, NULL);
	assert_null(check_run(ob, vigie_outbox_first(ob), boot, 6, 20));
	close_ok(f, ob);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void test_caps_and_bad_input(void **state)
{
	struct fixture *f = *state;
	struct vigie_outbox_options opt = {.max_pending = 3, .max_batch = 2};
	struct vigie_outbox_entry *e = (void *)&opt;
	struct vigie_outbox *ob;
	uint8_t *big;
	uint64_t boot;

	ob = open_ok(f, &opt);
	boot = vigie_outbox_boot_id(ob);
	assert_int_equal(append_rc(ob, 0), VIGIE_EINVAL);
	append_ok(ob, 1);
	append_ok(ob, 2);
	assert_int_equal(append_rc(ob, 2), VIGIE_EINVAL);
	assert_int_equal(append_rc(ob, 1), VIGIE_EINVAL);
	assert_int_equal(append_rc(ob, (uint64_t)INT64_MAX + 1), VIGIE_EINVAL);
	assert_int_equal(vigie_outbox_append(ob, 3, 0, "x", 0, on_durable,
					     (void *)(uintptr_t)3, &e),
			 VIGIE_EINVAL);
	assert_null(e);
	assert_int_equal(vigie_outbox_append(ob, 3, 0, NULL, 5, on_durable,
					     (void *)(uintptr_t)3, NULL),
			 VIGIE_EINVAL);
	big = calloc(1, VIGIE__OUTBOX_MAX_PAYLOAD + 1);
	assert_non_null(big);
	assert_int_equal(vigie_outbox_append(
				 ob, 3, 0, big, VIGIE__OUTBOX_MAX_PAYLOAD + 1,
				 on_durable, (void *)(uintptr_t)3, NULL),
			 VIGIE_ETOOBIG);
	append_ok(ob, 3);
	assert_int_equal(append_rc(ob, 4), VIGIE_EFULL);
	assert_int_equal(vigie_outbox_last_seq(ob), 3);
	/* Receipted but not yet committed still holds memory: still full. */
	assert_int_equal(vigie_outbox_receipt(ob, boot, 1), 1);
	assert_int_equal(append_rc(ob, 4), VIGIE_EFULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	/* Only the accepted appends called back; max_batch 2 split them. */
	check_dlog(1, 3, 0);
	assert_true(vigie__outbox_commits(ob) >= 2);
	/* The largest payload allowed goes through. */
	assert_int_equal(
		vigie_outbox_append(ob, 4, 4000, big, VIGIE__OUTBOX_MAX_PAYLOAD,
				    on_durable, (void *)(uintptr_t)4, NULL),
		0);
	free(big);
	assert_int_equal(append_rc(ob, 5), VIGIE_EFULL);
	vigie_outbox_close(ob, NULL, NULL);
	assert_int_equal(append_rc(ob, 5), VIGIE_ECLOSED);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	check_dlog(1, 4, 0);

	ob = open_ok(f, NULL);
	assert_int_equal(vigie_outbox_pending(ob), 3);
	e = check_run(ob, vigie_outbox_first(ob), boot, 2, 3);
	assert_non_null(e);
	assert_int_equal(e->seq, 4);
	assert_int_equal(e->len, VIGIE__OUTBOX_MAX_PAYLOAD);
	close_ok(f, ob);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static void test_not_sqlite(void **state)
{
	struct fixture *f = *state;
	struct vigie_outbox *ob = (void *)f;
	uint8_t garbage[8192];
	char path[400];
	size_t i;

	srand(7);
	for (i = 0; i < sizeof(garbage); i++)
		garbage[i] = (uint8_t)rand();
	write_file(f->path, garbage, sizeof(garbage));
	assert_int_equal(vigie_outbox_open(&f->loop, f->path, NULL, &ob),
			 VIGIE_EIO);
	assert_null(ob);

	write_file(f->path, "hello, I am a text file\n", 24);
	assert_int_equal(vigie_outbox_open(&f->loop, f->path, NULL, &ob),
			 VIGIE_EIO);

	/* SQLite, but someone else's newer schema. */
	unlink(f->path);
	ob = open_ok(f, NULL);
	close_ok(f, ob);
	{
		sqlite3 *db;

		assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99",
					      NULL, NULL, NULL),
				 SQLITE_OK);
		sqlite3_close(db);
	}
	assert_int_equal(vigie_outbox_open(&f->loop, f->path, NULL, &ob),
			 VIGIE_EIO);

	snprintf(path, sizeof(path), "%s/no/such/dir/outbox.db", f->dir);
	assert_int_equal(vigie_outbox_open(&f->loop, path, NULL, &ob),
			 VIGIE_EIO);
	assert_int_equal(vigie_outbox_open(&f->loop, "", NULL, &ob),
			 VIGIE_EINVAL);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void test_group_commit(void **state)
{
	struct fixture *f = *state;
	struct vigie_outbox *ob;
	uint64_t seq, commits;
	const uint64_t n = 10000;

	ob = open_ok(f, NULL);
	for (seq = 1; seq <= n; seq++)
		assert_int_equal(append_rc(ob, seq), 0);
	assert_int_equal(vigie__outbox_commits(ob), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	check_dlog(1, n, 0);
	commits = vigie__outbox_commits(ob);
	print_message("group commit: %" PRIu64 " events in %" PRIu64
		      " transactions\n",
		      n, commits);
	assert_true(commits >= 1 && commits <= 10);
	close_ok(f, ob);

	ob = open_ok(f, NULL);
	assert_int_equal(vigie_outbox_pending(ob), n);
	close_ok(f, ob);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* A transaction that fails (the database is locked by another connection)
 * reports VIGIE_EIO to its appends, keeps their entries in memory, and
 * keeps its deletes for the next transaction. */
static void test_transaction_failure(void **state)
{
	struct fixture *f = *state;
	struct vigie_outbox *ob;
	struct vigie_outbox_entry *e;
	uint64_t boot, seq, commits;
	sqlite3 *other;

	ob = open_ok(f, NULL);
	boot = vigie_outbox_boot_id(ob);
	assert_int_equal(vigie__outbox_set_busy_timeout(ob, 0), 0);
	for (seq = 1; seq <= 3; seq++)
		append_ok(ob, seq);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	check_dlog(1, 3, 0);
	commits = vigie__outbox_commits(ob);

	assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL),
		SQLITE_OK);
	assert_int_equal(vigie_outbox_receipt(ob, boot, 2), 2);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	append_ok(ob, 4);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(dlog.n, 4);
	assert_int_equal(dlog.seq[3], 4);
	assert_int_equal(dlog.status[3], VIGIE_EIO);
	assert_int_equal(vigie__outbox_commits(ob), commits);
	/* Not durable, but not forgotten: still to be sent. */
	e = check_run(ob, vigie_outbox_first(ob), boot, 3, 4);
	assert_null(e);

	assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_close(other), SQLITE_OK);
	append_ok(ob, 5);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(dlog.n, 5);
	assert_int_equal(dlog.status[4], 0);
	assert_int_equal(vigie__outbox_commits(ob), commits + 1);
	close_ok(f, ob);

	/* The retried delete removed 1 and 2; 4 never reached the disk. */
	ob = open_ok(f, NULL);
	assert_int_equal(vigie_outbox_pending(ob), 2);
	e = check_run(ob, vigie_outbox_first(ob), boot, 3, 3);
	assert_null(check_run(ob, e, boot, 5, 5));
	close_ok(f, ob);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Child of the crash test: appends without pause, writing each seq to the
 * pipe once durable, until killed. Never returns into cmocka. */
#define CRASH_MAX_SEQ    1000000
#define CRASH_KILL_AFTER 20000

static int crash_fd = -1;

static void crash_durable(void *arg, int status)
{
	uint64_t seq = (uint64_t)(uintptr_t)arg;

	if (status != 0)
		_exit(3);
	if (write(crash_fd, &seq, sizeof(seq)) != (ssize_t)sizeof(seq))
		_exit(4);
}

struct crash_child {
	struct vigie_outbox *ob;
	uint64_t next;
};

static void crash_idle(uv_idle_t *h)
{
	struct crash_child *c = h->data;
	char buf[128];
	size_t len;
	int i, rc;

	for (i = 0; i < 256 && c->next <= CRASH_MAX_SEQ; i++) {
		len = make_payload(c->next, buf, sizeof(buf));
		rc = vigie_outbox_append(c->ob, c->next, c->next * 1000, buf,
					 len, crash_durable,
					 (void *)(uintptr_t)c->next, NULL);
		if (rc == VIGIE_EFULL)
			break;
		if (rc != 0)
			_exit(5);
		c->next++;
	}
	if (c->next > CRASH_MAX_SEQ) {
		uv_idle_stop(h);
		uv_close((uv_handle_t *)h, NULL);
		vigie_outbox_close(c->ob, NULL, NULL);
	}
}

static void crash_child_run(const char *path, int fd)
{
	struct crash_child c = {.next = 1};
	uv_idle_t idle;
	uv_loop_t loop;

	crash_fd = fd;
	if (uv_loop_init(&loop) != 0)
		_exit(6);
	if (vigie_outbox_open(&loop, path, NULL, &c.ob) != 0)
		_exit(7);
	uv_idle_init(&loop, &idle);
	idle.data = &c;
	uv_idle_start(&idle, crash_idle);
	uv_run(&loop, UV_RUN_DEFAULT);
	_exit(0);
}

static int64_t ms_left(uint64_t deadline)
{
	uint64_t now = vigie_clock_mono_ms();

	return now >= deadline ? 0 : (int64_t)(deadline - now);
}

static void test_durable_survives_kill9(void **state)
{
	struct fixture *f = *state;
	struct vigie_outbox *ob;
	struct vigie_outbox_entry *e;
	uint8_t buf[8192];
	uint64_t reported = 0, seq, loaded = 0, deadline;
	size_t have = 0, i;
	struct pollfd pfd;
	bool killed = false;
	int fds[2], wstatus;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		crash_child_run(f->path, fds[1]);
	}
	close(fds[1]);

	/* Kill while appends and commits are going on; then read what the
	 * child reported before it died, up to EOF. */
	deadline = vigie_clock_mono_ms() + 120000;
	for (;;) {
		if (!killed &&
		    (reported >= CRASH_KILL_AFTER || ms_left(deadline) == 0)) {
			assert_int_equal(kill(pid, SIGKILL), 0);
			killed = true;
		}
		pfd.fd = fds[0];
		pfd.events = POLLIN;
		if (poll(&pfd, 1, (int)ms_left(deadline)) < 0 && errno != EINTR)
			fail_msg("poll: %s", strerror(errno));
		n = read(fds[0], buf + have, sizeof(buf) - have);
		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n >= 0);
		if (n == 0)
			break;
		have += (size_t)n;
		for (i = 0; i + sizeof(seq) <= have; i += sizeof(seq)) {
			memcpy(&seq, buf + i, sizeof(seq));
			/* Durable callbacks run in append order. */
			assert_int_equal(seq, reported + 1);
			reported = seq;
		}
		memmove(buf, buf + i, have - i);
		have -= i;
	}
	close(fds[0]);
	assert_int_equal(waitpid(pid, &wstatus, 0), pid);
	assert_true(WIFSIGNALED(wstatus));
	assert_int_equal(WTERMSIG(wstatus), SIGKILL);
	assert_true(reported >= CRASH_KILL_AFTER);

	/* Every seq reported durable is there, and what is there is a
	 * whole prefix: transactions are atomic and in order. */
	ob = open_ok(f, NULL);
	for (e = vigie_outbox_first(ob); e; e = vigie_outbox_next(ob, e)) {
		assert_int_equal(e->seq, loaded + 1);
		check_payload(e);
		loaded = e->seq;
	}
	print_message("kill -9: %" PRIu64 " reported durable, %" PRIu64
		      " on disk\n",
		      reported, loaded);
	assert_true(loaded >= reported);
	close_ok(f, ob);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Not an assertion: how many appends per second become durable when the
 * loop appends in bursts and receipts lag behind, as a busy node does. */
#define RATE_EVENTS      200000
#define RATE_BURST       500
#define RATE_RECEIPT_LAG 5000

struct rate {
	struct vigie_outbox *ob;
	uv_idle_t idle;
	uint64_t next;
	size_t durable;
	uint64_t append_ns;
	uint64_t t_done;
};

static uint64_t now_ns(void)
{
	return uv_hrtime();
}

static void rate_durable(void *arg, int status)
{
	struct rate *r = arg;

	assert_int_equal(status, 0);
	if (++r->durable == RATE_EVENTS)
		r->t_done = now_ns();
}

static void rate_idle(uv_idle_t *h)
{
	struct rate *r = h->data;
	uint8_t payload[160];
	uint64_t t0;
	int i;

	memset(payload, 0xa5, sizeof(payload));
	t0 = now_ns();
	for (i = 0; i < RATE_BURST && r->next <= RATE_EVENTS; i++, r->next++) {
		memcpy(payload, &r->next, sizeof(r->next));
		assert_int_equal(vigie_outbox_append(r->ob, r->next,
						     vigie_clock_now_us(),
						     payload, sizeof(payload),
						     rate_durable, r, NULL),
				 0);
	}
	r->append_ns += now_ns() - t0;
	if (r->next > RATE_RECEIPT_LAG)
		vigie_outbox_receipt(r->ob, vigie_outbox_boot_id(r->ob),
				     r->next - RATE_RECEIPT_LAG);
	if (r->next > RATE_EVENTS)
		uv_idle_stop(h);
}

static void test_append_rate(void **state)
{
	struct fixture *f = *state;
	struct rate r = {.next = 1};
	uint64_t t0, commits;
	double secs;

	r.ob = open_ok(f, NULL);
	assert_int_equal(uv_idle_init(&f->loop, &r.idle), 0);
	r.idle.data = &r;
	uv_idle_start(&r.idle, rate_idle);
	t0 = now_ns();
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(r.durable, RATE_EVENTS);
	secs = (double)(r.t_done - t0) / 1e9;
	commits = vigie__outbox_commits(r.ob);
	print_message("append rate: %d events of 160 B durable in %.3f s = "
		      "%.0f events/s; %" PRIu64 " transactions (%.0f events "
		      "each); append calls alone %.0f ns each\n",
		      RATE_EVENTS, secs, RATE_EVENTS / secs, commits,
		      (double)RATE_EVENTS / (double)commits,
		      (double)r.append_ns / RATE_EVENTS);
	uv_close((uv_handle_t *)&r.idle, NULL);
	close_ok(f, r.ob);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_durable_reopen,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_receipt_drops, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_receipt_before_commit,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_receipt_and_close_from_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_flushes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_caps_and_bad_input, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_not_sqlite, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_transaction_failure, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_durable_survives_kill9,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_rate, setup,
						teardown),
	};

	/* Expected errors (garbage file, locked database) stay visible. */
	vigie_log_init("test_outbox", VIGIE_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
