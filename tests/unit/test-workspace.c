/* test-workspace.c — the workspace layer (D30–D32) without the git CLI: hostile paths, the
 * line-boundary cut of `diff` events, incremental snapshots (hash counts from the stats
 * out-param), symlinks never followed, read caps, trees, snapshot metadata, and the split/html
 * formats. The byte-for-byte comparison with `git diff` is tests/workspace/corpus.py. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/os/os.h"
#include "../../src/workspace/workspace.h"

/* ---- paths ------------------------------------------------------------------------------------
 */

static int norm(const char *in, char out[WS_PATH_MAX + 1]) {
    return ws_path_normalise(in, strlen(in), out);
}

static void test_path_ok(void **state) {
    static const char *cases[][2] = {
        {"a.txt", "a.txt"},
        {"./a/b", "a/b"},
        {"a//b/", "a/b"},
        {"a/./b", "a/b"},
        {"a/../b", "b"},
        {"a/b/../../c", "c"},
        {"", ""},
        {".", ""},
        {"a/..", ""},
        {"café/naïve.txt", "café/naïve.txt"},
        {"..a/b..", "..a/b.."},
        {"a/.gitignore", "a/.gitignore"},
        {"sp ace", "sp ace"},
        {"...", "..."},
    };
    char out[WS_PATH_MAX + 1];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(norm(cases[i][0], out), 0);
        assert_string_equal(out, cases[i][1]);
    }
}

static void test_path_hostile(void **state) {
    static const char *bad[] = {
        "..",
        "../x",
        "a/../../x",
        "/etc/passwd",
        "//x",
        "a/b/../../../etc",
        "./../x",
        ".git/config",
        "a/.git/hooks/x",
        ".git",
        "\xff",
        "a/\xc3",
        "\xc0\xaf",         /* overlong '/' */
        "\xed\xa0\x80",     /* a surrogate */
        "\xf4\x90\x80\x80", /* > U+10FFFF */
    };
    char out[WS_PATH_MAX + 1];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(norm(bad[i], out), AH_E_INVAL);
    /* an embedded NUL: the length says there is more */
    assert_int_equal(ws_path_normalise("a\0/../../x", 10, out), AH_E_INVAL);
    /* 4 KiB limits, in and out */
    char big[WS_PATH_MAX + 2];
    memset(big, 'a', sizeof(big));
    assert_int_equal(ws_path_normalise(big, WS_PATH_MAX + 1, out), AH_E_INVAL);
    assert_int_equal(ws_path_normalise(big, WS_PATH_MAX, out), 0);
    assert_int_equal(strlen(out), WS_PATH_MAX);
    /* many ".." segments balanced by as many names stay inside */
    char deep[WS_PATH_MAX + 1] = "";
    for (int i = 0; i < 600; i++)
        strcat(deep, "d/");
    for (int i = 0; i < 600; i++)
        strcat(deep, "../");
    assert_int_equal(norm(deep, out), 0);
    assert_string_equal(out, "");
    strcat(deep, "..");
    assert_int_equal(norm(deep, out), AH_E_INVAL);
    assert_int_equal(ws_path_normalise(NULL, 0, out), AH_E_INVAL);
}

static void test_truncate(void **state) {
    bool t = true;
    assert_int_equal(ws_truncate_lines("abc\n", 4, 10, &t), 4);
    assert_false(t);
    const char *s = "one\ntwo\nthree\n";
    assert_int_equal(ws_truncate_lines(s, strlen(s), 9, &t), 8); /* "one\ntwo\n" */
    assert_true(t);
    assert_int_equal(ws_truncate_lines(s, strlen(s), 8, &t), 8);
    /* one long line: cut on a character boundary, never inside "é" */
    const char *u = "aé";
    assert_int_equal(ws_truncate_lines(u, strlen(u), 2, &t), 1);
    /* the event cap */
    size_t n = 3 * WS_EVENT_DIFF_MAX;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = i % 100 == 99 ? '\n' : 'x';
    size_t k = ws_truncate_lines(big, n, WS_EVENT_DIFF_MAX, &t);
    assert_true(t);
    assert_true(k <= WS_EVENT_DIFF_MAX && k > WS_EVENT_DIFF_MAX - 100);
    assert_int_equal(big[k - 1], '\n');
    free(big);
}

/* ---- fixtures ---------------------------------------------------------------------------------
 */

struct fx {
    char root[64], work[128], store[128];
    struct ws_store *st;
};

static void put_n(struct fx *f, const char *path, const char *data, size_t n) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", f->work, path);
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    fwrite(data, 1, n, fp);
    fclose(fp);
}

static void put(struct fx *f, const char *path, const char *data) {
    put_n(f, path, data, strlen(data));
}

/* Writes a file of another directory than the fixture's workdir (a branch's workspace). */
static void put_in(const char *dir, const char *path, const char *data) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, path);
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    fputs(data, fp);
    fclose(fp);
}

