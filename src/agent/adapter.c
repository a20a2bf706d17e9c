/*
 * adapter.c — the adapter registry (adapter_find), the helpers every adapter shares
 * (adapter_int.h) and the two custom adapters of D19: `text` (every line is a log event) and
 * `jsonl` (lines that already are our event payloads, checked field by field).
 *
 * Invariants kept for all adapters:
 *   - every string put into an event is valid UTF-8 and bounded (ADAPTER_TEXT_MAX for prose,
 *     ADAPTER_FIELD_MAX for ids, names and paths, ADAPTER_ARGS_MAX for tool_args), so a hostile
 *     or broken agent cannot make an event that the store or a browser chokes on;
 *   - nothing is dropped silently: a line that is not understood becomes a log event;
 *   - no `status` events: the outcome is returned, the server's state machine owns `status`.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "adapter_int.h"

/* ---- registry ----------------------------------------------------------------------------- */

const struct agent_adapter *adapter_find(const char *type) {
    static const struct agent_adapter *const all[] = {&adapter_claude, &adapter_codex,
                                                      &adapter_gemini, &adapter_opencode};
    if (!type)
        return NULL;
    for (size_t i = 0; i < ADAPTER_COUNT(all); i++) {
        if (strcmp(all[i]->type, type) == 0)
            return all[i];
        for (const char *const *a = all[i]->aliases; a && *a; a++)
            if (strcmp(*a, type) == 0)
                return all[i];
    }
    return NULL;
}

/* ---- argv --------------------------------------------------------------------------------- */

void adapter_argv_free(char **argv) {
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}

/* A malloc'd NULL-terminated copy of items[0..n), skipping NULL entries. 0 or AH_E_NOMEM. */
static int argv_new(const char *const *items, size_t n, char ***ret_argv) {
    char **argv = calloc(n + 1, sizeof(*argv));
    if (!argv)
        return AH_E_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!items[i])
            continue;
        if (!(argv[k++] = strdup(items[i]))) {
            adapter_argv_free(argv);
            return AH_E_NOMEM;
        }
    }
    *ret_argv = argv;
    return 0;
}

/* The prompt as an argument (see adapter_argv_build). Caller frees; NULL on OOM. */
static char *prompt_arg(const char *prompt) {
    if (prompt[0] != '-')
        return strdup(prompt);
    size_t n = strlen(prompt);
    char *p = malloc(n + 2);
    if (!p)
        return NULL;
    p[0] = ' ';
    memcpy(p + 1, prompt, n + 1);
    return p;
}

const char adapter_arg_prompt[] = "PROMPT", adapter_arg_model[] = "MODEL",
           adapter_arg_resume[] = "RESUME";

int adapter_argv_build(const struct adapter_launch *l, const char *binary, const char *model_opt,
                       const char *const *tmpl, size_t n, char ***ret_argv) {
    return adapter_argv_build_resume(l, binary, model_opt, NULL, tmpl, n, ret_argv);
}

int adapter_argv_build_resume(const struct adapter_launch *l, const char *binary,
                              const char *model_opt, const char *resume_opt,
                              const char *const *tmpl, size_t n, char ***ret_argv) {
    if (!l || !l->prompt)
        return AH_E_INVAL;
    if (l->binary && l->binary[0])
        binary = l->binary;
    if (!binary)
        return AH_E_INVAL;
    AH_AUTOFREE char *prompt = prompt_arg(l->prompt);
    if (!prompt)
        return AH_E_NOMEM;
    const char *model = l->model && l->model[0] ? l->model : NULL;
    const char *resume = resume_opt && l->resume_id && l->resume_id[0] ? l->resume_id : NULL;
    const char *v[18];
    size_t k = 0;
    v[k++] = binary;
    for (size_t i = 0; i < n; i++) {
        assert(k + 2 <= ADAPTER_COUNT(v)); /* room for this entry, which may take two */
        if (tmpl[i] == ADAPTER_PROMPT) {
            v[k++] = prompt;
        } else if (tmpl[i] == ADAPTER_RESUME) {
            if (resume) {
                v[k++] = resume_opt;
                v[k++] = resume;
            }
        } else if (tmpl[i] != ADAPTER_MODEL) {
            v[k++] = tmpl[i];
        } else if (model) {
            v[k++] = model_opt;
            v[k++] = model;
        }
    }
    return argv_new(v, k, ret_argv);
}

/* ---- reading a line ----------------------------------------------------------------------- */

/* Is the line empty or only whitespace? */
static bool blank(const char *line, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && line[i] != '\n')
            return false;
    return true;
}

