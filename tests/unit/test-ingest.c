/*
 * test-ingest.c — the batching writer of bus/ingest.c against a real SQLite store whose writes
 * fail on demand (the test-only fault VFS, AH_TEST_HOOKS + AH_TEST_FAULT_FILE): D50's "no
 * acknowledged event is lost" when a recorder's frame fails and later ones are already queued.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/bus/bus.h"
#include "../../src/store/store.h"

static int frame(struct bus *b, const char *sid, int64_t rseq) {
    char msg[32];
    snprintf(msg, sizeof(msg), "frame %lld", (long long)rseq);
    json_t *p = json_pack("{s:s, s:s, s:s}", "type", "log", "level", "info", "message", msg);
    struct store_op op = {.kind = STORE_OP_EVENT, .tenant = "t1", .session_id = sid,
                          .rseq = rseq, .payload = p, .ts = 1000 + rseq};
    int rc = bus_submit_wait(b, &op);
    json_decref(p);
    return rc < 0 ? rc : op.result;
}

/* A frame that fails to store holds back every later frame of its recorder until the recorder
 * resends from it: without that, frame 3 (queued behind the failed frame 2, stored once the
 * disk works) would make the resent frame 2 a "repeat" and it would be lost. */
static void test_no_frame_stored_past_a_failed_one(void **state) {
    (void)state;
    char dir[] = "/tmp/ah-test-ingest-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char db[128], fault[128];
    snprintf(db, sizeof(db), "%s/state.db", dir);
    snprintf(fault, sizeof(fault), "%s/fault", dir);
    setenv("AH_TEST_HOOKS", "1", 1);
    setenv("AH_TEST_FAULT_FILE", fault, 1);
    struct store *st = NULL;
    struct ah_problem p = {0};
    assert_int_equal(store_open(db, &st, &p), 0);
    char task[ULID_LEN + 1];
    struct session_new s = {.agent_type = "scripted", .agent_version = "1.0"};
    ulid_new(task);
    ulid_new(s.id);
    json_t *req = json_pack("{s:s}", "prompt", "hi");
    assert_int_equal(store_task_create(st, "t1", task, NULL, req, &s, 1, 1000), 0);
    json_decref(req);
    struct bus *b = NULL;
    assert_int_equal(bus_new(st, &b), 0);

    assert_int_equal(frame(b, s.id, 1), 0);
    FILE *f = fopen(fault, "w");
    assert_non_null(f);
    fputs("ENOSPC", f);
    fclose(f);
    assert_int_equal(frame(b, s.id, 2), AH_E_STORAGE);
    assert_false(store_writable(st));
    unlink(fault); /* space is back, and frame 3 was already on its way */
    assert_int_equal(frame(b, s.id, 3), AH_E_UNAVAIL); /* refused, not acknowledged */
    assert_int_equal(frame(b, s.id, 4), AH_E_UNAVAIL);
    /* the recorder reconnects and resends from its last acknowledged frame */
    assert_int_equal(frame(b, s.id, 2), 0);
    assert_int_equal(frame(b, s.id, 3), 0);
    assert_int_equal(frame(b, s.id, 4), 0);
    assert_int_equal(frame(b, s.id, 3), AH_E_EXISTS); /* a true repeat is still one */
    assert_true(store_writable(st));

    struct event_filter ef = {.ascending = true};
    struct page pg = {.page = 1, .per_page = 50};
    json_t *items = NULL;
    int64_t total = 0;
    assert_int_equal(store_event_list(st, "t1", s.id, &ef, &pg, &items, &total), 0);
    size_t logs = 0;
    json_int_t last_seq = 0;
    for (size_t i = 0; i < json_array_size(items); i++) { /* gapless, and the frames in order */
        json_t *e = json_array_get(items, i);
        json_int_t seq = json_integer_value(json_object_get(e, "seq"));
        assert_int_equal(seq, last_seq + 1);
        last_seq = seq;
        if (strcmp(json_string_value(json_object_get(e, "type")), "log") != 0)
            continue;
        char want[32];
        snprintf(want, sizeof(want), "frame %zu", ++logs);
        assert_string_equal(json_string_value(json_object_get(e, "message")), want);
    }
    assert_int_equal(logs, 4);
    assert_int_equal(total, (int64_t)json_array_size(items));
    json_decref(items);
    bus_free(b);
    store_close(st);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_frame_stored_past_a_failed_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
