/*
 * identity.c — TLS material and peer policy of the executor link (D42).
 *
 * Providers: files (PEM cert/key/CA, reloaded when they change on disk), exec (a command prints
 * the PEM certificate and key; rerun every ttl), insecure (dev only: the peer's chain and dates
 * are not checked, its SPIFFE id still is). spiffe (Workload API) and vault are known names that
 * are not built in. Every refusal gives one line saying what was expected and what was
 * presented: the caller logs it and sends it to the peer as the close reason.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "identity.h"

#define CMD_OUTPUT_MAX (1024 * 1024)

int64_t ident_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool name_ok(const char *p, size_t n, bool td) {
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        bool ok = td ? (islower(ch) || isdigit(ch) || ch == '.' || ch == '-' || ch == '_')
                     : (isalnum(ch) || ch == '.' || ch == '-' || ch == '_');
        if (!ok)
            return false;
    }
    return true;
}

bool link_spiffe_agent_id(const char *id, char *td, size_t tdn, char *name, size_t namen) {
    static const char scheme[] = "spiffe://", path[] = "/ah/agent/";
    if (!id || strncmp(id, scheme, sizeof(scheme) - 1) != 0)
        return false;
    const char *d = id + sizeof(scheme) - 1, *slash = strchr(d, '/');
    if (!slash || !name_ok(d, (size_t)(slash - d), true))
        return false;
    if (strncmp(slash, path, sizeof(path) - 1) != 0)
        return false;
    const char *nm = slash + sizeof(path) - 1;
    if (!name_ok(nm, strlen(nm), false) || strlen(nm) > AH_LIMIT_NAME)
        return false;
    if (td)
        snprintf(td, tdn, "%.*s", (int)(slash - d), d);
    if (name)
        snprintf(name, namen, "%s", nm);
    return true;
}

/* The trust domain of any spiffe:// id, or "" */
static void spiffe_td(const char *id, char *td, size_t tdn) {
    td[0] = '\0';
    if (!id || strncmp(id, "spiffe://", 9) != 0)
        return;
    const char *d = id + 9, *slash = strchr(d, '/');
    size_t n = slash ? (size_t)(slash - d) : strlen(d);
    snprintf(td, tdn, "%.*s", (int)n, d);
}

int link_identity_check(const struct link_identity *id, char *err, size_t errn) {
    const char *p = id->provider && *id->provider ? id->provider : "files";
    if (strcmp(p, "spiffe") == 0) {
        snprintf(err, errn,
                 "identity provider 'spiffe' (SPIFFE Workload API socket) is not built in: use "
                 "--identity exec with --dynamic-cert-cmd (e.g. a script around 'spire-agent api "
                 "fetch x509') or --identity files");
        return AH_E_NOTIMPL;
    }
    if (strcmp(p, "vault") == 0) {
        snprintf(err, errn, "identity provider 'vault' is not built in: use --identity exec with "
                            "--dynamic-cert-cmd (a command that prints PEM) or --identity files");
        return AH_E_NOTIMPL;
    }
    if (strcmp(p, "files") == 0) {
        if (!id->cert_file || !id->key_file || !id->ca_file) {
            snprintf(err, errn, "identity 'files' needs a certificate, a key and a CA bundle "
                                "(PEM files)");
            return AH_E_INVAL;
        }
        return 0;
    }
    if (strcmp(p, "exec") == 0) {
        if (!id->cert_cmd || !*id->cert_cmd || !id->ca_file) {
            snprintf(err, errn, "identity 'exec' needs --dynamic-cert-cmd (a command printing "
                                "the PEM certificate and key) and a CA bundle");
            return AH_E_INVAL;
        }
        if (id->cert_ttl_ms < 0) {
            snprintf(err, errn, "--dynamic-cert-ttl must be positive");
            return AH_E_INVAL;
        }
        return 0;
    }
    if (strcmp(p, "insecure") == 0) {
        if (!id->allow_insecure) {
            snprintf(err, errn, "identity 'insecure' does not verify the peer's certificate: "
                                "refused unless --allow-insecure is given (development only)");
            return AH_E_INVAL;
        }
        if (!id->cert_file || !id->key_file) {
            snprintf(err, errn, "identity 'insecure' still needs a certificate and key (PEM "
                                "files; self-signed is fine) carrying this side's SPIFFE id");
            return AH_E_INVAL;
        }
        return 0;
    }
    snprintf(err, errn, "unknown identity provider '%s' (files, exec, insecure, spiffe, vault)",
             p);
    return AH_E_INVAL;
}

