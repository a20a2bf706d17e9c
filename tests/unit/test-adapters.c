/* test-adapters.c — the agent adapters (agent/adapter*.c): every fixture of
 * tests/fixtures/agents mapped to the exact sequence of events with their key fields and the
 * run's outcome; truncated streams; argv; hostile input (never a crash, always a log event);
 * the custom text/jsonl adapters; and every jansson allocation failed in turn. Every event any
 * test produces is also checked against API.md §8.2 by check_event(). */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h> /* after the headers it needs */

#include "../../src/agent/adapter_int.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static char *dump(const json_t *j) {
    return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}

static bool is_one_of(const char *s, const char *const *set) {
    for (; s && *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

static void need_str(const json_t *e, const char *key, bool nonempty) {
    const json_t *v = json_object_get(e, key);
    if (!json_is_string(v) || (nonempty && json_string_length(v) == 0)) {
        char *d = dump(e);
        fail_msg("event lacks string %s: %s", key, d);
    }
}

/* The payload contract of API.md §8.2 (plus our file_edit status), and our caps. */
static void check_event(const json_t *e) {
    static const char *const types[] = {"log",  "thought", "tool_use", "tool_result", "file_edit",
                                        "diff", "note",    "moment",   "chat_message", "usage",
                                        NULL};
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    static const char *const done[] = {"completed", "failed", NULL};
    static const char *const edit[] = {"started", "completed", "failed", NULL};
    assert_true(json_is_object(e));
    const char *type = json_string_value(json_object_get(e, "type"));
    if (!is_one_of(type, types)) {
        char *d = dump(e);
        fail_msg("bad event type: %s", d);
    }
    assert_null(json_object_get(e, "seq"));
    assert_null(json_object_get(e, "ts"));
    assert_null(json_object_get(e, "sessionId"));
    /* Valid UTF-8 without NUL: what jansson writes, jansson (flags 0) reads back. */
    char *text = dump(e);
    assert_non_null(text);
    json_error_t err;
    json_t *back = json_loads(text, 0, &err);
    if (!back)
        fail_msg("event does not round-trip (%s): %.200s", err.text, text);
    json_decref(back);
    free(text);
    if (strcmp(type, "log") == 0) {
        assert_true(is_one_of(json_string_value(json_object_get(e, "level")), levels));
        need_str(e, "message", false);
        assert_true(json_string_length(json_object_get(e, "message")) <= ADAPTER_TEXT_MAX + 64);
        const json_t *tid = json_object_get(e, "tool_execution_id");
        assert_true(!tid || json_is_null(tid) || json_is_string(tid));
    } else if (strcmp(type, "chat_message") == 0) { /* the agent's reply (issue 15) */
        assert_string_equal(json_string_value(json_object_get(e, "role")), "assistant");
        need_str(e, "content", false);
        assert_true(json_string_length(json_object_get(e, "content")) <= ADAPTER_TEXT_MAX + 64);
        assert_int_equal(json_object_size(e), 3);
    } else if (strcmp(type, "thought") == 0) {
        need_str(e, "thought", false);
        assert_true(json_string_length(json_object_get(e, "thought")) <= ADAPTER_TEXT_MAX + 64);
    } else if (strcmp(type, "tool_use") == 0) {
        need_str(e, "tool_name", true);
        need_str(e, "tool_execution_id", true);
        if (is_one_of(json_string_value(json_object_get(e, "status")),
                      (const char *const[]){"running", NULL})) {
            /* D26: a running tool's progress carries its output's last line, not the args */
            need_str(e, "last_line", false);
            assert_true(json_string_length(json_object_get(e, "last_line")) <=
                        ADAPTER_FIELD_MAX + 64);
        } else {
            assert_true(json_is_object(json_object_get(e, "tool_args")));
            assert_true(json_dumpb(json_object_get(e, "tool_args"), NULL, 0, JSON_COMPACT) <=
                        ADAPTER_ARGS_MAX);
            assert_string_equal(json_string_value(json_object_get(e, "status")), "started");
        }
    } else if (strcmp(type, "tool_result") == 0) {
        /* D26: tool_status says the same as status, in the WebUI's words */
        assert_string_equal(json_string_value(json_object_get(e, "tool_status")),
                            strcmp(json_string_value(json_object_get(e, "status")), "completed")
                                ? "error"
                                : "success");
        need_str(e, "tool_name", true);
        need_str(e, "tool_execution_id", true);
        need_str(e, "tool_output", false);
        assert_true(json_string_length(json_object_get(e, "tool_output")) <= ADAPTER_TEXT_MAX + 64);
        assert_true(is_one_of(json_string_value(json_object_get(e, "status")), done));
    } else if (strcmp(type, "file_edit") == 0) {
        need_str(e, "file_path", true);
        assert_true(json_is_integer(json_object_get(e, "lines_added")));
        assert_true(json_is_integer(json_object_get(e, "lines_removed")));
        assert_true(json_integer_value(json_object_get(e, "lines_added")) >= 0);
        assert_true(json_integer_value(json_object_get(e, "lines_removed")) >= 0);
        const json_t *st = json_object_get(e, "status");
        assert_true(!st || is_one_of(json_string_value(st), edit));
    }
}

struct run {
    json_t *ev;                 /* every event, in order */
    enum adapter_outcome oc;    /* the outcome as the lines left it */
    long settled_at;            /* index of the first line after which oc != RUNNING, or -1 */
    enum adapter_outcome final; /* what finish() returned */
    size_t before_finish;       /* events produced by the lines alone */
};

static void run_free(struct run *r) {
    json_decref(r->ev);
    r->ev = NULL;
}

struct lines {
    char *buf;
    char **v;
    size_t *len;
    size_t n;
};

static void lines_free(struct lines *l) {
    free(l->buf);
    free(l->v);
    free(l->len);
}

static struct lines fixture(const char *name) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", AH_FIXTURES_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    struct lines l = {0};
    size_t cap = 0, n = 0;
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (n + got + 1 > cap) {
            cap = (n + got + 1) * 2;
            l.buf = realloc(l.buf, cap);
            assert_non_null(l.buf);
        }
        memcpy(l.buf + n, chunk, got);
        n += got;
    }
    fclose(f);
    assert_true(n > 0);
    l.buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        l.n += l.buf[i] == '\n';
    l.v = calloc(l.n + 1, sizeof(*l.v));
    l.len = calloc(l.n + 1, sizeof(*l.len));
    assert_non_null(l.v);
    assert_non_null(l.len);
    size_t k = 0;
    for (char *p = l.buf; p < l.buf + n;) {
        char *eol = memchr(p, '\n', (size_t)(l.buf + n - p));
        assert_non_null(eol); /* every fixture line is \n-terminated */
        l.v[k] = p;
        l.len[k++] = (size_t)(eol - p); /* the adapter gets the line without its newline */
        p = eol + 1;
    }
    assert_int_equal(k, l.n);
    return l;
}

/* Feeds lines[0..n) of a fixture, then finish(exit_code). */
static struct run run_lines(const struct agent_adapter *a, char **v, const size_t *len, size_t n,
                            int exit_code) {
    struct run r = {.ev = json_array(), .oc = ADAPTER_RUNNING, .settled_at = -1};
    assert_non_null(r.ev);
    void *st = a->state_new();
    assert_non_null(st);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(a->line(st, v[i], len[i], r.ev, &r.oc), 0);
        if (r.oc != ADAPTER_RUNNING && r.settled_at < 0)
            r.settled_at = (long)i;
    }
    r.before_finish = json_array_size(r.ev);
    r.final = a->finish(st, exit_code, r.ev);
    a->state_free(st);
    size_t i;
    const json_t *e;
    json_array_foreach(r.ev, i, e) check_event(e);
    return r;
}

static struct run run_fixture(const char *adapter, const char *name, size_t keep, int exit_code) {
    const struct agent_adapter *a = adapter_find(adapter);
    assert_non_null(a);
    struct lines l = fixture(name);
    struct run r = run_lines(a, l.v, l.len, keep < l.n ? keep : l.n, exit_code);
    lines_free(&l);
    return r;
}

static size_t fixture_count(const char *name) {
    struct lines l = fixture(name);
    size_t n = l.n;
    lines_free(&l);
    return n;
}

static void expect_types(const struct run *r, const char *const *types, size_t n) {
    size_t got = json_array_size(r->ev);
    for (size_t i = 0; i < n && i < got; i++) {
        const char *t = json_string_value(json_object_get(json_array_get(r->ev, i), "type"));
        if (strcmp(t, types[i]) != 0) {
            char all[4096] = "";
            for (size_t j = 0; j < got; j++) {
                const char *tj = json_string_value(json_object_get(json_array_get(r->ev, j), "type"));
                strncat(all, "\"", sizeof(all) - strlen(all) - 1);
                strncat(all, tj, sizeof(all) - strlen(all) - 1);
                strncat(all, "\", ", sizeof(all) - strlen(all) - 1);
            }
            fail_msg("event %zu is %s, expected %s; types: %s", i, t, types[i], all);
        }
    }
    if (got != n) {
        char *d = dump(r->ev);
        fail_msg("%zu events, expected %zu: %.3000s", got, n, d);
    }
}
#define EXPECT_TYPES(r, ...)                                                                       \
    do {                                                                                           \
        static const char *const t_[] = {__VA_ARGS__};                                             \
        expect_types(r, t_, sizeof(t_) / sizeof(t_[0]));                                           \
    } while (0)

static const json_t *at(const struct run *r, size_t i) {
    assert_true(i < json_array_size(r->ev));
    return json_array_get(r->ev, i);
}

/* The agent's own text is an assistant chat_message (issue 15) whose `content` is what a log's
 * `message` would have said: the checks below read either. */
static const char *text_key(const json_t *e, const char *key) {
    const char *t = json_string_value(json_object_get(e, "type"));
    return t && !strcmp(t, "chat_message") && !strcmp(key, "message") ? "content" : key;
}

static const char *sget(const json_t *e, const char *key) {
    key = text_key(e, key);
    const char *s = json_string_value(json_object_get(e, key));
    if (!s) {
        char *d = dump(e);
        fail_msg("no string %s in %s", key, d);
    }
    return s;
}

