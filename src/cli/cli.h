/*
 * cli.h — the `ah` command line: the command table, configuration loading (flags > environment
 * > file > defaults), the daemon commands and the client commands (ah task …, ah session …).
 */
#ifndef AH_CLI_H
#define AH_CLI_H

#include <ah/client.h>
#include <ah/task_manager.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "../exec/exec.h"

/* Exit codes shared by every command (CLI-and-enrollment.md §7.2). */
enum {
    EXIT_OK = 0,
    EXIT_GENERAL = 1,
    EXIT_USAGE = 2, /* also "repository" for ah task; usage errors never reach the server */
    EXIT_AGENT = 3,
    EXIT_AUTH = 4,
    EXIT_NETWORK = 5,
    EXIT_RESOURCE = 6,
    EXIT_VALIDATION = 7,
    EXIT_CONFIG = 8,
};

/* Settings of the daemons. Strings are owned (config_clear frees them). */
struct config {
    char *bind;
    int64_t port;
    char *db;
    enum log_level log_level;
    int64_t max_concurrent_tasks;
    int64_t max_body_bytes;
    int64_t http_threads;
    int64_t shutdown_grace_ms;
    char *data_dir;
    char **cors_origins; /* NULL-terminated */
    char *config_path;   /* the file that was loaded, or NULL */
    int64_t stop_grace_ms;
    int64_t clone_timeout_ms; /* git clone/fetch while provisioning */
    int64_t replica_lease_ms; /* replicas on one PostgreSQL database (D46) */
    int64_t refs_timeout_ms;  /* git ls-remote for a repository's branches */
    int64_t sse_keepalive_ms;
    int64_t sse_coalesce_ms;
    int64_t idle_timeout_ms; /* HTTP connections idle in headers/body/between requests */
    char *otlp_endpoint;     /* D48: OTLP/HTTP collector for spans, or NULL */
    char *metrics_bind;      /* D49: a second listener for /metrics only ("ADDR:PORT"), or NULL */
    char *public_url;        /* D27: the address users reach the server by, if not loopback */
    char *workspace_template;
    char **snapshot_preference; /* NULL-terminated */
    char **agent_env;           /* environment variables passed to agents */
    bool webhook_allow_loopback, webhook_allow_private; /* webhook targets (exec/webhooks.c) */
    int64_t webhook_timeout_ms, webhook_retry_base_ms, webhook_retry_for_ms;
    struct agent_config *agents; /* [agents.NAME] sections: command + format */
    size_t n_agents;
    json_t *models; /* [models."ID"] sections (D40): id → fields; NULL when none */
    char *tls_cert, *tls_key;  /* HTTPS (issue 13 item 8): PEM files, both or neither */
    bool insecure_no_auth;    /* D22: serve a non-loopback address without credentials */
    int64_t rate_limit;       /* D23: requests/s per credential (0: default) */
    int64_t rate_limit_burst; /* D23 (0: default) */
    int64_t task_rate_limit;  /* D23: task creations/s per tenant (0: default) */
    int64_t auth_failure_rate; /* failed authentications/s per address (0: default) */
    int64_t max_sessions_per_tenant; /* D43 admission: 0 = no limit */
    char *jwks, *jwt_issuer, *jwt_audience; /* bearer tokens (docs/auth.md) */
    char *jwt_claim_tenant, *jwt_claim_project, *jwt_claim_roles;
    int64_t jwt_leeway_s;
    int64_t audit_retention_days; /* D37: 0 keeps audit records */
    /* OIDC sign-in for people (D36; docs/auth.md) */
    char *oidc_issuer, *oidc_client_id, *oidc_client_secret_file, *oidc_redirect_uri;
    char *oidc_scopes, *oidc_provider_name, *oidc_claim_user, *oidc_claim_tenant;
    char *oidc_claim_roles, *oidc_default_tenant, *oidc_default_role, *oidc_post_logout_uri;
    int64_t oidc_session_idle_s, oidc_session_max_s;
    json_t *sandbox; /* [sandbox] and [sandbox.NAME] keys without "sandbox." (D52); or NULL */
    /* executor control plane (QUIC, D24/D42); quic_port -1: no listener */
    int64_t quic_port, quic_cert_ttl_ms, quic_idle_timeout_ms;
    int64_t executor_lost_timeout_ms; /* D44; 0: 5 minutes */
    char *quic_bind, *quic_identity, *quic_cert, *quic_key, *quic_ca, *quic_cert_cmd;
    char *executor_trust_domain;
    char **executor_id_patterns; /* NULL-terminated */
    bool allow_insecure;
};

struct config_defaults {
    int64_t port;
};

