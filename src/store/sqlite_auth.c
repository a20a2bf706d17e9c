/*
 * sqlite_auth.c — API keys and the audit log (auth/; D22, D37).
 *
 * Keys are looked up by id alone (authentication comes before any tenant is known); listing and
 * revoking are scoped by tenant unless the caller passes NULL (the offline admin commands). The
 * audit log is only ever appended to, except by the retention sweep (audit_prune). A key's
 * creation or revocation and its audit record commit together.
 */
#include <string.h>

#include "sqlite_internal.h"

static char *col_text(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s) {
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_ms_or_null(sqlite3_stmt *st, int i, int64_t v) {
    if (v)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

#define KEY_COLUMNS                                                                                \
    "id, tenant_id, project_id, role, name, salt, hash, impersonate, created_at, expires_at,"     \
    " last_used_at, revoked_at"

static int read_key(sqlite3_stmt *st, struct apikey_row **ret) {
    struct apikey_row *k = calloc(1, sizeof(*k));
    if (!k)
        return AH_E_NOMEM;
    k->id = col_text(st, 0);
    k->tenant_id = col_text(st, 1);
    k->project_id = col_text(st, 2);
    k->role = col_text(st, 3);
    k->name = col_text(st, 4);
    k->salt = col_text(st, 5);
    k->hash = col_text(st, 6);
    k->impersonate = sqlite3_column_int(st, 7) != 0;
    k->created_at = sqlite3_column_int64(st, 8);
    k->expires_at = sqlite3_column_int64(st, 9);
    k->last_used_at = sqlite3_column_int64(st, 10);
    k->revoked_at = sqlite3_column_int64(st, 11);
    if (!k->id || !k->tenant_id || !k->role || !k->salt || !k->hash ||
        (sqlite3_column_type(st, 2) != SQLITE_NULL && !k->project_id) ||
        (sqlite3_column_type(st, 4) != SQLITE_NULL && !k->name)) {
        apikey_row_free(k);
        return AH_E_NOMEM;
    }
    *ret = k;
    return 0;
}

static int audit_insert(struct conn *c, const struct audit_entry *e) {
    sqlite3_stmt *st = sq_prepare(c, "INSERT INTO audit_log (ts, tenant_id, actor, credential_id,"
                                     " action, target, request_id, source, outcome, status)"
                                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_int64(st, 1, e->ts ? e->ts : time_now_ms());
        bind_text_or_null(st, 2, e->tenant);
        bind_text_or_null(st, 3, e->actor);
        bind_text_or_null(st, 4, e->credential_id);
        sqlite3_bind_text(st, 5, e->action ? e->action : "unknown", -1, SQLITE_STATIC);
        bind_text_or_null(st, 6, e->target);
        bind_text_or_null(st, 7, e->request_id);
        bind_text_or_null(st, 8, e->source);
        sqlite3_bind_text(st, 9, e->outcome ? e->outcome : "success", -1, SQLITE_STATIC);
        if (e->status)
            sqlite3_bind_int(st, 10, e->status);
        else
            sqlite3_bind_null(st, 10);
        rc = sq_code(sqlite3_step(st));
    }
    sq_done(c, st);
    return rc;
}

/* ---- D37: the bound audit record commits with the change (store_audit_bind) ---------------- */

int sq_commit_change(struct conn *c) {
    struct audit_entry *a = store_audit_bound();
    int rc = a ? audit_insert(c, a) : 0;
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    if (rc == 0 && a)
        a->written = true;
    return rc;
}

int sq_change_begin(struct conn *c) {
    return store_audit_bound() ? sq_exec(c, "BEGIN IMMEDIATE") : 0;
}

int sq_change_end(struct conn *c, int rc) {
    if (sqlite3_get_autocommit(c->db))
        return rc; /* no record was bound: the statement committed by itself */
    if (rc == 0)
        rc = sq_commit_change(c);
    if (rc < 0)
        sq_exec(c, "ROLLBACK");
    return rc;
}

int sq_audit_ops(struct conn *c, const struct store_op *ops, size_t n) {
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (ops[i].result == 0 && ops[i].audit && !ops[i].audit->written)
            rc = audit_insert(c, ops[i].audit);
    return rc;
}

int sq_apikey_create(void *impl, const struct apikey_row *k, const struct audit_entry *audit) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = rc == 0 ? sq_prepare(c, "INSERT INTO api_keys (" KEY_COLUMNS ") VALUES"
                                               " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL,"
                                               " NULL)")
                               : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, k->tenant_id, -1, SQLITE_STATIC);
        bind_text_or_null(st, 3, k->project_id);
        sqlite3_bind_text(st, 4, k->role, -1, SQLITE_STATIC);
        bind_text_or_null(st, 5, k->name);
        sqlite3_bind_text(st, 6, k->salt, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, k->hash, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 8, k->impersonate);
        sqlite3_bind_int64(st, 9, k->created_at);
        bind_ms_or_null(st, 10, k->expires_at);
        rc = sq_code(sqlite3_step(st));
    }
    sq_done(c, st);
    if (rc == 0 && audit)
        rc = audit_insert(c, audit);
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    sq_release(s, c);
    return rc;
}

