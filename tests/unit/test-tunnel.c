/* test-tunnel.c — OpenTcp tunnels over the executor link (enroll/tunnel.h), in one process on
 * loopback: an access point (link server) and an executor (link client with
 * tunnel_exec_handlers), a TCP listener standing in for the executor's sshd, and a socketpair
 * standing in for the HTTP gate's side. Bytes both ways arrive intact; a side that does not read
 * stops the other one after a bounded amount (back-pressure, no unbounded buffer); EOF travels
 * both ways; the executor refuses when disabled, for another destination, and when its
 * destination does not answer. Certificates from tests/enroll/mkcerts.sh. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/enroll/tunnel.h"

static char dir[256];
static const char *AID = "spiffe://example.org/ah/agent/a";

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

/* ---- the access point's owner of one tunnel ------------------------------------------------- */

struct owner {
    atomic_int status; /* 0 until the result */
    char code[64];
    atomic_int closed;
    atomic_llong up, down;
};

static void on_result(void *arg, int fd, int status, const char *code, const char *detail) {
    struct owner *o = arg;
    snprintf(o->code, sizeof(o->code), "%s", code ? code : "");
    (void)fd, (void)detail;
    atomic_store(&o->status, status);
}
static void on_closed(void *arg, uint64_t up, uint64_t down, int64_t ms) {
    struct owner *o = arg;
    (void)ms;
    atomic_store(&o->up, (long long)up);
    atomic_store(&o->down, (long long)down);
    atomic_store(&o->closed, 1);
}
static const struct tunnel_ap_hooks HOOKS = {.result = on_result, .closed = on_closed};

struct open_req {
    struct link_server *sv;
    const char *id, *dst;
    int fd;
    struct owner *o;
};
static void do_open(void *arg) {
    struct open_req *q = arg;
    tunnel_ap_open(q->sv, q->id, q->dst, q->fd, &HOOKS, q->o);
}

/* ---- set-up --------------------------------------------------------------------------------- */

struct files {
    char cert[300], key[300], ca[300];
};
static void files_of(struct files *f, const char *name) {
    snprintf(f->cert, sizeof(f->cert), "%s/%s.pem", dir, name);
    snprintf(f->key, sizeof(f->key), "%s/%s.key", dir, name);
    snprintf(f->ca, sizeof(f->ca), "%s/ca.pem", dir);
}

static int on_hello(void *ctx, const char *id, const json_t *hello, json_t **ret_ack,
                    struct ah_problem *reterr) {
    (void)ctx, (void)id, (void)hello, (void)ret_ack, (void)reterr;
    return 0;
}

static struct link_server *server(struct files *fs) {
    files_of(fs, "serve");
    struct link_server_config cfg = {
        .bind = "127.0.0.1",
        .id = {.provider = "files", .cert_file = fs->cert, .key_file = fs->key, .ca_file = fs->ca},
        .trust_domain = "example.org",
        .control = {.hello = on_hello},
    };
    struct link_server *s = NULL;
    char err[512];
    if (link_server_start(&cfg, &s, err, sizeof(err)) < 0)
        fail_msg("server: %s", err);
    return s;
}

static struct link_client *client(int port, struct tunnel_exec_config *tc, struct files *fs) {
    files_of(fs, "a");
    struct link_client_config cfg = {
        .host = "127.0.0.1",
        .port = port,
        .id = {.provider = "files", .cert_file = fs->cert, .key_file = fs->key, .ca_file = fs->ca},
        .expected_server_id = "spiffe://example.org/ah/serve",
        .heartbeat_ms = 200,
        .handlers = &tunnel_exec_handlers,
        .ctx = tc,
    };
    struct link_client *c = NULL;
    char err[512];
    if (link_client_start(&cfg, &c, err, sizeof(err)) < 0)
        fail_msg("client: %s", err);
    WAIT_FOR(link_client_enrolled(c));
    return c;
}

static int listener(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 64 * 1024; /* a small receive window: the pile-up is in our buffers */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Opens a tunnel through sv; returns the client's end of the socketpair. */
static int open_tunnel(struct link_server *sv, const char *id, const char *dst, struct owner *o,
                       struct open_req *q) {
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp), 0);
    *q = (struct open_req){.sv = sv, .id = id, .dst = dst, .fd = sp[1], .o = o};
    assert_int_equal(link_post(link_server_loop(sv), do_open, q), 0);
    WAIT_FOR(atomic_load(&o->status) != 0);
    return sp[0];
}

