/*
 * supervisor.c — the supervisor thread: one epoll loop over the recorder socket, recorder
 * connections, the recorders' pidfds, a timerfd (stop grace periods) and an eventfd (commands
 * from other threads). No thread per session and no sleep-polling.
 *
 * Life of a session here:
 *   schedule()      queued → provisioning (bus), a job for the provisioning pool
 *   on_provisioned  spawn `ah agent record … -- ah agent start …` in its own process group
 *                   (D16), then provisioning → running
 *   on_hello        the recorder authenticates with its token; we answer with the highest
 *                   recorder sequence stored, so it resends exactly what we lack (D17)
 *   on_event        each event goes to the bus writer; the recorder gets an ack once durable
 *   on_exit_msg     the agent's exit: running → completed / failed, stopping → stopped
 *   on_pidfd        the recorder is gone: reap it, free the slot, schedule the next session
 * Recovery (D15) runs before the thread starts: sessions whose recorder is still alive are
 * re-attached (it will reconnect), the others become failed "server restarted".
 *
 * Objects that an epoll batch may still mention are only marked dead while the batch runs and
 * freed after it (no use-after-free across events of one epoll_wait).
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../obs/obs.h"
#include "executor.h"

#define CONN_OUT_MAX (16u * 1024 * 1024)
/* How long recovery waits for the hello of a recorder whose pid it never learned (its
 * reconnect back-off is at most 2 s). */
#define ADOPT_WAIT_MS 10000

struct rconn {
    struct handle h;
    int fd;
    struct link_reader rd;
    struct ah_buf out;
    bool want_out;
    struct live *live;
    bool dead;
    struct rconn *next;
    char *peer; /* the executor whose event stream this is (exec_attach_remote); NULL: local */
    /* Acks are cumulative (the recorder drops everything up to the acked rseq), so an event
     * answered without the store (a watched file_edit, D31) is acked only once every event
     * before it is stored: in_flight counts events handed to the bus and not acked yet,
     * held_ack the highest rseq waiting for them. */
    int64_t in_flight, held_ack;
    /* the ack for this batch of supervisor commands, sent after it (0: none) */
    int64_t ack_upto;
};

static struct rconn *conns; /* supervisor thread only */

/* ---- small helpers --------------------------------------------------------------------------- */

static void sha256_hex(const char *s, char out[65]) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)s, strlen(s), md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int exec_transition(struct executor *ex, const char *tenant, const char *id,
                    enum session_status to, const char *error, const int *exit_code,
                    enum session_status *ret_before) {
    struct store_op op = {
        .kind = STORE_OP_TRANSITION,
        .tenant = tenant,
        .session_id = id,
        .to = to,
        .error = error,
        .has_exit_code = exit_code != NULL,
        .exit_code = exit_code ? *exit_code : 0,
    };
    int rc = bus_submit_wait(ex->bus, &op);
    if (ret_before)
        *ret_before = op.status_before;
    if (rc == 0) {
        pthread_mutex_lock(&ex->mu);
        struct live *l = live_find(ex, tenant, id);
        if (l)
            l->status = to;
        pthread_mutex_unlock(&ex->mu);
    }
    return rc;
}

static void epoll_set(struct executor *ex, int fd, struct handle *h, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = h};
    epoll_ctl(ex->epfd, op, fd, &ev);
}

/* ---- connections ----------------------------------------------------------------------------- */

