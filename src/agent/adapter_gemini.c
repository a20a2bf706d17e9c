/*
 * adapter_gemini.c — Gemini CLI (0.34 – 0.43):
 *   gemini -p PROMPT --output-format stream-json --yolo
 * (tests/fixtures/agents/README.md §3). --yolo because without it the headless policy engine
 * refuses every edit and shell command.
 *
 *   init                     → log (session id and model)
 *   message, role user       → log "user: …" (the prompt echo)
 *   message, assistant delta → buffered; consecutive chunks become ONE chat_message (assistant),
 *                              emitted when the next
 *                              line that is not a delta arrives, or at finish
 *   tool_use                 → tool_use, plus file_edit "started" for replace / write_file
 *   tool_result              → tool_result (failed when status "error"), plus file_edit
 *                              "completed"/"failed" for an edit; the stream has no diff, so its
 *                              counts are 0
 *   error                    → log (warn or error, from severity)
 *   result                   → log; succeeded when status is "success"
 *
 * The CLI forwards no thought parts in stream-json, so this adapter never emits `thought`.
 */
#include <string.h>

#include "adapter_int.h"

struct gemini {
    struct adapter_run run; /* first: see adapter_run_free */
    struct ah_buf said;     /* assistant text waiting for its last chunk, ≤ ADAPTER_TEXT_MAX */
    size_t said_total;      /* bytes received for it, kept or not */
};

static int build_argv(const struct adapter_launch *l, char ***ret_argv) {
    static const char *const args[] = {"-p",          ADAPTER_PROMPT, "--output-format",
                                       "stream-json", "--yolo",       ADAPTER_MODEL};
    return adapter_argv_build(l, adapter_gemini.binary, "-m", args, ADAPTER_COUNT(args), ret_argv);
}

static void *state_new(void) {
    return calloc(1, sizeof(struct gemini));
}

static void state_free(void *state) {
    struct gemini *st = state;
    if (st)
        ah_buf_clear(&st->said);
    adapter_run_free(st);
}

/* Keeps a delta chunk; past ADAPTER_TEXT_MAX only its size is counted. */
static int said_add(struct gemini *st, const json_t *content) {
    const char *s = json_string_value(content);
    size_t n = json_string_length(content);
    size_t room = ADAPTER_TEXT_MAX - st->said.n;
    size_t keep = adapter_utf8_cut(s, n, room);
    if (keep > 0 && ah_buf_append(&st->said, s, keep) < 0)
        return AH_E_NOMEM;
    st->said_total += n;
    return 0;
}

static int said_flush(struct gemini *st, json_t *out) {
    if (st->said_total == 0)
        return 0;
    int rc = adapter_say_cut(out, st->said.p ? st->said.p : "", st->said.n, st->said_total);
    if (rc < 0) /* keep the text: the caller may retry the line */
        return rc;
    ah_buf_clear(&st->said);
    st->said_total = 0;
    return 0;
}

static bool is_edit(const char *tool) {
    return strcmp(tool, "replace") == 0 || strcmp(tool, "write_file") == 0;
}

static int on_init(const json_t *j, json_t *out) {
    const char *sid = adapter_field(j, "session_id");
    const char *model = adapter_field(j, "model");
    return adapter_logf(out, "info", "gemini session %s started (model %s)",
                        sid ? sid : "(unknown)", model ? model : "(default)");
}

static int on_message(const json_t *j, json_t *out) {
    const json_t *content = json_object_get(j, "content");
    if (!json_is_string(content))
        return 1;
    const char *role = adapter_field(j, "role");
    if (role && strcmp(role, "assistant") == 0)
        return adapter_say(out, json_string_value(content), json_string_length(content));
    return adapter_logf(out, "info", "%s: %s", role ? role : "unknown", json_string_value(content));
}

static int on_tool_use(struct gemini *st, const json_t *j, json_t *out) {
    const char *name = adapter_field(j, "tool_name"), *id = adapter_field(j, "tool_id");
    if (!name || !id)
        return 1;
    const json_t *params = json_object_get(j, "parameters");
    const char *path = is_edit(name) ? adapter_field(params, "file_path") : NULL;
    return adapter_tool_started(&st->run.tools, out, name, params, id, path);
}

