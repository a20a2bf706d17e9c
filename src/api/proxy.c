/*
 * proxy.c — `ah webui --remote-server URL` (issue 14, M17; CLI-and-enrollment.md §2): the web UI
 * served here, every /api/v1 request passed to a remote access point.
 *
 * One thread drives a curl multi handle for every proxied request (no thread per client). A
 * handler builds the upstream request, hands it to that thread and waits only for the upstream's
 * status line and headers (bounded by the header timeout); the body then flows through an
 * http_stream: curl's write callback appends to a bounded buffer and wakes the client's
 * connection, the connection's reader drains it. When the buffer is full the transfer is paused
 * (CURL_WRITEFUNC_PAUSE) until the reader has taken everything, so a slow client slows the
 * upstream instead of growing memory, and an SSE stream (Last-Event-ID included) passes through
 * as it is produced.
 *
 * Headers: the client's go up except the hop-by-hop ones (RFC 9110 §7.6.1 and those named by
 * Connection), Host (curl names the upstream), Origin and Cookie (they belong to this origin; the
 * front door here already applied its own Host/Origin guard) and Content-Length (curl sets it).
 * X-Request-Id is this request's id (the client's when it sent a valid one, D8), so both servers
 * log the same id; Authorization, traceparent, Idempotency-Key and Last-Event-ID pass unchanged.
 * A configured API key (--remote-api-key-file) is sent for requests that carry no credential.
 * With a signer (the proxy's own sign-in), the client's credentials stop here: the access hooks
 * in front of the handler authenticated the caller (session cookie, CSRF), and the request goes
 * up with `Authorization: Bearer` and a short-lived JWT naming that caller (auth/signer.h);
 * the public routes (health, version, the OpenAPI document) go up without one.
 * The answer's headers come back except the hop-by-hop ones, the framing (Content-Length,
 * Transfer-Encoding: the body is re-framed here), X-Request-Id (ours is the same) and CORS
 * (this front door answers CORS for its own origin).
 *
 * Failures are Problems: the upstream cannot be reached or its TLS cannot be verified → 502;
 * no status line within the header timeout → 504. A body the upstream cuts off mid-way ends the
 * client's response the same way (the client sees a truncated stream, as it would directly).
 *
 * Request bodies pass the same way the other direction (the front door's router_set_body): the
 * upstream request starts once the headers are in and passed the access hooks; curl's read
 * callback takes what the client sent from a bounded buffer (PROXY_UP_MAX) and pauses when it is
 * empty, and the client's connection is suspended while it is full, so a slow upstream slows the
 * client instead of growing memory. The front door's body limit still applies (413); a body cut
 * off or over the limit aborts the upstream transfer, which never sees half a body as complete.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../auth/signer.h"
#include "routes.h"

#define PROXY_BUF_MAX (256 * 1024) /* bytes buffered per response before the upstream is paused */
#define PROXY_MAX_RES_HEADERS 12   /* of the answer's headers passed on (http.h allows 16) */
#define PROXY_UP_MAX (256 * 1024)  /* bytes of a request body held before its client waits */

struct proxy {
    char *base; /* scheme://host[:port][/prefix], no trailing slash */
    char *ca_file;
    char *api_key; /* the configured credential, or NULL */
    struct auth_signer *signer; /* borrowed; NULL: no identity tokens */
    long connect_timeout_ms, header_timeout_ms;
    CURLM *multi;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;     /* the queues below and stopping */
    struct pxreq *incoming; /* to add to the multi handle */
    struct pxreq *pokes;    /* to unpause or to cancel */
    struct pxreq *active;   /* in the multi handle (its thread only) */
    bool stopping;
};

struct pxreq {
    struct proxy *px;
    CURL *easy;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    int refs; /* the handler/stream side and the multi side; under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* the answer (under mu) */
    int status;
    bool headers_done, done, paused, cancelled, poked;
    CURLcode result;
    char *res_names[PROXY_MAX_RES_HEADERS], *res_values[PROXY_MAX_RES_HEADERS];
    size_t n_res;
    char *content_type;
    struct ah_buf buf; /* bytes received, not yet sent; off: how many of them were sent */
    size_t off;
    struct http_stream *stream; /* a reference, to wake the client's connection */
    struct stream_entry se;     /* with the proxy's sign-in: signing out ends the stream */
    bool se_added;
    /* a request body passed on as it arrives (under mu): up holds what the client sent and
     * curl has not read yet (from up_off); the client waits while it is full, curl while it is
     * empty (up_paused) */
    struct http_body_flow *flow; /* NULL: the body (if any) was read whole */
    struct ah_buf up;
    size_t up_off;
    bool up_eof, up_paused, up_unpause;
    int64_t up_full_at; /* monotonic ms since the client waits for room, 0 when it does not */
    bool up_timed_out;  /* the upstream took none of it for the header timeout */
    struct pxreq *next_in, *next_poke, *next_active;
};

