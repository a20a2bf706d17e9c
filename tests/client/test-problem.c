/*
 * test-problem.c — failed answers into struct ah_api_error: a full Problem (D4) with field
 * errors and extras, other servers' shapes (R's URIs, plain text, empty bodies, binary), status
 * fallbacks, and the error-struct helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/client/client_internal.h"

static int parse(struct ah_api_error *e, int status, const char *body, const char *rid,
                 int64_t ra) {
    return problem_from_response(e, status, body, body ? strlen(body) : 0, rid, ra);
}

static void test_full_problem(void **state) {
    struct ah_api_error e = {0};
    const char *body =
        "{\"type\":\"/problems/validation\",\"title\":\"Validation Error\",\"status\":400,"
        "\"detail\":\"agents must contain at least one entry\",\"instance\":\"/api/v1/tasks\","
        "\"requestId\":\"01J9Q0Z4YB6N8W2F3K5M7P9R1T\",\"errors\":{\"agents\":[\"is required\"],"
        "\"repo.url\":[\"is required\",\"must be a URL\"]}}";
    assert_int_equal(parse(&e, 400, body, "hdr-id", -1), AH_E_INVAL);
    assert_int_equal(e.code, AH_E_INVAL);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "/problems/validation");
    assert_string_equal(e.title, "Validation Error");
    assert_string_equal(e.detail, "agents must contain at least one entry");
    assert_string_equal(e.instance, "/api/v1/tasks");
    assert_string_equal(e.request_id, "01J9Q0Z4YB6N8W2F3K5M7P9R1T"); /* body wins */
    assert_int_equal(e.n_errors, 3);
    assert_string_equal(ah_api_error_field(&e, "agents"), "is required");
    assert_string_equal(ah_api_error_field(&e, "repo.url"), "is required");
    assert_null(ah_api_error_field(&e, "prompt"));
    assert_int_equal(e.retry_after_ms, -1);
    assert_non_null(e.body);
    ah_api_error_clear(&e);
    assert_null(e.type);
    assert_int_equal(e.n_errors, 0);
    assert_int_equal(e.retry_after_ms, -1);
}

static void test_conflict_extras(void **state) {
    struct ah_api_error e = {0};
    const char *body = "{\"type\":\"/problems/conflict\",\"title\":\"Conflict\",\"status\":409,"
                       "\"detail\":\"cannot pause a paused session\",\"currentStatus\":\"paused\"}";
    assert_int_equal(parse(&e, 409, body, "rid-1", -1), AH_E_CONFLICT);
    assert_string_equal(e.current_status, "paused");
    assert_string_equal(e.request_id, "rid-1"); /* from the header when the body has none */
    ah_api_error_clear(&e);
}

