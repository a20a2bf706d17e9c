/*
 * chat.c — a session as a conversation (API.md §7.7, issue 15): the chat history, sending,
 * editing, deleting and retrying user messages, and suggestions derived from the session.
 *
 * The chat is not a second store: every message is a `chat_message` event of the session, so it
 * is numbered, stored, streamed and replayed like every other event (it survives a restart and is
 * copied to branches with the rest). A message's id is "msg-<seq>", the seq of the event that
 * carried it, so paging by message id is paging by seq.
 *
 *   user message      {type:chat_message, role:user, content, attachments?, context_files?,
 *                      tools_enabled?, model_override?, supersedes?, retry_of?}  (this file)
 *   assistant message {type:chat_message, role:assistant, content, model?}  (the agent: adapters' text,
 *                      the scripted agent's `say`; the supervisor refuses anything else from it)
 *   edit in place     {type:chat_message, role:user, edits:<id>, content}
 *   deletion          {type:chat_message, role:user, deletes:<id>}
 *   tool calls        the agent's tool_use events, attached to the assistant message they follow
 *
 * History is never rewritten silently: an edit of a message the agent has already answered is a
 * new message that `supersedes` it (the old one stays, marked `superseded_by`); an edit before
 * any answer changes the message in place with `edited_at`, and both kinds are events anyone can
 * read in the session's event log. User input reaches the agent through exec_chat, the same
 * path as POST …/prompt.
 */
#include <stdio.h>
#include <string.h>

#include "../store/store.h"
#include "chat_int.h"

#define CHAT_BODY_MAX (256 * 1024)  /* a message of AH_LIMIT_PROMPT bytes escaped, and its lists */
#define CHAT_LIMIT_DEFAULT 50
#define CHAT_LIMIT_MAX 200
#define CHAT_SCAN_MAX 20000         /* chat events folded per request (a cap, not a page) */
#define CHAT_SCAN_PAGE 200
#define CHAT_LIST_MAX 64            /* context_files, tools_enabled */
#define CHAT_PATH_MAX 1024
#define CHAT_MODEL_MAX AH_LIMIT_NAME

/* ---- reading: the events folded into messages ------------------------------------------------ */

int64_t chat_msg_seq(const char *id) {
    int64_t seq = 0;
    if (!id || strncmp(id, "msg-", 4) != 0 || parse_int64(id + 4, 1, INT64_MAX, &seq) < 0)
        return 0;
    return seq;
}

static json_t *msg_id(int64_t seq) {
    char id[32];
    snprintf(id, sizeof(id), "msg-%lld", (long long)seq);
    return json_string(id);
}

json_t *chat_find(json_t *msgs, const char *id, size_t *ret_i) {
    if (!id)
        return NULL;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!strcmp(json_string_value(json_object_get(m, "id")), id)) {
            if (ret_i)
                *ret_i = i;
            return m;
        }
    }
    return NULL;
}

static const char *const user_fields[] = {"attachments", "context_files", "tools_enabled",
                                          "model_override", "supersedes", "retry_of",
                                          "thread_id", NULL};

/* The thread of a user message event: the one it opened (`thread_title`: "thread-<seq>") or
 * the one it was sent to (`thread_id`); NULL for the main conversation. New reference. */
static json_t *thread_of(const json_t *ev, int64_t seq) {
    if (json_is_string(json_object_get(ev, "thread_title"))) {
        char id[40];
        snprintf(id, sizeof(id), "thread-%lld", (long long)seq);
        return json_string(id);
    }
    json_t *t = json_object_get(ev, "thread_id");
    return json_is_string(t) ? json_incref(t) : NULL;
}

/* The agent answers what it was sent last: a reply belongs to the thread of the latest user
 * message before it (m is not in msgs yet). */
static void reply_thread(json_t *msgs, json_t *m) {
    for (size_t i = json_array_size(msgs); m && i > 0; i--) {
        json_t *prev = json_array_get(msgs, i - 1);
        if (strcmp(json_string_value(json_object_get(prev, "role")), "user"))
            continue;
        json_t *t = json_object_get(prev, "thread_id");
        if (t)
            json_object_set(m, "thread_id", t);
        return;
    }
}

