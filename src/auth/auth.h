/*
 * auth.h — who is calling and what they may do: API keys, JWT bearer tokens, roles, the tenant a
 * credential acts for, rate limits and the audit log. The http layer runs it as middleware
 * (api/access.c wires it to the routes); handlers only see the resulting principal.
 *
 * Modes (D22). While no credential source exists — no usable API key in the store and no JWT
 * issuer configured — every request is the single local admin, exactly as before authentication
 * existed. Once one exists every request needs credentials, on loopback too, except the public
 * routes (health, readiness, version, the OpenAPI document, the login flow).
 *
 * Credentials: `Authorization: ApiKey ahk_<id>_<secret>` or `X-API-Key: ahk_…` (D22), and
 * `Authorization: Bearer <JWT>`. An API key is stored only as a random salt and
 * SHA-256(salt || secret), compared in constant time; its tenant, project and role come from
 * the store (D35: never from the request).
 *
 * Threading: one struct auth is shared by every HTTP thread; all calls are thread-safe.
 */
#ifndef AH_AUTH_H
#define AH_AUTH_H

#include "../store/store.h"

enum auth_role {
    AUTH_ROLE_NONE = 0,
    AUTH_ROLE_VIEWER = 1,   /* reads */
    AUTH_ROLE_OPERATOR = 2, /* viewer + tasks, session control, prompts, chat, drafts, snapshots */
    AUTH_ROLE_ADMIN = 3,    /* everything, incl. keys, executors, audit */
};
const char *auth_role_name(enum auth_role r);
/* "viewer", "operator" or "admin"; AH_E_INVAL otherwise. */
int auth_role_parse(const char *s, enum auth_role *ret);

#define AUTH_NAME_MAX 64  /* tenant and project names */
#define AUTH_ID_MAX 128   /* credential ids and subjects */
#define AUTH_KEY_MAX 200  /* the longest API key text we look at */

/* The caller of one request. */
struct auth_principal {
    enum auth_role role;
    bool local;       /* no credentials configured: the single local admin (D22) */
    bool impersonate; /* may name another tenant with X-Tenant-ID (D35, admin only) */
    char kind[8];     /* "local", "apikey", "jwt" */
    char credential_id[AUTH_ID_MAX]; /* key id, or the token's jti/sub: never a secret */
    char subject[AUTH_ID_MAX];       /* the actor in audit records */
    char tenant[AUTH_NAME_MAX + 1];
    char project[AUTH_NAME_MAX + 1]; /* "" = every project of the tenant */
};

struct auth_config {
    /* D23 token buckets. 0 picks the default: 20 req/s burst 100 per credential, task creation
     * 2/s (burst 10) per tenant. */
    double rate, burst, task_rate, task_burst;
    /* failed authentications per second per client address, burst 10 times that (0: 30/s) */
    double fail_rate;
    size_t max_buckets; /* LRU bound of the bucket table (0: 10000) */
    /* JWT bearer tokens: a JWKS file (or https URL) and the expected issuer and audience. */
    const char *jwks; /* NULL: JWT off */
    const char *issuer, *audience;
    const char *claim_tenant, *claim_project, *claim_roles; /* NULL: tenant, project, roles */
    int64_t leeway_s;                                       /* exp/nbf leeway; 0: 60 */
    int64_t audit_retention_days; /* audit records older than this are deleted; 0: kept */
    /* OIDC sign-in for people (oidc.c, D36): on when issuer is set. */
    struct auth_oidc_config {
        const char *issuer;        /* discovery at issuer + /.well-known/openid-configuration */
        const char *client_id;     /* required with issuer */
        const char *client_secret; /* NULL: a public client (PKCE alone) */
        const char *redirect_uri;  /* required: this server's .../api/v1/auth/oidc/callback */
        const char *scopes;        /* asked besides openid, space separated; NULL: none */
        const char *provider_name; /* shown on the sign-in button; NULL: "your identity provider" */
        const char *claim_user;    /* the user's name in audit records; NULL: sub */
        const char *claim_tenant;  /* NULL: tenant */
        const char *claim_roles;   /* NULL: roles */
        const char *default_tenant; /* when the token has no tenant claim; NULL: refused */
        const char *default_role;   /* when it names no known role; NULL: refused */
        int64_t idle_s, max_s;      /* session expiry: idle (0: 3600) and absolute (0: 43200) */
        const char *post_logout_uri; /* with it, logout also ends the provider's session */
    } oidc;
};

