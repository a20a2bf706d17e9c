/*
 * projects.c — the rest of the catalog (API.md §7.11–§7.13, §7.3; issue 15 item 5): GET /projects,
 * GET /workspaces and /workspaces/{id}, GET /sessions/{id}/info, GET /schemas/agents/{type}.json
 * (and the settings check at task creation that uses the same schemas), GET /git/refs?url=.
 *
 * Everything here is read from the store or from memory, never from the network on an HTTP
 * thread: refs come from the git cache's background ls-remote (exec/refs.c); a workspace's size
 * is measured by a bounded walk (WS_WALK_MAX entries, then reported as "at least").
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../exec/catalog.h"
#include "../store/store.h"
#include "../workspace/workspace.h"
#include "routes.h"

#define WS_SCAN_MAX 2000   /* sessions looked at for GET /workspaces */
#define WS_WALK_MAX 20000  /* directory entries counted for a workspace's size */
#define SCENARIO_STEPS_MAX 1000

/* ---- projects -------------------------------------------------------------------------------- */

static void list_projects(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = api_tenant(req, res, NULL);
    if (!tenant)
        return;
    struct ah_problem p = {0};
    struct page pg = api_page(req, PAGE_DEFAULT_PER_PAGE, &p);
    if (http_fail(req, res, &p))
        return;
    struct project_row *rows = NULL;
    size_t n = 0;
    int64_t total = 0;
    int rc = store_project_list(ctx->store, tenant, &pg, &rows, &n, &total);
    if (rc < 0) {
        http_error(req, res, rc, "cannot list projects");
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; items && i < n; i++) {
        char ts[TIME_RFC3339_LEN + 1];
        time_format(rows[i].last_used_at, ts);
        json_array_append_new(items, json_pack("{s:s, s:s, s:s}", "id", rows[i].id, "displayName",
                                               rows[i].id, "lastUsedAt", ts));
    }
    project_rows_free(rows, n);
    http_json(req, res, 200, page_envelope(items, &pg, total));
}

/* ---- workspaces ------------------------------------------------------------------------------ */

/* Bytes under dir (not following links), counting at most *budget entries. */
static int64_t dir_bytes(int dfd, int *budget) {
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return 0;
    }
    int64_t total = 0;
    struct dirent *e;
    while (*budget > 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        (*budget)--;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        total += (int64_t)st.st_blocks * 512;
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                total += dir_bytes(sub, budget);
        }
    }
    closedir(d);
    return total;
}

static json_t *human_size(const char *path) {
    int fd = path ? open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0)
        return json_null();
    int budget = WS_WALK_MAX;
    int64_t b = dir_bytes(fd, &budget);
    char s[48];
    const char *at_least = budget <= 0 ? "≥ " : "";
    if (b >= 1024LL * 1024 * 1024)
        snprintf(s, sizeof(s), "%s%.1f GiB", at_least, (double)b / (1024.0 * 1024 * 1024));
    else if (b >= 1024 * 1024)
        snprintf(s, sizeof(s), "%s%.1f MiB", at_least, (double)b / (1024.0 * 1024));
    else
        snprintf(s, sizeof(s), "%s%.1f KiB", at_least, (double)b / 1024.0);
    return json_string(s);
}

static json_t *age(int64_t since) {
    int64_t s = (time_now_ms() - since) / 1000;
    char out[32];
    if (s < 0)
        s = 0;
    if (s < 3600)
        snprintf(out, sizeof(out), "%lldm", (long long)(s / 60));
    else if (s < 86400)
        snprintf(out, sizeof(out), "%lldh", (long long)(s / 3600));
    else
        snprintf(out, sizeof(out), "%lldd", (long long)(s / 86400));
    return json_string(out);
}

/* A session's workspace: "active" while the session lives, "retained" after while its directory
 * is there, "removed" once cleaned up. */
