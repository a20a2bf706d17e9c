/*
 * core.h — the domain of Agent Harbor: ids, time, errors, Problem+JSON, limits, pagination,
 * the session state machine and the task-creation request.
 *
 * Pure: no I/O and no hidden state, with two documented exceptions — ulid_new() keeps the
 * process-wide monotonic ULID state (D2 demands monotonicity across the whole process), and the
 * logger writes to a file descriptor chosen by main. Everything here is safe to call from any
 * thread unless a comment says otherwise. JSON in and out is jansson.
 */
#ifndef AH_CORE_H
#define AH_CORE_H

#include <ah/error.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

/* jansson provides json_decrefp() for AH_AUTO(json_decrefp) json_t *x. */

/* ---- errors ---------------------------------------------------------------------------------- */

/* Maps an errno value to the nearest AH_E_* (ENOMEM → AH_E_NOMEM, ENOENT → AH_E_NOTFOUND, …). */
int ah_err_from_errno(int errnum);
/* The HTTP status, Problem slug and title of a code; an unknown code maps to 500 "internal". */
int ah_error_status(int code);
const char *ah_error_slug(int code);
const char *ah_error_title(int code);

/* ---- limits (D5): every client-controlled size has a named cap ------------------------------- */

#define AH_LIMIT_BODY_DEFAULT (1024 * 1024) /* request body, configurable */
#define AH_LIMIT_PROMPT (16 * 1024)         /* prompt text, API.md §7.3 */
#define AH_LIMIT_JSON_DEPTH 64              /* nesting of any JSON body */
#define AH_LIMIT_LIST_ITEMS 50              /* comma lists in queries, snapshotPreference */
#define AH_LIMIT_AGENTS 16                  /* entries in agents[] */
#define AH_LIMIT_SESSIONS_PER_TASK 100      /* sum of agents[].count */
#define AH_LIMIT_LABELS 64                  /* labels per task */
#define AH_LIMIT_LABEL_KEY 63
#define AH_LIMIT_LABEL_VALUE 256
#define AH_LIMIT_WEBHOOKS 16
#define AH_LIMIT_WEBHOOK_EVENTS 32 /* names in one webhook's events[] */
#define AH_LIMIT_WEBHOOK_SECRET 256
#define AH_LIMIT_URL 2048
#define AH_LIMIT_NAME 128   /* ids, tenant/project ids, agent types, branch names */
#define AH_LIMIT_HEADER 8192 /* any single header value we look at */

/* ---- growable buffer with a hard cap, and a non-owning slice ---------------------------------- */

struct ah_buf {
    char *p;    /* always NUL-terminated when non-NULL */
    size_t n;   /* bytes used, excluding the NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* hard cap on n; 0 means AH_LIMIT_BODY_DEFAULT * 64 */
};
struct ah_str {
    const char *p;
    size_t n;
};

/* Appends; AH_E_TOOLARGE when n would pass max, AH_E_NOMEM on allocation failure. On failure the
 * buffer is unchanged. */
