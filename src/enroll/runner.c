/*
 * runner.c — remote sessions, executor side (runner.h).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../exec/exec.h"
#include "../obs/obs.h"
#include "../os/os.h"
#include "../workspace/workspace.h"
#include "host_facts.h"
#include "relay.h"
#include "runner.h"
#include "tunnel.h"

#define WORKERS 2
#define HELLO_MAX 65536   /* a recorder's hello is a few hundred bytes */
#define REPORTS_MAX 4096  /* reports kept while the link is down */
#define SESSIONS_MAX 100000

/* One session this executor runs (loop thread only). */
struct rsess {
    struct rsess *next;
    char tenant[AH_LIMIT_NAME + 1];
    char id[ULID_LEN + 1];
    bool provisioning; /* a worker has it */
    bool cancelled;    /* stopped or killed while provisioning: never spawned */
    pid_t rec_pid;     /* 0 until spawned (or learned from a reconnecting recorder) */
    pid_t agent_pgid;  /* from the recorder's hello */
    bool our_child;
    int64_t term_at;   /* a stop while the sandbox starts the agent: SIGTERM again then */
    int pidfd;
    struct link_watch *pw;
    struct runner *r;
};

/* A recorder connection before its hello is complete. */
struct pending {
    struct pending *next;
    struct runner *r;
    int fd;
    struct link_watch *w;
    struct ah_buf in;
};

/* A WorkspaceRead being answered (runner.h): two references, the stream's (dropped when it
 * closes) and the worker's job (dropped when its result is back on the loop). Loop thread
 * only, but for the fields the worker fills before it posts the job back. */
struct rread {
    unsigned refs;
    struct link_stream *st; /* NULL once the stream closed */
    json_t *msg;
    /* the worker's result */
    struct ah_problem problem;
    char *body;
    size_t len, sent;
    const char *ctype;
    bool ready;
};

struct job {
    struct job *next;
    struct rread *read; /* a workspace read; the rest is a launch's */
    char tenant[AH_LIMIT_NAME + 1];
    char id[ULID_LEN + 1];
    char *agent_type;
    int agent_index;
    json_t *request;
    char token[128];
    /* result */
    int rc;
    pid_t pid;
    char error[600];
    struct runner *r;
};

struct report {
    struct report *next;
    json_t *msg;
};

struct runner {
    struct executor *ex;
    struct host_facts *hf;
    struct link_client *cl;
    struct link_loop *loop;
    struct link_conn *conn; /* the current connection (on_connect .. on_close) */
    struct link_watch *lw;  /* the recorder socket */
    int timerfd;            /* ticks while a stop waits for a sandbox to start its agent */
    struct link_watch *tw;
    bool ticking;
    const struct tunnel_exec_config *tunnels;
    struct pending *pendings; /* hellos not complete yet */
    bool loop_done;           /* runner_stop: the loop let go of every descriptor */
    pthread_cond_t done_cv;
    char broken[400];         /* why no session can run here ("" when they can) */
    struct rsess *sessions;
    size_t n_sessions;
    struct report *reports, *reports_tail;
    size_t n_reports;
    /* workers */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *jobs, *jobs_tail;
    bool stopping;
    pthread_t workers[WORKERS];
    int n_workers;
};

static void rread_unref(struct rread *q) {
    if (!q || --q->refs)
        return;
    json_decref(q->msg);
    problem_clear(&q->problem);
    free(q->body);
    free(q);
}

static void free_job(struct job *j) {
    if (!j)
        return;
    rread_unref(j->read);
    explicit_bzero(j->token, sizeof(j->token));
    free(j->agent_type);
    json_decref(j->request);
    free(j);
}

/* ---- sessions ------------------------------------------------------------------------------ */

