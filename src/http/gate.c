/*
 * gate.c — the front of the front door (see front.h). One thread and one epoll for all of it; no
 * thread per client.
 *
 * The gate accepts every connection and stays in its path for the connection's whole life: it
 * reads the client's bytes, checks every request's header block (the first one and each later
 * one of a kept-alive or pipelined connection), follows the body's framing (Content-Length or
 * chunked) to find where the next request starts, and passes the checked bytes to libmicrohttpd
 * through a socketpair; libmicrohttpd's answers come back through the same socketpair and are
 * copied to the client. A request it refuses gets a Problem+JSON answer written by the gate after
 * the answers to the requests before it, and a lingering close.
 *
 * Why: libmicrohttpd 0.9.75 accepts `Content-Length : 2` (the header is then not a Content-Length
 * for it), obsolete line folding, two different Content-Length values (it uses the first; the
 * rest of the body became a second request), and hangs on Transfer-Encodings it does not know, on
 * a chunk size of 2^64-1 and on a query that overflows its memory pool. Its own error answers are
 * HTML and it has no hook for them. When only the first request was checked (peeking at the
 * socket before handing it over), a later request on the same connection reached that parser
 * unchecked; now no byte reaches libmicrohttpd that the gate did not read and check first.
 *
 * Flow control: a direction is read only while the gate holds nothing unsent for it; what the
 * destination does not take at once is kept in a per-connection buffer allocated for the moment
 * (at most one read) and freed when sent. So an idle connection — an SSE subscriber between
 * events — holds no buffer, and a slow reader pushes back on libmicrohttpd through the
 * socketpair, as it would through a direct socket.
 *
 * Hang-ups: a suspended stream is invisible to libmicrohttpd, so server.c asks the gate to watch
 * its socket (gate_watch, by libmicrohttpd's descriptor). When the client leaves, the gate shuts
 * the socketpair (libmicrohttpd then reads EOF) and calls on_hangup at once (item 24).
 *
 * HTTPS (issue 13 item 8): with a certificate the gate terminates TLS. Each client socket gets
 * a non-blocking GnuTLS session whose handshake is moved on by the same events as any read, with
 * a deadline and a byte cap; then its records are read and written where the plain socket was
 * (client_recv, xsend), so everything above — the checks, the socketpair, libmicrohttpd — sees
 * the same plain HTTP either way. Plain HTTP sent to the TLS port gets a readable 400.
 *
 * Descriptors: when accept fails for want of descriptors (EMFILE/ENFILE) the gate logs it once
 * per episode, with the limit, and stops polling the listening socket for a tick, so waiting
 * clients stay in the backlog instead of the thread spinning.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
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
 * requests the gate refused itself (they never reach the router's counts). */
static struct obs_family *m_fd_episodes, *m_refused;
__attribute__((constructor)) static void gate_metrics(void) {
    m_fd_episodes = obs_register1("ah_http_fd_exhausted_episodes_total",
                                  "Episodes of accept() failing for want of file descriptors",
                                  OBS_COUNTER, NULL, 0);
    m_refused = obs_register1("ah_http_gate_refused_total",
                              "Requests the front gate refused itself, first or later on a "
                              "connection (400, 408, 413, 414, 431, 501, 503, 505)",
                              OBS_COUNTER, NULL, 0);
}

#define TICK_MS 200
#define LINGER_MS 2000          /* a refused client gets this long to finish sending */
#define LINGER_BYTES (1u << 20) /* and this much, read and dropped */
#define ACCEPT_BATCH 64
#define EMFILE_QUIET_MS 5000 /* an out-of-descriptors episode ends after this long without one */
#define IO_MAX (256u * 1024) /* one read, either direction */
#define CHUNK_LINE_MAX 4096  /* a chunk-size line with its extensions */
#define TRAILER_MAX 8192     /* the trailer section of a chunked body */
#define DRAIN_MS 2000        /* gate_free: how long answers in flight get to reach clients */
#define TLS_HS_MS 10000      /* a TLS handshake must be done within this (or the idle timeout) */
#define TLS_HS_MAX (64u * 1024) /* and within this many bytes from the client */
#define TLS_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* epoll data: struct conn pointers are 8-aligned, bit 0 tells the socketpair end from the
 * client's socket; the other tags are small numbers. */
#define TAG_LISTEN 1u
#define TAG_TIMER 2u
#define TAG_STOP 3u
#define SIDE_UP 1u

/* Where the client's byte stream is: in a header block, or in the body that follows one. */
enum rstate {
    R_HEAD,      /* a header block (c->hb holds its start when it spans reads) */
    R_LENGTH,    /* c->left bytes of a Content-Length body */
    R_CSIZE,     /* chunked: the hex digits of a chunk size */
    R_CEXT,      /* chunked: the rest of the chunk-size line (extensions) */
    R_CDATA,     /* chunked: c->left bytes of chunk data */
    R_CDATA_END, /* chunked: the CRLF after the data */
    R_TRAILER,   /* chunked: trailer lines up to an empty one */
    R_DISCARD,   /* nothing more is passed on (after a request that closes the connection) */
    R_TUNNEL,    /* after a CONNECT: every byte goes to the tunnel's socketpair, unchecked */
};

struct outbuf { /* bytes a destination did not take yet; p is NULL when empty */
    char *p;
    size_t off, n;
};

/* A refused request: answered once libmicrohttpd has answered the ones before it. */
struct refusal {
    int status;
    char detail[200];
    char method[16];
    char path[256];
};

struct conn {
    int fd;     /* the client's socket */
    /* HTTPS: the client's bytes pass through this TLS session (NULL: plain HTTP). The handshake
     * runs in the gate's loop like any other read (hs until it is done), bounded in time (the
     * connection's deadline) and size (hs_bytes). */
    gnutls_session_t tls;
    bool hs, hs_started;
    bool tls_wantw; /* the handshake waits for room to write */
    bool tls_wpend; /* a record send returned AGAIN: the next send repeats it (NULL, 0) */
    size_t hs_bytes;
    int up;     /* the gate's end of the socketpair; -1 before the first request was checked */
    int mhd_fd; /* libmicrohttpd's end (its number, for gate_watch); -1 when unknown */
    bool client_eof, up_eof, up_shut, wr_shut, gone, lingering, dead;
    bool close_after; /* the request in progress ends the connection */
    /* edge-triggered readiness: the socket may have bytes to read (set by its events, cleared
     * by a short read or EAGAIN), and whether EPOLLOUT is asked for (only while a buffer waits:
     * a socketpair reports write space each time libmicrohttpd reads, a wake-up per request) */
    bool client_rd, up_rd, client_out, up_out;
    bool client_hup, up_hup; /* a hang-up was reported: read to EOF, a short read proves nothing */
    uint32_t heads;          /* request heads passed on to libmicrohttpd */
    uint32_t started;        /* requests libmicrohttpd began (atomic; gate_request_started) */
    bool watched_hup;        /* on_hangup was called or is due: the client left */
    enum rstate rs;
    uint32_t hn;      /* bytes in hb */
    uint32_t line;    /* bytes of the current chunk-size or trailer line; trailer total */
    uint64_t left;    /* R_LENGTH, R_CDATA: bytes still to come; R_CSIZE: the size so far */
    unsigned digits;  /* R_CSIZE: hex digits so far */
    int64_t deadline; /* 0, or when a header block that started must be complete / linger ends */
    size_t dropped;   /* bytes read and dropped (refusing, lingering) */
    char *hb;         /* a header block that spans reads (FRONT_MAX_HEAD bytes) */
    struct refusal *ref;
    struct outbuf to_up, to_client;
    socklen_t alen;
    struct sockaddr_storage addr;
    struct conn *prev, *next; /* g->conns, or g->graveyard once dead */
};

