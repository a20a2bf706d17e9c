/*
 * store.h — the persistence interface. One struct of function pointers (struct store_ops) with
 * one backend per database: sqlite.c, the embedded default, and postgres.c (libpq) for
 * deployments that outgrow one machine. Handlers never see SQL.
 *
 * Tenancy: every call that touches a row takes the tenant, and the backend puts it in the WHERE
 * clause of every query, so a handler cannot forget it; another tenant's row is "not found".
 *
 * Threading: a struct store is shared by all threads. The backend gives each call its own
 * connection from a pool, so no connection is used by two threads at once.
 *
 * Ownership: rows returned through ret_… belong to the caller (free with the matching *_free).
 */
#ifndef AH_STORE_H
#define AH_STORE_H

#include <stdio.h>

#include "../core/core.h"

struct store;

/* Opens the store named by `url`: a file path, ":memory:", "sqlite:<path>", or a PostgreSQL
 * connection URI (postgres://… or postgresql://…, libpq's syntax, TLS options included).
 * Creates the SQLite file and its directory when missing, applies pending migrations in one
 * transaction (on PostgreSQL under an advisory lock, so replicas starting together apply them
 * once) and records the schema version. On failure *ret is untouched and reterr says why. */
int store_open(const char *url, struct store **ret, struct ah_problem *reterr);
void store_close(struct store *st); /* NULL-safe */
AH_DEFINE_CLEANUP(struct store, store_close)

/* ---- tasks and sessions ---------------------------------------------------------------------- */

/* One session of a new task (store_task_create). */
struct session_new {
    char id[ULID_LEN + 1];
    int agent_index, instance;
    const char *agent_type, *agent_version;
};

struct session_row {
    char id[ULID_LEN + 1];
    char task_id[ULID_LEN + 1];
    char *tenant_id;
    char *project_id; /* NULL when none */
    int agent_index, instance;
    char *agent_type, *agent_version;
    enum session_status status;
    char *error;        /* NULL when none */
    bool has_exit_code;
    int exit_code;
    char *workspace_provider, *workspace_path; /* NULL until provisioned */
    int64_t last_seq;      /* highest event seq stored */
    int64_t recorder_rseq; /* highest recorder sequence stored */
    int64_t recorder_pid, recorder_start; /* 0 when none */
    char *recorder_token;  /* hash; NULL when none */
    char *executor_id;     /* the executor it was launched on (SPIFFE id); NULL: this server */
    json_t *changes;       /* NULL when none */
    char *request_text;    /* the task's canonical create request, as stored */
    json_t *request;       /* the same, parsed: see session_row_request */
    int64_t created_at, updated_at, started_at, ended_at; /* ms; 0 when unset */
};
void session_row_free(struct session_row *r);
/* The task's create request, parsed on first use (a request can be large — a long scenario —
 * and most readers of a row never look at it). NULL on OOM. Not thread-safe per row. */
json_t *session_row_request(struct session_row *r);
AH_DEFINE_CLEANUP(struct session_row, session_row_free)
void session_rows_free(struct session_row **rows, size_t n);

/* Creates the task and its sessions (status queued) in one transaction. */
int store_task_create(struct store *st, const char *tenant, const char *task_id,
                      const char *project_id, const json_t *request,
                      const struct session_new *sessions, size_t n, int64_t now);

/* tenant NULL: the session of that id in any tenant. */
int store_session_get(struct store *st, const char *tenant, const char *id,
                      struct session_row **ret);

struct session_filter {
    bool has_status;
    enum session_status status;
    const char *agent;      /* NULL = any */
    const char *project_id; /* NULL = any */
    bool ascending;         /* default newest first */
};
/* A page of sessions and the total matching the filter. */
int store_session_list(struct store *st, const char *tenant, const struct session_filter *f,
                       const struct page *pg, struct session_row ***ret, size_t *ret_n,
                       int64_t *ret_total);
/* Every session of every tenant that is not terminal, oldest first (the scheduler's and the
 * restart's view; D15). */
