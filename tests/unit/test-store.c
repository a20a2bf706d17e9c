/* test-store.c — the store conformance suite: the same cases against each backend.
 *
 *   test-store            SQLite (a file in a temp directory per case)
 *   test-store pg         PostgreSQL: a fresh database per case on the server named by
 *                         AH_TEST_PG_URL (tests/pg/pgserver.py starts one; ctest's unit/store-pg)
 *
 * What every backend must do alike: migrations applied once and recorded (also when two opens
 * race), tenant scoping, list order and totals, the batching writer's per-op results and gapless
 * seq under concurrent writers, drafts merged atomically, idempotency-key states. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <cmocka.h>

#include "../../src/store/store.h"

static bool use_pg;            /* the backend under test: PostgreSQL, or SQLite */
static const char *pg_base;    /* AH_TEST_PG_URL */
static char dir[256];          /* SQLite: this case's temp directory */
static char url[1024];         /* this case's database */
static char dbname[64];        /* PostgreSQL: this case's database */

/* ---- raw access to the case's database, in SQL both dialects understand ----------------------- */

/* `base` with its database name replaced by `name` (postgresql://user@host/DB?params). */
static void pg_url_for(const char *base, const char *name, char *out, size_t size) {
    const char *scheme = strstr(base, "://");
    assert_non_null(scheme);
    const char *slash = strchr(scheme + 3, '/');
    const char *query = strchr(scheme + 3, '?');
    size_t head = slash && (!query || slash < query) ? (size_t)(slash - base)
                                                    : query ? (size_t)(query - base)
                                                            : strlen(base);
    snprintf(out, size, "%.*s/%s%s", (int)head, base, name, query ? query : "");
}

static PGconn *pg_connect(const char *u) {
    PGconn *c = PQconnectdb(u);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to %s: %s", u, PQerrorMessage(c));
    return c;
}

