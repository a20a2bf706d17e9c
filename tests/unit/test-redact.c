/* test-redact.c — D29: the userinfo of URLs in text and JSON is shown as "***". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/core/core.h"

static void check(const char *in, const char *want) {
    char *got = text_redact_userinfo(in);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_false(text_has_userinfo(got));
    free(got);
}

static void test_text(void **state) {
    check("https://user:TOKEN@github.com/org/repo.git", "https://***@github.com/org/repo.git");
    check("https://TOKEN@host", "https://***@host");
    check("http://a:b@127.0.0.1:8080/x.git?q=1#f", "http://***@127.0.0.1:8080/x.git?q=1#f");
    /* several, inside text and quotes, with an '@' in the password */
    check("fatal: cannot clone 'https://u:p@ss@h/r' (or git+ssh://me:pw@h2/r): no",
          "fatal: cannot clone 'https://***@h/r' (or git+ssh://***@h2/r): no");
    /* JSON text: the quote ends the authority */
    check("{\"url\":\"https://x:y@h/p\",\"n\":1}", "{\"url\":\"https://***@h/p\",\"n\":1}");
    /* nothing to redact: copied unchanged */
    check("https://github.com/org/repo.git", "https://github.com/org/repo.git");
    check("git@github.com:org/repo.git", "git@github.com:org/repo.git");
    check("mail me@host and https://host/a@b", "mail me@host and https://host/a@b");
    check("://@", "://@");
    check("", "");
    assert_false(text_has_userinfo(NULL));
    assert_null(text_redact_userinfo(NULL));
    assert_false(text_has_userinfo("https://***@host/x"));
    assert_true(text_has_userinfo("ssh://u@host/x"));
}

static void test_json(void **state) {
    json_t *clean = json_pack("{s:s, s:[s]}", "a", "https://h/x", "b", "plain");
    json_t *same = json_redact_userinfo(clean);
    assert_ptr_equal(same, clean); /* nothing to do: the same value, one more reference */
    json_decref(same);
    json_t *v = json_pack("{s:{s:s, s:s}, s:[s, i]}", "repo", "mode", "git", "url",
                          "https://u:SECRET@h/r.git", "out", "cloning https://u:SECRET@h/r.git",
                          5);
    json_t *r = json_redact_userinfo(v);
    assert_non_null(r);
    assert_ptr_not_equal(r, v);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "repo"), "url")),
                        "https://***@h/r.git");
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "out"), 0)),
                        "cloning https://***@h/r.git");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(r, "out"), 1)), 5);
    /* the original is untouched (callers lend it) */
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "repo"), "url")),
                        "https://u:SECRET@h/r.git");
    assert_true(json_has_userinfo(v));
    assert_false(json_has_userinfo(r));
    assert_false(json_has_userinfo(NULL));
    json_decref(r);
    json_decref(v);
    json_decref(clean);
    json_t *s = json_string("x://a:b@c");
    json_t *rs = json_redact_userinfo(s);
    assert_string_equal(json_string_value(rs), "x://***@c");
    json_decref(rs);
    json_decref(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