/* Folds one event (a chat_message or a tool_use) into msgs. Pure: a function of the events. */
static int fold(json_t *msgs, const json_t *ev) {
    const char *type = json_string_value(json_object_get(ev, "type"));
    int64_t seq = json_integer_value(json_object_get(ev, "seq"));
    json_t *ts = json_object_get(ev, "ts");
    if (!type || seq <= 0 || !json_is_string(ts))
        return 0;
    if (!strcmp(type, "tool_use")) {
        /* a running tool's progress repeats its tool_use with `last_line` and no args (D26) */
        json_t *args = json_object_get(ev, "tool_args");
        const char *name = json_string_value(json_object_get(ev, "tool_name"));
        const char *tid = json_string_value(json_object_get(ev, "tool_execution_id"));
        if (!json_is_object(args) || !name || json_object_get(ev, "last_line"))
            return 0;
        char fallback[32];
        snprintf(fallback, sizeof(fallback), "call_%lld", (long long)seq);
        json_t *call = json_pack("{s:s, s:s, s:{s:s, s:O}}", "id", tid ? tid : fallback, "type",
                                 "function", "function", "name", name, "arguments", args);
        if (!call)
            return AH_E_NOMEM;
        size_t n = json_array_size(msgs);
        json_t *last = n ? json_array_get(msgs, n - 1) : NULL;
        const char *role = last ? json_string_value(json_object_get(last, "role")) : NULL;
        if (!last || !role || strcmp(role, "assistant")) {
            last = json_pack("{s:o, s:s, s:s, s:O, s:[], s:[]}", "id", msg_id(seq), "role",
                             "assistant", "content", "", "timestamp", ts, "attachments",
                             "tool_calls");
            reply_thread(msgs, last);
            if (!last || json_array_append_new(msgs, last) < 0) {
                json_decref(call);
                return AH_E_NOMEM;
            }
        }
        json_t *calls = json_object_get(last, "tool_calls");
        if (!calls) {
            calls = json_array();
            if (!calls || json_object_set_new(last, "tool_calls", calls) < 0) {
                json_decref(call);
                return AH_E_NOMEM;
            }
        }
        return json_array_append_new(calls, call) < 0 ? AH_E_NOMEM : 0;
    }
    if (strcmp(type, "chat_message"))
        return 0;
    const char *role = json_string_value(json_object_get(ev, "role"));
    const char *edits = json_string_value(json_object_get(ev, "edits"));
    const char *deletes = json_string_value(json_object_get(ev, "deletes"));
    json_t *content = json_object_get(ev, "content");
    const char *attaches = json_string_value(json_object_get(ev, "attaches"));
    if (attaches) { /* attachments added to a message (chat_attach.c) */
        json_t *m = chat_find(msgs, attaches, NULL);
        json_t *att = json_object_get(ev, "attachments");
        if (m && json_is_array(att))
            json_array_extend(json_object_get(m, "attachments"), att);
        return 0;
    }
    json_t *detaches = json_object_get(ev, "detaches");
    if (json_is_object(detaches)) {
        json_t *m = chat_find(msgs, json_string_value(json_object_get(detaches, "message")), NULL);
        const char *aid = json_string_value(json_object_get(detaches, "attachment"));
        json_t *list = json_object_get(m, "attachments");
        for (size_t i = 0; aid && i < json_array_size(list); i++)
            if (!strcmp(json_string_value(json_object_get(json_array_get(list, i), "id")), aid)) {
                json_array_remove(list, i);
                break;
            }
        return 0;
    }
    if (deletes) {
        size_t i;
        if (chat_find(msgs, deletes, &i))
            json_array_remove(msgs, i);
        return 0;
    }
    if (edits) {
        json_t *m = chat_find(msgs, edits, NULL);
        if (m && json_is_string(content)) {
            json_object_set(m, "content", content);
            json_object_set(m, "edited_at", ts);
            json_t *att = json_object_get(ev, "attachments");
            if (json_is_array(att))
                json_object_set(m, "attachments", att);
        }
        return 0;
    }
    if (!role || (strcmp(role, "user") && strcmp(role, "assistant")) || !json_is_string(content))
        return 0; /* (a thread opened without a first message is no message) */
    json_t *att = json_object_get(ev, "attachments");
    json_t *m = json_pack("{s:o, s:s, s:O, s:O, s:o}", "id", msg_id(seq), "role", role,
                          "content", content, "timestamp", ts, "attachments",
                          json_is_array(att) ? json_incref(att) : json_array());
    if (!m)
        return AH_E_NOMEM;
    if (!strcmp(role, "user")) {
        for (const char *const *f = user_fields; *f; f++) {
            json_t *v = json_object_get(ev, *f);
            if (v && strcmp(*f, "attachments"))
                json_object_set(m, *f, v);
        }
        json_t *thread = thread_of(ev, seq);
        if (thread)
            json_object_set_new(m, "thread_id", thread);
        const char *old = json_string_value(json_object_get(ev, "supersedes"));
        json_t *o = old ? chat_find(msgs, old, NULL) : NULL;
        if (o)
            json_object_set(o, "superseded_by", json_object_get(m, "id"));
    } else {
        json_t *calls = json_object_get(ev, "tool_calls");
        if (json_is_array(calls))
            json_object_set(m, "tool_calls", calls);
        json_t *model = json_object_get(ev, "model"); /* the turn's model, when it was chosen */
        if (json_is_string(model))
            json_object_set(m, "model", model);
        reply_thread(msgs, m);
    }
    return json_array_append_new(msgs, m) < 0 ? AH_E_NOMEM : 0;
}

