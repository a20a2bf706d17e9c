/*
 * postgres_timeline.c — the timeline's tables on PostgreSQL (migration 004), the twin of
 * sqlite_timeline.c. Every statement is scoped by tenant_id.
 */
#include <string.h>

#include "postgres_internal.h"

/* Runs a SELECT and hands each row to read(r, i, row) in a new array of `size`-byte rows. */
static int collect(struct pgs *s, const char *sql, const struct pgs_args *a, size_t size,
                   int (*read)(const PGresult *, int, void *), void (*free_rows)(void *, size_t),
                   void **ret, size_t *ret_n) {
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = 0;
    PGresult *r = store_pg_run(c, sql, a, &rc);
    store_pg_release(s, c);
    if (!r)
        return rc;
    int n = PQntuples(r);
    char *rows = calloc(n ? (size_t)n : 1, size);
    if (!rows) {
        PQclear(r);
        return AH_E_NOMEM;
    }
    for (int i = 0; i < n && rc == 0; i++)
        rc = read(r, i, rows + (size_t)i * size);
    PQclear(r);
    if (rc < 0) {
        free_rows(rows, (size_t)n);
        return rc;
    }
    *ret = rows;
    *ret_n = (size_t)n;
    return 0;
}

/* ---- snapshots ------------------------------------------------------------------------------ */

#define SNAP_COLS "session_id, id, kind, label, description, provider, seq, ts, size_bytes"

static int read_snap(const PGresult *res, int i, void *out) {
    struct fs_snapshot_row *r = out;
    r->session_id = store_pg_text(res, i, 0);
    r->id = store_pg_text(res, i, 1);
    r->kind = store_pg_text(res, i, 2);
    r->label = store_pg_text(res, i, 3);
    r->description = store_pg_text(res, i, 4);
    r->provider = store_pg_text(res, i, 5);
    r->seq = store_pg_int(res, i, 6);
    r->ts = store_pg_int(res, i, 7);
    r->size_bytes = store_pg_int(res, i, 8);
    return r->session_id && r->id && r->kind && r->label && r->provider ? 0 : AH_E_NOMEM;
}

static void free_snaps(void *rows, size_t n) {
    fs_snapshot_rows_free(rows, n);
}

/* Runs an INSERT … SELECT … WHERE EXISTS (the session): no row inserted means no session. */
static int insert_for_session(struct pgs *s, const char *sql, const struct pgs_args *a) {
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

static int snap_add(void *impl, const char *tenant, const char *session_id,
                    const struct fs_snapshot_row *r) {
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, session_id);
    store_pg_arg_text(&a, r->id);
    store_pg_arg_text(&a, r->kind);
    store_pg_arg_text(&a, r->label);
    store_pg_arg_text(&a, r->description);
    store_pg_arg_text(&a, r->provider);
    store_pg_arg_int(&a, r->seq);
    store_pg_arg_int(&a, r->ts);
    store_pg_arg_int(&a, r->size_bytes);
    return insert_for_session(impl,
                              "INSERT INTO fs_snapshots (tenant_id, session_id, id, kind, label,"
                              " description, provider, seq, ts, size_bytes)"
                              " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE EXISTS"
                              " (SELECT 1 FROM sessions WHERE tenant_id = $1 AND id = $2)",
                              &a);
}

static int snap_list(void *impl, const char *tenant, const char *session_id, size_t limit,
                     struct fs_snapshot_row **ret, size_t *ret_n) {
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, session_id);
    store_pg_arg_int(&a, (int64_t)limit);
    return collect(impl,
                   "SELECT " SNAP_COLS " FROM fs_snapshots WHERE tenant_id = $1"
                   " AND session_id = $2 ORDER BY ts, id LIMIT $3",
                   &a, sizeof(**ret), read_snap, free_snaps, (void **)ret, ret_n);
}

static int read_one_snap(const PGresult *res, int i, void *ret) {
    struct fs_snapshot_row *r = calloc(1, sizeof(*r));
    if (!r)
        return AH_E_NOMEM;
    int rc = read_snap(res, i, r);
    if (rc < 0) {
        fs_snapshot_rows_free(r, 1);
        return rc;
    }
    *(struct fs_snapshot_row **)ret = r;
    return 0;
}

static int snap_find(void *impl, const char *tenant, const char *id,
                     struct fs_snapshot_row **ret) {
    return store_pg_row_by_id(impl, "SELECT " SNAP_COLS " FROM fs_snapshots WHERE tenant_id = $1"
                                    " AND id = $2 LIMIT 1",
                              tenant, id, read_one_snap, ret);
}

