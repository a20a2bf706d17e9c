/*
 * count.c — line statistics of a change, computed by libgit2's git_diff_buffers (the diff library
 * we chose; it agrees with `git diff --numstat`).
 */
#include <git2.h>
#include <pthread.h>
#include <string.h>

#include "internal.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init(void) {
    git_libgit2_init();
}

static int on_line(const git_diff_delta *d, const git_diff_hunk *h, const git_diff_line *l,
                   void *payload) {
    (void)d;
    (void)h;
    struct diff_stat *st = payload;
    if (l->origin == GIT_DIFF_LINE_ADDITION)
        st->added++;
    else if (l->origin == GIT_DIFF_LINE_DELETION)
        st->removed++;
    return 0;
}

static int on_binary(const git_diff_delta *d, const git_diff_binary *b, void *payload) {
    (void)d;
    (void)b;
    ((struct diff_stat *)payload)->binary = true;
    return 0;
}

int diff_count(const char *old, size_t old_len, const char *new_text, size_t new_len,
               struct diff_stat *ret) {
    pthread_once(&init_once, init);
    struct diff_stat st = {0};
    git_diff_options opts;
    git_diff_options_init(&opts, GIT_DIFF_OPTIONS_VERSION);
    opts.context_lines = 0;
    int rc = git_diff_buffers(old, old ? old_len : 0, "a", new_text, new_text ? new_len : 0, "b",
                              &opts, NULL, on_binary, NULL, on_line, &st);
    if (rc < 0)
        return AH_E_INTERNAL;
    *ret = st;
    return 0;
}