/* Moves a file's times an hour back, so that the stat cache does not treat it as racy. */
static void age(struct fx *f, const char *path) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", f->work, path);
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= 3600;
    ts[1] = ts[0];
    assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static int setup(void **state) {
    struct fx *f = calloc(1, sizeof(*f));
    strcpy(f->root, "/tmp/ah-ws-test-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->work, sizeof(f->work), "%s/work", f->root);
    snprintf(f->store, sizeof(f->store), "%s/store", f->root);
    assert_int_equal(mkdir(f->work, 0755), 0);
    assert_int_equal(ws_store_open(f->store, &f->st), 0);
    *state = f;
    return 0;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(p);
}

static int teardown(void **state) {
    struct fx *f = *state;
    ws_store_free(f->st);
    nftw(f->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void snap(struct fx *f, char id[WS_SNAP_ID_LEN + 1], struct ws_snapshot_stats *s) {
    assert_int_equal(ws_snapshot(f->st, f->work, "t", id, s), 0);
}

/* ---- snapshots --------------------------------------------------------------------------------
 */

static void test_incremental(void **state) {
    struct fx *f = *state;
    char name[32], id[WS_SNAP_ID_LEN + 1];
    assert_int_equal(mkdir(strcat(strcpy(name, f->work), "/d"), 0755), 0);
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof(name), i % 2 ? "d/f%02d" : "f%02d", i);
        put(f, name, name);
        age(f, name);
    }
    struct ws_snapshot_stats s;
    snap(f, id, &s);
    assert_int_equal(s.files, 50);
    assert_int_equal(s.hashed, 50);
    snap(f, id, &s);
    assert_int_equal(s.files, 50);
    assert_int_equal(s.hashed, 0); /* nothing changed: everything from the stat cache */

    put(f, "d/f07", "changed content");
    age(f, "d/f07");
    snap(f, id, &s);
    assert_int_equal(s.hashed, 1);
    assert_int_equal(s.bytes_hashed, strlen("changed content"));
    snap(f, id, &s);
    assert_int_equal(s.hashed, 0);

    /* same size, mtime put back: the ctime still gives the change away */
    put(f, "f10", "F10");
    age(f, "f10");
    snap(f, id, &s);
    assert_int_equal(s.hashed, 1);
    struct ws_blob b;
    assert_int_equal(ws_read(f->st, id, "f10", 100, &b), 0);
    assert_string_equal(b.data, "F10");
    ws_blob_clear(&b);

    /* a file written just now is racy: read again by the next snapshot too */
    put(f, "fresh", "new");
    snap(f, id, &s);
    assert_int_equal(s.hashed, 1);
    snap(f, id, &s);
    assert_int_equal(s.hashed, 1);
    age(f, "fresh");
    snap(f, id, &s);
    assert_int_equal(s.hashed, 1); /* its times changed */
    snap(f, id, &s);
    assert_int_equal(s.hashed, 0);

    /* the cache survives a reopen of the store */
    ws_store_free(f->st);
    assert_int_equal(ws_store_open(f->store, &f->st), 0);
    snap(f, id, &s);
    assert_int_equal(s.hashed, 0);
    assert_int_equal(s.files, 51);

    /* a cache written for another workdir is not trusted */
    char other[160];
    snprintf(other, sizeof(other), "%s/work2", f->root);
    assert_int_equal(rename(f->work, other), 0);
    assert_int_equal(ws_snapshot(f->st, other, "moved", id, &s), 0);
    assert_int_equal(s.hashed, 51);
    assert_int_equal(rename(other, f->work), 0);

    /* a corrupt cache is ignored, never trusted */
    char cache[200];
    snprintf(cache, sizeof(cache), "%s/ah-statcache", f->store);
    FILE *fp = fopen(cache, "r+b");
    assert_non_null(fp);
    fseek(fp, -3, SEEK_END);
    fputs("zzz", fp);
    fseek(fp, 10, SEEK_SET);
    fputs("\xff\xff\xff\xff", fp);
    fclose(fp);
    snap(f, id, &s);
    assert_int_equal(s.hashed, 51);
}

/* A branch's checkout seeds its store's stat cache: the branch's base snapshot hashes nothing
 * and has the snapshot's tree; a later edit of the same size is still seen. */
static void test_checkout_seeded(void **state) {
    struct fx *f = *state;
    char id[WS_SNAP_ID_LEN + 1], base[WS_SNAP_ID_LEN + 1], p[300], bstore[200], bwork[200];
    assert_int_equal(mkdir(strcat(strcpy(p, f->work), "/d"), 0755), 0);
    put(f, "a.txt", "alpha\n");
    put(f, "d/b.txt", "beta\n");
    snprintf(p, sizeof(p), "%s/link", f->work);
    assert_int_equal(symlink("a.txt", p), 0);
    snap(f, id, NULL);
    snprintf(bstore, sizeof(bstore), "%s/bstore", f->root);
    snprintf(bwork, sizeof(bwork), "%s/bwork", f->root);
    struct ws_store *b = NULL;
    assert_int_equal(ws_store_open(bstore, &b), 0);
    assert_int_equal(ws_store_borrow(b, f->store), 0);
    assert_int_equal(ws_snapshot_import(b, f->st, id), 0);
    uint64_t n = 0;
    assert_int_equal(ws_checkout_seeded(b, id, bwork, &n), 0);
    assert_int_equal(n, 3);
    struct ws_snapshot_stats s;
    assert_int_equal(ws_snapshot(b, bwork, "base", base, &s), 0);
    assert_int_equal(s.files, 3);
    assert_int_equal(s.hashed, 0);
    struct ws_blob bl;
    assert_int_equal(ws_read(b, base, "d/b.txt", 100, &bl), 0);
    assert_string_equal(bl.data, "beta\n");
    ws_blob_clear(&bl);
    /* the agent rewrites a file at once, same size: seen */
    put_in(bwork, "d/b.txt", "BETA\n");
    assert_int_equal(ws_snapshot(b, bwork, "edit", base, &s), 0);
    assert_int_equal(s.hashed, 1);
    assert_int_equal(ws_read(b, base, "d/b.txt", 100, &bl), 0);
    assert_string_equal(bl.data, "BETA\n");
    ws_blob_clear(&bl);
    ws_store_free(b);
}

/* Retention frees disk: after a snapshot is forgotten, ws_store_gc deletes the objects only it
 * needed, and keeps those a borrowing store's snapshot names (a branch wrote a file back to an
 * old content: the blob stayed in the parent's store only). */
static void test_gc(void **state) {
    struct fx *f = *state;
    char a[WS_SNAP_ID_LEN + 1], b[WS_SNAP_ID_LEN + 1], c[WS_SNAP_ID_LEN + 1];
    char bs[WS_SNAP_ID_LEN + 1], bstore[200], bwork[200], p[300];
    /* larger than the pack's objects: these blobs are loose files, freed one by one */
    static char big[50001];
    memset(big, 'A', 50000);
    big[50000] = '\0';
    put(f, "big.txt", big);
    snap(f, a, NULL);
    memset(big, 'B', 50000);
    put(f, "big.txt", big);
    snap(f, b, NULL);
    put(f, "c.txt", "c\n");
    snap(f, c, NULL);
    snprintf(bstore, sizeof(bstore), "%s/bstore", f->root);
    snprintf(bwork, sizeof(bwork), "%s/bwork", f->root);
    struct ws_store *br = NULL;
    assert_int_equal(ws_store_open(bstore, &br), 0);
    assert_int_equal(ws_store_borrow(br, f->store), 0);
    assert_int_equal(ws_snapshot_import(br, f->st, c), 0);
    assert_int_equal(ws_checkout_seeded(br, c, bwork, NULL), 0);
    memset(big, 'A', 50000); /* back to snapshot a's content, found in the parent's store */
    snprintf(p, sizeof(p), "%s/big.txt", bwork);
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    fputs(big, fp);
    fclose(fp);
    assert_int_equal(ws_snapshot(br, bwork, "branch", bs, NULL), 0);

    assert_int_equal(ws_snapshot_forget(f->st, a), 0);
    uint64_t freed = 0;
    const char *borrowers[] = {bstore};
    assert_int_equal(ws_store_gc(f->st, borrowers, 1, 0, &freed), 0);
    assert_true(freed > 0); /* a's commit at least */
    struct ws_blob bl;
    assert_int_equal(ws_read(br, bs, "big.txt", 100000, &bl), 0); /* kept for the branch */
    ws_blob_clear(&bl);
    assert_int_equal(ws_read(f->st, c, "big.txt", 100000, &bl), 0);
    assert_int_equal(bl.data[0], 'B');
    ws_blob_clear(&bl);
    assert_int_equal(ws_read(f->st, b, "big.txt", 100000, &bl), 0); /* not the newest: kept */
    ws_blob_clear(&bl);
    put(f, "big.txt", "small now\n"); /* c is no longer the newest either */
    snap(f, c, NULL);
    assert_int_equal(ws_store_gc(f->st, borrowers, 1, 0, &freed), 0);
    assert_int_equal(ws_read(f->st, b, "big.txt", 100000, &bl), 0);
    assert_int_equal(bl.data[0], 'B');
    ws_blob_clear(&bl);
    /* b forgotten too, and no borrower named: both old contents go */
    assert_int_equal(ws_snapshot_forget(f->st, b), 0);
    freed = 0;
    assert_int_equal(ws_store_gc(f->st, NULL, 0, 0, &freed), 0);
    assert_true(freed > 4096); /* a's big.txt (a loose file) and b's commit and trees (packed) */
    assert_true(ws_read(br, bs, "big.txt", 100000, &bl) < 0);
    /* the kept snapshot is whole; a grace period spares what is new */
    assert_int_equal(ws_read(f->st, c, "c.txt", 100, &bl), 0);
    ws_blob_clear(&bl);
    put(f, "d.txt", "d only in a\n");
    snap(f, a, NULL);
    snprintf(p, sizeof(p), "%s/d.txt", f->work);
    assert_int_equal(unlink(p), 0);
    snap(f, b, NULL);
    assert_int_equal(ws_snapshot_forget(f->st, a), 0);
    freed = 1;
    assert_int_equal(ws_store_gc(f->st, NULL, 0, 60000, &freed), 0);
    assert_int_equal(freed, 0);
    assert_int_equal(ws_store_gc(f->st, NULL, 0, 0, &freed), 0);
    assert_true(freed > 0);
    ws_store_free(br);
}

static uint64_t du_total;
static int du_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)p;
    (void)ftw;
    if (flag == FTW_F)
        du_total += (uint64_t)sb->st_blocks * 512;
    return 0;
}

