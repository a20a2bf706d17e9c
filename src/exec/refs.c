/*
 * refs.c — GET /repositories/{id}/branches for a repository we have no mirror of, without an
 * HTTP thread ever waiting on the network (issue 10 item 16).
 *
 * Why a cache and not a suspended request: the answer's status depends on the remote (200 with
 * the branches, 503 when it cannot be reached), and a suspended streaming response commits to its
 * status before the first byte, so the HTTP layer's suspend/resume cannot carry it. Instead the
 * handler answers from what the last `git ls-remote` found and leaves the asking to REFS_WORKERS
 * background threads, each ls-remote bounded by refs_timeout_ms:
 *   - nothing known yet: a refresh is queued and the answer is AH_E_BUSY (503 + Retry-After);
 *   - known and younger than REFS_FRESH_MS: that answer (branches or the error);
 *   - known but older: the old branches at once (or AH_E_BUSY after an error) and a refresh.
 * At most REFS_MAX repositories are remembered; the least recently asked-for settled one makes
 * room. A server stop interrupts a running ls-remote through the workers' abort eventfd.
 */
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "executor.h"

#define REFS_FRESH_MS 30000
#define REFS_MAX 256

struct refs_entry {
    struct refs_entry *next;
    char *url;
    bool queued;       /* a refresh is wanted */
    bool running;      /* a worker is asking the remote */
    bool known;        /* rc/branches hold a result */
    int rc;            /* 0 or the error of the last ls-remote */
    json_t *branches;  /* the last good answer (kept across a failed refresh) */
    int64_t fetched_at, asked_at; /* monotonic ms */
};

static void entry_free(struct refs_entry *e) {
    if (!e)
        return;
    free(e->url);
    json_decref(e->branches);
    free(e);
}

static void *refs_main(void *arg) {
    struct executor *ex = arg;
    pthread_mutex_lock(&ex->mu);
    for (;;) {
        struct refs_entry *e = NULL;
        while (!ex->stopping) {
            for (e = ex->refs; e && !(e->queued && !e->running); e = e->next)
                ;
            if (e)
                break;
            pthread_cond_wait(&ex->refs_cv, &ex->mu);
        }
        if (ex->stopping)
            break;
        e->queued = false;
        e->running = true;
        char *url = strdup(e->url);
        pthread_mutex_unlock(&ex->mu);
        struct run_limits lim = {.timeout_ms = ex->cfg.refs_timeout_ms, .abort_fd = ex->refs_abort};
        json_t *branches = NULL;
        int rc = url ? workspace_repo_branches(ex->cfg.data_dir, url, &lim, &branches) : AH_E_NOMEM;
        if (rc < 0) {
            AH_AUTOFREE char *shown = text_redact_userinfo(url);
            log_msg(LOG_INFO, "cannot list the branches of %s: %s", shown ? shown : "a repository",
                    ah_strerror(rc));
        }
        free(url);
        pthread_mutex_lock(&ex->mu);
        /* e stays in the list while running (eviction skips running entries) */
        e->running = false;
        e->known = true;
        e->rc = rc;
        e->fetched_at = time_mono_ms();
        if (rc == 0) {
            json_decref(e->branches);
            e->branches = branches;
        }
    }
    pthread_mutex_unlock(&ex->mu);
    return NULL;
}

/* Under ex->mu: room for one more entry, or false when every entry is busy. */
static bool make_room(struct executor *ex) {
    if (ex->n_refs < REFS_MAX)
        return true;
    struct refs_entry **victim = NULL;
    for (struct refs_entry **pp = &ex->refs; *pp; pp = &(*pp)->next)
        if (!(*pp)->running && !(*pp)->queued &&
            (!victim || (*pp)->asked_at < (*victim)->asked_at))
            victim = pp;
    if (!victim)
        return false;
    struct refs_entry *e = *victim;
    *victim = e->next;
    entry_free(e);
    ex->n_refs--;
    return true;
}

int exec_repo_branches(struct executor *ex, const char *url, json_t **ret) {
    int rc = workspace_repo_branches(ex->cfg.data_dir, url, NULL, ret);
    if (rc != AH_E_NOTFOUND) /* we have a mirror: local and quick */
        return rc;
    int64_t now = time_mono_ms();
    pthread_mutex_lock(&ex->mu);
    if (!ex->refs_ready || ex->stopping) {
        pthread_mutex_unlock(&ex->mu);
        return AH_E_UNAVAIL;
    }
    struct refs_entry *e = ex->refs;
    while (e && strcmp(e->url, url) != 0)
        e = e->next;
    if (!e) {
        if (!make_room(ex) || !(e = calloc(1, sizeof(*e))) || !(e->url = strdup(url))) {
            entry_free(e);
            pthread_mutex_unlock(&ex->mu);
            return AH_E_UNAVAIL;
        }
        e->next = ex->refs;
        ex->refs = e;
        ex->n_refs++;
    }
    e->asked_at = now;
    bool fresh = e->known && now - e->fetched_at < REFS_FRESH_MS;
    if (!fresh && !e->running && !e->queued) {
        e->queued = true;
        pthread_cond_signal(&ex->refs_cv);
    }
    if (e->known && (e->rc == 0 || e->branches))
        rc = 0; /* the last good answer, refreshed in the background when old */
    else if (e->known && fresh)
        rc = e->rc; /* the remote failed a moment ago */
    else
        rc = AH_E_BUSY; /* being asked */
    if (rc == 0 && !(*ret = json_deep_copy(e->branches)))
        rc = AH_E_NOMEM;
    pthread_mutex_unlock(&ex->mu);
    return rc;
}

int refs_start(struct executor *ex) {
    ex->refs_abort = eventfd(0, EFD_CLOEXEC);
    if (ex->refs_abort < 0)
        return AH_E_IO;
    pthread_cond_init(&ex->refs_cv, NULL);
    for (int i = 0; i < REFS_WORKERS; i++)
        if (pthread_create(&ex->refs_threads[i], NULL, refs_main, ex) != 0) {
            pthread_mutex_lock(&ex->mu);
            ex->stopping = true;
            pthread_cond_broadcast(&ex->refs_cv);
            pthread_mutex_unlock(&ex->mu);
            for (int k = 0; k < i; k++)
                pthread_join(ex->refs_threads[k], NULL);
            pthread_cond_destroy(&ex->refs_cv);
            close(ex->refs_abort);
            ex->refs_abort = -1;
            return AH_E_NOMEM;
        }
    ex->refs_ready = true;
    return 0;
}

void refs_stop(struct executor *ex) {
    if (!ex->refs_ready)
        return;
    pthread_mutex_lock(&ex->mu);
    ex->stopping = true;
    pthread_cond_broadcast(&ex->refs_cv);
    ex->refs_ready = false;
    pthread_mutex_unlock(&ex->mu);
    uint64_t one = 1;
    if (write(ex->refs_abort, &one, sizeof(one)) < 0) { /* a running ls-remote gives up */
    }
    for (int i = 0; i < REFS_WORKERS; i++)
        pthread_join(ex->refs_threads[i], NULL);
    while (ex->refs) {
        struct refs_entry *e = ex->refs;
        ex->refs = e->next;
        entry_free(e);
    }
    ex->n_refs = 0;
    pthread_cond_destroy(&ex->refs_cv);
    close(ex->refs_abort);
    ex->refs_abort = -1;
}
