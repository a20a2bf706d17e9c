/*
 * postgres_sessions.c — tasks and sessions in PostgreSQL, the twin of sqlite_sessions.c (same
 * rows, same order, same errors). Every statement names tenant_id in its WHERE clause (or, for
 * the server-wide live list, documents why it does not). The row types and their *_free
 * functions are shared with the SQLite backend (sqlite_sessions.c).
 */
#include <string.h>

#include "postgres_internal.h"

#define SESSION_COLS                                                                               \
    "s.id, s.task_id, s.tenant_id, s.project_id, s.agent_index, s.instance, s.agent_type,"        \
    " s.agent_version, s.status, s.error, s.exit_code, s.workspace_provider, s.workspace_path,"   \
    " s.last_seq, s.recorder_rseq, s.recorder_pid, s.recorder_start, s.recorder_token,"           \
    " s.changes, t.request, s.created_at, s.updated_at, s.started_at, s.ended_at,"                \
    " s.executor_id"                                                                             \
    " FROM sessions s JOIN tasks t ON t.tenant_id = s.tenant_id AND t.id = s.task_id"

static int read_row(const PGresult *res, int i, struct session_row **ret) {
    struct session_row *r = calloc(1, sizeof(*r));
    if (!r)
        return AH_E_NOMEM;
    snprintf(r->id, sizeof(r->id), "%s", PQgetvalue(res, i, 0));
    snprintf(r->task_id, sizeof(r->task_id), "%s", PQgetvalue(res, i, 1));
    r->tenant_id = store_pg_text(res, i, 2);
    r->project_id = store_pg_text(res, i, 3);
    r->agent_index = (int)store_pg_int(res, i, 4);
    r->instance = (int)store_pg_int(res, i, 5);
    r->agent_type = store_pg_text(res, i, 6);
    r->agent_version = store_pg_text(res, i, 7);
    if (session_status_parse(PQgetvalue(res, i, 8), &r->status) < 0)
        r->status = SESSION_FAILED; /* a value we never write; show it as failed, not crash */
    r->error = store_pg_text(res, i, 9);
    r->has_exit_code = !PQgetisnull(res, i, 10);
    r->exit_code = (int)store_pg_int(res, i, 10);
    r->workspace_provider = store_pg_text(res, i, 11);
    r->workspace_path = store_pg_text(res, i, 12);
    r->last_seq = store_pg_int(res, i, 13);
    r->recorder_rseq = store_pg_int(res, i, 14);
    r->recorder_pid = store_pg_int(res, i, 15);
    r->recorder_start = store_pg_int(res, i, 16);
    r->recorder_token = store_pg_text(res, i, 17);
    r->changes = PQgetisnull(res, i, 18) ? NULL : json_loads(PQgetvalue(res, i, 18), 0, NULL);
    r->request_text = store_pg_text(res, i, 19);
    r->created_at = store_pg_int(res, i, 20);
    r->updated_at = store_pg_int(res, i, 21);
    r->started_at = store_pg_int(res, i, 22);
    r->ended_at = store_pg_int(res, i, 23);
    r->executor_id = store_pg_text(res, i, 24);
    if (!r->tenant_id || !r->agent_type || !r->agent_version || !r->request_text) {
        session_row_free(r);
        return AH_E_NOMEM;
    }
    *ret = r;
    return 0;
}

/* D13: seq 1 of every session is {"type":"status","status":"queued"}, written in the creating
 * transaction so nothing can be numbered before it (the session row starts at last_seq 1). */
static int insert_queued_event(struct pgs_conn *c, const char *tenant, const char *id,
                               int64_t now) {
    char ts[TIME_RFC3339_LEN + 1];
    time_format(now, ts);
    json_t *e = json_pack("{s:s, s:i, s:s, s:s, s:s}", "type", "status", "seq", 1, "sessionId", id,
                          "ts", ts, "status", "queued");
    AH_AUTOFREE char *text = e ? json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(e);
    if (!text)
        return AH_E_NOMEM;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, id);
    store_pg_arg_int(&a, now);
    store_pg_arg_text(&a, text);
    return store_pg_do(c,
                       "INSERT INTO events (tenant_id, session_id, seq, type, ts, payload)"
                       " VALUES ($1, $2, 1, 'status', $3, $4)",
                       &a, NULL);
}