/* The whole conversation of a session, oldest first. */
static int chat_load(struct api_ctx *ctx, const char *tenant, const char *id, json_t **ret) {
    static const char *const types[] = {"chat_message", "tool_use", NULL};
    json_t *msgs = json_array();
    if (!msgs)
        return AH_E_NOMEM;
    int64_t after = 0, scanned = 0;
    for (;;) {
        struct event_filter f = {.types = types, .after = after, .ascending = true};
        struct page pg = {1, CHAT_SCAN_PAGE};
        json_t *items = NULL;
        int64_t total = 0;
        int rc = store_event_list(ctx->store, tenant, id, &f, &pg, &items, &total);
        if (rc < 0) {
            json_decref(msgs);
            return rc;
        }
        size_t i, n = json_array_size(items);
        json_t *ev;
        json_array_foreach(items, i, ev) {
            if ((rc = fold(msgs, ev)) < 0)
                break;
            after = json_integer_value(json_object_get(ev, "seq"));
        }
        json_decref(items);
        if (rc < 0) {
            json_decref(msgs);
            return rc;
        }
        scanned += (int64_t)n;
        if (n < CHAT_SCAN_PAGE || scanned >= CHAT_SCAN_MAX)
            break;
    }
    *ret = msgs;
    return 0;
}

static void check_strings(const json_t *v, const char *name, size_t max, struct ah_problem *p);
static void check_content(const json_t *c, struct ah_problem *p);

/* ---- threads: conversations within the session's chat --------------------------------------- */

/* A thread is opened by a user chat_message event with `thread_title` (its id "thread-<seq>";
 * the event is also its first message when it has content); messages sent to it carry
 * `thread_id`, and the agent's replies belong to the thread of the message they answer. The
 * session's threads, oldest first: [{id, title, created_at, initial_message_id}]. */
static int threads_load(struct api_ctx *ctx, const char *tenant, const char *id, json_t **ret) {
    static const char *const types[] = {"chat_message", NULL};
    json_t *out = json_array();
    int64_t after = 0, scanned = 0;
    int rc = out ? 0 : AH_E_NOMEM;
    while (rc == 0) {
        struct event_filter f = {.types = types, .after = after, .ascending = true};
        struct page pg = {1, CHAT_SCAN_PAGE};
        json_t *items = NULL;
        int64_t total = 0;
        if ((rc = store_event_list(ctx->store, tenant, id, &f, &pg, &items, &total)) < 0)
            break;
        size_t i, n = json_array_size(items);
        json_t *ev;
        json_array_foreach(items, i, ev) {
            int64_t seq = json_integer_value(json_object_get(ev, "seq"));
            json_t *title = json_object_get(ev, "thread_title");
            after = seq;
            if (!json_is_string(title))
                continue;
            char tid[40], mid[40];
            snprintf(tid, sizeof(tid), "thread-%lld", (long long)seq);
            snprintf(mid, sizeof(mid), "msg-%lld", (long long)seq);
            json_t *t = json_pack("{s:s, s:O, s:O, s:o}", "id", tid, "title", title, "created_at",
                                  json_object_get(ev, "ts"), "initial_message_id",
                                  json_is_string(json_object_get(ev, "content")) ? json_string(mid)
                                                                                  : json_null());
            if (!t || json_array_append_new(out, t) < 0) {
                rc = AH_E_NOMEM;
                break;
            }
        }
        json_decref(items);
        scanned += (int64_t)n;
        if (n < CHAT_SCAN_PAGE || scanned >= CHAT_SCAN_MAX)
            break;
    }
    if (rc < 0) {
        json_decref(out);
        return rc;
    }
    *ret = out;
    return 0;
}

int chat_thread_check(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
                      const char *tenant, const char *id, const char *thread) {
    json_t *threads = NULL;
    int rc = threads_load(ctx, tenant, id, &threads);
    if (rc < 0) {
        http_error(req, res, rc, rc == AH_E_NOTFOUND ? "no session %s" : "cannot read the chat", id);
        return rc;
    }
    bool found = chat_find(threads, thread, NULL) != NULL;
    json_decref(threads);
    if (!found) {
        struct ah_problem p = {0};
        problem_field(&p, "thread_id", "%.64s is not a thread of this session", thread);
        http_fail(req, res, &p);
        return AH_E_INVAL;
    }
    return 0;
}

