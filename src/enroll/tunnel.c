/*
 * tunnel.c — OpenTcp tunnels (see tunnel.h): one relay between a descriptor and a QUIC stream,
 * used by both ends, on the link's loop thread.
 *
 * The relay's descriptor is watched edge-triggered (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET), so
 * readiness is remembered in two flags (rd, wr) that a short read or EAGAIN clears: a side that
 * cannot move now (no room in the stream, nothing to write) simply waits for the next edge or
 * for the stream's on_writable, and a hang-up never turns into a busy loop.
 *
 * One owner, one end: the struct lives until the stream's on_close (always called, also when
 * the connection is lost or the loop stops); a relay whose stream never opened is freed where
 * it failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "tunnel.h"

#define IO_CHUNK (64 * 1024) /* one read from the descriptor */
#define WATCH_EV (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

enum pstate { P_OPENING, P_RELAY, P_DONE };

struct relay {
    bool ap; /* the access point's end (else the executor's) */
    enum pstate st;
    struct link_loop *l;
    struct link_stream *s; /* NULL once the stream is gone */
    int fd;                /* -1 once closed */
    struct link_watch *w;
    int tfd; /* opening deadline (timerfd), -1 when none */
    struct link_watch *tw;
    bool rd, wr;        /* edge-triggered readiness of fd */
    bool connecting;    /* executor: the TCP connect is in progress */
    bool fd_eof;        /* fd said EOF: the stream was finished */
    bool s_eof;         /* the stream's peer finished: fd's write side is shut once pend is out */
    bool wr_shut;
    unsigned char *pend; /* stream bytes fd has not taken yet (credit not returned for them) */
    size_t pend_n, pend_off, pend_cap;
    uint64_t up, down; /* bytes descriptor → stream, stream → descriptor */
    int64_t t0;
    /* access point */
    const struct tunnel_ap_hooks *h;
    void *arg;
    bool result_sent;
    struct link_conn *conn;
    char exec_id[256];
    struct relay *next, *prev; /* the access point's open tunnels (loop thread) */
};

static struct relay *ap_list; /* loop thread only */
static size_t ap_count;       /* read by tunnel_ap_count from any thread */

size_t tunnel_ap_count(void) {
    return __atomic_load_n(&ap_count, __ATOMIC_RELAXED);
}

static void relay_pump(struct relay *r);

static void close_timer(struct relay *r) {
    link_watch_del(r->tw);
    r->tw = NULL;
    if (r->tfd >= 0)
        close(r->tfd);
    r->tfd = -1;
}

