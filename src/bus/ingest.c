/*
 * ingest.c — the batching writer. Producers queue ops; one thread takes everything queued (up
 * to BUS_BATCH_MAX), applies it with one store_apply (one transaction, one fsync), publishes the
 * stored events, then completes the ops. While a batch is being written, new ops pile up and
 * form the next batch: under load, batches grow by themselves and the fsync cost per event
 * falls, without any timer adding latency when the load is light.
 */
#include <stdio.h>
#include <string.h>

#include "../obs/obs.h"
#include "internal.h"

static struct obs_family *m_events, *m_batch_size, *m_batch_secs, *m_batch_failed;
__attribute__((constructor)) static void ingest_metrics(void) {
    static const double sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
    static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                  0.5,    1,     2.5};
    m_events = obs_register1("ah_events_ingested_total", "Session events durably stored",
                             OBS_COUNTER, NULL, 0);
    m_batch_size = obs_register1("ah_store_batch_ops", "Operations per write batch (one "
                                 "transaction, one fsync)", OBS_HISTOGRAM, sizes,
                                 sizeof(sizes) / sizeof(*sizes));
    m_batch_secs = obs_register1("ah_store_batch_commit_seconds",
                                 "Time to apply and commit one write batch", OBS_HISTOGRAM, secs,
                                 sizeof(secs) / sizeof(*secs));
    m_batch_failed = obs_register1("ah_store_batch_failures_total",
                                   "Write batches the store refused as a whole", OBS_COUNTER,
                                   NULL, 0);
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    struct store_op result;
};

struct ingest_item {
    struct ingest_item *next;
    struct store_op op; /* owns: tenant, session_id, error (strdup), payload, changes (ref);
                           op.traceparent is NULL once queued (see link) */
    bus_done_fn done;
    void *arg;
    struct waiter *waiter;
    struct obs_link link; /* D48: the span it is written for; trace_id "" when none */
};

static void item_free(struct ingest_item *it) {
    free((char *)it->op.tenant);
    free((char *)it->op.session_id);
    free((char *)it->op.error);
    json_decref(it->op.payload);
    json_decref(it->op.changes);
    free(it);
}

