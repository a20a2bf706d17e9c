/*
 * ah/client.h — libah-client: the C client of the Agent Harbor REST API (/api/v1).
 *
 * One handle (ah_client) holds a base URL, credentials, TLS options, per-endpoint timeouts, a
 * retry policy and a log callback. Every call is synchronous and typed: it sends one logical
 * request (retried as the policy allows), and either fills a result the caller frees with the
 * matching *_free function, or returns a negative AH_E_* code and describes the failure in an
 * optional struct ah_api_error (Problem+JSON details, HTTP status, request id, Retry-After).
 *
 * Conventions (the same for every call below):
 *   - Return value: 0 (or a count) on success, a negative AH_E_* (<ah/error.h>) on failure.
 *   - `ret` out-parameters are written only on success; the result belongs to the caller.
 *   - `reterr` may be NULL; it is written only on failure (cleared first, so a zero-initialised
 *     struct may be reused; call ah_api_error_clear once you are done with it).
 *   - Strings inside results are lent: valid until the result is freed.
 *   - Parameters are borrowed for the duration of the call only.
 *   - Invalid arguments (NULL handle, NULL required string, …) are AH_E_INVAL; nothing is sent.
 *   - Out of memory is AH_E_NOMEM; the library never aborts.
 *   - A call that fails before delivering anything never invokes its callback.
 *
 * Threading: an ah_client may be used from many threads at once. Each call borrows a pooled
 * curl easy handle (so connections are reused across calls) and the handle pool is guarded by
 * the client's lock. Setters may be called at any time; a call in progress keeps the settings it
 * started with. The library has no global state except a one-time curl_global_init.
 *
 * Retries: GET, PUT and DELETE are retried on connection failures and on 408/429/502/503/504
 * with exponential back-off and jitter (ah_retry_delay_ms); a Retry-After on 429/503 is honoured
 * exactly. POSTs are retried the same way because each logical POST carries a fresh
 * Idempotency-Key (a ULID, D7) that stays the same across its retries; with idempotency keys
 * turned off (ah_client_set_idempotency) a POST is retried only when the connection could not be
 * made at all. Other 4xx answers and timeouts are never retried.
 */
#ifndef AH_CLIENT_H
#define AH_CLIENT_H

#include <ah/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AH_CLIENT_VERSION "0.1.0"

typedef struct ah_client ah_client;
typedef struct ah_cancel ah_cancel;

/* The library's version string (AH_CLIENT_VERSION of the build). Never NULL. */
const char *ah_client_version_string(void);

/* ---- errors: Problem+JSON (D4) turned into a struct ------------------------------------------ */

struct ah_field_error {
    char *field;   /* dotted JSON path, e.g. "repo.url" */
    char *message; /* e.g. "is required" */
};

/* Everything known about a failed call. Zero-initialise, pass to calls, ah_api_error_clear when
 * done. Fields that were not sent are NULL (strings), 0 or -1 (retry_after_ms). */
struct ah_api_error {
    int code;   /* AH_E_*: from the Problem type, else from the HTTP status */
    int status; /* HTTP status; 0 when no answer arrived (network, timeout, …) */
    char *type; /* "/problems/<slug>" */
    char *title;
    char *detail;         /* for transport failures: curl's description of the error */
    char *instance;       /* the request path the server saw */
    char *request_id;     /* Problem "requestId", else the X-Request-Id header (D8) */
    char *current_status; /* Problem extra "currentStatus" (409 on an illegal transition) */
    struct ah_field_error *errors; /* validation errors, n_errors entries */
    size_t n_errors;
    int64_t retry_after_ms; /* Retry-After of the last answer, -1 when absent */
    int attempts;           /* how many attempts the call made (1 = no retry) */
    char *body;             /* the raw body of the failing answer, NULL when none */
};

/* Frees what the struct holds and zeroes it (retry_after_ms becomes -1). NULL-safe. */
void ah_api_error_clear(struct ah_api_error *e);

/* Fills e (cleared first) from a non-2xx answer exactly as a call would: the Problem's fields
 * when the body is one, else what the status says. For task managers that reach the API
 * without HTTP (the in-process one). Returns the code; e may be NULL. */
