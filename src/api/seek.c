/*
 * seek.c — read-only views of a session's workspace at a point of its timeline (API.md §7.8,
 * D34): POST /sessions/{id}/seek with `ts`, `seq` or `fsSnapshotId`.
 *
 * A view is the snapshot written out under the session's data directory
 * (<data>/sessions/<id>/views/<snap>/, files 0444) by ws_checkout. It is made once and reused
 * while it exists; it is written into a temporary directory and renamed into place, so two
 * seeks to one point never see a half-written view. Views are reclaimed least recently used
 * first beyond a cap for the whole server (AH_SEEK_VIEWS_MAX, default 16). Seek reads the
 * object store only: the live workspace and the running agent are never touched.
 *
 * Off the HTTP threads: writing a view is a checkout of the whole snapshot (seconds on a large
 * workspace), so the handler never does it. It answers from state: 200 with `status: "ready"`
 * when the view exists; otherwise it queues the checkout on the executor's background workers
 * (exec_background) and answers 202 with `status: "preparing"`, the same fields (mountPath is
 * where the view will appear) and Retry-After; the client asks again (the same POST) until 200.
 * A checkout that failed is answered once, to the next ask, as its error; the ask after that
 * tries again. At most PENDING_MAX views are being made at once; beyond that 503 + Retry-After.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "timeline.h"

#define VIEWS_MAX_DEFAULT 16
#define VIEWS_MAX_LIMIT 1024

char *tl_view_path(struct api_ctx *ctx, const char *session_id, const char *snap) {
    AH_AUTOFREE char *dir = exec_snapshot_dir(ctx->exec, session_id); /* …/<id>/snapshots */
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (!slash)
        return NULL;
    *slash = '\0';
    char *p = NULL;
    return asprintf(&p, "%s/views/%s", dir, snap) < 0 ? NULL : p;
}

/* ---- the views' LRU -------------------------------------------------------------------------- */

static pthread_mutex_t lru_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char *path;
    int64_t used; /* monotonic ms */
} lru[VIEWS_MAX_LIMIT + 1];
static size_t lru_n;

static size_t views_max(void) {
    const char *e = getenv("AH_SEEK_VIEWS_MAX");
    int64_t v;
    if (e && parse_int64(e, 1, VIEWS_MAX_LIMIT, &v) == 0)
        return (size_t)v;
    return VIEWS_MAX_DEFAULT;
}

/* Marks path used now; removes the least recently used views beyond the cap (outside the lock:
 * removal walks a tree). */
static void lru_touch(const char *path) {
    char *evict[VIEWS_MAX_LIMIT + 1];
    size_t ne = 0, cap = views_max();
    pthread_mutex_lock(&lru_mu);
    size_t i = 0;
    while (i < lru_n && strcmp(lru[i].path, path))
        i++;
    if (i == lru_n) {
        char *c = strdup(path);
        if (c) {
            lru[lru_n].path = c;
            lru_n++;
        } else {
            i = SIZE_MAX;
        }
    }
    if (i != SIZE_MAX)
        lru[i].used = time_mono_ms();
    while (lru_n > cap) {
        size_t old = 0;
        for (size_t k = 1; k < lru_n; k++)
            if (lru[k].used < lru[old].used)
                old = k;
        evict[ne++] = lru[old].path;
        lru[old] = lru[--lru_n];
    }
    pthread_mutex_unlock(&lru_mu);
    for (size_t k = 0; k < ne; k++) {
        (void)workspace_remove(evict[k]);
        free(evict[k]);
    }
}

/* Views being made (or whose making failed and was not told yet), under lru_mu. */
#define PENDING_MAX 32
static struct pending {
    char *path;
    bool failed;
    int rc;
} pending[PENDING_MAX];
static size_t pending_n;

static struct pending *pending_find(const char *path) { /* under lru_mu */
    for (size_t i = 0; i < pending_n; i++)
        if (!strcmp(pending[i].path, path))
            return &pending[i];
    return NULL;
}

