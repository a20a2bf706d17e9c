/*
 * sqlite_drafts.c — drafts (saved, possibly incomplete task bodies) and the repositories the
 * tenant's tasks have used. Every statement is scoped by tenant_id.
 */
#include <string.h>

#include "sqlite_internal.h"

void draft_row_free(struct draft_row *r) {
    if (!r)
        return;
    free(r->id);
    json_decref(r->body);
    free(r);
}

void draft_rows_free(struct draft_row **rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++)
        draft_row_free(rows[i]);
    free(rows);
}

void repo_rows_free(struct repo_row *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++)
        free(rows[i].url);
    free(rows);
}

static int read_draft(sqlite3_stmt *st, struct draft_row **ret) {
    struct draft_row *r = calloc(1, sizeof(*r));
    if (!r)
        return AH_E_NOMEM;
    r->id = strdup((const char *)sqlite3_column_text(st, 0));
    r->body = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
    r->created_at = sqlite3_column_int64(st, 2);
    r->updated_at = sqlite3_column_int64(st, 3);
    if (!r->id || !r->body) {
        draft_row_free(r);
        return AH_E_NOMEM;
    }
    *ret = r;
    return 0;
}

static int write_body(struct conn *c, const char *sql, const char *tenant, const char *id,
                      const json_t *body, int64_t now) {
    AH_AUTOFREE char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        return AH_E_NOMEM;
    sqlite3_stmt *st = sq_prepare(c, sql);
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, now);
        rc = sq_change_one(c, st);
    }
    sq_done(c, st);
    return rc;
}

int sq_draft_create(void *impl, const char *tenant, const char *id, const json_t *body,
                    int64_t now) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_change_begin(c);
    if (rc == 0)
        rc = write_body(c,
                        "INSERT INTO drafts (tenant_id, id, body, created_at, updated_at)"
                        " VALUES (?1, ?2, ?3, ?4, ?4)",
                        tenant, id, body, now);
    rc = sq_change_end(c, rc);
    sq_release(s, c);
    return rc;
}

static int read_one_draft(sqlite3_stmt *st, void *ret) {
    return read_draft(st, ret);
}

static const char DRAFT_BY_ID[] = "SELECT id, body, created_at, updated_at FROM drafts"
                                  " WHERE tenant_id = ?1 AND id = ?2";

int sq_draft_update(void *impl, const char *tenant, const char *id, json_t *members,
                    int64_t now, struct draft_row **ret) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    struct draft_row *r = NULL;
    /* read, merge and write under one write lock: a concurrent update waits, then merges into
     * what this one saved */
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    if (rc == 0)
        rc = sq_row_by_id_on(c, DRAFT_BY_ID, tenant, id, read_one_draft, &r);
    if (rc == 0)
        rc = json_object_update(r->body, members) < 0 ? AH_E_NOMEM : 0;
    if (rc == 0)
        rc = write_body(c, "UPDATE drafts SET body = ?3, updated_at = ?4"
                           " WHERE tenant_id = ?1 AND id = ?2",
                        tenant, id, r->body, now);
    if (rc == 0)
        rc = sq_commit_change(c);
    sq_release(s, c); /* rolls back when the transaction is still open */
    if (rc < 0) {
        draft_row_free(r);
        return rc;
    }
    r->updated_at = now;
    *ret = r;
    return 0;
}

int sq_draft_get(void *impl, const char *tenant, const char *id, struct draft_row **ret) {
    return sq_row_by_id(impl, DRAFT_BY_ID, tenant, id, read_one_draft, ret);
}

int sq_draft_delete(void *impl, const char *tenant, const char *id) {
    return sq_change_by_id(impl, "DELETE FROM drafts WHERE tenant_id = ?1 AND id = ?2", tenant, id);
}

int sq_draft_list(void *impl, const char *tenant, const struct page *pg, struct draft_row ***ret,
                  size_t *ret_n, int64_t *ret_total) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN");
    int64_t total = 0;
    struct draft_row **rows = NULL;
    size_t n = 0;
    sqlite3_stmt *st = rc == 0 ? sq_prepare(c, "SELECT count(*) FROM drafts WHERE tenant_id = ?1")
                               : NULL;
    if (st) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        rc = sq_count(st, &total);
    }
    sq_done(c, st);
    st = rc == 0 ? sq_prepare(c, "SELECT id, body, created_at, updated_at FROM drafts"
                                 " WHERE tenant_id = ?1 ORDER BY updated_at DESC, id DESC"
                                 " LIMIT ?2 OFFSET ?3")
                 : NULL;
    if (!st)
        rc = rc < 0 ? rc : AH_E_DB;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, pg->per_page);
        sqlite3_bind_int64(st, 3, page_offset(pg));
        rows = calloc((size_t)pg->per_page, sizeof(*rows));
        int step = SQLITE_DONE;
        while (rows && (step = sqlite3_step(st)) == SQLITE_ROW && rc == 0)
            if ((rc = read_draft(st, &rows[n])) == 0)
                n++;
        if (!rows)
            rc = AH_E_NOMEM;
        else if (rc == 0 && step != SQLITE_DONE)
            rc = sq_code(step);
    }
    sq_done(c, st);
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    sq_release(s, c); /* rolls back when the transaction is still open */
    if (rc < 0) {
        draft_rows_free(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    *ret_total = total;
    return 0;
}

int sq_repo_list(void *impl, const char *tenant, const char *project_id, struct repo_row **ret,
                 size_t *ret_n) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "SELECT json_extract(request, '$.repo.url') AS url,"
                                     " max(created_at) FROM tasks WHERE tenant_id = ?1"
                                     " AND (?2 IS NULL OR project_id = ?2)"
                                     " AND json_extract(request, '$.repo.mode') = 'git'"
                                     " AND url IS NOT NULL GROUP BY url"
                                     " ORDER BY max(created_at) DESC LIMIT 1000");
    int rc = st ? 0 : AH_E_DB;
    struct repo_row *rows = NULL;
    size_t n = 0, cap = 0;
    if (st) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, project_id, -1, SQLITE_STATIC);
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                struct repo_row *nr = realloc(rows, cap * sizeof(*rows));
                if (!nr) {
                    rc = AH_E_NOMEM;
                    break;
                }
                rows = nr;
            }
            rows[n].url = strdup((const char *)sqlite3_column_text(st, 0));
            rows[n].last_used_at = sqlite3_column_int64(st, 1);
            if (!rows[n].url) {
                rc = AH_E_NOMEM;
                break;
            }
            n++;
        }
        if (rc == 0 && step != SQLITE_DONE)
            rc = sq_code(step);
    }
    sq_done(c, st);
    sq_release(s, c);
    if (rc < 0) {
        repo_rows_free(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    return 0;
}
