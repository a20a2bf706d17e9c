/*
 * routes.h — private to api/: each resource file registers its routes; util.c holds what they
 * share (readiness, tenancy, body parsing, idempotency, the session representation).
 */
#ifndef AH_API_ROUTES_H
#define AH_API_ROUTES_H

#include "api.h"

int api_health_register(struct router *r, struct api_ctx *ctx);
int api_tasks_register(struct router *r, struct api_ctx *ctx);
int api_sessions_register(struct router *r, struct api_ctx *ctx);
int api_events_register(struct router *r, struct api_ctx *ctx);
int api_pty_register(struct router *r, struct api_ctx *ctx);
int api_drafts_register(struct router *r, struct api_ctx *ctx);
int api_repos_register(struct router *r, struct api_ctx *ctx);
/* Changed files, file reads and diffs (API.md §7.6; files.c) and the workspace routes (§7.9). */
int api_files_register(struct router *r, struct api_ctx *ctx);
int api_workspace_register(struct router *r, struct api_ctx *ctx);
/* The timeline, snapshots, moments, seek and branches (API.md §7.8; timeline.c, seek.c,
 * branch.c). */
int api_timeline_register(struct router *r, struct api_ctx *ctx);
/* Disk bytes of a session's object store and of its seek views (timeline.c). */
void tl_disk_usage(struct api_ctx *ctx, const char *id, uint64_t *ret_snapshots,
                   uint64_t *ret_views);
/* After DELETE ?purge=true: removes the session's seek views and its object store, unless a
 * branch still borrows the store's objects (timeline.c). */
void tl_purge_files(struct api_ctx *ctx, const char *tenant, const char *id);
/* The session's `delivery` field: the task's delivery and its recorded outcome (status
 * pending|delivered|failed|none, url, branch, commit, error); NULL without one (delivery.c). */
json_t *api_delivery_json(struct api_ctx *ctx, const struct session_row *row, const json_t *req);
/* GET /agents, /runtimes, /executors (API.md §7.11; catalog.c). */
int api_catalog_register(struct router *r, struct api_ctx *ctx);
/* GET /executors/{id}, POST /executors/{id}/drain, DELETE /executors/{id} (executors.c). */
int api_executors_register(struct router *r, struct api_ctx *ctx);
/* GET /projects, /workspaces[/{id}], /sessions/{id}/info, /schemas/agents/{type}.json,
 * /git/refs (projects.c). */
int api_projects_register(struct router *r, struct api_ctx *ctx);
/* agents[].settings against the type's schema (projects.c): a field error per unknown or
 * mistyped setting; 0 or AH_E_INVAL. */
int api_agent_settings_check(struct api_ctx *ctx, const char *type, const json_t *settings,
                             const char *path, struct ah_problem *p);
/* The chat of a session (API.md §7.7; chat.c). */
int api_chat_register(struct router *r, struct api_ctx *ctx);
/* GET /api/v1/openapi.json and the Swagger UI under /api/docs (openapi.c). */
int api_openapi_register(struct router *r, struct api_ctx *ctx);
/* A 501 Problem route for every operation of the embedded OpenAPI document that r does not
 * serve yet. Call it last, after every real route: the router's first match wins. */
int api_register_unimplemented(struct router *r, struct api_ctx *ctx);

/* The context if the services are up; otherwise answers 503 and returns NULL. */
struct api_ctx *api_ready(struct http_request *req, struct http_response *res);
/* The tenant a request acts for. Without authentication (D22, loopback) a client may name it
 * with X-Tenant-ID, ?tenantId= or the body's tenantId; otherwise "default". NULL after
 * answering 400 for a malformed one. */
const char *api_tenant(struct http_request *req, struct http_response *res,
                       const char *body_tenant);
/* The one project the request's credential is limited to, or NULL (every project). */
const char *api_project(const struct http_request *req);
/* Parses the JSON body; NULL after answering 400. An absent body is an empty object when
 * `optional`. */
json_t *api_body(struct http_request *req, struct http_response *res, bool optional);
/* Adds "is not a known field" to p for each member of body not in `allowed` (NULL-terminated),
 * so a typo is a 400 rather than silently ignored. True when all are known. */
bool api_only_members(const json_t *body, const char *const *allowed, struct ah_problem *p);
/* ?page= and ?perPage= (D6); a bad value is a field error in p. */
struct page api_page(struct http_request *req, int64_t default_per_page, struct ah_problem *p);
/* ?sort=asc|desc (D6: newest first unless asc); a bad value is a field error in p. */
bool api_sort_ascending(struct http_request *req, struct ah_problem *p);
/* The path parameter {id} when it is a well-formed session id; NULL after answering 404. */
const char *api_session_id(struct http_request *req, struct http_response *res);
/* Issue 16 item 5: a session on an enrolled executor has its workspace and object store on that
 * executor, not here. Files and diffs are forwarded to it (files.c); the routes whose reads are
 * not forwarded yet (search, the workspace tree, snapshots, seek, branch) answer 422
 * `unsupported` naming the executor rather than a misleading 404 or an empty answer. true for a
 * session of this server; false after answering. */