int store_pg_task_create(void *impl, const char *tenant, const char *task_id,
                         const char *project_id, const json_t *request,
                         const struct session_new *sessions, size_t n, int64_t now) {
    struct pgs *s = impl;
    AH_AUTOFREE char *req_text = json_dumps(request, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!req_text)
        return AH_E_NOMEM;
    char me[STORE_REPLICA_MAX + 1];
    store_pg_replica_of(s, me);
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = store_pg_exec(c, "BEGIN");
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        store_pg_arg_text(&a, task_id);
        store_pg_arg_text(&a, project_id);
        store_pg_arg_text(&a, req_text);
        store_pg_arg_int(&a, now);
        rc = store_pg_do(c,
                         "INSERT INTO tasks (tenant_id, id, project_id, request, created_at)"
                         " VALUES ($1, $2, $3, $4::json, $5)",
                         &a, NULL);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        store_pg_arg_text(&a, sessions[i].id);
        store_pg_arg_text(&a, task_id);
        store_pg_arg_int(&a, sessions[i].agent_index);
        store_pg_arg_int(&a, sessions[i].instance);
        store_pg_arg_text(&a, project_id);
        store_pg_arg_text(&a, sessions[i].agent_type);
        store_pg_arg_text(&a, sessions[i].agent_version);
        store_pg_arg_int(&a, now);
        store_pg_arg_text(&a, me); /* D46: the replica that took the task runs it */
        rc = store_pg_do(c,
                         "INSERT INTO sessions (tenant_id, id, task_id, agent_index, instance,"
                         " project_id, agent_type, agent_version, status, last_seq, created_at,"
                         " updated_at, owner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', 1,"
                         " $9, $9, $10)",
                         &a, NULL);
        if (rc == 0)
            rc = insert_queued_event(c, tenant, sessions[i].id, now);
    }
    if (rc == 0)
        rc = store_pg_commit_change(c);
    store_pg_release(s, c); /* rolls back when the transaction is still open */
    return rc;
}

static int read_one_row(const PGresult *r, int row, void *ret) {
    return read_row(r, row, ret);
}

int store_pg_session_get(void *impl, const char *tenant, const char *id,
                         struct session_row **ret) {
    /* tenant NULL: the session of that id in whichever tenant (ids are ULIDs) */
    return store_pg_row_by_id(impl,
                              tenant ? "SELECT " SESSION_COLS " WHERE s.tenant_id = $1 AND s.id = $2"
                                     : "SELECT " SESSION_COLS " WHERE $1::text IS NULL AND s.id = $2",
                              tenant, id, read_one_row, ret);
}

/* Every row of a result of SESSION_COLS. */
static int collect(const PGresult *r, struct session_row ***ret, size_t *ret_n) {
    size_t n = (size_t)PQntuples(r);
    struct session_row **rows = calloc(n ? n : 1, sizeof(*rows));
    if (!rows)
        return AH_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = read_row(r, (int)i, &rows[i]);
        if (rc < 0) {
            session_rows_free(rows, i);
            return rc;
        }
    }
    *ret = rows;
    *ret_n = n;
    return 0;
}

#define LIST_WHERE                                                                                 \
    " WHERE s.tenant_id = $1 AND ($2::text IS NULL OR s.status = $2)"                              \
    " AND ($3::text IS NULL OR s.agent_type = $3) AND ($4::text IS NULL OR s.project_id = $4)"

static void bind_filter(struct pgs_args *a, const char *tenant, const struct session_filter *f) {
    store_pg_arg_text(a, tenant);
    store_pg_arg_text(a, f->has_status ? session_status_name(f->status) : NULL);
    store_pg_arg_text(a, f->agent);
    store_pg_arg_text(a, f->project_id);
}