int ah_api_error_from_answer(struct ah_api_error *e, int status, const char *body, size_t len);

/* The first message of one field ("agents"), or NULL when that field has no error. Lent from e
 * (valid until it is cleared). */
const char *ah_api_error_field(const struct ah_api_error *e, const char *field);

/* ---- logging --------------------------------------------------------------------------------- */

enum ah_log_level { AH_LOG_DEBUG = 0, AH_LOG_INFO, AH_LOG_WARN, AH_LOG_ERROR };

/* Called synchronously on the thread making the call; must not call back into the same client
 * while holding locks the caller of that client needs. `message` is valid during the call. */
typedef void (*ah_log_fn)(void *userdata, enum ah_log_level level, const char *message);

/* ---- retry policy ---------------------------------------------------------------------------- */

struct ah_retry_policy {
    int max_attempts;           /* total attempts including the first; 1 disables retries */
    int64_t base_delay_ms;      /* delay before the 2nd attempt (before jitter) */
    int64_t max_delay_ms;       /* cap of the exponential delay */
    int64_t max_retry_after_ms; /* longest Retry-After honoured; a longer one ends the call */
};

/* Fills the defaults: 4 attempts, 200 ms base, 10 s cap, Retry-After up to 120 s. */
void ah_retry_policy_default(struct ah_retry_policy *p);

/* The pure back-off function: the delay before attempt number `attempt + 1`, after `attempt`
 * (≥ 1) attempts failed. With retry_after_ms ≥ 0 (the server said when) that value is returned
 * unchanged, or -1 when it exceeds p->max_retry_after_ms. Otherwise the exponential delay
 * d = min(max_delay, base * 2^(attempt-1)) gets "equal jitter": d/2 + random % (d/2 + 1), so the
 * result lies in [d/2, d]. Returns -1 when attempt ≥ p->max_attempts (give up). */
int64_t ah_retry_delay_ms(const struct ah_retry_policy *p, int attempt, int64_t retry_after_ms,
                          uint32_t random);

/* ---- the client handle ----------------------------------------------------------------------- */

/* Endpoint classes with their own timeouts. */
enum ah_endpoint {
    AH_EP_DEFAULT = 0, /* anything without its own setting */
    AH_EP_HEALTH,      /* healthz, readyz, version */
    AH_EP_TASKS,       /* POST /tasks */
    AH_EP_SESSIONS,    /* list/get sessions */
    AH_EP_CONTROL,     /* pause, resume, stop, delete, prompt */
    AH_EP_LOGS,        /* logs and event history */
    AH_EP_STREAM,      /* SSE: total_ms is the idle timeout (no byte, not even a keep-alive) */
    AH_EP_DRAFTS,
    AH_EP_REPOS, /* repositories and branches */
    AH_EP_RAW,   /* ah_client_request */
    AH_EP_COUNT_
};

/* Creates a client for a server base URL such as "http://127.0.0.1:3001" or
 * "https://ah.example.com/" (a trailing "/api/v1" is accepted and ignored). Only http and https
 * are allowed. Does no I/O. Returns 0, AH_E_INVAL or AH_E_NOMEM. Free with ah_client_free. */
int ah_client_new(const char *base_url, ah_client **ret);

/* Frees the client and its pooled connections. No call may be in progress. NULL-safe. */
void ah_client_free(ah_client *c);

/* The normalised base URL (without a trailing slash), lent until the client is freed. */
const char *ah_client_base_url(const ah_client *c);

/* Credentials: `Authorization: ApiKey <key>` or `Authorization: Bearer <token>`; setting one
 * replaces the other, NULL removes it. The secret is copied and wiped from memory on free. */
int ah_client_set_api_key(ah_client *c, const char *key);
/* See ah_client_set_api_key. AH_E_INVAL for an empty token or one with CR/LF. */
int ah_client_set_bearer(ah_client *c, const char *token);

/* TLS: a CA bundle file to trust (NULL: the system store); `insecure` skips peer and host
 * verification (for self-signed test servers only); a client certificate and key in PEM for
 * mutual TLS (both or neither; key may be NULL when the cert file also holds the key). */
