/*
 * bench-link-fleet.c — the access point's memory per enrolled executor, QUIC connection included
 * (issue 16: goal ≤ 64 KiB each with 200 executors heartbeating). bench-fleet counts the registry
 * alone; this one runs the real link server with the fleet behind its control stream in a child
 * process, enrolls N executors from the parent (each its own certificate and SPIFFE id, a real
 * Hello from host facts, heartbeats), and asks the child for its heap (mallinfo2) and RSS
 * before and after. Prints numbers, never fails on size.
 *
 * Where it goes (valgrind massif, 50 executors, 2026-12): libngtcp2 0.12's own per-connection
 * allocations ~77 KiB (45 KiB of it 8 KiB blocks of 64 frames, packet records and streams that
 * it keeps for the connection's life, not configurable in that version; the connection object
 * 8 KiB), GnuTLS's session and keys ~15 KiB, ours (connection, control stream buffer, registry
 * entry with the Hello and last heartbeat) the rest. ngtcp2's allocations of a page or more are
 * mapped on their own (quic.c), so they are not in the malloc heap, and the pages of them no
 * object reached are not resident: RSS is the figure to hold against the goal.
 * RSS per executor, 200 executors, 2026-12: 97.9 KiB with ngtcp2 on malloc and the control
 * stream's send buffer kept for the connection's life (heap 115.4 KiB); 85.1 KiB without.
 *
 *   cmake --build build --target bench-link-fleet && build/bench-link-fleet [EXECUTORS=200]
 *         [HEARTBEAT_MS=1000]
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../src/enroll/fleet.h"
#include "../src/enroll/host_facts.h"
#include "../src/enroll/link.h"

static char dir[256];

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

struct sample {
    size_t heap;
    long rss_kib;
    size_t executors; /* in the fleet registry */
};

/* ---- child: the access point's side ---------------------------------------------------------- */

