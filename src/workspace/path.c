/*
 * path.c — pure text helpers of the workspace layer: path normalisation (the gate every
 * client-given path passes), git's path quoting, UTF-8 repair, and the line-boundary cut of the
 * `diff` event (D31).
 */
#include <string.h>

#include "internal.h"

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is invalid (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int ws_path_normalise(const char *in, size_t len, char out[WS_PATH_MAX + 1]) {
    if (!in || len > WS_PATH_MAX)
        return AH_E_INVAL;
    if (len > 0 && in[0] == '/')
        return AH_E_INVAL;
    for (size_t i = 0; i < len;) {
        if (in[i] == '\0')
            return AH_E_INVAL;
        size_t l = utf8_seq((const unsigned char *)in + i, len - i);
        if (!l)
            return AH_E_INVAL;
        i += l;
    }
    /* segments onto a stack held in out; seg_end[k] is where segment k ends */
    size_t n = 0;
    size_t starts[WS_PATH_MAX / 2 + 1];
    size_t depth = 0;
    for (size_t i = 0; i <= len;) {
        size_t j = i;
        while (j < len && in[j] != '/')
            j++;
        size_t sl = j - i;
        const char *seg = in + i;
        if (sl == 0 || (sl == 1 && seg[0] == '.')) {
            /* empty or "." segment: dropped */
        } else if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            if (depth == 0)
                return AH_E_INVAL; /* climbs out of the workspace */
            depth--;
            n = starts[depth] > 0 ? starts[depth] - 1 : 0;
        } else {
            if (sl == 4 && memcmp(seg, ".git", 4) == 0)
                return AH_E_INVAL;
            if (n > 0)
                out[n++] = '/';
            starts[depth++] = n;
            memcpy(out + n, seg, sl);
            n += sl;
        }
        i = j + 1;
    }
    out[n] = '\0';
    return 0;
}

size_t ws_truncate_lines(const char *text, size_t len, size_t max, bool *ret_truncated) {
    if (len <= max) {
        if (ret_truncated)
            *ret_truncated = false;
        return len;
    }
    if (ret_truncated)
        *ret_truncated = true;
    const char *nl = memrchr(text, '\n', max);
    if (nl)
        return (size_t)(nl - text) + 1;
    size_t cut = max; /* one long line: do not split a UTF-8 character */
    while (cut > 0 && ((unsigned char)text[cut] & 0xc0) == 0x80)
        cut--;
    return cut;
}

/* git's quote.c table for core.quotePath=true: 0 = as is, 1 = octal, else the escape letter. */
static int quote_kind(unsigned char c) {
    switch (c) {
    case '\a': return 'a';
    case '\b': return 'b';
    case '\t': return 't';
    case '\n': return 'n';
    case '\v': return 'v';
    case '\f': return 'f';
    case '\r': return 'r';
    case '"': return '"';
    case '\\': return '\\';
    default: return c < 0x20 || c >= 0x7f ? 1 : 0;
    }
}

int ws_quote_path(struct ah_buf *b, const char *prefix, const char *s) {
    bool need = false;
    for (const unsigned char *p = (const unsigned char *)s; *p && !need; p++)
        need = quote_kind(*p) != 0;
    for (const unsigned char *p = (const unsigned char *)prefix; *p && !need; p++)
        need = quote_kind(*p) != 0;
    if (!need) {
        int rc = ah_buf_puts(b, prefix);
        return rc < 0 ? rc : ah_buf_puts(b, s);
    }
    char tmp[8];
    int rc = ah_buf_puts(b, "\"");
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        for (const unsigned char *p = (const unsigned char *)(pass ? s : prefix); *p && rc == 0;
             p++) {
            int k = quote_kind(*p);
            if (k == 0)
                rc = ah_buf_append(b, p, 1);
            else if (k == 1) {
                snprintf(tmp, sizeof(tmp), "\\%03o", *p);
                rc = ah_buf_puts(b, tmp);
            } else {
                tmp[0] = '\\';
                tmp[1] = (char)k;
                rc = ah_buf_append(b, tmp, 2);
            }
        }
    }
    return rc < 0 ? rc : ah_buf_puts(b, "\"");
}

int ws_utf8_sanitise(struct ah_buf *b, const char *s, size_t n) {
    size_t i = 0, run = 0;
    while (i < n) {
        size_t l = utf8_seq((const unsigned char *)s + i, n - i);
        if (l) {
            i += l;
            continue;
        }
        int rc = ah_buf_append(b, s + run, i - run);
        if (rc < 0 || (rc = ah_buf_append(b, "\xef\xbf\xbd", 3)) < 0)
            return rc;
        run = ++i;
    }
    return ah_buf_append(b, s + run, n - run);
}
