/*
 * redact.c — D29: the userinfo of a URL (`https://user:token@host/…`) is a secret. git needs it,
 * so the stored request keeps it, but everything shown (answers, events, log lines, errors) goes
 * through these helpers, which show it as "***" (the host and path stay).
 *
 * A URL here is `scheme://authority…`; the userinfo is what precedes the last '@' of the
 * authority (which ends at '/', '?', '#', whitespace, a quote or the end). scp-like `user@host:`
 * forms carry no password and are left alone.
 */
#include <ctype.h>
#include <string.h>

#include "core.h"

static bool scheme_char(char c) {
    return isalnum((unsigned char)c) || c == '+' || c == '-' || c == '.';
}

static bool authority_end(char c) {
    return c == '\0' || c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' || c == '`' ||
           c == '<' || c == '>' || c == '\\' || isspace((unsigned char)c);
}

/* Where the userinfo of the URL whose "://" is at sep ends (its last '@'), or NULL. */
static const char *userinfo_end(const char *text, const char *sep) {
    if (sep == text || !scheme_char(sep[-1]))
        return NULL;
    const char *at = NULL;
    for (const char *p = sep + 3; !authority_end(*p); p++)
        if (*p == '@')
            at = p;
    return at;
}

bool text_has_userinfo(const char *text) {
    for (const char *p = text ? strstr(text, "://") : NULL; p; p = strstr(p + 3, "://")) {
        const char *at = userinfo_end(text, p);
        if (at && !(at - (p + 3) == 3 && memcmp(p + 3, "***", 3) == 0))
            return true;
    }
    return false;
}

char *text_redact_userinfo(const char *text) {
    if (!text)
        return NULL;
    if (!text_has_userinfo(text))
        return strdup(text);
    struct ah_buf b = {0};
    const char *from = text;
    for (const char *p = strstr(text, "://"); p; p = strstr(p + 3, "://")) {
        const char *at = userinfo_end(text, p);
        if (!at)
            continue;
        if (ah_buf_append(&b, from, (size_t)(p + 3 - from)) < 0 || ah_buf_puts(&b, "***") < 0) {
            ah_buf_clear(&b);
            return NULL;
        }
        from = at; /* the '@' and what follows are kept */
        p = at - 2; /* the next search starts after this authority */
    }
    if (ah_buf_puts(&b, from) < 0) {
        ah_buf_clear(&b);
        return NULL;
    }
    return ah_buf_steal(&b);
}

bool json_has_userinfo(const json_t *v) {
    if (json_is_string(v))
        return text_has_userinfo(json_string_value(v));
    size_t i;
    const char *k;
    json_t *x;
    if (json_is_array(v)) {
        json_array_foreach(v, i, x) {
            if (json_has_userinfo(x))
                return true;
        }
    } else if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, x) {
            if (json_has_userinfo(x))
                return true;
        }
    }
    return false;
}

static int redact_in_place(json_t *v) {
    size_t i;
    const char *k;
    json_t *x;
    if (json_is_array(v)) {
        json_array_foreach(v, i, x) {
            if (json_is_string(x) && text_has_userinfo(json_string_value(x))) {
                char *r = text_redact_userinfo(json_string_value(x));
                if (!r || json_array_set_new(v, i, json_string(r)) < 0) {
                    free(r);
                    return AH_E_NOMEM;
                }
                free(r);
            } else if (redact_in_place(x) < 0) {
                return AH_E_NOMEM;
            }
        }
    } else if (json_is_object(v)) {
        json_object_foreach(v, k, x) {
            if (json_is_string(x) && text_has_userinfo(json_string_value(x))) {
                char *r = text_redact_userinfo(json_string_value(x));
                if (!r || json_object_set_new(v, k, json_string(r)) < 0) {
                    free(r);
                    return AH_E_NOMEM;
                }
                free(r);
            } else if (redact_in_place(x) < 0) {
                return AH_E_NOMEM;
            }
        }
    }
    return 0;
}

json_t *json_redact_userinfo(json_t *v) {
    if (!v || !json_has_userinfo(v))
        return json_incref(v);
    if (json_is_string(v)) {
        char *r = text_redact_userinfo(json_string_value(v));
        json_t *s = r ? json_string(r) : NULL;
        free(r);
        return s;
    }
    json_t *copy = json_deep_copy(v);
    if (!copy || redact_in_place(copy) < 0) {
        json_decref(copy);
        return NULL;
    }
    return copy;
}
