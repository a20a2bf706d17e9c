/*
 * calls.c — one typed function per endpoint of /api/v1 that the server implements. Each one
 * checks its arguments, builds the path (ids percent-encoded) and the body, runs client_call
 * (retries included) and turns the JSON answer into the result struct. An answer that is not
 * the JSON expected is AH_E_PROTOCOL, never a crash.
 */
#include <string.h>

#include "client_internal.h"


static int protocol_error(struct ah_api_error *reterr, const struct cresp *rs, const char *what) {
    problem_local(reterr, AH_E_PROTOCOL, "unexpected answer to %s (HTTP %d)", what, rs->status);
    if (reterr) {
        reterr->status = rs->status;
        if (rs->request_id)
            reterr->request_id = strdup(rs->request_id);
    }
    return AH_E_PROTOCOL;
}

/* Runs one call and parses its JSON answer (*ret_json NULL when the body is empty). */
static int call_json(ah_client *c, const char *method, const char *path, const char *body,
                     enum ah_endpoint ep, unsigned flags, json_t **ret_json,
                     struct ah_api_error *reterr) {
    struct creq rq = {.method = method, .path = path, .body = body, .ep = ep, .flags = flags};
    struct cresp rs;
    int rc = client_call(c, &rq, &rs, reterr);
    if (rc < 0)
        return rc;
    json_t *j = NULL;
    if (rs.body.n) {
        int perr = AH_E_PROTOCOL;
        j = json_parse_text(rs.body.p, rs.body.n, &perr);
        if (!j) {
            rc = perr == AH_E_NOMEM ? (problem_local(reterr, perr, "out of memory"), perr)
                                    : protocol_error(reterr, &rs, path);
            cresp_clear(&rs);
            return rc;
        }
    }
    cresp_clear(&rs);
    *ret_json = j;
    return 0;
}

static int build_error(struct ah_api_error *reterr, int rc, const char *method, const char *path) {
    if (rc == AH_E_PROTOCOL)
        problem_local(reterr, rc, "unexpected answer to %s %s", method, path);
    else
        problem_local(reterr, rc, "cannot read the answer to %s %s", method, path);
    return rc;
}

/* call_json, then a builder (one of the *_from_json_t of types.c, which write *ret only on
 * success); AH_E_PROTOCOL when the answer is empty or has the wrong shape. */
#define CALL_BUILD(c, method, path, body, ep, builder, ret, reterr)                                \
    ({                                                                                             \
        json_t *j_ = NULL;                                                                         \
        int rc_ = call_json(c, method, path, body, ep, 0, &j_, reterr);                            \
        if (rc_ == 0) {                                                                            \
            rc_ = j_ ? builder(j_, ret) : AH_E_PROTOCOL;                                           \
            json_decref(j_);                                                                       \
            if (rc_ < 0)                                                                           \
                build_error(reterr, rc_, method, path);                                            \
        }                                                                                          \
        rc_;                                                                                       \
    })

/* A request path that could not be built: out of memory, or the caller's arguments make it
 * longer than AH_LIMIT_URL (an invalid argument). */
static int path_error(int rc, struct ah_api_error *reterr) {
    rc = rc == AH_E_NOMEM ? AH_E_NOMEM : AH_E_INVAL;
    problem_local(reterr, rc, rc == AH_E_NOMEM ? "out of memory" : "the URL is too long");
    return rc;
}

/* "/api/v1/<coll>/<escaped id><suffix>" */
static int item_path(struct ah_buf *b, const char *coll, const char *id, const char *suffix) {
    int rc = ah_buf_printf(b, "/api/v1/%s/", coll);
    if (rc == 0)
        rc = ah_buf_url_escape(b, id);
    if (rc == 0 && suffix)
        rc = ah_buf_puts(b, suffix);
    return rc;
}

static int bad_arg(struct ah_api_error *reterr, const char *what) {
    problem_local(reterr, AH_E_INVAL, "%s", what);
    return AH_E_INVAL;
}