static void close_fd(struct relay *r) {
    link_watch_del(r->w);
    r->w = NULL;
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

/* The access point's answer to its owner, once. */
static void ap_result(struct relay *r, int status, const char *code, const char *detail) {
    if (!r->ap || r->result_sent)
        return;
    r->result_sent = true;
    if (r->h && r->h->result)
        r->h->result(r->arg, r->fd, status, code, detail);
}

/* Frees r (its stream is gone or never was). */
static void relay_free(struct relay *r) {
    close_timer(r);
    close_fd(r);
    if (r->ap) {
        ap_result(r, 502, "closed", "the tunnel ended before the executor answered");
        if (r->prev)
            r->prev->next = r->next;
        else if (ap_list == r)
            ap_list = r->next;
        if (r->next)
            r->next->prev = r->prev;
        __atomic_sub_fetch(&ap_count, 1, __ATOMIC_RELAXED);
        int64_t ms = r->st == P_OPENING ? 0 : time_mono_ms() - r->t0;
        if (r->h && r->h->closed)
            r->h->closed(r->arg, r->up, r->down, ms);
    }
    free(r->pend);
    free(r);
}

/* Something broke: the stream is reset (both ways) and the descriptor closed; r goes with the
 * stream's on_close. */
static void relay_abort(struct relay *r) {
    r->st = P_DONE;
    close_timer(r);
    close_fd(r);
    if (r->s)
        link_stream_reset(r->s, 1);
}

/* ---- the relay's stream side ---------------------------------------------------------------- */

static size_t on_data(void *sctx, struct link_stream *s, const void *p, size_t n) {
    struct relay *r = sctx;
    if (r->st == P_DONE || r->fd < 0)
        return n; /* nothing will read them: credit back, bytes dropped */
    /* keep them (held without credit: bounded by the stream's window), then write what fd
     * takes; credit comes back as they are written */
    if (r->pend_off && r->pend_off == r->pend_n)
        r->pend_off = r->pend_n = 0;
    if (r->pend_n + n > r->pend_cap) {
        if (r->pend_off) {
            memmove(r->pend, r->pend + r->pend_off, r->pend_n - r->pend_off);
            r->pend_n -= r->pend_off;
            r->pend_off = 0;
        }
        if (r->pend_n + n > r->pend_cap) {
            size_t cap = r->pend_cap ? r->pend_cap : 16384;
            while (cap < r->pend_n + n)
                cap *= 2;
            unsigned char *b = realloc(r->pend, cap);
            if (!b) {
                relay_abort(r);
                return n;
            }
            r->pend = b;
            r->pend_cap = cap;
        }
    }
    memcpy(r->pend + r->pend_n, p, n);
    r->pend_n += n;
    (void)s;
    relay_pump(r);
    return 0;
}

static void on_eof(void *sctx, struct link_stream *s) {
    struct relay *r = sctx;
    (void)s;
    r->s_eof = true;
    relay_pump(r);
}

static void on_writable(void *sctx, struct link_stream *s) {
    (void)s;
    relay_pump(sctx);
}

static void on_close(void *sctx, struct link_stream *s, uint64_t app_error) {
    struct relay *r = sctx;
    (void)s;
    r->s = NULL;
    if (r->ap && !r->result_sent)
        ap_result(r, 502, "closed",
                  app_error ? "the executor reset the tunnel stream before answering"
                            : "the executor closed the tunnel stream before answering");
    relay_free(r);
}

/* ---- the relay's descriptor side ------------------------------------------------------------ */

/* Writes what is pending to fd; returns credit for what was written. false: fd is broken. */
static bool flush_pend(struct relay *r) {
    size_t wrote = 0;
    bool ok = true;
    while (r->wr && r->pend_off < r->pend_n) {
        ssize_t w = send(r->fd, r->pend + r->pend_off, r->pend_n - r->pend_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                r->wr = false;
            else
                ok = false;
            break;
        }
        r->pend_off += (size_t)w;
        wrote += (size_t)w;
    }
    if (r->pend_off == r->pend_n)
        r->pend_off = r->pend_n = 0;
    if (wrote) {
        r->down += wrote;
        if (r->s)
            link_stream_consume(r->s, wrote);
    }
    return ok;
}

static void relay_pump(struct relay *r) {
    if (r->st != P_RELAY || r->fd < 0)
        return;
    /* stream → fd */
    if (!flush_pend(r)) {
        relay_abort(r);
        return;
    }
    if (r->s_eof && r->pend_n == 0 && !r->wr_shut) {
        shutdown(r->fd, SHUT_WR); /* the peer is done sending: so is this side of fd */
        r->wr_shut = true;
    }
    /* fd → stream, while the stream has room */
    static __thread unsigned char buf[IO_CHUNK]; /* the loop thread's; one relay at a time */
    while (r->rd && !r->fd_eof && r->s) {
        size_t room = link_stream_room(r->s);
        if (!room) {
            /* a write that does not fit is what asks the link for on_writable: offer one
             * byte, which it refuses (takes 0) and remembers */
            (void)link_stream_send(r->s, "", 1);
            break;
        }
        ssize_t n = recv(r->fd, buf, room < sizeof(buf) ? room : sizeof(buf), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                r->rd = false;
                break;
            }
            relay_abort(r);
            return;
        }
        if (n == 0) {
            r->fd_eof = true;
            link_stream_finish(r->s);
            break;
        }
        int64_t took = link_stream_send(r->s, buf, (size_t)n);
        if (took != n) { /* cannot happen within room; a closed stream */
            relay_abort(r);
            return;
        }
        r->up += (uint64_t)n;
    }
    /* both directions over: the descriptor is not needed any more; the stream closes itself
     * once the peer acknowledged our FIN */
    if (r->fd_eof && r->wr_shut)
        close_fd(r);
}