static int read_one_key(sqlite3_stmt *st, void *ret) {
    return read_key(st, ret);
}

int sq_apikey_get(void *impl, const char *id, struct apikey_row **ret) {
    /* sq_row_by_id binds ?1 and ?2: the id goes in both and the query uses ?2 only */
    return sq_row_by_id(impl, "SELECT " KEY_COLUMNS " FROM api_keys WHERE ?1 IS NOT NULL AND id = ?2",
                        id, id, read_one_key, ret);
}

int sq_apikey_list(void *impl, const char *tenant, const struct page *pg,
                   struct apikey_row ***ret, size_t *ret_n, int64_t *ret_total) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN");
    int64_t total = 0;
    struct apikey_row **rows = NULL;
    size_t n = 0;
    sqlite3_stmt *st =
        rc == 0 ? sq_prepare(c, "SELECT count(*) FROM api_keys WHERE ?1 IS NULL OR tenant_id = ?1")
                : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    if (rc == 0) {
        bind_text_or_null(st, 1, tenant);
        rc = sq_count(st, &total);
    }
    sq_done(c, st);
    st = rc == 0 ? sq_prepare(c, "SELECT " KEY_COLUMNS " FROM api_keys"
                                 " WHERE ?1 IS NULL OR tenant_id = ?1"
                                 " ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3")
                 : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    if (rc == 0) {
        bind_text_or_null(st, 1, tenant);
        sqlite3_bind_int64(st, 2, pg->per_page);
        sqlite3_bind_int64(st, 3, page_offset(pg));
        rows = calloc((size_t)pg->per_page, sizeof(*rows));
        int step = SQLITE_DONE;
        while (rows && rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
            if ((rc = read_key(st, &rows[n])) == 0)
                n++;
        if (!rows)
            rc = AH_E_NOMEM;
        else if (rc == 0 && step != SQLITE_DONE)
            rc = sq_code(step);
    }
    sq_done(c, st);
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    sq_release(s, c);
    if (rc < 0) {
        apikey_rows_free(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    *ret_total = total;
    return 0;
}

int sq_apikey_revoke(void *impl, const char *tenant, const char *id, int64_t now,
                     const struct audit_entry *audit) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = rc == 0 ? sq_prepare(c, "UPDATE api_keys SET revoked_at = ?3"
                                               " WHERE (?1 IS NULL OR tenant_id = ?1) AND id = ?2"
                                               " AND revoked_at IS NULL")
                               : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    if (rc == 0) {
        bind_text_or_null(st, 1, tenant);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now);
        rc = sq_change_one(c, st);
    }
    sq_done(c, st);
    if (rc == 0 && audit)
        rc = audit_insert(c, audit);
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    sq_release(s, c);
    return rc;
}

