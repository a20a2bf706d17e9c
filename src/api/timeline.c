/*
 * timeline.c — a session's timeline (API.md §7.8, D31–D33):
 *
 *   GET  /sessions/{id}/timeline       duration, the recording, moments and snapshots
 *   GET  /sessions/{id}/fs-snapshots   the snapshots with the branches made from each
 *   POST /sessions/{id}/fs-snapshots   a manual snapshot of the workspace now
 *   POST /sessions/{id}/moments        a manual moment (a named point, no snapshot)
 *
 * Automatic moments are the session's tool_result events (one per tool boundary, labelled with
 * the tool's name); manual ones are stored. Snapshots are the rows the snapshot worker records
 * (exec/snapshots.c): the base one, one per tool boundary and one per burst of changes that
 * changed something. Every moment and snapshot carries the seq of the event it follows (D33)
 * and its offset in seconds since the session started running.
 */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "timeline.h"

int64_t tl_origin_ms(const struct session_row *row) {
    return row->started_at ? row->started_at : row->created_at;
}

double tl_offset(const struct session_row *row, int64_t ms) {
    int64_t d = ms - tl_origin_ms(row);
    return d > 0 ? (double)d / 1000.0 : 0.0;
}

bool tl_seconds(json_t *v, const char *name, double *ret, struct ah_problem *p) {
    double x = json_is_number(v) ? json_number_value(v) : -1;
    if (!json_is_number(v) || !isfinite(x) || x < 0 || x > 1e9) {
        problem_field(p, name, "must be a number of seconds since the session started (≥ 0)");
        return false;
    }
    *ret = x;
    return true;
}

static int copy_row(const struct fs_snapshot_row *s, struct fs_snapshot_row **ret) {
    struct fs_snapshot_row *c = calloc(1, sizeof(*c));
    if (!c)
        return AH_E_NOMEM;
    *c = *s;
    c->session_id = strdup(s->session_id);
    c->id = strdup(s->id);
    c->kind = strdup(s->kind);
    c->label = strdup(s->label);
    c->description = s->description ? strdup(s->description) : NULL;
    c->provider = strdup(s->provider);
    if (!c->session_id || !c->id || !c->kind || !c->label || !c->provider ||
        (s->description && !c->description)) {
        fs_snapshot_rows_free(c, 1);
        return AH_E_NOMEM;
    }
    *ret = c;
    return 0;
}

bool tl_pick(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
             const struct session_row *row, const char *id, int64_t seq, double ts,
             struct fs_snapshot_row **ret) {
    struct fs_snapshot_row *rows = NULL;
    size_t n = 0;
    int rc = store_fs_snapshot_list(ctx->store, row->tenant_id, row->id, TL_SNAP_MAX, &rows, &n);
    if (rc < 0) {
        http_error(req, res, rc, "cannot read the session's snapshots: %s", ah_strerror(rc));
        return false;
    }
    const struct fs_snapshot_row *best = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct fs_snapshot_row *s = &rows[i];
        if (id) {
            if (strcmp(s->id, id) == 0)
                best = s;
        } else if (seq > 0 ? s->seq <= seq : tl_offset(row, s->ts) <= ts + 1e-9) {
            best = s; /* rows are oldest first: the last match is the newest */
        }
    }
    if (!best) {
        fs_snapshot_rows_free(rows, n);
        if (id)
            http_error(req, res, AH_E_NOTFOUND, "session %s has no snapshot %.40s", row->id, id);
        else
            http_error(req, res, AH_E_NOTFOUND,
                       "session %s has no snapshot at or before that point", row->id);
        return false;
    }
    rc = copy_row(best, ret);
    fs_snapshot_rows_free(rows, n);
    if (rc < 0) {
        http_error(req, res, rc, "out of memory");
        return false;
    }
    return true;
}

/* ---- lineage ------------------------------------------------------------------------------- */

#define LINEAGE_DEPTH 16 /* branches of branches followed upwards */

