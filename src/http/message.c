/*
 * message.c — reading requests and building responses: the part of http/ that handlers use and
 * that unit tests can drive without a socket.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "front.h"

static const char *kv_find(const struct http_kv *kv, size_t n, const char *name, bool nocase) {
    for (size_t i = 0; i < n; i++)
        if (nocase ? strcasecmp(kv[i].name, name) == 0 : strcmp(kv[i].name, name) == 0)
            return kv[i].value;
    return NULL;
}

const char *http_header(const struct http_request *req, const char *name) {
    return kv_find(req->headers, req->n_headers, name, true);
}

const char *http_query(const struct http_request *req, const char *name) {
    return kv_find(req->query, req->n_query, name, false);
}

const char *http_param(const struct http_request *req, const char *name) {
    return kv_find(req->params, req->n_params, name, false);
}

void http_response_clear(struct http_response *res) {
    if (res->has_file)
        close(res->file_fd);
    json_decref(res->json);
    free(res->body);
    http_stream_unref(res->stream);
    http_later_release(res->later);
    memset(res, 0, sizeof(*res));
}

void http_json(struct http_request *req, struct http_response *res, int status, json_t *body) {
    if (!body) {
        http_error(req, res, AH_E_NOMEM, "out of memory while building the response");
        return;
    }
    json_decref(res->json);
    res->json = body;
    res->status = status;
    res->content_type = "application/json";
}

void http_problem(struct http_request *req, struct http_response *res, const struct ah_problem *p) {
    struct ah_problem storage;
    if (p->code == AH_E_STORAGE) {
        /* D50: whichever handler met it, a write the database refused (full or failing disk)
         * says so and when to retry; nothing of the request was stored */
        storage = *p;
        snprintf(storage.detail, sizeof(storage.detail),
                 "%s: the database cannot store anything now (disk full or I/O error); nothing "
                 "was stored, retry later", p->detail[0] ? p->detail : "refused");
        p = &storage;
        http_header_add(req, res, "Retry-After", "5");
    }
    json_t *body = problem_to_json(p, req->path, req->request_id);
    json_decref(res->json);
    res->json = body; /* NULL on OOM: the server then sends a bare 503 */
    res->status = ah_error_status(p->code ? p->code : AH_E_INTERNAL);
    res->content_type = "application/problem+json";
}

bool http_fail(struct http_request *req, struct http_response *res, struct ah_problem *p) {
    if (!p->code)
        return false;
    http_problem(req, res, p);
    problem_clear(p);
    return true;
}

void http_error(struct http_request *req, struct http_response *res, int code, const char *fmt,
                ...) {
    struct ah_problem p = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p.detail, sizeof(p.detail), fmt, ap);
    va_end(ap);
    http_problem(req, res, &p);
}

int http_header_add(struct http_request *req, struct http_response *res, const char *name,
                    const char *value) {
    if (res->n_headers == HTTP_MAX_RES_HEADERS)
        return AH_E_TOOLARGE;
    const char *n = arena_strdup(req->arena, name), *v = arena_strdup(req->arena, value);
    if (!n || !v)
        return AH_E_NOMEM;
    res->headers[res->n_headers++] = (struct http_kv){n, v};
    return 0;
}
