/*
 * checkout.c — the timeline's uses of the object store (D33, D34): what one snapshot added to
 * the store on disk, writing a snapshot out as a directory (a seek's read-only view, a branch's
 * workspace), and sharing one store's objects and snapshots with another (a branch's store
 * borrows its parent's objects through git's alternates, so both read each other's snapshots
 * without a copy).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* The size of an object of st: its loose file, or its record in st's pack; 0 when it is in
 * neither (an alternate's). */
static uint64_t loose_size(struct ws_store *st, const git_oid *oid) {
    char hex[GIT_OID_HEXSZ + 1], path[4400];
    git_oid_tostr(hex, sizeof(hex), oid);
    snprintf(path, sizeof(path), "%s/objects/%.2s/%s", st->dir, hex, hex + 2);
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : ws_pack_added_bytes(st, oid);
}

struct added {
    struct ws_store *st;
    git_tree *tree;
    uint64_t bytes;
    char **dirs; /* directories already counted */
    size_t ndirs, cap;
};

static bool seen_dir(struct added *a, const char *d, size_t n) {
    for (size_t i = 0; i < a->ndirs; i++)
        if (strlen(a->dirs[i]) == n && memcmp(a->dirs[i], d, n) == 0)
            return true;
    if (a->ndirs == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        char **v = realloc(a->dirs, cap * sizeof(*v));
        if (!v)
            return true; /* under-count rather than fail */
        a->dirs = v;
        a->cap = cap;
    }
    char *c = strndup(d, n);
    if (!c)
        return true;
    a->dirs[a->ndirs++] = c;
    return false;
}

/* Counts the trees on the way to path (the root is counted by the caller). */
static void count_dirs(struct added *a, const char *path) {
    for (const char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
        size_t n = (size_t)(s - path);
        if (seen_dir(a, path, n))
            continue;
        char dir[WS_PATH_MAX + 1];
        if (n > WS_PATH_MAX)
            return;
        memcpy(dir, path, n);
        dir[n] = '\0';
        git_tree_entry *e = NULL;
        if (git_tree_entry_bypath(&e, a->tree, dir) == 0) {
            a->bytes += loose_size(a->st, git_tree_entry_id(e));
            git_tree_entry_free(e);
        }
    }
}

int ws_snapshot_added_bytes(struct ws_store *st, const char *id, uint64_t *ret_bytes) {
    git_tree *tree = NULL, *ptree = NULL;
    struct ws_snapshot_info info = {0};
    int rc = ws_snapshot_info(st, id, &info);
    if (rc < 0)
        return rc;
    if ((rc = ws_resolve_tree(st, id, &tree)) < 0 ||
        (info.parent[0] && (rc = ws_resolve_tree(st, info.parent, &ptree)) < 0)) {
        ws_snapshot_info_clear(&info);
        git_tree_free(tree);
        return rc;
    }
    struct added a = {.st = st, .tree = tree};
    git_diff *diff = NULL;
    if (git_diff_tree_to_tree(&diff, st->repo, ptree, tree, NULL) < 0) {
        rc = AH_E_IO;
        goto out;
    }
    size_t n = git_diff_num_deltas(diff);
    if (n) {
        a.bytes += loose_size(st, git_tree_id(tree)); /* a change makes a new root tree */
        for (size_t i = 0; i < n; i++) {
            const git_diff_delta *d = git_diff_get_delta(diff, i);
            if (d->status != GIT_DELTA_DELETED)
                a.bytes += loose_size(st, &d->new_file.id);
            count_dirs(&a, d->new_file.path ? d->new_file.path : d->old_file.path);
        }
    }
    /* the commit itself */
    git_oid oid;
    char refname[64];
    snprintf(refname, sizeof(refname), "refs/ah/snapshots/%s", id);
    if (git_reference_name_to_id(&oid, st->repo, refname) == 0)
        a.bytes += loose_size(st, &oid);
    *ret_bytes = a.bytes;
out:
    for (size_t i = 0; i < a.ndirs; i++)
        free(a.dirs[i]);
    free(a.dirs);
    git_diff_free(diff);
    git_tree_free(ptree);
    git_tree_free(tree);
    ws_snapshot_info_clear(&info);
    return rc;
}

/* ---- writing a snapshot out ------------------------------------------------------------------ */

struct co {
    struct ws_store *st;
    int root;
    bool readonly;
    uint64_t files;
    int rc;
    struct ah_buf *cache;  /* ws_checkout_seeded: the stat cache being written, else NULL */
    struct timespec mtime; /* the seeded files' mtime */
};

