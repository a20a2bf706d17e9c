/*
 * postgres_auth.c — API keys and the audit log, the twin of sqlite_auth.c (same rules: keys are
 * found by id alone for authentication, listed and revoked per tenant unless the tenant is NULL;
 * the audit log is append-only but for the retention sweep; a key change and its audit record
 * commit together). The row types and their *_free functions live in store.c.
 */
#include <stdio.h>
#include <string.h>

#include "postgres_internal.h"

#define KEY_COLUMNS                                                                                \
    "id, tenant_id, project_id, role, name, salt, hash, impersonate, created_at, expires_at,"     \
    " last_used_at, revoked_at"

static int read_key(const PGresult *r, int i, struct apikey_row **ret) {
    struct apikey_row *k = calloc(1, sizeof(*k));
    if (!k)
        return AH_E_NOMEM;
    k->id = store_pg_text(r, i, 0);
    k->tenant_id = store_pg_text(r, i, 1);
    k->project_id = store_pg_text(r, i, 2);
    k->role = store_pg_text(r, i, 3);
    k->name = store_pg_text(r, i, 4);
    k->salt = store_pg_text(r, i, 5);
    k->hash = store_pg_text(r, i, 6);
    k->impersonate = strcmp(PQgetvalue(r, i, 7), "t") == 0;
    k->created_at = store_pg_int(r, i, 8);
    k->expires_at = store_pg_int(r, i, 9);
    k->last_used_at = store_pg_int(r, i, 10);
    k->revoked_at = store_pg_int(r, i, 11);
    if (!k->id || !k->tenant_id || !k->role || !k->salt || !k->hash ||
        (!PQgetisnull(r, i, 2) && !k->project_id) || (!PQgetisnull(r, i, 4) && !k->name)) {
        apikey_row_free(k);
        return AH_E_NOMEM;
    }
    *ret = k;
    return 0;
}

static void arg_ms(struct pgs_args *a, int64_t v) {
    if (v)
        store_pg_arg_int(a, v);
    else
        store_pg_arg_text(a, NULL);
}

static int audit_insert(struct pgs_conn *c, const struct audit_entry *e) {
    struct pgs_args a = {0};
    store_pg_arg_int(&a, e->ts ? e->ts : time_now_ms());
    store_pg_arg_text(&a, e->tenant);
    store_pg_arg_text(&a, e->actor);
    store_pg_arg_text(&a, e->credential_id);
    store_pg_arg_text(&a, e->action ? e->action : "unknown");
    store_pg_arg_text(&a, e->target);
    store_pg_arg_text(&a, e->request_id);
    store_pg_arg_text(&a, e->source);
    store_pg_arg_text(&a, e->outcome ? e->outcome : "success");
    arg_ms(&a, e->status);
    return store_pg_do(c,
                       "INSERT INTO audit_log (ts, tenant_id, actor, credential_id, action, target,"
                       " request_id, source, outcome, status)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                       &a, NULL);
}

/* ---- D37: the bound audit record commits with the change (store_audit_bind) ---------------- */

int store_pg_commit_change(struct pgs_conn *c) {
    struct audit_entry *a = store_audit_bound();
    int rc = a ? audit_insert(c, a) : 0;
    if (rc == 0)
        rc = store_pg_exec(c, "COMMIT");
    if (rc == 0 && a)
        a->written = true;
    return rc;
}

int store_pg_change_begin(struct pgs_conn *c) {
    return store_audit_bound() ? store_pg_exec(c, "BEGIN") : 0;
}

int store_pg_change_end(struct pgs_conn *c, int rc) {
    if (!c->db || PQtransactionStatus(c->db) == PQTRANS_IDLE)
        return rc; /* no record was bound: the statement committed by itself */
    if (rc == 0)
        rc = store_pg_commit_change(c);
    if (rc < 0)
        store_pg_exec(c, "ROLLBACK");
    return rc;
}

int store_pg_audit_ops(struct pgs_conn *c, const struct store_op *ops, size_t n) {
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (ops[i].result == 0 && ops[i].audit && !ops[i].audit->written)
            rc = audit_insert(c, ops[i].audit);
    return rc;
}

int store_pg_apikey_create(void *impl, const struct apikey_row *k,
                           const struct audit_entry *audit) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = store_pg_exec(c, "BEGIN");
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, k->id);
        store_pg_arg_text(&a, k->tenant_id);
        store_pg_arg_text(&a, k->project_id);
        store_pg_arg_text(&a, k->role);
        store_pg_arg_text(&a, k->name);
        store_pg_arg_text(&a, k->salt);
        store_pg_arg_text(&a, k->hash);
        store_pg_arg_bool(&a, k->impersonate);
        store_pg_arg_int(&a, k->created_at);
        arg_ms(&a, k->expires_at);
        rc = store_pg_do(c,
                         "INSERT INTO api_keys (" KEY_COLUMNS ") VALUES"
                         " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL)",
                         &a, NULL);
    }
    if (rc == 0 && audit)
        rc = audit_insert(c, audit);
    if (rc == 0)
        rc = store_pg_exec(c, "COMMIT");
    store_pg_release(s, c); /* rolls back when the transaction is still open */
    return rc;
}

