/*
 * postgres_archive.c — export and import (archive.c; D47) on PostgreSQL: the schema's tables in
 * creation order, values by column type (integers, booleans as 0/1, bytea as bytes, the rest as
 * text), rows read in single-row mode (a table of millions of events is never held whole), and
 * serial counters moved past the imported ids.
 */
#include <stdio.h>
#include <string.h>

#include "postgres_internal.h"

/* PostgreSQL type oids (pg_type.h) */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_FLOAT4 700
#define OID_FLOAT8 701

static int tables_rows(struct pgs_conn *c, char ***ret, size_t *ret_n) {
    int rc = 0;
    PGresult *r = store_pg_run(c,
                               "SELECT c.relname FROM pg_class c JOIN pg_namespace n"
                               " ON n.oid = c.relnamespace WHERE n.nspname = current_schema()"
                               " AND c.relkind = 'r' ORDER BY c.oid",
                               NULL, &rc);
    if (!r)
        return rc;
    int rows = PQntuples(r);
    char **names = calloc((size_t)rows + 1, sizeof(*names));
    size_t n = 0;
    for (int i = 0; names && i < rows; i++) {
        const char *name = PQgetvalue(r, i, 0);
        if (store_archive_skip_table(name))
            continue;
        if (!(names[n++] = strdup(name)))
            rc = AH_E_NOMEM;
    }
    PQclear(r);
    if (!names || rc < 0) {
        for (size_t i = 0; names && i < n; i++)
            free(names[i]);
        free(names);
        return AH_E_NOMEM;
    }
    *ret = names;
    *ret_n = n;
    return 0;
}

int store_pg_archive_tables(void *impl, char ***ret, size_t *ret_n) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int rc = tables_rows(c, ret, ret_n);
    store_pg_release(s, c);
    return rc;
}

/* SQL text "<prefix>"table"<suffix>" with the name quoted by libpq; NULL on error. */
static char *with_table(PGconn *db, const char *prefix, const char *table, const char *suffix) {
    char *q = PQescapeIdentifier(db, table, strlen(table));
    char *sql = NULL;
    if (q && asprintf(&sql, "%s%s%s", prefix, q, suffix) < 0)
        sql = NULL;
    PQfreemem(q);
    return sql;
}

static json_t *value_of(const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col))
        return json_null();
    const char *text = PQgetvalue(r, row, col);
    switch (PQftype(r, col)) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        return json_integer(strtoll(text, NULL, 10));
    case OID_BOOL:
        return json_integer(text[0] == 't');
    case OID_FLOAT4:
    case OID_FLOAT8:
        return json_real(strtod(text, NULL));
    case OID_BYTEA: {
        size_t n = 0;
        unsigned char *p = PQunescapeBytea((const unsigned char *)text, &n);
        json_t *v = p ? store_archive_bytes(p, n) : NULL;
        PQfreemem(p);
        return v;
    }
    default: {
        size_t n = (size_t)PQgetlength(r, row, col);
        json_t *v = json_stringn(text, n);
        return v ? v : store_archive_bytes(text, n);
    }
    }
}

int store_pg_archive_read(void *impl, const char *table, int (*fn)(void *arg, json_t *row),
                          void *arg) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    /* one snapshot for the whole table, even while servers write */
    int rc = store_pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    char *sql = rc == 0 ? with_table(c->db, "SELECT * FROM ", table, "") : NULL;
    if (rc == 0 && (!sql || !PQsendQuery(c->db, sql) || !PQsetSingleRowMode(c->db)))
        rc = sql ? AH_E_DB : AH_E_NOMEM;
    free(sql);
    PGresult *r;
    bool sent = rc == 0;
    while (sent && (r = PQgetResult(c->db))) {
        ExecStatusType st = PQresultStatus(r);
        if (rc == 0 && st == PGRES_SINGLE_TUPLE) {
            json_t *row = json_object();
            for (int i = 0; row && i < PQnfields(r); i++) {
                const char *col = PQfname(r, i);
                if (!store_archive_skip_column(table, col) &&
                    json_object_set_new(row, col, value_of(r, 0, i)) < 0) {
                    json_decref(row);
                    row = NULL;
                }
            }
            rc = row ? fn(arg, row) : AH_E_NOMEM;
            json_decref(row);
        } else if (rc == 0 && st != PGRES_TUPLES_OK) {
            rc = store_pg_code(r);
        }
        PQclear(r); /* after an error the rest is drained, so the connection stays usable */
    }
    if (rc == 0)
        store_pg_exec(c, "COMMIT");
    store_pg_release(s, c);
    return rc;
}

