/*
 * server.c — libmicrohttpd glue: the listening socket, the request pipeline of http.h, sending
 * responses, streams with suspend/resume, the access log and a graceful stop.
 *
 * Life of a request (one struct req_ctx, allocated on MHD's first call, freed on completion):
 *   1st call  headers only: id, CORS preflight, route, Content-Length cap, Content-Type check.
 *             Any failure answers at once; MHD then discards the unread body and closes.
 *   Nth call  a slice of the body: appended under the route's cap. Past the cap nothing more
 *             is kept: the rest is read and dropped and the answer is 413 (a declared
 *             Content-Length over the cap is refused on the first call, before any body).
 *   last call body complete: the handler runs and its response is queued.
 *   completed the access-log line is written and everything is freed.
 *
 * Streams: the content-reader wrapper asks the stream for bytes; when it has none the connection
 * is suspended under the stream's mutex, and http_stream_wake resumes it. A wake that lands while
 * the reader runs sets `pending`, so no wake is ever lost. MHD must never be stopped with a
 * suspended connection: http_server_stop first marks the server ending and wakes every stream,
 * whose reader then ends the response.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

#define STREAM_BLOCK 4096
#define DISCARD_MAX (64u * 1024 * 1024) /* past this an over-limit body closes the connection */
#define CORS_ALLOW_HEADERS                                                                         \
    "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Request-Id, X-Tenant-ID"
#define CORS_EXPOSE_HEADERS                                                                        \
    "X-Request-Id, Idempotent-Replayed, Retry-After, RateLimit-Limit, RateLimit-Remaining, "       \
    "RateLimit-Reset, Location"

struct http_server {
    struct MHD_Daemon *daemon;
    int listen_fd;
    int port;
    const struct router *router;
    struct http_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t idle; /* signalled when in_flight drops to zero */
    unsigned in_flight;
    bool ending;
    struct http_stream *streams; /* live streams, for the stop sequence */
    /* deferred resumes (see http_stream_wake) */
    pthread_t waker;
    bool waker_running;
    int waker_efd;
    pthread_mutex_t wake_mu;
    bool wake_closed;              /* under wake_mu: stop has drained the list for good */
    struct http_stream *wake_head; /* streams to resume, each holding a reference */
};

struct http_stream {
    pthread_mutex_t mu;
    unsigned refs;
    const struct http_stream_ops *ops;
    void *ctx;
    struct MHD_Connection *conn; /* set while attached to a connection */
    struct http_server *srv;
    bool suspended, pending, closed;
    bool queued;                     /* on srv->wake_head, waiting for the waker */
    struct http_stream *wake_next;   /* srv->wake_head list, under srv->wake_mu */
    uint64_t bytes;
    struct http_stream *prev, *next; /* srv->streams, under srv->mu */
};

struct req_ctx {
    struct http_server *srv;
    struct MHD_Connection *conn;
    struct http_request req;
    struct route_match match;
    struct ah_buf body;
    int64_t start_mono;
    bool responded;
    bool deferred; /* no body: header checks run on the final call, keeping the connection */
    uint64_t discarded; /* bytes of an over-limit body read and dropped */
    int status;
    uint64_t bytes;
    struct http_stream *stream; /* our reference, for the byte count in the access log */
};

/* ---- streams --------------------------------------------------------------------------------- */

struct http_stream *http_stream_new(const struct http_stream_ops *ops, void *ctx) {
    struct http_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    s->refs = 1;
    s->ops = ops;
    s->ctx = ctx;
    return s;
}

void http_stream_ref(struct http_stream *s) {
    pthread_mutex_lock(&s->mu);
    s->refs++;
    pthread_mutex_unlock(&s->mu);
}

void http_stream_unref(struct http_stream *s) {
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    unsigned left = --s->refs;
    pthread_mutex_unlock(&s->mu);
    if (left)
        return;
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Resumes a suspended stream now (under s->mu). */
static void resume_locked(struct http_stream *s) {
    if (!s->closed && s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->conn);
    }
}

