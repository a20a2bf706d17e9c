/*
 * api.h — the REST handlers of /api/v1 (one file per resource) and the context they share.
 * Handlers validate with core/, read through store/, write events and transitions through
 * bus/, act on sessions through exec/, and answer through http/.
 */
#ifndef AH_API_H
#define AH_API_H

#include <ah/task_manager.h>

#include "../exec/exec.h"
#include "../http/http.h"

struct auth;
struct remote_ap;

struct api_ctx {
    /* Set together by api_set_services once the store is open; NULL before (readyz 503). */
    struct store *store;
    struct bus *bus;
    struct executor *exec;
    const char *version;
    const char *git_commit; /* NULL when unknown */
    const char *build_date; /* NULL when unknown */
    int64_t keepalive_ms;   /* SSE keep-alive interval (D11: at most 15 s); 0 = 15000 */
    /* What GET /agents lists and D25's aliases consult (API.md §7.11); set with the services
     * (api_services.catalog), NULL before. */
    struct agent_catalog *catalog;
    /* Credentials, roles, rate limits (auth/); NULL: every request is the local admin. */
    struct auth *auth;
    /* The enrolled executors (enroll/fleet.h, issue 16); set with the services like catalog,
     * NULL before (and in processes without a fleet). */
    struct fleet *fleet;
    /* Sessions on executors (enroll/remote_ap.h): their workspace reads go there; set with
     * the services like fleet, NULL in processes without an executor link. */
    struct remote_ap *remote;
};

/* The middleware of access.c (authentication, RBAC, tenant, rate limits, audit) as http hooks
 * for ctx; give them to http_config.hooks. */
void api_access_hooks(struct api_ctx *ctx, struct http_hooks *ret);
/* The role a route needs (enum auth_role), or -1 for a public route. */
int api_route_role(const char *method, const char *pattern);
/* The api-keys and audit routes (auth_routes.c). */
int api_auth_register(struct router *r, struct api_ctx *ctx);
/* The OIDC sign-in and browser-session routes (auth_session.c), registered by the above. */
int api_auth_session_register(struct router *r, struct api_ctx *ctx);
/* The value of cookie `name` in the request (in its arena), or NULL. */
const char *api_cookie(const struct http_request *req, const char *name);

/* Registers every route on r with ctx as their context. 0 or AH_E_NOMEM. */
int api_register(struct router *r, struct api_ctx *ctx);
/* GET /metrics alone (D49; metrics.c): api_register includes it; a daemon adds it to a second
 * router for its separate metrics address. 0 or AH_E_NOMEM. */
int api_metrics_register(struct router *r, struct api_ctx *ctx);

/* The embedded web UI (webui.c): GET / and every non-API path. `ah webui` only; register it
 * after api_register, so every API route matches first. 0 or AH_E_NOMEM. */
int api_webui_register(struct router *r, struct api_ctx *ctx);

/* `ah webui --remote-server URL` (proxy.c): every /api/v1 request passed to a remote access
 * point, responses streamed back (SSE included); /_ah/healthz answered locally. */
struct proxy;
struct proxy_config {
    const char *url;          /* http:// or https:// base of the remote access point */
    const char *ca_file;      /* PEM bundle to verify its TLS certificate; NULL: the system's */
    long connect_timeout_ms;  /* 0: 10 s; past it the answer is 504 */
    long header_timeout_ms;   /* 0: 60 s; no status line by then: 504 */
    const char *api_key;      /* sent as Authorization: ApiKey … on requests without their own
                                 credential; NULL: none (the browser signs in upstream) */
    struct auth_signer *signer; /* with its own sign-in (the access hooks run first): each
                                   request goes up as the signed-in caller, in a JWT signed by
                                   this (borrowed; auth/signer.h); NULL: off */
    const char *jwt_issuer, *jwt_audience; /* the tokens' iss and aud (`ah webui` options; the
                                              signer is made from them) */
};
/* Checks the URL and starts the proxy's thread. 0, or AH_E_INVAL / AH_E_NOMEM with reterr. */
int proxy_start(const struct proxy_config *cfg, struct proxy **ret, struct ah_problem *reterr);
/* Registers /_ah/healthz and /api/v1/... for every method; before api_webui_register. */
int proxy_register(struct router *r, struct proxy *px);
/* Ends every transfer (handlers waiting for an answer return at once) and stops the thread;
 * call before http_server_stop, then proxy_free after it. */
