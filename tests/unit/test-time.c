/* test-time.c — RFC 3339 formatting and parsing (D3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../src/core/core.h"

static void test_format(void **state) {
    char s[TIME_RFC3339_LEN + 1];
    time_format(0, s);
    assert_string_equal(s, "1970-01-01T00:00:00.000Z");
    time_format(1767323045678LL, s);
    assert_string_equal(s, "2026-01-02T03:04:05.678Z");
    time_format(951782400000LL, s); /* leap day 2000-02-29 */
    assert_string_equal(s, "2000-02-29T00:00:00.000Z");
    time_format(-1, s); /* before the epoch */
    assert_string_equal(s, "1969-12-31T23:59:59.999Z");
    time_format(253402300799999LL, s);
    assert_string_equal(s, "9999-12-31T23:59:59.999Z");
}

static void test_parse(void **state) {
    int64_t ms;
    assert_int_equal(time_parse("2026-01-02T03:04:05.678Z", &ms), 0);
    assert_int_equal(ms, 1767323045678LL);
    assert_int_equal(time_parse("2026-01-02T03:04:05Z", &ms), 0);
    assert_int_equal(ms, 1767323045000LL);
    assert_int_equal(time_parse("2026-01-02t03:04:05.6z", &ms), 0);
    assert_int_equal(ms, 1767323045600LL);
    assert_int_equal(time_parse("2026-01-02T05:04:05.678+02:00", &ms), 0);
    assert_int_equal(ms, 1767323045678LL);
    assert_int_equal(time_parse("2026-01-01T22:04:05.678-05:00", &ms), 0);
    assert_int_equal(ms, 1767323045678LL);
    assert_int_equal(time_parse("2026-01-02 03:04:05.678123456Z", &ms), 0);
    assert_int_equal(ms, 1767323045678LL);
    assert_int_equal(time_parse("2024-02-29T00:00:00Z", &ms), 0);
}

static void test_parse_rejects(void **state) {
    int64_t ms = 42;
    const char *bad[] = {
        "",
        "2026-01-02",
        "2026-01-02T03:04:05",        /* no zone */
        "2026-13-02T03:04:05Z",       /* month */
        "2026-02-30T03:04:05Z",       /* day */
        "2025-02-29T00:00:00Z",       /* not a leap year */
        "2026-01-02T24:00:00Z",       /* hour */
        "2026-01-02T03:60:00Z",       /* minute */
        "2026-01-02T03:04:05.Z",      /* empty fraction */
        "2026-01-02T03:04:05Zjunk",   /* trailing */
        "2026-01-02T03:04:05+0200",   /* offset without colon */
        "26-01-02T03:04:05Z",
        "2026-1-02T03:04:05Z",
        "2026-01-02T03:04:05.1234567890Z", /* > 9 fraction digits */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (time_parse(bad[i], &ms) != AH_E_INVAL)
            fail_msg("accepted %s", bad[i]);
    }
    assert_int_equal(time_parse(NULL, &ms), AH_E_INVAL);
    assert_int_equal(ms, 42); /* untouched on failure */
}

static void test_round_trip(void **state) {
    /* every 7919th second over 60 years, with varying millis */
    for (int64_t t = 0; t < 60LL * 365 * 86400 * 1000; t += 7919LL * 1000 * 997) {
        char s[TIME_RFC3339_LEN + 1];
        int64_t back;
        time_format(t + t % 1000, s);
        assert_int_equal(time_parse(s, &back), 0);
        assert_int_equal(back, t + t % 1000);
    }
}

static void test_clocks(void **state) {
    int64_t a = time_mono_ms(), b = time_mono_ms();
    assert_true(b >= a);
    assert_true(time_now_ms() > 1700000000000LL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
