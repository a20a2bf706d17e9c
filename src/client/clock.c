/*
 * clock.c — the ah_clock wrapper and its two implementations, real and virtual.
 *
 * Both keep pending timers in one list sorted by (deadline, id), so timers due at the same time
 * fire in the order they were added. A timer is removed from the list before its callback runs,
 * and the callback runs with no clock lock held; `running` remembers which timer is being run so
 * that timer_cancel can wait for it (unless it is called from that very callback).
 *
 * Virtual: now only moves in ah_clock_advance, which fires due timers one by one on the calling
 * thread (setting now to each one's deadline first), then sets now to the target and wakes the
 * sleepers. Real: now is CLOCK_REALTIME and deadlines are in that clock; one helper thread
 * (started with the first timer) fires a timer once CLOCK_REALTIME has reached its deadline (never
 * earlier, so whoever it wakes sees `now` past the deadline), and sleeps on CLOCK_MONOTONIC in
 * between.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "client_internal.h"

struct ah_clock {
    const struct ah_clock_ops *ops;
    void *impl;
};

struct timer {
    uint64_t id;
    int64_t deadline;
    ah_timer_fn fn;
    void *userdata;
    struct timer *next;
};

/* Shared by both implementations. */
struct timers {
    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; signalled on every change */
    struct timer *head;
    uint64_t next_id;
    uint64_t running; /* id of the timer whose callback runs now, 0 if none */
    pthread_t runner;
};

static int timers_init(struct timers *t) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int r = pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (r != 0)
        return AH_E_NOMEM;
    pthread_mutex_init(&t->mu, NULL);
    t->next_id = 1;
    return 0;
}

static void timers_destroy(struct timers *t) {
    while (t->head) {
        struct timer *n = t->head->next;
        free(t->head);
        t->head = n;
    }
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->mu);
}

/* Inserts under the lock. */
static int timers_add_locked(struct timers *t, int64_t deadline, ah_timer_fn fn, void *ud,
                             uint64_t *ret_id) {
    struct timer *n = calloc(1, sizeof(*n));
    if (!n)
        return AH_E_NOMEM;
    n->id = t->next_id++;
    n->deadline = deadline;
    n->fn = fn;
    n->userdata = ud;
    struct timer **pp = &t->head;
    while (*pp && (*pp)->deadline <= deadline)
        pp = &(*pp)->next;
    n->next = *pp;
    *pp = n;
    if (ret_id)
        *ret_id = n->id;
    pthread_cond_broadcast(&t->cond);
    return 0;
}

static int timers_cancel(struct timers *t, uint64_t id) {
    pthread_mutex_lock(&t->mu);
    for (struct timer **pp = &t->head; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            struct timer *n = *pp;
            *pp = n->next;
            free(n);
            pthread_cond_broadcast(&t->cond);
            pthread_mutex_unlock(&t->mu);
            return 0;
        }
    }
    while (t->running == id && !pthread_equal(t->runner, pthread_self()))
        pthread_cond_wait(&t->cond, &t->mu);
    pthread_mutex_unlock(&t->mu);
    return AH_E_NOTFOUND;
}

/* Pops the first timer due at `limit` or earlier and marks it running (under the lock). */
static struct timer *timers_pop_due_locked(struct timers *t, int64_t limit) {
    struct timer *n = t->head;
    if (!n || n->deadline > limit)
        return NULL;
    t->head = n->next;
    t->running = n->id;
    t->runner = pthread_self();
    return n;
}

/* Runs a popped timer without the lock, then clears `running` (called and returns locked). */
static void timers_run_locked(struct timers *t, struct timer *n) {
    pthread_mutex_unlock(&t->mu);
    n->fn(n->userdata);
    free(n);
    pthread_mutex_lock(&t->mu);
    t->running = 0;
    pthread_cond_broadcast(&t->cond);
}

static struct timespec mono_abs(int64_t mono_ms) {
    struct timespec ts = {.tv_sec = mono_ms / 1000, .tv_nsec = (mono_ms % 1000) * 1000000L};
    return ts;
}