int store_session_list_live(struct store *st, struct session_row ***ret, size_t *ret_n);
/* Deletes a session and its events (DELETE ?purge=true); AH_E_NOTFOUND when absent. */
int store_session_purge(struct store *st, const char *tenant, const char *id);

/* Supervision facts of a launched session: the workspace, the recorder's pid, start time and
 * token hash. Strings may be NULL to leave a column unchanged. */
struct session_runtime {
    const char *workspace_provider, *workspace_path;
    int64_t recorder_pid, recorder_start; /* -1 leaves unchanged, 0 clears */
    const char *recorder_token;
    const char *executor_id; /* NULL leaves unchanged */
};
int store_session_set_runtime(struct store *st, const char *tenant, const char *id,
                              const struct session_runtime *rt);

/* ---- events and transitions: the batching writer's one call ---------------------------------- */

enum store_op_kind {
    STORE_OP_EVENT,      /* append payload as the session's next event */
    STORE_OP_TRANSITION, /* move the state machine and append its `status` event */
};

/* One operation of a batch. Inputs are borrowed; results are written by store_apply. */
struct store_op {
    enum store_op_kind kind;
    const char *tenant, *session_id;
    int64_t rseq;     /* recorder sequence, 0 when the op does not come from a recorder */
    int64_t ts;       /* event time, ms (0 = now) */
    json_t *payload;  /* EVENT: the event (type + fields); seq, sessionId, ts are added */
    /* TRANSITION */
    enum session_status to;
    const char *error;   /* recorded on failed (NULL keeps) */
    bool has_exit_code;
    int exit_code;
    json_t *changes;     /* recorded when given */
    /* results */
    int result; /* 0 stored; AH_E_CONFLICT illegal transition; AH_E_NOTFOUND no such session;
                   AH_E_EXISTS rseq already stored (a resend); AH_E_GONE session is terminal */
    enum session_status status_before; /* TRANSITION: the state found */
    int64_t seq;                       /* the seq given to the stored event */
    char *stored;                      /* the stored event as JSON text (caller frees) */
    bool terminal;                     /* the stored event is a terminal status */
    /* D37: when set and not yet written, appended in the batch's transaction if this op is
     * stored (its `written` is set after the commit); bus_submit_wait sets it to the caller's
     * bound record (store_audit_bind). Borrowed: the submitter waits for the result. */
    struct audit_entry *audit;
    /* D48: the span this write is made for (a traceparent: the session's, for its recorder's
     * events), which the span of the batch that commits it links to; NULL: the submitting
     * thread's span, if any. Borrowed until bus_submit returns; never stored. */
    const char *traceparent;
};
/* Applies the ops in order in one transaction (one fsync). A failing op does not fail the
 * batch; only a database error does (then nothing is stored and every result is that error). */
int store_apply(struct store *st, struct store_op *ops, size_t n);

struct event_filter {
    const char *const *types; /* NULL-terminated list, or NULL = any */
    const char *level;        /* NULL = any */
    int64_t since, until;     /* ms, 0 = unbounded */
    int64_t after;            /* seq > after */
    bool ascending;
};
/* A page of events as JSON objects (the stored payloads) and the total matching. */
int store_event_list(struct store *st, const char *tenant, const char *session_id,
                     const struct event_filter *f, const struct page *pg, json_t **ret_items,
                     int64_t *ret_total);
/* Up to `limit` events with seq > after, ascending, as raw JSON texts (caller frees each with
 * free() and the array with free()). The bus reads gaps through this. */
int store_event_range(struct store *st, const char *tenant, const char *session_id,
                      int64_t after, size_t limit, char ***ret_json, int64_t **ret_seq,
                      size_t *ret_n);

/* ---- drafts (API.md §7.14) ------------------------------------------------------------------ */

struct draft_row {
    char *id;
    json_t *body; /* the task-shaped object as saved */
    int64_t created_at, updated_at;
};
void draft_row_free(struct draft_row *r);
AH_DEFINE_CLEANUP(struct draft_row, draft_row_free)
void draft_rows_free(struct draft_row **rows, size_t n);
int store_draft_create(struct store *st, const char *tenant, const char *id, const json_t *body,
                       int64_t now);
