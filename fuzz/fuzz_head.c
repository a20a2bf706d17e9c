/* The front gate's judgement of a connection's first bytes (src/http/gate.c): request line,
 * header block, framing (smuggling), sizes. Invariants: no crash, no read past the input (ASan),
 * a verdict status is 0 or an HTTP error status, a detail accompanies every refusal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/http/front.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy, so ASan sees any read past the peek */
    char *b = malloc(size ? size : 1);
    if (!b)
        return 0;
    memcpy(b, data, size);
    struct front_verdict v;
    int r = front_judge_peek(b, size, 1024 * 1024, &v);
    if (r) {
        if (v.status && (v.status < 400 || v.status > 599))
            abort();
        if (v.status && !v.detail[0])
            abort();
        if (strnlen(v.detail, sizeof(v.detail)) == sizeof(v.detail))
            abort(); /* not terminated */
    }
    free(b);
    return 0;
}
