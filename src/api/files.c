/*
 * files.c — what the agent changed (API.md §7.6, D30–D32): the changed files, one file's detail,
 * preview and content, and diffs, between two points of the session's private object store.
 *
 * Points (D32): `from` and `to` are `base` (the snapshot taken when provisioning ended), a
 * snapshot id (`snap-<ULID>`, as carried by file_edit/diff events), or `current`: the live
 * workspace. Defaults: base → current. `current` on an active session takes a snapshot of the
 * workspace now, on the HTTP thread: snapshots are incremental (a stat walk; only files whose
 * metadata changed are read), so this costs about what a directory listing costs, and the
 * store's writer lock serialises it with the automatic snapshots. On an ended session the
 * workspace no longer changes and `current` is its last snapshot (the final one).
 *
 * Paths: the tail after files/ or diff/ (percent-decoded by the router) or ?path= (D32: how a file
 * named `search`, `preview` or `content` is reached). Every path goes through ws_path_normalise:
 * `..` out of the workspace, absolute paths, NUL, invalid UTF-8 and `.git` are 400. Nothing here
 * reads the live file system: files come from snapshots, where a symlink is its target text.
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "snapview.h"

#define CONTENT_MAX (8u * 1024 * 1024) /* GET …/content */
#define DIFF_MAX (64u * 1024 * 1024)   /* a diff answer */
#define HISTORY_MAX 1000               /* file_edit events scanned for one file's history */
#define GLOB_MAX 1024

/* ---- points, stores and paths ----------------------------------------------------------------- */

void view_clear(struct view *v) {
    ws_store_free(v->st);
    session_row_free(v->row);
    memset(v, 0, sizeof(*v));
}

/* `base`, `current` or a snapshot id into out. false after answering. */
static bool resolve(struct view *v, struct http_request *req, struct http_response *res,
                    const char *name, const char *text, char out[WS_SNAP_ID_LEN + 1]) {
    if (strcmp(text, "base") == 0) {
        memcpy(out, v->base, sizeof(v->base));
        return true;
    }
    int rc;
    if (strcmp(text, "current") == 0) {
        bool active = !session_status_terminal(v->row->status) && v->row->workspace_path;
        if (active)
            rc = exec_snapshot_current(v->ctx->exec, v->row->tenant_id, v->row->id,
                                       v->row->workspace_path, v->st, out);
        else
            rc = ws_snapshot_latest(v->st, out);
        if (rc == AH_E_NOTFOUND && active) /* the workspace is gone: its last state */
            rc = ws_snapshot_latest(v->st, out);
        if (rc < 0) {
            http_error(req, res, rc == AH_E_NOTFOUND ? AH_E_NOTFOUND : AH_E_INTERNAL,
                       "cannot read the current state of the workspace: %s", ah_strerror(rc));
            return false;
        }
        return true;
    }
    struct ws_snapshot_info info = {0};
    rc = ws_snapshot_info(v->st, text, &info);
    if (rc == AH_E_NOTFOUND && tl_import_snapshot(v->ctx, v->row, v->st, text) == 0)
        rc = ws_snapshot_info(v->st, text, &info); /* a parent's or a branch's (issue 12) */
    if (rc < 0) {
        struct ah_problem p = {0};
        if (rc == AH_E_INVAL)
            problem_field(&p, name, "must be base, current or a snapshot id (snap-<ULID>)");
        else
            problem_set(&p, rc == AH_E_NOTFOUND ? AH_E_NOTFOUND : AH_E_INTERNAL,
                        "no snapshot %.40s in this session", text);
        http_fail(req, res, &p);
        return false;
    }
    snprintf(out, WS_SNAP_ID_LEN + 1, "%s", info.id);
    ws_snapshot_info_clear(&info);
    return true;
}

