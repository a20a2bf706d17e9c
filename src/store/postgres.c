/*
 * postgres.c — the PostgreSQL backend (libpq): for deployments that outgrow one machine.
 *
 * Invariants:
 *  - Connections live in a fixed pool of PGS_POOL_SIZE; a call takes one for its whole duration
 *    and gives it back, so no connection is used by two threads at once and no request or SSE
 *    subscriber ever gets a connection of its own. Connections are opened on first use and
 *    reopened when the server dropped them: a drop noticed while the connection was idle (the
 *    server restarted, or terminated it) reconnects before the call; one that happens during
 *    a call fails that call with AH_E_UNAVAIL (never retried: a write may have committed).
 *  - Statements are prepared once per connection (named "s<n>") and cached by the address of
 *    their SQL text, which is always a string literal. All input is bound, never spliced into
 *    SQL; parameters travel as text.
 *  - Migrations (src/store/migrations-pg, embedded) are applied in one transaction that first
 *    takes a transaction-scoped advisory lock, so replicas starting together apply them once:
 *    the second waits, then finds them recorded in schema_migrations. A database newer than this
 *    binary is refused rather than guessed at.
 *  - Each committed batch of events notifies channel PGS_CHANNEL with (session, last seq), from
 *    inside its transaction, so the notice is sent at commit and only then; other processes on
 *    the database learn of new events through store_watch (postgres_notify.c).
 *  - Durability is the server's: a COMMIT returns once PostgreSQL has made it durable (with its
 *    default synchronous_commit=on), which is what the batching writer acknowledges on.
 */
#include <assert.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "postgres_internal.h"

/* "ah_migr" — any constant works, as long as every ah uses the same one. */
#define MIGRATION_LOCK_KEY "7022068271237490"

/* ---- arguments --------------------------------------------------------------------------------- */

void store_pg_arg_text(struct pgs_args *a, const char *s) {
    assert(a->n < PGS_MAX_ARGS);
    a->v[a->n] = s;
    a->len[a->n] = 0;
    a->fmt[a->n] = 0;
    a->n++;
}

void store_pg_arg_int(struct pgs_args *a, int64_t v) {
    assert(a->n < PGS_MAX_ARGS);
    snprintf(a->num[a->n], sizeof(a->num[a->n]), "%lld", (long long)v);
    store_pg_arg_text(a, a->num[a->n]);
}

void store_pg_arg_bool(struct pgs_args *a, bool v) {
    store_pg_arg_text(a, v ? "t" : "f");
}

void store_pg_arg_bytes(struct pgs_args *a, const void *p, size_t len) {
    assert(a->n < PGS_MAX_ARGS);
    a->v[a->n] = p ? p : "";
    a->len[a->n] = (int)len;
    a->fmt[a->n] = 1; /* binary: bytea takes the bytes as they are */
    a->n++;
}

/* ---- errors ------------------------------------------------------------------------------------ */

int store_pg_code(const PGresult *r) {
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (r)
        log_msg(LOG_DEBUG, "postgres: %s", PQresultErrorMessage(r));
    if (!state || strlen(state) != 5)
        return AH_E_UNAVAIL; /* no SQLSTATE: the connection failed, not the statement */
    if (!strncmp(state, "23", 2)) /* integrity: unique, foreign key, check */
        return AH_E_EXISTS;
    if (!strncmp(state, "22", 2)) /* data exception: a value the column cannot hold */
        return AH_E_INVAL;
    if (!strcmp(state, "53100") || !strcmp(state, "58030")) /* disk full, I/O error (D50) */
        return AH_E_STORAGE;
    if (!strcmp(state, "57014")) /* statement timeout */
        return AH_E_TIMEOUT;
    /* serialization failure, deadlock, lock not available, resources, shutdown, connection */
    if (!strncmp(state, "40", 2) || !strncmp(state, "55", 2) || !strncmp(state, "53", 2) ||
        !strncmp(state, "57", 2) || !strncmp(state, "08", 2))
        return AH_E_UNAVAIL;
    return AH_E_DB;
}

