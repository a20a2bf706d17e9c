/*
 * gate.c — the front of the front door (see front.h): accept, check the first request's header
 * block from the raw bytes, hand the socket to libmicrohttpd; refuse with Problem+JSON and a
 * lingering close otherwise. One thread and one epoll for all of it; no thread per client.
 *
 * Why the raw bytes: libmicrohttpd 0.9.75 accepts `Content-Length : 2` (the header is then not a
 * Content-Length for it), obsolete line folding, two different Content-Length values (it uses
 * the first; the rest of the body became a second request), and hangs on Transfer-Encodings it
 * does not know, on a chunk size of 2^64-1 and on a query that overflows its memory pool. Its own
 * error answers are HTML. All of that is decided here, before libmicrohttpd reads a byte: the
 * gate only peeks (MSG_PEEK), so libmicrohttpd later reads the request from the start.
 * Later requests on a kept-alive connection are checked from libmicrohttpd's header list
 * (server.c), which sees everything above except what its parser already swallowed.
 *
 * Descriptors: when accept fails for want of descriptors (EMFILE/ENFILE) the gate logs it once
 * per episode, with the limit, and stops polling the listening socket for a tick, so waiting
 * clients stay in the backlog instead of the thread spinning.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "../obs/obs.h"
#include "front.h"

/* Issue 10 item 25: how often the process ran out of descriptors (episodes, as logged), and the
 * first requests the gate refused itself (they never reach the router's counts). */
static struct obs_family *m_fd_episodes, *m_refused;
__attribute__((constructor)) static void gate_metrics(void) {
    m_fd_episodes = obs_register1("ah_http_fd_exhausted_episodes_total",
                                  "Episodes of accept() failing for want of file descriptors",
                                  OBS_COUNTER, NULL, 0);
    m_refused = obs_register1("ah_http_gate_refused_total",
                              "Connections whose first request the front gate refused (400, 408, "
                              "413, 414, 431, 501, 505)",
                              OBS_COUNTER, NULL, 0);
}

#define TICK_MS 200
#define LINGER_MS 2000          /* a refused client gets this long to finish sending */
#define LINGER_BYTES (1u << 20) /* and this much, read and dropped */
#define ACCEPT_BATCH 64
#define EMFILE_QUIET_MS 5000 /* an out-of-descriptors episode ends after this long without one */

/* epoll data: pointers to struct pending are 8-aligned; the other tags use the low bits. */
#define TAG_LISTEN 1u
#define TAG_TIMER 2u
#define TAG_STOP 3u
#define TAG_WATCH 4u /* (fd << 3) | TAG_WATCH */

enum pend_state { P_HEAD, P_LINGER };

struct pending {
    int fd;
    enum pend_state state;
    int64_t deadline;
    size_t seen; /* P_HEAD: bytes seen by the last peek; P_LINGER: bytes drained */
    socklen_t alen;
    struct sockaddr_storage addr;
    struct pending *prev, *next;
};

struct gate {
    struct gate_config cfg;
    int epfd, tfd, efd;
    pthread_t thread;
    bool running;
    bool accept_paused, emfile;
    int64_t emfile_last; /* monotonic ms of the last accept refused for want of descriptors */
    struct pending *head; /* gate thread only */
    pthread_mutex_t mu;   /* the watch table */
    void **watch;
    size_t n_watch;
    char buf[FRONT_MAX_HEAD + 1];
};

/* ---- shared checks --------------------------------------------------------------------------- */

