/*
 * postgres_drafts.c — drafts and the repositories the tenant's tasks have used, the twin of
 * sqlite_drafts.c. Every statement is scoped by tenant_id. The row types and their *_free
 * functions are shared with the SQLite backend (sqlite_drafts.c).
 */
#include <string.h>

#include "postgres_internal.h"

static int read_draft(const PGresult *r, int i, struct draft_row **ret) {
    struct draft_row *d = calloc(1, sizeof(*d));
    if (!d)
        return AH_E_NOMEM;
    d->id = store_pg_text(r, i, 0);
    d->body = json_loads(PQgetvalue(r, i, 1), 0, NULL);
    d->created_at = store_pg_int(r, i, 2);
    d->updated_at = store_pg_int(r, i, 3);
    if (!d->id || !d->body) {
        draft_row_free(d);
        return AH_E_NOMEM;
    }
    *ret = d;
    return 0;
}

static int read_one_draft(const PGresult *r, int row, void *ret) {
    return read_draft(r, row, ret);
}

/* Runs `sql` ($1 tenant, $2 id, $3 body, $4 now), which must touch a row. */
static int write_body(struct pgs_conn *c, const char *sql, const char *tenant, const char *id,
                      const json_t *body, int64_t now) {
    AH_AUTOFREE char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        return AH_E_NOMEM;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, id);
    store_pg_arg_text(&a, text);
    store_pg_arg_int(&a, now);
    int64_t rows = 0;
    int rc = store_pg_do(c, sql, &a, &rows);
    return rc == 0 && rows == 0 ? AH_E_NOTFOUND : rc;
}

int store_pg_draft_create(void *impl, const char *tenant, const char *id, const json_t *body,
                          int64_t now) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = store_pg_change_begin(c);
    if (rc == 0)
        rc = write_body(c,
                        "INSERT INTO drafts (tenant_id, id, body, created_at, updated_at)"
                        " VALUES ($1, $2, $3::json, $4, $4)",
                        tenant, id, body, now);
    rc = store_pg_change_end(c, rc);
    store_pg_release(s, c);
    return rc;
}

static const char DRAFT_BY_ID[] = "SELECT id, body, created_at, updated_at FROM drafts"
                                  " WHERE tenant_id = $1 AND id = $2";
static const char DRAFT_BY_ID_LOCKED[] = "SELECT id, body, created_at, updated_at FROM drafts"
                                         " WHERE tenant_id = $1 AND id = $2 FOR UPDATE";

int store_pg_draft_update(void *impl, const char *tenant, const char *id, json_t *members,
                          int64_t now, struct draft_row **ret) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct draft_row *r = NULL;
    /* read, merge and write under the row's lock: a concurrent update waits, then merges into
     * what this one saved */
    int rc = store_pg_exec(c, "BEGIN");
    if (rc == 0)
        rc = store_pg_row_by_id_on(c, DRAFT_BY_ID_LOCKED, tenant, id, read_one_draft, &r);
    if (rc == 0)
        rc = json_object_update(r->body, members) < 0 ? AH_E_NOMEM : 0;
    if (rc == 0)
        rc = write_body(c,
                        "UPDATE drafts SET body = $3::json, updated_at = $4"
                        " WHERE tenant_id = $1 AND id = $2",
                        tenant, id, r->body, now);
    if (rc == 0)
        rc = store_pg_commit_change(c);
    store_pg_release(s, c); /* rolls back when the transaction is still open */
    if (rc < 0) {
        draft_row_free(r);
        return rc;
    }
    r->updated_at = now;
    *ret = r;
    return 0;
}

int store_pg_draft_get(void *impl, const char *tenant, const char *id, struct draft_row **ret) {
    return store_pg_row_by_id(impl, DRAFT_BY_ID, tenant, id, read_one_draft, ret);
}

int store_pg_draft_delete(void *impl, const char *tenant, const char *id) {
    return store_pg_change_by_id(impl, "DELETE FROM drafts WHERE tenant_id = $1 AND id = $2",
                                 tenant, id);
}

int store_pg_draft_list(void *impl, const char *tenant, const struct page *pg,
                        struct draft_row ***ret, size_t *ret_n, int64_t *ret_total) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int64_t total = 0;
    struct draft_row **rows = NULL;
    size_t n = 0;
    PGresult *r = NULL;
    int rc = store_pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        if ((r = store_pg_run(c, "SELECT count(*) FROM drafts WHERE tenant_id = $1", &a, &rc))) {
            total = store_pg_int(r, 0, 0);
            PQclear(r);
        }
    }
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        store_pg_arg_int(&a, pg->per_page);
        store_pg_arg_int(&a, page_offset(pg));
        r = store_pg_run(c,
                         "SELECT id, body, created_at, updated_at FROM drafts"
                         " WHERE tenant_id = $1 ORDER BY updated_at DESC, id DESC"
                         " LIMIT $2 OFFSET $3",
                         &a, &rc);
        if (r && !(rows = calloc((size_t)pg->per_page, sizeof(*rows))))
            rc = AH_E_NOMEM;
        for (int i = 0; r && rc == 0 && i < PQntuples(r) && (int64_t)n < pg->per_page; i++)
            if ((rc = read_draft(r, i, &rows[n])) == 0)
                n++;
        PQclear(r);
    }
    if (rc == 0)
        rc = store_pg_exec(c, "COMMIT");
    store_pg_release(s, c); /* rolls back when the transaction is still open */
    if (rc < 0) {
        draft_rows_free(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    *ret_total = total;
    return 0;
}

int store_pg_repo_list(void *impl, const char *tenant, const char *project_id,
                       struct repo_row **ret, size_t *ret_n) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, project_id);
    int rc = 0;
    PGresult *r = store_pg_run(c,
                               "SELECT request->'repo'->>'url' AS url, max(created_at) FROM tasks"
                               " WHERE tenant_id = $1 AND ($2::text IS NULL OR project_id = $2)"
                               " AND request->'repo'->>'mode' = 'git'"
                               " AND request->'repo'->>'url' IS NOT NULL GROUP BY 1"
                               " ORDER BY max(created_at) DESC LIMIT 1000",
                               &a, &rc);
    struct repo_row *rows = NULL;
    size_t n = 0;
    if (r) {
        size_t total = (size_t)PQntuples(r);
        if (!(rows = calloc(total ? total : 1, sizeof(*rows))))
            rc = AH_E_NOMEM;
        for (size_t i = 0; rc == 0 && i < total; i++) {
            rows[n].url = strdup(PQgetvalue(r, (int)i, 0));
            rows[n].last_used_at = store_pg_int(r, (int)i, 1);
            if (!rows[n].url)
                rc = AH_E_NOMEM;
            else
                n++;
        }
        PQclear(r);
    }
    store_pg_release(s, c);
    if (rc < 0) {
        repo_rows_free(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    return 0;
}