/* The disk a directory's files take (blocks), and how many loose objects it holds. */
static uint64_t du(const char *dir) {
    du_total = 0;
    nftw(dir, du_cb, 16, FTW_PHYS);
    return du_total;
}

static int loose_objects(const char *store) {
    int n = 0;
    for (int fan = 0; fan < 256; fan++) {
        char p[300];
        snprintf(p, sizeof(p), "%s/objects/%02x", store, fan);
        DIR *d = opendir(p);
        struct dirent *de;
        while (d && (de = readdir(d)))
            n += de->d_name[0] != '.';
        if (d)
            closedir(d);
    }
    return n;
}

/* Small objects go to the store's pack, not one file each: a snapshot after one 1 KiB file
 * changed adds at most 8 KiB on disk (four loose objects and a loose ref took 20 KiB), other
 * handles read what was packed after they opened, a store written by git alone (loose objects
 * only) stays readable, and GC rewrites the pack without what retention forgot (after the
 * grace period). */
static void test_pack(void **state) {
    struct fx *f = *state;
    char a[WS_SNAP_ID_LEN + 1], b[WS_SNAP_ID_LEN + 1], c[WS_SNAP_ID_LEN + 1], p[400];
    snprintf(p, sizeof(p), "%s/d", f->work);
    assert_int_equal(mkdir(p, 0755), 0);
    char data[1024];
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof(name), "d/f%d.txt", i);
        memset(data, 'a' + i % 26, sizeof(data));
        snprintf(data, 16, "file %d", i);
        put_n(f, name, data, sizeof(data));
        age(f, name);
    }
    struct ws_store *other = NULL; /* opened before anything was packed */
    assert_int_equal(ws_store_open(f->store, &other), 0);
    snap(f, a, NULL);
    assert_int_equal(loose_objects(f->store), 0);
    struct ws_blob bl;
    assert_int_equal(ws_read(other, a, "d/f7.txt", 2000, &bl), 0);
    assert_int_equal(bl.size, 1024);
    assert_memory_equal(bl.data, "file 7", 6);
    ws_blob_clear(&bl);

    memset(data, 'Z', sizeof(data));
    put_n(f, "d/f3.txt", data, sizeof(data));
    uint64_t before = du(f->store), added = 0;
    snap(f, b, NULL);
    uint64_t grew = du(f->store) - before;
    assert_int_equal(ws_snapshot_added_bytes(f->st, b, &added), 0);
    assert_true(added > 0 && added <= 8192);
    assert_true(grew <= 8192);
    assert_int_equal(ws_read(other, b, "d/f3.txt", 2000, &bl), 0);
    assert_int_equal(bl.data[100], 'Z');
    ws_blob_clear(&bl);

    /* GC: snapshot a forgotten, f3's first content goes with it; the grace period first */
    assert_int_equal(ws_snapshot_forget(f->st, a), 0);
    uint64_t freed = 1;
    assert_int_equal(ws_store_gc(f->st, NULL, 0, 60000, &freed), 0);
    assert_int_equal(freed, 0);
    assert_int_equal(ws_store_gc(f->st, NULL, 0, 0, &freed), 0);
    assert_true(freed > 0);
    assert_int_equal(ws_read(other, b, "d/f3.txt", 2000, &bl), 0); /* the old handle too */
    assert_int_equal(bl.data[0], 'Z');
    ws_blob_clear(&bl);
    assert_int_equal(ws_read(f->st, b, "d/f7.txt", 2000, &bl), 0);
    ws_blob_clear(&bl);
    /* and later writes go to the new generation, seen by both handles */
    put(f, "new.txt", "new\n");
    snap(f, c, NULL);
    assert_int_equal(ws_read(other, c, "new.txt", 100, &bl), 0);
    assert_string_equal(bl.data, "new\n");
    ws_blob_clear(&bl);
    ws_store_free(other);

    /* a store with loose objects only (as stores were before the pack), written by git */
    char old[300], cmd[2000];
    snprintf(old, sizeof(old), "%s/old", f->root);
    snprintf(cmd, sizeof(cmd),
             "git init -q --bare %s && export GIT_DIR=%s GIT_WORK_TREE=%s GIT_INDEX_FILE=%s/index && "
             "git add -A && t=$(git write-tree) && "
             "c=$(GIT_AUTHOR_NAME=a GIT_AUTHOR_EMAIL=a@b GIT_COMMITTER_NAME=a "
             "GIT_COMMITTER_EMAIL=a@b git commit-tree -m 'old\n\nSnapshot: %s' $t) && "
             "git update-ref refs/ah/snapshots/%s $c && git update-ref refs/ah/head $c",
             old, old, f->work, old, b, b);
    assert_int_equal(system(cmd), 0);
    assert_true(loose_objects(old) > 100);
    struct ws_store *os = NULL;
    assert_int_equal(ws_store_open(old, &os), 0);
    assert_int_equal(ws_read(os, b, "d/f7.txt", 2000, &bl), 0);
    assert_memory_equal(bl.data, "file 7", 6);
    ws_blob_clear(&bl);
    put(f, "newer.txt", "newer\n");
    int n = loose_objects(old);
    assert_int_equal(ws_snapshot(os, f->work, "t", c, NULL), 0);
    assert_int_equal(loose_objects(old), n); /* the new objects went to the pack */
    assert_int_equal(ws_read(os, c, "newer.txt", 100, &bl), 0);
    ws_blob_clear(&bl);
    assert_int_equal(ws_read(os, c, "d/f7.txt", 2000, &bl), 0);
    ws_blob_clear(&bl);
    ws_store_free(os);
}

