/*
 * chat_context.c — a session's context window and models (API.md §7.7; D39, D40; issue 15
 * items 3 and 4): GET/PUT /sessions/{id}/context and GET /sessions/{id}/models.
 *
 * - Usage comes from the agent's own reports (`usage` events: Claude Code's result, each Codex
 *   turn): input_tokens/output_tokens are their totals; used_tokens is the last report's input
 *   plus output (what the model last had in its window) and, before any report, the tokens of
 *   the files in context.
 * - Files in context, enabled tools and the active model are the session's `context` events (the
 *   last one is the state; PUT records a new one), so they survive restarts like the chat.
 *   File tokens are counted with o200k_base (tokens.c) when a file is added.
 * - The model table is built in, per agent type, with the date it was written (prices in USD per
 *   million tokens, as the vendors list them then), and [models."ID"] in the config file
 *   overrides or adds entries (D40).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../exec/catalog.h"
#include "../os/os.h"
#include "../workspace/workspace.h"
#include "chat_int.h"

#define CONTEXT_BODY_MAX (64 * 1024)
#define CONTEXT_LIST_MAX 64
#define CONTEXT_FILES_MAX 256          /* files in context at once */
#define CONTEXT_FILE_MAX (5 * 1024 * 1024)
#define USAGE_SCAN_MAX 10000

#define MODELS_DATE "2025-11-01"

/* id, name, provider, context window, input and output USD per million tokens, capabilities */
static const char models_json[] =
    "{"
    "\"claude-code\": {\"default\": \"claude-sonnet-4-5\", \"models\": ["
    " [\"claude-sonnet-4-5\", \"Claude Sonnet 4.5\", \"anthropic\", 200000, 3.0, 15.0,"
    "  [\"function_calling\", \"vision\", \"code_execution\"]],"
    " [\"claude-opus-4-1\", \"Claude Opus 4.1\", \"anthropic\", 200000, 15.0, 75.0,"
    "  [\"function_calling\", \"vision\", \"code_execution\"]],"
    " [\"claude-haiku-4-5\", \"Claude Haiku 4.5\", \"anthropic\", 200000, 1.0, 5.0,"
    "  [\"function_calling\", \"vision\", \"code_execution\"]]],"
    " \"tools\": [\"Bash\", \"Edit\", \"Glob\", \"Grep\", \"MultiEdit\", \"NotebookEdit\", \"Read\","
    "  \"Task\", \"TodoWrite\", \"WebFetch\", \"WebSearch\", \"Write\"]},"
    "\"codex\": {\"default\": \"gpt-5-codex\", \"models\": ["
    " [\"gpt-5-codex\", \"GPT-5-Codex\", \"openai\", 400000, 1.25, 10.0,"
    "  [\"function_calling\", \"vision\", \"code_execution\"]],"
    " [\"gpt-5\", \"GPT-5\", \"openai\", 400000, 1.25, 10.0,"
    "  [\"function_calling\", \"vision\", \"code_execution\"]],"
    " [\"gpt-5-mini\", \"GPT-5 mini\", \"openai\", 400000, 0.25, 2.0,"
    "  [\"function_calling\", \"vision\", \"code_execution\"]]],"
    " \"tools\": [\"apply_patch\", \"shell\", \"update_plan\", \"web_search\"]},"
    "\"gemini\": {\"default\": \"gemini-2.5-pro\", \"models\": ["
    " [\"gemini-2.5-pro\", \"Gemini 2.5 Pro\", \"google\", 1048576, 1.25, 10.0,"
    "  [\"function_calling\", \"vision\", \"code_execution\"]],"
    " [\"gemini-2.5-flash\", \"Gemini 2.5 Flash\", \"google\", 1048576, 0.3, 2.5,"
    "  [\"function_calling\", \"vision\", \"code_execution\"]]],"
    " \"tools\": [\"glob\", \"google_web_search\", \"list_directory\", \"read_file\","
    "  \"read_many_files\", \"replace\", \"run_shell_command\", \"save_memory\","
    "  \"search_file_content\", \"web_fetch\", \"write_file\"]},"
    "\"opencode\": {\"default\": \"anthropic/claude-sonnet-4-5\", \"models\": ["
    " [\"anthropic/claude-sonnet-4-5\", \"Claude Sonnet 4.5\", \"anthropic\", 200000, 3.0, 15.0,"
    "  [\"function_calling\", \"vision\", \"code_execution\"]],"
    " [\"openai/gpt-5\", \"GPT-5\", \"openai\", 400000, 1.25, 10.0,"
    "  [\"function_calling\", \"vision\", \"code_execution\"]]],"
    " \"tools\": [\"bash\", \"edit\", \"glob\", \"grep\", \"list\", \"patch\", \"read\", \"task\","
    "  \"todowrite\", \"webfetch\", \"write\"]},"
    "\"scripted\": {\"default\": \"scripted\", \"models\": ["
    " [\"scripted\", \"Scripted scenario\", \"agent-harbor\", 128000, 0, 0, [\"function_calling\"]]],"
    " \"tools\": null}"
    "}";

