/* test-store.c — opening the SQLite store: migrations applied once, recorded, idempotent on
 * re-open, refused when the database is newer than the binary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sqlite3.h>
#include <cmocka.h>

#include "../../src/store/store.h"

static char dir[256];

static int setup(void **state) {
    snprintf(dir, sizeof(dir), "/tmp/ah-test-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

static void test_open_migrates_once(void **state) {
    char path[300];
    snprintf(path, sizeof(path), "%s/sub/dir/state.db", dir); /* parents are created */
    struct store *st = NULL;
    struct ah_problem p = {0};
    assert_int_equal(store_open(path, &st, &p), 0);
    assert_true(store_ready(st));
    int version = 0, applied = 0;
    store_schema_version(st, &version, &applied);
    assert_true(version >= 1);
    assert_int_equal(applied, version);
    store_close(st);

    st = NULL;
    assert_int_equal(store_open(path, &st, &p), 0);
    int v2 = 0, applied2 = -1;
    store_schema_version(st, &v2, &applied2);
    assert_int_equal(v2, version);
    assert_int_equal(applied2, 0); /* nothing re-applied */
    store_close(st);

    /* the database records each migration exactly once, in WAL mode with STRICT tables */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *q;
    sqlite3_prepare_v2(db, "SELECT count(*), max(version) FROM schema_migrations", -1, &q, NULL);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), version);
    assert_int_equal(sqlite3_column_int(q, 1), version);
    sqlite3_finalize(q);
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    const char *tables[] = {"tasks", "sessions", "events", "idempotency_keys", "drafts"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(*tables); i++) {
        sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_schema WHERE type='table' AND name=?1", -1, &q,
                           NULL);
        sqlite3_bind_text(q, 1, tables[i], -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        assert_non_null(strstr((const char *)sqlite3_column_text(q, 0), "STRICT"));
        assert_non_null(strstr((const char *)sqlite3_column_text(q, 0), "tenant_id"));
        sqlite3_finalize(q);
    }
    /* a schema newer than this binary is refused, not guessed at */
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO schema_migrations VALUES (999, '999_future.sql', 0)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    st = NULL;
    assert_int_equal(store_open(path, &st, &p), AH_E_DB);
    assert_null(st);
    assert_non_null(strstr(p.detail, "999"));
    problem_clear(&p);
}

static void test_memory_and_bad_urls(void **state) {
    struct store *st = NULL;
    struct ah_problem p = {0};
    assert_int_equal(store_open(":memory:", &st, &p), 0);
    assert_true(store_ready(st));
    store_close(st);
    st = NULL;
    assert_int_equal(store_open("postgres://localhost/x", &st, &p), AH_E_NOTIMPL);
    assert_null(st);
    problem_clear(&p);
    assert_int_equal(store_open("", &st, &p), AH_E_INVAL);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_migrates_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_and_bad_urls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