void http_stream_wake(struct http_stream *s) {
    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (!s->suspended) {
        s->pending = true; /* the reader is busy: it will look again before suspending */
        pthread_mutex_unlock(&s->mu);
        return;
    }
    struct http_server *srv = s->srv;
    if (!srv->cfg.wake_coalesce_ms || !srv->waker_running ||
        __atomic_load_n(&srv->ending, __ATOMIC_ACQUIRE)) { /* stopping: no more deferral */
        resume_locked(s);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    /* Resuming costs MHD a list move, an epoll change and a wake-up of its thread, per
     * connection. A busy session wakes every subscriber per event; handing the resumes to the
     * waker, which runs them wake_coalesce_ms later, turns a burst of events into one resume
     * and one write per subscriber, for that much added latency. */
    bool queue = !s->queued;
    if (queue) {
        s->queued = true;
        s->refs++; /* the list's reference */
    }
    pthread_mutex_unlock(&s->mu);
    if (!queue)
        return;
    pthread_mutex_lock(&srv->wake_mu);
    bool closed = srv->wake_closed; /* the server stopped while we were on our way here */
    if (!closed) {
        bool first = !srv->wake_head;
        s->wake_next = srv->wake_head;
        srv->wake_head = s;
        uint64_t one = 1; /* under the lock: the eventfd is closed only once wake_closed is set */
        if (first && write(srv->waker_efd, &one, sizeof(one)) < 0) {
            /* the counter is saturated: the waker is due anyway */
        }
    }
    pthread_mutex_unlock(&srv->wake_mu);
    if (closed) {
        pthread_mutex_lock(&s->mu);
        s->queued = false;
        resume_locked(s);
        pthread_mutex_unlock(&s->mu);
        http_stream_unref(s);
    }
}

/* Resumes everything queued; `now` also for streams queued while we ran. */
static void resume_queued(struct http_server *srv) {
    pthread_mutex_lock(&srv->wake_mu);
    struct http_stream *list = srv->wake_head;
    srv->wake_head = NULL;
    pthread_mutex_unlock(&srv->wake_mu);
    while (list) {
        struct http_stream *s = list;
        list = s->wake_next;
        pthread_mutex_lock(&s->mu);
        s->queued = false;
        resume_locked(s);
        pthread_mutex_unlock(&s->mu);
        http_stream_unref(s);
    }
}

static void *waker_main(void *arg) {
    struct http_server *srv = arg;
    for (;;) {
        uint64_t n;
        if (read(srv->waker_efd, &n, sizeof(n)) < 0 && errno == EINTR)
            continue;
        pthread_mutex_lock(&srv->wake_mu);
        bool idle = !srv->wake_head;
        pthread_mutex_unlock(&srv->wake_mu);
        if (idle && __atomic_load_n(&srv->ending, __ATOMIC_ACQUIRE))
            return NULL;
        /* a one-shot pause after an event, not a poll: it lets the burst gather */
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)srv->cfg.wake_coalesce_ms * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        resume_queued(srv);
        if (__atomic_load_n(&srv->ending, __ATOMIC_ACQUIRE))
            return NULL;
    }
}

