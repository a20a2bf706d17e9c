/*
 * answer.c — the answers of the files and diff routes (API.md §7.6, D30–D32; workspace.h),
 * computed from a session's private object store. The access point answers its own sessions
 * with these (api/files.c); an executor answers the reads of a session it runs with the very
 * same functions, asked over the link (enroll/runner.c), so a remote session's files and diffs
 * are byte for byte what a local one's would be.
 *
 * Points (D32): `from` and `to` are `base` (the snapshot taken when provisioning ended), a
 * snapshot id (`snap-<ULID>`, as carried by file_edit/diff events), or `current`: the live
 * workspace, through the caller's hook (a snapshot now on an active session, the last one on an
 * ended one). Defaults: base → current.
 *
 * Paths: the route's tail (percent-decoded by the router) or ?path= (D32: how a file named
 * `search`, `preview` or `content` is reached). Every path goes through ws_path_normalise: `..`
 * out of the workspace, absolute paths, NUL, invalid UTF-8 and `.git` are 400. Files come from
 * snapshots, where a symlink is its target text.
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CONTENT_MAX (8u * 1024 * 1024) /* GET …/content */
#define DIFF_MAX (64u * 1024 * 1024)   /* a diff answer */
#define GLOB_MAX 1024
#define FILES_LIST_MAX 1000 /* paths in ?files= */

void ws_reply_clear(struct ws_reply *r) {
    json_decref(r->json);
    free(r->body);
    problem_clear(&r->problem);
    memset(r, 0, sizeof(*r));
}

static void reply_json(struct ws_reply *r, json_t *body) {
    if (!body) {
        problem_set(&r->problem, AH_E_NOMEM, "out of memory while building the response");
        return;
    }
    r->status = 200;
    r->json = body;
}

static const char *const kinds[] = {"files", "file", "diff", "file_diff", "search",
                                    "tree", "paths"};

const char *ws_ask_kind_name(enum ws_ask_kind k) {
    return (unsigned)k < sizeof(kinds) / sizeof(kinds[0]) ? kinds[k] : "?";
}

int ws_ask_kind_parse(const char *s, enum ws_ask_kind *ret) {
    for (size_t i = 0; s && i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(s, kinds[i]) == 0) {
            *ret = (enum ws_ask_kind)i;
            return 0;
        }
    return AH_E_INVAL;
}

/* ---- points ------------------------------------------------------------------------------------ */

/* `base`, `current` or a snapshot id into out. */
static int resolve(struct ws_store *st, const char *base, const struct ws_point_hooks *h,
                   const char *name, const char *text, char out[WS_SNAP_ID_LEN + 1],
                   struct ah_problem *p) {
    if (strcmp(text, "base") == 0) {
        snprintf(out, WS_SNAP_ID_LEN + 1, "%s", base);
        return 0;
    }
    int rc;
    if (strcmp(text, "current") == 0) {
        rc = h->current(h->arg, st, out);
        if (rc < 0)
            return problem_set(p, rc == AH_E_NOTFOUND ? AH_E_NOTFOUND : AH_E_INTERNAL,
                               "cannot read the current state of the workspace: %s",
                               ah_strerror(rc));
        return 0;
    }
    struct ws_snapshot_info info = {0};
    rc = ws_snapshot_info(st, text, &info);
    if (rc == AH_E_NOTFOUND && h->import && h->import(h->arg, st, text) == 0)
        rc = ws_snapshot_info(st, text, &info); /* a parent's or a branch's (issue 12) */
    if (rc < 0) {
        if (rc == AH_E_INVAL)
            problem_field(p, name, "must be base, current or a snapshot id (snap-<ULID>)");
        else
            problem_set(p, rc == AH_E_NOTFOUND ? AH_E_NOTFOUND : AH_E_INTERNAL,
                        "no snapshot %.40s in this session", text);
        return p->code;
    }
    snprintf(out, WS_SNAP_ID_LEN + 1, "%s", info.id);
    ws_snapshot_info_clear(&info);
    return 0;
}