static void pg_admin(const char *sql) {
    PGconn *c = pg_connect(pg_base);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

static void raw_exec(const char *sql) {
    if (use_pg) {
        PGconn *c = pg_connect(url);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
            fail_msg("%s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
    } else {
        sqlite3 *db;
        assert_int_equal(sqlite3_open(url, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
    }
}

static long long raw_int(const char *sql) {
    long long v = -1;
    if (use_pg) {
        PGconn *c = pg_connect(url);
        PGresult *r = PQexec(c, sql);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        PQfinish(c);
    } else {
        sqlite3 *db;
        sqlite3_stmt *q;
        assert_int_equal(sqlite3_open(url, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        v = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        sqlite3_close(db);
    }
    return v;
}

static int setup(void **state) {
    snprintf(dir, sizeof(dir), "/tmp/ah-test-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    if (use_pg) {
        static int n;
        snprintf(dbname, sizeof(dbname), "ah_case_%d_%d", (int)getpid(), ++n);
        char sql[128];
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
        pg_admin(sql);
        pg_url_for(pg_base, dbname, url, sizeof(url));
    } else {
        snprintf(url, sizeof(url), "%s/sub/dir/state.db", dir); /* parents are created */
    }
    return 0;
}

static int teardown(void **state) {
    if (use_pg) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
        pg_admin(sql);
    }
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

static struct store *open_store(void) {
    struct store *st = NULL;
    struct ah_problem p = {0};
    int rc = store_open(url, &st, &p);
    if (rc != 0)
        fail_msg("store_open: %s", p.detail);
    return st;
}

/* ---- fixtures ----------------------------------------------------------------------------------- */

static json_t *git_request(const char *repo_url) {
    return json_pack("{s:[{s:s,s:s}], s:{s:s,s:s}, s:{s:s}, s:[{s:s}]}", "prompt", "type", "text",
                     "text", "hi", "repo", "mode", "git", "url", repo_url, "runtime", "type",
                     "local", "agents", "type", "scripted");
}

/* A task with `n` sessions (agent `agent`), their ids in ids[]. */
static void make_task(struct store *st, const char *tenant, const char *project, const char *agent,
                      size_t n, char ids[][ULID_LEN + 1], int64_t now) {
    char task[ULID_LEN + 1];
    ulid_new(task);
    struct session_new ss[8] = {0};
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        ulid_new(ss[i].id);
        memcpy(ids[i], ss[i].id, sizeof(ss[i].id));
        ss[i].agent_type = agent;
        ss[i].agent_version = "1.0";
        ss[i].instance = (int)i;
    }
    json_t *req = git_request("https://example.com/a.git");
    assert_int_equal(store_task_create(st, tenant, task, project, req, ss, n, now), 0);
    json_decref(req);
}

static struct store_op ev(const char *tenant, const char *sid, const char *type, const char *msg,
                          json_t **hold) {
    *hold = json_pack("{s:s, s:s, s:s}", "type", type, "level", "info", "message", msg);
    return (struct store_op){.kind = STORE_OP_EVENT, .tenant = tenant, .session_id = sid,
                             .payload = *hold};
}

static struct store_op tr(const char *tenant, const char *sid, enum session_status to) {
    return (struct store_op){.kind = STORE_OP_TRANSITION, .tenant = tenant, .session_id = sid,
                             .to = to};
}

static void ops_clear(struct store_op *ops, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(ops[i].stored);
}

/* ---- opening and migrations ------------------------------------------------------------------ */

static void test_open_migrates_once(void **state) {
    struct store *st = open_store();
    assert_true(store_ready(st));
    int version = 0, applied = 0;
    store_schema_version(st, &version, &applied);
    assert_true(version >= 2);
    /* every migration recorded once; numbers may have gaps while work lands out of order */
    assert_int_equal(applied, raw_int("SELECT count(*) FROM schema_migrations"));
    assert_true(applied <= version);
    store_close(st);

    st = open_store();
    int v2 = 0, applied2 = -1;
    store_schema_version(st, &v2, &applied2);
    assert_int_equal(v2, version);
    assert_int_equal(applied2, 0); /* nothing re-applied */
    store_close(st);

    /* the database records each migration exactly once */
    assert_int_equal(raw_int("SELECT count(*) FROM schema_migrations"), applied);
    assert_int_equal(raw_int("SELECT count(DISTINCT version) FROM schema_migrations"), applied);
    assert_int_equal(raw_int("SELECT max(version) FROM schema_migrations"), version);
    if (!use_pg) { /* WAL mode, STRICT tables */
        sqlite3 *db;
        sqlite3_stmt *q;
        assert_int_equal(sqlite3_open(url, &db), SQLITE_OK);
        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
        sqlite3_finalize(q);
        const char *tables[] = {"tasks", "sessions", "events", "idempotency_keys", "drafts"};
        for (size_t i = 0; i < sizeof(tables) / sizeof(*tables); i++) {
            sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_schema WHERE type='table' AND name=?1",
                               -1, &q, NULL);
            sqlite3_bind_text(q, 1, tables[i], -1, SQLITE_STATIC);
            assert_int_equal(sqlite3_step(q), SQLITE_ROW);
            assert_non_null(strstr((const char *)sqlite3_column_text(q, 0), "STRICT"));
            assert_non_null(strstr((const char *)sqlite3_column_text(q, 0), "tenant_id"));
            sqlite3_finalize(q);
        }
        sqlite3_close(db);
    } else { /* every table's key starts with tenant_id */
        assert_int_equal(raw_int("SELECT count(*) FROM information_schema.key_column_usage"
                                 " WHERE table_name IN ('tasks', 'sessions', 'events',"
                                 " 'idempotency_keys', 'drafts') AND column_name = 'tenant_id'"
                                 " AND ordinal_position = 1 AND constraint_name LIKE '%pkey'"),
                         5);
    }
    /* a schema newer than this binary is refused, not guessed at */
    raw_exec("INSERT INTO schema_migrations VALUES (999, '999_future.sql', 0)");
    st = NULL;
    struct ah_problem p = {0};
    assert_int_equal(store_open(url, &st, &p), AH_E_DB);
    assert_null(st);
    assert_non_null(strstr(p.detail, "999"));
    problem_clear(&p);
}

struct opener {
    pthread_t t;
    int rc, applied;
};

static void *open_thread(void *arg) {
    struct opener *o = arg;
    struct store *st = NULL;
    struct ah_problem p = {0};
    o->rc = store_open(url, &st, &p);
    int v = 0;
    if (o->rc == 0)
        store_schema_version(st, &v, &o->applied);
    store_close(st);
    problem_clear(&p);
    return NULL;
}

/* Two replicas starting together on a fresh database: both open, the migrations apply once. */
static void test_concurrent_open(void **state) {
    struct opener o[4] = {0};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&o[i].t, NULL, open_thread, &o[i]), 0);
    int total_applied = 0;
    for (size_t i = 0; i < 4; i++) {
        pthread_join(o[i].t, NULL);
        assert_int_equal(o[i].rc, 0);
        total_applied += o[i].applied;
    }
    long long version = raw_int("SELECT max(version) FROM schema_migrations");
    /* each migration applied by exactly one */
    assert_int_equal(total_applied, raw_int("SELECT count(*) FROM schema_migrations"));
    assert_true(total_applied <= version);
}

static void test_bad_urls(void **state) {
    struct store *st = NULL;
    struct ah_problem p = {0};
    assert_int_equal(store_open(":memory:", &st, &p), 0);
    assert_true(store_ready(st));
    store_close(st);
    st = NULL;
    assert_int_equal(store_open("", &st, &p), AH_E_INVAL);
    problem_clear(&p);
    /* PostgreSQL that is not there: a clear failure that does not repeat the password */
    assert_true(store_open("postgresql://u:s3cr3t@127.0.0.1:1/x?connect_timeout=2", &st, &p) < 0);
    assert_null(st);
    assert_non_null(strstr(p.detail, "PostgreSQL"));
    assert_null(strstr(p.detail, "s3cr3t"));
    problem_clear(&p);
    char path[300];
    snprintf(path, sizeof(path), "%s/file", dir);
    FILE *f = fopen(path, "w");
    fputs("not a database at all, just text that is long enough to look like a header......", f);
    fclose(f);
    assert_true(store_open(path, &st, &p) < 0);
    assert_null(st);
    problem_clear(&p);
    assert_false(store_ready(NULL));
    store_close(NULL);
}

/* ---- tasks and sessions ------------------------------------------------------------------------ */

static void test_task_create_and_get(void **state) {
    struct store *st = open_store();
    char ids[2][ULID_LEN + 1];
    make_task(st, "t1", "p1", "scripted", 2, ids, 1000);
    struct session_row *r = NULL;
    assert_int_equal(store_session_get(st, "t1", ids[1], &r), 0);
    assert_string_equal(r->id, ids[1]);
    assert_string_equal(r->tenant_id, "t1");
    assert_string_equal(r->project_id, "p1");
    assert_string_equal(r->agent_type, "scripted");
    assert_string_equal(r->agent_version, "1.0");
    assert_int_equal(r->instance, 1);
    assert_int_equal(r->status, SESSION_QUEUED);
    assert_null(r->error);
    assert_false(r->has_exit_code);
    assert_null(r->workspace_path);
    assert_int_equal(r->last_seq, 1); /* the queued status event (D13) */
    assert_int_equal(r->created_at, 1000);
    assert_int_equal(r->started_at, 0);
    assert_null(r->changes);
    json_t *req = session_row_request(r);
    assert_non_null(req);
    assert_string_equal(json_string_value(json_object_get(json_object_get(req, "repo"), "url")),
                        "https://example.com/a.git");
    session_row_free(r);

    /* another tenant's session is not found; so is an unknown id */
    r = NULL;
    assert_int_equal(store_session_get(st, "t2", ids[1], &r), AH_E_NOTFOUND);
    assert_null(r);
    assert_int_equal(store_session_get(st, "t1", "01ARZ3NDEKTSV4RRFFQ69G5FAV", &r),
                     AH_E_NOTFOUND);

    /* seq 1 is the queued status event */
    char **texts = NULL;
    int64_t *seqs = NULL;
    size_t n = 0;
    assert_int_equal(store_event_range(st, "t1", ids[0], 0, 10, &texts, &seqs, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(seqs[0], 1);
    json_t *e = json_loads(texts[0], 0, NULL);
    assert_string_equal(json_string_value(json_object_get(e, "type")), "status");
    assert_string_equal(json_string_value(json_object_get(e, "status")), "queued");
    assert_string_equal(json_string_value(json_object_get(e, "sessionId")), ids[0]);
    json_decref(e);
    free(texts[0]);
    free(texts);
    free(seqs);

    /* a task id used twice is refused, and nothing of the second attempt is stored */
    char task[ULID_LEN + 1];
    ulid_new(task);
    struct session_new s1 = {.agent_type = "scripted", .agent_version = "1"};
    ulid_new(s1.id);
    req = git_request("x");
    assert_int_equal(store_task_create(st, "t1", task, NULL, req, &s1, 1, 5), 0);
    struct session_new s2 = s1;
    ulid_new(s2.id);
    assert_int_equal(store_task_create(st, "t1", task, NULL, req, &s2, 1, 6), AH_E_EXISTS);
    assert_int_equal(store_session_get(st, "t1", s2.id, &r), AH_E_NOTFOUND);
    json_decref(req);
    store_close(st);
}

static void test_session_list(void **state) {
    struct store *st = open_store();
    char a[3][ULID_LEN + 1], b[2][ULID_LEN + 1], other[1][ULID_LEN + 1];
    make_task(st, "t1", "p1", "claude", 3, a, 1000);
    make_task(st, "t1", NULL, "codex", 2, b, 2000);
    make_task(st, "t2", "p1", "claude", 1, other, 3000);
    /* b[0] runs */
    struct store_op ops[] = {tr("t1", b[0], SESSION_PROVISIONING), tr("t1", b[0], SESSION_RUNNING)};
    assert_int_equal(store_apply(st, ops, 2), 0);
    ops_clear(ops, 2);

    struct session_filter f = {0};
    struct page pg1 = {.page = 1, .per_page = 2};
    struct session_row **rows = NULL;
    size_t n = 0;
    int64_t total = 0;
    assert_int_equal(store_session_list(st, "t1", &f, &pg1, &rows, &n, &total), 0);
    assert_int_equal(total, 5);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0]->id, b[1]); /* newest first */
    assert_string_equal(rows[1]->id, b[0]);
    session_rows_free(rows, n);

    struct page pg3 = {.page = 3, .per_page = 2};
    assert_int_equal(store_session_list(st, "t1", &f, &pg3, &rows, &n, &total), 0);
    assert_int_equal(total, 5);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0]->id, a[0]);
    session_rows_free(rows, n);

    struct page past = {.page = 9, .per_page = 2}; /* past the end: empty, total still right */
    assert_int_equal(store_session_list(st, "t1", &f, &past, &rows, &n, &total), 0);
    assert_int_equal(n, 0);
    assert_int_equal(total, 5);
    session_rows_free(rows, n);

    struct page all = {.page = 1, .per_page = 100};
    f.ascending = true;
    assert_int_equal(store_session_list(st, "t1", &f, &all, &rows, &n, &total), 0);
    assert_int_equal(n, 5);
    assert_string_equal(rows[0]->id, a[0]);
    assert_string_equal(rows[4]->id, b[1]);
    session_rows_free(rows, n);

    f = (struct session_filter){.agent = "claude"};
    assert_int_equal(store_session_list(st, "t1", &f, &all, &rows, &n, &total), 0);
    assert_int_equal(total, 3);
    session_rows_free(rows, n);
    f = (struct session_filter){.project_id = "p1"};
    assert_int_equal(store_session_list(st, "t1", &f, &all, &rows, &n, &total), 0);
    assert_int_equal(total, 3);
    session_rows_free(rows, n);
    f = (struct session_filter){.has_status = true, .status = SESSION_RUNNING};
    assert_int_equal(store_session_list(st, "t1", &f, &all, &rows, &n, &total), 0);
    assert_int_equal(total, 1);
    assert_string_equal(rows[0]->id, b[0]);
    assert_true(rows[0]->started_at > 0);
    session_rows_free(rows, n);
    f = (struct session_filter){.has_status = true, .status = SESSION_RUNNING, .agent = "claude"};
    assert_int_equal(store_session_list(st, "t1", &f, &all, &rows, &n, &total), 0);
    assert_int_equal(total, 0);
    assert_int_equal(n, 0);
    session_rows_free(rows, n);

    /* the live list is server-wide, oldest first, without terminal sessions */
    struct store_op stop = tr("t1", a[0], SESSION_STOPPED);
    assert_int_equal(store_apply(st, &stop, 1), 0);
    assert_int_equal(stop.result, 0);
    free(stop.stored);
    assert_int_equal(store_session_list_live(st, &rows, &n), 0);
    assert_int_equal(n, 5);
    assert_string_equal(rows[0]->id, a[1]);
    assert_string_equal(rows[4]->id, other[0]);
    assert_string_equal(rows[4]->tenant_id, "t2");
    session_rows_free(rows, n);
    store_close(st);
}

