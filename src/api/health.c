/*
 * health.c — liveness, readiness and version (API.md §7.1). Readiness is 503 until the store is
 * open and answering, so a load balancer does not route to a replica still migrating.
 */
#include "api.h"

static json_t *status_body(const char *status) {
    char ts[TIME_RFC3339_LEN + 1];
    time_format(time_now_ms(), ts);
    return json_pack("{s:s, s:s}", "status", status, "timestamp", ts);
}

static void get_healthz(struct http_request *req, struct http_response *res) {
    http_json(req, res, 200, status_body("ok"));
}

static void get_readyz(struct http_request *req, struct http_response *res) {
    struct store *st = api_store(req->route_ctx);
    bool open = store_ready(st), ready = open && store_writable(st);
    json_t *body = status_body(ready ? "ready" : "not_ready");
    if (body && !ready) /* D50: a store that refuses writes is not ready either */
        json_object_set_new(body, "detail",
                            json_string(!open ? "the store is not open yet"
                                              : "the database cannot store writes (disk full "
                                                "or I/O error); retrying by itself"));
    http_json(req, res, ready ? 200 : 503, body);
}

static void get_version(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = req->route_ctx;
    http_json(req, res, 200,
              json_pack("{s:s, s:{s:s?, s:s?}}", "version", ctx->version, "build_info",
                        "git_commit", ctx->git_commit, "build_date", ctx->build_date));
}

int api_health_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/healthz", get_healthz, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/readyz", get_readyz, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/version", get_version, ctx, 0, 0);
    rc |= router_add(r, "GET", "/_ah/healthz", get_readyz, ctx, 0, 0); /* D21: web UI liveness */
    return rc ? AH_E_NOMEM : 0;
}
