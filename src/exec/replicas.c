/*
 * replicas.c — this access point as one of several sharing a PostgreSQL database (D46).
 *
 * Identity: the replica id lives in <data>/replica-id, made once, so a replica that restarts
 * within its lease is the same owner and re-attaches its sessions like any restart (D15).
 *
 * One thread (only when the store is shared; none on SQLite) does three things:
 *   - renews this replica's lease every lease/3 (D46: 5 s of a 15 s lease by default);
 *   - adopts the live sessions of replicas whose lease ran out: a queued one is scheduled here
 *     (exactly once across replicas: the store takes each with SKIP LOCKED); one that was
 *     running under the lost replica's supervision is failed with "access point lost" — its
 *     agent ran on that machine, out of our reach;
 *   - runs the commands other replicas forwarded to us (control and prompts for sessions we
 *     own, exec.c), woken by the store's listener on their NOTIFY, and at each renewal in case
 *     a notice was missed.
 * Nothing here runs on an HTTP thread or on the supervisor; the thread waits on a condition
 * variable between rounds (no sleep-polling).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "executor.h"

#define LEASE_MS_DEFAULT 15000

struct replicas {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    pthread_t thread;
    bool running, stop, commands;
    int64_t lease_ms;
};

/* Reads <data>/replica-id, or makes it. 0 or AH_E_*. */
static int replica_id(struct executor *ex, char out[ULID_LEN + 1]) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/replica-id", ex->cfg.data_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, out, ULID_LEN);
        close(fd);
        out[n > 0 ? n : 0] = '\0';
        if (n == ULID_LEN && ulid_valid(out))
            return 0;
        log_msg(LOG_WARN, "%s is not a replica id; making a new one", path);
        unlink(path);
    }
    ulid_new(out);
    if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
        return ah_err_from_errno(errno);
    bool ok = write(fd, out, ULID_LEN) == ULID_LEN;
    ok = close(fd) == 0 && ok;
    return ok ? 0 : AH_E_IO;
}

/* The store's listener: commands for us may be waiting. Must not block. */
static void on_commands(void *arg) {
    struct replicas *R = arg;
    pthread_mutex_lock(&R->mu);
    R->commands = true;
    pthread_cond_signal(&R->cv);
    pthread_mutex_unlock(&R->mu);
}

/* A session of a lost replica is ours now (its owner column says so): schedule it if it was
 * waiting, fail it if it was running where we cannot reach. */
static void adopt(struct executor *ex, const char *tenant, const char *id, bool *kick) {
    struct session_row *row = NULL;
    if (store_session_get(ex->store, tenant, id, &row) < 0)
        return;
    if (row->status == SESSION_QUEUED) {
        *kick = true;
        log_msg(LOG_INFO, "session %s: taken over from a lost access point, queued here", id);
    } else if (!session_status_terminal(row->status) && row->executor_id &&
               *row->executor_id) {
        /* it runs on an executor, which reconnects to one of us: here, it is re-attached with
         * every event its recorder did not have acknowledged (D17) */
        exec_post(ex, cmd_new(CMD_ADOPT_REMOTE, tenant, id));
    } else if (!session_status_terminal(row->status)) {
        log_msg(LOG_WARN, "session %s failed: access point lost (it was %s there)", id,
                session_status_name(row->status));
        exec_transition(ex, tenant, id, SESSION_FAILED, "access point lost", NULL, NULL);
    }
    session_row_free(row);
}

static void adopt_orphans(struct executor *ex) {
    char **ids = NULL;
    size_t n = 0;
    if (store_session_adopt_orphans(ex->store, &ids, &n) < 0)
        return;
    bool kick = false;
    for (size_t i = 0; i < n; i++) {
        char *tab = strchr(ids[i], '\t');
        if (tab) {
            *tab = '\0';
            adopt(ex, ids[i], tab + 1, &kick);
        }
        free(ids[i]);
    }
    free(ids);
    if (kick)
        exec_kick(ex);
}

static void run_commands(struct executor *ex) {
    json_t *cmds = NULL;
    if (store_command_take(ex->store, &cmds) < 0)
        return;
    size_t i;
    json_t *c;
    json_array_foreach(cmds, i, c) {
        exec_run_forwarded(ex, json_string_value(json_object_get(c, "tenant")),
                           json_string_value(json_object_get(c, "session")),
                           json_object_get(c, "command"));
    }
    json_decref(cmds);
}

static void *replicas_main(void *arg) {
    struct executor *ex = arg;
    struct replicas *R = ex->replicas;
    int64_t period = R->lease_ms / 3, next = 0;
    pthread_mutex_lock(&R->mu);
    while (!R->stop) {
        int64_t now = time_mono_ms();
        bool due = now >= next, commands = R->commands || due;
        R->commands = false;
        pthread_mutex_unlock(&R->mu);
        if (due) {
            if (store_replica_beat(ex->store, R->lease_ms) < 0)
                log_msg(LOG_WARN, "cannot renew this access point's lease in the database");
            adopt_orphans(ex);
            next = now + period;
        }
        if (commands)
            run_commands(ex);
        pthread_mutex_lock(&R->mu);
        if (R->stop || R->commands)
            continue;
        int64_t wait = next - time_mono_ms();
        if (wait > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&R->cv, &R->mu, &ts);
        }
    }
    pthread_mutex_unlock(&R->mu);
    return NULL;
}

int replicas_init(struct executor *ex, struct ah_problem *reterr) {
    char id[ULID_LEN + 1];
    int rc = replica_id(ex, id);
    if (rc < 0)
        return problem_set(reterr, rc, "cannot keep this access point's id in %s: %s",
                           ex->cfg.data_dir, ah_strerror(rc));
    store_set_replica(ex->store, id);
    /* Before the restart check: our sessions (and those from before replicas) are ours. */
    int64_t lease = ex->cfg.lease_ms > 0 ? ex->cfg.lease_ms : LEASE_MS_DEFAULT;
    if ((rc = store_replica_beat(ex->store, lease)) < 0)
        return problem_set(reterr, rc, "cannot record this access point in the database: %s",
                           ah_strerror(rc));
    return 0;
}

int replicas_start(struct executor *ex) {
    struct replicas *R = calloc(1, sizeof(*R));
    if (!R)
        return AH_E_NOMEM;
    R->lease_ms = ex->cfg.lease_ms > 0 ? ex->cfg.lease_ms : LEASE_MS_DEFAULT;
    pthread_mutex_init(&R->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&R->cv, &ca);
    pthread_condattr_destroy(&ca);
    ex->replicas = R;
    if (store_on_commands(ex->store, on_commands, R) == AH_E_NOTIMPL)
        return 0; /* one process owns the database: nothing to share */
    if (pthread_create(&R->thread, NULL, replicas_main, ex) != 0) {
        store_on_commands(ex->store, NULL, NULL);
        return AH_E_NOMEM;
    }
    R->running = true;
    log_msg(LOG_INFO, "access point %s shares its database: lease %lld ms",
            store_replica(ex->store), (long long)R->lease_ms);
    return 0;
}

void replicas_stop(struct executor *ex) {
    struct replicas *R = ex->replicas;
    if (!R)
        return;
    if (R->running) {
        store_on_commands(ex->store, NULL, NULL); /* no call after this returns */
        pthread_mutex_lock(&R->mu);
        R->stop = true;
        pthread_cond_signal(&R->cv);
        pthread_mutex_unlock(&R->mu);
        pthread_join(R->thread, NULL);
    }
    pthread_cond_destroy(&R->cv);
    pthread_mutex_destroy(&R->mu);
    free(R);
    ex->replicas = NULL;
}
