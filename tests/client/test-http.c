/*
 * test-http.c — libah-client against fake HTTP servers (fakesrv.c), for the behaviour the real
 * server does not show on demand:
 *   - a Problem answer becomes the error struct (request id, field errors, current status);
 *   - 429 + Retry-After is retried after the stated delay; 503 with back-off; no retry of
 *     other 4xx; readyz's 503 is an answer, not a reason to retry;
 *   - a POST keeps one Idempotency-Key across its retries, a new one per logical call, and is
 *     not retried without it;
 *   - total and connect failures: timeouts fire and are not retried, refused connections are;
 *   - connections are reused across calls; credentials go in Authorization;
 *   - SSE: a stream that drops mid-frame, resends the seam and goes idle is followed to its
 *     terminal event with nothing lost or repeated, Last-Event-ID carries the cursor; 404 ends it
 *     without calling back; 503 + Retry-After is waited out; a cancel token ends it.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/client/client_internal.h"
#include "fakesrv.h"

/* What a test's handler saw, shared with the test body. */
struct seen {
    pthread_mutex_t mu;
    char keys[8][64];          /* Idempotency-Key per request */
    char last_event_id[8][32]; /* Last-Event-ID per SSE connection ("-" when absent) */
    char auth[256];
    char path[8][256];
    int64_t at_ms[8]; /* monotonic arrival time per request */
    int n;
    int fail_first;    /* how many requests get the failure answer */
    volatile int stop; /* ends streaming handlers */
};

static struct seen seen;

static void seen_reset(int fail_first) {
    pthread_mutex_destroy(&seen.mu);
    memset(&seen, 0, sizeof(seen));
    pthread_mutex_init(&seen.mu, NULL);
    seen.fail_first = fail_first;
}

static int record(const struct fake_req *req) {
    pthread_mutex_lock(&seen.mu);
    int i = seen.n++;
    if (i < 8) {
        if (!fake_header(req, "Idempotency-Key", seen.keys[i], sizeof(seen.keys[i])))
            snprintf(seen.keys[i], sizeof(seen.keys[i]), "-");
        if (!fake_header(req, "Last-Event-ID", seen.last_event_id[i],
                         sizeof(seen.last_event_id[i])))
            snprintf(seen.last_event_id[i], sizeof(seen.last_event_id[i]), "-");
        seen.at_ms[i] = time_mono_ms();
        snprintf(seen.path[i], sizeof(seen.path[i]), "%s", req->path);
    }
    fake_header(req, "Authorization", seen.auth, sizeof(seen.auth));
    pthread_mutex_unlock(&seen.mu);
    return i;
}

static ah_client *client_for(struct fake_srv *srv) {
    char url[64];
    fake_srv_url(srv, url, sizeof(url));
    ah_client *c = NULL;
    assert_int_equal(ah_client_new(url, &c), 0);
    struct ah_retry_policy p = {
        .max_attempts = 4, .base_delay_ms = 20, .max_delay_ms = 100, .max_retry_after_ms = 5000};
    assert_int_equal(ah_client_set_retry(c, &p), 0);
    return c;
}

static const char ok_json[] = "{\"status\":\"ok\",\"timestamp\":\"2025-01-01T00:00:00.000Z\"}";

/* ---- Problem --------------------------------------------------------------------------------- */

static int h_problem(struct fake_srv *s, const struct fake_req *req, void *ud) {
    record(req);
    fake_reply(req, 409, "application/problem+json", "X-Request-Id: 01JREQ0000000000000000000A\r\n",
               "{\"type\":\"/problems/conflict\",\"title\":\"Conflict\",\"status\":409,"
               "\"detail\":\"cannot pause a session that is paused\",\"instance\":"
               "\"/api/v1/sessions/S1/pause\",\"currentStatus\":\"paused\"}");
    return 0;
}

