/*
 * remote_ap.c — remote sessions, access point side (remote_ap.h).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../exec/exec.h"
#include "../obs/obs.h"
#include "relay.h"
#include "remote_ap.h"

/* An executor's current connection (loop thread only). */
struct peer {
    struct peer *next;
    char id[256];
    struct link_conn *c;
};

struct remote_ap {
    pthread_mutex_t mu; /* guards loop (hooks come from the supervisor's thread) */
    struct link_loop *loop;
    struct executor *ex;
    struct peer *peers; /* loop thread only */
    struct link_control_hooks fleet; /* the wrapped control hooks */
    int64_t last_kick; /* monotonic ms of the last heartbeat's scheduling pass */
    /* workspace reads in flight (loop thread only) */
    struct rd *reads;
    size_t n_reads;
    size_t bytes_held; /* announced lengths of the answers being received: at most
                        * REMOTE_READS_BYTES_MAX, so 64 reads can not hold 64 x 64 MiB */
    int tfd; /* ticks while reads are in flight: their deadlines */
    struct link_watch *tw;
    _Atomic size_t posted; /* reads posted and not yet done (any thread) */
};

/* ---- connections ------------------------------------------------------------------------------ */

static struct link_conn *conn_of(struct remote_ap *r, const char *id) {
    for (struct peer *p = r->peers; p; p = p->next)
        if (strcmp(p->id, id) == 0)
            return p->c;
    return NULL;
}

static void on_connect(void *ctx, struct link_conn *c, const char *peer_id) {
    struct remote_ap *r = ctx;
    struct peer *p = NULL;
    for (p = r->peers; p && strcmp(p->id, peer_id) != 0; p = p->next)
        ;
    if (!p && (p = calloc(1, sizeof(*p)))) {
        snprintf(p->id, sizeof(p->id), "%s", peer_id);
        p->next = r->peers;
        r->peers = p;
    }
    if (p)
        p->c = c; /* the newest connection of an executor is the one to use */
    if (r->ex)
        exec_executor_link(r->ex, peer_id, true); /* D44: its sessions are reachable again */
}

static void on_close(void *ctx, struct link_conn *c, const char *why) {
    struct remote_ap *r = ctx;
    for (struct peer **pp = &r->peers; *pp; pp = &(*pp)->next)
        if ((*pp)->c == c) {
            struct peer *p = *pp;
            *pp = p->next;
            if (r->ex) /* D44: the unreachable timeout of its sessions starts */
                exec_executor_link(r->ex, p->id, false);
            free(p);
            return;
        }
}

/* ---- streams the executor opens: session events and reports ------------------------------------ */

struct inbound {
    struct remote_ap *r;
    char peer[256];
};

static int inbound_frame(void *sctx, struct link_stream *s, json_t *msg) {
    struct inbound *in = sctx;
    struct remote_ap *r = in->r;
    const char *type = json_string_value(json_object_get(msg, "type"));
    const char *id = json_string_value(json_object_get(msg, "session_id"));
    if (!type || !id || !ulid_valid(id) || !r->ex)
        return AH_E_PROTOCOL; /* the stream is reset */
    if (strcmp(type, "SessionEvents") == 0) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
            return AH_E_IO;
        link_stream_set_raw(s);
        /* the supervisor frees nothing of ours: from here the relay owns the stream */
        link_stream_set_handlers(s, NULL, NULL);
        exec_attach_remote(r->ex, sv[0], in->peer);
        relay_start(r->loop, sv[1], s, NULL, NULL);
        free(in);
        return 0;
    }
    if (strcmp(type, "SessionEnded") == 0) {
        const char *how = json_string_value(json_object_get(msg, "how"));
        exec_remote_ended(r->ex, in->peer, id, how,
                          json_is_true(json_object_get(msg, "launch_failed")));
        link_stream_finish(s);
        return 0;
    }
    return AH_E_PROTOCOL;
}

static void inbound_close(void *sctx, struct link_stream *s, uint64_t app_error) {
    free(sctx);
}

static const struct link_stream_handlers inbound_handlers = {.on_frame = inbound_frame,
                                                             .on_close = inbound_close};