int ah_client_set_ca_file(ah_client *c, const char *path);
/* See ah_client_set_ca_file. */
int ah_client_set_insecure(ah_client *c, bool insecure);
/* See ah_client_set_ca_file. AH_E_INVAL for a key without a certificate. */
int ah_client_set_client_cert(ah_client *c, const char *cert_path, const char *key_path);

/* Timeouts of one endpoint class in milliseconds; -1 leaves a value unchanged, 0 means "no
 * limit" (total) or curl's default (connect). Defaults: connect 10 s; total 30 s (health 5 s,
 * stream idle 45 s). Returns 0 or AH_E_INVAL. */
int ah_client_set_timeouts(ah_client *c, enum ah_endpoint ep, int64_t connect_ms, int64_t total_ms);

/* Replaces the retry policy (copied). AH_E_INVAL when max_attempts < 1 or a delay is negative. */
int ah_client_set_retry(ah_client *c, const struct ah_retry_policy *p);

/* Turns the automatic Idempotency-Key on POSTs on (default) or off. */
int ah_client_set_idempotency(ah_client *c, bool enabled);

/* Log sink: fn receives messages at `min_level` and above (the library logs requests and
 * retries at debug, give-ups at warn). fn NULL turns logging off. */
int ah_client_set_log(ah_client *c, ah_log_fn fn, void *userdata, enum ah_log_level min_level);

/* ---- cancellation token ---------------------------------------------------------------------- */

/* A one-shot flag another thread can raise to end a stream (or a back-off wait) early. */
int ah_cancel_new(ah_cancel **ret);
/* Raises the flag and wakes whoever waits on it. Thread-safe; idempotent. */
void ah_cancel_trigger(ah_cancel *k);
/* Has the token been raised? Thread-safe; false for NULL. */
bool ah_cancel_triggered(ah_cancel *k);
/* Frees the token; nothing may be using it any more. NULL-safe. */
void ah_cancel_free(ah_cancel *k);

/* ---- shared result types --------------------------------------------------------------------- */

/*
 * Every result type comes with a constructor from the server's JSON text, ah_<type>_from_json
 * (for implementations of the task-manager interface, caches and tests: 0, AH_E_PROTOCOL when
 * the text is not the JSON kind expected, AH_E_NOMEM; members of the wrong type count as
 * absent), and a destructor ah_<type>_free (NULL-safe) that frees everything the result lends.
 * Results are immutable and may be read from any thread.
 */

enum ah_session_status {
    AH_STATUS_UNKNOWN = 0, /* a value this library does not know, or absent */
    AH_STATUS_QUEUED,
    AH_STATUS_PROVISIONING,
    AH_STATUS_RUNNING,
    AH_STATUS_PAUSING,
    AH_STATUS_PAUSED,
    AH_STATUS_RESUMING,
    AH_STATUS_STOPPING,
    AH_STATUS_STOPPED,
    AH_STATUS_COMPLETED,
    AH_STATUS_FAILED,
    AH_STATUS_CANCELLED
};
/* "queued", …; "unknown" for AH_STATUS_UNKNOWN or out-of-range values. */
const char *ah_session_status_name(enum ah_session_status s);
/* The status named by s, AH_STATUS_UNKNOWN for NULL or anything else. */
enum ah_session_status ah_session_status_parse(const char *s);
/* stopped, completed, failed, cancelled (D13). */
bool ah_session_status_terminal(enum ah_session_status s);

/* One session event (API.md §8, D12). Every string is lent from the event's owner (the event
 * itself when it came from ah_event_from_json, else the list or session holding it). */
struct ah_event {
    int64_t seq;                   /* D9; 0 when the payload has none */
    const char *type;              /* "status", "log", "thought", … ("" when absent) */
    const char *session_id;        /* NULL when absent */
    const char *ts;                /* RFC 3339, NULL when absent */
    enum ah_session_status status; /* type "status": the new status */
    const char *level;             /* type "log": the level */
    const char *message;           /* "log"/"note": message; "thought": thought; else NULL */
    const char *json;              /* the whole payload as compact JSON text */
    void *priv_;                   /* private */
};
/* Parses one event payload. AH_E_PROTOCOL when json is not an object. Free with ah_event_free. */
int ah_event_from_json(const char *json, struct ah_event **ret);
/* Frees ev and its strings. NULL-safe. Only for events the caller owns (from_json). */
void ah_event_free(struct ah_event *ev);

