/*
 * front.h — internals of the front door shared by server.c and gate.c; handlers never see them.
 *
 * The gate owns the listening socket and stays between each client and libmicrohttpd for the
 * connection's whole life: it reads the client's bytes, checks every request's header block
 * byte for byte (request smuggling, TLS on the plain port, idle clients, sizes libmicrohttpd
 * cannot hold), follows each body's framing to the next request, and passes only checked bytes
 * to libmicrohttpd through a socketpair (MHD_add_connection); the answers come back the same
 * way. A refused request gets a Problem+JSON answer written by the gate after the answers to the
 * requests before it, and a lingering close, so libmicrohttpd's own HTML error pages are never
 * reached, on a first request or a later one. The gate also tells server.c when the client of a
 * suspended stream leaves (a suspended connection is invisible to libmicrohttpd).
 */
#ifndef AH_HTTP_FRONT_H
#define AH_HTTP_FRONT_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#include "http.h"

/* Caps the gate applies before libmicrohttpd (its 8 KiB per-connection pool must hold the
 * request line, the headers and the query parameters). */
#define FRONT_MAX_HEAD 8192  /* bytes of request line + headers (431 past it) */
#define FRONT_MAX_HEADERS 64 /* header lines (431 past it) */
#define FRONT_MAX_QUERY 64   /* query parameters (400 past it) */
/* libmicrohttpd keeps the head and an entry per header and query parameter in that pool;
 * measured with 0.9.75: head bytes + 56 per entry must stay under ~7.8 KiB, or it answers an
 * HTML 431, closes without a word, or hangs. The gate refuses (431 problem) a little earlier. */
#define FRONT_POOL_BUDGET 7680
#define FRONT_POOL_ENTRY 64

/* What the header checks found wrong: an HTTP status and a sentence for the problem's detail. */
struct front_verdict {
    int status; /* 0 when the request may go on */
    char detail[200];
};

/* Counts of the framing headers of one request, from the raw bytes (gate) or from the header
 * list libmicrohttpd parsed (every later request of a kept-alive connection). */
struct front_framing {
    bool http11;
    unsigned n_cl, n_te, n_host;
    bool cl_bad;                 /* a Content-Length that is not 1*DIGIT */
    bool cl_huge;                /* more digits than any body we take */
    unsigned long long cl_value; /* the (last) Content-Length, when neither bad nor huge */
    bool te_bad;                 /* chunked missing or not the final coding */
    bool te_unknown;             /* a coding other than chunked before it */
    bool bad_name;               /* a header name that is not a token */
};
/* Adds one header to the counts. */
void front_framing_add(struct front_framing *f, const char *name, size_t name_len,
                       const char *value, size_t value_len);
/* The verdict on the counts (RFC 9112 §6.1, §6.3, §3.2). */
void front_framing_verdict(const struct front_framing *f, struct front_verdict *v);

/* A complete Problem+JSON response with any status (421, 431, 505 … are not in the error table),
 * `Connection: close`, written into a malloc'd buffer. NULL on OOM. */
char *front_problem_response(int status, const char *detail, const char *instance,
                             const char *request_id, size_t *ret_len);
/* The Strict-Transport-Security value sent on every answer while TLS is on (one year). */
#define FRONT_HSTS "max-age=31536000"

/* Slug and title of the statuses the front door answers itself. */
const char *front_status_slug(int status);
const char *front_status_title(int status);

/* The routes in registration order, for per-route metrics: method and pattern are lent until
 * router_free. */
size_t router_count(const struct router *r);
void router_route(const struct router *r, size_t i, const char **ret_method,
                  const char **ret_pattern);

/* The largest body cap a route sets (0 when all use the server default). */
size_t router_max_body(const struct router *r);

/* True when s[0..n) is valid UTF-8 without NUL. */
bool front_utf8_ok(const char *s, size_t n);

/* The gate's judgement of the first bytes b[0..n) of a connection (a peek, at most
 * FRONT_MAX_HEAD of it is looked at): 0 when the header block is not complete yet, else non-zero
 * with the verdict in *ret (status 0: the request goes on to libmicrohttpd). Pure (fuzzed). */
int front_judge_peek(const char *b, size_t n, size_t max_chunk, struct front_verdict *ret);

/* ---- the gate ------------------------------------------------------------------------------ */

struct gate;
/* HTTPS (issue 13 item 8): the certificate chain and key the gate terminates TLS with (GnuTLS).
 * Loaded once at start (no reload). */
struct gate_tls;
/* Loads PEM files; a clear sentence in err (for the operator) when they cannot be used. */
int gate_tls_load(const char *cert_path, const char *key_path, struct gate_tls **ret, char *err,
                  size_t err_len);
void gate_tls_free(struct gate_tls *t);

struct gate_config {
    int listen_fd;                /* borrowed; non-blocking */
    struct MHD_Daemon *daemon;    /* where accepted connections go */
    unsigned idle_ms;             /* header block must arrive within this (408 / close) */
    size_t max_chunk;             /* a chunk larger than this is 413 at once */
    void (*on_hangup)(void *key); /* a watched connection's client left (maybe: check it) */
    const struct gate_tls *tls;   /* borrowed; NULL: plain HTTP */
    const struct http_connect_hook *connect; /* CONNECT tunnels (borrowed); NULL: none */
    bool direct; /* test hook for benchmarks: every connection goes to libmicrohttpd at once,
                    unchecked and without the gate in its path (the baseline it is measured by) */
};
int gate_start(const struct gate_config *cfg, struct gate **ret);
/* Stops accepting and closes the connections still waiting for their first request. The
 * connections libmicrohttpd has keep going through the gate until gate_free. */
void gate_stop(struct gate *g);
/* After MHD_stop_daemon: lets what libmicrohttpd wrote last reach the clients (for up to 2 s),
 * closes the rest and joins the gate's thread. */
void gate_free(struct gate *g);
/* Watch fd (libmicrohttpd's descriptor of a connection the gate handed over, e.g. a suspended
 * stream) for the client's hang-up; on_hangup(key) is called under the watch lock (from the
 * gate's thread, or at once from gate_watch when the client has left already), so key stays
 * valid until gate_unwatch returns. AH_E_NOTFOUND for a descriptor the gate does not know. */
int gate_watch(struct gate *g, int fd, void *key);
void gate_unwatch(struct gate *g, int fd, void *key);
/* libmicrohttpd began a request on fd (its URI callback): every answer to the requests before
 * it has been written. The gate waits for that before it drops a request cut inside its body. */
void gate_request_started(struct gate *g, int fd);

/* http_loopback with a handler that answered later (server.c): waits for the answer and
 * puts it in res. */
void http_later_wait_loopback(struct http_request *req, struct http_response *res);
/* Drops a reference (http_response_clear of a response that still holds one). */
void http_later_release(struct http_later *l);

#endif
