/*
 * postgres_catalog.c — the catalog's reads on PostgreSQL (issue 15): the tenant's projects,
 * derived from its tasks, as sqlite_catalog.c does.
 */
#include <stdlib.h>
#include <string.h>

#include "postgres_internal.h"

int store_pg_project_list(void *impl, const char *tenant, const struct page *pg,
                          struct project_row **ret, size_t *ret_n, int64_t *ret_total) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_int(&a, pg->per_page);
    store_pg_arg_int(&a, page_offset(pg));
    int rc = 0;
    PGresult *r = store_pg_run(c,
                               "SELECT coalesce(project_id, 'default') AS p, max(created_at),"
                               " (SELECT count(DISTINCT coalesce(project_id, 'default')) FROM tasks"
                               "  WHERE tenant_id = $1)"
                               " FROM tasks WHERE tenant_id = $1 GROUP BY 1"
                               " ORDER BY max(created_at) DESC, 1 LIMIT $2 OFFSET $3",
                               &a, &rc);
    struct project_row *rows = NULL;
    size_t n = 0;
    int64_t total = 0;
    if (r) {
        size_t got = (size_t)PQntuples(r);
        if (!(rows = calloc(got ? got : 1, sizeof(*rows))))
            rc = AH_E_NOMEM;
        for (size_t i = 0; rc == 0 && i < got; i++) {
            rows[n].id = strdup(PQgetvalue(r, (int)i, 0));
            rows[n].last_used_at = store_pg_int(r, (int)i, 1);
            total = store_pg_int(r, (int)i, 2);
            if (!rows[n].id)
                rc = AH_E_NOMEM;
            else
                n++;
        }
        PQclear(r);
    }
    if (rc == 0 && n == 0 && pg->page > 1) {
        struct pgs_args b = {0};
        store_pg_arg_text(&b, tenant);
        PGresult *q = store_pg_run(c,
                                   "SELECT count(DISTINCT coalesce(project_id, 'default'))"
                                   " FROM tasks WHERE tenant_id = $1",
                                   &b, &rc);
        if (q) {
            total = store_pg_int(q, 0, 0);
            PQclear(q);
        }
    }
    store_pg_release(s, c);
    if (rc < 0) {
        project_rows_free(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    *ret_total = total;
    return 0;
}
