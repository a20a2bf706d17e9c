/*
 * test-sse.c — the text/event-stream parser: every way a stream can be cut into chunks gives
 * the same events; CRLF, CR and LF line ends; comments; multi-line data; ids that persist;
 * retry; BOM; the size cap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/client/client_internal.h"

struct got {
    char text[8192]; /* "type|id|idflag|data\n" per event */
    int n;
    int stop_after; /* return 1 from the callback after this many events (0: never) */
};

static int collect(void *ud, const struct sse_event *ev) {
    struct got *g = ud;
    size_t used = strlen(g->text);
    snprintf(g->text + used, sizeof(g->text) - used, "%s|%s|%d|%.*s\n", ev->type, ev->id,
             ev->id_in_event, (int)ev->data_len, ev->data);
    g->n++;
    return g->stop_after && g->n >= g->stop_after ? 1 : 0;
}

/* Parses text whole, then byte by byte, then in every two-piece split; all must agree. */
static void check_all_splits(const char *text, const char *expect, int events) {
    size_t len = strlen(text);
    for (size_t mode = 0; mode < 2 + len; mode++) {
        struct sse_parser p;
        sse_parser_init(&p);
        struct got g = {{0}, 0, 0};
        if (mode == 0) {
            assert_int_equal(sse_feed(&p, text, len, collect, &g), 0);
        } else if (mode == 1) {
            for (size_t i = 0; i < len; i++)
                assert_int_equal(sse_feed(&p, text + i, 1, collect, &g), 0);
        } else {
            size_t cut = mode - 2;
            assert_int_equal(sse_feed(&p, text, cut, collect, &g), 0);
            assert_int_equal(sse_feed(&p, text + cut, len - cut, collect, &g), 0);
        }
        assert_string_equal(g.text, expect);
        assert_int_equal(g.n, events);
        sse_parser_clear(&p);
    }
}

static void test_basic_frames(void **state) {
    check_all_splits("id: 1\nevent: status\ndata: {\"seq\":1}\n\n"
                     "id: 2\nevent: log\ndata: {\"seq\":2}\n\n",
                     "status|1|1|{\"seq\":1}\nlog|2|1|{\"seq\":2}\n", 2);
}

static void test_crlf_and_cr(void **state) {
    check_all_splits("id: 7\r\nevent: a\r\ndata: x\r\n\r\n"
                     "id: 8\revent: b\rdata: y\r\r"
                     "data: z\n\n",
                     "a|7|1|x\nb|8|1|y\nmessage|8|0|z\n", 3);
}

static void test_comments_and_keepalive(void **state) {
    struct sse_parser p;
    sse_parser_init(&p);
    struct got g = {{0}, 0, 0};
    const char *t = ": keep-alive\n\n:keep-alive\n\n: hello\ndata: 1\n\n";
    assert_int_equal(sse_feed(&p, t, strlen(t), collect, &g), 0);
    assert_string_equal(g.text, "message||0|1\n");
    assert_int_equal(p.comments, 3);
    sse_parser_clear(&p);
    check_all_splits(": keep-alive\n\n:x\ndata: 1\n\n", "message||0|1\n", 1);
}

static void test_multiline_data(void **state) {
    check_all_splits("data: line one\ndata: line two\ndata:\ndata:  indented\n\n",
                     "message||0|line one\nline two\n\n indented\n", 1);
}

static void test_fields_without_space_and_unknown(void **state) {
    /* "data:x" (no space), a field without colon, an unknown field, id with no value. */
    check_all_splits("data:x\nfoo: bar\ndata\nid\n\n", "message||1|x\n\n", 1);
}

static void test_no_data_no_dispatch(void **state) {
    /* An event with only an id is not dispatched, but the id persists. */
    check_all_splits("id: 5\n\nevent: x\n\ndata: later\n\n", "message|5|0|later\n", 1);
}

static void test_id_with_nul_ignored(void **state) {
    struct sse_parser p;
    sse_parser_init(&p);
    struct got g = {{0}, 0, 0};
    const char t[] = "id: 3\ndata: a\n\nid: 4\0x\ndata: b\n\n";
    assert_int_equal(sse_feed(&p, t, sizeof(t) - 1, collect, &g), 0);
    assert_string_equal(g.text, "message|3|1|a\nmessage|3|0|b\n");
    sse_parser_clear(&p);
}

static void test_retry_field(void **state) {
    struct sse_parser p;
    sse_parser_init(&p);
    struct got g = {{0}, 0, 0};
    const char *t = "retry: 1500\ndata: a\n\nretry: 12x\n\n";
    assert_int_equal(sse_feed(&p, t, strlen(t), collect, &g), 0);
    assert_int_equal(p.retry_ms, 1500);
    sse_parser_clear(&p);
}

static void test_bom(void **state) {
    check_all_splits("\xEF\xBB\xBF"
                     "data: a\n\n",
                     "message||0|a\n", 1);
    /* Not a BOM: the bytes are ordinary text of the first line (a field name here). */
    check_all_splits("\xEF\xBB"
                     "data: a\n\ndata: b\n\n",
                     "message||0|b\n", 1);
}

static void test_callback_stops(void **state) {
    struct sse_parser p;
    sse_parser_init(&p);
    struct got g = {{0}, 0, 1};
    const char *t = "data: 1\n\ndata: 2\n\n";
    assert_int_equal(sse_feed(&p, t, strlen(t), collect, &g), 1);
    assert_int_equal(g.n, 1);
    sse_parser_clear(&p);
}

static void test_reset_keeps_id(void **state) {
    struct sse_parser p;
    sse_parser_init(&p);
    struct got g = {{0}, 0, 0};
    const char *a = "id: 9\ndata: a\n\ndata: half";
    assert_int_equal(sse_feed(&p, a, strlen(a), collect, &g), 0);
    sse_parser_reset(&p); /* the connection dropped mid-event */
    const char *b = "data: b\n\n";
    assert_int_equal(sse_feed(&p, b, strlen(b), collect, &g), 0);
    assert_string_equal(g.text, "message|9|1|a\nmessage|9|0|b\n");
    sse_parser_clear(&p);
}

static void test_size_cap(void **state) {
    struct sse_parser p;
    sse_parser_init(&p);
    p.max_event = 64;
    struct got g = {{0}, 0, 0};
    char big[200];
    memset(big, 'x', sizeof(big));
    assert_int_equal(sse_feed(&p, "data: ", 6, collect, &g), 0);
    assert_int_equal(sse_feed(&p, big, sizeof(big), collect, &g), AH_E_TOOLARGE);
    sse_parser_clear(&p);
    sse_parser_init(&p);
    p.max_event = 64;
    /* Many small data lines also hit the cap. */
    int rc = 0;
    for (int i = 0; i < 40 && rc == 0; i++)
        rc = sse_feed(&p, "data: 12345\n", 12, collect, &g);
    assert_int_equal(rc, AH_E_TOOLARGE);
    assert_int_equal(g.n, 0);
    sse_parser_clear(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_frames),
        cmocka_unit_test(test_crlf_and_cr),
        cmocka_unit_test(test_comments_and_keepalive),
        cmocka_unit_test(test_multiline_data),
        cmocka_unit_test(test_fields_without_space_and_unknown),
        cmocka_unit_test(test_no_data_no_dispatch),
        cmocka_unit_test(test_id_with_nul_ignored),
        cmocka_unit_test(test_retry_field),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_reset_keeps_id),
        cmocka_unit_test(test_size_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
