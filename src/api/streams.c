/*
 * streams.c — the one thread behind every long-lived response (event SSE, PTY SSE). It never
 * touches a connection itself; it only calls http_stream_wake:
 *   - every tick it wakes streams silent for the keep-alive interval, so they send
 *     `: keep-alive` (D11) — which is also how a vanished client of a suspended connection is
 *     noticed;
 *   - it holds one inotify instance over the recordings that PTY streams follow, and wakes the
 *     streams of a file when it grows (without one, it wakes them on every tick).
 * epoll over a timerfd, the inotify fd and an eventfd (stop); no thread per client.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../auth/auth.h"
#include "routes.h"

#define TICK_MS 1000
#define SSE_KEEP_BUFFER 4096

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct stream_entry *entries;  /* every stream */
static struct stream_entry *watchers; /* those that follow a file: inotify events look here only */
static pthread_t thread;
static bool running;
static int epfd = -1, tfd = -1, ifd = -1, efd = -1;
static int64_t keepalive_ms = 15000;
static struct api_ctx *sctx; /* for the credentials check of on_tick */

int64_t streams_keepalive_ms(void) {
    return keepalive_ms;
}

void streams_add(struct stream_entry *e, struct http_stream *s) {
    e->stream = s;
    e->wd = -1;
    __atomic_store_n(&e->last_write, time_mono_ms(), __ATOMIC_RELAXED);
    pthread_mutex_lock(&mu);
    e->prev = NULL;
    e->next = entries;
    if (entries)
        entries->prev = e;
    entries = e;
    pthread_mutex_unlock(&mu);
}

void streams_owner(struct stream_entry *e, const struct http_request *req) {
    const struct auth_principal *p = req->principal;
    if (!p || p->local)
        return;
    snprintf(e->owner_kind, sizeof(e->owner_kind), "%s", p->kind);
    snprintf(e->owner_id, sizeof(e->owner_id), "%s", p->credential_id);
}

void api_streams_revoke(const char *kind, const char *credential_id) {
    pthread_mutex_lock(&mu);
    for (struct stream_entry *e = entries; e; e = e->next)
        if (strcmp(e->owner_kind, kind) == 0 && strcmp(e->owner_id, credential_id) == 0) {
            __atomic_store_n(&e->revoked, true, __ATOMIC_RELEASE);
            http_stream_wake(e->stream);
        }
    pthread_mutex_unlock(&mu);
}

void streams_remove(struct stream_entry *e) {
    pthread_mutex_lock(&mu);
    if (e->prev)
        e->prev->next = e->next;
    else
        entries = e->next;
    if (e->next)
        e->next->prev = e->prev;
    if (e->wd >= 0) {
        if (e->wprev)
            e->wprev->wnext = e->wnext;
        else
            watchers = e->wnext;
        if (e->wnext)
            e->wnext->wprev = e->wprev;
        bool shared = false;
        for (struct stream_entry *o = watchers; o && !shared; o = o->wnext)
            shared = o->wd == e->wd;
        if (!shared && ifd >= 0) /* the last follower of that file */
            inotify_rm_watch(ifd, e->wd);
    }
    pthread_mutex_unlock(&mu);
}

int streams_watch(struct stream_entry *e, const char *path) {
    if (ifd < 0) {
        e->wd = -2; /* woken by every tick (on_tick) */
        return 0;
    }
    /* Under the lock: the same file gives the same wd, and a follower leaving must not remove
     * a watch another one has just been given but not stored yet. */
    pthread_mutex_lock(&mu);
    int wd = inotify_add_watch(ifd, path, IN_MODIFY | IN_CLOSE_WRITE);
    int err = wd < 0 ? errno : 0;
    if (wd >= 0) {
        e->wd = wd;
        e->wprev = NULL;
        e->wnext = watchers;
        if (watchers)
            watchers->wprev = e;
        watchers = e;
    }
    pthread_mutex_unlock(&mu);
    return err ? ah_err_from_errno(err) : 0;
}

void streams_wrote(struct stream_entry *e) {
    __atomic_store_n(&e->last_write, time_mono_ms(), __ATOMIC_RELAXED);
}

ssize_t sse_pump(struct sse_out *o, int (*fill)(void *ctx, struct sse_out *o), void *ctx,
                 char *out, size_t max) {
    if (__atomic_load_n(&o->entry.revoked, __ATOMIC_ACQUIRE)) {
        /* the credential is gone: nothing more goes out, not even what was buffered */
        ah_buf_clear(&o->buf);
        o->off = 0;
        o->done = true;
        return HTTP_STREAM_END;
    }
    if (o->off >= o->buf.n) {
        o->buf.n = o->off = 0;
        if (!o->started) { /* a reconnect hint, and the headers go out at once */
            o->started = true;
            ah_buf_puts(&o->buf, "retry: 2000\n\n");
        } else if (o->done) {
            ah_buf_clear(&o->buf);
            return HTTP_STREAM_END;
        }
        if (!o->done) {
            int rc = fill(ctx, o);
            if (rc < 0)
                return rc;
        }
        int64_t idle = time_mono_ms() - __atomic_load_n(&o->entry.last_write, __ATOMIC_RELAXED);
        if (!o->buf.n && !o->done && idle >= keepalive_ms)
            ah_buf_puts(&o->buf, ": keep-alive\n\n");
        if (!o->buf.n) {
            /* An idle stream keeps a small buffer (a busy one reuses it at every wake instead of
             * allocating it again); a large one goes back. */
            if (o->buf.cap > SSE_KEEP_BUFFER || o->done)
                ah_buf_clear(&o->buf);
            return o->done ? HTTP_STREAM_END : 0;
        }
    }
    size_t n = o->buf.n - o->off < max ? o->buf.n - o->off : max;
    memcpy(out, o->buf.p + o->off, n);
    o->off += n;
    streams_wrote(&o->entry);
    return (ssize_t)n;
}