/* ---- health -----------------------------------------------------------------------------------
 */

int ah_client_healthz(ah_client *c, struct ah_api_error *reterr) {
    if (!c)
        return AH_E_INVAL;
    json_t *j = NULL;
    int rc = call_json(c, "GET", "/api/v1/healthz", NULL, AH_EP_HEALTH, 0, &j, reterr);
    json_decref(j);
    return rc;
}

int ah_client_readyz(ah_client *c, struct ah_api_error *reterr) {
    if (!c)
        return AH_E_INVAL;
    json_t *j = NULL;
    int rc =
        call_json(c, "GET", "/api/v1/readyz", NULL, AH_EP_HEALTH, CREQ_NO_RETRY_STATUS, &j, reterr);
    json_decref(j);
    return rc;
}

int ah_client_version(ah_client *c, struct ah_version **ret, struct ah_api_error *reterr) {
    if (!c || !ret)
        return bad_arg(reterr, "client and ret are required");
    return CALL_BUILD(c, "GET", "/api/v1/version", NULL, AH_EP_HEALTH, version_from_json_t, ret,
                      reterr);
}

/* ---- tasks ------------------------------------------------------------------------------------
 */

int ah_client_create_task_json(ah_client *c, const char *body_json, struct ah_task_created **ret,
                               struct ah_api_error *reterr) {
    if (!c || !body_json || !ret)
        return bad_arg(reterr, "client, body and ret are required");
    json_t *chk = json_parse_text(body_json, strlen(body_json), NULL);
    bool ok = json_is_object(chk);
    json_decref(chk);
    if (!ok)
        return bad_arg(reterr, "the body must be a JSON object");
    return CALL_BUILD(c, "POST", "/api/v1/tasks", body_json, AH_EP_TASKS, task_created_from_json_t,
                      ret, reterr);
}

int ah_client_create_task(ah_client *c, const struct ah_task_spec *spec,
                          struct ah_task_created **ret, struct ah_api_error *reterr) {
    if (!c || !ret)
        return bad_arg(reterr, "client and ret are required");
    char *body = NULL;
    int rc = ah_task_spec_to_json(spec, false, &body, reterr);
    if (rc < 0)
        return rc;
    rc = CALL_BUILD(c, "POST", "/api/v1/tasks", body, AH_EP_TASKS, task_created_from_json_t, ret,
                    reterr);
    free(body);
    return rc;
}

/* ---- sessions ---------------------------------------------------------------------------------
 */

int ah_client_list_sessions(ah_client *c, const struct ah_session_filter *f,
                            struct ah_session_list **ret, struct ah_api_error *reterr) {
    if (!c || !ret)
        return bad_arg(reterr, "client and ret are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    bool first = true;
    int rc = ah_buf_puts(&p, "/api/v1/sessions");
    if (f && rc == 0) {
        rc = ah_buf_query_add(&p, &first, "status", f->status) ?:
             ah_buf_query_add(&p, &first, "agent", f->agent) ?:
             ah_buf_query_add(&p, &first, "projectId", f->project_id) ?:
             ah_buf_query_add(&p, &first, "tenantId", f->tenant_id);
        if (rc == 0 && f->page > 0)
            rc = ah_buf_query_add_int(&p, &first, "page", f->page);
        if (rc == 0 && f->per_page > 0)
            rc = ah_buf_query_add_int(&p, &first, "perPage", f->per_page);
    }
    if (rc) {
        ah_buf_clear(&p);
        return path_error(rc, reterr);
    }
    rc = CALL_BUILD(c, "GET", p.p, NULL, AH_EP_SESSIONS, session_list_from_json_t, ret, reterr);
    ah_buf_clear(&p);
    return rc;
}

int ah_client_get_session(ah_client *c, const char *id, struct ah_session **ret,
                          struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret)
        return bad_arg(reterr, "client, id and ret are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    int rc = item_path(&p, "sessions", id, NULL);
    if (rc == 0)
        rc = CALL_BUILD(c, "GET", p.p, NULL, AH_EP_SESSIONS, session_from_json_t, ret, reterr);
    else
        rc = path_error(rc, reterr);
    ah_buf_clear(&p);
    return rc;
}

/* POST …/<verb> with an optional body; reads {status} from the answer. */
static int control(ah_client *c, const char *id, const char *verb, const char *body,
                   enum ah_session_status *ret_status, struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id))
        return bad_arg(reterr, "client and id are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    int rc = item_path(&p, "sessions", id, verb);
    if (rc < 0) {
        ah_buf_clear(&p);
        return path_error(rc, reterr);
    }
    json_t *j = NULL;
    rc = call_json(c, "POST", p.p, body, AH_EP_CONTROL, 0, &j, reterr);
    ah_buf_clear(&p);
    if (rc == 0 && ret_status)
        *ret_status = ah_session_status_parse(json_string_value(json_object_get(j, "status")));
    json_decref(j);
    return rc;
}

