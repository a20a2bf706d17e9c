/*
 * profile.c — the sandbox profiles a server offers (D52) and what this machine can provide.
 *
 * Built in: `default` (read-only root, writable workspace, private /tmp and $HOME, network
 * allowed), `offline` (the same without network) and `disabled` (no sandbox; a task may ask for
 * it only when the configuration says `[sandbox] allow-disabled = true`, D51). Configuration may
 * add profiles and change the built-in ones, key by key:
 *
 *   [sandbox]
 *   default = "offline"            # the profile of a task that names none
 *   allow-disabled = true
 *   bwrap = "/usr/bin/bwrap"
 *   [sandbox.build]
 *   network = "none"               # or "allow", or "allow-list" with allow-hosts
 *   allow-hosts = ["api.example.com:443", "127.0.0.1:8080"]  # allow-list: TCP to these only
 *   read-only = ["/opt/sdk"]       # made visible read-only (the root already is, unless hidden)
 *   read-write = ["/var/cache/build"]
 *   hidden = ["/srv/secrets"]      # made invisible (an empty directory, or /dev/null for a file)
 *   memory-mib = 2048
 *   pids = 256
 *   cpu = 2                        # cores
 *   file-size-mib = 1024
 *   wall-time-s = 3600
 *
 * Invariant: after sandbox_set_probe nothing here changes, so the set is read without locks.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

#define MAX_PROFILES 32

static void strv_free(char **v) {
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

static void profile_clear(struct sandbox_profile *p) {
    free(p->name);
    strv_free(p->read_only);
    strv_free(p->read_write);
    strv_free(p->hidden);
    strv_free(p->allow_hosts);
    memset(p, 0, sizeof(*p));
}

void sandbox_set_free(struct sandbox_set *s) {
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        profile_clear(&s->profiles[i]);
    free(s->default_name);
    free(s->bwrap);
    free(s->podman);
    free(s->podman_runtime);
    free(s->podman_network);
    free(s);
}

static struct sandbox_profile *find(struct sandbox_set *s, const char *name, size_t len) {
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->profiles[i].name) == len && !memcmp(s->profiles[i].name, name, len))
            return &s->profiles[i];
    return NULL;
}

/* Profile names appear in requests, paths of cgroups and messages: keep them plain. */
static bool good_name(const char *name, size_t len) {
    if (len == 0 || len > SANDBOX_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

static int add_profile(struct sandbox_set *s, const char *name, size_t len,
                       struct sandbox_profile **ret) {
    if (s->n == MAX_PROFILES)
        return AH_E_INVAL;
    struct sandbox_profile *p = &s->profiles[s->n];
    memset(p, 0, sizeof(*p));
    if (!(p->name = strndup(name, len)))
        return AH_E_NOMEM;
    s->n++;
    *ret = p;
    return 0;
}

/* A path list from configuration: absolute, no "..", at most SANDBOX_PATHS_MAX. */
static int take_paths(const json_t *v, const char *key, char ***field, struct ah_problem *err) {
    if (!json_is_array(v) || json_array_size(v) > SANDBOX_PATHS_MAX)
        return problem_set(err, AH_E_INVAL, "sandbox.%s must be a list of at most %d paths", key,
                           SANDBOX_PATHS_MAX);
    char **out = calloc(json_array_size(v) + 1, sizeof(char *));
    if (!out)
        return AH_E_NOMEM;
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        const char *path = json_string_value(item);
        if (!path || path[0] != '/' || strstr(path, "/..") || strlen(path) >= 4096) {
            strv_free(out);
            return problem_set(err, AH_E_INVAL,
                               "sandbox.%s: every path must be absolute, without '..'", key);
        }
        if (!(out[i] = strdup(path))) {
            strv_free(out);
            return AH_E_NOMEM;
        }
    }
    strv_free(*field);
    *field = out;
    return 0;
}

/* One allow-list destination: "host:port", host a DNS name or an IPv4 loopback address (any
 * other address has no route inside the sandbox's namespace: the relay's inside end can only
 * listen on loopback addresses, which a name is mapped to by the sandbox's /etc/hosts). */
static bool good_destination(const char *d, char *norm, size_t n) {
    const char *colon = strrchr(d, ':');
    if (!colon || colon == d || (size_t)(colon - d) > 253 || strlen(d) >= n)
        return false;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 1 || port > 65535 || colon[1] == '0')
        return false;
    size_t len = (size_t)(colon - d);
    bool numeric = true;
    for (size_t i = 0; i < len; i++) {
        char c = d[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return false;
        if (!((c >= '0' && c <= '9') || c == '.'))
            numeric = false;
        norm[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    if (d[0] == '.' || d[0] == '-' || d[len - 1] == '.')
        return false;
    snprintf(norm + len, n - len, ":%ld", port);
    if (numeric) {
        unsigned a, b, c4, e;
        char extra;
        if (sscanf(d, "%u.%u.%u.%u%c", &a, &b, &c4, &e, &extra) != 5 || extra != ':' ||
            a != 127 || b > 255 || c4 > 255 || e > 255)
            return false;
    }
    return true;
}

static int take_destinations(const json_t *v, const char *key, char ***field,
                             struct ah_problem *err) {
    if (!json_is_array(v) || json_array_size(v) > SANDBOX_ALLOW_MAX)
        return problem_set(err, AH_E_INVAL, "sandbox.%s must be a list of at most %d "
                                            "\"host:port\" destinations", key, SANDBOX_ALLOW_MAX);
    char **out = calloc(json_array_size(v) + 1, sizeof(char *));
    if (!out)
        return AH_E_NOMEM;
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        char norm[300];
        const char *d = json_string_value(item);
        if (!d || !good_destination(d, norm, sizeof(norm))) {
            strv_free(out);
            return problem_set(err, AH_E_INVAL,
                               "sandbox.%s: %s is not \"host:port\" with a DNS name or a "
                               "127.x.x.x address (other addresses cannot be reached from "
                               "inside the sandbox: name the host)",
                               key, d ? d : "a non-string");
        }
        if (!(out[i] = strdup(norm))) {
            strv_free(out);
            return AH_E_NOMEM;
        }
    }
    strv_free(*field);
    *field = out;
    return 0;
}

static int take_limit(const json_t *v, const char *key, int64_t max, int64_t scale,
                      int64_t *field, struct ah_problem *err) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return problem_set(err, AH_E_INVAL, "sandbox.%s must be an integer from 0 to %lld", key,
                           (long long)max);
    *field = json_integer_value(v) * scale;
    return 0;
}

/* One `NAME.key = value` of a profile. */
static int set_profile_key(struct sandbox_set *s, const char *key, const json_t *v,
                           struct ah_problem *err) {
    const char *dot = strchr(key, '.');
    size_t len = (size_t)(dot - key);
    if (!good_name(key, len))
        return problem_set(err, AH_E_INVAL,
                           "sandbox.%s: a profile name is 1 to %d letters, digits, '-' or '_'",
                           key, SANDBOX_NAME_MAX);
    struct sandbox_profile *p = find(s, key, len);
    if (!p) {
        int rc = add_profile(s, key, len, &p);
        if (rc == AH_E_INVAL)
            return problem_set(err, rc, "sandbox: at most %d profiles", MAX_PROFILES);
        if (rc < 0)
            return rc;
    }
    if (p->disabled)
        return problem_set(err, AH_E_INVAL, "sandbox.%s: the disabled profile has no settings",
                           key);
    const char *k = dot + 1;
    if (!strcmp(k, "network")) {
        const char *n = json_string_value(v);
        if (n && !strcmp(n, "allow"))
            p->network = SANDBOX_NET_ALLOW;
        else if (n && !strcmp(n, "none"))
            p->network = SANDBOX_NET_NONE;
        else if (n && !strcmp(n, "allow-list"))
            p->network = SANDBOX_NET_ALLOW_LIST;
        else
            return problem_set(err, AH_E_INVAL,
                               "sandbox.%s must be \"allow\", \"none\" or \"allow-list\"", key);
        return 0;
    }
    if (!strcmp(k, "allow-hosts"))
        return take_destinations(v, key, &p->allow_hosts, err);
    if (!strcmp(k, "read-only"))
        return take_paths(v, key, &p->read_only, err);
    if (!strcmp(k, "read-write"))
        return take_paths(v, key, &p->read_write, err);
    if (!strcmp(k, "hidden"))
        return take_paths(v, key, &p->hidden, err);
    if (!strcmp(k, "memory-mib"))
        return take_limit(v, key, 16 * 1024 * 1024, 1, &p->limits.memory_mib, err);
    if (!strcmp(k, "pids"))
        return take_limit(v, key, 1 << 22, 1, &p->limits.pids, err);
    if (!strcmp(k, "cpu"))
        return take_limit(v, key, 1024, 1000, &p->limits.cpu_milli, err);
    if (!strcmp(k, "file-size-mib"))
        return take_limit(v, key, 16 * 1024 * 1024, 1, &p->limits.file_size_mib, err);
    if (!strcmp(k, "wall-time-s"))
        return take_limit(v, key, 30LL * 24 * 3600, 1, &p->limits.wall_time_s, err);
    return problem_set(err, AH_E_INVAL,
                       "sandbox.%s: unknown setting (network, allow-hosts, read-only, "
                       "read-write, hidden, memory-mib, pids, cpu, file-size-mib, wall-time-s)",
                       key);
}

int sandbox_set_new(const json_t *cfg, struct sandbox_set **ret, struct ah_problem *reterr) {
    AH_AUTO(sandbox_set_freep) struct sandbox_set *s = calloc(1, sizeof(*s));
    if (!s)
        return AH_E_NOMEM;
    s->profiles = s->storage;
    static const char *const builtin[] = {"default", "offline", "disabled"};
    for (size_t i = 0; i < 3; i++) {
        struct sandbox_profile *p;
        if (add_profile(s, builtin[i], strlen(builtin[i]), &p) < 0)
            return AH_E_NOMEM;
        p->network = i == 1 ? SANDBOX_NET_NONE : SANDBOX_NET_ALLOW;
        p->disabled = i == 2;
    }
    if (!(s->default_name = strdup("default")) || !(s->bwrap = strdup("bwrap")) ||
        !(s->podman = strdup("podman")) || !(s->podman_runtime = strdup("runc")) ||
        !(s->podman_network = strdup("slirp4netns")))
        return AH_E_NOMEM;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)cfg, key, v) {
        int rc = 0;
        if (!strcmp(key, "allow-disabled")) {
            if (!json_is_boolean(v))
                return problem_set(reterr, AH_E_INVAL, "sandbox.allow-disabled must be true "
                                                       "or false");
            s->allow_disabled = json_is_true(v);
        } else if (!strcmp(key, "default") || !strcmp(key, "bwrap") || !strcmp(key, "podman") ||
                   !strcmp(key, "podman-runtime") || !strcmp(key, "podman-network")) {
            const char *str = json_string_value(v);
            if (!str || !*str)
                return problem_set(reterr, AH_E_INVAL, "sandbox.%s must be a string", key);
            char **field = !strcmp(key, "default")          ? &s->default_name
                           : !strcmp(key, "bwrap")          ? &s->bwrap
                           : !strcmp(key, "podman")         ? &s->podman
                           : !strcmp(key, "podman-runtime") ? &s->podman_runtime
                                                            : &s->podman_network;
            free(*field);
            if (!(*field = strdup(str)))
                return AH_E_NOMEM;
        } else if (strchr(key, '.')) {
            rc = set_profile_key(s, key, v, reterr);
        } else {
            rc = problem_set(reterr, AH_E_INVAL,
                             "sandbox.%s: unknown setting (default, allow-disabled, bwrap, podman, "
                             "podman-runtime, podman-network, or [sandbox.NAME] sections)",
                             key);
        }
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < s->n; i++) {
        const struct sandbox_profile *p = &s->profiles[i];
        if (p->network == SANDBOX_NET_ALLOW_LIST && !(p->allow_hosts && p->allow_hosts[0]))
            return problem_set(reterr, AH_E_INVAL,
                               "sandbox.%s.network is allow-list but sandbox.%s.allow-hosts "
                               "lists no destination (use network = \"none\" for none)",
                               p->name, p->name);
        if (p->network != SANDBOX_NET_ALLOW_LIST && p->allow_hosts && p->allow_hosts[0])
            return problem_set(reterr, AH_E_INVAL,
                               "sandbox.%s.allow-hosts needs sandbox.%s.network = \"allow-list\"",
                               p->name, p->name);
    }
    const struct sandbox_profile *def = sandbox_find(s, s->default_name);
    if (!def)
        return problem_set(reterr, AH_E_INVAL, "sandbox.default: no profile named %s",
                           s->default_name);
    if (def->disabled && !s->allow_disabled)
        return problem_set(reterr, AH_E_INVAL,
                           "sandbox.default is disabled but sandbox.allow-disabled is not true");
    snprintf(s->bwrap_why, sizeof(s->bwrap_why), "not probed yet");
    *ret = AH_TAKE(s);
    return 0;
}