static void test_problem_answer(void **state) {
    seen_reset(0);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_problem, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    struct ah_api_error e = {0};
    enum ah_session_status st = AH_STATUS_QUEUED;
    assert_int_equal(ah_client_pause_session(c, "S1", &st, &e), AH_E_CONFLICT);
    assert_int_equal(st, AH_STATUS_QUEUED); /* not written on failure */
    assert_int_equal(e.status, 409);
    assert_int_equal(e.attempts, 1); /* 409 is not retried */
    assert_string_equal(e.type, "/problems/conflict");
    assert_string_equal(e.current_status, "paused");
    assert_string_equal(e.request_id, "01JREQ0000000000000000000A");
    assert_string_equal(e.instance, "/api/v1/sessions/S1/pause");
    assert_int_equal(fake_srv_requests(srv), 1);
    ah_api_error_clear(&e);
    ah_client_free(c);
    fake_srv_stop(srv);
}

static int h_bad_request_with_fields(struct fake_srv *s, const struct fake_req *req, void *ud) {
    record(req);
    fake_reply(req, 400, "application/problem+json", NULL,
               "{\"type\":\"/problems/bad-request\",\"title\":\"Bad Request\",\"status\":400,"
               "\"errors\":{\"perPage\":[\"must be an integer from 1 to 200\"]}}");
    return 0;
}

/* The code of an answer does not depend on whether the caller asked for the details: field
 * errors make a 400 a validation failure either way. */
static void test_same_code_without_reterr(void **state) {
    seen_reset(0);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_bad_request_with_fields, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    struct ah_api_error e = {0};
    struct ah_session_list *l = NULL;
    assert_int_equal(ah_client_list_sessions(c, NULL, &l, &e), AH_E_INVAL);
    assert_string_equal(ah_api_error_field(&e, "perPage"), "must be an integer from 1 to 200");
    assert_int_equal(ah_client_list_sessions(c, NULL, &l, NULL), AH_E_INVAL);
    assert_null(l);
    ah_api_error_clear(&e);
    ah_client_free(c);
    fake_srv_stop(srv);
}

/* ---- retries --------------------------------------------------------------------------------- */

static int h_429_then_ok(struct fake_srv *s, const struct fake_req *req, void *ud) {
    int i = record(req);
    if (i < seen.fail_first)
        fake_reply(req, 429, "application/problem+json", "Retry-After: 1\r\n",
                   "{\"type\":\"/problems/rate-limited\",\"title\":\"Rate Limited\","
                   "\"status\":429,\"detail\":\"slow down\"}");
    else
        fake_reply(req, 200, "application/json", NULL, ok_json);
    return 0;
}

static void test_429_retry_after(void **state) {
    seen_reset(1);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_429_then_ok, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    int64_t t0 = time_mono_ms();
    assert_int_equal(ah_client_healthz(c, NULL), 0);
    int64_t took = time_mono_ms() - t0;
    assert_int_equal(fake_srv_requests(srv), 2);
    /* The second attempt came after the stated second (not the 20 ms back-off). */
    assert_true(seen.at_ms[1] - seen.at_ms[0] >= 990);
    assert_true(took < 4000);
    ah_client_free(c);
    fake_srv_stop(srv);
}

static void test_429_retry_after_too_long(void **state) {
    seen_reset(5);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_429_then_ok, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    struct ah_retry_policy p = {.max_attempts = 4,
                                .base_delay_ms = 20,
                                .max_delay_ms = 100,
                                .max_retry_after_ms = 500}; /* 1 s is more than we accept */
    ah_client_set_retry(c, &p);
    struct ah_api_error e = {0};
    assert_int_equal(ah_client_healthz(c, &e), AH_E_RATELIMIT);
    assert_int_equal(e.retry_after_ms, 1000);
    assert_int_equal(e.attempts, 1);
    assert_string_equal(e.detail, "slow down");
    ah_api_error_clear(&e);
    ah_client_free(c);
    fake_srv_stop(srv);
}

static int h_503_then_ok(struct fake_srv *s, const struct fake_req *req, void *ud) {
    int i = record(req);
    if (i < seen.fail_first)
        fake_reply(req, 503, "text/plain", NULL, "busy\n");
    else
        fake_reply(req, 200, "application/json", NULL, ok_json);
    return 0;
}

