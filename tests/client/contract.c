/*
 * contract.c — the task-manager contract suite (see contract.h). Each test names the rule of
 * <ah/task_manager.h> it checks. Nothing here knows which implementation it runs on.
 */
#include "contract.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static struct tm_fixture *FX;

#define REQUIRE(cap)                                                                               \
    do {                                                                                           \
        if (FX->missing[cap]) {                                                                    \
            printf("SKIP %s [%s]: %s\n", __func__, FX->name, FX->missing[cap]);                    \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- routes not built yet ---------------------------------------------------------------------
 */

/* Issue 10 item 19: skipping is allowed only for these; the catalog routes are being built. */
const char *const fx_not_built[] = {
    NULL,
};

enum fx_route fx_route_check(const char *route, int absent_status, char *why, size_t whysz) {
    bool listed = false;
    for (const char *const *r = fx_not_built; *r; r++)
        listed = listed || strcmp(*r, route) == 0;
    if (absent_status && listed) {
        snprintf(why, whysz, "%s is not built yet (the server answers %d)", route, absent_status);
        return FX_ROUTE_SKIP;
    }
    if (absent_status) {
        snprintf(why, whysz,
                 "%s answers %d, and it is not in fx_not_built (tests/client/contract.c)", route,
                 absent_status);
        return FX_ROUTE_FAIL;
    }
    if (listed) {
        snprintf(why, whysz, "%s is served now: remove it from fx_not_built "
                 "(tests/client/contract.c)", route);
        return FX_ROUTE_FAIL;
    }
    return FX_ROUTE_OK;
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

void fx_pass(struct tm_fixture *fx, int64_t ms) {
    if (fx->clock && ah_clock_is_virtual(fx->clock)) {
        ah_clock_advance(fx->clock, ms);
        usleep(50); /* let woken streamers run; correctness does not depend on it */
    } else {
        usleep((useconds_t)ms * 1000);
    }
}

void collected_clear(struct collected *c) {
    for (size_t i = 0; i < c->n; i++) {
        free(c->types[i]);
        free(c->messages[i]);
    }
    free(c->seqs);
    free(c->types);
    free(c->messages);
    free(c->statuses);
    memset(c, 0, sizeof(*c));
}

int collect_event(void *ud, const struct ah_event *ev) {
    struct collected *c = ud;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        c->seqs = realloc(c->seqs, cap * sizeof(*c->seqs));
        c->types = realloc(c->types, cap * sizeof(*c->types));
        c->messages = realloc(c->messages, cap * sizeof(*c->messages));
        c->statuses = realloc(c->statuses, cap * sizeof(*c->statuses));
        if (!c->seqs || !c->types || !c->messages || !c->statuses)
            abort(); /* test code */
        c->cap = cap;
    }
    c->seqs[c->n] = ev->seq;
    c->types[c->n] = strdup(ev->type);
    c->messages[c->n] = ev->message ? strdup(ev->message) : NULL;
    c->statuses[c->n] = ev->status;
    c->n++;
    return c->stop_after && c->n >= (size_t)c->stop_after;
}

struct stream_job {
    ah_task_manager *tm;
    const char *id;
    struct ah_stream_options opt;
    struct collected *out;
    int rc;
    int done;
};

static void *stream_thread(void *arg) {
    struct stream_job *j = arg;
    j->rc = ah_task_manager_stream_events(j->tm, j->id, &j->opt, collect_event, j->out, NULL, NULL);
    __atomic_store_n(&j->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

int fx_stream(struct tm_fixture *fx, const char *id, const struct ah_stream_options *opt,
              struct collected *out, int64_t budget_ms) {
    ah_cancel *k = NULL;
    if (ah_cancel_new(&k) < 0)
        return AH_E_NOMEM;
    struct stream_job j = {.tm = fx->tm, .id = id, .out = out};
    if (opt)
        j.opt = *opt;
    if (!j.opt.cancel)
        j.opt.cancel = k;
    pthread_t t;
    pthread_create(&t, NULL, stream_thread, &j);
    for (int64_t spent = 0; !__atomic_load_n(&j.done, __ATOMIC_SEQ_CST) && spent < budget_ms;
         spent += fx->poll_ms)
        fx_pass(fx, fx->poll_ms);
    /* The stream may still be delivering what is due; give it real time to finish. */
    for (int i = 0; i < 500 && !__atomic_load_n(&j.done, __ATOMIC_SEQ_CST); i++)
        usleep(10000);
    if (!__atomic_load_n(&j.done, __ATOMIC_SEQ_CST))
        ah_cancel_trigger(j.opt.cancel);
    pthread_join(t, NULL);
    ah_cancel_free(k);
    return j.rc;
}

int fx_launch_scenario(struct tm_fixture *fx, const char *scenario_json, char *ret_id,
                       size_t idsz) {
    char settings[8192];
    snprintf(settings, sizeof(settings), "{\"scenario\":%s}", scenario_json);
    struct ah_agent_spec agent = {.type = "scripted", .settings_json = settings};
    struct ah_task_spec spec = {.prompt = "contract test",
                                .repo_mode = fx->repo_mode,
                                .repo_url = fx->repo_url,
                                .agents = &agent,
                                .n_agents = 1};
    struct ah_task_created *t = NULL;
    struct ah_api_error e = {0};
    int rc = ah_task_manager_launch(fx->tm, &spec, &t, &e);
    if (rc < 0) {
        printf("launch failed: %s: %s\n", ah_strerror(rc), e.detail ? e.detail : "");
        ah_api_error_clear(&e);
        return rc;
    }
    snprintf(ret_id, idsz, "%s", t->id);
    ah_task_created_free(t);
    return 0;
}

enum ah_session_status fx_wait_status(struct tm_fixture *fx, const char *id,
                                      const enum ah_session_status *want, int64_t budget_ms) {
    for (int64_t spent = 0; spent <= budget_ms; spent += fx->poll_ms) {
        struct ah_session *s = NULL;
        if (ah_task_manager_get_session(fx->tm, id, &s, NULL) == 0) {
            enum ah_session_status st = s->status;
            ah_session_free(s);
            for (const enum ah_session_status *w = want; *w != AH_STATUS_UNKNOWN; w++)
                if (st == *w)
                    return st;
        }
        fx_pass(fx, fx->poll_ms);
    }
    return AH_STATUS_UNKNOWN;
}

static const enum ah_session_status RUNNING[] = {AH_STATUS_RUNNING, AH_STATUS_UNKNOWN};
static const enum ah_session_status PAUSED[] = {AH_STATUS_PAUSED, AH_STATUS_UNKNOWN};
static const enum ah_session_status TERMINAL[] = {AH_STATUS_STOPPED, AH_STATUS_COMPLETED,
                                                  AH_STATUS_FAILED, AH_STATUS_CANCELLED,
                                                  AH_STATUS_UNKNOWN};

/* Checks the invariants of a complete stream: seq 1..n without gaps or repeats, legal status
 * path (D13), exactly one terminal status and it is last. */
static void check_stream(const struct collected *c, int64_t first_seq) {
    assert_true(c->n > 0);
    for (size_t i = 0; i < c->n; i++)
        assert_int_equal(c->seqs[i], first_seq + (int64_t)i);
    size_t terminals = 0;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->types[i], "status") == 0 && ah_session_status_terminal(c->statuses[i]))
            terminals++;
    assert_int_equal(terminals, 1);
    assert_string_equal(c->types[c->n - 1], "status");
    assert_true(ah_session_status_terminal(c->statuses[c->n - 1]));
}

static bool has_event(const struct collected *c, const char *type, const char *text) {
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->types[i], type) == 0 &&
            (!text || (c->messages[i] && strstr(c->messages[i], text))))
            return true;
    return false;
}