static void test_purge_and_runtime(void **state) {
    struct store *st = open_store();
    char ids[2][ULID_LEN + 1];
    make_task(st, "t1", NULL, "scripted", 2, ids, 1000);
    json_t *hold;
    struct store_op op = ev("t1", ids[0], "log", "x", &hold);
    assert_int_equal(store_apply(st, &op, 1), 0);
    free(op.stored);
    json_decref(hold);

    struct session_runtime rt = {.workspace_provider = "copy", .workspace_path = "/w/1",
                                 .recorder_pid = 42, .recorder_start = 7,
                                 .recorder_token = "abc"};
    assert_int_equal(store_session_set_runtime(st, "t1", ids[0], &rt), 0);
    assert_int_equal(store_session_set_runtime(st, "t2", ids[0], &rt), AH_E_NOTFOUND);
    struct session_row *r = NULL;
    assert_int_equal(store_session_get(st, "t1", ids[0], &r), 0);
    assert_string_equal(r->workspace_provider, "copy");
    assert_string_equal(r->workspace_path, "/w/1");
    assert_int_equal(r->recorder_pid, 42);
    assert_int_equal(r->recorder_start, 7);
    assert_string_equal(r->recorder_token, "abc");
    session_row_free(r);
    /* NULL strings and -1 leave a column as it is; 0 clears the recorder */
    rt = (struct session_runtime){.recorder_pid = 0, .recorder_start = -1};
    assert_int_equal(store_session_set_runtime(st, "t1", ids[0], &rt), 0);
    assert_int_equal(store_session_get(st, "t1", ids[0], &r), 0);
    assert_string_equal(r->workspace_path, "/w/1");
    assert_int_equal(r->recorder_pid, 0);
    assert_int_equal(r->recorder_start, 7);
    assert_string_equal(r->recorder_token, "abc");
    session_row_free(r);

    assert_int_equal(store_session_purge(st, "t2", ids[0]), AH_E_NOTFOUND);
    assert_int_equal(store_session_purge(st, "t1", ids[0]), 0);
    assert_int_equal(store_session_purge(st, "t1", ids[0]), AH_E_NOTFOUND);
    assert_int_equal(store_session_get(st, "t1", ids[0], &r), AH_E_NOTFOUND);
    assert_int_equal(raw_int("SELECT count(*) FROM events"), 1); /* only the other's seq 1 */
    assert_int_equal(store_session_get(st, "t1", ids[1], &r), 0);
    session_row_free(r);
    store_close(st);
}

/* ---- the batching writer's one call ---------------------------------------------------------- */

static void test_apply_rules(void **state) {
    struct store *st = open_store();
    char a[1][ULID_LEN + 1], b[1][ULID_LEN + 1];
    make_task(st, "t1", NULL, "scripted", 1, a, 1000);
    make_task(st, "t1", NULL, "scripted", 1, b, 1000);
    json_t *h[4];
    json_t *changes = json_pack("{s:i}", "files_changed", 3);
    struct store_op ops[] = {
        tr("t1", a[0], SESSION_PROVISIONING),
        ev("t1", a[0], "log", "one", &h[0]),
        ev("t1", b[0], "log", "other session", &h[1]),
        tr("t1", a[0], SESSION_PAUSED), /* illegal from provisioning */
        tr("t1", a[0], SESSION_RUNNING),
        ev("t1", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "log", "nobody", &h[2]),
        ev("t2", a[0], "log", "wrong tenant", &h[3]),
        {.kind = STORE_OP_TRANSITION, .tenant = "t1", .session_id = a[0], .to = SESSION_FAILED,
         .error = "boom", .has_exit_code = true, .exit_code = 3, .changes = changes,
         .ts = 5000},
    };
    size_t n = sizeof(ops) / sizeof(*ops);
    ops[1].rseq = 10;
    ops[1].ts = 2000;
    assert_int_equal(store_apply(st, ops, n), 0);
    assert_int_equal(ops[0].result, 0);
    assert_int_equal(ops[0].status_before, SESSION_QUEUED);
    assert_int_equal(ops[0].seq, 2);
    assert_int_equal(ops[1].result, 0);
    assert_int_equal(ops[1].seq, 3);
    assert_int_equal(ops[2].seq, 2); /* each session counts on its own */
    assert_int_equal(ops[3].result, AH_E_CONFLICT);
    assert_int_equal(ops[3].status_before, SESSION_PROVISIONING);
    assert_null(ops[3].stored);
    assert_int_equal(ops[4].result, 0);
    assert_int_equal(ops[4].seq, 4);
    assert_false(ops[4].terminal);
    assert_int_equal(ops[5].result, AH_E_NOTFOUND);
    assert_int_equal(ops[6].result, AH_E_NOTFOUND);
    assert_int_equal(ops[7].result, 0);
    assert_int_equal(ops[7].seq, 5);
    assert_true(ops[7].terminal);
    /* the stored form: type, seq, sessionId, ts first, then the fields */
    json_t *e = json_loads(ops[1].stored, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(e, "seq")), 3);
    assert_string_equal(json_string_value(json_object_get(e, "sessionId")), a[0]);
    assert_string_equal(json_string_value(json_object_get(e, "ts")), "1970-01-01T00:00:02.000Z");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "one");
    assert_int_equal(strncmp(ops[1].stored, "{\"type\":\"log\",\"seq\":3,", 22), 0);
    json_decref(e);
    e = json_loads(ops[7].stored, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(e, "status")), "failed");
    assert_string_equal(json_string_value(json_object_get(e, "error")), "boom");
    assert_int_equal(json_integer_value(json_object_get(e, "exitCode")), 3);
    json_decref(e);
    ops_clear(ops, n);

    struct session_row *r = NULL;
    assert_int_equal(store_session_get(st, "t1", a[0], &r), 0);
    assert_int_equal(r->status, SESSION_FAILED);
    assert_int_equal(r->last_seq, 5);
    assert_int_equal(r->recorder_rseq, 10);
    assert_string_equal(r->error, "boom");
    assert_true(r->has_exit_code);
    assert_int_equal(r->exit_code, 3);
    assert_int_equal(r->ended_at, 5000);
    assert_true(r->started_at > 0);
    assert_int_equal(json_integer_value(json_object_get(r->changes, "files_changed")), 3);
    session_row_free(r);

    /* after the terminal status: events are GONE, a recorder resend is EXISTS */
    json_t *h2[2];
    struct store_op more[] = {ev("t1", a[0], "log", "late", &h2[0]),
                              ev("t1", a[0], "log", "resend", &h2[1])};
    more[1].rseq = 10;
    assert_int_equal(store_apply(st, more, 2), 0);
    assert_int_equal(more[0].result, AH_E_GONE);
    assert_int_equal(more[1].result, AH_E_EXISTS);
    assert_null(more[0].stored);
    ops_clear(more, 2);
    assert_int_equal(raw_int("SELECT count(*) FROM events"), 7);
    for (size_t i = 0; i < 4; i++)
        json_decref(h[i]);
    json_decref(h2[0]);
    json_decref(h2[1]);
    json_decref(changes);

    /* rseq of an op that is not stored is still remembered: its resend is EXISTS */
    char c[1][ULID_LEN + 1];
    make_task(st, "t1", NULL, "scripted", 1, c, 1000);
    struct store_op bad = tr("t1", c[0], SESSION_COMPLETED); /* illegal from queued */
    bad.rseq = 4;
    assert_int_equal(store_apply(st, &bad, 1), 0);
    assert_int_equal(bad.result, AH_E_CONFLICT);
    bad.to = SESSION_PROVISIONING;
    assert_int_equal(store_apply(st, &bad, 1), 0);
    assert_int_equal(bad.result, AH_E_EXISTS);
    store_close(st);
}

struct writer {
    pthread_t t;
    struct store *st;
    const char *sid;
    int rc;
};

