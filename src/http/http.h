/*
 * http.h — the HTTP front door: a libmicrohttpd server (epoll thread pool), a router with path
 * parameters, the fixed middleware pipeline and the request/response structs handlers work on.
 *
 * Pipeline, in order (each step may answer and stop the request):
 *   gate: first request of a connection checked from its raw bytes (framing 400/501, sizes
 *   414/431, TLS or garbage 400, idle headers 408; front.h) → framing and path checks (400)
 *   → request id (D8) → access log → host/origin guard (421/403, D27) → CORS (preflight 204)
 *   → route match (404 / 405 + Allow) → body limits (413, enforced while reading) and content
 *   type (415) → handler
 *
 * Handlers map a struct http_request to a struct http_response and never touch MHD, so they can
 * be tested without a socket. They run on an MHD thread and must not block on an agent.
 * Streaming responses (SSE) hand the server a struct http_stream; its connection is suspended
 * while the stream has nothing to send and resumed by http_stream_wake (no thread per client).
 */
#ifndef AH_HTTP_H
#define AH_HTTP_H

#include <sys/types.h>

#include "../core/core.h"

#define HTTP_MAX_PARAMS 8
#define HTTP_MAX_RES_HEADERS 16

struct http_kv {
    const char *name;
    const char *value;
};

/* Everything a handler may read about a request. Strings live in req->arena and are valid until
 * the request completes. */
struct http_request {
    const char *method;     /* "GET", … (HEAD is routed as GET) */
    const char *path;       /* percent-decoded path, no query */
    const char *request_id; /* D8: the client's X-Request-Id if valid, else a fresh ULID */
    struct http_kv *headers;
    size_t n_headers;
    struct http_kv *query;
    size_t n_query;
    struct http_kv params[HTTP_MAX_PARAMS]; /* from the route pattern's {name} segments */
    size_t n_params;
    const char *body; /* NUL-terminated; NULL when there was none */
    size_t body_len;
    void *body_ctx; /* a streamed body's sink (struct http_body_ops), else NULL */
    struct arena *arena;
    const char *tenant; /* effective tenant; "default" until auth assigns one */
    /* D48: this request's span in the caller's trace (or a new trace): 32 and 16 hex digits, and
     * the traceparent to hand to whatever the request starts (agents, outgoing calls). */
    const char *trace_id, *span_id, *traceparent;
    void *route_ctx;    /* the ctx given to router_add */
    const char *route_pattern; /* the matched route's pattern as registered */
    const void *principal;     /* who is calling (auth.h's struct auth_principal), set by the
                                  access hook; NULL when no hook runs */
    const char *remote_addr;   /* the peer's address, "" when unknown */
};

/* Header (case-insensitive), query parameter and path parameter lookups; NULL when absent. */
const char *http_header(const struct http_request *req, const char *name);
const char *http_query(const struct http_request *req, const char *name);
const char *http_param(const struct http_request *req, const char *name);

/* A body read in chunks by the server; see the comment on the ops. */
struct http_stream;
struct http_stream_ops {
    /* Fills buf with up to max bytes: returns the count (> 0), 0 when there is nothing to send
     * yet (the connection is suspended until http_stream_wake), HTTP_STREAM_END when done, or a
     * negative AH_E_* to abort the connection. Called on an MHD thread, never concurrently. */
    ssize_t (*read)(void *ctx, char *buf, size_t max);
    /* The connection is finished (completed, client gone or server stopping). Called once. */
    void (*close)(void *ctx);
};
#define HTTP_STREAM_END ((ssize_t)-1000)

/* A new stream with one reference for the caller (the producer side). ops must outlive it.
 * NULL on OOM. */
struct http_stream *http_stream_new(const struct http_stream_ops *ops, void *ctx);
void http_stream_ref(struct http_stream *s);
void http_stream_unref(struct http_stream *s); /* NULL-safe */
/* Thread-safe: there is something to send. Resumes the connection if it is suspended; a wake
 * that arrives while the connection is busy is remembered. A no-op once the stream closed. */
void http_stream_wake(struct http_stream *s);
/* True once the server asked every stream to finish (shutdown): read should return END. */
bool http_stream_ending(const struct http_stream *s);

struct http_response {
    int status;
    json_t *json;             /* owned; serialised when sent */
    char *body;               /* owned (malloc), used when json is NULL */
    size_t body_len;
    const char *content_type; /* defaults to application/json */
    struct http_kv headers[HTTP_MAX_RES_HEADERS];
    size_t n_headers;
    struct http_stream *stream; /* owned reference; the response is streamed when set */
    struct http_later *later;   /* owned reference; the answer comes later (http_later) */
    bool has_file;              /* send file_size bytes of file_fd (owned, closed after) */
    int file_fd;
    uint64_t file_size;
};

