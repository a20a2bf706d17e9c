/*
 * podman.c — the devcontainer runtime (D51): the agent runs in a podman container of the
 * task's image, with the session's workspace bind-mounted at its own path.
 *
 * What runs where:
 *   - the recorder stays on the host (it holds the server link) and runs `podman run` under its
 *     PTY, in the agent's process group; podman passes the terminal (`-t -i`), the events
 *     pipe (AH_EVENTS_FD=3) and the input pipe (AH_INPUT_FD=4; `--preserve-fds 2`) through
 *     to the container;
 *   - inside, `ah agent start` runs as everywhere else, and starts the agent CLI (the image's
 *     own program). The image need not contain `ah` nor its libraries: the host's binary and
 *     the directory of its dynamic loader are mounted read-only under /.ah, and the host's
 *     loader starts it (`/.ah/lib/ld-…so --library-path /.ah/lib /.ah/ah agent start …`), which
 *     touches neither the image's own libraries nor the environment of what it starts.
 *
 * How this host's podman (4.3, Debian 12) is driven, every choice forced by a failure here:
 *   - `--runtime runc --cgroup-manager cgroupfs`: crun refuses a cgroup v1 + v2 hybrid host,
 *     and there is no systemd to manage cgroups;
 *   - `--ulimit nofile=…,nproc=…` no higher than our own limits: podman otherwise asks the
 *     runtime for 1048576 files, which a server without CAP_SYS_RESOURCE cannot grant (the
 *     container fails to start with EPERM); conmon runs the runtime with at most 32768
 *     processes, hence that cap;
 *   - `--cgroup-parent /ah-devcontainer/NAME`: a cgroup whose path we know, so that pause can
 *     freeze the container (a SIGSTOP of the agent's process group stops only the podman
 *     client: the container's processes are conmon's children, not ours) and the cgroup can be
 *     removed after;
 *   - `--init`: a process 1 that passes a stop's SIGTERM on (podman's signal proxy sends it to
 *     process 1, which would otherwise ignore it).
 * No configuration file of podman's is written or read beyond its defaults: every setting is on
 * the command line, so `podman ps` from a shell sees the same containers.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

#define NPROC_CAP 32768
#define DEVCONTAINER_JSON_MAX (1024 * 1024)

void podman_probe(struct sandbox_set *s) {
    s->podman_ok = false;
    if (!on_path(s->podman))
        snprintf(s->podman_why, sizeof(s->podman_why), "podman (%s) is not installed on this host",
                 s->podman);
    else if (!on_path(s->podman_runtime))
        snprintf(s->podman_why, sizeof(s->podman_why),
                 "podman is installed but its OCI runtime %s is not (install it, or set "
                 "sandbox.podman-runtime)",
                 s->podman_runtime);
    else if (getuid() != 0)
        /* rootless podman needs subordinate ids and a user session this server does not set up */
        snprintf(s->podman_why, sizeof(s->podman_why),
                 "podman is installed but this server does not run as root (rootless podman is "
                 "not supported)");
    else
        s->podman_ok = true;
    if (s->podman_ok)
        s->podman_why[0] = '\0';
}

const char *sandbox_podman(const struct sandbox_set *s) {
    return s->podman;
}

const char *sandbox_podman_runtime(const struct sandbox_set *s) {
    return s->podman_runtime;
}

bool sandbox_image_ok(const char *image) {
    size_t n = image ? strlen(image) : 0;
    if (n == 0 || n > 255 || image[0] == '-')
        return false; /* never an option of podman's */
    return strspn(image, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/:@-") ==
           n;
}

static bool env_name_ok(const char *k) {
    if (!k[0] || (k[0] >= '0' && k[0] <= '9'))
        return false;
    return strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") ==
           strlen(k);
}

/* The program interpreter (dynamic loader) an ELF executable names; 0, or AH_E_NOTFOUND for a
 * static or unreadable one. */
static int elf_interp(const char *exe, char *buf, size_t n) {
    int fd = open(exe, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return AH_E_NOTFOUND;
    Elf64_Ehdr eh;
    int rc = AH_E_NOTFOUND;
    if (pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh) &&
        !memcmp(eh.e_ident, ELFMAG, SELFMAG) && eh.e_ident[EI_CLASS] == ELFCLASS64 &&
        eh.e_phentsize == sizeof(Elf64_Phdr)) {
        for (int i = 0; i < eh.e_phnum && i < 64; i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (uint64_t)i * sizeof(ph))) !=
                (ssize_t)sizeof(ph))
                break;
            if (ph.p_type != PT_INTERP)
                continue;
            if (ph.p_filesz < 2 || ph.p_filesz > n ||
                pread(fd, buf, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz ||
                buf[ph.p_filesz - 1] != '\0')
                break;
            rc = 0;
            break;
        }
    }
    close(fd);
    return rc;
}