/* Parses one output line: 0 and *ret_obj = the object (caller decrefs) when the line is a JSON
 * object within ADAPTER_LINE_MAX bytes and AH_LIMIT_JSON_DEPTH levels; 0 and *ret_obj = NULL for
 * anything else (not JSON, an array, a number, too deep, too long); AH_E_NOMEM when jansson says
 * it ran out of memory. */
static int parse(const char *line, size_t len, json_t **ret_obj) {
    *ret_obj = NULL;
    if (len == 0 || len > ADAPTER_LINE_MAX || !json_depth_ok(line, len, AH_LIMIT_JSON_DEPTH))
        return 0;
    json_error_t err;
    json_t *j = json_loadb(line, len, 0, &err);
    if (!j)
        return json_error_code(&err) == json_error_out_of_memory ? AH_E_NOMEM : 0;
    if (!json_is_object(j)) {
        json_decref(j);
        return 0;
    }
    *ret_obj = j;
    return 0;
}

int adapter_json_line(void *state, const char *line, size_t len, json_t *out,
                      enum adapter_outcome *outcome, adapter_map_fn *map) {
    if (blank(line, len))
        return 0;
    AH_AUTO(json_decrefp) json_t *j = NULL;
    int rc = parse(line, len, &j);
    if (rc < 0)
        return rc;
    rc = map(state, j, j ? adapter_str(j, "type") : NULL, out, outcome);
    return rc == 1 ? adapter_log_raw(out, line, len) : rc;
}

const char *adapter_str(const json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

const char *adapter_field(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return NULL;
    size_t n = json_string_length(v);
    return n > 0 && n <= ADAPTER_FIELD_MAX ? json_string_value(v) : NULL;
}

bool adapter_is(const json_t *o, const char *key, const char *want) {
    const char *s = adapter_str(o, key);
    return s && strcmp(s, want) == 0;
}

/* ---- strings ------------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates, nothing past
 * U+10FFFF), or 0 when the bytes there are not one. NUL counts as invalid: downstream code is
 * allowed to treat our strings as C strings. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c == 0xE0) {
        len = 3;
        lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        len = 3;
    } else if (c == 0xED) {
        len = 3;
        hi = 0x9F;
    } else if (c == 0xF0) {
        len = 4;
        lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        len = 4;
    } else if (c == 0xF4) {
        len = 4;
        hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

size_t adapter_utf8_cut(const char *s, size_t len, size_t max) {
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

json_t *adapter_jstr_cut(const char *s, size_t len, size_t max, size_t total) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len && i < max) {
        size_t k = utf8_seq(u + i, len - i);
        if (k == 0 || i + k > max)
            break;
        i += k;
    }
    if (i == len && total <= len) /* the common case: valid and short, no copy */
        return json_stringn_nocheck(s, len);

    static const char repl[] = "\xef\xbf\xbd"; /* U+FFFD */
    char marker[64];
    int mlen = snprintf(marker, sizeof(marker), "\n[truncated: %zu bytes in all]", total);
    size_t room = len < max / 3 ? len * 3 : max; /* each input byte gives at most 3 */
    char *buf = malloc(room + (size_t)mlen + 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    bool cut = false;
    for (i = 0; i < len;) {
        size_t k = utf8_seq(u + i, len - i);
        const char *piece = k ? s + i : repl;
        size_t plen = k ? k : 3;
        if (o + plen > max) {
            cut = true;
            break;
        }
        memcpy(buf + o, piece, plen);
        o += plen;
        i += k ? k : 1;
    }
    if (cut || total > len) {
        memcpy(buf + o, marker, (size_t)mlen);
        o += (size_t)mlen;
    }
    json_t *j = json_stringn_nocheck(buf, o);
    free(buf);
    return j;
}

json_t *adapter_jstr(const char *s, size_t len, size_t max) {
    return adapter_jstr_cut(s, len, max, len);
}

/* ---- event payloads ------------------------------------------------------------------------ */

/* Appends an event; `ev` is NULL when building it ran out of memory. */
static int emit(json_t *out, json_t *ev) {
    if (!ev || json_array_append_new(out, ev) < 0)
        return AH_E_NOMEM;
    return 0;
}

static int log_event(json_t *out, const char *level, json_t *msg, const char *tool_id) {
    return emit(out, json_pack("{s:s, s:s, s:o, s:s?}", "type", "log", "level", level, "message",
                               msg, "tool_execution_id", tool_id));
}

int adapter_log(json_t *out, const char *level, const char *msg, size_t len, const char *tool_id) {
    return log_event(out, level, adapter_jstr(msg, len, ADAPTER_TEXT_MAX), tool_id);
}

int adapter_log_cut(json_t *out, const char *level, const char *msg, size_t len, size_t total) {
    return log_event(out, level, adapter_jstr_cut(msg, len, ADAPTER_TEXT_MAX, total), NULL);
}

int adapter_logf(json_t *out, const char *level, const char *fmt, ...) {
    struct ah_buf msg = {0}; /* the values are agent text and may be long */
    va_list ap;
    va_start(ap, fmt);
    int rc = ah_buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    if (rc == 0)
        rc = adapter_log(out, level, msg.p, msg.n, NULL);
    ah_buf_clear(&msg);
    return rc;
}

int adapter_log_raw(json_t *out, const char *line, size_t len) {
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    return adapter_log(out, "info", line, len, NULL);
}

int adapter_log_json(json_t *out, const char *level, const json_t *j) {
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return AH_E_NOMEM;
    int rc = adapter_log(out, level, text, strlen(text), NULL);
    free(text);
    return rc;
}

int adapter_say(json_t *out, const char *text, size_t len) {
    return emit(out, json_pack("{s:s, s:s, s:o}", "type", "chat_message", "role", "assistant",
                               "content", adapter_jstr(text, len, ADAPTER_TEXT_MAX)));
}

int adapter_say_cut(json_t *out, const char *text, size_t len, size_t total) {
    return emit(out, json_pack("{s:s, s:s, s:o}", "type", "chat_message", "role", "assistant",
                               "content", adapter_jstr_cut(text, len, ADAPTER_TEXT_MAX, total)));
}

int adapter_usage(json_t *out, const json_t *usage, const char *const *input_keys,
                  const char *output_key, const json_t *cost) {
    json_int_t in = 0;
    bool any = false;
    for (const char *const *k = input_keys; *k; k++) {
        const json_t *v = json_object_get(usage, *k);
        if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < (1LL << 40)) {
            in += json_integer_value(v);
            any = true;
        }
    }
    const json_t *o = json_object_get(usage, output_key);
    if (!any || !json_is_integer(o) || json_integer_value(o) < 0 ||
        json_integer_value(o) >= (1LL << 40))
        return 0; /* no usable report: say nothing rather than a wrong number */
    json_t *ev = json_pack("{s:s, s:I, s:I}", "type", "usage", "input_tokens", in,
                           "output_tokens", json_integer_value(o));
    if (ev && json_is_number(cost) && json_number_value(cost) >= 0)
        json_object_set_new(ev, "cost_usd", json_real(json_number_value(cost)));
    return emit(out, ev);
}