static int snap_delete(void *impl, const char *tenant, const char *session_id, const char *id) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, session_id);
    store_pg_arg_text(&a, id);
    int64_t rows = 0;
    int rc = store_pg_change_begin(c);
    if (rc == 0 &&
        (rc = store_pg_do(c,
                          "DELETE FROM fs_snapshots WHERE tenant_id = $1 AND session_id = $2"
                          " AND id = $3",
                          &a, &rows)) == 0 &&
        rows == 0)
        rc = AH_E_NOTFOUND;
    rc = store_pg_change_end(c, rc);
    store_pg_release(s, c);
    return rc;
}

/* ---- moments -------------------------------------------------------------------------------- */

static int read_moment(const PGresult *res, int i, void *out) {
    struct moment_row *r = out;
    r->session_id = store_pg_text(res, i, 0);
    r->id = store_pg_text(res, i, 1);
    r->label = store_pg_text(res, i, 2);
    r->description = store_pg_text(res, i, 3);
    r->type = store_pg_text(res, i, 4);
    r->seq = store_pg_int(res, i, 5);
    r->ts = store_pg_int(res, i, 6);
    return r->session_id && r->id && r->label && r->type ? 0 : AH_E_NOMEM;
}

static void free_moments(void *rows, size_t n) {
    moment_rows_free(rows, n);
}

static int moment_add(void *impl, const char *tenant, const char *session_id,
                      const struct moment_row *r) {
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, session_id);
    store_pg_arg_text(&a, r->id);
    store_pg_arg_text(&a, r->label);
    store_pg_arg_text(&a, r->description);
    store_pg_arg_text(&a, r->type);
    store_pg_arg_int(&a, r->seq);
    store_pg_arg_int(&a, r->ts);
    return insert_for_session(impl,
                              "INSERT INTO moments (tenant_id, session_id, id, label, description,"
                              " type, seq, ts) SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS"
                              " (SELECT 1 FROM sessions WHERE tenant_id = $1 AND id = $2)",
                              &a);
}

static int moment_list(void *impl, const char *tenant, const char *session_id, size_t limit,
                       struct moment_row **ret, size_t *ret_n) {
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, session_id);
    store_pg_arg_int(&a, (int64_t)limit);
    return collect(impl,
                   "SELECT session_id, id, label, description, type, seq, ts FROM moments"
                   " WHERE tenant_id = $1 AND session_id = $2 ORDER BY ts, id LIMIT $3",
                   &a, sizeof(**ret), read_moment, free_moments, (void **)ret, ret_n);
}

/* ---- branches ------------------------------------------------------------------------------- */

#define BRANCH_COLS                                                                                \
    "session_id, parent_session_id, fs_snapshot_id, name, injected_message_id, branch_seq,"        \
    " branch_ts, created_at"

static int read_branch(const PGresult *res, int i, void *out) {
    struct branch_row *r = out;
    r->session_id = store_pg_text(res, i, 0);
    r->parent_session_id = store_pg_text(res, i, 1);
    r->fs_snapshot_id = store_pg_text(res, i, 2);
    r->name = store_pg_text(res, i, 3);
    r->injected_message_id = store_pg_text(res, i, 4);
    r->branch_seq = store_pg_int(res, i, 5);
    r->branch_ts = store_pg_int(res, i, 6);
    r->created_at = store_pg_int(res, i, 7);
    return r->session_id && r->parent_session_id && r->fs_snapshot_id ? 0 : AH_E_NOMEM;
}

static void free_branches(void *rows, size_t n) {
    branch_rows_free(rows, n);
}