static bool is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool ieq(const char *a, size_t n, const char *lit) {
    return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

void front_framing_add(struct front_framing *f, const char *name, size_t nl, const char *value,
                       size_t vl) {
    for (size_t i = 0; i < nl; i++)
        if (!is_tchar((unsigned char)name[i]))
            f->bad_name = true;
    if (!nl)
        f->bad_name = true;
    while (vl && (*value == ' ' || *value == '\t'))
        value++, vl--;
    while (vl && (value[vl - 1] == ' ' || value[vl - 1] == '\t'))
        vl--;
    if (ieq(name, nl, "Host")) {
        f->n_host++;
    } else if (ieq(name, nl, "Content-Length")) {
        f->n_cl++;
        if (!vl)
            f->cl_bad = true;
        for (size_t i = 0; i < vl; i++)
            if (value[i] < '0' || value[i] > '9')
                f->cl_bad = true;
        if (vl > 18)
            f->cl_huge = true;
    } else if (ieq(name, nl, "Transfer-Encoding")) {
        /* codings, comma separated; only a final `chunked` is understood (RFC 9112 §6.1) */
        f->n_te++;
        bool last_chunked = false;
        size_t i = 0;
        while (i <= vl) {
            size_t j = i;
            while (j < vl && value[j] != ',')
                j++;
            size_t a = i, b = j;
            while (a < b && (value[a] == ' ' || value[a] == '\t'))
                a++;
            while (b > a && (value[b - 1] == ' ' || value[b - 1] == '\t'))
                b--;
            if (b > a) {
                if (last_chunked)
                    f->te_bad = true; /* something after chunked */
                last_chunked = ieq(value + a, b - a, "chunked");
                if (!last_chunked)
                    f->te_unknown = true;
            }
            i = j + 1;
        }
        if (!last_chunked)
            f->te_bad = true;
    }
}

void front_framing_verdict(const struct front_framing *f, struct front_verdict *v) {
    v->status = 0;
    v->detail[0] = '\0';
#define REFUSE(st, ...)                                                                            \
    do {                                                                                           \
        v->status = st;                                                                            \
        snprintf(v->detail, sizeof(v->detail), __VA_ARGS__);                                       \
        return;                                                                                    \
    } while (0)
    if (f->bad_name)
        REFUSE(400, "a header name is not a token (no spaces, and ':' right after the name)");
    if (f->n_cl > 1)
        REFUSE(400, "the request has more than one Content-Length header");
    if (f->n_cl && f->n_te)
        REFUSE(400, "the request has both Content-Length and Transfer-Encoding");
    if (f->cl_bad)
        REFUSE(400, "Content-Length is not a number");
    if (f->cl_huge)
        REFUSE(413, "Content-Length is larger than any request body this server takes");
    if (f->n_te && !f->http11)
        REFUSE(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
    if (f->n_te && f->te_bad)
        REFUSE(400, "Transfer-Encoding must end with chunked");
    if (f->n_te && f->te_unknown)
        REFUSE(501, "the only transfer coding accepted is chunked");
    if (f->http11 && f->n_host != 1)
        REFUSE(400, "an HTTP/1.1 request needs exactly one Host header");
    if (f->n_host > 1)
        REFUSE(400, "the request has more than one Host header");
#undef REFUSE
}

bool front_utf8_ok(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        unsigned c = *p;
        size_t len;
        unsigned min;
        if (c == 0)
            return false;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if ((size_t)(e - p) < len)
            return false;
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            c = (c << 6) | (p[i] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        p += len;
    }
    return true;
}

const char *front_status_slug(int status) {
    switch (status) {
    case 400: return "bad-request";
    case 408: return "request-timeout";
    case 413: return "payload-too-large";
    case 414: return "uri-too-long";
    case 421: return "misdirected-request";
    case 431: return "request-header-fields-too-large";
    case 501: return "not-implemented";
    case 505: return "http-version-not-supported";
    default: return "bad-request";
    }
}

const char *front_status_title(int status) {
    switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Bad Request";
    }
}

char *front_problem_response(int status, const char *detail, const char *instance,
                             const char *request_id, size_t *ret_len) {
    char type[96];
    snprintf(type, sizeof(type), "/problems/%s", front_status_slug(status));
    json_t *j = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", front_status_title(status),
                          "status", status, "detail", detail);
    if (!j)
        return NULL;
    if (instance && front_utf8_ok(instance, strlen(instance)))
        json_object_set_new(j, "instance", json_string(instance));
    json_object_set_new(j, "requestId", json_string(request_id));
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!body)
        return NULL;
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    struct ah_buf b = {0};
    int rc =
        ah_buf_printf(&b,
                      "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/problem+json\r\n"
                      "Content-Length: %zu\r\nX-Request-Id: %s\r\nCache-Control: no-store\r\n"
                      "Connection: close\r\n\r\n%s",
                      status, front_status_title(status), date, strlen(body), request_id, body);
    free(body);
    if (rc < 0) {
        ah_buf_clear(&b);
        return NULL;
    }
    *ret_len = b.n;
    return ah_buf_steal(&b);
}

