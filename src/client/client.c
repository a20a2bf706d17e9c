/*
 * client.c — the ah_client handle: configuration, the curl handle pool and one logical call
 * with its retries.
 *
 * Invariants:
 *   - The configuration is an immutable, reference-counted struct ccfg. A setter builds a new
 *     one and swaps it in under the client lock; a call takes a reference when it starts, so it
 *     keeps the settings it began with and setters never race with transfers.
 *   - Easy handles are pooled (at most POOL_MAX idle). A call takes one for its whole duration,
 *     retries included, and gives it back; an easy handle keeps its connection cache across
 *     curl_easy_reset, so keep-alive connections are reused call after call. DNS and TLS
 *     sessions are shared between the handles through a CURLSH guarded by one mutex per data
 *     kind. (Connections are deliberately not put in the share: libcurl 7.88 does not support
 *     sharing its connection cache between threads.)
 *   - curl_global_init runs once per process through pthread_once; it is never undone (a
 *     library cannot know when the last user of libcurl is gone).
 *   - Nothing here aborts on OOM: every allocation is checked and becomes AH_E_NOMEM.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "client_internal.h"

#define POOL_MAX 8
#define RESPONSE_MAX ((size_t)64 * 1024 * 1024) /* a larger answer is AH_E_TOOLARGE */

struct ep_timeouts {
    int64_t connect_ms;
    int64_t total_ms;
};

struct ccfg {
    int refs; /* atomic; the client lock guards only the c->cfg pointer */
    char *auth; /* the whole header line, or NULL */
    char *ca_file, *cert, *key;
    bool insecure;
    bool idempotency;
    struct ep_timeouts to[AH_EP_COUNT_];
    struct ah_retry_policy retry;
};

struct ah_client {
    pthread_mutex_t mu;
    char *base; /* immutable: no setter changes it, so it lives outside the swapped config */
    struct ccfg *cfg;
    ah_log_fn log_fn;
    void *log_ud;
    enum ah_log_level log_min;
    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
    CURL *pool[POOL_MAX];
    size_t n_pool;
    uint64_t rng;
    /* D48: the trace this client's requests belong to. From TRACEPARENT in the environment
     * (the process runs inside a traced session, e.g. `ah` called by an agent): sent as it came,
     * so the server's span is the child of the caller's. Otherwise a new trace per client, with
     * a fresh span id per request. */
    char trace_id[33];
    char inherited[56]; /* the environment's traceparent, "" when none */
};

static bool hex_ok(const char *s, size_t n) {
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        nonzero |= s[i] != '0';
    }
    return nonzero;
}

/* A version-00 traceparent as W3C writes it (other versions are not ours to forward). */
static bool traceparent_ok(const char *v) {
    return v && strlen(v) == 55 && v[0] == '0' && v[1] == '0' && v[2] == '-' && v[35] == '-' &&
           v[52] == '-' && hex_ok(v + 3, 32) && hex_ok(v + 36, 16) &&
           (hex_ok(v + 53, 2) || (v[53] == '0' && v[54] == '0'));
}

/* ---- process-wide libcurl initialisation ------------------------------------------------------
 */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *ah_client_version_string(void) {
    return AH_CLIENT_VERSION;
}

/* ---- configuration ----------------------------------------------------------------------------
 */

static void wipe_free(char *s) {
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void ccfg_free(struct ccfg *g) {
    if (!g)
        return;
    wipe_free(g->auth);
    free(g->ca_file);
    free(g->cert);
    free(g->key);
    free(g);
}

static bool dup_opt(char **dst, const char *src) {
    *dst = NULL;
    return !src || (*dst = strdup(src)) != NULL;
}

static struct ccfg *ccfg_clone(const struct ccfg *o) {
    struct ccfg *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    *g = *o;
    g->refs = 1;
    g->auth = g->ca_file = g->cert = g->key = NULL;
    if (!dup_opt(&g->auth, o->auth) ||
        !dup_opt(&g->ca_file, o->ca_file) || !dup_opt(&g->cert, o->cert) ||
        !dup_opt(&g->key, o->key)) {
        ccfg_free(g);
        return NULL;
    }
    return g;
}

struct ccfg *client_cfg_get(ah_client *c) {
    pthread_mutex_lock(&c->mu);
    struct ccfg *g = c->cfg;
    __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&c->mu);
    return g;
}

