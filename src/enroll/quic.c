/*
 * quic.c — the executor link over QUIC (ngtcp2 0.12 + GnuTLS), both sides (D24, D41, D42).
 *
 * One loop thread per side: epoll over the UDP socket(s), a timerfd per connection armed at
 * ngtcp2's next expiry (loss detection, retransmission, idle and handshake timeouts), a 50 ms
 * tick (heartbeats, reconnects, identity reloads) and an eventfd for link_post/stop.
 *
 * Invariants:
 *   - ngtcp2 is never re-entered: a connection is written and closed only from conn_after(),
 *     which every entry point (packet, timer, posted work) calls last; callbacks only set flags.
 *   - A stream's send buffer holds the bytes from the oldest unacknowledged offset to the last
 *     queued one, at most LINK_STREAM_BUF (one frame may exceed it when the buffer is empty);
 *     ngtcp2 reads them in place until acked_stream_data_offset says they arrived.
 *   - Receive credit (flow control) is returned only for bytes the application took.
 *   - The identity refusal is decided inside the TLS handshake (GnuTLS verify function) and sent
 *     to the peer as the CONNECTION_CLOSE reason, so both sides log the same line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "identity.h"
#include "link.h"

#define PRIORITY                                                                                   \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"     \
    "+AES-128-CCM:-GROUP-ALL:+GROUP-SECP256R1:+GROUP-X25519:+GROUP-SECP384R1:+GROUP-SECP521R1:"   \
    "%DISABLE_TLS13_COMPAT_MODE"
#define CID_LEN 18
#define MAX_CIDS 8
#define TICK_MS 50
#define PKT_MAX 1500
#define WHY_MAX 512
#define GOODBYE_WAIT_MS 1000

enum watch_kind { W_EVENT, W_TICK, W_SSOCK, W_CSOCK, W_TIMER, W_FD };
struct watch {
    enum watch_kind kind;
    void *p;
};

struct post {
    void (*fn)(void *);
    void *arg;
    struct post *next;
};

struct link_loop {
    int ep, evfd, tickfd;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    struct post *head, *tail;
    struct watch w_event, w_tick;
    struct link_conn *dead;  /* freed after the current batch of events (which may name them) */
    struct link_watch *dead_watches; /* likewise, descriptors no longer watched */
    struct link_server *srv; /* exactly one of the two */
    struct link_client *cli;
    const char *side; /* "access point" or "executor", for the logs */
};

struct link_stream {
    struct link_conn *c;
    struct link_stream *prev, *next;
    int64_t id;
    const struct link_stream_handlers *h;
    void *sctx;
    bool raw, control, fin_wanted, fin_sent, closed, blocked, want_writable;
    uint64_t app_error;
    struct frame_decoder dec;
    unsigned char *buf;
    size_t cap, head, len; /* unacked bytes are buf[head..len) */
    uint64_t base;         /* stream offset of buf[head] */
    uint64_t sent;         /* stream offset handed to ngtcp2 */
    /* Buffers left behind when buf had to move while ngtcp2 held pointers into it: ngtcp2
     * resends lost data from the memory it was given, which must stay intact until it is
     * acknowledged (ngtcp2_conn_writev_stream), so a moved buffer's old memory lives on until
     * the stream offset `end` is acknowledged. Oldest first. */
    struct retired_buf *retired;
};

struct retired_buf {
    struct retired_buf *next;
    uint64_t end; /* freed once the stream is acknowledged up to here */
    unsigned char *buf;
};

struct link_conn {
    struct link_loop *l;
    struct link_conn *prev, *next, *dead_next;
    ngtcp2_conn *conn;
    gnutls_session_t tls;
    ngtcp2_crypto_conn_ref ref;
    struct ident *ident;
    int fd; /* socket to send on (the server's, or the client's own) */
    int timerfd;
    struct watch w_timer, w_sock;
    struct sockaddr_storage local, remote;
    socklen_t locallen, remotelen;
    char addr[80]; /* peer address, for the logs */
    ngtcp2_cid cids[MAX_CIDS];
    size_t ncids;
    char peer_id[IDENT_ID_MAX];
    char why[WHY_MAX];  /* our refusal of the peer (sent as the close reason) */
    bool refused, handshake_done, connected_reported, hello_seen, gone_reported;
    bool close_pending, app_close, dead;
    char close_reason[WHY_MAX];
    struct link_stream *streams, *control;
    int64_t goodbye_deadline; /* client: closing after Goodbye */
};

struct link_server {
    struct link_loop loop;
    struct link_server_config cfg;
    char td[256];
    int fd, port;
    struct watch w_sock;
    struct sockaddr_storage local;
    socklen_t locallen;
    struct ident *ident;
    struct link_conn *conns;
    size_t n_conns;
    int64_t next_reload;
};

struct link_client {
    struct link_loop loop;
    struct link_client_config cfg;
    struct ident *ident;
    struct link_conn *conn;
    int64_t next_connect, backoff, next_heartbeat, next_reload;
    /* the access points to dial (cfg's host:port first, then its failover list) */
    struct {
        char host[256];
        int port;
    } addrs[LINK_ADDRESSES_MAX];
    size_t n_addrs, at; /* at: the one dialled now */
    atomic_bool enrolled;
    atomic_bool beat_posted; /* link_client_heartbeat_soon: one posted beat at a time */
    bool stopping, rotating;
    char stop_reason[128];
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NGTCP2_SECONDS + (uint64_t)ts.tv_nsec;
}

static void rnd(void *p, size_t n) {
    gnutls_rnd(GNUTLS_RND_RANDOM, p, n);
}

static void addr_str(const struct sockaddr_storage *sa, char *out, size_t n) {
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
        snprintf(out, n, "%s:%d", host, port);
    } else {
        const struct sockaddr_in6 *a = (const void *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        snprintf(out, n, "[%s]:%d", host, port);
    }
}

static const struct link_handlers *conn_handlers(struct link_conn *c, void **ctx) {
    if (c->l->srv) {
        *ctx = c->l->srv->cfg.ctx;
        return c->l->srv->cfg.handlers;
    }
    *ctx = c->l->cli->cfg.ctx;
    return c->l->cli->cfg.handlers;
}

/* ---- the loop ----------------------------------------------------------------------------- */

static int loop_init(struct link_loop *l) {
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->tickfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    pthread_mutex_init(&l->mu, NULL);
    if (l->ep < 0 || l->evfd < 0 || l->tickfd < 0)
        return ah_err_from_errno(errno);
    l->w_event = (struct watch){W_EVENT, l};
    l->w_tick = (struct watch){W_TICK, l};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->w_event};
    epoll_ctl(l->ep, EPOLL_CTL_ADD, l->evfd, &ev);
    ev.data.ptr = &l->w_tick;
    epoll_ctl(l->ep, EPOLL_CTL_ADD, l->tickfd, &ev);
    struct itimerspec its = {.it_interval = {0, TICK_MS * 1000000L},
                             .it_value = {0, TICK_MS * 1000000L}};
    timerfd_settime(l->tickfd, 0, &its, NULL);
    return 0;
}

static void loop_clear(struct link_loop *l) {
    if (l->ep >= 0)
        close(l->ep);
    if (l->evfd >= 0)
        close(l->evfd);
    if (l->tickfd >= 0)
        close(l->tickfd);
    for (struct post *p = l->head, *n; p; p = n) {
        n = p->next;
        free(p);
    }
    pthread_mutex_destroy(&l->mu);
}

int link_post(struct link_loop *l, void (*fn)(void *arg), void *arg) {
    struct post *p = malloc(sizeof(*p));
    if (!p)
        return AH_E_NOMEM;
    *p = (struct post){fn, arg, NULL};
    pthread_mutex_lock(&l->mu);
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
    pthread_mutex_unlock(&l->mu);
    uint64_t one = 1;
    if (write(l->evfd, &one, sizeof(one)) < 0) { /* counter full: a wake-up is pending anyway */
    }
    return 0;
}

static void run_posts(struct link_loop *l) {
    uint64_t v;
    if (read(l->evfd, &v, sizeof(v)) < 0) { /* nothing pending */
    }
    pthread_mutex_lock(&l->mu);
    struct post *p = l->head;
    l->head = l->tail = NULL;
    pthread_mutex_unlock(&l->mu);
    while (p) {
        struct post *n = p->next;
        p->fn(p->arg);
        free(p);
        p = n;
    }
}

/* ---- ngtcp2's memory -------------------------------------------------------------------------- */

/* ngtcp2 0.12 carves a connection's frames, packet records and streams from 8 KiB blocks of 64
 * objects each and keeps every block for the connection's life; an idle control connection uses
 * a few objects of each. Blocks of PAGE_ALLOC bytes or more are mapped on their own, so the
 * pages no object ever reached stay unbacked (most of an idle connection's), and they go back
 * to the kernel when freed instead of scattering the heap. Each allocation carries its size. */
#define PAGE_ALLOC 4096
#define MEM_HDR 16

