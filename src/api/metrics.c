/*
 * metrics.c — GET /metrics: the Prometheus text exposition (D49) of every counter the layers
 * keep (obs.h), plus what is computed at scrape time: sessions by state. The route is outside
 * /api/v1 because that is where scrapers look; it reads no ids and takes no parameters.
 */
#include <string.h>

#include "../obs/obs.h"
#include "routes.h"

#define METRICS_MAX (4u * 1024 * 1024) /* the exposition is ~100 KiB; a cap all the same */

/* Live sessions by state (every state that is not terminal, 0 included, so a series never
 * vanishes), from the store's view of every tenant. */
static void sessions_by_state(struct api_ctx *ctx, struct ah_buf *out) {
    struct store *st = api_store(ctx);
    if (!st)
        return; /* not ready: the family is left out rather than reported as zeros */
    struct session_row **rows = NULL;
    size_t n = 0;
    if (store_session_list_live(st, &rows, &n) < 0)
        return;
    int64_t count[SESSION_STATUS_COUNT] = {0};
    for (size_t i = 0; i < n; i++)
        if ((unsigned)rows[i]->status < SESSION_STATUS_COUNT)
            count[rows[i]->status]++;
    session_rows_free(rows, n);
    obs_write_header(out, "ah_sessions", "Sessions that have not ended, by state", OBS_GAUGE);
    for (int s = 0; s < SESSION_STATUS_COUNT; s++) {
        if (session_status_terminal((enum session_status)s))
            continue;
        char lab[64];
        snprintf(lab, sizeof(lab), "state=\"%s\"", session_status_name((enum session_status)s));
        obs_write_sample(out, "ah_sessions", lab, (double)count[s]);
    }
}

static void get_metrics(struct http_request *req, struct http_response *res) {
    struct ah_buf b = {.max = METRICS_MAX};
    int rc = obs_render(&b);
    if (rc == 0) {
        sessions_by_state(req->route_ctx, &b);
        if (!b.p || b.p[b.n - 1] != '\n') /* the last append failed */
            rc = AH_E_NOMEM;
    }
    if (rc < 0) {
        ah_buf_clear(&b);
        http_error(req, res, AH_E_NOMEM, "cannot render the metrics");
        return;
    }
    res->status = 200;
    res->body_len = b.n;
    res->body = ah_buf_steal(&b);
    res->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

int api_metrics_register(struct router *r, struct api_ctx *ctx) {
    return router_add(r, "GET", "/metrics", get_metrics, ctx, 0, 0) ? AH_E_NOMEM : 0;
}
