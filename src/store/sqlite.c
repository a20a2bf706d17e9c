/*
 * sqlite.c — the embedded SQLite backend.
 *
 * Invariants:
 *  - Every connection runs in WAL mode with foreign keys on, synchronous=FULL (a commit is on
 *    disk before we acknowledge anything that depends on it) and a busy timeout.
 *  - Connections live in a fixed pool; a call takes one for its whole duration and gives it back,
 *    so no connection is ever used by two threads at once ("one connection per thread").
 *    ":memory:" databases are private to their connection, so they get a pool of one.
 *  - Statements are prepared once per connection (SQLITE_PREPARE_PERSISTENT) and cached by the
 *    address of their SQL text, which is always a string literal. All input is bound, never
 *    spliced into SQL.
 *  - Migrations are applied in one IMMEDIATE transaction at open; each applied file is recorded
 *    in schema_migrations, so a second open applies nothing. A database newer than this binary
 *    is refused rather than guessed at.
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "sqlite_internal.h"

#define BUSY_TIMEOUT_MS 10000

static int sq_error(sqlite3 *db, int rc, struct ah_problem *reterr, const char *what) {
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int code = (rc & 0xff) == SQLITE_NOMEM ? AH_E_NOMEM
               : (rc & 0xff) == SQLITE_BUSY ? AH_E_UNAVAIL
                                            : AH_E_DB;
    return problem_set(reterr, code, "%s: %s", what, msg);
}

/* mkdir -p of the directory holding `path`, mode 0700. */
static int make_parent_dirs(const char *path) {
    char dir[4096];
    if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
        return AH_E_TOOLARGE;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            return ah_err_from_errno(errno);
        *p = '/';
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return ah_err_from_errno(errno);
    return 0;
}

/* D28: the database and its WAL/SHM are the owner's alone. The daemons' umask makes new files
 * so; this also closes up a database an older version (or another tool) left readable. */
static void make_private(const char *path) {
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(*suffixes); i++) {
        char p[4200];
        snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077))
            chmod(p, st.st_mode & 0700);
    }
}

