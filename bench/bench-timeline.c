/*
 * bench-timeline — the workspace side of time travel (issue 12), on generated workspaces of
 * 1,000, 10,000 and 100,000 files (about 10 MB, 100 MB and 100 MB):
 *
 *   bench-timeline [DIR [MAX_FILES [overlay]]]   (default: a temp directory, every size)
 *
 * With `overlay`, only the overlay branches and the snapshot bytes are measured (the checkout,
 * seek and cp -a parts take minutes at 100,000 files).
 *
 * For each size, medians of 5 runs of:
 *   branch   what provisioning a branch does (exec/branch.c): a new store borrowing the
 *            parent's objects, the branch point imported, the snapshot written out as the
 *            branch's workspace, and the branch's base snapshot of it (goal ≤ 100 ms, flat in
 *            workspace size). The POST that creates the branch only writes database rows;
 *            this is the work that follows it on a provisioning worker. Printed with its two
 *            parts: the checkout (writes every file: ext4 has no reflink, so this stays
 *            O(files)) and the base snapshot (stats only: the checkout seeded the stat cache,
 *            so no file is read or hashed again).
 *   overlay  the same branch as an overlay mount, where this process may mount one (root): the
 *            branch point's shared lower layer exists already (a second branch from a point),
 *            then the first branch from a point, which writes the layer out too; each is the
 *            store, the mount and the base snapshot recorded from the branch point's tree (no
 *            file read). Printed with the first full snapshot of the mounted branch after
 *            (stats only: the layer's stat cache was adopted).
 *   seek     a read-only view of a snapshot (first time; a second seek reuses it)
 *   cp -a    the baseline, measured in the same run on the same files: a plain recursive copy
 *            of the workspace (what making a branch's or a view's files costs without a store;
 *            both write every file, so the ratio shows what the store adds on top)
 *   snapshot the bytes one automatic snapshot adds to the store when one 1 KiB file changed,
 *            as the timeline reports them (size_bytes) and as the store directory grew on disk
 *            (goal ≤ 8 KiB)
 * Prints numbers; never fails on speed.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../src/workspace/workspace.h"

#define RUNS 5 /* 3 for 100,000 files (each run writes the workspace out three times) */

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int runs = RUNS;

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(*v), dcmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void put(const char *path, const char *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, data, n) != (ssize_t)n) {
        perror(path);
        exit(1);
    }
    close(fd);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static void rm_rf(const char *p) {
    nftw(p, rm_cb, 32, FTW_DEPTH | FTW_PHYS);
}

static uint64_t du_bytes;
static int du_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)p;
    (void)ftw;
    if (flag == FTW_F)
        du_bytes += (uint64_t)sb->st_blocks * 512;
    return 0;
}

static uint64_t du(const char *p) {
    du_bytes = 0;
    nftw(p, du_cb, 32, FTW_PHYS);
    return du_bytes;
}

static void check(int rc, const char *what) {
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", what, ah_strerror(rc));
        exit(1);
    }
}

/* One overlay branch of snap (store) as exec/branch.c makes it: a borrowing store, the layer
 * (written when missing), the mount at ws, the base recorded from the tree. ms: the whole. */
static void overlay_branch(const char *root, struct ws_store *st, const char *store,
                           const char *snap, const char *name, double *ms, double *walk_ms) {
    char bstore[700], ws[700], ovdir[700], layer[700], cache[800], base[WS_SNAP_ID_LEN + 1];
    snprintf(bstore, sizeof(bstore), "%s/ostore-%s", root, name);
    snprintf(ws, sizeof(ws), "%s/ows-%s", root, name);
    snprintf(ovdir, sizeof(ovdir), "%s/oov-%s", root, name);
    snprintf(layer, sizeof(layer), "%s/layer-%s", root, snap);
    snprintf(cache, sizeof(cache), "%s.statcache", layer);
    double t0 = now_ms();
    struct ws_store *b = NULL;
    bool wrote;
    check(ws_store_open(bstore, &b), "overlay store");
    check(ws_store_borrow(b, store), "borrow");
    check(ws_snapshot_import(b, st, snap), "import");
    check(ws_layer_write(st, snap, layer, &wrote, NULL), "layer");
    check(ws_overlay_mount(layer, ovdir, ws), "mount");
    check(ws_snapshot_as(b, snap, "base", cache, ws, base), "overlay base");
    *ms = now_ms() - t0;
    if (walk_ms) {
        struct ws_snapshot_stats s = {0};
        t0 = now_ms();
        check(ws_snapshot(b, ws, "walk", base, &s), "overlay walk");
        *walk_ms = now_ms() - t0;
        if (s.hashed)
            fprintf(stderr, "overlay walk hashed %llu files\n", (unsigned long long)s.hashed);
    }
    ws_store_free(b);
}

