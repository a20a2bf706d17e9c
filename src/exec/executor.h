/*
 * executor.h — private to exec/: the executor's state, shared by exec.c (the public calls),
 * supervisor.c (the supervisor thread) and provision.c (the provisioning workers).
 *
 * Locking: ex->mu guards the list of live sessions, each live's fields that other threads read
 * or set (agent_pgid, status, kill_at, cancelled, prompts) and the command queue. The
 * supervisor thread alone touches connections, epoll and pidfds.
 */
#ifndef AH_EXEC_EXECUTOR_H
#define AH_EXEC_EXECUTOR_H

#include <pthread.h>

#include "../sandbox/sandbox.h"
#include "internal.h"

#define PROVISION_WORKERS 2
#define REFS_WORKERS 2
#define BG_WORKERS 2 /* background.c: seek views */

struct rconn;

/* The sandbox of one launch (sandboxed.c). */
struct launch_sandbox {
    char **argv;              /* the agent command, wrapped (sandbox_wrap) */
    struct sandbox_cgroup cg; /* the session's cgroups (n == 0: none) */
    int64_t wall_ms;          /* 0: no wall-time limit */
    char *note;               /* what was applied, for the session's log */
    bool hold_term;           /* argv starts a sandbox: the recorder holds SIGTERM for it */
    /* the devcontainer runtime: the container's name ("" for the local runtime), and the
     * podman and OCI runtime the recorder removes it with (lent from the sandbox set) */
    char container[64];
    const char *podman, *podman_runtime;
};
/* Builds the sandbox for session sid from the task's `runtime` object: checks the profile is
 * still available, creates the session's $HOME and cgroups, wraps agent_argv. ro_files are the
 * files the agent reads from the server's data directory. 0, or an error with reterr saying
 * why in words for the session's `error`. */
int exec_sandbox_launch(struct executor *ex, const char *sid, const char *workspace,
                        const json_t *runtime, const char *const *agent_argv,
                        const char *const *ro_files, struct launch_sandbox *ret,
                        struct ah_problem *reterr);
void launch_sandbox_clear(struct launch_sandbox *ls);
/* Whether process group pgid holds `ah agent start` yet (a sandbox starts it a few ms after
 * its group exists, and ignores SIGTERM meanwhile). Scans /proc. */
bool exec_agent_started(struct executor *ex, pid_t pgid);

/* What an epoll registration points at. */
enum handle_kind { H_LISTEN, H_EVENT, H_TIMER, H_CONN, H_PIDFD };
struct handle {
    enum handle_kind kind;
    void *ptr;
};

/* A session this server is responsible for: admitted and not yet reaped. */
struct live {
    struct live *next;
    char tenant[AH_LIMIT_NAME + 1];
    char id[ULID_LEN + 1];
    enum session_status status; /* last state this server set or saw */
    bool provisioning;          /* in the worker pool, no process yet */
    bool cancelled;             /* DELETE arrived; kill and clean up */
    pid_t recorder_pid;
    int pidfd;                  /* -1 until launched or re-attached */
    struct handle pid_handle;
    bool our_child;             /* we can reap it with waitid */
    pid_t agent_pgid;           /* from the recorder's hello; 0 until then */
    struct rconn *conn;
    int64_t kill_at;            /* monotonic ms when SIGKILL is due; 0 = none */
    int64_t term_at;            /* a stop came while the sandbox was still starting the agent:
                                   SIGTERM again once it has (monotonic ms of the next look) */
    int64_t adopt_by;           /* recovery: a recorder whose pid we never learned must say
                                   hello by then (monotonic ms), else the session fails; 0 = none */
    bool exit_seen;             /* the recorder reported the agent's exit */
    bool pause_pending;         /* paused before the agent's group was known: stop it on hello */
    json_t *prompts;            /* input frames (prompt, model) waiting for a connection */
    char token_hash[65];
    char *workspace;            /* path, once provisioned */
    int abort_fd;               /* the provisioning worker's abort eventfd while it works on
                                   this session, else -1 (exec_abandon writes it) */
    bool dead;                  /* reaped; freed at the end of the loop iteration */
    /* issue 16 item 5: runs on an executor (its SPIFFE id, owned); no pid here: its end comes
     * from the recorder's exit over the link, or the executor's report (exec_remote_ended) */
    char *executor;
    int64_t gone_at;            /* the executor saw its processes end without an exit message:
                                   failed at this time (monotonic ms) unless the exit arrives */
    char *gone_why;
    int64_t lost_at;            /* D44: its executor's link is down; failed (or queued again,
                                   when it never started) at this time (monotonic ms); 0: up */
    char trace[56];             /* D48: the traceparent its processes were started with (the
                                   creating request's span), "" when none (a session adopted
                                   after a restart): the parent of its later spans (snapshots,
                                   signals). Set under mu, once, when it is started. */
};

