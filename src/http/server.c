/*
 * server.c — libmicrohttpd glue: the listening socket, the request pipeline of http.h, sending
 * responses, streams with suspend/resume, the access log and a graceful stop. The gate (gate.c)
 * accepts connections and stays between each client and MHD: it checks every request's bytes
 * before MHD sees them, and MHD talks to it through a socketpair.
 *
 * Life of a request (one struct req_ctx, allocated when MHD has the request line — its URI log
 * hook, which keeps the raw target — and freed on completion):
 *   1st call  headers only: framing and path checks (400 and close), id, D27 host/origin guard
 *             (421/403), CORS preflight, route, Content-Length cap, Content-Type check.
 *             Any failure answers at once; MHD then discards the unread body and closes.
 *   Nth call  a slice of the body: appended under the route's cap. Past the cap nothing more
 *             is kept: the rest is read and dropped and the answer is 413 once the body is
 *             complete, so the client reads it (a declared Content-Length over the cap is
 *             dropped the same way up to DISCARD_MAX, and refused at once beyond it).
 *   last call body complete: the handler runs and its response is queued.
 *   completed the access-log line is written and everything is freed.
 *
 * Streams: the content-reader wrapper asks the stream for bytes; when it has none the connection
 * is suspended under the stream's mutex, and http_stream_wake resumes it. A wake that lands while
 * the reader runs sets `pending`, so no wake is ever lost. MHD must never be stopped with a
 * suspended connection: http_server_stop first marks the server ending and wakes every stream,
 * whose reader then ends the response. A suspended connection is invisible to MHD, so its
 * connection sits in the gate's hang-up watch: a subscriber that leaves is resumed and released
 * at once instead of at its next keep-alive (the gate closes its end of the socketpair, so
 * peer_gone sees EOF).
 */
#include <arpa/inet.h>
#include <ctype.h>
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

#include "../obs/obs.h"
#include "front.h"

#define STREAM_BLOCK 4096
#define STREAM_TIMEOUT_S 60u
#define DISCARD_MAX (64u * 1024 * 1024) /* past this an over-limit body closes the connection */
#define CORS_ALLOW_HEADERS                                                                         \
    "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Request-Id, X-Tenant-ID"
#define CORS_EXPOSE_HEADERS                                                                        \
    "X-Request-Id, Idempotent-Replayed, Retry-After, RateLimit-Limit, RateLimit-Remaining, "       \
    "RateLimit-Reset, Location"

struct http_server {
    struct MHD_Daemon *daemon;
    struct gate *gate; /* accepts and checks first requests (gate.c) */
    struct gate_tls *tls; /* HTTPS: the gate's certificate and key; NULL: plain HTTP */
    bool guard;        /* D27 host/origin guard (atomic) */
    char public_host[256]; /* host of cfg.public_url, lower case; "" when none */
    const char *stall_path; /* test hook: a handler for this path never returns (item 27) */
    bool gate_direct;       /* test hook: no gate in the connections' path (benchmarks) */
    int listen_fd;
    int port;
    const struct router *router;
    struct http_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t idle; /* signalled when in_flight drops to zero */
    unsigned in_flight;
    bool ending;
    struct http_stream *streams; /* live streams, for the stop sequence */
    struct http_later *laters;   /* answers still to come (http_later), for the stop sequence */
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
    bool hup;                        /* the gate saw the peer hang up, maybe: check at suspend */
    bool watched;                    /* fd is in the gate's hang-up watch */
    int fd;                          /* the connection's socket once watched */
    struct http_stream *wake_next;   /* srv->wake_head list, under srv->wake_mu */
    uint64_t bytes;
    struct http_stream *prev, *next; /* srv->streams, under srv->mu */
};

/* An answer that comes later (http.h). Two references: the server's (req_ctx->later) and the
 * producer's, dropped by its answer. */
struct http_later {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* http_loopback waits on it */
    unsigned refs;
    bool done;      /* the answer is in res (or problem) */
    bool suspended; /* the connection waits for it */
    struct MHD_Connection *conn;
    struct http_response res;
    struct ah_problem problem; /* code set: answer this instead of res */
    struct http_later *prev, *next; /* srv->laters, under srv->mu */
    bool linked;
};

struct req_ctx {
    struct http_server *srv;
    struct MHD_Connection *conn;
    const char *raw_uri; /* as on the wire, before percent-decoding (from the URI log hook) */
    struct http_request req;
    struct route_match match;
    struct ah_buf body;
    int64_t start_mono;
    double t0; /* obs_now() at the start, for the latency histogram */
    int64_t start_ns;      /* wall clock at the start, for the request's span (D48) */
    char parent_span[17];  /* the caller's span, "" when the trace starts here */
    bool responded;
    bool deferred; /* no body: header checks run on the final call, keeping the connection */
    uint64_t discarded; /* bytes of an over-limit body read and dropped */
    int64_t declared_over; /* a Content-Length over the cap, whose body is being dropped */
    int status;
    uint64_t bytes;
    struct http_stream *stream; /* our reference, for the byte count in the access log */
    struct http_later *later;   /* our reference while the answer is to come */
    /* a streamed body (router_set_body) */
    struct http_body_flow *flow;    /* our reference; NULL when the body is read whole */
    void *sink;                     /* the ops' ctx until their end() */
    uint64_t streamed;              /* bytes the sink took */
    bool before_done;               /* the `before` hook ran at the headers */
    struct http_response *refused;  /* the hook's or begin's answer, sent after the body */
    uint64_t dropped;               /* bytes of a refused streamed body read and dropped */
};

struct http_body_flow {
    pthread_mutex_t mu;
    unsigned refs;
    struct MHD_Connection *conn;
    bool suspended, pending, closed;
};

/* ---- metrics (D49) -------------------------------------------------------------------------- */

/* Registered by the first server for its router's routes (one process serves one router); the
 * last series of each family is for requests no route matched (404, 405, front-door errors). */
static struct obs_family *m_requests;  /* route × status class */
static struct obs_family *m_duration;  /* route */
static struct obs_family *m_in_flight, *m_streams, *m_stream_bytes;
static size_t m_routes;
static pthread_once_t m_once = PTHREAD_ONCE_INIT;
static const struct router *m_router;