static int branch_create(void *impl, const char *tenant, const char *task_id,
                         const char *project_id, const json_t *request,
                         const struct session_new *sn, const struct branch_row *b, int64_t now) {
    struct pgs *s = impl;
    AH_AUTOFREE char *req_text = json_dumps(request, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char ts[TIME_RFC3339_LEN + 1];
    time_format(now, ts);
    json_t *e = json_pack("{s:s, s:I, s:s, s:s, s:s}", "type", "status", "seq",
                          (json_int_t)(b->branch_seq + 1), "sessionId", sn->id, "ts", ts,
                          "status", "queued");
    AH_AUTOFREE char *queued = e ? json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(e);
    if (!req_text || !queued)
        return AH_E_NOMEM;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = store_pg_exec(c, "BEGIN");
    if (rc == 0) { /* the parent is the tenant's and has the events to inherit; its row lock
                    * keeps the batching writer from numbering past us meanwhile */
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        store_pg_arg_text(&a, b->parent_session_id);
        PGresult *r = store_pg_run(c,
                                   "SELECT last_seq FROM sessions WHERE tenant_id = $1 AND id = $2"
                                   " FOR SHARE",
                                   &a, &rc);
        if (r) {
            rc = PQntuples(r) == 1 ? 0 : AH_E_NOTFOUND;
            if (rc == 0 && (b->branch_seq < 0 || b->branch_seq > store_pg_int(r, 0, 0)))
                rc = AH_E_INVAL;
            PQclear(r);
        }
    }
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
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        store_pg_arg_text(&a, sn->id);
        store_pg_arg_text(&a, task_id);
        store_pg_arg_int(&a, sn->agent_index);
        store_pg_arg_int(&a, sn->instance);
        store_pg_arg_text(&a, project_id);
        store_pg_arg_text(&a, sn->agent_type);
        store_pg_arg_text(&a, sn->agent_version);
        store_pg_arg_int(&a, b->branch_seq + 1);
        store_pg_arg_int(&a, now);
        char me[STORE_REPLICA_MAX + 1];
        store_pg_replica_of(s, me);
        store_pg_arg_text(&a, me); /* D46: the replica that took the branch runs it */
        rc = store_pg_do(c,
                         "INSERT INTO sessions (tenant_id, id, task_id, agent_index, instance,"
                         " project_id, agent_type, agent_version, status, last_seq, created_at,"
                         " updated_at, owner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued',"
                         " $9, $10, $10, $11)",
                         &a, NULL);
    }
    if (rc == 0) { /* the parent's history up to the branch point, as the branch's own */
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        store_pg_arg_text(&a, b->parent_session_id);
        store_pg_arg_text(&a, sn->id);
        store_pg_arg_int(&a, b->branch_seq);
        rc = store_pg_do(c,
                         "INSERT INTO events (tenant_id, session_id, seq, type, level, ts, payload)"
                         " SELECT tenant_id, $3, seq, type, level, ts, (payload::jsonb ||"
                         " jsonb_build_object('sessionId', $3::text, 'inherited', true))::text"
                         " FROM events WHERE tenant_id = $1 AND session_id = $2 AND seq <= $4",
                         &a, NULL);
    }
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        store_pg_arg_text(&a, sn->id);
        store_pg_arg_int(&a, b->branch_seq + 1);
        store_pg_arg_int(&a, now);
        store_pg_arg_text(&a, queued);
        rc = store_pg_do(c,
                         "INSERT INTO events (tenant_id, session_id, seq, type, ts, payload)"
                         " VALUES ($1, $2, $3, 'status', $4, $5)",
                         &a, NULL);
    }
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        store_pg_arg_text(&a, sn->id);
        store_pg_arg_text(&a, b->parent_session_id);
        store_pg_arg_text(&a, b->fs_snapshot_id);
        store_pg_arg_int(&a, b->branch_seq);
        store_pg_arg_int(&a, b->branch_ts);
        store_pg_arg_text(&a, b->name);
        store_pg_arg_text(&a, b->injected_message_id);
        store_pg_arg_int(&a, now);
        rc = store_pg_do(c,
                         "INSERT INTO session_branches (tenant_id, session_id, parent_session_id,"
                         " fs_snapshot_id, branch_seq, branch_ts, name, injected_message_id,"
                         " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                         &a, NULL);
    }
    if (rc == 0)
        rc = store_pg_commit_change(c);
    store_pg_release(s, c); /* rolls back when the transaction is still open */
    return rc;
}

static int branch_list(void *impl, const char *tenant, const char *parent_id,
                       struct branch_row **ret, size_t *ret_n) {
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, parent_id);
    return collect(impl,
                   "SELECT " BRANCH_COLS " FROM session_branches WHERE tenant_id = $1"
                   " AND parent_session_id = $2 ORDER BY created_at, session_id",
                   &a, sizeof(**ret), read_branch, free_branches, (void **)ret, ret_n);
}

static int read_one_branch(const PGresult *res, int i, void *ret) {
    struct branch_row *r = calloc(1, sizeof(*r));
    if (!r)
        return AH_E_NOMEM;
    int rc = read_branch(res, i, r);
    if (rc < 0) {
        branch_rows_free(r, 1);
        return rc;
    }
    *(struct branch_row **)ret = r;
    return 0;
}

static int branch_get(void *impl, const char *tenant, const char *session_id,
                      struct branch_row **ret) {
    return store_pg_row_by_id(impl, "SELECT " BRANCH_COLS " FROM session_branches"
                                    " WHERE tenant_id = $1 AND session_id = $2",
                              tenant, session_id, read_one_branch, ret);
}

const struct store_tl_ops store_pg_tl_ops = {
    .snap_add = snap_add,
    .snap_list = snap_list,
    .snap_find = snap_find,
    .snap_delete = snap_delete,
    .moment_add = moment_add,
    .moment_list = moment_list,
    .branch_create = branch_create,
    .branch_list = branch_list,
    .branch_get = branch_get,
};
