/*
 * auth.c — the credential check behind every request: modes (local admin until a credential
 * source exists, D22), API keys (salted SHA-256 at rest, constant-time compare) and the token
 * buckets of D23.
 *
 * Invariants: no secret (key text, token, header value) is ever copied into a detail, a log line
 * or an audit record; a lookup of an unknown key id costs the same hash as a known one, so
 * timing does not tell which ids exist.
 */
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define KEY_PREFIX "ahk_"
#define KEY_ID_BYTES 8      /* 16 hex characters */
#define KEY_SECRET_BYTES 32 /* 64 hex characters */
#define KEY_SALT_BYTES 16
#define TOUCH_EVERY_MS 60000 /* last_used_at is written at most once a minute per key */
#define COUNT_EVERY_MS 1000  /* auth_required re-reads the key count this often */
/* A verified key is trusted this long without the store: a key revoked through the API is
 * forgotten at once (auth_invalidate), one revoked offline within this. */
#define KEY_CACHE_MS 1000

static const char *const ROLE_NAMES[] = {"none", "viewer", "operator", "admin"};

const char *auth_role_name(enum auth_role r) {
    return r >= AUTH_ROLE_NONE && r <= AUTH_ROLE_ADMIN ? ROLE_NAMES[r] : "none";
}

int auth_role_parse(const char *s, enum auth_role *ret) {
    for (int r = AUTH_ROLE_VIEWER; s && r <= AUTH_ROLE_ADMIN; r++)
        if (strcmp(s, ROLE_NAMES[r]) == 0) {
            *ret = (enum auth_role)r;
            return 0;
        }
    return AH_E_INVAL;
}

bool auth_name_ok(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > AUTH_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
            return false;
    return true;
}

bool auth_str_equal(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na != nb)
        return false;
    return CRYPTO_memcmp(a, b, na) == 0;
}

static void hex(const unsigned char *p, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static EVP_MD *sha256_md; /* fetched once; NULL: fall back to EVP_sha256() */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static pthread_key_t sha256_ctx; /* each thread's EVP_MD_CTX, freed when the thread ends */

static void sha256_md_free(void) {
    EVP_MD_free(sha256_md);
    sha256_md = NULL;
}

static void sha256_ctx_free(void *c) {
    EVP_MD_CTX_free(c);
}

static void sha256_setup(void) {
    if (pthread_key_create(&sha256_ctx, sha256_ctx_free) != 0)
        return;
    if ((sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL)))
        atexit(sha256_md_free);
}

bool auth_sha256(const void *p, size_t n, unsigned char out[32]) {
    pthread_once(&sha256_once, sha256_setup);
    unsigned int len = 0;
    if (!sha256_md)
        return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) && len == 32;
    EVP_MD_CTX *c = pthread_getspecific(sha256_ctx);
    if (!c) {
        if (!(c = EVP_MD_CTX_new()))
            return false;
        if (pthread_setspecific(sha256_ctx, c) != 0) {
            EVP_MD_CTX_free(c);
            return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) && len == 32;
        }
    }
    /* NULL: the context's own digest again, which keeps its state allocation (a third of the
     * cost of initialising with the algorithm named) */
    return EVP_DigestInit_ex(c, EVP_MD_CTX_get0_md(c) ? NULL : sha256_md, NULL) &&
           EVP_DigestUpdate(c, p, n) && EVP_DigestFinal_ex(c, out, &len) && len == 32;
}