/* The single spiffe:// URI SAN of crt into out ("" when none). AH_E_AUTH when it has several. */
static int crt_spiffe_id(gnutls_x509_crt_t crt, char *out, size_t n) {
    out[0] = '\0';
    int found = 0;
    for (unsigned i = 0; i < 64; i++) {
        char buf[IDENT_ID_MAX];
        size_t sz = sizeof(buf) - 1;
        unsigned crit = 0;
        int t = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &sz, &crit);
        if (t == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (t != GNUTLS_SAN_URI)
            continue;
        buf[sz] = '\0';
        if (strncmp(buf, "spiffe://", 9) == 0) {
            if (found++)
                return AH_E_AUTH; /* SPIFFE: exactly one */
            snprintf(out, n, "%s", buf);
        }
    }
    return 0;
}

static void crt_subject(gnutls_x509_crt_t crt, char *out, size_t n) {
    size_t sz = n;
    if (gnutls_x509_crt_get_dn(crt, out, &sz) < 0)
        snprintf(out, n, "?");
}

static void fmt_time(time_t t, char *out, size_t n) {
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void stamp(const char *path, struct timespec *ts) {
    struct stat st;
    if (path && stat(path, &st) == 0)
        *ts = st.st_mtim;
    else
        ts->tv_sec = ts->tv_nsec = 0;
}

/* Runs cmd through /bin/sh, takes its stdout (at most CMD_OUTPUT_MAX). The child's stdin is
 * /dev/null; its stderr goes to ours. */
static int run_cmd(const char *cmd, struct ah_buf *out, char *err, size_t errn) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(err, errn, "--dynamic-cert-cmd: pipe: %s", strerror(errno));
        return AH_E_IO;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]), close(fds[1]);
        snprintf(err, errn, "--dynamic-cert-cmd: fork: %s", strerror(errno));
        return AH_E_IO;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    out->max = CMD_OUTPUT_MAX;
    char buf[8192];
    int rc = 0;
    for (;;) {
        ssize_t r = read(fds[0], buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (rc == 0 && ah_buf_append(out, buf, (size_t)r) < 0)
            rc = AH_E_TOOLARGE; /* keep reading so the child is not stuck on a full pipe */
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (rc < 0) {
        snprintf(err, errn, "--dynamic-cert-cmd printed more than %d bytes", CMD_OUTPUT_MAX);
        return rc;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(err, errn, "--dynamic-cert-cmd '%s' failed (exit status %d)", cmd,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return AH_E_IO;
    }
    return 0;
}

void ident_free(struct ident *it) {
    if (!it || --it->refs > 0)
        return;
    if (it->cred)
        gnutls_certificate_free_credentials(it->cred);
    free(it);
}

int ident_load(const struct link_identity *id, struct ident **ret, char *err, size_t errn) {
    int rc = link_identity_check(id, err, errn);
    if (rc < 0)
        return rc;
    const char *p = id->provider && *id->provider ? id->provider : "files";
    struct ident *it = calloc(1, sizeof(*it));
    if (!it || gnutls_certificate_allocate_credentials(&it->cred) < 0) {
        free(it);
        snprintf(err, errn, "out of memory");
        return AH_E_NOMEM;
    }
    it->refs = 1;
    it->insecure = strcmp(p, "insecure") == 0;
    it->loaded_ms = ident_now_ms();
    int g;
    if (strcmp(p, "exec") == 0) {
        struct ah_buf out = {0};
        if ((rc = run_cmd(id->cert_cmd, &out, err, errn)) < 0) {
            ah_buf_clear(&out);
            ident_free(it);
            return rc;
        }
        gnutls_datum_t d = {(unsigned char *)out.p, (unsigned)out.n};
        g = out.n ? gnutls_certificate_set_x509_key_mem2(it->cred, &d, &d, GNUTLS_X509_FMT_PEM,
                                                         NULL, 0)
                  : GNUTLS_E_BASE64_DECODING_ERROR;
        ah_buf_clear(&out);
        if (g < 0) {
            snprintf(err, errn, "--dynamic-cert-cmd did not print a usable PEM certificate and "
                                "private key: %s", gnutls_strerror(g));
            ident_free(it);
            return AH_E_INVAL;
        }
    } else {
        g = gnutls_certificate_set_x509_key_file2(it->cred, id->cert_file, id->key_file,
                                                  GNUTLS_X509_FMT_PEM, NULL, 0);
        if (g < 0) {
            snprintf(err, errn, "cannot load certificate %s with key %s: %s", id->cert_file,
                     id->key_file, gnutls_strerror(g));
            ident_free(it);
            return AH_E_INVAL;
        }
    }
    if (id->ca_file) {
        g = gnutls_certificate_set_x509_trust_file(it->cred, id->ca_file, GNUTLS_X509_FMT_PEM);
        if (g <= 0) {
            snprintf(err, errn, "no usable CA certificate in %s%s%s", id->ca_file,
                     g < 0 ? ": " : "", g < 0 ? gnutls_strerror(g) : "");
            ident_free(it);
            return AH_E_INVAL;
        }
    }
    /* our own id, for the logs and the default trust domain */
    gnutls_datum_t der = {0};
    gnutls_x509_crt_t crt = NULL;
    if (gnutls_certificate_get_crt_raw(it->cred, 0, 0, &der) == 0 &&
        gnutls_x509_crt_init(&crt) == 0) {
        gnutls_hash_fast(GNUTLS_DIG_SHA256, der.data, der.size, it->leaf_sha256);
        if (gnutls_x509_crt_import(crt, &der, GNUTLS_X509_FMT_DER) == 0) {
            crt_spiffe_id(crt, it->self_id, sizeof(it->self_id));
            time_t na = gnutls_x509_crt_get_expiration_time(crt);
            if (na != (time_t)-1 && na < time(NULL)) {
                char when[40];
                fmt_time(na, when, sizeof(when));
                log_msg(LOG_WARN, "link: our own certificate (%s) expired at %s: peers will "
                        "refuse it", it->self_id[0] ? it->self_id : "no SPIFFE id", when);
            }
        }
        gnutls_x509_crt_deinit(crt);
    }
    stamp(id->cert_file, &it->mtimes[0]);
    stamp(id->key_file, &it->mtimes[1]);
    stamp(id->ca_file, &it->mtimes[2]);
    if (it->insecure)
        log_msg(LOG_WARN, "link: INSECURE identity: the peer's certificate chain and dates are "
                          "NOT verified; never use this outside development");
    *ret = it;
    return 0;
}

bool ident_stale(const struct ident *it, const struct link_identity *id, int64_t now_ms) {
    const char *p = id->provider && *id->provider ? id->provider : "files";
    if (strcmp(p, "exec") == 0) {
        int64_t ttl = id->cert_ttl_ms > 0 ? id->cert_ttl_ms : 3600 * 1000;
        return now_ms - it->loaded_ms >= ttl;
    }
    const char *paths[3] = {id->cert_file, id->key_file, id->ca_file};
    for (int i = 0; i < 3; i++) {
        struct timespec ts;
        stamp(paths[i], &ts);
        if (ts.tv_sec != it->mtimes[i].tv_sec || ts.tv_nsec != it->mtimes[i].tv_nsec)
            return true;
    }
    return false;
}

void ident_restamp(struct ident *it, const struct link_identity *id, int64_t now_ms) {
    it->loaded_ms = now_ms;
    stamp(id->cert_file, &it->mtimes[0]);
    stamp(id->key_file, &it->mtimes[1]);
    stamp(id->ca_file, &it->mtimes[2]);
}

static int peer_leaf(gnutls_session_t s, gnutls_x509_crt_t *ret) {
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
    if (!certs || !n)
        return AH_E_AUTH;
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0)
        return AH_E_NOMEM;
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) < 0) {
        gnutls_x509_crt_deinit(crt);
        return AH_E_AUTH;
    }
    *ret = crt;
    return 0;
}