void client_cfg_put(struct ccfg *g) {
    if (g && __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) == 0)
        ccfg_free(g);
}

const struct ah_retry_policy *ccfg_retry(const struct ccfg *g) {
    return &g->retry;
}

int64_t ccfg_connect_ms(const struct ccfg *g, enum ah_endpoint ep) {
    int64_t v = g->to[ep].connect_ms;
    return v >= 0 ? v : g->to[AH_EP_DEFAULT].connect_ms;
}

int64_t ccfg_total_ms(const struct ccfg *g, enum ah_endpoint ep) {
    int64_t v = g->to[ep].total_ms;
    return v >= 0 ? v : g->to[AH_EP_DEFAULT].total_ms;
}

/* Applies one change to a fresh copy of the configuration and swaps it in. */
typedef int (*cfg_edit_fn)(struct ccfg *g, const void *arg);

static int cfg_update(ah_client *c, cfg_edit_fn edit, const void *arg) {
    if (!c)
        return AH_E_INVAL;
    pthread_mutex_lock(&c->mu);
    struct ccfg *g = ccfg_clone(c->cfg);
    int rc = g ? edit(g, arg) : AH_E_NOMEM;
    if (rc == 0) {
        struct ccfg *old = c->cfg;
        c->cfg = g;
        g = NULL;
        if (__atomic_sub_fetch(&old->refs, 1, __ATOMIC_ACQ_REL) == 0)
            ccfg_free(old);
    }
    pthread_mutex_unlock(&c->mu);
    ccfg_free(g);
    return rc;
}

/* ---- handle -----------------------------------------------------------------------------------
 */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud) {
    ah_client *c = ud;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&c->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud) {
    ah_client *c = ud;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&c->share_mu[data]);
}

static int normalise_base(const char *url, char **ret) {
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return AH_E_INVAL;
    size_t n = strlen(url);
    if (n > AH_LIMIT_URL)
        return AH_E_INVAL;
    while (n > 0 && url[n - 1] == '/')
        n--;
    static const char suffix[] = "/api/v1";
    if (n >= sizeof(suffix) - 1 &&
        memcmp(url + n - (sizeof(suffix) - 1), suffix, sizeof(suffix) - 1) == 0)
        n -= sizeof(suffix) - 1;
    while (n > 0 && url[n - 1] == '/')
        n--;
    size_t scheme = url[4] == 's' ? 8 : 7;
    if (n <= scheme)
        return AH_E_INVAL; /* no host */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
            return AH_E_INVAL;
    char *b = strndup(url, n);
    if (!b)
        return AH_E_NOMEM;
    *ret = b;
    return 0;
}

int ah_client_new(const char *base_url, ah_client **ret) {
    if (!ret)
        return AH_E_INVAL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return curl_init_rc == CURLE_OUT_OF_MEMORY ? AH_E_NOMEM : AH_E_IO;
    char *base = NULL;
    int rc = normalise_base(base_url, &base);
    if (rc < 0)
        return rc;
    ah_client *c = calloc(1, sizeof(*c));
    struct ccfg *g = calloc(1, sizeof(*g));
    CURLSH *share = curl_share_init();
    if (!c || !g || !share) {
        free(base);
        free(c);
        free(g);
        if (share)
            curl_share_cleanup(share);
        return AH_E_NOMEM;
    }
    g->refs = 1;
    g->idempotency = true;
    for (int i = 0; i < AH_EP_COUNT_; i++)
        g->to[i] = (struct ep_timeouts){-1, -1};
    g->to[AH_EP_DEFAULT] = (struct ep_timeouts){10000, 30000};
    g->to[AH_EP_HEALTH].total_ms = 5000;
    g->to[AH_EP_STREAM].total_ms = 45000;
    ah_retry_policy_default(&g->retry);
    c->cfg = g;
    c->base = base;
    c->share = share;
    c->log_min = AH_LOG_INFO;
    pthread_mutex_init(&c->mu, NULL);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&c->share_mu[i], NULL);
    curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(share, CURLSHOPT_USERDATA, c);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    if (getrandom(&c->rng, sizeof(c->rng), GRND_NONBLOCK) != sizeof(c->rng))
        c->rng = (uint64_t)time_mono_ms() * 0x9E3779B97F4A7C15ULL;
    c->rng |= 1;
    const char *tp = getenv("TRACEPARENT");
    if (traceparent_ok(tp)) {
        memcpy(c->inherited, tp, 56);
        memcpy(c->trace_id, tp + 3, 32);
    } else {
        unsigned char b[16] = {0};
        if (getrandom(b, sizeof(b), GRND_NONBLOCK) != sizeof(b))
            for (size_t i = 0; i < sizeof(b); i++)
                b[i] = (unsigned char)client_random(c);
        b[0] |= 1; /* never the all-zero id W3C forbids */
        for (size_t i = 0; i < sizeof(b); i++)
            snprintf(c->trace_id + 2 * i, 3, "%02x", b[i]);
    }
    *ret = c;
    return 0;
}

