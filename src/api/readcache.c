/*
 * readcache.c — rendered representations of hot reads (issue 18 item 3): GET /sessions/{id} and
 * GET /sessions keep the bytes they last sent, tagged with the store's version of what they
 * show (store_session_version). A read whose version has not moved sends the bytes again
 * without touching the database or jansson; a client that sends the ETag back in
 * If-None-Match gets 304 without a body. The writer invalidates by moving the version after its
 * commit; nothing here is ever stale for longer than it takes that counter to move.
 *
 * The table is direct-mapped (a slot per hash of store, tenant and key) with a mutex per slot,
 * so readers of different sessions never wait for each other; a collision just evicts.
 * A representation larger than RC_MAX_BODY is not kept.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "routes.h"

#define RC_SLOTS 1024
#define RC_MAX_BODY (256u * 1024)
#define RC_MAX_KEY 512

struct rc_slot {
    pthread_mutex_t mu;
    const void *store;
    uint64_t version;
    char *key; /* "tenant\nkey" */
    char *body;
    size_t len;
    char etag[24];
};

static struct rc_slot slots[RC_SLOTS];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void) {
    for (size_t i = 0; i < RC_SLOTS; i++)
        pthread_mutex_init(&slots[i].mu, NULL);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211ULL;
    return h;
}

static bool full_key(char *dst, const char *tenant, const char *key) {
    int n = snprintf(dst, RC_MAX_KEY, "%s\n%s", tenant, key);
    return n > 0 && n < RC_MAX_KEY;
}

static struct rc_slot *slot_of(const void *store, const char *fk) {
    uint64_t h = fnv(1469598103934665603ULL, &store, sizeof(store));
    h = fnv(h, fk, strlen(fk));
    return &slots[h % RC_SLOTS];
}

void readcache_etag(const char *body, size_t len, char out[24]) {
    snprintf(out, 24, "\"%016llx\"",
             (unsigned long long)fnv(1469598103934665603ULL, body, len));
}

bool readcache_get(const void *store, const char *tenant, const char *key, uint64_t version,
                   char **ret_body, size_t *ret_len, char ret_etag[24]) {
    char fk[RC_MAX_KEY];
    if (!full_key(fk, tenant, key))
        return false;
    pthread_once(&once, init);
    struct rc_slot *s = slot_of(store, fk);
    bool hit = false;
    pthread_mutex_lock(&s->mu);
    if (s->key && s->store == store && s->version == version && strcmp(s->key, fk) == 0) {
        if (ret_body) {
            char *b = malloc(s->len + 1);
            if (b) {
                memcpy(b, s->body, s->len + 1);
                *ret_body = b;
                *ret_len = s->len;
                hit = true;
            }
        } else {
            hit = true;
        }
        if (hit)
            memcpy(ret_etag, s->etag, 24);
    }
    pthread_mutex_unlock(&s->mu);
    return hit;
}

void readcache_put(const void *store, const char *tenant, const char *key, uint64_t version,
                   const char *body, size_t len, const char *etag) {
    char fk[RC_MAX_KEY];
    if (len > RC_MAX_BODY || !full_key(fk, tenant, key))
        return;
    pthread_once(&once, init);
    char *k = strdup(fk), *b = malloc(len + 1);
    if (!k || !b) { /* not kept: the next read renders again */
        free(k);
        free(b);
        return;
    }
    memcpy(b, body, len);
    b[len] = 0;
    struct rc_slot *s = slot_of(store, fk);
    pthread_mutex_lock(&s->mu);
    char *old_k = s->key, *old_b = s->body;
    s->store = store;
    s->version = version;
    s->key = k;
    s->body = b;
    s->len = len;
    memcpy(s->etag, etag, 24);
    pthread_mutex_unlock(&s->mu);
    free(old_k);
    free(old_b);
}

/* RFC 9110 §13.1.2: If-None-Match is "*" or a list of entity tags compared weakly. */
bool readcache_not_modified(const char *if_none_match, const char *etag) {
    if (!if_none_match)
        return false;
    size_t el = strlen(etag);
    const char *p = if_none_match;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *end = p;
        if (*end == '"') {
            end = strchr(end + 1, '"');
            end = end ? end + 1 : p + strlen(p);
        } else {
            end += strcspn(end, ",");
        }
        if ((size_t)(end - p) == el && memcmp(p, etag, el) == 0)
            return true;
        p = end;
        if (*p && *p != ',')
            p += strcspn(p, ",");
    }
    return false;
}