struct gate_tls {
    gnutls_certificate_credentials_t creds;
    gnutls_priority_t prio;
};

struct gate {
    struct gate_config cfg;
    int epfd, tfd, efd;
    pthread_t thread;
    bool running;
    bool stopping, exiting; /* atomics: gate_stop, gate_free asked */
    bool accepting;
    bool accept_paused, emfile;
    int64_t emfile_last; /* monotonic ms of the last accept refused for want of descriptors */
    size_t n_conns;
    struct conn *conns;     /* gate thread only */
    struct conn *graveyard; /* closed during this batch of events: freed after it */
    pthread_mutex_t mu;     /* byfd, the watch table, stopped */
    pthread_cond_t cv;      /* stopped was set */
    bool stopped;           /* the gate no longer accepts */
    struct conn **byfd;     /* libmicrohttpd's descriptor → its connection */
    void **watch;           /* libmicrohttpd's descriptor → on_hangup key */
    size_t n_fd;            /* entries in byfd and watch */
    char buf[IO_MAX];
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
        else if (!f->cl_bad) {
            f->cl_value = 0; /* ≤ 18 digits: fits */
            for (size_t i = 0; i < vl; i++)
                f->cl_value = f->cl_value * 10 + (unsigned)(value[i] - '0');
        }
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
    case 503: return "service-unavailable";
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
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Bad Request";
    }
}

static char *problem_response(int status, const char *detail, const char *instance,
                              const char *request_id, bool hsts, size_t *ret_len);

char *front_problem_response(int status, const char *detail, const char *instance,
                             const char *request_id, size_t *ret_len) {
    return problem_response(status, detail, instance, request_id, false, ret_len);
}

static char *problem_response(int status, const char *detail, const char *instance,
                              const char *request_id, bool hsts, size_t *ret_len) {
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
                      "%s%s%sConnection: close\r\n\r\n%s",
                      status, front_status_title(status), date, strlen(body), request_id,
                      hsts ? "Strict-Transport-Security: " : "", hsts ? FRONT_HSTS : "",
                      hsts ? "\r\n" : "", body);
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
    /* the framing of what follows the head, when the verdict is 0 */
    uint64_t content_length;
    bool chunked;
    bool close; /* the connection ends after this request (Connection: close, or HTTP/1.0
                   without keep-alive): libmicrohttpd reads nothing after it */
};

/* Does the comma-separated list v[0..n) hold the token `tok` (case-insensitive)? */
static bool has_token(const char *v, size_t n, const char *tok) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (ieq(v + a, b - a, tok))
            return true;
        i = j + 1;
    }
    return false;
}

static size_t line_end(const char *p, const char *end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? (size_t)(nl - p) : (size_t)(end - p);
}

/* Checks the block b[0..n) that ends with its empty line (chunk sizes are checked as they pass,
 * chunk_scan). */
static void check_head(const char *b, size_t n, struct head *h) {
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
    bool conn_close = false, keep_alive = false;
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
        if (ieq(p, (size_t)(colon - p), "Connection")) {
            conn_close |= has_token(colon + 1, (size_t)(le - colon - 1), "close");
            keep_alive |= has_token(colon + 1, (size_t)(le - colon - 1), "keep-alive");
        }
        p += ll + 1;
    }
    front_framing_verdict(&f, v);
    if (v->status)
        return;
    if (n + FRONT_POOL_ENTRY * (n_headers + n_query) > FRONT_POOL_BUDGET)
        REFUSE(431, "the request line and headers are too large");
    h->content_length = f.n_cl ? f.cl_value : 0;
    h->chunked = f.n_te > 0;
    h->close = conn_close || (!f.http11 && !keep_alive);
#undef REFUSE
}

/* ---- buffers -----------------------------------------------------------------------------------
 */

static size_t out_pending(const struct outbuf *o) {
    return o->p ? o->n - o->off : 0;
}

static void out_clear(struct outbuf *o) {
    free(o->p);
    *o = (struct outbuf){0};
}

static bool out_add(struct outbuf *o, const char *p, size_t n) {
    if (!n)
        return true;
    size_t have = out_pending(o);
    char *q = malloc(have + n);
    if (!q)
        return false;
    if (have)
        memcpy(q, o->p + o->off, have);
    memcpy(q + have, p, n);
    free(o->p);
    *o = (struct outbuf){.p = q, .off = 0, .n = have + n};
    return true;
}

/* One send to fd, or through t's TLS session when t has one (the client's side): the bytes
 * taken, or -1 with errno (EAGAIN: full). After a TLS send that returned AGAIN, GnuTLS holds the
 * encrypted record: the next call repeats it (NULL, 0) and answers how many of the same leading
 * bytes it took — the caller passes the same bytes again (its buffer starts with them). */
static ssize_t xsend(struct conn *t, int fd, const char *p, size_t n) {
    if (!t || !t->tls)
        return send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    ssize_t r = t->tls_wpend ? gnutls_record_send(t->tls, NULL, 0) : gnutls_record_send(t->tls, p, n);
    if (r >= 0) {
        t->tls_wpend = false;
        return r;
    }
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
        t->tls_wpend = true;
        errno = r == GNUTLS_E_AGAIN ? EAGAIN : EINTR;
        return -1;
    }
    errno = EPIPE;
    return -1;
}