int adapter_thought(json_t *out, const char *text) {
    json_t *t = adapter_jstr(text, strlen(text), ADAPTER_TEXT_MAX);
    return emit(out, json_pack("{s:s, s:o}", "type", "thought", "thought", t));
}

/* An oversized tool_args object keeps its keys (the file path of a Write with a huge body is
 * what a reader wants) with each big value cut or replaced by a size note. */
static json_t *args_trim(const json_t *v, size_t size) {
    json_t *o = json_object();
    if (!o)
        return NULL;
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)v, k, val) {
        json_t *nv;
        if (json_is_string(val)) {
            nv = adapter_jstr(json_string_value(val), json_string_length(val),
                              ADAPTER_ARG_VALUE_MAX);
        } else {
            size_t sz = json_dumpb(val, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
            nv = sz > ADAPTER_ARG_VALUE_MAX ? json_sprintf("[omitted: %zu bytes of JSON]", sz)
                                            : json_incref(val);
        }
        if (json_object_set_new(o, k, nv) < 0) {
            json_decref(o);
            return NULL;
        }
    }
    if (json_dumpb(o, NULL, 0, JSON_COMPACT) <= ADAPTER_ARGS_MAX)
        return o;
    /* Too many (or too long) keys: only the size is left to tell. */
    json_decref(o);
    return json_pack("{s:b, s:I}", "truncated", 1, "bytes", (json_int_t)size);
}

json_t *adapter_args(const json_t *v) {
    if (!v || json_is_null(v))
        return json_object();
    if (!json_is_object(v)) {
        json_t *wrapped = json_pack("{s:O}", "value", v);
        if (!wrapped)
            return NULL;
        json_t *r = adapter_args(wrapped);
        json_decref(wrapped);
        return r;
    }
    size_t size = json_dumpb(v, NULL, 0, JSON_COMPACT);
    if (size <= ADAPTER_ARGS_MAX)
        return json_incref((json_t *)v); /* shared with the parsed line; never modified */
    return args_trim(v, size);
}