const struct sandbox_profile *sandbox_find(const struct sandbox_set *s, const char *name) {
    return name ? find((struct sandbox_set *)s, name, strlen(name)) : NULL;
}

const char *sandbox_default_name(const struct sandbox_set *s) {
    return s->default_name;
}

/* ---- what this machine provides -------------------------------------------------------------- */

/* Runs argv with stdio on /dev/null; its exit status, or -1 when it could not start. */
static int run_quiet(const char *const *argv) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The file PATH finds for `name` (or `name` itself when it has a slash) into out; false when
 * none is executable. */
static bool find_on_path(const char *name, char *out, size_t n) {
    if (strchr(name, '/')) {
        snprintf(out, n, "%s", name);
        return access(name, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        snprintf(out, n, "%.*s/%s", (int)len, path, name);
        if (len && access(out, X_OK) == 0)
            return true;
        path += len + (path[len] == ':');
    }
    return false;
}

bool on_path(const char *name) {
    char full[4096];
    return find_on_path(name, full, sizeof(full));
}

void sandbox_set_probe(struct sandbox_set *s) {
    /* found once: every launch names bubblewrap by its path, so the recorder does not try
     * each PATH directory in turn for every session (posix_spawnp) */
    char full[4096];
    char *abs = s->bwrap[0] != '/' && find_on_path(s->bwrap, full, sizeof(full)) && full[0] == '/'
                    ? strdup(full)
                    : NULL;
    if (abs) {
        free(s->bwrap);
        s->bwrap = abs;
    }
    /* The namespaces every profile uses, on a read-only root: what a launch will ask for. */
    const char *const probe[] = {s->bwrap, "--unshare-user", "--unshare-pid", "--unshare-ipc",
                                 "--unshare-uts", "--unshare-net", "--die-with-parent",
                                 "--cap-drop", "ALL", "--ro-bind", "/", "/", "--proc", "/proc",
                                 "--dev", "/dev", "--tmpfs", "/tmp", "true", NULL};
    if (!on_path(s->bwrap)) {
        s->bwrap_ok = false;
        snprintf(s->bwrap_why, sizeof(s->bwrap_why),
                 "bubblewrap (%s) is not installed on this host", s->bwrap);
    } else {
        int st = run_quiet(probe);
        s->bwrap_ok = st == 0;
        if (!s->bwrap_ok)
            snprintf(s->bwrap_why, sizeof(s->bwrap_why),
                     "bubblewrap (%s) cannot create user, PID and mount namespaces on this host "
                     "(exit %d)",
                     s->bwrap, st);
        else
            s->bwrap_why[0] = '\0';
    }
    cgroup_probe(s);
    podman_probe(s);
}

void sandbox_set_fake_probe(struct sandbox_set *s, bool bwrap_works, const char *why_not) {
    s->bwrap_ok = bwrap_works;
    snprintf(s->bwrap_why, sizeof(s->bwrap_why), "%s", bwrap_works ? "" : why_not);
    s->podman_ok = false;
    snprintf(s->podman_why, sizeof(s->podman_why), "podman is not installed on this host");
}

/* "default, offline" (the profiles a task may name); buf is always terminated. */
static void usable_names(const struct sandbox_set *s, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < s->n && k < n; i++) {
        if (s->profiles[i].disabled && !s->allow_disabled)
            continue;
        int w = snprintf(buf + k, n - k, "%s%s", k ? ", " : "", s->profiles[i].name);
        if (w < 0)
            break;
        k += (size_t)w;
    }
}