static void pending_drop(struct pending *p) { /* under lru_mu */
    free(p->path);
    *p = pending[--pending_n];
}

struct view_job {
    char *store; /* the session's object store */
    char *snap;
    char *path;
};

static void view_job_free(struct view_job *j) {
    free(j->store);
    free(j->snap);
    free(j->path);
    free(j);
}

/* Writes the view of snap to path, through a temporary directory renamed into place. */
static int make_view(const struct view_job *j) {
    struct stat sb;
    if (stat(j->path, &sb) == 0)
        return 0;
    char tmp[4400], ulid[ULID_LEN + 1];
    ulid_new(ulid);
    snprintf(tmp, sizeof(tmp), "%s.tmp-%s", j->path, ulid);
    struct ws_store *st = NULL;
    int rc = ws_store_open(j->store, &st);
    if (rc == 0) { /* …/views must exist for the checkout's mkdir */
        char views[4400];
        snprintf(views, sizeof(views), "%s", j->path);
        char *slash = strrchr(views, '/');
        if (slash)
            *slash = '\0';
        if (mkdir(views, 0700) < 0 && errno != EEXIST)
            rc = ah_err_from_errno(errno);
    }
    test_hold_point("seek_checkout");
    if (rc == 0)
        rc = ws_checkout(st, j->snap, tmp, true, NULL);
    ws_store_free(st);
    if (rc == 0 && rename(tmp, j->path) < 0)
        rc = errno == EEXIST || errno == ENOTEMPTY ? 0 : ah_err_from_errno(errno);
    (void)workspace_remove(tmp); /* gone after the rename; what a failure left otherwise */
    return rc;
}

/* On a background worker: makes the view, then records the outcome for the next ask. */
static void view_job_run(void *arg, bool cancelled) {
    struct view_job *j = arg;
    int rc = cancelled ? AH_E_UNAVAIL : make_view(j);
    if (rc < 0 && !cancelled)
        log_msg(LOG_WARN, "cannot make the seek view of %s: %s", j->snap, ah_strerror(rc));
    pthread_mutex_lock(&lru_mu);
    struct pending *p = pending_find(j->path);
    if (p && (rc == 0 || cancelled))
        pending_drop(p);
    else if (p) {
        p->failed = true;
        p->rc = rc;
    }
    pthread_mutex_unlock(&lru_mu);
    if (rc == 0)
        lru_touch(j->path);
    view_job_free(j);
}

/* 1 when the view exists, 0 when it is being made (now or already), or the error of a failed
 * making (told once) / AH_E_UNAVAIL when too many are being made. */
static int want_view(struct api_ctx *ctx, const char *session_id, const char *snap,
                     const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0)
        return 1;
    pthread_mutex_lock(&lru_mu);
    struct pending *p = pending_find(path);
    if (p) {
        int rc = p->failed ? p->rc : 0;
        if (p->failed)
            pending_drop(p);
        pthread_mutex_unlock(&lru_mu);
        return rc;
    }
    for (size_t i = 0; pending_n == PENDING_MAX && i < pending_n; i++)
        if (pending[i].failed) /* a failure nobody came back for makes room */
            pending_drop(&pending[i]);
    if (pending_n == PENDING_MAX) {
        pthread_mutex_unlock(&lru_mu);
        return AH_E_UNAVAIL;
    }
    struct view_job *j = calloc(1, sizeof(*j));
    char *key = strdup(path);
    if (j) {
        j->store = exec_snapshot_dir(ctx->exec, session_id);
        j->snap = strdup(snap);
        j->path = strdup(path);
    }
    if (!j || !key || !j->store || !j->snap || !j->path) {
        pthread_mutex_unlock(&lru_mu);
        free(key);
        if (j)
            view_job_free(j);
        return AH_E_NOMEM;
    }
    pending[pending_n++] = (struct pending){.path = key};
    /* under lru_mu: a job that finishes at once finds its entry (the job takes the lock only
     * after the checkout, and exec_background never runs it on this thread) */
    int rc = exec_background(ctx->exec, view_job_run, j);
    if (rc < 0) {
        pending_drop(&pending[pending_n - 1]);
        view_job_free(j);
    }
    pthread_mutex_unlock(&lru_mu);
    return rc;
}

