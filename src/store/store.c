/*
 * store.c — picks the backend from the URL and dispatches every call through its ops.
 */
#include <stdio.h>
#include <string.h>

#include "../obs/obs.h"
#include "backend.h"

/* ---- metrics (D49): latency per operation, and failures that are the store's (5xx) -------- */

enum { M_TASK_CREATE, M_SESSION_GET, M_SESSION_LIST, M_SESSION_LIVE, M_APPLY, M_EVENT_LIST,
       M_EVENT_RANGE, M_OPS };
static struct obs_family *m_secs, *m_errors;
__attribute__((constructor)) static void store_metrics(void) {
    static const char *const ops[M_OPS] = {
        "op=\"task_create\"",  "op=\"session_get\"", "op=\"session_list\"",
        "op=\"session_list_live\"", "op=\"apply\"", "op=\"event_list\"",
        "op=\"event_range\""};
    static const double secs[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                  0.025,  0.05,    0.1,    0.25,  0.5,    1};
    m_secs = obs_register("ah_store_operation_seconds", "Time spent in a store operation",
                          OBS_HISTOGRAM, ops, M_OPS, secs, sizeof(secs) / sizeof(*secs));
    m_errors = obs_register("ah_store_errors_total",
                            "Store operations that failed on the store's side (I/O, full disk, "
                            "connection lost)", OBS_COUNTER, ops, M_OPS, NULL, 0);
}

static int timed(int op, double t0, int rc) {
    obs_observe(m_secs, (size_t)op, obs_now() - t0);
    if (rc < 0 && ah_error_status(rc) >= 500)
        obs_add(m_errors, (size_t)op, 1);
    return rc;
}
#define TIMED(op, call) timed(op, obs_now(), (call))

/* ---- D50: a store that cannot write (full disk, failing disk) -------------------------------- */

/* Every write passes its result through here: AH_E_STORAGE marks the store unwritable (readyz
 * answers 503), and any write that succeeds afterwards clears the mark. */
static int noted(struct store *st, int rc) {
    if (rc == AH_E_STORAGE)
        __atomic_store_n(&st->write_fault, 1, __ATOMIC_RELAXED);
    else if (rc >= 0 && __atomic_load_n(&st->write_fault, __ATOMIC_RELAXED))
        __atomic_store_n(&st->write_fault, 0, __ATOMIC_RELAXED);
    return rc;
}

#define PROBE_EVERY_MS 1000

