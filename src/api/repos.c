/*
 * repos.c — the repositories the tenant's tasks have used (API.md §7.12): GET /repos and, per
 * repository, its branches and tracked files from the git cache the git workspace provider
 * keeps (workspace/provider.c). A repository's id is stable: repo-<16 hex of SHA-256(url)>.
 */
#include <string.h>

#include "routes.h"

#define FILES_MAX 10000

/* The URL behind a repository id of this tenant; NULL after answering 404. Caller frees. */
static char *find_url(struct api_ctx *ctx, struct http_request *req, struct http_response *res) {
    const char *id = http_param(req, "id");
    const char *tenant = api_tenant(req, res, NULL);
    if (!tenant)
        return NULL;
    struct repo_row *rows = NULL;
    size_t n = 0;
    int rc = store_repo_list(ctx->store, tenant, NULL, &rows, &n);
    if (rc < 0) {
        http_error(req, res, rc, "cannot list repositories");
        return NULL;
    }
    char *url = NULL;
    for (size_t i = 0; i < n && !url; i++) {
        char rid[22];
        workspace_repo_id(rows[i].url, rid);
        if (id && strcmp(rid, id) == 0)
            url = AH_TAKE(rows[i].url);
    }
    repo_rows_free(rows, n);
    if (!url)
        http_error(req, res, AH_E_NOTFOUND, "no repository %.64s", id ? id : "");
    return url;
}

static json_t *repo_json(struct api_ctx *ctx, const struct repo_row *r) {
    char id[22], ts[TIME_RFC3339_LEN + 1];
    workspace_repo_id(r->url, id);
    time_format(r->last_used_at, ts);
    const char *slash = strrchr(r->url, '/');
    const char *colon = strrchr(r->url, ':');
    const char *base = slash ? slash + 1 : colon ? colon + 1 : r->url;
    size_t len = strlen(base);
    if (len > 4 && strcmp(base + len - 4, ".git") == 0)
        len -= 4;
    char name[256];
    snprintf(name, sizeof(name), "%.*s", (int)len, base);
    AH_AUTOFREE char *def = NULL;
    exec_repo_default_branch(ctx->exec, r->url, &def);
    AH_AUTOFREE char *shown = text_redact_userinfo(r->url); /* D29: git keeps the userinfo */
    if (!shown)
        return NULL;
    return json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s}", "id", id, "displayName",
                     name[0] ? name : shown, "scmProvider", "git", "remoteUrl", shown,
                     "defaultBranch", def, "lastUsedAt", ts);
}

static void list_repos(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    const char *tenant = ctx ? api_tenant(req, res, NULL) : NULL;
    if (!tenant)
        return;
    struct ah_problem p = {0};
    struct page pg = api_page(req, PAGE_DEFAULT_PER_PAGE, &p);
    if (http_fail(req, res, &p))
        return;
    struct repo_row *rows = NULL;
    size_t n = 0;
    int rc = store_repo_list(ctx->store, tenant, http_query(req, "projectId"), &rows, &n);
    if (rc < 0) {
        http_error(req, res, rc, "cannot list repositories");
        return;
    }
    json_t *items = json_array();
    for (size_t i = (size_t)page_offset(&pg); items && i < n && i < (size_t)(page_offset(&pg) +
                                                                             pg.per_page); i++) {
        json_t *j = repo_json(ctx, &rows[i]);
        if (!j || json_array_append_new(items, j) < 0) {
            json_decref(items);
            items = NULL;
        }
    }
    repo_rows_free(rows, n);
    http_json(req, res, 200, page_envelope(items, &pg, (int64_t)n));
}

static void get_branches(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    AH_AUTOFREE char *url = ctx ? find_url(ctx, req, res) : NULL;
    if (!url)
        return;
    json_t *branches = NULL;
    int rc = exec_repo_branches(ctx->exec, url, &branches); /* never waits on the network */
    if (rc < 0) {
        AH_AUTOFREE char *shown = text_redact_userinfo(url); /* D29 */
        if (rc == AH_E_BUSY)
            http_error(req, res, AH_E_UNAVAIL,
                       "the branches of %s are being fetched from the remote; retry shortly",
                       shown ? shown : "the repository");
        else
            http_error(req, res, AH_E_UNAVAIL, "cannot read the branches of %s right now: %s",
                       shown ? shown : "the repository",
                       rc == AH_E_TIMEOUT ? "the remote did not answer in time"
                                          : ah_strerror(rc));
        http_header_add(req, res, "Retry-After", rc == AH_E_BUSY ? "1" : "5");
        return;
    }
    http_json(req, res, 200,
              json_pack("{s:s, s:o}", "repositoryId", http_param(req, "id"), "branches", branches));
}

static void get_files(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    AH_AUTOFREE char *url = ctx ? find_url(ctx, req, res) : NULL;
    if (!url)
        return;
    json_t *files = NULL;
    int rc = exec_repo_files(ctx->exec, url, FILES_MAX, &files);
    if (rc == AH_E_NOTFOUND) /* known, but no session has fetched it yet */
        files = json_array();
    else if (rc < 0) {
        http_error(req, res, rc, "cannot list the files of %s", url);
        return;
    }
    http_json(req, res, 200,
              json_pack("{s:s, s:o}", "repositoryId", http_param(req, "id"), "files", files));
}

int api_repos_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/repos", list_repos, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/repositories/{id}/branches", get_branches, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/repositories/{id}/files", get_files, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