/* An answer that comes later, without holding a thread: a read forwarded to an executor over
 * the link. The handler calls http_later and returns; the server keeps the connection
 * suspended (no thread held, nothing sent) until the producer answers, from any thread, with
 * http_later_answer or http_later_fail — the `after` hook then runs and the answer is sent as
 * if the handler had made it. The producer must answer exactly once, and should within a
 * bounded time (the client waits): a server that stops answers every pending one with 503 and
 * later answers are dropped. The answer's headers and content_type must not point into the
 * request's arena (it may be gone), and the producer may not keep req. Under http_loopback the
 * caller's thread waits for the answer. */
struct http_later;
/* Marks res as answered later; returns the producer's reference, or NULL on OOM (the handler
 * then answers itself). */
struct http_later *http_later(struct http_request *req, struct http_response *res);
/* Thread-safe: the answer; takes res's contents (res is left empty) and the producer's
 * reference. */
void http_later_answer(struct http_later *l, struct http_response *res);
/* Thread-safe: a Problem+JSON answer, made as http_problem makes it (the request's path and
 * id); takes p's contents (p is cleared) and the producer's reference. */
void http_later_fail(struct http_later *l, struct ah_problem *p);
/* The producer gives up without an answer: the client gets 503. NULL-safe. */
void http_later_drop(struct http_later *l);

/* 2xx JSON answer; steals body (NULL body → AH_E_NOMEM problem). */
void http_json(struct http_request *req, struct http_response *res, int status, json_t *body);
/* Problem+JSON answer for p->code (D4) with instance = request path and the request id. */
void http_problem(struct http_request *req, struct http_response *res, const struct ah_problem *p);
/* When p holds a failure: answers it as http_problem does, clears p and returns true. The one
 * line every handler ends its checks with: `if (http_fail(req, res, &p)) return;`. */