enum cmd_kind {
    CMD_KICK,
    CMD_PROVISIONED,
    CMD_ACK,
    CMD_SEND,
    CMD_DROP_CONN,
    CMD_WAKE,
    CMD_ABANDONED, /* stopped or deleted before its recorder started: free its slot now */
    CMD_EXIT,      /* the recorder's exit message (msg), once the final snapshot is taken */
    CMD_ATTACH,    /* a recorder link from an executor: fd in `result`, executor id in `text` */
    CMD_REMOTE_END, /* exec_remote_ended: executor id in `provider`, why in `text`, result 1 when
                       the launch failed, 2 when it never reached the executor (queue again) */
    CMD_ADOPT_REMOTE, /* a lost replica's session running on an executor is ours now (D46) */
    CMD_EXECUTOR,   /* exec_executor_link: executor id in `provider`, result 1 up, 0 down */
};

struct cmd {
    struct cmd *next;
    enum cmd_kind kind;
    char tenant[AH_LIMIT_NAME + 1];
    char id[ULID_LEN + 1];
    int64_t rseq;        /* ACK: up to this rseq */
    int64_t acks;        /* ACK: how many stored events it acknowledges (exec_post_ack) */
    int result;          /* PROVISIONED: 0 or the error code */
    char *text;          /* PROVISIONED: error detail; SEND: unused */
    char *provider, *path; /* PROVISIONED */
    json_t *msg;         /* SEND */
};

struct provision_job {
    struct provision_job *next;
    char tenant[AH_LIMIT_NAME + 1];
    char id[ULID_LEN + 1];
    json_t *request;
    char *agent_type;
    int agent_index;
};

struct executor {
    struct exec_config cfg; /* strings owned (copied in exec_new) */
    char **owned;           /* every string copied into cfg, freed by exec_free */
    size_t n_owned;
    struct store *store;
    struct bus *bus;
    char sock_path[108];
    int listen_fd, epfd, evfd, timerfd;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    struct live *lives;
    size_t n_live;
    size_t n_remote; /* of n_live, those running on executors (issue 16 item 5) */
    struct cmd *cmd_head, *cmd_tail;
    bool stopping;
    /* provisioning pool */
    pthread_t workers[PROVISION_WORKERS];
    pthread_cond_t jobs_cv;
    bool jobs_cv_ready;
    struct provision_job *jobs_head, *jobs_tail;
    char *agent_names;
    /* remote branches (refs.c), under mu */
    struct refs_entry *refs;
    size_t n_refs;
    pthread_cond_t refs_cv;
    pthread_t refs_threads[REFS_WORKERS];
    int refs_abort; /* eventfd: written once at stop, every running ls-remote gives up */
    bool refs_ready;
    /* disk-heavy jobs off the HTTP threads (background.c), under mu */
    struct bg_job *bg_head, *bg_tail;
    size_t bg_n;
    pthread_cond_t bg_cv;
    pthread_t bg_threads[BG_WORKERS];
    bool bg_ready;
    struct snapshots *snaps; /* the automatic snapshots' worker (snapshots.c) */
    struct deliveries *delivs; /* the delivery worker (delivery.c) */
    struct webhooks *hooks;    /* the webhook worker (webhooks.c) */
    /* cgroups of ended sessions whose last processes were still exiting: retried on the
     * timer until removed (supervisor thread only) */
    struct {
        char id[ULID_LEN + 1];
        int64_t until; /* monotonic ms; gives up after */
    } cg_pending[32];
    size_t n_cg_pending;
    struct replicas *replicas; /* lease, adoption and forwarded commands (replicas.c) */
    struct sandbox_set *sandbox; /* profiles and what this host provides (D51, D52); immutable */
};

/* replicas.c (D46): replicas_init names this replica and renews its lease once, before the
 * restart check; replicas_start starts its thread when the database is shared. */
int replicas_init(struct executor *ex, struct ah_problem *reterr);
int replicas_start(struct executor *ex);
void replicas_stop(struct executor *ex); /* NULL-safe for an executor never started */
/* Runs a command another replica forwarded for a session this one owns (exec.c): a failure
 * becomes a warn `log` event of the session, since the client already had its 202. */
void exec_run_forwarded(struct executor *ex, const char *tenant, const char *id,
                        const json_t *cmd);

/* Queues a command for the supervisor thread and wakes it (takes ownership of c). */
void exec_post(struct executor *ex, struct cmd *c);
void exec_post_locked(struct executor *ex, struct cmd *c); /* the same, under ex->mu */
/* Queues the acknowledgement of one stored event (rseq) of a session's recorder: merged into
 * the newest queued command when that is the same session's ack (one command, one lock and no
 * wake-up per event of a batch). A failed allocation sends no ack: the recorder resends after
 * its next reconnect and the store skips what it has (D17). */
void exec_post_ack(struct executor *ex, const char *tenant, const char *id, int64_t rseq);
/* A stop or DELETE before the agent runs: under ex->mu, marks the live session (if any)
 * cancelled, interrupts its provisioning and kills a recorder already started. */
