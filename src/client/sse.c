/*
 * sse.c — an incremental text/event-stream parser (WHATWG HTML, "event stream interpretation").
 *
 * Bytes arrive in arbitrary chunks: a line, a CRLF pair or a UTF-8 sequence may be split
 * anywhere, so the parser keeps the unfinished line and a flag for "the last byte was a CR"
 * (a following LF belongs to the same line end). Lines end with CRLF, LF or CR. A blank line
 * dispatches the event being assembled; comment lines (":…") are counted and ignored; `data:`
 * lines accumulate joined by "\n"; `id:` sets the last event id, which persists across events
 * (an id containing NUL is ignored); `retry:` with only digits sets the reconnection time; other
 * fields are ignored. An event without data is not dispatched. One leading UTF-8 BOM is skipped.
 * Every buffer has a cap (max_event), so a peer cannot grow memory without bound. Pure: no I/O.
 */
#include <string.h>

#include "client_internal.h"

#define SSE_DEFAULT_MAX (1024 * 1024)

void sse_parser_init(struct sse_parser *p) {
    memset(p, 0, sizeof(*p));
    p->retry_ms = -1;
}

void sse_parser_reset(struct sse_parser *p) {
    p->line.n = 0;
    p->data.n = 0;
    p->type.n = 0;
    p->id_in_event = false;
    p->after_cr = false;
    p->started = false;
}

void sse_parser_clear(struct sse_parser *p) {
    ah_buf_clear(&p->line);
    ah_buf_clear(&p->data);
    ah_buf_clear(&p->type);
    ah_buf_clear(&p->id);
}

static size_t cap_of(const struct sse_parser *p) {
    return p->max_event ? p->max_event : SSE_DEFAULT_MAX;
}

static int set_buf(struct ah_buf *b, const char *s, size_t n) {
    b->n = 0;
    int rc = ah_buf_append(b, s, n);
    if (rc == 0 && !b->p) /* keep p non-NULL so callers may read "" */
        rc = ah_buf_append(b, "", 0);
    return rc;
}

static int dispatch(struct sse_parser *p, sse_event_fn cb, void *userdata) {
    if (p->data.n == 0) { /* no data: nothing to dispatch, the type is forgotten */
        p->type.n = 0;
        p->id_in_event = false;
        return 0;
    }
    if (p->data.p[p->data.n - 1] == '\n')
        p->data.p[--p->data.n] = '\0';
    struct sse_event ev = {
        .type = p->type.n ? p->type.p : "message",
        .data = p->data.p,
        .data_len = p->data.n,
        .id = p->id.p ? p->id.p : "",
        .id_in_event = p->id_in_event,
    };
    int rc = cb ? cb(userdata, &ev) : 0;
    p->data.n = 0;
    p->type.n = 0;
    p->id_in_event = false;
    return rc;
}

static int process_line(struct sse_parser *p, const char *line, size_t n, sse_event_fn cb,
                        void *userdata) {
    if (n == 0)
        return dispatch(p, cb, userdata);
    if (line[0] == ':') {
        p->comments++;
        return 0;
    }
    const char *colon = memchr(line, ':', n);
    size_t flen = colon ? (size_t)(colon - line) : n;
    const char *value = colon ? colon + 1 : line + n;
    size_t vlen = colon ? n - flen - 1 : 0;
    if (vlen && *value == ' ') {
        value++;
        vlen--;
    }
    if (flen == 4 && memcmp(line, "data", 4) == 0) {
        if (p->data.n + vlen + 1 > cap_of(p))
            return AH_E_TOOLARGE;
        int rc = ah_buf_append(&p->data, value, vlen);
        return rc ? rc : ah_buf_append(&p->data, "\n", 1);
    }
    if (flen == 5 && memcmp(line, "event", 5) == 0)
        return set_buf(&p->type, value, vlen);
    if (flen == 2 && memcmp(line, "id", 2) == 0) {
        if (memchr(value, '\0', vlen))
            return 0;
        p->id_in_event = true;
        return set_buf(&p->id, value, vlen);
    }
    if (flen == 5 && memcmp(line, "retry", 5) == 0) {
        if (vlen == 0 || vlen > 12)
            return 0;
        int64_t ms = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (value[i] < '0' || value[i] > '9')
                return 0;
            ms = ms * 10 + (value[i] - '0');
        }
        p->retry_ms = ms;
    }
    return 0; /* unknown field: ignored */
}

/* Where the line starting at s ends (its CR or LF), or n when it does not end in s. memchr
 * (vectorised) instead of a loop over every byte: most of an event stream is line content. */
static size_t line_end(const char *s, size_t n) {
    const char *lf = memchr(s, '\n', n);
    size_t k = lf ? (size_t)(lf - s) : n;
    const char *cr = memchr(s, '\r', k);
    return cr ? (size_t)(cr - s) : k;
}

int sse_feed(struct sse_parser *p, const char *buf, size_t len, sse_event_fn cb, void *userdata) {
    size_t i = 0;
    if (!p->started && len) {
        /* Skip one UTF-8 BOM at the very start, even when it arrives split. */
        static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
        while (i < len && p->line.n + i < 3 && (unsigned char)buf[i] == bom[p->line.n + i])
            i++;
        if (p->line.n + i < 3 && i == len) /* still a BOM prefix: hold it back in line */
            return ah_buf_append(&p->line, buf, len);
        if (p->line.n + i == 3) {
            p->line.n = 0; /* a whole BOM: drop it */
        } else {
            /* Not a BOM after all: what we held back is ordinary text. */
            i = 0;
        }
        p->started = true;
    }
    while (i < len) {
        if (p->after_cr) {
            p->after_cr = false;
            if (buf[i] == '\n') {
                i++;
                continue;
            }
        }
        const char *start = buf + i;
        size_t rest = len - i, k = line_end(start, rest);
        if (k == rest) { /* no line end in this chunk: keep the fragment */
            if (p->line.n + k > cap_of(p))
                return AH_E_TOOLARGE;
            return ah_buf_append(&p->line, start, k);
        }
        if (start[k] == '\r')
            p->after_cr = true;
        int rc;
        if (p->line.n) { /* the line began in an earlier chunk */
            size_t total = p->line.n + k;
            if (total > cap_of(p))
                return AH_E_TOOLARGE;
            if ((rc = ah_buf_append(&p->line, start, k)) < 0)
                return rc;
            p->line.n = 0; /* the bytes stay readable until line is appended to again */
            rc = process_line(p, p->line.p, total, cb, userdata);
        } else {
            rc = process_line(p, start, k, cb, userdata);
        }
        if (rc)
            return rc;
        i += k + 1;
    }
    return 0;
}