static void conn_kill(struct executor *ex, struct rconn *c) {
    if (c->dead)
        return;
    c->dead = true;
    epoll_ctl(ex->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (c->live) {
        pthread_mutex_lock(&ex->mu);
        if (c->live->conn == c)
            c->live->conn = NULL;
        pthread_mutex_unlock(&ex->mu);
        c->live = NULL;
    }
}

static void conn_flush(struct executor *ex, struct rconn *c) {
    if (c->dead)
        return;
    if (write_pending(c->fd, &c->out) < 0) {
        conn_kill(ex, c);
        return;
    }
    bool want = c->out.n > 0;
    if (want != c->want_out) {
        c->want_out = want;
        epoll_set(ex, c->fd, &c->h, EPOLLIN | (want ? EPOLLOUT : 0), EPOLL_CTL_MOD);
    }
}

static void conn_send(struct executor *ex, struct rconn *c, json_t *msg) {
    if (!c || c->dead || !msg) {
        json_decref(msg);
        return;
    }
    int rc = c->out.n > CONN_OUT_MAX ? AH_E_TOOLARGE : link_frame(&c->out, msg);
    json_decref(msg);
    if (rc < 0) { /* a recorder that does not read: drop it; it reconnects and catches up */
        conn_kill(ex, c);
        return;
    }
    conn_flush(ex, c);
}

/* ---- sessions -------------------------------------------------------------------------------- */

struct live *live_find(struct executor *ex, const char *tenant, const char *id) {
    for (struct live *l = ex->lives; l; l = l->next)
        if (!l->dead && strcmp(l->id, id) == 0 && (!tenant || strcmp(l->tenant, tenant) == 0))
            return l;
    return NULL;
}

static struct live *live_add(struct executor *ex, const char *tenant, const char *id,
                             enum session_status status) {
    struct live *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    snprintf(l->tenant, sizeof(l->tenant), "%s", tenant);
    snprintf(l->id, sizeof(l->id), "%s", id);
    l->status = status;
    l->pidfd = -1;
    l->abort_fd = -1;
    l->pid_handle = (struct handle){H_PIDFD, l};
    pthread_mutex_lock(&ex->mu);
    l->next = ex->lives;
    ex->lives = l;
    ex->n_live++;
    pthread_mutex_unlock(&ex->mu);
    if (ex->cfg.slots_changed) /* a shared budget's other user sees it at once */
        ex->cfg.slots_changed(ex->cfg.slots_arg);
    return l;
}

/* Marks a live session finished here; freed after the current epoll batch. */
static void live_retire(struct executor *ex, struct live *l) {
    if (l->dead)
        return;
    if (l->pidfd >= 0) {
        epoll_ctl(ex->epfd, EPOLL_CTL_DEL, l->pidfd, NULL);
        close(l->pidfd);
        l->pidfd = -1;
    }
    if (l->conn)
        conn_kill(ex, l->conn);
    /* if its recorder could not (killed, or its agent's last processes were still exiting) */
    if (!l->executor && !sandbox_cgroup_forget(ex->sandbox, l->id) && ex->n_cg_pending < 32) {
        snprintf(ex->cg_pending[ex->n_cg_pending].id, sizeof(ex->cg_pending[0].id), "%s", l->id);
        ex->cg_pending[ex->n_cg_pending++].until = time_mono_ms() + 30000;
    }
    pthread_mutex_lock(&ex->mu);
    l->dead = true;
    ex->n_live--;
    if (l->executor)
        ex->n_remote--;
    pthread_mutex_unlock(&ex->mu);
    if (ex->cfg.slots_changed)
        ex->cfg.slots_changed(ex->cfg.slots_arg);
}

static void reap_dead(struct executor *ex) {
    pthread_mutex_lock(&ex->mu);
    for (struct live **pp = &ex->lives; *pp;) {
        struct live *l = *pp;
        if (l->dead) {
            *pp = l->next;
            json_decref(l->prompts);
            free(l->workspace);
            free(l->executor);
            free(l->gone_why);
            free(l);
        } else {
            pp = &l->next;
        }
    }
    pthread_mutex_unlock(&ex->mu);
    for (struct rconn **pp = &conns; *pp;) {
        struct rconn *c = *pp;
        if (c->dead) {
            *pp = c->next;
            link_reader_clear(&c->rd);
            ah_buf_clear(&c->out);
            free(c->peer);
            free(c);
        } else {
            pp = &c->next;
        }
    }
}

static void fail_session(struct executor *ex, const char *tenant, const char *id,
                         const char *why) {
    log_msg(LOG_WARN, "session %s failed: %s", id, why);
    exec_transition(ex, tenant, id, SESSION_FAILED, why, NULL, NULL);
}

/* ---- scheduling ------------------------------------------------------------------------------ */

/* Sessions of `tenant` this server runs now (fairness between tenants, D43). */
static int64_t tenant_running(void *arg, const char *tenant) {
    return exec_tenant_running(arg, tenant);
}

/* Fairness looks at this many of the oldest queued sessions at a time: enough for every tenant
 * that waits to be seen, and a bound on the work of one pass. */
#define FAIR_WINDOW 256

static void launch_remote(struct executor *ex, struct session_row *r, const char *executor);
static bool live_add_remote(struct executor *ex, const struct session_row *r);

/* D48: the task admission span — from the session's creation (queued) until the scheduler
 * admitted it and chose where it runs — a child of the span of the request that created it.
 * `executor` is the executor's id when placed on one, NULL when it runs here. */
static void admission_span(const struct session_row *r, const char *executor) {
    char tp[56];
    struct obs_trace tr;
    if (!obs_otlp_enabled() || !exec_trace_peek(r->id, tp) || obs_trace_start(tp, &tr) < 0 ||
        !tr.parent_id[0])
        return;
    int64_t now = obs_wall_ns(), start = r->created_at > 0 ? r->created_at * 1000000 : now;
    char wait[24];
    snprintf(wait, sizeof(wait), "%lld", (long long)((now - start) / 1000000));
    struct obs_span s = {
        .name = "task admission",
        .kind = 1,
        .trace = tr,
        .start_ns = start,
        .end_ns = now,
        .attrs = {{"ah.session_id", r->id},
                  {"ah.tenant", r->tenant_id},
                  {"ah.placement", executor ? "executor" : "local"},
                  {"ah.executor_id", executor},
                  {"ah.queue_wait_ms", wait}},
    };
    obs_span_export(&s);
}

static void schedule(struct executor *ex) {
    /* a shared budget: the slots the enrolled executor's sessions hold (read outside mu) */
    int64_t taken = exec_slots_taken(ex);
    pthread_mutex_lock(&ex->mu);
    bool full = (int64_t)(ex->n_live - ex->n_remote) + taken >= ex->cfg.max_concurrent ||
                ex->stopping || ex->cfg.no_local;
    bool stopping = ex->stopping;
    pthread_mutex_unlock(&ex->mu);
    /* with executors (cfg.place) a full local runner still leaves them to fill */
    bool remote = ex->cfg.place &&
                  (!ex->cfg.remote_possible || ex->cfg.remote_possible(ex->cfg.place_arg));
    if (full && (stopping || !remote))
        return;
    struct session_row **rows = NULL;
    size_t n = 0;
    if (store_session_list_live(ex->store, &rows, &n) < 0)
        return;
    /* the queued ones, oldest first; each admission takes the one fairness picks (D43) */
    size_t *cand = calloc(n ? n : 1, sizeof(*cand));
    const char **tenants = calloc(FAIR_WINDOW, sizeof(*tenants));
    size_t nc = 0;
    for (size_t i = 0; cand && i < n; i++)
        if (rows[i]->status == SESSION_QUEUED)
            cand[nc++] = i;
    if (!cand || !tenants)
        nc = 0; /* out of memory: try again at the next kick */
    while (nc > 0) {
        size_t window = nc < FAIR_WINDOW ? nc : FAIR_WINDOW, pick = 0;
        for (size_t k = 0; k < window; k++)
            tenants[k] = rows[cand[k]]->tenant_id;
        if (ex->cfg.fair_next) {
            int f = ex->cfg.fair_next(tenants, window, tenant_running, ex);
            pick = f >= 0 && (size_t)f < window ? (size_t)f : 0;
        }
        struct session_row *r = rows[cand[pick]];
        memmove(&cand[pick], &cand[pick + 1], (nc - pick - 1) * sizeof(*cand));
        nc--;
        pthread_mutex_lock(&ex->mu);
        full = (int64_t)(ex->n_live - ex->n_remote) + taken >= ex->cfg.max_concurrent ||
               ex->cfg.no_local;
        bool known = live_find(ex, r->tenant_id, r->id) != NULL;
        pthread_mutex_unlock(&ex->mu);
        if (full && !remote)
            break;
        if (known)
            continue;
        if (ex->cfg.place) { /* D43 with executors: here, on one of them, or not yet */
            char where[256] = "";
            int w = ex->cfg.place(ex->cfg.place_arg, r, where, sizeof(where));
            if (w == EXEC_PLACE_REMOTE && where[0]) {
                admission_span(r, where);
                launch_remote(ex, r, where);
                continue;
            }
            if (w != EXEC_PLACE_LOCAL || full)
                continue;
        } else if (ex->cfg.place_local && !ex->cfg.place_local(ex->cfg.place_arg, r))
            continue; /* D43: it belongs elsewhere, or waits for a runner that fits */
        if (exec_transition(ex, r->tenant_id, r->id, SESSION_PROVISIONING, NULL, NULL, NULL) < 0)
            continue; /* cancelled meanwhile */
        struct live *l = live_add(ex, r->tenant_id, r->id, SESSION_PROVISIONING);
        if (!l) {
            fail_session(ex, r->tenant_id, r->id, "out of memory");
            continue;
        }
        l->provisioning = true;
        if (provision_enqueue(ex, r) < 0) {
            fail_session(ex, r->tenant_id, r->id, "out of memory");
            live_retire(ex, l);
        } else {
            admission_span(r, NULL);
        }
    }
    free(cand);
    free(tenants);
    session_rows_free(rows, n);
}

/* ---- launching ------------------------------------------------------------------------------- */

extern char **environ;

static const char *const env_base[] = {"PATH", "HOME",  "USER",  "LOGNAME", "SHELL", "LANG",
                                       "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "ASAN_OPTIONS",
                                       "UBSAN_OPTIONS", "LSAN_OPTIONS", NULL};

static bool env_allowed(struct executor *ex, const char *entry) {
    size_t n = strcspn(entry, "=");
    for (const char *const *a = env_base; *a; a++)
        if (strlen(*a) == n && strncmp(*a, entry, n) == 0)
            return true;
    for (const char *const *a = ex->cfg.env_allow; a && *a; a++)
        if (strlen(*a) == n && strncmp(*a, entry, n) == 0)
            return true;
    return false;
}

/* The scrubbed environment of D16: an allow-list plus our own variables. */
static char **build_env(struct executor *ex, const char *id, const char *token) {
    size_t n = 0;
    for (char **e = environ; *e; e++)
        n++;
    char **env = calloc(n + 7, sizeof(char *));
    if (!env)
        return NULL;
    size_t k = 0;
    bool ok = true;
    for (char **e = environ; *e; e++)
        if (env_allowed(ex, *e))
            env[k++] = strdup(*e);
    char buf[512];
    snprintf(buf, sizeof(buf), "AH_SESSION_ID=%s", id);
    env[k++] = strdup(buf);
    snprintf(buf, sizeof(buf), "AH_RECORDER_TOKEN=%s", token);
    env[k++] = strdup(buf);
    env[k++] = strdup("TERM=xterm-256color");
    char tp[56];
    if (exec_trace_take(id, tp)) { /* D48: the creating request's trace */
        snprintf(buf, sizeof(buf), "TRACEPARENT=%s", tp);
        env[k++] = strdup(buf);
        const char *otlp = obs_otlp_url(); /* the recorder exports its span there too */
        if (otlp && snprintf(buf, sizeof(buf), "AH_OTLP_ENDPOINT=%s", otlp) < (int)sizeof(buf))
            env[k++] = strdup(buf);
    }
    for (size_t i = 0; i < k; i++)
        ok &= env[i] != NULL;
    if (!ok) {
        for (size_t i = 0; i < k; i++)
            free(env[i]);
        free(env);
        return NULL;
    }
    return env;
}

static const struct agent_config *custom_agent(struct executor *ex, const char *type) {
    for (size_t i = 0; i < ex->cfg.n_agents; i++)
        if (strcmp(ex->cfg.agents[i].type, type) == 0)
            return &ex->cfg.agents[i];
    return NULL;
}

/* Starts `ah agent record … -- ah agent start …` for l (D16). On failure reterr says why in
 * words a user can act on (the errno text, not just its AH_E_* class). */
static int spawn_recorder(struct executor *ex, const char *sid, const char *agent_type,
                          const json_t *request_in, const char *workspace, const char *token,
                          pid_t *ret_pid, struct ah_problem *reterr) {
    char dir[4096], cast[4200], prompt[4200], settings[4200], log_path[4200], resume[4200];
    snprintf(dir, sizeof(dir), "%s/sessions/%s", ex->cfg.data_dir, sid);
    snprintf(resume, sizeof(resume), "%s/resume.json", dir);
    snprintf(cast, sizeof(cast), "%s/recording.cast", dir);
    snprintf(prompt, sizeof(prompt), "%s/prompt.txt", dir);
    snprintf(settings, sizeof(settings), "%s/settings.json", dir);
    snprintf(log_path, sizeof(log_path), "%s/recorder.log", dir);
    const char *agent[20];
    size_t na = 0;
    agent[na++] = ex->cfg.self_exe;
    agent[na++] = "agent";
    agent[na++] = "start";
    agent[na++] = "--agent";
    agent[na++] = agent_type;
    agent[na++] = "--cwd";
    agent[na++] = workspace;
    agent[na++] = "--non-interactive";
    agent[na++] = "--prompt-file";
    agent[na++] = prompt;
    agent[na++] = "--settings-file";
    agent[na++] = settings;
    const struct agent_config *custom = custom_agent(ex, agent_type);
    if (custom) {
        agent[na++] = "--command";
        agent[na++] = custom->command;
        agent[na++] = "--format";
        agent[na++] = custom->format;
    }
    /* a session branch of a CLI that resumes conversations (exec/branch.c wrote the file) */
    const json_t *request = request_in;
    bool resuming = !custom && json_object_get(request, "branch") && access(resume, R_OK) == 0;
    if (resuming) {
        agent[na++] = "--resume-from";
        agent[na++] = resume;
    }
    agent[na] = NULL;

    /* D51, D52: the sandbox the task was accepted with, around the agent only — the recorder
     * stays outside (it needs the server's socket); the PTY and AH_EVENTS_FD pass in */
    const char *ro_files[] = {prompt, settings, ex->cfg.self_exe,
                              custom && custom->command[0] == '/' ? custom->command
                              : resuming                          ? resume
                                                                  : NULL,
                              NULL};
    struct launch_sandbox sb;
    int rc = exec_sandbox_launch(ex, sid, workspace, json_object_get(request, "runtime"),
                                 agent, ro_files, &sb, reterr);
    if (rc < 0)
        return rc;
    size_t n_wrapped = 0;
    while (sb.argv[n_wrapped])
        n_wrapped++;
    const char **argv = calloc(40 + 2 * SANDBOX_CGROUPS_MAX + n_wrapped, sizeof(char *));
    if (!argv) {
        sandbox_cgroup_remove(&sb.cg);
        launch_sandbox_clear(&sb);
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    }
    char wall[32];
    snprintf(wall, sizeof(wall), "%lld", (long long)sb.wall_ms);
    size_t n = 0;
    argv[n++] = ex->cfg.self_exe;
    argv[n++] = "agent";
    argv[n++] = "record";
    argv[n++] = "--session-id";
    argv[n++] = sid;
    argv[n++] = "--socket";
    argv[n++] = ex->sock_path;
    argv[n++] = "--out-file";
    argv[n++] = cast;
    argv[n++] = "--workspace";
    argv[n++] = workspace;
    if (ex->cfg.config_path) {
        argv[n++] = "--config";
        argv[n++] = ex->cfg.config_path;
    }
    for (int i = 0; i < sb.cg.n; i++) {
        argv[n++] = "--cgroup";
        argv[n++] = sb.cg.dir[i];
    }
    if (sb.wall_ms > 0) {
        argv[n++] = "--wall-time-ms";
        argv[n++] = wall;
    }
    argv[n++] = "--note";
    argv[n++] = sb.note;
    if (sb.hold_term)
        argv[n++] = "--hold-term";
    /* a CLI run once per turn (claude-code, codex) takes each further message, and the model
     * it runs with, from a pipe: the session's next turn (issue 15; agent_start.c) */
    const struct agent_adapter *ad = custom ? NULL : adapter_find(agent_type);
    if (ad && ad->conversation)
        argv[n++] = "--input-pipe";
    if (sb.container[0]) { /* the devcontainer the recorder freezes on pause and removes */
        argv[n++] = "--container";
        argv[n++] = sb.container;
        argv[n++] = "--podman";
        argv[n++] = sb.podman;
        argv[n++] = "--podman-runtime";
        argv[n++] = sb.podman_runtime;
    }
    argv[n++] = "--";
    for (size_t i = 0; i < n_wrapped; i++)
        argv[n++] = sb.argv[i];
    argv[n] = NULL;

    char **env = build_env(ex, sid, token);
    if (!env) {
        free(argv);
        sandbox_cgroup_remove(&sb.cg);
        launch_sandbox_clear(&sb);
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    spawnattr_child(&attr); /* its own process group: the session's signals target it */
    /* ... and born with the signals it reads from a signalfd blocked: a stop that comes before
     * its hello signals the recorder's group, and must not kill it before it has blocked them
     * itself (it forwards SIGTERM to the agent; the agent gets a clean mask) */
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGHUP);
    posix_spawnattr_setsigmask(&attr, &blocked);
    pid_t pid;
    int err = posix_spawn(&pid, ex->cfg.self_exe, &fa, &attr, (char *const *)argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
    free(argv);
    if (err)
        sandbox_cgroup_remove(&sb.cg); /* the recorder removes them when it ends */
    launch_sandbox_clear(&sb);
    if (err)
        return problem_set(reterr, ah_err_from_errno(err), "%s: %s", ex->cfg.self_exe,
                           strerror(err));
    *ret_pid = pid;
    return 0;
}

int exec_spawn_session(struct executor *ex, const char *id, const char *agent_type,
                       const json_t *request, const char *workspace, const char *token,
                       pid_t *ret_pid, struct ah_problem *reterr) {
    return spawn_recorder(ex, id, agent_type, request, workspace, token, ret_pid, reterr);
}

int exec_listen_fd(struct executor *ex) {
    return ex->listen_fd;
}

bool exec_group_agent_started(struct executor *ex, pid_t pgid) {
    return exec_agent_started(ex, pgid);
}

/* A recorder token (D17) and its hash, as the store keeps it. */
static void new_token(char token[49], char hash[65]) {
    unsigned char rnd[24];
    RAND_bytes(rnd, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(token + 2 * i, 3, "%02x", rnd[i]);
    sha256_hex(token, hash);
}

void live_remote_signal(struct executor *ex, const struct live *l, const char *action) {
    if (!l->executor || !ex->cfg.remote_signal)
        return;
    /* D48: the signal belongs to the request that asked for it (the thread's span), else to
     * the session's trace (the supervisor ending a stop's grace) */
    char tp[56];
    const char *parent = obs_otlp_enabled() && obs_trace_current(tp) ? tp
                         : l->trace[0]                               ? l->trace
                                                                     : NULL;
    ex->cfg.remote_signal(ex->cfg.remote_arg, l->executor, l->id, action, parent);
}

bool live_trace(struct executor *ex, const char *tenant, const char *id, char out[56]) {
    pthread_mutex_lock(&ex->mu);
    struct live *l = live_find(ex, tenant, id);
    bool found = l && l->trace[0];
    if (found)
        memcpy(out, l->trace, sizeof(l->trace));
    pthread_mutex_unlock(&ex->mu);
    return found;
}

static int64_t lost_ms(const struct executor *ex) {
    return ex->cfg.executor_lost_ms > 0 ? ex->cfg.executor_lost_ms : 5 * 60 * 1000;
}

/* D44: a remote session that never started there goes back to the queue, for placement to
 * choose again (the executor is lost, or never got the launch). */
static void requeue_remote(struct executor *ex, struct live *l, const char *why) {
    log_msg(LOG_WARN, "session %s: queued again: %s", l->id, why);
    if (exec_transition(ex, l->tenant, l->id, SESSION_QUEUED, NULL, NULL, NULL) == 0) {
        /* not that executor's any more (a recorder it starts late is refused and killed) */
        struct session_runtime rt = {.recorder_pid = -1, .recorder_start = -1,
                                     .executor_id = ""};
        store_session_set_runtime(ex->store, l->tenant, l->id, &rt);
    }
    live_retire(ex, l);
}

/* Issue 16 item 5: the session starts on an executor. It is provisioning here until its
 * recorder's hello comes over the link (adopt() moves it to running, as after a restart); the
 * executor provisions and spawns exactly as on_provisioned does locally. */
static void launch_remote(struct executor *ex, struct session_row *r, const char *executor) {
    if (!ex->cfg.remote_launch)
        return;
    if (exec_transition(ex, r->tenant_id, r->id, SESSION_PROVISIONING, NULL, NULL, NULL) < 0)
        return; /* cancelled meanwhile */
    struct live *l = live_add(ex, r->tenant_id, r->id, SESSION_PROVISIONING);
    char *who = strdup(executor);
    if (!l || !who) {
        free(who);
        fail_session(ex, r->tenant_id, r->id, "out of memory");
        if (l)
            live_retire(ex, l);
        return;
    }
    char token[49], hash[65];
    new_token(token, hash);
    pthread_mutex_lock(&ex->mu);
    l->executor = who;
    ex->n_remote++;
    snprintf(l->token_hash, sizeof(l->token_hash), "%s", hash);
    pthread_mutex_unlock(&ex->mu);
    struct session_runtime rt = {.recorder_pid = -1, .recorder_start = -1,
                                 .recorder_token = hash, .executor_id = executor};
    store_session_set_runtime(ex->store, r->tenant_id, r->id, &rt);
    json_t *msg = json_pack("{s:s, s:s, s:s, s:s, s:i, s:O, s:s}", "type", "LaunchSession",
                            "session_id", r->id, "tenant", r->tenant_id, "agent_type",
                            r->agent_type, "agent_index", r->agent_index, "request",
                            session_row_request(r), "token", token);
    explicit_bzero(token, sizeof(token));
    char tp[56];
    if (msg && exec_trace_take(r->id, tp)) { /* D48: the executor's processes join the trace */
        json_object_set_new(msg, "traceparent", json_string(tp));
        pthread_mutex_lock(&ex->mu);
        memcpy(l->trace, tp, sizeof(l->trace));
        pthread_mutex_unlock(&ex->mu);
    }
    log_msg(LOG_INFO, "session %s: launching on executor %s", r->id, executor);
    if (!msg || ex->cfg.remote_launch(ex->cfg.remote_arg, executor, msg) < 0) {
        fail_session(ex, r->tenant_id, r->id, "cannot reach the executor to launch it");
        live_retire(ex, l);
    }
}

static void on_provisioned(struct executor *ex, struct cmd *c) {
    pthread_mutex_lock(&ex->mu);
    struct live *l = live_find(ex, c->tenant, c->id);
    bool cancelled = l && (l->cancelled || c->result == AH_E_CANCELED);
    if (l && c->path)
        l->workspace = AH_TAKE(c->path);
    pthread_mutex_unlock(&ex->mu);
    if (!l) {
        if (c->path) /* no one wants this workspace any more */
            exec_remove_files(ex, c->id);
        return;
    }
    struct session_row *row = NULL;
    if (!cancelled && c->result == 0 && store_session_get(ex->store, c->tenant, c->id, &row) == 0 &&
        row->status != SESSION_PROVISIONING) { /* stopped or deleted while it was provisioned */
        cancelled = true;
        session_row_free(row);
        row = NULL;
    }
    if (c->result < 0 || cancelled || !row) {
        if (cancelled) {
            exec_remove_files(ex, c->id);
        } else if (c->result < 0) {
            char why[600];
            snprintf(why, sizeof(why), "provisioning failed: %s", c->text ? c->text : "error");
            fail_session(ex, c->tenant, c->id, why);
        }
        session_row_free(row);
        live_retire(ex, l);
        schedule(ex); /* the slot is free: the next queued session may start */
        return;
    }
    char token[49], hash[65];
    new_token(token, hash);
    snprintf(l->token_hash, sizeof(l->token_hash), "%s", hash);
    struct session_runtime rt = {
        .workspace_provider = c->provider,
        .workspace_path = l->workspace,
        .recorder_pid = -1,
        .recorder_start = -1,
        .recorder_token = hash,
    };
    store_session_set_runtime(ex->store, c->tenant, c->id, &rt);
    pid_t pid = 0;
    struct ah_problem p = {0};
    char tp[56];
    if (exec_trace_peek(l->id, tp)) { /* D48: kept for the session's later spans */
        pthread_mutex_lock(&ex->mu);
        memcpy(l->trace, tp, sizeof(l->trace));
        pthread_mutex_unlock(&ex->mu);
    }
    int rc = spawn_recorder(ex, l->id, row->agent_type, session_row_request(row), l->workspace,
                            token, &pid, &p);
    session_row_free(row);
    if (rc < 0) {
        char why[600];
        snprintf(why, sizeof(why), "cannot start the recorder: %s", p.detail);
        fail_session(ex, c->tenant, c->id, why);
        live_retire(ex, l);
        return;
    }
    test_crash_point("recorder-spawned"); /* pid not stored yet: recovery must still adopt it */
    int pidfd = pidfd_open_pid(pid);
    rt = (struct session_runtime){.recorder_pid = pid, .recorder_start = process_start_time(pid)};
    store_session_set_runtime(ex->store, c->tenant, c->id, &rt);
    test_crash_point("recorder-recorded"); /* still provisioning: recovery must adopt it */
    pthread_mutex_lock(&ex->mu);
    l->recorder_pid = pid;
    l->pidfd = pidfd;
    l->our_child = true;
    l->provisioning = false;
    pthread_mutex_unlock(&ex->mu);
    if (pidfd >= 0)
        epoll_set(ex, pidfd, &l->pid_handle, EPOLLIN, EPOLL_CTL_ADD);
    if (exec_transition(ex, c->tenant, c->id, SESSION_RUNNING, NULL, NULL, NULL) < 0) {
        /* stopped or cancelled while we were starting it: its recorder's exit cleans up */
        pthread_mutex_lock(&ex->mu);
        l->cancelled = true;
        pthread_mutex_unlock(&ex->mu);
        kill(-pid, SIGKILL);
    }
}

/* ---- recorder messages ----------------------------------------------------------------------- */

static void on_event_done(void *arg, const struct store_op *op) {
    struct executor *ex = arg;
    if ((op->result == 0 || op->result == AH_E_EXISTS) && op->payload &&
        strcmp(json_string_value(json_object_get(op->payload, "type")) ?: "", "tool_result") == 0)
        snapshots_boundary_stored(ex, op->tenant, op->session_id, op->rseq,
                                  op->result == 0 ? op->seq : 0);
    bool db_error = op->result < 0 && op->result != AH_E_EXISTS && op->result != AH_E_GONE &&
                    op->result != AH_E_NOTFOUND && op->result != AH_E_CONFLICT;
    if (!db_error) {
        exec_post_ack(ex, op->tenant, op->session_id, op->rseq);
        return;
    }
    struct cmd *c = cmd_new(CMD_DROP_CONN, op->tenant, op->session_id);
    if (!c)
        return; /* no ack: the recorder resends after its next reconnect */
    exec_post(ex, c);
}

/* A recorder re-attached after a crash that left its session provisioning (D15, issue 10 item
 * 22): it may have been started a moment before the crash, even before we stored its pid. Its
 * pid comes from the socket's peer credentials, and the session moves to running, so what its
 * agent already did is stored as events. 0, or an error after which the connection is gone. */
static int adopt(struct executor *ex, struct rconn *c, struct live *l) {
    if (l->pidfd < 0 && !l->executor) { /* a remote recorder's pid is its executor's business */
        struct ucred cred;
        socklen_t len = sizeof(cred);
        int pidfd = getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid > 1
                        ? pidfd_open_pid(cred.pid)
                        : -1;
        if (pidfd < 0) {
            conn_kill(ex, c);
            return AH_E_IO;
        }
        struct session_runtime rt = {.recorder_pid = cred.pid,
                                     .recorder_start = process_start_time(cred.pid)};
        store_session_set_runtime(ex->store, l->tenant, l->id, &rt);
        pthread_mutex_lock(&ex->mu);
        l->recorder_pid = cred.pid;
        l->pidfd = pidfd;
        l->adopt_by = 0;
        pthread_mutex_unlock(&ex->mu);
        epoll_set(ex, pidfd, &l->pid_handle, EPOLLIN, EPOLL_CTL_ADD);
    }
    if (l->cancelled) { /* stopped or deleted before it said hello: its exit cleans up */
        if (l->executor)
            live_remote_signal(ex, l, "abandon");
        else
            kill(-l->recorder_pid, SIGKILL);
        conn_kill(ex, c);
        return AH_E_CONFLICT;
    }
    if (l->status == SESSION_PROVISIONING) {
        if (l->executor)
            log_msg(LOG_INFO, "session %s: its recorder on executor %s is connected", l->id,
                    l->executor);
        else
            log_msg(LOG_INFO, "session %s: adopting its recorder, started before the restart",
                    l->id);
        if (exec_transition(ex, l->tenant, l->id, SESSION_RUNNING, NULL, NULL, NULL) < 0) {
            conn_kill(ex, c); /* it ended meanwhile (stopped, deleted) */
            return AH_E_CONFLICT;
        }
    }
    return 0;
}

static void on_hello(struct executor *ex, struct rconn *c, json_t *msg) {
    test_hold_point("recorder-hello"); /* a session is running, its agent's group not known */
    const char *id = json_string_value(json_object_get(msg, "sessionId"));
    const char *token = json_string_value(json_object_get(msg, "token"));
    char hash[65] = "";
    if (token)
        sha256_hex(token, hash);
    pthread_mutex_lock(&ex->mu);
    struct live *l = id ? live_find(ex, NULL, id) : NULL;
    bool ok = l && token && strcmp(hash, l->token_hash) == 0;
    /* a remote session speaks only through its own executor's stream; a local one only here */
    if (ok && (l->executor ? !c->peer || strcmp(c->peer, l->executor) != 0 : c->peer != NULL))
        ok = false;
    struct rconn *old = NULL;
    json_t *prompts = NULL;
    bool pause = false;
    if (ok) {
        old = l->conn != c ? l->conn : NULL;
        l->conn = c;
        json_int_t pg = json_integer_value(json_object_get(msg, "agentPgid"));
        if (pg > 1)
            l->agent_pgid = (pid_t)pg;
        prompts = l->prompts;
        l->prompts = NULL;
        /* a pause that arrived before we knew the agent's group (exec_control) */
        pause = l->pause_pending && l->agent_pgid > 1;
        if (pause)
            l->pause_pending = false;
    }
    pthread_mutex_unlock(&ex->mu);
    bool others = false; /* D46: still that executor's, in the charge of another replica */
    if (!ok && !l && c->peer && id && ulid_valid(id)) {
        struct session_row *row = NULL;
        others = store_session_get(ex->store, NULL, id, &row) == 0 &&
                 !session_status_terminal(row->status) && row->executor_id &&
                 strcmp(row->executor_id, c->peer) == 0;
        session_row_free(row);
    }
    if (others) /* refused for now: its recorder retries until this replica takes it over */
        log_msg(LOG_INFO, "session %s: its recorder on executor %s is in the charge of another "
                "access point (until that one's lease runs out)", id, c->peer);
    else if (!ok && c->peer && id && ulid_valid(id) && ex->cfg.remote_signal)
        /* an executor's recorder for a session not (or no longer) its own here: ended, failed
         * after its executor was lost, or queued again elsewhere — it must not run on */
        ex->cfg.remote_signal(ex->cfg.remote_arg, c->peer, id, "abandon", NULL);
    if (!ok && others) {
        /* no "error": a recorder told so gives up and ends its agent (the session then failed
         * whenever its executor reached this replica before the owner's lease ran out); a
         * closed connection is one it reconnects after, until this replica has taken over */
        conn_kill(ex, c);
        return;
    }
    if (!ok) {
        log_msg(LOG_WARN, "recorder hello refused for session %s", id ? id : "(none)");
        conn_send(ex, c, json_pack("{s:s, s:s}", "type", "error", "message",
                                   "unknown session or bad token"));
        conn_flush(ex, c);
        conn_kill(ex, c);
        return;
    }
    if (old)
        conn_kill(ex, old);
    c->live = l;
    if (adopt(ex, c, l) < 0)
        return;
    if (pause) {
        if (l->executor)
            live_remote_signal(ex, l, "pause");
        else
            kill(-l->agent_pgid, SIGSTOP);
        exec_transition(ex, l->tenant, l->id, SESSION_PAUSED, NULL, NULL, NULL);
    }
    struct session_row *row = NULL;
    int64_t acked = 0;
    if (store_session_get(ex->store, l->tenant, l->id, &row) == 0) {
        acked = row->recorder_rseq;
        session_row_free(row);
    }
    conn_send(ex, c, json_pack("{s:s, s:I}", "type", "welcome", "acked", (json_int_t)acked));
    size_t i;
    json_t *p;
    json_array_foreach(prompts, i, p) {
        conn_send(ex, c, json_incref(p));
    }
    json_decref(prompts);
}

/* An agent speaks in the chat only as the assistant, with text (and tool calls): the user's
 * messages, edits and deletions are recorded by the server alone (api/chat.c). */
static bool agent_chat_ok(const json_t *ev) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)ev, key, v) {
        if (!strcmp(key, "type") || !strcmp(key, "tool_calls"))
            continue;
        if (!strcmp(key, "role") && json_is_string(v) && !strcmp(json_string_value(v), "assistant"))
            continue;
        if (!strcmp(key, "content") && json_is_string(v))
            continue;
        if (!strcmp(key, "model") && json_is_string(v)) /* the turn's model (issue 15) */
            continue;
        return false;
    }
    return json_is_string(json_object_get(ev, "content")) && json_object_get(ev, "role");
}

