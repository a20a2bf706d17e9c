/*
 * task_request.c — parsing and validating the body of POST /api/v1/tasks (API.md §5.2).
 *
 * The parser visits every field and keeps going after the first error, so one 400 names every bad
 * field (`errors` map of D4, keys are dotted paths such as `agents[1].count`). It accepts the
 * snake_case aliases of D1 on input but refuses a body that spells one field both ways, and it
 * refuses unknown members: a typo must not silently drop a setting. task_request_to_json emits the
 * canonical camelCase form; the two functions round-trip exactly.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core.h"

/* ---- member bookkeeping ---------------------------------------------------------------------- */

struct member {
    const char *name;  /* canonical (emitted) spelling */
    const char *alias; /* accepted snake_case alias or NULL */
};

static void join(char *out, size_t n, const char *path, const char *key) {
    if (path && *path)
        snprintf(out, n, "%s.%s", path, key);
    else
        snprintf(out, n, "%s", key);
}

/* Flags members that are not in `known` and fields spelt both ways. */
static void check_members(const json_t *obj, const char *path, const struct member *known,
                          size_t n_known, struct ah_problem *p) {
    const char *key;
    json_t *v;
    char fp[256];
    json_object_foreach((json_t *)obj, key, v) {
        bool found = false;
        for (size_t i = 0; i < n_known && !found; i++) {
            if (strcmp(key, known[i].name) == 0)
                found = true;
            else if (known[i].alias && strcmp(key, known[i].alias) == 0) {
                found = true;
                if (json_object_get(obj, known[i].name)) {
                    join(fp, sizeof(fp), path, known[i].name);
                    problem_field(p, fp, "given twice (as %s and %s)", known[i].name,
                                  known[i].alias);
                }
            }
        }
        if (!found) {
            join(fp, sizeof(fp), path, key);
            problem_field(p, fp, "is not a known field");
        }
    }
}

static json_t *member(const json_t *obj, const struct member *m) {
    json_t *v = json_object_get(obj, m->name);
    if (!v && m->alias)
        v = json_object_get(obj, m->alias);
    return v;
}

/* ---- value checks ---------------------------------------------------------------------------- */

static bool utf8_len_ok(const char *s, size_t max) {
    return strlen(s) <= max;
}

static bool name_chars_ok(const char *s) {
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
            return false;
    return true;
}

/* A required or optional string; returns a copy (caller owns) or NULL. *ok goes false on error. */
static char *take_string(const json_t *v, const char *path, size_t max, bool required, bool *ok,
                         struct ah_problem *p) {
    if (!v || json_is_null(v)) {
        if (required) {
            problem_field(p, path, "is required");
            *ok = false;
        }
        return NULL;
    }
    if (!json_is_string(v)) {
        problem_field(p, path, "must be a string");
        *ok = false;
        return NULL;
    }
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        problem_field(p, path, "must not contain NUL characters");
        *ok = false;
        return NULL;
    }
    if (!*s) {
        problem_field(p, path, "must not be empty");
        *ok = false;
        return NULL;
    }
    if (!utf8_len_ok(s, max)) {
        problem_field(p, path, "must be at most %zu bytes", max);
        *ok = false;
        return NULL;
    }
    char *copy = strdup(s);
    if (!copy) {
        problem_set(p, AH_E_NOMEM, "out of memory");
        *ok = false;
    }
    return copy;
}

static char *take_name(const json_t *v, const char *path, bool required, bool *ok,
                       struct ah_problem *p) {
    char *s = take_string(v, path, AH_LIMIT_NAME, required, ok, p);
    if (s && !name_chars_ok(s)) {
        problem_field(p, path, "may only contain letters, digits, '.', '_' and '-'");
        *ok = false;
        free(s);
        return NULL;
    }
    return s;
}

static bool url_ok(const char *s, bool allow_scp, bool http_only) {
    static const char *const schemes[] = {"https://", "http://", "ssh://", "git://", "file://"};
    size_t n = sizeof(schemes) / sizeof(schemes[0]);
    for (size_t i = 0; i < (http_only ? 2 : n); i++) {
        size_t l = strlen(schemes[i]);
        if (strncasecmp(s, schemes[i], l) == 0) {
            const char *rest = s + l;
            if (strcmp(schemes[i], "file://") == 0)
                return rest[0] == '/';
            return rest[0] && rest[0] != '/' && !strpbrk(rest, " \t\r\n");
        }
    }
    if (http_only)
        return false;
    if (s[0] == '/') /* a local path to a repository on the server */
        return !strpbrk(s, "\r\n");
    if (!allow_scp || strstr(s, "://")) /* an unsupported scheme, not an scp address */
        return false;
    /* scp-style: [user@]host:path, with no "://" and a host before the first ':' */
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || colon[1] == '\0' || strpbrk(s, " \t\r\n"))
        return false;
    for (const char *c = s; c < colon; c++)
        if (*c == '/')
            return false;
    return true;
}

