/* test-task-request.c — validation of the create-task body (API.md §5.2, D1, D5): each field's
 * good and bad cases, the errors map, and randomized round-trips parse → JSON → parse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/core/core.h"

#define MINIMAL                                                                                    \
    "\"prompt\":\"Fix the bug\",\"repo\":{\"mode\":\"none\"},\"runtime\":{\"type\":\"local\"},"   \
    "\"agents\":[{\"type\":\"scripted\"}]"

static json_t *load(const char *text) {
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("bad test JSON: %s: %s", e.text, text);
    return j;
}

/* Parses `text`; returns the request or NULL and leaves the problem in *p. */
static struct task_request *parse(const char *text, struct ah_problem *p) {
    json_t *j = load(text);
    struct task_request *r = NULL;
    int rc = task_request_parse(j, &r, p);
    json_decref(j);
    if (rc == 0)
        assert_non_null(r);
    else
        assert_null(r);
    return r;
}

static void expect_ok(const char *text) {
    struct ah_problem p = {0};
    struct task_request *r = parse(text, &p);
    if (!r)
        fail_msg("rejected: %s\n  detail: %s", text, p.detail);
    task_request_free(r);
    problem_clear(&p);
}

/* Expects a 400 whose errors map names `field`. */
static void expect_field(const char *text, const char *field) {
    struct ah_problem p = {0};
    struct task_request *r = parse(text, &p);
    if (r)
        fail_msg("accepted: %s", text);
    assert_int_equal(p.code, AH_E_INVAL);
    assert_int_equal(ah_error_status(p.code), 400);
    if (!json_object_get(p.errors, field)) {
        char *e = json_dumps(p.errors, 0);
        fail_msg("expected an error for %s in %s, got %s", field, text, e ? e : "null");
    }
    problem_clear(&p);
}

static void test_minimal(void **state) {
    struct ah_problem p = {0};
    struct task_request *r = parse("{" MINIMAL "}", &p);
    assert_non_null(r);
    assert_int_equal(r->repo.mode, REPO_NONE);
    assert_int_equal(r->runtime.type, RUNTIME_LOCAL);
    assert_int_equal(r->n_agents, 1);
    assert_string_equal(r->agents[0].type, "scripted");
    assert_string_equal(r->agents[0].version, "latest");
    assert_int_equal(r->agents[0].count, 1);
    assert_int_equal(task_request_session_count(r), 1);
    /* the bare-string prompt becomes one text block */
    assert_int_equal(json_array_size(r->prompt), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r->prompt, 0), "text")),
                        "Fix the bug");
    task_request_free(r);
}

static void test_full_example(void **state) {
    /* API.md §9's example, verbatim */
    const char *text =
        "{\"tenantId\":\"acme\",\"projectId\":\"storefront\","
        "\"prompt\":[{\"type\":\"text\",\"text\":\"Make the checkout tests deterministic.\"}],"
        "\"repo\":{\"mode\":\"git\",\"url\":\"https://git.example.com/acme/storefront.git\","
        "\"branch\":\"agent/checkout\",\"commit\":null},"
        "\"runtime\":{\"type\":\"local\",\"resources\":{\"cpu\":2,\"memoryMiB\":4096}},"
        "\"workspace\":{\"snapshotPreference\":[\"zfs\",\"btrfs\",\"overlay\",\"copy\"]},"
        "\"agents\":[{\"type\":\"claude-code\",\"version\":\"latest\",\"count\":2}],"
        "\"delivery\":{\"mode\":\"branch\",\"targetBranch\":\"main\"},"
        "\"labels\":{\"team\":\"payments\"}}";
    struct ah_problem p = {0};
    struct task_request *r = parse(text, &p);
    assert_non_null(r);
    assert_string_equal(r->tenant_id, "acme");
    assert_string_equal(r->project_id, "storefront");
    assert_int_equal(r->repo.mode, REPO_GIT);
    assert_string_equal(r->repo.branch, "agent/checkout");
    assert_null(r->repo.commit);
    assert_true(r->runtime.has_resources);
    assert_int_equal(r->runtime.cpu, 2);
    assert_int_equal(r->runtime.memory_mib, 4096);
    assert_int_equal(r->n_snapshot_preference, 4);
    assert_string_equal(r->snapshot_preference[3], "copy");
    assert_int_equal(task_request_session_count(r), 2);
    assert_true(r->has_delivery);
    assert_int_equal(r->delivery_mode, DELIVERY_BRANCH);
    assert_string_equal(r->target_branch, "main");
    assert_string_equal(json_string_value(json_object_get(r->labels, "team")), "payments");
    task_request_free(r);
}

