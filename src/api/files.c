/*
 * files.c — what the agent changed (API.md §7.6, D30–D32): the changed files, one file's detail,
 * preview and content, and diffs, between two points of the session's private object store,
 * and the regular-expression search over a snapshot's files.
 * The answers themselves are the workspace layer's (workspace/answer.c: ws_answer), so an
 * executor answers a session it runs with the same code; this file finds the session, answers
 * a local one from its store here and forwards the read of a remote one over the executor link
 * (issue 16 item 5), the HTTP request waiting suspended for the answer (http_later).
 *
 * `current` on an active local session takes a snapshot of the workspace now, on the HTTP
 * thread: snapshots are incremental (a stat walk; only files whose metadata changed are read),
 * so this costs about what a directory listing costs, and the store's writer lock serialises
 * it with the automatic snapshots. On an ended session the workspace no longer changes and
 * `current` is its last snapshot (the final one).
 *
 * A remote read: {type:"WorkspaceRead", session_id, tenant, kind, tail, query, accept} on an
 * RPC stream to the executor that holds the session (enroll/remote_ap.h for the answer's
 * framing, its size cap and time limit). A file's detail gets its history (events, which are
 * the access point's) added here in both cases.
 */
#include <stdlib.h>
#include <string.h>

#include "../enroll/remote_ap.h"
#include "snapview.h"

#define HISTORY_MAX 1000 /* file_edit events scanned for one file's history */

/* ---- points, stores and paths ----------------------------------------------------------------- */

void view_clear(struct view *v) {
    ws_store_free(v->st);
    session_row_free(v->row);
    memset(v, 0, sizeof(*v));
}

struct local_points {
    struct api_ctx *ctx;
    const struct session_row *row;
};

/* `current` of a session of this server: a snapshot now while it runs, else its last one. */
static int local_current(void *arg, struct ws_store *st, char out[WS_SNAP_ID_LEN + 1]) {
    struct local_points *lp = arg;
    const struct session_row *row = lp->row;
    bool active = !session_status_terminal(row->status) && row->workspace_path;
    int rc = active ? exec_snapshot_current(lp->ctx->exec, row->tenant_id, row->id,
                                            row->workspace_path, st, out)
                    : ws_snapshot_latest(st, out);
    if (rc == AH_E_NOTFOUND && active) /* the workspace is gone: its last state */
        rc = ws_snapshot_latest(st, out);
    return rc;
}

static int local_import(void *arg, struct ws_store *st, const char *id) {
    struct local_points *lp = arg;
    return tl_import_snapshot(lp->ctx, lp->row, st, id);
}

/* The base snapshot and the open store of a local session; false after answering. */
static bool open_store(struct api_ctx *ctx, const struct session_row *row,
                       struct http_request *req, struct http_response *res,
                       char base[WS_SNAP_ID_LEN + 1], struct ws_store **ret) {
    if (exec_snapshot_base(ctx->exec, row->id, base) < 0) {
        http_error(req, res, AH_E_NOTFOUND, "session %s has no workspace snapshot yet (it is %s)",
                   row->id, session_status_name(row->status));
        return false;
    }
    AH_AUTOFREE char *dir = exec_snapshot_dir(ctx->exec, row->id);
    int rc = dir ? ws_store_open(dir, ret) : AH_E_NOMEM;
    if (rc < 0) {
        http_error(req, res, AH_E_INTERNAL, "cannot open the session's snapshots: %s",
                   ah_strerror(rc));
        return false;
    }
    return true;
}

/* Loads the session, opens its store and resolves from/to. false after answering. */
bool view_open(struct view *v, struct http_request *req, struct http_response *res) {
    memset(v, 0, sizeof(*v));
    v->ctx = api_ready(req, res);
    if (!v->ctx || !(v->row = api_session_load(v->ctx, req, res, NULL)) ||
        !api_session_local_or_fail(req, res, v->row, "the workspace's facts and archive"))
        return false;
    if (!open_store(v->ctx, v->row, req, res, v->base, &v->st))
        return false;
    struct local_points lp = {v->ctx, v->row};
    struct ws_point_hooks h = {local_current, local_import, &lp};
    struct ws_points pt;
    struct ah_problem p = {0};
    if (ws_points_resolve(v->st, v->base, http_query(req, "from"), http_query(req, "to"),
                          http_query(req, "at"), &h, &pt, &p) < 0) {
        http_fail(req, res, &p);
        return false;
    }
    memcpy(v->from, pt.from, sizeof(v->from));
    memcpy(v->to, pt.to, sizeof(v->to));
    v->to_ms = pt.to_ms;
    return true;
}

