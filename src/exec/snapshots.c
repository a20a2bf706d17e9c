/*
 * snapshots.c — the session's private object store (D30) seen from the server: the base snapshot
 * taken when provisioning ends, and the automatic snapshots at tool boundaries (D31).
 *
 * Where things live, all under <data>/sessions/<id>/ so they survive restarts and go with the
 * session's other files:
 *   snapshots/        the bare repository (workspace/ owns its format)
 *   snapshot-base     the id of the base snapshot (written once, when provisioning ends)
 *   snapshot-events   the id of the last snapshot whose changes became events
 *
 * Automatic snapshots run on one worker thread (SNAP_THREAD), never on an HTTP thread nor on the
 * supervisor: the supervisor only queues a request (snapshots_request) and goes on. Requests for
 * a session are coalesced: a request made while one is pending is folded into it, and a pending
 * request waits until `coalesce_ms` after it was made, so a burst of edits is one snapshot and
 * two snapshots of a session start at least coalesce_ms apart. The session's exit message waits
 * for the final snapshot (snapshots_final), so its file_edit/diff events come before the final
 * status (no event is stored after a terminal status).
 *
 * Each snapshot that changed something produces one `file_edit` per changed file, numbers from
 * the real diff against the previous snapshot, and one `diff` event with the unified text (cut
 * at 64 KiB with truncated: true and the URL of the full diff).
 *
 * The timeline (D33): every snapshot that changed something, and every one taken at a tool
 * boundary, is recorded in the store (fs_snapshots) with the seq of the event it follows and the
 * bytes it added. A tool boundary's request is held until the tool_result event is stored
 * (snapshots_boundary_stored gives its seq), so the snapshot follows that event (the newest
 * boundary's event, when a second one joins a request still held for the first); then it is due
 * at once, not coalesced: the tool has ended and its state is the boundary's. A held request
 * not released within BOUNDARY_HOLD_MS (its event was a resend) runs anyway.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../obs/obs.h"
#include "../workspace/workspace.h"
#include "executor.h"

#define SNAP_COALESCE_MS_DEFAULT 250
#define BOUNDARY_HOLD_MS 5000

struct snap_req {
    struct snap_req *next;
    char tenant[AH_LIMIT_NAME + 1];
    char id[ULID_LEN + 1];
    char *workdir;
    int64_t due;    /* monotonic ms */
    json_t *exit;   /* the recorder's exit message, answered once the snapshot is done */
    char label[32]; /* "tool_result", "files", "final" */
    char tool[64];  /* a tool boundary: the tool's name (the timeline's label) */
    int64_t seq;    /* the tool_result's seq once stored; 0 unknown */
    bool held;      /* a tool boundary waiting for its event to be stored */
    /* The recorder's number (rseq) of the boundary's tool_result: when a second boundary joins a
     * request still held for the first, only the second's event being stored releases it (the
     * first one's completion, arriving later on a busy machine, would give the snapshot the seq
     * of the earlier tool_result). 0: any completion releases it. */
    int64_t boundary_rseq;
    /* What the recorder's watcher saw change since the newest snapshot: only these paths are
     * looked at (ws_snapshot_changed, a few ms on any workspace) unless `full`: a tool's end,
     * the final snapshot or more than SNAP_PATHS_MAX paths walk the whole tree (stat cache). */
    char **paths;
    size_t npaths;
    bool full;
    uint64_t gen;         /* changes named so far */
    uint64_t covered_gen; /* … of which a reader's `current` snapshot (newer) holds all */
};

#define SNAP_PATHS_MAX 1000 /* ws_snapshot_changed walks the whole tree past that anyway */

struct snapshots {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running, stopping;
    struct snap_req *head;
    struct snap_req *busy; /* the request the worker is running (its paths are not in yet) */
    int64_t coalesce_ms;
    int64_t started_ms;    /* wall clock: named paths only cover changes seen since then */
    struct executor *ex;
};

static void paths_clear(struct snap_req *r) {
    for (size_t i = 0; i < r->npaths; i++)
        free(r->paths[i]);
    free(r->paths);
    r->paths = NULL;
    r->npaths = 0;
}

/* Names one more changed path (NULL: a change that names none, the whole tree then). */
static void add_path(struct snap_req *r, const char *path) {
    r->gen++;
    if (r->full)
        return;
    char norm[WS_PATH_MAX + 1];
    if (path && (ws_path_normalise(path, strlen(path), norm) < 0 || !norm[0]))
        path = NULL; /* not a workspace path we can name (absolute, .git…): walk the tree */
    else if (path)
        path = norm;
    for (size_t i = 0; path && i < r->npaths; i++)
        if (strcmp(r->paths[i], path) == 0)
            return;
    char **v = path && r->npaths < SNAP_PATHS_MAX
                   ? realloc(r->paths, (r->npaths + 1) * sizeof(*v))
                   : NULL;
    char *copy = v ? strdup(path) : NULL;
    if (v)
        r->paths = v;
    if (!copy) { /* no path, too many, or out of memory: walk the tree */
        paths_clear(r);
        r->full = true;
        return;
    }
    r->paths[r->npaths++] = copy;
}

