/*
 * oidc.c — people sign in through an OpenID Provider (authorization code + PKCE S256, state and
 * nonce) and get a server-side session behind an opaque cookie (D36).
 *
 * The life of a sign-in:
 *
 *   auth_oidc_begin      a "login" row (hash of the state, nonce, PKCE verifier, return path),
 *                        ten minutes; the browser goes to the provider, the state also in a
 *                        cookie of its own (AUTH_STATE_COOKIE) so only this browser can finish
 *   auth_oidc_finish     the state must match that cookie and is taken from the store (used
 *                        once); a "pending" session row and its cookie are made, the code's
 *                        exchange is queued for the sign-in thread; the browser is sent back
 *   sign-in thread       POSTs the code (and verifier) to the token endpoint, verifies the ID
 *                        token with rhonabwy (the rules of jwt.c: RS256/PS256/ES256/EdDSA only,
 *                        key type fits alg, no keys from the token), iss = the configured
 *                        issuer, aud ∋ client id (azp when several), exp, iat, nonce; maps the
 *                        claims to user, tenant and role; the session turns "active" (or
 *                        "failed" with a reason), with its audit record in one transaction
 *   auth_session_check   every request with the cookie: active, not revoked, within its idle
 *                        and absolute expiry (activity recorded at most every touch interval)
 *   auth_session_logout  revoked in the store (audited), forgotten here; optionally the
 *                        provider's end_session URL for RP-initiated logout
 *
 * Threading (ARCHITECTURE.md: handlers never block on the network): every call to the provider
 * — discovery, its key set, the token exchange — runs on the one sign-in thread started here;
 * HTTP threads only read and write the store. Until discovery succeeds (retried with backoff)
 * sign-ins are refused with AH_E_UNAVAIL. The queue of exchanges is bounded.
 *
 * Secrets: the store keeps SHA-256 of the state and of the cookie, never either; codes, tokens
 * and cookies never reach a log line, a detail or an audit record (the provider's error code is
 * passed on only after it was checked to be a plain word).
 *
 * Verified sessions are cached by SHA-256 of their cookie for SESSION_CACHE_MS (a revocation
 * made here is seen at once; one made by another replica within that).
 */
#include <ctype.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <rhonabwy.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define LOGIN_TTL_MS 600000           /* a sign-in must come back from the provider within this */
#define FETCH_MAX (1024 * 1024)       /* bytes of any answer from the provider */
#define FETCH_TIMEOUT_S 10
#define QUEUE_MAX 256                 /* exchanges waiting for the sign-in thread */
#define JWKS_REFRESH_MS 30000         /* at most one re-read of the key set per this */
#define RETRY_MAX_MS 30000            /* discovery retry backoff cap */
#define SESSION_CACHE_SLOTS 512
#define SESSION_CACHE_MS 1000
#define CODE_MAX 4096                 /* the longest authorization code looked at */
#define RETURN_TO_MAX 512

struct job {
    struct job *next;
    char session_id[33];
    char *code;
    char verifier[65], nonce[65];
    char request_id[80], source[80];
    int64_t expires_at;
};

struct sess_cached {
    unsigned char digest[32];
    int64_t until_ms;     /* monotonic; 0: empty */
    int64_t expires_at;   /* wall ms: absolute expiry */
    int64_t last_seen_at; /* wall ms: the idle clock */
    struct auth_principal p;
};

struct auth_oidc {
    struct auth_oidc_config cfg; /* strings borrowed from the caller's configuration */
    int64_t idle_ms, max_ms, touch_ms;
    bool secure;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu; /* queue, stopping */
    pthread_cond_t cv;
    struct job *head, *tail;
    size_t queued;
    bool stopping;
    /* discovery: written by the thread before `ready` is set, read-only after */
    bool ready; /* atomic */
    char *authorization_endpoint, *token_endpoint, *jwks_uri, *end_session_endpoint;
    jwks_t *jwks;         /* the sign-in thread's only */
    int64_t jwks_read_at; /* monotonic ms */
    pthread_mutex_t cache_mu;
    struct sess_cached cache[SESSION_CACHE_SLOTS];
};

/* ---- small helpers ------------------------------------------------------------------------------ */

static void hex(const unsigned char *p, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int random_hex(size_t bytes, char *out) {
    unsigned char buf[32];
    if (bytes > sizeof(buf) || RAND_bytes(buf, (int)bytes) != 1)
        return AH_E_IO;
    hex(buf, bytes, out);
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

static bool sha256(const char *s, unsigned char out[32]) {
    unsigned int n = 0;
    return EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL) && n == 32;
}

static bool sha256_hex(const char *s, char out[65]) {
    unsigned char d[32];
    if (!sha256(s, d))
        return false;
    hex(d, 32, out);
    return true;
}

/* base64url without padding of 32 bytes (43 characters) into out[44]. */
static void b64url32(const unsigned char in[32], char out[44]) {
    unsigned char tmp[48];
    EVP_EncodeBlock(tmp, in, 32); /* 44 characters, the last one '=' */
    for (int i = 0; i < 43; i++)
        out[i] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
    out[43] = '\0';
}

static bool is_hex(const char *s, size_t n) {
    if (!s || strnlen(s, n + 1) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return true;
}

/* Appends s percent-encoded (RFC 3986 unreserved characters pass) to b. */
static int append_esc(struct ah_buf *b, const char *s) {
    static const char digits[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int rc;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            rc = ah_buf_append(b, s, 1);
        } else {
            char e[3] = {'%', digits[c >> 4], digits[c & 15]};
            rc = ah_buf_append(b, e, 3);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int append_str(struct ah_buf *b, const char *s) {
    return ah_buf_append(b, s, strlen(s));
}

/* A NUL-terminated copy of the buffer's text (caller frees); NULL on OOM. */
static char *buf_text(struct ah_buf *b) {
    char *s = malloc(b->n + 1);
    if (s) {
        memcpy(s, b->p, b->n);
        s[b->n] = '\0';
    }
    return s;
}

/* A provider's error code is passed on only when it is a plain word (RFC 6749 §5.2 codes). */
static const char *plain_word(const char *s) {
    if (!s || !*s || strlen(s) > 64)
        return NULL;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return NULL;
    return s;
}

/* ---- talking to the provider (the sign-in thread only) ------------------------------------------- */

struct fetched {
    char *p;
    size_t n;
    bool over;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg) {
    struct fetched *f = arg;
    size_t len = size * nmemb;
    if (f->n + len > FETCH_MAX) {
        f->over = true;
        return 0;
    }
    char *np = realloc(f->p, f->n + len + 1);
    if (!np)
        return 0;
    memcpy(np + f->n, data, len);
    f->p = np;
    f->n += len;
    f->p[f->n] = '\0';
    return len;
}

/* GET (body NULL) or form POST to url; the answer's JSON object in *ret (caller decrefs) and
 * its status in *ret_status. user/pass: HTTP Basic client authentication, or NULL. err gets a
 * sentence without any secret. */
static int fetch_json(const char *url, const char *body, const char *user, const char *pass,
                      long *ret_status, json_t **ret, char *err, size_t en) {
    CURL *c = curl_easy_init();
    struct fetched f = {0};
    struct curl_slist *h = NULL;
    if (!c) {
        snprintf(err, en, "out of memory");
        return AH_E_NOMEM;
    }
    h = curl_slist_append(h, "Accept: application/json");
    if (body)
        h = curl_slist_append(h, "Content-Type: application/x-www-form-urlencoded");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)FETCH_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, pass);
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (rc != CURLE_OK || !f.p) {
        snprintf(err, en, "%s", f.over ? "its answer is larger than 1 MiB"
                                : rc != CURLE_OK ? curl_easy_strerror(rc)
                                                 : "it answered nothing");
        free(f.p);
        return AH_E_IO;
    }
    json_t *j = json_loadb(f.p, f.n, 0, NULL);
    OPENSSL_cleanse(f.p, f.n); /* a token answer holds secrets */
    free(f.p);
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err, en, "it answered %ld with something that is not a JSON object", status);
        return AH_E_IO;
    }
    *ret_status = status;
    *ret = j;
    return 0;
}