static void test_snake_case_aliases(void **state) {
    /* D1: accept the snake_case spellings… */
    struct ah_problem p = {0};
    struct task_request *r =
        parse("{\"tenant_id\":\"t1\",\"project_id\":\"p1\",\"prompt\":\"x\","
              "\"repo\":{\"mode\":\"none\"},"
              "\"runtime\":{\"type\":\"devcontainer\",\"devcontainer_path\":\".devcontainer/a.json\","
              "\"resources\":{\"cpu\":1,\"memory_mib\":512}},"
              "\"workspace\":{\"snapshot_preference\":[\"git\"],\"execution_host_id\":\"exec-1\"},"
              "\"agents\":[{\"type\":\"codex\"}],"
              "\"delivery\":{\"mode\":\"pr\",\"target_branch\":\"main\"}}",
              &p);
    assert_non_null(r);
    assert_string_equal(r->tenant_id, "t1");
    assert_string_equal(r->project_id, "p1");
    assert_string_equal(r->runtime.devcontainer_path, ".devcontainer/a.json");
    assert_int_equal(r->runtime.memory_mib, 512);
    assert_string_equal(r->execution_host_id, "exec-1");
    assert_string_equal(r->target_branch, "main");
    /* …and emit only camelCase */
    json_t *j = task_request_to_json(r);
    assert_non_null(json_object_get(j, "tenantId"));
    assert_null(json_object_get(j, "tenant_id"));
    assert_non_null(json_object_get(json_object_get(j, "runtime"), "devcontainerPath"));
    assert_null(json_object_get(json_object_get(j, "runtime"), "devcontainer_path"));
    json_decref(j);
    task_request_free(r);
    /* both spellings at once is an error naming the field */
    expect_field("{\"tenantId\":\"a\",\"tenant_id\":\"b\"," MINIMAL "}", "tenantId");
}

static void test_prompt(void **state) {
    expect_ok("{\"prompt\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image\",\"uri\":"
              "\"https://x/y.png\"}],\"repo\":{\"mode\":\"none\"},\"runtime\":{\"type\":\"local\"},"
              "\"agents\":[{\"type\":\"a\"}]}");
    expect_ok("{\"prompt\":[{\"type\":\"image\",\"data\":\"aGk=\",\"mimeType\":\"image/png\"},"
              "{\"type\":\"resource\",\"resource\":{\"uri\":\"file:///a\",\"text\":\"b\"}}],"
              "\"repo\":{\"mode\":\"none\"},\"runtime\":{\"type\":\"local\"},"
              "\"agents\":[{\"type\":\"a\"}]}");
#define WITH_PROMPT(pr)                                                                            \
    "{\"prompt\":" pr ",\"repo\":{\"mode\":\"none\"},\"runtime\":{\"type\":\"local\"},"            \
    "\"agents\":[{\"type\":\"a\"}]}"
    expect_field(WITH_PROMPT("\"\""), "prompt[0].text");
    expect_field(WITH_PROMPT("\"   \""), "prompt");
    expect_field(WITH_PROMPT("[]"), "prompt");
    expect_field(WITH_PROMPT("42"), "prompt");
    expect_field(WITH_PROMPT("null"), "prompt");
    expect_field(WITH_PROMPT("[\"text\"]"), "prompt[0]");
    expect_field(WITH_PROMPT("[{\"type\":\"video\"}]"), "prompt[0].type");
    expect_field(WITH_PROMPT("[{\"text\":\"no type\"}]"), "prompt[0].type");
    expect_field(WITH_PROMPT("[{\"type\":\"text\"}]"), "prompt[0].text");
    expect_field(WITH_PROMPT("[{\"type\":\"image\"}]"), "prompt[0].data");
    expect_field(WITH_PROMPT("[{\"type\":\"audio\",\"data\":\"x\"}]"), "prompt[0].mimeType");
    expect_field(WITH_PROMPT("[{\"type\":\"resource\"}]"), "prompt[0].resource");
    expect_field(WITH_PROMPT("[{\"type\":\"resource\",\"resource\":{}}]"), "prompt[0].resource.uri");
    expect_field("{\"repo\":{\"mode\":\"none\"},\"runtime\":{\"type\":\"local\"},"
                 "\"agents\":[{\"type\":\"a\"}]}",
                 "prompt");
    /* D5: 16 KiB of prompt text */
    size_t n = AH_LIMIT_PROMPT + 1;
    char *big = malloc(n + 256);
    char *fill = malloc(n + 1);
    memset(fill, 'x', n);
    fill[n] = '\0';
    snprintf(big, n + 256, WITH_PROMPT("\"%s\""), fill);
    expect_field(big, "prompt");
    fill[AH_LIMIT_PROMPT] = '\0'; /* exactly the limit is fine */
    snprintf(big, n + 256, WITH_PROMPT("\"%s\""), fill);
    expect_ok(big);
    free(big);
    free(fill);
}