static void *write_thread(void *arg) {
    struct writer *w = arg;
    for (int i = 0; i < 25 && w->rc == 0; i++) {
        json_t *h[4];
        struct store_op ops[4];
        for (size_t k = 0; k < 4; k++)
            ops[k] = ev("t1", w->sid, "log", "concurrent", &h[k]);
        w->rc = store_apply(w->st, ops, 4);
        for (size_t k = 0; w->rc == 0 && k < 4; k++)
            if (ops[k].result != 0)
                w->rc = ops[k].result;
        ops_clear(ops, 4);
        for (size_t k = 0; k < 4; k++)
            json_decref(h[k]);
    }
    return NULL;
}

/* Several writers on one session (D45): every event stored, seq gapless, none twice. */
static void test_apply_concurrent_writers(void **state) {
    struct store *st = open_store();
    char ids[1][ULID_LEN + 1];
    make_task(st, "t1", NULL, "scripted", 1, ids, 1000);
    struct writer w[4];
    for (size_t i = 0; i < 4; i++) {
        w[i] = (struct writer){.st = st, .sid = ids[0]};
        assert_int_equal(pthread_create(&w[i].t, NULL, write_thread, &w[i]), 0);
    }
    for (size_t i = 0; i < 4; i++) {
        pthread_join(w[i].t, NULL);
        assert_int_equal(w[i].rc, 0);
    }
    assert_int_equal(raw_int("SELECT count(*) FROM events"), 401);
    assert_int_equal(raw_int("SELECT max(seq) FROM events"), 401);
    assert_int_equal(raw_int("SELECT count(DISTINCT seq) FROM events"), 401);
    struct session_row *r = NULL;
    assert_int_equal(store_session_get(st, "t1", ids[0], &r), 0);
    assert_int_equal(r->last_seq, 401);
    session_row_free(r);
    store_close(st);
}

static void test_event_list_and_range(void **state) {
    struct store *st = open_store();
    char ids[1][ULID_LEN + 1];
    make_task(st, "t1", NULL, "scripted", 1, ids, 1000);
    /* seq 2..11: tool events at ts 2000.., every third a warning */
    for (int i = 0; i < 10; i++) {
        json_t *p = json_pack("{s:s, s:s, s:i}", "type", i % 2 ? "tool" : "log", "level",
                              i % 3 ? "info" : "warn", "i", i);
        struct store_op op = {.kind = STORE_OP_EVENT, .tenant = "t1", .session_id = ids[0],
                              .payload = p, .ts = 2000 + i};
        assert_int_equal(store_apply(st, &op, 1), 0);
        free(op.stored);
        json_decref(p);
    }
    struct event_filter f = {.ascending = true};
    struct page pg = {.page = 1, .per_page = 4};
    json_t *items = NULL;
    int64_t total = 0;
    assert_int_equal(store_event_list(st, "t1", ids[0], &f, &pg, &items, &total), 0);
    assert_int_equal(total, 11);
    assert_int_equal(json_array_size(items), 4);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "seq")), 1);
    json_decref(items);

    f = (struct event_filter){.ascending = false};
    assert_int_equal(store_event_list(st, "t1", ids[0], &f, &pg, &items, &total), 0);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "seq")), 11);
    json_decref(items);

    const char *types[] = {"tool", "status", NULL};
    f = (struct event_filter){.types = types, .ascending = true};
    struct page big = {.page = 1, .per_page = 100};
    assert_int_equal(store_event_list(st, "t1", ids[0], &f, &big, &items, &total), 0);
    assert_int_equal(total, 6); /* 5 tool + the queued status */
    json_decref(items);

    f = (struct event_filter){.level = "warn", .after = 2, .ascending = true};
    assert_int_equal(store_event_list(st, "t1", ids[0], &f, &big, &items, &total), 0);
    assert_int_equal(total, 3); /* i = 3, 6, 9 (i = 0 is seq 2, not after 2) */
    json_decref(items);

    f = (struct event_filter){.since = 2003, .until = 2005, .ascending = true};
    assert_int_equal(store_event_list(st, "t1", ids[0], &f, &big, &items, &total), 0);
    assert_int_equal(total, 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "i")), 3);
    json_decref(items);

    /* another tenant sees nothing */
    f = (struct event_filter){0};
    assert_int_equal(store_event_list(st, "t2", ids[0], &f, &big, &items, &total), 0);
    assert_int_equal(total, 0);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);

    char **texts = NULL;
    int64_t *seqs = NULL;
    size_t n = 0;
    assert_int_equal(store_event_range(st, "t1", ids[0], 5, 3, &texts, &seqs, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(seqs[0], 6);
    assert_int_equal(seqs[2], 8);
    json_t *e = json_loads(texts[2], 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(e, "seq")), 8);
    json_decref(e);
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(seqs);
    assert_int_equal(store_event_range(st, "t2", ids[0], 0, 3, &texts, &seqs, &n), 0);
    assert_int_equal(n, 0);
    free(texts);
    free(seqs);
    store_close(st);
}

/* ---- drafts and repositories ----------------------------------------------------------------- */

struct updater {
    pthread_t t;
    struct store *st;
    const char *key;
    int rc;
};

static void *update_thread(void *arg) {
    struct updater *u = arg;
    for (int i = 0; i < 10 && u->rc == 0; i++) {
        json_t *m = json_pack("{s:i}", u->key, i);
        struct draft_row *r = NULL;
        u->rc = store_draft_update(u->st, "t1", "d1", m, 100 + i, &r);
        draft_row_free(r);
        json_decref(m);
    }
    return NULL;
}

static void test_drafts(void **state) {
    struct store *st = open_store();
    json_t *body = json_pack("{s:s, s:{s:s}}", "prompt", "draft one", "repo", "mode", "none");
    assert_int_equal(store_draft_create(st, "t1", "d1", body, 10), 0);
    assert_int_equal(store_draft_create(st, "t1", "d1", body, 10), AH_E_EXISTS);
    assert_int_equal(store_draft_create(st, "t1", "d2", body, 20), 0);
    assert_int_equal(store_draft_create(st, "t2", "d1", body, 30), 0);
    json_decref(body);

    struct draft_row *r = NULL;
    assert_int_equal(store_draft_get(st, "t1", "d1", &r), 0);
    assert_string_equal(json_string_value(json_object_get(r->body, "prompt")), "draft one");
    assert_int_equal(r->created_at, 10);
    draft_row_free(r);
    assert_int_equal(store_draft_get(st, "t3", "d1", &r), AH_E_NOTFOUND);

    /* the given members replace, the others stay */
    json_t *m = json_pack("{s:s, s:i}", "prompt", "changed", "extra", 1);
    assert_int_equal(store_draft_update(st, "t1", "d1", m, 50, &r), 0);
    assert_string_equal(json_string_value(json_object_get(r->body, "prompt")), "changed");
    assert_non_null(json_object_get(r->body, "repo"));
    assert_int_equal(r->updated_at, 50);
    draft_row_free(r);
    assert_int_equal(store_draft_update(st, "t1", "nope", m, 50, &r), AH_E_NOTFOUND);
    json_decref(m);

    /* concurrent updates of different members all land */
    struct updater u[3] = {{.st = st, .key = "a"}, {.st = st, .key = "b"}, {.st = st, .key = "c"}};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&u[i].t, NULL, update_thread, &u[i]), 0);
    for (size_t i = 0; i < 3; i++) {
        pthread_join(u[i].t, NULL);
        assert_int_equal(u[i].rc, 0);
    }
    assert_int_equal(store_draft_get(st, "t1", "d1", &r), 0);
    assert_int_equal(json_integer_value(json_object_get(r->body, "a")), 9);
    assert_int_equal(json_integer_value(json_object_get(r->body, "b")), 9);
    assert_int_equal(json_integer_value(json_object_get(r->body, "c")), 9);
    assert_string_equal(json_string_value(json_object_get(r->body, "prompt")), "changed");
    draft_row_free(r);

    /* newest update first, totals per tenant */
    struct draft_row **rows = NULL;
    size_t n = 0;
    int64_t total = 0;
    struct page pg = {.page = 1, .per_page = 1};
    assert_int_equal(store_draft_list(st, "t1", &pg, &rows, &n, &total), 0);
    assert_int_equal(total, 2);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0]->id, "d1");
    draft_rows_free(rows, n);
    pg.page = 2;
    assert_int_equal(store_draft_list(st, "t1", &pg, &rows, &n, &total), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0]->id, "d2");
    draft_rows_free(rows, n);

    assert_int_equal(store_draft_delete(st, "t2", "d2"), AH_E_NOTFOUND);
    assert_int_equal(store_draft_delete(st, "t1", "d2"), 0);
    assert_int_equal(store_draft_delete(st, "t1", "d2"), AH_E_NOTFOUND);
    pg.page = 1;
    pg.per_page = 10;
    assert_int_equal(store_draft_list(st, "t1", &pg, &rows, &n, &total), 0);
    assert_int_equal(total, 1);
    draft_rows_free(rows, n);
    store_close(st);
}

