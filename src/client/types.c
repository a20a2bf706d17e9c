/*
 * types.c — the result structs of <ah/client.h> built from JSON, their destructors, session
 * status names, and the create-task body built from a struct ah_task_spec.
 *
 * Every result keeps a reference to the parsed JSON it came from (an "owner" behind priv_), and
 * its string members point into that JSON, so a result is one parse plus a few small arrays.
 * The owner holds everything else a result has made too (joined prompts, the array of a list or
 * of a session's recent events, and the results in it), so every destructor is owner_free and
 * free, and a builder that fails part way frees what it made the same way.
 * Parsing is lenient: a member of the wrong type is treated as absent, and where the upstream
 * Rust server spells a member differently (snake_case, `timestamp`, bare arrays instead of
 * envelopes; API.md Δ notes) that spelling is accepted too. Only a body that is not the JSON
 * kind expected at all (an object, or an array for lists) is AH_E_PROTOCOL.
 */
#include <string.h>

#include "client_internal.h"

/* ---- session status ---------------------------------------------------------------------------
 */

static const char *const status_names[] = {
    "unknown",  "queued",   "provisioning", "running",   "pausing", "paused",
    "resuming", "stopping", "stopped",      "completed", "failed",  "cancelled",
};

const char *ah_session_status_name(enum ah_session_status s) {
    if ((int)s < 0 || (size_t)s >= sizeof(status_names) / sizeof(status_names[0]))
        return "unknown";
    return status_names[s];
}

enum ah_session_status ah_session_status_parse(const char *s) {
    if (!s)
        return AH_STATUS_UNKNOWN;
    for (size_t i = 1; i < sizeof(status_names) / sizeof(status_names[0]); i++)
        if (strcmp(status_names[i], s) == 0)
            return (enum ah_session_status)i;
    return AH_STATUS_UNKNOWN;
}

bool ah_session_status_terminal(enum ah_session_status s) {
    return s == AH_STATUS_STOPPED || s == AH_STATUS_COMPLETED || s == AH_STATUS_FAILED ||
           s == AH_STATUS_CANCELLED;
}

/* ---- results held in an owner's array ---------------------------------------------------------
 */

/* The results a list (or a session's recent events) is made of. Their builders and destructors
 * are typed, so one switch each reaches them from the untyped array of an owner. */
enum item_kind { ITEM_NONE, ITEM_EVENT, ITEM_SESSION, ITEM_DRAFT, ITEM_REPO };

/* Each slot of such an array is a pointer to a result's struct; all of those have one size and
 * representation (C11 6.2.5), so this size serves every kind. */
#define ITEM_SLOT sizeof(struct ah_event *)

static int repo_from_json_t(json_t *j, struct ah_repo **ret);
static void repo_free(struct ah_repo *r);

/* Builds the result of kind k from the object j into slot i of arr. */
static int item_make(enum item_kind k, json_t *j, void *arr, size_t i) {
    switch (k) {
    case ITEM_EVENT: return event_from_json_t(j, (struct ah_event **)arr + i);
    case ITEM_SESSION: return session_from_json_t(j, (struct ah_session **)arr + i);
    case ITEM_DRAFT: return draft_from_json_t(j, (struct ah_draft **)arr + i);
    case ITEM_REPO: return repo_from_json_t(j, (struct ah_repo **)arr + i);
    case ITEM_NONE: break;
    }
    return AH_E_INVAL; /* our bug: ITEM_NONE has no results to make */
}

static void item_free(enum item_kind k, void *arr, size_t i) {
    switch (k) {
    case ITEM_EVENT: ah_event_free(((struct ah_event **)arr)[i]); break;
    case ITEM_SESSION: ah_session_free(((struct ah_session **)arr)[i]); break;
    case ITEM_DRAFT: ah_draft_free(((struct ah_draft **)arr)[i]); break;
    case ITEM_REPO: repo_free(((struct ah_repo **)arr)[i]); break;
    case ITEM_NONE: break;
    }
}

