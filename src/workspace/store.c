/*
 * store.c — the private object store of a session (D30): open, snapshot, metadata, trees, reads.
 *
 * A snapshot walks the working directory with openat/fstatat (never following a symlink), and
 * builds git trees bottom-up with treebuilders. A file is read and hashed only when its stat
 * data differs from the stat cache or its cache entry is "racy". The cache file is
 * `<dir>/ah-statcache`; it is rewritten whole (temp file + rename) after each snapshot and holds
 * exactly the entries of that snapshot. A cache that is missing, corrupt, or written for another
 * workdir is ignored: the snapshot then hashes everything, which is always correct.
 *
 * Racy entries (git's "racy git" problem): a file written in the same clock tick as it was read
 * could change again without its mtime moving. An entry whose mtime is within RACY_NS of the
 * snapshot's start is marked racy and is hashed again by the next snapshot (which, if the file
 * is old by then, records it clean).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../os/os.h"
#include "internal.h"

#define RACY_NS (100LL * 1000 * 1000) /* kernel file times use a coarse clock: keep a margin */
#define MAX_DEPTH 256                 /* directory levels walked; deeper content is skipped */
#define CACHE_MAGIC "AHSC1\n"
#define READ_CHUNK (128 * 1024)

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init(void) {
    git_libgit2_init();
    /* Strict creation reads every object a tree entry names to check its type: 10,000 header
     * reads per snapshot. Our trees only name blobs we wrote or found in our own stat cache. */
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, 0);
}

void ws_git_init(void) {
    pthread_once(&init_once, init);
}

int ws_git_err(int rc) {
    switch (rc) {
    case 0: return 0;
    case GIT_ENOTFOUND: return AH_E_NOTFOUND;
    case GIT_EEXISTS: return AH_E_EXISTS;
    case GIT_EINVALIDSPEC: return AH_E_INVAL;
    case GIT_ELOCKED: return AH_E_BUSY;
    default: return AH_E_IO;
    }
}

/* ---- open ------------------------------------------------------------------------------------ */

int ws_store_open(const char *dir, struct ws_store **ret_store) {
    if (!dir || !*dir)
        return AH_E_INVAL;
    ws_git_init();
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return ah_err_from_errno(errno);
    struct stat sb;
    if (stat(dir, &sb) < 0)
        return ah_err_from_errno(errno);
    if (!S_ISDIR(sb.st_mode))
        return AH_E_IO;
    struct ws_store *st = calloc(1, sizeof(*st));
    if (!st)
        return AH_E_NOMEM;
    st->dir = strdup(dir);
    if (!st->dir) {
        free(st);
        return AH_E_NOMEM;
    }
    /* open only this directory as a bare repository: never search upwards into a user's repo */
    int rc = git_repository_open_ext(
        &st->repo, dir, GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, NULL);
    if (rc == GIT_ENOTFOUND)
        rc = git_repository_init(&st->repo, dir, 1);
    if (rc == 0)
        rc = git_repository_odb(&st->odb, st->repo);
    if (rc == 0)
        rc = ws_pack_attach(st) < 0 ? -1 : 0;
    if (rc < 0) {
        ws_store_free(st);
        return AH_E_IO;
    }
    *ret_store = st;
    return 0;
}

void ws_store_free(struct ws_store *st) {
    if (!st)
        return;
    git_odb_free(st->odb);
    git_repository_free(st->repo);
    free(st->dir);
    free(st);
}

/* ---- the stat cache -------------------------------------------------------------------------- */

/* One record on disk (little-endian host order; the cache never leaves the machine). */
struct rec {
    uint64_t size, ino;
    int64_t mtime_ns, ctime_ns;
    uint32_t mode; /* st_mode */
    uint8_t racy;
    uint8_t oid[GIT_OID_RAWSZ];
    uint16_t path_len;
} __attribute__((packed));

struct cache {
    char *data; /* the file's bytes */
    size_t n;
    const struct rec **recs; /* pointers into data */
    const char **paths;
    size_t count;
    uint32_t *slots; /* open addressing: index + 1, 0 = empty */
    size_t mask;
    bool loaded; /* a valid cache of this workdir was read (it may hold no entry) */
};

static void cache_clear(struct cache *c) {
    free(c->data);
    free(c->recs);
    free(c->paths);
    free(c->slots);
    memset(c, 0, sizeof(*c));
}

