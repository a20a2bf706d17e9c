/*
 * snapview.h — private to api/: a request's view of a session's private object store (D30, D32),
 * of workspace_routes.c (tree, info, download, path search); files.c makes it.
 */
#ifndef AH_API_SNAPVIEW_H
#define AH_API_SNAPVIEW_H

#include "routes.h"

struct view {
    struct api_ctx *ctx;
    struct session_row *row;
    struct ws_store *st;
    char base[WS_SNAP_ID_LEN + 1];
    char from[WS_SNAP_ID_LEN + 1]; /* ?from=, default base */
    char to[WS_SNAP_ID_LEN + 1];   /* ?to=, default current */
    int64_t to_ms;                 /* when `to` was taken */
};
/* Loads the {id} session, opens its store and resolves ?from= and ?to=. false after answering
 * (404 without a base snapshot yet, 400 for a malformed point). view_clear in every case. */
bool view_open(struct view *v, struct http_request *req, struct http_response *res);
void view_clear(struct view *v);
/* GET files, files/{path}, files/search, diff, diff/{path}, workspace/files and
 * workspace/search/files (files.c): answered by the workspace layer (ws_answer) from the
 * session's store here, or forwarded to the executor that holds a remote session. */
void api_workspace_read(struct http_request *req, struct http_response *res,
                        enum ws_ask_kind kind);
/* Makes snapshot `id` of another session of the same lineage (its parent, an ancestor, a
 * branch of it, a branch of its parent…) readable in st, the store of row (timeline.c): the
 * timeline of branches compares across sessions. 0, or AH_E_NOTFOUND when id is not a
 * snapshot of that lineage. */
int tl_import_snapshot(struct api_ctx *ctx, const struct session_row *row, struct ws_store *st,
                       const char *id);
/* The changes from v->from to v->to; false after answering 500. */
bool changes_or_fail(struct view *v, struct http_request *req, struct http_response *res,
                     struct ws_changes *ch);
/* Query helpers: a bad value becomes a field error in p. */
bool query_bool(struct http_request *req, const char *name, bool def, struct ah_problem *p);
int64_t query_int(struct http_request *req, const char *name, int64_t def, int64_t min,
                  int64_t max, struct ah_problem *p);
/* GET /sessions/{id}/delivery: a `patch` delivery's artifact (delivery.c). */
void delivery_get(struct http_request *req, struct http_response *res);

#endif
