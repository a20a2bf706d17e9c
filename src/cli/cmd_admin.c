/*
 * cmd_admin.c — `ah admin api-key create|list|revoke`: API keys managed directly on the
 * database (D22), so the first admin key can be made before any server runs or while one runs
 * (it switches to requiring credentials within a second). The key text is printed once; the
 * database keeps only a salted hash. Each change is audited like its REST twin (actor
 * "cli:<user>").
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../auth/auth.h"
#include "cli.h"

struct admin_opts {
    const char *db, *tenant, *project, *role, *name, *expires;
    bool impersonate, json;
};

static void usage(FILE *out, const char *which) {
    if (strcmp(which, "create") == 0)
        fprintf(out, "usage: ah admin api-key create --role viewer|operator|admin --tenant T "
                     "[--project P]\n       [--name TEXT] [--expires RFC3339|30d|12h] "
                     "[--impersonate] [--db URL] [--json]\n\nPrints the new key once "
                     "(ahk_<id>_<secret>); the database keeps a salted hash only.\n");
    else if (strcmp(which, "list") == 0)
        fprintf(out, "usage: ah admin api-key list [--tenant T] [--db URL] [--json]\n");
    else
        fprintf(out, "usage: ah admin api-key revoke ID [--tenant T] [--db URL]\n");
    fprintf(out, "\n--db defaults to AH_DB, else $XDG_DATA_HOME/agent-harbor/state.db (the "
                 "server's default).\n");
}

/* Parses the options; -1 after --help, 0, or an exit code. */
static int parse(int argc, char **argv, const char *which, struct admin_opts *o) {
    static const struct option longs[] = {
        {"db", required_argument, NULL, 'd'},      {"tenant", required_argument, NULL, 't'},
        {"project", required_argument, NULL, 'p'}, {"role", required_argument, NULL, 'r'},
        {"name", required_argument, NULL, 'n'},    {"expires", required_argument, NULL, 'e'},
        {"impersonate", no_argument, NULL, 'i'},   {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->db = getenv("AH_DB");
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
        switch (c) {
        case 'd': o->db = optarg; break;
        case 't': o->tenant = optarg; break;
        case 'p': o->project = optarg; break;
        case 'r': o->role = optarg; break;
        case 'n': o->name = optarg; break;
        case 'e': o->expires = optarg; break;
        case 'i': o->impersonate = true; break;
        case 'j': o->json = true; break;
        case 'h': usage(stdout, which); return -1;
        case ':':
            fprintf(stderr, "ah admin api-key %s: %s needs a value\n", which, argv[optind - 1]);
            return EXIT_USAGE;
        default:
            fprintf(stderr, "ah admin api-key %s: unknown option '%s'\n", which, argv[optind - 1]);
            usage(stderr, which);
            return EXIT_USAGE;
        }
    }
    return 0;
}

static int open_store(const char *which, const struct admin_opts *o, struct store **ret) {
    char what[48];
    snprintf(what, sizeof(what), "admin api-key %s", which);
    return config_open_store(what, o->db, ret);
}

static const char *user_name(void) {
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_name ? pw->pw_name : "unknown";
}

/* "2027-01-01T00:00:00Z", or a duration from now: 30d, 12h, 45m. */
static int parse_expiry(const char *s, int64_t *ret) {
    if (time_parse(s, ret) == 0)
        return 0;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || !end || end == s || n <= 0 || n > 100000 || end[1] != '\0')
        return AH_E_INVAL;
    int64_t unit = *end == 'd' ? 86400000LL : *end == 'h' ? 3600000LL : *end == 'm' ? 60000LL : 0;
    if (!unit)
        return AH_E_INVAL;
    *ret = time_now_ms() + n * unit;
    return 0;
}

