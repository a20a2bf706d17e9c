/*
 * openapi.c — the contract, served (issue 6).
 *
 *   GET /api/v1/openapi.json   api/openapi.json as it was when the binary was built
 *   GET /api/docs              Swagger UI (npm swagger-ui-dist) loading that document
 *   GET /api/docs/{asset}      the UI's files, with their content types
 *
 * Both the document and the UI are embedded at build time (cmake/openapi.cmake), so a running
 * server always describes itself and needs nothing from the network or the disk to do it.
 *
 * api_register_unimplemented gives every operation of the document that no handler serves a
 * 501 Problem instead of the router's 404/405: a documented endpoint this build does not serve
 * exists all the same, it is not "no such route". It must run after all real routes are registered, because it asks the
 * router what is already served and the router's first match wins.
 */
#include <stdio.h>
#include <string.h>

#include "routes.h"

extern const struct embedded_file api_openapi_doc[]; /* openapi_doc.c: "openapi.json" */
extern const struct embedded_file api_swagger_ui[];  /* swagger_ui.c: swagger-ui-dist files */

#define OPENAPI_DOC_URL "/api/v1/openapi.json"
#define DOCS_BASE "/api/docs"

/* Our page rather than the package's index.html: that one loads the Petstore example. The
 * initialiser is a separate file so a Content-Security-Policy without 'unsafe-inline' can be
 * added later without touching the page. */
static const char docs_html[] =
    "<!doctype html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>Agent Harbor REST API</title>\n"
    "<link rel=\"stylesheet\" href=\"" DOCS_BASE "/swagger-ui.css\">\n"
    "<link rel=\"icon\" type=\"image/png\" href=\"" DOCS_BASE "/favicon-32x32.png\" "
    "sizes=\"32x32\">\n"
    "<link rel=\"icon\" type=\"image/png\" href=\"" DOCS_BASE "/favicon-16x16.png\" "
    "sizes=\"16x16\">\n"
    "</head>\n"
    "<body>\n"
    "<div id=\"swagger-ui\"></div>\n"
    "<script src=\"" DOCS_BASE "/swagger-ui-bundle.js\"></script>\n"
    "<script src=\"" DOCS_BASE "/ah-init.js\"></script>\n"
    "</body>\n"
    "</html>\n";

/* validatorUrl null: Swagger UI would otherwise send the document to a public validator. */
static const char docs_init_js[] =
    "window.addEventListener('load', function () {\n"
    "  window.ui = SwaggerUIBundle({\n"
    "    url: '" OPENAPI_DOC_URL "',\n"
    "    dom_id: '#swagger-ui',\n"
    "    deepLinking: true,\n"
    "    validatorUrl: null,\n"
    "    displayRequestDuration: true,\n"
    "    oauth2RedirectUrl: window.location.origin + '" DOCS_BASE "/oauth2-redirect.html',\n"
    "    presets: [SwaggerUIBundle.presets.apis],\n"
    "    layout: 'BaseLayout'\n"
    "  });\n"
    "});\n";

static const char *content_type_of(const char *name) {
    static const struct {
        const char *suffix, *type;
    } types[] = {
        {".css", "text/css; charset=utf-8"},   {".js", "text/javascript; charset=utf-8"},
        {".html", "text/html; charset=utf-8"}, {".png", "image/png"},
        {".json", "application/json"},         {".txt", "text/plain; charset=utf-8"},
    };
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        size_t l = strlen(types[i].suffix);
        if (n > l && strcmp(name + n - l, types[i].suffix) == 0)
            return types[i].type;
    }
    return "text/plain; charset=utf-8"; /* LICENSE, NOTICE */
}

/* Answers with a copy of data (the response owns its body). */
static void send_bytes(struct http_request *req, struct http_response *res, const char *data,
                       size_t size, const char *content_type) {
    char *body = malloc(size ? size : 1);
    if (!body) {
        http_error(req, res, AH_E_NOMEM, "out of memory while building the response");
        return;
    }
    memcpy(body, data, size);
    res->status = 200;
    res->body = body;
    res->body_len = size;
    res->content_type = content_type;
}

static void get_openapi(struct http_request *req, struct http_response *res) {
    const struct embedded_file *doc = &api_openapi_doc[0];
    send_bytes(req, res, doc->data, doc->size, "application/json");
}

static void get_docs(struct http_request *req, struct http_response *res) {
    send_bytes(req, res, docs_html, sizeof(docs_html) - 1, "text/html; charset=utf-8");
}

