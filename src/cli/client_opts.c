/*
 * client_opts.c — what the client commands (`ah task …`, `ah session …`) share: the common
 * options, finding the server and connecting to it, turning a failed call into one clear line
 * and an exit code, and the human rendering of events and outcomes.
 *
 * Everything here goes through libah-client's public API (<ah/client.h>, <ah/task_manager.h>)
 * and jansson; none of the server's code is used, so these commands behave exactly like any
 * other program built on the library.
 *
 * Exit codes (CLI-and-enrollment.md §7.2): 0 ok, 1 general, 2 usage, 3 agent launch,
 * 4 authentication, 5 network, 6 resource (also: an answer that is not what the API says),
 * 7 validation, 8 configuration; a followed session
 * that was stopped or cancelled, or a follow ended by Ctrl-C, is 130 (128 + SIGINT, as shells
 * report an interrupted command).
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define C_RESET "\033[0m"
#define C_DIM "\033[2m"
#define C_BOLD "\033[1m"
#define C_RED "\033[31m"
#define C_GREEN "\033[32m"
#define C_YELLOW "\033[33m"
#define C_BLUE "\033[34m"
#define C_MAGENTA "\033[35m"
#define C_CYAN "\033[36m"


/* ---- options ---------------------------------------------------------------------------------
 */

void client_opts_init(struct client_opts *o, const char *command) {
    memset(o, 0, sizeof(*o));
    o->command = command;
    o->log_level = -1;
    optind = 0; /* GNU: a full re-initialisation of getopt */
    opterr = 0; /* we print our own messages, naming the command */
}

int client_usage_error(const struct client_opts *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ah %s: ", o->command);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see ah help %s)\n", o->command);
    va_end(ap);
    return EXIT_USAGE;
}

int client_opt_int(const struct client_opts *o, const char *name, const char *arg, int64_t min,
                   int64_t max, int64_t *ret) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (errno || end == arg || *end || v < min || v > max)
        return client_usage_error(o, "%s must be an integer from %lld to %lld, not '%s'", name,
                                  (long long)min, (long long)max, arg);
    *ret = v;
    return 0;
}

int client_opts_handle(struct client_opts *o, int opt, int argc, char **argv) {
    switch (opt) {
    case CLIENT_OPT_REMOTE: o->remote_server = optarg; return 0;
    case CLIENT_OPT_CONFIG: o->config_path = optarg; return 0;
    case CLIENT_OPT_CA_FILE: o->ca_file = optarg; return 0;
    case CLIENT_OPT_INSECURE: o->insecure = true; return 0;
    case CLIENT_OPT_CLIENT_CERT: o->client_cert = optarg; return 0;
    case CLIENT_OPT_CLIENT_KEY: o->client_key = optarg; return 0;
    case CLIENT_OPT_JSON: o->json = true; return 0;
    case CLIENT_OPT_NO_COLOR: o->no_color = true; return 0;
    case 'q': o->quiet = true; return 0;
    case 'h': return -1;
    case CLIENT_OPT_LOG_LEVEL: {
        enum log_level l;
        if (log_level_parse(optarg, &l) < 0)
            return client_usage_error(o, "--log-level must be debug, info, warn or error, not '%s'",
                                      optarg);
        o->log_level = (int)l; /* the same order as enum ah_log_level (asserted below) */
        return 0;
    }
    case ':': /* getopt_long left optind after the option that lacks its argument */
        return client_usage_error(o, "%s needs a value", argv[optind - 1]);
    default: {
        const char *bad = optind - 1 < argc ? argv[optind - 1] : "?";
        if (optopt && bad[0] == '-' && bad[1] != '-')
            return client_usage_error(o, "unknown option '-%c'", optopt);
        return client_usage_error(o, "unknown option '%s'", bad);
    }
    }
}

int client_opts_finish(struct client_opts *o) {
    const char *nc = getenv("NO_COLOR"); /* no-color.org: set and not empty */
    o->color = !o->no_color && !o->json && !(nc && *nc) && isatty(STDOUT_FILENO);
    if (o->client_key && !o->client_cert)
        return client_usage_error(o, "--client-key needs --client-cert");
    return 0;
}