static void get_threads(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = NULL;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, &tenant);
    if (!row)
        return;
    json_t *threads = NULL, *msgs = NULL;
    int rc = threads_load(ctx, tenant, row->id, &threads);
    if (rc == 0 && (rc = chat_load(ctx, tenant, row->id, &msgs)) < 0)
        json_decref(threads);
    if (rc < 0) {
        http_error(req, res, rc, "cannot read the chat");
        return;
    }
    json_t *out = json_array();
    size_t i, j;
    json_t *t, *m;
    json_array_foreach(threads, i, t) {
        const char *tid = json_string_value(json_object_get(t, "id"));
        json_int_t count = 0;
        json_t *last = json_object_get(t, "created_at");
        bool user = false, assistant = false;
        json_array_foreach(msgs, j, m) {
            const char *mt = json_string_value(json_object_get(m, "thread_id"));
            if (!mt || strcmp(mt, tid))
                continue;
            count++;
            last = json_object_get(m, "timestamp");
            const char *role = json_string_value(json_object_get(m, "role"));
            user |= role && !strcmp(role, "user");
            assistant |= role && !strcmp(role, "assistant");
        }
        json_t *who = json_array();
        if (who && user)
            json_array_append_new(who, json_string("user"));
        if (who && assistant)
            json_array_append_new(who, json_string("agent"));
        /* a thread of an ended session takes no more messages */
        json_t *o = json_pack("{s:O, s:O, s:I, s:O, s:o, s:s}", "id", json_object_get(t, "id"),
                              "title", json_object_get(t, "title"), "message_count", count,
                              "last_activity", last, "participants", who, "status",
                              session_status_terminal(row->status) ? "closed" : "active");
        if (!o || json_array_append_new(out, o) < 0) {
            json_decref(out);
            out = NULL;
            break;
        }
    }
    json_decref(threads);
    json_decref(msgs);
    if (!out) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    http_json(req, res, 200, json_pack("{s:o, s:I}", "threads", out,
                                       "total", (json_int_t)json_array_size(out)));
}

#define THREAD_TITLE_MAX 256

static void post_thread(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    if (!body)
        return;
    struct ah_problem p = {0};
    static const char *const known[] = {"title", "initial_message", NULL};
    static const char *const known_msg[] = {"content", "context_files", NULL};
    api_only_members(body, known, &p);
    json_t *title = json_object_get(body, "title"), *init = json_object_get(body, "initial_message");
    if (!json_is_string(title) || !json_string_length(title) ||
        json_string_length(title) > THREAD_TITLE_MAX ||
        strlen(json_string_value(title)) != json_string_length(title))
        problem_field(&p, "title", "is required: a string of 1 to %d bytes", THREAD_TITLE_MAX);
    json_t *content = json_object_get(init, "content"), *files = json_object_get(init, "context_files");
    if (init && !json_is_object(init))
        problem_field(&p, "initial_message", "must be an object with content");
    else if (init) {
        struct ah_problem q = {0};
        api_only_members(init, known_msg, &q);
        check_content(content, &q);
        if (files)
            check_strings(files, "context_files", CHAT_PATH_MAX, &q);
        /* name the fields as they are in the body */
        const char *key;
        json_t *v;
        json_object_foreach(q.errors, key, v) {
            size_t k;
            json_t *msg;
            json_array_foreach(v, k, msg) {
                char path[128];
                snprintf(path, sizeof(path), "initial_message.%s", key);
                problem_field(&p, path, "%s", json_string_value(msg));
            }
        }
        if (q.code && !p.code)
            problem_set(&p, q.code, "%s", q.detail);
        problem_clear(&q);
    }
    if (http_fail(req, res, &p))
        return;
    const char *id = api_session_id(req, res);
    const char *tenant = id ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    AH_AUTO(json_decrefp) json_t *ev = json_pack("{s:s, s:s, s:O}", "type", "chat_message",
                                                 "role", "user", "thread_title", title);
    if (ev && content)
        json_object_set(ev, "content", content);
    if (ev && files)
        json_object_set(ev, "context_files", files);
    int64_t seq = 0;
    if (chat_send(ctx, req, res, tenant, id, ev, json_string_value(content), &seq) < 0)
        return;
    char tid[40], mid[40], ts[TIME_RFC3339_LEN + 1];
    snprintf(tid, sizeof(tid), "thread-%lld", (long long)seq);
    snprintf(mid, sizeof(mid), "msg-%lld", (long long)seq);
    time_format(time_now_ms(), ts);
    http_json(req, res, 201,
              json_pack("{s:s, s:O, s:s, s:s?}", "id", tid, "title", title, "created_at", ts,
                        "initial_message_id", content ? mid : NULL));
}

static void post_thread_i(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_thread);
}