static void metrics_register(void) {
    static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                  0.05,   0.1,   0.25,   0.5,   1,    2.5};
    const struct router *r = m_router;
    size_t n = router_count(r) + 1;
    char **lab = calloc(n * 5, sizeof(char *));
    char **rl = calloc(n, sizeof(char *));
    for (size_t i = 0; lab && rl && i < n; i++) {
        const char *method = "any", *pattern = "unmatched";
        if (i + 1 < n)
            router_route(r, i, &method, &pattern);
        char esc[600];
        obs_label_escape(esc, sizeof(esc), pattern);
        if (asprintf(&rl[i], "method=\"%s\",route=\"%s\"", method, esc) < 0)
            rl[i] = NULL;
        for (int c = 0; c < 5; c++)
            if (rl[i] && asprintf(&lab[i * 5 + c], "%s,code=\"%dxx\"", rl[i], c + 1) < 0)
                lab[i * 5 + c] = NULL;
    }
    bool ok = lab && rl;
    for (size_t i = 0; ok && i < n * 5; i++)
        ok = lab[i] != NULL;
    if (ok) {
        m_requests = obs_register("ah_http_requests_total",
                                  "HTTP requests answered, by route template and status class",
                                  OBS_COUNTER, (const char *const *)lab, n * 5, NULL, 0);
        m_duration = obs_register("ah_http_request_duration_seconds",
                                  "Time from the request line to the response being complete",
                                  OBS_HISTOGRAM, (const char *const *)rl, n, secs,
                                  sizeof(secs) / sizeof(*secs));
        m_routes = n - 1;
    }
    for (size_t i = 0; lab && rl && i < n; i++) {
        free(rl[i]);
        for (int c = 0; c < 5; c++)
            free(lab[i * 5 + c]);
    }
    free(lab);
    free(rl);
    m_in_flight = obs_register1("ah_http_requests_in_flight", "Requests being processed",
                                OBS_GAUGE, NULL, 0);
    m_streams = obs_register1("ah_http_streams_open",
                              "Streaming responses (event streams, terminal) attached", OBS_GAUGE,
                              NULL, 0);
    m_stream_bytes = obs_register1("ah_http_stream_bytes_total",
                                   "Bytes sent on streaming responses", OBS_COUNTER, NULL, 0);
    obs_process_collector();
}

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

/* Did the peer of a watched socket go away? A hang-up report may be stale (the descriptor can
 * have been reused), so the socket itself is asked: EOF or an error means gone. */
static bool peer_gone(int fd) {
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* The gate saw a hang-up on a suspended stream's socket (called under the gate's watch lock, so
 * s is alive): resume it, and the reader checks the socket before suspending again (item 24:
 * a departed subscriber is released at once, not at its next keep-alive). */
static void on_hangup(void *key) {
    struct http_stream *s = key;
    pthread_mutex_lock(&s->mu);
    s->hup = true;
    resume_locked(s);
    pthread_mutex_unlock(&s->mu);
}

/* The reader ends a response with an error (the client left, or the stream failed). Item 24
 * regression: libmicrohttpd 0.9.75 then marks the connection closed, but releases it (closes its
 * socket, frees its memory) only on its next pass over that connection — and a connection that
 * was suspended is in no epoll set and on no ready list, so that pass came with whatever woke its
 * worker thread next: another connection's traffic, a keep-alive, or the 60 s timeout. The last
 * subscribers of a crowd that left at once kept their descriptors until then. Waking the worker
 * now makes that pass immediate: in 0.9.75 a resume request for a connection that is not
 * suspended only sets flags (cleared when the connection is cleaned up) and signals the worker's
 * inter-thread channel. The one-second timeout bounds the wait should another libmicrohttpd
 * ignore that request (its timeout pass also cleans closed connections up). */
