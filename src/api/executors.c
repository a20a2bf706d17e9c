/*
 * executors.c — the enrolled executors (issue 16; API.md §7.11): GET /executors/{id},
 * POST /executors/{id}/drain and DELETE /executors/{id}. GET /executors itself lives with the
 * catalog (catalog.c), which lists the local runner and then these.
 *
 * {id} is an executor's name (the last segment of its SPIFFE id, or the name it gave): a SPIFFE
 * id has slashes of its own and cannot be one path segment. Drain and removal need the admin
 * role (access.c) and are audited like every change.
 */
#include <stdlib.h>
#include <string.h>

#include "../enroll/fleet.h"
#include "../exec/catalog.h"
#include "routes.h"

static struct fleet *fleet_of(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return NULL;
    if (!ctx->fleet) {
        http_error(req, res, AH_E_NOTFOUND, "no executor %s: this server has no fleet",
                   http_param(req, "id"));
        return NULL;
    }
    return ctx->fleet;
}

static void not_found(struct http_request *req, struct http_response *res, const char *key) {
    http_error(req, res, AH_E_NOTFOUND, "no enrolled executor is named %.200s", key);
}

static void get_executor(struct http_request *req, struct http_response *res) {
    const char *key = http_param(req, "id");
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    if (strcmp(key, "local") == 0 && exec_runs_local(ctx->exec)) {
        json_t *local = exec_local_executor(ctx->exec);
        if (!local)
            http_error(req, res, AH_E_NOMEM, "out of memory");
        else
            http_json(req, res, 200, local);
        return;
    }
    struct fleet *f = fleet_of(req, res);
    if (!f)
        return;
    json_t *j = NULL;
    int rc = fleet_get_json(f, key, &j);
    if (rc == AH_E_NOTFOUND)
        not_found(req, res, key);
    else if (rc < 0)
        http_error(req, res, rc, "cannot read the executor");
    else
        http_json(req, res, 200, j);
}

static void drain_run(struct http_request *req, struct http_response *res) {
    const char *key = http_param(req, "id");
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    if (strcmp(key, "local") == 0) {
        http_error(req, res, AH_E_CONFLICT,
                   "the local runner is drained by starting the server with "
                   "--max-concurrent-tasks 0");
        return;
    }
    struct fleet *f = fleet_of(req, res);
    if (!f)
        return;
    char *id = NULL;
    int rc = fleet_drain(f, key, &id);
    if (rc == AH_E_NOTFOUND) {
        not_found(req, res, key);
        return;
    }
    if (rc < 0) {
        http_error(req, res, rc, "cannot record the drain");
        return;
    }
    log_msg(LOG_INFO, "executor %s drained: it gets no new sessions", id);
    json_t *j = NULL;
    rc = fleet_get_json(f, id, &j);
    free(id);
    if (rc < 0)
        http_error(req, res, rc, "cannot read the executor");
    else
        http_json(req, res, 200, j);
}

/* D7: a retried drain with the same Idempotency-Key gets the first answer. */
static void drain_executor(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, drain_run);
}

static void delete_executor(struct http_request *req, struct http_response *res) {
    const char *key = http_param(req, "id");
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    if (strcmp(key, "local") == 0) {
        http_error(req, res, AH_E_CONFLICT, "the local runner cannot be removed");
        return;
    }
    struct fleet *f = fleet_of(req, res);
    if (!f)
        return;
    char *id = NULL;
    int rc = fleet_remove(f, key, &id);
    if (rc == AH_E_NOTFOUND) {
        not_found(req, res, key);
        return;
    }
    if (rc == AH_E_CONFLICT) {
        http_error(req, res, AH_E_CONFLICT,
                   "executor %.200s is connected: stop it (or revoke its certificate) first, "
                   "then remove it; drain it to keep new sessions away meanwhile",
                   key);
        return;
    }
    if (rc < 0) {
        http_error(req, res, rc, "cannot remove the executor");
        return;
    }
    log_msg(LOG_INFO, "executor %s removed from the fleet", id);
    free(id);
    /* its labels no longer pin anything (D43): a session waiting for them may run here now */
    exec_kick(ctx->exec);
    res->status = 204;
}

int api_executors_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/executors/{id}", get_executor, ctx, 0, 0);
    rc |= router_add(r, "POST", "/api/v1/executors/{id}/drain", drain_executor, ctx, 0, 0);
    rc |= router_add(r, "DELETE", "/api/v1/executors/{id}", delete_executor, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
