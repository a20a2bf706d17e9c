/*
 * cmd_admin_db.c — `ah admin migrate|export|import`: the database itself, offline (D47).
 *   migrate            applies the migrations this ah has (as a server's start would) and says
 *                      which schema version the database is at;
 *   export [--out F]   writes every row as JSON lines (stdout by default);
 *   import FILE        loads an export into an empty database of either backend and checks
 *                      counts and checksums; e.g. moving from embedded SQLite to PostgreSQL:
 *                      ah admin export --db state.db --out all.jsonl
 *                      ah admin import all.jsonl --db postgresql://…
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct db_opts {
    const char *db, *out;
    bool json;
    int first_arg; /* optind after parsing */
};

static int parse(int argc, char **argv, const char *cmd, const char *usage, struct db_opts *o) {
    static const struct option longs[] = {
        {"db", required_argument, NULL, 'd'},
        {"out", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->db = getenv("AH_DB");
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
        switch (c) {
        case 'd': o->db = optarg; break;
        case 'o': o->out = optarg; break;
        case 'j': o->json = true; break;
        case 'h': printf("%s", usage); return -1;
        default:
            fprintf(stderr, "ah admin %s: unknown or incomplete option %s\n%s", cmd,
                    argv[optind - 1], usage);
            return EXIT_USAGE;
        }
    }
    o->first_arg = optind;
    return 0;
}

static int open_db(const char *cmd, const struct db_opts *o, struct store **ret) {
    char what[32];
    snprintf(what, sizeof(what), "admin %s", cmd);
    return config_open_store(what, o->db, ret);
}

#define DB_HELP                                                                                   \
    "\n--db defaults to AH_DB, else $XDG_DATA_HOME/agent-harbor/state.db (the server's "          \
    "default);\nit takes a file or a postgresql:// URL.\n"

int cmd_admin_migrate(int argc, char **argv) {
    static const char usage[] = "usage: ah admin migrate [--db URL] [--json]\n\nApplies the "
                                "schema migrations this ah has and prints the version.\n" DB_HELP;
    struct db_opts o;
    int rc = parse(argc, argv, "migrate", usage, &o);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.first_arg < argc) {
        fprintf(stderr, "ah admin migrate: unexpected argument %s\n%s", argv[o.first_arg], usage);
        return EXIT_USAGE;
    }
    struct store *st = NULL;
    if ((rc = open_db("migrate", &o, &st)))
        return rc;
    int version = 0, applied = 0;
    store_schema_version(st, &version, &applied);
    if (o.json)
        printf("{\"schemaVersion\":%d,\"applied\":%d}\n", version, applied);
    else
        printf("schema version %d (%d migration%s applied now)\n", version, applied,
               applied == 1 ? "" : "s");
    store_close(st);
    return EXIT_OK;
}

int cmd_admin_export(int argc, char **argv) {
    static const char usage[] =
        "usage: ah admin export [--db URL] [--out FILE]\n\nWrites every row of the database as "
        "JSON lines (to stdout without --out), with each\ntable's row count and checksum at the "
        "end; `ah admin import` loads it into either backend.\n" DB_HELP;
    struct db_opts o;
    int rc = parse(argc, argv, "export", usage, &o);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.first_arg < argc) {
        fprintf(stderr, "ah admin export: unexpected argument %s\n%s", argv[o.first_arg], usage);
        return EXIT_USAGE;
    }
    FILE *out = stdout;
    if (o.out && !(out = fopen(o.out, "wx"))) {
        fprintf(stderr, "ah admin export: cannot create %s: %s\n", o.out, strerror(errno));
        return EXIT_GENERAL;
    }
    struct store *st = NULL;
    if ((rc = open_db("export", &o, &st))) {
        if (out != stdout)
            fclose(out);
        return rc;
    }
    struct ah_problem p = {0};
    rc = store_export(st, out, &p);
    store_close(st);
    if (out != stdout && fclose(out) != 0 && rc == 0)
        rc = problem_set(&p, AH_E_IO, "cannot write %s: %s", o.out, strerror(errno));
    if (rc < 0) {
        fprintf(stderr, "ah admin export: %s\n", p.detail);
        if (o.out)
            remove(o.out); /* no half archive left to be imported by mistake */
        problem_clear(&p);
        return EXIT_GENERAL;
    }
    return EXIT_OK;
}

int cmd_admin_import(int argc, char **argv) {
    static const char usage[] =
        "usage: ah admin import FILE [--db URL] [--json]\n\nLoads an `ah admin export` archive "
        "into an empty database (either backend): the\narchive is checked against its trailer "
        "first, then loaded, then every table is\nread back and compared by row count and "
        "checksum.\n" DB_HELP;
    struct db_opts o;
    int rc = parse(argc, argv, "import", usage, &o);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (argc - o.first_arg != 1) {
        fprintf(stderr, "ah admin import: give one archive file\n%s", usage);
        return EXIT_USAGE;
    }
    const char *path = argv[o.first_arg];
    FILE *in = fopen(path, "r");
    if (!in) {
        fprintf(stderr, "ah admin import: cannot open %s: %s\n", path, strerror(errno));
        return EXIT_GENERAL;
    }
    struct store *st = NULL;
    if ((rc = open_db("import", &o, &st))) {
        fclose(in);
        return rc;
    }
    struct ah_problem p = {0};
    json_t *summary = NULL;
    rc = store_import(st, in, &summary, &p);
    store_close(st);
    fclose(in);
    if (rc < 0) {
        fprintf(stderr, "ah admin import: %s\n", p.detail);
        problem_clear(&p);
        return rc == AH_E_CONFLICT || rc == AH_E_INVAL ? EXIT_VALIDATION : EXIT_GENERAL;
    }
    if (o.json) {
        json_dumpf(summary, stdout, JSON_COMPACT);
        putchar('\n');
    } else {
        const char *table;
        json_t *n;
        int64_t total = 0;
        json_object_foreach(summary, table, n) {
            total += json_integer_value(n);
        }
        printf("imported %lld rows in %zu tables; counts and checksums match the archive\n",
               (long long)total, json_object_size(summary));
    }
    json_decref(summary);
    return EXIT_OK;
}