static int on_stream(void *ctx, struct link_conn *c, struct link_stream *s) {
    struct inbound *in = calloc(1, sizeof(*in));
    if (!in)
        return AH_E_NOMEM;
    in->r = ctx;
    snprintf(in->peer, sizeof(in->peer), "%s", link_conn_peer_id(c));
    link_stream_set_handlers(s, &inbound_handlers, in);
    return 0;
}

static const struct link_handlers handlers = {
    .on_connect = on_connect, .on_stream = on_stream, .on_close = on_close};

/* ---- RPCs the access point opens ---------------------------------------------------------------- */

struct rpc {
    struct remote_ap *r;
    char executor[256];
    char id[ULID_LEN + 1];
    bool launch;
    bool answered;
    json_t *msg;
    /* D48: with export on, the RPC is a client span (kind 3) whose traceparent the frame
     * carries, so the executor's handler span is its child; it ends with the answer */
    bool traced;
    struct obs_trace tr;
    int64_t t0;
    char action[16]; /* a Signal's */
};

/* Exports the RPC's client span once (error: refused, unanswered or not sent). */
static void rpc_span(struct rpc *q, bool error) {
    if (!q->traced)
        return;
    q->traced = false;
    struct obs_span sp = {
        .name = q->launch ? "LaunchSession" : "Signal",
        .kind = 3,
        .trace = q->tr,
        .start_ns = q->t0,
        .end_ns = obs_wall_ns(),
        .error = error,
        .attrs = {{"rpc.system", "ah-link"},
                  {"rpc.method", q->launch ? "LaunchSession" : "Signal"},
                  {"ah.session_id", q->id},
                  {"ah.executor_id", q->executor},
                  {"ah.signal_action", q->action[0] ? q->action : NULL}},
    };
    obs_span_export(&sp);
}

/* D48: with export on, makes q a client span, the child of parent (a traceparent), and puts
 * the span's traceparent in the frame; without, the frame carries parent as it is. */
static void rpc_trace(struct rpc *q, const char *parent) {
    if (!parent || !q->msg)
        return;
    char tp[56];
    if (obs_otlp_enabled() && obs_trace_start(parent, &q->tr) == 0) {
        q->traced = true;
        q->t0 = obs_wall_ns();
        obs_traceparent_format(&q->tr, tp);
        parent = tp;
    }
    json_object_set_new(q->msg, "traceparent", json_string(parent));
}

static void rpc_free(struct rpc *q) {
    json_decref(q->msg);
    free(q);
}

static int rpc_frame(void *sctx, struct link_stream *s, json_t *msg) {
    struct rpc *q = sctx;
    const char *type = json_string_value(json_object_get(msg, "type"));
    const char *error = json_string_value(json_object_get(msg, "error"));
    q->answered = true;
    rpc_span(q, type && strcmp(type, "Error") == 0);
    if (type && strcmp(type, "Error") == 0) {
        log_msg(LOG_WARN, "session %s: executor %s refused the %s: %s", q->id, q->executor,
                q->launch ? "launch" : "signal", error ? error : "?");
        if (q->launch && q->r->ex)
            exec_remote_ended(q->r->ex, q->executor, q->id, error ? error : "refused", true);
    }
    return 0;
}

static void rpc_close(void *sctx, struct link_stream *s, uint64_t app_error) {
    struct rpc *q = sctx;
    rpc_span(q, true); /* unanswered */
    if (q->launch && !q->answered && q->r->ex)
        /* the link went before the executor took it: placed again (D44) */
        exec_remote_requeue(q->r->ex, q->executor, q->id,
                            "the link to the executor was lost before it accepted the session");
    rpc_free(q);
}

static const struct link_stream_handlers rpc_handlers = {.on_frame = rpc_frame,
                                                         .on_close = rpc_close};