int adapter_tool_use(json_t *out, const char *name, const json_t *args, const char *id) {
    json_t *a = adapter_args(args);
    return emit(out, json_pack("{s:s, s:s, s:o, s:s, s:s}", "type", "tool_use", "tool_name", name,
                               "tool_args", a, "tool_execution_id", id, "status", "started"));
}

int adapter_tool_result(json_t *out, const char *name, const char *output, size_t len,
                        const char *id, bool ok) {
    json_t *o = adapter_jstr(output ? output : "", output ? len : 0, ADAPTER_TEXT_MAX);
    /* D26: tool_status (success|error) is what the Agent Harbor WebUI reads; status stays. */
    return emit(out, json_pack("{s:s, s:s, s:o, s:s, s:s, s:s}", "type", "tool_result",
                               "tool_name", name, "tool_output", o, "tool_execution_id", id,
                               "status", ok ? "completed" : "failed", "tool_status",
                               ok ? "success" : "error"));
}

int adapter_tool_progress(json_t *out, const char *name, const char *id, const char *output,
                          size_t len) {
    /* the last non-blank line of the output so far */
    while (len > 0 && (output[len - 1] == '\n' || output[len - 1] == '\r' ||
                       output[len - 1] == ' ' || output[len - 1] == '\t'))
        len--;
    if (!output || len == 0)
        return 0;
    size_t start = len;
    while (start > 0 && output[start - 1] != '\n')
        start--;
    json_t *line = adapter_jstr(output + start, len - start, ADAPTER_FIELD_MAX);
    return emit(out, json_pack("{s:s, s:s, s:s, s:s, s:o}", "type", "tool_use", "tool_name", name,
                               "tool_execution_id", id, "status", "running", "last_line", line));
}

int adapter_file_edit(json_t *out, const char *path, int64_t added, int64_t removed,
                      const char *status, const char *id, const char *description) {
    json_t *ev = json_pack("{s:s, s:s, s:I, s:I, s:s}", "type", "file_edit", "file_path", path,
                           "lines_added", (json_int_t)added, "lines_removed", (json_int_t)removed,
                           "status", status);
    if (ev && id && json_object_set_new(ev, "tool_execution_id", json_string(id)) < 0) {
        json_decref(ev);
        return AH_E_NOMEM;
    }
    if (ev && description &&
        json_object_set_new(ev, "description",
                            adapter_jstr(description, strlen(description), ADAPTER_FIELD_MAX)) <
            0) {
        json_decref(ev);
        return AH_E_NOMEM;
    }
    return emit(out, ev);
}

/* Reads the counts of a hunk header "@@ -a[,b] +c[,d] @@"; a missing count means 1. */
static bool hunk_header(const char *p, int64_t *ret_old, int64_t *ret_new) {
    int64_t counts[2];
    const char signs[2] = {'-', '+'};
    p += 2;
    for (int k = 0; k < 2; k++) {
        while (*p == ' ')
            p++;
        if (*p++ != signs[k])
            return false;
        char *end;
        strtoll(p, &end, 10);
        if (end == p)
            return false;
        p = end;
        counts[k] = 1;
        if (*p == ',') {
            p++;
            long long c = strtoll(p, &end, 10);
            if (end == p || c < 0)
                return false;
            counts[k] = c;
            p = end;
        }
    }
    *ret_old = counts[0];
    *ret_new = counts[1];
    return true;
}

void adapter_diff_count(const char *patch, int64_t *ret_added, int64_t *ret_removed) {
    int64_t added = 0, removed = 0, old_left = 0, new_left = 0;
    for (const char *p = patch; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (old_left > 0 || new_left > 0) {
            /* Inside a hunk the first byte says what the line is, whatever follows it. */
            if (*p == '+') {
                added++;
                new_left--;
            } else if (*p == '-') {
                removed++;
                old_left--;
            } else if (*p == ' ' || *p == '\n') {
                old_left--;
                new_left--;
            } /* "\ No newline at end of file" counts for neither side */
        } else if (strncmp(p, "@@", 2) == 0) {
            if (!hunk_header(p, &old_left, &new_left))
                old_left = new_left = 0;
        }
        p = eol ? eol + 1 : NULL;
    }
    *ret_added = added;
    *ret_removed = removed;
}

int64_t adapter_line_count(const char *s) {
    int64_t n = 0;
    const char *p = s;
    for (; *p; p++)
        if (*p == '\n')
            n++;
    if (p > s && p[-1] != '\n')
        n++;
    return n;
}

