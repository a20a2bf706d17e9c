/* The task-request validator (src/core/task_request.c) on any JSON: a refusal names its fields,
 * an accepted request round-trips (parse(to_json(r)) is accepted again and serialises the same). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!body)
        return 0;
    struct task_request *r = NULL;
    struct ah_problem p = {0};
    if (task_request_parse(body, &r, &p) == 0) {
        json_t *canon = task_request_to_json(r);
        if (canon) {
            struct task_request *r2 = NULL;
            struct ah_problem p2 = {0};
            if (task_request_parse(canon, &r2, &p2) != 0)
                abort(); /* the canonical form must be accepted */
            json_t *canon2 = task_request_to_json(r2);
            if (canon2 && !json_equal(canon, canon2))
                abort(); /* and be a fixed point */
            json_decref(canon2);
            task_request_free(r2);
            problem_clear(&p2);
            json_decref(canon);
        }
        task_request_free(r);
    } else if (p.code == 0) {
        abort(); /* a refusal carries a problem */
    }
    problem_clear(&p);
    json_decref(body);
    return 0;
}