static void *mem_malloc(size_t n, void *ud) {
    (void)ud;
    if (n > SIZE_MAX - MEM_HDR - PAGE_ALLOC)
        return NULL;
    unsigned char *p;
    if (n >= PAGE_ALLOC) {
        p = mmap(NULL, n + MEM_HDR, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
    } else if (!(p = malloc(n + MEM_HDR))) {
        return NULL;
    }
    memcpy(p, &n, sizeof(n));
    return p + MEM_HDR;
}

static void mem_free(void *ptr, void *ud) {
    (void)ud;
    if (!ptr)
        return;
    unsigned char *p = (unsigned char *)ptr - MEM_HDR;
    size_t n;
    memcpy(&n, p, sizeof(n));
    if (n >= PAGE_ALLOC)
        munmap(p, n + MEM_HDR);
    else
        free(p);
}

static void *mem_calloc(size_t k, size_t n, void *ud) {
    if (n && k > SIZE_MAX / n)
        return NULL;
    void *p = mem_malloc(k * n, ud);
    if (p && k * n < PAGE_ALLOC) /* fresh mappings are zero already */
        memset(p, 0, k * n);
    return p;
}

static void *mem_realloc(void *ptr, size_t n, void *ud) {
    if (!ptr)
        return mem_malloc(n, ud);
    size_t old;
    memcpy(&old, (unsigned char *)ptr - MEM_HDR, sizeof(old));
    void *q = mem_malloc(n, ud);
    if (!q)
        return NULL;
    memcpy(q, ptr, old < n ? old : n);
    mem_free(ptr, ud);
    return q;
}

static const ngtcp2_mem link_mem = {.malloc = mem_malloc,
                                    .free = mem_free,
                                    .calloc = mem_calloc,
                                    .realloc = mem_realloc};

/* ---- streams ------------------------------------------------------------------------------ */

static struct link_stream *stream_new(struct link_conn *c, int64_t id) {
    struct link_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->c = c;
    s->id = id;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    ngtcp2_conn_set_stream_user_data(c->conn, id, s);
    return s;
}

/* Frees the retired buffers whose data is acknowledged up to `acked` (all: UINT64_MAX). */
static void retired_free(struct link_stream *s, uint64_t acked) {
    while (s->retired && s->retired->end <= acked) {
        struct retired_buf *r = s->retired;
        s->retired = r->next;
        free(r->buf);
        free(r);
    }
}

static void stream_free(struct link_stream *s) {
    struct link_conn *c = s->c;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (c->control == s)
        c->control = NULL;
    frame_decoder_clear(&s->dec);
    free(s->buf);
    retired_free(s, UINT64_MAX);
    free(s);
}

/* The stream is over for the application: tell it once. */
static void stream_closed(struct link_stream *s, uint64_t app_error) {
    if (s->closed)
        return;
    s->closed = true;
    s->app_error = app_error;
    if (s->h && s->h->on_close)
        s->h->on_close(s->sctx, s, app_error);
}

size_t link_stream_room(const struct link_stream *s) {
    size_t held = s->len - s->head;
    return held >= LINK_STREAM_BUF ? 0 : LINK_STREAM_BUF - held;
}

/* Moves the unacknowledged bytes into a new buffer of at least `need` bytes, the old one kept
 * until ngtcp2 no longer reads it (its bytes up to `sent` were handed over). */
static int stream_move(struct link_stream *s, size_t need) {
    size_t held = s->len - s->head, cap = s->cap ? s->cap : 4096;
    while (cap < need)
        cap *= 2;
    unsigned char *b = malloc(cap);
    struct retired_buf *r = malloc(sizeof(*r));
    if (!b || !r) {
        free(b);
        free(r);
        return AH_E_NOMEM;
    }
    memcpy(b, s->buf + s->head, held);
    *r = (struct retired_buf){.end = s->sent, .buf = s->buf};
    struct retired_buf **tail = &s->retired;
    while (*tail)
        tail = &(*tail)->next;
    *tail = r;
    s->buf = b;
    s->cap = cap;
    s->head = 0;
    s->len = held;
    return 0;
}

static int stream_queue(struct link_stream *s, const void *p, size_t n) {
    if (s->len + n > s->cap && s->sent > s->base) {
        /* ngtcp2 may resend the sent, unacknowledged bytes from where they are */
        if (stream_move(s, s->len - s->head + n) < 0)
            return AH_E_NOMEM;
    } else if (s->len + n > s->cap) {
        if (s->head) { /* drop what was acknowledged first (nothing sent is unacknowledged) */
            memmove(s->buf, s->buf + s->head, s->len - s->head);
            s->len -= s->head;
            s->head = 0;
        }
        if (s->len + n > s->cap) {
            size_t cap = s->cap ? s->cap : 4096;
            while (cap < s->len + n)
                cap *= 2;
            unsigned char *b = realloc(s->buf, cap);
            if (!b)
                return AH_E_NOMEM;
            s->buf = b;
            s->cap = cap;
        }
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

int link_stream_send_frame(struct link_stream *s, const json_t *msg) {
    if (s->closed || s->fin_wanted)
        return AH_E_GONE;
    struct ah_buf b = {.max = FRAME_MAX_DEFAULT + FRAME_HEADER};
    int rc = frame_encode(&b, msg, 0);
    if (rc < 0)
        return rc;
    if (s->len - s->head > 0 && b.n > link_stream_room(s)) {
        s->want_writable = true;
        ah_buf_clear(&b);
        return AH_E_BUSY;
    }
    rc = stream_queue(s, b.p, b.n);
    ah_buf_clear(&b);
    return rc;
}

int64_t link_stream_send(struct link_stream *s, const void *p, size_t n) {
    if (s->closed || s->fin_wanted)
        return AH_E_GONE;
    size_t room = link_stream_room(s);
    if (n > room) {
        n = room;
        s->want_writable = true;
    }
    if (n && stream_queue(s, p, n) < 0)
        return AH_E_NOMEM;
    return (int64_t)n;
}

void link_stream_finish(struct link_stream *s) {
    s->fin_wanted = true;
}

void link_stream_reset(struct link_stream *s, uint64_t app_error) {
    if (s->closed)
        return;
    ngtcp2_conn_shutdown_stream(s->c->conn, s->id, app_error ? app_error : 1);
}

void link_stream_set_handlers(struct link_stream *s, const struct link_stream_handlers *h,
                              void *sctx) {
    s->h = h;
    s->sctx = sctx;
}

struct link_conn *link_stream_conn(struct link_stream *s) {
    return s->c;
}

int64_t link_stream_id(const struct link_stream *s) {
    return s->id;
}

void link_stream_set_raw(struct link_stream *s) {
    s->raw = true;
}

void link_stream_consume(struct link_stream *s, size_t n) {
    if (s->closed || !n)
        return;
    ngtcp2_conn_extend_max_stream_offset(s->c->conn, s->id, n);
    ngtcp2_conn_extend_max_offset(s->c->conn, n);
}

int link_stream_open(struct link_conn *c, const struct link_stream_handlers *h, void *sctx,
                     struct link_stream **ret) {
    int64_t id;
    int rv = ngtcp2_conn_open_bidi_stream(c->conn, &id, NULL);
    if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED)
        return AH_E_BUSY;
    if (rv != 0)
        return AH_E_PROTOCOL;
    struct link_stream *s = stream_new(c, id);
    if (!s) {
        ngtcp2_conn_shutdown_stream(c->conn, id, 1);
        return AH_E_NOMEM;
    }
    s->h = h;
    s->sctx = sctx;
    *ret = s;
    return 0;
}

const char *link_conn_peer_id(const struct link_conn *c) {
    return c->peer_id;
}

struct link_loop *link_conn_loop(struct link_conn *c) {
    return c->l;
}

void link_conn_close(struct link_conn *c, const char *reason) {
    if (c->close_pending)
        return;
    c->close_pending = true;
    c->app_close = true;
    snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason ? reason : "");
}

/* ---- control stream ----------------------------------------------------------------------- */

/* Answers one control message: the fleet's Ack when it gave one, else a minimal one. */
static void send_ack(struct link_stream *s, const char *re, json_t *ack) {
    if (!ack) {
        char now[TIME_RFC3339_LEN + 1];
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        time_format((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, now);
        const char *hash = s->c->l->srv->cfg.config_hash;
        ack = json_pack("{s:s, s:s}", "now", now, "config_hash", hash ? hash : "");
        if (!ack)
            return;
    }
    json_object_set_new(ack, "type", json_string("Ack"));
    json_object_set_new(ack, "re", json_string(re));
    if (link_stream_send_frame(s, ack) < 0)
        log_msg(LOG_WARN, "link: cannot answer %s of %s (control stream full)", re,
                s->c->peer_id);
    json_decref(ack);
}

static void report_gone(struct link_conn *c, const char *reason) {
    if (!c->hello_seen || c->gone_reported || !c->l->srv)
        return;
    c->gone_reported = true;
    const struct link_control_hooks *k = &c->l->srv->cfg.control;
    if (k->gone)
        k->gone(k->ctx, c->peer_id, reason);
}

/* Access point: one frame on an executor's control stream. */
static int server_control_frame(void *sctx, struct link_stream *s, json_t *msg) {
    struct link_conn *c = s->c;
    const struct link_control_hooks *k = &c->l->srv->cfg.control;
    const char *type = json_string_value(json_object_get(msg, "type"));
    json_t *ack = NULL;
    if (strcmp(type, "Hello") == 0) {
        const char *claimed = json_string_value(json_object_get(msg, "executor_id"));
        if (claimed && strcmp(claimed, c->peer_id) != 0) {
            char why[WHY_MAX];
            snprintf(why, sizeof(why), "Hello claims executor_id '%s' but the certificate "
                     "proves '%s'", claimed, c->peer_id);
            log_msg(LOG_WARN, "link: access point refused executor at %s: %s", c->addr, why);
            link_conn_close(c, why);
            return AH_E_AUTH;
        }
        struct ah_problem p = {0};
        if (k->hello && k->hello(k->ctx, c->peer_id, msg, &ack, &p) < 0) {
            char why[WHY_MAX];
            snprintf(why, sizeof(why), "executor '%s' refused by the access point: %s",
                     c->peer_id, p.detail[0] ? p.detail : "Hello not accepted");
            problem_clear(&p);
            json_decref(ack);
            log_msg(LOG_WARN, "link: %s", why);
            link_conn_close(c, why);
            return AH_E_FORBIDDEN;
        }
        problem_clear(&p);
        if (!c->hello_seen)
            log_msg(LOG_INFO, "link: executor %s enrolled from %s", c->peer_id, c->addr);
        c->hello_seen = true;
        c->gone_reported = false;
    } else if (strcmp(type, "Heartbeat") == 0) {
        if (!c->hello_seen) {
            link_conn_close(c, "Heartbeat before Hello");
            return AH_E_PROTOCOL;
        }
        int rc = k->heartbeat ? k->heartbeat(k->ctx, c->peer_id, msg, &ack) : 0;
        if (rc == AH_E_NOTFOUND) {
            json_decref(ack);
            link_conn_close(c, "executor unknown to the access point (removed): say Hello again");
            return rc;
        }
        if (rc < 0)
            log_msg(LOG_WARN, "link: heartbeat of %s not taken: %s", c->peer_id,
                    ah_strerror(rc));
    } else if (strcmp(type, "Goodbye") == 0) {
        const char *reason = json_string_value(json_object_get(msg, "reason"));
        log_msg(LOG_INFO, "link: executor %s says goodbye (%s)", c->peer_id,
                reason ? reason : "no reason");
        report_gone(c, reason ? reason : "goodbye");
    } else {
        log_msg(LOG_DEBUG, "link: ignoring control message '%s' from %s", type, c->peer_id);
        return 0;
    }
    send_ack(s, type, ack);
    return 0;
}

static const struct link_stream_handlers server_control = {.on_frame = server_control_frame};

static void client_send_heartbeat(struct link_client *cl);

/* Executor: one frame on its control stream (Acks). */
static int client_control_frame(void *sctx, struct link_stream *s, json_t *msg) {
    struct link_client *cl = s->c->l->cli;
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (strcmp(type, "Ack") != 0)
        return 0;
    const char *re = json_string_value(json_object_get(msg, "re"));
    if (re && strcmp(re, "Hello") == 0 && !atomic_load(&cl->enrolled)) {
        atomic_store(&cl->enrolled, true);
        cl->backoff = 0;
        log_msg(LOG_INFO, "link: enrolled at the access point %s (%s) as %s", s->c->addr,
                s->c->peer_id, s->c->ident->self_id);
    }
    if (re && strcmp(re, "Goodbye") == 0 && s->c->goodbye_deadline)
        link_conn_close(s->c, cl->stopping ? cl->stop_reason : "certificate rotated");
    if (cl->cfg.control.ack)
        cl->cfg.control.ack(cl->cfg.control.ctx, msg);
    return 0;
}

static const struct link_stream_handlers client_control = {.on_frame = client_control_frame};

static void client_send_hello(struct link_client *cl, struct link_conn *c) {
    json_t *m = cl->cfg.control.hello ? cl->cfg.control.hello(cl->cfg.control.ctx,
                                                              c->ident->self_id)
                                      : NULL;
    if (!m)
        m = json_object();
    if (!json_object_get(m, "type"))
        json_object_set_new(m, "type", json_string("Hello"));
    if (!json_object_get(m, "executor_id"))
        json_object_set_new(m, "executor_id", json_string(c->ident->self_id));
    if (link_stream_send_frame(c->control, m) < 0)
        link_conn_close(c, "cannot send Hello");
    json_decref(m);
    cl->next_heartbeat = ident_now_ms() + (cl->cfg.heartbeat_ms > 0 ? cl->cfg.heartbeat_ms : 5000);
}

static void client_send_heartbeat(struct link_client *cl) {
    struct link_conn *c = cl->conn;
    json_t *m = cl->cfg.control.heartbeat ? cl->cfg.control.heartbeat(cl->cfg.control.ctx) : NULL;
    if (!m)
        m = json_object();
    if (!json_object_get(m, "type"))
        json_object_set_new(m, "type", json_string("Heartbeat"));
    int rc = link_stream_send_frame(c->control, m);
    if (rc < 0 && rc != AH_E_BUSY) /* busy: the next beat will do */
        link_conn_close(c, "cannot send Heartbeat");
    json_decref(m);
}

static void client_send_goodbye(struct link_conn *c, const char *reason) {
    if (!c->control || c->close_pending)
        return;
    json_t *m = json_pack("{s:s, s:s}", "type", "Goodbye", "reason", reason);
    if (m && link_stream_send_frame(c->control, m) == 0)
        c->goodbye_deadline = ident_now_ms() + GOODBYE_WAIT_MS;
    else
        link_conn_close(c, reason);
    json_decref(m);
}

/* ---- ngtcp2 callbacks --------------------------------------------------------------------- */

static void cb_rand(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *ctx) {
    rnd(dest, destlen);
}

static int cb_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                      void *ud) {
    struct link_conn *c = ud;
    rnd(cid->data, cidlen);
    cid->datalen = cidlen;
    rnd(token, NGTCP2_STATELESS_RESET_TOKENLEN);
    if (c->ncids < MAX_CIDS)
        c->cids[c->ncids++] = *cid;
    return 0;
}

static int cb_remove_cid(ngtcp2_conn *conn, const ngtcp2_cid *cid, void *ud) {
    struct link_conn *c = ud;
    for (size_t i = 0; i < c->ncids; i++)
        if (ngtcp2_cid_eq(&c->cids[i], cid)) {
            c->cids[i] = c->cids[--c->ncids];
            break;
        }
    return 0;
}

static int cb_handshake_completed(ngtcp2_conn *conn, void *ud) {
    struct link_conn *c = ud;
    gnutls_datum_t alpn = {0};
    if (gnutls_alpn_get_selected_protocol(c->tls, &alpn) != 0 ||
        alpn.size != strlen(LINK_ALPN) || memcmp(alpn.data, LINK_ALPN, alpn.size) != 0) {
        snprintf(c->why, sizeof(c->why), "peer did not negotiate ALPN %s", LINK_ALPN);
        link_conn_close(c, c->why);
        return 0;
    }
    c->handshake_done = true;
    return 0;
}

static int cb_stream_open(ngtcp2_conn *conn, int64_t id, void *ud) {
    struct link_conn *c = ud;
    if (!ngtcp2_is_bidi_stream(id)) {
        ngtcp2_conn_shutdown_stream(conn, id, 1); /* unidirectional streams are not used */
        return 0;
    }
    struct link_stream *s = stream_new(c, id);
    if (!s)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    if (c->l->srv && !c->control && id == 0) { /* the executor's first stream: control */
        c->control = s;
        s->control = true;
        s->h = &server_control;
        return 0;
    }
    void *ctx;
    const struct link_handlers *h = conn_handlers(c, &ctx);
    if (!c->handshake_done || !h || !h->on_stream || h->on_stream(ctx, c, s) < 0 || !s->h)
        ngtcp2_conn_shutdown_stream(conn, id, 1);
    return 0;
}

static int stream_frame(void *sctx, json_t *msg) {
    struct link_stream *s = sctx;
    if (!s->h || !s->h->on_frame)
        return 0;
    bool raw = s->raw;
    int rc = s->h->on_frame(s->sctx, s, msg);
    if (rc < 0)
        return rc;
    return !raw && s->raw ? 1 : 0; /* switched to raw bytes: stop framing here */
}

static int cb_recv_stream_data(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t offset,
                               const uint8_t *data, size_t datalen, void *ud, void *sud) {
    struct link_conn *c = ud;
    struct link_stream *s = sud;
    if (!s || s->closed) {
        ngtcp2_conn_extend_max_stream_offset(conn, id, datalen);
        ngtcp2_conn_extend_max_offset(conn, datalen);
        return 0;
    }
    size_t taken = 0;
    if (!s->raw && datalen) {
        int rc = frame_decode(&s->dec, data, datalen, stream_frame, s);
        if (rc < 0) {
            if (rc == AH_E_PROTOCOL)
                log_msg(LOG_WARN, "link: stream %lld from %s: %s", (long long)id,
                        c->peer_id[0] ? c->peer_id : c->addr, s->dec.why);
            if (s->control) {
                if (!c->close_pending)
                    link_conn_close(c, s->dec.why[0] ? s->dec.why : "control stream error");
            } else {
                ngtcp2_conn_shutdown_stream(conn, id, 1);
            }
            ngtcp2_conn_extend_max_offset(conn, datalen);
            return 0;
        }
        taken = s->dec.used;
        ngtcp2_conn_extend_max_stream_offset(conn, id, taken);
        ngtcp2_conn_extend_max_offset(conn, taken);
    }
    if (s->raw && taken < datalen) {
        size_t n = datalen - taken;
        size_t used = s->h && s->h->on_data ? s->h->on_data(s->sctx, s, data + taken, n) : n;
        if (used > n)
            used = n;
        link_stream_consume(s, used);
    }
    if ((flags & NGTCP2_STREAM_DATA_FLAG_FIN) && s->h && s->h->on_eof)
        s->h->on_eof(s->sctx, s);
    return 0;
}

static int cb_acked(ngtcp2_conn *conn, int64_t id, uint64_t offset, uint64_t datalen, void *ud,
                    void *sud) {
    struct link_stream *s = sud;
    if (!s)
        return 0;
    uint64_t end = offset + datalen;
    if (end > s->base) {
        size_t k = (size_t)(end - s->base);
        if (k > s->len - s->head)
            k = s->len - s->head;
        s->head += k;
        s->base += k;
        if (s->head == s->len) { /* sent data is read from buf[head]: offsets stay right */
            s->head = s->len = 0;
            /* all of it arrived: an idle stream (a control stream between heartbeats) holds
             * no buffer; the next write allocates again */
            free(s->buf);
            s->buf = NULL;
            s->cap = 0;
        }
    }
    retired_free(s, end);
    return 0;
}

static int cb_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t app_error,
                           void *ud, void *sud) {
    struct link_stream *s = sud;
    if (s)
        stream_closed(s, (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) ? app_error : 0);
    return 0;
}