static long long iget(const json_t *e, const char *key) {
    const json_t *v = json_object_get(e, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static bool starts(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool is_say(const json_t *e) {
    return !strcmp(sget(e, "type"), "chat_message");
}

static void expect_log(const json_t *e, const char *level, const char *msg) {
    if (is_say(e)) { /* the agent's text: only ever at info */
        assert_string_equal(level, "info");
        assert_string_equal(sget(e, "content"), msg);
        return;
    }
    assert_string_equal(sget(e, "type"), "log");
    assert_string_equal(sget(e, "level"), level);
    assert_string_equal(sget(e, "message"), msg);
}

static void expect_log_has(const json_t *e, const char *level, const char *needle) {
    if (!is_say(e)) {
        assert_string_equal(sget(e, "type"), "log");
        assert_string_equal(sget(e, "level"), level);
    } else {
        assert_string_equal(level, "info");
    }
    if (!strstr(sget(e, "message"), needle))
        fail_msg("'%s' not in log '%s'", needle, sget(e, "message"));
}

static void expect_tool_use(const json_t *e, const char *name, const char *id) {
    assert_string_equal(sget(e, "type"), "tool_use");
    assert_string_equal(sget(e, "tool_name"), name);
    assert_string_equal(sget(e, "tool_execution_id"), id);
    assert_string_equal(sget(e, "status"), "started");
}

static const char *arg(const json_t *e, const char *key) {
    return sget(json_object_get(e, "tool_args"), key);
}

static void expect_tool_result(const json_t *e, const char *name, const char *id,
                               const char *status) {
    assert_string_equal(sget(e, "type"), "tool_result");
    assert_string_equal(sget(e, "tool_name"), name);
    assert_string_equal(sget(e, "tool_execution_id"), id);
    assert_string_equal(sget(e, "status"), status);
}

static void expect_file_edit(const json_t *e, const char *path, int added, int removed,
                             const char *status, const char *id) {
    assert_string_equal(sget(e, "type"), "file_edit");
    assert_string_equal(sget(e, "file_path"), path);
    assert_int_equal(iget(e, "lines_added"), added);
    assert_int_equal(iget(e, "lines_removed"), removed);
    assert_string_equal(sget(e, "status"), status);
    if (id)
        assert_string_equal(sget(e, "tool_execution_id"), id);
}

#define AUTH_C "/home/dev/authsvc/src/auth.c"
#define TESTS_OUT_END "6 passed, 0 failed"

/* ---- registry and argv ------------------------------------------------------------------------
 */

static void test_find(void **state) {
    const struct agent_adapter *c = adapter_find("claude-code");
    assert_non_null(c);
    assert_ptr_equal(adapter_find("claude"), c);
    assert_string_equal(c->type, "claude-code");
    assert_string_equal(c->binary, "claude");
    const struct agent_adapter *g = adapter_find("gemini");
    assert_non_null(g);
    assert_ptr_equal(adapter_find("gemini-cli"), g);
    assert_string_equal(g->binary, "gemini");
    assert_string_equal(adapter_find("codex")->type, "codex");
    assert_string_equal(adapter_find("opencode")->type, "opencode");
    assert_ptr_not_equal(adapter_find("codex"), adapter_find("opencode"));
    assert_null(adapter_find("Claude"));
    assert_null(adapter_find("scripted")); /* built in, not an adapter */
    assert_null(adapter_find(""));
    assert_null(adapter_find(NULL));
    assert_null(adapter_find("custom-text")); /* custom agents come from configuration */
}

static void expect_argv(const struct agent_adapter *a, const struct adapter_launch *l,
                        const char *const *want, size_t n) {
    char **argv = NULL;
    assert_int_equal(a->build_argv(l, &argv), 0);
    size_t i = 0;
    for (; argv[i]; i++) {
        if (i >= n)
            fail_msg("extra argument %zu: %s", i, argv[i]);
        assert_string_equal(argv[i], want[i]);
    }
    assert_int_equal(i, n);
    adapter_argv_free(argv);
}
#define EXPECT_ARGV(a, l, ...)                                                                     \
    do {                                                                                           \
        static const char *const w_[] = {__VA_ARGS__};                                             \
        expect_argv(a, l, w_, sizeof(w_) / sizeof(w_[0]));                                         \
    } while (0)

static void test_argv(void **state) {
    struct adapter_launch l = {.prompt = "fix it", .cwd = "/w"};
    struct adapter_launch m = {.prompt = "fix it", .model = "m-1", .binary = "/opt/x"};
    const struct agent_adapter *c = adapter_find("claude"), *x = adapter_find("codex");
    const struct agent_adapter *g = adapter_find("gemini"), *o = adapter_find("opencode");
    EXPECT_ARGV(c, &l, "claude", "-p", "fix it", "--output-format", "stream-json", "--verbose",
                "--permission-mode", "acceptEdits");
    EXPECT_ARGV(c, &m, "/opt/x", "-p", "fix it", "--output-format", "stream-json", "--verbose",
                "--permission-mode", "acceptEdits", "--model", "m-1");
    EXPECT_ARGV(x, &l, "codex", "exec", "--json", "--full-auto", "fix it");
    EXPECT_ARGV(x, &m, "/opt/x", "exec", "--json", "--full-auto", "-m", "m-1", "fix it");
    EXPECT_ARGV(g, &l, "gemini", "-p", "fix it", "--output-format", "stream-json", "--yolo");
    EXPECT_ARGV(g, &m, "/opt/x", "-p", "fix it", "--output-format", "stream-json", "--yolo", "-m",
                "m-1");
    EXPECT_ARGV(o, &l, "opencode", "run", "--format", "json", "--thinking", "fix it");
    EXPECT_ARGV(o, &m, "/opt/x", "run", "--format", "json", "--thinking", "-m", "m-1", "fix it");
    /* An empty model is no model; a prompt that looks like a flag is kept from the parser. */
    struct adapter_launch e = {.prompt = "--help me", .model = ""};
    EXPECT_ARGV(x, &e, "codex", "exec", "--json", "--full-auto", " --help me");
    EXPECT_ARGV(c, &e, "claude", "-p", " --help me", "--output-format", "stream-json", "--verbose",
                "--permission-mode", "acceptEdits");
    /* No prompt: refused, nothing allocated. */
    struct adapter_launch none = {0};
    const struct agent_adapter *all[] = {c, x, g, o, &adapter_custom_text, &adapter_custom_jsonl};
    for (size_t i = 0; i < 6; i++) {
        char **argv = NULL;
        assert_int_equal(all[i]->build_argv(&none, &argv), AH_E_INVAL);
        assert_null(argv);
    }
    /* Custom agents: the configured binary, the prompt last; a binary is required. */
    struct adapter_launch cu = {.binary = "/usr/local/bin/my-agent", .prompt = "-x"};
    EXPECT_ARGV(&adapter_custom_text, &cu, "/usr/local/bin/my-agent", " -x");
    EXPECT_ARGV(&adapter_custom_jsonl, &cu, "/usr/local/bin/my-agent", " -x");
    char **argv = NULL;
    assert_int_equal(adapter_custom_text.build_argv(&l, &argv), AH_E_INVAL);
    assert_null(argv);
    adapter_argv_free(NULL);
}

/* Session branches: the resume argv, and the saved conversation from a transcript that ends
 * between a tool call and its result (the call gets a failed result: the CLIs refuse a call
 * without one), with thoughts and progress left out. */
static void test_resume(void **state) {
    (void)state;
#define ID "0123abcd-0000-4000-8000-000000000000"
    const char *id = ID;
    struct adapter_launch r = {.prompt = "again", .resume_id = id};
    const struct agent_adapter *c = adapter_find("claude"), *x = adapter_find("codex");
    EXPECT_ARGV(c, &r, "claude", "-p", "again", "--output-format", "stream-json", "--verbose",
                "--permission-mode", "acceptEdits", "--resume", ID);
    EXPECT_ARGV(x, &r, "codex", "exec", "--json", "--full-auto", "resume", ID, "again");
    assert_null(adapter_find("gemini")->resume_file);
    assert_null(adapter_find("opencode")->resume_file);
    json_t *t = json_pack(
        "{s:s, s:[{s:s, s:s}, {s:s, s:s, s:s}, {s:s, s:s, s:s, s:{s:s}, s:s},"
        " {s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s, s:s},"
        " {s:s, s:s, s:s, s:{}, s:s}]}",
        "prompt", "fix it", "events", "type", "thought", "thought", "hmm", "type",
        "chat_message", "role", "assistant", "content", "reading", "type", "tool_use",
        "tool_name", "Read", "tool_execution_id", "t1", "tool_args", "file_path", "a.c", "status",
        "started", "type", "tool_use", "tool_name", "Read", "tool_execution_id", "t1", "status",
        "running", "type", "tool_result", "tool_name", "Read", "tool_execution_id", "t1",
        "tool_output", "int x;", "status", "completed", "type", "tool_use", "tool_name", "Bash",
        "tool_execution_id", "t2", "tool_args", "status", "started");
    assert_non_null(t);
    struct ah_buf f = {0};
    char *path = NULL;
    assert_int_equal(c->resume_file(t, "/w/my.ws", id, 0, &f, &path), 0);
    assert_string_equal(path, ".claude/projects/-w-my-ws/0123abcd-0000-4000-8000-000000000000.jsonl");
    free(path);
    /* prompt, reply, Read call, its result, Bash call, its made-up failed result */
    const char *want[] = {"\"content\":\"fix it\"", "\"text\":\"reading\"", "\"name\":\"Read\"",
                          "\"content\":\"int x;\"", "\"name\":\"Bash\"", "\"is_error\":true"};
    char *line = f.p;
    for (size_t i = 0; i < 6; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        if (!strstr(line, want[i]))
            fail_msg("line %zu lacks %s: %s", i, want[i], line);
        assert_non_null(strstr(line, i ? "\"parentUuid\":\"0123abcd-0000-4000-8000-" : "\"parentUuid\":null"));
        line = nl + 1;
    }
    assert_string_equal(line, "");
    ah_buf_clear(&f);
    assert_int_equal(x->resume_file(t, "/w", id, 86400000, &f, &path), 0);
    assert_string_equal(path, ".codex/sessions/1970/01/02/"
                              "rollout-1970-01-02T00-00-00-0123abcd-0000-4000-8000-000000000000.jsonl");
    free(path);
    assert_non_null(strstr(f.p, "\"type\":\"session_meta\""));
    assert_non_null(strstr(f.p, "\"arguments\":\"{\\\"file_path\\\":\\\"a.c\\\"}\""));
    assert_null(strstr(f.p, "hmm")); /* no thought */
    ah_buf_clear(&f);
    /* the buffer's cap is an error, not a cut conversation */
    struct ah_buf small = {.max = 64};
    assert_int_equal(c->resume_file(t, "/w", id, 0, &small, &path), AH_E_TOOLARGE);
    ah_buf_clear(&small);
    json_decref(t);
#undef ID
}

/* Further turns of a session (issue 15): the run's conversation id as the CLI named it, and
 * the argv of a turn that resumes it with another model. */
static const char *conversation_after(const char *adapter, const char *name) {
    static char out[128];
    const struct agent_adapter *a = adapter_find(adapter);
    struct lines l = fixture(name);
    json_t *ev = json_array();
    void *st = a->state_new();
    assert_null(a->conversation(st)); /* nothing named yet */
    enum adapter_outcome oc = ADAPTER_RUNNING;
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(a->line(st, l.v[i], l.len[i], ev, &oc), 0);
    const char *id = a->conversation(st);
    snprintf(out, sizeof(out), "%s", id ? id : "(none)");
    a->state_free(st);
    json_decref(ev);
    lines_free(&l);
    return out;
}

static void test_further_turns(void **state) {
    (void)state;
    assert_string_equal(conversation_after("claude-code", "claude-success.jsonl"),
                        "4c2e9a71-8d3b-4f6e-a0c5-7b19e2d4f830");
    assert_string_equal(conversation_after("codex", "codex-success.jsonl"),
                        "019a7c3e-5b2d-7f41-9c8e-3d6a2b1f0e47");
    /* the CLIs that cannot resume their own conversation with another model */
    assert_null(adapter_find("gemini")->conversation);
    assert_null(adapter_find("opencode")->conversation);
    assert_null(adapter_custom_text.conversation);
    assert_null(adapter_custom_jsonl.conversation);
    struct adapter_launch t = {.prompt = "use memcmp", .model = "claude-opus-4-1",
                               .resume_id = "4c2e9a71-8d3b-4f6e-a0c5-7b19e2d4f830"};
    EXPECT_ARGV(adapter_find("claude"), &t, "claude", "-p", "use memcmp", "--output-format",
                "stream-json", "--verbose", "--permission-mode", "acceptEdits", "--model",
                "claude-opus-4-1", "--resume", "4c2e9a71-8d3b-4f6e-a0c5-7b19e2d4f830");
    t.model = "gpt-5";
    t.resume_id = "019a7c3e-5b2d-7f41-9c8e-3d6a2b1f0e47";
    EXPECT_ARGV(adapter_find("codex"), &t, "codex", "exec", "--json", "--full-auto", "-m",
                "gpt-5", "resume", "019a7c3e-5b2d-7f41-9c8e-3d6a2b1f0e47", "use memcmp");
}

/* ---- claude ------------------------------------------------------------------------------------
 */

static void test_claude_success(void **state) {
    struct run r = run_fixture("claude-code", "claude-success.jsonl", SIZE_MAX, 0);
    EXPECT_TYPES(&r, "log", "thought", "chat_message", "tool_use", "tool_result", "thought",
                 "chat_message", "tool_use", "file_edit", "tool_result", "file_edit",
                 "chat_message", "tool_use", "tool_result", "tool_use", "tool_result",
                 "chat_message", "usage", "log");
    expect_log(at(&r, 0), "info",
               "claude-code session 4c2e9a71-8d3b-4f6e-a0c5-7b19e2d4f830 started "
               "(model claude-sonnet-4-5-20250929)");
    assert_true(starts(sget(at(&r, 1), "thought"), "The report says prefixes of the real token"));
    expect_log(at(&r, 2), "info", "I'll start by reading the token check in src/auth.c.");
    expect_tool_use(at(&r, 3), "Read", "toolu_01QmRz7KcV3pXw9TnB4hJd2s");
    assert_string_equal(arg(at(&r, 3), "file_path"), AUTH_C);
    expect_tool_result(at(&r, 4), "Read", "toolu_01QmRz7KcV3pXw9TnB4hJd2s", "completed");
    assert_true(starts(sget(at(&r, 4), "tool_output"), "     1\xe2\x86\x92#include <stddef.h>\n"));
    assert_true(starts(sget(at(&r, 5), "thought"), "strncmp is bounded by strlen(given)."));
    expect_tool_use(at(&r, 7), "Edit", "toolu_01Ls8FvN2yHq6WcZ3kTe9PxR");
    assert_string_equal(arg(at(&r, 7), "old_string"),
                        "    return strncmp(given, expected, strlen(given)) == 0;");
    expect_file_edit(at(&r, 8), AUTH_C, 0, 0, "started", "toolu_01Ls8FvN2yHq6WcZ3kTe9PxR");
    expect_tool_result(at(&r, 9), "Edit", "toolu_01Ls8FvN2yHq6WcZ3kTe9PxR", "completed");
    assert_true(starts(sget(at(&r, 9), "tool_output"), "The file " AUTH_C " has been updated."));
    expect_file_edit(at(&r, 10), AUTH_C, 4, 1, "completed", "toolu_01Ls8FvN2yHq6WcZ3kTe9PxR");
    expect_log(at(&r, 11), "info", "Now I'll run the test suite.");
    expect_tool_use(at(&r, 12), "Bash", "toolu_01Bd4GtY7mKr1VsQ8nJx5HwE");
    assert_string_equal(arg(at(&r, 12), "command"), "make test");
    expect_tool_result(at(&r, 13), "Bash", "toolu_01Bd4GtY7mKr1VsQ8nJx5HwE", "completed");
    assert_true(ends(sget(at(&r, 13), "tool_output"), TESTS_OUT_END));
    assert_true(starts(sget(at(&r, 13), "tool_output"), "mkdir -p build\n"));
    expect_tool_use(at(&r, 14), "Bash", "toolu_01Wf3ZpL9cXn6RvT2dHk7MqA");
    assert_string_equal(arg(at(&r, 14), "command"), "git diff --stat");
    expect_tool_result(at(&r, 15), "Bash", "toolu_01Wf3ZpL9cXn6RvT2dHk7MqA", "completed");
    assert_string_equal(sget(at(&r, 15), "tool_output"),
                        " src/auth.c | 5 ++++-\n 1 file changed, 4 insertions(+), 1 deletion(-)");
    assert_true(starts(sget(at(&r, 16), "message"), "Fixed `auth_check_token` in `src/auth.c`."));
    expect_log(at(&r, 18), "info", "finished: success (9 turns, 41873 ms)");
    /* the agent's own token report (issue 15 item 3) */
    assert_string_equal(sget(at(&r, 17), "type"), "usage");
    assert_int_equal(iget(at(&r, 17), "input_tokens"), 83287);
    assert_int_equal(iget(at(&r, 17), "output_tokens"), 1312);
    assert_true(json_real_value(json_object_get(at(&r, 17), "cost_usd")) > 0.087);
    assert_null(json_object_get(at(&r, 1), "reasoning"));
    assert_null(json_object_get(at(&r, 2), "tool_execution_id")); /* a chat_message has none */
    assert_int_equal(r.settled_at, (long)fixture_count("claude-success.jsonl") - 1);
    assert_int_equal(r.oc, ADAPTER_SUCCEEDED);
    assert_int_equal(r.final, ADAPTER_SUCCEEDED);
    assert_int_equal(r.before_finish, json_array_size(r.ev)); /* finish adds nothing */
    run_free(&r);
}

static void test_claude_failure(void **state) {
    struct run r = run_fixture("claude", "claude-failure.jsonl", SIZE_MAX, 1);
    EXPECT_TYPES(&r, "log", "chat_message", "tool_use", "tool_result", "tool_use", "tool_result",
                 "usage", "log");
    expect_log(at(&r, 1), "info", "Let me open the auth module first.");
    expect_tool_use(at(&r, 2), "Read", "toolu_01Xa5Hb8Kc2Nd6Pe9Rf3Sg7T");
    assert_string_equal(arg(at(&r, 2), "file_path"), "/home/dev/authsvc/auth.c");
    expect_tool_result(at(&r, 3), "Read", "toolu_01Xa5Hb8Kc2Nd6Pe9Rf3Sg7T", "failed");
    assert_string_equal(sget(at(&r, 3), "tool_output"),
                        "<tool_use_error>File does not exist.</tool_use_error>");
    expect_tool_use(at(&r, 4), "Read", "toolu_01Jm4Qn7Vp1Wr5Ys8Zt2Bu6C");
    expect_tool_result(at(&r, 5), "Read", "toolu_01Jm4Qn7Vp1Wr5Ys8Zt2Bu6C", "completed");
    expect_log(at(&r, 7), "error", "failed: error_max_turns: Reached maximum number of turns (2)");
    assert_int_equal(r.settled_at, 6);
    assert_int_equal(r.oc, ADAPTER_FAILED);
    assert_int_equal(r.final, ADAPTER_FAILED);
    run_free(&r);
    /* The verdict is the stream's: exit code 0 does not rescue a failed result. */
    r = run_fixture("claude", "claude-failure.jsonl", SIZE_MAX, 0);
    assert_int_equal(r.final, ADAPTER_FAILED);
    run_free(&r);
}

/* 2.1.x has sent subtype "success" with is_error true; a result without subtype proves nothing. */
static void test_claude_result_is_error(void **state) {
    const struct agent_adapter *a = adapter_find("claude");
    char *lines[] = {
        "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,\"result\":\"Invalid API "
        "key\"}",
        "{\"type\":\"result\"}",
        "{\"type\":\"result\",\"subtype\":\"error_during_execution\",\"is_error\":true,"
        "\"errors\":[\"a\",\"b\"]}",
    };
    const char *msgs[] = {"failed: success: Invalid API key", "failed: result",
                          "failed: error_during_execution: a; b"};
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(lines[i]);
        struct run r = run_lines(a, &lines[i], &len, 1, 0);
        EXPECT_TYPES(&r, "log");
        expect_log(at(&r, 0), "error", msgs[i]);
        assert_int_equal(r.oc, ADAPTER_FAILED);
        assert_int_equal(r.final, ADAPTER_FAILED);
        run_free(&r);
    }
}

/* A Write that creates a file has an empty structuredPatch: every line of it is new. A user line
 * with two tool_results cannot tell whose tool_use_result it carries, so none is counted. */
static void test_claude_write_and_multi(void **state) {
    const struct agent_adapter *a = adapter_find("claude");
    char *lines[] = {
        "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\","
        "\"name\":\"Write\",\"input\":{\"file_path\":\"/w/new.c\",\"content\":\"a\\nb\\nc\"}},"
        "{\"type\":\"tool_use\",\"id\":\"t2\",\"name\":\"NotebookEdit\",\"input\":"
        "{\"notebook_path\":\"/w/n.ipynb\"}}]}}",
        "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
        "\"t1\",\"content\":[{\"type\":\"text\",\"text\":\"ok\"},{\"type\":\"image\"}]}]},"
        "\"tool_use_result\":{\"type\":\"create\",\"filePath\":\"/w/new.c\",\"content\":\"a\\nb\\n"
        "c\",\"structuredPatch\":[]}}",
        "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
        "\"t2\"},{\"type\":\"tool_result\",\"tool_use_id\":\"zz\",\"is_error\":true}]},"
        "\"tool_use_result\":{\"structuredPatch\":[{\"lines\":[\"+x\"]}]}}",
        "{\"type\":\"user\",\"message\":{\"content\":\"go on\"}}",
    };
    size_t len[4];
    for (size_t i = 0; i < 4; i++)
        len[i] = strlen(lines[i]);
    struct run r = run_lines(a, lines, len, 4, 0);
    EXPECT_TYPES(&r, "tool_use", "file_edit", "tool_use", "file_edit", "tool_result", "file_edit",
                 "tool_result", "file_edit", "tool_result", "log", "log");
    expect_tool_use(at(&r, 0), "Write", "t1");
    expect_file_edit(at(&r, 1), "/w/new.c", 0, 0, "started", "t1");
    expect_tool_use(at(&r, 2), "NotebookEdit", "t2");
    expect_file_edit(at(&r, 3), "/w/n.ipynb", 0, 0, "started", "t2");
    expect_tool_result(at(&r, 4), "Write", "t1", "completed");
    assert_string_equal(sget(at(&r, 4), "tool_output"), "ok\n[image]");
    expect_file_edit(at(&r, 5), "/w/new.c", 3, 0, "completed", "t1");
    expect_tool_result(at(&r, 6), "NotebookEdit", "t2", "completed");
    assert_string_equal(sget(at(&r, 6), "tool_output"), "");
    expect_file_edit(at(&r, 7), "/w/n.ipynb", 0, 0, "completed", "t2");
    expect_tool_result(at(&r, 8), "unknown", "zz", "failed");
    expect_log(at(&r, 9), "info", "user: go on");
    /* No result line: finish fails the run and says why. */
    expect_log_has(at(&r, 10), "error", "without a result message");
    assert_int_equal(r.final, ADAPTER_FAILED);
    run_free(&r);
}

/* A tool_use without input, a user text block (long enough to need the long log path), object
 * content, and a success result without its statistics. */
static void test_claude_odd_shapes(void **state) {
    char long_text[700];
    memset(long_text, 'q', 600);
    long_text[600] = '\0';
    char user[900];
    snprintf(user, sizeof(user),
             "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"%s\"},"
             "{\"type\":\"tool_result\",\"tool_use_id\":\"g\",\"content\":{\"k\":1}}]}}",
             long_text);
    char *lines[] = {
        "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"id\":\"g\","
        "\"name\":\"Glob\"}]}}",
        user,
        "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false}",
    };
    size_t len[] = {strlen(lines[0]), strlen(lines[1]), strlen(lines[2])};
    struct run r = run_lines(&adapter_claude, lines, len, 3, 0);
    EXPECT_TYPES(&r, "tool_use", "log", "tool_result", "log");
    expect_tool_use(at(&r, 0), "Glob", "g");
    assert_int_equal(json_object_size(json_object_get(at(&r, 0), "tool_args")), 0);
    assert_true(starts(sget(at(&r, 1), "message"), "user: qqqq"));
    assert_int_equal(strlen(sget(at(&r, 1), "message")), 606);
    expect_tool_result(at(&r, 2), "Glob", "g", "completed");
    assert_string_equal(sget(at(&r, 2), "tool_output"), "{\"k\":1}");
    expect_log(at(&r, 3), "info", "finished: success");
    assert_int_equal(r.final, ADAPTER_SUCCEEDED);
    run_free(&r);
}

/* ---- codex -------------------------------------------------------------------------------------
 */

static void test_codex_success(void **state) {
    struct run r = run_fixture("codex", "codex-success.jsonl", SIZE_MAX, 0);
    EXPECT_TYPES(&r, "log", "log", "log", "thought", "tool_use", "tool_result", "thought", "log",
                 "file_edit", "log", "thought", "tool_use", "tool_result", "tool_use",
                 "tool_result", "chat_message", "log", "usage", "log");
    expect_log(at(&r, 0), "info", "codex thread 019a7c3e-5b2d-7f41-9c8e-3d6a2b1f0e47 started");
    expect_log(at(&r, 1), "debug", "turn started");
    expect_log(at(&r, 2), "info",
               "plan:\n[ ] Inspect auth_check_token in src/auth.c\n[ ] Fix the length check\n"
               "[ ] Run make test");
    assert_true(starts(sget(at(&r, 3), "thought"), "**Locating the token comparison**\n\n"));
    expect_tool_use(at(&r, 4), "shell", "item_2");
    assert_string_equal(arg(at(&r, 4), "command"), "bash -lc \"sed -n '1,80p' src/auth.c\"");
    expect_tool_result(at(&r, 5), "shell", "item_2", "completed");
    assert_true(starts(sget(at(&r, 5), "tool_output"), "#include <stddef.h>\n"));
    expect_log(at(&r, 7), "info",
               "plan:\n[x] Inspect auth_check_token in src/auth.c\n[ ] Fix the length check\n"
               "[ ] Run make test");
    expect_file_edit(at(&r, 8), AUTH_C, 0, 0, "completed", "item_4");
    assert_string_equal(sget(at(&r, 8), "description"), "update");
    assert_string_equal(sget(at(&r, 10), "thought"), "**Running the unit tests**");
    expect_tool_use(at(&r, 11), "shell", "item_6");
    assert_string_equal(arg(at(&r, 11), "command"), "bash -lc 'make test'");
    expect_tool_result(at(&r, 12), "shell", "item_6", "completed");
    assert_true(ends(sget(at(&r, 12), "tool_output"), TESTS_OUT_END "\n"));
    expect_tool_use(at(&r, 13), "shell", "item_7");
    expect_tool_result(at(&r, 14), "shell", "item_7", "completed");
    assert_true(starts(sget(at(&r, 15), "message"), "Fixed `auth_check_token` in `src/auth.c`:"));
    expect_log(at(&r, 16), "info",
               "plan:\n[x] Inspect auth_check_token in src/auth.c\n[x] Fix the length check\n"
               "[x] Run make test");
    expect_log(at(&r, 18), "info", "finished: turn completed");
    /* the agent's own token report (issue 15 item 3) */
    assert_string_equal(sget(at(&r, 17), "type"), "usage");
    assert_int_equal(iget(at(&r, 17), "input_tokens"), 48211);
    assert_int_equal(iget(at(&r, 17), "output_tokens"), 1893);

    assert_int_equal(r.settled_at, (long)fixture_count("codex-success.jsonl") - 1);
    assert_int_equal(r.oc, ADAPTER_SUCCEEDED);
    assert_int_equal(r.final, ADAPTER_SUCCEEDED);
    assert_int_equal(r.before_finish, json_array_size(r.ev));
    run_free(&r);
}

static void test_codex_failure(void **state) {
    struct run r = run_fixture("codex", "codex-failure.jsonl", SIZE_MAX, 1);
    EXPECT_TYPES(&r, "log", "log", "thought", "tool_use", "tool_result", "log", "log", "log",
                 "log");
    assert_string_equal(sget(at(&r, 2), "thought"), "**Reading the auth module**");
    expect_tool_use(at(&r, 3), "shell", "item_1");
    expect_tool_result(at(&r, 4), "shell", "item_1", "completed");
    expect_log_has(at(&r, 5), "error", "Reconnecting... 1/5");
    expect_log_has(at(&r, 6), "error", "Reconnecting... 2/5");
    expect_log(at(&r, 7), "error",
               "stream disconnected before completion: error sending request for url "
               "(https://api.openai.com/v1/responses)");
    expect_log(at(&r, 8), "error",
               "failed: stream disconnected before completion: error sending request for url "
               "(https://api.openai.com/v1/responses)");
    assert_int_equal(r.settled_at, 8); /* the error events before it do not end the run */
    assert_int_equal(r.oc, ADAPTER_FAILED);
    assert_int_equal(r.final, ADAPTER_FAILED);
    run_free(&r);
}

/* Failed and declined commands, non-zero exit codes, an MCP call, a web search and a file_change
 * with a diff; a completed command whose start was never seen still gets its tool_use. */
static void test_codex_items(void **state) {
    const struct agent_adapter *a = adapter_find("codex");
    char *lines[] = {
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"c1\",\"type\":\"command_execution\","
        "\"command\":\"false\",\"aggregated_output\":\"\",\"exit_code\":1,\"status\":\"failed\"}}",
        "{\"type\":\"item.started\",\"item\":{\"id\":\"c2\",\"type\":\"command_execution\","
        "\"command\":\"ls\",\"status\":\"in_progress\"}}",
        "{\"type\":\"item.updated\",\"item\":{\"id\":\"c2\",\"type\":\"command_execution\","
        "\"command\":\"ls\",\"status\":\"in_progress\"}}",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"c2\",\"type\":\"command_execution\","
        "\"command\":\"ls\",\"aggregated_output\":\"a\\n\",\"exit_code\":null,\"status\":"
        "\"completed\"}}",
        "{\"type\":\"item.started\",\"item\":{\"id\":\"m1\",\"type\":\"mcp_tool_call\",\"server\":"
        "\"gh\",\"tool\":\"search\",\"arguments\":{\"q\":\"x\"},\"status\":\"in_progress\"}}",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"m1\",\"type\":\"mcp_tool_call\","
        "\"server\":\"gh\",\"tool\":\"search\",\"arguments\":{\"q\":\"x\"},\"result\":{\"content\":"
        "[{\"type\":\"text\",\"text\":\"3 hits\"}],\"structured_content\":null},\"error\":null,"
        "\"status\":\"completed\"}}",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"m2\",\"type\":\"mcp_tool_call\","
        "\"tool\":\"t\",\"arguments\":\"raw\",\"result\":null,\"error\":{\"message\":\"denied\"},"
        "\"status\":\"failed\"}}",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"w1\",\"type\":\"web_search\",\"query\":"
        "\"jansson\"}}",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"m3\",\"type\":\"mcp_tool_call\","
        "\"server\":\"s\",\"tool\":\"t\",\"arguments\":null,\"result\":{\"content\":[],"
        "\"structured_content\":{\"n\":1}},\"error\":null,\"status\":\"completed\"}}",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"f1\",\"type\":\"file_change\",\"changes\":"
        "[{\"path\":\"/w/a.c\",\"kind\":\"update\",\"diff\":\"@@ -1,2 +1,3 @@\\n-x\\n+y\\n+z\\n "
        "k\\n\"},{\"kind\":\"add\"}],\"status\":\"failed\"}}",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"e1\",\"type\":\"error\",\"message\":"
        "\"model overloaded\"}}",
        "{\"type\":\"item.started\",\"item\":{\"id\":\"r1\",\"type\":\"reasoning\",\"text\":\"\"}}",
        "{\"type\":\"item.started\",\"item\":{\"id\":\"x9\",\"type\":\"command_execution\","
        "\"command\":\"sleep 9\"}}",
    };
    size_t n = sizeof(lines) / sizeof(lines[0]), len[sizeof(lines) / sizeof(lines[0])];
    for (size_t i = 0; i < n; i++)
        len[i] = strlen(lines[i]);
    struct run r = run_lines(a, lines, len, n, 0);
    EXPECT_TYPES(&r, "tool_use", "tool_result", "tool_use", "tool_result", "tool_use",
                 "tool_result", "tool_use", "tool_result", "tool_use", "tool_result", "tool_use",
                 "tool_result", "file_edit", "log", "log", "tool_use", "tool_result", "log");
    expect_tool_use(at(&r, 0), "shell", "c1");
    expect_tool_result(at(&r, 1), "shell", "c1", "failed");
    expect_tool_use(at(&r, 2), "shell", "c2");              /* once, despite item.updated */
    expect_tool_result(at(&r, 3), "shell", "c2", "failed"); /* exit_code null */
    expect_tool_use(at(&r, 4), "gh.search", "m1");
    assert_string_equal(arg(at(&r, 4), "q"), "x");
    expect_tool_result(at(&r, 5), "gh.search", "m1", "completed");
    assert_string_equal(sget(at(&r, 5), "tool_output"), "3 hits");
    expect_tool_use(at(&r, 6), "t", "m2");
    assert_string_equal(arg(at(&r, 6), "value"), "raw");
    expect_tool_result(at(&r, 7), "t", "m2", "failed");
    assert_string_equal(sget(at(&r, 7), "tool_output"), "denied");
    expect_tool_use(at(&r, 8), "web_search", "w1");
    assert_string_equal(arg(at(&r, 8), "query"), "jansson");
    expect_tool_result(at(&r, 9), "web_search", "w1", "completed");
    expect_tool_use(at(&r, 10), "s.t", "m3");
    assert_int_equal(json_object_size(json_object_get(at(&r, 10), "tool_args")), 0);
    expect_tool_result(at(&r, 11), "s.t", "m3", "completed");
    assert_string_equal(sget(at(&r, 11), "tool_output"), "{\"n\":1}");
    expect_file_edit(at(&r, 12), "/w/a.c", 2, 1, "failed", "f1");
    assert_string_equal(sget(at(&r, 12), "description"), "update");
    expect_log(at(&r, 13), "info", "{\"kind\":\"add\"}"); /* the change without a path */
    expect_log(at(&r, 14), "warn", "model overloaded");
    /* finish: the command still running gets a failed result, then the missing turn end. */
    expect_tool_use(at(&r, 15), "shell", "x9");
    expect_tool_result(at(&r, 16), "shell", "x9", "failed");
    expect_log_has(at(&r, 17), "error", "without turn.completed or turn.failed");
    assert_int_equal(r.final, ADAPTER_FAILED);
    run_free(&r);
    /* "completed" is not enough: the exit code must be 0 too. */
    char *exit2 = "{\"type\":\"item.completed\",\"item\":{\"id\":\"c3\",\"type\":"
                  "\"command_execution\",\"command\":\"make\",\"aggregated_output\":\"boom\","
                  "\"exit_code\":2,\"status\":\"completed\"}}";
    size_t elen = strlen(exit2);
    r = run_lines(a, &exit2, &elen, 1, 0);
    expect_tool_result(at(&r, 1), "shell", "c3", "failed");
    assert_string_equal(sget(at(&r, 1), "tool_output"), "boom");
    run_free(&r);
}

/* ---- gemini ------------------------------------------------------------------------------------
 */

static void test_gemini_success(void **state) {
    struct run r = run_fixture("gemini-cli", "gemini-success.jsonl", SIZE_MAX, 0);
    EXPECT_TYPES(&r, "log", "log", "chat_message", "tool_use", "tool_use", "tool_result",
                 "tool_result", "chat_message", "tool_use", "file_edit", "tool_result", "file_edit",
                 "tool_use", "tool_result", "chat_message", "log");
    expect_log(
        at(&r, 0), "info",
        "gemini session 8f0c6d2e-3b7a-4e91-a5d4-1c9b7e2f6a30 started (model gemini-2.5-pro)");
    expect_log(at(&r, 1), "info",
               "user: Fix the bug in src/auth.c: auth_check_token accepts an empty token or any "
               "prefix of the real token. Then run make test.");
    expect_log(at(&r, 2), "info",
               "I'll find where `auth_check_token` is used and read its implementation.");
    expect_tool_use(at(&r, 3), "grep_search", "grep_search_1774347305064_0");
    assert_string_equal(arg(at(&r, 3), "pattern"), "auth_check_token");
    expect_tool_use(at(&r, 4), "read_file", "read_file_1774347305065_1");
    expect_tool_result(at(&r, 5), "grep_search", "grep_search_1774347305064_0", "completed");
    assert_string_equal(sget(at(&r, 5), "tool_output"), "Found 4 matches");
    expect_tool_result(at(&r, 6), "read_file", "read_file_1774347305065_1", "completed");
    assert_string_equal(sget(at(&r, 6), "tool_output"), "");
    /* Two delta chunks, one message. */
    expect_log(at(&r, 7), "info",
               "The compare is bounded by `strlen(given)`, so an empty token or any prefix of the "
               "stored token compares equal. I'll require equal lengths and compare the whole "
               "buffer.");
    expect_tool_use(at(&r, 8), "replace", "replace_1774347311954_0");
    expect_file_edit(at(&r, 9), AUTH_C, 0, 0, "started", "replace_1774347311954_0");
    expect_tool_result(at(&r, 10), "replace", "replace_1774347311954_0", "completed");
    expect_file_edit(at(&r, 11), AUTH_C, 0, 0, "completed", "replace_1774347311954_0");
    expect_tool_use(at(&r, 12), "run_shell_command", "run_shell_command_1774347316324_0");
    assert_string_equal(arg(at(&r, 12), "command"), "make test");
    expect_tool_result(at(&r, 13), "run_shell_command", "run_shell_command_1774347316324_0",
                       "completed");
    assert_true(ends(sget(at(&r, 13), "tool_output"), TESTS_OUT_END));
    expect_log(at(&r, 14), "info",
               "All 6 tests pass. `auth_check_token` now returns 0 when the lengths differ and "
               "compares the full token with `memcmp`, so empty and prefix tokens are rejected.");
    expect_log(at(&r, 15), "info", "finished: success (19801 ms, 4 tool calls)");
    assert_int_equal(r.settled_at, (long)fixture_count("gemini-success.jsonl") - 1);
    assert_int_equal(r.final, ADAPTER_SUCCEEDED);
    assert_int_equal(r.before_finish, json_array_size(r.ev));
    run_free(&r);
}

static void test_gemini_failure(void **state) {
    struct run r = run_fixture("gemini", "gemini-failure.jsonl", SIZE_MAX, 1);
    EXPECT_TYPES(&r, "log", "log", "chat_message", "tool_use", "file_edit", "tool_result",
                 "file_edit", "log");
    expect_log(at(&r, 2), "info", "I'll tighten the comparison in `src/auth.c`.");
    expect_tool_use(at(&r, 3), "replace", "replace_1774350164626_0");
    expect_file_edit(at(&r, 4), AUTH_C, 0, 0, "started", "replace_1774350164626_0");
    expect_tool_result(at(&r, 5), "replace", "replace_1774350164626_0", "failed");
    assert_true(starts(sget(at(&r, 5), "tool_output"),
                       "Failed to edit, 0 occurrences found for old_string"));
    expect_file_edit(at(&r, 6), AUTH_C, 0, 0, "failed", "replace_1774350164626_0");
    expect_log(at(&r, 7), "error",
               "failed: ApiError: [API Error: Quota exceeded for requests per minute on "
               "gemini-2.5-pro. (Status: RESOURCE_EXHAUSTED)]");
    assert_int_equal(r.settled_at, 5);
    assert_int_equal(r.oc, ADAPTER_FAILED);
    assert_int_equal(r.final, ADAPTER_FAILED);
    run_free(&r);
}

/* Deltas past ADAPTER_TEXT_MAX are counted, not kept; an error line ends the message too. */
static void test_gemini_deltas(void **state) {
    const struct agent_adapter *a = adapter_find("gemini");
    size_t chunk = 100 * 1024;
    char *big = malloc(chunk + 100);
    assert_non_null(big);
    int k = snprintf(big, 100,
                     "{\"type\":\"message\",\"role\":\"assistant\",\"delta\":true,"
                     "\"content\":\"");
    memset(big + k, 'y', chunk);
    memcpy(big + k + chunk, "\"}", 3);
    char *lines[] = {big, big, "{\"type\":\"error\",\"severity\":\"warning\",\"message\":\"loop\"}",
                     "{\"type\":\"message\",\"role\":\"assistant\",\"content\":\"whole\"}",
                     "{\"type\":\"message\",\"role\":\"assistant\",\"delta\":true,\"content\":"
                     "\"tail\"}"};
    size_t len[5];
    for (size_t i = 0; i < 5; i++)
        len[i] = strlen(lines[i]);
    struct run r = run_lines(a, lines, len, 5, 0);
    EXPECT_TYPES(&r, "chat_message", "log", "chat_message", "chat_message", "log");
    const char *m = sget(at(&r, 0), "message");
    assert_true(strlen(m) <= ADAPTER_TEXT_MAX + 64);
    assert_true(starts(m, "yyyy"));
    assert_true(ends(m, "\n[truncated: 204800 bytes in all]"));
    expect_log(at(&r, 1), "warn", "loop");
    expect_log(at(&r, 2), "info", "whole");
    expect_log(at(&r, 3), "info", "tail"); /* flushed by finish */
    expect_log_has(at(&r, 4), "error", "without a result");
    assert_int_equal(r.final, ADAPTER_FAILED);
    run_free(&r);
    free(big);
    char *result = "{\"type\":\"result\",\"status\":\"success\"}";
    size_t rlen = strlen(result);
    r = run_lines(a, &result, &rlen, 1, 0);
    EXPECT_TYPES(&r, "log");
    expect_log(at(&r, 0), "info", "finished: success");
    assert_int_equal(r.final, ADAPTER_SUCCEEDED);
    run_free(&r);
}

/* ---- opencode ----------------------------------------------------------------------------------
 */

static void test_opencode_success(void **state) {
    struct run r = run_fixture("opencode", "opencode-success.jsonl", SIZE_MAX, 0);
    EXPECT_TYPES(&r, "log", "thought", "chat_message", "tool_use", "tool_result", "log", "log",
                 "thought", "tool_use", "tool_result", "file_edit", "log", "log", "tool_use",
                 "tool_result", "log", "log", "chat_message", "log");
    expect_log(at(&r, 0), "debug", "step started");
    assert_true(starts(sget(at(&r, 1), "thought"), "Prefix tokens are accepted"));
    expect_log(at(&r, 2), "info", "I'll check how the token comparison works in src/auth.c.");
    expect_tool_use(at(&r, 3), "read", "toolu_01Sx4Bn8Hq2Lw6Tc9Vr3Mk7P");
    assert_string_equal(arg(at(&r, 3), "filePath"), AUTH_C);
    expect_tool_result(at(&r, 4), "read", "toolu_01Sx4Bn8Hq2Lw6Tc9Vr3Mk7P", "completed");
    assert_true(starts(sget(at(&r, 4), "tool_output"), "<path>" AUTH_C "</path>\n"));
    expect_log(at(&r, 5), "debug", "step finished: tool-calls");
    expect_tool_use(at(&r, 8), "edit", "toolu_01Hd7Kq3Wn9Rb2Vs6Lt4Fc8X");
    assert_string_equal(arg(at(&r, 8), "oldString"),
                        "    return strncmp(given, expected, strlen(given)) == 0;");
    expect_tool_result(at(&r, 9), "edit", "toolu_01Hd7Kq3Wn9Rb2Vs6Lt4Fc8X", "completed");
    assert_string_equal(sget(at(&r, 9), "tool_output"), "Edit applied successfully.");
    expect_file_edit(at(&r, 10), AUTH_C, 4, 1, "completed", "toolu_01Hd7Kq3Wn9Rb2Vs6Lt4Fc8X");
    expect_tool_use(at(&r, 13), "bash", "toolu_01Ny2Pk6Tb0Wc4Xd8Qe3Rf7G");
    assert_string_equal(arg(at(&r, 13), "command"), "make test");
    expect_tool_result(at(&r, 14), "bash", "toolu_01Ny2Pk6Tb0Wc4Xd8Qe3Rf7G", "completed");
    assert_true(ends(sget(at(&r, 14), "tool_output"), TESTS_OUT_END "\n"));
    assert_true(starts(sget(at(&r, 17), "message"), "Fixed `auth_check_token` in `src/auth.c`:"));
    expect_log(at(&r, 18), "info", "step finished: stop");
    assert_int_equal(r.settled_at, (long)fixture_count("opencode-success.jsonl") - 1);
    assert_int_equal(r.oc, ADAPTER_SUCCEEDED);
    assert_int_equal(r.final, ADAPTER_SUCCEEDED);
    assert_int_equal(r.before_finish, json_array_size(r.ev));
    run_free(&r);
}

static void test_opencode_failure(void **state) {
    struct run r = run_fixture("opencode", "opencode-failure.jsonl", SIZE_MAX, 1);
    EXPECT_TYPES(&r, "log", "chat_message", "tool_use", "tool_result", "file_edit", "log", "log",
                 "log");
    expect_log(at(&r, 1), "info", "I'll make the comparison cover the whole token.");
    expect_tool_use(at(&r, 2), "edit", "toolu_01Vb5Nc8Md2Qe6Rf9Sg3Th7J");
    expect_tool_result(at(&r, 3), "edit", "toolu_01Vb5Nc8Md2Qe6Rf9Sg3Th7J", "failed");
    assert_true(starts(sget(at(&r, 3), "tool_output"), "Error: Could not find oldString"));
    expect_file_edit(at(&r, 4), AUTH_C, 0, 0, "failed", "toolu_01Vb5Nc8Md2Qe6Rf9Sg3Th7J");
    expect_log(at(&r, 5), "debug", "step finished: tool-calls");
    expect_log(at(&r, 7), "error",
               "failed: APIError: Your credit balance is too low to access the Anthropic API.");
    assert_int_equal(r.settled_at, 5);
    assert_int_equal(r.oc, ADAPTER_FAILED);
    assert_int_equal(r.final, ADAPTER_FAILED);
    run_free(&r);
}

/* After "stop" the agent went on: the verdict is open again. A later error is final. A running
 * tool reported before its result is announced once. Counts fall back to the diff text. */
static void test_opencode_reopen(void **state) {
    const struct agent_adapter *a = adapter_find("opencode");
    char *stop =
        "{\"type\":\"step_finish\",\"part\":{\"type\":\"step-finish\",\"reason\":\"stop\"}}";
    char *step = "{\"type\":\"step_start\",\"part\":{\"type\":\"step-start\"}}";
    char *done = "{\"type\":\"done\",\"reason\":\"idle\"}";
    char *running =
        "{\"type\":\"tool_use\",\"part\":{\"callID\":\"c\",\"tool\":\"write\",\"state\":"
        "{\"status\":\"running\",\"input\":{\"filePath\":\"/w/b\"}}}}";
    char *written =
        "{\"type\":\"tool_use\",\"part\":{\"callID\":\"c\",\"tool\":\"write\",\"state\":"
        "{\"status\":\"completed\",\"input\":{\"filePath\":\"/w/b\"},\"output\":\"\","
        "\"metadata\":{\"diff\":\"--- a\\n+++ b\\n@@ -0,0 +1,2 @@\\n+1\\n+2\\n\"}}}}";
    char *error = "{\"type\":\"error\",\"error\":{\"name\":\"UnknownError\"}}";
    {
        char *lines[] = {stop, step};
        size_t len[] = {strlen(stop), strlen(step)};
        struct run r = run_lines(a, lines, len, 2, 0);
        assert_int_equal(r.oc, ADAPTER_RUNNING);
        assert_int_equal(r.final, ADAPTER_FAILED);
        expect_log_has(at(&r, 2), "error", "without a final step_finish with reason stop");
        run_free(&r);
    }
    {
        char *lines[] = {running, running, written, stop, done};
        size_t len[] = {strlen(running), strlen(running), strlen(written), strlen(stop),
                        strlen(done)};
        struct run r = run_lines(a, lines, len, 5, 0);
        EXPECT_TYPES(&r, "tool_use", "tool_result", "file_edit", "log", "log");
        expect_tool_use(at(&r, 0), "write", "c");
        expect_tool_result(at(&r, 1), "write", "c", "completed");
        expect_file_edit(at(&r, 2), "/w/b", 2, 0, "completed", "c");
        expect_log(at(&r, 4), "info", done); /* unknown: logged, and no reopening */
        assert_int_equal(r.oc, ADAPTER_SUCCEEDED);
        assert_int_equal(r.final, ADAPTER_SUCCEEDED);
        run_free(&r);
    }
    {
        char *edit = "{\"type\":\"tool_use\",\"part\":{\"callID\":\"e\",\"tool\":\"patch\","
                     "\"state\":{\"status\":\"completed\",\"input\":{\"patchText\":\"…\"},"
                     "\"output\":\"ok\",\"metadata\":{\"filediff\":{\"file\":\"/w/c\","
                     "\"additions\":1,\"deletions\":2}}}}}";
        size_t len = strlen(edit);
        struct run r = run_lines(a, &edit, &len, 1, 0);
        EXPECT_TYPES(&r, "tool_use", "tool_result", "file_edit", "log");
        expect_file_edit(at(&r, 2), "/w/c", 1, 2, "completed", "e");
        run_free(&r);
    }
    {
        char *lines[] = {error, stop};
        size_t len[] = {strlen(error), strlen(stop)};
        struct run r = run_lines(a, lines, len, 2, 0);
        expect_log(at(&r, 0), "error", "failed: UnknownError");
        assert_int_equal(r.oc, ADAPTER_FAILED);
        assert_int_equal(r.final, ADAPTER_FAILED);
        run_free(&r);
    }
}

/* ---- truncated streams and exit codes ----------------------------------------------------------
 */

static void test_truncated(void **state) {
    static const struct {
        const char *adapter, *file, *why;
    } cases[] = {
        {"claude", "claude-success.jsonl", "without a result message"},
        {"codex", "codex-success.jsonl", "without turn.completed or turn.failed"},
        {"gemini", "gemini-success.jsonl", "without a result"},
        {"opencode", "opencode-success.jsonl", "without a final step_finish with reason stop"},
    };
    for (size_t i = 0; i < 4; i++) {
        size_t n = fixture_count(cases[i].file);
        /* Every prefix of a successful stream is a failed run, whatever the exit code. */
        for (size_t keep = 0; keep < n; keep++) {
            struct run r = run_fixture(cases[i].adapter, cases[i].file, keep, 0);
            assert_int_equal(r.oc, ADAPTER_RUNNING);
            assert_int_equal(r.final, ADAPTER_FAILED);
            expect_log_has(at(&r, json_array_size(r.ev) - 1), "error", cases[i].why);
            run_free(&r);
        }
        /* The whole stream with a non-zero exit: the process has the last word. */
        struct run r = run_fixture(cases[i].adapter, cases[i].file, SIZE_MAX, 3);
        assert_int_equal(r.oc, ADAPTER_SUCCEEDED);
        assert_int_equal(r.final, ADAPTER_FAILED);
        expect_log(at(&r, json_array_size(r.ev) - 1), "error",
                   "the agent reported success but exited with code 3");
        run_free(&r);
    }
    /* Cut in the middle of a tool: the tool is closed as failed before the run fails. */
    struct run r = run_fixture("claude", "claude-success.jsonl", 11, 137);
    assert_int_equal(json_array_size(r.ev), r.before_finish + 2);
    expect_tool_result(at(&r, r.before_finish), "Bash", "toolu_01Bd4GtY7mKr1VsQ8nJx5HwE", "failed");
    expect_log(at(&r, r.before_finish + 1), "error",
               "the stream ended without a result message (exit code 137)");
    run_free(&r);
    r = run_fixture("claude", "claude-success.jsonl", 8, 0); /* after the Edit's tool_use */
    assert_int_equal(json_array_size(r.ev), r.before_finish + 3);
    expect_tool_result(at(&r, r.before_finish), "Edit", "toolu_01Ls8FvN2yHq6WcZ3kTe9PxR", "failed");
    expect_file_edit(at(&r, r.before_finish + 1), AUTH_C, 0, 0, "failed",
                     "toolu_01Ls8FvN2yHq6WcZ3kTe9PxR");
    run_free(&r);
    r = run_fixture("gemini", "gemini-success.jsonl", 15, 0); /* before the result */
    expect_log(at(&r, r.before_finish), "info",
               "All 6 tests pass. `auth_check_token` now returns 0 when the lengths differ and "
               "compares the full token with `memcmp`, so empty and prefix tokens are rejected.");
    run_free(&r);
}

/* ---- hostile input -----------------------------------------------------------------------------
 */

/* Feeds one line to a fresh state and expects exactly one log event and no verdict. Returns the
 * message (owned by the caller). */
static char *one_log(const struct agent_adapter *a, const char *line, size_t len) {
    json_t *out = json_array();
    void *st = a->state_new();
    enum adapter_outcome oc = ADAPTER_RUNNING;
    assert_int_equal(a->line(st, line, len, out, &oc), 0);
    a->state_free(st);
    if (json_array_size(out) != 1 ||
        strcmp(json_string_value(json_object_get(json_array_get(out, 0), "type")), "log") != 0) {
        char *d = dump(out);
        fail_msg("%s: '%.300s' gave %.1000s", a->type, line, d);
    }
    check_event(json_array_get(out, 0));
    assert_int_equal(oc, ADAPTER_RUNNING);
    char *m = strdup(json_string_value(json_object_get(json_array_get(out, 0), "message")));
    json_decref(out);
    return m;
}

static const struct agent_adapter *const every[] = {
    &adapter_claude, &adapter_codex, &adapter_gemini, &adapter_opencode, &adapter_custom_jsonl,
};

static void test_hostile_generic(void **state) {
    static const char *const plain[] = {
        "not json",
        "[1,2,3]",
        "42",
        "\"a string\"",
        "null",
        "true",
        "{}",
        "{\"type\":5}",
        "{\"type\":null}",
        "{\"type\":\"nonsense\"}",
        "{\"type\":\"result\"",
        "{\"type\":\"result\"} trailing",
        "{\"type\":\"x\",\"type\":\"y\"}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\\ud800\"}",
    };
    for (size_t k = 0; k < sizeof(every) / sizeof(every[0]); k++) {
        const struct agent_adapter *a = every[k];
        for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
            char *m = one_log(a, plain[i], strlen(plain[i]));
            assert_string_equal(m, plain[i]);
            free(m);
        }
        /* Invalid UTF-8 and NUL bytes are repaired, not passed on and not refused. */
        char *m = one_log(a, "\xff\xfe{\"type\":\"x\"}\xc0\xaf", 16);
        assert_string_equal(m, "\xef\xbf\xbd\xef\xbf\xbd{\"type\":\"x\"}\xef\xbf\xbd\xef\xbf\xbd");
        free(m);
        static const char multi[] = "\xe0\xa0\x80 \xf0\x9f\x98\x80 \xf3\xa0\x80\x80 \xc3\xa9";
        m = one_log(a, multi, sizeof(multi) - 1); /* valid: untouched */
        assert_string_equal(m, multi);
        free(m);
        m = one_log(a, "\xe0\x80\x80\xf0\x80\x80\x80", 7); /* overlong forms */
        assert_string_equal(m, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                               "\xef\xbf\xbd\xef\xbf\xbd");
        free(m);
        m = one_log(a, "ab\0cd\r", 6);
        assert_string_equal(m, "ab\xef\xbf\xbd"
                               "cd");
        free(m);
        m = one_log(a, "\xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82", 11); /* surrogate, >U+10FFFF */
        assert_string_equal(m, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd"
                               "\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd");
        free(m);
        /* Blank lines carry nothing. */
        json_t *out = json_array();
        void *st = a->state_new();
        enum adapter_outcome oc = ADAPTER_RUNNING;
        assert_int_equal(a->line(st, "", 0, out, &oc), 0);
        assert_int_equal(a->line(st, "  \t\r", 4, out, &oc), 0);
        assert_int_equal(json_array_size(out), 0);
        a->state_free(st);
        json_decref(out);
    }
}

static void test_hostile_big(void **state) {
    size_t mib = 1024 * 1024;
    char *buf = malloc(mib + 256);
    assert_non_null(buf);
    /* 1 MiB of garbage: one log, cut to the cap, saying how much there was. */
    memset(buf, 'a', mib);
    for (size_t k = 0; k < sizeof(every) / sizeof(every[0]); k++) {
        char *m = one_log(every[k], buf, mib);
        assert_true(strlen(m) <= ADAPTER_TEXT_MAX + 64);
        assert_true(starts(m, "aaaa"));
        assert_true(ends(m, "\n[truncated: 1048576 bytes in all]"));
        free(m);
    }
    /* 1 MiB of nesting: refused before jansson recurses. */
    memset(buf, '[', mib / 2);
    memset(buf + mib / 2, ']', mib / 2);
    for (size_t k = 0; k < sizeof(every) / sizeof(every[0]); k++)
        free(one_log(every[k], buf, mib));
    /* Nesting past the limit inside a line that would otherwise map. */
    int n = snprintf(buf, 256,
                     "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":"
                     "\"text\",\"text\":\"x\",\"deep\":");
    for (int i = 0; i < 70; i++)
        buf[n++] = '[';
    for (int i = 0; i < 70; i++)
        buf[n++] = ']';
    memcpy(buf + n, "}]}}", 5);
    free(one_log(&adapter_claude, buf, strlen(buf)));
    /* A multi-byte character is never split by the cut. */
    size_t eacute = 40000;
    for (size_t i = 0; i < eacute; i++)
        memcpy(buf + 2 * i, "\xc3\xa9", 2);
    char *m = one_log(&adapter_custom_text, buf, 2 * eacute);
    assert_true(strlen(m) <= ADAPTER_TEXT_MAX + 64);
    assert_true(ends(m, "\xc3\xa9\n[truncated: 80000 bytes in all]"));
    free(m);
    free(buf);
}

/* A line of `fmt` with `%s` replaced by 1 MiB of 'x'. */
static char *with_mib(const char *fmt, size_t *ret_len) {
    size_t mib = 1024 * 1024;
    const char *hole = strstr(fmt, "%s");
    size_t pre = (size_t)(hole - fmt), post = strlen(hole + 2);
    char *s = malloc(pre + mib + post + 1);
    assert_non_null(s);
    memcpy(s, fmt, pre);
    memset(s + pre, 'x', mib);
    memcpy(s + pre + mib, hole + 2, post + 1);
    *ret_len = pre + mib + post;
    return s;
}

/* Valid lines with 1 MiB in them still map; the big text is cut with a marker. */
static void test_hostile_big_fields(void **state) {
    static const struct {
        const char *adapter;
        const char *lines[2];
        size_t event;    /* the event holding the big text */
        const char *key; /* its member */
    } cases[] = {
        {"claude",
         {"{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\","
          "\"name\":\"Bash\",\"input\":{\"command\":\"cat\"}}]}}",
          "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
          "\"t\",\"content\":\"%s\"}]}}"},
         1,
         "tool_output"},
        {"claude",
         {"{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"thinking\",\"thinking\":"
          "\"%s\"}]}}",
          NULL},
         0,
         "thought"},
        {"codex",
         {"{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"command_execution\","
          "\"command\":\"cat\",\"aggregated_output\":\"%s\",\"exit_code\":0,\"status\":"
          "\"completed\"}}",
          NULL},
         1,
         "tool_output"},
        {"gemini",
         {"{\"type\":\"tool_result\",\"tool_id\":\"t\",\"status\":\"success\",\"output\":\"%s\"}",
          NULL},
         0,
         "tool_output"},
        {"opencode",
         {"{\"type\":\"tool_use\",\"part\":{\"callID\":\"c\",\"tool\":\"bash\",\"state\":{"
          "\"status\":\"completed\",\"input\":{},\"output\":\"%s\"}}}",
          NULL},
         1,
         "tool_output"},
        {"opencode", {"{\"type\":\"text\",\"part\":{\"text\":\"%s\"}}", NULL}, 0, "message"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *lines[2];
        size_t len[2], n = 0;
        for (; n < 2 && cases[i].lines[n]; n++) {
            if (strstr(cases[i].lines[n], "%s")) {
                lines[n] = with_mib(cases[i].lines[n], &len[n]);
            } else {
                lines[n] = strdup(cases[i].lines[n]);
                len[n] = strlen(lines[n]);
            }
        }
        struct run r = run_lines(adapter_find(cases[i].adapter), lines, len, n, 0);
        const char *text = sget(at(&r, cases[i].event), cases[i].key);
        assert_true(strlen(text) <= ADAPTER_TEXT_MAX + 64);
        assert_true(starts(text, "xxxx"));
        assert_true(ends(text, "\n[truncated: 1048576 bytes in all]"));
        run_free(&r);
        for (size_t k = 0; k < n; k++)
            free(lines[k]);
    }
    /* Oversized tool_args keep their small members; huge ones are cut or summarised. */
    size_t len;
    char *line =
        with_mib("{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\","
                 "\"id\":\"w\",\"name\":\"Write\",\"input\":{\"file_path\":\"/w/big\","
                 "\"content\":\"%s\",\"list\":[1,2],\"nested\":{\"a\":\"b\"}}}]}}",
                 &len);
    struct run r = run_lines(&adapter_claude, &line, &len, 1, 0);
    EXPECT_TYPES(&r, "tool_use", "file_edit", "tool_result", "file_edit", "log");
    const json_t *args = json_object_get(at(&r, 0), "tool_args");
    assert_string_equal(sget(args, "file_path"), "/w/big");
    assert_true(json_string_length(json_object_get(args, "content")) <= ADAPTER_ARG_VALUE_MAX + 64);
    assert_true(ends(sget(args, "content"), "[truncated: 1048576 bytes in all]"));
    assert_int_equal(json_array_size(json_object_get(args, "list")), 2);
    assert_string_equal(sget(json_object_get(args, "nested"), "a"), "b");
    expect_file_edit(at(&r, 1), "/w/big", 0, 0, "started", "w");
    run_free(&r);
    free(line);
    /* Many keys: only the size survives. */
    struct ah_buf b = {0};
    assert_int_equal(ah_buf_puts(&b, "{\"type\":\"tool_use\",\"tool_name\":\"t\",\"tool_id\":\"i\","
                                     "\"parameters\":{"),
                     0);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(ah_buf_printf(&b, "%s\"k%d\":%d", i ? "," : "", i, i), 0);
    assert_int_equal(ah_buf_puts(&b, "}}"), 0);
    r = run_lines(&adapter_gemini, &b.p, &b.n, 1, 0);
    args = json_object_get(at(&r, 0), "tool_args");
    assert_true(json_is_true(json_object_get(args, "truncated")));
    assert_true(iget(args, "bytes") > ADAPTER_ARGS_MAX);
    run_free(&r);
    ah_buf_clear(&b);
}

/* Known record types with members missing or of the wrong type: one log, no guesses. */
static void test_hostile_missing(void **state) {
    static const struct {
        const char *adapter, *line;
    } cases[] = {
        {"claude", "{\"type\":\"assistant\"}"},
        {"claude", "{\"type\":\"assistant\",\"message\":null}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":[]}}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":\"hi\"}}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\"}]}}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\","
                   "\"id\":\"x\"}]}}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\","
                   "\"name\":\"Read\"}]}}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\","
                   "\"id\":5,\"name\":\"Read\"}]}}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\","
                   "\"id\":\"\",\"name\":\"Read\"}]}}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"thinking\"}]}}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\","
                   "\"text\":7}]}}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":[{}]}}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":[42]}}"},
        {"claude", "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":"
                   "\"redacted_thinking\",\"data\":\"x\"}]}}"},
        {"claude", "{\"type\":\"user\"}"},
        {"claude", "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\"}]}}"},
        {"claude", "{\"type\":\"user\",\"message\":{\"content\":[7]}}"},
        {"claude", "{\"type\":\"system\"}"},
        {"claude", "{\"type\":\"system\",\"subtype\":\"hook_started\"}"},
        {"claude", "{\"type\":\"rate_limit_event\"}"},
        {"codex", "{\"type\":\"item.started\"}"},
        {"codex", "{\"type\":\"item.completed\",\"item\":{}}"},
        {"codex", "{\"type\":\"item.completed\",\"item\":[]}"},
        {"codex", "{\"type\":\"item.completed\",\"item\":{\"type\":\"reasoning\",\"text\":\"t\"}}"},
        {"codex", "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\"}}"},
        {"codex", "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"reasoning\"}}"},
        {"codex", "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"agent_message\","
                  "\"text\":5}}"},
        {"codex", "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"file_change\"}}"},
        {"codex", "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"file_change\","
                  "\"changes\":[]}}"},
        {"codex", "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"todo_list\"}}"},
        {"codex", "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"error\"}}"},
        {"codex", "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":"
                  "\"collab_tool_call\"}}"},
        {"codex", "{\"type\":\"item.exploded\",\"item\":{\"id\":\"i\",\"type\":\"reasoning\"}}"},
        {"codex", "{\"type\":\"error\"}"},
        {"codex", "{\"type\":\"item.plan.delta\"}"},
        {"gemini", "{\"type\":\"message\"}"},
        {"gemini", "{\"type\":\"message\",\"role\":\"assistant\",\"content\":5}"},
        {"gemini", "{\"type\":\"message\",\"role\":\"assistant\",\"delta\":true}"},
        {"gemini", "{\"type\":\"tool_use\"}"},
        {"gemini", "{\"type\":\"tool_use\",\"tool_name\":\"x\"}"},
        {"gemini", "{\"type\":\"tool_use\",\"tool_id\":\"x\"}"},
        {"gemini", "{\"type\":\"tool_result\"}"},
        {"gemini", "{\"type\":\"tool_result\",\"tool_id\":[]}"},
        {"gemini", "{\"type\":\"error\"}"},
        {"opencode", "{\"type\":\"text\"}"},
        {"opencode", "{\"type\":\"text\",\"part\":{}}"},
        {"opencode", "{\"type\":\"text\",\"part\":\"hi\"}"},
        {"opencode", "{\"type\":\"reasoning\",\"part\":{\"text\":5}}"},
        {"opencode", "{\"type\":\"tool_use\",\"part\":{}}"},
        {"opencode", "{\"type\":\"tool_use\",\"part\":{\"callID\":\"c\",\"tool\":\"bash\"}}"},
        {"opencode", "{\"type\":\"tool_use\",\"part\":{\"callID\":\"c\",\"state\":{\"status\":"
                     "\"completed\"}}}"},
        {"opencode", "{\"type\":\"tool_use\",\"part\":{\"tool\":\"bash\",\"state\":{\"status\":"
                     "\"completed\"}}}"},
        {"opencode", "{\"type\":\"step_start\"}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct agent_adapter *a = adapter_find(cases[i].adapter);
        char *m = one_log(a, cases[i].line, strlen(cases[i].line));
        assert_true(m[0] != '\0');
        free(m);
    }
    /* An id longer than ADAPTER_FIELD_MAX is malformed, not cut (cutting could merge two). */
    size_t len;
    char *line = with_mib("{\"type\":\"tool_use\",\"tool_name\":\"x\",\"tool_id\":\"%s\"}", &len);
    free(one_log(&adapter_gemini, line, len));
    free(line);
    /* Missing members that still settle: a bare result/turn.failed/error fails the run. */
    static const struct {
        const struct agent_adapter *a;
        const char *line, *msg;
    } settle[] = {
        {&adapter_claude, "{\"type\":\"result\"}", "failed: result"},
        {&adapter_codex, "{\"type\":\"turn.failed\"}", "failed: turn failed"},
        {&adapter_gemini, "{\"type\":\"result\"}", "failed: result"},
        {&adapter_opencode, "{\"type\":\"error\"}", "failed: error"},
    };
    for (size_t i = 0; i < 4; i++) {
        len = strlen(settle[i].line);
        struct run r = run_lines(settle[i].a, (char **)&settle[i].line, &len, 1, 0);
        EXPECT_TYPES(&r, "log");
        expect_log(at(&r, 0), "error", settle[i].msg);
        assert_int_equal(r.oc, ADAPTER_FAILED);
        assert_int_equal(r.final, ADAPTER_FAILED);
        run_free(&r);
    }
}

