/* test-toml.c — the configuration-file subset: what it accepts and the line numbers of what it
 * refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/core/core.h"

static json_t *ok(const char *text) {
    json_t *j = NULL;
    struct ah_problem p = {0};
    if (toml_parse(text, strlen(text), &j, &p) != 0)
        fail_msg("rejected: %s (%s)", text, p.detail);
    return j;
}

static void bad(const char *text, int line) {
    json_t *j = NULL;
    struct ah_problem p = {0};
    assert_int_equal(toml_parse(text, strlen(text), &j, &p), AH_E_INVAL);
    assert_null(j);
    char want[32];
    snprintf(want, sizeof(want), "line %d:", line);
    if (!strstr(p.detail, want))
        fail_msg("'%s': expected '%s' in '%s'", text, want, p.detail);
    problem_clear(&p);
}

static void test_values(void **state) {
    json_t *j = ok("# top\n"
                   "port = 3001\n"
                   "bind = \"0.0.0.0\"   # trailing comment\n"
                   "quiet = true\n"
                   "loud = false\n"
                   "big = 1_000_000\n"
                   "neg = -5\n"
                   "lit = 'C:\\path'\n"
                   "esc = \"a\\tb\\\"c\\u00e9\"\n"
                   "origins = [\"http://a\", 'http://b',]\n"
                   "empty = []\n"
                   "\n"
                   "[server]\n"
                   "port = 8080\r\n"
                   "[a.b-c]\n"
                   "key_1 = \"v\"\n");
    assert_int_equal(json_integer_value(json_object_get(j, "port")), 3001);
    assert_string_equal(json_string_value(json_object_get(j, "bind")), "0.0.0.0");
    assert_true(json_is_true(json_object_get(j, "quiet")));
    assert_true(json_is_false(json_object_get(j, "loud")));
    assert_int_equal(json_integer_value(json_object_get(j, "big")), 1000000);
    assert_int_equal(json_integer_value(json_object_get(j, "neg")), -5);
    assert_string_equal(json_string_value(json_object_get(j, "lit")), "C:\\path");
    assert_string_equal(json_string_value(json_object_get(j, "esc")), "a\tb\"c\xc3\xa9");
    json_t *o = json_object_get(j, "origins");
    assert_int_equal(json_array_size(o), 2);
    assert_string_equal(json_string_value(json_array_get(o, 1)), "http://b");
    assert_int_equal(json_array_size(json_object_get(j, "empty")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "server.port")), 8080);
    assert_string_equal(json_string_value(json_object_get(j, "a.b-c.key_1")), "v");
    json_decref(j);
    j = ok("remote-server = \"prod\"\n[[server]]\nname = \"prod\"\nurl = \"https://a\"\n"
           "[[server]]\nname = \"dev\"\n[other]\nx = 1\n[[server]]\nname = \"third\"\n");
    assert_string_equal(json_string_value(json_object_get(j, "server[0].url")), "https://a");
    assert_string_equal(json_string_value(json_object_get(j, "server[1].name")), "dev");
    assert_string_equal(json_string_value(json_object_get(j, "server[2].name")), "third");
    assert_int_equal(json_integer_value(json_object_get(j, "other.x")), 1);
    assert_null(json_object_get(j, "server[3].name"));
    json_decref(j);
    j = ok("");
    assert_int_equal(json_object_size(j), 0);
    json_decref(j);
}

/* issue 15: [models."ID"] sections name ids with dots, and prices are fractions */
static void test_quoted_sections_and_fractions(void **state) {
    (void)state;
    json_t *j = ok("[models.\"gemini-2.5-pro\"]\n"
                   "input_pricing = 1.25\n"
                   "output_pricing = -0.5\n"
                   "context_window = 1048576\n");
    assert_true(json_is_real(json_object_get(j, "models.gemini-2.5-pro.input_pricing")));
    assert_true(json_real_value(json_object_get(j, "models.gemini-2.5-pro.input_pricing")) == 1.25);
    assert_true(json_real_value(json_object_get(j, "models.gemini-2.5-pro.output_pricing")) == -0.5);
    assert_int_equal(json_integer_value(json_object_get(j, "models.gemini-2.5-pro.context_window")),
                     1048576);
    json_decref(j);
    bad("[models.\"\"]\n", 1);
    bad("[models.\"a\nb\"]\n", 1);
    bad("[models.\"x\"y]\n", 1);
    bad("[\"\xfb\"]\nk = 1\n", 1); /* not UTF-8: refused with a located error (fuzz_toml) */
    bad("a = 1.\n", 1);
    bad("a = .5\n", 1);
    bad("a = 1.2.3\n", 1);
}

static void test_errors(void **state) {
    bad("port = ", 1);
    bad("a = 1\nport 3001\n", 2);
    bad("a = 1\nb = \"open\n", 2);
    bad("a = 1\na = 2\n", 2);
    bad("[server\nport = 1\n", 1);
    bad("x = [1, 2]\n", 1);
    bad("x = 1.5e3\n", 1); /* fractions are taken (prices), exponents not */
    bad("x = yes\n", 1);
    bad("x = \"a\" junk\n", 1);
    bad("x = \"\\q\"\n", 1);
    bad("x = [\"a\"\n", 1);
    bad("\n\n= 3\n", 3);
    bad("x = 99999999999999999999\n", 1);
    bad("[a..b]\n", 1);
    bad("[[server]\n", 1);
    bad("[[server]]\nname = 1\nname = 2\n", 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_quoted_sections_and_fractions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
