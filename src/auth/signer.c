/*
 * signer.c — the identity tokens of signer.h, signed with librhonabwy (the library jwt.c
 * verifies with, so what one writes the other reads).
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <rhonabwy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "signer.h"

#define KEY_FILE_MAX 16384
#define MINT_SLOTS 64

struct minted {
    unsigned char digest[32]; /* of the principal's identity */
    int64_t exp_s;            /* 0: empty */
    char *token;
};

struct auth_signer {
    pthread_mutex_t mu; /* priv (rhonabwy shares its JSON), the cache */
    jwk_t *priv;
    char *kid, *jwks, *iss, *aud;
    struct minted cache[MINT_SLOTS];
};

/* The private key in path, or NULL with reterr (AH_E_NOTFOUND: no such file). */
static jwk_t *load_key(const char *path, struct ah_problem *reterr) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            problem_set(reterr, AH_E_NOTFOUND, "no key yet");
        else
            problem_set(reterr, AH_E_INVAL, "cannot read the signing key %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(KEY_FILE_MAX + 1);
    ssize_t n = buf ? read(fd, buf, KEY_FILE_MAX + 1) : -1;
    close(fd);
    jwk_t *k = NULL;
    unsigned int bits = 0;
    if (n > 0 && n <= KEY_FILE_MAX) {
        buf[n] = '\0';
        if (r_jwk_init(&k) != RHN_OK || r_jwk_import_from_json_str(k, buf) != RHN_OK) {
            r_jwk_free(k);
            k = NULL;
        }
    }
    if (buf) {
        explicit_bzero(buf, KEY_FILE_MAX + 1);
        free(buf);
    }
    int type = k ? r_jwk_key_type(k, &bits, R_FLAG_IGNORE_REMOTE) : 0;
    if (!k || !(type & R_KEY_TYPE_PRIVATE) || !(type & R_KEY_TYPE_EC) || bits != 256) {
        r_jwk_free(k);
        problem_set(reterr, AH_E_INVAL, "the signing key %s is not a private EC P-256 JWK%s", path,
             " (remove it to have a new one made)");
        return NULL;
    }
    return k;
}

/* A new key pair, its private half written to path (O_EXCL: a key another process wrote in the
 * meantime wins, and is read instead). */
static jwk_t *make_key(const char *path, struct ah_problem *reterr) {
    jwk_t *priv = NULL, *pub = NULL;
    if (r_jwk_init(&priv) != RHN_OK || r_jwk_init(&pub) != RHN_OK ||
        r_jwk_generate_key_pair(priv, pub, R_KEY_TYPE_EC, 256, "k") != RHN_OK) {
        r_jwk_free(priv);
        r_jwk_free(pub);
        problem_set(reterr, AH_E_NOMEM, "cannot make a signing key");
        return NULL;
    }
    r_jwk_free(pub);
    char *text = r_jwk_export_to_json_str(priv, 0);
    int fd = text ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
    int err = errno;
    bool ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text) && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (text) {
        explicit_bzero(text, strlen(text));
        r_free(text);
    }
    r_jwk_free(priv);
    if (!ok && fd < 0 && err == EEXIST)
        return load_key(path, reterr);
    if (!ok) {
        if (fd >= 0)
            unlink(path);
        problem_set(reterr, AH_E_INVAL, "cannot write the signing key %s: %s", path,
             strerror(fd < 0 ? err : EIO));
        return NULL;
    }
    return load_key(path, reterr);
}

