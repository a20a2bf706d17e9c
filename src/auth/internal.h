/*
 * internal.h — private to auth/: the shared state behind struct auth and the pieces kept in
 * their own files (ratelimit.c, jwt.c).
 */
#ifndef AH_AUTH_INTERNAL_H
#define AH_AUTH_INTERNAL_H

#include <pthread.h>

#include "auth.h"

#define AUTH_TOKEN_MAX 8192 /* the longest Authorization value looked at (431 comes first) */

struct bucket;
struct auth_jwt;
struct auth_oidc;

/* A verified API key, remembered by SHA-256 of its text for KEY_CACHE_MS (auth.c). */
#define KEY_CACHE_SLOTS 512
struct key_cached {
    unsigned char digest[32];
    int64_t until_ms; /* monotonic; 0: empty */
    int64_t expires_at; /* the key's own expiry (wall ms), 0 = none */
    struct auth_principal p;
};

struct auth {
    struct auth_config cfg;
    struct store *store; /* atomic */
    int64_t keys;        /* atomic: usable keys at the last count */
    int64_t count_at;    /* atomic: monotonic ms of that count, 0 = stale */
    double rate, burst, task_rate, task_burst, fail_rate;
    size_t max_buckets;
    pthread_mutex_t mu; /* the bucket table */
    struct bucket **table;
    size_t table_size, n_buckets;
    struct bucket *lru_head, *lru_tail; /* most recently used first */
    struct auth_jwt *jwt;               /* NULL: bearer tokens refused */
    int64_t swept_at;                   /* atomic: monotonic ms of the last audit sweep */
    pthread_mutex_t key_mu;             /* key_cache */
    struct key_cached key_cache[KEY_CACHE_SLOTS];
    struct auth_oidc *oidc; /* NULL: OIDC sign-in off */
    int64_t ended_at; /* wall ms of the last auth_keys_ended poll; its caller's thread only */
};

/* auth.c: SHA-256 of n bytes at p into out; false on failure. The per-request digest (the
 * verified-credential caches): OpenSSL 3's EVP_sha256() looks the algorithm up again on every
 * call and a fresh context is allocated each time, which cost more than the hash itself here;
 * this fetches it once and keeps one context per thread. */
bool auth_sha256(const void *p, size_t n, unsigned char out[32]);

/* ratelimit.c */
void auth_buckets_clear(struct auth *a);
/* jwt.c: loads the key set and checks the settings when a JWKS is configured. */
int auth_jwt_setup(struct auth *a, struct ah_problem *reterr);
void auth_jwt_teardown(struct auth *a);
/* jwt.c: the algorithm rules shared with ID tokens (jwa_alg values of rhonabwy). */
bool auth_jwt_alg_allowed(int alg);
bool auth_jwt_key_fits(void *jwk, int alg); /* jwk: a rhonabwy jwk_t */
/* oidc.c: checks the settings and starts the sign-in thread when an issuer is configured. */
int auth_oidc_setup(struct auth *a, struct ah_problem *reterr);
void auth_oidc_teardown(struct auth *a);
/* auth.c: the role a claim names (a string, or the best of an array of strings). */
enum auth_role auth_claim_role(json_t *v);

#endif