static void complete(struct ingest_item *it) {
    if (it->done)
        it->done(it->arg, &it->op);
    if (it->waiter) {
        struct waiter *w = it->waiter;
        pthread_mutex_lock(&w->mu);
        w->result = it->op;
        w->done = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

/* ---- D50: no frame stored past one that failed ----------------------------------------------
 *
 * A recorder's frames carry increasing rseq, and both the store (which keeps the highest rseq
 * stored as the recorder's acknowledged point and takes any frame at or below it for a repeat)
 * and the recorder (an ack of N drops everything up to N) count on them being stored in order.
 * When a batch fails (a full or failing disk) its frames are not stored, but frames of the same
 * recorder already queued behind it would be, as soon as the disk works again: the earlier ones
 * would then be dropped as repeats, or by the recorder on the later ack. So once a frame of a
 * session fails, every later frame of that session is refused unstored (and so unacknowledged,
 * which makes the supervisor drop the connection) until the recorder resends from the failed
 * frame on: a frame at or below the mark clears it. */

struct ingest_mark {
    char session_id[ULID_LEN + 1];
    int64_t rseq;
};

static bool db_error(int r) { /* what on_event_done (exec) answers by dropping the connection */
    return r < 0 && r != AH_E_EXISTS && r != AH_E_GONE && r != AH_E_NOTFOUND &&
           r != AH_E_CONFLICT;
}

static struct ingest_mark *mark_find(struct bus *b, const char *sid) {
    for (size_t i = 0; i < b->n_marks; i++)
        if (strcmp(b->marks[i].session_id, sid) == 0)
            return &b->marks[i];
    return NULL;
}

static void mark_set(struct bus *b, const char *sid, int64_t rseq) {
    struct ingest_mark *m = mark_find(b, sid);
    if (m) {
        if (rseq < m->rseq)
            m->rseq = rseq;
        return;
    }
    if (strlen(sid) > ULID_LEN)
        return;
    if (b->n_marks == b->cap_marks) {
        size_t cap = b->cap_marks ? b->cap_marks * 2 : 16;
        struct ingest_mark *n = realloc(b->marks, cap * sizeof(*n));
        if (!n)
            return; /* out of memory: the store's own repeat check is all that is left */
        b->marks = n;
        b->cap_marks = cap;
    }
    m = &b->marks[b->n_marks++];
    snprintf(m->session_id, sizeof(m->session_id), "%s", sid);
    m->rseq = rseq;
}

/* False when op must be refused: a later frame of a session whose earlier frame failed. */
static bool mark_admits(struct bus *b, const struct store_op *op) {
    if (op->rseq <= 0 || !op->session_id || b->n_marks == 0)
        return true;
    struct ingest_mark *m = mark_find(b, op->session_id);
    if (!m)
        return true;
    if (op->rseq > m->rseq)
        return false;
    *m = b->marks[--b->n_marks]; /* the resend has begun */
    return true;
}

/* ---- D48: the span of a batch ------------------------------------------------------------------
 *
 * A batch commits writes of many sessions, so it belongs to none of their traces: each batch is
 * the root span of a trace of its own ("store batch"), with a link to the span each of its
 * writes was made for (the request that paused a session, the session whose recorder sent the
 * events), as many distinct ones as a span carries, and the number of ops, stored events and
 * distinct sessions. Only built while span export is on. */

#define BATCH_SESSION_SLOTS 2048 /* a power of two above BUS_BATCH_MAX */

static size_t distinct_sessions(const struct store_op *ops, size_t m) {
    const char *seen[BATCH_SESSION_SLOTS] = {0};
    size_t n = 0;
    for (size_t k = 0; k < m; k++) {
        const char *id = ops[k].session_id;
        if (!id)
            continue;
        uint64_t h = 1469598103934665603ULL;
        for (const char *c = id; *c; c++)
            h = (h ^ (unsigned char)*c) * 1099511628211ULL;
        size_t i = (size_t)h & (BATCH_SESSION_SLOTS - 1);
        while (seen[i] && strcmp(seen[i], id) != 0)
            i = (i + 1) & (BATCH_SESSION_SLOTS - 1);
        if (!seen[i]) {
            seen[i] = id;
            n++;
        }
    }
    return n;
}

static void batch_span(struct ingest_item *const *items, const size_t *idx,
                       const struct store_op *ops, size_t m, size_t stored, int64_t start_ns,
                       bool failed) {
    struct obs_span s = {.name = "store batch", .kind = 1, .start_ns = start_ns,
                         .end_ns = obs_wall_ns(), .error = failed};
    if (obs_trace_start(NULL, &s.trace) < 0)
        return;
    for (size_t k = 0; k < m && s.n_links < OBS_SPAN_LINKS; k++) {
        const struct obs_link *l = &items[idx[k]]->link;
        bool dup = !l->trace_id[0];
        for (size_t j = 0; !dup && j < s.n_links; j++)
            dup = strcmp(s.links[j].span_id, l->span_id) == 0 &&
                  strcmp(s.links[j].trace_id, l->trace_id) == 0;
        if (!dup)
            s.links[s.n_links++] = *l;
    }
    char n_ops[24], n_events[24], n_sessions[24];
    snprintf(n_ops, sizeof(n_ops), "%zu", m);
    snprintf(n_events, sizeof(n_events), "%zu", stored);
    snprintf(n_sessions, sizeof(n_sessions), "%zu", distinct_sessions(ops, m));
    s.attrs[0].key = "ah.batch_ops";
    s.attrs[0].value = n_ops;
    s.attrs[1].key = "ah.batch_events";
    s.attrs[1].value = n_events;
    s.attrs[2].key = "ah.batch_sessions";
    s.attrs[2].value = n_sessions;
    obs_span_export(&s);
}

static void *writer_main(void *arg) {
    struct bus *b = arg;
    struct store_op *ops = b->batch_ops;
    struct ingest_item **items = b->batch_items;
    static __thread size_t idx[BUS_BATCH_MAX]; /* ops[k] is items[idx[k]]'s */
    for (;;) {
        pthread_mutex_lock(&b->qmu);
        while (!b->head && !b->stopping)
            pthread_cond_wait(&b->qcv, &b->qmu);
        if (!b->head) { /* stopping and drained */
            pthread_mutex_unlock(&b->qmu);
            break;
        }
        size_t n = 0;
        while (b->head && n < BUS_BATCH_MAX) {
            items[n++] = b->head;
            b->head = b->head->next;
        }
        if (!b->head)
            b->tail = NULL;
        pthread_mutex_unlock(&b->qmu);
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (!mark_admits(b, &items[i]->op)) {
                items[i]->op.result = AH_E_UNAVAIL; /* not stored, not acknowledged */
                items[i]->op.stored = NULL;
                continue;
            }
            ops[m] = items[i]->op;
            idx[m++] = i;
        }
        bool failed = false;
        int64_t span_start = m > 0 && obs_otlp_enabled() ? obs_wall_ns() : 0;
        if (m > 0) {
            double t0 = obs_now();
            if (store_apply(b->store, ops, m) < 0) {
                obs_add(m_batch_failed, 0, 1);
                failed = true;
            }
            obs_observe(m_batch_secs, 0, obs_now() - t0);
            obs_observe(m_batch_size, 0, (double)m);
            __atomic_add_fetch(&b->batches, 1, __ATOMIC_RELAXED);
        }
        size_t stored = 0;
        for (size_t k = 0; k < m; k++)
            stored += ops[k].result == 0 && ops[k].stored; /* what gets published */
        obs_add(m_events, 0, (int64_t)stored);
        if (span_start)
            batch_span(items, idx, ops, m, stored, span_start, failed);
        __atomic_add_fetch(&b->ops, n, __ATOMIC_RELAXED);
        for (size_t k = 0; k < m; k++) {
            struct store_op *op = &ops[k];
            struct ingest_item *it = items[idx[k]];
            if (op->result == 0 && op->stored)
                bus_publish(b, op->tenant, op->session_id, op->seq, AH_TAKE(op->stored),
                            op->terminal);
            if (db_error(op->result) && op->rseq > 0 && op->session_id)
                mark_set(b, op->session_id, op->rseq);
            it->op.result = op->result;
            it->op.seq = op->seq;
            it->op.status_before = op->status_before;
            it->op.terminal = op->terminal;
            it->op.stored = NULL;
            free(op->stored);
        }
        for (size_t i = 0; i < n; i++) {
            complete(items[i]);
            item_free(items[i]);
        }
    }
    return NULL;
}

static char *dup_or_null(const char *s, bool *ok) {
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

static int enqueue(struct bus *b, const struct store_op *op, bus_done_fn done, void *arg,
                   struct waiter *w) {
    struct ingest_item *it = calloc(1, sizeof(*it));
    if (!it)
        return AH_E_NOMEM;
    bool ok = true;
    it->op = *op;
    it->op.tenant = dup_or_null(op->tenant, &ok);
    it->op.session_id = dup_or_null(op->session_id, &ok);
    it->op.error = dup_or_null(op->error, &ok);
    it->op.payload = json_incref(op->payload);
    it->op.changes = json_incref(op->changes);
    it->op.stored = NULL;
    it->op.traceparent = NULL;
    char tp[56];
    struct obs_trace tr;
    if (obs_otlp_enabled() && (op->traceparent || obs_trace_current(tp)) &&
        obs_traceparent_parse(op->traceparent ? op->traceparent : tp, &tr) == 0) {
        memcpy(it->link.trace_id, tr.trace_id, sizeof(it->link.trace_id));
        memcpy(it->link.span_id, tr.parent_id, sizeof(it->link.span_id));
    }
    it->done = done;
    it->arg = arg;
    it->waiter = w;
    if (!ok || !it->op.tenant || !it->op.session_id) {
        item_free(it);
        return AH_E_NOMEM;
    }
    pthread_mutex_lock(&b->qmu);
    if (b->stopping) {
        pthread_mutex_unlock(&b->qmu);
        item_free(it);
        return AH_E_UNAVAIL;
    }
    if (b->tail)
        b->tail->next = it;
    else
        b->head = it;
    b->tail = it;
    pthread_cond_signal(&b->qcv);
    pthread_mutex_unlock(&b->qmu);
    return 0;
}

int bus_submit(struct bus *b, const struct store_op *op, bus_done_fn done, void *arg) {
    return enqueue(b, op, done, arg, NULL);
}

int bus_submit_wait(struct bus *b, struct store_op *op) {
    struct waiter w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    if (!op->audit) /* D37: the caller's change carries its audit record (it waits here) */
        op->audit = store_audit_bound();
    int rc = enqueue(b, op, NULL, NULL, &w);
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        op->result = w.result.result;
        op->seq = w.result.seq;
        op->status_before = w.result.status_before;
        op->terminal = w.result.terminal;
        op->stored = NULL;
        rc = op->result;
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

/* Another process on the database (a replica, D46) committed events: wake their followers here. */
static void on_notice(void *arg, const char *tenant, const char *session_id, int64_t seq) {
    bus_remote_committed(arg, tenant, session_id, seq);
}

int bus_new(struct store *st, struct bus **ret) {
    struct bus *b = calloc(1, sizeof(*b));
    if (!b)
        return AH_E_NOMEM;
    b->store = st;
    b->batch_ops = calloc(BUS_BATCH_MAX, sizeof(*b->batch_ops));
    b->batch_items = calloc(BUS_BATCH_MAX, sizeof(*b->batch_items));
    if (!b->batch_ops || !b->batch_items) {
        free(b->batch_ops);
        free(b->batch_items);
        free(b);
        return AH_E_NOMEM;
    }
    pthread_mutex_init(&b->qmu, NULL);
    pthread_cond_init(&b->qcv, NULL);
    pthread_mutex_init(&b->mapmu, NULL);
    if (pthread_create(&b->writer, NULL, writer_main, b) != 0) {
        pthread_mutex_destroy(&b->qmu);
        pthread_cond_destroy(&b->qcv);
        pthread_mutex_destroy(&b->mapmu);
        free(b->batch_ops);
        free(b->batch_items);
        free(b);
        return AH_E_NOMEM;
    }
    pthread_setname_np(b->writer, "ah-writer"); /* for top -H, perf and /proc */
    /* A shared database (PostgreSQL) tells of other processes' events; SQLite has no others. */
    int rc = store_watch(st, on_notice, b);
    if (rc < 0 && rc != AH_E_NOTIMPL) {
        bus_free(b);
        return rc;
    }
    *ret = b;
    return 0;
}

void bus_free(struct bus *b) {
    if (!b)
        return;
    store_watch(b->store, NULL, NULL); /* no notice may reach a freed bus */
    pthread_mutex_lock(&b->qmu);
    b->stopping = true;
    pthread_cond_signal(&b->qcv);
    pthread_mutex_unlock(&b->qmu);
    pthread_join(b->writer, NULL);
    /* Subscribers must be gone before the bus (the HTTP server stops first). */
    pthread_mutex_destroy(&b->qmu);
    pthread_cond_destroy(&b->qcv);
    pthread_mutex_destroy(&b->mapmu);
    free(b->batch_ops);
    free(b->batch_items);
    free(b->marks);
    free(b);
}

void bus_get_stats(struct bus *b, struct bus_stats *ret) {
    ret->batches = __atomic_load_n(&b->batches, __ATOMIC_RELAXED);
    ret->ops = __atomic_load_n(&b->ops, __ATOMIC_RELAXED);
    ret->published = __atomic_load_n(&b->published, __ATOMIC_RELAXED);
    ret->store_reads = __atomic_load_n(&b->store_reads, __ATOMIC_RELAXED);
    ret->channels = __atomic_load_n(&b->channels, __ATOMIC_RELAXED);
    ret->subscribers = __atomic_load_n(&b->subscribers, __ATOMIC_RELAXED);
}