/* A page of events (history) or log lines. */
struct ah_event_list {
    struct ah_event **items;
    size_t n_items;
    int64_t page, per_page, total; /* -1 when the server did not say */
    int64_t next_page;             /* 0 on the last page */
    const char *json;              /* the whole answer */
    void *priv_;
};
/* Accepts the D6 envelope ({items, page, perPage, total, nextPage}, or {items, total} for
 * logs) or a bare array. */
int ah_event_list_from_json(const char *json, struct ah_event_list **ret);
/* Frees the list and its events. NULL-safe. */
void ah_event_list_free(struct ah_event_list *l);

/* A session (API.md §5.3 as the server emits it, camelCase). Absent fields are NULL / false. */
struct ah_session {
    const char *id;
    const char *task_id;
    const char *tenant_id;
    const char *project_id;
    enum ah_session_status status;
    const char *status_name; /* as sent, for statuses this library does not know */
    const char *prompt;      /* the text (content blocks are joined) */
    const char *repo_mode, *repo_url, *repo_branch, *repo_commit;
    const char *runtime_type;
    const char *runtime_sandbox; /* the sandbox profile it runs under (local runtime) */
    const char *agent_type, *agent_version;
    const char *delivery_mode, *target_branch;
    const char *snapshot_provider, *mount_path;
    const char *error;
    bool has_exit_code;
    int exit_code;
    const char *created_at, *updated_at, *started_at, *ended_at;
    const char *link_self, *link_events, *link_logs;
    const char *link_pty, *link_recording; /* NULL when the server offers none */
    struct ah_event **recent_events;
    size_t n_recent_events;
    bool has_changes;
    int64_t files_changed, lines_added, lines_removed;
    const char *json; /* the whole object */
    void *priv_;
};
/* Accepts the server's camelCase Session and the Rust server's snake_case variant. */
int ah_session_from_json(const char *json, struct ah_session **ret);
/* Frees the session and its recent events. NULL-safe. */
void ah_session_free(struct ah_session *s);

struct ah_session_list {
    struct ah_session **items;
    size_t n_items;
    int64_t page, per_page, total; /* -1 when the server did not say */
    int64_t next_page;             /* 0 on the last page */
    const char *json;
    void *priv_;
};
/* Accepts the D6 envelope or a bare array. */
int ah_session_list_from_json(const char *json, struct ah_session_list **ret);
/* Frees the list and its sessions. NULL-safe. */
void ah_session_list_free(struct ah_session_list *l);

/* Filters of GET /sessions; NULL / 0 members are not sent. */
struct ah_session_filter {
    const char *status;
    const char *agent;
    const char *project_id;
    const char *tenant_id;
    int64_t page;     /* ≥ 1, 0 = server default */
    int64_t per_page; /* 1..200, 0 = server default */
};

/* ---- task creation (API.md §5.2) ------------------------------------------------------------- */

struct ah_agent_spec {
    const char *type;          /* required, e.g. "scripted", "claude-code" */
    const char *version;       /* NULL: server default ("latest") */
    int64_t count;             /* 0: server default (1) */
    const char *settings_json; /* a JSON object text or NULL (D20: {"scenario": [...]}) */
};

struct ah_label {
    const char *key;
    const char *value;
};

/* The create-task body in C. For drafts every member is optional. */
struct ah_task_spec {
    const char *tenant_id, *project_id;
    const char *prompt;    /* the task text (sent as a string) */
    const char *repo_mode; /* NULL: "git" when repo_url is set, else "none" */
    const char *repo_url, *repo_branch, *repo_commit;
    const char *runtime_type; /* NULL: "local" */
    const char *devcontainer_path;
    const char *sandbox; /* runtime.sandbox: a sandbox profile of the server's local runtime
                          * (default, offline, disabled or one it defines); NULL: its default */
    int64_t cpu, memory_mib; /* both 0: no resources member */
    const char *const *snapshot_preference;
    size_t n_snapshot_preference;
    const char *execution_host_id;
    const struct ah_agent_spec *agents;
    size_t n_agents;
    const char *delivery_mode; /* NULL: no delivery member */
    const char *target_branch;
    const struct ah_label *labels;
    size_t n_labels;
};