int auth_signer_open(const char *key_path, const char *iss, const char *aud,
                     struct auth_signer **ret, struct ah_problem *reterr) {
    *ret = NULL;
    r_global_init();
    jwk_t *priv = load_key(key_path, reterr);
    if (!priv && reterr->code == AH_E_NOTFOUND) {
        problem_clear(reterr);
        priv = make_key(key_path, reterr);
    }
    if (!priv)
        return reterr->code ? reterr->code : AH_E_INVAL;
    struct auth_signer *s = calloc(1, sizeof(*s));
    jwk_t *pub = NULL;
    jwks_t *set = NULL;
    char *tp = NULL, *jwks = NULL;
    int rc = AH_E_NOMEM;
    if (!s || r_jwk_init(&pub) != RHN_OK || r_jwk_extract_pubkey(priv, pub, 0) != RHN_OK ||
        !(tp = r_jwk_thumbprint(pub, R_JWK_THUMB_SHA256, R_FLAG_IGNORE_REMOTE)))
        goto out;
    /* the kid is the thumbprint of the public key (RFC 7638): the same key, the same id */
    if (r_jwk_set_property_str(pub, "kid", tp) != RHN_OK ||
        r_jwk_set_property_str(priv, "kid", tp) != RHN_OK ||
        r_jwk_set_property_str(pub, "alg", "ES256") != RHN_OK ||
        r_jwk_set_property_str(pub, "use", "sig") != RHN_OK || r_jwks_init(&set) != RHN_OK ||
        r_jwks_append_jwk(set, pub) != RHN_OK || !(jwks = r_jwks_export_to_json_str(set, 0)))
        goto out;
    pthread_mutex_init(&s->mu, NULL);
    s->priv = AH_TAKE(priv);
    if (!(s->kid = strdup(tp)) || !(s->jwks = strdup(jwks)) || !(s->iss = strdup(iss)) ||
        !(s->aud = strdup(aud))) {
        auth_signer_free(AH_TAKE(s));
        goto out;
    }
    *ret = AH_TAKE(s);
    rc = 0;
out:
    if (rc < 0)
        problem_set(reterr, rc, "out of memory preparing the signing key");
    free(s);
    r_jwk_free(priv);
    r_jwk_free(pub);
    r_jwks_free(set);
    r_free(tp);
    r_free(jwks);
    return rc;
}

void auth_signer_free(struct auth_signer *s) {
    if (!s)
        return;
    for (size_t i = 0; i < MINT_SLOTS; i++)
        free(s->cache[i].token);
    r_jwk_free(s->priv);
    pthread_mutex_destroy(&s->mu);
    free(s->kid);
    free(s->jwks);
    free(s->iss);
    free(s->aud);
    free(s);
}

const char *auth_signer_jwks(const struct auth_signer *s) {
    return s->jwks;
}

const char *auth_signer_kid(const struct auth_signer *s) {
    return s->kid;
}

static const char *subject_of(const struct auth_principal *p) {
    const char *c = strchr(p->subject, ':');
    return c && c[1] ? c + 1 : p->subject;
}

static char *sign(struct auth_signer *s, const struct auth_principal *p, int64_t now) {
    json_t *claims = json_pack("{s:s, s:s, s:s, s:s, s:[s], s:I, s:I, s:I}", "iss", s->iss,
                               "aud", s->aud, "sub", subject_of(p), "tenant", p->tenant,
                               "roles", auth_role_name(p->role), "iat", (json_int_t)now, "nbf",
                               (json_int_t)now, "exp", (json_int_t)(now + AUTH_SIGNER_TTL_S));
    if (claims && p->project[0] &&
        json_object_set_new(claims, "project", json_string(p->project)) < 0) {
        json_decref(claims);
        return NULL;
    }
    jwt_t *jwt = NULL;
    char *out = NULL, *tok = NULL;
    if (claims && r_jwt_init(&jwt) == RHN_OK && r_jwt_set_sign_alg(jwt, R_JWA_ALG_ES256) == RHN_OK &&
        r_jwt_set_header_str_value(jwt, "kid", s->kid) == RHN_OK &&
        r_jwt_set_full_claims_json_t(jwt, claims) == RHN_OK &&
        (tok = r_jwt_serialize_signed(jwt, s->priv, 0)))
        out = strdup(tok);
    r_free(tok);
    r_jwt_free(jwt);
    json_decref(claims);
    return out;
}

char *auth_signer_mint(struct auth_signer *s, const struct auth_principal *p) {
    char id[AUTH_ID_MAX + 2 * AUTH_NAME_MAX + 16];
    int n = snprintf(id, sizeof(id), "%s%c%s%c%s%c%d", p->subject, 0, p->tenant, 0, p->project,
                     0, (int)p->role);
    unsigned char digest[32];
    unsigned int dl = 0;
    if (n < 0 || !EVP_Digest(id, (size_t)n, digest, &dl, EVP_sha256(), NULL))
        return NULL;
    int64_t now = time_now_ms() / 1000;
    struct minted *m = &s->cache[(digest[0] | (digest[1] << 8)) % MINT_SLOTS];
    pthread_mutex_lock(&s->mu);
    char *out = NULL;
    if (m->token && m->exp_s - now > AUTH_SIGNER_TTL_S / 2 && memcmp(m->digest, digest, 32) == 0) {
        out = strdup(m->token);
    } else {
        char *tok = sign(s, p, now);
        if (tok) {
            free(m->token);
            m->token = tok;
            memcpy(m->digest, digest, 32);
            m->exp_s = now + AUTH_SIGNER_TTL_S;
            out = strdup(tok);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}
