/*
 * webhooks.c — a task's `webhooks[]` (issue 15 item 8): every session of the task POSTs its
 * events, filtered by each webhook's event names, to the webhook's URL.
 *
 * The outbox is the session's own event log: each webhook keeps a cursor, the seq of the last
 * event it delivered or passed over (D9, the same cursor as SSE), and follows the bus from it
 * (bus_subscribe: the ring, or the store when it is behind). Nothing is copied: at-least-once
 * delivery is "send the event after the cursor, move the cursor once the receiver said 2xx";
 * receivers de-duplicate by `seq` (a crash between the 2xx and the saved cursor resends one).
 *
 * One thread runs every delivery on one curl multi handle (no thread per webhook or session,
 * nothing on the HTTP threads, the bus writer only wakes it). Each webhook has at most one
 * request in flight, so a receiver sees its events in order; a slow or dead receiver only holds
 * its own cursor back: the agent, the event stream and the other webhooks never wait for it.
 * A failed attempt (no answer within the timeout, or not 2xx) is retried after 1, 2, 4, … s
 * (capped at an hour between attempts) until 24 h after the event's first failure; then the
 * event is counted as failed and the webhook moves on.
 *
 * Durable state, per session in the data directory: sessions/<id>/webhooks.json (cursors,
 * counters, the retry schedule; written with fsync + rename on every outcome) and an index entry
 * webhooks/<id> (its tenant) while a session has deliveries to make, which is how a restarted
 * server finds them. The index entry is written before POST /tasks answers, and at start every
 * live session whose task has webhooks but no entry is picked up too.
 *
 * Targets (SSRF): https only; http only to loopback and only with webhook-allow-loopback (tests).
 * The address actually connected to — after DNS, so a name that resolves to an internal address
 * is caught too — must not be loopback, private, link-local, multicast or unspecified, unless
 * configured (loopback, private); link-local (cloud metadata) and multicast never are. No
 * redirects are followed and no proxy from the environment is used.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "executor.h"

#define WH_INFLIGHT_MAX 32          /* requests in flight at once, over every webhook */
#define WH_SKIP_PER_ROUND 512       /* filtered-out events passed per webhook per loop turn */
#define WH_RESPONSE_MAX (64 * 1024) /* a receiver's answer is read and discarded up to this */
#define WH_STATE_MAX (256 * 1024)
#define WH_ERROR_MAX 240
#define WH_BACKOFF_CAP_MS 3600000 /* at most an hour between two attempts */
#define WH_IDLE_WAIT_MS 5000
#define WH_INDEX_DIR "webhooks"

struct wh_session;

struct wh_hook {
    struct wh_session *s;
    const struct exec_config *cfg;
    size_t idx;
    char *url, *secret; /* secret NULL: unsigned */
    json_t *events;     /* array of names */
    struct bus_sub *sub;
    struct bus_event *cur; /* the event being delivered (a reference), or NULL */
    char name[AH_LIMIT_NAME + 16]; /* its webhook event name */
    char *body;
    struct curl_slist *hdrs;
    CURL *easy; /* in flight */
    size_t resp_bytes;
    bool refused; /* the address was refused (SSRF) during this attempt */
    int64_t cursor, delivered, failed;
    int64_t attempts; /* failed attempts of the current event */
    int64_t first_fail_ms, next_at_ms, last_attempt_ms, last_success_ms;
    long last_status;
    char last_error[WH_ERROR_MAX];
    bool done;
};

struct wh_session {
    struct wh_session *next;
    char tenant[AH_LIMIT_NAME + 1];
    char id[ULID_LEN + 1];
    char task_id[ULID_LEN + 1];
    struct wh_hook *hooks;
    size_t n;
    bool dirty;
};

struct wh_add {
    struct wh_add *next;
    char tenant[AH_LIMIT_NAME + 1];
    char id[ULID_LEN + 1];
};