static void get_chat(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    struct ah_problem p = {0};
    int64_t limit = CHAT_LIMIT_DEFAULT, before = 0, after = 0;
    const char *l = http_query(req, "limit"), *b = http_query(req, "before"),
               *a = http_query(req, "after"), *th = http_query(req, "thread_id");
    if (l && parse_int64(l, 1, CHAT_LIMIT_MAX, &limit) < 0)
        problem_field(&p, "limit", "must be an integer from 1 to %d", CHAT_LIMIT_MAX);
    if (b && !(before = chat_msg_seq(b)))
        problem_field(&p, "before", "must be a message id (msg-<number>)");
    if (a && !(after = chat_msg_seq(a)))
        problem_field(&p, "after", "must be a message id (msg-<number>)");
    if (http_fail(req, res, &p))
        return;
    const char *tenant = NULL;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, &tenant);
    if (!row)
        return;
    json_t *msgs = NULL;
    int rc = chat_load(ctx, tenant, row->id, &msgs);
    if (rc < 0) {
        http_error(req, res, rc, "cannot read the chat");
        return;
    }
    for (size_t i = json_array_size(msgs); th && i > 0; i--) { /* one thread's messages */
        const char *t = json_string_value(json_object_get(json_array_get(msgs, i - 1), "thread_id"));
        if (!t || strcmp(t, th))
            json_array_remove(msgs, i - 1);
    }
    /* the window: after `after` (its first `limit`), else before `before` (or the end) — the
     * last `limit` there, which is what a chat shows first and scrolls back from */
    size_t n = json_array_size(msgs), lo = 0, hi = n;
    for (size_t i = 0; i < n; i++) {
        int64_t s = chat_msg_seq(json_string_value(json_object_get(json_array_get(msgs, i), "id")));
        if (after && s <= after)
            lo = i + 1;
        if (before && s >= before && hi == n)
            hi = i;
    }
    if (hi < lo)
        hi = lo;
    if (hi - lo > (size_t)limit) {
        if (after)
            hi = lo + (size_t)limit;
        else
            lo = hi - (size_t)limit;
    }
    json_t *page = json_array();
    for (size_t i = lo; page && i < hi; i++)
        if (json_array_append(page, json_array_get(msgs, i)) < 0) {
            json_decref(page);
            page = NULL;
        }
    json_decref(msgs);
    if (!page) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    http_json(req, res, 200, json_pack("{s:o, s:I}", "messages", page, "total", (json_int_t)n));
}

/* ---- writing --------------------------------------------------------------------------------- */

/* A list of at most CHAT_LIST_MAX non-empty strings of at most `max` bytes. */
static void check_strings(const json_t *v, const char *name, size_t max, struct ah_problem *p) {
    if (!json_is_array(v)) {
        problem_field(p, name, "must be an array of strings");
        return;
    }
    if (json_array_size(v) > CHAT_LIST_MAX) {
        problem_field(p, name, "has more than %d items", CHAT_LIST_MAX);
        return;
    }
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s) || !json_string_length(s) || json_string_length(s) > max ||
            strlen(json_string_value(s)) != json_string_length(s)) {
            char f[64];
            snprintf(f, sizeof(f), "%s[%zu]", name, i);
            problem_field(p, f, "must be a non-empty string of at most %zu bytes", max);
        }
    }
}

static void check_content(const json_t *c, struct ah_problem *p) {
    if (!json_is_string(c) || !json_string_length(c))
        problem_field(p, "content", "is required: a non-empty string");
    else if (strlen(json_string_value(c)) != json_string_length(c))
        problem_field(p, "content", "must not contain NUL characters");
    else if (json_string_length(c) > AH_LIMIT_PROMPT)
        problem_set(p, AH_E_TOOLARGE, "the message is %zu bytes; the limit is %d bytes",
                    json_string_length(c), AH_LIMIT_PROMPT);
}

/* Answers the failure of exec_chat (404/409/410/5xx) or nothing. */
int chat_send(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
              const char *tenant, const char *id, json_t *ev, const char *text, int64_t *ret_seq) {
    return chat_send_model(ctx, req, res, tenant, id, ev, text, NULL, ret_seq);
}

int chat_send_model(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
                    const char *tenant, const char *id, json_t *ev, const char *text,
                    const char *model, int64_t *ret_seq) {
    struct ah_problem p = {0};
    if (!ev) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return AH_E_NOMEM;
    }
    int rc = exec_chat(ctx->exec, tenant, id, ev, text, model, ret_seq, &p);
    if (rc < 0)
        http_fail(req, res, &p);
    problem_clear(&p);
    return rc;
}