/* ---- custom adapters ---------------------------------------------------------------------------
 */

static void test_custom_text(void **state) {
    char *lines[] = {"hello", "windows\r", "", "{\"type\":\"thought\",\"thought\":\"x\"}"};
    size_t len[] = {5, 8, 0, strlen(lines[3])};
    struct run r = run_lines(&adapter_custom_text, lines, len, 4, 0);
    EXPECT_TYPES(&r, "log", "log", "log");
    expect_log(at(&r, 0), "info", "hello");
    expect_log(at(&r, 1), "info", "windows");
    expect_log(at(&r, 2), "info", lines[3]); /* text means text, even when it looks like JSON */
    assert_int_equal(r.oc, ADAPTER_RUNNING);
    assert_int_equal(r.final, ADAPTER_SUCCEEDED);
    run_free(&r);
    r = run_lines(&adapter_custom_text, lines, len, 1, 2);
    EXPECT_TYPES(&r, "log", "log");
    expect_log(at(&r, 1), "error", "the agent exited with code 2");
    assert_int_equal(r.final, ADAPTER_FAILED);
    run_free(&r);
}

static void test_custom_jsonl(void **state) {
    static const struct {
        const char *in, *want; /* want NULL: passed through unchanged */
    } ok[] = {
        {"{\"type\":\"thought\",\"thought\":\"t\",\"reasoning\":\"r\"}", NULL},
        {"{\"type\":\"thought\",\"thought\":\"t\",\"seq\":9,\"ts\":\"x\",\"sessionId\":\"s\","
         "\"extra\":1}",
         "{\"type\":\"thought\",\"thought\":\"t\"}"},
        {"{\"type\":\"log\",\"level\":\"warn\",\"message\":\"m\"}", NULL},
        {"{\"type\":\"log\",\"level\":\"debug\",\"message\":\"m\",\"tool_execution_id\":null}",
         NULL},
        {"{\"type\":\"tool_use\",\"tool_name\":\"n\",\"tool_args\":{\"a\":[1]},"
         "\"tool_execution_id\":\"i\",\"status\":\"started\"}",
         NULL},
        {"{\"type\":\"tool_result\",\"tool_name\":\"n\",\"tool_output\":\"o\","
         "\"tool_execution_id\":\"i\",\"status\":\"failed\"}",
         "{\"type\":\"tool_result\",\"tool_name\":\"n\",\"tool_output\":\"o\","
         "\"tool_execution_id\":\"i\",\"status\":\"failed\",\"tool_status\":\"error\"}"},
        {"{\"type\":\"file_edit\",\"file_path\":\"p\",\"lines_added\":3,\"lines_removed\":0,"
         "\"description\":\"d\"}",
         NULL},
        {"{\"type\":\"file_edit\",\"file_path\":\"p\",\"lines_added\":0,\"lines_removed\":0,"
         "\"status\":\"started\",\"tool_execution_id\":\"t\"}",
         NULL},
        {"{\"type\":\"diff\",\"tool_execution_id\":\"i\",\"path\":\"/workspace/a\",\"oldText\":"
         "\"a\",\"newText\":\"b\"}",
         NULL},
        {"{\"type\":\"diff\",\"tool_execution_id\":\"i\",\"path\":\"p\",\"oldTextHead\":\"a\","
         "\"oldTextTail\":\"b\",\"newTextHead\":\"c\",\"newTextTail\":\"d\",\"truncated\":true,"
         "\"fullDiffUrl\":\"/api/v1/sessions/x/diff/p\"}",
         NULL},
        {"{\"type\":\"note\",\"message\":\"n\"}", NULL},
        {"{\"type\":\"moment\",\"snapshotId\":\"s\",\"note\":\"n\"}", NULL},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *line = (char *)ok[i].in;
        size_t len = strlen(line);
        struct run r = run_lines(&adapter_custom_jsonl, &line, &len, 1, 0);
        json_t *want = json_loads(ok[i].want ? ok[i].want : ok[i].in, 0, NULL);
        assert_int_equal(json_array_size(r.ev), 1);
        if (!json_equal(at(&r, 0), want)) {
            char *d = dump(r.ev);
            fail_msg("%s gave %s", ok[i].in, d);
        }
        json_decref(want);
        assert_int_equal(r.final, ADAPTER_SUCCEEDED);
        run_free(&r);
    }
    static const char *const bad[] = {
        "{\"type\":\"status\",\"status\":\"completed\"}", /* never from an agent */
        "{\"type\":\"log\",\"level\":\"fatal\",\"message\":\"m\"}",
        "{\"type\":\"log\",\"message\":\"m\"}",
        "{\"type\":\"log\",\"level\":\"info\"}",
        "{\"type\":\"log\",\"level\":\"info\",\"message\":5}",
        "{\"type\":\"log\",\"level\":\"info\",\"message\":\"m\",\"tool_execution_id\":3}",
        "{\"type\":\"thought\"}",
        "{\"type\":\"thought\",\"thought\":\"t\",\"reasoning\":[]}",
        "{\"type\":\"tool_use\",\"tool_name\":\"n\",\"tool_args\":[],\"tool_execution_id\":\"i\","
        "\"status\":\"started\"}",
        "{\"type\":\"tool_use\",\"tool_name\":\"n\",\"tool_args\":{},\"tool_execution_id\":\"i\","
        "\"status\":\"completed\"}",
        "{\"type\":\"tool_use\",\"tool_args\":{},\"tool_execution_id\":\"i\",\"status\":"
        "\"started\"}",
        "{\"type\":\"tool_result\",\"tool_name\":\"n\",\"tool_output\":\"o\","
        "\"tool_execution_id\":\"i\",\"status\":\"started\"}",
        "{\"type\":\"tool_result\",\"tool_name\":\"n\",\"tool_output\":{},"
        "\"tool_execution_id\":\"i\",\"status\":\"completed\"}",
        "{\"type\":\"file_edit\",\"file_path\":\"p\",\"lines_added\":-1,\"lines_removed\":0}",
        "{\"type\":\"file_edit\",\"file_path\":\"p\",\"lines_added\":1.5,\"lines_removed\":0}",
        "{\"type\":\"file_edit\",\"file_path\":\"p\",\"lines_added\":1}",
        "{\"type\":\"file_edit\",\"file_path\":\"p\",\"lines_added\":1,\"lines_removed\":0,"
        "\"status\":\"done\"}",
        "{\"type\":\"diff\",\"tool_execution_id\":\"i\",\"path\":\"p\",\"oldText\":\"a\"}",
        "{\"type\":\"diff\",\"tool_execution_id\":\"i\",\"path\":\"p\",\"oldTextHead\":\"a\","
        "\"oldTextTail\":\"b\",\"newTextHead\":\"c\",\"newTextTail\":\"d\",\"truncated\":false,"
        "\"fullDiffUrl\":\"u\"}",
        "{\"type\":\"note\"}",
        "{\"type\":\"moment\",\"snapshotId\":\"s\"}",
        "{\"type\":\"delivery\",\"mode\":\"pr\",\"url\":\"u\"}",
        "{\"type\":\"tool_use\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *m = one_log(&adapter_custom_jsonl, bad[i], strlen(bad[i]));
        assert_string_equal(m, bad[i]);
        free(m);
    }
    /* Big fields are cut like everywhere else. */
    size_t len;
    char *line = with_mib("{\"type\":\"note\",\"message\":\"%s\"}", &len);
    struct run r = run_lines(&adapter_custom_jsonl, &line, &len, 1, 5);
    assert_true(ends(sget(at(&r, 0), "message"), "[truncated: 1048576 bytes in all]"));
    expect_log(at(&r, 1), "error", "the agent exited with code 5");
    assert_int_equal(r.final, ADAPTER_FAILED);
    run_free(&r);
    free(line);
}