static ssize_t stream_failed(struct http_stream *s) {
    MHD_set_connection_option(s->conn, MHD_CONNECTION_OPTION_TIMEOUT, 1u);
    MHD_resume_connection(s->conn);
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    struct http_stream *s = cls;
    if (!s->watched && s->srv->gate) { /* first pass: not under s->mu (lock order: gate, s) */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci && gate_watch(s->srv->gate, ci->connect_fd, s) == 0) {
            s->fd = ci->connect_fd;
            s->watched = true;
        }
    }
    for (;;) {
        if (http_stream_ending(s))
            return MHD_CONTENT_READER_END_OF_STREAM;
        ssize_t n = s->ops->read(s->ctx, buf, max);
        if (n > 0) {
            __atomic_add_fetch(&s->bytes, (uint64_t)n, __ATOMIC_RELAXED);
            obs_add(m_stream_bytes, 0, n);
            return n;
        }
        if (n == HTTP_STREAM_END)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (n < 0)
            return stream_failed(s);
        test_hold_point("stream-idle"); /* a client may leave before this stream suspends */
        pthread_mutex_lock(&s->mu);
        if (s->pending) {
            s->pending = false;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        if (s->hup) {
            s->hup = false;
            pthread_mutex_unlock(&s->mu);
            if (peer_gone(s->fd))
                return stream_failed(s);
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
    if (s->watched) /* first: after this no hang-up report can name s */
        gate_unwatch(s->srv->gate, s->fd, s);
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
    obs_add(m_streams, 0, -1);
    s->ops->close(s->ctx);
    http_stream_unref(s);
}

static enum MHD_Result send_response(struct req_ctx *rc, struct http_response *res);

/* ---- answers that come later (http_later) ------------------------------------------------------ */

struct http_later *http_later(struct http_request *req, struct http_response *res) {
    (void)req;
    struct http_later *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->refs = 2;
    res->later = l;
    return l;
}

static void later_unref(struct http_later *l) {
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    bool last = --l->refs == 0;
    pthread_mutex_unlock(&l->mu);
    if (!last)
        return;
    http_response_clear(&l->res);
    problem_clear(&l->problem);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

void http_later_release(struct http_later *l) {
    later_unref(l);
}

/* Under l->mu: the answer is in; the waiting side goes on. */
static void later_done_locked(struct http_later *l) {
    l->done = true;
    if (l->suspended) {
        l->suspended = false;
        MHD_resume_connection(l->conn);
    }
    pthread_cond_broadcast(&l->cv);
}

void http_later_answer(struct http_later *l, struct http_response *res) {
    if (!l) {
        http_response_clear(res);
        return;
    }
    pthread_mutex_lock(&l->mu);
    if (!l->done) {
        l->res = *res;
        memset(res, 0, sizeof(*res));
        later_done_locked(l);
    }
    pthread_mutex_unlock(&l->mu);
    http_response_clear(res); /* answered already (the server stopped): dropped */
    later_unref(l);
}

/* Under l->mu: a problem answer, unless one is in already. */
static void later_fail_locked(struct http_later *l, int code, const char *detail) {
    if (l->done)
        return;
    problem_set(&l->problem, code, "%s", detail);
    later_done_locked(l);
}

void http_later_fail(struct http_later *l, struct ah_problem *p) {
    if (!l) {
        problem_clear(p);
        return;
    }
    pthread_mutex_lock(&l->mu);
    if (!l->done) {
        l->problem = *p;
        if (!l->problem.code)
            l->problem.code = AH_E_INTERNAL;
        memset(p, 0, sizeof(*p));
        later_done_locked(l);
    }
    pthread_mutex_unlock(&l->mu);
    problem_clear(p);
    later_unref(l);
}

void http_later_drop(struct http_later *l) {
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    later_fail_locked(l, AH_E_UNAVAIL, "the answer to this request could not be produced");
    pthread_mutex_unlock(&l->mu);
    later_unref(l);
}

/* Takes l off the server's list of pending answers. */
static void later_unlink(struct http_server *srv, struct http_later *l) {
    pthread_mutex_lock(&srv->mu);
    if (l->linked) {
        if (l->prev)
            l->prev->next = l->next;
        else
            srv->laters = l->next;
        if (l->next)
            l->next->prev = l->prev;
        l->linked = false;
    }
    pthread_mutex_unlock(&srv->mu);
}

/* The answer that came, as the handler's would have: the `after` hook, then sent. */
static enum MHD_Result later_send(struct req_ctx *rc) {
    struct http_later *l = AH_TAKE(rc->later);
    struct http_server *srv = rc->srv;
    later_unlink(srv, l);
    struct http_response res = {0};
    struct ah_problem p = {0};
    pthread_mutex_lock(&l->mu);
    res = l->res;
    memset(&l->res, 0, sizeof(l->res));
    p = l->problem;
    memset(&l->problem, 0, sizeof(l->problem));
    pthread_mutex_unlock(&l->mu);
    later_unref(l);
    if (p.code) {
        http_response_clear(&res);
        http_problem(&rc->req, &res, &p);
        problem_clear(&p);
    } else if (res.later || (!res.status && !res.json && !res.body && !res.stream)) {
        http_response_clear(&res);
        http_error(&rc->req, &res, AH_E_INTERNAL, "the deferred answer was empty");
    }
    const struct http_hooks *hk = srv->cfg.hooks;
    if (hk && hk->after)
        hk->after(hk->arg, &rc->req, &res);
    enum MHD_Result ok = send_response(rc, &res);
    http_response_clear(&res);
    return ok;
}

/* The handler deferred its answer: the connection waits suspended, unless it came already. */
static enum MHD_Result later_wait(struct req_ctx *rc, struct http_later *l) {
    struct http_server *srv = rc->srv;
    rc->later = l;
    pthread_mutex_lock(&srv->mu);
    bool ending = __atomic_load_n(&srv->ending, __ATOMIC_ACQUIRE);
    l->next = srv->laters;
    l->prev = NULL;
    if (l->next)
        l->next->prev = l;
    srv->laters = l;
    l->linked = true;
    pthread_mutex_unlock(&srv->mu);
    pthread_mutex_lock(&l->mu);
    if (ending)
        later_fail_locked(l, AH_E_UNAVAIL, "the server is stopping");
    if (!l->done) {
        l->conn = rc->conn;
        l->suspended = true;
        MHD_suspend_connection(rc->conn);
        pthread_mutex_unlock(&l->mu);
        return MHD_YES; /* resumed by the answer: on_request comes again */
    }
    pthread_mutex_unlock(&l->mu);
    return later_send(rc);
}

/* http_loopback: the caller's thread waits for the answer. */
void http_later_wait_loopback(struct http_request *req, struct http_response *res) {
    struct http_later *l = AH_TAKE(res->later);
    pthread_mutex_lock(&l->mu);
    while (!l->done)
        pthread_cond_wait(&l->cv, &l->mu);
    http_response_clear(res);
    *res = l->res;
    memset(&l->res, 0, sizeof(l->res));
    struct ah_problem p = l->problem;
    memset(&l->problem, 0, sizeof(l->problem));
    pthread_mutex_unlock(&l->mu);
    later_unref(l);
    if (p.code) {
        http_response_clear(res);
        http_problem(req, res, &p);
        problem_clear(&p);
    }
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

/* Allocated as soon as libmicrohttpd has the request line (its URI log hook), so the raw
 * target is kept: libmicrohttpd decodes %00 into a NUL that would cut the path short. */
static struct req_ctx *req_ctx_alloc(struct http_server *srv, struct MHD_Connection *conn,
                                     const char *raw_uri) {
    struct req_ctx *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return NULL;
    rc->srv = srv;
    rc->conn = conn;
    rc->start_mono = time_mono_ms();
    rc->t0 = obs_now();
    if (!(rc->req.arena = arena_new())) {
        free(rc);
        return NULL;
    }
    rc->raw_uri = raw_uri ? arena_strdup(rc->req.arena, raw_uri) : NULL;
    pthread_mutex_lock(&srv->mu);
    srv->in_flight++;
    pthread_mutex_unlock(&srv->mu);
    obs_add(m_in_flight, 0, 1);
    return rc;
}

static void req_ctx_free(struct req_ctx *rc);

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    struct http_server *srv = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        gate_request_started(srv->gate, ci->connect_fd);
    return req_ctx_alloc(srv, conn, uri);
}

/* The rest, on the first call of the access handler. false on OOM (rc is then freed). */
static bool req_ctx_init(struct req_ctx *rc, const char *url, const char *method) {
    struct MHD_Connection *conn = rc->conn;
    struct arena *a = rc->req.arena;
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
    rc->req.remote_addr = "";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char addr[INET6_ADDRSTRLEN] = "";
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, addr,
                  sizeof(addr));
    else if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, addr,
                  sizeof(addr));
    const char *peer = addr[0] ? arena_strdup(a, addr) : NULL;
    if (peer)
        rc->req.remote_addr = peer;
    const char *given = http_header(&rc->req, "X-Request-Id");
    if (request_id_ok(given)) {
        rc->req.request_id = given;
    } else {
        char *id = arena_alloc(a, ULID_LEN + 1);
        if (id && ulid_new(id) == 0)
            rc->req.request_id = id;
    }
    struct obs_trace tr; /* D48: continue the caller's trace, or start one */
    if (obs_trace_start(http_header(&rc->req, "traceparent"), &tr) == 0) {
        char tp[56];
        obs_traceparent_format(&tr, tp);
        rc->req.trace_id = arena_strdup(a, tr.trace_id);
        rc->req.span_id = arena_strdup(a, tr.span_id);
        rc->req.traceparent = arena_strdup(a, tp);
        memcpy(rc->parent_span, tr.parent_id, sizeof(rc->parent_span));
        rc->start_ns = obs_wall_ns();
    }
    if (!rc->req.method || !rc->req.path || !rc->req.request_id) {
        req_ctx_free(rc);
        return false;
    }
    return true;
}

static void flow_close(struct req_ctx *rc);

static void req_ctx_free(struct req_ctx *rc) {
    struct http_server *srv = rc->srv;
    flow_close(rc);
    if (rc->refused) {
        http_response_clear(rc->refused);
        free(rc->refused);
    }
    http_stream_unref(rc->stream);
    if (rc->later) { /* the connection ended while the answer was to come */
        struct http_later *l = AH_TAKE(rc->later);
        later_unlink(srv, l);
        later_unref(l);
    }
    ah_buf_clear(&rc->body);
    arena_free(rc->req.arena);
    free(rc);
    obs_add(m_in_flight, 0, -1);
    pthread_mutex_lock(&srv->mu);
    if (--srv->in_flight == 0)
        pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->mu);
}