/* Loads the configuration for a daemon command from argv (after the command words), the AH_*
 * environment and the config file (--config, AH_CONFIG, or $XDG_CONFIG_HOME/agent-harbor/
 * config.toml when present). Prints a one-line error and returns EXIT_USAGE/EXIT_CONFIG on bad
 * input; returns -1 when --help was printed. */
/* Reads and parses a config file (TOML subset) into flat keys ("server[0].url"). A missing
 * file is 0 with *ret_vals NULL unless must_exist. Failures are printed, prefixed "ah <command>"
 * ("ah" when command is NULL), and return EXIT_CONFIG. */
int config_read(const char *command, const char *path, bool must_exist, json_t **ret_vals);
/* $XDG_CONFIG_HOME/agent-harbor/config.toml or its $HOME fallback (caller frees; NULL: OOM). */
char *config_user_path(void);
/* The daemons' default database, $XDG_DATA_HOME/agent-harbor/state.db (caller frees). */
char *config_default_db(void);
/* Opens --db (or AH_DB's value, or the default) for an offline command named `what`
 * ("admin export"); 0, or an exit code after a one-line error on stderr. */
int config_open_store(const char *what, const char *db, struct store **ret);
int config_load(int argc, char **argv, const char *command, const struct config_defaults *defs,
                struct config *ret);
void config_clear(struct config *c);
/* Whether --NAME (name[0..len)) is a setting of config_load: -1 no, 0 one taking a value, 1 a
 * flag without one (true when given). */
int config_flag_kind(const char *name, size_t len);
/* The help text listing every configuration key, its flag and its environment variable. */
void config_print_help(const char *usage, const struct config_defaults *defs);

/* ---- the daemon path (daemon.c): `ah agent access-point`, `ah webui`, and `ah agent enroll
 * --rest-api yes` all run it (CLI-and-enrollment §1) --------------------------------------- */
struct daemon;
struct executor;
/* SIGTERM and SIGINT blocked in this thread and every thread started after (each daemon takes
 * them with sigwait(*ret_stop)); SIGPIPE ignored, so a vanished peer is an error return. */
void daemon_block_signals(sigset_t *ret_stop);
struct daemon_options {
    bool webui; /* also the web UI's routes (after every API route) */
    bool open;  /* open the UI in the browser once listening */
    /* One budget for the machine with an enrolled executor's sessions (exec_config.slots_*) */
    int64_t (*slots_taken)(void *arg);
    void (*slots_changed)(void *arg);
    void *slots_arg;
};
/* Starts the REST/SSE API on cfg's bind/port (a port in use: one line, EXIT_GENERAL), the store,
 * the scheduler and the local runner, and the QUIC listener with --quic-port; refuses a
 * non-loopback bind without credentials (D22). The caller has set the umask, logging, the
 * signal mask and the OTLP exporter; cfg is borrowed until daemon_stop. EXIT_OK with *ret, or
 * the exit code after a line on stderr, with everything started stopped again. */
int daemon_start(const char *command, const struct config *cfg, const struct daemon_options *o,
                 struct daemon **ret);
/* Stops serving (in-flight requests drain), closes executors' links and the store; sessions'
 * processes keep running and are re-attached by the next start (D15). NULL-safe. */
void daemon_stop(struct daemon *d);
struct executor *daemon_exec(struct daemon *d); /* its local runner */
int daemon_port(struct daemon *d);              /* the HTTP port it listens on */
struct agent_catalog;
/* Its agent catalog (GET /agents' detection), lent until daemon_stop. */
struct agent_catalog *daemon_catalog(struct daemon *d);

/* Commands. Each returns a process exit code; argv[0] is the command's last word (getopt
 * style), its options follow. */
int cmd_access_point(int argc, char **argv);
int cmd_enroll(int argc, char **argv); /* `ah agent enroll` (cmd_enroll.c) */
void cmd_enroll_help(void);
int cmd_webui(int argc, char **argv);
void cmd_access_point_help(void);
void cmd_webui_help(void);

/* ---- client commands (ah task …, ah session …): client_opts.c, cmd_task.c, cmd_session.c ----
 * They talk to a server through libah-client's public API only (<ah/client.h>,
 * <ah/task_manager.h>), like any other program using the library would. */
/* A session's outcome as a process exit code: 0 completed; 1 failed; 3 failed because the agent
 * could not be launched (its binary is missing); 130 stopped or cancelled, like a Ctrl-C. */
#define EXIT_INTERRUPTED 130

/* Options every client command takes. Strings point into argv or the environment. */
struct client_opts {
    const char *command; /* "task create", for messages */
    const char *remote_server;
    const char *config_path;
    const char *ca_file, *client_cert, *client_key;
    bool insecure;
    bool json;
    bool quiet;
    bool color;    /* decided by client_opts_finish: a TTY, no --no-color, no NO_COLOR */
    bool no_color; /* --no-color */
    int log_level; /* libah-client log sink on stderr; -1 (default): none */
};

