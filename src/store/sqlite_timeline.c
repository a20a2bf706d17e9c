/*
 * sqlite_timeline.c — the timeline's tables on SQLite (migration 004): fs_snapshots, moments and
 * session_branches, and the creation of a branch session with its inherited events. Every
 * statement is scoped by tenant_id.
 */
#include <string.h>

#include "sqlite_internal.h"

static char *col_dup(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static void bind_opt(sqlite3_stmt *st, int i, const char *s) {
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* Collects rows of a bound SELECT through read(st, row) into a growing array of `size`-byte
 * rows; free_rows frees what was read on failure. */
static int collect(sqlite3_stmt *st, size_t size, int (*read)(sqlite3_stmt *, void *),
                   void (*free_rows)(void *, size_t), void **ret, size_t *ret_n) {
    char *rows = NULL;
    size_t n = 0, cap = 0;
    int step, rc = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char *nr = realloc(rows, cap * size);
            if (!nr) {
                rc = AH_E_NOMEM;
                break;
            }
            rows = nr;
        }
        memset(rows + n * size, 0, size);
        rc = read(st, rows + n * size);
        n++;
        if (rc < 0)
            break;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = sq_code(step);
    if (rc < 0) {
        free_rows(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    return 0;
}

/* ---- snapshots ------------------------------------------------------------------------------ */

#define SNAP_COLS "session_id, id, kind, label, description, provider, seq, ts, size_bytes"

static int read_snap(sqlite3_stmt *st, void *out) {
    struct fs_snapshot_row *r = out;
    r->session_id = col_dup(st, 0);
    r->id = col_dup(st, 1);
    r->kind = col_dup(st, 2);
    r->label = col_dup(st, 3);
    r->description = col_dup(st, 4);
    r->provider = col_dup(st, 5);
    r->seq = sqlite3_column_int64(st, 6);
    r->ts = sqlite3_column_int64(st, 7);
    r->size_bytes = sqlite3_column_int64(st, 8);
    return r->session_id && r->id && r->kind && r->label && r->provider ? 0 : AH_E_NOMEM;
}

static void free_snaps(void *rows, size_t n) {
    fs_snapshot_rows_free(rows, n);
}

static int snap_add(void *impl, const char *tenant, const char *session_id,
                    const struct fs_snapshot_row *r) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "INSERT INTO fs_snapshots (tenant_id, session_id, id, kind,"
                                     " label, description, provider, seq, ts, size_bytes)"
                                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    int rc = st ? sq_change_begin(c) : AH_E_DB;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, session_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, r->kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, r->label, -1, SQLITE_STATIC);
        bind_opt(st, 6, r->description);
        sqlite3_bind_text(st, 7, r->provider, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 8, r->seq);
        sqlite3_bind_int64(st, 9, r->ts);
        sqlite3_bind_int64(st, 10, r->size_bytes);
        int step = sqlite3_step(st);
        /* a foreign-key failure is a missing session, a primary-key one a second insert */
        rc = sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_FOREIGNKEY ? AH_E_NOTFOUND
                                                                              : sq_code(step);
    }
    sq_done(c, st);
    rc = sq_change_end(c, rc);
    sq_release(s, c);
    return rc;
}

static int snap_list(void *impl, const char *tenant, const char *session_id, size_t limit,
                     struct fs_snapshot_row **ret, size_t *ret_n) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "SELECT " SNAP_COLS " FROM fs_snapshots WHERE tenant_id = ?1"
                                     " AND session_id = ?2 ORDER BY ts, id LIMIT ?3");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, session_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (int64_t)limit);
        rc = collect(st, sizeof(**ret), read_snap, free_snaps, (void **)ret, ret_n);
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

static int read_one_snap(sqlite3_stmt *st, void *ret) {
    struct fs_snapshot_row *r = calloc(1, sizeof(*r));
    if (!r)
        return AH_E_NOMEM;
    int rc = read_snap(st, r);
    if (rc < 0) {
        fs_snapshot_rows_free(r, 1);
        return rc;
    }
    *(struct fs_snapshot_row **)ret = r;
    return 0;
}

static int snap_find(void *impl, const char *tenant, const char *id,
                     struct fs_snapshot_row **ret) {
    return sq_row_by_id(impl, "SELECT " SNAP_COLS " FROM fs_snapshots WHERE tenant_id = ?1"
                              " AND id = ?2 LIMIT 1",
                        tenant, id, read_one_snap, ret);
}