/* Sends what o holds: 1 all of it, 0 the socket is full, -1 the peer is gone. */
static int out_flush(struct outbuf *o, struct conn *t, int fd) {
    while (out_pending(o)) {
        ssize_t w = xsend(t, fd, o->p + o->off, o->n - o->off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        o->off += (size_t)w;
    }
    out_clear(o);
    return 1;
}

/* Sends p[0..n) after whatever o holds; what the socket does not take is kept in o. 0, or -1
 * when the peer is gone (or out of memory). */
static int out_send(struct outbuf *o, struct conn *t, int fd, const char *p, size_t n) {
    size_t off = 0;
    while (!out_pending(o) && off < n) {
        ssize_t w = xsend(t, fd, p + off, n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        off += (size_t)w;
    }
    return out_add(o, p + off, n - off) ? 0 : -1;
}

/* ---- connections -------------------------------------------------------------------------------
 */

#define GONE ((struct conn *)(uintptr_t)8) /* byfd: that connection's client has left */

static void list_add(struct conn **head, struct conn *c) {
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void list_del(struct conn **head, struct conn *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Makes byfd and watch hold index fd (under g->mu). */
static bool fd_tables_fit(struct gate *g, int fd) {
    if ((size_t)fd < g->n_fd)
        return true;
    size_t n = g->n_fd ? g->n_fd : 256;
    while (n <= (size_t)fd)
        n *= 2;
    struct conn **b = realloc(g->byfd, n * sizeof(*b));
    if (!b)
        return false;
    g->byfd = b;
    void **w = realloc(g->watch, n * sizeof(*w));
    if (!w)
        return false;
    g->watch = w;
    memset(g->byfd + g->n_fd, 0, (n - g->n_fd) * sizeof(*b));
    memset(g->watch + g->n_fd, 0, (n - g->n_fd) * sizeof(*w));
    g->n_fd = n;
    return true;
}

/* The client left: a suspended stream on this connection is told at once (item 24). */
static void mark_gone(struct gate *g, struct conn *c) {
    pthread_mutex_lock(&g->mu);
    if (c->mhd_fd >= 0 && g->byfd[c->mhd_fd] == c) {
        c->gone = true;
        if (g->watch[c->mhd_fd])
            g->cfg.on_hangup(g->watch[c->mhd_fd]);
    }
    pthread_mutex_unlock(&g->mu);
}

/* The connection no longer answers to libmicrohttpd's descriptor. */
static void detach(struct gate *g, struct conn *c) {
    if (c->mhd_fd < 0)
        return;
    pthread_mutex_lock(&g->mu);
    if (g->byfd[c->mhd_fd] == c)
        g->byfd[c->mhd_fd] = GONE;
    pthread_mutex_unlock(&g->mu);
    c->mhd_fd = -1;
}

/* Closes both sockets; the memory goes after the current batch of events (which may still name
 * the connection). */
static void conn_close(struct gate *g, struct conn *c) {
    if (c->dead)
        return;
    c->dead = true;
    list_del(&g->conns, c);
    g->n_conns--;
    list_add(&g->graveyard, c);
    if (c->up >= 0) {
        close(c->up); /* libmicrohttpd reads EOF, or its next write fails */
        c->up = -1;
    }
    close(c->fd); /* also leaves the epoll set */
    mark_gone(g, c);
    detach(g, c);
}

static void conn_free(struct conn *c) {
    if (c->tls)
        gnutls_deinit(c->tls);
    out_clear(&c->to_up);
    out_clear(&c->to_client);
    free(c->hb);
    free(c->ref);
    free(c);
}

static void log_refused(const char *method, const char *path, const char *rid, int status,
                        const char *why) {
    if (!log_enabled(LOG_INFO))
        return;
    json_t *f = json_pack("{s:s, s:i, s:s, s:s}", "id", rid, "status", status, "refused", why,
                          "component", "http");
    if (f && method && method[0])
        json_object_set_new(f, "method", json_string(method));
    if (f && path && path[0] && front_utf8_ok(path, strlen(path)))
        json_object_set_new(f, "path", json_string(path));
    log_json(LOG_INFO, "request", f);
    json_decref(f);
}

static void linger(struct gate *g, struct conn *c);

/* libmicrohttpd is done (or never had the connection): what is left for the client goes out,
 * then the gate closes its side and reads and drops what the client still sends, for a while —
 * closing with unread bytes would reset the connection and destroy the answer before the client
 * reads it. */
static void begin_linger(struct gate *g, struct conn *c) {
    if (c->up >= 0) {
        close(c->up);
        c->up = -1;
    }
    detach(g, c);
    c->lingering = true;
    c->dropped = 0;
    c->deadline = time_mono_ms() + LINGER_MS;
    linger(g, c);
}

/* Writes the problem answer after everything the client was sent already, and lingers. */
static void answer(struct gate *g, struct conn *c, const char *method, const char *path, int status,
                   const char *detail) {
    char rid[ULID_LEN + 1] = "0";
    ulid_new(rid);
    size_t len = 0;
    char *resp = problem_response(status, detail, path && path[0] ? path : NULL, rid,
                                  c->tls != NULL, &len);
    log_refused(method, path, rid, status, detail);
    obs_add(m_refused, 0, 1);
    if (!resp || out_send(&c->to_client, c, c->fd, resp, len) < 0) {
        free(resp);
        conn_close(g, c);
        return;
    }
    free(resp);
    begin_linger(g, c);
}

/* A request is refused. Before libmicrohttpd had the connection the answer goes at once;
 * afterwards it goes when libmicrohttpd has answered the requests before this one (the pump
 * shuts the socketpair, so libmicrohttpd reads EOF after them and closes). */
static void refuse(struct gate *g, struct conn *c, const struct head *h, int status,
                   const char *detail) {
    if (c->ref || c->lingering || c->dead)
        return;
    if (c->up < 0) {
        answer(g, c, h ? h->method : NULL, h ? h->path : NULL, status, detail);
        return;
    }
    if (!(c->ref = calloc(1, sizeof(*c->ref)))) {
        conn_close(g, c);
        return;
    }
    c->ref->status = status;
    snprintf(c->ref->detail, sizeof(c->ref->detail), "%s", detail);
    if (h) {
        snprintf(c->ref->method, sizeof(c->ref->method), "%s", h->method);
        snprintf(c->ref->path, sizeof(c->ref->path), "%s", h->path);
    }
    c->deadline = 0;
}

static void refusef(struct gate *g, struct conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void refusef(struct gate *g, struct conn *c, int status, const char *fmt, ...) {
    char detail[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    refuse(g, c, NULL, status, detail);
}

/* Passes checked bytes on to libmicrohttpd. */
static void forward(struct conn *c, const char *p, size_t n) {
    if (c->up_shut || !n)
        return; /* libmicrohttpd stopped reading: nothing it could use */
    if (out_send(&c->to_up, NULL, c->up, p, n) < 0) {
        out_clear(&c->to_up);
        c->up_shut = true;
    }
}

/* Gives a checked connection to libmicrohttpd, through a socketpair. false when it was refused
 * instead (503). */
static bool hand_over(struct gate *g, struct conn *c) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        answer(g, c, NULL, NULL, 503, "the server is out of file descriptors; try again later");
        return false;
    }
    pthread_mutex_lock(&g->mu);
    bool ok = fd_tables_fit(g, sv[1]);
    if (ok) {
        struct conn *old = g->byfd[sv[1]];
        if (old && old != GONE)
            old->mhd_fd = -1; /* its descriptor was closed by libmicrohttpd: the number is reused */
        g->byfd[sv[1]] = c;
    }
    pthread_mutex_unlock(&g->mu);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)(uintptr_t)c | SIDE_UP};
    if (!ok || epoll_ctl(g->epfd, EPOLL_CTL_ADD, sv[0], &ev) < 0) {
        if (ok) {
            pthread_mutex_lock(&g->mu);
            g->byfd[sv[1]] = NULL;
            pthread_mutex_unlock(&g->mu);
        }
        close(sv[0]);
        close(sv[1]);
        answer(g, c, NULL, NULL, 503, "the server is out of memory; try again later");
        return false;
    }
    c->up = sv[0];
    c->mhd_fd = sv[1];
    /* libmicrohttpd closes sv[1] itself when it cannot take it */
    /* the client's address, so MHD_CONNECTION_INFO_CLIENT_ADDRESS stays true (libmicrohttpd
     * then tries TCP options on the socketpair; they fail harmlessly) */
    if (MHD_add_connection(g->cfg.daemon, sv[1], (const struct sockaddr *)&c->addr, c->alen) !=
        MHD_YES) {
        detach(g, c);
        close(c->up);
        c->up = -1;
        answer(g, c, NULL, NULL, 503, "the server has too many connections; try again later");
        return false;
    }
    return true;
}

static void request_done(struct conn *c, bool close_after) {
    c->rs = close_after ? R_DISCARD : R_HEAD;
}

/* The end of a header block in b[0..n) (an empty line, CRLF or a bare LF as libmicrohttpd
 * takes), searching from `from`; 0 when it is not there yet. */
static size_t head_end(const char *b, size_t n, size_t from) {
    for (size_t i = from > 2 ? from - 2 : 0; i + 1 < n; i++) {
        if (b[i] != '\n')
            continue;
        if (b[i + 1] == '\n')
            return i + 2;
        if (b[i + 1] == '\r' && i + 2 < n && b[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* The value of header `name` in the checked block b[0..n) (first occurrence, trimmed), copied
 * into out; false when absent or longer than out. */
static bool head_value(const char *b, size_t n, const char *name, char *out, size_t outn) {
    const char *p = b, *end = b + n;
    p += line_end(p, end) + 1; /* the request line */
    size_t nl = strlen(name);
    while (p < end) {
        size_t ll = line_end(p, end);
        const char *le = p + ll;
        if (ll && le[-1] == '\r')
            le--;
        if (le == p)
            break;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon && ieq(p, (size_t)(colon - p), name) && nl == (size_t)(colon - p)) {
            const char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t'))
                v++;
            while (le > v && (le[-1] == ' ' || le[-1] == '\t'))
                le--;
            if ((size_t)(le - v) >= outn)
                return false;
            memcpy(out, v, (size_t)(le - v));
            out[le - v] = '\0';
            return true;
        }
        p += ll + 1;
    }
    return false;
}

/* A CONNECT (issue 16 item 7): the connection becomes a tunnel. Its other end is a socketpair
 * given to the connect hook, which answers on it and then carries the tunnelled bytes; the gate
 * copies both ways as it does for libmicrohttpd, with the same bounded buffers (a slow side
 * pushes back on the other), and nothing on this connection is parsed as HTTP again. false
 * when it was refused instead (answered). */
static bool tunnel_over(struct gate *g, struct conn *c, const struct head *h, const char *b,
                        size_t bn) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        answer(g, c, h->method, h->path, 503, "the server is out of file descriptors");
        return false;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)(uintptr_t)c | SIDE_UP};
    if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, sv[0], &ev) < 0) {
        close(sv[0]);
        close(sv[1]);
        answer(g, c, h->method, h->path, 503, "the server is out of memory");
        return false;
    }
    c->up = sv[0];
    c->mhd_fd = -1;
    c->rs = R_TUNNEL;
    /* the target as sent (h->path stops at '?', which an authority never holds) */
    const char *t = memchr(b, ' ', bn);
    const char *te = t ? memchr(t + 1, ' ', bn - (size_t)(t + 1 - b)) : NULL;
    char authority[256] = "";
    if (t && te && (size_t)(te - t - 1) < sizeof(authority)) {
        memcpy(authority, t + 1, (size_t)(te - t - 1));
        authority[te - t - 1] = '\0';
    }
    char auth[4096];
    bool has_auth = head_value(b, bn, "Proxy-Authorization", auth, sizeof(auth));
    char peer[80] = "";
    char host[INET6_ADDRSTRLEN] = "";
    if (c->addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&c->addr;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        snprintf(peer, sizeof(peer), "%s:%d", host, ntohs(a->sin_port));
    } else if (c->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&c->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        snprintf(peer, sizeof(peer), "[%s]:%d", host, ntohs(a->sin6_port));
    }
    char rid[ULID_LEN + 1] = "0";
    ulid_new(rid);
    struct http_connect_request rq = {.authority = authority,
                                      .proxy_auth = has_auth ? auth : NULL,
                                      .peer = peer,
                                      .request_id = rid,
                                      .tls = c->tls != NULL};
    g->cfg.connect->open(g->cfg.connect->arg, &rq, sv[1]);
    explicit_bzero(auth, sizeof(auth));
    return true;
}