/* git check-ref-format, the parts that matter for a branch name a client sends. */
static bool branch_ok(const char *s) {
    if (s[0] == '-' || s[0] == '/' || strstr(s, "..") || strstr(s, "@{") || strstr(s, "//"))
        return false;
    size_t n = strlen(s);
    if (s[n - 1] == '/' || s[n - 1] == '.' || (n >= 5 && strcmp(s + n - 5, ".lock") == 0))
        return false;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f || strchr(" ~^:?*[\\", *c))
            return false;
    return true;
}

static bool commit_ok(const char *s) {
    size_t n = strlen(s);
    if (n < 4 || n > 64)
        return false;
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s))
            return false;
    return true;
}

static int enum_index(const char *s, const char *const *names, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return (int)i;
    return -1;
}

static const char *const repo_modes[] = {"git", "upload", "none"};
static const char *const runtime_types[] = {"devcontainer", "local", "disabled"};
static const char *const delivery_modes[] = {"pr", "branch", "patch"};
static const char *const snapshot_providers[] = {"git",   "reflink", "btrfs", "zfs",
                                                 "overlay", "agentfs", "copy"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *repo_mode_name(enum repo_mode m) {
    return repo_modes[m];
}
const char *runtime_type_name(enum runtime_type t) {
    return runtime_types[t];
}
const char *delivery_mode_name(enum delivery_mode m) {
    return delivery_modes[m];
}

static void list_names(char *out, size_t n, const char *const *names, size_t count) {
    out[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        size_t l = strlen(out);
        snprintf(out + l, n - l, "%s%s", i ? ", " : "", names[i]);
    }
}

/* A required enum member; returns its index or -1 after recording the error. */
static int take_enum(const json_t *v, const char *path, const char *const *names, size_t count,
                     struct ah_problem *p) {
    if (!v) {
        problem_field(p, path, "is required");
        return -1;
    }
    int i = json_is_string(v) ? enum_index(json_string_value(v), names, count) : -1;
    if (i < 0) {
        char all[160];
        list_names(all, sizeof(all), names, count);
        problem_field(p, path, "must be one of: %s", all);
    }
    return i;
}

static bool take_int(const json_t *v, const char *path, int64_t min, int64_t max, int64_t *ret,
                     struct ah_problem *p) {
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        problem_field(p, path, "must be an integer from %lld to %lld", (long long)min,
                      (long long)max);
        return false;
    }
    *ret = json_integer_value(v);
    return true;
}

/* ---- prompt (API.md §5.1) -------------------------------------------------------------------- */

static bool block_string(const json_t *b, const char *key, const char *path, bool required,
                         struct ah_problem *p) {
    json_t *v = json_object_get(b, key);
    char fp[256];
    snprintf(fp, sizeof(fp), "%s.%s", path, key);
    if (!v) {
        if (required)
            problem_field(p, fp, "is required");
        return !required;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        problem_field(p, fp, "must be a non-empty string");
        return false;
    }
    return true;
}

json_t *prompt_parse(const json_t *value, const char *path, struct ah_problem *p) {
    AH_AUTO(json_decrefp) json_t *blocks = NULL;
    if (!value) {
        problem_field(p, path, "is required");
        return NULL;
    }
    if (json_is_string(value)) {
        blocks = json_pack("[{s:s, s:O}]", "type", "text", "text", value);
    } else if (json_is_array(value)) {
        blocks = json_deep_copy(value);
    } else {
        problem_field(p, path, "must be a string or an array of content blocks");
        return NULL;
    }
    if (!blocks) {
        problem_set(p, AH_E_NOMEM, "out of memory");
        return NULL;
    }
    if (json_array_size(blocks) == 0) {
        problem_field(p, path, "must not be empty");
        return NULL;
    }
    bool ok = true, has_content = false;
    size_t text_bytes = 0;
    size_t i;
    json_t *b;
    json_array_foreach(blocks, i, b) {
        char bp[256];
        snprintf(bp, sizeof(bp), "%s[%zu]", path, i);
        if (!json_is_object(b)) {
            problem_field(p, bp, "must be an object");
            ok = false;
            continue;
        }
        json_t *type = json_object_get(b, "type");
        const char *t = json_string_value(type);
        if (!t) {
            char fp[260];
            snprintf(fp, sizeof(fp), "%s.type", bp);
            problem_field(p, fp, "is required (text, image, audio or resource)");
            ok = false;
        } else if (strcmp(t, "text") == 0) {
            if (!block_string(b, "text", bp, true, p)) {
                ok = false;
                continue;
            }
            const char *text = json_string_value(json_object_get(b, "text"));
            text_bytes += json_string_length(json_object_get(b, "text"));
            for (const char *c = text; *c; c++)
                if (!isspace((unsigned char)*c)) {
                    has_content = true;
                    break;
                }
        } else if (strcmp(t, "image") == 0 || strcmp(t, "audio") == 0) {
            bool by_uri = json_object_get(b, "uri") != NULL;
            if (by_uri && strcmp(t, "image") == 0)
                ok &= block_string(b, "uri", bp, true, p);
            else
                ok &= block_string(b, "data", bp, true, p) &
                      block_string(b, "mimeType", bp, true, p);
            has_content = true;
        } else if (strcmp(t, "resource") == 0) {
            json_t *r = json_object_get(b, "resource");
            char fp[260];
            snprintf(fp, sizeof(fp), "%s.resource", bp);
            if (!json_is_object(r)) {
                problem_field(p, fp, "must be an object with a uri");
                ok = false;
            } else {
                ok &= block_string(r, "uri", fp, true, p);
            }
            has_content = true;
        } else {
            char fp[260];
            snprintf(fp, sizeof(fp), "%s.type", bp);
            problem_field(p, fp, "must be one of: text, image, audio, resource");
            ok = false;
        }
    }
    if (ok && !has_content) {
        problem_field(p, path, "must contain some non-blank text");
        ok = false;
    }
    if (ok && text_bytes > AH_LIMIT_PROMPT) {
        problem_field(p, path, "text is %zu bytes; the limit is %d bytes", text_bytes,
                      AH_LIMIT_PROMPT);
        ok = false;
    }
    return ok ? AH_TAKE(blocks) : NULL;
}