static void test_503_backoff(void **state) {
    seen_reset(2);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_503_then_ok, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    assert_int_equal(ah_client_healthz(c, NULL), 0);
    assert_int_equal(fake_srv_requests(srv), 3);
    /* equal jitter: the gaps are at least base/2 and 2*base/2 */
    assert_true(seen.at_ms[1] - seen.at_ms[0] >= 10);
    assert_true(seen.at_ms[2] - seen.at_ms[1] >= 20);
    ah_client_free(c);
    fake_srv_stop(srv);

    /* Always failing: gives up after max_attempts with the last answer. */
    seen_reset(100);
    assert_int_equal(fake_srv_start(h_503_then_ok, NULL, &srv), 0);
    c = client_for(srv);
    struct ah_api_error e = {0};
    assert_int_equal(ah_client_healthz(c, &e), AH_E_UNAVAIL);
    assert_int_equal(e.attempts, 4);
    assert_int_equal(fake_srv_requests(srv), 4);
    assert_string_equal(e.detail, "busy");
    ah_api_error_clear(&e);
    /* readyz: 503 means "not ready", an answer — never retried. */
    seen_reset(100);
    int before = fake_srv_requests(srv);
    assert_int_equal(ah_client_readyz(c, &e), AH_E_UNAVAIL);
    assert_int_equal(fake_srv_requests(srv), before + 1);
    ah_api_error_clear(&e);
    ah_client_free(c);
    fake_srv_stop(srv);
}

static int h_404(struct fake_srv *s, const struct fake_req *req, void *ud) {
    record(req);
    fake_reply(req, 404, "application/problem+json", NULL,
               "{\"type\":\"/problems/not-found\",\"title\":\"Not Found\",\"status\":404,"
               "\"detail\":\"no such session\"}");
    return 0;
}

static void test_no_retry_on_4xx(void **state) {
    seen_reset(0);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_404, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    struct ah_session *s = NULL;
    struct ah_api_error e = {0};
    assert_int_equal(ah_client_get_session(c, "nope", &s, &e), AH_E_NOTFOUND);
    assert_null(s);
    assert_int_equal(fake_srv_requests(srv), 1);
    assert_int_equal(e.attempts, 1);
    ah_api_error_clear(&e);
    ah_client_free(c);
    fake_srv_stop(srv);
}

static int h_post(struct fake_srv *s, const struct fake_req *req, void *ud) {
    int i = record(req);
    if (i < seen.fail_first) {
        fake_reply(req, 503, NULL, NULL, NULL);
        return 0;
    }
    fake_reply(req, 201, "application/json", NULL,
               "{\"id\":\"01J9Q0Z4YB6N8W2F3K5M7P9R1T\",\"session_ids\":"
               "[\"01J9Q0Z4YB6N8W2F3K5M7P9R1T\"],\"status\":\"queued\",\"links\":{}}");
    return 0;
}

static void test_post_idempotency_key(void **state) {
    seen_reset(2);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_post, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    struct ah_agent_spec agent = {.type = "scripted"};
    struct ah_task_spec spec = {.prompt = "p", .agents = &agent, .n_agents = 1};
    struct ah_task_created *t = NULL;
    assert_int_equal(ah_client_create_task(c, &spec, &t, NULL), 0);
    assert_string_equal(t->id, "01J9Q0Z4YB6N8W2F3K5M7P9R1T");
    ah_task_created_free(t);
    assert_int_equal(seen.n, 3);
    assert_true(ulid_valid(seen.keys[0]));
    assert_string_equal(seen.keys[0], seen.keys[1]); /* the same key on every retry */
    assert_string_equal(seen.keys[1], seen.keys[2]);
    /* A second logical call gets a new key. */
    seen.fail_first = 0;
    assert_int_equal(ah_client_create_task(c, &spec, &t, NULL), 0);
    ah_task_created_free(t);
    assert_int_equal(seen.n, 4);
    assert_string_not_equal(seen.keys[3], seen.keys[0]);
    /* GETs carry no key. */
    struct ah_session_list *l = NULL;
    ah_client_list_sessions(c, NULL, &l, NULL);
    ah_session_list_free(l);
    assert_string_equal(seen.keys[4], "-");
    /* Without keys, a POST that got an answer is not retried. */
    ah_client_set_idempotency(c, false);
    seen_reset(5);
    struct ah_api_error e = {0};
    assert_int_equal(ah_client_create_task(c, &spec, &t, &e), AH_E_UNAVAIL);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.keys[0], "-");
    ah_api_error_clear(&e);
    ah_client_free(c);
    fake_srv_stop(srv);
}