struct webhooks {
    struct executor *ex;
    CURLM *multi;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu; /* guards adds and stopping */
    struct wh_add *adds;
    bool stopping;
    struct wh_session *sessions; /* worker thread only */
    size_t inflight;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- targets ---------------------------------------------------------------------------------- */

enum addr_class { ADDR_PUBLIC, ADDR_LOOPBACK, ADDR_PRIVATE, ADDR_NEVER };

static enum addr_class v4_class(uint32_t a) { /* host order */
    uint8_t b0 = (uint8_t)(a >> 24), b1 = (uint8_t)(a >> 16);
    if (b0 == 127)
        return ADDR_LOOPBACK;
    if (b0 == 10 || (b0 == 172 && (b1 & 0xf0) == 16) || (b0 == 192 && b1 == 168) ||
        (b0 == 100 && (b1 & 0xc0) == 64)) /* RFC 1918, carrier-grade NAT */
        return ADDR_PRIVATE;
    if (b0 == 0 || (b0 == 169 && b1 == 254) || b0 >= 224) /* this host, link-local, multicast */
        return ADDR_NEVER;
    return ADDR_PUBLIC;
}

static enum addr_class addr_class(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return v4_class(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family != AF_INET6)
        return ADDR_NEVER;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
        uint32_t v4;
        memcpy(&v4, a->s6_addr + 12, 4);
        return v4_class(ntohl(v4));
    }
    if (IN6_IS_ADDR_LOOPBACK(a))
        return ADDR_LOOPBACK;
    if ((a->s6_addr[0] & 0xfe) == 0xfc) /* unique local fc00::/7 */
        return ADDR_PRIVATE;
    if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LINKLOCAL(a) || IN6_IS_ADDR_MULTICAST(a) ||
        IN6_IS_ADDR_SITELOCAL(a))
        return ADDR_NEVER;
    return ADDR_PUBLIC;
}

static bool class_allowed(const struct exec_config *c, enum addr_class k) {
    return k == ADDR_PUBLIC || (k == ADDR_LOOPBACK && c->webhook_allow_loopback) ||
           (k == ADDR_PRIVATE && c->webhook_allow_private);
}

bool webhook_addr_allowed(const struct exec_config *c, const struct sockaddr *sa) {
    return class_allowed(c, addr_class(sa));
}

/* The class of a literal host (an IP address, possibly in brackets, or localhost); -1 for a
 * name only DNS can place. */
static int host_class(const char *host) {
    char buf[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, host, &v4.sin_addr) == 1)
        return (int)addr_class((struct sockaddr *)&v4);
    if (inet_pton(AF_INET6, host, &v6.sin6_addr) == 1)
        return (int)addr_class((struct sockaddr *)&v6);
    if (!strcasecmp(host, "localhost") || (n > 10 && !strcasecmp(host + n - 10, ".localhost")))
        return ADDR_LOOPBACK;
    return -1;
}

