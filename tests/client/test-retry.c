/*
 * test-retry.c — the retry policy as pure functions: the back-off curve and its jitter bounds,
 * Retry-After taking precedence (and its cap), when to give up, which failures are retried for
 * which methods, and Retry-After parsing (seconds and HTTP-dates).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/client/client_internal.h"

static void test_default_policy(void **state) {
    struct ah_retry_policy p;
    ah_retry_policy_default(&p);
    assert_int_equal(p.max_attempts, 4);
    assert_int_equal(p.base_delay_ms, 200);
    assert_int_equal(p.max_delay_ms, 10000);
    assert_int_equal(p.max_retry_after_ms, 120000);
}

static void test_exponential_with_equal_jitter(void **state) {
    struct ah_retry_policy p = {
        .max_attempts = 10, .base_delay_ms = 100, .max_delay_ms = 1000, .max_retry_after_ms = 5000};
    /* random 0 gives the lower bound d/2, UINT32_MAX-ish values stay within d. */
    int64_t expect_d[] = {100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000};
    for (int attempt = 1; attempt < 10; attempt++) {
        int64_t d = expect_d[attempt - 1];
        assert_int_equal(ah_retry_delay_ms(&p, attempt, -1, 0), d / 2);
        for (uint32_t r = 0; r < 5000; r += 7) {
            int64_t v = ah_retry_delay_ms(&p, attempt, -1, r * 2654435761u);
            assert_true(v >= d / 2);
            assert_true(v <= d);
        }
        /* The upper bound is reachable. */
        assert_int_equal(ah_retry_delay_ms(&p, attempt, -1, (uint32_t)(d - d / 2)), d);
    }
}

static void test_gives_up(void **state) {
    struct ah_retry_policy p = {
        .max_attempts = 3, .base_delay_ms = 100, .max_delay_ms = 1000, .max_retry_after_ms = 5000};
    assert_true(ah_retry_delay_ms(&p, 1, -1, 0) >= 0);
    assert_true(ah_retry_delay_ms(&p, 2, -1, 0) >= 0);
    assert_int_equal(ah_retry_delay_ms(&p, 3, -1, 0), -1); /* 3 attempts made: done */
    assert_int_equal(ah_retry_delay_ms(&p, 0, -1, 0), -1);
    assert_int_equal(ah_retry_delay_ms(NULL, 1, -1, 0), -1);
    p.max_attempts = 1;
    assert_int_equal(ah_retry_delay_ms(&p, 1, -1, 0), -1); /* retries off */
}

static void test_retry_after_wins(void **state) {
    struct ah_retry_policy p = {
        .max_attempts = 5, .base_delay_ms = 100, .max_delay_ms = 1000, .max_retry_after_ms = 5000};
    assert_int_equal(ah_retry_delay_ms(&p, 1, 3000, 12345), 3000); /* exact, no jitter */
    assert_int_equal(ah_retry_delay_ms(&p, 1, 0, 12345), 0);
    assert_int_equal(ah_retry_delay_ms(&p, 4, 5000, 1), 5000);
    assert_int_equal(ah_retry_delay_ms(&p, 1, 5001, 1), -1); /* longer than we accept */
    assert_int_equal(ah_retry_delay_ms(&p, 5, 1000, 1), -1); /* attempts exhausted */
}

static void test_no_overflow(void **state) {
    struct ah_retry_policy p = {.max_attempts = 1000000,
                                .base_delay_ms = INT64_MAX / 4,
                                .max_delay_ms = INT64_MAX / 2,
                                .max_retry_after_ms = 0};
    int64_t v = ah_retry_delay_ms(&p, 500000, -1, 0);
    assert_true(v > 0);
    assert_true(v <= INT64_MAX / 2);
    struct ah_retry_policy z = {.max_attempts = 5, .base_delay_ms = 0, .max_delay_ms = 0};
    assert_int_equal(ah_retry_delay_ms(&z, 2, -1, 99), 0);
}