/* ---- timeouts, refused connections, reuse, auth ---------------------------------------------- */

static int h_slow(struct fake_srv *s, const struct fake_req *req, void *ud) {
    record(req);
    for (int i = 0; i < 30 && !seen.stop; i++)
        usleep(50000);
    fake_reply(req, 200, "application/json", NULL, ok_json);
    return 0;
}

static void test_timeout_fires(void **state) {
    seen_reset(0);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_slow, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    assert_int_equal(ah_client_set_timeouts(c, AH_EP_SESSIONS, -1, 300), 0);
    struct ah_session_list *l = NULL;
    struct ah_api_error e = {0};
    int64_t t0 = time_mono_ms();
    assert_int_equal(ah_client_list_sessions(c, NULL, &l, &e), AH_E_TIMEOUT);
    int64_t took = time_mono_ms() - t0;
    assert_true(took >= 250);
    assert_true(took < 1200);
    assert_int_equal(e.status, 0);
    assert_int_equal(e.attempts, 1); /* a deadline is not retried */
    assert_non_null(e.detail);
    ah_api_error_clear(&e);
    assert_int_equal(ah_client_set_timeouts(c, AH_EP_COUNT_, 1, 1), AH_E_INVAL);
    assert_int_equal(ah_client_set_timeouts(c, AH_EP_DEFAULT, -2, 1), AH_E_INVAL);
    seen.stop = 1;
    ah_client_free(c);
    fake_srv_stop(srv);
}

static void test_refused_is_retried(void **state) {
    /* A port nobody listens on: bind one, note it, close it. */
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_404, NULL, &srv), 0);
    char url[64];
    fake_srv_url(srv, url, sizeof(url));
    fake_srv_stop(srv);
    ah_client *c = NULL;
    assert_int_equal(ah_client_new(url, &c), 0);
    struct ah_retry_policy p = {
        .max_attempts = 3, .base_delay_ms = 10, .max_delay_ms = 20, .max_retry_after_ms = 0};
    ah_client_set_retry(c, &p);
    struct ah_api_error e = {0};
    assert_int_equal(ah_client_healthz(c, &e), AH_E_NETWORK);
    assert_int_equal(e.attempts, 3);
    assert_int_equal(e.status, 0);
    assert_non_null(strstr(e.detail, "/api/v1/healthz"));
    ah_api_error_clear(&e);
    ah_client_free(c);
}

static int h_ok(struct fake_srv *s, const struct fake_req *req, void *ud) {
    record(req);
    fake_reply(req, 200, "application/json", NULL, ok_json);
    return 0;
}

static void test_connection_reuse_and_auth(void **state) {
    seen_reset(0);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_ok, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    assert_int_equal(ah_client_set_api_key(c, "ahk_abc_secret"), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ah_client_healthz(c, NULL), 0);
    assert_int_equal(fake_srv_requests(srv), 5);
    assert_int_equal(fake_srv_connections(srv), 1); /* one keep-alive connection */
    assert_string_equal(seen.auth, "ApiKey ahk_abc_secret");
    assert_int_equal(ah_client_set_bearer(c, "eyJ.x.y"), 0);
    assert_int_equal(ah_client_healthz(c, NULL), 0);
    assert_string_equal(seen.auth, "Bearer eyJ.x.y");
    assert_int_equal(ah_client_set_bearer(c, "bad\r\nX-Evil: 1"), AH_E_INVAL);
    assert_int_equal(ah_client_set_bearer(c, NULL), 0);
    seen.auth[0] = '\0';
    assert_int_equal(ah_client_healthz(c, NULL), 0);
    assert_string_equal(seen.auth, "");
    ah_client_free(c);
    fake_srv_stop(srv);
}

