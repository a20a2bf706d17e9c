/* Workspace path normalisation (src/workspace/path.c): whatever it accepts is relative, has no
 * "." / ".." / empty / ".git" segment, and is a fixed point. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/workspace/workspace.h"

static void check_segments(const char *p) {
    if (p[0] == '/')
        abort();
    const char *s = p;
    while (*s) {
        size_t n = strcspn(s, "/");
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.') ||
            (n == 4 && memcmp(s, ".git", 4) == 0))
            abort();
        s += n;
        if (*s == '/')
            s++;
        if (!*s && s[-1] == '/')
            abort(); /* trailing slash */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);
    char out[WS_PATH_MAX + 1], again[WS_PATH_MAX + 1];
    if (ws_path_normalise(in, size, out) == 0) {
        if (strlen(out) > WS_PATH_MAX)
            abort();
        check_segments(out);
        if (ws_path_normalise(out, strlen(out), again) != 0 || strcmp(out, again) != 0)
            abort();
    }
    free(in);
    return 0;
}
