/*
 * exec.c — the executor's public calls: creation (the recorder socket), start and stop, and the
 * control actions handlers use (D13, D14). Control runs on the caller's thread: it moves the
 * state machine through the bus (durable, with its status event), signals the agent's process
 * group, and leaves process bookkeeping to the supervisor thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "executor.h"

static const char *const builtin_agents[] = {"scripted", "claude-code", "claude", "codex",
                                             "gemini",   "gemini-cli",  "opencode", NULL};

struct cmd *cmd_new(enum cmd_kind kind, const char *tenant, const char *id) {
    struct cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->kind = kind;
    snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
    snprintf(c->id, sizeof(c->id), "%s", id);
    return c;
}

void cmd_free(struct cmd *c) {
    if (!c)
        return;
    if (c->kind == CMD_ATTACH && c->result >= 0)
        close(c->result); /* never handed to the supervisor */
    free(c->text);
    free(c->provider);
    free(c->path);
    json_decref(c->msg);
    free(c);
}

void exec_post(struct executor *ex, struct cmd *c) {
    pthread_mutex_lock(&ex->mu);
    exec_post_locked(ex, c);
    pthread_mutex_unlock(&ex->mu);
}

void exec_post_locked(struct executor *ex, struct cmd *c) {
    if (!c)
        return;
    bool wake = !ex->cmd_head; /* else the first one's write has not been drained yet: the
                                  supervisor drains evfd before it takes the list */
    if (ex->cmd_tail)
        ex->cmd_tail->next = c;
    else
        ex->cmd_head = c;
    ex->cmd_tail = c;
    uint64_t one = 1;
    /* under the lock: supervisor_stop closes evfd under it too */
    if (wake && ex->evfd >= 0 && write(ex->evfd, &one, sizeof(one)) < 0) {
        /* the counter is saturated: the supervisor is awake anyway */
    }
}

void exec_post_ack(struct executor *ex, const char *tenant, const char *id, int64_t rseq) {
    pthread_mutex_lock(&ex->mu);
    struct cmd *t = ex->cmd_tail;
    if (t && t->kind == CMD_ACK && strcmp(t->id, id) == 0 && strcmp(t->tenant, tenant) == 0) {
        /* acks are cumulative: the previous one not taken yet says it for both */
        t->rseq = rseq > t->rseq ? rseq : t->rseq;
        t->acks++;
        pthread_mutex_unlock(&ex->mu);
        return;
    }
    pthread_mutex_unlock(&ex->mu);
    struct cmd *c = cmd_new(CMD_ACK, tenant, id);
    if (!c)
        return; /* no ack: the recorder resends after its next reconnect */
    c->rseq = rseq;
    c->acks = 1;
    exec_post(ex, c);
}

static char *own(struct executor *ex, const char *s) {
    if (!s)
        return NULL;
    char *d = strdup(s);
    char **list = d ? realloc(ex->owned, (ex->n_owned + 1) * sizeof(char *)) : NULL;
    if (!list) {
        free(d);
        return NULL;
    }
    ex->owned = list;
    ex->owned[ex->n_owned++] = d;
    return d;
}

/* The recorder socket: one per data directory, stable across restarts so recorders find the
 * next server at the same path (D15, D17). Refuses to take over a socket a live server answers
 * on. */
static int bind_socket(struct executor *ex, struct ah_problem *reterr) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)ex->cfg.data_dir, strlen(ex->cfg.data_dir), md);
    int rc = make_dirs(ex->cfg.runtime_dir, 0700);
    if (rc < 0)
        return problem_set(reterr, rc, "cannot create the runtime directory %s: %s",
                           ex->cfg.runtime_dir, ah_strerror(rc));
    int n = snprintf(ex->sock_path, sizeof(ex->sock_path), "%s/rec-%02x%02x%02x%02x%02x%02x.sock",
                     ex->cfg.runtime_dir, md[0], md[1], md[2], md[3], md[4], md[5]);
    if (n >= (int)sizeof(ex->sock_path))
        return problem_set(reterr, AH_E_TOOLARGE,
                           "the runtime directory %s is too long for a Unix socket path",
                           ex->cfg.runtime_dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, ex->sock_path, strlen(ex->sock_path) + 1);
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        close(probe);
        return problem_set(reterr, AH_E_EXISTS,
                           "another access point is already running on %s (socket %s)",
                           ex->cfg.data_dir, ex->sock_path);
    }
    if (probe >= 0)
        close(probe);
    unlink(ex->sock_path); /* stale, from a server that is gone */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return problem_set(reterr, AH_E_IO, "socket: %s", strerror(errno));
    mode_t old = umask(0177); /* the socket is created 0600 (D17) */
    int b = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (b < 0 || listen(fd, 512) < 0) {
        int e = errno;
        close(fd);
        return problem_set(reterr, AH_E_IO, "cannot listen on %s: %s", ex->sock_path,
                           strerror(e));
    }
    ex->listen_fd = fd;
    return 0;
}

