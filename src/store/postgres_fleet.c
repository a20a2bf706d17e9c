/*
 * postgres_fleet.c — the executors table on PostgreSQL (issue 16), as sqlite_fleet.c does.
 * Replicas of one access point share the table: each writes the executors connected to it.
 */
#include <stdlib.h>
#include <string.h>

#include "postgres_internal.h"

static int change_one(struct pgs *s, const char *sql, struct pgs_args *a) {
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int64_t rows = 0;
    int rc = store_pg_change_begin(c);
    if (rc == 0 && (rc = store_pg_do(c, sql, a, &rows)) == 0 && rows == 0)
        rc = AH_E_NOTFOUND;
    rc = store_pg_change_end(c, rc);
    store_pg_release(s, c);
    return rc;
}

int store_pg_executor_put(void *impl, const char *id, const char *name, const char *facts,
                          int64_t now) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, id);
    store_pg_arg_text(&a, name);
    store_pg_arg_text(&a, facts);
    store_pg_arg_int(&a, now);
    int rc = store_pg_do(c,
                         "INSERT INTO executors (id, name, facts, drained, first_seen, last_seen)"
                         " VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT (id) DO UPDATE SET"
                         " name = excluded.name, facts = excluded.facts,"
                         " last_seen = excluded.last_seen",
                         &a, NULL);
    store_pg_release(s, c);
    return rc;
}

int store_pg_executor_seen(void *impl, const char *id, int64_t when) {
    struct pgs_args a = {0};
    store_pg_arg_text(&a, id);
    store_pg_arg_int(&a, when);
    return change_one(impl, "UPDATE executors SET last_seen = greatest(last_seen, $2) WHERE id = $1",
                      &a);
}

int store_pg_executor_drain(void *impl, const char *id, bool drained) {
    struct pgs_args a = {0};
    store_pg_arg_text(&a, id);
    store_pg_arg_int(&a, drained ? 1 : 0);
    return change_one(impl, "UPDATE executors SET drained = $2 WHERE id = $1", &a);
}

int store_pg_executor_delete(void *impl, const char *id) {
    struct pgs_args a = {0};
    store_pg_arg_text(&a, id);
    return change_one(impl, "DELETE FROM executors WHERE id = $1", &a);
}

int store_pg_executor_list(void *impl, struct executor_row **ret, size_t *ret_n) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_int(&a, STORE_EXECUTORS_MAX);
    int rc = 0;
    PGresult *r = store_pg_run(c,
                               "SELECT id, name, facts, drained, first_seen, last_seen"
                               " FROM executors ORDER BY id LIMIT $1",
                               &a, &rc);
    struct executor_row *rows = NULL;
    size_t n = 0;
    if (r) {
        size_t got = (size_t)PQntuples(r);
        if (!(rows = calloc(got ? got : 1, sizeof(*rows))))
            rc = AH_E_NOMEM;
        for (size_t i = 0; rc == 0 && i < got; i++) {
            struct executor_row *e = &rows[n++];
            e->id = store_pg_text(r, (int)i, 0);
            e->name = store_pg_text(r, (int)i, 1);
            e->facts = store_pg_text(r, (int)i, 2);
            e->drained = store_pg_int(r, (int)i, 3) != 0;
            e->first_seen = store_pg_int(r, (int)i, 4);
            e->last_seen = store_pg_int(r, (int)i, 5);
            if (!e->id || !e->name || !e->facts)
                rc = AH_E_NOMEM;
        }
        PQclear(r);
    }
    store_pg_release(s, c);
    if (rc < 0) {
        executor_rows_free(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    return 0;
}
