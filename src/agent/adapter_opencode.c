/*
 * adapter_opencode.c — opencode (1.18.x): opencode run --format json --thinking PROMPT
 * (tests/fixtures/agents/README.md §4). The schema is opencode's source, not documentation:
 * every line has `type` plus a `part` (or an `error`), and a tool is reported once, when it is
 * done, so one line gives both its tool_use and its tool_result.
 *
 *   step_start               → log (debug)
 *   reasoning                → thought (needs --thinking)
 *   text                     → chat_message (assistant)
 *   tool_use                 → tool_use + tool_result (failed for state.status "error"), plus
 *                              file_edit for edit/write/patch, counted from
 *                              metadata.filediff{additions,deletions} (else metadata.diff)
 *   step_finish              → log; reason "stop" is the run's end
 *   error                    → log (error); failed
 *
 * Released versions have no "run finished" record: the process just exits when the session is
 * idle. So the verdict is tentative: a step_finish with reason "stop" makes the run succeed only
 * if no activity (step, text, reasoning, tool) follows it, and an `error` fails it for good.
 */
#include <string.h>

#include "adapter_int.h"

struct opencode {
    /* First (see adapter_run_free). Its tools are those reported before they finished (not in
     * 1.18.x); its verdict is set only at finish, from the two flags below. */
    struct adapter_run run;
    bool stopped; /* the last step finished with reason "stop" */
    bool failed;  /* an `error` record came */
};

static int build_argv(const struct adapter_launch *l, char ***ret_argv) {
    static const char *const args[] = {"run",        "--format",    "json",
                                       "--thinking", ADAPTER_MODEL, ADAPTER_PROMPT};
    return adapter_argv_build(l, adapter_opencode.binary, "-m", args, ADAPTER_COUNT(args),
                              ret_argv);
}

static void *state_new(void) {
    return calloc(1, sizeof(struct opencode));
}

static bool is_edit(const char *tool) {
    return strcmp(tool, "edit") == 0 || strcmp(tool, "write") == 0 || strcmp(tool, "patch") == 0;
}

static int on_tool(struct opencode *st, const json_t *part, json_t *out) {
    const char *id = adapter_field(part, "callID"), *name = adapter_field(part, "tool");
    const json_t *state = json_object_get(part, "state");
    const char *status = adapter_field(state, "status");
    if (!id || !name || !status)
        return 1;
    const json_t *input = json_object_get(state, "input");
    const json_t *meta = json_object_get(state, "metadata");
    const json_t *filediff = json_object_get(meta, "filediff");
    const char *path = NULL;
    if (is_edit(name)) {
        path = adapter_field(input, "filePath");
        if (!path)
            path = adapter_field(filediff, "file");
    }
    bool done = strcmp(status, "completed") == 0, failed = strcmp(status, "error") == 0;
    if (!done && !failed) { /* pending/running: announce once, the result comes later */
        const json_t *so_far = json_object_get(meta, "output"); /* a running shell's output */
        return adapter_tool_running(&st->run.tools, out, name, input, id, path,
                                    json_string_value(so_far), json_string_length(so_far));
    }
    const json_t *text = json_object_get(state, done ? "output" : "error");
    int rc = adapter_tool_done(&st->run.tools, out, name, input, id, json_string_value(text),
                               json_string_length(text), done);
    if (rc < 0 || !path)
        return rc;
    /* A failed edit changed nothing; a done one is counted from the CLI's own numbers. */
    int64_t added = 0, removed = 0;
    const json_t *adds = json_object_get(filediff, "additions");
    const json_t *dels = json_object_get(filediff, "deletions");
    if (done && json_is_integer(adds) && json_is_integer(dels) && json_integer_value(adds) >= 0 &&
        json_integer_value(dels) >= 0) {
        added = json_integer_value(adds);
        removed = json_integer_value(dels);
    } else if (done) {
        const char *patch = adapter_str(filediff, "patch");
        adapter_diff_count(patch ? patch : adapter_str(meta, "diff"), &added, &removed);
    }
    return adapter_file_edit(out, path, added, removed, done ? "completed" : "failed", id, NULL);
}

static int on_step_finish(struct opencode *st, const json_t *part, json_t *out,
                          enum adapter_outcome *outcome) {
    const char *reason = adapter_field(part, "reason");
    if (reason && strcmp(reason, "stop") == 0) {
        st->stopped = true;
        if (outcome && !st->failed)
            *outcome = ADAPTER_SUCCEEDED;
        return adapter_logf(out, "info", "step finished: stop");
    }
    /* "tool-calls" means more steps follow; length, content-filter, error… are worth a look. */
    bool more = reason && strcmp(reason, "tool-calls") == 0;
    return adapter_logf(out, more ? "debug" : "warn", "step finished: %s",
                        reason ? reason : "(no reason)");
}

static int on_error(struct opencode *st, const json_t *j, json_t *out,
                    enum adapter_outcome *outcome) {
    st->failed = true;
    if (outcome)
        *outcome = ADAPTER_FAILED;
    const json_t *err = json_object_get(j, "error");
    const char *name = adapter_field(err, "name");
    const char *msg = adapter_str(json_object_get(err, "data"), "message");
    if (!msg)
        msg = adapter_str(err, "message");
    return adapter_logf(out, "error", "failed: %s%s%s", name ? name : "error", msg ? ": " : "",
                        msg ? msg : "");
}

static int map(void *state, const json_t *j, const char *type, json_t *out,
               enum adapter_outcome *outcome) {
    struct opencode *st = state;
    const json_t *part = json_object_get(j, "part");
    const json_t *text = json_object_get(part, "text");
    if (type && strcmp(type, "error") == 0)
        return on_error(st, j, out, outcome);
    if (!type || !json_is_object(part))
        return 1;
    /* Activity after a "stop" means the run went on: the verdict is open again. Unknown
     * records (e.g. the proposed "done") are not activity. */
    bool reopens = true;
    int rc = 1;
    if (strcmp(type, "step_start") == 0) {
        rc = adapter_logf(out, "debug", "step started");
    } else if (strcmp(type, "reasoning") == 0 && json_is_string(text)) {
        rc = adapter_thought(out, json_string_value(text));
    } else if (strcmp(type, "text") == 0 && json_is_string(text)) {
        rc = adapter_say(out, json_string_value(text), json_string_length(text));
    } else if (strcmp(type, "tool_use") == 0) {
        rc = on_tool(st, part, out);
    } else if (strcmp(type, "step_finish") == 0) {
        reopens = !adapter_is(part, "reason", "stop");
        rc = on_step_finish(st, part, out, outcome);
    } else {
        reopens = false;
    }
    if (reopens && rc != 1 && st->stopped) {
        st->stopped = false;
        if (outcome && !st->failed)
            *outcome = ADAPTER_RUNNING;
    }
    return rc;
}

static int line(void *state, const char *line, size_t len, json_t *out,
                enum adapter_outcome *outcome) {
    return adapter_json_line(state, line, len, out, outcome, map);
}

static enum adapter_outcome finish(void *state, int exit_code, json_t *out) {
    struct opencode *st = state;
    st->run.verdict = st->failed    ? ADAPTER_FAILED
                      : st->stopped ? ADAPTER_SUCCEEDED
                                    : ADAPTER_RUNNING;
    return adapter_run_finish(&st->run, exit_code, out,
                              "the stream ended without a final step_finish with reason stop");
}

const struct agent_adapter adapter_opencode = {
    .type = "opencode",
    .binary = "opencode",
    .build_argv = build_argv,
    .state_new = state_new,
    .state_free = adapter_run_free,
    .line = line,
    .finish = finish,
};
