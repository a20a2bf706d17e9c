/*
 * tm.c — the task-manager wrapper (argument checks, then one op) and the remote
 * implementation, where every op is one libah-client call.
 *
 * The wrapper is where the interface's contract is enforced for every implementation alike:
 * required pointers, a prompt only with AH_CONTROL_PROMPT, known enum values. An op therefore
 * only sees well-formed arguments. Slot for the third implementation: `local` (the in-process
 * server core, no HTTP) will live in tm_local.c next to tm_mock.c; see <ah/task_manager.h>.
 */
#include <string.h>

#include "client_internal.h"

struct ah_task_manager {
    const struct ah_task_manager_ops *ops;
    void *impl;
};

static int bad(struct ah_api_error *reterr, const char *what) {
    problem_local(reterr, AH_E_INVAL, "%s", what);
    return AH_E_INVAL;
}

int ah_task_manager_new(const struct ah_task_manager_ops *ops, void *impl, ah_task_manager **ret) {
    if (!ops || !ret || ops->size < sizeof(struct ah_task_manager_ops) || !ops->launch_task ||
        !ops->stream_events || !ops->list_sessions || !ops->get_session || !ops->list_drafts ||
        !ops->save_draft || !ops->delete_draft || !ops->list_repositories || !ops->list_branches ||
        !ops->control || !ops->destroy)
        return AH_E_INVAL;
    ah_task_manager *tm = calloc(1, sizeof(*tm));
    if (!tm)
        return AH_E_NOMEM;
    tm->ops = ops;
    tm->impl = impl;
    *ret = tm;
    return 0;
}

void ah_task_manager_free(ah_task_manager *tm) {
    if (!tm)
        return;
    tm->ops->destroy(tm->impl);
    free(tm);
}

const char *ah_task_manager_name(const ah_task_manager *tm) {
    return tm && tm->ops->name ? tm->ops->name : "unknown";
}

void *tm_impl_if(const ah_task_manager *tm, const struct ah_task_manager_ops *ops) {
    return tm && tm->ops == ops ? tm->impl : NULL;
}


int ah_task_manager_launch(ah_task_manager *tm, const struct ah_task_spec *spec,
                           struct ah_task_created **ret, struct ah_api_error *reterr) {
    if (!tm || !spec || !ret)
        return bad(reterr, "tm, spec and ret are required");
    return tm->ops->launch_task(tm->impl, spec, ret, reterr);
}

int ah_task_manager_stream_events(ah_task_manager *tm, const char *session_id,
                                  const struct ah_stream_options *opt, ah_event_fn cb,
                                  void *userdata, int64_t *ret_last_seq,
                                  struct ah_api_error *reterr) {
    if (!tm || !client_id_ok(session_id) || !cb)
        return bad(reterr, "tm, session_id and cb are required");
    if (opt && (opt->after_seq < 0 || opt->tail < 0))
        return bad(reterr, "after_seq and tail must be ≥ 0");
    return tm->ops->stream_events(tm->impl, session_id, opt, cb, userdata, ret_last_seq, reterr);
}

int ah_task_manager_list_sessions(ah_task_manager *tm, const struct ah_session_filter *filter,
                                  struct ah_session_list **ret, struct ah_api_error *reterr) {
    if (!tm || !ret)
        return bad(reterr, "tm and ret are required");
    if (filter && (filter->page < 0 || filter->per_page < 0))
        return bad(reterr, "page and per_page must be ≥ 0");
    return tm->ops->list_sessions(tm->impl, filter, ret, reterr);
}

int ah_task_manager_get_session(ah_task_manager *tm, const char *session_id,
                                struct ah_session **ret, struct ah_api_error *reterr) {
    if (!tm || !client_id_ok(session_id) || !ret)
        return bad(reterr, "tm, session_id and ret are required");
    return tm->ops->get_session(tm->impl, session_id, ret, reterr);
}

int ah_task_manager_list_drafts(ah_task_manager *tm, struct ah_draft_list **ret,
                                struct ah_api_error *reterr) {
    if (!tm || !ret)
        return bad(reterr, "tm and ret are required");
    return tm->ops->list_drafts(tm->impl, ret, reterr);
}

int ah_task_manager_initial_tasks(ah_task_manager *tm, struct ah_session_list **ret_sessions,
                                  struct ah_draft_list **ret_drafts, struct ah_api_error *reterr) {
    if (!tm || !ret_sessions || !ret_drafts)
        return bad(reterr, "tm and both outs are required");
    struct ah_session_list *sessions = NULL;
    struct ah_draft_list *drafts = NULL;
    int rc = tm->ops->list_sessions(tm->impl, NULL, &sessions, reterr);
    if (rc < 0)
        return rc;
    rc = tm->ops->list_drafts(tm->impl, &drafts, reterr);
    if (rc < 0) {
        ah_session_list_free(sessions);
        return rc;
    }
    *ret_sessions = sessions;
    *ret_drafts = drafts;
    return 0;
}

int ah_task_manager_save_draft(ah_task_manager *tm, const char *draft_id,
                               const struct ah_task_spec *spec, struct ah_draft **ret,
                               struct ah_api_error *reterr) {
    if (!tm || !spec || (draft_id && !client_id_ok(draft_id)))
        return bad(reterr, "tm and spec are required");
    return tm->ops->save_draft(tm->impl, draft_id, spec, ret, reterr);
}