/* Loads the session, opens its store and resolves from/to. false after answering. */
bool view_open(struct view *v, struct http_request *req, struct http_response *res) {
    memset(v, 0, sizeof(*v));
    v->ctx = api_ready(req, res);
    if (!v->ctx || !(v->row = api_session_load(v->ctx, req, res, NULL)) ||
        !api_session_local_or_fail(req, res, v->row, "files and diffs"))
        return false;
    if (exec_snapshot_base(v->ctx->exec, v->row->id, v->base) < 0) {
        http_error(req, res, AH_E_NOTFOUND,
                   "session %s has no workspace snapshot yet (it is %s)", v->row->id,
                   session_status_name(v->row->status));
        return false;
    }
    AH_AUTOFREE char *dir = exec_snapshot_dir(v->ctx->exec, v->row->id);
    int rc = dir ? ws_store_open(dir, &v->st) : AH_E_NOMEM;
    if (rc < 0) {
        http_error(req, res, AH_E_INTERNAL, "cannot open the session's snapshots: %s",
                   ah_strerror(rc));
        return false;
    }
    const char *from = http_query(req, "from"), *to = http_query(req, "to");
    const char *at = http_query(req, "at");
    if (at && to) { /* D32: `at` reads one point, the `to` end of the range */
        struct ah_problem p = {0};
        problem_field(&p, "at", "give at or to, not both");
        http_fail(req, res, &p);
        return false;
    }
    if (at)
        to = at;
    if (!resolve(v, req, res, "from", from ? from : "base", v->from) ||
        !resolve(v, req, res, at ? "at" : "to", to ? to : "current", v->to))
        return false;
    struct ws_snapshot_info info = {0};
    if (ws_snapshot_info(v->st, v->to, &info) == 0) {
        v->to_ms = info.created_ms;
        ws_snapshot_info_clear(&info);
    }
    return true;
}

/* The file path of a request: ?path= when given, else the route's tail. A trailing
 * "/preview" or "/content" of the tail (or the whole tail with ?path=) selects a form (D32).
 * false after answering 400. */
enum form { FORM_DETAIL, FORM_PREVIEW, FORM_CONTENT };
static bool file_path(struct http_request *req, struct http_response *res, bool forms,
                      char out[WS_PATH_MAX + 1], enum form *ret_form) {
    const char *tail = http_param(req, "path");
    const char *q = http_query(req, "path");
    size_t len = tail ? strlen(tail) : 0;
    enum form f = FORM_DETAIL;
    static const struct {
        const char *name;
        enum form f;
    } suffixes[] = {{"preview", FORM_PREVIEW}, {"content", FORM_CONTENT}};
    for (size_t i = 0; forms && tail && i < 2; i++) {
        size_t n = strlen(suffixes[i].name);
        if (len == n && strcmp(tail, suffixes[i].name) == 0 && q) {
            f = suffixes[i].f;
            len = 0;
        } else if (len > n && tail[len - n - 1] == '/' && strcmp(tail + len - n,
                                                                   suffixes[i].name) == 0) {
            f = suffixes[i].f;
            len -= n + 1;
        }
    }
    const char *p = q ? q : tail ? tail : "";
    size_t plen = q ? strlen(q) : len;
    if (ws_path_normalise(p, plen, out) < 0 || !out[0]) {
        struct ah_problem pb = {0};
        problem_field(&pb, "path",
                      "must be a relative path inside the workspace (no '..' above it, no "
                      "absolute path, no NUL, valid UTF-8, no .git, at most %d bytes)",
                      WS_PATH_MAX);
        http_fail(req, res, &pb);
        return false;
    }
    if (ret_form)
        *ret_form = f;
    return true;
}

/* ---- globs: `**` any characters, `*` any but '/', `?` one but '/' ----------------------------- */

bool files_glob(const char *g, const char *s, int depth) {
    if (depth > 64)
        return false;
    for (; *g; g++, s++) {
        if (g[0] == '*' && g[1] == '*') {
            g += 2;
            /* "**\/" also matches no directory at all */
            if (*g == '/' && files_glob(g + 1, s, depth + 1))
                return true;
            for (;; s++) {
                if (files_glob(g, s, depth + 1))
                    return true;
                if (!*s)
                    return false;
            }
        }
        if (*g == '*') {
            for (;; s++) {
                if (files_glob(g + 1, s, depth + 1))
                    return true;
                if (!*s || *s == '/')
                    return false;
            }
        }
        if (!*s || (*g == '?' ? *s == '/' : *g != *s))
            return false;
    }
    return !*s;
}