bool changes_or_fail(struct view *v, struct http_request *req, struct http_response *res,
                     struct ws_changes *ch) {
    int rc = ws_changes(v->st, v->from, v->to, ch);
    if (rc < 0)
        http_error(req, res, AH_E_INTERNAL, "cannot compare the snapshots: %s", ah_strerror(rc));
    return rc == 0;
}

bool query_bool(struct http_request *req, const char *name, bool def, struct ah_problem *p) {
    return param_bool(http_query(req, name), name, def, p);
}

int64_t query_int(struct http_request *req, const char *name, int64_t def, int64_t min,
                  int64_t max, struct ah_problem *p) {
    return param_int(http_query(req, name), name, def, min, max, p);
}

/* The history of a path: the file_edit events naming it, oldest first, with their seq. */
static json_t *history(struct api_ctx *ctx, const struct session_row *row, const char *path) {
    static const char *const types[] = {"file_edit", NULL};
    struct event_filter f = {.types = types, .ascending = true};
    json_t *out = json_array();
    for (int64_t page = 1; out && page <= HISTORY_MAX / PAGE_MAX_PER_PAGE; page++) {
        struct page pg = {.page = page, .per_page = PAGE_MAX_PER_PAGE};
        json_t *items = NULL;
        int64_t total = 0;
        if (store_event_list(ctx->store, row->tenant_id, row->id, &f, &pg, &items,
                             &total) < 0)
            break;
        size_t i;
        json_t *e;
        json_array_foreach(items, i, e) {
            const char *fp = json_string_value(json_object_get(e, "file_path"));
            const char *old = json_string_value(json_object_get(e, "old_path"));
            if (!fp || (strcmp(fp, path) != 0 && !(old && strcmp(old, path) == 0)))
                continue;
            const char *d = json_string_value(json_object_get(e, "description"));
            json_array_append_new(
                out, json_pack("{s:O, s:s, s:s, s:O}", "timestamp", json_object_get(e, "ts"),
                               "event_type", "file_edit", "description", d ? d : "edited", "seq",
                               json_object_get(e, "seq")));
        }
        size_t n = json_array_size(items);
        json_decref(items);
        if (n < PAGE_MAX_PER_PAGE)
            break;
    }
    return out;
}

/* ---- the routes --------------------------------------------------------------------------------- */

/* The query as an object of strings (the first of a repeated parameter, as http_query); NULL
 * with p set (a value that is not UTF-8 names no path, status or format of ours: 400). */
static json_t *query_object(const struct http_request *req, struct ah_problem *p) {
    json_t *o = json_object();
    for (size_t i = 0; o && i < req->n_query; i++) {
        const struct http_kv *kv = &req->query[i];
        if (json_object_get(o, kv->name))
            continue;
        json_t *v = json_string(kv->value);
        if (!v) {
            problem_field(p, kv->name, "must be valid UTF-8");
            json_decref(o);
            return NULL;
        }
        if (json_object_set_new(o, kv->name, v) < 0) {
            json_decref(o);
            o = NULL;
        }
    }
    if (!o)
        problem_set(p, AH_E_NOMEM, "out of memory");
    return o;
}

/* A 200 answer; a file's detail gets its history (the access point's events). Takes json,
 * body and hist. */
static void answer_ok(struct http_response *res, json_t *json, char *body, size_t len,
                      const char *content_type, json_t *hist) {
    if (json && hist)
        json_object_set_new(json, "history", json_incref(hist));
    json_decref(hist);
    res->status = 200;
    res->json = json;
    res->body = body;
    res->body_len = len;
    res->content_type = content_type;
}

/* ---- a remote session: the read goes to its executor ------------------------------------------- */

struct rread {
    struct http_later *later;
    char executor[256];
    json_t *history; /* a file's detail: its history, read here before the read went out */
};

static void rread_free(struct rread *q) {
    json_decref(q->history);
    free(q);
}

/* On the link's loop thread: the executor answered, or the read failed (res->problem). */
static void rread_done(void *arg, struct remote_read_result *r) {
    struct rread *q = arg;
    if (r->problem.code) {
        http_later_fail(q->later, &r->problem);
        rread_free(q);
        return;
    }
    struct http_response res = {0};
    bool json = r->content_type && strcmp(r->content_type, "application/json") == 0;
    if (json && q->history) { /* a file's detail (small): parsed to add the history */
        json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, NULL);
        if (!j) {
            struct ah_problem p = {0};
            problem_set(&p, AH_E_PROTOCOL, "executor %.200s answered with malformed JSON",
                        q->executor);
            http_later_fail(q->later, &p);
            rread_free(q);
            return;
        }
        answer_ok(&res, j, NULL, 0, NULL, AH_TAKE(q->history));
    } else { /* passed on as the executor made it */
        answer_ok(&res, NULL, AH_TAKE(r->body), r->len,
                  json ? "application/json" : "text/x-diff; charset=utf-8", NULL);
        if (!res.body)
            res.body = strdup("");
    }
    http_later_answer(q->later, &res);
    rread_free(q);
}