bool http_stream_ending(const struct http_stream *s) {
    return s->srv && __atomic_load_n(&s->srv->ending, __ATOMIC_ACQUIRE);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    struct http_stream *s = cls;
    for (;;) {
        if (http_stream_ending(s))
            return MHD_CONTENT_READER_END_OF_STREAM;
        ssize_t n = s->ops->read(s->ctx, buf, max);
        if (n > 0) {
            __atomic_add_fetch(&s->bytes, (uint64_t)n, __ATOMIC_RELAXED);
            return n;
        }
        if (n == HTTP_STREAM_END)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (n < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        pthread_mutex_lock(&s->mu);
        if (s->pending) {
            s->pending = false;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        s->suspended = true;
        MHD_suspend_connection(s->conn);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
}

/* MHD is done with the response: the connection finished, failed or the client went away. */
static void stream_free(void *cls) {
    struct http_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    s->suspended = false;
    pthread_mutex_unlock(&s->mu);
    struct http_server *srv = s->srv;
    pthread_mutex_lock(&srv->mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&srv->mu);
    s->ops->close(s->ctx);
    http_stream_unref(s);
}

/* ---- request bookkeeping --------------------------------------------------------------------- */

struct kv_collect {
    struct arena *arena;
    struct http_kv *items;
    size_t n, cap;
};

static enum MHD_Result collect_kv(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value) {
    (void)kind;
    struct kv_collect *c = cls;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct http_kv *items = arena_alloc(c->arena, cap * sizeof(*items));
        if (!items)
            return MHD_NO;
        if (c->n)
            memcpy(items, c->items, c->n * sizeof(*items));
        c->items = items;
        c->cap = cap;
    }
    const char *k = arena_strdup(c->arena, key ? key : "");
    const char *v = arena_strdup(c->arena, value ? value : "");
    if (!k || !v)
        return MHD_NO;
    c->items[c->n++] = (struct http_kv){k, v};
    return MHD_YES;
}

static bool request_id_ok(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 128)
        return false;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

static struct req_ctx *req_ctx_new(struct http_server *srv, struct MHD_Connection *conn,
                                   const char *url, const char *method) {
    struct req_ctx *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return NULL;
    rc->srv = srv;
    rc->conn = conn;
    rc->start_mono = time_mono_ms();
    struct arena *a = rc->req.arena = arena_new();
    if (!a) {
        free(rc);
        return NULL;
    }
    rc->req.method = arena_strdup(a, method);
    rc->req.path = arena_strdup(a, url);
    rc->req.tenant = "default";
    struct kv_collect h = {.arena = a}, q = {.arena = a};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_kv, &h);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_kv, &q);
    rc->req.headers = h.items;
    rc->req.n_headers = h.n;
    rc->req.query = q.items;
    rc->req.n_query = q.n;
    const char *given = http_header(&rc->req, "X-Request-Id");
    if (request_id_ok(given)) {
        rc->req.request_id = given;
    } else {
        char *id = arena_alloc(a, ULID_LEN + 1);
        if (id && ulid_new(id) == 0)
            rc->req.request_id = id;
    }
    if (!rc->req.method || !rc->req.path || !rc->req.request_id) {
        arena_free(a);
        free(rc);
        return NULL;
    }
    pthread_mutex_lock(&srv->mu);
    srv->in_flight++;
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

static void req_ctx_free(struct req_ctx *rc) {
    struct http_server *srv = rc->srv;
    http_stream_unref(rc->stream);
    ah_buf_clear(&rc->body);
    arena_free(rc->req.arena);
    free(rc);
    pthread_mutex_lock(&srv->mu);
    if (--srv->in_flight == 0)
        pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->mu);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    struct req_ctx *rc = *con_cls;
    if (!rc)
        return;
    *con_cls = NULL;
    if (log_enabled(LOG_INFO)) {
        uint64_t bytes = rc->bytes;
        if (rc->stream)
            bytes = __atomic_load_n(&rc->stream->bytes, __ATOMIC_RELAXED);
        json_t *f = json_pack("{s:s, s:s, s:s, s:i, s:I, s:I}", "id", rc->req.request_id,
                              "method", rc->req.method, "path", rc->req.path, "status",
                              rc->status, "bytes", (json_int_t)bytes, "duration_ms",
                              (json_int_t)(time_mono_ms() - rc->start_mono));
        if (f && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
            json_object_set_new(f, "aborted", json_true());
        log_json(LOG_INFO, "request", f);
        json_decref(f);
    }
    req_ctx_free(rc);
}

/* ---- CORS ------------------------------------------------------------------------------------ */

static bool origin_allowed(const struct http_server *srv, const char *origin) {
    if (!origin || !srv->cfg.cors_origins)
        return false;
    for (const char *const *o = srv->cfg.cors_origins; *o; o++)
        if (strcmp(*o, "*") == 0 || strcasecmp(*o, origin) == 0)
            return true;
    return false;
}

/* ---- sending --------------------------------------------------------------------------------- */

static enum MHD_Result send_response(struct req_ctx *rc, struct http_response *res) {
    struct http_server *srv = rc->srv;
    struct MHD_Response *r;
    if (res->stream) {
        struct http_stream *s = res->stream;
        s->conn = rc->conn;
        s->srv = srv;
        http_stream_ref(s); /* the MHD side; dropped in stream_free */
        rc->stream = AH_TAKE(res->stream);
        pthread_mutex_lock(&srv->mu);
        s->next = srv->streams;
        if (s->next)
            s->next->prev = s;
        srv->streams = s;
        pthread_mutex_unlock(&srv->mu);
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_reader, s,
                                              stream_free);
        if (!r) {
            stream_free(s);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                res->content_type ? res->content_type : "text/event-stream");
    } else if (res->has_file) {
        r = MHD_create_response_from_fd64(res->file_size, res->file_fd);
        if (!r)
            return MHD_NO;
        res->has_file = false; /* MHD closes it */
        rc->bytes = res->file_size;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                res->content_type ? res->content_type : "application/octet-stream");
    } else {
        char *body = NULL;
        size_t len = 0;
        if (res->json) {
            body = json_dumps(res->json, JSON_COMPACT);
            len = body ? strlen(body) : 0;
            if (!body) { /* OOM while serialising: fall back to a bare 503 */
                res->status = 503;
                res->content_type = "text/plain";
            }
        } else if (res->body) {
            body = AH_TAKE(res->body);
            len = res->body_len;
        }
        r = MHD_create_response_from_buffer(len, body ? body : (void *)"", body ? MHD_RESPMEM_MUST_FREE
                                                                           : MHD_RESPMEM_PERSISTENT);
        if (!r) {
            free(body);
            return MHD_NO;
        }
        rc->bytes = len;
        if (len || res->json)
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                    res->content_type ? res->content_type : "application/json");
    }
    MHD_add_response_header(r, "X-Request-Id", rc->req.request_id);
    if (!http_header(&rc->req, "Cache-Control"))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    const char *origin = http_header(&rc->req, "Origin");
    if (origin_allowed(srv, origin)) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(r, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
        MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Origin");
    }
    for (size_t i = 0; i < res->n_headers; i++)
        MHD_add_response_header(r, res->headers[i].name, res->headers[i].value);
    if (__atomic_load_n(&srv->ending, __ATOMIC_ACQUIRE))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    rc->status = res->status ? res->status : 200;
    rc->responded = true;
    enum MHD_Result ok = MHD_queue_response(rc->conn, (unsigned)rc->status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_error(struct req_ctx *rc, int code, const char *allow, const char *fmt,
                                  ...) __attribute__((format(printf, 4, 5)));
static enum MHD_Result send_error(struct req_ctx *rc, int code, const char *allow, const char *fmt,
                                  ...) {
    struct http_response res = {0};
    struct ah_problem p = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p.detail, sizeof(p.detail), fmt, ap);
    va_end(ap);
    http_problem(&rc->req, &res, &p);
    if (allow)
        http_header_add(&rc->req, &res, "Allow", allow);
    enum MHD_Result ok = send_response(rc, &res);
    http_response_clear(&res);
    return ok;
}