static void rpc_send(void *arg) {
    struct rpc *q = arg;
    struct remote_ap *r = q->r;
    struct link_conn *c = conn_of(r, q->executor);
    struct link_stream *s = NULL;
    int rc = c ? link_stream_open(c, &rpc_handlers, q, &s) : AH_E_UNAVAIL;
    if (rc == 0 && (rc = link_stream_send_frame(s, q->msg)) == 0) {
        link_stream_finish(s);
        json_decref(q->msg);
        q->msg = NULL;
        return; /* rpc_close frees q */
    }
    if (s) {
        q->answered = true; /* reported below, not again by rpc_close */
        link_stream_reset(s, 1);
    }
    rpc_span(q, true);
    log_msg(LOG_WARN, "session %s: cannot reach executor %s (%s)", q->id, q->executor,
            c ? ah_strerror(rc) : "not connected");
    if (q->launch && r->ex && c)
        exec_remote_ended(r->ex, q->executor, q->id, "cannot send the launch request", true);
    else if (q->launch && r->ex) /* not connected now: placed again (D44) */
        exec_remote_requeue(r->ex, q->executor, q->id, "the executor is not connected");
    if (!s)
        rpc_free(q);
}

static int post_rpc(struct remote_ap *r, const char *executor, const char *id, json_t *msg,
                    bool launch, const char *action, const char *traceparent) {
    struct rpc *q = msg ? calloc(1, sizeof(*q)) : NULL;
    if (!q) {
        json_decref(msg);
        return AH_E_NOMEM;
    }
    q->r = r;
    q->msg = msg;
    q->launch = launch;
    snprintf(q->executor, sizeof(q->executor), "%s", executor);
    snprintf(q->id, sizeof(q->id), "%s", id ? id : "");
    snprintf(q->action, sizeof(q->action), "%s", action ? action : "");
    rpc_trace(q, traceparent);
    pthread_mutex_lock(&r->mu);
    int rc = r->loop ? link_post(r->loop, rpc_send, q) : AH_E_UNAVAIL;
    pthread_mutex_unlock(&r->mu);
    if (rc < 0) {
        q->traced = false; /* never sent: no span */
        rpc_free(q);
    }
    return rc;
}

int remote_ap_launch(void *arg, const char *executor, json_t *msg) {
    const char *id = json_string_value(json_object_get(msg, "session_id"));
    /* the request's traceparent, which the client span (when traced) replaces in the frame */
    char parent[56] = "";
    const char *tp = json_string_value(json_object_get(msg, "traceparent"));
    if (tp)
        snprintf(parent, sizeof(parent), "%s", tp);
    return post_rpc(arg, executor, id, msg, true, NULL, parent[0] ? parent : NULL);
}

void remote_ap_signal(void *arg, const char *executor, const char *id, const char *action,
                      const char *traceparent) {
    json_t *m = json_pack("{s:s, s:s, s:s}", "type", "Signal", "session_id", id, "action",
                          action);
    if (post_rpc(arg, executor, id, m, false, action, traceparent) < 0)
        log_msg(LOG_WARN, "session %s: cannot send %s to executor %s", id, action, executor);
}

/* ---- workspace reads ------------------------------------------------------------------------------ */

struct rd {
    struct rd *next;
    struct remote_ap *r;
    char executor[256];
    json_t *msg;
    remote_read_fn done;
    void *arg;
    struct link_stream *s; /* NULL once closed */
    bool finished;         /* done was called */
    bool header;           /* the Reply frame came; raw bytes follow */
    char ctype[40];
    size_t want;
    size_t held; /* what this read counts in r->bytes_held */
    struct ah_buf body;
    int64_t deadline;
};

static size_t env_size(const char *name, size_t def) {
    const char *s = getenv(name);
    int64_t v;
    return s && parse_int64(s, 1, INT64_MAX, &v) == 0 ? (size_t)v : def;
}

static void rd_tick(struct remote_ap *r) {
    if (r->tfd < 0)
        return;
    struct itimerspec its = {0};
    if (r->reads) /* 100 ms is plenty for deadlines counted in seconds */
        its.it_interval.tv_nsec = its.it_value.tv_nsec = 100 * 1000000L;
    timerfd_settime(r->tfd, 0, &its, NULL);
}

