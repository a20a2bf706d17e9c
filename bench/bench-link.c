/*
 * bench-link.c — the executor link over QUIC on loopback (issue 16): prints the median time of a
 * full enrollment (QUIC + TLS 1.3 mutual handshake, then Hello ⇄ Ack) and the frames per second
 * one executor streams to the access point on one connection (an event-flow stream, frames of
 * about 200 bytes, with the bounded send buffer's back-pressure). Prints numbers, never fails on
 * speed.
 *
 *   cmake --build build --target bench-link && build/bench-link [handshakes] [frames]
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../src/enroll/link.h"

static char dir[256];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- access point: counts the frames of executor-opened streams ---------------------------- */

static atomic_long frames_in;

static int count_frame(void *sctx, struct link_stream *s, json_t *msg) {
    atomic_fetch_add(&frames_in, 1);
    return 0;
}
static const struct link_stream_handlers counter = {.on_frame = count_frame};
static int srv_stream(void *ctx, struct link_conn *c, struct link_stream *s) {
    link_stream_set_handlers(s, &counter, NULL);
    return 0;
}
static const struct link_handlers srv_handlers = {.on_stream = srv_stream};

/* ---- executor: pumps frames on one stream ---------------------------------------------------- */

struct pump {
    struct link_conn *conn;
    struct link_stream *s;
    json_t *frame;
    long total, sent;
};

static void pump_more(struct pump *p) {
    while (p->sent < p->total) {
        json_object_set_new(p->frame, "seq", json_integer(p->sent));
        if (link_stream_send_frame(p->s, p->frame) < 0)
            return; /* full: on_writable calls again */
        p->sent++;
    }
}
static void writable(void *sctx, struct link_stream *s) {
    pump_more(sctx);
}
static const struct link_stream_handlers pump_handlers = {.on_writable = writable};

static void cli_connect(void *ctx, struct link_conn *c, const char *peer) {
    struct pump *p = ctx;
    p->conn = c;
}
static const struct link_handlers cli_handlers = {.on_connect = cli_connect};

static void start_pump(void *arg) {
    struct pump *p = arg;
    if (link_stream_open(p->conn, &pump_handlers, p, &p->s) < 0) {
        fprintf(stderr, "bench-link: cannot open a stream\n");
        exit(1);
    }
    pump_more(p);
}

static void files(struct link_identity *id, const char *name) {
    static char bufs[6][300];
    static int k;
    char *cert = bufs[k++ % 6], *key = bufs[k++ % 6], *ca = bufs[k++ % 6];
    snprintf(cert, 300, "%s/%s.pem", dir, name);
    snprintf(key, 300, "%s/%s.key", dir, name);
    snprintf(ca, 300, "%s/ca.pem", dir);
    *id = (struct link_identity){.cert_file = cert, .key_file = key, .ca_file = ca};
}

int main(int argc, char **argv) {
    int handshakes = argc > 1 ? atoi(argv[1]) : 50;
    long nframes = argc > 2 ? atol(argv[2]) : 200000;
    snprintf(dir, sizeof(dir), "/tmp/ah-bench-link-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "sh %s %s", AH_MKCERTS, dir);
    if (system(cmd) != 0)
        return 1;
    log_setup(2, LOG_WARN);
    struct link_server_config sc = {.bind = "127.0.0.1", .handlers = &srv_handlers};
    files(&sc.id, "serve");
    struct link_server *srv = NULL;
    char err[512];
    if (link_server_start(&sc, &srv, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench-link: %s\n", err);
        return 1;
    }
    struct pump p = {.total = nframes};
    struct link_client_config cc = {
        .host = "127.0.0.1", .port = link_server_port(srv),
        .expected_server_id = "spiffe://example.org/ah/serve", .heartbeat_ms = 5000,
        .handlers = &cli_handlers, .ctx = &p,
    };
    files(&cc.id, "a");

    double *t = calloc((size_t)handshakes, sizeof(double));
    for (int i = 0; i < handshakes; i++) {
        double t0 = now_s();
        struct link_client *c = NULL;
        if (link_client_start(&cc, &c, err, sizeof(err)) < 0) {
            fprintf(stderr, "bench-link: %s\n", err);
            return 1;
        }
        while (!link_client_enrolled(c))
            usleep(100);
        t[i] = now_s() - t0;
        link_client_stop(c, "bench");
    }
    qsort(t, (size_t)handshakes, sizeof(double), cmp);
    printf("enrollment (QUIC + TLS 1.3 mutual handshake + Hello/Ack), %d runs: median %.2f ms, "
           "p90 %.2f ms (includes loading the certificate files)\n",
           handshakes, t[handshakes / 2] * 1e3, t[handshakes * 9 / 10] * 1e3);
    free(t);

    /* frames/s over one connection */
    struct link_client *c = NULL;
    if (link_client_start(&cc, &c, err, sizeof(err)) < 0)
        return 1;
    while (!link_client_enrolled(c))
        usleep(100);
    p.frame = json_pack("{s:s, s:s, s:I, s:s}", "type", "Event", "session_id",
                        "01JBENCHSESSION0000000000", "seq", (json_int_t)0, "data",
                        "{\"kind\":\"log\",\"text\":\"compiling src/enroll/quic.c ... ok\"}");
    json_object_set_new(p.frame, "seq", json_integer(123456));
    size_t fsize = json_dumpb(p.frame, NULL, 0, JSON_COMPACT) + 4;
    atomic_store(&frames_in, 0);
    double t0 = now_s();
    link_post(link_client_loop(c), start_pump, &p);
    while (atomic_load(&frames_in) < nframes)
        usleep(500);
    double dt = now_s() - t0;
    printf("frames over one connection: %ld frames of %zu bytes in %.2f s = %.0f frames/s "
           "(%.1f MB/s)\n",
           nframes, fsize, dt, nframes / dt, nframes * (double)fsize / dt / 1e6);
    link_client_stop(c, "bench");
    json_decref(p.frame);
    link_server_stop(srv);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
