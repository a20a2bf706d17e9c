/*
 * otlp.c — spans exported over OTLP/HTTP JSON (D48) when an endpoint is configured
 * (--otlp-endpoint on the server; AH_OTLP_ENDPOINT in the recorder it starts).
 *
 * Invariants:
 *  - Off the request path: obs_span_export copies the span into a bounded ring under a mutex
 *    and returns; one exporter thread takes up to OTLP_BATCH spans at a time (when that many
 *    are waiting, or every OTLP_FLUSH_MS) and POSTs them with libcurl. Nothing on a request's
 *    thread ever waits on the network.
 *  - Bounded: the ring holds OTLP_QUEUE spans. A span that finds it full is dropped and counted
 *    (ah_otlp_spans_dropped_total), and so is a batch the collector did not take (after one
 *    attempt: an exporter that retried would only fall further behind).
 *  - Stopping flushes what is queued (one attempt per batch, each bounded by the HTTP timeout)
 *    and joins the thread, so a short-lived process (the recorder) still delivers its spans.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "obs.h"

#define OTLP_QUEUE 4096
#define OTLP_BATCH 512
#define OTLP_FLUSH_MS 1000
#define OTLP_TIMEOUT_MS 5000

struct qspan {
    char name[64];
    char trace_id[33], span_id[17], parent_id[17];
    int kind;
    bool error;
    int64_t start_ns, end_ns;
    const char *keys[OBS_SPAN_ATTRS]; /* string literals */
    char values[OBS_SPAN_ATTRS][128];
    size_t n_attrs;
    struct obs_link links[OBS_SPAN_LINKS];
    size_t n_links;
};

#define OTLP_RESOURCE_MAX 4

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running, stopping;
    struct qspan *ring;
    size_t head, n;
    char *url, *service;
    struct {
        const char *key; /* a string literal */
        char value[256];
    } resource[OTLP_RESOURCE_MAX]; /* besides service.name; kept across restarts of export */
    size_t n_resource;
} q = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct obs_family *m_exported, *m_dropped, *m_failed;
__attribute__((constructor)) static void otlp_metrics(void) {
    m_exported = obs_register1("ah_otlp_spans_exported_total", "Spans the OTLP collector accepted",
                               OBS_COUNTER, NULL, 0);
    m_dropped = obs_register1("ah_otlp_spans_dropped_total",
                              "Spans dropped: the export queue was full or the collector refused "
                              "or did not answer",
                              OBS_COUNTER, NULL, 0);
    m_failed = obs_register1("ah_otlp_export_failures_total", "OTLP export requests that failed",
                             OBS_COUNTER, NULL, 0);
}

int64_t obs_wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool obs_otlp_enabled(void) {
    return __atomic_load_n(&q.running, __ATOMIC_ACQUIRE);
}

void obs_span_export(const struct obs_span *s) {
    if (!obs_otlp_enabled() || !s || !s->name || strlen(s->trace.trace_id) != 32 ||
        strlen(s->trace.span_id) != 16)
        return;
    pthread_mutex_lock(&q.mu);
    if (!q.running || q.n == OTLP_QUEUE) {
        pthread_mutex_unlock(&q.mu);
        obs_add(m_dropped, 0, 1);
        return;
    }
    struct qspan *d = &q.ring[(q.head + q.n) % OTLP_QUEUE];
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", s->name);
    memcpy(d->trace_id, s->trace.trace_id, sizeof(d->trace_id));
    memcpy(d->span_id, s->trace.span_id, sizeof(d->span_id));
    memcpy(d->parent_id, s->trace.parent_id, sizeof(d->parent_id));
    d->kind = s->kind;
    d->error = s->error;
    d->start_ns = s->start_ns;
    d->end_ns = s->end_ns > s->start_ns ? s->end_ns : s->start_ns;
    for (size_t i = 0; i < OBS_SPAN_ATTRS && s->attrs[i].key; i++) {
        if (!s->attrs[i].value)
            continue;
        d->keys[d->n_attrs] = s->attrs[i].key;
        snprintf(d->values[d->n_attrs], sizeof(d->values[0]), "%s", s->attrs[i].value);
        d->n_attrs++;
    }
    for (size_t i = 0; i < s->n_links && i < OBS_SPAN_LINKS; i++)
        if (strlen(s->links[i].trace_id) == 32 && strlen(s->links[i].span_id) == 16)
            d->links[d->n_links++] = s->links[i];
    q.n++;
    if (q.n >= OTLP_BATCH)
        pthread_cond_signal(&q.cv);
    pthread_mutex_unlock(&q.mu);
}

