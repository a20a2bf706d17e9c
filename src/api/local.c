/*
 * local.c — the task manager of <ah/task_manager.h> over the in-process server core: no HTTP,
 * no socket. Requests go through the very router and handlers the network uses (http_loopback),
 * so local and remote answer alike (same validation, same Problems, same JSON, turned into the
 * same public result types); events come straight from the bus. Sessions run under this
 * process's executor and, like the daemon's, survive it: the next local or daemon start on the
 * same data re-attaches them (D15).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "routes.h"

struct local {
    struct api_ctx ctx;
    struct api_services sv;
    struct router *router;
    char tenant[AH_LIMIT_NAME + 1];
};

/* ---- calls through the router ---------------------------------------------------------------- */

/* A Problem like the server's, as an error (unknown session and friends). */
static int local_problem(struct ah_api_error *reterr, int code, const char *detail) {
    struct ah_problem p = {.code = code};
    snprintf(p.detail, sizeof(p.detail), "%s", detail);
    json_t *j = problem_to_json(&p, NULL, NULL);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    ah_api_error_from_answer(reterr, ah_error_status(code), text, text ? strlen(text) : 0);
    free(text);
    return code;
}

/* One request; 2xx answers put their body in *ret_body (caller frees, may be NULL for 204),
 * others become reterr as a client would see them. */
static int call(struct local *l, const char *method, const char *target, const char *body,
                char **ret_body, struct ah_api_error *reterr) {
    struct http_kv headers[] = {{"X-Tenant-ID", l->tenant},
                                {"Content-Type", "application/json"}};
    struct http_loopback_request lr = {.method = method, .target = target, .body = body,
                                       .body_len = body ? strlen(body) : 0, .headers = headers,
                                       .n_headers = 2};
    struct http_request req;
    struct http_response res;
    int rc = http_loopback(l->router, &lr, &req, &res);
    if (rc == 0 && res.stream) { /* a streaming answer has no place in a call */
        http_stream_unref(res.stream);
        res.stream = NULL;
        rc = AH_E_PROTOCOL;
    }
    if (rc < 0) {
        http_loopback_done(&req, &res);
        return local_problem(reterr, rc, "the in-process call failed");
    }
    int status = res.status;
    if (status >= 300) {
        rc = ah_api_error_from_answer(reterr, status, res.body, res.body_len);
    } else if (ret_body) {
        *ret_body = AH_TAKE(res.body);
    }
    http_loopback_done(&req, &res);
    return rc;
}

/* ---- the ops --------------------------------------------------------------------------------- */

static int launch_task(void *impl, const struct ah_task_spec *spec, struct ah_task_created **ret,
                       struct ah_api_error *reterr) {
    AH_AUTOFREE char *body = NULL, *out = NULL;
    int rc = ah_task_spec_to_json(spec, false, &body, reterr);
    if (rc == 0)
        rc = call(impl, "POST", "/api/v1/tasks", body, &out, reterr);
    return rc < 0 ? rc : ah_task_created_from_json(out, ret);
}

static int list_sessions(void *impl, const struct ah_session_filter *f,
                         struct ah_session_list **ret, struct ah_api_error *reterr) {
    struct ah_buf t = {0};
    bool first = true;
    int rc = ah_buf_puts(&t, "/api/v1/sessions");
    if (f && rc == 0) {
        rc = ah_buf_query_add(&t, &first, "status", f->status) ?:
             ah_buf_query_add(&t, &first, "agent", f->agent) ?:
             ah_buf_query_add(&t, &first, "projectId", f->project_id) ?:
             ah_buf_query_add(&t, &first, "tenantId", f->tenant_id);
        if (rc == 0 && f->page)
            rc = ah_buf_query_add_int(&t, &first, "page", f->page);
        if (rc == 0 && f->per_page)
            rc = ah_buf_query_add_int(&t, &first, "perPage", f->per_page);
    }
    AH_AUTOFREE char *out = NULL;
    if (rc == 0)
        rc = call(impl, "GET", t.p, NULL, &out, reterr);
    ah_buf_clear(&t);
    return rc < 0 ? rc : ah_session_list_from_json(out, ret);
}

/* "/api/v1/<prefix><id><suffix>" with id encoded. NULL on OOM. */
static char *target(const char *prefix, const char *id, const char *suffix) {
    struct ah_buf t = {0};
    if (ah_buf_puts(&t, prefix) < 0 || ah_buf_url_escape(&t, id) < 0 || ah_buf_puts(&t, suffix) < 0) {
        ah_buf_clear(&t);
        return NULL;
    }
    return ah_buf_steal(&t);
}

static int get_json(struct local *l, const char *prefix, const char *id, const char *suffix,
                    char **ret, struct ah_api_error *reterr) {
    AH_AUTOFREE char *t = target(prefix, id, suffix);
    return t ? call(l, "GET", t, NULL, ret, reterr) : AH_E_NOMEM;
}