/* Consumes the bytes of a header block from p[0..n); a complete block is checked and passed on
 * (or refused). Returns the bytes consumed. */
static size_t head_feed(struct gate *g, struct conn *c, const char *p, size_t n) {
    size_t skipped = 0;
    if (!c->hn) { /* RFC 9112 §2.2: empty lines before a request are ignored */
        while (skipped < n && (p[skipped] == '\r' || p[skipped] == '\n'))
            skipped++;
        p += skipped;
        n -= skipped;
        if (!n)
            return skipped;
        unsigned char c0 = (unsigned char)p[0];
        if (c0 == 0x16) {
            refusef(g, c, 400, "this port speaks plain HTTP, not TLS");
            return skipped + n;
        }
        if (!is_tchar(c0)) {
            refusef(g, c, 400, "this is not an HTTP request");
            return skipped + n;
        }
    }
    const char *b;
    size_t bn, used;
    size_t end = c->hn ? 0 : head_end(p, n < FRONT_MAX_HEAD ? n : FRONT_MAX_HEAD, 0);
    if (end) { /* the whole block in this read: checked where it is */
        b = p;
        bn = used = end;
    } else {
        if (!c->hb && !(c->hb = malloc(FRONT_MAX_HEAD))) {
            conn_close(g, c);
            return skipped + n;
        }
        size_t old = c->hn, k = n < FRONT_MAX_HEAD - old ? n : FRONT_MAX_HEAD - old;
        memcpy(c->hb + old, p, k);
        end = head_end(c->hb, old + k, old);
        if (!end) {
            c->hn = (uint32_t)(old + k);
            if (!old && c->up >= 0)
                c->deadline = time_mono_ms() + g->cfg.idle_ms;
            if (c->hn >= FRONT_MAX_HEAD) {
                bool has_line = memchr(c->hb, '\n', c->hn) != NULL;
                refusef(g, c, has_line ? 431 : 414, "%s",
                        has_line ? "the request headers are larger than 8 KiB"
                                 : "the request line is longer than 8 KiB");
                return skipped + n;
            }
            return skipped + k;
        }
        b = c->hb;
        bn = end;
        used = end - old;
    }
    struct head h = {0};
    check_head(b, bn, &h);
    if (h.v.status) {
        refuse(g, c, &h, h.v.status, h.v.detail);
        return skipped + n;
    }
    if (g->cfg.connect && strcmp(h.method, "CONNECT") == 0) {
        if (c->up >= 0) {
            refuse(g, c, &h, 400, "CONNECT must be the first request on a connection");
            return skipped + n;
        }
        bool ok = tunnel_over(g, c, &h, b, bn);
        free(c->hb);
        c->hb = NULL;
        c->hn = 0;
        c->deadline = 0; /* a tunnel may stay quiet as long as its ends like */
        return ok ? skipped + used : skipped + n;
    }
    if (c->up < 0 && !hand_over(g, c))
        return skipped + n;
    forward(c, b, bn);
    c->heads++;
    free(c->hb);
    c->hb = NULL;
    c->hn = 0;
    c->deadline = 0;
    if (h.chunked) {
        c->rs = R_CSIZE;
        c->left = 0;
        c->digits = 0;
        c->line = 0;
    } else if (h.content_length) {
        c->rs = R_LENGTH;
        c->left = h.content_length;
    } else {
        request_done(c, h.close);
    }
    c->close_after = h.close;
    return skipped + used;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)(ch | 0x20);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