static int open_conn(const char *path, sqlite3 **ret, struct ah_problem *reterr) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             sq_fault_vfs());
    if (rc != SQLITE_OK) {
        int r = sq_error(db, rc, reterr, "cannot open the database");
        sqlite3_close_v2(db);
        return r;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    static const char pragmas[] = "PRAGMA journal_mode=WAL;"
                                  "PRAGMA synchronous=FULL;"
                                  "PRAGMA foreign_keys=ON;"
                                  "PRAGMA temp_store=MEMORY;";
    char *err = NULL;
    rc = sqlite3_exec(db, pragmas, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        problem_set(reterr, AH_E_DB, "cannot configure the database: %s",
                    err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        sqlite3_close_v2(db);
        return AH_E_DB;
    }
    *ret = db;
    return 0;
}

static int migration_number(const char *name) {
    int v = 0;
    for (const char *p = name; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (*p - '0');
    return v;
}

static int migrate(struct sq *s, struct ah_problem *reterr) {
    sqlite3 *db = s->conns[0].db;
    char *err = NULL;
    int rc = sqlite3_exec(db,
                          "CREATE TABLE IF NOT EXISTS schema_migrations ("
                          " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                          " applied_at INTEGER NOT NULL) STRICT;"
                          "BEGIN IMMEDIATE;",
                          NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        problem_set(reterr, AH_E_DB, "cannot start migrations: %s",
                    err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        return AH_E_DB;
    }
    int current = 0, known = 0, applied = 0;
    sqlite3_stmt *q = NULL;
    rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", -1, &q,
                            NULL);
    if (rc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        current = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    for (const struct embedded_file *m = store_migrations; m->name; m++)
        if (migration_number(m->name) > known)
            known = migration_number(m->name);
    if (current > known) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return problem_set(reterr, AH_E_DB,
                           "the database schema is version %d but this ah knows only up to %d; "
                           "use a newer ah",
                           current, known);
    }
    for (const struct embedded_file *m = store_migrations; m->name; m++) {
        int v = migration_number(m->name);
        /* Each migration not yet recorded is applied, not only those above the highest: work
         * lands out of order (005 before 004), and a database already at 005 must still get
         * 004 when it arrives. */
        bool done = false;
        rc = sqlite3_prepare_v2(db, "SELECT 1 FROM schema_migrations WHERE version = ?1", -1, &q,
                                NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int(q, 1, v);
            done = sqlite3_step(q) == SQLITE_ROW;
        }
        sqlite3_finalize(q);
        if (done)
            continue;
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, m->data, NULL, NULL, &err);
        if (rc == SQLITE_OK) {
            rc = sqlite3_prepare_v2(db,
                                    "INSERT INTO schema_migrations (version, name, applied_at)"
                                    " VALUES (?1, ?2, ?3)",
                                    -1, &q, NULL);
            if (rc == SQLITE_OK) {
                sqlite3_bind_int(q, 1, v);
                sqlite3_bind_text(q, 2, m->name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(q, 3, time_now_ms());
                rc = sqlite3_step(q) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
            }
            sqlite3_finalize(q);
        }
        if (rc != SQLITE_OK) {
            problem_set(reterr, AH_E_DB, "migration %s failed: %s", m->name,
                        err ? err : sqlite3_errmsg(db));
            sqlite3_free(err);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return AH_E_DB;
        }
        applied++;
        if (v > current)
            current = v;
    }
    rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        problem_set(reterr, AH_E_DB, "cannot commit migrations: %s",
                    err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return AH_E_DB;
    }
    s->version = current;
    s->applied_now = applied;
    return 0;
}

static void sq_close(void *impl) {
    struct sq *s = impl;
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        for (size_t k = 0; k < s->conns[i].n_cache; k++)
            sqlite3_finalize(s->conns[i].cache[k].stmt);
        sqlite3_close_v2(s->conns[i].db);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int store_sqlite_open(const char *path, void **ret_impl, struct ah_problem *reterr) {
    bool memory = strcmp(path, ":memory:") == 0;
    if (!memory) {
        int rc = make_parent_dirs(path);
        if (rc < 0)
            return problem_set(reterr, rc, "cannot create its directory (%s)", ah_strerror(rc));
    }
    struct sq *s = calloc(1, sizeof(*s));
    if (!s)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    size_t want = memory ? 1 : SQ_POOL_SIZE;
    for (; s->n < want; s->n++) {
        int rc = open_conn(path, &s->conns[s->n].db, reterr);
        if (rc < 0) {
            sq_close(s);
            return rc;
        }
        if (s->n == 0 && (rc = migrate(s, reterr)) < 0) {
            s->n++;
            sq_close(s);
            return rc;
        }
    }
    if (!memory)
        make_private(path);
    *ret_impl = s;
    return 0;
}

/* ---- connection pool and statement cache ----------------------------------------------------- */

struct conn *sq_acquire(struct sq *s) {
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (size_t i = 0; i < s->n; i++)
            if (!s->conns[i].in_use) {
                s->conns[i].in_use = true;
                pthread_mutex_unlock(&s->mu);
                return &s->conns[i];
            }
        pthread_cond_wait(&s->cv, &s->mu);
    }
}

void sq_release(struct sq *s, struct conn *c) {
    if (!c)
        return;
    if (!sqlite3_get_autocommit(c->db)) /* a caller bailed out mid-transaction */
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_lock(&s->mu);
    c->in_use = false;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

sqlite3_stmt *sq_prepare(struct conn *c, const char *sql) {
    for (size_t i = 0; i < c->n_cache; i++)
        if (c->cache[i].sql == sql) {
            sqlite3_reset(c->cache[i].stmt);
            sqlite3_clear_bindings(c->cache[i].stmt);
            return c->cache[i].stmt;
        }
    sqlite3_stmt *st = NULL;
    unsigned flags = c->n_cache < SQ_STMT_CACHE ? SQLITE_PREPARE_PERSISTENT : 0;
    if (sqlite3_prepare_v3(c->db, sql, -1, flags, &st, NULL) != SQLITE_OK)
        return NULL;
    if (c->n_cache < SQ_STMT_CACHE) {
        c->cache[c->n_cache].sql = sql;
        c->cache[c->n_cache].stmt = st;
        c->n_cache++;
    } else {
        c->uncached = st; /* rare: finalised by sq_done */
    }
    return st;
}

void sq_done(struct conn *c, sqlite3_stmt *st) {
    if (!st)
        return;
    if (st == c->uncached) {
        sqlite3_finalize(st);
        c->uncached = NULL;
    } else {
        sqlite3_reset(st);
    }
}

int sq_exec(struct conn *c, const char *sql) {
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sq_code(rc);
}

int sq_change_one(struct conn *c, sqlite3_stmt *st) {
    int rc = sq_code(sqlite3_step(st));
    return rc == 0 && sqlite3_changes(c->db) == 0 ? AH_E_NOTFOUND : rc;
}

int sq_change_by_id(struct sq *s, const char *sql, const char *tenant, const char *id) {
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, sql);
    int rc = st ? sq_change_begin(c) : AH_E_DB;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        rc = sq_change_one(c, st);
    }
    sq_done(c, st);
    rc = sq_change_end(c, rc);
    sq_release(s, c);
    return rc;
}