static int cb_stream_reset(ngtcp2_conn *conn, int64_t id, uint64_t final_size, uint64_t app_error,
                           void *ud, void *sud) {
    return 0;
}

static int cb_extend_max_stream_data(ngtcp2_conn *conn, int64_t id, uint64_t max_data, void *ud,
                                     void *sud) {
    struct link_stream *s = sud;
    if (s)
        s->blocked = false;
    return 0;
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) {
    struct link_conn *c = ref->user_data;
    return c->conn;
}

static void fill_callbacks(ngtcp2_callbacks *cb, bool server) {
    memset(cb, 0, sizeof(*cb));
    if (server) {
        cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
    } else {
        cb->client_initial = ngtcp2_crypto_client_initial_cb;
        cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
    }
    cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb->encrypt = ngtcp2_crypto_encrypt_cb;
    cb->decrypt = ngtcp2_crypto_decrypt_cb;
    cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb->update_key = ngtcp2_crypto_update_key_cb;
    cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    cb->rand = cb_rand;
    cb->get_new_connection_id = cb_new_cid;
    cb->remove_connection_id = cb_remove_cid;
    cb->handshake_completed = cb_handshake_completed;
    cb->stream_open = cb_stream_open;
    cb->recv_stream_data = cb_recv_stream_data;
    cb->acked_stream_data_offset = cb_acked;
    cb->stream_close = cb_stream_close;
    cb->stream_reset = cb_stream_reset;
    cb->extend_max_stream_data = cb_extend_max_stream_data;
}

