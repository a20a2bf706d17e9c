/*
 * branch.c — session branches (API.md §7.8):
 *
 *   POST /sessions/{id}/session-branch   a new session from a point of this one's timeline
 *   GET  /sessions/{id}/branches         the branches made from this session
 *
 * A branch is an ordinary session (its own task, one agent of the parent's type) whose
 * workspace starts as the chosen snapshot and whose history starts with the parent's events up
 * to that snapshot's seq, copied with their seq and `inherited: true`; its own events continue
 * the numbering (D33). The handler only writes rows: the store makes the task, the session and
 * the copies in one transaction, and the provisioning workers write the workspace out
 * (exec/branch.c), so nothing here waits on a checkout or an agent. A branch can be branched
 * again, and one point can be branched any number of times.
 */
#include <stdio.h>
#include <string.h>

#include "../agent/agent.h"
#include "timeline.h"

/* The branch's create request: the parent's, with one agent (the parent's type, its settings
 * or the body's), the injected message as its prompt, and `branch` naming where it came from. */
static json_t *branch_request(struct session_row *parent, json_t *settings, const char *message,
                              const struct fs_snapshot_row *s) {
    json_t *req = json_deep_copy(session_row_request(parent));
    if (!req)
        return NULL;
    json_t *agent = json_deep_copy(
        json_array_get(json_object_get(req, "agents"), (size_t)parent->agent_index));
    if (!agent)
        agent = json_pack("{s:s}", "type", parent->agent_type);
    if (agent) {
        json_object_set_new(agent, "count", json_integer(1));
        if (settings)
            json_object_set(agent, "settings", settings);
    }
    int rc = agent ? json_object_set_new(req, "agents", json_pack("[o]", agent)) : -1;
    if (rc == 0 && message)
        rc = json_object_set_new(req, "prompt",
                                 json_pack("[{s:s, s:s}]", "type", "text", "text", message));
    if (rc == 0)
        rc = json_object_set_new(req, "branch",
                                 json_pack("{s:s, s:s, s:I}", "parentSessionId", parent->id,
                                           "fsSnapshotId", s->id, "seq", (json_int_t)s->seq));
    if (rc < 0) {
        json_decref(req);
        return NULL;
    }
    return req;
}

