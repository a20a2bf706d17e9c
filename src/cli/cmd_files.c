/*
 * cmd_files.c — `ah session files ID` (what a session changed, one line per file) and
 * `ah session diff ID [PATH]` (its diff). Colour only on a terminal: piped, the output is the
 * server's text unchanged, so `ah session diff ID --format patch | git apply` works.
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"

enum { O_FROM = 0x200, O_TO, O_FORMAT, O_CONTEXT, O_STATUS, O_PATH, O_FULL };

static const struct option longopts[] = {
    CLIENT_LONG_OPTIONS,
    {"from", required_argument, NULL, O_FROM},
    {"to", required_argument, NULL, O_TO},
    {"format", required_argument, NULL, O_FORMAT},
    {"context", required_argument, NULL, O_CONTEXT},
    {"status", required_argument, NULL, O_STATUS},
    {"path", required_argument, NULL, O_PATH},
    {"full", no_argument, NULL, O_FULL},
    {NULL, 0, NULL, 0},
};

struct fargs {
    const char *from, *to, *format, *status, *path;
    int64_t context;
    bool full;
    char **args;
    int nargs;
};

/* 0, -1 after the help, or an exit code. `diff` allows the diff options, else the files ones. */
static int parse(const char *name, const char *usage, bool diff, int argc, char **argv,
                 struct client_opts *o, struct fargs *a) {
    client_opts_init(o, name);
    memset(a, 0, sizeof(*a));
    a->context = -1;
    int opt, code = 0;
    optind = 1;
    while (code == 0 && (opt = getopt_long(argc, argv, CLIENT_SHORT_OPTIONS, longopts, NULL)) != -1) {
        bool diff_only = opt == O_FORMAT || opt == O_CONTEXT || opt == O_FULL;
        bool files_only = opt == O_STATUS || opt == O_PATH;
        if ((diff_only && !diff) || (files_only && diff)) {
            code = client_usage_error(o, "unknown option");
            break;
        }
        switch (opt) {
        case O_FROM: a->from = optarg; break;
        case O_TO: a->to = optarg; break;
        case O_FORMAT:
            a->format = optarg;
            if (strcmp(optarg, "unified") && strcmp(optarg, "split") && strcmp(optarg, "html") &&
                strcmp(optarg, "patch"))
                code = client_usage_error(o, "--format must be unified, split, html or patch");
            break;
        case O_CONTEXT: code = client_opt_int(o, "--context", optarg, 0, 10, &a->context); break;
        case O_STATUS: a->status = optarg; break;
        case O_PATH: a->path = optarg; break;
        case O_FULL: a->full = true; break;
        default: code = client_opts_handle(o, opt, argc, argv); break;
        }
    }
    if (code < 0) {
        fputs(usage, stdout);
        client_opts_help(stdout);
        return -1;
    }
    if (code || (code = client_opts_finish(o)) != 0)
        return code;
    a->nargs = argc - optind;
    a->args = argv + optind;
    if (a->nargs < 1 || !a->args[0][0])
        return client_usage_error(o, "which session? (give its id)");
    if (a->nargs > (diff ? 2 : 1))
        return client_usage_error(o, "unexpected argument '%s'", a->args[diff ? 2 : 1]);
    return 0;
}

static const char files_usage[] =
    "usage: ah session files ID [--status S] [--path GLOB] [--from P] [--to P] [--json]\n"
    "\n"
    "Lists the files a session changed: status (A added, M modified, D deleted, R renamed),\n"
    "lines added and removed (from the real diff), path.\n"
    "  --status S      added, modified, deleted or renamed\n"
    "  --path GLOB     only paths matching (*, **, ?)\n"
    "  --from P, --to P  the points compared: base, current or a snapshot id\n"
    "                  (default: base to current)\n"
    "  --json          the server's answer\n";