static void test_slugs_map_to_codes(void **state) {
    struct {
        int status;
        const char *type;
        int code;
    } cases[] = {
        {404, "/problems/not-found", AH_E_NOTFOUND},
        {409, "/problems/in-progress", AH_E_BUSY},
        {409, "/problems/exists", AH_E_EXISTS},
        {422, "/problems/idempotency-key-mismatch", AH_E_IDEMPOTENCY},
        {429, "/problems/rate-limited", AH_E_RATELIMIT},
        {503, "/problems/out-of-memory", AH_E_UNAVAIL},           /* the server's OOM is not ours */
        {401, "https://docs.example.com/errors/auth", AH_E_AUTH}, /* R's URIs */
        {400, "https://docs.example.com/errors/validation", AH_E_INVAL},
        {404, "/problems/validation", AH_E_NOTFOUND}, /* slug of another status class */
        {418, "/problems/teapot", AH_E_BADREQ},
        {410, NULL, AH_E_GONE},
        {413, NULL, AH_E_TOOLARGE},
        {415, NULL, AH_E_MEDIATYPE},
        {501, NULL, AH_E_NOTIMPL},
        {502, NULL, AH_E_NETWORK},
        {504, NULL, AH_E_TIMEOUT},
        {500, NULL, AH_E_INTERNAL},
        {599, NULL, AH_E_INTERNAL},
        {302, NULL, AH_E_PROTOCOL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(problem_code_for(cases[i].status, cases[i].type), cases[i].code);
}

static void test_not_a_problem(void **state) {
    struct ah_api_error e = {0};
    /* Plain text from a proxy: the text is the detail. */
    assert_int_equal(parse(&e, 502, "Bad Gateway\n", NULL, -1), AH_E_NETWORK);
    assert_string_equal(e.detail, "Bad Gateway");
    assert_string_equal(e.title, ah_strerror(AH_E_NETWORK));
    assert_null(e.type);
    ah_api_error_clear(&e);
    /* Empty 429 (R's limiter) with a Retry-After header. */
    assert_int_equal(parse(&e, 429, NULL, NULL, 2000), AH_E_RATELIMIT);
    assert_int_equal(e.retry_after_ms, 2000);
    assert_non_null(e.detail);
    assert_null(e.body);
    ah_api_error_clear(&e);
    /* Binary junk: no detail from it, but a sensible one. */
    const char junk[] = {'\x01', '\x02', 'a', '\0'};
    assert_int_equal(problem_from_response(&e, 500, junk, 3, NULL, -1), AH_E_INTERNAL);
    assert_string_equal(e.detail, ah_strerror(AH_E_INTERNAL));
    ah_api_error_clear(&e);
    /* Other JSON with "message" and errors given as plain strings. */
    assert_int_equal(parse(&e, 400, "{\"message\":\"bad\",\"errors\":{\"x\":\"nope\"}}", NULL, -1),
                     AH_E_INVAL);
    assert_string_equal(e.detail, "bad");
    assert_string_equal(ah_api_error_field(&e, "x"), "nope");
    ah_api_error_clear(&e);
    /* A JSON array body is not a problem object. */
    assert_int_equal(parse(&e, 404, "[1,2]", NULL, -1), AH_E_NOTFOUND);
    ah_api_error_clear(&e);
}

static void test_refill_clears(void **state) {
    struct ah_api_error e = {0};
    parse(&e, 400, "{\"type\":\"/problems/validation\",\"errors\":{\"a\":[\"b\"]}}", "x", -1);
    e.attempts = 3;
    /* Filling again must not leak what was there, and keeps the attempt count. */
    problem_local(&e, AH_E_TIMEOUT, "took too long: %d ms", 300);
    assert_int_equal(e.code, AH_E_TIMEOUT);
    assert_int_equal(e.status, 0);
    assert_int_equal(e.n_errors, 0);
    assert_int_equal(e.attempts, 3);
    assert_string_equal(e.detail, "took too long: 300 ms");
    ah_api_error_clear(&e);
    ah_api_error_clear(NULL);
    assert_null(ah_api_error_field(NULL, "a"));
}

static void test_from_core(void **state) {
    struct ah_problem p = {0};
    problem_field(&p, "agents", "is required");
    problem_extra(&p, "currentStatus", json_string("running"));
    struct ah_api_error e = {0};
    problem_from_core(&e, &p);
    assert_int_equal(e.code, AH_E_INVAL);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "/problems/validation");
    assert_string_equal(ah_api_error_field(&e, "agents"), "is required");
    assert_string_equal(e.current_status, "running");
    ah_api_error_clear(&e);
    problem_clear(&p);
}

static void test_strerror_linked(void **state) {
    /* ah_strerror comes from core/errors.c, linked into the library (not duplicated). */
    assert_string_equal(ah_strerror(AH_E_NOTFOUND), "Not Found");
    assert_string_equal(ah_error_name(AH_E_CANCELED), "AH_E_CANCELED");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_problem),       cmocka_unit_test(test_conflict_extras),
        cmocka_unit_test(test_slugs_map_to_codes), cmocka_unit_test(test_not_a_problem),
        cmocka_unit_test(test_refill_clears),      cmocka_unit_test(test_from_core),
        cmocka_unit_test(test_strerror_linked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