/* hex(SHA-256(salt || secret)) into out[65]. */
static int key_hash(const char *salt, const char *secret, char out[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(c, salt, strlen(salt)) &&
             EVP_DigestUpdate(c, secret, strlen(secret)) && EVP_DigestFinal_ex(c, md, &len);
    EVP_MD_CTX_free(c);
    if (!ok || len != sizeof(md))
        return AH_E_NOMEM;
    hex(md, sizeof(md), out);
    return 0;
}

static int random_hex(size_t bytes, char *out) {
    unsigned char buf[64];
    if (bytes > sizeof(buf) || RAND_bytes(buf, (int)bytes) != 1)
        return AH_E_IO;
    hex(buf, bytes, out);
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

/* ---- the struct ------------------------------------------------------------------------------ */

int auth_new(const struct auth_config *cfg, struct auth **ret, struct ah_problem *reterr) {
    struct auth *a = calloc(1, sizeof(*a));
    if (!a)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->key_mu, NULL);
    a->cfg = *cfg;
    a->rate = cfg->rate > 0 ? cfg->rate : 20;
    a->burst = cfg->burst > 0 ? cfg->burst : 100;
    a->task_rate = cfg->task_rate > 0 ? cfg->task_rate : 2;
    a->task_burst = cfg->task_burst > 0 ? cfg->task_burst : 10;
    a->fail_rate = cfg->fail_rate > 0 ? cfg->fail_rate : 30;
    a->max_buckets = cfg->max_buckets ? cfg->max_buckets : 10000;
    int rc = auth_jwt_setup(a, reterr);
    if (rc == 0)
        rc = auth_oidc_setup(a, reterr);
    if (rc < 0) {
        auth_free(a);
        return rc;
    }
    *ret = a;
    return 0;
}

void auth_free(struct auth *a) {
    if (!a)
        return;
    auth_oidc_teardown(a);
    auth_jwt_teardown(a);
    auth_buckets_clear(a);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->key_mu);
    free(a);
}

void auth_set_store(struct auth *a, struct store *st) {
    if (!st) /* the sign-in thread may be writing to the store that is about to close */
        auth_oidc_teardown(a);
    __atomic_store_n(&a->store, st, __ATOMIC_RELEASE);
    auth_invalidate(a);
}

void auth_invalidate(struct auth *a) {
    __atomic_store_n(&a->count_at, (int64_t)0, __ATOMIC_RELEASE);
    pthread_mutex_lock(&a->key_mu);
    memset(a->key_cache, 0, sizeof(a->key_cache));
    pthread_mutex_unlock(&a->key_mu);
}

