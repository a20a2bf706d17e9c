/*
 * workspace_routes.c — the session's workspace as a tree (API.md §7.6 workspace/files), its
 * facts (§7.9 workspace/info) and an archive of it (§7.9 workspace/download), all read from the
 * session's private object store (D30) at ?to= (default `current`, see files.c), never from the
 * live file system: a symlink is listed as a symlink with its target text and never followed.
 *
 * The archive is a .tar.gz produced while it is sent (an http_stream: one file's blob and a
 * gzip buffer in memory at a time, never the whole archive). Files over ARCHIVE_FILE_MAX, and
 * symlinks whose target text does not fit a ustar header (100 bytes), are left out.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "snapview.h"

#define ARCHIVE_FILE_MAX (256u * 1024 * 1024)
#define TREE_NODES_MAX 100000

/* ---- GET /sessions/{id}/workspace/files ------------------------------------------------------ */

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

static void get_tree(struct http_request *req, struct http_response *res) {
    struct ah_problem p = {0};
    bool recursive = query_bool(req, "recursive", false, &p);
    bool modified_only = query_bool(req, "modified_only", false, &p);
    const char *q = http_query(req, "path");
    char dir[WS_PATH_MAX + 1] = "";
    if (q && ws_path_normalise(q, strlen(q), dir) < 0)
        problem_field(&p, "path", "must be a relative path inside the workspace");
    if (http_fail(req, res, &p))
        return;
    struct view v;
    struct ws_changes ch = {0};
    struct ws_entries es = {0};
    if (view_open(&v, req, res) && changes_or_fail(&v, req, res, &ch)) {
        int rc = ws_tree(v.st, v.to, dir, recursive, &es);
        if (rc == AH_E_NOTFOUND)
            http_error(req, res, AH_E_NOTFOUND, "no directory %s in %s", dir[0] ? dir : "/",
                       v.to);
        else if (rc < 0)
            http_error(req, res, AH_E_INTERNAL, "cannot list the workspace: %s", ah_strerror(rc));
        else if (es.n > TREE_NODES_MAX)
            http_error(req, res, AH_E_TOOLARGE,
                       "the tree has more than %d entries; list a directory or drop recursive",
                       TREE_NODES_MAX);
        else {
            char ts[TIME_RFC3339_LEN + 1];
            time_format(v.to_ms, ts);
            size_t i = 0;
            json_t *kids = build(&es, &i, dir, &ch, modified_only, recursive, ts);
            http_json(req, res, 200,
                      kids ? json_pack("{s:s, s:s, s:o, s:s}", "path", dir, "type", "directory",
                                       "children", kids, "snapshot_id", v.to)
                           : NULL);
        }
    }
    ws_entries_clear(&es);
    ws_changes_clear(&ch);
    view_clear(&v);
}

/* ---- GET /sessions/{id}/workspace/info -------------------------------------------------------- */

static void get_info(struct http_request *req, struct http_response *res) {
    struct view v;
    struct ws_entries es = {0};
    if (view_open(&v, req, res)) {
        int rc = ws_tree(v.st, v.to, "", true, &es);
        if (rc < 0) {
            http_error(req, res, AH_E_INTERNAL, "cannot list the workspace: %s", ah_strerror(rc));
        } else {
            uint64_t bytes = 0, files = 0;
            for (size_t i = 0; i < es.n; i++)
                if (es.v[i].type != WS_DIR) {
                    files++;
                    bytes += es.v[i].size;
                }
            struct ws_snapshot_info bi = {0};
            int64_t created = ws_snapshot_info(v.st, v.base, &bi) == 0 ? bi.created_ms
                                                                          : v.row->created_at;
            ws_snapshot_info_clear(&bi);
            char ts[TIME_RFC3339_LEN + 1], id[64];
            time_format(created, ts);
            snprintf(id, sizeof(id), "ws-%s", v.row->id);
            const char *root = v.row->workspace_path;
            uint64_t snap_bytes = 0, view_bytes = 0; /* disk usage of the timeline */
            tl_disk_usage(v.ctx, v.row->id, &snap_bytes, &view_bytes);
            http_json(req, res, 200,
                      json_pack("{s:s, s:s, s:s, s:s?, s:I, s:I, s:s, s:s?, s:n, s:s, s:s, s:I, "
                                "s:I}",
                                "id", id, "session_id", v.row->id, "root_path", root ? root : "",
                                "snapshot_provider", v.row->workspace_provider, "size_bytes",
                                (json_int_t)bytes, "file_count", (json_int_t)files, "created_at",
                                ts, "mount_path", root, "executor_id", "base_snapshot_id",
                                v.base, "snapshot_id", v.to, "snapshots_bytes",
                                (json_int_t)snap_bytes, "views_bytes", (json_int_t)view_bytes));
        }
    }
    ws_entries_clear(&es);
    view_clear(&v);
}

