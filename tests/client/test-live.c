/*
 * test-live.c — the typed calls of libah-client against the real server (ahserver.c), for the
 * endpoints the task-manager contract does not reach: health, readiness, version, create-task
 * from raw JSON, the event history with its filters, logs with tail, the prompt
 * acknowledgement, stop with a reason, delete with purge, SSE with tail, a validation Problem
 * end to end, the catalog (agents, runtimes, executors) and the raw escape hatch. A route that
 * answers 404/405/501 is skipped only when contract.c's fx_not_built names it (routes not built
 * yet); otherwise it fails, as does a listed route that is served.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ahserver.h"
#include "contract.h"

static ah_client *C;

/* route: "GET /api/v1/drafts". Only called where the resource surely exists, so a 404 means
 * "no such route". True (the caller skips) only for a route fx_not_built lists. */
static bool route_missing(int rc, const struct ah_api_error *e, const char *route) {
    bool absent = rc < 0 && (e->status == 404 || e->status == 405 || e->status == 501);
    char why[300];
    switch (fx_route_check(route, absent ? e->status : 0, why, sizeof(why))) {
    case FX_ROUTE_SKIP: printf("SKIP %s\n", why); return true;
    case FX_ROUTE_FAIL: fail_msg("%s (%s)", why, e->detail ? e->detail : "");
    case FX_ROUTE_OK: break;
    }
    return false;
}

static void test_health_and_version(void **state) {
    struct ah_api_error e = {0};
    assert_int_equal(ah_client_healthz(C, &e), 0);
    assert_int_equal(ah_client_readyz(C, &e), 0);
    struct ah_version *v = NULL;
    assert_int_equal(ah_client_version(C, &v, &e), 0);
    assert_non_null(v->version);
    assert_non_null(strstr(v->json, "build_info"));
    ah_version_free(v);
    int status = 0;
    char *body = NULL;
    int rc = ah_client_request(C, "GET", "/api/v1/openapi.json", NULL, &status, &body, &e);
    if (!route_missing(rc, &e, "GET /api/v1/openapi.json")) {
        assert_int_equal(rc, 0);
        assert_int_equal(status, 200);
        assert_non_null(strstr(body, "\"openapi\""));
    }
    free(body);
    ah_api_error_clear(&e);
}

/* Launches a scripted session from raw JSON and waits for its end; NULL when tasks are absent. */
static char *run_session(const char *scenario, bool wait_end) {
    char body[4096];
    snprintf(body, sizeof(body),
             "{\"prompt\":[{\"type\":\"text\",\"text\":\"live test\"}],\"repo\":{\"mode\":"
             "\"none\"},\"runtime\":{\"type\":\"local\"},\"labels\":{\"suite\":\"live\"},"
             "\"agents\":[{\"type\":\"scripted\",\"settings\":{\"scenario\":%s}}]}",
             scenario);
    struct ah_task_created *t = NULL;
    struct ah_api_error e = {0};
    int rc = ah_client_create_task_json(C, body, &t, &e);
    if (route_missing(rc, &e, "POST /api/v1/tasks")) {
        ah_api_error_clear(&e);
        return NULL;
    }
    assert_int_equal(rc, 0);
    char *id = strdup(t->id);
    assert_int_equal(t->n_session_ids, 1);
    assert_non_null(t->link_events);
    ah_task_created_free(t);
    for (int i = 0; wait_end && i < 600; i++) {
        struct ah_session *s = NULL;
        assert_int_equal(ah_client_get_session(C, id, &s, &e), 0);
        bool done = ah_session_status_terminal(s->status);
        ah_session_free(s);
        if (done)
            break;
        usleep(50000);
    }
    return id;
}