/* ---- the owner of a result's memory -----------------------------------------------------------
 */

#define OWNER_EXTRA 4

struct owner {
    json_t *root;
    char *text;               /* compact JSON of root */
    char *extra[OWNER_EXTRA]; /* strings computed while parsing (joined prompts) */
    size_t n_extra;
    void *arr;           /* one array: of pointers or structs into root, or of results */
    enum item_kind kind; /* the results in arr (ITEM_NONE: it holds none) */
    size_t n_items;      /* how many of them were made so far; owner_free frees those */
    bool oom;            /* a computed string could not be made */
};

static struct owner *owner_new(json_t *j) {
    struct owner *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!o->text) {
        free(o);
        return NULL;
    }
    o->root = json_incref(j);
    return o;
}

static void owner_free(struct owner *o) {
    if (!o)
        return;
    for (size_t i = 0; i < o->n_items; i++)
        item_free(o->kind, o->arr, i);
    json_decref(o->root);
    free(o->text);
    for (size_t i = 0; i < o->n_extra; i++)
        free(o->extra[i]);
    free(o->arr);
    free(o);
}

/* Keeps s alive as long as o; returns s, or NULL (and frees s) when there is no room. */
static const char *owner_keep(struct owner *o, char *s) {
    if (!s)
        return NULL;
    if (o->n_extra == OWNER_EXTRA) {
        free(s);
        return NULL;
    }
    o->extra[o->n_extra++] = s;
    return s;
}

/* Makes a result of kind k from each object of arr (other values are skipped) into o->arr,
 * counting them in o->n_items as they are made, so owner_free frees them whatever happens. */
static int owner_items(struct owner *o, const json_t *arr, enum item_kind k) {
    size_t n = json_array_size(arr);
    if (n == 0)
        return 0;
    if (!(o->arr = calloc(n, ITEM_SLOT)))
        return AH_E_NOMEM;
    o->kind = k;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        if (!json_is_object(e))
            continue;
        int rc = item_make(k, e, o->arr, o->n_items);
        if (rc < 0)
            return rc;
        o->n_items++;
    }
    return 0;
}

/* A zeroed result of `size` bytes and its owner, which keeps j; NULL on OOM (nothing kept, *ret_o
 * untouched). The caller points the result's priv_ at the owner and its json at o->text. */
static void *result_new(size_t size, json_t *j, struct owner **ret_o) {
    void *r = calloc(1, size);
    struct owner *o = r ? owner_new(j) : NULL;
    if (!o) {
        free(r);
        return NULL;
    }
    *ret_o = o;
    return r;
}

json_t *json_parse_text(const char *text, size_t len, int *ret_err) {
    json_error_t err;
    json_t *j = text ? json_loadb(text, len, JSON_DECODE_ANY, &err) : NULL;
    /* jansson reports most allocation failures as json_error_out_of_memory, but a failure
     * while setting up its lexer leaves the error empty; real syntax errors always say why. */
    if (!j && ret_err)
        *ret_err = text && (json_error_code(&err) == json_error_out_of_memory || !err.text[0])
                       ? AH_E_NOMEM
                       : AH_E_PROTOCOL;
    return j;
}

/* The text given to a public ah_*_from_json, parsed for its *_from_json_t; NULL with *ret_err set
 * when the text or the result pointer is missing (AH_E_INVAL) or the text is not JSON. */
static json_t *text_arg(const char *json, const void *ret, int *ret_err) {
    if (!json || !ret) {
        *ret_err = AH_E_INVAL;
        return NULL;
    }
    return json_parse_text(json, strlen(json), ret_err);
}

/* ---- member access ----------------------------------------------------------------------------
 */