static void get_docs_asset(struct http_request *req, struct http_response *res) {
    const char *name = http_param(req, "asset");
    if (strcmp(name, "ah-init.js") == 0) {
        send_bytes(req, res, docs_init_js, sizeof(docs_init_js) - 1,
                   "text/javascript; charset=utf-8");
        return;
    }
    for (const struct embedded_file *f = api_swagger_ui; f->name; f++) {
        if (strcmp(f->name, name) == 0) {
            send_bytes(req, res, f->data, f->size, content_type_of(f->name));
            return;
        }
    }
    http_error(req, res, AH_E_NOTFOUND, "no file %s in the API docs", name);
}

int api_openapi_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", OPENAPI_DOC_URL, get_openapi, ctx, 0, 0);
    rc |= router_add(r, "GET", DOCS_BASE, get_docs, ctx, 0, 0);
    rc |= router_add(r, "GET", DOCS_BASE "/{asset}", get_docs_asset, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}

/* ---- documented but not implemented ---------------------------------------------------------- */

static void not_implemented(struct http_request *req, struct http_response *res) {
    http_error(req, res, AH_E_NOTIMPL, "%s %s is documented but not implemented by this server yet",
               req->method, req->path);
}

/* Path parameters that may span several segments (a workspace path such as src/a.c). The router
 * can only match "the rest of the path" as the last segment, so an operation below such a
 * parameter (files/{filePath}/preview) is covered by the route for the parameter itself. */
static bool greedy_param(const char *name, size_t len) {
    return len == 8 && memcmp(name, "filePath", 8) == 0;
}

/* The router pattern of an OpenAPI path template: {param} stays, a greedy {param} becomes
 * {param...} and ends the pattern. false when it does not fit (a bug in the document). */
static bool pattern_of(const char *tmpl, char *out, size_t size) {
    size_t n = 0;
    out[0] = '\0';
    for (const char *c = tmpl; *c; c++) {
        if (*c == '{') {
            const char *end = strchr(c, '}');
            if (!end)
                return false;
            int len = (int)(end - c - 1);
            if (greedy_param(c + 1, (size_t)len)) {
                int w = snprintf(out + n, size - n, "{%.*s...}", len, c + 1);
                return w > 0 && (size_t)w < size - n;
            }
        }
        if (n + 1 >= size)
            return false;
        out[n++] = *c;
        out[n] = '\0';
    }
    return true;
}

/* A concrete path for the template: each {param} replaced by "x". */
static bool sample_of(const char *tmpl, char *out, size_t size) {
    size_t n = 0;
    for (const char *c = tmpl; *c; c++) {
        if (n + 1 >= size)
            return false;
        if (*c == '{') {
            const char *end = strchr(c, '}');
            if (!end)
                return false;
            out[n++] = 'x';
            c = end;
        } else {
            out[n++] = *c;
        }
    }
    out[n] = '\0';
    return true;
}

int api_register_unimplemented(struct router *r, struct api_ctx *ctx) {
    static const struct {
        const char *key, *method; /* OpenAPI's lower-case key, HTTP's name */
    } methods[] = {
        {"get", "GET"}, {"put", "PUT"}, {"post", "POST"}, {"delete", "DELETE"}, {"patch", "PATCH"},
    };
    const struct embedded_file *f = &api_openapi_doc[0];
    json_error_t jerr;
    AH_AUTO(json_decrefp) json_t *doc = json_loadb(f->data, f->size, 0, &jerr);
    if (!doc) { /* the build checked the document, so this is memory or a broken build */
        log_msg(LOG_ERROR, "cannot read the embedded OpenAPI document: %s (line %d)", jerr.text,
                jerr.line);
        return AH_E_INTERNAL;
    }
    struct arena *a = arena_new();
    if (!a)
        return AH_E_NOMEM;
    int rc = 0, added = 0;
    const char *tmpl;
    json_t *item;
    json_object_foreach(json_object_get(doc, "paths"), tmpl, item) {
        char pattern[512], sample[512];
        if (!pattern_of(tmpl, pattern, sizeof(pattern)) ||
            !sample_of(tmpl, sample, sizeof(sample))) {
            log_msg(LOG_ERROR, "OpenAPI path %s cannot be routed", tmpl);
            rc = AH_E_INTERNAL;
            break;
        }
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
            if (!json_object_get(item, methods[i].key))
                continue;
            struct route_match m;
            if (router_match(r, methods[i].method, sample, a, &m, NULL, 0) == 0)
                continue; /* a real handler, or an earlier 501 route, serves it */
            /* Any body: "not implemented" is the useful answer, not a 415 about the body. */
            rc = router_add(r, methods[i].method, pattern, not_implemented, ctx, ROUTE_ANY_BODY, 0);
            if (rc < 0)
                break;
            added++;
        }
        if (rc < 0)
            break;
    }
    arena_free(a);
    if (rc == 0)
        log_msg(LOG_DEBUG, "%d documented route(s) answer 501 (not implemented)", added);
    return rc;
}