bool store_writable(struct store *st) {
    if (!st || !__atomic_load_n(&st->write_fault, __ATOMIC_RELAXED))
        return true;
    if (!st->ops->probe_write)
        return false;
    /* the server recovers by itself: while marked, a probe write (at most one a second, from
     * whoever asks: readyz, the watchdog) finds out when space or the disk is back */
    int64_t now = time_mono_ms(), /* a wall-clock jump must not stop the probes */
        next = __atomic_load_n(&st->next_probe_ms, __ATOMIC_RELAXED);
    if (now < next || !__atomic_compare_exchange_n(&st->next_probe_ms, &next,
                                                   now + PROBE_EVERY_MS, false,
                                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return false;
    return noted(st, st->ops->probe_write(st->impl)) >= 0;
}

/* ---- versions of sessions as shown (store_session_version) --------------------------------- */

#define VERSION_SLOTS 4096
static uint64_t versions[VERSION_SLOTS];
static uint64_t list_version;
static uint64_t epoch; /* added to every session's version: moved when any may have changed */

static size_t version_slot(const char *id) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; id && *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ULL;
    return (size_t)(h % VERSION_SLOTS);
}

/* After a commit that touched session id (NULL: some session, lists only). */
static void bump(const char *id) {
    if (id)
        __atomic_add_fetch(&versions[version_slot(id)], 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&list_version, 1, __ATOMIC_RELEASE);
}

void store_versions_changed(const char *session_id) {
    if (!session_id)
        __atomic_add_fetch(&epoch, 1, __ATOMIC_RELEASE);
    bump(session_id);
}

/* Versions hold when this process is the one writer (SQLite), or while the backend hears every
 * other writer's changes (PostgreSQL's notices). */
static bool versioned(const struct store *st) {
    return st && (st->ops->hears_changes ? st->ops->hears_changes(st->impl)
                                         : strcmp(st->ops->name, "sqlite") == 0);
}

int store_session_version(struct store *st, const char *id, uint64_t *ret) {
    if (!versioned(st))
        return AH_E_NOTIMPL;
    *ret = __atomic_load_n(&versions[version_slot(id)], __ATOMIC_ACQUIRE) +
           __atomic_load_n(&epoch, __ATOMIC_ACQUIRE);
    return 0;
}

int store_sessions_version(struct store *st, uint64_t *ret) {
    if (!versioned(st))
        return AH_E_NOTIMPL;
    *ret = __atomic_load_n(&list_version, __ATOMIC_ACQUIRE);
    return 0;
}

int store_open(const char *url, struct store **ret, struct ah_problem *reterr) {
    if (!url || !*url)
        return problem_set(reterr, AH_E_INVAL, "no database given");
    bool pg = strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0;
    const char *path = strncmp(url, "sqlite:", 7) == 0 ? url + 7 : url;
    struct store *st = calloc(1, sizeof(*st));
    if (!st)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    int rc = pg ? store_pg_open(url, &st->impl, reterr)
                : store_sqlite_open(path, &st->impl, reterr);
    if (rc < 0) {
        free(st);
        return rc;
    }
    st->ops = pg ? &store_pg_ops : &store_sqlite_ops;
    char made_up[ULID_LEN + 1];
    ulid_new(made_up);
    store_set_replica(st, made_up);
    *ret = st;
    return 0;
}

int store_backup(const char *url, const char *dest, json_t **ret_summary,
                 struct ah_problem *reterr) {
    if (!url || !*url || !dest || !*dest)
        return problem_set(reterr, AH_E_INVAL, "no database or no destination given");
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return problem_set(reterr, AH_E_NOTIMPL,
                           "the database is PostgreSQL: back it up with PostgreSQL's own tools "
                           "(pg_dump, or continuous archiving for point-in-time recovery)");
    const char *path = strncmp(url, "sqlite:", 7) == 0 ? url + 7 : url;
    return store_sqlite_backup(path, dest, ret_summary, reterr);
}

void store_close(struct store *st) {
    if (!st)
        return;
    st->ops->close(st->impl);
    free(st);
}

int store_watch(struct store *st,
                void (*fn)(void *arg, const char *tenant, const char *session_id, int64_t seq),
                void *arg) {
    return st->ops->watch ? st->ops->watch(st->impl, fn, arg) : AH_E_NOTIMPL;
}

/* ---- replicas (D46) ---------------------------------------------------------------------------- */

void store_set_replica(struct store *st, const char *id) {
    snprintf(st->replica, sizeof(st->replica), "%s", id);
    if (st->ops->set_replica)
        st->ops->set_replica(st->impl, st->replica);
}

const char *store_replica(const struct store *st) {
    return st->replica;
}

int store_replica_beat(struct store *st, int64_t lease_ms) {
    return st->ops->replica_beat ? st->ops->replica_beat(st->impl, lease_ms) : 0;
}

int store_session_owner(struct store *st, const char *tenant, const char *id,
                        char out[STORE_REPLICA_MAX + 1], bool *ret_alive) {
    if (st->ops->session_owner)
        return st->ops->session_owner(st->impl, tenant, id, out, ret_alive);
    snprintf(out, STORE_REPLICA_MAX + 1, "%s", st->replica);
    *ret_alive = true;
    return 0;
}

int store_session_adopt_orphans(struct store *st, char ***ret, size_t *ret_n) {
    *ret = NULL;
    *ret_n = 0;
    return st->ops->adopt_orphans ? st->ops->adopt_orphans(st->impl, ret, ret_n) : 0;
}

int store_command_post(struct store *st, const char *owner, const char *tenant,
                       const char *session_id, const json_t *cmd) {
    if (!st->ops->command_post)
        return AH_E_NOTIMPL;
    char *text = json_dumps(cmd, JSON_COMPACT);
    if (!text)
        return AH_E_NOMEM;
    int rc = st->ops->command_post(st->impl, owner, tenant, session_id, text);
    free(text);
    return rc;
}

int store_command_take(struct store *st, json_t **ret) {
    if (st->ops->command_take)
        return st->ops->command_take(st->impl, ret);
    return (*ret = json_array()) ? 0 : AH_E_NOMEM;
}

int store_on_commands(struct store *st, void (*fn)(void *arg), void *arg) {
    return st->ops->on_commands ? st->ops->on_commands(st->impl, fn, arg) : AH_E_NOTIMPL;
}

bool store_ready(struct store *st) {
    return st && st->ops->ready(st->impl);
}

int store_schema_version(struct store *st, int *ret_version, int *ret_applied_now) {
    return st->ops->schema_version(st->impl, ret_version, ret_applied_now);
}

int store_task_create(struct store *st, const char *tenant, const char *task_id,
                      const char *project_id, const json_t *request,
                      const struct session_new *sessions, size_t n, int64_t now) {
    int rc = noted(st, TIMED(M_TASK_CREATE, st->ops->task_create(st->impl, tenant, task_id,
                                                                  project_id, request, sessions,
                                                                  n, now)));
    for (size_t i = 0; i < n; i++) /* a retried id that existed before must not stay cached */
        bump(sessions[i].id);
    return rc;
}

int store_session_get(struct store *st, const char *tenant, const char *id,
                      struct session_row **ret) {
    return TIMED(M_SESSION_GET, st->ops->session_get(st->impl, tenant, id, ret));
}

int store_session_list(struct store *st, const char *tenant, const struct session_filter *f,
                       const struct page *pg, struct session_row ***ret, size_t *ret_n,
                       int64_t *ret_total) {
    return TIMED(M_SESSION_LIST, st->ops->session_list(st->impl, tenant, f, pg, ret, ret_n,
                                                        ret_total));
}

int store_session_list_live(struct store *st, struct session_row ***ret, size_t *ret_n) {
    return TIMED(M_SESSION_LIVE, st->ops->session_list_live(st->impl, ret, ret_n));
}

int store_session_purge(struct store *st, const char *tenant, const char *id) {
    int rc = noted(st, st->ops->session_purge(st->impl, tenant, id));
    bump(id);
    return rc;
}

int store_session_set_runtime(struct store *st, const char *tenant, const char *id,
                              const struct session_runtime *rt) {
    int rc = noted(st, st->ops->session_set_runtime(st->impl, tenant, id, rt));
    bump(id);
    return rc;
}

/* D37: the records the backend appended with the batch's stored ops are written once it
 * committed (a failed batch stored nothing: every op's result is then the error). */
static int audit_committed(struct store_op *ops, size_t n, int rc) {
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (ops[i].result == 0 && ops[i].audit)
            ops[i].audit->written = true;
    return rc;
}

/* D29: what is stored is what is shown (events, a session's error), so the userinfo of any URL
 * in an event or an error is redacted here, once, for every backend. The caller's payload and
 * error are borrowed: redacted copies stand in for them during the call only. */
int store_apply(struct store *st, struct store_op *ops, size_t n) {
    bool redact = false;
    for (size_t i = 0; i < n && !redact; i++)
        redact = text_has_userinfo(ops[i].error) || json_has_userinfo(ops[i].payload);
    if (!redact) {
        int rc = noted(st, TIMED(M_APPLY, st->ops->apply(st->impl, ops, n)));
        for (size_t i = 0; i < n; i++)
            bump(ops[i].session_id);
        return audit_committed(ops, n, rc);
    }
    struct shown {
        json_t *payload;   /* the caller's */
        const char *error; /* the caller's */
        char *error_copy;
    } *keep = calloc(n, sizeof(*keep));
    if (!keep)
        return AH_E_NOMEM;
    int rc = 0;
    size_t done = 0;
    for (; rc == 0 && done < n; done++) {
        struct store_op *op = &ops[done];
        keep[done].payload = op->payload;
        keep[done].error = op->error;
        if (op->payload && !(op->payload = json_redact_userinfo(keep[done].payload)))
            rc = AH_E_NOMEM;
        if (text_has_userinfo(op->error) &&
            !(op->error = keep[done].error_copy = text_redact_userinfo(keep[done].error)))
            rc = AH_E_NOMEM;
    }
    if (rc == 0)
        rc = noted(st, TIMED(M_APPLY, st->ops->apply(st->impl, ops, n)));
    else
        for (size_t i = 0; i < n; i++)
            ops[i].result = rc;
    for (size_t i = 0; i < n; i++)
        bump(ops[i].session_id);
    for (size_t i = 0; i < done; i++) {
        json_decref(ops[i].payload); /* a new reference: the copy, or the caller's again */
        ops[i].payload = keep[i].payload;
        ops[i].error = keep[i].error;
        free(keep[i].error_copy);
    }
    free(keep);
    return audit_committed(ops, n, rc);
}

int store_event_list(struct store *st, const char *tenant, const char *session_id,
                     const struct event_filter *f, const struct page *pg, json_t **ret_items,
                     int64_t *ret_total) {
    return TIMED(M_EVENT_LIST,
                 st->ops->event_list(st->impl, tenant, session_id, f, pg, ret_items, ret_total));
}

int store_event_range(struct store *st, const char *tenant, const char *session_id,
                      int64_t after, size_t limit, char ***ret_json, int64_t **ret_seq,
                      size_t *ret_n) {
    return TIMED(M_EVENT_RANGE, st->ops->event_range(st->impl, tenant, session_id, after, limit,
                                                      ret_json, ret_seq, ret_n));
}

int store_idem_begin(struct store *st, const char *tenant, const char *key, const char *hash,
                     int64_t now, int64_t max_age_ms, struct idem_row **ret_existing) {
    return noted(st, st->ops->idem_begin(st->impl, tenant, key, hash, now, max_age_ms,
                                         ret_existing));
}

int store_idem_finish(struct store *st, const char *tenant, const char *key, int status,
                      const char *content_type, const char *body, size_t len) {
    return noted(st, st->ops->idem_finish(st->impl, tenant, key, status, content_type, body,
                                          len));
}

int store_idem_release(struct store *st, const char *tenant, const char *key) {
    return noted(st, st->ops->idem_release(st->impl, tenant, key));
}

int store_draft_create(struct store *st, const char *tenant, const char *id, const json_t *body,
                       int64_t now) {
    return noted(st, st->ops->draft_create(st->impl, tenant, id, body, now));
}

int store_draft_update(struct store *st, const char *tenant, const char *id,
                       json_t *members, int64_t now, struct draft_row **ret) {
    return noted(st, st->ops->draft_update(st->impl, tenant, id, members, now, ret));
}

int store_draft_get(struct store *st, const char *tenant, const char *id,
                    struct draft_row **ret) {
    return st->ops->draft_get(st->impl, tenant, id, ret);
}

int store_draft_delete(struct store *st, const char *tenant, const char *id) {
    return noted(st, st->ops->draft_delete(st->impl, tenant, id));
}

int store_draft_list(struct store *st, const char *tenant, const struct page *pg,
                     struct draft_row ***ret, size_t *ret_n, int64_t *ret_total) {
    return st->ops->draft_list(st->impl, tenant, pg, ret, ret_n, ret_total);
}

void project_rows_free(struct project_row *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++)
        free(rows[i].id);
    free(rows);
}

