/*
 * sessions.c — the session resource (API.md §7.3, §7.4; D6, D13, D14): list, get, control
 * (pause, resume, stop, delete), prompt injection and logs.
 */
#include <stdio.h>
#include <string.h>

#include "routes.h"

#define PROMPT_BODY_MAX (128 * 1024) /* room for 16 KiB of text escaped as JSON */
#define LOGS_TAIL_DEFAULT 1000
#define LOGS_TAIL_MAX 10000
#define CONTROL_REASON_MAX 1024 /* characters of a pause/resume/stop reason */
#define CONTROL_BODY_MAX (16 * 1024) /* room for such a reason escaped as JSON (\uXXXX pairs) */

/* ---- rendered reads (issue 18 item 3) --------------------------------------------------------- */

/* Answers body (taken) with its ETag, or 304 when the client already has it. The answer may be
 * stored by the client but must be revalidated (no-cache), which is what makes the 304 useful. */
static void answer_rendered(struct http_request *req, struct http_response *res, char *body,
                            size_t len, const char *etag) {
    http_header_add(req, res, "ETag", etag);
    http_header_add(req, res, "Cache-Control", "no-cache");
    if (readcache_not_modified(http_header(req, "If-None-Match"), etag)) {
        free(body);
        res->status = 304;
        return;
    }
    res->status = 200;
    res->body = body;
    res->body_len = len;
}

/* A hit answers and returns true. */
static bool serve_cached(struct http_request *req, struct http_response *res, struct store *st,
                         const char *tenant, const char *key, uint64_t version) {
    char etag[24];
    const char *inm = http_header(req, "If-None-Match");
    if (inm && readcache_get(st, tenant, key, version, NULL, NULL, etag) &&
        readcache_not_modified(inm, etag)) {
        answer_rendered(req, res, NULL, 0, etag); /* no copy of the body for a 304 */
        return true;
    }
    char *body;
    size_t len;
    if (!readcache_get(st, tenant, key, version, &body, &len, etag))
        return false;
    answer_rendered(req, res, body, len, etag);
    return true;
}

/* Serialises j (taken), keeps it when `cacheable` and answers it. */
static void serve_rendered(struct http_request *req, struct http_response *res, struct store *st,
                           const char *tenant, const char *key, bool cacheable, uint64_t version,
                           json_t *j) {
    if (!j) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!body) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    size_t len = strlen(body);
    char etag[24];
    readcache_etag(body, len, etag);
    if (cacheable)
        readcache_put(st, tenant, key, version, body, len, etag);
    answer_rendered(req, res, body, len, etag);
}

/* Cache keys carry the project a credential is limited to: what such a reader may see is not
 * what the tenant sees (a session of another project is 404, lists are filtered). */
static void session_key(const struct http_request *req, const char *id, char *key, size_t n) {
    const char *project = api_project(req);
    if ((size_t)snprintf(key, n, "%s\n%s", project ? project : "", id) >= n)
        key[0] = '\0';
}

/* The list's cache key: its query as received (page, perPage, filters, sort), "" when that is
 * too long to be worth keeping. */
static void list_key(const struct http_request *req, char *key, size_t n) {
    const char *project = api_project(req);
    size_t o = (size_t)snprintf(key, n, "%s\nlist?", project ? project : "");
    for (size_t i = 0; i < req->n_query && o < n; i++)
        o += (size_t)snprintf(key + o, n - o, "%s=%s&", req->query[i].name,
                              req->query[i].value ? req->query[i].value : "");
    if (o >= n)
        key[0] = '\0';
}

static void list_sessions(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = api_tenant(req, res, NULL);
    if (!tenant)
        return;
    struct ah_problem p = {0};
    struct page pg = api_page(req, PAGE_DEFAULT_PER_PAGE, &p);
    struct session_filter f = {0};
    const char *status = http_query(req, "status");
    if (status) {
        if (session_status_parse(status, &f.status) < 0)
            problem_field(&p, "status", "must be one of the session states (queued, running, …)");
        f.has_status = true;
    }
    f.agent = http_query(req, "agent");
    f.project_id = http_query(req, "projectId");
    if (api_project(req))
        f.project_id = api_project(req); /* a project-limited credential lists its project only */
    f.ascending = api_sort_ascending(req, &p);
    if (http_fail(req, res, &p))
        return;
    char key[400];
    list_key(req, key, sizeof(key));
    uint64_t version = 0;
    bool cacheable = key[0] && store_sessions_version(ctx->store, &version) == 0;
    if (cacheable && serve_cached(req, res, ctx->store, tenant, key, version))
        return;
    struct session_row **rows = NULL;
    size_t n = 0;
    int64_t total = 0;
    int rc = store_session_list(ctx->store, tenant, &f, &pg, &rows, &n, &total);
    if (rc < 0) {
        http_error(req, res, rc, "cannot list sessions");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) /* a queued one's queuedReason moves with the fleet (D43),
                                       not with the sessions' version: such a page is not kept */
        cacheable &= rows[i]->status != SESSION_QUEUED && !api_session_on_executor(rows[i]);
    for (size_t i = 0; items && i < n; i++)
        if (json_array_append_new(items, api_session_json(ctx, rows[i])) < 0) {
            json_decref(items);
            items = NULL;
        }
    session_rows_free(rows, n);
    serve_rendered(req, res, ctx->store, tenant, key, cacheable, version,
                   page_envelope(items, &pg, total));
}