static const char *str(const json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

/* The first of two spellings that is present as a string. */
static const char *str2(const json_t *o, const char *a, const char *b) {
    const char *s = str(o, a);
    return s ? s : str(o, b);
}

static int64_t int_or(const json_t *v, int64_t dflt) {
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return dflt;
}

/* A next-page value: an integer, a numeric string, or absent/null (0). */
static int64_t next_page_of(const json_t *v) {
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    const char *s = json_string_value(v);
    int64_t n = 0;
    if (s && parse_int64(s, 1, INT64_MAX, &n) == 0)
        return n;
    return 0;
}

/* A prompt as text: a string as is, content blocks joined (kept in o). */
static const char *prompt_of(struct owner *o, const json_t *v) {
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_array(v)) {
        const char *t = owner_keep(o, prompt_text(v));
        if (!t)
            o->oom = true;
        return t;
    }
    return NULL;
}

/* ---- lists ------------------------------------------------------------------------------------
 */

/* The item array of a list answer: the object's `items` (or `key`), or the bare array. */
static json_t *items_of(json_t *j, const char *key) {
    if (json_is_array(j))
        return j;
    json_t *a = json_object_get(j, "items");
    if (!json_is_array(a) && key)
        a = json_object_get(j, key);
    return json_is_array(a) ? a : NULL;
}

/* A list answer: a zeroed list of `size` bytes and its owner, which keeps j and holds the
 * results of kind k made from j's item array (items_of(j, key)) in o->arr, o->n_items of them.
 * NULL with *ret_err set on failure (nothing kept): AH_E_PROTOCOL when j has no item array. */
static void *list_new(size_t size, json_t *j, const char *key, enum item_kind k,
                      struct owner **ret_o, int *ret_err) {
    json_t *arr = items_of(j, key);
    if (!arr) {
        *ret_err = AH_E_PROTOCOL;
        return NULL;
    }
    struct owner *o = NULL;
    void *l = result_new(size, j, &o);
    int rc = l ? owner_items(o, arr, k) : AH_E_NOMEM;
    if (rc < 0) {
        owner_free(o);
        free(l);
        *ret_err = rc;
        return NULL;
    }
    *ret_o = o;
    return l;
}

static void page_fields(const json_t *j, int64_t *page, int64_t *per_page, int64_t *total,
                        int64_t *next_page) {
    *page = int_or(json_object_get(j, "page"), -1);
    *per_page = int_or(json_object_get(j, "perPage"), -1);
    *total = int_or(json_object_get(j, "total"), -1);
    *next_page = next_page_of(json_object_get(j, "nextPage"));
}

/* ---- the glue every result type has ----------------------------------------------------------
 */

/* The destructor of a public result: everything it made is in its owner. */
#define RESULT_FREE(name)                                                                         \
    void ah_##name##_free(struct ah_##name *x) {                                                  \
        if (!x)                                                                                   \
            return;                                                                               \
        owner_free(x->priv_);                                                                     \
        free(x);                                                                                  \
    }

/* ah_NAME_from_json(): parse the text, then build with NAME_from_json_t. */
#define RESULT_FROM_TEXT(name)                                                                    \
    int ah_##name##_from_json(const char *json, struct ah_##name **ret) {                         \
        int rc = AH_E_PROTOCOL;                                                                   \
        AH_AUTO(json_decrefp) json_t *j = text_arg(json, ret, &rc);                               \
        return j ? name##_from_json_t(j, ret) : rc;                                               \
    }

/* NAME_list_from_json_t(): the items under `key` (or a bare array), built as results of `kind`;
 * PAGED lists also carry the D6 page fields. */
#define PAGED(l, j) page_fields(j, &(l)->page, &(l)->per_page, &(l)->total, &(l)->next_page)
#define UNPAGED(l, j) ((void)0)
#define RESULT_LIST(name, key, kind, paging)                                                      \
    int name##_list_from_json_t(json_t *j, struct ah_##name##_list **ret) {                       \
        struct owner *o;                                                                          \
        int rc = AH_E_PROTOCOL;                                                                   \
        struct ah_##name##_list *l = list_new(sizeof(*l), j, key, kind, &o, &rc);                 \
        if (!l)                                                                                   \
            return rc;                                                                            \
        l->priv_ = o;                                                                             \
        l->json = o->text;                                                                        \
        l->items = o->arr;                                                                        \
        l->n_items = o->n_items;                                                                  \
        paging(l, j);                                                                             \
        *ret = l;                                                                                 \
        return 0;                                                                                 \
    }