struct auth;
/* NULL-safe free. auth_new fails only on bad configuration (reterr says why) or OOM. */
int auth_new(const struct auth_config *cfg, struct auth **ret, struct ah_problem *reterr);
void auth_free(struct auth *a);
/* The store keys live in (borrowed; NULL withdraws it before the store closes, and stops the
 * OIDC sign-in thread, which writes to it: call it after the HTTP server stopped). */
void auth_set_store(struct auth *a, struct store *st);
/* True when some credential source exists, so every request needs credentials. Reads the key
 * count from the store at most once a second (a key made offline by `ah admin api-key create`
 * switches a running server over within that second). */
bool auth_required(struct auth *a);
/* True when a JWT issuer is configured (a credential source independent of the store). */
bool auth_has_issuer(const struct auth *a);
/* Forget the cached key count and verified keys (after a key was created or revoked here). */
void auth_invalidate(struct auth *a);
/* Calls fn(arg, id) for every API key that stopped authenticating lately: revoked by any
 * process sharing the database (`ah admin api-key revoke` run offline included) or expired.
 * Each is forgotten from the verified-key cache too, so its next request is refused. Looks back
 * a minute before the previous call (a revoker's clock a little behind ours is still seen): an
 * id may be reported more than once. One store query: call it from one background thread,
 * about once a second. 0, or the store's error. */
int auth_keys_ended(struct auth *a, void (*fn)(void *arg, const char *id), void *arg);

/* The retention sweep (D37: no API deletes audit records; configuration does): deletes records
 * older than audit_retention_days, at most once an hour, the first time right away. Cheap when
 * not due; called from the request path. */
void auth_audit_sweep(struct auth *a);

/* Checks the credentials a request carries (`authorization`: the Authorization header,
 * `api_key`: X-API-Key; either may be NULL). 0 with *ret filled; AH_E_AUTH with a sentence for
 * the client in `detail` (never echoing the credential); AH_E_UNAVAIL when the store is not
 * open yet. */
int auth_authenticate(struct auth *a, const char *authorization, const char *api_key,
                      struct auth_principal *ret, char *detail, size_t detail_size);

/* ---- API keys -------------------------------------------------------------------------------- */

struct auth_key_spec {
    const char *tenant;  /* required */
    const char *project; /* NULL: every project */
    enum auth_role role;
    const char *name;    /* NULL or a label */
    int64_t expires_at;  /* ms; 0 = never */
    bool impersonate;    /* admin keys only */
};
/* Validates spec (names, role, expiry in the future, impersonation only for admin) into
 * reterr's field errors; 0 or AH_E_INVAL. */
int auth_key_spec_check(const struct auth_key_spec *spec, int64_t now, struct ah_problem *reterr);
/* Makes a key: random id, secret and salt (OpenSSL RAND_bytes), stores the salted hash (with
 * `audit` in the same transaction when given). *ret_key is the whole key text, shown once
 * (caller frees; wipe it after use); *ret_row the stored row (caller frees). */
int auth_key_create(struct store *st, const struct auth_key_spec *spec,
                    const struct audit_entry *audit, char **ret_key, struct apikey_row **ret_row);
/* The JSON of a stored key for listings (no salt, no hash). NULL on OOM. */
json_t *auth_key_json(const struct apikey_row *k);
/* Parses "ahk_<id>_<secret>": 0 with the id copied out, or AH_E_INVAL. */
int auth_key_parse(const char *key, char id[AUTH_ID_MAX], const char **ret_secret);

/* ---- rate limits (D23) ----------------------------------------------------------------------- */

struct auth_limit {
    bool allowed;
    int64_t limit;       /* RateLimit-Limit: the bucket's burst */
    int64_t remaining;   /* RateLimit-Remaining */
    int64_t reset_s;     /* RateLimit-Reset: seconds until the bucket is full again */
    int64_t retry_after; /* Retry-After when refused: seconds until one token is back */
};
/* Takes one token from the credential's bucket and, for task creation, one from the tenant's
 * task bucket. Buckets live in memory only, in a bounded LRU table. */
void auth_rate_take(struct auth *a, const struct auth_principal *p, bool task_create,
                    int64_t now_ms, struct auth_limit *ret);

/* Takes one token from the bucket of failed authentications of a client address (fail_rate,
 * default 30/s, burst 10 times that): past it failures are answered 429 and not audited, so a flood of bad credentials cannot
 * turn into a flood of audit writes. */
void auth_fail_take(struct auth *a, const char *addr, int64_t now_ms, struct auth_limit *ret);

