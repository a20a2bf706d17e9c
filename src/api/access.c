/*
 * access.c — the middleware between the front door and the handlers (http_hooks): who is
 * calling (auth/), whether their role may use the route, which tenant they act for, their rate
 * limit, and the audit record of what they changed.
 *
 * The role each route needs is decided in one table, ACCESS_RULES below, next to the default
 * that covers every route not listed: reads (GET, HEAD) need viewer, everything else operator
 * (D22). So a route added anywhere is protected from the start; only routes that need more
 * (admin) or less (public) are listed.
 *
 * Without an auth object, or while no credential source exists (D22 local mode), every request
 * is the local admin and the tenant rules of api_tenant apply as they always did.
 */
#include <stdio.h>
#include <string.h>

#include "../auth/auth.h"
#include "routes.h"

/* A rule: method ("*" any) and pattern as registered ("*" suffix: any pattern with that
 * prefix). ROLE_PUBLIC needs no credentials at all. */
#define ROLE_PUBLIC (-1)
struct access_rule {
    const char *method;
    const char *pattern;
    int role;
};

/* clang-format off */
static const struct access_rule ACCESS_RULES[] = {
    /* D22: health, readiness, version, the OpenAPI document and the login flow are public */
    {"GET", "/api/v1/healthz", ROLE_PUBLIC},
    {"GET", "/api/v1/readyz", ROLE_PUBLIC},
    {"GET", "/api/v1/version", ROLE_PUBLIC},
    {"GET", "/api/v1/openapi.json", ROLE_PUBLIC},
    {"GET", "/api/docs*", ROLE_PUBLIC},
    {"*", "/api/v1/auth/*", ROLE_PUBLIC},
    /* admin: credentials, the audit trail, executors (D22) */
    {"*", "/api/v1/api-keys*", AUTH_ROLE_ADMIN},
    {"*", "/api/v1/audit*", AUTH_ROLE_ADMIN},
    {"POST", "/api/v1/executors*", AUTH_ROLE_ADMIN},
    {"PUT", "/api/v1/executors*", AUTH_ROLE_ADMIN},
    {"DELETE", "/api/v1/executors*", AUTH_ROLE_ADMIN},
};
/* clang-format on */

int api_route_role(const char *method, const char *pattern) {
    if (pattern && strcmp(pattern, "/metrics") == 0)
        return AUTH_ROLE_ADMIN; /* issue 18: operational detail, admin-only once auth is on */
    if (!pattern || strncmp(pattern, "/api/", 5) != 0)
        return ROLE_PUBLIC; /* the web UI's files (and /_ah/healthz): nothing secret */
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    for (size_t i = 0; i < sizeof(ACCESS_RULES) / sizeof(ACCESS_RULES[0]); i++) {
        const struct access_rule *r = &ACCESS_RULES[i];
        if (strcmp(r->method, "*") != 0 && strcmp(r->method, m) != 0)
            continue;
        size_t n = strlen(r->pattern);
        bool prefix = r->pattern[n - 1] == '*';
        if (prefix ? strncmp(pattern, r->pattern, n - 1) == 0 : strcmp(pattern, r->pattern) == 0)
            return r->role;
    }
    return strcmp(m, "GET") == 0 ? AUTH_ROLE_VIEWER : AUTH_ROLE_OPERATOR;
}

static bool unsafe_method(const char *m) {
    return strcmp(m, "GET") && strcmp(m, "HEAD") && strcmp(m, "OPTIONS");
}

/* What before() leaves for after(), in the request arena. */
struct access_state {
    struct auth_principal p;
    struct auth_limit limit;
    bool limited; /* limit holds a bucket's answer */
    bool audited; /* a state change: `record` is bound to the thread (store_audit_bind) */
    struct audit_entry record;
    char action[160];
};

/* D37: the state changes audited by after() (api-keys write their own records). */
static bool audited_change(const struct http_request *req) {
    return unsafe_method(req->method) && req->route_pattern &&
           strncmp(req->route_pattern, "/api/v1/api-keys", 16) != 0;
}