/* ---- events -----------------------------------------------------------------------------------
 */

static void event_fill(struct ah_event *ev, const json_t *j) {
    ev->seq = int_or(json_object_get(j, "seq"), 0);
    ev->type = str(j, "type");
    if (!ev->type)
        ev->type = "";
    ev->session_id = str2(j, "sessionId", "session_id");
    ev->ts = str2(j, "ts", "timestamp");
    if (strcmp(ev->type, "status") == 0)
        ev->status = ah_session_status_parse(str(j, "status"));
    ev->level = str(j, "level");
    ev->message = str(j, "message");
    if (!ev->message && strcmp(ev->type, "thought") == 0)
        ev->message = str(j, "thought");
}

int event_from_json_t(json_t *j, struct ah_event **ret) {
    if (!json_is_object(j))
        return AH_E_PROTOCOL;
    struct owner *o;
    struct ah_event *ev = result_new(sizeof(*ev), j, &o);
    if (!ev)
        return AH_E_NOMEM;
    ev->priv_ = o;
    event_fill(ev, o->root);
    ev->json = o->text;
    *ret = ev;
    return 0;
}

RESULT_FREE(event)

RESULT_FROM_TEXT(event)

RESULT_LIST(event, "events", ITEM_EVENT, PAGED)

RESULT_FREE(event_list)

RESULT_FROM_TEXT(event_list)

/* ---- sessions ---------------------------------------------------------------------------------
 */

int session_from_json_t(json_t *j, struct ah_session **ret) {
    if (!json_is_object(j))
        return AH_E_PROTOCOL;
    struct owner *o;
    struct ah_session *s = result_new(sizeof(*s), j, &o);
    if (!s)
        return AH_E_NOMEM;
    s->priv_ = o;
    s->json = o->text;
    j = o->root;
    s->id = str(j, "id");
    s->task_id = str2(j, "taskId", "task_id");
    s->tenant_id = str2(j, "tenantId", "tenant_id");
    s->project_id = str2(j, "projectId", "project_id");
    s->status_name = str(j, "status");
    s->status = ah_session_status_parse(s->status_name);
    s->prompt = prompt_of(o, json_object_get(j, "prompt"));
    if (!s->prompt) /* R nests it: task {prompt} */
        s->prompt = prompt_of(o, json_object_get(json_object_get(j, "task"), "prompt"));
    const json_t *repo = json_object_get(j, "repo");
    const json_t *vcs = json_object_get(j, "vcs");
    s->repo_mode = str(repo, "mode");
    s->repo_url = str(repo, "url");
    if (!s->repo_url)
        s->repo_url = str2(vcs, "repoUrl", "repo_url");
    s->repo_branch = str(repo, "branch");
    if (!s->repo_branch)
        s->repo_branch = str(vcs, "branch");
    s->repo_commit = str(repo, "commit");
    if (!s->repo_commit)
        s->repo_commit = str(vcs, "commit");
    s->runtime_type = str(json_object_get(j, "runtime"), "type");
    s->runtime_sandbox = str(json_object_get(j, "runtime"), "sandbox");
    const json_t *agent = json_object_get(j, "agent");
    s->agent_type = str2(agent, "type", "software");
    s->agent_version = str(agent, "version");
    const json_t *delivery = json_object_get(j, "delivery");
    s->delivery_mode = str(delivery, "mode");
    s->target_branch = str2(delivery, "targetBranch", "target_branch");
    const json_t *ws = json_object_get(j, "workspace");
    s->snapshot_provider = str2(ws, "snapshotProvider", "snapshot_provider");
    s->mount_path = str2(ws, "mountPath", "mount_path");
    s->error = str(j, "error");
    const json_t *ec = json_object_get(j, "exitCode");
    if (!ec)
        ec = json_object_get(j, "exit_code");
    if (json_is_integer(ec)) {
        s->has_exit_code = true;
        s->exit_code = (int)json_integer_value(ec);
    }
    s->created_at = str2(j, "createdAt", "created_at");
    s->updated_at = str2(j, "updatedAt", "updated_at");
    s->started_at = str2(j, "startedAt", "started_at");
    s->ended_at = str2(j, "endedAt", "ended_at");
    if (!s->ended_at)
        s->ended_at = str(j, "completedAt");
    const json_t *links = json_object_get(j, "links");
    s->link_self = str(links, "self");
    s->link_events = str(links, "events");
    s->link_logs = str(links, "logs");
    s->link_pty = str(links, "pty");
    s->link_recording = str(links, "recording");
    const json_t *changes = json_object_get(j, "changes");
    if (json_is_object(changes)) {
        s->has_changes = true;
        s->files_changed = int_or(json_object_get(changes, "files_changed"), 0);
        s->lines_added = int_or(json_object_get(changes, "lines_added"), 0);
        s->lines_removed = int_or(json_object_get(changes, "lines_removed"), 0);
    }
    const json_t *recent = json_object_get(j, "recent_events");
    if (!recent)
        recent = json_object_get(j, "recentEvents");
    int rc = o->oom ? AH_E_NOMEM : owner_items(o, recent, ITEM_EVENT);
    if (rc < 0) {
        ah_session_free(s);
        return rc;
    }
    s->recent_events = o->arr;
    s->n_recent_events = o->n_items;
    *ret = s;
    return 0;
}

