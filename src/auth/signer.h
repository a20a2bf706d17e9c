/*
 * signer.h — short-lived identity tokens this process signs for another access point
 * (`ah webui --remote-server URL` with its own sign-in, issue 14 item 5): the person signed in
 * here is named to the remote access point by an ES256 JWT it verifies with this process's
 * public key set (its jwks setting pointing at our /_ah/jwks.json or at the file we write).
 *
 * The key pair (EC P-256) is made on first use and kept as a private JWK in a file readable by
 * its owner only; its kid is the key's RFC 7638 thumbprint. Thread-safe.
 */
#ifndef AH_AUTH_SIGNER_H
#define AH_AUTH_SIGNER_H

#include "auth.h"

#define AUTH_SIGNER_TTL_S 60 /* a token's life: long enough for one request, no longer */

struct auth_signer;
/* Loads the private key from key_path, or makes one and writes it there (0600, never
 * overwriting a file that appeared meanwhile). iss and aud are copied. 0, or AH_E_* with
 * reterr saying why (an unreadable or foreign key file is AH_E_INVAL). */
int auth_signer_open(const char *key_path, const char *iss, const char *aud,
                     struct auth_signer **ret, struct ah_problem *reterr);
void auth_signer_free(struct auth_signer *s); /* NULL-safe */
/* The public key set, as JSON text (borrowed; lives as long as s). */
const char *auth_signer_jwks(const struct auth_signer *s);
/* The key's id (its thumbprint; borrowed). */
const char *auth_signer_kid(const struct auth_signer *s);
/* A compact JWS naming p: sub (p->subject without its "oidc:" kind), tenant, project when
 * set, roles [p->role], iss, aud, iat, nbf, exp = now + AUTH_SIGNER_TTL_S, kid in the header.
 * No jti: the remote's rate limits and audit records follow the person (their sub), not each
 * token. A token for the same principal is reused while it has more than half its life left
 * (the remote verifies it once and caches it). Caller frees; NULL on OOM or a signing error. */
char *auth_signer_mint(struct auth_signer *s, const struct auth_principal *p);

#endif