/* ---- internals ---------------------------------------------------------------------------------
 */

static void test_diff_count(void **state) {
    int64_t a = -1, d = -1;
    adapter_diff_count("Index: f\n=====\n--- f\n+++ f\n@@ -8,5 +8,8 @@\n {\n-x\n+y\n+z\n \n", &a,
                       &d);
    assert_int_equal(a, 2);
    assert_int_equal(d, 1);
    /* A removed line reading "-- x" looks like a header; inside a hunk it is a removal. Two
     * files, the second with an implicit count of 1 and a no-newline marker. */
    adapter_diff_count("--- a\n+++ b\n@@ -1,2 +1 @@\n--- x\n keep\n--- c\n+++ c\n@@ -1 +1 @@\n"
                       "-old\n\\ No newline at end of file\n+new",
                       &a, &d);
    assert_int_equal(a, 1);
    assert_int_equal(d, 2);
    adapter_diff_count(NULL, &a, &d);
    assert_int_equal(a + d, 0);
    adapter_diff_count("+not a hunk\n-neither\n@@ broken @@\n+no\n", &a, &d);
    assert_int_equal(a + d, 0);
    adapter_diff_count("@@ -x +1 @@\n+a\n@@ -1,x +1 @@\n+b\n@@ -1 +q @@\n+c\n", &a, &d);
    assert_int_equal(a + d, 0);
    assert_int_equal(adapter_utf8_cut("a\xc3\xa9", 3, 2), 1); /* never half a character */
    assert_int_equal(adapter_utf8_cut("a\xc3\xa9", 3, 3), 3);
    assert_int_equal(adapter_utf8_cut("\xf0\x9f\x98\x80", 4, 3), 0);
    assert_int_equal(adapter_line_count(""), 0);
    assert_int_equal(adapter_line_count("a"), 1);
    assert_int_equal(adapter_line_count("a\nb\n"), 2);
}