/* ---- tool runs ----------------------------------------------------------------------------- */

void adapter_tool_clear(struct adapter_tool *tool) {
    free(tool->id);
    free(tool->name);
    free(tool->path);
    *tool = (struct adapter_tool){0};
}

void adapter_tools_clear(struct adapter_tools *t) {
    for (size_t i = 0; i < t->n; i++)
        adapter_tool_clear(&t->v[i]);
    t->n = 0;
}

static ssize_t tools_find(const struct adapter_tools *t, const char *id) {
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].id, id) == 0)
            return (ssize_t)i;
    return -1;
}

static void tools_remove(struct adapter_tools *t, size_t i) {
    memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(t->v[0]));
    t->n--;
}

bool adapter_tools_has(const struct adapter_tools *t, const char *id) {
    return tools_find(t, id) >= 0;
}

int adapter_tools_add(struct adapter_tools *t, const char *id, const char *name, const char *path) {
    if (tools_find(t, id) >= 0)
        return 1;
    struct adapter_tool tool = {strdup(id), strdup(name), path ? strdup(path) : NULL};
    if (!tool.id || !tool.name || (path && !tool.path)) {
        adapter_tool_clear(&tool);
        return AH_E_NOMEM;
    }
    if (t->n == ADAPTER_TOOLS_MAX) { /* a tool whose result never came; forget the oldest */
        adapter_tool_clear(&t->v[0]);
        tools_remove(t, 0);
    }
    t->v[t->n++] = tool;
    return 0;
}

bool adapter_tools_take(struct adapter_tools *t, const char *id, struct adapter_tool *ret) {
    ssize_t i = tools_find(t, id);
    if (i < 0)
        return false;
    *ret = t->v[i];
    tools_remove(t, (size_t)i);
    return true;
}

int adapter_tools_abandon(struct adapter_tools *t, json_t *out) {
    static const char why[] = "no result: the agent exited before this tool finished";
    int rc = 0;
    for (size_t i = 0; i < t->n && rc == 0; i++) {
        struct adapter_tool *tool = &t->v[i];
        rc = adapter_tool_result(out, tool->name, why, strlen(why), tool->id, false);
        if (rc == 0 && tool->path)
            rc = adapter_file_edit(out, tool->path, 0, 0, "failed", tool->id, NULL);
    }
    adapter_tools_clear(t);
    return rc;
}

int adapter_tool_started(struct adapter_tools *t, json_t *out, const char *name, const json_t *args,
                         const char *id, const char *path) {
    int rc = adapter_tools_add(t, id, name, path);
    if (rc < 0)
        return rc;
    rc = adapter_tool_use(out, name, args, id);
    if (rc == 0 && path)
        rc = adapter_file_edit(out, path, 0, 0, "started", id, NULL);
    return rc;
}

int adapter_tool_ended(struct adapter_tools *t, json_t *out, const char *id, const char *output,
                       size_t len, bool ok, int64_t added, int64_t removed) {
    struct adapter_tool tool = {0};
    bool known = adapter_tools_take(t, id, &tool);
    int rc = adapter_tool_result(out, known ? tool.name : "unknown", output, len, id, ok);
    if (rc == 0 && tool.path)
        rc = adapter_file_edit(out, tool.path, added, removed, ok ? "completed" : "failed", id,
                               NULL);
    adapter_tool_clear(&tool);
    return rc;
}

int adapter_tool_running(struct adapter_tools *t, json_t *out, const char *name, const json_t *args,
                         const char *id, const char *path, const char *output, size_t len) {
    int rc = adapter_tools_add(t, id, name, path);
    if (rc < 0)
        return rc;
    if (rc == 0 && (rc = adapter_tool_use(out, name, args, id)) < 0)
        return rc;
    return adapter_tool_progress(out, name, id, output, len); /* D26: output so far */
}

int adapter_tool_done(struct adapter_tools *t, json_t *out, const char *name, const json_t *args,
                      const char *id, const char *output, size_t len, bool ok) {
    struct adapter_tool tool = {0};
    if (adapter_tools_take(t, id, &tool)) {
        adapter_tool_clear(&tool);
    } else {
        int rc = adapter_tool_use(out, name, args, id);
        if (rc < 0)
            return rc;
    }
    return adapter_tool_result(out, name, output, len, id, ok);
}

/* ---- the state of a run and its outcome ---------------------------------------------------- */

void *adapter_run_new(void) {
    return calloc(1, sizeof(struct adapter_run));
}

void adapter_run_free(void *state) {
    struct adapter_run *run = state;
    if (!run)
        return;
    adapter_tools_clear(&run->tools);
    free(run);
}