int ah_client_pause_session(ah_client *c, const char *id, enum ah_session_status *ret_status,
                            struct ah_api_error *reterr) {
    return control(c, id, "/pause", NULL, ret_status, reterr);
}

int ah_client_resume_session(ah_client *c, const char *id, enum ah_session_status *ret_status,
                             struct ah_api_error *reterr) {
    return control(c, id, "/resume", NULL, ret_status, reterr);
}

int ah_client_stop_session(ah_client *c, const char *id, const char *reason,
                           enum ah_session_status *ret_status, struct ah_api_error *reterr) {
    char *body = NULL;
    if (reason) {
        json_t *j = json_pack("{s:s}", "reason", reason);
        body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!body) {
            problem_local(reterr, AH_E_NOMEM, "out of memory");
            return AH_E_NOMEM;
        }
    }
    int rc = control(c, id, "/stop", body, ret_status, reterr);
    free(body);
    return rc;
}

int ah_client_delete_session(ah_client *c, const char *id, bool purge,
                             struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id))
        return bad_arg(reterr, "client and id are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    int rc = item_path(&p, "sessions", id, purge ? "?purge=true" : NULL);
    if (rc < 0) {
        ah_buf_clear(&p);
        return path_error(rc, reterr);
    }
    json_t *j = NULL;
    rc = call_json(c, "DELETE", p.p, NULL, AH_EP_CONTROL, 0, &j, reterr);
    json_decref(j);
    ah_buf_clear(&p);
    return rc;
}

int ah_client_prompt_session(ah_client *c, const char *id, const char *text,
                             struct ah_prompt_ack **ret, struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !text)
        return bad_arg(reterr, "client, id and text are required");
    json_t *b = json_pack("{s:s}", "prompt", text);
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    struct ah_buf p = {.max = AH_LIMIT_URL};
    int rc = body ? item_path(&p, "sessions", id, "/prompt") : AH_E_NOMEM;
    if (rc < 0) {
        free(body);
        ah_buf_clear(&p);
        return path_error(rc, reterr);
    }
    json_t *j = NULL;
    rc = call_json(c, "POST", p.p, body, AH_EP_CONTROL, 0, &j, reterr);
    free(body);
    if (rc == 0 && ret) {
        json_t *ack = j ? json_incref(j) : json_object();
        rc = ack ? prompt_ack_from_json_t(ack, ret) : AH_E_NOMEM;
        json_decref(ack);
        if (rc < 0)
            problem_local(reterr, rc, "unexpected answer to POST %s", p.p);
    }
    json_decref(j);
    ah_buf_clear(&p);
    return rc;
}