#define VERDICT(st, ...) (v->status = (st), snprintf(v->detail, sizeof(v->detail), __VA_ARGS__))

/* Follows a chunked body over p[0..n). Returns how many bytes may go on: all of them, or those
 * before the end of the body or before a refusal (then in *v). Pure: no I/O. */
static size_t chunk_scan(size_t max_chunk, struct conn *c, const char *p, size_t n,
                         struct front_verdict *v) {
    size_t i = 0;
    while (i < n) {
        switch (c->rs) {
        case R_CDATA: {
            size_t k = n - i < c->left ? n - i : (size_t)c->left;
            i += k;
            c->left -= k;
            if (!c->left) {
                c->rs = R_CDATA_END;
                c->line = 0;
            }
            break;
        }
        case R_CDATA_END:
            if (p[i] == '\r' && !c->line) {
                c->line = 1;
                i++;
            } else if (p[i] == '\n') {
                c->rs = R_CSIZE;
                c->left = 0;
                c->digits = 0;
                c->line = 0;
                i++;
            } else {
                VERDICT(400, "a chunk's data is not followed by CRLF");
                return i;
            }
            break;
        case R_CSIZE: {
            int d = hexval(p[i]);
            if (d >= 0) {
                /* 15 hex digits hold any size we could take; more would overflow libmicrohttpd */
                if (++c->digits > 15) {
                    VERDICT(400, "a chunk size does not fit in 60 bits");
                    return i;
                }
                c->left = c->left * 16 + (unsigned)d;
                c->line++;
                i++;
                break;
            }
            if (!c->digits) {
                VERDICT(400, "a chunk does not start with its size in hexadecimal");
                return i;
            }
            if (p[i] != ';' && p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') {
                VERDICT(400, "a chunk size is not followed by CRLF or an extension");
                return i;
            }
            if (c->left > max_chunk) {
                VERDICT(413, "a chunk of %llu bytes is larger than the body limit of %zu bytes",
                        (unsigned long long)c->left, max_chunk);
                return i;
            }
            c->rs = R_CEXT;
            break;
        }
        case R_CEXT:
            if (++c->line > CHUNK_LINE_MAX) {
                VERDICT(400, "a chunk-size line is longer than %d bytes", CHUNK_LINE_MAX);
                return i;
            }
            if (p[i++] != '\n')
                break;
            if (c->left) {
                c->rs = R_CDATA;
            } else { /* the last chunk: trailers up to an empty line */
                c->rs = R_TRAILER;
                c->line = 0;
                c->left = 0; /* the trailer section's size */
            }
            break;
        case R_TRAILER: {
            char ch = p[i++];
            if (++c->left > TRAILER_MAX) {
                VERDICT(431, "the trailer section is larger than %d bytes", TRAILER_MAX);
                return i - 1;
            }
            if (ch == '\n') {
                if (!c->line) {
                    request_done(c, c->close_after);
                    return i;
                }
                c->line = 0;
            } else if (ch != '\r') {
                c->line++;
            }
            break;
        }
        default: return i;
        }
    }
    return i;
}

/* Passes the client's bytes p[0..n) on, request by request, checking each header block and
 * following each body's framing to find the next one. */
static void feed(struct gate *g, struct conn *c, const char *p, size_t n) {
    while (n && !c->ref && !c->lingering && !c->dead) {
        size_t k;
        switch (c->rs) {
        case R_DISCARD: /* after a request that closes the connection: nothing more is read */
            c->dropped += n;
            return;
        case R_HEAD: k = head_feed(g, c, p, n); break;
        case R_TUNNEL: /* a CONNECT's bytes: not HTTP, passed on as they are */
            forward(c, p, n);
            k = n;
            break;
        case R_LENGTH:
            k = n < c->left ? n : (size_t)c->left;
            forward(c, p, k);
            c->left -= k;
            if (!c->left)
                request_done(c, c->close_after);
            break;
        default: {
            struct front_verdict v = {0};
            k = chunk_scan(g->cfg.max_chunk, c, p, n, &v);
            forward(c, p, k);
            if (v.status)
                refuse(g, c, NULL, v.status, v.detail);
            break;
        }
        }
        p += k;
        n -= k;
    }
    c->dropped += n;
}

int front_judge_peek(const char *b, size_t n, size_t max_chunk, struct front_verdict *ret) {
    struct front_verdict *v = ret;
    memset(v, 0, sizeof(*v));
    if (n > FRONT_MAX_HEAD)
        n = FRONT_MAX_HEAD;
    size_t skip = 0;
    while (skip < n && (b[skip] == '\r' || b[skip] == '\n'))
        skip++;
    b += skip;
    n -= skip;
    if (!n)
        return 0;
    if ((unsigned char)b[0] == 0x16)
        return VERDICT(400, "this port speaks plain HTTP, not TLS"), 1;
    if (!is_tchar((unsigned char)b[0]))
        return VERDICT(400, "this is not an HTTP request"), 1;
    size_t end = head_end(b, n, 0);
    if (!end) {
        if (n + skip < FRONT_MAX_HEAD)
            return 0;
        bool has_line = memchr(b, '\n', n) != NULL;
        if (has_line)
            VERDICT(431, "the request headers are larger than 8 KiB");
        else
            VERDICT(414, "the request line is longer than 8 KiB");
        return 1;
    }
    struct head h = {0};
    check_head(b, end, &h);
    *v = h.v;
    if (!v->status && h.chunked) { /* what follows of the body, as the gate follows it */
        struct conn c = {.rs = R_CSIZE};
        chunk_scan(max_chunk, &c, b + end, n - end, v);
    }
    return 2;
}

