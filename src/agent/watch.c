/*
 * watch.c — the recorder's view of the workspace: inotify on every directory (except .git) and
 * a shadow copy of each text file's last known content, so a change becomes a `file_edit` event
 * with the lines added and removed (counted by libgit2, diff.c). The first content seen of each
 * file is kept too, which gives the session's net change statistics at the end.
 *
 * Limits (every size is capped): files above WATCH_MAX_FILE are tracked by size only (their
 * edits report 0/0 lines); the shadow holds at most WATCH_MAX_SHADOW bytes in total, after which
 * new files are tracked by size only; at most WATCH_MAX_FILES files and WATCH_MAX_DIRS
 * directories. An inotify overflow triggers a full rescan, so no change is missed for good.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "watch.h"

#define WATCH_MAX_FILE (1024 * 1024)
#define WATCH_MAX_SHADOW (256u * 1024 * 1024)
#define WATCH_MAX_FILES 200000
#define WATCH_MAX_DIRS 50000
#define WATCH_BUCKETS 4096

struct shadow {
    struct shadow *next;
    char *rel;
    char *content; /* last known content, NULL when unknown (too big, binary, unreadable) */
    size_t len;
    bool exists;
    bool changed;  /* differs from the first version seen at some point */
    bool had_initial;
    char *initial; /* content when first seen (kept once the file changes) */
    size_t initial_len;
    bool initial_exists;
};

struct dirwatch {
    int wd;
    char *rel; /* "" for the root */
};

struct watcher {
    char *root;
    int root_fd; /* the workspace, for reads confined beneath it */
    int fd;
    struct shadow *buckets[WATCH_BUCKETS];
    size_t n_files, shadow_bytes;
    struct dirwatch *dirs;
    size_t n_dirs, cap_dirs;
};

static unsigned hash(const char *s) {
    unsigned h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h % WATCH_BUCKETS;
}

static struct shadow *find(struct watcher *w, const char *rel) {
    for (struct shadow *s = w->buckets[hash(rel)]; s; s = s->next)
        if (strcmp(s->rel, rel) == 0)
            return s;
    return NULL;
}

static struct shadow *add(struct watcher *w, const char *rel) {
    if (w->n_files >= WATCH_MAX_FILES)
        return NULL;
    struct shadow *s = calloc(1, sizeof(*s));
    if (!s || !(s->rel = strdup(rel))) {
        free(s);
        return NULL;
    }
    unsigned h = hash(rel);
    s->next = w->buckets[h];
    w->buckets[h] = s;
    w->n_files++;
    return s;
}

static void path_of(const struct watcher *w, const char *rel, char *out, size_t n) {
    snprintf(out, n, "%s%s%s", w->root, *rel ? "/" : "", rel);
}

/* Reads a file for the shadow: NULL content when it is too big or the budget is spent. */
/* The file is opened beneath the workspace without following any symlink (issue 10 item 17):
 * a link the agent or the repository planted, to /etc/shadow say, is seen as a link and its
 * target's content never reaches a diff event. */
static int load(struct watcher *w, const char *rel, char **ret, size_t *ret_len, bool *ret_exists) {
    char path[8192];
    path_of(w, rel, path, sizeof(path));
    struct stat st;
    *ret = NULL;
    *ret_len = 0;
    if (lstat(path, &st) < 0) {
        *ret_exists = false;
        return 0;
    }
    *ret_exists = true;
    if (!S_ISREG(st.st_mode) || st.st_size > WATCH_MAX_FILE ||
        w->shadow_bytes + (size_t)st.st_size > WATCH_MAX_SHADOW || w->root_fd < 0)
        return 0;
    int fd = open_beneath(w->root_fd, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0, true);
    if (fd < 0)
        return 0;
    struct ah_buf b = {.max = WATCH_MAX_FILE};
    char chunk[65536];
    ssize_t n;
    int rc = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? 0 : AH_E_INVAL; /* swapped meanwhile */
    while (rc == 0 && ((n = read(fd, chunk, sizeof(chunk))) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0)
            rc = ah_buf_append(&b, chunk, (size_t)n);
    close(fd);
    if (rc < 0) {
        ah_buf_clear(&b);
        return 0;
    }
    *ret_len = b.n;
    *ret = ah_buf_steal(&b);
    return 0;
}

static bool is_ignored(const char *name) {
    return strcmp(name, ".git") == 0;
}

static int watch_dir(struct watcher *w, const char *rel, bool initial);
static void rescan_dir(struct watcher *w, const char *rel, watch_fn cb, void *arg);

/* Records a file seen for the first time during a scan (no event). */
static void baseline(struct watcher *w, const char *rel) {
    if (find(w, rel))
        return;
    struct shadow *s = add(w, rel);
    if (!s)
        return;
    load(w, rel, &s->content, &s->len, &s->exists);
    if (s->content)
        w->shadow_bytes += s->len;
}

/* The initial walk: watch every directory and take every file's content as the baseline. */
static void scan(struct watcher *w, const char *rel) {
    char path[8192];
    path_of(w, rel, path, sizeof(path));
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || is_ignored(e->d_name))
            continue;
        char child[8192];
        snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        char full[8192];
        path_of(w, child, full, sizeof(full));
        struct stat st;
        if (lstat(full, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode))
            watch_dir(w, child, true);
        else
            baseline(w, child);
    }
    closedir(d);
}

