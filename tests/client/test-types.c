/*
 * test-types.c — result structs from JSON (the server's camelCase shapes, R's variants, bare
 * arrays, junk), status names, and the create-task body from a struct ah_task_spec (checked with
 * the server's own validator, so what the client sends is what the server accepts).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/client/client_internal.h"

static void test_status_names(void **state) {
    for (int s = AH_STATUS_QUEUED; s <= AH_STATUS_CANCELLED; s++)
        assert_int_equal(ah_session_status_parse(ah_session_status_name(s)), s);
    assert_int_equal(ah_session_status_parse("draft"), AH_STATUS_UNKNOWN);
    assert_int_equal(ah_session_status_parse(NULL), AH_STATUS_UNKNOWN);
    assert_string_equal(ah_session_status_name((enum ah_session_status)99), "unknown");
    assert_true(ah_session_status_terminal(AH_STATUS_STOPPED));
    assert_true(ah_session_status_terminal(AH_STATUS_COMPLETED));
    assert_true(ah_session_status_terminal(AH_STATUS_FAILED));
    assert_true(ah_session_status_terminal(AH_STATUS_CANCELLED));
    assert_false(ah_session_status_terminal(AH_STATUS_PAUSED));
    assert_false(ah_session_status_terminal(AH_STATUS_STOPPING));
}

static void test_session(void **state) {
    const char *j =
        "{\"id\":\"01J9Q0Z4YB6N8W2F3K5M7P9R1T\",\"taskId\":\"01J9Q0Z4YB6N8W2F3K5M7P9R1S\","
        "\"tenantId\":\"acme\",\"projectId\":\"storefront\",\"status\":\"running\","
        "\"prompt\":\"Make the tests deterministic.\",\"repo\":{\"mode\":\"git\",\"url\":"
        "\"https://git.example.com/a.git\",\"branch\":\"main\"},\"runtime\":{\"type\":\"local\","
        "\"sandbox\":\"offline\"},\"agent\":{\"type\":\"claude-code\",\"version\":\"latest\"},"
        "\"delivery\":{\"mode\":\"branch\",\"targetBranch\":\"main\"},"
        "\"workspace\":{\"snapshotProvider\":\"git\","
        "\"mountPath\":\"/w/1\"},\"error\":null,\"exitCode\":null,\"createdAt\":"
        "\"2025-03-02T09:00:00.000Z\",\"updatedAt\":\"2025-03-02T09:03:10.000Z\",\"startedAt\":"
        "\"2025-03-02T09:00:04.000Z\",\"endedAt\":null,\"links\":{\"self\":\"/s\",\"events\":"
        "\"/s/events\",\"logs\":\"/s/logs\"},\"recent_events\":[{\"type\":\"status\",\"status\":"
        "\"running\",\"seq\":3,\"sessionId\":\"01J9Q0Z4YB6N8W2F3K5M7P9R1T\",\"ts\":"
        "\"2025-03-02T09:00:04.000Z\"},{\"type\":\"log\",\"level\":\"info\",\"message\":"
        "\"12 passed\",\"seq\":4},{\"type\":\"thought\",\"thought\":\"hmm\",\"seq\":5}]}";
    struct ah_session *s = NULL;
    assert_int_equal(ah_session_from_json(j, &s), 0);
    assert_string_equal(s->id, "01J9Q0Z4YB6N8W2F3K5M7P9R1T");
    assert_string_equal(s->task_id, "01J9Q0Z4YB6N8W2F3K5M7P9R1S");
    assert_string_equal(s->tenant_id, "acme");
    assert_string_equal(s->project_id, "storefront");
    assert_int_equal(s->status, AH_STATUS_RUNNING);
    assert_string_equal(s->status_name, "running");
    assert_string_equal(s->prompt, "Make the tests deterministic.");
    assert_string_equal(s->repo_mode, "git");
    assert_string_equal(s->repo_url, "https://git.example.com/a.git");
    assert_string_equal(s->repo_branch, "main");
    assert_null(s->repo_commit);
    assert_string_equal(s->runtime_type, "local");
    assert_string_equal(s->runtime_sandbox, "offline");
    assert_string_equal(s->agent_type, "claude-code");
    assert_string_equal(s->agent_version, "latest");
    assert_string_equal(s->delivery_mode, "branch");
    assert_string_equal(s->target_branch, "main");
    assert_string_equal(s->snapshot_provider, "git");
    assert_string_equal(s->mount_path, "/w/1");
    assert_null(s->error);
    assert_false(s->has_exit_code);
    assert_string_equal(s->started_at, "2025-03-02T09:00:04.000Z");
    assert_null(s->ended_at);
    assert_string_equal(s->link_events, "/s/events");
    assert_int_equal(s->n_recent_events, 3);
    assert_int_equal(s->recent_events[0]->seq, 3);
    assert_int_equal(s->recent_events[0]->status, AH_STATUS_RUNNING);
    assert_string_equal(s->recent_events[1]->message, "12 passed");
    assert_string_equal(s->recent_events[1]->level, "info");
    assert_string_equal(s->recent_events[2]->message, "hmm"); /* a thought's text */
    assert_false(s->has_changes);
    assert_non_null(strstr(s->json, "\"taskId\""));
    ah_session_free(s);
}