static void test_history_logs_and_tail(void **state) {
    char *id = run_session("[{\"thought\":\"t1\"},{\"log\":\"first\",\"level\":\"warn\"},"
                           "{\"log\":\"second\"},{\"log\":\"third\"},{\"exit\":0}]",
                           true);
    if (!id)
        skip();
    struct ah_api_error e = {0};
    struct ah_session *s = NULL;
    assert_int_equal(ah_client_get_session(C, id, &s, &e), 0);
    assert_int_equal(s->status, AH_STATUS_COMPLETED);
    assert_string_equal(s->prompt, "live test");
    assert_true(s->has_exit_code);
    assert_int_equal(s->exit_code, 0);
    assert_true(s->has_changes);
    assert_non_null(s->ended_at);
    ah_session_free(s);

    /* History: ascending, a type filter, after=, paging. */
    struct ah_event_list *l = NULL;
    struct ah_event_query q = {.sort = "asc", .per_page = 200};
    int rc = ah_client_list_events(C, id, &q, &l, &e);
    if (!route_missing(rc, &e, "GET /api/v1/sessions/{id}/events")) {
        assert_int_equal(rc, 0);
        assert_true(l->n_items >= 8);
        for (size_t i = 0; i < l->n_items; i++)
            assert_int_equal(l->items[i]->seq, (int64_t)i + 1);
        assert_int_equal(l->total, (int64_t)l->n_items);
        assert_int_equal(l->next_page, 0);
        int64_t total = l->total;
        ah_event_list_free(l);
        struct ah_event_query logs = {.types = "log", .sort = "asc"};
        assert_int_equal(ah_client_list_events(C, id, &logs, &l, &e), 0);
        assert_int_equal(l->n_items, 3);
        assert_string_equal(l->items[0]->message, "first");
        assert_string_equal(l->items[0]->level, "warn");
        ah_event_list_free(l);
        struct ah_event_query after = {.after = total - 2, .sort = "asc"};
        assert_int_equal(ah_client_list_events(C, id, &after, &l, &e), 0);
        assert_int_equal(l->n_items, 2);
        assert_int_equal(l->items[0]->seq, total - 1);
        ah_event_list_free(l);
        struct ah_event_query page = {.per_page = 2, .page = 1};
        assert_int_equal(ah_client_list_events(C, id, &page, &l, &e), 0);
        assert_int_equal(l->n_items, 2);
        assert_int_equal(l->next_page, 2);
        assert_int_equal(l->items[0]->seq, total); /* newest first by default */
        ah_event_list_free(l);
    }
    /* Logs with tail: the last N log lines, oldest first. */
    rc = ah_client_session_logs(C, id, 2, &l, &e);
    if (!route_missing(rc, &e, "GET /api/v1/sessions/{id}/logs")) {
        assert_int_equal(rc, 0);
        assert_int_equal(l->n_items, 2);
        assert_string_equal(l->items[0]->message, "second");
        assert_string_equal(l->items[1]->message, "third");
        ah_event_list_free(l);
    }
    /* SSE with tail: only the last two events, then the stream ends (terminal). */
    struct collected c = {0};
    struct ah_stream_options o = {.tail = 2};
    assert_int_equal(ah_client_stream_events(C, id, &o, collect_event, &c, NULL, &e), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.types[1], "status");
    collected_clear(&c);
    /* Delete with purge: the record is gone. */
    rc = ah_client_delete_session(C, id, true, &e);
    assert_int_equal(rc, 0);
    assert_int_equal(ah_client_get_session(C, id, &s, &e), AH_E_NOTFOUND);
    assert_int_equal(e.status, 404);
    ah_api_error_clear(&e);
    free(id);
}

static void test_prompt_and_stop(void **state) {
    char *id = run_session("[{\"wait_prompt\":true},{\"sleep\":600000},{\"exit\":0}]", false);
    if (!id)
        skip();
    struct ah_api_error e = {0};
    for (int i = 0; i < 600; i++) {
        struct ah_session *s = NULL;
        assert_int_equal(ah_client_get_session(C, id, &s, &e), 0);
        bool running = s->status == AH_STATUS_RUNNING;
        ah_session_free(s);
        if (running)
            break;
        usleep(50000);
    }
    struct ah_prompt_ack *ack = NULL;
    int rc = AH_E_CONFLICT;
    for (int i = 0; i < 600 && rc == AH_E_CONFLICT; i++) { /* 409 while the agent starts */
        rc = ah_client_prompt_session(C, id, "carry on", &ack, &e);
        if (rc == AH_E_CONFLICT)
            usleep(50000);
    }
    assert_int_equal(rc, 0);
    assert_true(ack->accepted);
    assert_string_equal(ack->session_id, id);
    assert_non_null(ack->ts);
    ah_prompt_ack_free(ack);
    enum ah_session_status st = AH_STATUS_UNKNOWN;
    assert_int_equal(ah_client_stop_session(C, id, "the test is over", &st, &e), 0);
    assert_true(st == AH_STATUS_STOPPING || st == AH_STATUS_STOPPED);
    /* Prompts are validated: an empty one is a 400 with the field named. */
    rc = ah_client_prompt_session(C, id, "", NULL, &e);
    assert_true(rc == AH_E_INVAL || rc == AH_E_GONE || rc == AH_E_CONFLICT);
    if (rc == AH_E_INVAL && e.n_errors == 0)
        fail_msg("a 400 without field errors: %s", e.body ? e.body : "(no body)");
    ah_api_error_clear(&e);
    free(id);
}

