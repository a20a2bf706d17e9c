/*
 * adapter_claude.c — Claude Code in print mode:
 *   claude -p PROMPT --output-format stream-json --verbose --permission-mode acceptEdits
 * (tests/fixtures/agents/README.md §1). The stream is one `system`/`init`, then `assistant`
 * lines (one content block each, but any number is handled) and `user` lines carrying tool
 * results, then one `result`.
 *
 *   system/init            → log (session id and model)
 *   assistant thinking     → thought
 *   assistant text         → chat_message (assistant)
 *   result usage           → usage (input incl. cache reads/writes, output, cost)
 *   assistant tool_use     → tool_use, plus file_edit "started" for Edit/Write/MultiEdit/
 *                            NotebookEdit
 *   user tool_result       → tool_result (failed when is_error), plus file_edit "completed"/
 *                            "failed" for an edit tool, counted from tool_use_result's
 *                            structuredPatch
 *   result                 → log; succeeded only for subtype "success" with is_error not true
 *                            (2.1.x has sent "success" with is_error true)
 *
 * A tool_result names only the tool_use id, so the tool's name (and the file of an edit) is
 * remembered from the tool_use until its result comes.
 *
 * A session branch resumes (`--resume ID`) a conversation we write where the CLI keeps its
 * own: ~/.claude/projects/<the cwd, every character but [A-Za-z0-9] as '-'>/<ID>.jsonl, one
 * line per message chained by parentUuid, holding the parent's turns up to the branch point.
 * A further turn of a session runs `claude -p MESSAGE … [--model MODEL] --resume SESSION` on
 * the session id the previous run's init and result named (agent_start.c).
 */
#include <string.h>

#include "adapter_int.h"

static int build_argv(const struct adapter_launch *l, char ***ret_argv) {
    static const char *const args[] = {
        "-p",        ADAPTER_PROMPT,      "--output-format", "stream-json",
        "--verbose", "--permission-mode", "acceptEdits",     ADAPTER_MODEL,
        ADAPTER_RESUME,
    };
    return adapter_argv_build_resume(l, adapter_claude.binary, "--model", "--resume", args,
                                     ADAPTER_COUNT(args), ret_argv);
}

/* ---- the saved conversation of a branch ---------------------------------------------------- */

struct saved {
    struct ah_buf *out;
    const char *cwd, *id;
    char ts[TIME_RFC3339_LEN + 1];
    char prev[37]; /* the previous line's uuid, "" before the first */
    size_t n;
};

/* One message line: `message` (taken) as the next link of the chain. */
static int saved_line(struct saved *sv, const char *type, json_t *message) {
    char uuid[37];
    adapter_line_uuid(sv->id, ++sv->n, uuid);
    json_t *line = message ? json_pack("{s:o, s:b, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s}",
                                       "parentUuid", sv->prev[0] ? json_string(sv->prev) : json_null(),
                                       "isSidechain", 0, "userType", "external", "cwd", sv->cwd,
                                       "sessionId", sv->id, "version", "2.0.76", "gitBranch", "",
                                       "type", type, "message", message, "uuid", uuid,
                                       "timestamp", sv->ts)
                           : NULL;
    memcpy(sv->prev, uuid, sizeof(uuid));
    return adapter_jsonl(sv->out, line);
}

static int saved_turn(void *ctx, const struct adapter_turn *t) {
    struct saved *sv = ctx;
    char msg_id[40];
    snprintf(msg_id, sizeof(msg_id), "msg_ah_%zu", sv->n + 1);
    json_t *block;
    switch (t->kind) {
    case ADAPTER_TURN_USER:
        return saved_line(sv, "user", json_pack("{s:s, s:s}", "role", "user", "content", t->text));
    case ADAPTER_TURN_TOOL_DONE:
        return saved_line(sv, "user",
                          json_pack("{s:s, s:[{s:s, s:s, s:s, s:b}]}", "role", "user", "content",
                                    "tool_use_id", t->id, "type", "tool_result", "content",
                                    t->text, "is_error", !t->ok));
    case ADAPTER_TURN_ASSISTANT:
        block = json_pack("{s:s, s:s}", "type", "text", "text", t->text);
        break;
    case ADAPTER_TURN_TOOL_CALL:
    default:
        block = json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", t->id, "name",
                          t->name, "input",
                          json_is_object(t->args) ? json_incref((json_t *)t->args) : json_object());
        break;
    }
    return saved_line(sv, "assistant",
                      block ? json_pack("{s:s, s:s, s:s, s:s, s:[o], s:n, s:n, s:{s:i, s:i}}",
                                        "id", msg_id, "type", "message", "role", "assistant",
                                        "model", "<synthetic>", "content", block, "stop_reason",
                                        "stop_sequence", "usage", "input_tokens", 0,
                                        "output_tokens", 0)
                            : NULL);
}