/* A seeded checkout's cache entry for the file just written at path: its mtime set in the past
 * (an entry whose mtime cannot be set is racy: hashed again by the next snapshot). */
static int seed(struct co *c, const char *path, int fd, const git_oid *oid) {
    const struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}, c->mtime};
    bool racy = (fd >= 0 ? futimens(fd, times)
                         : utimensat(c->root, path, times, AT_SYMLINK_NOFOLLOW)) < 0;
    struct stat sb;
    int rc = fd >= 0 ? fstat(fd, &sb) : fstatat(c->root, path, &sb, AT_SYMLINK_NOFOLLOW);
    if (rc < 0)
        return ah_err_from_errno(errno);
    return ws_cache_add(c->cache, path, &sb, oid, racy);
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return ah_err_from_errno(w < 0 ? errno : EIO);
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int co_cb(const char *root, const git_tree_entry *te, void *payload) {
    struct co *c = payload;
    const char *name = git_tree_entry_name(te);
    if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..") ||
        !strcmp(name, ".git")) {
        c->rc = AH_E_INVAL; /* never in a store we wrote; refuse rather than escape */
        return -1;
    }
    char path[WS_PATH_MAX * 2 + 2];
    int len = snprintf(path, sizeof(path), "%s%s", root, name);
    if (len < 0 || (size_t)len >= sizeof(path)) {
        c->rc = AH_E_INVAL;
        return -1;
    }
    git_filemode_t mode = git_tree_entry_filemode(te);
    if (mode == GIT_FILEMODE_TREE) {
        if (mkdirat(c->root, path, 0755) < 0 && errno != EEXIST) {
            c->rc = ah_err_from_errno(errno);
            return -1;
        }
        return 0;
    }
    if (mode == GIT_FILEMODE_COMMIT)
        return 0; /* a submodule: nothing of it is in the store */
    git_blob *b = NULL;
    if (git_blob_lookup(&b, c->st->repo, git_tree_entry_id(te)) < 0) {
        c->rc = AH_E_IO;
        return -1;
    }
    const char *data = git_blob_rawcontent(b);
    size_t size = (size_t)git_blob_rawsize(b);
    int rc = 0;
    if (mode == GIT_FILEMODE_LINK) {
        char target[WS_PATH_MAX + 1];
        if (size > WS_PATH_MAX)
            rc = AH_E_INVAL;
        else {
            memcpy(target, data, size);
            target[size] = '\0';
            if (symlinkat(target, c->root, path) < 0)
                rc = ah_err_from_errno(errno);
            else if (c->cache)
                rc = seed(c, path, -1, git_tree_entry_id(te));
        }
    } else {
        mode_t m = mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644;
        int fd = openat(c->root, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, m);
        if (fd < 0)
            rc = ah_err_from_errno(errno);
        else {
            rc = write_all(fd, data, size);
            if (rc == 0 && c->readonly && fchmod(fd, m & 0555) < 0)
                rc = ah_err_from_errno(errno);
            if (rc == 0 && c->cache)
                rc = seed(c, path, fd, git_tree_entry_id(te));
            close(fd);
        }
    }
    git_blob_free(b);
    if (rc < 0) {
        c->rc = rc;
        return -1;
    }
    c->files++;
    return 0;
}

static int checkout(struct ws_store *st, const char *snap, const char *dir, bool readonly,
                    struct ah_buf *cache, uint64_t *ret_files) {
    git_tree *tree = NULL;
    int rc = ws_resolve_tree(st, snap, &tree);
    if (rc < 0)
        return rc;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        git_tree_free(tree);
        return ah_err_from_errno(errno);
    }
    struct co c = {.st = st, .readonly = readonly, .cache = cache};
    clock_gettime(CLOCK_REALTIME, &c.mtime);
    c.mtime.tv_sec -= 2; /* well before the next snapshot's racy margin */
    c.root = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (c.root < 0) {
        git_tree_free(tree);
        return ah_err_from_errno(errno);
    }
    if (tree && git_tree_walk(tree, GIT_TREEWALK_PRE, co_cb, &c) < 0 && c.rc == 0)
        c.rc = AH_E_IO;
    close(c.root);
    git_tree_free(tree);
    if (c.rc < 0)
        return c.rc;
    if (ret_files)
        *ret_files = c.files;
    return 0;
}