int exec_webhook_url_check(struct executor *ex, const char *url, char *why, size_t n) {
    pthread_once(&curl_once, curl_init);
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = AH_E_INVAL;
    if (!u)
        return AH_E_NOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(why, n, "is not a valid URL");
        goto out;
    }
    int k = host_class(host);
    if (!strcasecmp(scheme, "http")) {
        if (!ex->cfg.webhook_allow_loopback)
            snprintf(why, n, "must be an https:// URL");
        else if (k != ADDR_LOOPBACK)
            snprintf(why, n, "must be an https:// URL (http:// is allowed to loopback only)");
        else
            rc = 0;
    } else if (strcasecmp(scheme, "https") != 0) {
        snprintf(why, n, "must be an https:// URL");
    } else if (k >= 0 && !class_allowed(&ex->cfg, (enum addr_class)k)) {
        snprintf(why, n, "must not name a loopback, private, link-local or multicast address");
    } else {
        rc = 0;
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* libcurl asks us for every socket it connects: the address is known here, after DNS. */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a) {
    struct wh_hook *h = arg;
    (void)purpose;
    if (!webhook_addr_allowed(h->cfg, &a->addr)) {
        h->refused = true;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static size_t discard(char *p, size_t size, size_t nmemb, void *arg) {
    struct wh_hook *h = arg;
    (void)p;
    h->resp_bytes += size * nmemb;
    return h->resp_bytes > WH_RESPONSE_MAX ? 0 : size * nmemb;
}

/* ---- durable state ---------------------------------------------------------------------------- */

static int path_of(struct webhooks *w, const char *id, char *out, size_t n) {
    int k = snprintf(out, n, "%s/sessions/%s/webhooks.json", w->ex->cfg.data_dir, id);
    return k > 0 && (size_t)k < n ? 0 : AH_E_TOOLARGE;
}

static int index_path(const char *data_dir, const char *id, char *out, size_t n) {
    int k = snprintf(out, n, "%s/" WH_INDEX_DIR "/%s", data_dir, id);
    return k > 0 && (size_t)k < n ? 0 : AH_E_TOOLARGE;
}

/* Writes path atomically and durably: a temporary file, fsync, rename, fsync of the directory. */
static int write_durable(const char *path, const char *data, size_t len) {
    char tmp[4200], dir[4200];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return AH_E_TOOLARGE;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ah_err_from_errno(errno);
    int rc = 0;
    for (size_t off = 0; off < len;) {
        ssize_t k = write(fd, data + off, len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            rc = ah_err_from_errno(errno);
            break;
        }
        off += (size_t)k;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = ah_err_from_errno(errno);
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = ah_err_from_errno(errno);
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return 0;
}

static json_t *ms_or_null(int64_t ms) {
    return ms > 0 ? json_integer(ms) : json_null();
}

static int save(struct webhooks *w, struct wh_session *s, bool done) {
    json_t *hooks = json_array();
    for (size_t i = 0; hooks && i < s->n; i++) {
        struct wh_hook *h = &s->hooks[i];
        json_array_append_new(
            hooks,
            json_pack("{s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:I, s:s, s:b, s:I}", "cursor",
                      (json_int_t)h->cursor, "delivered", (json_int_t)h->delivered, "failed",
                      (json_int_t)h->failed, "attempts", (json_int_t)h->attempts,
                      "firstFailureAt", ms_or_null(h->first_fail_ms), "nextAttemptAt",
                      ms_or_null(h->attempts ? h->next_at_ms : 0), "lastAttemptAt",
                      ms_or_null(h->last_attempt_ms), "lastSuccessAt",
                      ms_or_null(h->last_success_ms), "lastStatus", (json_int_t)h->last_status,
                      "lastError", h->last_error, "done", h->done, "pendingSeq",
                      (json_int_t)(h->cur ? h->cur->seq : 0)));
    }
    json_t *o = json_pack("{s:s, s:s, s:o, s:b}", "tenantId", s->tenant, "sessionId", s->id,
                          "hooks", hooks, "done", done);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    char path[4096];
    int rc = text ? path_of(w, s->id, path, sizeof(path)) : AH_E_NOMEM;
    if (rc == 0) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/sessions/%s", w->ex->cfg.data_dir, s->id);
        rc = make_dirs(dir, 0700);
    }
    if (rc == 0)
        rc = write_durable(path, text, strlen(text));
    free(text);
    if (rc < 0)
        log_msg(LOG_ERROR, "webhooks: cannot save the delivery state of session %s: %s", s->id,
                ah_strerror(rc));
    else
        s->dirty = false;
    return rc;
}

static json_t *load_state(const char *data_dir, const char *id) {
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/sessions/%s/webhooks.json", data_dir, id) >=
        (int)sizeof(path))
        return NULL;
    char *text = NULL;
    size_t len = 0;
    if (read_file(path, WH_STATE_MAX, &text, &len) < 0)
        return NULL;
    json_t *o = json_loadb(text, len, 0, NULL);
    free(text);
    return json_is_object(o) ? o : (json_decref(o), NULL);
}

/* ---- the sessions followed -------------------------------------------------------------------- */

static void wake(void *arg) {
    struct webhooks *w = arg;
    curl_multi_wakeup(w->multi); /* short and thread-safe: the bus writer calls this */
}

static void hook_clear_request(struct wh_hook *h) {
    free(h->body);
    h->body = NULL;
    curl_slist_free_all(h->hdrs);
    h->hdrs = NULL;
}

static void session_free(struct webhooks *w, struct wh_session *s) {
    for (size_t i = 0; i < s->n; i++) {
        struct wh_hook *h = &s->hooks[i];
        if (h->easy) {
            curl_multi_remove_handle(w->multi, h->easy);
            curl_easy_cleanup(h->easy);
            w->inflight--;
        }
        bus_unsubscribe(h->sub);
        bus_event_unref(h->cur);
        hook_clear_request(h);
        free(h->url);
        free(h->secret);
        json_decref(h->events);
    }
    free(s->hooks);
    free(s);
}

static bool followed(struct webhooks *w, const char *id) {
    for (struct wh_session *s = w->sessions; s; s = s->next)
        if (!strcmp(s->id, id))
            return true;
    return false;
}

static void unindex(struct webhooks *w, const char *id) {
    char path[4096];
    if (index_path(w->ex->cfg.data_dir, id, path, sizeof(path)) == 0)
        unlink(path);
}

/* Starts following a session: its webhooks from the task's request, their cursors from the
 * saved state. A session that no longer exists, or whose deliveries are all made, leaves the
 * index. */
static void follow(struct webhooks *w, const char *tenant, const char *id) {
    if (followed(w, id))
        return;
    struct session_row *row = NULL;
    int rc = store_session_get(w->ex->store, tenant, id, &row);
    if (rc == AH_E_NOTFOUND) {
        unindex(w, id);
        return;
    }
    if (rc < 0) {
        log_msg(LOG_ERROR, "webhooks: cannot read session %s (%s); retried at the next start", id,
                ah_strerror(rc));
        return;
    }
    json_t *hooks = json_object_get(session_row_request(row), "webhooks");
    json_t *state = load_state(w->ex->cfg.data_dir, id);
    json_t *saved = json_object_get(state, "hooks");
    struct wh_session *s = calloc(1, sizeof(*s));
    size_t n = json_array_size(hooks);
    if (!s || !n || json_is_true(json_object_get(state, "done"))) {
        if (s) /* nothing (more) to deliver; without memory the entry stays for the next start */
            unindex(w, id);
        free(s);
        json_decref(state);
        session_row_free(row);
        return;
    }
    snprintf(s->tenant, sizeof(s->tenant), "%s", tenant);
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->task_id, sizeof(s->task_id), "%s", row->task_id);
    s->hooks = calloc(n, sizeof(*s->hooks));
    rc = s->hooks ? 0 : AH_E_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++, s->n++) {
        json_t *def = json_array_get(hooks, i), *st = json_array_get(saved, i);
        struct wh_hook *h = &s->hooks[i];
        h->s = s;
        h->cfg = &w->ex->cfg;
        h->idx = i;
        const char *secret = json_string_value(json_object_get(def, "secret"));
        h->url = strdup(json_string_value(json_object_get(def, "url")) ?: "");
        h->secret = secret ? strdup(secret) : NULL;
        json_t *ev = json_object_get(def, "events");
        h->events = ev ? json_incref(ev) : json_pack("[O]", json_object_get(def, "event"));
        h->cursor = json_integer_value(json_object_get(st, "cursor"));
        h->delivered = json_integer_value(json_object_get(st, "delivered"));
        h->failed = json_integer_value(json_object_get(st, "failed"));
        h->attempts = json_integer_value(json_object_get(st, "attempts"));
        h->first_fail_ms = json_integer_value(json_object_get(st, "firstFailureAt"));
        h->next_at_ms = json_integer_value(json_object_get(st, "nextAttemptAt"));
        h->last_attempt_ms = json_integer_value(json_object_get(st, "lastAttemptAt"));
        h->last_success_ms = json_integer_value(json_object_get(st, "lastSuccessAt"));
        h->last_status = (long)json_integer_value(json_object_get(st, "lastStatus"));
        snprintf(h->last_error, sizeof(h->last_error), "%s",
                 json_string_value(json_object_get(st, "lastError")) ?: "");
        h->done = json_is_true(json_object_get(st, "done"));
        if (!h->url || (secret && !h->secret) || !json_is_array(h->events))
            rc = AH_E_NOMEM;
        else if (!h->done)
            rc = bus_subscribe(w->ex->bus, tenant, id, h->cursor, wake, w, &h->sub);
    }
    json_decref(state);
    session_row_free(row);
    if (rc < 0) {
        log_msg(LOG_ERROR, "webhooks: cannot follow session %s: %s; retried at the next start", id,
                ah_strerror(rc));
        session_free(w, s);
        return;
    }
    s->next = w->sessions;
    w->sessions = s;
}

