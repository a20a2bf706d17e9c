/*
 * test-foreign.c — libah-client and the `ah` CLI against a server that is not ours but speaks
 * the API the way the upstream mock server does (issue 10, item 8), played by fakesrv.c:
 *   - SSE frames without `id:`, and data without `type` (`event: status` +
 *     `{"sessionId","status","ts"}`): the stream ends after the terminal status, it does not
 *     reconnect forever;
 *   - a stream that closes without a terminal event and without ids, for a session that has
 *     ended: the stream ends (nothing to resume from), once;
 *   - 204 to a stream request (D11: ended, nothing after the cursor) ends the follow;
 *   - an answer of an unexpected shape is AH_E_PROTOCOL, and `ah` says "unexpected answer from
 *     the server" with exit code 6, not "cannot reach" (5).
 * A guard answers 404 once a handler saw too many requests, so a client that loops fails the
 * test instead of hanging it.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/client/client_internal.h"
#include "fakesrv.h"

#define SID "01HVZ6K9T1N8S6M3V3Q3F0X5B7"
#define MAX_STREAMS 8 /* stream requests before the guard answers 404 */

/* What the fake server does, chosen by each test. */
enum mode {
    M_STATUS_NO_TYPE,     /* event: status, no id, no type, terminal */
    M_CLOSE_NO_IDS,       /* running events without ids, then a clean close */
    M_204,                /* 204 to the stream request */
    M_STREAM_JSON,        /* a JSON page where a stream was asked for */
    M_SESSION_HTML,       /* GET /sessions/{id} answers an HTML page */
    M_SESSION_WRONG_JSON, /* GET /sessions/{id} answers a JSON array */
};

static struct {
    pthread_mutex_t mu;
    enum mode mode;
    int streams;  /* stream requests seen */
    int sessions; /* GET /sessions/{id} seen */
} srv_state = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void reset(enum mode m) {
    pthread_mutex_lock(&srv_state.mu);
    srv_state.mode = m;
    srv_state.streams = srv_state.sessions = 0;
    pthread_mutex_unlock(&srv_state.mu);
}

static const char session_completed[] =
    "{\"id\":\"" SID "\",\"tenantId\":\"acme\",\"projectId\":\"storefront\",\"status\":"
    "\"completed\",\"createdAt\":\"2025-01-01T12:00:00Z\",\"prompt\":\"Default test session\","
    "\"repo\":{\"mode\":\"git\",\"url\":\"https://github.com/test/repo.git\",\"branch\":\"main\"},"
    "\"agent\":{\"type\":\"claude-code\",\"version\":\"latest\"},\"runtime\":{\"type\":"
    "\"devcontainer\"}}";

static bool sse_head(const struct fake_req *req) {
    const char *h = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
    return fake_write(req, h, strlen(h));
}

static bool sse_write(const struct fake_req *req, const char *frame) {
    return fake_write(req, frame, strlen(frame));
}

static int handler(struct fake_srv *s, const struct fake_req *req, void *ud) {
    pthread_mutex_lock(&srv_state.mu);
    enum mode m = srv_state.mode;
    bool stream = strstr(req->path, "/events") != NULL;
    int n = stream ? ++srv_state.streams : ++srv_state.sessions;
    pthread_mutex_unlock(&srv_state.mu);
    if (n > MAX_STREAMS) {
        fake_reply(req, 404, "application/json", NULL, "{\"status\":404}");
        return 1;
    }
    if (!stream) {
        if (m == M_SESSION_HTML)
            fake_reply(req, 200, "text/html", NULL, "<html><body>It works!</body></html>");
        else if (m == M_SESSION_WRONG_JSON)
            fake_reply(req, 200, "application/json", NULL, "[1,2,3]");
        else
            fake_reply(req, 200, "application/json", NULL, session_completed);
        return 0;
    }
    switch (m) {
    case M_STATUS_NO_TYPE:
        sse_head(req);
        sse_write(req, "event: status\ndata: {\"sessionId\":\"" SID "\",\"status\":\"completed\","
                       "\"ts\":\"2025-01-01T12:00:00.000Z\"}\n\n");
        return 1; /* the mock ends the response after it */
    case M_CLOSE_NO_IDS:
        sse_head(req);
        sse_write(req, "event: thinking\ndata: {\"sessionId\":\"" SID "\",\"thought\":\"plan\","
                       "\"ts\":\"2025-01-01T12:00:00.000Z\"}\n\n");
        sse_write(req, "event: tool_execution\ndata: {\"sessionId\":\"" SID "\",\"tool_name\":"
                       "\"grep\",\"tool_output\":\"3\",\"tool_status\":\"success\"}\n\n");
        sse_write(req, "event: session\ndata: {\"type\":\"log\",\"level\":\"info\",\"message\":"
                       "\"hi\"}\n\n");
        return 1;
    case M_204:
        fake_reply(req, 204, NULL, NULL, NULL);
        return 1;
    case M_STREAM_JSON:
    default:
        fake_reply(req, 200, "application/json", NULL, "{\"items\":[],\"total\":0}");
        return 1;
    }
}

