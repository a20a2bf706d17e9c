/*
 * sqlite_internal.h — private to store/: the SQLite backend's pool and statement helpers, shared
 * by sqlite.c and the per-table files (sqlite_sessions.c, sqlite_events.c, …).
 */
#ifndef AH_STORE_SQLITE_INTERNAL_H
#define AH_STORE_SQLITE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "backend.h"

#define SQ_STMT_CACHE 64
#define SQ_POOL_SIZE 8

struct conn {
    sqlite3 *db;
    bool in_use;
    struct {
        const char *sql; /* address of a string literal: the cache key */
        sqlite3_stmt *stmt;
    } cache[SQ_STMT_CACHE];
    size_t n_cache;
    sqlite3_stmt *uncached;
};

struct sq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct conn conns[SQ_POOL_SIZE];
    size_t n;
    int version, applied_now;
};

/* Takes a free connection, waiting for one; give it back with sq_release (which also rolls back
 * a transaction left open). */
struct conn *sq_acquire(struct sq *s);
void sq_release(struct sq *s, struct conn *c);
/* A reset, unbound statement for `sql` (a string literal); NULL on error. Call sq_done after. */
sqlite3_stmt *sq_prepare(struct conn *c, const char *sql);
void sq_done(struct conn *c, sqlite3_stmt *st);
/* Runs SQL without results (BEGIN, COMMIT…); 0 or AH_E_*. */
int sq_exec(struct conn *c, const char *sql);
/* Steps a bound SELECT count(*) into *ret: a list's total is part of its answer, so a failed
 * count fails the list. */
int sq_count(sqlite3_stmt *st, int64_t *ret);
/* Maps a SQLite result code to AH_E_* (0 for OK/ROW/DONE). */
int sq_code(int rc);
/* Steps an UPDATE or DELETE that must touch a row: 0, AH_E_NOTFOUND when none matched, or the
 * mapped error. */
int sq_change_one(struct conn *c, sqlite3_stmt *st);
/* Runs `sql` (a string literal: an UPDATE or DELETE with ?1 = tenant, ?2 = id, nothing else) on a
 * pooled connection through sq_change_one. */
int sq_change_by_id(struct sq *s, const char *sql, const char *tenant, const char *id);
/* Its reading twin: runs `sql` (?1 tenant, ?2 id) and hands the one row to `read` (which fills
 * `ret`); no row is AH_E_NOTFOUND. */
int sq_row_by_id(struct sq *s, const char *sql, const char *tenant, const char *id,
                 int (*read)(sqlite3_stmt *st, void *ret), void *ret);
/* The same on a connection the caller holds (inside its transaction). */
int sq_row_by_id_on(struct conn *c, const char *sql, const char *tenant, const char *id,
                    int (*read)(sqlite3_stmt *st, void *ret), void *ret);

/* D37 (sqlite_auth.c): a change function commits with sq_commit_change in place of COMMIT, so
 * the audit record bound to the thread (store_audit_bind) goes in its transaction, once. A
 * change made by one statement brackets it with sq_change_begin (opens a transaction only when
 * a record is bound) and sq_change_end(c, rc) (commits with the record, or rolls back on rc < 0;
 * returns the outcome). sq_audit_ops appends the records of a batch's stored ops (store_apply);
 * store_audit_ops_committed marks them written once the batch committed. */
int sq_commit_change(struct conn *c);
int sq_change_begin(struct conn *c);
int sq_change_end(struct conn *c, int rc);
int sq_audit_ops(struct conn *c, const struct store_op *ops, size_t n);

/* sqlite_fault.c: the name of the test-only VFS that fails writes on demand (AH_TEST_HOOKS=1
 * and AH_TEST_FAULT_FILE set), or NULL (the default VFS) otherwise. */
const char *sq_fault_vfs(void);

/* The ops, one file per table group (sqlite_sessions.c, sqlite_events.c, sqlite_idem.c). */
int sq_task_create(void *impl, const char *tenant, const char *task_id, const char *project_id,
                   const json_t *request, const struct session_new *sessions, size_t n,
                   int64_t now);
int sq_session_get(void *impl, const char *tenant, const char *id, struct session_row **ret);
int sq_session_list(void *impl, const char *tenant, const struct session_filter *f,
                    const struct page *pg, struct session_row ***ret, size_t *ret_n,
                    int64_t *ret_total);