size_t prompt_text_size(const json_t *value) {
    if (json_is_string(value))
        return json_string_length(value);
    size_t n = 0, i;
    json_t *b;
    json_array_foreach(value, i, b) {
        const char *t = json_string_value(json_object_get(b, "type"));
        if (t && strcmp(t, "text") == 0)
            n += json_string_length(json_object_get(b, "text"));
    }
    return n;
}

char *prompt_text(const json_t *blocks) {
    struct ah_buf b = {0};
    size_t i;
    json_t *blk;
    json_array_foreach(blocks, i, blk) {
        const char *t = json_string_value(json_object_get(blk, "type"));
        const char *text = json_string_value(json_object_get(blk, "text"));
        if (t && text && strcmp(t, "text") == 0) {
            if ((b.n && ah_buf_puts(&b, "\n") < 0) || ah_buf_puts(&b, text) < 0) {
                ah_buf_clear(&b);
                return NULL;
            }
        }
    }
    return ah_buf_steal(&b);
}

/* ---- sections -------------------------------------------------------------------------------- */

static void parse_repo(const json_t *v, struct task_request *r, struct ah_problem *p) {
    static const struct member known[] = {{"mode", NULL}, {"url", NULL}, {"branch", NULL},
                                          {"commit", NULL}};
    if (!v) {
        problem_field(p, "repo", "is required");
        return;
    }
    if (!json_is_object(v)) {
        problem_field(p, "repo", "must be an object");
        return;
    }
    check_members(v, "repo", known, COUNT(known), p);
    bool ok = true;
    int mode = take_enum(json_object_get(v, "mode"), "repo.mode", repo_modes, COUNT(repo_modes), p);
    r->repo.url = take_string(json_object_get(v, "url"), "repo.url", AH_LIMIT_URL, false, &ok, p);
    r->repo.branch =
        take_string(json_object_get(v, "branch"), "repo.branch", AH_LIMIT_NAME, false, &ok, p);
    r->repo.commit =
        take_string(json_object_get(v, "commit"), "repo.commit", AH_LIMIT_NAME, false, &ok, p);
    if (r->repo.url && !url_ok(r->repo.url, true, false))
        problem_field(p, "repo.url",
                      "must be an http(s)://, ssh://, git:// or file:// URL, an absolute path or "
                      "an scp-style address (git@host:org/repo.git)");
    if (r->repo.branch && !branch_ok(r->repo.branch))
        problem_field(p, "repo.branch", "is not a valid git branch name");
    if (r->repo.commit && !commit_ok(r->repo.commit))
        problem_field(p, "repo.commit", "must be a commit hash of 4 to 64 hex digits");
    if (mode < 0)
        return;
    r->repo.mode = (enum repo_mode)mode;
    if (r->repo.mode == REPO_GIT && !r->repo.url && !json_object_get(v, "url"))
        problem_field(p, "repo.url", "is required when repo.mode is git");
    if (r->repo.mode == REPO_UPLOAD)
        problem_field(p, "repo.mode",
                      "upload is not supported by this server yet; use git or none");
    if (r->repo.mode == REPO_NONE && (r->repo.url || r->repo.branch || r->repo.commit))
        problem_field(p, "repo", "url, branch and commit are only allowed when mode is git");
}

