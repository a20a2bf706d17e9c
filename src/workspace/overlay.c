/*
 * overlay.c — a branch's workspace as an overlay mount (D34: "an overlay where the kernel
 * allows"): the branch point written out once as a shared, never-written lower layer (its files
 * with their real modes: the agent must be able to write them), and per branch an upper and a
 * work directory that receive everything the branch changes. Mounting takes a few milliseconds
 * whatever the workspace's size; the layer is written by the first branch from a point only.
 *
 * On disk (the caller chooses the places; exec/branch.c uses these):
 *   <layer>             the snapshot written out (ws_layer_write, checkout.c)
 *   <layer>.statcache   the stat cache of what was written (adopted by ws_snapshot_as)
 *   <layer>.users/<n>   one empty file per branch whose workspace <…>/<n> uses the layer: the
 *                       layer is removed with its last user, never before (a mount that is
 *                       gone after a reboot still counts: it is mounted again at start)
 *   <ovdir>/lower       the layer's path (what ws_overlay_remount and ws_overlay_release read)
 *   <ovdir>/upper, <ovdir>/work   the overlay's own directories
 *
 * The mount lives in the calling process's mount namespace: the server's, so the server reads
 * the merged tree, and a sandbox that binds the workspace path sees the same mount. It outlives
 * the process (a restarted server finds it); a reboot loses it (ws_overlay_remount).
 *
 * Threading: one process-wide mutex orders a mount (layer still there → user recorded →
 * mounted) against a release (unmounted → user forgotten → layer removed when it has none).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../os/os.h"
#include "internal.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

bool ws_is_mountpoint(const char *path) {
    struct statx sx;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx) < 0)
        return false;
    if (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
        return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
    char parent[4200]; /* kernels before 5.8: another device than the parent's */
    snprintf(parent, sizeof(parent), "%s/..", path);
    struct stat a, b;
    return stat(path, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

/* The mount(2) data for three paths; AH_E_UNSUPPORTED for a path the option syntax cannot
 * carry (',' ':' '\\' separate options and layers). */
static int options(char *out, size_t cap, const char *lower, const char *upper, const char *work) {
    for (const char *const *p = (const char *const[]){lower, upper, work, NULL}; *p; p++)
        if (strpbrk(*p, ",:\\\n"))
            return AH_E_UNSUPPORTED;
    int n = snprintf(out, cap, "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
    return n < 0 || (size_t)n >= cap ? AH_E_UNSUPPORTED : 0;
}

/* mount(2) of an overlay; AH_E_UNSUPPORTED (errno kept) when the kernel or the privilege
 * refuses it. */
static int do_mount(const char *lower, const char *upper, const char *work, const char *target) {
    char data[13000];
    int rc = options(data, sizeof(data), lower, upper, work);
    if (rc < 0) {
        errno = EINVAL;
        return rc;
    }
    /* with directory redirects, the agent can rename a directory that came from the layer
     * (without, rename(2) says EXDEV: `git mv dir` fails); a user namespace may not have them */
    size_t n = strlen(data);
    snprintf(data + n, sizeof(data) - n, ",redirect_dir=on");
    if (mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV, data) == 0)
        return 0;
    data[n] = '\0';
    if (mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV, data) == 0)
        return 0;
    int e = errno;
    rc = e == EPERM || e == ENODEV || e == EINVAL || e == EACCES ? AH_E_UNSUPPORTED
                                                                 : ah_err_from_errno(e);
    errno = e;
    return rc;
}

int ws_unmount(const char *path) {
    if (!ws_is_mountpoint(path))
        return 0;
    if (umount2(path, UMOUNT_NOFOLLOW) == 0 || errno == EINVAL)
        return 0;
    /* busy (a process has its directory there): detach it now, the kernel frees it later */
    return umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0 ? 0 : ah_err_from_errno(errno);
}

