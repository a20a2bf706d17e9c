/*
 * sqlite_backup.c — `ah admin backup` for the embedded database: SQLite's online backup API
 * copies one consistent snapshot of a database that a running server keeps writing.
 *
 * Invariants:
 *  - The source is opened without CREATE and without migrations: a backup never changes the
 *    database it copies (a newer ah backing up an older server's database leaves its schema
 *    alone).
 *  - The whole copy is one sqlite3_backup_step(-1): one read transaction on the source, so the
 *    copy is the database as of one commit. In WAL mode that does not block the server's writers
 *    (a step-by-step copy would restart every time the server commits and might never finish).
 *  - The copy is written to DEST.part, checked (integrity_check) and only then renamed to DEST,
 *    so a DEST that exists is a whole, checked database; a failure leaves no DEST behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"

#define BACKUP_BUSY_MS 30000

static int fail(struct ah_problem *reterr, int code, sqlite3 *db, const char *what) {
    return problem_set(reterr, code, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

static int64_t count(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Checks the finished copy and describes it. */
static int check_copy(sqlite3 *db, json_t **ret_summary, struct ah_problem *reterr) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
        return fail(reterr, AH_E_DB, db, "cannot check the copy");
    int step = sqlite3_step(st);
    const char *verdict = step == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    int rc = 0;
    if (!verdict || strcmp(verdict, "ok") != 0)
        rc = problem_set(reterr, AH_E_DB, "the copy fails its integrity check: %s",
                         verdict ? verdict : sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;
    json_t *sum = json_pack("{s:I, s:I, s:I, s:I}", "schemaVersion",
                            (json_int_t)count(db, "SELECT coalesce(max(version), 0) FROM "
                                                  "schema_migrations"),
                            "tasks", (json_int_t)count(db, "SELECT count(*) FROM tasks"),
                            "sessions", (json_int_t)count(db, "SELECT count(*) FROM sessions"),
                            "events", (json_int_t)count(db, "SELECT count(*) FROM events"));
    if (!sum)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    *ret_summary = sum;
    return 0;
}

static int sync_dir_of(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

int store_sqlite_backup(const char *path, const char *dest, json_t **ret_summary,
                        struct ah_problem *reterr) {
    if (strcmp(path, ":memory:") == 0)
        return problem_set(reterr, AH_E_INVAL, "an in-memory database has nothing to back up");
    struct stat sb;
    if (stat(path, &sb) < 0)
        return problem_set(reterr, ah_err_from_errno(errno), "cannot open the database %s: %s",
                           path, strerror(errno));
    if (lstat(dest, &sb) == 0)
        return problem_set(reterr, AH_E_EXISTS, "%s already exists", dest);
    char part[4200];
    if (snprintf(part, sizeof(part), "%s.part", dest) >= (int)sizeof(part))
        return problem_set(reterr, AH_E_TOOLARGE, "the backup path is too long");
    unlink(part); /* a previous attempt's leftover: never a finished backup */

    sqlite3 *src = NULL, *dst = NULL;
    json_t *sum = NULL;
    int rc = 0;
    if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rc = fail(reterr, AH_E_DB, src, "cannot open the database");
        goto out;
    }
    sqlite3_busy_timeout(src, BACKUP_BUSY_MS);
    if (sqlite3_open_v2(part, &dst,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = fail(reterr, AH_E_IO, dst, "cannot create the backup");
        goto out;
    }
    /* the copy is a file to keep: fully synced, and the owner's alone like the original (D28) */
    chmod(part, 0600);
    sqlite3_exec(dst, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        rc = fail(reterr, AH_E_DB, dst, "cannot start the backup");
        goto out;
    }
    int step;
    /* BUSY/LOCKED: a writer held the source past the busy timeout at the start; try again a few
     * times rather than give up on a busy server */
    for (int tries = 0; (step = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || step == SQLITE_LOCKED;
         tries++) {
        if (tries >= 5)
            break;
        sqlite3_sleep(200);
    }
    int fin = sqlite3_backup_finish(b);
    if (step != SQLITE_DONE || fin != SQLITE_OK) {
        int code = (step & 0xff) == SQLITE_FULL || (fin & 0xff) == SQLITE_FULL ? AH_E_IO
                   : (step & 0xff) == SQLITE_BUSY                              ? AH_E_UNAVAIL
                                                                               : AH_E_DB;
        rc = problem_set(reterr, code, "the backup failed: %s",
                         sqlite3_errstr(step != SQLITE_DONE ? step : fin));
        goto out;
    }
    if ((rc = check_copy(dst, &sum, reterr)) < 0)
        goto out;
    /* a backup is read by a server later: leave it in rollback mode, no -wal beside it */
    sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
    if (sqlite3_close(dst) != SQLITE_OK) {
        rc = fail(reterr, AH_E_IO, dst, "cannot finish the backup");
        goto out;
    }
    dst = NULL;
    if (rename(part, dest) < 0 || sync_dir_of(dest) < 0) {
        rc = problem_set(reterr, ah_err_from_errno(errno), "cannot put the backup at %s: %s", dest,
                         strerror(errno));
        goto out;
    }
    json_object_set_new(sum, "bytes", json_integer(stat(dest, &sb) == 0 ? sb.st_size : 0));
    *ret_summary = sum;
    sum = NULL;
out:
    json_decref(sum);
    sqlite3_close_v2(dst);
    sqlite3_close_v2(src);
    if (rc < 0)
        unlink(part);
    return rc;
}