int ident_peer(gnutls_session_t s, const struct ident *it, char *id, size_t idn, char *why,
               size_t whyn) {
    gnutls_x509_crt_t crt = NULL;
    id[0] = '\0';
    int rc = peer_leaf(s, &crt);
    if (rc < 0) {
        snprintf(why, whyn, "no certificate presented (mutual TLS is required)");
        return AH_E_AUTH;
    }
    char subject[256], when[40];
    crt_subject(crt, subject, sizeof(subject));
    if (crt_spiffe_id(crt, id, idn) < 0) {
        snprintf(why, whyn, "certificate '%s' carries several spiffe:// URI SANs (exactly one "
                 "expected)", subject);
        rc = AH_E_AUTH;
        goto out;
    }
    if (!it->insecure) {
        unsigned status = 0;
        int g = gnutls_certificate_verify_peers2(s, &status);
        if (g < 0) {
            snprintf(why, whyn, "certificate of '%s' could not be verified: %s",
                     id[0] ? id : subject, gnutls_strerror(g));
            rc = AH_E_AUTH;
            goto out;
        }
        if (status) {
            if (status & GNUTLS_CERT_EXPIRED) {
                fmt_time(gnutls_x509_crt_get_expiration_time(crt), when, sizeof(when));
                snprintf(why, whyn, "certificate of '%s' expired at %s", id[0] ? id : subject,
                         when);
            } else if (status & GNUTLS_CERT_NOT_ACTIVATED) {
                fmt_time(gnutls_x509_crt_get_activation_time(crt), when, sizeof(when));
                snprintf(why, whyn, "certificate of '%s' is not valid before %s",
                         id[0] ? id : subject, when);
            } else if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA |
                                 GNUTLS_CERT_SIGNATURE_FAILURE)) {
                char issuer[256];
                size_t sz = sizeof(issuer);
                if (gnutls_x509_crt_get_issuer_dn(crt, issuer, &sz) < 0)
                    snprintf(issuer, sizeof(issuer), "?");
                snprintf(why, whyn, "certificate of '%s' is not signed by the trusted CA "
                         "(its issuer: '%s')", id[0] ? id : subject, issuer);
            } else if (status & GNUTLS_CERT_REVOKED) {
                snprintf(why, whyn, "certificate of '%s' is revoked", id[0] ? id : subject);
            } else {
                gnutls_datum_t txt = {0};
                gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &txt, 0);
                snprintf(why, whyn, "certificate of '%s' is not valid: %s", id[0] ? id : subject,
                         txt.data ? (const char *)txt.data : "?");
                gnutls_free(txt.data);
            }
            rc = AH_E_AUTH;
            goto out;
        }
    }
    if (!id[0]) {
        snprintf(why, whyn, "certificate '%s' has no spiffe:// URI SAN (a SPIFFE id is "
                 "required)", subject);
        rc = AH_E_AUTH;
    }