/* GnuTLS calls this when the peer's certificate arrives: the whole identity policy (D42). */
static int verify_peer(gnutls_session_t tls) {
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(tls);
    struct link_conn *c = ref->user_data;
    char why[WHY_MAX];
    int rc = ident_peer(tls, c->ident, c->peer_id, sizeof(c->peer_id), why, sizeof(why));
    if (rc == 0 && c->l->srv) {
        struct link_server *sv = c->l->srv;
        rc = ident_check_executor(c->peer_id, sv->td, sv->cfg.id_patterns, why, sizeof(why));
    } else if (rc == 0) {
        struct link_client *cl = c->l->cli;
        rc = ident_check_server(tls, c->peer_id, cl->cfg.expected_server_id, cl->cfg.server_san,
                                why, sizeof(why));
    }
    if (rc == 0)
        return 0;
    c->refused = true;
    snprintf(c->why, sizeof(c->why), "%s", why);
    if (c->l->srv)
        log_msg(LOG_WARN, "link: access point refused executor at %s: %s", c->addr, why);
    else
        log_msg(LOG_WARN, "link: executor refused the access point at %s: %s", c->addr, why);
    return GNUTLS_E_CERTIFICATE_ERROR;
}

/* One parsed PRIORITY for the process, shared by every session: set_direct parsed it again
 * per connection and kept ~8 KiB per executor (bench-link-fleet). Never freed: sessions hold it
 * until the process ends. */
static gnutls_priority_t priority;
static void priority_init(void) {
    if (gnutls_priority_init(&priority, PRIORITY, NULL) < 0)
        priority = NULL;
}

static int tls_setup(struct link_conn *c, bool server, const char *sni) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, priority_init);
    unsigned flags = (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_END_OF_EARLY_DATA;
    if (gnutls_init(&c->tls, flags) < 0)
        return AH_E_NOMEM;
    if (!priority || gnutls_priority_set(c->tls, priority) < 0)
        return AH_E_INTERNAL;
    if (server ? ngtcp2_crypto_gnutls_configure_server_session(c->tls)
               : ngtcp2_crypto_gnutls_configure_client_session(c->tls))
        return AH_E_INTERNAL;
    c->ref.get_conn = get_conn;
    c->ref.user_data = c;
    gnutls_session_set_ptr(c->tls, &c->ref);
    if (gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->ident->cred) < 0)
        return AH_E_INTERNAL;
    gnutls_datum_t alpn = {(unsigned char *)LINK_ALPN, (unsigned)strlen(LINK_ALPN)};
    gnutls_alpn_set_protocols(c->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY);
    if (server) {
        gnutls_certificate_server_set_request(c->tls, GNUTLS_CERT_REQUIRE); /* mutual TLS */
        /* no CA names in the request: an executor sends its certificate whoever signed it, so
         * a wrong CA is refused by verify_peer with a clear reason, not "no certificate" */
        gnutls_certificate_send_x509_rdn_sequence(c->tls, 1);
    }
    else if (sni && *sni)
        gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, sni, strlen(sni));
    return 0;
}

/* ---- connections -------------------------------------------------------------------------- */

static struct link_conn *conn_alloc(struct link_loop *l, struct ident *it) {
    struct link_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->l = l;
    c->fd = -1;
    c->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (c->timerfd < 0) {
        free(c);
        return NULL;
    }
    c->w_timer = (struct watch){W_TIMER, c};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->w_timer};
    epoll_ctl(l->ep, EPOLL_CTL_ADD, c->timerfd, &ev);
    c->ident = it;
    it->refs++;
    return c;
}

static void conn_settings(ngtcp2_settings *st, ngtcp2_transport_params *tp, int64_t idle_ms) {
    ngtcp2_settings_default(st);
    st->initial_ts = now_ns();
    st->handshake_timeout = 10 * NGTCP2_SECONDS;
    ngtcp2_transport_params_default(tp);
    tp->initial_max_stream_data_bidi_local = LINK_STREAM_WINDOW;
    tp->initial_max_stream_data_bidi_remote = LINK_STREAM_WINDOW;
    tp->initial_max_data = LINK_CONN_WINDOW;
    tp->initial_max_streams_bidi = 1000;
    tp->initial_max_streams_uni = 0;
    tp->max_idle_timeout = (uint64_t)(idle_ms > 0 ? idle_ms : 30000) * NGTCP2_MILLISECONDS;
    tp->active_connection_id_limit = MAX_CIDS / 2;
}