/* ---- GET /sessions/{id}/workspace/download ---------------------------------------------------- */

struct archive {
    struct ws_store *st;
    char snap[WS_SNAP_ID_LEN + 1];
    struct ws_entries es;
    size_t next; /* the entry to add next */
    z_stream z;
    bool z_ready, finished;
};

static void archive_free(struct archive *a) {
    if (!a)
        return;
    if (a->z_ready)
        deflateEnd(&a->z);
    ws_entries_clear(&a->es);
    ws_store_free(a->st);
    free(a);
}

/* Compresses len bytes (flush: Z_NO_FLUSH or Z_FINISH), appending the output to spill. */
static int squeeze(struct archive *a, const void *data, size_t len, int flush,
                   struct ah_buf *spill) {
    a->z.next_in = (Bytef *)data;
    a->z.avail_in = (uInt)len;
    do {
        unsigned char tmp[65536];
        a->z.next_out = tmp;
        a->z.avail_out = sizeof(tmp);
        int rc = deflate(&a->z, flush);
        if (rc == Z_STREAM_ERROR)
            return AH_E_INTERNAL;
        size_t got = sizeof(tmp) - a->z.avail_out;
        if (got && ah_buf_append(spill, tmp, got) < 0)
            return AH_E_NOMEM;
        if (flush == Z_FINISH && rc == Z_STREAM_END)
            break;
    } while (a->z.avail_in || a->z.avail_out == 0 || flush == Z_FINISH);
    return 0;
}

static void octal(char *dst, size_t n, uint64_t v) {
    snprintf(dst, n, "%0*llo", (int)n - 1, (unsigned long long)v);
}

/* A ustar header (names up to 100 bytes, or prefix/name split; longer names use a GNU
 * longname record first). */
static int tar_header(struct archive *a, const struct ws_entry *e, uint64_t size,
                      const char *link, struct ah_buf *spill) {
    unsigned char h[512];
    size_t pl = strlen(e->path);
    if (pl >= 100) { /* GNU ././@LongLink: the name as a file of its own */
        memset(h, 0, sizeof(h));
        memcpy(h, "././@LongLink", 13);
        octal((char *)h + 100, 8, 0644);
        octal((char *)h + 108, 8, 0);
        octal((char *)h + 116, 8, 0);
        octal((char *)h + 124, 12, pl + 1);
        octal((char *)h + 136, 12, 0);
        h[156] = 'L';
        memcpy(h + 257, "ustar  ", 8);
        memset(h + 148, ' ', 8);
        unsigned sum = 0;
        for (int i = 0; i < 512; i++)
            sum += h[i];
        snprintf((char *)h + 148, 8, "%06o", sum);
        int rc = squeeze(a, h, 512, Z_NO_FLUSH, spill);
        size_t padded = (pl + 1 + 511) / 512 * 512;
        char *name = calloc(1, padded);
        if (!name)
            return AH_E_NOMEM;
        memcpy(name, e->path, pl);
        if (rc == 0)
            rc = squeeze(a, name, padded, Z_NO_FLUSH, spill);
        free(name);
        if (rc < 0)
            return rc;
    }
    memset(h, 0, sizeof(h));
    memcpy(h, e->path, pl < 100 ? pl : 99);
    octal((char *)h + 100, 8, e->type == WS_DIR ? 0755 : e->mode == 0100755 ? 0755 : 0644);
    octal((char *)h + 108, 8, 0);
    octal((char *)h + 116, 8, 0);
    octal((char *)h + 124, 12, size);
    octal((char *)h + 136, 12, 0);
    h[156] = e->type == WS_DIR ? '5' : e->type == WS_SYMLINK ? '2' : '0';
    if (link)
        memcpy(h + 157, link, strlen(link) < 100 ? strlen(link) : 99);
    memcpy(h + 257, "ustar  ", 8);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    return squeeze(a, h, 512, Z_NO_FLUSH, spill);
}