void auth_audit_sweep(struct auth *a) {
    if (a->cfg.audit_retention_days <= 0)
        return;
    struct store *st = __atomic_load_n(&a->store, __ATOMIC_ACQUIRE);
    int64_t now = time_mono_ms(), at = __atomic_load_n(&a->swept_at, __ATOMIC_ACQUIRE);
    if (!st || (at && now - at < 3600000) ||
        !__atomic_compare_exchange_n(&a->swept_at, &at, now ? now : 1, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return; /* not due, or another thread is sweeping */
    int64_t deleted = 0;
    int64_t before = time_now_ms() - a->cfg.audit_retention_days * 86400000LL;
    if (store_audit_prune(st, before, &deleted) == 0 && deleted)
        log_msg(LOG_INFO, "audit retention: deleted %lld records older than %lld days",
                (long long)deleted, (long long)a->cfg.audit_retention_days);
}

#define KEYS_ENDED_OVERLAP_MS 60000

int auth_keys_ended(struct auth *a, void (*fn)(void *arg, const char *id), void *arg) {
    struct store *st = __atomic_load_n(&a->store, __ATOMIC_ACQUIRE);
    if (!st)
        return 0;
    int64_t now = time_now_ms();
    int64_t since = (a->ended_at ? a->ended_at : now) - KEYS_ENDED_OVERLAP_MS;
    char **ids = NULL;
    size_t n = 0;
    int rc = store_apikey_ended(st, since, now, &ids, &n);
    if (rc < 0)
        return rc;
    a->ended_at = now;
    if (n) {
        pthread_mutex_lock(&a->key_mu);
        for (size_t k = 0; k < KEY_CACHE_SLOTS; k++)
            for (size_t i = 0; i < n && a->key_cache[k].until_ms; i++)
                if (strcmp(a->key_cache[k].p.credential_id, ids[i]) == 0)
                    a->key_cache[k].until_ms = 0;
        pthread_mutex_unlock(&a->key_mu);
    }
    for (size_t i = 0; i < n; i++) {
        fn(arg, ids[i]);
        free(ids[i]);
    }
    free(ids);
    return 0;
}

bool auth_has_issuer(const struct auth *a) {
    return a->jwt != NULL;
}

bool auth_required(struct auth *a) {
    if (auth_has_issuer(a) || a->oidc)
        return true;
    struct store *st = __atomic_load_n(&a->store, __ATOMIC_ACQUIRE);
    if (!st)
        return __atomic_load_n(&a->keys, __ATOMIC_ACQUIRE) > 0;
    int64_t now = time_mono_ms();
    int64_t at = __atomic_load_n(&a->count_at, __ATOMIC_ACQUIRE);
    if (!at || now - at >= COUNT_EVERY_MS) {
        int64_t n = 0;
        /* a store that cannot answer keeps the last known mode rather than opening up */
        if (store_apikey_count(st, time_now_ms(), &n) == 0)
            __atomic_store_n(&a->keys, n, __ATOMIC_RELEASE);
        __atomic_store_n(&a->count_at, now ? now : 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&a->keys, __ATOMIC_ACQUIRE) > 0;
}

static bool text_ok(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* ---- API keys -------------------------------------------------------------------------------- */

int auth_key_parse(const char *key, char id[AUTH_ID_MAX], const char **ret_secret) {
    size_t n = strnlen(key, AUTH_KEY_MAX + 1);
    if (n > AUTH_KEY_MAX || strncmp(key, KEY_PREFIX, strlen(KEY_PREFIX)) != 0)
        return AH_E_INVAL;
    const char *p = key + strlen(KEY_PREFIX);
    const char *us = strchr(p, '_');
    if (!us || us == p || (size_t)(us - p) >= AUTH_ID_MAX || !us[1])
        return AH_E_INVAL;
    for (const char *q = p; q < us; q++)
        if (!isalnum((unsigned char)*q))
            return AH_E_INVAL;
    for (const char *q = us + 1; *q; q++)
        if (!isgraph((unsigned char)*q))
            return AH_E_INVAL;
    memcpy(id, p, (size_t)(us - p));
    id[us - p] = '\0';
    *ret_secret = us + 1;
    return 0;
}

int auth_key_spec_check(const struct auth_key_spec *spec, int64_t now, struct ah_problem *reterr) {
    struct ah_problem local = {0};
    struct ah_problem *p = reterr ? reterr : &local;
    if (!auth_name_ok(spec->tenant))
        problem_field(p, "tenant", "must be 1 to %d of letters, digits, '.', '_' and '-'",
                      AUTH_NAME_MAX);
    if (spec->project && !auth_name_ok(spec->project))
        problem_field(p, "project", "must be 1 to %d of letters, digits, '.', '_' and '-'",
                      AUTH_NAME_MAX);
    if (spec->role < AUTH_ROLE_VIEWER || spec->role > AUTH_ROLE_ADMIN)
        problem_field(p, "role", "must be viewer, operator or admin");
    if (spec->name && (strlen(spec->name) > 200 || !text_ok(spec->name)))
        problem_field(p, "name", "must be at most 200 characters of printable text");
    if (spec->expires_at && spec->expires_at <= now)
        problem_field(p, "expiresAt", "must be in the future");
    if (spec->impersonate && spec->role != AUTH_ROLE_ADMIN)
        problem_field(p, "impersonate", "only an admin key may act for other tenants");
    int rc = p->code ? p->code : 0;
    problem_clear(&local);
    return rc < 0 ? rc : 0;
}

int auth_key_create(struct store *st, const struct auth_key_spec *spec,
                    const struct audit_entry *audit, char **ret_key, struct apikey_row **ret_row) {
    char id[2 * KEY_ID_BYTES + 1], secret[2 * KEY_SECRET_BYTES + 1], salt[2 * KEY_SALT_BYTES + 1];
    char hash[65];
    int rc = random_hex(KEY_ID_BYTES, id);
    if (rc == 0)
        rc = random_hex(KEY_SECRET_BYTES, secret);
    if (rc == 0)
        rc = random_hex(KEY_SALT_BYTES, salt);
    if (rc == 0)
        rc = key_hash(salt, secret, hash);
    struct apikey_row *k = rc == 0 ? calloc(1, sizeof(*k)) : NULL;
    char *text = NULL;
    if (rc == 0 && k) {
        k->id = strdup(id);
        k->tenant_id = strdup(spec->tenant);
        k->project_id = spec->project ? strdup(spec->project) : NULL;
        k->role = strdup(auth_role_name(spec->role));
        k->name = spec->name ? strdup(spec->name) : NULL;
        k->salt = strdup(salt);
        k->hash = strdup(hash);
        k->impersonate = spec->impersonate;
        k->created_at = time_now_ms();
        k->expires_at = spec->expires_at;
        size_t n = strlen(KEY_PREFIX) + strlen(id) + 1 + strlen(secret) + 1;
        text = malloc(n);
        if (text)
            snprintf(text, n, KEY_PREFIX "%s_%s", id, secret);
        if (!k->id || !k->tenant_id || (spec->project && !k->project_id) || !k->role ||
            (spec->name && !k->name) || !k->salt || !k->hash || !text)
            rc = AH_E_NOMEM;
    } else if (rc == 0) {
        rc = AH_E_NOMEM;
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    if (rc == 0)
        rc = store_apikey_create(st, k, audit);
    if (rc < 0) {
        if (text)
            OPENSSL_cleanse(text, strlen(text));
        free(text);
        apikey_row_free(k);
        return rc;
    }
    *ret_key = text;
    *ret_row = k;
    return 0;
}

json_t *auth_key_json(const struct apikey_row *k) {
    char created[TIME_RFC3339_LEN + 1], expires[TIME_RFC3339_LEN + 1];
    char used[TIME_RFC3339_LEN + 1], revoked[TIME_RFC3339_LEN + 1];
    time_format(k->created_at, created);
    if (k->expires_at)
        time_format(k->expires_at, expires);
    if (k->last_used_at)
        time_format(k->last_used_at, used);
    if (k->revoked_at)
        time_format(k->revoked_at, revoked);
    return json_pack("{s:s, s:s, s:s?, s:s, s:s?, s:b, s:s, s:s?, s:s?, s:s?}", "id", k->id,
                     "tenantId", k->tenant_id, "projectId", k->project_id, "role", k->role,
                     "name", k->name, "impersonate", k->impersonate, "createdAt", created,
                     "expiresAt", k->expires_at ? expires : NULL, "lastUsedAt",
                     k->last_used_at ? used : NULL, "revokedAt",
                     k->revoked_at ? revoked : NULL);
}

/* A hash of a fixed dummy, so an unknown id costs what a known one does. */
static void burn_hash(const char *secret) {
    char hash[65];
    key_hash("00000000000000000000000000000000", secret, hash);
}

static int check_key_store(struct auth *a, const char *key, struct auth_principal *ret,
                           int64_t *ret_expires, char *detail, size_t dn);

/* A key verified less than KEY_CACHE_MS ago costs one SHA-256 and no store lookup. */
static int check_key(struct auth *a, const char *key, struct auth_principal *ret, char *detail,
                     size_t dn) {
    unsigned char digest[32];
    size_t len = strnlen(key, AUTH_KEY_MAX + 1);
    if (len > AUTH_KEY_MAX || !auth_sha256(key, len, digest))
        return check_key_store(a, key, ret, NULL, detail, dn);
    struct key_cached *slot = &a->key_cache[(digest[0] | (digest[1] << 8)) % KEY_CACHE_SLOTS];
    int64_t mono = time_mono_ms();
    pthread_mutex_lock(&a->key_mu);
    bool hit = slot->until_ms > mono && CRYPTO_memcmp(slot->digest, digest, 32) == 0 &&
               (!slot->expires_at || slot->expires_at > time_now_ms());
    if (hit)
        *ret = slot->p;
    pthread_mutex_unlock(&a->key_mu);
    if (hit)
        return 0;
    int64_t expires = 0;
    int rc = check_key_store(a, key, ret, &expires, detail, dn);
    if (rc == 0) {
        pthread_mutex_lock(&a->key_mu);
        memcpy(slot->digest, digest, 32);
        slot->until_ms = mono + KEY_CACHE_MS;
        slot->expires_at = expires;
        slot->p = *ret;
        pthread_mutex_unlock(&a->key_mu);
    }
    OPENSSL_cleanse(digest, sizeof(digest));
    return rc;
}

static int check_key_store(struct auth *a, const char *key, struct auth_principal *ret,
                           int64_t *ret_expires, char *detail, size_t dn) {
    char id[AUTH_ID_MAX];
    const char *secret = NULL;
    if (auth_key_parse(key, id, &secret) < 0) {
        snprintf(detail, dn, "the API key is malformed (expected ahk_<id>_<secret>)");
        return AH_E_AUTH;
    }
    struct store *st = __atomic_load_n(&a->store, __ATOMIC_ACQUIRE);
    if (!st) {
        snprintf(detail, dn, "the server is starting; try again shortly");
        return AH_E_UNAVAIL;
    }
    AH_AUTO(apikey_row_freep) struct apikey_row *k = NULL;
    int rc = store_apikey_get(st, id, &k);
    if (rc == AH_E_NOTFOUND) {
        burn_hash(secret);
        snprintf(detail, dn, "invalid API key");
        return AH_E_AUTH;
    }
    if (rc < 0) {
        snprintf(detail, dn, "cannot check the API key now; try again shortly");
        return AH_E_UNAVAIL;
    }
    char hash[65];
    if (key_hash(k->salt, secret, hash) < 0) {
        snprintf(detail, dn, "cannot check the API key now; try again shortly");
        return AH_E_UNAVAIL;
    }
    bool match = auth_str_equal(hash, k->hash);
    OPENSSL_cleanse(hash, sizeof(hash));
    if (!match) {
        snprintf(detail, dn, "invalid API key");
        return AH_E_AUTH;
    }
    int64_t now = time_now_ms();
    if (k->revoked_at) {
        snprintf(detail, dn, "the API key %s was revoked", k->id);
        return AH_E_AUTH;
    }
    if (k->expires_at && k->expires_at <= now) {
        snprintf(detail, dn, "the API key %s has expired", k->id);
        return AH_E_AUTH;
    }
    enum auth_role role = AUTH_ROLE_NONE;
    if (auth_role_parse(k->role, &role) < 0 || !auth_name_ok(k->tenant_id)) {
        snprintf(detail, dn, "the API key %s is unusable", k->id);
        return AH_E_AUTH;
    }
    memset(ret, 0, sizeof(*ret));
    ret->role = role;
    ret->impersonate = k->impersonate && role == AUTH_ROLE_ADMIN;
    snprintf(ret->kind, sizeof(ret->kind), "apikey");
    snprintf(ret->credential_id, sizeof(ret->credential_id), "%s", k->id);
    snprintf(ret->subject, sizeof(ret->subject), "apikey:%s", k->id);
    snprintf(ret->tenant, sizeof(ret->tenant), "%s", k->tenant_id);
    if (k->project_id)
        snprintf(ret->project, sizeof(ret->project), "%s", k->project_id);
    if (now - k->last_used_at >= TOUCH_EVERY_MS)
        store_apikey_touch(st, k->id, now); /* best effort: a failure costs only the date */
    if (ret_expires)
        *ret_expires = k->expires_at;
    return 0;
}

/* Skips the scheme word of an Authorization value: "ApiKey x" → "x" when it matches. */
static const char *after_scheme(const char *v, const char *scheme) {
    size_t n = strlen(scheme);
    if (strncasecmp(v, scheme, n) != 0 || v[n] != ' ')
        return NULL;
    v += n;
    while (*v == ' ')
        v++;
    return v;
}

int auth_authenticate(struct auth *a, const char *authorization, const char *api_key,
                      struct auth_principal *ret, char *detail, size_t dn) {
    if (authorization && strnlen(authorization, AUTH_TOKEN_MAX + 1) > AUTH_TOKEN_MAX) {
        snprintf(detail, dn, "the Authorization header is longer than %d bytes", AUTH_TOKEN_MAX);
        return AH_E_AUTH;
    }
    if (authorization && api_key) {
        snprintf(detail, dn, "send one credential: Authorization or X-API-Key, not both");
        return AH_E_AUTH;
    }
    if (api_key)
        return check_key(a, api_key, ret, detail, dn);
    if (!authorization || !*authorization) {
        snprintf(detail, dn, "credentials are required: Authorization: ApiKey <key>, "
                             "X-API-Key: <key> or Authorization: Bearer <token>");
        return AH_E_AUTH;
    }
    const char *v;
    if ((v = after_scheme(authorization, "ApiKey")))
        return check_key(a, v, ret, detail, dn);
    if ((v = after_scheme(authorization, "Bearer"))) {
        if (!a->jwt) {
            snprintf(detail, dn, "bearer tokens are not accepted here: no token issuer is "
                                 "configured; use an API key");
            return AH_E_AUTH;
        }
        return auth_jwt_verify(a, v, ret, detail, dn);
    }
    snprintf(detail, dn, "unsupported Authorization scheme; use ApiKey or Bearer");
    return AH_E_AUTH;
}
