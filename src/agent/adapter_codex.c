/*
 * adapter_codex.c — OpenAI Codex CLI (≥ 0.44): codex exec --json --full-auto PROMPT
 * (tests/fixtures/agents/README.md §2). Thread/turn events around items that start, update and
 * complete; an item's type-specific fields sit beside its id.
 *
 *   thread.started            → log (thread id)          turn.started → log (debug)
 *   reasoning (completed)     → thought                   agent_message (completed) → chat_message
 *   command_execution         → tool_use when it starts, tool_result when it completes (failed
 *                               unless status "completed" and exit_code 0)
 *   mcp_tool_call, web_search → tool_use / tool_result the same way
 *   file_change (completed)   → one file_edit per change (codex has no tool_use for it)
 *   todo_list                 → log (the plan, each time it changes)
 *   error item                → log (warn)                error event → log (error)
 *   turn.completed            → usage, log; succeeded             turn.failed → log; failed
 *
 * Only turn.failed ends a run badly: top-level `error` events are retry notices or the cause of
 * the turn.failed that follows. A stream that stops before turn.completed/turn.failed was cut
 * short, so finish() fails it.
 *
 * A session branch runs `codex exec … resume ID PROMPT` on a rollout we write where the CLI
 * keeps its own: ~/.codex/sessions/YYYY/MM/DD/rollout-YYYY-MM-DDThh-mm-ss-ID.jsonl, a
 * session_meta line then one response_item per message, function call and call output.
 * A further turn of a session runs `codex exec … [-m MODEL] resume THREAD PROMPT` on the thread
 * the previous run's thread.started named (agent_start.c).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "adapter_int.h"

static int build_argv(const struct adapter_launch *l, char ***ret_argv) {
    /* exec's options before its `resume` subcommand, which every version takes */
    static const char *const args[] = {"exec", "--json", "--full-auto", ADAPTER_MODEL,
                                       ADAPTER_RESUME, ADAPTER_PROMPT};
    return adapter_argv_build_resume(l, adapter_codex.binary, "-m", "resume", args,
                                     ADAPTER_COUNT(args), ret_argv);
}

/* ---- the rollout of a branch ------------------------------------------------------------ */

struct rollout {
    struct ah_buf *out;
    char ts[TIME_RFC3339_LEN + 1];
};

static int rollout_item(struct rollout *r, json_t *payload) {
    return adapter_jsonl(r->out, payload ? json_pack("{s:s, s:s, s:o}", "timestamp", r->ts, "type",
                                                     "response_item", "payload", payload)
                                         : NULL);
}

static int rollout_turn(void *ctx, const struct adapter_turn *t) {
    struct rollout *r = ctx;
    switch (t->kind) {
    case ADAPTER_TURN_USER:
    case ADAPTER_TURN_ASSISTANT: {
        bool user = t->kind == ADAPTER_TURN_USER;
        return rollout_item(r, json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "type", "message", "role",
                                         user ? "user" : "assistant", "content", "type",
                                         user ? "input_text" : "output_text", "text", t->text));
    }
    case ADAPTER_TURN_TOOL_CALL: {
        char *args = json_is_object(t->args) ? json_dumps(t->args, JSON_COMPACT) : strdup("{}");
        if (!args)
            return AH_E_NOMEM;
        int rc = rollout_item(r, json_pack("{s:s, s:s, s:s, s:s}", "type", "function_call", "name",
                                           t->name, "arguments", args, "call_id", t->id));
        free(args);
        return rc;
    }
    case ADAPTER_TURN_TOOL_DONE:
    default:
        return rollout_item(r, json_pack("{s:s, s:s, s:s}", "type", "function_call_output",
                                         "call_id", t->id, "output", t->text));
    }
}

static int resume_file(const json_t *transcript, const char *cwd, const char *id, int64_t now_ms,
                       struct ah_buf *file, char **ret_path) {
    struct rollout r = {.out = file};
    time_format(now_ms, r.ts);
    int rc = adapter_jsonl(file, json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:n, s:s, s:s}}",
                                           "timestamp", r.ts, "type", "session_meta", "payload",
                                           "id", id, "timestamp", r.ts, "cwd", cwd, "originator",
                                           "codex_exec", "cli_version", "0.44.0", "instructions",
                                           "source", "exec", "model_provider", "openai"));
    if (rc == 0)
        rc = adapter_turns(transcript, rollout_turn, &r);
    if (rc < 0)
        return rc;
    time_t secs = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char path[200];
    snprintf(path, sizeof(path),
             ".codex/sessions/%04d/%02d/%02d/rollout-%04d-%02d-%02dT%02d-%02d-%02d-%.36s.jsonl",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, id);
    return (*ret_path = strdup(path)) ? 0 : AH_E_NOMEM;
}

