/*
 * cmd_chat.c — `ah session chat`, `ah session context`, `ah projects`, `ah agents`, `ah repos`
 * (issue 15 item 7), through libah-client's public calls only.
 *
 * `ah session chat ID MESSAGE…` sends one message. Without a message it is interactive: it shows
 * the conversation, then follows it (new messages are asked for every CHAT_POLL_MS, while it also
 * waits for what you type) and sends each line you type. At the end of the input it keeps showing
 * the conversation until the session ends (so `echo hi | ah session chat ID` shows the reply).
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define CHAT_POLL_MS 500
#define CHAT_LINE_MAX (16 * 1024)

static const struct option longopts[] = {
    CLIENT_LONG_OPTIONS,
    {NULL, 0, NULL, 0},
};

/* Parses the shared options; the rest of argv from *ret_first. 0, -1 after the help, or an exit
 * code. */
static int parse(const char *name, const char *usage, int argc, char **argv,
                 struct client_opts *o, int *ret_first) {
    client_opts_init(o, name);
    int opt, code = 0;
    optind = 1;
    while (code == 0 && (opt = getopt_long(argc, argv, CLIENT_SHORT_OPTIONS, longopts, NULL)) != -1)
        code = client_opts_handle(o, opt, argc, argv);
    if (code < 0) {
        fputs(usage, stdout);
        client_opts_help(stdout);
        return -1;
    }
    if (code || (code = client_opts_finish(o)) != 0)
        return code;
    *ret_first = optind;
    return 0;
}

static void print_message(const struct client_opts *o, json_t *m) {
    const char *role = json_string_value(json_object_get(m, "role"));
    bool user = role && !strcmp(role, "user");
    const char *on = o->color ? (user ? "\033[1;34m" : "\033[1;32m") : "";
    const char *off = o->color ? "\033[0m" : "";
    printf("%s%s%s", on, user ? "you" : "agent", off);
    if (json_object_get(m, "superseded_by"))
        printf(" (edited later)");
    printf(": ");
    client_put_text(stdout, json_string_value(json_object_get(m, "content")) ?: "", 4000, 2);
    putchar('\n');
    size_t i;
    json_t *call;
    json_array_foreach(json_object_get(m, "tool_calls"), i, call) {
        json_t *f = json_object_get(call, "function");
        char *args = json_dumps(json_object_get(f, "arguments"), JSON_COMPACT);
        printf("  ⚙ %s %s\n", json_string_value(json_object_get(f, "name")) ?: "",
               args ? args : "");
        free(args);
    }
    size_t ai;
    json_t *a;
    json_array_foreach(json_object_get(m, "attachments"), ai, a) {
        const char *p = json_string_value(json_object_get(a, "file_path"));
        printf("  📎 %s\n", p ? p : json_string_value(json_object_get(a, "filename")) ?: "image");
    }
    fflush(stdout);
}

/* Prints the messages after *last (a message id, updated); AH_E_* or 0. */
static int show_new(const struct client_opts *o, struct client_conn *c, const char *id,
                    char *last, size_t last_size, struct ah_api_error *e) {
    for (;;) {
        char *body = NULL;
        int rc = ah_client_chat_history(c->client, id, 200, NULL, last[0] ? last : NULL, &body, e);
        if (rc < 0)
            return rc;
        json_t *j = json_loads(body, 0, NULL);
        free(body);
        json_t *msgs = json_object_get(j, "messages");
        size_t i, n = json_array_size(msgs);
        json_t *m;
        json_array_foreach(msgs, i, m) {
            if (o->json) {
                char *t = json_dumps(m, JSON_COMPACT);
                puts(t ? t : "{}");
                free(t);
            } else {
                print_message(o, m);
            }
            snprintf(last, last_size, "%s", json_string_value(json_object_get(m, "id")) ?: "");
        }
        json_decref(j);
        if (n < 200)
            return 0;
    }
}

static const char chat_usage[] =
    "usage: ah session chat ID [MESSAGE...] [--json]\n"
    "\n"
    "With a MESSAGE, sends it to the session's agent (as the user's chat message) and prints its\n"
    "id. Without one, shows the conversation and follows it: each line you type is sent; at the\n"
    "end of the input it keeps following until the session ends (Ctrl-C leaves).\n";

