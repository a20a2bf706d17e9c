/* test-router.c — path parameters, tail parameters, method matching and the Allow list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/http/http.h"

static void h1(struct http_request *req, struct http_response *res) {}
static void h2(struct http_request *req, struct http_response *res) {}
static void h3(struct http_request *req, struct http_response *res) {}

static void test_match(void **state) {
    struct router *r = router_new();
    assert_int_equal(router_add(r, "GET", "/api/v1/sessions", h1, NULL, 0, 0), 0);
    assert_int_equal(router_add(r, "POST", "/api/v1/sessions/{id}/pause", h2, (void *)2, 0, 100), 0);
    assert_int_equal(router_add(r, "GET", "/api/v1/sessions/{id}/files/search", h1, NULL, 0, 0), 0);
    assert_int_equal(router_add(r, "GET", "/api/v1/sessions/{id}/files/{path...}", h3, NULL, 0, 0), 0);
    assert_int_equal(router_add(r, "DELETE", "/api/v1/sessions/{id}", h2, NULL, 0, 0), 0);
    assert_int_equal(router_add(r, "GET", "/api/v1/sessions/{id}", h1, NULL, 0, 0), 0);
    struct arena *a = arena_new();
    struct route_match m;
    char allow[64];

    assert_int_equal(router_match(r, "GET", "/api/v1/sessions", a, &m, allow, sizeof(allow)), 0);
    assert_ptr_equal(m.fn, h1);
    assert_int_equal(m.n_params, 0);

    assert_int_equal(router_match(r, "POST", "/api/v1/sessions/ABC/pause", a, &m, allow, sizeof(allow)), 0);
    assert_ptr_equal(m.fn, h2);
    assert_ptr_equal(m.ctx, (void *)2);
    assert_int_equal(m.max_body, 100);
    assert_int_equal(m.n_params, 1);
    assert_string_equal(m.params[0].name, "id");
    assert_string_equal(m.params[0].value, "ABC");

    /* a literal registered first wins over the tail parameter */
    assert_int_equal(router_match(r, "GET", "/api/v1/sessions/X/files/search", a, &m, allow, sizeof(allow)), 0);
    assert_ptr_equal(m.fn, h1);
    assert_int_equal(router_match(r, "GET", "/api/v1/sessions/X/files/src/a/b.c", a, &m, allow, sizeof(allow)), 0);
    assert_ptr_equal(m.fn, h3);
    assert_string_equal(m.params[1].name, "path");
    assert_string_equal(m.params[1].value, "src/a/b.c");

    /* HEAD is routed as GET */
    assert_int_equal(router_match(r, "HEAD", "/api/v1/sessions", a, &m, allow, sizeof(allow)), 0);

    /* 405 with the allowed methods */
    assert_int_equal(router_match(r, "PUT", "/api/v1/sessions/X", a, &m, allow, sizeof(allow)), AH_E_METHOD);
    assert_non_null(strstr(allow, "DELETE"));
    assert_non_null(strstr(allow, "GET"));
    assert_non_null(strstr(allow, "HEAD"));
    assert_null(strstr(allow, "POST"));
    assert_int_equal(router_match(r, "GET", "/api/v1/sessions/X/pause", a, &m, allow, sizeof(allow)), AH_E_METHOD);
    assert_string_equal(allow, "POST");

    /* 404s */
    const char *missing[] = {"/", "/api/v1/sessions/", "/api/v1/sessions//pause", "/api/v1/session",
                             "/api/v1/sessions/X/files", "/api/v1/sessions/X/files/", "api/v1/sessions",
                             "/api/v1/sessions/X/pause/extra", ""};
    for (size_t i = 0; i < sizeof(missing) / sizeof(*missing); i++)
        if (router_match(r, "GET", missing[i], a, &m, allow, sizeof(allow)) != AH_E_NOTFOUND &&
            strcmp(missing[i], "/api/v1/sessions/X/files/") != 0)
            fail_msg("%s should be 404", missing[i]);
    arena_free(a);
    router_free(r);
}

static void test_bad_patterns(void **state) {
    struct router *r = router_new();
    assert_int_equal(router_add(r, "GET", "nope", h1, NULL, 0, 0), AH_E_INVAL);
    assert_int_equal(router_add(r, "GET", "/a//b", h1, NULL, 0, 0), AH_E_INVAL);
    assert_int_equal(router_add(r, "GET", "/a/{x...}/b", h1, NULL, 0, 0), AH_E_INVAL);
    assert_int_equal(router_add(r, "VERYLONGMETHOD", "/a", h1, NULL, 0, 0), AH_E_INVAL);
    assert_int_equal(router_add(r, "GET", "/a", NULL, NULL, 0, 0), AH_E_INVAL);
    router_free(r);
}

static void test_request_helpers(void **state) {
    struct http_kv headers[] = {{"Content-Type", "application/json"}, {"X-Request-Id", "abc"}};
    struct http_kv query[] = {{"page", "2"}, {"Page", "3"}};
    struct http_request req = {.headers = headers, .n_headers = 2, .query = query, .n_query = 2,
                               .path = "/x", .request_id = "abc"};
    req.arena = arena_new();
    assert_string_equal(http_header(&req, "content-type"), "application/json");
    assert_null(http_header(&req, "Accept"));
    assert_string_equal(http_query(&req, "page"), "2"); /* query names are case-sensitive */
    assert_string_equal(http_query(&req, "Page"), "3");
    struct http_response res = {0};
    http_error(&req, &res, AH_E_CONFLICT, "session is %s", "paused");
    assert_int_equal(res.status, 409);
    assert_string_equal(res.content_type, "application/problem+json");
    assert_string_equal(json_string_value(json_object_get(res.json, "detail")), "session is paused");
    assert_string_equal(json_string_value(json_object_get(res.json, "instance")), "/x");
    assert_string_equal(json_string_value(json_object_get(res.json, "type")), "/problems/conflict");
    for (int i = 0; i < HTTP_MAX_RES_HEADERS; i++)
        assert_int_equal(http_header_add(&req, &res, "X-A", "b"), 0);
    assert_int_equal(http_header_add(&req, &res, "X-A", "b"), AH_E_TOOLARGE);
    http_response_clear(&res);
    arena_free(req.arena);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_bad_patterns),
        cmocka_unit_test(test_request_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