static int snap_delete(void *impl, const char *tenant, const char *session_id, const char *id) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "DELETE FROM fs_snapshots WHERE tenant_id = ?1"
                                     " AND session_id = ?2 AND id = ?3");
    int rc = st ? sq_change_begin(c) : AH_E_DB;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, session_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
        rc = sq_change_one(c, st);
    }
    sq_done(c, st);
    rc = sq_change_end(c, rc);
    sq_release(s, c);
    return rc;
}

/* ---- moments -------------------------------------------------------------------------------- */

static int read_moment(sqlite3_stmt *st, void *out) {
    struct moment_row *r = out;
    r->session_id = col_dup(st, 0);
    r->id = col_dup(st, 1);
    r->label = col_dup(st, 2);
    r->description = col_dup(st, 3);
    r->type = col_dup(st, 4);
    r->seq = sqlite3_column_int64(st, 5);
    r->ts = sqlite3_column_int64(st, 6);
    return r->session_id && r->id && r->label && r->type ? 0 : AH_E_NOMEM;
}

static void free_moments(void *rows, size_t n) {
    moment_rows_free(rows, n);
}

static int moment_add(void *impl, const char *tenant, const char *session_id,
                      const struct moment_row *r) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "INSERT INTO moments (tenant_id, session_id, id, label,"
                                     " description, type, seq, ts)"
                                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    int rc = st ? sq_change_begin(c) : AH_E_DB;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, session_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, r->label, -1, SQLITE_STATIC);
        bind_opt(st, 5, r->description);
        sqlite3_bind_text(st, 6, r->type, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, r->seq);
        sqlite3_bind_int64(st, 8, r->ts);
        int step = sqlite3_step(st);
        rc = sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_FOREIGNKEY ? AH_E_NOTFOUND
                                                                              : sq_code(step);
    }
    sq_done(c, st);
    rc = sq_change_end(c, rc);
    sq_release(s, c);
    return rc;
}

static int moment_list(void *impl, const char *tenant, const char *session_id, size_t limit,
                       struct moment_row **ret, size_t *ret_n) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "SELECT session_id, id, label, description, type, seq, ts"
                                     " FROM moments WHERE tenant_id = ?1 AND session_id = ?2"
                                     " ORDER BY ts, id LIMIT ?3");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, session_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (int64_t)limit);
        rc = collect(st, sizeof(**ret), read_moment, free_moments, (void **)ret, ret_n);
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

/* ---- branches ------------------------------------------------------------------------------- */

#define BRANCH_COLS                                                                                \
    "session_id, parent_session_id, fs_snapshot_id, name, injected_message_id, branch_seq,"        \
    " branch_ts, created_at"

static int read_branch(sqlite3_stmt *st, void *out) {
    struct branch_row *r = out;
    r->session_id = col_dup(st, 0);
    r->parent_session_id = col_dup(st, 1);
    r->fs_snapshot_id = col_dup(st, 2);
    r->name = col_dup(st, 3);
    r->injected_message_id = col_dup(st, 4);
    r->branch_seq = sqlite3_column_int64(st, 5);
    r->branch_ts = sqlite3_column_int64(st, 6);
    r->created_at = sqlite3_column_int64(st, 7);
    return r->session_id && r->parent_session_id && r->fs_snapshot_id ? 0 : AH_E_NOMEM;
}

static void free_branches(void *rows, size_t n) {
    branch_rows_free(rows, n);
}

/* Runs a bound statement that must succeed (an INSERT, an UPDATE). */
static int step_done(struct conn *c, sqlite3_stmt *st) {
    if (!st)
        return AH_E_DB;
    int rc = sq_code(sqlite3_step(st));
    sq_done(c, st);
    return rc;
}