static struct rsess *find(struct runner *r, const char *id) {
    for (struct rsess *s = r->sessions; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static struct rsess *add(struct runner *r, const char *tenant, const char *id) {
    if (r->n_sessions >= SESSIONS_MAX)
        return NULL;
    struct rsess *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    snprintf(s->tenant, sizeof(s->tenant), "%s", tenant);
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->pidfd = -1;
    s->r = r;
    s->next = r->sessions;
    r->sessions = s;
    r->n_sessions++;
    host_facts_set_running(r->hf, (int64_t)r->n_sessions);
    return s;
}

static void drop(struct runner *r, struct rsess *s) {
    for (struct rsess **pp = &r->sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    link_watch_del(s->pw);
    if (s->pidfd >= 0)
        close(s->pidfd);
    free(s);
    r->n_sessions--;
    host_facts_set_running(r->hf, (int64_t)r->n_sessions);
}

/* ---- reports to the access point ------------------------------------------------------------ */

static int report_frame(void *sctx, struct link_stream *s, json_t *msg) {
    return 0; /* nothing is expected back */
}
static const struct link_stream_handlers report_handlers = {.on_frame = report_frame};

static bool send_report(struct runner *r, json_t *msg) {
    struct link_stream *s = NULL;
    if (!r->conn || link_stream_open(r->conn, &report_handlers, r, &s) < 0)
        return false;
    if (link_stream_send_frame(s, msg) < 0) {
        link_stream_reset(s, 1);
        return false;
    }
    link_stream_finish(s);
    return true;
}

/* Sends now or keeps it for the next connection (takes msg). */
static void report(struct runner *r, json_t *msg) {
    if (!msg)
        return;
    if (send_report(r, msg)) {
        json_decref(msg);
        return;
    }
    struct report *p = r->n_reports < REPORTS_MAX ? calloc(1, sizeof(*p)) : NULL;
    if (!p) {
        log_msg(LOG_WARN, "executor: a session report was dropped (the link is down too long)");
        json_decref(msg);
        return;
    }
    p->msg = msg;
    if (r->reports_tail)
        r->reports_tail->next = p;
    else
        r->reports = p;
    r->reports_tail = p;
    r->n_reports++;
}

static void flush_reports(struct runner *r) {
    while (r->reports && send_report(r, r->reports->msg)) {
        struct report *p = r->reports;
        r->reports = p->next;
        if (!r->reports)
            r->reports_tail = NULL;
        r->n_reports--;
        json_decref(p->msg);
        free(p);
    }
}

static void report_ended(struct runner *r, const char *id, const char *how, bool launch_failed) {
    report(r, json_pack("{s:s, s:s, s:s, s:b}", "type", "SessionEnded", "session_id", id, "how",
                        how ? how : "", "launch_failed", launch_failed));
}

/* ---- recorder processes -------------------------------------------------------------------- */

static void on_pidfd(void *arg, uint32_t events) {
    struct rsess *s = arg;
    struct runner *r = s->r;
    char how[128] = "";
    if (s->our_child) {
        siginfo_t info = {0};
        if (waitid(P_PIDFD, (id_t)s->pidfd, &info, WEXITED | WNOHANG) == 0 && info.si_pid) {
            if (info.si_code == CLD_EXITED)
                snprintf(how, sizeof(how), "exit code %d", info.si_status);
            else
                snprintf(how, sizeof(how), "signal %d", info.si_status);
        }
    }
    log_msg(LOG_INFO, "session %s: its recorder ended%s%s", s->id, how[0] ? " with " : "", how);
    report_ended(r, s->id, how, false);
    drop(r, s);
}

static void watch_pid(struct runner *r, struct rsess *s, pid_t pid, bool child) {
    s->rec_pid = pid;
    s->our_child = child;
    s->pidfd = pidfd_open_pid(pid);
    if (s->pidfd >= 0 && link_watch_add(r->loop, s->pidfd, EPOLLIN, on_pidfd, s, &s->pw) < 0) {
        close(s->pidfd);
        s->pidfd = -1;
    }
}

/* ---- provisioning workers -------------------------------------------------------------------- */

static void on_job_done(void *arg) {
    struct job *j = arg;
    struct runner *r = j->r;
    struct rsess *s = find(r, j->id);
    if (j->rc == 0 && (!s || s->cancelled)) { /* stopped meanwhile: it must not run */
        kill(-j->pid, SIGKILL);
        waitpid(j->pid, NULL, 0);
    }
    if (!s) {
        free_job(j);
        return;
    }
    s->provisioning = false;
    if (j->rc < 0 || s->cancelled) {
        log_msg(LOG_WARN, "session %s: %s", j->id, j->rc < 0 ? j->error : "stopped before start");
        report_ended(r, j->id, j->rc < 0 ? j->error : "stopped before it started", j->rc < 0);
        drop(r, s);
        free_job(j);
        return;
    }
    log_msg(LOG_INFO, "session %s: recorder started (pid %d)", j->id, (int)j->pid);
    watch_pid(r, s, j->pid, true);
    if (s->pidfd < 0) { /* gone already, or no pidfd: nothing will tell us its end */
        waitpid(j->pid, NULL, WNOHANG);
        report_ended(r, j->id, "the recorder could not be watched", false);
        drop(r, s);
    }
    free_job(j);
}

/* Queues j for a worker (loop thread). */
static void push_job(struct runner *r, struct job *j) {
    pthread_mutex_lock(&r->mu);
    if (r->jobs_tail)
        r->jobs_tail->next = j;
    else
        r->jobs = j;
    r->jobs_tail = j;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void answer_read(struct runner *r, struct rread *q);
static void on_read_done(void *arg);

static void *worker_main(void *arg) {
    struct runner *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (!r->jobs && !r->stopping)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->stopping) {
            pthread_mutex_unlock(&r->mu);
            return NULL;
        }
        struct job *j = r->jobs;
        r->jobs = j->next;
        if (!r->jobs)
            r->jobs_tail = NULL;
        pthread_mutex_unlock(&r->mu);
        if (j->read) {
            answer_read(r, j->read);
            if (link_post(r->loop, on_read_done, j) < 0)
                free_job(j); /* the loop is going: so is the stream */
            continue;
        }
        struct ah_problem p = {0};
        char *provider = NULL, *path = NULL;
        j->rc = 0;
        test_hold_point("executor-provision"); /* a launch accepted, nothing started yet */
        if (!exec_agent_known(r->ex, j->agent_type))
            j->rc = problem_set(&p, AH_E_INVAL, "agent %s is not available on this executor (it "
                                "has %s)", j->agent_type, exec_agent_names(r->ex));
        /* the access point's local path, step for step: inputs, workspace, base snapshot, then
         * `ah agent record … -- ah agent start …` pointed at our socket */
        /* D48: provisioning is a span of the session's trace, the child of LaunchSession */
        char tp[56];
        struct obs_trace tr;
        int64_t t0 = obs_wall_ns();
        bool known = exec_trace_peek(j->id, tp) && obs_trace_start(tp, &tr) == 0;
        bool traced = known && obs_otlp_enabled();
        if (known) /* D48: what this thread logs for the session carries its trace */
            log_trace_set(tr.trace_id, tr.span_id);
        if (j->rc == 0)
            j->rc = exec_provision_session(r->ex, j->id, j->request, j->agent_index, -1,
                                           &provider, &path, &p);
        if (traced) {
            struct obs_span sp = {
                .name = "provisioning",
                .kind = 1,
                .trace = tr,
                .start_ns = t0,
                .end_ns = obs_wall_ns(),
                .error = j->rc < 0,
                .attrs = {{"ah.session_id", j->id}, {"ah.snapshot_provider", provider}},
            };
            obs_span_export(&sp);
        }
        if (j->rc == 0)
            j->rc = exec_spawn_session(r->ex, j->id, j->agent_type, j->request, path, j->token,
                                       &j->pid, &p);
        if (j->rc < 0) {
            snprintf(j->error, sizeof(j->error), "%s",
                     p.detail[0] ? p.detail : ah_strerror(j->rc));
            log_msg(LOG_WARN, "session %s: cannot start here: %s", j->id, j->error);
        } else {
            log_msg(LOG_INFO, "session %s: provisioned and started", j->id);
        }
        log_trace_set(NULL, NULL);
        problem_clear(&p);
        free(provider);
        free(path);
        explicit_bzero(j->token, sizeof(j->token));
        if (link_post(r->loop, on_job_done, j) < 0) {
            if (j->rc == 0)
                kill(-j->pid, SIGKILL);
            free_job(j);
        }
    }
}

/* ---- RPCs from the access point --------------------------------------------------------------- */

static void answer(struct link_stream *st, json_t *msg) {
    if (msg && link_stream_send_frame(st, msg) < 0)
        link_stream_reset(st, 1);
    else
        link_stream_finish(st);
    json_decref(msg);
}

static json_t *error_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *error_msg(const char *fmt, ...) {
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return json_pack("{s:s, s:s}", "type", "Error", "error", buf);
}

static json_t *on_launch(struct runner *r, const json_t *m) {
    int64_t t0 = obs_wall_ns(); /* D48: the start of the LaunchSession span */
    const char *id = json_string_value(json_object_get(m, "session_id"));
    const char *tenant = json_string_value(json_object_get(m, "tenant"));
    const char *agent = json_string_value(json_object_get(m, "agent_type"));
    const char *token = json_string_value(json_object_get(m, "token"));
    const char *tp = json_string_value(json_object_get(m, "traceparent"));
    json_t *request = json_object_get(m, "request");
    json_int_t index = json_integer_value(json_object_get(m, "agent_index"));
    if (!id || !ulid_valid(id) || !tenant || !*tenant || strlen(tenant) > AH_LIMIT_NAME ||
        !agent || !token || strlen(token) >= sizeof(((struct job *)0)->token) ||
        !json_is_object(request) || index < 0 || index > 1000)
        return error_msg("malformed LaunchSession");
    if (find(r, id))
        return json_pack("{s:s}", "type", "Accepted"); /* a repeat: it runs already */
    if (r->broken[0])
        return error_msg("this executor cannot run sessions: %s", r->broken);
    if (json_object_get(request, "branch"))
        return error_msg("session branches run on the access point that holds their parent");
    struct job *j = calloc(1, sizeof(*j));
    struct rsess *s = j ? add(r, tenant, id) : NULL;
    if (!s) {
        free(j);
        return error_msg("out of memory");
    }
    snprintf(j->tenant, sizeof(j->tenant), "%s", tenant);
    snprintf(j->id, sizeof(j->id), "%s", id);
    snprintf(j->token, sizeof(j->token), "%s", token);
    j->agent_type = strdup(agent);
    j->agent_index = (int)index;
    j->request = json_incref(request);
    j->r = r;
    if (!j->agent_type) {
        drop(r, s);
        free_job(j);
        return error_msg("out of memory");
    }
    if (tp) {
        /* D48: the recorder and agent join the creating request's trace. With export on, the
         * executor's LaunchSession handling is a span of it (a child of the access point's
         * span that came over the link), and provisioning, the recorder and the agent become
         * its children: the traceparent noted for them names this span. */
        struct obs_trace tr;
        char mine[56];
        if (obs_otlp_enabled() && obs_trace_start(tp, &tr) == 0 && tr.parent_id[0]) {
            obs_traceparent_format(&tr, mine);
            exec_trace_note(id, mine);
            struct obs_span sp = {
                .name = "LaunchSession",
                .kind = 2,
                .trace = tr,
                .start_ns = t0,
                .end_ns = obs_wall_ns(),
                .attrs = {{"ah.session_id", id}, {"ah.agent_type", agent}},
            };
            obs_span_export(&sp);
        } else {
            exec_trace_note(id, tp);
        }
    }
    s->provisioning = true;
    push_job(r, j);
    log_msg(LOG_INFO, "session %s: launching (tenant %s, agent %s)", id, tenant, agent);
    return json_pack("{s:s}", "type", "Accepted");
}

static void tick(struct runner *r, bool on) {
    if (on == r->ticking || r->timerfd < 0)
        return;
    struct itimerspec its = {0};
    if (on)
        its.it_interval.tv_nsec = its.it_value.tv_nsec = 50 * 1000000L;
    timerfd_settime(r->timerfd, 0, &its, NULL);
    r->ticking = on;
}

static void on_tick(void *arg, uint32_t events) {
    struct runner *r = arg;
    uint64_t n;
    if (read(r->timerfd, &n, sizeof(n)) < 0) { /* spurious */
    }
    int64_t now = time_mono_ms();
    bool more = false;
    for (struct rsess *s = r->sessions; s; s = s->next) {
        if (!s->term_at || s->term_at > now) {
            more |= s->term_at != 0;
            continue;
        }
        if (s->agent_pgid > 1 && (!r->ex || exec_group_agent_started(r->ex, s->agent_pgid))) {
            kill(-s->agent_pgid, SIGTERM);
            s->term_at = 0;
        } else {
            s->term_at = now + 50;
            more = true;
        }
    }
    tick(r, more);
}

static json_t *handle_signal(struct runner *r, const json_t *m);

/* D48: with export on, a Signal that came with a traceparent (the access point's client span)
 * is handled as a server span, its child; the log lines of the handling carry it. */
static json_t *on_signal(struct runner *r, const json_t *m) {
    struct obs_trace tr;
    const char *tp = json_string_value(json_object_get(m, "traceparent"));
    if (!tp || !obs_otlp_enabled() || obs_trace_start(tp, &tr) < 0 || !tr.parent_id[0])
        return handle_signal(r, m);
    int64_t t0 = obs_wall_ns();
    log_trace_set(tr.trace_id, tr.span_id);
    json_t *reply = handle_signal(r, m);
    log_trace_set(NULL, NULL);
    const char *type = json_string_value(json_object_get(reply, "type"));
    struct obs_span sp = {
        .name = "Signal",
        .kind = 2,
        .trace = tr,
        .start_ns = t0,
        .end_ns = obs_wall_ns(),
        .error = !type || strcmp(type, "Error") == 0,
        .attrs = {{"rpc.system", "ah-link"},
                  {"rpc.method", "Signal"},
                  {"ah.session_id", json_string_value(json_object_get(m, "session_id"))},
                  {"ah.signal_action", json_string_value(json_object_get(m, "action"))}},
    };
    obs_span_export(&sp);
    return reply;
}

static json_t *handle_signal(struct runner *r, const json_t *m) {
    const char *id = json_string_value(json_object_get(m, "session_id"));
    const char *action = json_string_value(json_object_get(m, "action"));
    struct rsess *s = id ? find(r, id) : NULL;
    if (!action)
        return error_msg("malformed Signal");
    if (!s)
        return error_msg("session %s is not running on this executor (or its recorder has not "
                         "reconnected yet)",
                         id ? id : "?");
    pid_t agent = s->agent_pgid > 1 ? s->agent_pgid : 0;
    pid_t any = agent ? agent : s->rec_pid;
    if (strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0) {
        if (!agent)
            return error_msg("session %s: the agent's process group is not known yet", id);
        kill(-agent, action[0] == 'p' ? SIGSTOP : SIGCONT);
    } else if (strcmp(action, "stop") == 0) {
        if (s->provisioning)
            s->cancelled = true;
        else if (any > 1) {
            kill(-any, SIGCONT); /* a stopped process cannot handle SIGTERM */
            kill(-any, SIGTERM);
            /* a sandbox still starting its agent ignores SIGTERM: tell the agent once it runs */
            if (!agent || !r->ex || !exec_group_agent_started(r->ex, agent)) {
                s->term_at = time_mono_ms() + 50;
                tick(r, true);
            }
        }
    } else if (strcmp(action, "kill") == 0) { /* the stop's grace is over */
        if (s->provisioning)
            s->cancelled = true;
        else if (any > 1)
            kill(-any, SIGKILL);
        s->term_at = 0;
    } else if (strcmp(action, "abandon") == 0) { /* cancelled or deleted: everything goes */
        if (s->provisioning)
            s->cancelled = true;
        if (agent)
            kill(-agent, SIGKILL);
        if (s->rec_pid > 1)
            kill(-s->rec_pid, SIGKILL);
        s->term_at = 0;
    } else {
        return error_msg("unknown action %s", action);
    }
    log_msg(LOG_INFO, "session %s: %s", id, action);
    return json_pack("{s:s}", "type", "Done");
}

/* ---- workspace reads (WorkspaceRead) ------------------------------------------------------------ */

struct read_points {
    struct executor *ex;
    const char *tenant, *id;
    bool ended; /* the access point says the session ended: its workspace no longer changes */
};

/* Whether snapshots a and b of st hold the same tree. */
static bool same_tree(struct ws_store *st, const char *a, const char *b) {
    struct ws_snapshot_info ia = {0}, ib = {0};
    bool same = ws_snapshot_info(st, a, &ia) == 0 && ws_snapshot_info(st, b, &ib) == 0 &&
                strcmp(ia.tree, ib.tree) == 0;
    ws_snapshot_info_clear(&ia);
    ws_snapshot_info_clear(&ib);
    return same;
}

/* The snapshot id kept in <data>/sessions/<id>/<name>, when it still names a snapshot of st. */
static bool kept_id(struct read_points *rp, struct ws_store *st, const char *name,
                    char out[WS_SNAP_ID_LEN + 1]) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/sessions/%s/%s", exec_data_dir(rp->ex), rp->id, name);
    char *text = NULL;
    size_t len = 0;
    struct ws_snapshot_info info = {0};
    bool ok = read_file(path, 256, &text, &len) == 0 && len == WS_SNAP_ID_LEN;
    if (ok) {
        memcpy(out, text, len);
        out[len] = '\0';
        ok = ws_snapshot_info(st, out, &info) == 0;
        ws_snapshot_info_clear(&info);
    }
    free(text);
    return ok;
}

static void keep_id(struct read_points *rp, const char *name, const char *snap) {
    char path[4200], tmp[4300];
    snprintf(path, sizeof(path), "%s/sessions/%s/%s", exec_data_dir(rp->ex), rp->id, name);
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)gettid());
    if (write_file(tmp, snap, strlen(snap), 0600) < 0 || rename(tmp, path) < 0)
        unlink(tmp); /* only an optimisation is lost */
}

