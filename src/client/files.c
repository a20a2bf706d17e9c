/*
 * files.c — libah-client calls for what a session changed (API.md §7.6, §7.9): the changed
 * files, one file's content, diffs and the workspace tree. The answers are handed over as the
 * server's JSON text (or the patch text for format=patch), which the caller parses as it likes:
 * these shapes are wide and mostly passed on (to a terminal, a UI, `git apply`).
 */
#include <string.h>

#include "client_internal.h"

static int bad(struct ah_api_error *reterr, const char *what) {
    problem_local(reterr, AH_E_INVAL, "%s", what);
    return AH_E_INVAL;
}

/* "/api/v1/sessions/<id>/<what>[/<path, each segment escaped>]" */
static int base_path(struct ah_buf *b, const char *id, const char *what, const char *file) {
    int rc = ah_buf_puts(b, "/api/v1/sessions/");
    if (rc == 0)
        rc = ah_buf_url_escape(b, id);
    if (rc == 0)
        rc = ah_buf_printf(b, "/%s", what);
    for (const char *s = file; rc == 0 && s && *s;) {
        size_t n = strcspn(s, "/");
        char *seg = strndup(s, n);
        rc = seg ? ah_buf_puts(b, "/") : AH_E_NOMEM;
        if (rc == 0)
            rc = ah_buf_url_escape(b, seg);
        free(seg);
        s += n;
        while (*s == '/')
            s++;
    }
    return rc;
}

static int get(ah_client *c, struct ah_buf *p, int rc, char **ret, struct ah_api_error *reterr) {
    if (rc) {
        ah_buf_clear(p);
        problem_local(reterr, rc == AH_E_NOMEM ? AH_E_NOMEM : AH_E_INVAL,
                      rc == AH_E_NOMEM ? "out of memory" : "the URL is too long");
        return rc == AH_E_NOMEM ? AH_E_NOMEM : AH_E_INVAL;
    }
    rc = ah_client_request(c, "GET", p->p, NULL, NULL, ret, reterr);
    ah_buf_clear(p);
    return rc;
}

int ah_client_session_files(ah_client *c, const char *id, const struct ah_files_query *q,
                            char **ret_json, struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret_json)
        return bad(reterr, "client, id and ret_json are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    bool first = true;
    int rc = base_path(&p, id, "files", NULL);
    if (rc == 0 && q) {
        rc = ah_buf_query_add(&p, &first, "from", q->from) ?:
             ah_buf_query_add(&p, &first, "to", q->to) ?:
             ah_buf_query_add(&p, &first, "status", q->status) ?:
             ah_buf_query_add(&p, &first, "path", q->path);
        if (rc == 0 && q->page > 0)
            rc = ah_buf_query_add_int(&p, &first, "page", q->page);
        if (rc == 0 && q->per_page > 0)
            rc = ah_buf_query_add_int(&p, &first, "perPage", q->per_page);
    }
    return get(c, &p, rc, ret_json, reterr);
}

int ah_client_session_file_content(ah_client *c, const char *id, const char *path,
                                   const char *to, char **ret_json,
                                   struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !path || !*path || !ret_json)
        return bad(reterr, "client, id, path and ret_json are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    bool first = true;
    /* ?path= reaches any name, "search" and "content" included (D32) */
    int rc = base_path(&p, id, "files/content", NULL) ?:
             ah_buf_query_add(&p, &first, "path", path) ?: ah_buf_query_add(&p, &first, "to", to);
    return get(c, &p, rc, ret_json, reterr);
}

int ah_client_session_diff(ah_client *c, const char *id, const struct ah_diff_query *q,
                           char **ret_body, struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret_body)
        return bad(reterr, "client, id and ret_body are required");
    if (q && (q->context < -1 || q->context > 10))
        return bad(reterr, "context must be 0..10 (or -1 for the server's default)");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    bool first = true;
    int rc = base_path(&p, id, "diff", q ? q->path : NULL);
    if (rc == 0 && q) {
        rc = ah_buf_query_add(&p, &first, "from", q->from) ?:
             ah_buf_query_add(&p, &first, "to", q->to) ?:
             ah_buf_query_add(&p, &first, "format", q->format);
        if (rc == 0 && q->context >= 0)
            rc = ah_buf_query_add_int(&p, &first, "context", q->context);
        if (rc == 0 && q->full)
            rc = ah_buf_query_add(&p, &first, "full", "true");
    }
    return get(c, &p, rc, ret_body, reterr);
}

int ah_client_workspace_tree(ah_client *c, const char *id, const char *dir, bool recursive,
                             bool modified_only, char **ret_json, struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret_json)
        return bad(reterr, "client, id and ret_json are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    bool first = true;
    int rc = base_path(&p, id, "workspace/files", NULL) ?:
             ah_buf_query_add(&p, &first, "path", dir) ?:
             ah_buf_query_add(&p, &first, "recursive", recursive ? "true" : NULL) ?:
             ah_buf_query_add(&p, &first, "modified_only", modified_only ? "true" : NULL);
    return get(c, &p, rc, ret_json, reterr);
}
