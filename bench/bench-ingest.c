/*
 * bench-ingest — how many events per second become durable (one commit per batch, D9), against
 * the baseline of one transaction per event, measured in the same run on the same disk: on
 * SQLite and, when AH_TEST_PG_URL names a PostgreSQL database, on PostgreSQL too, side by side.
 *
 *   bench-ingest [EVENTS] [SESSIONS] [DIR]
 *   tests/pg/pgserver.py -- bench-ingest [EVENTS] [SESSIONS]     (a throw-away PostgreSQL 15)
 *
 * Prints numbers; never fails on speed. The SQLite database lives in DIR (default: a temp
 * directory), with synchronous=FULL like the server; PostgreSQL commits with its defaults
 * (fsync=on, synchronous_commit=on), so both numbers are durable.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/bus/bus.h"

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long left;
};

static void done(void *arg, const struct store_op *op) {
    struct waiter *w = arg;
    if (op->result < 0)
        fprintf(stderr, "op failed: %s\n", ah_strerror(op->result));
    pthread_mutex_lock(&w->mu);
    if (--w->left == 0)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static json_t *payload(long i) {
    char msg[64];
    snprintf(msg, sizeof(msg), "benchmark event %ld with some text", i);
    return json_pack("{s:s, s:s, s:s, s:n}", "type", "log", "level", "info", "message", msg,
                     "tool_execution_id");
}

struct result {
    double base_rate, rate;
    long base_n;
    struct bus_stats stats;
};

static int measure(const char *url, long n, int sessions, struct result *ret) {
    struct store *st = NULL;
    struct ah_problem p = {0};
    if (store_open(url, &st, &p) < 0) {
        fprintf(stderr, "store: %s\n", p.detail);
        return 1;
    }
    char task[ULID_LEN + 1];
    ulid_new(task);
    struct session_new *ss = calloc((size_t)sessions, sizeof(*ss));
    if (!ss)
        return 1;
    for (int i = 0; i < sessions; i++) {
        ulid_new(ss[i].id);
        ss[i].agent_type = "scripted";
        ss[i].agent_version = "latest";
        ss[i].instance = i;
    }
    json_t *req = json_pack("{s:[{s:s,s:s}], s:{s:s}, s:{s:s}, s:[{s:s,s:s,s:i}]}", "prompt",
                            "type", "text", "text", "bench", "repo", "mode", "none", "runtime",
                            "type", "local", "agents", "type", "scripted", "version", "latest",
                            "count", sessions);
    store_task_create(st, "default", task, NULL, req, ss, (size_t)sessions, time_now_ms());
    json_decref(req);

    /* baseline: one transaction (one durable commit) per event */
    long base_n = n / 20 > 2000 ? 2000 : n / 20;
    int64_t t0 = time_mono_ms();
    for (long i = 0; i < base_n; i++) {
        json_t *ev = payload(i);
        struct store_op op = {.kind = STORE_OP_EVENT, .tenant = "default",
                              .session_id = ss[i % sessions].id, .payload = ev};
        store_apply(st, &op, 1);
        free(op.stored);
        json_decref(ev);
    }
    double base_s = (double)(time_mono_ms() - t0) / 1000.0;
    ret->base_n = base_n;
    ret->base_rate = base_n / (base_s > 0 ? base_s : 1e-9);

    /* the bus writer: producers queue, one thread commits whatever is queued per commit */
    struct bus *bus = NULL;
    bus_new(st, &bus);
    struct waiter w = {.left = n};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    t0 = time_mono_ms();
    for (long i = 0; i < n; i++) {
        json_t *ev = payload(i);
        struct store_op op = {.kind = STORE_OP_EVENT, .tenant = "default",
                              .session_id = ss[i % sessions].id, .payload = ev};
        bus_submit(bus, &op, done, &w);
        json_decref(ev);
    }
    pthread_mutex_lock(&w.mu);
    while (w.left > 0)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    double bus_s = (double)(time_mono_ms() - t0) / 1000.0;
    bus_get_stats(bus, &ret->stats);
    ret->rate = n / (bus_s > 0 ? bus_s : 1e-9);
    bus_free(bus);
    store_close(st);
    free(ss);
    return 0;
}

static void print_result(const char *name, const struct result *r) {
    printf("  %-10s baseline, one transaction per event: %8.0f events/s (%ld events)\n", name,
           r->base_rate, r->base_n);
    printf("  %-10s bus writer, batched:                 %8.0f events/s (%llu batches, %.1f "
           "events/batch)\n",
           name, r->rate, (unsigned long long)r->stats.batches,
           r->stats.batches ? (double)r->stats.ops / (double)r->stats.batches : 0.0);
    printf("  %-10s ratio: %.1fx\n", name, r->rate / r->base_rate);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
    int sessions = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 1;
    if (n < 1 || sessions < 1) {
        fprintf(stderr, "usage: bench-ingest [EVENTS] [SESSIONS] [DIR]\n");
        return 2;
    }
    char dir[256] = "/tmp/ah-bench-XXXXXX";
    if (argc > 3)
        snprintf(dir, sizeof(dir), "%s", argv[3]);
    else if (!mkdtemp(dir))
        return 1;
    char path[300];
    snprintf(path, sizeof(path), "%s/bench.db", dir);
    const char *pg = getenv("AH_TEST_PG_URL");
    struct result lite = {0}, post = {0};
    int rc = measure(path, n, sessions, &lite);
    if (rc == 0 && pg && *pg)
        rc = measure(pg, n, sessions, &post);
    if (rc == 0) {
        printf("ingest: %ld events over %d session(s), durable (SQLite synchronous=FULL%s)\n", n,
               sessions, pg && *pg ? "; PostgreSQL fsync, synchronous_commit=on" : "");
        print_result("sqlite", &lite);
        if (pg && *pg) {
            print_result("postgres", &post);
            printf("  durable ingest events/s: sqlite %.0f, postgres %.0f\n", lite.rate,
                   post.rate);
        }
    }
    if (argc <= 3) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            return 1;
    }
    return rc;
}