static void req_free(struct snap_req *r) {
    if (!r)
        return;
    paths_clear(r);
    free(r->workdir);
    json_decref(r->exit);
    free(r);
}

char *exec_snapshot_dir(struct executor *ex, const char *id) {
    char *p = NULL;
    if (asprintf(&p, "%s/sessions/%s/snapshots", ex->cfg.data_dir, id) < 0)
        return NULL;
    return p;
}

static int read_id(const char *data_dir, const char *id, const char *name,
                   char out[WS_SNAP_ID_LEN + 1]) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/sessions/%s/%s", data_dir, id, name);
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, 256, &text, &len);
    if (rc < 0)
        return rc == AH_E_IO ? AH_E_NOTFOUND : rc;
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    if (len != WS_SNAP_ID_LEN) {
        free(text);
        return AH_E_NOTFOUND;
    }
    memcpy(out, text, len);
    out[len] = 0;
    free(text);
    return 0;
}

static int write_id(const char *data_dir, const char *id, const char *name, const char *snap) {
    char path[4200], tmp[4300];
    snprintf(path, sizeof(path), "%s/sessions/%s/%s", data_dir, id, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    char line[WS_SNAP_ID_LEN + 2];
    int n = snprintf(line, sizeof(line), "%s\n", snap);
    int rc = write_file(tmp, line, (size_t)n, 0600);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = ah_err_from_errno(errno);
    return rc;
}

/* D49: how long workspace snapshots take (base at provisioning, incremental at tool
 * boundaries); failures are counted apart. */
static struct obs_family *m_snap_secs, *m_snap_failed;
__attribute__((constructor)) static void snapshot_metrics(void) {
    static const char *const kinds[] = {"kind=\"base\"", "kind=\"incremental\"",
                                        "kind=\"watched\""};
    static const double secs[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                  0.5,   1,     2.5,  5,     10,   30, 60};
    m_snap_secs = obs_register("ah_snapshot_seconds", "Time to take a workspace snapshot",
                               OBS_HISTOGRAM, kinds, 3, secs, sizeof(secs) / sizeof(*secs));
    m_snap_failed = obs_register("ah_snapshot_failures_total", "Workspace snapshots that failed",
                                 OBS_COUNTER, kinds, 3, NULL, 0);
}

/* Do the watched changes this server has seen cover everything since the store's newest
 * snapshot? Only when that snapshot was taken by this server: changes acknowledged by an
 * earlier one whose snapshot never ran are named nowhere. */
static bool newest_is_ours(struct snapshots *S, struct ws_store *st) {
    char newest[WS_SNAP_ID_LEN + 1];
    struct ws_snapshot_info info = {0};
    if (!S || ws_snapshot_latest(st, newest) < 0 || ws_snapshot_info(st, newest, &info) < 0)
        return false;
    bool ours = info.created_ms >= S->started_ms;
    ws_snapshot_info_clear(&info);
    return ours;
}

/* D48: a snapshot of session id is a span, the child of the span the thread works for (the
 * session's provisioning for the base, the session's trace on the snapshot worker, the request
 * for a manual one); none when export is off or the thread works for no trace. */
static void snapshot_span(const char *id, const char *kind, const char *label, const char *snap,
                          int64_t start_ns, int rc) {
    struct obs_trace tr;
    if (obs_trace_child(&tr) < 0)
        return;
    struct obs_span s = {
        .name = "snapshot",
        .kind = 1,
        .trace = tr,
        .start_ns = start_ns,
        .end_ns = obs_wall_ns(),
        .error = rc < 0,
        .attrs = {{"ah.session_id", id},
                  {"ah.snapshot_kind", kind},
                  {"ah.snapshot_label", label},
                  {"ah.snapshot_id", rc == 0 ? snap : NULL}},
    };
    obs_span_export(&s);
}

/* kind 2 ("watched"): only the paths named (the watcher's), see struct snap_req. */
static int timed_snapshot(const char *id, size_t kind, struct ws_store *st, const char *workdir,
                          const char *label, char *snap, const char *const *paths, size_t npaths) {
    static const char *const kinds[] = {"base", "incremental", "watched"};
    int64_t span_start = obs_otlp_enabled() ? obs_wall_ns() : 0;
    double t0 = obs_now();
    int rc = kind == 2 ? ws_snapshot_changed(st, workdir, label, paths, npaths, snap, NULL)
                       : ws_snapshot(st, workdir, label, snap, NULL);
    if (rc < 0 && kind == 2) /* whatever went wrong with the named paths, the walk still works */
        rc = ws_snapshot(st, workdir, label, snap, NULL);
    obs_observe(m_snap_secs, kind, obs_now() - t0);
    if (rc < 0)
        obs_add(m_snap_failed, kind, 1);
    if (span_start)
        snapshot_span(id, kinds[kind], label, snap, span_start, rc);
    return rc;
}

int exec_snapshot_base(struct executor *ex, const char *id, char out[WS_SNAP_ID_LEN + 1]) {
    return read_id(ex->cfg.data_dir, id, "snapshot-base", out);
}

int snapshot_take_base(const char *data_dir, const char *id, const char *workdir,
                       struct ah_problem *reterr) {
    char dir[4200], snap[WS_SNAP_ID_LEN + 1];
    if (read_id(data_dir, id, "snapshot-base", snap) == 0)
        return 0; /* a retried provisioning keeps the first base */
    snprintf(dir, sizeof(dir), "%s/sessions/%s/snapshots", data_dir, id);
    struct ws_store *st = NULL;
    int rc = ws_store_open(dir, &st);
    if (rc == 0)
        rc = timed_snapshot(id, 0, st, workdir, "base", snap, NULL, 0);
    ws_store_free(st);
    if (rc == 0)
        rc = snapshot_set_base(data_dir, id, snap);
    if (rc < 0)
        return problem_set(reterr, rc, "cannot take the base snapshot of the workspace: %s",
                           ah_strerror(rc));
    return 0;
}

int snapshot_set_base(const char *data_dir, const char *id, const char *snap) {
    int rc = write_id(data_dir, id, "snapshot-base", snap);
    return rc < 0 ? rc : write_id(data_dir, id, "snapshot-events", snap);
}

/* ---- the timeline's rows -------------------------------------------------------------------- */

/* Records snapshot snap in the store (fs_snapshots). seq 0: the session's last event now. */
static int record_row(struct store *store, struct ws_store *st, const char *tenant,
                      const char *id, const char *snap, const char *kind, const char *label,
                      const char *description, int64_t seq, const char *provider) {
    uint64_t bytes = 0;
    (void)ws_snapshot_added_bytes(st, snap, &bytes); /* 0 when it cannot be measured */
    struct session_row *row = NULL;
    if (seq <= 0 || !provider) {
        int rc = store_session_get(store, tenant, id, &row);
        if (rc < 0)
            return rc;
        if (seq <= 0)
            seq = row->last_seq;
        if (!provider)
            provider = row->workspace_provider;
    }
    struct fs_snapshot_row fr = {
        .id = (char *)snap,
        .kind = (char *)kind,
        .label = (char *)label,
        .description = (char *)description,
        .provider = (char *)(provider ? provider : "copy"),
        .seq = seq,
        .ts = time_now_ms(),
        .size_bytes = (int64_t)bytes,
    };
    int rc = store_fs_snapshot_add(store, tenant, id, &fr);
    session_row_free(row);
    return rc;
}

/* Retention: beyond AH_SNAPSHOTS_MAX automatic snapshots or AH_SNAPSHOTS_MAX_BYTES of them per
 * session, the oldest automatic ones no branch was made from leave the timeline (and the store
 * forgets their names). The base and manual snapshots are kept. Then the objects no remaining
 * snapshot of the session or of its branches needs are deleted from disk, once older than
 * AH_SNAPSHOTS_GC_GRACE_MS (a branch's snapshot being taken may be about to name one). */
#define KEEP_COUNT_DEFAULT 1000
#define KEEP_BYTES_DEFAULT (4LL << 30)

static int64_t env_limit(const char *name, int64_t min, int64_t def) {
    const char *e = getenv(name);
    int64_t v;
    return e && parse_int64(e, min, INT64_MAX / 2, &v) == 0 ? v : def;
}

#define GC_GRACE_MS_DEFAULT (60 * 1000)
#define BORROWERS_MAX 256 /* branches (and theirs) whose stores are looked at; more: no GC */

/* The stores borrowing id's objects: its branches', their branches', … (ret: malloc'd paths,
 * *n counts them). false when there are more than BORROWERS_MAX or a lookup failed: then
 * nothing may be deleted. */
static bool borrowers(struct executor *ex, const char *tenant, const char *id, char **ret,
                      size_t *n, int depth) {
    struct branch_row *br = NULL;
    size_t nb = 0;
    if (depth > 64 || store_branch_list(ex->store, tenant, id, &br, &nb) < 0)
        return false;
    bool ok = true;
    for (size_t i = 0; ok && i < nb; i++) {
        char dir[4200];
        snprintf(dir, sizeof(dir), "%s/sessions/%s/snapshots", ex->cfg.data_dir,
                 br[i].session_id);
        if (*n == BORROWERS_MAX || !(ret[*n] = strdup(dir))) {
            ok = false;
            break;
        }
        (*n)++;
        ok = borrowers(ex, tenant, br[i].session_id, ret, n, depth + 1);
    }
    branch_rows_free(br, nb);
    return ok;
}

/* The disk of the snapshots retention just forgot (ws_store_gc). */
static void collect(struct executor *ex, struct ws_store *st, const char *tenant, const char *id) {
    char **dirs = calloc(BORROWERS_MAX, sizeof(char *));
    size_t n = 0;
    uint64_t freed = 0;
    if (dirs && borrowers(ex, tenant, id, dirs, &n, 0)) {
        /* a purged branch's store is gone: nothing of it to keep */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            struct stat sb;
            if (stat(dirs[i], &sb) == 0)
                dirs[k++] = dirs[i];
            else
                free(dirs[i]);
        }
        n = k;
        int rc = ws_store_gc(st, (const char *const *)dirs, n,
                             env_limit("AH_SNAPSHOTS_GC_GRACE_MS", 0, GC_GRACE_MS_DEFAULT), &freed);
        if (rc < 0)
            log_msg(LOG_WARN, "session %s: cannot free the forgotten snapshots: %s", id,
                    ah_strerror(rc));
    }
    for (size_t i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
}

/* Is id one of the session's timeline rows? (ctx: the rows, as fetched by prune) */
struct rows {
    const struct fs_snapshot_row *v;
    size_t n;
    const char *branch_point; /* a branch's: the parent's snapshot its store knows by name */
    uint64_t young_ms;        /* snapshots made since (ULID time) are kept: a read may use one */
};
static bool on_timeline(void *ctx, const char *id) {
    const struct rows *r = ctx;
    if (r->branch_point && !strcmp(r->branch_point, id))
        return true;
    if (r->young_ms && ulid_time_ms(id + 5) >= r->young_ms) /* "snap-" + ULID */
        return true;
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->v[i].id, id))
            return true;
    return false;
}

