/*
 * test-tm-mock.c — the mock task manager: the contract suite on a virtual clock, then what is
 * particular to the mock:
 *   - a 13-virtual-minute scenario (300 agent steps, a 2-minute pause, a prompt) runs in well
 *     under a second of wall time, with exact timestamps and nothing while paused;
 *   - ids and timestamps are deterministic; failure injection; call latency on the clock;
 *     the default program; repositories; the mock on the real clock; custom implementations.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/core/core.h"
#include "contract.h"

#define START_MS 1735689600000LL /* 2025-01-01T00:00:00Z */

static ah_task_manager *new_mock(ah_clock *clock, struct ah_mock_options *o_in) {
    struct ah_mock_options o;
    ah_mock_options_default(&o);
    if (o_in)
        o = *o_in;
    o.clock = clock;
    ah_task_manager *tm = NULL;
    assert_int_equal(ah_task_manager_new_mock(&o, &tm), 0);
    return tm;
}

/* ---- the long scenario ------------------------------------------------------------------------
 */

struct timed {
    int64_t seq[2000];
    int64_t ts[2000];
    char type[2000][16];
    enum ah_session_status status[2000];
    int n;
};

static int on_timed(void *ud, const struct ah_event *ev) {
    struct timed *t = ud;
    if (t->n < 2000) {
        t->seq[t->n] = ev->seq;
        time_parse(ev->ts, &t->ts[t->n]);
        snprintf(t->type[t->n], sizeof(t->type[0]), "%s", ev->type);
        t->status[t->n] = ev->status;
    }
    t->n++;
    return 0;
}

struct job {
    ah_task_manager *tm;
    const char *id;
    struct timed *out;
    int rc;
    int done;
};

static void *stream_main(void *arg) {
    struct job *j = arg;
    j->rc = ah_task_manager_stream_events(j->tm, j->id, NULL, on_timed, j->out, NULL, NULL);
    __atomic_store_n(&j->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void advance(ah_clock *c, int64_t ms, int64_t step) {
    for (int64_t done = 0; done < ms; done += step)
        ah_clock_advance(c, step);
}

static void test_long_scenario_in_milliseconds(void **state) {
    ah_clock *clock = NULL;
    assert_int_equal(ah_clock_new_virtual(START_MS, &clock), 0);
    ah_task_manager *tm = new_mock(clock, NULL);
    /* 300 × (thought, sleep 1 s): with step_ms 1 s between steps, 10 virtual minutes of work. */
    struct ah_buf sc = {0};
    ah_buf_puts(&sc, "{\"scenario\":[");
    for (int i = 0; i < 300; i++)
        ah_buf_printf(&sc, "{\"thought\":\"tick %d\"},{\"sleep\":1000},", i);
    ah_buf_puts(&sc, "{\"wait_prompt\":true},{\"log\":\"bye\"},{\"exit\":0}]}");
    struct ah_agent_spec agent = {.type = "scripted", .settings_json = sc.p};
    struct ah_task_spec spec = {.prompt = "long", .agents = &agent, .n_agents = 1};
    struct ah_task_created *t = NULL;
    assert_int_equal(ah_task_manager_launch(tm, &spec, &t, NULL), 0);
    ah_buf_clear(&sc);

    int64_t wall0 = time_mono_ms();
    struct timed *got[3];
    struct job jobs[3];
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) { /* three concurrent followers */
        got[i] = calloc(1, sizeof(struct timed));
        jobs[i] = (struct job){.tm = tm, .id = t->id, .out = got[i]};
        pthread_create(&threads[i], NULL, stream_main, &jobs[i]);
    }
    advance(clock, 5 * 60000, 10000); /* 5 minutes in */
    enum ah_session_status st = AH_STATUS_UNKNOWN;
    assert_int_equal(ah_task_manager_control(tm, t->id, AH_CONTROL_PAUSE, NULL, &st, NULL), 0);
    assert_int_equal(st, AH_STATUS_PAUSING);
    advance(clock, 2 * 60000, 10000); /* 2 minutes paused */
    assert_int_equal(ah_task_manager_control(tm, t->id, AH_CONTROL_RESUME, NULL, &st, NULL), 0);
    advance(clock, 6 * 60000, 10000); /* the rest of the work; then it waits for a prompt */
    struct ah_session *s = NULL;
    assert_int_equal(ah_task_manager_get_session(tm, t->id, &s, NULL), 0);
    assert_int_equal(s->status, AH_STATUS_RUNNING);
    ah_session_free(s);
    assert_int_equal(ah_task_manager_control(tm, t->id, AH_CONTROL_PROMPT, "finish", NULL, NULL),
                     0);
    advance(clock, 60000, 10000);
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(jobs[i].rc, 0);
    }
    int64_t wall = time_mono_ms() - wall0;
    printf("13 virtual minutes, 3 followers: %lld ms of wall time\n", (long long)wall);
    assert_true(wall < 1000);

    struct timed *g = got[0];
    /* queued, provisioning, running, 300 thoughts, pausing, paused, resuming, running,
     * the prompt's log, bye, completed */
    assert_int_equal(g->n, 3 + 300 + 4 + 2 + 1);
    int thoughts = 0;
    int64_t paused_at = 0, resumed_at = 0;
    for (int i = 0; i < g->n; i++) {
        assert_int_equal(g->seq[i], i + 1);
        if (i)
            assert_true(g->ts[i] >= g->ts[i - 1]);
        thoughts += strcmp(g->type[i], "thought") == 0;
        if (strcmp(g->type[i], "status") == 0 && g->status[i] == AH_STATUS_PAUSED)
            paused_at = g->ts[i];
        if (strcmp(g->type[i], "status") == 0 && g->status[i] == AH_STATUS_RESUMING)
            resumed_at = g->ts[i];
    }
    assert_int_equal(thoughts, 300);
    assert_int_equal(resumed_at - paused_at, 2 * 60000 - 50); /* pausing took transition_ms */
    for (int i = 0; i < g->n; i++)                            /* nothing happened while paused */
        if (g->ts[i] > paused_at && g->ts[i] < resumed_at)
            fail_msg("event %d at %lld during the pause", i, (long long)g->ts[i]);
    assert_true(g->ts[g->n - 1] - g->ts[0] >= 12 * 60000);
    assert_int_equal(g->status[g->n - 1], AH_STATUS_COMPLETED);
    for (int k = 1; k < 3; k++) { /* every follower saw the same thing */
        assert_int_equal(got[k]->n, g->n);
        assert_memory_equal(got[k]->seq, g->seq, sizeof(int64_t) * (size_t)g->n);
        assert_memory_equal(got[k]->ts, g->ts, sizeof(int64_t) * (size_t)g->n);
    }
    for (int i = 0; i < 3; i++)
        free(got[i]);
    ah_task_created_free(t);
    ah_task_manager_free(tm);
    ah_clock_free(clock);
}

