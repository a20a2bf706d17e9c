/* test-page.c — pagination (D6) edge cases and the list envelope. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../src/core/core.h"

static void test_defaults(void **state) {
    struct page pg;
    assert_int_equal(page_parse(NULL, NULL, PAGE_DEFAULT_PER_PAGE, PAGE_MAX_PER_PAGE, &pg, NULL), 0);
    assert_int_equal(pg.page, 1);
    assert_int_equal(pg.per_page, 20);
    assert_int_equal(page_parse(NULL, NULL, PAGE_EVENTS_PER_PAGE, PAGE_MAX_PER_PAGE, &pg, NULL), 0);
    assert_int_equal(pg.per_page, 50);
    assert_int_equal(page_offset(&pg), 0);
}

static void test_bounds(void **state) {
    struct page pg;
    assert_int_equal(page_parse("3", "200", 20, 200, &pg, NULL), 0);
    assert_int_equal(pg.page, 3);
    assert_int_equal(pg.per_page, 200);
    assert_int_equal(page_offset(&pg), 400);
    assert_int_equal(page_parse("1", "1", 20, 200, &pg, NULL), 0);
    assert_int_equal(page_parse("2147483647", "1", 20, 200, &pg, NULL), 0);
}

static void test_rejects(void **state) {
    const char *bad_pages[] = {"0", "-1", "1.5", "abc", "", " 1", "+1", "1e3", "99999999999999999999",
                               "2147483648"};
    for (size_t i = 0; i < sizeof(bad_pages) / sizeof(*bad_pages); i++) {
        struct page pg = {77, 77};
        struct ah_problem p = {0};
        if (page_parse(bad_pages[i], NULL, 20, 200, &pg, &p) != AH_E_INVAL)
            fail_msg("page=%s accepted", bad_pages[i]);
        assert_int_equal(pg.page, 77); /* untouched */
        assert_non_null(json_object_get(p.errors, "page"));
        problem_clear(&p);
    }
    const char *bad_per[] = {"0", "201", "-5", "x", "20.0"};
    for (size_t i = 0; i < sizeof(bad_per) / sizeof(*bad_per); i++) {
        struct page pg;
        struct ah_problem p = {0};
        if (page_parse(NULL, bad_per[i], 20, 200, &pg, &p) != AH_E_INVAL)
            fail_msg("perPage=%s accepted", bad_per[i]);
        assert_non_null(json_object_get(p.errors, "perPage"));
        assert_int_equal(ah_error_status(p.code), 400);
        problem_clear(&p);
    }
    /* both wrong: both named */
    struct page pg;
    struct ah_problem p = {0};
    assert_int_equal(page_parse("0", "0", 20, 200, &pg, &p), AH_E_INVAL);
    assert_int_equal(json_object_size(p.errors), 2);
    problem_clear(&p);
}

static void test_envelope(void **state) {
    struct page pg = {1, 20};
    json_t *e = page_envelope(json_array(), &pg, 45);
    assert_int_equal(json_integer_value(json_object_get(e, "nextPage")), 2);
    assert_int_equal(json_integer_value(json_object_get(e, "total")), 45);
    assert_int_equal(json_integer_value(json_object_get(e, "perPage")), 20);
    assert_int_equal(json_integer_value(json_object_get(e, "page")), 1);
    assert_true(json_is_array(json_object_get(e, "items")));
    json_t *pag = json_object_get(e, "pagination"); /* D6: the WebUI reads totalPages */
    assert_int_equal(json_integer_value(json_object_get(pag, "page")), 1);
    assert_int_equal(json_integer_value(json_object_get(pag, "perPage")), 20);
    assert_int_equal(json_integer_value(json_object_get(pag, "total")), 45);
    assert_int_equal(json_integer_value(json_object_get(pag, "totalPages")), 3);
    json_decref(e);
    pg.page = 3; /* 41..45: the last page */
    e = page_envelope(json_array(), &pg, 45);
    assert_true(json_is_null(json_object_get(e, "nextPage")));
    json_decref(e);
    pg.page = 9; /* past the end */
    e = page_envelope(json_array(), &pg, 45);
    assert_true(json_is_null(json_object_get(e, "nextPage")));
    json_decref(e);
    pg.page = 2; /* exactly full: 21..40 of 40 */
    e = page_envelope(json_array(), &pg, 40);
    assert_true(json_is_null(json_object_get(e, "nextPage")));
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(e, "pagination"), "totalPages")), 2);
    json_decref(e);
    e = page_envelope(json_array(), &pg, 0);
    assert_true(json_is_null(json_object_get(e, "nextPage")));
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(e, "pagination"), "totalPages")), 0);
    json_decref(e);
    assert_null(page_envelope(NULL, &pg, 0));
}

static void test_parse_int64(void **state) {
    int64_t v;
    assert_int_equal(parse_int64("-5", -10, 10, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(parse_int64("9223372036854775807", 0, INT64_MAX, &v), 0);
    assert_int_equal(parse_int64("9223372036854775808", 0, INT64_MAX, &v), AH_E_INVAL);
    assert_int_equal(parse_int64("11", -10, 10, &v), AH_E_INVAL);
    assert_int_equal(parse_int64("-", -10, 10, &v), AH_E_INVAL);
    assert_int_equal(parse_int64(NULL, -10, 10, &v), AH_E_INVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),  cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_rejects),   cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_parse_int64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
