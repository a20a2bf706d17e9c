/*
 * cmd_session.c — `ah session list|show|events|logs|pause|resume|stop|rm|prompt`: watching and
 * steering sessions on an access point (CLI-and-enrollment.md §7.3).
 *
 * Everything the task-manager interface covers goes through it (list, show, follow, control,
 * prompt), so a local task manager can take over later; event history, logs, `rm --purge` and
 * `stop --reason` are REST-only calls of libah-client.
 *
 * Output: a table or key/value lines for people; with --json the server's JSON — one document
 * for list/show, one object per line for events and logs (history and live alike), so a
 * script can read both the same way.
 */
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"

#define HISTORY_PAGE 200 /* D6's largest perPage: fewest round trips */
#define MAX_TYPES 50     /* D5: query lists hold at most 50 items */

enum {
    A_STATUS = 1 << 0,
    A_AGENT = 1 << 1,
    A_PROJECT = 1 << 2,
    A_LIMIT = 1 << 3,
    A_PAGE = 1 << 4,
    A_FOLLOW = 1 << 5,
    A_TYPE = 1 << 6,
    A_TAIL = 1 << 7,
    A_REASON = 1 << 8,
    A_PURGE = 1 << 9,
};

enum {
    O_STATUS = 0x100,
    O_AGENT,
    O_PROJECT,
    O_LIMIT,
    O_PAGE,
    O_TYPE,
    O_TAIL,
    O_REASON,
    O_PURGE,
};

struct subcmd {
    const char *name; /* "session list" */
    unsigned allowed; /* A_* */
    int min_args, max_args;
    const char *usage; /* the help text before the shared options */
};

struct sargs {
    const char *status, *agent, *project, *types, *reason;
    int64_t limit, page, tail;
    bool follow, purge;
    int nargs;
    char **args;
};

/* Parses the options of one subcommand. Returns 0, -1 after printing the help, or an exit
 * code. */
