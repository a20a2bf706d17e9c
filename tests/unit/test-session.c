/* test-session.c — the state machine table (D13, D15), checked for every pair of states against
 * an independent statement of the rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/core/core.h"

#define Q SESSION_QUEUED
#define PV SESSION_PROVISIONING
#define R SESSION_RUNNING
#define PG SESSION_PAUSING
#define PD SESSION_PAUSED
#define RS SESSION_RESUMING
#define SG SESSION_STOPPING
#define SD SESSION_STOPPED
#define C SESSION_COMPLETED
#define F SESSION_FAILED
#define X SESSION_CANCELLED

/* The rules written out as a list, independently of the table in session.c. */
static const int expected[][2] = {
    {Q, PV},  {PV, R},  {R, PG},  {PG, PD}, {PD, RS}, {RS, R},  {R, SG},  {PD, SG},
    {SG, SD}, {R, C},   {PV, F},  {R, F},   {PG, F},  {PD, F},  {RS, F},  {SG, F},
    {Q, X},   {PV, X},  {R, X},   {PG, X},  {PD, X},  {RS, X},  {SG, X},
    {Q, SD},  {PV, SD}, /* stop before anything runs ends the session at once (D13) */
    {PG, C},  {RS, C},  /* the agent finished as a pause or resume was under way */
    {PV, Q},            /* D44: its executor was lost before it started: placed again */
};

static bool in_expected(int from, int to) {
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        if (expected[i][0] == from && expected[i][1] == to)
            return true;
    return false;
}

static void test_every_pair(void **state) {
    int legal = 0;
    for (int from = 0; from < SESSION_STATUS_COUNT; from++)
        for (int to = 0; to < SESSION_STATUS_COUNT; to++) {
            bool want = in_expected(from, to);
            bool got = session_transition_legal(from, to);
            if (want != got)
                fail_msg("%s → %s: expected %s", session_status_name(from), session_status_name(to),
                         want ? "legal" : "illegal");
            legal += got;
        }
    assert_int_equal(legal, sizeof(expected) / sizeof(expected[0]));
}

static void test_terminal_states_are_final(void **state) {
    for (int s = 0; s < SESSION_STATUS_COUNT; s++) {
        if (!session_status_terminal(s))
            continue;
        for (int to = 0; to < SESSION_STATUS_COUNT; to++)
            assert_false(session_transition_legal(s, to));
        assert_false(session_status_active(s));
    }
    assert_true(session_status_terminal(SD));
    assert_true(session_status_terminal(C));
    assert_true(session_status_terminal(F));
    assert_true(session_status_terminal(X));
    assert_false(session_status_terminal(PD));
    /* every non-terminal state can be cancelled (DELETE) */
    for (int s = 0; s < SESSION_STATUS_COUNT; s++)
        assert_int_equal(session_transition_legal(s, X), !session_status_terminal(s));
}

static void test_no_self_loops_or_return_to_queue(void **state) {
    for (int s = 0; s < SESSION_STATUS_COUNT; s++) {
        assert_false(session_transition_legal(s, s));
        /* only a session that never started returns to the queue (D44: its executor lost) */
        assert_int_equal(session_transition_legal(s, Q), s == PV);
    }
}

static void test_names(void **state) {
    const char *names[] = {"queued",  "provisioning", "running",   "pausing",
                           "paused",  "resuming",     "stopping",  "stopped",
                           "completed", "failed",     "cancelled"};
    for (int s = 0; s < SESSION_STATUS_COUNT; s++) {
        enum session_status back;
        assert_string_equal(session_status_name(s), names[s]);
        assert_int_equal(session_status_parse(names[s], &back), 0);
        assert_int_equal(back, s);
    }
    enum session_status x = Q;
    assert_int_equal(session_status_parse("Running", &x), AH_E_INVAL);
    assert_int_equal(session_status_parse("", &x), AH_E_INVAL);
    assert_int_equal(session_status_parse(NULL, &x), AH_E_INVAL);
    assert_string_equal(session_status_name(99), "unknown");
    assert_false(session_transition_legal(99, Q));
    assert_false(session_transition_legal(Q, -1));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_pair),
        cmocka_unit_test(test_terminal_states_are_final),
        cmocka_unit_test(test_no_self_loops_or_return_to_queue),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