/* Replaces the given top-level members of the saved body, atomically (two concurrent updates
 * both land); *ret is the draft as saved. AH_E_NOTFOUND when absent. */
int store_draft_update(struct store *st, const char *tenant, const char *id,
                       json_t *members, int64_t now, struct draft_row **ret);
int store_draft_get(struct store *st, const char *tenant, const char *id,
                    struct draft_row **ret);
int store_draft_delete(struct store *st, const char *tenant, const char *id);
/* Newest first (by last update). */
int store_draft_list(struct store *st, const char *tenant, const struct page *pg,
                     struct draft_row ***ret, size_t *ret_n, int64_t *ret_total);

/* ---- repositories: the ones the tenant's tasks used ------------------------------------------ */

struct repo_row {
    char *url;
    int64_t last_used_at;
};
void repo_rows_free(struct repo_row *rows, size_t n);
/* The distinct repo.url of the tenant's git tasks (optionally of one project), most recently
 * used first. */
int store_repo_list(struct store *st, const char *tenant, const char *project_id,
                    struct repo_row **ret, size_t *ret_n);

/* ---- projects: the ones the tenant's tasks used (issue 15) ------------------------------------ */

/* A project exists from its first task on (a task without projectId is the "default" project's);
 * last_used_at is its newest task's creation. */
struct project_row {
    char *id;
    int64_t last_used_at;
};
void project_rows_free(struct project_row *rows, size_t n);
/* The tenant's projects, most recently used first, a page of them and the total. */
int store_project_list(struct store *st, const char *tenant, const struct page *pg,
                       struct project_row **ret, size_t *ret_n, int64_t *ret_total);

/* ---- idempotency keys (D7) ------------------------------------------------------------------- */

struct idem_row {
    char *request_hash;
    bool done;
    int status;
    char *content_type;
    char *body;
    size_t body_len;
    int64_t created_at;
};
void idem_row_free(struct idem_row *r);
AH_DEFINE_CLEANUP(struct idem_row, idem_row_free)
/* Claims `key` for a request (state pending). 0 when claimed; AH_E_EXISTS with *ret_existing
 * when the key is known (pending or done) and younger than `max_age_ms`; older rows are
 * replaced. */
int store_idem_begin(struct store *st, const char *tenant, const char *key, const char *hash,
                     int64_t now, int64_t max_age_ms, struct idem_row **ret_existing);
/* Records the answer of a claimed key. */
int store_idem_finish(struct store *st, const char *tenant, const char *key, int status,
                      const char *content_type, const char *body, size_t len);
/* Releases a claimed key without an answer (the request failed in a way worth retrying). */
int store_idem_release(struct store *st, const char *tenant, const char *key);

/* ---- notices between processes sharing one database (PostgreSQL; D46) ------------------------ */

/* Starts calling fn(arg, tenant, session_id, seq) whenever ANOTHER process sharing the database
 * commits events of a session (seq: the session's highest seq after that commit). The calls come
 * from one thread of the store's own, over one connection of its own (LISTEN), however many
 * followers the caller multiplexes on them; fn must not block, its strings are lent for the
 * call. After the listening connection was lost and re-established, fn is called once with
 * tenant and session_id NULL: notices may have been missed, re-read what you follow. One
 * watcher per store: AH_E_EXISTS when one is set. fn NULL stops it (and waits: once this returns
 * fn is never called again); store_close stops it too. AH_E_NOTIMPL on SQLite (one process owns
 * the file and its bus sees every event). */
int store_watch(struct store *st,
                void (*fn)(void *arg, const char *tenant, const char *session_id, int64_t seq),
                void *arg);

