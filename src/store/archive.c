/*
 * archive.c — export and import of a whole installation (D47), in one format for both backends.
 *
 * The archive is JSON lines:
 *   {"format": "agent-harbor-export", "version": 1, "backend": …, "schemaVersion": …, "createdAt": …}
 *   {"table": "tasks", "row": {"id": …, …}}              one per row, table after table
 *   {"end": true, "tables": {"tasks": {"rows": N, "checksum": "<16 hex>"}, …}}
 * A table's checksum is the sum (mod 2^64) over its rows of the first 8 bytes of SHA-256 of the
 * row as compact JSON with sorted keys: independent of row order and of column order, so the
 * same data in SQLite and in PostgreSQL gives the same number.
 *
 * Values: integers as JSON integers (booleans as 0/1), text as strings, bytes (and text that is
 * not UTF-8) as {"$bytes": base64}, NULL as null. The backends map their column types onto
 * these (sqlite_archive.c, postgres_archive.c).
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"

#define ARCHIVE_FORMAT "agent-harbor-export"
#define ARCHIVE_VERSION 1
#define ARCHIVE_BATCH 500                /* rows per insert transaction */
#define ARCHIVE_LINE_MAX (1ull << 30)    /* one row; the largest bodies are far below */

bool store_archive_skip_table(const char *table) {
    /* schema_migrations belongs to the target's own migrations; replicas and commands describe
     * access points at work, not the installation (D46), as executors describe machines that
     * enroll again by themselves (issue 16); sqlite_* are SQLite's own. */
    return strcmp(table, "schema_migrations") == 0 || strcmp(table, "replicas") == 0 ||
           strcmp(table, "executors") == 0 ||
           strcmp(table, "commands") == 0 || strncmp(table, "sqlite_", 7) == 0;
}

bool store_archive_skip_column(const char *table, const char *column) {
    return strcmp(table, "sessions") == 0 && strcmp(column, "owner") == 0;
}

json_t *store_archive_bytes(const void *p, size_t n) {
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    if (!b64)
        return NULL;
    EVP_EncodeBlock((unsigned char *)b64, p, (int)n);
    json_t *v = json_pack("{s:s}", "$bytes", b64);
    free(b64);
    return v;
}

int store_archive_unbytes(const json_t *v, unsigned char **ret, size_t *ret_n) {
    const char *b64 = json_string_value(json_object_get(v, "$bytes"));
    if (!json_is_object(v) || json_object_size(v) != 1 || !b64)
        return AH_E_INVAL;
    size_t len = strlen(b64);
    if (len % 4)
        return AH_E_INVAL;
    unsigned char *out = malloc(len / 4 * 3 + 1);
    if (!out)
        return AH_E_NOMEM;
    int n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len);
    if (n < 0) {
        free(out);
        return AH_E_INVAL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (len && b64[len - 1] == '=')
        n--;
    if (len > 1 && b64[len - 2] == '=')
        n--;
    *ret = out;
    *ret_n = (size_t)n;
    return 0;
}

/* ---- checksums --------------------------------------------------------------------------------- */

struct tally {
    int64_t rows;
    uint64_t sum;
};

static int tally_row(struct tally *t, const json_t *row) {
    char *text = json_dumps(row, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return AH_E_NOMEM;
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, strlen(text), md);
    free(text);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | md[i];
    t->sum += v;
    t->rows++;
    return 0;
}

static json_t *tally_json(const struct tally *t) {
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)t->sum);
    return json_pack("{s:I, s:s}", "rows", (json_int_t)t->rows, "checksum", hex);
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int tables_of(struct store *st, char ***ret, size_t *ret_n, struct ah_problem *reterr) {
    if (!st->ops->archive_tables)
        return problem_set(reterr, AH_E_NOTIMPL, "this database cannot be exported");
    int rc = st->ops->archive_tables(st->impl, ret, ret_n);
    return rc < 0 ? problem_set(reterr, rc, "cannot list the tables: %s", ah_strerror(rc)) : 0;
}