int sq_row_by_id_on(struct conn *c, const char *sql, const char *tenant, const char *id,
                    int (*read)(sqlite3_stmt *st, void *ret), void *ret) {
    sqlite3_stmt *st = sq_prepare(c, sql);
    int rc = AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        rc = step == SQLITE_ROW ? read(st, ret) : step == SQLITE_DONE ? AH_E_NOTFOUND
                                                                      : sq_code(step);
    }
    sq_done(c, st);
    return rc;
}

int sq_row_by_id(struct sq *s, const char *sql, const char *tenant, const char *id,
                 int (*read)(sqlite3_stmt *st, void *ret), void *ret) {
    struct conn *c = sq_acquire(s);
    int rc = sq_row_by_id_on(c, sql, tenant, id, read, ret);
    sq_release(s, c);
    return rc;
}

int sq_count(sqlite3_stmt *st, int64_t *ret) {
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW)
        return step == SQLITE_DONE ? AH_E_DB : sq_code(step);
    *ret = sqlite3_column_int64(st, 0);
    return 0;
}

int sq_code(int rc) {
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    case SQLITE_NOMEM:
        return AH_E_NOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return AH_E_UNAVAIL;
    case SQLITE_CONSTRAINT:
        return AH_E_EXISTS;
    case SQLITE_FULL: /* D50: the disk is full or failing; nothing was stored, retry later */
    case SQLITE_IOERR:
        return AH_E_STORAGE;
    default:
        return AH_E_DB;
    }
}

/* ---- ops ------------------------------------------------------------------------------------- */

static bool sq_ready(void *impl) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "SELECT 1");
    bool ok = st && sqlite3_step(st) == SQLITE_ROW;
    sq_done(c, st);
    sq_release(s, c);
    return ok;
}

/* D50: a real write (the header's user_version bit flips, nothing else uses it) to learn whether
 * the database takes writes again after a full disk or an I/O error. */
static int sq_probe_write(void *impl) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = rc == 0 ? sq_prepare(c, "PRAGMA user_version") : NULL;
    int v = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sq_done(c, st);
    if (rc == 0)
        rc = sq_exec(c, (v & 1) ? "PRAGMA user_version = 0" : "PRAGMA user_version = 1");
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    sq_release(s, c); /* rolls back what a failure left open */
    return rc;
}

static int sq_schema_version(void *impl, int *ret_version, int *ret_applied_now) {
    struct sq *s = impl;
    *ret_version = s->version;
    *ret_applied_now = s->applied_now;
    return 0;
}

const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .ready = sq_ready,
    .probe_write = sq_probe_write,
    .schema_version = sq_schema_version,
    .task_create = sq_task_create,
    .session_get = sq_session_get,
    .session_list = sq_session_list,
    .session_list_live = sq_session_list_live,
    .session_purge = sq_session_purge,
    .session_set_runtime = sq_session_set_runtime,
    .apply = sq_apply,
    .event_list = sq_event_list,
    .event_range = sq_event_range,
    .idem_begin = sq_idem_begin,
    .idem_finish = sq_idem_finish,
    .idem_release = sq_idem_release,
    .draft_create = sq_draft_create,
    .draft_update = sq_draft_update,
    .draft_get = sq_draft_get,
    .draft_delete = sq_draft_delete,
    .draft_list = sq_draft_list,
    .repo_list = sq_repo_list,
    .project_list = sq_project_list,
    .tl = &store_sqlite_tl_ops,
    .apikey_create = sq_apikey_create,
    .apikey_get = sq_apikey_get,
    .apikey_list = sq_apikey_list,
    .apikey_revoke = sq_apikey_revoke,
    .apikey_touch = sq_apikey_touch,
    .apikey_count = sq_apikey_count,
    .apikey_ended = sq_apikey_ended,
    .audit_append = sq_audit_append,
    .executor_put = sq_executor_put,
    .executor_seen = sq_executor_seen,
    .executor_drain = sq_executor_drain,
    .executor_delete = sq_executor_delete,
    .executor_list = sq_executor_list,
    .audit_list = sq_audit_list,
    .audit_prune = sq_audit_prune,
    .websession_put = sq_websession_put,
    .websession_get = sq_websession_get,
    .websession_take_login = sq_websession_take_login,
    .websession_finish = sq_websession_finish,
    .websession_touch = sq_websession_touch,
    .websession_revoke = sq_websession_revoke,
    .archive_tables = sq_archive_tables,
    .archive_read = sq_archive_read,
    .archive_count = sq_archive_count,
    .archive_write = sq_archive_write,
};
