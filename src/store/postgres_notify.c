/*
 * postgres_notify.c — store_watch on PostgreSQL: one listener thread per store, on a connection
 * of its own that LISTENs on PGS_CHANNEL (and PGS_COMMANDS: commands for this replica, D46),
 * handing each notice of another process to the
 * watcher. The writer's side is in postgres_events.c (a pg_notify per session in each batch's
 * transaction, so a notice means "committed").
 *
 * It also hears PGS_ROWS, which a trigger sends for every change of a session row by any
 * process, and reports them to the versions behind the read cache (store_versions_changed): those
 * versions are trusted only while the listener hears (store_pg_hears_changes), and all of them
 * move when it starts hearing again after a gap.
 *
 * The thread sleeps in poll() on the connection's socket and an eventfd that store_close
 * signals: no polling loop, no timer while connected. A lost connection is re-opened with a
 * capped backoff (waiting on the eventfd, so a close never waits for it), and the watcher is then
 * told that notices may have been missed (tenant and session NULL).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "postgres_internal.h"

/* Handles one payload "origin\ttenant\tsession\tseq"; the tenant is everything between the first
 * tab and the last two (ids and numbers hold no tab). */
static void deliver(struct pgs *s, char *payload) {
    char *t1 = strchr(payload, '\t');
    char *t3 = strrchr(payload, '\t');
    if (!t1 || t3 == t1)
        return;
    *t3 = '\0';
    char *t2 = strrchr(t1 + 1, '\t');
    if (!t2)
        return;
    *t1 = *t2 = '\0';
    if (strcmp(payload, s->origin) == 0) /* our own: the bus has seen it already */
        return;
    s->watch.fn(s->watch.arg, t1 + 1, t2 + 1, strtoll(t3 + 1, NULL, 10));
}

/* Payload "tenant\tsession" of PGS_ROWS. */
static void row_changed(const char *payload) {
    const char *tab = strrchr(payload, '\t');
    if (tab && tab[1])
        store_versions_changed(tab + 1);
}

static void set_hearing(struct pgs *s, bool on) {
    if (on) /* whatever changed while we could not hear is stale: move every version first */
        store_versions_changed(NULL);
    __atomic_store_n(&s->watch.hearing, on, __ATOMIC_RELEASE);
    if (!on)
        store_versions_changed(NULL);
}

bool store_pg_hears_changes(void *impl) {
    struct pgs *s = impl;
    return __atomic_load_n(&s->watch.hearing, __ATOMIC_ACQUIRE);
}

/* Tells the command watcher (store_on_commands) that commands may wait for this replica. */
static void commands_waiting(struct pgs *s) {
    pthread_mutex_lock(&s->mu);
    void (*fn)(void *) = s->commands.fn;
    void *arg = s->commands.arg;
    if (fn) /* under the lock, so store_on_commands(NULL) means no call after it returns */
        fn(arg);
    pthread_mutex_unlock(&s->mu);
}

/* A notice on PGS_COMMANDS names the replica the command is for. */
static void command_notice(struct pgs *s, const char *owner) {
    char me[STORE_REPLICA_MAX + 1];
    store_pg_replica_of(s, me);
    if (strcmp(owner, me) == 0)
        commands_waiting(s);
}

/* Waits up to ms for the stop signal; true when it came. */
static bool wait_stop(int fd, int ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    return r > 0;
}

static PGconn *listen_conn(struct pgs *s) {
    struct ah_problem p = {0};
    PGconn *db = store_pg_connect(s->url, &p);
    if (!db)
        log_msg(LOG_DEBUG, "postgres listener: %s", p.detail);
    problem_clear(&p);
    if (db) {
        PGresult *r =
            PQexec(db, "LISTEN " PGS_CHANNEL "; LISTEN " PGS_COMMANDS "; LISTEN " PGS_ROWS);
        bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            PQfinish(db);
            db = NULL;
        }
    }
    return db;
}

static void *listen_main(void *arg) {
    struct pgs *s = arg;
    PGconn *db = s->watch.first; /* already listening (store_pg_watch) */
    s->watch.first = NULL;
    int backoff = 100;
    bool lost = false;
    for (;;) {
        if (!db) {
            if (!(db = listen_conn(s))) {
                if (wait_stop(s->watch.stop_fd, backoff))
                    break;
                backoff = backoff < 5000 ? backoff * 2 : 5000;
                continue;
            }
            backoff = 100;
            set_hearing(s, true);
            if (lost) { /* we were deaf for a while: the watchers re-read what they follow */
                s->watch.fn(s->watch.arg, NULL, NULL, 0);
                commands_waiting(s);
            }
            lost = false;
        }
        struct pollfd p[2] = {{.fd = s->watch.stop_fd, .events = POLLIN},
                              {.fd = PQsocket(db), .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents)
            break;
        if (!PQconsumeInput(db) || PQstatus(db) != CONNECTION_OK) {
            set_hearing(s, false);
            PQfinish(db);
            db = NULL;
            lost = true;
            continue;
        }
        PGnotify *n;
        while ((n = PQnotifies(db))) {
            if (strcmp(n->relname, PGS_COMMANDS) == 0)
                command_notice(s, n->extra);
            else if (strcmp(n->relname, PGS_ROWS) == 0)
                row_changed(n->extra);
            else
                deliver(s, n->extra);
            PQfreemem(n);
        }
    }
    set_hearing(s, false);
    PQfinish(db);
    return NULL;
}

int store_pg_watch(void *impl,
                   void (*fn)(void *arg, const char *tenant, const char *session_id, int64_t seq),
                   void *arg) {
    struct pgs *s = impl;
    if (!fn) {
        store_pg_watch_stop(s);
        return 0;
    }
    if (s->watch.started)
        return AH_E_EXISTS;
    s->watch.fn = fn;
    s->watch.arg = arg;
    if ((s->watch.stop_fd = eventfd(0, EFD_CLOEXEC)) < 0)
        return ah_err_from_errno(errno);
    /* Listening before we return: a commit right after store_watch is not missed. */
    if (!(s->watch.first = listen_conn(s))) {
        close(s->watch.stop_fd);
        s->watch.stop_fd = -1;
        return AH_E_UNAVAIL;
    }
    set_hearing(s, true); /* before the thread, which may lose the connection at once */
    int rc = pthread_create(&s->watch.thread, NULL, listen_main, s);
    if (rc != 0) {
        set_hearing(s, false);
        PQfinish(s->watch.first);
        s->watch.first = NULL;
        close(s->watch.stop_fd);
        s->watch.stop_fd = -1;
        return ah_err_from_errno(rc);
    }
    s->watch.started = true;
    return 0;
}

void store_pg_watch_stop(struct pgs *s) {
    if (s->watch.started) {
        uint64_t one = 1;
        if (write(s->watch.stop_fd, &one, sizeof(one)) != sizeof(one))
            log_msg(LOG_DEBUG, "postgres listener: cannot signal its end");
        pthread_join(s->watch.thread, NULL);
        s->watch.started = false;
    }
    if (s->watch.stop_fd >= 0)
        close(s->watch.stop_fd);
    s->watch.stop_fd = -1;
}