static void prune(struct executor *ex, struct ws_store *st, const char *tenant, const char *id) {
    int64_t max_n = env_limit("AH_SNAPSHOTS_MAX", 1, KEEP_COUNT_DEFAULT);
    int64_t max_b = env_limit("AH_SNAPSHOTS_MAX_BYTES", 1, KEEP_BYTES_DEFAULT);
    struct fs_snapshot_row *rows = NULL;
    size_t n = 0;
    struct branch_row *br = NULL;
    size_t nb = 0;
    bool forgot = false;
    char newest_gone[WS_SNAP_ID_LEN + 1] = "";
    size_t limit = (size_t)max_n + 1000;
    if (store_fs_snapshot_list(ex->store, tenant, id, limit, &rows, &n) < 0)
        return;
    int64_t count = 0, bytes = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].kind, "auto") == 0) {
            count++;
            bytes += rows[i].size_bytes;
        }
    if ((count > max_n || bytes > max_b) &&
        store_branch_list(ex->store, tenant, id, &br, &nb) == 0) {
        for (size_t i = 0; i < n && (count > max_n || bytes > max_b); i++) {
            if (strcmp(rows[i].kind, "auto") != 0)
                continue;
            bool used = false;
            for (size_t k = 0; k < nb; k++)
                used |= strcmp(br[k].fs_snapshot_id, rows[i].id) == 0;
            if (used || i + 1 == n) /* never the newest: the next one's diff starts there */
                continue;
            if (store_fs_snapshot_delete(ex->store, tenant, id, rows[i].id) == 0) {
                (void)ws_snapshot_forget(st, rows[i].id);
                count--;
                bytes -= rows[i].size_bytes;
                forgot = true;
                if (strcmp(rows[i].id, newest_gone) > 0)
                    snprintf(newest_gone, sizeof(newest_gone), "%s", rows[i].id);
            }
        }
        branch_rows_free(br, nb);
    }
    /* the snapshots that never joined the timeline go too (when the list holds every row: else
     * one it left out could be taken for such a snapshot): those older than what retention
     * forgot, and the later ones but the newest (the next snapshot's diff starts there) once
     * older than the grace period (a read may still use its `current` one) — a snapshot that
     * changed nothing after a boundary names the same objects as the boundary's, and kept
     * them on disk after the boundary was forgotten */
    struct session_row *row = NULL;
    char newest[WS_SNAP_ID_LEN + 1];
    if (forgot && n < limit && store_session_get(ex->store, tenant, id, &row) == 0) {
        json_t *b = json_object_get(session_row_request(row), "branch");
        struct rows keep = {rows, n, json_string_value(json_object_get(b, "fsSnapshotId")), 0};
        (void)ws_snapshots_forget_before(st, newest_gone, on_timeline, &keep);
        int64_t grace = env_limit("AH_SNAPSHOTS_GC_GRACE_MS", 0, GC_GRACE_MS_DEFAULT);
        keep.young_ms = (uint64_t)(time_now_ms() - grace);
        if (ws_snapshot_latest(st, newest) == 0)
            (void)ws_snapshots_forget_before(st, newest, on_timeline, &keep);
        session_row_free(row);
    }
    fs_snapshot_rows_free(rows, n);
    if (forgot)
        collect(ex, st, tenant, id);
}