void adapter_run_conversation(struct adapter_run *run, const char *id) {
    if (id && *id && strlen(id) < sizeof(run->conversation))
        memcpy(run->conversation, id, strlen(id) + 1);
}

const char *adapter_run_conversation_id(void *state) {
    struct adapter_run *run = state;
    return run && run->conversation[0] ? run->conversation : NULL;
}

void adapter_run_verdict(struct adapter_run *run, enum adapter_outcome v,
                         enum adapter_outcome *outcome) {
    run->verdict = v;
    if (outcome)
        *outcome = v;
}

enum adapter_outcome adapter_run_finish(struct adapter_run *run, int exit_code, json_t *out,
                                        const char *missing) {
    (void)adapter_tools_abandon(&run->tools, out);
    enum adapter_outcome verdict = run->verdict;
    if (verdict == ADAPTER_RUNNING) {
        (void)adapter_logf(out, "error", "%s (exit code %d)", missing, exit_code);
        return ADAPTER_FAILED;
    }
    if (exit_code != 0) {
        if (verdict == ADAPTER_SUCCEEDED)
            (void)adapter_logf(out, "error", "the agent reported success but exited with code %d",
                               exit_code);
        return ADAPTER_FAILED;
    }
    return verdict;
}

/* ---- resuming a conversation --------------------------------------------------------------- */

struct pending_call {
    const char *id, *name;
};

int adapter_turns(const json_t *transcript,
                  int (*fn)(void *ctx, const struct adapter_turn *t), void *ctx) {
    const char *prompt = json_string_value(json_object_get(transcript, "prompt"));
    int rc = 0;
    if (prompt && *prompt)
        rc = fn(ctx, &(struct adapter_turn){.kind = ADAPTER_TURN_USER, .text = prompt});
    /* calls announced and not yet answered, answered in order when the transcript ends */
    struct pending_call pending[ADAPTER_TOOLS_MAX];
    size_t np = 0, i;
    const json_t *e;
    json_array_foreach(json_object_get(transcript, "events"), i, e) {
        if (rc < 0)
            return rc;
        const char *type = adapter_str(e, "type"), *id = adapter_field(e, "tool_execution_id");
        const char *name = adapter_field(e, "tool_name");
        if (!type)
            continue;
        if (!strcmp(type, "chat_message") && adapter_str(e, "content")) {
            bool user = adapter_is(e, "role", "user");
            rc = fn(ctx, &(struct adapter_turn){.kind = user ? ADAPTER_TURN_USER
                                                             : ADAPTER_TURN_ASSISTANT,
                                                .text = adapter_str(e, "content")});
        } else if (!strcmp(type, "tool_use") && id && name && !adapter_is(e, "status", "running")) {
            bool known = false;
            for (size_t k = 0; k < np && !known; k++)
                known = !strcmp(pending[k].id, id);
            if (known)
                continue; /* announced twice (a codex item's updates) */
            if (np == ADAPTER_TOOLS_MAX) /* as the adapters do: the oldest is forgotten */
                memmove(pending, pending + 1, --np * sizeof(pending[0]));
            pending[np++] = (struct pending_call){id, name};
            rc = fn(ctx, &(struct adapter_turn){.kind = ADAPTER_TURN_TOOL_CALL, .id = id,
                                                .name = name, .args = json_object_get(e, "tool_args")});
        } else if (!strcmp(type, "tool_result") && id) {
            size_t k = 0;
            while (k < np && strcmp(pending[k].id, id))
                k++;
            if (k == np)
                continue; /* a result without its call: a CLI would refuse it */
            memmove(pending + k, pending + k + 1, (np - k - 1) * sizeof(pending[0]));
            np--;
            const char *out = adapter_str(e, "tool_output");
            rc = fn(ctx, &(struct adapter_turn){.kind = ADAPTER_TURN_TOOL_DONE, .id = id,
                                                .name = name ? name : "unknown",
                                                .text = out ? out : "",
                                                .ok = !adapter_is(e, "status", "failed")});
        }
    }
    for (size_t k = 0; rc >= 0 && k < np; k++)
        rc = fn(ctx, &(struct adapter_turn){.kind = ADAPTER_TURN_TOOL_DONE, .id = pending[k].id,
                                            .name = pending[k].name,
                                            .text = "interrupted: the session was branched here",
                                            .ok = false});
    return rc < 0 ? rc : 0;
}

void adapter_line_uuid(const char *id, size_t i, char out[37]) {
    snprintf(out, 37, "%.24s%012zx", id, i & 0xffffffffffffu);
}

