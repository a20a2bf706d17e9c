/*
 * jwt.c — bearer tokens: compact JWS verified with librhonabwy against a JWKS from a file or an
 * https URL, then the claims: iss and aud exactly as configured, exp required, exp/nbf with
 * leeway, tenant/project/roles from configurable claim names.
 *
 * Refused, whatever the key set holds: `alg: none` and any unsigned or encrypted form, HS*
 * (a public key must never serve as an HMAC secret: alg confusion), algorithms outside
 * RS256/PS256/ES256/EdDSA, a key whose type or own `alg` does not fit the token's `alg`, a token
 * without `kid` when the set has several keys, keys embedded in the token's header (jwk, jku,
 * x5c, x5u: never parsed). An unknown `kid` asks for the set to be re-read, at most once per
 * JWKS_REFRESH_MS, so a rotated key is picked up and a flood of made-up kids costs nothing.
 *
 * The re-read runs on a thread of its own (as oidc.c's sign-in exchange does): a request
 * thread never waits on the network nor on a lock held across it. A token whose kid is unknown
 * gets its 401 at once (saying the set is being re-read); once the new set is in, the same
 * token passes. A key set server that hangs costs that thread JWKS_FETCH_TIMEOUT_S, nothing else.
 *
 * Verified tokens are cached by SHA-256 of their text until they expire (a bounded, direct-mapped
 * table), so a client reusing its token pays for the signature once.
 *
 * rhonabwy.h is the only JWT header here (never libjwt's jwt.h alongside it).
 */
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <rhonabwy.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define JWKS_MAX (1024 * 1024)   /* bytes of a key set */
#define JWKS_REFRESH_MS 30000    /* at most one re-read per this, on an unknown kid */
#define JWKS_FETCH_TIMEOUT_S 10
#define CACHE_SLOTS 1024

struct cached {
    unsigned char digest[32];
    int64_t exp_ms; /* 0: empty */
    struct auth_principal p;
};

struct auth_jwt {
    pthread_mutex_t mu; /* jwks, refreshed_at, want, stopping, cache */
    pthread_cond_t cv;  /* the fetcher waits here for `want` or `stopping` */
    pthread_t fetcher;
    const char *where; /* a->cfg.jwks */
    jwks_t *jwks;
    int64_t refreshed_at; /* monotonic ms of the last re-read asked for */
    bool want;            /* a re-read is asked for */
    bool stopping;        /* atomic too: the transfer's progress callback reads it */
    struct cached cache[CACHE_SLOTS];
};

/* ---- loading the key set ---------------------------------------------------------------------- */

struct fetch_buf {
    char *p;
    size_t n;
    bool over;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg) {
    struct fetch_buf *b = arg;
    size_t len = size * nmemb;
    if (b->n + len > JWKS_MAX) {
        b->over = true;
        return 0;
    }
    char *np = realloc(b->p, b->n + len + 1);
    if (!np)
        return 0;
    memcpy(np + b->n, data, len);
    b->p = np;
    b->n += len;
    b->p[b->n] = '\0';
    return len;
}

/* Ends a transfer at once when the server is shutting down. */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    const bool *stopping = arg;
    return stopping && __atomic_load_n(stopping, __ATOMIC_RELAXED);
}

/* The text of the key set at `where` (a file path or an http(s) URL); caller frees. `stopping`
 * (may be NULL) aborts a transfer under way. */