static json_t *any_value(const char *key, const char *v) {
    /* the OTel semantic conventions make these integers; everything else is a string */
    static const char *const ints[] = {"http.response.status_code", "ah.exit_code",
                                       "ah.batch_ops", "ah.batch_events", "ah.batch_sessions",
                                       "ah.queue_wait_ms"};
    for (size_t i = 0; i < sizeof(ints) / sizeof(*ints); i++)
        if (strcmp(key, ints[i]) == 0)
            return json_pack("{s:s}", "intValue", v);
    return json_pack("{s:s}", "stringValue", v);
}

static json_t *span_json(const struct qspan *s) {
    char start[24], end[24];
    snprintf(start, sizeof(start), "%lld", (long long)s->start_ns);
    snprintf(end, sizeof(end), "%lld", (long long)s->end_ns);
    json_t *attrs = json_array();
    for (size_t i = 0; attrs && i < s->n_attrs; i++)
        json_array_append_new(attrs, json_pack("{s:s, s:o}", "key", s->keys[i], "value",
                                               any_value(s->keys[i], s->values[i])));
    json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:o, s:{s:i}}", "traceId", s->trace_id,
                          "spanId", s->span_id, "name", s->name, "kind", s->kind,
                          "startTimeUnixNano", start, "endTimeUnixNano", end, "attributes",
                          attrs ? attrs : json_array(), "status", "code", s->error ? 2 : 0);
    if (j && s->parent_id[0])
        json_object_set_new(j, "parentSpanId", json_string(s->parent_id));
    json_t *links = j && s->n_links ? json_array() : NULL;
    for (size_t i = 0; links && i < s->n_links; i++)
        json_array_append_new(links, json_pack("{s:s, s:s}", "traceId", s->links[i].trace_id,
                                               "spanId", s->links[i].span_id));
    if (links)
        json_object_set_new(j, "links", links);
    return j;
}

static size_t discard(char *p, size_t size, size_t n, void *arg) {
    (void)p;
    (void)arg;
    return size * n;
}

/* One POST of n spans; counts the outcome. */
static void send_batch(CURL *curl, const struct qspan *spans, size_t n) {
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        json_array_append_new(list, span_json(&spans[i]));
    json_t *resource = json_pack("[{s:s, s:{s:s}}]", "key", "service.name", "value",
                                 "stringValue", q.service);
    pthread_mutex_lock(&q.mu);
    for (size_t i = 0; resource && i < q.n_resource; i++)
        json_array_append_new(resource, json_pack("{s:s, s:{s:s}}", "key", q.resource[i].key,
                                                  "value", "stringValue", q.resource[i].value));
    pthread_mutex_unlock(&q.mu);
    json_t *doc = list && resource
                      ? json_pack("{s:[{s:{s:o}, s:[{s:{s:s}, s:o}]}]}", "resourceSpans",
                                  "resource", "attributes", resource, "scopeSpans", "scope",
                                  "name", "agent-harbor", "spans", list)
                      : NULL;
    if (!list || !resource) { /* not packed: json_pack steals both only when called */
        json_decref(list);
        json_decref(resource);
    }
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    long code = 0;
    if (body && curl) {
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        if (curl_easy_perform(curl) == CURLE_OK)
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        curl_slist_free_all(h);
    }
    free(body);
    if (code >= 200 && code < 300) {
        obs_add(m_exported, 0, (int64_t)n);
    } else {
        obs_add(m_failed, 0, 1);
        obs_add(m_dropped, 0, (int64_t)n);
        log_msg(LOG_DEBUG, "otlp: %zu span(s) not exported (HTTP %ld)", n, code);
    }
}

