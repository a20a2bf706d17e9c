/* test-later.c — answers that come later (http.h http_later): a handler defers, the connection
 * waits suspended without holding the server's only thread (another request is served
 * meanwhile), the answer sent from another thread reaches the client with the handler's status;
 * a problem answer; a server that stops answers what is still pending with 503; http_loopback
 * waits for the answer. On a real server on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
/* cmocka.h needs the four above first */
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../src/http/http.h"

/* The handler's later, handed to the test's thread. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct http_later *pending;

static void deferring(struct http_request *req, struct http_response *res) {
    struct http_later *l = http_later(req, res);
    assert_non_null(l);
    pthread_mutex_lock(&mu);
    pending = l;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void at_once(struct http_request *req, struct http_response *res) {
    http_json(req, res, 200, json_pack("{s:b}", "now", 1));
}

static struct http_later *wait_pending(void) {
    pthread_mutex_lock(&mu);
    while (!pending)
        pthread_cond_wait(&cv, &mu);
    struct http_later *l = pending;
    pending = NULL;
    pthread_mutex_unlock(&mu);
    return l;
}

static int dial(int port, const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    return fd;
}

/* The whole answer (the server closes: Connection: close). */
static char *read_all(int fd) {
    size_t cap = 65536, n = 0;
    char *buf = calloc(1, cap);
    ssize_t k;
    while ((k = read(fd, buf + n, cap - n - 1)) > 0)
        n += (size_t)k;
    buf[n] = '\0';
    close(fd);
    return buf;
}

static struct router *make_router(void) {
    struct router *r = router_new();
    assert_non_null(r);
    assert_int_equal(router_add(r, "GET", "/later", deferring, NULL, 0, 0), 0);
    assert_int_equal(router_add(r, "GET", "/now", at_once, NULL, 0, 0), 0);
    return r;
}

static struct http_server *start(struct router *r) {
    struct http_config hc = {.bind = "127.0.0.1", .max_body = 1024, .threads = 1,
                             .shutdown_grace_ms = 2000, .idle_timeout_ms = 30000};
    struct http_server *s = NULL;
    struct ah_problem p = {0};
    assert_int_equal(http_server_start(&hc, r, &s, &p), 0);
    return s;
}

static void test_answer_and_problem(void **state) {
    struct router *r = make_router();
    struct http_server *s = start(r);
    int port = http_server_port(s);

    int fd = dial(port, "/later");
    struct http_later *l = wait_pending();
    /* the only server thread is free: another request is answered meanwhile */
    char *now = read_all(dial(port, "/now"));
    assert_non_null(strstr(now, "HTTP/1.1 200"));
    free(now);
    struct http_response res = {.status = 201, .body = strdup("{\"late\":true}"),
                                .body_len = 13, .content_type = "application/json"};
    http_later_answer(l, &res);
    assert_null(res.body); /* taken */
    char *got = read_all(fd);
    assert_non_null(strstr(got, "HTTP/1.1 201"));
    assert_non_null(strstr(got, "{\"late\":true}"));
    free(got);

    fd = dial(port, "/later");
    l = wait_pending();
    struct ah_problem p = {0};
    problem_set(&p, AH_E_TIMEOUT, "executor x did not answer");
    http_later_fail(l, &p);
    got = read_all(fd);
    assert_non_null(strstr(got, "HTTP/1.1 504"));
    assert_non_null(strstr(got, "executor x did not answer"));
    assert_non_null(strstr(got, "\"instance\":\"/later\""));
    free(got);

    fd = dial(port, "/later");
    http_later_drop(wait_pending());
    got = read_all(fd);
    assert_non_null(strstr(got, "HTTP/1.1 503"));
    free(got);

    assert_int_equal(http_server_stop(s), 0);
    router_free(r);
}

static void *stop_main(void *arg) {
    http_server_stop(arg);
    return NULL;
}

static void test_stop_answers_pending(void **state) {
    struct router *r = make_router();
    struct http_server *s = start(r);
    int fd = dial(http_server_port(s), "/later");
    struct http_later *l = wait_pending();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stop_main, s), 0);
    char *got = read_all(fd); /* answered by the stop, not by us */
    assert_non_null(strstr(got, "HTTP/1.1 503"));
    assert_non_null(strstr(got, "stopping"));
    free(got);
    pthread_join(t, NULL);
    struct http_response res = {.status = 200, .body = strdup("late"), .body_len = 4};
    http_later_answer(l, &res); /* too late: dropped, nothing leaks */
    router_free(r);
}

static void *answer_main(void *arg) {
    struct http_later *l = wait_pending();
    struct http_response res = {.status = 200, .json = json_pack("{s:i}", "n", 7)};
    http_later_answer(l, &res);
    return arg;
}

static void test_loopback_waits(void **state) {
    struct router *r = make_router();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, answer_main, NULL), 0);
    struct http_loopback_request lr = {.method = "GET", .target = "/later"};
    struct http_request req;
    struct http_response res;
    assert_int_equal(http_loopback(r, &lr, &req, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "{\"n\":7}");
    http_loopback_done(&req, &res);
    pthread_join(t, NULL);
    router_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_and_problem),
        cmocka_unit_test(test_stop_answers_pending),
        cmocka_unit_test(test_loopback_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