static void on_fd(void *arg, uint32_t ev) {
    struct relay *r = arg;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        r->rd = true;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        r->wr = true;
    if (r->connecting) {
        if (!(ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
            return;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            soerr = errno;
        r->connecting = false;
        close_timer(r);
        if (soerr) {
            char msg[200];
            snprintf(msg, sizeof(msg), "cannot connect to the SSH destination: %s",
                     strerror(soerr));
            json_t *e = json_pack("{s:s, s:s, s:s}", "type", "OpenTcpErr", "code",
                                  "connect_failed", "message", msg);
            if (e && r->s)
                link_stream_send_frame(r->s, e);
            json_decref(e);
            log_msg(LOG_WARN, "tunnel: %s", msg);
            r->st = P_DONE;
            close_fd(r);
            if (r->s)
                link_stream_finish(r->s);
            return;
        }
        json_t *ok = json_pack("{s:s}", "type", "OpenTcpOk");
        int rc = ok && r->s ? link_stream_send_frame(r->s, ok) : AH_E_NOMEM;
        json_decref(ok);
        if (rc < 0) {
            relay_abort(r);
            return;
        }
        r->st = P_RELAY;
        r->t0 = time_mono_ms();
    }
    relay_pump(r);
}

/* The opening deadline passed. */
static void on_timer(void *arg, uint32_t ev) {
    struct relay *r = arg;
    (void)ev;
    close_timer(r);
    if (r->st != P_OPENING && !r->connecting)
        return;
    if (r->ap) {
        ap_result(r, 504, "timeout", "the executor did not answer the tunnel request in time");
    } else {
        json_t *e = json_pack("{s:s, s:s, s:s}", "type", "OpenTcpErr", "code", "connect_failed",
                              "message", "connecting to the SSH destination timed out");
        if (e && r->s)
            link_stream_send_frame(r->s, e);
        json_decref(e);
        log_msg(LOG_WARN, "tunnel: connecting to the SSH destination timed out");
    }
    r->connecting = false;
    r->st = P_DONE;
    close_fd(r);
    if (r->s) {
        if (r->ap)
            link_stream_reset(r->s, 1);
        else
            link_stream_finish(r->s);
    }
}

static int arm_timer(struct relay *r, int64_t ms) {
    r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (r->tfd < 0)
        return ah_err_from_errno(errno);
    struct itimerspec its = {.it_value = {ms / 1000, (ms % 1000) * 1000000L}};
    timerfd_settime(r->tfd, 0, &its, NULL);
    return link_watch_add(r->l, r->tfd, EPOLLIN, on_timer, r, &r->tw);
}

/* ---- executor --------------------------------------------------------------------------------
 */

int tunnel_exec_config_init(struct tunnel_exec_config *cfg, bool enabled, const char *dst,
                            char *err, size_t errn) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->enabled = enabled;
    if (!dst || strlen(dst) >= sizeof(cfg->dst)) {
        snprintf(err, errn, "--ssh-dst is missing or too long");
        return AH_E_INVAL;
    }
    snprintf(cfg->dst, sizeof(cfg->dst), "%s", dst);
    char host[256];
    int port = 0;
    if (link_parse_address(dst, 22, host, sizeof(host), &port) < 0 || !strchr(dst, ':')) {
        snprintf(err, errn, "--ssh-dst: '%s' is not HOST:PORT", dst);
        return AH_E_INVAL;
    }
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g != 0 || !ai) {
        snprintf(err, errn, "--ssh-dst: cannot resolve '%s': %s", host, gai_strerror(g));
        return AH_E_INVAL;
    }
    memcpy(&cfg->addr, ai->ai_addr, ai->ai_addrlen);
    cfg->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static size_t exec_count; /* the executor's open tunnels (loop thread) */

/* A refused stream: its bytes are dropped until it closes. */
static size_t drop_data(void *sctx, struct link_stream *s, const void *p, size_t n) {
    (void)sctx, (void)s, (void)p;
    return n;
}
static const struct link_stream_handlers refused_handlers = {.on_data = drop_data};

static void exec_refuse(struct link_stream *s, const char *code, const char *msg) {
    json_t *e = json_pack("{s:s, s:s, s:s}", "type", "OpenTcpErr", "code", code, "message", msg);
    link_stream_set_handlers(s, &refused_handlers, NULL);
    link_stream_set_raw(s);
    if (e)
        link_stream_send_frame(s, e);
    json_decref(e);
    link_stream_finish(s);
    log_msg(LOG_INFO, "tunnel: refused OpenTcp (%s): %s", code, msg);
}

static void exec_close(void *sctx, struct link_stream *s, uint64_t app_error) {
    exec_count--;
    on_close(sctx, s, app_error);
}
static const struct link_stream_handlers exec_handlers = {
    .on_data = on_data,
    .on_eof = on_eof,
    .on_writable = on_writable,
    .on_close = exec_close,
};

int tunnel_exec_frame(const struct tunnel_exec_config *cfg, struct link_stream *s,
                      const json_t *msg) {
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!type || strcmp(type, "OpenTcp") != 0)
        return 0;
    const char *dst = json_string_value(json_object_get(msg, "dst"));
    const char *reason = json_string_value(json_object_get(msg, "reason"));
    if (!cfg || !cfg->enabled) {
        exec_refuse(s, "ssh_disabled", "this executor does not accept tunnels (--ssh disabled)");
        return 1;
    }
    if (!dst) {
        exec_refuse(s, "bad_request", "OpenTcp needs a string dst");
        return 1;
    }
    if (strcmp(dst, "ssh") != 0 && strcmp(dst, cfg->dst) != 0) {
        char m[400];
        snprintf(m, sizeof(m), "destination '%.100s' is not allowed: this executor tunnels only "
                               "to its SSH destination",
                 dst);
        exec_refuse(s, "dst_not_allowed", m);
        return 1;
    }
    if (exec_count >= TUNNEL_EXEC_MAX) {
        exec_refuse(s, "too_many_tunnels", "this executor has too many tunnels open");
        return 1;
    }
    struct relay *r = calloc(1, sizeof(*r));
    if (!r) {
        exec_refuse(s, "connect_failed", "out of memory");
        return 1;
    }
    r->l = link_conn_loop(link_stream_conn(s));
    r->s = s;
    r->fd = r->tfd = -1;
    r->st = P_OPENING;
    r->fd = socket(cfg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int cr = r->fd < 0 ? -1 : connect(r->fd, (const struct sockaddr *)&cfg->addr, cfg->addrlen);
    int cerr = errno;
    if (r->fd < 0 || (cr < 0 && cerr != EINPROGRESS)) {
        char m[300];
        snprintf(m, sizeof(m), "cannot connect to the SSH destination %s: %s", cfg->dst,
                 strerror(cerr));
        if (r->fd >= 0)
            close(r->fd);
        free(r);
        exec_refuse(s, "connect_failed", m);
        return 1;
    }
    int one = 1;
    setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* interactive traffic */
    r->connecting = true;
    if (link_watch_add(r->l, r->fd, WATCH_EV, on_fd, r, &r->w) < 0 ||
        arm_timer(r, TUNNEL_CONNECT_TIMEOUT_MS) < 0) {
        close_timer(r);
        close_fd(r);
        free(r);
        exec_refuse(s, "connect_failed", "cannot watch the connection");
        return 1;
    }
    exec_count++;
    /* bytes after OpenTcp are the client's: raw from now on (the access point sends none
     * before our OpenTcpOk; any that come early wait in pend) */
    link_stream_set_handlers(s, &exec_handlers, r);
    link_stream_set_raw(s);
    log_msg(LOG_INFO, "tunnel: OpenTcp to %s (reason %s)", cfg->dst, reason ? reason : "-");
    return 1;
}

/* The executor's view of a stream the access point opened: its first frame decides. */
static int first_frame(void *sctx, struct link_stream *s, json_t *msg) {
    if (tunnel_exec_frame(sctx, s, msg))
        return 0;
    const char *type = json_string_value(json_object_get(msg, "type"));
    log_msg(LOG_WARN, "tunnel: a stream from the access point began with '%s', which this "
                      "executor does not serve: reset",
            type ? type : "?");
    return -1;
}
static const struct link_stream_handlers first_handlers = {.on_frame = first_frame};

static int exec_on_stream(void *ctx, struct link_conn *c, struct link_stream *s) {
    (void)c;
    link_stream_set_handlers(s, &first_handlers, ctx);
    return 0;
}
const struct link_handlers tunnel_exec_handlers = {.on_stream = exec_on_stream};

/* ---- access point ----------------------------------------------------------------------------
 */

static int ap_frame(void *sctx, struct link_stream *s, json_t *msg) {
    struct relay *r = sctx;
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (r->st != P_OPENING || !type)
        return AH_E_GONE;
    if (strcmp(type, "OpenTcpOk") == 0) {
        close_timer(r);
        link_stream_set_raw(s); /* the executor's next bytes are its sshd's */
        r->st = P_RELAY;
        r->t0 = time_mono_ms();
        ap_result(r, 200, "ok", NULL);
        relay_pump(r); /* the client may have sent its first bytes already */
        return 0;
    }
    if (strcmp(type, "OpenTcpErr") == 0) {
        const char *code = json_string_value(json_object_get(msg, "code"));
        const char *m = json_string_value(json_object_get(msg, "message"));
        if (!code)
            code = "error";
        bool denied = !strcmp(code, "ssh_disabled") || !strcmp(code, "dst_not_allowed");
        bool busy = !strcmp(code, "too_many_tunnels");
        char detail[400];
        snprintf(detail, sizeof(detail), "executor %s refused the tunnel (%s)%s%.200s", r->exec_id,
                 code, m ? ": " : "", m ? m : "");
        close_timer(r);
        ap_result(r, denied ? 403 : busy ? 503 : 502, code, detail);
        r->st = P_DONE;
        close_fd(r);
        return AH_E_GONE; /* the stream is reset; on_close frees r */
    }
    return AH_E_GONE;
}

static const struct link_stream_handlers ap_handlers = {
    .on_frame = ap_frame,
    .on_data = on_data,
    .on_eof = on_eof,
    .on_writable = on_writable,
    .on_close = on_close,
};

void tunnel_ap_open(struct link_server *sv, const char *executor_id, const char *dst, int fd,
                    const struct tunnel_ap_hooks *hooks, void *arg) {
    struct relay *r = calloc(1, sizeof(*r));
    if (!r) {
        if (hooks->result)
            hooks->result(arg, fd, 503, "no_memory", "the access point is out of memory");
        close(fd);
        if (hooks->closed)
            hooks->closed(arg, 0, 0, 0);
        return;
    }
    r->ap = true;
    r->st = P_OPENING;
    r->fd = fd;
    r->tfd = -1;
    r->h = hooks;
    r->arg = arg;
    r->l = link_server_loop(sv);
    snprintf(r->exec_id, sizeof(r->exec_id), "%s", executor_id);
    r->next = ap_list;
    if (ap_list)
        ap_list->prev = r;
    ap_list = r;
    __atomic_add_fetch(&ap_count, 1, __ATOMIC_RELAXED);
    struct link_conn *c = link_server_conn(sv, executor_id);
    if (!c) {
        ap_result(r, 502, "offline", "the executor is not connected to this access point");
        relay_free(r);
        return;
    }
    size_t n = 0;
    for (struct relay *o = ap_list; o; o = o->next)
        n += o->conn == c;
    if (n >= TUNNEL_MAX_PER_EXECUTOR) {
        char d[160];
        snprintf(d, sizeof(d), "the executor has %d tunnels open already; try again later",
                 TUNNEL_MAX_PER_EXECUTOR);
        ap_result(r, 503, "too_many_tunnels", d);
        relay_free(r);
        return;
    }
    r->conn = c;
    json_t *open = json_pack("{s:s, s:s, s:s}", "type", "OpenTcp", "dst", dst, "reason", "ssh");
    int rc = open ? link_stream_open(c, &ap_handlers, r, &r->s) : AH_E_NOMEM;
    if (rc == 0 && (rc = link_stream_send_frame(r->s, open)) < 0) {
        link_stream_reset(r->s, 1); /* on_close frees r */
        json_decref(open);
        return;
    }
    json_decref(open);
    if (rc < 0) {
        ap_result(r, 503, "busy",
                  rc == AH_E_BUSY ? "the executor's link has no stream to spare; try again later"
                                  : "cannot open a tunnel stream to the executor");
        relay_free(r);
        return;
    }
    /* the client's bytes wait in the socketpair until the executor said OpenTcpOk */
    if (link_watch_add(r->l, r->fd, WATCH_EV, on_fd, r, &r->w) < 0 ||
        arm_timer(r, TUNNEL_OPEN_TIMEOUT_MS) < 0) {
        ap_result(r, 503, "busy", "cannot watch the tunnel");
        relay_abort(r);
    }
}
