/*
 * tree_answer.c — the answers of GET /sessions/{id}/workspace/files (the tree, API.md §7.6) and
 * GET /sessions/{id}/workspace/search/files (a fuzzy search of paths), ws_answer's WS_ASK_TREE
 * and WS_ASK_PATHS: read from the session's private object store at `to` (default current),
 * never from the live file system (a symlink is listed as a symlink and never followed), so an
 * executor answers them for a session it runs with the same code.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define TREE_NODES_MAX 100000

static void reply(struct ws_reply *r, json_t *body) {
    if (body) {
        r->status = 200;
        r->json = body;
    } else {
        problem_set(&r->problem, AH_E_NOMEM, "out of memory while building the response");
    }
}

/* ---- the tree ------------------------------------------------------------------------------------ */

static bool in_changes(const struct ws_changes *ch, const char *path) {
    for (size_t i = 0; i < ch->n; i++)
        if (strcmp(ch->v[i].path, path) == 0)
            return true;
    return false;
}

/* Does any change sit under dir ("" = the root)? */
static bool dir_modified(const struct ws_changes *ch, const char *dir) {
    size_t n = strlen(dir);
    for (size_t i = 0; i < ch->n; i++)
        if (!n || (strncmp(ch->v[i].path, dir, n) == 0 && ch->v[i].path[n] == '/'))
            return true;
    return false;
}

static json_t *node_json(const struct ws_entry *e, const struct ws_changes *ch, const char *ts) {
    if (e->type == WS_DIR)
        return json_pack("{s:s, s:s}", "path", e->path, "type", "directory");
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:b}", "path", e->path, "type",
                          e->type == WS_SYMLINK ? "symlink" : "file", "size_bytes",
                          (json_int_t)e->size, "last_modified", ts, "is_modified",
                          in_changes(ch, e->path));
    if (o && e->mode == 0100755)
        json_object_set_new(o, "executable", json_true());
    return o;
}

/* Builds the nested tree of entries (git order: a directory's entries follow it). */
static json_t *build(const struct ws_entries *es, size_t *i, const char *dir,
                     const struct ws_changes *ch, bool modified_only, bool recursive,
                     const char *ts) {
    json_t *children = json_array();
    size_t dl = strlen(dir);
    while (children && *i < es->n) {
        const struct ws_entry *e = &es->v[*i];
        if (dl && !(strncmp(e->path, dir, dl) == 0 && e->path[dl] == '/'))
            break; /* left dir */
        (*i)++;
        if (modified_only && (e->type == WS_DIR ? !dir_modified(ch, e->path)
                                                : !in_changes(ch, e->path))) {
            if (e->type == WS_DIR) /* skip its subtree */
                while (*i < es->n && strncmp(es->v[*i].path, e->path, strlen(e->path)) == 0 &&
                       es->v[*i].path[strlen(e->path)] == '/')
                    (*i)++;
            continue;
        }
        json_t *n = node_json(e, ch, ts);
        if (n && e->type == WS_DIR && recursive) /* otherwise its entries are not listed */
            json_object_set_new(n, "children",
                                build(es, i, e->path, ch, modified_only, recursive, ts));
        json_array_append_new(children, n);
    }
    return children;
}

static int tree_query(const struct ws_ask *a, bool *recursive, bool *modified_only,
                      char dir[WS_PATH_MAX + 1], struct ah_problem *p) {
    *recursive = param_bool(ws_ask_param(a, "recursive"), "recursive", false, p);
    *modified_only = param_bool(ws_ask_param(a, "modified_only"), "modified_only", false, p);
    const char *path = ws_ask_param(a, "path");
    dir[0] = '\0';
    if (path && ws_path_normalise(path, strlen(path), dir) < 0)
        problem_field(p, "path", "must be a relative path inside the workspace");
    return p->code;
}

