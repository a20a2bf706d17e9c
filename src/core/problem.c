/*
 * problem.c — Problem Details (RFC 9457, D4). A struct ah_problem collects what went wrong while
 * a request is handled (the first code wins, field errors accumulate); problem_to_json turns it
 * into the body, with the status, type and title taken from the error table.
 */
#include <stdio.h>
#include <string.h>

#include "core.h"

int problem_set(struct ah_problem *p, int code, const char *fmt, ...) {
    if (!p)
        return code;
    if (p->code == 0) {
        p->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->detail, sizeof(p->detail), fmt, ap);
        va_end(ap);
    }
    return code;
}

void problem_field(struct ah_problem *p, const char *path, const char *fmt, ...) {
    if (!p)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (p->code == 0) {
        p->code = AH_E_INVAL;
        snprintf(p->detail, sizeof(p->detail), "%s %s", path, msg);
    }
    if (!p->errors && !(p->errors = json_object()))
        return;
    json_t *list = json_object_get(p->errors, path);
    if (!list) {
        list = json_array();
        if (!list || json_object_set_new(p->errors, path, list) < 0)
            return;
    }
    json_array_append_new(list, json_string(msg));
}

void problem_extra(struct ah_problem *p, const char *key, json_t *value) {
    if (!p) {
        json_decref(value);
        return;
    }
    if (!p->extra && !(p->extra = json_object())) {
        json_decref(value);
        return;
    }
    json_object_set_new(p->extra, key, value);
}

void problem_clear(struct ah_problem *p) {
    json_decref(p->errors);
    json_decref(p->extra);
    memset(p, 0, sizeof(*p));
}

json_t *problem_to_json(const struct ah_problem *p, const char *instance, const char *request_id) {
    int code = p->code ? p->code : AH_E_INTERNAL;
    char type[96];
    snprintf(type, sizeof(type), "/problems/%s", ah_error_slug(code));
    json_t *j = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", ah_error_title(code),
                          "status", ah_error_status(code), "detail",
                          p->detail[0] ? p->detail : ah_error_title(code));
    if (!j)
        return NULL;
    if (instance)
        json_object_set_new(j, "instance", json_string(instance));
    if (request_id)
        json_object_set_new(j, "requestId", json_string(request_id));
    if (p->errors && json_object_size(p->errors))
        json_object_set(j, "errors", p->errors);
    if (p->extra)
        json_object_update_missing(j, p->extra);
    return j;
}