struct collected {
    char types[16][24];
    int n;
};

static int on_ev(void *ud, const struct ah_event *ev) {
    struct collected *c = ud;
    if (c->n < 16)
        snprintf(c->types[c->n], sizeof(c->types[0]), "%s", ev->type);
    c->n++;
    return 0;
}

static ah_client *client_for(struct fake_srv *srv) {
    char url[64];
    fake_srv_url(srv, url, sizeof(url));
    ah_client *c = NULL;
    assert_int_equal(ah_client_new(url, &c), 0);
    struct ah_retry_policy p = {
        .max_attempts = 3, .base_delay_ms = 20, .max_delay_ms = 100, .max_retry_after_ms = 1000};
    assert_int_equal(ah_client_set_retry(c, &p), 0);
    return c;
}

static struct fake_srv *srv;

static int setup(void **state) {
    return fake_srv_start(handler, NULL, &srv);
}

static int teardown(void **state) {
    fake_srv_stop(srv);
    return 0;
}

/* ---- libah-client ---------------------------------------------------------------------------- */

static void test_status_without_type_or_id_ends_the_stream(void **state) {
    reset(M_STATUS_NO_TYPE);
    ah_client *c = client_for(srv);
    struct collected got = {0};
    struct ah_api_error e = {0};
    int64_t last = -1;
    assert_int_equal(ah_client_stream_events(c, SID, NULL, on_ev, &got, &last, &e), 0);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.types[0], "status"); /* from the event name */
    assert_int_equal(last, 0);                   /* no seq anywhere */
    assert_int_equal(srv_state.streams, 1);
    ah_client_free(c);
}

static void test_close_without_ids_for_an_ended_session(void **state) {
    reset(M_CLOSE_NO_IDS);
    ah_client *c = client_for(srv);
    struct collected got = {0};
    struct ah_api_error e = {0};
    assert_int_equal(ah_client_stream_events(c, SID, NULL, on_ev, &got, NULL, &e), 0);
    assert_int_equal(got.n, 3); /* delivered once, not replayed by reconnects */
    assert_string_equal(got.types[0], "thought");
    assert_string_equal(got.types[1], "tool_result");
    assert_string_equal(got.types[2], "log");
    assert_int_equal(srv_state.streams, 1);
    assert_int_equal(srv_state.sessions, 1); /* asked once whether the session is over */
    ah_client_free(c);
}

static void test_204_ends_the_stream(void **state) {
    reset(M_204);
    ah_client *c = client_for(srv);
    struct collected got = {0};
    struct ah_api_error e = {0};
    struct ah_stream_options o = {.after_seq = 7};
    int64_t last = -1;
    assert_int_equal(ah_client_stream_events(c, SID, &o, on_ev, &got, &last, &e), 0);
    assert_int_equal(got.n, 0);
    assert_int_equal(last, 7);
    assert_int_equal(srv_state.streams, 1);
    ah_client_free(c);
}