void ws_tree_answer(struct ws_store *st, const struct ws_points *pt, const struct ws_ask *a,
                    struct ws_reply *r) {
    bool recursive, modified_only;
    char dir[WS_PATH_MAX + 1];
    if (tree_query(a, &recursive, &modified_only, dir, &r->problem) < 0)
        return;
    struct ws_changes ch = {0};
    struct ws_entries es = {0};
    int rc = ws_changes(st, pt->from, pt->to, &ch);
    if (rc < 0) {
        problem_set(&r->problem, AH_E_INTERNAL, "cannot compare the snapshots: %s",
                    ah_strerror(rc));
    } else if ((rc = ws_tree(st, pt->to, dir, recursive, &es)) == AH_E_NOTFOUND) {
        problem_set(&r->problem, AH_E_NOTFOUND, "no directory %s in %s", dir[0] ? dir : "/",
                    pt->to);
    } else if (rc < 0) {
        problem_set(&r->problem, AH_E_INTERNAL, "cannot list the workspace: %s",
                    ah_strerror(rc));
    } else if (es.n > TREE_NODES_MAX) {
        problem_set(&r->problem, AH_E_TOOLARGE,
                    "the tree has more than %d entries; list a directory or drop recursive",
                    TREE_NODES_MAX);
    } else {
        char ts[TIME_RFC3339_LEN + 1];
        time_format(pt->to_ms, ts);
        size_t i = 0;
        json_t *kids = build(&es, &i, dir, &ch, modified_only, recursive, ts);
        reply(r, kids ? json_pack("{s:s, s:s, s:o, s:s}", "path", dir, "type", "directory",
                                  "children", kids, "snapshot_id", pt->to)
                      : NULL);
    }
    ws_entries_clear(&es);
    ws_changes_clear(&ch);
}

/* ---- the fuzzy search of paths ------------------------------------------------------------------- */

/* A fuzzy score: q's characters in order in path (case-insensitive), 0 when they are not; more
 * for consecutive runs, matches at the start of a name, and a match in the file's own name. */
static double fuzzy(const char *q, const char *path) {
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    double score = 0;
    int run = 0;
    const char *p = path;
    for (; *q; q++) {
        char c = (char)tolower((unsigned char)*q);
        const char *start = p;
        while (*p && tolower((unsigned char)*p) != c)
            p++;
        if (!*p)
            return 0;
        run = p == start && p != path ? run + 1 : 0;
        score += 1 + run + (p == path || p[-1] == '/' || p[-1] == '_' || p[-1] == '-' ||
                            p[-1] == '.' ? 2 : 0) + (p >= name ? 1 : 0);
        p++;
    }
    return score / (double)(strlen(path) + 1);
}

struct hit {
    const struct ws_entry *e;
    double score;
};

static int by_score(const void *a, const void *b) {
    const struct hit *x = a, *y = b;
    return x->score < y->score ? 1 : x->score > y->score ? -1 : strcmp(x->e->path, y->e->path);
}

static int paths_query(const struct ws_ask *a, int64_t *limit, bool *preview, bool *modified_only,
                       struct ah_problem *p) {
    const char *text = ws_ask_param(a, "q"), *type = ws_ask_param(a, "type");
    *limit = param_int(ws_ask_param(a, "limit"), "limit", 20, 1, 100, p);
    *preview = param_bool(ws_ask_param(a, "include_preview"), "include_preview", true, p);
    *modified_only = param_bool(ws_ask_param(a, "modified_only"), "modified_only", false, p);
    if (text && strlen(text) > 256)
        problem_field(p, "q", "at most 256 bytes");
    if (type && strcmp(type, "file") && strcmp(type, "directory") && strcmp(type, "both"))
        problem_field(p, "type", "must be file, directory or both");
    return p->code;
}

int ws_tree_check(const struct ws_ask *a, struct ah_problem *p) {
    bool b1, b2;
    int64_t n;
    char dir[WS_PATH_MAX + 1];
    return a->kind == WS_ASK_TREE ? tree_query(a, &b1, &b2, dir, p)
                                  : paths_query(a, &n, &b1, &b2, p);
}

