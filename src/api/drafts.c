/*
 * drafts.c — saved, possibly incomplete task bodies (API.md §7.14): POST/GET /drafts,
 * GET/PUT/DELETE /drafts/{id}. A draft is the create-task body with every member optional, so it
 * can be posted as a task once complete; its members are checked for shape, not completeness.
 * PUT replaces the members it gives and keeps the others.
 */
#include <stdio.h>
#include <string.h>

#include "routes.h"

static const char *const members[] = {"prompt", "repo",     "agents", "runtime",
                                      "workspace", "delivery", "labels", NULL};

/* D25: the shorthand `agent: {…}` is kept as `agents: [{…}]`, like a task's; both is a 400. */
static void agent_shorthand(json_t *body, struct ah_problem *p) {
    json_t *agent = json_object_get(body, "agent");
    if (!agent)
        return;
    if (json_object_get(body, "agents")) {
        problem_field(p, "agent", "give agent or agents, not both");
    } else if (!json_is_object(agent)) {
        problem_field(p, "agent", "must be an object with a type");
    } else if (json_object_set_new(body, "agents", json_pack("[O]", agent)) < 0) {
        problem_set(p, AH_E_NOMEM, "out of memory");
    } else {
        json_object_del(body, "agent");
    }
}

/* A draft's agent entries have the members and kinds of a task's (a typo is an error here too,
 * not a setting silently lost when the draft becomes a task), at most AH_LIMIT_AGENTS. */
static void check_agents(const json_t *agents, struct ah_problem *p) {
    if (json_array_size(agents) > AH_LIMIT_AGENTS) {
        problem_field(p, "agents", "must contain at most %d entries", AH_LIMIT_AGENTS);
        return;
    }
    size_t i;
    json_t *a;
    json_array_foreach(agents, i, a) {
        char path[64];
        if (!json_is_object(a)) {
            snprintf(path, sizeof(path), "agents[%zu]", i);
            problem_field(p, path, "must be an object");
            continue;
        }
        const char *key;
        json_t *v;
        json_object_foreach(a, key, v) {
            snprintf(path, sizeof(path), "agents[%zu].%.32s", i, key);
            bool ok = !strcmp(key, "type") || !strcmp(key, "version")
                          ? json_is_string(v) && json_string_length(v) <= AH_LIMIT_NAME
                      : !strcmp(key, "count")    ? json_is_integer(v)
                      : !strcmp(key, "settings") ? json_is_object(v)
                                                 : false;
            if (!strcmp(key, "type") || !strcmp(key, "version") || !strcmp(key, "count") ||
                !strcmp(key, "settings")) {
                if (!ok)
                    problem_field(p, path, "has the wrong type (see the create-task body)");
            } else {
                problem_field(p, path, "is not a known field");
            }
        }
    }
}

/* Shape checks: known members, each of the right JSON kind. */
static bool check(json_t *body, struct ah_problem *p) {
    agent_shorthand(body, p);
    if (p->code)
        return false;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        int i = 0;
        while (members[i] && strcmp(members[i], key))
            i++;
        if (!members[i]) {
            problem_field(p, key, "is not a draft field");
            continue;
        }
        bool ok = !strcmp(key, "prompt") ? json_is_string(v) || json_is_array(v)
                  : !strcmp(key, "agents") ? json_is_array(v)
                                           : json_is_object(v);
        if (ok && !strcmp(key, "agents"))
            check_agents(v, p);
        else if (ok && !strcmp(key, "prompt") && prompt_text_size(v) > AH_LIMIT_PROMPT)
            problem_field(p, "prompt", "text is %zu bytes; the limit is %d bytes",
                          prompt_text_size(v), AH_LIMIT_PROMPT);
        if (!ok)
            problem_field(p, key, "has the wrong type (see the create-task body)");
    }
    return p->code == 0;
}

