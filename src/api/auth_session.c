/*
 * auth_session.c — the browser side of OIDC sign-in (D36; auth/oidc.c does the work):
 *
 *   GET  /api/v1/auth/session         what this browser's cookie stands for (none, pending,
 *                                     active with user, role and CSRF token, failed, expired,
 *                                     signedOut) and which provider the sign-in page offers
 *   GET  /api/v1/auth/oidc/login      → 302 to the provider; ?returnTo=/local/path
 *   GET  /api/v1/auth/oidc/callback   the provider's redirect back → 303 to returnTo with the
 *                                     session cookie (the code is exchanged off this thread)
 *   POST /api/v1/auth/logout          revokes the session (CSRF token required), clears the
 *                                     cookie; names the provider's end-session URL when
 *                                     RP-initiated logout is configured
 *
 * All are public routes (access.c): they read the cookie themselves. Cookies: HttpOnly,
 * SameSite=Lax (the provider's redirect back is a top-level GET, which Lax lets through),
 * Secure when the redirect URI is https. Neither cookie's value ever reaches a log or a Problem.
 */
#include <stdio.h>
#include <string.h>

#include "../auth/auth.h"
#include "routes.h"

const char *api_cookie(const struct http_request *req, const char *name) {
    const char *h = http_header(req, "Cookie");
    size_t nl = strlen(name);
    while (h && *h) {
        while (*h == ' ' || *h == ';')
            h++;
        size_t len = strcspn(h, ";");
        if (len > nl && strncmp(h, name, nl) == 0 && h[nl] == '=') {
            const char *v = h + nl + 1;
            size_t vl = len - nl - 1;
            while (vl && v[vl - 1] == ' ')
                vl--;
            if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
                v++;
                vl -= 2;
            }
            return arena_strndup(req->arena, v, vl);
        }
        h += len;
    }
    return NULL;
}

/* Adds a Set-Cookie; max_age < 0 deletes the cookie. */
static void set_cookie(struct http_request *req, struct http_response *res, struct auth *a,
                       const char *name, const char *value, const char *path, int64_t max_age) {
    char v[256];
    snprintf(v, sizeof(v), "%s=%s; Path=%s; HttpOnly; SameSite=Lax%s; Max-Age=%lld", name,
             max_age < 0 ? "" : value, path, auth_cookie_secure(a) ? "; Secure" : "",
             (long long)(max_age < 0 ? 0 : max_age));
    http_header_add(req, res, "Set-Cookie", v);
}

/* A client that asks for JSON first (not a browser following links) gets the next URL in a
 * 200 answer instead of a redirect. */
static bool wants_json(const struct http_request *req) {
    const char *a = http_header(req, "Accept");
    return a && strncmp(a, "application/json", 16) == 0;
}

static struct auth *oidc_auth(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = req->route_ctx;
    if (!ctx->auth || !auth_oidc_enabled(ctx->auth)) {
        /* the route exists (not 404) and is built (not 501): this server, as configured, cannot
         * do what is asked, like a runtime it does not offer (422 unsupported) */
        http_error(req, res, AH_E_UNSUPPORTED,
                   "sign-in through an identity provider is not configured on this server "
                   "(oidc-issuer)");
        return NULL;
    }
    return ctx->auth;
}

static void get_session(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = req->route_ctx;
    json_t *j;
    if (ctx->auth)
        j = auth_session_json(ctx->auth, api_cookie(req, AUTH_SESSION_COOKIE));
    else
        j = json_pack("{s:s}", "status", "none");
    http_header_add(req, res, "Cache-Control", "no-store");
    http_json(req, res, 200, j);
}

static void login(struct http_request *req, struct http_response *res) {
    struct auth *a = oidc_auth(req, res);
    if (!a)
        return;
    char state[AUTH_COOKIE_MAX + 1], detail[256];
    char *url = NULL;
    int rc = auth_oidc_begin(a, http_query(req, "returnTo"), &url, state, detail, sizeof(detail));
    if (rc == AH_E_INVAL) {
        struct ah_problem p = {0};
        problem_field(&p, "returnTo", "%s", detail);
        http_fail(req, res, &p);
        return;
    }
    if (rc < 0) {
        http_error(req, res, rc, "%s", detail);
        if (rc == AH_E_UNAVAIL)
            http_header_add(req, res, "Retry-After", "2");
        return;
    }
    set_cookie(req, res, a, AUTH_STATE_COOKIE, state, "/api/v1/auth/oidc", 600);
    memset(state, 0, sizeof(state));
    http_header_add(req, res, "Cache-Control", "no-store");
    if (wants_json(req)) {
        http_json(req, res, 200, json_pack("{s:s}", "authorizationUrl", url));
    } else {
        http_header_add(req, res, "Location", url);
        res->status = 302;
    }
    free(url);
}