/* Calls done once (r->problem set, or the body), and takes rd off the deadline list. */
static void rd_finish(struct rd *d, struct ah_problem *p) {
    if (d->finished)
        return;
    d->finished = true;
    struct remote_ap *r = d->r;
    r->bytes_held -= d->held;
    d->held = 0;
    for (struct rd **pp = &r->reads; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            r->n_reads--;
            break;
        }
    if (!r->reads)
        rd_tick(r);
    struct remote_read_result res = {0};
    if (p && p->code) {
        res.problem = *p;
        memset(p, 0, sizeof(*p));
    } else {
        res.content_type = strcmp(d->ctype, "application/json") == 0
                               ? "application/json"
                               : "text/x-diff; charset=utf-8";
        res.body = AH_TAKE(d->body.p);
        res.len = d->body.n;
        d->body.n = d->body.cap = 0;
    }
    d->done(d->arg, &res);
    problem_clear(&res.problem);
    free(res.body);
    atomic_fetch_sub(&r->posted, 1);
}

static void rd_free(struct rd *d) {
    json_decref(d->msg);
    ah_buf_clear(&d->body);
    free(d);
}

/* Fails the read with code and detail; the stream, if any, is reset (its close frees d). */
static void rd_fail(struct rd *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rd_fail(struct rd *d, int code, const char *fmt, ...) {
    struct ah_problem p = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p.detail, sizeof(p.detail), fmt, ap);
    va_end(ap);
    rd_finish(d, &p);
    if (d->s)
        link_stream_reset(d->s, 1);
}

static int rd_frame(void *sctx, struct link_stream *s, json_t *msg) {
    struct rd *d = sctx;
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (d->finished || d->header)
        return AH_E_PROTOCOL;
    if (type && strcmp(type, "Error") == 0) { /* an executor that does not know the request */
        const char *e = json_string_value(json_object_get(msg, "error"));
        rd_fail(d, AH_E_NETWORK, "executor %.200s cannot serve this read: %.200s", d->executor,
                e ? e : "refused");
        return 0;
    }
    json_t *prob = json_object_get(msg, "problem");
    if (!type || strcmp(type, "Reply") != 0) {
        rd_fail(d, AH_E_PROTOCOL, "executor %.200s answered the read with a %.40s", d->executor,
                type ? type : "message without a type");
        return 0;
    }
    if (json_is_object(prob)) { /* the route's own refusal, made on the executor */
        struct ah_problem p = {0};
        json_int_t code = json_integer_value(json_object_get(prob, "code"));
        const char *detail = json_string_value(json_object_get(prob, "detail"));
        p.code = code < 0 && ah_error_status((int)code) >= 400 ? (int)code : AH_E_PROTOCOL;
        snprintf(p.detail, sizeof(p.detail), "%s", detail ? detail : "");
        json_t *errors = json_object_get(prob, "errors");
        if (json_is_object(errors))
            p.errors = json_incref(errors);
        rd_finish(d, &p);
        problem_clear(&p);
        return 0;
    }
    const char *ct = json_string_value(json_object_get(msg, "content_type"));
    json_t *len = json_object_get(msg, "length");
    size_t max = env_size("AH_REMOTE_READ_MAX_BYTES", REMOTE_READ_MAX);
    if (!ct || !json_is_integer(len) || json_integer_value(len) < 0) {
        rd_fail(d, AH_E_PROTOCOL, "executor %.200s sent a malformed answer", d->executor);
        return 0;
    }
    if ((uint64_t)json_integer_value(len) > max) {
        rd_fail(d, AH_E_TOOLARGE,
                "the answer of executor %.200s is %lld bytes, more than the %zu bytes an answer "
                "relayed from an executor may have; ask for less (fewer files, a page, a "
                "smaller context)",
                d->executor, (long long)json_integer_value(len), max);
        return 0;
    }
    size_t budget = env_size("AH_REMOTE_READS_MAX_BYTES", REMOTE_READS_BYTES_MAX);
    if (d->r->bytes_held + (size_t)json_integer_value(len) > budget) {
        rd_fail(d, AH_E_UNAVAIL,
                "the answers of executors being received hold %zu bytes already and this one "
                "is %lld more, past the %zu bytes they may hold together; try again shortly",
                d->r->bytes_held, (long long)json_integer_value(len), budget);
        return 0;
    }
    d->header = true;
    snprintf(d->ctype, sizeof(d->ctype), "%s", ct);
    d->want = (size_t)json_integer_value(len);
    d->held = d->want;
    d->r->bytes_held += d->held;
    d->body.max = d->want;
    link_stream_set_raw(s);
    if (d->want == 0)
        rd_finish(d, NULL);
    return 0;
}