/* The root session of id's lineage (the session it was branched from, and so on) into root. */
static void root_of(struct api_ctx *ctx, const char *tenant, const char *id,
                    char root[ULID_LEN + 1], char chain[LINEAGE_DEPTH][ULID_LEN + 1],
                    size_t *ret_n) {
    snprintf(root, ULID_LEN + 1, "%s", id);
    size_t n = 0;
    for (int i = 0; i < LINEAGE_DEPTH; i++) {
        struct branch_row *b = NULL;
        if (store_branch_get(ctx->store, tenant, root, &b) < 0)
            break;
        snprintf(root, ULID_LEN + 1, "%s", b->parent_session_id);
        if (chain)
            snprintf(chain[n++], ULID_LEN + 1, "%s", b->parent_session_id);
        branch_rows_free(b, 1);
    }
    if (ret_n)
        *ret_n = n;
}

int tl_import_snapshot(struct api_ctx *ctx, const struct session_row *row, struct ws_store *st,
                       const char *id) {
    struct fs_snapshot_row *s = NULL;
    int rc = store_fs_snapshot_find(ctx->store, row->tenant_id, id, &s);
    if (rc < 0)
        return rc;
    char other[ULID_LEN + 1], r1[ULID_LEN + 1], r2[ULID_LEN + 1];
    char chain[LINEAGE_DEPTH][ULID_LEN + 1];
    size_t n = 0;
    snprintf(other, sizeof(other), "%s", s->session_id);
    fs_snapshot_rows_free(s, 1);
    if (strcmp(other, row->id) == 0)
        return AH_E_NOTFOUND; /* ours, yet not in the store: pruned */
    root_of(ctx, row->tenant_id, row->id, r1, chain, &n);
    root_of(ctx, row->tenant_id, other, r2, NULL, NULL);
    if (strcmp(r1, r2) != 0)
        return AH_E_NOTFOUND; /* another lineage: no shared objects */
    bool ancestor = false;
    for (size_t i = 0; i < n; i++)
        ancestor |= strcmp(chain[i], other) == 0;
    AH_AUTOFREE char *dir = exec_snapshot_dir(ctx->exec, other);
    struct ws_store *from = NULL;
    rc = dir ? ws_store_open(dir, &from) : AH_E_NOMEM;
    /* an ancestor's objects are borrowed already; a branch's are borrowed now */
    if (rc == 0 && !ancestor)
        rc = ws_store_borrow(st, dir);
    if (rc == 0)
        rc = ws_snapshot_import(st, from, id);
    ws_store_free(from);
    return rc;
}

/* ---- disk usage and purge -------------------------------------------------------------------- */

#define DU_MAX_ENTRIES 1000000 /* a walk's bound: beyond it the figure is a lower bound */

/* Bytes of the files under dfd (which it closes), at most *budget entries looked at. */
static uint64_t dir_bytes(int dfd, int depth, size_t *budget) {
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return 0;
    }
    uint64_t total = 0;
    struct dirent *e;
    while (*budget && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        (*budget)--;
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISDIR(sb.st_mode) && depth < 64) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                total += dir_bytes(sub, depth + 1, budget);
        } else if (!S_ISDIR(sb.st_mode)) {
            total += (uint64_t)sb.st_blocks * 512;
        }
    }
    closedir(d);
    return total;
}

static uint64_t path_bytes(const char *path) {
    size_t budget = DU_MAX_ENTRIES;
    int fd = path ? open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    return fd >= 0 ? dir_bytes(fd, 0, &budget) : 0;
}

void tl_disk_usage(struct api_ctx *ctx, const char *id, uint64_t *ret_snapshots,
                   uint64_t *ret_views) {
    AH_AUTOFREE char *snaps = exec_snapshot_dir(ctx->exec, id);
    AH_AUTOFREE char *view = tl_view_path(ctx, id, "x");
    char *slash = view ? strrchr(view, '/') : NULL;
    if (slash)
        *slash = '\0'; /* …/views */
    *ret_snapshots = path_bytes(snaps);
    *ret_views = path_bytes(view);
}