static void test_repo(void **state) {
#define WITH_REPO(r)                                                                               \
    "{\"prompt\":\"p\",\"repo\":" r ",\"runtime\":{\"type\":\"local\"},"                           \
    "\"agents\":[{\"type\":\"a\"}]}"
    expect_ok(WITH_REPO("{\"mode\":\"git\",\"url\":\"https://github.com/a/b.git\"}"));
    expect_ok(WITH_REPO("{\"mode\":\"git\",\"url\":\"git@github.com:a/b.git\"}"));
    expect_ok(WITH_REPO("{\"mode\":\"git\",\"url\":\"ssh://git@host:22/a/b\"}"));
    expect_ok(WITH_REPO("{\"mode\":\"git\",\"url\":\"file:///srv/repos/a\"}"));
    expect_ok(WITH_REPO("{\"mode\":\"git\",\"url\":\"/srv/repos/a\"}"));
    expect_ok(WITH_REPO("{\"mode\":\"git\",\"url\":\"/r\",\"branch\":\"feature/x-1\","
                        "\"commit\":\"0123abcd\"}"));
    expect_ok(WITH_REPO("{\"mode\":\"git\",\"url\":\"/r\",\"commit\":null}"));
    expect_field(WITH_REPO("null"), "repo");
    expect_field("{\"prompt\":\"p\",\"runtime\":{\"type\":\"local\"},\"agents\":[{\"type\":\"a\"}]}",
                 "repo");
    expect_field(WITH_REPO("\"git\""), "repo");
    expect_field(WITH_REPO("{}"), "repo.mode");
    expect_field(WITH_REPO("{\"mode\":\"svn\"}"), "repo.mode");
    expect_field(WITH_REPO("{\"mode\":\"git\"}"), "repo.url");
    expect_field(WITH_REPO("{\"mode\":\"git\",\"url\":\"\"}"), "repo.url");
    expect_field(WITH_REPO("{\"mode\":\"git\",\"url\":\"not a url\"}"), "repo.url");
    expect_field(WITH_REPO("{\"mode\":\"git\",\"url\":\"ftp://x/y\"}"), "repo.url");
    expect_field(WITH_REPO("{\"mode\":\"git\",\"url\":\"https:///nohost\"}"), "repo.url");
    expect_field(WITH_REPO("{\"mode\":\"git\",\"url\":42}"), "repo.url");
    expect_field(WITH_REPO("{\"mode\":\"git\",\"url\":\"/r\",\"branch\":\"a..b\"}"), "repo.branch");
    expect_field(WITH_REPO("{\"mode\":\"git\",\"url\":\"/r\",\"branch\":\"-x\"}"), "repo.branch");
    expect_field(WITH_REPO("{\"mode\":\"git\",\"url\":\"/r\",\"branch\":\"a b\"}"), "repo.branch");
    expect_field(WITH_REPO("{\"mode\":\"git\",\"url\":\"/r\",\"branch\":\"x.lock\"}"), "repo.branch");
    expect_field(WITH_REPO("{\"mode\":\"git\",\"url\":\"/r\",\"commit\":\"xyz\"}"), "repo.commit");
    expect_field(WITH_REPO("{\"mode\":\"git\",\"url\":\"/r\",\"commit\":\"abc\"}"), "repo.commit");
    expect_field(WITH_REPO("{\"mode\":\"none\",\"url\":\"/r\"}"), "repo");
    expect_field(WITH_REPO("{\"mode\":\"upload\"}"), "repo.mode");
    expect_field(WITH_REPO("{\"mode\":\"none\",\"depth\":1}"), "repo.depth");
}