static void test_tools_table(void **state) {
    struct adapter_tools *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    char id[32];
    for (int i = 0; i < ADAPTER_TOOLS_MAX + 10; i++) {
        snprintf(id, sizeof(id), "id%d", i);
        assert_int_equal(adapter_tools_add(t, id, "n", i % 2 ? "/p" : NULL), 0);
    }
    assert_int_equal(t->n, ADAPTER_TOOLS_MAX); /* bounded: the oldest were forgotten */
    assert_false(adapter_tools_has(t, "id9"));
    assert_true(adapter_tools_has(t, "id10"));
    assert_int_equal(adapter_tools_add(t, "id10", "n", NULL), 1);
    struct adapter_tool tool;
    assert_true(adapter_tools_take(t, "id11", &tool));
    assert_string_equal(tool.path, "/p");
    adapter_tool_clear(&tool);
    assert_false(adapter_tools_take(t, "id11", &tool));
    json_t *out = json_array();
    assert_int_equal(adapter_tools_abandon(t, out), 0);
    assert_int_equal(t->n, 0);
    /* 255 tool_results plus a file_edit for each of the 127 runs with a path. */
    assert_int_equal(json_array_size(out), ADAPTER_TOOLS_MAX - 1 + 127);
    json_decref(out);
    free(t);
}