static uint64_t hash_path(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

/* Loads the cache written for workdir; any mismatch or corruption leaves it empty. */
static void cache_load(struct cache *c, const char *path, const char *workdir) {
    memset(c, 0, sizeof(*c));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat sb;
    if (fstat(fd, &sb) < 0 || sb.st_size < 10 || sb.st_size > (off_t)1 << 32) {
        close(fd);
        return;
    }
    size_t n = (size_t)sb.st_size;
    char *d = malloc(n);
    size_t got = 0;
    while (d && got < n) {
        ssize_t r = read(fd, d + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!d || got != n) {
        free(d);
        return;
    }
    size_t wl = strlen(workdir), off = sizeof(CACHE_MAGIC) - 1;
    uint32_t hl;
    if (memcmp(d, CACHE_MAGIC, off) != 0 || n < off + 4)
        goto bad;
    memcpy(&hl, d + off, 4);
    off += 4;
    if (hl != wl || n - off < wl || memcmp(d + off, workdir, wl) != 0)
        goto bad;
    off += wl;
    /* first pass: count and check bounds */
    size_t count = 0;
    for (size_t o = off; o < n;) {
        if (n - o < sizeof(struct rec))
            goto bad;
        struct rec r;
        memcpy(&r, d + o, sizeof(r));
        if (r.path_len == 0 || r.path_len > WS_PATH_MAX || n - o - sizeof(r) < r.path_len)
            goto bad;
        o += sizeof(r) + r.path_len;
        count++;
    }
    c->data = d;
    c->n = n;
    c->count = count;
    c->loaded = true;
    size_t cap = 16;
    while (cap < count * 2)
        cap <<= 1;
    c->recs = malloc((count ? count : 1) * sizeof(*c->recs));
    c->paths = malloc((count ? count : 1) * sizeof(*c->paths));
    c->slots = calloc(cap, sizeof(*c->slots));
    c->mask = cap - 1;
    if (!c->recs || !c->paths || !c->slots) {
        cache_clear(c);
        return;
    }
    c->loaded = true;
    size_t i = 0;
    for (size_t o = off; o < n; i++) {
        const struct rec *r = (const struct rec *)(d + o);
        const char *p = d + o + sizeof(*r);
        c->recs[i] = r;
        c->paths[i] = p;
        size_t s = hash_path(p, r->path_len) & c->mask;
        while (c->slots[s])
            s = (s + 1) & c->mask;
        c->slots[s] = (uint32_t)i + 1;
        o += sizeof(*r) + r->path_len;
    }
    return;
bad:
    free(d);
}

static const struct rec *cache_find(const struct cache *c, const char *p, size_t n) {
    if (!c->count)
        return NULL;
    for (size_t s = hash_path(p, n) & c->mask; c->slots[s]; s = (s + 1) & c->mask) {
        size_t i = c->slots[s] - 1;
        if (c->recs[i]->path_len == n && memcmp(c->paths[i], p, n) == 0)
            return c->recs[i];
    }
    return NULL;
}

/* ---- the walk -------------------------------------------------------------------------------- */

struct walk {
    struct ws_store *st;
    struct cache old;
    struct ah_buf out; /* the new cache file */
    struct ws_snapshot_stats stats;
    int64_t start_ns;
    char path[WS_PATH_MAX + 2];
    char *buf; /* READ_CHUNK bytes */
};

static int64_t ts_ns(const struct timespec *t) {
    return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static int cache_put(struct walk *w, size_t plen, const struct stat *sb, const git_oid *oid) {
    struct rec r = {
        .size = (uint64_t)sb->st_size,
        .ino = (uint64_t)sb->st_ino,
        .mtime_ns = ts_ns(&sb->st_mtim),
        .ctime_ns = ts_ns(&sb->st_ctim),
        .mode = sb->st_mode,
        .path_len = (uint16_t)plen,
    };
    r.racy = r.mtime_ns >= w->start_ns - RACY_NS; /* every write moves mtime (as git) */
    memcpy(r.oid, oid->id, GIT_OID_RAWSZ);
    int rc = ah_buf_append(&w->out, &r, sizeof(r));
    return rc < 0 ? rc : ah_buf_append(&w->out, w->path, plen);
}

/* Streams a regular file into a blob. 1 when the file vanished or changed size while read. */
static int hash_file(struct walk *w, int dfd, const char *name, const struct stat *sb,
                     git_oid *ret) {
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT || errno == ELOOP ? 1 : ah_err_from_errno(errno);
    struct stat now;
    if (fstat(fd, &now) < 0 || !S_ISREG(now.st_mode) || now.st_ino != sb->st_ino) {
        close(fd); /* swapped for something else since the walk saw it */
        return 1;
    }
    git_odb_stream *s = NULL;
    int rc = git_odb_open_wstream(&s, w->st->odb, (git_object_size_t)sb->st_size, GIT_OBJECT_BLOB);
    if (rc < 0) {
        close(fd);
        return AH_E_IO;
    }
    uint64_t left = (uint64_t)sb->st_size;
    while (left > 0) {
        ssize_t r = read(fd, w->buf, left < READ_CHUNK ? left : READ_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r == 0 ? 1 : AH_E_IO; /* shorter than its stat: it changed under us */
            goto out;
        }
        if (git_odb_stream_write(s, w->buf, (size_t)r) < 0) {
            rc = AH_E_IO;
            goto out;
        }
        left -= (uint64_t)r;
    }
    rc = git_odb_stream_finalize_write(ret, s) < 0 ? AH_E_IO : 0;
    w->stats.hashed++;
    w->stats.bytes_hashed += (uint64_t)sb->st_size;
out:
    git_odb_stream_free(s);
    close(fd);
    return rc;
}

static int hash_link(struct walk *w, int dfd, const char *name, git_oid *ret) {
    char target[WS_PATH_MAX + 1];
    ssize_t n = readlinkat(dfd, name, target, sizeof(target));
    if (n < 0)
        return errno == ENOENT || errno == EINVAL ? 1 : ah_err_from_errno(errno);
    if ((size_t)n >= sizeof(target))
        return 1; /* longer than any path we accept: left out */
    if (git_odb_write(ret, w->st->odb, target, (size_t)n, GIT_OBJECT_BLOB) < 0)
        return AH_E_IO;
    w->stats.hashed++;
    w->stats.bytes_hashed += (uint64_t)n;
    return 0;
}

static bool same_stat(const struct rec *r, const struct stat *sb) {
    return !r->racy && r->size == (uint64_t)sb->st_size && r->ino == (uint64_t)sb->st_ino &&
           r->mode == sb->st_mode && r->mtime_ns == ts_ns(&sb->st_mtim) &&
           r->ctime_ns == ts_ns(&sb->st_ctim);
}

/* Walks the directory open at dfd whose path (relative to the workdir) is w->path[0..plen).
 * Writes its tree to ret_tree, or sets *ret_empty when nothing in it was recorded. Takes dfd. */
static int walk_dir(struct walk *w, int dfd, size_t plen, int depth, git_oid *ret_tree,
                    bool *ret_empty) {
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return ah_err_from_errno(errno);
    }
    git_treebuilder *tb = NULL;
    int rc = git_treebuilder_new(&tb, w->st->repo, NULL) < 0 ? AH_E_NOMEM : 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d))) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(name, ".git") == 0)
            continue;
        size_t nl = strlen(name), np = plen + (plen ? 1 : 0) + nl;
        if (np > WS_PATH_MAX) {
            w->stats.skipped++;
            continue;
        }
        if (plen)
            w->path[plen] = '/';
        memcpy(w->path + np - nl, name, nl + 1);
        struct stat sb;
        if (fstatat(dirfd(d), name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue; /* deleted since readdir */
            rc = ah_err_from_errno(errno);
            break;
        }
        git_oid oid;
        git_filemode_t fm;
        if (S_ISDIR(sb.st_mode)) {
            if (depth >= MAX_DEPTH) {
                w->stats.skipped++;
                continue;
            }
            int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                    continue;
                rc = ah_err_from_errno(errno);
                break;
            }
            bool empty = false;
            rc = walk_dir(w, sub, np, depth + 1, &oid, &empty);
            if (rc < 0 || empty)
                continue;
            fm = GIT_FILEMODE_TREE;
        } else if (S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)) {
            const struct rec *r = cache_find(&w->old, w->path, np);
            if (r && same_stat(r, &sb)) {
                memcpy(oid.id, r->oid, GIT_OID_RAWSZ);
            } else {
                /* a file that shrinks while we read it is being written: stat it again and
                 * retry a few times; only a file that is gone (or keeps changing) is left out */
                int hr = 1;
                for (int attempt = 0; attempt < 3 && hr == 1; attempt++) {
                    if (attempt > 0 && (fstatat(dirfd(d), name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
                                        !(S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode))))
                        break;
                    hr = S_ISREG(sb.st_mode) ? hash_file(w, dirfd(d), name, &sb, &oid)
                                             : hash_link(w, dirfd(d), name, &oid);
                }
                if (hr < 0) {
                    rc = hr;
                    break;
                }
                if (hr > 0) {
                    w->stats.skipped++;
                    continue;
                }
            }
            fm = S_ISLNK(sb.st_mode)      ? GIT_FILEMODE_LINK
                 : (sb.st_mode & S_IXUSR) ? GIT_FILEMODE_BLOB_EXECUTABLE
                                          : GIT_FILEMODE_BLOB;
            if (git_treebuilder_insert(NULL, tb, name, &oid, fm) < 0) {
                w->stats.skipped++; /* a name git refuses */
                continue;
            }
            w->stats.files++;
            rc = cache_put(w, np, &sb, &oid);
            continue;
        } else {
            w->stats.skipped++;
            continue;
        }
        if (git_treebuilder_insert(NULL, tb, name, &oid, fm) < 0)
            w->stats.skipped++;
    }
    if (rc == 0 && errno != 0 && !de)
        rc = ah_err_from_errno(errno);
    if (rc == 0) {
        if (git_treebuilder_entrycount(tb) == 0)
            *ret_empty = true;
        else if (git_treebuilder_write(ret_tree, tb) < 0)
            rc = AH_E_IO;
    }
    git_treebuilder_free(tb);
    closedir(d);
    return rc;
}