static int read_one_key(const PGresult *r, int row, void *ret) {
    return read_key(r, row, ret);
}

int store_pg_apikey_get(void *impl, const char *id, struct apikey_row **ret) {
    /* the helper binds $1 and $2: the id goes in both and the query uses $2 only */
    return store_pg_row_by_id(impl,
                              "SELECT " KEY_COLUMNS " FROM api_keys"
                              " WHERE $1::text IS NOT NULL AND id = $2",
                              id, id, read_one_key, ret);
}

int store_pg_apikey_list(void *impl, const char *tenant, const struct page *pg,
                         struct apikey_row ***ret, size_t *ret_n, int64_t *ret_total) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int64_t total = 0;
    struct apikey_row **rows = NULL;
    size_t n = 0;
    PGresult *r = NULL;
    int rc = store_pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        if ((r = store_pg_run(c,
                              "SELECT count(*) FROM api_keys"
                              " WHERE $1::text IS NULL OR tenant_id = $1",
                              &a, &rc))) {
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
                         "SELECT " KEY_COLUMNS " FROM api_keys"
                         " WHERE $1::text IS NULL OR tenant_id = $1"
                         " ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
                         &a, &rc);
        if (r && !(rows = calloc((size_t)pg->per_page, sizeof(*rows))))
            rc = AH_E_NOMEM;
        for (int i = 0; r && rc == 0 && i < PQntuples(r) && (int64_t)n < pg->per_page; i++)
            if ((rc = read_key(r, i, &rows[n])) == 0)
                n++;
        PQclear(r);
    }
    if (rc == 0)
        rc = store_pg_exec(c, "COMMIT");
    store_pg_release(s, c);
    if (rc < 0) {
        apikey_rows_free(rows, n);
        return rc;
    }
    *ret = rows;
    *ret_n = n;
    *ret_total = total;
    return 0;
}

int store_pg_apikey_revoke(void *impl, const char *tenant, const char *id, int64_t now,
                           const struct audit_entry *audit) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = store_pg_exec(c, "BEGIN");
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        store_pg_arg_text(&a, id);
        store_pg_arg_int(&a, now);
        int64_t rows = 0;
        rc = store_pg_do(c,
                         "UPDATE api_keys SET revoked_at = $3"
                         " WHERE ($1::text IS NULL OR tenant_id = $1) AND id = $2"
                         " AND revoked_at IS NULL",
                         &a, &rows);
        if (rc == 0 && rows == 0)
            rc = AH_E_NOTFOUND;
    }
    if (rc == 0 && audit)
        rc = audit_insert(c, audit);
    if (rc == 0)
        rc = store_pg_exec(c, "COMMIT");
    store_pg_release(s, c);
    return rc;
}

int store_pg_apikey_touch(void *impl, const char *id, int64_t now) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, id);
    store_pg_arg_int(&a, now);
    int rc = store_pg_do(c, "UPDATE api_keys SET last_used_at = $2 WHERE id = $1", &a, NULL);
    store_pg_release(s, c);
    return rc;
}