/* ---- the header block ------------------------------------------------------------------------ */

struct head {
    char method[16];
    char path[256]; /* for the problem's instance and the log; may be cut */
    struct front_verdict v;
};

static size_t line_end(const char *p, const char *end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? (size_t)(nl - p) : (size_t)(end - p);
}

/* Checks the block b[0..n) that ends with its empty line; `more` is what follows it in the peek
 * (the start of a body). */
static void check_head(const char *b, size_t n, const char *more, size_t more_n, size_t max_chunk,
                       struct head *h) {
    struct front_verdict *v = &h->v;
    const char *p = b, *end = b + n;
    while (p < end && (*p == '\r' || *p == '\n')) /* RFC 9112 §2.2: ignore leading empty lines */
        p++;
#define REFUSE(st, ...)                                                                            \
    do {                                                                                           \
        v->status = st;                                                                            \
        snprintf(v->detail, sizeof(v->detail), __VA_ARGS__);                                       \
        return;                                                                                    \
    } while (0)
    /* request line: method SP target SP HTTP/1.x */
    size_t ll = line_end(p, end);
    const char *le = p + ll;
    if (ll && le[-1] == '\r')
        le--;
    const char *sp1 = memchr(p, ' ', (size_t)(le - p));
    size_t ml = sp1 ? (size_t)(sp1 - p) : 0;
    for (size_t i = 0; i < ml; i++)
        if (!is_tchar((unsigned char)p[i]))
            ml = 0;
    if (!ml || ml >= sizeof(h->method))
        REFUSE(400, "the request line is not METHOD SP target SP HTTP-version");
    memcpy(h->method, p, ml);
    h->method[ml] = '\0';
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(le - t));
    if (!sp2 || sp2 == t)
        REFUSE(400, "the request line is not METHOD SP target SP HTTP-version");
    size_t tl = (size_t)(sp2 - t);
    size_t pl = strcspn(t, "? ");
    if (pl > tl)
        pl = tl;
    snprintf(h->path, sizeof(h->path), "%.*s",
             (int)(pl < sizeof(h->path) ? pl : sizeof(h->path) - 1), t);
    for (size_t i = 0; i < tl; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
            REFUSE(400, "the request target holds a byte that must be percent-encoded");
    const char *ver = sp2 + 1;
    size_t vl = (size_t)(le - ver);
    struct front_framing f = {0};
    if (vl == 8 && memcmp(ver, "HTTP/1.1", 8) == 0)
        f.http11 = true;
    else if (vl == 8 && memcmp(ver, "HTTP/1.0", 8) == 0)
        f.http11 = false;
    else if (vl == 8 && memcmp(ver, "HTTP/", 5) == 0 && ver[5] >= '0' && ver[5] <= '9' &&
             ver[6] == '.' && ver[7] >= '0' && ver[7] <= '9')
        REFUSE(505, "this server speaks HTTP/1.1 and HTTP/1.0");
    else
        REFUSE(400, "the request line is not METHOD SP target SP HTTP-version");
    unsigned n_query = 0;
    if (pl < tl) {
        for (const char *q = t + pl + 1; q < sp2;) {
            const char *amp = memchr(q, '&', (size_t)(sp2 - q));
            const char *qe = amp ? amp : sp2;
            n_query += qe > q;
            q = qe + 1;
        }
    }
    if (n_query > FRONT_MAX_QUERY)
        REFUSE(400, "the request has %u query parameters; the limit is %d", n_query,
               FRONT_MAX_QUERY);
    /* header lines */
    unsigned n_headers = 0;
    p += ll + 1;
    while (p < end) {
        ll = line_end(p, end);
        le = p + ll;
        if (ll && le[-1] == '\r')
            le--;
        if (le == p)
            break; /* the empty line */
        if (*p == ' ' || *p == '\t')
            REFUSE(400, "obsolete line folding (a header line starting with a space) is refused");
        if (++n_headers > FRONT_MAX_HEADERS)
            REFUSE(431, "the request has more than %d header lines", FRONT_MAX_HEADERS);
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon)
            REFUSE(400, "a header line has no ':'");
        for (const char *c = colon + 1; c < le; c++)
            if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
                REFUSE(400, "a header value holds a control character");
        front_framing_add(&f, p, (size_t)(colon - p), colon + 1, (size_t)(le - colon - 1));
        p += ll + 1;
    }
    front_framing_verdict(&f, v);
    if (v->status)
        return;
    if (n + FRONT_POOL_ENTRY * (n_headers + n_query) > FRONT_POOL_BUDGET)
        REFUSE(431, "the request line and headers are too large");
    /* A first chunk we can see already: its size must be a number we could ever take. */
    if (f.n_te && more_n) {
        size_t i = 0;
        unsigned long long size = 0;
        while (i < more_n && i < 17) {
            char c = more[i];
            int d = c >= '0' && c <= '9'                     ? c - '0'
                    : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                             : -1;
            if (d < 0)
                break;
            size = size * 16 + (unsigned)d;
            i++;
        }
        if (i == 17 || (i == 16 && more[0] >= '8'))
            REFUSE(400, "a chunk size does not fit in 63 bits");
        if (i && size > max_chunk)
            REFUSE(413, "a chunk of %llu bytes is larger than the body limit of %zu bytes", size,
                   max_chunk);
        if (!i && more_n)
            REFUSE(400, "a chunk does not start with its size in hexadecimal");
    }