void ah_client_free(ah_client *c) {
    if (!c)
        return;
    for (size_t i = 0; i < c->n_pool; i++)
        curl_easy_cleanup(c->pool[i]);
    curl_share_cleanup(c->share);
    client_cfg_put(c->cfg);
    free(c->base);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&c->share_mu[i]);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

const char *ah_client_base_url(const ah_client *c) {
    return c ? c->base : NULL;
}

static int edit_auth(struct ccfg *g, const void *arg) {
    const char *line = arg;
    wipe_free(g->auth);
    g->auth = NULL;
    if (line && !(g->auth = strdup(line)))
        return AH_E_NOMEM;
    return 0;
}

static int set_auth(ah_client *c, const char *scheme, const char *secret) {
    if (!c)
        return AH_E_INVAL;
    if (!secret)
        return cfg_update(c, edit_auth, NULL);
    if (!*secret || strpbrk(secret, "\r\n") || strlen(secret) > AH_LIMIT_HEADER)
        return AH_E_INVAL;
    struct ah_buf b = {0};
    int rc = ah_buf_printf(&b, "Authorization: %s %s", scheme, secret);
    if (rc == 0)
        rc = cfg_update(c, edit_auth, b.p);
    if (b.p)
        explicit_bzero(b.p, b.n);
    ah_buf_clear(&b);
    return rc;
}

int ah_client_set_api_key(ah_client *c, const char *key) {
    return set_auth(c, "ApiKey", key);
}

int ah_client_set_bearer(ah_client *c, const char *token) {
    return set_auth(c, "Bearer", token);
}

static int edit_ca(struct ccfg *g, const void *arg) {
    free(g->ca_file);
    return dup_opt(&g->ca_file, arg) ? 0 : AH_E_NOMEM;
}

int ah_client_set_ca_file(ah_client *c, const char *path) {
    return cfg_update(c, edit_ca, path);
}

static int edit_insecure(struct ccfg *g, const void *arg) {
    g->insecure = *(const bool *)arg;
    return 0;
}

int ah_client_set_insecure(ah_client *c, bool insecure) {
    return cfg_update(c, edit_insecure, &insecure);
}

struct cert_pair {
    const char *cert, *key;
};

static int edit_cert(struct ccfg *g, const void *arg) {
    const struct cert_pair *p = arg;
    free(g->cert);
    free(g->key);
    g->cert = g->key = NULL;
    return dup_opt(&g->cert, p->cert) && dup_opt(&g->key, p->key) ? 0 : AH_E_NOMEM;
}

int ah_client_set_client_cert(ah_client *c, const char *cert_path, const char *key_path) {
    if (!cert_path && key_path)
        return AH_E_INVAL;
    struct cert_pair p = {cert_path, key_path};
    return cfg_update(c, edit_cert, &p);
}

struct timeout_edit {
    enum ah_endpoint ep;
    int64_t connect_ms, total_ms;
};

static int edit_timeouts(struct ccfg *g, const void *arg) {
    const struct timeout_edit *t = arg;
    if (t->connect_ms >= 0)
        g->to[t->ep].connect_ms = t->connect_ms;
    if (t->total_ms >= 0)
        g->to[t->ep].total_ms = t->total_ms;
    return 0;
}

int ah_client_set_timeouts(ah_client *c, enum ah_endpoint ep, int64_t connect_ms,
                           int64_t total_ms) {
    if ((int)ep < 0 || ep >= AH_EP_COUNT_ || connect_ms < -1 || total_ms < -1)
        return AH_E_INVAL;
    struct timeout_edit t = {ep, connect_ms, total_ms};
    return cfg_update(c, edit_timeouts, &t);
}

static int edit_retry(struct ccfg *g, const void *arg) {
    g->retry = *(const struct ah_retry_policy *)arg;
    return 0;
}