/* Adds entries until some compressed output is ready (or the archive is finished). */
static int produce(struct archive *a, struct ah_buf *spill) {
    while (!spill->n && !a->finished) {
        if (a->next >= a->es.n) {
            static const unsigned char zero[1024];
            int rc = squeeze(a, zero, sizeof(zero), Z_FINISH, spill);
            a->finished = true;
            return rc;
        }
        const struct ws_entry *e = &a->es.v[a->next++];
        if (e->type == WS_DIR) {
            int rc = tar_header(a, e, 0, NULL, spill);
            if (rc < 0)
                return rc;
            continue;
        }
        struct ws_blob b = {0};
        int rc = ws_read(a->st, a->snap, e->path, ARCHIVE_FILE_MAX, &b);
        if (rc == AH_E_TOOLARGE)
            continue; /* left out: see the header comment */
        if (rc < 0)
            return rc;
        if (e->type == WS_SYMLINK && b.size >= 100) { /* a target tar cannot hold: left out */
            ws_blob_clear(&b);
            continue;
        }
        rc = tar_header(a, e, e->type == WS_SYMLINK ? 0 : b.size,
                        e->type == WS_SYMLINK ? b.data : NULL, spill);
        if (rc == 0 && e->type == WS_FILE) {
            static const unsigned char pad[512];
            rc = squeeze(a, b.data, b.size, Z_NO_FLUSH, spill);
            if (rc == 0 && b.size % 512)
                rc = squeeze(a, pad, 512 - b.size % 512, Z_NO_FLUSH, spill);
        }
        ws_blob_clear(&b);
        if (rc < 0)
            return rc;
    }
    return 0;
}

struct dl_stream {
    struct archive *a;
    struct ah_buf spill; /* compressed bytes ready to send */
    size_t off;
};