/* `current`: the workspace as it is now (it stays on this executor after the session ended),
 * else the newest snapshot. The executor has no retention pass, so reads (a UI polling a
 * session) must not add a snapshot each: an ended session's workspace no longer changes and
 * its `current` is taken once (snapshot-final); a running one's read keeps its snapshot only
 * when something changed since the previous read's (snapshot-read). */
static int read_current(void *arg, struct ws_store *st, char out[WS_SNAP_ID_LEN + 1]) {
    struct read_points *rp = arg;
    char dir[4200], kept[WS_SNAP_ID_LEN + 1];
    if (rp->ended && kept_id(rp, st, "snapshot-final", out))
        return 0;
    snprintf(dir, sizeof(dir), "%s/workspaces/%s", exec_data_dir(rp->ex), rp->id);
    int rc = access(dir, F_OK) == 0
                 ? exec_snapshot_current(rp->ex, rp->tenant, rp->id, dir, st, out)
                 : AH_E_NOTFOUND;
    if (rc == AH_E_NOTFOUND) /* the workspace is gone: its last state */
        rc = ws_snapshot_latest(st, out);
    if (rc < 0)
        return rc;
    if (rp->ended) {
        keep_id(rp, "snapshot-final", out);
    } else if (kept_id(rp, st, "snapshot-read", kept) && strcmp(kept, out) != 0 &&
               same_tree(st, kept, out) && ws_snapshot_forget(st, out) == 0) {
        memcpy(out, kept, sizeof(kept));
    } else {
        keep_id(rp, "snapshot-read", out);
    }
    return 0;
}