int ah_client_set_retry(ah_client *c, const struct ah_retry_policy *p) {
    if (!p || p->max_attempts < 1 || p->base_delay_ms < 0 || p->max_delay_ms < 0 ||
        p->max_retry_after_ms < 0)
        return AH_E_INVAL;
    return cfg_update(c, edit_retry, p);
}

static int edit_idem(struct ccfg *g, const void *arg) {
    g->idempotency = *(const bool *)arg;
    return 0;
}

int ah_client_set_idempotency(ah_client *c, bool enabled) {
    return cfg_update(c, edit_idem, &enabled);
}

int ah_client_set_log(ah_client *c, ah_log_fn fn, void *userdata, enum ah_log_level min_level) {
    if (!c || (int)min_level < AH_LOG_DEBUG || min_level > AH_LOG_ERROR)
        return AH_E_INVAL;
    pthread_mutex_lock(&c->mu);
    c->log_fn = fn;
    c->log_ud = userdata;
    c->log_min = min_level;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void client_log(ah_client *c, enum ah_log_level level, const char *fmt, ...) {
    pthread_mutex_lock(&c->mu);
    ah_log_fn fn = c->log_fn;
    void *ud = c->log_ud;
    bool on = fn && level >= c->log_min;
    pthread_mutex_unlock(&c->mu);
    if (!on)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fn(ud, level, msg);
}

uint32_t client_random(ah_client *c) {
    pthread_mutex_lock(&c->mu);
    /* xorshift64*: plenty for jitter, which only has to de-synchronise clients. */
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    pthread_mutex_unlock(&c->mu);
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

/* ---- the handle pool --------------------------------------------------------------------------
 */

CURL *client_handle_get(ah_client *c) {
    CURL *h = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_pool)
        h = c->pool[--c->n_pool];
    pthread_mutex_unlock(&c->mu);
    return h ? h : curl_easy_init();
}

void client_handle_put(ah_client *c, CURL *h) {
    if (!h)
        return;
    pthread_mutex_lock(&c->mu);
    if (c->n_pool < POOL_MAX) {
        c->pool[c->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (h)
        curl_easy_cleanup(h);
}

/* ---- one attempt ------------------------------------------------------------------------------
 */

int client_curl_error(CURLcode cc, enum transport_class *ret_tc) {
    enum transport_class tc;
    int code;
    switch (cc) {
    case CURLE_OK:
        tc = TRANSPORT_OK;
        code = 0;
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        tc = TRANSPORT_CONNECT;
        code = AH_E_NETWORK;
        break;
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        tc = TRANSPORT_IO;
        code = AH_E_NETWORK;
        break;
    case CURLE_OPERATION_TIMEDOUT:
        tc = TRANSPORT_TIMEOUT;
        code = AH_E_TIMEOUT;
        break;
    case CURLE_OUT_OF_MEMORY:
        tc = TRANSPORT_FATAL;
        code = AH_E_NOMEM;
        break;
    case CURLE_ABORTED_BY_CALLBACK:
        tc = TRANSPORT_FATAL;
        code = AH_E_CANCELED;
        break;
    case CURLE_WRITE_ERROR:
        tc = TRANSPORT_FATAL;
        code = AH_E_TOOLARGE;
        break;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        tc = TRANSPORT_FATAL;
        code = AH_E_INVAL;
        break;
    case CURLE_WEIRD_SERVER_REPLY:
        tc = TRANSPORT_FATAL;
        code = AH_E_PROTOCOL;
        break;
    default: /* TLS verification and set-up failures, and anything else */
        tc = TRANSPORT_FATAL;
        code = AH_E_NETWORK;
        break;
    }
    if (ret_tc)
        *ret_tc = tc;
    return code;
}

int client_prepare(ah_client *c, const struct ccfg *g, CURL *h, const char *path,
                   struct curl_slist **headers, char *errbuf) {
    curl_easy_reset(h);
    struct ah_buf url = {.max = AH_LIMIT_URL * 4};
    int rc = ah_buf_puts(&url, c->base);
    if (rc == 0)
        rc = ah_buf_puts(&url, path);
    if (rc < 0) {
        ah_buf_clear(&url);
        return rc == AH_E_TOOLARGE ? AH_E_INVAL : rc;
    }
    CURLcode cc = curl_easy_setopt(h, CURLOPT_URL, url.p);
    ah_buf_clear(&url);
    if (cc != CURLE_OK)
        return cc == CURLE_OUT_OF_MEMORY ? AH_E_NOMEM : AH_E_INVAL;
    errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_SHARE, c->share);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    /* HTTP/1.1 on plain connections (no h2c reuse, ARCHITECTURE.md); h2 over TLS via ALPN. */
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "libah-client/" AH_CLIENT_VERSION);
    if (g->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, g->ca_file);
    if (g->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (g->cert) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, g->cert);
        if (g->key)
            curl_easy_setopt(h, CURLOPT_SSLKEY, g->key);
    }
    char tp[56];
    if (c->inherited[0])
        memcpy(tp, c->inherited, sizeof(tp));
    else
        snprintf(tp, sizeof(tp), "00-%s-%08x%08x-01", c->trace_id, client_random(c),
                 client_random(c) | 1u);
    int trc = client_add_header(headers, "traceparent: %s", tp);
    if (trc < 0)
        return trc;
    if (g->auth) {
        struct curl_slist *n = curl_slist_append(*headers, g->auth);
        if (!n)
            return AH_E_NOMEM;
        *headers = n;
    }
    return 0;
}