static int h_raw(struct fake_srv *s, const struct fake_req *req, void *ud) {
    record(req);
    char body[4200];
    snprintf(body, sizeof(body), "{\"method\":\"%s\",\"path\":\"%s\",\"body\":%s}", req->method,
             req->path, req->body_len ? req->body : "null");
    fake_reply(req, 200, "application/json", NULL, body);
    return 0;
}

static void test_raw_request_and_escaping(void **state) {
    seen_reset(0);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_raw, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    int status = 0;
    char *body = NULL;
    assert_int_equal(
        ah_client_request(c, "PUT", "/api/v1/x?y=1", "{\"a\":1}", &status, &body, NULL), 0);
    assert_int_equal(status, 200);
    assert_string_equal(body, "{\"method\":\"PUT\",\"path\":\"/api/v1/x?y=1\",\"body\":{\"a\":1}}");
    free(body);
    assert_int_equal(ah_client_request(c, "GET", "no-slash", NULL, NULL, NULL, NULL), AH_E_INVAL);
    assert_int_equal(ah_client_request(c, "TRACE", "/x", NULL, NULL, NULL, NULL), AH_E_INVAL);
    /* Ids and query values are percent-encoded. */
    struct ah_api_error e = {0};
    struct ah_session *s = NULL;
    assert_int_equal(ah_client_get_session(c, "a b/../c", &s, &e), 0); /* any object parses */
    ah_session_free(s);
    assert_string_equal(seen.path[1], "/api/v1/sessions/a%20b%2F..%2Fc");
    struct ah_session_filter f = {.status = "running", .agent = "a&b=c", .page = 2};
    struct ah_session_list *l = NULL;
    ah_client_list_sessions(c, &f, &l, NULL); /* not a list: AH_E_PROTOCOL, fine */
    ah_session_list_free(l);
    assert_string_equal(seen.path[2], "/api/v1/sessions?status=running&agent=a%26b%3Dc&page=2");
    ah_api_error_clear(&e);
    ah_client_free(c);
    fake_srv_stop(srv);
}