/* The message as answered: the fields of the stored event, as GET chat would show them. */
static json_t *message_json(const json_t *ev, int64_t seq) {
    json_t *m = json_pack("{s:o, s:s, s:O}", "id", msg_id(seq), "role", "user", "content",
                          json_object_get(ev, "content"));
    char ts[TIME_RFC3339_LEN + 1];
    time_format(time_now_ms(), ts);
    if (!m || json_object_set_new(m, "timestamp", json_string(ts)) < 0) {
        json_decref(m);
        return NULL;
    }
    json_t *att = json_object_get(ev, "attachments");
    json_object_set_new(m, "attachments", json_is_array(att) ? json_incref(att) : json_array());
    for (const char *const *f = user_fields; *f; f++) {
        json_t *v = json_object_get(ev, *f);
        if (v && strcmp(*f, "attachments"))
            json_object_set(m, *f, v);
    }
    return m;
}

json_t *chat_post_user(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
                       const json_t *body, const char *const *extra, int64_t *ret_seq) {
    struct ah_problem p = {0};
    static const char *const fields[] = {"content",        "attachments", "context_files",
                                         "tools_enabled",  "model_override", "thread_id"};
    const char *known[16];
    size_t k = 0;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        known[k++] = fields[i];
    for (const char *const *e = extra; e && *e && k + 1 < sizeof(known) / sizeof(known[0]); e++)
        known[k++] = *e;
    known[k] = NULL;
    api_only_members(body, known, &p);
    json_t *v;
    check_content(json_object_get(body, "content"), &p);
    if ((v = json_object_get(body, "context_files")))
        check_strings(v, "context_files", CHAT_PATH_MAX, &p);
    if ((v = json_object_get(body, "tools_enabled")))
        check_strings(v, "tools_enabled", AH_LIMIT_NAME, &p);
    if ((v = json_object_get(body, "model_override")) &&
        (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > CHAT_MODEL_MAX))
        problem_field(&p, "model_override", "must be a model id of at most %d bytes",
                      CHAT_MODEL_MAX);
    if ((v = json_object_get(body, "attachments")) &&
        (!json_is_array(v) || json_array_size(v) > 0))
        problem_field(&p, "attachments",
                      "add attachments with POST …/chat/messages/{messageId}/attachments");
    json_t *thread = json_object_get(body, "thread_id");
    if (thread && !json_is_string(thread))
        problem_field(&p, "thread_id", "must be a thread id (thread-<number>)");
    if (http_fail(req, res, &p))
        return NULL;
    const char *id = api_session_id(req, res);
    const char *tenant = id ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return NULL;
    if (thread && chat_thread_check(ctx, req, res, tenant, id, json_string_value(thread)) < 0)
        return NULL;
    const char *model = json_string_value(json_object_get(body, "model_override"));
    AH_AUTO(session_row_freep) struct session_row *row = NULL;
    bool switching = false; /* the agent's next turn runs with `model` (issue 15) */
    if (model) { /* never stored as if it had been applied */
        if (!(row = api_session_load(ctx, req, res, NULL)))
            return NULL;
        int rc = chat_model_check(ctx, row, model, &p);
        if (rc < 0) {
            http_fail(req, res, &p);
            return NULL;
        }
        switching = rc == 1;
    }
    json_t *ev = json_pack("{s:s, s:s, s:O}", "type", "chat_message", "role", "user", "content",
                           json_object_get(body, "content"));
    static const char *const copied[] = {"context_files", "tools_enabled", "model_override",
                                         "thread_id", NULL};
    for (const char *const *f = copied; ev && *f; f++)
        if ((v = json_object_get(body, *f)))
            json_object_set(ev, *f, v);
    if (chat_send_model(ctx, req, res, tenant, id, ev,
                        json_string_value(json_object_get(body, "content")),
                        switching ? model : NULL, ret_seq) < 0) {
        json_decref(ev);
        return NULL;
    }
    if (switching) /* the model goes with the message; the context shows it from now on */
        chat_model_record(ctx, tenant, row, model);
    return ev;
}

static void post_message(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    if (!body)
        return;
    int64_t seq = 0;
    AH_AUTO(json_decrefp) json_t *ev = chat_post_user(ctx, req, res, body, NULL, &seq);
    if (ev)
        http_json(req, res, 201, message_json(ev, seq));
}

static void post_message_i(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_message);
}

/* The {messageId} message of the {id} session's chat, with the whole chat (for the rules that
 * look at what came after it); NULL after answering. */
json_t *chat_load_message(struct api_ctx *ctx, struct http_request *req,
                          struct http_response *res, const char **ret_tenant, json_t **ret_msgs,
                          struct session_row **ret_row) {
    const char *mid = http_param(req, "messageId");
    const char *tenant = NULL;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, &tenant);
    if (!row)
        return NULL;
    json_t *msgs = NULL;
    int rc = chat_load(ctx, tenant, row->id, &msgs);
    if (rc < 0) {
        http_error(req, res, rc, "cannot read the chat");
        return NULL;
    }
    json_t *m = chat_msg_seq(mid) ? chat_find(msgs, mid, NULL) : NULL;
    if (!m) {
        json_decref(msgs);
        http_error(req, res, AH_E_NOTFOUND, "no message %s in the chat of session %s", mid,
                   http_param(req, "id"));
        return NULL;
    }
    *ret_tenant = tenant;
    *ret_msgs = msgs;
    if (ret_row)
        *ret_row = AH_TAKE(row);
    return m;
}