RESULT_FREE(session)

RESULT_FROM_TEXT(session)

RESULT_LIST(session, "sessions", ITEM_SESSION, PAGED)

RESULT_FREE(session_list)

RESULT_FROM_TEXT(session_list)

/* ---- task created -----------------------------------------------------------------------------
 */

int task_created_from_json_t(json_t *j, struct ah_task_created **ret) {
    if (!json_is_object(j))
        return AH_E_PROTOCOL;
    struct owner *o;
    struct ah_task_created *t = result_new(sizeof(*t), j, &o);
    if (!t)
        return AH_E_NOMEM;
    t->priv_ = o;
    t->json = o->text;
    j = o->root;
    t->id = str(j, "id");
    t->task_id = str2(j, "taskId", "task_id");
    t->status = str(j, "status");
    const json_t *links = json_object_get(j, "links");
    t->link_self = str(links, "self");
    t->link_events = str(links, "events");
    t->link_logs = str(links, "logs");
    const json_t *ids = json_object_get(j, "session_ids");
    if (!ids)
        ids = json_object_get(j, "sessionIds");
    size_t n = json_array_size(ids);
    const char **arr = calloc(n + 1, sizeof(*arr));
    if (!arr) {
        ah_task_created_free(t);
        return AH_E_NOMEM;
    }
    o->arr = arr;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(ids, i));
        if (s)
            arr[t->n_session_ids++] = s;
    }
    if (!t->n_session_ids && t->id) /* the single-session form */
        arr[t->n_session_ids++] = t->id;
    if (!t->id && t->n_session_ids)
        t->id = arr[0];
    t->session_ids = arr;
    *ret = t;
    return 0;
}

RESULT_FREE(task_created)

RESULT_FROM_TEXT(task_created)

/* ---- drafts -----------------------------------------------------------------------------------
 */

int draft_from_json_t(json_t *j, struct ah_draft **ret) {
    if (!json_is_object(j))
        return AH_E_PROTOCOL;
    struct owner *o;
    struct ah_draft *d = result_new(sizeof(*d), j, &o);
    if (!d)
        return AH_E_NOMEM;
    d->priv_ = o;
    d->json = o->text;
    j = o->root;
    d->id = str(j, "id");
    d->prompt = prompt_of(o, json_object_get(j, "prompt"));
    const json_t *repo = json_object_get(j, "repo");
    d->repo_url = str(repo, "url");
    d->repo_branch = str(repo, "branch");
    d->agent_type = str(json_object_get(j, "agent"), "type");
    if (!d->agent_type) /* S lists `agents` in the body but `agent` in list items */
        d->agent_type = str(json_array_get(json_object_get(j, "agents"), 0), "type");
    d->created_at = str2(j, "createdAt", "created_at");
    d->updated_at = str2(j, "updatedAt", "updated_at");
    if (o->oom) {
        ah_draft_free(d);
        return AH_E_NOMEM;
    }
    *ret = d;
    return 0;
}