static void key_ended(void *arg, const char *id) {
    (void)arg;
    api_streams_revoke("apikey", id);
}

static void on_tick(void) {
    uint64_t n;
    while (read(tfd, &n, sizeof(n)) > 0)
        ;
    int64_t now = time_mono_ms();
    bool keyed = false;
    pthread_mutex_lock(&mu);
    for (struct stream_entry *e = entries; e; e = e->next) {
        if (now - __atomic_load_n(&e->last_write, __ATOMIC_RELAXED) >= keepalive_ms ||
            (ifd < 0 && e->wd == -2)) /* a follower of a recording, without inotify */
            http_stream_wake(e->stream);
        keyed = keyed || strcmp(e->owner_kind, "apikey") == 0;
    }
    pthread_mutex_unlock(&mu);
    /* A key revoked where the API did not see it (`ah admin api-key revoke` on the database, or
     * another replica) or expired ends its streams here, within a tick or so; a server without
     * such streams asks nothing. */
    if (keyed && sctx && sctx->auth)
        auth_keys_ended(sctx->auth, key_ended, NULL);
}

static void on_inotify(void) {
    _Alignas(struct inotify_event) char buf[8192];
    ssize_t n;
    while ((n = read(ifd, buf, sizeof(buf))) > 0) {
        pthread_mutex_lock(&mu);
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            for (struct stream_entry *e = watchers; e; e = e->wnext)
                if (e->wd == ev->wd)
                    http_stream_wake(e->stream);
        }
        pthread_mutex_unlock(&mu);
    }
}

static void *main_loop(void *arg) {
    (void)arg;
    for (;;) {
        struct epoll_event evs[8];
        int n = epoll_wait(epfd, evs, 8, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == efd)
                return NULL;
            if (evs[i].data.fd == tfd)
                on_tick();
            else if (evs[i].data.fd == ifd)
                on_inotify();
        }
    }
}

static void close_fds(void) {
    int *fds[] = {&epfd, &tfd, &ifd, &efd};
    for (size_t i = 0; i < 4; i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
}

int api_streams_start(struct api_ctx *ctx) {
    if (ctx->keepalive_ms > 0)
        keepalive_ms = ctx->keepalive_ms;
    sctx = ctx;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd < 0 || tfd < 0 || efd < 0) {
        int err = errno;
        log_msg(LOG_ERROR, "event streams: cannot create their epoll, timer or wake-up "
                           "descriptor: %s", strerror(err));
        close_fds();
        return ah_err_from_errno(err);
    }
    /* Without inotify (the per-user fs.inotify.max_user_instances is easily reached on a host
     * running many agents: each recorder watches its workspace) the server still starts:
     * terminal streams then catch up on every tick instead of at once. */
    if (test_fail_point("inotify")) {
        ifd = -1;
        errno = EMFILE;
    } else {
        ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    }
    if (ifd < 0) {
        int err = errno;
        log_msg(LOG_WARN, "event streams: no inotify instance (%s%s): terminal streams follow "
                          "their recordings once a second instead of at once",
                strerror(err), err == EMFILE ? ", fs.inotify.max_user_instances reached" : "");
    }
    int64_t tick = keepalive_ms < TICK_MS ? keepalive_ms : TICK_MS;
    struct itimerspec its = {
        .it_value = {.tv_sec = tick / 1000, .tv_nsec = (tick % 1000) * 1000000L},
        .it_interval = {.tv_sec = tick / 1000, .tv_nsec = (tick % 1000) * 1000000L}};
    timerfd_settime(tfd, 0, &its, NULL);
    int fds[] = {tfd, efd, ifd};
    for (size_t i = 0; i < (ifd >= 0 ? 3u : 2u); i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fds[i], &ev);
    }
    if (pthread_create(&thread, NULL, main_loop, NULL) != 0) {
        close_fds();
        return AH_E_NOMEM;
    }
    running = true;
    return 0;
}

void api_streams_stop(void) {
    if (!running)
        return;
    uint64_t one = 1;
    if (write(efd, &one, sizeof(one)) < 0) {
        /* cannot fail on a fresh eventfd */
    }
    pthread_join(thread, NULL);
    running = false;
    close_fds();
}