static void post_branch(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    if (!body)
        return;
    struct ah_problem p = {0};
    static const char *const known[] = {"fromTs",          "seq",           "fsSnapshotId", "name",
                                        "injectedMessage", "autoSummarize", "agents",       NULL};
    api_only_members(body, known, &p);
    json_t *jts = json_object_get(body, "fromTs"), *jseq = json_object_get(body, "seq");
    json_t *jid = json_object_get(body, "fsSnapshotId"), *jname = json_object_get(body, "name");
    json_t *jmsg = json_object_get(body, "injectedMessage");
    json_t *jsum = json_object_get(body, "autoSummarize"), *agents = json_object_get(body, "agents");
    double ts = -1;
    int64_t seq = 0;
    if (jts)
        tl_seconds(jts, "fromTs", &ts, &p);
    if (jseq && (!json_is_integer(jseq) || json_integer_value(jseq) < 1))
        problem_field(&p, "seq", "must be an event seq (an integer ≥ 1)");
    else if (jseq)
        seq = json_integer_value(jseq);
    if (jid && (!json_is_string(jid) || json_string_length(jid) != WS_SNAP_ID_LEN))
        problem_field(&p, "fsSnapshotId", "must be a snapshot id (snap-<ULID>)");
    if (!jts && !jseq && !jid)
        problem_field(&p, "fsSnapshotId", "give fsSnapshotId, fromTs or seq");
    if ((!!jts + !!jseq + !!jid) > 1)
        problem_field(&p, jid ? "fsSnapshotId" : "seq",
                      "give only one of fsSnapshotId, fromTs and seq");
    if (jname && (!json_is_string(jname) || json_string_length(jname) > AH_LIMIT_NAME))
        problem_field(&p, "name", "must be a string of at most %d characters", AH_LIMIT_NAME);
    if (jmsg && (!json_is_string(jmsg) || json_string_length(jmsg) > AH_LIMIT_PROMPT ||
                 !json_string_length(jmsg)))
        problem_field(&p, "injectedMessage", "must be a string of 1 to %d bytes", AH_LIMIT_PROMPT);
    /* No summarizer stands behind a branch: the agent gets the whole conversation (its CLI's
     * resumed conversation, or the transcript in its prompt). Saying so beats ignoring it. */
    if (jsum && !json_is_boolean(jsum))
        problem_field(&p, "autoSummarize", "must be a boolean");
    else if (json_is_true(jsum))
        problem_field(&p, "autoSummarize",
                      "is not supported: the branch's agent is given the whole conversation up to "
                      "the branch point; leave it out or false");
    json_t *settings = NULL;
    if (agents) {
        json_t *a0 = json_array_get(agents, 0);
        settings = json_object_get(a0, "settings");
        const char *k2;
        json_t *v2;
        bool ok = json_is_array(agents) && json_array_size(agents) == 1 && json_is_object(a0);
        json_object_foreach(ok ? a0 : NULL, k2, v2) {
            if (strcmp(k2, "settings") && strcmp(k2, "type"))
                ok = false;
        }
        if (!ok || (settings && !json_is_object(settings)))
            problem_field(&p, "agents",
                          "must be one entry {settings} (the branch runs the parent's agent)");
        else if (json_object_get(settings, "scenario"))
            agent_scenario_check(json_object_get(settings, "scenario"),
                                 "agents[0].settings.scenario",
                                &p);
    }
    if (http_fail(req, res, &p))
        return;
    AH_AUTO(session_row_freep) struct session_row *parent = api_session_load(ctx, req, res, NULL);
    if (!parent || !api_session_local_or_fail(req, res, parent, "branches"))
        return;
    json_t *a0type = json_object_get(json_array_get(agents, 0), "type");
    if (a0type && (!json_is_string(a0type) ||
                   strcmp(json_string_value(a0type), parent->agent_type) != 0)) {
        problem_field(&p, "agents[0].type", "must be the parent's agent, %s", parent->agent_type);
        http_fail(req, res, &p);
        return;
    }
    char base[WS_SNAP_ID_LEN + 1];
    if (exec_snapshot_base(ctx->exec, parent->id, base) < 0) {
        http_error(req, res, AH_E_CONFLICT, "session %s has no workspace snapshot yet (it is %s)",
                   parent->id, session_status_name(parent->status));
        return;
    }
    struct fs_snapshot_row *s = NULL;
    if (!tl_pick(ctx, req, res, parent, json_string_value(jid), seq, ts, &s))
        return;
    const char *message = json_string_value(jmsg);
    AH_AUTO(json_decrefp) json_t *request = branch_request(parent, settings, message, s);
    char task_id[ULID_LEN + 1], msg_id[40];
    struct session_new sn = {.agent_type = parent->agent_type,
                             .agent_version = parent->agent_version};
    ulid_new(task_id);
    ulid_new(sn.id);
    if (message)
        ulid_new_prefixed("msg", msg_id, sizeof(msg_id));
    char name[AH_LIMIT_NAME + 1];
    snprintf(name, sizeof(name), "%s", jname ? json_string_value(jname) : "");
    if (!*name)
        snprintf(name, sizeof(name), "branch of %s at %s", parent->id, s->label);
    int64_t origin = tl_origin_ms(parent);
    struct branch_row b = {.parent_session_id = parent->id,
                           .fs_snapshot_id = s->id,
                           .name = name,
                           .injected_message_id = message ? msg_id : NULL,
                           .branch_seq = s->seq,
                           .branch_ts = s->ts > origin ? s->ts - origin : 0};
    int rc = request ? store_branch_create(ctx->store, parent->tenant_id, task_id,
                                           parent->project_id, request, &sn, &b, time_now_ms())
                     : AH_E_NOMEM;
    double from_ts = tl_offset(parent, s->ts);
    char snap_id[WS_SNAP_ID_LEN + 1];
    snprintf(snap_id, sizeof(snap_id), "%s", s->id);
    b.fs_snapshot_id = snap_id; /* s is freed next */
    fs_snapshot_rows_free(s, 1);
    if (rc < 0) {
        http_error(req, res, rc, "cannot create the branch: %s", ah_strerror(rc));
        return;
    }
    if (json_array_size(json_object_get(request, "webhooks")) && /* the task's, inherited */
        (rc = exec_webhooks_add(ctx->exec, parent->tenant_id, sn.id)) < 0)
        log_msg(LOG_ERROR, "webhooks of session %s: %s", sn.id, ah_strerror(rc));
    exec_kick(ctx->exec);
    json_t *out = json_pack("{s:s, s:s, s:s, s:f, s:s, s:s?, s:n, s:s, s:s}", "id", sn.id, "name",
                            name, "parentSessionId", parent->id, "branchFromTs", from_ts,
                            "fsSnapshotId", b.fs_snapshot_id, "injectedMessageId",
                            b.injected_message_id, "workspaceMount", "status", "queued", "taskId",
                            task_id);
    if (out) {
        json_object_set_new(out, "seq", json_integer(b.branch_seq));
        api_session_links(out, sn.id);
        http_header_add(req, res, "Location",
                        json_string_value(json_object_get(json_object_get(out, "links"), "self")));
    }
    http_json(req, res, 201, out);
}

static void list_branches(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row)
        return;
    struct branch_row *br = NULL;
    size_t n = 0;
    int rc = store_branch_list(ctx->store, row->tenant_id, row->id, &br, &n);
    json_t *list = json_array();
    if (rc == 0 && !list)
        rc = AH_E_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct session_row *child = NULL;
        if (store_session_get(ctx->store, row->tenant_id, br[i].session_id, &child) < 0)
            continue; /* purged meanwhile */
        char at[TIME_RFC3339_LEN + 1];
        time_format(br[i].created_at, at);
        json_t *o = json_pack("{s:s, s:s, s:s, s:f, s:s, s:s?, s:s, s:s, s:I}", "id",
                              br[i].session_id, "name", br[i].name ? br[i].name : "",
                              "parentSessionId", row->id, "branchFromTs",
                              (double)br[i].branch_ts / 1000.0, "fsSnapshotId",
                              br[i].fs_snapshot_id, "injectedMessageId",
                              br[i].injected_message_id, "createdAt", at, "status",
                              session_status_name(child->status), "seq",
                              (json_int_t)br[i].branch_seq);
        session_row_free(child);
        if (!o || json_array_append_new(list, o) < 0)
            rc = AH_E_NOMEM;
    }
    branch_rows_free(br, n);
    if (rc < 0) {
        json_decref(list);
        http_error(req, res, rc, "cannot list the branches: %s", ah_strerror(rc));
        return;
    }
    http_json(req, res, 200,
              json_pack("{s:o, s:I}", "branches", list, "total", (json_int_t)json_array_size(list)));
}

static void post_branch_idem(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_branch);
}

int api_timeline_branch_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "POST", "/api/v1/sessions/{id}/session-branch", post_branch_idem, ctx, 0,
                     0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/branches", list_branches, ctx, 0, 0);
    return rc;
}
