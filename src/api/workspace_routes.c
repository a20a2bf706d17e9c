/*
 * workspace_routes.c — the session's workspace as a tree (API.md §7.6 workspace/files) and a
 * fuzzy search of its paths (workspace/search/files), both answered by the workspace layer
 * (workspace/tree_answer.c) through files.c, so a remote session's are forwarded to its
 * executor; its facts (§7.9 workspace/info) and an archive of it (§7.9 workspace/download),
 * read here. All from the session's private object store (D30) at ?to= (default `current`, see
 * files.c), never from the live file system: a symlink is listed as a symlink with its target
 * text and never followed.
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

/* ---- GET /sessions/{id}/workspace/files ------------------------------------------------------ */

static void get_tree(struct http_request *req, struct http_response *res) {
    api_workspace_read(req, res, WS_ASK_TREE);
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

static void search_paths(struct http_request *req, struct http_response *res) {
    api_workspace_read(req, res, WS_ASK_PATHS);
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