static char *read_jwks(const char *where, const bool *stopping, char *err, size_t en) {
    if (strncmp(where, "https://", 8) == 0 || strncmp(where, "http://", 7) == 0) {
        CURL *c = curl_easy_init();
        struct fetch_buf b = {0};
        if (!c) {
            snprintf(err, en, "out of memory");
            return NULL;
        }
        curl_easy_setopt(c, CURLOPT_URL, where);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)JWKS_FETCH_TIMEOUT_S);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)stopping);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        CURLcode rc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        if (rc != CURLE_OK || status != 200 || !b.p) {
            snprintf(err, en, "cannot fetch the key set from %s: %s", where,
                     b.over ? "larger than 1 MiB"
                     : rc != CURLE_OK ? curl_easy_strerror(rc)
                                      : "not a 200 answer");
            free(b.p);
            return NULL;
        }
        return b.p;
    }
    FILE *f = fopen(where, "rb");
    if (!f) {
        snprintf(err, en, "cannot read the key set %s", where);
        return NULL;
    }
    char *buf = malloc(JWKS_MAX + 1);
    size_t n = buf ? fread(buf, 1, JWKS_MAX + 1, f) : 0;
    fclose(f);
    if (!buf || n > JWKS_MAX) {
        snprintf(err, en, "the key set %s is unreadable or larger than 1 MiB", where);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* A new key set from `where`, with public keys only; NULL with err set. */
static jwks_t *load_jwks(const char *where, const bool *stopping, char *err, size_t en) {
    char *text = read_jwks(where, stopping, err, en);
    if (!text)
        return NULL;
    jwks_t *set = NULL;
    int ok = r_jwks_init(&set) == RHN_OK && r_jwks_import_from_json_str(set, text) == RHN_OK &&
             r_jwks_size(set) > 0;
    free(text);
    if (!ok) {
        snprintf(err, en, "%s is not a JSON Web Key Set with at least one usable key", where);
        r_jwks_free(set);
        return NULL;
    }
    return set;
}

/* The re-reading thread: waits for a request (an unknown kid), reads the set without holding
 * the lock, swaps it in. */
static void *fetcher_main(void *arg) {
    struct auth_jwt *j = arg;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (!j->want && !j->stopping)
            pthread_cond_wait(&j->cv, &j->mu);
        if (j->stopping)
            break;
        j->want = false;
        pthread_mutex_unlock(&j->mu);
        char err[300];
        jwks_t *fresh = load_jwks(j->where, &j->stopping, err, sizeof(err));
        pthread_mutex_lock(&j->mu);
        if (fresh) {
            r_jwks_free(j->jwks);
            j->jwks = fresh;
            log_msg(LOG_INFO, "re-read the JWKS for an unknown key id");
        } else if (!j->stopping) {
            log_msg(LOG_WARN, "%s", err);
        }
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

int auth_jwt_setup(struct auth *a, struct ah_problem *reterr) {
    if (!a->cfg.jwks)
        return 0;
    if (!a->cfg.issuer || !a->cfg.audience)
        return problem_set(reterr, AH_E_INVAL,
                           "a JWKS needs jwt-issuer and jwt-audience too: tokens are checked "
                           "against both");
    r_global_init();
    struct auth_jwt *j = calloc(1, sizeof(*j));
    if (!j)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->where = a->cfg.jwks;
    char err[300];
    /* at start, before any request: the server does not run without its key set */
    if (!(j->jwks = load_jwks(a->cfg.jwks, NULL, err, sizeof(err)))) {
        pthread_cond_destroy(&j->cv);
        pthread_mutex_destroy(&j->mu);
        free(j);
        return problem_set(reterr, AH_E_INVAL, "%s", err);
    }
    /* the first unknown kid may re-read at once (a key rotated just before start) */
    j->refreshed_at = time_mono_ms() - JWKS_REFRESH_MS;
    if (pthread_create(&j->fetcher, NULL, fetcher_main, j) != 0) {
        r_jwks_free(j->jwks);
        pthread_cond_destroy(&j->cv);
        pthread_mutex_destroy(&j->mu);
        free(j);
        return problem_set(reterr, AH_E_NOMEM, "cannot start the key set thread");
    }
    a->jwt = j;
    return 0;
}

void auth_jwt_teardown(struct auth *a) {
    struct auth_jwt *j = a->jwt;
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    __atomic_store_n(&j->stopping, true, __ATOMIC_RELAXED);
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->fetcher, NULL); /* a transfer under way ends at its next progress call */
    r_jwks_free(j->jwks);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
    a->jwt = NULL;
}

/* ---- verifying -------------------------------------------------------------------------------- */

bool auth_jwt_alg_allowed(int alg) {
    return alg == R_JWA_ALG_RS256 || alg == R_JWA_ALG_PS256 || alg == R_JWA_ALG_ES256 ||
           alg == R_JWA_ALG_EDDSA;
}

/* Does the key's type (and its own "alg", when it names one) fit the token's alg? */
bool auth_jwt_key_fits(void *jwk, int alg) {
    jwk_t *k = jwk;
    unsigned int bits = 0;
    int type = r_jwk_key_type(k, &bits, R_FLAG_IGNORE_REMOTE);
    if (!(type & R_KEY_TYPE_PUBLIC))
        return false;
    bool ok = (alg == R_JWA_ALG_RS256 || alg == R_JWA_ALG_PS256) ? (type & R_KEY_TYPE_RSA) != 0
              : alg == R_JWA_ALG_ES256                          ? (type & R_KEY_TYPE_EC) != 0
              : alg == R_JWA_ALG_EDDSA                          ? (type & R_KEY_TYPE_EDDSA) != 0
                                                                : false;
    const char *kalg = r_jwk_get_property_str(k, "alg");
    if (ok && kalg && (int)r_str_to_jwa_alg(kalg) != alg)
        ok = false;
    return ok;
}

/* The key for kid (or the only key when kid is NULL), as a copy (r_jwk_free it); NULL when none.
 * An unknown kid asks the fetcher to re-read the set, at most once per JWKS_REFRESH_MS, and is
 * refused now: the caller never waits for the network. */
static jwk_t *find_key(struct auth *a, const char *kid, char *detail, size_t dn) {
    struct auth_jwt *j = a->jwt;
    pthread_mutex_lock(&j->mu);
    jwk_t *k = NULL;
    size_t n = r_jwks_size(j->jwks);
    if (!kid) {
        if (n == 1)
            k = r_jwks_get_at(j->jwks, 0);
        else
            snprintf(detail, dn, "the token has no kid and the key set has %zu keys", n);
        pthread_mutex_unlock(&j->mu);
        return k;
    }
    k = r_jwks_get_by_kid(j->jwks, kid);
    bool asked = false;
    int64_t now = time_mono_ms();
    if (!k && now - j->refreshed_at >= JWKS_REFRESH_MS) {
        j->refreshed_at = now;
        j->want = true;
        asked = true;
        pthread_cond_signal(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
    if (!k)
        snprintf(detail, dn, "the token's key id is not in the key set%s",
                 asked ? " (it is being re-read: retry in a few seconds)" : "");
    return k;
}

static bool claim_has(json_t *v, const char *want) {
    if (json_is_string(v))
        return strcmp(json_string_value(v), want) == 0;
    size_t i;
    json_t *e;
    if (json_is_array(v))
        json_array_foreach(v, i, e) if (json_is_string(e) && strcmp(json_string_value(e), want) == 0)
            return true;
    return false;
}

enum auth_role auth_claim_role(json_t *v) {
    enum auth_role best = AUTH_ROLE_NONE, r;
    if (json_is_string(v))
        return auth_role_parse(json_string_value(v), &r) == 0 ? r : AUTH_ROLE_NONE;
    size_t i;
    json_t *e;
    if (json_is_array(v))
        json_array_foreach(v, i, e) if (json_is_string(e) &&
                                        auth_role_parse(json_string_value(e), &r) == 0 && r > best)
            best = r;
    return best;
}

/* The claims, once the signature is good: 0 with ret filled and *ret_exp, or AH_E_AUTH. */
static int check_claims(struct auth *a, json_t *claims, struct auth_principal *ret,
                        int64_t *ret_exp_ms, char *detail, size_t dn) {
    const struct auth_config *c = &a->cfg;
    int64_t now = time_now_ms() / 1000, leeway = c->leeway_s > 0 ? c->leeway_s : 60;
    json_t *iss = json_object_get(claims, "iss"), *aud = json_object_get(claims, "aud");
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    json_t *sub = json_object_get(claims, "sub");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), c->issuer) != 0) {
        snprintf(detail, dn, "the token's issuer is not the configured one");
        return AH_E_AUTH;
    }
    if (!claim_has(aud, c->audience)) {
        snprintf(detail, dn, "the token is not meant for this audience");
        return AH_E_AUTH;
    }
    if (!json_is_integer(exp) && !json_is_real(exp)) {
        snprintf(detail, dn, "the token has no expiry (exp)");
        return AH_E_AUTH;
    }
    int64_t e = (int64_t)json_number_value(exp);
    if (e + leeway <= now) {
        snprintf(detail, dn, "the token has expired");
        return AH_E_AUTH;
    }
    if (nbf && (!json_is_number(nbf) || (int64_t)json_number_value(nbf) - leeway > now)) {
        snprintf(detail, dn, "the token is not valid yet (nbf)");
        return AH_E_AUTH;
    }
    const char *tc = c->claim_tenant ? c->claim_tenant : "tenant";
    const char *pc = c->claim_project ? c->claim_project : "project";
    const char *rc = c->claim_roles ? c->claim_roles : "roles";
    json_t *tenant = json_object_get(claims, tc), *project = json_object_get(claims, pc);
    if (!json_is_string(tenant) || !auth_name_ok(json_string_value(tenant))) {
        snprintf(detail, dn, "the token names no valid tenant (claim %s)", tc);
        return AH_E_AUTH;
    }
    if (project && (!json_is_string(project) || !auth_name_ok(json_string_value(project)))) {
        snprintf(detail, dn, "the token's project (claim %s) is not a valid name", pc);
        return AH_E_AUTH;
    }
    if (!json_is_string(sub) || !*json_string_value(sub) ||
        strlen(json_string_value(sub)) >= AUTH_ID_MAX - 8) {
        snprintf(detail, dn, "the token has no usable subject (sub)");
        return AH_E_AUTH;
    }
    memset(ret, 0, sizeof(*ret));
    ret->role = auth_claim_role(json_object_get(claims, rc));
    snprintf(ret->kind, sizeof(ret->kind), "jwt");
    json_t *jti = json_object_get(claims, "jti");
    snprintf(ret->credential_id, sizeof(ret->credential_id), "%s",
             json_is_string(jti) && strlen(json_string_value(jti)) < AUTH_ID_MAX
                 ? json_string_value(jti)
                 : json_string_value(sub));
    snprintf(ret->subject, sizeof(ret->subject), "jwt:%s", json_string_value(sub));
    snprintf(ret->tenant, sizeof(ret->tenant), "%s", json_string_value(tenant));
    if (project)
        snprintf(ret->project, sizeof(ret->project), "%s", json_string_value(project));
    *ret_exp_ms = (e + leeway) * 1000;
    return 0;
}