/* Frees everything of c (the application was told already). */
static void conn_destroy(struct link_conn *c) {
    while (c->streams)
        stream_free(c->streams);
    if (c->conn)
        ngtcp2_conn_del(c->conn);
    if (c->tls)
        gnutls_deinit(c->tls);
    if (c->timerfd >= 0) {
        epoll_ctl(c->l->ep, EPOLL_CTL_DEL, c->timerfd, NULL);
        close(c->timerfd);
    }
    if (c->l->cli && c->fd >= 0) {
        epoll_ctl(c->l->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    ident_free(c->ident);
    c->ident = NULL;
    /* an event for it may still wait in this epoll batch: free it after the batch */
    c->dead_next = c->l->dead;
    c->l->dead = c;
}

struct link_watch {
    struct watch w; /* first: epoll's data.ptr names it */
    struct link_loop *l;
    int fd;
    uint32_t events;
    void (*cb)(void *arg, uint32_t events);
    void *arg;
    bool dead;
    struct link_watch *dead_next;
};

static void free_dead(struct link_loop *l) {
    while (l->dead) {
        struct link_conn *c = l->dead;
        l->dead = c->dead_next;
        free(c);
    }
    while (l->dead_watches) {
        struct link_watch *w = l->dead_watches;
        l->dead_watches = w->dead_next;
        free(w);
    }
}

int link_watch_add(struct link_loop *l, int fd, uint32_t events,
                   void (*cb)(void *arg, uint32_t events), void *arg, struct link_watch **ret) {
    struct link_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return AH_E_NOMEM;
    *w = (struct link_watch){.w = {W_FD, w}, .l = l, .fd = fd, .events = events, .cb = cb,
                             .arg = arg};
    struct epoll_event ev = {.events = events, .data.ptr = &w->w};
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int rc = ah_err_from_errno(errno);
        free(w);
        return rc;
    }
    *ret = w;
    return 0;
}

int link_watch_set(struct link_watch *w, uint32_t events) {
    if (w->dead || w->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = &w->w};
    if (epoll_ctl(w->l->ep, EPOLL_CTL_MOD, w->fd, &ev) < 0)
        return ah_err_from_errno(errno);
    w->events = events;
    return 0;
}

void link_watch_del(struct link_watch *w) {
    if (!w || w->dead)
        return;
    w->dead = true;
    epoll_ctl(w->l->ep, EPOLL_CTL_DEL, w->fd, NULL);
    /* an event for it may still wait in this epoll batch: free it after the batch */
    w->dead_next = w->l->dead_watches;
    w->l->dead_watches = w;
}

struct link_conn *link_server_conn(struct link_server *sv, const char *peer_id) {
    struct link_conn *best = NULL;
    for (struct link_conn *c = sv->conns; c; c = c->next)
        if (c->connected_reported && c->hello_seen && !c->close_pending && !c->dead &&
            strcmp(c->peer_id, peer_id) == 0 && !best)
            best = c; /* the list is newest first: a reconnect's new connection wins */
    return best;
}

static void conn_send(struct link_conn *c, const uint8_t *p, size_t n) {
    ssize_t w;
    do
        w = sendto(c->fd, p, n, MSG_DONTWAIT, (struct sockaddr *)&c->remote, c->remotelen);
    while (w < 0 && errno == EINTR);
    /* EAGAIN and friends: the datagram is lost, QUIC's loss recovery resends what mattered */
}

/* Writes every packet ngtcp2 has for c. 0, or a negative ngtcp2 error. */
static int conn_write(struct link_conn *c) {
    uint8_t buf[PKT_MAX];
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    uint64_t ts = now_ns();
    for (struct link_stream *s = c->streams; s; s = s->next)
        s->blocked = false;
    for (int packets = 0; packets < 4096; packets++) {
        struct link_stream *s = NULL;
        for (struct link_stream *t = c->streams; t; t = t->next)
            if (!t->closed && !t->blocked &&
                (t->sent < t->base + (t->len - t->head) || (t->fin_wanted && !t->fin_sent))) {
                s = t;
                break;
            }
        ngtcp2_vec v = {0};
        size_t vcnt = 0;
        uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
        int64_t sid = -1;
        if (s) {
            sid = s->id;
            uint64_t end = s->base + (s->len - s->head);
            v.base = s->buf ? s->buf + s->head + (size_t)(s->sent - s->base) : NULL;
            v.len = (size_t)(end - s->sent);
            vcnt = v.len ? 1 : 0;
            if (s->fin_wanted)
                flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
        }
        ngtcp2_ssize ndatalen = -1;
        ngtcp2_ssize n = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, buf, sizeof(buf),
                                                   &ndatalen, flags, sid, vcnt ? &v : NULL, vcnt,
                                                   ts);
        if (n < 0) {
            if (n == NGTCP2_ERR_WRITE_MORE) {
                s->sent += (uint64_t)ndatalen;
                if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && s->sent == s->base + (s->len - s->head))
                    s->fin_sent = true;
                continue;
            }
            if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
                n == NGTCP2_ERR_STREAM_NOT_FOUND) {
                if (s)
                    s->blocked = true;
                continue;
            }
            return (int)n;
        }
        if (s && ndatalen >= 0) {
            s->sent += (uint64_t)ndatalen;
            if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && s->sent == s->base + (s->len - s->head))
                s->fin_sent = true;
        }
        if (n == 0)
            break;
        conn_send(c, buf, (size_t)n);
    }
    /* the next timer: loss detection, acks, idle */
    ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(c->conn);
    struct itimerspec its = {0};
    if (exp != UINT64_MAX) {
        if (exp <= ts)
            exp = ts + 1;
        its.it_value.tv_sec = (time_t)(exp / NGTCP2_SECONDS);
        its.it_value.tv_nsec = (long)(exp % NGTCP2_SECONDS);
    }
    timerfd_settime(c->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
    return 0;
}

/* Sends a CONNECTION_CLOSE (once) for ccerr. */
static void conn_send_close(struct link_conn *c, const ngtcp2_connection_close_error *cc) {
    uint8_t buf[PKT_MAX];
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi, buf, sizeof(buf),
                                                        cc, now_ns());
    if (n > 0)
        conn_send(c, buf, (size_t)n);
}

static void client_conn_gone(struct link_client *cl, const char *why);

/* c is over: tell the application, unlink, free. */
static void conn_finish(struct link_conn *c, const char *why) {
    for (struct link_stream *s = c->streams; s; s = s->next)
        stream_closed(s, 1);
    report_gone(c, why);
    void *ctx;
    const struct link_handlers *h = conn_handlers(c, &ctx);
    if (c->connected_reported && h && h->on_close)
        h->on_close(ctx, c, why);
    if (c->l->srv) {
        struct link_server *sv = c->l->srv;
        if (c->prev)
            c->prev->next = c->next;
        else
            sv->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        sv->n_conns--;
    } else {
        client_conn_gone(c->l->cli, why);
    }
    conn_destroy(c);
}

/* ngtcp2 said rv: close c with the right error (a refused identity: the TLS alert and why). */
static void conn_fail(struct link_conn *c, int rv) {
    ngtcp2_connection_close_error cc;
    ngtcp2_connection_close_error_default(&cc);
    char why[WHY_MAX];
    if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING) {
        /* the peer closed: its reason, when it gave one, is the best line for our log */
        ngtcp2_connection_close_error pc;
        ngtcp2_conn_get_connection_close_error(c->conn, &pc);
        snprintf(why, sizeof(why), "%.*s", (int)pc.reasonlen, pc.reason ? (char *)pc.reason : "");
        if (!why[0])
            snprintf(why, sizeof(why), "closed by the peer (error 0x%llx)",
                     (unsigned long long)pc.error_code);
        bool refusal = pc.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT &&
                       (pc.error_code & ~0xffULL) == NGTCP2_CRYPTO_ERROR;
        /* closed before our Hello was acknowledged: the access point refused us */
        bool before_enrolled = c->l->cli && !atomic_load(&c->l->cli->enrolled);
        if (refusal || !c->handshake_done || before_enrolled) {
            if (c->l->srv)
                log_msg(LOG_WARN, "link: executor at %s (%s) refused this access point: %s",
                        c->addr, c->peer_id[0] ? c->peer_id : "no id yet", why);
            else
                log_msg(LOG_WARN, "link: the access point at %s refused this executor (%s): %s",
                        c->addr, c->ident->self_id[0] ? c->ident->self_id : "no SPIFFE id", why);
        } else {
            log_msg(LOG_INFO, "link: %s %s closed the connection: %s",
                    c->l->srv ? "executor" : "access point", c->peer_id, why);
        }
        conn_finish(c, why);
        return;
    }
    if (rv == NGTCP2_ERR_IDLE_CLOSE) {
        snprintf(why, sizeof(why), "idle timeout (no packet from the peer)");
        log_msg(LOG_INFO, "link: connection with %s (%s) timed out", c->addr, c->peer_id);
        conn_finish(c, why);
        return;
    }
    if (rv == NGTCP2_ERR_CRYPTO) {
        uint8_t alert = ngtcp2_conn_get_tls_alert(c->conn);
        if (!alert)
            alert = 42; /* bad_certificate */
        const char *name = gnutls_alert_get_name((gnutls_alert_description_t)alert);
        if (c->refused)
            snprintf(why, sizeof(why), "%s", c->why);
        else if (alert == 116)
            snprintf(why, sizeof(why), "no client certificate presented (mutual TLS required)");
        else
            snprintf(why, sizeof(why), "TLS handshake failed: %s (alert %u)", name ? name : "?",
                     alert);
        if (!c->refused)
            log_msg(LOG_WARN, "link: TLS handshake with %s failed: %s", c->addr, why);
        ngtcp2_connection_close_error_set_transport_error_tls_alert(&cc, alert,
                                                                    (const uint8_t *)why,
                                                                    strlen(why));
    } else {
        snprintf(why, sizeof(why), "%s", ngtcp2_strerror(rv));
        ngtcp2_connection_close_error_set_transport_error_liberr(&cc, rv, NULL, 0);
        if (rv != NGTCP2_ERR_HANDSHAKE_TIMEOUT)
            log_msg(LOG_WARN, "link: connection with %s (%s) failed: %s", c->addr,
                    c->peer_id[0] ? c->peer_id : "no id yet", why);
        else
            log_msg(LOG_WARN, "link: handshake with %s timed out", c->addr);
    }
    if (rv != NGTCP2_ERR_HANDSHAKE_TIMEOUT && rv != NGTCP2_ERR_DROP_CONN)
        conn_send_close(c, &cc);
    conn_finish(c, why);
}

