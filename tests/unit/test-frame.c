/* test-frame.c — control-plane frames (D41): u32 big-endian length + one JSON object with a
 * string "type"; the incremental decoder under every split, the caps and the refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/enroll/frame.h"

struct seen {
    json_t *list;
    int stop_after; /* > 0: the callback fails on that frame */
};

static int collect(void *ctx, json_t *msg) {
    struct seen *s = ctx;
    json_array_append(s->list, msg);
    if (s->stop_after && (int)json_array_size(s->list) == s->stop_after)
        return AH_E_CANCELED;
    return 0;
}

static void encode(struct ah_buf *b, const char *json) {
    json_t *m = json_loads(json, 0, NULL);
    assert_non_null(m);
    assert_int_equal(frame_encode(b, m, 0), 0);
    json_decref(m);
}

static void test_encode_layout(void **state) {
    struct ah_buf b = {0};
    encode(&b, "{\"type\":\"Ack\"}");
    assert_int_equal(b.n, 4 + 14);
    assert_memory_equal(b.p, "\0\0\0\x0e{\"type\":\"Ack\"}", 18);
    ah_buf_clear(&b);
}

static void test_encode_refuses(void **state) {
    struct ah_buf b = {0};
    json_t *arr = json_array();
    json_t *notype = json_pack("{s:i}", "a", 1);
    json_t *numtype = json_pack("{s:i}", "type", 1);
    json_t *empty = json_pack("{s:s}", "type", "");
    json_t *big = json_pack("{s:s, s:s%}", "type", "X", "pad", "0123456789", (size_t)10);
    assert_int_equal(frame_encode(&b, arr, 0), AH_E_INVAL);
    assert_int_equal(frame_encode(&b, notype, 0), AH_E_INVAL);
    assert_int_equal(frame_encode(&b, numtype, 0), AH_E_INVAL);
    assert_int_equal(frame_encode(&b, empty, 0), AH_E_INVAL);
    assert_int_equal(frame_encode(&b, big, 20), AH_E_TOOLARGE);
    assert_int_equal(b.n, 0);
    /* a full buffer leaves no half frame behind */
    struct ah_buf small = {.max = 10};
    assert_int_equal(frame_encode(&small, big, 0), AH_E_TOOLARGE);
    assert_int_equal(small.n, 0);
    json_decref(arr), json_decref(notype), json_decref(numtype), json_decref(empty);
    json_decref(big);
    ah_buf_clear(&small);
}

/* Three frames, fed at every possible pair of cut points: same three objects each time. */
static void test_every_split(void **state) {
    struct ah_buf b = {0};
    encode(&b, "{\"type\":\"Hello\",\"executor_id\":\"spiffe://td/ah/agent/a\"}");
    encode(&b, "{\"type\":\"Heartbeat\",\"load\":0.5}");
    encode(&b, "{\"type\":\"Goodbye\",\"reason\":\"bye\"}");
    for (size_t i = 0; i <= b.n; i++)
        for (size_t j = i; j <= b.n; j++) {
            struct frame_decoder d = {0};
            struct seen s = {.list = json_array()};
            assert_int_equal(frame_decode(&d, b.p, i, collect, &s), 0);
            assert_int_equal(frame_decode(&d, b.p + i, j - i, collect, &s), 0);
            assert_int_equal(frame_decode(&d, b.p + j, b.n - j, collect, &s), 0);
            assert_int_equal(json_array_size(s.list), 3);
            assert_true(frame_decoder_idle(&d));
            assert_string_equal(json_string_value(json_object_get(json_array_get(s.list, 2),
                                                                  "type")),
                                "Goodbye");
            json_decref(s.list);
            frame_decoder_clear(&d);
        }
    /* byte by byte */
    struct frame_decoder d = {0};
    struct seen s = {.list = json_array()};
    for (size_t i = 0; i < b.n; i++) {
        assert_int_equal(frame_decode(&d, b.p + i, 1, collect, &s), 0);
        if (i + 1 < b.n)
            assert_false(frame_decoder_idle(&d) && i == 0);
    }
    assert_int_equal(json_array_size(s.list), 3);
    assert_true(frame_decoder_idle(&d));
    json_decref(s.list);
    frame_decoder_clear(&d);
    ah_buf_clear(&b);
}

static void bad_stream(const void *data, size_t n, size_t max, const char *why) {
    struct frame_decoder d = {.max = max};
    struct seen s = {.list = json_array()};
    assert_int_equal(frame_decode(&d, data, n, collect, &s), AH_E_PROTOCOL);
    if (!strstr(d.why, why))
        fail_msg("expected '%s' in '%s'", why, d.why);
    /* sticky: later bytes are not trusted */
    assert_int_equal(frame_decode(&d, "\0\0\0\x0e{\"type\":\"Ack\"}", 18, collect, &s),
                     AH_E_PROTOCOL);
    assert_int_equal(json_array_size(s.list), 0);
    json_decref(s.list);
    frame_decoder_clear(&d);
}

static void test_refusals(void **state) {
    bad_stream("\0\0\0\x05hello", 9, 0, "not JSON");
    bad_stream("\0\0\0\x02[]", 6, 0, "string \"type\"");
    bad_stream("\0\0\0\x0b{\"type\":42}", 15, 0, "string \"type\"");
    bad_stream("\0\0\0\x02{}", 6, 0, "string \"type\"");
    bad_stream("\0\0\0\0", 4, 0, "empty frame");
    bad_stream("\x7f\xff\xff\xff", 4, 0, "above the cap");
    bad_stream("\0\0\0\x0e{\"type\":\"Ack\"}", 18, 10, "above the cap of 10");
    bad_stream("\0\0\0\x17{\"type\":\"A\",\"type\":\"B\"}", 27, 0, "not JSON");
}

/* The cap is checked on the header, before anything is allocated or kept. */
static void test_cap_before_body(void **state) {
    struct frame_decoder d = {0};
    assert_int_equal(frame_decode(&d, "\x00\x10\x00\x01", 4, NULL, NULL), AH_E_PROTOCOL);
    assert_null(d.body);
    frame_decoder_clear(&d);
    /* exactly the cap is fine */
    struct ah_buf b = {0};
    encode(&b, "{\"type\":\"Ack\"}");
    struct frame_decoder e = {.max = 14};
    struct seen s = {.list = json_array()};
    assert_int_equal(frame_decode(&e, b.p, b.n, collect, &s), 0);
    assert_int_equal(json_array_size(s.list), 1);
    json_decref(s.list);
    frame_decoder_clear(&e);
    ah_buf_clear(&b);
}

static void test_callback_stops(void **state) {
    struct ah_buf b = {0};
    encode(&b, "{\"type\":\"A\"}");
    encode(&b, "{\"type\":\"B\"}");
    struct frame_decoder d = {0};
    struct seen s = {.list = json_array(), .stop_after = 1};
    assert_int_equal(frame_decode(&d, b.p, b.n, collect, &s), AH_E_CANCELED);
    assert_int_equal(json_array_size(s.list), 1);
    json_decref(s.list);
    frame_decoder_clear(&d);
    ah_buf_clear(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_layout),  cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_every_split),    cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_cap_before_body), cmocka_unit_test(test_callback_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