/* ---- determinism, injection, latency ----------------------------------------------------------
 */

static void run_once(char ids[3][32], char *ts_out, size_t tssz) {
    ah_clock *clock = NULL;
    ah_clock_new_virtual(START_MS, &clock);
    ah_task_manager *tm = new_mock(clock, NULL);
    struct ah_agent_spec agent = {.type = "claude-code", .count = 2};
    struct ah_task_spec spec = {.prompt = "same", .agents = &agent, .n_agents = 1};
    struct ah_task_created *t = NULL;
    assert_int_equal(ah_task_manager_launch(tm, &spec, &t, NULL), 0);
    snprintf(ids[0], 32, "%s", t->session_ids[0]);
    snprintf(ids[1], 32, "%s", t->session_ids[1]);
    ah_task_created_free(t);
    struct ah_task_spec draft = {.prompt = "d"};
    struct ah_draft *d = NULL;
    assert_int_equal(ah_task_manager_save_draft(tm, NULL, &draft, &d, NULL), 0);
    snprintf(ids[2], 32, "%.31s", d->id);
    ah_draft_free(d);
    ah_clock_advance(clock, 60000);
    struct ah_session *s = NULL;
    assert_int_equal(ah_task_manager_get_session(tm, ids[0], &s, NULL), 0);
    snprintf(ts_out, tssz, "%s %s %s", s->started_at, s->ended_at, s->status_name);
    ah_session_free(s);
    ah_task_manager_free(tm);
    ah_clock_free(clock);
}

static void test_deterministic(void **state) {
    char a[3][32], b[3][32], ta[128], tb[128];
    run_once(a, ta, sizeof(ta));
    run_once(b, tb, sizeof(tb));
    for (int i = 0; i < 3; i++)
        assert_string_equal(a[i], b[i]);
    assert_string_equal(ta, tb);
    assert_true(ulid_valid(a[0]));
    assert_string_not_equal(a[0], a[1]);
    assert_int_equal(strncmp(a[2], "draft-", 6), 0);
    /* 100 ms queue + 200 ms provisioning; 8 default steps 1 s apart (the tool step takes two
     * slots: its result comes one step later), then completed. */
    assert_string_equal(ta, "2025-01-01T00:00:00.300Z 2025-01-01T00:00:10.300Z completed");
}