#undef REFUSE
}

/* ---- connections waiting for their headers ----------------------------------------------------
 */

static void pend_unlink(struct gate *g, struct pending *p) {
    if (p->prev)
        p->prev->next = p->next;
    else
        g->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
}

static void pend_close(struct gate *g, struct pending *p) {
    pend_unlink(g, p);
    close(p->fd); /* also leaves the epoll set */
    free(p);
}

static void log_refused(const struct head *h, const char *rid, int status, const char *why) {
    if (!log_enabled(LOG_INFO))
        return;
    json_t *f = json_pack("{s:s, s:i, s:s, s:s}", "id", rid, "status", status, "refused", why,
                          "component", "http");
    if (f && h && h->method[0])
        json_object_set_new(f, "method", json_string(h->method));
    if (f && h && h->path[0] && front_utf8_ok(h->path, strlen(h->path)))
        json_object_set_new(f, "path", json_string(h->path));
    log_json(LOG_INFO, "request", f);
    json_decref(f);
}

static void pend_linger_read(struct gate *g, struct pending *p);

/* Answers a problem and lingers: the client may still be sending, and closing with unread bytes
 * would reset the connection and destroy the answer before the client reads it. */
static void pend_refuse(struct gate *g, struct pending *p, const struct head *h, int status,
                        const char *detail) {
    char rid[ULID_LEN + 1] = "0";
    ulid_new(rid);
    size_t len = 0;
    char *resp =
        front_problem_response(status, detail, h && h->path[0] ? h->path : NULL, rid, &len);
    log_refused(h, rid, status, detail);
    obs_add(m_refused, 0, 1);
    if (resp) {
        ssize_t w = send(p->fd, resp, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w; /* a fresh socket's buffer holds a small answer; if not, the client is gone */
        free(resp);
    }
    shutdown(p->fd, SHUT_WR);
    p->state = P_LINGER;
    p->seen = 0;
    p->deadline = time_mono_ms() + LINGER_MS;
    pend_linger_read(g, p);
}

static void pend_linger_read(struct gate *g, struct pending *p) {
    for (;;) {
        ssize_t n = recv(p->fd, g->buf, sizeof(g->buf), MSG_DONTWAIT);
        if (n > 0) {
            p->seen += (size_t)n;
            if (p->seen > LINGER_BYTES)
                break;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        break; /* EOF or error: done */
    }
    pend_close(g, p);
}

/* The gate's decision on the first bytes of a connection, b[0..n) (at most FRONT_MAX_HEAD):
 * 0 when the header block is not complete yet; 1 when the bytes are refused before the request
 * line was read; 2 when the block was checked (h->v.status 0: hand it over). */
static int judge_peek(const char *b, size_t n, size_t max_chunk, struct head *h) {
    memset(h, 0, sizeof(*h));
    if (!n)
        return 0;
    unsigned char c0 = (unsigned char)b[0];
    if (c0 == 0x16) {
        h->v.status = 400;
        snprintf(h->v.detail, sizeof(h->v.detail), "this port speaks plain HTTP, not TLS");
        return 1;
    }
    if (!is_tchar(c0) && c0 != '\r' && c0 != '\n') {
        h->v.status = 400;
        snprintf(h->v.detail, sizeof(h->v.detail), "this is not an HTTP request");
        return 1;
    }
    /* the end of the header block: an empty line (CRLF or a bare LF, as libmicrohttpd takes) */
    size_t endpos = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (b[i] != '\n')
            continue;
        if (b[i + 1] == '\n') {
            endpos = i + 2;
            break;
        }
        if (b[i + 1] == '\r' && i + 2 < n && b[i + 2] == '\n') {
            endpos = i + 3;
            break;
        }
    }
    if (!endpos) {
        if (n >= FRONT_MAX_HEAD) {
            bool has_line = memchr(b, '\n', n) != NULL;
            h->v.status = has_line ? 431 : 414;
            snprintf(h->v.detail, sizeof(h->v.detail), "%s",
                     has_line ? "the request headers are larger than 8 KiB"
                              : "the request line is longer than 8 KiB");
            return 1;
        }
        return 0; /* wait for more */
    }
    check_head(b, endpos, b + endpos, n - endpos, max_chunk, h);
    return 2;
}

int front_judge_peek(const char *b, size_t n, size_t max_chunk, struct front_verdict *ret) {
    struct head h;
    int r = judge_peek(b, n > FRONT_MAX_HEAD ? FRONT_MAX_HEAD : n, max_chunk, &h);
    *ret = h.v;
    return r;
}

static void pend_head_read(struct gate *g, struct pending *p) {
    ssize_t n = recv(p->fd, g->buf, FRONT_MAX_HEAD, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        pend_close(g, p);
        return;
    }
    if (n < 0)
        return;
    p->seen = (size_t)n;
    struct head h;
    int r = judge_peek(g->buf, (size_t)n, g->cfg.max_chunk, &h);
    if (!r)
        return; /* wait for more (edge-triggered: the next segment wakes us) */
    if (h.v.status) {
        pend_refuse(g, p, r == 2 ? &h : NULL, h.v.status, h.v.detail);
        return;
    }
    epoll_ctl(g->epfd, EPOLL_CTL_DEL, p->fd, NULL);
    pend_unlink(g, p);
    /* MHD closes the socket itself when it cannot take it */
    MHD_add_connection(g->cfg.daemon, p->fd, (const struct sockaddr *)&p->addr, p->alen);
    free(p);
}

static void on_pending(struct gate *g, struct pending *p) {
    if (p->state == P_HEAD)
        pend_head_read(g, p);
    else
        pend_linger_read(g, p);
}

/* ---- accept -----------------------------------------------------------------------------------
 */

static void listen_arm(struct gate *g, bool on) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    epoll_ctl(g->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, g->cfg.listen_fd, &ev);
    g->accept_paused = !on;
}