int store_pg_archive_count(void *impl, const char *table, int64_t *ret) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    char *sql = with_table(c->db, "SELECT count(*) FROM ", table, "");
    PGresult *r = sql ? PQexec(c->db, sql) : NULL;
    int rc = !r ? AH_E_NOMEM : PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : store_pg_code(r);
    if (rc == 0)
        *ret = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    free(sql);
    store_pg_release(s, c);
    return rc;
}

/* Each column of table: {"name": {"type": oid, "serial": bool}}. */
static json_t *columns_of(struct pgs_conn *c, const char *table) {
    struct pgs_args a = {0};
    store_pg_arg_text(&a, table);
    int rc = 0;
    PGresult *r = store_pg_run(c,
                               "SELECT a.attname, a.atttypid::bigint,"
                               " coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%', false)"
                               " FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid"
                               " JOIN pg_namespace n ON n.oid = t.relnamespace"
                               " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid"
                               " AND d.adnum = a.attnum WHERE t.relname = $1"
                               " AND n.nspname = current_schema() AND a.attnum > 0"
                               " AND NOT a.attisdropped",
                               &a, &rc);
    json_t *cols = r ? json_object() : NULL;
    for (int i = 0; cols && i < PQntuples(r); i++)
        json_object_set_new(cols, PQgetvalue(r, i, 0),
                            json_pack("{s:I, s:b}", "type",
                                      (json_int_t)strtoll(PQgetvalue(r, i, 1), NULL, 10),
                                      "serial", PQgetvalue(r, i, 2)[0] == 't'));
    PQclear(r);
    return cols;
}