/* The agents whose model changes between turns: claude-code and codex run their CLI once per
 * turn, resuming its own conversation with the model asked for (`--resume ID --model M`, `exec
 * -m M resume ID`; agent_start.c), so a model_override applies from the next turn on. Gemini and
 * opencode take theirs at launch (agents[].settings.model); the scripted agent has no model. */
static bool switches_model(const char *agent) {
    return !strcmp(agent, "claude-code") || !strcmp(agent, "codex");
}

/* The models of an agent type as GET …/models lists them (new reference), with config overrides. */
static json_t *models_for(struct api_ctx *ctx, const char *agent, const char **ret_default) {
    static json_t *table; /* parsed once; read-only after */
    if (!__atomic_load_n(&table, __ATOMIC_ACQUIRE)) {
        json_t *t = json_loads(models_json, 0, NULL);
        json_t *expect = NULL;
        if (!t || !__atomic_compare_exchange_n(&table, &expect, t, false, __ATOMIC_ACQ_REL,
                                               __ATOMIC_ACQUIRE))
            json_decref(t);
    }
    json_t *entry = json_object_get(table, agent);
    json_t *out = json_array();
    if (!out)
        return NULL;
    /* availability: the agent's CLI as the catalog found it (installed false: not on PATH) */
    const char *status = "available";
    AH_AUTO(json_decrefp) json_t *cat = ctx->catalog ? agent_catalog_items(ctx->catalog, "") : NULL;
    size_t ci;
    json_t *ce;
    json_array_foreach(cat, ci, ce) {
        if (!strcmp(json_string_value(json_object_get(ce, "type")), agent) &&
            json_is_false(json_object_get(ce, "installed")))
            status = "unavailable";
    }
    if (ret_default)
        *ret_default = json_string_value(json_object_get(entry, "default"));
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(entry, "models"), i, m) {
        json_array_append_new(
            out, json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:s}", "id", json_array_get(m, 0),
                           "name", json_array_get(m, 1), "provider", json_array_get(m, 2),
                           "context_window", json_array_get(m, 3), "input_pricing",
                           json_array_get(m, 4), "output_pricing", json_array_get(m, 5),
                           "capabilities", json_array_get(m, 6), "status", status));
    }
    const char *id;
    json_t *over;
    json_object_foreach((json_t *)exec_models(ctx->exec), id, over) {
        const char *for_agent = json_string_value(json_object_get(over, "agent"));
        json_t *found = NULL;
        json_array_foreach(out, i, m) {
            if (!strcmp(json_string_value(json_object_get(m, "id")), id))
                found = m;
        }
        if (!found && (!for_agent || strcmp(for_agent, agent)))
            continue; /* a new model belongs to the agent it names */
        if (!found) {
            found = json_pack("{s:s, s:s, s:s, s:i, s:f, s:f, s:[], s:s}", "id", id, "name", id,
                              "provider", "custom", "context_window", 128000, "input_pricing",
                              0.0, "output_pricing", 0.0, "capabilities", "status", status);
            if (!found || json_array_append_new(out, found) < 0)
                continue;
        }
        const char *k;
        json_t *v;
        json_object_foreach(over, k, v) {
            if (strcmp(k, "agent"))
                json_object_set(found, k, v);
        }
    }
    return out;
}