static void test_unexpected_shapes(void **state) {
    ah_client *c = client_for(srv);
    struct ah_api_error e = {0};
    struct ah_session *s = NULL;
    reset(M_SESSION_HTML);
    assert_int_equal(ah_client_get_session(c, SID, &s, &e), AH_E_PROTOCOL);
    assert_null(s);
    ah_api_error_clear(&e);
    reset(M_SESSION_WRONG_JSON);
    assert_int_equal(ah_client_get_session(c, SID, &s, &e), AH_E_PROTOCOL);
    assert_null(s);
    ah_api_error_clear(&e);
    reset(M_STREAM_JSON);
    struct collected got = {0};
    assert_int_equal(ah_client_stream_events(c, SID, NULL, on_ev, &got, NULL, &e), AH_E_PROTOCOL);
    assert_int_equal(e.status, 200);
    assert_int_equal(srv_state.streams, 1); /* not retried */
    ah_api_error_clear(&e);
    ah_client_free(c);
}

/* ---- the ah CLI ------------------------------------------------------------------------------ */

struct run {
    int code;
    char out[8192], err[8192];
};

static void slurp(const char *path, char *buf, size_t sz) {
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sz - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}

/* Runs `ah ARGS… --remote-server <fake>` with no config file and no AH_* settings; kills it
 * after 30 s (a follow that never ends fails the test). */
static void run_ah(struct run *r, const char *a1, const char *a2, const char *a3, const char *a4) {
    char url[64], dir[] = "/tmp/ah-foreign-XXXXXX", out[64], err[64], xdg[80], home[80];
    fake_srv_url(srv, url, sizeof(url));
    assert_non_null(mkdtemp(dir));
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(err, sizeof(err), "%s/err", dir);
    snprintf(xdg, sizeof(xdg), "XDG_CONFIG_HOME=%s", dir);
    snprintf(home, sizeof(home), "HOME=%s", dir);
    char *argv[] = {AH_BIN, (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL, NULL, NULL};
    int i = a4 ? 5 : 4;
    argv[i++] = "--remote-server";
    argv[i] = url;
    char *envp[] = {xdg, home, "PATH=/usr/bin:/bin", "NO_COLOR=1", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, AH_BIN, &fa, NULL, argv, envp), 0);
    posix_spawn_file_actions_destroy(&fa);
    int st = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 30) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("ah %s %s did not end in 30 s", a1, a2);
        }
        usleep(20000);
    }
    r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    slurp(out, r->out, sizeof(r->out));
    slurp(err, r->err, sizeof(r->err));
    unlink(out);
    unlink(err);
    rmdir(dir);
}

static void test_cli_follow_ends(void **state) {
    struct run r;
    reset(M_STATUS_NO_TYPE);
    run_ah(&r, "session", "events", SID, "--follow");
    assert_int_equal(r.code, 0);         /* the session completed */
    assert_non_null(strstr(r.out, "completed"));
    assert_int_equal(srv_state.streams, 1);
    reset(M_CLOSE_NO_IDS);
    run_ah(&r, "session", "events", SID, "--follow");
    assert_int_equal(r.code, 0);
    assert_int_equal(srv_state.streams, 1);
    reset(M_204);
    run_ah(&r, "session", "events", SID, "--follow");
    assert_int_equal(r.code, 0);
    assert_int_equal(srv_state.streams, 1);
}

static void test_cli_unexpected_answer_is_exit_6(void **state) {
    struct run r;
    reset(M_SESSION_HTML);
    run_ah(&r, "session", "show", SID, NULL);
    assert_int_equal(r.code, 6);
    assert_non_null(strstr(r.err, "unexpected answer from the server"));
    assert_null(strstr(r.err, "cannot reach"));
    reset(M_SESSION_WRONG_JSON);
    run_ah(&r, "session", "show", SID, NULL);
    assert_int_equal(r.code, 6);
    assert_non_null(strstr(r.err, "unexpected answer from the server"));
    reset(M_STREAM_JSON);
    run_ah(&r, "session", "events", SID, "--follow");
    assert_int_equal(r.code, 6);
    assert_non_null(strstr(r.err, "unexpected answer from the server"));
    assert_non_null(strstr(r.err, "instead of an event stream"));
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_without_type_or_id_ends_the_stream),
        cmocka_unit_test(test_close_without_ids_for_an_ended_session),
        cmocka_unit_test(test_204_ends_the_stream),
        cmocka_unit_test(test_unexpected_shapes),
        cmocka_unit_test(test_cli_follow_ends),
        cmocka_unit_test(test_cli_unexpected_answer_is_exit_6),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
