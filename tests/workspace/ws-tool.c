/*
 * ws-tool — a command-line face of the workspace layer, for the corpus test (corpus.py) and by
 * hand.
 *
 *   ws-tool snapshot STORE WORKDIR [LABEL]        prints "<snapshot id> <tree id> <hashed> <files>"
 *   ws-tool diff STORE FROM TO FORMAT [CONTEXT]   FORMAT unified|patch|split|html; CONTEXT n or
 * full ws-tool changes STORE FROM TO                 one JSON object per changed file ws-tool tree
 * STORE SNAP [DIR]                 "<mode> <size> <path>" per entry, recursive ws-tool read STORE
 * SNAP PATH [CAP]            the file's bytes FROM/TO "-" is the empty tree. Exit status 0, or 1
 * with the error on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/workspace/workspace.h"

static const char *snap(const char *s) {
    return strcmp(s, "-") == 0 ? NULL : s;
}

static int fail(const char *what, int rc) {
    fprintf(stderr, "ws-tool: %s: %s\n", what, ah_error_name(rc));
    return 1;
}

static int write_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w <= 0)
            return 1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: ws-tool snapshot|diff|changes|tree|read STORE ...\n");
        return 2;
    }
    AH_AUTO(ws_store_freep) struct ws_store *st = NULL;
    int rc = ws_store_open(argv[2], &st);
    if (rc < 0)
        return fail("open", rc);
    const char *cmd = argv[1];
    if (strcmp(cmd, "snapshot") == 0 && argc >= 4) {
        char id[WS_SNAP_ID_LEN + 1];
        struct ws_snapshot_stats stats;
        if ((rc = ws_snapshot(st, argv[3], argc > 4 ? argv[4] : NULL, id, &stats)) < 0)
            return fail("snapshot", rc);
        struct ws_snapshot_info info;
        if ((rc = ws_snapshot_info(st, id, &info)) < 0)
            return fail("info", rc);
        printf("%s %s %llu %llu\n", id, info.tree, (unsigned long long)stats.hashed,
               (unsigned long long)stats.files);
        ws_snapshot_info_clear(&info);
        return 0;
    }
    if (strcmp(cmd, "diff") == 0 && argc >= 6) {
        struct ws_diff_opts o;
        ws_diff_opts_init(&o);
        const char *f = argv[5];
        o.format = strcmp(f, "patch") == 0   ? WS_PATCH
                   : strcmp(f, "split") == 0 ? WS_SPLIT
                   : strcmp(f, "html") == 0  ? WS_HTML
                                             : WS_UNIFIED;
        if (argc > 6) {
            if (strcmp(argv[6], "full") == 0)
                o.full = true;
            else
                o.context = atoi(argv[6]);
        }
        struct ah_buf out = {.max = (size_t)1 << 32};
        if ((rc = ws_diff(st, snap(argv[3]), snap(argv[4]), &o, &out)) < 0) {
            ah_buf_clear(&out);
            return fail("diff", rc);
        }
        rc = write_all(out.p ? out.p : "", out.n);
        ah_buf_clear(&out);
        return rc;
    }
    if (strcmp(cmd, "changes") == 0 && argc >= 5) {
        struct ws_changes ch;
        if ((rc = ws_changes(st, snap(argv[3]), snap(argv[4]), &ch)) < 0)
            return fail("changes", rc);
        for (size_t i = 0; i < ch.n; i++) {
            const struct ws_change *c = &ch.v[i];
            json_t *j = json_pack(
                "{s:s, s:s?, s:s, s:i, s:I, s:I, s:b, s:I, s:i, s:i}", "path", c->path, "old_path",
                c->old_path, "status", ws_status_name(c->status), "similarity", c->similarity,
                "lines_added", (json_int_t)c->lines_added, "lines_removed",
                (json_int_t)c->lines_removed, "binary", c->binary, "size", (json_int_t)c->size,
                "old_mode", (int)c->old_mode, "new_mode", (int)c->new_mode);
            char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            if (s)
                printf("%s\n", s);
            free(s);
            json_decref(j);
        }
        ws_changes_clear(&ch);
        return 0;
    }
    if (strcmp(cmd, "tree") == 0 && argc >= 4) {
        struct ws_entries e;
        if ((rc = ws_tree(st, snap(argv[3]), argc > 4 ? argv[4] : NULL, true, &e)) < 0)
            return fail("tree", rc);
        for (size_t i = 0; i < e.n; i++)
            printf("%06o %llu %s\n", e.v[i].mode, (unsigned long long)e.v[i].size, e.v[i].path);
        ws_entries_clear(&e);
        return 0;
    }
    if (strcmp(cmd, "read") == 0 && argc >= 5) {
        struct ws_blob b;
        if ((rc = ws_read(st, snap(argv[3]), argv[4],
                          argc > 5 ? strtoul(argv[5], NULL, 10) : (size_t)1 << 30, &b)) < 0)
            return fail("read", rc);
        rc = write_all(b.data, b.size);
        ws_blob_clear(&b);
        return rc;
    }
    fprintf(stderr, "ws-tool: bad command\n");
    return 2;
}