void proxy_shutdown(struct proxy *px);
void proxy_free(struct proxy *px); /* NULL-safe */

/* HTTP CONNECT through the access point to an executor's sshd (connect.c; issue 16 item 7):
 * give api_tunnels_hook to http_config.connect; set the executor link once it runs (NULL
 * before stopping it, after the HTTP server stopped). */
struct api_tunnels;
struct link_server;
int api_tunnels_new(struct api_ctx *ctx, struct api_tunnels **ret);
const struct http_connect_hook *api_tunnels_hook(struct api_tunnels *t);
void api_tunnels_set_link(struct api_tunnels *t, struct link_server *sv);
void api_tunnels_free(struct api_tunnels *t); /* NULL-safe */

/* The store once the services are up, else NULL (safe from any thread). */
struct store *api_store(struct api_ctx *ctx);
/* Publishes the services to the handlers (all three, or all NULL to withdraw them). */
void api_set_services(struct api_ctx *ctx, struct store *st, struct bus *bus,
                      struct executor *ex);

/* ---- the services behind the handlers (services.c) ------------------------------------------- */

/* Placement (D43; placement.c): what the scheduler asks before it starts a queued session
 * locally (exec_config.place_local with a struct api_placer as its argument). */
struct api_placer {
    struct fleet *fleet;
    struct executor *exec; /* set before exec_start */
};
bool api_place_local(void *arg, struct session_row *row);
/* exec_config.place: here, on an executor (issue 16 item 5), or not yet. */
int api_place(void *arg, struct session_row *row, char *executor, size_t n);
bool api_remote_possible(void *arg);

struct api_services {
    struct store *store;
    struct bus *bus;
    struct executor *exec;
    struct agent_catalog *catalog; /* agent versions, detected off the HTTP threads */
    struct fleet *fleet;           /* enrolled executors (issue 16), loaded from the store */
    struct api_placer *placer;     /* the scheduler's placement hook (owned) */
    struct remote_ap *remote;      /* sessions on executors (issue 16 item 5; owned) */
};
/* Opens the store (migrating it), starts the event writer and the executor (which recovers the
 * sessions of a previous run, D15), and the agent catalog (its version checks run in the
 * background). On failure everything started is stopped again and reterr
 * says why. */
int api_services_start(const char *db, const struct exec_config *ec, struct api_services *ret,
                       struct ah_problem *reterr);
/* The reverse order: the supervisor stops before the writer drains (its completions still reach
 * the executor), and the store closes last. Safe on a zeroed struct. */
void api_services_stop(struct api_services *sv);

/* ---- the in-process task manager (local.c) -------------------------------------------------- */

struct api_local_options {
    const char *db;                /* the store, as for the daemon */
    const struct exec_config *exec; /* how sessions run */
    const char *tenant;            /* NULL: "default" */
};
/* An ah_task_manager over the server core of this process: the same handlers as the REST API
 * (without HTTP) and the bus for events. Sessions it starts run under this process and are
 * re-attached by whoever opens the same data next (D15). Free with ah_task_manager_free. */
int api_local_new(const struct api_local_options *o, ah_task_manager **ret,
                  struct ah_problem *reterr);

/* Starts/stops the thread behind every SSE stream (keep-alives, recording growth). */
int api_streams_start(struct api_ctx *ctx);
void api_streams_stop(void);

#endif
