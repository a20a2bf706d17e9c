/*
 * bus.h — the event path after the producers: one batching writer that makes events durable and
 * numbers them (D9), and the fan-out that hands them to live subscribers (SSE, D10/D11).
 *
 * Writer: every event and every session transition is submitted here. One thread applies what
 * is queued in one store transaction (one fsync per batch, however many events), then publishes
 * the stored events in seq order and runs the submitters' completion callbacks. An event is
 * therefore acknowledged (to a recorder, to a handler) only once it is durable.
 *
 * Fan-out: a channel per watched session keeps a bounded ring of recent events, each immutable
 * and refcounted. A subscriber holds only a cursor (the last seq it was given) and a wake
 * callback; a subscriber behind the ring reads the gap from the store. Memory per subscriber is
 * constant, publishing never waits for a subscriber, and a subscriber that stops reading misses
 * nothing when it reads again.
 */
#ifndef AH_BUS_H
#define AH_BUS_H

#include "../store/store.h"

struct bus;

/* Starts the writer thread. *ret owns it; bus_free drains the queue and stops it. */
int bus_new(struct store *st, struct bus **ret);
void bus_free(struct bus *b); /* NULL-safe; every queued op is applied first */

/* ---- producers ------------------------------------------------------------------------------- */

/* Runs on the writer thread after the op's batch committed (and its event was published). The
 * op carries the results (result, seq, status_before); op->stored is already freed. */
typedef void (*bus_done_fn)(void *arg, const struct store_op *op);

/* Queues a copy of op (strings copied, JSON referenced). `done` may be NULL. Returns 0, or
 * AH_E_NOMEM / AH_E_UNAVAIL (shutting down) — then done is never called. Thread-safe. */
int bus_submit(struct bus *b, const struct store_op *op, bus_done_fn done, void *arg);
/* Queues op and waits until it is applied; the results are written back into *op. Returns
 * op->result (0, AH_E_CONFLICT, AH_E_NOTFOUND, …) or a submit/database error. */
int bus_submit_wait(struct bus *b, struct store_op *op);

/* ---- subscribers ----------------------------------------------------------------------------- */

struct bus_event {
    int refs;
    int64_t seq;
    bool terminal;     /* a status event with a terminal status: the last of its session */
    char type[32];
    const char *json; /* the event as served: len bytes inside the frame, followed there by
                         "\n\n" and a NUL, so a JSON parser may read it as a string */
    size_t len;
    size_t frame_len;
    char frame[]; /* the event as an SSE frame (D11: id, event, data lines), formatted once for
                     every subscriber and stored once: the json is its data line */
};
void bus_event_ref(struct bus_event *e);
void bus_event_unref(struct bus_event *e); /* NULL-safe */

struct bus_sub;
/* Subscribes to a session's events with seq > after. `wake(arg)` is called (from the writer
 * thread, under the channel lock: keep it short, never call back into the bus) whenever new
 * events are published. */
int bus_subscribe(struct bus *b, const char *tenant, const char *session_id, int64_t after,
                  void (*wake)(void *arg), void *arg, struct bus_sub **ret);
/* The next events after the cursor, in order, at most max (each holds a reference for the
 * caller). Reads the store when the ring no longer has them. Returns the count (0 when there
 * is nothing new yet) and advances the cursor, or a negative AH_E_*. Never blocks on the writer.
 * Called by one thread at a time per subscriber. */
int bus_next(struct bus_sub *s, struct bus_event **out, size_t max);
/* For a subscriber that only needs to know whether its session has ended (the PTY stream):
 * jumps the cursor to the newest event in the ring, since nothing before it can be the
 * terminal one, so a slow reader never replays its gap from the store for nothing. With an
 * empty ring it reads what the store has, as bus_next. 1 ended, 0 not yet, or a negative AH_E_*. */
int bus_sub_ended(struct bus_sub *s);
int64_t bus_cursor(const struct bus_sub *s);
/* Stops wakes and frees the subscriber. After it returns, wake is never called again. */
void bus_unsubscribe(struct bus_sub *s); /* NULL-safe */

/* Counters for the benchmarks (bench/) and tests; no endpoint serves them yet. */
struct bus_stats {
    uint64_t batches, ops, published, store_reads;
    unsigned channels, subscribers;
};
void bus_get_stats(struct bus *b, struct bus_stats *ret);

#endif
