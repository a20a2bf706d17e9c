/*
 * cmd_timeline.c — `ah session timeline|snapshot|seek|branch` (issue 12, API.md §7.8): a
 * session's moments and snapshots, a manual snapshot, a read-only view of a point, and a new
 * session branched from a point (with its files and its conversation up to there).
 *
 * A point (--at) is a snapshot id (snap-…), `seq:N` (the newest snapshot at or before event N)
 * or a number of seconds since the session started.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { O_LABEL = 0x300, O_DESC, O_AT, O_PROMPT, O_NAME, O_SETTINGS, O_FOLLOW };

static const struct option longopts[] = {
    CLIENT_LONG_OPTIONS,
    {"label", required_argument, NULL, O_LABEL},
    {"description", required_argument, NULL, O_DESC},
    {"at", required_argument, NULL, O_AT},
    {"prompt", required_argument, NULL, O_PROMPT},
    {"name", required_argument, NULL, O_NAME},
    {"settings", required_argument, NULL, O_SETTINGS},
    {"follow", no_argument, NULL, O_FOLLOW},
    {NULL, 0, NULL, 0},
};

struct targs {
    const char *label, *desc, *at, *prompt, *name, *settings;
    bool follow;
    char *id;
};

/* `allowed` lists the O_* this command takes (0-terminated). 0, -1 after the help, or an exit
 * code. */
