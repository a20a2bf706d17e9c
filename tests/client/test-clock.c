/*
 * test-clock.c — the clocks: virtual timers fire in deadline order at their own time, sleepers
 * wake when time is advanced past them, cancel works before firing and waits for a running
 * callback; the real clock fires timers on its thread; cancellation tokens wake sleepers.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/client/client_internal.h"

struct fired {
    ah_clock *clock;
    int64_t at[16];
    int ids[16];
    int n;
    pthread_mutex_t mu;
};

struct tag {
    struct fired *f;
    int id;
};

static void on_fire(void *ud) {
    struct tag *t = ud;
    pthread_mutex_lock(&t->f->mu);
    t->f->at[t->f->n] = ah_clock_now_ms(t->f->clock);
    t->f->ids[t->f->n++] = t->id;
    pthread_mutex_unlock(&t->f->mu);
}

static void test_virtual_timers_in_order(void **state) {
    ah_clock *c = NULL;
    assert_int_equal(ah_clock_new_virtual(1000, &c), 0);
    assert_true(ah_clock_is_virtual(c));
    assert_int_equal(ah_clock_now_ms(c), 1000);
    struct fired f = {.clock = c, .mu = PTHREAD_MUTEX_INITIALIZER};
    struct tag tags[5] = {{&f, 0}, {&f, 1}, {&f, 2}, {&f, 3}, {&f, 4}};
    uint64_t ids[5];
    assert_int_equal(ah_clock_timer_add(c, 1500, on_fire, &tags[0], &ids[0]), 0);
    assert_int_equal(ah_clock_timer_add(c, 1200, on_fire, &tags[1], &ids[1]), 0);
    assert_int_equal(ah_clock_timer_add(c, 1500, on_fire, &tags[2], &ids[2]), 0); /* same time */
    assert_int_equal(ah_clock_timer_add(c, 9000, on_fire, &tags[3], &ids[3]), 0);
    assert_int_equal(ah_clock_timer_add(c, 500, on_fire, &tags[4], &ids[4]), 0); /* past */
    assert_int_equal(ah_clock_timer_cancel(c, ids[3]), 0);
    assert_int_equal(ah_clock_timer_cancel(c, ids[3]), AH_E_NOTFOUND);
    assert_int_equal(ah_clock_advance(c, 0), 0); /* only the past one */
    assert_int_equal(f.n, 1);
    assert_int_equal(f.ids[0], 4);
    assert_int_equal(f.at[0], 1000);
    assert_int_equal(ah_clock_advance(c, 600), 0);
    assert_int_equal(f.n, 4);
    assert_int_equal(f.ids[1], 1);
    assert_int_equal(f.at[1], 1200); /* now is the timer's own deadline while it runs */
    assert_int_equal(f.ids[2], 0);
    assert_int_equal(f.ids[3], 2);
    assert_int_equal(f.at[3], 1500);
    assert_int_equal(ah_clock_now_ms(c), 1600);
    assert_int_equal(ah_clock_advance(c, 100000), 0);
    assert_int_equal(f.n, 4); /* the cancelled one never fires */
    assert_int_equal(ah_clock_advance(c, -1), AH_E_INVAL);
    ah_clock_free(c);
}

/* A timer that arms another from its callback (a chain), like the mock's wake-ups. */
struct chain {
    ah_clock *c;
    int left;
    int fired;
};

static void on_chain(void *ud) {
    struct chain *ch = ud;
    ch->fired++;
    if (--ch->left > 0)
        ah_clock_timer_add(ch->c, ah_clock_now_ms(ch->c) + 10, on_chain, ch, NULL);
}

static void test_virtual_chain(void **state) {
    ah_clock *c = NULL;
    assert_int_equal(ah_clock_new_virtual(0, &c), 0);
    struct chain ch = {c, 100, 0};
    ah_clock_timer_add(c, 10, on_chain, &ch, NULL);
    assert_int_equal(ah_clock_advance(c, 1000), 0); /* one advance runs the whole chain */
    assert_int_equal(ch.fired, 100);
    ah_clock_free(c);
}

struct sleeper {
    ah_clock *c;
    int64_t ms;
    int64_t woke_at;
};

static void *sleep_thread(void *arg) {
    struct sleeper *s = arg;
    ah_clock_sleep_ms(s->c, s->ms);
    s->woke_at = ah_clock_now_ms(s->c);
    return NULL;
}

