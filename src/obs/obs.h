/*
 * obs.h — observability: the process's metrics (Prometheus text exposition, D49) and W3C trace
 * context (D48). The lowest layer beside core/: http, bus, store and exec count into it; the
 * /metrics route renders it.
 *
 * Metrics. A family (one metric name, one HELP/TYPE) has a fixed set of series (label sets)
 * chosen when it is registered, so the hot path never allocates, looks up a name or takes a
 * lock: a series is a slot index, and a count is one relaxed atomic add into the calling
 * thread's shard of a slot array (threads are spread over OBS_SHARDS shards, so two threads
 * rarely touch one cache line). Rendering sums the shards. Labels come from route templates,
 * status classes and state names, never from ids (D49).
 *
 * Registration takes a mutex and may run at any time (families of a file register from a
 * constructor, the HTTP server registers one series per route when it starts); once registered
 * a family lives until the process exits. Every call accepts a NULL family (registration failed
 * or the table is full): counting into it does nothing.
 */
#ifndef AH_OBS_H
#define AH_OBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

enum obs_type { OBS_COUNTER, OBS_GAUGE, OBS_HISTOGRAM };

#define OBS_MAX_FAMILIES 96
#define OBS_MAX_SLOTS 8192 /* per shard; a histogram series takes buckets + 2 */
#define OBS_MAX_BUCKETS 16

struct obs_family;

/* Registers `name` (must match [a-zA-Z_:][a-zA-Z0-9_:]*) with n series. labels[i] is the i-th
 * series' label set in exposition syntax without braces (`route="/x",code="2xx"`, values
 * already escaped), or NULL / "" for none; the strings are copied. A histogram takes its upper
 * bounds (ascending, in the unit observed; +Inf is implied). Returns NULL when the table is
 * full or on OOM. Thread-safe. */
struct obs_family *obs_register(const char *name, const char *help, enum obs_type type,
                                const char *const *labels, size_t n, const double *bounds,
                                size_t n_bounds);
/* The same for a family without labels. */
struct obs_family *obs_register1(const char *name, const char *help, enum obs_type type,
                                 const double *bounds, size_t n_bounds);

/* Counter or gauge: adds v to series i (a gauge may go down: obs_add(f, i, -1)). Lock-free. */
void obs_add(struct obs_family *f, size_t i, int64_t v);
/* Histogram: records one observation v of series i. Values are kept in millionths of the
 * unit (so seconds to the microsecond; sizes must be whole numbers). Lock-free. */
void obs_observe(struct obs_family *f, size_t i, double v);
/* Current value of a counter/gauge series (sum of the shards), or a histogram series' count. */
int64_t obs_value(const struct obs_family *f, size_t i);

/* A collector appends whole families computed at scrape time (sessions by state, process
 * figures) with obs_write_header/obs_write_sample. It runs on the scraping thread. */
typedef void (*obs_collect_fn)(struct ah_buf *out, void *ctx);
int obs_collector_add(obs_collect_fn fn, void *ctx); /* 0, or AH_E_NOMEM when full */
void obs_collector_remove(obs_collect_fn fn, void *ctx);
void obs_write_header(struct ah_buf *out, const char *name, const char *help, enum obs_type t);
void obs_write_sample(struct ah_buf *out, const char *name, const char *labels, double v);

/* Appends the exposition (text format 0.0.4) of every family and collector. 0 or AH_E_NOMEM /
 * AH_E_TOOLARGE from the buffer. */
int obs_render(struct ah_buf *out);

/* Escapes a label value (\\, \", \n) into dst of size dsz (truncating). */
void obs_label_escape(char *dst, size_t dsz, const char *v);
/* "1xx" … "5xx" for an HTTP status. */
const char *obs_status_class(int status);

/* The process figures every exporter shows (CPU seconds, resident memory, open and maximum
 * descriptors, start time), as ah_process_*: registers their collector once. */
void obs_process_collector(void);

/* Seconds since an arbitrary point (CLOCK_MONOTONIC), for timing with obs_observe. */
double obs_now(void);

/* ---- systemd (notify.c) ---------------------------------------------------------------------- */