static void callback(struct http_request *req, struct http_response *res) {
    struct auth *a = oidc_auth(req, res);
    if (!a)
        return;
    const char *error = http_query(req, "error");
    if (error) {
        /* RFC 6749 §4.1.2.1: the person declined, or the provider refused; its code is named
         * only when it is a plain word */
        bool plain = strlen(error) <= 64 && strspn(error, "abcdefghijklmnopqrstuvwxyz_") ==
                                                strlen(error);
        http_error(req, res, AH_E_FORBIDDEN, "the identity provider did not sign you in (%s)",
                   plain ? error : "an error");
        set_cookie(req, res, a, AUTH_STATE_COOKIE, "", "/api/v1/auth/oidc", -1);
        return;
    }
    char cookie[AUTH_COOKIE_MAX + 1], detail[256];
    char *back = NULL;
    struct auth_origin o = {.request_id = req->request_id, .source = req->remote_addr};
    int rc = auth_oidc_finish(a, http_query(req, "state"), api_cookie(req, AUTH_STATE_COOKIE),
                              http_query(req, "code"), &o, cookie, &back, detail,
                              sizeof(detail));
    if (rc < 0) {
        http_error(req, res, rc == AH_E_AUTH ? AH_E_INVAL : rc, "%s", detail);
        if (rc == AH_E_UNAVAIL)
            http_header_add(req, res, "Retry-After", "2");
        return;
    }
    set_cookie(req, res, a, AUTH_SESSION_COOKIE, cookie, "/", auth_session_max_s(a));
    set_cookie(req, res, a, AUTH_STATE_COOKIE, "", "/api/v1/auth/oidc", -1);
    memset(cookie, 0, sizeof(cookie));
    http_header_add(req, res, "Cache-Control", "no-store");
    if (wants_json(req)) {
        http_json(req, res, 200, json_pack("{s:s, s:s}", "status", "pending", "returnTo", back));
    } else {
        http_header_add(req, res, "Location", back);
        res->status = 303;
    }
    free(back);
}

/* Signing out is idempotent: without a live session there is nothing to revoke and the answer
 * is the same. A cookie that is sent must come with its CSRF token (a cross-site form must not
 * sign anybody out). */
static void logout(struct http_request *req, struct http_response *res) {
    struct auth *a = oidc_auth(req, res);
    if (!a)
        return;
    const char *cookie = api_cookie(req, AUTH_SESSION_COOKIE);
    char *end = NULL;
    if (cookie && *cookie) {
        char csrf[65], detail[256];
        const char *sent = http_header(req, "X-CSRF-Token");
        auth_session_csrf(cookie, csrf);
        if (!sent || !auth_str_equal(sent, csrf)) {
            http_error(req, res, AH_E_FORBIDDEN,
                       "signing out needs the session's CSRF token in X-CSRF-Token (from GET "
                       "/api/v1/auth/session)");
            return;
        }
        struct auth_origin o = {.request_id = req->request_id, .source = req->remote_addr};
        char id[AUTH_ID_MAX];
        int rc = auth_session_logout(a, cookie, &o, &end, id, detail, sizeof(detail));
        if (rc < 0 && rc != AH_E_AUTH) {
            http_error(req, res, rc, "%s", detail);
            return;
        }
        if (rc == 0)
            api_streams_revoke("session", id); /* its event streams end with it */
    }
    set_cookie(req, res, a, AUTH_SESSION_COOKIE, "", "/", -1);
    http_header_add(req, res, "Cache-Control", "no-store");
    http_json(req, res, 200,
              json_pack("{s:s, s:s*}", "status", "signedOut", "endSessionUrl", end));
    free(end);
}

int api_auth_session_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/auth/session", get_session, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/auth/oidc/login", login, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/auth/oidc/callback", callback, ctx, 0, 0);
    rc |= router_add(r, "POST", "/api/v1/auth/logout", logout, ctx, ROUTE_ANY_BODY, 0);
    return rc;
}