void ws_paths_answer(struct ws_store *st, const struct ws_points *pt, const struct ws_ask *a,
                     struct ws_reply *r) {
    int64_t limit;
    bool preview, modified_only;
    if (paths_query(a, &limit, &preview, &modified_only, &r->problem) < 0)
        return;
    const char *text = ws_ask_param(a, "q"), *type = ws_ask_param(a, "type");
    if (!text)
        text = "";
    bool files = !type || strcmp(type, "directory") != 0;
    bool dirs = !type || strcmp(type, "file") != 0;
    struct ws_changes ch = {0};
    struct ws_entries es = {0};
    struct hit *hits = NULL;
    int rc = ws_changes(st, pt->from, pt->to, &ch);
    if (rc < 0) {
        problem_set(&r->problem, AH_E_INTERNAL, "cannot compare the snapshots: %s",
                    ah_strerror(rc));
        goto out;
    }
    rc = ws_tree(st, pt->to, "", true, &es);
    hits = rc == 0 ? calloc(es.n + 1, sizeof(*hits)) : NULL;
    if (!hits) {
        problem_set(&r->problem, AH_E_INTERNAL, "cannot list the workspace: %s",
                    ah_strerror(rc < 0 ? rc : AH_E_NOMEM));
        goto out;
    }
    size_t n = 0;
    for (size_t i = 0; i < es.n; i++) {
        const struct ws_entry *e = &es.v[i];
        if ((e->type == WS_DIR && !dirs) || (e->type != WS_DIR && !files))
            continue;
        if (modified_only &&
            (e->type == WS_DIR ? !dir_modified(&ch, e->path) : !in_changes(&ch, e->path)))
            continue;
        double sc = *text ? fuzzy(text, e->path) : 1.0;
        if (sc > 0)
            hits[n++] = (struct hit){e, sc};
    }
    qsort(hits, n, sizeof(*hits), by_score);
    char ts[TIME_RFC3339_LEN + 1];
    time_format(pt->to_ms, ts);
    json_t *fa = json_array(), *da = json_array();
    for (size_t i = 0; i < n && i < (size_t)limit && fa && da; i++) {
        const struct ws_entry *e = hits[i].e;
        if (e->type == WS_DIR) {
            int64_t count = 0;
            size_t dl = strlen(e->path);
            for (size_t k = 0; k < es.n; k++)
                count += es.v[k].type != WS_DIR && !strncmp(es.v[k].path, e->path, dl) &&
                         es.v[k].path[dl] == '/';
            char d[WS_PATH_MAX + 2];
            snprintf(d, sizeof(d), "%s/", e->path);
            json_array_append_new(da, json_pack("{s:s, s:s, s:I, s:s}", "path", d, "type",
                                                "directory", "file_count", (json_int_t)count,
                                                "last_modified", ts));
            continue;
        }
        json_t *pv = json_null();
        struct ws_blob b = {0};
        if (preview && e->type == WS_FILE && e->size < 10240 &&
            ws_read(st, pt->to, e->path, 10240, &b) == 0 && !memchr(b.data, 0, b.size)) {
            size_t cut = b.size < 500 ? b.size : 500;
            while (cut && cut < b.size && ((unsigned char)b.data[cut] & 0xC0) == 0x80)
                cut--;
            json_t *t = json_stringn(b.data, cut);
            if (t) {
                json_decref(pv);
                pv = t;
            }
        }
        ws_blob_clear(&b);
        json_array_append_new(fa, json_pack("{s:s, s:s, s:I, s:s, s:b, s:o, s:f}", "path",
                                            e->path, "type", "file", "size_bytes",
                                            (json_int_t)e->size, "last_modified", ts,
                                            "is_modified", in_changes(&ch, e->path), "preview",
                                            pv, "relevance_score", hits[i].score));
    }
    reply(r, fa && da ? json_pack("{s:s, s:o, s:o, s:I}", "query", text, "files", fa,
                                  "directories", da, "total", (json_int_t)n)
                      : NULL);
    if (!fa || !da) {
        json_decref(fa);
        json_decref(da);
    }
out:
    free(hits);
    ws_entries_clear(&es);
    ws_changes_clear(&ch);
}