int sq_apikey_touch(void *impl, const char *id, int64_t now) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        rc = sq_code(sqlite3_step(st));
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

int sq_apikey_count(void *impl, int64_t now, int64_t *ret) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"
                                     " AND (expires_at IS NULL OR expires_at > ?1)");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_int64(st, 1, now);
        rc = sq_count(st, ret);
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

int sq_apikey_ended(void *impl, int64_t since, int64_t now, char ***ret, size_t *ret_n) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "SELECT id FROM api_keys WHERE revoked_at >= ?1"
                                     " OR (expires_at >= ?1 AND expires_at <= ?2) LIMIT ?3");
    char **ids = NULL;
    size_t n = 0;
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_int64(st, 1, since);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_int(st, 3, STORE_KEYS_ENDED_MAX);
        rc = 0;
        int step;
        while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
            char **grown = realloc(ids, (n + 1) * sizeof(*ids));
            char *id = grown ? strdup((const char *)sqlite3_column_text(st, 0)) : NULL;
            if (grown)
                ids = grown;
            if (!id)
                rc = AH_E_NOMEM;
            else
                ids[n++] = id;
        }
        if (rc == 0 && step != SQLITE_DONE)
            rc = sq_code(step);
    }
    sq_done(c, st);
    sq_release(s, c);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            free(ids[i]);
        free(ids);
        return rc;
    }
    *ret = ids;
    *ret_n = n;
    return 0;
}

int sq_audit_append(void *impl, const struct audit_entry *e) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = audit_insert(c, e);
    sq_release(s, c);
    return rc;
}

static void set_text(json_t *o, const char *name, sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    json_object_set_new(o, name, t ? json_string((const char *)t) : json_null());
}

static json_t *audit_json(sqlite3_stmt *st) {
    json_t *o = json_object();
    if (!o)
        return NULL;
    char ts[TIME_RFC3339_LEN + 1];
    time_format(sqlite3_column_int64(st, 1), ts);
    json_object_set_new(o, "id", json_integer(sqlite3_column_int64(st, 0)));
    json_object_set_new(o, "ts", json_string(ts));
    set_text(o, "tenantId", st, 2);
    set_text(o, "actor", st, 3);
    set_text(o, "credentialId", st, 4);
    set_text(o, "action", st, 5);
    set_text(o, "target", st, 6);
    set_text(o, "requestId", st, 7);
    set_text(o, "source", st, 8);
    set_text(o, "outcome", st, 9);
    json_object_set_new(o, "status", sqlite3_column_type(st, 10) == SQLITE_NULL
                                         ? json_null()
                                         : json_integer(sqlite3_column_int(st, 10)));
    if (json_object_size(o) != 11) {
        json_decref(o);
        return NULL;
    }
    return o;
}

#define AUDIT_WHERE                                                                                \
    " WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR action = ?2)"                       \
    " AND (?3 IS NULL OR actor = ?3) AND (?4 IS NULL OR outcome = ?4)"                             \
    " AND (?5 = 0 OR ts >= ?5) AND (?6 = 0 OR ts < ?6)"

static void bind_audit_filter(sqlite3_stmt *st, const char *tenant, const struct audit_filter *f) {
    bind_text_or_null(st, 1, tenant);
    bind_text_or_null(st, 2, f->action);
    bind_text_or_null(st, 3, f->actor);
    bind_text_or_null(st, 4, f->outcome);
    sqlite3_bind_int64(st, 5, f->since);
    sqlite3_bind_int64(st, 6, f->until);
}

