/*
 * adapter.h — private to exec/: agent adapters (D19). An adapter knows how to launch one agent
 * CLI non-interactively and how to turn each line of its machine-readable output into our event
 * payloads (API.md §8.2). `ah agent start` runs the CLI, feeds its stdout lines through the
 * adapter and writes the resulting events to AH_EVENTS_FD for the recorder.
 *
 * Adapters are pure: no I/O, no globals; all state lives in the per-run state object.
 * Session status events are NOT produced here — the server's state machine owns `status`. An
 * adapter reports the run's outcome instead (enum adapter_outcome), which becomes the exit code
 * of `ah agent start` and, through it, completed/failed.
 */
#ifndef AH_EXEC_ADAPTER_H
#define AH_EXEC_ADAPTER_H

#include "../core/core.h"

enum adapter_outcome {
    ADAPTER_RUNNING = 0, /* no verdict yet */
    ADAPTER_SUCCEEDED,
    ADAPTER_FAILED,
};

struct adapter_launch {
    const char *binary;      /* executable to run (default adapter->binary, or from config) */
    const char *prompt;      /* the prompt text */
    const char *cwd;         /* the workspace */
    const char *model;       /* NULL = the CLI's default */
    const json_t *settings;  /* agents[].settings (may be NULL) */
};

struct agent_adapter {
    const char *type;            /* canonical type, e.g. "claude-code" */
    const char *const *aliases;  /* NULL-terminated other names ("claude"), may be NULL */
    const char *binary;          /* default executable name ("claude") */
    /* Builds the argv (NULL-terminated; every string and the array malloc'd; free with
     * adapter_argv_free). 0 or AH_E_NOMEM / AH_E_INVAL. */
    int (*build_argv)(const struct adapter_launch *l, char ***ret_argv);
    void *(*state_new)(void);    /* NULL on OOM */
    void (*state_free)(void *state);
    /* One output line (no trailing newline; may be any bytes). Appends zero or more event
     * payloads to `out` (a JSON array): objects with "type" and the fields of API.md §8.2, but no
     * seq, ts or sessionId (the recorder adds those). Lines that are not JSON, or JSON of a kind
     * the adapter does not know, become `log` events (never dropped, never an error). Sets
     * *outcome when the line settles the run. Returns 0 or AH_E_NOMEM. */
    int (*line)(void *state, const char *line, size_t len, json_t *out,
                enum adapter_outcome *outcome);
    /* The CLI exited with `exit_code` (or died by a signal: exit_code = 128 + signo). Appends
     * any final events and settles the outcome (e.g. codex without turn.completed → failed,
     * non-zero exit → failed). Returns the final outcome (never ADAPTER_RUNNING). */
    enum adapter_outcome (*finish)(void *state, int exit_code, json_t *out);
};

/* The adapter for a type or alias ("claude", "claude-code", "codex", "gemini", "opencode"), or
 * NULL. Custom agents use adapter_custom_text / adapter_custom_jsonl. */
const struct agent_adapter *adapter_find(const char *type);
/* Custom agents from configuration (D19): `text` turns every line into a log event; `jsonl`
 * accepts lines that are already our event payloads (validated: a known type and its required
 * fields; anything else becomes a log event). Their build_argv runs `binary` with the prompt as
 * the last argument. */
extern const struct agent_adapter adapter_custom_text;
extern const struct agent_adapter adapter_custom_jsonl;
void adapter_argv_free(char **argv);

#endif