static void test_runtime(void **state) {
#define WITH_RT(r)                                                                                 \
    "{\"prompt\":\"p\",\"repo\":{\"mode\":\"none\"},\"runtime\":" r ","                            \
    "\"agents\":[{\"type\":\"a\"}]}"
    expect_ok(WITH_RT("{\"type\":\"disabled\"}"));
    expect_ok(WITH_RT("{\"type\":\"devcontainer\",\"devcontainerPath\":\"x.json\"}"));
    /* a devcontainer's image: required unless a devcontainer.json may name it; never an option
     * of podman's; only for that runtime */
    expect_ok(WITH_RT("{\"type\":\"devcontainer\",\"image\":\"localhost/dev:1\"}"));
    expect_field(WITH_RT("{\"type\":\"devcontainer\"}"), "runtime.image");
    expect_field(WITH_RT("{\"type\":\"devcontainer\",\"devcontainerPath\":\"/etc/x.json\"}"),
                 "runtime.devcontainerPath");
    expect_field(WITH_RT("{\"type\":\"devcontainer\",\"devcontainerPath\":\"../x.json\"}"),
                 "runtime.devcontainerPath");
    expect_field(WITH_RT("{\"type\":\"devcontainer\",\"image\":\"--privileged\"}"),
                 "runtime.image");
    expect_field(WITH_RT("{\"type\":\"devcontainer\",\"image\":\"a b\"}"), "runtime.image");
    expect_field(WITH_RT("{\"type\":\"local\",\"image\":\"debian\"}"), "runtime.image");
    expect_ok(WITH_RT("{\"type\":\"local\",\"resources\":{\"cpu\":1024,\"memoryMiB\":16}}"));
    expect_field(WITH_RT("{}"), "runtime.type");
    expect_field(WITH_RT("{\"type\":\"docker\"}"), "runtime.type");
    expect_field(WITH_RT("[]"), "runtime");
    expect_field("{\"prompt\":\"p\",\"repo\":{\"mode\":\"none\"},\"agents\":[{\"type\":\"a\"}]}",
                 "runtime");
    expect_field(WITH_RT("{\"type\":\"local\",\"resources\":{\"cpu\":2}}"),
                 "runtime.resources.memoryMiB");
    expect_field(WITH_RT("{\"type\":\"local\",\"resources\":{\"memoryMiB\":2}}"),
                 "runtime.resources.cpu");
    expect_field(WITH_RT("{\"type\":\"local\",\"resources\":{\"cpu\":0,\"memoryMiB\":64}}"),
                 "runtime.resources.cpu");
    /* fractions of a core are a CPU quota (issue 19) */
    expect_ok(WITH_RT("{\"type\":\"local\",\"resources\":{\"cpu\":1.5,\"memoryMiB\":64}}"));
    expect_field(WITH_RT("{\"type\":\"local\",\"resources\":{\"cpu\":0.001,\"memoryMiB\":64}}"),
                 "runtime.resources.cpu");
    expect_field(WITH_RT("{\"type\":\"local\",\"resources\":{\"cpu\":\"2\",\"memoryMiB\":64}}"),
                 "runtime.resources.cpu");
    expect_field(WITH_RT("{\"type\":\"local\",\"resources\":{\"cpu\":1,\"memoryMiB\":-1}}"),
                 "runtime.resources.memoryMiB");
    expect_field(WITH_RT("{\"type\":\"local\",\"resources\":7}"), "runtime.resources");
    expect_field(WITH_RT("{\"type\":\"local\",\"gpu\":true}"), "runtime.gpu");
}

static void test_workspace(void **state) {
#define WITH_WS(w)                                                                                 \
    "{\"prompt\":\"p\",\"repo\":{\"mode\":\"none\"},\"runtime\":{\"type\":\"local\"},"             \
    "\"workspace\":" w ",\"agents\":[{\"type\":\"a\"}]}"
    expect_ok(WITH_WS("{\"snapshotPreference\":[\"git\",\"reflink\",\"btrfs\",\"copy\"]}"));
    expect_ok(WITH_WS("{\"snapshotPreference\":[\"copy\"],\"executionHostId\":\"w-123\"}"));
    expect_field(WITH_WS("{}"), "workspace.snapshotPreference");
    expect_field(WITH_WS("{\"snapshotPreference\":[]}"), "workspace.snapshotPreference");
    expect_field(WITH_WS("{\"snapshotPreference\":\"copy\"}"), "workspace.snapshotPreference");
    expect_field(WITH_WS("{\"snapshotPreference\":[\"ntfs\"]}"), "workspace.snapshotPreference[0]");
    expect_field(WITH_WS("{\"snapshotPreference\":[\"copy\",7]}"), "workspace.snapshotPreference[1]");
    expect_field(WITH_WS("{\"snapshotPreference\":[\"copy\",\"copy\"]}"),
                 "workspace.snapshotPreference[1]");
    expect_field(WITH_WS("{\"snapshotPreference\":[\"copy\"],\"executionHostId\":\"a b\"}"),
                 "workspace.executionHostId");
    expect_field(WITH_WS("5"), "workspace");
}

