/*
 * chat_stream.c — POST /sessions/{id}/chat/stream (API.md §7.5, issue 15): sends a user message
 * as POST …/chat/messages does, then streams the agent's reply as Server-Sent Events:
 *
 *   message_start     {id, timestamp}        at the reply's first event (id: that event's message)
 *   content_delta     {delta}                each assistant text, as the agent produced it
 *   tool_call         {tool_name, tool_args} each tool the agent called
 *   message_complete  {id, final_content}    the turn ended; then the stream closes
 *
 * The agents write whole messages (their CLIs' JSON output has no token-level deltas we could
 * pass on honestly), so a delta is one assistant message of the turn. The turn ends when the
 * agent reports it (`usage`: the end-of-turn report of claude-code and codex, and the scripted
 * agent's `usage` step) or when the session stops running (paused, or ended). The reply's events
 * are the session's events (stored, numbered): GET …/chat shows the same reply afterwards, and
 * each frame's `id:` is the seq of the event it came from.
 *
 * The stream is a bus subscriber from the user message's seq on, wrapped in an http_stream like
 * GET …/events (no thread, constant memory besides the text of the reply, capped).
 */
#include <stdio.h>
#include <string.h>

#include "chat_int.h"

#define STREAM_BATCH 64
#define STREAM_REPLY_MAX (1024 * 1024) /* final_content kept; the deltas themselves are not cut */

struct chat_stream {
    struct sse_out out; /* first: the streams thread sees its entry */
    struct http_stream *stream;
    struct bus_sub *sub;
    char reply_id[32]; /* "" until message_start */
    struct ah_buf text; /* the reply's assistant texts, joined by blank lines */
};

static void cs_wake(void *arg) {
    http_stream_wake(((struct chat_stream *)arg)->stream);
}

static int frame(struct sse_out *o, int64_t seq, const char *event, json_t *data) {
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (!text)
        return AH_E_NOMEM;
    int rc = ah_buf_printf(&o->buf, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)seq, event,
                           text);
    free(text);
    return rc;
}

static int start(struct chat_stream *s, int64_t seq, json_t *ts) {
    if (s->reply_id[0])
        return 0;
    snprintf(s->reply_id, sizeof(s->reply_id), "msg-%lld", (long long)seq);
    return frame(&s->out, seq, "message_start",
                 json_pack("{s:s, s:O}", "id", s->reply_id, "timestamp", ts));
}

static int complete(struct chat_stream *s, int64_t seq, json_t *ts) {
    int rc = start(s, seq, ts);
    if (rc == 0)
        rc = frame(&s->out, seq, "message_complete",
                   json_pack("{s:s, s:s%}", "id", s->reply_id, "final_content",
                             s->text.p ? s->text.p : "", s->text.n));
    s->out.done = true;
    return rc;
}

/* One event of the session after the user message: its frames, if it belongs to the reply. */
static int on_event(struct chat_stream *s, const struct bus_event *e) {
    json_t *ev = json_loadb(e->json, e->len, 0, NULL);
    if (!ev)
        return AH_E_NOMEM;
    json_t *ts = json_object_get(ev, "ts");
    if (!json_is_string(ts))
        ts = json_object_get(ev, "timestamp");
    int rc = 0;
    const char *type = e->type, *role = json_string_value(json_object_get(ev, "role"));
    json_t *content = json_object_get(ev, "content");
    if (!strcmp(type, "chat_message") && role && !strcmp(role, "assistant") &&
        json_is_string(content)) {
        if ((rc = start(s, e->seq, ts)) == 0)
            rc = frame(&s->out, e->seq, "content_delta", json_pack("{s:O}", "delta", content));
        if (rc == 0 && s->text.n + json_string_length(content) + 2 <= STREAM_REPLY_MAX) {
            if (s->text.n)
                ah_buf_append(&s->text, "\n\n", 2);
            ah_buf_append(&s->text, json_string_value(content), json_string_length(content));
        }
    } else if (!strcmp(type, "tool_use") && json_is_object(json_object_get(ev, "tool_args")) &&
               !json_object_get(ev, "last_line")) { /* a running tool's progress is no new call */
        if ((rc = start(s, e->seq, ts)) == 0)
            rc = frame(&s->out, e->seq, "tool_call",
                       json_pack("{s:O, s:O}", "tool_name", json_object_get(ev, "tool_name"),
                                 "tool_args", json_object_get(ev, "tool_args")));
    } else if (!strcmp(type, "usage")) {
        rc = complete(s, e->seq, ts);
    } else if (!strcmp(type, "status")) {
        const char *st = json_string_value(json_object_get(ev, "status"));
        if (e->terminal || (st && (!strcmp(st, "paused") || !strcmp(st, "pausing"))))
            rc = complete(s, e->seq, ts);
    }
    json_decref(ev);
    return rc;
}