int store_pg_apikey_count(void *impl, int64_t now, int64_t *ret) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_int(&a, now);
    int rc = 0;
    PGresult *r = store_pg_run(c,
                               "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"
                               " AND (expires_at IS NULL OR expires_at > $1)",
                               &a, &rc);
    if (r) {
        *ret = store_pg_int(r, 0, 0);
        PQclear(r);
    }
    store_pg_release(s, c);
    return rc;
}

int store_pg_apikey_ended(void *impl, int64_t since, int64_t now, char ***ret,
                          size_t *ret_n) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_int(&a, since);
    store_pg_arg_int(&a, now);
    store_pg_arg_int(&a, STORE_KEYS_ENDED_MAX);
    int rc = 0;
    PGresult *r = store_pg_run(c,
                               "SELECT id FROM api_keys WHERE revoked_at >= $1"
                               " OR (expires_at >= $1 AND expires_at <= $2) LIMIT $3",
                               &a, &rc);
    size_t n = r ? (size_t)PQntuples(r) : 0;
    char **ids = n ? calloc(n, sizeof(*ids)) : NULL;
    if (r && n && !ids)
        rc = AH_E_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (!(ids[i] = store_pg_text(r, (int)i, 0)))
            rc = AH_E_NOMEM;
    PQclear(r);
    store_pg_release(s, c);
    if (rc < 0) {
        for (size_t i = 0; ids && i < n; i++)
            free(ids[i]);
        free(ids);
        return rc;
    }
    *ret = ids;
    *ret_n = n;
    return 0;
}

int store_pg_audit_append(void *impl, const struct audit_entry *e) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = audit_insert(c, e);
    store_pg_release(s, c);
    return rc;
}

static void set_text(json_t *o, const char *name, const PGresult *r, int i, int col) {
    json_object_set_new(o, name,
                        PQgetisnull(r, i, col) ? json_null() : json_string(PQgetvalue(r, i, col)));
}

static json_t *audit_json(const PGresult *r, int i) {
    json_t *o = json_object();
    if (!o)
        return NULL;
    char ts[TIME_RFC3339_LEN + 1];
    time_format(store_pg_int(r, i, 1), ts);
    json_object_set_new(o, "id", json_integer(store_pg_int(r, i, 0)));
    json_object_set_new(o, "ts", json_string(ts));
    set_text(o, "tenantId", r, i, 2);
    set_text(o, "actor", r, i, 3);
    set_text(o, "credentialId", r, i, 4);
    set_text(o, "action", r, i, 5);
    set_text(o, "target", r, i, 6);
    set_text(o, "requestId", r, i, 7);
    set_text(o, "source", r, i, 8);
    set_text(o, "outcome", r, i, 9);
    json_object_set_new(o, "status",
                        PQgetisnull(r, i, 10) ? json_null() : json_integer(store_pg_int(r, i, 10)));
    if (json_object_size(o) != 11) {
        json_decref(o);
        return NULL;
    }
    return o;
}

#define AUDIT_WHERE                                                                                \
    " WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR action = $2)"           \
    " AND ($3::text IS NULL OR actor = $3) AND ($4::text IS NULL OR outcome = $4)"                 \
    " AND ($5::bigint = 0 OR ts >= $5) AND ($6::bigint = 0 OR ts < $6)"

static void audit_args(struct pgs_args *a, const char *tenant, const struct audit_filter *f) {
    store_pg_arg_text(a, tenant);
    store_pg_arg_text(a, f->action);
    store_pg_arg_text(a, f->actor);
    store_pg_arg_text(a, f->outcome);
    store_pg_arg_int(a, f->since);
    store_pg_arg_int(a, f->until);
}

