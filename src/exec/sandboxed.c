/*
 * sandboxed.c — the sandbox around one session's agent at launch (D51, D52): the profile the
 * task was created with, its limits merged with the task's runtime.resources, the session's
 * private $HOME, its cgroups, and the wrapped command the recorder runs.
 *
 * Never a silent downgrade: a profile that is unknown now (configuration changed since the
 * task was accepted) or a bubblewrap that stopped working fails the session with the reason;
 * the agent does not run without the sandbox it was promised.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "executor.h"

void launch_sandbox_clear(struct launch_sandbox *ls) {
    sandbox_argv_free(ls->argv);
    free(ls->note);
    memset(ls, 0, sizeof(*ls));
}

/* Agent CLIs keep their login and settings in the user's home: the session's private $HOME
 * gets a copy of those files (never the rest of the server user's home, which stays hidden).
 * Only these small files, each capped: the CLIs' histories can be large and this runs on the
 * supervisor's thread. */
static void copy_agent_config(const char *from, const char *to) {
    static const char *const files[] = {".claude.json",
                                        ".claude/.credentials.json",
                                        ".claude/settings.json",
                                        ".codex/auth.json",
                                        ".codex/config.toml",
                                        ".gemini/settings.json",
                                        ".gemini/oauth_creds.json",
                                        ".gemini/google_accounts.json",
                                        ".config/opencode/opencode.json",
                                        ".local/share/opencode/auth.json",
                                        ".gitconfig",
                                        NULL};
    for (const char *const *f = files; *f; f++) {
        char src[4096], dst[4096];
        snprintf(src, sizeof(src), "%s/%s", from, *f);
        char *data = NULL;
        size_t len = 0;
        if (read_file(src, 1024 * 1024, &data, &len) < 0)
            continue; /* absent (the common case), unreadable or too large */
        snprintf(dst, sizeof(dst), "%s/%s", to, *f);
        char *slash = strrchr(dst, '/');
        *slash = '\0';
        if (make_dirs(dst, 0700) == 0) {
            *slash = '/';
            write_file(dst, data, len, 0600);
        }
        free(data);
    }
}

static bool under(const char *path, const char *dir) {
    size_t n = strlen(dir);
    return n > 1 && !strncmp(path, dir, n) && (path[n] == '/' || path[n] == '\0');
}

/* The devcontainer runtime: the image (runtime.image, else the devcontainer.json's "image"),
 * the file's containerEnv, the session's $HOME, and `podman run` around the agent. The
 * container has nothing of the host's but what is mounted, so nothing needs hiding; the
 * recorder freezes it on pause and removes it when the agent ends. */
static int launch_devcontainer(struct executor *ex, const char *sid, const char *workspace,
                               const json_t *runtime, const char *const *agent_argv,
                               const char *const *ro_files, const char *home,
                               const char *home_at, struct launch_sandbox *ret,
                               struct ah_problem *reterr) {
    const char *image = json_string_value(json_object_get(runtime, "image"));
    const char *dc_path = json_string_value(json_object_get(runtime, "devcontainerPath"));
    AH_AUTOFREE char *dc_image = NULL;
    AH_AUTO(json_decrefp) json_t *env = NULL;
    if (dc_path) {
        int rc = sandbox_devcontainer_read(workspace, dc_path, &dc_image, &env, reterr);
        if (rc < 0)
            return rc;
    }
    if (!image)
        image = dc_image;
    if (!image)
        return problem_set(reterr, AH_E_INVAL,
                           "runtime devcontainer needs an image: runtime.image, or \"image\" in "
                           "the devcontainer.json at runtime.devcontainerPath");
    struct sandbox_limits task;
    sandbox_limits_from_json(json_object_get(runtime, "resources"), &task);
    snprintf(ret->container, sizeof(ret->container), "ah-%s", sid);
    struct sandbox_paths paths = {
        .workspace = workspace, .home = home, .home_at = home_at, .ro_files = ro_files};
    struct sandbox_container c = {.name = ret->container, .image = image, .env = env};
    int rc = sandbox_container_wrap(ex->sandbox, &c, &task, &paths, agent_argv, &ret->argv);
    if (rc < 0) {
        launch_sandbox_clear(ret);
        return problem_set(reterr, rc, "cannot build the devcontainer's command: %s",
                           ah_strerror(rc));
    }
    ret->podman = sandbox_podman(ex->sandbox);
    ret->podman_runtime = sandbox_podman_runtime(ex->sandbox);
    ret->wall_ms = task.wall_time_s * 1000;
    char lim[256] = "";
    size_t k = 0;
    if (task.memory_mib)
        k += (size_t)snprintf(lim + k, sizeof(lim) - k, ", memory %lld MiB",
                              (long long)task.memory_mib);
    if (task.pids && k < sizeof(lim))
        k += (size_t)snprintf(lim + k, sizeof(lim) - k, ", pids %lld", (long long)task.pids);
    if (task.cpu_milli && k < sizeof(lim))
        snprintf(lim + k, sizeof(lim) - k, ", cpu %lld.%03lld", (long long)(task.cpu_milli / 1000),
                 (long long)(task.cpu_milli % 1000));
    if (asprintf(&ret->note, "devcontainer: podman container %s of image %s%s%s%s%s",
                 ret->container, image, dc_path ? " (from " : "", dc_path ? dc_path : "",
                 dc_path ? ")" : "", lim) < 0) {
        ret->note = NULL;
        launch_sandbox_clear(ret);
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    }
    return 0;
}

