/*
 * sqlite_archive.c — export and import (archive.c; D47) on SQLite: tables from sqlite_master in
 * creation order, values by their storage class, rows inserted by column name.
 */
#include <stdio.h>
#include <string.h>

#include "sqlite_internal.h"

/* "name" with " doubled: table and column names come from the database or the archive. */
static int quote_ident(struct ah_buf *b, const char *name) {
    int rc = ah_buf_append(b, "\"", 1);
    for (const char *p = name; rc == 0 && *p; p++)
        rc = *p == '"' ? ah_buf_append(b, "\"\"", 2) : ah_buf_append(b, p, 1);
    return rc ? rc : ah_buf_append(b, "\"", 1);
}

static sqlite3_stmt *prepare_on(struct conn *c, const char *prefix, const char *table,
                                const char *suffix) {
    struct ah_buf b = {0};
    sqlite3_stmt *st = NULL;
    if (ah_buf_printf(&b, "%s", prefix) == 0 && quote_ident(&b, table) == 0 &&
        ah_buf_printf(&b, "%s", suffix) == 0)
        sqlite3_prepare_v2(c->db, b.p, (int)b.n, &st, NULL);
    ah_buf_clear(&b);
    return st;
}

int sq_archive_tables(void *impl, char ***ret, size_t *ret_n) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = NULL;
    int rc = sq_code(sqlite3_prepare_v2(c->db,
                                        "SELECT name FROM sqlite_master WHERE type = 'table' AND"
                                        " sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY rowid",
                                        -1, &st, NULL));
    char **names = NULL;
    size_t n = 0;
    int step;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (!name || store_archive_skip_table(name))
            continue;
        char **grown = realloc(names, (n + 1) * sizeof(*names));
        if (!grown || !(grown[n] = strdup(name))) {
            names = grown ? grown : names;
            rc = AH_E_NOMEM;
            break;
        }
        names = grown;
        n++;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = sq_code(step);
    sqlite3_finalize(st);
    sq_release(s, c);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return rc;
    }
    *ret = names;
    *ret_n = n;
    return 0;
}

/* One column of the current row as an archive value. */
static json_t *value_of(sqlite3_stmt *st, int col) {
    const void *p;
    int len;
    switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(st, col));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(st, col));
    case SQLITE_TEXT: {
        p = sqlite3_column_text(st, col);
        len = sqlite3_column_bytes(st, col);
        json_t *v = json_stringn(p, (size_t)len); /* NULL when not UTF-8: kept as bytes */
        return v ? v : store_archive_bytes(p, (size_t)len);
    }
    case SQLITE_BLOB:
        p = sqlite3_column_blob(st, col);
        return store_archive_bytes(p ? p : "", (size_t)sqlite3_column_bytes(st, col));
    default:
        return json_null();
    }
}

int sq_archive_read(void *impl, const char *table, int (*fn)(void *arg, json_t *row),
                    void *arg) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    /* one read transaction: a consistent picture even while a server writes */
    int rc = sq_exec(c, "BEGIN");
    sqlite3_stmt *st = rc == 0 ? prepare_on(c, "SELECT * FROM ", table, "") : NULL;
    if (rc == 0 && !st)
        rc = AH_E_DB;
    int step = SQLITE_DONE;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *row = json_object();
        for (int i = 0; row && i < sqlite3_column_count(st); i++) {
            const char *col = sqlite3_column_name(st, i);
            if (!store_archive_skip_column(table, col) &&
                json_object_set_new(row, col, value_of(st, i)) < 0) {
                json_decref(row);
                row = NULL;
            }
        }
        rc = row ? fn(arg, row) : AH_E_NOMEM;
        json_decref(row);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = sq_code(step);
    sqlite3_finalize(st);
    sq_exec(c, "COMMIT");
    sq_release(s, c);
    return rc;
}

int sq_archive_count(void *impl, const char *table, int64_t *ret) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = prepare_on(c, "SELECT count(*) FROM ", table, "");
    int rc = st ? sq_count(st, ret) : AH_E_DB;
    sqlite3_finalize(st);
    sq_release(s, c);
    return rc;
}

