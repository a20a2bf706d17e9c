/*
 * ah/task_manager.h — the task-manager interface: what a front end (CLI, TUI, ACP bridge) needs
 * to launch tasks and follow sessions, independent of where they run. The C twin of the Rust
 * `TaskManager` trait: launch_task, task_events_stream, get_initial_tasks (sessions + drafts),
 * save_draft_task, list_repositories, list_branches — plus session control.
 *
 * An ah_task_manager is a struct of function pointers (struct ah_task_manager_ops) and an opaque
 * implementation pointer. Implementations:
 *   - remote: over libah-client (ah_task_manager_new_remote), every op is one REST call;
 *   - mock:   in memory (ah_task_manager_new_mock): deterministic ids, scripted sessions driven
 *             by an ah_clock (virtual in tests), configurable delays, failure injection;
 *   - local:  the server core of the same process without HTTP (api_local_new in the server's
 *             src/api/local.c, which is not part of this library): the same handlers as the
 *             REST API and the bus for events, built on ah_task_manager_new; the contract
 *             suite runs on it too (tests/client/test-tm-local.c).
 * Anyone can add another with ah_task_manager_new.
 *
 * Contract every implementation keeps (tests/client/contract.c checks it on each of them):
 *   - the conventions of <ah/client.h>: 0 / negative AH_E_*, `ret` written only on success,
 *     `reterr` only on failure, results owned by the caller, no callback after a failed call;
 *   - launch_task fans a spec out into one session per agent × count, all `queued` at first;
 *     an invalid spec is AH_E_INVAL with field errors named like the server names them;
 *   - unknown session/draft/repository ids are AH_E_NOTFOUND;
 *   - control follows the state machine of D13; an illegal transition is AH_E_CONFLICT, a prompt
 *     to a finished session AH_E_GONE;
 *   - stream_events delivers every event of the session in seq order, each once, from after
 *     opt->after_seq, and returns 0 right after the terminal `status` event;
 *   - every op is thread-safe.
 */
#ifndef AH_TASK_MANAGER_H
#define AH_TASK_MANAGER_H

#include <ah/client.h>
#include <ah/clock.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ah_task_manager ah_task_manager;

/* Session control verbs (CLI-and-enrollment.md §7.3). */
enum ah_control {
    AH_CONTROL_PAUSE = 0, /* POST …/pause  */
    AH_CONTROL_RESUME,    /* POST …/resume */
    AH_CONTROL_STOP,      /* POST …/stop   */
    AH_CONTROL_CANCEL,    /* DELETE …      */
    AH_CONTROL_PROMPT     /* POST …/prompt */
};

/* The operations, in the order of struct ah_task_manager_ops (used by failure injection). */
enum ah_tm_op {
    AH_TM_LAUNCH = 0,
    AH_TM_STREAM,
    AH_TM_LIST_SESSIONS,
    AH_TM_GET_SESSION,
    AH_TM_LIST_DRAFTS,
    AH_TM_SAVE_DRAFT,
    AH_TM_DELETE_DRAFT,
    AH_TM_LIST_REPOS,
    AH_TM_LIST_BRANCHES,
    AH_TM_CONTROL,
    AH_TM_OP_COUNT_
};

/* What an implementation provides. Every function member is required; `impl` is the pointer
 * given to ah_task_manager_new. Arguments have been checked by the ah_task_manager_* wrappers
 * (non-NULL ids, ret pointers, …) before an op runs. */