int cmd_session_chat(int argc, char **argv) {
    struct client_opts o;
    int first = 0;
    int code = parse("session chat", chat_usage, argc, argv, &o, &first);
    if (code)
        return code < 0 ? EXIT_OK : code;
    if (first >= argc || !argv[first][0])
        return client_usage_error(&o, "which session? (give its id)");
    const char *id = argv[first];
    struct client_conn c = {0};
    if ((code = client_conn_open(&o, &c)) != 0)
        return code;
    struct ah_api_error e = {0};
    int rc = 0;
    if (first + 1 < argc) { /* one message */
        struct ah_buf text = {.max = CHAT_LINE_MAX};
        for (int i = first + 1; rc == 0 && i < argc; i++)
            rc = ah_buf_printf(&text, "%s%s", i > first + 1 ? " " : "", argv[i]);
        char *body = NULL;
        if (rc < 0)
            code = client_usage_error(&o, "the message is over %d bytes", CHAT_LINE_MAX);
        else if ((rc = ah_client_chat_send(c.client, id, text.p, &body, &e)) < 0)
            code = client_fail(&o, &c, "cannot send the message", rc, &e);
        else if (o.json)
            puts(body);
        else if (!o.quiet) {
            json_t *j = json_loads(body, 0, NULL);
            printf("%s\n", json_string_value(json_object_get(j, "id")) ?: "sent");
            json_decref(j);
        }
        free(body);
        ah_buf_clear(&text);
        ah_api_error_clear(&e);
        client_conn_close(&c);
        return code;
    }
    char last[64] = "";
    bool input = true;
    char line[CHAT_LINE_MAX + 2];
    size_t have = 0;
    for (;;) {
        if ((rc = show_new(&o, &c, id, last, sizeof(last), &e)) < 0) {
            code = client_fail(&o, &c, "cannot read the chat", rc, &e);
            break;
        }
        struct ah_session *s = NULL;
        if (ah_client_get_session(c.client, id, &s, &e) == 0) {
            bool over = ah_session_status_terminal(s->status);
            ah_session_free(s);
            if (over) {
                show_new(&o, &c, id, last, sizeof(last), &e); /* the last words */
                break;
            }
        }
        ah_api_error_clear(&e);
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int ready = input ? poll(&p, 1, CHAT_POLL_MS) : (poll(NULL, 0, CHAT_POLL_MS), 0);
        if (ready < 0 && errno != EINTR)
            break;
        if (ready <= 0)
            continue;
        ssize_t n = read(STDIN_FILENO, line + have, sizeof(line) - 1 - have);
        if (n <= 0) {
            input = false; /* the end of the input: keep following */
            continue;
        }
        have += (size_t)n;
        line[have] = '\0';
        char *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            if (line[0] && (rc = ah_client_chat_send(c.client, id, line, NULL, &e)) < 0) {
                client_fail(&o, &c, "cannot send the message", rc, &e);
                ah_api_error_clear(&e);
            }
            size_t used = (size_t)(nl - line) + 1;
            memmove(line, nl + 1, have - used + 1);
            have -= used;
        }
        if (have >= sizeof(line) - 1) { /* a line over the cap: refused, not cut */
            fprintf(stderr, "ah session chat: a line over %d bytes was not sent\n", CHAT_LINE_MAX);
            have = 0;
        }
    }
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}

/* ---- context --------------------------------------------------------------------------------- */

static const char context_usage[] =
    "usage: ah session context ID [--json]\n"
    "\n"
    "Shows the session's context window (tokens used of the model's window, as the agent\n"
    "reported them), the files in context, the enabled tools and the active model.\n";

