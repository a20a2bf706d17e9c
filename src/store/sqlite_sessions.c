/*
 * sqlite_sessions.c — tasks and sessions in SQLite. Every statement names tenant_id in its WHERE
 * clause (or, for the server-wide live list, documents why it does not).
 */
#include <string.h>

#include "sqlite_internal.h"

#define SESSION_COLS                                                                               \
    "s.id, s.task_id, s.tenant_id, s.project_id, s.agent_index, s.instance, s.agent_type,"        \
    " s.agent_version, s.status, s.error, s.exit_code, s.workspace_provider, s.workspace_path,"   \
    " s.last_seq, s.recorder_rseq, s.recorder_pid, s.recorder_start, s.recorder_token,"           \
    " s.changes, t.request, s.created_at, s.updated_at, s.started_at, s.ended_at,"                \
    " s.executor_id"                                                                             \
    " FROM sessions s JOIN tasks t ON t.tenant_id = s.tenant_id AND t.id = s.task_id"

void session_row_free(struct session_row *r) {
    if (!r)
        return;
    free(r->tenant_id);
    free(r->project_id);
    free(r->agent_type);
    free(r->agent_version);
    free(r->error);
    free(r->workspace_provider);
    free(r->workspace_path);
    free(r->recorder_token);
    free(r->executor_id);
    json_decref(r->changes);
    json_decref(r->request);
    free(r->request_text);
    free(r);
}

json_t *session_row_request(struct session_row *r) {
    if (!r->request && r->request_text)
        r->request = json_loads(r->request_text, 0, NULL);
    return r->request;
}

void session_rows_free(struct session_row **rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++)
        session_row_free(rows[i]);
    free(rows);
}