void client_opts_help(FILE *out) {
    fprintf(out,
            "\nConnection (every client command):\n"
            "  --remote-server URL|NAME  the access point, e.g. http://127.0.0.1:3001; a NAME is\n"
            "                            looked up in the config file's [[server]] tables\n"
            "                            (env AH_REMOTE_SERVER; config key remote-server)\n"
            "  --config PATH             config file (env AH_CONFIG; default\n"
            "                            $XDG_CONFIG_HOME/agent-harbor/config.toml)\n"
            "  --ca-file PATH            trust this CA bundle (PEM) instead of the system store\n"
            "  --insecure                skip TLS certificate checks (self-signed test servers)\n"
            "  --client-cert PATH        client certificate (PEM) for mutual TLS\n"
            "  --client-key PATH         its key, when not in the certificate file\n"
            "  --json                    machine output: the server's JSON (one document, or\n"
            "                            one JSON object per line for streams)\n"
            "  --no-color                no colours (also NO_COLOR=1; none unless a terminal)\n"
            "  -q, --quiet               print less (no progress display)\n"
            "  --log-level LEVEL         show libah-client's own log (debug, info, warn, error)\n"
            "  -h, --help                show this help\n"
            "\nCredentials: AH_API_KEY (sent as Authorization: ApiKey …), else AH_JWT or "
            "AH_BEARER\n(Authorization: Bearer …).\n"
            "\nExit codes: 0 ok, 1 general failure (also: not found, illegal state change), 2 "
            "usage,\n3 agent launch failure, 4 authentication, 5 network (server unreachable, "
            "502/503/504),\n6 resource (rate limited, too large) or an unexpected answer from the "
            "server,\n7 validation (400/422; each field error is printed), 8 configuration (no "
            "server, bad\nURL, unreadable TLS files), 130 interrupted.\n");
}

/* ---- finding the server ----------------------------------------------------------------------
 */

static int read_stream(FILE *f, size_t max, char **ret, size_t *ret_len) {
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    if (!p)
        return -ENOMEM;
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max + 1) {
                free(p);
                return -EFBIG;
            }
            char *np = realloc(p, cap * 2);
            if (!np) {
                free(p);
                return -ENOMEM;
            }
            p = np;
            cap *= 2;
        }
        size_t got = fread(p + n, 1, cap - n - 1, f);
        n += got;
        if (n > max) {
            free(p);
            return -EFBIG;
        }
        if (got == 0) {
            if (ferror(f)) {
                int err = errno ? errno : EIO;
                free(p);
                return -err;
            }
            break;
        }
    }
    p[n] = '\0';
    *ret = p;
    if (ret_len)
        *ret_len = n;
    return 0;
}

int client_read_file(const struct client_opts *o, const char *path, size_t max, char **ret) {
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "re");
    if (!f) {
        fprintf(stderr, "ah %s: cannot read %s: %s\n", o->command, path, strerror(errno));
        return EXIT_USAGE;
    }
    int r = read_stream(f, max, ret, NULL);
    if (!is_stdin)
        fclose(f);
    if (r == -EFBIG) {
        fprintf(stderr, "ah %s: %s is larger than %zu bytes\n", o->command,
                is_stdin ? "standard input" : path, max);
        return EXIT_VALIDATION;
    }
    if (r < 0) {
        fprintf(stderr, "ah %s: cannot read %s: %s\n", o->command,
                is_stdin ? "standard input" : path, strerror(-r));
        return EXIT_GENERAL;
    }
    return 0;
}

#define PROMPT_READ_MAX (1024 * 1024) /* the server's 16 KiB limit is its error to name */

int client_read_prompt(const struct client_opts *o, const char *path, char **ret) {
    int code = client_read_file(o, path, PROMPT_READ_MAX, ret);
    if (code)
        return code;
    size_t n = strlen(*ret);
    while (n && ((*ret)[n - 1] == '\n' || (*ret)[n - 1] == '\r'))
        (*ret)[--n] = '\0';
    return 0;
}

size_t client_split_list(char *text, const char **items, size_t max) {
    size_t n = 0;
    for (char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        char *next = p + len + (p[len] == ',');
        p[len] = '\0';
        if (len) {
            if (n == max)
                return max + 1;
            items[n++] = p;
        }
        p = next;
    }
    return n;
}

char *client_join(int n, char *const *words) {
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(words[i]) + 1;
    char *out = malloc(len);
    if (!out)
        return NULL;
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(out + k, len - k, "%s%s", i ? " " : "", words[i]);
    return out;
}

/* The config file's settings (CLI-and-enrollment.md §1: the top-level `remote-server` and the
 * [[server]] tables with `name` and `url`), read with the daemons' reader: --config or
 * AH_CONFIG (must exist), else the user's file (may be missing: *ret NULL). 0 or an exit code. */
