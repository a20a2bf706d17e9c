/*
 * problem.c — turning a failed answer into a struct ah_api_error (D4).
 *
 * The server sends Problem+JSON: type "/problems/<slug>", title, status, detail, instance,
 * requestId, errors {field: [message]}, and extras such as currentStatus. Other servers (or a
 * proxy in between) may send other JSON, text or nothing, so every member is optional and the
 * code falls back to the HTTP status. Pure: no I/O.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "client_internal.h"

#define DETAIL_FROM_TEXT_MAX 512  /* bytes of a non-JSON body kept as the detail */
#define BODY_KEEP_MAX (64 * 1024) /* bytes of the raw body kept in e->body */

struct code_row {
    int code;
    int status;
    const char *slug;
};

static const struct code_row codes[] = {
#define ROW_(name, value, status, slug, title) {value, status, slug},
    AH_ERRORS(ROW_)
#undef ROW_
};

static int code_for_status(int status) {
    switch (status) {
    case 400: return AH_E_BADREQ;
    case 401: return AH_E_AUTH;
    case 403: return AH_E_FORBIDDEN;
    case 404: return AH_E_NOTFOUND;
    case 405: return AH_E_METHOD;
    case 406: return AH_E_NOTACCEPTABLE;
    case 408: return AH_E_TIMEOUT;
    case 409: return AH_E_CONFLICT;
    case 410: return AH_E_GONE;
    case 413: return AH_E_TOOLARGE;
    case 415: return AH_E_MEDIATYPE;
    case 422: return AH_E_INVAL;
    case 429: return AH_E_RATELIMIT;
    case 501: return AH_E_NOTIMPL;
    case 502: return AH_E_NETWORK;
    case 503: return AH_E_UNAVAIL;
    case 504: return AH_E_TIMEOUT;
    default:
        if (status >= 500)
            return AH_E_INTERNAL;
        if (status >= 400)
            return AH_E_BADREQ;
        return AH_E_PROTOCOL; /* a 1xx/3xx where an answer was expected */
    }
}

int problem_code_for(int status, const char *type) {
    if (type && *type) {
        const char *slug = strrchr(type, '/');
        slug = slug ? slug + 1 : type;
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
            if (strcmp(codes[i].slug, slug) != 0)
                continue;
            /* A slug only counts when it agrees with the status: a 404 labelled
             * "validation" is a 404. */
            if (status && codes[i].status != status)
                break;
            if (codes[i].code == AH_E_NOMEM)
                return AH_E_UNAVAIL;
            return codes[i].code;
        }
    }
    return code_for_status(status);
}

void ah_api_error_clear(struct ah_api_error *e) {
    if (!e)
        return;
    free(e->type);
    free(e->title);
    free(e->detail);
    free(e->instance);
    free(e->request_id);
    free(e->current_status);
    free(e->body);
    for (size_t i = 0; i < e->n_errors; i++) {
        free(e->errors[i].field);
        free(e->errors[i].message);
    }
    free(e->errors);
    memset(e, 0, sizeof(*e));
    e->retry_after_ms = -1;
}

const char *ah_api_error_field(const struct ah_api_error *e, const char *field) {
    if (!e || !field)
        return NULL;
    for (size_t i = 0; i < e->n_errors; i++)
        if (e->errors[i].field && strcmp(e->errors[i].field, field) == 0)
            return e->errors[i].message;
    return NULL;
}

int problem_add_field(struct ah_api_error *e, const char *field, const char *message) {
    struct ah_field_error *n = realloc(e->errors, (e->n_errors + 1) * sizeof(*n));
    if (!n)
        return AH_E_NOMEM;
    e->errors = n;
    char *f = strdup(field), *m = strdup(message);
    if (!f || !m) {
        free(f);
        free(m);
        return AH_E_NOMEM;
    }
    e->errors[e->n_errors].field = f;
    e->errors[e->n_errors].message = m;
    e->n_errors++;
    return 0;
}

/* strdup of a JSON string member, NULL when absent, not a string, or out of memory. */
static char *dup_member(const json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? strdup(s) : NULL;
}

