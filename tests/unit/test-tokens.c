/*
 * test-tokens.c — the o200k_base token counter (D39, src/api/tokens.c) against reference counts
 * made by OpenAI's own implementation (tests/fixtures/tokens/corpus.json, see make.mjs there):
 * each text within 2 %, and the corpus in total.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

int64_t tokens_count(const char *text, size_t len);
int64_t tokens_image(const char *data, size_t len);

static void test_corpus(void **state) {
    (void)state;
    json_error_t err;
    json_t *doc = json_load_file(AH_TOKENS_CORPUS, 0, &err);
    if (!doc)
        fail_msg("cannot read %s: %s", AH_TOKENS_CORPUS, err.text);
    size_t i;
    json_t *it;
    int64_t want_all = 0, got_all = 0;
    int exact = 0;
    json_array_foreach(json_object_get(doc, "items"), i, it) {
        const char *text = json_string_value(json_object_get(it, "text"));
        size_t len = json_string_length(json_object_get(it, "text"));
        int64_t want = json_integer_value(json_object_get(it, "tokens"));
        int64_t got = tokens_count(text, len);
        want_all += want;
        got_all += got;
        exact += got == want;
        double off = want ? (double)llabs(got - want) / (double)want : (double)got;
        if (off > 0.02)
            fail_msg("item %zu: %lld tokens, the reference says %lld: %.80s", i, (long long)got,
                     (long long)want, text);
    }
    printf("corpus: %lld tokens counted, %lld in the reference; %d of %zu items exact\n",
           (long long)got_all, (long long)want_all, exact,
           json_array_size(json_object_get(doc, "items")));
    assert_true(llabs(got_all - want_all) * 100 <= want_all * 2);
    assert_true(json_array_size(json_object_get(doc, "items")) >= 10);
    json_decref(doc);
}

static void test_not_bytes_over_four(void **state) {
    (void)state;
    /* one common word is one token however many bytes it has */
    assert_int_equal(tokens_count("international", 13), 1);
    assert_int_equal(tokens_count("", 0), 0);
    /* long runs are cut into slices but stay close */
    static char blank[100000];
    memset(blank, ' ', sizeof(blank));
    int64_t n = tokens_count(blank, sizeof(blank));
    assert_true(n > 0 && n < 2000);
}

static void test_image(void **state) {
    (void)state;
    /* a PNG header of 1024×1024: 4 tiles of 512 after scaling to 768 → 85 + 170 × 4 */
    unsigned char png[24] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                             'I', 'H', 'D', 'R', 0, 0, 4, 0, 0, 0, 4, 0};
    assert_int_equal(tokens_image((const char *)png, sizeof(png)), 765);
    png[18] = 0, png[19] = 100, png[22] = 0, png[23] = 100; /* 100×100: one tile */
    assert_int_equal(tokens_image((const char *)png, sizeof(png)), 255);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_not_bytes_over_four),
        cmocka_unit_test(test_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
