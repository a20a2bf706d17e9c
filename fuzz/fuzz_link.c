/* The recorder link's frames (src/agent/link.c, D17): 4-byte big-endian length + one JSON
 * object. Any byte stream, fed in two pieces, yields whole objects or a protocol error, never a
 * crash; every object taken re-frames to a frame that decodes to an equal object. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/agent/agent.h"

static int drain(struct link_reader *r) {
    for (;;) {
        json_t *m = NULL;
        int rc = link_take(r, &m);
        if (rc <= 0)
            return rc;
        if (!json_is_object(m))
            abort();
        struct ah_buf b = {0};
        if (link_frame(&b, m) == 0) {
            struct link_reader r2 = {0};
            json_t *m2 = NULL;
            if (link_feed(&r2, b.p, b.n) < 0 || link_take(&r2, &m2) != 1 || !json_equal(m, m2))
                abort();
            json_decref(m2);
            link_reader_clear(&r2);
        }
        ah_buf_clear(&b);
        json_decref(m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size)
        return 0;
    size_t cut = data[0] % size;
    data++, size--;
    if (cut > size)
        cut = size;
    struct link_reader r = {0};
    if (link_feed(&r, data, cut) == 0 && drain(&r) >= 0 && link_feed(&r, data + cut, size - cut) == 0)
        drain(&r);
    link_reader_clear(&r);
    return 0;
}