/* ---- allocation failures ----------------------------------------------------------------------
 */

struct fault {
    long countdown; /* fail the allocation that brings this to 0 */
    bool hit;
};
static struct fault *fault_now; /* test-only: jansson's allocator hook has no user pointer */

static void *fault_malloc(size_t n) {
    if (fault_now && --fault_now->countdown == 0) {
        fault_now->hit = true;
        return NULL;
    }
    return malloc(n);
}

/* jansson 2.14's parser itself does not survive a failed allocation (it drops the byte it could
 * not save and then reads past its buffer: a crash inside json_loadb), so parsing runs with
 * injection off. This definition takes the place of jansson's for the adapters in this binary and
 * forwards to it. Everything the adapters build from the parsed line is still failed in turn. */
json_t *json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error) {
    json_t *(*real)(const char *, size_t, size_t, json_error_t *);
    *(void **)&real = dlsym(RTLD_NEXT, "json_loadb");
    assert_non_null(real);
    struct fault *f = fault_now;
    fault_now = NULL;
    json_t *j = real(buffer, buflen, flags, error);
    fault_now = f;
    return j;
}

/* Fails the 1st, 2nd, 3rd … jansson allocation of a whole fixture run, one per run: every run
 * must end without a crash or a leak, lines answer 0 or AH_E_NOMEM, finish still settles. */
