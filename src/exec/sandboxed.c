/*
 * sandboxed.c — the sandbox around one session's agent at launch (D51, D52): the profile the
 * task was created with, its limits merged with the task's runtime.resources, the session's
 * private $HOME, its cgroups, and the wrapped command the recorder runs.
 *
 * Never a silent downgrade: a profile that is unknown now (configuration changed since the
 * task was accepted) or a bubblewrap that stopped working fails the session with the reason;
 * the agent does not run without the sandbox it was promised.
 */
#include <errno.h>
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
 * gets a copy of those (never the rest of the server user's home, which stays hidden). */
static void copy_agent_config(const char *from, const char *to) {
    static const char *const entries[] = {".claude",  ".claude.json", ".codex",
                                          ".gemini",  ".config/opencode",
                                          ".gitconfig", NULL};
    for (const char *const *e = entries; *e; e++) {
        char src[4096], dst_dir[4096];
        snprintf(src, sizeof(src), "%s/%s", from, *e);
        if (access(src, F_OK) != 0)
            continue;
        snprintf(dst_dir, sizeof(dst_dir), "%s/%s", to, *e);
        char *slash = strrchr(dst_dir, '/');
        *slash = '\0';
        make_dirs(dst_dir, 0700);
        const char *const argv[] = {"cp", "-a", "--", src, dst_dir, NULL};
        run_command(argv, NULL, NULL);
    }
}

static bool under(const char *path, const char *dir) {
    size_t n = strlen(dir);
    return n > 1 && !strncmp(path, dir, n) && (path[n] == '/' || path[n] == '\0');
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
    if (!strcmp(type, "disabled"))
        name = "disabled";
    const struct sandbox_profile *p =
        sandbox_find(ex->sandbox, name ? name : sandbox_default_name(ex->sandbox));
    struct sandbox_limits task, lim;
    sandbox_limits_from_json(json_object_get(runtime, "resources"), &task);
    lim = sandbox_limits_merge(&p->limits, &task);

    bool cgroup_ok = false;
    if (lim.memory_mib || lim.pids || lim.cpu_milli) {
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
    char db_dir[4096] = "";
    if (ex->cfg.db_path && ex->cfg.db_path[0] == '/') {
        snprintf(db_dir, sizeof(db_dir), "%s", ex->cfg.db_path);
        char *slash = strrchr(db_dir, '/');
        if (slash && slash != db_dir)
            *slash = '\0';
    }
    /* What stays invisible: the data directory (database, recordings, every other session),
     * the database's directory, the recorder socket's directory, the configuration file and
     * the server user's home. */
    const char *hide[] = {ex->cfg.data_dir,
                          ex->cfg.runtime_dir,
                          db_dir[0] ? db_dir : NULL,
                          ex->cfg.config_path && ex->cfg.config_path[0] == '/'
                              ? ex->cfg.config_path
                              : NULL,
                          home_usable ? user_home : NULL,
                          NULL};
    /* NULL entries would end the list early: compact it */
    const char *hide_list[6];
    size_t k = 0;
    for (size_t i = 0; i < 5; i++)
        if (hide[i])
            hide_list[k++] = hide[i];
    hide_list[k] = NULL;
    struct sandbox_paths paths = {.workspace = workspace,
                                  .home = p->disabled ? NULL : home,
                                  .home_at = home_at,
                                  .ro_files = ro_files,
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
    return 0;
}