/* An agent's own file_edit (its edit tool's start or end, with `status`): D31 takes the numbers
 * from the snapshot's diff, never from the agent, so the claim stays as the tool's progress but
 * its counts move to claimed_lines_added/_removed and read 0 (a sum over file_edit events is
 * then the diff's, not twice the change). A completed claim names its path for the next
 * snapshot (the recorder does not report a path the agent just claimed). */
static void claim_file_edit(struct executor *ex, struct live *l, json_t *ev) {
    static const char *const keys[][2] = {{"lines_added", "claimed_lines_added"},
                                          {"lines_removed", "claimed_lines_removed"}};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(ev, keys[i][0]);
        if (json_is_integer(v))
            json_object_set(ev, keys[i][1], v);
        json_object_set_new(ev, keys[i][0], json_integer(0));
    }
    json_object_set_new(ev, "claimed", json_true());
    const char *st = json_string_value(json_object_get(ev, "status"));
    const char *path = json_string_value(json_object_get(ev, "file_path"));
    if (!l->workspace || !st || strcmp(st, "completed") != 0 || !path)
        return;
    size_t wl = strlen(l->workspace);
    if (strncmp(path, l->workspace, wl) == 0 && path[wl] == '/')
        path += wl + 1; /* an agent names files by absolute path */
    snapshots_request(ex, l->tenant, l->id, l->workspace, "files", path);
}