int client_add_header(struct curl_slist **list, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line))
        return AH_E_INVAL;
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return AH_E_NOMEM;
    *list = l;
    return 0;
}

void cresp_clear(struct cresp *r) {
    ah_buf_clear(&r->body);
    free(r->content_type);
    free(r->request_id);
    memset(r, 0, sizeof(*r));
    r->retry_after_ms = -1;
}

struct xfer {
    struct cresp *rs;
    bool oom;
    bool too_large;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    struct xfer *x = ud;
    size_t len = size * n;
    int rc = ah_buf_append(&x->rs->body, p, len);
    if (rc == AH_E_TOOLARGE)
        x->too_large = true;
    else if (rc < 0)
        x->oom = true;
    return rc < 0 ? 0 : len;
}

int client_header_value(const char *line, size_t len, const char *name, char **dst) {
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    const char *v = line + nl + 1;
    size_t vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    if (vl > AH_LIMIT_HEADER)
        return 0;
    free(*dst);
    *dst = strndup(v, vl);
    return *dst ? 1 : AH_E_NOMEM;
}

struct hdrs {
    struct xfer *x;
    char *retry_after;
};

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    struct hdrs *hd = ud;
    size_t len = size * n;
    struct cresp *rs = hd->x->rs;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* A new response (after 100 Continue, say): forget the previous one's headers. */
        free(rs->content_type);
        free(rs->request_id);
        free(hd->retry_after);
        rs->content_type = rs->request_id = hd->retry_after = NULL;
        return len;
    }
    if (client_header_value(p, len, "Content-Type", &rs->content_type) < 0 ||
        client_header_value(p, len, "X-Request-Id", &rs->request_id) < 0 ||
        client_header_value(p, len, "Retry-After", &hd->retry_after) < 0)
        hd->x->oom = true;
    return len;
}

/* One attempt. 0 when an HTTP answer arrived (rs->status set); otherwise the AH_E_* of the
 * transport failure with *tc set and a description in errbuf. */