/* The JSON body for spec (camelCase, D1). With `partial` (drafts) absent members stay absent;
 * otherwise repo and runtime get their defaults. AH_E_INVAL when settings_json is not an
 * object or a required pointer is NULL (with the field in reterr). *ret is the caller's. */
int ah_task_spec_to_json(const struct ah_task_spec *spec, bool partial, char **ret,
                         struct ah_api_error *reterr);

/* 201 of POST /tasks (D25). */
struct ah_task_created {
    const char *id;      /* the first session id */
    const char *task_id; /* when the server sends one, else NULL */
    const char *const *session_ids;
    size_t n_session_ids;
    const char *status; /* "queued" */
    const char *link_self, *link_events, *link_logs;
    const char *json;
    void *priv_;
};
/* Without `id` the first session id is used; without `session_ids`, [id]. */
int ah_task_created_from_json(const char *json, struct ah_task_created **ret);
/* Frees t. NULL-safe. */
void ah_task_created_free(struct ah_task_created *t);

/* ---- drafts, repositories, branches (API.md §7.12, §7.14) ------------------------------------ */

struct ah_draft {
    const char *id;
    const char *prompt;
    const char *repo_url, *repo_branch;
    const char *agent_type;
    const char *created_at, *updated_at;
    const char *json;
    void *priv_;
};
/* agent_type comes from `agent` or from the first entry of `agents`. */
int ah_draft_from_json(const char *json, struct ah_draft **ret);
/* Frees d. NULL-safe. */
void ah_draft_free(struct ah_draft *d);

struct ah_draft_list {
    struct ah_draft **items;
    size_t n_items;
    const char *json;
    void *priv_;
};
/* Accepts the D6 envelope or a bare array. */
int ah_draft_list_from_json(const char *json, struct ah_draft_list **ret);
/* Frees the list and its drafts. NULL-safe. */
void ah_draft_list_free(struct ah_draft_list *l);

struct ah_repo {
    const char *id;
    const char *display_name;
    const char *scm_provider;
    const char *remote_url;
    const char *default_branch;
    const char *last_used_at;
    const char *json;
    void *priv_;
};
struct ah_repo_list {
    struct ah_repo **items;
    size_t n_items;
    const char *json;
    void *priv_;
};
/* Accepts the D6 envelope or a bare array (the Rust server's form). */
int ah_repo_list_from_json(const char *json, struct ah_repo_list **ret);
/* Frees the list and its repositories. NULL-safe. */
void ah_repo_list_free(struct ah_repo_list *l);

struct ah_branch {
    const char *name;
    bool is_default;
    const char *last_commit; /* NULL when unknown */
};
struct ah_branch_list {
    const char *repository_id;
    struct ah_branch *items;
    size_t n_items;
    const char *json;
    void *priv_;
};
/* Accepts {repositoryId, branches} with is_default/last_commit or isDefault/lastCommit, and
 * branches given as bare names. */
int ah_branch_list_from_json(const char *json, struct ah_branch_list **ret);
/* Frees the list (items included). NULL-safe. */
void ah_branch_list_free(struct ah_branch_list *l);

/* ---- calls: health --------------------------------------------------------------------------- */

/* GET /healthz: 0 when the server answers 200. */
int ah_client_healthz(ah_client *c, struct ah_api_error *reterr);

/* GET /readyz: 0 when ready, AH_E_UNAVAIL (status 503) when not ready yet (not retried). */
int ah_client_readyz(ah_client *c, struct ah_api_error *reterr);

struct ah_version {
    const char *version;
    const char *git_commit; /* NULL when unknown */
    const char *build_date; /* NULL when unknown */
    const char *json;
    void *priv_;
};
/* GET /version. */
int ah_client_version(ah_client *c, struct ah_version **ret, struct ah_api_error *reterr);
/* Frees v. NULL-safe. */
void ah_version_free(struct ah_version *v);

