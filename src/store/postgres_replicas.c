/*
 * postgres_replicas.c — several access points on one database (D46): this replica's lease, the
 * owner of each live session, the adoption of a lost replica's sessions, and the commands one
 * replica leaves for another (a row plus a NOTIFY on PGS_COMMANDS; postgres_notify.c hears it).
 *
 * Every time is the database's clock (DB_NOW_MS), so replicas whose clocks disagree still agree
 * on whose lease ran out.
 */
#include <stdio.h>
#include <string.h>

#include "postgres_internal.h"

#define DB_NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
#define LIVE_STATUS "status NOT IN ('stopped', 'completed', 'failed', 'cancelled')"

void store_pg_set_replica(void *impl, const char *id) {
    struct pgs *s = impl;
    pthread_mutex_lock(&s->mu);
    snprintf(s->replica, sizeof(s->replica), "%s", id);
    pthread_mutex_unlock(&s->mu);
}

void store_pg_replica_of(struct pgs *s, char out[STORE_REPLICA_MAX + 1]) {
    pthread_mutex_lock(&s->mu);
    memcpy(out, s->replica, STORE_REPLICA_MAX + 1);
    pthread_mutex_unlock(&s->mu);
}

int store_pg_replica_beat(void *impl, int64_t lease_ms) {
    struct pgs *s = impl;
    char me[STORE_REPLICA_MAX + 1];
    store_pg_replica_of(s, me);
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, me);
    store_pg_arg_int(&a, lease_ms);
    int rc = store_pg_do(c,
                         "INSERT INTO replicas (id, lease_until, started_at) VALUES ($1, " DB_NOW_MS
                         " + $2, " DB_NOW_MS ") ON CONFLICT (id) DO UPDATE SET lease_until ="
                         " EXCLUDED.lease_until",
                         &a, NULL);
    /* Sessions from before replicas (no owner) belong to the first replica that beats: with
     * one access point per database then, that is the one that ran them. */
    struct pgs_args mine = {0};
    store_pg_arg_text(&mine, me);
    if (rc == 0)
        rc = store_pg_do(c, "UPDATE sessions SET owner = $1 WHERE owner IS NULL AND " LIVE_STATUS,
                         &mine, NULL);
    store_pg_release(s, c);
    return rc;
}

int store_pg_session_owner(void *impl, const char *tenant, const char *id,
                           char out[STORE_REPLICA_MAX + 1], bool *ret_alive) {
    struct pgs *s = impl;
    char me[STORE_REPLICA_MAX + 1];
    store_pg_replica_of(s, me);
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, id);
    int rc = 0;
    PGresult *r = store_pg_run(c,
                               "SELECT s.owner, r.lease_until >= " DB_NOW_MS
                               " FROM sessions s LEFT JOIN replicas r ON r.id = s.owner"
                               " WHERE s.tenant_id = $1 AND s.id = $2",
                               &a, &rc);
    if (r) {
        if (PQntuples(r) != 1) {
            rc = AH_E_NOTFOUND;
        } else {
            snprintf(out, STORE_REPLICA_MAX + 1, "%s", PQgetvalue(r, 0, 0));
            /* no owner (a row from before replicas) or a lost one: not alive, to be adopted */
            *ret_alive = strcmp(out, me) == 0 || strcmp(PQgetvalue(r, 0, 1), "t") == 0;
        }
        PQclear(r);
    }
    store_pg_release(s, c);
    return rc;
}

