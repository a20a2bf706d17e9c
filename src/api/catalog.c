/*
 * catalog.c — capability discovery (API.md §7.11): GET /agents, /runtimes and /executors.
 *
 * Every answer is read from memory: agent versions come from the catalog's cache, which its
 * own thread fills by running each CLI's `--version` (exec/catalog.c), never an HTTP thread.
 */
#include "../exec/catalog.h"
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

/* What this server really runs: the agent on this machine, in the session's workspace, with
 * no sandbox around it (the `disabled` profile). Devcontainers and sandbox profiles appear here
 * once they exist. */
static void get_runtimes(struct http_request *req, struct http_response *res) {
    if (!api_ready(req, res))
        return;
    http_json(req, res, 200,
              json_pack("{s:[{s:s, s:[s]}]}", "items", "type", "local", "sandboxProfiles",
                        "disabled"));
}

/* The local executor; enrolled executors join this list when they exist. */
static void get_executors(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    json_t *local = exec_local_executor(ctx->exec);
    if (!local) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    http_json(req, res, 200, json_pack("{s:[o]}", "items", local));
}

int api_catalog_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/agents", get_agents, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/runtimes", get_runtimes, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/executors", get_executors, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