int ws_overlay_probe(const char *scratch) {
    static int known; /* 0 not probed, 1 usable, < 0 the reason it is not */
    pthread_mutex_lock(&mu);
    if (known) {
        int k = known;
        pthread_mutex_unlock(&mu);
        return k > 0 ? 0 : k;
    }
    char dir[4200], l[4300], u[4300], w[4300], m[4300], ulid[ULID_LEN + 1];
    ulid_new(ulid);
    snprintf(dir, sizeof(dir), "%s/.probe-%s", scratch, ulid);
    snprintf(l, sizeof(l), "%s/l", dir);
    snprintf(u, sizeof(u), "%s/u", dir);
    snprintf(w, sizeof(w), "%s/w", dir);
    snprintf(m, sizeof(m), "%s/m", dir);
    int rc = make_dirs(l, 0700);
    for (const char *const *p = (const char *const[]){u, w, m, NULL}; rc == 0 && *p; p++)
        if (mkdir(*p, 0700) < 0)
            rc = ah_err_from_errno(errno);
    int e = 0;
    if (rc == 0 && (rc = do_mount(l, u, w, m)) == 0)
        (void)ws_unmount(m);
    else
        e = errno;
    (void)workspace_remove(dir);
    if (rc < 0 && rc != AH_E_UNSUPPORTED) { /* the scratch directory's problem: not the kernel's */
        pthread_mutex_unlock(&mu);
        return rc;
    }
    known = rc == 0 ? 1 : rc;
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static int read_lower(const char *ovdir, char out[4200]) {
    char path[4300];
    snprintf(path, sizeof(path), "%s/lower", ovdir);
    struct stat sb;
    if (lstat(path, &sb) < 0)
        return errno == ENOENT ? AH_E_NOTFOUND : ah_err_from_errno(errno);
    char *text = NULL;
    size_t n = 0;
    int rc = read_file(path, 4199, &text, &n);
    if (rc < 0)
        return rc;
    memcpy(out, text, n);
    out[n] = '\0';
    free(text);
    return n && out[0] == '/' ? 0 : AH_E_INVAL;
}

/* <layer>.users/<the workspace's name>. */
static void user_path(char out[8600], const char *layer, const char *ws) {
    const char *name = strrchr(ws, '/');
    snprintf(out, 8600, "%s.users/%s", layer, name ? name + 1 : ws);
}

/* Forgets ws as a user of layer; when it was the last, moves the layer aside into trash (the
 * caller removes it outside the lock) and drops its stat cache. Under mu. */
static void forget_user(const char *layer, const char *ws, char trash[4300]) {
    char users[4300], user[8600], cache[4300];
    user_path(user, layer, ws);
    snprintf(users, sizeof(users), "%s.users", layer);
    trash[0] = '\0';
    (void)unlink(user);
    if (rmdir(users) < 0 && errno != ENOENT)
        return; /* another branch still uses it */
    char ulid[ULID_LEN + 1];
    ulid_new(ulid);
    snprintf(trash, 4300, "%s.gone-%s", layer, ulid);
    if (rename(layer, trash) < 0)
        trash[0] = '\0';
    snprintf(cache, sizeof(cache), "%s.statcache", layer);
    (void)unlink(cache);
}

int ws_overlay_mount(const char *layer, const char *ovdir, const char *ws) {
    char upper[4300], work[4300], lowerf[4300], users[4300], user[8600];
    snprintf(upper, sizeof(upper), "%s/upper", ovdir);
    snprintf(work, sizeof(work), "%s/work", ovdir);
    snprintf(lowerf, sizeof(lowerf), "%s/lower", ovdir);
    snprintf(users, sizeof(users), "%s.users", layer);
    user_path(user, layer, ws);
    pthread_mutex_lock(&mu);
    struct stat sb;
    int rc = stat(layer, &sb) == 0 ? 0 : AH_E_NOTFOUND; /* released meanwhile: write it again */
    if (rc == 0) {
        (void)ws_unmount(ws); /* what an earlier attempt left */
        (void)workspace_remove(ovdir);
        rc = make_dirs(upper, 0700);
    }
    if (rc == 0 && mkdir(work, 0700) < 0)
        rc = ah_err_from_errno(errno);
    if (rc == 0 && mkdir(ws, 0700) < 0 && errno != EEXIST)
        rc = ah_err_from_errno(errno);
    if (rc == 0) /* recorded before the mount: a crash after it still knows what to undo */
        rc = write_file(lowerf, layer, strlen(layer), 0600);
    if (rc == 0 && mkdir(users, 0700) < 0 && errno != EEXIST)
        rc = ah_err_from_errno(errno);
    if (rc == 0)
        rc = write_file(user, "", 0, 0600);
    int e = 0;
    char trash[4300] = "";
    if (rc == 0 && (rc = do_mount(layer, upper, work, ws)) < 0)
        e = errno;
    if (rc < 0 && rc != AH_E_NOTFOUND) {
        forget_user(layer, ws, trash);
        (void)workspace_remove(ovdir);
    }
    pthread_mutex_unlock(&mu);
    if (trash[0])
        (void)workspace_remove(trash);
    errno = e;
    return rc;
}

int ws_overlay_remount(const char *ovdir, const char *ws) {
    char layer[4200], upper[4300], work[4300];
    int rc = read_lower(ovdir, layer);
    if (rc < 0)
        return rc == AH_E_NOTFOUND ? 0 : rc; /* not an overlay branch */
    snprintf(upper, sizeof(upper), "%s/upper", ovdir);
    snprintf(work, sizeof(work), "%s/work", ovdir);
    pthread_mutex_lock(&mu);
    struct stat sb;
    if (ws_is_mountpoint(ws))
        rc = 0;
    else if (stat(layer, &sb) < 0 || stat(upper, &sb) < 0)
        rc = AH_E_NOTFOUND;
    else if ((mkdir(ws, 0700) < 0 && errno != EEXIST) || (mkdir(work, 0700) < 0 && errno != EEXIST))
        rc = ah_err_from_errno(errno);
    else
        rc = do_mount(layer, upper, work, ws) == 0 ? 1 : ah_err_from_errno(errno);
    pthread_mutex_unlock(&mu);
    return rc;
}

int ws_overlay_release(const char *ovdir, const char *ws) {
    char layer[4200], trash[4300] = "";
    int lrc = read_lower(ovdir, layer);
    pthread_mutex_lock(&mu);
    int rc = ws_unmount(ws);
    if (rc == 0 && lrc == 0)
        forget_user(layer, ws, trash);
    if (rc == 0)
        (void)workspace_remove(ovdir);
    pthread_mutex_unlock(&mu);
    if (trash[0]) /* outside the lock: removing a large tree takes a while */
        (void)workspace_remove(trash);
    return rc;
}
