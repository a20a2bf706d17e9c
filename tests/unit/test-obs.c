/* obs/ (issue 18): sharded counters summed across threads, gauges that go down, histograms
 * rendered cumulatively with +Inf = count, the text format's escaping, W3C traceparent parsing,
 * and the logger's per-thread trace context (D48). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/obs/obs.h"

static struct obs_family *hits;

static void *worker(void *arg) {
    for (int i = 0; i < 100000; i++)
        obs_add(hits, (size_t)(i & 1), 1);
    return arg;
}

static void test_counters_across_threads(void **state) {
    (void)state;
    static const char *const labels[] = {"k=\"a\"", "k=\"b\""};
    hits = obs_register("t_hits_total", "hits", OBS_COUNTER, labels, 2, NULL, 0);
    assert_non_null(hits);
    assert_null(obs_register("t_hits_total", "again", OBS_COUNTER, labels, 2, NULL, 0));
    assert_null(obs_register("bad name", "x", OBS_COUNTER, NULL, 1, NULL, 0));
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(obs_value(hits, 0), 400000);
    assert_int_equal(obs_value(hits, 1), 400000);
    obs_add(NULL, 0, 1); /* a family that failed to register is a no-op */

    struct obs_family *g = obs_register1("t_gauge", "g", OBS_GAUGE, NULL, 0);
    obs_add(g, 0, 3);
    obs_add(g, 0, -5);
    assert_int_equal(obs_value(g, 0), -2);
}

static void test_histogram_render(void **state) {
    (void)state;
    static const double b[] = {0.1, 1};
    static const char *const labels[] = {"route=\"/a\\\"b\""};
    struct obs_family *h = obs_register("t_secs", "line\nbreak \\ help", OBS_HISTOGRAM, labels, 1,
                                        b, 2);
    obs_observe(h, 0, 0.05);
    obs_observe(h, 0, 0.5);
    obs_observe(h, 0, 0.5);
    obs_observe(h, 0, 7);
    struct ah_buf out = {0};
    assert_int_equal(obs_render(&out), 0);
    assert_non_null(strstr(out.p, "# HELP t_secs line\\nbreak \\\\ help\n# TYPE t_secs histogram\n"));
    assert_non_null(strstr(out.p, "t_secs_bucket{route=\"/a\\\"b\",le=\"0.1\"} 1\n"));
    assert_non_null(strstr(out.p, "t_secs_bucket{route=\"/a\\\"b\",le=\"1\"} 3\n"));
    assert_non_null(strstr(out.p, "t_secs_bucket{route=\"/a\\\"b\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(out.p, "t_secs_sum{route=\"/a\\\"b\"} 8.05\n"));
    assert_non_null(strstr(out.p, "t_secs_count{route=\"/a\\\"b\"} 4\n"));
    assert_non_null(strstr(out.p, "t_gauge -2\n"));
    ah_buf_clear(&out);
    char esc[32];
    obs_label_escape(esc, sizeof(esc), "a\"b\\c\nd");
    assert_string_equal(esc, "a\\\"b\\\\c\\nd");
    assert_string_equal(obs_status_class(204), "2xx");
    assert_string_equal(obs_status_class(599), "5xx");
}

static void test_traceparent(void **state) {
    (void)state;
    struct obs_trace t;
    assert_int_equal(
        obs_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t), 0);
    assert_string_equal(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(t.parent_id, "00f067aa0ba902b7");
    assert_int_equal(t.flags, 1);
    const char *bad[] = {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                         "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                         "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                         "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                         "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                         "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_int_equal(obs_traceparent_parse(bad[i], &t), AH_E_INVAL);
    assert_int_equal(
        obs_traceparent_parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x", &t), 0);

    struct obs_trace a, b;
    assert_int_equal(obs_trace_start(NULL, &a), 0);
    assert_int_equal(obs_trace_start(NULL, &b), 0);
    assert_string_not_equal(a.trace_id, b.trace_id);
    assert_int_equal(strlen(a.span_id), 16);
    char tp[56];
    obs_traceparent_format(&a, tp);
    assert_int_equal(obs_trace_start(tp, &b), 0);
    assert_string_equal(b.trace_id, a.trace_id);
    assert_string_equal(b.parent_id, a.span_id);
    assert_string_not_equal(b.span_id, a.span_id);
}

static void test_log_carries_the_trace(void **state) {
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    log_setup(p[1], LOG_INFO);
    log_trace_set("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    log_msg(LOG_INFO, "inside");
    log_trace_set(NULL, NULL);
    log_msg(LOG_INFO, "outside");
    log_setup(2, LOG_INFO);
    close(p[1]);
    char buf[1024] = {0};
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    close(p[0]);
    assert_true(n > 0);
    char *second = strchr(buf, '\n');
    assert_non_null(second);
    *second++ = 0;
    assert_non_null(strstr(buf, "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\""));
    assert_non_null(strstr(buf, "\"span_id\":\"00f067aa0ba902b7\""));
    assert_null(strstr(second, "trace_id"));
}

/* D48: a span a thread starts is the child of the span it works for (log_trace_set). */
static void test_child_of_the_thread_span(void **state) {
    (void)state;
    struct obs_trace t;
    char tp[56];
    log_trace_set(NULL, NULL);
    assert_false(obs_trace_current(tp));
    assert_int_equal(obs_trace_child(&t), AH_E_NOTFOUND);
    log_trace_set("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    assert_true(obs_trace_current(tp));
    assert_string_equal(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert_int_equal(obs_trace_child(&t), 0);
    assert_string_equal(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(t.parent_id, "00f067aa0ba902b7");
    assert_int_equal(strlen(t.span_id), 16);
    assert_string_not_equal(t.span_id, "00f067aa0ba902b7");
    log_trace_set("short", "00f067aa0ba902b7"); /* not a trace id: no parent */
    assert_false(obs_trace_current(tp));
    log_trace_set(NULL, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_across_threads),
        cmocka_unit_test(test_histogram_render),
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_log_carries_the_trace),
        cmocka_unit_test(test_child_of_the_thread_span),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