int sandbox_check(const struct sandbox_set *s, const char *type, const char *profile,
                  struct ah_problem *reterr) {
    if (!strcmp(type, "devcontainer"))
        return s->podman_ok ? 0
                            : problem_set(reterr, AH_E_RUNTIME,
                                          "runtime devcontainer is not available on this host: %s",
                                          s->podman_why);
    if (!strcmp(type, "disabled"))
        profile = "disabled"; /* runtime.type disabled (API.md §3) is the disabled profile */
    const char *name = profile ? profile : s->default_name;
    const struct sandbox_profile *p = sandbox_find(s, name);
    char names[512];
    usable_names(s, names, sizeof(names));
    if (!p)
        return problem_set(reterr, AH_E_RUNTIME,
                           "unknown sandbox profile %s; this server has: %s", name, names);
    if (p->disabled) {
        if (!s->allow_disabled)
            return problem_set(reterr, AH_E_RUNTIME,
                               "running without a sandbox is not allowed by this server's "
                               "configuration (sandbox.allow-disabled); profiles: %s",
                               names);
        return 0;
    }
    if (!s->bwrap_ok)
        return problem_set(reterr, AH_E_RUNTIME,
                           "sandbox profile %s is not available on this host: %s", name,
                           s->bwrap_why);
    return 0;
}