/* At start: the index, then live sessions with webhooks that have no entry (a crash between the
 * task's commit and its entry). */
static void follow_saved(struct webhooks *w) {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/" WH_INDEX_DIR, w->ex->cfg.data_dir);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || strlen(e->d_name) != ULID_LEN)
            continue;
        char path[4400], *tenant = NULL;
        size_t len = 0;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (read_file(path, AH_LIMIT_NAME + 1, &tenant, &len) == 0 && len > 0 &&
            len <= AH_LIMIT_NAME && strlen(tenant) == len)
            follow(w, tenant, e->d_name);
        free(tenant);
    }
    if (d)
        closedir(d);
    struct session_row **rows = NULL;
    size_t n = 0;
    if (store_session_list_live(w->ex->store, &rows, &n) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!json_array_size(json_object_get(session_row_request(rows[i]), "webhooks")) ||
            followed(w, rows[i]->id))
            continue;
        json_t *st = load_state(w->ex->cfg.data_dir, rows[i]->id);
        if (!st)
            exec_webhooks_add(w->ex, rows[i]->tenant_id, rows[i]->id);
        json_decref(st);
    }
    session_rows_free(rows, n);
}

/* ---- deliveries ------------------------------------------------------------------------------- */

/* The webhook name of an event (session.<status> for a status event, else session.<type>) and
 * whether the hook asked for it. */