static char *dup_member(json_t *o, const char *name) {
    const char *s = json_string_value(json_object_get(o, name));
    return s && *s ? strdup(s) : NULL;
}

static int load_keys(struct auth_oidc *o, char *err, size_t en) {
    long status = 0;
    json_t *j = NULL;
    char why[200];
    if (fetch_json(o->jwks_uri, NULL, NULL, NULL, &status, &j, why, sizeof(why)) < 0) {
        snprintf(err, en, "cannot read the provider's key set %s: %s", o->jwks_uri, why);
        return AH_E_IO;
    }
    jwks_t *set = NULL;
    int ok = status == 200 && r_jwks_init(&set) == RHN_OK &&
             r_jwks_import_from_json_t(set, j) == RHN_OK && r_jwks_size(set) > 0;
    json_decref(j);
    if (!ok) {
        r_jwks_free(set);
        snprintf(err, en, "the provider's key set %s has no usable key", o->jwks_uri);
        return AH_E_IO;
    }
    r_jwks_free(o->jwks);
    o->jwks = set;
    o->jwks_read_at = time_mono_ms();
    return 0;
}

/* Reads the discovery document and the key set; 0 and `ready`, or a reason in err. */
static int discover(struct auth_oidc *o, char *err, size_t en) {
    struct ah_buf b = {.max = 4096};
    size_t il = strlen(o->cfg.issuer);
    while (il && o->cfg.issuer[il - 1] == '/')
        il--;
    int rc = ah_buf_append(&b, o->cfg.issuer, il);
    if (rc == 0)
        rc = append_str(&b, "/.well-known/openid-configuration");
    char *url = rc == 0 ? buf_text(&b) : NULL;
    ah_buf_clear(&b);
    if (!url) {
        snprintf(err, en, "out of memory");
        return AH_E_NOMEM;
    }
    long status = 0;
    json_t *d = NULL;
    char why[200];
    rc = fetch_json(url, NULL, NULL, NULL, &status, &d, why, sizeof(why));
    if (rc < 0 || status != 200) {
        snprintf(err, en, "cannot read the provider's discovery document %s: %s", url,
                 rc < 0 ? why : "not a 200 answer");
        json_decref(d);
        free(url);
        return AH_E_IO;
    }
    free(url);
    /* OpenID Connect Discovery §4.3: the document's issuer is exactly the one configured */
    const char *iss = json_string_value(json_object_get(d, "issuer"));
    if (!iss || strcmp(iss, o->cfg.issuer) != 0) {
        snprintf(err, en, "the provider's discovery document names the issuer %s, not %s",
                 iss ? iss : "(none)", o->cfg.issuer);
        json_decref(d);
        return AH_E_INVAL;
    }
    json_t *methods = json_object_get(d, "code_challenge_methods_supported");
    bool s256 = !methods; /* not listed: try it (RFC 8414 makes the member optional) */
    size_t i;
    json_t *m;
    json_array_foreach(methods, i, m) if (json_is_string(m) &&
                                          strcmp(json_string_value(m), "S256") == 0) s256 = true;
    if (!s256) {
        snprintf(err, en, "the provider does not offer PKCE with S256");
        json_decref(d);
        return AH_E_INVAL;
    }
    free(o->authorization_endpoint);
    free(o->token_endpoint);
    free(o->jwks_uri);
    free(o->end_session_endpoint);
    o->authorization_endpoint = dup_member(d, "authorization_endpoint");
    o->token_endpoint = dup_member(d, "token_endpoint");
    o->jwks_uri = dup_member(d, "jwks_uri");
    o->end_session_endpoint = dup_member(d, "end_session_endpoint");
    json_decref(d);
    if (!o->authorization_endpoint || !o->token_endpoint || !o->jwks_uri) {
        snprintf(err, en, "the provider's discovery document lacks authorization_endpoint, "
                          "token_endpoint or jwks_uri");
        return AH_E_INVAL;
    }
    return load_keys(o, err, en);
}

/* The key for kid (or the only one), a copy to r_jwk_free; an unknown kid re-reads the set at
 * most once per JWKS_REFRESH_MS (a provider that rotated its keys). */