/* On a worker: the answer, with the access point's own code for its sessions (ws_answer). */
static void answer_read(struct runner *r, struct rread *q) {
    const json_t *m = q->msg;
    const char *id = json_string_value(json_object_get(m, "session_id"));
    const char *tenant = json_string_value(json_object_get(m, "tenant"));
    const char *kind = json_string_value(json_object_get(m, "kind"));
    json_t *query = json_object_get(m, "query");
    json_t *tail = json_object_get(m, "tail"), *accept = json_object_get(m, "accept");
    struct ws_ask a = {.query = query, .tail = json_string_value(tail),
                       .accept = json_string_value(accept)};
    bool strings = json_is_object(query);
    const char *k;
    json_t *v;
    json_object_foreach(query, k, v) strings &= json_is_string(v);
    if (!id || !ulid_valid(id) || !tenant || ws_ask_kind_parse(kind, &a.kind) < 0 || !strings ||
        (tail && !json_is_string(tail) && !json_is_null(tail)) ||
        (accept && !json_is_string(accept) && !json_is_null(accept))) {
        problem_set(&q->problem, AH_E_PROTOCOL, "malformed WorkspaceRead");
        return;
    }
    test_hold_point("executor-read"); /* a read taken by a worker, not answered yet */
    char base[WS_SNAP_ID_LEN + 1];
    if (exec_snapshot_base(r->ex, id, base) < 0) {
        problem_set(&q->problem, AH_E_NOTFOUND,
                    "session %s has no workspace snapshot on this executor yet", id);
        return;
    }
    AH_AUTOFREE char *dir = exec_snapshot_dir(r->ex, id);
    struct ws_store *st = NULL;
    int rc = dir ? ws_store_open(dir, &st) : AH_E_NOMEM;
    if (rc < 0) {
        problem_set(&q->problem, AH_E_INTERNAL, "cannot open the session's snapshots: %s",
                    ah_strerror(rc));
        return;
    }
    struct read_points rp = {r->ex, tenant, id, json_is_true(json_object_get(m, "ended"))};
    struct ws_point_hooks h = {.current = read_current, .arg = &rp};
    struct ws_reply rep;
    ws_answer(st, base, &a, &h, &rep);
    ws_store_free(st);
    if (rep.problem.code) {
        q->problem = rep.problem;
        memset(&rep.problem, 0, sizeof(rep.problem));
    } else if (rep.json) {
        q->body = json_dumps(rep.json, JSON_COMPACT);
        q->len = q->body ? strlen(q->body) : 0;
        q->ctype = "application/json";
        if (!q->body)
            problem_set(&q->problem, AH_E_NOMEM, "out of memory while sending the answer");
    } else {
        q->body = AH_TAKE(rep.body);
        q->len = rep.body_len;
        q->ctype = "text/x-diff; charset=utf-8";
    }
    ws_reply_clear(&rep);
}

