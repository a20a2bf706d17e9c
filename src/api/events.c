/*
 * events.c — GET /api/v1/sessions/{id}/events (API.md §7.4, §7.5; D9–D12): with
 * `Accept: text/event-stream` the live stream, otherwise a page of history.
 *
 * The stream is a bus subscriber wrapped in an http_stream: its read callback formats whatever
 * the bus has after the cursor as SSE frames (id = seq, event = type, data = the event) and
 * returns 0 when there is nothing, which suspends the connection until the bus wakes it. A
 * subscriber costs its struct, one bus cursor and a frame buffer that exists only while bytes
 * are waiting to be sent. The streams thread (streams.c) wakes streams that have been silent
 * for the keep-alive interval so they send `: keep-alive` (D11) — which is also how a client
 * that went away is noticed on a suspended connection.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "routes.h"

#define SSE_BATCH 64
#define TAIL_MAX 10000

static const char *const event_types[] = {
    "status",   "log",        "thought",     "tool_use",    "tool_result", "file_edit",
    "diff",     "moment",     "delivery",    "note",        "followersCatalog", "fenceStarted",
    "fenceResult", "hostStarted", "hostLog", "hostExited",  "summary",     "chat_message", "usage", "context", NULL};

/* ---- history --------------------------------------------------------------------------------- */

static bool known_type(const char *t) {
    for (const char *const *k = event_types; *k; k++)
        if (strcmp(*k, t) == 0)
            return true;
    return false;
}

/* Splits a comma list into an arena array (NULL-terminated); NULL after recording an error. */
static const char **split_types(struct http_request *req, const char *s, struct ah_problem *p) {
    size_t n = 1;
    for (const char *c = s; *c; c++)
        n += *c == ',';
    if (n > AH_LIMIT_LIST_ITEMS) {
        problem_field(p, "type", "lists at most %d types", AH_LIMIT_LIST_ITEMS);
        return NULL;
    }
    const char **out = arena_alloc(req->arena, (n + 1) * sizeof(char *));
    if (!out)
        return NULL;
    size_t k = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        char *t = arena_strndup(req->arena, s, len);
        if (!t)
            return NULL;
        if (!known_type(t)) {
            problem_field(p, "type", "%.40s is not an event type", t);
            return NULL;
        }
        out[k++] = t;
        s += len + (s[len] == ',');
    }
    out[k] = NULL;
    return out;
}

static void history(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
                    const char *tenant, const char *id) {
    struct ah_problem p = {0};
    struct page pg = api_page(req, PAGE_EVENTS_PER_PAGE, &p);
    struct event_filter f = {0};
    const char *type = http_query(req, "type"), *level = http_query(req, "level");
    const char *since = http_query(req, "since"), *until = http_query(req, "until");
    const char *after = http_query(req, "after");
    if (type && *type)
        f.types = split_types(req, type, &p);
    enum log_level lv;
    if (level && (log_level_parse(level, &lv) < 0 || !strcmp(level, "warning")))
        problem_field(&p, "level", "must be debug, info, warn or error");
    f.level = level;
    if (since && time_parse(since, &f.since) < 0)
        problem_field(&p, "since", "must be an RFC 3339 time");
    if (until && time_parse(until, &f.until) < 0)
        problem_field(&p, "until", "must be an RFC 3339 time");
    if (after && parse_int64(after, 0, INT64_MAX, &f.after) < 0)
        problem_field(&p, "after", "must be a sequence number (an integer ≥ 0)");
    f.ascending = api_sort_ascending(req, &p);
    if (http_fail(req, res, &p))
        return;
    json_t *items = NULL;
    int64_t total = 0;
    int rc = store_event_list(ctx->store, tenant, id, &f, &pg, &items, &total);
    if (rc < 0) {
        http_error(req, res, rc, "cannot read the events");
        return;
    }
    http_json(req, res, 200, page_envelope(items, &pg, total));
}

/* ---- the live stream ------------------------------------------------------------------------- */