static json_t *workspace_json(struct session_row *r, bool detail) {
    struct stat st;
    bool there = r->workspace_path && stat(r->workspace_path, &st) == 0;
    const char *status = !session_status_terminal(r->status) ? "active"
                         : there                             ? "retained"
                                                             : "removed";
    char id[ULID_LEN + 4], ts[TIME_RFC3339_LEN + 1];
    snprintf(id, sizeof(id), "ws-%s", r->id);
    time_format(r->updated_at, ts);
    json_t *w = json_pack("{s:s, s:s, s:s, s:o, s:s, s:o, s:[s], s:s, s:s}", "id", id, "status",
                          status, "executorId", "local", "age", age(r->created_at),
                          "lastActivity", ts, "storageUsed",
                          detail && there ? human_size(r->workspace_path) : json_null(),
                          "taskHistory", r->task_id, "sessionId", r->id, "provider",
                          r->workspace_provider ? r->workspace_provider : "");
    const char *url = json_string_value(
        json_object_get(json_object_get(session_row_request(r), "repo"), "url"));
    if (w && url) {
        AH_AUTOFREE char *shown = text_redact_userinfo(url); /* D29 */
        json_object_set_new(w, "repositoryUrls", json_pack("[s]", shown ? shown : ""));
    }
    return w;
}

static void list_workspaces(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = api_tenant(req, res, NULL);
    if (!tenant)
        return;
    struct ah_problem p = {0};
    struct page pg = api_page(req, PAGE_DEFAULT_PER_PAGE, &p);
    const char *want = http_query(req, "status");
    if (want && strcmp(want, "active") && strcmp(want, "retained") && strcmp(want, "removed"))
        problem_field(&p, "status", "must be active, retained or removed");
    if (http_fail(req, res, &p))
        return;
    json_t *all = json_array();
    struct session_filter f = {0};
    for (int64_t page = 1; all && page * 200 <= WS_SCAN_MAX; page++) {
        struct page spg = {page, 200};
        struct session_row **rows = NULL;
        size_t n = 0;
        int64_t total = 0;
        int rc = store_session_list(ctx->store, tenant, &f, &spg, &rows, &n, &total);
        if (rc < 0) {
            json_decref(all);
            http_error(req, res, rc, "cannot list workspaces");
            return;
        }
        for (size_t i = 0; i < n; i++) {
            if (!rows[i]->workspace_path)
                continue; /* never provisioned */
            json_t *w = workspace_json(rows[i], false);
            if (w && (!want || !strcmp(json_string_value(json_object_get(w, "status")), want)))
                json_array_append_new(all, w);
            else
                json_decref(w);
        }
        session_rows_free(rows, n);
        if (n < 200)
            break;
    }
    if (!all) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    int64_t total = (int64_t)json_array_size(all);
    json_t *items = json_array();
    for (int64_t i = page_offset(&pg); items && i < total && i < page_offset(&pg) + pg.per_page;
         i++)
        json_array_append(items, json_array_get(all, (size_t)i));
    json_decref(all);
    http_json(req, res, 200, page_envelope(items, &pg, total));
}

static void get_workspace(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *id = http_param(req, "id");
    const char *tenant = api_tenant(req, res, NULL);
    if (!tenant)
        return;
    AH_AUTO(session_row_freep) struct session_row *row = NULL;
    int rc = id && !strncmp(id, "ws-", 3) && ulid_valid(id + 3)
                 ? store_session_get(ctx->store, tenant, id + 3, &row)
                 : AH_E_NOTFOUND;
    if (rc == 0 && !row->workspace_path)
        rc = AH_E_NOTFOUND;
    if (rc < 0) {
        http_error(req, res, rc, rc == AH_E_NOTFOUND ? "no workspace %.64s" : "cannot read %.64s",
                   id ? id : "");
        return;
    }
    http_json(req, res, 200, workspace_json(row, true));
}

/* ---- a session's fleet summary --------------------------------------------------------------- */

