/*
 * internal.h — what the files of src/workspace/ share; nothing outside the folder includes it.
 */
#ifndef AH_WORKSPACE_INTERNAL_H
#define AH_WORKSPACE_INTERNAL_H

#include <git2.h>
#include <sys/stat.h>

#include "workspace.h"

struct ahpack;

struct ws_store {
    git_repository *repo;
    git_odb *odb;
    char *dir;
    struct ahpack *pack; /* this store's pack backend (pack.c), owned by odb */
};

/* A query parameter of a read (ws_ask), NULL when absent. */
static inline const char *ws_ask_param(const struct ws_ask *a, const char *name) {
    return json_string_value(json_object_get(a->query, name));
}

/* files/search (search.c), for ws_ask_check and ws_answer (answer.c). */
int ws_search_check(const struct ws_ask *a, struct ah_problem *p);
void ws_search_answer(struct ws_store *st, const char *to, const struct ws_ask *a,
                      struct ws_reply *r);

/* workspace/files and workspace/search/files (tree_answer.c). */
int ws_tree_check(const struct ws_ask *a, struct ah_problem *p);
void ws_tree_answer(struct ws_store *st, const struct ws_points *pt, const struct ws_ask *a,
                    struct ws_reply *r);
void ws_paths_answer(struct ws_store *st, const struct ws_points *pt, const struct ws_ask *a,
                     struct ws_reply *r);

/* git_libgit2_init once per process. */
void ws_git_init(void);
/* Maps a libgit2 error code to AH_E_*. */
int ws_git_err(int rc);

/* The root tree of a snapshot (NULL / "" → *ret = NULL, the empty tree). */
int ws_resolve_tree(struct ws_store *st, const char *snap, git_tree **ret);

/* The stat cache of a store (store.c), written by a checkout that knows what it wrote:
 * ws_cache_begin starts it for workdir, ws_cache_add appends the entry of the file at the
 * relative path (lstat data sb, blob oid; racy: hash it again next time), ws_cache_save replaces
 * the store's cache with it. 0 or AH_E_*. */
int ws_cache_begin(struct ah_buf *b, const char *workdir);
int ws_cache_add(struct ah_buf *b, const char *path, const struct stat *sb, const git_oid *oid,
                 bool racy);
int ws_cache_save(struct ws_store *st, const struct ah_buf *b);
/* Writes a cache to a file of its own (an overlay layer's, adopted later by ws_snapshot_as). */
int ws_cache_write(const char *path, const struct ah_buf *b);

/* The pack of small objects (pack.c). ws_pack_attach adds it to a freshly opened store (and a
 * read-only one for each alternate it borrows from); ws_pack_attach_alternate for an alternate
 * added later. ws_pack_added_bytes: the bytes an object takes in this store's own pack, 0 when
 * it is not there. ws_pack_gc rewrites the pack without the objects keep() does not claim
 * whose time is at or before cutoff_s; the bytes that left the pack go to ret_freed. */
int ws_pack_attach(struct ws_store *st);
int ws_pack_attach_alternate(struct ws_store *st, const char *objects_dir);
uint64_t ws_pack_added_bytes(struct ws_store *st, const git_oid *oid);
int ws_pack_gc(struct ws_store *st, bool (*keep)(void *ctx, const git_oid *oid), void *ctx,
               int64_t cutoff_s, uint64_t *ret_freed);

/* git's quote_c_style with core.quotePath=true: appends s, quoted when it needs it, with
 * `prefix` (e.g. "a/") inside the quotes. */
int ws_quote_path(struct ah_buf *b, const char *prefix, const char *s);

/* Appends s[0..n) with every invalid UTF-8 sequence replaced by U+FFFD. */
int ws_utf8_sanitise(struct ah_buf *b, const char *s, size_t n);

/* The similarity metric of git's rename detection (diffcore-delta: 64-byte/line chunk hashes). */
extern git_diff_similarity_metric ws_git_metric;

#endif
