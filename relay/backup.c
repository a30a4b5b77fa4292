/* `vigie-relay backup`: an online, consistent copy of the relay's database,
 * taken while the relay runs. SQLite's backup API copies the pages of one
 * read transaction; in WAL mode the relay goes on writing meanwhile, and a
 * copy that a write overtook is simply started again by the API.
 *
 * The copy goes to OUT.partial, is switched to a rollback journal (one
 * self-contained file, no -wal beside it), checked (PRAGMA quick_check),
 * fsync'd and renamed to OUT, with the folder fsync'd: OUT is a whole,
 * checked copy or nothing. An existing OUT is never overwritten.
 *
 * Restoring is stopping the relay, putting the copy in place of its
 * database (and removing its -wal and -shm), and starting it: what came
 * after the copy and was receipted is caught up from the nodes' heartbeats
 * (relay.c, catch_up), what was not is re-sent by the nodes. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "relay.h"
#include "vigie/error.h"

#define PAGES_PER_STEP 1024

static int fail(const char *what, const char *path, sqlite3 *db)
{
	fprintf(stderr, "vigie-relay backup: %s %s: %s\n", what, path,
		db ? sqlite3_errmsg(db) : strerror(errno));
	return VIGIE_EIO;
}

static int64_t count(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s;
	int64_t n = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return n;
}

static int fsync_path(const char *path, bool dir)
{
	int fd =
		open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

static int copy_pages(sqlite3 *src, sqlite3 *dst, const char *tmp)
{
	sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
	struct timespec pause = {0, 10 * 1000000L};
	int rc;

	if (!b)
		return fail("cannot start a copy into", tmp, dst);
	do {
		rc = sqlite3_backup_step(b, PAGES_PER_STEP);
		if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
			nanosleep(&pause, NULL);
	} while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE)
		return fail("cannot copy into", tmp, dst);
	return 0;
}

int vigie__relay_backup(const char *path, const char *out, FILE *report)
{
	char tmp[4096], dir[4096], *err = NULL;
	sqlite3 *src = NULL, *dst = NULL;
	int64_t events, incidents;
	int rc = VIGIE_EIO;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.partial", out) >=
	    sizeof(tmp)) {
		fprintf(stderr, "vigie-relay backup: %s: path too long\n", out);
		return VIGIE_EINVAL;
	}
	if (access(out, F_OK) == 0) {
		fprintf(stderr,
			"vigie-relay backup: %s exists: refusing to overwrite "
			"it (remove it or name another file)\n",
			out);
		return VIGIE_EINVAL;
	}
	if (access(path, R_OK) != 0)
		return fail("cannot read", path, NULL);
	if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		rc = fail("cannot open", path, src);
		goto out;
	}
	sqlite3_busy_timeout(src, 5000);
	if (count(src, "SELECT count(*) FROM sqlite_master WHERE type = "
		       "'table' AND name IN ('events', 'streams', "
		       "'incidents', 'audit')") != 4) {
		fprintf(stderr,
			"vigie-relay backup: %s is not a relay database (no "
			"events, streams, incidents and audit tables)\n",
			path);
		rc = VIGIE_EINVAL;
		goto out;
	}
	if (unlink(tmp) != 0 && errno != ENOENT) {
		rc = fail("cannot remove the leftover", tmp, NULL);
		goto out;
	}
	if (sqlite3_open_v2(tmp, &dst,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
			    NULL) != SQLITE_OK) {
		rc = fail("cannot create", tmp, dst);
		goto out;
	}
	rc = copy_pages(src, dst, tmp);
	if (rc)
		goto out;
	/* One file: the copy carries the source's WAL flag in its header. */
	if (sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL,
			 &err) != SQLITE_OK) {
		fprintf(stderr, "vigie-relay backup: %s: %s\n", tmp, err);
		rc = VIGIE_EIO;
		goto out;
	}
	{
		sqlite3_stmt *s;
		const unsigned char *verdict = NULL;
		bool ok = false;

		if (sqlite3_prepare_v2(dst, "PRAGMA quick_check", -1, &s,
				       NULL) == SQLITE_OK) {
			if (sqlite3_step(s) == SQLITE_ROW)
				verdict = sqlite3_column_text(s, 0);
			ok = verdict &&
			     strcmp((const char *)verdict, "ok") == 0;
			if (!ok)
				fprintf(stderr,
					"vigie-relay backup: %s fails its "
					"check: %s\n",
					tmp,
					verdict ? (const char *)verdict : "?");
			sqlite3_finalize(s);
		}
		if (!ok) {
			rc = VIGIE_EIO;
			goto out;
		}
	}
	events = count(dst, "SELECT count(*) FROM events");
	incidents = count(dst, "SELECT count(*) FROM incidents");
	if (sqlite3_close(dst) != SQLITE_OK) {
		rc = fail("cannot close", tmp, dst);
		goto out;
	}
	dst = NULL;
	snprintf(dir, sizeof(dir), "%s", out);
	if (fsync_path(tmp, false) != 0 || rename(tmp, out) != 0 ||
	    fsync_path(dirname(dir), true) != 0) {
		rc = fail("cannot put in place", out, NULL);
		goto out;
	}
	fprintf(report,
		"backup of %s to %s: %" PRId64 " event(s), %" PRId64
		" incident(s), checked\n",
		path, out, events, incidents);
	rc = 0;
out:
	sqlite3_free(err);
	sqlite3_close(dst);
	sqlite3_close(src);
	if (rc)
		unlink(tmp);
	return rc;
}