int ws_checkout(struct ws_store *st, const char *snap, const char *dir, bool readonly,
                uint64_t *ret_files) {
    return checkout(st, snap, dir, readonly, NULL, ret_files);
}

int ws_checkout_seeded(struct ws_store *st, const char *snap, const char *dir,
                       uint64_t *ret_files) {
    struct ah_buf cache = {.max = (size_t)1 << 32};
    int rc = ws_cache_begin(&cache, dir);
    if (rc == 0)
        rc = checkout(st, snap, dir, false, &cache, ret_files);
    if (rc == 0) /* an optimisation: without it the next snapshot hashes everything */
        (void)ws_cache_save(st, &cache);
    ah_buf_clear(&cache);
    return rc;
}

int ws_layer_write(struct ws_store *st, const char *snap, const char *layer, bool *ret_wrote,
                   uint64_t *ret_files) {
    struct stat sb;
    *ret_wrote = false;
    if (stat(layer, &sb) == 0)
        return 0;
    char tmp[4400], cache_tmp[4500], cache[4500], ulid[ULID_LEN + 1];
    ulid_new(ulid);
    snprintf(tmp, sizeof(tmp), "%s.tmp-%s", layer, ulid);
    snprintf(cache_tmp, sizeof(cache_tmp), "%s.statcache", tmp);
    snprintf(cache, sizeof(cache), "%s.statcache", layer);
    struct ah_buf c = {.max = (size_t)1 << 32};
    int rc = ws_cache_begin(&c, layer);
    if (rc == 0)
        rc = checkout(st, snap, tmp, false, &c, ret_files);
    if (rc == 0)
        rc = ws_cache_write(cache_tmp, &c);
    ah_buf_clear(&c);
    if (rc == 0 && rename(tmp, layer) == 0) { /* the tree first: a cache names its inodes */
        *ret_wrote = true;
        if (rename(cache_tmp, cache) < 0) /* without it, a branch's first snapshot hashes all */
            (void)unlink(cache_tmp);
    } else if (rc == 0 && errno != EEXIST && errno != ENOTEMPTY) {
        rc = ah_err_from_errno(errno); /* EEXIST: another branch wrote it meanwhile, use that */
    }
    (void)unlink(cache_tmp);
    (void)workspace_remove(tmp);
    return rc;
}

/* ---- sharing between stores ------------------------------------------------------------------ */