static void get_session(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *id = api_session_id(req, res);
    const char *tenant = id ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    /* the version is taken before the row is read: a write in between moves it, so what is
     * kept below is never newer than its number says (store_session_version) */
    uint64_t version = 0;
    char key[400];
    session_key(req, id, key, sizeof(key));
    bool cacheable = key[0] && store_session_version(ctx->store, id, &version) == 0;
    if (cacheable && serve_cached(req, res, ctx->store, tenant, key, version))
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (row) /* queuedReason and executorStatus move with the fleet, not the session's version */
        serve_rendered(req, res, ctx->store, tenant, key,
                       cacheable && row->status != SESSION_QUEUED &&
                           !api_session_on_executor(row),
                       version,
                       api_session_json(ctx, row));
}

/* UTF-8 characters in s (the body parser has checked it is valid UTF-8). */
static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* The optional body of pause/resume/stop: {"reason": string of at most CONTROL_REASON_MAX
 * characters} and nothing else, so a typo or a wrong type is a 400, not silently ignored. */
static bool control_body_ok(const json_t *body, struct ah_problem *p) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        if (strcmp(key, "reason") != 0)
            problem_field(p, key, "is not a known field (only reason)");
        else if (!json_is_string(v) && !json_is_null(v))
            problem_field(p, "reason", "must be a string");
        else if (json_is_string(v) && strlen(json_string_value(v)) != json_string_length(v))
            problem_field(p, "reason", "must not contain NUL characters");
        else if (json_is_string(v) && utf8_chars(json_string_value(v)) > CONTROL_REASON_MAX)
            problem_field(p, "reason", "must be at most %d characters", CONTROL_REASON_MAX);
    }
    return p->code == 0;
}

static void control(struct http_request *req, struct http_response *res, enum exec_action a) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    /* the body is optional (stop may carry {"reason"}); if present it must be a JSON object */
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, true);
    if (!body)
        return;
    struct ah_problem bp = {0};
    control_body_ok(body, &bp);
    if (http_fail(req, res, &bp))
        return;
    const char *id = api_session_id(req, res);
    const char *tenant = id ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    struct ah_problem p = {0};
    enum session_status st;
    exec_control(ctx->exec, tenant, id, a, &st, &p);
    if (http_fail(req, res, &p))
        return;
    http_json(req, res, 202, json_pack("{s:s}", "status", session_status_name(st)));
}

static void post_pause(struct http_request *req, struct http_response *res) {
    control(req, res, EXEC_PAUSE);
}
static void post_resume(struct http_request *req, struct http_response *res) {
    control(req, res, EXEC_RESUME);
}
static void post_stop(struct http_request *req, struct http_response *res) {
    control(req, res, EXEC_STOP);
}
static void pause_i(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_pause);
}
static void resume_i(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_resume);
}
static void stop_i(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_stop);
}

/* DELETE (D14): cancels a live session (SIGKILL) and removes its workspace; a finished session
 * only loses its workspace. ?purge=true also deletes the record and its events. */
static void delete_session(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *purge = http_query(req, "purge");
    if (purge && strcmp(purge, "true") && strcmp(purge, "false")) {
        struct ah_problem p = {0};
        problem_field(&p, "purge", "must be true or false");
        http_fail(req, res, &p);
        return;
    }
    const char *tenant = NULL;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, &tenant);
    if (!row)
        return;
    if (!session_status_terminal(row->status)) {
        struct ah_problem p = {0};
        enum session_status st;
        int rc = exec_control(ctx->exec, tenant, row->id, EXEC_CANCEL, &st, &p);
        if (rc < 0 && rc != AH_E_CONFLICT) { /* CONFLICT: it ended meanwhile, fine */
            http_problem(req, res, &p);
            problem_clear(&p);
            return;
        }
        problem_clear(&p);
    } else {
        exec_remove_files(ctx->exec, row->id);
    }
    if (purge && !strcmp(purge, "true")) {
        int rc = store_session_purge(ctx->store, tenant, row->id);
        if (rc < 0 && rc != AH_E_NOTFOUND) {
            http_error(req, res, rc, "cannot delete session %s", row->id);
            return;
        }
        tl_purge_files(ctx, tenant, row->id); /* its snapshots and seek views */
    }
    res->status = 204;
}