static bool wanted(struct wh_hook *h, const struct bus_event *ev, json_t *obj) {
    const char *status = !strcmp(ev->type, "status")
                             ? json_string_value(json_object_get(obj, "status"))
                             : NULL;
    snprintf(h->name, sizeof(h->name), "session.%s", status ? status : ev->type);
    size_t i;
    json_t *n;
    json_array_foreach(h->events, i, n) {
        const char *s = json_string_value(n);
        if (!s || strncmp(s, "session.", 8) != 0)
            continue;
        s += 8;
        if (!strcmp(s, "*") || !strcmp(s, ev->type) || (status && !strcmp(s, status)) ||
            (ev->terminal && !strcmp(s, "ended")))
            return true;
    }
    return false;
}

static void hex(const unsigned char *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The request for h->cur: the body (the same on every attempt) and its headers. */
static int build_request(struct wh_hook *h, json_t *obj) {
    char delivery[96];
    snprintf(delivery, sizeof(delivery), "%s-%zu-%lld", h->s->id, h->idx,
             (long long)h->cur->seq);
    json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:O}", "id", delivery, "event",
                             h->name, "tenantId", h->s->tenant, "taskId", h->s->task_id,
                             "sessionId", h->s->id, "seq", (json_int_t)h->cur->seq, "data", obj);
    h->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!h->body)
        return AH_E_NOMEM;
    char line[256];
    struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(line, sizeof(line), "X-AH-Event: %s", h->name);
    l = l ? curl_slist_append(l, line) : NULL;
    snprintf(line, sizeof(line), "X-AH-Delivery: %s", delivery);
    l = l ? curl_slist_append(l, line) : NULL;
    snprintf(line, sizeof(line), "X-AH-Seq: %lld", (long long)h->cur->seq);
    l = l ? curl_slist_append(l, line) : NULL;
    snprintf(line, sizeof(line), "X-AH-Session-Id: %s", h->s->id);
    l = l ? curl_slist_append(l, line) : NULL;
    l = l ? curl_slist_append(l, "Expect:") : NULL; /* no 100-continue round trip */
    if (l && h->secret) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        char mdhex[2 * EVP_MAX_MD_SIZE + 1];
        if (!HMAC(EVP_sha256(), h->secret, (int)strlen(h->secret),
                  (const unsigned char *)h->body, strlen(h->body), md, &mdlen)) {
            curl_slist_free_all(l);
            return AH_E_INTERNAL;
        }
        hex(md, mdlen, mdhex);
        snprintf(line, sizeof(line), "X-AH-Signature: sha256=%s", mdhex);
        l = curl_slist_append(l, line);
    }
    if (!l)
        return AH_E_NOMEM;
    h->hdrs = l;
    return 0;
}