/* Adds an inotify watch on rel. At start (initial) its files become the baseline; a directory
 * that appears later is walked by the caller, which reports its files as created. */
static int watch_dir(struct watcher *w, const char *rel, bool initial) {
    for (size_t i = 0; i < w->n_dirs; i++)
        if (strcmp(w->dirs[i].rel, rel) == 0)
            return 0;
    if (w->n_dirs >= WATCH_MAX_DIRS)
        return AH_E_TOOLARGE;
    char path[8192];
    path_of(w, rel, path, sizeof(path));
    int wd = inotify_add_watch(w->fd, path,
                               IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                   IN_MOVED_TO | IN_DONT_FOLLOW | IN_ONLYDIR);
    if (wd < 0)
        return ah_err_from_errno(errno);
    if (w->n_dirs == w->cap_dirs) {
        size_t cap = w->cap_dirs ? w->cap_dirs * 2 : 64;
        struct dirwatch *nd = realloc(w->dirs, cap * sizeof(*nd));
        if (!nd)
            return AH_E_NOMEM;
        w->dirs = nd;
        w->cap_dirs = cap;
    }
    char *copy = strdup(rel);
    if (!copy)
        return AH_E_NOMEM;
    w->dirs[w->n_dirs++] = (struct dirwatch){wd, copy};
    if (initial)
        scan(w, rel);
    return 0;
}

int watcher_open(const char *root, struct watcher **ret) {
    struct watcher *w = calloc(1, sizeof(*w));
    if (!w)
        return AH_E_NOMEM;
    w->fd = w->root_fd = -1;
    w->root = strdup(root);
    w->root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (!w->root || w->fd < 0) {
        watcher_close(w);
        return w->fd < 0 ? ah_err_from_errno(errno) : AH_E_NOMEM;
    }
    int rc = watch_dir(w, "", true);
    if (rc < 0) {
        watcher_close(w);
        return rc;
    }
    *ret = w;
    return 0;
}

int watcher_fd(const struct watcher *w) {
    return w->fd;
}

static void check(struct watcher *w, const char *rel, watch_fn cb, void *arg);

/* rel is gone and was no file we knew: when it was a directory (moved away or removed whole,
 * which inotify reports for the directory alone), every file we knew under it is checked, so
 * each becomes a deletion. The server names exactly these paths in its next snapshot. */
static void check_gone_dir(struct watcher *w, const char *rel, watch_fn cb, void *arg) {
    size_t n = strlen(rel), cap = 0, k = 0;
    char **under = NULL;
    for (size_t b = 0; b < WATCH_BUCKETS; b++)
        for (struct shadow *s = w->buckets[b]; s; s = s->next) {
            if (!s->exists || strncmp(s->rel, rel, n) != 0 || s->rel[n] != '/')
                continue;
            if (k == cap) {
                char **v = realloc(under, (cap = cap ? 2 * cap : 16) * sizeof(*v));
                if (!v)
                    goto out;
                under = v;
            }
            if (!(under[k] = strdup(s->rel)))
                goto out;
            k++;
        }
out:
    for (size_t i = 0; i < k; i++) {
        check(w, under[i], cb, arg);
        free(under[i]);
    }
    free(under);
}

/* Compares a file with its shadow and reports a change. */
static void check(struct watcher *w, const char *rel, watch_fn cb, void *arg) {
    struct shadow *s = find(w, rel);
    char *content = NULL;
    size_t len = 0;
    bool exists = false;
    load(w, rel, &content, &len, &exists);
    char path[8192];
    path_of(w, rel, path, sizeof(path));
    struct stat st;
    if (exists && lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        free(content);
        /* a new directory: watch it first, then report what is already inside (files created
         * before the watch existed would otherwise go unnoticed until the final rescan) */
        watch_dir(w, rel, false);
        rescan_dir(w, rel, cb, arg);
        return;
    }
    if (!s) {
        if (!exists) {
            free(content);
            check_gone_dir(w, rel, cb, arg);
            return;
        }
        s = add(w, rel);
        if (!s) {
            free(content);
            return;
        }
        s->exists = false; /* it did not exist before: a creation */
    }
    bool same = s->exists == exists && s->content && content && s->len == len &&
                memcmp(s->content, content, len) == 0;
    if (same || (!s->exists && !exists)) {
        free(content);
        return;
    }
    struct diff_stat ds = {0};
    if ((s->content || !s->exists) && (content || !exists))
        diff_count(s->exists ? s->content : NULL, s->len, exists ? content : NULL, len, &ds);
    const char *what = !s->exists ? "created" : !exists ? "deleted" : "modified";
    if (!s->had_initial) { /* keep the first version for the net statistics */
        s->had_initial = true;
        s->initial = s->content;
        s->initial_len = s->len;
        s->initial_exists = s->exists;
    } else if (s->content) {
        w->shadow_bytes -= s->len;
        free(s->content);
    }
    s->content = content;
    s->len = len;
    s->exists = exists;
    s->changed = true;
    if (content)
        w->shadow_bytes += len;
    cb(arg, rel, &ds, what);
}