int store_project_list(struct store *st, const char *tenant, const struct page *pg,
                       struct project_row **ret, size_t *ret_n, int64_t *ret_total) {
    return st->ops->project_list(st->impl, tenant, pg, ret, ret_n, ret_total);
}

int store_repo_list(struct store *st, const char *tenant, const char *project_id,
                    struct repo_row **ret, size_t *ret_n) {
    return st->ops->repo_list(st->impl, tenant, project_id, ret, ret_n);
}

/* ---- API keys and the audit log ---- */

void apikey_row_free(struct apikey_row *r) {
    if (!r)
        return;
    free(r->id);
    free(r->tenant_id);
    free(r->project_id);
    free(r->role);
    free(r->name);
    free(r->salt);
    free(r->hash);
    free(r);
}

void apikey_rows_free(struct apikey_row **rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++)
        apikey_row_free(rows[i]);
    free(rows);
}

int store_apikey_create(struct store *st, const struct apikey_row *k,
                        const struct audit_entry *audit) {
    return st->ops->apikey_create(st->impl, k, audit);
}

int store_apikey_get(struct store *st, const char *id, struct apikey_row **ret) {
    return st->ops->apikey_get(st->impl, id, ret);
}

int store_apikey_list(struct store *st, const char *tenant, const struct page *pg,
                      struct apikey_row ***ret, size_t *ret_n, int64_t *ret_total) {
    return st->ops->apikey_list(st->impl, tenant, pg, ret, ret_n, ret_total);
}

