/*
 * api.h — the REST handlers of /api/v1 (one file per resource) and the context they share.
 * Handlers validate with core/, read through store/, write events and transitions through
 * bus/, act on sessions through exec/, and answer through http/.
 */
#ifndef AH_API_H
#define AH_API_H

#include "../exec/exec.h"
#include "../http/http.h"

struct api_ctx {
    /* Set together by api_set_services once the store is open; NULL before (readyz 503). */
    struct store *store;
    struct bus *bus;
    struct executor *exec;
    const char *version;
    const char *git_commit; /* NULL when unknown */
    const char *build_date; /* NULL when unknown */
    int64_t keepalive_ms;   /* SSE keep-alive interval (D11: at most 15 s); 0 = 15000 */
};

/* Registers every route on r with ctx as their context. 0 or AH_E_NOMEM. */
int api_register(struct router *r, struct api_ctx *ctx);

/* The store once the services are up, else NULL (safe from any thread). */
struct store *api_store(struct api_ctx *ctx);
/* Publishes the services to the handlers (all three, or all NULL to withdraw them). */
void api_set_services(struct api_ctx *ctx, struct store *st, struct bus *bus,
                      struct executor *ex);

/* Starts/stops the thread behind every SSE stream (keep-alives, recording growth). */
int api_streams_start(struct api_ctx *ctx);
void api_streams_stop(void);

#endif