static int write_file_atomic(const char *path, const void *data, size_t n);
static int cache_adopt(struct ws_store *st, const char *from, const char *workdir);

int ws_cache_begin(struct ah_buf *b, const char *workdir) {
    uint32_t wl = (uint32_t)strlen(workdir);
    int rc = ah_buf_append(b, CACHE_MAGIC, sizeof(CACHE_MAGIC) - 1);
    if (rc == 0)
        rc = ah_buf_append(b, &wl, 4);
    return rc < 0 ? rc : ah_buf_append(b, workdir, wl);
}

int ws_cache_add(struct ah_buf *b, const char *path, const struct stat *sb, const git_oid *oid,
                 bool racy) {
    size_t plen = strlen(path);
    if (plen == 0 || plen > WS_PATH_MAX)
        return AH_E_INVAL;
    struct rec r = {
        .size = (uint64_t)sb->st_size,
        .ino = (uint64_t)sb->st_ino,
        .mtime_ns = ts_ns(&sb->st_mtim),
        .ctime_ns = ts_ns(&sb->st_ctim),
        .mode = sb->st_mode,
        .racy = racy,
        .path_len = (uint16_t)plen,
    };
    memcpy(r.oid, oid->id, GIT_OID_RAWSZ);
    int rc = ah_buf_append(b, &r, sizeof(r));
    return rc < 0 ? rc : ah_buf_append(b, path, plen);
}