static int client_config(const struct client_opts *o, char **ret_path, json_t **ret) {
    const char *given = o->config_path ? o->config_path : getenv("AH_CONFIG");
    bool explicit_path = given && *given;
    *ret_path = explicit_path ? strdup(given) : config_user_path();
    if (!*ret_path) {
        fprintf(stderr, "ah %s: out of memory\n", o->command);
        return EXIT_GENERAL;
    }
    return config_read(o->command, *ret_path, explicit_path, ret);
}

/* The url of the [[server]] called name, or NULL. */
static const char *server_named(const json_t *vals, const char *name) {
    for (int i = 0;; i++) {
        char key[64];
        snprintf(key, sizeof(key), "server[%d].name", i);
        const json_t *n = json_object_get(vals, key);
        if (!n)
            return NULL;
        snprintf(key, sizeof(key), "server[%d].url", i);
        const char *url = json_string_value(json_object_get(vals, key));
        if (url && json_is_string(n) && strcmp(json_string_value(n), name) == 0)
            return url;
    }
}

/* The server's base URL (caller frees), or NULL with *ret_code = 0 when none is configured. */
static char *resolve_server(const struct client_opts *o, int *ret_code) {
    *ret_code = 0;
    const char *v = o->remote_server;
    const char *env = getenv("AH_REMOTE_SERVER");
    if (!v && env && *env)
        v = env;
    if (v && strstr(v, "://"))
        return strdup(v); /* a URL: no need to read the config file */
    AH_AUTOFREE char *path = NULL;
    AH_AUTO(json_decrefp) json_t *vals = NULL;
    if ((*ret_code = client_config(o, &path, &vals)) != 0)
        return NULL;
    if (!v) /* the config's own remote-server key, lowest precedence */
        v = json_string_value(json_object_get(vals, "remote-server"));
    if (!v)
        return NULL;
    const char *url = strstr(v, "://") ? v : server_named(vals, v);
    if (!url) {
        fprintf(stderr,
                "ah %s: '%s' is neither a server URL (http://HOST:PORT or https://…) nor "
                "the name of a [[server]] in %s\n",
                o->command, v, path);
        *ret_code = EXIT_CONFIG;
        return NULL;
    }
    char *copy = strdup(url);
    if (!copy) {
        fprintf(stderr, "ah %s: out of memory\n", o->command);
        *ret_code = EXIT_GENERAL;
    }
    return copy;
}

_Static_assert(AH_LOG_DEBUG == (int)LOG_DEBUG && AH_LOG_INFO == (int)LOG_INFO &&
                   AH_LOG_WARN == (int)LOG_WARN && AH_LOG_ERROR == (int)LOG_ERROR,
               "libah-client's log levels are core's");

static void log_to_stderr(void *userdata, enum ah_log_level level, const char *message) {
    fprintf(stderr, "ah %s: [%s] %s\n", (const char *)userdata,
            log_level_name(level >= AH_LOG_DEBUG && level <= AH_LOG_ERROR ? (enum log_level)level
                                                                           : LOG_ERROR),
            message);
}

static int readable(const struct client_opts *o, const char *flag, const char *path) {
    if (path && access(path, R_OK) != 0) {
        fprintf(stderr, "ah %s: %s %s: %s\n", o->command, flag, path, strerror(errno));
        return EXIT_CONFIG;
    }
    return 0;
}

/* Credentials from the environment (CLI-and-enrollment.md §1): an API key wins over a token. */
static int apply_credentials(const struct client_opts *o, ah_client *client) {
    const char *key = getenv("AH_API_KEY");
    const char *jwt = getenv("AH_JWT");
    const char *bearer = getenv("AH_BEARER");
    int rc = 0;
    const char *which = NULL;
    if (key && *key) {
        which = "AH_API_KEY";
        rc = ah_client_set_api_key(client, key);
    } else if ((jwt && *jwt) || (bearer && *bearer)) {
        which = jwt && *jwt ? "AH_JWT" : "AH_BEARER";
        rc = ah_client_set_bearer(client, jwt && *jwt ? jwt : bearer);
    }
    if (rc < 0) {
        fprintf(stderr, "ah %s: %s is not a usable credential (%s)\n", o->command, which,
                ah_strerror(rc));
        return rc == AH_E_NOMEM ? EXIT_GENERAL : EXIT_CONFIG;
    }
    return 0;
}