/* An automatic snapshot joins the timeline when it is a tool boundary or changed something. */
static void record(struct executor *ex, struct ws_store *st, const struct snap_req *r,
                   const char *snap) {
    struct ws_snapshot_info info = {0}, parent = {0};
    bool changed = true;
    if (!r->tool[0] && ws_snapshot_info(st, snap, &info) == 0) {
        if (info.parent[0] && ws_snapshot_info(st, info.parent, &parent) == 0)
            changed = strcmp(info.tree, parent.tree) != 0;
        ws_snapshot_info_clear(&parent);
        ws_snapshot_info_clear(&info);
    }
    if (!changed)
        return;
    int rc = record_row(ex->store, st, r->tenant, r->id, snap, "auto",
                        r->tool[0] ? r->tool : r->label, NULL, r->seq, NULL);
    if (rc < 0)
        log_msg(LOG_WARN, "session %s: cannot record snapshot %s: %s", r->id, snap,
                ah_strerror(rc));
}

int snapshots_record_base(struct executor *ex, const char *tenant, const char *id,
                          const char *provider) {
    char dir[4200], snap[WS_SNAP_ID_LEN + 1];
    int rc = read_id(ex->cfg.data_dir, id, "snapshot-base", snap);
    if (rc < 0)
        return rc;
    snprintf(dir, sizeof(dir), "%s/sessions/%s/snapshots", ex->cfg.data_dir, id);
    struct ws_store *st = NULL;
    if ((rc = ws_store_open(dir, &st)) < 0)
        return rc;
    rc = record_row(ex->store, st, tenant, id, snap, "base", "base", NULL, 0, provider);
    ws_store_free(st);
    return rc == AH_E_EXISTS ? 0 : rc; /* a retried provisioning keeps the first base */
}