int exec_new(const struct exec_config *cfg, struct store *st, struct bus *bus,
             struct executor **ret, struct ah_problem *reterr) {
    struct executor *ex = calloc(1, sizeof(*ex));
    if (!ex)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    ex->store = st;
    ex->bus = bus;
    ex->listen_fd = ex->epfd = ex->evfd = ex->timerfd = ex->refs_abort = -1;
    pthread_mutex_init(&ex->mu, NULL);
    ex->cfg = *cfg;
    ex->cfg.data_dir = own(ex, cfg->data_dir);
    ex->cfg.runtime_dir = own(ex, cfg->runtime_dir);
    ex->cfg.self_exe = own(ex, cfg->self_exe);
    ex->cfg.config_path = own(ex, cfg->config_path);
    ex->cfg.workspace_template = own(ex, cfg->workspace_template);
    ex->cfg.db_path = own(ex, cfg->db_path);
    ex->cfg.sandbox = NULL; /* read once, below */
    if (ex->cfg.max_concurrent < 1)
        ex->cfg.max_concurrent = 1;
    if (ex->cfg.stop_grace_ms <= 0)
        ex->cfg.stop_grace_ms = 10000;
    if (ex->cfg.clone_timeout_ms <= 0)
        ex->cfg.clone_timeout_ms = 120000;
    if (ex->cfg.refs_timeout_ms <= 0)
        ex->cfg.refs_timeout_ms = 10000;
    struct ah_buf names = {0};
    for (const char *const *a = builtin_agents; *a; a++)
        ah_buf_printf(&names, "%s%s", names.n ? ", " : "", *a);
    for (size_t i = 0; i < cfg->n_agents; i++)
        ah_buf_printf(&names, ", %s", cfg->agents[i].type);
    ex->agent_names = ah_buf_steal(&names);
    if (!ex->cfg.data_dir || !ex->cfg.runtime_dir || !ex->cfg.self_exe || !ex->agent_names) {
        exec_free(ex);
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    }
    /* Bad sandbox configuration is a start-up error too; the probe runs bubblewrap once */
    int rc = sandbox_set_new(cfg->sandbox, &ex->sandbox, reterr);
    if (rc < 0) {
        if (rc == AH_E_NOMEM)
            problem_set(reterr, rc, "out of memory");
        exec_free(ex);
        return rc;
    }
    sandbox_set_probe(ex->sandbox);
    /* An unusable data directory is a start-up error, not a failure of every session later */
    rc = make_dirs(ex->cfg.data_dir, 0700);
    if (rc < 0)
        problem_set(reterr, rc, "data directory %s: cannot create it (%s)", ex->cfg.data_dir,
                    ah_strerror(rc));
    struct stat dst;
    if (rc == 0 && stat(ex->cfg.data_dir, &dst) == 0 && (dst.st_mode & 077))
        chmod(ex->cfg.data_dir, 0700); /* D28: prompts, recordings and workspaces live here */
    if (rc == 0)
        rc = bind_socket(ex, reterr);
    if (rc < 0) {
        exec_free(ex);
        return rc;
    }
    *ret = ex;
    return 0;
}

int exec_start(struct executor *ex, struct ah_problem *reterr) {
    branch_remount_all(ex); /* before anything reads a workspace */
    int rc = provision_start(ex);
    if (rc < 0)
        return problem_set(reterr, rc, "cannot start the provisioning workers");
    if ((rc = refs_start(ex)) < 0)
        return problem_set(reterr, rc, "cannot start the branch listing workers");
    if ((rc = background_start(ex)) < 0)
        return problem_set(reterr, rc, "cannot start the background workers");
    if ((rc = snapshots_start(ex)) < 0)
        return problem_set(reterr, rc, "cannot start the snapshot worker");
    if ((rc = delivery_start(ex)) < 0)
        return problem_set(reterr, rc, "cannot start the delivery worker");
    if ((rc = replicas_init(ex, reterr)) < 0 || (rc = supervisor_start(ex, reterr)) < 0)
        return rc;
    if ((rc = replicas_start(ex)) < 0)
        return problem_set(reterr, rc, "cannot start the replica thread");
    /* after replicas_init: the sessions it resumes at start are this replica's (D46) */
    if ((rc = webhooks_start(ex)) < 0)
        return problem_set(reterr, rc, "cannot start the webhook worker");
    return 0;
}