static json_t *model_find(json_t *models, const char *id) {
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m) {
        if (id && !strcmp(json_string_value(json_object_get(m, "id")), id))
            return m;
    }
    return NULL;
}

/* The tools an agent has: the table's, or for the scripted agent the tools its scenario uses.
 * NULL (new reference otherwise) when unknown (custom agents): then any name is taken. */
static json_t *tools_for(struct session_row *row) {
    json_t *table = json_loads(models_json, 0, NULL);
    json_t *t = json_object_get(json_object_get(table, row->agent_type), "tools");
    json_t *out = json_is_array(t) ? json_incref(t) : NULL;
    json_decref(table);
    if (out || strcmp(row->agent_type, "scripted"))
        return out;
    json_t *agents = json_object_get(session_row_request(row), "agents");
    json_t *scen = json_object_get(json_object_get(json_array_get(agents, (size_t)row->agent_index),
                                                   "settings"),
                                   "scenario");
    out = json_array();
    size_t i;
    json_t *step;
    json_array_foreach(scen, i, step) {
        json_t *name = json_object_get(step, "tool");
        bool seen = false;
        size_t j;
        json_t *s;
        json_array_foreach(out, j, s) seen |= json_equal(s, name);
        if (json_is_string(name) && !seen)
            json_array_append(out, name);
    }
    return out;
}

static bool has_string(const json_t *list, const char *s) {
    size_t i;
    json_t *v;
    json_array_foreach((json_t *)list, i, v) {
        if (!strcmp(json_string_value(v), s))
            return true;
    }
    return false;
}

/* The session's model: the last context event's, else agents[].settings.model, else the
 * table's default. */
static const char *launch_model(struct session_row *row, const char *def);

int chat_model_check(struct api_ctx *ctx, struct session_row *row, const char *model,
                     struct ah_problem *p) {
    if (switches_model(row->agent_type)) {
        AH_AUTO(json_decrefp) json_t *models = models_for(ctx, row->agent_type, NULL);
        if (model_find(models, model))
            return 1;
        problem_field(p, "model_override", "%s is not a model of the %s agent (GET …/models)",
                      model, row->agent_type);
        return AH_E_INVAL;
    }
    const char *at_launch = launch_model(row, NULL);
    if (!strcmp(row->agent_type, "scripted") || (at_launch && !strcmp(at_launch, model)))
        return 0;
    return problem_set(p, AH_E_UNSUPPORTED,
                       "the %s CLI takes its model when it starts; start a session with "
                       "agents[].settings.model = \"%s\"",
                       row->agent_type, model);
}

static const char *launch_model(struct session_row *row, const char *def) {
    json_t *agents = json_object_get(session_row_request(row), "agents");
    json_t *a = json_array_get(agents, (size_t)row->agent_index);
    const char *m = json_string_value(json_object_get(json_object_get(a, "settings"), "model"));
    if (!m)
        m = json_string_value(json_object_get(a, "model"));
    return m ? m : def;
}

/* The last `context` event (a new reference), or NULL. */
static int last_context(struct api_ctx *ctx, const char *tenant, const char *id, json_t **ret) {
    static const char *const types[] = {"context", NULL};
    struct event_filter f = {.types = types, .ascending = false};
    struct page pg = {1, 1};
    json_t *items = NULL;
    int64_t total = 0;
    int rc = store_event_list(ctx->store, tenant, id, &f, &pg, &items, &total);
    if (rc < 0)
        return rc;
    *ret = json_incref(json_array_get(items, 0));
    json_decref(items);
    return 0;
}