/* Sends what the stream has room for; finishes it once everything went. */
static void read_pump(struct rread *q) {
    while (q->st && q->sent < q->len) {
        int64_t n = link_stream_send(q->st, q->body + q->sent, q->len - q->sent);
        if (n < 0) {
            link_stream_reset(q->st, 1);
            return;
        }
        if (n == 0)
            return; /* on_writable comes */
        q->sent += (size_t)n;
    }
    if (q->st)
        link_stream_finish(q->st);
}

static void on_read_done(void *arg) {
    struct job *j = arg;
    struct rread *q = j->read;
    q->ready = true;
    if (q->st) {
        json_t *head;
        if (q->problem.code)
            head = json_pack("{s:s, s:{s:i, s:s, s:O?}}", "type", "Reply", "problem", "code",
                             q->problem.code, "detail", q->problem.detail, "errors",
                             q->problem.errors);
        else
            head = json_pack("{s:s, s:i, s:s, s:I}", "type", "Reply", "status", 200,
                             "content_type", q->ctype, "length", (json_int_t)q->len);
        if (!head || link_stream_send_frame(q->st, head) < 0)
            link_stream_reset(q->st, 1);
        else if (q->problem.code)
            link_stream_finish(q->st);
        else
            read_pump(q);
        json_decref(head);
    }
    free_job(j);
}