static jwk_t *find_key(struct auth_oidc *o, const char *kid, char *err, size_t en) {
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t n = r_jwks_size(o->jwks);
        if (!kid) {
            if (n == 1)
                return r_jwks_get_at(o->jwks, 0);
            snprintf(err, en, "the ID token has no kid and the provider has %zu keys", n);
            return NULL;
        }
        jwk_t *k = r_jwks_get_by_kid(o->jwks, kid);
        if (k)
            return k;
        if (attempt || time_mono_ms() - o->jwks_read_at < JWKS_REFRESH_MS)
            break;
        char why[300];
        if (load_keys(o, why, sizeof(why)) < 0)
            log_msg(LOG_WARN, "%s", why);
    }
    snprintf(err, en, "the ID token's key id is not in the provider's key set");
    return NULL;
}

static bool aud_has(json_t *v, const char *want) {
    if (json_is_string(v))
        return strcmp(json_string_value(v), want) == 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) if (json_is_string(e) && strcmp(json_string_value(e), want) == 0)
        return true;
    return false;
}

static const char *claim_str(json_t *claims, const char *name) {
    const char *s = json_string_value(json_object_get(claims, name));
    return s && *s && strlen(s) < AUTH_ID_MAX - 8 ? s : NULL;
}

/* Verifies an ID token and maps its claims into w (subject, user_name, tenant_id, role). */
static int verify_id_token(struct auth *a, const char *token, const char *nonce,
                           struct websession_row *w, char *err, size_t en) {
    struct auth_oidc *o = a->oidc;
    const struct auth_oidc_config *c = &o->cfg;
    jwt_t *jwt = NULL;
    jwk_t *key = NULL;
    json_t *claims = NULL;
    int rc = AH_E_AUTH;
    size_t len = strnlen(token, AUTH_TOKEN_MAX + 1);
    if (len == 0 || len > AUTH_TOKEN_MAX || r_jwt_init(&jwt) != RHN_OK) {
        snprintf(err, en, "the ID token is empty, too long or cannot be read");
        r_jwt_free(jwt);
        return AH_E_AUTH;
    }
    if (r_jwt_advanced_parsen(jwt, token, len, R_PARSE_NONE, R_FLAG_IGNORE_REMOTE) != RHN_OK ||
        r_jwt_get_type(jwt) != R_JWT_TYPE_SIGN) {
        snprintf(err, en, "the ID token is not a signed JWT");
        goto out;
    }
    int alg = (int)r_jwt_get_sign_alg(jwt);
    if (!auth_jwt_alg_allowed(alg)) {
        snprintf(err, en, "the ID token's algorithm is not accepted (RS256, PS256, ES256 or "
                          "EdDSA only)");
        goto out;
    }
    if (!(key = find_key(o, r_jwt_get_header_str_value(jwt, "kid"), err, en)))
        goto out;
    if (!auth_jwt_key_fits(key, alg)) {
        snprintf(err, en, "the ID token's algorithm does not fit its key");
        goto out;
    }
    if (r_jwt_verify_signature(jwt, key, R_FLAG_IGNORE_REMOTE) != RHN_OK) {
        snprintf(err, en, "the ID token's signature is not valid");
        goto out;
    }
    claims = r_jwt_get_full_claims_json_t(jwt);
    int64_t now = time_now_ms() / 1000, leeway = a->cfg.leeway_s > 0 ? a->cfg.leeway_s : 60;
    json_t *aud = json_object_get(claims, "aud"), *azp = json_object_get(claims, "azp");
    json_t *exp = json_object_get(claims, "exp"), *iat = json_object_get(claims, "iat");
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    const char *got_nonce = json_string_value(json_object_get(claims, "nonce"));
    if (!iss || strcmp(iss, c->issuer) != 0) {
        snprintf(err, en, "the ID token's issuer is not the configured one");
        goto out;
    }
    if (!aud_has(aud, c->client_id) ||
        (json_is_array(aud) && json_array_size(aud) > 1 && !json_is_string(azp)) ||
        (azp && (!json_is_string(azp) || strcmp(json_string_value(azp), c->client_id) != 0))) {
        snprintf(err, en, "the ID token is not meant for this client (aud/azp)");
        goto out;
    }
    if (!json_is_number(exp) || (int64_t)json_number_value(exp) + leeway <= now) {
        snprintf(err, en, "the ID token has expired (or has no exp)");
        goto out;
    }
    if (!json_is_number(iat) || (int64_t)json_number_value(iat) - leeway > now) {
        snprintf(err, en, "the ID token's issue time (iat) is missing or in the future");
        goto out;
    }
    if (!got_nonce || !auth_str_equal(got_nonce, nonce)) {
        snprintf(err, en, "the ID token's nonce is not the one this sign-in sent");
        goto out;
    }
    const char *sub = claim_str(claims, "sub");
    if (!sub) {
        snprintf(err, en, "the ID token has no usable subject (sub)");
        goto out;
    }
    const char *uc = c->claim_user ? c->claim_user : "sub";
    const char *user = claim_str(claims, uc);
    if (!user) {
        snprintf(err, en, "the ID token has no usable user name (claim %s)", uc);
        goto out;
    }
    const char *tc = c->claim_tenant ? c->claim_tenant : "tenant";
    json_t *tv = json_object_get(claims, tc);
    const char *tenant = json_is_string(tv) ? json_string_value(tv) : c->default_tenant;
    if (!tenant || !auth_name_ok(tenant)) {
        snprintf(err, en, "the ID token names no valid tenant (claim %s) and no default tenant "
                          "is configured",
                 tc);
        goto out;
    }
    const char *rcn = c->claim_roles ? c->claim_roles : "roles";
    enum auth_role role = auth_claim_role(json_object_get(claims, rcn));
    if (role == AUTH_ROLE_NONE && c->default_role)
        (void)auth_role_parse(c->default_role, &role);
    if (role == AUTH_ROLE_NONE) {
        snprintf(err, en, "the ID token grants no role (claim %s: viewer, operator or admin) "
                          "and no default role is configured",
                 rcn);
        goto out;
    }
    const char *name = claim_str(claims, "name");
    w->subject = strdup(user);
    w->user_name = strdup(name ? name : user);
    w->tenant_id = strdup(tenant);
    w->role = strdup(auth_role_name(role));
    if (!w->subject || !w->user_name || !w->tenant_id || !w->role) {
        snprintf(err, en, "out of memory");
        rc = AH_E_NOMEM;
        goto out;
    }
    rc = 0;
out:
    json_decref(claims);
    r_jwk_free(key);
    r_jwt_free(jwt);
    return rc;
}