static int get_session(void *impl, const char *id, struct ah_session **ret,
                       struct ah_api_error *reterr) {
    AH_AUTOFREE char *out = NULL;
    int rc = get_json(impl, "/api/v1/sessions/", id, "", &out, reterr);
    return rc < 0 ? rc : ah_session_from_json(out, ret);
}

static int list_drafts(void *impl, struct ah_draft_list **ret, struct ah_api_error *reterr) {
    AH_AUTOFREE char *out = NULL;
    int rc = call(impl, "GET", "/api/v1/drafts?perPage=200", NULL, &out, reterr);
    return rc < 0 ? rc : ah_draft_list_from_json(out, ret);
}

static int save_draft(void *impl, const char *draft_id, const struct ah_task_spec *spec,
                      struct ah_draft **ret, struct ah_api_error *reterr) {
    AH_AUTOFREE char *body = NULL, *out = NULL, *t = NULL;
    int rc = ah_task_spec_to_json(spec, true, &body, reterr);
    if (rc == 0 && draft_id) {
        t = target("/api/v1/drafts/", draft_id, "");
        rc = t ? call(impl, "PUT", t, body, &out, reterr) : AH_E_NOMEM;
    } else if (rc == 0) {
        rc = call(impl, "POST", "/api/v1/drafts", body, &out, reterr);
    }
    if (rc < 0 || !ret)
        return rc;
    return ah_draft_from_json(out, ret);
}

static int delete_draft(void *impl, const char *draft_id, struct ah_api_error *reterr) {
    AH_AUTOFREE char *t = target("/api/v1/drafts/", draft_id, "");
    return t ? call(impl, "DELETE", t, NULL, NULL, reterr) : AH_E_NOMEM;
}

static int list_repositories(void *impl, struct ah_repo_list **ret, struct ah_api_error *reterr) {
    AH_AUTOFREE char *out = NULL;
    int rc = call(impl, "GET", "/api/v1/repos?perPage=200", NULL, &out, reterr);
    return rc < 0 ? rc : ah_repo_list_from_json(out, ret);
}

static int list_branches(void *impl, const char *repo_id, struct ah_branch_list **ret,
                         struct ah_api_error *reterr) {
    AH_AUTOFREE char *out = NULL;
    int rc = get_json(impl, "/api/v1/repositories/", repo_id, "/branches", &out, reterr);
    return rc < 0 ? rc : ah_branch_list_from_json(out, ret);
}

static int control(void *impl, const char *id, enum ah_control op, const char *prompt,
                   enum ah_session_status *ret_status, struct ah_api_error *reterr) {
    static const char *const verbs[] = {"/pause", "/resume", "/stop"};
    AH_AUTOFREE char *t = NULL, *out = NULL, *body = NULL;
    int rc;
    enum ah_session_status st = AH_STATUS_UNKNOWN;
    switch (op) {
    case AH_CONTROL_PAUSE:
    case AH_CONTROL_RESUME:
    case AH_CONTROL_STOP:
        t = target("/api/v1/sessions/", id, verbs[op]);
        rc = t ? call(impl, "POST", t, NULL, &out, reterr) : AH_E_NOMEM;
        if (rc == 0) {
            json_t *j = json_loads(out ? out : "", 0, NULL);
            st = ah_session_status_parse(json_string_value(json_object_get(j, "status")));
            json_decref(j);
        }
        break;
    case AH_CONTROL_CANCEL:
        t = target("/api/v1/sessions/", id, "");
        rc = t ? call(impl, "DELETE", t, NULL, NULL, reterr) : AH_E_NOMEM;
        st = AH_STATUS_CANCELLED;
        break;
    case AH_CONTROL_PROMPT: {
        json_t *b = json_pack("{s:s}", "prompt", prompt);
        body = b ? json_dumps(b, JSON_COMPACT) : NULL;
        json_decref(b);
        t = target("/api/v1/sessions/", id, "/prompt");
        rc = t && body ? call(impl, "POST", t, body, &out, reterr) : AH_E_NOMEM;
        st = AH_STATUS_RUNNING;
        break;
    }
    default:
        return AH_E_INVAL;
    }
    if (rc == 0 && ret_status)
        *ret_status = st;
    return rc;
}

/* ---- events: straight from the bus ----------------------------------------------------------- */

struct wake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool pending;
};