int snapshots_take_manual(struct executor *ex, const char *tenant, const char *id,
                          const char *workdir, const char *label, const char *description,
                          char ret_id[WS_SNAP_ID_LEN + 1], struct fs_snapshot_row **ret_row) {
    char dir[4200], snap[WS_SNAP_ID_LEN + 1];
    snprintf(dir, sizeof(dir), "%s/sessions/%s/snapshots", ex->cfg.data_dir, id);
    struct ws_store *st = NULL;
    int rc = ws_store_open(dir, &st);
    int64_t span_start = obs_otlp_enabled() && workdir ? obs_wall_ns() : 0;
    if (rc == 0)
        rc = workdir ? ws_snapshot(st, workdir, label, snap, NULL) : ws_snapshot_latest(st, snap);
    if (span_start)
        snapshot_span(id, "manual", label, snap, span_start, rc);
    if (rc == 0)
        rc = record_row(ex->store, st, tenant, id, snap, "manual", label, description, 0, NULL);
    ws_store_free(st);
    if (rc == 0 && ret_row)
        rc = store_fs_snapshot_find(ex->store, tenant, snap, ret_row);
    if (rc == 0)
        memcpy(ret_id, snap, sizeof(snap));
    return rc;
}

/* ---- events from one snapshot ------------------------------------------------------------------ */

static void submit(struct executor *ex, const struct snap_req *r, json_t *ev) {
    if (!ev)
        return;
    struct store_op op = {
        .kind = STORE_OP_EVENT, .tenant = r->tenant, .session_id = r->id, .payload = ev};
    bus_submit_wait(ex->bus, &op);
    free(op.stored);
    json_decref(ev);
}

/* Takes the snapshot, emits its events and returns the totals since the base in *ret_changes
 * (NULL when unknown). */