int sq_audit_list(void *impl, const char *tenant, const struct audit_filter *f,
                  const struct page *pg, json_t **ret_items, int64_t *ret_total) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN");
    int64_t total = 0;
    json_t *items = json_array();
    sqlite3_stmt *st =
        rc == 0 ? sq_prepare(c, "SELECT count(*) FROM audit_log" AUDIT_WHERE) : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    if (rc == 0) {
        bind_audit_filter(st, tenant, f);
        rc = sq_count(st, &total);
    }
    sq_done(c, st);
    st = rc == 0 ? sq_prepare(c, "SELECT id, ts, tenant_id, actor, credential_id, action, target,"
                                 " request_id, source, outcome, status FROM audit_log" AUDIT_WHERE
                                 " ORDER BY id DESC LIMIT ?7 OFFSET ?8")
                 : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    if (rc == 0) {
        bind_audit_filter(st, tenant, f);
        sqlite3_bind_int64(st, 7, pg->per_page);
        sqlite3_bind_int64(st, 8, page_offset(pg));
        int step = SQLITE_DONE;
        while (items && rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
            json_t *o = audit_json(st);
            if (!o || json_array_append_new(items, o) < 0)
                rc = AH_E_NOMEM;
        }
        if (!items)
            rc = AH_E_NOMEM;
        else if (rc == 0 && step != SQLITE_DONE)
            rc = sq_code(step);
    }
    sq_done(c, st);
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    sq_release(s, c);
    if (rc < 0) {
        json_decref(items);
        return rc;
    }
    *ret_items = items;
    *ret_total = total;
    return 0;
}

int sq_audit_prune(void *impl, int64_t before, int64_t *ret_deleted) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "DELETE FROM audit_log WHERE ts < ?1");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_int64(st, 1, before);
        rc = sq_code(sqlite3_step(st));
        if (rc == 0 && ret_deleted)
            *ret_deleted = sqlite3_changes(c->db);
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

/* ---- web sessions (OIDC sign-in, D36) ---------------------------------------------------------- */

#define WS_COLUMNS                                                                                 \
    "id, token_hash, status, nonce, verifier, return_to, subject, user_name, tenant_id, role,"    \
    " id_token, error, created_at, last_seen_at, expires_at, revoked_at"

static int read_websession(sqlite3_stmt *st, struct websession_row **ret) {
    struct websession_row *w = calloc(1, sizeof(*w));
    if (!w)
        return AH_E_NOMEM;
    char **texts[] = {&w->id,        &w->token_hash, &w->status,    &w->nonce,
                      &w->verifier,  &w->return_to,  &w->subject,   &w->user_name,
                      &w->tenant_id, &w->role,       &w->id_token,  &w->error};
    for (int i = 0; i < 12; i++) {
        *texts[i] = col_text(st, i);
        if (!*texts[i] && sqlite3_column_type(st, i) != SQLITE_NULL) {
            websession_row_free(w);
            return AH_E_NOMEM;
        }
    }
    w->created_at = sqlite3_column_int64(st, 12);
    w->last_seen_at = sqlite3_column_int64(st, 13);
    w->expires_at = sqlite3_column_int64(st, 14);
    w->revoked_at = sqlite3_column_int64(st, 15);
    *ret = w;
    return 0;
}

static int read_one_websession(sqlite3_stmt *st, void *ret) {
    return read_websession(st, ret);
}

int sq_websession_put(void *impl, const struct websession_row *r,
                      const struct audit_entry *audit) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = rc == 0 ? sq_prepare(c, "INSERT INTO web_sessions (" WS_COLUMNS ") VALUES"
                                               " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,"
                                               " ?12, ?13, ?14, ?15, NULL)")
                               : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    if (rc == 0) {
        const char *texts[] = {r->id,        r->token_hash, r->status,    r->nonce,
                               r->verifier,  r->return_to,  r->subject,   r->user_name,
                               r->tenant_id, r->role,       r->id_token,  r->error};
        for (int i = 0; i < 12; i++)
            bind_text_or_null(st, i + 1, texts[i]);
        sqlite3_bind_int64(st, 13, r->created_at);
        sqlite3_bind_int64(st, 14, r->last_seen_at);
        sqlite3_bind_int64(st, 15, r->expires_at);
        rc = sq_code(sqlite3_step(st));
    }
    sq_done(c, st);
    if (rc == 0 && audit)
        rc = audit_insert(c, audit);
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    sq_release(s, c);
    return rc;
}