static int branch_create(void *impl, const char *tenant, const char *task_id,
                         const char *project_id, const json_t *request,
                         const struct session_new *sn, const struct branch_row *b, int64_t now) {
    struct sq *s = impl;
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
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    sqlite3_stmt *st;
    int64_t have = 0;
    if (rc == 0) { /* the parent is the tenant's, and has the events to inherit */
        st = sq_prepare(c, "SELECT last_seq FROM sessions WHERE tenant_id = ?1 AND id = ?2");
        rc = AH_E_DB;
        if (st) {
            sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, b->parent_session_id, -1, SQLITE_STATIC);
            int step = sqlite3_step(st);
            rc = step == SQLITE_ROW ? 0 : step == SQLITE_DONE ? AH_E_NOTFOUND : sq_code(step);
            if (rc == 0)
                have = sqlite3_column_int64(st, 0);
        }
        sq_done(c, st);
        if (rc == 0 && (b->branch_seq < 0 || b->branch_seq > have))
            rc = AH_E_INVAL;
    }
    if (rc == 0) {
        st = sq_prepare(c, "INSERT INTO tasks (tenant_id, id, project_id, request, created_at)"
                           " VALUES (?1, ?2, ?3, ?4, ?5)");
        if (st) {
            sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, task_id, -1, SQLITE_STATIC);
            bind_opt(st, 3, project_id);
            sqlite3_bind_text(st, 4, req_text, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, now);
        }
        rc = step_done(c, st);
    }
    if (rc == 0) {
        st = sq_prepare(c, "INSERT INTO sessions (tenant_id, id, task_id, agent_index, instance,"
                           " project_id, agent_type, agent_version, status, last_seq, created_at,"
                           " updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9,"
                           " ?10, ?10)");
        if (st) {
            sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, sn->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, task_id, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 4, sn->agent_index);
            sqlite3_bind_int(st, 5, sn->instance);
            bind_opt(st, 6, project_id);
            sqlite3_bind_text(st, 7, sn->agent_type, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 8, sn->agent_version, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 9, b->branch_seq + 1);
            sqlite3_bind_int64(st, 10, now);
        }
        rc = step_done(c, st);
    }
    if (rc == 0) { /* the parent's history up to the branch point, as the branch's own */
        st = sq_prepare(c, "INSERT INTO events (tenant_id, session_id, seq, type, level, ts,"
                           " payload) SELECT tenant_id, ?3, seq, type, level, ts,"
                           " json_set(payload, '$.sessionId', ?3, '$.inherited', json('true'))"
                           " FROM events WHERE tenant_id = ?1 AND session_id = ?2 AND seq <= ?4");
        if (st) {
            sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, b->parent_session_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, sn->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, b->branch_seq);
        }
        rc = step_done(c, st);
    }
    if (rc == 0) {
        st = sq_prepare(c, "INSERT INTO events (tenant_id, session_id, seq, type, ts, payload)"
                           " VALUES (?1, ?2, ?3, 'status', ?4, ?5)");
        if (st) {
            sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, sn->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, b->branch_seq + 1);
            sqlite3_bind_int64(st, 4, now);
            sqlite3_bind_text(st, 5, queued, -1, SQLITE_STATIC);
        }
        rc = step_done(c, st);
    }
    if (rc == 0) {
        st = sq_prepare(c, "INSERT INTO session_branches (tenant_id, session_id,"
                           " parent_session_id, fs_snapshot_id, branch_seq, branch_ts, name,"
                           " injected_message_id, created_at)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
        if (st) {
            sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, sn->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, b->parent_session_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, b->fs_snapshot_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, b->branch_seq);
            sqlite3_bind_int64(st, 6, b->branch_ts);
            bind_opt(st, 7, b->name);
            bind_opt(st, 8, b->injected_message_id);
            sqlite3_bind_int64(st, 9, now);
        }
        rc = step_done(c, st);
    }
    if (rc == 0)
        rc = sq_commit_change(c);
    sq_release(s, c); /* rolls back when the transaction is still open */
    return rc;
}

static int branch_list(void *impl, const char *tenant, const char *parent_id,
                       struct branch_row **ret, size_t *ret_n) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "SELECT " BRANCH_COLS " FROM session_branches"
                                     " WHERE tenant_id = ?1 AND parent_session_id = ?2"
                                     " ORDER BY created_at, session_id");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, parent_id, -1, SQLITE_STATIC);
        rc = collect(st, sizeof(**ret), read_branch, free_branches, (void **)ret, ret_n);
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

static int read_one_branch(sqlite3_stmt *st, void *ret) {
    struct branch_row *r = calloc(1, sizeof(*r));
    if (!r)
        return AH_E_NOMEM;
    int rc = read_branch(st, r);
    if (rc < 0) {
        branch_rows_free(r, 1);
        return rc;
    }
    *(struct branch_row **)ret = r;
    return 0;
}

static int branch_get(void *impl, const char *tenant, const char *session_id,
                      struct branch_row **ret) {
    return sq_row_by_id(impl, "SELECT " BRANCH_COLS " FROM session_branches WHERE tenant_id = ?1"
                              " AND session_id = ?2",
                        tenant, session_id, read_one_branch, ret);
}

const struct store_tl_ops store_sqlite_tl_ops = {
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
