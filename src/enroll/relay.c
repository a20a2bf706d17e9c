/*
 * relay.c — a Unix socket ⇄ a raw QUIC stream (relay.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

#define CHUNK 65536

struct relay {
    struct link_loop *l;
    int fd;
    struct link_watch *w;
    struct link_stream *s;
    struct ah_buf pend; /* from the stream, not yet written to fd */
    bool fd_eof;        /* fd said EOF: FIN sent */
    bool s_eof;         /* the stream said FIN: shutdown(fd, SHUT_WR) once pend is out */
    bool shut;
    bool s_full;        /* the stream had no room: wait for on_writable */
    bool s_closed;
    void (*on_end)(void *arg);
    void *arg;
};

static void relay_end(struct relay *r) {
    link_watch_del(r->w);
    r->w = NULL;
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    if (!r->s_closed && r->s)
        link_stream_reset(r->s, 1); /* its on_close frees us */
    else
        r->s = NULL;
}

static void rearm(struct relay *r) {
    if (!r->w)
        return;
    uint32_t ev = 0;
    if (!r->fd_eof && !r->s_full)
        ev |= EPOLLIN;
    if (r->pend.n)
        ev |= EPOLLOUT;
    link_watch_set(r->w, ev);
}

/* Writes what waits for the socket; returns credit for what went. false: the socket failed. */
static bool flush_pend(struct relay *r) {
    size_t done = 0;
    while (done < r->pend.n) {
        ssize_t w = send(r->fd, r->pend.p + done, r->pend.n - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w <= 0)
            return false;
        done += (size_t)w;
    }
    if (done) {
        memmove(r->pend.p, r->pend.p + done, r->pend.n - done);
        r->pend.n -= done;
        if (r->s && !r->s_closed)
            link_stream_consume(r->s, done);
    }
    if (!r->pend.n && r->s_eof && !r->shut) {
        shutdown(r->fd, SHUT_WR);
        r->shut = true;
    }
    return true;
}

static void pump_in(struct relay *r) {
    char buf[CHUNK];
    while (!r->fd_eof && r->s && !r->s_closed) {
        size_t room = link_stream_room(r->s);
        if (room == 0) {
            /* only a write that does not fit asks the link for on_writable: offer one byte,
             * which it refuses and remembers (a read that filled the buffer exactly left
             * nothing to refuse, and the relay waited for ever) */
            (void)link_stream_send(r->s, "", 1);
            r->s_full = true;
            return;
        }
        ssize_t n = read(r->fd, buf, room < sizeof(buf) ? room : sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            relay_end(r);
            return;
        }
        if (n == 0) {
            r->fd_eof = true;
            link_stream_finish(r->s);
            return;
        }
        int64_t took = link_stream_send(r->s, buf, (size_t)n);
        if (took != n) { /* room was checked: only a closed stream refuses */
            relay_end(r);
            return;
        }
    }
}

static void on_fd(void *arg, uint32_t events) {
    struct relay *r = arg;
    if (r->fd < 0)
        return;
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && r->pend.n && !flush_pend(r)) {
        relay_end(r);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        pump_in(r);
    if (r->fd >= 0 && (events & EPOLLERR) && !(events & EPOLLIN)) {
        relay_end(r);
        return;
    }
    rearm(r);
}

static size_t on_data(void *sctx, struct link_stream *s, const void *p, size_t n) {
    struct relay *r = sctx;
    if (r->fd < 0)
        return n;
    size_t written = 0;
    while (!r->pend.n && written < n) {
        ssize_t w = send(r->fd, (const char *)p + written, n - written, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w <= 0) {
            relay_end(r);
            return n;
        }
        written += (size_t)w;
    }
    /* the rest waits here; its credit comes back as it is written (bounded by the window) */
    if (written < n && ah_buf_append(&r->pend, (const char *)p + written, n - written) < 0) {
        relay_end(r);
        return n;
    }
    rearm(r);
    return written;
}

static void on_eof(void *sctx, struct link_stream *s) {
    struct relay *r = sctx;
    r->s_eof = true;
    if (r->fd >= 0 && !r->pend.n && !r->shut) {
        shutdown(r->fd, SHUT_WR);
        r->shut = true;
    }
}

static void on_writable(void *sctx, struct link_stream *s) {
    struct relay *r = sctx;
    if (r->fd < 0 || !r->s_full)
        return;
    r->s_full = false;
    pump_in(r);
    rearm(r);
}

static void on_close(void *sctx, struct link_stream *s, uint64_t app_error) {
    struct relay *r = sctx;
    r->s_closed = true;
    r->s = NULL;
    relay_end(r);
    if (r->on_end)
        r->on_end(r->arg);
    ah_buf_clear(&r->pend);
    free(r);
}

static const struct link_stream_handlers relay_handlers = {
    .on_data = on_data, .on_eof = on_eof, .on_writable = on_writable, .on_close = on_close};

int relay_start(struct link_loop *l, int fd, struct link_stream *s, void (*on_end)(void *arg),
                void *arg) {
    struct relay *r = calloc(1, sizeof(*r));
    int rc = r ? link_watch_add(l, fd, EPOLLIN, on_fd, r, &r->w) : AH_E_NOMEM;
    if (rc < 0) {
        free(r);
        close(fd);
        link_stream_reset(s, 1);
        return rc;
    }
    r->l = l;
    r->fd = fd;
    r->s = s;
    r->on_end = on_end;
    r->arg = arg;
    r->pend.max = LINK_STREAM_WINDOW + LINK_STREAM_BUF; /* never reached: the window bounds it */
    link_stream_set_handlers(s, &relay_handlers, r);
    return 0;
}