int sq_websession_get(void *impl, const char *token_hash, struct websession_row **ret) {
    /* sq_row_by_id binds ?1 and ?2: the hash goes in both and the query uses ?2 only */
    return sq_row_by_id(impl,
                        "SELECT " WS_COLUMNS " FROM web_sessions"
                        " WHERE ?1 IS NOT NULL AND token_hash = ?2",
                        token_hash, token_hash, read_one_websession, ret);
}

int sq_websession_take_login(void *impl, const char *token_hash, int64_t now,
                             struct websession_row **ret) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = rc == 0 ? sq_prepare(c, "DELETE FROM web_sessions WHERE expires_at <= ?1")
                               : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, now);
        rc = sq_code(sqlite3_step(st));
    }
    sq_done(c, st);
    st = rc == 0 ? sq_prepare(c, "DELETE FROM web_sessions WHERE token_hash = ?1"
                                 " AND status = 'login' RETURNING " WS_COLUMNS)
                 : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    struct websession_row *w = NULL;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, token_hash, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        rc = step == SQLITE_ROW ? read_websession(st, &w)
             : step == SQLITE_DONE ? AH_E_NOTFOUND
                                   : sq_code(step);
        if (rc == 0) /* let the statement finish its deletion before the commit */
            while ((step = sqlite3_step(st)) == SQLITE_ROW)
                ;
    }
    sq_done(c, st);
    if (rc == 0 || rc == AH_E_NOTFOUND) { /* the sweep stands either way */
        int crc = sq_exec(c, "COMMIT");
        rc = crc < 0 ? crc : rc;
    }
    sq_release(s, c);
    if (rc < 0) {
        websession_row_free(w);
        return rc;
    }
    *ret = w;
    return 0;
}

int sq_websession_finish(void *impl, const struct websession_row *r,
                         const struct audit_entry *audit) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    sqlite3_stmt *st =
        rc == 0 ? sq_prepare(c, "UPDATE web_sessions SET status = ?2, subject = ?3, user_name = ?4,"
                                " tenant_id = ?5, role = ?6, id_token = ?7, error = ?8,"
                                " expires_at = ?9, nonce = NULL, verifier = NULL"
                                " WHERE id = ?1 AND status = 'pending' AND revoked_at IS NULL")
                : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    if (rc == 0) {
        const char *texts[] = {r->id,        r->status, r->subject,  r->user_name,
                               r->tenant_id, r->role,   r->id_token, r->error};
        for (int i = 0; i < 8; i++)
            bind_text_or_null(st, i + 1, texts[i]);
        sqlite3_bind_int64(st, 9, r->expires_at);
        rc = sq_code(sqlite3_step(st));
        if (rc == 0 && sqlite3_changes(c->db) == 0)
            rc = AH_E_NOTFOUND;
    }
    sq_done(c, st);
    if (rc == 0 && audit)
        rc = audit_insert(c, audit);
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    sq_release(s, c);
    return rc;
}

int sq_websession_touch(void *impl, const char *id, int64_t now) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "UPDATE web_sessions SET last_seen_at = ?2"
                                     " WHERE id = ?1 AND revoked_at IS NULL");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        rc = sq_code(sqlite3_step(st));
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

int sq_websession_revoke(void *impl, const char *id, int64_t now,
                         const struct audit_entry *audit) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = rc == 0 ? sq_prepare(c, "UPDATE web_sessions SET revoked_at = ?2,"
                                               " id_token = NULL"
                                               " WHERE id = ?1 AND revoked_at IS NULL")
                               : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        rc = sq_code(sqlite3_step(st));
        if (rc == 0 && sqlite3_changes(c->db) == 0)
            rc = AH_E_NOTFOUND;
    }
    sq_done(c, st);
    if (rc == 0 && audit)
        rc = audit_insert(c, audit);
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    sq_release(s, c);
    return rc;
}