static size_t rd_data(void *sctx, struct link_stream *s, const void *p, size_t n) {
    struct rd *d = sctx;
    if (d->finished)
        return n;
    if (d->body.n + n > d->want) {
        rd_fail(d, AH_E_PROTOCOL, "executor %.200s sent more than the answer it announced",
                d->executor);
        return n;
    }
    if (ah_buf_append(&d->body, p, n) < 0) {
        rd_fail(d, AH_E_NOMEM, "out of memory for the answer of executor %.200s", d->executor);
        return n;
    }
    if (d->body.n == d->want)
        rd_finish(d, NULL);
    return n;
}

static void rd_eof(void *sctx, struct link_stream *s) {
    struct rd *d = sctx;
    if (!d->finished)
        rd_fail(d, AH_E_NETWORK, "executor %.200s ended its answer early (%zu of %zu bytes)",
                d->executor, d->body.n, d->want);
}

static void rd_close(void *sctx, struct link_stream *s, uint64_t app_error) {
    struct rd *d = sctx;
    d->s = NULL;
    if (!d->finished)
        rd_fail(d, AH_E_NETWORK,
                "the link to executor %.200s broke before it answered (it went offline or "
                "restarted); try again when it is back",
                d->executor);
    rd_free(d);
}

static const struct link_stream_handlers rd_handlers = {
    .on_frame = rd_frame, .on_data = rd_data, .on_eof = rd_eof, .on_close = rd_close};

static void on_rd_tick(void *arg, uint32_t events) {
    struct remote_ap *r = arg;
    uint64_t n;
    if (read(r->tfd, &n, sizeof(n)) < 0) { /* spurious */
    }
    int64_t now = time_mono_ms();
    for (struct rd *d = r->reads, *next; d; d = next) {
        next = d->next;
        if (d->deadline <= now)
            rd_fail(d, AH_E_TIMEOUT,
                    "executor %.200s did not answer within %lld ms (it may be overloaded or its "
                    "link slow); try again",
                    d->executor, (long long)env_size("AH_REMOTE_READ_TIMEOUT_MS",
                                                     REMOTE_READ_TIMEOUT_MS));
    }
}

static void rd_send(void *arg) {
    struct rd *d = arg;
    struct remote_ap *r = d->r;
    if (r->tfd < 0 && (r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) >= 0 &&
        link_watch_add(r->loop, r->tfd, EPOLLIN, on_rd_tick, r, &r->tw) < 0) {
        close(r->tfd);
        r->tfd = -1;
    }
    struct link_conn *c = conn_of(r, d->executor);
    d->next = r->reads;
    r->reads = d;
    r->n_reads++;
    if (!d->next)
        rd_tick(r);
    if (!c) {
        rd_fail(d, AH_E_NETWORK,
                "executor %.200s, which holds this session's workspace, is not connected to this "
                "access point (offline); try again when it is back",
                d->executor);
        rd_free(d);
        return;
    }
    int rc = link_stream_open(c, &rd_handlers, d, &d->s);
    if (rc == 0 && (rc = link_stream_send_frame(d->s, d->msg)) == 0) {
        link_stream_finish(d->s);
        json_decref(AH_TAKE(d->msg));
        return; /* rd_close frees d */
    }
    rd_fail(d, AH_E_NETWORK, "cannot send the read to executor %.200s: %s", d->executor,
            ah_strerror(rc));
    if (!d->s)
        rd_free(d);
}