/* One queued exchange: code → tokens → verified ID token → the session finished. */
static void exchange(struct auth *a, struct job *job) {
    struct auth_oidc *o = a->oidc;
    struct store *st = __atomic_load_n(&a->store, __ATOMIC_ACQUIRE);
    struct websession_row w = {.id = job->session_id, .expires_at = job->expires_at};
    char err[300] = "";
    struct ah_buf b = {.max = 16384};
    int rc = append_str(&b, "grant_type=authorization_code&code=");
    rc = rc < 0 ? rc : append_esc(&b, job->code);
    rc = rc < 0 ? rc : append_str(&b, "&redirect_uri=");
    rc = rc < 0 ? rc : append_esc(&b, o->cfg.redirect_uri);
    rc = rc < 0 ? rc : append_str(&b, "&code_verifier=");
    rc = rc < 0 ? rc : append_esc(&b, job->verifier);
    if (!o->cfg.client_secret) { /* a public client names itself in the body */
        rc = rc < 0 ? rc : append_str(&b, "&client_id=");
        rc = rc < 0 ? rc : append_esc(&b, o->cfg.client_id);
    }
    char *body = rc == 0 ? buf_text(&b) : NULL;
    if (b.p)
        OPENSSL_cleanse(b.p, b.n);
    ah_buf_clear(&b);
    /* RFC 6749 §2.3.1: Basic credentials are form-encoded first */
    char *user = NULL, *pass = NULL;
    if (o->cfg.client_secret) {
        struct ah_buf u = {.max = 4096}, p = {.max = 4096};
        if (append_esc(&u, o->cfg.client_id) == 0 && append_esc(&p, o->cfg.client_secret) == 0) {
            user = buf_text(&u);
            pass = buf_text(&p);
        }
        if (p.p)
            OPENSSL_cleanse(p.p, p.n);
        ah_buf_clear(&u);
        ah_buf_clear(&p);
    }
    json_t *ans = NULL;
    long status = 0;
    if (!body || (o->cfg.client_secret && (!user || !pass))) {
        snprintf(err, sizeof(err), "out of memory");
    } else if (fetch_json(o->token_endpoint, body, user, pass, &status, &ans, err, sizeof(err)) <
               0) {
        char why[300];
        snprintf(why, sizeof(why), "the token endpoint cannot be reached: %s", err);
        snprintf(err, sizeof(err), "%s", why);
    } else if (status != 200) {
        const char *code = plain_word(json_string_value(json_object_get(ans, "error")));
        snprintf(err, sizeof(err), "the identity provider refused the code (%ld%s%s)", status,
                 code ? ", " : "", code ? code : "");
    } else {
        const char *idt = json_string_value(json_object_get(ans, "id_token"));
        if (!idt)
            snprintf(err, sizeof(err), "the token endpoint answered without an ID token");
        else if (verify_id_token(a, idt, job->nonce, &w, err, sizeof(err)) == 0 &&
                 !(w.id_token = strdup(idt)))
            snprintf(err, sizeof(err), "out of memory");
    }
    if (body)
        OPENSSL_cleanse(body, strlen(body));
    if (pass)
        OPENSSL_cleanse(pass, strlen(pass));
    free(body);
    free(user);
    free(pass);
    json_decref(ans);

    bool ok = !err[0];
    w.status = ok ? "active" : "failed";
    w.error = ok ? NULL : err;
    char actor[AUTH_ID_MAX + 8];
    snprintf(actor, sizeof(actor), "oidc:%s", w.subject ? w.subject : "");
    struct audit_entry e = {
        .ts = time_now_ms(),
        .tenant = ok ? w.tenant_id : NULL,
        .actor = ok ? actor : NULL,
        .credential_id = job->session_id,
        .action = "auth.login",
        .target = "/api/v1/auth/oidc/callback",
        .request_id = job->request_id[0] ? job->request_id : NULL,
        .source = job->source[0] ? job->source : NULL,
        .outcome = ok ? "success" : "failure",
        .status = 0,
    };
    if (!ok)
        log_msg(LOG_WARN, "OIDC sign-in %s failed: %s", job->session_id, err);
    if (!st || store_websession_finish(st, &w, &e) < 0)
        log_msg(LOG_WARN, "cannot record the end of OIDC sign-in %s", job->session_id);
    if (w.id_token)
        OPENSSL_cleanse(w.id_token, strlen(w.id_token));
    free(w.subject);
    free(w.user_name);
    free(w.tenant_id);
    free(w.role);
    free(w.id_token);
}

static void job_free(struct job *j) {
    if (!j)
        return;
    if (j->code) {
        OPENSSL_cleanse(j->code, strlen(j->code));
        free(j->code);
    }
    OPENSSL_cleanse(j->verifier, sizeof(j->verifier));
    OPENSSL_cleanse(j->nonce, sizeof(j->nonce));
    free(j);
}

static void *run(void *arg) {
    struct auth *a = arg;
    struct auth_oidc *o = a->oidc;
    int64_t backoff = 250;
    char last[300] = "";
    for (;;) {
        if (!__atomic_load_n(&o->ready, __ATOMIC_ACQUIRE)) {
            char err[300];
            if (discover(o, err, sizeof(err)) == 0) {
                __atomic_store_n(&o->ready, true, __ATOMIC_RELEASE);
                log_msg(LOG_INFO, "OIDC provider %s discovered", o->cfg.issuer);
            } else {
                if (strcmp(err, last) != 0) /* each new reason once, not every retry */
                    log_msg(LOG_WARN, "OIDC sign-in unavailable: %s (retrying)", err);
                snprintf(last, sizeof(last), "%s", err);
                pthread_mutex_lock(&o->mu);
                if (!o->stopping) {
                    struct timespec ts;
                    clock_gettime(CLOCK_REALTIME, &ts);
                    ts.tv_sec += backoff / 1000;
                    ts.tv_nsec += (backoff % 1000) * 1000000;
                    if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                    }
                    pthread_cond_timedwait(&o->cv, &o->mu, &ts);
                }
                bool stop = o->stopping;
                pthread_mutex_unlock(&o->mu);
                if (stop)
                    break;
                backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
                continue;
            }
        }
        pthread_mutex_lock(&o->mu);
        while (!o->head && !o->stopping)
            pthread_cond_wait(&o->cv, &o->mu);
        struct job *j = o->stopping ? NULL : o->head;
        if (j) {
            o->head = j->next;
            if (!o->head)
                o->tail = NULL;
            o->queued--;
        }
        pthread_mutex_unlock(&o->mu);
        if (!j)
            break;
        exchange(a, j);
        job_free(j);
    }
    return NULL;
}