void exec_stop(struct executor *ex) {
    if (!ex)
        return;
    pthread_mutex_lock(&ex->mu);
    bool workers = ex->jobs_cv_ready;
    ex->stopping = true;
    /* a clone in progress would hold the stop for up to the clone timeout: cut it short (the
     * session is failed as "server restarted" by the next start, D15) */
    for (struct live *l = ex->lives; l; l = l->next) {
        uint64_t one = 1;
        if (!l->dead && l->abort_fd >= 0 && write(l->abort_fd, &one, sizeof(one)) < 0) {
            /* saturated: the worker is being told already */
        }
    }
    pthread_mutex_unlock(&ex->mu);
    replicas_stop(ex); /* it kicks the supervisor and changes sessions */
    supervisor_stop(ex); /* first of the rest: it is the one that queues provisioning jobs */
    if (workers)
        provision_stop(ex);
    refs_stop(ex);
    background_stop(ex);
    snapshots_stop(ex); /* first: it hands exits to the delivery worker */
    delivery_stop(ex);
    webhooks_stop(ex); /* before the bus goes: its subscriptions are the bus's */
    if (ex->listen_fd >= 0) {
        close(ex->listen_fd);
        unlink(ex->sock_path);
        ex->listen_fd = -1;
    }
}

void exec_free(struct executor *ex) {
    if (!ex)
        return;
    exec_stop(ex);
    while (ex->cmd_head) {
        struct cmd *c = ex->cmd_head;
        ex->cmd_head = c->next;
        cmd_free(c);
    }
    for (size_t i = 0; i < ex->n_owned; i++)
        free(ex->owned[i]);
    free(ex->owned);
    free(ex->agent_names);
    sandbox_set_free(ex->sandbox);
    pthread_mutex_destroy(&ex->mu);
    free(ex);
}

const struct sandbox_set *exec_sandbox(struct executor *ex) {
    return ex->sandbox;
}

bool exec_runs_local(const struct executor *ex) {
    return !ex->cfg.no_local;
}

int64_t exec_tenant_running(struct executor *ex, const char *tenant) {
    int64_t n = 0;
    pthread_mutex_lock(&ex->mu);
    for (struct live *l = ex->lives; l; l = l->next)
        n += !l->dead && strcmp(l->tenant, tenant) == 0;
    pthread_mutex_unlock(&ex->mu);
    return n;
}

int64_t exec_tenant_max(const struct executor *ex) {
    return ex->cfg.tenant_max;
}

int64_t exec_local_running(struct executor *ex) {
    pthread_mutex_lock(&ex->mu);
    int64_t n = (int64_t)(ex->n_live - ex->n_remote);
    pthread_mutex_unlock(&ex->mu);
    return n;
}

int64_t exec_slots_taken(struct executor *ex) {
    int64_t n = ex->cfg.slots_taken ? ex->cfg.slots_taken(ex->cfg.slots_arg) : 0;
    return n > 0 ? n : 0;
}

void exec_local_load(struct executor *ex, int64_t *ret_capacity, int64_t *ret_running) {
    *ret_running = exec_local_running(ex) + exec_slots_taken(ex);
    *ret_capacity = ex->cfg.no_local ? 0 : ex->cfg.max_concurrent;
}

void exec_kick(struct executor *ex) {
    exec_post(ex, cmd_new(CMD_KICK, "", ""));
}

/* ---- remote sessions (issue 16 item 5) --------------------------------------------------------- */

int64_t exec_remote_running(struct executor *ex, const char *executor) {
    int64_t n = 0;
    pthread_mutex_lock(&ex->mu);
    for (struct live *l = ex->lives; l; l = l->next)
        n += !l->dead && l->executor && strcmp(l->executor, executor) == 0;
    pthread_mutex_unlock(&ex->mu);
    return n;
}