void tl_purge_files(struct api_ctx *ctx, const char *tenant, const char *id) {
    AH_AUTOFREE char *view = tl_view_path(ctx, id, "x");
    char *slash = view ? strrchr(view, '/') : NULL;
    if (slash) {
        *slash = '\0';
        (void)workspace_remove(view);
    }
    /* a branch reads its parent's objects: the store stays while one exists */
    struct branch_row *br = NULL;
    size_t n = 0;
    if (store_branch_list(ctx->store, tenant, id, &br, &n) == 0 && n == 0) {
        AH_AUTOFREE char *snaps = exec_snapshot_dir(ctx->exec, id);
        if (snaps)
            (void)workspace_remove(snaps);
    }
    branch_rows_free(br, n);
}

/* ---- JSON ------------------------------------------------------------------------------------ */

static json_t *snapshot_json(struct api_ctx *ctx, const struct session_row *row,
                             const struct fs_snapshot_row *s, bool list_form) {
    AH_AUTOFREE char *view = tl_view_path(ctx, row->id, s->id);
    struct stat sb;
    bool mounted = view && stat(view, &sb) == 0;
    json_t *snap = json_pack("{s:s, s:s?, s:I}", "id", s->id, "mount", mounted ? view : NULL,
                             "size_bytes", (json_int_t)s->size_bytes);
    if (snap && list_form) {
        char at[TIME_RFC3339_LEN + 1];
        time_format(s->ts, at);
        json_object_set_new(snap, "created_at", json_string(at));
    }
    if (snap && !mounted)
        json_object_set_new(snap, "mount", json_null());
    return json_pack("{s:s, s:f, s:I, s:s, s:s, s:s?, s:s, s:o, s:b}", "id", s->id, "ts",
                     tl_offset(row, s->ts), "seq", (json_int_t)s->seq, "kind", s->kind, "label",
                     s->label, "description", s->description, "provider", s->provider,
                     "snapshot", snap, "branchable", true);
}

/* The recording's size from its header line (80x24 when there is none yet). */
static void recording_size(struct api_ctx *ctx, const char *id, int *w, int *h) {
    *w = 80;
    *h = 24;
    AH_AUTOFREE char *path = exec_recording_path(ctx->exec, id);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return;
    char line[4096];
    ssize_t n = read(fd, line, sizeof(line) - 1);
    close(fd);
    if (n <= 0)
        return;
    line[n] = '\0';
    char *nl = strchr(line, '\n');
    json_t *j = json_loadb(line, nl ? (size_t)(nl - line) : (size_t)n, 0, NULL);
    int jw = (int)json_integer_value(json_object_get(j, "width"));
    int jh = (int)json_integer_value(json_object_get(j, "height"));
    json_decref(j);
    if (jw > 0 && jh > 0) {
        *w = jw;
        *h = jh;
    }
}