/* Adds a report to by_model ({model: {input_tokens, output_tokens}}). */
static void usage_add(json_t *by_model, const char *model, int64_t in, int64_t out) {
    json_t *m = json_object_get(by_model, model);
    if (!m && (!(m = json_pack("{s:I, s:I}", "input_tokens", (json_int_t)0, "output_tokens",
                               (json_int_t)0)) ||
               json_object_set_new(by_model, model, m) < 0))
        return;
    json_object_set_new(m, "input_tokens",
                        json_integer(json_integer_value(json_object_get(m, "input_tokens")) + in));
    json_object_set_new(m, "output_tokens",
                        json_integer(json_integer_value(json_object_get(m, "output_tokens")) + out));
}

/* Totals of the agent's usage reports, and the last one's input + output; by_model (may be
 * NULL) gets them per model: the model the report names (the agent stamps the model a turn ran
 * with), else `launch`, the model the session started with. */
static int usage_sum(struct api_ctx *ctx, const char *tenant, const char *id, int64_t *ret_in,
                     int64_t *ret_out, int64_t *ret_last, json_t *by_model, const char *launch) {
    static const char *const types[] = {"usage", NULL};
    int64_t in = 0, out = 0, last = -1, after = 0, seen = 0;
    for (;;) {
        struct event_filter f = {.types = types, .after = after, .ascending = true};
        struct page pg = {1, 200};
        json_t *items = NULL;
        int64_t total = 0;
        int rc = store_event_list(ctx->store, tenant, id, &f, &pg, &items, &total);
        if (rc < 0)
            return rc;
        size_t i, n = json_array_size(items);
        json_t *ev;
        json_array_foreach(items, i, ev) {
            int64_t a = json_integer_value(json_object_get(ev, "input_tokens"));
            int64_t b = json_integer_value(json_object_get(ev, "output_tokens"));
            in += a;
            out += b;
            last = a + b;
            const char *m = json_string_value(json_object_get(ev, "model"));
            if (by_model && (m || launch))
                usage_add(by_model, m ? m : launch, a, b);
            after = json_integer_value(json_object_get(ev, "seq"));
        }
        json_decref(items);
        seen += (int64_t)n;
        if (n < 200 || seen >= USAGE_SCAN_MAX)
            break;
    }
    *ret_in = in;
    *ret_out = out;
    *ret_last = last;
    return 0;
}

/* GET's answer for the state `state` (a context event or NULL). */
static json_t *context_json(struct api_ctx *ctx, struct session_row *row, const char *tenant,
                            const json_t *state, int *ret_rc) {
    const char *def = NULL;
    AH_AUTO(json_decrefp) json_t *models = models_for(ctx, row->agent_type, &def);
    const char *model = state ? json_string_value(json_object_get(state, "model")) : NULL;
    if (!model)
        model = launch_model(row, def);
    json_t *files = state ? json_object_get(state, "files") : NULL;
    AH_AUTO(json_decrefp) json_t *tools = state ? json_incref(json_object_get(state, "enabled_tools"))
                                                : tools_for(row);
    int64_t in = 0, out = 0, last = -1;
    AH_AUTO(json_decrefp) json_t *by_model = json_object();
    int rc = by_model ? usage_sum(ctx, tenant, row->id, &in, &out, &last, by_model,
                                  launch_model(row, def))
                      : AH_E_NOMEM;
    if (rc < 0) {
        *ret_rc = rc;
        return NULL;
    }
    int64_t file_tokens = 0;
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f) file_tokens += json_integer_value(json_object_get(f, "tokens"));
    json_t *m = model_find(models, model);
    int64_t window = m ? json_integer_value(json_object_get(m, "context_window")) : 0;
    int64_t used = last >= 0 ? last : file_tokens;
    double pct = window > 0 ? 100.0 * (double)used / (double)window : 0;
    json_t *res = json_pack(
        "{s:{s:I, s:I, s:I, s:f, s:I, s:I}, s:o, s:o, s:{s:s, s:I, s:f, s:f}}", "context_window",
        "total_tokens", (json_int_t)window, "used_tokens", (json_int_t)used, "remaining_tokens",
        (json_int_t)(window > used ? window - used : 0), "percentage_used", pct > 100 ? 100.0 : pct,
        "input_tokens", (json_int_t)in, "output_tokens", (json_int_t)out, "context_files",
        files ? json_deep_copy(files) : json_array(), "enabled_tools",
        tools ? json_incref(tools) : json_array(), "active_model", "type", model ? model : "",
        "context_window", (json_int_t)window, "input_pricing",
        json_number_value(json_object_get(m, "input_pricing")), "output_pricing",
        json_number_value(json_object_get(m, "output_pricing")));
    /* usage per model, as an array in the order the models were first used */
    json_t *per = json_array();
    const char *mid;
    json_t *mv;
    json_object_foreach(by_model, mid, mv) {
        json_array_append_new(per, json_pack("{s:s, s:O, s:O}", "model", mid, "input_tokens",
                                             json_object_get(mv, "input_tokens"), "output_tokens",
                                             json_object_get(mv, "output_tokens")));
    }
    if (res && (!per || json_object_set_new(res, "usage_by_model", per) < 0)) {
        json_decref(res);
        res = NULL;
    }
    if (!res)
        *ret_rc = AH_E_NOMEM;
    return res;
}