/* A body that is not JSON becomes the detail when it looks like text. */
static char *text_detail(const char *body, size_t len) {
    if (!body || len == 0)
        return NULL;
    size_t n = len < DETAIL_FROM_TEXT_MAX ? len : DETAIL_FROM_TEXT_MAX;
    while (n > 0 && (body[n - 1] == '\n' || body[n - 1] == '\r' || body[n - 1] == ' '))
        n--;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)body[i];
        if (ch < 0x20 && ch != '\n' && ch != '\r' && ch != '\t')
            return NULL; /* binary: say nothing rather than garbage */
    }
    return n ? strndup(body, n) : NULL;
}

/* Out of memory, whatever could not be copied stays NULL: the code, which comes from the status
 * and the type, still says what happened (as in problem_local). */
int problem_from_response(struct ah_api_error *e, int status, const char *body, size_t len,
                          const char *request_id_header, int64_t retry_after_ms) {
    int attempts = e->attempts;
    ah_api_error_clear(e);
    e->attempts = attempts;
    e->status = status;
    e->retry_after_ms = retry_after_ms;

    json_t *j = (body && len) ? json_parse_text(body, len, NULL) : NULL;
    if (json_is_object(j)) {
        e->type = dup_member(j, "type");
        e->title = dup_member(j, "title");
        e->detail = dup_member(j, "detail");
        e->instance = dup_member(j, "instance");
        e->request_id = dup_member(j, "requestId");
        e->current_status = dup_member(j, "currentStatus");
        if (!e->detail) /* some servers say "message" or "error" */
            e->detail = dup_member(j, "message");
        if (!e->detail)
            e->detail = dup_member(j, "error");
        json_t *errors = json_object_get(j, "errors");
        const char *field;
        json_t *msgs;
        if (json_is_object(errors)) {
            json_object_foreach(errors, field, msgs) {
                if (json_is_string(msgs)) {
                    problem_add_field(e, field, json_string_value(msgs));
                } else if (json_is_array(msgs)) {
                    size_t i;
                    json_t *m;
                    json_array_foreach(msgs, i, m) {
                        if (json_is_string(m))
                            problem_add_field(e, field, json_string_value(m));
                    }
                }
            }
        }
    } else {
        e->detail = text_detail(body, len);
    }
    json_decref(j);

    e->code = problem_code_for(status, e->type);
    if (e->code == AH_E_BADREQ && e->n_errors > 0)
        e->code = AH_E_INVAL; /* field errors mean validation whatever the slug says */
    if (!e->request_id && request_id_header)
        e->request_id = strdup(request_id_header);
    if (!e->title)
        e->title = strdup(ah_strerror(e->code));
    if (!e->detail)
        e->detail = strdup(e->title ? e->title : ah_strerror(e->code));
    if (body && len)
        e->body = strndup(body, len < BODY_KEEP_MAX ? len : BODY_KEEP_MAX);
    return e->code;
}

void problem_local(struct ah_api_error *e, int code, const char *fmt, ...) {
    if (!e)
        return;
    int attempts = e->attempts;
    ah_api_error_clear(e);
    e->attempts = attempts;
    e->code = code;
    char msg[CURL_ERROR_SIZE + 256];
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    } else {
        snprintf(msg, sizeof(msg), "%s", ah_strerror(code));
    }
    /* On OOM the strings stay NULL; the code alone still tells what happened. */
    e->title = strdup(ah_strerror(code));
    e->detail = strdup(msg);
}

void problem_from_core(struct ah_api_error *e, const struct ah_problem *p) {
    if (!e)
        return;
    problem_local(e, p->code, "%s", p->detail[0] ? p->detail : ah_strerror(p->code));
    e->status = ah_error_status(p->code);
    char type[96];
    snprintf(type, sizeof(type), "/problems/%s", ah_error_slug(p->code));
    e->type = strdup(type);
    const char *field;
    json_t *msgs;
    if (json_is_object(p->errors)) {
        json_object_foreach(p->errors, field, msgs) {
            size_t i;
            json_t *m;
            json_array_foreach(msgs, i, m) {
                if (json_is_string(m))
                    problem_add_field(e, field, json_string_value(m));
            }
        }
    }
    const char *cur = json_string_value(json_object_get(p->extra, "currentStatus"));
    if (cur)
        e->current_status = strdup(cur);
}

int ah_api_error_from_answer(struct ah_api_error *e, int status, const char *body, size_t len) {
    struct ah_api_error scratch = {0};
    int code = problem_from_response(e ? e : &scratch, status, body, body ? len : 0, NULL, -1);
    ah_api_error_clear(&scratch); /* reterr is optional in every call: still return the code */
    return code;
}