/* ---- export ------------------------------------------------------------------------------------ */

struct export_ctx {
    FILE *out;
    const char *table;
    struct tally t;
    int err;
};

static int export_row(void *arg, json_t *row) {
    struct export_ctx *x = arg;
    json_t *line = json_pack("{s:s, s:O}", "table", x->table, "row", row);
    int rc = line ? tally_row(&x->t, row) : AH_E_NOMEM;
    if (rc == 0 && (json_dumpf(line, x->out, JSON_COMPACT) < 0 || fputc('\n', x->out) == EOF))
        rc = x->err = AH_E_IO;
    json_decref(line);
    return rc;
}

int store_export(struct store *st, FILE *out, struct ah_problem *reterr) {
    char **tables = NULL;
    size_t n = 0;
    int rc = tables_of(st, &tables, &n, reterr);
    if (rc < 0)
        return rc;
    int version = 0, applied = 0;
    store_schema_version(st, &version, &applied);
    char now[TIME_RFC3339_LEN + 1];
    time_format(time_now_ms(), now);
    json_t *head = json_pack("{s:s, s:i, s:s, s:i, s:s}", "format", ARCHIVE_FORMAT, "version",
                             ARCHIVE_VERSION, "backend", st->ops->name, "schemaVersion", version,
                             "createdAt", now);
    json_t *sums = json_object();
    if (!head || !sums || json_dumpf(head, out, JSON_COMPACT) < 0 || fputc('\n', out) == EOF)
        rc = problem_set(reterr, head && sums ? AH_E_IO : AH_E_NOMEM, "cannot write the archive");
    json_decref(head);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct export_ctx x = {.out = out, .table = tables[i]};
        rc = st->ops->archive_read(st->impl, tables[i], export_row, &x);
        if (rc < 0 && x.err)
            problem_set(reterr, rc, "cannot write the archive: %s", strerror(errno));
        else if (rc < 0)
            problem_set(reterr, rc, "cannot read table %s: %s", tables[i], ah_strerror(rc));
        else if (json_object_set_new(sums, tables[i], tally_json(&x.t)) < 0)
            rc = problem_set(reterr, AH_E_NOMEM, "out of memory");
    }
    if (rc == 0) {
        json_t *end = json_pack("{s:b, s:O}", "end", 1, "tables", sums);
        if (!end || json_dumpf(end, out, JSON_COMPACT) < 0 || fputc('\n', out) == EOF ||
            fflush(out) == EOF)
            rc = problem_set(reterr, AH_E_IO, "cannot write the archive: %s", strerror(errno));
        json_decref(end);
    }
    json_decref(sums);
    free_names(tables, n);
    return rc;
}

/* ---- import ------------------------------------------------------------------------------------ */

/* Reads the archive's next line as JSON (NULL at the end, with *rc 0, or on error). */
static json_t *next_line(FILE *in, char **buf, size_t *cap, int64_t lineno, int *rc,
                         struct ah_problem *reterr) {
    ssize_t len = getline(buf, cap, in);
    if (len < 0) {
        *rc = ferror(in) ? problem_set(reterr, AH_E_IO, "cannot read the archive: %s",
                                       strerror(errno))
                         : 0;
        return NULL;
    }
    if ((size_t)len > ARCHIVE_LINE_MAX) {
        *rc = problem_set(reterr, AH_E_TOOLARGE, "line %lld of the archive is over 1 GiB",
                          (long long)lineno);
        return NULL;
    }
    json_error_t e;
    json_t *v = json_loadb(*buf, (size_t)len, 0, &e);
    if (!json_is_object(v)) {
        json_decref(v);
        *rc = problem_set(reterr, AH_E_INVAL, "line %lld of the archive is not a JSON object%s%s",
                          (long long)lineno, v ? "" : ": ", v ? "" : e.text);
        return NULL;
    }
    return v;
}

/* Pass 1: the header, every row line and the trailer agree (a cut or edited archive is refused
 * before anything is written). Returns the trailer's tables object. */