int ws_cache_save(struct ws_store *st, const struct ah_buf *b) {
    char cachepath[4200];
    snprintf(cachepath, sizeof(cachepath), "%s/ah-statcache", st->dir);
    return write_file_atomic(cachepath, b->p, b->n);
}

int ws_cache_write(const char *path, const struct ah_buf *b) {
    return write_file_atomic(path, b->p, b->n);
}

/* Makes the cache file `from` (written for another directory holding the same files, seen
 * through an overlay at workdir) st's cache for workdir. */
static int cache_adopt(struct ws_store *st, const char *from, const char *workdir) {
    char *d = NULL;
    size_t n = 0;
    int rc = read_file(from, (size_t)1 << 32, &d, &n);
    if (rc < 0)
        return rc;
    size_t off = sizeof(CACHE_MAGIC) - 1;
    uint32_t hl = 0;
    if (n >= off + 4)
        memcpy(&hl, d + off, 4);
    if (n < off + 4 || memcmp(d, CACHE_MAGIC, off) != 0 || n - off - 4 < hl) {
        free(d);
        return AH_E_INVAL;
    }
    off += 4 + hl;
    struct ah_buf b = {.max = (size_t)1 << 32};
    rc = ws_cache_begin(&b, workdir);
    if (rc == 0)
        rc = ah_buf_append(&b, d + off, n - off);
    free(d);
    if (rc == 0)
        rc = ws_cache_save(st, &b);
    ah_buf_clear(&b);
    return rc;
}

static int write_file_atomic(const char *path, const void *data, size_t n) {
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ah_err_from_errno(errno);
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return AH_E_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        return AH_E_IO;
    }
    return 0;
}

static int id_ref(const char *id, char out[64]) {
    if (!id || strncmp(id, WS_SNAP_PREFIX, 5) != 0 || strlen(id) != WS_SNAP_ID_LEN ||
        !ulid_valid(id + 5))
        return AH_E_INVAL;
    snprintf(out, 64, "refs/ah/snapshots/%s", id);
    return 0;
}

#define HEAD_REF "refs/ah/head" /* the newest snapshot: the next one's parent */

/* Records tree_oid as a new snapshot of st (its parent: the newest one), named in ret_id; the
 * caller holds the store's writer lock. */
static int commit_tree(struct ws_store *st, const git_oid *tree_oid, const char *label,
                       time_t now_s, char ret_id[WS_SNAP_ID_LEN + 1]) {
    git_oid parent_oid, commit_oid;
    git_tree *tree = NULL;
    git_commit *parent = NULL;
    git_signature *sig = NULL;
    git_reference *ref = NULL;
    AH_AUTOFREE char *msg = NULL;
    char id[WS_SNAP_ID_LEN + 1], refname[64];
    int rc = ulid_new_prefixed("snap", id, sizeof(id));
    if (rc < 0)
        return rc;
    id_ref(id, refname);
    bool have_parent = git_reference_name_to_id(&parent_oid, st->repo, HEAD_REF) == 0;
    if (git_tree_lookup(&tree, st->repo, tree_oid) < 0 ||
        (have_parent && git_commit_lookup(&parent, st->repo, &parent_oid) < 0)) {
        rc = AH_E_IO;
        goto out;
    }
    if (git_signature_new(&sig, "ah", "ah@localhost", now_s, 0) < 0) {
        rc = AH_E_NOMEM;
        goto out;
    }
    struct ah_buf m = {0};
    if ((rc = ah_buf_printf(&m, "%s\n\nSnapshot: %s\n", label && *label ? label : "snapshot", id)) <
        0)
        goto out;
    msg = ah_buf_steal(&m);
    const git_commit *parents[1] = {parent};
    if (git_commit_create(&commit_oid, st->repo, NULL, sig, sig, NULL, msg, tree, parent ? 1 : 0,
                          parents) < 0 ||
        git_reference_create(&ref, st->repo, refname, &commit_oid, 0, "snapshot") < 0) {
        rc = AH_E_IO;
        goto out;
    }
    git_reference_free(ref);
    ref = NULL;
    if (git_reference_create(&ref, st->repo, HEAD_REF, &commit_oid, 1, "snapshot") < 0) {
        rc = AH_E_IO;
        goto out;
    }
    /* the snapshot's ref into packed-refs: a loose ref is a file, a 4 KiB block on disk, for
     * 41 bytes (an optimisation: a failure leaves it loose, as readable) */
    git_refdb *refdb = NULL;
    if (git_repository_refdb(&refdb, st->repo) == 0)
        (void)git_refdb_compress(refdb);
    git_refdb_free(refdb);
    memcpy(ret_id, id, sizeof(id));
out:
    git_reference_free(ref);
    git_signature_free(sig);
    git_commit_free(parent);
    git_tree_free(tree);
    return rc;
}

/* ---- snapshots from a list of changed paths ---------------------------------------------------
 */

#define MAX_HINTS 1000 /* more changed paths than this: walk everything */

/* Is path p equal to hint h or under it? */
static bool covered(const char *p, size_t pl, const char *h, size_t hl) {
    return pl >= hl && memcmp(p, h, hl) == 0 && (pl == hl || p[hl] == '/');
}

/* Opens the directory holding `path` (relative to root) without following any symlink; -1 with
 * errno when a component is missing or is not a directory. */
