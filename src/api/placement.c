/*
 * placement.c — D43 applied to this server's sessions: the local runner and the enrolled
 * executors as placement_choose (enroll/fleet.h) sees them, for the scheduler (may the local
 * runner start this queued session?) and for the session's `queuedReason`.
 *
 * The scheduler starts the session where placement_choose says: here, or on the executor with
 * the most free slots (issue 16 item 5: launched over its link). An executor's load is the
 * larger of what its last heartbeat said and what this server launched there since (a
 * heartbeat may be seconds old). A session nothing can take now stays queued with the reason.
 */
#include <stdio.h>
#include <string.h>

#include "../enroll/fleet.h"
#include "routes.h"

struct placement {
    bool local;         /* the local runner may start it */
    bool remote;        /* executor `executor` may start it */
    bool waiting;       /* not now */
    char executor[256];
    char reason[400];   /* "" when it is about to start */
};

static void decide(struct fleet *f, struct executor *ex, struct session_row *row,
                   struct placement *out) {
    memset(out, 0, sizeof(*out));
    json_t *req = session_row_request(row);
    struct place_runner *fr = NULL;
    size_t n = 0;
    if (!req || (f && fleet_runners(f, &fr, &n) < 0)) {
        out->local = true; /* out of memory: the scheduler as it always was */
        return;
    }
    struct place_runner *rs = calloc(n + 1, sizeof(*rs));
    if (!rs) {
        place_runners_free(fr, n);
        out->local = true;
        return;
    }
    int64_t cap = 0, running = 0;
    exec_local_load(ex, &cap, &running);
    json_t *no_labels = json_object();
    /* the local runner runs every type it knows (a custom agent only an executor has: not) */
    json_t *local_agents = exec_agent_known(ex, row->agent_type) ? NULL : json_array();
    rs[0] = (struct place_runner){.id = "local", .name = "local", .local = true, .online = true,
                                  .capacity = cap, .running = running, .labels = no_labels,
                                  .agents = local_agents};
    for (size_t i = 0; i < n; i++) {
        rs[i + 1] = fr[i];
        int64_t launched = exec_remote_running(ex, fr[i].id);
        if (launched > rs[i + 1].running)
            rs[i + 1].running = launched;
    }
    struct place_request rq = {
        .tenant = row->tenant_id,
        .pin = json_string_value(json_object_get(json_object_get(req, "workspace"),
                                                 "executionHostId")),
        .labels = json_object_get(req, "labels"),
        .runtime = json_string_value(json_object_get(json_object_get(req, "runtime"), "type")),
        .agent = row->agent_type,
        .tenant_running = exec_tenant_running(ex, row->tenant_id),
        .tenant_max = exec_tenant_max(ex),
    };
    struct place_result res;
    placement_choose(&rq, rs, n + 1, &res);
    out->local = res.index == 0;
    out->remote = res.index > 0 && !res.waiting;
    if (out->remote)
        snprintf(out->executor, sizeof(out->executor), "%s", rs[res.index].id);
    out->waiting = res.waiting || res.index < 0;
    if (out->local && res.waiting)
        snprintf(out->reason, sizeof(out->reason),
                 "waiting for a free slot on the local runner (%lld of %lld busy)",
                 (long long)running, (long long)cap);
    else if (out->waiting)
        snprintf(out->reason, sizeof(out->reason), "%s", res.reason);
    for (size_t i = 1; i <= n; i++)
        rs[i] = (struct place_runner){0};
    free(rs);
    json_decref(no_labels);
    json_decref(local_agents);
    place_runners_free(fr, n);
}

bool api_place_local(void *arg, struct session_row *row) {
    struct api_placer *p = arg;
    if (!p->exec)
        return true;
    struct placement pl;
    decide(p->fleet, p->exec, row, &pl);
    return pl.local;
}

int api_place(void *arg, struct session_row *row, char *executor, size_t n) {
    struct api_placer *p = arg;
    if (!p->exec)
        return EXEC_PLACE_LOCAL;
    struct placement pl;
    decide(p->fleet, p->exec, row, &pl);
    if (pl.waiting)
        return EXEC_PLACE_WAIT;
    if (pl.remote) {
        snprintf(executor, n, "%s", pl.executor);
        return EXEC_PLACE_REMOTE;
    }
    return pl.local ? EXEC_PLACE_LOCAL : EXEC_PLACE_WAIT;
}

bool api_remote_possible(void *arg) {
    struct api_placer *p = arg;
    return p->fleet && fleet_count(p->fleet) > 0;
}

char *api_queued_reason(struct api_ctx *ctx, struct session_row *row) {
    if (!ctx->exec)
        return NULL;
    struct placement pl;
    decide(ctx->fleet, ctx->exec, row, &pl);
    return pl.reason[0] ? strdup(pl.reason) : NULL;
}
