/*
 * sqlite_catalog.c — the catalog's reads on SQLite (issue 15): the tenant's projects, derived
 * from its tasks, so a project exists from its first task on and needs no table of its own.
 */
#include <stdlib.h>
#include <string.h>

#include "sqlite_internal.h"

int sq_project_list(void *impl, const char *tenant, const struct page *pg,
                    struct project_row **ret, size_t *ret_n, int64_t *ret_total) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "SELECT coalesce(project_id, 'default') AS p,"
                                     " max(created_at), count(*) OVER () FROM tasks"
                                     " WHERE tenant_id = ?1 GROUP BY p"
                                     " ORDER BY max(created_at) DESC, p LIMIT ?2 OFFSET ?3");
    int rc = st ? 0 : AH_E_DB;
    struct project_row *rows = NULL;
    size_t n = 0;
    int64_t total = 0;
    if (st && !(rows = calloc((size_t)pg->per_page, sizeof(*rows))))
        rc = AH_E_NOMEM;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, pg->per_page);
        sqlite3_bind_int64(st, 3, page_offset(pg));
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW && n < (size_t)pg->per_page) {
            rows[n].id = strdup((const char *)sqlite3_column_text(st, 0));
            rows[n].last_used_at = sqlite3_column_int64(st, 1);
            total = sqlite3_column_int64(st, 2);
            if (!rows[n].id) {
                rc = AH_E_NOMEM;
                break;
            }
            n++;
        }
        if (rc == 0 && step != SQLITE_DONE && step != SQLITE_ROW)
            rc = sq_code(step);
    }
    sq_done(c, st);
    if (rc == 0 && n == 0 && pg->page > 1) { /* past the end: the total still counts */
        sqlite3_stmt *q = sq_prepare(c, "SELECT count(DISTINCT coalesce(project_id, 'default'))"
                                        " FROM tasks WHERE tenant_id = ?1");
        if (!q)
            rc = AH_E_DB;
        else {
            sqlite3_bind_text(q, 1, tenant, -1, SQLITE_STATIC);
            if (sqlite3_step(q) == SQLITE_ROW)
                total = sqlite3_column_int64(q, 0);
            sq_done(c, q);
        }
    }
    sq_release(s, c);
    if (rc < 0) {
        project_rows_free(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    *ret_total = total;
    return 0;
}
