/* test-fleet.c — issue 16 above the transport: the executor's Hello/Heartbeat (host_facts), the
 * access point's registry and its health rules (fleet), and placement (D43). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/enroll/fleet.h"
#include "../../src/enroll/host_facts.h"
#include "../../src/store/store.h"

#define ID1 "spiffe://example.org/ah/agent/w1"
#define ID2 "spiffe://example.org/ah/agent/w2"

/* ---- host facts --------------------------------------------------------------------------- */

static int facts_rc(struct host_facts_config *c, const char *want_detail) {
    struct host_facts *hf = NULL;
    struct ah_problem p = {0};
    int rc = host_facts_new(c, &hf, &p);
    if (rc == 0)
        host_facts_free(hf);
    else if (want_detail && !strstr(p.detail, want_detail))
        fail_msg("expected '%s' in '%s'", want_detail, p.detail);
    problem_clear(&p);
    return rc;
}

static void test_facts_refuse_bad_flags(void **state) {
    (void)state;
    const char *nokv[] = {"region", NULL}, *badkey[] = {"re gion=x", NULL},
               *dup[] = {"a=1", "a=2", NULL}, *badtag[] = {"", NULL};
    struct host_facts_config c = {.version = "1", .max_concurrent = 2};
    c.labels = nokv;
    assert_int_equal(facts_rc(&c, "is not KEY=VALUE"), AH_E_INVAL);
    c.labels = badkey;
    assert_int_equal(facts_rc(&c, "may only hold"), AH_E_INVAL);
    c.labels = dup;
    assert_int_equal(facts_rc(&c, "given twice"), AH_E_INVAL);
    c.labels = NULL;
    c.tags = badtag;
    assert_int_equal(facts_rc(&c, "--tags"), AH_E_INVAL);
    c.tags = NULL;
    c.resources_json = "[1]";
    assert_int_equal(facts_rc(&c, "must be a JSON object"), AH_E_INVAL);
    c.resources_json = "{gpu: 1}";
    assert_int_equal(facts_rc(&c, "not JSON"), AH_E_INVAL);
    c.resources_file = "/nonexistent/res.json";
    assert_int_equal(facts_rc(&c, "together"), AH_E_INVAL);
    c.resources_json = NULL;
    assert_int_equal(facts_rc(&c, "cannot read"), AH_E_NOTFOUND);
    c.resources_file = NULL;
    c.name = "";
    assert_int_equal(facts_rc(&c, "--name"), AH_E_INVAL);
}

static void test_facts_hello_and_heartbeat(void **state) {
    (void)state;
    char path[] = "/tmp/ah-res-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *res = "{\"gpu\": {\"count\": 2}, \"cores\": 64}";
    assert_int_equal(write(fd, res, strlen(res)), (ssize_t)strlen(res));
    close(fd);
    const char *labels[] = {"region=eu-west", "gpu=true", NULL}, *tags[] = {"ci", "ci", NULL};
    struct host_facts_config c = {.version = "9.9", .labels = labels, .tags = tags,
                                  .resources_file = path, .max_concurrent = 3,
                                  .data_dir = "/tmp", .heartbeat_ms = 250};
    struct host_facts *hf = NULL;
    struct ah_problem p = {0};
    assert_int_equal(host_facts_new(&c, &hf, &p), 0);
    unlink(path);
    json_t *h = host_facts_hello(hf, ID1);
    assert_non_null(h);
    assert_string_equal(json_string_value(json_object_get(h, "type")), "Hello");
    assert_string_equal(json_string_value(json_object_get(h, "executor_id")), ID1);
    assert_string_equal(json_string_value(json_object_get(h, "name")), "w1"); /* id's tail */
    assert_string_equal(json_string_value(json_object_get(json_object_get(h, "labels"), "region")),
                        "eu-west");
    assert_int_equal(json_array_size(json_object_get(h, "tags")), 1); /* duplicates folded */
    json_t *r = json_object_get(h, "resources");
    assert_int_equal(json_integer_value(json_object_get(r, "cores")), 64); /* the user wins */
    assert_non_null(json_object_get(r, "gpu"));
    assert_true(json_integer_value(json_object_get(r, "memory_bytes")) > 0); /* detected */
    json_t *host = json_object_get(h, "host");
    assert_string_equal(json_string_value(json_object_get(host, "os")), "linux");
    assert_non_null(json_string_value(json_object_get(host, "kernel")));
    assert_non_null(json_string_value(json_object_get(host, "arch")));
    assert_int_equal(json_integer_value(json_object_get(h, "max_concurrent_tasks")), 3);
    assert_int_equal(json_integer_value(json_object_get(h, "heartbeat_interval_ms")), 250);
    json_decref(h);

    host_facts_set_running(hf, 1);
    json_t *b = host_facts_heartbeat(hf);
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(b, "type")), "Heartbeat");
    assert_int_equal(json_integer_value(json_object_get(b, "free_slots")), 2);
    assert_int_equal(json_integer_value(json_object_get(b, "running")), 1);
    assert_true(json_array_size(json_object_get(b, "health_checks")) >= 2);
    assert_non_null(json_string_value(json_object_get(b, "timestamp")));
    json_decref(b);
    host_facts_free(hf);
}