static void run_one(struct executor *ex, struct snap_req *r, json_t **ret_changes) {
    *ret_changes = NULL;
    char dir[4200], prev[WS_SNAP_ID_LEN + 1], snap[WS_SNAP_ID_LEN + 1], base[WS_SNAP_ID_LEN + 1];
    snprintf(dir, sizeof(dir), "%s/sessions/%s/snapshots", ex->cfg.data_dir, r->id);
    if (read_id(ex->cfg.data_dir, r->id, "snapshot-events", prev) < 0)
        return; /* no base (provisioned by an older server): nothing to compare with */
    struct ws_store *st = NULL;
    int rc = ws_store_open(dir, &st);
    if (rc == 0)
        rc = timed_snapshot(r->id, r->full || !r->npaths || !newest_is_ours(ex->snaps, st) ? 1 : 2,
                            st, r->workdir, r->label, snap, (const char *const *)r->paths,
                            r->npaths);
    if (rc < 0) {
        log_msg(LOG_WARN, "session %s: snapshot failed: %s", r->id, ah_strerror(rc));
        ws_store_free(st);
        return;
    }
    record(ex, st, r, snap);
    struct ws_changes ch = {0};
    if (ws_changes(st, prev, snap, &ch) == 0 && ch.n) {
        int64_t added = 0, removed = 0;
        for (size_t i = 0; i < ch.n; i++) {
            const struct ws_change *c = &ch.v[i];
            added += c->lines_added;
            removed += c->lines_removed;
            json_t *ev = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "type", "file_edit",
                                   "file_path", c->path, "lines_added", (json_int_t)c->lines_added,
                                   "lines_removed", (json_int_t)c->lines_removed, "description",
                                   ws_status_name(c->status), "change", ws_status_name(c->status),
                                   "snapshot_id", snap);
            if (ev && c->old_path)
                json_object_set_new(ev, "old_path", json_string(c->old_path));
            if (ev && c->binary)
                json_object_set_new(ev, "binary", json_true());
            submit(ex, r, ev);
        }
        struct ah_buf text = {.max = 16u * 1024 * 1024};
        struct ws_diff_opts o;
        ws_diff_opts_init(&o);
        int drc = ws_diff(st, prev, snap, &o, &text);
        bool truncated = drc == AH_E_TOOLARGE;
        size_t keep = drc == 0 || truncated
                          ? ws_truncate_lines(text.p ? text.p : "", text.n, WS_EVENT_DIFF_MAX,
                                              &truncated)
                          : 0;
        char url[200];
        snprintf(url, sizeof(url), "/api/v1/sessions/%s/diff?from=%s&to=%s", r->id, prev, snap);
        json_t *ev = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s#, s:b, s:s}", "type", "diff",
                               "from", prev, "snapshot_id", snap, "files", (json_int_t)ch.n,
                               "lines_added", (json_int_t)added, "lines_removed",
                               (json_int_t)removed, "diff", text.p ? text.p : "", keep,
                               "truncated", truncated, "url", url);
        ah_buf_clear(&text);
        submit(ex, r, ev);
    }
    ws_changes_clear(&ch);
    write_id(ex->cfg.data_dir, r->id, "snapshot-events", snap);
    prune(ex, st, r->tenant, r->id); /* after its diff: the previous one was still needed */
    if (r->exit && exec_snapshot_base(ex, r->id, base) == 0 &&
        ws_changes(st, base, snap, &ch) == 0) {
        int64_t added = 0, removed = 0;
        for (size_t i = 0; i < ch.n; i++) {
            added += ch.v[i].lines_added;
            removed += ch.v[i].lines_removed;
        }
        *ret_changes = json_pack("{s:I, s:I, s:I}", "files_changed", (json_int_t)ch.n,
                                 "lines_added", (json_int_t)added, "lines_removed",
                                 (json_int_t)removed);
        ws_changes_clear(&ch);
    }
    ws_store_free(st);
}

static void *snap_main(void *arg) {
    struct snapshots *S = arg;
    pthread_mutex_lock(&S->mu);
    for (;;) {
        if (S->stopping)
            break;
        int64_t now = time_mono_ms(), next = INT64_MAX;
        struct snap_req **pp = &S->head, *r = NULL;
        for (; *pp; pp = &(*pp)->next)
            if ((*pp)->due <= now) {
                r = *pp;
                *pp = r->next;
                break;
            } else if ((*pp)->due < next)
                next = (*pp)->due;
        if (!r) {
            if (next == INT64_MAX) {
                pthread_cond_wait(&S->cv, &S->mu);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                int64_t wait = next - now;
                ts.tv_sec += wait / 1000;
                ts.tv_nsec += (wait % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&S->cv, &S->mu, &ts);
            }
            continue;
        }
        struct executor *ex = S->ex;
        S->busy = r;
        pthread_mutex_unlock(&S->mu);
        json_t *changes = NULL;
        /* D48: the snapshot's span and the worker's log lines join the session's trace */
        char tp[56];
        struct obs_trace tr;
        bool traced = obs_otlp_enabled() && live_trace(ex, r->tenant, r->id, tp) &&
                      obs_traceparent_parse(tp, &tr) == 0;
        if (traced)
            log_trace_set(tr.trace_id, tr.parent_id);
        run_one(ex, r, &changes);
        if (traced)
            log_trace_set(NULL, NULL);
        pthread_mutex_lock(&S->mu);
        S->busy = NULL;
        pthread_mutex_unlock(&S->mu);
        if (r->exit) {
            if (changes)
                json_object_set_new(r->exit, "changes", changes);
            struct cmd *c = cmd_new(CMD_EXIT, r->tenant, r->id);
            if (c) {
                c->msg = AH_TAKE(r->exit);
                delivery_then_exit(ex, c, r->workdir); /* the push is not this thread's */
            }
        } else {
            json_decref(changes);
        }
        req_free(r);
        pthread_mutex_lock(&S->mu);
    }
    pthread_mutex_unlock(&S->mu);
    return NULL;
}