static void on_event_msg(struct executor *ex, struct rconn *c, json_t *msg) {
    json_t *ev = json_object_get(msg, "event");
    json_int_t rseq = json_integer_value(json_object_get(msg, "rseq"));
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!json_is_object(ev) || rseq <= 0 || !type || strcmp(type, "status") == 0 ||
        strcmp(type, "context") == 0 ||
        (strcmp(type, "chat_message") == 0 && !agent_chat_ok(ev))) {
        /* status is the server's alone (D13), and so are the user's chat messages: a forged or
         * malformed event is dropped, acked */
        log_msg(LOG_DEBUG, "session %s: dropping an invalid recorder event", c->live->id);
        if (rseq > 0) {
            struct cmd *a = cmd_new(CMD_ACK, c->live->tenant, c->live->id);
            if (a) {
                a->rseq = rseq;
                exec_post(ex, a);
            }
        }
        return;
    }
    struct live *l = c->live;
    /* D31: a change the recorder's watcher saw (a file_edit without the agent tool's status)
     * only asks for a snapshot, whose diff gives the file_edit events their numbers; counting
     * it twice would disagree with GET /files. A tool's end is a boundary too. */
    bool watched = strcmp(type, "file_edit") == 0 && !json_object_get(ev, "status");
    if (strcmp(type, "file_edit") == 0 && !watched)
        claim_file_edit(ex, l, ev);
    if (l->workspace && watched)
        snapshots_request(ex, l->tenant, l->id, l->workspace, "files",
                          json_string_value(json_object_get(ev, "file_path")));
    else if (l->workspace && strcmp(type, "tool_result") == 0) /* the timeline's moment (D33) */
        snapshots_boundary(ex, l->tenant, l->id, l->workspace,
                           json_string_value(json_object_get(ev, "tool_name")), rseq);
    if (watched && l->workspace && ex->snaps) {
        if (c->in_flight > 0)
            c->held_ack = rseq > c->held_ack ? rseq : c->held_ack;
        else
            conn_send(ex, c, json_pack("{s:s, s:I}", "type", "ack", "rseq", (json_int_t)rseq));
        return;
    }
    struct store_op op = {
        .kind = STORE_OP_EVENT,
        .tenant = c->live->tenant,
        .session_id = c->live->id,
        .rseq = rseq,
        .ts = json_integer_value(json_object_get(msg, "tsMs")),
        .payload = ev,
        .traceparent = l->trace[0] ? l->trace : NULL, /* D48: its batch's span links to it */
    };
    if (bus_submit(ex->bus, &op, on_event_done, ex) < 0)
        conn_kill(ex, c); /* no ack is coming: make the recorder reconnect and resend */
    else
        c->in_flight++;
}

