/*
 * exec.h — running sessions: the scheduler, workspace provisioning, the supervisor of agent
 * processes and its end of the recorder link (D16, D17). The process side (`ah agent record`,
 * `ah agent start`) is the agent/ layer below (agent/agent.h).
 *
 * Threads: one supervisor thread owns every running session (epoll over the recorder socket,
 * recorder connections, pidfds and a timerfd — no thread per session, no sleep-polling) plus a
 * small fixed pool that provisions workspaces (a git clone must not stall the supervisor).
 * Calls below are thread-safe; those that change a session go through the bus writer, so each
 * transition is durable and a `status` event (D13).
 */
#ifndef AH_EXEC_H
#define AH_EXEC_H

#include <sys/types.h>

#include "../bus/bus.h"
#include "../workspace/workspace.h"

/* A custom agent from configuration (D19). */
struct agent_config {
    char *type;    /* name used in agents[].type */
    char *command; /* executable (looked up in PATH) */
    char *format;  /* "text" or "jsonl" */
};

struct exec_config {
    const char *data_dir;       /* workspaces/, sessions/ (recordings, prompts) live here */
    const char *runtime_dir;    /* the recorder socket lives here (mode 0700) */
    const char *self_exe;       /* this ah binary, launched as recorder and agent (D16) */
    const char *config_path;    /* forwarded as --config to the recorder (may be NULL) */
    int64_t max_concurrent;     /* sessions past queued at once */
    int64_t stop_grace_ms;      /* SIGTERM → SIGKILL (D14, default 10 s) */
    int64_t clone_timeout_ms;   /* a git clone/fetch while provisioning (default 120 s) */
    int64_t refs_timeout_ms;    /* a git ls-remote for GET …/branches (default 10 s) */
    const char *const *snapshot_preference; /* default provider order, NULL-terminated */
    const char *workspace_template; /* directory copied for repo.mode=none (may be NULL) */
    const struct agent_config *agents; /* custom agents */
    size_t n_agents;
    const json_t *models; /* [models."ID"] overrides of the model table (D40); may be NULL */
    const char *const *env_allow; /* extra environment variables passed to agents */
    int64_t lease_ms; /* replicas sharing PostgreSQL: the lease, renewed every third (D46, 15 s) */
    const json_t *sandbox;        /* the configuration's sandbox keys (sandbox_set_new) */
    const char *db_path;          /* the SQLite file, hidden from sandboxed agents (or NULL) */
    /* `--max-concurrent-tasks 0`: a pure control plane, no session runs here (D43) */
    bool no_local;
    int64_t tenant_max; /* admission (D43): sessions one tenant runs at once; 0: no limit */
    /* Placement (D43): may the local runner start this queued session? NULL: yes. false leaves
     * it queued (it fits only an executor, or nothing). Called on the scheduler's thread. */
    bool (*place_local)(void *arg, struct session_row *row);
    void *place_arg;
    /* Placement with executors (D43, issue 16 item 5): where this queued session starts now —
     * EXEC_PLACE_LOCAL, EXEC_PLACE_REMOTE (executor's SPIFFE id written to executor[0..n)), or
     * EXEC_PLACE_WAIT. When set it replaces place_local, and `--max-concurrent-tasks 0` still
     * launches on executors. Called on the scheduler's thread with place_arg. */
    int (*place)(void *arg, struct session_row *row, char *executor, size_t n);
    /* Whether any executor is known at all (place_arg); false: a full local runner ends the
     * scheduling pass at once, as without executors. NULL: assume some. */
    bool (*remote_possible)(void *arg);
    /* Remote sessions: how the supervisor reaches executors (enroll/remote_ap.c). Neither call
     * may block: they post to the link's loop. launch takes msg (a LaunchSession frame);
     * signal sends one of "pause", "resume", "stop" (SIGTERM, repeated while a sandbox starts
     * the agent), "kill" (the agent's group, at the end of the stop grace) or "abandon" (every
     * process of the session: cancel, delete) to the session's processes. traceparent (D48,
     * NULL when none) names the span the signal is sent for: the request's (pause, stop…) or,
     * from the supervisor (the stop's grace over), the session's. */
    int (*remote_launch)(void *arg, const char *executor, json_t *msg);
    void (*remote_signal)(void *arg, const char *executor, const char *id, const char *action,
                          const char *traceparent);
    void *remote_arg;
    /* D44: a remote session whose executor stays unreachable this long is failed (one it never
     * started is queued again, to be placed elsewhere). 0: 5 minutes. */
    int64_t executor_lost_ms;
    /* webhooks (webhooks.c): targets allowed beyond public https, and the delivery timings */
    bool webhook_allow_loopback;   /* http:// and https:// to loopback addresses (tests) */
    bool webhook_allow_private;    /* private-network addresses (10/8, 192.168/16, fc00::/7, …) */
    int64_t webhook_timeout_ms;    /* one attempt, connection included (default 10 s) */
    int64_t webhook_retry_base_ms; /* the first retry's delay, doubled each time (default 1 s) */
    int64_t webhook_retry_for_ms;  /* an event is retried this long after its first failure
                                      (default 24 h), then counted as failed */
    /* Fairness between tenants (D43): which of the queued sessions (their tenants, oldest
     * first) is admitted next, given each tenant's running count. NULL: the oldest. */
    int (*fair_next)(const char *const *tenants, size_t n,
                     int64_t (*running)(void *arg, const char *tenant), void *arg);
    /* One machine, one budget (`ah agent enroll --rest-api yes`): the slots of max_concurrent
     * held by sessions this process runs outside this executor (those an upstream access point
     * placed on the enrolled executor). The local runner starts a session only while its own
     * sessions plus these are below max_concurrent. NULL: none. Any thread; never blocks. */
    int64_t (*slots_taken)(void *arg);
    /* Called when the local runner's count of sessions changed (no lock held; must not block),
     * so the other user of the budget sees it at once. NULL: nobody is told. */
    void (*slots_changed)(void *arg);
    void *slots_arg;
};