/* ---- setup ------------------------------------------------------------------------------------- */

int auth_oidc_setup(struct auth *a, struct ah_problem *reterr) {
    const struct auth_oidc_config *c = &a->cfg.oidc;
    if (!c->issuer)
        return 0;
    if (!c->client_id || !*c->client_id)
        return problem_set(reterr, AH_E_INVAL, "oidc-issuer needs oidc-client-id too");
    if (!c->redirect_uri || (strncmp(c->redirect_uri, "https://", 8) != 0 &&
                             strncmp(c->redirect_uri, "http://", 7) != 0))
        return problem_set(reterr, AH_E_INVAL,
                           "oidc-issuer needs oidc-redirect-uri (or public-url): the http(s) URL "
                           "of this server's /api/v1/auth/oidc/callback");
    if (strncmp(c->issuer, "https://", 8) != 0 && strncmp(c->issuer, "http://", 7) != 0)
        return problem_set(reterr, AH_E_INVAL, "oidc-issuer must be an http(s) URL");
    enum auth_role r;
    if (c->default_role && auth_role_parse(c->default_role, &r) < 0)
        return problem_set(reterr, AH_E_INVAL,
                           "oidc-default-role must be viewer, operator or admin");
    if (c->default_tenant && !auth_name_ok(c->default_tenant))
        return problem_set(reterr, AH_E_INVAL,
                           "oidc-default-tenant must be 1 to %d of letters, digits, '.', '_' "
                           "and '-'",
                           AUTH_NAME_MAX);
    if (c->scopes)
        for (const char *p = c->scopes; *p; p++)
            if (!isgraph((unsigned char)*p) && *p != ' ')
                return problem_set(reterr, AH_E_INVAL,
                                   "oidc-scopes must be scope names separated by spaces");
    r_global_init();
    struct auth_oidc *o = calloc(1, sizeof(*o));
    if (!o)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    o->cfg = *c;
    o->idle_ms = (c->idle_s > 0 ? c->idle_s : 3600) * 1000;
    o->max_ms = (c->max_s > 0 ? c->max_s : 43200) * 1000;
    o->touch_ms = o->idle_ms / 4 < 60000 ? o->idle_ms / 4 : 60000;
    o->secure = strncmp(c->redirect_uri, "https://", 8) == 0;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    pthread_mutex_init(&o->cache_mu, NULL);
    a->oidc = o;
    if (pthread_create(&o->thread, NULL, run, a) != 0) {
        auth_oidc_teardown(a);
        return problem_set(reterr, AH_E_NOMEM, "cannot start the OIDC sign-in thread");
    }
    o->started = true;
    return 0;
}

void auth_oidc_teardown(struct auth *a) {
    struct auth_oidc *o = a->oidc;
    if (!o)
        return;
    pthread_mutex_lock(&o->mu);
    o->stopping = true;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    if (o->started)
        pthread_join(o->thread, NULL);
    while (o->head) {
        struct job *j = o->head;
        o->head = j->next;
        job_free(j);
    }
    free(o->authorization_endpoint);
    free(o->token_endpoint);
    free(o->jwks_uri);
    free(o->end_session_endpoint);
    r_jwks_free(o->jwks);
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
    pthread_mutex_destroy(&o->cache_mu);
    free(o);
    a->oidc = NULL;
}

bool auth_oidc_enabled(const struct auth *a) {
    return a && a->oidc;
}

const char *auth_oidc_provider(const struct auth *a) {
    return a->oidc && a->oidc->cfg.provider_name ? a->oidc->cfg.provider_name
                                                 : "your identity provider";
}

bool auth_oidc_ready(struct auth *a) {
    return a->oidc && __atomic_load_n(&a->oidc->ready, __ATOMIC_ACQUIRE);
}

int64_t auth_session_max_s(const struct auth *a) {
    return a->oidc ? a->oidc->max_ms / 1000 : 0;
}

bool auth_cookie_secure(const struct auth *a) {
    return a->oidc && a->oidc->secure;
}

/* ---- the sign-in, on HTTP threads ------------------------------------------------------------- */

static bool return_to_ok(const char *s) {
    size_t n = strnlen(s, RETURN_TO_MAX + 1);
    if (n == 0 || n > RETURN_TO_MAX || s[0] != '/' || s[1] == '/' || s[1] == '\\')
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '\\')
            return false;
    return true;
}

