/* The configuration reader (src/core/toml.c): any bytes give an object or a located error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *t = malloc(size + 1);
    if (!t)
        return 0;
    memcpy(t, data, size);
    t[size] = 0;
    json_t *out = NULL;
    struct ah_problem p = {0};
    if (toml_parse(t, size, &out, &p) == 0) {
        if (!json_is_object(out))
            abort();
        json_decref(out);
    } else if (p.code == 0) {
        abort();
    }
    problem_clear(&p);
    free(t);
    return 0;
}