static void read_writable(void *sctx, struct link_stream *s) {
    struct rread *q = sctx;
    if (q->ready)
        read_pump(q);
}

static int read_frame(void *sctx, struct link_stream *s, json_t *msg) {
    return AH_E_PROTOCOL; /* one request per stream */
}

static void read_close(void *sctx, struct link_stream *s, uint64_t app_error) {
    struct rread *q = sctx;
    q->st = NULL; /* the access point gave up (or the link went): the work is dropped */
    rread_unref(q);
}

static const struct link_stream_handlers read_handlers = {
    .on_frame = read_frame, .on_writable = read_writable, .on_close = read_close};

/* A WorkspaceRead: queued for a worker (a diff may take a while: never on the loop). */
static json_t *on_read(struct runner *r, struct link_stream *st, json_t *m) {
    if (!r->ex)
        return json_pack("{s:s, s:{s:i, s:s}}", "type", "Reply", "problem", "code", AH_E_UNAVAIL,
                         "detail", r->broken[0] ? r->broken : "this executor cannot run sessions");
    struct rread *q = calloc(1, sizeof(*q));
    struct job *j = q ? calloc(1, sizeof(*j)) : NULL;
    if (!j) {
        free(q);
        return error_msg("out of memory");
    }
    q->refs = 2;
    q->st = st;
    q->msg = json_incref(m);
    j->read = q;
    j->r = r;
    link_stream_set_handlers(st, &read_handlers, q);
    push_job(r, j);
    return NULL;
}