static bool keep_one(void *ctx, const char *id) {
    return strcmp(ctx, id) == 0;
}

/* Snapshots that never joined the timeline and are older than what retention forgot go too. */
static void test_forget_before(void **state) {
    struct fx *f = *state;
    char a[WS_SNAP_ID_LEN + 1], b[WS_SNAP_ID_LEN + 1], c[WS_SNAP_ID_LEN + 1];
    char d[WS_SNAP_ID_LEN + 1];
    put(f, "x", "1");
    snap(f, a, NULL);
    put(f, "x", "22");
    snap(f, b, NULL);
    put(f, "x", "333");
    snap(f, c, NULL);
    snap(f, d, NULL);
    assert_int_equal(ws_snapshots_forget_before(f->st, c, keep_one, a), 1); /* b only */
    struct ws_snapshot_info info;
    assert_int_equal(ws_snapshot_info(f->st, a, &info), 0);
    ws_snapshot_info_clear(&info);
    assert_int_equal(ws_snapshot_info(f->st, b, &info), AH_E_NOTFOUND);
    assert_int_equal(ws_snapshot_info(f->st, c, &info), 0);
    ws_snapshot_info_clear(&info);
    assert_int_equal(ws_snapshots_forget_before(f->st, c, keep_one, a), 0);
}

/* An overlay branch's lower layer: the snapshot written out with writable modes and a stat
 * cache; ws_snapshot_as records the branch's base from the tree (no file read) and adopts the
 * cache, so the next snapshot of the same files hashes nothing. Where this process can mount
 * (root), the same through a real overlay: released, the layer goes with its last user. */