int exec_sandbox_launch(struct executor *ex, const char *sid, const char *workspace,
                        const json_t *runtime, const char *const *agent_argv,
                        const char *const *ro_files, struct launch_sandbox *ret,
                        struct ah_problem *reterr) {
    memset(ret, 0, sizeof(*ret));
    const char *type = json_string_value(json_object_get(runtime, "type"));
    const char *name = json_string_value(json_object_get(runtime, "sandbox"));
    if (!type)
        type = "local";
    /* accepted at creation, but the host or the configuration may have changed since */
    int rc = sandbox_check(ex->sandbox, type, name, reterr);
    if (rc < 0)
        return rc;
    bool container = !strcmp(type, "devcontainer");
    if (!strcmp(type, "disabled"))
        name = "disabled";
    /* a devcontainer has no profile; its home is made as the default profile's */
    const struct sandbox_profile *p = sandbox_find(
        ex->sandbox, container ? "default" : name ? name : sandbox_default_name(ex->sandbox));
    struct sandbox_limits task, lim;
    sandbox_limits_from_json(json_object_get(runtime, "resources"), &task);
    lim = sandbox_limits_merge(&p->limits, &task);

    bool cgroup_ok = false;
    if (!container && (lim.memory_mib || lim.pids || lim.cpu_milli)) {
        if (sandbox_cgroups_usable(ex->sandbox)) {
            rc = sandbox_cgroup_create(ex->sandbox, sid, &lim, &ret->cg);
            if (rc < 0)
                return problem_set(reterr, rc, "cannot create the session's cgroups: %s",
                                   ah_strerror(rc));
            cgroup_ok = true;
        }
    }
    /* the session's private $HOME, where the server user's home appears inside (hiding it),
     * unless that home holds the workspace (then at its own path) */
    char home[4096];
    snprintf(home, sizeof(home), "%s/sessions/%s/home", ex->cfg.data_dir, sid);
    const char *user_home = getenv("HOME");
    struct stat st;
    bool home_usable = user_home && user_home[0] == '/' && strcmp(user_home, "/") != 0 &&
                       stat(user_home, &st) == 0 && S_ISDIR(st.st_mode);
    if (!p->disabled) {
        rc = make_dirs(home, 0700);
        if (rc < 0) {
            sandbox_cgroup_remove(&ret->cg);
            return problem_set(reterr, rc, "cannot create the session's home %s: %s", home,
                               ah_strerror(rc));
        }
        if (home_usable)
            copy_agent_config(user_home, home);
    }
    const char *home_at = home_usable && !under(workspace, user_home) ? user_home : NULL;
    if (container)
        return launch_devcontainer(ex, sid, workspace, runtime, agent_argv, ro_files, home,
                                   home_at, ret, reterr);
    /* What stays invisible: the data directory (database, recordings, every other session),
     * the database file and its companions wherever it lives, the recorder socket's
     * directory, the configuration file and the server user's home. */
    char db_files[3][4200];
    bool db = ex->cfg.db_path && ex->cfg.db_path[0] == '/';
    static const char *const db_suffix[] = {"-wal", "-shm", "-journal"};
    for (int i = 0; i < 3; i++)
        snprintf(db_files[i], sizeof(db_files[i]), "%s%s", db ? ex->cfg.db_path : "",
                 db_suffix[i]);
    const char *hide[] = {ex->cfg.data_dir,
                          ex->cfg.runtime_dir,
                          db ? ex->cfg.db_path : NULL,
                          db ? db_files[0] : NULL,
                          db ? db_files[1] : NULL,
                          db ? db_files[2] : NULL,
                          ex->cfg.config_path && ex->cfg.config_path[0] == '/'
                              ? ex->cfg.config_path
                              : NULL,
                          home_usable ? user_home : NULL};
    /* NULL entries would end the list early: compact it */
    const char *hide_list[9];
    size_t k = 0;
    for (size_t i = 0; i < sizeof(hide) / sizeof(hide[0]); i++)
        if (hide[i])
            hide_list[k++] = hide[i];
    hide_list[k] = NULL;
    /* The agent's own binaries must run inside: the files named, and the PATH directories
     * that the private /tmp would otherwise hide (a tool installed under /tmp) */
    const char *ro[24];
    char pathbuf[4096];
    size_t nro = 0;
    for (const char *const *f = ro_files; f && *f && nro < 8; f++)
        ro[nro++] = *f;
    snprintf(pathbuf, sizeof(pathbuf), "%s", getenv("PATH") ? getenv("PATH") : "");
    for (char *d = pathbuf; *d && nro < 23;) {
        char *end = strchr(d, ':');
        if (end)
            *end = '\0';
        if ((under(d, "/tmp") || under(d, "/var/tmp")) && !under(d, ex->cfg.data_dir) &&
            stat(d, &st) == 0 && S_ISDIR(st.st_mode))
            ro[nro++] = d;
        if (!end)
            break;
        d = end + 1;
    }
    ro[nro] = NULL;
    /* an allow-list profile: the relay's directory (its sockets, the sandbox's /etc/hosts) */
    char net_dir[4200];
    snprintf(net_dir, sizeof(net_dir), "%s/sessions/%s/net", ex->cfg.data_dir, sid);
    bool relay = !p->disabled && p->network == SANDBOX_NET_ALLOW_LIST;
    if (relay && (rc = sandbox_net_prepare(p, net_dir)) < 0) {
        sandbox_cgroup_remove(&ret->cg);
        return problem_set(reterr, rc, "cannot prepare the sandbox's network relay in %s: %s",
                           net_dir, ah_strerror(rc));
    }
    /* the relay's ends: `ah-net` beside our own binary when it was installed with it */
    char net_exe[4200];
    snprintf(net_exe, sizeof(net_exe), "%s", ex->cfg.self_exe);
    char *slash = strrchr(net_exe, '/');
    bool have_net_exe = false;
    if (relay && slash && (size_t)(slash - net_exe) + 8 < sizeof(net_exe)) {
        strcpy(slash + 1, "ah-net");
        have_net_exe = access(net_exe, X_OK) == 0 && nro < 23;
        if (have_net_exe) { /* the inside end runs it too */
            ro[nro++] = net_exe;
            ro[nro] = NULL;
        }
    }
    struct sandbox_paths paths = {.workspace = workspace,
                                  .net_dir = relay ? net_dir : NULL,
                                  .net_exe = have_net_exe ? net_exe : NULL,
                                  .self_exe = ex->cfg.self_exe,
                                  .home = p->disabled ? NULL : home,
                                  .home_at = home_at,
                                  .ro_files = ro,
                                  .hide = hide_list};
    rc = sandbox_wrap(ex->sandbox, p, &lim, cgroup_ok, &paths, agent_argv, &ret->argv);
    if (rc == 0 && !(ret->note = sandbox_describe(p, &lim, cgroup_ok)))
        rc = AH_E_NOMEM;
    if (rc < 0) {
        sandbox_cgroup_remove(&ret->cg);
        launch_sandbox_clear(ret);
        return problem_set(reterr, rc, "cannot build the sandbox: %s", ah_strerror(rc));
    }
    ret->wall_ms = lim.wall_time_s * 1000;
    ret->hold_term = !p->disabled;
    return 0;
}

bool exec_agent_started(struct executor *ex, pid_t pgid) {
    DIR *d = opendir("/proc");
    if (!d)
        return true; /* cannot tell: behave as without a sandbox */
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        char *paren = strrchr(buf, ')'); /* state ppid pgrp follow the command's name */
        long pgrp = 0;
        if (!paren || sscanf(paren + 1, " %*c %*d %ld", &pgrp) != 1 || pgrp != (long)pgid)
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            continue;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        size_t l0 = strlen(buf);
        found = !strcmp(buf, ex->cfg.self_exe) && (size_t)n > l0 + 12 &&
                !memcmp(buf + l0 + 1, "agent\0start", 12);
    }
    closedir(d);
    return found;
}
