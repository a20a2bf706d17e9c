/*
 * agent.h — the agent/ layer's whole interface: what runs in the agent's processes (`ah agent
 * record`: PTY, asciicast recording, workspace watcher, the link to the server; `ah agent
 * start`: adapters and the scripted agent), and what the server shares with them (the recorder
 * link's framing, D17; the adapters' table; the scenario check). The server side (exec/) sits
 * above this layer and includes this header; nothing here includes exec/.
 *
 * Agent adapters (D19). An adapter knows how to launch one agent
 * CLI non-interactively and how to turn each line of its machine-readable output into our event
 * payloads (API.md §8.2). `ah agent start` runs the CLI, feeds its stdout lines through the
 * adapter and writes the resulting events to AH_EVENTS_FD for the recorder.
 *
 * Adapters are pure: no I/O, no globals; all state lives in the per-run state object.
 * Session status events are NOT produced here — the server's state machine owns `status`. An
 * adapter reports the run's outcome instead (enum adapter_outcome), which becomes the exit code
 * of `ah agent start` and, through it, completed/failed.
 */
#ifndef AH_AGENT_H
#define AH_AGENT_H

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
    const char *resume_id;   /* a conversation the CLI resumes (a session branch), or NULL */
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
    /* Session branches, for a CLI that resumes its own saved conversations (claude-code
     * `--resume`, codex `exec resume`); NULL for the others, whose prompt then carries the
     * transcript as text. Writes into `file` the CLI's saved conversation `id` (a UUID) holding
     * `transcript` — {"prompt": the parent's first prompt, "events": [the parent's events up to
     * the branch point]} — as the CLI would have saved it for a run in `cwd` at `now_ms`, and
     * puts in ret_path where the CLI looks for it, relative to $HOME (malloc'd). Pure (no I/O).
     * 0, AH_E_NOMEM, or AH_E_TOOLARGE past the buffer's cap. build_argv resumes `id` when
     * adapter_launch.resume_id is set. */
    int (*resume_file)(const json_t *transcript, const char *cwd, const char *id, int64_t now_ms,
                       struct ah_buf *file, char **ret_path);
    /* Further turns (issue 15): the id of the CLI's own conversation as this run's output named
     * it (claude-code's session_id, codex's thread_id), which the next turn resumes with a
     * model of its own; NULL when the run named none. NULL for the adapters whose CLI cannot
     * take a further turn that way: their sessions run one turn. Lent until state_free. */
    const char *(*conversation)(void *state);
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

/* ---- the recorder link (D17): 4-byte big-endian length + one JSON object ------------------- */

#define LINK_MAX_FRAME (4u * 1024 * 1024)

/* Appends one frame holding msg to out. */
int link_frame(struct ah_buf *out, const json_t *msg);
/* Incremental decoder: feed bytes with link_feed, take messages with link_take. */
struct link_reader {
    struct ah_buf in;
    size_t off; /* consumed prefix of in */
};
int link_feed(struct link_reader *r, const void *data, size_t len);
/* 1 and *ret (caller owns) when a whole frame is buffered, 0 when more bytes are needed,
 * AH_E_PROTOCOL for an oversized frame or a frame that is not a JSON object. */
int link_take(struct link_reader *r, json_t **ret);
void link_reader_clear(struct link_reader *r);
/* Reads what the (non-blocking) fd has into r: >0 bytes, 0 on EOF, AH_E_BUSY when it would
 * block, another AH_E_* on error. */
int link_read_fd(int fd, struct link_reader *r);
/* Writes as much of buf as the non-blocking fd takes and drops it from buf; 0 or AH_E_*. */
int write_pending(int fd, struct ah_buf *buf);

/* ---- the process-side commands and the scripted agent ------------------------------------- */

/* `ah agent record --session-id ID -- CMD…` (recorder.c) and `ah agent start --agent TYPE`
 * (agent_start.c): the mains of the two processes the supervisor launches (D16). */
int agent_record_main(int argc, char **argv);
int agent_start_main(int argc, char **argv);
/* Validates a scripted agent's scenario (D20) so a bad one is a 400, not a failed session.
 * Field errors are named under `path`. */
int agent_scenario_check(const json_t *scenario, const char *path, struct ah_problem *reterr);

#endif