/* The agent's exit, once its final snapshot is in (c may be NULL: no connection now). */
static void exit_now(struct executor *ex, struct live *l, struct rconn *c, json_t *msg) {
    json_int_t rseq = json_integer_value(json_object_get(msg, "rseq"));
    int code = (int)json_integer_value(json_object_get(msg, "code"));
    int sig = (int)json_integer_value(json_object_get(msg, "signal"));
    const char *error = json_string_value(json_object_get(msg, "error"));
    pthread_mutex_lock(&ex->mu);
    l->exit_seen = true;
    l->kill_at = 0;
    pthread_mutex_unlock(&ex->mu);
    struct session_row *row = NULL;
    enum session_status cur = l->status;
    if (store_session_get(ex->store, l->tenant, l->id, &row) == 0) {
        cur = row->status;
        session_row_free(row);
    }
    enum session_status to;
    char why[512] = "";
    if (cur == SESSION_STOPPING)
        to = SESSION_STOPPED;
    else if (code == 0 && sig == 0 &&
             (cur == SESSION_RUNNING || cur == SESSION_PAUSING || cur == SESSION_RESUMING))
        to = SESSION_COMPLETED;
    else {
        to = SESSION_FAILED;
        if (error && *error)
            snprintf(why, sizeof(why), "%s", error);
        else if (sig)
            snprintf(why, sizeof(why), "the agent was killed by signal %d", sig);
        else if (code == 0)
            snprintf(why, sizeof(why), "the agent exited while %s", session_status_name(cur));
        else
            snprintf(why, sizeof(why), "the agent exited with code %d", code);
    }
    int exit_code = sig ? 128 + sig : code;
    struct store_op op = {
        .kind = STORE_OP_TRANSITION,
        .tenant = l->tenant,
        .session_id = l->id,
        .rseq = rseq,
        .to = to,
        .error = why[0] ? why : NULL,
        .has_exit_code = true,
        .exit_code = exit_code,
        .changes = json_object_get(msg, "changes"),
        .traceparent = l->trace[0] ? l->trace : NULL,
    };
    if (!json_is_object(op.changes))
        op.changes = NULL;
    pthread_mutex_lock(&ex->mu);
    if (!session_status_terminal(l->status))
        l->status = to;
    pthread_mutex_unlock(&ex->mu);
    if (bus_submit(ex->bus, &op, on_event_done, ex) < 0 && c)
        conn_kill(ex, c);
}