struct ah_task_manager_ops {
    size_t size;      /* sizeof(struct ah_task_manager_ops) of the implementer's build */
    const char *name; /* "remote", "mock", "local", … */
    int (*launch_task)(void *impl, const struct ah_task_spec *spec, struct ah_task_created **ret,
                       struct ah_api_error *reterr);
    int (*stream_events)(void *impl, const char *session_id, const struct ah_stream_options *opt,
                         ah_event_fn cb, void *userdata, int64_t *ret_last_seq,
                         struct ah_api_error *reterr);
    int (*list_sessions)(void *impl, const struct ah_session_filter *filter,
                         struct ah_session_list **ret, struct ah_api_error *reterr);
    int (*get_session)(void *impl, const char *session_id, struct ah_session **ret,
                       struct ah_api_error *reterr);
    int (*list_drafts)(void *impl, struct ah_draft_list **ret, struct ah_api_error *reterr);
    /* draft_id NULL creates a draft, otherwise replaces that draft's content. */
    int (*save_draft)(void *impl, const char *draft_id, const struct ah_task_spec *spec,
                      struct ah_draft **ret, struct ah_api_error *reterr);
    int (*delete_draft)(void *impl, const char *draft_id, struct ah_api_error *reterr);
    int (*list_repositories)(void *impl, struct ah_repo_list **ret, struct ah_api_error *reterr);
    int (*list_branches)(void *impl, const char *repo_id, struct ah_branch_list **ret,
                         struct ah_api_error *reterr);
    /* prompt is the text for AH_CONTROL_PROMPT, NULL otherwise. ret_status (nullable) gets the
     * status after the verb (for PROMPT: the session's status when the prompt was taken). */
    int (*control)(void *impl, const char *session_id, enum ah_control op, const char *prompt,
                   enum ah_session_status *ret_status, struct ah_api_error *reterr);
    /* Frees impl. Called once, by ah_task_manager_free. */
    void (*destroy)(void *impl);
};

/* Wraps an implementation. ops must outlive the manager (usually static); impl is taken. */
int ah_task_manager_new(const struct ah_task_manager_ops *ops, void *impl, ah_task_manager **ret);
/* Frees the manager (destroying its impl). No call may be in progress. NULL-safe. */
void ah_task_manager_free(ah_task_manager *tm);
/* ops->name, lent for the manager's lifetime. */
const char *ah_task_manager_name(const ah_task_manager *tm);

/* ---- the operations (each checks its arguments, then calls the op) ----------------------------
 */

/* Launches a task: one session per agent × count. ret gets the ids (caller frees). */
int ah_task_manager_launch(ah_task_manager *tm, const struct ah_task_spec *spec,
                           struct ah_task_created **ret, struct ah_api_error *reterr);
/* Follows a session's events until its terminal status event; see ah_client_stream_events for
 * the exact contract (opt may be NULL). Blocks the calling thread; cb runs on it. */
int ah_task_manager_stream_events(ah_task_manager *tm, const char *session_id,
                                  const struct ah_stream_options *opt, ah_event_fn cb,
                                  void *userdata, int64_t *ret_last_seq,
                                  struct ah_api_error *reterr);
/* list_sessions: one page, newest first; filter may be NULL. */
int ah_task_manager_list_sessions(ah_task_manager *tm, const struct ah_session_filter *filter,
                                  struct ah_session_list **ret, struct ah_api_error *reterr);
/* get_session: one session with its recent events; AH_E_NOTFOUND for an unknown id. */
int ah_task_manager_get_session(ah_task_manager *tm, const char *session_id,
                                struct ah_session **ret, struct ah_api_error *reterr);
/* list_drafts: the saved drafts, newest first. */
int ah_task_manager_list_drafts(ah_task_manager *tm, struct ah_draft_list **ret,
                                struct ah_api_error *reterr);
/* get_initial_tasks of the trait: the first page of sessions (newest first) and the drafts.
 * Both outs are written only when both calls succeed. */
int ah_task_manager_initial_tasks(ah_task_manager *tm, struct ah_session_list **ret_sessions,
                                  struct ah_draft_list **ret_drafts, struct ah_api_error *reterr);
/* draft_id NULL: create. ret may be NULL. */
int ah_task_manager_save_draft(ah_task_manager *tm, const char *draft_id,
                               const struct ah_task_spec *spec, struct ah_draft **ret,
                               struct ah_api_error *reterr);
/* delete_draft: AH_E_NOTFOUND for an unknown id. */
int ah_task_manager_delete_draft(ah_task_manager *tm, const char *draft_id,
                                 struct ah_api_error *reterr);