static int check_archive(FILE *in, json_t **ret_tables, struct ah_problem *reterr) {
    char *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    int64_t lineno = 1;
    json_t *head = next_line(in, &buf, &cap, lineno, &rc, reterr);
    const char *format = json_string_value(json_object_get(head, "format"));
    if (!rc && (!format || strcmp(format, ARCHIVE_FORMAT) != 0 ||
                json_integer_value(json_object_get(head, "version")) != ARCHIVE_VERSION))
        rc = problem_set(reterr, AH_E_INVAL, "not an Agent Harbor export (version %d)",
                         ARCHIVE_VERSION);
    json_decref(head);
    json_t *seen = json_object(), *end = NULL;
    struct tally t = {0};
    const char *cur = NULL;
    char *cur_name = NULL;
    while (rc == 0) {
        json_t *line = next_line(in, &buf, &cap, ++lineno, &rc, reterr);
        if (!line) {
            if (rc == 0 && !end)
                rc = problem_set(reterr, AH_E_INVAL, "the archive ends early (no trailer): "
                                                     "it was cut short");
            break;
        }
        if (end) {
            json_decref(line);
            rc = problem_set(reterr, AH_E_INVAL, "line %lld follows the trailer",
                             (long long)lineno);
            break;
        }
        if (json_is_true(json_object_get(line, "end"))) {
            end = line;
        } else {
            const char *table = json_string_value(json_object_get(line, "table"));
            json_t *row = json_object_get(line, "row");
            if (!table || !json_is_object(row) || store_archive_skip_table(table)) {
                rc = problem_set(reterr, AH_E_INVAL, "line %lld is not a row", (long long)lineno);
            } else if (!cur || strcmp(cur, table) != 0) {
                if (cur_name && json_object_set_new(seen, cur_name, tally_json(&t)) < 0)
                    rc = AH_E_NOMEM;
                if (json_object_get(seen, table))
                    rc = problem_set(reterr, AH_E_INVAL, "table %s appears twice", table);
                free(cur_name);
                cur = cur_name = strdup(table);
                t = (struct tally){0};
            }
            if (rc == 0)
                rc = tally_row(&t, row);
            json_decref(line);
        }
    }
    if (rc == 0 && cur_name && json_object_set_new(seen, cur_name, tally_json(&t)) < 0)
        rc = AH_E_NOMEM;
    free(cur_name);
    free(buf);
    json_t *tables = json_object_get(end, "tables");
    if (rc == 0 && !json_is_object(tables))
        rc = problem_set(reterr, AH_E_INVAL, "the archive's trailer has no tables");
    const char *name;
    json_t *want;
    json_object_foreach(rc == 0 ? tables : NULL, name, want) {
        json_t *got = json_object_get(seen, name);
        int64_t rows = json_integer_value(json_object_get(want, "rows"));
        if (rows == 0 && !got)
            continue;
        if (!got || !json_equal(got, want)) {
            rc = problem_set(reterr, AH_E_INVAL,
                             "table %s: the archive holds %lld rows (checksum %s) where its "
                             "trailer says %lld (%s): it was altered or cut",
                             name, got ? (long long)json_integer_value(json_object_get(got, "rows"))
                                       : 0LL,
                             got ? json_string_value(json_object_get(got, "checksum")) : "-",
                             (long long)rows, json_string_value(json_object_get(want, "checksum")));
            break;
        }
    }
    json_object_foreach(rc == 0 ? seen : NULL, name, want) {
        if (!json_object_get(tables, name))
            rc = problem_set(reterr, AH_E_INVAL, "table %s is missing from the trailer", name);
    }
    if (rc == 0)
        *ret_tables = json_incref(tables);
    json_decref(seen);
    json_decref(end);
    return rc;
}

static bool has_table(char **tables, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(tables[i], name) == 0)
            return true;
    return false;
}

struct verify_ctx {
    const char *table;
    struct tally t;
};