int ah_buf_append(struct ah_buf *b, const void *data, size_t len);
int ah_buf_puts(struct ah_buf *b, const char *s);
int ah_buf_printf(struct ah_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ah_buf_vprintf(struct ah_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Gives the contents to the caller (free() it) and resets the buffer; "" when empty. NULL on OOM. */
/* Percent-encodes one path segment or query value into b. 0, AH_E_TOOLARGE or AH_E_NOMEM. */
int ah_buf_url_escape(struct ah_buf *b, const char *s);
/* Appends "&name=value" or "?name=value" (escaped) when value is non-NULL. */
int ah_buf_query_add(struct ah_buf *b, bool *first, const char *name, const char *value);
int ah_buf_query_add_int(struct ah_buf *b, bool *first, const char *name, int64_t value);
char *ah_buf_steal(struct ah_buf *b);
void ah_buf_clear(struct ah_buf *b);

/* ---- request arena: many small allocations, one free (h2o's pool) --------------------------- */

struct arena;
struct arena *arena_new(void);
void *arena_alloc(struct arena *a, size_t n); /* NULL on OOM; 16-byte aligned */
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
void arena_free(struct arena *a); /* NULL-safe */

/* ---- ids (D2) -------------------------------------------------------------------------------- */

#define ULID_LEN 26
/* Pure generator state: the last timestamp and 80-bit random part handed out. */
struct ulid_state {
    uint64_t last_ms;
    uint8_t rnd[10];
    bool started;
};
/* Writes the next ULID for now_ms into out (NUL-terminated). `fresh` is 10 random bytes used when
 * the millisecond moved forward; within the same (or an earlier) millisecond the previous random
 * part is incremented instead, so ids from one state are strictly increasing. */
void ulid_state_next(struct ulid_state *st, uint64_t now_ms, const uint8_t fresh[10],
                     char out[ULID_LEN + 1]);
/* A fresh ULID from the process-wide state (thread-safe, monotonic within the process).
 * Returns 0 or AH_E_IO when the kernel gives no randomness. */
int ulid_new(char out[ULID_LEN + 1]);
/* `prefix-ULID` (e.g. "draft-01J…"); out must hold strlen(prefix) + 1 + ULID_LEN + 1 bytes. */
int ulid_new_prefixed(const char *prefix, char *out, size_t outsz);
bool ulid_valid(const char *s);
/* The timestamp encoded in a valid ULID. */
uint64_t ulid_time_ms(const char *s);
/* Idempotency keys (D7): a ULID or a UUID (8-4-4-4-12 hex). */
bool idempotency_key_valid(const char *s);

/* ---- time (D3) ------------------------------------------------------------------------------- */

#define TIME_RFC3339_LEN 24 /* 2026-01-02T03:04:05.678Z */
int64_t time_now_ms(void);   /* wall clock, ms since the Unix epoch */
int64_t time_mono_ms(void);  /* monotonic clock, for durations only */
/* Formats ms since the epoch as RFC 3339 UTC with milliseconds. */
void time_format(int64_t ms, char out[TIME_RFC3339_LEN + 1]);
/* Parses RFC 3339 (date-time with T/t/space, optional fraction, Z or ±hh:mm). 0 or AH_E_INVAL. */
int time_parse(const char *s, int64_t *ret_ms);

/* ---- Problem+JSON (D4) ----------------------------------------------------------------------- */

/* Detail of a failure, filled by validators and handlers. Zero-initialise; problem_clear frees. */
struct ah_problem {
    int code;        /* AH_E_*; 0 while nothing failed */
    char detail[512];
    json_t *errors;  /* { "field.path": ["message", …] } or NULL */
    json_t *extra;   /* extra members merged into the body (e.g. "currentStatus") or NULL */
};
/* Sets code and detail (printf-style) unless a code is already set: the first failure wins. */
int problem_set(struct ah_problem *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Adds a field error: errors[path] += message. Sets code AH_E_INVAL when none is set yet. */
void problem_field(struct ah_problem *p, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Adds a member to the body (steals value). */
void problem_extra(struct ah_problem *p, const char *key, json_t *value);
void problem_clear(struct ah_problem *p);
/* The response body: type "/problems/<slug>", title, status, detail, instance, requestId,
 * errors, plus extras. NULL on OOM. The detail defaults to the title. */
json_t *problem_to_json(const struct ah_problem *p, const char *instance, const char *request_id);

/* ---- JSON helpers ---------------------------------------------------------------------------- */

/* Parses a request body: valid UTF-8 JSON, nesting ≤ AH_LIMIT_JSON_DEPTH, no duplicate keys.
 * On failure sets reterr (AH_E_BADREQ with line/column) and returns NULL. */
/* Is JSON text nested at most `max` deep? One scan of the raw text, so a hostile 100k '[' is
 * refused before jansson recurses into it. */
bool json_depth_ok(const char *s, size_t len, int max);
json_t *json_parse_body(const char *text, size_t len, struct ah_problem *reterr);
/* Serialises compactly; NULL on OOM. */
char *json_dump_compact(const json_t *j);

/* ---- pagination (D6) ------------------------------------------------------------------------- */

#define PAGE_DEFAULT_PER_PAGE 20
#define PAGE_EVENTS_PER_PAGE 50
#define PAGE_MAX_PER_PAGE 200
struct page {
    int64_t page;     /* ≥ 1 */
    int64_t per_page; /* 1..PAGE_MAX_PER_PAGE */
};
/* Parses the `page` and `perPage` query values (NULL = absent). Non-integers, page < 1 and
 * perPage outside 1..max are AH_E_INVAL naming the parameter. */
int page_parse(const char *page, const char *per_page, int64_t default_per_page, int64_t max,
               struct page *ret, struct ah_problem *reterr);
static inline int64_t page_offset(const struct page *pg) {
    return (pg->page - 1) * pg->per_page;
}
/* {items, page, perPage, total, nextPage, pagination: {page, perPage, total, totalPages}}
 * (D6); steals items. NULL on OOM. */
json_t *page_envelope(json_t *items, const struct page *pg, int64_t total);
/* Parses a decimal integer (an optional "-", then digits; no "+", no spaces) within [min, max];
 * AH_E_INVAL otherwise. With min >= 0 only "-0" of the signed forms passes (as 0). */
int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);
/* A query parameter's value s (NULL: absent → def): a boolean (true/false/1/0) or an integer in
 * [min, max]; a bad one adds a field error `name` to p and gives def. */
bool param_bool(const char *s, const char *name, bool def, struct ah_problem *p);
int64_t param_int(const char *s, const char *name, int64_t def, int64_t min, int64_t max,
                  struct ah_problem *p);

/* ---- session state machine (D13) ------------------------------------------------------------- */

#define SESSION_STATUSES(X)                                                                        \
    X(SESSION_QUEUED, "queued")                                                                    \
    X(SESSION_PROVISIONING, "provisioning")                                                        \
    X(SESSION_RUNNING, "running")                                                                  \
    X(SESSION_PAUSING, "pausing")                                                                  \
    X(SESSION_PAUSED, "paused")                                                                    \
    X(SESSION_RESUMING, "resuming")                                                                \
    X(SESSION_STOPPING, "stopping")                                                                \
    X(SESSION_STOPPED, "stopped")                                                                  \
    X(SESSION_COMPLETED, "completed")                                                              \
    X(SESSION_FAILED, "failed")                                                                    \
    X(SESSION_CANCELLED, "cancelled")

enum session_status {
#define SESSION_STATUS_ENUM_(name, str) name,
    SESSION_STATUSES(SESSION_STATUS_ENUM_)
#undef SESSION_STATUS_ENUM_
        SESSION_STATUS_COUNT
};

const char *session_status_name(enum session_status s);
/* 0 and *ret, or AH_E_INVAL for a string that is not a status. */
int session_status_parse(const char *s, enum session_status *ret);
bool session_status_terminal(enum session_status s);
/* "Active" for recent_events (API.md §4): queued, provisioning, running, pausing, paused,
 * resuming, stopping. */
bool session_status_active(enum session_status s);
/* Is from → to a legal transition of the table in session.c? */
bool session_transition_legal(enum session_status from, enum session_status to);

/* ---- task-creation request (API.md §5.2, D1, D20, D25) --------------------------------------- */

enum repo_mode { REPO_GIT, REPO_UPLOAD, REPO_NONE };
enum runtime_type { RUNTIME_DEVCONTAINER, RUNTIME_LOCAL, RUNTIME_DISABLED };
enum delivery_mode { DELIVERY_PR, DELIVERY_BRANCH, DELIVERY_PATCH };

struct task_agent {
    char *type;
    char *version; /* "latest" when absent */
    int64_t count; /* ≥ 1 */
    json_t *settings; /* object or NULL */
};
struct task_webhook {
    char *event;   /* one event name (the original form), or NULL */
    char **events; /* several (NULL-terminated), or NULL; one of the two is set */
    char *url;
    char *secret;  /* HMAC-SHA256 key of X-AH-Signature; NULL: deliveries are not signed */
};
struct task_request {
    char *tenant_id;  /* NULL when absent */
    char *project_id; /* NULL when absent */
    json_t *prompt;   /* normalised: array of content blocks */
    struct {
        enum repo_mode mode;
        char *url, *branch, *commit; /* NULL when absent */
    } repo;
    struct {
        enum runtime_type type;
        char *devcontainer_path;
        char *image;   /* devcontainer: the container image; NULL when absent */
        char *sandbox; /* profile name (D52); NULL when absent */
        bool has_resources;
        double cpu; /* cores; fractions allowed (0.25: a quarter of one core) */
        int64_t memory_mib;
        int64_t pids, file_size_mib, wall_time_s; /* optional limits; 0 when absent */
    } runtime;
    bool has_workspace;
    char **snapshot_preference;
    size_t n_snapshot_preference;
    char *execution_host_id;
    struct task_agent *agents;
    size_t n_agents;
    bool has_delivery;
    enum delivery_mode delivery_mode;
    char *target_branch;
    char *delivery_branch; /* delivery.branch: the branch a `branch` delivery pushes */
    json_t *labels; /* object string→string, or NULL */
    struct task_webhook *webhooks;
    size_t n_webhooks;
};

/* Validates every field of a create-task body and builds the request. Accepts the snake_case
 * aliases of D1 (`tenant_id`, `project_id`, `devcontainer_path`, `memory_mib`,
 * `snapshot_preference`, `execution_host_id`, `target_branch`) but not both spellings at once,
 * and a single `agent` object for `agents: [agent]` (D25) but not both. Unknown members are
 * errors. On failure returns AH_E_INVAL with every bad field named in
 * reterr->errors, and *ret is untouched. */
int task_request_parse(const json_t *body, struct task_request **ret, struct ah_problem *reterr);
/* The canonical (camelCase, D1) JSON of a request; parse(to_json(r)) equals r. NULL on OOM. */
json_t *task_request_to_json(const struct task_request *r);
void task_request_free(struct task_request *r);
AH_DEFINE_CLEANUP(struct task_request, task_request_free)
/* Number of sessions the task fans out to: the sum of agents[].count. */
size_t task_request_session_count(const struct task_request *r);
/* D25 display aliases: the agent family a WebUI-style type names — "claude-code" for `claude`
 * and `claude-<model>`, "codex" for `gpt-<model>` and `openai` — or NULL when the type is no
 * display alias (canonical types such as "claude-code" and "codex" are none). */
const char *agent_alias_family(const char *type);
/* Rewrites an agent entry given by a display alias to its family: the type becomes `family`
 * and the model the alias carried (the version of `claude` + `3.5-sonnet`, the type of
 * `gpt-4o`) goes to settings.model unless settings name one; a version that was a model
 * becomes "latest". 0 or AH_E_NOMEM (the entry is unchanged then). */
int task_agent_apply_alias(struct task_agent *a, const char *family);
/* Validates a prompt (string or blocks) into normalised blocks; `path` names the field in errors.
 * Shared by task creation and POST …/prompt. Returns NULL and fills reterr on failure. */
json_t *prompt_parse(const json_t *value, const char *path, struct ah_problem *reterr);
/* Bytes of text in a prompt value as a client sent it (a string, or the text blocks of an
 * array); 0 for anything else. */
size_t prompt_text_size(const json_t *value);
/* The concatenated text of all text blocks (caller frees); NULL on OOM. */
char *prompt_text(const json_t *blocks);

const char *repo_mode_name(enum repo_mode m);
const char *runtime_type_name(enum runtime_type t);
const char *delivery_mode_name(enum delivery_mode m);

/* ---- configuration file (a TOML subset) ------------------------------------------------------ */

/* Parses sections ([a] and [a.b]; [[t]] arrays of tables become "t[0]", "t[1]", …),
 * `key = value` with basic strings, integers, booleans and arrays
 * of strings, and # comments, into a flat object: {"section.key": value}. Top-level keys have no
 * prefix. Duplicate keys, unterminated strings and other syntax errors are AH_E_INVAL with the
 * line number in reterr. */
int toml_parse(const char *text, size_t len, json_t **ret, struct ah_problem *reterr);

/* ---- files embedded at build time (cmake/embed.cmake) -------------------------------------- */

/* One entry of a generated table; tables end with a NULL name. data is NUL-terminated. */
struct embedded_file {
    const char *name;
    const char *data;
    size_t size;
};

/* ---- secrets in URLs (D29) ------------------------------------------------------------------ */

/* True when text holds a URL with userinfo (`scheme://user:token@host…`) not yet redacted. */
bool text_has_userinfo(const char *text);
/* A copy of text with every URL's userinfo shown as "***" (the scheme, then ***@host/...); caller
 * frees. NULL for NULL text or on OOM. */
char *text_redact_userinfo(const char *text);
/* True when a string anywhere in v (NULL: false) holds userinfo. */
bool json_has_userinfo(const json_t *v);
/* v itself (a new reference) when no string in it holds userinfo, else a deep copy with every
 * such string redacted. NULL for NULL or on OOM. */
json_t *json_redact_userinfo(json_t *v);

/* ---- test hooks ------------------------------------------------------------------------------ */

/* Kills the process with SIGKILL when AH_TEST_HOOKS=1 and AH_TEST_CRASH_AT names `point`; a
 * no-op otherwise. Only the kill -9 tests set them. */
/* With AH_TEST_HOOKS=1, AH_TEST_HOLD_AT=<point> and AH_TEST_HOLD_FILE=<path>: on reaching
 * <point> the calling thread logs "test hook: holding at <point>" and waits while <path> exists,
 * so a test can make something happen inside a window that is otherwise microseconds wide. */
void test_hold_point(const char *point);
void test_crash_point(const char *point);
/* True when AH_TEST_HOOKS=1 and AH_TEST_FAIL_AT=<point>: the caller then acts as if the
 * resource at <point> could not be had (e.g. "inotify": the per-user limit reached). */
bool test_fail_point(const char *point);

/* ---- logging: one JSON object per line ------------------------------------------------------- */

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
/* 0 and *ret, or AH_E_INVAL. */
int log_level_parse(const char *s, enum log_level *ret);
const char *log_level_name(enum log_level l);
/* Process-wide sink, set once by main before threads start (default: fd 2, level info). */
void log_setup(int fd, enum log_level min);
bool log_enabled(enum log_level l);
/* Writes {"time","level","msg", …fields} as one line with one write(2). `fields` may be NULL and
 * is not stolen. */
void log_json(enum log_level l, const char *msg, const json_t *fields);
/* D48: the trace this thread is working for (the request's trace_id and span_id, borrowed until
 * cleared with NULLs): every line the thread logs meanwhile carries them. */
void log_trace_set(const char *trace_id, const char *span_id);
/* Copies the thread's trace (as set above) out: false when it has none. The span a thread works
 * for is the parent of the spans it starts (obs_trace_child). */
bool log_trace_get(char ret_trace_id[33], char ret_span_id[17]);
void log_msg(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