static json_t *draft_json(const struct draft_row *r) {
    json_t *j = json_deep_copy(r->body);
    char c[TIME_RFC3339_LEN + 1], u[TIME_RFC3339_LEN + 1];
    time_format(r->created_at, c);
    time_format(r->updated_at, u);
    if (j && (json_object_set_new(j, "id", json_string(r->id)) < 0 ||
              json_object_set_new(j, "createdAt", json_string(c)) < 0 ||
              json_object_set_new(j, "updatedAt", json_string(u)) < 0)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static const char *draft_id(struct http_request *req, struct http_response *res) {
    const char *id = http_param(req, "id");
    if (!id || strncmp(id, "draft-", 6) != 0 || !ulid_valid(id + 6)) {
        http_error(req, res, AH_E_NOTFOUND, "no draft %.64s", id ? id : "");
        return NULL;
    }
    return id;
}

static void create_draft(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    const char *tenant = body ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    struct ah_problem p = {0};
    check(body, &p);
    if (http_fail(req, res, &p))
        return;
    char id[64];
    int64_t now = time_now_ms();
    int rc = ulid_new_prefixed("draft", id, sizeof(id));
    if (rc == 0)
        rc = store_draft_create(ctx->store, tenant, id, body, now);
    if (rc < 0) {
        http_error(req, res, rc, "cannot save the draft");
        return;
    }
    /* D38: the answer is the full draft as stored (the same representation as GET), so a UI
     * can show what was saved without a second request. */
    AH_AUTO(draft_row_freep) struct draft_row *r = NULL;
    rc = store_draft_get(ctx->store, tenant, id, &r);
    if (rc < 0) {
        http_error(req, res, rc, "cannot read the saved draft %s", id);
        return;
    }
    char self[96];
    snprintf(self, sizeof(self), "/api/v1/drafts/%s", id);
    http_header_add(req, res, "Location", self);
    http_json(req, res, 201, draft_json(r));
}

static void post_drafts(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, create_draft);
}

static void list_drafts(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    const char *tenant = ctx ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    struct ah_problem p = {0};
    struct page pg = api_page(req, PAGE_DEFAULT_PER_PAGE, &p);
    if (http_fail(req, res, &p))
        return;
    struct draft_row **rows = NULL;
    size_t n = 0;
    int64_t total = 0;
    int rc = store_draft_list(ctx->store, tenant, &pg, &rows, &n, &total);
    if (rc < 0) {
        http_error(req, res, rc, "cannot list drafts");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; items && i < n; i++)
        if (json_array_append_new(items, draft_json(rows[i])) < 0) {
            json_decref(items);
            items = NULL;
        }
    draft_rows_free(rows, n);
    http_json(req, res, 200, page_envelope(items, &pg, total));
}

static void get_draft(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    const char *id = ctx ? draft_id(req, res) : NULL;
    const char *tenant = id ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    AH_AUTO(draft_row_freep) struct draft_row *r = NULL;
    int rc = store_draft_get(ctx->store, tenant, id, &r);
    if (rc < 0)
        http_error(req, res, rc, rc == AH_E_NOTFOUND ? "no draft %s" : "cannot read draft %s", id);
    else
        http_json(req, res, 200, draft_json(r));
}

static void put_draft(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    const char *id = ctx ? draft_id(req, res) : NULL;
    AH_AUTO(json_decrefp) json_t *body = id ? api_body(req, res, false) : NULL;
    const char *tenant = body ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    struct ah_problem p = {0};
    check(body, &p);
    if (http_fail(req, res, &p))
        return;
    AH_AUTO(draft_row_freep) struct draft_row *r = NULL;
    int rc = store_draft_update(ctx->store, tenant, id, body, time_now_ms(), &r);
    if (rc < 0)
        http_error(req, res, rc, rc == AH_E_NOTFOUND ? "no draft %s" : "cannot save draft %s", id);
    else
        http_json(req, res, 200, draft_json(r));
}

static void delete_draft(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    const char *id = ctx ? draft_id(req, res) : NULL;
    const char *tenant = id ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    int rc = store_draft_delete(ctx->store, tenant, id);
    if (rc < 0)
        http_error(req, res, rc, rc == AH_E_NOTFOUND ? "no draft %s" : "cannot delete draft %s",
                   id);
    else
        res->status = 204;
}

int api_drafts_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/drafts", list_drafts, ctx, 0, 0);
    rc |= router_add(r, "POST", "/api/v1/drafts", post_drafts, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/drafts/{id}", get_draft, ctx, 0, 0);
    rc |= router_add(r, "PUT", "/api/v1/drafts/{id}", put_draft, ctx, 0, 0);
    rc |= router_add(r, "DELETE", "/api/v1/drafts/{id}", delete_draft, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