/* ---- calls: tasks and sessions --------------------------------------------------------------- */

/* POST /tasks with the body of ah_task_spec_to_json(spec, false). */
int ah_client_create_task(ah_client *c, const struct ah_task_spec *spec,
                          struct ah_task_created **ret, struct ah_api_error *reterr);
/* POST /tasks with a ready JSON body (must be a JSON object). */
int ah_client_create_task_json(ah_client *c, const char *body_json, struct ah_task_created **ret,
                               struct ah_api_error *reterr);

/* GET /sessions (newest first). filter may be NULL. */
int ah_client_list_sessions(ah_client *c, const struct ah_session_filter *filter,
                            struct ah_session_list **ret, struct ah_api_error *reterr);
/* GET /sessions/{id}. */
int ah_client_get_session(ah_client *c, const char *id, struct ah_session **ret,
                          struct ah_api_error *reterr);

/* POST /sessions/{id}/pause | resume | stop (202 {status}). ret_status (nullable) receives the
 * status the server reports (the transient or settled state, D14). A transition that is not
 * legal is AH_E_CONFLICT with reterr->current_status. `reason` (stop only) may be NULL. */
int ah_client_pause_session(ah_client *c, const char *id, enum ah_session_status *ret_status,
                            struct ah_api_error *reterr);
int ah_client_resume_session(ah_client *c, const char *id, enum ah_session_status *ret_status,
                             struct ah_api_error *reterr);
int ah_client_stop_session(ah_client *c, const char *id, const char *reason,
                           enum ah_session_status *ret_status, struct ah_api_error *reterr);
/* DELETE /sessions/{id}[?purge=true] (204): cancels the session (D14). */
int ah_client_delete_session(ah_client *c, const char *id, bool purge, struct ah_api_error *reterr);

struct ah_prompt_ack {
    const char *session_id;
    bool accepted;
    const char *ts;
    const char *json;
    void *priv_;
};
/* POST /sessions/{id}/prompt {prompt: text} (202). ret may be NULL. A paused session is
 * AH_E_CONFLICT, a finished one AH_E_GONE. */
int ah_client_prompt_session(ah_client *c, const char *id, const char *text,
                             struct ah_prompt_ack **ret, struct ah_api_error *reterr);
/* Frees a. NULL-safe. */
void ah_prompt_ack_free(struct ah_prompt_ack *a);

/* GET /sessions/{id}/logs[?tail=N] (tail 0: not sent). */
int ah_client_session_logs(ah_client *c, const char *id, int64_t tail, struct ah_event_list **ret,
                           struct ah_api_error *reterr);

/* Filters of the event history (D10); NULL / 0 members are not sent. */
struct ah_event_query {
    const char *types; /* comma list: "thought,file_edit" */
    const char *level;
    const char *since, *until; /* RFC 3339 */
    int64_t after;             /* seq */
    const char *sort;          /* "asc" | "desc" */
    int64_t page, per_page;
};
/* GET /sessions/{id}/events as JSON history. q may be NULL. */
int ah_client_list_events(ah_client *c, const char *id, const struct ah_event_query *q,
                          struct ah_event_list **ret, struct ah_api_error *reterr);

/* ---- calls: the live event stream (SSE, D11) ------------------------------------------------- */

/* Called once per event, in seq order, never twice for one seq. `ev` and its strings are valid
 * during the call only. Return 0 to go on, anything else to stop the stream. */
typedef int (*ah_event_fn)(void *userdata, const struct ah_event *ev);

struct ah_stream_options {
    int64_t after_seq; /* start after this seq (0: from the beginning of the session) */
    int64_t tail;      /* > 0 and after_seq == 0: start with the last `tail` events only */
    int max_failures;  /* consecutive failed (re)connects before giving up; 0: 10; < 0: never */
    ah_cancel *cancel; /* optional: raise it to end the stream from another thread */
};