static void on_wake(void *arg) { /* the bus calls this under its channel lock: just flag */
    struct wake *w = arg;
    pthread_mutex_lock(&w->mu);
    w->pending = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int stream_events(void *impl, const char *id, const struct ah_stream_options *opt,
                         ah_event_fn cb, void *userdata, int64_t *ret_last_seq,
                         struct ah_api_error *reterr) {
    struct local *l = impl;
    if (ret_last_seq) /* written on every return (the contract of ah_client_stream_events) */
        *ret_last_seq = opt ? opt->after_seq : 0;
    AH_AUTO(session_row_freep) struct session_row *row = NULL;
    int rc = ulid_valid(id) ? store_session_get(l->sv.store, l->tenant, id, &row)
                            : AH_E_NOTFOUND;
    if (rc < 0)
        return local_problem(reterr, rc, rc == AH_E_NOTFOUND ? "no such session" : "store error");
    int64_t after = opt ? opt->after_seq : 0;
    if (opt && !after && opt->tail > 0)
        after = row->last_seq > opt->tail ? row->last_seq - opt->tail : 0;
    int64_t last = after;
    if (ret_last_seq)
        *ret_last_seq = last;
    /* a session that had ended before we looked: what is left, then stop */
    bool ended_before = session_status_terminal(row->status);
    if (ended_before && after >= row->last_seq)
        return 0;
    struct wake w = {.pending = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    struct bus_sub *sub = NULL;
    if ((rc = bus_subscribe(l->sv.bus, l->tenant, id, after, on_wake, &w, &sub)) < 0) {
        pthread_mutex_destroy(&w.mu);
        pthread_cond_destroy(&w.cv);
        return local_problem(reterr, rc, "cannot follow the session");
    }
    bool done = false;
    while (!done && rc == 0) {
        if (opt && opt->cancel && ah_cancel_triggered(opt->cancel)) {
            rc = local_problem(reterr, AH_E_CANCELED, "the stream was cancelled");
            break;
        }
        struct bus_event *evs[64];
        int n = bus_next(sub, evs, 64);
        if (n < 0) {
            rc = local_problem(reterr, n, "cannot read the session's events");
            break;
        }
        for (int i = 0; i < n; i++) {
            struct ah_event *ev = NULL;
            if (!done && rc == 0) {
                if (ah_event_from_json(evs[i]->json, &ev) < 0) {
                    rc = local_problem(reterr, AH_E_NOMEM, "out of memory");
                } else {
                    int stop = cb(userdata, ev);
                    last = evs[i]->seq;
                    if (ret_last_seq)
                        *ret_last_seq = last;
                    done = evs[i]->terminal || (ended_before && last >= row->last_seq);
                    if (stop && !done)
                        rc = local_problem(reterr, AH_E_CANCELED, "stopped by the callback");
                }
                ah_event_free(ev);
            }
            bus_event_unref(evs[i]);
        }
        if (n == 0 && !done && rc == 0) { /* wait for the bus, waking now and then for cancel */
            pthread_mutex_lock(&w.mu);
            if (!w.pending) {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_nsec += 200 * 1000000L;
                until.tv_sec += until.tv_nsec / 1000000000L;
                until.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&w.cv, &w.mu, &until);
            }
            w.pending = false;
            pthread_mutex_unlock(&w.mu);
        }
    }
    bus_unsubscribe(sub);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

/* ---- life ------------------------------------------------------------------------------------ */

static void destroy(void *impl) {
    struct local *l = impl;
    if (!l)
        return;
    api_set_services(&l->ctx, NULL, NULL, NULL);
    api_services_stop(&l->sv);
    router_free(l->router);
    free(l);
}

static const struct ah_task_manager_ops local_ops = {
    .size = sizeof(struct ah_task_manager_ops),
    .name = "local",
    .launch_task = launch_task,
    .stream_events = stream_events,
    .list_sessions = list_sessions,
    .get_session = get_session,
    .list_drafts = list_drafts,
    .save_draft = save_draft,
    .delete_draft = delete_draft,
    .list_repositories = list_repositories,
    .list_branches = list_branches,
    .control = control,
    .destroy = destroy,
};

int api_local_new(const struct api_local_options *o, ah_task_manager **ret,
                  struct ah_problem *reterr) {
    struct local *l = calloc(1, sizeof(*l));
    if (!l)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    snprintf(l->tenant, sizeof(l->tenant), "%s", o->tenant ? o->tenant : "default");
    l->ctx.version = "local";
    l->router = router_new();
    int rc = l->router && api_register(l->router, &l->ctx) == 0 ? 0 : AH_E_NOMEM;
    if (rc < 0)
        problem_set(reterr, rc, "out of memory");
    if (rc == 0)
        rc = api_services_start(o->db, o->exec, &l->sv, reterr);
    if (rc == 0) {
        l->ctx.catalog = l->sv.catalog;
        api_set_services(&l->ctx, l->sv.store, l->sv.bus, l->sv.exec);
        rc = ah_task_manager_new(&local_ops, l, ret);
        if (rc < 0)
            problem_set(reterr, rc, "cannot create the task manager");
    }
    if (rc < 0) {
        destroy(l);
        return rc;
    }
    return 0;
}