static void on_exit_msg(struct executor *ex, struct rconn *c, json_t *msg) {
    struct live *l = c->live;
    /* D31: the final snapshot's events come before the final status; the worker posts
     * CMD_EXIT when it is taken (the recorder waits for the ack meanwhile) */
    if (l->workspace && snapshots_final(ex, l->tenant, l->id, l->workspace, msg)) {
        pthread_mutex_lock(&ex->mu);
        l->exit_seen = true;
        l->kill_at = 0;
        pthread_mutex_unlock(&ex->mu);
        return;
    }
    exit_now(ex, l, c, msg);
}

static void handle_msg(struct executor *ex, struct rconn *c, json_t *msg) {
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!type)
        return;
    if (strcmp(type, "hello") == 0) {
        on_hello(ex, c, msg);
        return;
    }
    if (!c->live) { /* nothing before hello */
        conn_kill(ex, c);
        return;
    }
    if (strcmp(type, "event") == 0)
        on_event_msg(ex, c, msg);
    else if (strcmp(type, "exit") == 0)
        on_exit_msg(ex, c, msg);
    /* other types (resize, pty progress…) are informational; ignoring keeps old servers
     * working with newer recorders */
}

static void conn_readable(struct executor *ex, struct rconn *c) {
    for (;;) {
        if (c->dead)
            return;
        int n = link_read_fd(c->fd, &c->rd);
        if (n == AH_E_BUSY)
            break;
        if (n <= 0) {
            conn_kill(ex, c);
            return;
        }
        json_t *msg;
        int r;
        while (!c->dead && (r = link_take(&c->rd, &msg)) == 1) {
            handle_msg(ex, c, msg);
            json_decref(msg);
        }
        if (r < 0) {
            conn_kill(ex, c);
            return;
        }
    }
}

/* ---- recorder exits -------------------------------------------------------------------------- */

static void on_pidfd(struct executor *ex, struct live *l) {
    if (l->dead)
        return;
    if (l->conn && !l->conn->dead) /* its last words may still be in the socket */
        conn_readable(ex, l->conn);
    char how[128] = "";
    if (l->our_child) {
        siginfo_t info = {0};
        if (waitid(P_PIDFD, (id_t)l->pidfd, &info, WEXITED | WNOHANG) == 0 && info.si_pid) {
            if (info.si_code == CLD_EXITED)
                snprintf(how, sizeof(how), "exit code %d", info.si_status);
            else
                snprintf(how, sizeof(how), "signal %d", info.si_status);
        }
    }
    bool cancelled = l->cancelled;
    if (!l->exit_seen && !cancelled) {
        char why[256];
        snprintf(why, sizeof(why), "the recorder exited unexpectedly%s%s", how[0] ? " with " : "",
                 how);
        exec_transition(ex, l->tenant, l->id, SESSION_FAILED, why, NULL, NULL);
    }
    if (cancelled)
        exec_remove_files(ex, l->id);
    live_retire(ex, l);
    schedule(ex);
}

/* ---- timers: the stop grace period (D14) ----------------------------------------------------- */

static void rearm_timer(struct executor *ex) {
    int64_t next = 0;
    pthread_mutex_lock(&ex->mu);
    for (struct live *l = ex->lives; l; l = l->next) {
        if (!l->dead && l->kill_at && (!next || l->kill_at < next))
            next = l->kill_at;
        if (!l->dead && l->kill_at && l->term_at && (!next || l->term_at < next))
            next = l->term_at;
        if (!l->dead && l->adopt_by && (!next || l->adopt_by < next))
            next = l->adopt_by;
        if (!l->dead && l->gone_at && (!next || l->gone_at < next))
            next = l->gone_at;
        if (!l->dead && l->lost_at && (!next || l->lost_at < next))
            next = l->lost_at;
    }
    pthread_mutex_unlock(&ex->mu);
    int64_t cg_next = time_mono_ms() + 100;
    if (ex->n_cg_pending && (!next || cg_next < next))
        next = cg_next;
    struct itimerspec its = {0};
    if (next) {
        int64_t left = next - time_mono_ms();
        if (left < 1)
            left = 1;
        its.it_value.tv_sec = left / 1000;
        its.it_value.tv_nsec = (left % 1000) * 1000000L;
    }
    timerfd_settime(ex->timerfd, 0, &its, NULL);
}

static void lost_sweep(struct executor *ex, int64_t now);

static void on_timer(struct executor *ex) {
    uint64_t ticks;
    while (read(ex->timerfd, &ticks, sizeof(ticks)) > 0)
        ;
    int64_t now = time_mono_ms();
    for (size_t i = 0; i < ex->n_cg_pending;) /* ended sessions' cgroups, once empty */
        if (sandbox_cgroup_forget(ex->sandbox, ex->cg_pending[i].id) ||
            ex->cg_pending[i].until < now)
            ex->cg_pending[i] = ex->cg_pending[--ex->n_cg_pending];
        else
            i++;
    pthread_mutex_lock(&ex->mu);
    for (struct live *l = ex->lives; l; l = l->next) {
        /* a stop that came while the sandbox was starting the agent: deliver it now */
        if (!l->dead && l->kill_at && l->term_at && l->term_at <= now) {
            l->term_at = 0;
            if (l->agent_pgid > 1 && exec_agent_started(ex, l->agent_pgid))
                kill(-l->agent_pgid, SIGTERM);
            else
                l->term_at = now + 50;
        }
        if (l->dead || !l->kill_at || l->kill_at > now)
            continue;
        l->kill_at = 0;
        l->term_at = 0;
        /* grace is over: the agent's group, or the whole recorder group if we never learned
         * the agent's */
        if (l->executor)
            live_remote_signal(ex, l, "kill");
        else if (l->agent_pgid > 1)
            kill(-l->agent_pgid, SIGKILL);
        else if (l->recorder_pid > 1)
            kill(-l->recorder_pid, SIGKILL);
        log_msg(LOG_INFO, "session %s did not stop within the grace period; killed", l->id);
    }
    pthread_mutex_unlock(&ex->mu);
    /* recovery: recorders that never said hello are gone (D15) */
    for (;;) {
        struct live *late = NULL;
        pthread_mutex_lock(&ex->mu);
        for (struct live *l = ex->lives; l && !late; l = l->next)
            if (!l->dead && l->adopt_by && l->adopt_by <= now && l->pidfd < 0)
                late = l;
        if (late)
            late->adopt_by = 0;
        pthread_mutex_unlock(&ex->mu);
        if (!late)
            break;
        fail_session(ex, late->tenant, late->id, "server restarted");
        live_retire(ex, late);
        schedule(ex);
    }
    lost_sweep(ex, now);
    /* remote sessions whose processes ended on the executor without an exit message */
    for (;;) {
        struct live *gone = NULL;
        pthread_mutex_lock(&ex->mu);
        for (struct live *l = ex->lives; l && !gone; l = l->next)
            if (!l->dead && l->gone_at && l->gone_at <= now)
                gone = l;
        if (gone)
            gone->gone_at = 0;
        pthread_mutex_unlock(&ex->mu);
        if (!gone)
            break;
        if (!gone->exit_seen && !gone->cancelled)
            fail_session(ex, gone->tenant, gone->id, gone->gone_why ? gone->gone_why
                                                                    : "the recorder exited "
                                                                      "unexpectedly");
        live_retire(ex, gone);
        schedule(ex);
    }
}