static void test_layer_and_snapshot_as(void **state) {
    struct fx *f = *state;
    char id[WS_SNAP_ID_LEN + 1], base[WS_SNAP_ID_LEN + 1], p[300], bstore[200], layer[200];
    assert_int_equal(mkdir(strcat(strcpy(p, f->work), "/d"), 0755), 0);
    put(f, "a.txt", "alpha\n");
    put(f, "d/b.txt", "beta\n");
    put(f, "run.sh", "#!/bin/sh\n");
    snprintf(p, sizeof(p), "%s/run.sh", f->work);
    assert_int_equal(chmod(p, 0755), 0);
    snap(f, id, NULL);
    snprintf(bstore, sizeof(bstore), "%s/bstore", f->root);
    snprintf(layer, sizeof(layer), "%s/layer", f->root);
    bool wrote = false;
    uint64_t n = 0;
    assert_int_equal(ws_layer_write(f->st, id, layer, &wrote, &n), 0);
    assert_true(wrote);
    assert_int_equal(n, 3);
    assert_int_equal(ws_layer_write(f->st, id, layer, &wrote, &n), 0);
    assert_false(wrote); /* written once */
    struct stat sb;
    snprintf(p, sizeof(p), "%s/a.txt", layer);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644); /* the branch's agent writes it */
    snprintf(p, sizeof(p), "%s/run.sh", layer);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0755);

    struct ws_store *b = NULL;
    assert_int_equal(ws_store_open(bstore, &b), 0);
    assert_int_equal(ws_store_borrow(b, f->store), 0);
    assert_int_equal(ws_snapshot_import(b, f->st, id), 0);
    snprintf(p, sizeof(p), "%s.statcache", layer);
    assert_int_equal(ws_snapshot_as(b, id, "base", p, layer, base), 0);
    struct ws_snapshot_info a = {0}, c = {0};
    assert_int_equal(ws_snapshot_info(b, id, &a), 0);
    assert_int_equal(ws_snapshot_info(b, base, &c), 0);
    assert_string_equal(a.tree, c.tree);
    assert_string_equal(c.label, "base");
    ws_snapshot_info_clear(&a);
    ws_snapshot_info_clear(&c);
    struct ws_snapshot_stats s;
    char again[WS_SNAP_ID_LEN + 1];
    assert_int_equal(ws_snapshot(b, layer, "walk", again, &s), 0);
    assert_int_equal(s.files, 3);
    assert_int_equal(s.hashed, 0);

    char scratch[200], ovdir[200], ws[200];
    snprintf(scratch, sizeof(scratch), "%s/scratch", f->root);
    snprintf(ovdir, sizeof(ovdir), "%s/ov", f->root);
    snprintf(ws, sizeof(ws), "%s/ws", f->root);
    assert_int_equal(mkdir(scratch, 0700), 0);
    if (ws_overlay_probe(scratch) < 0) {
        fprintf(stderr, "# no overlay mounts for this process: the mounted half is not run\n");
        ws_store_free(b);
        return;
    }
    assert_int_equal(ws_overlay_mount(layer, ovdir, ws), 0);
    assert_true(ws_is_mountpoint(ws));
    snprintf(p, sizeof(p), "%s.statcache", layer);
    assert_int_equal(ws_snapshot_as(b, id, "base", p, ws, base), 0);
    assert_int_equal(ws_snapshot(b, ws, "walk", again, &s), 0);
    assert_int_equal(s.files, 3);
    assert_int_equal(s.hashed, 0); /* the overlay shows the layer's inodes and times */
    put_in(ws, "a.txt", "ALPHA\n");
    assert_int_equal(ws_snapshot(b, ws, "edit", again, &s), 0);
    assert_int_equal(s.hashed, 1);
    struct ws_blob bl;
    assert_int_equal(ws_read(b, again, "a.txt", 100, &bl), 0);
    assert_string_equal(bl.data, "ALPHA\n");
    ws_blob_clear(&bl);
    snprintf(p, sizeof(p), "%s/a.txt", layer);
    assert_int_equal(ws_read(b, id, "a.txt", 100, &bl), 0);
    assert_string_equal(bl.data, "alpha\n"); /* the layer never changes */
    ws_blob_clear(&bl);
    FILE *fp = fopen(p, "rb");
    char line[32] = "";
    assert_non_null(fp);
    assert_non_null(fgets(line, sizeof(line), fp));
    fclose(fp);
    assert_string_equal(line, "alpha\n");
    assert_int_equal(ws_overlay_release(ovdir, ws), 0);
    assert_false(ws_is_mountpoint(ws));
    assert_int_equal(stat(layer, &sb), -1); /* its last user is gone */
    assert_int_equal(stat(ovdir, &sb), -1);
    ws_store_free(b);
}

