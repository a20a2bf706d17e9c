/*
 * internal.h — what the files of src/workspace/ share; nothing outside the folder includes it.
 */
#ifndef AH_WORKSPACE_INTERNAL_H
#define AH_WORKSPACE_INTERNAL_H

#include <git2.h>
#include <sys/stat.h>

#include "workspace.h"

struct ws_store {
    git_repository *repo;
    git_odb *odb;
    char *dir;
};

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

/* git's quote_c_style with core.quotePath=true: appends s, quoted when it needs it, with
 * `prefix` (e.g. "a/") inside the quotes. */
int ws_quote_path(struct ah_buf *b, const char *prefix, const char *s);

/* Appends s[0..n) with every invalid UTF-8 sequence replaced by U+FFFD. */
int ws_utf8_sanitise(struct ah_buf *b, const char *s, size_t n);

/* The similarity metric of git's rename detection (diffcore-delta: 64-byte/line chunk hashes). */
extern git_diff_similarity_metric ws_git_metric;

#endif