struct sse {
    struct sse_out out;         /* first: the streams thread sees its entry */
    struct http_stream *stream; /* our reference */
    struct bus_sub *sub;
    int64_t end_after;          /* the session had ended at this seq when we opened; 0 if live */
};

static void sse_wake(void *arg) {
    http_stream_wake(((struct sse *)arg)->stream);
}

/* Whatever the bus has after the cursor, as frames: id = seq, event = type (D11). */
static int sse_fill(void *ctx, struct sse_out *o) {
    struct sse *s = ctx;
    struct bus_event *evs[SSE_BATCH];
    int n = bus_next(s->sub, evs, SSE_BATCH);
    if (n < 0)
        return n;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const struct bus_event *e = evs[i];
        if (rc == 0 && !o->done)
            rc = ah_buf_append(&o->buf, e->frame, e->frame_len);
        if (e->terminal) /* D11: the final status event, then close */
            o->done = true;
        bus_event_unref(evs[i]);
    }
    if (s->end_after && bus_cursor(s->sub) >= s->end_after)
        o->done = true;
    return rc;
}

static ssize_t sse_read(void *ctx, char *out, size_t max) {
    struct sse *s = ctx;
    return sse_pump(&s->out, sse_fill, s, out, max);
}

static void sse_close(void *ctx) {
    struct sse *s = ctx;
    streams_remove(&s->out.entry);
    bus_unsubscribe(s->sub); /* after this no wake can reach the stream */
    ah_buf_clear(&s->out.buf);
    http_stream_unref(s->stream);
    free(s);
}

static const struct http_stream_ops sse_ops = {.read = sse_read, .close = sse_close};

static void live(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
                 const struct session_row *row) {
    struct ah_problem p = {0};
    int64_t after = 0, tail = 0;
    const char *leid = http_header(req, "Last-Event-ID"), *q_after = http_query(req, "after");
    const char *q_tail = http_query(req, "tail");
    if (leid && parse_int64(leid, 0, INT64_MAX, &after) < 0)
        problem_field(&p, "Last-Event-ID", "must be a sequence number (an integer ≥ 0)");
    else if (!leid && q_after && parse_int64(q_after, 0, INT64_MAX, &after) < 0)
        problem_field(&p, "after", "must be a sequence number (an integer ≥ 0)");
    if (q_tail && parse_int64(q_tail, 0, TAIL_MAX, &tail) < 0)
        problem_field(&p, "tail", "must be an integer from 0 to %d", TAIL_MAX);
    if (http_fail(req, res, &p))
        return;
    if (q_tail && !leid && !q_after) /* D11: only the last N, then live */
        after = row->last_seq > tail ? row->last_seq - tail : 0;
    if (session_status_terminal(row->status) && after >= row->last_seq) {
        /* D11: an ended session with nothing after the cursor. 204 is the SSE rule that tells
         * a browser's EventSource to stop reconnecting (a 200 that closes at once makes it
         * reconnect every few seconds forever). */
        res->status = 204;
        return;
    }
    struct sse *s = calloc(1, sizeof(*s));
    if (!s) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    s->out.buf.max = 8 * 1024 * 1024;
    if (session_status_terminal(row->status))
        s->end_after = row->last_seq;
    s->stream = http_stream_new(&sse_ops, s);
    if (!s->stream || bus_subscribe(ctx->bus, row->tenant_id, row->id, after, sse_wake, s,
                                    &s->sub) < 0) {
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

static bool wants_stream(const struct http_request *req) {
    const char *accept = http_header(req, "Accept");
    return accept && strstr(accept, "text/event-stream");
}

static void get_events(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = NULL;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, &tenant);
    if (!row)
        return;
    if (wants_stream(req))
        live(ctx, req, res, row);
    else
        history(ctx, req, res, tenant, row->id);
}

int api_events_register(struct router *r, struct api_ctx *ctx) {
    return router_add(r, "GET", "/api/v1/sessions/{id}/events", get_events, ctx, 0, 0);
}
