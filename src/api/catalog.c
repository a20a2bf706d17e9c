/*
 * catalog.c — capability discovery (API.md §7.11): GET /agents, /runtimes and /executors.
 *
 * Every answer is read from memory: agent versions come from the catalog's cache, which its
 * own thread fills by running each CLI's `--version` (exec/catalog.c), never an HTTP thread.
 */
#include "../enroll/fleet.h"
#include "../exec/catalog.h"
#include "../sandbox/sandbox.h"
#include "routes.h"

static void get_agents(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    json_t *items = ctx->catalog ? agent_catalog_items(ctx->catalog, ctx->version) : NULL;
    if (!items) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    http_json(req, res, 200, json_pack("{s:o}", "items", items));
}

/* What this server runs on this machine (D51, D52): `items` lists only the runtimes and
 * sandbox profiles a task may ask for here; `unavailable` says why the others are missing. */
static void get_runtimes(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    json_t *out = sandbox_runtimes_json(exec_sandbox(ctx->exec));
    if (!out) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    http_json(req, res, 200, out);
}

/* The local runner (unless this access point is a pure control plane), then the enrolled
 * executors (issue 16). */
static void get_executors(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    json_t *items = ctx->fleet ? fleet_list_json(ctx->fleet) : json_array();
    bool runs = exec_runs_local(ctx->exec);
    json_t *local = runs ? exec_local_executor(ctx->exec) : NULL;
    if (!items || (runs && !local) || (local && json_array_insert_new(items, 0, local) < 0)) {
        json_decref(items);
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    http_json(req, res, 200, json_pack("{s:o}", "items", items));
}

int api_catalog_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/agents", get_agents, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/runtimes", get_runtimes, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/executors", get_executors, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