static void test_alloc_failures(void **state) {
    static const struct {
        const char *adapter, *file;
    } cases[] = {
        {"claude", "claude-success.jsonl"},      {"claude", "claude-failure.jsonl"},
        {"codex", "codex-success.jsonl"},        {"codex", "codex-failure.jsonl"},
        {"gemini", "gemini-success.jsonl"},      {"gemini", "gemini-failure.jsonl"},
        {"opencode", "opencode-success.jsonl"},  {"opencode", "opencode-failure.jsonl"},
        {"custom-jsonl", "codex-success.jsonl"},
    };
    json_set_alloc_funcs(fault_malloc, free);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const struct agent_adapter *a = strcmp(cases[c].adapter, "custom-jsonl") == 0
                                            ? &adapter_custom_jsonl
                                            : adapter_find(cases[c].adapter);
        struct lines l = fixture(cases[c].file);
        long nth = 1;
        int nomem = 0;
        for (;; nth++) {
            struct fault f = {.countdown = nth};
            json_t *out = json_array();
            assert_non_null(out);
            void *st = a->state_new();
            assert_non_null(st);
            enum adapter_outcome oc = ADAPTER_RUNNING;
            fault_now = &f;
            for (size_t i = 0; i < l.n; i++) {
                int rc = a->line(st, l.v[i], l.len[i], out, &oc);
                assert_true(rc == 0 || rc == AH_E_NOMEM);
                nomem += rc == AH_E_NOMEM;
            }
            enum adapter_outcome fin = a->finish(st, 0, out);
            fault_now = NULL;
            assert_true(fin == ADAPTER_SUCCEEDED || fin == ADAPTER_FAILED);
            a->state_free(st);
            json_decref(out);
            if (!f.hit)
                break; /* a run with no failure left to inject */
        }
        assert_true(nth > 50);  /* the runs did allocate through jansson */
        assert_true(nomem > 0); /* and failures were reported, not swallowed */
        lines_free(&l);
    }
    json_set_alloc_funcs(malloc, free);
}