static void test_bad_arguments(void **state) {
    ah_client *c = NULL;
    assert_int_equal(ah_client_new("ftp://x", &c), AH_E_INVAL);
    assert_int_equal(ah_client_new("http://", &c), AH_E_INVAL);
    assert_int_equal(ah_client_new("http://a b", &c), AH_E_INVAL);
    assert_int_equal(ah_client_new(NULL, &c), AH_E_INVAL);
    assert_null(c);
    assert_int_equal(ah_client_new("http://127.0.0.1:9/api/v1/", &c), 0);
    assert_string_equal(ah_client_base_url(c), "http://127.0.0.1:9");
    struct ah_api_error e = {0};
    assert_int_equal(ah_client_get_session(c, "", NULL, &e), AH_E_INVAL);
    assert_int_equal(ah_client_get_session(NULL, "x", NULL, NULL), AH_E_INVAL);
    assert_int_equal(ah_client_prompt_session(c, "x", NULL, NULL, &e), AH_E_INVAL);
    assert_int_equal(ah_client_stream_events(c, "x", NULL, NULL, NULL, NULL, &e), AH_E_INVAL);
    struct ah_stream_options o = {.after_seq = -1};
    assert_int_equal(ah_client_stream_events(c, "x", &o, (ah_event_fn)1, NULL, NULL, &e),
                     AH_E_INVAL);
    assert_int_equal(ah_client_set_client_cert(c, NULL, "key.pem"), AH_E_INVAL);
    struct ah_retry_policy p = {.max_attempts = 0};
    assert_int_equal(ah_client_set_retry(c, &p), AH_E_INVAL);
    /* Arguments that make the URL too long are invalid arguments, whichever part grows it
     * (nothing is sent: port 9 is not listening) */
    char big[9000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct ah_session_list *l = NULL;
    struct ah_session_filter f = {.status = big, .agent = big};
    assert_int_equal(ah_client_list_sessions(c, &f, &l, &e), AH_E_INVAL);
    assert_string_equal(e.detail, "the URL is too long");
    assert_int_equal(ah_client_list_sessions(c, &f, &l, NULL), AH_E_INVAL);
    struct ah_session *s = NULL;
    assert_int_equal(ah_client_get_session(c, big, &s, &e), AH_E_INVAL);
    assert_null(l);
    assert_null(s);
    ah_api_error_clear(&e);
    ah_client_free(c);
    ah_client_free(NULL);
}

/* ---- SSE ------------------------------------------------------------------------------------- */

static const char *frame(char *buf, size_t sz, int seq, const char *type, const char *extra) {
    snprintf(buf, sz,
             "id: %d\nevent: %s\ndata: {\"type\":\"%s\",\"seq\":%d,\"sessionId\":"
             "\"S\",\"ts\":\"2025-01-01T00:00:00.000Z\"%s}\n\n",
             seq, type, type, seq, extra ? extra : "");
    return buf;
}

static bool sse_head(const struct fake_req *req) {
    const char *h = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
    return fake_write(req, h, strlen(h));
}

/* Connection 1: events 1-3, then half of event 4 and a drop.
 * Connection 2: (Last-Event-ID 3) resends 3 (the seam), 4 and 5 with CRLF line ends, comments
 *               and a two-line data field, then goes silent (idle time-out on the client).
 * Connection 3: (Last-Event-ID 5) the terminal status event 6. */
static int h_sse_resume(struct fake_srv *s, const struct fake_req *req, void *ud) {
    int i = record(req);
    char f[512];
    sse_head(req);
    if (i == 0) {
        fake_write(req, ": hello\n\n", 9);
        for (int seq = 1; seq <= 3; seq++) {
            frame(f, sizeof(f), seq, seq == 1 ? "status" : "log",
                  seq == 1 ? ",\"status\":\"running\"" : ",\"level\":\"info\",\"message\":\"m\"");
            fake_write(req, f, strlen(f));
        }
        frame(f, sizeof(f), 4, "thought", ",\"thought\":\"cut\"");
        fake_write(req, f, strlen(f) / 2);
        return 1;
    }
    if (i == 1) {
        frame(f, sizeof(f), 3, "log", ",\"level\":\"info\",\"message\":\"again\"");
        fake_write(req, f, strlen(f));
        const char *crlf = ": keep-alive\r\n\r\nid: 4\r\nevent: thought\r\ndata: {\"type\":"
                           "\"thought\",\"seq\":4,\r\ndata: \"thought\":\"whole\"}\r\n\r\n";
        fake_write(req, crlf, strlen(crlf));
        frame(f, sizeof(f), 5, "file_edit", ",\"file_path\":\"a.c\"");
        fake_write(req, f, strlen(f));
        for (int k = 0; k < 60 && !seen.stop; k++) /* silence: no keep-alive */
            usleep(50000);
        return 1;
    }
    frame(f, sizeof(f), 6, "status", ",\"status\":\"completed\"");
    fake_write(req, f, strlen(f));
    for (int k = 0; k < 60 && !seen.stop; k++) /* the client closes after the terminal event */
        usleep(50000);
    return 1;
}

struct collected {
    int64_t seqs[64];
    char types[64][16];
    int n;
    int stop_after;
};

static int on_ev(void *ud, const struct ah_event *ev) {
    struct collected *c = ud;
    if (c->n < 64) {
        c->seqs[c->n] = ev->seq;
        snprintf(c->types[c->n], sizeof(c->types[0]), "%s", ev->type);
    }
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static void test_sse_resume_loses_and_repeats_nothing(void **state) {
    seen_reset(0);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_sse_resume, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    assert_int_equal(ah_client_set_timeouts(c, AH_EP_STREAM, -1, 1000), 0); /* idle 1 s */
    struct collected got = {0};
    int64_t last = -1;
    struct ah_api_error e = {0};
    int rc = ah_client_stream_events(c, "S", NULL, on_ev, &got, &last, &e);
    assert_int_equal(rc, 0);
    assert_int_equal(e.code, 0); /* untouched on success */
    assert_int_equal(got.n, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(got.seqs[i], i + 1);
    assert_string_equal(got.types[3], "thought");
    assert_string_equal(got.types[5], "status");
    assert_int_equal(last, 6);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.last_event_id[0], "-");
    assert_string_equal(seen.last_event_id[1], "3");
    assert_string_equal(seen.last_event_id[2], "5");
    seen.stop = 1;
    ah_client_free(c);
    fake_srv_stop(srv);
}

static int h_sse_after(struct fake_srv *s, const struct fake_req *req, void *ud) {
    record(req);
    char f[512];
    sse_head(req);
    /* A server that ignores the cursor and replays everything: the client must drop 1..3. */
    for (int seq = 1; seq <= 5; seq++) {
        frame(f, sizeof(f), seq, seq == 5 ? "status" : "log",
              seq == 5 ? ",\"status\":\"cancelled\"" : NULL);
        fake_write(req, f, strlen(f));
    }
    return 1;
}

static void test_sse_after_seq_and_callback_stop(void **state) {
    seen_reset(0);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_sse_after, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    struct collected got = {0};
    struct ah_stream_options o = {.after_seq = 3};
    assert_int_equal(ah_client_stream_events(c, "S", &o, on_ev, &got, NULL, NULL), 0);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.seqs[0], 4);
    assert_int_equal(got.seqs[1], 5);
    assert_string_equal(seen.last_event_id[0], "3");
    /* The callback can stop the stream. */
    struct collected stop = {.stop_after = 2};
    int64_t last = 0;
    struct ah_api_error e = {0};
    assert_int_equal(ah_client_stream_events(c, "S", NULL, on_ev, &stop, &last, &e), AH_E_CANCELED);
    assert_int_equal(stop.n, 2);
    assert_int_equal(last, 2);
    ah_api_error_clear(&e);
    ah_client_free(c);
    fake_srv_stop(srv);
}

static int h_sse_404(struct fake_srv *s, const struct fake_req *req, void *ud) {
    int i = record(req);
    if (i < seen.fail_first) {
        fake_reply(req, 503, "application/problem+json", "Retry-After: 1\r\n",
                   "{\"type\":\"/problems/unavailable\",\"title\":\"Unavailable\","
                   "\"status\":503,\"detail\":\"starting\"}");
        return 0;
    }
    if (seen.fail_first == 0) {
        fake_reply(req, 404, "application/problem+json", NULL,
                   "{\"type\":\"/problems/not-found\",\"title\":\"Not Found\","
                   "\"status\":404,\"detail\":\"no such session\"}");
        return 0;
    }
    char f[512];
    sse_head(req);
    frame(f, sizeof(f), 1, "status", ",\"status\":\"failed\"");
    fake_write(req, f, strlen(f));
    return 1;
}

static void test_sse_errors(void **state) {
    seen_reset(0);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_sse_404, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    struct collected got = {0};
    struct ah_api_error e = {0};
    assert_int_equal(ah_client_stream_events(c, "missing", NULL, on_ev, &got, NULL, &e),
                     AH_E_NOTFOUND);
    assert_int_equal(got.n, 0); /* a failed call never calls back */
    assert_int_equal(e.status, 404);
    assert_int_equal(seen.n, 1);
    ah_api_error_clear(&e);
    /* 503 + Retry-After: 1 is waited out, then the stream works. */
    seen_reset(1);
    int64_t t0 = time_mono_ms();
    assert_int_equal(ah_client_stream_events(c, "S", NULL, on_ev, &got, NULL, &e), 0);
    assert_true(time_mono_ms() - t0 >= 990);
    assert_int_equal(got.n, 1);
    assert_int_equal(seen.n, 2);
    ah_client_free(c);
    fake_srv_stop(srv);
}

static int h_sse_forever(struct fake_srv *s, const struct fake_req *req, void *ud) {
    record(req);
    sse_head(req);
    while (!seen.stop && fake_write(req, ": keep-alive\n\n", 14))
        usleep(20000);
    return 1;
}

static void *cancel_later(void *arg) {
    usleep(300000);
    ah_cancel_trigger(arg);
    return NULL;
}

static void test_sse_cancel(void **state) {
    seen_reset(0);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_sse_forever, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    ah_cancel *k = NULL;
    assert_int_equal(ah_cancel_new(&k), 0);
    struct ah_stream_options o = {.cancel = k};
    struct collected got = {0};
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, k);
    int64_t t0 = time_mono_ms();
    assert_int_equal(ah_client_stream_events(c, "S", &o, on_ev, &got, NULL, NULL), AH_E_CANCELED);
    int64_t took = time_mono_ms() - t0;
    pthread_join(t, NULL);
    assert_true(took >= 250);
    assert_true(took < 3000); /* curl's progress callback runs at least once a second */
    assert_int_equal(got.n, 0);
    seen.stop = 1;
    ah_cancel_free(k);
    ah_client_free(c);
    fake_srv_stop(srv);
}

