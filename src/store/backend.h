/*
 * backend.h — private to store/: the operations a backend implements (curl's vtls idea).
 * store.c dispatches every public call through st->ops.
 */
#ifndef AH_STORE_BACKEND_H
#define AH_STORE_BACKEND_H

#include "store.h"

/* The owner of a pending claim (owner.c): this process, as "<boot id>:<pid>:<start time>". */
const char *store_owner_self(void);
enum store_owner {
    STORE_OWNER_SELF,      /* this process */
    STORE_OWNER_ALIVE,     /* another live process of this machine */
    STORE_OWNER_GONE,      /* a process of this machine (this boot) that has exited */
    STORE_OWNER_ELSEWHERE, /* another machine's, before a reboot, or unreadable */
};
enum store_owner store_owner_check(const char *owner);

/* A backend whose rows other processes change (PostgreSQL replicas) reports each change it hears
 * of to the versions of sessions as shown (store_session_version; NULL: any session may have
 * changed, e.g. after it could not hear for a while). */
void store_versions_changed(const char *session_id);

struct store_ops {
    const char *name;
    void (*close)(void *impl);
    bool (*ready)(void *impl);
    /* optional: one small durable write, 0 when the database takes writes (D50) */
    int (*probe_write)(void *impl);
    int (*schema_version)(void *impl, int *ret_version, int *ret_applied_now);
    int (*task_create)(void *impl, const char *tenant, const char *task_id,
                       const char *project_id, const json_t *request,
                       const struct session_new *sessions, size_t n, int64_t now);
    int (*session_get)(void *impl, const char *tenant, const char *id, struct session_row **ret);
    int (*session_list)(void *impl, const char *tenant, const struct session_filter *f,
                        const struct page *pg, struct session_row ***ret, size_t *ret_n,
                        int64_t *ret_total);
    int (*session_list_live)(void *impl, struct session_row ***ret, size_t *ret_n);
    int (*session_purge)(void *impl, const char *tenant, const char *id);
    int (*session_set_runtime)(void *impl, const char *tenant, const char *id,
                               const struct session_runtime *rt);
    int (*apply)(void *impl, struct store_op *ops, size_t n);
    int (*event_list)(void *impl, const char *tenant, const char *session_id,
                      const struct event_filter *f, const struct page *pg, json_t **ret_items,
                      int64_t *ret_total);
    int (*event_range)(void *impl, const char *tenant, const char *session_id, int64_t after,
                       size_t limit, char ***ret_json, int64_t **ret_seq, size_t *ret_n);
    int (*idem_begin)(void *impl, const char *tenant, const char *key, const char *hash,
                      int64_t now, int64_t max_age_ms, struct idem_row **ret_existing);
    int (*idem_finish)(void *impl, const char *tenant, const char *key, int status,
                       const char *content_type, const char *body, size_t len);
    int (*idem_release)(void *impl, const char *tenant, const char *key);
    int (*draft_create)(void *impl, const char *tenant, const char *id, const json_t *body,
                        int64_t now);
    int (*draft_update)(void *impl, const char *tenant, const char *id, json_t *members,
                        int64_t now, struct draft_row **ret);
    int (*draft_get)(void *impl, const char *tenant, const char *id, struct draft_row **ret);
    int (*draft_delete)(void *impl, const char *tenant, const char *id);
    int (*draft_list)(void *impl, const char *tenant, const struct page *pg,
                      struct draft_row ***ret, size_t *ret_n, int64_t *ret_total);
    int (*repo_list)(void *impl, const char *tenant, const char *project_id,
                     struct repo_row **ret, size_t *ret_n);
    int (*project_list)(void *impl, const char *tenant, const struct page *pg,
                        struct project_row **ret, size_t *ret_n, int64_t *ret_total);
    /* API keys and the audit log (sqlite_auth.c, postgres_auth.c) */
    int (*apikey_create)(void *impl, const struct apikey_row *k, const struct audit_entry *audit);
    int (*apikey_get)(void *impl, const char *id, struct apikey_row **ret);
    int (*apikey_list)(void *impl, const char *tenant, const struct page *pg,
                       struct apikey_row ***ret, size_t *ret_n, int64_t *ret_total);
    int (*apikey_revoke)(void *impl, const char *tenant, const char *id, int64_t now,
                         const struct audit_entry *audit);
    int (*apikey_touch)(void *impl, const char *id, int64_t now);
    int (*apikey_count)(void *impl, int64_t now, int64_t *ret);
    int (*apikey_ended)(void *impl, int64_t since, int64_t now, char ***ret, size_t *ret_n);
    int (*audit_append)(void *impl, const struct audit_entry *e);
    /* the fleet (sqlite_fleet.c, postgres_fleet.c) */
    int (*executor_put)(void *impl, const char *id, const char *name, const char *facts,
                        int64_t now);
    int (*executor_seen)(void *impl, const char *id, int64_t when);
    int (*executor_drain)(void *impl, const char *id, bool drained);
    int (*executor_delete)(void *impl, const char *id);
    int (*executor_list)(void *impl, struct executor_row **ret, size_t *ret_n);
    int (*audit_list)(void *impl, const char *tenant, const struct audit_filter *f,
                      const struct page *pg, json_t **ret_items, int64_t *ret_total);
    int (*audit_prune)(void *impl, int64_t before, int64_t *ret_deleted);
    /* True while every change of another process reaches store_versions_changed, so versions
     * (and the read cache built on them) can be trusted; NULL: this process is the one writer. */
    bool (*hears_changes)(void *impl);
    /* web sessions (sqlite_auth.c, postgres_auth.c) */
    int (*websession_put)(void *impl, const struct websession_row *r,
                          const struct audit_entry *audit);
    int (*websession_get)(void *impl, const char *token_hash, struct websession_row **ret);
    int (*websession_take_login)(void *impl, const char *token_hash, int64_t now,
                                 struct websession_row **ret);
    int (*websession_finish)(void *impl, const struct websession_row *r,
                             const struct audit_entry *audit);
    int (*websession_touch)(void *impl, const char *id, int64_t now);
    int (*websession_revoke)(void *impl, const char *id, int64_t now,
                             const struct audit_entry *audit);
    /* NULL when the backend has no notices (store_watch answers AH_E_NOTIMPL) */
    int (*watch)(void *impl,
                 void (*fn)(void *arg, const char *tenant, const char *session_id, int64_t seq),
                 void *arg);
    const struct store_tl_ops *tl; /* the timeline (sqlite_timeline.c, postgres_timeline.c) */
    /* Replicas (D46); all NULL on a backend one process owns (store.c answers for it). */
    void (*set_replica)(void *impl, const char *id);
    int (*replica_beat)(void *impl, int64_t lease_ms);
    int (*session_owner)(void *impl, const char *tenant, const char *id,
                         char out[STORE_REPLICA_MAX + 1], bool *ret_alive);
    int (*adopt_orphans)(void *impl, char ***ret, size_t *ret_n);
    int (*command_post)(void *impl, const char *owner, const char *tenant,
                        const char *session_id, const char *cmd);
    int (*command_take)(void *impl, json_t **ret);
    int (*on_commands)(void *impl, void (*fn)(void *arg), void *arg);
    /* Export and import (archive.c; D47): the tables that hold data, in creation order (so
     * referenced tables come first); every row of one as a canonical object (archive.h's value
     * rules) handed to fn; how many rows one has; and a batch of such rows inserted in one
     * transaction. */
    int (*archive_tables)(void *impl, char ***ret, size_t *ret_n);
    int (*archive_read)(void *impl, const char *table, int (*fn)(void *arg, json_t *row),
                        void *arg);
    int (*archive_count)(void *impl, const char *table, int64_t *ret);
    int (*archive_write)(void *impl, const char *table, json_t *rows,
                         struct ah_problem *reterr);
};