static int cs_fill(void *ctx, struct sse_out *o) {
    struct chat_stream *s = ctx;
    struct bus_event *evs[STREAM_BATCH];
    int n = bus_next(s->sub, evs, STREAM_BATCH);
    if (n < 0)
        return n;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (rc == 0 && !o->done)
            rc = on_event(s, evs[i]);
        bus_event_unref(evs[i]);
    }
    return rc;
}

static ssize_t cs_read(void *ctx, char *out, size_t max) {
    struct chat_stream *s = ctx;
    return sse_pump(&s->out, cs_fill, s, out, max);
}

static void cs_close(void *ctx) {
    struct chat_stream *s = ctx;
    streams_remove(&s->out.entry);
    bus_unsubscribe(s->sub); /* after this no wake can reach the stream */
    ah_buf_clear(&s->out.buf);
    ah_buf_clear(&s->text);
    http_stream_unref(s->stream);
    free(s);
}

static const struct http_stream_ops cs_ops = {.read = cs_read, .close = cs_close};

static void post_stream(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *accept = http_header(req, "Accept");
    if (accept && !strstr(accept, "text/event-stream") && !strstr(accept, "*/*")) {
        http_error(req, res, AH_E_NOTACCEPTABLE,
                   "this route answers text/event-stream; POST …/chat/messages answers JSON");
        return;
    }
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    if (!body)
        return;
    json_t *flag = json_object_get(body, "stream");
    if (flag && !json_is_true(flag)) {
        struct ah_problem p = {0};
        problem_field(&p, "stream", "must be true (or absent) here; POST …/chat/messages sends "
                                    "without streaming");
        http_fail(req, res, &p);
        return;
    }
    const char *id = api_session_id(req, res);
    const char *tenant = id ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    struct chat_stream *s = calloc(1, sizeof(*s));
    if (!s) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    s->out.buf.max = 8 * 1024 * 1024;
    s->text.max = STREAM_REPLY_MAX + 1;
    static const char *const extra[] = {"stream", NULL};
    int64_t seq = 0;
    AH_AUTO(json_decrefp) json_t *ev = chat_post_user(ctx, req, res, body, extra, &seq);
    if (!ev) {
        free(s);
        return;
    }
    /* from the user message's seq on: what the agent answered meanwhile is read back */
    s->stream = http_stream_new(&cs_ops, s);
    if (!s->stream || bus_subscribe(ctx->bus, tenant, id, seq, cs_wake, s, &s->sub) < 0) {
        http_stream_unref(s->stream);
        free(s);
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    streams_owner(&s->out.entry, req);
    streams_add(&s->out.entry, s->stream);
    res->status = 200;
    res->stream = s->stream;
    http_stream_ref(s->stream); /* one for the response, one kept by s */
    res->content_type = "text/event-stream";
    http_header_add(req, res, "Cache-Control", "no-cache");
    http_header_add(req, res, "X-Accel-Buffering", "no");
}

int chat_stream_register(struct router *r, struct api_ctx *ctx) {
    return router_add(r, "POST", "/api/v1/sessions/{id}/chat/stream", post_stream, ctx, 0,
                      256 * 1024);
}