static void serve(int cmd_fd, int out_fd) {
    log_setup(2, LOG_WARN);
    struct fleet *fleet = NULL;
    struct ah_problem p = {0};
    if (fleet_new(&(struct fleet_config){0}, &fleet, &p) < 0)
        _exit(1);
    struct link_server_config sc = {.bind = "127.0.0.1"};
    char cert[300], key[300], ca[300], err[512];
    snprintf(cert, sizeof(cert), "%s/serve.pem", dir);
    snprintf(key, sizeof(key), "%s/serve.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    sc.id = (struct link_identity){.cert_file = cert, .key_file = key, .ca_file = ca};
    link_fleet_hooks(fleet, &sc.control);
    struct link_server *srv = NULL;
    if (link_server_start(&sc, &srv, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench-link-fleet: %s\n", err);
        _exit(1);
    }
    int port = link_server_port(srv);
    if (write(out_fd, &port, sizeof(port)) != sizeof(port))
        _exit(1);
    char c;
    while (read(cmd_fd, &c, 1) == 1 && c == 'm') { /* measure */
        malloc_trim(0);
        struct mallinfo2 mi = mallinfo2();
        struct sample s = {.heap = mi.uordblks + mi.hblkhd, .rss_kib = rss_kib(),
                           .executors = fleet_count(fleet)};
        if (write(out_fd, &s, sizeof(s)) != sizeof(s))
            break;
    }
    link_server_stop(srv);
    fleet_free(fleet);
    _exit(0);
}

/* ---- parent: the executors -------------------------------------------------------------------- */

static json_t *hello(void *ctx, const char *executor_id) {
    return host_facts_hello(ctx, executor_id);
}
static json_t *heartbeat(void *ctx) {
    return host_facts_heartbeat(ctx);
}

static struct sample measure(int cmd_fd, int in_fd) {
    struct sample s = {0};
    if (write(cmd_fd, "m", 1) != 1 || read(in_fd, &s, sizeof(s)) != sizeof(s)) {
        fprintf(stderr, "bench-link-fleet: the access point side died\n");
        exit(1);
    }
    return s;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200;
    int hb_ms = argc > 2 ? atoi(argv[2]) : 1000;
    if (n < 1 || n > 5000 || hb_ms < 100) {
        fprintf(stderr, "usage: bench-link-fleet [EXECUTORS 1..5000] [HEARTBEAT_MS >= 100]\n");
        return 2;
    }
    snprintf(dir, sizeof(dir), "/tmp/ah-bench-link-fleet-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "sh %s %s", AH_MKCERTS, dir);
    if (system(cmd) != 0)
        return 1;
    /* one certificate per executor (one shared key: generating keys is not what is measured) */
    snprintf(cmd, sizeof(cmd),
             "cd %s && i=0; while [ $i -lt %d ]; do "
             "printf 'cn = \"x%%d\"\\nuri = \"spiffe://example.org/ah/agent/x%%d\"\\n"
             "tls_www_client\\nsigning_key\\nexpiration_days = 2\\n' $i $i > x.tmpl && "
             "certtool --generate-certificate --load-privkey a.key --load-ca-certificate ca.pem "
             "--load-ca-privkey ca.key --template x.tmpl --outfile x$i.pem 2>/dev/null || exit 1; "
             "i=$((i + 1)); done",
             dir, n);
    printf("making %d executor certificates...\n", n);
    fflush(stdout);
    if (system(cmd) != 0)
        return 1;

    int to_child[2], from_child[2];
    if (pipe(to_child) < 0 || pipe(from_child) < 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        serve(to_child[0], from_child[1]);
    }
    close(to_child[0]);
    close(from_child[1]);
    int port = 0;
    if (read(from_child[0], &port, sizeof(port)) != sizeof(port))
        return 1;
    log_setup(2, LOG_WARN);
    struct sample before = measure(to_child[1], from_child[0]);

    const char *labels[] = {"region=eu-west", "pool=ci", NULL};
    struct host_facts_config hc = {.version = "1.0.0", .labels = labels, .max_concurrent = 8,
                                   .data_dir = dir, .heartbeat_ms = hb_ms};
    struct host_facts *hf = NULL;
    struct ah_problem p = {0};
    if (host_facts_new(&hc, &hf, &p) < 0) {
        fprintf(stderr, "bench-link-fleet: %s\n", p.detail);
        return 1;
    }
    struct link_client **cs = calloc((size_t)n, sizeof(*cs));
    char (*certs)[300] = calloc((size_t)n, sizeof(*certs)); /* the link borrows the paths */
    char key[300], ca[300], err[512];
    snprintf(key, sizeof(key), "%s/a.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    for (int i = 0; i < n; i++) {
        char *cert = certs[i];
        snprintf(cert, sizeof(*certs), "%s/x%d.pem", dir, i);
        struct link_client_config cc = {
            .host = "127.0.0.1", .port = port,
            .id = {.cert_file = cert, .key_file = key, .ca_file = ca},
            .expected_server_id = "spiffe://example.org/ah/serve", .heartbeat_ms = hb_ms,
            .control = {.hello = hello, .heartbeat = heartbeat, .ctx = hf},
        };
        if (link_client_start(&cc, &cs[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "bench-link-fleet: executor %d: %s\n", i, err);
            return 1;
        }
    }
    for (int i = 0; i < n; i++)
        while (!link_client_enrolled(cs[i]))
            usleep(1000);
    /* three heartbeat rounds after the last enrollment: the registry holds each one's latest */
    usleep((useconds_t)hb_ms * 3500);
    struct sample after = measure(to_child[1], from_child[0]);
    size_t heap = after.heap > before.heap ? after.heap - before.heap : 0;
    long rss = after.rss_kib - before.rss_kib;
    printf("executors enrolled and heartbeating every %d ms: %d (registry holds %zu)\n", hb_ms, n,
           after.executors);
    printf("access point memory (RSS) per executor (QUIC connection + TLS session + control "
           "stream + registry): %.1f KiB (goal <= 64 KiB; %ld KiB -> %ld KiB)\n",
           (double)rss / n, before.rss_kib, after.rss_kib);
    printf("  of which in the malloc heap: %.1f KiB per executor (ngtcp2's blocks of a page or "
           "more are mapped apart: in RSS only as far as touched)\n",
           (double)heap / n / 1024.0);
    for (int i = 0; i < n; i++)
        link_client_stop(cs[i], "bench");
    free(cs);
    free(certs);
    host_facts_free(hf);
    close(to_child[1]);
    waitpid(pid, NULL, 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
