/*
 * bench-workspace — snapshots, change lists and diffs of the workspace layer on a generated
 * workspace, against the git CLI doing the same work in the same run on the same files.
 *
 *   bench-workspace [FILES] [MB] [DIR]      (default 10000 files, 100 MB, a temp directory)
 *
 * Measured (medians): the base snapshot (a fresh store), an incremental snapshot after one file
 * changed (goal ≤ 20 ms; the whole tree walked, and with the changed path named), the change list
 * base→latest, a unified diff of a 10,000-line file (goal ≤ 20 ms), and peak RSS. The git baseline:
 * `git add -A` + write-tree + commit-tree in a throw-away repository (fresh index for the base),
 * `git diff --numstat --name-status` and `git diff -- big.txt`, each run through sh (about 1 ms of
 * the time is the spawn). Prints numbers; never fails on speed.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../src/workspace/workspace.h"

static char work[512], gitdir[512];

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

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(*v), dcmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void write_file(const char *path, const char *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, data, n) != (ssize_t)n) {
        perror(path);
        exit(1);
    }
    close(fd);
}

static int age_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= 3600;
    ts[1] = ts[0];
    utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);
    return 0;
}

static long walked;
static int count_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    walked++;
    return 0;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

static char *big_text(int variant, size_t *ret_n) {
    struct ah_buf b = {.max = 1 << 26};
    for (int i = 1; i <= 10000; i++) {
        if (variant && i % 1000 == 500)
            ah_buf_printf(&b, "changed line %d in version %d\n", i, variant);
        else
            ah_buf_printf(&b, "line %d of the big file, with some text to diff\n", i);
    }
    *ret_n = b.n;
    return ah_buf_steal(&b);
}

/* Runs a shell command with GIT_DIR/GIT_WORK_TREE set; returns its wall time in ms. */
static double git_ms(const char *cmd) {
    double t = now_ms();
    if (system(cmd) != 0)
        fprintf(stderr, "git baseline failed: %s\n", cmd);
    return now_ms() - t;
}

static void git_capture(const char *cmd, char *out, size_t n) {
    FILE *p = popen(cmd, "r");
    out[0] = '\0';
    if (p && fgets(out, (int)n, p))
        out[strcspn(out, "\n")] = '\0';
    if (p)
        pclose(p);
}

#define RUNS 11