int ah_client_session_logs(ah_client *c, const char *id, int64_t tail, struct ah_event_list **ret,
                           struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret || tail < 0)
        return bad_arg(reterr, "client, id and ret are required; tail must be ≥ 0");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    bool first = true;
    int rc = item_path(&p, "sessions", id, "/logs");
    if (rc == 0 && tail > 0)
        rc = ah_buf_query_add_int(&p, &first, "tail", tail);
    if (rc == 0)
        rc = CALL_BUILD(c, "GET", p.p, NULL, AH_EP_LOGS, event_list_from_json_t, ret, reterr);
    else
        rc = path_error(rc, reterr);
    ah_buf_clear(&p);
    return rc;
}

int ah_client_list_events(ah_client *c, const char *id, const struct ah_event_query *q,
                          struct ah_event_list **ret, struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret)
        return bad_arg(reterr, "client, id and ret are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    bool first = true;
    int rc = item_path(&p, "sessions", id, "/events");
    if (q && rc == 0) {
        rc = ah_buf_query_add(&p, &first, "type", q->types) ?:
             ah_buf_query_add(&p, &first, "level", q->level) ?:
             ah_buf_query_add(&p, &first, "since", q->since) ?:
             ah_buf_query_add(&p, &first, "until", q->until);
        if (rc == 0 && q->after > 0)
            rc = ah_buf_query_add_int(&p, &first, "after", q->after);
        if (rc == 0)
            rc = ah_buf_query_add(&p, &first, "sort", q->sort);
        if (rc == 0 && q->page > 0)
            rc = ah_buf_query_add_int(&p, &first, "page", q->page);
        if (rc == 0 && q->per_page > 0)
            rc = ah_buf_query_add_int(&p, &first, "perPage", q->per_page);
    }
    if (rc) {
        ah_buf_clear(&p);
        return path_error(rc, reterr);
    }
    rc = CALL_BUILD(c, "GET", p.p, NULL, AH_EP_LOGS, event_list_from_json_t, ret, reterr);
    ah_buf_clear(&p);
    return rc;
}

/* ---- drafts -----------------------------------------------------------------------------------
 */

int ah_client_list_drafts(ah_client *c, struct ah_draft_list **ret, struct ah_api_error *reterr) {
    if (!c || !ret)
        return bad_arg(reterr, "client and ret are required");
    return CALL_BUILD(c, "GET", "/api/v1/drafts", NULL, AH_EP_DRAFTS, draft_list_from_json_t, ret,
                      reterr);
}

int ah_client_get_draft(ah_client *c, const char *id, struct ah_draft **ret,
                        struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret)
        return bad_arg(reterr, "client, id and ret are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    int rc = item_path(&p, "drafts", id, NULL);
    if (rc == 0)
        rc = CALL_BUILD(c, "GET", p.p, NULL, AH_EP_DRAFTS, draft_from_json_t, ret, reterr);
    else
        rc = path_error(rc, reterr);
    ah_buf_clear(&p);
    return rc;
}

/* POST or PUT a draft body; the answer is a draft (or, from R, a bare id string). */
static int draft_write(ah_client *c, const char *method, const char *path,
                       const struct ah_task_spec *spec, struct ah_draft **ret,
                       struct ah_api_error *reterr) {
    char *body = NULL;
    int rc = ah_task_spec_to_json(spec, true, &body, reterr);
    if (rc < 0)
        return rc;
    json_t *j = NULL;
    rc = call_json(c, method, path, body, AH_EP_DRAFTS, 0, &j, reterr);
    free(body);
    if (rc == 0 && ret) {
        json_t *d = json_is_string(j) ? json_pack("{s:O}", "id", j)
                    : j               ? json_incref(j)
                                      : json_object();
        rc = d ? draft_from_json_t(d, ret) : AH_E_NOMEM;
        json_decref(d);
        if (rc < 0)
            problem_local(reterr, rc, "unexpected answer to %s %s", method, path);
    }
    json_decref(j);
    return rc;
}