/* Versions for readers that keep rendered representations (issue 18 item 3). The session
 * version moves after every committed write that may change session `id` as it is shown
 * (events, transitions, runtime facts, purge); the list version after every write to any
 * session, new tasks included. Ids share counters by hash, so a version may also move for
 * another session (a spurious miss, never a stale hit). A writer bumps after its commit, so a
 * reader that takes the version before reading never caches newer data under an older number.
 * 0 and *ret, or AH_E_NOTIMPL when other processes write the same database (PostgreSQL
 * replicas): then nothing may be cached. Lock-free. */
int store_session_version(struct store *st, const char *id, uint64_t *ret);
int store_sessions_version(struct store *st, uint64_t *ret);

/* ---- API keys and the audit log (auth/; D22, D37) -------------------------------------------- */

/* An API key as stored: never the secret, only a salt and SHA-256(salt || secret) in hex.
 * Authentication looks a key up by its id before any tenant is known, so store_apikey_get is
 * the one call not scoped by tenant; listing and revoking are (NULL tenant: every tenant, for
 * the offline `ah admin api-key` commands). */
struct apikey_row {
    char *id;
    char *tenant_id;
    char *project_id; /* NULL: every project of the tenant */
    char *role;       /* "viewer", "operator" or "admin" */
    char *name;       /* NULL or a label */
    char *salt, *hash;
    bool impersonate; /* an admin key that may act for another tenant (X-Tenant-ID, D35) */
    int64_t created_at, expires_at, last_used_at, revoked_at; /* ms; 0 = none */
};
void apikey_row_free(struct apikey_row *r);
AH_DEFINE_CLEANUP(struct apikey_row, apikey_row_free)
void apikey_rows_free(struct apikey_row **rows, size_t n);

/* One audit record (D37). Strings are borrowed; NULL ones are stored as NULL. */
struct audit_entry {
    int64_t ts;
    const char *tenant, *actor, *credential_id, *action, *target, *request_id, *source;
    const char *outcome; /* "success", "denied", "failure" */
    int status;          /* the HTTP status answered, 0 when none */
    bool written;        /* set by the store once the record committed with a change */
};

/* D37: binds `e` (borrowed until unbound) as the audit record of the change this thread is
 * about to make (NULL unbinds). While it is bound and not yet written, the first change the
 * store commits for this thread appends it in the same transaction and sets e->written: a task
 * creation, a session purge, a draft or executor change, a snapshot, moment or branch, and the
 * store_ops this thread hands to the event writer through bus_submit_wait (transitions, prompts,
 * chat messages, context changes). A change that does not commit leaves no record; neither do
 * reads, idempotency bookkeeping or the calls that take an explicit `audit`. Thread-local: the
 * http middleware binds the request's record before its handler and unbinds it after. */
void store_audit_bind(struct audit_entry *e);
/* The record bound to this thread and not yet written, or NULL. */
struct audit_entry *store_audit_bound(void);

/* Stores a new key; with `audit`, the audit record goes in the same transaction. AH_E_EXISTS
 * when the id is taken. */
int store_apikey_create(struct store *st, const struct apikey_row *k,
                        const struct audit_entry *audit);
/* The key with this id, whatever its tenant (authentication). AH_E_NOTFOUND when absent. */
int store_apikey_get(struct store *st, const char *id, struct apikey_row **ret);
/* The tenant's keys (tenant NULL: all), newest first. */
int store_apikey_list(struct store *st, const char *tenant, const struct page *pg,
                      struct apikey_row ***ret, size_t *ret_n, int64_t *ret_total);
/* Marks a key revoked (kept for the audit trail); with `audit` in the same transaction.
 * AH_E_NOTFOUND when the tenant (NULL: any) has no such key or it was already revoked. */
int store_apikey_revoke(struct store *st, const char *tenant, const char *id, int64_t now,
                        const struct audit_entry *audit);
/* Records a use (last_used_at). */
int store_apikey_touch(struct store *st, const char *id, int64_t now);
/* The ids of the keys that stopped authenticating in [since, now] (wall ms): revoked then, by
 * any process sharing the database, or expired then; at most STORE_KEYS_ENDED_MAX of them.
 * Free each id, then the array. A running server polls this to end what a key revoked
 * offline (`ah admin api-key revoke`) still holds open. */
