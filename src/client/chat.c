/*
 * chat.c — libah-client calls for a session's conversation and the catalog (API.md §7.7,
 * §7.11–§7.12; issue 15): the chat history, sending a message, the context window, the models,
 * and the projects/agents/repositories lists. Answers are handed over as the server's JSON text,
 * like timeline.c: the shapes are wide and mostly passed on.
 */
#include <jansson.h>
#include <string.h>

#include "client_internal.h"

static int bad(struct ah_api_error *reterr, const char *what) {
    problem_local(reterr, AH_E_INVAL, "%s", what);
    return AH_E_INVAL;
}

static int oom(struct ah_api_error *reterr) {
    problem_local(reterr, AH_E_NOMEM, "out of memory");
    return AH_E_NOMEM;
}

/* METHOD /api/v1/sessions/<id>/<what> with body (a JSON object, stolen; NULL: none). */
static int call(ah_client *c, const char *method, const char *id, const char *what,
                json_t *body, char **ret_json, struct ah_api_error *reterr) {
    struct ah_buf p = {.max = AH_LIMIT_URL};
    int rc = ah_buf_puts(&p, "/api/v1/sessions/") ?: ah_buf_url_escape(&p, id) ?:
             ah_buf_printf(&p, "/%s", what);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (rc == 0 && body && !text)
        rc = AH_E_NOMEM;
    if (rc < 0) {
        ah_buf_clear(&p);
        free(text);
        return oom(reterr);
    }
    rc = ah_client_request(c, method, p.p, text, NULL, ret_json, reterr);
    ah_buf_clear(&p);
    free(text);
    return rc;
}

int ah_client_chat_history(ah_client *c, const char *id, int limit, const char *before,
                           const char *after, char **ret_json, struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret_json || limit < 0 || limit > 200)
        return bad(reterr, "client, id and ret_json are required; limit is 0..200");
    struct ah_buf q = {.max = 1024};
    bool first = true;
    int rc = ah_buf_puts(&q, "chat");
    if (rc == 0 && limit)
        rc = ah_buf_query_add_int(&q, &first, "limit", limit);
    if (rc == 0 && before)
        rc = ah_buf_query_add(&q, &first, "before", before);
    if (rc == 0 && after)
        rc = ah_buf_query_add(&q, &first, "after", after);
    if (rc < 0) {
        ah_buf_clear(&q);
        return rc == AH_E_TOOLARGE ? bad(reterr, "before/after are too long") : oom(reterr);
    }
    rc = call(c, "GET", id, q.p, NULL, ret_json, reterr);
    ah_buf_clear(&q);
    return rc;
}

int ah_client_chat_send(ah_client *c, const char *id, const char *content, char **ret_json,
                        struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !content || !*content)
        return bad(reterr, "client, id and a non-empty content are required");
    json_t *body = json_pack("{s:s}", "content", content);
    if (!body)
        return oom(reterr);
    return call(c, "POST", id, "chat/messages", body, ret_json, reterr);
}

int ah_client_session_context(ah_client *c, const char *id, char **ret_json,
                              struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret_json)
        return bad(reterr, "client, id and ret_json are required");
    return call(c, "GET", id, "context", NULL, ret_json, reterr);
}

int ah_client_session_models(ah_client *c, const char *id, char **ret_json,
                             struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret_json)
        return bad(reterr, "client, id and ret_json are required");
    return call(c, "GET", id, "models", NULL, ret_json, reterr);
}

int ah_client_catalog(ah_client *c, const char *what, char **ret_json,
                      struct ah_api_error *reterr) {
    static const char *const known[] = {"projects", "agents", "repos", "runtimes", "executors",
                                        "workspaces", NULL};
    bool ok = false;
    for (const char *const *k = known; what && *k; k++)
        ok |= !strcmp(*k, what);
    if (!c || !ok || !ret_json)
        return bad(reterr, "client, ret_json and one of projects, agents, repos, runtimes, "
                           "executors, workspaces are required");
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/%s", what);
    return ah_client_request(c, "GET", path, NULL, NULL, ret_json, reterr);
}