/* D26: codex reports a command's output so far in item.updated; each becomes a progress event
 * with the last line, and the result says tool_status. */
static void test_tool_progress(void **state) {
    char *lines[] = {
        "{\"type\":\"item.started\",\"item\":{\"id\":\"i1\",\"type\":\"command_execution\","
        "\"command\":\"make\",\"aggregated_output\":\"\",\"exit_code\":null,"
        "\"status\":\"in_progress\"}}",
        "{\"type\":\"item.updated\",\"item\":{\"id\":\"i1\",\"type\":\"command_execution\","
        "\"command\":\"make\",\"aggregated_output\":\"cc a.c\\ncc b.c\\n\",\"exit_code\":null,"
        "\"status\":\"in_progress\"}}",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"i1\",\"type\":\"command_execution\","
        "\"command\":\"make\",\"aggregated_output\":\"cc a.c\\ncc b.c\\nerror\\n\","
        "\"exit_code\":2,\"status\":\"failed\"}}",
    };
    size_t len[3];
    for (size_t i = 0; i < 3; i++)
        len[i] = strlen(lines[i]);
    struct run r = run_lines(adapter_find("codex"), lines, len, 3, 0);
    assert_true(json_array_size(r.ev) >= 3);
    expect_tool_use(at(&r, 0), "shell", "i1");
    assert_string_equal(sget(at(&r, 1), "type"), "tool_use");
    assert_string_equal(sget(at(&r, 1), "status"), "running");
    assert_string_equal(sget(at(&r, 1), "tool_execution_id"), "i1");
    assert_string_equal(sget(at(&r, 1), "last_line"), "cc b.c");
    expect_tool_result(at(&r, 2), "shell", "i1", "failed");
    assert_string_equal(sget(at(&r, 2), "tool_status"), "error");
    run_free(&r);

    /* a custom jsonl agent may report progress itself; its results get tool_status */
    char *custom[] = {
        "{\"type\":\"tool_use\",\"tool_name\":\"t\",\"tool_execution_id\":\"x\","
        "\"status\":\"running\",\"last_line\":\"50%\"}",
        "{\"type\":\"tool_result\",\"tool_name\":\"t\",\"tool_output\":\"ok\","
        "\"tool_execution_id\":\"x\",\"status\":\"completed\"}",
        "{\"type\":\"tool_use\",\"tool_name\":\"t\",\"tool_execution_id\":\"y\","
        "\"status\":\"running\"}",
    };
    size_t clen[3];
    for (size_t i = 0; i < 3; i++)
        clen[i] = strlen(custom[i]);
    r = run_lines(&adapter_custom_jsonl, custom, clen, 3, 0);
    assert_string_equal(sget(at(&r, 0), "last_line"), "50%");
    assert_string_equal(sget(at(&r, 1), "tool_status"), "success");
    assert_string_equal(sget(at(&r, 2), "type"), "log"); /* progress without a line: not ours */
    run_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_argv),
        cmocka_unit_test(test_claude_success),
        cmocka_unit_test(test_claude_failure),
        cmocka_unit_test(test_claude_result_is_error),
        cmocka_unit_test(test_claude_write_and_multi),
        cmocka_unit_test(test_claude_odd_shapes),
        cmocka_unit_test(test_codex_success),
        cmocka_unit_test(test_codex_failure),
        cmocka_unit_test(test_codex_items),
        cmocka_unit_test(test_gemini_success),
        cmocka_unit_test(test_gemini_failure),
        cmocka_unit_test(test_gemini_deltas),
        cmocka_unit_test(test_opencode_success),
        cmocka_unit_test(test_opencode_failure),
        cmocka_unit_test(test_opencode_reopen),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_hostile_generic),
        cmocka_unit_test(test_hostile_big),
        cmocka_unit_test(test_hostile_big_fields),
        cmocka_unit_test(test_hostile_missing),
        cmocka_unit_test(test_custom_text),
        cmocka_unit_test(test_custom_jsonl),
        cmocka_unit_test(test_diff_count),
        cmocka_unit_test(test_tools_table),
        cmocka_unit_test(test_tool_progress),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_further_turns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