int sq_session_list_live(void *impl, struct session_row ***ret, size_t *ret_n);
int sq_session_purge(void *impl, const char *tenant, const char *id);
int sq_session_set_runtime(void *impl, const char *tenant, const char *id,
                           const struct session_runtime *rt);
int sq_apply(void *impl, struct store_op *ops, size_t n);
int sq_event_list(void *impl, const char *tenant, const char *session_id,
                  const struct event_filter *f, const struct page *pg, json_t **ret_items,
                  int64_t *ret_total);
int sq_event_range(void *impl, const char *tenant, const char *session_id, int64_t after,
                   size_t limit, char ***ret_json, int64_t **ret_seq, size_t *ret_n);
int sq_idem_begin(void *impl, const char *tenant, const char *key, const char *hash, int64_t now,
                  int64_t max_age_ms, struct idem_row **ret_existing);
int sq_idem_finish(void *impl, const char *tenant, const char *key, int status,
                   const char *content_type, const char *body, size_t len);
int sq_idem_release(void *impl, const char *tenant, const char *key);
int sq_draft_create(void *impl, const char *tenant, const char *id, const json_t *body,
                    int64_t now);
int sq_draft_update(void *impl, const char *tenant, const char *id, json_t *members,
                    int64_t now, struct draft_row **ret);
int sq_draft_get(void *impl, const char *tenant, const char *id, struct draft_row **ret);
int sq_draft_delete(void *impl, const char *tenant, const char *id);
int sq_draft_list(void *impl, const char *tenant, const struct page *pg, struct draft_row ***ret,
                  size_t *ret_n, int64_t *ret_total);
/* sqlite_fleet.c */
int sq_executor_put(void *impl, const char *id, const char *name, const char *facts, int64_t now);
int sq_executor_seen(void *impl, const char *id, int64_t when);
int sq_executor_drain(void *impl, const char *id, bool drained);
int sq_executor_delete(void *impl, const char *id);
int sq_executor_list(void *impl, struct executor_row **ret, size_t *ret_n);
int sq_project_list(void *impl, const char *tenant, const struct page *pg,
                    struct project_row **ret, size_t *ret_n, int64_t *ret_total);
int sq_repo_list(void *impl, const char *tenant, const char *project_id, struct repo_row **ret,
                 size_t *ret_n);

/* API keys and the audit log (sqlite_auth.c) */
int sq_apikey_create(void *impl, const struct apikey_row *k, const struct audit_entry *audit);
int sq_apikey_get(void *impl, const char *id, struct apikey_row **ret);
int sq_apikey_list(void *impl, const char *tenant, const struct page *pg,
                   struct apikey_row ***ret, size_t *ret_n, int64_t *ret_total);
int sq_apikey_revoke(void *impl, const char *tenant, const char *id, int64_t now,
                     const struct audit_entry *audit);
int sq_apikey_touch(void *impl, const char *id, int64_t now);
int sq_apikey_count(void *impl, int64_t now, int64_t *ret);
int sq_apikey_ended(void *impl, int64_t since, int64_t now, char ***ret, size_t *ret_n);
int sq_audit_append(void *impl, const struct audit_entry *e);
int sq_audit_list(void *impl, const char *tenant, const struct audit_filter *f,
                  const struct page *pg, json_t **ret_items, int64_t *ret_total);
int sq_audit_prune(void *impl, int64_t before, int64_t *ret_deleted);
int sq_websession_put(void *impl, const struct websession_row *r,
                        const struct audit_entry *audit);
int sq_websession_get(void *impl, const char *token_hash, struct websession_row **ret);
int sq_websession_take_login(void *impl, const char *token_hash, int64_t now,
                                struct websession_row **ret);
int sq_websession_finish(void *impl, const struct websession_row *r,
                            const struct audit_entry *audit);
int sq_websession_touch(void *impl, const char *id, int64_t now);
int sq_websession_revoke(void *impl, const char *id, int64_t now,
                            const struct audit_entry *audit);

/* sqlite_archive.c (D47) */
int sq_archive_tables(void *impl, char ***ret, size_t *ret_n);
int sq_archive_read(void *impl, const char *table, int (*fn)(void *arg, json_t *row), void *arg);
int sq_archive_count(void *impl, const char *table, int64_t *ret);
int sq_archive_write(void *impl, const char *table, json_t *rows, struct ah_problem *reterr);

#endif