static void test_should_retry(void **state) {
    /* Idempotent methods: retryable statuses and broken connections. */
    const char *idem[] = {"GET", "PUT", "DELETE", "HEAD"};
    for (size_t i = 0; i < 4; i++) {
        assert_true(retry_should(idem[i], false, 429, TRANSPORT_OK));
        assert_true(retry_should(idem[i], false, 503, TRANSPORT_OK));
        assert_true(retry_should(idem[i], false, 502, TRANSPORT_OK));
        assert_true(retry_should(idem[i], false, 504, TRANSPORT_OK));
        assert_true(retry_should(idem[i], false, 408, TRANSPORT_OK));
        assert_true(retry_should(idem[i], false, 0, TRANSPORT_IO));
        assert_true(retry_should(idem[i], false, 0, TRANSPORT_CONNECT));
        /* never: other 4xx, 500/501, timeouts, fatal transport errors */
        int never[] = {400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 500, 501};
        for (size_t k = 0; k < sizeof(never) / sizeof(never[0]); k++)
            assert_false(retry_should(idem[i], false, never[k], TRANSPORT_OK));
        assert_false(retry_should(idem[i], false, 0, TRANSPORT_TIMEOUT));
        assert_false(retry_should(idem[i], false, 0, TRANSPORT_FATAL));
    }
    /* POST: only with an Idempotency-Key, except when nothing was sent at all. */
    assert_false(retry_should("POST", false, 503, TRANSPORT_OK));
    assert_false(retry_should("POST", false, 429, TRANSPORT_OK));
    assert_false(retry_should("POST", false, 0, TRANSPORT_IO));
    assert_true(retry_should("POST", false, 0, TRANSPORT_CONNECT));
    assert_true(retry_should("POST", true, 503, TRANSPORT_OK));
    assert_true(retry_should("POST", true, 429, TRANSPORT_OK));
    assert_true(retry_should("POST", true, 0, TRANSPORT_IO));
    assert_false(retry_should("POST", true, 400, TRANSPORT_OK));
    assert_false(retry_should("POST", true, 409, TRANSPORT_OK));
    assert_false(retry_should(NULL, true, 503, TRANSPORT_OK));
}

static void test_retry_after_parse(void **state) {
    int64_t now = 784111777000LL; /* Sun, 06 Nov 1994 08:49:37 GMT */
    assert_int_equal(retry_after_parse("120", now), 120000);
    assert_int_equal(retry_after_parse("  0 ", now), 0);
    assert_int_equal(retry_after_parse("1", now), 1000);
    assert_int_equal(retry_after_parse("99999999999999999999", now), 24LL * 3600 * 1000);
    assert_int_equal(retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", now), 0);
    assert_int_equal(retry_after_parse("Sun, 06 Nov 1994 08:49:47 GMT", now), 10000);
    assert_int_equal(retry_after_parse("Sun, 06 Nov 1994 08:48:37 GMT", now), 0); /* past */
    assert_int_equal(retry_after_parse("Mon, 07 Nov 1994 08:49:37 GMT", now), 86400000);
    assert_int_equal(retry_after_parse(NULL, now), -1);
    assert_int_equal(retry_after_parse("", now), -1);
    assert_int_equal(retry_after_parse("-5", now), -1);
    assert_int_equal(retry_after_parse("5s", now), -1);
    assert_int_equal(retry_after_parse("Sun, 06 Foo 1994 08:49:37 GMT", now), -1);
    assert_int_equal(retry_after_parse("Sunday, 06-Nov-94 08:49:37 GMT", now), -1);
    assert_int_equal(retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT junk", now), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_policy),
        cmocka_unit_test(test_exponential_with_equal_jitter),
        cmocka_unit_test(test_gives_up),
        cmocka_unit_test(test_retry_after_wins),
        cmocka_unit_test(test_no_overflow),
        cmocka_unit_test(test_should_retry),
        cmocka_unit_test(test_retry_after_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