static void test_symlinks_and_modes(void **state) {
    struct fx *f = *state;
    char p[300], id[WS_SNAP_ID_LEN + 1];
    put(f, "run.sh", "#!/bin/sh\n");
    snprintf(p, sizeof(p), "%s/run.sh", f->work);
    chmod(p, 0755);
    put(f, "plain", "x");
    snprintf(p, sizeof(p), "%s/out", f->work);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    snprintf(p, sizeof(p), "%s/updir", f->work);
    assert_int_equal(symlink("/etc", p), 0); /* a symlink to a directory is not descended */
    snprintf(p, sizeof(p), "%s/dangling", f->work);
    assert_int_equal(symlink("nowhere/at/all", p), 0);
    snprintf(p, sizeof(p), "%s/fifo", f->work);
    assert_int_equal(mkfifo(p, 0600), 0); /* never opened (it would block) */
    snprintf(p, sizeof(p), "%s/.git", f->work);
    assert_int_equal(mkdir(p, 0755), 0);
    put(f, ".git/config", "[remote] url=https://token@host/x");
    snprintf(p, sizeof(p), "%s/emptydir", f->work);
    assert_int_equal(mkdir(p, 0755), 0);
    struct ws_snapshot_stats s;
    snap(f, id, &s);
    assert_int_equal(s.files, 5);
    assert_int_equal(s.skipped, 1); /* the fifo */

    struct ws_entries e;
    assert_int_equal(ws_tree(f->st, id, "", true, &e), 0);
    assert_int_equal(e.n, 5); /* no .git, no empty dir, no fifo */
    const char *want[] = {"dangling", "out", "plain", "run.sh", "updir"};
    const uint32_t modes[] = {0120000, 0120000, 0100644, 0100755, 0120000};
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(e.v[i].path, want[i]);
        assert_int_equal(e.v[i].mode, modes[i]);
        assert_int_equal(e.v[i].type, modes[i] == 0120000 ? WS_SYMLINK : WS_FILE);
    }
    assert_int_equal(e.v[1].size, strlen("/etc/passwd"));
    ws_entries_clear(&e);

    struct ws_blob b;
    assert_int_equal(ws_read(f->st, id, "out", 1 << 20, &b), 0);
    assert_string_equal(b.data, "/etc/passwd"); /* the target text, never the target's bytes */
    assert_int_equal(b.mode, 0120000);
    ws_blob_clear(&b);
    assert_int_equal(ws_read(f->st, id, "updir/passwd", 1 << 20, &b), AH_E_NOTFOUND);
    assert_int_equal(ws_read(f->st, id, ".git/config", 1 << 20, &b), AH_E_NOTFOUND);
}

static void test_read_caps_and_tree(void **state) {
    struct fx *f = *state;
    char p[300], id[WS_SNAP_ID_LEN + 1];
    snprintf(p, sizeof(p), "%s/src", f->work);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/src/lib", f->work);
    mkdir(p, 0755);
    char kb[1001];
    memset(kb, 'k', 1000);
    kb[1000] = '\0';
    put(f, "src/big.txt", kb);
    put(f, "src/lib/a.c", "int a;\n");
    put(f, "top", "");
    snap(f, id, NULL);
    struct ws_blob b;
    assert_int_equal(ws_read(f->st, id, "src/big.txt", 999, &b), AH_E_TOOLARGE);
    assert_int_equal(ws_read(f->st, id, "src/big.txt", 1000, &b), 0);
    assert_int_equal(b.size, 1000);
    ws_blob_clear(&b);
    assert_int_equal(ws_read(f->st, id, "top", 0, &b), 0); /* empty file within a 0 cap */
    assert_int_equal(b.size, 0);
    assert_string_equal(b.data, "");
    ws_blob_clear(&b);
    assert_int_equal(ws_read(f->st, id, "src", 1000, &b), AH_E_INVAL);
    assert_int_equal(ws_read(f->st, id, "nope", 1000, &b), AH_E_NOTFOUND);
    assert_int_equal(ws_read(f->st, id, "", 1000, &b), AH_E_INVAL);
    assert_int_equal(ws_read(f->st, "snap-nope", "top", 1000, &b), AH_E_INVAL);
    assert_int_equal(ws_read(f->st, "snap-01ARZ3NDEKTSV4RRFFQ69G5FAV", "top", 1000, &b),
                     AH_E_NOTFOUND);

    struct ws_entries e;
    assert_int_equal(ws_tree(f->st, id, "src", false, &e), 0);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.v[0].path, "src/big.txt");
    assert_int_equal(e.v[0].size, 1000);
    assert_string_equal(e.v[1].path, "src/lib");
    assert_int_equal(e.v[1].type, WS_DIR);
    ws_entries_clear(&e);
    assert_int_equal(ws_tree(f->st, id, NULL, true, &e), 0);
    assert_int_equal(e.n, 5);
    assert_string_equal(e.v[3].path, "src/lib/a.c");
    ws_entries_clear(&e);
    assert_int_equal(ws_tree(f->st, id, "top", false, &e), AH_E_NOTFOUND);
    assert_int_equal(ws_tree(f->st, NULL, NULL, true, &e), 0); /* the empty tree */
    assert_int_equal(e.n, 0);
    ws_entries_clear(&e);

    struct ws_entry one;
    assert_int_equal(ws_stat(f->st, id, "src/lib/a.c", &one), 0);
    assert_int_equal(one.size, 7);
    free(one.path);
}

static void test_info_and_parents(void **state) {
    struct fx *f = *state;
    char a[WS_SNAP_ID_LEN + 1], b[WS_SNAP_ID_LEN + 1], latest[WS_SNAP_ID_LEN + 1];
    assert_int_equal(ws_snapshot_latest(f->st, latest), AH_E_NOTFOUND);
    assert_int_equal(ws_snapshot(f->st, f->work, "base", a, NULL), 0); /* an empty workspace */
    put(f, "x", "1\n");
    assert_int_equal(ws_snapshot(f->st, f->work, NULL, b, NULL), 0);
    assert_int_equal(strncmp(a, "snap-", 5), 0);
    assert_true(strcmp(a, b) < 0); /* ULIDs sort by time */
    struct ws_snapshot_info info;
    assert_int_equal(ws_snapshot_info(f->st, a, &info), 0);
    assert_string_equal(info.label, "base");
    assert_string_equal(info.parent, "");
    assert_string_equal(info.tree,
                        "4b825dc642cb6eb9a060e54bf8d69288fbee4904"); /* git's empty tree */
    ws_snapshot_info_clear(&info);
    assert_int_equal(ws_snapshot_info(f->st, b, &info), 0);
    assert_string_equal(info.label, "snapshot");
    assert_string_equal(info.parent, a);
    ws_snapshot_info_clear(&info);
    assert_int_equal(ws_snapshot_latest(f->st, latest), 0);
    assert_string_equal(latest, b);
    assert_int_equal(ws_snapshot(f->st, "/nonexistent/dir", "x", a, NULL), AH_E_NOTFOUND);
    /* the store never touches a repository in the workdir */
    char p[300];
    snprintf(p, sizeof(p), "%s/refs/ah/snapshots/%s", f->store, b);
    char *refs = NULL;
    size_t n = 0;
    char packed[300];
    snprintf(packed, sizeof(packed), "%s/packed-refs", f->store);
    assert_true(access(p, F_OK) == 0 ||
                (read_file(packed, 1 << 20, &refs, &n) == 0 && strstr(refs, b) != NULL));
    free(refs);
}