int store_pg_adopt_orphans(void *impl, char ***ret, size_t *ret_n) {
    struct pgs *s = impl;
    char me[STORE_REPLICA_MAX + 1];
    store_pg_replica_of(s, me);
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, me);
    int rc = store_pg_exec(c, "BEGIN");
    PGresult *r = NULL;
    /* SKIP LOCKED: two replicas sweeping at once each take a session at most once, and never
     * wait on each other. The lost owners' commands go with them: nobody will run them. */
    if (rc == 0)
        r = store_pg_run(c,
                         "WITH lost AS (SELECT s.tenant_id, s.id, s.owner FROM sessions s"
                         " LEFT JOIN replicas r ON r.id = s.owner WHERE s." LIVE_STATUS
                         " AND s.owner <> $1 AND (r.id IS NULL OR r.lease_until < " DB_NOW_MS ")"
                         " FOR UPDATE OF s SKIP LOCKED),"
                         " dropped AS (DELETE FROM commands m USING lost"
                         " WHERE m.owner = lost.owner AND m.session_id = lost.id)"
                         " UPDATE sessions s SET owner = $1 FROM lost"
                         " WHERE s.tenant_id = lost.tenant_id AND s.id = lost.id"
                         " RETURNING s.tenant_id, s.id",
                         &a, &rc);
    if (r) {
        size_t n = (size_t)PQntuples(r);
        char **out = calloc(n ? n : 1, sizeof(*out));
        for (size_t i = 0; out && i < n; i++)
            if (asprintf(&out[i], "%s\t%s", PQgetvalue(r, (int)i, 0), PQgetvalue(r, (int)i, 1)) <
                0)
                out[i] = NULL;
        bool ok = out != NULL;
        for (size_t i = 0; ok && i < n; i++)
            ok = out[i] != NULL;
        PQclear(r);
        if (ok && (rc = store_pg_exec(c, "COMMIT")) == 0) {
            *ret = out;
            *ret_n = n;
        } else {
            for (size_t i = 0; out && i < n; i++)
                free(out[i]);
            free(out);
            if (!ok)
                rc = AH_E_NOMEM;
        }
    }
    store_pg_release(s, c); /* rolls back when the transaction is still open */
    return rc;
}

int store_pg_command_post(void *impl, const char *owner, const char *tenant,
                          const char *session_id, const char *cmd) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, owner);
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, session_id);
    store_pg_arg_text(&a, cmd);
    /* one statement, so the row and its notice commit together */
    int rc = store_pg_do(c,
                         "WITH m AS (INSERT INTO commands (owner, tenant_id, session_id, body,"
                         " created_at) VALUES ($1, $2, $3, $4, " DB_NOW_MS ") RETURNING owner)"
                         " SELECT pg_notify('" PGS_COMMANDS "', m.owner) FROM m",
                         &a, NULL);
    store_pg_release(s, c);
    return rc;
}

int store_pg_command_take(void *impl, json_t **ret) {
    struct pgs *s = impl;
    char me[STORE_REPLICA_MAX + 1];
    store_pg_replica_of(s, me);
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, me);
    int rc = 0;
    PGresult *r = store_pg_run(c,
                               "WITH d AS (DELETE FROM commands WHERE owner = $1"
                               " RETURNING id, tenant_id, session_id, body)"
                               " SELECT tenant_id, session_id, body FROM d ORDER BY id",
                               &a, &rc);
    if (r) {
        json_t *out = json_array();
        for (int i = 0; out && i < PQntuples(r); i++) {
            json_t *cmd = json_loads(PQgetvalue(r, i, 2), 0, NULL);
            if (!cmd) /* only this file writes them; a row that is not JSON is skipped */
                continue;
            if (json_array_append_new(out, json_pack("{s:s, s:s, s:o}", "tenant",
                                                     PQgetvalue(r, i, 0), "session",
                                                     PQgetvalue(r, i, 1), "command", cmd)) < 0) {
                json_decref(out);
                out = NULL;
            }
        }
        PQclear(r);
        if (out)
            *ret = out;
        else
            rc = AH_E_NOMEM;
    }
    store_pg_release(s, c);
    return rc;
}

int store_pg_on_commands(void *impl, void (*fn)(void *arg), void *arg) {
    struct pgs *s = impl;
    pthread_mutex_lock(&s->mu);
    s->commands.fn = fn;
    s->commands.arg = arg;
    pthread_mutex_unlock(&s->mu);
    return 0;
}