/* ---- JSON pieces ------------------------------------------------------------------------------- */

static json_t *change_json(const struct ws_change *c, int64_t ms) {
    char ts[TIME_RFC3339_LEN + 1];
    time_format(ms, ts);
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:s, s:I, s:s, s:b}", "path", c->path, "status",
                          ws_status_name(c->status), "lines_added", (json_int_t)c->lines_added,
                          "lines_removed", (json_int_t)c->lines_removed, "last_modified", ts,
                          "size_bytes", (json_int_t)c->size, "change_type",
                          c->old_mode && c->new_mode && c->old_mode != c->new_mode &&
                                  !c->lines_added && !c->lines_removed
                              ? "mode"
                              : "content",
                          "binary", c->binary);
    if (o && c->old_path)
        json_object_set_new(o, "old_path", json_string(c->old_path));
    return o;
}

static const struct ws_change *find_change(const struct ws_changes *ch, const char *path) {
    for (size_t i = 0; i < ch->n; i++)
        if (strcmp(ch->v[i].path, path) == 0 ||
            (ch->v[i].old_path && strcmp(ch->v[i].old_path, path) == 0))
            return &ch->v[i];
    return NULL;
}

bool changes_or_fail(struct view *v, struct http_request *req, struct http_response *res,
                            struct ws_changes *ch) {
    int rc = ws_changes(v->st, v->from, v->to, ch);
    if (rc < 0)
        http_error(req, res, AH_E_INTERNAL, "cannot compare the snapshots: %s", ah_strerror(rc));
    return rc == 0;
}

bool query_bool(struct http_request *req, const char *name, bool def, struct ah_problem *p) {
    const char *s = http_query(req, name);
    if (!s)
        return def;
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
        return true;
    if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
        return false;
    problem_field(p, name, "must be true or false");
    return def;
}

int64_t query_int(struct http_request *req, const char *name, int64_t def, int64_t min,
                         int64_t max, struct ah_problem *p) {
    const char *s = http_query(req, name);
    int64_t v;
    if (!s)
        return def;
    if (parse_int64(s, min, max, &v) < 0) {
        problem_field(p, name, "must be an integer from %lld to %lld", (long long)min,
                      (long long)max);
        return def;
    }
    return v;
}

/* ---- GET /sessions/{id}/files ------------------------------------------------------------------ */

static void list_files(struct http_request *req, struct http_response *res) {
    struct ah_problem p = {0};
    const char *status = http_query(req, "status"), *glob = http_query(req, "path");
    static const char *const statuses[] = {"added", "modified", "deleted", "renamed"};
    bool ok = !status;
    for (size_t i = 0; status && i < 4; i++)
        ok |= strcmp(status, statuses[i]) == 0;
    if (!ok)
        problem_field(&p, "status", "must be one of added, modified, deleted, renamed");
    if (glob && strlen(glob) > GLOB_MAX)
        problem_field(&p, "path", "a glob of at most %d bytes", GLOB_MAX);
    struct page pg = api_page(req, PAGE_DEFAULT_PER_PAGE, &p);
    if (http_fail(req, res, &p))
        return;
    struct view v;
    struct ws_changes ch = {0};
    if (view_open(&v, req, res) && changes_or_fail(&v, req, res, &ch)) {
        json_t *items = json_array();
        int64_t total = 0, off = page_offset(&pg);
        for (size_t i = 0; items && i < ch.n; i++) {
            const struct ws_change *c = &ch.v[i];
            if (status && strcmp(ws_status_name(c->status), status) != 0)
                continue;
            if (glob && !files_glob(glob, c->path, 0) &&
                !(c->old_path && files_glob(glob, c->old_path, 0)))
                continue;
            if (total >= off && total < off + pg.per_page &&
                json_array_append_new(items, change_json(c, v.to_ms)) < 0) {
                json_decref(items);
                items = NULL;
            }
            total++;
        }
        json_t *body = page_envelope(items, &pg, total);
        if (body) {
            json_object_set_new(body, "from", json_string(v.from));
            json_object_set_new(body, "to", json_string(v.to));
        }
        http_json(req, res, 200, body);
    }
    ws_changes_clear(&ch);
    view_clear(&v);
}

