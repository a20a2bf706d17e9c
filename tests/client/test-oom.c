/*
 * test-oom.c — allocation-failure ("torture") tests: every operation below is run again and
 * again, failing its 1st, 2nd, 3rd, … allocation (ours through ld --wrap, jansson's through
 * json_set_alloc_funcs), until it runs without reaching the failure. Each run must end in 0 or
 * AH_E_NOMEM — never a crash, an abort, or (under LeakSanitizer) a leak. (One allowance: jansson's
 * parser reports some of its own allocation failures as syntax errors, which then surface as
 * AH_E_PROTOCOL.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/client/client_internal.h"

/* ---- the failing allocator ---------------------------------------------------------------- */

static long fail_at; /* 0: never */
static long calls;
static bool failed_one;
static bool in_json;        /* the allocation is jansson's */
static bool failed_in_json; /* the failed allocation was jansson's */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

static bool should_fail(void) {
    if (fail_at && ++calls == fail_at) {
        failed_one = true;
        failed_in_json = in_json;
        return true;
    }
    return false;
}

void *__wrap_malloc(size_t n);
void *__wrap_malloc(size_t n) {
    return should_fail() ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_calloc(size_t n, size_t m) {
    return should_fail() ? NULL : __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n) {
    return should_fail() ? NULL : __real_realloc(p, n);
}
char *__wrap_strdup(const char *s);
char *__wrap_strdup(const char *s) {
    return should_fail() ? NULL : __real_strdup(s);
}
char *__wrap_strndup(const char *s, size_t n);
char *__wrap_strndup(const char *s, size_t n) {
    return should_fail() ? NULL : __real_strndup(s, n);
}

static void *json_alloc(size_t n) {
    in_json = true;
    void *p = __wrap_malloc(n);
    in_json = false;
    return p;
}

/* Runs op with the 1st, 2nd, … allocation failing until it no longer reaches the failure. */
static void torture(const char *name, int (*op)(void)) {
    long n;
    for (n = 1; n < 100000; n++) {
        calls = 0;
        failed_one = false;
        failed_in_json = false;
        fail_at = n;
        int rc = op();
        fail_at = 0;
        if (!failed_one) {
            assert_int_equal(rc, 0); /* no failure injected: it must work */
            break;
        }
        /* jansson's parser reports some allocation failures as syntax errors */
        if (rc == AH_E_PROTOCOL && failed_in_json)
            continue;
        if (rc != 0 && rc != AH_E_NOMEM)
            fail_msg("%s: allocation %ld failed and the result was %s", name, n, ah_error_name(rc));
    }
    printf("%s: survived %ld allocation failures\n", name, n - 1);
}

/* ---- operations -------------------------------------------------------------------------------
 */

static const char SESSION[] =
    "{\"id\":\"01J9Q0Z4YB6N8W2F3K5M7P9R1T\",\"taskId\":\"T\",\"tenantId\":\"acme\",\"status\":"
    "\"running\",\"prompt\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":"
    "\"b\"}],\"repo\":{\"mode\":\"none\"},\"agent\":{\"type\":\"x\"},\"links\":{\"self\":\"/s\"},"
    "\"recent_events\":[{\"type\":\"log\",\"seq\":1,\"message\":\"m\"},{\"type\":\"status\","
    "\"status\":\"running\",\"seq\":2}],\"changes\":{\"files_changed\":1}}";

static int op_session(void) {
    struct ah_session *s = NULL;
    int rc = ah_session_from_json(SESSION, &s);
    ah_session_free(s);
    return rc;
}

static int op_lists(void) {
    char text[4096];
    snprintf(text, sizeof(text), "{\"items\":[%s,%s],\"total\":2,\"nextPage\":null}", SESSION,
             SESSION);
    struct ah_session_list *l = NULL;
    int rc = ah_session_list_from_json(text, &l);
    ah_session_list_free(l);
    struct ah_branch_list *b = NULL;
    if (rc == 0)
        rc = ah_branch_list_from_json("{\"branches\":[{\"name\":\"a\",\"is_default\":true}]}", &b);
    ah_branch_list_free(b);
    struct ah_task_created *t = NULL;
    if (rc == 0)
        rc = ah_task_created_from_json("{\"session_ids\":[\"a\",\"b\"]}", &t);
    ah_task_created_free(t);
    return rc;
}

static int op_spec(void) {
    struct ah_agent_spec agents[] = {
        {.type = "scripted", .count = 2, .settings_json = "{\"scenario\":[{\"exit\":0}]}"}};
    const char *prefs[] = {"git"};
    struct ah_label labels[] = {{"a", "b"}};
    struct ah_task_spec spec = {.prompt = "p",
                                .repo_url = "https://g/a.git",
                                .cpu = 1,
                                .memory_mib = 1,
                                .snapshot_preference = prefs,
                                .n_snapshot_preference = 1,
                                .agents = agents,
                                .n_agents = 1,
                                .delivery_mode = "pr",
                                .labels = labels,
                                .n_labels = 1};
    char *body = NULL;
    struct ah_api_error e = {0};
    int rc = ah_task_spec_to_json(&spec, false, &body, &e);
    free(body);
    ah_api_error_clear(&e);
    return rc == AH_E_INVAL ? AH_E_NOMEM : rc; /* settings unparsable = its allocation failed */
}

static int nop_event(void *ud, const struct sse_event *ev) {
    return 0;
}

static int op_sse(void) {
    struct sse_parser p;
    sse_parser_init(&p);
    const char *text = "id: 1\nevent: a\ndata: x\ndata: y\n\n: c\nid: 2\ndata: z";
    int rc = sse_feed(&p, text, strlen(text), nop_event, NULL);
    if (rc == 0)
        rc = sse_feed(&p, "\n\n", 2, nop_event, NULL);
    sse_parser_clear(&p);
    return rc;
}

static int op_problem(void) {
    struct ah_api_error e = {0};
    const char *body = "{\"type\":\"/problems/validation\",\"title\":\"V\",\"detail\":\"d\","
                       "\"requestId\":\"r\",\"errors\":{\"a\":[\"x\",\"y\"],\"b\":[\"z\"]}}";
    int rc = problem_from_response(&e, 400, body, strlen(body), "h", 5);
    /* Out of memory, the copies may be missing, never the code: a 400 is a 400 */
    bool coded = rc == e.code && e.status == 400 && (rc == AH_E_INVAL || rc == AH_E_BADREQ);
    bool complete = rc == AH_E_INVAL && e.type && e.title && e.detail && e.request_id &&
                    e.body && e.n_errors == 3;
    ah_api_error_clear(&e);
    if (!coded)
        return AH_E_PROTOCOL;
    return complete ? 0 : AH_E_NOMEM;
}

static int op_client(void) {
    ah_client *c = NULL;
    int rc = ah_client_new("http://127.0.0.1:9/api/v1", &c);
    if (rc == 0)
        rc = ah_client_set_api_key(c, "ahk_x_y");
    if (rc == 0)
        rc = ah_client_set_ca_file(c, "/nonexistent.pem");
    if (rc == 0)
        rc = ah_client_set_timeouts(c, AH_EP_STREAM, 100, 200);
    ah_client_free(c);
    return rc;
}

static int count(void *ud, const struct ah_event *ev) {
    (*(int *)ud)++;
    return 0;
}

/* The mock end to end on a virtual clock (no threads, so the allocation order is fixed). */
static int op_mock(void) {
    ah_clock *clock = NULL;
    int rc = ah_clock_new_virtual(1735689600000LL, &clock);
    if (rc < 0)
        return rc;
    struct ah_mock_options o;
    ah_mock_options_default(&o);
    o.clock = clock;
    ah_task_manager *tm = NULL;
    rc = ah_task_manager_new_mock(&o, &tm);
    struct ah_agent_spec agent = {
        .type = "scripted",
        .settings_json = "{\"scenario\":[{\"thought\":\"t\"},{\"tool\":\"x\",\"ms\":5},"
                         "{\"edit\":\"f\",\"content\":\"a\\n\"},{\"exit\":0}]}"};
    struct ah_task_spec spec = {.prompt = "p", .agents = &agent, .n_agents = 1};
    struct ah_task_created *t = NULL;
    if (rc == 0)
        rc = ah_task_manager_launch(tm, &spec, &t, NULL);
    if (rc == AH_E_INVAL) /* a failed copy inside the validator reads as a bad field */
        rc = AH_E_NOMEM;
    if (rc == 0)
        rc = ah_clock_advance(clock, 60000);
    struct ah_session *s = NULL;
    if (rc == 0)
        rc = ah_task_manager_get_session(tm, t->id, &s, NULL);
    ah_session_free(s);
    struct ah_session_list *l = NULL;
    if (rc == 0)
        rc = ah_task_manager_list_sessions(tm, NULL, &l, NULL);
    ah_session_list_free(l);
    struct ah_task_spec dspec = {.prompt = "d"};
    struct ah_draft *d = NULL;
    if (rc == 0)
        rc = ah_task_manager_save_draft(tm, NULL, &dspec, &d, NULL);
    struct ah_draft_list *dl = NULL;
    if (rc == 0)
        rc = ah_task_manager_list_drafts(tm, &dl, NULL);
    ah_draft_list_free(dl);
    ah_draft_free(d);
    int n = 0;
    if (rc == 0)
        rc = ah_task_manager_stream_events(tm, t->id, NULL, count, &n, NULL, NULL);
    ah_task_created_free(t);
    ah_task_manager_free(tm);
    ah_clock_free(clock);
    return rc;
}

static void test_torture(void **state) {
    torture("session from JSON", op_session);
    torture("lists from JSON", op_lists);
    torture("task spec to JSON", op_spec);
    torture("SSE parser", op_sse);
    torture("Problem parser", op_problem);
    torture("client set-up", op_client);
    torture("mock task manager", op_mock);
}

int main(void) {
    json_set_alloc_funcs(json_alloc, free);
    /* curl allocates on its first init; do it before any allocation is made to fail. */
    ah_client *c = NULL;
    if (ah_client_new("http://127.0.0.1:9", &c) == 0)
        ah_client_free(c);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_torture)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