struct executor;
struct sandbox_set;

/* The sandbox profiles and what this host provides (sandbox.h); lent until exec_free. */
const struct sandbox_set *exec_sandbox(struct executor *ex);

/* Creates the executor (socket bound, nothing running yet). */
int exec_new(const struct exec_config *cfg, struct store *st, struct bus *bus,
             struct executor **ret, struct ah_problem *reterr);
/* Recovers sessions left by a previous server (D15) and starts the supervisor and scheduler. */
int exec_start(struct executor *ex, struct ah_problem *reterr);
/* Stops supervising: the supervisor and provisioning threads end. Agents keep running and
 * their recorders reconnect to the next server (that is how sessions survive a restart). The
 * executor stays allocated, because bus completions may still be posted to it: stop, then free
 * the bus, then exec_free. NULL-safe. */
void exec_stop(struct executor *ex);
void exec_free(struct executor *ex); /* stops first if needed; NULL-safe */

/* Whether sessions run on this machine (false: `--max-concurrent-tasks 0`). */
bool exec_runs_local(const struct executor *ex);
/* Sessions of `tenant` this server runs now, and the per-tenant limit (0: none). */
int64_t exec_tenant_running(struct executor *ex, const char *tenant);
int64_t exec_tenant_max(const struct executor *ex);
/* The local runner's capacity and how many of its slots are busy now (its sessions, plus the
 * slots_taken of a shared budget). */
void exec_local_load(struct executor *ex, int64_t *ret_capacity, int64_t *ret_running);
/* The sessions the local runner itself runs now (provisioning included). Thread-safe. */
int64_t exec_local_running(struct executor *ex);

/* New queued sessions exist: run the scheduler. */
void exec_kick(struct executor *ex);
/* D48 (trace.c): notes the traceparent of the request that created session_id; the scheduler
 * takes it (once) and gives it to the session's processes as TRACEPARENT. Thread-safe. */
void exec_trace_note(const char *session_id, const char *traceparent);
bool exec_trace_take(const char *session_id, char out[56]);
/* The same without taking it (the provisioning span's parent). */
bool exec_trace_peek(const char *session_id, char out[56]);

/* The agent types this server can run (built-in and configured), for D25's 400. */
bool exec_agent_known(struct executor *ex, const char *type);
/* "scripted, claude-code, codex, …" for error messages; lent until exec_free. */
const char *exec_agent_names(struct executor *ex);

enum { EXEC_PLACE_WAIT, EXEC_PLACE_LOCAL, EXEC_PLACE_REMOTE };