int cmd_session_files(int argc, char **argv) {
    struct client_opts o;
    struct fargs a;
    int code = parse("session files", files_usage, false, argc, argv, &o, &a);
    if (code)
        return code < 0 ? EXIT_OK : code;
    struct client_conn c = {0};
    if ((code = client_conn_open(&o, &c)) != 0)
        return code;
    struct ah_api_error e = {0};
    json_t *all = json_array();
    for (int64_t page = 1; all; page++) {
        struct ah_files_query q = {.from = a.from, .to = a.to, .status = a.status,
                                   .path = a.path, .page = page, .per_page = 200};
        char *body = NULL;
        int rc = ah_client_session_files(c.client, a.args[0], &q, &body, &e);
        if (rc < 0) {
            char what[160];
            snprintf(what, sizeof(what), "cannot list the files of session %s", a.args[0]);
            code = client_fail(&o, &c, what, rc, &e);
            break;
        }
        json_t *j = json_loads(body, 0, NULL);
        free(body);
        json_array_extend(all, json_object_get(j, "items"));
        bool more = json_is_integer(json_object_get(j, "nextPage"));
        json_decref(j);
        if (!more)
            break;
    }
    if (code == 0 && all) {
        size_t i;
        json_t *f;
        json_array_foreach(all, i, f) {
            if (o.json) {
                char *line = json_dumps(f, JSON_COMPACT);
                if (line)
                    puts(line);
                free(line);
                continue;
            }
            const char *st = json_string_value(json_object_get(f, "status"));
            const char *old = json_string_value(json_object_get(f, "old_path"));
            char letter = st ? (char)(st[0] - 'a' + 'A') : '?';
            const char *col = !o.color ? "" : letter == 'A' ? "\033[32m" : letter == 'D' ? "\033[31m"
                                                                                         : "\033[33m";
            printf("%s%c%s %+6lld %-6lld %s%s%s\n", col, letter, o.color ? "\033[0m" : "",
                   (long long)json_integer_value(json_object_get(f, "lines_added")),
                   -(long long)json_integer_value(json_object_get(f, "lines_removed")),
                   old ? old : "", old ? " -> " : "",
                   json_string_value(json_object_get(f, "path")));
        }
    }
    json_decref(all);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}

static const char diff_usage[] =
    "usage: ah session diff ID [PATH] [--from P] [--to P] [--format F] [--context N] [--full]\n"
    "\n"
    "Prints what a session changed as a diff (coloured on a terminal, plain when piped):\n"
    "  --format F      unified (default; as `git diff`), patch (complete, for `git apply`,\n"
    "                  binary files included), split or html (the server's JSON)\n"
    "  --from P, --to P  the points compared: base, current or a snapshot id\n"
    "  --context N     lines of context, 0..10 (default 3)\n"
    "  --full          whole files as context\n";

static void print_diff(const struct client_opts *o, const char *text, size_t len) {
    if (!o->color) {
        fwrite(text, 1, len, stdout);
        return;
    }
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        const char *col = !strncmp(p, "diff --git", 10) || !strncmp(p, "+++", 3) ||
                                  !strncmp(p, "---", 3) || !strncmp(p, "index ", 6)
                              ? "\033[1m"
                          : p[0] == '@' ? "\033[36m"
                          : p[0] == '+' ? "\033[32m"
                          : p[0] == '-' ? "\033[31m"
                                        : NULL;
        size_t body = n && p[n - 1] == '\n' ? n - 1 : n;
        if (col)
            printf("%s%.*s\033[0m%s", col, (int)body, p, body < n ? "\n" : "");
        else
            fwrite(p, 1, n, stdout);
        p += n;
    }
}

int cmd_session_diff(int argc, char **argv) {
    struct client_opts o;
    struct fargs a;
    int code = parse("session diff", diff_usage, true, argc, argv, &o, &a);
    if (code)
        return code < 0 ? EXIT_OK : code;
    struct client_conn c = {0};
    if ((code = client_conn_open(&o, &c)) != 0)
        return code;
    const char *format = a.format ? a.format : "unified";
    bool patch = !strcmp(format, "patch");
    bool unified = !strcmp(format, "unified");
    struct ah_diff_query q = {.path = a.nargs > 1 ? a.args[1] : NULL, .from = a.from, .to = a.to,
                              .format = format, .context = (int)a.context, .full = a.full};
    struct ah_api_error e = {0};
    char *body = NULL;
    int rc = ah_client_session_diff(c.client, a.args[0], &q, &body, &e);
    if (rc < 0) {
        char what[160];
        snprintf(what, sizeof(what), "cannot get the diff of session %s", a.args[0]);
        code = client_fail(&o, &c, what, rc, &e);
    } else if (patch) {
        print_diff(&o, body, strlen(body));
    } else if (unified && !o.json) {
        /* the unified text is the files' `diff` fields in order */
        json_t *j = json_loads(body, 0, NULL);
        json_t *files = json_object_get(j, "files");
        if (!files && json_object_get(j, "diff")) {
            const char *t = json_string_value(json_object_get(j, "diff"));
            print_diff(&o, t, strlen(t));
        }
        size_t i;
        json_t *f;
        json_array_foreach(files, i, f) {
            const char *t = json_string_value(json_object_get(f, "diff"));
            if (t)
                print_diff(&o, t, strlen(t));
        }
        json_decref(j);
    } else if (!strcmp(format, "html") && !o.json) {
        json_t *j = json_loads(body, 0, NULL);
        const char *h = json_string_value(json_object_get(j, "html"));
        fputs(h ? h : "", stdout);
        json_decref(j);
    } else {
        puts(body);
    }
    free(body);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}