int adapter_jsonl(struct ah_buf *b, json_t *j) {
    if (!j)
        return AH_E_NOMEM;
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s)
        return AH_E_NOMEM;
    int rc = ah_buf_puts(b, s);
    if (rc == 0)
        rc = ah_buf_puts(b, "\n");
    free(s);
    return rc;
}

/* ---- custom agents (D19) ------------------------------------------------------------------- */

/* Neither custom format has a verdict in the stream: the exit code is the outcome. The state
 * exists only because the interface wants one per run. */
struct custom {
    size_t lines; /* lines read, for a debugger; C wants a member anyway */
};

static void *custom_new(void) {
    return calloc(1, sizeof(struct custom));
}

static void custom_free(void *state) {
    free(state);
}

/* The configured binary (required) with the prompt as its only argument. */
static int custom_argv(const struct adapter_launch *l, char ***ret_argv) {
    static const char *const args[] = {ADAPTER_PROMPT};
    return adapter_argv_build(l, NULL, NULL, args, ADAPTER_COUNT(args), ret_argv);
}

static enum adapter_outcome custom_finish(void *state, int exit_code, json_t *out) {
    if (exit_code == 0)
        return ADAPTER_SUCCEEDED;
    (void)adapter_logf(out, "error", "the agent exited with code %d", exit_code);
    return ADAPTER_FAILED;
}

static int text_line(void *state, const char *line, size_t len, json_t *out,
                     enum adapter_outcome *outcome) {
    struct custom *st = state;
    st->lines++;
    while (len > 0 && line[len - 1] == '\r')
        len--;
    if (len == 0) /* blank lines are layout, not news */
        return 0;
    return adapter_log(out, "info", line, len, NULL);
}

const struct agent_adapter adapter_custom_text = {
    .type = "custom-text",
    .build_argv = custom_argv,
    .state_new = custom_new,
    .state_free = custom_free,
    .line = text_line,
    .finish = custom_finish,
};

/* jsonl: the event types an agent may report itself (API.md §8.1/8.2; never `status`), and the
 * members each needs. A valid line is copied member by member, so unknown members and the
 * recorder's own (seq, ts, sessionId) never pass through. */
enum kind {
    K_STR,         /* string, cut at ADAPTER_TEXT_MAX */
    K_STR_NULL,    /* string or null */
    K_OBJ,         /* object (tool_args), capped by adapter_args */
    K_COUNT,       /* integer ≥ 0 */
    K_TRUE,        /* the literal true */
    K_LEVEL,       /* debug | info | warn | error */
    K_USE_STATUS,  /* started */
    K_DONE_STATUS, /* completed | failed */
    K_EDIT_STATUS, /* started | completed | failed */
    K_RUN_STATUS,  /* running (a tool's progress, D26) */
    K_TOOL_STATUS, /* success | error (D26) */
};
struct field {
    const char *name;
    enum kind kind;
    bool required;
};
struct shape {
    const char *type;
    struct field f[8];
};
static const struct shape shapes[] = {
    {"thought", {{"thought", K_STR, true}, {"reasoning", K_STR, false}}},
    {"log",
     {{"level", K_LEVEL, true},
      {"message", K_STR, true},
      {"tool_execution_id", K_STR_NULL, false}}},
    {"tool_use",
     {{"tool_name", K_STR, true},
      {"tool_args", K_OBJ, true},
      {"tool_execution_id", K_STR, true},
      {"status", K_USE_STATUS, true}}},
    {"tool_use", /* progress of a running tool (D26) */
     {{"tool_name", K_STR, true},
      {"tool_execution_id", K_STR, true},
      {"status", K_RUN_STATUS, true},
      {"last_line", K_STR, true}}},
    {"tool_result",
     {{"tool_name", K_STR, true},
      {"tool_output", K_STR, true},
      {"tool_execution_id", K_STR, true},
      {"status", K_DONE_STATUS, true},
      {"tool_status", K_TOOL_STATUS, false}}},
    {"file_edit",
     {{"file_path", K_STR, true},
      {"lines_added", K_COUNT, true},
      {"lines_removed", K_COUNT, true},
      {"description", K_STR, false},
      {"status", K_EDIT_STATUS, false},
      {"tool_execution_id", K_STR, false}}},
    {"diff",
     {{"tool_execution_id", K_STR, true},
      {"path", K_STR, true},
      {"oldText", K_STR, true},
      {"newText", K_STR, true}}},
    {"diff",
     {{"tool_execution_id", K_STR, true},
      {"path", K_STR, true},
      {"oldTextHead", K_STR, true},
      {"oldTextTail", K_STR, true},
      {"newTextHead", K_STR, true},
      {"newTextTail", K_STR, true},
      {"truncated", K_TRUE, true},
      {"fullDiffUrl", K_STR, true}}},
    {"note", {{"message", K_STR, true}}},
    {"moment", {{"snapshotId", K_STR, true}, {"note", K_STR, true}}},
    /* issue 15: the agent's reply in the chat (the supervisor keeps role assistant only) and its
     * own token report */
    {"chat_message", {{"role", K_STR, true}, {"content", K_STR, true}}},
    {"usage", {{"input_tokens", K_COUNT, true}, {"output_tokens", K_COUNT, true}}},
};