/* ---- one file: detail, preview, content -------------------------------------------------------- */

static const char *language_of(const char *path) {
    static const char *const map[][2] = {
        {".c", "c"},          {".h", "c"},         {".cc", "cpp"},       {".cpp", "cpp"},
        {".hpp", "cpp"},      {".py", "python"},   {".js", "javascript"}, {".ts", "typescript"},
        {".tsx", "typescript"}, {".go", "go"},     {".rs", "rust"},      {".java", "java"},
        {".rb", "ruby"},      {".sh", "shell"},    {".md", "markdown"},  {".json", "json"},
        {".yaml", "yaml"},    {".yml", "yaml"},    {".toml", "toml"},    {".html", "html"},
        {".css", "css"},      {".sql", "sql"},     {".txt", "text"},
    };
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/'))
        return NULL;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(dot, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

static bool is_binary(const char *data, size_t n) {
    return memchr(data, 0, n < 8000 ? n : 8000) != NULL;
}

/* The history of a path: the file_edit events naming it, oldest first, with their seq. */
static json_t *history(struct view *v, const char *path) {
    static const char *const types[] = {"file_edit", NULL};
    struct event_filter f = {.types = types, .ascending = true};
    json_t *out = json_array();
    for (int64_t page = 1; out && page <= HISTORY_MAX / PAGE_MAX_PER_PAGE; page++) {
        struct page pg = {.page = page, .per_page = PAGE_MAX_PER_PAGE};
        json_t *items = NULL;
        int64_t total = 0;
        if (store_event_list(v->ctx->store, v->row->tenant_id, v->row->id, &f, &pg, &items,
                             &total) < 0)
            break;
        size_t i;
        json_t *e;
        json_array_foreach(items, i, e) {
            const char *fp = json_string_value(json_object_get(e, "file_path"));
            const char *old = json_string_value(json_object_get(e, "old_path"));
            if (!fp || (strcmp(fp, path) != 0 && !(old && strcmp(old, path) == 0)))
                continue;
            const char *d = json_string_value(json_object_get(e, "description"));
            json_array_append_new(
                out, json_pack("{s:O, s:s, s:s, s:O}", "timestamp", json_object_get(e, "ts"),
                               "event_type", "file_edit", "description", d ? d : "edited", "seq",
                               json_object_get(e, "seq")));
        }
        size_t n = json_array_size(items);
        json_decref(items);
        if (n < PAGE_MAX_PER_PAGE)
            break;
    }
    return out;
}

static void detail(struct view *v, struct http_request *req, struct http_response *res,
                   const char *path) {
    struct ws_changes ch = {0};
    if (!changes_or_fail(v, req, res, &ch))
        return;
    const struct ws_change *c = find_change(&ch, path);
    if (!c) {
        struct ws_entry e = {0};
        bool exists = ws_stat(v->st, v->to, path, &e) == 0;
        free(e.path);
        http_error(req, res, AH_E_NOTFOUND,
                   exists ? "%s has not changed between %s and %s" : "no file %s between %s and %s",
                   path, v->from, v->to);
        ws_changes_clear(&ch);
        return;
    }
    json_t *o = change_json(c, v->to_ms);
    struct ws_blob b = {0};
    bool binary = c->binary;
    if (!binary && c->status != WS_DELETED &&
        ws_read(v->st, v->to, c->path, CONTENT_MAX, &b) == 0)
        if (!(binary = is_binary(b.data, b.size))) { /* not UTF-8 counts as binary too */
            json_t *t = json_stringn(b.data, b.size);
            binary = !t;
            json_decref(t);
        }
    ws_blob_clear(&b);
    if (o) {
        json_object_set_new(o, "encoding", json_string(binary ? "binary" : "utf-8"));
        json_object_set_new(o, "mime_type",
                            json_string(binary ? "application/octet-stream" : "text/plain"));
        json_object_set_new(o, "history", history(v, path));
    }
    http_json(req, res, 200, o);
    ws_changes_clear(&ch);
}

/* Reads path at `to`; false after answering (404, 413). */
static bool read_or_fail(struct view *v, struct http_request *req, struct http_response *res,
                         const char *path, size_t cap, struct ws_blob *b) {
    int rc = ws_read(v->st, v->to, path, cap, b);
    if (rc == AH_E_TOOLARGE)
        http_error(req, res, AH_E_TOOLARGE,
                   "%s is larger than the %zu MiB limit of this route; read it with "
                   "GET /sessions/{id}/workspace/download",
                   path, cap >> 20);
    else if (rc == AH_E_NOTFOUND || rc == AH_E_INVAL)
        http_error(req, res, AH_E_NOTFOUND, "no file %s in %s", path, v->to);
    else if (rc < 0)
        http_error(req, res, AH_E_INTERNAL, "cannot read %s: %s", path, ah_strerror(rc));
    return rc == 0;
}

static void content(struct view *v, struct http_request *req, struct http_response *res,
                    const char *path) {
    struct ws_blob b = {0};
    if (!read_or_fail(v, req, res, path, CONTENT_MAX, &b))
        return;
    struct ws_changes ch = {0};
    bool modified = ws_changes(v->st, v->base, v->to, &ch) == 0 && find_change(&ch, path);
    ws_changes_clear(&ch);
    json_t *text = is_binary(b.data, b.size) ? NULL : json_stringn(b.data, b.size);
    const char *encoding = "utf-8";
    if (!text) { /* binary or not UTF-8: base64 */
        encoding = "base64";
        size_t n = 4 * ((b.size + 2) / 3) + 1;
        char *b64 = malloc(n);
        if (b64) {
            EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)b.data, (int)b.size);
            text = json_string(b64);
            free(b64);
        }
    }
    char ts[TIME_RFC3339_LEN + 1];
    time_format(v->to_ms, ts);
    http_json(req, res, 200,
              text ? json_pack("{s:s, s:o, s:s, s:I, s:s, s:b, s:s}", "path", path, "content",
                               text, "encoding", encoding, "size_bytes", (json_int_t)b.size,
                               "last_modified", ts, "is_modified", modified, "type",
                               b.mode == 0120000 ? "symlink" : "file")
                   : NULL);
    ws_blob_clear(&b);
}

