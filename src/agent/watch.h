/*
 * watch.h — private to agent/: the recorder's workspace watcher (watch.c).
 */
#ifndef AH_EXEC_WATCH_H
#define AH_EXEC_WATCH_H

#include "internal.h"

struct watcher;
/* Called for each changed file: its path relative to the root, the line counts and what
 * happened ("created", "modified", "deleted"). */
typedef void (*watch_fn)(void *arg, const char *rel, const struct diff_stat *st, const char *what);

/* Watches root (recursively, .git excluded) and records the current content as the baseline. */
int watcher_open(const char *root, struct watcher **ret);
int watcher_fd(const struct watcher *w);
/* Handles what inotify has queued (non-blocking), calling cb per change. */
int watcher_poll(struct watcher *w, watch_fn cb, void *arg);
/* Walks the whole tree and reports anything inotify did not (overflow, the final check). */
int watcher_rescan(struct watcher *w, watch_fn cb, void *arg);
/* {files_changed, lines_added, lines_removed} between the baseline and now; NULL on OOM. */
json_t *watcher_changes(struct watcher *w);
void watcher_close(struct watcher *w);

#endif