static void get_info(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row)
        return;
    char events[128];
    snprintf(events, sizeof(events), "/api/v1/sessions/%s/events", row->id);
    /* this server runs every session itself: the local executor leads, nobody follows */
    http_json(req, res, 200,
              json_pack("{s:s, s:s, s:{s:s, s:[]}, s:{s:s}}", "id", row->id, "status",
                        session_status_name(row->status), "fleet", "leader", "local",
                        "followers", "endpoints", "events", events));
}

/* ---- agents' settings schemas ---------------------------------------------------------------- */

/* The JSON Schema of agents[].settings for a type (new reference); NULL for an unknown type. */
static json_t *settings_schema(struct api_ctx *ctx, const char *type) {
    if (!exec_agent_known(ctx->exec, type))
        return NULL;
    char id[256];
    snprintf(id, sizeof(id), "/api/v1/schemas/agents/%s.json", type);
    json_t *s = json_pack("{s:s, s:s, s:s, s:s, s:{s:{s:s, s:i, s:i, s:s}}, s:b}", "$schema",
                          "https://json-schema.org/draft/2020-12/schema", "$id", id, "title", type,
                          "type", "object", "properties", "model", "type", "string", "minLength",
                          1, "maxLength", AH_LIMIT_NAME, "description",
                          "The model the agent's CLI starts with (GET …/models lists them).",
                          "additionalProperties", 0);
    if (!s)
        return NULL;
    if (!strcmp(type, "scripted"))
        json_object_set_new(json_object_get(s, "properties"), "scenario",
                            json_pack("{s:s, s:i, s:{s:s}, s:s}", "type", "array", "maxItems",
                                      SCENARIO_STEPS_MAX, "items", "type", "object", "description",
                                      "The steps the scripted agent follows (thought, log, tool, "
                                      "edit, append, delete, rename, sleep, wait_prompt, say, "
                                      "usage, exit, "
                                      "fail)."));
    else if (!strcmp(type, "claude-code") || !strcmp(type, "codex")) /* issue 15 */
        json_object_set_new(json_object_get(s, "properties"), "chat_idle_seconds",
                            json_pack("{s:s, s:i, s:i, s:s}", "type", "integer", "minimum", 0,
                                      "maximum", 86400, "description",
                                      "After each turn, how long the session waits for the next "
                                      "chat message before it completes (default 0: it runs the "
                                      "messages sent during the turn, then completes)."));
    else if (ctx->catalog && agent_catalog_is_custom(ctx->catalog, type)) {
        /* a custom agent's command decides what it reads: anything goes */
        json_object_set_new(s, "additionalProperties", json_true());
    }
    return s;
}

int api_agent_settings_check(struct api_ctx *ctx, const char *type, const json_t *settings,
                             const char *path, struct ah_problem *p) {
    AH_AUTO(json_decrefp) json_t *schema = settings_schema(ctx, type);
    if (!schema || !settings)
        return 0; /* unknown types are reported by their own check */
    if (json_is_true(json_object_get(schema, "additionalProperties")))
        return 0;
    json_t *props = json_object_get(schema, "properties");
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach((json_t *)settings, key, v) {
        char f[160];
        snprintf(f, sizeof(f), "%s.%s", path, key);
        json_t *ps = json_object_get(props, key);
        const char *want = json_string_value(json_object_get(ps, "type"));
        if (!ps) {
            problem_field(p, f, "is not a setting of the %s agent (see /api/v1/schemas/agents/%s.json)",
                          type, type);
            rc = AH_E_INVAL;
        } else if (!strcmp(want, "string") &&
                   (!json_is_string(v) || !json_string_length(v) ||
                    json_string_length(v) > AH_LIMIT_NAME)) {
            problem_field(p, f, "must be a string of 1 to %d bytes", AH_LIMIT_NAME);
            rc = AH_E_INVAL;
        } else if (!strcmp(want, "array") && !json_is_array(v)) {
            problem_field(p, f, "must be an array");
            rc = AH_E_INVAL;
        } else if (!strcmp(want, "integer") &&
                   (!json_is_integer(v) ||
                    json_integer_value(v) < json_integer_value(json_object_get(ps, "minimum")) ||
                    json_integer_value(v) > json_integer_value(json_object_get(ps, "maximum")))) {
            problem_field(p, f, "must be an integer from %lld to %lld",
                          (long long)json_integer_value(json_object_get(ps, "minimum")),
                          (long long)json_integer_value(json_object_get(ps, "maximum")));
            rc = AH_E_INVAL;
        }
    }
    return rc;
}

