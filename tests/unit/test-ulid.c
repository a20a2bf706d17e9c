/* test-ulid.c — ULID format, monotonicity (1e6 calls, several threads), sortability, and the
 * idempotency-key grammar of D7. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/core/core.h"

static void test_format(void **state) {
    char id[ULID_LEN + 1];
    assert_int_equal(ulid_new(id), 0);
    assert_int_equal(strlen(id), 26);
    assert_true(ulid_valid(id));
    for (int i = 0; i < 26; i++)
        assert_non_null(strchr("0123456789ABCDEFGHJKMNPQRSTVWXYZ", id[i]));
    /* the timestamp is now, to within a few seconds */
    int64_t now = time_now_ms();
    assert_true(llabs((long long)(int64_t)ulid_time_ms(id) - now) < 5000);
}

static void test_known_encoding(void **state) {
    struct ulid_state st = {0};
    uint8_t zero[10] = {0}, ones[10];
    memset(ones, 0xff, sizeof(ones));
    char id[ULID_LEN + 1];
    ulid_state_next(&st, 0, zero, id);
    assert_string_equal(id, "00000000000000000000000000");
    struct ulid_state st2 = {0};
    ulid_state_next(&st2, 0xFFFFFFFFFFFFull, ones, id);
    assert_string_equal(id, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    /* a spec example: 1469918176385 ms → 01ARYZ6S41 */
    struct ulid_state st3 = {0};
    ulid_state_next(&st3, 1469918176385ull, zero, id);
    assert_memory_equal(id, "01ARYZ6S41", 10);
    assert_int_equal(ulid_time_ms(id), 1469918176385ull);
}

static void test_monotonic_same_ms(void **state) {
    struct ulid_state st = {0};
    uint8_t r[10];
    memset(r, 0xAB, sizeof(r));
    char prev[ULID_LEN + 1], cur[ULID_LEN + 1];
    ulid_state_next(&st, 1000, r, prev);
    for (int i = 0; i < 1000; i++) {
        memset(r, i & 0xff, sizeof(r)); /* fresh randomness must be ignored within one ms */
        ulid_state_next(&st, 1000, r, cur);
        assert_true(strcmp(prev, cur) < 0);
        memcpy(prev, cur, sizeof(cur));
    }
    /* the clock going backwards keeps the order */
    ulid_state_next(&st, 10, r, cur);
    assert_true(strcmp(prev, cur) < 0);
}

static void test_overflow_moves_to_next_ms(void **state) {
    struct ulid_state st = {0};
    uint8_t ones[10];
    memset(ones, 0xff, sizeof(ones));
    char a[ULID_LEN + 1], b[ULID_LEN + 1];
    ulid_state_next(&st, 5000, ones, a);
    ulid_state_next(&st, 5000, ones, b);
    assert_true(strcmp(a, b) < 0);
    assert_int_equal(ulid_time_ms(b), 5001);
}

static void test_million_sorted(void **state) {
    char prev[ULID_LEN + 1] = "", cur[ULID_LEN + 1];
    for (int i = 0; i < 1000000; i++) {
        assert_int_equal(ulid_new(cur), 0);
        if (strcmp(prev, cur) >= 0)
            fail_msg("not increasing at %d: %s then %s", i, prev, cur);
        memcpy(prev, cur, sizeof(cur));
    }
}

#define THREADS 4
#define PER_THREAD 50000
static char ids[THREADS][PER_THREAD][ULID_LEN + 1];

static void *gen(void *arg) {
    char(*mine)[ULID_LEN + 1] = arg;
    for (int i = 0; i < PER_THREAD; i++)
        ulid_new(mine[i]);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    return strcmp(a, b);
}

static void test_threads_unique_and_ordered(void **state) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, gen, ids[i]);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++) /* each thread sees its own ids increase */
        for (int k = 1; k < PER_THREAD; k++)
            assert_true(strcmp(ids[i][k - 1], ids[i][k]) < 0);
    qsort(ids, THREADS * PER_THREAD, ULID_LEN + 1, cmp);
    char(*all)[ULID_LEN + 1] = (void *)ids;
    for (int k = 1; k < THREADS * PER_THREAD; k++)
        assert_true(strcmp(all[k - 1], all[k]) != 0); /* no duplicates across threads */
}

static void test_valid(void **state) {
    assert_true(ulid_valid("01ARYZ6S41TSV4RRFFQ69G5FAV"));
    assert_false(ulid_valid("01ARYZ6S41TSV4RRFFQ69G5FA"));   /* 25 */
    assert_false(ulid_valid("01ARYZ6S41TSV4RRFFQ69G5FAVV")); /* 27 */
    assert_false(ulid_valid("01ARYZ6S41TSV4RRFFQ69G5FAU"));  /* U is not Crockford */
    assert_false(ulid_valid("81ARYZ6S41TSV4RRFFQ69G5FAV"));  /* > 48-bit time */
    assert_false(ulid_valid("01aryz6s41tsv4rrffq69g5fav"));  /* we emit upper case only */
    assert_false(ulid_valid(NULL));
}

static void test_prefixed(void **state) {
    char id[64];
    assert_int_equal(ulid_new_prefixed("draft", id, sizeof(id)), 0);
    assert_memory_equal(id, "draft-", 6);
    assert_true(ulid_valid(id + 6));
    assert_int_equal(ulid_new_prefixed("draft", id, 20), AH_E_INVAL);
}

static void test_idempotency_keys(void **state) {
    assert_true(idempotency_key_valid("01ARYZ6S41TSV4RRFFQ69G5FAV"));
    assert_true(idempotency_key_valid("123e4567-e89b-12d3-a456-426614174000"));
    assert_true(idempotency_key_valid("123E4567-E89B-12D3-A456-426614174000"));
    assert_false(idempotency_key_valid("123e4567e89b12d3a456426614174000"));
    assert_false(idempotency_key_valid("123e4567-e89b-12d3-a456-42661417400"));
    assert_false(idempotency_key_valid("123e4567-e89b-12d3-a456-4266141740000"));
    assert_false(idempotency_key_valid("my-key"));
    assert_false(idempotency_key_valid(""));
    assert_false(idempotency_key_valid(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_known_encoding),
        cmocka_unit_test(test_monotonic_same_ms),
        cmocka_unit_test(test_overflow_moves_to_next_ms),
        cmocka_unit_test(test_million_sorted),
        cmocka_unit_test(test_threads_unique_and_ordered),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_prefixed),
        cmocka_unit_test(test_idempotency_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
