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
    struct conn conns[8];
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
/* Maps a SQLite result code to AH_E_* (0 for OK/ROW/DONE). */
int sq_code(int rc);

#endif