/* The automatic moments: one per tool_result event, oldest first, at most TL_MOMENT_MAX. */
static int auto_moments(struct api_ctx *ctx, const struct session_row *row,
                        const struct fs_snapshot_row *snaps, size_t nsnaps, json_t *out) {
    static const char *const types[] = {"tool_result", NULL};
    struct event_filter f = {.types = types, .ascending = true};
    for (int64_t page = 1; json_array_size(out) < TL_MOMENT_MAX; page++) {
        struct page pg = {.page = page, .per_page = PAGE_MAX_PER_PAGE};
        json_t *items = NULL;
        int64_t total = 0;
        int rc = store_event_list(ctx->store, row->tenant_id, row->id, &f, &pg, &items, &total);
        if (rc < 0)
            return rc;
        size_t i;
        json_t *e;
        json_array_foreach(items, i, e) {
            json_int_t seq = json_integer_value(json_object_get(e, "seq"));
            int64_t ms = 0;
            const char *ts = json_string_value(json_object_get(e, "ts"));
            if (ts)
                (void)time_parse(ts, &ms);
            const char *tool = json_string_value(json_object_get(e, "tool_name"));
            char id[40];
            snprintf(id, sizeof(id), "auto-%lld", (long long)seq);
            const char *snap = NULL;
            for (size_t k = 0; k < nsnaps; k++)
                if (snaps[k].seq == seq && strcmp(snaps[k].kind, "auto") == 0)
                    snap = snaps[k].id;
            json_t *m = json_pack("{s:s, s:f, s:I, s:s, s:s, s:s, s:n, s:s*}", "id", id, "ts",
                                  ms ? tl_offset(row, ms) : 0.0, "seq", seq, "label",
                                  tool ? tool : "tool", "kind", "auto", "type", "tool_boundary",
                                  "description", "fsSnapshotId", snap);
            if (m && json_is_true(json_object_get(e, "inherited")))
                json_object_set_new(m, "inherited", json_true());
            if (!m || json_array_append_new(out, m) < 0) {
                json_decref(items);
                return AH_E_NOMEM;
            }
        }
        size_t got = json_array_size(items);
        json_decref(items);
        if (got < PAGE_MAX_PER_PAGE)
            break;
    }
    return 0;
}

static json_t *moment_json(const struct session_row *row, const struct moment_row *m) {
    return json_pack("{s:s, s:f, s:I, s:s, s:s, s:s, s:s?}", "id", m->id, "ts",
                     tl_offset(row, m->ts), "seq", (json_int_t)m->seq, "label", m->label, "kind",
                     "manual", "type", m->type, "description", m->description);
}

static int cmp_moment(const void *a, const void *b) {
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t sx = json_integer_value(json_object_get(x, "seq"));
    json_int_t sy = json_integer_value(json_object_get(y, "seq"));
    if (sx != sy)
        return sx < sy ? -1 : 1;
    return strcmp(json_string_value(json_object_get(x, "id")),
                  json_string_value(json_object_get(y, "id")));
}

/* ---- GET …/timeline -------------------------------------------------------------------------- */

static void get_timeline(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row)
        return;
    struct fs_snapshot_row *snaps = NULL;
    size_t ns = 0;
    struct moment_row *moms = NULL;
    size_t nm = 0;
    json_t *moments = json_array(), *fs = json_array();
    int rc = moments && fs ? 0 : AH_E_NOMEM;
    if (rc == 0)
        rc = store_fs_snapshot_list(ctx->store, row->tenant_id, row->id, TL_SNAP_MAX, &snaps, &ns);
    if (rc == 0)
        rc = store_moment_list(ctx->store, row->tenant_id, row->id, TL_MOMENT_MAX, &moms, &nm);
    if (rc == 0)
        rc = auto_moments(ctx, row, snaps, ns, moments);
    for (size_t i = 0; rc == 0 && i < nm; i++)
        rc = json_array_append_new(moments, moment_json(row, &moms[i])) < 0 ? AH_E_NOMEM : 0;
    for (size_t i = 0; rc == 0 && i < ns; i++)
        rc = json_array_append_new(fs, snapshot_json(ctx, row, &snaps[i], false)) < 0
                 ? AH_E_NOMEM
                 : 0;
    fs_snapshot_rows_free(snaps, ns);
    moment_rows_free(moms, nm);
    if (rc < 0) {
        json_decref(moments);
        json_decref(fs);
        http_error(req, res, rc, "cannot read the timeline: %s", ah_strerror(rc));
        return;
    }
    /* one order for both kinds: the event each follows (D33) */
    size_t n = json_array_size(moments);
    json_t **v = n ? calloc(n, sizeof(*v)) : NULL;
    if (v) {
        for (size_t i = 0; i < n; i++)
            v[i] = json_incref(json_array_get(moments, i));
        qsort(v, n, sizeof(*v), cmp_moment);
        json_array_clear(moments);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(moments, v[i]);
        free(v);
    }
    int64_t end = row->ended_at ? row->ended_at : time_now_ms();
    double duration = row->started_at ? tl_offset(row, end) : 0.0;
    int w, h;
    recording_size(ctx, row->id, &w, &h);
    char uri[128];
    snprintf(uri, sizeof(uri), "/api/v1/sessions/%s/recording", row->id);
    http_json(req, res, 200,
              json_pack("{s:s, s:f, s:f, s:{s:s, s:s, s:i, s:i, s:b}, s:o, s:o}", "sessionId",
                        row->id, "durationSec", duration, "currentTime", duration, "recording",
                        "format", "cast", "uri", uri, "width", w, "height", h, "hasInput", false,
                        "moments", moments, "fsSnapshots", fs));
}

