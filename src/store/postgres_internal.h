/*
 * postgres_internal.h — private to store/: the PostgreSQL backend's pool, statement and argument
 * helpers, shared by postgres.c and the per-table files (postgres_sessions.c, postgres_events.c,
 * postgres_idem.c, postgres_drafts.c).
 */
#ifndef AH_STORE_POSTGRES_INTERNAL_H
#define AH_STORE_POSTGRES_INTERNAL_H

#include <libpq-fe.h>
#include <pthread.h>

#include "backend.h"

#define PGS_POOL_SIZE 8
#define PGS_STMT_CACHE 96
#define PGS_MAX_ARGS 16 /* web_sessions rows bind 15 */

struct pgs_conn {
    PGconn *db; /* NULL until first used (or after a failed reconnect) */
    bool in_use;
    struct {
        const char *sql; /* address of a string literal: the cache key */
        char name[12];   /* the server-side prepared statement: "s<n>" */
    } cache[PGS_STMT_CACHE];
    size_t n_cache;
};

struct pgs {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct pgs_conn conns[PGS_POOL_SIZE];
    char *url;
    int version, applied_now;
    char origin[ULID_LEN + 1]; /* this store in the notices it sends, to skip them on receipt */
    struct {                   /* store_watch: the listener (postgres_notify.c) */
        bool started;
        pthread_t thread;
        int stop_fd; /* eventfd: store_close wakes the listener to end */
        PGconn *first; /* the listening connection, until the thread takes it */
        void (*fn)(void *arg, const char *tenant, const char *session_id, int64_t seq);
        void *arg;
        bool hearing; /* atomic: listening now, every change reaches store_versions_changed */
    } watch;
    char replica[STORE_REPLICA_MAX + 1]; /* under mu: this process as an owner of sessions */
    struct {                             /* store_on_commands, under mu */
        void (*fn)(void *arg);
        void *arg;
    } commands;
};

/* The channel of the notices: one per database, payload "origin\ttenant\tsession\tseq". */
#define PGS_CHANNEL "ah_events"
/* Commands for a replica wait in the commands table; this channel says so, payload: its id. */
#define PGS_COMMANDS "ah_commands"
/* Every change of a session row, by any process (a trigger, migration 020), payload
 * "tenant\tsession": what invalidates the versions behind the read cache. */
#define PGS_ROWS "ah_session_rows"

/* The parameters of one statement, all sent as text (or bytes), bound by position $1…$n. Values
 * are borrowed until the statement has run; integers are formatted into the struct itself. */
struct pgs_args {
    int n;
    const char *v[PGS_MAX_ARGS];
    int len[PGS_MAX_ARGS];
    int fmt[PGS_MAX_ARGS];
    char num[PGS_MAX_ARGS][24];
};
void store_pg_arg_text(struct pgs_args *a, const char *s); /* NULL binds SQL NULL */
void store_pg_arg_int(struct pgs_args *a, int64_t v);
void store_pg_arg_bool(struct pgs_args *a, bool v);
void store_pg_arg_bytes(struct pgs_args *a, const void *p, size_t len);

/* A new connection to `url` (NULL with reterr set when it cannot be had). */
PGconn *store_pg_connect(const char *url, struct ah_problem *reterr);

/* Takes a free connection, connecting it first when needed (and again when the server dropped
 * it); NULL when the database cannot be reached. Give it back with store_pg_release, which also
 * rolls back a transaction left open. */
struct pgs_conn *store_pg_acquire(struct pgs *s);
void store_pg_release(struct pgs *s, struct pgs_conn *c);
/* Runs `sql` (a string literal, prepared once per connection and cached by its address) with
 * `a` (NULL = no parameters). Returns the result (PQclear it) when the statement succeeded, NULL
 * with *ret_rc set otherwise. */
PGresult *store_pg_run(struct pgs_conn *c, const char *sql, const struct pgs_args *a, int *ret_rc);
/* Runs a statement whose rows do not matter (INSERT, UPDATE, DELETE); 0 or AH_E_*. With
 * ret_rows, the number of rows it touched. */