int client_conn_open(const struct client_opts *o, struct client_conn *ret) {
    memset(ret, 0, sizeof(*ret));
    int code;
    char *url = resolve_server(o, &code);
    if (!url && code)
        return code;

    /*
     * REMOTE OR LOCAL: the one place that decides where client commands run. With a server
     * they go over REST (ah_task_manager_new_remote). Without one, CLI-and-enrollment.md §1
     * wants local mode (the in-process task manager, api_local_new): not wired yet, because
     * two processes on one data directory need a lock or a hand-off first. When it is, the
     * REST-only calls (event history, logs, purge, stop reason) need a way to say so.
     */
    if (!url) {
        fprintf(stderr, "ah %s: no server: use --remote-server URL or set AH_REMOTE_SERVER\n",
                o->command);
        return EXIT_CONFIG;
    }

    if ((code = readable(o, "--ca-file", o->ca_file)) || //
        (code = readable(o, "--client-cert", o->client_cert)) ||
        (code = readable(o, "--client-key", o->client_key))) {
        free(url);
        return code;
    }
    int rc = ah_client_new(url, &ret->client);
    if (rc < 0) {
        fprintf(stderr, "ah %s: %s '%s'\n", o->command,
                rc == AH_E_NOMEM ? "out of memory for server"
                                 : "not a usable server URL (http:// or https:// expected):",
                url);
        free(url);
        return rc == AH_E_NOMEM ? EXIT_GENERAL : EXIT_CONFIG;
    }
    ret->server = url;
    if ((code = apply_credentials(o, ret->client)) != 0)
        goto fail;
    rc = 0;
    if (o->ca_file)
        rc = ah_client_set_ca_file(ret->client, o->ca_file);
    if (rc == 0 && o->insecure)
        rc = ah_client_set_insecure(ret->client, true);
    if (rc == 0 && o->client_cert)
        rc = ah_client_set_client_cert(ret->client, o->client_cert, o->client_key);
    if (rc == 0 && o->log_level >= 0)
        rc = ah_client_set_log(ret->client, log_to_stderr, (void *)o->command,
                               (enum ah_log_level)o->log_level);
    if (rc == 0)
        rc = ah_task_manager_new_remote(ret->client, &ret->tm);
    if (rc < 0) {
        fprintf(stderr, "ah %s: cannot set up the client: %s\n", o->command, ah_strerror(rc));
        code = rc == AH_E_NOMEM ? EXIT_GENERAL : EXIT_CONFIG;
        goto fail;
    }
    return 0;
fail:
    client_conn_close(ret);
    return code;
}

void client_conn_close(struct client_conn *c) {
    ah_task_manager_free(c->tm); /* before the client it borrows */
    ah_client_free(c->client);
    free(c->server);
    memset(c, 0, sizeof(*c));
}

/* ---- failures --------------------------------------------------------------------------------
 */

int client_exit_code(int rc, const struct ah_api_error *e) {
    int status = e ? e->status : 0;
    if (rc == AH_E_CANCELED)
        return EXIT_INTERRUPTED;
    /* The server answered, but not what the API says (another server, a proxy's page, a
     * redirect): the server was reached, so this is not a network failure. */
    if (rc == AH_E_PROTOCOL)
        return EXIT_RESOURCE;
    if (status == 401 || status == 403 || rc == AH_E_AUTH || rc == AH_E_FORBIDDEN)
        return EXIT_AUTH;
    if (status == 400 || status == 422 || (status && rc == AH_E_INVAL))
        return EXIT_VALIDATION;
    if (status == 413 || status == 429 || rc == AH_E_RATELIMIT || rc == AH_E_TOOLARGE)
        return EXIT_RESOURCE;
    if (status == 502 || status == 503 || status == 504)
        return EXIT_NETWORK;
    if (!status) {
        /* no answer at all: the transport failed, or the request never left */
        if (rc == AH_E_NETWORK || rc == AH_E_TIMEOUT || rc == AH_E_UNAVAIL)
            return EXIT_NETWORK;
        if (rc == AH_E_INVAL)
            return EXIT_CONFIG; /* a URL curl refused */
    }
    return EXIT_GENERAL;
}