/* ---- the registry ------------------------------------------------------------------------- */

static json_t *hello(const char *id, int64_t hb_ms) {
    return json_pack("{s:s, s:s, s:s, s:{s:s}, s:I, s:I, s:{s:s, s:s, s:s}, s:[s], s:[s],"
                     " s:[{s:s}]}",
                     "type", "Hello", "executor_id", id, "version", "1.0", "labels", "region",
                     "eu", "heartbeat_interval_ms", (json_int_t)hb_ms, "max_concurrent_tasks",
                     (json_int_t)4, "host", "os", "linux", "arch", "x86_64", "kernel", "6.1",
                     "snapshot_providers", "git", "runtimes", "local", "agents", "type",
                     "scripted");
}

static json_t *beat(int running, const char *check_status) {
    return json_pack("{s:s, s:I, s:I, s:[{s:s, s:s}]}", "type", "Heartbeat", "running",
                     (json_int_t)running, "free_slots", (json_int_t)(4 - running),
                     "health_checks", "name", "disk", "status", check_status);
}

static const char *health(struct fleet *f, const char *key) {
    static char out[32];
    json_t *j = NULL;
    assert_int_equal(fleet_get_json(f, key, &j), 0);
    snprintf(out, sizeof(out), "%s", json_string_value(json_object_get(j, "health")));
    json_decref(j);
    return out;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (generously) for the executor's health to become `want`. */
static void wait_health(struct fleet *f, const char *key, const char *want) {
    for (int i = 0; i < 1000 && strcmp(health(f, key), want) != 0; i++)
        sleep_ms(10);
    assert_string_equal(health(f, key), want);
}

static void test_fleet_hello_heartbeat_health(void **state) {
    (void)state;
    struct fleet *f = NULL;
    struct ah_problem p = {0};
    assert_int_equal(fleet_new(&(struct fleet_config){0}, &f, &p), 0);
    json_t *ack = NULL, *h = hello(ID1, 40);
    /* a heartbeat before any Hello: the transport must close the link */
    json_t *b = beat(0, "ok");
    assert_int_equal(fleet_on_heartbeat(f, ID1, b, NULL), AH_E_NOTFOUND);
    /* the Hello must name the id the certificate proves */
    assert_int_equal(fleet_on_hello(f, ID2, h, &ack, &p), AH_E_INVAL);
    assert_non_null(strstr(p.detail, "certificate proves"));
    problem_clear(&p);
    json_t *bad = json_pack("{s:s, s:s}", "type", "Hello", "labels", "x");
    assert_int_equal(fleet_on_hello(f, ID1, bad, &ack, &p), AH_E_INVAL);
    problem_clear(&p);
    json_decref(bad);
    assert_int_equal(fleet_count(f), 0);

    assert_int_equal(fleet_on_hello(f, ID1, h, &ack, &p), 0);
    assert_string_equal(json_string_value(json_object_get(ack, "type")), "Ack");
    assert_int_equal(json_integer_value(json_object_get(ack, "heartbeat_interval_ms")), 40);
    assert_non_null(json_object_get(ack, "config_hash"));
    json_decref(ack);
    assert_string_equal(health(f, "w1"), "online"); /* by name too */
    json_t *j = NULL;
    assert_int_equal(fleet_get_json(f, ID1, &j), 0);
    assert_string_equal(json_string_value(json_object_get(j, "os")), "linux");
    assert_int_equal(json_integer_value(json_object_get(j, "capacity")), 4);
    assert_false(json_is_true(json_object_get(j, "drained")));
    assert_non_null(json_string_value(json_object_get(j, "lastSeen")));
    json_decref(j);

    /* a failing health check: degraded; ok again: online */
    json_decref(b);
    b = beat(1, "failing");
    ack = NULL;
    assert_int_equal(fleet_on_heartbeat(f, ID1, b, &ack), 0);
    assert_non_null(ack);
    json_decref(ack);
    assert_string_equal(health(f, ID1), "degraded");
    json_decref(b);
    b = beat(1, "ok");
    assert_int_equal(fleet_on_heartbeat(f, ID1, b, NULL), 0);
    assert_string_equal(health(f, ID1), "online");
    /* silence: late (degraded), then 3 intervals missed (offline), with no call at all */
    wait_health(f, ID1, "offline");
    assert_int_equal(fleet_on_heartbeat(f, ID1, b, NULL), 0); /* back */
    assert_string_equal(health(f, ID1), "online");
    /* a connected executor cannot be removed; drained it stays listed */
    char *id = NULL;
    assert_int_equal(fleet_remove(f, "w1", &id), AH_E_CONFLICT);
    assert_int_equal(fleet_drain(f, "w1", &id), 0);
    assert_string_equal(id, ID1);
    free(id);
    assert_int_equal(fleet_drain(f, "nope", &id), AH_E_NOTFOUND);
    /* a goodbye: offline at once, with the reason */
    fleet_on_gone(f, ID1, "shutting down");
    assert_string_equal(health(f, ID1), "offline");
    assert_int_equal(fleet_get_json(f, ID1, &j), 0);
    assert_string_equal(json_string_value(json_object_get(j, "disconnectReason")),
                        "shutting down");
    assert_true(json_is_true(json_object_get(j, "drained")));
    json_decref(j);
    assert_int_equal(fleet_remove(f, ID1, &id), 0);
    free(id);
    assert_int_equal(fleet_count(f), 0);
    assert_int_equal(fleet_on_heartbeat(f, ID1, b, NULL), AH_E_NOTFOUND); /* removed */
    json_decref(b);
    json_decref(h);
    fleet_free(f);
}

static void test_fleet_persists(void **state) {
    (void)state;
    char dir[] = "/tmp/ah-fleet-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char db[200];
    snprintf(db, sizeof(db), "%s/state.db", dir);
    struct store *st = NULL;
    struct ah_problem p = {0};
    assert_int_equal(store_open(db, &st, &p), 0);
    struct fleet *f = NULL;
    assert_int_equal(fleet_new(&(struct fleet_config){.store = st}, &f, &p), 0);
    json_t *ack = NULL, *h = hello(ID1, 5000), *h2 = hello(ID2, 5000);
    assert_int_equal(fleet_on_hello(f, ID1, h, &ack, &p), 0);
    json_decref(ack);
    assert_int_equal(fleet_on_hello(f, ID2, h2, &ack, &p), 0);
    json_decref(ack);
    char *id = NULL;
    assert_int_equal(fleet_drain(f, ID2, &id), 0);
    free(id);
    fleet_free(f);
    /* a restarted access point: both listed, offline until they reconnect; the drain holds */
    assert_int_equal(fleet_new(&(struct fleet_config){.store = st}, &f, &p), 0);
    json_t *items = fleet_list_json(f);
    assert_int_equal(json_array_size(items), 2);
    json_t *e2 = json_array_get(items, 1);
    assert_string_equal(json_string_value(json_object_get(e2, "id")), ID2);
    assert_string_equal(json_string_value(json_object_get(e2, "health")), "offline");
    assert_true(json_is_true(json_object_get(e2, "drained")));
    assert_string_equal(json_string_value(json_object_get(e2, "arch")), "x86_64");
    json_decref(items);
    assert_int_equal(fleet_on_hello(f, ID2, h2, &ack, &p), 0); /* reconnects */
    json_decref(ack);
    assert_string_equal(health(f, ID2), "online");
    assert_int_equal(fleet_remove(f, ID1, &id), 0);
    free(id);
    fleet_free(f);
    assert_int_equal(fleet_new(&(struct fleet_config){.store = st}, &f, &p), 0);
    assert_int_equal(fleet_count(f), 1);
    fleet_free(f);
    json_decref(h);
    json_decref(h2);
    store_close(st);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- placement ---------------------------------------------------------------------------- */

static struct place_runner runner(const char *id, bool local, int cap, int running,
                                  const char *labels_json, const char *runtimes_json,
                                  const char *agents_json) {
    struct place_runner r = {.id = (char *)id, .name = (char *)(strrchr(id, '/') ? strrchr(id, '/') + 1 : id),
                             .local = local, .online = true, .capacity = cap, .running = running};
    r.labels = json_loads(labels_json ? labels_json : "{}", 0, NULL);
    r.runtimes = runtimes_json ? json_loads(runtimes_json, 0, NULL) : NULL;
    r.agents = agents_json ? json_loads(agents_json, 0, NULL) : NULL;
    return r;
}

static void runners_clear(struct place_runner *r, size_t n) {
    for (size_t i = 0; i < n; i++) {
        json_decref(r[i].labels);
        json_decref(r[i].runtimes);
        json_decref(r[i].agents);
    }
}

static void test_placement(void **state) {
    (void)state;
    struct place_runner rs[3] = {
        runner("local", true, 2, 0, NULL, NULL, NULL),
        runner(ID1, false, 4, 1, "{\"gpu\":\"true\",\"region\":\"eu\"}", "[\"local\"]",
               "[\"scripted\",\"codex\"]"),
        runner(ID2, false, 8, 0, "{\"region\":\"us\"}", "[\"local\",\"devcontainer\"]",
               "[\"scripted\"]"),
    };
    struct place_result res;
    struct place_request rq = {.tenant = "t1", .runtime = "local", .agent = "scripted"};
    /* most free slots wins */
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, 2);
    assert_false(res.waiting);
    /* runtime and agent narrow it */
    rq.runtime = "devcontainer";
    rs[2].running = 7; /* 1 free: still the only executor with the runtime, but local has 2 */
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, 0); /* the local runner says any (it reports its own errors) */
    rs[0].capacity = 0;             /* pure control plane: the local runner takes nothing */
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, 2);
    rs[2].running = 0;
    rq.runtime = "local";
    rq.agent = "codex";
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, 1);
    /* labels a runner advertises pin; others are annotations */
    rq.agent = "scripted";
    json_t *labels = json_pack("{s:s, s:s}", "gpu", "true", "team", "x");
    rq.labels = labels;
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, 1);
    json_object_set_new(labels, "region", json_string("us"));
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, -1);
    assert_false(res.waiting);
    assert_non_null(strstr(res.reason, "label"));
    rq.labels = NULL;
    json_decref(labels);
    /* pinned by executionHostId: by name or id, even with fewer free slots */
    rq.pin = "w1";
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, 1);
    rq.pin = "ghost";
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, -1);
    assert_non_null(strstr(res.reason, "names no known executor"));
    /* pinned to an offline executor: waits for it */
    rq.pin = ID1;
    rs[1].online = false;
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, -1);
    assert_true(res.waiting);
    assert_non_null(strstr(res.reason, "offline"));
    /* drained and offline are excluded */
    rq.pin = NULL;
    rs[2].drained = true;
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, -1);
    assert_non_null(strstr(res.reason, "drained"));
    assert_non_null(strstr(res.reason, "capacity 0"));
    /* all that fit are full: the first of them, waiting */
    rs[0].capacity = 2;
    rs[0].running = 2;
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, 0);
    assert_true(res.waiting);
    assert_non_null(strstr(res.reason, "free slot"));
    /* ties go to the earlier runner (the local one first) */
    rs[0].running = 0;
    rs[1].online = true;
    rs[1].capacity = 2;
    rs[1].running = 0;
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, 0);
    /* admission per tenant */
    rq.tenant_max = 3;
    rq.tenant_running = 3;
    placement_choose(&rq, rs, 3, &res);
    assert_int_equal(res.index, -1);
    assert_true(res.waiting);
    assert_non_null(strstr(res.reason, "t1"));
    runners_clear(rs, 3);
}

static int64_t running_of(void *arg, const char *tenant) {
    (void)arg;
    return strcmp(tenant, "a") == 0 ? 5 : strcmp(tenant, "b") == 0 ? 1 : 3;
}

static void test_fairness(void **state) {
    (void)state;
    const char *q[] = {"a", "a", "c", "b", "b"};
    assert_int_equal(placement_fair_next(q, 5, running_of, NULL), 3); /* b's oldest */
    assert_int_equal(placement_fair_next(q, 3, running_of, NULL), 2);
    assert_int_equal(placement_fair_next(q, 0, running_of, NULL), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_facts_refuse_bad_flags),
        cmocka_unit_test(test_facts_hello_and_heartbeat),
        cmocka_unit_test(test_fleet_hello_heartbeat_health),
        cmocka_unit_test(test_fleet_persists),
        cmocka_unit_test(test_placement),
        cmocka_unit_test(test_fairness),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
