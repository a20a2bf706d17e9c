/*
 * sqlite_fleet.c — the executors table on SQLite (issue 16; store.h "the fleet"): one row per
 * enrolled executor, written on Hello, drain, removal and now and then on heartbeats.
 */
#include <stdlib.h>
#include <string.h>

#include "sqlite_internal.h"

int sq_executor_put(void *impl, const char *id, const char *name, const char *facts,
                    int64_t now) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "INSERT INTO executors (id, name, facts, drained, first_seen,"
                                     " last_seen) VALUES (?1, ?2, ?3, 0, ?4, ?4)"
                                     " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                                     " facts = excluded.facts, last_seen = excluded.last_seen");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, facts, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, now);
        rc = sq_code(sqlite3_step(st));
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

int sq_executor_seen(void *impl, const char *id, int64_t when) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "UPDATE executors SET last_seen = max(last_seen, ?2)"
                                     " WHERE id = ?1");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, when);
        rc = sq_change_one(c, st);
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

int sq_executor_drain(void *impl, const char *id, bool drained) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "UPDATE executors SET drained = ?2 WHERE id = ?1");
    int rc = st ? sq_change_begin(c) : AH_E_DB;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, drained ? 1 : 0);
        rc = sq_change_one(c, st);
    }
    sq_done(c, st);
    rc = sq_change_end(c, rc);
    sq_release(s, c);
    return rc;
}

int sq_executor_delete(void *impl, const char *id) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "DELETE FROM executors WHERE id = ?1");
    int rc = st ? sq_change_begin(c) : AH_E_DB;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = sq_change_one(c, st);
    }
    sq_done(c, st);
    rc = sq_change_end(c, rc);
    sq_release(s, c);
    return rc;
}

int sq_executor_list(void *impl, struct executor_row **ret, size_t *ret_n) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "SELECT id, name, facts, drained, first_seen, last_seen"
                                     " FROM executors ORDER BY id LIMIT ?1");
    int rc = st ? 0 : AH_E_DB;
    struct executor_row *rows = NULL;
    size_t n = 0, cap = 0;
    if (st) {
        sqlite3_bind_int64(st, 1, STORE_EXECUTORS_MAX);
        int step = SQLITE_DONE;
        while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct executor_row *g = realloc(rows, nc * sizeof(*g));
                if (!g) {
                    rc = AH_E_NOMEM;
                    break;
                }
                rows = g;
                cap = nc;
            }
            struct executor_row *r = &rows[n];
            memset(r, 0, sizeof(*r));
            r->id = strdup((const char *)sqlite3_column_text(st, 0));
            r->name = strdup((const char *)sqlite3_column_text(st, 1));
            r->facts = strdup((const char *)sqlite3_column_text(st, 2));
            r->drained = sqlite3_column_int(st, 3) != 0;
            r->first_seen = sqlite3_column_int64(st, 4);
            r->last_seen = sqlite3_column_int64(st, 5);
            n++;
            if (!r->id || !r->name || !r->facts)
                rc = AH_E_NOMEM;
        }
        if (rc == 0 && step != SQLITE_DONE)
            rc = sq_code(step);
    }
    sq_done(c, st);
    sq_release(s, c);
    if (rc < 0) {
        executor_rows_free(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    return 0;
}