/* ---- fs-snapshots ---------------------------------------------------------------------------- */

static void list_snapshots(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    struct ah_problem p = {0};
    bool branchable = query_bool(req, "branchable", true, &p);
    int64_t limit = query_int(req, "limit", 50, 1, 200, &p);
    if (http_fail(req, res, &p))
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row || !api_session_local_or_fail(req, res, row, "snapshots"))
        return;
    struct fs_snapshot_row *snaps = NULL;
    size_t ns = 0;
    struct branch_row *br = NULL;
    size_t nb = 0;
    int rc = store_fs_snapshot_list(ctx->store, row->tenant_id, row->id, TL_SNAP_MAX, &snaps, &ns);
    if (rc == 0)
        rc = store_branch_list(ctx->store, row->tenant_id, row->id, &br, &nb);
    json_t *list = json_array();
    if (!list && rc == 0)
        rc = AH_E_NOMEM;
    /* every snapshot is branchable: branchable=false asks for those that are not, none */
    for (size_t i = 0; rc == 0 && branchable && i < ns && json_array_size(list) < (size_t)limit;
         i++) {
        json_t *o = snapshot_json(ctx, row, &snaps[i], true), *used = json_array();
        for (size_t k = 0; used && k < nb; k++)
            if (strcmp(br[k].fs_snapshot_id, snaps[i].id) == 0)
                json_array_append_new(used, json_string(br[k].session_id));
        if (!o || !used || json_object_set_new(o, "used_in_branches", used) < 0 ||
            json_array_append_new(list, o) < 0)
            rc = AH_E_NOMEM;
    }
    fs_snapshot_rows_free(snaps, ns);
    branch_rows_free(br, nb);
    if (rc < 0) {
        json_decref(list);
        http_error(req, res, rc, "cannot read the snapshots: %s", ah_strerror(rc));
        return;
    }
    http_json(req, res, 200,
              json_pack("{s:o, s:I}", "snapshots", list, "total",
                        (json_int_t)(branchable ? ns : 0)));
}

/* label (≤ 256) and description (≤ 4096) of a body; false with field errors in p. */
static bool label_desc(json_t *body, bool label_required, const char **label,
                       const char **desc, struct ah_problem *p) {
    json_t *l = json_object_get(body, "label"), *d = json_object_get(body, "description");
    if ((l || label_required) &&
        (!json_is_string(l) || json_string_length(l) < 1 || json_string_length(l) > 256 ||
         memchr(json_string_value(l), 0, json_string_length(l))))
        problem_field(p, "label", "must be a string of 1 to 256 characters");
    if (d && (!json_is_string(d) || json_string_length(d) > 4096))
        problem_field(p, "description", "must be a string of at most 4096 characters");
    *label = json_string_value(l);
    *desc = json_string_value(d);
    return !p->code;
}