/* Whether a path can be given to `-v SRC:DST[:ro]` (podman splits that on ':'). */
static bool mountable(const char *p) {
    return p && p[0] == '/' && !strchr(p, ':') && !strchr(p, ',');
}

static void bind(struct vec *a, const char *src, const char *dst, bool ro) {
    char spec[8400];
    snprintf(spec, sizeof(spec), "%s:%s%s", src, dst, ro ? ":ro" : "");
    vec_push3(a, "-v", spec, NULL);
}

int sandbox_container_wrap(const struct sandbox_set *s, const struct sandbox_container *c,
                           const struct sandbox_limits *lim, const struct sandbox_paths *paths,
                           const char *const *agent_argv, char ***ret_argv) {
    if (!agent_argv || !agent_argv[0] || !sandbox_image_ok(c->image) || !c->name ||
        !mountable(paths->workspace) || (paths->home && !mountable(paths->home)) ||
        (paths->home_at && !mountable(paths->home_at)) || !mountable(agent_argv[0]))
        return AH_E_INVAL;
    for (const char *const *f = paths->ro_files; f && *f; f++)
        if (!mountable(*f))
            return AH_E_INVAL;
    /* the host's `ah` runs inside through the host's loader: see the top of the file */
    char interp[PATH_MAX], real[PATH_MAX];
    if (elf_interp(agent_argv[0], interp, sizeof(interp)) < 0 || !realpath(interp, real))
        return AH_E_NOTFOUND;
    char libdir[PATH_MAX], loader[PATH_MAX + 16];
    snprintf(libdir, sizeof(libdir), "%s", real);
    char *slash = strrchr(libdir, '/');
    if (!slash || slash == libdir || !mountable(libdir))
        return AH_E_NOTFOUND;
    *slash = '\0';
    snprintf(loader, sizeof(loader), "/.ah/lib/%s", slash + 1);

    struct vec a = {0};
    char buf[8400];
    vec_push(&a, s->podman);
    vec_push3(&a, "--runtime", s->podman_runtime, NULL);
    vec_push3(&a, "--cgroup-manager", "cgroupfs", NULL);
    vec_push3(&a, "run", "--rm", "-i");
    vec_push3(&a, "-t", "--init", NULL);
    vec_push3(&a, "--name", c->name, NULL);
    snprintf(buf, sizeof(buf), "%s/%s", SANDBOX_CONTAINER_CGROUP, c->name);
    vec_push3(&a, "--cgroup-parent", buf, NULL);
    vec_push3(&a, "--network", s->podman_network, NULL);
    vec_push3(&a, "--cap-drop", "all", NULL);
    vec_push3(&a, "--security-opt", "no-new-privileges", NULL);
    /* fd 3: AH_EVENTS_FD; fd 4: AH_INPUT_FD, a conversation's next turns (the recorder opens
     * /dev/null there when there is none: podman wants every fd it passes) */
    vec_push3(&a, "--preserve-fds", "2", NULL);
    struct rlimit rl;
    rlim_t files = 1024, procs = 4096;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        files = rl.rlim_cur;
    if (getrlimit(RLIMIT_NPROC, &rl) == 0)
        procs = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > NPROC_CAP ? NPROC_CAP : rl.rlim_cur;
    snprintf(buf, sizeof(buf), "nofile=%llu:%llu", (unsigned long long)files,
             (unsigned long long)files);
    vec_push3(&a, "--ulimit", buf, NULL);
    snprintf(buf, sizeof(buf), "nproc=%llu:%llu", (unsigned long long)procs,
             (unsigned long long)procs);
    vec_push3(&a, "--ulimit", buf, NULL);
    if (lim->memory_mib) {
        snprintf(buf, sizeof(buf), "%lldm", (long long)lim->memory_mib);
        vec_push3(&a, "--memory", buf, NULL);
        vec_push3(&a, "--memory-swap", buf, NULL); /* no swap on top */
    }
    if (lim->pids) {
        snprintf(buf, sizeof(buf), "%lld", (long long)lim->pids);
        vec_push3(&a, "--pids-limit", buf, NULL);
    }
    if (lim->cpu_milli) {
        snprintf(buf, sizeof(buf), "%lld.%03lld", (long long)(lim->cpu_milli / 1000),
                 (long long)(lim->cpu_milli % 1000));
        vec_push3(&a, "--cpus", buf, NULL);
    }
    if (lim->file_size_mib) {
        long long bytes = (long long)lim->file_size_mib * 1024 * 1024;
        snprintf(buf, sizeof(buf), "fsize=%lld:%lld", bytes, bytes);
        vec_push3(&a, "--ulimit", buf, NULL);
    }
    /* the scrubbed environment every agent gets (the recorder's, D16), the events pipe's
     * number with it; $HOME the session's own; then the image's containerEnv */
    vec_push(&a, "--env-host");
    const char *home = paths->home_at ? paths->home_at : paths->home;
    if (home) {
        snprintf(buf, sizeof(buf), "HOME=%s", home);
        vec_push3(&a, "-e", buf, NULL);
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)c->env, key, v) {
        if (!env_name_ok(key) || !json_is_string(v)) {
            sandbox_argv_free(a.v);
            return AH_E_INVAL;
        }
        snprintf(buf, sizeof(buf), "%s=%s", key, json_string_value(v));
        vec_push3(&a, "-e", buf, NULL);
    }
    bind(&a, paths->workspace, paths->workspace, false);
    if (paths->home)
        bind(&a, paths->home, home, false);
    for (const char *const *f = paths->ro_files; f && *f; f++)
        if (strcmp(*f, agent_argv[0]) != 0)
            bind(&a, *f, *f, true);
    bind(&a, libdir, "/.ah/lib", true);
    bind(&a, agent_argv[0], "/.ah/ah", true);
    vec_push3(&a, "-w", paths->workspace, NULL);
    vec_push(&a, c->image);
    vec_push3(&a, loader, "--library-path", "/.ah/lib");
    vec_push(&a, "/.ah/ah");
    for (const char *const *p = agent_argv + 1; *p; p++)
        vec_push(&a, *p);
    if (a.err) {
        sandbox_argv_free(a.v);
        return a.err;
    }
    *ret_argv = a.v;
    return 0;
}

