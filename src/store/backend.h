/*
 * backend.h — private to store/: the operations a backend implements (curl's vtls idea).
 * store.c dispatches every public call through st->ops.
 */
#ifndef AH_STORE_BACKEND_H
#define AH_STORE_BACKEND_H

#include "store.h"

struct store_ops {
    const char *name;
    void (*close)(void *impl);
    bool (*ready)(void *impl);
    int (*schema_version)(void *impl, int *ret_version, int *ret_applied_now);
};

struct store {
    const struct store_ops *ops;
    void *impl;
};

/* sqlite.c */
int store_sqlite_open(const char *path, void **ret_impl, struct ah_problem *reterr);
extern const struct store_ops store_sqlite_ops;

/* Migrations embedded at build time (src/store/migrations/NNN_name.sql, sorted by name). */
struct embedded_file {
    const char *name;
    const char *data;
    size_t size;
};
extern const struct embedded_file store_migrations[];

#endif