static void linger(struct gate *g, struct conn *c) {
    int r = out_flush(&c->to_client, c, c->fd);
    if (r < 0) {
        conn_close(g, c);
        return;
    }
    if (r == 0)
        return; /* the rest when the client reads */
    if (c->client_eof || __atomic_load_n(&g->exiting, __ATOMIC_ACQUIRE)) {
        conn_close(g, c);
        return;
    }
    if (!c->wr_shut) {
        if (c->tls) /* close_notify, best effort: what follows is read raw and dropped */
            gnutls_bye(c->tls, GNUTLS_SHUT_WR);
        shutdown(c->fd, SHUT_WR);
        c->wr_shut = true;
    }
    for (;;) {
        ssize_t n = recv(c->fd, g->buf, sizeof(g->buf), MSG_DONTWAIT);
        if (n > 0) {
            c->dropped += (size_t)n;
            if (c->dropped > LINGER_BYTES)
                break;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        break; /* EOF or error: done */
    }
    conn_close(g, c);
}

/* Moves bytes both ways until neither side has more or a destination is full. Called on any event
 * of either socket (edge-triggered: every path ends at EAGAIN or waits for the other side). */
static void want_out(struct gate *g, struct conn *c, bool up, bool on) {
    bool *state = up ? &c->up_out : &c->client_out;
    int fd = up ? c->up : c->fd;
    if (*state == on || fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (on ? EPOLLOUT : 0),
                             .data.u64 = (uint64_t)(uintptr_t)c | (up ? SIDE_UP : 0)};
    if (epoll_ctl(g->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
        *state = on;
}

/* ---- TLS --------------------------------------------------------------------------------------
 */

int gate_tls_load(const char *cert_path, const char *key_path, struct gate_tls **ret, char *err,
                  size_t err_len) {
    const char *paths[] = {cert_path, key_path};
    for (size_t i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "re");
        if (!f) {
            snprintf(err, err_len, "cannot read the TLS %s %s: %s", i ? "key" : "certificate",
                     paths[i], strerror(errno));
            return AH_E_INVAL;
        }
        fclose(f);
    }
    struct gate_tls *t = calloc(1, sizeof(*t));
    if (!t || gnutls_certificate_allocate_credentials(&t->creds) < 0) {
        free(t);
        snprintf(err, err_len, "out of memory");
        return AH_E_NOMEM;
    }
    int r = gnutls_certificate_set_x509_key_file2(t->creds, cert_path, key_path,
                                                  GNUTLS_X509_FMT_PEM, NULL, 0);
    if (r < 0) {
        snprintf(err, err_len,
                 "cannot use the TLS certificate %s with the key %s (PEM, an unencrypted key "
                 "that matches the certificate): %s",
                 cert_path, key_path, gnutls_strerror(r));
        gnutls_certificate_free_credentials(t->creds);
        free(t);
        return AH_E_INVAL;
    }
    if ((r = gnutls_priority_init(&t->prio, TLS_PRIORITY, NULL)) < 0) {
        snprintf(err, err_len, "cannot set up TLS: %s", gnutls_strerror(r));
        gnutls_certificate_free_credentials(t->creds);
        free(t);
        return AH_E_IO;
    }
    *ret = t;
    return 0;
}

void gate_tls_free(struct gate_tls *t) {
    if (!t)
        return;
    gnutls_priority_deinit(t->prio);
    gnutls_certificate_free_credentials(t->creds);
    free(t);
}

/* The session's transport is the connection's socket, read and written without blocking (and
 * without SIGPIPE); the handshake's bytes are counted for its cap. */
static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *buf, size_t n) {
    struct conn *c = ptr;
    ssize_t r = recv(c->fd, buf, n, MSG_DONTWAIT);
    if (r < 0)
        gnutls_transport_set_errno(c->tls, errno);
    else if (c->hs)
        c->hs_bytes += (size_t)r;
    return r;
}

static ssize_t tls_push(gnutls_transport_ptr_t ptr, const void *buf, size_t n) {
    struct conn *c = ptr;
    ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r < 0)
        gnutls_transport_set_errno(c->tls, errno);
    return r;
}

/* Not called for a non-blocking TLS session; GnuTLS asks for it beside a custom pull. */
static int tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms) {
    struct conn *c = ptr;
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    (void)ms;
    return poll(&pfd, 1, 0);
}

static bool tls_begin(struct gate *g, struct conn *c) {
    static const gnutls_datum_t alpn = {(unsigned char *)"http/1.1", 8};
    if (gnutls_init(&c->tls, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL) < 0) {
        c->tls = NULL;
        return false;
    }
    if (gnutls_priority_set(c->tls, g->cfg.tls->prio) < 0 ||
        gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, g->cfg.tls->creds) < 0)
        return false;
    gnutls_alpn_set_protocols(c->tls, &alpn, 1, 0); /* no h2: this server speaks HTTP/1.1 */
    gnutls_transport_set_ptr(c->tls, c);
    gnutls_transport_set_pull_function(c->tls, tls_pull);
    gnutls_transport_set_push_function(c->tls, tls_push);
    gnutls_transport_set_pull_timeout_function(c->tls, tls_pull_timeout);
    c->hs = true;
    int64_t hs_ms = g->cfg.idle_ms < TLS_HS_MS ? g->cfg.idle_ms : TLS_HS_MS;
    c->deadline = time_mono_ms() + hs_ms; /* on_tick closes it without a word after that */
    return true;
}

/* Moves the handshake on: 1 done (the client's request may follow), 0 waiting for the client,
 * -1 the connection was closed or answered. Plain HTTP sent to the TLS port gets a plain 400
 * saying so (as nginx does) instead of a handshake failure the client cannot read. */
static int tls_step(struct gate *g, struct conn *c) {
    if (!c->hs_started) {
        unsigned char b;
        ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        if (n <= 0) {
            conn_close(g, c);
            return -1;
        }
        if (b != 0x16) { /* not a TLS handshake record */
            gnutls_deinit(c->tls);
            c->tls = NULL;
            c->hs = false;
            if (is_tchar(b))
                answer(g, c, NULL, NULL, 400,
                       "this port speaks HTTPS: use an https:// URL");
            else
                conn_close(g, c);
            return -1;
        }
        c->hs_started = true;
    }
    int r = gnutls_handshake(c->tls);
    if (c->hs_bytes > TLS_HS_MAX) {
        conn_close(g, c);
        return -1;
    }
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
        c->tls_wantw = gnutls_record_get_direction(c->tls) == 1;
        return 0;
    }
    c->tls_wantw = false;
    if (r < 0) { /* a failed handshake: GnuTLS sent its alert; nothing for HTTP to say */
        if (log_enabled(LOG_DEBUG)) {
            json_t *f = json_pack("{s:s, s:s}", "error", gnutls_strerror(r), "component", "http");
            log_json(LOG_DEBUG, "TLS handshake failed", f);
            json_decref(f);
        }
        conn_close(g, c);
        return -1;
    }
    c->hs = false;
    c->client_rd = true; /* the request may have come with the handshake's last flight */
    c->deadline = time_mono_ms() + g->cfg.idle_ms;
    return 1;
}