static bool is_user(struct http_request *req, struct http_response *res, const json_t *m,
                    const char *what) {
    if (!strcmp(json_string_value(json_object_get(m, "role")), "user"))
        return true;
    http_error(req, res, AH_E_CONFLICT, "only the user's messages can be %s", what);
    return false;
}

static void put_message(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    if (!body)
        return;
    struct ah_problem p = {0};
    static const char *const known[] = {"content", "attachments", NULL};
    api_only_members(body, known, &p);
    json_t *v;
    check_content(json_object_get(body, "content"), &p);
    if ((v = json_object_get(body, "attachments")) && !json_is_array(v))
        problem_field(&p, "attachments", "must be an array");
    if (http_fail(req, res, &p))
        return;
    const char *tenant = NULL;
    AH_AUTO(json_decrefp) json_t *msgs = NULL;
    json_t *m = chat_load_message(ctx, req, res, &tenant, &msgs, NULL);
    if (!m || !is_user(req, res, m, "edited"))
        return;
    const char *mid = json_string_value(json_object_get(m, "id"));
    int64_t mseq = chat_msg_seq(mid);
    /* answered: an assistant message after it — then the edit is a new message (see the top) */
    bool answered = false;
    size_t i;
    json_t *o;
    json_array_foreach(msgs, i, o) {
        if (!strcmp(json_string_value(json_object_get(o, "role")), "assistant") &&
            chat_msg_seq(json_string_value(json_object_get(o, "id"))) > mseq)
            answered = true;
    }
    json_t *att = json_object_get(m, "attachments");
    AH_AUTO(json_decrefp) json_t *ev = json_pack("{s:s, s:s, s:O, s:s}", "type",
                                                 "chat_message", "role", "user", "content",
                                                 json_object_get(body, "content"),
                                                 answered ? "supersedes" : "edits", mid);
    if (ev && json_array_size(att))
        json_object_set(ev, "attachments", att);
    int64_t seq = 0;
    if (chat_send(ctx, req, res, tenant, http_param(req, "id"), ev,
                   json_string_value(json_object_get(body, "content")), &seq) < 0)
        return;
    char ts[TIME_RFC3339_LEN + 1];
    time_format(time_now_ms(), ts);
    json_t *out = json_pack("{s:o, s:O, s:s, s:o}", "id",
                            answered ? msg_id(seq) : json_string(mid), "content",
                            json_object_get(body, "content"), "edited_at", ts, "attachments",
                            att ? json_incref(att) : json_array());
    if (out && answered)
        json_object_set_new(out, "supersedes", json_string(mid));
    http_json(req, res, 200, out);
}

static void delete_message(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = NULL;
    AH_AUTO(json_decrefp) json_t *msgs = NULL;
    json_t *m = chat_load_message(ctx, req, res, &tenant, &msgs, NULL);
    if (!m || !is_user(req, res, m, "deleted"))
        return;
    AH_AUTO(json_decrefp) json_t *ev = json_pack("{s:s, s:s, s:O}", "type", "chat_message",
                                                 "role", "user", "deletes",
                                                 json_object_get(m, "id"));
    if (chat_send(ctx, req, res, tenant, http_param(req, "id"), ev, NULL, NULL) < 0)
        return;
    res->status = 204;
}

/* Sends the message's text again, as a new user message (the agent answers it as it answers any
 * message; its reply arrives in the history like every other). */
static void post_retry(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, true);
    if (!body)
        return;
    if (json_object_size(body)) {
        struct ah_problem p = {0};
        problem_field(&p, json_object_iter_key(json_object_iter(body)), "is not a known field");
        http_fail(req, res, &p);
        return;
    }
    const char *tenant = NULL;
    AH_AUTO(json_decrefp) json_t *msgs = NULL;
    json_t *m = chat_load_message(ctx, req, res, &tenant, &msgs, NULL);
    if (!m || !is_user(req, res, m, "retried"))
        return;
    AH_AUTO(json_decrefp) json_t *ev = json_pack("{s:s, s:s, s:O, s:O}", "type", "chat_message",
                                                 "role", "user", "content",
                                                 json_object_get(m, "content"), "retry_of",
                                                 json_object_get(m, "id"));
    json_t *att = json_object_get(m, "attachments");
    if (ev && json_array_size(att))
        json_object_set(ev, "attachments", att);
    if (ev && json_object_get(m, "thread_id")) /* the retry stays in its thread */
        json_object_set(ev, "thread_id", json_object_get(m, "thread_id"));
    int64_t seq = 0;
    if (chat_send(ctx, req, res, tenant, http_param(req, "id"), ev,
                   json_string_value(json_object_get(m, "content")), &seq) < 0)
        return;
    http_json(req, res, 200, message_json(ev, seq));
}