static void on_accept(struct gate *g) {
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct pending *p = calloc(1, sizeof(*p));
        if (!p)
            return;
        p->alen = sizeof(p->addr);
        p->fd = accept4(g->cfg.listen_fd, (struct sockaddr *)&p->addr, &p->alen,
                        SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (p->fd < 0) {
            int err = errno;
            free(p);
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                g->emfile_last = time_mono_ms();
                if (!g->emfile) {
                    struct rlimit rl = {0};
                    getrlimit(RLIMIT_NOFILE, &rl);
                    json_t *f = json_pack("{s:s, s:I, s:s}", "error", strerror(err), "fd_limit",
                                          (json_int_t)rl.rlim_cur, "component", "http");
                    log_json(LOG_WARN,
                             "cannot accept connections: out of file descriptors; new clients "
                             "wait until some close",
                             f);
                    json_decref(f);
                    g->emfile = true;
                    obs_add(m_fd_episodes, 0, 1);
                }
                listen_arm(g, false); /* back on the next tick: no spinning meanwhile */
            }
            return; /* EAGAIN, or a client that gave up (ECONNABORTED): next event */
        }
        /* One accept that slips through (a descriptor freed elsewhere for a moment) does not end
         * the episode: only a quiet spell does, or a busy server would log the same shortage
         * again and again. */
        if (g->emfile && time_mono_ms() - g->emfile_last >= EMFILE_QUIET_MS) {
            g->emfile = false;
            log_msg(LOG_INFO, "accepting connections again");
        }
        p->state = P_HEAD;
        p->deadline = time_mono_ms() + g->cfg.idle_ms;
        p->next = g->head;
        if (g->head)
            g->head->prev = p;
        g->head = p;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = p};
        if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, p->fd, &ev) < 0)
            pend_close(g, p);
    }
}

