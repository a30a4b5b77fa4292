/* Read-only views of the relay's database for operators: an incident's
 * history (`vigie-relay audit --incident ID`) and the incident list. They
 * open their own read-only connection, so the relay may be running (WAL
 * lets readers and the writer work side by side). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "relay.h"
#include "vigie/clock.h"
#include "vigie/error.h"

static const char *incident_state_name(int s)
{
	switch (s) {
	case VIGIE__V1__INCIDENT_STATE__INCIDENT_OPEN:
		return "open";
	case VIGIE__V1__INCIDENT_STATE__INCIDENT_CONFIRMED:
		return "confirmed";
	case VIGIE__V1__INCIDENT_STATE__INCIDENT_ACKNOWLEDGED:
		return "acknowledged";
	case VIGIE__V1__INCIDENT_STATE__INCIDENT_CLOSED:
		return "closed";
	default:
		return "unknown";
	}
}

static const char *text(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	return t ? (const char *)t : "";
}

static const char *stamp(uint64_t us, char *buf, size_t len)
{
	if (!us)
		return "-";
	return vigie_clock_format_us(us, buf, len);
}

static int open_ro(const char *path, sqlite3 **db)
{
	int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL);

	if (rc != SQLITE_OK) {
		fprintf(stderr, "%s: cannot open: %s\n", path,
			*db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
		sqlite3_close(*db);
		*db = NULL;
		return VIGIE_EIO;
	}
	sqlite3_busy_timeout(*db, 5000);
	return 0;
}

static int prep(sqlite3 *db, const char *path, const char *sql,
		sqlite3_stmt **s)
{
	if (sqlite3_prepare_v2(db, sql, -1, s, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
		return VIGIE_EIO;
	}
	return 0;
}

int vigie__audit_print(const char *path, const char *incident, FILE *out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	char t1[40], t2[40];
	int rc, rows = 0, found = 0;

	rc = open_ro(path, &db);
	if (rc)
		return rc;
	rc = prep(db, path,
		  "SELECT site, zone, subject, state, trouble, priority, kind,"
		  " opened_us, closed_us FROM incidents WHERE id = ?1",
		  &s);
	if (rc)
		goto out_close;
	sqlite3_bind_text(s, 1, incident, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		found = 1;
		fprintf(out,
			"incident %s: %s %s %s, priority %s, site %s, zone "
			"%s%s%s\n",
			incident, incident_state_name(sqlite3_column_int(s, 3)),
			sqlite3_column_int(s, 4) ? "trouble" : "alarm",
			vigie_kind_name(sqlite3_column_int(s, 6)),
			vigie_priority_name(sqlite3_column_int(s, 5)),
			text(s, 0), *text(s, 1) ? text(s, 1) : "-",
			*text(s, 2) ? ", subject " : "", text(s, 2));
		fprintf(out, "opened %s, closed %s\n",
			stamp((uint64_t)sqlite3_column_int64(s, 7), t1,
			      sizeof(t1)),
			stamp((uint64_t)sqlite3_column_int64(s, 8), t2,
			      sizeof(t2)));
	}
	sqlite3_finalize(s);
	s = NULL;
	rc = prep(db, path,
		  "SELECT time_us, what, who, detail FROM audit"
		  " WHERE incident = ?1 ORDER BY id",
		  &s);
	if (rc)
		goto out_close;
	sqlite3_bind_text(s, 1, incident, -1, SQLITE_STATIC);
	for (;;) {
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		if (!rows++)
			fprintf(out, "%-27s  %-12s  %-28s  %s\n", "time (UTC)",
				"what", "who", "detail");
		fprintf(out, "%-27s  %-12s  %-28s  %s\n",
			stamp((uint64_t)sqlite3_column_int64(s, 0), t1,
			      sizeof(t1)),
			text(s, 1), text(s, 2), text(s, 3));
	}
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
		rc = VIGIE_EIO;
		goto out_close;
	}
	sqlite3_finalize(s);
	s = NULL;
	rc = prep(
		db, path,
		"SELECT id, level, alert, post, backup_for, attempts, first_us,"
		" last_us, acked_us FROM dispatches WHERE incident = ?1"
		" ORDER BY level",
		&s);
	if (rc)
		goto out_close;
	sqlite3_bind_text(s, 1, incident, -1, SQLITE_STATIC);
	while (sqlite3_step(s) == SQLITE_ROW) {
		char t3[40];

		fprintf(out,
			"%s %s: level %d to %s%s%s, %d attempt(s), first %s, "
			"last %s, acked %s\n",
			sqlite3_column_int(s, 2) ? "alert" : "dispatch",
			text(s, 0), sqlite3_column_int(s, 1),
			sqlite3_column_int(s, 2) ? "site security" : text(s, 3),
			*text(s, 4) ? " as backup of " : "", text(s, 4),
			sqlite3_column_int(s, 5),
			stamp((uint64_t)sqlite3_column_int64(s, 6), t1,
			      sizeof(t1)),
			stamp((uint64_t)sqlite3_column_int64(s, 7), t2,
			      sizeof(t2)),
			stamp((uint64_t)sqlite3_column_int64(s, 8), t3,
			      sizeof(t3)));
	}
	rc = 0;
	if (!found && !rows) {
		fprintf(stderr, "%s: no incident %s\n", path, incident);
		rc = VIGIE_ENOTFOUND;
	}
out_close:
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rc;
}

int vigie__incidents_print(const char *path, bool all, FILE *out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	char t1[40];
	int rc, rows = 0;

	rc = open_ro(path, &db);
	if (rc)
		return rc;
	rc = prep(db, path,
		  all ? "SELECT id, state, trouble, priority, kind, site, zone,"
			" subject, opened_us FROM incidents ORDER BY opened_us"
		      : "SELECT id, state, trouble, priority, kind, site, zone,"
			" subject, opened_us FROM incidents WHERE state != 4"
			" ORDER BY opened_us",
		  &s);
	if (rc)
		goto out_close;
	for (;;) {
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		if (!rows++)
			fprintf(out, "%-36s  %-12s  %-8s  %-18s  %-27s  %s\n",
				"id", "state", "priority", "kind",
				"opened (UTC)", "where");
		fprintf(out, "%-36s  %-12s  %-8s  %-18s  %-27s  %s/%s%s%s\n",
			text(s, 0),
			incident_state_name(sqlite3_column_int(s, 1)),
			vigie_priority_name(sqlite3_column_int(s, 3)),
			vigie_kind_name(sqlite3_column_int(s, 4)),
			stamp((uint64_t)sqlite3_column_int64(s, 8), t1,
			      sizeof(t1)),
			*text(s, 5) ? text(s, 5) : "-", text(s, 6),
			*text(s, 7) ? " " : "", text(s, 7));
	}
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
		rc = VIGIE_EIO;
		goto out_close;
	}
	if (!rows)
		fprintf(out, "no %sincidents\n", all ? "" : "open ");
	rc = 0;
out_close:
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rc;
}