/* Web sessions (OIDC sign-in, D36): a login row is taken once and only while fresh (expired
 * rows of every kind go on the way); a pending session is finished once, with its audit
 * record; touch and revoke; a revoked session cannot be finished or revoked again. */
static void test_web_sessions(void **state) {
    (void)state;
    struct store *st = open_store();
    int64_t now = 1700000000000LL;
    struct websession_row login = {.id = "l1", .token_hash = "hs1", .status = "login",
                                   .nonce = "n1", .verifier = "v1", .return_to = "/x",
                                   .created_at = now, .last_seen_at = now,
                                   .expires_at = now + 600000};
    assert_int_equal(store_websession_put(st, &login, NULL), 0);
    assert_int_equal(store_websession_put(st, &login, NULL), AH_E_EXISTS);
    struct websession_row old = login;
    old.id = "l0";
    old.token_hash = "hs0";
    old.expires_at = now - 1;
    assert_int_equal(store_websession_put(st, &old, NULL), 0);
    struct websession_row *got = NULL;
    assert_int_equal(store_websession_take_login(st, "hs0", now, &got), AH_E_NOTFOUND);
    assert_int_equal(store_websession_get(st, "hs0", &got), AH_E_NOTFOUND); /* swept */
    assert_int_equal(store_websession_take_login(st, "hs1", now, &got), 0);
    assert_string_equal(got->nonce, "n1");
    assert_string_equal(got->verifier, "v1");
    assert_string_equal(got->return_to, "/x");
    websession_row_free(got);
    got = NULL;
    assert_int_equal(store_websession_take_login(st, "hs1", now, &got), AH_E_NOTFOUND);

    struct websession_row s = {.id = "s1", .token_hash = "hc1", .status = "pending",
                               .created_at = now, .last_seen_at = now,
                               .expires_at = now + 3600000};
    assert_int_equal(store_websession_put(st, &s, NULL), 0);
    assert_int_equal(store_websession_take_login(st, "hc1", now, &got), AH_E_NOTFOUND);
    s.status = "active";
    s.subject = "alice";
    s.user_name = "Alice";
    s.tenant_id = "acme";
    s.role = "operator";
    s.id_token = "t.o.k";
    struct audit_entry e = {.ts = now, .tenant = "acme", .actor = "oidc:alice",
                            .credential_id = "s1", .action = "auth.login", .outcome = "success"};
    assert_int_equal(store_websession_finish(st, &s, &e), 0);
    assert_int_equal(store_websession_finish(st, &s, NULL), AH_E_NOTFOUND); /* not pending */
    assert_int_equal(store_websession_get(st, "hc1", &got), 0);
    assert_string_equal(got->status, "active");
    assert_string_equal(got->tenant_id, "acme");
    assert_string_equal(got->role, "operator");
    assert_string_equal(got->id_token, "t.o.k");
    assert_null(got->nonce);
    assert_int_equal(got->revoked_at, 0);
    websession_row_free(got);
    got = NULL;
    assert_int_equal(store_websession_touch(st, "s1", now + 5), 0);
    struct audit_entry out = {.ts = now + 9, .tenant = "acme", .credential_id = "s1",
                              .action = "auth.logout", .outcome = "success"};
    assert_int_equal(store_websession_revoke(st, "s1", now + 9, &out), 0);
    assert_int_equal(store_websession_revoke(st, "s1", now + 10, NULL), AH_E_NOTFOUND);
    assert_int_equal(store_websession_touch(st, "s1", now + 20), 0); /* a no-op once revoked */
    assert_int_equal(store_websession_get(st, "hc1", &got), 0);
    assert_int_equal(got->revoked_at, now + 9);
    assert_int_equal(got->last_seen_at, now + 5);
    assert_null(got->id_token);
    websession_row_free(got);
    json_t *items = NULL;
    int64_t total = 0;
    struct audit_filter f = {.actor = "oidc:alice"};
    struct page pg = {.page = 1, .per_page = 10};
    assert_int_equal(store_audit_list(st, "acme", &f, &pg, &items, &total), 0);
    assert_int_equal(total, 1);
    json_decref(items);
    store_close(st);
}

/* API keys and the audit log (auth/): found by id across tenants, listed and revoked per tenant,
 * counted when usable; audit records filtered and paged per tenant; a key and its audit record
 * commit together. */
static void key_row(struct apikey_row *k, const char *id, const char *tenant, const char *role,
                    int64_t expires) {
    *k = (struct apikey_row){.id = (char *)id, .tenant_id = (char *)tenant, .role = (char *)role,
                             .salt = "s4lt", .hash = "h4sh", .created_at = 1000,
                             .expires_at = expires};
}

/* D37: a record bound to the thread commits with the first change, once, and only with it:
 * when the record cannot be written, the change is not made either (the audit table renamed
 * away makes its insert fail), on every kind of change function. */
static long long audit_rows(const char *action) {
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit_log WHERE action = '%s'", action);
    return raw_int(sql);
}

static void test_audit_commits_with_the_change(void **state) {
    struct store *st = open_store();
    json_t *body = json_pack("{s:s}", "prompt", "p");
    struct audit_entry e = {.ts = 5, .tenant = "t1", .action = "POST /api/v1/drafts",
                            .outcome = "success"};
    /* nothing bound: nothing recorded */
    assert_int_equal(store_draft_create(st, "t1", "d0", body, 1), 0);
    assert_int_equal(raw_int("SELECT count(*) FROM audit_log"), 0);
    /* one statement (draft_create): the record goes with it, once */
    store_audit_bind(&e);
    assert_ptr_equal(store_audit_bound(), &e);
    assert_int_equal(store_draft_create(st, "t1", "d1", body, 1), 0);
    assert_true(e.written);
    assert_null(store_audit_bound());
    assert_int_equal(store_draft_delete(st, "t1", "d0"), 0); /* a second change: no second row */
    assert_int_equal(audit_rows("POST /api/v1/drafts"), 1);
    /* a change that changes nothing records nothing */
    struct audit_entry miss = {.action = "DELETE /api/v1/drafts/{id}", .outcome = "success"};
    store_audit_bind(&miss);
    assert_int_equal(store_draft_delete(st, "t1", "nope"), AH_E_NOTFOUND);
    assert_false(miss.written);
    assert_int_equal(audit_rows("DELETE /api/v1/drafts/{id}"), 0);
    store_audit_bind(NULL);

    /* the record cannot be written: no change either, whichever path the change takes */
    char sid[1][ULID_LEN + 1];
    make_task(st, "t1", NULL, "scripted", 1, sid, 10);
    raw_exec("ALTER TABLE audit_log RENAME TO audit_log_away");
    struct audit_entry bad = {.action = "x", .outcome = "success"};
    store_audit_bind(&bad);
    assert_true(store_draft_create(st, "t1", "d2", body, 1) < 0); /* one statement */
    json_t *m = json_pack("{s:s}", "prompt", "changed");
    struct draft_row *r = NULL;
    assert_true(store_draft_update(st, "t1", "d1", m, 2, &r) < 0); /* a transaction */
    assert_true(store_session_purge(st, "t1", sid[0]) < 0);
    char task[ULID_LEN + 1];
    ulid_new(task);
    struct session_new sn = {.agent_type = "scripted", .agent_version = "1"};
    ulid_new(sn.id);
    json_t *req = git_request("https://example.com/a.git");
    assert_true(store_task_create(st, "t1", task, NULL, req, &sn, 1, 20) < 0);
    json_t *hold = NULL;
    struct store_op op = ev("t1", sid[0], "log", "audited", &hold);
    op.audit = &bad;
    assert_true(store_apply(st, &op, 1) < 0); /* the event writer's batch */
    ops_clear(&op, 1);
    json_decref(hold);
    assert_false(bad.written);
    store_audit_bind(NULL);
    raw_exec("ALTER TABLE audit_log_away RENAME TO audit_log");
    assert_int_equal(store_draft_get(st, "t1", "d2", &r), AH_E_NOTFOUND);
    assert_int_equal(store_draft_get(st, "t1", "d1", &r), 0);
    assert_string_equal(json_string_value(json_object_get(r->body, "prompt")), "p");
    draft_row_free(r);
    struct session_row *row = NULL;
    assert_int_equal(store_session_get(st, "t1", sn.id, &row), AH_E_NOTFOUND);
    assert_int_equal(store_session_get(st, "t1", sid[0], &row), 0);
    assert_int_equal(row->last_seq, 1); /* only its queued event */
    session_row_free(row);

    /* the batch path writes the op's record when the op is stored, with it */
    struct audit_entry pe = {.tenant = "t1", .action = "POST /api/v1/sessions/{id}/prompt",
                             .outcome = "success"};
    op = ev("t1", sid[0], "log", "audited", &hold);
    op.audit = &pe;
    assert_int_equal(store_apply(st, &op, 1), 0);
    ops_clear(&op, 1);
    json_decref(hold);
    assert_true(pe.written);
    assert_int_equal(audit_rows("POST /api/v1/sessions/{id}/prompt"), 1);
    assert_int_equal(audit_rows("x"), 0);
    json_decref(req);
    json_decref(m);
    json_decref(body);
    store_close(st);
    (void)state;
}