/* A tool-like item: tool_use the first time it is seen, tool_result when it completes (with a
 * tool_use first if its start was never seen, so every result has its announcement). */
static int tool_item(struct adapter_run *st, const char *id, const char *name, const json_t *args,
                     bool completed, const char *output, size_t olen, bool ok, json_t *out) {
    if (!completed)
        return adapter_tool_running(&st->tools, out, name, args, id, NULL, output, olen);
    return adapter_tool_done(&st->tools, out, name, args, id, output, olen, ok);
}

/* The tool_args of a shell command or a web search: {key: the item's member of that name, or
 * null}. NULL on OOM. */
static json_t *one_arg(const json_t *item, const char *key) {
    return json_pack("{s:O?}", key, json_object_get(item, key));
}

static int command(struct adapter_run *st, const json_t *item, const char *id, bool completed,
                   json_t *out) {
    AH_AUTO(json_decrefp) json_t *args = one_arg(item, "command");
    if (!args)
        return AH_E_NOMEM;
    const json_t *output = json_object_get(item, "aggregated_output");
    const json_t *code = json_object_get(item, "exit_code");
    bool ok = adapter_is(item, "status", "completed") && json_is_integer(code) &&
              json_integer_value(code) == 0;
    return tool_item(st, id, "shell", args, completed, json_string_value(output),
                     json_string_length(output), ok, out);
}

static int mcp(struct adapter_run *st, const json_t *item, const char *id, bool completed,
               json_t *out) {
    const char *server = adapter_field(item, "server"), *tool = adapter_field(item, "tool");
    struct ah_buf name = {0}, text = {0};
    int rc = server && tool ? ah_buf_printf(&name, "%s.%s", server, tool)
                            : ah_buf_puts(&name, tool ? tool : "mcp_tool_call");
    /* Output: the result's text blocks, else its structured content, else the error. */
    const json_t *result = json_object_get(item, "result"), *blk;
    const char *err = adapter_str(json_object_get(item, "error"), "message");
    size_t i;
    json_array_foreach(json_object_get(result, "content"), i, blk) {
        const json_t *t = json_object_get(blk, "text");
        if (rc == 0 && json_is_string(t))
            rc = ah_buf_append(&text, json_string_value(t), json_string_length(t));
    }
    const json_t *structured = json_object_get(result, "structured_content");
    if (rc == 0 && text.n == 0 && structured && !json_is_null(structured)) {
        AH_AUTOFREE char *dump = json_dumps(structured, JSON_COMPACT | JSON_ENCODE_ANY);
        rc = dump ? ah_buf_puts(&text, dump) : AH_E_NOMEM;
    }
    if (rc == 0 && text.n == 0 && err)
        rc = ah_buf_puts(&text, err);
    bool ok = adapter_is(item, "status", "completed") && !err;
    if (rc == 0)
        rc = tool_item(st, id, name.p, json_object_get(item, "arguments"), completed, text.p,
                       text.n, ok, out);
    ah_buf_clear(&name);
    ah_buf_clear(&text);
    return rc < 0 ? AH_E_NOMEM : 0;
}

static int web_search(struct adapter_run *st, const json_t *item, const char *id, bool completed,
                      json_t *out) {
    AH_AUTO(json_decrefp) json_t *args = one_arg(item, "query");
    if (!args)
        return AH_E_NOMEM;
    bool ok = !adapter_is(item, "status", "failed");
    return tool_item(st, id, "web_search", args, completed, "", 0, ok, out);
}