/* D48: the request's server span; named by the route template (never an id), as the metrics */
static void export_span(struct req_ctx *rc, enum MHD_RequestTerminationCode toe) {
    const char *route = rc->match.fn && rc->match.pattern ? rc->match.pattern : "unmatched";
    char name[96], status[8];
    snprintf(name, sizeof(name), "%s %s", rc->req.method, route);
    snprintf(status, sizeof(status), "%d", rc->status);
    struct obs_span s = {
        .name = name,
        .kind = 2,
        .start_ns = rc->start_ns,
        .end_ns = obs_wall_ns(),
        .error = rc->status >= 500 || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK,
        .attrs = {{"http.request.method", rc->req.method},
                  {"http.route", route},
                  {"http.response.status_code", status},
                  {"ah.request_id", rc->req.request_id}},
    };
    snprintf(s.trace.trace_id, sizeof(s.trace.trace_id), "%s", rc->req.trace_id);
    snprintf(s.trace.span_id, sizeof(s.trace.span_id), "%s", rc->req.span_id);
    memcpy(s.trace.parent_id, rc->parent_span, sizeof(s.trace.parent_id));
    obs_span_export(&s);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    struct req_ctx *rc = *con_cls;
    if (!rc)
        return;
    *con_cls = NULL;
    if (rc->status) {
        size_t route = rc->match.fn && rc->match.index < m_routes ? rc->match.index : m_routes;
        obs_add(m_requests, route * 5 + (size_t)(obs_status_class(rc->status)[0] - '1'), 1);
        obs_observe(m_duration, route, obs_now() - rc->t0);
        if (obs_otlp_enabled() && rc->req.trace_id && rc->req.span_id)
            export_span(rc, toe);
    }
    if (log_enabled(LOG_INFO)) {
        uint64_t bytes = rc->bytes;
        if (rc->stream)
            bytes = __atomic_load_n(&rc->stream->bytes, __ATOMIC_RELAXED);
        json_t *f = json_pack("{s:s, s:s, s:s, s:i, s:I, s:I, s:s?, s:s?}", "id",
                              rc->req.request_id, "method", rc->req.method, "path", rc->req.path,
                              "status", rc->status, "bytes", (json_int_t)bytes, "duration_ms",
                              (json_int_t)(time_mono_ms() - rc->start_mono), "trace_id",
                              rc->req.trace_id, "span_id", rc->req.span_id);
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
    if (res->stream && strcmp(rc->req.method, "HEAD") == 0) {
        /* Item 28: HEAD gets the stream's headers and nothing else; the stream is never
         * attached, so its producer side is closed here. */
        struct http_stream *s = AH_TAKE(res->stream);
        pthread_mutex_lock(&s->mu);
        s->closed = true;
        pthread_mutex_unlock(&s->mu);
        s->ops->close(s->ctx);
        http_stream_unref(s);
        if (!res->content_type)
            res->content_type = "text/event-stream";
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
    } else if (res->stream) {
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
        obs_add(m_streams, 0, 1);
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_reader, s,
                                              stream_free);
        if (!r) {
            stream_free(s);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                res->content_type ? res->content_type : "text/event-stream");
        /* Streams are exempt from the idle timeout while they send keep-alives (every 15 s at
         * most); one that cannot write for a minute (a client that stopped reading) is closed. */
        unsigned idle_s = (srv->cfg.idle_timeout_ms + 999) / 1000;
        MHD_set_connection_option(rc->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  idle_s > STREAM_TIMEOUT_S ? idle_s : STREAM_TIMEOUT_S);
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
    if (rc->req.traceparent) { /* D48: our span, so the caller can link to it */
        MHD_add_response_header(r, "traceparent", rc->req.traceparent);
        const char *ts = http_header(&rc->req, "tracestate");
        if (ts && strlen(ts) <= 512 && front_utf8_ok(ts, strlen(ts)))
            MHD_add_response_header(r, "tracestate", ts);
    }
    /* Item 4: one Cache-Control. The handler's own (no-cache on event streams) wins over the
     * default; the request's Cache-Control has nothing to say about the response. */
    bool has_cc = false;
    for (size_t i = 0; i < res->n_headers; i++)
        has_cc |= strcasecmp(res->headers[i].name, "Cache-Control") == 0;
    if (!has_cc)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    const char *origin = http_header(&rc->req, "Origin");
    if (origin_allowed(srv, origin)) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(r, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
        MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Origin");
    }
    for (size_t i = 0; i < res->n_headers; i++)
        MHD_add_response_header(r, res->headers[i].name, res->headers[i].value);
    if (srv->tls) /* issue 13 item 8: browsers keep to https for this host from now on */
        MHD_add_response_header(r, "Strict-Transport-Security", FRONT_HSTS);
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

/* A problem with any status: the ones outside the error table (421, 431, 505 …) get their own
 * type and title (front.h). */
static enum MHD_Result send_front_error(struct req_ctx *rc, int status, const char *detail) {
    int code = status == 413   ? AH_E_TOOLARGE
               : status == 501 ? AH_E_NOTIMPL
               : status == 403 ? AH_E_FORBIDDEN
                               : AH_E_BADREQ;
    struct http_response res = {0};
    http_error(&rc->req, &res, code, "%s", detail);
    if (status != ah_error_status(code) && res.json) {
        char type[96];
        snprintf(type, sizeof(type), "/problems/%s", front_status_slug(status));
        json_object_set_new(res.json, "type", json_string(type));
        json_object_set_new(res.json, "title", json_string(front_status_title(status)));
        json_object_set_new(res.json, "status", json_integer(status));
        res.status = status;
    }
    /* The instance is the path as the client sent it: the decoded one may be cut at a %00 or
     * not be UTF-8 (then jansson leaves it out, and the problem has no instance at all). Bytes
     * that are not printable ASCII are percent-encoded again. */
    if (res.json && rc->raw_uri) {
        char inst[1024];
        size_t o = 0;
        for (const unsigned char *c = (const unsigned char *)rc->raw_uri;
             *c && *c != '?' && o + 4 < sizeof(inst); c++) {
            if (*c > 0x20 && *c < 0x7f)
                inst[o++] = (char)*c;
            else
                o += (size_t)snprintf(inst + o, sizeof(inst) - o, "%%%02X", *c);
        }
        inst[o] = '\0';
        json_object_set_new(res.json, "instance", json_string(inst));
    }
    enum MHD_Result ok = send_response(rc, &res);
    http_response_clear(&res);
    return ok;
}

/* Framing (the gate's rules, from libmicrohttpd's header list) and the path: a %00 would be cut
 * short by libmicrohttpd's decoding (`/sessions/<id>%00.json` read as `/sessions/<id>`), and a
 * path that is not UTF-8 cannot name anything we have. */
static void request_verdict(struct req_ctx *rc, const char *version, struct front_verdict *v) {
    struct front_framing f = {.http11 = version && strcmp(version, "HTTP/1.1") == 0};
    for (size_t i = 0; i < rc->req.n_headers; i++) {
        const struct http_kv *h = &rc->req.headers[i];
        front_framing_add(&f, h->name, strlen(h->name), h->value, strlen(h->value));
    }
    front_framing_verdict(&f, v);
    if (v->status)
        return;
    const char *raw = rc->raw_uri ? rc->raw_uri : rc->req.path;
    size_t plen = strcspn(raw, "?");
    for (size_t i = 0; i + 2 < plen; i++)
        if (raw[i] == '%' && raw[i + 1] == '0' && raw[i + 2] == '0') {
            v->status = 400;
            snprintf(v->detail, sizeof(v->detail), "a path segment may not contain %%00");
            return;
        }
    if (!front_utf8_ok(rc->req.path, strlen(rc->req.path))) {
        v->status = 400;
        snprintf(v->detail, sizeof(v->detail), "the path is not valid UTF-8 once decoded");
        return;
    }
    if (rc->req.n_query > FRONT_MAX_QUERY) {
        v->status = 400;
        snprintf(v->detail, sizeof(v->detail), "the request has %zu query parameters; the limit is %d",
                 rc->req.n_query, FRONT_MAX_QUERY);
    }
}

/* ---- D27: the host and origin guard ------------------------------------------------------------ */

/* The host part of a Host header value or of a URL authority: "[::1]:80" → "[::1]". */
static size_t host_part(const char *h, size_t n) {
    if (n && h[0] == '[') {
        const char *rb = memchr(h, ']', n);
        return rb ? (size_t)(rb - h) + 1 : n;
    }
    const char *colon = memchr(h, ':', n);
    return colon ? (size_t)(colon - h) : n;
}

static bool host_is_loopback(const char *h, size_t n) {
    char buf[64];
    if (n == 9 && strncasecmp(h, "localhost", 9) == 0)
        return true;
    if (n >= sizeof(buf))
        return false;
    if (n > 2 && h[0] == '[' && h[n - 1] == ']') {
        memcpy(buf, h + 1, n - 2);
        buf[n - 2] = '\0';
        struct in6_addr a6;
        return inet_pton(AF_INET6, buf, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    memcpy(buf, h, n);
    buf[n] = '\0';
    struct in_addr a4;
    return inet_pton(AF_INET, buf, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* 0, or the status (421 / 403) with detail. */
static int guard_check(const struct http_server *srv, const struct http_request *req, char *detail,
                       size_t dn) {
    if (!__atomic_load_n(&srv->guard, __ATOMIC_RELAXED))
        return 0;
    const struct http_hooks *hk = srv->cfg.hooks;
    if (hk && hk->closed && hk->closed(hk->arg))
        return 0; /* credentials are required: a rebinding page has none to send */
    const char *host = http_header(req, "Host");
    if (host) { /* an HTTP/1.0 request without Host cannot come from a browser */
        size_t hl = host_part(host, strlen(host));
        bool ok = host_is_loopback(host, hl) ||
                  (srv->public_host[0] && strlen(srv->public_host) == hl &&
                   strncasecmp(srv->public_host, host, hl) == 0);
        if (!ok) {
            snprintf(detail, dn,
                     "this server answers only requests for localhost or a loopback address%s "
                     "(it has no credentials configured); set public-url to the address users "
                     "reach it by",
                     srv->public_host[0] ? " or its public-url" : "");
            return 421;
        }
    }
    const char *m = req->method;
    bool unsafe = strcmp(m, "GET") && strcmp(m, "HEAD") && strcmp(m, "OPTIONS");
    const char *origin = http_header(req, "Origin");
    if (unsafe && origin && !origin_allowed(srv, origin)) {
        /* same origin: the page was served by this server under the Host it asked for (the web
         * UI), or by its public-url */
        bool same = false;
        const char *schemes[] = {"http://", "https://"};
        for (size_t i = 0; i < 2 && !same && host; i++) {
            size_t sl = strlen(schemes[i]);
            same = strncasecmp(origin, schemes[i], sl) == 0 && strcasecmp(origin + sl, host) == 0;
        }
        if (!same && srv->cfg.public_url) {
            const char *pu = srv->cfg.public_url;
            const char *auth = strstr(pu, "://");
            size_t ol = auth ? (size_t)(auth + 3 - pu) + strcspn(auth + 3, "/?#") : 0;
            same = ol && strlen(origin) == ol && strncasecmp(origin, pu, ol) == 0;
        }
        if (!same) {
            snprintf(detail, dn,
                     "a %s from origin %.80s is refused: the origin is not this server's and not "
                     "in cors-origins",
                     m, origin);
            return 403;
        }
    }
    return 0;
}

void http_server_set_open_guard(struct http_server *s, bool on) {
    __atomic_store_n(&s->guard, on, __ATOMIC_RELAXED);
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

/* ---- streamed request bodies (router_set_body) ------------------------------------------------ */

void http_body_flow_wake(struct http_body_flow *f) {
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    if (!f->closed) {
        if (f->suspended) {
            f->suspended = false;
            MHD_resume_connection(f->conn);
        } else {
            f->pending = true; /* the writer is busy: it looks again before suspending */
        }
    }
    pthread_mutex_unlock(&f->mu);
}

void http_body_flow_unref(struct http_body_flow *f) {
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    bool last = --f->refs == 0;
    pthread_mutex_unlock(&f->mu);
    if (last) {
        pthread_mutex_destroy(&f->mu);
        free(f);
    }
}

/* The sink's end, once (complete: the handler gets it). */
static void sink_end(struct req_ctx *rc, bool complete) {
    void *ctx = AH_TAKE(rc->sink);
    if (!ctx)
        return;
    rc->match.body_ops->end(ctx, complete);
    if (complete)
        rc->req.body_ctx = ctx;
}

/* The request is over: no more wakes reach its connection. */
static void flow_close(struct req_ctx *rc) {
    sink_end(rc, false); /* the client left (or the server stops) before the body ended */
    struct http_body_flow *f = AH_TAKE(rc->flow);
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->closed = true;
    pthread_mutex_unlock(&f->mu);
    http_body_flow_unref(f);
}

/* Keeps an answer for the end of a body being dropped (libmicrohttpd 0.9.75 cannot queue one
 * while the body arrives). */
static enum MHD_Result refuse_later(struct req_ctx *rc, struct http_response *res) {
    rc->refused = malloc(sizeof(*res));
    if (!rc->refused) {
        http_response_clear(res);
        return MHD_NO;
    }
    *rc->refused = *res;
    return MHD_YES;
}

/* A body for a sink: the `before` hook now (who is asking decides whether the body goes
 * anywhere), then the sink's begin. */
static enum MHD_Result begin_streamed(struct req_ctx *rc) {
    struct http_request *req = &rc->req;
    const struct http_hooks *hk = rc->srv->cfg.hooks;
    struct http_response res = {0};
    rc->before_done = true;
    if (hk && hk->before && !hk->before(hk->arg, req, &res))
        return refuse_later(rc, &res);
    struct http_body_flow *f = calloc(1, sizeof(*f));
    if (!f)
        return MHD_NO;
    pthread_mutex_init(&f->mu, NULL);
    f->refs = 2; /* ours and the sink's */
    f->conn = rc->conn;
    char detail[300] = "";
    void *ctx = NULL;
    int r = rc->match.body_ops->begin(req, f, &ctx, detail, sizeof(detail));
    if (r < 0) {
        http_body_flow_unref(f);
        http_body_flow_unref(f);
        http_error(req, &res, r, "%s", detail[0] ? detail : "cannot take the request body");
        return refuse_later(rc, &res);
    }
    rc->flow = f;
    rc->sink = ctx;
    return MHD_YES;
}

/* A piece of a streamed body: as much as the sink takes; the rest waits with the connection
 * suspended until the sink wakes it (its buffer has room again). */
static enum MHD_Result stream_body(struct req_ctx *rc, const char *data, size_t *size) {
    size_t n = *size, off = 0;
    if (rc->streamed + n > rc->body.max) {
        /* over the cap: the sink is told, the rest dropped, 413 at the end (as when read) */
        sink_end(rc, false);
        rc->discarded = rc->streamed + n;
        *size = 0;
        return MHD_YES;
    }
    struct http_body_flow *f = rc->flow;
    for (;;) {
        size_t took = rc->match.body_ops->write(rc->sink, data + off, n - off);
        off += took < n - off ? took : n - off;
        if (off == n)
            break;
        pthread_mutex_lock(&f->mu);
        if (f->pending) { /* room came meanwhile */
            f->pending = false;
            pthread_mutex_unlock(&f->mu);
            continue;
        }
        f->suspended = true;
        MHD_suspend_connection(rc->conn);
        pthread_mutex_unlock(&f->mu);
        break;
    }
    rc->streamed += off;
    *size = n - off; /* libmicrohttpd hands the rest again once resumed */
    return MHD_YES;
}

/* First call: everything that can be decided from the request line and headers. */
static enum MHD_Result on_headers(struct req_ctx *rc) {
    struct http_request *req = &rc->req;
    char detail[300];
    int gs = guard_check(rc->srv, req, detail, sizeof(detail));
    if (gs)
        return send_front_error(rc, gs, detail);
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
    req->route_pattern = rc->match.pattern;

    size_t cap = rc->match.max_body ? rc->match.max_body : rc->srv->cfg.max_body;
    rc->body.max = cap;
    const char *cl = http_header(req, "Content-Length");
    const char *te = http_header(req, "Transfer-Encoding");
    int64_t declared = 0;
    if (cl && parse_int64(cl, 0, INT64_MAX, &declared) < 0)
        return send_error(rc, AH_E_BADREQ, NULL, "Content-Length is not a number");
    if ((uint64_t)declared > cap) {
        /* Item 12: answering now would close the connection under a client still sending, and
         * the reset that follows destroys the answer before it is read. So a body of a sane size
         * is read and dropped and the 413 goes out when it is complete (as for a chunked body
         * over the cap). A client that asked for 100-continue has sent nothing yet: answer it. */
        const char *expect = http_header(req, "Expect");
        if ((uint64_t)declared > DISCARD_MAX || (expect && strcasecmp(expect, "100-continue") == 0))
            return send_error(rc, AH_E_TOOLARGE, NULL,
                              "the request body is %lld bytes; the limit here is %zu bytes",
                              (long long)declared, cap);
        rc->discarded = 1; /* nonzero: discarding */
        rc->declared_over = declared;
        return MHD_YES;
    }
    bool has_body = declared > 0 || (te && strcasestr(te, "chunked"));
    if (has_body && !(rc->match.flags & ROUTE_ANY_BODY) &&
        !is_json_type(http_header(req, "Content-Type")))
        return send_error(rc, AH_E_MEDIATYPE, NULL,
                          "the request body must be application/json, not %s",
                          http_header(req, "Content-Type") ? http_header(req, "Content-Type")
                                                           : "unlabelled");
    if (has_body && rc->match.body_ops)
        return begin_streamed(rc);
    return MHD_YES;
}

static enum MHD_Result on_body_complete(struct req_ctx *rc) {
    struct http_request *req = &rc->req;
    if (rc->body.p) {
        req->body = rc->body.p;
        req->body_len = rc->body.n;
    }
    struct http_response res = {0};
    if (rc->srv->stall_path && strcmp(rc->srv->stall_path, req->path) == 0) {
        /* A handler stuck for good, as one blocked on a network that never answers was (item
         * 16): what the shutdown deadline is for. Only with AH_TEST_HOOKS=1. */
        log_msg(LOG_WARN, "test hook: stalling the handler of %s", req->path);
        for (;;)
            sleep(3600);
    }
    const struct http_hooks *hk = rc->srv->cfg.hooks;
    if (rc->before_done || !hk || !hk->before || hk->before(hk->arg, req, &res))
        rc->match.fn(req, &res);
    if (res.later) {
        struct http_later *l = AH_TAKE(res.later);
        http_response_clear(&res);
        return later_wait(rc, l);
    }
    if (!res.status && !res.json && !res.body && !res.stream)
        http_error(req, &res, AH_E_INTERNAL, "the handler produced no response");
    if (hk && hk->after)
        hk->after(hk->arg, req, &res);
    enum MHD_Result ok = send_response(rc, &res);
    http_response_clear(&res);
    return ok;
}

static enum MHD_Result on_request_traced(void *cls, struct MHD_Connection *conn,
                                         const char *url, const char *method,
                                         const char *version, const char *upload_data,
                                         size_t *upload_data_size, void **con_cls);

/* Every log line a handler writes carries the request's trace (D48). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    enum MHD_Result r = on_request_traced(cls, conn, url, method, version, upload_data,
                                          upload_data_size, con_cls);
    log_trace_set(NULL, NULL);
    return r;
}

static enum MHD_Result on_request_traced(void *cls, struct MHD_Connection *conn,
                                         const char *url, const char *method,
                                         const char *version, const char *upload_data,
                                         size_t *upload_data_size, void **con_cls) {
    struct http_server *srv = cls;
    struct req_ctx *rc = *con_cls;
    if (!rc || !rc->req.method) {
        if (!rc && !(rc = req_ctx_alloc(srv, conn, NULL)))
            return MHD_NO; /* out of memory: drop the connection */
        *con_cls = rc;
        if (!req_ctx_init(rc, url, method)) {
            *con_cls = NULL;
            return MHD_NO;
        }
        log_trace_set(rc->req.trace_id, rc->req.span_id);
        /* Framing and path checks, for every request (the gate checked the raw bytes already;
         * this is the same rule on what MHD parsed, and the path checks only MHD's decoding
         * allows). Answering now also closes the connection, which a framing error needs. */
        struct front_verdict v;
        request_verdict(rc, version, &v);
        if (v.status)
            return send_front_error(rc, v.status, v.detail);
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
    log_trace_set(rc->req.trace_id, rc->req.span_id);
    if (rc->responded) { /* answered early: swallow whatever MHD still hands us */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rc->later) { /* resumed: the answer came */
        bool done;
        pthread_mutex_lock(&rc->later->mu);
        done = rc->later->done;
        pthread_mutex_unlock(&rc->later->mu);
        return done ? later_send(rc) : MHD_YES;
    }
    if (*upload_data_size && rc->refused) { /* refused at the headers: read and dropped */
        rc->dropped += *upload_data_size;
        *upload_data_size = 0;
        return rc->dropped > DISCARD_MAX ? MHD_NO : MHD_YES;
    }
    if (*upload_data_size && rc->sink)
        return stream_body(rc, upload_data, upload_data_size);
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
    if (rc->discarded && rc->declared_over)
        return send_error(rc, AH_E_TOOLARGE, NULL,
                          "the request body is %lld bytes; the limit here is %zu bytes",
                          (long long)rc->declared_over, rc->body.max);
    if (rc->discarded)
        return send_error(rc, AH_E_TOOLARGE, NULL,
                          "the request body is larger than the limit of %zu bytes", rc->body.max);
    if (rc->refused) {
        const struct http_hooks *hk = rc->srv->cfg.hooks;
        if (hk && hk->after)
            hk->after(hk->arg, &rc->req, rc->refused);
        enum MHD_Result ok = send_response(rc, rc->refused);
        http_response_clear(rc->refused);
        free(AH_TAKE(rc->refused));
        return ok;
    }
    sink_end(rc, true); /* every byte went to the sink: the handler takes it over */
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
    if (!srv->cfg.idle_timeout_ms)
        srv->cfg.idle_timeout_ms = 30000;
    srv->guard = true;
    const char *hooks = getenv("AH_TEST_HOOKS");
    if (hooks && strcmp(hooks, "1") == 0) {
        srv->stall_path = getenv("AH_TEST_STALL_PATH");
        const char *direct = getenv("AH_TEST_GATE_DIRECT"); /* bench/front.py's baseline */
        srv->gate_direct = direct && strcmp(direct, "1") == 0;
    }
    if (cfg->public_url) { /* scheme://host[:port][/…] → host */
        const char *a = strstr(cfg->public_url, "://");
        a = a ? a + 3 : cfg->public_url;
        size_t al = strcspn(a, "/?#");
        const char *at = memchr(a, '@', al);
        if (at) {
            al -= (size_t)(at + 1 - a);
            a = at + 1;
        }
        size_t hl = host_part(a, al);
        if (!hl || hl >= sizeof(srv->public_host)) {
            free(srv);
            return problem_set(reterr, AH_E_INVAL, "public-url %s names no host", cfg->public_url);
        }
        for (size_t i = 0; i < hl; i++)
            srv->public_host[i] = (char)tolower((unsigned char)a[i]);
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        free(srv);
        return problem_set(reterr, AH_E_INVAL,
                           "HTTPS needs both a certificate and its key (--tls-cert, --tls-key)");
    }
    if (cfg->tls_cert) {
        char err[sizeof(reterr->detail)];
        int tr = gate_tls_load(cfg->tls_cert, cfg->tls_key, &srv->tls, err, sizeof(err));
        if (tr < 0) {
            free(srv);
            return problem_set(reterr, tr, "%s", err);
        }
    }
    srv->router = router;
    m_router = router;
    pthread_once(&m_once, metrics_register);
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->idle, NULL);
    int r = listen_socket(cfg->bind, cfg->port, &srv->listen_fd, &srv->port, reterr);
    if (r < 0) {
        pthread_mutex_destroy(&srv->mu);
        pthread_cond_destroy(&srv->idle);
        gate_tls_free(srv->tls);
        free(srv);
        return r;
    }
    unsigned threads = cfg->threads;
    if (!threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 1 ? (unsigned)n : 2;
    }
    /* The gate accepts (front.h), so MHD has no listening socket: connections are handed to its
     * worker threads with MHD_add_connection. The connection timeout is the idle timeout (item
     * 26): headers, bodies and kept-alive connections that make no progress for that long. */
    unsigned idle_s = (srv->cfg.idle_timeout_ms + 999) / 1000;
    srv->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
            MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC,
        0, NULL, NULL, on_request, srv, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
        MHD_OPTION_CONNECTION_TIMEOUT, idle_s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)60000, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(8 * 1024),
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (srv->daemon) {
        size_t max_body = router_max_body(router);
        struct gate_config gc = {.listen_fd = srv->listen_fd,
                                 .daemon = srv->daemon,
                                 .idle_ms = srv->cfg.idle_timeout_ms,
                                 .max_chunk = max_body > srv->cfg.max_body ? max_body
                                                                           : srv->cfg.max_body,
                                 .on_hangup = on_hangup,
                                 .tls = srv->tls,
                                 .connect = srv->cfg.connect,
                                 .direct = srv->gate_direct};
        if (gate_start(&gc, &srv->gate) < 0) {
            MHD_stop_daemon(srv->daemon);
            srv->daemon = NULL;
        }
    }
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
        gate_tls_free(srv->tls);
        free(srv);
        return problem_set(reterr, AH_E_IO, "cannot start the HTTP server (libmicrohttpd)");
    }
    *ret = srv;
    return 0;
}

int http_server_port(const struct http_server *s) {
    return s->port;
}

#define STOP_EXTRA_MS 2000 /* after the grace: how long closing what remains may take */

static void *stop_main(void *arg) {
    MHD_stop_daemon(arg);
    return NULL;
}

int http_server_stop(struct http_server *srv) {
    if (!srv)
        return 0;
    gate_stop(srv->gate); /* no new connections from here on */
    pthread_mutex_lock(&srv->mu);
    __atomic_store_n(&srv->ending, true, __ATOMIC_RELEASE);
    for (struct http_stream *s = srv->streams; s; s = s->next)
        http_stream_wake(s);
    for (struct http_later *l = srv->laters; l; l = l->next) {
        pthread_mutex_lock(&l->mu);
        later_fail_locked(l, AH_E_UNAVAIL, "the server is stopping");
        pthread_mutex_unlock(&l->mu);
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += srv->cfg.shutdown_grace_ms / 1000;
    deadline.tv_nsec += (long)(srv->cfg.shutdown_grace_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    unsigned left = 0;
    while (srv->in_flight > 0) {
        if (pthread_cond_timedwait(&srv->idle, &srv->mu, &deadline) == ETIMEDOUT) {
            left = srv->in_flight;
            log_msg(LOG_WARN, "%u request(s) still running after %u ms; closing them", left,
                    srv->cfg.shutdown_grace_ms);
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
    if (left) {
        /* Item 27: MHD_stop_daemon closes every connection but then joins its threads, and a
         * handler stuck in a call that never returns would hold the stop forever. So the stop
         * runs beside us with a deadline; past it the server is abandoned to the exit that
         * follows (sessions live in their own processes and are re-attached at the next start,
         * D15). */
        pthread_t t;
        bool joined = false;
        if (pthread_create(&t, NULL, stop_main, srv->daemon) == 0) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += STOP_EXTRA_MS / 1000;
            joined = pthread_timedjoin_np(t, NULL, &dl) == 0;
            if (!joined)
                pthread_detach(t);
        }
        if (!joined) {
            log_msg(LOG_ERROR,
                    "request handler(s) still stuck %u ms after the shutdown grace; exiting "
                    "without them",
                    STOP_EXTRA_MS);
            return AH_E_TIMEOUT;
        }
    } else {
        MHD_stop_daemon(srv->daemon);
    }
    gate_free(srv->gate);
    gate_tls_free(srv->tls);
    close(srv->listen_fd);
    if (srv->cfg.wake_coalesce_ms)
        pthread_mutex_destroy(&srv->wake_mu); /* every stream is closed: no wake can come */
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->idle);
    free(srv);
    return 0;
}
