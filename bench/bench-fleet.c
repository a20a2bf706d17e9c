/*
 * bench-fleet.c — the access point's fleet registry (issue 16) with N executors heartbeating:
 * heap bytes per executor held by the registry (its Hello, its last heartbeat, the entry), the
 * cost of one heartbeat, of GET /executors' rendering and of one placement over the fleet.
 * The QUIC connections' own memory is bench-link's. Prints numbers, never fails on speed.
 *
 *   bench-fleet [EXECUTORS=200] [HEARTBEAT_ROUNDS=50]
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/enroll/fleet.h"
#include "../src/enroll/host_facts.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200, rounds = argc > 2 ? atoi(argv[2]) : 50;
    const char *labels[] = {"region=eu-west", "gpu=true", "pool=ci", NULL}, *tags[] = {"ci", NULL};
    struct host_facts_config hc = {.version = "1.0.0", .labels = labels, .tags = tags,
                                   .max_concurrent = 8, .data_dir = "/tmp", .heartbeat_ms = 5000};
    struct host_facts *hf = NULL;
    struct ah_problem p = {0};
    if (host_facts_new(&hc, &hf, &p) < 0) {
        fprintf(stderr, "%s\n", p.detail);
        return 1;
    }
    size_t before = heap();
    struct fleet *f = NULL;
    if (fleet_new(&(struct fleet_config){0}, &f, &p) < 0)
        return 1;
    char id[128];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "spiffe://example.org/ah/agent/w%04d", i);
        json_t *h = host_facts_hello(hf, id), *ack = NULL;
        if (fleet_on_hello(f, id, h, &ack, &p) < 0)
            return 1;
        json_decref(h);
        json_decref(ack);
    }
    json_t *b = host_facts_heartbeat(hf); /* the executor's side is not what is measured */
    double t0 = now_s();
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++) {
            snprintf(id, sizeof(id), "spiffe://example.org/ah/agent/w%04d", i);
            (void)fleet_on_heartbeat(f, id, b, NULL);
        }
    double hb = (now_s() - t0) / ((double)rounds * n);
    json_decref(b);
    size_t held = heap() - before;
    t0 = now_s();
    json_t *list = fleet_list_json(f);
    char *text = json_dumps(list, JSON_COMPACT);
    double render = now_s() - t0;
    size_t body = text ? strlen(text) : 0;
    free(text);
    json_decref(list);
    struct place_runner *rs = NULL;
    size_t nr = 0;
    t0 = now_s();
    json_t *want = json_pack("{s:s}", "gpu", "true");
    struct place_request rq = {.tenant = "t", .runtime = "local", .agent = "scripted",
                               .labels = want};
    struct place_result res;
    (void)fleet_runners(f, &rs, &nr);
    placement_choose(&rq, rs, nr, &res);
    double place = now_s() - t0;
    place_runners_free(rs, nr);
    json_decref(want);
    printf("executors: %d, heartbeats: %d each\n", n, rounds);
    printf("registry heap: %zu bytes total, %.1f KiB per executor (Hello + last heartbeat)\n",
           held, (double)held / n / 1024.0);
    printf("one heartbeat: %.1f us (validate, copy, swap under the lock)\n", hb * 1e6);
    printf("GET /executors body: %zu bytes, rendered in %.2f ms\n", body, render * 1e3);
    printf("one placement over the fleet: %.2f ms (snapshot + choose)\n", place * 1e3);
    fleet_free(f);
    host_facts_free(hf);
    return 0;
}