static bool one_of(const char *s, const char *const *set) {
    for (; s && *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

static bool kind_ok(enum kind k, const json_t *v) {
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    static const char *const use[] = {"started", NULL};
    static const char *const done[] = {"completed", "failed", NULL};
    static const char *const edit[] = {"started", "completed", "failed", NULL};
    static const char *const run[] = {"running", NULL};
    static const char *const tool[] = {"success", "error", NULL};
    switch (k) {
    case K_STR: return json_is_string(v);
    case K_STR_NULL: return json_is_string(v) || json_is_null(v);
    case K_OBJ: return json_is_object(v);
    case K_COUNT: return json_is_integer(v) && json_integer_value(v) >= 0;
    case K_TRUE: return json_is_true(v);
    case K_LEVEL: return one_of(json_string_value(v), levels);
    case K_USE_STATUS: return one_of(json_string_value(v), use);
    case K_DONE_STATUS: return one_of(json_string_value(v), done);
    case K_EDIT_STATUS: return one_of(json_string_value(v), edit);
    case K_RUN_STATUS: return one_of(json_string_value(v), run);
    case K_TOOL_STATUS: return one_of(json_string_value(v), tool);
    }
    return false;
}

/* 0 and *ret = the clean copy; 1 when `in` does not have this shape; AH_E_NOMEM. */
static int shape_copy(const struct shape *s, const json_t *in, json_t **ret) {
    for (const struct field *f = s->f; f < s->f + ADAPTER_COUNT(s->f) && f->name; f++) {
        const json_t *v = json_object_get(in, f->name);
        if (v ? !kind_ok(f->kind, v) : f->required)
            return 1;
    }
    AH_AUTO(json_decrefp) json_t *o = json_pack("{s:s}", "type", s->type);
    if (!o)
        return AH_E_NOMEM;
    for (const struct field *f = s->f; f < s->f + ADAPTER_COUNT(s->f) && f->name; f++) {
        const json_t *v = json_object_get(in, f->name);
        if (!v)
            continue;
        json_t *copy;
        if (f->kind == K_OBJ)
            copy = adapter_args(v);
        else if (json_is_string(v))
            copy = adapter_jstr(json_string_value(v), json_string_length(v), ADAPTER_TEXT_MAX);
        else
            copy = json_incref((json_t *)v);
        if (json_object_set_new(o, f->name, copy) < 0)
            return AH_E_NOMEM;
    }
    *ret = AH_TAKE(o);
    return 0;
}

static int jsonl_map(void *state, const json_t *in, const char *type, json_t *out,
                     enum adapter_outcome *outcome) {
    for (size_t i = 0; type && i < ADAPTER_COUNT(shapes); i++) {
        if (strcmp(shapes[i].type, type) != 0)
            continue;
        json_t *ev = NULL;
        int rc = shape_copy(&shapes[i], in, &ev);
        if (rc < 0)
            return rc;
        /* D26: every tool_result says tool_status; an agent that did not is judged by status */
        if (rc == 0 && !strcmp(type, "tool_result") && !json_object_get(ev, "tool_status") &&
            json_object_set_new(ev, "tool_status",
                                json_string(adapter_is(ev, "status", "completed") ? "success"
                                                                                  : "error")) < 0) {
            json_decref(ev);
            return AH_E_NOMEM;
        }
        if (rc == 0)
            return emit(out, ev);
    }
    return 1;
}

static int jsonl_line(void *state, const char *line, size_t len, json_t *out,
                      enum adapter_outcome *outcome) {
    struct custom *st = state;
    st->lines++;
    return adapter_json_line(state, line, len, out, outcome, jsonl_map);
}

const struct agent_adapter adapter_custom_jsonl = {
    .type = "custom-jsonl",
    .build_argv = custom_argv,
    .state_new = custom_new,
    .state_free = custom_free,
    .line = jsonl_line,
    .finish = custom_finish,
};