static int rpc_frame(void *sctx, struct link_stream *st, json_t *msg) {
    struct runner *r = sctx;
    const char *type = json_string_value(json_object_get(msg, "type"));
    json_t *reply;
    if (r->tunnels && tunnel_exec_frame(r->tunnels, st, msg) == 1)
        return 0; /* an OpenTcp: the tunnel has the stream now */
    if (type && strcmp(type, "LaunchSession") == 0)
        reply = on_launch(r, msg);
    else if (type && strcmp(type, "Signal") == 0)
        reply = on_signal(r, msg);
    else if (type && strcmp(type, "WorkspaceRead") == 0) {
        if (!(reply = on_read(r, st, msg)))
            return 0; /* a worker answers */
    } else
        reply = error_msg("unknown request %s", type ? type : "(no type)");
    answer(st, reply);
    return 0;
}

static const struct link_stream_handlers rpc_handlers = {.on_frame = rpc_frame};

/* ---- recorder connections: the hello, then a relay --------------------------------------------- */

static void pending_free(struct pending *p) {
    for (struct pending **pp = &p->r->pendings; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    link_watch_del(p->w);
    ah_buf_clear(&p->in);
    free(p);
}

static void pending_drop(struct pending *p) {
    close(p->fd);
    pending_free(p);
}

/* The hello is complete: name the session, open its stream, relay. */
static void pending_go(struct pending *p, json_t *hello) {
    struct runner *r = p->r;
    const char *id = json_string_value(json_object_get(hello, "sessionId"));
    const char *type = json_string_value(json_object_get(hello, "type"));
    if (!type || strcmp(type, "hello") != 0 || !id || !ulid_valid(id) || !r->conn) {
        pending_drop(p); /* a stranger, or no link now: the recorder retries */
        return;
    }
    struct rsess *s = find(r, id);
    if (!s) { /* this executor restarted: the session is learned again from its recorder */
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(p->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 1 ||
            !(s = add(r, "", id))) {
            pending_drop(p);
            return;
        }
        watch_pid(r, s, cred.pid, false);
        log_msg(LOG_INFO, "session %s: its recorder (pid %d) reconnected", id, (int)cred.pid);
    }
    json_int_t pg = json_integer_value(json_object_get(hello, "agentPgid"));
    if (pg > 1)
        s->agent_pgid = (pid_t)pg;
    struct link_stream *st = NULL;
    json_t *head = json_pack("{s:s, s:s}", "type", "SessionEvents", "session_id", id);
    if (link_stream_open(r->conn, &report_handlers, r, &st) < 0) {
        json_decref(head);
        pending_drop(p);
        return;
    }
    int rc = head ? link_stream_send_frame(st, head) : AH_E_NOMEM;
    json_decref(head);
    if (rc == 0 && link_stream_send(st, p->in.p, p->in.n) != (int64_t)p->in.n)
        rc = AH_E_BUSY;
    if (rc < 0) {
        link_stream_reset(st, 1);
        pending_drop(p);
        return;
    }
    int fd = p->fd;
    pending_free(p);
    link_stream_set_raw(st); /* what the access point sends back is the recorder link's bytes */
    relay_start(r->loop, fd, st, NULL, NULL);
}

static void on_pending(void *arg, uint32_t events) {
    struct pending *p = arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(p->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0 || ah_buf_append(&p->in, buf, (size_t)n) < 0) {
            pending_drop(p);
            return;
        }
        if (p->in.n < 4)
            continue;
        const unsigned char *h = (const unsigned char *)p->in.p;
        uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        if (len > HELLO_MAX) {
            pending_drop(p);
            return;
        }
        if (p->in.n < 4 + (size_t)len)
            continue;
        json_t *hello = json_loadb(p->in.p + 4, len, 0, NULL);
        pending_go(p, hello); /* p is gone after this */
        json_decref(hello);
        return;
    }
}