/* getopt_long values of the shared options, above any character a command uses. */
enum {
    CLIENT_OPT_REMOTE = 0x1000,
    CLIENT_OPT_CONFIG,
    CLIENT_OPT_CA_FILE,
    CLIENT_OPT_INSECURE,
    CLIENT_OPT_CLIENT_CERT,
    CLIENT_OPT_CLIENT_KEY,
    CLIENT_OPT_JSON,
    CLIENT_OPT_NO_COLOR,
    CLIENT_OPT_LOG_LEVEL,
};
/* one option per line reads better than the formatter's brace layout */
/* clang-format off */
#define CLIENT_LONG_OPTIONS                                                                        \
    {"remote-server", required_argument, NULL, CLIENT_OPT_REMOTE},                                 \
        {"config", required_argument, NULL, CLIENT_OPT_CONFIG},                                    \
        {"ca-file", required_argument, NULL, CLIENT_OPT_CA_FILE},                                  \
        {"insecure", no_argument, NULL, CLIENT_OPT_INSECURE},                                      \
        {"client-cert", required_argument, NULL, CLIENT_OPT_CLIENT_CERT},                          \
        {"client-key", required_argument, NULL, CLIENT_OPT_CLIENT_KEY},                            \
        {"json", no_argument, NULL, CLIENT_OPT_JSON},                                              \
        {"no-color", no_argument, NULL, CLIENT_OPT_NO_COLOR},                                      \
        {"log-level", required_argument, NULL, CLIENT_OPT_LOG_LEVEL},                              \
        {"quiet", no_argument, NULL, 'q'},                                                         \
        {"help", no_argument, NULL, 'h'}
/* clang-format on */
/* The short options of CLIENT_LONG_OPTIONS, to start every getopt optstring with (the leading
 * ':' makes a missing argument distinguishable from an unknown option). */
#define CLIENT_SHORT_OPTIONS ":qh"

/* Sets the defaults and resets getopt for a fresh parse. */
void client_opts_init(struct client_opts *o, const char *command);
/* Handles one getopt_long result the command did not recognise: a shared option (returns 0),
 * -h/--help (returns -1: print the help, exit 0), or an unknown option / missing argument
 * (prints a usage error, returns EXIT_USAGE). */
int client_opts_handle(struct client_opts *o, int opt, int argc, char **argv);
/* After parsing: decides colour and checks option combinations. 0 or an exit code. */
int client_opts_finish(struct client_opts *o);
/* The help lines of the shared options, exit codes and environment, for each command's --help. */
void client_opts_help(FILE *out);