int cmd_session_context(int argc, char **argv) {
    struct client_opts o;
    int first = 0;
    int code = parse("session context", context_usage, argc, argv, &o, &first);
    if (code)
        return code < 0 ? EXIT_OK : code;
    if (first >= argc || !argv[first][0])
        return client_usage_error(&o, "which session? (give its id)");
    if (first + 1 < argc)
        return client_usage_error(&o, "unexpected argument '%s'", argv[first + 1]);
    struct client_conn c = {0};
    if ((code = client_conn_open(&o, &c)) != 0)
        return code;
    struct ah_api_error e = {0};
    char *body = NULL;
    int rc = ah_client_session_context(c.client, argv[first], &body, &e);
    if (rc < 0) {
        code = client_fail(&o, &c, "cannot read the context", rc, &e);
    } else if (o.json) {
        puts(body);
    } else {
        json_t *j = json_loads(body, 0, NULL);
        json_t *w = json_object_get(j, "context_window"), *m = json_object_get(j, "active_model");
        printf("model    %s (%lld tokens)\n", json_string_value(json_object_get(m, "type")) ?: "",
               (long long)json_integer_value(json_object_get(m, "context_window")));
        printf("used     %lld of %lld tokens (%.1f%%), %lld left\n",
               (long long)json_integer_value(json_object_get(w, "used_tokens")),
               (long long)json_integer_value(json_object_get(w, "total_tokens")),
               json_number_value(json_object_get(w, "percentage_used")),
               (long long)json_integer_value(json_object_get(w, "remaining_tokens")));
        printf("reported %lld in, %lld out\n",
               (long long)json_integer_value(json_object_get(w, "input_tokens")),
               (long long)json_integer_value(json_object_get(w, "output_tokens")));
        size_t i;
        json_t *v;
        printf("files   ");
        json_array_foreach(json_object_get(j, "context_files"), i, v)
            printf(" %s (%lld)", json_string_value(json_object_get(v, "path")) ?: "",
                   (long long)json_integer_value(json_object_get(v, "tokens")));
        printf("\ntools   ");
        json_array_foreach(json_object_get(j, "enabled_tools"), i, v)
            printf(" %s", json_string_value(v) ?: "");
        putchar('\n');
        json_decref(j);
    }
    free(body);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}

/* ---- catalog lists --------------------------------------------------------------------------- */

static int catalog(const char *what, const char *usage, int argc, char **argv,
                   void (*row)(json_t *item)) {
    struct client_opts o;
    int first = 0;
    int code = parse(what, usage, argc, argv, &o, &first);
    if (code)
        return code < 0 ? EXIT_OK : code;
    if (first < argc)
        return client_usage_error(&o, "unexpected argument '%s'", argv[first]);
    struct client_conn c = {0};
    if ((code = client_conn_open(&o, &c)) != 0)
        return code;
    struct ah_api_error e = {0};
    char *body = NULL;
    int rc = ah_client_catalog(c.client, what, &body, &e);
    if (rc < 0) {
        code = client_fail(&o, &c, "cannot list them", rc, &e);
    } else if (o.json) {
        puts(body);
    } else {
        json_t *j = json_loads(body, 0, NULL);
        json_t *items = json_is_array(j) ? j : json_object_get(j, "items");
        size_t i;
        json_t *v;
        json_array_foreach(items, i, v) row(v);
        json_decref(j);
    }
    free(body);
    ah_api_error_clear(&e);
    client_conn_close(&c);
    return code;
}

static void project_row(json_t *p) {
    char age[32] = "";
    const char *used = json_string_value(json_object_get(p, "lastUsedAt"));
    if (used)
        client_age(used, age, sizeof(age));
    printf("%-30s %s\n", json_string_value(json_object_get(p, "id")) ?: "", age);
}

static void agent_row(json_t *a) {
    json_t *installed = json_object_get(a, "installed");
    printf("%-16s %-12s %s\n", json_string_value(json_object_get(a, "type")) ?: "",
           json_string_value(json_object_get(a, "version")) ?: "-",
           json_is_false(installed) ? "not installed" : "");
}

static void repo_row(json_t *r) {
    printf("%-24s %s\n", json_string_value(json_object_get(r, "id")) ?: "",
           json_string_value(json_object_get(r, "remoteUrl")) ?: "");
}

int cmd_projects(int argc, char **argv) {
    return catalog("projects", "usage: ah projects [--json]\n\nLists your projects, most "
                               "recently used first.\n",
                   argc, argv, project_row);
}

int cmd_agents(int argc, char **argv) {
    return catalog("agents", "usage: ah agents [--json]\n\nLists the agent types the server "
                             "runs, with the version it found installed.\n",
                   argc, argv, agent_row);
}

int cmd_repos(int argc, char **argv) {
    return catalog("repos", "usage: ah repos [--json]\n\nLists the repositories your tasks "
                            "used.\n",
                   argc, argv, repo_row);
}
