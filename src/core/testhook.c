/*
 * testhook.c — crash points for the kill -9 tests (issue 10 items 22, 23): with AH_TEST_HOOKS=1
 * and AH_TEST_CRASH_AT=<point> in its environment, the server kills itself with SIGKILL when it
 * reaches <point>, which makes a crash window that lasts microseconds deterministic. Both
 * variables must be set, so a stray AH_TEST_CRASH_AT alone does nothing; the agent processes
 * never see them (their environment is an allow-list, D16).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

void test_crash_point(const char *point) {
    const char *on = getenv("AH_TEST_HOOKS");
    const char *at = getenv("AH_TEST_CRASH_AT");
    if (on && strcmp(on, "1") == 0 && at && strcmp(at, point) == 0) {
        log_msg(LOG_WARN, "test hook: crashing at %s", point);
        raise(SIGKILL);
    }
}