/* ---- devcontainer.json ----------------------------------------------------------------------- */

/* devcontainer.json is JSON with comments and trailing commas (JSONC): both go, in place,
 * outside strings, so that jansson reads the rest. */
static void strip_jsonc(char *t, size_t n) {
    bool str = false;
    for (size_t i = 0; i < n; i++) {
        if (str) {
            if (t[i] == '\\' && i + 1 < n)
                i++;
            else if (t[i] == '"')
                str = false;
        } else if (t[i] == '"') {
            str = true;
        } else if (t[i] == '/' && i + 1 < n && t[i + 1] == '/') {
            while (i < n && t[i] != '\n')
                t[i++] = ' ';
        } else if (t[i] == '/' && i + 1 < n && t[i + 1] == '*') {
            t[i++] = ' ';
            t[i++] = ' ';
            while (i < n && !(t[i] == '*' && i + 1 < n && t[i + 1] == '/'))
                t[i++] = ' ';
            if (i < n)
                t[i++] = ' ';
            if (i < n)
                t[i] = ' ';
        } else if (t[i] == ',') {
            size_t j = i + 1;
            while (j < n && (t[j] == ' ' || t[j] == '\t' || t[j] == '\r' || t[j] == '\n' ||
                             (t[j] == '/' && j + 1 < n && (t[j + 1] == '/' || t[j + 1] == '*'))))
                j++; /* comments after it are blanked when reached; good enough for a lookahead */
            if (j < n && (t[j] == '}' || t[j] == ']'))
                t[i] = ' ';
        }
    }
}

int sandbox_devcontainer_read(const char *workspace, const char *rel, char **ret_image,
                              json_t **ret_env, struct ah_problem *reterr) {
    *ret_image = NULL;
    *ret_env = NULL;
    if (!rel || !rel[0] || rel[0] == '/' || strstr(rel, ".."))
        return problem_set(reterr, AH_E_INVAL,
                           "runtime.devcontainerPath must be a path inside the workspace "
                           "(relative, without ..): %s",
                           rel ? rel : "");
    char path[8400];
    snprintf(path, sizeof(path), "%s/%s", workspace, rel);
    /* the workspace is the agent's and the repository's: never follow a link out of it */
    char real[PATH_MAX], realws[PATH_MAX];
    if (!realpath(path, real) || !realpath(workspace, realws))
        return problem_set(reterr, AH_E_NOTFOUND, "devcontainer %s: not found in the workspace",
                           rel);
    size_t wl = strlen(realws);
    if (strncmp(real, realws, wl) != 0 || real[wl] != '/')
        return problem_set(reterr, AH_E_INVAL, "devcontainer %s points outside the workspace", rel);
    FILE *f = fopen(real, "re");
    char *text = f ? malloc(DEVCONTAINER_JSON_MAX + 1) : NULL;
    size_t len = text ? fread(text, 1, DEVCONTAINER_JSON_MAX + 1, f) : 0;
    int rc = !f                            ? ah_err_from_errno(errno)
             : !text                       ? AH_E_NOMEM
             : ferror(f)                   ? AH_E_IO
             : len > DEVCONTAINER_JSON_MAX ? AH_E_TOOLARGE
                                           : 0;
    if (f)
        fclose(f);
    if (rc < 0) {
        free(text);
        return problem_set(reterr, rc, "devcontainer %s: %s", rel, ah_strerror(rc));
    }
    strip_jsonc(text, len);
    json_error_t e;
    json_t *j = json_loadb(text, len, 0, &e);
    free(text);
    if (!json_is_object(j)) {
        json_decref(j);
        return problem_set(reterr, AH_E_INVAL, "devcontainer %s is not a JSON object: %s", rel,
                           e.text);
    }
    json_t *image = json_object_get(j, "image"), *env = json_object_get(j, "containerEnv");
    if (!image && (json_object_get(j, "build") || json_object_get(j, "dockerFile") ||
                   json_object_get(j, "dockerComposeFile"))) {
        json_decref(j);
        return problem_set(reterr, AH_E_UNSUPPORTED,
                           "devcontainer %s builds its image (build, dockerFile or "
                           "dockerComposeFile): this server runs ready images only; set "
                           "\"image\" or runtime.image",
                           rel);
    }
    if (image && !sandbox_image_ok(json_string_value(image))) {
        json_decref(j);
        return problem_set(reterr, AH_E_INVAL, "devcontainer %s: \"image\" is not an image name",
                           rel);
    }
    const char *key;
    json_t *v;
    json_object_foreach(env, key, v) {
        if (!json_is_object(env) || !env_name_ok(key) || !json_is_string(v)) {
            json_decref(j);
            return problem_set(reterr, AH_E_INVAL,
                               "devcontainer %s: \"containerEnv\" must map variable names to "
                               "strings",
                               rel);
        }
    }
    if (image && !(*ret_image = strdup(json_string_value(image)))) {
        json_decref(j);
        return AH_E_NOMEM;
    }
    *ret_env = json_incref(env);
    json_decref(j);
    return 0;
}

