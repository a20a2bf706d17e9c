/*
 * api.c — route registration and the shared context.
 */
#include "api.h"
#include "routes.h"

struct store *api_store(struct api_ctx *ctx) {
    return __atomic_load_n(&ctx->store, __ATOMIC_ACQUIRE);
}

void api_set_store(struct api_ctx *ctx, struct store *st) {
    __atomic_store_n(&ctx->store, st, __ATOMIC_RELEASE);
}

int api_register(struct router *r, struct api_ctx *ctx) {
    return api_health_register(r, ctx);
}
