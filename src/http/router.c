/*
 * router.c — method + path matching with {name} and {name...} segments.
 *
 * Routes are kept in registration order; the first whose pattern and method match wins, so a
 * literal route registered before a parameterised one takes precedence over it. The table is
 * built at start and read-only afterwards, so matching needs no lock.
 */
#include <string.h>
#include <stdio.h>
#include <strings.h>

#include "http.h"

#define MAX_SEGMENTS 24

struct segment {
    char *text; /* literal text, or the parameter name */
    bool param, tail;
};

struct route {
    char method[8];
    struct segment seg[MAX_SEGMENTS];
    size_t n_seg;
    http_handler_fn fn;
    void *ctx;
    unsigned flags;
    size_t max_body;
    const struct http_body_ops *body_ops; /* router_set_body: the body is streamed to these */
    char *pattern; /* as registered: the route template metrics are labelled with (D49) */
};

struct router {
    struct route *routes;
    size_t n, cap;
};

struct router *router_new(void) {
    return calloc(1, sizeof(struct router));
}

void router_free(struct router *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        for (size_t k = 0; k < r->routes[i].n_seg; k++)
            free(r->routes[i].seg[k].text);
        free(r->routes[i].pattern);
    }
    free(r->routes);
    free(r);
}

int router_add(struct router *r, const char *method, const char *pattern, http_handler_fn fn,
               void *ctx, unsigned flags, size_t max_body) {
    if (!method || strlen(method) >= 8 || !pattern || pattern[0] != '/' || !fn)
        return AH_E_INVAL;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        struct route *nr = realloc(r->routes, cap * sizeof(*nr));
        if (!nr)
            return AH_E_NOMEM;
        r->routes = nr;
        r->cap = cap;
    }
    struct route *rt = &r->routes[r->n];
    memset(rt, 0, sizeof(*rt));
    snprintf(rt->method, sizeof(rt->method), "%s", method);
    rt->fn = fn;
    rt->ctx = ctx;
    rt->flags = flags;
    rt->max_body = max_body;
    const char *p = pattern + 1;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (rt->n_seg == MAX_SEGMENTS || len == 0)
            goto bad;
        struct segment *s = &rt->seg[rt->n_seg++];
        if (p[0] == '{' && p[len - 1] == '}') {
            s->param = true;
            size_t inner = len - 2;
            if (inner > 3 && memcmp(p + 1 + inner - 3, "...", 3) == 0) {
                s->tail = true;
                inner -= 3;
                if (end)
                    goto bad; /* {x...} must be last */
            }
            s->text = strndup(p + 1, inner);
        } else {
            s->text = strndup(p, len);
        }
        if (!s->text) {
            for (size_t k = 0; k < rt->n_seg; k++)
                free(rt->seg[k].text);
            return AH_E_NOMEM;
        }
        p += len;
        if (*p == '/')
            p++;
    }
    if (!(rt->pattern = strdup(pattern))) {
        for (size_t k = 0; k < rt->n_seg; k++)
            free(rt->seg[k].text);
        return AH_E_NOMEM;
    }
    r->n++;
    return 0;
bad:
    for (size_t k = 0; k < rt->n_seg; k++)
        free(rt->seg[k].text);
    return AH_E_INVAL;
}

/* Does `path` fit the route's pattern? Fills params (arena copies) on success. */
static bool path_matches(const struct route *rt, const char *path, struct arena *a,
                         struct route_match *m) {
    const char *p = path;
    if (*p != '/')
        return false;
    p++;
    size_t n_params = 0;
    for (size_t i = 0; i < rt->n_seg; i++) {
        const struct segment *s = &rt->seg[i];
        if (s->tail) {
            if (!*p)
                return false;
            if (m && n_params < HTTP_MAX_PARAMS)
                m->params[n_params++] = (struct http_kv){s->text, arena_strdup(a, p)};
            p += strlen(p);
            continue;
        }
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0)
            return false;
        if (s->param) {
            if (m && n_params < HTTP_MAX_PARAMS)
                m->params[n_params++] = (struct http_kv){s->text, arena_strndup(a, p, len)};
        } else if (strlen(s->text) != len || memcmp(s->text, p, len) != 0) {
            return false;
        }
        p += len;
        if (*p == '/') {
            p++;
            if (!*p)
                return false; /* trailing slash: not the same resource */
        }
    }
    if (*p)
        return false;
    if (m) {
        for (size_t i = 0; i < n_params; i++)
            if (!m->params[i].value)
                return false; /* arena OOM */
        m->n_params = n_params;
    }
    return true;
}

size_t router_max_body(const struct router *r) {
    size_t m = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->routes[i].max_body > m)
            m = r->routes[i].max_body;
    return m;
}

size_t router_count(const struct router *r) {
    return r->n;
}

void router_route(const struct router *r, size_t i, const char **ret_method,
                  const char **ret_pattern) {
    *ret_method = r->routes[i].method;
    *ret_pattern = r->routes[i].pattern;
}

int router_match(const struct router *r, const char *method, const char *path, struct arena *a,
                 struct route_match *ret, char *allow, size_t allow_size) {
    const char *want = strcmp(method, "HEAD") == 0 ? "GET" : method;
    bool path_known = false;
    if (allow && allow_size)
        allow[0] = '\0';
    for (size_t i = 0; i < r->n; i++) {
        const struct route *rt = &r->routes[i];
        if (strcmp(rt->method, want) == 0) {
            struct route_match m = {0};
            if (path_matches(rt, path, a, &m)) {
                m.fn = rt->fn;
                m.ctx = rt->ctx;
                m.flags = rt->flags;
                m.body_ops = rt->body_ops;
                m.max_body = rt->max_body;
                m.index = i;
                m.pattern = rt->pattern;
                *ret = m;
                return 0;
            }
        } else if (path_matches(rt, path, NULL, NULL)) {
            path_known = true;
            if (allow && !strstr(allow, rt->method)) {
                size_t l = strlen(allow);
                snprintf(allow + l, allow_size - l, "%s%s", l ? ", " : "", rt->method);
                if (strcmp(rt->method, "GET") == 0 && !strstr(allow, "HEAD")) {
                    l = strlen(allow);
                    snprintf(allow + l, allow_size - l, ", HEAD");
                }
            }
        }
    }
    return path_known ? AH_E_METHOD : AH_E_NOTFOUND;
}

int router_set_body(struct router *r, const struct http_body_ops *ops) {
    if (!r->n || !ops || !ops->begin || !ops->write || !ops->end)
        return AH_E_INVAL;
    r->routes[r->n - 1].body_ops = ops;
    return 0;
}