static void preview(struct view *v, struct http_request *req, struct http_response *res,
                    const char *path) {
    struct ah_problem p = {0};
    int64_t max_lines = query_int(req, "max_lines", 20, 1, 50, &p);
    int64_t max_bytes = query_int(req, "max_bytes", 5000, 1, 10000, &p);
    if (http_fail(req, res, &p))
        return;
    struct ws_blob b = {0};
    if (!read_or_fail(v, req, res, path, CONTENT_MAX, &b))
        return;
    bool binary = is_binary(b.data, b.size);
    json_t *whole = binary ? NULL : json_stringn(b.data, b.size);
    binary = binary || !whole;
    json_decref(whole);
    int64_t lines = 0;
    for (size_t i = 0; i < b.size; i++)
        lines += b.data[i] == '\n';
    if (b.size && b.data[b.size - 1] != '\n')
        lines++;
    size_t cut = 0;
    if (!binary) {
        int64_t seen = 0;
        while (cut < b.size && cut < (size_t)max_bytes && seen < max_lines)
            if (b.data[cut++] == '\n')
                seen++;
        while (cut > 0 && cut < b.size && ((unsigned char)b.data[cut] & 0xC0) == 0x80)
            cut--; /* never split a UTF-8 character */
    }
    const char *lang = language_of(path);
    http_json(req, res, 200,
              json_pack("{s:s, s:s#, s:s?, s:I, s:I, s:I, s:b, s:s}", "path", path,
                        "content_preview", b.data, cut, "language", lang, "size_bytes",
                        (json_int_t)b.size, "lines", (json_int_t)(binary ? 0 : lines),
                        "estimated_tokens", (json_int_t)((b.size + 3) / 4), "is_binary", binary,
                        "encoding", binary ? "binary" : "utf-8"));
    ws_blob_clear(&b);
}

static void get_file(struct http_request *req, struct http_response *res) {
    char path[WS_PATH_MAX + 1];
    enum form f;
    if (!api_ready(req, res) || !file_path(req, res, true, path, &f))
        return;
    struct view v;
    if (view_open(&v, req, res)) {
        if (f == FORM_CONTENT)
            content(&v, req, res, path);
        else if (f == FORM_PREVIEW)
            preview(&v, req, res, path);
        else
            detail(&v, req, res, path);
    }
    view_clear(&v);
}