int auth_oidc_begin(struct auth *a, const char *return_to, char **ret_url,
                    char ret_state[AUTH_COOKIE_MAX + 1], char *detail, size_t dn) {
    struct auth_oidc *o = a->oidc;
    struct store *st = __atomic_load_n(&a->store, __ATOMIC_ACQUIRE);
    if (!o) {
        snprintf(detail, dn, "sign-in through an identity provider is not configured here");
        return AH_E_UNSUPPORTED;
    }
    if (!auth_oidc_ready(a) || !st) {
        snprintf(detail, dn, "the identity provider has not answered yet; try again shortly");
        return AH_E_UNAVAIL;
    }
    if (!return_to)
        return_to = "/";
    if (!return_to_ok(return_to)) {
        snprintf(detail, dn, "returnTo must be a path on this server (starting with one '/', "
                             "printable, at most %d characters)",
                 RETURN_TO_MAX);
        return AH_E_INVAL;
    }
    char state[65], nonce[65], verifier[65], id[33], state_hash[65], challenge[44];
    unsigned char vd[32];
    int rc = random_hex(32, state);
    rc = rc < 0 ? rc : random_hex(32, nonce);
    rc = rc < 0 ? rc : random_hex(32, verifier); /* 64 unreserved characters (RFC 7636 §4.1) */
    rc = rc < 0 ? rc : random_hex(16, id);
    if (rc == 0 && (!sha256_hex(state, state_hash) || !sha256(verifier, vd)))
        rc = AH_E_NOMEM;
    if (rc < 0) {
        snprintf(detail, dn, "cannot start a sign-in now");
        return rc;
    }
    b64url32(vd, challenge);
    int64_t now = time_now_ms();
    struct websession_row w = {.id = id, .token_hash = state_hash, .status = "login",
                               .nonce = nonce, .verifier = verifier,
                               .return_to = (char *)return_to, .created_at = now,
                               .last_seen_at = now, .expires_at = now + LOGIN_TTL_MS};
    rc = store_websession_put(st, &w, NULL);
    if (rc < 0) {
        OPENSSL_cleanse(verifier, sizeof(verifier));
        snprintf(detail, dn, "cannot start a sign-in now; try again shortly");
        return rc == AH_E_NOMEM ? rc : AH_E_UNAVAIL;
    }
    struct ah_buf b = {.max = 16384};
    rc = append_str(&b, o->authorization_endpoint);
    rc = rc < 0 ? rc : append_str(&b, strchr(o->authorization_endpoint, '?') ? "&" : "?");
    rc = rc < 0 ? rc : append_str(&b, "response_type=code&client_id=");
    rc = rc < 0 ? rc : append_esc(&b, o->cfg.client_id);
    rc = rc < 0 ? rc : append_str(&b, "&redirect_uri=");
    rc = rc < 0 ? rc : append_esc(&b, o->cfg.redirect_uri);
    rc = rc < 0 ? rc : append_str(&b, "&scope=openid");
    if (o->cfg.scopes && *o->cfg.scopes) {
        rc = rc < 0 ? rc : append_str(&b, "%20");
        rc = rc < 0 ? rc : append_esc(&b, o->cfg.scopes);
    }
    rc = rc < 0 ? rc : append_str(&b, "&state=");
    rc = rc < 0 ? rc : append_str(&b, state);
    rc = rc < 0 ? rc : append_str(&b, "&nonce=");
    rc = rc < 0 ? rc : append_str(&b, nonce);
    rc = rc < 0 ? rc : append_str(&b, "&code_challenge=");
    rc = rc < 0 ? rc : append_str(&b, challenge);
    rc = rc < 0 ? rc : append_str(&b, "&code_challenge_method=S256");
    char *url = rc == 0 ? buf_text(&b) : NULL;
    ah_buf_clear(&b);
    OPENSSL_cleanse(verifier, sizeof(verifier));
    if (!url) {
        snprintf(detail, dn, "out of memory");
        return AH_E_NOMEM;
    }
    memcpy(ret_state, state, sizeof(state));
    *ret_url = url;
    return 0;
}

int auth_oidc_finish(struct auth *a, const char *state, const char *state_cookie,
                     const char *code, const struct auth_origin *org,
                     char ret_cookie[AUTH_COOKIE_MAX + 1], char **ret_return_to, char *detail,
                     size_t dn) {
    struct auth_oidc *o = a->oidc;
    struct store *st = __atomic_load_n(&a->store, __ATOMIC_ACQUIRE);
    if (!o) {
        snprintf(detail, dn, "sign-in through an identity provider is not configured here");
        return AH_E_UNSUPPORTED;
    }
    if (!st) {
        snprintf(detail, dn, "the server is starting; try again shortly");
        return AH_E_UNAVAIL;
    }
    /* the state must be the one this browser was given (login CSRF), and well-formed */
    if (!is_hex(state, 64) || !is_hex(state_cookie, 64) || !auth_str_equal(state, state_cookie)) {
        snprintf(detail, dn, "this sign-in was not started in this browser, or took longer than "
                             "ten minutes; start it again");
        return AH_E_AUTH;
    }
    if (!code || !*code || strnlen(code, CODE_MAX + 1) > CODE_MAX) {
        snprintf(detail, dn, "the identity provider sent no usable code");
        return AH_E_AUTH;
    }
    char state_hash[65];
    if (!sha256_hex(state, state_hash)) {
        snprintf(detail, dn, "out of memory");
        return AH_E_NOMEM;
    }
    int64_t now = time_now_ms();
    AH_AUTO(websession_row_freep) struct websession_row *login = NULL;
    int rc = store_websession_take_login(st, state_hash, now, &login);
    if (rc == AH_E_NOTFOUND) {
        snprintf(detail, dn, "this sign-in is unknown, was already used or has expired; start "
                             "it again");
        return AH_E_AUTH;
    }
    if (rc < 0 || !login->nonce || !login->verifier) {
        snprintf(detail, dn, "cannot finish the sign-in now; try again shortly");
        return rc < 0 ? AH_E_UNAVAIL : AH_E_AUTH;
    }
    struct job *j = calloc(1, sizeof(*j));
    char cookie[65], cookie_hash[65], id[33];
    char *back = strdup(login->return_to ? login->return_to : "/");
    rc = j && back && (j->code = strdup(code)) ? 0 : AH_E_NOMEM;
    rc = rc < 0 ? rc : random_hex(32, cookie);
    rc = rc < 0 ? rc : random_hex(16, id);
    if (rc == 0 && !sha256_hex(cookie, cookie_hash))
        rc = AH_E_NOMEM;
    struct websession_row w = {.id = id, .token_hash = cookie_hash, .status = "pending",
                               .created_at = now, .last_seen_at = now,
                               .expires_at = now + o->max_ms};
    if (rc == 0)
        rc = store_websession_put(st, &w, NULL);
    if (rc < 0) {
        OPENSSL_cleanse(cookie, sizeof(cookie));
        job_free(j);
        free(back);
        snprintf(detail, dn, "cannot finish the sign-in now; try again shortly");
        return rc == AH_E_NOMEM ? rc : AH_E_UNAVAIL;
    }
    snprintf(j->session_id, sizeof(j->session_id), "%s", id);
    snprintf(j->verifier, sizeof(j->verifier), "%s", login->verifier);
    snprintf(j->nonce, sizeof(j->nonce), "%s", login->nonce);
    snprintf(j->request_id, sizeof(j->request_id), "%s",
             org && org->request_id ? org->request_id : "");
    snprintf(j->source, sizeof(j->source), "%s", org && org->source ? org->source : "");
    j->expires_at = w.expires_at;
    OPENSSL_cleanse(login->verifier, strlen(login->verifier));
    pthread_mutex_lock(&o->mu);
    bool full = o->queued >= QUEUE_MAX || o->stopping;
    if (!full) {
        if (o->tail)
            o->tail->next = j;
        else
            o->head = j;
        o->tail = j;
        o->queued++;
        pthread_cond_signal(&o->cv);
    }
    pthread_mutex_unlock(&o->mu);
    if (full) {
        job_free(j);
        w.status = "failed";
        w.error = "the server had too many sign-ins under way";
        (void)store_websession_finish(st, &w, NULL);
        OPENSSL_cleanse(cookie, sizeof(cookie));
        free(back);
        snprintf(detail, dn, "too many sign-ins are under way; try again shortly");
        return AH_E_UNAVAIL;
    }
    memcpy(ret_cookie, cookie, sizeof(cookie));
    OPENSSL_cleanse(cookie, sizeof(cookie));
    *ret_return_to = back;
    return 0;
}

