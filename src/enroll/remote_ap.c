/*
 * remote_ap.c — remote sessions, access point side (remote_ap.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
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

void remote_ap_set_server(struct remote_ap *r, struct link_server *srv) {
    pthread_mutex_lock(&r->mu);
    r->loop = srv ? link_server_loop(srv) : NULL;
    pthread_mutex_unlock(&r->mu);
}

void remote_ap_free(struct remote_ap *r) {
    if (!r)
        return;
    while (r->peers) {
        struct peer *p = r->peers;
        r->peers = p->next;
        free(p);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}