/* Prints "ah <command>: <message>" on stderr and returns EXIT_USAGE. */
int client_usage_error(const struct client_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Parses a decimal integer option within [min, max]; prints a usage error otherwise. */
int client_opt_int(const struct client_opts *o, const char *name, const char *arg, int64_t min,
                   int64_t max, int64_t *ret);

/* Where client commands send their calls. `tm` serves everything the task-manager interface
 * covers; `client` is the raw REST client for the few calls that interface lacks (event
 * history, logs, purge, stop reason). */
struct client_conn {
    ah_client *client;
    ah_task_manager *tm;
    char *server; /* the base URL, for messages */
};
/* Resolves the server (--remote-server > AH_REMOTE_SERVER > config remote-server; a NAME is
 * looked up in the config's [[server]] tables), applies credentials (AH_API_KEY, else AH_JWT /
 * AH_BEARER) and TLS options, and makes the task manager. Returns 0 or an exit code (printed). */
int client_conn_open(const struct client_opts *o, struct client_conn *ret);
void client_conn_close(struct client_conn *c);

/* Prints a failed call as one line on stderr (plus one line per field error of a validation
 * failure), with the Problem's detail, HTTP status and request id, and returns the exit code
 * for it (CLI-and-enrollment.md §7.2). `what` says what was being done, e.g. "cannot get
 * session X". */
int client_fail(const struct client_opts *o, const struct client_conn *c, const char *what, int rc,
                const struct ah_api_error *e);
/* The exit code for a failed call: 4 auth, 5 network, 6 resource or an unexpected answer
 * (AH_E_PROTOCOL), 7 validation, 8 config, 130 cancelled, 1 otherwise. */
int client_exit_code(int rc, const struct ah_api_error *e);

/* Reads a whole file ("-": stdin) of at most `max` bytes into a NUL-terminated string. Prints
 * the reason and returns an exit code on failure (EXIT_VALIDATION when too large). */
int client_read_file(const struct client_opts *o, const char *path, size_t max, char **ret);
/* A prompt from a file or "-" (stdin), without its final newline(s): they are not part of it.
 * Up to 1 MiB; the server takes 16 KiB, and names the limit when a prompt is over it. */
int client_read_prompt(const struct client_opts *o, const char *path, char **ret);

/* The words joined by single spaces (caller frees); NULL when out of memory. */
char *client_join(int n, char *const *words);
/* Splits a comma list in place ("a,,b" is a and b) into items, at most max of them. Returns
 * the count, or max + 1 when there are more. */
size_t client_split_list(char *text, const char **items, size_t max);

/* ---- rendering (human output) ---- */

/* One event as a line (or a few) of a progress display: "HH:MM:SS  type  text". `prefix`
 * (nullable) starts every line, e.g. the session id when several sessions are followed. */
void client_render_event(FILE *out, const struct client_opts *o, const struct ah_event *ev,
                         const char *prefix);
/* One event as a JSON line (its payload as the server sent it). */
void client_print_event_json(FILE *out, const struct ah_event *ev);
/* ANSI colour for a status (NULL without colour). */
const char *client_status_color(const struct client_opts *o, enum ah_session_status s);
/* "3s", "5m", "2h", "4d" since an RFC 3339 time; "-" when it cannot be parsed. */
void client_age(const char *rfc3339, char *out, size_t n);
/* Writes text with control characters made harmless (an agent's output must not drive the
 * terminal); newlines become "\n" + `indent` spaces; at most `max` bytes (0: all), cut at a
 * UTF-8 boundary with "…". */
void client_put_text(FILE *out, const char *text, size_t max, int indent);

/* The exit code of a finished session (see EXIT_INTERRUPTED). */
int client_session_outcome(const struct ah_session *s);
/* Prints a finished session's outcome: "completed …" on stdout (unless --json/--quiet), or
 * "session X failed: …" on stderr. Returns client_session_outcome. */
int client_report_outcome(const struct client_opts *o, const struct ah_session *s,
                          const char *prefix);

/* Following sessions live until each ends (task create --follow, session events/logs -f).
 * SIGINT/SIGTERM end the streams early (the sessions go on on the server); the exit code is
 * then EXIT_INTERRUPTED. `filter` (nullable) decides which events are shown; every event still
 * counts for the outcome. Returns the worst exit code: the first non-zero one in id order. */
struct follow_opts {
    int64_t tail;             /* > 0: start with the last N events only */
    const char *const *types; /* NULL-terminated type filter, NULL: all */
    int64_t after_seq;        /* start after this seq (session logs -f) */
    bool prefix_ids;          /* prefix lines with the session id (several sessions) */
};
int client_follow(const struct client_opts *o, const struct client_conn *c, const char *const *ids,
                  size_t n, const struct follow_opts *fo);

/* Commands. */
int cmd_task_create(int argc, char **argv);
int cmd_session_list(int argc, char **argv);
int cmd_session_show(int argc, char **argv);
int cmd_session_events(int argc, char **argv);
int cmd_session_logs(int argc, char **argv);
/* cmd_timeline.c */
int cmd_session_timeline(int argc, char **argv);
int cmd_session_snapshot(int argc, char **argv);
int cmd_session_seek(int argc, char **argv);
int cmd_session_branch(int argc, char **argv);
/* cmd_files.c */
int cmd_session_files(int argc, char **argv);
int cmd_session_diff(int argc, char **argv);
int cmd_session_pause(int argc, char **argv);
int cmd_session_resume(int argc, char **argv);
int cmd_session_stop(int argc, char **argv);
int cmd_session_rm(int argc, char **argv);
int cmd_session_prompt(int argc, char **argv);
/* cmd_chat.c (issue 15) */
int cmd_session_chat(int argc, char **argv);
int cmd_session_context(int argc, char **argv);
int cmd_projects(int argc, char **argv);
int cmd_agents(int argc, char **argv);
int cmd_repos(int argc, char **argv);
/* cmd_admin.c: ah admin api-key create|list|revoke, offline on the database (D22) */
int cmd_admin_key_create(int argc, char **argv);
int cmd_admin_key_list(int argc, char **argv);
int cmd_admin_key_revoke(int argc, char **argv);
/* cmd_admin_db.c: ah admin migrate|export|import, offline on the database (D47) */
int cmd_admin_migrate(int argc, char **argv);
int cmd_admin_export(int argc, char **argv);
int cmd_admin_import(int argc, char **argv);
/* cmd_admin_backup.c: ah admin backup, online (SQLite backup API + the data directory) */
int cmd_admin_backup(int argc, char **argv);

#endif
