/*
 * ah/clock.h — time as a dependency: "now", sleeping and one-shot timers behind one interface,
 * so code that waits (the mock task manager, back-off loops) can run on a virtual clock that a
 * test moves by hand. A 10-minute scenario then takes milliseconds of wall time.
 *
 * Two implementations come with the library:
 *   - real:    now = CLOCK_REALTIME in ms since the epoch; sleeps and timers use the monotonic
 *              clock; timer callbacks run on one helper thread, started on the first timer.
 *   - virtual: now starts at a given value and moves only in ah_clock_advance; sleepers wake
 *              and due timers fire (in deadline order, `now` set to each deadline as it fires)
 *              on the advancing thread.
 * Anyone may plug a third one in with ah_clock_new (a struct of function pointers).
 *
 * Threading: every function is thread-safe. Timer callbacks run without any clock lock held,
 * so they may call back into the clock (add or cancel timers).
 */
#ifndef AH_CLOCK_H
#define AH_CLOCK_H

#include <ah/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ah_clock ah_clock;

/* A timer callback; runs once, on the clock's timer thread (real) or the thread calling
 * ah_clock_advance (virtual). */
typedef void (*ah_timer_fn)(void *userdata);

/* The interface a clock implements. Every member is required. */
struct ah_clock_ops {
    int64_t (*now_ms)(void *impl);
    /* Blocks until now ≥ (now at the call) + ms. 0, or a negative AH_E_*. */
    int (*sleep_ms)(void *impl, int64_t ms);
    /* Arms a one-shot timer at absolute time deadline_ms (a deadline in the past fires as soon
     * as the clock can: real clock at once, virtual clock on the next advance). */
    int (*timer_add)(void *impl, int64_t deadline_ms, ah_timer_fn fn, void *userdata,
                     uint64_t *ret_id);
    /* Disarms a timer. 0 when it was pending, AH_E_NOTFOUND when it already fired (or never
     * existed). When its callback is running on another thread, waits until it returned. */
    int (*timer_cancel)(void *impl, uint64_t id);
    /* Frees impl; pending timers are dropped without running. */
    void (*destroy)(void *impl);
};

/* Wraps a custom implementation; impl is taken (destroyed by ah_clock_free). */
int ah_clock_new(const struct ah_clock_ops *ops, void *impl, ah_clock **ret);
/* The real clock. */
int ah_clock_new_real(ah_clock **ret);
/* A virtual clock whose now is start_ms (ms since the epoch, e.g. 1735689600000 for
 * 2025-01-01T00:00:00Z). */
int ah_clock_new_virtual(int64_t start_ms, ah_clock **ret);
/* Frees the clock. No thread may be sleeping on it and it must not be called from one of its
 * timer callbacks; pending timers are dropped. NULL-safe. */
void ah_clock_free(ah_clock *c);

/* Now, in ms since the epoch (the clock's idea of it). */
int64_t ah_clock_now_ms(ah_clock *c);
/* Blocks the calling thread for ms of the clock's time (a virtual clock: until another thread
 * advances it far enough). 0, or AH_E_INVAL. */
int ah_clock_sleep_ms(ah_clock *c, int64_t ms);
/* Arms a one-shot timer at deadline_ms; ret_id (nullable) gets its id for cancelling. fn runs
 * once, never after a successful ah_clock_timer_cancel. 0, AH_E_INVAL or AH_E_NOMEM. */
int ah_clock_timer_add(ah_clock *c, int64_t deadline_ms, ah_timer_fn fn, void *userdata,
                       uint64_t *ret_id);
/* Disarms a timer: 0 when it had not fired; AH_E_NOTFOUND when it fired already (if its
 * callback is running on another thread, returns only after it finished). */
int ah_clock_timer_cancel(ah_clock *c, uint64_t id);

/* Virtual clocks only: moves now forward by ms (≥ 0), firing due timers in order and waking
 * sleepers. AH_E_INVAL for other clocks or a negative ms. */
int ah_clock_advance(ah_clock *c, int64_t ms);
/* Virtual clocks only: threads blocked in ah_clock_sleep_ms right now (-1 for other clocks).
 * Lets a test wait until a worker is parked before it advances time. */
int ah_clock_sleepers(ah_clock *c);
/* True for clocks made by ah_clock_new_virtual. */
bool ah_clock_is_virtual(const ah_clock *c);

#ifdef __cplusplus
}
#endif
#endif
