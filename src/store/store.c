/*
 * store.c — picks the backend from the URL and dispatches every call through its ops.
 */
#include <string.h>

#include "backend.h"

int store_open(const char *url, struct store **ret, struct ah_problem *reterr) {
    if (!url || !*url)
        return problem_set(reterr, AH_E_INVAL, "no database given");
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return problem_set(reterr, AH_E_NOTIMPL,
                           "the PostgreSQL backend is not part of this build yet; use a SQLite "
                           "path or :memory:");
    const char *path = strncmp(url, "sqlite:", 7) == 0 ? url + 7 : url;
    struct store *st = calloc(1, sizeof(*st));
    if (!st)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    int rc = store_sqlite_open(path, &st->impl, reterr);
    if (rc < 0) {
        free(st);
        return rc;
    }
    st->ops = &store_sqlite_ops;
    *ret = st;
    return 0;
}

void store_close(struct store *st) {
    if (!st)
        return;
    st->ops->close(st->impl);
    free(st);
}

bool store_ready(struct store *st) {
    return st && st->ops->ready(st->impl);
}

int store_schema_version(struct store *st, int *ret_version, int *ret_applied_now) {
    return st->ops->schema_version(st->impl, ret_version, ret_applied_now);
}
