/*
 * link.c — the framing of the recorder link (D17): a 4-byte big-endian length, then one JSON
 * object. Both ends are non-blocking; frames are assembled from whatever the socket gives.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int link_frame(struct ah_buf *out, const json_t *msg) {
    AH_AUTOFREE char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return AH_E_NOMEM;
    size_t n = strlen(text);
    if (n > LINK_MAX_FRAME)
        return AH_E_TOOLARGE;
    unsigned char hdr[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    size_t before = out->n;
    int rc = ah_buf_append(out, hdr, 4);
    if (rc == 0 && (rc = ah_buf_append(out, text, n)) < 0)
        out->n = before; /* no half frame */
    return rc;
}

int link_feed(struct link_reader *r, const void *data, size_t len) {
    if (r->off && r->off == r->in.n) { /* everything consumed: start over at the front */
        r->in.n = 0;
        r->off = 0;
    }
    if (!r->in.max)
        r->in.max = LINK_MAX_FRAME * 2 + 8;
    return ah_buf_append(&r->in, data, len);
}

int link_take(struct link_reader *r, json_t **ret) {
    size_t avail = r->in.n - r->off;
    if (avail < 4)
        return 0;
    const unsigned char *p = (const unsigned char *)r->in.p + r->off;
    uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (n > LINK_MAX_FRAME)
        return AH_E_PROTOCOL;
    if (avail < 4 + (size_t)n)
        return 0;
    json_t *msg = json_loadb((const char *)p + 4, n, 0, NULL);
    r->off += 4 + (size_t)n;
    if (r->off == r->in.n) {
        r->in.n = 0;
        r->off = 0;
    } else if (r->off > 65536 && r->off * 2 > r->in.n) { /* compact now and then */
        memmove(r->in.p, r->in.p + r->off, r->in.n - r->off);
        r->in.n -= r->off;
        r->off = 0;
    }
    if (!json_is_object(msg)) {
        json_decref(msg);
        return AH_E_PROTOCOL;
    }
    *ret = msg;
    return 1;
}

void link_reader_clear(struct link_reader *r) {
    ah_buf_clear(&r->in);
    r->off = 0;
}

int link_read_fd(int fd, struct link_reader *r) {
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? AH_E_BUSY : ah_err_from_errno(errno);
    if (n == 0)
        return 0;
    int rc = link_feed(r, buf, (size_t)n);
    return rc < 0 ? rc : (int)n;
}

int write_pending(int fd, struct ah_buf *buf) {
    size_t done = 0;
    while (done < buf->n) {
        ssize_t w = write(fd, buf->p + done, buf->n - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return ah_err_from_errno(errno);
        }
        done += (size_t)w;
    }
    if (done) {
        memmove(buf->p, buf->p + done, buf->n - done);
        buf->n -= done;
        buf->p[buf->n] = '\0';
    }
    return 0;
}