static void enqueue(struct snapshots *S, const char *tenant, const char *id, const char *workdir,
                    const char *label, const char *tool, int64_t rseq, json_t *exit_msg,
                    const char *path) {
    pthread_mutex_lock(&S->mu);
    if (!S->running || S->stopping) {
        pthread_mutex_unlock(&S->mu);
        json_decref(exit_msg);
        return;
    }
    int64_t due = time_mono_ms() + (exit_msg ? 0 : tool ? BOUNDARY_HOLD_MS : S->coalesce_ms);
    for (struct snap_req *r = S->head; r; r = r->next)
        if (strcmp(r->id, id) == 0 && strcmp(r->tenant, tenant) == 0) {
            add_path(r, path);
            if (tool) { /* the pending snapshot becomes this boundary's */
                snprintf(r->tool, sizeof(r->tool), "%s", tool);
                r->held = true;
                r->seq = 0;
                r->boundary_rseq = rseq;
                if (!r->exit)
                    r->due = due;
            }
            if (exit_msg) { /* the last word: run it now, as the final snapshot */
                json_decref(r->exit);
                r->exit = exit_msg;
                if (!r->held) /* a boundary still waits for its event's seq (soon: it was sent
                               * before the exit) */
                    r->due = due;
                snprintf(r->label, sizeof(r->label), "%s", label);
                pthread_cond_signal(&S->cv);
            }
            pthread_mutex_unlock(&S->mu);
            return;
        }
    struct snap_req *r = calloc(1, sizeof(*r));
    if (!r || !(r->workdir = strdup(workdir))) {
        free(r);
        pthread_mutex_unlock(&S->mu);
        json_decref(exit_msg);
        return;
    }
    snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
    snprintf(r->id, sizeof(r->id), "%s", id);
    snprintf(r->label, sizeof(r->label), "%s", label);
    if (tool) {
        snprintf(r->tool, sizeof(r->tool), "%s", tool);
        r->held = true;
        r->boundary_rseq = rseq;
    }
    add_path(r, path);
    r->due = due;
    r->exit = exit_msg;
    r->next = S->head;
    S->head = r;
    pthread_cond_signal(&S->cv);
    pthread_mutex_unlock(&S->mu);
}

void snapshots_request(struct executor *ex, const char *tenant, const char *id,
                       const char *workdir, const char *label, const char *path) {
    if (workdir && ex->snaps)
        enqueue(ex->snaps, tenant, id, workdir, label, NULL, 0, NULL, path);
}

void snapshots_boundary(struct executor *ex, const char *tenant, const char *id,
                        const char *workdir, const char *tool, int64_t rseq) {
    if (workdir && ex->snaps)
        enqueue(ex->snaps, tenant, id, workdir, "tool_result", tool && *tool ? tool : "tool",
                rseq, NULL, NULL);
}

void snapshots_boundary_stored(struct executor *ex, const char *tenant, const char *id,
                               int64_t rseq, int64_t seq) {
    struct snapshots *S = ex->snaps;
    if (!S)
        return;
    pthread_mutex_lock(&S->mu);
    for (struct snap_req *r = S->head; r; r = r->next)
        if (r->held && strcmp(r->id, id) == 0 && strcmp(r->tenant, tenant) == 0) {
            if (r->boundary_rseq > 0 && rseq > 0 && rseq < r->boundary_rseq)
                break; /* an earlier boundary's event: this request now waits for a later one */
            r->held = false;
            r->seq = seq;
            r->due = time_mono_ms();
            pthread_cond_signal(&S->cv);
            break;
        }
    pthread_mutex_unlock(&S->mu);
}

bool snapshots_final(struct executor *ex, const char *tenant, const char *id, const char *workdir,
                     json_t *exit_msg) {
    struct snapshots *S = ex->snaps;
    if (!S)
        return false;
    pthread_mutex_lock(&S->mu);
    bool up = S->running && !S->stopping;
    pthread_mutex_unlock(&S->mu);
    if (!up || !workdir)
        return false;
    enqueue(S, tenant, id, workdir, "final", NULL, 0, json_incref(exit_msg), NULL);
    return true;
}