static void test_validation_problem(void **state) {
    struct ah_task_created *t = NULL;
    struct ah_api_error e = {0};
    int rc = ah_client_create_task_json(C,
                                        "{\"prompt\":\"p\",\"repo\":{\"mode\":\"git\"},"
                                        "\"runtime\":{\"type\":\"moon\"},\"agents\":[]}",
                                        &t, &e);
    if (route_missing(rc, &e, "POST /api/v1/tasks"))
        skip();
    assert_int_equal(rc, AH_E_INVAL);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "/problems/validation");
    assert_string_equal(e.instance, "/api/v1/tasks");
    assert_non_null(e.request_id);
    assert_non_null(ah_api_error_field(&e, "repo.url"));
    assert_non_null(ah_api_error_field(&e, "runtime.type"));
    assert_non_null(ah_api_error_field(&e, "agents"));
    assert_int_equal(e.attempts, 1);
    ah_api_error_clear(&e);
    /* Filters are validated too. */
    struct ah_session_list *l = NULL;
    struct ah_session_filter f = {.per_page = 500};
    rc = ah_client_list_sessions(C, &f, &l, &e);
    if (!route_missing(rc, &e, "GET /api/v1/sessions")) {
        assert_int_equal(rc, AH_E_INVAL);
        assert_non_null(ah_api_error_field(&e, "perPage"));
    }
    ah_api_error_clear(&e);
}

static void test_drafts_and_repos_when_served(void **state) {
    struct ah_api_error e = {0};
    struct ah_draft_list *dl = NULL;
    int rc = ah_client_list_drafts(C, &dl, &e);
    if (!route_missing(rc, &e, "GET /api/v1/drafts")) {
        assert_int_equal(rc, 0);
        ah_draft_list_free(dl);
        struct ah_task_spec spec = {.prompt = "draft"};
        struct ah_draft *d = NULL;
        assert_int_equal(ah_client_create_draft(C, &spec, &d, &e), 0);
        struct ah_draft *g = NULL;
        assert_int_equal(ah_client_get_draft(C, d->id, &g, &e), 0);
        assert_string_equal(g->prompt, "draft");
        ah_draft_free(g);
        assert_int_equal(ah_client_delete_draft(C, d->id, &e), 0);
        ah_draft_free(d);
    }
    struct ah_repo_list *rl = NULL;
    rc = ah_client_list_repos(C, NULL, NULL, &rl, &e);
    if (!route_missing(rc, &e, "GET /api/v1/repos")) {
        assert_int_equal(rc, 0);
        ah_repo_list_free(rl);
    }
    ah_api_error_clear(&e);
}

/* API.md §7.11: each catalog answers {"items": [...]}. */
static void test_catalog(void **state) {
    static const char *const routes[] = {"agents", "runtimes", "executors"};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        char path[64], route[80];
        snprintf(path, sizeof(path), "/api/v1/%s", routes[i]);
        snprintf(route, sizeof(route), "GET %s", path);
        struct ah_api_error e = {0};
        int status = 0;
        char *body = NULL;
        int rc = ah_client_request(C, "GET", path, NULL, &status, &body, &e);
        if (!route_missing(rc, &e, route)) {
            assert_int_equal(rc, 0);
            assert_int_equal(status, 200);
            assert_non_null(strstr(body, "\"items\""));
        }
        free(body);
        ah_api_error_clear(&e);
    }
}

int main(void) {
    if (ahserver_start() < 0) {
        ahserver_stop();
        return 1;
    }
    if (ah_client_new(ahserver_url(), &C) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_version),
        cmocka_unit_test(test_history_logs_and_tail),
        cmocka_unit_test(test_prompt_and_stop),
        cmocka_unit_test(test_validation_problem),
        cmocka_unit_test(test_drafts_and_repos_when_served),
        cmocka_unit_test(test_catalog),
    };
    int failed = cmocka_run_group_tests_name("libah-client against ah", tests, NULL, NULL);
    ah_client_free(C);
    failed += ahserver_stop();
    return failed ? 1 : 0;
}
