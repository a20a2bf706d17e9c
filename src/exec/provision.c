/*
 * provision.c — a fixed pool of PROVISION_WORKERS threads that make workspaces (a clone can take
 * seconds and must not stall the supervisor) and write the files the agent is started with:
 * <data>/sessions/<id>/prompt.txt and settings.json (D16: the prompt goes through a file, not
 * argv). The result goes back to the supervisor as a CMD_PROVISIONED command.
 */
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../obs/obs.h"
#include "executor.h"

static void job_free(struct provision_job *j) {
    json_decref(j->request);
    free(j->agent_type);
    free(j);
}

/* prompt.txt and settings.json for the session's agent entry. */
static int write_inputs(struct executor *ex, const char *id, const json_t *request,
                        int agent_index, struct ah_problem *reterr) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof(dir), "%s/sessions/%s", ex->cfg.data_dir, id);
    int rc = make_dirs(dir, 0700);
    if (rc < 0)
        return problem_set(reterr, rc, "cannot create %s: %s", dir, ah_strerror(rc));
    AH_AUTOFREE char *text = prompt_text(json_object_get(request, "prompt"));
    if (!text)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    snprintf(path, sizeof(path), "%s/prompt.txt", dir);
    if ((rc = write_file(path, text, strlen(text), 0600)) < 0)
        return problem_set(reterr, rc, "cannot write %s", path);
    json_t *agent = json_array_get(json_object_get(request, "agents"), (size_t)agent_index);
    json_t *settings = json_object_get(agent, "settings");
    AH_AUTOFREE char *st = settings ? json_dumps(settings, JSON_COMPACT) : strdup("{}");
    if (!st)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    snprintf(path, sizeof(path), "%s/settings.json", dir);
    if ((rc = write_file(path, st, strlen(st), 0600)) < 0)
        return problem_set(reterr, rc, "cannot write %s", path);
    return 0;
}

int exec_provision_session(struct executor *ex, const char *id, const json_t *request,
                           int agent_index, int abort_fd, char **ret_provider, char **ret_path,
                           struct ah_problem *reterr) {
    struct workspace_request wr = {
        .data_dir = ex->cfg.data_dir,
        .session_id = id,
        .request = request,
        .default_preference = ex->cfg.snapshot_preference,
        .template_dir = ex->cfg.workspace_template,
        .clone_timeout_ms = ex->cfg.clone_timeout_ms,
        .abort_fd = abort_fd,
    };
    int rc = write_inputs(ex, id, request, agent_index, reterr);
    if (rc == 0)
        rc = workspace_provision(&wr, ret_provider, ret_path, reterr);
    if (rc == 0) /* D30: what the agent changes is measured against this */
        rc = snapshot_take_base(ex->cfg.data_dir, id, *ret_path, reterr);
    return rc;
}

/* Ties the worker's abort eventfd to the session it works on (fd >= 0), or unties it (-1), so
 * exec_abandon_locked can interrupt exactly this job. Drains the counter when tying: a write
 * meant for the previous job must not abort this one. */
static bool tie(struct executor *ex, const struct provision_job *j, int fd) {
    pthread_mutex_lock(&ex->mu);
    struct live *l = live_find(ex, j->tenant, j->id);
    bool wanted = l && !l->cancelled;
    if (fd >= 0) {
        uint64_t v;
        while (read(fd, &v, sizeof(v)) > 0)
            ;
    }
    if (l)
        l->abort_fd = fd;
    pthread_mutex_unlock(&ex->mu);
    return wanted;
}

/* The session is still worth provisioning: not stopped or deleted while it waited. */
static bool still_wanted(struct executor *ex, const struct provision_job *j) {
    struct session_row *row = NULL;
    if (store_session_get(ex->store, j->tenant, j->id, &row) < 0)
        return false;
    bool ok = row->status == SESSION_PROVISIONING;
    session_row_free(row);
    return ok;
}