static void parse_runtime(const json_t *v, struct task_request *r, struct ah_problem *p) {
    static const struct member known[] = {{"type", NULL},
                                          {"devcontainerPath", "devcontainer_path"},
                                          {"resources", NULL},
                                          {"sandbox", NULL},
                                          {"image", NULL}};
    if (!v) {
        problem_field(p, "runtime", "is required");
        return;
    }
    if (!json_is_object(v)) {
        problem_field(p, "runtime", "must be an object");
        return;
    }
    check_members(v, "runtime", known, COUNT(known), p);
    int t = take_enum(json_object_get(v, "type"), "runtime.type", runtime_types,
                      COUNT(runtime_types), p);
    if (t >= 0)
        r->runtime.type = (enum runtime_type)t;
    bool ok = true;
    r->runtime.devcontainer_path = take_string(member(v, &known[1]), "runtime.devcontainerPath",
                                               AH_LIMIT_URL, false, &ok, p);
    /* D52: a profile name; whether this server has it is the server's call (422), not ours */
    r->runtime.sandbox = take_string(json_object_get(v, "sandbox"), "runtime.sandbox", 64, false,
                                     &ok, p);
    if (r->runtime.sandbox && !r->runtime.sandbox[0])
        problem_field(p, "runtime.sandbox", "must not be empty");
    /* a devcontainer.json inside the workspace, read when the session starts */
    const char *dcp = r->runtime.devcontainer_path;
    if (dcp && (!dcp[0] || dcp[0] == '/' || strstr(dcp, "..")))
        problem_field(p, "runtime.devcontainerPath",
                      "must be a relative path inside the workspace, without ..");
    /* the devcontainer's image: a reference podman takes as such, never one of its options */
    r->runtime.image = take_string(json_object_get(v, "image"), "runtime.image", 255, false, &ok, p);
    const char *img = r->runtime.image;
    if (img && (!img[0] || img[0] == '-' ||
                strspn(img, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/:@-") !=
                    strlen(img)))
        problem_field(p, "runtime.image",
                      "must be an image reference (letters, digits and ._/:@-, not starting "
                      "with -)");
    if (img && t >= 0 && r->runtime.type != RUNTIME_DEVCONTAINER)
        problem_field(p, "runtime.image", "is only for runtime.type devcontainer");
    if (t == RUNTIME_DEVCONTAINER && !json_object_get(v, "image") &&
        !member(v, &known[1]))
        problem_field(p, "runtime.image",
                      "is required when runtime.type is devcontainer (or give "
                      "runtime.devcontainerPath, a devcontainer.json naming one)");
    json_t *res = json_object_get(v, "resources");
    if (!res)
        return;
    if (!json_is_object(res)) {
        problem_field(p, "runtime.resources", "must be an object with cpu and memoryMiB");
        return;
    }
    static const struct member rk[] = {{"cpu", NULL},
                                       {"memoryMiB", "memory_mib"},
                                       {"pids", NULL},
                                       {"fileSizeMiB", "file_size_mib"},
                                       {"wallTimeSec", "wall_time_sec"}};
    check_members(res, "runtime.resources", rk, COUNT(rk), p);
    json_t *cpu = json_object_get(res, "cpu"), *mem = member(res, &rk[1]);
    bool good = true;
    if (!cpu) {
        problem_field(p, "runtime.resources.cpu", "is required");
        good = false;
    } else {
        /* cores, fractions allowed: a cgroup CPU quota is as fine-grained as that (issue 19) */
        double c = json_number_value(cpu);
        if (!json_is_number(cpu) || c < 0.01 || c > 1024) {
            problem_field(p, "runtime.resources.cpu", "must be a number of cores from 0.01 to 1024");
            good = false;
        } else {
            r->runtime.cpu = c;
        }
    }
    if (!mem) {
        problem_field(p, "runtime.resources.memoryMiB", "is required");
        good = false;
    } else {
        good &= take_int(mem, "runtime.resources.memoryMiB", 16, 16 * 1024 * 1024,
                         &r->runtime.memory_mib, p);
    }
    /* optional limits of the sandbox (issue 19): processes, largest file, wall time */
    json_t *pids = json_object_get(res, "pids"), *fsz = member(res, &rk[3]),
           *wall = member(res, &rk[4]);
    if (pids)
        good &= take_int(pids, "runtime.resources.pids", 1, 1 << 22, &r->runtime.pids, p);
    if (fsz)
        good &= take_int(fsz, "runtime.resources.fileSizeMiB", 1, 16 * 1024 * 1024,
                         &r->runtime.file_size_mib, p);
    if (wall)
        good &= take_int(wall, "runtime.resources.wallTimeSec", 1, 30 * 24 * 3600,
                         &r->runtime.wall_time_s, p);
    r->runtime.has_resources = good;
}

static void parse_workspace(const json_t *v, struct task_request *r, struct ah_problem *p) {
    static const struct member known[] = {{"snapshotPreference", "snapshot_preference"},
                                          {"executionHostId", "execution_host_id"}};
    if (!v)
        return;
    if (!json_is_object(v)) {
        problem_field(p, "workspace", "must be an object");
        return;
    }
    r->has_workspace = true;
    check_members(v, "workspace", known, COUNT(known), p);
    bool ok = true;
    r->execution_host_id = take_name(member(v, &known[1]), "workspace.executionHostId", false,
                                     &ok, p);
    json_t *pref = member(v, &known[0]);
    const char *path = "workspace.snapshotPreference";
    if (!pref) {
        problem_field(p, path, "is required when workspace is given");
        return;
    }
    if (!json_is_array(pref) || json_array_size(pref) == 0 ||
        json_array_size(pref) > AH_LIMIT_LIST_ITEMS) {
        problem_field(p, path, "must be an array of 1 to %d provider names", AH_LIMIT_LIST_ITEMS);
        return;
    }
    r->snapshot_preference = calloc(json_array_size(pref), sizeof(char *));
    if (!r->snapshot_preference) {
        problem_set(p, AH_E_NOMEM, "out of memory");
        return;
    }
    size_t i;
    json_t *item;
    json_array_foreach(pref, i, item) {
        char fp[64];
        snprintf(fp, sizeof(fp), "%s[%zu]", path, i);
        const char *s = json_string_value(item);
        if (!s || enum_index(s, snapshot_providers, COUNT(snapshot_providers)) < 0) {
            char all[160];
            list_names(all, sizeof(all), snapshot_providers, COUNT(snapshot_providers));
            problem_field(p, fp, "must be one of: %s", all);
            continue;
        }
        for (size_t k = 0; k < r->n_snapshot_preference; k++)
            if (strcmp(r->snapshot_preference[k], s) == 0) {
                problem_field(p, fp, "repeats %s", s);
                s = NULL;
                break;
            }
        if (!s)
            continue;
        if (!(r->snapshot_preference[r->n_snapshot_preference] = strdup(s))) {
            problem_set(p, AH_E_NOMEM, "out of memory");
            return;
        }
        r->n_snapshot_preference++;
    }
}

/* `agents`, or (single) the shorthand `agent` of D25 as a list of one; errors then name
 * `agent.type` and so on, the field the client sent. */
static void parse_agents(const json_t *v, bool single, struct task_request *r,
                         struct ah_problem *p) {
    static const struct member known[] = {
        {"type", NULL}, {"version", NULL}, {"count", NULL}, {"settings", NULL}};
    AH_AUTO(json_decrefp) json_t *one = NULL;
    if (single) {
        if (!json_is_object(v)) {
            problem_field(p, "agent", "must be an object with a type");
            return;
        }
        if (!(one = json_pack("[O]", v))) {
            problem_set(p, AH_E_NOMEM, "out of memory");
            return;
        }
        v = one;
    }
    if (!v) {
        problem_field(p, "agents", "is required");
        return;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) {
        problem_field(p, "agents", "must contain at least one entry");
        return;
    }
    if (json_array_size(v) > AH_LIMIT_AGENTS) {
        problem_field(p, "agents", "must contain at most %d entries", AH_LIMIT_AGENTS);
        return;
    }
    r->agents = calloc(json_array_size(v), sizeof(*r->agents));
    if (!r->agents) {
        problem_set(p, AH_E_NOMEM, "out of memory");
        return;
    }
    int64_t total = 0;
    size_t i;
    json_t *a;
    json_array_foreach(v, i, a) {
        char ap[32], fp[64];
        if (single)
            snprintf(ap, sizeof(ap), "agent");
        else
            snprintf(ap, sizeof(ap), "agents[%zu]", i);
        struct task_agent *ag = &r->agents[r->n_agents++];
        ag->count = 1;
        if (!json_is_object(a)) {
            problem_field(p, ap, "must be an object");
            continue;
        }
        check_members(a, ap, known, COUNT(known), p);
        bool ok = true;
        snprintf(fp, sizeof(fp), "%s.type", ap);
        ag->type = take_name(json_object_get(a, "type"), fp, true, &ok, p);
        snprintf(fp, sizeof(fp), "%s.version", ap);
        ag->version = take_string(json_object_get(a, "version"), fp, AH_LIMIT_NAME, false, &ok, p);
        if (!ag->version && ok && !(ag->version = strdup("latest")))
            problem_set(p, AH_E_NOMEM, "out of memory");
        json_t *count = json_object_get(a, "count");
        snprintf(fp, sizeof(fp), "%s.count", ap);
        if (count && !take_int(count, fp, 1, AH_LIMIT_SESSIONS_PER_TASK, &ag->count, p))
            ag->count = 1;
        total += ag->count;
        json_t *settings = json_object_get(a, "settings");
        snprintf(fp, sizeof(fp), "%s.settings", ap);
        if (settings && !json_is_object(settings))
            problem_field(p, fp, "must be an object");
        else if (settings)
            ag->settings = json_deep_copy(settings);
    }
    if (total > AH_LIMIT_SESSIONS_PER_TASK)
        problem_field(p, "agents", "ask for %lld sessions; the limit per task is %d",
                      (long long)total, AH_LIMIT_SESSIONS_PER_TASK);
}

static void parse_delivery(const json_t *v, struct task_request *r, struct ah_problem *p) {
    static const struct member known[] = {
        {"mode", NULL}, {"targetBranch", "target_branch"}, {"branch", NULL}};
    if (!v)
        return;
    if (!json_is_object(v)) {
        problem_field(p, "delivery", "must be an object");
        return;
    }
    check_members(v, "delivery", known, COUNT(known), p);
    int m = take_enum(json_object_get(v, "mode"), "delivery.mode", delivery_modes,
                      COUNT(delivery_modes), p);
    bool ok = true;
    r->target_branch =
        take_string(member(v, &known[1]), "delivery.targetBranch", AH_LIMIT_NAME, false, &ok, p);
    if (r->target_branch && !branch_ok(r->target_branch))
        problem_field(p, "delivery.targetBranch", "is not a valid git branch name");
    r->delivery_branch =
        take_string(member(v, &known[2]), "delivery.branch", AH_LIMIT_NAME, false, &ok, p);
    if (r->delivery_branch && !branch_ok(r->delivery_branch))
        problem_field(p, "delivery.branch", "is not a valid git branch name");
    if (m >= 0) {
        r->delivery_mode = (enum delivery_mode)m;
        r->has_delivery = true;
    }
}

static void parse_labels(const json_t *v, struct task_request *r, struct ah_problem *p) {
    if (!v)
        return;
    if (!json_is_object(v)) {
        problem_field(p, "labels", "must be an object of string values");
        return;
    }
    if (json_object_size(v) > AH_LIMIT_LABELS) {
        problem_field(p, "labels", "must have at most %d entries", AH_LIMIT_LABELS);
        return;
    }
    const char *key;
    json_t *val;
    bool ok = true;
    json_object_foreach((json_t *)v, key, val) {
        char fp[AH_LIMIT_LABEL_KEY + 16];
        snprintf(fp, sizeof(fp), "labels.%.*s", AH_LIMIT_LABEL_KEY, key);
        if (!*key || strlen(key) > AH_LIMIT_LABEL_KEY || !name_chars_ok(key)) {
            problem_field(p, fp, "keys are 1 to %d letters, digits, '.', '_' or '-'",
                          AH_LIMIT_LABEL_KEY);
            ok = false;
        } else if (!json_is_string(val) || json_string_length(val) > AH_LIMIT_LABEL_VALUE) {
            problem_field(p, fp, "must be a string of at most %d bytes", AH_LIMIT_LABEL_VALUE);
            ok = false;
        }
    }
    if (ok)
        r->labels = json_deep_copy(v);
}

static bool webhook_event_ok(const char *s) {
    /* session.<verb>: the catalogue is open (API.md §8.4), the shape is not; session.* is every
     * event of the session */
    if (strncmp(s, "session.", 8) != 0 || !s[8])
        return false;
    if (!strcmp(s + 8, "*"))
        return true;
    for (const char *c = s + 8; *c; c++)
        if (!islower((unsigned char)*c) && *c != '_')
            return false;
    return true;
}

static void parse_webhook_events(const json_t *v, const char *wp, struct task_webhook *wh,
                                 struct ah_problem *p) {
    char fp[64];
    snprintf(fp, sizeof(fp), "%s.events", wp);
    if (!json_is_array(v) || json_array_size(v) == 0 ||
        json_array_size(v) > AH_LIMIT_WEBHOOK_EVENTS) {
        problem_field(p, fp, "must be an array of 1 to %d event names", AH_LIMIT_WEBHOOK_EVENTS);
        return;
    }
    if (!(wh->events = calloc(json_array_size(v) + 1, sizeof(*wh->events)))) {
        problem_set(p, AH_E_NOMEM, "out of memory");
        return;
    }
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(v, i, e) {
        bool ok = true;
        char ep[80];
        snprintf(ep, sizeof(ep), "%s[%zu]", fp, i);
        char *name = take_string(e, ep, AH_LIMIT_NAME, true, &ok, p);
        if (!name)
            continue;
        wh->events[n++] = name;
        if (!webhook_event_ok(name))
            problem_field(p, ep, "must look like session.completed (or session.* for all)");
    }
}

static void parse_webhooks(const json_t *v, struct task_request *r, struct ah_problem *p) {
    static const struct member known[] = {
        {"event", NULL}, {"events", NULL}, {"url", NULL}, {"secret", NULL}};
    if (!v)
        return;
    if (!json_is_array(v) || json_array_size(v) > AH_LIMIT_WEBHOOKS) {
        problem_field(p, "webhooks", "must be an array of at most %d entries", AH_LIMIT_WEBHOOKS);
        return;
    }
    r->webhooks = calloc(json_array_size(v) + 1, sizeof(*r->webhooks));
    if (!r->webhooks) {
        problem_set(p, AH_E_NOMEM, "out of memory");
        return;
    }
    size_t i;
    json_t *w;
    json_array_foreach(v, i, w) {
        char wp[32], fp[48];
        snprintf(wp, sizeof(wp), "webhooks[%zu]", i);
        struct task_webhook *wh = &r->webhooks[r->n_webhooks++];
        if (!json_is_object(w)) {
            problem_field(p, wp, "must be an object with event (or events) and url");
            continue;
        }
        check_members(w, wp, known, COUNT(known), p);
        bool ok = true;
        snprintf(fp, sizeof(fp), "%s.event", wp);
        const json_t *events = json_object_get(w, "events");
        if (events && json_object_get(w, "event"))
            problem_field(p, fp, "give either event or events, not both");
        else if (events)
            parse_webhook_events(events, wp, wh, p);
        else {
            wh->event = take_string(json_object_get(w, "event"), fp, AH_LIMIT_NAME, true, &ok, p);
            if (wh->event && !webhook_event_ok(wh->event))
                problem_field(p, fp, "must look like session.completed (or session.* for all)");
        }
        snprintf(fp, sizeof(fp), "%s.url", wp);
        wh->url = take_string(json_object_get(w, "url"), fp, AH_LIMIT_URL, true, &ok, p);
        if (wh->url && !url_ok(wh->url, false, true))
            problem_field(p, fp, "must be an http:// or https:// URL");
        snprintf(fp, sizeof(fp), "%s.secret", wp);
        wh->secret =
            take_string(json_object_get(w, "secret"), fp, AH_LIMIT_WEBHOOK_SECRET, false, &ok, p);
    }
}

/* ---- the request ----------------------------------------------------------------------------- */

int task_request_parse(const json_t *body, struct task_request **ret, struct ah_problem *p) {
    static const struct member known[] = {
        {"tenantId", "tenant_id"}, {"projectId", "project_id"}, {"prompt", NULL},
        {"repo", NULL},            {"runtime", NULL},           {"workspace", NULL},
        {"agents", NULL},          {"delivery", NULL},          {"labels", NULL},
        {"webhooks", NULL},        {"agent", NULL},
    };
    struct ah_problem local = {0};
    struct ah_problem *pp = p ? p : &local;
    int before = pp->code;
    size_t errors_before = pp->errors ? json_object_size(pp->errors) : 0;

    if (!json_is_object(body)) {
        problem_set(pp, AH_E_INVAL, "the request body must be a JSON object");
        problem_clear(&local);
        return AH_E_INVAL;
    }
    AH_AUTO(task_request_freep) struct task_request *r = calloc(1, sizeof(*r));
    if (!r) {
        problem_clear(&local);
        return problem_set(p, AH_E_NOMEM, "out of memory");
    }
    check_members(body, "", known, COUNT(known), pp);
    bool ok = true;
    r->tenant_id = take_name(member(body, &known[0]), "tenantId", false, &ok, pp);
    r->project_id = take_name(member(body, &known[1]), "projectId", false, &ok, pp);
    r->prompt = prompt_parse(json_object_get(body, "prompt"), "prompt", pp);
    parse_repo(json_object_get(body, "repo"), r, pp);
    parse_runtime(json_object_get(body, "runtime"), r, pp);
    parse_workspace(json_object_get(body, "workspace"), r, pp);
    json_t *agent = json_object_get(body, "agent"), *agents = json_object_get(body, "agents");
    if (agent && agents) /* D25: the shorthand or the list, never both */
        problem_field(pp, "agent", "give agent or agents, not both");
    else
        parse_agents(agent ? agent : agents, agent != NULL, r, pp);
    parse_delivery(json_object_get(body, "delivery"), r, pp);
    parse_labels(json_object_get(body, "labels"), r, pp);
    parse_webhooks(json_object_get(body, "webhooks"), r, pp);

    bool failed = pp->code != before ||
                  (pp->errors && json_object_size(pp->errors) != errors_before);
    int code = pp->code ? pp->code : AH_E_INVAL;
    if (failed && pp->errors && json_object_size(pp->errors) > 1 && code == AH_E_INVAL)
        snprintf(pp->detail, sizeof(pp->detail), "%zu fields are invalid; see errors",
                 json_object_size(pp->errors));
    problem_clear(&local);
    if (failed)
        return code;
    *ret = AH_TAKE(r);
    return 0;
}

const char *agent_alias_family(const char *type) {
    if (!type)
        return NULL;
    if (strcasecmp(type, "claude") == 0 ||
        (strncasecmp(type, "claude-", 7) == 0 && strcasecmp(type, "claude-code") != 0))
        return "claude-code";
    if ((strncasecmp(type, "gpt-", 4) == 0 && type[4]) || strcasecmp(type, "openai") == 0)
        return "codex";
    return NULL;
}

int task_agent_apply_alias(struct task_agent *a, const char *family) {
    /* the model the alias names: claude's version (3.5-sonnet), or the type itself (gpt-4o,
     * claude-3-opus) */
    const char *model = NULL;
    bool version_is_model = false;
    if (strcasecmp(a->type, "claude") == 0 || strcasecmp(a->type, "openai") == 0) {
        if (a->version && strcmp(a->version, "latest") != 0) {
            model = a->version;
            version_is_model = true;
        }
    } else {
        model = a->type;
    }
    char *type = strdup(family);
    char *version = version_is_model ? strdup("latest") : NULL;
    json_t *settings = a->settings ? json_incref(a->settings) : json_object();
    bool set_model = model && !json_object_get(settings, "model");
    if (!type || (version_is_model && !version) || !settings ||
        (set_model && json_object_set_new(settings, "model", json_string(model)) < 0)) {
        free(type);
        free(version);
        json_decref(settings);
        return AH_E_NOMEM;
    }
    free(a->type);
    a->type = type;
    if (version_is_model) {
        free(a->version);
        a->version = version;
    }
    json_decref(a->settings);
    a->settings = json_object_size(settings) ? settings : (json_decref(settings), NULL);
    return 0;
}

size_t task_request_session_count(const struct task_request *r) {
    size_t n = 0;
    for (size_t i = 0; i < r->n_agents; i++)
        n += (size_t)r->agents[i].count;
    return n;
}

static int set_str(json_t *obj, const char *key, const char *s) {
    return s ? json_object_set_new(obj, key, json_string(s)) : 0;
}

json_t *task_request_to_json(const struct task_request *r) {
    AH_AUTO(json_decrefp) json_t *j = json_object();
    if (!j)
        return NULL;
    int rc = 0;
    rc |= set_str(j, "tenantId", r->tenant_id);
    rc |= set_str(j, "projectId", r->project_id);
    rc |= json_object_set(j, "prompt", r->prompt);

    json_t *repo = json_pack("{s:s}", "mode", repo_mode_name(r->repo.mode));
    rc |= json_object_set_new(j, "repo", repo);
    if (repo) {
        rc |= set_str(repo, "url", r->repo.url);
        rc |= set_str(repo, "branch", r->repo.branch);
        rc |= set_str(repo, "commit", r->repo.commit);
    }

    json_t *rt = json_pack("{s:s}", "type", runtime_type_name(r->runtime.type));
    rc |= json_object_set_new(j, "runtime", rt);
    if (rt) {
        rc |= set_str(rt, "devcontainerPath", r->runtime.devcontainer_path);
        rc |= set_str(rt, "image", r->runtime.image);
        rc |= set_str(rt, "sandbox", r->runtime.sandbox);
        json_t *res = r->runtime.has_resources
                          ? json_pack("{s:o, s:I}", "cpu",
                                      r->runtime.cpu == (double)(json_int_t)r->runtime.cpu
                                          ? json_integer((json_int_t)r->runtime.cpu)
                                          : json_real(r->runtime.cpu),
                                      "memoryMiB", (json_int_t)r->runtime.memory_mib)
                          : NULL;
        if (res && r->runtime.pids)
            rc |= json_object_set_new(res, "pids", json_integer(r->runtime.pids));
        if (res && r->runtime.file_size_mib)
            rc |= json_object_set_new(res, "fileSizeMiB", json_integer(r->runtime.file_size_mib));
        if (res && r->runtime.wall_time_s)
            rc |= json_object_set_new(res, "wallTimeSec", json_integer(r->runtime.wall_time_s));
        if (r->runtime.has_resources)
            rc |= json_object_set_new(rt, "resources", res);
    }

    if (r->has_workspace) {
        json_t *ws = json_object(), *pref = json_array();
        for (size_t i = 0; pref && i < r->n_snapshot_preference; i++)
            rc |= json_array_append_new(pref, json_string(r->snapshot_preference[i]));
        rc |= json_object_set_new(j, "workspace", ws);
        if (ws) {
            rc |= json_object_set_new(ws, "snapshotPreference", pref);
            rc |= set_str(ws, "executionHostId", r->execution_host_id);
        } else {
            json_decref(pref);
        }
    }

    json_t *agents = json_array();
    rc |= json_object_set_new(j, "agents", agents);
    for (size_t i = 0; agents && i < r->n_agents; i++) {
        const struct task_agent *a = &r->agents[i];
        json_t *aj = json_pack("{s:s, s:s, s:I}", "type", a->type, "version", a->version, "count",
                               (json_int_t)a->count);
        if (aj && a->settings)
            rc |= json_object_set(aj, "settings", a->settings);
        rc |= json_array_append_new(agents, aj);
    }

    if (r->has_delivery) {
        json_t *d = json_pack("{s:s}", "mode", delivery_mode_name(r->delivery_mode));
        if (d)
            rc |= set_str(d, "targetBranch", r->target_branch);
        if (d)
            rc |= set_str(d, "branch", r->delivery_branch);
        rc |= json_object_set_new(j, "delivery", d);
    }
    if (r->labels)
        rc |= json_object_set(j, "labels", r->labels);
    if (r->webhooks) {
        json_t *wh = json_array();
        for (size_t i = 0; wh && i < r->n_webhooks; i++)
        {
            const struct task_webhook *w = &r->webhooks[i];
            json_t *o = json_pack("{s:s}", "url", w->url);
            if (o)
                rc |= set_str(o, "event", w->event);
            json_t *ev = w->events ? json_array() : NULL;
            for (char **e = w->events; ev && *e; e++)
                rc |= json_array_append_new(ev, json_string(*e));
            if (o && ev)
                rc |= json_object_set_new(o, "events", ev);
            if (o)
                rc |= set_str(o, "secret", w->secret);
            rc |= json_array_append_new(wh, o);
        }
        rc |= json_object_set_new(j, "webhooks", wh);
    }
    return rc ? NULL : AH_TAKE(j);
}

void task_request_free(struct task_request *r) {
    if (!r)
        return;
    free(r->tenant_id);
    free(r->project_id);
    json_decref(r->prompt);
    free(r->repo.url);
    free(r->repo.branch);
    free(r->repo.commit);
    free(r->runtime.devcontainer_path);
    free(r->runtime.image);
    free(r->runtime.sandbox);
    for (size_t i = 0; i < r->n_snapshot_preference; i++)
        free(r->snapshot_preference[i]);
    free(r->snapshot_preference);
    free(r->execution_host_id);
    for (size_t i = 0; i < r->n_agents; i++) {
        free(r->agents[i].type);
        free(r->agents[i].version);
        json_decref(r->agents[i].settings);
    }
    free(r->agents);
    free(r->target_branch);
    free(r->delivery_branch);
    json_decref(r->labels);
    for (size_t i = 0; i < r->n_webhooks; i++) {
        free(r->webhooks[i].event);
        for (char **e = r->webhooks[i].events; e && *e; e++)
            free(*e);
        free(r->webhooks[i].events);
        free(r->webhooks[i].url);
        free(r->webhooks[i].secret);
    }
    free(r->webhooks);
    free(r);
}
