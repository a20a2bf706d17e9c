/* test-front.c — the front door's framing verdicts (RFC 9112 §6.1, §6.3, §3.2), its Problem+JSON
 * answers with statuses outside the error table, and the UTF-8 check of paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
/* cmocka.h needs the four above first */
#include <cmocka.h>

#include "../../src/http/front.h"

/* The verdict on a list of "Name: value" lines. */
static int verdict(bool http11, const char *const *lines) {
    struct front_framing f = {.http11 = http11};
    for (; *lines; lines++) {
        const char *colon = strchr(*lines, ':');
        front_framing_add(&f, *lines, (size_t)(colon - *lines), colon + 1, strlen(colon + 1));
    }
    struct front_verdict v;
    front_framing_verdict(&f, &v);
    if (v.status)
        assert_true(v.detail[0]);
    return v.status;
}

#define V(h11, ...) verdict(h11, (const char *const[]){__VA_ARGS__, NULL})

static void test_framing(void **state) {
    assert_int_equal(V(true, "Host: a"), 0);
    assert_int_equal(V(true, "Host: a", "Content-Length: 12"), 0);
    assert_int_equal(V(true, "Host: a", "Transfer-Encoding: chunked"), 0);
    assert_int_equal(V(true, "Host: a", "Transfer-Encoding: CHUNKED "), 0);
    assert_int_equal(V(false, "Accept: x"), 0); /* HTTP/1.0 needs no Host */
    assert_int_equal(V(true, "Host: a", "Content-Length: 2", "Content-Length: 40"), 400);
    assert_int_equal(V(true, "Host: a", "Content-Length: 2", "Content-Length: 2"), 400);
    assert_int_equal(V(true, "Host: a", "Content-Length : 2"), 400);
    assert_int_equal(V(true, "Host: a", "X A: b"), 400);
    assert_int_equal(V(true, "Host: a", ": b"), 400);
    assert_int_equal(V(true, "Host: a", "Content-Length: 2", "Transfer-Encoding: chunked"), 400);
    assert_int_equal(V(true, "Host: a", "Content-Length: -5"), 400);
    assert_int_equal(V(true, "Host: a", "Content-Length: 1x"), 400);
    assert_int_equal(V(true, "Host: a", "Content-Length: "), 400);
    assert_int_equal(V(true, "Host: a", "Content-Length: 99999999999999999999999"), 413);
    assert_int_equal(V(true, "Host: a", "Transfer-Encoding: identity"), 400);
    assert_int_equal(V(true, "Host: a", "Transfer-Encoding: xchunked"), 400);
    assert_int_equal(V(true, "Host: a", "Transfer-Encoding: chunked, identity"), 400);
    assert_int_equal(V(true, "Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: gzip"),
                     400);
    assert_int_equal(V(true, "Host: a", "Transfer-Encoding: gzip, chunked"), 501);
    assert_int_equal(V(false, "Transfer-Encoding: chunked"), 400);
    assert_int_equal(V(true, "Accept: x"), 400);
    assert_int_equal(V(true, "Host: a", "Host: b"), 400);
    assert_int_equal(V(false, "Host: a", "Host: a"), 400);
}

static void test_problem_response(void **state) {
    size_t n = 0;
    char *r = front_problem_response(421, "wrong host", "/api/v1/x", "RID", &n);
    assert_non_null(r);
    assert_int_equal(n, strlen(r));
    const char *line = "HTTP/1.1 421 Misdirected Request\r\n";
    assert_true(strncmp(r, line, strlen(line)) == 0);
    assert_non_null(strstr(r, "\r\nContent-Type: application/problem+json\r\n"));
    assert_non_null(strstr(r, "\r\nConnection: close\r\n"));
    const char *body = strstr(r, "\r\n\r\n") + 4;
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 421);
    assert_string_equal(json_string_value(json_object_get(j, "type")),
                        "/problems/misdirected-request");
    assert_string_equal(json_string_value(json_object_get(j, "instance")), "/api/v1/x");
    assert_string_equal(json_string_value(json_object_get(j, "requestId")), "RID");
    json_decref(j);
    free(r);
    /* an instance that is not UTF-8 is left out rather than losing the whole body */
    r = front_problem_response(400, "bad", "/a\xff", "RID", &n);
    assert_non_null(r);
    j = json_loads(strstr(r, "\r\n\r\n") + 4, 0, NULL);
    assert_non_null(j);
    assert_null(json_object_get(j, "instance"));
    json_decref(j);
    free(r);
}

static void test_utf8(void **state) {
    assert_true(front_utf8_ok("/api/v1/x", 9));
    assert_true(front_utf8_ok("\xf0\x9f\x92\xa9", 4));
    assert_true(front_utf8_ok("\xc3\xa9", 2));
    assert_false(front_utf8_ok("\xff\xfe", 2));
    assert_false(front_utf8_ok("a\0b", 3));
    assert_false(front_utf8_ok("\xc0\xaf", 2));         /* overlong */
    assert_false(front_utf8_ok("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(front_utf8_ok("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_false(front_utf8_ok("\xe2\x82", 2));         /* cut short */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_problem_response),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