#define STORE_KEYS_ENDED_MAX 1000
int store_apikey_ended(struct store *st, int64_t since, int64_t now, char ***ret, size_t *ret_n);
/* How many keys can still authenticate (neither revoked nor expired at `now`). */
int store_apikey_count(struct store *st, int64_t now, int64_t *ret);

/* ---- the fleet of enrolled executors (issue 16; sqlite_fleet.c, postgres_fleet.c) ---------- */

#define STORE_EXECUTORS_MAX 10000 /* a list reads at most this many rows */
struct executor_row {
    char *id;    /* the SPIFFE id */
    char *name;
    char *facts; /* the last Hello, JSON text */
    bool drained;
    int64_t first_seen, last_seen; /* ms */
};
void executor_rows_free(struct executor_row *rows, size_t n);
/* Records an executor's Hello: inserts it, or replaces name and facts (drained is kept). */
int store_executor_put(struct store *st, const char *id, const char *name, const char *facts,
                       int64_t now);
/* Moves last_seen forward to `when`. AH_E_NOTFOUND when the executor is not recorded. */
int store_executor_seen(struct store *st, const char *id, int64_t when);
/* Sets or clears the drained flag. AH_E_NOTFOUND when the executor is not recorded. */
int store_executor_drain(struct store *st, const char *id, bool drained);
/* Forgets an executor. AH_E_NOTFOUND when it is not recorded. */
int store_executor_delete(struct store *st, const char *id);
/* Every recorded executor (at most STORE_EXECUTORS_MAX), by id; free with executor_rows_free. */
int store_executor_list(struct store *st, struct executor_row **ret, size_t *ret_n);

/* Appends one audit record. */
int store_audit_append(struct store *st, const struct audit_entry *e);
struct audit_filter {
    const char *action;   /* exact, NULL = any */
    const char *actor;    /* exact, NULL = any */
    const char *outcome;  /* exact, NULL = any */
    int64_t since, until; /* ms, 0 = unbounded */
};
/* A page of audit records of the tenant (NULL: every tenant), newest first, as JSON objects
 * (id, ts, tenantId, actor, credentialId, action, target, requestId, source, outcome, status). */
int store_audit_list(struct store *st, const char *tenant, const struct audit_filter *f,
                     const struct page *pg, json_t **ret_items, int64_t *ret_total);
/* Deletes records older than `before` (the configured retention; no API reaches this). */
int store_audit_prune(struct store *st, int64_t before, int64_t *ret_deleted);

/* ---- web sessions: people signed in through OpenID Connect (auth/oidc.c; D36) --------------- */

/* One row of web_sessions (migration 011): a sign-in under way at the identity provider
 * ("login": nonce, verifier and return_to set), then a session ("pending" while its code is
 * exchanged, "active", or "failed" with `error`). token_hash is hex SHA-256 of the state (login)
 * or of the cookie (session): the store never holds either. Times in ms; 0 = none. */
struct websession_row {
    char *id, *token_hash, *status;
    char *nonce, *verifier, *return_to;
    char *subject, *user_name, *tenant_id, *role, *id_token, *error;
    int64_t created_at, last_seen_at, expires_at, revoked_at;
};
void websession_row_free(struct websession_row *r);
AH_DEFINE_CLEANUP(struct websession_row, websession_row_free)
/* Inserts a row (with `audit` in the same transaction when given). AH_E_EXISTS on a taken id or
 * token hash. */
int store_websession_put(struct store *st, const struct websession_row *r,
                         const struct audit_entry *audit);
/* The row of this token hash, whatever its state. AH_E_NOTFOUND when absent. */
int store_websession_get(struct store *st, const char *token_hash, struct websession_row **ret);
/* Takes (deletes and returns) the "login" row of this state hash if it has not expired at
 * `now`: a state is used once. Expired rows of every kind are deleted on the way.
 * AH_E_NOTFOUND when there is none. */