/* Follows GET /sessions/{id}/events (Accept: text/event-stream) until the session's terminal
 * `status` event (stopped/completed/failed/cancelled) has been delivered. A dropped or idle
 * connection is reopened with Last-Event-ID = the last delivered seq, after a back-off from the
 * retry policy (Retry-After honoured); events with seq ≤ the last delivered one are dropped, so
 * nothing is delivered twice or skipped. Runs on the calling thread; cb runs on it too.
 * opt may be NULL. ret_last_seq (nullable) receives the last delivered seq on every return.
 * Returns 0 after the terminal event, AH_E_CANCELED when cb returned non-zero or the token was
 * raised, else the error that ended it (a 4xx such as AH_E_NOTFOUND is not retried). */
int ah_client_stream_events(ah_client *c, const char *id, const struct ah_stream_options *opt,
                            ah_event_fn cb, void *userdata, int64_t *ret_last_seq,
                            struct ah_api_error *reterr);

/* ---- calls: drafts, repositories, branches --------------------------------------------------- */

/* GET /drafts. */
int ah_client_list_drafts(ah_client *c, struct ah_draft_list **ret, struct ah_api_error *reterr);
/* GET /drafts/{id}. */
int ah_client_get_draft(ah_client *c, const char *id, struct ah_draft **ret,
                        struct ah_api_error *reterr);
/* POST /drafts with ah_task_spec_to_json(spec, partial=true). ret (nullable) gets the answer. */
int ah_client_create_draft(ah_client *c, const struct ah_task_spec *spec, struct ah_draft **ret,
                           struct ah_api_error *reterr);
/* PUT /drafts/{id}. ret may be NULL. */
int ah_client_update_draft(ah_client *c, const char *id, const struct ah_task_spec *spec,
                           struct ah_draft **ret, struct ah_api_error *reterr);
/* DELETE /drafts/{id}. */
int ah_client_delete_draft(ah_client *c, const char *id, struct ah_api_error *reterr);

/* GET /repos[?tenantId=&projectId=] (NULL: not sent). */
int ah_client_list_repos(ah_client *c, const char *tenant_id, const char *project_id,
                         struct ah_repo_list **ret, struct ah_api_error *reterr);
/* GET /repositories/{id}/branches. */
int ah_client_list_branches(ah_client *c, const char *repo_id, struct ah_branch_list **ret,
                            struct ah_api_error *reterr);

/* ---- calls: files, diffs, the workspace (API.md §7.6, §7.9) -------------------------------- */

/* Points (D32): from/to are "base", "current" or a snapshot id; NULL: the server's default
 * (base → current). The answers are the server's text (caller frees). */
struct ah_files_query {
    const char *from, *to;
    const char *status; /* added|modified|deleted|renamed */
    const char *path;   /* glob: `*`, `**`, `?` */
    int64_t page, per_page;
};
/* GET /sessions/{id}/files: {items:[FileChange], total, …} as JSON text. q may be NULL. */
int ah_client_session_files(ah_client *c, const char *id, const struct ah_files_query *q,
                            char **ret_json, struct ah_api_error *reterr);
/* GET /sessions/{id}/files/content?path=…: {content, encoding (utf-8|base64), …}. */
int ah_client_session_file_content(ah_client *c, const char *id, const char *path,
                                   const char *to, char **ret_json, struct ah_api_error *reterr);
struct ah_diff_query {
    const char *path;   /* one file, or NULL: every changed file */
    const char *from, *to;
    const char *format; /* unified|split|html (JSON answers) or patch (the patch text) */
    int context;        /* 0..10, -1: the default (3) */
    bool full;
};
/* GET /sessions/{id}/diff[/{path}]. q may be NULL (every file, unified, as JSON). */
int ah_client_session_diff(ah_client *c, const char *id, const struct ah_diff_query *q,
                           char **ret_body, struct ah_api_error *reterr);
/* GET /sessions/{id}/workspace/files (dir NULL: the root). */
int ah_client_workspace_tree(ah_client *c, const char *id, const char *dir, bool recursive,
                             bool modified_only, char **ret_json, struct ah_api_error *reterr);

/* ---- calls: the timeline (API.md §7.8) --------------------------------------------------------- */

/* A point of a session's timeline: exactly one of a snapshot id, an offset in seconds since the
 * session started (has_ts), or an event seq (> 0). */