static void pass_over(struct wh_hook *h, int64_t seq, bool terminal) {
    h->cursor = seq;
    if (terminal)
        h->done = true; /* nothing follows a terminal status */
}

/* Takes the next wanted event after the cursor into h->cur. *more: stopped at the per-turn cap. */
static void next_event(struct webhooks *w, struct wh_hook *h, int64_t now, bool *more) {
    (void)w;
    for (int k = 0; k < WH_SKIP_PER_ROUND; k++) {
        struct bus_event *ev = NULL;
        int n = bus_next(h->sub, &ev, 1);
        if (n < 0) {
            snprintf(h->last_error, sizeof(h->last_error), "cannot read the events: %s",
                     ah_strerror(n));
            h->next_at_ms = now + 1000;
            return;
        }
        if (n == 0)
            return;
        json_t *obj = json_loadb(ev->json, ev->len, 0, NULL);
        if (obj && wanted(h, ev, obj)) {
            h->cur = ev;
            int rc = build_request(h, obj);
            json_decref(obj);
            if (rc < 0) { /* out of memory: keep the event, try again in a second */
                hook_clear_request(h);
                h->next_at_ms = now + 1000;
            }
            return;
        }
        json_decref(obj);
        pass_over(h, ev->seq, ev->terminal);
        h->s->dirty |= ev->terminal;
        bus_event_unref(ev);
        if (h->done)
            return;
    }
    *more = true;
}

static int start(struct webhooks *w, struct wh_hook *h, int64_t now) {
    if (!h->body) { /* a build that failed for memory */
        json_t *obj = json_loadb(h->cur->json, h->cur->len, 0, NULL);
        int rc = obj ? build_request(h, obj) : AH_E_NOMEM;
        json_decref(obj);
        if (rc < 0) {
            hook_clear_request(h);
            h->next_at_ms = now + 1000;
            return rc;
        }
    }
    CURL *c = curl_easy_init();
    if (!c) {
        h->next_at_ms = now + 1000;
        return AH_E_NOMEM;
    }
    long timeout = (long)w->ex->cfg.webhook_timeout_ms;
    curl_easy_setopt(c, CURLOPT_URL, h->url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, h->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(h->body));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "agent-harbor-webhooks/1");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout < 5000 ? timeout : 5000L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(c, CURLOPT_PRIVATE, h);
    h->resp_bytes = 0;
    h->refused = false;
    if (curl_multi_add_handle(w->multi, c) != CURLM_OK) {
        curl_easy_cleanup(c);
        h->next_at_ms = now + 1000;
        return AH_E_INTERNAL;
    }
    h->easy = c;
    h->last_attempt_ms = now;
    w->inflight++;
    return 0;
}