static void test_session_variants(void **state) {
    /* R's shape: snake_case, task.prompt as content blocks, vcs, agent.software. */
    const char *j = "{\"id\":\"x\",\"tenant_id\":\"t\",\"status\":\"completed\",\"task\":{"
                    "\"prompt\":[{\"type\":\"text\",\"text\":\"hello\"}]},\"vcs\":{\"repo_url\":"
                    "\"https://r\",\"branch\":\"b\",\"commit\":\"abc1\"},\"agent\":{\"software\":"
                    "\"Claude\"},\"exit_code\":3,\"ended_at\":\"2025-01-01T00:00:00Z\","
                    "\"changes\":{\"files_changed\":2,\"lines_added\":10,\"lines_removed\":1},"
                    "\"status2\":1}";
    struct ah_session *s = NULL;
    assert_int_equal(ah_session_from_json(j, &s), 0);
    assert_string_equal(s->tenant_id, "t");
    assert_int_equal(s->status, AH_STATUS_COMPLETED);
    assert_string_equal(s->prompt, "hello");
    assert_string_equal(s->repo_url, "https://r");
    assert_string_equal(s->repo_commit, "abc1");
    assert_string_equal(s->agent_type, "Claude");
    assert_true(s->has_exit_code);
    assert_int_equal(s->exit_code, 3);
    assert_string_equal(s->ended_at, "2025-01-01T00:00:00Z");
    assert_true(s->has_changes);
    assert_int_equal(s->files_changed, 2);
    assert_int_equal(s->lines_added, 10);
    assert_int_equal(s->lines_removed, 1);
    assert_int_equal(s->n_recent_events, 0);
    ah_session_free(s);
    /* Unknown statuses keep their name. */
    assert_int_equal(ah_session_from_json("{\"status\":\"hibernating\"}", &s), 0);
    assert_int_equal(s->status, AH_STATUS_UNKNOWN);
    assert_string_equal(s->status_name, "hibernating");
    ah_session_free(s);
    /* Wrong kinds. */
    assert_int_equal(ah_session_from_json("[]", &s), AH_E_PROTOCOL);
    assert_int_equal(ah_session_from_json("not json", &s), AH_E_PROTOCOL);
    assert_int_equal(ah_session_from_json(NULL, &s), AH_E_INVAL);
}