static int open_parent(int root, const char *path) {
    int fd = dup(root);
    const char *p = path, *slash;
    while (fd >= 0 && (slash = strchr(p, '/'))) {
        char comp[NAME_MAX + 1];
        size_t l = (size_t)(slash - p);
        if (l > NAME_MAX) {
            close(fd);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(comp, p, l);
        comp[l] = '\0';
        int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        fd = next;
        p = slash + 1;
    }
    return fd;
}

/*
 * The tree of the parent snapshot with only the hinted paths looked at again. 1 when the hints
 * cannot be applied that way (a directory became a file or the other way round, too many hints):
 * the caller walks everything instead.
 */
static int hinted_tree(struct walk *w, int root, git_tree *base, char **hints, size_t n,
                       git_oid *ret) {
    git_tree_update *up = calloc(n ? n : 1, sizeof(*up));
    if (!up)
        return AH_E_NOMEM;
    size_t nu = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *h = hints[i];
        size_t hl = strlen(h);
        git_tree_entry *te = NULL;
        bool in_base = git_tree_entry_bypath(&te, base, h) == 0;
        bool base_dir = in_base && git_tree_entry_type(te) == GIT_OBJECT_TREE;
        git_tree_entry_free(te);
        const char *leaf = strrchr(h, '/');
        leaf = leaf ? leaf + 1 : h;
        int pfd = open_parent(root, h);
        struct stat sb;
        bool exists = pfd >= 0 && fstatat(pfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                      (S_ISDIR(sb.st_mode) || S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode));
        git_oid oid;
        git_filemode_t fm = 0;
        if (exists && S_ISDIR(sb.st_mode)) {
            int dfd = openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            bool empty = false;
            memcpy(w->path, h, hl + 1);
            int depth = 1;
            for (const char *c = h; *c; c++)
                depth += *c == '/';
            rc = dfd < 0 ? 1 : walk_dir(w, dfd, hl, depth, &oid, &empty);
            exists = rc == 0 && !empty;
            fm = GIT_FILEMODE_TREE;
        } else if (exists) {
            memcpy(w->path, h, hl + 1);
            const struct rec *r = cache_find(&w->old, h, hl);
            int hr = 0;
            if (r && same_stat(r, &sb))
                memcpy(oid.id, r->oid, GIT_OID_RAWSZ);
            else
                hr = S_ISREG(sb.st_mode) ? hash_file(w, pfd, leaf, &sb, &oid)
                                         : hash_link(w, pfd, leaf, &oid);
            if (hr < 0)
                rc = hr;
            exists = hr == 0;
            fm = S_ISLNK(sb.st_mode)      ? GIT_FILEMODE_LINK
                 : (sb.st_mode & S_IXUSR) ? GIT_FILEMODE_BLOB_EXECUTABLE
                                          : GIT_FILEMODE_BLOB;
            if (rc == 0 && exists) {
                w->stats.files++;
                rc = cache_put(w, hl, &sb, &oid);
            }
        }
        if (pfd >= 0)
            close(pfd);
        if (rc != 0)
            break;
        if (exists && in_base && base_dir != (fm == GIT_FILEMODE_TREE))
            rc = 1; /* libgit2 cannot turn a tree into a blob in place */
        else if (exists)
            up[nu++] = (git_tree_update){
                .action = GIT_TREE_UPDATE_UPSERT, .id = oid, .filemode = fm, .path = h};
        else if (in_base)
            up[nu++] = (git_tree_update){.action = GIT_TREE_UPDATE_REMOVE, .path = h};
    }
    if (rc == 0 && git_tree_create_updated(ret, w->st->repo, base, nu, up) < 0)
        rc = 1;
    free(up);
    if (rc != 0)
        return rc;
    /* the cache keeps every entry no hint covers */
    for (size_t i = 0; i < w->old.count && rc == 0; i++) {
        const struct rec *r = w->old.recs[i];
        bool hit = false;
        for (size_t k = 0; k < n && !hit; k++)
            hit = covered(w->old.paths[i], r->path_len, hints[k], strlen(hints[k]));
        if (hit)
            continue;
        w->stats.files++;
        rc = ah_buf_append(&w->out, r, sizeof(*r) + r->path_len);
    }
    return rc;
}

static int hint_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Normalised, sorted, without duplicates or paths under another hint. NULL on bad input. */
static char **clean_hints(const char *const *paths, size_t n, size_t *ret_n, int *ret_rc) {
    char **v = calloc(n ? n : 1, sizeof(*v));
    *ret_rc = v ? 0 : AH_E_NOMEM;
    size_t k = 0;
    for (size_t i = 0; v && i < n; i++) {
        char norm[WS_PATH_MAX + 1];
        if (!paths[i] || ws_path_normalise(paths[i], strlen(paths[i]), norm) < 0) {
            *ret_rc = AH_E_INVAL;
            break;
        }
        if (!*norm) { /* the root itself: everything */
            *ret_rc = 1;
            break;
        }
        if (!(v[k++] = strdup(norm))) {
            *ret_rc = AH_E_NOMEM;
            break;
        }
    }
    if (v && *ret_rc == 0) {
        qsort(v, k, sizeof(*v), hint_cmp);
        size_t m = 0; /* sorted: a path under another follows it closely, after its siblings */
        for (size_t i = 0; i < k; i++) {
            bool under = false;
            for (size_t j = 0; j < m && !under; j++)
                under = covered(v[i], strlen(v[i]), v[j], strlen(v[j]));
            if (under)
                free(v[i]);
            else
                v[m++] = v[i];
        }
        k = m;
    }
    if (*ret_rc != 0 && v) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return NULL;
    }
    *ret_n = k;
    return v;
}