int store_websession_take_login(struct store *st, const char *token_hash, int64_t now,
                                struct websession_row **ret);
/* Completes a "pending" session: r->status ("active" or "failed"), subject, user_name,
 * tenant_id, role, id_token, error and expires_at are written; with `audit` in the same
 * transaction. AH_E_NOTFOUND when the session is not pending (revoked, or gone). */
int store_websession_finish(struct store *st, const struct websession_row *r,
                            const struct audit_entry *audit);
/* Records activity (last_seen_at) of a session not revoked. */
int store_websession_touch(struct store *st, const char *id, int64_t now);
/* Revokes a session (logout); with `audit` in the same transaction. AH_E_NOTFOUND when it is
 * absent or already revoked. */
int store_websession_revoke(struct store *st, const char *id, int64_t now,
                            const struct audit_entry *audit);

/* ---- replicas sharing one database (PostgreSQL; D46) ---------------------------------------- */
/* On SQLite one process owns the file: every session is this process's, commands never travel,
 * and these calls answer accordingly (owner = self, nothing orphaned, nothing to take). */

#define STORE_REPLICA_MAX 64
/* Names this process as replica `id` (stable across its restarts: the caller keeps it), before
 * anything else uses the store. Sessions created through this store are owned by it, and
 * store_session_list_live lists only the sessions it owns. Until called, the replica is a name
 * made up at open. */
void store_set_replica(struct store *st, const char *id);
const char *store_replica(const struct store *st);
/* Renews this replica's lease until the database's now + lease_ms; live sessions without an
 * owner (from before replicas) become this replica's. */
int store_replica_beat(struct store *st, int64_t lease_ms);
/* The owner of a session (copied to out) and whether its lease still runs (always true for this
 * replica's own). AH_E_NOTFOUND for no such session. */
int store_session_owner(struct store *st, const char *tenant, const char *id,
                        char out[STORE_REPLICA_MAX + 1], bool *ret_alive);
/* Takes for this replica every live session whose owner's lease ran out,
 * each exactly once across replicas, and returns their (tenant, id) as "tenant\tid" strings
 * (free each, then the array). Commands addressed to the lost owners are dropped. */
int store_session_adopt_orphans(struct store *st, char ***ret, size_t *ret_n);
/* Queues a command (a JSON object) for replica `owner` about a session and tells it (NOTIFY). */
int store_command_post(struct store *st, const char *owner, const char *tenant,
                       const char *session_id, const json_t *cmd);
/* Takes (and removes) this replica's queued commands, oldest first: a JSON array of
 * {"tenant", "session", "command"}. */
int store_command_take(struct store *st, json_t **ret);
/* Calls fn(arg) (from the store's listener thread; it must not block) when a command for this
 * replica may be waiting: after a notice, and after the listener reconnected. The listener runs
 * once store_watch started it. AH_E_NOTIMPL on SQLite. fn NULL stops the calls. */
int store_on_commands(struct store *st, void (*fn)(void *arg), void *arg);

/* ---- moving an installation between databases (`ah admin export|import`; D47) -------------- */

/* Writes every row of every table to `out` as JSON lines: a header, one line per row
 * ({"table", "row": {column: value}}), and a trailer with each table's row count and checksum.
 * Values are backend-neutral (integers, strings, {"$bytes": base64} for bytes), so an export of
 * one backend loads into the other. What only describes running replicas (their leases, their
 * pending commands, who owns a session) is not part of an installation and is left out. */
int store_export(struct store *st, FILE *out, struct ah_problem *reterr);
/* Loads an export into this store, which must hold no rows: first checks the whole archive
 * against its trailer (a cut or altered file loads nothing), then loads it table by table, then
 * reads every table back and compares counts and checksums with the archive. On success
 * *ret_summary (if given) is {table: rows}. */
int store_import(struct store *st, FILE *in, json_t **ret_summary, struct ah_problem *reterr);

