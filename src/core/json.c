/*
 * json.c — parsing request bodies under the D5 limits. The nesting depth is checked on the raw
 * text before jansson sees it, so a hostile body of 100k '[' costs one linear scan and no
 * recursion. Duplicate keys are refused: which one "wins" would otherwise be a silent guess.
 */
#include <string.h>

#include "core.h"

bool json_depth_ok(const char *s, size_t len, int max) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                return false;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return true;
}

json_t *json_parse_body(const char *text, size_t len, struct ah_problem *reterr) {
    if (len == 0) {
        problem_set(reterr, AH_E_BADREQ, "request body is empty; a JSON document is required");
        return NULL;
    }
    if (!json_depth_ok(text, len, AH_LIMIT_JSON_DEPTH)) {
        problem_set(reterr, AH_E_BADREQ, "JSON nesting deeper than %d levels",
                    AH_LIMIT_JSON_DEPTH);
        return NULL;
    }
    json_error_t err;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!j) {
        problem_set(reterr, AH_E_BADREQ, "malformed JSON at line %d, column %d: %s", err.line,
                    err.column, err.text);
        return NULL;
    }
    return j;
}

char *json_dump_compact(const json_t *j) {
    return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}