/* ---- the recorder's side --------------------------------------------------------------------- */

int sandbox_container_freeze(const char *name, bool frozen) {
    char path[600];
    snprintf(path, sizeof(path), "/sys/fs/cgroup/freezer%s/%s/freezer.state",
             SANDBOX_CONTAINER_CGROUP, name);
    const char *v1 = frozen ? "FROZEN" : "THAWED", *v2 = frozen ? "1" : "0";
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    const char *val = v1;
    if (fd < 0) { /* cgroup v2 */
        snprintf(path, sizeof(path), "/sys/fs/cgroup%s/%s/cgroup.freeze", SANDBOX_CONTAINER_CGROUP,
                 name);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        val = v2;
    }
    if (fd < 0)
        return ah_err_from_errno(errno);
    int rc = write(fd, val, strlen(val)) < 0 ? ah_err_from_errno(errno) : 0;
    close(fd);
    return rc;
}

static void rmdir_tree(const char *dir, int depth) {
    glob_t g;
    char pat[700];
    snprintf(pat, sizeof(pat), "%s/*/", dir);
    if (depth < 4 && glob(pat, GLOB_NOSORT | GLOB_ONLYDIR, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            size_t n = strlen(g.gl_pathv[i]);
            if (n && g.gl_pathv[i][n - 1] == '/')
                g.gl_pathv[i][n - 1] = '\0';
            rmdir_tree(g.gl_pathv[i], depth + 1);
        }
        globfree(&g);
    }
    rmdir(dir);
}

void sandbox_container_remove(const char *podman, const char *runtime, const char *name,
                              bool force) {
    if (force) {
        const char *argv[] = {podman,     "--runtime", runtime,   "--cgroup-manager",
                              "cgroupfs", "rm",        "--force", "--time",
                              "0",        "--ignore",  name,      NULL};
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        pid_t pid;
        if (posix_spawnp(&pid, podman, &fa, NULL, (char *const *)argv, environ) == 0)
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        posix_spawn_file_actions_destroy(&fa);
    }
    /* podman leaves the parent cgroups it made (conmon's among them) in every hierarchy;
     * conmon outlives the client by a moment, so the last ones may still be busy: a few tries */
    for (int attempt = 0; attempt < 100; attempt++) {
        glob_t g;
        char pat[600];
        snprintf(pat, sizeof(pat), "/sys/fs/cgroup/*%s/%s", SANDBOX_CONTAINER_CGROUP, name);
        size_t left = 0;
        if (glob(pat, GLOB_NOSORT | GLOB_ONLYDIR, NULL, &g) == 0) {
            for (size_t i = 0; i < g.gl_pathc; i++) {
                rmdir_tree(g.gl_pathv[i], 0);
                left += access(g.gl_pathv[i], F_OK) == 0;
            }
            globfree(&g);
        }
        snprintf(pat, sizeof(pat), "/sys/fs/cgroup%s/%s", SANDBOX_CONTAINER_CGROUP, name);
        rmdir_tree(pat, 0);
        left += access(pat, F_OK) == 0;
        if (!left)
            break;
        usleep(50 * 1000);
    }
}
