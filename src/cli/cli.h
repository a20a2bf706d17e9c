/*
 * cli.h — the `ah` command line: the command table, configuration loading (flags > environment
 * > file > defaults) and the daemon commands.
 */
#ifndef AH_CLI_H
#define AH_CLI_H

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
    int64_t sse_keepalive_ms;
    char *workspace_template;
    char **snapshot_preference; /* NULL-terminated */
    char **agent_env;           /* environment variables passed to agents */
    struct agent_config *agents; /* [agents.NAME] sections: command + format */
    size_t n_agents;
};

struct config_defaults {
    int64_t port;
};

/* Loads the configuration for a daemon command from argv (after the command words), the AH_*
 * environment and the config file (--config, AH_CONFIG, or $XDG_CONFIG_HOME/agent-harbor/
 * config.toml when present). Prints a one-line error and returns EXIT_USAGE/EXIT_CONFIG on bad
 * input; returns -1 when --help was printed. */
int config_load(int argc, char **argv, const char *command, const struct config_defaults *defs,
                struct config *ret);
void config_clear(struct config *c);
/* The help text listing every configuration key, its flag and its environment variable. */
void config_print_help(const char *usage, const struct config_defaults *defs);

/* Commands. Each returns a process exit code; argv[0] is the command's last word (getopt
 * style), its options follow. */
int cmd_access_point(int argc, char **argv);
int cmd_webui(int argc, char **argv);
void cmd_access_point_help(void);
void cmd_webui_help(void);

#endif