/* Type=notify: READY=1 / STOPPING=1 (no-ops outside systemd). */
void obs_notify_ready(void);
void obs_notify_stopping(void);
/* When systemd set a watchdog for this process, pings it every half period from a thread while
 * healthy(ctx) is true. 0 (also when there is no watchdog) or AH_E_NOMEM. */
int obs_watchdog_start(bool (*healthy)(void *ctx), void *ctx);
void obs_watchdog_stop(void); /* joins the thread; safe when none was started */

/* ---- W3C trace context (D48) ----------------------------------------------------------------- */

struct obs_trace {
    char trace_id[33]; /* 32 lower-case hex digits, not all zero */
    char span_id[17];  /* this hop's span: 16 hex digits */
    char parent_id[17]; /* the caller's span, "" when we started the trace */
    uint8_t flags;      /* trace-flags (bit 0: sampled) */
};

/* Parses a `traceparent` header value (version 00 form; a higher version is read by its first
 * four fields as the spec asks). 0, or AH_E_INVAL when it must be ignored. ret is written only
 * on success; its span_id is left empty. */
int obs_traceparent_parse(const char *value, struct obs_trace *ret);
/* A trace for a request: the caller's traceparent continued (parent_id = its span) when valid,
 * else a new root; either way a fresh span id. 0, or an error from the random source. */
int obs_trace_start(const char *traceparent, struct obs_trace *ret);
/* Formats `00-<trace>-<span>-<flags>` into out (at least 56 bytes). */
void obs_traceparent_format(const struct obs_trace *t, char out[56]);
/* The span this thread works for (log_trace_set: an HTTP request, a session's provisioning…)
 * as a traceparent: false when it works for none. */
bool obs_trace_current(char out[56]);
/* A new span that is the child of the thread's current span: 0, AH_E_NOTFOUND when the thread
 * works for none (the caller then exports nothing), or an error from the random source. */
int obs_trace_child(struct obs_trace *ret);

/* ---- span export: OTLP/HTTP JSON (otlp.c) --------------------------------------------------- */

#define OBS_SPAN_ATTRS 6
#define OBS_SPAN_LINKS 8

/* One finished span. Borrowed by obs_span_export, which copies what it keeps. */
struct obs_span {
    const char *name;       /* "GET /api/v1/sessions/{id}", "provisioning"… (cut at 63 bytes) */
    int kind;               /* OTLP SpanKind: 1 internal, 2 server, 3 client */
    struct obs_trace trace; /* trace_id, span_id (this span), parent_id ("" for a root) */
    int64_t start_ns, end_ns; /* wall clock (obs_wall_ns) */
    bool error;
    struct {
        const char *key;   /* a string literal; NULL ends the list */
        const char *value; /* copied (cut at 127 bytes); NULL skips the attribute */
    } attrs[OBS_SPAN_ATTRS];
    /* Spans of other traces this one relates to (a store batch: the spans whose writes it
     * commits); copied. */
    struct obs_link {
        char trace_id[33], span_id[17];
    } links[OBS_SPAN_LINKS];
    size_t n_links;
};

/* Starts the exporter thread posting spans to endpoint (http:// or https://; a URL without a
 * path gets the collector's /v1/traces) as service `service`. 0 (also for a NULL or empty
 * endpoint: export stays off), AH_E_INVAL for another scheme, AH_E_NOMEM. Call once at start. */
int obs_otlp_start(const char *endpoint, const char *service);
/* Flushes what is queued (each batch bounded by a 5 s timeout), stops and joins the thread. */
void obs_otlp_stop(void);
bool obs_otlp_enabled(void);
/* Sets (or replaces) a resource attribute sent with every later batch besides service.name —
 * the executor's SPIFFE id once its link knows it. Up to 4 keys (others are ignored); the key
 * is a string literal, the value is copied (cut at 255 bytes). Thread-safe. */
void obs_otlp_resource(const char *key, const char *value);
/* The traces URL spans go to while export runs, else NULL (lent until obs_otlp_stop). */
const char *obs_otlp_url(void);
/* Queues a copy of s for export; a no-op while export is off; dropped and counted
 * (ah_otlp_spans_dropped_total) when the bounded queue is full. Never blocks on I/O. */
void obs_span_export(const struct obs_span *s);
/* Wall-clock nanoseconds since the Unix epoch, for span times. */
int64_t obs_wall_ns(void);

#endif