char *exec_session_executor(struct executor *ex, const char *id) {
    pthread_mutex_lock(&ex->mu);
    struct live *l = live_find(ex, NULL, id);
    char *who = l && l->executor ? strdup(l->executor) : NULL;
    pthread_mutex_unlock(&ex->mu);
    return who;
}

void exec_attach_remote(struct executor *ex, int fd, const char *executor) {
    struct cmd *c = cmd_new(CMD_ATTACH, "", "");
    if (!c || !(c->text = strdup(executor))) {
        free(c);
        close(fd); /* the recorder reconnects and tries again */
        return;
    }
    c->result = fd;
    exec_post(ex, c);
}

static void remote_end(struct executor *ex, const char *executor, const char *id,
                       const char *why, int how) {
    struct cmd *c = cmd_new(CMD_REMOTE_END, "", id);
    if (!c)
        return;
    c->provider = strdup(executor);
    c->text = why ? strdup(why) : NULL;
    c->result = how;
    exec_post(ex, c);
}

void exec_remote_ended(struct executor *ex, const char *executor, const char *id,
                       const char *why, bool launch_failed) {
    remote_end(ex, executor, id, why, launch_failed ? 1 : 0);
}

void exec_remote_requeue(struct executor *ex, const char *executor, const char *id,
                         const char *why) {
    remote_end(ex, executor, id, why, 2);
}

void exec_executor_link(struct executor *ex, const char *executor, bool up) {
    struct cmd *c = cmd_new(CMD_EXECUTOR, "", "");
    if (!c || !(c->provider = strdup(executor))) {
        cmd_free(c);
        return;
    }
    c->result = up;
    exec_post(ex, c);
}

bool exec_agent_known(struct executor *ex, const char *type) {
    for (const char *const *a = builtin_agents; *a; a++)
        if (strcmp(*a, type) == 0)
            return true;
    for (size_t i = 0; i < ex->cfg.n_agents; i++)
        if (strcmp(ex->cfg.agents[i].type, type) == 0)
            return true;
    return false;
}

const char *exec_agent_names(struct executor *ex) {
    return ex->agent_names;
}

const json_t *exec_models(struct executor *ex) {
    return ex->cfg.models;
}

const char *exec_data_dir(struct executor *ex) {
    return ex->cfg.data_dir;
}

char *exec_recording_path(struct executor *ex, const char *id) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/sessions/%s/recording.cast", ex->cfg.data_dir, id);
    return strdup(path);
}

int exec_repo_files(struct executor *ex, const char *url, size_t max, json_t **ret) {
    return workspace_repo_files(ex->cfg.data_dir, url, max, ret);
}

int exec_repo_default_branch(struct executor *ex, const char *url, char **ret) {
    return workspace_repo_default(ex->cfg.data_dir, url, ret);
}

void exec_remove_files(struct executor *ex, const char *id) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/workspaces/%s", ex->cfg.data_dir, id);
    branch_release(ex, id); /* an overlay branch: unmounted first */
    workspace_remove(path);
    (void)sandbox_cgroup_forget(ex->sandbox, id); /* a killed recorder left them */
}

/* ---- control --------------------------------------------------------------------------------- */

static int load(struct executor *ex, const char *tenant, const char *id,
                struct session_row **ret, struct ah_problem *reterr) {
    int rc = store_session_get(ex->store, tenant, id, ret);
    if (rc < 0)
        problem_set(reterr, rc, rc == AH_E_NOTFOUND ? "no session %s" : "cannot read session %s",
                    id);
    return rc;
}

static int conflict(struct ah_problem *p, const char *verb, enum session_status cur) {
    problem_set(p, AH_E_CONFLICT, "cannot %s a session that is %s", verb,
                session_status_name(cur));
    problem_extra(p, "currentStatus", json_string(session_status_name(cur)));
    return AH_E_CONFLICT;
}

/* A remote session's processes get `action` from its executor: true when the session is one. */
static bool remote_action(struct executor *ex, const char *tenant, const char *id,
                          const char *action) {
    pthread_mutex_lock(&ex->mu);
    struct live *l = live_find(ex, tenant, id);
    bool remote = l && l->executor;
    if (remote)
        live_remote_signal(ex, l, action);
    pthread_mutex_unlock(&ex->mu);
    return remote;
}

