/* SSE resume cursors (Last-Event-ID, ?after=, ?tail=) go through parse_int64 (src/core): it must
 * accept exactly the decimals (optional "-", then digits) within the bounds and give their value,
 * compared here with a reference written independently. (Its first finding: "-0" passes as 0,
 * which the header comment then did not say.) */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/core/core.h"

/* 1*DIGIT within [min,max], computed with overflow checks. */
static int reference(const char *s, int64_t min, int64_t max, int64_t *ret) {
    bool neg = *s == '-';
    s += neg;
    if (!*s)
        return -1;
    int64_t v = 0;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        int d = *c - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    v = neg ? -v : v; /* INT64_MIN itself is out of reach of this reference: not in the bounds */
    if (v < min || v > max)
        return -1;
    *ret = v;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 64)
        return 0;
    char s[65];
    memcpy(s, data, size);
    s[size] = 0;
    if (strlen(s) != size)
        return 0; /* a header value never holds a NUL */
    static const int64_t bounds[][2] = {{0, INT64_MAX}, {0, 10000}, {1, 100}, {-50, 50}};
    for (size_t i = 0; i < 4; i++) {
        int64_t a = -7, b = -7;
        int ra = parse_int64(s, bounds[i][0], bounds[i][1], &a);
        int rb = reference(s, bounds[i][0], bounds[i][1], &b);
        if ((ra == 0) != (rb == 0) || (ra == 0 && a != b)) {
            fprintf(stderr, "parse_int64(\"%s\", %lld, %lld): %d/%lld, reference %d/%lld\n", s,
                    (long long)bounds[i][0], (long long)bounds[i][1], ra, (long long)a, rb,
                    (long long)b);
            abort();
        }
    }
    return 0;
}
