/*
 * api.c — route registration and the shared context.
 */
#include "api.h"
#include "routes.h"

struct store *api_store(struct api_ctx *ctx) {
    return __atomic_load_n(&ctx->store, __ATOMIC_ACQUIRE);
}

void api_set_services(struct api_ctx *ctx, struct store *st, struct bus *bus,
                      struct executor *ex) {
    if (!st) /* withdraw the gate first */
        __atomic_store_n(&ctx->store, NULL, __ATOMIC_RELEASE);
    ctx->bus = bus;
    ctx->exec = ex;
    if (st) /* the store is the gate: set last, after bus and exec are visible */
        __atomic_store_n(&ctx->store, st, __ATOMIC_RELEASE);
}

int api_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= api_health_register(r, ctx);
    rc |= api_metrics_register(r, ctx);
    rc |= api_tasks_register(r, ctx);
    rc |= api_sessions_register(r, ctx);
    rc |= api_events_register(r, ctx);
    rc |= api_pty_register(r, ctx);
    rc |= api_drafts_register(r, ctx);
    rc |= api_repos_register(r, ctx);
    rc |= api_files_register(r, ctx);
    rc |= api_workspace_register(r, ctx);
    rc |= api_timeline_register(r, ctx);
    rc |= api_catalog_register(r, ctx);
    rc |= api_executors_register(r, ctx);
    rc |= api_chat_register(r, ctx);
    rc |= api_projects_register(r, ctx);
    rc |= api_auth_register(r, ctx);
    rc |= api_openapi_register(r, ctx);
    rc |= api_register_unimplemented(r, ctx); /* last: it fills the gaps the routes above leave */
    return rc ? AH_E_NOMEM : 0;
}