/* Last step of every entry point: report, close or write. */
static void conn_after(struct link_conn *c) {
    if (c->handshake_done && !c->connected_reported && !c->close_pending) {
        c->connected_reported = true;
        if (c->l->cli) {
            struct link_client *cl = c->l->cli;
            struct link_stream *s = NULL;
            if (link_stream_open(c, &client_control, cl, &s) < 0) {
                link_conn_close(c, "cannot open the control stream");
            } else {
                c->control = s;
                s->control = true;
                client_send_hello(cl, c);
            }
        }
        void *ctx;
        const struct link_handlers *h = conn_handlers(c, &ctx);
        if (h && h->on_connect)
            h->on_connect(ctx, c, c->peer_id);
    }
    if (c->close_pending) {
        ngtcp2_connection_close_error cc;
        ngtcp2_connection_close_error_set_application_error(
            &cc, 0, (const uint8_t *)c->close_reason, strlen(c->close_reason));
        conn_send_close(c, &cc);
        log_msg(LOG_INFO, "link: closed the connection with %s (%s): %s", c->addr,
                c->peer_id[0] ? c->peer_id : "no id", c->close_reason);
        conn_finish(c, c->close_reason);
        return;
    }
    /* room came back (acknowledgements were just read): tell the writers that were refused,
     * so what they queue goes out in this same write */
    for (struct link_stream *s = c->streams, *n; s; s = n) {
        n = s->next;
        if (s->want_writable && !s->closed && link_stream_room(s) >= LINK_STREAM_BUF / 2) {
            s->want_writable = false;
            if (s->h && s->h->on_writable)
                s->h->on_writable(s->sctx, s);
        }
    }
    if (c->close_pending) {
        conn_after(c);
        return;
    }
    int rv = conn_write(c);
    if (rv < 0) {
        conn_fail(c, rv);
        return;
    }
    for (struct link_stream *s = c->streams, *n; s; s = n) {
        n = s->next;
        if (s->closed)
            stream_free(s);
    }
    if (c->close_pending) /* a callback above closed it */
        conn_after(c);
}

static void conn_read(struct link_conn *c, const uint8_t *pkt, size_t n) {
    ngtcp2_path path = {
        .local = {(ngtcp2_sockaddr *)&c->local, c->locallen},
        .remote = {(ngtcp2_sockaddr *)&c->remote, c->remotelen},
    };
    ngtcp2_pkt_info pi = {0};
    int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, pkt, n, now_ns());
    if (rv != 0) {
        conn_fail(c, rv);
        return;
    }
    conn_after(c);
}

static void conn_timer(struct link_conn *c) {
    uint64_t v;
    if (read(c->timerfd, &v, sizeof(v)) < 0) { /* spurious */
    }
    int rv = ngtcp2_conn_handle_expiry(c->conn, now_ns());
    if (rv != 0) {
        conn_fail(c, rv);
        return;
    }
    conn_after(c);
}

/* ---- access point ------------------------------------------------------------------------- */

static struct link_conn *server_find(struct link_server *sv, const uint8_t *dcid, size_t n) {
    for (struct link_conn *c = sv->conns; c; c = c->next)
        for (size_t i = 0; i < c->ncids; i++)
            if (c->cids[i].datalen == n && memcmp(c->cids[i].data, dcid, n) == 0)
                return c;
    return NULL;
}

static void server_accept(struct link_server *sv, const uint8_t *pkt, size_t n,
                          const struct sockaddr_storage *from, socklen_t fromlen) {
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, pkt, n) != 0)
        return; /* not an Initial we can serve: drop */
    if (sv->n_conns >= LINK_MAX_CONNS) { /* handshakes and executors together are bounded */
        log_msg(LOG_WARN, "link: %zu connections already: dropping a new one", sv->n_conns);
        return;
    }
    struct link_conn *c = conn_alloc(&sv->loop, sv->ident);
    if (!c)
        return;
    c->fd = sv->fd;
    memcpy(&c->local, &sv->local, sv->locallen);
    c->locallen = sv->locallen;
    memcpy(&c->remote, from, fromlen);
    c->remotelen = fromlen;
    addr_str(from, c->addr, sizeof(c->addr));
    ngtcp2_cid scid;
    scid.datalen = CID_LEN;
    rnd(scid.data, CID_LEN);
    c->cids[c->ncids++] = scid;
    c->cids[c->ncids++] = hd.dcid; /* the client's Initials still carry the id it chose */
    ngtcp2_settings st;
    ngtcp2_transport_params tp;
    conn_settings(&st, &tp, sv->cfg.idle_timeout_ms);
    tp.original_dcid = hd.dcid;
    ngtcp2_callbacks cb;
    fill_callbacks(&cb, true);
    ngtcp2_path path = {
        .local = {(ngtcp2_sockaddr *)&c->local, c->locallen},
        .remote = {(ngtcp2_sockaddr *)&c->remote, c->remotelen},
    };
    if (ngtcp2_conn_server_new(&c->conn, &hd.scid, &scid, &path, hd.version, &cb, &st, &tp,
                               &link_mem, c) != 0 ||
        tls_setup(c, true, NULL) < 0) {
        conn_destroy(c);
        return;
    }
    ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
    c->next = sv->conns;
    if (sv->conns)
        sv->conns->prev = c;
    sv->conns = c;
    sv->n_conns++;
    conn_read(c, pkt, n);
}

static void server_readable(struct link_server *sv) {
    uint8_t pkt[65536];
    for (int i = 0; i < 1024; i++) {
        struct sockaddr_storage from;
        socklen_t fromlen = sizeof(from);
        ssize_t n = recvfrom(sv->fd, pkt, sizeof(pkt), MSG_DONTWAIT, (struct sockaddr *)&from,
                             &fromlen);
        if (n < 0)
            return;
        ngtcp2_version_cid vc;
        int rv = ngtcp2_pkt_decode_version_cid(&vc, pkt, (size_t)n, CID_LEN);
        if (rv != 0)
            continue; /* version negotiation is not offered: QUIC v1 only */
        struct link_conn *c = server_find(sv, vc.dcid, vc.dcidlen);
        if (c)
            conn_read(c, pkt, (size_t)n);
        else
            server_accept(sv, pkt, (size_t)n, &from, fromlen);
    }
}

static void server_tick(struct link_server *sv) {
    int64_t now = ident_now_ms();
    if (now < sv->next_reload)
        return;
    sv->next_reload = now + 2000;
    if (!ident_stale(sv->ident, &sv->cfg.id, now))
        return;
    char err[WHY_MAX];
    struct ident *it = NULL;
    if (ident_load(&sv->cfg.id, &it, err, sizeof(err)) < 0) {
        log_msg(LOG_WARN, "link: keeping the current certificate: reload failed: %s", err);
        ident_restamp(sv->ident, &sv->cfg.id, now); /* again when the files change again */
        return;
    }
    gnutls_certificate_set_verify_function(it->cred, verify_peer);
    ident_free(sv->ident);
    sv->ident = it;
    log_msg(LOG_INFO, "link: access point certificate reloaded (%s); new connections use it",
            it->self_id);
}

/* ---- executor ----------------------------------------------------------------------------- */

static void client_conn_gone(struct link_client *cl, const char *why) {
    cl->conn = NULL;
    atomic_store(&cl->enrolled, false);
    if (cl->stopping)
        return;
    int64_t min = cl->cfg.reconnect_min_ms > 0 ? cl->cfg.reconnect_min_ms : 1000;
    int64_t max = cl->cfg.reconnect_max_ms > 0 ? cl->cfg.reconnect_max_ms : 30000;
    if (cl->rotating) { /* graceful reconnect with the new certificate: at once */
        cl->rotating = false;
        cl->backoff = 0;
        cl->next_connect = ident_now_ms();
        return;
    }
    /* several access points: the next one, at the shortest back-off until a whole round of
     * them failed (a lost replica's executors move to another within a second, D46) */
    bool round = true;
    if (cl->n_addrs > 1) {
        cl->at = (cl->at + 1) % cl->n_addrs;
        round = cl->at == 0;
    }
    if (round || !cl->backoff)
        cl->backoff = cl->backoff ? cl->backoff * 2 : min;
    if (cl->backoff > max)
        cl->backoff = max;
    cl->next_connect = ident_now_ms() + cl->backoff;
    log_msg(LOG_INFO, "link: reconnecting to %s:%d in %lld ms", cl->addrs[cl->at].host,
            cl->addrs[cl->at].port, (long long)cl->backoff);
}

static int client_connect(struct link_client *cl) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *res = NULL;
    const char *host = cl->addrs[cl->at].host;
    char port[16];
    snprintf(port, sizeof(port), "%d", cl->addrs[cl->at].port);
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0 || !res) {
        log_msg(LOG_WARN, "link: cannot resolve %s: %s", host, gai_strerror(g));
        return AH_E_NETWORK;
    }
    struct link_conn *c = conn_alloc(&cl->loop, cl->ident);
    if (!c) {
        freeaddrinfo(res);
        return AH_E_NOMEM;
    }
    c->fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    memcpy(&c->remote, res->ai_addr, res->ai_addrlen);
    c->remotelen = res->ai_addrlen;
    freeaddrinfo(res);
    addr_str(&c->remote, c->addr, sizeof(c->addr));
    c->locallen = sizeof(c->local);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&c->remote, c->remotelen) < 0 ||
        getsockname(c->fd, (struct sockaddr *)&c->local, &c->locallen) < 0) {
        log_msg(LOG_WARN, "link: cannot reach %s: %s", c->addr, strerror(errno));
        conn_destroy(c);
        return AH_E_NETWORK;
    }
    c->w_sock = (struct watch){W_CSOCK, c};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->w_sock};
    epoll_ctl(cl->loop.ep, EPOLL_CTL_ADD, c->fd, &ev);
    ngtcp2_cid dcid, scid;
    dcid.datalen = scid.datalen = CID_LEN;
    rnd(dcid.data, CID_LEN);
    rnd(scid.data, CID_LEN);
    ngtcp2_settings st;
    ngtcp2_transport_params tp;
    conn_settings(&st, &tp, cl->cfg.idle_timeout_ms);
    ngtcp2_callbacks cb;
    fill_callbacks(&cb, false);
    ngtcp2_path path = {
        .local = {(ngtcp2_sockaddr *)&c->local, c->locallen},
        .remote = {(ngtcp2_sockaddr *)&c->remote, c->remotelen},
    };
    if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &st, &tp,
                               &link_mem, c) != 0 ||
        tls_setup(c, false, host) < 0) {
        conn_destroy(c);
        return AH_E_INTERNAL;
    }
    ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
    cl->conn = c;
    conn_after(c); /* sends the first Initial */
    return 0;
}

