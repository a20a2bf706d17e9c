/*
 * background.c — a small fixed pool for disk-heavy work that an HTTP handler must not wait for
 * (a seek's checkout writes a whole snapshot out: seconds on a large workspace). The handler
 * queues a job and answers from state; the job records its result where the next request
 * finds it. BG_WORKERS threads, at most BG_QUEUE_MAX jobs waiting: beyond that the caller is
 * told AH_E_UNAVAIL (answer 503 + Retry-After) rather than queueing without bound.
 */
#include <stdlib.h>

#include "executor.h"

#define BG_QUEUE_MAX 64

struct bg_job {
    struct bg_job *next;
    void (*fn)(void *arg, bool cancelled);
    void *arg;
};

static void *bg_main(void *p) {
    struct executor *ex = p;
    pthread_mutex_lock(&ex->mu);
    for (;;) {
        while (!ex->stopping && !ex->bg_head)
            pthread_cond_wait(&ex->bg_cv, &ex->mu);
        if (ex->stopping)
            break;
        struct bg_job *j = ex->bg_head;
        ex->bg_head = j->next;
        if (!ex->bg_head)
            ex->bg_tail = NULL;
        ex->bg_n--;
        pthread_mutex_unlock(&ex->mu);
        j->fn(j->arg, false);
        free(j);
        pthread_mutex_lock(&ex->mu);
    }
    pthread_mutex_unlock(&ex->mu);
    return NULL;
}

int exec_background(struct executor *ex, void (*fn)(void *arg, bool cancelled), void *arg) {
    struct bg_job *j = calloc(1, sizeof(*j));
    if (!j)
        return AH_E_NOMEM;
    j->fn = fn;
    j->arg = arg;
    pthread_mutex_lock(&ex->mu);
    if (!ex->bg_ready || ex->stopping || ex->bg_n >= BG_QUEUE_MAX) {
        pthread_mutex_unlock(&ex->mu);
        free(j);
        return AH_E_UNAVAIL;
    }
    if (ex->bg_tail)
        ex->bg_tail->next = j;
    else
        ex->bg_head = j;
    ex->bg_tail = j;
    ex->bg_n++;
    pthread_cond_signal(&ex->bg_cv);
    pthread_mutex_unlock(&ex->mu);
    return 0;
}

int background_start(struct executor *ex) {
    pthread_cond_init(&ex->bg_cv, NULL);
    for (int i = 0; i < BG_WORKERS; i++)
        if (pthread_create(&ex->bg_threads[i], NULL, bg_main, ex) != 0) {
            pthread_mutex_lock(&ex->mu);
            ex->stopping = true;
            pthread_cond_broadcast(&ex->bg_cv);
            pthread_mutex_unlock(&ex->mu);
            for (int k = 0; k < i; k++)
                pthread_join(ex->bg_threads[k], NULL);
            pthread_cond_destroy(&ex->bg_cv);
            return AH_E_NOMEM;
        }
    pthread_mutex_lock(&ex->mu);
    ex->bg_ready = true;
    pthread_mutex_unlock(&ex->mu);
    return 0;
}

void background_stop(struct executor *ex) {
    pthread_mutex_lock(&ex->mu);
    bool ready = ex->bg_ready;
    ex->bg_ready = false;
    ex->stopping = true;
    pthread_cond_broadcast(&ex->bg_cv);
    pthread_mutex_unlock(&ex->mu);
    if (!ready)
        return;
    for (int i = 0; i < BG_WORKERS; i++) /* a running job finishes (a checkout: bounded) */
        pthread_join(ex->bg_threads[i], NULL);
    while (ex->bg_head) { /* never ran: each is told so, and only frees its argument */
        struct bg_job *j = ex->bg_head;
        ex->bg_head = j->next;
        j->fn(j->arg, true);
        free(j);
    }
    ex->bg_tail = NULL;
    ex->bg_n = 0;
    pthread_cond_destroy(&ex->bg_cv);
}