/* ---- connections ------------------------------------------------------------------------------- */

/* The first line of libpq's message, which ends with a newline and may continue with hints. */
static void first_line(const char *msg, char *out, size_t size) {
    snprintf(out, size, "%s", msg && *msg ? msg : "unknown error");
    out[strcspn(out, "\n")] = '\0';
}

PGconn *store_pg_connect(const char *url, struct ah_problem *reterr) {
    /* Defaults first: what the URL itself says wins (expand_dbname). */
    const char *const keys[] = {"fallback_application_name", "connect_timeout", "dbname", NULL};
    const char *const vals[] = {"ah", "10", url, NULL};
    PGconn *db = PQconnectdbParams(keys, vals, 1);
    if (!db) {
        problem_set(reterr, AH_E_NOMEM, "out of memory");
        return NULL;
    }
    if (PQstatus(db) != CONNECTION_OK) {
        char msg[256];
        first_line(PQerrorMessage(db), msg, sizeof(msg));
        problem_set(reterr, AH_E_UNAVAIL, "cannot connect to PostgreSQL: %s", msg);
        PQfinish(db);
        return NULL;
    }
    return db;
}

/* An idle connection has nothing to say: when its socket is readable, the server has sent an
 * error and closed it (restarted, or pg_terminate_backend). Noticing that here reconnects before
 * the call, instead of failing the call that would have found out. */
static bool conn_alive(PGconn *db) {
    if (PQstatus(db) != CONNECTION_OK)
        return false;
    struct pollfd p = {.fd = PQsocket(db), .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return true;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) /* closed by the server */
        return false;
    return PQconsumeInput(db) && PQstatus(db) == CONNECTION_OK; /* a notice: still fine */
}

struct pgs_conn *store_pg_acquire(struct pgs *s) {
    pthread_mutex_lock(&s->mu);
    struct pgs_conn *c = NULL;
    for (;;) {
        for (size_t i = 0; !c && i < PGS_POOL_SIZE; i++) /* an open one first */
            if (!s->conns[i].in_use && s->conns[i].db)
                c = &s->conns[i];
        for (size_t i = 0; !c && i < PGS_POOL_SIZE; i++)
            if (!s->conns[i].in_use)
                c = &s->conns[i];
        if (c)
            break;
        pthread_cond_wait(&s->cv, &s->mu);
    }
    c->in_use = true;
    pthread_mutex_unlock(&s->mu);
    if (c->db && !conn_alive(c->db)) { /* dropped by the server: start afresh */
        PQfinish(c->db);
        c->db = NULL;
    }
    if (!c->db) {
        struct ah_problem p = {0};
        c->n_cache = 0; /* prepared statements die with their connection */
        if (!(c->db = store_pg_connect(s->url, &p))) {
            log_msg(LOG_DEBUG, "postgres: %s", p.detail);
            problem_clear(&p);
            store_pg_release(s, c);
            return NULL;
        }
        problem_clear(&p);
    }
    return c;
}