static void client_readable(struct link_conn *c) {
    uint8_t pkt[65536];
    struct link_client *cl = c->l->cli;
    for (int i = 0; i < 1024 && cl->conn == c; i++) {
        ssize_t n = recv(c->fd, pkt, sizeof(pkt), MSG_DONTWAIT);
        if (n < 0 && errno == ECONNREFUSED) {
            /* ICMP port unreachable: nothing listens there (the access point is gone, or not
             * up yet): on to the next address now rather than after the idle timeout */
            log_msg(LOG_INFO, "link: %s refused the datagrams (nothing listens there)", c->addr);
            conn_finish(c, "connection refused");
            return;
        }
        if (n < 0)
            return;
        conn_read(c, pkt, (size_t)n); /* may free c: the loop condition checks */
    }
}

static void client_tick(struct link_client *cl) {
    int64_t now = ident_now_ms();
    struct link_conn *c = cl->conn;
    if (!cl->stopping && now >= cl->next_reload) {
        cl->next_reload = now + (cl->cfg.reload_check_ms > 0 ? cl->cfg.reload_check_ms : 2000);
        if (ident_stale(cl->ident, &cl->cfg.id, now)) {
            char err[WHY_MAX];
            struct ident *it = NULL;
            if (ident_load(&cl->cfg.id, &it, err, sizeof(err)) < 0) {
                log_msg(LOG_WARN, "link: keeping the current certificate: reload failed: %s",
                        err);
                ident_restamp(cl->ident, &cl->cfg.id, now); /* retry after a change or a ttl */
            } else if (memcmp(it->leaf_sha256, cl->ident->leaf_sha256, 32) == 0) {
                ident_free(it); /* the same certificate again (exec ttl, touched files) */
                ident_restamp(cl->ident, &cl->cfg.id, now);
            } else {
                gnutls_certificate_set_verify_function(it->cred, verify_peer);
                ident_free(cl->ident);
                cl->ident = it;
                log_msg(LOG_INFO, "link: certificate reloaded (%s): reconnecting gracefully",
                        it->self_id);
                if (c && atomic_load(&cl->enrolled)) {
                    cl->rotating = true;
                    client_send_goodbye(c, "certificate rotated");
                } else if (c) {
                    cl->rotating = true;
                    link_conn_close(c, "certificate rotated");
                }
            }
        }
    }
    if (c) {
        if (c->goodbye_deadline && now >= c->goodbye_deadline && !c->close_pending)
            link_conn_close(c, cl->stopping ? cl->stop_reason : "certificate rotated");
        else if (atomic_load(&cl->enrolled) && !c->goodbye_deadline && now >= cl->next_heartbeat) {
            cl->next_heartbeat = now + (cl->cfg.heartbeat_ms > 0 ? cl->cfg.heartbeat_ms : 5000);
            client_send_heartbeat(cl);
        }
        conn_after(c);
    } else if (!cl->stopping && now >= cl->next_connect) {
        if (client_connect(cl) < 0)
            client_conn_gone(cl, "cannot connect");
    }
}

/* ---- the thread --------------------------------------------------------------------------- */

static void stop_all(struct link_loop *l) {
    if (l->srv) {
        while (l->srv->conns) {
            link_conn_close(l->srv->conns, "access point stopping");
            conn_after(l->srv->conns);
        }
    } else if (l->cli->conn) {
        link_conn_close(l->cli->conn, l->cli->stop_reason);
        conn_after(l->cli->conn);
    }
}

static void flush_all(struct link_loop *l) {
    if (l->srv) {
        for (struct link_conn *c = l->srv->conns, *n; c; c = n) {
            n = c->next;
            conn_after(c);
        }
    } else if (l->cli->conn) {
        conn_after(l->cli->conn);
    }
}

static void *loop_main(void *arg) {
    struct link_loop *l = arg;
    bool draining = false;
    int64_t drain_until = 0;
    if (l->cli)
        client_tick(l->cli); /* dial at once, not at the first tick */
    for (;;) {
        if (atomic_load(&l->stop) && !draining) {
            draining = true;
            drain_until = ident_now_ms() + GOODBYE_WAIT_MS + 200;
            if (l->cli) {
                l->cli->stopping = true;
                if (l->cli->conn && atomic_load(&l->cli->enrolled)) {
                    client_send_goodbye(l->cli->conn, l->cli->stop_reason);
                    conn_after(l->cli->conn);
                }
            }
        }
        if (draining && (ident_now_ms() >= drain_until || !l->cli || !l->cli->conn)) {
            stop_all(l);
            break;
        }
        struct epoll_event evs[64];
        int n = epoll_wait(l->ep, evs, 64, 1000);
        bool fd_events = false;
        for (int i = 0; i < n; i++) {
            struct watch *w = evs[i].data.ptr;
            switch (w->kind) {
            case W_EVENT:
                run_posts(l);
                flush_all(l); /* what the posted work queued goes out now */
                break;
            case W_TICK: {
                uint64_t v;
                if (read(l->tickfd, &v, sizeof(v)) < 0) { /* spurious */
                }
                if (l->srv)
                    server_tick(l->srv);
                else
                    client_tick(l->cli);
                break;
            }
            case W_SSOCK:
                server_readable(l->srv);
                break;
            case W_FD: {
                struct link_watch *lw = w->p;
                if (!lw->dead)
                    lw->cb(lw->arg, evs[i].events);
                fd_events = true;
                break;
            }
            case W_CSOCK:
                if (l->cli->conn == w->p) /* not a connection freed earlier in this batch */
                    client_readable(w->p);
                break;
            case W_TIMER:
                /* a connection freed earlier in this batch may still have an event queued:
                 * only act on live ones */
                if (l->srv) {
                    for (struct link_conn *c = l->srv->conns; c; c = c->next)
                        if (c == w->p) {
                            conn_timer(c);
                            break;
                        }
                } else if (l->cli->conn == w->p) {
                    conn_timer(w->p);
                }
                break;
            }
        }
        if (fd_events)
            flush_all(l); /* what watched descriptors' callbacks queued goes out now */
        free_dead(l);
    }
    free_dead(l);
    return NULL;
}

/* ---- public start/stop -------------------------------------------------------------------- */

