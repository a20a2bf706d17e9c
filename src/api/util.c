/*
 * util.c — what the resource handlers share: the readiness gate, tenancy, body parsing, the
 * Idempotency-Key protocol (D7) and the Session representation (API.md §5.3).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "../auth/auth.h"
#include "../enroll/fleet.h"
#include "../sandbox/sandbox.h"
#include "routes.h"

#define IDEMPOTENCY_TTL_MS (24LL * 3600 * 1000)

struct api_ctx *api_ready(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = req->route_ctx;
    if (!api_store(ctx)) {
        http_error(req, res, AH_E_UNAVAIL, "the server is starting; try again shortly");
        http_header_add(req, res, "Retry-After", "1");
        return NULL;
    }
    return ctx;
}

static bool tenant_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > AH_LIMIT_NAME)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* Item 28, one rule until authentication replaces all of them with the credential's tenant
 * (D35): X-Tenant-ID, ?tenantId= and a create body's tenantId are accepted alike, with the same
 * syntax; naming two different tenants in one request is a 400, never a silent choice (before,
 * the header quietly won over the query, so a filter could read as another tenant). */
const char *api_tenant(struct http_request *req, struct http_response *res,
                       const char *body_tenant) {
    const struct auth_principal *pr = req->principal;
    if (pr && !pr->local)
        return req->tenant; /* D35: the credential's tenant (access.c); hints are ignored */
    const char *named[] = {http_header(req, "X-Tenant-ID"), http_query(req, "tenantId"),
                           body_tenant};
    const char *where[] = {"X-Tenant-ID", "tenantId", "tenantId"};
    const char *t = NULL;
    for (size_t i = 0; i < 3; i++) {
        if (!named[i])
            continue;
        struct ah_problem p = {0};
        if (!tenant_ok(named[i]))
            problem_field(&p, where[i],
                          "may only contain letters, digits, '.', '_' and '-' (1 to %d characters)",
                          AH_LIMIT_NAME);
        else if (t && strcmp(t, named[i]) != 0)
            problem_field(&p, where[i], "names tenant '%s' but the request already names '%s'",
                          named[i], t);
        if (http_fail(req, res, &p))
            return NULL;
        t = named[i];
    }
    if (!t)
        return req->tenant;
    return t;
}

const char *api_project(const struct http_request *req) {
    const struct auth_principal *pr = req->principal;
    return pr && !pr->local && pr->project[0] ? pr->project : NULL;
}

bool api_only_members(const json_t *body, const char *const *allowed, struct ah_problem *p) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, key))
            a++;
        if (!*a)
            problem_field(p, key, "is not a known field");
    }
    return !p->code;
}

json_t *api_body(struct http_request *req, struct http_response *res, bool optional) {
    if (!req->body_len && optional)
        return json_object();
    struct ah_problem p = {0};
    json_t *j = json_parse_body(req->body ? req->body : "", req->body_len, &p);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
        problem_set(&p, AH_E_BADREQ, "the request body must be a JSON object");
    }
    if (!j)
        http_problem(req, res, &p);
    problem_clear(&p);
    return j;
}

struct page api_page(struct http_request *req, int64_t default_per_page, struct ah_problem *p) {
    struct page pg = {1, default_per_page};
    page_parse(http_query(req, "page"), http_query(req, "perPage"), default_per_page,
               PAGE_MAX_PER_PAGE, &pg, p);
    return pg;
}

bool api_sort_ascending(struct http_request *req, struct ah_problem *p) {
    const char *sort = http_query(req, "sort");
    if (sort && strcmp(sort, "asc") && strcmp(sort, "desc"))
        problem_field(p, "sort", "must be asc or desc");
    return sort && !strcmp(sort, "asc");
}

const char *api_session_id(struct http_request *req, struct http_response *res) {
    const char *id = http_param(req, "id");
    if (!ulid_valid(id)) { /* D4: not a session we know, whatever it looks like */
        http_error(req, res, AH_E_NOTFOUND, "no session %.64s", id ? id : "");
        return NULL;
    }
    return id;
}

struct session_row *api_session_load(struct api_ctx *ctx, struct http_request *req,
                                     struct http_response *res, const char **ret_tenant) {
    const char *id = api_session_id(req, res);
    const char *tenant = id ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return NULL;
    struct session_row *row = NULL;
    int rc = store_session_get(ctx->store, tenant, id, &row);
    const char *project = api_project(req);
    if (rc == 0 && project && (!row->project_id || strcmp(row->project_id, project) != 0)) {
        /* a credential limited to one project sees no other, as a tenant sees no other */
        session_row_free(row);
        row = NULL;
        rc = AH_E_NOTFOUND;
    }
    if (rc < 0) {
        http_error(req, res, rc, rc == AH_E_NOTFOUND ? "no session %s" : "cannot read session %s",
                   id);
        return NULL;
    }
    if (ret_tenant)
        *ret_tenant = tenant;
    return row;
}