static int on_tool_result(struct gemini *st, const json_t *j, json_t *out) {
    const char *id = adapter_field(j, "tool_id");
    if (!id)
        return 1;
    bool ok = adapter_is(j, "status", "success");
    /* A failure's error.message says more than its output ("Error: Failed to edit…"). */
    const json_t *output = json_object_get(j, "output");
    const json_t *emsg = json_object_get(json_object_get(j, "error"), "message");
    const json_t *text = !ok && json_is_string(emsg) ? emsg : output;
    return adapter_tool_ended(&st->run.tools, out, id, json_string_value(text),
                              json_string_length(text), ok, 0, 0);
}

static int on_result(struct gemini *st, const json_t *j, json_t *out,
                     enum adapter_outcome *outcome) {
    bool ok = adapter_is(j, "status", "success");
    adapter_run_verdict(&st->run, ok ? ADAPTER_SUCCEEDED : ADAPTER_FAILED, outcome);
    const json_t *stats = json_object_get(j, "stats");
    const json_t *ms = json_object_get(stats, "duration_ms");
    const json_t *calls = json_object_get(stats, "tool_calls");
    if (ok && json_is_integer(ms) && json_is_integer(calls))
        return adapter_logf(out, "info", "finished: success (%lld ms, %lld tool calls)",
                            (long long)json_integer_value(ms),
                            (long long)json_integer_value(calls));
    if (ok)
        return adapter_logf(out, "info", "finished: success");
    const json_t *err = json_object_get(j, "error");
    const char *etype = adapter_field(err, "type"), *emsg = adapter_str(err, "message");
    const char *status = adapter_field(j, "status");
    return adapter_logf(out, "error", "failed: %s%s%s",
                        etype    ? etype
                        : status ? status
                                 : "result",
                        emsg ? ": " : "", emsg ? emsg : "");
}

static int map(void *state, const json_t *j, const char *type, json_t *out,
               enum adapter_outcome *outcome) {
    struct gemini *st = state;
    const json_t *content = json_object_get(j, "content");
    if (type && strcmp(type, "message") == 0 && adapter_is(j, "role", "assistant") &&
        json_is_true(json_object_get(j, "delta")) && json_is_string(content))
        return said_add(st, content);
    /* Anything else ends the assistant's message, so it goes out first, in stream order. */
    int rc = said_flush(st, out);
    if (rc < 0)
        return rc;
    if (!type)
        return 1;
    if (strcmp(type, "init") == 0)
        return on_init(j, out);
    if (strcmp(type, "message") == 0)
        return on_message(j, out);
    if (strcmp(type, "tool_use") == 0)
        return on_tool_use(st, j, out);
    if (strcmp(type, "tool_result") == 0)
        return on_tool_result(st, j, out);
    if (strcmp(type, "error") == 0 && json_is_string(json_object_get(j, "message")))
        return adapter_log(out, adapter_is(j, "severity", "warning") ? "warn" : "error",
                           adapter_str(j, "message"),
                           json_string_length(json_object_get(j, "message")), NULL);
    if (strcmp(type, "result") == 0)
        return on_result(st, j, out, outcome);
    return 1;
}

static int line(void *state, const char *line, size_t len, json_t *out,
                enum adapter_outcome *outcome) {
    return adapter_json_line(state, line, len, out, outcome, map);
}

static enum adapter_outcome finish(void *state, int exit_code, json_t *out) {
    struct gemini *st = state;
    (void)said_flush(st, out);
    return adapter_run_finish(&st->run, exit_code, out, "the stream ended without a result");
}

static const char *const aliases[] = {"gemini-cli", NULL};

const struct agent_adapter adapter_gemini = {
    .type = "gemini",
    .aliases = aliases,
    .binary = "gemini",
    .build_argv = build_argv,
    .state_new = state_new,
    .state_free = state_free,
    .line = line,
    .finish = finish,
};
