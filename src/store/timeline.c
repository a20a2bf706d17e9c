/*
 * timeline.c — the timeline's store calls (store.h "the timeline"), dispatched to the backend's
 * store_tl_ops (sqlite_timeline.c, postgres_timeline.c), and the row destructors both share.
 */
#include <stdlib.h>

#include "backend.h"

void fs_snapshot_rows_free(struct fs_snapshot_row *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].session_id);
        free(rows[i].id);
        free(rows[i].kind);
        free(rows[i].label);
        free(rows[i].description);
        free(rows[i].provider);
    }
    free(rows);
}

void moment_rows_free(struct moment_row *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].session_id);
        free(rows[i].id);
        free(rows[i].label);
        free(rows[i].description);
        free(rows[i].type);
    }
    free(rows);
}

void branch_rows_free(struct branch_row *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].session_id);
        free(rows[i].parent_session_id);
        free(rows[i].fs_snapshot_id);
        free(rows[i].name);
        free(rows[i].injected_message_id);
    }
    free(rows);
}

int store_fs_snapshot_add(struct store *st, const char *tenant, const char *session_id,
                          const struct fs_snapshot_row *r) {
    return st->ops->tl->snap_add(st->impl, tenant, session_id, r);
}

int store_fs_snapshot_list(struct store *st, const char *tenant, const char *session_id,
                           size_t limit, struct fs_snapshot_row **ret, size_t *ret_n) {
    return st->ops->tl->snap_list(st->impl, tenant, session_id, limit, ret, ret_n);
}

int store_fs_snapshot_find(struct store *st, const char *tenant, const char *id,
                           struct fs_snapshot_row **ret) {
    return st->ops->tl->snap_find(st->impl, tenant, id, ret);
}

int store_fs_snapshot_delete(struct store *st, const char *tenant, const char *session_id,
                             const char *id) {
    return st->ops->tl->snap_delete(st->impl, tenant, session_id, id);
}

int store_moment_add(struct store *st, const char *tenant, const char *session_id,
                     const struct moment_row *r) {
    return st->ops->tl->moment_add(st->impl, tenant, session_id, r);
}

int store_moment_list(struct store *st, const char *tenant, const char *session_id, size_t limit,
                      struct moment_row **ret, size_t *ret_n) {
    return st->ops->tl->moment_list(st->impl, tenant, session_id, limit, ret, ret_n);
}

int store_branch_create(struct store *st, const char *tenant, const char *task_id,
                        const char *project_id, const json_t *request,
                        const struct session_new *s, const struct branch_row *b, int64_t now) {
    return st->ops->tl->branch_create(st->impl, tenant, task_id, project_id, request, s, b, now);
}

int store_branch_list(struct store *st, const char *tenant, const char *parent_id,
                      struct branch_row **ret, size_t *ret_n) {
    return st->ops->tl->branch_list(st->impl, tenant, parent_id, ret, ret_n);
}

int store_branch_get(struct store *st, const char *tenant, const char *session_id,
                     struct branch_row **ret) {
    return st->ops->tl->branch_get(st->impl, tenant, session_id, ret);
}