static void test_lists(void **state) {
    struct ah_session_list *l = NULL;
    assert_int_equal(ah_session_list_from_json("{\"items\":[{\"id\":\"a\"},{\"id\":\"b\"},7],"
                                               "\"page\":2,\"perPage\":2,\"total\":5,"
                                               "\"nextPage\":3}",
                                               &l),
                     0);
    assert_int_equal(l->n_items, 2);
    assert_string_equal(l->items[1]->id, "b");
    assert_int_equal(l->page, 2);
    assert_int_equal(l->per_page, 2);
    assert_int_equal(l->total, 5);
    assert_int_equal(l->next_page, 3);
    ah_session_list_free(l);
    /* Bare array (R), nextPage null / string. */
    assert_int_equal(ah_session_list_from_json("[{\"id\":\"a\"}]", &l), 0);
    assert_int_equal(l->n_items, 1);
    assert_int_equal(l->total, -1);
    assert_int_equal(l->next_page, 0);
    ah_session_list_free(l);
    assert_int_equal(ah_session_list_from_json("{\"items\":[],\"nextPage\":\"4\"}", &l), 0);
    assert_int_equal(l->next_page, 4);
    ah_session_list_free(l);
    assert_int_equal(ah_session_list_from_json("{\"nothing\":1}", &l), AH_E_PROTOCOL);

    struct ah_event_list *el = NULL;
    assert_int_equal(ah_event_list_from_json("{\"items\":[{\"type\":\"log\",\"level\":\"warn\","
                                             "\"message\":\"m\",\"ts\":\"t\"}],\"total\":1}",
                                             &el),
                     0);
    assert_int_equal(el->n_items, 1);
    assert_string_equal(el->items[0]->level, "warn");
    assert_int_equal(el->items[0]->seq, 0);
    ah_event_list_free(el);

    struct ah_draft_list *dl = NULL;
    assert_int_equal(ah_draft_list_from_json("{\"items\":[{\"id\":\"draft-1\",\"prompt\":\"p\","
                                             "\"repo\":{\"url\":\"u\",\"branch\":\"b\"},"
                                             "\"agent\":{\"type\":\"codex\"}},{\"id\":\"draft-2\","
                                             "\"agents\":[{\"type\":\"gemini\"}]}]}",
                                             &dl),
                     0);
    assert_int_equal(dl->n_items, 2);
    assert_string_equal(dl->items[0]->agent_type, "codex");
    assert_string_equal(dl->items[0]->repo_branch, "b");
    assert_string_equal(dl->items[1]->agent_type, "gemini");
    ah_draft_list_free(dl);

    struct ah_repo_list *rl = NULL;
    assert_int_equal(ah_repo_list_from_json("[{\"id\":\"r\",\"displayName\":\"R\",\"scmProvider\":"
                                            "\"git\",\"remoteUrl\":\"u\",\"defaultBranch\":"
                                            "\"main\"}]",
                                            &rl),
                     0);
    assert_int_equal(rl->n_items, 1);
    assert_string_equal(rl->items[0]->default_branch, "main");
    ah_repo_list_free(rl);

    struct ah_branch_list *bl = NULL;
    assert_int_equal(ah_branch_list_from_json("{\"repositoryId\":\"r\",\"branches\":[{\"name\":"
                                              "\"main\",\"is_default\":true,\"last_commit\":"
                                              "\"abc\"},{\"name\":\"dev\",\"isDefault\":false,"
                                              "\"lastCommit\":\"def\"},{\"x\":1}]}",
                                              &bl),
                     0);
    assert_string_equal(bl->repository_id, "r");
    assert_int_equal(bl->n_items, 2);
    assert_true(bl->items[0].is_default);
    assert_string_equal(bl->items[0].last_commit, "abc");
    assert_false(bl->items[1].is_default);
    assert_string_equal(bl->items[1].last_commit, "def");
    ah_branch_list_free(bl);
}

static void test_task_created(void **state) {
    struct ah_task_created *t = NULL;
    assert_int_equal(ah_task_created_from_json("{\"id\":\"A\",\"session_ids\":[\"A\",\"B\"],"
                                               "\"status\":\"queued\",\"links\":{\"self\":"
                                               "\"/api/v1/sessions/A\"}}",
                                               &t),
                     0);
    assert_string_equal(t->id, "A");
    assert_int_equal(t->n_session_ids, 2);
    assert_string_equal(t->session_ids[1], "B");
    assert_null(t->session_ids[2]); /* NULL-terminated too */
    assert_string_equal(t->status, "queued");
    assert_string_equal(t->link_self, "/api/v1/sessions/A");
    ah_task_created_free(t);
    /* Without id: the first session id; without session_ids: [id]. */
    assert_int_equal(ah_task_created_from_json("{\"session_ids\":[\"X\"]}", &t), 0);
    assert_string_equal(t->id, "X");
    ah_task_created_free(t);
    assert_int_equal(ah_task_created_from_json("{\"id\":\"Y\"}", &t), 0);
    assert_int_equal(t->n_session_ids, 1);
    assert_string_equal(t->session_ids[0], "Y");
    ah_task_created_free(t);
}

