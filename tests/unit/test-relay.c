/* test-relay.c — a Unix socket joined to a QUIC stream (enroll/relay.h), the way the recorder link
 * crosses the executor link (issue 16 item 5): in one process on loopback, an executor-side
 * relay (a socketpair standing in for the recorder's connection) and an access-point-side relay
 * (a socketpair standing in for the supervisor's end) on one stream. Many MiB pushed in by a
 * writer faster than the reader takes them arrive intact and in order both ways, however the
 * stream's send buffer fills (a relay that stopped reading at an exactly full buffer never
 * resumed: the sessions of an executor stalled). Certificates from tests/enroll/mkcerts.sh. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/enroll/relay.h"

static char dir[256];

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        int64_t until_ = now_ms() + 20000;                                                         \
        while (!(cond) && now_ms() < until_)                                                       \
            usleep(5000);                                                                          \
        if (!(cond))                                                                               \
            fail_msg("timed out waiting for: %s", #cond);                                          \
    } while (0)

/* the two inner ends, handed to the relays on the loop threads */
static int ap_inner = -1, ex_inner = -1;
static atomic_int ap_started, ex_started;

static int ap_on_stream(void *ctx, struct link_conn *c, struct link_stream *s) {
    (void)ctx;
    link_stream_set_raw(s);
    if (relay_start(link_conn_loop(c), ap_inner, s, NULL, NULL) < 0)
        return AH_E_IO;
    atomic_store(&ap_started, 1);
    return 0;
}
static const struct link_handlers ap_handlers = {.on_stream = ap_on_stream};

static struct link_conn *ex_conn;
static void ex_on_connect(void *ctx, struct link_conn *c, const char *peer) {
    (void)ctx, (void)peer;
    ex_conn = c;
}
static const struct link_handlers ex_handlers = {.on_connect = ex_on_connect};

static void ex_open(void *arg) {
    (void)arg;
    struct link_stream *s = NULL;
    if (link_stream_open(ex_conn, NULL, NULL, &s) < 0)
        return;
    link_stream_set_raw(s);
    if (relay_start(link_conn_loop(ex_conn), ex_inner, s, NULL, NULL) == 0)
        atomic_store(&ex_started, 1);
}

static int on_hello(void *ctx, const char *id, const json_t *hello, json_t **ret_ack,
                    struct ah_problem *reterr) {
    (void)ctx, (void)id, (void)hello, (void)ret_ack, (void)reterr;
    return 0;
}

static unsigned char pat(size_t i, unsigned salt) {
    return (unsigned char)(i * 7 + (i >> 11) + salt);
}

/* Moves total bytes from `in` to `out` (and total2 from out to in) with non-blocking writes in
 * uneven chunks, checking every byte; fails when nothing moves for 10 s. */
static void pump_both(int in, int out, size_t total, size_t total2) {
    static unsigned char b[1 << 16];
    size_t w1 = 0, r1 = 0, w2 = 0, r2 = 0, k = 0;
    int64_t last = now_ms();
    while (r1 < total || r2 < total2) {
        bool moved = false;
        size_t chunk = 1000 + (k++ * 7919) % 60000; /* uneven writes */
        if (w1 < total) {
            size_t n = total - w1 < chunk ? total - w1 : chunk;
            for (size_t i = 0; i < n; i++)
                b[i] = pat(w1 + i, 0);
            ssize_t w = send(in, b, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                w1 += (size_t)w, moved = true;
        }
        if (w2 < total2) {
            size_t n = total2 - w2 < chunk ? total2 - w2 : chunk;
            for (size_t i = 0; i < n; i++)
                b[i] = pat(w2 + i, 3);
            ssize_t w = send(out, b, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                w2 += (size_t)w, moved = true;
        }
        /* the reader takes less per turn than the writer offers: the buffers fill up */
        ssize_t n = recv(out, b, 4096, MSG_DONTWAIT);
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                if (b[i] != pat(r1 + (size_t)i, 0))
                    fail_msg("byte %zu differs", r1 + (size_t)i);
            r1 += (size_t)n, moved = true;
        }
        n = recv(in, b, 4096, MSG_DONTWAIT);
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                if (b[i] != pat(r2 + (size_t)i, 3))
                    fail_msg("byte %zu back differs", r2 + (size_t)i);
            r2 += (size_t)n, moved = true;
        }
        if (moved)
            last = now_ms();
        else if (now_ms() - last > 10000)
            fail_msg("stalled: %zu of %zu bytes through, %zu of %zu back", r1, total, r2,
                     total2);
        else
            usleep(200);
    }
}

static void test_relay_full_buffers(void **state) {
    (void)state;
    char cert[300], key[300], ca[300], ccert[300], ckey[300], err[512];
    snprintf(cert, sizeof(cert), "%s/serve.pem", dir);
    snprintf(key, sizeof(key), "%s/serve.key", dir);
    snprintf(ccert, sizeof(ccert), "%s/a.pem", dir);
    snprintf(ckey, sizeof(ckey), "%s/a.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    int ap[2], ex[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, ap), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, ex), 0);
    ap_inner = ap[1];
    ex_inner = ex[1];
    struct link_server_config sc = {
        .bind = "127.0.0.1",
        .id = {.provider = "files", .cert_file = cert, .key_file = key, .ca_file = ca},
        .trust_domain = "example.org",
        .control = {.hello = on_hello},
        .handlers = &ap_handlers,
    };
    struct link_server *sv = NULL;
    if (link_server_start(&sc, &sv, err, sizeof(err)) < 0)
        fail_msg("server: %s", err);
    struct link_client_config cc = {
        .host = "127.0.0.1",
        .port = link_server_port(sv),
        .id = {.provider = "files", .cert_file = ccert, .key_file = ckey, .ca_file = ca},
        .expected_server_id = "spiffe://example.org/ah/serve",
        .heartbeat_ms = 1000,
        .handlers = &ex_handlers,
    };
    struct link_client *cl = NULL;
    if (link_client_start(&cc, &cl, err, sizeof(err)) < 0)
        fail_msg("client: %s", err);
    WAIT_FOR(link_client_enrolled(cl));
    assert_int_equal(link_post(link_client_loop(cl), ex_open, NULL), 0);
    WAIT_FOR(atomic_load(&ex_started));
    /* the access point's relay starts with the stream's first bytes */
    pump_both(ex[0], ap[0], 24u << 20, 4u << 20);
    assert_true(atomic_load(&ap_started));
    close(ex[0]);
    close(ap[0]);
    link_client_stop(cl, NULL);
    link_server_stop(sv);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/ah-test-relay-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "sh %s %s", AH_MKCERTS, dir);
    if (system(cmd) != 0)
        return -1;
    log_setup(2, LOG_WARN);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_full_buffers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
