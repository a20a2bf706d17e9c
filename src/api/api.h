/*
 * api.h — the REST handlers of /api/v1 (one file per resource) and the context they share.
 * Handlers validate with core/, read and write through store/, and answer through http/.
 */
#ifndef AH_API_H
#define AH_API_H

#include "../http/http.h"
#include "../store/store.h"

struct api_ctx {
    struct store *store; /* set (atomically) once the store is open; NULL while opening */
    const char *version;
    const char *git_commit; /* NULL when unknown */
    const char *build_date; /* NULL when unknown */
};

/* Registers every route on r with ctx as their context. 0 or AH_E_NOMEM. */
int api_register(struct router *r, struct api_ctx *ctx);

/* The store once it is open, else NULL (safe from any thread). */
struct store *api_store(struct api_ctx *ctx);
void api_set_store(struct api_ctx *ctx, struct store *st);

#endif
