/*
 * postgres_idem.c — Idempotency-Key bookkeeping (D7), the twin of sqlite_idem.c. A key is claimed
 * (pending) by one INSERT … ON CONFLICT that also replaces a row older than the retention window,
 * so two concurrent requests with one key cannot both run, on one replica or several: the second
 * finds the first's row and gets it back as AH_E_EXISTS.
 *
 * A pending claim names its owner like on SQLite: "<boot id>:<pid>:<process start time>". A
 * claim whose owner ran on this machine (same boot id) and is gone was abandoned by a server
 * killed mid-request, and is taken over by the next request with the key (compare-and-swap on
 * the row as read, so two takers cannot both win). A claim made on another machine (another
 * replica) cannot be judged from here and is honoured until it expires.
 */
#include <stdio.h>
#include <string.h>

#include "postgres_internal.h"

/* True when the process that claimed a pending key is known to be gone; another machine's
 * claim (another replica) is not ours to judge. */
static bool owner_gone(const char *owner) {
    return owner && store_owner_check(owner) == STORE_OWNER_GONE;
}

static int read_existing(const PGresult *r, struct idem_row **ret) {
    struct idem_row *row = calloc(1, sizeof(*row));
    if (!row)
        return AH_E_NOMEM;
    row->request_hash = store_pg_text(r, 0, 0);
    row->done = strcmp(PQgetvalue(r, 0, 1), "done") == 0;
    row->status = (int)store_pg_int(r, 0, 2);
    row->content_type = store_pg_text(r, 0, 3);
    size_t len = 0;
    unsigned char *bytes = NULL;
    if (!PQgetisnull(r, 0, 4) &&
        !(bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 4), &len))) {
        idem_row_free(row);
        return AH_E_NOMEM;
    }
    row->body_len = bytes ? len : 0;
    row->body = malloc(row->body_len + 1);
    if (row->body) {
        if (row->body_len)
            memcpy(row->body, bytes, row->body_len);
        row->body[row->body_len] = '\0';
    }
    PQfreemem(bytes);
    row->created_at = store_pg_int(r, 0, 5);
    if (!row->request_hash || !row->body || (!PQgetisnull(r, 0, 3) && !row->content_type)) {
        idem_row_free(row);
        return AH_E_NOMEM;
    }
    *ret = row;
    return 0;
}

int store_pg_idem_begin(void *impl, const char *tenant, const char *key, const char *hash,
                        int64_t now, int64_t max_age_ms, struct idem_row **ret_existing) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = AH_E_UNAVAIL;
    /* A known key can change between the claim and the read (released, taken over): then the
     * claim is simply tried again; a third change in a row is not worth a fourth try. */
    for (int attempt = 0; attempt < 3; attempt++) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        store_pg_arg_text(&a, key);
        store_pg_arg_text(&a, hash);
        store_pg_arg_int(&a, now);
        store_pg_arg_int(&a, now - max_age_ms);
        store_pg_arg_text(&a, store_owner_self());
        int64_t claimed = 0;
        rc = store_pg_do(c,
                         "INSERT INTO idempotency_keys AS k (tenant_id, key, request_hash, state,"
                         " created_at, owner) VALUES ($1, $2, $3, 'pending', $4, $6)"
                         " ON CONFLICT (tenant_id, key) DO UPDATE SET"
                         " request_hash = excluded.request_hash, state = 'pending', status = NULL,"
                         " content_type = NULL, body = NULL, created_at = excluded.created_at,"
                         " owner = excluded.owner WHERE k.created_at <= $5::bigint",
                         &a, &claimed);
        if (rc < 0)
            break;
        if (claimed)
            goto claimed;
        struct pgs_args q = {0};
        store_pg_arg_text(&q, tenant);
        store_pg_arg_text(&q, key);
        PGresult *r = store_pg_run(c,
                                   "SELECT request_hash, state, status, content_type, body,"
                                   " created_at, owner FROM idempotency_keys"
                                   " WHERE tenant_id = $1 AND key = $2",
                                   &q, &rc);
        if (!r)
            break;
        if (PQntuples(r) != 1) { /* gone since the claim: claim again */
            PQclear(r);
            rc = AH_E_UNAVAIL;
            continue;
        }
        if (strcmp(PQgetvalue(r, 0, 1), "pending") == 0 &&
            owner_gone(PQgetisnull(r, 0, 6) ? NULL : PQgetvalue(r, 0, 6))) {
            /* abandoned by a crashed server: take it over, unless someone else just did */
            struct pgs_args t = {0};
            store_pg_arg_text(&t, tenant);
            store_pg_arg_text(&t, key);
            store_pg_arg_text(&t, hash);
            store_pg_arg_int(&t, now);
            store_pg_arg_text(&t, store_owner_self());
            store_pg_arg_text(&t, PQgetvalue(r, 0, 6));
            store_pg_arg_int(&t, store_pg_int(r, 0, 5));
            rc = store_pg_do(c,
                             "UPDATE idempotency_keys SET request_hash = $3, created_at = $4,"
                             " owner = $5 WHERE tenant_id = $1 AND key = $2 AND state = 'pending'"
                             " AND owner = $6 AND created_at = $7",
                             &t, &claimed);
            PQclear(r); /* after the UPDATE: $6 points into it */
            if (rc < 0)
                break;
            if (claimed)
                goto claimed;
            rc = AH_E_UNAVAIL;
            continue;
        }
        rc = read_existing(r, ret_existing);
        PQclear(r);
        if (rc == 0)
            rc = AH_E_EXISTS;
        break;
    }
    store_pg_release(s, c);
    return rc;

claimed:;
    /* Expired keys of every tenant go now and then: here, on a claim. */
    struct pgs_args g = {0};
    store_pg_arg_int(&g, now - max_age_ms);
    store_pg_do(c, "DELETE FROM idempotency_keys WHERE created_at < $1", &g, NULL);
    store_pg_release(s, c);
    test_crash_point("idempotency-claimed"); /* a kill -9 mid-request (issue 10 item 23) */
    return 0;
}

int store_pg_idem_finish(void *impl, const char *tenant, const char *key, int status,
                         const char *content_type, const char *body, size_t len) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, key);
    store_pg_arg_int(&a, status);
    store_pg_arg_text(&a, content_type);
    store_pg_arg_bytes(&a, body, len);
    int rc = store_pg_do(c,
                         "UPDATE idempotency_keys SET state = 'done', status = $3,"
                         " content_type = $4, body = $5::bytea"
                         " WHERE tenant_id = $1 AND key = $2",
                         &a, NULL);
    store_pg_release(s, c);
    return rc;
}

int store_pg_idem_release(void *impl, const char *tenant, const char *key) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, key);
    int rc = store_pg_do(c,
                         "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2"
                         " AND state = 'pending'",
                         &a, NULL);
    store_pg_release(s, c);
    return rc;
}