/* The agent's process group, or the recorder's when the agent's is not known yet. */
static pid_t target_group(struct executor *ex, const char *tenant, const char *id, bool agent_only) {
    pthread_mutex_lock(&ex->mu);
    struct live *l = live_find(ex, tenant, id);
    pid_t pg = 0;
    if (l && l->executor) /* its groups are on the executor: never signal one here */
        pg = 0;
    else if (l && l->agent_pgid > 1)
        pg = l->agent_pgid;
    else if (l && !agent_only && l->recorder_pid > 1)
        pg = l->recorder_pid;
    pthread_mutex_unlock(&ex->mu);
    return pg;
}

void exec_abandon_locked(struct executor *ex, struct live *l) {
    if (l->provisioning && !l->cancelled) /* its job may wait for a busy worker: don't wait */
        exec_post_locked(ex, cmd_new(CMD_ABANDONED, l->tenant, l->id));
    l->cancelled = true;
    l->kill_at = 0;
    uint64_t one = 1;
    if (l->abort_fd >= 0 && write(l->abort_fd, &one, sizeof(one)) < 0) {
        /* the counter is saturated: the worker is being told already */
    }
    if (l->executor) {
        live_remote_signal(ex, l, "abandon");
        return;
    }
    if (l->agent_pgid > 1)
        kill(-l->agent_pgid, SIGKILL);
    if (l->recorder_pid > 1)
        kill(-l->recorder_pid, SIGKILL);
}