/* Reads from the client: bytes, 0 at its end (with or without close_notify), -1 with errno
 * (EAGAIN: nothing now). */
static ssize_t client_recv(struct conn *c, char *buf, size_t n) {
    if (!c->tls)
        return recv(c->fd, buf, n, MSG_DONTWAIT);
    for (int i = 0; i < 16; i++) {
        ssize_t r = gnutls_record_recv(c->tls, buf, n);
        if (r >= 0)
            return r;
        if (r == GNUTLS_E_AGAIN) {
            errno = EAGAIN;
            return -1;
        }
        if (r == GNUTLS_E_PREMATURE_TERMINATION)
            return 0;
        if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_WARNING_ALERT_RECEIVED)
            continue;
        break; /* a fatal alert, a renegotiation (refused) or garbage */
    }
    errno = ECONNRESET;
    return -1;
}

static void pump_io(struct gate *g, struct conn *c);

/* Moves what can be moved, then asks for EPOLLOUT where a buffer still waits. */
static void pump(struct gate *g, struct conn *c) {
    pump_io(g, c);
    if (c->dead)
        return;
    want_out(g, c, false, out_pending(&c->to_client) > 0 || c->tls_wantw);
    want_out(g, c, true, out_pending(&c->to_up) > 0);
}

static void pump_io(struct gate *g, struct conn *c) {
    if (c->dead)
        return;
    if (c->lingering) {
        linger(g, c);
        return;
    }
    if (c->hs && tls_step(g, c) <= 0)
        return;
    /* client → libmicrohttpd */
    for (;;) {
        if (c->up >= 0 && out_pending(&c->to_up)) {
            int r = out_flush(&c->to_up, NULL, c->up);
            if (r < 0) { /* libmicrohttpd closed its end */
                out_clear(&c->to_up);
                c->up_shut = true;
            } else if (r == 0) {
                break;
            }
        }
        if (c->client_eof || !c->client_rd)
            break;
        bool dropping = c->ref || c->rs == R_DISCARD || c->up_shut;
        if (dropping && c->dropped > LINGER_BYTES)
            break; /* enough: the client waits until the answer is out */
        ssize_t n = client_recv(c, g->buf, IO_MAX);
        if (n == 0) {
            c->client_eof = true;
            break;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->client_rd = false;
                break;
            }
            conn_close(g, c);
            return;
        }
        if ((size_t)n < IO_MAX && !c->client_hup && !c->tls)
            c->client_rd = false; /* a short read emptied the socket: the next bytes are an edge
                                     (not so under TLS: a read ends with a record) */
        if (dropping)
            c->dropped += (size_t)n;
        else
            feed(g, c, g->buf, (size_t)n);
        if (c->dead || c->lingering)
            return;
    }
    if (c->up < 0) { /* still waiting for the first request */
        if (c->client_eof)
            conn_close(g, c);
        return;
    }
    /* Nothing more will go to libmicrohttpd. Between requests it reads EOF after the ones it
     * has, answers them and closes. Inside a body (cut) EOF would leave libmicrohttpd 0.9.75
     * waiting for the rest until its timeout, so once it has begun that request — every answer
     * before it is then written — the socketpair is closed outright, which it takes as an
     * error and drops the request. */
    bool cut = (c->client_eof || c->ref) && c->rs != R_HEAD && c->rs != R_DISCARD &&
               c->rs != R_TUNNEL;
    if ((c->client_eof || c->ref) && !cut && !c->up_shut && !out_pending(&c->to_up)) {
        shutdown(c->up, SHUT_WR);
        c->up_shut = true;
    }
    if (c->client_eof && !c->gone)
        mark_gone(g, c);
    /* read before draining: every answer before request `started` is in the socketpair then */
    uint32_t started = __atomic_load_n(&c->started, __ATOMIC_ACQUIRE);
    /* Before a cut closes the socketpair, every answer already in it must be read, whether or not
     * its readiness event has come yet: closing first would drop them, and the client would get
     * the refusal in place of an answer to a good request before it. */
    bool closing = cut && started >= c->heads, drained = false;
    /* libmicrohttpd → client */
    for (;;) {
        if (out_pending(&c->to_client)) {
            int r = out_flush(&c->to_client, c, c->fd);
            if (r < 0) {
                conn_close(g, c);
                return;
            }
            if (r == 0)
                break;
        }
        if (c->up_eof || (!c->up_rd && !closing))
            break;
        ssize_t n = recv(c->up, g->buf, IO_MAX, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->up_rd = false;
            drained = true;
            break;
        }
        if (n <= 0) {
            c->up_eof = true;
            break;
        }
        if ((size_t)n < IO_MAX && !c->up_hup)
            c->up_rd = false;
        if (out_send(&c->to_client, c, c->fd, g->buf, (size_t)n) < 0) {
            conn_close(g, c);
            return;
        }
    }
    if (closing && drained && !c->up_eof && !out_pending(&c->to_up)) {
        close(c->up); /* libmicrohttpd sees a hang-up and drops the request */
        c->up = -1;
        c->up_eof = true;
    }
    if (!c->up_eof || out_pending(&c->to_client))
        return;
    /* libmicrohttpd has closed the connection and everything it wrote is out */
    if (!c->ref && c->rs == R_HEAD && c->hn) {
        char detail[96];
        snprintf(detail, sizeof(detail), "the request headers did not arrive within %u ms",
                 g->cfg.idle_ms);
        refuse(g, c, NULL, 408, detail);
    }
    if (c->ref) {
        struct refusal *r = c->ref;
        c->ref = NULL;
        answer(g, c, r->method, r->path, r->status, r->detail);
        free(r);
        return;
    }
    if (c->client_eof)
        conn_close(g, c);
    else
        begin_linger(g, c);
}

/* ---- accept -------------------------------------------------------------------------------- */

static void listen_arm(struct gate *g, bool on) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    epoll_ctl(g->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, g->cfg.listen_fd, &ev);
    g->accept_paused = !on;
}