void exec_abandon_locked(struct executor *ex, struct live *l);
struct cmd *cmd_new(enum cmd_kind kind, const char *tenant, const char *id);
void cmd_free(struct cmd *c);
struct live *live_find(struct executor *ex, const char *tenant, const char *id); /* under mu */
/* exec_config.slots_taken's answer (0 without it); any thread, not under mu. */
int64_t exec_slots_taken(struct executor *ex);
/* A remote session's processes get `action` ("pause", "resume", "stop", "kill") through its
 * executor (issue 16 item 5): the signals the local path sends itself. Never blocks; any lock. */
void live_remote_signal(struct executor *ex, const struct live *l, const char *action);
/* D48: copies the session's trace (live.trace) into out: false when it has none or is not live
 * here. Takes mu. */
bool live_trace(struct executor *ex, const char *tenant, const char *id, char out[56]);

/* supervisor.c */
int supervisor_start(struct executor *ex, struct ah_problem *reterr);
void supervisor_stop(struct executor *ex);
/* Moves a session through the state machine via the bus, waiting for the result. */
int exec_transition(struct executor *ex, const char *tenant, const char *id,
                    enum session_status to, const char *error, const int *exit_code,
                    enum session_status *ret_before);

/* refs.c */
int refs_start(struct executor *ex);
void refs_stop(struct executor *ex);

/* background.c */
int background_start(struct executor *ex);
void background_stop(struct executor *ex);

/* snapshots.c (D30, D31) */
/* Takes the base snapshot of workdir into <data>/sessions/<id>/snapshots and records its id
 * (kept when one exists already). Runs on a provisioning worker. */
int snapshot_take_base(const char *data_dir, const char *id, const char *workdir,
                       struct ah_problem *reterr);
/* Makes snap (already in the session's store) its base snapshot, as snapshot_take_base would:
 * an overlay branch's base is recorded without walking the workspace. 0 or AH_E_*. */
int snapshot_set_base(const char *data_dir, const char *id, const char *snap);
int snapshots_start(struct executor *ex);
void snapshots_stop(struct executor *ex);
/* Asks for an automatic snapshot of the session (coalesced; never waits). */
/* path: what the watcher saw change (only it is looked at), NULL for anything else. */
void snapshots_request(struct executor *ex, const char *tenant, const char *id,
                       const char *workdir, const char *label, const char *path);
/* Takes the final snapshot, then posts CMD_EXIT with exit_msg (its `changes` replaced by the
 * totals since the base). false when snapshots are not running: answer the exit now. */
/* The timeline (D33): a tool boundary's snapshot, held until its tool_result (the recorder's
 * number rseq) is stored (snapshots_boundary_stored, from the bus's completion, gives the
 * event's rseq and seq; 0 when unknown). */
void snapshots_boundary(struct executor *ex, const char *tenant, const char *id,
                        const char *workdir, const char *tool, int64_t rseq);
void snapshots_boundary_stored(struct executor *ex, const char *tenant, const char *id,
                               int64_t rseq, int64_t seq);
/* branch.c: the workspace of a session branch (the request's `branch` member names the parent
 * and the snapshot), its transcript file and, for agents other than scripted, the transcript
 * in its prompt file. Same contract as workspace_provision. */
int branch_provision(struct executor *ex, const char *tenant, const char *id,
                     const char *agent_type, const json_t *request, char **ret_provider,
                     char **ret_path, struct ah_problem *reterr);
/* Before a session's workspace is deleted: unmounts an overlay branch's workspace and removes
 * its upper layer (and the shared lower layer with its last user). */
void branch_release(struct executor *ex, const char *id);
/* At start: mounts again the overlay branches whose mount is gone (a reboot). */
void branch_remount_all(struct executor *ex);
/* Records the base snapshot (taken by snapshot_take_base) in the store's timeline. */
int snapshots_record_base(struct executor *ex, const char *tenant, const char *id,
                          const char *provider);
bool snapshots_final(struct executor *ex, const char *tenant, const char *id, const char *workdir,
                     json_t *exit_msg);
struct sockaddr;
/* webhooks.c (issue 15 item 8): the worker that POSTs sessions' events to their webhooks */
int webhooks_start(struct executor *ex);
void webhooks_stop(struct executor *ex); /* NULL-safe for an executor never started */
/* Whether a webhook may connect to sa under c (SSRF: loopback and private only when configured;
 * link-local, multicast and unspecified never). */
bool webhook_addr_allowed(const struct exec_config *c, const struct sockaddr *sa);

/* delivery.c (issue 11: the task's `delivery`) */
int delivery_start(struct executor *ex);
void delivery_stop(struct executor *ex);
/* Posts the CMD_EXIT c (takes it) once the session's delivery, if it wants one and the exit
 * can complete it, is done and recorded as a `delivery` event, on the delivery worker. */
void delivery_then_exit(struct executor *ex, struct cmd *c, const char *workdir);
/* provision.c */
int provision_start(struct executor *ex);
void provision_stop(struct executor *ex);
int provision_enqueue(struct executor *ex, struct session_row *row);

#endif