static int control(struct executor *ex, const char *tenant, const char *id, enum exec_action a,
                   enum session_status *ret_status, struct ah_problem *reterr) {
    AH_AUTO(session_row_freep) struct session_row *row = NULL;
    int rc = load(ex, tenant, id, &row, reterr);
    if (rc < 0)
        return rc;
    enum session_status before = row->status;
    switch (a) {
    case EXEC_PAUSE: {
        if (before != SESSION_RUNNING)
            return conflict(reterr, "pause", before);
        pthread_mutex_lock(&ex->mu);
        bool supervised = live_find(ex, tenant, id) != NULL;
        pthread_mutex_unlock(&ex->mu);
        if (!supervised) { /* no one would finish the pause: it would stay pausing for good */
            problem_set(reterr, AH_E_CONFLICT,
                        "session %s is running but not under supervision yet; try again", id);
            problem_extra(reterr, "currentStatus", json_string(session_status_name(before)));
            return AH_E_CONFLICT;
        }
        if ((rc = exec_transition(ex, tenant, id, SESSION_PAUSING, NULL, NULL, &before)) < 0)
            return rc == AH_E_CONFLICT ? conflict(reterr, "pause", before) : rc;
        pthread_mutex_lock(&ex->mu);
        struct live *l = live_find(ex, tenant, id);
        pid_t pg = l ? l->agent_pgid : 0;
        if (l && pg <= 1) /* just started: its recorder has not said hello with the group yet */
            l->pause_pending = true;
        if (l && pg > 1 && l->executor) { /* the executor stops the group it learned */
            live_remote_signal(ex, l, "pause");
            pg = -1;
        }
        pthread_mutex_unlock(&ex->mu);
        if (pg == 0 || pg == 1) {
            *ret_status = SESSION_PAUSING; /* 202: the pause completes on the hello */
            return 0;
        }
        if (pg > 1)
            kill(-pg, SIGSTOP);
        exec_transition(ex, tenant, id, SESSION_PAUSED, NULL, NULL, NULL);
        *ret_status = SESSION_PAUSED;
        return 0;
    }
    case EXEC_RESUME: {
        if (before != SESSION_PAUSED)
            return conflict(reterr, "resume", before);
        pid_t pg = target_group(ex, tenant, id, true);
        if ((rc = exec_transition(ex, tenant, id, SESSION_RESUMING, NULL, NULL, &before)) < 0)
            return rc == AH_E_CONFLICT ? conflict(reterr, "resume", before) : rc;
        if (pg)
            kill(-pg, SIGCONT);
        remote_action(ex, tenant, id, "resume");
        test_hold_point("resume-continued"); /* the agent may end before `running` is stored */
        exec_transition(ex, tenant, id, SESSION_RUNNING, NULL, NULL, NULL);
        *ret_status = SESSION_RUNNING;
        return 0;
    }
    case EXEC_STOP: {
        if (before == SESSION_QUEUED || before == SESSION_PROVISIONING) {
            /* D13: nothing runs yet, so the stop ends it at once; a provisioning in progress
             * is abandoned and its workspace removed (on_provisioned), its slot freed */
            rc = exec_transition(ex, tenant, id, SESSION_STOPPED, NULL, NULL, &before);
            if (rc == 0) {
                pthread_mutex_lock(&ex->mu);
                struct live *l = live_find(ex, tenant, id);
                if (l)
                    exec_abandon_locked(ex, l);
                pthread_mutex_unlock(&ex->mu);
                if (!l) /* queued, or admitted a moment ago: the worker sees it ended */
                    exec_remove_files(ex, id);
                *ret_status = SESSION_STOPPED;
                return 0;
            }
            if (rc != AH_E_CONFLICT)
                return rc;
            /* it moved on meanwhile: stop it as what it is now */
        }
        if (before != SESSION_RUNNING && before != SESSION_PAUSED)
            return conflict(reterr, "stop", before);
        if ((rc = exec_transition(ex, tenant, id, SESSION_STOPPING, NULL, NULL, &before)) < 0)
            return rc == AH_E_CONFLICT ? conflict(reterr, "stop", before) : rc;
        pthread_mutex_lock(&ex->mu);
        struct live *l = live_find(ex, tenant, id);
        if (l)
            l->kill_at = time_mono_ms() + ex->cfg.stop_grace_ms;
        pthread_mutex_unlock(&ex->mu);
        pid_t pg = target_group(ex, tenant, id, false);
        if (pg) {
            kill(-pg, SIGCONT); /* a stopped process cannot handle SIGTERM */
            kill(-pg, SIGTERM);
        }
        if (remote_action(ex, tenant, id, "stop")) { /* the executor continues and terms it */
            exec_post(ex, cmd_new(CMD_WAKE, "", "")); /* re-arm the grace timer */
            *ret_status = SESSION_STOPPING;
            return 0;
        }
        /* A sandbox still starting its agent ignores SIGTERM (the agent gets it only once it
         * runs): look again shortly and tell the agent then, not after the whole grace */
        pthread_mutex_lock(&ex->mu);
        l = live_find(ex, tenant, id);
        pid_t apg = l ? l->agent_pgid : 0;
        pthread_mutex_unlock(&ex->mu);
        if (apg <= 1 || !exec_agent_started(ex, apg)) {
            pthread_mutex_lock(&ex->mu);
            if ((l = live_find(ex, tenant, id)))
                l->term_at = time_mono_ms() + 50;
            pthread_mutex_unlock(&ex->mu);
        }
        exec_post(ex, cmd_new(CMD_WAKE, "", "")); /* re-arm the grace timer */
        *ret_status = SESSION_STOPPING;
        return 0;
    }
    case EXEC_CANCEL: {
        if (session_status_terminal(before))
            return conflict(reterr, "cancel", before);
        if ((rc = exec_transition(ex, tenant, id, SESSION_CANCELLED, NULL, NULL, &before)) < 0)
            return rc == AH_E_CONFLICT ? conflict(reterr, "cancel", before) : rc;
        pthread_mutex_lock(&ex->mu);
        struct live *l = live_find(ex, tenant, id);
        if (l)
            exec_abandon_locked(ex, l);
        pthread_mutex_unlock(&ex->mu);
        if (!l) /* never launched: nothing will report back, clean up now */
            exec_remove_files(ex, id);
        *ret_status = SESSION_CANCELLED;
        return 0;
    }
    }
    return AH_E_INVAL;
}

/* ---- control of another replica's session (D46) --------------------------------------------- */

static const char *const action_names[] = {[EXEC_PAUSE] = "pause", [EXEC_RESUME] = "resume",
                                           [EXEC_STOP] = "stop", [EXEC_CANCEL] = "cancel"};

/* 1 when the session is run by another (live) replica sharing the database, its id in owner;
 * 0 when it is ours to act on. Only a session's owner signals its agent and numbers its events
 * (D45), so a request that reached the wrong replica travels to the right one (post_command).
 * An owner that stopped renewing its lease is about to lose the session to another replica:
 * 503, retry in a moment. */