/* Binds one archive value; TEXT columns take bytes as text (text that was not UTF-8). */
static int bind_value(sqlite3_stmt *st, int i, const json_t *v, bool text_column) {
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        return sqlite3_bind_int64(st, i, json_integer_value(v));
    case JSON_REAL:
        return sqlite3_bind_double(st, i, json_real_value(v));
    case JSON_STRING:
        return sqlite3_bind_text(st, i, json_string_value(v), (int)json_string_length(v),
                                 SQLITE_TRANSIENT);
    case JSON_NULL:
        return sqlite3_bind_null(st, i);
    case JSON_TRUE:
    case JSON_FALSE:
        return sqlite3_bind_int(st, i, json_is_true(v));
    default: {
        unsigned char *p = NULL;
        size_t n = 0;
        if (store_archive_unbytes(v, &p, &n) < 0)
            return SQLITE_MISMATCH;
        int rc = text_column ? sqlite3_bind_text(st, i, (char *)p, (int)n, free)
                             : sqlite3_bind_blob(st, i, p, (int)n, free);
        return rc;
    }
    }
}

/* The declared type of each column of table: {"name": "TEXT", …}. */
static json_t *columns_of(struct conn *c, const char *table) {
    sqlite3_stmt *st = prepare_on(c, "SELECT name, type FROM pragma_table_info(", table, ")");
    json_t *cols = json_object();
    while (st && cols && sqlite3_step(st) == SQLITE_ROW)
        json_object_set_new(cols, (const char *)sqlite3_column_text(st, 0),
                            json_string((const char *)sqlite3_column_text(st, 1)));
    sqlite3_finalize(st);
    return cols;
}

int sq_archive_write(void *impl, const char *table, json_t *rows, struct ah_problem *reterr) {
    struct sq *s = impl;
    struct conn *c = sq_acquire(s);
    json_t *cols = columns_of(c, table);
    int rc = cols ? sq_exec(c, "BEGIN IMMEDIATE") : AH_E_NOMEM;
    size_t i;
    json_t *row;
    json_array_foreach(rc == 0 ? rows : NULL, i, row) {
        struct ah_buf b = {0}, vals = {0};
        const char *col;
        json_t *v;
        int k = 0;
        rc = ah_buf_printf(&b, "INSERT INTO ") || quote_ident(&b, table) ||
                     ah_buf_printf(&b, " (")
                 ? AH_E_NOMEM
                 : 0;
        json_object_foreach(row, col, v) {
            if (!json_object_get(cols, col)) {
                rc = problem_set(reterr, AH_E_INVAL,
                                 "table %s here has no column %s: use an ah at least as new as "
                                 "the export's",
                                 table, col);
                break;
            }
            if ((k && ah_buf_printf(&b, ", ")) || quote_ident(&b, col) ||
                ah_buf_printf(&vals, "%s?%d", k ? ", " : "", k + 1))
                rc = AH_E_NOMEM;
            k++;
        }
        if (rc == 0 && ah_buf_printf(&b, ") VALUES (%s)", vals.p ? vals.p : ""))
            rc = AH_E_NOMEM;
        sqlite3_stmt *st = NULL;
        if (rc == 0 && sqlite3_prepare_v2(c->db, b.p, (int)b.n, &st, NULL) != SQLITE_OK)
            rc = problem_set(reterr, AH_E_DB, "table %s: %s", table, sqlite3_errmsg(c->db));
        k = 0;
        json_object_foreach(rc == 0 ? row : NULL, col, v) {
            const char *type = json_string_value(json_object_get(cols, col));
            if (bind_value(st, ++k, v, type && strcasecmp(type, "TEXT") == 0) != SQLITE_OK)
                rc = problem_set(reterr, AH_E_INVAL, "table %s, column %s: not a value", table,
                                 col);
        }
        if (rc == 0 && sqlite3_step(st) != SQLITE_DONE)
            rc = problem_set(reterr, AH_E_DB, "table %s: %s", table, sqlite3_errmsg(c->db));
        sqlite3_finalize(st);
        ah_buf_clear(&b);
        ah_buf_clear(&vals);
        if (rc < 0)
            break;
    }
    if (rc == 0 && (rc = sq_exec(c, "COMMIT")) < 0)
        problem_set(reterr, rc, "table %s: cannot commit", table);
    json_decref(cols);
    sq_release(s, c); /* rolls back what is left open */
    return rc;
}