/* list_repositories: repositories tasks can use. */
int ah_task_manager_list_repositories(ah_task_manager *tm, struct ah_repo_list **ret,
                                      struct ah_api_error *reterr);
/* list_branches: a repository's branches (exactly one is_default when there are any);
 * AH_E_NOTFOUND for an unknown repository. */
int ah_task_manager_list_branches(ah_task_manager *tm, const char *repo_id,
                                  struct ah_branch_list **ret, struct ah_api_error *reterr);
/* control: one verb of enum ah_control (D13/D14). prompt is required for AH_CONTROL_PROMPT and
 * must be NULL otherwise (AH_E_INVAL). ret_status (nullable) is the status the verb led to
 * (transient or settled, as the server reports it; CANCELLED for cancel; RUNNING for a prompt).
 * Illegal transitions are AH_E_CONFLICT with reterr->current_status; a prompt to a finished
 * session is AH_E_GONE. */
int ah_task_manager_control(ah_task_manager *tm, const char *session_id, enum ah_control op,
                            const char *prompt, enum ah_session_status *ret_status,
                            struct ah_api_error *reterr);

/* ---- remote: over libah-client --------------------------------------------------------------- */

/* client is borrowed and must outlive the manager. */
int ah_task_manager_new_remote(ah_client *client, ah_task_manager **ret);

/* ---- mock: in memory, on a clock ------------------------------------------------------------- */

/*
 * Mock sessions follow D13 on the mock's clock: queued → (queue_ms) provisioning →
 * (provision_ms) running → the agent's program → completed | failed. pause/resume/stop pass
 * through pausing/resuming/stopping for transition_ms. While paused the program's clock stops
 * (its remaining sleep resumes on resume). The program is the D20 scenario of an agent whose
 * settings hold {"scenario": [...]} (thought, log, tool, edit, append, delete, sleep, wait_prompt,
 * exit, fail), otherwise `default_steps` steps (a thought, a tool call, a file edit, a log line,
 * in turn) `step_ms` apart. Steps follow one another step_ms apart too. Event timestamps are the
 * clock's times, so a virtual clock makes every run identical.
 * Ids are deterministic: 26-character ULIDs made of the clock time and a counter.
 */
struct ah_mock_options {
    ah_clock *clock;         /* borrowed, must outlive the mock; NULL: a real clock of its own */
    int64_t queue_ms;        /* default 100 */
    int64_t provision_ms;    /* default 200 */
    int64_t step_ms;         /* default 1000 */
    int64_t transition_ms;   /* default 50 */
    int64_t call_latency_ms; /* every op first sleeps this long on the clock; default 0 */
    int default_steps;       /* default 8 */
    const char *tenant_id;   /* default "default" */
};
/* Fills o with the defaults listed above (clock NULL). */
void ah_mock_options_default(struct ah_mock_options *o);

/* o may be NULL (defaults). Starts with one repository, "repo-demo" (branches main, develop). */
int ah_task_manager_new_mock(const struct ah_mock_options *o, ah_task_manager **ret);

/* Failure injection: the next `count` calls of `op` (count < 0: all of them, 0: stop
 * injecting) fail with `code` (a negative AH_E_*) and an error shaped like the server's Problem
 * for it. Injected failures happen before anything else, so no callback runs. */
int ah_mock_inject_failure(ah_task_manager *tm, enum ah_tm_op op, int code, int count);
/* How many times `op` has been called (failed calls included). */
int64_t ah_mock_call_count(ah_task_manager *tm, enum ah_tm_op op);
/* Adds a repository with its branches (the first is the default; n ≥ 1). */
int ah_mock_add_repository(ah_task_manager *tm, const char *id, const char *display_name,
                           const char *remote_url, const char *const *branches, size_t n);
/* True when tm was made by ah_task_manager_new_mock. */
bool ah_task_manager_is_mock(const ah_task_manager *tm);

#ifdef __cplusplus
}
#endif
#endif