int main(int argc, char **argv) {
    long files = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
    long mb = argc > 2 ? strtol(argv[2], NULL, 10) : 100;
    char root[256] = "/tmp/ah-bench-ws-XXXXXX";
    if (argc > 3)
        snprintf(root, sizeof(root), "%s", argv[3]);
    else if (!mkdtemp(root))
        return 1;
    snprintf(work, sizeof(work), "%s/work", root);
    snprintf(gitdir, sizeof(gitdir), "%s/git", root);
    mkdir(work, 0755);
    setenv("GIT_DIR", gitdir, 1);
    setenv("GIT_WORK_TREE", work, 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
    setenv("GIT_AUTHOR_NAME", "b", 1);
    setenv("GIT_AUTHOR_EMAIL", "b@b", 1);
    setenv("GIT_COMMITTER_NAME", "b", 1);
    setenv("GIT_COMMITTER_EMAIL", "b@b", 1);

    /* the workspace: FILES files in 100 directories, MB megabytes, one 10,000-line file */
    size_t per = (size_t)(mb * 1024 * 1024 / (files ? files : 1));
    char *blob = malloc(per + 64);
    srand(42);
    for (size_t i = 0; i < per; i++)
        blob[i] = (i % 61 == 60) ? '\n' : (char)('a' + rand() % 26);
    char p[700];
    for (long i = 0; i < files; i++) {
        snprintf(p, sizeof(p), "%s/d%02ld", work, i % 100);
        mkdir(p, 0755);
        snprintf(p, sizeof(p), "%s/d%02ld/f%05ld.txt", work, i % 100, i);
        int k = snprintf(blob, 64, "file %ld\n", i);
        blob[k] = 'x';
        write_file(p, blob, per);
    }
    size_t bn;
    char *big = big_text(0, &bn);
    snprintf(p, sizeof(p), "%s/big.txt", work);
    write_file(p, big, bn);
    free(big);
    nftw(work, age_cb, 32, FTW_PHYS); /* files written an hour ago: not racy */
    printf("workspace: %ld files, %ld MB, in %s\n", files + 1, mb, work);

    double t[RUNS], g[RUNS], c[RUNS]; /* wall, git wall, our CPU time (the box is shared) */
    char id[WS_SNAP_ID_LEN + 1], base[WS_SNAP_ID_LEN + 1], store[600];
    struct ws_store *st = NULL;
    struct ws_snapshot_stats stats;
    /* base snapshot: a fresh store each time */
    int base_runs = 3;
    for (int r = 0; r < base_runs; r++) {
        snprintf(store, sizeof(store), "%s/store%d", root, r);
        if (ws_store_open(store, &st) < 0)
            return 1;
        double t0 = now_ms();
        if (ws_snapshot(st, work, "base", base, &stats) < 0)
            return 1;
        t[r] = now_ms() - t0;
        if (r < base_runs - 1) {
            ws_store_free(st);
            nftw(store, rm_cb, 32, FTW_DEPTH | FTW_PHYS);
        }
        nftw(gitdir, rm_cb, 32, FTW_DEPTH | FTW_PHYS);
        git_ms("git init -q");
        g[r] = git_ms("git add -A && t=$(git write-tree) && git commit-tree -m base $t >/dev/null");
    }
    printf("base snapshot:        %8.1f ms   (git add -A + write-tree + commit-tree %8.1f ms)  "
           "[%llu files hashed]\n",
           median(t, base_runs), median(g, base_runs), (unsigned long long)stats.hashed);
    char gbase[64];
    git_capture("t=$(git write-tree) && git commit-tree -m base $t", gbase, sizeof(gbase));
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "git update-ref refs/heads/base %s", gbase);
    git_ms(cmd);

    /* incremental: one file changed each time; the floor is the same walk (readdir + lstat of
     * every entry) with nothing else, i.e. what the kernel alone costs on this machine */
    uint64_t hashed = 0;
    double fl[RUNS];
    for (int r = 0; r < RUNS; r++) {
        snprintf(p, sizeof(p), "%s/d%02d/f%05d.txt", work, r % 100, r);
        char line[64];
        int k = snprintf(line, sizeof(line), "changed in run %d\n", r);
        write_file(p, line, (size_t)k);
        double t0 = now_ms(), c0 = cpu_ms();
        if (ws_snapshot(st, work, "step", id, &stats) < 0)
            return 1;
        t[r] = now_ms() - t0;
        c[r] = cpu_ms() - c0;
        hashed += stats.hashed;
        g[r] = git_ms("git add -A && t=$(git write-tree) && git commit-tree -m step $t >/dev/null");
        t0 = now_ms();
        nftw(work, count_cb, 32, FTW_PHYS);
        fl[r] = now_ms() - t0;
    }
    printf("incremental snapshot: %8.2f ms   (git add -A + write-tree + commit-tree %8.2f ms)  "
           "[%.1f files hashed per run; goal <= 20 ms; walk+lstat floor %.2f ms; cpu %.2f ms]\n",
           median(t, RUNS), median(g, RUNS), (double)hashed / RUNS, median(fl, RUNS),
           median(c, RUNS));

    /* incremental with the changed path named (as the workspace watcher will): no walk */
    hashed = 0;
    for (int r = 0; r < RUNS; r++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "d%02d/f%05d.txt", (r + 50) % 100, r + 50);
        snprintf(p, sizeof(p), "%s/%s", work, rel);
        write_file(p, "changed by name\n", 16);
        const char *paths[] = {rel};
        double t0 = now_ms(), c0 = cpu_ms();
        if (ws_snapshot_changed(st, work, "step", paths, 1, id, &stats) < 0)
            return 1;
        t[r] = now_ms() - t0;
        c[r] = cpu_ms() - c0;
        hashed += stats.hashed;
    }
    printf("snapshot, path named: %8.2f ms   (ws_snapshot_changed: the watcher names the file)  "
           "[%.1f files hashed per run; cpu %.2f ms]\n",
           median(t, RUNS), (double)hashed / RUNS, median(c, RUNS));

    /* change list base → latest */
    size_t nch = 0;
    for (int r = 0; r < RUNS; r++) {
        struct ws_changes ch;
        double t0 = now_ms(), c0 = cpu_ms();
        if (ws_changes(st, base, id, &ch) < 0)
            return 1;
        t[r] = now_ms() - t0;
        c[r] = cpu_ms() - c0;
        nch = ch.n;
        ws_changes_clear(&ch);
        g[r] = git_ms("t=$(git write-tree) && git diff --numstat --name-status base $t >/dev/null");
    }
    printf("changes listing:      %8.2f ms   (git diff --numstat --name-status     %8.2f ms)  "
           "[%zu files changed; cpu %.2f ms]\n",
           median(t, RUNS), median(g, RUNS), nch, median(c, RUNS));

    /* diff of the 10,000-line file */
    big = big_text(1, &bn);
    snprintf(p, sizeof(p), "%s/big.txt", work);
    write_file(p, big, bn);
    free(big);
    if (ws_snapshot(st, work, "big", id, NULL) < 0)
        return 1;
    git_ms("git add -A");
    const char *only[] = {"big.txt"};
    struct ws_diff_opts o;
    ws_diff_opts_init(&o);
    o.paths = only;
    o.n_paths = 1;
    size_t dn = 0;
    for (int r = 0; r < RUNS; r++) {
        struct ah_buf out = {.max = 1 << 26};
        double t0 = now_ms(), c0 = cpu_ms();
        if (ws_diff(st, base, id, &o, &out) < 0)
            return 1;
        t[r] = now_ms() - t0;
        c[r] = cpu_ms() - c0;
        dn = out.n;
        ah_buf_clear(&out);
        g[r] = git_ms("git diff --no-color base --cached -- big.txt >/dev/null");
    }
    printf("diff of 10,000 lines: %8.2f ms   (git diff -- big.txt                  %8.2f ms)  "
           "[%zu bytes of diff; goal <= 20 ms; cpu %.2f ms]\n",
           median(t, RUNS), median(g, RUNS), dn, median(c, RUNS));

    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    printf("peak RSS:             %8.1f MB   (largest git child                    %8.1f MB)\n",
           self.ru_maxrss / 1024.0, kids.ru_maxrss / 1024.0);
    ws_store_free(st);
    free(blob);
    if (argc <= 3)
        nftw(root, rm_cb, 64, FTW_DEPTH | FTW_PHYS);
    return 0;
}
