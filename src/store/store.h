/*
 * store.h — the persistence interface. One struct of function pointers (struct store_ops) with
 * one backend per database: sqlite.c, the embedded default. Handlers never see SQL.
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

#include "../core/core.h"

struct store;

/* Opens the store named by `url`: a file path, ":memory:", or "sqlite:<path>". Creates the file
 * and its directory when missing, applies pending migrations in one transaction and records the
 * schema version. A postgres:// URL is refused with AH_E_NOTIMPL for now. On failure *ret is
 * untouched and reterr says why. */
int store_open(const char *url, struct store **ret, struct ah_problem *reterr);
void store_close(struct store *st); /* NULL-safe */
AH_DEFINE_CLEANUP(struct store, store_close)

/* True once the store is open and answers a trivial query. */
bool store_ready(struct store *st);
/* The highest migration applied and how many migrations were applied by this open. */
int store_schema_version(struct store *st, int *ret_version, int *ret_applied_now);

#endif