/* ---- diffs ------------------------------------------------------------------------------------- */

struct diff_q {
    struct ws_diff_opts o;
    const char *format; /* unified, split, html, patch */
};

static bool diff_query(struct http_request *req, struct http_response *res, struct diff_q *q) {
    struct ah_problem p = {0};
    ws_diff_opts_init(&q->o);
    q->o.context = (int)query_int(req, "context", 3, 0, WS_CONTEXT_MAX, &p);
    q->o.full = query_bool(req, "full", false, &p);
    const char *accept = http_header(req, "Accept");
    q->format = http_query(req, "format");
    if (!q->format)
        q->format = accept && strstr(accept, "text/x-diff") ? "patch" : "unified";
    if (strcmp(q->format, "unified") == 0)
        q->o.format = WS_UNIFIED;
    else if (strcmp(q->format, "patch") == 0)
        q->o.format = WS_PATCH;
    else if (strcmp(q->format, "split") == 0)
        q->o.format = WS_SPLIT;
    else if (strcmp(q->format, "html") == 0)
        q->o.format = WS_HTML;
    else
        problem_field(&p, "format", "must be unified, split, html or patch");
    return !http_fail(req, res, &p);
}

/* Runs the diff into out; false after answering. */
static bool run_diff(struct view *v, struct http_request *req, struct http_response *res,
                     const struct ws_diff_opts *o, struct ah_buf *out) {
    out->max = DIFF_MAX;
    int rc = ws_diff(v->st, v->from, v->to, o, out);
    if (rc == AH_E_TOOLARGE)
        http_error(req, res, AH_E_TOOLARGE,
                   "the diff is larger than the %u MiB limit; ask for fewer files", DIFF_MAX >> 20);
    else if (rc < 0)
        http_error(req, res, AH_E_INTERNAL, "cannot compute the diff: %s", ah_strerror(rc));
    return rc == 0;
}

static void text_answer(struct http_request *req, struct http_response *res, struct ah_buf *b) {
    res->status = 200;
    res->body = b->p ? b->p : strdup("");
    res->body_len = b->n;
    res->content_type = "text/x-diff; charset=utf-8";
    b->p = NULL;
    b->n = b->cap = 0;
}

/* The hunks of a unified text: each from its "@@" line to the next hunk or file header. */
static void hunk_close(json_t *a, const char *start, const char *p, const long h[4]) {
    if (start)
        json_array_append_new(a, json_pack("{s:I, s:I, s:I, s:I, s:s#}", "old_start",
                                           (json_int_t)h[0], "old_lines", (json_int_t)h[1],
                                           "new_start", (json_int_t)h[2], "new_lines",
                                           (json_int_t)h[3], "content", start,
                                           (size_t)(p - start)));
}

static json_t *hunks_json(const char *text, size_t len) {
    json_t *a = json_array();
    const char *p = text, *end = text + len, *start = NULL;
    long h[4] = {0};
    while (a && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *next = nl ? nl + 1 : end;
        size_t n = (size_t)(next - p);
        if (n > 4 && memcmp(p, "@@ -", 4) == 0) {
            hunk_close(a, start, p, h);
            start = NULL;
            /* "@@ -a[,b] +c[,d] @@": an omitted count is 1 */
            char *e;
            h[0] = strtol(p + 4, &e, 10);
            h[1] = *e == ',' ? strtol(e + 1, &e, 10) : 1;
            if (*e == ' ' && e[1] == '+') {
                h[2] = strtol(e + 2, &e, 10);
                h[3] = *e == ',' ? strtol(e + 1, &e, 10) : 1;
                start = p;
            }
        } else if (n > 11 && memcmp(p, "diff --git ", 11) == 0) {
            hunk_close(a, start, p, h);
            start = NULL;
        }
        p = next;
    }
    if (a)
        hunk_close(a, start, end, h);
    return a;
}