static void on_accept(struct gate *g) {
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct conn *c = calloc(1, sizeof(*c));
        if (!c)
            return;
        c->alen = sizeof(c->addr);
        c->fd = accept4(g->cfg.listen_fd, (struct sockaddr *)&c->addr, &c->alen,
                        SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c->fd < 0) {
            int err = errno;
            free(c);
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
        if (g->cfg.direct) { /* the benchmarks' baseline: libmicrohttpd alone */
            MHD_add_connection(g->cfg.daemon, c->fd, (const struct sockaddr *)&c->addr, c->alen);
            free(c);
            continue;
        }
        /* the gate forwards answers as libmicrohttpd writes them (head and body may be two
         * writes): Nagle would hold the second until the client's delayed ACK */
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->up = c->mhd_fd = -1;
        c->rs = R_HEAD;
        c->deadline = time_mono_ms() + g->cfg.idle_ms;
        list_add(&g->conns, c);
        g->n_conns++;
        if (g->cfg.tls && !tls_begin(g, c)) {
            conn_close(g, c);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                                 .data.u64 = (uint64_t)(uintptr_t)c};
        if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            conn_close(g, c);
    }
}

static void on_tick(struct gate *g) {
    uint64_t n;
    while (read(g->tfd, &n, sizeof(n)) > 0)
        ;
    if (g->accept_paused && g->accepting)
        listen_arm(g, true);
    int64_t now = time_mono_ms();
    for (struct conn *c = g->conns, *next; c; c = next) {
        next = c->next;
        if (c->up >= 0 && !c->lingering && (c->ref || c->client_eof) && c->rs != R_HEAD &&
            c->rs != R_DISCARD && c->rs != R_TUNNEL) {
            pump(g, c); /* a cut request: has libmicrohttpd begun it yet? */
            continue;
        }
        if (!c->deadline || now < c->deadline)
            continue;
        c->deadline = 0;
        if (c->lingering) {
            conn_close(g, c);
        } else if (c->up < 0 && !c->hn) {
            conn_close(g, c); /* nothing at all was sent: closed without a word */
        } else if (c->rs == R_HEAD && c->hn) {
            char detail[96];
            snprintf(detail, sizeof(detail), "the request headers did not arrive within %u ms",
                     g->cfg.idle_ms);
            refuse(g, c, NULL, 408, detail);
            pump(g, c);
        }
    }
}

/* ---- watches of suspended connections -------------------------------------------------------- */

int gate_watch(struct gate *g, int fd, void *key) {
    if (fd < 0)
        return AH_E_INVAL;
    pthread_mutex_lock(&g->mu);
    struct conn *c = (size_t)fd < g->n_fd ? g->byfd[fd] : NULL;
    if (!c) { /* not a descriptor the gate gave libmicrohttpd */
        pthread_mutex_unlock(&g->mu);
        return AH_E_NOTFOUND;
    }
    g->watch[fd] = key;
    if (c == GONE || c->gone) /* the client left before the stream asked */
        g->cfg.on_hangup(key);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

void gate_request_started(struct gate *g, int fd) {
    if (!g || fd < 0)
        return;
    pthread_mutex_lock(&g->mu);
    struct conn *c = (size_t)fd < g->n_fd ? g->byfd[fd] : NULL;
    if (c && c != GONE)
        __atomic_add_fetch(&c->started, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g->mu);
}

void gate_unwatch(struct gate *g, int fd, void *key) {
    if (fd < 0)
        return;
    pthread_mutex_lock(&g->mu);
    if ((size_t)fd < g->n_fd && g->watch[fd] == key)
        g->watch[fd] = NULL;
    pthread_mutex_unlock(&g->mu);
}

/* ---- the thread --------------------------------------------------------------------------------
 */

static void on_stop(struct gate *g) {
    uint64_t n;
    while (read(g->efd, &n, sizeof(n)) > 0)
        ;
    if (g->accepting && __atomic_load_n(&g->stopping, __ATOMIC_ACQUIRE)) {
        if (!g->accept_paused)
            epoll_ctl(g->epfd, EPOLL_CTL_DEL, g->cfg.listen_fd, NULL);
        g->accepting = false;
        for (struct conn *c = g->conns, *next; c; c = next) {
            next = c->next;
            if (c->up < 0 && !c->lingering)
                conn_close(g, c); /* still waiting for a first request */
        }
        pthread_mutex_lock(&g->mu);
        g->stopped = true;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
    }
}

static void free_graveyard(struct gate *g) {
    while (g->graveyard) {
        struct conn *c = g->graveyard;
        list_del(&g->graveyard, c);
        conn_free(c);
    }
}

static void *gate_main(void *arg) {
    struct gate *g = arg;
    int64_t drain_until = 0;
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(g->epfd, evs, 64, drain_until ? 50 : -1);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            if (d == TAG_STOP)
                on_stop(g);
            else if (d == TAG_LISTEN)
                on_accept(g);
            else if (d == TAG_TIMER)
                on_tick(g);
            else {
                struct conn *c = (struct conn *)(uintptr_t)(d & ~(uint64_t)7);
                uint32_t e = evs[i].events;
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    *(d & SIDE_UP ? &c->up_rd : &c->client_rd) = true;
                if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    *(d & SIDE_UP ? &c->up_hup : &c->client_hup) = true;
                pump(g, c);
            }
        }
        free_graveyard(g);
        if (__atomic_load_n(&g->exiting, __ATOMIC_ACQUIRE)) {
            /* gate_free: libmicrohttpd has stopped; what it wrote last still reaches clients */
            if (!drain_until) {
                drain_until = time_mono_ms() + DRAIN_MS;
                for (struct conn *c = g->conns, *next; c; c = next) {
                    next = c->next;
                    pump(g, c);
                }
                free_graveyard(g);
            }
            if (!g->conns || time_mono_ms() >= drain_until)
                break;
        }
    }
    while (g->conns)
        conn_close(g, g->conns);
    free_graveyard(g);
    return NULL;
}

int gate_start(const struct gate_config *cfg, struct gate **ret) {
    struct gate *g = calloc(1, sizeof(*g));
    if (!g)
        return AH_E_NOMEM;
    g->cfg = *cfg;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
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
    g->accepting = true;
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

static void poke(struct gate *g) {
    uint64_t one = 1;
    if (write(g->efd, &one, sizeof(one)) < 0) {
        /* cannot fail on our eventfd */
    }
}

void gate_stop(struct gate *g) {
    if (!g || !g->running)
        return;
    __atomic_store_n(&g->stopping, true, __ATOMIC_RELEASE);
    poke(g);
    pthread_mutex_lock(&g->mu);
    while (!g->stopped)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

void gate_free(struct gate *g) {
    if (!g)
        return;
    if (g->running) {
        gate_stop(g);
        __atomic_store_n(&g->exiting, true, __ATOMIC_RELEASE);
        poke(g);
        pthread_join(g->thread, NULL);
        g->running = false;
    }
    int fds[] = {g->epfd, g->tfd, g->efd};
    for (size_t i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(g->byfd);
    free(g->watch);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}