static int resume_file(const json_t *transcript, const char *cwd, const char *id, int64_t now_ms,
                       struct ah_buf *file, char **ret_path) {
    struct saved sv = {.out = file, .cwd = cwd, .id = id};
    time_format(now_ms, sv.ts);
    int rc = adapter_turns(transcript, saved_turn, &sv);
    if (rc < 0)
        return rc;
    struct ah_buf path = {.max = 8192};
    rc = ah_buf_puts(&path, ".claude/projects/");
    for (const char *c = cwd; rc == 0 && *c; c++) {
        bool keep = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9');
        rc = ah_buf_append(&path, keep ? c : "-", 1);
    }
    if (rc == 0)
        rc = ah_buf_printf(&path, "/%s.jsonl", id);
    if (rc < 0) {
        ah_buf_clear(&path);
        return rc;
    }
    *ret_path = path.p;
    return 0;
}

/* The file an edit tool works on, or NULL for other tools. */
static const char *edit_path(const char *tool, const json_t *input) {
    static const char *const edits[] = {"Edit", "Write", "MultiEdit", "NotebookEdit"};
    for (size_t i = 0; i < ADAPTER_COUNT(edits); i++) {
        if (strcmp(tool, edits[i]) != 0)
            continue;
        const char *p = adapter_field(input, "file_path");
        return p ? p : adapter_field(input, "notebook_path");
    }
    return NULL;
}

static int on_init(struct adapter_run *st, const json_t *j, json_t *out) {
    const char *sid = adapter_field(j, "session_id");
    adapter_run_conversation(st, sid); /* what `--resume` takes for the next turn */
    const char *model = adapter_field(j, "model");
    return adapter_logf(out, "info", "claude-code session %s started (model %s)",
                        sid ? sid : "(unknown)", model ? model : "(default)");
}

static int on_block(struct adapter_run *st, const json_t *b, json_t *out) {
    const char *type = adapter_str(b, "type");
    const json_t *text;
    if (!type)
        return adapter_log_json(out, "info", b);
    if (strcmp(type, "thinking") == 0 && json_is_string(text = json_object_get(b, "thinking")))
        return adapter_thought(out, json_string_value(text));
    if (strcmp(type, "text") == 0 && json_is_string(text = json_object_get(b, "text")))
        return adapter_say(out, json_string_value(text), json_string_length(text));
    const char *id = adapter_field(b, "id"), *name = adapter_field(b, "name");
    if (strcmp(type, "tool_use") != 0 || !id || !name)
        return adapter_log_json(out, "info", b); /* redacted_thinking, server_tool_use, … */
    const json_t *input = json_object_get(b, "input");
    return adapter_tool_started(&st->tools, out, name, input, id, edit_path(name, input));
}

