/* The agent adapters' line parsers (src/agent/adapter*.c, D19): every line of any bytes, for
 * every adapter, becomes zero or more event objects with a string "type"; never a crash. The
 * first byte picks the adapter and the exit code given to finish. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/agent/agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size)
        return 0;
    static const char *const types[] = {"claude-code", "codex", "gemini", "opencode"};
    const struct agent_adapter *as[6] = {NULL, NULL, NULL, NULL, &adapter_custom_text,
                                         &adapter_custom_jsonl};
    for (int i = 0; i < 4; i++)
        as[i] = adapter_find(types[i]);
    const struct agent_adapter *a = as[data[0] % 6];
    int exit_code = data[0] / 6;
    data++, size--;
    if (!a)
        abort();
    void *st = a->state_new();
    if (!st)
        return 0;
    json_t *out = json_array();
    enum adapter_outcome oc = ADAPTER_RUNNING;
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = malloc(n ? n : 1); /* exact size: reads past it are caught */
        memcpy(line, p, n);
        a->line(st, line, n, out, &oc);
        free(line);
        p += n + (nl != NULL);
    }
    a->finish(st, exit_code, out);
    size_t i;
    json_t *ev;
    json_array_foreach(out, i, ev) {
        if (!json_is_object(ev) || !json_is_string(json_object_get(ev, "type")))
            abort();
    }
    json_decref(out);
    a->state_free(st);
    return 0;
}