int store_pg_audit_list(void *impl, const char *tenant, const struct audit_filter *f,
                        const struct page *pg, json_t **ret_items, int64_t *ret_total) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int64_t total = 0;
    json_t *items = json_array();
    PGresult *r = NULL;
    int rc = items ? store_pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                   : AH_E_NOMEM;
    if (rc == 0) {
        struct pgs_args a = {0};
        audit_args(&a, tenant, f);
        if ((r = store_pg_run(c, "SELECT count(*) FROM audit_log" AUDIT_WHERE, &a, &rc))) {
            total = store_pg_int(r, 0, 0);
            PQclear(r);
        }
    }
    if (rc == 0) {
        struct pgs_args a = {0};
        audit_args(&a, tenant, f);
        store_pg_arg_int(&a, pg->per_page);
        store_pg_arg_int(&a, page_offset(pg));
        r = store_pg_run(c,
                         "SELECT id, ts, tenant_id, actor, credential_id, action, target,"
                         " request_id, source, outcome, status FROM audit_log" AUDIT_WHERE
                         " ORDER BY id DESC LIMIT $7 OFFSET $8",
                         &a, &rc);
        for (int i = 0; r && rc == 0 && i < PQntuples(r); i++) {
            json_t *o = audit_json(r, i);
            if (!o || json_array_append_new(items, o) < 0)
                rc = AH_E_NOMEM;
        }
        PQclear(r);
    }
    if (rc == 0)
        rc = store_pg_exec(c, "COMMIT");
    store_pg_release(s, c);
    if (rc < 0) {
        json_decref(items);
        return rc;
    }
    *ret_items = items;
    *ret_total = total;
    return 0;
}

int store_pg_audit_prune(void *impl, int64_t before, int64_t *ret_deleted) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_int(&a, before);
    int64_t rows = 0;
    int rc = store_pg_do(c, "DELETE FROM audit_log WHERE ts < $1", &a, &rows);
    if (rc == 0 && ret_deleted)
        *ret_deleted = rows;
    store_pg_release(s, c);
    return rc;
}

/* ---- web sessions (OIDC sign-in, D36) ---------------------------------------------------------- */

#define WS_COLUMNS                                                                                 \
    "id, token_hash, status, nonce, verifier, return_to, subject, user_name, tenant_id, role,"    \
    " id_token, error, created_at, last_seen_at, expires_at, revoked_at"

static int read_websession(const PGresult *r, int i, struct websession_row **ret) {
    struct websession_row *w = calloc(1, sizeof(*w));
    if (!w)
        return AH_E_NOMEM;
    char **texts[] = {&w->id,        &w->token_hash, &w->status,    &w->nonce,
                      &w->verifier,  &w->return_to,  &w->subject,   &w->user_name,
                      &w->tenant_id, &w->role,       &w->id_token,  &w->error};
    for (int k = 0; k < 12; k++) {
        *texts[k] = store_pg_text(r, i, k);
        if (!*texts[k] && !PQgetisnull(r, i, k)) {
            websession_row_free(w);
            return AH_E_NOMEM;
        }
    }
    w->created_at = store_pg_int(r, i, 12);
    w->last_seen_at = store_pg_int(r, i, 13);
    w->expires_at = store_pg_int(r, i, 14);
    w->revoked_at = store_pg_int(r, i, 15);
    *ret = w;
    return 0;
}

static int read_one_websession(const PGresult *r, int i, void *ret) {
    return read_websession(r, i, ret);
}

int store_pg_websession_put(void *impl, const struct websession_row *r,
                            const struct audit_entry *audit) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = store_pg_exec(c, "BEGIN");
    if (rc == 0) {
        struct pgs_args a = {0};
        const char *texts[] = {r->id,        r->token_hash, r->status,    r->nonce,
                               r->verifier,  r->return_to,  r->subject,   r->user_name,
                               r->tenant_id, r->role,       r->id_token,  r->error};
        for (int i = 0; i < 12; i++)
            store_pg_arg_text(&a, texts[i]);
        store_pg_arg_int(&a, r->created_at);
        store_pg_arg_int(&a, r->last_seen_at);
        store_pg_arg_int(&a, r->expires_at);
        rc = store_pg_do(c,
                         "INSERT INTO web_sessions (" WS_COLUMNS ") VALUES ($1, $2, $3, $4, $5,"
                         " $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, NULL)",
                         &a, NULL);
    }
    if (rc == 0 && audit)
        rc = audit_insert(c, audit);
    if (rc == 0)
        rc = store_pg_exec(c, "COMMIT");
    store_pg_release(s, c);
    return rc;
}

