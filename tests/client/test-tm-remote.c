/*
 * test-tm-remote.c — the contract suite on the remote task manager against the real server:
 * starts `ah agent access-point --port 0 --db <tmp>` (AH_BIN), reads the port from its JSON
 * "listening" log line, waits for readiness, and probes which routes exist. A route that
 * answers 404/405/501 fails the run unless contract.c's fx_not_built names it (then the tests
 * that need it are skipped with the reason printed). A sanitizer report in the server's stderr
 * fails the run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ahserver.h"
#include "contract.h"

static int probe_failures;

/* Is the route served? 404, 405 (for the probing method) and 501 say no; fx_route_check decides
 * whether that is a skip (a route not built yet) or a failure. Returns the reason to skip. */
static const char *probe(ah_client *c, const char *route, const char *method, const char *path,
                         const char *body, const int *absent_statuses, char *why, size_t whysz) {
    struct ah_api_error e = {0};
    int status = 0, absent = 0;
    char *out = NULL;
    int rc = ah_client_request(c, method, path, body, &status, &out, &e);
    free(out);
    for (const int *s = absent_statuses; rc < 0 && *s; s++)
        if (e.status == *s)
            absent = e.status;
    ah_api_error_clear(&e);
    switch (fx_route_check(route, absent, why, whysz)) {
    case FX_ROUTE_SKIP: return why;
    case FX_ROUTE_FAIL:
        printf("FAIL: %s\n", why);
        probe_failures++;
        return NULL; /* the tests run, and fail on the route themselves */
    case FX_ROUTE_OK: break;
    }
    return NULL;
}

int main(void) {
    if (ahserver_start() < 0) {
        ahserver_stop();
        return 1;
    }
    ah_client *c = NULL;
    if (ah_client_new(ahserver_url(), &c) < 0)
        return 1;
    struct ah_retry_policy p = {
        .max_attempts = 3, .base_delay_ms = 50, .max_delay_ms = 500, .max_retry_after_ms = 5000};
    ah_client_set_retry(c, &p);

    /* Which routes exist? A GET on a POST-only route is 405 when the route exists. */
    static const int gone[] = {404, 405, 501, 0};
    static const int gone_not_405[] = {404, 501, 0};
    static char why[FX_CAP_COUNT_][200];
    const char *ghost = "/api/v1/sessions/01ARZ3NDEKTSV4RRFFQ69G5FAV";
    char path[200];
    struct tm_fixture fx = {.name = "remote (real server)", .budget_ms = 60000, .poll_ms = 100};
    fx.missing[FX_TASKS] = probe(c, "POST /api/v1/tasks", "POST", "/api/v1/tasks", "{}", gone,
                                 why[FX_TASKS], 200);
    fx.missing[FX_SESSIONS] = probe(c, "GET /api/v1/sessions", "GET", "/api/v1/sessions", NULL,
                                    gone, why[FX_SESSIONS], 200);
    snprintf(path, sizeof(path), "%s/pause", ghost);
    fx.missing[FX_CONTROL] = probe(c, "POST /api/v1/sessions/{id}/pause", "GET", path, NULL,
                                   gone_not_405, why[FX_CONTROL], 200);
    snprintf(path, sizeof(path), "%s/events", ghost);
    fx.missing[FX_STREAM] = probe(c, "GET /api/v1/sessions/{id}/events", "POST", path, "{}",
                                  gone_not_405, why[FX_STREAM], 200);
    fx.missing[FX_DRAFTS] = probe(c, "GET /api/v1/drafts", "GET", "/api/v1/drafts", NULL, gone,
                                  why[FX_DRAFTS], 200);
    fx.missing[FX_REPOS] = probe(c, "GET /api/v1/repos", "GET", "/api/v1/repos", NULL, gone,
                                 why[FX_REPOS], 200);
    for (int i = 0; i < FX_CAP_COUNT_; i++)
        if (fx.missing[i])
            printf("note: %s — dependent tests will be skipped\n", fx.missing[i]);

    if (ah_task_manager_new_remote(c, &fx.tm) < 0)
        return 1;
    int failed = probe_failures + contract_run(&fx);
    ah_task_manager_free(fx.tm);
    ah_client_free(c);
    failed += ahserver_stop();
    return failed ? 1 : 0;
}
