/*
 * delivery.c — the result of a session's delivery (issue 11 item 7; exec/delivery.c makes it):
 * the session's `delivery` field (what the task asked for, plus the outcome recorded by the
 * `delivery` event) and GET /sessions/{id}/delivery, the patch artifact of a `patch` delivery.
 */
#include <stdio.h>
#include <string.h>

#include "../os/os.h"
#include "snapview.h"

#define PATCH_ANSWER_MAX (256u * 1024 * 1024)

json_t *api_delivery_json(struct api_ctx *ctx, const struct session_row *row, const json_t *req) {
    json_t *asked = json_object_get(req, "delivery");
    if (!json_is_object(asked))
        return NULL;
    json_t *d = json_deep_copy(asked);
    if (!d)
        return NULL;
    static const char *const types[] = {"delivery", NULL};
    struct event_filter f = {.types = types, .ascending = false};
    struct page pg = {1, 1};
    json_t *items = NULL;
    int64_t total = 0;
    if (store_event_list(ctx->store, row->tenant_id, row->id, &f, &pg, &items, &total) == 0) {
        json_t *ev = json_array_get(items, 0);
        static const char *const keys[] = {"status", "url", "branch", "commit", "error", NULL};
        for (size_t i = 0; ev && keys[i]; i++)
            if (json_object_get(ev, keys[i]))
                json_object_set(d, keys[i], json_object_get(ev, keys[i]));
    }
    json_decref(items);
    if (!json_object_get(d, "status")) /* nothing recorded yet, or never will be */
        json_object_set_new(d, "status", json_string(session_status_terminal(row->status)
                                                         ? "none"
                                                         : "pending"));
    return d;
}

void delivery_get(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row)
        return;
    const char *mode =
        json_string_value(json_object_get(json_object_get(session_row_request(row), "delivery"),
                                          "mode"));
    if (!mode || strcmp(mode, "patch") != 0) {
        http_error(req, res, AH_E_NOTFOUND,
                   mode ? "session %s delivers as a %s, not as a patch: see its delivery field"
                        : "session %s has no delivery (the task asked for none)%s",
                   row->id, mode ? mode : "");
        return;
    }
    AH_AUTOFREE char *path = exec_delivery_path(ctx->exec, row->id);
    char *text = NULL;
    size_t len = 0;
    int rc = path ? read_file(path, PATCH_ANSWER_MAX, &text, &len) : AH_E_NOMEM;
    if (rc < 0) {
        if (rc == AH_E_IO)
            http_error(req, res, AH_E_NOTFOUND,
                       "session %s has no patch yet (it is %s; the patch is made when it "
                       "completes)",
                       row->id, session_status_name(row->status));
        else
            http_error(req, res, rc, "cannot read the session's patch: %s", ah_strerror(rc));
        return;
    }
    res->status = 200;
    res->body = text;
    res->body_len = len;
    res->content_type = "text/x-diff; charset=utf-8";
}
