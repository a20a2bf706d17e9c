/*
 * adapter_int.h — private to the adapter*.c files: the helpers every adapter shares (reading a
 * line under our limits, building event payloads with capped, valid UTF-8 strings, the table of
 * tool runs waiting for their result, the state of a run and its outcome, the argv). The rest of
 * the code uses agent.h.
 *
 * Strings that come out of a parsed line are valid UTF-8 without NUL bytes (jansson refuses
 * anything else with flags 0), so the short fields (ids, names, paths) are passed around as plain
 * C strings. Raw bytes from the agent only reach an event through adapter_jstr(), which repairs
 * them.
 */
#ifndef AH_EXEC_ADAPTER_INT_H
#define AH_EXEC_ADAPTER_INT_H

#include "agent.h"

/* ---- limits: an agent's output is not trusted to be small --------------------------------- */

#define ADAPTER_TEXT_MAX (64 * 1024)        /* message, thought, tool_output: longer is cut */
#define ADAPTER_FIELD_MAX 4096              /* ids, tool names, paths: longer is malformed */
#define ADAPTER_ARGS_MAX (64 * 1024)        /* serialised tool_args */
#define ADAPTER_ARG_VALUE_MAX (16 * 1024)   /* one member of oversized tool_args */
#define ADAPTER_LINE_MAX (16 * 1024 * 1024) /* longer lines are logged (cut), never parsed */
#define ADAPTER_TOOLS_MAX 256               /* tool runs waiting for a result; oldest dropped */

#define ADAPTER_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Adapters found by adapter_find (defined in adapter_<cli>.c). */
extern const struct agent_adapter adapter_claude;
extern const struct agent_adapter adapter_codex;
extern const struct agent_adapter adapter_gemini;
extern const struct agent_adapter adapter_opencode;

/* ---- reading a line ----------------------------------------------------------------------- */

/* Maps one line of JSON output for adapter_json_line: j is the line's object, NULL when the line
 * is not a JSON object (within ADAPTER_LINE_MAX bytes and AH_LIMIT_JSON_DEPTH levels), and type
 * its `type` member, NULL when that is missing or not a string. Returns 0, AH_E_NOMEM, or 1 when
 * it did not map the line: the line then becomes a log event as it came (adapter_log_raw). */
typedef int adapter_map_fn(void *state, const json_t *j, const char *type, json_t *out,
                           enum adapter_outcome *outcome);
/* The line() of an adapter whose output is JSON lines: a blank line (only whitespace) carries
 * nothing and produces no event; any other line is parsed and given to map. 0 or AH_E_NOMEM
 * (also when jansson runs out of memory parsing the line). */
int adapter_json_line(void *state, const char *line, size_t len, json_t *out,
                      enum adapter_outcome *outcome, adapter_map_fn *map);

/* Member `key` of object `o` as a string, or NULL when missing, not a string, or (for
 * adapter_field) empty or longer than ADAPTER_FIELD_MAX. Lent until `o` is released. */
const char *adapter_str(const json_t *o, const char *key);
const char *adapter_field(const json_t *o, const char *key);
/* Is member `key` a string equal to `want`? */
bool adapter_is(const json_t *o, const char *key, const char *want);

/* ---- strings ------------------------------------------------------------------------------ */

/* A JSON string holding `len` bytes of `s` as valid UTF-8: invalid sequences and NUL bytes become
 * U+FFFD; past `max` bytes the text is cut on a character boundary and ends with a
 * "[truncated: N bytes in all]" marker. `total` is the size reported in the marker (the _cut
 * variant is for text already shortened by the caller). NULL only on OOM. */
json_t *adapter_jstr(const char *s, size_t len, size_t max);
json_t *adapter_jstr_cut(const char *s, size_t len, size_t max, size_t total);
/* Length of the longest prefix of `s` (valid UTF-8) that fits in `max` bytes without splitting a
 * character. */
size_t adapter_utf8_cut(const char *s, size_t len, size_t max);

/* ---- event payloads (API.md §8.2), appended to `out`; 0 or AH_E_NOMEM --------------------- */