/* ---- the pipeline ---------------------------------------------------------------------------- */

static bool is_json_type(const char *ct) {
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, "; ");
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
           (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0 && strncasecmp(ct, "application/", 12) == 0);
}

/* OPTIONS: a CORS preflight (Origin + Access-Control-Request-Method) or a plain "what is allowed
 * here". Either way the answer lists the methods the path supports. */
static enum MHD_Result handle_options(struct req_ctx *rc) {
    char allow[128];
    struct route_match m;
    int rc_match = router_match(rc->srv->router, "OPTIONS", rc->req.path, rc->req.arena, &m,
                                allow, sizeof(allow));
    if (rc_match == AH_E_NOTFOUND)
        return send_error(rc, AH_E_NOTFOUND, NULL, "no resource at %s", rc->req.path);
    size_t l = strlen(allow);
    snprintf(allow + l, sizeof(allow) - l, "%sOPTIONS", l ? ", " : "");
    const char *origin = http_header(&rc->req, "Origin");
    bool preflight = origin && http_header(&rc->req, "Access-Control-Request-Method");
    if (preflight && !origin_allowed(rc->srv, origin))
        return send_error(rc, AH_E_FORBIDDEN, NULL,
                          "origin %s is not allowed; add it to cors-origins", origin);
    struct http_response res = {.status = 204};
    http_header_add(&rc->req, &res, "Allow", allow);
    if (preflight) {
        http_header_add(&rc->req, &res, "Access-Control-Allow-Methods", allow);
        http_header_add(&rc->req, &res, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
        http_header_add(&rc->req, &res, "Access-Control-Max-Age", "600");
    }
    enum MHD_Result ok = send_response(rc, &res);
    http_response_clear(&res);
    return ok;
}

/* First call: everything that can be decided from the request line and headers. */
static enum MHD_Result on_headers(struct req_ctx *rc) {
    struct http_request *req = &rc->req;
    if (strcmp(req->method, "OPTIONS") == 0)
        return handle_options(rc);
    char allow[128];
    int r = router_match(rc->srv->router, req->method, req->path, req->arena, &rc->match, allow,
                         sizeof(allow));
    if (r == AH_E_NOTFOUND)
        return send_error(rc, AH_E_NOTFOUND, NULL, "no resource at %s", req->path);
    if (r == AH_E_METHOD) {
        size_t l = strlen(allow);
        snprintf(allow + l, sizeof(allow) - l, ", OPTIONS");
        return send_error(rc, AH_E_METHOD, allow, "%s is not allowed on %s; allowed: %s",
                          req->method, req->path, allow);
    }
    if (r < 0)
        return send_error(rc, r, NULL, "cannot route the request");
    memcpy(req->params, rc->match.params, sizeof(req->params));
    req->n_params = rc->match.n_params;
    req->route_ctx = rc->match.ctx;