static void finished(struct webhooks *w, struct wh_hook *h, CURLcode res) {
    long code = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(w->multi, h->easy);
    curl_easy_cleanup(h->easy);
    h->easy = NULL;
    w->inflight--;
    int64_t now = time_now_ms();
    h->last_status = code;
    h->s->dirty = true;
    bool ok = code >= 200 && code < 300 && (res == CURLE_OK || res == CURLE_WRITE_ERROR);
    if (ok) {
        h->delivered++;
        h->last_success_ms = now;
        h->last_error[0] = '\0';
    } else {
        if (h->refused)
            snprintf(h->last_error, sizeof(h->last_error),
                     "the receiver's address is not allowed (loopback, private, link-local or "
                     "multicast)");
        else if (res != CURLE_OK)
            snprintf(h->last_error, sizeof(h->last_error), "%s", curl_easy_strerror(res));
        else
            snprintf(h->last_error, sizeof(h->last_error), "the receiver answered HTTP %ld",
                     code);
        if (!h->first_fail_ms)
            h->first_fail_ms = now;
        h->attempts++;
        if (now - h->first_fail_ms < w->ex->cfg.webhook_retry_for_ms) {
            int64_t delay = w->ex->cfg.webhook_retry_base_ms;
            for (int64_t i = 1; i < h->attempts && delay < WH_BACKOFF_CAP_MS; i++)
                delay *= 2;
            h->next_at_ms = now + (delay < WH_BACKOFF_CAP_MS ? delay : WH_BACKOFF_CAP_MS);
            return;
        }
        h->failed++; /* retried long enough: counted, and the webhook moves on */
        log_msg(LOG_WARN, "webhooks: session %s webhook %zu gave up on event %lld after %lld "
                          "attempts: %s",
                h->s->id, h->idx, (long long)h->cur->seq, (long long)h->attempts, h->last_error);
    }
    h->attempts = 0;
    h->first_fail_ms = 0;
    h->next_at_ms = 0;
    pass_over(h, h->cur->seq, h->cur->terminal);
    bus_event_unref(h->cur);
    h->cur = NULL;
    hook_clear_request(h);
}

/* One turn over every hook: start what is due. Returns how long the loop may sleep. */
static long turn(struct webhooks *w) {
    int64_t now = time_now_ms(), wait = WH_IDLE_WAIT_MS;
    bool more = false;
    for (struct wh_session *s = w->sessions; s; s = s->next)
        for (size_t i = 0; i < s->n; i++) {
            struct wh_hook *h = &s->hooks[i];
            if (h->done || h->easy)
                continue;
            if (h->next_at_ms > now) {
                if (h->next_at_ms - now < wait)
                    wait = h->next_at_ms - now;
                continue;
            }
            if (!h->cur)
                next_event(w, h, now, &more);
            if (h->cur && h->next_at_ms <= now && w->inflight < WH_INFLIGHT_MAX)
                start(w, h, now);
            else if (h->next_at_ms > now && h->next_at_ms - now < wait)
                wait = h->next_at_ms - now;
        }
    return more ? 0 : (long)wait;
}

/* Saves what changed and lets go of sessions whose deliveries are all made. */
static void settle(struct webhooks *w) {
    for (struct wh_session **p = &w->sessions; *p;) {
        struct wh_session *s = *p;
        bool all = true;
        for (size_t i = 0; i < s->n; i++)
            all &= s->hooks[i].done && !s->hooks[i].easy;
        if (s->dirty || all)
            save(w, s, all);
        if (all && !s->dirty) {
            unindex(w, s->id);
            *p = s->next;
            session_free(w, s);
        } else {
            p = &s->next;
        }
    }
}