json_t *sandbox_runtimes_json(const struct sandbox_set *s) {
    json_t *profiles = json_array(), *unavailable = json_array();
    json_t *out = json_pack("{s:[], s:o, s:o}", "items", "unavailable", unavailable,
                            "defaultSandbox", json_string(s->default_name));
    if (!profiles || !out) {
        json_decref(profiles);
        json_decref(out);
        return NULL;
    }
    json_t *items = json_object_get(out, "items");
    int rc = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct sandbox_profile *p = &s->profiles[i];
        if (p->disabled ? s->allow_disabled : s->bwrap_ok)
            rc |= json_array_append_new(profiles, json_string(p->name));
    }
    if (!s->bwrap_ok)
        rc |= json_array_append_new(unavailable,
                                    json_pack("{s:s, s:s, s:s}", "type", "local", "sandbox",
                                              "bubblewrap", "reason", s->bwrap_why));
    if (json_array_size(profiles))
        rc |= json_array_append_new(items, json_pack("{s:s, s:O}", "type", "local",
                                                     "sandboxProfiles", profiles));
    if (s->podman_ok)
        rc |= json_array_append_new(items, json_pack("{s:s}", "type", "devcontainer"));
    else
        rc |= json_array_append_new(unavailable, json_pack("{s:s, s:s}", "type", "devcontainer",
                                                           "reason", s->podman_why));
    json_decref(profiles);
    if (rc) {
        json_decref(out);
        return NULL;
    }
    return out;
}