static void on_accept(void *arg, uint32_t events) {
    struct runner *r = arg;
    for (;;) {
        int fd = accept4(exec_listen_fd(r->ex), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (!r->conn) { /* no link to carry it: the recorder retries (its back-off is ≤ 2 s) */
            close(fd);
            continue;
        }
        struct pending *p = calloc(1, sizeof(*p));
        if (!p) {
            close(fd);
            continue;
        }
        p->r = r;
        p->fd = fd;
        p->in.max = HELLO_MAX + 4 + sizeof(char[4096]);
        if (link_watch_add(r->loop, fd, EPOLLIN, on_pending, p, &p->w) < 0) {
            close(fd);
            free(p);
            continue;
        }
        p->next = r->pendings;
        r->pendings = p;
    }
}

/* ---- the link ----------------------------------------------------------------------------------- */

static void on_connect(void *ctx, struct link_conn *c, const char *peer_id) {
    struct runner *r = ctx;
    r->conn = c;
    flush_reports(r);
}

static int on_stream(void *ctx, struct link_conn *c, struct link_stream *s) {
    link_stream_set_handlers(s, &rpc_handlers, ctx);
    return 0;
}

static void on_close(void *ctx, struct link_conn *c, const char *why) {
    struct runner *r = ctx;
    if (r->conn == c)
        r->conn = NULL; /* its streams end with it: recorders reconnect and replay (D17) */
}

static const struct link_handlers handlers = {
    .on_connect = on_connect, .on_stream = on_stream, .on_close = on_close};

void runner_client_config(struct runner *r, struct link_client_config *cc,
                          const struct tunnel_exec_config *tunnels) {
    r->tunnels = tunnels;
    cc->handlers = &handlers;
    cc->ctx = r;
}

int runner_new(struct host_facts *hf, struct runner **ret) {
    struct runner *r = calloc(1, sizeof(*r));
    if (!r)
        return AH_E_NOMEM;
    r->hf = hf;
    r->timerfd = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_cond_init(&r->done_cv, NULL);
    *ret = r;
    return 0;
}

static void start_on_loop(void *arg) {
    struct runner *r = arg;
    r->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (r->timerfd >= 0 && link_watch_add(r->loop, r->timerfd, EPOLLIN, on_tick, r, &r->tw) < 0) {
        close(r->timerfd);
        r->timerfd = -1;
    }
    if (link_watch_add(r->loop, exec_listen_fd(r->ex), EPOLLIN, on_accept, r, &r->lw) < 0)
        log_msg(LOG_ERROR, "executor: cannot watch the recorder socket: sessions cannot run");
}

struct broken_msg {
    struct runner *r;
    char why[400];
};

/* On the loop: no session can run here; launches queued meanwhile fail with the reason. */
static void set_broken(void *arg) {
    struct broken_msg *b = arg;
    struct runner *r = b->r;
    snprintf(r->broken, sizeof(r->broken), "%s", b->why);
    free(b);
    pthread_mutex_lock(&r->mu);
    struct job *jobs = r->jobs;
    r->jobs = r->jobs_tail = NULL;
    pthread_mutex_unlock(&r->mu);
    while (jobs) {
        struct job *j = jobs;
        jobs = j->next;
        char why[520];
        snprintf(why, sizeof(why), "this executor cannot run sessions: %s", r->broken);
        report_ended(r, j->id, why, true);
        struct rsess *s = find(r, j->id);
        if (s)
            drop(r, s);
        free_job(j);
    }
}

int runner_start(struct runner *r, struct link_client *cl, struct executor *ex,
                 const char *broken) {
    r->cl = cl;
    r->loop = link_client_loop(cl);
    r->ex = ex; /* before the workers and the loop's first use (no session exists before) */
    if (!ex) {
        struct broken_msg *b = calloc(1, sizeof(*b));
        if (!b)
            return AH_E_NOMEM;
        b->r = r;
        snprintf(b->why, sizeof(b->why), "%s", broken ? broken : "not configured");
        int rc = link_post(r->loop, set_broken, b);
        if (rc < 0)
            free(b);
        return rc;
    }
    for (int i = 0; i < WORKERS; i++) {
        if (pthread_create(&r->workers[i], NULL, worker_main, r) != 0)
            break;
        r->n_workers++;
    }
    if (r->n_workers == 0)
        return AH_E_NOMEM;
    return link_post(r->loop, start_on_loop, r);
}

/* On the loop: lets go of every descriptor the runner watches (relays end with their streams,
 * when the link closes). */
static void release_on_loop(void *arg) {
    struct runner *r = arg;
    while (r->pendings)
        pending_drop(r->pendings);
    for (struct rsess *s = r->sessions; s; s = s->next) {
        link_watch_del(s->pw);
        s->pw = NULL;
    }
    link_watch_del(r->lw);
    link_watch_del(r->tw);
    r->lw = r->tw = NULL;
    pthread_mutex_lock(&r->mu);
    r->loop_done = true;
    pthread_cond_broadcast(&r->done_cv);
    pthread_mutex_unlock(&r->mu);
}

void runner_stop(struct runner *r) {
    if (!r)
        return;
    if (r->loop && !r->loop_done && link_post(r->loop, release_on_loop, r) == 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        pthread_mutex_lock(&r->mu);
        while (!r->loop_done &&
               pthread_cond_timedwait(&r->done_cv, &r->mu, &until) == 0)
            ;
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->n_workers; i++)
        pthread_join(r->workers[i], NULL);
    r->n_workers = 0;
}

void runner_free(struct runner *r) {
    if (!r)
        return;
    runner_stop(r);
    /* The recorders keep running: a restarted executor takes them back (they reconnect). */
    while (r->sessions) {
        struct rsess *s = r->sessions;
        r->sessions = s->next;
        if (s->pidfd >= 0)
            close(s->pidfd);
        free(s);
    }
    while (r->jobs) {
        struct job *j = r->jobs;
        r->jobs = j->next;
        free_job(j);
    }
    while (r->reports) {
        struct report *p = r->reports;
        r->reports = p->next;
        json_decref(p->msg);
        free(p);
    }
    if (r->timerfd >= 0)
        close(r->timerfd);
    pthread_cond_destroy(&r->cv);
    pthread_cond_destroy(&r->done_cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