static void pxreq_free(struct pxreq *r) {
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    for (size_t i = 0; i < r->n_res; i++) {
        free(r->res_names[i]);
        free(r->res_values[i]);
    }
    free(r->content_type);
    ah_buf_clear(&r->buf);
    ah_buf_clear(&r->up);
    http_body_flow_unref(r->flow);
    http_stream_unref(r->stream);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static void pxreq_unref(struct pxreq *r) {
    pthread_mutex_lock(&r->mu);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (last)
        pxreq_free(r);
}

/* Asks the multi thread to look at r again (unpause it, or drop it when cancelled). */
static void poke(struct pxreq *r) {
    struct proxy *px = r->px;
    pthread_mutex_lock(&px->mu);
    if (!r->poked) {
        r->poked = true;
        r->next_poke = px->pokes;
        px->pokes = r;
        pthread_mutex_lock(&r->mu);
        r->refs++; /* the poke queue's */
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_unlock(&px->mu);
    curl_multi_wakeup(px->multi);
}

static bool hop_by_hop(const char *name) {
    static const char *const names[] = {"connection",
                                        "keep-alive",
                                        "proxy-connection",
                                        "proxy-authenticate",
                                        "proxy-authorization",
                                        "te",
                                        "trailer",
                                        "transfer-encoding",
                                        "upgrade",
                                        NULL};
    for (size_t i = 0; names[i]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

/* Is name listed in a Connection header's value (its own hop-by-hop headers)? */
static bool named_by_connection(const char *connection, const char *name) {
    if (!connection)
        return false;
    size_t n = strlen(name);
    for (const char *p = connection; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == n && strncasecmp(p, name, n) == 0)
            return true;
        p = e;
    }
    return false;
}

/* ---- the multi thread's callbacks ------------------------------------------------------------ */

static size_t on_header(char *data, size_t size, size_t n, void *ctx) {
    struct pxreq *r = ctx;
    size_t len = size * n;
    pthread_mutex_lock(&r->mu);
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* a status line: a new answer (after a 1xx, the final one) */
        const char *sp = memchr(data, ' ', len);
        r->status = sp ? atoi(sp + 1) : 0;
        for (size_t i = 0; i < r->n_res; i++) {
            free(r->res_names[i]);
            free(r->res_values[i]);
        }
        r->n_res = 0;
        free(r->content_type);
        r->content_type = NULL;
    } else if (len <= 2) { /* the blank line that ends a header block */
        if (r->status >= 200 && !r->headers_done) {
            r->headers_done = true;
            pthread_cond_broadcast(&r->cv);
        }
    } else {
        const char *colon = memchr(data, ':', len);
        if (colon && r->status >= 200) {
            size_t nl = (size_t)(colon - data);
            const char *v = colon + 1, *end = data + len;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                end--;
            char *name = strndup(data, nl), *value = strndup(v, (size_t)(end - v));
            bool keep = name && value && !hop_by_hop(name) &&
                        strcasecmp(name, "content-length") != 0 &&
                        strcasecmp(name, "x-request-id") != 0 && strcasecmp(name, "date") != 0 &&
                        strncasecmp(name, "access-control-", 15) != 0;
            if (keep && strcasecmp(name, "content-type") == 0) {
                free(r->content_type);
                r->content_type = AH_TAKE(value);
                keep = false;
            }
            if (keep && r->n_res < PROXY_MAX_RES_HEADERS) {
                r->res_names[r->n_res] = AH_TAKE(name);
                r->res_values[r->n_res++] = AH_TAKE(value);
            }
            free(name);
            free(value);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx) {
    struct pxreq *r = ctx;
    size_t len = size * n;
    pthread_mutex_lock(&r->mu);
    if (r->cancelled) {
        pthread_mutex_unlock(&r->mu);
        return 0; /* aborts the transfer */
    }
    if (r->buf.n - r->off > 0 && r->buf.n - r->off + len > PROXY_BUF_MAX) {
        r->paused = true; /* curl hands the same bytes again once unpaused */
        pthread_mutex_unlock(&r->mu);
        return CURL_WRITEFUNC_PAUSE;
    }
    if (r->off == r->buf.n) { /* everything was sent: start over at the front */
        r->buf.n = 0;
        r->off = 0;
    } else if (r->off >= PROXY_BUF_MAX / 2) { /* keep the buffer within its cap */
        memmove(r->buf.p, r->buf.p + r->off, r->buf.n - r->off);
        r->buf.n -= r->off;
        r->off = 0;
    }
    int rc = ah_buf_append(&r->buf, data, len);
    struct http_stream *s = r->stream;
    if (s)
        http_stream_ref(s); /* the connection may close meanwhile */
    pthread_mutex_unlock(&r->mu);
    if (s) {
        http_stream_wake(s);
        http_stream_unref(s);
    }
    return rc < 0 ? 0 : len;
}

/* The transfer ended (well or not): the handler or the reader learns it. */
static void finish(struct pxreq *r, CURLcode result) {
    pthread_mutex_lock(&r->mu);
    r->done = true;
    r->result = result;
    pthread_cond_broadcast(&r->cv);
    struct http_stream *s = r->stream;
    if (s)
        http_stream_ref(s);
    pthread_mutex_unlock(&r->mu);
    http_body_flow_wake(r->flow); /* a client still sending: the rest is dropped, not waited on */
    if (s) {
        http_stream_wake(s);
        http_stream_unref(s);
    }
}

static void drop_active(struct proxy *px, struct pxreq *r, CURLcode result) {
    for (struct pxreq **pp = &px->active; *pp; pp = &(*pp)->next_active)
        if (*pp == r) {
            *pp = r->next_active;
            curl_multi_remove_handle(px->multi, r->easy);
            finish(r, result);
            pxreq_unref(r); /* the multi side's */
            return;
        }
}

static void *proxy_main(void *arg) {
    struct proxy *px = arg;
    for (;;) {
        pthread_mutex_lock(&px->mu);
        bool stopping = px->stopping;
        struct pxreq *in = px->incoming, *pokes = px->pokes;
        px->incoming = NULL;
        px->pokes = NULL;
        for (struct pxreq *r = pokes; r; r = r->next_poke)
            r->poked = false;
        pthread_mutex_unlock(&px->mu);
        while (in) {
            struct pxreq *r = in;
            in = r->next_in;
            if (stopping || curl_multi_add_handle(px->multi, r->easy) != CURLM_OK) {
                finish(r, CURLE_ABORTED_BY_CALLBACK);
                pxreq_unref(r);
                continue;
            }
            r->next_active = px->active;
            px->active = r;
        }
        while (pokes) {
            struct pxreq *r = pokes;
            pokes = r->next_poke;
            pthread_mutex_lock(&r->mu);
            bool cancel = r->cancelled || stopping, unpause = r->paused && r->off == r->buf.n;
            bool send = r->up_unpause;
            if (unpause)
                r->paused = false;
            r->up_unpause = false;
            bool recv_paused = r->paused;
            pthread_mutex_unlock(&r->mu);
            if (cancel)
                drop_active(px, r, CURLE_ABORTED_BY_CALLBACK);
            else if (unpause || send) /* the side still waiting for the client stays paused */
                curl_easy_pause(r->easy, recv_paused ? CURLPAUSE_RECV : CURLPAUSE_CONT);
            pxreq_unref(r); /* the poke queue's */
        }
        if (stopping) {
            while (px->active)
                drop_active(px, px->active, CURLE_ABORTED_BY_CALLBACK);
            return NULL;
        }
        /* An upstream that takes none of a request body for the header timeout is given up on
         * (504), as one that does not answer is: its client would otherwise wait suspended. */
        int64_t now = time_mono_ms();
        for (struct pxreq *r = px->active, *next; r; r = next) {
            next = r->next_active;
            pthread_mutex_lock(&r->mu);
            bool stalled = r->up_full_at && now - r->up_full_at > px->header_timeout_ms;
            if (stalled)
                r->up_timed_out = true;
            pthread_mutex_unlock(&r->mu);
            if (stalled)
                drop_active(px, r, CURLE_OPERATION_TIMEDOUT);
        }
        int running = 0;
        curl_multi_perform(px->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(px->multi, &left)))
            if (m->msg == CURLMSG_DONE) {
                struct pxreq *r = NULL;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
                if (r)
                    drop_active(px, r, m->data.result);
            }
        curl_multi_poll(px->multi, NULL, 0, 1000, NULL);
    }
}

/* ---- the client's side: the response body as a stream ---------------------------------------- */

static ssize_t stream_read(void *ctx, char *out, size_t max) {
    struct pxreq *r = ctx;
    if (r->se_added && __atomic_load_n(&r->se.revoked, __ATOMIC_ACQUIRE))
        return HTTP_STREAM_END; /* its caller signed out (the transfer is dropped at close) */
    pthread_mutex_lock(&r->mu);
    size_t have = r->buf.n - r->off;
    if (have) {
        size_t k = have < max ? have : max;
        memcpy(out, r->buf.p + r->off, k);
        r->off += k;
        bool unpause = r->paused && r->off == r->buf.n;
        pthread_mutex_unlock(&r->mu);
        if (unpause)
            poke(r);
        return (ssize_t)k;
    }
    bool done = r->done;
    CURLcode result = r->result;
    bool ending = r->stream && http_stream_ending(r->stream);
    pthread_mutex_unlock(&r->mu);
    if (done)
        return result == CURLE_OK ? HTTP_STREAM_END : AH_E_NETWORK; /* cut off: abort it too */
    if (ending)
        return HTTP_STREAM_END;
    return 0;
}

static void stream_close(void *ctx) {
    struct pxreq *r = ctx;
    if (r->se_added) /* set before the stream was handed over: no lock needed to read it */
        streams_remove(&r->se);
    pthread_mutex_lock(&r->mu);
    bool running = !r->done;
    r->cancelled = true;
    struct http_stream *s = AH_TAKE(r->stream); /* no more wakes for a closed connection */
    pthread_mutex_unlock(&r->mu);
    http_stream_unref(s);
    if (running)
        poke(r);
    pxreq_unref(r); /* the stream's */
}

static const struct http_stream_ops stream_ops = {.read = stream_read, .close = stream_close};

/* ---- the request body, passed on as it arrives ------------------------------------------------ */

/* curl wants body bytes: what the client sent so far; paused while there is none yet. */
static size_t on_read(char *out, size_t size, size_t n, void *ctx) {
    struct pxreq *r = ctx;
    size_t max = size * n;
    pthread_mutex_lock(&r->mu);
    if (r->cancelled) {
        pthread_mutex_unlock(&r->mu);
        return CURL_READFUNC_ABORT;
    }
    size_t have = r->up.n - r->up_off;
    if (!have) {
        bool eof = r->up_eof;
        r->up_paused = !eof;
        pthread_mutex_unlock(&r->mu);
        return eof ? 0 : CURL_READFUNC_PAUSE;
    }
    size_t k = have < max ? have : max;
    memcpy(out, r->up.p + r->up_off, k);
    r->up_off += k;
    r->up_full_at = 0;
    if (r->up_off == r->up.n)
        r->up.n = r->up_off = 0;
    pthread_mutex_unlock(&r->mu);
    http_body_flow_wake(r->flow); /* room again: a waiting client goes on */
    return k;
}

/* The client's bytes, as many as the buffer holds. */
static size_t body_write(void *ctx, const char *data, size_t n) {
    struct pxreq *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (r->done || r->cancelled) { /* the upstream answered or went away: nobody reads it */
        pthread_mutex_unlock(&r->mu);
        return n;
    }
    if (r->up_off) { /* what curl read is gone: keep the rest at the front */
        memmove(r->up.p, r->up.p + r->up_off, r->up.n - r->up_off);
        r->up.n -= r->up_off;
        r->up_off = 0;
    }
    size_t k = PROXY_UP_MAX - r->up.n;
    if (k > n)
        k = n;
    if (k && ah_buf_append(&r->up, data, k) < 0) {
        r->cancelled = true; /* out of memory: the transfer is dropped, the handler says so */
        k = n;
    }
    if (k < n && !r->up_full_at)
        r->up_full_at = time_mono_ms();
    bool unpause = k && r->up_paused;
    if (unpause) {
        r->up_paused = false;
        r->up_unpause = true;
    }
    bool cancel = r->cancelled;
    pthread_mutex_unlock(&r->mu);
    if (unpause || cancel)
        poke(r);
    return k;
}

static void body_end(void *ctx, bool complete) {
    struct pxreq *r = ctx;
    pthread_mutex_lock(&r->mu);
    r->up_eof = true;
    if (!complete)
        r->cancelled = true; /* cut off or too large: the upstream must not take half a body */
    if (r->up_paused) {
        r->up_paused = false;
        r->up_unpause = true;
    }
    bool running = !r->done;
    pthread_mutex_unlock(&r->mu);
    if (running)
        poke(r);
    if (!complete)
        pxreq_unref(r); /* the handler will not run: the sink's reference goes */
}

static int pxreq_start(struct proxy *px, struct http_request *req, struct http_body_flow *flow,
                       struct pxreq **ret, char *detail, size_t dn);

static int body_begin(struct http_request *req, struct http_body_flow *flow, void **ret_ctx,
                      char *detail, size_t dn) {
    struct pxreq *r = NULL;
    int rc = pxreq_start(req->route_ctx, req, flow, &r, detail, dn);
    if (rc == 0)
        *ret_ctx = r;
    return rc;
}

static const struct http_body_ops body_ops = {
    .begin = body_begin, .write = body_write, .end = body_end};

/* ---- the handler ----------------------------------------------------------------------------- */

/* The upstream URL: the base, the path re-encoded segment by segment (the front door decoded
 * it; a %2F inside a segment becomes '/', which the API's {path...} routes read the same), and
 * the query re-encoded in the order it came. */
static char *upstream_url(const struct proxy *px, const struct http_request *req) {
    struct ah_buf b = {.max = AH_LIMIT_URL * 4};
    int rc = ah_buf_puts(&b, px->base);
    for (const char *p = req->path; rc == 0 && *p;) {
        const char *slash = strchr(p + 1, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char seg[AH_LIMIT_URL];
        if (n - 1 >= sizeof(seg)) {
            rc = AH_E_TOOLARGE;
            break;
        }
        memcpy(seg, p + 1, n - 1);
        seg[n - 1] = '\0';
        rc = ah_buf_puts(&b, "/");
        if (rc == 0)
            rc = ah_buf_url_escape(&b, seg);
        p += n;
    }
    bool first = true;
    for (size_t i = 0; rc == 0 && i < req->n_query; i++)
        rc = ah_buf_query_add(&b, &first, req->query[i].name,
                              req->query[i].value ? req->query[i].value : "");
    if (rc < 0) {
        ah_buf_clear(&b);
        return NULL;
    }
    return ah_buf_steal(&b);
}

static int add_header(struct curl_slist **list, const char *name, const char *value) {
    char line[AH_LIMIT_HEADER + 256];
    int n = snprintf(line, sizeof(line), "%s: %s", name, value);
    if (n < 0 || (size_t)n >= sizeof(line))
        return 0; /* the front door caps header sizes well below this */
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return AH_E_NOMEM;
    *list = l;
    return 0;
}

static int build_headers(const struct proxy *px, const struct http_request *req,
                         struct curl_slist **ret) {
    const char *connection = http_header(req, "Connection");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < req->n_headers; i++) {
        const char *name = req->headers[i].name;
        if (hop_by_hop(name) || named_by_connection(connection, name) ||
            strcasecmp(name, "host") == 0 || strcasecmp(name, "origin") == 0 ||
            strcasecmp(name, "cookie") == 0 || strcasecmp(name, "content-length") == 0 ||
            strcasecmp(name, "expect") == 0 || strcasecmp(name, "x-request-id") == 0 ||
            (px->signer && (strcasecmp(name, "authorization") == 0 ||
                            strcasecmp(name, "x-api-key") == 0 ||
                            strcasecmp(name, "x-csrf-token") == 0)))
            continue;
        rc = add_header(ret, name, req->headers[i].value ? req->headers[i].value : "");
    }
    const struct auth_principal *who = req->principal;
    if (rc == 0 && px->signer && who && !who->local) {
        char *jwt = auth_signer_mint(px->signer, who);
        if (!jwt)
            return AH_E_NOMEM;
        size_t n = strlen(jwt) + 32; /* a JWT may be longer than add_header's line */
        char *auth = malloc(n);
        if (auth) {
            snprintf(auth, n, "Authorization: Bearer %s", jwt);
            struct curl_slist *l = curl_slist_append(*ret, auth);
            rc = l ? 0 : AH_E_NOMEM;
            if (l)
                *ret = l;
            free(auth);
        } else {
            rc = AH_E_NOMEM;
        }
        free(jwt);
    }
    /* The configured key stands in for a browser that brings no credential of its own. */
    if (rc == 0 && px->api_key && !http_header(req, "Authorization") &&
        !http_header(req, "X-API-Key")) {
        char auth[AH_LIMIT_HEADER];
        snprintf(auth, sizeof(auth), "ApiKey %s", px->api_key);
        rc = add_header(ret, "Authorization", auth);
        explicit_bzero(auth, sizeof(auth));
    }
    if (rc == 0)
        rc = add_header(ret, "X-Request-Id", req->request_id);
    if (rc == 0) /* no 100-continue round trip, and no body-less default type */
        rc = add_header(ret, "Expect", "");
    return rc;
}

static int setup_easy(struct proxy *px, struct pxreq *r, const struct http_request *req,
                      const char *url) {
    CURL *e = r->easy;
    CURLcode c = CURLE_OK;
#define SET(opt, val)                                                                              \
    if (c == CURLE_OK)                                                                             \
    c = curl_easy_setopt(e, opt, val)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PRIVATE, (char *)r);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_HTTPHEADER, r->headers);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, r);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, r);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_CONNECTTIMEOUT_MS, px->connect_timeout_ms);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    /* Plain HTTP stays HTTP/1.1 (no h2c reuse, a libcurl 7.88 bug); TLS may negotiate h2. */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (px->ca_file)
        SET(CURLOPT_CAINFO, px->ca_file);
    if (strcmp(req->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (r->flow) { /* the body follows as it arrives: Content-Length, or chunked */
        const char *cl = http_header(req, "Content-Length");
        SET(CURLOPT_CUSTOMREQUEST, req->method);
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_READFUNCTION, on_read);
        SET(CURLOPT_READDATA, r);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, cl ? (curl_off_t)strtoll(cl, NULL, 10) : (curl_off_t)-1);
    } else if (strcmp(req->method, "GET") != 0) {
        SET(CURLOPT_CUSTOMREQUEST, req->method);
        if (req->body || strcmp(req->method, "DELETE") != 0) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
            SET(CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
        }
    }