static void *worker(void *arg) {
    struct webhooks *w = arg;
    follow_saved(w);
    for (;;) {
        pthread_mutex_lock(&w->mu);
        bool stopping = w->stopping;
        struct wh_add *adds = w->adds;
        w->adds = NULL;
        pthread_mutex_unlock(&w->mu);
        while (adds) {
            struct wh_add *a = adds;
            adds = a->next;
            if (!stopping)
                follow(w, a->tenant, a->id);
            free(a);
        }
        if (stopping)
            break;
        long wait = turn(w);
        int running = 0;
        curl_multi_perform(w->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(w->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct wh_hook *h = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&h);
            if (h)
                finished(w, h, m->data.result);
            wait = 0; /* its next event may be ready */
        }
        settle(w);
        curl_multi_poll(w->multi, NULL, 0, (int)wait, NULL);
    }
    for (struct wh_session *s = w->sessions; s;) {
        struct wh_session *next = s->next;
        if (s->dirty)
            save(w, s, false);
        session_free(w, s);
        s = next;
    }
    w->sessions = NULL;
    return NULL;
}

/* ---- the executor's calls --------------------------------------------------------------------- */

int webhooks_start(struct executor *ex) {
    if (ex->cfg.webhook_timeout_ms <= 0)
        ex->cfg.webhook_timeout_ms = 10000;
    if (ex->cfg.webhook_retry_base_ms <= 0)
        ex->cfg.webhook_retry_base_ms = 1000;
    if (ex->cfg.webhook_retry_for_ms <= 0)
        ex->cfg.webhook_retry_for_ms = 24LL * 3600 * 1000;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return AH_E_INTERNAL;
    struct webhooks *w = calloc(1, sizeof(*w));
    if (!w)
        return AH_E_NOMEM;
    w->ex = ex;
    pthread_mutex_init(&w->mu, NULL);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/" WH_INDEX_DIR, ex->cfg.data_dir);
    int rc = make_dirs(dir, 0700);
    if (rc == 0 && !(w->multi = curl_multi_init()))
        rc = AH_E_NOMEM;
    ex->hooks = w; /* before the thread: follow_saved may add through ex */
    if (rc == 0 && pthread_create(&w->thread, NULL, worker, w) != 0)
        rc = AH_E_NOMEM;
    if (rc < 0) {
        ex->hooks = NULL;
        if (w->multi)
            curl_multi_cleanup(w->multi);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return rc;
    }
    w->started = true;
    return 0;
}

void webhooks_stop(struct executor *ex) {
    struct webhooks *w = ex->hooks;
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_mutex_unlock(&w->mu);
    curl_multi_wakeup(w->multi);
    pthread_join(w->thread, NULL);
    ex->hooks = NULL;
    while (w->adds) {
        struct wh_add *a = w->adds;
        w->adds = a->next;
        free(a);
    }
    curl_multi_cleanup(w->multi);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int exec_webhooks_add(struct executor *ex, const char *tenant, const char *id) {
    struct webhooks *w = ex->hooks;
    if (!w || strlen(tenant) > AH_LIMIT_NAME || strlen(id) != ULID_LEN)
        return AH_E_INVAL;
    char path[4096];
    int rc = index_path(ex->cfg.data_dir, id, path, sizeof(path));
    if (rc == 0)
        rc = write_durable(path, tenant, strlen(tenant));
    struct wh_add *a = rc == 0 ? calloc(1, sizeof(*a)) : NULL;
    if (!a)
        return rc < 0 ? rc : AH_E_NOMEM; /* the entry (if written) is followed at the next start */
    snprintf(a->tenant, sizeof(a->tenant), "%s", tenant);
    snprintf(a->id, sizeof(a->id), "%s", id);
    pthread_mutex_lock(&w->mu);
    a->next = w->adds;
    w->adds = a;
    pthread_mutex_unlock(&w->mu);
    curl_multi_wakeup(w->multi);
    return 0;
}

json_t *exec_webhooks_state(struct executor *ex, const char *id) {
    return load_state(ex->cfg.data_dir, id);
}