static void *exporter_main(void *arg) {
    (void)arg;
    CURL *curl = curl_easy_init();
    if (curl) {
        curl_easy_setopt(curl, CURLOPT_URL, q.url);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)OTLP_TIMEOUT_MS);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    }
    struct qspan *batch = malloc(sizeof(*batch) * OTLP_BATCH);
    pthread_mutex_lock(&q.mu);
    for (;;) {
        if (q.n < OTLP_BATCH && !q.stopping) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += OTLP_FLUSH_MS / 1000;
            pthread_cond_timedwait(&q.cv, &q.mu, &until);
        }
        if (q.n == 0) {
            if (q.stopping)
                break;
            continue;
        }
        size_t n = q.n < OTLP_BATCH ? q.n : OTLP_BATCH;
        for (size_t i = 0; batch && i < n; i++)
            batch[i] = q.ring[(q.head + i) % OTLP_QUEUE];
        q.head = (q.head + n) % OTLP_QUEUE;
        q.n -= n;
        pthread_mutex_unlock(&q.mu);
        if (batch)
            send_batch(curl, batch, n);
        else
            obs_add(m_dropped, 0, (int64_t)n);
        pthread_mutex_lock(&q.mu);
    }
    pthread_mutex_unlock(&q.mu);
    free(batch);
    curl_easy_cleanup(curl);
    return NULL;
}

int obs_otlp_start(const char *endpoint, const char *service) {
    if (!endpoint || !*endpoint)
        return 0;
    if (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0)
        return AH_E_INVAL;
    pthread_mutex_lock(&q.mu);
    if (q.running) {
        pthread_mutex_unlock(&q.mu);
        return 0;
    }
    /* an endpoint without a path is the collector's base URL: its traces path is /v1/traces */
    const char *path = strchr(strstr(endpoint, "://") + 3, '/');
    size_t len = strlen(endpoint);
    bool base = !path || strcmp(path, "/") == 0;
    q.url = malloc(len + sizeof("/v1/traces"));
    q.service = strdup(service && *service ? service : "agent-harbor");
    q.ring = calloc(OTLP_QUEUE, sizeof(*q.ring));
    int rc = 0;
    pthread_condattr_t ca;
    if (!q.url || !q.service || !q.ring || pthread_condattr_init(&ca) != 0) {
        rc = AH_E_NOMEM;
    } else {
        snprintf(q.url, len + sizeof("/v1/traces"), "%.*s%s", (int)(len - (path && base)), endpoint,
                 base ? "/v1/traces" : "");
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q.cv, &ca);
        pthread_condattr_destroy(&ca);
        curl_global_init(CURL_GLOBAL_DEFAULT); /* once per process: refcounted by libcurl */
        q.head = q.n = 0;
        q.stopping = false;
        if (pthread_create(&q.thread, NULL, exporter_main, NULL) != 0) {
            pthread_cond_destroy(&q.cv);
            rc = AH_E_NOMEM;
        }
    }
    if (rc < 0) {
        free(q.url);
        free(q.service);
        free(q.ring);
        q.url = q.service = NULL;
        q.ring = NULL;
    } else {
        __atomic_store_n(&q.running, true, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&q.mu);
    return rc;
}

void obs_otlp_stop(void) {
    pthread_mutex_lock(&q.mu);
    if (!q.running) {
        pthread_mutex_unlock(&q.mu);
        return;
    }
    __atomic_store_n(&q.running, false, __ATOMIC_RELEASE); /* new spans are dropped from now */
    q.stopping = true;
    pthread_cond_signal(&q.cv);
    pthread_mutex_unlock(&q.mu);
    pthread_join(q.thread, NULL);
    pthread_mutex_lock(&q.mu);
    pthread_cond_destroy(&q.cv);
    free(q.url);
    free(q.service);
    free(q.ring);
    q.url = q.service = NULL;
    q.ring = NULL;
    pthread_mutex_unlock(&q.mu);
    curl_global_cleanup();
}

void obs_otlp_resource(const char *key, const char *value) {
    if (!key || !value)
        return;
    pthread_mutex_lock(&q.mu);
    size_t i = 0;
    while (i < q.n_resource && strcmp(q.resource[i].key, key) != 0)
        i++;
    if (i < OTLP_RESOURCE_MAX) {
        q.resource[i].key = key;
        snprintf(q.resource[i].value, sizeof(q.resource[i].value), "%s", value);
        if (i == q.n_resource)
            q.n_resource++;
    }
    pthread_mutex_unlock(&q.mu);
}

const char *obs_otlp_url(void) {
    return obs_otlp_enabled() ? q.url : NULL;
}