static void test_agents(void **state) {
#define WITH_AG(a)                                                                                 \
    "{\"prompt\":\"p\",\"repo\":{\"mode\":\"none\"},\"runtime\":{\"type\":\"local\"},"             \
    "\"agents\":" a "}"
    expect_ok(WITH_AG("[{\"type\":\"a\",\"version\":\"1.2\",\"count\":3,\"settings\":{\"x\":1}},"
                      "{\"type\":\"b\"}]"));
    expect_field(WITH_AG("[]"), "agents");
    expect_field(WITH_AG("{}"), "agents");
    expect_field("{\"prompt\":\"p\",\"repo\":{\"mode\":\"none\"},\"runtime\":{\"type\":\"local\"}}",
                 "agents");
    expect_field(WITH_AG("[{}]"), "agents[0].type");
    expect_field(WITH_AG("[{\"type\":\"\"}]"), "agents[0].type");
    expect_field(WITH_AG("[{\"type\":\"a/b\"}]"), "agents[0].type");
    expect_field(WITH_AG("[{\"type\":\"a\"},{\"type\":7}]"), "agents[1].type");
    expect_field(WITH_AG("[{\"type\":\"a\",\"count\":0}]"), "agents[0].count");
    expect_field(WITH_AG("[{\"type\":\"a\",\"count\":\"2\"}]"), "agents[0].count");
    expect_field(WITH_AG("[{\"type\":\"a\",\"count\":101}]"), "agents[0].count");
    expect_field(WITH_AG("[{\"type\":\"a\",\"count\":60},{\"type\":\"b\",\"count\":60}]"), "agents");
    expect_field(WITH_AG("[{\"type\":\"a\",\"settings\":[]}]"), "agents[0].settings");
    expect_field(WITH_AG("[{\"type\":\"a\",\"version\":5}]"), "agents[0].version");
    expect_field(WITH_AG("[{\"type\":\"a\",\"model\":\"x\"}]"), "agents[0].model");
    expect_field(WITH_AG("[\"claude\"]"), "agents[0]");
    char many[2048] = "[";
    for (int i = 0; i <= AH_LIMIT_AGENTS; i++)
        strcat(many, i ? ",{\"type\":\"a\"}" : "{\"type\":\"a\"}");
    strcat(many, "]");
    char body[4096];
    snprintf(body, sizeof(body), WITH_AG("%s"), many);
    expect_field(body, "agents");
}

#define BASE "\"prompt\":\"x\",\"repo\":{\"mode\":\"none\"},\"runtime\":{\"type\":\"local\"},"

/* D25: a single `agent` object is `agents: [agent]`; both at once is a 400. */
static void test_agent_shorthand(void **state) {
    struct ah_problem p = {0};
    struct task_request *r =
        parse("{" BASE "\"agent\":{\"type\":\"scripted\",\"settings\":{\"a\":1}}}", &p);
    assert_non_null(r);
    assert_int_equal(r->n_agents, 1);
    assert_string_equal(r->agents[0].type, "scripted");
    assert_string_equal(r->agents[0].version, "latest");
    assert_int_equal(r->agents[0].count, 1);
    assert_int_equal(json_integer_value(json_object_get(r->agents[0].settings, "a")), 1);
    json_t *j = task_request_to_json(r); /* the canonical form has the list, not the shorthand */
    assert_null(json_object_get(j, "agent"));
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "agents"), 0), "type")),
        "scripted");
    json_decref(j);
    task_request_free(r);
    problem_clear(&p);
    expect_ok("{" BASE "\"agent\":{\"type\":\"scripted\",\"count\":2}}");
    expect_field("{" BASE "\"agent\":{\"type\":\"scripted\"},\"agents\":[{\"type\":\"x\"}]}",
                 "agent");
    expect_field("{" BASE "\"agent\":[{\"type\":\"scripted\"}]}", "agent");
    expect_field("{" BASE "\"agent\":\"scripted\"}", "agent");
    expect_field("{" BASE "\"agent\":{}}", "agent.type");
    expect_field("{" BASE "\"agent\":{\"type\":\"scripted\",\"model\":\"m\"}}", "agent.model");
    expect_field("{" BASE "\"agent\":{\"type\":\"scripted\",\"count\":0}}", "agent.count");
    expect_field("{" BASE "\"agent\":null}", "agent");
}