/* ---- virtual ----------------------------------------------------------------------------------
 */

struct vclock {
    struct timers t;
    int64_t now;
    int sleepers;
};

static int64_t v_now(void *impl) {
    struct vclock *v = impl;
    pthread_mutex_lock(&v->t.mu);
    int64_t now = v->now;
    pthread_mutex_unlock(&v->t.mu);
    return now;
}

static int v_sleep(void *impl, int64_t ms) {
    struct vclock *v = impl;
    pthread_mutex_lock(&v->t.mu);
    int64_t until = v->now + (ms > 0 ? ms : 0);
    v->sleepers++;
    pthread_cond_broadcast(&v->t.cond);
    while (v->now < until)
        pthread_cond_wait(&v->t.cond, &v->t.mu);
    v->sleepers--;
    pthread_mutex_unlock(&v->t.mu);
    return 0;
}

static int v_timer_add(void *impl, int64_t deadline, ah_timer_fn fn, void *ud, uint64_t *ret_id) {
    struct vclock *v = impl;
    pthread_mutex_lock(&v->t.mu);
    int rc = timers_add_locked(&v->t, deadline, fn, ud, ret_id);
    pthread_mutex_unlock(&v->t.mu);
    return rc;
}

static int v_timer_cancel(void *impl, uint64_t id) {
    return timers_cancel(&((struct vclock *)impl)->t, id);
}

static void v_destroy(void *impl) {
    struct vclock *v = impl;
    timers_destroy(&v->t);
    free(v);
}

static const struct ah_clock_ops virtual_ops = {
    .now_ms = v_now,
    .sleep_ms = v_sleep,
    .timer_add = v_timer_add,
    .timer_cancel = v_timer_cancel,
    .destroy = v_destroy,
};

int ah_clock_new_virtual(int64_t start_ms, ah_clock **ret) {
    if (!ret)
        return AH_E_INVAL;
    struct vclock *v = calloc(1, sizeof(*v));
    if (!v)
        return AH_E_NOMEM;
    if (timers_init(&v->t) < 0) {
        free(v);
        return AH_E_NOMEM;
    }
    v->now = start_ms;
    int rc = ah_clock_new(&virtual_ops, v, ret);
    if (rc < 0)
        v_destroy(v);
    return rc;
}

int ah_clock_advance(ah_clock *c, int64_t ms) {
    if (!c || c->ops != &virtual_ops || ms < 0)
        return AH_E_INVAL;
    struct vclock *v = c->impl;
    pthread_mutex_lock(&v->t.mu);
    int64_t target = v->now + ms;
    struct timer *n;
    while ((n = timers_pop_due_locked(&v->t, target))) {
        if (n->deadline > v->now) {
            v->now = n->deadline;
            pthread_cond_broadcast(&v->t.cond); /* sleepers due by now wake in order */
        }
        timers_run_locked(&v->t, n);
    }
    if (target > v->now)
        v->now = target;
    pthread_cond_broadcast(&v->t.cond);
    pthread_mutex_unlock(&v->t.mu);
    return 0;
}

int ah_clock_sleepers(ah_clock *c) {
    if (!c || c->ops != &virtual_ops)
        return -1;
    struct vclock *v = c->impl;
    pthread_mutex_lock(&v->t.mu);
    int n = v->sleepers;
    pthread_mutex_unlock(&v->t.mu);
    return n;
}

bool ah_clock_is_virtual(const ah_clock *c) {
    return c && c->ops == &virtual_ops;
}

/* ---- real -------------------------------------------------------------------------------------
 */

struct rclock {
    struct timers t; /* deadlines are CLOCK_REALTIME ms */
    pthread_t thread;
    bool started;
    bool stop;
};

static int64_t r_now(void *impl) {
    return time_now_ms();
}

static int r_sleep(void *impl, int64_t ms) {
    return cancel_sleep_ms(NULL, ms);
}

