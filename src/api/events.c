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
    "fenceResult", "hostStarted", "hostLog", "hostExited",  "summary",     NULL};

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
    struct page pg = {1, PAGE_EVENTS_PER_PAGE};
    struct event_filter f = {0};
    page_parse(http_query(req, "page"), http_query(req, "perPage"), PAGE_EVENTS_PER_PAGE,
               PAGE_MAX_PER_PAGE, &pg, &p);
    const char *type = http_query(req, "type"), *level = http_query(req, "level");
    const char *since = http_query(req, "since"), *until = http_query(req, "until");
    const char *after = http_query(req, "after"), *sort = http_query(req, "sort");
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
    if (sort && strcmp(sort, "asc") && strcmp(sort, "desc"))
        problem_field(&p, "sort", "must be asc or desc");
    f.ascending = sort && !strcmp(sort, "asc");
    if (p.code) {
        http_problem(req, res, &p);
        problem_clear(&p);
        return;
    }
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
    struct http_stream *stream; /* our reference */
    struct bus_sub *sub;
    struct ah_buf buf;          /* formatted bytes not yet handed to MHD */
    size_t off;
    bool started, done;
    int64_t end_after;          /* the session had ended at this seq when we opened; 0 if live */
    struct stream_entry entry;  /* keep-alive ticks */
};

static void sse_wake(void *arg) {
    http_stream_wake(((struct sse *)arg)->stream);
}

static int append_event(struct sse *s, const struct bus_event *e) {
    return ah_buf_printf(&s->buf, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)e->seq,
                         e->type[0] ? e->type : "message", e->json);
}

static ssize_t sse_read(void *ctx, char *out, size_t max) {
    struct sse *s = ctx;
    if (s->off >= s->buf.n) {
        s->buf.n = 0;
        s->off = 0;
        if (!s->started) { /* a reconnect hint, and headers go out at once */
            s->started = true;
            ah_buf_puts(&s->buf, "retry: 2000\n\n");
        }
        if (s->done) {
            ah_buf_clear(&s->buf); /* nothing is kept for an idle or finished stream */
            return HTTP_STREAM_END;
        }
        struct bus_event *evs[SSE_BATCH];
        int n = bus_next(s->sub, evs, SSE_BATCH);
        if (n < 0)
            return n;
        for (int i = 0; i < n; i++) {
            if (!s->done && append_event(s, evs[i]) < 0) {
                for (int k = i; k < n; k++)
                    bus_event_unref(evs[k]);
                return AH_E_NOMEM;
            }
            if (evs[i]->terminal) /* D11: the final status event, then close */
                s->done = true;
            bus_event_unref(evs[i]);
        }
        if (s->end_after && bus_cursor(s->sub) >= s->end_after)
            s->done = true;
        int64_t idle = time_mono_ms() - __atomic_load_n(&s->entry.last_write, __ATOMIC_RELAXED);
        if (s->buf.n == 0 && idle >= streams_keepalive_ms())
            ah_buf_puts(&s->buf, ": keep-alive\n\n");
        if (s->buf.n == 0) {
            if (s->done)
                return HTTP_STREAM_END;
            ah_buf_clear(&s->buf);
            return 0; /* suspend until the bus or the ticker wakes us */
        }
    }
    size_t n = s->buf.n - s->off < max ? s->buf.n - s->off : max;
    memcpy(out, s->buf.p + s->off, n);
    s->off += n;
    streams_wrote(&s->entry);
    return (ssize_t)n;
}

static void sse_close(void *ctx) {
    struct sse *s = ctx;
    streams_remove(&s->entry);
    bus_unsubscribe(s->sub); /* after this no wake can reach the stream */
    ah_buf_clear(&s->buf);
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
    if (p.code) {
        http_problem(req, res, &p);
        problem_clear(&p);
        return;
    }
    if (q_tail && !leid && !q_after) /* D11: only the last N, then live */
        after = row->last_seq > tail ? row->last_seq - tail : 0;
    struct sse *s = calloc(1, sizeof(*s));
    if (!s) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    s->buf.max = 8 * 1024 * 1024;
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
    streams_add(&s->entry, s->stream);
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
    const char *id = api_session_id(req, res);
    const char *tenant = id ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    AH_AUTO(session_row_freep) struct session_row *row = NULL;
    int rc = store_session_get(ctx->store, tenant, id, &row);
    if (rc < 0) {
        http_error(req, res, rc, rc == AH_E_NOTFOUND ? "no session %s" : "cannot read session %s",
                   id);
        return;
    }
    if (wants_stream(req))
        live(ctx, req, res, row);
    else
        history(ctx, req, res, tenant, id);
}

int api_events_register(struct router *r, struct api_ctx *ctx) {
    return router_add(r, "GET", "/api/v1/sessions/{id}/events", get_events, ctx, 0, 0);
}
