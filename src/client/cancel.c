/*
 * cancel.c — cancellation tokens. A token is a flag behind a mutex plus a condition variable
 * (for cancel_sleep_ms) and a short list of hooks, so code blocked on something else (the
 * mock's condition variable) can be woken too. Hooks run on the triggering thread after the
 * token's lock is released, so a hook may take its owner's lock; cancel_hook_remove waits
 * until no hook is running, so an owner may go away right after removing its hook (it must not
 * hold the lock its hook takes while it removes it).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "client_internal.h"

#define CANCEL_MAX_HOOKS 8

struct hook {
    cancel_hook_fn fn;
    void *userdata;
};

struct ah_cancel {
    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    bool raised;
    struct hook hooks[CANCEL_MAX_HOOKS];
    size_t n_hooks;
    int running; /* hooks being called by ah_cancel_trigger right now */
};

int ah_cancel_new(ah_cancel **ret) {
    if (!ret)
        return AH_E_INVAL;
    ah_cancel *k = calloc(1, sizeof(*k));
    if (!k)
        return AH_E_NOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int r = pthread_cond_init(&k->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (r != 0) {
        free(k);
        return AH_E_NOMEM;
    }
    pthread_mutex_init(&k->mu, NULL);
    *ret = k;
    return 0;
}

void ah_cancel_trigger(ah_cancel *k) {
    if (!k)
        return;
    struct hook hooks[CANCEL_MAX_HOOKS];
    size_t n = 0;
    bool first = false;
    pthread_mutex_lock(&k->mu);
    if (!k->raised) {
        first = k->raised = true;
        n = k->n_hooks;
        memcpy(hooks, k->hooks, n * sizeof(hooks[0]));
        k->running++;
    }
    pthread_cond_broadcast(&k->cond);
    pthread_mutex_unlock(&k->mu);
    if (!first)
        return;
    /* Outside the lock: a hook takes its owner's lock. */
    for (size_t i = 0; i < n; i++)
        hooks[i].fn(hooks[i].userdata);
    pthread_mutex_lock(&k->mu);
    k->running--;
    pthread_cond_broadcast(&k->cond);
    pthread_mutex_unlock(&k->mu);
}

bool ah_cancel_triggered(ah_cancel *k) {
    if (!k)
        return false;
    pthread_mutex_lock(&k->mu);
    bool r = k->raised;
    pthread_mutex_unlock(&k->mu);
    return r;
}

void ah_cancel_free(ah_cancel *k) {
    if (!k)
        return;
    pthread_cond_destroy(&k->cond);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

int cancel_hook_add(ah_cancel *k, cancel_hook_fn fn, void *userdata) {
    if (!k)
        return 0;
    pthread_mutex_lock(&k->mu);
    int rc = 0;
    if (k->n_hooks == CANCEL_MAX_HOOKS)
        rc = AH_E_TOOLARGE;
    else
        k->hooks[k->n_hooks++] = (struct hook){fn, userdata};
    pthread_mutex_unlock(&k->mu);
    return rc;
}

void cancel_hook_remove(ah_cancel *k, cancel_hook_fn fn, void *userdata) {
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < k->n_hooks; i++) {
        if (k->hooks[i].fn == fn && k->hooks[i].userdata == userdata) {
            k->hooks[i] = k->hooks[--k->n_hooks];
            break;
        }
    }
    while (k->running > 0)
        pthread_cond_wait(&k->cond, &k->mu);
    pthread_mutex_unlock(&k->mu);
}

int cancel_sleep_ms(ah_cancel *k, int64_t ms) {
    if (ms < 0)
        ms = 0;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (!k) {
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
            ;
        return 0;
    }
    pthread_mutex_lock(&k->mu);
    while (!k->raised) {
        if (pthread_cond_timedwait(&k->cond, &k->mu, &until) == ETIMEDOUT)
            break;
    }
    bool raised = k->raised;
    pthread_mutex_unlock(&k->mu);
    return raised ? AH_E_CANCELED : 0;
}
