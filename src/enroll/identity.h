/*
 * identity.h — private to enroll/: TLS material of one side and the checks on the peer (D42).
 */
#ifndef AH_ENROLL_IDENTITY_H
#define AH_ENROLL_IDENTITY_H

#include <gnutls/gnutls.h>
#include <sys/stat.h>

#include "link.h"

#define IDENT_ID_MAX 512

struct ident {
    int refs;                    /* connections keep the material they started with */
    gnutls_certificate_credentials_t cred;
    bool insecure;               /* no chain verification of the peer (dev only) */
    char self_id[IDENT_ID_MAX];  /* our SPIFFE id ("" when our certificate has none) */
    struct timespec mtimes[3];   /* files: cert, key, CA when loaded */
    int64_t loaded_ms;           /* monotonic ms when loaded (exec: refresh after ttl) */
    unsigned char leaf_sha256[32]; /* our certificate: a reload that brings the same one is a
                                      no-op, not a reconnect */
};

/* Loads the material named by id (files read, command run). 0 or AH_E_* with err. */
int ident_load(const struct link_identity *id, struct ident **ret, char *err, size_t errn);
/* True when a reload is due: files changed on disk, or the exec ttl passed. */
bool ident_stale(const struct ident *it, const struct link_identity *id, int64_t now_ms);
/* Drops one reference (ident_load gives one); frees at zero. NULL-safe. */
void ident_free(struct ident *it);
/* Records the files' current state (and now, for exec) as loaded: after a failed reload, the
 * next attempt waits for another change or ttl. */
void ident_restamp(struct ident *it, const struct link_identity *id, int64_t now_ms);

/* Verifies the peer's certificate on session s: chained to our CA, within its validity period
 * (both skipped when insecure), and takes the SPIFFE id from its URI SAN into id. 0, or
 * AH_E_AUTH with why ("certificate expired at ...", "not signed by the trusted CA", ...). */
int ident_peer(gnutls_session_t s, const struct ident *it, char *id, size_t idn, char *why,
               size_t whyn);

/* Executor side: does the access point's certificate satisfy --expected-server-id and/or
 * --server-san? 0 or AH_E_AUTH with why (what was expected, what was presented). */
int ident_check_server(gnutls_session_t s, const char *peer_id, const char *expected_id,
                       const char *san_list, char *why, size_t whyn);

/* Access point side: an executor's id in trust domain td matching one of patterns (if any).
 * 0 or AH_E_AUTH with why. */
int ident_check_executor(const char *peer_id, const char *td, const char *const *patterns,
                         char *why, size_t whyn);

/* Validates a --server-san list's syntax. 0 or AH_E_INVAL with err. */
int ident_san_list_check(const char *list, char *err, size_t errn);

int64_t ident_now_ms(void);

#endif