int link_server_start(const struct link_server_config *cfg, struct link_server **ret, char *err,
                      size_t errn) {
    struct link_server *sv = calloc(1, sizeof(*sv));
    if (!sv) {
        snprintf(err, errn, "out of memory");
        return AH_E_NOMEM;
    }
    sv->cfg = *cfg;
    sv->fd = -1;
    sv->loop.srv = sv;
    sv->loop.side = "access point";
    sv->loop.ep = sv->loop.evfd = sv->loop.tickfd = -1;
    int rc = ident_load(&cfg->id, &sv->ident, err, errn);
    if (rc < 0)
        goto fail;
    gnutls_certificate_set_verify_function(sv->ident->cred, verify_peer);
    if (cfg->trust_domain && *cfg->trust_domain) {
        snprintf(sv->td, sizeof(sv->td), "%s", cfg->trust_domain);
    } else if (strncmp(sv->ident->self_id, "spiffe://", 9) == 0) {
        const char *d = sv->ident->self_id + 9, *slash = strchr(d, '/');
        snprintf(sv->td, sizeof(sv->td), "%.*s", (int)(slash ? slash - d : (long)strlen(d)), d);
    } else {
        snprintf(err, errn, "no executor trust domain: give --executor-trust-domain, or a "
                            "certificate whose URI SAN is spiffe://<trust-domain>/ah/serve");
        rc = AH_E_INVAL;
        goto fail;
    }
    char want[300];
    snprintf(want, sizeof(want), "spiffe://%s/ah/serve", sv->td);
    if (strcmp(sv->ident->self_id, want) != 0)
        log_msg(LOG_WARN, "link: this access point's certificate carries '%s', not '%s': "
                "executors that expect the latter will refuse it",
                sv->ident->self_id[0] ? sv->ident->self_id : "no SPIFFE id", want);
    if ((rc = loop_init(&sv->loop)) < 0) {
        snprintf(err, errn, "cannot set up the event loop: %s", strerror(errno));
        goto fail;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", cfg->port);
    const char *bind_addr = cfg->bind && *cfg->bind ? cfg->bind : "0.0.0.0";
    int g = getaddrinfo(bind_addr, port, &hints, &res);
    if (g != 0 || !res) {
        snprintf(err, errn, "cannot resolve QUIC bind address %s: %s", bind_addr,
                 gai_strerror(g));
        rc = AH_E_INVAL;
        goto fail;
    }
    sv->fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sv->fd < 0 || bind(sv->fd, res->ai_addr, res->ai_addrlen) < 0) {
        snprintf(err, errn, "cannot bind QUIC (UDP) %s:%d: %s", bind_addr, cfg->port,
                 strerror(errno));
        freeaddrinfo(res);
        rc = AH_E_IO;
        goto fail;
    }
    freeaddrinfo(res);
    int big = 4 << 20;
    setsockopt(sv->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setsockopt(sv->fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    sv->locallen = sizeof(sv->local);
    getsockname(sv->fd, (struct sockaddr *)&sv->local, &sv->locallen);
    sv->port = sv->local.ss_family == AF_INET6
                   ? ntohs(((struct sockaddr_in6 *)&sv->local)->sin6_port)
                   : ntohs(((struct sockaddr_in *)&sv->local)->sin_port);
    sv->w_sock = (struct watch){W_SSOCK, sv};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &sv->w_sock};
    epoll_ctl(sv->loop.ep, EPOLL_CTL_ADD, sv->fd, &ev);
    if (pthread_create(&sv->loop.thread, NULL, loop_main, &sv->loop) != 0) {
        snprintf(err, errn, "cannot start the QUIC thread");
        rc = AH_E_NOMEM;
        goto fail;
    }
    sv->loop.started = true;
    pthread_setname_np(sv->loop.thread, "ah-link"); /* for top -H, perf and /proc */
    log_msg(LOG_INFO, "link: QUIC listening on %s:%d (ALPN %s) as %s; executors of trust domain "
            "%s", bind_addr, sv->port, LINK_ALPN, sv->ident->self_id, sv->td);
    *ret = sv;
    return 0;
fail:
    if (sv->fd >= 0)
        close(sv->fd);
    ident_free(sv->ident);
    loop_clear(&sv->loop);
    free(sv);
    return rc;
}

int link_server_port(const struct link_server *s) {
    return s->port;
}

struct link_loop *link_server_loop(struct link_server *s) {
    return &s->loop;
}

void link_server_stop(struct link_server *sv) {
    if (!sv)
        return;
    atomic_store(&sv->loop.stop, true);
    uint64_t one = 1;
    if (write(sv->loop.evfd, &one, sizeof(one)) < 0) { /* pending already */
    }
    pthread_join(sv->loop.thread, NULL);
    run_posts(&sv->loop);
    close(sv->fd);
    ident_free(sv->ident);
    loop_clear(&sv->loop);
    free(sv);
}

int link_client_start(const struct link_client_config *cfg, struct link_client **ret, char *err,
                      size_t errn) {
    if (!cfg->host || !*cfg->host || cfg->port <= 0 || cfg->port > 65535) {
        snprintf(err, errn, "the access point's QUIC address is missing (host and port)");
        return AH_E_INVAL;
    }
    if ((!cfg->expected_server_id || !*cfg->expected_server_id) &&
        (!cfg->server_san || !*cfg->server_san)) {
        snprintf(err, errn, "the access point's identity must be pinned: give "
                            "--expected-server-id spiffe://<trust-domain>/ah/serve or "
                            "--server-san (dns=, uri=, pin=)");
        return AH_E_INVAL;
    }
    if (cfg->n_more >= LINK_ADDRESSES_MAX) {
        snprintf(err, errn, "at most %d access point addresses", LINK_ADDRESSES_MAX);
        return AH_E_INVAL;
    }
    int rc = ident_san_list_check(cfg->server_san, err, errn);
    if (rc < 0)
        return rc;
    struct link_client *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        snprintf(err, errn, "out of memory");
        return AH_E_NOMEM;
    }
    cl->cfg = *cfg;
    cl->cfg.more = NULL;
    cl->cfg.n_more = 0;
    for (size_t i = 0; i <= cfg->n_more && i < LINK_ADDRESSES_MAX; i++) {
        const char *h = i ? cfg->more[i - 1].host : cfg->host;
        int p = i ? cfg->more[i - 1].port : cfg->port;
        if (!h || !*h || strlen(h) >= sizeof(cl->addrs[0].host) || p <= 0 || p > 65535) {
            snprintf(err, errn, "access point address %zu of the list is not HOST:PORT", i + 1);
            free(cl);
            return AH_E_INVAL;
        }
        snprintf(cl->addrs[i].host, sizeof(cl->addrs[i].host), "%s", h);
        cl->addrs[i].port = p;
        cl->n_addrs++;
    }
    cl->cfg.host = cl->addrs[0].host;
    cl->loop.cli = cl;
    cl->loop.side = "executor";
    cl->loop.ep = cl->loop.evfd = cl->loop.tickfd = -1;
    snprintf(cl->stop_reason, sizeof(cl->stop_reason), "executor stopping");
    if ((rc = ident_load(&cfg->id, &cl->ident, err, errn)) < 0)
        goto fail;
    gnutls_certificate_set_verify_function(cl->ident->cred, verify_peer);
    if (!link_spiffe_agent_id(cl->ident->self_id, NULL, 0, NULL, 0))
        log_msg(LOG_WARN, "link: this executor's certificate carries '%s', not "
                "spiffe://<trust-domain>/ah/agent/<name>: the access point will refuse it",
                cl->ident->self_id[0] ? cl->ident->self_id : "no SPIFFE id");
    if ((rc = loop_init(&cl->loop)) < 0) {
        snprintf(err, errn, "cannot set up the event loop: %s", strerror(errno));
        goto fail;
    }
    cl->next_connect = ident_now_ms();
    cl->next_reload = ident_now_ms() + (cfg->reload_check_ms > 0 ? cfg->reload_check_ms : 2000);
    if (pthread_create(&cl->loop.thread, NULL, loop_main, &cl->loop) != 0) {
        snprintf(err, errn, "cannot start the QUIC thread");
        rc = AH_E_NOMEM;
        goto fail;
    }
    cl->loop.started = true;
    pthread_setname_np(cl->loop.thread, "ah-link");
    *ret = cl;
    return 0;
fail:
    ident_free(cl->ident);
    loop_clear(&cl->loop);
    free(cl);
    return rc;
}

struct link_loop *link_client_loop(struct link_client *c) {
    return &c->loop;
}

bool link_client_enrolled(struct link_client *c) {
    return atomic_load(&c->enrolled);
}

/* On the loop: a Heartbeat now, the next one an interval later. */
static void beat_now(void *arg) {
    struct link_client *cl = arg;
    atomic_store(&cl->beat_posted, false);
    struct link_conn *c = cl->conn;
    if (!c || cl->stopping || !atomic_load(&cl->enrolled) || c->goodbye_deadline ||
        c->close_pending)
        return;
    cl->next_heartbeat = ident_now_ms() + (cl->cfg.heartbeat_ms > 0 ? cl->cfg.heartbeat_ms : 5000);
    client_send_heartbeat(cl); /* run_posts' caller flushes it */
}

void link_client_heartbeat_soon(struct link_client *cl) {
    if (!cl || atomic_exchange(&cl->beat_posted, true))
        return; /* one is on its way: it reads the numbers when it is built */
    if (link_post(&cl->loop, beat_now, cl) < 0)
        atomic_store(&cl->beat_posted, false); /* out of memory: the next interval's will do */
}

void link_client_stop(struct link_client *cl, const char *reason) {
    if (!cl)
        return;
    if (reason)
        snprintf(cl->stop_reason, sizeof(cl->stop_reason), "%s", reason);
    atomic_store(&cl->loop.stop, true);
    uint64_t one = 1;
    if (write(cl->loop.evfd, &one, sizeof(one)) < 0) { /* pending already */
    }
    pthread_join(cl->loop.thread, NULL);
    run_posts(&cl->loop);
    ident_free(cl->ident);
    loop_clear(&cl->loop);
    free(cl);
}

int link_parse_address(const char *s, int default_port, char *host, size_t hostn, int *port) {
    if (!s || !*s)
        return AH_E_INVAL;
    if (strncmp(s, "quic://", 7) == 0)
        s += 7;
    const char *end = s + strcspn(s, "/"); /* a trailing path is ignored */
    const char *colon = NULL;
    size_t hlen;
    if (*s == '[') {
        const char *close = memchr(s, ']', (size_t)(end - s));
        if (!close)
            return AH_E_INVAL;
        hlen = (size_t)(close - s - 1);
        if (close + 1 < end) {
            if (close[1] != ':')
                return AH_E_INVAL;
            colon = close + 1;
        }
        s++;
    } else {
        colon = memchr(s, ':', (size_t)(end - s));
        hlen = colon ? (size_t)(colon - s) : (size_t)(end - s);
    }
    if (hlen == 0 || hlen >= hostn)
        return AH_E_INVAL;
    long p = default_port;
    if (colon) {
        char *e = NULL;
        errno = 0;
        p = strtol(colon + 1, &e, 10);
        if (errno || e != end || p <= 0 || p > 65535)
            return AH_E_INVAL;
    }
    if (p <= 0 || p > 65535)
        return AH_E_INVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

int link_client_run(const struct link_client_config *cfg, const sigset_t *stop, char *err,
                    size_t errn) {
    struct link_client *c = NULL;
    int rc = link_client_start(cfg, &c, err, errn);
    if (rc < 0)
        return rc;
    int sig = 0;
    while (sigwait(stop, &sig) != 0)
        ;
    char reason[64];
    snprintf(reason, sizeof(reason), "executor stopping (%s)", sigabbrev_np(sig) ? sigabbrev_np(sig) : "signal");
    log_msg(LOG_INFO, "link: received SIG%s; saying goodbye", sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    link_client_stop(c, reason);
    return 0;
}