void chat_model_record(struct api_ctx *ctx, const char *tenant, struct session_row *row,
                       const char *model) {
    AH_AUTO(json_decrefp) json_t *state = NULL;
    if (last_context(ctx, tenant, row->id, &state) < 0)
        return;
    const char *def = NULL;
    AH_AUTO(json_decrefp) json_t *models = models_for(ctx, row->agent_type, &def);
    const char *now = state ? json_string_value(json_object_get(state, "model")) : NULL;
    if (!now)
        now = launch_model(row, def);
    if (now && !strcmp(now, model))
        return;
    AH_AUTO(json_decrefp) json_t *tools = state ? json_incref(json_object_get(state, "enabled_tools"))
                                                : tools_for(row);
    json_t *files = state ? json_object_get(state, "files") : NULL;
    AH_AUTO(json_decrefp) json_t *ev = json_pack(
        "{s:s, s:o, s:o, s:s}", "type", "context", "files",
        files ? json_deep_copy(files) : json_array(), "enabled_tools",
        tools ? json_deep_copy(tools) : json_array(), "model", model);
    struct ah_problem p = {0};
    if (ev)
        exec_chat(ctx->exec, tenant, row->id, ev, NULL, NULL, NULL, &p);
    problem_clear(&p);
}

static void get_context(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    const char *tenant = NULL;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, &tenant);
    if (!row)
        return;
    AH_AUTO(json_decrefp) json_t *state = NULL;
    int rc = last_context(ctx, tenant, row->id, &state);
    json_t *out = rc == 0 ? context_json(ctx, row, tenant, state, &rc) : NULL;
    if (!out) {
        http_error(req, res, rc, "cannot read the session's context");
        return;
    }
    http_json(req, res, 200, out);
}

static void check_list(const json_t *v, const char *name, size_t max, struct ah_problem *p) {
    if (!v)
        return;
    if (!json_is_array(v) || json_array_size(v) > CONTEXT_LIST_MAX) {
        problem_field(p, name, "must be an array of at most %d strings", CONTEXT_LIST_MAX);
        return;
    }
    size_t i;
    json_t *s;
    json_array_foreach((json_t *)v, i, s) {
        if (!json_is_string(s) || !json_string_length(s) || json_string_length(s) > max ||
            strlen(json_string_value(s)) != json_string_length(s)) {
            char f[64];
            snprintf(f, sizeof(f), "%s[%zu]", name, i);
            problem_field(p, f, "must be a non-empty string of at most %zu bytes", max);
        }
    }
}