int client_fail(const struct client_opts *o, const struct client_conn *c, const char *what, int rc,
                const struct ah_api_error *e) {
    int code = client_exit_code(rc, e);
    const char *detail = e && e->detail && *e->detail ? e->detail
                         : e && e->title && *e->title ? e->title
                                                      : ah_strerror(rc);
    char where[200] = "";
    if (e && e->status && e->request_id)
        snprintf(where, sizeof(where), " (HTTP %d, request %s)", e->status, e->request_id);
    else if (e && e->status)
        snprintf(where, sizeof(where), " (HTTP %d)", e->status);
    if (code == EXIT_NETWORK && (!e || !e->status) && c && c->server)
        fprintf(stderr, "ah %s: %s: cannot reach %s: %s\n", o->command, what, c->server, detail);
    else if (rc == AH_E_PROTOCOL)
        fprintf(stderr, "ah %s: %s: unexpected answer from the server%s%s: %s%s\n", o->command,
                what, c && c->server ? " " : "", c && c->server ? c->server : "", detail, where);
    else if (code == EXIT_VALIDATION && e && e->n_errors) {
        fprintf(stderr, "ah %s: %s: %s%s\n", o->command, what,
                e->n_errors == 1 ? "invalid field" : "invalid fields", where);
        for (size_t i = 0; i < e->n_errors; i++)
            fprintf(stderr, "ah %s:   %s: %s\n", o->command,
                    e->errors[i].field ? e->errors[i].field : "?",
                    e->errors[i].message ? e->errors[i].message : "invalid");
    } else if (code == EXIT_AUTH)
        fprintf(stderr, "ah %s: %s: %s%s; check AH_API_KEY, AH_JWT or AH_BEARER\n", o->command,
                what, detail, where);
    else
        fprintf(stderr, "ah %s: %s: %s%s\n", o->command, what, detail, where);
    return code;
}

/* ---- rendering -------------------------------------------------------------------------------
 */

const char *client_status_color(const struct client_opts *o, enum ah_session_status s) {
    if (!o->color)
        return NULL;
    switch (s) {
    case AH_STATUS_COMPLETED: return C_GREEN;
    case AH_STATUS_FAILED: return C_RED;
    case AH_STATUS_STOPPED:
    case AH_STATUS_CANCELLED:
    case AH_STATUS_PAUSED:
    case AH_STATUS_PAUSING: return C_YELLOW;
    case AH_STATUS_RUNNING:
    case AH_STATUS_RESUMING: return C_CYAN;
    default: return C_BLUE;
    }
}

void client_put_text(FILE *out, const char *text, size_t max, int indent) {
    size_t n = strlen(text);
    bool cut = max && n > max;
    if (cut) {
        n = max;
        while (n && ((unsigned char)text[n] & 0xC0) == 0x80) /* not inside a UTF-8 sequence */
            n--;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\n') {
            if (i + 1 == n)
                break; /* a trailing newline adds nothing */
            fprintf(out, "\n%*s", indent, "");
        } else if (ch == '\t') {
            fputc(' ', out);
        } else if (ch < 0x20 || ch == 0x7f) {
            fputc('?', out); /* ESC and friends must not reach the terminal */
        } else {
            fputc(ch, out);
        }
    }
    if (cut)
        fputs("…", out);
}

/* "HH:MM:SS" of an RFC 3339 time ("2026-01-02T03:04:05.678Z"), else 8 dashes. */
static void clock_of(const char *ts, char out[9]) {
    if (ts && strlen(ts) >= 19 && ts[10] == 'T')
        snprintf(out, 9, "%.8s", ts + 11);
    else
        snprintf(out, 9, "--:--:--");
}