/* ---- sessions ---------------------------------------------------------------------------------- */

void auth_session_csrf(const char *cookie, char out[65]) {
    /* a label keeps this hash apart from the one the store keeps (token_hash) */
    unsigned char d[32];
    unsigned int n = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
              EVP_DigestUpdate(c, "ah-csrf\n", 8) &&
              EVP_DigestUpdate(c, cookie, strlen(cookie)) && EVP_DigestFinal_ex(c, d, &n);
    EVP_MD_CTX_free(c);
    if (!ok)
        memset(d, 0, sizeof(d)); /* never matches a sent token: hex of zeros is refused below */
    hex(d, 32, out);
}

static void cache_forget(struct auth_oidc *o) {
    pthread_mutex_lock(&o->cache_mu);
    memset(o->cache, 0, sizeof(o->cache));
    pthread_mutex_unlock(&o->cache_mu);
}

/* Why a stored session does not authenticate (NULL: it does). */
static const char *refusal(const struct auth_oidc *o, const struct websession_row *w, int64_t now) {
    if (strcmp(w->status, "pending") == 0)
        return "the sign-in is still completing; try again in a moment";
    if (strcmp(w->status, "failed") == 0)
        return "the sign-in failed; sign in again";
    if (strcmp(w->status, "active") != 0)
        return "no such session; sign in";
    if (w->revoked_at)
        return "this session was signed out; sign in again";
    if (now >= w->expires_at)
        return "the session has expired; sign in again";
    if (now - w->last_seen_at >= o->idle_ms)
        return "the session expired after a period without activity; sign in again";
    return NULL;
}

int auth_session_check(struct auth *a, const char *cookie, struct auth_principal *ret,
                       char *detail, size_t dn) {
    struct auth_oidc *o = a->oidc;
    if (!o) {
        snprintf(detail, dn, "sessions are not enabled here (no identity provider configured)");
        return AH_E_AUTH;
    }
    if (!is_hex(cookie, AUTH_COOKIE_MAX)) {
        snprintf(detail, dn, "the session cookie is malformed; sign in again");
        return AH_E_AUTH;
    }
    unsigned char digest[32];
    char token_hash[65];
    if (!sha256(cookie, digest)) {
        snprintf(detail, dn, "cannot check the session now");
        return AH_E_UNAVAIL;
    }
    hex(digest, 32, token_hash);
    struct store *st = __atomic_load_n(&a->store, __ATOMIC_ACQUIRE);
    struct sess_cached *slot = &o->cache[(digest[0] | (digest[1] << 8)) % SESSION_CACHE_SLOTS];
    int64_t mono = time_mono_ms(), now = time_now_ms();
    int64_t touch_from = 0; /* the last_seen_at to record as the new one, when due */
    pthread_mutex_lock(&o->cache_mu);
    bool hit = slot->until_ms > mono && CRYPTO_memcmp(slot->digest, digest, 32) == 0 &&
               now < slot->expires_at && now - slot->last_seen_at < o->idle_ms;
    if (hit) {
        *ret = slot->p;
        if (now - slot->last_seen_at >= o->touch_ms) {
            slot->last_seen_at = now;
            touch_from = now;
        }
    }
    pthread_mutex_unlock(&o->cache_mu);
    if (hit) {
        if (touch_from && st)
            (void)store_websession_touch(st, ret->credential_id, touch_from); /* best effort */
        return 0;
    }
    if (!st) {
        snprintf(detail, dn, "the server is starting; try again shortly");
        return AH_E_UNAVAIL;
    }
    AH_AUTO(websession_row_freep) struct websession_row *w = NULL;
    int rc = store_websession_get(st, token_hash, &w);
    if (rc == AH_E_NOTFOUND) {
        snprintf(detail, dn, "no such session; sign in");
        return AH_E_AUTH;
    }
    if (rc < 0) {
        snprintf(detail, dn, "cannot check the session now; try again shortly");
        return AH_E_UNAVAIL;
    }
    const char *why = refusal(o, w, now);
    enum auth_role role = AUTH_ROLE_NONE;
    if (!why && (auth_role_parse(w->role, &role) < 0 || !w->tenant_id ||
                 !auth_name_ok(w->tenant_id) || !w->subject))
        why = "this session is unusable; sign in again";
    if (why) {
        snprintf(detail, dn, "%s", why);
        return AH_E_AUTH;
    }
    memset(ret, 0, sizeof(*ret));
    ret->role = role;
    snprintf(ret->kind, sizeof(ret->kind), "session");
    snprintf(ret->credential_id, sizeof(ret->credential_id), "%s", w->id);
    snprintf(ret->subject, sizeof(ret->subject), "oidc:%s", w->subject);
    snprintf(ret->tenant, sizeof(ret->tenant), "%s", w->tenant_id);
    int64_t seen = w->last_seen_at;
    if (now - seen >= o->touch_ms && store_websession_touch(st, w->id, now) == 0)
        seen = now;
    pthread_mutex_lock(&o->cache_mu);
    memcpy(slot->digest, digest, 32);
    slot->until_ms = mono + SESSION_CACHE_MS;
    slot->expires_at = w->expires_at;
    slot->last_seen_at = seen;
    slot->p = *ret;
    pthread_mutex_unlock(&o->cache_mu);
    return 0;
}