/* D25: display aliases name a family, and the model they carry goes to settings.model. */
static void test_agent_aliases(void **state) {
    assert_string_equal(agent_alias_family("claude"), "claude-code");
    assert_string_equal(agent_alias_family("Claude"), "claude-code");
    assert_string_equal(agent_alias_family("claude-3-opus"), "claude-code");
    assert_string_equal(agent_alias_family("gpt-4o"), "codex");
    assert_string_equal(agent_alias_family("openai"), "codex");
    assert_null(agent_alias_family("claude-code"));
    assert_null(agent_alias_family("codex"));
    assert_null(agent_alias_family("gpt-"));
    assert_null(agent_alias_family("scripted"));
    assert_null(agent_alias_family("gemini"));
    assert_null(agent_alias_family(NULL));

    struct task_agent a = {strdup("claude"), strdup("3.5-sonnet"), 1, NULL};
    assert_int_equal(task_agent_apply_alias(&a, "claude-code"), 0);
    assert_string_equal(a.type, "claude-code");
    assert_string_equal(a.version, "latest");
    assert_string_equal(json_string_value(json_object_get(a.settings, "model")), "3.5-sonnet");
    free(a.type);
    free(a.version);
    json_decref(a.settings);

    /* a model in settings wins; claude at latest names no model */
    a = (struct task_agent){strdup("claude"), strdup("latest"), 1, NULL};
    assert_int_equal(task_agent_apply_alias(&a, "claude-code"), 0);
    assert_string_equal(a.type, "claude-code");
    assert_null(a.settings);
    free(a.type);
    free(a.version);
    a = (struct task_agent){strdup("gpt-4o"), strdup("1.2"), 1, json_pack("{s:s}", "model", "o3")};
    assert_int_equal(task_agent_apply_alias(&a, "codex"), 0);
    assert_string_equal(a.type, "codex");
    assert_string_equal(a.version, "1.2"); /* a real version of the CLI stays */
    assert_string_equal(json_string_value(json_object_get(a.settings, "model")), "o3");
    free(a.type);
    free(a.version);
    json_decref(a.settings);
    a = (struct task_agent){strdup("gpt-4o"), strdup("latest"), 1, NULL};
    assert_int_equal(task_agent_apply_alias(&a, "codex"), 0);
    assert_string_equal(json_string_value(json_object_get(a.settings, "model")), "gpt-4o");
    free(a.type);
    free(a.version);
    json_decref(a.settings);
}

static void test_delivery_labels_webhooks(void **state) {
#define WITH(x) "{" MINIMAL "," x "}"
    expect_ok(WITH("\"delivery\":{\"mode\":\"pr\",\"targetBranch\":\"main\"}"));
    expect_ok(WITH("\"delivery\":{\"mode\":\"patch\"}"));
    expect_field(WITH("\"delivery\":{}"), "delivery.mode");
    expect_field(WITH("\"delivery\":{\"mode\":\"email\"}"), "delivery.mode");
    expect_field(WITH("\"delivery\":{\"mode\":\"pr\",\"targetBranch\":\"a..b\"}"),
                 "delivery.targetBranch");
    expect_field(WITH("\"delivery\":true"), "delivery");
    expect_ok(WITH("\"labels\":{\"team\":\"payments\",\"a.b-c_d\":\"\"}"));
    expect_field(WITH("\"labels\":{\"team\":1}"), "labels.team");
    expect_field(WITH("\"labels\":{\"a b\":\"x\"}"), "labels.a b");
    expect_field(WITH("\"labels\":[]"), "labels");
    expect_ok(WITH("\"webhooks\":[{\"event\":\"session.completed\",\"url\":\"https://h/x\"}]"));
    expect_ok(WITH("\"webhooks\":[]"));
    expect_ok(WITH("\"webhooks\":[{\"events\":[\"session.*\",\"session.failed\"],"
                   "\"url\":\"https://h/x\",\"secret\":\"k\"}]"));
    expect_field(WITH("\"webhooks\":[{\"events\":[],\"url\":\"https://h\"}]"),
                 "webhooks[0].events");
    expect_field(WITH("\"webhooks\":[{\"events\":[\"session.a\",\"x\"],\"url\":\"https://h\"}]"),
                 "webhooks[0].events[1]");
    expect_field(WITH("\"webhooks\":[{\"event\":\"session.a\",\"events\":[\"session.b\"],"
                      "\"url\":\"https://h\"}]"),
                 "webhooks[0].event");
    expect_field(WITH("\"webhooks\":[{\"event\":\"session.a\",\"url\":\"https://h\","
                      "\"secret\":\"\"}]"),
                 "webhooks[0].secret");
    expect_field(WITH("\"webhooks\":[{\"event\":\"session.completed\"}]"), "webhooks[0].url");
    expect_field(WITH("\"webhooks\":[{\"event\":\"session.completed\",\"url\":\"ftp://h\"}]"),
                 "webhooks[0].url");
    expect_field(WITH("\"webhooks\":[{\"event\":\"completed\",\"url\":\"https://h\"}]"),
                 "webhooks[0].event");
    expect_field(WITH("\"webhooks\":[{\"url\":\"https://h\"}]"), "webhooks[0].event");
    expect_field(WITH("\"webhooks\":{}"), "webhooks");
    expect_field(WITH("\"tenantId\":\"a/b\""), "tenantId");
    expect_field(WITH("\"projectId\":\"\""), "projectId");
    expect_field(WITH("\"extra\":1"), "extra");
}