/* ---- idempotency (D7) ------------------------------------------------------------------------ */

static void request_hash(const struct http_request *req, char out[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
              EVP_DigestUpdate(c, req->method, strlen(req->method)) &&
              EVP_DigestUpdate(c, "\n", 1) && EVP_DigestUpdate(c, req->path, strlen(req->path)) &&
              EVP_DigestUpdate(c, "\n", 1) &&
              (!req->body || EVP_DigestUpdate(c, req->body, req->body_len)) &&
              EVP_DigestFinal_ex(c, md, &len);
    EVP_MD_CTX_free(c);
    out[0] = '\0';
    for (unsigned i = 0; ok && i < len && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* A created resource's Location, derived from the body so a replay carries it too. */
static void add_location(struct http_request *req, struct http_response *res, const char *body) {
    json_t *j = json_loads(body, 0, NULL);
    const char *self = json_string_value(json_object_get(json_object_get(j, "links"), "self"));
    if (self)
        http_header_add(req, res, "Location", self);
    json_decref(j);
}

void api_idempotent(struct http_request *req, struct http_response *res,
                    void (*fn)(struct http_request *, struct http_response *)) {
    const char *key = http_header(req, "Idempotency-Key");
    if (!key) {
        fn(req, res);
        return;
    }
    if (!idempotency_key_valid(key)) {
        struct ah_problem p = {0};
        problem_field(&p, "Idempotency-Key", "must be a ULID or a UUID");
        http_fail(req, res, &p);
        return;
    }
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = api_tenant(req, res, NULL);
    if (!tenant)
        return;
    char hash[65];
    request_hash(req, hash);
    AH_AUTO(idem_row_freep) struct idem_row *prev = NULL;
    int rc = store_idem_begin(ctx->store, tenant, key, hash, time_now_ms(), IDEMPOTENCY_TTL_MS,
                              &prev);
    if (rc == AH_E_EXISTS) {
        if (strcmp(prev->request_hash, hash) != 0) {
            http_error(req, res, AH_E_IDEMPOTENCY,
                       "Idempotency-Key %s was used for a different request", key);
        } else if (!prev->done) {
            http_error(req, res, AH_E_BUSY,
                       "a request with Idempotency-Key %s is still being processed", key);
            http_header_add(req, res, "Retry-After", "1");
        } else {
            res->status = prev->status;
            res->body = AH_TAKE(prev->body);
            res->body_len = prev->body_len;
            res->content_type =
                prev->content_type ? arena_strdup(req->arena, prev->content_type) : NULL;
            http_header_add(req, res, "Idempotent-Replayed", "true");
            if (res->status == 201)
                add_location(req, res, res->body);
        }
        return;
    }
    if (rc < 0) {
        http_error(req, res, rc, "cannot record the Idempotency-Key");
        return;
    }
    fn(req, res);
    /* Keep the exact bytes so a replay is identical. A 5xx is not an answer worth keeping:
     * release the key so the client's retry runs again. */
    if (res->json) {
        res->body = json_dumps(res->json, JSON_COMPACT);
        res->body_len = res->body ? strlen(res->body) : 0;
        if (res->body) {
            json_decref(res->json);
            res->json = NULL;
        }
    }
    if (res->status >= 500 || !res->body || res->stream)
        store_idem_release(ctx->store, tenant, key);
    else
        store_idem_finish(ctx->store, tenant, key, res->status, res->content_type, res->body,
                          res->body_len);
}

/* ---- the Session representation -------------------------------------------------------------- */

void api_session_links(json_t *obj, const char *id) {
    char self[80], events[96], logs[96], pty[96], recording[96];
    snprintf(self, sizeof(self), "/api/v1/sessions/%s", id);
    snprintf(events, sizeof(events), "%s/events", self);
    snprintf(logs, sizeof(logs), "%s/logs", self);
    snprintf(pty, sizeof(pty), "%s/pty", self);
    snprintf(recording, sizeof(recording), "%s/recording", self);
    json_object_set_new(obj, "links",
                        json_pack("{s:s, s:s, s:s, s:s, s:s}", "self", self, "events", events,
                                  "logs", logs, "pty", pty, "recording", recording));
}

static json_t *time_or_null(int64_t ms) {
    if (!ms)
        return json_null();
    char ts[TIME_RFC3339_LEN + 1];
    time_format(ms, ts);
    return json_string(ts);
}

static json_t *recent_events(struct api_ctx *ctx, const struct session_row *row) {
    if (!session_status_active(row->status))
        return json_array();
    struct event_filter f = {.ascending = false};
    struct page pg = {1, 3};
    json_t *items = NULL;
    int64_t total;
    if (store_event_list(ctx->store, row->tenant_id, row->id, &f, &pg, &items, &total) < 0)
        return json_array();
    /* newest three, shown oldest first like a log tail */
    json_t *out = json_array();
    for (size_t i = json_array_size(items); out && i > 0; i--)
        json_array_append(out, json_array_get(items, i - 1));
    json_decref(items);
    return out;
}

bool api_session_on_executor(const struct session_row *row) {
    return row->executor_id && *row->executor_id && !session_status_terminal(row->status) &&
           row->status != SESSION_QUEUED;
}

json_t *api_session_json(struct api_ctx *ctx, struct session_row *row) {
    const json_t *req = session_row_request(row);
    if (!req)
        return NULL;
    AH_AUTOFREE char *prompt = prompt_text(json_object_get(req, "prompt"));
    json_t *agent_req = json_array_get(json_object_get(req, "agents"), (size_t)row->agent_index);
    json_t *agent = json_pack("{s:s, s:s}", "type", row->agent_type, "version", row->agent_version);
    if (agent && json_object_get(agent_req, "settings"))
        json_object_set(agent, "settings", json_object_get(agent_req, "settings"));
    json_t *s = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:o, s:O, s:o, s:{s:s?, s:s?}, s:s?, s:o, s:o, s:o, s:o, s:o}",
        "id", row->id, "taskId", row->task_id, "tenantId", row->tenant_id, "status",
        session_status_name(row->status), "prompt", prompt ? prompt : "", "repo",
        json_redact_userinfo(json_object_get(req, "repo")) /* D29 */, "runtime",
        json_object_get(req, "runtime"), "agent", agent,
        "workspace", "snapshotProvider", row->workspace_provider, "mountPath",
        row->workspace_path, "error", row->error, "exitCode",
        row->has_exit_code ? json_integer(row->exit_code) : json_null(), "createdAt",
        time_or_null(row->created_at), "updatedAt", time_or_null(row->updated_at), "startedAt",
        time_or_null(row->started_at), "endedAt", time_or_null(row->ended_at));
    if (!s)
        return NULL;
    if (!json_object_get(s, "error"))
        json_object_set_new(s, "error", json_null());
    json_t *ws = json_object_get(s, "workspace");
    if (!json_object_get(ws, "snapshotProvider"))
        json_object_set_new(ws, "snapshotProvider", json_null());
    if (!json_object_get(ws, "mountPath"))
        json_object_set_new(ws, "mountPath", json_null());
    if (row->project_id)
        json_object_set_new(s, "projectId", json_string(row->project_id));
    json_t *delivery = api_delivery_json(ctx, row, req);
    if (delivery)
        json_object_set_new(s, "delivery", delivery);
    if (json_object_get(req, "labels"))
        json_object_set(s, "labels", json_object_get(req, "labels"));
    if (api_session_on_executor(row)) { /* D44: where it runs, and whether that is reachable */
        json_t *e = NULL;
        const char *health = ctx->fleet && fleet_get_json(ctx->fleet, row->executor_id, &e) == 0
                                 ? json_string_value(json_object_get(e, "health"))
                                 : NULL;
        json_object_set_new(s, "executorId", json_string(row->executor_id));
        json_object_set_new(s, "executorStatus",
                            json_string(health && strcmp(health, "offline") != 0 ? "connected"
                                                                                 : "unreachable"));
        json_decref(e);
    }
    if (row->status == SESSION_QUEUED) { /* D43: why it waits, while it does */
        char *why = api_queued_reason(ctx, row);
        if (why)
            json_object_set_new(s, "queuedReason", json_string(why));
        free(why);
    }
    /* D52: the profile and limits this session runs under, and how they are enforced */
    json_t *sb = ctx->exec ? sandbox_session_json(exec_sandbox(ctx->exec),
                                                  json_object_get(req, "runtime"))
                           : NULL;
    if (sb)
        json_object_set_new(s, "sandbox", sb);
    api_session_links(s, row->id);
    json_object_set_new(s, "recent_events", recent_events(ctx, row));
    if (row->status == SESSION_COMPLETED)
        json_object_set_new(s, "changes",
                            row->changes ? json_incref(row->changes)
                                         : json_pack("{s:i, s:i, s:i}", "files_changed", 0,
                                                     "lines_added", 0, "lines_removed", 0));
    return s;
}

bool api_session_local_or_fail(struct http_request *req, struct http_response *res,
                               const struct session_row *row, const char *what) {
    if (!row->executor_id)
        return true;
    http_error(req, res, AH_E_UNSUPPORTED,
               "%s of session %s are not served yet: it runs on executor %.200s, which holds its "
               "workspace and snapshots",
               what, row->id, row->executor_id);
    return false;
}