static int other_owner(struct executor *ex, const char *tenant, const char *id,
                       char owner[STORE_REPLICA_MAX + 1], struct ah_problem *reterr) {
    bool alive = false;
    int rc = store_session_owner(ex->store, tenant, id, owner, &alive);
    if (rc < 0)
        return problem_set(reterr, rc, rc == AH_E_NOTFOUND ? "no session %s"
                                                           : "cannot read the owner of session %s",
                           id);
    if (strcmp(owner, store_replica(ex->store)) == 0)
        return 0;
    if (!alive)
        return problem_set(reterr, AH_E_UNAVAIL,
                           "the access point running session %s stopped answering; another one "
                           "takes the session over within seconds, try again then",
                           id);
    return 1;
}

static int post_command(struct executor *ex, const char *owner, const char *tenant,
                        const char *id, const json_t *cmd, struct ah_problem *reterr) {
    int rc = cmd ? store_command_post(ex->store, owner, tenant, id, cmd) : AH_E_NOMEM;
    if (rc < 0)
        return problem_set(reterr, rc,
                           "cannot hand the request to the access point running session %s", id);
    return 0;
}

/* The state a forwarded action will move the session to first, when it may apply at all. */
static int forwarded_status(enum exec_action a, enum session_status cur,
                            enum session_status *ret, struct ah_problem *reterr) {
    bool ok = false;
    switch (a) {
    case EXEC_PAUSE:
        ok = cur == SESSION_RUNNING;
        *ret = SESSION_PAUSING;
        break;
    case EXEC_RESUME:
        ok = cur == SESSION_PAUSED;
        *ret = SESSION_RESUMING;
        break;
    case EXEC_STOP:
        ok = cur == SESSION_QUEUED || cur == SESSION_PROVISIONING || cur == SESSION_RUNNING ||
             cur == SESSION_PAUSED;
        *ret = SESSION_STOPPING;
        break;
    case EXEC_CANCEL:
        ok = !session_status_terminal(cur);
        *ret = SESSION_CANCELLED;
        break;
    }
    return ok ? 0 : conflict(reterr, action_names[a], cur);
}

int exec_control(struct executor *ex, const char *tenant, const char *id, enum exec_action a,
                 enum session_status *ret_status, struct ah_problem *reterr) {
    char owner[STORE_REPLICA_MAX + 1];
    int rc = other_owner(ex, tenant, id, owner, reterr);
    if (rc == 1) { /* answered here with the state the owner moves it to first */
        AH_AUTO(session_row_freep) struct session_row *row = NULL;
        AH_AUTO(json_decrefp) json_t *cmd = json_pack("{s:s}", "action", action_names[a]);
        if ((rc = load(ex, tenant, id, &row, reterr)) < 0 ||
            (rc = forwarded_status(a, row->status, ret_status, reterr)) < 0)
            return rc;
        return post_command(ex, owner, tenant, id, cmd, reterr);
    }
    if (rc < 0)
        return rc;
    rc = control(ex, tenant, id, a, ret_status, reterr);
    if (rc < 0) /* every failure reaches the caller with a detail, whatever its origin */
        problem_set(reterr, rc, "cannot change session %s: %s", id, ah_strerror(rc));
    return rc;
}

/* The one path of user input to an agent (POST …/prompt and chat): `event` is recorded first,
 * then `text` (when not NULL) is sent to the recorder. With `owner` (a prompt that may travel,
 * D46), a session another replica runs gets `cmd` posted to that replica instead. */