int ws_store_borrow(struct ws_store *st, const char *other_dir) {
    char path[4400], line[4400];
    snprintf(path, sizeof(path), "%s/objects/info", st->dir);
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return ah_err_from_errno(errno);
    snprintf(path, sizeof(path), "%s/objects/info/alternates", st->dir);
    int n = snprintf(line, sizeof(line), "%s/objects\n", other_dir);
    if (n < 0 || (size_t)n >= sizeof(line) || strchr(other_dir, '\n'))
        return AH_E_INVAL;
    char have[16384];
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    if (rfd >= 0) { /* borrowed already: nothing to add */
        ssize_t r = read(rfd, have, sizeof(have) - 1);
        close(rfd);
        have[r > 0 ? r : 0] = '\0';
        for (char *l = have; r > 0 && l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
            if (strncmp(l, line, (size_t)n) == 0)
                return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return ah_err_from_errno(errno);
    int rc = write_all(fd, line, (size_t)n);
    close(fd);
    if (rc < 0)
        return rc;
    /* this handle's odb read the alternates when it was opened: tell it now */
    snprintf(path, sizeof(path), "%s/objects", other_dir);
    if (git_odb_add_disk_alternate(st->odb, path) < 0)
        return AH_E_IO;
    return ws_pack_attach_alternate(st, path);
}

int ws_snapshot_import(struct ws_store *st, struct ws_store *from, const char *id) {
    char refname[64];
    if (!id || strncmp(id, WS_SNAP_PREFIX, 5) != 0 || strlen(id) != WS_SNAP_ID_LEN ||
        !ulid_valid(id + 5))
        return AH_E_INVAL;
    snprintf(refname, sizeof(refname), "refs/ah/snapshots/%s", id);
    git_oid oid;
    int rc = git_reference_name_to_id(&oid, from->repo, refname);
    if (rc < 0)
        return rc == GIT_ENOTFOUND ? AH_E_NOTFOUND : AH_E_IO;
    if (!git_odb_exists(st->odb, &oid))
        return AH_E_NOTFOUND; /* not an ancestor's: its objects are not reachable from here */
    git_reference *ref = NULL;
    rc = git_reference_create(&ref, st->repo, refname, &oid, 1, "import");
    git_reference_free(ref);
    return rc < 0 ? AH_E_IO : 0;
}

int ws_snapshot_forget(struct ws_store *st, const char *id) {
    char refname[64];
    if (!id || strncmp(id, WS_SNAP_PREFIX, 5) != 0 || strlen(id) != WS_SNAP_ID_LEN ||
        !ulid_valid(id + 5))
        return AH_E_INVAL;
    snprintf(refname, sizeof(refname), "refs/ah/snapshots/%s", id);
    git_reference *ref = NULL;
    int rc = git_reference_lookup(&ref, st->repo, refname);
    if (rc < 0)
        return rc == GIT_ENOTFOUND ? AH_E_NOTFOUND : AH_E_IO;
    rc = git_reference_delete(ref);
    git_reference_free(ref);
    return rc < 0 ? AH_E_IO : 0;
}

/* ---- freeing forgotten snapshots ------------------------------------------------------------- */

int ws_snapshots_forget_before(struct ws_store *st, const char *before,
                               bool (*keep)(void *ctx, const char *id), void *ctx) {
    static const char prefix[] = "refs/ah/snapshots/";
    git_reference_iterator *it = NULL;
    if (git_reference_iterator_new(&it, st->repo) < 0)
        return AH_E_IO;
    /* names first, deletions after: the iterator must not see the refs change under it */
    char (*gone)[WS_SNAP_ID_LEN + 1] = NULL;
    size_t n = 0, cap = 0;
    git_reference *ref = NULL;
    int rc = 0, grc;
    while (rc == 0 && (grc = git_reference_next(&ref, it)) == 0) {
        const char *name = git_reference_name(ref);
        const char *id = strncmp(name, prefix, sizeof(prefix) - 1) ? NULL : name + sizeof(prefix) - 1;
        if (id && strlen(id) == WS_SNAP_ID_LEN && strcmp(id, before) < 0 && !keep(ctx, id)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                void *v = realloc(gone, cap * sizeof(*gone));
                if (!v)
                    rc = AH_E_NOMEM;
                else
                    gone = v;
            }
            if (rc == 0)
                memcpy(gone[n++], id, WS_SNAP_ID_LEN + 1);
        }
        git_reference_free(ref);
    }
    git_reference_iterator_free(it);
    int forgot = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (ws_snapshot_forget(st, gone[i]) == 0)
            forgot++;
    free(gone);
    return rc < 0 ? rc : forgot;
}

/* The objects still needed: an open-addressing set of oids (the first 8 bytes as the hash). */
struct oidset {
    git_oid *v;
    size_t cap, n; /* cap a power of two; an all-zero oid marks an empty slot */
};

static size_t oid_slot(const struct oidset *s, const git_oid *o) {
    uint64_t h;
    memcpy(&h, o->id, sizeof(h));
    size_t i = (size_t)h & (s->cap - 1);
    while (!git_oid_is_zero(&s->v[i]) && git_oid_cmp(&s->v[i], o) != 0)
        i = (i + 1) & (s->cap - 1);
    return i;
}

static bool oidset_has(const struct oidset *s, const git_oid *o) {
    return s->cap && !git_oid_is_zero(&s->v[oid_slot(s, o)]);
}

static bool keep_cb(void *ctx, const git_oid *o) {
    return oidset_has(ctx, o);
}

/* 1 added, 0 already there, AH_E_NOMEM. */
static int oidset_add(struct oidset *s, const git_oid *o) {
    if ((s->n + 1) * 2 > s->cap) {
        struct oidset g = {.cap = s->cap ? s->cap * 2 : 1024};
        if (!(g.v = calloc(g.cap, sizeof(*g.v))))
            return AH_E_NOMEM;
        for (size_t i = 0; i < s->cap; i++)
            if (!git_oid_is_zero(&s->v[i]))
                g.v[oid_slot(&g, &s->v[i])] = s->v[i];
        g.n = s->n;
        free(s->v);
        *s = g;
    }
    size_t i = oid_slot(s, o);
    if (!git_oid_is_zero(&s->v[i]))
        return 0;
    s->v[i] = *o;
    s->n++;
    return 1;
}

/* Marks a tree and everything under it (a subtree seen before is not walked again). */
static int mark_tree(struct oidset *keep, git_repository *repo, const git_oid *oid, int depth) {
    int rc = oidset_add(keep, oid);
    if (rc <= 0)
        return rc;
    if (depth > 300)
        return AH_E_INVAL;
    git_tree *t = NULL;
    if (git_tree_lookup(&t, repo, oid) < 0)
        return AH_E_IO; /* a snapshot we cannot read whole: keep everything */
    size_t n = git_tree_entrycount(t);
    for (size_t i = 0; rc >= 0 && i < n; i++) {
        const git_tree_entry *e = git_tree_entry_byindex(t, i);
        git_filemode_t m = git_tree_entry_filemode(e);
        if (m == GIT_FILEMODE_TREE)
            rc = mark_tree(keep, repo, git_tree_entry_id(e), depth + 1);
        else if (m != GIT_FILEMODE_COMMIT)
            rc = oidset_add(keep, git_tree_entry_id(e));
    }
    git_tree_free(t);
    return rc < 0 ? rc : 0;
}

/* Marks the commit and tree of every snapshot named in repo. */
static int mark_refs(struct oidset *keep, git_repository *repo) {
    git_reference_iterator *it = NULL;
    if (git_reference_iterator_new(&it, repo) < 0)
        return AH_E_IO;
    git_reference *ref = NULL;
    int rc = 0, grc;
    while (rc == 0 && (grc = git_reference_next(&ref, it)) == 0) {
        if (strncmp(git_reference_name(ref), "refs/ah/", 8) != 0) {
            git_reference_free(ref); /* not a snapshot (a store holds no other refs) */
            continue;
        }
        git_commit *c = NULL;
        const git_oid *id = git_reference_target(ref);
        if (!id || git_commit_lookup(&c, repo, id) < 0)
            rc = AH_E_IO;
        else if ((rc = oidset_add(keep, id)) >= 0)
            rc = mark_tree(keep, repo, git_commit_tree_id(c), 0);
        git_commit_free(c);
        git_reference_free(ref);
    }
    if (rc == 0 && grc != GIT_ITEROVER)
        rc = AH_E_IO;
    git_reference_iterator_free(it);
    return rc;
}

int ws_store_gc(struct ws_store *st, const char *const *borrowers, size_t nborrowers,
                int64_t grace_ms, uint64_t *ret_freed) {
    char path[4400];
    snprintf(path, sizeof(path), "%s/ah-snapshot.lock", st->dir);
    int lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0)
        return ah_err_from_errno(errno);
    while (flock(lock, LOCK_EX) < 0 && errno == EINTR)
        ;
    struct oidset keep = {0};
    int rc = mark_refs(&keep, st->repo);
    for (size_t i = 0; rc == 0 && i < nborrowers; i++) {
        struct ws_store *b = NULL;
        rc = ws_store_open(borrowers[i], &b);
        if (rc == 0)
            rc = mark_refs(&keep, b->repo);
        ws_store_free(b);
    }
    uint64_t freed = 0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t cutoff_s = now.tv_sec - (grace_ms + 999) / 1000;
    for (int fan = 0; rc == 0 && fan < 256; fan++) {
        snprintf(path, sizeof(path), "%s/objects/%02x", st->dir, fan);
        int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
        if (!d) {
            if (dfd >= 0)
                close(dfd);
            continue;
        }
        struct dirent *de;
        size_t left = 0;
        while ((de = readdir(d))) {
            char hex[GIT_OID_HEXSZ + 1];
            git_oid oid;
            if (de->d_name[0] == '.')
                continue;
            left++;
            if (strlen(de->d_name) != GIT_OID_HEXSZ - 2)
                continue; /* a temporary file of a writer: not ours to judge */
            snprintf(hex, sizeof(hex), "%02x%s", fan, de->d_name);
            struct stat sb;
            if (git_oid_fromstr(&oid, hex) < 0 || oidset_has(&keep, &oid) ||
                fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
                sb.st_mtim.tv_sec > cutoff_s)
                continue;
            if (unlinkat(dirfd(d), de->d_name, 0) == 0) {
                freed += (uint64_t)sb.st_blocks * 512;
                left--;
            }
        }
        closedir(d);
        if (left == 0)
            (void)rmdir(path); /* the fan-out directory's block too */
    }
    uint64_t packed = 0;
    if (rc == 0 && (rc = ws_pack_gc(st, keep_cb, &keep, cutoff_s, &packed)) == 0)
        freed += packed;
    free(keep.v);
    close(lock);
    if (rc == 0 && ret_freed)
        *ret_freed = freed;
    return rc;
}