static int count_events(void *ud, const struct ah_event *ev) {
    (*(int *)ud)++;
    return 0;
}

static void test_failure_injection(void **state) {
    ah_clock *clock = NULL;
    ah_clock_new_virtual(START_MS, &clock);
    ah_task_manager *tm = new_mock(clock, NULL);
    assert_true(ah_task_manager_is_mock(tm));
    struct ah_agent_spec agent = {.type = "x"};
    struct ah_task_spec spec = {.prompt = "p", .agents = &agent, .n_agents = 1};
    struct ah_task_created *t = NULL;
    struct ah_api_error e = {0};
    assert_int_equal(ah_mock_inject_failure(tm, AH_TM_LAUNCH, AH_E_UNAVAIL, 2), 0);
    assert_int_equal(ah_task_manager_launch(tm, &spec, &t, &e), AH_E_UNAVAIL);
    assert_int_equal(e.status, 503);
    assert_string_equal(e.type, "/problems/unavailable");
    assert_int_equal(ah_task_manager_launch(tm, &spec, &t, &e), AH_E_UNAVAIL);
    assert_int_equal(ah_task_manager_launch(tm, &spec, &t, &e), 0); /* the third works */
    assert_int_equal(ah_mock_call_count(tm, AH_TM_LAUNCH), 3);
    /* A failing stream never calls back; the failure lasts until switched off. */
    int n = 0;
    ah_mock_inject_failure(tm, AH_TM_STREAM, AH_E_AUTH, -1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ah_task_manager_stream_events(tm, t->id, NULL, count_events, &n, NULL, &e),
                         AH_E_AUTH);
    assert_int_equal(n, 0);
    assert_int_equal(e.status, 401);
    ah_mock_inject_failure(tm, AH_TM_STREAM, 0, 0);
    ah_clock_advance(clock, 600000);
    assert_int_equal(ah_task_manager_stream_events(tm, t->id, NULL, count_events, &n, NULL, &e), 0);
    assert_true(n > 0);
    assert_int_equal(ah_mock_inject_failure(tm, AH_TM_OP_COUNT_, AH_E_IO, 1), AH_E_INVAL);
    assert_int_equal(ah_mock_inject_failure(tm, AH_TM_LAUNCH, 5, 1), AH_E_INVAL);
    ah_api_error_clear(&e);
    ah_task_created_free(t);
    ah_task_manager_free(tm);
    ah_clock_free(clock);
}

struct latency_job {
    ah_task_manager *tm;
    int done;
    int rc;
};