static void test_every_error_at_once(void **state) {
    struct ah_problem p = {0};
    struct task_request *r = parse("{\"prompt\":\"\",\"repo\":{\"mode\":\"git\"},\"runtime\":{},"
                                   "\"agents\":[{\"count\":0}],\"bogus\":1}",
                                   &p);
    assert_null(r);
    const char *fields[] = {"prompt[0].text", "repo.url", "runtime.type", "agents[0].type",
                            "agents[0].count", "bogus"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++)
        if (!json_object_get(p.errors, fields[i]))
            fail_msg("missing %s", fields[i]);
    assert_non_null(strstr(p.detail, "fields are invalid"));
    json_t *body = problem_to_json(&p, "/api/v1/tasks", "rid-1");
    assert_string_equal(json_string_value(json_object_get(body, "type")), "/problems/validation");
    assert_int_equal(json_integer_value(json_object_get(body, "status")), 400);
    assert_string_equal(json_string_value(json_object_get(body, "requestId")), "rid-1");
    assert_string_equal(json_string_value(json_object_get(body, "instance")), "/api/v1/tasks");
    assert_true(json_is_array(json_object_get(json_object_get(body, "errors"), "repo.url")));
    json_decref(body);
    problem_clear(&p);
    /* a body that is not an object */
    json_t *arr = json_array();
    assert_int_equal(task_request_parse(arr, &r, &p), AH_E_INVAL);
    assert_null(r);
    assert_non_null(strstr(p.detail, "JSON object"));
    json_decref(arr);
    problem_clear(&p);
}

/* ---- randomized round-trips ----------------------------------------------------------------- */