static int deliver(struct executor *ex, const char *tenant, const char *id, const char *text,
                   const char *model, json_t *ev, int64_t *ret_seq, const json_t *cmd,
                   struct ah_problem *reterr) {
    AH_AUTO(session_row_freep) struct session_row *row = NULL;
    int rc = load(ex, tenant, id, &row, reterr);
    if (rc < 0)
        return rc;
    if (session_status_terminal(row->status))
        return problem_set(reterr, AH_E_GONE, "the session has ended (%s)",
                           session_status_name(row->status));
    if (text && row->status != SESSION_RUNNING) {
        problem_set(reterr, AH_E_CONFLICT, "the session is %s; prompts are accepted while it runs",
                    session_status_name(row->status));
        problem_extra(reterr, "currentStatus", json_string(session_status_name(row->status)));
        return AH_E_CONFLICT;
    }
    char owner[STORE_REPLICA_MAX + 1];
    if ((rc = other_owner(ex, tenant, id, owner, reterr)) != 0) {
        if (rc < 0)
            return rc;
        if (cmd) /* the owner records and delivers it */
            return post_command(ex, owner, tenant, id, cmd, reterr);
        /* a chat message answers with its stored seq (msg-<seq>), which only the owner
         * assigns (D45): it cannot be answered from here */
        return problem_set(reterr, AH_E_UNAVAIL,
                           "session %s runs on another access point (%s); send this request "
                           "to that one",
                           id, owner);
    }
    /* Record the prompt before the agent can see it: delivered first, the agent could answer,
     * finish and end the session before this event is stored, and a prompt it acted on would
     * get 410 (and read out of order in the log). */
    struct store_op op = {.kind = STORE_OP_EVENT, .tenant = tenant, .session_id = id,
                          .payload = ev};
    rc = ev ? bus_submit_wait(ex->bus, &op) : AH_E_NOMEM;
    if (rc == AH_E_GONE)
        return problem_set(reterr, AH_E_GONE, "the session has ended");
    if (rc < 0)
        return problem_set(reterr, rc, "cannot record the prompt");
    if (ret_seq)
        *ret_seq = op.seq;
    if (!text && !model)
        return 0;
    struct cmd *c = cmd_new(CMD_SEND, tenant, id);
    if (c)
        c->msg = text ? json_pack("{s:s, s:s}", "type", "prompt", "text", text)
                      : json_pack("{s:s, s:s}", "type", "model", "model", model);
    if (c && c->msg && text && model &&
        json_object_set_new(c->msg, "model", json_string(model)) < 0) {
        json_decref(c->msg);
        c->msg = NULL;
    }
    if (!c || !c->msg) {
        cmd_free(c);
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    }
    exec_post(ex, c);
    return 0;
}

/* exec_prompt; `forwardable` false for a prompt another replica forwarded here (it must not
 * travel again should the ownership have moved meanwhile). */
static int prompt(struct executor *ex, const char *tenant, const char *id, const char *text,
                  bool forwardable, struct ah_problem *reterr) {
    AH_AUTOFREE char *message = NULL;
    if (asprintf(&message, "user: %s", text) < 0)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    AH_AUTO(json_decrefp) json_t *ev = json_pack("{s:s, s:s, s:s, s:n}", "type", "log", "level",
                                                 "info", "message", message, "tool_execution_id");
    AH_AUTO(json_decrefp) json_t *cmd = json_pack("{s:s, s:s}", "action", "prompt", "text", text);
    return deliver(ex, tenant, id, text, NULL, ev, NULL, forwardable ? cmd : NULL, reterr);
}

int exec_prompt(struct executor *ex, const char *tenant, const char *id, const char *text,
                struct ah_problem *reterr) {
    return prompt(ex, tenant, id, text, true, reterr);
}

int exec_chat(struct executor *ex, const char *tenant, const char *id, json_t *event,
              const char *text, const char *model, int64_t *ret_seq, struct ah_problem *reterr) {
    return deliver(ex, tenant, id, text, model, event, ret_seq, NULL, reterr);
}

void exec_run_forwarded(struct executor *ex, const char *tenant, const char *id,
                        const json_t *cmd) {
    const char *action = json_string_value(json_object_get(cmd, "action"));
    const char *text = json_string_value(json_object_get(cmd, "text"));
    struct ah_problem p = {0};
    int rc = AH_E_INVAL;
    if (action && strcmp(action, "prompt") == 0 && text) {
        rc = prompt(ex, tenant, id, text, false, &p);
    } else {
        for (size_t a = 0; action && a < sizeof(action_names) / sizeof(*action_names); a++) {
            enum session_status st;
            if (strcmp(action, action_names[a]) == 0)
                rc = control(ex, tenant, id, (enum exec_action)a, &st, &p);
        }
    }
    if (rc < 0) {
        /* The client had its 202 from the other replica: the failure goes where it will be
         * read, the session's own events (or the log when the session is gone). */
        log_msg(LOG_WARN, "session %s: a %s from another access point failed: %s", id,
                action ? action : "command", p.detail[0] ? p.detail : ah_strerror(rc));
        json_t *ev = json_pack("{s:s, s:s, s:s++, s:n}", "type", "log", "level", "warn",
                               "message", "a request from another access point failed: ",
                               p.detail[0] ? p.detail : ah_strerror(rc), "tool_execution_id");
        struct store_op op = {.kind = STORE_OP_EVENT, .tenant = tenant, .session_id = id,
                              .payload = ev};
        if (ev)
            bus_submit_wait(ex->bus, &op);
        json_decref(ev);
    }
    problem_clear(&p);
}