int store_apikey_revoke(struct store *st, const char *tenant, const char *id, int64_t now,
                        const struct audit_entry *audit) {
    return st->ops->apikey_revoke(st->impl, tenant, id, now, audit);
}

int store_apikey_touch(struct store *st, const char *id, int64_t now) {
    return st->ops->apikey_touch(st->impl, id, now);
}

int store_apikey_ended(struct store *st, int64_t since, int64_t now, char ***ret, size_t *ret_n) {
    return st->ops->apikey_ended(st->impl, since, now, ret, ret_n);
}

int store_apikey_count(struct store *st, int64_t now, int64_t *ret) {
    return st->ops->apikey_count(st->impl, now, ret);
}

void executor_rows_free(struct executor_row *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].id);
        free(rows[i].name);
        free(rows[i].facts);
    }
    free(rows);
}

int store_executor_put(struct store *st, const char *id, const char *name, const char *facts,
                       int64_t now) {
    return st->ops->executor_put(st->impl, id, name, facts, now);
}

int store_executor_seen(struct store *st, const char *id, int64_t when) {
    return st->ops->executor_seen(st->impl, id, when);
}

int store_executor_drain(struct store *st, const char *id, bool drained) {
    return st->ops->executor_drain(st->impl, id, drained);
}

int store_executor_delete(struct store *st, const char *id) {
    return st->ops->executor_delete(st->impl, id);
}