static int parse(const struct subcmd *sc, int argc, char **argv, struct client_opts *o,
                 struct sargs *a) {
    static const struct option longopts[] = {
        CLIENT_LONG_OPTIONS,
        {"status", required_argument, NULL, O_STATUS},
        {"agent", required_argument, NULL, O_AGENT},
        {"project", required_argument, NULL, O_PROJECT},
        {"limit", required_argument, NULL, O_LIMIT},
        {"page", required_argument, NULL, O_PAGE},
        {"type", required_argument, NULL, O_TYPE},
        {"tail", required_argument, NULL, O_TAIL},
        {"reason", required_argument, NULL, O_REASON},
        {"purge", no_argument, NULL, O_PURGE},
        {"follow", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    static const struct {
        int opt;
        unsigned flag;
    } owners[] = {{O_STATUS, A_STATUS}, {O_AGENT, A_AGENT},   {O_PROJECT, A_PROJECT},
                  {O_LIMIT, A_LIMIT},   {O_PAGE, A_PAGE},     {O_TYPE, A_TYPE},
                  {O_TAIL, A_TAIL},     {O_REASON, A_REASON}, {O_PURGE, A_PURGE},
                  {'f', A_FOLLOW}};
    client_opts_init(o, sc->name);
    memset(a, 0, sizeof(*a));
    int opt, code = 0, idx = -1;
    while (code == 0 &&
           (opt = getopt_long(argc, argv, CLIENT_SHORT_OPTIONS "f", longopts, &idx)) != -1) {
        for (size_t i = 0; i < sizeof(owners) / sizeof(owners[0]); i++)
            if (owners[i].opt == opt && !(sc->allowed & owners[i].flag)) {
                code = client_usage_error(o, "unknown option '%s%s'", idx >= 0 ? "--" : "-",
                                          idx >= 0 ? longopts[idx].name : "f");
                break;
            }
        idx = -1;
        if (code)
            break;
        switch (opt) {
        case O_STATUS: a->status = optarg; break;
        case O_AGENT: a->agent = optarg; break;
        case O_PROJECT: a->project = optarg; break;
        case O_LIMIT: code = client_opt_int(o, "--limit", optarg, 1, 200, &a->limit); break;
        case O_PAGE: code = client_opt_int(o, "--page", optarg, 1, INT32_MAX, &a->page); break;
        case O_TYPE: a->types = optarg; break;
        case O_TAIL: code = client_opt_int(o, "--tail", optarg, 1, 1000000, &a->tail); break;
        case O_REASON: a->reason = optarg; break;
        case O_PURGE: a->purge = true; break;
        case 'f': a->follow = true; break;
        default: code = client_opts_handle(o, opt, argc, argv); break;
        }
    }
    if (code < 0) {
        fputs(sc->usage, stdout);
        client_opts_help(stdout);
        return -1;
    }
    if (code || (code = client_opts_finish(o)) != 0)
        return code;
    a->nargs = argc - optind;
    a->args = argv + optind;
    if (a->nargs < sc->min_args)
        return client_usage_error(
            o, "%s", sc->min_args == 1 ? "which session? (give its id)" : "missing arguments");
    if (sc->max_args >= 0 && a->nargs > sc->max_args)
        return client_usage_error(o, "unexpected argument '%s'", a->args[sc->max_args]);
    if (sc->min_args > 0 && !a->args[0][0])
        return client_usage_error(o, "a session id must not be empty");
    return 0;
}

/* Runs parse, then connects. Returns 0, or the exit code to return (help: 0 with *done). */
static int start(const struct subcmd *sc, int argc, char **argv, struct client_opts *o,
                 struct sargs *a, struct client_conn *c, bool *done) {
    *done = false;
    int code = parse(sc, argc, argv, o, a);
    if (code == -1) {
        *done = true;
        return EXIT_OK;
    }
    if (code) {
        *done = true;
        return code;
    }
    code = client_conn_open(o, c);
    *done = code != 0;
    return code;
}

static int terminal_width(void) {
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
        return ws.ws_col;
    return 120;
}

/* ---- list ------------------------------------------------------------------------------------
 */

static const struct subcmd sc_list = {
    "session list", A_STATUS | A_AGENT | A_PROJECT | A_LIMIT | A_PAGE, 0, 0,
    "usage: ah session list [--status S] [--agent TYPE] [--project ID] [--limit N] [--page N]\n"
    "                       [--json]\n"
    "\n"
    "Lists sessions, newest first: id, status, agent, age and the start of the prompt.\n"
    "  --status S      only sessions in this status (queued, running, paused, completed, …)\n"
    "  --agent TYPE    only sessions of this agent type\n"
    "  --project ID    only sessions of this project\n"
    "  --limit N       sessions per page, 1-200 (default: the server's, 20)\n"
    "  --page N        which page (default 1)\n"
    "  --json          the server's page as it sent it ({items, page, perPage, total, "
    "nextPage})\n"};

int cmd_session_list(int argc, char **argv) {
    struct client_opts o;
    struct sargs a;
    struct client_conn c = {0};
    bool done;
    int code = start(&sc_list, argc, argv, &o, &a, &c, &done);
    if (done)
        return code;
    struct ah_session_filter f = {.status = a.status,
                                  .agent = a.agent,
                                  .project_id = a.project,
                                  .page = a.page,
                                  .per_page = a.limit};
    struct ah_session_list *l = NULL;
    struct ah_api_error e = {0};
    int rc = ah_task_manager_list_sessions(c.tm, &f, &l, &e);
    if (rc < 0) {
        code = client_fail(&o, &c, "cannot list sessions", rc, &e);
        goto out;
    }
    if (o.json) {
        puts(l->json ? l->json : "{}");
        goto out;
    }
    if (l->n_items == 0) {
        if (!o.quiet)
            printf("no sessions%s\n", a.page > 1 ? " on this page" : "");
        goto out;
    }
    int width = terminal_width();
    int excerpt = width - (26 + 2 + 11 + 2 + 12 + 2 + 4 + 2);
    if (excerpt < 20)
        excerpt = 20;
    if (!o.quiet)
        printf("%s%-26s  %-11s  %-12s  %4s  %s%s\n", o.color ? "\033[1m" : "", "ID", "STATUS",
               "AGENT", "AGE", "PROMPT", o.color ? "\033[0m" : "");
    for (size_t i = 0; i < l->n_items; i++) {
        const struct ah_session *s = l->items[i];
        char age[16], agent[13];
        client_age(s->created_at, age, sizeof(age));
        snprintf(agent, sizeof(agent), "%s", s->agent_type ? s->agent_type : "-");
        const char *status = s->status_name ? s->status_name : ah_session_status_name(s->status);
        const char *color = client_status_color(&o, s->status);
        printf("%-26s  %s%-11s%s  %-12s  %4s  ", s->id ? s->id : "-", color ? color : "", status,
               color ? "\033[0m" : "", agent, age);
        /* the first line of the prompt only: a table row is one line */
        const char *p = s->prompt ? s->prompt : "";
        size_t line = strcspn(p, "\r\n");
        char *first = strndup(p, line);
        client_put_text(stdout, first ? first : "", (size_t)excerpt, 0);
        if (first && p[line] && strlen(first) < (size_t)excerpt)
            fputs(" …", stdout);
        free(first);
        fputc('\n', stdout);
    }
    if (!o.quiet && l->total > (int64_t)l->n_items) {
        printf("(%zu of %lld", l->n_items, (long long)l->total);
        if (l->next_page > 0)
            printf("; --page %lld for more", (long long)l->next_page);
        printf(")\n");
    }
out:
    ah_session_list_free(l);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}

/* ---- show ------------------------------------------------------------------------------------
 */

static const struct subcmd sc_show = {
    "session show", 0, 1, 1,
    "usage: ah session show ID [--json]\n"
    "\n"
    "Shows one session: status, agent, prompt, repository, times, changes and recent events.\n"
    "  --json          the session as the server sent it\n"};

static void row(const struct client_opts *o, const char *key, const char *value) {
    if (!value || !*value)
        return;
    printf("%s%-10s%s ", o->color ? "\033[1m" : "", key, o->color ? "\033[0m" : "");
    client_put_text(stdout, value, 0, 11);
    fputc('\n', stdout);
}

static void time_row(const struct client_opts *o, const char *key, const char *ts) {
    if (!ts)
        return;
    char age[16], text[96];
    client_age(ts, age, sizeof(age));
    snprintf(text, sizeof(text), "%s (%s ago)", ts, age);
    row(o, key, text);
}

int cmd_session_show(int argc, char **argv) {
    struct client_opts o;
    struct sargs a;
    struct client_conn c = {0};
    bool done;
    int code = start(&sc_show, argc, argv, &o, &a, &c, &done);
    if (done)
        return code;
    const char *id = a.args[0];
    struct ah_session *s = NULL;
    struct ah_api_error e = {0};
    int rc = ah_task_manager_get_session(c.tm, id, &s, &e);
    if (rc < 0) {
        char what[160];
        snprintf(what, sizeof(what), "cannot get session %s", id);
        code = client_fail(&o, &c, what, rc, &e);
        goto out;
    }
    if (o.json) {
        puts(s->json ? s->json : "{}");
        goto out;
    }
    char buf[1024];
    row(&o, "Session", s->id);
    const char *status = s->status_name ? s->status_name : ah_session_status_name(s->status);
    const char *color = client_status_color(&o, s->status);
    printf("%s%-10s%s %s%s%s", o.color ? "\033[1m" : "", "Status", o.color ? "\033[0m" : "",
           color ? color : "", status, color ? "\033[0m" : "");
    if (s->error && *s->error) {
        fputs(": ", stdout);
        client_put_text(stdout, s->error, 0, 11);
    }
    if (s->has_exit_code)
        printf(" (exit code %d)", s->exit_code);
    fputc('\n', stdout);
    snprintf(buf, sizeof(buf), "%s%s%s", s->agent_type ? s->agent_type : "-",
             s->agent_version ? "@" : "", s->agent_version ? s->agent_version : "");
    row(&o, "Agent", buf);
    row(&o, "Task", s->task_id);
    row(&o, "Project", s->project_id);
    if (s->repo_url) {
        snprintf(buf, sizeof(buf), "%s%s%s%s%s", s->repo_url, s->repo_branch ? " branch " : "",
                 s->repo_branch ? s->repo_branch : "", s->repo_commit ? " commit " : "",
                 s->repo_commit ? s->repo_commit : "");
        row(&o, "Repo", buf);
    } else {
        row(&o, "Repo", s->repo_mode);
    }
    if (s->delivery_mode) {
        snprintf(buf, sizeof(buf), "%s%s%s", s->delivery_mode, s->target_branch ? " → " : "",
                 s->target_branch ? s->target_branch : "");
        row(&o, "Delivery", buf);
    }
    json_t *j = s->json ? json_loads(s->json, 0, NULL) : NULL;
    json_t *labels = json_object_get(j, "labels");
    if (json_object_size(labels)) {
        size_t k = 0;
        const char *key;
        json_t *v;
        buf[0] = '\0';
        json_object_foreach(labels, key, v) {
            k +=
                (size_t)snprintf(buf + k, k < sizeof(buf) ? sizeof(buf) - k : 0, "%s%s=%s",
                                 k ? " " : "", key, json_is_string(v) ? json_string_value(v) : "?");
            if (k >= sizeof(buf))
                break;
        }
        row(&o, "Labels", buf);
    }
    json_decref(j);
    if (s->snapshot_provider || s->mount_path) {
        snprintf(buf, sizeof(buf), "%s%s%s", s->snapshot_provider ? s->snapshot_provider : "",
                 s->snapshot_provider && s->mount_path ? " " : "",
                 s->mount_path ? s->mount_path : "");
        row(&o, "Workspace", buf);
    }
    time_row(&o, "Created", s->created_at);
    time_row(&o, "Started", s->started_at);
    time_row(&o, "Ended", s->ended_at);
    if (s->has_changes) {
        snprintf(buf, sizeof(buf), "%lld file%s, +%lld -%lld", (long long)s->files_changed,
                 s->files_changed == 1 ? "" : "s", (long long)s->lines_added,
                 (long long)s->lines_removed);
        row(&o, "Changes", buf);
    }
    row(&o, "Prompt", s->prompt);
    if (s->n_recent_events) {
        printf("%sRecent events%s\n", o.color ? "\033[1m" : "", o.color ? "\033[0m" : "");
        for (size_t i = 0; i < s->n_recent_events; i++)
            client_render_event(stdout, &o, s->recent_events[i], "  ");
    }
out:
    ah_session_free(s);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}

/* ---- events ----------------------------------------------------------------------------------
 */

static const struct subcmd sc_events = {
    "session events", A_FOLLOW | A_TYPE | A_TAIL, 1, 1,
    "usage: ah session events ID [--follow] [--type A,B] [--tail N] [--json]\n"
    "\n"
    "Prints a session's events, oldest first: its history, or with --follow the live stream\n"
    "until the session ends (then the exit code is its outcome: 0 completed, 1 failed,\n"
    "3 agent launch failure, 130 stopped or cancelled).\n"
    "  -f, --follow    follow the live stream (history first, then new events)\n"
    "  --type A,B      only these event types (status, log, thought, tool_use, tool_result,\n"
    "                  file_edit, …)\n"
    "  --tail N        only the last N events\n"
    "  --json          one event per line, as the server sent it\n"};

static void print_event(const struct client_opts *o, const struct ah_event *ev) {
    if (o->json)
        client_print_event_json(stdout, ev);
    else
        client_render_event(stdout, o, ev, NULL);
}

/* "a,b" → a NULL-terminated array pointing into *ret_text (caller frees both). */
static int split_types(const struct client_opts *o, const char *types, char **ret_text,
                       const char ***ret) {
    *ret_text = NULL;
    *ret = NULL;
    if (!types)
        return 0;
    char *text = strdup(types);
    const char **list = calloc(MAX_TYPES + 1, sizeof(*list));
    if (!text || !list) {
        free(text);
        free(list);
        fprintf(stderr, "ah %s: out of memory\n", o->command);
        return EXIT_GENERAL;
    }
    if (client_split_list(text, list, MAX_TYPES) > MAX_TYPES) {
        free(text);
        free(list);
        return client_usage_error(o, "--type lists more than %d types", MAX_TYPES);
    }
    *ret_text = text;
    *ret = list;
    return 0;
}

/* The history: every page oldest first, or with tail the last `tail` events (fetched newest
 * first, printed oldest first). */
static int print_history(const struct client_opts *o, const struct client_conn *c, const char *id,
                         const char *types, int64_t tail) {
    struct ah_event_query q = {.types = types,
                               .sort = tail ? "desc" : "asc",
                               .page = 1,
                               .per_page = tail && tail < HISTORY_PAGE ? tail : HISTORY_PAGE};
    struct ah_event_list **pages = NULL;
    size_t n_pages = 0;
    int64_t have = 0;
    int code = 0;
    struct ah_api_error e = {0};
    for (;;) {
        struct ah_event_list *l = NULL;
        int rc = ah_client_list_events(c->client, id, &q, &l, &e);
        if (rc < 0) {
            char what[160];
            snprintf(what, sizeof(what), "cannot get the events of session %s", id);
            code = client_fail(o, c, what, rc, &e);
            break;
        }
        if (!tail) {
            for (size_t i = 0; i < l->n_items; i++)
                print_event(o, l->items[i]);
        } else {
            struct ah_event_list **np = realloc(pages, (n_pages + 1) * sizeof(*np));
            if (!np) {
                ah_event_list_free(l);
                fprintf(stderr, "ah %s: out of memory\n", o->command);
                code = EXIT_GENERAL;
                break;
            }
            pages = np;
            pages[n_pages++] = l;
            have += (int64_t)l->n_items;
        }
        bool more = l->next_page > 0 && l->n_items > 0 && (!tail || have < tail);
        q.page = l->next_page;
        if (!tail)
            ah_event_list_free(l);
        if (!more)
            break;
    }
    /* newest first in pages: walk back from the oldest wanted */
    int64_t skip = have > tail ? have - tail : 0;
    for (size_t p = n_pages; code == 0 && p > 0; p--) {
        const struct ah_event_list *l = pages[p - 1];
        for (size_t i = l->n_items; i > 0; i--) {
            if (skip) {
                skip--;
                continue;
            }
            print_event(o, l->items[i - 1]);
        }
    }
    for (size_t p = 0; p < n_pages; p++)
        ah_event_list_free(pages[p]);
    free(pages);
    ah_api_error_clear(&e);
    return code;
}

int cmd_session_events(int argc, char **argv) {
    struct client_opts o;
    struct sargs a;
    struct client_conn c = {0};
    bool done;
    int code = start(&sc_events, argc, argv, &o, &a, &c, &done);
    if (done)
        return code;
    const char *id = a.args[0];
    char *types_text = NULL;
    const char **types = NULL;
    if ((code = split_types(&o, a.types, &types_text, &types)) != 0)
        goto out;
    if (a.follow) {
        struct follow_opts fo = {.tail = a.tail, .types = types};
        code = client_follow(&o, &c, &id, 1, &fo);
    } else {
        code = print_history(&o, &c, id, a.types, a.tail);
    }
out:
    free(types_text);
    free(types);
    client_conn_close(&c);
    return code;
}

/* ---- logs ------------------------------------------------------------------------------------
 */

static const struct subcmd sc_logs = {
    "session logs", A_FOLLOW | A_TAIL, 1, 1,
    "usage: ah session logs ID [--tail N] [-f|--follow] [--json]\n"
    "\n"
    "Prints a session's log lines; with --follow keeps printing new ones until the session\n"
    "ends (then the exit code is its outcome: 0 completed, 1 failed, 3 agent launch failure,\n"
    "130 stopped or cancelled).\n"
    "  --tail N        only the last N lines\n"
    "  -f, --follow    keep following\n"
    "  --json          one log event per line, as the server sent it\n"};

int cmd_session_logs(int argc, char **argv) {
    struct client_opts o;
    struct sargs a;
    struct client_conn c = {0};
    bool done;
    int code = start(&sc_logs, argc, argv, &o, &a, &c, &done);
    if (done)
        return code;
    const char *id = a.args[0];
    struct ah_event_list *l = NULL;
    struct ah_api_error e = {0};
    int rc = ah_client_session_logs(c.client, id, a.tail, &l, &e);
    if (rc < 0) {
        char what[160];
        snprintf(what, sizeof(what), "cannot get the logs of session %s", id);
        code = client_fail(&o, &c, what, rc, &e);
        goto out;
    }
    int64_t last = 0;
    for (size_t i = 0; i < l->n_items; i++) {
        print_event(&o, l->items[i]);
        if (l->items[i]->seq > last)
            last = l->items[i]->seq;
    }
    fflush(stdout);
    if (a.follow) {
        static const char *const log_only[] = {"log", NULL};
        /* After the last line shown: the stream's history part then repeats nothing. */
        struct follow_opts fo = {.types = log_only, .after_seq = last};
        code = client_follow(&o, &c, &id, 1, &fo);
    }
out:
    ah_event_list_free(l);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}

/* ---- control: pause, resume, stop, rm --------------------------------------------------------
 */

static const struct subcmd sc_pause = {
    "session pause", 0, 1, -1,
    "usage: ah session pause ID... [--json]\n"
    "\n"
    "Pauses running sessions (their processes stop until resumed). Prints each session's new\n"
    "status; an illegal change (e.g. pausing a finished session) is exit code 1.\n"};
static const struct subcmd sc_resume = {
    "session resume", 0, 1, -1,
    "usage: ah session resume ID... [--json]\n"
    "\n"
    "Resumes paused sessions. Prints each session's new status.\n"};
static const struct subcmd sc_stop = {
    "session stop", A_REASON, 1, -1,
    "usage: ah session stop ID... [--reason TEXT] [--json]\n"
    "\n"
    "Stops sessions: the agent receives SIGTERM, then SIGKILL after the server's grace period.\n"
    "The workspace is kept. Prints each session's new status.\n"
    "  --reason TEXT   why (kept with the session)\n"};
static const struct subcmd sc_rm = {
    "session rm", A_PURGE, 1, -1,
    "usage: ah session rm ID... [--purge] [--json]\n"
    "\n"
    "Cancels sessions: the agent is killed at once and the workspace removed; the record\n"
    "stays (status cancelled) unless --purge.\n"
    "  --purge         also delete the session's record and events\n"};

/* Prints j (taken) as one compact JSON line. */
static void put_json(json_t *j) {
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    puts(text ? text : "{}");
    free(text);
    json_decref(j);
}

static void print_status(const struct client_opts *o, const char *id, enum ah_session_status st) {
    if (o->json) {
        put_json(json_pack("{s:s, s:s}", "id", id, "status", ah_session_status_name(st)));
        return;
    }
    if (o->quiet)
        return;
    const char *color = client_status_color(o, st);
    printf("%s %s%s%s\n", id, color ? color : "", ah_session_status_name(st),
           color ? "\033[0m" : "");
}

static int control(const struct subcmd *sc, enum ah_control verb, int argc, char **argv) {
    struct client_opts o;
    struct sargs a;
    struct client_conn c = {0};
    bool done;
    int code = start(sc, argc, argv, &o, &a, &c, &done);
    if (done)
        return code;
    static const char *const verbs[] = {"pause", "resume", "stop", "cancel", "prompt"};
    for (int i = 0; i < a.nargs; i++) {
        const char *id = a.args[i];
        struct ah_api_error e = {0};
        enum ah_session_status st = AH_STATUS_UNKNOWN;
        int rc;
        if (verb == AH_CONTROL_STOP && a.reason)
            rc = ah_client_stop_session(c.client, id, a.reason, &st, &e);
        else if (verb == AH_CONTROL_CANCEL && a.purge)
            rc = ah_client_delete_session(c.client, id, true, &e);
        else
            rc = ah_task_manager_control(c.tm, id, verb, NULL, &st, &e);
        if (rc < 0) {
            char what[160];
            snprintf(what, sizeof(what), "cannot %s session %s", verbs[verb], id);
            int r = client_fail(&o, &c, what, rc, &e);
            if (!code)
                code = r; /* go on with the other ids; the first failure is the exit code */
        } else if (verb == AH_CONTROL_CANCEL && a.purge) {
            if (o.json)
                put_json(json_pack("{s:s, s:b}", "id", id, "purged", 1));
            else if (!o.quiet)
                printf("%s purged\n", id);
        } else {
            print_status(&o, id, st);
        }
        ah_api_error_clear(&e);
    }
    client_conn_close(&c);
    return code;
}

int cmd_session_pause(int argc, char **argv) {
    return control(&sc_pause, AH_CONTROL_PAUSE, argc, argv);
}

int cmd_session_resume(int argc, char **argv) {
    return control(&sc_resume, AH_CONTROL_RESUME, argc, argv);
}

int cmd_session_stop(int argc, char **argv) {
    return control(&sc_stop, AH_CONTROL_STOP, argc, argv);
}

int cmd_session_rm(int argc, char **argv) {
    return control(&sc_rm, AH_CONTROL_CANCEL, argc, argv);
}

/* ---- prompt ----------------------------------------------------------------------------------
 */

static const struct subcmd sc_prompt = {
    "session prompt", 0, 2, -1,
    "usage: ah session prompt ID TEXT... | ah session prompt ID -\n"
    "\n"
    "Sends more input to a running session's agent (the words, joined by spaces, or standard\n"
    "input with '-'). A paused session is exit code 1 (resume it first), as is a finished one.\n"
    "  --json          {\"sessionId\", \"accepted\", \"status\"}\n"};


int cmd_session_prompt(int argc, char **argv) {
    struct client_opts o;
    struct sargs a;
    struct client_conn c = {0};
    bool done;
    int code = start(&sc_prompt, argc, argv, &o, &a, &c, &done);
    if (done)
        return code;
    const char *id = a.args[0];
    char *text = NULL;
    struct ah_api_error e = {0};
    if (a.nargs == 2 && strcmp(a.args[1], "-") == 0) {
        if ((code = client_read_prompt(&o, "-", &text)) != 0)
            goto out;
    } else {
        if (!(text = client_join(a.nargs - 1, a.args + 1))) {
            fprintf(stderr, "ah %s: out of memory\n", o.command);
            code = EXIT_GENERAL;
            goto out;
        }
    }
    enum ah_session_status st = AH_STATUS_UNKNOWN;
    int rc = ah_task_manager_control(c.tm, id, AH_CONTROL_PROMPT, text, &st, &e);
    if (rc < 0) {
        char what[160];
        snprintf(what, sizeof(what), "cannot send the prompt to session %s", id);
        code = client_fail(&o, &c, what, rc, &e);
        goto out;
    }
    if (o.json) {
        put_json(json_pack("{s:s, s:b, s:s}", "sessionId", id, "accepted", 1, "status",
                           ah_session_status_name(st)));
    } else if (!o.quiet) {
        printf("prompt sent to %s\n", id);
    }
out:
    free(text);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}