bool api_session_local_or_fail(struct http_request *req, struct http_response *res,
                               const struct session_row *row, const char *what);
/* The {id} session of the request's tenant (caller frees); NULL after answering 404 (or 400
 * for a bad tenant, 5xx for a store failure). ret_tenant may be NULL. */
struct session_row *api_session_load(struct api_ctx *ctx, struct http_request *req,
                                     struct http_response *res, const char **ret_tenant);

/* Runs fn under D7: a POST with Idempotency-Key is answered once; a replay gets the first
 * answer with Idempotent-Replayed: true; a different request with the same key is 422; the
 * same key while the first is running is 409. Without the header it just runs fn. */
void api_idempotent(struct http_request *req, struct http_response *res,
                    void (*fn)(struct http_request *, struct http_response *));

/* ---- long-lived streams (streams.c) ---------------------------------------------------------- */

/* A stream's registration with the streams thread (embed it in the stream's context). */
struct stream_entry {
    struct http_stream *stream;
    int64_t last_write; /* monotonic ms; atomic */
    char owner_kind[8], owner_id[128]; /* the credential it was opened with ("" in local mode) */
    bool revoked;                      /* atomic: that credential was revoked; the stream ends */
    int wd;             /* inotify watch of the followed file, -1 when none */
    struct stream_entry *prev, *next;   /* every stream (keep-alives) */
    struct stream_entry *wprev, *wnext; /* streams that follow a file (wd >= 0) */
};
void streams_add(struct stream_entry *e, struct http_stream *s);
void streams_remove(struct stream_entry *e); /* after this the thread no longer wakes it */
/* Names the credential a stream is opened with (before streams_add), so api_streams_revoke can
 * end it. */
void streams_owner(struct stream_entry *e, const struct http_request *req);
/* Ends every stream opened with this credential (kind "apikey" or "session", as in
 * auth_principal): revoking a key or signing out also closes what it was watching. */
void api_streams_revoke(const char *kind, const char *credential_id);
/* Wakes the stream whenever the file at path grows. */
int streams_watch(struct stream_entry *e, const char *path);
/* Records that bytes went out (resets the keep-alive clock). */
void streams_wrote(struct stream_entry *e);
int64_t streams_keepalive_ms(void);

/* The output side of every SSE stream: frames not yet handed to the connection. */
struct sse_out {
    struct stream_entry entry;
    struct ah_buf buf;
    size_t off;
    bool started, done;
};
/* The body of an SSE read callback (http_stream_ops.read). When nothing is buffered it calls
 * fill(ctx, o), which appends frames to o->buf and sets o->done when the stream is to close
 * after them; it sends the retry hint first and a keep-alive comment when the stream has been
 * idle for the interval. Returns bytes, 0 (suspend), HTTP_STREAM_END or an error. */
ssize_t sse_pump(struct sse_out *o, int (*fill)(void *ctx, struct sse_out *o), void *ctx,
                 char *out, size_t max);

/* ---- rendered representations of hot reads (readcache.c) --------------------------------- */

/* On a hit for (store, tenant, key) at `version`: a copy of the bytes in *ret_body (caller
 * frees; NULL ret_body only checks) and the strong ETag, true. Thread-safe. */
bool readcache_get(const void *store, const char *tenant, const char *key, uint64_t version,
                   char **ret_body, size_t *ret_len, char ret_etag[24]);
/* Keeps a copy of body as the representation at `version` (too large ones are not kept). */
void readcache_put(const void *store, const char *tenant, const char *key, uint64_t version,
                   const char *body, size_t len, const char *etag);
/* The strong ETag of a body: a quoted 64-bit hash. */
void readcache_etag(const char *body, size_t len, char out[24]);
/* Does If-None-Match (NULL when absent) match etag? */
bool readcache_not_modified(const char *if_none_match, const char *etag);

/* Why a queued session waits (D43; placement.c): a free slot, an executor, or nothing fits.
 * NULL when it is about to start (or on OOM); caller frees. */
char *api_queued_reason(struct api_ctx *ctx, struct session_row *row);

/* The Session representation (API.md §5.3 with D1). recent_events: the last 3 events for an
 * active session, [] otherwise. NULL on OOM. */
json_t *api_session_json(struct api_ctx *ctx, struct session_row *row);
/* Launched on an executor and not over (its JSON then has executorId and executorStatus). */
bool api_session_on_executor(const struct session_row *row);
void api_session_links(json_t *obj, const char *id);

#endif
