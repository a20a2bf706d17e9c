/*
 * webhooks.c — GET /sessions/{id}/webhooks (issue 15 item 8): where the deliveries of the
 * session's webhooks stand. The deliveries themselves run in exec/webhooks.c, off the HTTP
 * threads; this reads the state they save (the task's definitions plus each webhook's cursor,
 * counters and retry schedule). Secrets are never shown, only whether deliveries are signed.
 */
#include <string.h>

#include "chat_int.h"

static json_t *time_or_null_ms(json_t *ms) {
    if (!json_is_integer(ms) || json_integer_value(ms) <= 0)
        return json_null();
    char t[TIME_RFC3339_LEN + 1];
    time_format(json_integer_value(ms), t);
    return json_string(t);
}

static const char *status_of(const json_t *st, bool ended) {
    if (json_is_true(json_object_get(st, "done")))
        return "done";
    if (json_integer_value(json_object_get(st, "attempts")) > 0)
        return "retrying";
    if (json_integer_value(json_object_get(st, "pendingSeq")) > 0)
        return "delivering";
    return ended ? "delivering" : "active";
}

static void webhooks_get(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row)
        return;
    json_t *defs = json_object_get(session_row_request(row), "webhooks");
    AH_AUTO(json_decrefp) json_t *state = exec_webhooks_state(ctx->exec, row->id);
    json_t *saved = json_object_get(state, "hooks");
    bool ended = session_status_terminal(row->status);
    json_t *out = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(defs, i, d) {
        json_t *st = json_array_get(saved, i);
        json_t *events = json_object_get(d, "events");
        AH_AUTOFREE char *url = text_redact_userinfo(json_string_value(json_object_get(d, "url")));
        json_t *h = json_pack(
            "{s:i, s:s?, s:o, s:b, s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o}", "index", (int)i,
            "url", url,
            "events", events ? json_incref(events) : json_pack("[O]", json_object_get(d, "event")),
            "signed", json_object_get(d, "secret") != NULL, "status", status_of(st, ended),
            "lastDeliveredSeq", (json_int_t)json_integer_value(json_object_get(st, "cursor")),
            "delivered", (json_int_t)json_integer_value(json_object_get(st, "delivered")),
            "failed", (json_int_t)json_integer_value(json_object_get(st, "failed")), "attempts",
            (json_int_t)json_integer_value(json_object_get(st, "attempts")), "lastAttemptAt",
            time_or_null_ms(json_object_get(st, "lastAttemptAt")), "lastSuccessAt",
            time_or_null_ms(json_object_get(st, "lastSuccessAt")), "nextAttemptAt",
            time_or_null_ms(json_object_get(st, "nextAttemptAt")), "lastStatusCode",
            json_integer_value(json_object_get(st, "lastStatus")) > 0
                ? json_integer(json_integer_value(json_object_get(st, "lastStatus")))
                : json_null());
        const char *err = json_string_value(json_object_get(st, "lastError"));
        if (h)
            json_object_set_new(h, "lastError", err && *err ? json_string(err) : json_null());
        if (!h || json_array_append_new(out, h) < 0) {
            json_decref(out);
            http_error(req, res, AH_E_NOMEM, "out of memory");
            return;
        }
    }
    http_json(req, res, 200,
              json_pack("{s:o, s:I}", "webhooks", out, "total", (json_int_t)json_array_size(out)));
}

int api_webhooks_register(struct router *r, struct api_ctx *ctx) {
    return router_add(r, "GET", "/api/v1/sessions/{id}/webhooks", webhooks_get, ctx, 0, 0);
}
