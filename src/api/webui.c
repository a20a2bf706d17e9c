/*
 * webui.c — the web UI's files, served by `ah webui` only (issue 14, D21).
 *
 *   GET /                       index.html
 *   GET /assets/<name>-<hash>.* the bundle: immutable, cached for a year
 *   GET /favicon.svg …          other top-level files of the build
 *   GET /sessions/<id>, /new …  index.html again: the application routes on the client side
 *
 * The files are built from web/ by esbuild at build time (cmake/web.cmake) and embedded into the
 * binary with a gzip variant of each (<name>.gz), so a running server needs nothing from the
 * network or the disk. Every answer carries an ETag (a hash of the bytes sent, so the gzip and
 * the plain variant differ) and honours If-None-Match with 304. HTML answers carry a strict
 * Content-Security-Policy: scripts, styles and connections from this origin only, no inline code.
 *
 * These routes are registered after every API route, so /api/… and /_ah/… never reach them: a
 * path under those prefixes that no API route serves stays a 404 Problem here too.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "routes.h"

extern const struct embedded_file api_webui_files[]; /* webui_files.c, from cmake/web.cmake */

/* Inline scripts and styles are refused (no 'unsafe-inline'): the bundle sets styles through
 * the CSSOM only, which CSP permits. data: images are for the SVG icons of the stylesheet. */
#define WEBUI_CSP                                                                                  \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "             \
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "                 \
    "form-action 'self'; frame-ancestors 'none'"
#define IMMUTABLE "public, max-age=31536000, immutable"
/* index.html names the current hashed bundle: it must be revalidated on every load. */
#define REVALIDATE "no-cache"

static const struct embedded_file *find_file(const char *name) {
    for (const struct embedded_file *f = api_webui_files; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static const char *content_type_of(const char *name) {
    static const struct {
        const char *suffix, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
        {".png", "image/png"},                 {".json", "application/json"},
        {".txt", "text/plain; charset=utf-8"}, {".woff2", "font/woff2"},
    };
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        size_t l = strlen(types[i].suffix);
        if (n > l && strcmp(name + n - l, types[i].suffix) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

/* Does the client take gzip? A token "gzip" in Accept-Encoding that is not refused with q=0. */
static bool accepts_gzip(const char *ae) {
    if (!ae)
        return false;
    for (const char *p = ae; (p = strcasestr(p, "gzip")) != NULL; p += 4) {
        bool starts = p == ae || p[-1] == ' ' || p[-1] == ',' || p[-1] == '\t';
        const char *e = p + 4;
        while (*e == ' ' || *e == '\t')
            e++;
        if (!starts || (*e && *e != ',' && *e != ';'))
            continue;
        if (*e == ';') {
            const char *q = strstr(e, "q=");
            const char *next = strchr(e, ',');
            if (q && (!next || q < next)) {
                double v = strtod(q + 2, NULL);
                if (v <= 0.0)
                    return false;
            }
        }
        return true;
    }
    return false;
}

/* FNV-1a 64 of the bytes sent: cheap, and only computed on a cache miss of the browser (hashed
 * assets are immutable; index.html is a few hundred bytes). */
static void etag_of(const struct embedded_file *f, char *out, size_t size) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < f->size; i++) {
        h ^= (unsigned char)f->data[i];
        h *= 1099511628211ULL;
    }
    snprintf(out, size, "\"%016llx-%zx\"", (unsigned long long)h, f->size);
}

/* If-None-Match names our tag (or "*"): weak comparison, as RFC 9110 asks for GET. */
static bool not_modified(const char *inm, const char *etag) {
    if (!inm)
        return false;
    if (strcmp(inm, "*") == 0)
        return true;
    return strstr(inm, etag) != NULL;
}

static void add_header(struct http_request *req, struct http_response *res, const char *name,
                       const char *value) {
    if (http_header_add(req, res, name, value) < 0) /* the table holds 16: a bug if it is full */
        log_msg(LOG_WARN, "web UI: response header %s dropped", name);
}

/* Answers with the file `name` (its .gz variant when the client takes it). */
static void send_file(struct http_request *req, struct http_response *res, const char *name,
                      const char *cache_control) {
    const struct embedded_file *plain = find_file(name);
    if (!plain) {
        http_error(req, res, AH_E_NOTFOUND, "no file %s in the web UI", req->path);
        return;
    }
    const struct embedded_file *sent = plain;
    char gz[512];
    int w = snprintf(gz, sizeof(gz), "%s.gz", name);
    if (w > 0 && (size_t)w < sizeof(gz) && accepts_gzip(http_header(req, "Accept-Encoding"))) {
        const struct embedded_file *z = find_file(gz);
        if (z)
            sent = z;
    }
    char etag[64];
    etag_of(sent, etag, sizeof(etag));
    const char *type = content_type_of(name);
    add_header(req, res, "ETag", etag);
    add_header(req, res, "Cache-Control", cache_control);
    add_header(req, res, "Vary", "Accept-Encoding");
    add_header(req, res, "X-Content-Type-Options", "nosniff");
    if (strncmp(type, "text/html", 9) == 0) {
        add_header(req, res, "Content-Security-Policy", WEBUI_CSP);
        add_header(req, res, "Referrer-Policy", "no-referrer");
        add_header(req, res, "Cross-Origin-Opener-Policy", "same-origin");
    }
    if (not_modified(http_header(req, "If-None-Match"), etag)) {
        res->status = 304;
        return;
    }
    char *body = malloc(sent->size ? sent->size : 1);
    if (!body) {
        http_response_clear(res);
        http_error(req, res, AH_E_NOMEM, "out of memory while building the response");
        return;
    }
    memcpy(body, sent->data, sent->size);
    if (sent != plain)
        add_header(req, res, "Content-Encoding", "gzip");
    res->status = 200;
    res->body = body;
    res->body_len = sent->size;
    res->content_type = type;
}

static void get_index(struct http_request *req, struct http_response *res) {
    send_file(req, res, "index.html", REVALIDATE);
}

static bool has_prefix(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void get_path(struct http_request *req, struct http_response *res) {
    const char *path = req->path;
    /* Not ours: an API path no API route serves keeps the API's 404. */
    if (has_prefix(path, "/api/") || strcmp(path, "/api") == 0 || has_prefix(path, "/_ah/")) {
        http_error(req, res, AH_E_NOTFOUND, "no route for %s", path);
        return;
    }
    const char *name = path + 1;
    if (strstr(name, "..") || strchr(name, '\\')) {
        http_error(req, res, AH_E_NOTFOUND, "no file %s in the web UI", path);
        return;
    }
    if (has_prefix(path, "/assets/")) {
        send_file(req, res, name, IMMUTABLE);
        return;
    }
    /* A top-level file of the build (favicon.svg); the .gz variants are never asked for. */
    const char *last = strrchr(path, '/');
    if (strchr(last, '.')) {
        size_t n = strlen(name);
        if (strchr(name, '/') || (n > 3 && strcmp(name + n - 3, ".gz") == 0) ||
            !find_file(name)) {
            http_error(req, res, AH_E_NOTFOUND, "no file %s in the web UI", path);
            return;
        }
        send_file(req, res, name, REVALIDATE);
        return;
    }
    /* A client-side route (/new, /sessions/<id>): the application decides what it shows. */
    send_file(req, res, "index.html", REVALIDATE);
}

int api_webui_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/", get_index, ctx, 0, 0);
    rc |= router_add(r, "GET", "/{path...}", get_path, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