/* Two handles on one store, in two threads: the writer lock serialises the snapshots, so the
 * parents form one line through all of them. */
struct writer {
    struct fx *f;
    char ids[5][WS_SNAP_ID_LEN + 1];
    int rc;
};

static void *writer_main(void *arg) {
    struct writer *w = arg;
    struct ws_store *st = NULL;
    w->rc = ws_store_open(w->f->store, &st);
    for (int i = 0; i < 5 && w->rc == 0; i++)
        w->rc = ws_snapshot(st, w->f->work, "w", w->ids[i], NULL);
    ws_store_free(st);
    return NULL;
}

static void test_single_writer(void **state) {
    struct fx *f = *state;
    put(f, "a", "a\n");
    struct writer w[2] = {{.f = f}, {.f = f}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].rc, 0);
    }
    char id[WS_SNAP_ID_LEN + 1];
    assert_int_equal(ws_snapshot_latest(f->st, id), 0);
    int chain = 0;
    while (*id) {
        struct ws_snapshot_info info;
        assert_int_equal(ws_snapshot_info(f->st, id, &info), 0);
        bool ours = false;
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 5; k++)
                ours |= strcmp(w[i].ids[k], id) == 0;
        assert_true(ours);
        chain++;
        memcpy(id, info.parent, sizeof(id));
        ws_snapshot_info_clear(&info);
    }
    assert_int_equal(chain, 10);
}

/* ws_snapshot_changed with the paths an operation touched gives the same tree as a full walk,
 * through every kind of change, including the ones that make it fall back to the walk. */
static void tree_of(struct ws_store *st, const char *id, char out[41]) {
    struct ws_snapshot_info info;
    assert_int_equal(ws_snapshot_info(st, id, &info), 0);
    memcpy(out, info.tree, 41);
    ws_snapshot_info_clear(&info);
}

static void sh(struct fx *f, const char *cmd) {
    char line[1024];
    snprintf(line, sizeof(line), "cd '%s' && %s", f->work, cmd);
    assert_int_equal(system(line), 0);
}

static void test_snapshot_changed(void **state) {
    struct fx *f = *state;
    char full_dir[200];
    snprintf(full_dir, sizeof(full_dir), "%s/full", f->root);
    struct ws_store *full = NULL;
    assert_int_equal(ws_store_open(full_dir, &full), 0);
    sh(f, "mkdir -p a/b c && echo 1 > a/b/x && echo 2 > a/y && echo 3 > c/z && echo 4 > top");
    char id[WS_SNAP_ID_LEN + 1], fid[WS_SNAP_ID_LEN + 1], t1[41], t2[41];
    struct ws_snapshot_stats s;
    /* no earlier snapshot: the hints are not enough, it walks everything */
    const char *none[] = {"top"};
    assert_int_equal(ws_snapshot_changed(f->st, f->work, "h", none, 1, id, &s), 0);
    assert_int_equal(s.files, 4);
    static const struct {
        const char *cmd;
        const char *paths[4];
    } steps[] = {
        {"echo changed > a/y", {"a/y"}},
        {"echo new > a/b/n", {"a/b/n"}},
        {"mkdir -p d/e && echo deep > d/e/f && echo g > d/g", {"d"}},
        {"rm a/b/x", {"a/b/x"}},
        {"rm a/b/n", {"a/b/n"}}, /* a/b is now empty: it disappears from the tree */
        {"chmod +x top", {"top"}},
        {"rm c/z && ln -s ../top c/z", {"c/z"}},
        {"mv a/y a/moved", {"a/y", "a/moved"}},
        {"rm -r d", {"d"}},
        {"rm top && mkdir top && echo t > top/inner", {"top"}}, /* file -> dir: full walk */
        {"echo again > a/moved && echo c > c/new", {"c", "a/moved", "c/new", "./c//"}},
        {"true", {NULL}},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        sh(f, steps[i].cmd);
        size_t n = 0;
        while (n < 4 && steps[i].paths[n])
            n++;
        assert_int_equal(ws_snapshot_changed(f->st, f->work, "h", steps[i].paths, n, id, &s), 0);
        assert_int_equal(ws_snapshot(full, f->work, "f", fid, NULL), 0);
        tree_of(f->st, id, t1);
        tree_of(full, fid, t2);
        if (strcmp(t1, t2) != 0)
            fail_msg("step %zu (%s): hinted tree %s, full walk %s", i, steps[i].cmd, t1, t2);
    }
    /* one changed file among many: only it is hashed */
    sh(f, "for i in $(seq 1 50); do echo $i > a/many$i; done");
    const char *a[] = {"a"};
    assert_int_equal(ws_snapshot_changed(f->st, f->work, "h", a, 1, id, &s), 0);
    sh(f, "echo x > a/many7");
    const char *one[] = {"a/many7"};
    assert_int_equal(ws_snapshot_changed(f->st, f->work, "h", one, 1, id, &s), 0);
    assert_int_equal(s.hashed, 1);
    assert_int_equal(ws_snapshot(full, f->work, "f", fid, NULL), 0);
    tree_of(f->st, id, t1);
    tree_of(full, fid, t2);
    assert_string_equal(t1, t2);
    /* hostile hints are refused */
    const char *bad[] = {"../etc"};
    assert_int_equal(ws_snapshot_changed(f->st, f->work, "h", bad, 1, id, &s), AH_E_INVAL);
    ws_store_free(full);
}

