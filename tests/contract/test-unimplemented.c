/* test-unimplemented.c — openapi.c's routes without a socket: the document and the docs are
 * served, every documented operation that no handler serves answers 501 Problem+JSON, real
 * handlers registered before keep winning, and what the document leaves out stays 404/405. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h> /* after the headers it needs */

#include "../../src/api/routes.h"

static void real(struct http_request *req, struct http_response *res) {
    res->status = 299;
}

/* Runs whatever the router matched for method + path and returns the status it answered. */
static int answer(struct router *r, const char *method, const char *path,
                  struct http_response *res) {
    struct arena *a = arena_new();
    assert_non_null(a);
    struct route_match m;
    int rc = router_match(r, method, path, a, &m, NULL, 0);
    if (rc < 0) {
        arena_free(a);
        return rc;
    }
    struct http_request req = {
        .method = method, .path = path, .request_id = "rid-1", .arena = a, .route_ctx = m.ctx};
    memcpy(req.params, m.params, sizeof(req.params));
    req.n_params = m.n_params;
    m.fn(&req, res);
    arena_free(a);
    return res->status;
}

static void assert_501(struct router *r, const char *method, const char *path) {
    struct http_response res = {0};
    assert_int_equal(answer(r, method, path, &res), 501);
    assert_string_equal(res.content_type, "application/problem+json");
    assert_string_equal(json_string_value(json_object_get(res.json, "type")),
                        "/problems/not-implemented");
    assert_string_equal(json_string_value(json_object_get(res.json, "instance")), path);
    assert_string_equal(json_string_value(json_object_get(res.json, "requestId")), "rid-1");
    http_response_clear(&res);
}

static void test_routes(void **state) {
    struct router *r = router_new();
    struct api_ctx ctx = {0};
    assert_non_null(r);
    assert_int_equal(router_add(r, "GET", "/api/v1/sessions/{id}", real, &ctx, 0, 0), 0);
    assert_int_equal(router_add(r, "GET", "/api/v1/sessions/{id}/files/search", real, &ctx, 0, 0),
                     0);
    assert_int_equal(api_openapi_register(r, &ctx), 0);
    assert_int_equal(api_register_unimplemented(r, &ctx), 0);
    assert_int_equal(api_register_unimplemented(r, &ctx), 0); /* a second call adds nothing */

    struct http_response res = {0};
    assert_int_equal(answer(r, "GET", "/api/v1/sessions/S1", &res), 299);
    assert_int_equal(answer(r, "GET", "/api/v1/sessions/S1/files/search", &res), 299);

    assert_int_equal(answer(r, "GET", "/api/v1/openapi.json", &res), 200);
    assert_string_equal(res.content_type, "application/json");
    json_t *doc = json_loadb(res.body, res.body_len, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    json_decref(doc);
    http_response_clear(&res);

    assert_int_equal(answer(r, "GET", "/api/docs", &res), 200);
    assert_non_null(strstr(res.body, "swagger-ui-bundle.js"));
    http_response_clear(&res);
    assert_int_equal(answer(r, "GET", "/api/docs/swagger-ui.css", &res), 200);
    assert_string_equal(res.content_type, "text/css; charset=utf-8");
    http_response_clear(&res);
    assert_int_equal(answer(r, "GET", "/api/docs/nothing.js", &res), 404);
    http_response_clear(&res);

    assert_501(r, "POST", "/api/v1/tasks");
    assert_501(r, "GET", "/api/v1/sessions");
    assert_501(r, "DELETE", "/api/v1/sessions/S1"); /* GET is real, DELETE is not yet */
    assert_501(r, "GET", "/api/v1/sessions/S1/files/src/lib/a.c");
    assert_501(r, "GET", "/api/v1/sessions/S1/files/src/lib/a.c/preview");
    assert_501(r, "GET", "/api/v1/sessions/S1/diff/a.c");
    assert_501(r, "DELETE", "/api/v1/sessions/S1/chat/messages/M1/attachments/A1");
    assert_501(r, "GET", "/api/v1/sessions/S1/executions/E/pipelines/P/steps/S/stream");
    assert_501(r, "PUT", "/api/v1/drafts/D1");

    /* Not in the document: the router's own answers. */
    struct arena *a = arena_new();
    struct route_match m;
    char allow[128];
    assert_int_equal(router_match(r, "PUT", "/api/v1/sessions/S1", a, &m, allow, sizeof(allow)),
                     AH_E_METHOD);
    assert_non_null(strstr(allow, "DELETE"));
    assert_int_equal(router_match(r, "GET", "/api/v1/nothing", a, &m, NULL, 0), AH_E_NOTFOUND);
    assert_int_equal(router_match(r, "GET", "/api/v1/sessions/S1/", a, &m, NULL, 0), AH_E_NOTFOUND);
    arena_free(a);
    router_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