/* One file_edit per changed file. Counts come from changes[].diff where a build sends it. */
static int file_change(const json_t *item, const char *id, json_t *out) {
    const json_t *changes = json_object_get(item, "changes"), *c;
    if (!json_is_array(changes) || json_array_size(changes) == 0)
        return 1;
    const char *status = adapter_is(item, "status", "completed") ? "completed" : "failed";
    size_t i;
    json_array_foreach(changes, i, c) {
        const char *path = adapter_field(c, "path");
        int rc;
        if (path) {
            int64_t added = 0, removed = 0;
            adapter_diff_count(adapter_str(c, "diff"), &added, &removed);
            rc = adapter_file_edit(out, path, added, removed, status, id, adapter_field(c, "kind"));
        } else {
            rc = adapter_log_json(out, "info", c);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int todo_list(const json_t *item, json_t *out) {
    const json_t *items = json_object_get(item, "items"), *t;
    if (!json_is_array(items))
        return 1;
    struct ah_buf b = {0};
    int rc = ah_buf_puts(&b, "plan:");
    size_t i;
    json_array_foreach(items, i, t) {
        const json_t *text = json_object_get(t, "text");
        if (rc == 0)
            rc = ah_buf_puts(&b,
                             json_is_true(json_object_get(t, "completed")) ? "\n[x] " : "\n[ ] ");
        if (rc == 0 && json_is_string(text))
            rc = ah_buf_append(&b, json_string_value(text), json_string_length(text));
    }
    if (rc == 0)
        rc = adapter_log(out, "info", b.p, b.n, NULL);
    ah_buf_clear(&b);
    return rc < 0 ? AH_E_NOMEM : 0;
}

/* 0, 1 (malformed or unknown: the caller logs the line) or AH_E_NOMEM. */
static int on_item(struct adapter_run *st, const char *event, const json_t *item, json_t *out) {
    const char *id = adapter_field(item, "id"), *type = adapter_field(item, "type");
    if (!id || !type)
        return 1;
    bool completed = strcmp(event, "item.completed") == 0;
    const json_t *text = json_object_get(item, "text");
    if (strcmp(type, "command_execution") == 0)
        return command(st, item, id, completed, out);
    if (strcmp(type, "mcp_tool_call") == 0)
        return mcp(st, item, id, completed, out);
    if (strcmp(type, "web_search") == 0)
        return web_search(st, item, id, completed, out);
    if (strcmp(type, "todo_list") == 0)
        return todo_list(item, out);
    /* The rest are whole only when completed; earlier events of theirs would repeat them. */
    bool known = strcmp(type, "reasoning") == 0 || strcmp(type, "agent_message") == 0 ||
                 strcmp(type, "file_change") == 0 || strcmp(type, "error") == 0;
    if (known && !completed)
        return 0;
    if (strcmp(type, "reasoning") == 0 && json_is_string(text))
        return adapter_thought(out, json_string_value(text));
    if (strcmp(type, "agent_message") == 0 && json_is_string(text))
        return adapter_say(out, json_string_value(text), json_string_length(text));
    if (strcmp(type, "file_change") == 0)
        return file_change(item, id, out);
    const json_t *msg = json_object_get(item, "message");
    if (strcmp(type, "error") == 0 && json_is_string(msg))
        return adapter_log(out, "warn", json_string_value(msg), json_string_length(msg), NULL);
    return 1;
}

static int map(void *state, const json_t *j, const char *type, json_t *out,
               enum adapter_outcome *outcome) {
    struct adapter_run *st = state;
    const json_t *item = json_object_get(j, "item");
    const json_t *msg = json_object_get(j, "message");
    if (!type)
        return 1;
    if (strcmp(type, "thread.started") == 0) {
        const char *tid = adapter_field(j, "thread_id");
        adapter_run_conversation(st, tid); /* what `exec resume` takes for the next turn */
        return adapter_logf(out, "info", "codex thread %s started", tid ? tid : "(unknown)");
    }
    if (strcmp(type, "turn.started") == 0) {
        adapter_run_verdict(st, ADAPTER_RUNNING, outcome); /* a new turn reopens the run */
        return adapter_logf(out, "debug", "turn started");
    }
    if (strcmp(type, "turn.completed") == 0) {
        adapter_run_verdict(st, ADAPTER_SUCCEEDED, outcome);
        /* OpenAI counts cached input inside input_tokens */
        static const char *const in_keys[] = {"input_tokens", NULL};
        int urc = adapter_usage(out, json_object_get(j, "usage"), in_keys, "output_tokens", NULL);
        if (urc < 0)
            return urc;
        return adapter_logf(out, "info", "finished: turn completed");
    }
    if (strcmp(type, "turn.failed") == 0) {
        adapter_run_verdict(st, ADAPTER_FAILED, outcome);
        const char *why = adapter_str(json_object_get(j, "error"), "message");
        return adapter_logf(out, "error", "failed: %s", why ? why : "turn failed");
    }
    if (strcmp(type, "error") == 0 && json_is_string(msg))
        return adapter_log(out, "error", json_string_value(msg), json_string_length(msg), NULL);
    if (strncmp(type, "item.", 5) == 0 && json_is_object(item) &&
        (strcmp(type, "item.started") == 0 || strcmp(type, "item.updated") == 0 ||
         strcmp(type, "item.completed") == 0))
        return on_item(st, type, item, out);
    return 1;
}

static int line(void *state, const char *line, size_t len, json_t *out,
                enum adapter_outcome *outcome) {
    return adapter_json_line(state, line, len, out, outcome, map);
}

static enum adapter_outcome finish(void *state, int exit_code, json_t *out) {
    return adapter_run_finish(state, exit_code, out,
                              "the stream ended without turn.completed or turn.failed");
}

const struct agent_adapter adapter_codex = {
    .type = "codex",
    .binary = "codex",
    .build_argv = build_argv,
    .state_new = adapter_run_new,
    .state_free = adapter_run_free,
    .line = line,
    .finish = finish,
    .resume_file = resume_file,
    .conversation = adapter_run_conversation_id,
};
