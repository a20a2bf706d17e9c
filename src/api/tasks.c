/*
 * tasks.c — POST /api/v1/tasks (API.md §7.2, D25): validate, write the task and its sessions
 * (one per agent entry × count, each starting with its `queued` status event) in one
 * transaction, answer 201 with the ids, and wake the scheduler.
 */
#include <stdio.h>
#include <string.h>

#include "../agent/agent.h"
#include "../enroll/fleet.h"
#include "../exec/catalog.h"
#include "../sandbox/sandbox.h"
#include "routes.h"

/* D25: a display alias (`claude` + `3.5-sonnet`, `gpt-4o`) becomes the agent of its family with
 * that model, unless a custom agent from configuration has exactly that name. */
static int resolve_alias(struct api_ctx *ctx, struct task_agent *a) {
    const char *family = agent_alias_family(a->type);
    if (!family || agent_catalog_is_custom(ctx->catalog, a->type) ||
        !exec_agent_known(ctx->exec, family))
        return 0;
    return task_agent_apply_alias(a, family);
}

/* D25 and D20: checks what only this server can judge (known agent types, scenarios). */
static void check_agents(struct api_ctx *ctx, const json_t *body, struct task_request *tr,
                         struct ah_problem *p) {
    bool single = json_object_get(body, "agent") != NULL; /* errors name what was sent */
    for (size_t i = 0; i < tr->n_agents; i++) {
        char path[64];
        if (single)
            snprintf(path, sizeof(path), "agent.type");
        else
            snprintf(path, sizeof(path), "agents[%zu].type", i);
        if (resolve_alias(ctx, &tr->agents[i]) < 0) {
            problem_set(p, AH_E_NOMEM, "out of memory");
            return;
        }
        /* D43: a type this server lacks is fine when an enrolled executor has it (placement
         * then puts the session only on such an executor) */
        if (!exec_agent_known(ctx->exec, tr->agents[i].type) &&
            !(ctx->fleet && fleet_has_agent(ctx->fleet, tr->agents[i].type)))
            problem_field(p, path, "unknown agent type %s; this server runs: %s%s",
                          tr->agents[i].type, exec_agent_names(ctx->exec),
                          ctx->fleet && fleet_count(ctx->fleet)
                              ? " (and none of its executors reports it installed)"
                              : "");
        char sp[64];
        snprintf(sp, sizeof(sp), single ? "agent.settings" : "agents[%zu].settings", i);
        api_agent_settings_check(ctx, tr->agents[i].type, tr->agents[i].settings, sp, p);
        json_t *scenario = json_object_get(tr->agents[i].settings, "scenario");
        if (scenario && strcmp(tr->agents[i].type, "scripted") == 0) {
            if (single)
                snprintf(path, sizeof(path), "agent.settings.scenario");
            else
                snprintf(path, sizeof(path), "agents[%zu].settings.scenario", i);
            agent_scenario_check(scenario, path, p);
        }
    }
}

/* Issue 15 item 8: webhook targets this server may call (https; loopback http for tests). */
static void check_webhooks(struct api_ctx *ctx, struct task_request *tr, struct ah_problem *p) {
    for (size_t i = 0; i < tr->n_webhooks; i++) {
        char why[160], path[48];
        if (exec_webhook_url_check(ctx->exec, tr->webhooks[i].url, why, sizeof(why)) == 0)
            continue;
        snprintf(path, sizeof(path), "webhooks[%zu].url", i);
        problem_field(p, path, "%s", why);
    }
}

/* D51, D52: the runtime must be one this machine provides — an unknown profile, `disabled`
 * without the configuration's consent, a sandbox without a working bubblewrap or a missing
 * devcontainer runtime is a 422 now, never an unsandboxed run later. The profile a task gets
 * by default is written into it, so its sessions show (and keep) what they run under. */
static void check_runtime(struct api_ctx *ctx, struct task_request *tr, struct ah_problem *p) {
    const struct sandbox_set *sb = exec_sandbox(ctx->exec);
    if (!sb || sandbox_check(sb, runtime_type_name(tr->runtime.type), tr->runtime.sandbox, p) < 0)
        return;
    if (tr->runtime.type == RUNTIME_LOCAL && !tr->runtime.sandbox &&
        !(tr->runtime.sandbox = strdup(sandbox_default_name(sb))))
        problem_set(p, AH_E_NOMEM, "out of memory");
}