static void overlay_release(const char *root, const char *name) {
    char ws[700], ovdir[700], bstore[700];
    snprintf(ws, sizeof(ws), "%s/ows-%s", root, name);
    snprintf(ovdir, sizeof(ovdir), "%s/oov-%s", root, name);
    snprintf(bstore, sizeof(bstore), "%s/ostore-%s", root, name);
    check(ws_overlay_release(ovdir, ws), "release");
    rm_rf(ws);
    rm_rf(bstore);
}

/* Overlay branches of snap: from a written point (another branch holds the layer), and the
 * first from a point (the layer written too). */
static void overlay_bench(const char *root, struct ws_store *st, const char *store,
                          const char *snap, int files, double cp) {
    int rc = ws_overlay_probe(root);
    if (rc < 0) {
        printf("%7s overlay: not available here (%s)\n", "",
               rc == AH_E_UNSUPPORTED ? strerror(errno) : ah_strerror(rc));
        return;
    }
    double first[RUNS], again[RUNS], walk[RUNS], hold;
    char name[64];
    for (int r = 0; r < runs; r++) {
        snprintf(name, sizeof(name), "%d-first-%d", files, r);
        overlay_branch(root, st, store, snap, name, &first[r], NULL);
        overlay_release(root, name); /* its last user: the layer goes */
    }
    snprintf(name, sizeof(name), "%d-holder", files);
    overlay_branch(root, st, store, snap, name, &hold, NULL);
    for (int r = 0; r < runs; r++) {
        snprintf(name, sizeof(name), "%d-again-%d", files, r);
        overlay_branch(root, st, store, snap, name, &again[r], &walk[r]);
        overlay_release(root, name);
    }
    snprintf(name, sizeof(name), "%d-holder", files);
    overlay_release(root, name);
    printf("%7s overlay branch %.1f ms from a written point (first full snapshot after: %.1f "
           "ms), %.1f ms the first time (layer written)",
           "", median(again, runs), median(walk, runs), median(first, runs));
    if (cp > 0)
        printf("; %.3fx / %.2fx of cp -a", median(again, runs) / cp, median(first, runs) / cp);
    printf("\n");
}

static bool overlay_only;