static void test_api_keys_and_audit(void **state) {
    struct store *st = open_store();
    int64_t now = 1700000000000LL, n = -1;
    struct apikey_row k;
    struct audit_entry made = {.ts = now, .tenant = "acme", .actor = "cli:x",
                               .action = "api-key.create", .outcome = "success"};
    key_row(&k, "k1", "acme", "admin", 0);
    k.project_id = "p1";
    k.name = "first";
    k.impersonate = true;
    assert_int_equal(store_apikey_create(st, &k, &made), 0);
    key_row(&k, "k2", "acme", "viewer", now - 1); /* already expired */
    assert_int_equal(store_apikey_create(st, &k, NULL), 0);
    key_row(&k, "k3", "globex", "operator", now + 60000);
    assert_int_equal(store_apikey_create(st, &k, NULL), 0);
    assert_int_equal(store_apikey_create(st, &k, NULL), AH_E_EXISTS);
    assert_int_equal(store_apikey_count(st, now, &n), 0);
    assert_int_equal(n, 2);

    struct apikey_row *got = NULL;
    assert_int_equal(store_apikey_get(st, "k1", &got), 0);
    assert_string_equal(got->tenant_id, "acme");
    assert_string_equal(got->project_id, "p1");
    assert_string_equal(got->name, "first");
    assert_string_equal(got->role, "admin");
    assert_string_equal(got->salt, "s4lt");
    assert_string_equal(got->hash, "h4sh");
    assert_true(got->impersonate);
    assert_int_equal(got->expires_at, 0);
    assert_int_equal(got->revoked_at, 0);
    apikey_row_free(got);
    got = NULL;
    assert_int_equal(store_apikey_get(st, "nope", &got), AH_E_NOTFOUND);
    assert_int_equal(store_apikey_touch(st, "k3", now), 0);
    assert_int_equal(store_apikey_get(st, "k3", &got), 0);
    assert_int_equal(got->last_used_at, now);
    assert_null(got->project_id);
    assert_false(got->impersonate);
    apikey_row_free(got);

    struct page pg = {.page = 1, .per_page = 10};
    struct apikey_row **rows = NULL;
    size_t nr = 0;
    int64_t total = 0;
    assert_int_equal(store_apikey_list(st, "acme", &pg, &rows, &nr, &total), 0);
    assert_int_equal(total, 2);
    assert_int_equal(nr, 2);
    apikey_rows_free(rows, nr);
    assert_int_equal(store_apikey_list(st, NULL, &pg, &rows, &nr, &total), 0);
    assert_int_equal(total, 3);
    apikey_rows_free(rows, nr);

    /* another tenant cannot revoke; the owner can, once, with its audit record */
    struct audit_entry rev = {.ts = now + 1, .tenant = "acme", .actor = "apikey:k1",
                              .credential_id = "k1", .action = "api-key.revoke", .target = "k3",
                              .request_id = "r1", .source = "127.0.0.1", .outcome = "success"};
    assert_int_equal(store_apikey_revoke(st, "acme", "k3", now, &rev), AH_E_NOTFOUND);
    assert_int_equal(store_apikey_revoke(st, "globex", "k3", now, &rev), 0);
    assert_int_equal(store_apikey_revoke(st, NULL, "k3", now, NULL), AH_E_NOTFOUND);
    assert_int_equal(store_apikey_count(st, now, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_apikey_get(st, "k3", &got), 0);
    assert_int_equal(got->revoked_at, now);
    apikey_row_free(got);
    /* what stopped authenticating since a moment: k3 revoked, k2 expired; not k1 */
    char **ended = NULL;
    size_t n_ended = 0;
    assert_int_equal(store_apikey_ended(st, now - 1, now, &ended, &n_ended), 0);
    assert_int_equal(n_ended, 2);
    assert_true((!strcmp(ended[0], "k2") && !strcmp(ended[1], "k3")) ||
                (!strcmp(ended[0], "k3") && !strcmp(ended[1], "k2")));
    for (size_t i = 0; i < n_ended; i++)
        free(ended[i]);
    free(ended);
    assert_int_equal(store_apikey_ended(st, now + 1, now + 2, &ended, &n_ended), 0);
    assert_int_equal(n_ended, 0);
    free(ended);

    struct audit_entry plain = {.ts = now + 2, .action = "auth.failed", .outcome = "denied",
                                .status = 401};
    assert_int_equal(store_audit_append(st, &plain), 0);
    json_t *items = NULL;
    struct audit_filter f = {0};
    /* the revoke's record was written with tenant "acme" (its audit entry names it) */
    assert_int_equal(store_audit_list(st, "acme", &f, &pg, &items, &total), 0);
    assert_int_equal(total, 2);
    json_t *first = json_array_get(items, 0); /* newest first */
    assert_string_equal(json_string_value(json_object_get(first, "action")), "api-key.revoke");
    assert_string_equal(json_string_value(json_object_get(first, "source")), "127.0.0.1");
    assert_string_equal(json_string_value(json_object_get(first, "requestId")), "r1");
    assert_true(json_is_null(json_object_get(first, "status")));
    json_decref(items);
    assert_int_equal(store_audit_list(st, NULL, &f, &pg, &items, &total), 0);
    assert_int_equal(total, 3);
    json_decref(items);
    f.outcome = "denied";
    assert_int_equal(store_audit_list(st, NULL, &f, &pg, &items, &total), 0);
    assert_int_equal(total, 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "status")), 401);
    json_decref(items);
    f = (struct audit_filter){.since = now + 1};
    assert_int_equal(store_audit_list(st, NULL, &f, &pg, &items, &total), 0);
    assert_int_equal(total, 2);
    json_decref(items);
    int64_t deleted = 0;
    assert_int_equal(store_audit_prune(st, now + 1, &deleted), 0);
    assert_int_equal(deleted, 1);
    /* a failing change writes no audit record: they commit together */
    assert_int_equal(store_apikey_revoke(st, NULL, "nope", now, &rev), AH_E_NOTFOUND);
    assert_int_equal(raw_int("SELECT count(*) FROM audit_log"), 2);
    store_close(st);
}

static void test_repo_list(void **state) {
    struct store *st = open_store();
    const char *urls[] = {"https://e.com/a.git", "https://e.com/b.git", "https://e.com/a.git"};
    for (size_t i = 0; i < 3; i++) {
        char task[ULID_LEN + 1];
        ulid_new(task);
        json_t *req = git_request(urls[i]);
        assert_int_equal(store_task_create(st, "t1", task, i == 1 ? "p2" : "p1", req, NULL, 0,
                                           (int64_t)(100 * (i + 1))),
                         0);
        json_decref(req);
    }
    char task[ULID_LEN + 1];
    ulid_new(task);
    json_t *none = json_pack("{s:{s:s}}", "repo", "mode", "none");
    assert_int_equal(store_task_create(st, "t1", task, NULL, none, NULL, 0, 900), 0);
    json_decref(none);
    struct repo_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(store_repo_list(st, "t1", NULL, &rows, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].url, "https://e.com/a.git"); /* used last at 300 */
    assert_int_equal(rows[0].last_used_at, 300);
    assert_string_equal(rows[1].url, "https://e.com/b.git");
    repo_rows_free(rows, n);
    assert_int_equal(store_repo_list(st, "t1", "p2", &rows, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].url, "https://e.com/b.git");
    repo_rows_free(rows, n);
    assert_int_equal(store_repo_list(st, "t2", NULL, &rows, &n), 0);
    assert_int_equal(n, 0);
    repo_rows_free(rows, n);
    store_close(st);
}