json_t *auth_session_json(struct auth *a, const char *cookie) {
    struct auth_oidc *o = a->oidc;
    json_t *j = json_object();
    if (!j)
        return NULL;
    int rc = 0;
    if (o)
        rc |= json_object_set_new(j, "oidc",
                                  json_pack("{s:s, s:s, s:b}", "provider", auth_oidc_provider(a),
                                            "loginUrl", "/api/v1/auth/oidc/login", "ready",
                                            auth_oidc_ready(a)));
    const char *status = "none";
    struct store *st = __atomic_load_n(&a->store, __ATOMIC_ACQUIRE);
    struct websession_row *w = NULL;
    char token_hash[65];
    if (o && st && is_hex(cookie, AUTH_COOKIE_MAX) && sha256_hex(cookie, token_hash) &&
        store_websession_get(st, token_hash, &w) == 0 && strcmp(w->status, "login") != 0) {
        int64_t now = time_now_ms();
        const char *why = refusal(o, w, now);
        status = !why                                   ? "active"
                 : strcmp(w->status, "pending") == 0    ? "pending"
                 : strcmp(w->status, "failed") == 0     ? "failed"
                 : w->revoked_at                         ? "signedOut"
                                                         : "expired";
        if (strcmp(status, "failed") == 0 && w->error)
            rc |= json_object_set_new(j, "error", json_string(w->error));
        if (strcmp(status, "active") == 0) {
            char csrf[65], expires[TIME_RFC3339_LEN + 1], idle[TIME_RFC3339_LEN + 1];
            auth_session_csrf(cookie, csrf);
            time_format(w->expires_at, expires);
            int64_t idle_at = w->last_seen_at + o->idle_ms;
            time_format(idle_at < w->expires_at ? idle_at : w->expires_at, idle);
            rc |= json_object_set_new(
                j, "user",
                json_pack("{s:s, s:s, s:s, s:s}", "id", w->subject ? w->subject : "", "name",
                          w->user_name ? w->user_name : "", "tenantId",
                          w->tenant_id ? w->tenant_id : "", "role", w->role ? w->role : ""));
            rc |= json_object_set_new(j, "csrfToken", json_string(csrf));
            rc |= json_object_set_new(j, "expiresAt", json_string(expires));
            rc |= json_object_set_new(j, "idleExpiresAt", json_string(idle));
        }
    }
    websession_row_free(w);
    rc |= json_object_set_new(j, "status", json_string(status));
    if (rc) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int auth_session_logout(struct auth *a, const char *cookie, const struct auth_origin *org,
                        char **ret_end_url, char ret_id[AUTH_ID_MAX], char *detail, size_t dn) {
    struct auth_oidc *o = a->oidc;
    struct store *st = __atomic_load_n(&a->store, __ATOMIC_ACQUIRE);
    *ret_end_url = NULL;
    char token_hash[65];
    if (!o || !st || !is_hex(cookie, AUTH_COOKIE_MAX) || !sha256_hex(cookie, token_hash)) {
        snprintf(detail, dn, "no session to sign out of");
        return AH_E_AUTH;
    }
    AH_AUTO(websession_row_freep) struct websession_row *w = NULL;
    int rc = store_websession_get(st, token_hash, &w);
    if (rc == AH_E_NOTFOUND || (rc == 0 && (strcmp(w->status, "login") == 0 || w->revoked_at))) {
        snprintf(detail, dn, "no session to sign out of");
        return AH_E_AUTH;
    }
    if (rc < 0) {
        snprintf(detail, dn, "cannot sign out now; try again shortly");
        return AH_E_UNAVAIL;
    }
    char *end = NULL;
    if (o->cfg.post_logout_uri && o->end_session_endpoint && w->id_token) {
        struct ah_buf b = {.max = 16384};
        rc = append_str(&b, o->end_session_endpoint);
        rc = rc < 0 ? rc : append_str(&b, strchr(o->end_session_endpoint, '?') ? "&" : "?");
        rc = rc < 0 ? rc : append_str(&b, "id_token_hint=");
        rc = rc < 0 ? rc : append_esc(&b, w->id_token);
        rc = rc < 0 ? rc : append_str(&b, "&post_logout_redirect_uri=");
        rc = rc < 0 ? rc : append_esc(&b, o->cfg.post_logout_uri);
        rc = rc < 0 ? rc : append_str(&b, "&client_id=");
        rc = rc < 0 ? rc : append_esc(&b, o->cfg.client_id);
        end = rc == 0 ? buf_text(&b) : NULL;
        ah_buf_clear(&b);
    }
    char actor[AUTH_ID_MAX + 8];
    snprintf(actor, sizeof(actor), "oidc:%s", w->subject ? w->subject : "");
    struct audit_entry e = {
        .ts = time_now_ms(),
        .tenant = w->tenant_id,
        .actor = w->subject ? actor : NULL,
        .credential_id = w->id,
        .action = "auth.logout",
        .target = "/api/v1/auth/logout",
        .request_id = org ? org->request_id : NULL,
        .source = org && org->source && *org->source ? org->source : NULL,
        .outcome = "success",
        .status = 0,
    };
    rc = store_websession_revoke(st, w->id, time_now_ms(), &e);
    cache_forget(o);
    if (rc < 0 && rc != AH_E_NOTFOUND) {
        free(end);
        snprintf(detail, dn, "cannot sign out now; try again shortly");
        return AH_E_UNAVAIL;
    }
    *ret_end_url = end;
    snprintf(ret_id, AUTH_ID_MAX, "%s", w->id);
    return 0;
}
