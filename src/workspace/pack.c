/*
 * pack.c — small objects of a store in one append-only pack file (issue 12: a snapshot after a
 * one-file change wrote four loose objects, each a file of its own: 16 KiB on disk for 3 KiB of
 * data, as a filesystem block is 4 KiB).
 *
 * A libgit2 odb backend, tried before the loose one: objects up to PACK_OBJ_MAX bytes are
 * appended, zlib-compressed, to `objects/ahpack/<gen>.pack`, and a fixed-size record (oid,
 * type, size, offset, compressed length, time) to `<gen>.idx`; larger objects are passed on to
 * libgit2's loose backend (a file each, as before). Reading looks the oid up in the index (read
 * lazily, on the first lookup) and inflates the record. Loose objects of stores written before
 * stay readable (the loose backend is still there), so nothing is migrated.
 *
 * Concurrency: appends take an flock on `ahpack/lock` (two processes never interleave records);
 * the data is written before its index record, so a reader never finds a record whose bytes are
 * not there. A reader that misses an object re-reads the index's tail (libgit2 refreshes the
 * backends on a miss). Freeing (ws_pack_gc) copies the records still needed into generation
 * gen+1 and unlinks generation gen; a handle that still has gen open keeps reading its (unlinked)
 * files, and moves to the newest generation on its next refresh or append.
 *
 * Borrowed stores (a branch's alternates) get a read-only instance of this backend for each
 * alternate objects directory, as libgit2 does for its own backends.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <git2/sys/odb_backend.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "internal.h"

#define PACK_OBJ_MAX (32 * 1024) /* raw bytes; larger objects stay loose */
#define PACK_PRIORITY 3          /* before libgit2's packed (2) and loose (1) backends */
#define IDX_MAGIC "AHPI1\n\0\0"
#define PACK_MAGIC "AHPK1\n\0\0"
#define MAGIC_LEN 8
#define MAX_ALT_DEPTH 5 /* as libgit2's alternates */

struct idx_rec {
    uint8_t oid[GIT_OID_RAWSZ];
    uint8_t type;
    uint8_t pad[3];
    uint32_t zlen;
    uint64_t off;
    uint64_t size;
    int64_t time_s; /* written or last freshened (the GC's grace period) */
} __attribute__((packed));

struct pent {
    git_oid oid; /* all zero: an empty slot */
    uint64_t off, size, idxpos;
    uint32_t zlen;
    uint8_t type;
};

struct ahpack {
    git_odb_backend parent;
    char *dir; /* <objects>/ahpack */
    bool writable;
    bool loaded;
    uint64_t gen; /* 0: none open */
    int pack_fd, idx_fd;
    uint64_t idx_done; /* bytes of the idx parsed */
    struct pent *v;
    size_t cap, n;
};

/* ---- the in-memory index ------------------------------------------------------------------- */

static size_t slot(const struct ahpack *p, const git_oid *o) {
    uint64_t h;
    memcpy(&h, o->id, sizeof(h));
    size_t i = (size_t)h & (p->cap - 1);
    while (!git_oid_is_zero(&p->v[i].oid) && git_oid_cmp(&p->v[i].oid, o) != 0)
        i = (i + 1) & (p->cap - 1);
    return i;
}

static const struct pent *find(const struct ahpack *p, const git_oid *o) {
    if (!p->cap)
        return NULL;
    const struct pent *e = &p->v[slot(p, o)];
    return git_oid_is_zero(&e->oid) ? NULL : e;
}

static int put(struct ahpack *p, const struct pent *e) {
    if ((p->n + 1) * 2 > p->cap) {
        struct ahpack g = {.cap = p->cap ? p->cap * 2 : 1024};
        if (!(g.v = calloc(g.cap, sizeof(*g.v))))
            return AH_E_NOMEM;
        for (size_t i = 0; i < p->cap; i++)
            if (!git_oid_is_zero(&p->v[i].oid))
                g.v[slot(&g, &p->v[i].oid)] = p->v[i];
        free(p->v);
        p->v = g.v;
        p->cap = g.cap;
    }
    struct pent *s = &p->v[slot(p, &e->oid)];
    if (git_oid_is_zero(&s->oid))
        p->n++;
    *s = *e;
    return 0;
}