int store_pg_session_list(void *impl, const char *tenant, const struct session_filter *f,
                          const struct page *pg, struct session_row ***ret, size_t *ret_n,
                          int64_t *ret_total) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int64_t total = 0;
    PGresult *r = NULL;
    /* One snapshot, so the count and the page agree. */
    int rc = store_pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (rc == 0) {
        struct pgs_args a = {0};
        bind_filter(&a, tenant, f);
        if ((r = store_pg_run(c, "SELECT count(*) FROM sessions s" LIST_WHERE, &a, &rc))) {
            total = store_pg_int(r, 0, 0);
            PQclear(r);
        }
    }
    if (rc == 0) {
        struct pgs_args a = {0};
        bind_filter(&a, tenant, f);
        store_pg_arg_int(&a, pg->per_page);
        store_pg_arg_int(&a, page_offset(pg));
        r = store_pg_run(c,
                         f->ascending ? "SELECT " SESSION_COLS LIST_WHERE
                                        " ORDER BY s.id ASC LIMIT $5 OFFSET $6"
                                      : "SELECT " SESSION_COLS LIST_WHERE
                                        " ORDER BY s.id DESC LIMIT $5 OFFSET $6",
                         &a, &rc);
        if (r) {
            rc = collect(r, ret, ret_n);
            PQclear(r);
        }
    }
    if (rc == 0) {
        store_pg_exec(c, "COMMIT"); /* a read: nothing to lose if it fails */
        *ret_total = total;
    }
    store_pg_release(s, c); /* rolls back when the transaction is still open */
    return rc;
}

int store_pg_session_list_live(void *impl, struct session_row ***ret, size_t *ret_n) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    /* Every tenant's on purpose: the scheduler and the restart check run them all. Handlers
     * never call this. Only this replica's (D46): another's are its to run. */
    char me[STORE_REPLICA_MAX + 1];
    store_pg_replica_of(s, me);
    struct pgs_args a = {0};
    store_pg_arg_text(&a, me);
    int rc = 0;
    PGresult *r = store_pg_run(c,
                               "SELECT " SESSION_COLS
                               " WHERE s.status NOT IN ('stopped', 'completed', 'failed',"
                               " 'cancelled') AND s.owner = $1 ORDER BY s.id ASC",
                               &a, &rc);
    if (r) {
        rc = collect(r, ret, ret_n);
        PQclear(r);
    }
    store_pg_release(s, c);
    return rc;
}

int store_pg_session_purge(void *impl, const char *tenant, const char *id) {
    /* One statement, so one transaction: the session and its events (which have no foreign key
     * to cascade through; see migrations-pg/001_init.sql). */
    return store_pg_change_by_id(impl,
                                 "WITH s AS (DELETE FROM sessions WHERE tenant_id = $1 AND id = $2"
                                 " RETURNING tenant_id, id), e AS (DELETE FROM events v USING s"
                                 " WHERE v.tenant_id = s.tenant_id AND v.session_id = s.id)"
                                 " SELECT 1 FROM s",
                                 tenant, id);
}

int store_pg_session_set_runtime(void *impl, const char *tenant, const char *id,
                                 const struct session_runtime *rt) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, id);
    store_pg_arg_text(&a, rt->workspace_provider);
    store_pg_arg_text(&a, rt->workspace_path);
    store_pg_arg_int(&a, rt->recorder_pid);
    store_pg_arg_int(&a, rt->recorder_start);
    store_pg_arg_text(&a, rt->recorder_token);
    store_pg_arg_text(&a, rt->executor_id);
    int64_t rows = 0;
    int rc = store_pg_do(
        c,
        "UPDATE sessions SET"
        " workspace_provider = coalesce($3::text, workspace_provider),"
        " workspace_path = coalesce($4::text, workspace_path),"
        " recorder_pid = CASE WHEN $5::bigint < 0 THEN recorder_pid WHEN $5 = 0 THEN NULL"
        " ELSE $5 END,"
        " recorder_start = CASE WHEN $6::bigint < 0 THEN recorder_start WHEN $6 = 0 THEN NULL"
        " ELSE $6 END,"
        " recorder_token = coalesce($7::text, recorder_token),"
        " executor_id = coalesce($8::text, executor_id)"
        " WHERE tenant_id = $1 AND id = $2",
        &a, &rows);
    store_pg_release(s, c);
    return rc == 0 && rows == 0 ? AH_E_NOTFOUND : rc;
}