int ah_client_create_draft(ah_client *c, const struct ah_task_spec *spec, struct ah_draft **ret,
                           struct ah_api_error *reterr) {
    if (!c || !spec)
        return bad_arg(reterr, "client and spec are required");
    return draft_write(c, "POST", "/api/v1/drafts", spec, ret, reterr);
}

int ah_client_update_draft(ah_client *c, const char *id, const struct ah_task_spec *spec,
                           struct ah_draft **ret, struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !spec)
        return bad_arg(reterr, "client, id and spec are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    int rc = item_path(&p, "drafts", id, NULL);
    if (rc == 0)
        rc = draft_write(c, "PUT", p.p, spec, ret, reterr);
    else
        rc = path_error(rc, reterr);
    ah_buf_clear(&p);
    return rc;
}

int ah_client_delete_draft(ah_client *c, const char *id, struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id))
        return bad_arg(reterr, "client and id are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    int rc = item_path(&p, "drafts", id, NULL);
    json_t *j = NULL;
    if (rc == 0)
        rc = call_json(c, "DELETE", p.p, NULL, AH_EP_DRAFTS, 0, &j, reterr);
    else
        rc = path_error(rc, reterr);
    json_decref(j);
    ah_buf_clear(&p);
    return rc;
}

/* ---- repositories -----------------------------------------------------------------------------
 */

int ah_client_list_repos(ah_client *c, const char *tenant_id, const char *project_id,
                         struct ah_repo_list **ret, struct ah_api_error *reterr) {
    if (!c || !ret)
        return bad_arg(reterr, "client and ret are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    bool first = true;
    int rc = ah_buf_puts(&p, "/api/v1/repos") ?:
             ah_buf_query_add(&p, &first, "tenantId", tenant_id) ?:
             ah_buf_query_add(&p, &first, "projectId", project_id);
    if (rc) {
        ah_buf_clear(&p);
        return path_error(rc, reterr);
    }
    rc = CALL_BUILD(c, "GET", p.p, NULL, AH_EP_REPOS, repo_list_from_json_t, ret, reterr);
    ah_buf_clear(&p);
    return rc;
}

int ah_client_list_branches(ah_client *c, const char *repo_id, struct ah_branch_list **ret,
                            struct ah_api_error *reterr) {
    if (!c || !client_id_ok(repo_id) || !ret)
        return bad_arg(reterr, "client, repo_id and ret are required");
    struct ah_buf p = {.max = AH_LIMIT_URL};
    int rc = item_path(&p, "repositories", repo_id, "/branches");
    if (rc == 0)
        rc = CALL_BUILD(c, "GET", p.p, NULL, AH_EP_REPOS, branch_list_from_json_t, ret, reterr);
    else
        rc = path_error(rc, reterr);
    ah_buf_clear(&p);
    return rc;
}

/* ---- raw --------------------------------------------------------------------------------------
 */

int ah_client_request(ah_client *c, const char *method, const char *path, const char *body_json,
                      int *ret_status, char **ret_body, struct ah_api_error *reterr) {
    if (!c || !method || !path || path[0] != '/' || strpbrk(path, " \r\n"))
        return bad_arg(reterr, "client, method and a path starting with / are required");
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0 &&
        strcmp(method, "DELETE") != 0 && strcmp(method, "PATCH") != 0)
        return bad_arg(reterr, "method must be GET, POST, PUT, PATCH or DELETE");
    struct creq rq = {.method = method, .path = path, .body = body_json, .ep = AH_EP_RAW};
    struct cresp rs;
    int rc = client_call(c, &rq, &rs, reterr);
    if (rc < 0)
        return rc;
    if (ret_body) {
        char *b = ah_buf_steal(&rs.body);
        if (!b) {
            cresp_clear(&rs);
            problem_local(reterr, AH_E_NOMEM, "out of memory");
            return AH_E_NOMEM;
        }
        *ret_body = b;
    }
    if (ret_status)
        *ret_status = rs.status;
    cresp_clear(&rs);
    return 0;
}