int auth_jwt_verify(struct auth *a, const char *token, struct auth_principal *ret, char *detail,
                    size_t dn) {
    struct auth_jwt *j = a->jwt;
    size_t len = strnlen(token, AUTH_TOKEN_MAX + 1);
    if (len == 0 || len > AUTH_TOKEN_MAX) {
        snprintf(detail, dn, "the bearer token is empty or too long");
        return AH_E_AUTH;
    }
    unsigned char digest[32];
    if (!auth_sha256(token, len, digest)) {
        snprintf(detail, dn, "cannot check the token now");
        return AH_E_AUTH;
    }
    struct cached *slot = &j->cache[(digest[0] | (digest[1] << 8)) % CACHE_SLOTS];
    int64_t now_ms = time_now_ms();
    pthread_mutex_lock(&j->mu);
    bool hit = slot->exp_ms > now_ms && CRYPTO_memcmp(slot->digest, digest, 32) == 0;
    if (hit)
        *ret = slot->p;
    pthread_mutex_unlock(&j->mu);
    if (hit)
        return 0;

    jwt_t *jwt = NULL;
    jwk_t *key = NULL;
    json_t *claims = NULL;
    int rc = AH_E_AUTH;
    if (r_jwt_init(&jwt) != RHN_OK) {
        snprintf(detail, dn, "cannot check the token now");
        return AH_E_AUTH;
    }
    /* R_PARSE_NONE: no unsigned tokens, no keys from the token's own header */
    if (r_jwt_advanced_parsen(jwt, token, len, R_PARSE_NONE, R_FLAG_IGNORE_REMOTE) != RHN_OK ||
        r_jwt_get_type(jwt) != R_JWT_TYPE_SIGN) {
        snprintf(detail, dn, "the bearer token is not a signed JWT");
        goto out;
    }
    jwa_alg alg = r_jwt_get_sign_alg(jwt);
    if (!auth_jwt_alg_allowed(alg)) {
        snprintf(detail, dn, "the token's algorithm is not accepted (RS256, PS256, ES256 or "
                             "EdDSA only)");
        goto out;
    }
    const char *kid = r_jwt_get_header_str_value(jwt, "kid");
    if (!(key = find_key(a, kid, detail, dn)))
        goto out;
    if (!auth_jwt_key_fits(key, alg)) {
        snprintf(detail, dn, "the token's algorithm does not fit its key");
        goto out;
    }
    if (r_jwt_verify_signature(jwt, key, R_FLAG_IGNORE_REMOTE) != RHN_OK) {
        snprintf(detail, dn, "the token's signature is not valid");
        goto out;
    }
    claims = r_jwt_get_full_claims_json_t(jwt);
    if (!json_is_object(claims)) {
        snprintf(detail, dn, "the token has no claims");
        goto out;
    }
    int64_t exp_ms = 0;
    if ((rc = check_claims(a, claims, ret, &exp_ms, detail, dn)) == 0) {
        pthread_mutex_lock(&j->mu);
        memcpy(slot->digest, digest, 32);
        slot->exp_ms = exp_ms;
        slot->p = *ret;
        pthread_mutex_unlock(&j->mu);
    }
out:
    json_decref(claims);
    r_jwk_free(key);
    r_jwt_free(jwt);
    return rc;
}