/* D44: sessions whose executor stayed unreachable past the timeout. */
static void lost_sweep(struct executor *ex, int64_t now) {
    for (;;) {
        struct live *lost = NULL;
        pthread_mutex_lock(&ex->mu);
        for (struct live *l = ex->lives; l && !lost; l = l->next)
            if (!l->dead && l->lost_at && l->lost_at <= now)
                lost = l;
        if (lost)
            lost->lost_at = 0;
        pthread_mutex_unlock(&ex->mu);
        if (!lost)
            return;
        char why[600];
        snprintf(why, sizeof(why), "executor %s was unreachable for %lld s", lost->executor,
                 (long long)(lost_ms(ex) / 1000));
        if (lost->status == SESSION_PROVISIONING && !lost->conn && !lost->cancelled)
            requeue_remote(ex, lost, why); /* it never started there */
        else {
            if (!lost->exit_seen && !lost->cancelled)
                fail_session(ex, lost->tenant, lost->id, why);
            live_retire(ex, lost);
        }
        schedule(ex);
    }
}

/* A remote session is over here once its exit is in and its recorder has hung up (the exit's
 * ack was sent); the executor's own report (CMD_REMOTE_END) may come first or never. */
static void remote_sweep(struct executor *ex) {
    bool freed = false;
    for (struct live *l = ex->lives; l; l = l->next)
        if (!l->dead && l->executor && l->exit_seen && !l->conn) {
            live_retire(ex, l);
            freed = true;
        }
    if (freed)
        schedule(ex);
}

static void on_remote_end(struct executor *ex, struct cmd *c) {
    pthread_mutex_lock(&ex->mu);
    struct live *l = live_find(ex, NULL, c->id);
    if (l && (!l->executor || strcmp(l->executor, c->provider ? c->provider : "") != 0))
        l = NULL; /* only the executor that runs it may end it */
    pthread_mutex_unlock(&ex->mu);
    if (!l)
        return;
    if (l->conn && !l->conn->dead) /* its last words may still be in the socket */
        conn_readable(ex, l->conn);
    if (l->dead)
        return;
    char why[700];
    if (c->result == 2 && !l->cancelled && l->status == SESSION_PROVISIONING && !l->conn) {
        requeue_remote(ex, l, c->text ? c->text : "the launch did not reach the executor");
        schedule(ex);
        return;
    }
    if (c->result != 0) { /* the executor could not start it */
        snprintf(why, sizeof(why), "executor %s could not launch the session: %s", l->executor,
                 c->text ? c->text : "error");
        if (!l->cancelled)
            fail_session(ex, l->tenant, l->id, why);
        live_retire(ex, l);
        schedule(ex);
        return;
    }
    if (l->exit_seen || l->cancelled) {
        live_retire(ex, l);
        schedule(ex);
        return;
    }
    /* bytes of its link may still be on their way over another stream: wait a little for the
     * exit message before calling it a failure */
    snprintf(why, sizeof(why), "the recorder exited unexpectedly on executor %s%s%s",
             l->executor, c->text && *c->text ? " with " : "", c->text ? c->text : "");
    free(l->gone_why);
    l->gone_why = strdup(why);
    pthread_mutex_lock(&ex->mu);
    l->gone_at = time_mono_ms() + 3000;
    pthread_mutex_unlock(&ex->mu);
}

/* ---- commands -------------------------------------------------------------------------------- */

static void run_commands(struct executor *ex) {
    uint64_t v;
    while (read(ex->evfd, &v, sizeof(v)) > 0)
        ;
    pthread_mutex_lock(&ex->mu);
    struct cmd *list = ex->cmd_head;
    ex->cmd_head = ex->cmd_tail = NULL;
    pthread_mutex_unlock(&ex->mu);
    bool kick = false, acks = false;
    while (list) {
        struct cmd *c = list;
        list = c->next;
        struct live *l;
        switch (c->kind) {
        case CMD_KICK:
            kick = true;
            break;
        case CMD_PROVISIONED:
            on_provisioned(ex, c);
            break;
        case CMD_ACK:
        case CMD_DROP_CONN:
        case CMD_SEND: {
            pthread_mutex_lock(&ex->mu);
            l = live_find(ex, c->tenant, c->id);
            struct rconn *conn = l ? l->conn : NULL;
            if (l && !conn && c->kind == CMD_SEND) { /* keep prompts until it reconnects */
                if (!l->prompts)
                    l->prompts = json_array();
                json_array_append(l->prompts, c->msg); /* whole: a turn's model goes with it */
            }
            pthread_mutex_unlock(&ex->mu);
            if (conn && c->kind == CMD_ACK) {
                int64_t upto = c->rseq;
                conn->in_flight = conn->in_flight > c->acks ? conn->in_flight - c->acks : 0;
                if (conn->in_flight == 0) { /* nothing stored is pending: release a held ack */
                    upto = conn->held_ack > upto ? conn->held_ack : upto;
                    conn->held_ack = 0;
                }
                /* cumulative: one ack per connection after the batch says it for all */
                conn->ack_upto = upto > conn->ack_upto ? upto : conn->ack_upto;
                acks = true;
            }
            else if (conn && c->kind == CMD_SEND)
                conn_send(ex, conn, json_incref(c->msg));
            else if (conn)
                conn_kill(ex, conn);
            break;
        }
        case CMD_WAKE:
            break;
        case CMD_EXIT:
            pthread_mutex_lock(&ex->mu);
            l = live_find(ex, c->tenant, c->id);
            pthread_mutex_unlock(&ex->mu);
            if (l && !l->dead)
                exit_now(ex, l, l->conn, c->msg);
            break;
        case CMD_ATTACH: { /* a recorder link from an executor (exec_attach_remote) */
            struct rconn *rc = calloc(1, sizeof(*rc));
            if (!rc)
                break; /* cmd_free closes the descriptor: the executor's recorder retries */
            rc->fd = c->result;
            c->result = -1; /* taken */
            rc->peer = AH_TAKE(c->text);
            rc->h = (struct handle){H_CONN, rc};
            rc->out.max = CONN_OUT_MAX + LINK_MAX_FRAME;
            rc->next = conns;
            conns = rc;
            epoll_set(ex, rc->fd, &rc->h, EPOLLIN, EPOLL_CTL_ADD);
            break;
        }
        case CMD_REMOTE_END:
            on_remote_end(ex, c);
            break;
        case CMD_ADOPT_REMOTE: { /* D46: taken over from a lost replica (replicas.c) */
            struct session_row *row = NULL;
            pthread_mutex_lock(&ex->mu);
            l = live_find(ex, c->tenant, c->id);
            pthread_mutex_unlock(&ex->mu);
            if (!l && store_session_get(ex->store, c->tenant, c->id, &row) == 0 &&
                !session_status_terminal(row->status) && row->executor_id &&
                *row->executor_id && live_add_remote(ex, row))
                log_msg(LOG_INFO, "session %s: taken over from a lost access point; waiting for "
                        "executor %s to reconnect here", c->id, row->executor_id);
            session_row_free(row);
            break;
        }
        case CMD_EXECUTOR: { /* D44: its sessions reachable again, or their timeout starts */
            int64_t at = c->result ? 0 : time_mono_ms() + lost_ms(ex);
            pthread_mutex_lock(&ex->mu);
            for (struct live *x = ex->lives; x; x = x->next)
                if (!x->dead && x->executor && strcmp(x->executor, c->provider) == 0 &&
                    (c->result || !x->lost_at))
                    x->lost_at = at;
            pthread_mutex_unlock(&ex->mu);
            break;
        }
        case CMD_ABANDONED: /* the worker drops the job (tie() finds no session) */
            pthread_mutex_lock(&ex->mu);
            l = live_find(ex, c->tenant, c->id);
            bool still = l && l->provisioning;
            pthread_mutex_unlock(&ex->mu);
            if (still) {
                live_retire(ex, l);
                kick = true;
            }
            break;
        }
        cmd_free(c);
    }
    for (struct rconn *c = acks ? conns : NULL; c; c = c->next)
        if (c->ack_upto) {
            if (!c->dead)
                conn_send(ex, c, json_pack("{s:s, s:I}", "type", "ack", "rseq",
                                           (json_int_t)c->ack_upto));
            c->ack_upto = 0;
        }
    if (kick)
        schedule(ex);
}