static json_t *file_diff_json(const struct ws_change *c, const char *text, size_t len,
                              const struct ws_diff_opts *o) {
    return json_pack("{s:s, s:s, s:s#, s:I, s:I, s:i, s:b}", "path", c->path, "status",
                     ws_status_name(c->status), "diff", text, len, "lines_added",
                     (json_int_t)c->lines_added, "lines_removed", (json_int_t)c->lines_removed,
                     "context_lines", o->full ? -1 : o->context, "full_file", o->full);
}

static void diff_one(struct view *v, struct http_request *req, struct http_response *res,
                     struct diff_q *q, const char *path) {
    struct ws_changes ch = {0};
    if (!changes_or_fail(v, req, res, &ch))
        return;
    const struct ws_change *c = find_change(&ch, path);
    if (!c) {
        http_error(req, res, AH_E_NOTFOUND, "%s has not changed between %s and %s", path, v->from,
                   v->to);
        ws_changes_clear(&ch);
        return;
    }
    const char *paths[1] = {path};
    q->o.paths = paths;
    q->o.n_paths = 1;
    struct ah_buf out = {0};
    if (run_diff(v, req, res, &q->o, &out)) {
        if (q->o.format == WS_PATCH) {
            text_answer(req, res, &out);
        } else {
            struct ah_buf uni = {.max = DIFF_MAX};
            struct ws_diff_opts uo = q->o;
            uo.format = WS_UNIFIED;
            bool ok = q->o.format == WS_UNIFIED || ws_diff(v->st, v->from, v->to, &uo, &uni) == 0;
            struct ah_buf *u = q->o.format == WS_UNIFIED ? &out : &uni;
            json_t *o = ok ? file_diff_json(c, u->p ? u->p : "", u->n, &q->o) : NULL;
            if (o) {
                if (o && q->o.full && c->status != WS_DELETED && !c->binary) {
                    struct ws_blob b = {0};
                    json_t *t = ws_read(v->st, v->to, c->path, CONTENT_MAX, &b) == 0
                                    ? json_stringn(b.data, b.size)
                                    : NULL;
                    json_object_set_new(o, "file_content", t ? t : json_null());
                    ws_blob_clear(&b);
                } else {
                    json_object_set_new(o, "file_content", json_null());
                }
                json_object_set_new(o, "context_lines",
                                    json_integer(q->o.full ? 0 : q->o.context));
                json_object_set_new(o, "hunks", hunks_json(u->p ? u->p : "", u->n));
                if (c->old_path)
                    json_object_set_new(o, "old_path", json_string(c->old_path));
                json_object_set_new(o, "binary", json_boolean(c->binary));
                if (q->o.format == WS_SPLIT)
                    json_object_set_new(o, "split", json_loadb(out.p, out.n, 0, NULL));
                else if (q->o.format == WS_HTML)
                    json_object_set_new(o, "html", json_stringn(out.p ? out.p : "", out.n));
            }
            http_json(req, res, 200, o);
            ah_buf_clear(&uni);
        }
    }
    ah_buf_clear(&out);
    ws_changes_clear(&ch);
}

static void get_file_diff(struct http_request *req, struct http_response *res) {
    char path[WS_PATH_MAX + 1];
    struct diff_q q;
    if (!api_ready(req, res) || !file_path(req, res, false, path, NULL) ||
        !diff_query(req, res, &q))
        return;
    struct view v;
    if (view_open(&v, req, res))
        diff_one(&v, req, res, &q, path);
    view_clear(&v);
}

#define FILES_LIST_MAX 1000 /* paths in ?files= */

