/*
 * main.c — the `ah` entry point: finds the command in the table and runs it.
 * Commands are one or two words ("webui", "agent access-point"); `ah help <command>` prints the
 * command's own help, `ah --help` the list, `ah --version` the version.
 */
#include <stdio.h>
#include <string.h>

#include "../agent/agent.h"
#include "../sandbox/sandbox.h"
#include "cli.h"

#ifndef AH_VERSION
#define AH_VERSION "0.0.0"
#endif

struct command {
    const char *words; /* "agent access-point" */
    int (*run)(int argc, char **argv);
    void (*help)(void);
    const char *summary; /* NULL: an alias, left out of the list */
};

static const struct command commands[] = {
    {"agent access-point", cmd_access_point, cmd_access_point_help,
     "run the access point (REST/SSE API, scheduler, local executor)"},
    {"webui", cmd_webui, cmd_webui_help, "run the web UI with an in-process access point"},
    {"agent enroll", cmd_enroll, cmd_enroll_help,
     "run an executor: dial the access point over QUIC + mutual TLS and take its work"},
    {"agent record", agent_record_main, NULL,
     "run a command under a PTY, record it and stream its events (D16, D17)"},
    {"agent start", agent_start_main, NULL,
     "run an agent non-interactively (scripted, claude-code, codex, gemini, opencode)"},
    /* the two ends of an allow-list sandbox's network relay, run by the sandbox (D52) */
    {"agent net-relay", sandbox_net_relay_main, NULL, NULL},
    {"agent net-forward", sandbox_net_forward_main, NULL, NULL},
    /* client commands: talk to an access point (--remote-server URL or AH_REMOTE_SERVER) */
    {"task create", cmd_task_create, NULL,
     "create a task (one session per agent); --follow shows its progress"},
    {"task", cmd_task_create, NULL, NULL}, /* CLI.md's `ah task [OPTIONS]` */
    {"session list", cmd_session_list, NULL, "list sessions, newest first"},
    {"session show", cmd_session_show, NULL, "show one session"},
    {"session get", cmd_session_show, NULL, NULL},
    {"session events", cmd_session_events, NULL, "print a session's events (--follow: live)"},
    {"session logs", cmd_session_logs, NULL, "print a session's log lines (-f: follow)"},
    {"session pause", cmd_session_pause, NULL, "pause sessions"},
    {"session resume", cmd_session_resume, NULL, "resume paused sessions"},
    {"session stop", cmd_session_stop, NULL, "stop sessions (SIGTERM, then SIGKILL)"},
    {"session rm", cmd_session_rm, NULL, "cancel sessions (--purge: delete their records)"},
    {"session cancel", cmd_session_rm, NULL, NULL},
    {"session prompt", cmd_session_prompt, NULL, "send more input to a running session"},
    {"session chat", cmd_session_chat, NULL, "send a message, or follow a session's conversation"},
    {"session context", cmd_session_context, NULL, "show a session's context window"},
    {"projects", cmd_projects, NULL, "list your projects"},
    {"agents", cmd_agents, NULL, "list the agent types the server runs"},
    {"repos", cmd_repos, NULL, "list the repositories your tasks used"},
    {"session files", cmd_session_files, NULL, "list the files a session changed"},
    {"session diff", cmd_session_diff, NULL, "print a session's diff (--format patch: git apply)"},
    {"session timeline", cmd_session_timeline, NULL, "show a session's moments and snapshots"},
    {"session snapshot", cmd_session_snapshot, NULL, "snapshot a session's workspace now"},
    {"session seek", cmd_session_seek, NULL, "a read-only view of a session's workspace at a point"},
    {"session branch", cmd_session_branch, NULL, "start a new session from a point of this one"},
    /* offline on the database: works before the first key exists (D22) */
    {"admin api-key create", cmd_admin_key_create, NULL,
     "make an API key (printed once) in the database: --role --tenant [--db]"},
    {"admin api-key list", cmd_admin_key_list, NULL, "list the API keys in the database"},
    {"admin api-key revoke", cmd_admin_key_revoke, NULL, "revoke an API key by its id"},
    {"admin migrate", cmd_admin_migrate, NULL, "apply the schema migrations to a database"},
    {"admin export", cmd_admin_export, NULL, "write a whole database as JSON lines (--out)"},
    {"admin import", cmd_admin_import, NULL,
     "load an export into an empty database (SQLite or PostgreSQL), verified"},
    {"admin backup", cmd_admin_backup, NULL,
     "back up the database and data directory while the server runs (--out DIR)"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out) {
    fprintf(out, "usage: ah <command> [OPTIONS]\n\nAgent Harbor %s — run AI coding agents in "
                 "isolated workspaces and drive them over a network API.\n\nCommands:\n",
            AH_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (commands[i].summary)
            fprintf(out, "  %-22s %s\n", commands[i].words, commands[i].summary);
    fprintf(out, "  %-22s %s\n", "help <command>", "show a command's options");
    fprintf(out,
            "\nClient commands (task, session) need a server: --remote-server URL|NAME or\n"
            "AH_REMOTE_SERVER; credentials from AH_API_KEY, AH_JWT or AH_BEARER.\n"
            "\nExit codes: 0 ok, 1 general failure (also: not found, illegal state change), "
            "2 usage,\n3 agent launch, 4 authentication, 5 network, 6 resource (rate limit, "
            "size) or an\nunexpected answer from the server, 7 validation (each field error is "
            "printed),\n8 configuration (e.g. no server).\nFollowing a session (--follow) exits with its outcome: 0 completed, 1 "
            "failed,\n3 agent not launched, 130 stopped, cancelled or interrupted (Ctrl-C).\n");
}

/* How many of argv's leading words spell the command; 0 when they do not. */
static int match(const struct command *c, int argc, char **argv) {
    const char *w = c->words;
    int used = 0;
    while (*w) {
        size_t len = strcspn(w, " ");
        if (used >= argc || strlen(argv[used]) != len || memcmp(argv[used], w, len) != 0)
            return 0;
        used++;
        w += len;
        while (*w == ' ')
            w++;
    }
    return used;
}

static const struct command *find(int argc, char **argv, int *ret_used) {
    for (size_t i = 0; i < N_COMMANDS; i++) {
        int used = match(&commands[i], argc, argv);
        if (used) {
            *ret_used = used;
            return &commands[i];
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("ah %s\n", AH_VERSION);
        return EXIT_OK;
    }
    int used = 0;
    if (strcmp(argv[1], "help") == 0) {
        if (argc == 2) {
            usage(stdout);
            return EXIT_OK;
        }
        const struct command *c = find(argc - 2, argv + 2, &used);
        if (!c || used != argc - 2) {
            fprintf(stderr, "ah: no command '%s'; see ah --help\n", argv[2]);
            return EXIT_USAGE;
        }
        if (c->help) {
            c->help();
            return EXIT_OK;
        }
        char *help_argv[] = {argv[argc - 1], "--help", NULL};
        return c->run(2, help_argv);
    }
    const struct command *c = find(argc - 1, argv + 1, &used);
    if (!c) {
        fprintf(stderr, "ah: unknown command '%s'; see ah --help\n", argv[1]);
        return EXIT_USAGE;
    }
    /* argv[0] of a command is its last word, getopt style */
    return c->run(argc - used, argv + used);
}