int watcher_poll(struct watcher *w, watch_fn cb, void *arg) {
    _Alignas(struct inotify_event) char buf[65536];
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof(buf));
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : ah_err_from_errno(errno);
        if (n == 0)
            return 0;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                watcher_rescan(w, cb, arg);
                continue;
            }
            if (!ev->len || is_ignored(ev->name))
                continue;
            const char *dir = NULL;
            for (size_t i = 0; i < w->n_dirs; i++)
                if (w->dirs[i].wd == ev->wd)
                    dir = w->dirs[i].rel;
            if (!dir)
                continue;
            char rel[8192];
            snprintf(rel, sizeof(rel), "%s%s%s", dir, *dir ? "/" : "", ev->name);
            /* a file created empty and written later reports on close; a bare create of a
             * regular file is not a change yet. A symlink has no close: its create is the
             * change (the server names this path in its next snapshot) */
            struct stat cst;
            char cpath[8192];
            path_of(w, rel, cpath, sizeof(cpath));
            if ((ev->mask & IN_CREATE) && !(ev->mask & IN_ISDIR) &&
                !(lstat(cpath, &cst) == 0 && S_ISLNK(cst.st_mode)))
                continue;
            check(w, rel, cb, arg);
        }
    }
}

static void rescan_dir(struct watcher *w, const char *rel, watch_fn cb, void *arg) {
    char path[8192];
    path_of(w, rel, path, sizeof(path));
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || is_ignored(e->d_name))
            continue;
        char child[8192], full[8192];
        snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        path_of(w, child, full, sizeof(full));
        struct stat st;
        if (lstat(full, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            watch_dir(w, child, false);
            rescan_dir(w, child, cb, arg);
        } else {
            check(w, child, cb, arg);
        }
    }
    closedir(d);
}

int watcher_rescan(struct watcher *w, watch_fn cb, void *arg) {
    rescan_dir(w, "", cb, arg);
    /* files that vanished without an event we saw */
    for (size_t b = 0; b < WATCH_BUCKETS; b++)
        for (struct shadow *s = w->buckets[b]; s; s = s->next)
            if (s->exists) {
                char full[8192];
                struct stat st;
                path_of(w, s->rel, full, sizeof(full));
                if (lstat(full, &st) < 0)
                    check(w, s->rel, cb, arg);
            }
    return 0;
}

json_t *watcher_changes(struct watcher *w) {
    int64_t files = 0, added = 0, removed = 0;
    for (size_t b = 0; b < WATCH_BUCKETS; b++)
        for (struct shadow *s = w->buckets[b]; s; s = s->next) {
            if (!s->changed)
                continue;
            const char *before = s->initial_exists ? s->initial : NULL;
            const char *after = s->exists ? s->content : NULL;
            if (s->initial_exists == s->exists && before && after && s->initial_len == s->len &&
                memcmp(before, after, s->len) == 0)
                continue; /* changed and changed back */
            if (!s->initial_exists && !s->exists)
                continue; /* created and deleted again */
            files++;
            struct diff_stat ds = {0};
            if ((before || !s->initial_exists) && (after || !s->exists) &&
                diff_count(before, s->initial_len, after, s->len, &ds) == 0) {
                added += ds.added;
                removed += ds.removed;
            }
        }
    return json_pack("{s:I, s:I, s:I}", "files_changed", (json_int_t)files, "lines_added",
                     (json_int_t)added, "lines_removed", (json_int_t)removed);
}

void watcher_close(struct watcher *w) {
    if (!w)
        return;
    for (size_t b = 0; b < WATCH_BUCKETS; b++)
        for (struct shadow *s = w->buckets[b], *next; s; s = next) {
            next = s->next;
            free(s->rel);
            free(s->content);
            free(s->initial);
            free(s);
        }
    for (size_t i = 0; i < w->n_dirs; i++)
        free(w->dirs[i].rel);
    free(w->dirs);
    if (w->fd >= 0)
        close(w->fd);
    if (w->root_fd >= 0)
        close(w->root_fd);
    free(w->root);
    free(w);
}