/* ---- POST …/seek ----------------------------------------------------------------------------- */

static void post_seek(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    if (!body)
        return;
    struct ah_problem p = {0};
    static const char *const known[] = {"ts",           "seq",         "fsSnapshotId",
                                        "mountReadonly", "pausePlayer", NULL};
    api_only_members(body, known, &p);
    json_t *jts = json_object_get(body, "ts"), *jseq = json_object_get(body, "seq");
    json_t *jid = json_object_get(body, "fsSnapshotId");
    json_t *ro = json_object_get(body, "mountReadonly"), *pause = json_object_get(body, "pausePlayer");
    double ts = -1;
    int64_t seq = 0;
    if (jts)
        tl_seconds(jts, "ts", &ts, &p);
    if (jseq && (!json_is_integer(jseq) || json_integer_value(jseq) < 1))
        problem_field(&p, "seq", "must be an event seq (an integer ≥ 1)");
    else if (jseq)
        seq = json_integer_value(jseq);
    if (jid && (!json_is_string(jid) || json_string_length(jid) != WS_SNAP_ID_LEN))
        problem_field(&p, "fsSnapshotId", "must be a snapshot id (snap-<ULID>)");
    if (!jts && !jseq && !jid)
        problem_field(&p, "ts", "give ts, seq or fsSnapshotId");
    if ((!!jts + !!jseq + !!jid) > 1)
        problem_field(&p, jid ? "fsSnapshotId" : "seq", "give only one of ts, seq and fsSnapshotId");
    if (ro && !json_is_boolean(ro))
        problem_field(&p, "mountReadonly", "must be a boolean");
    else if (json_is_false(ro))
        problem_field(&p, "mountReadonly", "views are read-only: a writable copy is a branch");
    if (pause && !json_is_boolean(pause))
        problem_field(&p, "pausePlayer", "must be a boolean");
    if (http_fail(req, res, &p))
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row || !api_session_local_or_fail(req, res, row, "seek and moments"))
        return;
    struct fs_snapshot_row *s = NULL;
    if (!tl_pick(ctx, req, res, row, json_string_value(jid), seq, ts, &s))
        return;
    AH_AUTOFREE char *path = tl_view_path(ctx, row->id, s->id);
    int rc = path ? want_view(ctx, row->id, s->id, path) : AH_E_NOMEM;
    if (rc < 0) {
        fs_snapshot_rows_free(s, 1);
        if (rc == AH_E_UNAVAIL)
            http_header_add(req, res, "Retry-After", "1");
        http_error(req, res, rc, rc == AH_E_UNAVAIL ? "other views are being made; retry shortly"
                                                    : "cannot make the view: %s",
                   ah_strerror(rc));
        return;
    }
    if (rc == 1)
        lru_touch(path);
    else
        http_header_add(req, res, "Retry-After", "1");
    double at = jts ? ts : tl_offset(row, s->ts);
    json_t *o = json_pack("{s:s, s:f, s:s, s:I, s:s, s:b, s:s}", "status",
                          rc == 1 ? "ready" : "preparing", "seekTime", at, "fsSnapshotId", s->id,
                          "seq", (json_int_t)s->seq, "mountPath", path, "playerPaused",
                          pause ? json_is_true(pause) : true, "workspaceView", "readonly");
    fs_snapshot_rows_free(s, 1);
    http_json(req, res, rc == 1 ? 200 : 202, o);
}

static void post_seek_idem(struct http_request *req, struct http_response *res) {
    api_idempotent(req, res, post_seek);
}

int api_timeline_seek_register(struct router *r, struct api_ctx *ctx) {
    return router_add(r, "POST", "/api/v1/sessions/{id}/seek", post_seek_idem, ctx, 0, 0);
}