/* `ah admin backup`: copies the database at `url` to the new file `dest` while a server may be
 * using it, as one consistent snapshot (SQLite's online backup), without opening it as a store
 * (no migrations: the source is never changed). The copy is checked (integrity_check) before it
 * appears at `dest`; a failure leaves no `dest`. On success *ret_summary is {schemaVersion,
 * tasks, sessions, events, bytes}. A PostgreSQL URL is AH_E_NOTIMPL with a detail naming
 * pg_dump; AH_E_EXISTS when dest exists. */
int store_backup(const char *url, const char *dest, json_t **ret_summary,
                 struct ah_problem *reterr);

/* True once the store is open and answers a trivial query. */
bool store_ready(struct store *st);
/* D50: false while the store cannot write (the last write failed for a full or failing disk);
 * then it tries one small write at most once a second, so it turns true by itself when space
 * returns. Thread-safe. */
bool store_writable(struct store *st);
/* The highest migration applied and how many migrations were applied by this open. */
int store_schema_version(struct store *st, int *ret_version, int *ret_applied_now);

/* ---- the timeline: snapshots, moments, branches (API.md §7.8; store/timeline.c) -------------- */

/* A workspace snapshot as the timeline shows it (the object store has its content). */
struct fs_snapshot_row {
    char *session_id, *id;
    char *kind; /* "base", "auto" or "manual" */
    char *label;
    char *description; /* NULL when none */
    char *provider;
    int64_t seq;        /* the last event stored before it (D33) */
    int64_t ts;         /* ms */
    int64_t size_bytes; /* what it added to the object store */
};
void fs_snapshot_rows_free(struct fs_snapshot_row *rows, size_t n);
/* Records a snapshot; AH_E_EXISTS when the session already has one with that id, AH_E_NOTFOUND
 * without the session. r->session_id is ignored (session_id is the one). */
int store_fs_snapshot_add(struct store *st, const char *tenant, const char *session_id,
                          const struct fs_snapshot_row *r);
/* The session's snapshots, oldest first, at most limit. */
int store_fs_snapshot_list(struct store *st, const char *tenant, const char *session_id,
                           size_t limit, struct fs_snapshot_row **ret, size_t *ret_n);
/* One snapshot by id in any session of the tenant (ids are ULIDs: unique). */
int store_fs_snapshot_find(struct store *st, const char *tenant, const char *id,
                           struct fs_snapshot_row **ret);
int store_fs_snapshot_delete(struct store *st, const char *tenant, const char *session_id,
                             const char *id);

struct moment_row {
    char *session_id, *id, *label;
    char *description; /* NULL when none */
    char *type;
    int64_t seq, ts;
};
void moment_rows_free(struct moment_row *rows, size_t n);
int store_moment_add(struct store *st, const char *tenant, const char *session_id,
                     const struct moment_row *r);
/* Oldest first, at most limit. */
int store_moment_list(struct store *st, const char *tenant, const char *session_id, size_t limit,
                      struct moment_row **ret, size_t *ret_n);

struct branch_row {
    char *session_id, *parent_session_id, *fs_snapshot_id;
    char *name, *injected_message_id; /* NULL when none */
    int64_t branch_seq, branch_ts, created_at;
};
void branch_rows_free(struct branch_row *rows, size_t n);
/*
 * Creates a branch session in one transaction: its task (request) and session (queued), copies
 * of the parent's events 1..b->branch_seq with their original seq, sessionId set to the new
 * session and `inherited: true`, the new session's `queued` status event as seq branch_seq + 1,
 * and the branch row. AH_E_NOTFOUND when the parent is not the tenant's.
 */
int store_branch_create(struct store *st, const char *tenant, const char *task_id,
                        const char *project_id, const json_t *request,
                        const struct session_new *s, const struct branch_row *b, int64_t now);
/* The branches made from parent_id, oldest first. */
int store_branch_list(struct store *st, const char *tenant, const char *parent_id,
                      struct branch_row **ret, size_t *ret_n);
/* Where session_id came from; AH_E_NOTFOUND when it is not a branch. */
int store_branch_get(struct store *st, const char *tenant, const char *session_id,
                     struct branch_row **ret);

#endif