/* One client, many threads: every call succeeds and connections are pooled, not one per call. */
struct hammer {
    ah_client *c;
    int failures;
};

static void *hammer_main(void *arg) {
    struct hammer *h = arg;
    for (int i = 0; i < 25; i++) {
        struct ah_version *v = NULL;
        if (ah_client_healthz(h->c, NULL) != 0)
            __atomic_add_fetch(&h->failures, 1, __ATOMIC_SEQ_CST);
        if (ah_client_version(h->c, &v, NULL) != 0) /* any object parses as a version */
            __atomic_add_fetch(&h->failures, 1, __ATOMIC_SEQ_CST);
        ah_version_free(v);
        if (i == 10) /* settings change while others are mid-call */
            ah_client_set_api_key(h->c, i % 2 ? "ahk_a_b" : "ahk_c_d");
    }
    return NULL;
}

static void test_threads_share_one_client(void **state) {
    seen_reset(0);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_ok, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    struct hammer h = {c, 0};
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, hammer_main, &h);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(h.failures, 0);
    assert_int_equal(fake_srv_requests(srv), 8 * 25 * 2);
    assert_true(fake_srv_connections(srv) <= 16); /* reused, not 400 */
    ah_client_free(c);
    fake_srv_stop(srv);
}

/* A log callback sees the retries. */
static int log_lines;
static void on_log(void *ud, enum ah_log_level level, const char *msg) {
    if (strstr(msg, "retrying"))
        __atomic_add_fetch(&log_lines, 1, __ATOMIC_SEQ_CST);
}

