/*
 * contract.h — the task-manager contract suite. One set of cmocka tests, written against
 * <ah/task_manager.h> only, run unchanged on every implementation; each implementation's test
 * program builds a fixture and calls contract_run.
 *
 * Time: tests never sleep themselves; they call fx_pass, which advances a virtual clock (mock)
 * or sleeps (remote), so the same test takes milliseconds on the mock and real seconds against a
 * server. Capabilities: a fixture may lack a feature, but only when the route is named in
 * fx_not_built (routes the server does not serve yet); the tests that need it are skipped with
 * the reason printed. A route outside that list that answers 404/405/501 is a failure.
 */
#ifndef AH_TEST_CONTRACT_H
#define AH_TEST_CONTRACT_H

#include <ah/task_manager.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fx_cap { FX_TASKS, FX_SESSIONS, FX_CONTROL, FX_STREAM, FX_DRAFTS, FX_REPOS, FX_CAP_COUNT_ };

struct tm_fixture {
    const char *name;
    ah_task_manager *tm;
    ah_clock *clock;                    /* virtual clock, or NULL for real time */
    const char *missing[FX_CAP_COUNT_]; /* reason a capability is missing, NULL when present */
    int64_t budget_ms;                  /* how long (in the fixture's time) a session may take */
    int64_t poll_ms;                    /* fx_pass step while waiting */
    const char *repo_mode;              /* the repo the launched tasks use ("none" by default) */
    const char *repo_url;
};

/* The routes ("GET /api/v1/agents") these suites use that the server does not serve yet,
 * NULL-terminated. It must shrink as routes land: a listed route that answers fails too. */
extern const char *const fx_not_built[];

enum fx_route { FX_ROUTE_OK, FX_ROUTE_SKIP, FX_ROUTE_FAIL };
/* What a test does about a route: absent_status is the 404/405/501 it answered (0 when it is
 * served). FX_ROUTE_SKIP only for a listed route that is absent; FX_ROUTE_FAIL for an absent
 * route that is not listed, or a listed one that is served. why says which (SKIP and FAIL). */
enum fx_route fx_route_check(const char *route, int absent_status, char *why, size_t whysz);

/* Lets time pass: advances the virtual clock by ms, or sleeps ms of real time. */
void fx_pass(struct tm_fixture *fx, int64_t ms);

/* Runs the suite on fx; returns the number of failed tests. */
int contract_run(struct tm_fixture *fx);

/* Helpers the implementation-specific tests share. */
struct collected {
    int64_t *seqs;
    char **types;
    char **messages; /* message/thought text or NULL */
    enum ah_session_status *statuses;
    size_t n, cap;
    int stop_after; /* the callback returns 1 after this many events (0: never) */
};
void collected_clear(struct collected *c);
int collect_event(void *ud, const struct ah_event *ev);

/* Streams session id on a thread while fx's time passes, until the stream returns or the
 * budget is spent (then the stream is cancelled). Returns the stream's result. */
int fx_stream(struct tm_fixture *fx, const char *id, const struct ah_stream_options *opt,
              struct collected *out, int64_t budget_ms);

/* Launches one scripted session with the given D20 scenario (JSON array text). */
int fx_launch_scenario(struct tm_fixture *fx, const char *scenario_json, char *ret_id, size_t idsz);

/* Waits (passing time) until the session's status is one of `want` (terminated by
 * AH_STATUS_UNKNOWN). Returns the status reached, or AH_STATUS_UNKNOWN on time-out. */
enum ah_session_status fx_wait_status(struct tm_fixture *fx, const char *id,
                                      const enum ah_session_status *want, int64_t budget_ms);

#endif