static void *r_thread(void *arg) {
    struct rclock *r = arg;
    pthread_mutex_lock(&r->t.mu);
    while (!r->stop) {
        struct timer *n = timers_pop_due_locked(&r->t, time_now_ms());
        if (n) {
            timers_run_locked(&r->t, n);
            continue;
        }
        if (r->t.head) {
            /* +1: the two clocks are read separately and truncated to ms; waking a little
             * late is fine, early only costs another round. */
            int64_t wait = r->t.head->deadline - time_now_ms() + 1;
            struct timespec until = mono_abs(time_mono_ms() + (wait > 0 ? wait : 1));
            pthread_cond_timedwait(&r->t.cond, &r->t.mu, &until);
        } else {
            pthread_cond_wait(&r->t.cond, &r->t.mu);
        }
    }
    pthread_mutex_unlock(&r->t.mu);
    return NULL;
}

static int r_timer_add(void *impl, int64_t deadline, ah_timer_fn fn, void *ud, uint64_t *ret_id) {
    struct rclock *r = impl;
    pthread_mutex_lock(&r->t.mu);
    int rc = 0;
    if (!r->started) {
        if (pthread_create(&r->thread, NULL, r_thread, r) != 0)
            rc = AH_E_NOMEM;
        else
            r->started = true;
    }
    if (rc == 0)
        rc = timers_add_locked(&r->t, deadline, fn, ud, ret_id);
    pthread_mutex_unlock(&r->t.mu);
    return rc;
}

static int r_timer_cancel(void *impl, uint64_t id) {
    return timers_cancel(&((struct rclock *)impl)->t, id);
}

static void r_destroy(void *impl) {
    struct rclock *r = impl;
    pthread_mutex_lock(&r->t.mu);
    r->stop = true;
    pthread_cond_broadcast(&r->t.cond);
    bool started = r->started;
    pthread_mutex_unlock(&r->t.mu);
    if (started)
        pthread_join(r->thread, NULL);
    timers_destroy(&r->t);
    free(r);
}

static const struct ah_clock_ops real_ops = {
    .now_ms = r_now,
    .sleep_ms = r_sleep,
    .timer_add = r_timer_add,
    .timer_cancel = r_timer_cancel,
    .destroy = r_destroy,
};

int ah_clock_new_real(ah_clock **ret) {
    if (!ret)
        return AH_E_INVAL;
    struct rclock *r = calloc(1, sizeof(*r));
    if (!r)
        return AH_E_NOMEM;
    if (timers_init(&r->t) < 0) {
        free(r);
        return AH_E_NOMEM;
    }
    int rc = ah_clock_new(&real_ops, r, ret);
    if (rc < 0)
        r_destroy(r);
    return rc;
}

/* ---- the wrapper ------------------------------------------------------------------------------
 */

int ah_clock_new(const struct ah_clock_ops *ops, void *impl, ah_clock **ret) {
    if (!ops || !ret || !ops->now_ms || !ops->sleep_ms || !ops->timer_add || !ops->timer_cancel ||
        !ops->destroy)
        return AH_E_INVAL;
    ah_clock *c = calloc(1, sizeof(*c));
    if (!c)
        return AH_E_NOMEM;
    c->ops = ops;
    c->impl = impl;
    *ret = c;
    return 0;
}

void ah_clock_free(ah_clock *c) {
    if (!c)
        return;
    c->ops->destroy(c->impl);
    free(c);
}

int64_t ah_clock_now_ms(ah_clock *c) {
    return c ? c->ops->now_ms(c->impl) : time_now_ms();
}

int ah_clock_sleep_ms(ah_clock *c, int64_t ms) {
    if (!c || ms < 0)
        return AH_E_INVAL;
    return c->ops->sleep_ms(c->impl, ms);
}

int ah_clock_timer_add(ah_clock *c, int64_t deadline_ms, ah_timer_fn fn, void *userdata,
                       uint64_t *ret_id) {
    if (!c || !fn)
        return AH_E_INVAL;
    return c->ops->timer_add(c->impl, deadline_ms, fn, userdata, ret_id);
}

int ah_clock_timer_cancel(ah_clock *c, uint64_t id) {
    if (!c)
        return AH_E_INVAL;
    return c->ops->timer_cancel(c->impl, id);
}