/* When a verb meets 410, print how the session ended and its event log: a session that ends
 * before the test acts on it is a bug somewhere, and the log is the only witness left. */
static void explain_gone(const char *id) {
    struct ah_session *s = NULL;
    if (ah_task_manager_get_session(FX->tm, id, &s, NULL) != 0)
        return;
    fprintf(stderr, "session %s ended as %s: %s\n", id, ah_session_status_name(s->status),
            s->error ? s->error : "(no error)");
    ah_session_free(s);
    struct collected c = {0};
    fx_stream(FX, id, NULL, &c, FX->budget_ms);
    for (size_t i = 0; i < c.n; i++)
        fprintf(stderr, "  %lld %s %s\n", (long long)c.seqs[i], c.types[i],
                c.messages[i] ? c.messages[i] : "");
    collected_clear(&c);
}

/* A verb that is legal from `running` (pause, stop, prompt). A server may refuse it for a moment
 * right after the session became running (409 "the agent is still starting", currentStatus
 * running); that is a transient, so the verb is retried while time passes. Any other answer is
 * returned as it is. */
static int control_when_ready(const char *id, enum ah_control op, const char *prompt,
                              enum ah_session_status *st, struct ah_api_error *e) {
    int rc = AH_E_CONFLICT;
    for (int64_t spent = 0; spent <= FX->budget_ms; spent += FX->poll_ms) {
        rc = ah_task_manager_control(FX->tm, id, op, prompt, st, e);
        if (rc == AH_E_GONE)
            explain_gone(id);
        if (rc != AH_E_CONFLICT || !e->current_status || strcmp(e->current_status, "running") != 0)
            return rc;
        fx_pass(FX, FX->poll_ms);
    }
    return rc;
}

