/*
 * sqlite_idem.c — Idempotency-Key bookkeeping (D7). A key is claimed (pending) in the same
 * statement that checks it, so two concurrent requests with one key cannot both run: the second
 * sees the first's pending row. Rows older than the retention window are replaced in place.
 *
 * A pending claim names its owner, the server process that made it (boot id, pid and the
 * process's start time, so a reused pid is not mistaken for it). A server killed mid-request
 * leaves its claims pending; once their owner is gone they are abandoned and the next request
 * with the key claims it anew, so a client's retry after a crash creates the resource instead of
 * answering 409 until the key expires (issue 10 item 23). A claim of a live process, this one
 * included, is honoured as before.
 */
#include <stdio.h>
#include <string.h>

#include "sqlite_internal.h"

void idem_row_free(struct idem_row *r) {
    if (!r)
        return;
    free(r->request_hash);
    free(r->content_type);
    free(r->body);
    free(r);
}

/* True when the process that claimed a pending key is gone. SQLite is one machine's database:
 * a claim from before a reboot, or one we cannot read, is gone too. */
static bool owner_gone(const char *owner) {
    if (!owner) /* claimed by a server older than owners: it was restarted since */
        return true;
    enum store_owner o = store_owner_check(owner);
    return o != STORE_OWNER_SELF && o != STORE_OWNER_ALIVE;
}

int sq_idem_begin(void *impl, const char *tenant, const char *key, const char *hash, int64_t now,
                  int64_t max_age_ms, struct idem_row **ret_existing) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = NULL;
    if (rc < 0)
        goto out;
    st = sq_prepare(c, "SELECT request_hash, state, status, content_type, body, created_at,"
                       " owner FROM idempotency_keys WHERE tenant_id = ?1 AND key = ?2");
    if (!st) {
        rc = AH_E_DB;
        goto out;
    }
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    bool abandoned = step == SQLITE_ROW &&
                     strcmp((const char *)sqlite3_column_text(st, 1), "pending") == 0 &&
                     owner_gone((const char *)sqlite3_column_text(st, 6));
    if (step == SQLITE_ROW && sqlite3_column_int64(st, 5) > now - max_age_ms && !abandoned) {
        struct idem_row *r = calloc(1, sizeof(*r));
        if (!r) {
            rc = AH_E_NOMEM;
            goto out;
        }
        r->request_hash = strdup((const char *)sqlite3_column_text(st, 0));
        r->done = strcmp((const char *)sqlite3_column_text(st, 1), "done") == 0;
        r->status = sqlite3_column_int(st, 2);
        const char *ct = (const char *)sqlite3_column_text(st, 3);
        r->content_type = ct ? strdup(ct) : NULL;
        r->body_len = (size_t)sqlite3_column_bytes(st, 4);
        r->body = malloc(r->body_len + 1);
        if (r->body) {
            if (r->body_len)
                memcpy(r->body, sqlite3_column_blob(st, 4), r->body_len);
            r->body[r->body_len] = '\0';
        }
        r->created_at = sqlite3_column_int64(st, 5);
        if (!r->request_hash || !r->body || (ct && !r->content_type)) {
            idem_row_free(r);
            rc = AH_E_NOMEM;
            goto out;
        }
        *ret_existing = r;
        rc = AH_E_EXISTS;
        goto out;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = sq_code(step);
        goto out;
    }
    sq_done(c, st);
    st = sq_prepare(c, "INSERT OR REPLACE INTO idempotency_keys (tenant_id, key, request_hash,"
                       " state, created_at, owner) VALUES (?1, ?2, ?3, 'pending', ?4, ?5)");
    if (!st) {
        rc = AH_E_DB;
        goto out;
    }
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_text(st, 5, store_owner_self(), -1, SQLITE_STATIC);
    rc = sq_code(sqlite3_step(st));
    if (rc == 0) {
        sq_done(c, st);
        st = NULL;
        /* Expired keys of every tenant go while we hold the write lock anyway. */
        sqlite3_stmt *gc = sq_prepare(c, "DELETE FROM idempotency_keys WHERE created_at < ?1");
        if (gc) {
            sqlite3_bind_int64(gc, 1, now - max_age_ms);
            sqlite3_step(gc);
            sq_done(c, gc);
        }
        rc = sq_exec(c, "COMMIT");
        if (rc == 0)
            test_crash_point("idempotency-claimed"); /* a kill -9 mid-request (item 23) */
    }
out:
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

int sq_idem_finish(void *impl, const char *tenant, const char *key, int status,
                   const char *content_type, const char *body, size_t len) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "UPDATE idempotency_keys SET state = 'done', status = ?3,"
                                     " content_type = ?4, body = ?5"
                                     " WHERE tenant_id = ?1 AND key = ?2");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, status);
        sqlite3_bind_text(st, 4, content_type, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 5, body ? body : "", (int)len, SQLITE_STATIC);
        rc = sq_code(sqlite3_step(st));
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}

int sq_idem_release(void *impl, const char *tenant, const char *key) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "DELETE FROM idempotency_keys WHERE tenant_id = ?1 AND"
                                     " key = ?2 AND state = 'pending'");
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        rc = sq_code(sqlite3_step(st));
    }
    sq_done(c, st);
    sq_release(s, c);
    return rc;
}