static int attempt(ah_client *c, const struct ccfg *g, CURL *h, const struct creq *rq,
                   const char *idem_key, const char *request_id, struct cresp *rs,
                   enum transport_class *tc, char *errbuf) {
    struct curl_slist *headers = NULL;
    struct xfer x = {.rs = rs};
    struct hdrs hd = {.x = &x};
    rs->body.max = RESPONSE_MAX;
    int rc = client_prepare(c, g, h, rq->path, &headers, errbuf);
    if (rc == 0)
        rc = client_add_header(&headers, "Accept: application/json, application/problem+json");
    if (rc == 0 && rq->body)
        rc = client_add_header(&headers, "Content-Type: application/json");
    if (rc == 0 && idem_key)
        rc = client_add_header(&headers, "Idempotency-Key: %s", idem_key);
    if (rc == 0)
        rc = client_add_header(&headers, "X-Request-Id: %s", request_id);
    if (rc == 0)
        rc = client_add_header(&headers, "Expect:"); /* no 100-continue round trip */
    if (rc < 0) {
        curl_slist_free_all(headers);
        *tc = TRANSPORT_FATAL;
        snprintf(errbuf, CURL_ERROR_SIZE, "%s", ah_strerror(rc));
        return rc;
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &hd);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)ccfg_connect_ms(g, rq->ep));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)ccfg_total_ms(g, rq->ep));
    if (strcmp(rq->method, "GET") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    if (rq->body || strcmp(rq->method, "POST") == 0) {
        const char *body = rq->body ? rq->body : "";
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    CURLcode cc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    if (x.oom) {
        free(hd.retry_after);
        *tc = TRANSPORT_FATAL;
        snprintf(errbuf, CURL_ERROR_SIZE, "out of memory while receiving the answer");
        return AH_E_NOMEM;
    }
    if (x.too_large) {
        free(hd.retry_after);
        *tc = TRANSPORT_FATAL;
        snprintf(errbuf, CURL_ERROR_SIZE, "the answer is larger than %zu bytes", RESPONSE_MAX);
        return AH_E_TOOLARGE;
    }
    rc = client_curl_error(cc, tc);
    if (rc < 0) {
        free(hd.retry_after);
        if (!errbuf[0])
            snprintf(errbuf, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cc));
        return rc;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    rs->status = (int)status;
    rs->retry_after_ms = retry_after_parse(hd.retry_after, time_now_ms());
    free(hd.retry_after);
    return 0;
}

int client_call(ah_client *c, const struct creq *rq, struct cresp *rs,
                struct ah_api_error *reterr) {
    memset(rs, 0, sizeof(*rs));
    rs->retry_after_ms = -1;
    struct ccfg *g = client_cfg_get(c);
    CURL *h = client_handle_get(c);
    if (!h) {
        client_cfg_put(g);
        problem_local(reterr, AH_E_NOMEM, "cannot create a curl handle");
        return AH_E_NOMEM;
    }
    char idem[ULID_LEN + 1], rid[ULID_LEN + 1];
    bool keyed = g->idempotency && strcmp(rq->method, "POST") == 0;
    if ((keyed && ulid_new(idem) < 0) || ulid_new(rid) < 0) {
        client_handle_put(c, h);
        client_cfg_put(g);
        problem_local(reterr, AH_E_IO, "no randomness for an id");
        return AH_E_IO;
    }
    char errbuf[CURL_ERROR_SIZE];
    int rc;
    for (int n = 1;; n++) {
        enum transport_class tc = TRANSPORT_OK;
        cresp_clear(rs);
        rc = attempt(c, g, h, rq, keyed ? idem : NULL, rid, rs, &tc, errbuf);
        if (rc == 0 && rs->status >= 200 && rs->status < 300) {
            client_log(c, AH_LOG_DEBUG, "%s %s -> %d (attempt %d, request %s)", rq->method,
                       rq->path, rs->status, n, rid);
            break;
        }
        bool again = (rq->flags & CREQ_NO_RETRY_STATUS) && tc == TRANSPORT_OK
                         ? false
                         : retry_should(rq->method, keyed, rs->status, tc);
        int64_t ra = (rs->status == 429 || rs->status == 503) ? rs->retry_after_ms : -1;
        int64_t delay = again ? ah_retry_delay_ms(&g->retry, n, ra, client_random(c)) : -1;
        if (delay < 0) {
            /* reterr is optional; the code comes from the same reading either way */
            struct ah_api_error scratch = {0}, *e = reterr ? reterr : &scratch;
            e->attempts = n;
            if (rc == 0)
                rc = problem_from_response(e, rs->status, rs->body.p, rs->body.n,
                                           rs->request_id, rs->retry_after_ms);
            else
                problem_local(e, rc, "%s %s: %s", rq->method, rq->path, errbuf);
            ah_api_error_clear(&scratch);
            client_log(c, again ? AH_LOG_WARN : AH_LOG_DEBUG,
                       "%s %s failed after %d attempt(s): %s (%s)", rq->method, rq->path, n,
                       rs->status ? "HTTP error" : errbuf, ah_error_name(rc));
            cresp_clear(rs);
            break;
        }
        if (tc == TRANSPORT_OK)
            client_log(c, AH_LOG_DEBUG, "%s %s: status %d; retrying in %lld ms (attempt %d)",
                       rq->method, rq->path, rs->status, (long long)delay, n);
        else
            client_log(c, AH_LOG_DEBUG, "%s %s: %s; retrying in %lld ms (attempt %d)",
                       rq->method, rq->path, errbuf, (long long)delay, n);
        cancel_sleep_ms(NULL, delay);
    }
    client_handle_put(c, h);
    client_cfg_put(g);
    return rc;
}