    size_t cap = rc->match.max_body ? rc->match.max_body : rc->srv->cfg.max_body;
    rc->body.max = cap;
    const char *cl = http_header(req, "Content-Length");
    const char *te = http_header(req, "Transfer-Encoding");
    int64_t declared = 0;
    if (cl && parse_int64(cl, 0, INT64_MAX, &declared) < 0)
        return send_error(rc, AH_E_BADREQ, NULL, "Content-Length is not a number");
    if ((uint64_t)declared > cap)
        return send_error(rc, AH_E_TOOLARGE, NULL,
                          "the request body is %lld bytes; the limit here is %zu bytes",
                          (long long)declared, cap);
    bool has_body = declared > 0 || (te && strcasestr(te, "chunked"));
    if (has_body && !(rc->match.flags & ROUTE_ANY_BODY) &&
        !is_json_type(http_header(req, "Content-Type")))
        return send_error(rc, AH_E_MEDIATYPE, NULL,
                          "the request body must be application/json, not %s",
                          http_header(req, "Content-Type") ? http_header(req, "Content-Type")
                                                           : "unlabelled");
    return MHD_YES;
}

static enum MHD_Result on_body_complete(struct req_ctx *rc) {
    struct http_request *req = &rc->req;
    if (rc->body.p) {
        req->body = rc->body.p;
        req->body_len = rc->body.n;
    }
    struct http_response res = {0};
    rc->match.fn(req, &res);
    if (!res.status && !res.json && !res.body && !res.stream)
        http_error(req, &res, AH_E_INTERNAL, "the handler produced no response");
    enum MHD_Result ok = send_response(rc, &res);
    http_response_clear(&res);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    (void)version;
    struct http_server *srv = cls;
    struct req_ctx *rc = *con_cls;
    if (!rc) {
        rc = req_ctx_new(srv, conn, url, method);
        if (!rc)
            return MHD_NO; /* out of memory: drop the connection */
        *con_cls = rc;
        /* Without a body nothing is gained by answering before MHD has the whole request, and
         * answering early makes MHD close the connection; so wait for the final call. */
        const char *cl = http_header(&rc->req, "Content-Length");
        const char *te = http_header(&rc->req, "Transfer-Encoding");
        if ((!cl || strcmp(cl, "0") == 0) && !te && strcmp(method, "OPTIONS") != 0) {
            rc->deferred = true;
            return MHD_YES;
        }
        return on_headers(rc);
    }
    if (rc->responded) { /* answered early: swallow whatever MHD still hands us */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rc->discarded) { /* over the cap: count and drop, answer 413 at the end */
            rc->discarded += n;
            return rc->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
        }
        int r = ah_buf_append(&rc->body, upload_data, n);
        if (r == AH_E_TOOLARGE) {
            /* libmicrohttpd 0.9.75 cannot queue a response while a body is arriving (it
             * reports an internal error and closes), so the rest is read and thrown away —
             * never stored — and the 413 goes out once the client has finished; a client that
             * sends far more than that is disconnected instead. */
            rc->discarded = rc->body.n + n;
            ah_buf_clear(&rc->body);
            return MHD_YES;
        }
        if (r < 0)
            return MHD_NO; /* out of memory: drop the connection rather than lie */
        return MHD_YES;
    }
    if (rc->discarded)
        return send_error(rc, AH_E_TOOLARGE, NULL,
                          "the request body is larger than the limit of %zu bytes", rc->body.max);
    if (rc->deferred) {
        rc->deferred = false;
        enum MHD_Result r = on_headers(rc);
        if (r == MHD_NO || rc->responded)
            return r;
    }
    return on_body_complete(rc);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    if (!log_enabled(LOG_DEBUG))
        return;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    json_t *f = json_pack("{s:s}", "component", "libmicrohttpd");
    log_json(LOG_DEBUG, msg, f);
    json_decref(f);
}

/* ---- start and stop -------------------------------------------------------------------------- */