static void on_tick(struct gate *g) {
    uint64_t n;
    while (read(g->tfd, &n, sizeof(n)) > 0)
        ;
    if (g->accept_paused)
        listen_arm(g, true);
    int64_t now = time_mono_ms();
    for (struct pending *p = g->head, *next; p; p = next) {
        next = p->next;
        if (now < p->deadline)
            continue;
        if (p->state == P_HEAD && p->seen) {
            char detail[96];
            snprintf(detail, sizeof(detail), "the request headers did not arrive within %u ms",
                     g->cfg.idle_ms);
            pend_refuse(g, p, NULL, 408, detail);
        } else {
            pend_close(g, p);
        }
    }
}

/* ---- watches of suspended connections ----------------------------------------------------------
 */

int gate_watch(struct gate *g, int fd, void *key) {
    if (fd < 0)
        return AH_E_INVAL;
    pthread_mutex_lock(&g->mu);
    if ((size_t)fd >= g->n_watch) {
        size_t n = g->n_watch ? g->n_watch : 256;
        while (n <= (size_t)fd)
            n *= 2;
        void **w = realloc(g->watch, n * sizeof(*w));
        if (!w) {
            pthread_mutex_unlock(&g->mu);
            return AH_E_NOMEM;
        }
        memset(w + g->n_watch, 0, (n - g->n_watch) * sizeof(*w));
        g->watch = w;
        g->n_watch = n;
    }
    g->watch[fd] = key;
    /* edge-triggered: one report per hang-up, none for data (no EPOLLIN) */
    struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLET,
                             .data.u64 = ((uint64_t)fd << 3) | TAG_WATCH};
    int rc = 0;
    if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 &&
        (errno != EEXIST || epoll_ctl(g->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)) {
        g->watch[fd] = NULL;
        rc = ah_err_from_errno(errno);
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

void gate_unwatch(struct gate *g, int fd, void *key) {
    if (fd < 0)
        return;
    pthread_mutex_lock(&g->mu);
    /* Only the table entry goes: the epoll registration leaves by itself when the socket is
     * closed, and removing it here could hit a new connection that already reuses the number
     * if libmicrohttpd closed the socket first. A stale registration on a kept-alive socket
     * reports into an empty slot (ignored) or is re-armed by the next gate_watch. */
    if ((size_t)fd < g->n_watch && g->watch[fd] == key)
        g->watch[fd] = NULL;
    pthread_mutex_unlock(&g->mu);
}

static void on_watch(struct gate *g, int fd) {
    pthread_mutex_lock(&g->mu);
    void *key = (size_t)fd < g->n_watch ? g->watch[fd] : NULL;
    if (key)
        g->cfg.on_hangup(key);
    pthread_mutex_unlock(&g->mu);
}

/* ---- the thread ------------------------------------------------------------------------------ */

static void *gate_main(void *arg) {
    struct gate *g = arg;
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(g->epfd, evs, 64, -1);
        if (n < 0 && errno != EINTR)
            return NULL;
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            if (d == TAG_STOP)
                return NULL;
            if (d == TAG_LISTEN)
                on_accept(g);
            else if (d == TAG_TIMER)
                on_tick(g);
            else if ((d & 7) == TAG_WATCH)
                on_watch(g, (int)(d >> 3));
        }
        /* pending connections after the others: a hand-over never races a stale pointer, as
         * nothing above frees a pending (on_tick may: its events are skipped by re-checking) */
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            if (d == TAG_STOP || d == TAG_LISTEN || d == TAG_TIMER || (d & 7) == TAG_WATCH)
                continue;
            struct pending *p = evs[i].data.ptr;
            bool live = false;
            for (struct pending *q = g->head; q && !live; q = q->next)
                live = q == p;
            if (live)
                on_pending(g, p);
        }
    }
}