static unsigned char pat(size_t i) {
    return (unsigned char)(i * 7 + (i >> 11));
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_relay_backpressure_eof(void **state) {
    (void)state;
    struct files sf, cf;
    int lport;
    int lfd = listener(&lport);
    char dst[64];
    snprintf(dst, sizeof(dst), "127.0.0.1:%d", lport);
    struct tunnel_exec_config tc;
    char err[256];
    assert_int_equal(tunnel_exec_config_init(&tc, true, dst, err, sizeof(err)), 0);
    struct link_server *sv = server(&sf);
    struct link_client *cl = client(link_server_port(sv), &tc, &cf);

    struct owner o = {0};
    struct open_req q;
    int fd = open_tunnel(sv, AID, "ssh", &o, &q);
    assert_int_equal(atomic_load(&o.status), 200);
    int tcp = accept(lfd, NULL, NULL);
    assert_true(tcp >= 0);
    struct timeval tv = {.tv_sec = 20}; /* a stalled relay fails the test instead of hanging it */
    setsockopt(tcp, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(tunnel_ap_count(), 1);

    /* client → sshd, which does not read: writes stall after a bounded amount */
    static unsigned char buf[1 << 16];
    size_t sent = 0;
    int64_t last = now_ms();
    while (now_ms() - last < 1500 && sent < (64u << 20)) {
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = pat(sent + i);
        ssize_t w = send(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            last = now_ms();
        } else {
            usleep(2000);
        }
    }
    /* socketpair buffers, the stream's 256 KiB send buffer and receive window, TCP buffers:
     * a few MiB at most, never everything */
    assert_true(sent < (24u << 20));
    assert_true(sent > 0);
    /* the sshd reads: every byte arrives, in order */
    size_t got = 0;
    while (got < sent) {
        ssize_t n = recv(tcp, buf, sizeof(buf), 0);
        assert_true(n > 0);
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != pat(got + (size_t)i))
                fail_msg("byte %zu differs", got + (size_t)i);
        got += (size_t)n;
    }
    /* sshd → client: 3 MiB, then sshd ends its side: the client reads them all, then EOF
     * (both move at once: the buffers between them are smaller than that) */
    size_t total = 3u << 20, out = 0, in = 0;
    bool shut = false;
    int64_t until = now_ms() + 30000;
    for (;;) {
        assert_true(now_ms() < until);
        bool moved = false;
        if (out < total) {
            unsigned char ob[1 << 14];
            size_t k = total - out < sizeof(ob) ? total - out : sizeof(ob);
            for (size_t i = 0; i < k; i++)
                ob[i] = pat(out + i + 5);
            ssize_t w = send(tcp, ob, k, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                out += (size_t)w, moved = true;
        } else if (!shut) {
            shutdown(tcp, SHUT_WR);
            shut = true;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0)
            break;
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                if (buf[i] != pat(in + (size_t)i + 5))
                    fail_msg("byte %zu back differs", in + (size_t)i);
            in += (size_t)n;
            moved = true;
        } else {
            assert_true(errno == EAGAIN);
        }
        if (!moved)
            usleep(1000);
    }
    assert_int_equal(in, total);
    /* the client ends its side too: the sshd reads EOF, and the tunnel closes with its counts */
    shutdown(fd, SHUT_WR);
    assert_int_equal(recv(tcp, buf, sizeof(buf), 0), 0);
    WAIT_FOR(atomic_load(&o.closed));
    assert_int_equal(atomic_load(&o.up), (long long)sent);
    assert_int_equal(atomic_load(&o.down), (long long)total);
    assert_int_equal(tunnel_ap_count(), 0);
    close(fd);
    close(tcp);

    /* refusals: another destination; a destination nobody listens on; an unknown executor */
    struct owner o2 = {0}, o3 = {0}, o4 = {0};
    fd = open_tunnel(sv, AID, "127.0.0.1:1", &o2, &q);
    assert_int_equal(atomic_load(&o2.status), 403);
    assert_string_equal(o2.code, "dst_not_allowed");
    WAIT_FOR(atomic_load(&o2.closed));
    close(fd);
    close(lfd); /* nothing listens there any more */
    fd = open_tunnel(sv, AID, dst, &o3, &q);
    assert_int_equal(atomic_load(&o3.status), 502);
    assert_string_equal(o3.code, "connect_failed");
    WAIT_FOR(atomic_load(&o3.closed));
    close(fd);
    fd = open_tunnel(sv, "spiffe://example.org/ah/agent/zz", "ssh", &o4, &q);
    assert_int_equal(atomic_load(&o4.status), 502);
    assert_string_equal(o4.code, "offline");
    WAIT_FOR(atomic_load(&o4.closed));
    close(fd);

    link_client_stop(cl, NULL);
    link_server_stop(sv);
}

static void test_disabled_and_gone(void **state) {
    (void)state;
    struct files sf, cf;
    struct tunnel_exec_config tc;
    char err[256];
    assert_int_equal(tunnel_exec_config_init(&tc, false, "127.0.0.1:22", err, sizeof(err)), 0);
    assert_int_equal(tunnel_exec_config_init(&tc, true, "nocolon", err, sizeof(err)), AH_E_INVAL);
    assert_int_equal(tunnel_exec_config_init(&tc, false, "127.0.0.1:22", err, sizeof(err)), 0);
    struct link_server *sv = server(&sf);
    struct link_client *cl = client(link_server_port(sv), &tc, &cf);
    struct owner o = {0};
    struct open_req q;
    int fd = open_tunnel(sv, AID, "ssh", &o, &q);
    assert_int_equal(atomic_load(&o.status), 403);
    assert_string_equal(o.code, "ssh_disabled");
    WAIT_FOR(atomic_load(&o.closed));
    close(fd);
    link_client_stop(cl, NULL);
    link_server_stop(sv);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/ah-test-tunnel-XXXXXX");
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
        cmocka_unit_test(test_relay_backpressure_eof),
        cmocka_unit_test(test_disabled_and_gone),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