int ws_points_resolve(struct ws_store *st, const char *base, const char *from, const char *to,
                      const char *at, const struct ws_point_hooks *h, struct ws_points *ret,
                      struct ah_problem *p) {
    memset(ret, 0, sizeof(*ret));
    snprintf(ret->base, sizeof(ret->base), "%s", base);
    if (at && to) {
        problem_field(p, "at", "give at or to, not both");
        return p->code;
    }
    if (at)
        to = at;
    int rc = resolve(st, base, h, "from", from ? from : "base", ret->from, p);
    if (rc == 0)
        rc = resolve(st, base, h, at ? "at" : "to", to ? to : "current", ret->to, p);
    if (rc < 0)
        return rc;
    struct ws_snapshot_info info = {0};
    if (ws_snapshot_info(st, ret->to, &info) == 0) {
        ret->to_ms = info.created_ms;
        ws_snapshot_info_clear(&info);
    }
    return 0;
}

/* ---- the request's parameters ------------------------------------------------------------------ */

/* The file path of a request: ?path= when given, else the route's tail. A trailing "/preview"
 * or "/content" of the tail (or the whole tail with ?path=) selects a form (D32). */
enum form { FORM_DETAIL, FORM_PREVIEW, FORM_CONTENT };
static int file_path(const struct ws_ask *a, bool forms, char out[WS_PATH_MAX + 1],
                     enum form *ret_form, struct ah_problem *pb) {
    const char *tail = a->tail;
    const char *qp = ws_ask_param(a, "path");
    size_t len = tail ? strlen(tail) : 0;
    enum form f = FORM_DETAIL;
    static const struct {
        const char *name;
        enum form f;
    } suffixes[] = {{"preview", FORM_PREVIEW}, {"content", FORM_CONTENT}};
    for (size_t i = 0; forms && tail && i < 2; i++) {
        size_t n = strlen(suffixes[i].name);
        if (len == n && strcmp(tail, suffixes[i].name) == 0 && qp) {
            f = suffixes[i].f;
            len = 0;
        } else if (len > n && tail[len - n - 1] == '/' &&
                   strcmp(tail + len - n, suffixes[i].name) == 0) {
            f = suffixes[i].f;
            len -= n + 1;
        }
    }
    const char *p = qp ? qp : tail ? tail : "";
    size_t plen = qp ? strlen(qp) : len;
    if (ws_path_normalise(p, plen, out) < 0 || !out[0]) {
        problem_field(pb, "path",
                      "must be a relative path inside the workspace (no '..' above it, no "
                      "absolute path, no NUL, valid UTF-8, no .git, at most %d bytes)",
                      WS_PATH_MAX);
        return pb->code;
    }
    if (ret_form)
        *ret_form = f;
    return 0;
}

static bool query_bool(const struct ws_ask *a, const char *name, bool def, struct ah_problem *p) {
    return param_bool(ws_ask_param(a, name), name, def, p);
}

static int64_t query_int(const struct ws_ask *a, const char *name, int64_t def, int64_t min,
                         int64_t max, struct ah_problem *p) {
    return param_int(ws_ask_param(a, name), name, def, min, max, p);
}

struct diff_q {
    struct ws_diff_opts o;
    const char *format; /* unified, split, html, patch */
};

static int diff_query(const struct ws_ask *a, struct diff_q *d, struct ah_problem *p) {
    ws_diff_opts_init(&d->o);
    d->o.context = (int)query_int(a, "context", 3, 0, WS_CONTEXT_MAX, p);
    d->o.full = query_bool(a, "full", false, p);
    d->format = ws_ask_param(a, "format");
    if (!d->format)
        d->format = a->accept && strstr(a->accept, "text/x-diff") ? "patch" : "unified";
    if (strcmp(d->format, "unified") == 0)
        d->o.format = WS_UNIFIED;
    else if (strcmp(d->format, "patch") == 0)
        d->o.format = WS_PATCH;
    else if (strcmp(d->format, "split") == 0)
        d->o.format = WS_SPLIT;
    else if (strcmp(d->format, "html") == 0)
        d->o.format = WS_HTML;
    else
        problem_field(p, "format", "must be unified, split, html or patch");
    return p->code;
}

static int list_query(const struct ws_ask *a, struct page *pg, struct ah_problem *p) {
    const char *status = ws_ask_param(a, "status"), *glob = ws_ask_param(a, "path");
    static const char *const statuses[] = {"added", "modified", "deleted", "renamed"};
    bool ok = !status;
    for (size_t i = 0; status && i < 4; i++)
        ok |= strcmp(status, statuses[i]) == 0;
    if (!ok)
        problem_field(p, "status", "must be one of added, modified, deleted, renamed");
    if (glob && strlen(glob) > GLOB_MAX)
        problem_field(p, "path", "a glob of at most %d bytes", GLOB_MAX);
    *pg = (struct page){1, PAGE_DEFAULT_PER_PAGE};
    page_parse(ws_ask_param(a, "page"), ws_ask_param(a, "perPage"), PAGE_DEFAULT_PER_PAGE,
               PAGE_MAX_PER_PAGE, pg, p);
    return p->code;
}