static void retry_i(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_retry);
}

/* ---- suggestions: what the session itself points at ------------------------------------------ */

#define SUGGEST_SCAN 200 /* the newest events looked at (a page) */
#define SUGGEST_MAX 10

/* Files the agent changed (newest first) and tools that failed, from the session's events; no
 * text is made up: titles and descriptions are the events' own. Quick actions attach a changed
 * file to the next message. */
static void get_suggestions(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = NULL;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, &tenant);
    if (!row)
        return;
    static const char *const types[] = {"file_edit", "tool_result", NULL};
    struct event_filter f = {.types = types, .ascending = false};
    struct page pg = {1, SUGGEST_SCAN};
    json_t *items = NULL;
    int64_t total = 0;
    int rc = store_event_list(ctx->store, tenant, row->id, &f, &pg, &items, &total);
    if (rc < 0) {
        http_error(req, res, rc, "cannot read the session's events");
        return;
    }
    json_t *sugg = json_array(), *quick = json_array(), *seen = json_object();
    size_t i, files = 0, fails = 0;
    json_t *ev;
    json_array_foreach(items, i, ev) {
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (!strcmp(type, "file_edit") && files < SUGGEST_MAX) {
            const char *path = json_string_value(json_object_get(ev, "file_path"));
            if (!path || json_object_get(seen, path) || json_object_get(ev, "status"))
                continue; /* the agent's "started" notices carry no counts */
            json_object_set_new(seen, path, json_true());
            char desc[96];
            snprintf(desc, sizeof(desc), "+%lld −%lld",
                     (long long)json_integer_value(json_object_get(ev, "lines_added")),
                     (long long)json_integer_value(json_object_get(ev, "lines_removed")));
            json_array_append_new(sugg, json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "file",
                                                  "title", path, "description", desc, "file_path",
                                                  path, "relevance", files < 3 ? "high" : "medium"));
            char id[64];
            snprintf(id, sizeof(id), "attach-%zu", files);
            json_array_append_new(quick, json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "id", id,
                                                   "label", path, "icon", "paperclip", "action",
                                                   "attach_file", "params", "type", "file",
                                                   "file_path", path));
            files++;
        } else if (!strcmp(type, "tool_result") && fails < SUGGEST_MAX &&
                   !strcmp(json_string_value(json_object_get(ev, "status")) ?: "", "failed")) {
            const char *tool = json_string_value(json_object_get(ev, "tool_name")) ?: "";
            const char *out = json_string_value(json_object_get(ev, "tool_output")) ?: "";
            size_t n = strcspn(out, "\n");
            json_t *s = json_pack("{s:s, s:s, s:s#, s:s, s:s}", "type", "action", "title", tool,
                                  "description", out, n > 200 ? 200 : n, "command", tool,
                                  "relevance", "high");
            json_array_append_new(sugg, s);
            fails++;
        }
    }
    json_decref(items);
    json_decref(seen);
    http_json(req, res, 200,
              json_pack("{s:o, s:o}", "context_suggestions", sugg, "quick_actions", quick));
}

int api_chat_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/chat", get_chat, ctx, 0, 0);
    rc |= router_add(r, "POST", "/api/v1/sessions/{id}/chat/messages", post_message_i, ctx, 0,
                     CHAT_BODY_MAX);
    rc |= router_add(r, "PUT", "/api/v1/sessions/{id}/chat/messages/{messageId}", put_message,
                     ctx, 0, CHAT_BODY_MAX);
    rc |= router_add(r, "DELETE", "/api/v1/sessions/{id}/chat/messages/{messageId}",
                     delete_message, ctx, 0, 0);
    rc |= router_add(r, "POST", "/api/v1/sessions/{id}/chat/messages/{messageId}/retry", retry_i,
                     ctx, 0, 4096);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/chat/suggestions", get_suggestions, ctx, 0,
                     0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/chat/threads", get_threads, ctx, 0, 0);
    rc |= router_add(r, "POST", "/api/v1/sessions/{id}/chat/threads", post_thread_i, ctx, 0,
                     CHAT_BODY_MAX);
    rc |= chat_attach_register(r, ctx);
    rc |= chat_context_register(r, ctx);
    rc |= api_webhooks_register(r, ctx);
    rc |= chat_stream_register(r, ctx);
    return rc ? AH_E_NOMEM : 0;
}