/* level: "debug" | "info" | "warn" | "error"; tool_id may be NULL (serialised as null). */
int adapter_log(json_t *out, const char *level, const char *msg, size_t len, const char *tool_id);
/* The same for text the caller already cut to `len` of `total` bytes (the marker tells total). */
int adapter_log_cut(json_t *out, const char *level, const char *msg, size_t len, size_t total);
int adapter_logf(json_t *out, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A line the adapter cannot map: a log event (info) with the line itself, trailing CR dropped. */
int adapter_log_raw(json_t *out, const char *line, size_t len);
/* A JSON value the adapter cannot map (e.g. one bad content block): its compact text. */
int adapter_log_json(json_t *out, const char *level, const json_t *j);
int adapter_thought(json_t *out, const char *text);
/* The agent's reply text: an assistant `chat_message` (issue 15), cut at ADAPTER_TEXT_MAX. */
int adapter_say(json_t *out, const char *text, size_t len);
/* The agent's own token report (D39; issue 15): a `usage` event with input_tokens (the sum of
 * the input_keys of `usage` that are there), output_tokens and cost_usd when given. Nothing when
 * the report lacks them. */
int adapter_usage(json_t *out, const json_t *usage, const char *const *input_keys,
                  const char *output_key, const json_t *cost);
/* The same for text of which only len of total bytes were kept (a cut note is added). */
int adapter_say_cut(json_t *out, const char *text, size_t len, size_t total);
/* tool_args from any JSON value: an object as is (cut down when its text passes
 * ADAPTER_ARGS_MAX), null/missing as {}, anything else as {"value": v}. NULL only on OOM. */
json_t *adapter_args(const json_t *v);
int adapter_tool_use(json_t *out, const char *name, const json_t *args, const char *id);
/* tool_result with status completed|failed and tool_status success|error (D26). */
int adapter_tool_result(json_t *out, const char *name, const char *output, size_t len,
                        const char *id, bool ok);
/* A running tool's progress (D26): tool_use with status `running` and `last_line`, the last
 * non-blank line of output[0..len) cut to ADAPTER_FIELD_MAX. Nothing when that is empty. */
int adapter_tool_progress(json_t *out, const char *name, const char *id, const char *output,
                          size_t len);
/* status: "started" | "completed" | "failed" (our addition to §8.2's file_edit, which has no
 * field to tell an announced edit from a finished one). id and description may be NULL. */
int adapter_file_edit(json_t *out, const char *path, int64_t added, int64_t removed,
                      const char *status, const char *id, const char *description);

/* Counts the added and removed lines of a unified diff (hunk-aware: "+++"/"---" file headers
 * are not counted, a removed line that itself starts with "--" is). */
void adapter_diff_count(const char *patch, int64_t *ret_added, int64_t *ret_removed);
/* Number of lines in a text (a last line without '\n' counts). */
int64_t adapter_line_count(const char *s);

/* ---- tool runs waiting for their result --------------------------------------------------- */

struct adapter_tool {
    char *id;
    char *name;
    char *path; /* the file an edit tool works on, or NULL */
};
struct adapter_tools {
    struct adapter_tool v[ADAPTER_TOOLS_MAX];
    size_t n;
};
/* Remembers a tool run (copies the strings; path may be NULL). When full the oldest run is
 * forgotten: its result will then carry tool_name "unknown". 0 added, 1 already known,
 * AH_E_NOMEM. */
int adapter_tools_add(struct adapter_tools *t, const char *id, const char *name, const char *path);
bool adapter_tools_has(const struct adapter_tools *t, const char *id);
/* Removes the run with this id and gives it to the caller (free with adapter_tool_clear). */
bool adapter_tools_take(struct adapter_tools *t, const char *id, struct adapter_tool *ret);
void adapter_tool_clear(struct adapter_tool *tool);
void adapter_tools_clear(struct adapter_tools *t);
/* The agent exited: a failed tool_result (and a failed file_edit for edits) for every run still
 * waiting, so no tool stays "started" for ever. Empties the table. */
int adapter_tools_abandon(struct adapter_tools *t, json_t *out);

/* Events for a tool run whose start and end are separate records (claude, gemini). Started: the
 * run is remembered until its result, announced (tool_use) and, for an edit (path not NULL), a
 * file_edit "started" follows. Ended: its tool_result (tool_name "unknown" when the run was never
 * seen, or forgotten) and, for an edit, a file_edit "completed" with the counts, or "failed".
 * 0 or AH_E_NOMEM. */
int adapter_tool_started(struct adapter_tools *t, json_t *out, const char *name, const json_t *args,
                         const char *id, const char *path);
int adapter_tool_ended(struct adapter_tools *t, json_t *out, const char *id, const char *output,
                       size_t len, bool ok, int64_t added, int64_t removed);
/* Events for a tool reported while it runs and again when done (codex items, opencode parts).
 * Running: the first report announces it (tool_use) and remembers it (path: see
 * adapter_tools_add); a report with output so far (output/len, may be NULL/0) adds a progress
 * event with its last line (adapter_tool_progress). Done: its tool_use first unless it was
 * announced, then its tool_result. 0 or AH_E_NOMEM. */
int adapter_tool_running(struct adapter_tools *t, json_t *out, const char *name, const json_t *args,
                         const char *id, const char *path, const char *output, size_t len);
int adapter_tool_done(struct adapter_tools *t, json_t *out, const char *name, const json_t *args,
                      const char *id, const char *output, size_t len, bool ok);

/* ---- the state of a run ------------------------------------------------------------------- */

/* What every CLI adapter keeps during a run. An adapter that needs more embeds it as the first
 * member of its own state, so adapter_run_free serves that too. */
struct adapter_run {
    struct adapter_tools tools;
    enum adapter_outcome verdict; /* what the stream said so far */
    char conversation[128];       /* the CLI's conversation id ("" until named; see agent.h) */
};
/* Remembers the CLI's conversation id (a too long or empty one is ignored); conversation()
 * of agent.h for those states. */
void adapter_run_conversation(struct adapter_run *run, const char *id);
const char *adapter_run_conversation_id(void *state);
/* state_new and state_free (NULL-safe) for those states. */
void *adapter_run_new(void);
void adapter_run_free(void *state);
/* The stream gave verdict v: kept for finish, and reported through *outcome (nullable). */
void adapter_run_verdict(struct adapter_run *run, enum adapter_outcome v,
                         enum adapter_outcome *outcome);
/* finish(): a failed result for every tool still waiting (adapter_tools_abandon), then the final
 * outcome from the verdict and the exit code: no verdict or a non-zero exit is a failure,
 * explained by an error log (`missing` says which record never came). */
enum adapter_outcome adapter_run_finish(struct adapter_run *run, int exit_code, json_t *out,
                                        const char *missing);

/* ---- argv --------------------------------------------------------------------------------- */

/* Placeholders in an argv template (adapter_argv_build), compared by address. */
extern const char adapter_arg_prompt[], adapter_arg_model[], adapter_arg_resume[];
#define ADAPTER_PROMPT adapter_arg_prompt /* the prompt */
#define ADAPTER_MODEL adapter_arg_model   /* `model_opt MODEL`, or nothing without a model */
#define ADAPTER_RESUME adapter_arg_resume /* `resume_opt ID` when resuming, else nothing */

/* build_argv from a template: the binary (l->binary when set and not empty, else `binary`),
 * then tmpl[0..n) with its placeholders filled in. The prompt is prefixed with a space when it
 * starts with '-', so no CLI's option parser takes it for a flag (the model does not mind the
 * space); an empty l->model is no model. AH_E_INVAL without l, a prompt, or any binary (`binary`
 * NULL: l must name one); else 0 or AH_E_NOMEM. */
int adapter_argv_build(const struct adapter_launch *l, const char *binary, const char *model_opt,
                       const char *const *tmpl, size_t n, char ***ret_argv);
/* The same for a CLI that can resume a saved conversation: ADAPTER_RESUME becomes `resume_opt
 * l->resume_id` when l->resume_id is set. */
int adapter_argv_build_resume(const struct adapter_launch *l, const char *binary,
                              const char *model_opt, const char *resume_opt,
                              const char *const *tmpl, size_t n, char ***ret_argv);

/* ---- resuming a conversation (session branches) ------------------------------------------- */

/* One turn of a parent's transcript, as a CLI's saved conversation needs it. */
enum adapter_turn_kind {
    ADAPTER_TURN_USER,      /* text: what the user said (the first prompt, chat messages) */
    ADAPTER_TURN_ASSISTANT, /* text: the agent's reply */
    ADAPTER_TURN_TOOL_CALL, /* id, name, args: a tool the agent called */
    ADAPTER_TURN_TOOL_DONE, /* id, name, text (output), ok: that tool's result */
};
struct adapter_turn {
    enum adapter_turn_kind kind;
    const char *id, *name, *text; /* lent from the transcript */
    const json_t *args;
    bool ok;
};
/* Calls fn for each turn of a transcript ({prompt, events[]}, see agent_adapter.resume_file),
 * in order: the prompt, then the events that a conversation holds (replies, user messages,
 * finished tool calls and their results; thoughts, logs and progress are left out: a CLI cannot
 * replay a thought it did not sign). A call still waiting for its result at the branch point
 * gets a failed one ("interrupted"), as the CLIs refuse a call without a result. Stops at the
 * first negative return of fn and returns it; else 0. */
int adapter_turns(const json_t *transcript,
                  int (*fn)(void *ctx, const struct adapter_turn *t), void *ctx);
/* The id of line `i` of a saved conversation `id` (a UUID): the same UUID with its last 12 hex
 * digits replaced by i, so the lines' ids are unique, stable and well formed. */
void adapter_line_uuid(const char *id, size_t i, char out[37]);
/* Appends j as one compact JSON line; 0, AH_E_NOMEM or AH_E_TOOLARGE. Takes j. */
int adapter_jsonl(struct ah_buf *b, json_t *j);

#endif