static void *list_main(void *arg) {
    struct latency_job *j = arg;
    struct ah_repo_list *r = NULL;
    j->rc = ah_task_manager_list_repositories(j->tm, &r, NULL);
    ah_repo_list_free(r);
    __atomic_store_n(&j->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_call_latency_on_the_clock(void **state) {
    ah_clock *clock = NULL;
    ah_clock_new_virtual(START_MS, &clock);
    struct ah_mock_options o;
    ah_mock_options_default(&o);
    o.call_latency_ms = 5000;
    ah_task_manager *tm = new_mock(clock, &o);
    struct latency_job j = {.tm = tm};
    pthread_t t;
    pthread_create(&t, NULL, list_main, &j);
    while (ah_clock_sleepers(clock) != 1)
        usleep(100);
    ah_clock_advance(clock, 4999);
    usleep(20000);
    assert_int_equal(__atomic_load_n(&j.done, __ATOMIC_SEQ_CST), 0);
    ah_clock_advance(clock, 1);
    pthread_join(t, NULL);
    assert_int_equal(j.rc, 0);
    ah_task_manager_free(tm);
    ah_clock_free(clock);
}

static void test_default_program_and_changes(void **state) {
    ah_clock *clock = NULL;
    ah_clock_new_virtual(START_MS, &clock);
    ah_task_manager *tm = new_mock(clock, NULL);
    struct ah_agent_spec agent = {.type = "codex"};
    struct ah_task_spec spec = {.prompt = "default", .agents = &agent, .n_agents = 1};
    struct ah_task_created *t = NULL;
    assert_int_equal(ah_task_manager_launch(tm, &spec, &t, NULL), 0);
    ah_clock_advance(clock, 20000);
    struct ah_session *s = NULL;
    assert_int_equal(ah_task_manager_get_session(tm, t->id, &s, NULL), 0);
    assert_int_equal(s->status, AH_STATUS_COMPLETED);
    assert_true(s->has_changes);
    assert_int_equal(s->files_changed, 2);
    assert_int_equal(s->lines_added, 2);
    assert_true(s->has_exit_code);
    assert_int_equal(s->exit_code, 0);
    assert_int_equal(s->n_recent_events, 0); /* finished sessions: [] */
    assert_string_equal(s->snapshot_provider, "mock");
    ah_session_free(s);
    int n = 0;
    assert_int_equal(ah_task_manager_stream_events(tm, t->id, NULL, count_events, &n, NULL, NULL),
                     0);
    /* queued, provisioning, running, 8 steps (the tool step gives 2 events), completed */
    assert_int_equal(n, 3 + 8 + 2 + 1);
    ah_task_created_free(t);
    ah_task_manager_free(tm);
    ah_clock_free(clock);
}

static void test_repositories(void **state) {
    ah_task_manager *tm = new_mock(NULL, NULL); /* real clock, owned by the mock */
    const char *branches[] = {"trunk", "feature/x"};
    assert_int_equal(ah_mock_add_repository(tm, "repo-2", "Two", "https://g/two.git", branches, 2),
                     0);
    assert_int_equal(ah_mock_add_repository(tm, "repo-2", "Two", "u", branches, 2), AH_E_EXISTS);
    assert_int_equal(ah_mock_add_repository(tm, "repo-3", "Three", "u", branches, 0), AH_E_INVAL);
    struct ah_repo_list *r = NULL;
    assert_int_equal(ah_task_manager_list_repositories(tm, &r, NULL), 0);
    assert_int_equal(r->n_items, 2);
    assert_string_equal(r->items[0]->id, "repo-demo");
    assert_string_equal(r->items[1]->default_branch, "trunk");
    ah_repo_list_free(r);
    struct ah_branch_list *b = NULL;
    assert_int_equal(ah_task_manager_list_branches(tm, "repo-2", &b, NULL), 0);
    assert_int_equal(b->n_items, 2);
    assert_true(b->items[0].is_default);
    assert_string_equal(b->items[1].name, "feature/x");
    ah_branch_list_free(b);
    ah_task_manager_free(tm);
}

static void test_mock_on_real_clock(void **state) {
    struct ah_mock_options o;
    ah_mock_options_default(&o);
    o.queue_ms = o.provision_ms = 5;
    o.step_ms = 5;
    o.transition_ms = 5;
    ah_task_manager *tm = new_mock(NULL, &o);
    struct ah_agent_spec agent = {.type = "x"};
    struct ah_task_spec spec = {.prompt = "real", .agents = &agent, .n_agents = 1};
    struct ah_task_created *t = NULL;
    assert_int_equal(ah_task_manager_launch(tm, &spec, &t, NULL), 0);
    int n = 0;
    int64_t t0 = time_mono_ms();
    /* No one advances anything: the real clock's timer thread wakes the stream. */
    assert_int_equal(ah_task_manager_stream_events(tm, t->id, NULL, count_events, &n, NULL, NULL),
                     0);
    assert_int_equal(n, 14);
    assert_true(time_mono_ms() - t0 < 5000);
    ah_task_created_free(t);
    ah_task_manager_free(tm);
}

/* ---- custom implementations (the slot the local one will use) -----------------------------------
 */

struct wrap {
    ah_task_manager *inner;
    int destroyed;
};

#define FWD(name, ...) ah_task_manager_##name(((struct wrap *)impl)->inner, __VA_ARGS__)
static int w_launch(void *impl, const struct ah_task_spec *s, struct ah_task_created **r,
                    struct ah_api_error *e) {
    return FWD(launch, s, r, e);
}
static int w_stream(void *impl, const char *id, const struct ah_stream_options *o, ah_event_fn cb,
                    void *ud, int64_t *l, struct ah_api_error *e) {
    return FWD(stream_events, id, o, cb, ud, l, e);
}
static int w_list(void *impl, const struct ah_session_filter *f, struct ah_session_list **r,
                  struct ah_api_error *e) {
    return FWD(list_sessions, f, r, e);
}
static int w_get(void *impl, const char *id, struct ah_session **r, struct ah_api_error *e) {
    return FWD(get_session, id, r, e);
}
static int w_drafts(void *impl, struct ah_draft_list **r, struct ah_api_error *e) {
    return FWD(list_drafts, r, e);
}
static int w_save(void *impl, const char *id, const struct ah_task_spec *s, struct ah_draft **r,
                  struct ah_api_error *e) {
    return FWD(save_draft, id, s, r, e);
}
static int w_del(void *impl, const char *id, struct ah_api_error *e) {
    return FWD(delete_draft, id, e);
}
static int w_repos(void *impl, struct ah_repo_list **r, struct ah_api_error *e) {
    return FWD(list_repositories, r, e);
}
static int w_branches(void *impl, const char *id, struct ah_branch_list **r,
                      struct ah_api_error *e) {
    return FWD(list_branches, id, r, e);
}
static int w_control(void *impl, const char *id, enum ah_control op, const char *p,
                     enum ah_session_status *st, struct ah_api_error *e) {
    return FWD(control, id, op, p, st, e);
}
static void w_destroy(void *impl) {
    ((struct wrap *)impl)->destroyed++;
}

static void test_custom_implementation(void **state) {
    static const struct ah_task_manager_ops ops = {
        .size = sizeof(struct ah_task_manager_ops),
        .name = "wrapper",
        .launch_task = w_launch,
        .stream_events = w_stream,
        .list_sessions = w_list,
        .get_session = w_get,
        .list_drafts = w_drafts,
        .save_draft = w_save,
        .delete_draft = w_del,
        .list_repositories = w_repos,
        .list_branches = w_branches,
        .control = w_control,
        .destroy = w_destroy,
    };
    struct wrap w = {.inner = new_mock(NULL, NULL)};
    ah_task_manager *tm = NULL;
    struct ah_task_manager_ops small = ops;
    small.size = sizeof(small) - 1;
    assert_int_equal(ah_task_manager_new(&small, &w, &tm), AH_E_INVAL);
    struct ah_task_manager_ops missing = ops;
    missing.control = NULL;
    assert_int_equal(ah_task_manager_new(&missing, &w, &tm), AH_E_INVAL);
    assert_int_equal(ah_task_manager_new(&ops, &w, &tm), 0);
    assert_string_equal(ah_task_manager_name(tm), "wrapper");
    assert_false(ah_task_manager_is_mock(tm));
    assert_int_equal(ah_mock_inject_failure(tm, AH_TM_LAUNCH, AH_E_IO, 1), AH_E_INVAL);
    struct ah_repo_list *r = NULL;
    assert_int_equal(ah_task_manager_list_repositories(tm, &r, NULL), 0);
    assert_int_equal(r->n_items, 1);
    ah_repo_list_free(r);
    ah_task_manager_free(tm);
    assert_int_equal(w.destroyed, 1);
    ah_task_manager_free(w.inner);
    assert_int_equal(ah_task_manager_new_remote(NULL, &tm), AH_E_INVAL);
}

/* Item 19 of issue 10: a route may be skipped only when fx_not_built names it. */
static void test_skips_only_for_routes_not_built(void **state) {
    char why[300];
    assert_int_equal(fx_route_check("GET /api/v1/sessions", 0, why, sizeof(why)), FX_ROUTE_OK);
    assert_int_equal(fx_route_check("GET /api/v1/sessions", 501, why, sizeof(why)),
                     FX_ROUTE_FAIL);
    assert_non_null(strstr(why, "not in fx_not_built"));
    assert_int_equal(fx_route_check("GET /api/v1/drafts", 404, why, sizeof(why)), FX_ROUTE_FAIL);
    if (fx_not_built[0]) {
        assert_int_equal(fx_route_check(fx_not_built[0], 501, why, sizeof(why)), FX_ROUTE_SKIP);
        assert_non_null(strstr(why, "not built yet"));
        assert_int_equal(fx_route_check(fx_not_built[0], 0, why, sizeof(why)), FX_ROUTE_FAIL);
        assert_non_null(strstr(why, "served now"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_scenario_in_milliseconds),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_failure_injection),
        cmocka_unit_test(test_call_latency_on_the_clock),
        cmocka_unit_test(test_default_program_and_changes),
        cmocka_unit_test(test_repositories),
        cmocka_unit_test(test_mock_on_real_clock),
        cmocka_unit_test(test_custom_implementation),
        cmocka_unit_test(test_skips_only_for_routes_not_built),
    };
    int failed = cmocka_run_group_tests_name("mock task manager", tests, NULL, NULL);

    ah_clock *clock = NULL;
    if (ah_clock_new_virtual(START_MS, &clock) < 0)
        return 1;
    struct tm_fixture fx = {
        .name = "mock (virtual clock)",
        .tm = new_mock(clock, NULL),
        .clock = clock,
        .budget_ms = 30 * 60000, /* virtual */
        .poll_ms = 250,
    };
    int64_t t0 = time_mono_ms();
    failed += contract_run(&fx);
    printf("contract suite on the mock: %lld ms of wall time\n", (long long)(time_mono_ms() - t0));
    ah_task_manager_free(fx.tm);
    ah_clock_free(clock);
    return failed ? 1 : 0;
}