/* The one-file form's own parameters (preview's limits). */
static int file_query(const struct ws_ask *a, enum form f, int64_t *max_lines,
                      int64_t *max_bytes, struct ah_problem *p) {
    if (f == FORM_PREVIEW) {
        *max_lines = query_int(a, "max_lines", 20, 1, 50, p);
        *max_bytes = query_int(a, "max_bytes", 5000, 1, 10000, p);
    }
    return p->code;
}

/* ?files=a,b: normalised, each refused like a path. *ret_copy holds the strings (caller frees
 * it and *ret_paths). */
static int files_list(const struct ws_ask *a, const char ***ret_paths, size_t *ret_n,
                      char **ret_copy, struct ah_problem *p) {
    const char *files = ws_ask_param(a, "files");
    *ret_paths = NULL;
    *ret_n = 0;
    *ret_copy = NULL;
    if (!files || !*files)
        return 0;
    size_t n = 1;
    for (const char *s = files; *s; s++)
        n += *s == ',';
    char *copy = n <= FILES_LIST_MAX ? strdup(files) : NULL;
    const char **paths = copy ? calloc(n, sizeof(*paths)) : NULL;
    if (!paths) {
        free(copy);
        problem_field(p, "files", "at most %d paths", FILES_LIST_MAX);
        return p->code;
    }
    size_t n_paths = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char norm[WS_PATH_MAX + 1];
        if (ws_path_normalise(t, strlen(t), norm) < 0 || !norm[0]) {
            free(copy);
            free(paths);
            problem_field(p, "files", "a path that is not inside the workspace");
            return p->code;
        }
        strcpy(t, norm); /* never longer than its input */
        paths[n_paths++] = t;
    }
    *ret_paths = paths;
    *ret_n = n_paths;
    *ret_copy = copy;
    return 0;
}

int ws_ask_check(const struct ws_ask *a, struct ah_problem *p) {
    char path[WS_PATH_MAX + 1];
    struct diff_q d;
    struct page pg;
    enum form f;
    int64_t ml, mb;
    switch (a->kind) {
    case WS_ASK_FILES: return list_query(a, &pg, p);
    case WS_ASK_FILE:
        if (file_path(a, true, path, &f, p) < 0)
            return p->code;
        return file_query(a, f, &ml, &mb, p);
    case WS_ASK_FILE_DIFF:
        if (file_path(a, false, path, NULL, p) < 0)
            return p->code;
        return diff_query(a, &d, p);
    case WS_ASK_SEARCH: return ws_search_check(a, p);
    case WS_ASK_TREE:
    case WS_ASK_PATHS: return ws_tree_check(a, p);
    case WS_ASK_DIFF: {
        const char **paths;
        size_t n;
        char *copy;
        if (diff_query(a, &d, p) == 0 && files_list(a, &paths, &n, &copy, p) == 0) {
            free(paths);
            free(copy);
        }
        return p->code;
    }
    }
    return problem_set(p, AH_E_INVAL, "unknown kind of workspace read");
}

bool ws_ask_detail_path(const struct ws_ask *a, char path[WS_PATH_MAX + 1]) {
    struct ah_problem p = {0};
    enum form f;
    bool ok = a->kind == WS_ASK_FILE && file_path(a, true, path, &f, &p) == 0 && f == FORM_DETAIL;
    problem_clear(&p);
    return ok;
}

/* ---- globs: `**` any characters, `*` any but '/', `?` one but '/' ----------------------------- */