static int on_assistant(struct adapter_run *st, const json_t *j, json_t *out) {
    const json_t *content = json_object_get(json_object_get(j, "message"), "content");
    if (!json_is_array(content) || json_array_size(content) == 0)
        return 1;
    size_t i;
    const json_t *b;
    json_array_foreach(content, i, b) {
        int rc = on_block(st, b, out);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A tool_result's content: a string, or blocks of which the text ones are kept. */
static int content_text(const json_t *c, struct ah_buf *b) {
    if (!c || json_is_null(c))
        return 0;
    if (json_is_string(c))
        return ah_buf_append(b, json_string_value(c), json_string_length(c));
    if (!json_is_array(c)) {
        AH_AUTOFREE char *dump = json_dumps(c, JSON_COMPACT | JSON_ENCODE_ANY);
        return dump ? ah_buf_puts(b, dump) : AH_E_NOMEM;
    }
    size_t i;
    const json_t *blk;
    json_array_foreach(c, i, blk) {
        int rc = i > 0 ? ah_buf_puts(b, "\n") : 0;
        const json_t *t = json_object_get(blk, "text");
        const char *type = adapter_field(blk, "type");
        if (rc == 0 && json_is_string(t))
            rc = ah_buf_append(b, json_string_value(t), json_string_length(t));
        else if (rc == 0)
            rc = ah_buf_printf(b, "[%s]", type ? type : "?");
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Lines added and removed by an Edit/Write, from the CLI's own record of the change. */
static void patch_count(const json_t *tur, int64_t *ret_added, int64_t *ret_removed) {
    int64_t added = 0, removed = 0;
    const json_t *patch = json_object_get(tur, "structuredPatch");
    size_t i, k;
    const json_t *hunk, *line;
    json_array_foreach(patch, i, hunk) {
        json_array_foreach(json_object_get(hunk, "lines"), k, line) {
            const char *s = json_string_value(line);
            if (s && s[0] == '+')
                added++;
            else if (s && s[0] == '-')
                removed++;
        }
    }
    /* Write of a new file: the patch is empty, the whole content is new. */
    const char *content = adapter_str(tur, "content");
    if (json_array_size(patch) == 0 && adapter_is(tur, "type", "create") && content)
        added = adapter_line_count(content);
    *ret_added = added;
    *ret_removed = removed;
}

static int on_tool_result(struct adapter_run *st, const json_t *item, const json_t *tur,
                          json_t *out) {
    const char *id = adapter_field(item, "tool_use_id");
    if (!id)
        return adapter_log_json(out, "info", item);
    bool ok = !json_is_true(json_object_get(item, "is_error"));
    struct ah_buf text = {0};
    int rc = content_text(json_object_get(item, "content"), &text);
    if (rc < 0) {
        ah_buf_clear(&text);
        return AH_E_NOMEM;
    }
    int64_t added = 0, removed = 0; /* used when the tool is an edit */
    if (ok)
        patch_count(tur, &added, &removed);
    rc = adapter_tool_ended(&st->tools, out, id, text.p, text.n, ok, added, removed);
    ah_buf_clear(&text);
    return rc;
}

static int on_user(struct adapter_run *st, const json_t *j, json_t *out) {
    const json_t *content = json_object_get(json_object_get(j, "message"), "content");
    if (json_is_string(content))
        return adapter_logf(out, "info", "user: %s", json_string_value(content));
    if (!json_is_array(content) || json_array_size(content) == 0)
        return 1;
    /* tool_use_result sits beside the message, so it belongs to a result only when alone. */
    size_t i, results = 0;
    const json_t *item;
    json_array_foreach(content, i, item) results += adapter_is(item, "type", "tool_result");
    const json_t *tur = results == 1 ? json_object_get(j, "tool_use_result") : NULL;
    json_array_foreach(content, i, item) {
        const json_t *text = json_object_get(item, "text");
        int rc;
        if (adapter_is(item, "type", "tool_result"))
            rc = on_tool_result(st, item, tur, out);
        else if (adapter_is(item, "type", "text") && json_is_string(text))
            rc = adapter_logf(out, "info", "user: %s", json_string_value(text));
        else
            rc = adapter_log_json(out, "info", item);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int on_result(struct adapter_run *st, const json_t *j, json_t *out,
                     enum adapter_outcome *outcome) {
    const char *sub = adapter_field(j, "subtype");
    bool ok = sub && strcmp(sub, "success") == 0 && !json_is_true(json_object_get(j, "is_error"));
    adapter_run_verdict(st, ok ? ADAPTER_SUCCEEDED : ADAPTER_FAILED, outcome);
    adapter_run_conversation(st, adapter_field(j, "session_id")); /* the last word on it */
    /* the run's totals; cached input still fills the context window */
    static const char *const in_keys[] = {"input_tokens", "cache_creation_input_tokens",
                                          "cache_read_input_tokens", NULL};
    int urc = adapter_usage(out, json_object_get(j, "usage"), in_keys, "output_tokens",
                            json_object_get(j, "total_cost_usd"));
    if (urc < 0)
        return urc;
    const json_t *turns = json_object_get(j, "num_turns"), *ms = json_object_get(j, "duration_ms");
    if (ok && json_is_integer(turns) && json_is_integer(ms))
        return adapter_logf(out, "info", "finished: success (%lld turns, %lld ms)",
                            (long long)json_integer_value(turns),
                            (long long)json_integer_value(ms));
    if (ok)
        return adapter_logf(out, "info", "finished: success");
    /* Say why: the errors[] of the error_* subtypes, else the result text. */
    struct ah_buf b = {0};
    int rc = ah_buf_printf(&b, "failed: %s", sub ? sub : "result");
    size_t i, n = 0;
    const json_t *e;
    json_array_foreach(json_object_get(j, "errors"), i, e) {
        if (rc == 0 && json_is_string(e)) {
            rc = ah_buf_puts(&b, n++ ? "; " : ": ");
            if (rc == 0)
                rc = ah_buf_append(&b, json_string_value(e), json_string_length(e));
        }
    }
    const json_t *text = json_object_get(j, "result");
    if (rc == 0 && n == 0 && json_is_string(text)) {
        rc = ah_buf_puts(&b, ": ");
        if (rc == 0)
            rc = ah_buf_append(&b, json_string_value(text), json_string_length(text));
    }
    if (rc == 0)
        rc = adapter_log(out, "error", b.p, b.n, NULL);
    ah_buf_clear(&b);
    return rc < 0 ? AH_E_NOMEM : 0;
}

static int map(void *state, const json_t *j, const char *type, json_t *out,
               enum adapter_outcome *outcome) {
    struct adapter_run *st = state;
    if (!type)
        return 1;
    if (strcmp(type, "system") == 0 && adapter_is(j, "subtype", "init"))
        return on_init(st, j, out);
    if (strcmp(type, "assistant") == 0)
        return on_assistant(st, j, out);
    if (strcmp(type, "user") == 0)
        return on_user(st, j, out);
    if (strcmp(type, "result") == 0)
        return on_result(st, j, out, outcome);
    return 1;
}

static int line(void *state, const char *line, size_t len, json_t *out,
                enum adapter_outcome *outcome) {
    return adapter_json_line(state, line, len, out, outcome, map);
}

static enum adapter_outcome finish(void *state, int exit_code, json_t *out) {
    return adapter_run_finish(state, exit_code, out, "the stream ended without a result message");
}

static const char *const aliases[] = {"claude", NULL};

const struct agent_adapter adapter_claude = {
    .type = "claude-code",
    .aliases = aliases,
    .binary = "claude",
    .build_argv = build_argv,
    .state_new = adapter_run_new,
    .state_free = adapter_run_free,
    .line = line,
    .finish = finish,
    .resume_file = resume_file,
    .conversation = adapter_run_conversation_id,
};