RESULT_FREE(draft)

RESULT_FROM_TEXT(draft)

RESULT_LIST(draft, "drafts", ITEM_DRAFT, UNPAGED)

RESULT_FREE(draft_list)

RESULT_FROM_TEXT(draft_list)

/* ---- repositories and branches ----------------------------------------------------------------
 */

static void repo_free(struct ah_repo *r) {
    if (!r)
        return;
    owner_free(r->priv_);
    free(r);
}

/* Only ever an item of a list, so j is an object. */
static int repo_from_json_t(json_t *j, struct ah_repo **ret) {
    struct owner *o;
    struct ah_repo *r = result_new(sizeof(*r), j, &o);
    if (!r)
        return AH_E_NOMEM;
    r->priv_ = o;
    r->json = o->text;
    j = o->root;
    r->id = str(j, "id");
    r->display_name = str2(j, "displayName", "display_name");
    r->scm_provider = str2(j, "scmProvider", "scm_provider");
    r->remote_url = str2(j, "remoteUrl", "remote_url");
    r->default_branch = str2(j, "defaultBranch", "default_branch");
    r->last_used_at = str2(j, "lastUsedAt", "last_used_at");
    *ret = r;
    return 0;
}

RESULT_LIST(repo, "repositories", ITEM_REPO, UNPAGED)

RESULT_FREE(repo_list)

RESULT_FROM_TEXT(repo_list)

/* Branches are structs in the owner's array (not results of their own), and may be bare names. */
int branch_list_from_json_t(json_t *j, struct ah_branch_list **ret) {
    json_t *arr = items_of(j, "branches");
    if (!arr)
        return AH_E_PROTOCOL;
    struct owner *o;
    struct ah_branch_list *l = result_new(sizeof(*l), j, &o);
    if (!l)
        return AH_E_NOMEM;
    l->priv_ = o;
    l->json = o->text;
    l->repository_id = str2(j, "repositoryId", "repository_id");
    size_t n = json_array_size(arr);
    if (n && !(l->items = o->arr = calloc(n, sizeof(*l->items)))) {
        ah_branch_list_free(l);
        return AH_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        struct ah_branch *b = &l->items[l->n_items];
        if (json_is_string(e)) {
            b->name = json_string_value(e);
        } else if (json_is_object(e) && str(e, "name")) {
            b->name = str(e, "name");
            json_t *d = json_object_get(e, "is_default");
            if (!d)
                d = json_object_get(e, "isDefault");
            b->is_default = json_is_true(d);
            b->last_commit = str2(e, "last_commit", "lastCommit");
        } else {
            continue;
        }
        l->n_items++;
    }
    *ret = l;
    return 0;
}

RESULT_FREE(branch_list)

RESULT_FROM_TEXT(branch_list)

/* ---- small answers ----------------------------------------------------------------------------
 */

int version_from_json_t(json_t *j, struct ah_version **ret) {
    if (!json_is_object(j))
        return AH_E_PROTOCOL;
    struct owner *o;
    struct ah_version *v = result_new(sizeof(*v), j, &o);
    if (!v)
        return AH_E_NOMEM;
    v->priv_ = o;
    v->json = o->text;
    const json_t *bi = json_object_get(o->root, "build_info");
    if (!bi)
        bi = json_object_get(o->root, "buildInfo");
    v->version = str(o->root, "version");
    v->git_commit = str2(bi, "git_commit", "gitCommit");
    v->build_date = str2(bi, "build_date", "buildDate");
    *ret = v;
    return 0;
}