/* ---- remote sessions (issue 16 item 5): the access point's side ---------------------------- */
/* Sessions launched on `executor` (its SPIFFE id) that are not over yet. Thread-safe. */
int64_t exec_remote_running(struct executor *ex, const char *executor);
/* The executor of a session running remotely (caller frees), or NULL when it runs here (or is
 * not running). Thread-safe. */
char *exec_session_executor(struct executor *ex, const char *id);
/* A session's recorder link arrived from `executor` over its event stream: fd (one end of a
 * socketpair, taken) is handled exactly like a recorder connecting to the local socket (same
 * hello and token check, same ingest and acks), except that only a session launched on that
 * executor may say hello on it. Never blocks. */
void exec_attach_remote(struct executor *ex, int fd, const char *executor);
/* The executor reports the end of a session's processes (`why`: how they ended), or that it
 * could not launch it (launch_failed, `why`: the reason). Never blocks. */
void exec_remote_ended(struct executor *ex, const char *executor, const char *id,
                       const char *why, bool launch_failed);
/* The launch never reached the executor (no link, or lost before it accepted): the session is
 * queued again for placement (D44). Never blocks. */
void exec_remote_requeue(struct executor *ex, const char *executor, const char *id,
                         const char *why);
/* The link to an executor came up or went down (D44): its sessions are reachable again, or
 * their unreachable timeout starts. Never blocks. */
void exec_executor_link(struct executor *ex, const char *executor, bool up);

/* ---- remote sessions: the executor's side (`ah agent enroll`) ------------------------------ */
/* The executor side builds a `struct executor` with exec_new (no store, no bus: NULL) and never
 * starts it: it is the configuration, the sandbox and the recorder socket of the local path,
 * reused. These two calls are the local path's own provisioning and launching steps. */
/* Writes prompt.txt and settings.json, provisions the workspace (*ret_path, *ret_provider;
 * caller frees) and takes its base snapshot. Blocking (a clone): run it off the loop. */
int exec_provision_session(struct executor *ex, const char *id, const json_t *request,
                           int agent_index, int abort_fd, char **ret_provider, char **ret_path,
                           struct ah_problem *reterr);
/* Spawns `ah agent record … -- ah agent start …` for the session (D16) in its own process
 * group, connecting to this executor's recorder socket with `token`. */
int exec_spawn_session(struct executor *ex, const char *id, const char *agent_type,
                       const json_t *request, const char *workspace, const char *token,
                       pid_t *ret_pid, struct ah_problem *reterr);
/* The recorder socket (listening, non-blocking) of an executor never started. */
int exec_listen_fd(struct executor *ex);
/* Whether process group pgid holds `ah agent start` yet: a sandbox ignores SIGTERM until it
 * has started the agent, so a stop is repeated until then (the local path's rule). */
bool exec_group_agent_started(struct executor *ex, pid_t pgid);

enum exec_action { EXEC_PAUSE, EXEC_RESUME, EXEC_STOP, EXEC_CANCEL };
/* Applies a control action (D13, D14): checks the transition, signals the process group and
 * records the new state. *ret_status is the state to answer with. AH_E_CONFLICT (the current
 * state in reterr's extra `currentStatus`), AH_E_NOTFOUND, or 0. */
int exec_control(struct executor *ex, const char *tenant, const char *id, enum exec_action a,
                 enum session_status *ret_status, struct ah_problem *reterr);
/* Sends prompt text to the session's agent through its recorder, and records a `log` event
 * "user: <text>". AH_E_CONFLICT when the agent is not running (paused/queued…), AH_E_GONE when
 * the session has ended, AH_E_NOTFOUND. */
int exec_prompt(struct executor *ex, const char *tenant, const char *id, const char *text,
                struct ah_problem *reterr);
/* The chat's path (api/chat.c): records `event` (borrowed; a `chat_message`) as the session's
 * next event and, when text is not NULL, sends text to the agent as exec_prompt does (same
 * AH_E_CONFLICT/AH_E_GONE rules). Without text only an ended session is refused. `model` (may
 * be NULL) goes with the text, or alone without it: the model of the agent's next turns, for
 * an agent that runs a turn per message (issue 15). *ret_seq is the stored event's seq. */
int exec_chat(struct executor *ex, const char *tenant, const char *id, json_t *event,
              const char *text, const char *model, int64_t *ret_seq, struct ah_problem *reterr);