void store_pg_release(struct pgs *s, struct pgs_conn *c) {
    if (!c)
        return;
    if (c->db && PQtransactionStatus(c->db) != PQTRANS_IDLE) { /* bailed out mid-transaction */
        PGresult *r = PQexec(c->db, "ROLLBACK");
        PQclear(r);
    }
    pthread_mutex_lock(&s->mu);
    c->in_use = false;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static bool result_ok(const PGresult *r) {
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

PGresult *store_pg_run(struct pgs_conn *c, const char *sql, const struct pgs_args *a,
                       int *ret_rc) {
    static const struct pgs_args none = {0};
    if (!a)
        a = &none;
    const char *name = NULL;
    for (size_t i = 0; i < c->n_cache; i++)
        if (c->cache[i].sql == sql) {
            name = c->cache[i].name;
            break;
        }
    if (!name && c->n_cache < PGS_STMT_CACHE) {
        char *slot = c->cache[c->n_cache].name;
        snprintf(slot, sizeof(c->cache[0].name), "s%zu", c->n_cache);
        PGresult *p = PQprepare(c->db, slot, sql, 0, NULL);
        if (!result_ok(p)) {
            *ret_rc = store_pg_code(p);
            PQclear(p);
            return NULL;
        }
        PQclear(p);
        c->cache[c->n_cache].sql = sql;
        c->n_cache++;
        name = slot;
    }
    PGresult *r = name ? PQexecPrepared(c->db, name, a->n, a->v, a->len, a->fmt, 0)
                       : PQexecParams(c->db, sql, a->n, NULL, a->v, a->len, a->fmt, 0);
    if (!result_ok(r)) {
        *ret_rc = store_pg_code(r);
        PQclear(r);
        return NULL;
    }
    return r;
}

int store_pg_do(struct pgs_conn *c, const char *sql, const struct pgs_args *a,
                int64_t *ret_rows) {
    int rc = 0;
    PGresult *r = store_pg_run(c, sql, a, &rc);
    if (!r)
        return rc;
    if (ret_rows)
        *ret_rows = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

int store_pg_exec(struct pgs_conn *c, const char *sql) {
    PGresult *r = PQexec(c->db, sql);
    int rc = result_ok(r) ? 0 : store_pg_code(r);
    PQclear(r);
    return rc;
}

int store_pg_change_by_id(struct pgs *s, const char *sql, const char *tenant, const char *id) {
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, id);
    int64_t rows = 0;
    int rc = store_pg_change_begin(c);
    if (rc == 0 && (rc = store_pg_do(c, sql, &a, &rows)) == 0 && rows == 0)
        rc = AH_E_NOTFOUND;
    rc = store_pg_change_end(c, rc);
    store_pg_release(s, c);
    return rc;
}

int store_pg_row_by_id_on(struct pgs_conn *c, const char *sql, const char *tenant,
                          const char *id, int (*read)(const PGresult *r, int row, void *ret),
                          void *ret) {
    struct pgs_args a = {0};
    store_pg_arg_text(&a, tenant);
    store_pg_arg_text(&a, id);
    int rc = 0;
    PGresult *r = store_pg_run(c, sql, &a, &rc);
    if (!r)
        return rc;
    rc = PQntuples(r) > 0 ? read(r, 0, ret) : AH_E_NOTFOUND;
    PQclear(r);
    return rc;
}

int store_pg_row_by_id(struct pgs *s, const char *sql, const char *tenant, const char *id,
                       int (*read)(const PGresult *r, int row, void *ret), void *ret) {
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = store_pg_row_by_id_on(c, sql, tenant, id, read, ret);
    store_pg_release(s, c);
    return rc;
}

char *store_pg_text(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

int64_t store_pg_int(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int store_pg_array_add(struct ah_buf *b, const char *s) {
    int rc = b->n ? ah_buf_append(b, ",", 1) : 0;
    if (rc < 0)
        return rc;
    if (!s)
        return ah_buf_append(b, "NULL", 4);
    if ((rc = ah_buf_append(b, "\"", 1)) < 0)
        return rc;
    for (const char *p = s; *p;) {
        size_t run = strcspn(p, "\"\\");
        if (run && (rc = ah_buf_append(b, p, run)) < 0)
            return rc;
        p += run;
        if (*p) {
            char esc[2] = {'\\', *p++};
            if ((rc = ah_buf_append(b, esc, 2)) < 0)
                return rc;
        }
    }
    return ah_buf_append(b, "\"", 1);
}

int store_pg_array_add_int(struct ah_buf *b, int64_t v) {
    return ah_buf_printf(b, b->n ? ",%lld" : "%lld", (long long)v);
}

/* ---- migrations -------------------------------------------------------------------------------- */

static int migration_number(const char *name) {
    int v = 0;
    for (const char *p = name; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (*p - '0');
    return v;
}

static int migrate_fail(PGconn *db, struct ah_problem *reterr, const char *what, PGresult *r) {
    char msg[256];
    first_line(r ? PQresultErrorMessage(r) : PQerrorMessage(db), msg, sizeof(msg));
    int code = store_pg_code(r);
    PQclear(r);
    PQclear(PQexec(db, "ROLLBACK"));
    return problem_set(reterr, code == AH_E_UNAVAIL ? AH_E_UNAVAIL : AH_E_DB, "%s: %s", what, msg);
}

static int migrate(struct pgs *s, PGconn *db, struct ah_problem *reterr) {
    PGresult *r = PQexec(db, "BEGIN");
    if (!result_ok(r))
        return migrate_fail(db, reterr, "cannot start migrations", r);
    PQclear(r);
    /* Held until COMMIT/ROLLBACK: a second replica waits here, then sees what we applied. */
    r = PQexec(db, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ")");
    if (!result_ok(r))
        return migrate_fail(db, reterr, "cannot lock for migrations", r);
    PQclear(r);
    r = PQexec(db, "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                   " name text NOT NULL, applied_at bigint NOT NULL)");
    if (!result_ok(r))
        return migrate_fail(db, reterr, "cannot start migrations", r);
    PQclear(r);
    r = PQexec(db, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    if (!result_ok(r) || PQntuples(r) != 1)
        return migrate_fail(db, reterr, "cannot read the schema version", r);
    int current = atoi(PQgetvalue(r, 0, 0)), known = 0, applied = 0;
    PQclear(r);
    for (const struct embedded_file *m = store_pg_migrations; m->name; m++)
        if (migration_number(m->name) > known)
            known = migration_number(m->name);
    if (current > known) {
        PQclear(PQexec(db, "ROLLBACK"));
        return problem_set(reterr, AH_E_DB,
                           "the database schema is version %d but this ah knows only up to %d; "
                           "use a newer ah",
                           current, known);
    }
    for (const struct embedded_file *m = store_pg_migrations; m->name; m++) {
        int v = migration_number(m->name);
        /* Each migration not yet recorded is applied, not only those above the highest: work
         * lands out of order (005 before 004), and a database already at 005 must still get
         * 004 when it arrives. */
        char vtext[16];
        snprintf(vtext, sizeof(vtext), "%d", v);
        const char *vp[] = {vtext};
        r = PQexecParams(db, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL, vp,
                         NULL, NULL, 0);
        if (!result_ok(r))
            return migrate_fail(db, reterr, "cannot read the schema version", r);
        bool done = PQntuples(r) > 0;
        PQclear(r);
        if (done)
            continue;
        char what[160];
        snprintf(what, sizeof(what), "migration %s failed", m->name);
        r = PQexec(db, m->data); /* a file of several statements: the simple protocol */
        if (!result_ok(r))
            return migrate_fail(db, reterr, what, r);
        PQclear(r);
        char version[16], now[24];
        snprintf(version, sizeof(version), "%d", v);
        snprintf(now, sizeof(now), "%lld", (long long)time_now_ms());
        const char *params[] = {version, m->name, now};
        r = PQexecParams(db,
                         "INSERT INTO schema_migrations (version, name, applied_at)"
                         " VALUES ($1, $2, $3)",
                         3, NULL, params, NULL, NULL, 0);
        if (!result_ok(r))
            return migrate_fail(db, reterr, what, r);
        PQclear(r);
        applied++;
        if (v > current)
            current = v;
    }
    r = PQexec(db, "COMMIT");
    if (!result_ok(r))
        return migrate_fail(db, reterr, "cannot commit migrations", r);
    PQclear(r);
    s->version = current;
    s->applied_now = applied;
    return 0;
}

/* ---- open and close ---------------------------------------------------------------------------- */

static void pgs_close(void *impl) {
    struct pgs *s = impl;
    if (!s)
        return;
    store_pg_watch_stop(s);
    for (size_t i = 0; i < PGS_POOL_SIZE; i++)
        if (s->conns[i].db)
            PQfinish(s->conns[i].db);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->url);
    free(s);
}

int store_pg_open(const char *url, void **ret_impl, struct ah_problem *reterr) {
    struct pgs *s = calloc(1, sizeof(*s));
    if (!s || !(s->url = strdup(url))) {
        free(s);
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    ulid_new(s->origin);
    s->watch.stop_fd = -1;
    /* The first connection proves the URL and applies the migrations; it stays in the pool. */
    if (!(s->conns[0].db = store_pg_connect(url, reterr))) {
        pgs_close(s);
        return reterr && reterr->code ? reterr->code : AH_E_UNAVAIL;
    }
    int rc = migrate(s, s->conns[0].db, reterr);
    if (rc < 0) {
        pgs_close(s);
        return rc;
    }
    *ret_impl = s;
    return 0;
}

/* ---- ops --------------------------------------------------------------------------------------- */

static bool pgs_ready(void *impl) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return false;
    int rc = 0;
    PGresult *r = store_pg_run(c, "SELECT 1", NULL, &rc);
    bool ok = r && PQntuples(r) == 1;
    PQclear(r);
    store_pg_release(s, c);
    return ok;
}

static int pgs_schema_version(void *impl, int *ret_version, int *ret_applied_now) {
    struct pgs *s = impl;
    *ret_version = s->version;
    *ret_applied_now = s->applied_now;
    return 0;
}

const struct store_ops store_pg_ops = {
    .name = "postgres",
    .close = pgs_close,
    .ready = pgs_ready,
    .schema_version = pgs_schema_version,
    .task_create = store_pg_task_create,
    .session_get = store_pg_session_get,
    .session_list = store_pg_session_list,
    .session_list_live = store_pg_session_list_live,
    .session_purge = store_pg_session_purge,
    .session_set_runtime = store_pg_session_set_runtime,
    .apply = store_pg_apply,
    .event_list = store_pg_event_list,
    .event_range = store_pg_event_range,
    .idem_begin = store_pg_idem_begin,
    .idem_finish = store_pg_idem_finish,
    .idem_release = store_pg_idem_release,
    .draft_create = store_pg_draft_create,
    .draft_update = store_pg_draft_update,
    .draft_get = store_pg_draft_get,
    .draft_delete = store_pg_draft_delete,
    .draft_list = store_pg_draft_list,
    .repo_list = store_pg_repo_list,
    .project_list = store_pg_project_list,
    .apikey_create = store_pg_apikey_create,
    .apikey_get = store_pg_apikey_get,
    .apikey_list = store_pg_apikey_list,
    .apikey_revoke = store_pg_apikey_revoke,
    .apikey_touch = store_pg_apikey_touch,
    .apikey_count = store_pg_apikey_count,
    .apikey_ended = store_pg_apikey_ended,
    .audit_append = store_pg_audit_append,
    .executor_put = store_pg_executor_put,
    .executor_seen = store_pg_executor_seen,
    .executor_drain = store_pg_executor_drain,
    .executor_delete = store_pg_executor_delete,
    .executor_list = store_pg_executor_list,
    .audit_list = store_pg_audit_list,
    .audit_prune = store_pg_audit_prune,
    .websession_put = store_pg_websession_put,
    .websession_get = store_pg_websession_get,
    .websession_take_login = store_pg_websession_take_login,
    .websession_finish = store_pg_websession_finish,
    .websession_touch = store_pg_websession_touch,
    .websession_revoke = store_pg_websession_revoke,
    .watch = store_pg_watch,
    .hears_changes = store_pg_hears_changes,
    .tl = &store_pg_tl_ops,
    .set_replica = store_pg_set_replica,
    .replica_beat = store_pg_replica_beat,
    .session_owner = store_pg_session_owner,
    .adopt_orphans = store_pg_adopt_orphans,
    .command_post = store_pg_command_post,
    .command_take = store_pg_command_take,
    .on_commands = store_pg_on_commands,
    .archive_tables = store_pg_archive_tables,
    .archive_read = store_pg_archive_read,
    .archive_count = store_pg_archive_count,
    .archive_write = store_pg_archive_write,
};