RESULT_FREE(version)

int prompt_ack_from_json_t(json_t *j, struct ah_prompt_ack **ret) {
    if (!json_is_object(j))
        return AH_E_PROTOCOL;
    struct owner *o;
    struct ah_prompt_ack *a = result_new(sizeof(*a), j, &o);
    if (!a)
        return AH_E_NOMEM;
    a->priv_ = o;
    a->json = o->text;
    a->session_id = str2(o->root, "sessionId", "session_id");
    json_t *acc = json_object_get(o->root, "accepted");
    a->accepted = acc ? json_is_true(acc) : true;
    a->ts = str2(o->root, "ts", "timestamp");
    *ret = a;
    return 0;
}

RESULT_FREE(prompt_ack)

/* ---- the create-task body ---------------------------------------------------------------------
 */

static int set_str(json_t *o, const char *key, const char *v) {
    if (!v)
        return 0;
    return json_object_set_new(o, key, json_string(v)) < 0 ? AH_E_NOMEM : 0;
}

static int invalid(struct ah_api_error *e, const char *field, const char *msg) {
    if (e) {
        problem_local(e, AH_E_INVAL, "%s %s", field, msg);
        e->status = 0;
        problem_add_field(e, field, msg);
    }
    return AH_E_INVAL;
}

json_t *task_spec_json(const struct ah_task_spec *spec, bool partial, struct ah_api_error *reterr,
                       int *ret_code) {
    int rc = 0;
    char path[64];
    json_t *b = json_object();
    if (!b) {
        *ret_code = AH_E_NOMEM;
        return NULL;
    }
    if (!spec) {
        rc = invalid(reterr, "spec", "is required");
        goto fail;
    }
    if (!partial && !spec->prompt) {
        rc = invalid(reterr, "prompt", "is required");
        goto fail;
    }
    if ((spec->n_agents && !spec->agents) || (spec->n_labels && !spec->labels) ||
        (spec->n_snapshot_preference && !spec->snapshot_preference)) {
        rc = invalid(reterr, "spec", "has a count without its array");
        goto fail;
    }
    rc |= set_str(b, "tenantId", spec->tenant_id);
    rc |= set_str(b, "projectId", spec->project_id);
    rc |= set_str(b, "prompt", spec->prompt);

    bool has_repo = spec->repo_mode || spec->repo_url || spec->repo_branch || spec->repo_commit;
    if (!partial || has_repo) {
        json_t *repo = json_object();
        if (!repo || json_object_set_new(b, "repo", repo) < 0) {
            rc = AH_E_NOMEM;
            goto fail;
        }
        /* A draft without a mode or URL says nothing about the mode. */
        const char *mode = spec->repo_mode  ? spec->repo_mode
                           : spec->repo_url ? "git"
                           : partial        ? NULL
                                            : "none";
        rc |= set_str(repo, "mode", mode);
        rc |= set_str(repo, "url", spec->repo_url);
        rc |= set_str(repo, "branch", spec->repo_branch);
        rc |= set_str(repo, "commit", spec->repo_commit);
    }
    bool has_runtime =
        spec->runtime_type || spec->devcontainer_path || spec->sandbox || spec->cpu ||
        spec->memory_mib;
    if (!partial || has_runtime) {
        json_t *rt = json_object();
        if (!rt || json_object_set_new(b, "runtime", rt) < 0) {
            rc = AH_E_NOMEM;
            goto fail;
        }
        rc |= set_str(rt, "type", spec->runtime_type ? spec->runtime_type : "local");
        rc |= set_str(rt, "devcontainerPath", spec->devcontainer_path);
        rc |= set_str(rt, "sandbox", spec->sandbox);
        if (spec->cpu || spec->memory_mib) {
            json_t *res = json_pack("{s:I, s:I}", "cpu", (json_int_t)spec->cpu, "memoryMiB",
                                    (json_int_t)spec->memory_mib);
            if (!res || json_object_set_new(rt, "resources", res) < 0)
                rc = AH_E_NOMEM;
        }
    }
    if (spec->n_snapshot_preference || spec->execution_host_id) {
        json_t *ws = json_object();
        if (!ws || json_object_set_new(b, "workspace", ws) < 0) {
            rc = AH_E_NOMEM;
            goto fail;
        }
        if (spec->n_snapshot_preference) {
            json_t *prefs = json_array();
            if (!prefs || json_object_set_new(ws, "snapshotPreference", prefs) < 0) {
                rc = AH_E_NOMEM;
                goto fail;
            }
            for (size_t i = 0; i < spec->n_snapshot_preference; i++) {
                if (!spec->snapshot_preference[i]) {
                    snprintf(path, sizeof(path), "workspace.snapshotPreference[%zu]", i);
                    rc = invalid(reterr, path, "must not be NULL");
                    goto fail;
                }
                rc |= json_array_append_new(prefs, json_string(spec->snapshot_preference[i]));
            }
        }
        rc |= set_str(ws, "executionHostId", spec->execution_host_id);
    }
    if (spec->n_agents) {
        json_t *agents = json_array();
        if (!agents || json_object_set_new(b, "agents", agents) < 0) {
            rc = AH_E_NOMEM;
            goto fail;
        }
        for (size_t i = 0; i < spec->n_agents; i++) {
            const struct ah_agent_spec *a = &spec->agents[i];
            if (!a->type) {
                snprintf(path, sizeof(path), "agents[%zu].type", i);
                rc = invalid(reterr, path, "is required");
                goto fail;
            }
            json_t *aj = json_object();
            if (!aj || json_array_append_new(agents, aj) < 0) {
                rc = AH_E_NOMEM;
                goto fail;
            }
            rc |= set_str(aj, "type", a->type);
            rc |= set_str(aj, "version", a->version);
            if (a->count)
                rc |= json_object_set_new(aj, "count", json_integer(a->count)) < 0;
            if (a->settings_json) {
                json_t *st = json_loads(a->settings_json, 0, NULL);
                if (!json_is_object(st)) {
                    json_decref(st);
                    snprintf(path, sizeof(path), "agents[%zu].settings", i);
                    rc = invalid(reterr, path, "must be a JSON object");
                    goto fail;
                }
                rc |= json_object_set_new(aj, "settings", st) < 0;
            }
        }
    }
    if (spec->delivery_mode || spec->target_branch) {
        json_t *d = json_object();
        if (!d || json_object_set_new(b, "delivery", d) < 0) {
            rc = AH_E_NOMEM;
            goto fail;
        }
        rc |= set_str(d, "mode", spec->delivery_mode);
        rc |= set_str(d, "targetBranch", spec->target_branch);
    }
    if (spec->n_labels) {
        json_t *labels = json_object();
        if (!labels || json_object_set_new(b, "labels", labels) < 0) {
            rc = AH_E_NOMEM;
            goto fail;
        }
        for (size_t i = 0; i < spec->n_labels; i++) {
            if (!spec->labels[i].key || !spec->labels[i].value) {
                snprintf(path, sizeof(path), "labels[%zu]", i);
                rc = invalid(reterr, path, "needs a key and a value");
                goto fail;
            }
            rc |= set_str(labels, spec->labels[i].key, spec->labels[i].value);
        }
    }
    if (rc) {
        rc = AH_E_NOMEM;
        problem_local(reterr, AH_E_NOMEM, "out of memory building the request body");
        goto fail;
    }
    return b;
fail:
    json_decref(b);
    *ret_code = rc < 0 ? rc : AH_E_NOMEM;
    return NULL;
}

int ah_task_spec_to_json(const struct ah_task_spec *spec, bool partial, char **ret,
                         struct ah_api_error *reterr) {
    if (!ret)
        return AH_E_INVAL;
    int rc = 0;
    json_t *b = task_spec_json(spec, partial, reterr, &rc);
    if (!b)
        return rc;
    char *s = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (!s)
        return AH_E_NOMEM;
    *ret = s;
    return 0;
}