/* ---- JWT (jwt.c) ----------------------------------------------------------------------------- */

struct auth_jwt;
/* Verifies a compact JWS against the configured key set and claims; 0 with *ret filled, or
 * AH_E_AUTH with a reason in detail. */
int auth_jwt_verify(struct auth *a, const char *token, struct auth_principal *ret, char *detail,
                    size_t detail_size);

/* ---- OIDC sign-in and browser sessions (oidc.c; D36) ----------------------------------------- */

#define AUTH_SESSION_COOKIE "ah_session"  /* the session, Path=/ */
#define AUTH_STATE_COOKIE "ah_oidc_state" /* binds a sign-in to the browser that started it */
#define AUTH_COOKIE_MAX 64                /* hex of 32 random bytes */

/* True when OIDC sign-in is configured. */
bool auth_oidc_enabled(const struct auth *a);
/* The name on the sign-in button. */
const char *auth_oidc_provider(const struct auth *a);
/* True once discovery succeeded (the provider's endpoints and keys are known). */
bool auth_oidc_ready(struct auth *a);
/* Seconds a session lives at most (the cookie's Max-Age). */
int64_t auth_session_max_s(const struct auth *a);
/* Cookies get Secure when the redirect URI is https: the browser reaches us over TLS. */
bool auth_cookie_secure(const struct auth *a);

/* Starts a sign-in: a random state, nonce and PKCE verifier (S256), kept in the store for ten
 * minutes. *ret_url (caller frees) is the provider's authorization URL; ret_state (hex) goes in
 * the AUTH_STATE_COOKIE. return_to must be a local path ("/…", not "//…"); NULL: "/".
 * AH_E_UNAVAIL before discovery succeeded; AH_E_INVAL for a bad return_to. */
int auth_oidc_begin(struct auth *a, const char *return_to, char **ret_url,
                    char ret_state[AUTH_COOKIE_MAX + 1], char *detail, size_t dn);

/* Who and where, for the audit records a sign-in writes. Borrowed strings. */
struct auth_origin {
    const char *request_id, *source;
};
/* The provider's redirect back: checks that `state` is the one this browser started
 * (state_cookie) and not used before, then makes a pending session and queues the code's
 * exchange on the sign-in thread (no HTTP thread waits on the provider). ret_cookie (hex) is
 * the new session's AUTH_SESSION_COOKIE; *ret_return_to (caller frees) where to send the
 * browser. The session turns active (or failed) once the thread verified the ID token.
 * AH_E_AUTH (400-worthy: unknown, expired or foreign state, provider error), AH_E_UNAVAIL. */
int auth_oidc_finish(struct auth *a, const char *state, const char *state_cookie,
                     const char *code, const struct auth_origin *o,
                     char ret_cookie[AUTH_COOKIE_MAX + 1], char **ret_return_to, char *detail,
                     size_t dn);

/* The caller of a request that carries a session cookie: 0 with *ret filled (kind "session")
 * while the session is active and within its idle and absolute expiry; AH_E_AUTH otherwise
 * (detail says why: pending, failed, expired, signed out, unknown); AH_E_UNAVAIL when the
 * store cannot answer. */
int auth_session_check(struct auth *a, const char *cookie, struct auth_principal *ret,
                       char *detail, size_t dn);
/* The CSRF token of a session (hex SHA-256 of a label and the cookie): unsafe requests
 * authenticated by the cookie must carry it in X-CSRF-Token. */
void auth_session_csrf(const char *cookie, char out[65]);
/* What GET /api/v1/auth/session answers for this cookie (NULL: none): the session's state,
 * user, tenant, role, expiry and CSRF token, and the provider. NULL on OOM. */
json_t *auth_session_json(struct auth *a, const char *cookie);
/* Signs out: the session is revoked in the store (audited in the same transaction) and
 * forgotten here. *ret_end_url (caller frees; may be NULL) is the provider's end-session URL
 * when post_logout_uri is configured; ret_id the session's public id (its credential_id).
 * AH_E_AUTH when the cookie names no live session. */
int auth_session_logout(struct auth *a, const char *cookie, const struct auth_origin *o,
                        char **ret_end_url, char ret_id[AUTH_ID_MAX], char *detail, size_t dn);

/* ---- helpers --------------------------------------------------------------------------------- */

/* True when s is a tenant or project name: 1..64 of [A-Za-z0-9._-]. */
bool auth_name_ok(const char *s);
/* Constant-time equality of two strings of any length (the length itself may leak). */
bool auth_str_equal(const char *a, const char *b);

#endif
