/*
 * toml.c — the configuration file format: a TOML subset, enough for flat server settings.
 *
 *   # comment
 *   port = 3001
 *   [server]            → keys below become "server.<key>"
 *   bind = "0.0.0.0"
 *   cors-origins = ["http://localhost:3000", "https://ui.example.com"]
 *   insecure = false
 *
 * Supported: [section] and [a.b] headers, [[name]] arrays of tables (the Nth becomes the
 * section "name[N]", so its keys are "name[N].key"), bare keys ([A-Za-z0-9_-]; a section name may
 * quote a segment, [models."gpt-4.1"], whose dots are then part of it), basic strings with the
 * escapes \" \\ \n \t \r \uXXXX, literal 'strings', decimal integers (with _ separators) and
 * fractions (1.25), true/false,
 * and single-line arrays of strings. Everything else is an error with its line number; silently
 * ignoring a line of configuration is how servers end up misconfigured.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

struct parser {
    const char *p, *end;
    int line;
    struct ah_problem *err;
};

static int fail(struct parser *ps, const char *what) {
    return problem_set(ps->err, AH_E_INVAL, "configuration line %d: %s", ps->line, what);
}

static void skip_blank(struct parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t'))
        ps->p++;
}

/* After a value: only blanks and an optional comment until the end of the line. */
static int end_of_line(struct parser *ps) {
    skip_blank(ps);
    if (ps->p < ps->end && *ps->p == '#')
        while (ps->p < ps->end && *ps->p != '\n')
            ps->p++;
    if (ps->p < ps->end && *ps->p == '\r')
        ps->p++;
    if (ps->p < ps->end && *ps->p != '\n')
        return fail(ps, "unexpected text after the value");
    return 0;
}

static bool key_char(char c) {
    return isalnum((unsigned char)c) || c == '_' || c == '-';
}

static int parse_key(struct parser *ps, char *out, size_t n, bool dotted) {
    size_t len = 0;
    while (ps->p < ps->end && (key_char(*ps->p) || (dotted && (*ps->p == '.' || *ps->p == '"')))) {
        if (*ps->p == '"') { /* a quoted segment of a section name: [models."gpt-4.1"] */
            if (len && out[len - 1] != '.')
                return fail(ps, "expected a key");
            ps->p++;
            size_t start = len;
            while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\n' && *ps->p != '\\' &&
                   (unsigned char)*ps->p >= 0x20) {
                if (len + 1 >= n)
                    return fail(ps, "key too long");
                out[len++] = *ps->p++;
            }
            if (ps->p >= ps->end || *ps->p != '"' || len == start)
                return fail(ps, "expected a key");
            ps->p++;
            if (ps->p < ps->end && *ps->p != '.' && *ps->p != ']')
                return fail(ps, "expected a key");
            continue;
        }
        if (len + 1 >= n)
            return fail(ps, "key too long");
        out[len++] = *ps->p++;
    }
    out[len] = '\0';
    if (len == 0 || out[0] == '.' || out[len - 1] == '.' || strstr(out, ".."))
        return fail(ps, "expected a key");
    json_t *utf8 = json_stringn(out, len); /* a quoted segment may hold any byte */
    if (!utf8)
        return fail(ps, "key is not valid UTF-8");
    json_decref(utf8);
    return 0;
}

static int put_utf8(struct ah_buf *b, unsigned long cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    }
    return ah_buf_append(b, u, n);
}

static json_t *parse_string(struct parser *ps) {
    char quote = *ps->p++;
    struct ah_buf b = {.max = 64 * 1024};
    while (ps->p < ps->end && *ps->p != quote && *ps->p != '\n') {
        /* a run of plain characters is appended at once, not byte by byte */
        const char *run = ps->p;
        while (ps->p < ps->end && *ps->p != quote && *ps->p != '\n' &&
               (*ps->p != '\\' || quote != '"'))
            ps->p++;
        if (ps->p > run) {
            if (ah_buf_append(&b, run, (size_t)(ps->p - run)) < 0) {
                ah_buf_clear(&b);
                fail(ps, "string too long");
                return NULL;
            }
            continue;
        }
        ps->p++; /* a backslash in a basic string: an escape */
        if (ps->p >= ps->end)
            break;
        char e = *ps->p++;
        int rc;
        switch (e) {
        case '"': rc = ah_buf_append(&b, "\"", 1); break;
        case '\\': rc = ah_buf_append(&b, "\\", 1); break;
        case 'n': rc = ah_buf_append(&b, "\n", 1); break;
        case 't': rc = ah_buf_append(&b, "\t", 1); break;
        case 'r': rc = ah_buf_append(&b, "\r", 1); break;
        case 'u': {
            char hex[5] = {0};
            if (ps->end - ps->p < 4) {
                ah_buf_clear(&b);
                fail(ps, "short \\u escape");
                return NULL;
            }
            memcpy(hex, ps->p, 4);
            char *endp;
            unsigned long cp = strtoul(hex, &endp, 16);
            if (*endp || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0) {
                ah_buf_clear(&b);
                fail(ps, "bad \\u escape");
                return NULL;
            }
            ps->p += 4;
            rc = put_utf8(&b, cp);
            break;
        }
        default:
            ah_buf_clear(&b);
            fail(ps, "unknown escape in string");
            return NULL;
        }
        if (rc < 0) {
            ah_buf_clear(&b);
            fail(ps, "string too long");
            return NULL;
        }
    }
    if (ps->p >= ps->end || *ps->p != quote) {
        ah_buf_clear(&b);
        fail(ps, "unterminated string");
        return NULL;
    }
    ps->p++;
    json_t *s = json_stringn(b.p ? b.p : "", b.n);
    ah_buf_clear(&b);
    if (!s)
        fail(ps, "string is not valid UTF-8");
    return s;
}

