/*
 * cast.c — the terminal recording, asciicast v2 (D18): a JSON header line, then one
 * [seconds, "o"|"i"|"r", "text"] line per chunk, flushed as it is written so the live PTY
 * stream and `asciinema play` can read the file at any time.
 *
 * PTY output is bytes, JSON strings are UTF-8: a multi-byte character split across two reads is
 * held back until its end arrives, and bytes that can never be UTF-8 become U+FFFD.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct cast_writer {
    FILE *f;
    int64_t start_mono;
    char held[4]; /* an incomplete UTF-8 sequence from the previous chunk */
    size_t n_held;
};

int cast_open(const char *path, int cols, int rows, const char *title, struct cast_writer **ret) {
    FILE *f = fopen(path, "ae");
    if (!f)
        return AH_E_IO;
    struct cast_writer *w = calloc(1, sizeof(*w));
    if (!w) {
        fclose(f);
        return AH_E_NOMEM;
    }
    w->f = f;
    w->start_mono = time_mono_ms();
    json_t *hdr = json_pack("{s:i, s:i, s:i, s:I, s:s, s:{s:s, s:s}}", "version", 2, "width", cols,
                            "height", rows, "timestamp", (json_int_t)(time_now_ms() / 1000),
                            "title", title ? title : "", "env", "TERM", "xterm-256color", "SHELL",
                            "/bin/sh");
    char *text = hdr ? json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(hdr);
    if (!text) {
        fclose(f);
        free(w);
        return AH_E_NOMEM;
    }
    fprintf(f, "%s\n", text);
    fflush(f);
    free(text);
    *ret = w;
    return 0;
}

/* Length of the UTF-8 sequence starting with byte c (0 if c cannot start one). */
static size_t seq_len(unsigned char c) {
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

static bool valid_seq(const unsigned char *p, size_t n) {
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return false;
    if (n == 3 && ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] > 0x9F)))
        return false; /* overlong or surrogate */
    if (n == 4 && ((p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] > 0x8F)))
        return false;
    return true;
}

static int write_event(struct cast_writer *w, const char *kind, const char *data, size_t len) {
    struct ah_buf clean = {.max = len * 3 + 16};
    const unsigned char *p = (const unsigned char *)data;
    size_t i = 0;
    /* join what was held back with this chunk */
    unsigned char joined[8];
    if (w->n_held) {
        size_t need = seq_len((unsigned char)w->held[0]);
        size_t take = need - w->n_held <= len ? need - w->n_held : len;
        memcpy(joined, w->held, w->n_held);
        memcpy(joined + w->n_held, data, take);
        if (w->n_held + take < need) {
            memcpy(w->held + w->n_held, data, take);
            w->n_held += take;
            return 0;
        }
        if (valid_seq(joined, need))
            ah_buf_append(&clean, joined, need);
        else
            ah_buf_append(&clean, "\xEF\xBF\xBD", 3);
        w->n_held = 0;
        i = take;
    }
    while (i < len) {
        size_t n = seq_len(p[i]);
        if (n == 0) {
            ah_buf_append(&clean, "\xEF\xBF\xBD", 3);
            i++;
        } else if (i + n > len) { /* incomplete at the end: hold it */
            memcpy(w->held, p + i, len - i);
            w->n_held = len - i;
            break;
        } else if (!valid_seq(p + i, n)) {
            ah_buf_append(&clean, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            ah_buf_append(&clean, p + i, n);
            i += n;
        }
    }
    if (!clean.n) {
        ah_buf_clear(&clean);
        return 0;
    }
    double t = (double)(time_mono_ms() - w->start_mono) / 1000.0;
    json_t *ev = json_pack("[f, s, s%]", t, kind, clean.p, clean.n);
    ah_buf_clear(&clean);
    char *text = ev ? json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(ev);
    if (!text)
        return AH_E_NOMEM;
    fprintf(w->f, "%s\n", text);
    fflush(w->f);
    free(text);
    return 0;
}

int cast_output(struct cast_writer *w, const char *data, size_t len) {
    return write_event(w, "o", data, len);
}

int cast_input(struct cast_writer *w, const char *data, size_t len) {
    return write_event(w, "i", data, len);
}

int cast_resize(struct cast_writer *w, int cols, int rows) {
    char size[32];
    snprintf(size, sizeof(size), "%dx%d", cols, rows);
    return write_event(w, "r", size, strlen(size));
}

void cast_close(struct cast_writer *w) {
    if (!w)
        return;
    if (w->n_held)
        write_event(w, "o", "\xEF\xBF\xBD", 0); /* drop the dangling partial character */
    fclose(w->f);
    free(w);
}
