/*
 * frame.c — control-plane frames (D41): u32 big-endian length + one JSON object with "type".
 * The decoder is a two-state machine (header, body) that copies each byte once into a buffer
 * sized by the header, so stream data may be split or stacked in any way.
 */
#include <stdio.h>
#include <string.h>

#include "frame.h"

static size_t cap_of(size_t max) {
    return max ? max : FRAME_MAX_DEFAULT;
}

static bool has_type(const json_t *msg) {
    const json_t *t = json_object_get(msg, "type");
    return json_is_string(t) && json_string_length(t) > 0;
}

int frame_encode(struct ah_buf *out, const json_t *msg, size_t max) {
    if (!json_is_object(msg) || !has_type(msg))
        return AH_E_INVAL;
    AH_AUTOFREE char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return AH_E_NOMEM;
    size_t n = strlen(text);
    if (n > cap_of(max) || n > UINT32_MAX)
        return AH_E_TOOLARGE;
    unsigned char hdr[FRAME_HEADER] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                                       (unsigned char)(n >> 8), (unsigned char)n};
    size_t before = out->n;
    int rc = ah_buf_append(out, hdr, sizeof(hdr));
    if (rc == 0 && (rc = ah_buf_append(out, text, n)) < 0)
        out->n = before; /* never half a frame */
    if (rc < 0 && out->p)
        out->p[out->n] = '\0';
    return rc;
}

static int fail(struct frame_decoder *d, int code, const char *why) {
    d->error = code;
    snprintf(d->why, sizeof(d->why), "%s", why);
    free(d->body);
    d->body = NULL;
    return code;
}

/* The body is complete: parse, check, hand over. */
static int finish(struct frame_decoder *d, frame_cb cb, void *ctx) {
    json_error_t je;
    json_t *msg = json_loadb((const char *)d->body, d->len, JSON_REJECT_DUPLICATES, &je);
    free(d->body);
    d->body = NULL;
    d->hdr_n = 0;
    d->len = d->got = 0;
    if (!msg) {
        char why[160];
        snprintf(why, sizeof(why), "frame is not JSON: %s", je.text);
        return fail(d, AH_E_PROTOCOL, why);
    }
    if (!json_is_object(msg) || !has_type(msg)) {
        json_decref(msg);
        return fail(d, AH_E_PROTOCOL, "frame is not a JSON object with a string \"type\"");
    }
    int rc = cb ? cb(ctx, msg) : 0;
    json_decref(msg);
    if (rc < 0)
        d->error = rc;
    return rc;
}

int frame_decode(struct frame_decoder *d, const void *data, size_t len, frame_cb cb, void *ctx) {
    if (d->error)
        return d->error;
    const unsigned char *p = data;
    size_t total = len;
    d->used = 0;
    while (len) {
        if (d->hdr_n < FRAME_HEADER) {
            size_t k = FRAME_HEADER - d->hdr_n < len ? FRAME_HEADER - d->hdr_n : len;
            memcpy(d->hdr + d->hdr_n, p, k);
            d->hdr_n += k, p += k, len -= k;
            if (d->hdr_n < FRAME_HEADER)
                break;
            uint32_t n = (uint32_t)d->hdr[0] << 24 | (uint32_t)d->hdr[1] << 16 |
                         (uint32_t)d->hdr[2] << 8 | d->hdr[3];
            if (n > cap_of(d->max)) {
                char why[160];
                snprintf(why, sizeof(why), "frame of %u bytes is above the cap of %zu", n,
                         cap_of(d->max));
                return fail(d, AH_E_PROTOCOL, why);
            }
            if (n == 0)
                return fail(d, AH_E_PROTOCOL, "empty frame");
            d->len = n;
            d->got = 0;
            d->body = malloc(n);
            if (!d->body)
                return fail(d, AH_E_NOMEM, "out of memory");
        }
        size_t k = d->len - d->got < len ? d->len - d->got : len;
        memcpy(d->body + d->got, p, k);
        d->got += k, p += k, len -= k;
        if (d->got == d->len) {
            int rc = finish(d, cb, ctx);
            if (rc < 0)
                return rc;
            if (rc > 0)
                break;
        }
    }
    d->used = total - len;
    return 0;
}

bool frame_decoder_idle(const struct frame_decoder *d) {
    return d->hdr_n == 0 && !d->body;
}

void frame_decoder_clear(struct frame_decoder *d) {
    free(d->body);
    size_t max = d->max;
    memset(d, 0, sizeof(*d));
    d->max = max;
}