/* ---- idempotency keys ------------------------------------------------------------------------ */

static void test_idempotency(void **state) {
    struct store *st = open_store();
    struct idem_row *r = NULL;
    assert_int_equal(store_idem_begin(st, "t1", "k1", "h1", 1000, 500, &r), 0);
    assert_null(r);
    /* the same key again while pending: the pending row */
    assert_int_equal(store_idem_begin(st, "t1", "k1", "h2", 1100, 500, &r), AH_E_EXISTS);
    assert_string_equal(r->request_hash, "h1");
    assert_false(r->done);
    assert_int_equal(r->created_at, 1000);
    idem_row_free(r);
    r = NULL;
    /* other tenants have their own keys */
    assert_int_equal(store_idem_begin(st, "t2", "k1", "h9", 1100, 500, &r), 0);

    /* the answer, bytes as given (NULs included) */
    static const char body[] = "{\"a\":1}\0tail";
    assert_int_equal(store_idem_finish(st, "t1", "k1", 201, "application/json", body,
                                       sizeof(body) - 1),
                     0);
    assert_int_equal(store_idem_begin(st, "t1", "k1", "h1", 1200, 500, &r), AH_E_EXISTS);
    assert_true(r->done);
    assert_int_equal(r->status, 201);
    assert_string_equal(r->content_type, "application/json");
    assert_int_equal(r->body_len, sizeof(body) - 1);
    assert_memory_equal(r->body, body, sizeof(body) - 1);
    idem_row_free(r);
    r = NULL;
    /* a done key is not released */
    assert_int_equal(store_idem_release(st, "t1", "k1"), 0);
    assert_int_equal(store_idem_begin(st, "t1", "k1", "h1", 1300, 500, &r), AH_E_EXISTS);
    idem_row_free(r);
    r = NULL;
    /* older than the window: replaced by a new claim */
    assert_int_equal(store_idem_begin(st, "t1", "k1", "h3", 1600, 500, &r), 0);
    assert_null(r);
    assert_int_equal(store_idem_begin(st, "t1", "k1", "h3", 1601, 500, &r), AH_E_EXISTS);
    assert_string_equal(r->request_hash, "h3");
    assert_false(r->done);
    assert_int_equal(r->body_len, 0);
    idem_row_free(r);
    r = NULL;
    /* a released pending key can be claimed again */
    assert_int_equal(store_idem_release(st, "t1", "k1"), 0);
    assert_int_equal(store_idem_begin(st, "t1", "k1", "h4", 1602, 500, &r), 0);
    /* expired keys of every tenant are collected on a claim */
    assert_int_equal(store_idem_begin(st, "t1", "k2", "h", 5000, 500, &r), 0);
    assert_int_equal(raw_int("SELECT count(*) FROM idempotency_keys"), 1);
    store_close(st);
}

/* A pending claim of a server that died mid-request (same machine, its pid gone) is taken over
 * by the next request with the key instead of answering "in progress" until it expires. */
static void test_idempotency_abandoned_claim(void **state) {
    struct store *st = open_store();
    struct idem_row *r = NULL;
    assert_int_equal(store_idem_begin(st, "t1", "k1", "h1", 1000, 500000, &r), 0);
    char boot[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    assert_non_null(f);
    assert_non_null(fgets(boot, sizeof(boot), f));
    fclose(f);
    boot[strcspn(boot, "\n")] = '\0';
    char sql[256];
    /* pid 0x7ffffff0 does not exist (pid_max is at most 2^22) */
    snprintf(sql, sizeof(sql), "UPDATE idempotency_keys SET owner = '%s:%d:12345'", boot,
             0x7ffffff0);
    raw_exec(sql);
    assert_int_equal(store_idem_begin(st, "t1", "k1", "h2", 2000, 500000, &r), 0);
    assert_null(r);
    /* now it is ours (a live process): honoured */
    assert_int_equal(store_idem_begin(st, "t1", "k1", "h3", 3000, 500000, &r), AH_E_EXISTS);
    assert_string_equal(r->request_hash, "h2");
    assert_int_equal(r->created_at, 2000);
    idem_row_free(r);
    store_close(st);
}

/* PostgreSQL restarted or an administrator ended our sessions: the pool reconnects by itself,
 * no call fails. */
static void test_reconnects(void **state) {
    if (!use_pg) /* a SQLite file has no connection to lose */
        return;
    struct store *st = open_store();
    char ids[1][ULID_LEN + 1];
    make_task(st, "t1", NULL, "scripted", 1, ids, 1000);
    for (int round = 0; round < 2; round++) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity"
                 " WHERE datname = '%s' AND pid <> pg_backend_pid()",
                 dbname);
        assert_true(raw_int(sql) >= 1);
        struct session_row *r = NULL;
        assert_int_equal(store_session_get(st, "t1", ids[0], &r), 0);
        session_row_free(r);
        json_t *h;
        struct store_op op = ev("t1", ids[0], "log", "after a reconnect", &h);
        assert_int_equal(store_apply(st, &op, 1), 0);
        assert_int_equal(op.seq, 2 + round);
        free(op.stored);
        json_decref(h);
        assert_true(store_ready(st));
    }
    store_close(st);
}

/* Notices between processes sharing one database: what one store commits, the other hears. */
struct heard {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n, resyncs;
    char tenant[8][16], session[8][ULID_LEN + 1];
    int64_t seq[8];
};

static void on_notice(void *arg, const char *tenant, const char *session_id, int64_t seq) {
    struct heard *h = arg;
    pthread_mutex_lock(&h->mu);
    if (!tenant) {
        h->resyncs++;
    } else if (h->n < 8) {
        snprintf(h->tenant[h->n], sizeof(h->tenant[0]), "%s", tenant);
        snprintf(h->session[h->n], sizeof(h->session[0]), "%s", session_id);
        h->seq[h->n++] = seq;
    }
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* Waits (30 s at most) until h has n notices and `resyncs` resyncs. */
static bool heard_wait(struct heard *h, int n, int resyncs) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&h->mu);
    int rc = 0;
    while ((h->n < n || h->resyncs < resyncs) && rc == 0)
        rc = pthread_cond_timedwait(&h->cv, &h->mu, &until);
    bool ok = h->n >= n && h->resyncs >= resyncs;
    pthread_mutex_unlock(&h->mu);
    return ok;
}

static void apply_logs(struct store *st, const char *sid, size_t n) {
    json_t *h[4];
    struct store_op ops[4];
    for (size_t i = 0; i < n; i++)
        ops[i] = ev("t1", sid, "log", "noticed", &h[i]);
    assert_int_equal(store_apply(st, ops, n), 0);
    ops_clear(ops, n);
    for (size_t i = 0; i < n; i++)
        json_decref(h[i]);
}

static void test_watch(void **state) {
    struct store *a = open_store();
    struct heard ha = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct heard hb = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    if (!use_pg) { /* one process owns a SQLite file: nobody else to hear from */
        assert_int_equal(store_watch(a, on_notice, &ha), AH_E_NOTIMPL);
        store_close(a);
        return;
    }
    struct store *b = open_store();
    assert_int_equal(store_watch(a, on_notice, &ha), 0);
    assert_int_equal(store_watch(a, on_notice, &ha), AH_E_EXISTS);
    assert_int_equal(store_watch(b, on_notice, &hb), 0);
    char ids[1][ULID_LEN + 1];
    make_task(a, "t1", NULL, "scripted", 1, ids, 1000);

    apply_logs(a, ids[0], 3); /* one batch: one notice, the last seq */
    assert_true(heard_wait(&hb, 1, 0));
    assert_string_equal(hb.tenant[0], "t1");
    assert_string_equal(hb.session[0], ids[0]);
    assert_int_equal(hb.seq[0], 4);
    apply_logs(b, ids[0], 1);
    assert_true(heard_wait(&ha, 1, 0));
    assert_int_equal(ha.n, 1); /* a never hears its own commit (seq 4), only b's */
    assert_int_equal(ha.seq[0], 5);

    /* b's listening connection is ended: b reconnects, says it may have missed some, hears on */
    assert_true(raw_int("SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity"
                        " WHERE query LIKE 'LISTEN%'") >= 2);
    assert_true(heard_wait(&hb, 1, 1));
    apply_logs(a, ids[0], 2);
    assert_true(heard_wait(&hb, 2, 1));
    assert_int_equal(hb.seq[1], 7);
    store_close(b);
    store_close(a);
}