static void test_spec_to_json_validates_like_the_server(void **state) {
    struct ah_agent_spec agents[] = {
        {.type = "scripted",
         .count = 2,
         .settings_json = "{\"scenario\":[{\"thought\":\"hi\"},{\"exit\":0}]}"},
        {.type = "codex", .version = "1.2"},
    };
    const char *prefs[] = {"btrfs", "copy"};
    struct ah_label labels[] = {{"team", "payments"}};
    struct ah_task_spec spec = {
        .tenant_id = "acme",
        .project_id = "shop",
        .prompt = "Fix it",
        .repo_url = "https://git.example.com/a.git",
        .repo_branch = "main",
        .cpu = 2,
        .memory_mib = 4096,
        .snapshot_preference = prefs,
        .n_snapshot_preference = 2,
        .agents = agents,
        .n_agents = 2,
        .delivery_mode = "branch",
        .target_branch = "main",
        .labels = labels,
        .n_labels = 1,
    };
    char *body = NULL;
    assert_int_equal(ah_task_spec_to_json(&spec, false, &body, NULL), 0);
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "repo"), "mode")),
                        "git");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "runtime"), "type")),
                        "local");
    struct ah_problem p = {0};
    struct task_request *r = NULL;
    assert_int_equal(task_request_parse(j, &r, &p), 0); /* the server would accept it */
    assert_int_equal(task_request_session_count(r), 3);
    assert_string_equal(r->agents[1].version, "1.2");
    task_request_free(r);
    json_decref(j);
    free(body);

    /* Minimal: prompt + one agent; repo defaults to mode none. */
    struct ah_task_spec min = {.prompt = "p", .agents = agents + 1, .n_agents = 1};
    assert_int_equal(ah_task_spec_to_json(&min, false, &body, NULL), 0);
    assert_string_equal(body, "{\"prompt\":\"p\",\"repo\":{\"mode\":\"none\"},\"runtime\":"
                              "{\"type\":\"local\"},\"agents\":[{\"type\":\"codex\","
                              "\"version\":\"1.2\"}]}");
    free(body);

    /* A sandbox profile: runtime.sandbox, as the server reads it (D52) */
    struct ah_task_spec sbx = {.prompt = "p", .sandbox = "offline"};
    assert_int_equal(ah_task_spec_to_json(&sbx, false, &body, NULL), 0);
    assert_string_equal(body, "{\"prompt\":\"p\",\"repo\":{\"mode\":\"none\"},\"runtime\":"
                              "{\"type\":\"local\",\"sandbox\":\"offline\"}}");
    free(body);
    assert_int_equal(ah_task_spec_to_json(&sbx, true, &body, NULL), 0); /* a draft keeps it */
    assert_string_equal(body, "{\"prompt\":\"p\",\"runtime\":{\"type\":\"local\","
                              "\"sandbox\":\"offline\"}}");
    free(body);

    /* Partial (drafts): absent stays absent. */
    struct ah_task_spec draft = {.prompt = "later"};
    assert_int_equal(ah_task_spec_to_json(&draft, true, &body, NULL), 0);
    assert_string_equal(body, "{\"prompt\":\"later\"}");
    free(body);
}

static void test_spec_errors(void **state) {
    char *body = NULL;
    struct ah_api_error e = {0};
    struct ah_task_spec no_prompt = {0};
    assert_int_equal(ah_task_spec_to_json(&no_prompt, false, &body, &e), AH_E_INVAL);
    assert_string_equal(ah_api_error_field(&e, "prompt"), "is required");
    struct ah_agent_spec bad = {.type = "x", .settings_json = "[1]"};
    struct ah_task_spec s = {.prompt = "p", .agents = &bad, .n_agents = 1};
    assert_int_equal(ah_task_spec_to_json(&s, false, &body, &e), AH_E_INVAL);
    assert_non_null(ah_api_error_field(&e, "agents[0].settings"));
    struct ah_agent_spec untyped = {0};
    s.agents = &untyped;
    assert_int_equal(ah_task_spec_to_json(&s, false, &body, &e), AH_E_INVAL);
    assert_string_equal(ah_api_error_field(&e, "agents[0].type"), "is required");
    s.agents = NULL;
    assert_int_equal(ah_task_spec_to_json(&s, false, &body, &e), AH_E_INVAL);
    assert_int_equal(ah_task_spec_to_json(NULL, false, &body, &e), AH_E_INVAL);
    assert_int_equal(ah_task_spec_to_json(&s, false, NULL, &e), AH_E_INVAL);
    assert_null(body);
    ah_api_error_clear(&e);
}

static void test_event(void **state) {
    struct ah_event *ev = NULL;
    assert_int_equal(ah_event_from_json("{\"type\":\"status\",\"status\":\"failed\",\"seq\":"
                                        "9007199254740993,\"sessionId\":\"s\",\"timestamp\":"
                                        "\"2025-01-01T00:00:00Z\"}",
                                        &ev),
                     0);
    assert_int_equal(ev->seq, 9007199254740993LL); /* exact 64-bit */
    assert_int_equal(ev->status, AH_STATUS_FAILED);
    assert_string_equal(ev->session_id, "s");
    assert_string_equal(ev->ts, "2025-01-01T00:00:00Z");
    ah_event_free(ev);
    assert_int_equal(ah_event_from_json("{}", &ev), 0);
    assert_string_equal(ev->type, "");
    ah_event_free(ev);
    assert_int_equal(ah_event_from_json("3", &ev), AH_E_PROTOCOL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_session),
        cmocka_unit_test(test_session_variants),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_task_created),
        cmocka_unit_test(test_spec_to_json_validates_like_the_server),
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