/* The record of this request; `act` (160 bytes) holds "<METHOD> <route>" when action is NULL. */
static struct audit_entry audit_record(const struct http_request *req,
                                       const struct auth_principal *p, const char *action,
                                       const char *outcome, int status, char *act) {
    if (!action) {
        snprintf(act, 160, "%s %s", req->method, req->route_pattern ? req->route_pattern : "?");
        action = act;
    }
    return (struct audit_entry){
        .ts = time_now_ms(),
        .tenant = p && p->tenant[0] ? p->tenant : NULL,
        .actor = p && p->subject[0] ? p->subject : NULL,
        .credential_id = p && p->credential_id[0] ? p->credential_id : NULL,
        .action = action,
        .target = req->path,
        .request_id = req->request_id,
        .source = req->remote_addr && *req->remote_addr ? req->remote_addr : NULL,
        .outcome = outcome,
        .status = status,
    };
}

static void audit(struct api_ctx *ctx, struct http_request *req, const struct auth_principal *p,
                  const char *action, const char *outcome, int status) {
    struct store *st = api_store(ctx);
    if (!st)
        return;
    char act[160];
    struct audit_entry e = audit_record(req, p, action, outcome, status, act);
    action = e.action;
    if (store_audit_append(st, &e) < 0)
        log_msg(LOG_WARN, "cannot write the audit record of %s (request %s)", action,
                req->request_id);
}

static void add_limit_headers(struct http_request *req, struct http_response *res,
                              const struct auth_limit *l) {
    char v[32];
    snprintf(v, sizeof(v), "%lld", (long long)l->limit);
    http_header_add(req, res, "RateLimit-Limit", v);
    snprintf(v, sizeof(v), "%lld", (long long)l->remaining);
    http_header_add(req, res, "RateLimit-Remaining", v);
    snprintf(v, sizeof(v), "%lld", (long long)l->reset_s);
    http_header_add(req, res, "RateLimit-Reset", v);
}

/* D36: the CSRF token of the cookie's session, and no cross-site request (Sec-Fetch-Site, sent
 * by every current browser; an Origin that is present must be this server's, which the front
 * door's CORS already limits). */
static bool csrf_ok(const struct http_request *req, const char *cookie) {
    const char *site = http_header(req, "Sec-Fetch-Site");
    if (site && strcmp(site, "same-origin") != 0)
        return false;
    const char *sent = http_header(req, "X-CSRF-Token");
    char want[65];
    auth_session_csrf(cookie, want);
    return sent && auth_str_equal(sent, want);
}