bool http_fail(struct http_request *req, struct http_response *res, struct ah_problem *p);
/* Shorthand: a problem with just a code and a detail. */
void http_error(struct http_request *req, struct http_response *res, int code, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
/* Adds a response header (copied into the request arena). AH_E_TOOLARGE when full. */
int http_header_add(struct http_request *req, struct http_response *res, const char *name,
                    const char *value);
void http_response_clear(struct http_response *res);

/* ---- router ---------------------------------------------------------------------------------- */

typedef void (*http_handler_fn)(struct http_request *req, struct http_response *res);

enum route_flags {
    ROUTE_ANY_BODY = 1 << 0, /* accept any content type (default: JSON only) */
};

struct router;
struct router *router_new(void);
void router_free(struct router *r);
/* Registers `method pattern`. Pattern segments are literals, `{name}` (one segment) or
 * `{name...}` (the rest of the path, last segment only). max_body 0 means the server default.
 * Returns 0, AH_E_INVAL for a bad pattern or AH_E_NOMEM. */
int router_add(struct router *r, const char *method, const char *pattern, http_handler_fn fn,
               void *ctx, unsigned flags, size_t max_body);

/* A request body taken as it arrives, not held whole (a proxy passing it on). The route's
 * checks (size cap, content type) and the `before` hook run once the headers are in; then:
 *   begin  — 0 with *ret_ctx: the body goes to write; < 0: refused with that code and the
 *            sentence in detail (answered once the body was read and dropped);
 *   write  — takes up to n bytes and says how many it took: fewer, even 0, when its buffer is
 *            full, and the connection then waits (suspended, no thread held) until
 *            http_body_flow_wake; called on an MHD thread, never concurrently;
 *   end    — once: complete (every byte was taken; the handler runs next with req->body_ctx
 *            = ctx and owns it) or not (over the cap, the client gone, the server stopping:
 *            the handler never sees ctx).
 * The flow is the sink's handle on the connection (a reference: http_body_flow_unref it). */
struct http_body_flow;
struct http_body_ops {
    int (*begin)(struct http_request *req, struct http_body_flow *flow, void **ret_ctx,
                 char *detail, size_t dn);
    size_t (*write)(void *ctx, const char *data, size_t n);
    void (*end)(void *ctx, bool complete);
};
/* Thread-safe: the sink has room again. A no-op once the request ended. */
void http_body_flow_wake(struct http_body_flow *f);
void http_body_flow_unref(struct http_body_flow *f); /* NULL-safe */
/* Streams the body of the route registered last to ops (ops must outlive the router).
 * AH_E_INVAL without a route or with incomplete ops. */
int router_set_body(struct router *r, const struct http_body_ops *ops);

struct route_match {
    http_handler_fn fn;
    void *ctx;
    unsigned flags;
    size_t max_body;
    const struct http_body_ops *body_ops; /* NULL: the body is read whole first */
    const char *pattern; /* lent by the router */
    struct http_kv params[HTTP_MAX_PARAMS];
    size_t n_params;
    size_t index; /* the route's registration order (router_route) */
};
/* Matches method and path. 0 on a match (params copied into arena); AH_E_METHOD when the path
 * exists with other methods (allow receives "GET, POST" …); AH_E_NOTFOUND otherwise. */
int router_match(const struct router *r, const char *method, const char *path, struct arena *a,
                 struct route_match *ret, char *allow, size_t allow_size);

/* ---- loopback: a request without a socket ---------------------------------------------------- */

struct http_loopback_request {
    const char *method;
    const char *target; /* path with an optional ?query, percent-encoded as on the wire */
    const char *body;   /* NULL when none */
    size_t body_len;
    const struct http_kv *headers; /* borrowed for the call */
    size_t n_headers;
};
/* Matches and runs the handler in the calling thread. req and res are filled (res->body holds
 * the answer's bytes; a stream is returned as res->stream, which the caller must drop); always
 * release them with http_loopback_done. 0, or AH_E_NOMEM before any handler ran. */
int http_loopback(const struct router *r, const struct http_loopback_request *lr,
                  struct http_request *req, struct http_response *res);
void http_loopback_done(struct http_request *req, struct http_response *res);

/* ---- server ---------------------------------------------------------------------------------- */

struct http_config {
    const char *bind;      /* address to listen on, e.g. "127.0.0.1" or "::" */
    int port;              /* 0 = any free port (see http_server_port) */
    size_t max_body;       /* default request body cap (D5) */
    unsigned threads;      /* MHD thread pool size; 0 = number of cores */
    const char *const *cors_origins; /* NULL-terminated allow-list; "*" allows any */
    unsigned shutdown_grace_ms; /* how long stop waits for in-flight requests; past it the
                                   remaining connections are closed (a stuck handler is left
                                   behind: http_server_stop then answers AH_E_TIMEOUT) */
    unsigned idle_timeout_ms;   /* a connection idle this long while its headers or body arrive,
                                   or between requests, is closed (default 30000); streams are
                                   exempt while they send keep-alives */
    const char *public_url;     /* D27: the URL users reach the server by, when not loopback */
    unsigned wake_coalesce_ms;  /* resumes of suspended streams are gathered this long (0: at
                                   once); trades that much latency for far fewer resumes */
    const struct http_hooks *hooks; /* NULL: none (borrowed; must outlive the server) */
    const char *tls_cert, *tls_key; /* HTTPS: PEM certificate chain and key (both or neither);
                                       the gate terminates TLS, every answer carries HSTS */
    const struct http_connect_hook *connect; /* HTTP CONNECT tunnels; NULL: none (borrowed) */
};

/* HTTP CONNECT (issue 16 item 7, SSH through the access point). libmicrohttpd cannot tunnel,
 * so the front gate takes a CONNECT itself when it is the first request of a connection: it
 * gives `open` one end of a socketpair (fd, owned by the hook from then on) and copies bytes
 * between the client and the socketpair's other end blindly, both ways, until either side
 * ends. The hook answers through fd: a complete HTTP/1.1 response (a refusal, then it closes
 * fd) or `HTTP/1.1 200 Connection Established` followed by the tunnelled bytes. It runs on the
 * gate's thread and must not wait on the network. Strings are lent for the call. */
struct http_connect_request {
    const char *authority;  /* the request target, "host:port" */
    const char *proxy_auth; /* the Proxy-Authorization value, NULL when absent */
    const char *peer;       /* the client's address, "ip:port" */
    const char *request_id; /* for the answer's X-Request-Id and the logs */
    bool tls;               /* the client came over HTTPS */
};
struct http_connect_hook {
    void (*open)(void *arg, const struct http_connect_request *rq, int fd);
    void *arg;
};

/* Middleware around every routed request (authentication, roles, rate limits, audit: api/access.c
 * wires auth/ in). `before` runs once the body is complete, just before the handler: false
 * means it answered in res and the handler is skipped. `after` sees the handler's answer (it
 * may add headers). `closed` tells the D27 host/origin guard whether the API is open (no
 * credentials configured): the guard applies only then. Each may be NULL. */
struct http_hooks {
    bool (*before)(void *arg, struct http_request *req, struct http_response *res);
    void (*after)(void *arg, struct http_request *req, struct http_response *res);
    bool (*closed)(void *arg);
    void *arg;
};

struct http_server;
/* Binds, listens and starts serving with `router` (borrowed; must outlive the server).
 * A port in use is AH_E_EXISTS with the address in reterr. */
int http_server_start(const struct http_config *cfg, const struct router *router,
                      struct http_server **ret, struct ah_problem *reterr);
int http_server_port(const struct http_server *s);
/* D27 host and origin guard, on from the start: while the API runs without credentials a
 * request whose Host is not localhost, a loopback address or public_url's host is refused (421),
 * and an unsafe method (POST, PUT, PATCH, DELETE) whose Origin is neither the server's own nor
 * allowed by cors_origins is refused (403). Authentication turns it off once credentials exist. */
void http_server_set_open_guard(struct http_server *s, bool on);
/* Stops accepting, lets in-flight requests finish (bounded by shutdown_grace_ms), asks streams
 * to end, closes what is left and frees the server. 0, or AH_E_TIMEOUT when a handler was still
 * running after the grace: the server is then abandoned (not freed; its threads may still use
 * what the handlers use) and the caller should exit without tearing down what they share.
 * NULL-safe. */
int http_server_stop(struct http_server *s);

#endif