/* ---- the timeline (migration 004): snapshots, moments, branches -------------------------------- */

static void test_timeline(void **state) {
    struct store *st = open_store();
    char ids[1][ULID_LEN + 1];
    make_task(st, "t1", NULL, "scripted", 1, ids, 1000);
    json_t *hold[3];
    struct store_op ops[3] = {ev("t1", ids[0], "log", "a", &hold[0]),
                              ev("t1", ids[0], "tool_result", "b", &hold[1]),
                              ev("t1", ids[0], "log", "c", &hold[2])};
    assert_int_equal(store_apply(st, ops, 3), 0);
    ops_clear(ops, 3);
    for (int i = 0; i < 3; i++)
        json_decref(hold[i]);

    struct fs_snapshot_row s1 = {.id = "snap-01J00000000000000000000001", .kind = "base",
                                 .label = "base", .provider = "copy", .seq = 1, .ts = 1000,
                                 .size_bytes = 10};
    struct fs_snapshot_row s2 = {.id = "snap-01J00000000000000000000002", .kind = "auto",
                                 .label = "grep", .description = "d", .provider = "copy",
                                 .seq = 3, .ts = 2000, .size_bytes = 20};
    assert_int_equal(store_fs_snapshot_add(st, "t1", ids[0], &s2), 0);
    assert_int_equal(store_fs_snapshot_add(st, "t1", ids[0], &s1), 0);
    assert_int_equal(store_fs_snapshot_add(st, "t1", ids[0], &s1), AH_E_EXISTS);
    assert_int_equal(store_fs_snapshot_add(st, "t2", ids[0], &s1), AH_E_NOTFOUND);
    struct fs_snapshot_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(store_fs_snapshot_list(st, "t1", ids[0], 50, &rows, &n), 0);
    assert_int_equal(n, 2); /* oldest first */
    assert_string_equal(rows[0].id, s1.id);
    assert_null(rows[0].description);
    assert_string_equal(rows[1].label, "grep");
    assert_string_equal(rows[1].description, "d");
    assert_int_equal(rows[1].seq, 3);
    assert_int_equal(rows[1].size_bytes, 20);
    fs_snapshot_rows_free(rows, n);
    assert_int_equal(store_fs_snapshot_list(st, "t2", ids[0], 50, &rows, &n), 0);
    assert_int_equal(n, 0); /* another tenant sees nothing */
    fs_snapshot_rows_free(rows, n);
    struct fs_snapshot_row *one = NULL;
    assert_int_equal(store_fs_snapshot_find(st, "t1", s2.id, &one), 0);
    assert_string_equal(one->session_id, ids[0]);
    fs_snapshot_rows_free(one, 1);
    assert_int_equal(store_fs_snapshot_find(st, "t2", s2.id, &one), AH_E_NOTFOUND);

    struct moment_row m = {.id = "mom-1", .label = "look here", .type = "milestone", .seq = 2,
                           .ts = 1500};
    assert_int_equal(store_moment_add(st, "t1", ids[0], &m), 0);
    assert_int_equal(store_moment_add(st, "t9", ids[0], &m), AH_E_NOTFOUND);
    struct moment_row *mr = NULL;
    assert_int_equal(store_moment_list(st, "t1", ids[0], 10, &mr, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(mr[0].label, "look here");
    assert_null(mr[0].description);
    moment_rows_free(mr, n);

    /* a branch at seq 3: events 1..3 inherited, its own numbering goes on at 4 */
    char task[ULID_LEN + 1];
    ulid_new(task);
    struct session_new sn = {.agent_type = "scripted", .agent_version = "1.0"};
    ulid_new(sn.id);
    struct branch_row b = {.parent_session_id = ids[0], .fs_snapshot_id = s2.id, .branch_seq = 3,
                           .branch_ts = 1000, .name = "try-b"};
    json_t *req = git_request("https://example.com/a.git");
    struct branch_row bad = b;
    bad.branch_seq = 99;
    assert_int_equal(store_branch_create(st, "t1", task, NULL, req, &sn, &bad, 5000), AH_E_INVAL);
    assert_int_equal(store_branch_create(st, "t2", task, NULL, req, &sn, &b, 5000), AH_E_NOTFOUND);
    assert_int_equal(store_branch_create(st, "t1", task, NULL, req, &sn, &b, 5000), 0);
    json_decref(req);
    struct session_row *row = NULL;
    assert_int_equal(store_session_get(st, "t1", sn.id, &row), 0);
    assert_int_equal(row->last_seq, 4);
    assert_int_equal(row->status, SESSION_QUEUED);
    session_row_free(row);
    /* the scheduler's view has it: this server runs it (on PostgreSQL: this replica, D46) */
    struct session_row **live = NULL;
    size_t nlive = 0;
    bool found = false;
    assert_int_equal(store_session_list_live(st, &live, &nlive), 0);
    for (size_t i = 0; i < nlive; i++)
        found |= strcmp(live[i]->id, sn.id) == 0;
    session_rows_free(live, nlive);
    assert_true(found);
    json_t *items = NULL;
    int64_t total = 0;
    struct event_filter f = {.ascending = true};
    struct page pg = {.page = 1, .per_page = 50};
    assert_int_equal(store_event_list(st, "t1", sn.id, &f, &pg, &items, &total), 0);
    assert_int_equal(total, 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *e = json_array_get(items, i);
        assert_int_equal(json_integer_value(json_object_get(e, "seq")), (json_int_t)i + 1);
        assert_string_equal(json_string_value(json_object_get(e, "sessionId")), sn.id);
        assert_true(json_is_true(json_object_get(e, "inherited")) == (i < 3));
    }
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 2), "type")),
                        "tool_result");
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 3), "status")),
                        "queued");
    json_decref(items);
    /* the branch's next event is seq 5 */
    json_t *h = NULL;
    struct store_op next = ev("t1", sn.id, "log", "own", &h);
    assert_int_equal(store_apply(st, &next, 1), 0);
    assert_int_equal(next.seq, 5);
    ops_clear(&next, 1);
    json_decref(h);

    struct branch_row *br = NULL;
    assert_int_equal(store_branch_list(st, "t1", ids[0], &br, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(br[0].session_id, sn.id);
    assert_string_equal(br[0].fs_snapshot_id, s2.id);
    assert_string_equal(br[0].name, "try-b");
    assert_null(br[0].injected_message_id);
    assert_int_equal(br[0].branch_seq, 3);
    branch_rows_free(br, n);
    struct branch_row *bg = NULL;
    assert_int_equal(store_branch_get(st, "t1", sn.id, &bg), 0);
    assert_string_equal(bg->parent_session_id, ids[0]);
    branch_rows_free(bg, 1);
    assert_int_equal(store_branch_get(st, "t1", ids[0], &bg), AH_E_NOTFOUND);

    assert_int_equal(store_fs_snapshot_delete(st, "t1", ids[0], s1.id), 0);
    assert_int_equal(store_fs_snapshot_delete(st, "t1", ids[0], s1.id), AH_E_NOTFOUND);
    /* purging a session takes its timeline with it */
    assert_int_equal(store_session_purge(st, "t1", sn.id), 0);
    assert_int_equal(store_branch_list(st, "t1", ids[0], &br, &n), 0);
    assert_int_equal(n, 0);
    branch_rows_free(br, n);
    store_close(st);
}

int main(int argc, char **argv) {
    use_pg = argc > 1 && strcmp(argv[1], "pg") == 0;
    if (use_pg && !(pg_base = getenv("AH_TEST_PG_URL"))) {
        fprintf(stderr, "test-store pg: AH_TEST_PG_URL is not set (run it under "
                        "tests/pg/pgserver.py)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_migrates_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_create_and_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_and_runtime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_list_and_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drafts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repo_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_keys_and_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_commits_with_the_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_web_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_abandoned_claim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeline, setup, teardown),
    };
    return cmocka_run_group_tests_name(use_pg ? "store (PostgreSQL)" : "store (SQLite)", tests, NULL,
                                       NULL);
}