int gate_start(const struct gate_config *cfg, struct gate **ret) {
    struct gate *g = calloc(1, sizeof(*g));
    if (!g)
        return AH_E_NOMEM;
    g->cfg = *cfg;
    pthread_mutex_init(&g->mu, NULL);
    g->epfd = epoll_create1(EPOLL_CLOEXEC);
    g->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    g->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (g->epfd < 0 || g->tfd < 0 || g->efd < 0)
        goto fail;
    struct itimerspec its = {.it_value = {0, TICK_MS * 1000000L},
                             .it_interval = {0, TICK_MS * 1000000L}};
    timerfd_settime(g->tfd, 0, &its, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_TIMER};
    epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->tfd, &ev);
    ev.data.u64 = TAG_STOP;
    epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->efd, &ev);
    listen_arm(g, true);
    if (pthread_create(&g->thread, NULL, gate_main, g) != 0)
        goto fail;
    g->running = true;
    *ret = g;
    return 0;
fail:
    gate_free(g);
    return AH_E_IO;
}

void gate_stop(struct gate *g) {
    if (!g || !g->running)
        return;
    uint64_t one = 1;
    if (write(g->efd, &one, sizeof(one)) < 0) {
        /* cannot fail on our eventfd */
    }
    pthread_join(g->thread, NULL);
    g->running = false;
    epoll_ctl(g->epfd, EPOLL_CTL_DEL, g->cfg.listen_fd, NULL);
    while (g->head)
        pend_close(g, g->head);
}

void gate_free(struct gate *g) {
    if (!g)
        return;
    gate_stop(g);
    int fds[] = {g->epfd, g->tfd, g->efd};
    for (size_t i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(g->watch);
    pthread_mutex_destroy(&g->mu);
    free(g);
}