struct ah_timeline_point {
    const char *fs_snapshot_id;
    bool has_ts;
    double ts;
    int64_t seq;
};
/* GET /sessions/{id}/timeline: {durationSec, recording, moments[], fsSnapshots[]} as JSON text. */
int ah_client_session_timeline(ah_client *c, const char *id, char **ret_json,
                               struct ah_api_error *reterr);
/* GET /sessions/{id}/fs-snapshots (limit 1..200, 0: the server's default). */
int ah_client_session_snapshots(ah_client *c, const char *id, int limit, char **ret_json,
                                struct ah_api_error *reterr);
/* POST /sessions/{id}/fs-snapshots: a snapshot of the workspace now (label, description
 * nullable). */
int ah_client_session_snapshot(ah_client *c, const char *id, const char *label,
                               const char *description, char **ret_json,
                               struct ah_api_error *reterr);
/* POST /sessions/{id}/moments (description, type nullable). */
int ah_client_session_moment(ah_client *c, const char *id, const char *label,
                             const char *description, const char *type, char **ret_json,
                             struct ah_api_error *reterr);
/* POST /sessions/{id}/seek: {mountPath, fsSnapshotId, seekTime, seq, …}, a read-only view.
 * Waits while the server answers 202 `preparing` (it writes the view in the background), asking
 * again with a growing delay (up to 1 s) for at most 10 minutes (then AH_E_TIMEOUT). */
int ah_client_session_seek(ah_client *c, const char *id, const struct ah_timeline_point *at,
                           char **ret_json, struct ah_api_error *reterr);
struct ah_branch_spec {
    struct ah_timeline_point at;
    const char *name;             /* nullable */
    const char *injected_message; /* nullable: the branch agent's prompt */
    const char *settings_json;    /* nullable: the agent's settings (a JSON object) */
};
/* POST /sessions/{id}/session-branch: {id, parentSessionId, fsSnapshotId, seq, …}. */
int ah_client_session_branch(ah_client *c, const char *id, const struct ah_branch_spec *spec,
                             char **ret_json, struct ah_api_error *reterr);
/* GET /sessions/{id}/branches. */
int ah_client_session_branches(ah_client *c, const char *id, char **ret_json,
                               struct ah_api_error *reterr);

/* ---- the conversation and the catalog (issue 15) --------------------------------------------- */

/* GET /sessions/{id}/chat: {messages[], total} as JSON text (caller frees). limit 1..200 (0: the
 * server's default, the newest 50); before/after: message ids, nullable. */
int ah_client_chat_history(ah_client *c, const char *id, int limit, const char *before,
                           const char *after, char **ret_json, struct ah_api_error *reterr);
/* POST /sessions/{id}/chat/messages {content}: the stored message (ret_json nullable). */
int ah_client_chat_send(ah_client *c, const char *id, const char *content, char **ret_json,
                        struct ah_api_error *reterr);
/* GET /sessions/{id}/context and GET /sessions/{id}/models, as JSON text. */
int ah_client_session_context(ah_client *c, const char *id, char **ret_json,
                              struct ah_api_error *reterr);
int ah_client_session_models(ah_client *c, const char *id, char **ret_json,
                             struct ah_api_error *reterr);
/* GET /<what> for what in projects, agents, repos, runtimes, executors, workspaces: the list as
 * JSON text ({items, …}). */
int ah_client_catalog(ah_client *c, const char *what, char **ret_json,
                      struct ah_api_error *reterr);

/* ---- escape hatch ---------------------------------------------------------------------------- */

/* Any other endpoint: `method` "GET"/"POST"/"PUT"/"DELETE", `path` starting with "/" relative to
 * the base URL (e.g. "/api/v1/agents?x=1"), `body_json` NULL or a JSON text. On a 2xx answer
 * returns 0 with the status and body (caller frees; "" when empty) in the nullable outs; a
 * non-2xx answer is a failure like any other call. Retried like the typed calls. */
int ah_client_request(ah_client *c, const char *method, const char *path, const char *body_json,
                      int *ret_status, char **ret_body, struct ah_api_error *reterr);

#ifdef __cplusplus
}
#endif
#endif
