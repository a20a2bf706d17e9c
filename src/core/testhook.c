/*
 * testhook.c — crash points for the kill -9 tests (issue 10 items 22, 23): with AH_TEST_HOOKS=1
 * and AH_TEST_CRASH_AT=<point> in its environment, the server kills itself with SIGKILL when it
 * reaches <point>, which makes a crash window that lasts microseconds deterministic. Hold points
 * (test_hold_point) stop a thread there instead, until the test lets it go; fail points
 * (test_fail_point, AH_TEST_FAIL_AT) make a resource look unavailable. Both
 * variables must be set, so a stray AH_TEST_CRASH_AT alone does nothing; the agent processes
 * never see them (their environment is an allow-list, D16).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

void test_crash_point(const char *point) {
    const char *on = getenv("AH_TEST_HOOKS");
    const char *at = getenv("AH_TEST_CRASH_AT");
    if (on && strcmp(on, "1") == 0 && at && strcmp(at, point) == 0) {
        log_msg(LOG_WARN, "test hook: crashing at %s", point);
        raise(SIGKILL);
    }
}

bool test_fail_point(const char *point) {
    const char *on = getenv("AH_TEST_HOOKS");
    const char *at = getenv("AH_TEST_FAIL_AT");
    return on && strcmp(on, "1") == 0 && at && strcmp(at, point) == 0;
}

void test_hold_point(const char *point) {
    const char *on = getenv("AH_TEST_HOOKS");
    const char *at = getenv("AH_TEST_HOLD_AT");
    const char *file = getenv("AH_TEST_HOLD_FILE");
    if (!on || strcmp(on, "1") != 0 || !at || strcmp(at, point) != 0 || !file ||
        access(file, F_OK) != 0)
        return;
    log_msg(LOG_WARN, "test hook: holding at %s", point);
    struct timespec tick = {.tv_nsec = 10 * 1000000};
    while (access(file, F_OK) == 0)
        nanosleep(&tick, NULL);
    log_msg(LOG_WARN, "test hook: released at %s", point);
}