static const char LONG_SCENARIO[] =
    "[{\"thought\":\"start\"},{\"sleep\":600000},{\"thought\":\"after\"},{\"exit\":0}]";

/* ---- launch -----------------------------------------------------------------------------------
 */

/* launch_task fans a spec out into one session per agent × count, all queued at first. */
static void launch_fans_out(void **state) {
    REQUIRE(FX_TASKS);
    struct ah_agent_spec agents[] = {
        {.type = "scripted", .count = 2, .settings_json = "{\"scenario\":[{\"exit\":0}]}"},
        {.type = "scripted", .settings_json = "{\"scenario\":[{\"exit\":0}]}"},
    };
    struct ah_task_spec spec = {.prompt = "fan out",
                                .repo_mode = FX->repo_mode,
                                .repo_url = FX->repo_url,
                                .agents = agents,
                                .n_agents = 2};
    struct ah_task_created *t = NULL;
    struct ah_api_error e = {0};
    assert_int_equal(ah_task_manager_launch(FX->tm, &spec, &t, &e), 0);
    assert_int_equal(t->n_session_ids, 3);
    assert_string_equal(t->id, t->session_ids[0]);
    assert_string_equal(t->status, "queued");
    assert_string_not_equal(t->session_ids[0], t->session_ids[1]);
    assert_string_not_equal(t->session_ids[1], t->session_ids[2]);
    for (size_t i = 0; i < 3; i++) {
        struct ah_session *s = NULL;
        assert_int_equal(ah_task_manager_get_session(FX->tm, t->session_ids[i], &s, &e), 0);
        assert_string_equal(s->id, t->session_ids[i]);
        assert_string_equal(s->agent_type, "scripted");
        assert_string_equal(s->prompt, "fan out");
        assert_true(s->status != AH_STATUS_UNKNOWN);
        assert_non_null(s->created_at);
        ah_session_free(s);
    }
    ah_task_created_free(t);
    assert_int_equal(e.code, 0);
}

/* An invalid spec is AH_E_INVAL with the server's field names; nothing is created. */
static void launch_invalid(void **state) {
    REQUIRE(FX_TASKS);
    struct ah_task_spec no_agents = {.prompt = "p"};
    struct ah_task_created *t = NULL;
    struct ah_api_error e = {0};
    assert_int_equal(ah_task_manager_launch(FX->tm, &no_agents, &t, &e), AH_E_INVAL);
    assert_null(t);
    assert_int_equal(e.status, 400);
    assert_non_null(ah_api_error_field(&e, "agents"));
    struct ah_agent_spec agent = {.type = "scripted"};
    struct ah_task_spec git_no_url = {
        .prompt = "p", .repo_mode = "git", .agents = &agent, .n_agents = 1};
    assert_int_equal(ah_task_manager_launch(FX->tm, &git_no_url, &t, &e), AH_E_INVAL);
    assert_non_null(ah_api_error_field(&e, "repo.url"));
    struct ah_task_spec no_prompt = {.agents = &agent, .n_agents = 1};
    assert_int_equal(ah_task_manager_launch(FX->tm, &no_prompt, &t, &e), AH_E_INVAL);
    ah_api_error_clear(&e);
}

/* ---- unknown ids ------------------------------------------------------------------------------
 */

static int never_called(void *ud, const struct ah_event *ev) {
    fail_msg("a failed stream must not call back");
    return 1;
}