/* ---- the loop -------------------------------------------------------------------------------- */

static void on_accept(struct executor *ex) {
    for (;;) {
        int fd = accept4(ex->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct rconn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->h = (struct handle){H_CONN, c};
        c->out.max = CONN_OUT_MAX + LINK_MAX_FRAME;
        c->next = conns;
        conns = c;
        epoll_set(ex, fd, &c->h, EPOLLIN, EPOLL_CTL_ADD);
    }
}

static void *supervisor_main(void *arg) {
    struct executor *ex = arg;
    struct epoll_event evs[64];
    schedule(ex);
    for (;;) {
        pthread_mutex_lock(&ex->mu);
        bool stop = ex->stopping;
        pthread_mutex_unlock(&ex->mu);
        if (stop)
            break;
        int n = epoll_wait(ex->epfd, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            struct handle *h = evs[i].data.ptr;
            switch (h->kind) {
            case H_LISTEN:
                on_accept(ex);
                break;
            case H_EVENT:
                run_commands(ex);
                break;
            case H_TIMER:
                on_timer(ex);
                break;
            case H_CONN: {
                struct rconn *c = h->ptr;
                if (c->dead)
                    break;
                if (evs[i].events & EPOLLOUT)
                    conn_flush(ex, c);
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    conn_readable(ex, c);
                break;
            }
            case H_PIDFD:
                on_pidfd(ex, h->ptr);
                break;
            }
        }
        remote_sweep(ex);
        reap_dead(ex);
        rearm_timer(ex);
    }
    return NULL;
}

/* ---- recovery (D15) and start/stop ----------------------------------------------------------- */

/* A session running on an executor that this access point takes charge of (a restart, or the
 * takeover from a lost replica): it waits for its executor's recorder to say hello, and is
 * lost like any of that executor's sessions if it does not within the timeout (D44). */
static bool live_add_remote(struct executor *ex, const struct session_row *r) {
    struct live *l = live_add(ex, r->tenant_id, r->id, r->status);
    char *who = strdup(r->executor_id);
    if (!l || !who) {
        free(who);
        if (l)
            live_retire(ex, l);
        return false;
    }
    pthread_mutex_lock(&ex->mu);
    l->executor = who;
    ex->n_remote++;
    snprintf(l->token_hash, sizeof(l->token_hash), "%s",
             r->recorder_token ? r->recorder_token : "");
    if (r->status == SESSION_STOPPING)
        l->kill_at = time_mono_ms() + ex->cfg.stop_grace_ms;
    l->lost_at = time_mono_ms() + lost_ms(ex); /* until its executor is back (D44) */
    pthread_mutex_unlock(&ex->mu);
    return true;
}

static void recover(struct executor *ex) {
    struct session_row **rows = NULL;
    size_t n = 0;
    if (store_session_list_live(ex->store, &rows, &n) < 0)
        return;
    int reattached = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        struct session_row *r = rows[i];
        if (r->status == SESSION_QUEUED)
            continue;
        if (r->executor_id && *r->executor_id) {
            /* issue 16 item 5: its processes live on the executor, whose recorder reconnects
             * through the link (as a local one does to the socket) and says hello again */
            if (live_add_remote(ex, r))
                reattached++;
            continue;
        }
        /* Whatever state the crash left, a live recorder means an agent that may have done
         * things: adopt it (its hello moves a provisioning session to running). A recorder
         * started just before the crash may not have its pid stored yet (the token hash is
         * stored before the spawn): wait a little for its hello. */
        bool alive = r->recorder_pid > 1 && r->recorder_start &&
                     process_start_time((pid_t)r->recorder_pid) == r->recorder_start;
        bool maybe = r->recorder_pid <= 0 && r->status == SESSION_PROVISIONING &&
                     r->recorder_token && *r->recorder_token;
        int pidfd = alive ? pidfd_open_pid((pid_t)r->recorder_pid) : -1;
        if (pidfd < 0 && !maybe) {
            fail_session(ex, r->tenant_id, r->id, "server restarted");
            failed++;
            continue;
        }
        struct live *l = live_add(ex, r->tenant_id, r->id, r->status);
        if (!l) {
            close(pidfd);
            continue;
        }
        l->recorder_pid = pidfd >= 0 ? (pid_t)r->recorder_pid : 0;
        l->pidfd = pidfd;
        l->our_child = false;
        if (pidfd < 0)
            l->adopt_by = time_mono_ms() + ADOPT_WAIT_MS;
        l->workspace = r->workspace_path ? strdup(r->workspace_path) : NULL;
        snprintf(l->token_hash, sizeof(l->token_hash), "%s",
                 r->recorder_token ? r->recorder_token : "");
        if (r->status == SESSION_STOPPING) /* the stop was under way: finish it */
            l->kill_at = time_mono_ms() + ex->cfg.stop_grace_ms;
        if (pidfd >= 0)
            epoll_set(ex, pidfd, &l->pid_handle, EPOLLIN, EPOLL_CTL_ADD);
        reattached++;
    }
    session_rows_free(rows, n);
    if (reattached || failed)
        log_msg(LOG_INFO, "recovered sessions: %d re-attached, %d failed (server restarted)",
                reattached, failed);
}

static struct handle listen_handle = {H_LISTEN, NULL}, event_handle = {H_EVENT, NULL},
                     timer_handle = {H_TIMER, NULL};

int supervisor_start(struct executor *ex, struct ah_problem *reterr) {
    ex->epfd = epoll_create1(EPOLL_CLOEXEC);
    ex->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ex->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ex->epfd < 0 || ex->evfd < 0 || ex->timerfd < 0)
        return problem_set(reterr, AH_E_IO, "cannot create the supervisor's descriptors: %s",
                           strerror(errno));
    epoll_set(ex, ex->listen_fd, &listen_handle, EPOLLIN, EPOLL_CTL_ADD);
    epoll_set(ex, ex->evfd, &event_handle, EPOLLIN, EPOLL_CTL_ADD);
    epoll_set(ex, ex->timerfd, &timer_handle, EPOLLIN, EPOLL_CTL_ADD);
    recover(ex);
    rearm_timer(ex);
    if (pthread_create(&ex->thread, NULL, supervisor_main, ex) != 0)
        return problem_set(reterr, AH_E_NOMEM, "cannot start the supervisor thread");
    pthread_setname_np(ex->thread, "ah-supervisor"); /* for top -H, perf and /proc */
    ex->started = true;
    return 0;
}

void supervisor_stop(struct executor *ex) {
    if (ex->started) {
        exec_post(ex, cmd_new(CMD_WAKE, "", "")); /* stopping is already set */
        pthread_join(ex->thread, NULL);
        ex->started = false;
    }
    /* Agents keep running; their recorders reconnect to the next server (D15). */
    for (struct rconn *c = conns; c; c = c->next)
        conn_kill(ex, c);
    pthread_mutex_lock(&ex->mu);
    for (struct live *l = ex->lives; l; l = l->next) {
        if (l->pidfd >= 0)
            close(l->pidfd);
        l->pidfd = -1;
        l->dead = true;
    }
    pthread_mutex_unlock(&ex->mu);
    reap_dead(ex);
    pthread_mutex_lock(&ex->mu);
    if (ex->evfd >= 0)
        close(ex->evfd);
    ex->evfd = -1;
    pthread_mutex_unlock(&ex->mu);
    if (ex->epfd >= 0)
        close(ex->epfd);
    if (ex->timerfd >= 0)
        close(ex->timerfd);
    ex->epfd = ex->timerfd = -1;
}