static const char *jstr(const json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

#define TOOL_TEXT_MAX 160
#define KIND_WIDTH 8
#define TEXT_INDENT (8 + 2 + KIND_WIDTH + 2)

void client_render_event(FILE *out, const struct client_opts *o, const struct ah_event *ev,
                         const char *prefix) {
    json_t *j = ev->json ? json_loads(ev->json, 0, NULL) : NULL;
    char hms[9];
    clock_of(ev->ts, hms);
    const char *type = ev->type && *ev->type ? ev->type : "event";
    const char *kind = type, *color = NULL;
    int indent = TEXT_INDENT + (prefix ? (int)strlen(prefix) : 0);
    if (strcmp(type, "tool_use") == 0)
        kind = "tool";
    else if (strcmp(type, "tool_result") == 0)
        kind = "result";
    else if (strcmp(type, "file_edit") == 0)
        kind = "edit";
    if (o->color) {
        if (strcmp(type, "status") == 0)
            color = client_status_color(o, ev->status);
        else if (strcmp(type, "thought") == 0)
            color = C_MAGENTA;
        else if (strcmp(type, "log") == 0 && ev->level && strcmp(ev->level, "error") == 0)
            color = C_RED;
        else if (strcmp(type, "log") == 0 && ev->level && strncmp(ev->level, "warn", 4) == 0)
            color = C_YELLOW;
        else if (strcmp(type, "file_edit") == 0)
            color = C_GREEN;
    }
    fprintf(out, "%s%s%s%s  %s%-*s%s  ", o->color ? C_DIM : "", prefix ? prefix : "", hms,
            o->color ? C_RESET : "", color ? color : (o->color ? C_BOLD : ""), KIND_WIDTH, kind,
            o->color ? C_RESET : "");
    if (color && strcmp(type, "status") != 0)
        fputs(color, out);
    if (strcmp(type, "status") == 0) {
        const char *name = jstr(j, "status"); /* as sent: it may be one we do not know */
        if (color)
            fputs(color, out);
        client_put_text(out, name ? name : ah_session_status_name(ev->status), 40, indent);
        if (color)
            fputs(C_RESET, out);
        const char *err = jstr(j, "error");
        json_t *code = json_object_get(j, "exitCode");
        if (err && *err) {
            fputs(": ", out);
            client_put_text(out, err, 0, indent);
        }
        if (json_is_integer(code))
            fprintf(out, " (exit code %lld)", (long long)json_integer_value(code));
    } else if (strcmp(type, "log") == 0) {
        if (ev->level && strcmp(ev->level, "info") != 0)
            fprintf(out, "[%s] ", ev->level);
        client_put_text(out, ev->message ? ev->message : "", 0, indent);
    } else if (strcmp(type, "thought") == 0) {
        client_put_text(out, ev->message ? ev->message : "", 0, indent);
    } else if (strcmp(type, "tool_use") == 0) {
        const char *name = jstr(j, "tool_name");
        char *args = json_object_get(j, "tool_args")
                         ? json_dumps(json_object_get(j, "tool_args"),
                                      JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER)
                         : NULL;
        const char *last = jstr(j, "last_line"); /* a running tool's progress (D26) */
        client_put_text(out, name ? name : "?", TOOL_TEXT_MAX, indent);
        if (last) {
            fputs(" … ", out);
            client_put_text(out, last, TOOL_TEXT_MAX, indent);
        } else if (args) {
            fputc(' ', out);
            client_put_text(out, args, TOOL_TEXT_MAX, indent);
        }
        free(args);
    } else if (strcmp(type, "tool_result") == 0) {
        const char *name = jstr(j, "tool_name"), *st = jstr(j, "status");
        const char *output = jstr(j, "tool_output");
        client_put_text(out, name ? name : "?", TOOL_TEXT_MAX, indent);
        if (st && strcmp(st, "completed") != 0)
            fprintf(out, " [%s]", st);
        if (output && *output) {
            fputs(" → ", out);
            client_put_text(out, output, TOOL_TEXT_MAX, indent);
        }
    } else if (strcmp(type, "file_edit") == 0) {
        const char *path = jstr(j, "file_path"), *desc = jstr(j, "description");
        client_put_text(out, path ? path : "?", 0, indent);
        fprintf(out, " (+%lld -%lld)",
                (long long)json_integer_value(json_object_get(j, "lines_added")),
                (long long)json_integer_value(json_object_get(j, "lines_removed")));
        if (desc && *desc) {
            fputc(' ', out);
            client_put_text(out, desc, TOOL_TEXT_MAX, indent);
        }
    } else {
        /* Any other type: its own members, without the envelope every event has. */
        static const char *const envelope[] = {"type", "seq", "sessionId", "ts"};
        for (size_t i = 0; j && i < sizeof(envelope) / sizeof(envelope[0]); i++)
            json_object_del(j, envelope[i]);
        char *rest = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (rest || ev->message)
            client_put_text(out, rest ? rest : ev->message, TOOL_TEXT_MAX * 2, indent);
        free(rest);
    }
    if (color && strcmp(type, "status") != 0)
        fputs(C_RESET, out);
    fputc('\n', out);
    json_decref(j);
}

void client_print_event_json(FILE *out, const struct ah_event *ev) {
    fputs(ev->json ? ev->json : "{}", out);
    fputc('\n', out);
}

void client_age(const char *rfc3339, char *out, size_t n) {
    int64_t then;
    if (!rfc3339 || time_parse(rfc3339, &then) < 0) {
        snprintf(out, n, "-");
        return;
    }
    long long secs = (long long)((time_now_ms() - then) / 1000);
    if (secs < 0)
        secs = 0; /* clocks of client and server differ a little */
    if (secs < 60)
        snprintf(out, n, "%llds", secs);
    else if (secs < 3600)
        snprintf(out, n, "%lldm", secs / 60);
    else if (secs < 86400)
        snprintf(out, n, "%lldh", secs / 3600);
    else
        snprintf(out, n, "%lldd", secs / 86400);
}

/* ---- outcomes --------------------------------------------------------------------------------
 */

int client_session_outcome(const struct ah_session *s) {
    switch (s->status) {
    case AH_STATUS_COMPLETED: return EXIT_OK;
    case AH_STATUS_STOPPED:
    case AH_STATUS_CANCELLED: return EXIT_INTERRUPTED;
    case AH_STATUS_FAILED:
        /* `ah agent start` exits 127 when the agent's binary is missing, and says so */
        if (s->has_exit_code && s->exit_code == 127)
            return EXIT_AGENT;
        return EXIT_GENERAL;
    default: return EXIT_GENERAL; /* not finished: the caller expected it to be */
    }
}

int client_report_outcome(const struct client_opts *o, const struct ah_session *s,
                          const char *prefix) {
    int code = client_session_outcome(s);
    const char *name = s->status_name ? s->status_name : ah_session_status_name(s->status);
    if (code == EXIT_OK) {
        if (o->json || o->quiet)
            return code;
        const char *color = client_status_color(o, s->status);
        printf("%s%s%s%s%s%s %s", prefix && o->color ? C_DIM : "", prefix ? prefix : "",
               prefix && o->color ? C_RESET : "", color ? color : "", name, color ? C_RESET : "",
               s->id);
        if (s->has_changes)
            printf(": %lld file%s changed, +%lld -%lld", (long long)s->files_changed,
                   s->files_changed == 1 ? "" : "s", (long long)s->lines_added,
                   (long long)s->lines_removed);
        printf("\n");
        return code;
    }
    fprintf(stderr, "ah %s: session %s %s", o->command, s->id, name);
    if (s->error && *s->error) {
        fputs(": ", stderr);
        client_put_text(stderr, s->error, 400, 2);
    }
    if (s->has_exit_code)
        fprintf(stderr, " (exit code %d)", s->exit_code);
    fputc('\n', stderr);
    return code;
}

/* ---- following sessions ----------------------------------------------------------------------
 */

struct follower {
    const struct client_opts *o;
    const struct client_conn *c;
    const struct follow_opts *fo;
    const char *id;
    ah_cancel *cancel;
    pthread_mutex_t *out_mu;
    char prefix[40];
    int code; /* result */
};

static bool wanted(const struct follow_opts *fo, const char *type) {
    if (!fo->types)
        return true;
    for (const char *const *t = fo->types; *t; t++)
        if (strcmp(*t, type ? type : "") == 0)
            return true;
    return false;
}

static int on_event(void *userdata, const struct ah_event *ev) {
    struct follower *f = userdata;
    if (!wanted(f->fo, ev->type) || (f->o->quiet && !f->o->json))
        return 0;
    pthread_mutex_lock(f->out_mu);
    if (f->o->json)
        client_print_event_json(stdout, ev);
    else
        client_render_event(stdout, f->o, ev, f->fo->prefix_ids ? f->prefix : NULL);
    fflush(stdout); /* a progress display is useless when it arrives in blocks */
    pthread_mutex_unlock(f->out_mu);
    return 0;
}

static void *follow_one(void *arg) {
    struct follower *f = arg;
    struct ah_api_error e = {0};
    struct ah_stream_options so = {
        .after_seq = f->fo->after_seq, .tail = f->fo->tail, .cancel = f->cancel};
    int rc = ah_task_manager_stream_events(f->c->tm, f->id, &so, on_event, f, NULL, &e);
    char what[128];
    if (rc < 0) {
        pthread_mutex_lock(f->out_mu);
        if (rc == AH_E_CANCELED) {
            fprintf(stderr,
                    "ah %s: stopped following %s; it goes on on the server (ah session "
                    "show %s)\n",
                    f->o->command, f->id, f->id);
            f->code = client_exit_code(rc, &e);
        } else {
            snprintf(what, sizeof(what), "following session %s", f->id);
            f->code = client_fail(f->o, f->c, what, rc, &e);
        }
        pthread_mutex_unlock(f->out_mu);
        ah_api_error_clear(&e);
        return NULL;
    }
    /* The stream ended on the terminal status event; the session record has the details
     * (error text, exit code, changes) in one place. */
    struct ah_session *s = NULL;
    rc = ah_task_manager_get_session(f->c->tm, f->id, &s, &e);
    pthread_mutex_lock(f->out_mu);
    if (rc < 0) {
        snprintf(what, sizeof(what), "cannot get session %s", f->id);
        f->code = client_fail(f->o, f->c, what, rc, &e);
    } else {
        f->code = client_report_outcome(f->o, s, f->fo->prefix_ids ? f->prefix : NULL);
    }
    fflush(stdout);
    pthread_mutex_unlock(f->out_mu);
    ah_session_free(s);
    ah_api_error_clear(&e);
    return NULL;
}

/* Ctrl-C while following: a thread waits for the signal (a handler could not take the cancel
 * token's lock) and raises the token; SIGUSR1 from the main thread ends it when all is done. */
struct interrupt {
    ah_cancel *cancel;
    pthread_t thread;
    sigset_t set; /* SIGINT, SIGTERM and SIGUSR1 */
    sigset_t old;
};

static void *interrupt_wait(void *arg) {
    struct interrupt *in = arg;
    int sig = 0;
    if (sigwait(&in->set, &sig) == 0 && sig != SIGUSR1)
        ah_cancel_trigger(in->cancel);
    return NULL;
}

int client_follow(const struct client_opts *o, const struct client_conn *c, const char *const *ids,
                  size_t n, const struct follow_opts *fo) {
    if (n == 0)
        return EXIT_OK;
    struct follower *fs = calloc(n, sizeof(*fs));
    pthread_t *threads = calloc(n, sizeof(*threads));
    struct interrupt in = {0};
    pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
    if (!fs || !threads || ah_cancel_new(&in.cancel) < 0) {
        free(fs);
        free(threads);
        fprintf(stderr, "ah %s: out of memory\n", o->command);
        return EXIT_GENERAL;
    }
    /* Blocked before any thread starts, so every thread inherits the mask and only the
     * waiter sees these signals. */
    sigemptyset(&in.set);
    sigaddset(&in.set, SIGINT);
    sigaddset(&in.set, SIGTERM);
    sigaddset(&in.set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &in.set, &in.old);
    bool waiter = pthread_create(&in.thread, NULL, interrupt_wait, &in) == 0;
    if (!waiter) /* no one to hear Ctrl-C: let it end the process the ordinary way */
        pthread_sigmask(SIG_SETMASK, &in.old, NULL);

    for (size_t i = 0; i < n; i++) {
        fs[i] = (struct follower){.o = o,
                                  .c = c,
                                  .fo = fo,
                                  .id = ids[i],
                                  .cancel = in.cancel,
                                  .out_mu = &out_mu,
                                  .code = EXIT_GENERAL};
        size_t len = strlen(ids[i]);
        /* ULIDs made in one millisecond share their first characters; the tail tells them
         * apart */
        snprintf(fs[i].prefix, sizeof(fs[i].prefix), "%s ", ids[i] + (len > 8 ? len - 8 : 0));
    }
    size_t started = 0;
    if (n == 1) {
        follow_one(&fs[0]); /* no thread needed */
    } else {
        for (; started < n; started++)
            if (pthread_create(&threads[started], NULL, follow_one, &fs[started]) != 0)
                break;
        if (started < n) {
            fprintf(stderr,
                    "ah %s: cannot start a thread per session; following the rest one "
                    "after another\n",
                    o->command);
            for (size_t i = started; i < n; i++)
                follow_one(&fs[i]);
        }
        for (size_t i = 0; i < started; i++)
            pthread_join(threads[i], NULL);
    }
    bool interrupted = ah_cancel_triggered(in.cancel);
    if (waiter) {
        pthread_kill(in.thread, SIGUSR1);
        pthread_join(in.thread, NULL);
    }
    pthread_sigmask(SIG_SETMASK, &in.old, NULL);
    ah_cancel_free(in.cancel);
    int code = EXIT_OK;
    for (size_t i = 0; i < n && code == EXIT_OK; i++)
        code = fs[i].code;
    if (interrupted)
        code = EXIT_INTERRUPTED;
    free(fs);
    free(threads);
    return code;
}