/* The timeline's operations (store.h "the timeline"; dispatched by timeline.c). */
struct store_tl_ops {
    int (*snap_add)(void *impl, const char *tenant, const char *session_id,
                    const struct fs_snapshot_row *r);
    int (*snap_list)(void *impl, const char *tenant, const char *session_id, size_t limit,
                     struct fs_snapshot_row **ret, size_t *ret_n);
    int (*snap_find)(void *impl, const char *tenant, const char *id, struct fs_snapshot_row **ret);
    int (*snap_delete)(void *impl, const char *tenant, const char *session_id, const char *id);
    int (*moment_add)(void *impl, const char *tenant, const char *session_id,
                      const struct moment_row *r);
    int (*moment_list)(void *impl, const char *tenant, const char *session_id, size_t limit,
                       struct moment_row **ret, size_t *ret_n);
    int (*branch_create)(void *impl, const char *tenant, const char *task_id,
                         const char *project_id, const json_t *request,
                         const struct session_new *s, const struct branch_row *b, int64_t now);
    int (*branch_list)(void *impl, const char *tenant, const char *parent_id,
                       struct branch_row **ret, size_t *ret_n);
    int (*branch_get)(void *impl, const char *tenant, const char *session_id,
                      struct branch_row **ret);
};
extern const struct store_tl_ops store_sqlite_tl_ops, store_pg_tl_ops;

struct store {
    const struct store_ops *ops;
    void *impl;
    char replica[STORE_REPLICA_MAX + 1];
    int write_fault;       /* D50: the last write failed for want of space or disk (atomic) */
    int64_t next_probe_ms; /* when store_writable may try a probe write again (atomic) */
};

/* archive.c: the value rules both backends follow. Tables and columns that describe running
 * replicas rather than the installation are never exported. */
bool store_archive_skip_table(const char *table);
bool store_archive_skip_column(const char *table, const char *column);
/* bytes → {"$bytes": base64}; NULL on OOM. A text value that is not UTF-8 is stored so too. */
json_t *store_archive_bytes(const void *p, size_t n);
/* The bytes of a {"$bytes": …} value (caller frees *ret); AH_E_INVAL when it is not one. */
int store_archive_unbytes(const json_t *v, unsigned char **ret, size_t *ret_n);

/* sqlite.c */
int store_sqlite_open(const char *path, void **ret_impl, struct ah_problem *reterr);
extern const struct store_ops store_sqlite_ops;
/* sqlite_backup.c: store_backup for a database file */
int store_sqlite_backup(const char *path, const char *dest, json_t **ret_summary,
                        struct ah_problem *reterr);

/* postgres.c: `url` is a libpq connection URI (postgres:// or postgresql://). */
int store_pg_open(const char *url, void **ret_impl, struct ah_problem *reterr);
extern const struct store_ops store_pg_ops;

/* Migrations embedded at build time (src/store/migrations/NNN_name.sql, sorted by name), and
 * the PostgreSQL ones (src/store/migrations-pg/, numbered alike). */
extern const struct embedded_file store_migrations[];
extern const struct embedded_file store_pg_migrations[];

#endif