/* Webhooks (webhooks.c, issue 15 item 8). Whether url may be a webhook's target under this
 * server's configuration: 0, or AH_E_INVAL with why ("must be an https:// URL"). */
int exec_webhook_url_check(struct executor *ex, const char *url, char *why, size_t n);
/* Starts delivering the events of a new session whose task has webhooks (durably noted before it
 * returns, so a restart resumes it). 0 or an AH_E_*. Thread-safe. */
int exec_webhooks_add(struct executor *ex, const char *tenant, const char *id);
/* The saved delivery state of the session's webhooks ({hooks:[{cursor, delivered, failed,
 * attempts, firstFailureAt, nextAttemptAt, lastAttemptAt, lastSuccessAt (ms or null),
 * lastStatus, lastError, done, pendingSeq}], done}), or NULL when nothing was saved yet. */
json_t *exec_webhooks_state(struct executor *ex, const char *id);
/* The configured model overrides (D40), NULL when none; lent until exec_free. */
const json_t *exec_models(struct executor *ex);
/* The server's data directory (lent until exec_free). */
const char *exec_data_dir(struct executor *ex);
/* Where the session's asciicast recording is (may not exist yet); caller frees. */
char *exec_recording_path(struct executor *ex, const char *id);
/* What the repository at url has: its branches [{name, is_default, last_commit}] and tracked
 * files [{path, detail}] (at most max), from the git cache (see workspace.c). Never waits on
 * the network: without a mirror the branches come from the last background ls-remote (refs.c);
 * AH_E_BUSY while the first one runs (answer 503 and ask to retry), AH_E_TIMEOUT or
 * AH_E_NETWORK when the remote could not be read a moment ago. */
int exec_repo_branches(struct executor *ex, const char *url, json_t **ret);
int exec_repo_files(struct executor *ex, const char *url, size_t max, json_t **ret);
/* The default branch as our mirror knows it (caller frees); AH_E_NOTFOUND when not fetched. */
int exec_repo_default_branch(struct executor *ex, const char *url, char **ret);
/* Runs fn(arg, false) on one of a few background threads: disk-heavy work an HTTP handler must
 * not wait for (a seek's checkout). AH_E_UNAVAIL when the executor is not running or too many
 * jobs wait (answer 503 + Retry-After). Once queued, fn runs exactly once: with cancelled =
 * true when the executor stopped before it could run (it then only frees arg). */
int exec_background(struct executor *ex, void (*fn)(void *arg, bool cancelled), void *arg);
/* The session's private object store (D30): <data>/sessions/<id>/snapshots; caller frees. */
char *exec_snapshot_dir(struct executor *ex, const char *id);
/* The base snapshot taken when provisioning ended; AH_E_NOTFOUND when there is none. */
int exec_snapshot_base(struct executor *ex, const char *id, char out[WS_SNAP_ID_LEN + 1]);
/* A manual snapshot (POST fs-snapshots): takes workdir now (NULL: the session has ended, its
 * newest snapshot is recorded) and records it on the timeline; *ret_row (nullable) gets the
 * row as stored. Runs on the caller's thread: snapshots are incremental (a stat walk). */
int snapshots_take_manual(struct executor *ex, const char *tenant, const char *id,
                          const char *workdir, const char *label, const char *description,
                          char ret_id[WS_SNAP_ID_LEN + 1], struct fs_snapshot_row **ret_row);
/* The live workspace of a running session as a snapshot in st (the session's store, opened by
 * the caller), for GET …?to=current. Cheap: the newest snapshot when no change the workspace
 * watcher reported is waiting for the snapshot worker, else a snapshot of those paths only (a few
 * ms on any workspace); the whole-tree walk (stat cache) only when a pending change names no path
 * or the newest snapshot predates this server. Runs on the caller's thread. A change is seen once
 * the watcher has reported it (milliseconds after it happened). */
int exec_snapshot_current(struct executor *ex, const char *tenant, const char *id,
                          const char *workdir, struct ws_store *st,
                          char ret_id[WS_SNAP_ID_LEN + 1]);
/* Where a patch delivery keeps its artifact (<data>/sessions/<id>/delivery.patch); caller frees. */
char *exec_delivery_path(struct executor *ex, const char *id);
/* Deletes a session's workspace and files (DELETE, D14). */
void exec_remove_files(struct executor *ex, const char *id);

#endif