/* Unknown session/draft/repository ids are AH_E_NOTFOUND; a failed stream never calls back. */
static void unknown_ids(void **state) {
    const char *ghost = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    struct ah_api_error e = {0};
    if (!FX->missing[FX_SESSIONS]) {
        struct ah_session *s = NULL;
        assert_int_equal(ah_task_manager_get_session(FX->tm, ghost, &s, &e), AH_E_NOTFOUND);
        assert_int_equal(e.status, 404);
        assert_null(s);
    }
    if (!FX->missing[FX_CONTROL]) {
        assert_int_equal(ah_task_manager_control(FX->tm, ghost, AH_CONTROL_PAUSE, NULL, NULL, &e),
                         AH_E_NOTFOUND);
        assert_int_equal(ah_task_manager_control(FX->tm, ghost, AH_CONTROL_PROMPT, "hi", NULL, &e),
                         AH_E_NOTFOUND);
    }
    if (!FX->missing[FX_STREAM]) {
        int64_t last = -1;
        assert_int_equal(
            ah_task_manager_stream_events(FX->tm, ghost, NULL, never_called, NULL, &last, &e),
            AH_E_NOTFOUND);
        assert_int_equal(last, 0);
    }
    if (!FX->missing[FX_DRAFTS])
        assert_int_equal(ah_task_manager_delete_draft(FX->tm,
                                                      "draft-"
                                                      "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                                                      &e),
                         AH_E_NOTFOUND);
    if (!FX->missing[FX_REPOS]) {
        struct ah_branch_list *b = NULL;
        assert_int_equal(ah_task_manager_list_branches(FX->tm, "no-such-repo", &b, &e),
                         AH_E_NOTFOUND);
    }
    ah_api_error_clear(&e);
}

/* ---- streaming --------------------------------------------------------------------------------
 */

/* stream_events delivers every event once, in seq order, and returns right after the terminal
 * status; the session's view agrees afterwards; a later stream after seq k gives k+1.. only. */
static void stream_to_completion(void **state) {
    REQUIRE(FX_TASKS);
    REQUIRE(FX_STREAM);
    char id[64];
    assert_int_equal(fx_launch_scenario(FX,
                                        "[{\"thought\":\"hello contract\"},{\"log\":\"working\","
                                        "\"level\":\"info\"},{\"tool\":\"run_tests\",\"args\":"
                                        "{\"filter\":\"x\"},\"output\":\"ok\",\"ms\":20},"
                                        "{\"edit\":\"notes.txt\",\"content\":\"a\\nb\\n\"},"
                                        "{\"exit\":0}]",
                                        id, sizeof(id)),
                     0);
    struct collected c = {0};
    assert_int_equal(fx_stream(FX, id, NULL, &c, FX->budget_ms), 0);
    check_stream(&c, 1);
    assert_int_equal(c.statuses[c.n - 1], AH_STATUS_COMPLETED);
    assert_true(has_event(&c, "thought", "hello contract"));
    assert_true(has_event(&c, "log", "working"));
    assert_true(has_event(&c, "tool_use", NULL));
    assert_true(has_event(&c, "tool_result", NULL));
    assert_true(has_event(&c, "file_edit", NULL));
    assert_true(has_event(&c, "status", NULL));
    /* Status events follow D13: …, running, completed. */
    enum ah_session_status prev = AH_STATUS_UNKNOWN;
    for (size_t i = 0; i < c.n; i++) {
        if (strcmp(c.types[i], "status") != 0)
            continue;
        if (c.statuses[i] == AH_STATUS_RUNNING)
            assert_true(prev == AH_STATUS_PROVISIONING || prev == AH_STATUS_UNKNOWN ||
                        prev == AH_STATUS_RESUMING);
        prev = c.statuses[i];
    }
    struct ah_session *s = NULL;
    assert_int_equal(ah_task_manager_get_session(FX->tm, id, &s, NULL), 0);
    assert_int_equal(s->status, AH_STATUS_COMPLETED);
    assert_non_null(s->ended_at);
    ah_session_free(s);

    /* Resume from the middle: exactly the rest. */
    int64_t n = (int64_t)c.n, k = n / 2;
    struct collected rest = {0};
    struct ah_stream_options o = {.after_seq = k};
    assert_int_equal(fx_stream(FX, id, &o, &rest, FX->budget_ms), 0);
    assert_int_equal(rest.n, (size_t)(n - k));
    check_stream(&rest, k + 1);
    for (size_t i = 0; i < rest.n; i++)
        assert_string_equal(rest.types[i], c.types[k + (int64_t)i]);
    /* After the very end: nothing, and the call returns. */
    struct collected none = {0};
    o.after_seq = n;
    assert_int_equal(fx_stream(FX, id, &o, &none, FX->budget_ms), 0);
    assert_int_equal(none.n, 0);
    collected_clear(&c);
    collected_clear(&rest);
}

/* A failing agent ends `failed` with an error. */
static void failing_agent(void **state) {
    REQUIRE(FX_TASKS);
    REQUIRE(FX_STREAM);
    char id[64];
    assert_int_equal(
        fx_launch_scenario(FX, "[{\"thought\":\"uh oh\"},{\"fail\":\"boom\"}]", id, sizeof(id)), 0);
    struct collected c = {0};
    assert_int_equal(fx_stream(FX, id, NULL, &c, FX->budget_ms), 0);
    check_stream(&c, 1);
    assert_int_equal(c.statuses[c.n - 1], AH_STATUS_FAILED);
    struct ah_session *s = NULL;
    assert_int_equal(ah_task_manager_get_session(FX->tm, id, &s, NULL), 0);
    assert_int_equal(s->status, AH_STATUS_FAILED);
    assert_non_null(s->error);
    ah_session_free(s);
    collected_clear(&c);
}

/* Two streams of one session at once see the same events; the callback can stop a stream. */
static void concurrent_streams(void **state) {
    REQUIRE(FX_TASKS);
    REQUIRE(FX_STREAM);
    char id[64];
    assert_int_equal(fx_launch_scenario(FX,
                                        "[{\"thought\":\"one\"},{\"sleep\":200},{\"thought\":"
                                        "\"two\"},{\"sleep\":200},{\"exit\":0}]",
                                        id, sizeof(id)),
                     0);
    struct collected a = {0}, b = {0}, stop = {.stop_after = 1};
    struct stream_job jb = {.tm = FX->tm, .id = id, .out = &b};
    pthread_t t;
    pthread_create(&t, NULL, stream_thread, &jb);
    assert_int_equal(fx_stream(FX, id, NULL, &a, FX->budget_ms), 0);
    for (int i = 0; i < 1000 && !__atomic_load_n(&jb.done, __ATOMIC_SEQ_CST); i++)
        usleep(5000);
    pthread_join(t, NULL);
    assert_int_equal(jb.rc, 0);
    assert_int_equal(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        assert_int_equal(a.seqs[i], b.seqs[i]);
        assert_string_equal(a.types[i], b.types[i]);
    }
    assert_int_equal(fx_stream(FX, id, NULL, &stop, FX->budget_ms), AH_E_CANCELED);
    assert_int_equal(stop.n, 1);
    collected_clear(&a);
    collected_clear(&b);
    collected_clear(&stop);
}

/* ---- control ----------------------------------------------------------------------------------
 */

/* pause/resume/stop follow D13; illegal transitions are AH_E_CONFLICT naming the status; a
 * paused session refuses prompts (409), a finished one too (410). */
static void pause_resume_stop(void **state) {
    REQUIRE(FX_TASKS);
    REQUIRE(FX_CONTROL);
    char id[64];
    assert_int_equal(fx_launch_scenario(FX, LONG_SCENARIO, id, sizeof(id)), 0);
    assert_int_equal(fx_wait_status(FX, id, RUNNING, FX->budget_ms), AH_STATUS_RUNNING);
    struct ah_api_error e = {0};
    enum ah_session_status st = AH_STATUS_UNKNOWN;
    assert_int_equal(ah_task_manager_control(FX->tm, id, AH_CONTROL_RESUME, NULL, &st, &e),
                     AH_E_CONFLICT); /* running cannot resume */
    assert_int_equal(e.status, 409);
    assert_string_equal(e.current_status, "running");
    assert_int_equal(st, AH_STATUS_UNKNOWN);
    int rc = control_when_ready(id, AH_CONTROL_PAUSE, NULL, &st, &e);
    if (rc != 0)
        fail_msg("pause of a running session: %s (%d %s: %s)", ah_error_name(rc), e.status,
                 e.current_status ? e.current_status : "-", e.detail ? e.detail : "");
    assert_true(st == AH_STATUS_PAUSING || st == AH_STATUS_PAUSED);
    assert_int_equal(fx_wait_status(FX, id, PAUSED, FX->budget_ms), AH_STATUS_PAUSED);
    assert_int_equal(ah_task_manager_control(FX->tm, id, AH_CONTROL_PAUSE, NULL, NULL, &e),
                     AH_E_CONFLICT);
    assert_string_equal(e.current_status, "paused");
    assert_int_equal(ah_task_manager_control(FX->tm, id, AH_CONTROL_PROMPT, "hello", NULL, &e),
                     AH_E_CONFLICT);
    assert_int_equal(ah_task_manager_control(FX->tm, id, AH_CONTROL_RESUME, NULL, &st, &e), 0);
    assert_true(st == AH_STATUS_RESUMING || st == AH_STATUS_RUNNING);
    assert_int_equal(fx_wait_status(FX, id, RUNNING, FX->budget_ms), AH_STATUS_RUNNING);
    assert_int_equal(control_when_ready(id, AH_CONTROL_STOP, NULL, &st, &e), 0);
    assert_true(st == AH_STATUS_STOPPING || st == AH_STATUS_STOPPED);
    assert_int_equal(fx_wait_status(FX, id, TERMINAL, FX->budget_ms), AH_STATUS_STOPPED);
    assert_int_equal(ah_task_manager_control(FX->tm, id, AH_CONTROL_PROMPT, "late", NULL, &e),
                     AH_E_GONE);
    assert_int_equal(e.status, 410);
    assert_int_equal(ah_task_manager_control(FX->tm, id, AH_CONTROL_RESUME, NULL, NULL, &e),
                     AH_E_CONFLICT);
    ah_api_error_clear(&e);
    /* The whole story is in the stream. */
    if (!FX->missing[FX_STREAM]) {
        struct collected c = {0};
        assert_int_equal(fx_stream(FX, id, NULL, &c, FX->budget_ms), 0);
        check_stream(&c, 1);
        const enum ah_session_status story[] = {AH_STATUS_RUNNING, AH_STATUS_PAUSED,
                                                AH_STATUS_RUNNING, AH_STATUS_STOPPED};
        size_t k = 0;
        for (size_t i = 0; i < c.n && k < 4; i++)
            if (strcmp(c.types[i], "status") == 0 && c.statuses[i] == story[k])
                k++;
        assert_int_equal(k, 4);
        collected_clear(&c);
    }
}

/* cancel ends any non-terminal session at once (DELETE, D14). */
static void cancel_session(void **state) {
    REQUIRE(FX_TASKS);
    REQUIRE(FX_CONTROL);
    char id[64];
    assert_int_equal(fx_launch_scenario(FX, LONG_SCENARIO, id, sizeof(id)), 0);
    enum ah_session_status st = AH_STATUS_UNKNOWN;
    assert_int_equal(ah_task_manager_control(FX->tm, id, AH_CONTROL_CANCEL, NULL, &st, NULL), 0);
    assert_int_equal(st, AH_STATUS_CANCELLED);
    assert_int_equal(fx_wait_status(FX, id, TERMINAL, FX->budget_ms), AH_STATUS_CANCELLED);
    if (!FX->missing[FX_STREAM]) {
        struct collected c = {0};
        assert_int_equal(fx_stream(FX, id, NULL, &c, FX->budget_ms), 0);
        check_stream(&c, 1);
        assert_int_equal(c.statuses[c.n - 1], AH_STATUS_CANCELLED);
        collected_clear(&c);
    }
}

/* A prompt reaches a running agent that waits for one, and the agent goes on. */
static void prompt_reaches_agent(void **state) {
    REQUIRE(FX_TASKS);
    REQUIRE(FX_CONTROL);
    REQUIRE(FX_STREAM);
    char id[64];
    assert_int_equal(fx_launch_scenario(FX,
                                        "[{\"wait_prompt\":true},{\"thought\":\"got it\"},"
                                        "{\"exit\":0}]",
                                        id, sizeof(id)),
                     0);
    assert_int_equal(fx_wait_status(FX, id, RUNNING, FX->budget_ms), AH_STATUS_RUNNING);
    struct ah_api_error e = {0};
    enum ah_session_status st = AH_STATUS_UNKNOWN;
    assert_int_equal(control_when_ready(id, AH_CONTROL_PROMPT, "please go on", &st, &e), 0);
    assert_int_equal(st, AH_STATUS_RUNNING);
    struct collected c = {0};
    assert_int_equal(fx_stream(FX, id, NULL, &c, FX->budget_ms), 0);
    check_stream(&c, 1);
    assert_true(has_event(&c, "log", "please go on"));
    assert_true(has_event(&c, "thought", "got it"));
    assert_int_equal(c.statuses[c.n - 1], AH_STATUS_COMPLETED);
    collected_clear(&c);
}

/* A cancellation token ends a stream that would otherwise wait forever (paused session). */
static void cancel_token_ends_stream(void **state) {
    REQUIRE(FX_TASKS);
    REQUIRE(FX_STREAM);
    char id[64];
    assert_int_equal(
        fx_launch_scenario(FX, "[{\"wait_prompt\":true},{\"exit\":0}]", id, sizeof(id)), 0);
    ah_cancel *k = NULL;
    assert_int_equal(ah_cancel_new(&k), 0);
    struct collected c = {0};
    struct stream_job j = {.tm = FX->tm, .id = id, .out = &c, .opt = {.cancel = k}};
    pthread_t t;
    pthread_create(&t, NULL, stream_thread, &j);
    for (int i = 0; i < 5; i++)
        fx_pass(FX, FX->poll_ms);
    assert_int_equal(__atomic_load_n(&j.done, __ATOMIC_SEQ_CST), 0); /* still waiting */
    ah_cancel_trigger(k);
    pthread_join(t, NULL);
    assert_int_equal(j.rc, AH_E_CANCELED);
    for (size_t i = 0; i < c.n; i++)
        assert_int_equal(c.seqs[i], (int64_t)i + 1);
    ah_task_manager_control(FX->tm, id, AH_CONTROL_CANCEL, NULL, NULL, NULL);
    ah_cancel_free(k);
    collected_clear(&c);
}

/* ---- listing ----------------------------------------------------------------------------------
 */

/* list_sessions is newest first, filters by status, pages; initial_tasks returns both lists. */
static void list_sessions(void **state) {
    REQUIRE(FX_TASKS);
    REQUIRE(FX_SESSIONS);
    char a[64], b[64];
    assert_int_equal(fx_launch_scenario(FX, "[{\"exit\":0}]", a, sizeof(a)), 0);
    assert_int_equal(fx_launch_scenario(FX, "[{\"exit\":0}]", b, sizeof(b)), 0);
    struct ah_session_list *l = NULL;
    assert_int_equal(ah_task_manager_list_sessions(FX->tm, NULL, &l, NULL), 0);
    assert_true(l->n_items >= 2);
    assert_true(l->total >= 2);
    assert_string_equal(l->items[0]->id, b); /* newest first */
    assert_string_equal(l->items[1]->id, a);
    ah_session_list_free(l);
    struct ah_session_filter one = {.per_page = 1};
    assert_int_equal(ah_task_manager_list_sessions(FX->tm, &one, &l, NULL), 0);
    assert_int_equal(l->n_items, 1);
    assert_true(l->next_page == 2);
    ah_session_list_free(l);
    assert_int_equal(fx_wait_status(FX, b, TERMINAL, FX->budget_ms), AH_STATUS_COMPLETED);
    struct ah_session_filter done = {.status = "completed", .per_page = 200};
    assert_int_equal(ah_task_manager_list_sessions(FX->tm, &done, &l, NULL), 0);
    bool found = false;
    for (size_t i = 0; i < l->n_items; i++) {
        assert_int_equal(l->items[i]->status, AH_STATUS_COMPLETED);
        found |= strcmp(l->items[i]->id, b) == 0;
    }
    assert_true(found);
    ah_session_list_free(l);
    if (!FX->missing[FX_DRAFTS]) {
        struct ah_session_list *sl = NULL;
        struct ah_draft_list *dl = NULL;
        assert_int_equal(ah_task_manager_initial_tasks(FX->tm, &sl, &dl, NULL), 0);
        assert_true(sl->n_items >= 2);
        ah_session_list_free(sl);
        ah_draft_list_free(dl);
    }
}

/* Drafts: save creates, save with an id replaces, delete removes. */
static void drafts(void **state) {
    REQUIRE(FX_DRAFTS);
    struct ah_agent_spec agent = {.type = "codex"};
    struct ah_task_spec spec = {.prompt = "draft one",
                                .repo_url = "https://git.example.com/a.git",
                                .repo_branch = "main",
                                .agents = &agent,
                                .n_agents = 1};
    struct ah_draft *d = NULL;
    assert_int_equal(ah_task_manager_save_draft(FX->tm, NULL, &spec, &d, NULL), 0);
    assert_non_null(d->id);
    char id[128];
    snprintf(id, sizeof(id), "%s", d->id);
    ah_draft_free(d);
    struct ah_draft_list *l = NULL;
    assert_int_equal(ah_task_manager_list_drafts(FX->tm, &l, NULL), 0);
    bool found = false;
    for (size_t i = 0; i < l->n_items; i++) {
        if (strcmp(l->items[i]->id, id) == 0) {
            found = true;
            assert_string_equal(l->items[i]->prompt, "draft one");
            assert_string_equal(l->items[i]->repo_branch, "main");
            assert_string_equal(l->items[i]->agent_type, "codex");
        }
    }
    assert_true(found);
    ah_draft_list_free(l);
    spec.prompt = "draft two";
    assert_int_equal(ah_task_manager_save_draft(FX->tm, id, &spec, NULL, NULL), 0);
    assert_int_equal(ah_task_manager_list_drafts(FX->tm, &l, NULL), 0);
    found = false;
    for (size_t i = 0; i < l->n_items; i++)
        if (strcmp(l->items[i]->id, id) == 0) {
            found = true;
            assert_string_equal(l->items[i]->prompt, "draft two");
        }
    assert_true(found);
    ah_draft_list_free(l);
    assert_int_equal(ah_task_manager_delete_draft(FX->tm, id, NULL), 0);
    assert_int_equal(ah_task_manager_delete_draft(FX->tm, id, NULL), AH_E_NOTFOUND);
    assert_int_equal(ah_task_manager_save_draft(FX->tm, id, &spec, NULL, NULL), AH_E_NOTFOUND);
}

/* Repositories list, and each has branches with exactly one default. */
static void repositories(void **state) {
    REQUIRE(FX_REPOS);
    struct ah_repo_list *r = NULL;
    assert_int_equal(ah_task_manager_list_repositories(FX->tm, &r, NULL), 0);
    for (size_t i = 0; i < r->n_items; i++) {
        assert_non_null(r->items[i]->id);
        struct ah_branch_list *b = NULL;
        assert_int_equal(ah_task_manager_list_branches(FX->tm, r->items[i]->id, &b, NULL), 0);
        size_t defaults = 0;
        for (size_t k = 0; k < b->n_items; k++) {
            assert_non_null(b->items[k].name);
            defaults += b->items[k].is_default;
        }
        if (b->n_items)
            assert_int_equal(defaults, 1);
        ah_branch_list_free(b);
    }
    ah_repo_list_free(r);
}

/* The wrappers check arguments before any op runs. */
static void argument_checks(void **state) {
    struct ah_api_error e = {0};
    struct ah_session *s = NULL;
    assert_int_equal(ah_task_manager_get_session(FX->tm, NULL, &s, &e), AH_E_INVAL);
    assert_int_equal(ah_task_manager_get_session(FX->tm, "x", NULL, &e), AH_E_INVAL);
    assert_int_equal(ah_task_manager_control(FX->tm, "x", AH_CONTROL_PAUSE, "no", NULL, &e),
                     AH_E_INVAL);
    assert_int_equal(ah_task_manager_control(FX->tm, "x", AH_CONTROL_PROMPT, NULL, NULL, &e),
                     AH_E_INVAL);
    assert_int_equal(ah_task_manager_control(FX->tm, "x", (enum ah_control)42, NULL, NULL, &e),
                     AH_E_INVAL);
    assert_int_equal(ah_task_manager_stream_events(FX->tm, "x", NULL, NULL, NULL, NULL, &e),
                     AH_E_INVAL);
    assert_int_equal(ah_task_manager_launch(FX->tm, NULL, NULL, &e), AH_E_INVAL);
    assert_int_equal(ah_task_manager_launch(NULL, NULL, NULL, NULL), AH_E_INVAL);
    assert_non_null(ah_task_manager_name(FX->tm));
    ah_api_error_clear(&e);
}

#define PROMPT_LIMIT (16 * 1024) /* API.md: a longer prompt is 413 */

/* The server's refusals come back alike from every implementation, with or without an error
 * struct (reterr is optional in every call). */
static void refusals_with_and_without_reterr(void **state) {
    REQUIRE(FX_TASKS);
    REQUIRE(FX_SESSIONS);
    REQUIRE(FX_CONTROL);
    struct ah_api_error e = {0};
    struct ah_task_created *t = NULL;
    struct ah_agent_spec bad_scenario = {.type = "scripted",
                                         .settings_json = "{\"scenario\":{\"exit\":0}}"};
    struct ah_task_spec spec = {.prompt = "p",
                                .repo_mode = FX->repo_mode,
                                .repo_url = FX->repo_url,
                                .agents = &bad_scenario,
                                .n_agents = 1};
    assert_int_equal(ah_task_manager_launch(FX->tm, &spec, &t, NULL), AH_E_INVAL);
    assert_int_equal(ah_task_manager_launch(FX->tm, &spec, &t, &e), AH_E_INVAL);
    assert_null(t);
    assert_int_equal(e.status, 400);
    assert_non_null(ah_api_error_field(&e, "agents[0].settings.scenario"));

    struct ah_session_list *l = NULL;
    struct ah_session_filter f = {.per_page = 500};
    assert_int_equal(ah_task_manager_list_sessions(FX->tm, &f, &l, NULL), AH_E_INVAL);
    assert_int_equal(ah_task_manager_list_sessions(FX->tm, &f, &l, &e), AH_E_INVAL);
    assert_null(l);
    assert_non_null(ah_api_error_field(&e, "perPage"));

    char id[64];
    assert_int_equal(fx_launch_scenario(FX, "[{\"wait_prompt\":true},{\"exit\":0}]", id,
                                        sizeof(id)),
                     0);
    assert_int_equal(fx_wait_status(FX, id, RUNNING, FX->budget_ms), AH_STATUS_RUNNING);
    char *big = malloc(PROMPT_LIMIT + 2);
    assert_non_null(big);
    memset(big, 'x', PROMPT_LIMIT + 1);
    big[PROMPT_LIMIT + 1] = '\0';
    assert_int_equal(ah_task_manager_control(FX->tm, id, AH_CONTROL_PROMPT, big, NULL, NULL),
                     AH_E_TOOLARGE);
    assert_int_equal(ah_task_manager_control(FX->tm, id, AH_CONTROL_PROMPT, big, NULL, &e),
                     AH_E_TOOLARGE);
    assert_int_equal(e.status, 413);
    free(big);
    ah_task_manager_control(FX->tm, id, AH_CONTROL_CANCEL, NULL, NULL, NULL);
    ah_api_error_clear(&e);
}

int contract_run(struct tm_fixture *fx) {
    FX = fx;
    if (!fx->budget_ms)
        fx->budget_ms = 60000;
    if (!fx->poll_ms)
        fx->poll_ms = 100;
    if (!fx->repo_mode)
        fx->repo_mode = "none";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(launch_fans_out),      cmocka_unit_test(launch_invalid),
        cmocka_unit_test(unknown_ids),          cmocka_unit_test(stream_to_completion),
        cmocka_unit_test(failing_agent),        cmocka_unit_test(concurrent_streams),
        cmocka_unit_test(pause_resume_stop),    cmocka_unit_test(cancel_session),
        cmocka_unit_test(prompt_reaches_agent), cmocka_unit_test(cancel_token_ends_stream),
        cmocka_unit_test(list_sessions),        cmocka_unit_test(drafts),
        cmocka_unit_test(repositories),         cmocka_unit_test(argument_checks),
        cmocka_unit_test(refusals_with_and_without_reterr),
    };
    char group[64];
    snprintf(group, sizeof(group), "task-manager contract: %s", fx->name);
    return _cmocka_run_group_tests(group, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
}