int store_pg_websession_get(void *impl, const char *token_hash, struct websession_row **ret) {
    /* the helper binds $1 and $2: the hash goes in both and the query uses $2 only */
    return store_pg_row_by_id(impl,
                              "SELECT " WS_COLUMNS " FROM web_sessions"
                              " WHERE $1::text IS NOT NULL AND token_hash = $2",
                              token_hash, token_hash, read_one_websession, ret);
}

int store_pg_websession_take_login(void *impl, const char *token_hash, int64_t now,
                                   struct websession_row **ret) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct websession_row *w = NULL;
    int rc = store_pg_exec(c, "BEGIN");
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_int(&a, now);
        rc = store_pg_do(c, "DELETE FROM web_sessions WHERE expires_at <= $1", &a, NULL);
    }
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, token_hash);
        PGresult *r = store_pg_run(c,
                                   "DELETE FROM web_sessions WHERE token_hash = $1"
                                   " AND status = 'login' RETURNING " WS_COLUMNS,
                                   &a, &rc);
        if (r) {
            rc = PQntuples(r) > 0 ? read_websession(r, 0, &w) : AH_E_NOTFOUND;
            PQclear(r);
        }
    }
    if (rc == 0 || rc == AH_E_NOTFOUND) { /* the sweep stands either way */
        int crc = store_pg_exec(c, "COMMIT");
        rc = crc < 0 ? crc : rc;
    }
    store_pg_release(s, c);
    if (rc < 0) {
        websession_row_free(w);
        return rc;
    }
    *ret = w;
    return 0;
}

int store_pg_websession_finish(void *impl, const struct websession_row *r,
                               const struct audit_entry *audit) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = store_pg_exec(c, "BEGIN");
    if (rc == 0) {
        struct pgs_args a = {0};
        const char *texts[] = {r->id,        r->status, r->subject,  r->user_name,
                               r->tenant_id, r->role,   r->id_token, r->error};
        for (int i = 0; i < 8; i++)
            store_pg_arg_text(&a, texts[i]);
        store_pg_arg_int(&a, r->expires_at);
        int64_t rows = 0;
        rc = store_pg_do(c,
                         "UPDATE web_sessions SET status = $2, subject = $3, user_name = $4,"
                         " tenant_id = $5, role = $6, id_token = $7, error = $8, expires_at = $9,"
                         " nonce = NULL, verifier = NULL"
                         " WHERE id = $1 AND status = 'pending' AND revoked_at IS NULL",
                         &a, &rows);
        if (rc == 0 && rows == 0)
            rc = AH_E_NOTFOUND;
    }
    if (rc == 0 && audit)
        rc = audit_insert(c, audit);
    if (rc == 0)
        rc = store_pg_exec(c, "COMMIT");
    store_pg_release(s, c);
    return rc;
}

int store_pg_websession_touch(void *impl, const char *id, int64_t now) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, id);
    store_pg_arg_int(&a, now);
    int rc = store_pg_do(c,
                         "UPDATE web_sessions SET last_seen_at = $2"
                         " WHERE id = $1 AND revoked_at IS NULL",
                         &a, NULL);
    store_pg_release(s, c);
    return rc;
}

int store_pg_websession_revoke(void *impl, const char *id, int64_t now,
                               const struct audit_entry *audit) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = store_pg_exec(c, "BEGIN");
    if (rc == 0) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, id);
        store_pg_arg_int(&a, now);
        int64_t rows = 0;
        rc = store_pg_do(c,
                         "UPDATE web_sessions SET revoked_at = $2, id_token = NULL"
                         " WHERE id = $1 AND revoked_at IS NULL",
                         &a, &rows);
        if (rc == 0 && rows == 0)
            rc = AH_E_NOTFOUND;
    }
    if (rc == 0 && audit)
        rc = audit_insert(c, audit);
    if (rc == 0)
        rc = store_pg_exec(c, "COMMIT");
    store_pg_release(s, c);
    return rc;
}