static void hints_free(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static int snapshot(struct ws_store *st, const char *workdir, const char *label,
                    const char *const *paths, size_t npaths, char ret_id[WS_SNAP_ID_LEN + 1],
                    struct ws_snapshot_stats *ret_stats);

int ws_snapshot(struct ws_store *st, const char *workdir, const char *label,
                char ret_id[WS_SNAP_ID_LEN + 1], struct ws_snapshot_stats *ret_stats) {
    return snapshot(st, workdir, label, NULL, 0, ret_id, ret_stats);
}

int ws_snapshot_changed(struct ws_store *st, const char *workdir, const char *label,
                        const char *const *paths, size_t npaths, char ret_id[WS_SNAP_ID_LEN + 1],
                        struct ws_snapshot_stats *ret_stats) {
    if (!paths && npaths)
        return AH_E_INVAL;
    return snapshot(st, workdir, label, paths ? paths : (const char *const[]){NULL}, npaths, ret_id,
                    ret_stats);
}

int ws_snapshot_as(struct ws_store *st, const char *snap, const char *label,
                   const char *cache_from, const char *workdir, char ret_id[WS_SNAP_ID_LEN + 1]) {
    git_tree *tree = NULL;
    int rc = snap && *snap ? ws_resolve_tree(st, snap, &tree) : AH_E_INVAL;
    if (rc < 0)
        return rc;
    char lockpath[4200];
    snprintf(lockpath, sizeof(lockpath), "%s/ah-snapshot.lock", st->dir);
    int lock = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0) {
        git_tree_free(tree);
        return ah_err_from_errno(errno);
    }
    while (flock(lock, LOCK_EX) < 0 && errno == EINTR)
        ;
    git_oid tree_oid = *git_tree_id(tree);
    git_tree_free(tree);
    if (cache_from) /* an optimisation: without it the next snapshot hashes every file */
        (void)cache_adopt(st, cache_from, workdir);
    rc = commit_tree(st, &tree_oid, label, time(NULL), ret_id);
    flock(lock, LOCK_UN);
    close(lock);
    return rc;
}

static int snapshot(struct ws_store *st, const char *workdir, const char *label,
                    const char *const *paths, size_t npaths, char ret_id[WS_SNAP_ID_LEN + 1],
                    struct ws_snapshot_stats *ret_stats) {
    if (!st || !workdir || !*workdir)
        return AH_E_INVAL;
    size_t nh = 0;
    char **hints = NULL;
    if (paths && npaths <= MAX_HINTS) {
        int hrc;
        hints = clean_hints(paths, npaths, &nh, &hrc);
        if (hrc < 0)
            return hrc;
    }
    char lockpath[4200], cachepath[4200];
    snprintf(lockpath, sizeof(lockpath), "%s/ah-snapshot.lock", st->dir);
    snprintf(cachepath, sizeof(cachepath), "%s/ah-statcache", st->dir);
    int root = open(workdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int lock = root < 0 ? -1 : open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0) {
        int err = ah_err_from_errno(errno);
        if (root >= 0)
            close(root);
        hints_free(hints, nh);
        return err;
    }
    while (flock(lock, LOCK_EX) < 0 && errno == EINTR)
        ;
    struct walk w = {.st = st, .out = {.max = (size_t)1 << 32}};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    w.start_ns = ts_ns(&now);
    git_oid tree_oid;
    char id[WS_SNAP_ID_LEN + 1];
    bool empty = false;
    int rc = 0;

    w.buf = malloc(READ_CHUNK);
    if (!w.buf) {
        close(root);
        rc = AH_E_NOMEM;
        goto out;
    }
    cache_load(&w.old, cachepath, workdir);
    uint32_t wl = (uint32_t)strlen(workdir);
    if ((rc = ah_buf_append(&w.out, CACHE_MAGIC, sizeof(CACHE_MAGIC) - 1)) < 0 ||
        (rc = ah_buf_append(&w.out, &wl, 4)) < 0 || (rc = ah_buf_append(&w.out, workdir, wl)) < 0) {
        close(root);
        goto out;
    }
    git_oid parent_oid;
    bool have_parent = git_reference_name_to_id(&parent_oid, st->repo, HEAD_REF) == 0;
    if (hints && have_parent && w.old.loaded) {
        /* only the named paths changed (the caller's watcher says so): start from the parent */
        git_commit *pc = NULL;
        git_tree *base = NULL;
        rc = git_commit_lookup(&pc, st->repo, &parent_oid) < 0 || git_commit_tree(&base, pc) < 0
                 ? AH_E_IO
                 : hinted_tree(&w, root, base, hints, nh, &tree_oid);
        git_tree_free(base);
        git_commit_free(pc);
        if (rc < 0) {
            close(root);
            goto out;
        }
        if (rc == 0) {
            close(root);
            goto have_tree;
        }
        /* rc == 1: start again with a full walk */
        struct ws_snapshot_stats zero = {0};
        w.stats = zero;
        w.out.n = 0;
        if ((rc = ah_buf_append(&w.out, CACHE_MAGIC, sizeof(CACHE_MAGIC) - 1)) < 0 ||
            (rc = ah_buf_append(&w.out, &wl, 4)) < 0 ||
            (rc = ah_buf_append(&w.out, workdir, wl)) < 0) {
            close(root);
            goto out;
        }
    }
    rc = walk_dir(&w, root, 0, 0, &tree_oid, &empty);
    if (rc < 0)
        goto out;
    if (empty) { /* nothing recorded: the empty tree, written through an empty builder */
        git_treebuilder *tb = NULL;
        if (git_treebuilder_new(&tb, st->repo, NULL) < 0 ||
            git_treebuilder_write(&tree_oid, tb) < 0)
            rc = AH_E_IO;
        git_treebuilder_free(tb);
        if (rc < 0)
            goto out;
    }
have_tree:
    if ((rc = commit_tree(st, &tree_oid, label, now.tv_sec, id)) < 0)
        goto out;
    /* the cache is an optimisation: failing to write it costs the next snapshot time only */
    (void)write_file_atomic(cachepath, w.out.p, w.out.n);
    memcpy(ret_id, id, sizeof(id));
    if (ret_stats)
        *ret_stats = w.stats;
out:
    cache_clear(&w.old);
    ah_buf_clear(&w.out);
    free(w.buf);
    flock(lock, LOCK_UN);
    close(lock);
    hints_free(hints, nh);
    return rc;
}

