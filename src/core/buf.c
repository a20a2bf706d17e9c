/*
 * buf.c — struct ah_buf, a growable NUL-terminated byte buffer with a hard cap (curl's dynbuf):
 * every client-controlled size passes through a cap, so a hostile peer cannot grow one without
 * bound. A failed append leaves the buffer as it was.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

#define BUF_DEFAULT_MAX ((size_t)AH_LIMIT_BODY_DEFAULT * 64)

int ah_buf_append(struct ah_buf *b, const void *data, size_t len) {
    size_t max = b->max ? b->max : BUF_DEFAULT_MAX;
    if (len > max || b->n > max - len)
        return AH_E_TOOLARGE;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return AH_E_NOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (len)
        memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
    return 0;
}

int ah_buf_puts(struct ah_buf *b, const char *s) {
    return ah_buf_append(b, s, strlen(s));
}

int ah_buf_vprintf(struct ah_buf *b, const char *fmt, va_list ap) {
    char small[256];
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    if (n < 0 || (size_t)n < sizeof(small)) {
        va_end(again);
        return n < 0 ? AH_E_INVAL : ah_buf_append(b, small, (size_t)n);
    }
    AH_AUTOFREE char *big = malloc((size_t)n + 1);
    if (big)
        vsnprintf(big, (size_t)n + 1, fmt, again);
    va_end(again);
    return big ? ah_buf_append(b, big, (size_t)n) : AH_E_NOMEM;
}

int ah_buf_printf(struct ah_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = ah_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- URL building ---------------------------------------------------------------------------- */

int ah_buf_url_escape(struct ah_buf *b, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char enc[3];
        int rc;
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            rc = ah_buf_append(b, p, 1);
        } else {
            enc[0] = '%';
            enc[1] = hex[*p >> 4];
            enc[2] = hex[*p & 15];
            rc = ah_buf_append(b, enc, 3);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int ah_buf_query_add(struct ah_buf *b, bool *first, const char *name, const char *value) {
    if (!value)
        return 0;
    int rc = ah_buf_puts(b, *first ? "?" : "&");
    *first = false;
    if (rc == 0)
        rc = ah_buf_url_escape(b, name);
    if (rc == 0)
        rc = ah_buf_puts(b, "=");
    if (rc == 0)
        rc = ah_buf_url_escape(b, value);
    return rc;
}

int ah_buf_query_add_int(struct ah_buf *b, bool *first, const char *name, int64_t value) {
    char num[24];
    snprintf(num, sizeof(num), "%lld", (long long)value);
    return ah_buf_query_add(b, first, name, num);
}

char *ah_buf_steal(struct ah_buf *b) {
    char *p = b->p;
    if (!p)
        p = strdup("");
    b->p = NULL;
    b->n = b->cap = 0;
    return p;
}

void ah_buf_clear(struct ah_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}