static json_t *parse_value(struct parser *ps) {
    skip_blank(ps);
    if (ps->p >= ps->end) {
        fail(ps, "missing value");
        return NULL;
    }
    char c = *ps->p;
    if (c == '"' || c == '\'')
        return parse_string(ps);
    if (c == '[') {
        ps->p++;
        json_t *arr = json_array();
        if (!arr)
            return NULL;
        for (;;) {
            skip_blank(ps);
            if (ps->p < ps->end && *ps->p == ']') {
                ps->p++;
                return arr;
            }
            if (ps->p >= ps->end || (*ps->p != '"' && *ps->p != '\'')) {
                json_decref(arr);
                fail(ps, "arrays hold strings only and end on the same line with ]");
                return NULL;
            }
            json_t *s = parse_string(ps);
            if (!s || json_array_append_new(arr, s) < 0) {
                json_decref(arr);
                return NULL;
            }
            skip_blank(ps);
            if (ps->p < ps->end && *ps->p == ',')
                ps->p++;
            else if (ps->p >= ps->end || *ps->p != ']') {
                json_decref(arr);
                fail(ps, "expected , or ] in array");
                return NULL;
            }
        }
    }
    const char *start = ps->p;
    while (ps->p < ps->end && (isalnum((unsigned char)*ps->p) || *ps->p == '_' || *ps->p == '-' ||
                               *ps->p == '+' || *ps->p == '.'))
        ps->p++;
    size_t n = (size_t)(ps->p - start);
    if (n == 4 && memcmp(start, "true", 4) == 0)
        return json_true();
    if (n == 5 && memcmp(start, "false", 5) == 0)
        return json_false();
    char digits[32];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (start[i] == '_' && i > 0 && i + 1 < n && isdigit((unsigned char)start[i - 1]) &&
            isdigit((unsigned char)start[i + 1]))
            continue;
        if (k + 1 >= sizeof(digits))
            break;
        digits[k++] = start[i];
    }
    digits[k] = '\0';
    int64_t v;
    const char *d = digits[0] == '+' ? digits + 1 : digits;
    const char *dot = strchr(d, '.');
    if (dot) { /* a decimal fraction: digits '.' digits (prices in [models."ID"]) */
        const char *q = d + (*d == '-');
        bool ok = q < dot && dot[1];
        for (const char *ch = q; ok && *ch; ch++)
            ok = isdigit((unsigned char)*ch) || ch == dot;
        char *end = NULL;
        double f = ok ? strtod(d, &end) : 0;
        if (!ok || !end || *end) {
            fail(ps, "expected a number like 1.25");
            return NULL;
        }
        return json_real(f);
    }
    if (n == 0 || parse_int64(d, INT64_MIN, INT64_MAX, &v) < 0) {
        fail(ps, "expected a string, a number, true, false or an array of strings");
        return NULL;
    }
    return json_integer(v);
}

int toml_parse(const char *text, size_t len, json_t **ret, struct ah_problem *reterr) {
    struct parser ps = {.p = text, .end = text + len, .line = 1, .err = reterr};
    AH_AUTO(json_decrefp) json_t *out = json_object();
    AH_AUTO(json_decrefp) json_t *counts = json_object(); /* tables seen per [[name]] */
    if (!out || !counts)
        return AH_E_NOMEM;
    char section[128] = "";
    while (ps.p < ps.end) {
        skip_blank(&ps);
        if (ps.p < ps.end && *ps.p == '[') {
            ps.p++;
            bool array = ps.p < ps.end && *ps.p == '[';
            if (array)
                ps.p++;
            skip_blank(&ps);
            if (parse_key(&ps, section, sizeof(section) - 16, true) < 0)
                return AH_E_INVAL;
            skip_blank(&ps);
            if (ps.p >= ps.end || *ps.p != ']' || (array && (ps.p + 1 >= ps.end || ps.p[1] != ']')))
                return fail(&ps, array ? "expected ]] after the table name"
                                       : "expected ] after the section name");
            ps.p += array ? 2 : 1;
            if (array) { /* [[name]]: the Nth table of the array is the section "name[N]" */
                char count_key[160];
                snprintf(count_key, sizeof(count_key), "%s[]", section);
                json_int_t n = json_integer_value(json_object_get(counts, count_key));
                if (json_object_set_new(counts, count_key, json_integer(n + 1)) < 0)
                    return AH_E_NOMEM;
                size_t l = strlen(section);
                snprintf(section + l, sizeof(section) - l, "[%lld]", (long long)n);
            }
            if (end_of_line(&ps) < 0)
                return AH_E_INVAL;
        } else if (ps.p < ps.end && *ps.p != '#' && *ps.p != '\n' && *ps.p != '\r') {
            char key[128], full[260];
            if (parse_key(&ps, key, sizeof(key), false) < 0)
                return AH_E_INVAL;
            skip_blank(&ps);
            if (ps.p >= ps.end || *ps.p != '=')
                return fail(&ps, "expected = after the key");
            ps.p++;
            json_t *v = parse_value(&ps);
            if (!v)
                return AH_E_INVAL;
            snprintf(full, sizeof(full), "%s%s%s", section, section[0] ? "." : "", key);
            if (json_object_get(out, full)) {
                json_decref(v);
                return fail(&ps, "key defined twice");
            }
            if (json_object_set_new(out, full, v) < 0)
                return AH_E_NOMEM;
            if (end_of_line(&ps) < 0)
                return AH_E_INVAL;
        } else if (end_of_line(&ps) < 0) {
            return AH_E_INVAL;
        }
        if (ps.p < ps.end && *ps.p == '\n') {
            ps.p++;
            ps.line++;
        }
    }
    *ret = AH_TAKE(out);
    return 0;
}