/* ---- metadata -------------------------------------------------------------------------------- */

static int lookup_commit(struct ws_store *st, const char *id, git_commit **ret) {
    char refname[64];
    int rc = id_ref(id, refname);
    if (rc < 0)
        return rc;
    git_oid oid;
    if ((rc = git_reference_name_to_id(&oid, st->repo, refname)) < 0)
        return rc == GIT_ENOTFOUND ? AH_E_NOTFOUND : AH_E_IO;
    return git_commit_lookup(ret, st->repo, &oid) < 0 ? AH_E_IO : 0;
}

/* The snapshot id recorded in a commit's message ("Snapshot: snap-…"). */
static void commit_snap_id(const git_commit *c, char out[WS_SNAP_ID_LEN + 1]) {
    out[0] = '\0';
    const char *m = git_commit_message(c), *p = m ? strstr(m, "\n\nSnapshot: ") : NULL;
    if (p && strlen(p + 12) >= WS_SNAP_ID_LEN) {
        memcpy(out, p + 12, WS_SNAP_ID_LEN);
        out[WS_SNAP_ID_LEN] = '\0';
    }
}

int ws_snapshot_info(struct ws_store *st, const char *id, struct ws_snapshot_info *ret) {
    git_commit *c = NULL, *p = NULL;
    int rc = lookup_commit(st, id, &c);
    if (rc < 0)
        return rc;
    struct ws_snapshot_info info = {0};
    snprintf(info.id, sizeof(info.id), "%s", id);
    if (git_commit_parentcount(c) > 0 && git_commit_parent(&p, c, 0) == 0)
        commit_snap_id(p, info.parent);
    git_oid_tostr(info.tree, sizeof(info.tree), git_commit_tree_id(c));
    info.created_ms = (int64_t)ulid_time_ms(id + 5);
    const char *m = git_commit_message(c);
    const char *end = strstr(m, "\n\nSnapshot: ");
    info.label = strndup(m, end ? (size_t)(end - m) : strlen(m));
    git_commit_free(p);
    git_commit_free(c);
    if (!info.label)
        return AH_E_NOMEM;
    *ret = info;
    return 0;
}

void ws_snapshot_info_clear(struct ws_snapshot_info *info) {
    if (!info)
        return;
    free(info->label);
    info->label = NULL;
}

int ws_snapshot_latest(struct ws_store *st, char ret_id[WS_SNAP_ID_LEN + 1]) {
    git_oid oid;
    git_commit *c = NULL;
    int rc = git_reference_name_to_id(&oid, st->repo, HEAD_REF);
    if (rc < 0)
        return rc == GIT_ENOTFOUND ? AH_E_NOTFOUND : AH_E_IO;
    if (git_commit_lookup(&c, st->repo, &oid) < 0)
        return AH_E_IO;
    char id[WS_SNAP_ID_LEN + 1];
    commit_snap_id(c, id);
    git_commit_free(c);
    if (!*id)
        return AH_E_IO;
    memcpy(ret_id, id, sizeof(id));
    return 0;
}

int ws_resolve_tree(struct ws_store *st, const char *snap, git_tree **ret) {
    if (!snap || !*snap) {
        *ret = NULL;
        return 0;
    }
    git_commit *c = NULL;
    int rc = lookup_commit(st, snap, &c);
    if (rc < 0)
        return rc;
    rc = git_commit_tree(ret, c) < 0 ? AH_E_IO : 0;
    git_commit_free(c);
    return rc;
}

/* ---- trees and reads ------------------------------------------------------------------------- */

void ws_entries_clear(struct ws_entries *e) {
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i].path);
    free(e->v);
    e->v = NULL;
    e->n = 0;
}

static int fill_entry(struct ws_store *st, const git_tree_entry *te, const char *path,
                      struct ws_entry *ret) {
    git_filemode_t fm = git_tree_entry_filemode(te);
    struct ws_entry e = {.mode = (uint32_t)fm,
                         .type = fm == GIT_FILEMODE_TREE   ? WS_DIR
                                 : fm == GIT_FILEMODE_LINK ? WS_SYMLINK
                                                           : WS_FILE};
    if (e.type != WS_DIR) {
        size_t len;
        git_object_t t;
        if (git_odb_read_header(&len, &t, st->odb, git_tree_entry_id(te)) < 0)
            return AH_E_IO;
        e.size = len;
    }
    if (!(e.path = strdup(path)))
        return AH_E_NOMEM;
    *ret = e;
    return 0;
}