static unsigned long long rng = 0x9E3779B97F4A7C15ull;
static unsigned rnd(unsigned n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static json_t *random_string(const char *prefix) {
    static const char chars[] = "abcXYZ019._-";
    char s[40];
    int n = snprintf(s, sizeof(s), "%s", prefix);
    int len = 1 + (int)rnd(12);
    for (int i = 0; i < len; i++)
        s[n++] = chars[rnd(sizeof(chars) - 1)];
    s[n] = '\0';
    return json_string(s);
}

static json_t *random_request(void) {
    json_t *j = json_object();
    if (rnd(2))
        json_object_set_new(j, rnd(2) ? "tenantId" : "tenant_id", random_string("t"));
    if (rnd(2))
        json_object_set_new(j, rnd(2) ? "projectId" : "project_id", random_string("p"));
    if (rnd(2)) {
        json_object_set_new(j, "prompt", json_string("Refactor the parser ✓ 日本"));
    } else {
        json_t *blocks = json_array();
        int n = 1 + (int)rnd(3);
        for (int i = 0; i < n; i++) {
            if (i == 0 || rnd(2))
                json_array_append_new(blocks, json_pack("{s:s, s:o}", "type", "text", "text",
                                                        random_string("text ")));
            else
                json_array_append_new(blocks, json_pack("{s:s, s:s}", "type", "image", "uri",
                                                        "https://img.example/x.png"));
        }
        json_object_set_new(j, "prompt", blocks);
    }
    static const char *modes[] = {"git", "none"};
    const char *mode = modes[rnd(2)];
    json_t *repo = json_pack("{s:s}", "mode", mode);
    if (strcmp(mode, "git") == 0) {
        static const char *urls[] = {"https://git.example.com/a/b.git", "git@host:org/r.git",
                                     "/srv/git/repo", "file:///srv/x"};
        json_object_set_new(repo, "url", json_string(urls[rnd(4)]));
        if (rnd(2))
            json_object_set_new(repo, "branch", json_string(rnd(2) ? "main" : "feature/a-1"));
        if (rnd(2))
            json_object_set_new(repo, "commit", json_string("deadbeef01"));
    }
    json_object_set_new(j, "repo", repo);
    static const char *rts[] = {"devcontainer", "local", "disabled"};
    int rtype = (int)rnd(3);
    json_t *rt = json_pack("{s:s}", "type", rts[rtype]);
    /* a devcontainer names its image, or a devcontainer.json that does */
    bool dc_image = rtype == 0 && rnd(2);
    if (dc_image)
        json_object_set_new(rt, "image", json_string("localhost/dev:1"));
    if (rnd(2) || (rtype == 0 && !dc_image))
        json_object_set_new(rt, rnd(2) ? "devcontainerPath" : "devcontainer_path",
                            json_string(".devcontainer/devcontainer.json"));
    if (rnd(2))
        json_object_set_new(rt, "resources",
                            json_pack("{s:i, s:i}", "cpu", 1 + (int)rnd(64), "memoryMiB",
                                      64 + (int)rnd(100000)));
    json_object_set_new(j, "runtime", rt);
    if (rnd(2)) {
        static const char *prov[] = {"git", "reflink", "btrfs", "zfs", "overlay", "agentfs", "copy"};
        json_t *pref = json_array();
        int start = (int)rnd(7), n = 1 + (int)rnd(7 - (unsigned)start);
        for (int i = 0; i < n; i++)
            json_array_append_new(pref, json_string(prov[start + i]));
        json_t *ws = json_pack("{s:o}", "snapshotPreference", pref);
        if (rnd(2))
            json_object_set_new(ws, "executionHostId", random_string("exec-"));
        json_object_set_new(j, "workspace", ws);
    }
    json_t *agents = json_array();
    int na = 1 + (int)rnd(4);
    for (int i = 0; i < na; i++) {
        json_t *a = json_pack("{s:o}", "type", random_string("agent"));
        if (rnd(2))
            json_object_set_new(a, "version", json_string(rnd(2) ? "latest" : "2.0.76"));
        if (rnd(2))
            json_object_set_new(a, "count", json_integer(1 + (int)rnd(5)));
        if (rnd(3) == 0)
            json_object_set_new(a, "settings",
                                json_pack("{s:[{s:s},{s:i}]}", "scenario", "thought", "hi", "sleep",
                                          (int)rnd(100)));
        json_array_append_new(agents, a);
    }
    json_object_set_new(j, "agents", agents);
    if (rnd(2)) {
        static const char *dm[] = {"pr", "branch", "patch"};
        json_t *d = json_pack("{s:s}", "mode", dm[rnd(3)]);
        if (rnd(2))
            json_object_set_new(d, rnd(2) ? "targetBranch" : "target_branch", json_string("main"));
        json_object_set_new(j, "delivery", d);
    }
    if (rnd(2)) {
        json_t *labels = json_object();
        int n = (int)rnd(4);
        for (int i = 0; i < n; i++) {
            char k[16];
            snprintf(k, sizeof(k), "k%d", i);
            json_object_set_new(labels, k, random_string("v"));
        }
        json_object_set_new(j, "labels", labels);
    }
    if (rnd(3) == 0)
        json_object_set_new(j, "webhooks",
                            json_pack("[{s:s, s:s}, {s:[s, s], s:s, s:s}]", "event",
                                      "session.completed", "url", "https://hooks.example/x",
                                      "events", "session.*", "session.failed", "url",
                                      "https://hooks.example/y", "secret", "k"));
    return j;
}

static void test_random_round_trips(void **state) {
    for (int i = 0; i < 2000; i++) {
        json_t *in = random_request();
        struct task_request *r1 = NULL, *r2 = NULL;
        struct ah_problem p = {0};
        if (task_request_parse(in, &r1, &p) != 0) {
            char *s = json_dumps(in, 0);
            fail_msg("valid request #%d rejected: %s\n%s", i, p.detail, s);
        }
        json_t *out1 = task_request_to_json(r1);
        assert_non_null(out1);
        assert_int_equal(task_request_parse(out1, &r2, &p), 0);
        json_t *out2 = task_request_to_json(r2);
        if (!json_equal(out1, out2)) {
            char *a = json_dumps(out1, JSON_SORT_KEYS), *b = json_dumps(out2, JSON_SORT_KEYS);
            fail_msg("round trip #%d differs:\n%s\n%s", i, a, b);
        }
        /* the canonical form keeps every value the client sent */
        assert_int_equal(json_array_size(json_object_get(out1, "agents")),
                         json_array_size(json_object_get(in, "agents")));
        assert_int_equal(task_request_session_count(r1), task_request_session_count(r2));
        json_decref(in);
        json_decref(out1);
        json_decref(out2);
        task_request_free(r1);
        task_request_free(r2);
    }
}

static void test_prompt_text(void **state) {
    struct ah_problem p = {0};
    json_t *v = json_pack("[{s:s,s:s},{s:s,s:s},{s:s,s:s}]", "type", "text", "text", "one", "type",
                          "image", "uri", "https://x", "type", "text", "text", "two");
    json_t *blocks = prompt_parse(v, "prompt", &p);
    assert_non_null(blocks);
    char *t = prompt_text(blocks);
    assert_string_equal(t, "one\ntwo");
    free(t);
    json_decref(blocks);
    json_decref(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal),
        cmocka_unit_test(test_full_example),
        cmocka_unit_test(test_snake_case_aliases),
        cmocka_unit_test(test_prompt),
        cmocka_unit_test(test_repo),
        cmocka_unit_test(test_runtime),
        cmocka_unit_test(test_workspace),
        cmocka_unit_test(test_agents),
        cmocka_unit_test(test_agent_shorthand),
        cmocka_unit_test(test_agent_aliases),
        cmocka_unit_test(test_delivery_labels_webhooks),
        cmocka_unit_test(test_every_error_at_once),
        cmocka_unit_test(test_random_round_trips),
        cmocka_unit_test(test_prompt_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