static int parse(const char *name, const char *usage, const int *allowed, int argc, char **argv,
                 struct client_opts *o, struct targs *a) {
    client_opts_init(o, name);
    memset(a, 0, sizeof(*a));
    int opt, code = 0;
    optind = 1;
    while (code == 0 &&
           (opt = getopt_long(argc, argv, CLIENT_SHORT_OPTIONS "f", longopts, NULL)) != -1) {
        if (opt == 'f')
            opt = O_FOLLOW;
        if (opt >= O_LABEL && opt <= O_FOLLOW) {
            const int *k = allowed;
            while (*k && *k != opt)
                k++;
            if (!*k) {
                code = client_usage_error(o, "unknown option");
                break;
            }
        }
        switch (opt) {
        case O_LABEL: a->label = optarg; break;
        case O_DESC: a->desc = optarg; break;
        case O_AT: a->at = optarg; break;
        case O_PROMPT: a->prompt = optarg; break;
        case O_NAME: a->name = optarg; break;
        case O_SETTINGS: a->settings = optarg; break;
        case O_FOLLOW: a->follow = true; break;
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
    if (argc - optind < 1 || !argv[optind][0])
        return client_usage_error(o, "which session? (give its id)");
    if (argc - optind > 1)
        return client_usage_error(o, "unexpected argument '%s'", argv[optind + 1]);
    a->id = argv[optind];
    return 0;
}

/* --at: snap-…, seq:N or seconds. false after a usage error (*code set). */
static bool point(struct client_opts *o, const char *at, struct ah_timeline_point *p,
                  int *code) {
    memset(p, 0, sizeof(*p));
    if (!at) {
        *code = client_usage_error(o, "which point? (--at SNAPSHOT, --at seq:N or --at SECONDS)");
        return false;
    }
    char *end;
    if (!strncmp(at, "snap-", 5)) {
        p->fs_snapshot_id = at;
    } else if (!strncmp(at, "seq:", 4)) {
        long long v = strtoll(at + 4, &end, 10);
        if (*end || end == at + 4 || v < 1) {
            *code = client_usage_error(o, "--at seq:N needs an event seq ≥ 1");
            return false;
        }
        p->seq = v;
    } else {
        double v = strtod(at, &end);
        if (*end || end == at || !(v >= 0)) {
            *code = client_usage_error(
                o, "--at must be a snapshot id (snap-…), seq:N or a number of seconds ≥ 0");
            return false;
        }
        p->has_ts = true;
        p->ts = v;
    }
    return true;
}

/* Prints the answer as JSON (--json) or through `human`; the exit code. */
static int answer(struct client_opts *o, struct client_conn *c, const char *what, int rc,
                  char *body, struct ah_api_error *e, void (*human)(json_t *j)) {
    int code = EXIT_OK;
    if (rc < 0) {
        code = client_fail(o, c, what, rc, e);
    } else if (o->json) {
        puts(body ? body : "{}");
    } else {
        json_t *j = json_loads(body ? body : "{}", 0, NULL);
        human(j);
        json_decref(j);
    }
    free(body);
    return code;
}

/* ---- timeline -------------------------------------------------------------------------------- */

static const char timeline_usage[] =
    "usage: ah session timeline ID [--json]\n"
    "\n"
    "Shows a session's timeline, in order: its moments (one per tool boundary, labelled with the\n"
    "tool, and manual ones) and its workspace snapshots, each with its offset in seconds since\n"
    "the session started and the seq of the event it follows.\n";

static int cmp_seq(const void *x, const void *y) {
    json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    json_int_t sa = json_integer_value(json_object_get(a, "seq"));
    json_int_t sb = json_integer_value(json_object_get(b, "seq"));
    double ta = json_number_value(json_object_get(a, "ts"));
    double tb = json_number_value(json_object_get(b, "ts"));
    return sa != sb ? (sa < sb ? -1 : 1) : ta < tb ? -1 : ta > tb;
}

static void timeline_human(json_t *j) {
    json_t *m = json_object_get(j, "moments"), *s = json_object_get(j, "fsSnapshots");
    printf("duration %.1fs, %zu moments, %zu snapshots\n",
           json_number_value(json_object_get(j, "durationSec")), json_array_size(m),
           json_array_size(s));
    size_t n = json_array_size(m) + json_array_size(s), k = 0;
    json_t **all = n ? calloc(n, sizeof(*all)) : NULL;
    if (!all)
        return;
    size_t i;
    json_t *v;
    json_array_foreach(m, i, v) all[k++] = v;
    json_array_foreach(s, i, v) all[k++] = v;
    qsort(all, k, sizeof(*all), cmp_seq);
    for (i = 0; i < k; i++) {
        json_t *x = all[i];
        bool snap = json_object_get(x, "snapshot") != NULL;
        printf("%9.2fs  seq %-6lld %-8s %-30s", json_number_value(json_object_get(x, "ts")),
               (long long)json_integer_value(json_object_get(x, "seq")),
               snap ? "snapshot" : "moment", json_string_value(json_object_get(x, "id")) ?: "");
        client_put_text(stdout, json_string_value(json_object_get(x, "label")) ?: "", 60, 0);
        if (snap)
            printf("  (%s, %lld bytes)", json_string_value(json_object_get(x, "kind")) ?: "",
                   (long long)json_integer_value(
                       json_object_get(json_object_get(x, "snapshot"), "size_bytes")));
        putchar('\n');
    }
    free(all);
}

int cmd_session_timeline(int argc, char **argv) {
    struct client_opts o;
    struct targs a;
    static const int allowed[] = {0};
    int code = parse("session timeline", timeline_usage, allowed, argc, argv, &o, &a);
    if (code)
        return code < 0 ? EXIT_OK : code;
    struct client_conn c = {0};
    if ((code = client_conn_open(&o, &c)) != 0)
        return code;
    struct ah_api_error e = {0};
    char *body = NULL;
    int rc = ah_client_session_timeline(c.client, a.id, &body, &e);
    code = answer(&o, &c, "cannot read the timeline", rc, body, &e, timeline_human);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}

/* ---- snapshot -------------------------------------------------------------------------------- */

static const char snapshot_usage[] =
    "usage: ah session snapshot ID [--label L] [--description D] [--json]\n"
    "\n"
    "Takes a snapshot of the session's workspace now (running, paused or ended) and puts it on\n"
    "its timeline; prints its id.\n";

static void snapshot_human(json_t *j) {
    puts(json_string_value(json_object_get(j, "id")) ?: "");
}

int cmd_session_snapshot(int argc, char **argv) {
    struct client_opts o;
    struct targs a;
    static const int allowed[] = {O_LABEL, O_DESC, 0};
    int code = parse("session snapshot", snapshot_usage, allowed, argc, argv, &o, &a);
    if (code)
        return code < 0 ? EXIT_OK : code;
    struct client_conn c = {0};
    if ((code = client_conn_open(&o, &c)) != 0)
        return code;
    struct ah_api_error e = {0};
    char *body = NULL;
    int rc = ah_client_session_snapshot(c.client, a.id, a.label, a.desc, &body, &e);
    code = answer(&o, &c, "cannot take a snapshot", rc, body, &e, snapshot_human);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}

/* ---- seek ------------------------------------------------------------------------------------ */

static const char seek_usage[] =
    "usage: ah session seek ID --at POINT [--json]\n"
    "\n"
    "Makes a read-only view of the session's workspace at a point and prints its directory.\n"
    "  --at POINT      a snapshot id (snap-…), seq:N (the newest snapshot at or before event\n"
    "                  N) or seconds since the session started\n";

static void seek_human(json_t *j) {
    puts(json_string_value(json_object_get(j, "mountPath")) ?: "");
}

int cmd_session_seek(int argc, char **argv) {
    struct client_opts o;
    struct targs a;
    static const int allowed[] = {O_AT, 0};
    int code = parse("session seek", seek_usage, allowed, argc, argv, &o, &a);
    if (code)
        return code < 0 ? EXIT_OK : code;
    struct ah_timeline_point p;
    if (!point(&o, a.at, &p, &code))
        return code;
    struct client_conn c = {0};
    if ((code = client_conn_open(&o, &c)) != 0)
        return code;
    struct ah_api_error e = {0};
    char *body = NULL;
    int rc = ah_client_session_seek(c.client, a.id, &p, &body, &e);
    code = answer(&o, &c, "cannot seek", rc, body, &e, seek_human);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}

/* ---- branch ---------------------------------------------------------------------------------- */

static const char branch_usage[] =
    "usage: ah session branch ID --at POINT [--prompt TEXT] [--name N] [--settings JSON]\n"
    "                         [--follow] [--json]\n"
    "\n"
    "Starts a new session from a point of this one: its workspace is the snapshot there, its\n"
    "history the session's events up to there, and its agent gets --prompt as the next message.\n"
    "Prints the new session's id.\n"
    "  --at POINT      a snapshot id (snap-…), seq:N or seconds since the session started\n"
    "  --prompt TEXT   the message the branch's agent starts with\n"
    "  --name N        a name for the branch\n"
    "  --settings JSON the agent's settings (default: the parent's)\n"
    "  -f, --follow    show the branch's progress until it ends (exit code: its outcome)\n";

int cmd_session_branch(int argc, char **argv) {
    struct client_opts o;
    struct targs a;
    static const int allowed[] = {O_AT, O_PROMPT, O_NAME, O_SETTINGS, O_FOLLOW, 0};
    int code = parse("session branch", branch_usage, allowed, argc, argv, &o, &a);
    if (code)
        return code < 0 ? EXIT_OK : code;
    struct ah_branch_spec spec = {
        .name = a.name, .injected_message = a.prompt, .settings_json = a.settings};
    if (!point(&o, a.at, &spec.at, &code))
        return code;
    struct client_conn c = {0};
    if ((code = client_conn_open(&o, &c)) != 0)
        return code;
    struct ah_api_error e = {0};
    char *body = NULL;
    int rc = ah_client_session_branch(c.client, a.id, &spec, &body, &e);
    if (rc < 0) {
        code = client_fail(&o, &c, "cannot branch the session", rc, &e);
    } else {
        json_t *j = json_loads(body, 0, NULL);
        const char *id = json_string_value(json_object_get(j, "id"));
        if (o.json)
            puts(body);
        else
            puts(id ? id : "");
        fflush(stdout);
        if (a.follow && id) {
            /* its own events only: the inherited ones are the parent's history */
            struct follow_opts fo = {
                .after_seq = json_integer_value(json_object_get(j, "seq"))};
            const char *ids[] = {id};
            code = client_follow(&o, &c, ids, 1, &fo);
        }
        json_decref(j);
    }
    free(body);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}