bool ws_glob(const char *g, const char *s, int depth) {
    if (depth > 64)
        return false;
    for (; *g; g++, s++) {
        if (g[0] == '*' && g[1] == '*') {
            g += 2;
            /* "**\/" also matches no directory at all */
            if (*g == '/' && ws_glob(g + 1, s, depth + 1))
                return true;
            for (;; s++) {
                if (ws_glob(g, s, depth + 1))
                    return true;
                if (!*s)
                    return false;
            }
        }
        if (*g == '*') {
            for (;; s++) {
                if (ws_glob(g + 1, s, depth + 1))
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

/* A request's store and resolved points. */
struct view {
    struct ws_store *st;
    struct ws_points pt;
    struct ws_reply *r;
};

static bool changes_or_fail(struct view *v, struct ws_changes *ch) {
    int rc = ws_changes(v->st, v->pt.from, v->pt.to, ch);
    if (rc < 0)
        problem_set(&v->r->problem, AH_E_INTERNAL, "cannot compare the snapshots: %s",
                    ah_strerror(rc));
    return rc == 0;
}

/* ---- GET /sessions/{id}/files ------------------------------------------------------------------ */

static void list_files(struct view *v, const struct ws_ask *a) {
    struct page pg;
    if (list_query(a, &pg, &v->r->problem) < 0)
        return;
    const char *status = ws_ask_param(a, "status"), *glob = ws_ask_param(a, "path");
    struct ws_changes ch = {0};
    if (changes_or_fail(v, &ch)) {
        json_t *items = json_array();
        int64_t total = 0, off = page_offset(&pg);
        for (size_t i = 0; items && i < ch.n; i++) {
            const struct ws_change *c = &ch.v[i];
            if (status && strcmp(ws_status_name(c->status), status) != 0)
                continue;
            if (glob && !ws_glob(glob, c->path, 0) &&
                !(c->old_path && ws_glob(glob, c->old_path, 0)))
                continue;
            if (total >= off && total < off + pg.per_page &&
                json_array_append_new(items, change_json(c, v->pt.to_ms)) < 0) {
                json_decref(items);
                items = NULL;
            }
            total++;
        }
        json_t *body = page_envelope(items, &pg, total);
        if (body) {
            json_object_set_new(body, "from", json_string(v->pt.from));
            json_object_set_new(body, "to", json_string(v->pt.to));
        }
        reply_json(v->r, body);
    }
    ws_changes_clear(&ch);
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

/* The detail; its history (the events naming the file) is the caller's to add. */
static void detail(struct view *v, const char *path) {
    struct ws_changes ch = {0};
    if (!changes_or_fail(v, &ch))
        return;
    const struct ws_change *c = find_change(&ch, path);
    if (!c) {
        struct ws_entry e = {0};
        bool exists = ws_stat(v->st, v->pt.to, path, &e) == 0;
        free(e.path);
        problem_set(&v->r->problem, AH_E_NOTFOUND,
                    exists ? "%s has not changed between %s and %s"
                           : "no file %s between %s and %s",
                    path, v->pt.from, v->pt.to);
        ws_changes_clear(&ch);
        return;
    }
    json_t *o = change_json(c, v->pt.to_ms);
    struct ws_blob b = {0};
    bool binary = c->binary;
    if (!binary && c->status != WS_DELETED &&
        ws_read(v->st, v->pt.to, c->path, CONTENT_MAX, &b) == 0)
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
    }
    reply_json(v->r, o);
    ws_changes_clear(&ch);
}

/* Reads path at `to`; false after failing (404, 413). */
static bool read_or_fail(struct view *v, const char *path, size_t cap, struct ws_blob *b) {
    int rc = ws_read(v->st, v->pt.to, path, cap, b);
    struct ah_problem *p = &v->r->problem;
    if (rc == AH_E_TOOLARGE)
        problem_set(p, AH_E_TOOLARGE,
                    "%s is larger than the %zu MiB limit of this route; read it with "
                    "GET /sessions/{id}/workspace/download",
                    path, (size_t)cap >> 20);
    else if (rc == AH_E_NOTFOUND || rc == AH_E_INVAL)
        problem_set(p, AH_E_NOTFOUND, "no file %s in %s", path, v->pt.to);
    else if (rc < 0)
        problem_set(p, AH_E_INTERNAL, "cannot read %s: %s", path, ah_strerror(rc));
    return rc == 0;
}

static void content(struct view *v, const char *path) {
    struct ws_blob b = {0};
    if (!read_or_fail(v, path, CONTENT_MAX, &b))
        return;
    struct ws_changes ch = {0};
    bool modified = ws_changes(v->st, v->pt.base, v->pt.to, &ch) == 0 && find_change(&ch, path);
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
    time_format(v->pt.to_ms, ts);
    reply_json(v->r, text ? json_pack("{s:s, s:o, s:s, s:I, s:s, s:b, s:s}", "path", path,
                                      "content", text, "encoding", encoding, "size_bytes",
                                      (json_int_t)b.size, "last_modified", ts, "is_modified",
                                      modified, "type", b.mode == 0120000 ? "symlink" : "file")
                          : NULL);
    ws_blob_clear(&b);
}

static void preview(struct view *v, const char *path, int64_t max_lines, int64_t max_bytes) {
    struct ws_blob b = {0};
    if (!read_or_fail(v, path, CONTENT_MAX, &b))
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
    reply_json(v->r, json_pack("{s:s, s:s#, s:s?, s:I, s:I, s:I, s:b, s:s}", "path", path,
                               "content_preview", b.data, cut, "language", lang, "size_bytes",
                               (json_int_t)b.size, "lines", (json_int_t)(binary ? 0 : lines),
                               "estimated_tokens", (json_int_t)((b.size + 3) / 4), "is_binary",
                               binary, "encoding", binary ? "binary" : "utf-8"));
    ws_blob_clear(&b);
}

static void get_file(struct view *v, const struct ws_ask *a) {
    char path[WS_PATH_MAX + 1];
    enum form f;
    int64_t max_lines = 0, max_bytes = 0;
    if (file_path(a, true, path, &f, &v->r->problem) < 0 ||
        file_query(a, f, &max_lines, &max_bytes, &v->r->problem) < 0)
        return;
    if (f == FORM_CONTENT)
        content(v, path);
    else if (f == FORM_PREVIEW)
        preview(v, path, max_lines, max_bytes);
    else
        detail(v, path);
}

/* ---- diffs ------------------------------------------------------------------------------------- */

/* Runs the diff into out; false after failing. */
static bool run_diff(struct view *v, const struct ws_diff_opts *o, struct ah_buf *out) {
    out->max = DIFF_MAX;
    int rc = ws_diff(v->st, v->pt.from, v->pt.to, o, out);
    if (rc == AH_E_TOOLARGE)
        problem_set(&v->r->problem, AH_E_TOOLARGE,
                    "the diff is larger than the %u MiB limit; ask for fewer files",
                    DIFF_MAX >> 20);
    else if (rc < 0)
        problem_set(&v->r->problem, AH_E_INTERNAL, "cannot compute the diff: %s",
                    ah_strerror(rc));
    return rc == 0;
}

static void text_answer(struct ws_reply *r, struct ah_buf *b) {
    r->status = 200;
    r->body = b->p ? b->p : strdup("");
    r->body_len = b->n;
    r->content_type = "text/x-diff; charset=utf-8";
    b->p = NULL;
    b->n = b->cap = 0;
    if (!r->body)
        problem_set(&r->problem, AH_E_NOMEM, "out of memory while building the response");
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

static void diff_one(struct view *v, const struct ws_ask *a) {
    char path[WS_PATH_MAX + 1];
    struct diff_q d;
    if (file_path(a, false, path, NULL, &v->r->problem) < 0 ||
        diff_query(a, &d, &v->r->problem) < 0)
        return;
    struct ws_changes ch = {0};
    if (!changes_or_fail(v, &ch))
        return;
    const struct ws_change *c = find_change(&ch, path);
    if (!c) {
        problem_set(&v->r->problem, AH_E_NOTFOUND, "%s has not changed between %s and %s", path,
                    v->pt.from, v->pt.to);
        ws_changes_clear(&ch);
        return;
    }
    const char *paths[1] = {path};
    d.o.paths = paths;
    d.o.n_paths = 1;
    struct ah_buf out = {0};
    if (run_diff(v, &d.o, &out)) {
        if (d.o.format == WS_PATCH) {
            text_answer(v->r, &out);
        } else {
            struct ah_buf uni = {.max = DIFF_MAX};
            struct ws_diff_opts uo = d.o;
            uo.format = WS_UNIFIED;
            bool ok = d.o.format == WS_UNIFIED ||
                      ws_diff(v->st, v->pt.from, v->pt.to, &uo, &uni) == 0;
            struct ah_buf *u = d.o.format == WS_UNIFIED ? &out : &uni;
            json_t *o = ok ? file_diff_json(c, u->p ? u->p : "", u->n, &d.o) : NULL;
            if (o) {
                if (d.o.full && c->status != WS_DELETED && !c->binary) {
                    struct ws_blob b = {0};
                    json_t *t = ws_read(v->st, v->pt.to, c->path, CONTENT_MAX, &b) == 0
                                    ? json_stringn(b.data, b.size)
                                    : NULL;
                    json_object_set_new(o, "file_content", t ? t : json_null());
                    ws_blob_clear(&b);
                } else {
                    json_object_set_new(o, "file_content", json_null());
                }
                json_object_set_new(o, "context_lines",
                                    json_integer(d.o.full ? 0 : d.o.context));
                json_object_set_new(o, "hunks", hunks_json(u->p ? u->p : "", u->n));
                if (c->old_path)
                    json_object_set_new(o, "old_path", json_string(c->old_path));
                json_object_set_new(o, "binary", json_boolean(c->binary));
                if (d.o.format == WS_SPLIT)
                    json_object_set_new(o, "split", json_loadb(out.p, out.n, 0, NULL));
                else if (d.o.format == WS_HTML)
                    json_object_set_new(o, "html", json_stringn(out.p ? out.p : "", out.n));
            }
            reply_json(v->r, o);
            ah_buf_clear(&uni);
        }
    }
    ah_buf_clear(&out);
    ws_changes_clear(&ch);
}

static void diff_all(struct view *v, const struct ws_ask *a) {
    struct diff_q d;
    if (diff_query(a, &d, &v->r->problem) < 0)
        return;
    const char **paths = NULL;
    size_t n_paths = 0;
    char *copy = NULL;
    if (files_list(a, &paths, &n_paths, &copy, &v->r->problem) < 0)
        return;
    d.o.paths = paths;
    d.o.n_paths = n_paths;
    struct ws_changes ch = {0};
    struct ah_buf out = {0}, uni = {.max = DIFF_MAX};
    if (changes_or_fail(v, &ch) && run_diff(v, &d.o, &out)) {
        if (d.o.format == WS_PATCH) {
            text_answer(v->r, &out);
        } else {
            struct ws_diff_opts uo = d.o;
            uo.format = WS_UNIFIED;
            bool ok = d.o.format == WS_UNIFIED ||
                      ws_diff(v->st, v->pt.from, v->pt.to, &uo, &uni) == 0;
            const struct ah_buf *u = d.o.format == WS_UNIFIED ? &out : &uni;
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
                json_t *fo = file_diff_json(c, s, (size_t)(e - s), &d.o);
                if (fo) {
                    json_object_set_new(fo, "context_lines",
                                        json_integer(d.o.full ? 0 : d.o.context));
                    json_object_set_new(fo, "binary", json_boolean(c->binary));
                    if (c->old_path)
                        json_object_set_new(fo, "old_path", json_string(c->old_path));
                }
                json_array_append_new(list, fo);
            }
            json_t *body = list ? json_pack("{s:o, s:I, s:I, s:s, s:s}", "files", list,
                                            "total_lines_added", (json_int_t)added,
                                            "total_lines_removed", (json_int_t)removed, "from",
                                            v->pt.from, "to", v->pt.to)
                                : NULL;
            if (body && d.o.format == WS_SPLIT)
                json_object_set_new(body, "split", json_loadb(out.p, out.n, 0, NULL));
            else if (body && d.o.format == WS_HTML)
                json_object_set_new(body, "html", json_stringn(out.p ? out.p : "", out.n));
            reply_json(v->r, body);
        }
    }
    ah_buf_clear(&out);
    ah_buf_clear(&uni);
    ws_changes_clear(&ch);
    free(paths);
    free(copy);
}

/* ---- the entry point --------------------------------------------------------------------------- */

void ws_answer(struct ws_store *st, const char *base, const struct ws_ask *a,
               const struct ws_point_hooks *h, struct ws_reply *ret) {
    memset(ret, 0, sizeof(*ret));
    if (ws_ask_check(a, &ret->problem) < 0)
        return;
    struct view v = {.st = st, .r = ret};
    if (ws_points_resolve(st, base, ws_ask_param(a, "from"), ws_ask_param(a, "to"),
                          ws_ask_param(a, "at"), h, &v.pt, &ret->problem) < 0)
        return;
    switch (a->kind) {
    case WS_ASK_FILES: list_files(&v, a); break;
    case WS_ASK_FILE: get_file(&v, a); break;
    case WS_ASK_DIFF: diff_all(&v, a); break;
    case WS_ASK_FILE_DIFF: diff_one(&v, a); break;
    case WS_ASK_SEARCH: ws_search_answer(st, v.pt.to, a, ret); break;
    case WS_ASK_TREE: ws_tree_answer(st, &v.pt, a, ret); break;
    case WS_ASK_PATHS: ws_paths_answer(st, &v.pt, a, ret); break;
    }
    if (ret->problem.code) { /* a failure wins over a half-made answer */
        json_decref(ret->json);
        free(ret->body);
        ret->json = NULL;
        ret->body = NULL;
        ret->body_len = 0;
        ret->status = 0;
        ret->content_type = NULL;
    }
}