out:
    gnutls_x509_crt_deinit(crt);
    return rc;
}

static void hex(const unsigned char *p, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static void b64(const unsigned char *p, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

/* SHA-256 of the leaf's SubjectPublicKeyInfo, as hex (65 bytes) and base64 (45 bytes). */
static int spki_pin(gnutls_x509_crt_t crt, char hexout[65], char b64out[45]) {
    gnutls_pubkey_t pk;
    if (gnutls_pubkey_init(&pk) < 0)
        return AH_E_NOMEM;
    gnutls_datum_t der = {0};
    int rc = AH_E_AUTH;
    if (gnutls_pubkey_import_x509(pk, crt, 0) == 0 &&
        gnutls_pubkey_export2(pk, GNUTLS_X509_FMT_DER, &der) == 0) {
        unsigned char h[32];
        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, der.data, der.size, h) == 0) {
            hex(h, 32, hexout);
            b64(h, 32, b64out);
            rc = 0;
        }
        gnutls_free(der.data);
    }
    gnutls_pubkey_deinit(pk);
    return rc;
}

/* "ab:CD:..." → "abcd..." (pins may be written with colons and in upper case) */
static void norm_hex(const char *in, size_t n, char *out, size_t outn) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outn; i++)
        if (in[i] != ':')
            out[o++] = (char)tolower((unsigned char)in[i]);
    out[o] = '\0';
}