/* Copies the paths of r into *v (grown), or sets *full. */
static void gather(const struct snap_req *r, char ***v, size_t *n, bool *full) {
    if (r->full || r->exit || r->tool[0] || !r->npaths) {
        *full = true;
        return;
    }
    for (size_t i = 0; !*full && i < r->npaths; i++) {
        char **g = realloc(*v, (*n + 1) * sizeof(**v));
        char *copy = g ? strdup(r->paths[i]) : NULL;
        if (g)
            *v = g;
        if (!copy)
            *full = true;
        else
            (*v)[(*n)++] = copy;
    }
}

int exec_snapshot_current(struct executor *ex, const char *tenant, const char *id,
                          const char *workdir, struct ws_store *st,
                          char ret_id[WS_SNAP_ID_LEN + 1]) {
    struct snapshots *S = ex->snaps;
    char **paths = NULL;
    size_t n = 0;
    bool full = !S, pending = false;
    uint64_t gen = 0; /* of the session's queued request, which covered_gen may mark */
    if (S) {
        pthread_mutex_lock(&S->mu);
        for (struct snap_req *r = S->head; r && !full; r = r->next)
            if (strcmp(r->id, id) == 0 && strcmp(r->tenant, tenant) == 0 &&
                r->covered_gen != r->gen) {
                pending = true;
                gen = r->gen;
                gather(r, &paths, &n, &full);
            }
        struct snap_req *b = S->busy;
        if (b && !full && strcmp(b->id, id) == 0 && strcmp(b->tenant, tenant) == 0) {
            pending = true;
            gather(b, &paths, &n, &full);
        }
        pthread_mutex_unlock(&S->mu);
    }
    if (!full && !newest_is_ours(S, st))
        full = true;
    int rc;
    if (full) /* the walk (stat cache): a change we cannot name, or from before this server */
        rc = ws_snapshot(st, workdir, "current", ret_id, NULL);
    else if (pending)
        rc = ws_snapshot_changed(st, workdir, "current", (const char *const *)paths, n, ret_id,
                                 NULL);
    else /* nothing changed since the newest snapshot */
        rc = ws_snapshot_latest(st, ret_id);
    if (rc < 0 && !full && rc != AH_E_NOTFOUND)
        rc = ws_snapshot(st, workdir, "current", ret_id, NULL);
    if (rc == 0 && gen && S) { /* until another change, the newest snapshot is current */
        pthread_mutex_lock(&S->mu);
        for (struct snap_req *r = S->head; r; r = r->next)
            if (strcmp(r->id, id) == 0 && strcmp(r->tenant, tenant) == 0 && r->gen == gen)
                r->covered_gen = gen;
        pthread_mutex_unlock(&S->mu);
    }
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return rc;
}

int snapshots_start(struct executor *ex) {
    struct snapshots *S = calloc(1, sizeof(*S));
    if (!S)
        return AH_E_NOMEM;
    pthread_mutex_init(&S->mu, NULL);
    S->coalesce_ms = SNAP_COALESCE_MS_DEFAULT;
    S->started_ms = time_now_ms();
    const char *env = getenv("AH_SNAPSHOT_COALESCE_MS");
    int64_t v;
    pthread_mutex_lock(&S->mu);
    if (env && parse_int64(env, 0, 60000, &v) == 0)
        S->coalesce_ms = v;
    S->ex = ex;
    S->stopping = false;
    pthread_cond_init(&S->cv, NULL);
    S->running = pthread_create(&S->thread, NULL, snap_main, S) == 0;
    pthread_mutex_unlock(&S->mu);
    if (!S->running) {
        pthread_cond_destroy(&S->cv);
        pthread_mutex_destroy(&S->mu);
        free(S);
        return AH_E_NOMEM;
    }
    ex->snaps = S;
    return 0;
}

void snapshots_stop(struct executor *ex) {
    struct snapshots *S = ex->snaps;
    if (!S)
        return;
    ex->snaps = NULL;
    pthread_mutex_lock(&S->mu);
    S->stopping = true;
    pthread_cond_broadcast(&S->cv);
    pthread_mutex_unlock(&S->mu);
    pthread_join(S->thread, NULL);
    pthread_mutex_lock(&S->mu);
    while (S->head) { /* the recorders resend what was not acknowledged to the next server */
        struct snap_req *r = S->head;
        S->head = r->next;
        req_free(r);
    }
    pthread_mutex_unlock(&S->mu);
    pthread_cond_destroy(&S->cv);
    pthread_mutex_destroy(&S->mu);
    free(S);
}