static void *worker_main(void *arg) {
    struct executor *ex = arg;
    int abort_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); /* -1: jobs just cannot be cut short */
    for (;;) {
        pthread_mutex_lock(&ex->mu);
        while (!ex->jobs_head && !ex->stopping)
            pthread_cond_wait(&ex->jobs_cv, &ex->mu);
        if (ex->stopping) {
            pthread_mutex_unlock(&ex->mu);
            if (abort_fd >= 0)
                close(abort_fd);
            return NULL;
        }
        struct provision_job *j = ex->jobs_head;
        ex->jobs_head = j->next;
        if (!ex->jobs_head)
            ex->jobs_tail = NULL;
        pthread_mutex_unlock(&ex->mu);

        struct ah_problem p = {0};
        char *provider = NULL, *path = NULL;
        struct workspace_request wr = {
            .data_dir = ex->cfg.data_dir,
            .session_id = j->id,
            .request = j->request,
            .default_preference = ex->cfg.snapshot_preference,
            .template_dir = ex->cfg.workspace_template,
            .clone_timeout_ms = ex->cfg.clone_timeout_ms,
            .abort_fd = abort_fd,
        };
        /* D48: provisioning is a span of the trace of the request that created the session */
        char tp[56];
        struct obs_trace tr;
        int64_t span_start = obs_wall_ns();
        bool traced = obs_otlp_enabled() && exec_trace_peek(j->id, tp) &&
                      obs_trace_start(tp, &tr) == 0;
        if (traced) /* its base snapshot's span is a child; its log lines carry it */
            log_trace_set(tr.trace_id, tr.span_id);
        int rc = 0;
        if (!tie(ex, j, abort_fd) || !still_wanted(ex, j))
            rc = problem_set(&p, AH_E_CANCELED, "provisioning abandoned: the session ended");
        if (rc == 0)
            rc = write_inputs(ex, j->id, j->request, j->agent_index, &p);
        if (rc == 0)
            rc = json_object_get(j->request, "branch") /* a session branch: its parent's files */
                     ? branch_provision(ex, j->tenant, j->id, j->agent_type, j->request,
                                        &provider, &path, &p)
                     : workspace_provision(&wr, &provider, &path, &p);
        if (rc == 0) /* D30: what the agent changes is measured against this */
            rc = snapshot_take_base(ex->cfg.data_dir, j->id, path, &p);
        if (rc == 0 && snapshots_record_base(ex, j->tenant, j->id, provider) < 0)
            log_msg(LOG_WARN, "session %s: the base snapshot is not on the timeline", j->id);
        tie(ex, j, -1);
        if (traced) {
            struct obs_span s = {
                .name = "provisioning",
                .kind = 1,
                .trace = tr,
                .start_ns = span_start,
                .end_ns = obs_wall_ns(),
                .error = rc < 0,
                .attrs = {{"ah.session_id", j->id}, {"ah.snapshot_provider", provider}},
            };
            obs_span_export(&s);
            log_trace_set(NULL, NULL);
        }
        struct cmd *c = cmd_new(CMD_PROVISIONED, j->tenant, j->id);
        if (c) {
            c->result = rc;
            c->text = rc < 0 ? strdup(p.detail) : NULL;
            c->provider = provider;
            c->path = path;
            exec_post(ex, c);
        } else {
            free(provider);
            free(path);
        }
        problem_clear(&p);
        job_free(j);
    }
}

int provision_enqueue(struct executor *ex, struct session_row *row) {
    struct provision_job *j = calloc(1, sizeof(*j));
    if (!j)
        return AH_E_NOMEM;
    snprintf(j->tenant, sizeof(j->tenant), "%s", row->tenant_id);
    snprintf(j->id, sizeof(j->id), "%s", row->id);
    j->request = json_incref(session_row_request(row));
    j->agent_type = strdup(row->agent_type);
    j->agent_index = row->agent_index;
    if (!j->agent_type || !j->request) {
        job_free(j);
        return AH_E_NOMEM;
    }
    pthread_mutex_lock(&ex->mu);
    if (ex->jobs_tail)
        ex->jobs_tail->next = j;
    else
        ex->jobs_head = j;
    ex->jobs_tail = j;
    pthread_cond_signal(&ex->jobs_cv);
    pthread_mutex_unlock(&ex->mu);
    return 0;
}

int provision_start(struct executor *ex) {
    pthread_cond_init(&ex->jobs_cv, NULL);
    ex->jobs_cv_ready = true;
    for (int i = 0; i < PROVISION_WORKERS; i++)
        if (pthread_create(&ex->workers[i], NULL, worker_main, ex) != 0) {
            pthread_mutex_lock(&ex->mu);
            ex->stopping = true;
            pthread_cond_broadcast(&ex->jobs_cv);
            pthread_mutex_unlock(&ex->mu);
            for (int k = 0; k < i; k++)
                pthread_join(ex->workers[k], NULL);
            pthread_cond_destroy(&ex->jobs_cv);
            ex->jobs_cv_ready = false;
            return AH_E_NOMEM;
        }
    return 0;
}

void provision_stop(struct executor *ex) {
    pthread_mutex_lock(&ex->mu);
    ex->stopping = true;
    pthread_cond_broadcast(&ex->jobs_cv);
    pthread_mutex_unlock(&ex->mu);
    for (int i = 0; i < PROVISION_WORKERS; i++)
        pthread_join(ex->workers[i], NULL);
    while (ex->jobs_head) { /* not started: D15 fails them as "server restarted" next time */
        struct provision_job *j = ex->jobs_head;
        ex->jobs_head = j->next;
        job_free(j);
    }
    ex->jobs_tail = NULL;
    pthread_cond_destroy(&ex->jobs_cv);
    ex->jobs_cv_ready = false;
}