void remote_ap_read(struct remote_ap *r, const char *executor, json_t *msg, remote_read_fn done,
                    void *arg) {
    struct rd *d = msg ? calloc(1, sizeof(*d)) : NULL;
    struct remote_read_result res = {0};
    if (!d) {
        json_decref(msg);
        problem_set(&res.problem, AH_E_NOMEM, "out of memory while forwarding the read");
        done(arg, &res);
        problem_clear(&res.problem);
        return;
    }
    d->r = r;
    d->msg = msg;
    d->done = done;
    d->arg = arg;
    d->deadline = time_mono_ms() + (int64_t)env_size("AH_REMOTE_READ_TIMEOUT_MS",
                                                     REMOTE_READ_TIMEOUT_MS);
    snprintf(d->executor, sizeof(d->executor), "%s", executor);
    int rc = AH_E_UNAVAIL;
    if (atomic_fetch_add(&r->posted, 1) < REMOTE_READS_MAX) {
        pthread_mutex_lock(&r->mu);
        rc = r->loop ? link_post(r->loop, rd_send, d) : AH_E_NETWORK;
        pthread_mutex_unlock(&r->mu);
    } else {
        rc = AH_E_BUSY;
    }
    if (rc == 0)
        return;
    atomic_fetch_sub(&r->posted, 1);
    if (rc == AH_E_BUSY)
        problem_set(&res.problem, AH_E_UNAVAIL,
                    "%d reads of remote workspaces are in flight already; try again shortly",
                    REMOTE_READS_MAX);
    else
        problem_set(&res.problem, AH_E_NETWORK,
                    "executor %.200s cannot be reached: this server's executor link is not "
                    "running", executor);
    rd_free(d);
    done(arg, &res);
    problem_clear(&res.problem);
}

/* ---- control hooks: the fleet's, and a scheduling pass after a Hello ------------------------------ */

static int hello_hook(void *ctx, const char *spiffe_id, const json_t *hello, json_t **ret_ack,
                      struct ah_problem *reterr) {
    struct remote_ap *r = ctx;
    int rc = r->fleet.hello ? r->fleet.hello(r->fleet.ctx, spiffe_id, hello, ret_ack, reterr) : 0;
    if (rc == 0 && r->ex)
        exec_kick(r->ex); /* it may take queued sessions */
    return rc;
}

static int heartbeat_hook(void *ctx, const char *spiffe_id, const json_t *hb, json_t **ret_ack) {
    struct remote_ap *r = ctx;
    int rc = r->fleet.heartbeat ? r->fleet.heartbeat(r->fleet.ctx, spiffe_id, hb, ret_ack) : 0;
    /* a heartbeat may bring an executor back online or report freed slots: queued sessions may
     * fit now. At most one scheduling pass a second for the whole fleet (loop thread only). */
    int64_t now = time_mono_ms();
    if (rc == 0 && r->ex && now - r->last_kick >= 1000) {
        r->last_kick = now;
        exec_kick(r->ex);
    }
    return rc;
}

static void gone_hook(void *ctx, const char *spiffe_id, const char *reason) {
    struct remote_ap *r = ctx;
    if (r->fleet.gone)
        r->fleet.gone(r->fleet.ctx, spiffe_id, reason);
}

/* ---- life ---------------------------------------------------------------------------------------- */

int remote_ap_new(struct remote_ap **ret) {
    struct remote_ap *r = calloc(1, sizeof(*r));
    if (!r)
        return AH_E_NOMEM;
    pthread_mutex_init(&r->mu, NULL);
    r->tfd = -1;
    *ret = r;
    return 0;
}

void remote_ap_set_exec(struct remote_ap *r, struct executor *ex) {
    r->ex = ex;
}

void remote_ap_server_config(struct remote_ap *r, struct link_server_config *lc) {
    r->fleet = lc->control;
    lc->control = (struct link_control_hooks){
        .hello = hello_hook, .heartbeat = heartbeat_hook, .gone = gone_hook, .ctx = r};
    lc->handlers = &handlers;
    lc->ctx = r;
}

static void release_timer(void *arg) {
    struct remote_ap *r = arg;
    link_watch_del(AH_TAKE(r->tw));
}

void remote_ap_set_server(struct remote_ap *r, struct link_server *srv) {
    if (!srv && r->loop) /* the link stops: its loop lets go of the reads' timer first */
        link_post(r->loop, release_timer, r);
    pthread_mutex_lock(&r->mu);
    r->loop = srv ? link_server_loop(srv) : NULL;
    pthread_mutex_unlock(&r->mu);
}

void remote_ap_free(struct remote_ap *r) {
    if (!r)
        return;
    if (r->tfd >= 0)
        close(r->tfd);
    while (r->peers) {
        struct peer *p = r->peers;
        r->peers = p->next;
        free(p);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}