static void get_diff(struct http_request *req, struct http_response *res) {
    struct diff_q q;
    if (!api_ready(req, res) || !diff_query(req, res, &q))
        return;
    /* ?files=a,b: normalised, each refused like a path */
    const char *files = http_query(req, "files");
    const char **paths = NULL;
    size_t n_paths = 0;
    char *copy = NULL;
    if (files && *files) {
        copy = strdup(files);
        size_t n = 1;
        for (const char *s = files; *s; s++)
            n += *s == ',';
        paths = n <= FILES_LIST_MAX ? calloc(n, sizeof(*paths)) : NULL;
        if (!copy || !paths) {
            free(copy);
            free(paths);
            struct ah_problem p = {0};
            problem_field(&p, "files", "at most %d paths", FILES_LIST_MAX);
            http_fail(req, res, &p);
            return;
        }
        char *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            char norm[WS_PATH_MAX + 1];
            if (ws_path_normalise(t, strlen(t), norm) < 0 || !norm[0]) {
                free(copy);
                free(paths);
                struct ah_problem p = {0};
                problem_field(&p, "files", "a path that is not inside the workspace");
                http_fail(req, res, &p);
                return;
            }
            strcpy(t, norm); /* never longer than its input */
            paths[n_paths++] = t;
        }
    }
    q.o.paths = paths;
    q.o.n_paths = n_paths;
    struct view v;
    struct ws_changes ch = {0};
    struct ah_buf out = {0}, uni = {.max = DIFF_MAX};
    if (view_open(&v, req, res) && changes_or_fail(&v, req, res, &ch) &&
        run_diff(&v, req, res, &q.o, &out)) {
        if (q.o.format == WS_PATCH) {
            text_answer(req, res, &out);
        } else {
            struct ws_diff_opts uo = q.o;
            uo.format = WS_UNIFIED;
            bool ok = q.o.format == WS_UNIFIED || ws_diff(v.st, v.from, v.to, &uo, &uni) == 0;
            const struct ah_buf *u = q.o.format == WS_UNIFIED ? &out : &uni;
            json_t *list = ok ? json_array() : NULL;
            int64_t added = 0, removed = 0;
            /* the unified text is the files' diffs in order, each from its "diff --git" line */
            const char *p = u->p ? u->p : "", *end = p + u->n;
            for (size_t i = 0; list && i < ch.n; i++) {
                const struct ws_change *c = &ch.v[i];
                bool wanted = !n_paths;
                for (size_t k = 0; k < n_paths && !wanted; k++)
                    wanted = strcmp(paths[k], c->path) == 0 ||
                             (c->old_path && strcmp(paths[k], c->old_path) == 0);
                if (!wanted)
                    continue;
                const char *s = p;
                const char *e = s;
                while (e < end) {
                    const char *nl = memchr(e, '\n', (size_t)(end - e));
                    e = nl ? nl + 1 : end;
                    if (e < end && (size_t)(end - e) > 10 && memcmp(e, "diff --git ", 11) == 0)
                        break;
                }
                p = e;
                added += c->lines_added;
                removed += c->lines_removed;
                json_t *fo = file_diff_json(c, s, (size_t)(e - s), &q.o);
                if (fo) {
                    json_object_set_new(fo, "context_lines",
                                        json_integer(q.o.full ? 0 : q.o.context));
                    json_object_set_new(fo, "binary", json_boolean(c->binary));
                    if (c->old_path)
                        json_object_set_new(fo, "old_path", json_string(c->old_path));
                }
                json_array_append_new(list, fo);
            }
            json_t *body = list ? json_pack("{s:o, s:I, s:I, s:s, s:s}", "files", list,
                                            "total_lines_added", (json_int_t)added,
                                            "total_lines_removed", (json_int_t)removed, "from",
                                            v.from, "to", v.to)
                                : NULL;
            if (body && q.o.format == WS_SPLIT)
                json_object_set_new(body, "split", json_loadb(out.p, out.n, 0, NULL));
            else if (body && q.o.format == WS_HTML)
                json_object_set_new(body, "html", json_stringn(out.p ? out.p : "", out.n));
            http_json(req, res, 200, body);
        }
    }
    ah_buf_clear(&out);
    ah_buf_clear(&uni);
    ws_changes_clear(&ch);
    view_clear(&v);
    free(paths);
    free(copy);
}

/* D32: files/search is the search route; without ?q= but with ?path= it reads that file (which
 * is how a file literally named "search" is reached). */
static void search_or_file(struct http_request *req, struct http_response *res) {
    if (!http_query(req, "q") && http_query(req, "path"))
        get_file(req, res);
    else
        files_search(req, res);
}

int api_files_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/files", list_files, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/files/search", search_or_file, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/files/{path...}", get_file, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/diff", get_diff, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/diff/{path...}", get_file_diff, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