static void one_size(const char *root, int files, size_t file_bytes) {
    runs = files >= 100000 ? 3 : RUNS;
    char ws[600], store[600], path[700];
    snprintf(ws, sizeof(ws), "%s/ws-%d", root, files);
    snprintf(store, sizeof(store), "%s/store-%d", root, files);
    mkdir(ws, 0700);
    char *data = malloc(file_bytes);
    for (size_t i = 0; i < file_bytes; i++)
        data[i] = (char)('a' + (i * 7 + i / 61) % 26);
    for (int i = 0; i < files; i++) {
        if (i % 100 == 0) {
            snprintf(path, sizeof(path), "%s/d%d", ws, i / 100);
            mkdir(path, 0755);
        }
        snprintf(path, sizeof(path), "%s/d%d/f%d.txt", ws, i / 100, i);
        memcpy(data, path + strlen(ws), 12); /* every file different */
        put(path, data, file_bytes);
    }
    struct ws_store *st = NULL;
    char snap[WS_SNAP_ID_LEN + 1];
    check(ws_store_open(store, &st), "open");
    check(ws_snapshot(st, ws, "base", snap, NULL), "base snapshot");

    /* the bytes of one automatic snapshot after a 1 KiB file changed */
    double added[RUNS], grew[RUNS];
    for (int r = 0; r < runs; r++) {
        snprintf(path, sizeof(path), "%s/d0/f0.txt", ws);
        char kib[1024];
        for (size_t i = 0; i < sizeof(kib); i++)
            kib[i] = (char)('A' + (i + (size_t)r) % 26);
        put(path, kib, sizeof(kib));
        uint64_t before = du(store), bytes = 0;
        check(ws_snapshot(st, ws, "tool", snap, NULL), "snapshot");
        check(ws_snapshot_added_bytes(st, snap, &bytes), "added bytes");
        added[r] = (double)bytes;
        grew[r] = (double)(du(store) - before);
    }

    if (overlay_only) {
        printf("%7d files %5.0f MB  (medians of %d)  one 1 KiB change: size_bytes %5.0f B, store "
               "grew %5.0f B on disk\n",
               files, (double)files * (double)file_bytes / 1e6, runs, median(added, runs),
               median(grew, runs));
        overlay_bench(root, st, store, snap, files, 0);
        fflush(stdout);
        ws_store_free(st);
        free(data);
        rm_rf(ws);
        rm_rf(store);
        return;
    }
    double branch[RUNS], seek[RUNS], reuse[RUNS], branch_cpu[RUNS], seek_cpu[RUNS];
    double co[RUNS], base[RUNS], copy[RUNS];
    uint64_t rehashed = 0;
    for (int r = 0; r < runs; r++) {
        char bstore[700], bws[700], view[700], bsnap[WS_SNAP_ID_LEN + 1];
        snprintf(bstore, sizeof(bstore), "%s/bstore-%d-%d", root, files, r);
        snprintf(bws, sizeof(bws), "%s/bws-%d-%d", root, files, r);
        snprintf(view, sizeof(view), "%s/view-%d-%d", root, files, r);
        double t0 = now_ms(), c0 = cpu_ms();
        struct ws_store *b = NULL;
        check(ws_store_open(bstore, &b), "branch store");
        check(ws_store_borrow(b, store), "borrow");
        check(ws_snapshot_import(b, st, snap), "import");
        double t1 = now_ms();
        check(ws_checkout_seeded(b, snap, bws, NULL), "checkout");
        double t2 = now_ms();
        struct ws_snapshot_stats bs = {0};
        check(ws_snapshot(b, bws, "base", bsnap, &bs), "branch base");
        co[r] = t2 - t1;
        base[r] = now_ms() - t2;
        rehashed += bs.hashed;
        ws_store_free(b);
        branch[r] = now_ms() - t0;
        branch_cpu[r] = cpu_ms() - c0;
        t0 = now_ms();
        c0 = cpu_ms();
        check(ws_checkout(st, snap, view, true, NULL), "view");
        seek[r] = now_ms() - t0;
        seek_cpu[r] = cpu_ms() - c0;
        t0 = now_ms();
        struct stat sb;
        (void)stat(view, &sb); /* a second seek to the point finds the view */
        reuse[r] = now_ms() - t0;
        rm_rf(bstore);
        rm_rf(bws);
        rm_rf(view);
        char cmd[2000];
        snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", ws, view);
        t0 = now_ms();
        if (system(cmd) != 0) {
            fprintf(stderr, "baseline failed: %s\n", cmd);
            exit(1);
        }
        copy[r] = now_ms() - t0;
        rm_rf(view);
    }
    printf("%7d files %5.0f MB  (medians of %d)  branch %8.1f ms (cpu %7.1f)  seek %8.1f ms (cpu %7.1f; again "
           "%.3f ms)  one 1 KiB change: size_bytes %5.0f B, store grew %5.0f B on disk\n",
           files, (double)files * (double)file_bytes / 1e6, runs, median(branch, runs),
           median(branch_cpu, runs), median(seek, runs), median(seek_cpu, runs),
           median(reuse, runs), median(added, runs), median(grew, runs));
    printf("%7s branch = checkout %.1f ms + base snapshot %.1f ms (files hashed again: %llu)\n",
           "", median(co, runs), median(base, runs), (unsigned long long)rehashed);
    double cp = median(copy, runs);
    printf("%7s baseline cp -a %.1f ms: branch %.2fx, seek %.2fx of it\n", "", cp,
           median(branch, runs) / cp, median(seek, runs) / cp);
    overlay_bench(root, st, store, snap, files, cp);
    fflush(stdout);
    ws_store_free(st);
    free(data);
    rm_rf(ws);
    rm_rf(store);
}

int main(int argc, char **argv) {
    char root[512];
    if (argc > 1) {
        snprintf(root, sizeof(root), "%s", argv[1]);
        mkdir(root, 0700);
    } else {
        snprintf(root, sizeof(root), "/tmp/bench-timeline-XXXXXX");
        if (!mkdtemp(root)) {
            perror("mkdtemp");
            return 1;
        }
    }
    printf("bench-timeline in %s\n", root);
    long max = argc > 2 ? strtol(argv[2], NULL, 10) : 100000;
    overlay_only = argc > 3 && strcmp(argv[3], "overlay") == 0;
    one_size(root, 1000, 10000);
    if (max >= 10000)
        one_size(root, 10000, 10000);
    if (max >= 100000)
        one_size(root, 100000, 1000);
    if (argc <= 1)
        rm_rf(root);
    return 0;
}