struct tree_walk {
    struct ws_store *st;
    struct ws_entries *out;
    size_t cap;
    const char *base; /* dir prefix, "" for the root */
    bool recursive;
    int rc;
};

static int tree_cb(const char *root, const git_tree_entry *te, void *payload) {
    struct tree_walk *tw = payload;
    char path[WS_PATH_MAX * 2 + 2];
    snprintf(path, sizeof(path), "%s%s%s%s", tw->base, *tw->base ? "/" : "", root,
             git_tree_entry_name(te));
    if (tw->out->n == tw->cap) {
        size_t nc = tw->cap ? tw->cap * 2 : 64;
        struct ws_entry *nv = realloc(tw->out->v, nc * sizeof(*nv));
        if (!nv) {
            tw->rc = AH_E_NOMEM;
            return -1;
        }
        tw->out->v = nv;
        tw->cap = nc;
    }
    int rc = fill_entry(tw->st, te, path, &tw->out->v[tw->out->n]);
    if (rc < 0) {
        tw->rc = rc;
        return -1;
    }
    tw->out->n++;
    return tw->recursive ? 0 : 1; /* 1: do not descend */
}

int ws_tree(struct ws_store *st, const char *snap, const char *dir, bool recursive,
            struct ws_entries *ret) {
    git_tree *root = NULL, *sub = NULL;
    git_tree_entry *te = NULL;
    int rc = ws_resolve_tree(st, snap, &root);
    if (rc < 0)
        return rc;
    struct ws_entries out = {0};
    struct tree_walk tw = {.st = st, .out = &out, .base = dir ? dir : "", .recursive = recursive};
    if (!root) {
        rc = dir && *dir ? AH_E_NOTFOUND : 0;
        goto done;
    }
    git_tree *t = root;
    if (dir && *dir) {
        if (git_tree_entry_bypath(&te, root, dir) < 0 ||
            git_tree_entry_type(te) != GIT_OBJECT_TREE) {
            rc = AH_E_NOTFOUND;
            goto done;
        }
        if (git_tree_lookup(&sub, st->repo, git_tree_entry_id(te)) < 0) {
            rc = AH_E_IO;
            goto done;
        }
        t = sub;
    }
    if (git_tree_walk(t, GIT_TREEWALK_PRE, tree_cb, &tw) < 0 && tw.rc == 0)
        tw.rc = AH_E_IO;
    rc = tw.rc;
done:
    git_tree_entry_free(te);
    git_tree_free(sub);
    git_tree_free(root);
    if (rc < 0) {
        ws_entries_clear(&out);
        return rc;
    }
    *ret = out;
    return 0;
}

static int lookup_path(struct ws_store *st, const char *snap, const char *path,
                       git_tree_entry **ret) {
    if (!path || !*path)
        return AH_E_INVAL;
    git_tree *root = NULL;
    int rc = ws_resolve_tree(st, snap, &root);
    if (rc < 0)
        return rc;
    if (!root)
        return AH_E_NOTFOUND;
    rc = git_tree_entry_bypath(ret, root, path);
    git_tree_free(root);
    return rc == GIT_ENOTFOUND ? AH_E_NOTFOUND : rc < 0 ? AH_E_IO : 0;
}

int ws_stat(struct ws_store *st, const char *snap, const char *path, struct ws_entry *ret) {
    git_tree_entry *te = NULL;
    int rc = lookup_path(st, snap, path, &te);
    if (rc < 0)
        return rc;
    rc = fill_entry(st, te, path, ret);
    git_tree_entry_free(te);
    return rc;
}

int ws_read(struct ws_store *st, const char *snap, const char *path, size_t cap,
            struct ws_blob *ret) {
    git_tree_entry *te = NULL;
    int rc = lookup_path(st, snap, path, &te);
    if (rc < 0)
        return rc;
    git_blob *blob = NULL;
    struct ws_blob b = {.mode = (uint32_t)git_tree_entry_filemode(te)};
    size_t len;
    git_object_t type;
    if (git_tree_entry_type(te) != GIT_OBJECT_BLOB) {
        rc = AH_E_INVAL;
        goto out;
    }
    if (git_odb_read_header(&len, &type, st->odb, git_tree_entry_id(te)) < 0) {
        rc = AH_E_IO;
        goto out;
    }
    if (len > cap) {
        rc = AH_E_TOOLARGE;
        goto out;
    }
    if (git_blob_lookup(&blob, st->repo, git_tree_entry_id(te)) < 0) {
        rc = AH_E_IO;
        goto out;
    }
    b.size = (size_t)git_blob_rawsize(blob);
    if (b.size > cap) {
        rc = AH_E_TOOLARGE;
        goto out;
    }
    if (!(b.data = malloc(b.size + 1))) {
        rc = AH_E_NOMEM;
        goto out;
    }
    memcpy(b.data, git_blob_rawcontent(blob), b.size);
    b.data[b.size] = '\0';
    *ret = b;
out:
    git_blob_free(blob);
    git_tree_entry_free(te);
    return rc;
}

void ws_blob_clear(struct ws_blob *b) {
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->size = 0;
}