/* A file added to the context: its tokens and modification time, read now. */
static int file_entry(const char *root_path, const char *path, json_t **ret,
                      struct ah_problem *p) {
    int root = root_path ? open(root_path, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    if (root < 0)
        return problem_set(p, AH_E_CONFLICT, "the session has no workspace");
    int fd = open_beneath(root, path, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0, true);
    int e = errno;
    close(root);
    if (fd < 0)
        return e == ENOENT || e == ENOTDIR
                   ? problem_set(p, AH_E_NOTFOUND, "%s: no such file in the workspace", path)
                   : problem_set(p, AH_E_FORBIDDEN, "%s: cannot be read (%s)", path, strerror(e));
    struct stat st;
    char *data = NULL;
    int rc = 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        rc = problem_set(p, AH_E_INVAL, "%s is not a regular file", path);
    else if (st.st_size > CONTEXT_FILE_MAX)
        rc = problem_set(p, AH_E_TOOLARGE, "%s is over %d bytes", path, CONTEXT_FILE_MAX);
    else if (!(data = malloc((size_t)st.st_size + 1)))
        rc = problem_set(p, AH_E_NOMEM, "out of memory");
    size_t n = 0;
    while (rc == 0 && n < (size_t)st.st_size) {
        ssize_t r = read(fd, data + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (rc == 0) {
        char ts[TIME_RFC3339_LEN + 1];
        time_format((int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000, ts);
        *ret = json_pack("{s:s, s:I, s:s}", "path", path,
                         "tokens", (json_int_t)tokens_count(data, n), "last_modified", ts);
        rc = *ret ? 0 : problem_set(p, AH_E_NOMEM, "out of memory");
    }
    free(data);
    return rc;
}

static void put_context(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(json_decrefp) json_t *body = api_body(req, res, false);
    if (!body)
        return;
    struct ah_problem p = {0};
    static const char *const known[] = {"add_files",     "remove_files",   "enable_tools",
                                        "disable_tools", "model_override", NULL};
    api_only_members(body, known, &p);
    json_t *add = json_object_get(body, "add_files"), *rm = json_object_get(body, "remove_files");
    json_t *en = json_object_get(body, "enable_tools"), *dis = json_object_get(body, "disable_tools");
    json_t *mo = json_object_get(body, "model_override");
    check_list(add, "add_files", WS_PATH_MAX, &p);
    check_list(rm, "remove_files", WS_PATH_MAX, &p);
    check_list(en, "enable_tools", AH_LIMIT_NAME, &p);
    check_list(dis, "disable_tools", AH_LIMIT_NAME, &p);
    if (mo && (!json_is_string(mo) || !json_string_length(mo) || json_string_length(mo) > AH_LIMIT_NAME))
        problem_field(&p, "model_override", "must be a model id");
    if (http_fail(req, res, &p))
        return;
    const char *tenant = NULL;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, &tenant);
    if (!row)
        return;
    if (session_status_terminal(row->status)) {
        http_error(req, res, AH_E_GONE, "the session has ended (%s)",
                   session_status_name(row->status));
        return;
    }
    AH_AUTO(json_decrefp) json_t *state = NULL;
    int rc = last_context(ctx, tenant, row->id, &state);
    if (rc < 0) {
        http_error(req, res, rc, "cannot read the session's context");
        return;
    }
    const char *def = NULL;
    AH_AUTO(json_decrefp) json_t *models = models_for(ctx, row->agent_type, &def);
    AH_AUTO(json_decrefp) json_t *avail = tools_for(row);
    AH_AUTO(json_decrefp) json_t *files = state ? json_deep_copy(json_object_get(state, "files"))
                                                : json_array();
    AH_AUTO(json_decrefp) json_t *tools = state ? json_deep_copy(json_object_get(state, "enabled_tools"))
                                                : (avail ? json_deep_copy(avail) : json_array());
    const char *model = state ? json_string_value(json_object_get(state, "model")) : NULL;
    if (!model)
        model = launch_model(row, def);
    size_t i;
    json_t *v;
    json_array_foreach(rm, i, v) {
        char norm[WS_PATH_MAX + 1];
        if (ws_path_normalise(json_string_value(v), json_string_length(v), norm) < 0)
            continue;
        for (size_t j = json_array_size(files); j > 0; j--)
            if (!strcmp(json_string_value(json_object_get(json_array_get(files, j - 1), "path")), norm))
                json_array_remove(files, j - 1);
    }
    json_array_foreach(add, i, v) {
        char norm[WS_PATH_MAX + 1], f[64];
        snprintf(f, sizeof(f), "add_files[%zu]", i);
        if (ws_path_normalise(json_string_value(v), json_string_length(v), norm) < 0 || !norm[0]) {
            problem_field(&p, f, "must be a path inside the workspace");
            break;
        }
        json_t *entry = NULL;
        if (file_entry(row->workspace_path, norm, &entry, &p) < 0)
            break;
        for (size_t j = json_array_size(files); j > 0; j--) /* re-adding refreshes it */
            if (!strcmp(json_string_value(json_object_get(json_array_get(files, j - 1), "path")), norm))
                json_array_remove(files, j - 1);
        json_array_append_new(files, entry);
    }
    if (!p.code && json_array_size(files) > CONTEXT_FILES_MAX)
        problem_set(&p, AH_E_TOOLARGE, "at most %d files can be in context", CONTEXT_FILES_MAX);
    json_array_foreach(dis, i, v) {
        for (size_t j = json_array_size(tools); j > 0; j--)
            if (json_equal(json_array_get(tools, j - 1), v))
                json_array_remove(tools, j - 1);
    }
    json_array_foreach(en, i, v) {
        if (avail && !has_string(avail, json_string_value(v))) {
            char f[64];
            snprintf(f, sizeof(f), "enable_tools[%zu]", i);
            problem_field(&p, f, "%s is not a tool of the %s agent", json_string_value(v),
                          row->agent_type);
        } else if (!has_string(tools, json_string_value(v))) {
            json_array_append(tools, v);
        }
    }
    if (mo && !p.code) {
        if (!model_find(models, json_string_value(mo)))
            problem_field(&p, "model_override", "%s is not a model of the %s agent (GET …/models)",
                          json_string_value(mo), row->agent_type);
        else if (strcmp(json_string_value(mo), model ? model : "") &&
                 !switches_model(row->agent_type) && strcmp(row->agent_type, "scripted"))
            problem_set(&p, AH_E_UNSUPPORTED,
                        "the %s CLI takes its model when it starts; start a session with "
                        "agents[].settings.model = \"%s\"", row->agent_type,
                        json_string_value(mo));
        else
            model = json_string_value(mo);
    }
    if (http_fail(req, res, &p))
        return;
    AH_AUTO(json_decrefp) json_t *ev = json_pack("{s:s, s:O, s:O, s:s}", "type", "context",
                                                 "files", files, "enabled_tools", tools, "model",
                                                 model ? model : "");
    /* an agent that switches models takes it for its next turn */
    if (chat_send_model(ctx, req, res, tenant, row->id, ev, NULL,
                        mo && switches_model(row->agent_type) ? model : NULL, NULL) < 0)
        return;
    json_t *out = context_json(ctx, row, tenant, ev, &rc);
    if (!out) {
        http_error(req, res, rc, "cannot read the session's context");
        return;
    }
    http_json(req, res, 200, out);
}

static void get_models(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row)
        return;
    json_t *models = models_for(ctx, row->agent_type, NULL);
    if (!models) {
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    http_json(req, res, 200,
              json_pack("{s:o, s:s, s:s, s:b}", "models", models, "agent_type", row->agent_type,
                        "table_date", MODELS_DATE, "switches_model",
                        switches_model(row->agent_type)));
}

int chat_context_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/context", get_context, ctx, 0, 0);
    rc |= router_add(r, "PUT", "/api/v1/sessions/{id}/context", put_context, ctx, 0,
                     CONTEXT_BODY_MAX);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/models", get_models, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
