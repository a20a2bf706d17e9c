/*
 * sqlite_fault.c — a test-only SQLite VFS shim that makes the database's writes fail as a full
 * disk or a failing disk would (issue 18 item 5, D50), so the chaos tests can prove what the
 * server does then without filling a real file system.
 *
 * Only with AH_TEST_HOOKS=1 and AH_TEST_FAULT_FILE=<path>: while <path> exists, every write,
 * truncate and sync of the database's files (main file, WAL, journal) fails: with SQLITE_FULL
 * when the file says "ENOSPC", with SQLITE_IOERR_WRITE / _FSYNC / _TRUNCATE when it says "EIO".
 * That is what the unix VFS itself returns for those errnos. Reads are untouched. Removing the
 * file is "space came back". Everything else is forwarded to the default VFS unchanged.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sqlite_internal.h"

struct ffile {
    sqlite3_file base;  /* pMethods = &fault_io */
    sqlite3_file *real; /* follows this struct in the same allocation */
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fault_vfs;
static sqlite3_io_methods fault_io;
static const char *fault_path;

/* 0: no fault now; SQLITE_FULL or SQLITE_IOERR: the kind of fault. */
static int fault_now(void) {
    int fd = open(fault_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[16] = {0};
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    return n > 0 && strncmp(buf, "EIO", 3) == 0 ? SQLITE_IOERR : SQLITE_FULL;
}

#define REAL(f) (((struct ffile *)(f))->real)

static int f_close(sqlite3_file *f) {
    return REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
}
static int f_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off) {
    return REAL(f)->pMethods->xRead(REAL(f), p, n, off);
}
static int f_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off) {
    int k = fault_now();
    if (k)
        return k == SQLITE_FULL ? SQLITE_FULL : SQLITE_IOERR_WRITE;
    return REAL(f)->pMethods->xWrite(REAL(f), p, n, off);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 size) {
    int k = fault_now();
    if (k)
        return k == SQLITE_FULL ? SQLITE_FULL : SQLITE_IOERR_TRUNCATE;
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int f_sync(sqlite3_file *f, int flags) {
    if (fault_now() == SQLITE_IOERR)
        return SQLITE_IOERR_FSYNC; /* a full disk fails the write before it, not the sync */
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *ret) {
    return REAL(f)->pMethods->xFileSize(REAL(f), ret);
}
static int f_lock(sqlite3_file *f, int l) {
    return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int f_unlock(sqlite3_file *f, int l) {
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int f_check(sqlite3_file *f, int *ret) {
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), ret);
}
static int f_control(sqlite3_file *f, int op, void *arg) {
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int f_sector(sqlite3_file *f) {
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int f_caps(sqlite3_file *f) {
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int f_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **ret) {
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, ret);
}
static int f_shm_lock(sqlite3_file *f, int off, int n, int flags) {
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void f_shm_barrier(sqlite3_file *f) {
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int f_shm_unmap(sqlite3_file *f, int del) {
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **ret) {
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, ret);
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static int f_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *ret_flags) {
    (void)vfs;
    struct ffile *ff = (struct ffile *)f;
    ff->real = (sqlite3_file *)(ff + 1);
    int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, ret_flags);
    /* xClose is called even after a failed open when pMethods is set: forward it then too */
    ff->base.pMethods = ff->real->pMethods ? &fault_io : NULL;
    return rc;
}

static int f_delete(sqlite3_vfs *v, const char *n, int sync) {
    (void)v;
    return real_vfs->xDelete(real_vfs, n, sync);
}
static int f_access(sqlite3_vfs *v, const char *n, int flags, int *ret) {
    (void)v;
    return real_vfs->xAccess(real_vfs, n, flags, ret);
}
static int f_full(sqlite3_vfs *v, const char *n, int size, char *out) {
    (void)v;
    return real_vfs->xFullPathname(real_vfs, n, size, out);
}
static int f_random(sqlite3_vfs *v, int n, char *out) {
    (void)v;
    return real_vfs->xRandomness(real_vfs, n, out);
}
static int f_sleep(sqlite3_vfs *v, int us) {
    (void)v;
    return real_vfs->xSleep(real_vfs, us);
}
static int f_time(sqlite3_vfs *v, double *ret) {
    (void)v;
    return real_vfs->xCurrentTime(real_vfs, ret);
}
static int f_last_error(sqlite3_vfs *v, int n, char *out) {
    (void)v;
    return real_vfs->xGetLastError(real_vfs, n, out);
}
static int f_time64(sqlite3_vfs *v, sqlite3_int64 *ret) {
    (void)v;
    return real_vfs->xCurrentTimeInt64(real_vfs, ret);
}

static const char *registered;
static void do_register(void) {
    const char *hooks = getenv("AH_TEST_HOOKS");
    const char *path = getenv("AH_TEST_FAULT_FILE");
    if (!hooks || strcmp(hooks, "1") != 0 || !path || !*path ||
        !(real_vfs = sqlite3_vfs_find(NULL)))
        return;
    if (!(fault_path = strdup(path)))
        return;
    fault_io = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = f_close,
        .xRead = f_read,
        .xWrite = f_write,
        .xTruncate = f_truncate,
        .xSync = f_sync,
        .xFileSize = f_size,
        .xLock = f_lock,
        .xUnlock = f_unlock,
        .xCheckReservedLock = f_check,
        .xFileControl = f_control,
        .xSectorSize = f_sector,
        .xDeviceCharacteristics = f_caps,
        .xShmMap = f_shm_map,
        .xShmLock = f_shm_lock,
        .xShmBarrier = f_shm_barrier,
        .xShmUnmap = f_shm_unmap,
        .xFetch = f_fetch,
        .xUnfetch = f_unfetch,
    };
    fault_vfs = *real_vfs;
    fault_vfs.szOsFile = (int)sizeof(struct ffile) + real_vfs->szOsFile;
    fault_vfs.zName = "ah-fault";
    fault_vfs.pNext = NULL;
    fault_vfs.xOpen = f_open;
    fault_vfs.xDelete = f_delete;
    fault_vfs.xAccess = f_access;
    fault_vfs.xFullPathname = f_full;
    fault_vfs.xRandomness = f_random;
    fault_vfs.xSleep = f_sleep;
    fault_vfs.xCurrentTime = f_time;
    fault_vfs.xGetLastError = f_last_error;
    fault_vfs.xCurrentTimeInt64 = f_time64;
    /* dlopen & co. and the system-call overrides stay the real VFS's (copied above) */
    if (sqlite3_vfs_register(&fault_vfs, 0) == SQLITE_OK)
        registered = fault_vfs.zName;
}

const char *sq_fault_vfs(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, do_register);
    return registered;
}