static int verify_row(void *arg, json_t *row) {
    return tally_row(&((struct verify_ctx *)arg)->t, row);
}

int store_import(struct store *st, FILE *in, json_t **ret_summary, struct ah_problem *reterr) {
    char **tables = NULL;
    size_t n = 0;
    int rc = tables_of(st, &tables, &n, reterr);
    if (rc < 0)
        return rc;
    json_t *want = NULL;
    /* the target must be empty: an import merges nothing */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int64_t rows = 0;
        if ((rc = st->ops->archive_count(st->impl, tables[i], &rows)) < 0)
            problem_set(reterr, rc, "cannot count table %s", tables[i]);
        else if (rows)
            rc = problem_set(reterr, AH_E_CONFLICT,
                             "the target database is not empty (table %s has %lld rows): import "
                             "into a new database",
                             tables[i], (long long)rows);
    }
    if (rc == 0)
        rc = check_archive(in, &want, reterr);
    const char *name;
    json_t *v;
    json_object_foreach(rc == 0 ? want : NULL, name, v) {
        if (!has_table(tables, n, name) && json_integer_value(json_object_get(v, "rows")) > 0)
            rc = problem_set(reterr, AH_E_INVAL,
                             "the archive has rows for table %s, which this version of the "
                             "database does not have: use an ah at least as new as the export's",
                             name);
    }
    /* pass 2: load, a batch per transaction */
    if (rc == 0 && fseek(in, 0, SEEK_SET) != 0)
        rc = problem_set(reterr, AH_E_IO, "the archive must be a file (it is read twice)");
    char *buf = NULL;
    size_t cap = 0;
    int64_t lineno = 1;
    if (rc == 0)
        json_decref(next_line(in, &buf, &cap, lineno, &rc, reterr)); /* the header */
    json_t *batch = json_array();
    char *table = NULL;
    while (rc == 0) {
        json_t *line = next_line(in, &buf, &cap, ++lineno, &rc, reterr);
        const char *t = json_string_value(json_object_get(line, "table"));
        bool flush = !line || !t || (table && strcmp(table, t) != 0) ||
                     json_array_size(batch) >= ARCHIVE_BATCH;
        if (rc == 0 && flush && table && json_array_size(batch)) {
            rc = st->ops->archive_write(st->impl, table, batch, reterr);
            json_array_clear(batch);
        }
        if (rc == 0 && t) {
            if (!table || strcmp(table, t) != 0) {
                free(table);
                table = strdup(t);
            }
            if (!table || json_array_append(batch, json_object_get(line, "row")) < 0)
                rc = problem_set(reterr, AH_E_NOMEM, "out of memory");
        }
        bool last = !line || !t;
        json_decref(line);
        if (last)
            break;
    }
    free(table);
    free(buf);
    json_decref(batch);
    /* pass 3: what the database now holds is what the archive says */
    json_t *summary = json_object();
    json_object_foreach(rc == 0 ? want : NULL, name, v) {
        struct verify_ctx x = {.table = name};
        if (!has_table(tables, n, name))
            continue; /* empty in the archive (checked above), absent here */
        if ((rc = st->ops->archive_read(st->impl, name, verify_row, &x)) < 0) {
            problem_set(reterr, rc, "cannot read table %s back", name);
            break;
        }
        json_t *got = tally_json(&x.t);
        bool same = got && json_equal(got, v);
        json_decref(got);
        if (!same) {
            rc = problem_set(reterr, AH_E_DB,
                             "table %s: %lld rows were loaded where the archive has %lld, or "
                             "their values differ: the import is not faithful",
                             name, (long long)x.t.rows,
                             (long long)json_integer_value(json_object_get(v, "rows")));
            break;
        }
        json_object_set_new(summary, name, json_integer(x.t.rows));
    }
    json_decref(want);
    free_names(tables, n);
    if (rc == 0 && ret_summary)
        *ret_summary = json_incref(summary);
    json_decref(summary);
    return rc;
}