static void close_gen(struct ahpack *p) {
    if (p->pack_fd >= 0)
        close(p->pack_fd);
    if (p->idx_fd >= 0)
        close(p->idx_fd);
    p->pack_fd = p->idx_fd = -1;
    p->gen = 0;
    p->idx_done = 0;
    free(p->v);
    p->v = NULL;
    p->cap = p->n = 0;
}

/* The newest generation with an index in dir, 0 when none. */
static uint64_t newest_gen(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t best = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end = NULL;
        uint64_t g = strtoull(de->d_name, &end, 16);
        if (end && strcmp(end, ".idx") == 0 && end - de->d_name == 16 && g > best)
            best = g;
    }
    closedir(d);
    return best;
}

static void gen_path(const struct ahpack *p, uint64_t gen, const char *ext, char *out, size_t n) {
    snprintf(out, n, "%s/%016" PRIx64 ".%s", p->dir, gen, ext);
}

/* Parses the index records appended since the last parse. */
static int load_tail(struct ahpack *p) {
    struct stat is, ps;
    if (fstat(p->idx_fd, &is) < 0 || fstat(p->pack_fd, &ps) < 0)
        return AH_E_IO;
    uint64_t end = (uint64_t)is.st_size;
    if (p->idx_done < MAGIC_LEN)
        p->idx_done = MAGIC_LEN;
    end = p->idx_done + (end - p->idx_done) / sizeof(struct idx_rec) * sizeof(struct idx_rec);
    if (end <= p->idx_done)
        return 0;
    size_t len = (size_t)(end - p->idx_done);
    char *buf = malloc(len);
    if (!buf)
        return AH_E_NOMEM;
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(p->idx_fd, buf + got, len - got, (off_t)(p->idx_done + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    int rc = 0;
    size_t whole = got / sizeof(struct idx_rec) * sizeof(struct idx_rec);
    for (size_t o = 0; rc == 0 && o < whole; o += sizeof(struct idx_rec)) {
        struct idx_rec r;
        memcpy(&r, buf + o, sizeof(r));
        if (r.off < MAGIC_LEN || r.off + r.zlen > (uint64_t)ps.st_size)
            continue; /* torn: its bytes never made it */
        struct pent e = {.off = r.off, .size = r.size, .zlen = r.zlen, .type = r.type,
                         .idxpos = p->idx_done + o};
        memcpy(e.oid.id, r.oid, GIT_OID_RAWSZ);
        if (!git_oid_is_zero(&e.oid))
            rc = put(p, &e);
    }
    free(buf);
    if (rc == 0)
        p->idx_done += whole;
    return rc;
}

/* Opens the newest generation (dropping what was loaded) and reads its index. 0 also when
 * there is none. */
static int open_newest(struct ahpack *p) {
    close_gen(p);
    for (int attempt = 0; attempt < 5; attempt++) {
        uint64_t g = newest_gen(p->dir);
        if (!g)
            return 0;
        char path[4400];
        gen_path(p, g, "pack", path, sizeof(path));
        int pfd = open(path, (p->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        gen_path(p, g, "idx", path, sizeof(path));
        int ifd = pfd < 0 ? -1 : open(path, (p->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        if (ifd < 0) { /* replaced meanwhile by a newer generation: look again */
            if (pfd >= 0)
                close(pfd);
            continue;
        }
        p->pack_fd = pfd;
        p->idx_fd = ifd;
        p->gen = g;
        return load_tail(p);
    }
    return AH_E_IO;
}

/* Up to date with the files: a new generation is opened, new records of this one are read.
 * The open generation is current while its index is linked: GC unlinks it only after the next
 * one is in place (and under the lock, so no append is lost to the old one). */
static int sync_files(struct ahpack *p) {
    struct stat sb;
    if (!p->loaded || !p->gen || fstat(p->idx_fd, &sb) < 0 || sb.st_nlink == 0) {
        p->loaded = true;
        return open_newest(p);
    }
    return load_tail(p);
}

static int ensure_loaded(struct ahpack *p) {
    return p->loaded ? 0 : sync_files(p);
}

/* ---- the backend's calls ------------------------------------------------------------------- */

static int pk_read_header(size_t *len, git_object_t *type, git_odb_backend *b, const git_oid *o) {
    struct ahpack *p = (struct ahpack *)b;
    if (ensure_loaded(p) < 0)
        return GIT_ERROR;
    const struct pent *e = find(p, o);
    if (!e)
        return GIT_ENOTFOUND;
    *len = (size_t)e->size;
    *type = (git_object_t)e->type;
    return 0;
}

static int pk_read(void **data, size_t *len, git_object_t *type, git_odb_backend *b,
                   const git_oid *o) {
    struct ahpack *p = (struct ahpack *)b;
    if (ensure_loaded(p) < 0)
        return GIT_ERROR;
    const struct pent *e = find(p, o);
    if (!e)
        return GIT_ENOTFOUND;
    unsigned char *z = malloc(e->zlen ? e->zlen : 1);
    char *out = git_odb_backend_data_alloc(b, (size_t)e->size + 1);
    if (!z || !out) {
        free(z);
        git_odb_backend_data_free(b, out);
        git_error_set_oom();
        return GIT_ERROR;
    }
    size_t got = 0;
    while (got < e->zlen) {
        ssize_t r = pread(p->pack_fd, z + got, e->zlen - got, (off_t)(e->off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    uLongf outlen = (uLongf)e->size;
    int zr = got == e->zlen ? uncompress((Bytef *)out, &outlen, z, e->zlen) : Z_DATA_ERROR;
    free(z);
    if (zr != Z_OK || outlen != e->size) {
        git_odb_backend_data_free(b, out);
        git_error_set_str(GIT_ERROR_ODB, "ahpack: a corrupt object record");
        return GIT_ERROR;
    }
    out[e->size] = '\0';
    *data = out;
    *len = (size_t)e->size;
    *type = (git_object_t)e->type;
    return 0;
}

static int pk_exists(git_odb_backend *b, const git_oid *o) {
    struct ahpack *p = (struct ahpack *)b;
    return ensure_loaded(p) == 0 && find(p, o) ? 1 : 0;
}

static int pk_refresh(git_odb_backend *b) {
    struct ahpack *p = (struct ahpack *)b;
    return p->loaded && sync_files(p) < 0 ? GIT_ERROR : 0;
}

static int lock_dir(const struct ahpack *p) {
    char path[4400];
    snprintf(path, sizeof(path), "%s/lock", p->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    while (flock(fd, LOCK_EX) < 0)
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    return fd;
}

static void unlock_dir(int fd) {
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

static int write_all(int fd, const void *data, size_t n) {
    const char *s = data;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Creates generation gen's two files with their headers (idx via a temporary name: a reader
 * only ever finds an index whose pack exists). Under the lock. */
static int create_gen(struct ahpack *p, uint64_t gen, int *ret_pfd, int *ret_ifd) {
    char pp[4400], ip[4400], tmp[4500];
    gen_path(p, gen, "pack", pp, sizeof(pp));
    gen_path(p, gen, "idx", ip, sizeof(ip));
    snprintf(tmp, sizeof(tmp), "%s.tmp", ip);
    int pfd = open(pp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int ifd = pfd < 0 ? -1 : open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (ifd < 0 || write_all(pfd, PACK_MAGIC, MAGIC_LEN) < 0 ||
        write_all(ifd, IDX_MAGIC, MAGIC_LEN) < 0) {
        if (pfd >= 0)
            close(pfd);
        if (ifd >= 0)
            close(ifd);
        unlink(pp);
        unlink(tmp);
        return AH_E_IO;
    }
    *ret_pfd = pfd;
    *ret_ifd = ifd;
    return 0;
}

static int publish_gen(struct ahpack *p, uint64_t gen) {
    char ip[4400], tmp[4500];
    gen_path(p, gen, "idx", ip, sizeof(ip));
    snprintf(tmp, sizeof(tmp), "%s.tmp", ip);
    return rename(tmp, ip) < 0 ? AH_E_IO : 0;
}

static int pk_write(git_odb_backend *b, const git_oid *o, const void *data, size_t len,
                    git_object_t type) {
    struct ahpack *p = (struct ahpack *)b;
    if (!p->writable || len > PACK_OBJ_MAX)
        return GIT_PASSTHROUGH; /* the loose backend writes it */
    if (ensure_loaded(p) < 0)
        return GIT_ERROR;
    if (find(p, o))
        return 0;
    uLongf zlen = compressBound((uLong)len);
    unsigned char *z = malloc(zlen);
    if (!z || compress2(z, &zlen, data, (uLong)len, Z_DEFAULT_COMPRESSION) != Z_OK) {
        free(z);
        return GIT_ERROR;
    }
    int rc = GIT_ERROR;
    if (mkdir(p->dir, 0700) < 0 && errno != EEXIST) {
        free(z);
        return GIT_PASSTHROUGH;
    }
    int lk = lock_dir(p);
    if (lk < 0) {
        free(z);
        return GIT_PASSTHROUGH;
    }
    if (sync_files(p) < 0)
        goto out;
    if (find(p, o)) { /* another handle wrote it meanwhile */
        rc = 0;
        goto out;
    }
    if (!p->gen) { /* the store's first packed object */
        int pfd, ifd;
        if (create_gen(p, 1, &pfd, &ifd) < 0)
            goto out;
        close(pfd);
        close(ifd);
        if (publish_gen(p, 1) < 0 || open_newest(p) < 0 || !p->gen)
            goto out;
    }
    off_t off = lseek(p->pack_fd, 0, SEEK_END);
    off_t ipos = off < 0 ? -1 : lseek(p->idx_fd, 0, SEEK_END);
    if (ipos < 0)
        goto out;
    /* a torn record of a crash is not a multiple of the record size: start after it */
    if ((ipos - MAGIC_LEN) % (off_t)sizeof(struct idx_rec))
        ipos += (off_t)sizeof(struct idx_rec) - (ipos - MAGIC_LEN) % (off_t)sizeof(struct idx_rec);
    struct idx_rec r = {.type = (uint8_t)type, .zlen = (uint32_t)zlen, .off = (uint64_t)off,
                        .size = len, .time_s = (int64_t)time(NULL)};
    memcpy(r.oid, o->id, GIT_OID_RAWSZ);
    if (write_all(p->pack_fd, z, zlen) < 0 ||
        pwrite(p->idx_fd, &r, sizeof(r), ipos) != (ssize_t)sizeof(r))
        goto out;
    rc = load_tail(p) < 0 ? GIT_ERROR : 0;
out:
    unlock_dir(lk);
    free(z);
    return rc;
}

/* A write of an object that exists already: its time moves, so a GC's grace period spares it. */
static int pk_freshen(git_odb_backend *b, const git_oid *o) {
    struct ahpack *p = (struct ahpack *)b;
    if (ensure_loaded(p) < 0)
        return GIT_ERROR;
    const struct pent *e = find(p, o);
    if (!e)
        return GIT_ENOTFOUND;
    int64_t now = (int64_t)time(NULL);
    int fd = p->idx_fd; /* read-only for a borrowed store: opened again to write */
    char path[4400];
    if (!p->writable) {
        gen_path(p, p->gen, "idx", path, sizeof(path));
        fd = open(path, O_WRONLY | O_CLOEXEC);
    }
    if (fd >= 0) {
        (void)!pwrite(fd, &now, sizeof(now),
                      (off_t)(e->idxpos + offsetof(struct idx_rec, time_s)));
        if (fd != p->idx_fd)
            close(fd);
    }
    return 0;
}

struct pstream {
    git_odb_stream s;
    char *buf;
    size_t n, cap;
    git_object_t type;
};

static int ps_write(git_odb_stream *s, const char *data, size_t len) {
    struct pstream *ps = (struct pstream *)s;
    if (len > ps->cap - ps->n) {
        git_error_set_str(GIT_ERROR_ODB, "ahpack: more bytes than declared");
        return GIT_ERROR;
    }
    memcpy(ps->buf + ps->n, data, len);
    ps->n += len;
    return 0;
}

static int ps_finalize(git_odb_stream *s, const git_oid *o) {
    struct pstream *ps = (struct pstream *)s;
    int rc = pk_write(s->backend, o, ps->buf, ps->n, ps->type);
    if (rc == GIT_PASSTHROUGH) { /* could not pack it: write it loose */
        git_odb *odb = s->backend->odb;
        git_odb_backend *loose = NULL;
        size_t nb = git_odb_num_backends(odb);
        rc = GIT_ERROR;
        for (size_t i = 0; i < nb && rc < 0; i++)
                if (git_odb_get_backend(&loose, odb, i) == 0 && loose != s->backend &&
                    loose->write)
                    rc = loose->write(loose, o, ps->buf, ps->n, ps->type);
    }
    return rc;
}

static void ps_free(git_odb_stream *s) {
    struct pstream *ps = (struct pstream *)s;
    free(ps->buf);
    free(ps);
}

static int pk_writestream(git_odb_stream **out, git_odb_backend *b, git_object_size_t size,
                          git_object_t type) {
    struct ahpack *p = (struct ahpack *)b;
    if (!p->writable || size > PACK_OBJ_MAX)
        return GIT_PASSTHROUGH; /* the loose backend streams it to its file */
    struct pstream *ps = calloc(1, sizeof(*ps));
    if (!ps || !(ps->buf = malloc(size ? (size_t)size : 1))) {
        free(ps);
        git_error_set_oom();
        return GIT_ERROR;
    }
    ps->cap = (size_t)size;
    ps->type = type;
    ps->s.backend = b;
    ps->s.mode = GIT_STREAM_WRONLY;
    ps->s.write = ps_write;
    ps->s.finalize_write = ps_finalize;
    ps->s.free = ps_free;
    *out = &ps->s;
    return 0;
}

static void pk_free(git_odb_backend *b) {
    struct ahpack *p = (struct ahpack *)b;
    close_gen(p);
    free(p->dir);
    free(p);
}

static int pack_new(const char *objects_dir, bool writable, struct ahpack **ret) {
    struct ahpack *p = calloc(1, sizeof(*p));
    if (!p)
        return AH_E_NOMEM;
    if (git_odb_init_backend(&p->parent, GIT_ODB_BACKEND_VERSION) < 0 ||
        asprintf(&p->dir, "%s/ahpack", objects_dir) < 0) {
        free(p);
        return AH_E_NOMEM;
    }
    p->pack_fd = p->idx_fd = -1;
    p->writable = writable;
    p->parent.read = pk_read;
    p->parent.read_header = pk_read_header;
    p->parent.exists = pk_exists;
    p->parent.refresh = pk_refresh;
    p->parent.freshen = pk_freshen;
    p->parent.free = pk_free;
    if (writable) {
        p->parent.write = pk_write;
        p->parent.writestream = pk_writestream;
    }
    *ret = p;
    return 0;
}

/* ---- attaching ----------------------------------------------------------------------------- */

static int attach_alternates(struct ws_store *st, const char *objects_dir, int depth);

int ws_pack_attach_alternate(struct ws_store *st, const char *objects_dir) {
    return attach_alternates(st, objects_dir, 0);
}

/* A read-only instance for objects_dir, then for the alternates it names in turn. */
static int attach_alternates(struct ws_store *st, const char *objects_dir, int depth) {
    if (depth > MAX_ALT_DEPTH)
        return 0;
    struct ahpack *p = NULL;
    int rc = pack_new(objects_dir, false, &p);
    if (rc < 0)
        return rc;
    if (git_odb_add_alternate(st->odb, &p->parent, PACK_PRIORITY) < 0) {
        pk_free(&p->parent);
        return AH_E_IO;
    }
    char path[4400];
    snprintf(path, sizeof(path), "%s/info/alternates", objects_dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char line[4400];
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '/') /* we only write absolute paths */
            rc = attach_alternates(st, line, depth + 1);
    }
    fclose(f);
    return rc;
}

int ws_pack_attach(struct ws_store *st) {
    char objects[4400];
    snprintf(objects, sizeof(objects), "%s/objects", st->dir);
    struct ahpack *p = NULL;
    int rc = pack_new(objects, true, &p);
    if (rc < 0)
        return rc;
    if (git_odb_add_backend(st->odb, &p->parent, PACK_PRIORITY) < 0) {
        pk_free(&p->parent);
        return AH_E_IO;
    }
    st->pack = p;
    char path[4400];
    snprintf(path, sizeof(path), "%s/info/alternates", objects);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char line[4400];
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '/')
            rc = attach_alternates(st, line, 1);
    }
    fclose(f);
    return rc;
}

/* ---- sizes and freeing --------------------------------------------------------------------- */

uint64_t ws_pack_added_bytes(struct ws_store *st, const git_oid *oid) {
    struct ahpack *p = st->pack;
    if (!p || ensure_loaded(p) < 0)
        return 0;
    const struct pent *e = find(p, oid);
    return e ? e->zlen + sizeof(struct idx_rec) : 0;
}

static uint64_t blocks(int fd) {
    struct stat sb;
    return fd >= 0 && fstat(fd, &sb) == 0 ? (uint64_t)sb.st_blocks * 512 : 0;
}

int ws_pack_gc(struct ws_store *st, bool (*keep)(void *ctx, const git_oid *oid), void *ctx,
               int64_t cutoff_s, uint64_t *ret_freed) {
    struct ahpack *p = st->pack;
    *ret_freed = 0;
    if (!p)
        return 0;
    struct stat sb;
    if (stat(p->dir, &sb) < 0)
        return 0; /* nothing was ever packed */
    int lk = lock_dir(p);
    if (lk < 0)
        return AH_E_IO;
    p->loaded = false;
    int rc = sync_files(p);
    if (rc < 0 || !p->gen)
        goto out;
    /* the records in file order: read the index again */
    struct stat is;
    if (fstat(p->idx_fd, &is) < 0) {
        rc = AH_E_IO;
        goto out;
    }
    size_t n = ((size_t)is.st_size - MAGIC_LEN) / sizeof(struct idx_rec);
    struct idx_rec *recs = malloc((n ? n : 1) * sizeof(*recs));
    if (!recs) {
        rc = AH_E_NOMEM;
        goto out;
    }
    if (pread(p->idx_fd, recs, n * sizeof(*recs), MAGIC_LEN) != (ssize_t)(n * sizeof(*recs))) {
        free(recs);
        rc = AH_E_IO;
        goto out;
    }
    size_t drop = 0;
    uint64_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        git_oid o;
        memcpy(o.id, recs[i].oid, GIT_OID_RAWSZ);
        const struct pent *e = find(p, &o);
        bool live = e && e->idxpos == MAGIC_LEN + i * sizeof(struct idx_rec); /* not a dup */
        if (!live || (!keep(ctx, &o) && recs[i].time_s <= cutoff_s)) {
            dropped += recs[i].zlen + sizeof(struct idx_rec);
            recs[i].zlen = UINT32_MAX; /* marks a dropped record */
            drop++;
        }
    }
    if (drop == 0) {
        free(recs);
        goto out;
    }
    uint64_t before = blocks(p->pack_fd) + blocks(p->idx_fd), g = p->gen + 1;
    /* what left the pack: its records' bytes, or the blocks the files shrank by when more (a
     * small record rarely frees a whole block, yet it is gone) */
    int pfd = -1, ifd = -1;
    rc = create_gen(p, g, &pfd, &ifd);
    uint64_t off = MAGIC_LEN;
    char *buf = rc == 0 ? malloc(PACK_OBJ_MAX + 1024) : NULL;
    if (rc == 0 && !buf)
        rc = AH_E_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (recs[i].zlen == UINT32_MAX)
            continue;
        struct idx_rec r = recs[i];
        char *big = r.zlen > PACK_OBJ_MAX + 1024 ? malloc(r.zlen) : NULL;
        char *b = big ? big : buf;
        if (r.zlen > PACK_OBJ_MAX + 1024 && !big)
            rc = AH_E_NOMEM;
        else if (pread(p->pack_fd, b, r.zlen, (off_t)r.off) != (ssize_t)r.zlen ||
                 write_all(pfd, b, r.zlen) < 0)
            rc = AH_E_IO;
        r.off = off;
        off += r.zlen;
        if (rc == 0 && write_all(ifd, &r, sizeof(r)) < 0)
            rc = AH_E_IO;
        free(big);
    }
    free(buf);
    free(recs);
    uint64_t after = blocks(pfd) + blocks(ifd);
    if (pfd >= 0)
        close(pfd);
    if (ifd >= 0)
        close(ifd);
    char pp[4400], ip[4400];
    if (rc == 0)
        rc = publish_gen(p, g);
    if (rc < 0) { /* nothing changed: the old generation stays */
        gen_path(p, g, "pack", pp, sizeof(pp));
        gen_path(p, g, "idx", ip, sizeof(ip));
        unlink(pp);
        strcat(ip, ".tmp");
        unlink(ip);
        goto out;
    }
    gen_path(p, g - 1, "idx", ip, sizeof(ip));
    gen_path(p, g - 1, "pack", pp, sizeof(pp));
    unlink(ip);
    unlink(pp);
    *ret_freed = before > after && before - after > dropped ? before - after : dropped;
    rc = open_newest(p);
out:
    unlock_dir(lk);
    return rc;
}