static void get_schema(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *file = http_param(req, "file");
    size_t n = file ? strlen(file) : 0;
    char type[AH_LIMIT_NAME + 1];
    json_t *s = NULL;
    if (n > 5 && n - 5 <= AH_LIMIT_NAME && !strcmp(file + n - 5, ".json")) {
        snprintf(type, sizeof(type), "%.*s", (int)(n - 5), file);
        s = settings_schema(ctx, type);
    }
    if (!s) {
        http_error(req, res, AH_E_NOTFOUND, "no agent type %.64s on this server (GET /agents)",
                   file ? file : "");
        return;
    }
    res->content_type = "application/schema+json";
    http_json(req, res, 200, s);
    res->content_type = "application/schema+json";
}

/* ---- git refs -------------------------------------------------------------------------------- */

/* The branches of a repository this tenant's tasks have used, from the git cache (filled by a
 * background ls-remote; never waited for here). Other URLs are not fetched on request. */
static void get_refs(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *url = http_query(req, "url");
    struct ah_problem p = {0};
    if (!url || !*url || strlen(url) > AH_LIMIT_URL)
        problem_field(&p, "url", "is required: a repository URL of at most %d bytes",
                      AH_LIMIT_URL);
    if (http_fail(req, res, &p))
        return;
    const char *tenant = api_tenant(req, res, NULL);
    if (!tenant)
        return;
    struct repo_row *rows = NULL;
    size_t n = 0;
    int rc = store_repo_list(ctx->store, tenant, NULL, &rows, &n);
    if (rc < 0) {
        http_error(req, res, rc, "cannot list repositories");
        return;
    }
    bool known = false;
    for (size_t i = 0; i < n; i++) {
        AH_AUTOFREE char *shown = text_redact_userinfo(rows[i].url);
        known |= !strcmp(rows[i].url, url) || (shown && !strcmp(shown, url));
    }
    repo_rows_free(rows, n);
    if (!known) {
        http_error(req, res, AH_E_NOTFOUND,
                   "no task of this tenant uses that repository; its refs are not fetched on "
                   "request");
        return;
    }
    json_t *branches = NULL;
    rc = exec_repo_branches(ctx->exec, url, &branches);
    if (rc < 0) {
        http_error(req, res, AH_E_UNAVAIL, "the refs are %s; retry shortly",
                   rc == AH_E_BUSY ? "being fetched" : "not readable right now");
        http_header_add(req, res, "Retry-After", rc == AH_E_BUSY ? "1" : "5");
        return;
    }
    json_t *refs = json_array();
    size_t i;
    json_t *b;
    json_array_foreach(branches, i, b) {
        json_t *c = json_object_get(b, "last_commit");
        json_array_append_new(refs, json_pack("{s:O, s:s, s:O}", "name", json_object_get(b, "name"),
                                              "type", "branch", "commit", c ? c : json_null()));
    }
    json_decref(branches);
    AH_AUTOFREE char *shown = text_redact_userinfo(url);
    http_json(req, res, 200,
              json_pack("{s:s, s:o, s:n}", "url", shown ? shown : "", "refs", refs, "cachedAt"));
}

int api_projects_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/projects", list_projects, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/workspaces", list_workspaces, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/workspaces/{id}", get_workspace, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/info", get_info, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/schemas/agents/{file}", get_schema, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/git/refs", get_refs, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