/* ---- changes and diff formats ---------------------------------------------------------------- */

static char *diff_text(struct fx *f, const char *a, const char *b, enum ws_format fmt, int ctx) {
    struct ws_diff_opts o;
    ws_diff_opts_init(&o);
    o.format = fmt;
    o.context = ctx;
    struct ah_buf out = {0};
    assert_int_equal(ws_diff(f->st, a, b, &o, &out), 0);
    return ah_buf_steal(&out);
}

static void test_changes_and_formats(void **state) {
    struct fx *f = *state;
    char a[WS_SNAP_ID_LEN + 1], b[WS_SNAP_ID_LEN + 1];
    put(f, "code.txt", "one\ntwo\nthree\nfour\n");
    put(f, "gone.txt", "bye\n");
    put(f, "evil.txt", "x\n");
    snap(f, a, NULL);
    put(f, "code.txt", "one\nTWO\nthree\nfour\nfive\n");
    char p[300];
    snprintf(p, sizeof(p), "%s/gone.txt", f->work);
    unlink(p);
    put(f, "evil.txt", "<script>alert('x')</script> & \x01\r\n");
    put_n(f, "bin", "a\0b", 3);
    snap(f, b, NULL);

    struct ws_changes ch;
    assert_int_equal(ws_changes(f->st, a, b, &ch), 0);
    assert_int_equal(ch.n, 4);
    assert_string_equal(ch.v[0].path, "bin");
    assert_true(ch.v[0].binary);
    assert_int_equal(ch.v[0].lines_added, 0);
    assert_string_equal(ch.v[1].path, "code.txt");
    assert_int_equal(ch.v[1].status, WS_MODIFIED);
    assert_int_equal(ch.v[1].lines_added, 2);
    assert_int_equal(ch.v[1].lines_removed, 1);
    assert_int_equal(ch.v[1].size, 24);
    assert_false(ch.v[1].binary);
    assert_string_equal(ch.v[3].path, "gone.txt");
    assert_int_equal(ch.v[3].status, WS_DELETED);
    assert_int_equal(ch.v[3].size, 4);
    ws_changes_clear(&ch);
    assert_int_equal(ws_changes(f->st, NULL, a, &ch), 0); /* from nothing: all added */
    assert_int_equal(ch.n, 3);
    assert_int_equal(ch.v[1].status, WS_ADDED);
    ws_changes_clear(&ch);

    /* split: a deletion next to an addition pairs into one `change` row */
    const char *only[] = {"code.txt"};
    struct ws_diff_opts o;
    ws_diff_opts_init(&o);
    o.format = WS_SPLIT;
    o.paths = only;
    o.n_paths = 1;
    struct ah_buf out = {0};
    assert_int_equal(ws_diff(f->st, a, b, &o, &out), 0);
    json_error_t err;
    json_t *doc = json_loads(out.p, 0, &err);
    ah_buf_clear(&out);
    assert_non_null(doc);
    json_t *files = json_object_get(doc, "files");
    assert_int_equal(json_array_size(files), 1);
    json_t *rows = json_object_get(
        json_array_get(json_object_get(json_array_get(files, 0), "hunks"), 0), "rows");
    assert_int_equal(json_array_size(rows), 5);
    const char *kinds[] = {"context", "change", "context", "context", "add"};
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(rows, i), "kind")),
                            kinds[i]);
    json_t *change = json_array_get(rows, 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(change, "left"), "text")),
                        "two");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(change, "right"), "line")),
                     2);
    assert_true(json_is_null(json_object_get(json_array_get(rows, 4), "left")));
    json_decref(doc);

    /* html: everything escaped, control characters shown, binary as metadata only */
    char *html = diff_text(f, a, b, WS_HTML, 3);
    assert_null(strstr(html, "<script"));
    assert_non_null(strstr(
        html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; \xe2\x90\x81\xe2\x90\x8d"));
    assert_non_null(strstr(html, "Binary file changed"));
    free(html);

    /* unified: context honoured; 11 is refused */
    char *u0 = diff_text(f, a, b, WS_UNIFIED, 0);
    assert_non_null(strstr(u0, "@@ -2 +2 @@ one\n-two\n+TWO\n@@ -4,0 +5 @@ four\n+five\n"));
    free(u0);
    o.format = WS_UNIFIED;
    o.paths = NULL;
    o.context = 11;
    assert_int_equal(ws_diff(f->st, a, b, &o, &out), AH_E_INVAL);
    o.context = -1;
    assert_int_equal(ws_diff(f->st, a, b, &o, &out), AH_E_INVAL);
    /* the caller's cap is honoured */
    o.context = 3;
    struct ah_buf small = {.max = 16};
    assert_int_equal(ws_diff(f->st, a, b, &o, &small), AH_E_TOOLARGE);
    ah_buf_clear(&small);
    assert_int_equal(ws_diff(f->st, a, "snap-bad", &o, &out), AH_E_INVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_ok),
        cmocka_unit_test(test_path_hostile),
        cmocka_unit_test(test_truncate),
        cmocka_unit_test_setup_teardown(test_incremental, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinks_and_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkout_seeded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layer_and_snapshot_as, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_before, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_caps_and_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_info_and_parents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_and_formats, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