static void remote_read(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
                        const struct session_row *row, const struct ws_ask *a) {
    if (!ctx->remote) {
        http_error(req, res, AH_E_NETWORK,
                   "session %s runs on executor %.200s, and this server has no executor link "
                   "(no --quic-port)",
                   row->id, row->executor_id);
        return;
    }
    struct rread *q = calloc(1, sizeof(*q));
    json_t *accept = a->accept ? json_string(a->accept) : NULL; /* not UTF-8: none of ours */
    json_t *msg = q ? json_pack("{s:s, s:s, s:s, s:s, s:s?, s:O, s:o?, s:b}", "type",
                                "WorkspaceRead", "session_id", row->id, "tenant", row->tenant_id,
                                "kind", ws_ask_kind_name(a->kind), "tail", a->tail, "query",
                                a->query, "accept", accept, "ended",
                                session_status_terminal(row->status))
                    : (json_decref(accept), NULL);
    char path[WS_PATH_MAX + 1];
    if (q) {
        snprintf(q->executor, sizeof(q->executor), "%s", row->executor_id);
        if (ws_ask_detail_path(a, path))
            q->history = history(ctx, row, path);
    }
    if (!q || !msg || !(q->later = http_later(req, res))) {
        json_decref(msg);
        if (q)
            rread_free(q);
        http_error(req, res, AH_E_NOMEM, "out of memory while forwarding the read");
        return;
    }
    /* from here on the answer is rread_done's, whatever happens */
    remote_ap_read(ctx->remote, row->executor_id, msg, rread_done, q);
}

void api_workspace_read(struct http_request *req, struct http_response *res,
                        enum ws_ask_kind kind) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    struct ah_problem p = {0};
    AH_AUTO(json_decrefp) json_t *query = query_object(req, &p);
    struct ws_ask a = {kind, http_param(req, "path"), query, http_header(req, "Accept")};
    if (!query || ws_ask_check(&a, &p) < 0) { /* before the session is looked for, as every route */
        http_fail(req, res, &p);
        return;
    }
    struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row)
        return;
    if (row->executor_id) {
        remote_read(ctx, req, res, row, &a);
        session_row_free(row);
        return;
    }
    char base[WS_SNAP_ID_LEN + 1];
    struct ws_store *st = NULL;
    if (open_store(ctx, row, req, res, base, &st)) {
        struct local_points lp = {ctx, row};
        struct ws_point_hooks h = {local_current, local_import, &lp};
        struct ws_reply r;
        ws_answer(st, base, &a, &h, &r);
        if (r.problem.code)
            http_fail(req, res, &r.problem);
        else {
            char path[WS_PATH_MAX + 1];
            answer_ok(res, AH_TAKE(r.json), AH_TAKE(r.body), r.body_len, r.content_type,
                      ws_ask_detail_path(&a, path) ? history(ctx, row, path) : NULL);
        }
        ws_reply_clear(&r);
    }
    ws_store_free(st);
    session_row_free(row);
}

static void list_files(struct http_request *req, struct http_response *res) {
    api_workspace_read(req, res, WS_ASK_FILES);
}
static void get_file(struct http_request *req, struct http_response *res) {
    api_workspace_read(req, res, WS_ASK_FILE);
}
static void get_diff(struct http_request *req, struct http_response *res) {
    api_workspace_read(req, res, WS_ASK_DIFF);
}
static void get_file_diff(struct http_request *req, struct http_response *res) {
    api_workspace_read(req, res, WS_ASK_FILE_DIFF);
}

/* D32: files/search is the search route; without ?q= but with ?path= it reads that file (which
 * is how a file literally named "search" is reached). */
static void search_or_file(struct http_request *req, struct http_response *res) {
    if (!http_query(req, "q") && http_query(req, "path"))
        get_file(req, res);
    else
        api_workspace_read(req, res, WS_ASK_SEARCH);
}

int api_files_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/files", list_files, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/files/search", search_or_file, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/files/{path...}", get_file, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/diff", get_diff, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/diff/{path...}", get_file_diff, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