int cmd_admin_key_create(int argc, char **argv) {
    struct admin_opts o;
    int rc = parse(argc, argv, "create", &o);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (optind < argc) {
        fprintf(stderr, "ah admin api-key create: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (!o.role || !o.tenant) {
        fprintf(stderr, "ah admin api-key create: --role and --tenant are required\n");
        return EXIT_USAGE;
    }
    struct auth_key_spec spec = {.tenant = o.tenant, .project = o.project, .name = o.name,
                                 .impersonate = o.impersonate};
    if (auth_role_parse(o.role, &spec.role) < 0) {
        fprintf(stderr, "ah admin api-key create: --role must be viewer, operator or admin\n");
        return EXIT_USAGE;
    }
    if (o.expires && parse_expiry(o.expires, &spec.expires_at) < 0) {
        fprintf(stderr, "ah admin api-key create: --expires takes an RFC 3339 time or a "
                        "duration such as 30d, 12h or 45m\n");
        return EXIT_USAGE;
    }
    struct ah_problem p = {0};
    if (auth_key_spec_check(&spec, time_now_ms(), &p) < 0) {
        fprintf(stderr, "ah admin api-key create: %s\n", p.detail);
        json_t *errs = p.errors;
        const char *field;
        json_t *msgs;
        json_object_foreach(errs, field, msgs) {
            size_t i;
            json_t *m;
            json_array_foreach(msgs, i, m) fprintf(stderr, "  %s: %s\n", field,
                                                  json_string_value(m));
        }
        problem_clear(&p);
        return EXIT_VALIDATION;
    }
    struct store *st = NULL;
    if ((rc = open_store("create", &o, &st)))
        return rc;
    char actor[160];
    snprintf(actor, sizeof(actor), "cli:%s", user_name());
    struct audit_entry e = {.ts = time_now_ms(), .tenant = spec.tenant, .actor = actor,
                            .action = "api-key.create", .source = "local",
                            .outcome = "success"};
    char *key = NULL;
    struct apikey_row *row = NULL;
    rc = auth_key_create(st, &spec, &e, &key, &row);
    store_close(st);
    if (rc < 0) {
        fprintf(stderr, "ah admin api-key create: cannot store the key: %s\n", ah_strerror(rc));
        return EXIT_GENERAL;
    }
    if (o.json) {
        json_t *j = auth_key_json(row);
        if (j)
            json_object_set_new(j, "key", json_string(key));
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(j);
    } else {
        printf("%s\n", key);
        fprintf(stderr, "API key %s (%s of tenant %s%s%s) created; it is shown only this once\n",
                row->id, row->role, row->tenant_id, row->project_id ? ", project " : "",
                row->project_id ? row->project_id : "");
    }
    memset(key, 0, strlen(key));
    free(key);
    apikey_row_free(row);
    return EXIT_OK;
}

int cmd_admin_key_list(int argc, char **argv) {
    struct admin_opts o;
    int rc = parse(argc, argv, "list", &o);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    struct store *st = NULL;
    if ((rc = open_store("list", &o, &st)))
        return rc;
    struct page pg = {.page = 1, .per_page = 1000};
    struct apikey_row **rows = NULL;
    size_t n = 0;
    int64_t total = 0;
    rc = store_apikey_list(st, o.tenant, &pg, &rows, &n, &total);
    store_close(st);
    if (rc < 0) {
        fprintf(stderr, "ah admin api-key list: %s\n", ah_strerror(rc));
        return EXIT_GENERAL;
    }
    if (!o.json)
        printf("%-18s %-9s %-16s %-12s %-24s %s\n", "ID", "ROLE", "TENANT", "PROJECT", "CREATED",
               "STATE");
    int64_t now = time_now_ms();
    for (size_t i = 0; i < n; i++) {
        struct apikey_row *k = rows[i];
        if (o.json) {
            json_t *j = auth_key_json(k);
            char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
            if (text)
                printf("%s\n", text);
            free(text);
            json_decref(j);
            continue;
        }
        char created[TIME_RFC3339_LEN + 1];
        time_format(k->created_at, created);
        const char *state = k->revoked_at                            ? "revoked"
                            : k->expires_at && k->expires_at <= now ? "expired"
                                                                     : "active";
        printf("%-18s %-9s %-16s %-12s %-24s %s\n", k->id, k->role, k->tenant_id,
               k->project_id ? k->project_id : "-", created, state);
    }
    apikey_rows_free(rows, n);
    return EXIT_OK;
}

int cmd_admin_key_revoke(int argc, char **argv) {
    struct admin_opts o;
    int rc = parse(argc, argv, "revoke", &o);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (optind + 1 != argc) {
        fprintf(stderr, "ah admin api-key revoke: give one key id\n");
        return EXIT_USAGE;
    }
    const char *id = argv[optind];
    char parsed[AUTH_ID_MAX];
    const char *secret;
    if (auth_key_parse(id, parsed, &secret) == 0)
        id = argv[optind] = parsed; /* a whole key was pasted: its id is enough */
    struct store *st = NULL;
    if ((rc = open_store("revoke", &o, &st)))
        return rc;
    char actor[160];
    snprintf(actor, sizeof(actor), "cli:%s", user_name());
    struct audit_entry e = {.ts = time_now_ms(), .tenant = o.tenant, .actor = actor,
                            .action = "api-key.revoke", .target = id, .source = "local",
                            .outcome = "success"};
    rc = store_apikey_revoke(st, o.tenant, id, time_now_ms(), &e);
    store_close(st);
    if (rc == AH_E_NOTFOUND) {
        fprintf(stderr, "ah admin api-key revoke: no active API key %s\n", id);
        return EXIT_GENERAL;
    }
    if (rc < 0) {
        fprintf(stderr, "ah admin api-key revoke: %s\n", ah_strerror(rc));
        return EXIT_GENERAL;
    }
    fprintf(stderr, "API key %s revoked\n", id);
    return EXIT_OK;
}
