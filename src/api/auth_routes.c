/*
 * auth_routes.c — managing API keys (POST/GET /api/v1/api-keys, DELETE /api/v1/api-keys/{id})
 * and reading the audit trail (GET /api/v1/audit). All admin-only (access.c), all scoped to the
 * caller's tenant (an impersonating admin's X-Tenant-ID included, D35). A key's secret is in the
 * creation answer only; the store keeps a salted hash. There is no route that deletes audit
 * records (D37).
 */
#include <stdio.h>
#include <string.h>

#include "../auth/auth.h"
#include "routes.h"

static void audit_fill(struct http_request *req, const char *action, const char *target,
                       struct audit_entry *e) {
    const struct auth_principal *p = req->principal;
    *e = (struct audit_entry){
        .ts = time_now_ms(),
        .tenant = req->tenant,
        .actor = p && p->subject[0] ? p->subject : "local",
        .credential_id = p && p->credential_id[0] ? p->credential_id : NULL,
        .action = action,
        .target = target,
        .request_id = req->request_id,
        .source = req->remote_addr && *req->remote_addr ? req->remote_addr : NULL,
        .outcome = "success",
        .status = 0,
    };
}

static void create_key(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    json_t *body = ctx ? api_body(req, res, false) : NULL;
    if (!body)
        return;
    const char *role = NULL, *tenant_in = NULL, *project = NULL, *name = NULL, *expires = NULL;
    int impersonate = 0;
    json_error_t jerr;
    struct ah_problem p = {0};
    if (json_unpack_ex(body, &jerr, JSON_STRICT, "{s:s, s?s, s?s, s?s, s?s, s?b}", "role", &role,
                       "tenantId", &tenant_in, "projectId", &project, "name", &name, "expiresAt",
                       &expires, "impersonate", &impersonate) < 0) {
        problem_set(&p, AH_E_INVAL, "invalid API key request: %s", jerr.text);
        json_decref(body);
        http_fail(req, res, &p);
        return;
    }
    const char *tenant = api_tenant(req, res, tenant_in);
    if (!tenant) {
        json_decref(body);
        return;
    }
    struct auth_key_spec spec = {.tenant = tenant, .project = project, .name = name,
                                 .impersonate = impersonate != 0};
    if (auth_role_parse(role, &spec.role) < 0)
        problem_field(&p, "role", "must be viewer, operator or admin");
    if (expires && time_parse(expires, &spec.expires_at) < 0)
        problem_field(&p, "expiresAt", "must be an RFC 3339 time");
    if (!p.code)
        auth_key_spec_check(&spec, time_now_ms(), &p);
    if (http_fail(req, res, &p)) {
        json_decref(body);
        return;
    }
    struct audit_entry e;
    audit_fill(req, "api-key.create", NULL, &e);
    char *key = NULL;
    struct apikey_row *row = NULL;
    int rc = auth_key_create(ctx->store, &spec, &e, &key, &row);
    json_decref(body);
    if (rc < 0) {
        http_error(req, res, rc, "cannot create the API key");
        return;
    }
    if (ctx->auth)
        auth_invalidate(ctx->auth); /* the first key closes the local mode at once */
    json_t *j = auth_key_json(row);
    if (j && json_object_set_new(j, "key", json_string(key)) < 0) {
        json_decref(j);
        j = NULL;
    }
    memset(key, 0, strlen(key));
    free(key);
    char self[96];
    snprintf(self, sizeof(self), "/api/v1/api-keys/%s", row->id);
    http_header_add(req, res, "Location", self);
    apikey_row_free(row);
    http_json(req, res, 201, j);
}

static void post_key(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, create_key);
}

static void list_keys(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    const char *tenant = ctx ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    struct ah_problem p = {0};
    struct page pg = api_page(req, PAGE_DEFAULT_PER_PAGE, &p);
    if (http_fail(req, res, &p))
        return;
    struct apikey_row **rows = NULL;
    size_t n = 0;
    int64_t total = 0;
    int rc = store_apikey_list(ctx->store, tenant, &pg, &rows, &n, &total);
    if (rc < 0) {
        http_error(req, res, rc, "cannot list API keys");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; items && i < n; i++)
        if (json_array_append_new(items, auth_key_json(rows[i])) < 0) {
            json_decref(items);
            items = NULL;
        }
    apikey_rows_free(rows, n);
    http_json(req, res, 200, page_envelope(items, &pg, total));
}

static void delete_key(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    const char *tenant = ctx ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    const char *id = http_param(req, "id");
    char parsed[AUTH_ID_MAX];
    const char *secret;
    /* a whole key pasted instead of its id is refused without being echoed */
    if (!id || strlen(id) > 64 || auth_key_parse(id, parsed, &secret) == 0) {
        http_error(req, res, AH_E_NOTFOUND, "no such API key");
        return;
    }
    for (const char *c = id; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z'))) {
            http_error(req, res, AH_E_NOTFOUND, "no such API key");
            return;
        }
    struct audit_entry e;
    audit_fill(req, "api-key.revoke", id, &e);
    int rc = store_apikey_revoke(ctx->store, tenant, id, time_now_ms(), &e);
    if (rc < 0) {
        http_error(req, res, rc,
                   rc == AH_E_NOTFOUND ? "no API key %s (or it is already revoked)"
                                       : "cannot revoke API key %s",
                   id);
        return;
    }
    if (ctx->auth)
        auth_invalidate(ctx->auth);
    api_streams_revoke("apikey", id); /* what the key was watching ends too */
    res->status = 204;
}

static void list_audit(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    const char *tenant = ctx ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    struct ah_problem p = {0};
    struct page pg = api_page(req, 50, &p);
    struct audit_filter f = {
        .action = http_query(req, "action"),
        .actor = http_query(req, "actor"),
        .outcome = http_query(req, "outcome"),
    };
    const char *since = http_query(req, "since"), *until = http_query(req, "until");
    if (since && time_parse(since, &f.since) < 0)
        problem_field(&p, "since", "must be an RFC 3339 time");
    if (until && time_parse(until, &f.until) < 0)
        problem_field(&p, "until", "must be an RFC 3339 time");
    const char *texts[] = {f.action, f.actor, f.outcome};
    const char *names[] = {"action", "actor", "outcome"};
    for (size_t i = 0; i < 3; i++)
        if (texts[i] && strlen(texts[i]) > 200)
            problem_field(&p, names[i], "is longer than 200 characters");
    if (http_fail(req, res, &p))
        return;
    json_t *items = NULL;
    int64_t total = 0;
    int rc = store_audit_list(ctx->store, tenant, &f, &pg, &items, &total);
    if (rc < 0) {
        http_error(req, res, rc, "cannot read the audit log");
        return;
    }
    http_json(req, res, 200, page_envelope(items, &pg, total));
}

int api_auth_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "POST", "/api/v1/api-keys", post_key, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/api-keys", list_keys, ctx, 0, 0);
    rc |= router_add(r, "DELETE", "/api/v1/api-keys/{id}", delete_key, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/audit", list_audit, ctx, 0, 0);
    rc |= api_auth_session_register(r, ctx);
    return rc;
}