int store_pg_do(struct pgs_conn *c, const char *sql, const struct pgs_args *a, int64_t *ret_rows);
/* Runs SQL without parameters over the simple protocol (BEGIN, COMMIT…); 0 or AH_E_*. */
int store_pg_exec(struct pgs_conn *c, const char *sql);
/* Maps a failed result's SQLSTATE to AH_E_* (unique/foreign-key violations are AH_E_EXISTS like
 * SQLite's constraint errors; a lost connection, lock or resource trouble is AH_E_UNAVAIL). */
int store_pg_code(const PGresult *r);
/* The helpers of the sqlite twin: an UPDATE/DELETE (`sql`: $1 tenant, $2 id) that must touch a
 * row (AH_E_NOTFOUND otherwise), and a SELECT of one row handed to `read`. */
int store_pg_change_by_id(struct pgs *s, const char *sql, const char *tenant, const char *id);
int store_pg_row_by_id_on(struct pgs_conn *c, const char *sql, const char *tenant,
                          const char *id, int (*read)(const PGresult *r, int row, void *ret),
                          void *ret);
int store_pg_row_by_id(struct pgs *s, const char *sql, const char *tenant, const char *id,
                       int (*read)(const PGresult *r, int row, void *ret), void *ret);

/* Column readers: NULL-safe text copy (NULL for SQL NULL; check for OOM where the column is
 * NOT NULL), integer (0 for SQL NULL). */
char *store_pg_text(const PGresult *r, int row, int col);
int64_t store_pg_int(const PGresult *r, int row, int col);

/* Appends s to b as one element of a PostgreSQL array literal ("…" with " and \ escaped; NULL
 * as NULL), preceded by a comma unless it is the first. */
int store_pg_array_add(struct ah_buf *b, const char *s);
int store_pg_array_add_int(struct ah_buf *b, int64_t v);

/* The ops, one file per table group. */
/* D37 (postgres_auth.c), as on SQLite (sqlite_internal.h): commit a change with
 * store_pg_commit_change so the thread's bound audit record goes in its transaction; bracket a
 * one-statement change with store_pg_change_begin / store_pg_change_end(c, rc); the batch of
 * store_apply appends its stored ops' records with store_pg_audit_ops before COMMIT. */
int store_pg_commit_change(struct pgs_conn *c);
int store_pg_change_begin(struct pgs_conn *c);
int store_pg_change_end(struct pgs_conn *c, int rc);
int store_pg_audit_ops(struct pgs_conn *c, const struct store_op *ops, size_t n);

int store_pg_task_create(void *impl, const char *tenant, const char *task_id,
                         const char *project_id, const json_t *request,
                         const struct session_new *sessions, size_t n, int64_t now);
int store_pg_session_get(void *impl, const char *tenant, const char *id,
                         struct session_row **ret);
int store_pg_session_list(void *impl, const char *tenant, const struct session_filter *f,
                          const struct page *pg, struct session_row ***ret, size_t *ret_n,
                          int64_t *ret_total);
int store_pg_session_list_live(void *impl, struct session_row ***ret, size_t *ret_n);
/* postgres_replicas.c (D46) */
void store_pg_set_replica(void *impl, const char *id);
/* A copy of this replica's id, taken under s->mu (the listener thread reads it too). */
void store_pg_replica_of(struct pgs *s, char out[STORE_REPLICA_MAX + 1]);
int store_pg_replica_beat(void *impl, int64_t lease_ms);
int store_pg_session_owner(void *impl, const char *tenant, const char *id,
                           char out[STORE_REPLICA_MAX + 1], bool *ret_alive);
int store_pg_adopt_orphans(void *impl, char ***ret, size_t *ret_n);
int store_pg_command_post(void *impl, const char *owner, const char *tenant,
                          const char *session_id, const char *cmd);
int store_pg_command_take(void *impl, json_t **ret);
int store_pg_on_commands(void *impl, void (*fn)(void *arg), void *arg);
int store_pg_session_purge(void *impl, const char *tenant, const char *id);
int store_pg_session_set_runtime(void *impl, const char *tenant, const char *id,
                                 const struct session_runtime *rt);
int store_pg_apply(void *impl, struct store_op *ops, size_t n);
int store_pg_event_list(void *impl, const char *tenant, const char *session_id,
                        const struct event_filter *f, const struct page *pg, json_t **ret_items,
                        int64_t *ret_total);
int store_pg_event_range(void *impl, const char *tenant, const char *session_id, int64_t after,
                         size_t limit, char ***ret_json, int64_t **ret_seq, size_t *ret_n);