static void create_task(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    if (!body)
        return;
    struct ah_problem p = {0};
    AH_AUTO(task_request_freep) struct task_request *tr = NULL;
    if (task_request_parse(body, &tr, &p) == 0)
        check_agents(ctx, body, tr, &p);
    /* a pull request needs a forge's API, which this server does not speak yet: a well-formed
     * request it cannot carry out (422), refused before any session exists */
    if (!p.code && tr->has_delivery && tr->delivery_mode == DELIVERY_PR) {
        problem_set(&p, AH_E_UNSUPPORTED, "delivery.mode pr is not supported by this server; "
                                          "use branch (push a branch) or patch");
        problem_field(&p, "delivery.mode", "pr is not supported; use branch or patch");
    }
    if (!p.code)
        check_webhooks(ctx, tr, &p);
    if (!p.code)
        check_runtime(ctx, tr, &p);
    if (http_fail(req, res, &p))
        return;
    const char *tenant = api_tenant(req, res, tr->tenant_id);
    if (!tenant)
        return;
    const char *project = api_project(req);
    if (project && tr->project_id && strcmp(tr->project_id, project) != 0) {
        http_error(req, res, AH_E_FORBIDDEN, "this credential is limited to project %s", project);
        return;
    }
    if (project && !tr->project_id && !(tr->project_id = strdup(project))) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    AH_AUTO(json_decrefp) json_t *canonical = task_request_to_json(tr);
    size_t n = task_request_session_count(tr);
    struct session_new *sessions = arena_alloc(req->arena, n * sizeof(*sessions));
    char task_id[ULID_LEN + 1];
    if (!canonical || !sessions || ulid_new(task_id) < 0) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    size_t k = 0;
    for (size_t a = 0; a < tr->n_agents; a++)
        for (int64_t i = 0; i < tr->agents[a].count; i++, k++) {
            ulid_new(sessions[k].id);
            sessions[k].agent_index = (int)a;
            sessions[k].instance = (int)i;
            sessions[k].agent_type = tr->agents[a].type;
            sessions[k].agent_version = tr->agents[a].version;
        }
    /* D48: the agents join this request's trace. Noted before the sessions exist: a scheduling
     * pass that runs meanwhile (another request's kick) must find it when it admits them. */
    for (size_t i = 0; i < n; i++)
        exec_trace_note(sessions[i].id, req->traceparent);
    int rc = store_task_create(ctx->store, tenant, task_id, tr->project_id, canonical, sessions, n,
                               time_now_ms());
    if (rc < 0) {
        http_error(req, res, rc, "cannot store the task");
        return;
    }
    for (size_t i = 0; tr->n_webhooks && i < n; i++) /* a failure here is caught at next start */
        if ((rc = exec_webhooks_add(ctx->exec, tenant, sessions[i].id)) < 0)
            log_msg(LOG_ERROR, "webhooks of session %s: %s", sessions[i].id, ah_strerror(rc));
    exec_kick(ctx->exec);

    json_t *ids = json_array();
    for (size_t i = 0; ids && i < n; i++)
        json_array_append_new(ids, json_string(sessions[i].id));
    json_t *out = json_pack("{s:s, s:s, s:o, s:s}", "id", sessions[0].id, "taskId", task_id,
                            "session_ids", ids, "status", "queued");
    if (out) {
        api_session_links(out, sessions[0].id);
        json_t *links = json_object_get(out, "links"); /* D25: self, events, logs */
        json_object_del(links, "pty");
        json_object_del(links, "recording");
        http_header_add(req, res, "Location", json_string_value(json_object_get(links, "self")));
    }
    http_json(req, res, 201, out);
}

static void post_tasks(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, create_task);
}

int api_tasks_register(struct router *r, struct api_ctx *ctx) {
    return router_add(r, "POST", "/api/v1/tasks", post_tasks, ctx, 0, 0);
}