static int listen_socket(const char *bind_addr, int port, int *ret_fd, int *ret_port,
                         struct ah_problem *reterr) {
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res = NULL;
    int gai = getaddrinfo(bind_addr, service, &hints, &res);
    if (gai != 0)
        return problem_set(reterr, AH_E_INVAL, "cannot resolve bind address %s: %s", bind_addr,
                           gai_strerror(gai));
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1, zero = 0;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (err == EADDRINUSE)
            return problem_set(reterr, AH_E_EXISTS, "address %s:%d is already in use", bind_addr,
                               port);
        return problem_set(reterr, ah_err_from_errno(err), "cannot listen on %s:%d: %s",
                           bind_addr, port, strerror(err));
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *ret_fd = fd;
    return 0;
}

int http_server_start(const struct http_config *cfg, const struct router *router,
                      struct http_server **ret, struct ah_problem *reterr) {
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    srv->cfg = *cfg;
    if (!srv->cfg.max_body)
        srv->cfg.max_body = AH_LIMIT_BODY_DEFAULT;
    if (!srv->cfg.shutdown_grace_ms)
        srv->cfg.shutdown_grace_ms = 10000;
    srv->router = router;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->idle, NULL);
    int r = listen_socket(cfg->bind, cfg->port, &srv->listen_fd, &srv->port, reterr);
    if (r < 0) {
        pthread_mutex_destroy(&srv->mu);
        pthread_cond_destroy(&srv->idle);
        free(srv);
        return r;
    }
    unsigned threads = cfg->threads;
    if (!threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 1 ? (unsigned)n : 2;
    }
    srv->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, srv, MHD_OPTION_LISTEN_SOCKET, srv->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)60000, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(8 * 1024),
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (srv->daemon && srv->cfg.wake_coalesce_ms) {
        srv->waker_efd = eventfd(0, EFD_CLOEXEC);
        pthread_mutex_init(&srv->wake_mu, NULL);
        if (srv->waker_efd >= 0 && pthread_create(&srv->waker, NULL, waker_main, srv) == 0)
            srv->waker_running = true;
        else if (srv->waker_efd >= 0)
            close(srv->waker_efd); /* resumes then happen at once: slower, still correct */
    }
    if (!srv->daemon) {
        close(srv->listen_fd);
        pthread_mutex_destroy(&srv->mu);
        pthread_cond_destroy(&srv->idle);
        free(srv);
        return problem_set(reterr, AH_E_IO, "cannot start the HTTP server (libmicrohttpd)");
    }
    *ret = srv;
    return 0;
}

int http_server_port(const struct http_server *s) {
    return s->port;
}

void http_server_stop(struct http_server *srv) {
    if (!srv)
        return;
    MHD_quiesce_daemon(srv->daemon); /* no new connections from here on */
    pthread_mutex_lock(&srv->mu);
    __atomic_store_n(&srv->ending, true, __ATOMIC_RELEASE);
    for (struct http_stream *s = srv->streams; s; s = s->next)
        http_stream_wake(s);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += srv->cfg.shutdown_grace_ms / 1000;
    deadline.tv_nsec += (long)(srv->cfg.shutdown_grace_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    while (srv->in_flight > 0) {
        if (pthread_cond_timedwait(&srv->idle, &srv->mu, &deadline) == ETIMEDOUT) {
            log_msg(LOG_WARN, "%u request(s) still running after %u ms; closing them",
                    srv->in_flight, srv->cfg.shutdown_grace_ms);
            break;
        }
    }
    pthread_mutex_unlock(&srv->mu);
    if (srv->waker_running) { /* it exits on the ending flag; nothing queued may be left behind */
        uint64_t one = 1;
        if (write(srv->waker_efd, &one, sizeof(one)) < 0) {
            /* cannot fail on our eventfd */
        }
        pthread_join(srv->waker, NULL);
        /* A wake that read `ending` false just before we set it may still be on its way:
         * from here on it resumes its stream itself (http_stream_wake). */
        pthread_mutex_lock(&srv->wake_mu);
        srv->wake_closed = true;
        pthread_mutex_unlock(&srv->wake_mu);
        resume_queued(srv);
        close(srv->waker_efd);
    }
    /* Anything that suspended itself again after the first wake is resumed once more, at once:
     * MHD must not be stopped with a suspended connection. */
    pthread_mutex_lock(&srv->mu);
    for (struct http_stream *s = srv->streams; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        resume_locked(s);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&srv->mu);
    MHD_stop_daemon(srv->daemon);
    close(srv->listen_fd);
    if (srv->cfg.wake_coalesce_ms)
        pthread_mutex_destroy(&srv->wake_mu); /* every stream is closed: no wake can come */
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->idle);
    free(srv);
}