int ah_task_manager_delete_draft(ah_task_manager *tm, const char *draft_id,
                                 struct ah_api_error *reterr) {
    if (!tm || !client_id_ok(draft_id))
        return bad(reterr, "tm and draft_id are required");
    return tm->ops->delete_draft(tm->impl, draft_id, reterr);
}

int ah_task_manager_list_repositories(ah_task_manager *tm, struct ah_repo_list **ret,
                                      struct ah_api_error *reterr) {
    if (!tm || !ret)
        return bad(reterr, "tm and ret are required");
    return tm->ops->list_repositories(tm->impl, ret, reterr);
}

int ah_task_manager_list_branches(ah_task_manager *tm, const char *repo_id,
                                  struct ah_branch_list **ret, struct ah_api_error *reterr) {
    if (!tm || !client_id_ok(repo_id) || !ret)
        return bad(reterr, "tm, repo_id and ret are required");
    return tm->ops->list_branches(tm->impl, repo_id, ret, reterr);
}

int ah_task_manager_control(ah_task_manager *tm, const char *session_id, enum ah_control op,
                            const char *prompt, enum ah_session_status *ret_status,
                            struct ah_api_error *reterr) {
    if (!tm || !client_id_ok(session_id))
        return bad(reterr, "tm and session_id are required");
    if ((int)op < AH_CONTROL_PAUSE || op > AH_CONTROL_PROMPT)
        return bad(reterr, "unknown control verb");
    if ((op == AH_CONTROL_PROMPT) != (prompt != NULL))
        return bad(reterr, "a prompt goes with AH_CONTROL_PROMPT and only with it");
    return tm->ops->control(tm->impl, session_id, op, prompt, ret_status, reterr);
}

/* ---- remote -----------------------------------------------------------------------------------
 */

static int r_launch(void *impl, const struct ah_task_spec *spec, struct ah_task_created **ret,
                    struct ah_api_error *reterr) {
    return ah_client_create_task(impl, spec, ret, reterr);
}

static int r_stream(void *impl, const char *id, const struct ah_stream_options *opt, ah_event_fn cb,
                    void *ud, int64_t *ret_last_seq, struct ah_api_error *reterr) {
    return ah_client_stream_events(impl, id, opt, cb, ud, ret_last_seq, reterr);
}

static int r_list_sessions(void *impl, const struct ah_session_filter *f,
                           struct ah_session_list **ret, struct ah_api_error *reterr) {
    return ah_client_list_sessions(impl, f, ret, reterr);
}

static int r_get_session(void *impl, const char *id, struct ah_session **ret,
                         struct ah_api_error *reterr) {
    return ah_client_get_session(impl, id, ret, reterr);
}

static int r_list_drafts(void *impl, struct ah_draft_list **ret, struct ah_api_error *reterr) {
    return ah_client_list_drafts(impl, ret, reterr);
}

static int r_save_draft(void *impl, const char *id, const struct ah_task_spec *spec,
                        struct ah_draft **ret, struct ah_api_error *reterr) {
    if (id)
        return ah_client_update_draft(impl, id, spec, ret, reterr);
    return ah_client_create_draft(impl, spec, ret, reterr);
}

static int r_delete_draft(void *impl, const char *id, struct ah_api_error *reterr) {
    return ah_client_delete_draft(impl, id, reterr);
}

static int r_list_repos(void *impl, struct ah_repo_list **ret, struct ah_api_error *reterr) {
    return ah_client_list_repos(impl, NULL, NULL, ret, reterr);
}

static int r_list_branches(void *impl, const char *repo_id, struct ah_branch_list **ret,
                           struct ah_api_error *reterr) {
    return ah_client_list_branches(impl, repo_id, ret, reterr);
}

static int r_control(void *impl, const char *id, enum ah_control op, const char *prompt,
                     enum ah_session_status *ret_status, struct ah_api_error *reterr) {
    ah_client *c = impl;
    switch (op) {
    case AH_CONTROL_PAUSE: return ah_client_pause_session(c, id, ret_status, reterr);
    case AH_CONTROL_RESUME: return ah_client_resume_session(c, id, ret_status, reterr);
    case AH_CONTROL_STOP: return ah_client_stop_session(c, id, NULL, ret_status, reterr);
    case AH_CONTROL_CANCEL: {
        int rc = ah_client_delete_session(c, id, false, reterr);
        if (rc == 0 && ret_status)
            *ret_status = AH_STATUS_CANCELLED; /* D14: 204, the record stays `cancelled` */
        return rc;
    }
    case AH_CONTROL_PROMPT: {
        int rc = ah_client_prompt_session(c, id, prompt, NULL, reterr);
        if (rc == 0 && ret_status)
            *ret_status = AH_STATUS_RUNNING; /* only a running session takes prompts */
        return rc;
    }
    }
    return bad(reterr, "unknown control verb");
}

static void r_destroy(void *impl) {
    (void)impl; /* the client is borrowed */
}

static const struct ah_task_manager_ops remote_ops = {
    .size = sizeof(struct ah_task_manager_ops),
    .name = "remote",
    .launch_task = r_launch,
    .stream_events = r_stream,
    .list_sessions = r_list_sessions,
    .get_session = r_get_session,
    .list_drafts = r_list_drafts,
    .save_draft = r_save_draft,
    .delete_draft = r_delete_draft,
    .list_repositories = r_list_repos,
    .list_branches = r_list_branches,
    .control = r_control,
    .destroy = r_destroy,
};

int ah_task_manager_new_remote(ah_client *client, ah_task_manager **ret) {
    if (!client)
        return AH_E_INVAL;
    return ah_task_manager_new(&remote_ops, client, ret);
}