static void test_log_callback(void **state) {
    seen_reset(2);
    struct fake_srv *srv;
    assert_int_equal(fake_srv_start(h_503_then_ok, NULL, &srv), 0);
    ah_client *c = client_for(srv);
    assert_int_equal(ah_client_set_log(c, on_log, NULL, AH_LOG_DEBUG), 0);
    assert_int_equal(ah_client_healthz(c, NULL), 0);
    assert_int_equal(log_lines, 2);
    ah_client_free(c);
    fake_srv_stop(srv);
}

int main(void) {
    pthread_mutex_init(&seen.mu, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_problem_answer),
        cmocka_unit_test(test_same_code_without_reterr),
        cmocka_unit_test(test_429_retry_after),
        cmocka_unit_test(test_429_retry_after_too_long),
        cmocka_unit_test(test_503_backoff),
        cmocka_unit_test(test_no_retry_on_4xx),
        cmocka_unit_test(test_post_idempotency_key),
        cmocka_unit_test(test_timeout_fires),
        cmocka_unit_test(test_refused_is_retried),
        cmocka_unit_test(test_connection_reuse_and_auth),
        cmocka_unit_test(test_raw_request_and_escaping),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_sse_resume_loses_and_repeats_nothing),
        cmocka_unit_test(test_sse_after_seq_and_callback_stop),
        cmocka_unit_test(test_sse_errors),
        cmocka_unit_test(test_sse_cancel),
        cmocka_unit_test(test_log_callback),
        cmocka_unit_test(test_threads_share_one_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
