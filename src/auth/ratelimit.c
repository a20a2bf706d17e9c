/*
 * ratelimit.c — D23 token buckets, in memory only: one per credential (every request) and one
 * per tenant (task creation). The table is a chained hash with an LRU list; past max_buckets
 * the least recently used bucket is dropped (it would be full again by then in most cases, and
 * a dropped bucket only ever errs towards allowing). One mutex: each take is a few arithmetic
 * operations under it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

struct bucket {
    char key[AUTH_ID_MAX + AUTH_NAME_MAX + 8];
    uint64_t hash;
    double tokens;
    int64_t at_ms;
    struct bucket *chain;
    struct bucket *prev, *next; /* LRU */
};

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void lru_unlink(struct auth *a, struct bucket *b) {
    if (b->prev)
        b->prev->next = b->next;
    else
        a->lru_head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        a->lru_tail = b->prev;
    b->prev = b->next = NULL;
}

static void lru_front(struct auth *a, struct bucket *b) {
    b->next = a->lru_head;
    b->prev = NULL;
    if (a->lru_head)
        a->lru_head->prev = b;
    a->lru_head = b;
    if (!a->lru_tail)
        a->lru_tail = b;
}

static void table_remove(struct auth *a, struct bucket *b) {
    struct bucket **pp = &a->table[b->hash % a->table_size];
    while (*pp && *pp != b)
        pp = &(*pp)->chain;
    if (*pp)
        *pp = b->chain;
    lru_unlink(a, b);
    a->n_buckets--;
    free(b);
}

void auth_buckets_clear(struct auth *a) {
    struct bucket *b = a->lru_head;
    while (b) {
        struct bucket *next = b->next;
        free(b);
        b = next;
    }
    free(a->table);
    a->table = NULL;
    a->lru_head = a->lru_tail = NULL;
    a->n_buckets = 0;
}

/* The bucket for key, made full when new; NULL on OOM (the caller then allows). Under a->mu. */
static struct bucket *find(struct auth *a, const char *key, double burst, int64_t now) {
    if (!a->table) {
        a->table_size = a->max_buckets < 64 ? 64 : a->max_buckets;
        if (!(a->table = calloc(a->table_size, sizeof(*a->table))))
            return NULL;
    }
    uint64_t h = fnv1a(key);
    for (struct bucket *b = a->table[h % a->table_size]; b; b = b->chain)
        if (b->hash == h && strcmp(b->key, key) == 0) {
            lru_unlink(a, b);
            lru_front(a, b);
            return b;
        }
    if (a->n_buckets >= a->max_buckets && a->lru_tail)
        table_remove(a, a->lru_tail);
    struct bucket *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    snprintf(b->key, sizeof(b->key), "%s", key);
    b->hash = h;
    b->tokens = burst;
    b->at_ms = now;
    b->chain = a->table[h % a->table_size];
    a->table[h % a->table_size] = b;
    lru_front(a, b);
    a->n_buckets++;
    return b;
}

/* Refills b to now and takes one token when there is one. */
static bool take(struct bucket *b, double rate, double burst, int64_t now) {
    if (now > b->at_ms) {
        b->tokens = fmin(burst, b->tokens + (double)(now - b->at_ms) * rate / 1000.0);
        b->at_ms = now;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    return false;
}

static void describe(const struct bucket *b, double rate, double burst, bool allowed,
                     struct auth_limit *ret) {
    ret->allowed = allowed;
    ret->limit = (int64_t)burst;
    ret->remaining = b ? (int64_t)floor(b->tokens) : (int64_t)burst;
    double missing = b ? burst - b->tokens : 0;
    ret->reset_s = (int64_t)ceil(missing / rate);
    double need = b && b->tokens < 1.0 ? 1.0 - b->tokens : 0;
    ret->retry_after = allowed ? 0 : (int64_t)ceil(need / rate);
    if (!allowed && ret->retry_after < 1)
        ret->retry_after = 1;
}

void auth_fail_take(struct auth *a, const char *addr, int64_t now_ms, struct auth_limit *ret) {
    char key[sizeof(((struct bucket *)0)->key)];
    snprintf(key, sizeof(key), "f:%s", addr && *addr ? addr : "?");
    pthread_mutex_lock(&a->mu);
    double burst = a->fail_rate * 10;
    struct bucket *b = find(a, key, burst, now_ms);
    bool ok = !b || take(b, a->fail_rate, burst, now_ms);
    describe(b, a->fail_rate, burst, ok, ret);
    pthread_mutex_unlock(&a->mu);
}

void auth_rate_take(struct auth *a, const struct auth_principal *p, bool task_create,
                    int64_t now_ms, struct auth_limit *ret) {
    char key[sizeof(((struct bucket *)0)->key)];
    snprintf(key, sizeof(key), "c:%s:%s", p->kind, p->credential_id);
    pthread_mutex_lock(&a->mu);
    struct bucket *b = find(a, key, a->burst, now_ms);
    bool ok = !b || take(b, a->rate, a->burst, now_ms);
    describe(b, a->rate, a->burst, ok, ret);
    if (ok && task_create) {
        /* the tenant's task bucket: its answer is the one reported when it is the tighter */
        snprintf(key, sizeof(key), "t:%s", p->tenant);
        struct bucket *t = find(a, key, a->task_burst, now_ms);
        if (t && !take(t, a->task_rate, a->task_burst, now_ms)) {
            describe(t, a->task_rate, a->task_burst, false, ret);
            if (b)
                b->tokens = fmin(a->burst, b->tokens + 1.0); /* the refused request is free */
        }
    }
    pthread_mutex_unlock(&a->mu);
}