#undef SET
    return c == CURLE_OK ? 0 : AH_E_NOMEM;
}

/* Makes the upstream request and hands it to the multi thread: *ret holds two references, the
 * caller's and the multi side's. With a flow, its body is read from the client as it comes. */
static int pxreq_start(struct proxy *px, struct http_request *req, struct http_body_flow *flow,
                       struct pxreq **ret, char *detail, size_t dn) {
    struct pxreq *r = calloc(1, sizeof(*r));
    char *url = upstream_url(px, req);
    if (!r || !url) { /* on failure the flow stays the caller's */
        free(r);
        free(url);
        snprintf(detail, dn, "cannot forward this request");
        return url ? AH_E_NOMEM : AH_E_TOOLARGE;
    }
    r->px = px;
    r->refs = 2; /* this side (then the stream's), and the multi side */
    r->buf.max = PROXY_BUF_MAX * 2;
    r->up.max = PROXY_UP_MAX;
    r->flow = flow;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca; /* the handler's deadline is on the monotonic clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    r->easy = curl_easy_init();
    if (!r->easy || build_headers(px, req, &r->headers) < 0 || setup_easy(px, r, req, url) < 0) {
        free(url);
        r->flow = NULL;
        pxreq_free(r);
        snprintf(detail, dn, "out of memory forwarding the request");
        return AH_E_NOMEM;
    }
    free(url);

    pthread_mutex_lock(&px->mu);
    bool stopping = px->stopping;
    if (!stopping) {
        r->next_in = px->incoming;
        px->incoming = r;
    }
    pthread_mutex_unlock(&px->mu);
    if (stopping) {
        r->flow = NULL;
        pxreq_free(r);
        snprintf(detail, dn, "the web UI is stopping");
        return AH_E_UNAVAIL;
    }
    curl_multi_wakeup(px->multi);
    *ret = r;
    return 0;
}

static void proxy_handler(struct http_request *req, struct http_response *res) {
    struct proxy *px = req->route_ctx;
    struct pxreq *r = req->body_ctx; /* a body streamed up already (body_ops) */
    if (!r) {
        char detail[128];
        int rc = pxreq_start(px, req, NULL, &r, detail, sizeof(detail));
        if (rc < 0) {
            http_error(req, res, rc, "%s", detail);
            return;
        }
    }

    /* Wait for the status line and headers, or the end, or the deadline. */
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += px->header_timeout_ms / 1000;
    deadline.tv_nsec += (px->header_timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    int w = 0;
    while (!r->headers_done && !r->done && w != ETIMEDOUT)
        w = pthread_cond_timedwait(&r->cv, &r->mu, &deadline);
    if (!r->headers_done) {
        bool timed_out = !r->done || r->result == CURLE_OPERATION_TIMEDOUT;
        bool body_stalled = r->up_timed_out;
        CURLcode result = r->result;
        char err[CURL_ERROR_SIZE];
        snprintf(err, sizeof(err), "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(result));
        r->cancelled = true;
        bool running = !r->done;
        pthread_mutex_unlock(&r->mu);
        if (running)
            poke(r);
        pxreq_unref(r);
        if (timed_out && body_stalled)
            http_error(req, res, AH_E_TIMEOUT,
                       "the remote access point %s took none of the request body for %ld ms",
                       px->base, px->header_timeout_ms);
        else if (timed_out)
            http_error(req, res, AH_E_TIMEOUT,
                       "the remote access point %s did not answer within %ld ms", px->base,
                       running ? px->header_timeout_ms : px->connect_timeout_ms);
        else
            http_error(req, res, AH_E_NETWORK, "the remote access point %s cannot be reached: %s",
                       px->base, err);
        return;
    }
    res->status = r->status;
    for (size_t i = 0; i < r->n_res; i++)
        http_header_add(req, res, r->res_names[i], r->res_values[i]);
    if (r->content_type)
        res->content_type = arena_strdup(req->arena, r->content_type);
    /* No body may follow these: answer at once (the transfer finishes on its own). */
    bool bodiless = r->status == 204 || r->status == 304 || strcmp(req->method, "HEAD") == 0;
    if (bodiless) {
        r->cancelled = !r->done;
        bool running = !r->done;
        pthread_mutex_unlock(&r->mu);
        if (running)
            poke(r);
        pxreq_unref(r);
        return;
    }
    struct http_stream *s = http_stream_new(&stream_ops, r);
    if (!s) {
        r->cancelled = true;
        pthread_mutex_unlock(&r->mu);
        poke(r);
        pxreq_unref(r);
        http_response_clear(res);
        http_error(req, res, AH_E_NOMEM, "out of memory forwarding the answer");
        return;
    }
    http_stream_ref(s);
    r->stream = s; /* our reference is now the stream's (released in stream_close) */
    const struct auth_principal *who = req->principal;
    if (px->signer && who && !who->local) { /* api_streams_revoke at sign-out ends it */
        streams_owner(&r->se, req);
        streams_add(&r->se, s);
        r->se_added = true;
    }
    pthread_mutex_unlock(&r->mu);
    res->stream = s;
    if (!res->content_type)
        res->content_type = "application/octet-stream";
}

/* The proxy's own readiness, answered here without asking the upstream (the same document as
 * the local web UI's /_ah/healthz: ready as soon as it serves). */
static void healthz(struct http_request *req, struct http_response *res) {
    char ts[TIME_RFC3339_LEN + 1];
    time_format(time_now_ms(), ts);
    http_json(req, res, 200, json_pack("{s:s, s:s}", "status", "ready", "timestamp", ts));
}

/* ---- life cycle ------------------------------------------------------------------------------ */

int proxy_start(const struct proxy_config *cfg, struct proxy **ret, struct ah_problem *reterr) {
    *ret = NULL;
    const char *u = cfg->url;
    if (!u || (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) ||
        strlen(u) > AH_LIMIT_URL || strpbrk(u, " ?#\r\n")) {
        problem_set(reterr, AH_E_INVAL,
                    "--remote-server must be an http:// or https:// URL "
                    "without a query, not '%s'",
                    u ? u : "");
        return AH_E_INVAL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        problem_set(reterr, AH_E_NOMEM, "libcurl cannot start");
        return AH_E_NOMEM;
    }
    struct proxy *px = calloc(1, sizeof(*px));
    if (px)
        pthread_mutex_init(&px->mu, NULL);
    if (!px || !(px->base = strdup(u)) || (cfg->ca_file && !(px->ca_file = strdup(cfg->ca_file))) ||
        (cfg->api_key && !(px->api_key = strdup(cfg->api_key))) ||
        !(px->multi = curl_multi_init())) {
        proxy_free(px);
        problem_set(reterr, AH_E_NOMEM, "out of memory");
        return AH_E_NOMEM;
    }
    size_t n = strlen(px->base);
    while (n > 0 && px->base[n - 1] == '/') /* "http://h:1/" and "http://h:1" are one server */
        px->base[--n] = '\0';
    px->signer = cfg->signer;
    px->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
    px->header_timeout_ms = cfg->header_timeout_ms > 0 ? cfg->header_timeout_ms : 60000;
    if (pthread_create(&px->thread, NULL, proxy_main, px) != 0) {
        proxy_free(px);
        problem_set(reterr, AH_E_NOMEM, "cannot start the proxy thread");
        return AH_E_NOMEM;
    }
    px->started = true;
    *ret = px;
    return 0;
}

/* The public key set remote access points verify our identity tokens with (their jwks). */
static void jwks(struct http_request *req, struct http_response *res) {
    struct proxy *px = req->route_ctx;
    json_t *j = json_loads(auth_signer_jwks(px->signer), 0, NULL);
    http_header_add(req, res, "Cache-Control", "max-age=60");
    http_json(req, res, 200, j);
    res->content_type = "application/jwk-set+json";
}

int proxy_register(struct router *r, struct proxy *px) {
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
    /* The access point's public routes, by their own patterns, so that the access hooks of a
     * proxy with its own sign-in let them through as they are upstream (D22); every other path
     * needs the sign-in. */
    static const char *const public_gets[] = {"/api/v1/healthz", "/api/v1/readyz",
                                              "/api/v1/version", "/api/v1/openapi.json", NULL};
    int rc = router_add(r, "GET", "/_ah/healthz", healthz, px, 0, 0);
    if (px->signer)
        rc |= router_add(r, "GET", "/_ah/jwks.json", jwks, px, 0, 0);
    for (size_t i = 0; public_gets[i]; i++)
        rc |= router_add(r, "GET", public_gets[i], proxy_handler, px, ROUTE_ANY_BODY, 0);
    for (size_t i = 0; methods[i]; i++) {
        rc |= router_add(r, methods[i], "/api/v1/{rest...}", proxy_handler, px, ROUTE_ANY_BODY, 0);
        if (strcmp(methods[i], "GET") != 0) /* bodies go up as they arrive (still capped) */
            rc |= router_set_body(r, &body_ops);
    }
    return rc ? AH_E_NOMEM : 0;
}

/* Requests queued after the thread looked for the last time: finished here. */
static void drain(struct proxy *px) {
    pthread_mutex_lock(&px->mu);
    struct pxreq *in = AH_TAKE(px->incoming), *pokes = AH_TAKE(px->pokes);
    pthread_mutex_unlock(&px->mu);
    while (in) {
        struct pxreq *r = in;
        in = r->next_in;
        finish(r, CURLE_ABORTED_BY_CALLBACK);
        pxreq_unref(r);
    }
    while (pokes) {
        struct pxreq *r = pokes;
        pokes = r->next_poke;
        pthread_mutex_lock(&px->mu);
        r->poked = false;
        pthread_mutex_unlock(&px->mu);
        pxreq_unref(r);
    }
}

void proxy_shutdown(struct proxy *px) {
    if (!px || !px->started)
        return;
    pthread_mutex_lock(&px->mu);
    px->stopping = true;
    pthread_mutex_unlock(&px->mu);
    curl_multi_wakeup(px->multi);
    pthread_join(px->thread, NULL);
    px->started = false;
    drain(px);
}

void proxy_free(struct proxy *px) {
    if (!px)
        return;
    proxy_shutdown(px);
    drain(px); /* pokes of streams that closed after the shutdown */
    if (px->multi)
        curl_multi_cleanup(px->multi);
    pthread_mutex_destroy(&px->mu);
    free(px->base);
    free(px->ca_file);
    if (px->api_key) {
        explicit_bzero(px->api_key, strlen(px->api_key));
        free(px->api_key);
    }
    free(px);
}