static char *col_text(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static json_t *col_json(sqlite3_stmt *st, int i) {
    const char *t = (const char *)sqlite3_column_text(st, i);
    return t ? json_loads(t, 0, NULL) : NULL;
}

static int read_row(sqlite3_stmt *st, struct session_row **ret) {
    struct session_row *r = calloc(1, sizeof(*r));
    if (!r)
        return AH_E_NOMEM;
    snprintf(r->id, sizeof(r->id), "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(r->task_id, sizeof(r->task_id), "%s", (const char *)sqlite3_column_text(st, 1));
    r->tenant_id = col_text(st, 2);
    r->project_id = col_text(st, 3);
    r->agent_index = sqlite3_column_int(st, 4);
    r->instance = sqlite3_column_int(st, 5);
    r->agent_type = col_text(st, 6);
    r->agent_version = col_text(st, 7);
    if (session_status_parse((const char *)sqlite3_column_text(st, 8), &r->status) < 0)
        r->status = SESSION_FAILED; /* a value we never write; show it as failed, not crash */
    r->error = col_text(st, 9);
    r->has_exit_code = sqlite3_column_type(st, 10) != SQLITE_NULL;
    r->exit_code = sqlite3_column_int(st, 10);
    r->workspace_provider = col_text(st, 11);
    r->workspace_path = col_text(st, 12);
    r->last_seq = sqlite3_column_int64(st, 13);
    r->recorder_rseq = sqlite3_column_int64(st, 14);
    r->recorder_pid = sqlite3_column_int64(st, 15);
    r->recorder_start = sqlite3_column_int64(st, 16);
    r->recorder_token = col_text(st, 17);
    r->changes = col_json(st, 18);
    r->request_text = col_text(st, 19);
    r->created_at = sqlite3_column_int64(st, 20);
    r->updated_at = sqlite3_column_int64(st, 21);
    r->started_at = sqlite3_column_int64(st, 22);
    r->ended_at = sqlite3_column_int64(st, 23);
    r->executor_id = col_text(st, 24);
    if (!r->tenant_id || !r->agent_type || !r->agent_version || !r->request_text) {
        session_row_free(r);
        return AH_E_NOMEM;
    }
    *ret = r;
    return 0;
}

/* D13: every transition is a status event, creation included: seq 1 of every session is
 * {"type":"status","status":"queued"}, written in the creating transaction so nothing can be
 * numbered before it. */
static int insert_queued_event(struct conn *c, const char *tenant, const char *id, int64_t now) {
    char ts[TIME_RFC3339_LEN + 1];
    time_format(now, ts);
    json_t *e = json_pack("{s:s, s:i, s:s, s:s, s:s}", "type", "status", "seq", 1, "sessionId", id,
                          "ts", ts, "status", "queued");
    AH_AUTOFREE char *text = e ? json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(e);
    if (!text)
        return AH_E_NOMEM;
    sqlite3_stmt *st = sq_prepare(c, "INSERT INTO events (tenant_id, session_id, seq, type, ts,"
                                     " payload) VALUES (?1, ?2, 1, 'status', ?3, ?4)");
    if (!st)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_text(st, 4, text, -1, SQLITE_STATIC);
    int rc = sq_code(sqlite3_step(st));
    sq_done(c, st);
    if (rc < 0)
        return rc;
    st = sq_prepare(c, "UPDATE sessions SET last_seq = 1 WHERE tenant_id = ?1 AND id = ?2");
    if (!st)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    rc = sq_code(sqlite3_step(st));
    sq_done(c, st);
    return rc;
}

int sq_task_create(void *impl, const char *tenant, const char *task_id, const char *project_id,
                   const json_t *request, const struct session_new *sessions, size_t n,
                   int64_t now) {
    struct sq *s = impl;
    AH_AUTOFREE char *req_text = json_dumps(request, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!req_text)
        return AH_E_NOMEM;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    if (rc < 0)
        goto out;
    sqlite3_stmt *st = sq_prepare(c, "INSERT INTO tasks (tenant_id, id, project_id, request,"
                                     " created_at) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!st) {
        rc = AH_E_DB;
        goto out;
    }
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, task_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, project_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, req_text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    rc = sq_code(sqlite3_step(st));
    sq_done(c, st);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        st = sq_prepare(c, "INSERT INTO sessions (tenant_id, id, task_id, agent_index, instance,"
                           " project_id, agent_type, agent_version, status, created_at,"
                           " updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9,"
                           " ?9)");
        if (!st) {
            rc = AH_E_DB;
            break;
        }
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, sessions[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, task_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, sessions[i].agent_index);
        sqlite3_bind_int(st, 5, sessions[i].instance);
        sqlite3_bind_text(st, 6, project_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, sessions[i].agent_type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, sessions[i].agent_version, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 9, now);
        rc = sq_code(sqlite3_step(st));
        sq_done(c, st);
        if (rc == 0)
            rc = insert_queued_event(c, tenant, sessions[i].id, now);
    }
    if (rc == 0)
        rc = sq_commit_change(c);
out:
    sq_release(s, c); /* rolls back when the transaction is still open */
    return rc;
}

static int read_one_row(sqlite3_stmt *st, void *ret) {
    return read_row(st, ret);
}

int sq_session_get(void *impl, const char *tenant, const char *id, struct session_row **ret) {
    /* tenant NULL: the session of that id in whichever tenant (ids are ULIDs) */
    return sq_row_by_id(impl,
                        tenant ? "SELECT " SESSION_COLS " WHERE s.tenant_id = ?1 AND s.id = ?2"
                               : "SELECT " SESSION_COLS " WHERE ?1 IS NULL AND s.id = ?2",
                        tenant, id, read_one_row, ret);
}

/* Collects every row of a prepared SELECT of SESSION_COLS. */
static int collect(sqlite3_stmt *st, struct session_row ***ret, size_t *ret_n) {
    struct session_row **rows = NULL;
    size_t n = 0, cap = 0;
    int step, rc = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct session_row **nr = realloc(rows, cap * sizeof(*rows));
            if (!nr) {
                rc = AH_E_NOMEM;
                break;
            }
            rows = nr;
        }
        if ((rc = read_row(st, &rows[n])) < 0)
            break;
        n++;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = sq_code(step);
    if (rc < 0) {
        session_rows_free(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    return 0;
}

#define LIST_WHERE                                                                                 \
    " WHERE s.tenant_id = ?1 AND (?2 IS NULL OR s.status = ?2)"                                    \
    " AND (?3 IS NULL OR s.agent_type = ?3) AND (?4 IS NULL OR s.project_id = ?4)"

static void bind_filter(sqlite3_stmt *st, const char *tenant, const struct session_filter *f) {
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    if (f->has_status)
        sqlite3_bind_text(st, 2, session_status_name(f->status), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, f->agent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, f->project_id, -1, SQLITE_STATIC);
}

int sq_session_list(void *impl, const char *tenant, const struct session_filter *f,
                    const struct page *pg, struct session_row ***ret, size_t *ret_n,
                    int64_t *ret_total) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = AH_E_DB;
    int64_t total = 0;
    /* One read transaction, so the count and the page agree. */
    if (sq_exec(c, "BEGIN") < 0)
        goto out;
    sqlite3_stmt *st = sq_prepare(c, "SELECT count(*) FROM sessions s" LIST_WHERE);
    if (!st)
        goto out;
    bind_filter(st, tenant, f);
    rc = sq_count(st, &total);
    sq_done(c, st);
    if (rc < 0)
        goto out;
    rc = AH_E_DB;
    st = sq_prepare(c, f->ascending
                           ? "SELECT " SESSION_COLS LIST_WHERE " ORDER BY s.id ASC LIMIT ?5 OFFSET ?6"
                           : "SELECT " SESSION_COLS LIST_WHERE
                             " ORDER BY s.id DESC LIMIT ?5 OFFSET ?6");
    if (!st)
        goto out;
    bind_filter(st, tenant, f);
    sqlite3_bind_int64(st, 5, pg->per_page);
    sqlite3_bind_int64(st, 6, page_offset(pg));
    rc = collect(st, ret, ret_n);
    sq_done(c, st);
    if (rc == 0)
        *ret_total = total;
out:
    if (rc == 0)
        sq_exec(c, "COMMIT"); /* a read: nothing to lose if it fails */
    sq_release(s, c); /* rolls back when the transaction is still open */
    return rc;
}

int sq_session_list_live(void *impl, struct session_row ***ret, size_t *ret_n) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    /* Server-wide on purpose: the scheduler and the restart check own every tenant's sessions.
     * Handlers never call this. */
    sqlite3_stmt *st = sq_prepare(c, "SELECT " SESSION_COLS
                                     " WHERE s.status NOT IN ('stopped', 'completed', 'failed',"
                                     " 'cancelled') ORDER BY s.id ASC");
    int rc = st ? collect(st, ret, ret_n) : AH_E_DB;
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

int sq_session_purge(void *impl, const char *tenant, const char *id) {
    return sq_change_by_id(impl, "DELETE FROM sessions WHERE tenant_id = ?1 AND id = ?2", tenant, id);
}

int sq_session_set_runtime(void *impl, const char *tenant, const char *id,
                           const struct session_runtime *rt) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(
        c, "UPDATE sessions SET"
           " workspace_provider = coalesce(?3, workspace_provider),"
           " workspace_path = coalesce(?4, workspace_path),"
           " recorder_pid = CASE WHEN ?5 < 0 THEN recorder_pid WHEN ?5 = 0 THEN NULL ELSE ?5 END,"
           " recorder_start = CASE WHEN ?6 < 0 THEN recorder_start WHEN ?6 = 0 THEN NULL"
           " ELSE ?6 END,"
           " recorder_token = coalesce(?7, recorder_token),"
           " executor_id = coalesce(?8, executor_id)"
           " WHERE tenant_id = ?1 AND id = ?2");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, rt->workspace_provider, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, rt->workspace_path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, rt->recorder_pid);
        sqlite3_bind_int64(st, 6, rt->recorder_start);
        sqlite3_bind_text(st, 7, rt->recorder_token, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, rt->executor_id, -1, SQLITE_STATIC);
        rc = sq_change_one(c, st);
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}