int store_executor_list(struct store *st, struct executor_row **ret, size_t *ret_n) {
    return st->ops->executor_list(st->impl, ret, ret_n);
}

/* D37: one record per thread; the http middleware serves one request at a time per thread. */
static _Thread_local struct audit_entry *audit_bound;

void store_audit_bind(struct audit_entry *e) {
    audit_bound = e;
}

struct audit_entry *store_audit_bound(void) {
    return audit_bound && !audit_bound->written ? audit_bound : NULL;
}

int store_audit_append(struct store *st, const struct audit_entry *e) {
    return st->ops->audit_append(st->impl, e);
}

int store_audit_list(struct store *st, const char *tenant, const struct audit_filter *f,
                     const struct page *pg, json_t **ret_items, int64_t *ret_total) {
    return st->ops->audit_list(st->impl, tenant, f, pg, ret_items, ret_total);
}

int store_audit_prune(struct store *st, int64_t before, int64_t *ret_deleted) {
    return st->ops->audit_prune(st->impl, before, ret_deleted);
}

/* ---- web sessions ---- */

void websession_row_free(struct websession_row *r) {
    if (!r)
        return;
    free(r->id);
    free(r->token_hash);
    free(r->status);
    free(r->nonce);
    free(r->verifier);
    free(r->return_to);
    free(r->subject);
    free(r->user_name);
    free(r->tenant_id);
    free(r->role);
    free(r->id_token);
    free(r->error);
    free(r);
}

int store_websession_put(struct store *st, const struct websession_row *r,
                         const struct audit_entry *audit) {
    return st->ops->websession_put(st->impl, r, audit);
}

int store_websession_get(struct store *st, const char *token_hash, struct websession_row **ret) {
    return st->ops->websession_get(st->impl, token_hash, ret);
}

int store_websession_take_login(struct store *st, const char *token_hash, int64_t now,
                                struct websession_row **ret) {
    return st->ops->websession_take_login(st->impl, token_hash, now, ret);
}

int store_websession_finish(struct store *st, const struct websession_row *r,
                            const struct audit_entry *audit) {
    return st->ops->websession_finish(st->impl, r, audit);
}

int store_websession_touch(struct store *st, const char *id, int64_t now) {
    return st->ops->websession_touch(st->impl, id, now);
}

int store_websession_revoke(struct store *st, const char *id, int64_t now,
                            const struct audit_entry *audit) {
    return st->ops->websession_revoke(st->impl, id, now, audit);
}
