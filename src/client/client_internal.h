/*
 * client_internal.h — private to src/client: the pieces of libah-client that are pure (and
 * unit-tested on their own) and the request machinery the typed calls share.
 *
 *   problem.c   Problem+JSON → struct ah_api_error; HTTP status / type slug → AH_E_*
 *   retry.c     back-off (ah_retry_delay_ms), which failures may be retried, Retry-After
 *   sse.c       the incremental text/event-stream parser
 *   client.c    the handle, its configuration, the curl handle pool, one call with retries
 *   stream.c    the SSE consumer with reconnect and de-duplication
 *   types.c     result structs from JSON, task spec to JSON, session status names
 *   calls.c     the typed calls (one per endpoint)
 *   cancel.c    cancellation tokens
 *   clock.c     real and virtual clocks
 *   tm.c        the task-manager wrapper and the remote implementation
 *   tm_mock.c   the mock implementation
 */
#ifndef AH_CLIENT_INTERNAL_H
#define AH_CLIENT_INTERNAL_H

#include <ah/client.h>
#include <ah/clock.h>
#include <ah/task_manager.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../core/core.h"

/* ---- problem.c ------------------------------------------------------------------------------- */

/* The AH_E_* for an answer: the Problem `type` slug (the last path segment of the URI, matched
 * against the AH_ERRORS table) when it names a code with the same HTTP status, else a
 * mapping of the status alone. A server-side "out-of-memory" becomes AH_E_UNAVAIL (it is not
 * this process that ran out). */
int problem_code_for(int status, const char *type);