void sandbox_limits_from_json(const json_t *res, struct sandbox_limits *lim) {
    memset(lim, 0, sizeof(*lim));
    if (!res)
        return;
    lim->memory_mib = json_integer_value(json_object_get(res, "memoryMiB"));
    lim->cpu_milli = (int64_t)(json_number_value(json_object_get(res, "cpu")) * 1000 + 0.5);
    lim->pids = json_integer_value(json_object_get(res, "pids"));
    lim->file_size_mib = json_integer_value(json_object_get(res, "fileSizeMiB"));
    lim->wall_time_s = json_integer_value(json_object_get(res, "wallTimeSec"));
}

json_t *sandbox_session_json(const struct sandbox_set *s, const json_t *runtime) {
    const char *type = json_string_value(json_object_get(runtime, "type"));
    const char *name = json_string_value(json_object_get(runtime, "sandbox"));
    if (type && !strcmp(type, "disabled"))
        name = "disabled";
    else if (type && strcmp(type, "local"))
        return NULL;
    const struct sandbox_profile *p = sandbox_find(s, name ? name : s->default_name);
    if (!p)
        return NULL;
    struct sandbox_limits task, lim;
    sandbox_limits_from_json(json_object_get(runtime, "resources"), &task);
    lim = sandbox_limits_merge(&p->limits, &task);
    bool cg = s->cg_mode != CGROUP_NONE;
    char *summary = sandbox_describe(p, &lim, cg);
    json_t *limits = json_object();
    static const char *const net_names[] = {"allow", "none", "allow-list"};
    json_t *out = json_pack("{s:s, s:s, s:o, s:s, s:s?}", "profile", p->name, "network",
                            p->disabled ? "allow" : net_names[p->network],
                            "limits", limits, "enforcement", cg ? "cgroup" : "rlimit",
                            "summary", summary);
    free(summary);
    if (!out)
        return NULL;
    int rc = 0;
    if (!p->disabled && p->network == SANDBOX_NET_ALLOW_LIST) {
        json_t *hosts = json_array();
        rc |= json_object_set_new(out, "allowHosts", hosts);
        for (char **h = p->allow_hosts; hosts && h && *h; h++)
            rc |= json_array_append_new(hosts, json_string(*h));
    }
    if (lim.memory_mib)
        rc |= json_object_set_new(limits, "memoryMiB", json_integer(lim.memory_mib));
    if (lim.pids)
        rc |= json_object_set_new(limits, "pids", json_integer(lim.pids));
    if (lim.cpu_milli)
        rc |= json_object_set_new(limits, "cpu", json_real((double)lim.cpu_milli / 1000.0));
    if (lim.file_size_mib)
        rc |= json_object_set_new(limits, "fileSizeMiB", json_integer(lim.file_size_mib));
    if (lim.wall_time_s)
        rc |= json_object_set_new(limits, "wallTimeSec", json_integer(lim.wall_time_s));
    if (rc) {
        json_decref(out);
        return NULL;
    }
    return out;
}

struct sandbox_limits sandbox_limits_merge(const struct sandbox_limits *profile,
                                           const struct sandbox_limits *task) {
    struct sandbox_limits l = profile ? *profile : (struct sandbox_limits){0};
    if (task) {
        if (task->memory_mib)
            l.memory_mib = task->memory_mib;
        if (task->pids)
            l.pids = task->pids;
        if (task->cpu_milli)
            l.cpu_milli = task->cpu_milli;
        if (task->file_size_mib)
            l.file_size_mib = task->file_size_mib;
        if (task->wall_time_s)
            l.wall_time_s = task->wall_time_s;
    }
    return l;
}
