/* libah-client's SSE parser (src/client/sse.c): any byte stream, split at an arbitrary point,
 * gives the same events as when fed whole; lines and events stay under the cap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/client/client_internal.h"

struct tally {
    uint64_t h;
    size_t n;
};

static int on_event(void *ud, const struct sse_event *ev) {
    struct tally *t = ud;
    for (size_t i = 0; i < ev->data_len; i++)
        t->h = (t->h ^ (unsigned char)ev->data[i]) * 1099511628211ULL;
    const unsigned char *parts[2] = {(const unsigned char *)ev->type,
                                     (const unsigned char *)ev->id};
    for (int k = 0; k < 2; k++) {
        t->h = (t->h ^ 0xff) * 1099511628211ULL;
        for (const unsigned char *c = parts[k]; c && *c; c++)
            t->h = (t->h ^ *c) * 1099511628211ULL;
    }
    t->h = (t->h ^ (unsigned)ev->id_in_event) * 1099511628211ULL;
    t->n++;
    return 0;
}

static int run(const uint8_t *d, size_t n, size_t cut, struct tally *t) {
    struct sse_parser p;
    sse_parser_init(&p);
    p.max_event = 4096;
    int r = sse_feed(&p, (const char *)d, cut, on_event, t);
    if (r == 0)
        r = sse_feed(&p, (const char *)d + cut, n - cut, on_event, t);
    sse_parser_clear(&p);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t cut = data[0] % size; /* the first byte chooses the split point */
    data++, size--;
    if (cut > size)
        cut = size;
    struct tally whole = {1469598103934665603ULL, 0}, split = whole;
    int a = run(data, size, size, &whole);
    int b = run(data, size, cut, &split);
    if ((a == 0) != (b == 0) || (a == 0 && (whole.n != split.n || whole.h != split.h)))
        abort(); /* chunking must not change what is parsed */
    return 0;
}