static void post_snapshot(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, true);
    if (!body)
        return;
    struct ah_problem p = {0};
    const char *label, *desc;
    static const char *const allowed[] = {"label", "description", NULL};
    api_only_members(body, allowed, &p);
    label_desc(body, false, &label, &desc, &p);
    if (http_fail(req, res, &p))
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row || !api_session_local_or_fail(req, res, row, "snapshots"))
        return;
    char base[WS_SNAP_ID_LEN + 1];
    if (exec_snapshot_base(ctx->exec, row->id, base) < 0) {
        http_error(req, res, AH_E_CONFLICT, "session %s has no workspace yet (it is %s)", row->id,
                   session_status_name(row->status));
        return;
    }
    /* the workspace now: running, paused (the agent cannot change it meanwhile, so that
     * snapshot is exact) or ended (nothing changes it any more); gone: its last state */
    bool live = row->workspace_path != NULL;
    char id[WS_SNAP_ID_LEN + 1];
    struct fs_snapshot_row *s = NULL;
    int rc = snapshots_take_manual(ctx->exec, row->tenant_id, row->id,
                                   live ? row->workspace_path : NULL, label ? label : "manual",
                                   desc, id, &s);
    if (rc == AH_E_NOTFOUND && live) /* the workspace is gone: record its last state */
        rc = snapshots_take_manual(ctx->exec, row->tenant_id, row->id, NULL,
                                   label ? label : "manual", desc, id, &s);
    if (rc < 0) {
        http_error(req, res, rc, "cannot take a snapshot: %s", ah_strerror(rc));
        return;
    }
    json_t *o = snapshot_json(ctx, row, s, false);
    fs_snapshot_rows_free(s, 1);
    char loc[160];
    snprintf(loc, sizeof(loc), "/api/v1/sessions/%s/fs-snapshots", row->id);
    http_header_add(req, res, "Location", loc);
    http_json(req, res, 201, o);
}

/* ---- moments --------------------------------------------------------------------------------- */

static void post_moment(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    if (!body)
        return;
    struct ah_problem p = {0};
    const char *label, *desc;
    static const char *const allowed[] = {"label", "description", "type", NULL};
    api_only_members(body, allowed, &p);
    label_desc(body, true, &label, &desc, &p);
    json_t *t = json_object_get(body, "type");
    const char *type = t ? json_string_value(t) : "milestone";
    if (t && (!type || !*type || json_string_length(t) > 64 || !strcmp(type, "tool_boundary")))
        problem_field(&p, "type",
                      "must be a name of at most 64 characters (tool_boundary is automatic)");
    if (http_fail(req, res, &p))
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row)
        return;
    char id[40];
    ulid_new_prefixed("mom", id, sizeof(id));
    struct moment_row m = {.id = id,
                           .label = (char *)label,
                           .description = (char *)desc,
                           .type = (char *)type,
                           .seq = row->last_seq,
                           .ts = time_now_ms()};
    int rc = store_moment_add(ctx->store, row->tenant_id, row->id, &m);
    if (rc < 0) {
        http_error(req, res, rc, "cannot record the moment: %s", ah_strerror(rc));
        return;
    }
    http_json(req, res, 201,
              json_pack("{s:s, s:f, s:I, s:s, s:s, s:s, s:s?}", "id", id, "ts",
                        tl_offset(row, m.ts), "seq", (json_int_t)m.seq, "label", label, "kind",
                        "manual", "type", type, "description", desc));
}

static void post_snapshot_idem(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_snapshot);
}

static void post_moment_idem(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_moment);
}

int api_timeline_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/timeline", get_timeline, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/fs-snapshots", list_snapshots, ctx, 0, 0);
    rc |= router_add(r, "POST", "/api/v1/sessions/{id}/fs-snapshots", post_snapshot_idem, ctx, 0,
                     0);
    rc |= router_add(r, "POST", "/api/v1/sessions/{id}/moments", post_moment_idem, ctx, 0, 0);
    rc |= api_timeline_seek_register(r, ctx);
    rc |= api_timeline_branch_register(r, ctx);
    return rc;
}