static bool before(void *arg, struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = arg;
    struct access_state *s = arena_alloc(req->arena, sizeof(*s));
    if (!s) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return false;
    }
    memset(s, 0, sizeof(*s));
    int need = api_route_role(req->method, req->route_pattern);
    struct auth *a = ctx->auth;
    if (a)
        auth_audit_sweep(a);
    if (!a || !auth_required(a)) {
        /* D22 local mode: the single local admin; credentials, if any, are not looked at */
        s->p.role = AUTH_ROLE_ADMIN;
        s->p.local = true;
        snprintf(s->p.kind, sizeof(s->p.kind), "local");
        req->principal = &s->p;
        return true;
    }
    if (need == ROLE_PUBLIC)
        return true; /* no principal: public routes read no tenant data */
    char detail[256];
    const char *authorization = http_header(req, "Authorization");
    const char *api_key = http_header(req, "X-API-Key");
    /* D36: a browser signed in through OIDC carries its session in a cookie; a credential in a
     * header wins over it (a script in a signed-in browser still uses its key) */
    const char *cookie = !authorization && !api_key && auth_oidc_enabled(a)
                             ? api_cookie(req, AUTH_SESSION_COOKIE)
                             : NULL;
    int rc = cookie ? auth_session_check(a, cookie, &s->p, detail, sizeof(detail))
                    : auth_authenticate(a, authorization, api_key, &s->p, detail,
                                        sizeof(detail));
    if (rc == 0 && cookie && unsafe_method(req->method) && !csrf_ok(req, cookie)) {
        /* a cookie rides along on any request the browser makes, whoever asked for it */
        http_error(req, res, AH_E_FORBIDDEN,
                   "a change made with the session cookie needs the session's CSRF token in "
                   "X-CSRF-Token (GET /api/v1/auth/session) and must come from this site");
        audit(ctx, req, &s->p, "csrf.denied", "denied", 403);
        return false;
    }
    if (rc == AH_E_UNAVAIL) {
        http_error(req, res, AH_E_UNAVAIL, "%s", detail);
        http_header_add(req, res, "Retry-After", "1");
        return false;
    }
    if (rc < 0) {
        struct auth_limit fl;
        auth_fail_take(a, req->remote_addr, time_mono_ms(), &fl);
        if (!fl.allowed) {
            char ra[24];
            snprintf(ra, sizeof(ra), "%lld", (long long)fl.retry_after);
            http_error(req, res, AH_E_RATELIMIT,
                       "too many failed authentications from this address; retry in %s s", ra);
            http_header_add(req, res, "Retry-After", ra);
            add_limit_headers(req, res, &fl);
            return false;
        }
        http_error(req, res, AH_E_AUTH, "%s", detail);
        http_header_add(req, res, "WWW-Authenticate", "ApiKey, Bearer");
        audit(ctx, req, NULL, "auth.failed", "denied", 401);
        return false;
    }
    if ((int)s->p.role < need) {
        http_error(req, res, AH_E_FORBIDDEN, "%s %s needs the %s role; this credential has %s",
                   req->method, req->route_pattern, auth_role_name((enum auth_role)need),
                   auth_role_name(s->p.role));
        audit(ctx, req, &s->p, "authz.denied", "denied", 403);
        return false;
    }
    /* D35: the tenant is the credential's; X-Tenant-ID counts only for an admin credential
     * allowed to impersonate, and is audited. Otherwise it is ignored. */
    const char *asked = http_header(req, "X-Tenant-ID");
    if (asked && s->p.impersonate && strcmp(asked, s->p.tenant) != 0) {
        if (!auth_name_ok(asked)) {
            struct ah_problem p = {0};
            problem_field(&p, "X-Tenant-ID",
                          "may only contain letters, digits, '.', '_' and '-' (1 to %d "
                          "characters)",
                          AUTH_NAME_MAX);
            http_fail(req, res, &p);
            return false;
        }
        snprintf(s->p.tenant, sizeof(s->p.tenant), "%s", asked);
        s->p.project[0] = '\0';
        audit(ctx, req, &s->p, "tenant.impersonate", "success", 0);
    }
    req->tenant = s->p.tenant;
    req->principal = &s->p;
    bool task = strcmp(req->method, "POST") == 0 && req->route_pattern &&
                strcmp(req->route_pattern, "/api/v1/tasks") == 0;
    auth_rate_take(a, &s->p, task, time_mono_ms(), &s->limit);
    s->limited = true;
    if (!s->limit.allowed) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%lld", (long long)s->limit.retry_after);
        http_error(req, res, AH_E_RATELIMIT, "too many requests%s; retry in %s s",
                   task ? " creating tasks for this tenant" : " with this credential", ra);
        http_header_add(req, res, "Retry-After", ra);
        return false;
    }
    if (audited_change(req)) {
        /* D37: the store appends this record in the transaction of the change (its outcome is
         * success: the change committed; the answer's status is not known yet, so none) */
        s->record = audit_record(req, &s->p, NULL, "success", 0, s->action);
        s->audited = true;
        store_audit_bind(&s->record);
    }
    return true;
}

static void after(void *arg, struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = arg;
    const struct auth_principal *p = req->principal;
    store_audit_bind(NULL);
    if (!p || p->local)
        return;
    /* the principal sits at the start of the state before() allocated */
    const struct access_state *s = (const struct access_state *)p;
    if (s->limited)
        add_limit_headers(req, res, &s->limit);
    int status = res->status ? res->status : 200;
    /* D37: every state-changing operation, whatever its outcome, once: a change the store
     * committed carries its record already (same transaction); what changed nothing in the
     * store, or failed, is recorded here */
    if (audited_change(req) && !s->record.written)
        audit(ctx, req, p, NULL, status < 400 ? "success" : status == 403 ? "denied" : "failure",
              status);
}

static bool closed(void *arg) {
    struct api_ctx *ctx = arg;
    return ctx->auth && auth_required(ctx->auth);
}

void api_access_hooks(struct api_ctx *ctx, struct http_hooks *ret) {
    *ret = (struct http_hooks){.before = before, .after = after, .closed = closed, .arg = ctx};
}

const struct auth_principal *api_principal(const struct http_request *req) {
    return req->principal;
}