int store_pg_idem_begin(void *impl, const char *tenant, const char *key, const char *hash,
                        int64_t now, int64_t max_age_ms, struct idem_row **ret_existing);
int store_pg_idem_finish(void *impl, const char *tenant, const char *key, int status,
                         const char *content_type, const char *body, size_t len);
int store_pg_idem_release(void *impl, const char *tenant, const char *key);
int store_pg_draft_create(void *impl, const char *tenant, const char *id, const json_t *body,
                          int64_t now);
int store_pg_draft_update(void *impl, const char *tenant, const char *id, json_t *members,
                          int64_t now, struct draft_row **ret);
int store_pg_draft_get(void *impl, const char *tenant, const char *id, struct draft_row **ret);
int store_pg_draft_delete(void *impl, const char *tenant, const char *id);
int store_pg_draft_list(void *impl, const char *tenant, const struct page *pg,
                        struct draft_row ***ret, size_t *ret_n, int64_t *ret_total);
/* postgres_fleet.c */
int store_pg_executor_put(void *impl, const char *id, const char *name, const char *facts,
                          int64_t now);
int store_pg_executor_seen(void *impl, const char *id, int64_t when);
int store_pg_executor_drain(void *impl, const char *id, bool drained);
int store_pg_executor_delete(void *impl, const char *id);
int store_pg_executor_list(void *impl, struct executor_row **ret, size_t *ret_n);
int store_pg_project_list(void *impl, const char *tenant, const struct page *pg,
                          struct project_row **ret, size_t *ret_n, int64_t *ret_total);
int store_pg_repo_list(void *impl, const char *tenant, const char *project_id,
                       struct repo_row **ret, size_t *ret_n);
int store_pg_watch(void *impl,
                   void (*fn)(void *arg, const char *tenant, const char *session_id, int64_t seq),
                   void *arg);
/* Ends the listener of store_pg_watch, if any (store_close). */
void store_pg_watch_stop(struct pgs *s);
bool store_pg_hears_changes(void *impl);

/* API keys and the audit log (postgres_auth.c) */
int store_pg_apikey_create(void *impl, const struct apikey_row *k, const struct audit_entry *audit);
int store_pg_apikey_get(void *impl, const char *id, struct apikey_row **ret);
int store_pg_apikey_list(void *impl, const char *tenant, const struct page *pg,
                   struct apikey_row ***ret, size_t *ret_n, int64_t *ret_total);
int store_pg_apikey_revoke(void *impl, const char *tenant, const char *id, int64_t now,
                     const struct audit_entry *audit);
int store_pg_apikey_touch(void *impl, const char *id, int64_t now);
int store_pg_apikey_count(void *impl, int64_t now, int64_t *ret);
int store_pg_apikey_ended(void *impl, int64_t since, int64_t now, char ***ret,
                          size_t *ret_n);
int store_pg_audit_append(void *impl, const struct audit_entry *e);
int store_pg_audit_list(void *impl, const char *tenant, const struct audit_filter *f,
                  const struct page *pg, json_t **ret_items, int64_t *ret_total);
int store_pg_audit_prune(void *impl, int64_t before, int64_t *ret_deleted);
int store_pg_websession_put(void *impl, const struct websession_row *r,
                        const struct audit_entry *audit);
int store_pg_websession_get(void *impl, const char *token_hash, struct websession_row **ret);
int store_pg_websession_take_login(void *impl, const char *token_hash, int64_t now,
                                struct websession_row **ret);
int store_pg_websession_finish(void *impl, const struct websession_row *r,
                            const struct audit_entry *audit);
int store_pg_websession_touch(void *impl, const char *id, int64_t now);
int store_pg_websession_revoke(void *impl, const char *id, int64_t now,
                            const struct audit_entry *audit);

/* postgres_archive.c (D47) */
int store_pg_archive_tables(void *impl, char ***ret, size_t *ret_n);
int store_pg_archive_read(void *impl, const char *table, int (*fn)(void *arg, json_t *row),
                          void *arg);
int store_pg_archive_count(void *impl, const char *table, int64_t *ret);
int store_pg_archive_write(void *impl, const char *table, json_t *rows,
                           struct ah_problem *reterr);

#endif