static ssize_t dl_read(void *ctx, char *buf, size_t max) {
    struct dl_stream *s = ctx;
    if (s->off >= s->spill.n) {
        s->spill.n = 0;
        s->off = 0;
        if (s->a->finished)
            return HTTP_STREAM_END;
        int rc = produce(s->a, &s->spill);
        if (rc < 0)
            return rc;
        if (!s->spill.n)
            return HTTP_STREAM_END;
    }
    size_t n = s->spill.n - s->off < max ? s->spill.n - s->off : max;
    memcpy(buf, s->spill.p + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void dl_close(void *ctx) {
    struct dl_stream *s = ctx;
    archive_free(s->a);
    ah_buf_clear(&s->spill);
    free(s);
}

static const struct http_stream_ops dl_ops = {.read = dl_read, .close = dl_close};

static void get_download(struct http_request *req, struct http_response *res) {
    struct view v;
    if (!view_open(&v, req, res)) {
        view_clear(&v);
        return;
    }
    struct archive *a = calloc(1, sizeof(*a));
    struct dl_stream *s = calloc(1, sizeof(*s));
    int rc = a && s ? 0 : AH_E_NOMEM;
    if (rc == 0) {
        s->a = a;
        s->spill.max = 64u * 1024 * 1024;
        memcpy(a->snap, v.to, sizeof(a->snap));
        a->st = AH_TAKE(v.st); /* the stream's own handle from now on */
        rc = ws_tree(a->st, a->snap, "", true, &a->es);
    }
    if (rc == 0) {
        /* windowBits 15 + 16: a gzip wrapper */
        rc = deflateInit2(&a->z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK
                 ? 0
                 : AH_E_NOMEM;
        a->z_ready = rc == 0;
    }
    struct http_stream *hs = rc == 0 ? http_stream_new(&dl_ops, s) : NULL;
    if (!hs) {
        archive_free(a);
        free(s);
        http_error(req, res, AH_E_INTERNAL, "cannot archive the workspace: %s",
                   ah_strerror(rc ? rc : AH_E_NOMEM));
        view_clear(&v);
        return;
    }
    char disp[128];
    snprintf(disp, sizeof(disp), "attachment; filename=\"%s-%s.tar.gz\"", v.row->id, v.to);
    http_header_add(req, res, "Content-Disposition", disp);
    http_header_add(req, res, "X-Ah-Snapshot-Id", v.to);
    res->status = 200;
    res->content_type = "application/gzip";
    res->stream = hs;
    view_clear(&v);
}

/* ---- GET /sessions/{id}/workspace/search/files (fuzzy) ------------------------------------------ */

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

static void search_paths(struct http_request *req, struct http_response *res) {
    struct ah_problem p = {0};
    const char *q = http_query(req, "q"), *type = http_query(req, "type");
    int64_t limit = query_int(req, "limit", 20, 1, 100, &p);
    bool preview = query_bool(req, "include_preview", true, &p);
    bool modified_only = query_bool(req, "modified_only", false, &p);
    if (!q)
        q = "";
    if (strlen(q) > 256)
        problem_field(&p, "q", "at most 256 bytes");
    if (type && strcmp(type, "file") && strcmp(type, "directory") && strcmp(type, "both"))
        problem_field(&p, "type", "must be file, directory or both");
    if (http_fail(req, res, &p))
        return;
    bool files = !type || strcmp(type, "directory") != 0;
    bool dirs = !type || strcmp(type, "file") != 0;
    struct view v = {0};
    struct ws_changes ch = {0};
    struct ws_entries es = {0};
    struct hit *hits = NULL;
    if (view_open(&v, req, res) && changes_or_fail(&v, req, res, &ch)) {
        int rc = ws_tree(v.st, v.to, "", true, &es);
        hits = rc == 0 ? calloc(es.n + 1, sizeof(*hits)) : NULL;
        if (!hits) {
            http_error(req, res, AH_E_INTERNAL, "cannot list the workspace: %s",
                       ah_strerror(rc < 0 ? rc : AH_E_NOMEM));
        } else {
            size_t n = 0;
            for (size_t i = 0; i < es.n; i++) {
                const struct ws_entry *e = &es.v[i];
                if ((e->type == WS_DIR && !dirs) || (e->type != WS_DIR && !files))
                    continue;
                if (modified_only && (e->type == WS_DIR ? !dir_modified(&ch, e->path)
                                                        : !in_changes(&ch, e->path)))
                    continue;
                double sc = *q ? fuzzy(q, e->path) : 1.0;
                if (sc > 0)
                    hits[n++] = (struct hit){e, sc};
            }
            qsort(hits, n, sizeof(*hits), by_score);
            char ts[TIME_RFC3339_LEN + 1];
            time_format(v.to_ms, ts);
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
                                                        "directory", "file_count",
                                                        (json_int_t)count, "last_modified", ts));
                    continue;
                }
                json_t *pv = json_null();
                struct ws_blob b = {0};
                if (preview && e->type == WS_FILE && e->size < 10240 &&
                    ws_read(v.st, v.to, e->path, 10240, &b) == 0 && !memchr(b.data, 0, b.size)) {
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
                                                    "is_modified", in_changes(&ch, e->path),
                                                    "preview", pv, "relevance_score",
                                                    hits[i].score));
            }
            http_json(req, res, 200,
                      fa && da ? json_pack("{s:s, s:o, s:o, s:I}", "query", q, "files", fa,
                                           "directories", da, "total", (json_int_t)n)
                               : NULL);
            if (!fa || !da) {
                json_decref(fa);
                json_decref(da);
            }
        }
    }
    free(hits);
    ws_entries_clear(&es);
    ws_changes_clear(&ch);
    view_clear(&v);
}

int api_workspace_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/workspace/files", get_tree, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/workspace/info", get_info, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/delivery", delivery_get, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/workspace/search/files", search_paths, ctx,
                     0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/workspace/download", get_download, ctx, 0,
                     0);
    return rc ? AH_E_NOMEM : 0;
}
