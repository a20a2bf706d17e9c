/* test-link.c — the executor link over QUIC on loopback (D24, D41, D42): a handshake with mutual
 * TLS and SPIFFE ids, the control stream (Hello, Heartbeat, Goodbye ⇄ Ack), a stream opened by
 * the access point (RPC) carrying frames and then raw bytes under back-pressure, a certificate
 * rotation, and each identity refusal with its clear log line on both sides. Certificates are
 * made by tests/enroll/mkcerts.sh (certtool) in a temporary directory. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/enroll/link.h"

static char dir[256];
static char logpath[300];
static int logfd = -1;

static void path(char *out, size_t n, const char *name, const char *ext) {
    snprintf(out, n, "%s/%s.%s", dir, name, ext);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *log_text(void);

/* polls cond for up to 20 s (a busy machine), 10 ms apart */
#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        int64_t until_ = now_ms() + 20000;                                                         \
        while (!(cond) && now_ms() < until_)                                                       \
            usleep(10000);                                                                         \
        if (!(cond)) {                                                                             \
            char *t_ = log_text();                                                                 \
            fail_msg("timed out waiting for: %s\nlog:\n%s", #cond, t_);                            \
        }                                                                                          \
    } while (0)

static char *log_text(void) {
    FILE *f = fopen(logpath, "r");
    if (!f)
        return strdup("");
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

static bool log_has(const char *a, const char *b) {
    char *t = log_text();
    bool ok = false;
    for (char *line = strtok(t, "\n"); line && !ok; line = strtok(NULL, "\n"))
        ok = strstr(line, a) && (!b || strstr(line, b));
    free(t);
    return ok;
}

static void log_reset(void) {
    if (ftruncate(logfd, 0) != 0)
        fail_msg("ftruncate");
}

/* ---- access point side ---------------------------------------------------------------------- */

struct fleet {
    atomic_int hellos, heartbeats, gones, pongs;
    atomic_int forget; /* > 0: the next heartbeats answer AH_E_NOTFOUND (an admin removed it) */
    atomic_long raw_bytes;
    char hello_id[256], gone_reason[256];
    struct link_conn *conn; /* loop thread only */
    struct link_stream *rpc;
    long to_send, sent;
};

static int on_hello(void *ctx, const char *id, const json_t *hello, json_t **ret_ack,
                    struct ah_problem *reterr) {
    struct fleet *f = ctx;
    snprintf(f->hello_id, sizeof(f->hello_id), "%s", id);
    atomic_fetch_add(&f->hellos, 1);
    return 0;
}
static int on_heartbeat(void *ctx, const char *id, const json_t *hb, json_t **ret_ack) {
    struct fleet *f = ctx;
    if (atomic_load(&f->forget) > 0) {
        atomic_fetch_sub(&f->forget, 1);
        return AH_E_NOTFOUND;
    }
    if (json_integer_value(json_object_get(hb, "free_slots")) == 3)
        atomic_fetch_add(&f->heartbeats, 1);
    *ret_ack = json_pack("{s:s, s:i}", "now", "x", "heartbeat_interval_ms", 100);
    return 0;
}
static void on_gone(void *ctx, const char *id, const char *reason) {
    struct fleet *f = ctx;
    snprintf(f->gone_reason, sizeof(f->gone_reason), "%s", reason);
    atomic_fetch_add(&f->gones, 1);
}
static void srv_connect(void *ctx, struct link_conn *c, const char *peer) {
    struct fleet *f = ctx;
    f->conn = c;
}
static void srv_close(void *ctx, struct link_conn *c, const char *why) {
    struct fleet *f = ctx;
    if (f->conn == c)
        f->conn = NULL, f->rpc = NULL;
}
static const struct link_handlers srv_handlers = {.on_connect = srv_connect,
                                                  .on_close = srv_close};

static int rpc_frame(void *sctx, struct link_stream *s, json_t *msg) {
    struct fleet *f = sctx;
    if (strcmp(json_string_value(json_object_get(msg, "type")), "Pong") == 0 &&
        json_integer_value(json_object_get(msg, "n")) == 7)
        atomic_fetch_add(&f->pongs, 1);
    return 0;
}

static void pump(struct fleet *f) {
    static char chunk[16384];
    while (f->sent < f->to_send) {
        size_t want = sizeof(chunk);
        if ((long)want > f->to_send - f->sent)
            want = (size_t)(f->to_send - f->sent);
        int64_t n = link_stream_send(f->rpc, chunk, want);
        assert_true(n >= 0);
        f->sent += n;
        if ((size_t)n < want)
            return; /* full: on_writable resumes */
    }
    link_stream_finish(f->rpc);
}

static void rpc_writable(void *sctx, struct link_stream *s) {
    pump(sctx);
}

static const struct link_stream_handlers rpc_handlers = {.on_frame = rpc_frame,
                                                         .on_writable = rpc_writable};

/* posted to the access point's loop: open an RPC stream, send Ping, then 4 MiB of raw bytes */
static void open_rpc(void *arg) {
    struct fleet *f = arg;
    assert_non_null(f->conn);
    assert_int_equal(link_stream_open(f->conn, &rpc_handlers, f, &f->rpc), 0);
    json_t *ping = json_pack("{s:s, s:i}", "type", "Ping", "n", 7);
    assert_int_equal(link_stream_send_frame(f->rpc, ping), 0);
    json_decref(ping);
    json_t *bad = json_pack("{s:i}", "n", 1);
    assert_int_equal(link_stream_send_frame(f->rpc, bad), AH_E_INVAL);
    json_decref(bad);
    json_t *tunnel = json_pack("{s:s}", "type", "Raw");
    assert_int_equal(link_stream_send_frame(f->rpc, tunnel), 0);
    json_decref(tunnel);
    f->to_send = 4L << 20;
    pump(f);
}

/* ---- executor side -------------------------------------------------------------------------- */

struct exec {
    atomic_int acks, closes;
    atomic_long raw_bytes;
    atomic_bool eof;
};

static const char *claim; /* test_hello_claims: the executor_id a Hello claims */
static json_t *mk_hello(void *ctx, const char *id) {
    assert_non_null(strstr(id, "spiffe://"));
    if (claim)
        return json_pack("{s:s, s:s}", "executor_id", claim, "version", "test");
    return json_pack("{s:s, s:{s:s}}", "version", "test", "labels", "zone", "z1");
}
static json_t *mk_heartbeat(void *ctx) {
    return json_pack("{s:i, s:f}", "free_slots", 3, "load", 0.25);
}
static void on_ack(void *ctx, const json_t *ack) {
    struct exec *e = ctx;
    assert_non_null(json_object_get(ack, "now"));
    atomic_fetch_add(&e->acks, 1);
}

static int exec_frame(void *sctx, struct link_stream *s, json_t *msg) {
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (strcmp(type, "Ping") == 0) {
        json_t *pong = json_pack("{s:s, s:O}", "type", "Pong", "n", json_object_get(msg, "n"));
        assert_int_equal(link_stream_send_frame(s, pong), 0);
        json_decref(pong);
    } else if (strcmp(type, "Raw") == 0) {
        link_stream_set_raw(s);
    }
    return 0;
}
static size_t exec_data(void *sctx, struct link_stream *s, const void *p, size_t n) {
    struct exec *e = sctx;
    atomic_fetch_add(&e->raw_bytes, (long)n);
    return n;
}
static void exec_eof(void *sctx, struct link_stream *s) {
    struct exec *e = sctx;
    atomic_store(&e->eof, true);
    link_stream_finish(s);
}
static const struct link_stream_handlers exec_stream = {
    .on_frame = exec_frame, .on_data = exec_data, .on_eof = exec_eof};
static int exec_on_stream(void *ctx, struct link_conn *c, struct link_stream *s) {
    link_stream_set_handlers(s, &exec_stream, ctx);
    return 0;
}
static void exec_close(void *ctx, struct link_conn *c, const char *why) {
    struct exec *e = ctx;
    atomic_fetch_add(&e->closes, 1);
}
static const struct link_handlers exec_handlers = {.on_stream = exec_on_stream,
                                                   .on_close = exec_close};

/* ---- helpers -------------------------------------------------------------------------------- */

struct files {
    char cert[300], key[300], ca[300];
};

static void files_of(struct files *f, const char *name, const char *ca) {
    path(f->cert, sizeof(f->cert), name, "pem");
    path(f->key, sizeof(f->key), name, "key");
    path(f->ca, sizeof(f->ca), ca, "pem");
}

static struct link_server *server(struct fleet *f, const char *cert, const char *const *patterns,
                                  struct files *fs) {
    files_of(fs, cert, "ca");
    struct link_server_config cfg = {
        .bind = "127.0.0.1",
        .port = 0,
        .id = {.provider = "files", .cert_file = fs->cert, .key_file = fs->key, .ca_file = fs->ca},
        .trust_domain = "example.org",
        .id_patterns = patterns,
        .config_hash = "h1",
        .control = {.hello = on_hello, .heartbeat = on_heartbeat, .gone = on_gone, .ctx = f},
        .handlers = &srv_handlers,
        .ctx = f,
    };
    struct link_server *s = NULL;
    char err[512];
    if (link_server_start(&cfg, &s, err, sizeof(err)) < 0)
        fail_msg("server: %s", err);
    return s;
}

static struct link_client *client(struct exec *e, int port, const char *cert, const char *ca,
                                  const char *expected, struct files *fs) {
    files_of(fs, cert, ca);
    struct link_client_config cfg = {
        .host = "127.0.0.1",
        .port = port,
        .id = {.provider = "files", .cert_file = fs->cert, .key_file = fs->key, .ca_file = fs->ca},
        .expected_server_id = expected,
        .heartbeat_ms = 100,
        .reconnect_min_ms = 200,
        .reconnect_max_ms = 400,
        .reload_check_ms = 100,
        .control = {.hello = mk_hello, .heartbeat = mk_heartbeat, .ack = on_ack, .ctx = e},
        .handlers = &exec_handlers,
        .ctx = e,
    };
    struct link_client *c = NULL;
    char err[512];
    if (link_client_start(&cfg, &c, err, sizeof(err)) < 0)
        fail_msg("client: %s", err);
    return c;
}

static const char *serve_id = "spiffe://example.org/ah/serve";

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_enroll_rpc_goodbye(void **state) {
    log_reset();
    struct fleet f = {0};
    struct exec e = {0};
    struct files sf, cf;
    struct link_server *s = server(&f, "serve", NULL, &sf);
    struct link_client *c = client(&e, link_server_port(s), "a", "ca", serve_id, &cf);
    WAIT_FOR(link_client_enrolled(c));
    assert_string_equal(f.hello_id, "spiffe://example.org/ah/agent/a");
    WAIT_FOR(atomic_load(&f.heartbeats) >= 3);
    assert_int_equal(atomic_load(&f.hellos), 1);
    assert_true(log_has("enrolled at the access point", "spiffe://example.org/ah/serve"));
    /* an RPC stream opened by the access point: frames, then raw bytes under flow control */
    assert_int_equal(link_post(link_server_loop(s), open_rpc, &f), 0);
    WAIT_FOR(atomic_load(&f.pongs) == 1);
    WAIT_FOR(atomic_load(&e.raw_bytes) == 4L << 20);
    WAIT_FOR(atomic_load(&e.eof));
    /* Goodbye: the fleet hears it once, with the reason */
    link_client_stop(c, "maintenance");
    WAIT_FOR(atomic_load(&f.gones) == 1);
    assert_string_equal(f.gone_reason, "maintenance");
    link_server_stop(s);
    assert_int_equal(atomic_load(&f.gones), 1);
}

/* A Hello claiming another executor than the certificate proves is refused; a heartbeat the
 * fleet does not know (an admin removed the executor) closes the link, and the executor comes
 * back with a Hello. */
static void test_hello_claims_and_forgotten(void **state) {
    log_reset();
    struct fleet f = {0};
    struct exec e = {0};
    struct files sf, cf;
    struct link_server *s = server(&f, "serve", NULL, &sf);
    claim = "spiffe://example.org/ah/agent/zzz";
    struct link_client *c = client(&e, link_server_port(s), "a", "ca", serve_id, &cf);
    WAIT_FOR(log_has("link: access point refused executor at",
                     "Hello claims executor_id 'spiffe://example.org/ah/agent/zzz' but the "
                     "certificate proves 'spiffe://example.org/ah/agent/a'"));
    WAIT_FOR(log_has("link: the access point at", "refused this executor "
                     "(spiffe://example.org/ah/agent/a): Hello claims executor_id"));
    assert_int_equal(atomic_load(&f.hellos), 0);
    claim = NULL; /* its next attempt (after the back-off) is honest */
    WAIT_FOR(link_client_enrolled(c));
    WAIT_FOR(atomic_load(&f.hellos) == 1);
    atomic_store(&f.forget, 1);
    WAIT_FOR(atomic_load(&f.hellos) == 2); /* closed, reconnected, said Hello again */
    assert_true(log_has("executor unknown to the access point (removed)", NULL));
    link_client_stop(c, NULL);
    link_server_stop(s);
}

/* The access point stops: the executor sees the close and keeps trying; a new access point on
 * the same port takes it back. */
static void test_reconnect(void **state) {
    log_reset();
    struct fleet f = {0}, f2 = {0};
    struct exec e = {0};
    struct files sf, cf;
    struct link_server *s = server(&f, "serve", NULL, &sf);
    int port = link_server_port(s);
    struct link_client *c = client(&e, port, "a", "ca", serve_id, &cf);
    WAIT_FOR(link_client_enrolled(c));
    link_server_stop(s);
    WAIT_FOR(!link_client_enrolled(c));
    WAIT_FOR(atomic_load(&e.closes) >= 1);
    files_of(&sf, "serve", "ca");
    struct link_server_config cfg = {
        .bind = "127.0.0.1",
        .port = port,
        .id = {.cert_file = sf.cert, .key_file = sf.key, .ca_file = sf.ca},
        .control = {.hello = on_hello, .ctx = &f2},
    };
    char err[512];
    struct link_server *s2 = NULL;
    if (link_server_start(&cfg, &s2, err, sizeof(err)) < 0) /* trust domain from serve.pem */
        fail_msg("%s", err);
    WAIT_FOR(atomic_load(&f2.hellos) == 1);
    WAIT_FOR(link_client_enrolled(c));
    link_client_stop(c, NULL);
    link_server_stop(s2);
}

/* files provider: a new certificate on disk → Goodbye, reconnect with it */
static void test_rotation(void **state) {
    log_reset();
    struct fleet f = {0};
    struct exec e = {0};
    struct files sf, cf;
    char rdir[300], cert[320], key[320], cmd[1200];
    snprintf(rdir, sizeof(rdir), "%s/rot", dir);
    snprintf(cmd, sizeof(cmd), "mkdir -p %s && cp %s/a.pem %s/c.pem && cp %s/a.key %s/c.key",
             rdir, dir, rdir, dir, rdir);
    assert_int_equal(system(cmd), 0);
    snprintf(cert, sizeof(cert), "%s/c.pem", rdir);
    snprintf(key, sizeof(key), "%s/c.key", rdir);
    struct link_server *s = server(&f, "serve", NULL, &sf);
    files_of(&cf, "a", "ca");
    struct link_client_config cfg = {
        .host = "127.0.0.1", .port = link_server_port(s),
        .id = {.provider = "files", .cert_file = cert, .key_file = key, .ca_file = cf.ca},
        .expected_server_id = serve_id, .heartbeat_ms = 100, .reload_check_ms = 100,
        .reconnect_min_ms = 100, .control = {.ctx = &e},
    };
    struct link_client *c = NULL;
    char err[512];
    if (link_client_start(&cfg, &c, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    WAIT_FOR(atomic_load(&f.hellos) == 1);
    usleep(20000); /* a different mtime even on coarse clocks */
    snprintf(cmd, sizeof(cmd), "cp %s/a2.pem %s.new && cp %s/a2.key %s.new && mv %s.new %s && "
             "mv %s.new %s", dir, cert, dir, key, key, key, cert, cert);
    assert_int_equal(system(cmd), 0);
    WAIT_FOR(atomic_load(&f.hellos) == 2);
    WAIT_FOR(atomic_load(&f.gones) == 1);
    assert_string_equal(f.gone_reason, "certificate rotated");
    assert_true(log_has("certificate reloaded", "reconnecting gracefully"));
    link_client_stop(c, NULL);
    link_server_stop(s);
}

/* A refused pair: both sides log the reason (needle), nobody enrolls. */
static void refused(const char *srv_cert, const char *const *patterns, const char *cli_cert,
                    const char *cli_ca, const char *expected, const char *needle,
                    bool server_refuses) {
    log_reset();
    struct fleet f = {0};
    struct exec e = {0};
    struct files sf, cf;
    struct link_server *s = server(&f, srv_cert, patterns, &sf);
    struct link_client *c = client(&e, link_server_port(s), cli_cert, cli_ca, expected, &cf);
    if (server_refuses) {
        WAIT_FOR(log_has("link: access point refused executor at", needle));
        WAIT_FOR(log_has("link: the access point at", needle));
        assert_true(log_has("refused this executor", needle));
    } else {
        WAIT_FOR(log_has("link: executor refused the access point at", needle));
        WAIT_FOR(log_has("refused this access point", needle));
    }
    assert_false(link_client_enrolled(c));
    assert_int_equal(atomic_load(&f.hellos), 0);
    link_client_stop(c, NULL);
    link_server_stop(s);
}

static void test_wrong_trust_domain(void **state) {
    refused("serve", NULL, "othertd", "ca", serve_id,
            "executor presented 'spiffe://other.org/ah/agent/a': trust domain 'other.org' is "
            "not the allowed 'example.org'",
            true);
}

static void test_wrong_spiffe_id(void **state) {
    const char *const patterns[] = {"spiffe://example.org/ah/agent/build-*", NULL};
    refused("serve", patterns, "a", "ca", serve_id,
            "executor presented 'spiffe://example.org/ah/agent/a', which matches none of the "
            "allowed ids (spiffe://example.org/ah/agent/build-*)",
            true);
    /* a server id presented by an executor is not an executor id either */
    refused("serve", NULL, "serve", "ca", serve_id,
            "executor presented 'spiffe://example.org/ah/serve', expected "
            "spiffe://example.org/ah/agent/<name>",
            true);
}

static void test_expired(void **state) {
    refused("serve", NULL, "expired", "ca", serve_id,
            "certificate of 'spiffe://example.org/ah/agent/old' expired at 2020-01-01T00:00:00Z",
            true);
}

static void test_not_yet_valid(void **state) {
    refused("serve", NULL, "notyet", "ca", serve_id,
            "certificate of 'spiffe://example.org/ah/agent/new' is not valid before "
            "2099-01-01T00:00:00Z",
            true);
}

static void test_foreign_ca(void **state) {
    refused("serve", NULL, "foreign", "ca", serve_id,
            "certificate of 'spiffe://example.org/ah/agent/f' is not signed by the trusted CA",
            true);
}

static void test_unexpected_server(void **state) {
    refused("evil", NULL, "a", "ca", serve_id,
            "access point presented 'spiffe://example.org/ah/agent/evil', expected "
            "'spiffe://example.org/ah/serve' (--expected-server-id)",
            false);
}

/* --server-san: dns= and pin= allow-lists */
static void test_server_san(void **state) {
    log_reset();
    struct fleet f = {0};
    struct exec e = {0};
    struct files sf, cf;
    struct link_server *s = server(&f, "serve", NULL, &sf);
    files_of(&cf, "a", "ca");
    /* the right pin: SHA-256 of serve.pem's SubjectPublicKeyInfo, as certtool prints it */
    char cmd[600], pin[128] = "";
    snprintf(cmd, sizeof(cmd),
             "certtool --pubkey-info --infile %s/serve.pem --outder 2>/dev/null | sha256sum",
             dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(pin, sizeof(pin), p));
    pclose(p);
    pin[64] = '\0';
    char san[300];
    snprintf(san, sizeof(san), "dns=nothere.example, pin=%s", pin);
    struct link_client_config cfg = {
        .host = "127.0.0.1", .port = link_server_port(s),
        .id = {.cert_file = cf.cert, .key_file = cf.key, .ca_file = cf.ca},
        .server_san = san, .control = {.ctx = &e},
    };
    struct link_client *c = NULL;
    char err[512];
    if (link_client_start(&cfg, &c, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    WAIT_FOR(link_client_enrolled(c));
    link_client_stop(c, NULL);
    /* only a wrong name and a wrong pin: refused, naming the pin it has */
    cfg.server_san = "dns=nothere.example,pin=00112233";
    if (link_client_start(&cfg, &c, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    WAIT_FOR(log_has("link: executor refused the access point at", "matches none of --server-san"));
    assert_true(log_has("matches none of --server-san", pin));
    link_client_stop(c, NULL);
    /* dns=localhost matches the certificate's DNS SAN */
    cfg.server_san = "dns=localhost";
    if (link_client_start(&cfg, &c, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    WAIT_FOR(link_client_enrolled(c));
    link_client_stop(c, NULL);
    link_server_stop(s);
}

static void test_config_refusals(void **state) {
    char err[512];
    struct link_identity id = {.provider = "vault"};
    assert_int_equal(link_identity_check(&id, err, sizeof(err)), AH_E_NOTIMPL);
    assert_non_null(strstr(err, "not built in"));
    id.provider = "spiffe";
    assert_int_equal(link_identity_check(&id, err, sizeof(err)), AH_E_NOTIMPL);
    assert_non_null(strstr(err, "not built in"));
    id.provider = "insecure";
    assert_int_equal(link_identity_check(&id, err, sizeof(err)), AH_E_INVAL);
    assert_non_null(strstr(err, "--allow-insecure"));
    id.provider = "files";
    assert_int_equal(link_identity_check(&id, err, sizeof(err)), AH_E_INVAL);
    id.provider = "bogus";
    assert_int_equal(link_identity_check(&id, err, sizeof(err)), AH_E_INVAL);
    struct files cf;
    files_of(&cf, "a", "ca");
    struct link_client_config cfg = {
        .host = "127.0.0.1", .port = 9,
        .id = {.cert_file = cf.cert, .key_file = cf.key, .ca_file = cf.ca},
    };
    struct link_client *c = NULL;
    assert_int_equal(link_client_start(&cfg, &c, err, sizeof(err)), AH_E_INVAL);
    assert_non_null(strstr(err, "--expected-server-id"));
    cfg.server_san = "host=x";
    assert_int_equal(link_client_start(&cfg, &c, err, sizeof(err)), AH_E_INVAL);
    assert_non_null(strstr(err, "not dns=NAME"));
    /* a key that does not exist: one clear line */
    cfg.server_san = NULL;
    cfg.expected_server_id = serve_id;
    cfg.id.key_file = "/nonexistent.key";
    assert_int_equal(link_client_start(&cfg, &c, err, sizeof(err)), AH_E_INVAL);
    assert_non_null(strstr(err, "/nonexistent.key"));
    char host[64];
    int port = 0;
    assert_int_equal(link_parse_address("quic://ap.example.org:7443", 443, host, sizeof(host),
                                        &port), 0);
    assert_string_equal(host, "ap.example.org");
    assert_int_equal(port, 7443);
    assert_int_equal(link_parse_address("ap", 443, host, sizeof(host), &port), 0);
    assert_int_equal(port, 443);
    assert_int_equal(link_parse_address("[::1]:9", 443, host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9);
    assert_int_equal(link_parse_address("ap:0", 443, host, sizeof(host), &port), AH_E_INVAL);
    assert_int_equal(link_parse_address("ap:x", 443, host, sizeof(host), &port), AH_E_INVAL);
    assert_int_equal(link_parse_address("", 443, host, sizeof(host), &port), AH_E_INVAL);
    char td[64], name[64];
    assert_true(link_spiffe_agent_id("spiffe://example.org/ah/agent/w-1", td, sizeof(td), name,
                                     sizeof(name)));
    assert_string_equal(td, "example.org");
    assert_string_equal(name, "w-1");
    assert_false(link_spiffe_agent_id("spiffe://Example.org/ah/agent/a", NULL, 0, NULL, 0));
    assert_false(link_spiffe_agent_id("spiffe://example.org/ah/agent/", NULL, 0, NULL, 0));
    assert_false(link_spiffe_agent_id("spiffe://example.org/ah/agent/a/b", NULL, 0, NULL, 0));
    assert_false(link_spiffe_agent_id("https://example.org/ah/agent/a", NULL, 0, NULL, 0));
}

/* exec provider: the command prints certificate and key; insecure: still needs the flag */
static void test_exec_and_insecure(void **state) {
    log_reset();
    struct fleet f = {0};
    struct exec e = {0};
    struct files sf, cf;
    struct link_server *s = server(&f, "serve", NULL, &sf);
    files_of(&cf, "b", "ca");
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "cat %s %s", cf.cert, cf.key);
    struct link_client_config cfg = {
        .host = "127.0.0.1", .port = link_server_port(s),
        .id = {.provider = "exec", .cert_cmd = cmd, .cert_ttl_ms = 60000, .ca_file = cf.ca},
        .expected_server_id = serve_id, .control = {.ctx = &e},
    };
    struct link_client *c = NULL;
    char err[512];
    if (link_client_start(&cfg, &c, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    WAIT_FOR(link_client_enrolled(c));
    assert_string_equal(f.hello_id, "spiffe://example.org/ah/agent/b");
    link_client_stop(c, NULL);
    /* --dynamic-cert-ttl: rerun; the same certificate again changes nothing, a new one is a
     * graceful reconnect (Goodbye "certificate rotated", then Hello) */
    char flip[400], cmd2[1500];
    snprintf(flip, sizeof(flip), "%s/flip", dir);
    unlink(flip);
    snprintf(cmd2, sizeof(cmd2),
             "n=$(cat %s 2>/dev/null || echo 0); echo $((n+1)) > %s; "
             "if [ $n -lt 3 ]; then cat %s/b.pem %s/b.key; else cat %s/a.pem %s/a.key; fi",
             flip, flip, dir, dir, dir, dir);
    int hellos0 = atomic_load(&f.hellos);
    cfg.id.cert_cmd = cmd2;
    cfg.id.cert_ttl_ms = 150;
    cfg.reload_check_ms = 50;
    if (link_client_start(&cfg, &c, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    WAIT_FOR(atomic_load(&f.hellos) == hellos0 + 2);
    assert_string_equal(f.hello_id, "spiffe://example.org/ah/agent/a");
    assert_string_equal(f.gone_reason, "certificate rotated");
    assert_true(log_has("certificate reloaded (spiffe://example.org/ah/agent/a)", NULL));
    usleep(500000); /* more reruns, all bringing a again: no more reconnects */
    assert_int_equal(atomic_load(&f.hellos), hellos0 + 2);
    link_client_stop(c, NULL);
    cfg.reload_check_ms = 0;
    cfg.id.cert_ttl_ms = 60000;
    cfg.id.cert_cmd = "false";
    assert_int_equal(link_client_start(&cfg, &c, err, sizeof(err)), AH_E_IO);
    assert_non_null(strstr(err, "failed (exit status 1)"));
    cfg.id.cert_cmd = "echo not-pem";
    assert_int_equal(link_client_start(&cfg, &c, err, sizeof(err)), AH_E_INVAL);
    assert_non_null(strstr(err, "did not print a usable PEM"));
    /* insecure: an executor whose CA the access point does not trust gets in (dev only) ... */
    files_of(&cf, "foreign", "ca2");
    cfg.id = (struct link_identity){.provider = "insecure", .cert_file = cf.cert,
                                    .key_file = cf.key, .allow_insecure = true};
    if (link_client_start(&cfg, &c, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    /* ... but only toward an access point that does not check it: ours refuses the chain */
    WAIT_FOR(log_has("access point refused executor", "not signed by the trusted CA"));
    assert_true(log_has("INSECURE identity", NULL));
    link_client_stop(c, NULL);
    link_server_stop(s);
}

static int setup(void **state) {
    snprintf(dir, sizeof(dir), "/tmp/ah-test-link-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "sh %s %s", AH_MKCERTS, dir);
    if (system(cmd) != 0)
        return -1;
    snprintf(logpath, sizeof(logpath), "%s/log", dir);
    logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    log_setup(logfd, LOG_DEBUG);
    return 0;
}

static int teardown(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return -1;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_refusals),   cmocka_unit_test(test_enroll_rpc_goodbye),
        cmocka_unit_test(test_wrong_trust_domain), cmocka_unit_test(test_wrong_spiffe_id),
        cmocka_unit_test(test_expired),           cmocka_unit_test(test_not_yet_valid),           cmocka_unit_test(test_foreign_ca),
        cmocka_unit_test(test_unexpected_server), cmocka_unit_test(test_server_san),
        cmocka_unit_test(test_exec_and_insecure), cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_rotation),          cmocka_unit_test(test_hello_claims_and_forgotten),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