/* Appends one request header line (printf-style, up to 511 bytes: AH_E_INVAL beyond). */
int client_add_header(struct curl_slist **list, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* When the response header line is `name: value`, replaces *dst with the trimmed value: 1;
 * another header (or a value over AH_LIMIT_HEADER): 0; out of memory: AH_E_NOMEM. */
int client_header_value(const char *line, size_t len, const char *name, char **dst);

/* An id argument worth sending: present, and not longer than 512 bytes (longer ones are
 * refused before anything is sent). */
static inline bool client_id_ok(const char *id) {
    return id && *id && strlen(id) <= 512;
}

/* Fills e (cleared first) from one non-2xx answer. body may be any bytes (a Problem, other JSON,
 * text or nothing); request_id_header and retry_after_ms (-1: none) come from the headers.
 * Returns e->code; out of memory, what could not be copied stays NULL (as in problem_local). */
int problem_from_response(struct ah_api_error *e, int status, const char *body, size_t len,
                          const char *request_id_header, int64_t retry_after_ms);

/* Fills e (cleared first) for a failure without an answer, or a local one. detail may be NULL
 * (then the code's title is used). */
void problem_local(struct ah_api_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds a field error to e (which must already have its code). AH_E_NOMEM on failure. */
int problem_add_field(struct ah_api_error *e, const char *field, const char *message);

/* Copies a core ah_problem (from a validator) into e, as the server would answer it. */
void problem_from_core(struct ah_api_error *e, const struct ah_problem *p);

/* ---- retry.c --------------------------------------------------------------------------------- */

/* How an attempt ended when no HTTP answer arrived. */
enum transport_class {
    TRANSPORT_OK = 0,  /* an answer arrived (look at the status) */
    TRANSPORT_CONNECT, /* could not resolve or connect: the request was surely not sent */
    TRANSPORT_IO,      /* the connection broke after (maybe) sending */
    TRANSPORT_TIMEOUT, /* the caller's deadline passed */
    TRANSPORT_FATAL    /* TLS verification, bad URL, OOM, aborted, …: retrying cannot help */
};

/* May this attempt be retried? `keyed`: the request carries an Idempotency-Key. Statuses 408,
 * 429, 502, 503, 504 and IO failures are retried for idempotent methods (GET, HEAD, PUT,
 * DELETE, OPTIONS) and keyed POSTs; CONNECT failures for every method; nothing else. */
bool retry_should(const char *method, bool keyed, int status, enum transport_class tc);

/* Retry-After (RFC 9110 §10.2.3): delta-seconds or an HTTP-date, as milliseconds from now_ms
 * (≥ 0). -1 when value is NULL or not valid. Values above one day are clamped to one day. */
int64_t retry_after_parse(const char *value, int64_t now_ms);

/* ---- sse.c ----------------------------------------------------------------------------------- */

/* One dispatched event (WHATWG HTML "event stream interpretation"). Strings are valid during
 * the callback only. */
struct sse_event {
    const char *type; /* the `event:` field, "message" when none */
    const char *data; /* the data lines joined by "\n" (no trailing newline) */
    size_t data_len;
    const char *id;   /* the last event id of the stream so far ("" when none) */
    bool id_in_event; /* this event carried its own `id:` line */
};

typedef int (*sse_event_fn)(void *userdata, const struct sse_event *ev);

struct sse_parser {
    struct ah_buf line; /* the line being assembled */
    struct ah_buf data; /* data of the event being assembled */
    struct ah_buf type; /* event type of the event being assembled */
    struct ah_buf id;   /* the last event id (persists across events, per the spec) */
    bool id_in_event;
    bool started;      /* past a leading BOM */
    bool after_cr;     /* the previous byte was a CR: skip one LF */
    int64_t retry_ms;  /* last valid `retry:` field, -1 when none */
    uint64_t comments; /* comment lines seen (keep-alives) */
    size_t max_event;  /* cap on one line and on one event's data; 0: 1 MiB */
};

void sse_parser_init(struct sse_parser *p);
/* Forgets a partly received event (after a reconnect) but keeps the last event id. */
void sse_parser_reset(struct sse_parser *p);
void sse_parser_clear(struct sse_parser *p);
/* Feeds bytes; calls cb for each complete event. Returns 0, the first non-zero value cb
 * returned (then the rest of buf is not parsed), AH_E_TOOLARGE when a line or an event passes
 * the cap, or AH_E_NOMEM. */
int sse_feed(struct sse_parser *p, const char *buf, size_t len, sse_event_fn cb, void *userdata);

/* ---- cancel.c -------------------------------------------------------------------------------- */

/* Hooks run (once, on the triggering thread) when a token is raised; used to wake waiters that
 * sleep on something other than the token itself. */
typedef void (*cancel_hook_fn)(void *userdata);
int cancel_hook_add(ah_cancel *k, cancel_hook_fn fn, void *userdata);
void cancel_hook_remove(ah_cancel *k, cancel_hook_fn fn, void *userdata);
/* Sleeps ms of real time, or less when k (nullable) is raised. 0, or AH_E_CANCELED. */
int cancel_sleep_ms(ah_cancel *k, int64_t ms);

/* ---- client.c: one logical call -------------------------------------------------------------- */

enum creq_flags {
    CREQ_NO_RETRY_STATUS = 1 << 0, /* the status is the answer (readyz 503): never retry it */
};

struct creq {
    const char *method; /* "GET", "POST", "PUT", "DELETE" */
    const char *path;   /* starts with "/", relative to the base URL, query included */
    const char *body;   /* NULL: no body */
    enum ah_endpoint ep;
    unsigned flags;
};

struct cresp {
    int status;
    struct ah_buf body;
    char *content_type; /* NULL when absent */
    char *request_id;   /* X-Request-Id, NULL when absent */
    int64_t retry_after_ms;
};
void cresp_clear(struct cresp *r);

/* Performs rq with retries. 0 with *rs filled on a 2xx answer; otherwise a negative AH_E_*
 * with reterr filled (rs cleared). */
int client_call(ah_client *c, const struct creq *rq, struct cresp *rs, struct ah_api_error *reterr);

/* Emits a log line through the client's callback when level passes its threshold. */
void client_log(ah_client *c, enum ah_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The pieces the SSE consumer needs: a snapshot of the configuration and a pooled handle
 * prepared with everything but the URL, the write callback and the timeouts. */
struct ccfg;
struct ccfg *client_cfg_get(ah_client *c);
void client_cfg_put(struct ccfg *cfg);
const struct ah_retry_policy *ccfg_retry(const struct ccfg *cfg);
int64_t ccfg_connect_ms(const struct ccfg *cfg, enum ah_endpoint ep);
int64_t ccfg_total_ms(const struct ccfg *cfg, enum ah_endpoint ep);
CURL *client_handle_get(ah_client *c);         /* NULL on OOM */
void client_handle_put(ah_client *c, CURL *h); /* back to the pool (NULL-safe) */
/* Resets h and applies the URL (base + path), TLS, credentials, the share and the common
 * options; appends the Authorization header to *headers. errbuf has CURL_ERROR_SIZE bytes.
 * 0 or AH_E_NOMEM. */
int client_prepare(ah_client *c, const struct ccfg *cfg, CURL *h, const char *path,
                   struct curl_slist **headers, char *errbuf);
/* Maps a CURLcode to an AH_E_* and a transport class. */
int client_curl_error(CURLcode cc, enum transport_class *ret_tc);
uint32_t client_random(ah_client *c);


/* ---- types.c --------------------------------------------------------------------------------- */

/* Builders from parsed JSON; they take a reference of their own (the caller keeps its own). */
int event_from_json_t(json_t *j, struct ah_event **ret);
int session_from_json_t(json_t *j, struct ah_session **ret);
int session_list_from_json_t(json_t *j, struct ah_session_list **ret);
int event_list_from_json_t(json_t *j, struct ah_event_list **ret);
int task_created_from_json_t(json_t *j, struct ah_task_created **ret);
int draft_from_json_t(json_t *j, struct ah_draft **ret);
int draft_list_from_json_t(json_t *j, struct ah_draft_list **ret);
int repo_list_from_json_t(json_t *j, struct ah_repo_list **ret);
int branch_list_from_json_t(json_t *j, struct ah_branch_list **ret);
int version_from_json_t(json_t *j, struct ah_version **ret);
int prompt_ack_from_json_t(json_t *j, struct ah_prompt_ack **ret);
/* The spec as JSON (see ah_task_spec_to_json). */
json_t *task_spec_json(const struct ah_task_spec *spec, bool partial, struct ah_api_error *reterr,
                       int *ret_code);
/* ---- tm.c ------------------------------------------------------------------------------------ */

/* The impl of tm when it was made with ops, else NULL (lets tm_mock.c recognise its own). */
void *tm_impl_if(const ah_task_manager *tm, const struct ah_task_manager_ops *ops);

/* Parses text as JSON (any value). NULL on failure, with *ret_err (nullable) set to AH_E_NOMEM
 * when the parser ran out of memory, else AH_E_PROTOCOL. */
json_t *json_parse_text(const char *text, size_t len, int *ret_err);

#endif