static void post_prompt(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    if (!body)
        return;
    struct ah_problem p = {0};
    json_t *prompt = json_object_get(body, "prompt"), *message = json_object_get(body, "message");
    static const char *const known[] = {"prompt", "message", NULL};
    api_only_members(body, known, &p);
    if (prompt && message)
        problem_field(&p, "prompt", "give prompt or message, not both");
    else if (!prompt && !message)
        problem_field(&p, "prompt", "is required");
    else if (message && !json_is_string(message))
        problem_field(&p, "message", "must be a string");
    AH_AUTO(json_decrefp) json_t *blocks = NULL;
    AH_AUTOFREE char *text = NULL;
    size_t size = prompt_text_size(prompt ? prompt : message);
    if (!p.code && size > AH_LIMIT_PROMPT) /* 413 on this route (API.md §7.3), not a 400 */
        problem_set(&p, AH_E_TOOLARGE, "the prompt is %zu bytes; the limit is %d bytes", size,
                    AH_LIMIT_PROMPT);
    if (!p.code) {
        blocks = prompt_parse(prompt ? prompt : message, prompt ? "prompt" : "message", &p);
        text = blocks ? prompt_text(blocks) : NULL;
        if (blocks && !text)
            problem_set(&p, AH_E_NOMEM, "out of memory");
    }
    if (http_fail(req, res, &p))
        return;
    const char *id = api_session_id(req, res);
    const char *tenant = id ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    exec_prompt(ctx->exec, tenant, id, text, &p);
    if (http_fail(req, res, &p))
        return;
    char ts[TIME_RFC3339_LEN + 1];
    time_format(time_now_ms(), ts);
    http_json(req, res, 202,
              json_pack("{s:s, s:b, s:s}", "sessionId", id, "accepted", 1, "ts", ts));
}

static void prompt_i(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_prompt);
}

/* GET …/logs?tail=N: the last N log events, oldest first (API.md §7.4). */
static void get_logs(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    int64_t tail = LOGS_TAIL_DEFAULT;
    const char *t = http_query(req, "tail");
    const char *level = http_query(req, "level");
    struct ah_problem p = {0};
    if (t && parse_int64(t, 1, LOGS_TAIL_MAX, &tail) < 0)
        problem_field(&p, "tail", "must be an integer from 1 to %d", LOGS_TAIL_MAX);
    enum log_level lv;
    if (level && (log_level_parse(level, &lv) < 0 || !strcmp(level, "warning")))
        problem_field(&p, "level", "must be debug, info, warn or error");
    if (http_fail(req, res, &p))
        return;
    const char *tenant = NULL;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, &tenant);
    if (!row)
        return;
    static const char *const types[] = {"log", NULL};
    struct event_filter f = {.types = types, .level = level, .ascending = false};
    struct page pg = {1, tail};
    json_t *items = NULL;
    int64_t total = 0;
    int rc = store_event_list(ctx->store, tenant, row->id, &f, &pg, &items, &total);
    if (rc < 0) {
        http_error(req, res, rc, "cannot read the logs");
        return;
    }
    json_t *asc = json_array();
    for (size_t i = json_array_size(items); asc && i > 0; i--)
        json_array_append(asc, json_array_get(items, i - 1));
    json_decref(items);
    http_json(req, res, 200, json_pack("{s:o, s:I}", "items", asc, "total", (json_int_t)total));
}

int api_sessions_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/sessions", list_sessions, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}", get_session, ctx, 0, 0);
    rc |= router_add(r, "DELETE", "/api/v1/sessions/{id}", delete_session, ctx, 0, 0);
    rc |= router_add(r, "POST", "/api/v1/sessions/{id}/pause", pause_i, ctx, 0,
                     CONTROL_BODY_MAX);
    rc |= router_add(r, "POST", "/api/v1/sessions/{id}/resume", resume_i, ctx, 0,
                     CONTROL_BODY_MAX);
    rc |= router_add(r, "POST", "/api/v1/sessions/{id}/stop", stop_i, ctx, 0,
                     CONTROL_BODY_MAX);
    rc |= router_add(r, "POST", "/api/v1/sessions/{id}/prompt", prompt_i, ctx, 0,
                     PROMPT_BODY_MAX);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/logs", get_logs, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