static void test_virtual_sleep(void **state) {
    ah_clock *c = NULL;
    assert_int_equal(ah_clock_new_virtual(0, &c), 0);
    struct sleeper s = {c, 60000, -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sleep_thread, &s), 0);
    while (ah_clock_sleepers(c) != 1)
        usleep(100);
    assert_int_equal(ah_clock_advance(c, 59999), 0);
    usleep(10000);
    assert_int_equal(s.woke_at, -1); /* not yet */
    assert_int_equal(ah_clock_sleepers(c), 1);
    assert_int_equal(ah_clock_advance(c, 1), 0);
    pthread_join(t, NULL);
    assert_int_equal(s.woke_at, 60000);
    assert_int_equal(ah_clock_sleepers(c), 0);
    ah_clock_free(c);
}

/* cancel waits for a callback that is running on another thread. */
struct slow {
    volatile int started;
    volatile int finished;
};

static void on_slow(void *ud) {
    struct slow *s = ud;
    s->started = 1;
    usleep(100000);
    s->finished = 1;
}

struct advancer {
    ah_clock *c;
};

static void *advance_thread(void *arg) {
    struct advancer *a = arg;
    ah_clock_advance(a->c, 10);
    return NULL;
}

static void test_cancel_waits_for_running(void **state) {
    ah_clock *c = NULL;
    assert_int_equal(ah_clock_new_virtual(0, &c), 0);
    struct slow s = {0, 0};
    uint64_t id;
    ah_clock_timer_add(c, 5, on_slow, &s, &id);
    struct advancer a = {c};
    pthread_t t;
    pthread_create(&t, NULL, advance_thread, &a);
    while (!s.started)
        usleep(100);
    assert_int_equal(ah_clock_timer_cancel(c, id), AH_E_NOTFOUND);
    assert_int_equal(s.finished, 1); /* cancel returned only after the callback did */
    pthread_join(t, NULL);
    ah_clock_free(c);
}

static void on_flag(void *ud) {
    __atomic_store_n((int *)ud, 1, __ATOMIC_SEQ_CST);
}

static void test_real_clock(void **state) {
    ah_clock *c = NULL;
    assert_int_equal(ah_clock_new_real(&c), 0);
    assert_false(ah_clock_is_virtual(c));
    assert_int_equal(ah_clock_advance(c, 1), AH_E_INVAL);
    assert_int_equal(ah_clock_sleepers(c), -1);
    int64_t t0 = ah_clock_now_ms(c);
    assert_true(t0 > 1700000000000LL); /* wall-clock ms */
    int a = 0, b = 0;
    uint64_t ida, idb;
    assert_int_equal(ah_clock_timer_add(c, t0 + 50, on_flag, &a, &ida), 0);
    assert_int_equal(ah_clock_timer_add(c, t0 + 60000, on_flag, &b, &idb), 0);
    int64_t m0 = time_mono_ms();
    assert_int_equal(ah_clock_sleep_ms(c, 30), 0);
    assert_true(time_mono_ms() - m0 >= 30);
    while (!__atomic_load_n(&a, __ATOMIC_SEQ_CST) && time_mono_ms() - m0 < 5000)
        usleep(1000);
    assert_int_equal(a, 1);
    assert_true(time_mono_ms() - m0 >= 45);
    assert_int_equal(ah_clock_timer_cancel(c, idb), 0);
    ah_clock_free(c); /* joins the timer thread */
    assert_int_equal(b, 0);
}

static void *trigger_later(void *arg) {
    usleep(50000);
    ah_cancel_trigger(arg);
    return NULL;
}

static int hook_calls;
static void count_hook(void *ud) {
    __atomic_add_fetch(&hook_calls, 1, __ATOMIC_SEQ_CST);
}

static void test_cancel_token(void **state) {
    ah_cancel *k = NULL;
    assert_int_equal(ah_cancel_new(&k), 0);
    assert_false(ah_cancel_triggered(k));
    assert_int_equal(cancel_hook_add(k, count_hook, NULL), 0);
    pthread_t t;
    pthread_create(&t, NULL, trigger_later, k);
    int64_t m0 = time_mono_ms();
    assert_int_equal(cancel_sleep_ms(k, 10000), AH_E_CANCELED);
    assert_true(time_mono_ms() - m0 < 5000);
    pthread_join(t, NULL);
    assert_true(ah_cancel_triggered(k));
    ah_cancel_trigger(k); /* idempotent: hooks run once */
    assert_int_equal(hook_calls, 1);
    cancel_hook_remove(k, count_hook, NULL);
    assert_int_equal(cancel_sleep_ms(k, 10000), AH_E_CANCELED);
    assert_int_equal(cancel_sleep_ms(NULL, 5), 0);
    ah_cancel_free(k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_virtual_timers_in_order),
        cmocka_unit_test(test_virtual_chain),
        cmocka_unit_test(test_virtual_sleep),
        cmocka_unit_test(test_cancel_waits_for_running),
        cmocka_unit_test(test_real_clock),
        cmocka_unit_test(test_cancel_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
