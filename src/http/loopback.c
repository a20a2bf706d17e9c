/*
 * loopback.c — one request through the router without a socket (h2o's loopback idea): the same
 * route matching, the same handlers, the same answers, for the in-process task manager and for
 * tests. The transport-level checks of server.c (body caps, content types, CORS) are the
 * network's business and are not repeated here; the caller is the process itself.
 */
#include <stdio.h>
#include <string.h>

#include "front.h"

static int hex(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decoding into the arena; `+` is a space in queries only. NULL on OOM. */
static char *decode(struct arena *a, const char *s, size_t n, bool query) {
    char *out = arena_alloc(a, n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            *o++ = (char)(hex(s[i + 1]) * 16 + hex(s[i + 2]));
            i += 2;
        } else if (query && s[i] == '+') {
            *o++ = ' ';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

int http_loopback(const struct router *r, const struct http_loopback_request *lr,
                  struct http_request *req, struct http_response *res) {
    memset(req, 0, sizeof(*req));
    memset(res, 0, sizeof(*res));
    struct arena *a = req->arena = arena_new();
    if (!a)
        return AH_E_NOMEM;
    const char *q = strchr(lr->target, '?');
    size_t plen = q ? (size_t)(q - lr->target) : strlen(lr->target);
    req->method = lr->method;
    req->path = decode(a, lr->target, plen, false);
    req->tenant = "default";
    char *rid = arena_alloc(a, ULID_LEN + 1);
    if (!req->path || !rid || ulid_new(rid) < 0)
        return AH_E_NOMEM;
    req->request_id = rid;
    req->headers = (struct http_kv *)lr->headers;
    req->n_headers = lr->n_headers;
    if (q && q[1]) {
        size_t n = 1;
        for (const char *c = q + 1; *c; c++)
            n += *c == '&';
        req->query = arena_alloc(a, n * sizeof(*req->query));
        if (!req->query)
            return AH_E_NOMEM;
        for (const char *c = q + 1; *c;) {
            size_t len = strcspn(c, "&");
            const char *eq = memchr(c, '=', len);
            size_t klen = eq ? (size_t)(eq - c) : len;
            char *k = decode(a, c, klen, true);
            char *v = eq ? decode(a, eq + 1, len - klen - 1, true) : arena_strdup(a, "");
            if (!k || !v)
                return AH_E_NOMEM;
            if (klen)
                req->query[req->n_query++] = (struct http_kv){k, v};
            c += len + (c[len] == '&');
        }
    }
    req->body = lr->body;
    req->body_len = lr->body_len;
    struct route_match m;
    char allow[128];
    int rc = router_match(r, lr->method, req->path, a, &m, allow, sizeof(allow));
    if (rc < 0) {
        http_error(req, res, rc, rc == AH_E_METHOD ? "%s is not allowed on %s" : "no resource at %s",
                   rc == AH_E_METHOD ? lr->method : req->path, req->path);
        return 0;
    }
    memcpy(req->params, m.params, sizeof(req->params));
    req->n_params = m.n_params;
    req->route_ctx = m.ctx;
    req->route_pattern = m.pattern;
    req->remote_addr = "";
    m.fn(req, res);
    if (res->later)
        http_later_wait_loopback(req, res);
    if (res->json && !res->body) { /* callers read bytes, as a client would */
        res->body = json_dumps(res->json, JSON_COMPACT);
        res->body_len = res->body ? strlen(res->body) : 0;
        json_decref(res->json);
        res->json = NULL;
        if (!res->body)
            return AH_E_NOMEM;
    }
    if (!res->status)
        res->status = 200;
    return 0;
}

void http_loopback_done(struct http_request *req, struct http_response *res) {
    http_response_clear(res);
    arena_free(req->arena);
    req->arena = NULL;
}