/* Inserts one row; the values are bound as text, bytea ones as binary. */
static int insert_row(struct pgs_conn *c, const char *table, const json_t *cols, json_t *row,
                      struct ah_problem *reterr) {
    size_t n = json_object_size(row);
    const char **vals = calloc(n + 1, sizeof(*vals));
    int *lens = calloc(n + 1, sizeof(*lens)), *fmts = calloc(n + 1, sizeof(*fmts));
    char **owned = calloc(n + 1, sizeof(*owned));
    struct ah_buf b = {0}, params = {0};
    char *q = PQescapeIdentifier(c->db, table, strlen(table));
    int rc = vals && lens && fmts && owned && q ? 0 : AH_E_NOMEM;
    if (rc == 0 && ah_buf_printf(&b, "INSERT INTO %s (", q))
        rc = AH_E_NOMEM;
    const char *col;
    json_t *v;
    size_t k = 0;
    json_object_foreach(rc == 0 ? row : NULL, col, v) {
        json_t *info = json_object_get(cols, col);
        if (!info) {
            rc = problem_set(reterr, AH_E_INVAL,
                             "table %s here has no column %s: use an ah at least as new as the "
                             "export's",
                             table, col);
            break;
        }
        char *qc = PQescapeIdentifier(c->db, col, strlen(col));
        if (!qc || ah_buf_printf(&b, "%s%s", k ? ", " : "", qc) ||
            ah_buf_printf(&params, "%s$%zu", k ? ", " : "", k + 1))
            rc = AH_E_NOMEM;
        PQfreemem(qc);
        bool bytea = json_integer_value(json_object_get(info, "type")) == OID_BYTEA;
        if (rc == 0 && json_is_integer(v)) {
            if (asprintf(&owned[k], "%lld", (long long)json_integer_value(v)) < 0)
                owned[k] = NULL, rc = AH_E_NOMEM;
            vals[k] = owned[k];
        } else if (rc == 0 && json_is_real(v)) {
            if (asprintf(&owned[k], "%.17g", json_real_value(v)) < 0)
                owned[k] = NULL, rc = AH_E_NOMEM;
            vals[k] = owned[k];
        } else if (rc == 0 && json_is_string(v)) {
            vals[k] = json_string_value(v);
            lens[k] = (int)json_string_length(v);
            fmts[k] = bytea; /* text into bytea: its bytes, as they are */
        } else if (rc == 0 && json_is_object(v)) {
            unsigned char *p = NULL;
            size_t len = 0;
            if ((rc = store_archive_unbytes(v, &p, &len)) < 0) {
                problem_set(reterr, rc, "table %s, column %s: not a value", table, col);
            } else {
                owned[k] = (char *)p;
                vals[k] = owned[k];
                lens[k] = (int)len;
                fmts[k] = 1; /* binary: bytea, or text that was not UTF-8 (refused if so) */
            }
        } else if (rc == 0 && !json_is_null(v)) {
            rc = problem_set(reterr, AH_E_INVAL, "table %s, column %s: not a value", table, col);
        }
        k++;
    }
    if (rc == 0 && ah_buf_printf(&b, ") VALUES (%s)", params.p ? params.p : ""))
        rc = AH_E_NOMEM;
    if (rc == 0) {
        PGresult *r = PQexecParams(c->db, b.p, (int)k, NULL, vals, lens, fmts, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = problem_set(reterr, store_pg_code(r), "table %s: %s", table,
                             PQresultErrorMessage(r));
        PQclear(r);
    }
    for (size_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    free(vals);
    free(lens);
    free(fmts);
    PQfreemem(q);
    ah_buf_clear(&b);
    ah_buf_clear(&params);
    return rc;
}

int store_pg_archive_write(void *impl, const char *table, json_t *rows,
                           struct ah_problem *reterr) {
    struct pgs *s = impl;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return problem_set(reterr, AH_E_UNAVAIL, "cannot reach the database");
    json_t *cols = columns_of(c, table);
    int rc = cols ? store_pg_exec(c, "BEGIN") : AH_E_NOMEM;
    size_t i;
    json_t *row;
    json_array_foreach(rc == 0 ? rows : NULL, i, row) {
        if ((rc = insert_row(c, table, cols, row, reterr)) < 0)
            break;
    }
    /* ids given explicitly do not move a serial's counter: move it past them */
    const char *col;
    json_t *info;
    json_object_foreach(rc == 0 ? cols : NULL, col, info) {
        if (!json_is_true(json_object_get(info, "serial")))
            continue;
        char *qc = PQescapeIdentifier(c->db, col, strlen(col));
        char *qt = PQescapeIdentifier(c->db, table, strlen(table));
        char *sql = NULL;
        if (qc && qt &&
            asprintf(&sql, "SELECT setval(pg_get_serial_sequence($1, $2), max(%s)) FROM %s", qc,
                     qt) < 0)
            sql = NULL;
        const char *params[2] = {table, col};
        PGresult *r = sql ? PQexecParams(c->db, sql, 2, NULL, params, NULL, NULL, 0) : NULL;
        if (!r || PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = problem_set(reterr, r ? store_pg_code(r) : AH_E_NOMEM,
                             "table %s: cannot move the counter of %s", table, col);
        PQclear(r);
        free(sql);
        PQfreemem(qc);
        PQfreemem(qt);
    }
    if (rc == 0 && (rc = store_pg_exec(c, "COMMIT")) < 0)
        problem_set(reterr, rc, "table %s: cannot commit", table);
    json_decref(cols);
    store_pg_release(s, c);
    return rc;
}