int ident_san_list_check(const char *list, char *err, size_t errn) {
    if (!list)
        return 0;
    const char *p = list;
    int n = 0;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && isspace((unsigned char)*p))
            p++, len--;
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        if (!(len > 4 && (strncmp(p, "dns=", 4) == 0 || strncmp(p, "uri=", 4) == 0 ||
                          strncmp(p, "pin=", 4) == 0))) {
            snprintf(err, errn, "--server-san entry '%.*s' is not dns=NAME, uri=URI or "
                     "pin=SHA256", (int)len, p);
            return AH_E_INVAL;
        }
        n++;
        if (!end)
            break;
        p = end + 1;
    }
    if (!n) {
        snprintf(err, errn, "--server-san is empty");
        return AH_E_INVAL;
    }
    return 0;
}

int ident_check_server(gnutls_session_t s, const char *peer_id, const char *expected_id,
                       const char *san_list, char *why, size_t whyn) {
    if (expected_id && *expected_id && strcmp(peer_id, expected_id) != 0) {
        snprintf(why, whyn, "access point presented '%s', expected '%s' (--expected-server-id)",
                 peer_id, expected_id);
        return AH_E_AUTH;
    }
    if (!san_list || !*san_list)
        return 0;
    gnutls_x509_crt_t crt = NULL;
    if (peer_leaf(s, &crt) < 0) {
        snprintf(why, whyn, "access point presented no certificate");
        return AH_E_AUTH;
    }
    char phex[65] = "", pb64[45] = "";
    spki_pin(crt, phex, pb64);
    bool ok = false;
    const char *p = san_list;
    while (*p && !ok) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && isspace((unsigned char)*p))
            p++, len--;
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        char val[IDENT_ID_MAX];
        snprintf(val, sizeof(val), "%.*s", len > 4 ? (int)len - 4 : 0, p + 4);
        if (strncmp(p, "dns=", 4) == 0) {
            ok = gnutls_x509_crt_check_hostname2(crt, val, GNUTLS_VERIFY_DO_NOT_ALLOW_IP_MATCHES);
        } else if (strncmp(p, "uri=", 4) == 0) {
            for (unsigned i = 0; i < 64 && !ok; i++) {
                char buf[IDENT_ID_MAX];
                size_t sz = sizeof(buf) - 1;
                int t = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &sz, NULL);
                if (t == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                    break;
                if (t == GNUTLS_SAN_URI) {
                    buf[sz] = '\0';
                    ok = strcmp(buf, val) == 0;
                }
            }
        } else if (strncmp(p, "pin=", 4) == 0) {
            char h[IDENT_ID_MAX];
            norm_hex(val, strlen(val), h, sizeof(h));
            ok = (phex[0] && strcmp(h, phex) == 0) || (pb64[0] && strcmp(val, pb64) == 0);
        }
        if (!end)
            break;
        p = end + 1;
    }
    gnutls_x509_crt_deinit(crt);
    if (!ok) {
        snprintf(why, whyn, "access point certificate ('%s', SPKI pin=%s) matches none of "
                 "--server-san '%s'", peer_id[0] ? peer_id : "no SPIFFE id", phex, san_list);
        return AH_E_AUTH;
    }
    return 0;
}

int ident_check_executor(const char *peer_id, const char *td, const char *const *patterns,
                         char *why, size_t whyn) {
    char ptd[256], name[AH_LIMIT_NAME + 1];
    if (!link_spiffe_agent_id(peer_id, ptd, sizeof(ptd), name, sizeof(name))) {
        spiffe_td(peer_id, ptd, sizeof(ptd));
        snprintf(why, whyn, "executor presented '%s', expected spiffe://%s/ah/agent/<name>",
                 peer_id, td && *td ? td : ptd);
        return AH_E_AUTH;
    }
    if (td && *td && strcmp(ptd, td) != 0) {
        snprintf(why, whyn, "executor presented '%s': trust domain '%s' is not the allowed "
                 "'%s'", peer_id, ptd, td);
        return AH_E_AUTH;
    }
    if (patterns && patterns[0]) {
        for (const char *const *q = patterns; *q; q++)
            if (fnmatch(*q, peer_id, 0) == 0)
                return 0;
        char list[512] = "";
        size_t o = 0;
        for (const char *const *q = patterns; *q && o < sizeof(list); q++)
            o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", q == patterns ? "" : ", ",
                                  *q);
        snprintf(why, whyn, "executor presented '%s', which matches none of the allowed ids "
                 "(%s)", peer_id, list);
        return AH_E_AUTH;
    }
    return 0;
}
