/*
 * argv.c — the command line that puts an agent into a profile: bubblewrap, then prlimit for the
 * limits that are rlimits, then the agent.
 *
 * The mount order is the policy, later mounts winning over earlier ones:
 *   1. the whole root read-only; a minimal /dev and a /proc of the new PID namespace; a private
 *      /tmp and /var/tmp;
 *   2. the profile's read-only and read-write paths;
 *   3. what must stay invisible: the server's data directory (database, recordings, every other
 *      session's workspace), its runtime directory (the recorder socket), the server user's home,
 *      the host's password hashes and SSH keys, and the profile's hidden paths — an empty
 *      read-only directory over a directory, /dev/null over a file; none for what another of
 *      these mounts covers, nor for what the server's user can neither read nor enter;
 *   4. the session's own workspace and $HOME read-write, and the few files the agent must read
 *      (its prompt and settings) read-only — these may lie inside a hidden directory, so they
 *      come last.
 * Capabilities are dropped (in the sandbox's user namespace too), so the agent cannot unmount
 * what hides a path; it may not create user namespaces of its own. Everything inside stays in
 * the process group the recorder made for the agent, so pause (SIGSTOP of the group) reaches
 * it all, and the kernel makes a fork racing the SIGSTOP stop too.
 *
 * A stop sends SIGTERM to that group and lets the agent wrap up (D14). bubblewrap itself would
 * die of it at once and take the agent along, so the recorder starts it with SIGTERM blocked
 * (`ah agent record --hold-term`), which every process inside inherits, and the agent (`ah
 * agent start`, always the command here) unblocks it. No `env` process for either: each
 * process a start takes costs a wait for a CPU on a busy machine (bench/bench-sandbox.py).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

void vec_push(struct vec *a, const char *s) {
    if (a->err)
        return;
    if (a->n + 2 > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        char **v = realloc(a->v, cap * sizeof(char *));
        if (!v) {
            a->err = AH_E_NOMEM;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    if (!(a->v[a->n] = strdup(s))) {
        a->err = AH_E_NOMEM;
        return;
    }
    a->v[++a->n] = NULL;
}

void vec_push3(struct vec *a, const char *x, const char *y, const char *z) {
    vec_push(a, x);
    vec_push(a, y);
    if (z)
        vec_push(a, z);
}

void sandbox_argv_free(char **argv) {
    for (char **p = argv; p && *p; p++)
        free(*p);
    free(argv);
}

static bool under(const char *path, const char *dir) {
    size_t n = strlen(dir);
    return !strncmp(path, dir, n) && (path[n] == '/' || path[n] == '\0');
}

/* Hides one path: an empty directory over a directory (remounted read-only at the end, once
 * what must show through has its mount point), /dev/null over anything else. Paths that do not
 * exist, or that the private /tmp already hides, need nothing; nor do those the server may
 * neither read nor search (/etc/shadow and /root for a server that is not root): the agent has
 * the server's user and groups and no capability, so it cannot either, and each mount costs
 * bubblewrap a parse of the mount table. */
static void hide(struct vec *a, struct vec *remount, const char *path) {
    struct stat st;
    if (under(path, "/tmp") || under(path, "/var/tmp") || lstat(path, &st) != 0)
        return;
    if (faccessat(AT_FDCWD, path, R_OK, AT_EACCESS) != 0 &&
        faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) != 0 && errno == EACCES)
        return;
    if (S_ISDIR(st.st_mode)) {
        vec_push3(a, "--tmpfs", path, NULL);
        vec_push(remount, path);
    } else if (!S_ISLNK(st.st_mode)) {
        vec_push3(a, "--ro-bind", "/dev/null", path);
    }
}

/* Whether hidden[i] needs no mount of its own because another mount covers it anyway: it lies
 * inside another hidden directory (the server's data directory inside the server user's home,
 * the default layout), repeats an earlier entry, or lies inside (or is) the session's $HOME or
 * workspace, which are bound over their paths afterwards. Besides the mount it saves (each costs
 * bubblewrap a parse of the mount table), a covered directory must not be remounted read-only
 * at the end: its path then leads into the covering mount, not to a mount point of its own, and
 * bubblewrap refuses to start. */
static bool covered(const char *const *hidden, size_t n, size_t i, const char *home_mount,
                    const char *workspace) {
    const char *path = hidden[i];
    if ((home_mount && under(path, home_mount)) || (workspace && under(path, workspace)))
        return true;
    for (size_t j = 0; j < n; j++) {
        if (j == i || !under(path, hidden[j]))
            continue;
        if (!strcmp(path, hidden[j])) {
            if (j < i) /* the first of equal entries does it */
                return true;
            continue;
        }
        struct stat st; /* only a directory hides what is below it (see hide) */
        if (!under(hidden[j], "/tmp") && !under(hidden[j], "/var/tmp") &&
            lstat(hidden[j], &st) == 0 && S_ISDIR(st.st_mode))
            return true;
    }
    return false;
}

static bool all_absolute(const char *const *v) {
    for (; v && *v; v++)
        if ((*v)[0] != '/')
            return false;
    return true;
}

/* What the host has that no agent should read, whatever the profile says. */
static const char *const host_secrets[] = {"/etc/shadow",  "/etc/shadow-", "/etc/gshadow",
                                           "/etc/gshadow-", "/etc/ssh",    "/root",
                                           NULL};

static bool under_any(const char *path, const char *const *dirs) {
    for (; dirs && *dirs; dirs++)
        if (under(path, *dirs))
            return true;
    return false;
}

/* Whether the agent sees `path` read-only already, through the read-only root: then it needs no
 * mount of its own. Each mount costs bubblewrap a parse of the whole mount table (about 0.4 ms
 * of CPU here, bench/bench-sandbox-exec.py), and the common case is the `ah` binary installed
 * in /usr/bin. Anything under a private, hidden or read-write tree is not. */
static bool visible(const struct sandbox_set *s, const struct sandbox_profile *p,
                    const struct sandbox_paths *paths, const char *path) {
    (void)s;
    static const char *const private_trees[] = {"/tmp", "/var/tmp", "/dev", "/proc", NULL};
    const char *home_at = paths->home_at ? paths->home_at : paths->home;
    /* a symbolic link on the way may lead into a hidden tree: only a path that is its own
     * real path is judged by its name */
    char real[PATH_MAX];
    if (!realpath(path, real) || strcmp(real, path) != 0)
        return false;
    return !under_any(path, private_trees) && !under_any(path, host_secrets) &&
           !under_any(path, paths->hide) && !under_any(path, (const char *const *)p->hidden) &&
           !under_any(path, (const char *const *)p->read_write) &&
           !under_any(path, (const char *const *)p->read_only) &&
           !(home_at && under(path, home_at)) &&
           !(paths->workspace && under(path, paths->workspace)) &&
           !(paths->net_dir && under(path, paths->net_dir));
}

int sandbox_wrap(const struct sandbox_set *s, const struct sandbox_profile *p,
                 const struct sandbox_limits *lim, bool cgroup_ok,
                 const struct sandbox_paths *paths, const char *const *agent_argv,
                 char ***ret_argv) {
    if (!agent_argv || !agent_argv[0])
        return AH_E_INVAL;
    if ((paths->workspace && paths->workspace[0] != '/') || (paths->home && paths->home[0] != '/') ||
        (paths->home_at && paths->home_at[0] != '/') || !all_absolute(paths->ro_files) ||
        !all_absolute(paths->hide))
        return AH_E_INVAL;
    bool relay = !p->disabled && p->network == SANDBOX_NET_ALLOW_LIST;
    if (relay && (!paths->net_dir || paths->net_dir[0] != '/' || !paths->self_exe ||
                  !p->allow_hosts))
        return AH_E_INVAL;
    struct vec a = {0}, remount = {0};
    char num[64];
    if (relay) {
        /* the relay's outside end, in the host's network; it runs bubblewrap */
        if (paths->net_exe)
            vec_push3(&a, paths->net_exe, "relay", NULL);
        else
            vec_push3(&a, paths->self_exe, "agent", "net-relay");
        vec_push3(&a, "--dir", paths->net_dir, NULL);
        for (char **h = p->allow_hosts; *h; h++)
            vec_push3(&a, "--to", *h, NULL);
        vec_push(&a, "--");
    }
    if (!p->disabled) {
        vec_push(&a, s->bwrap);
        vec_push3(&a, "--unshare-user", "--unshare-pid", "--unshare-ipc");
        vec_push3(&a, "--unshare-uts", "--unshare-cgroup-try", NULL);
        if (p->network != SANDBOX_NET_ALLOW)
            vec_push(&a, "--unshare-net");
        vec_push3(&a, "--die-with-parent", "--cap-drop", "ALL");
        /* the relay's inside end listens on the destinations' own ports, 443 too: binding
         * one below 1024 in the sandbox's own network namespace harms nobody */
        if (relay)
            vec_push3(&a, "--cap-add", "CAP_NET_BIND_SERVICE", NULL);
        /* no nested user namespaces (in which the agent would hold capabilities). With a
         * relay its inside end does it, once it listens: bubblewrap's way puts the command in
         * a nested namespace that has no say over the sandbox's network */
        if (!relay)
            vec_push(&a, "--disable-userns");
        vec_push3(&a, "--hostname", "ah-sandbox", NULL);
        /* 1. the root read-only, minimal /dev and /proc, private temporary directories */
        vec_push3(&a, "--ro-bind", "/", "/");
        vec_push3(&a, "--dev", "/dev", NULL);
        vec_push3(&a, "--proc", "/proc", NULL);
        vec_push3(&a, "--tmpfs", "/tmp", NULL);
        struct stat st;
        if (stat("/var/tmp", &st) == 0 && S_ISDIR(st.st_mode))
            vec_push3(&a, "--tmpfs", "/var/tmp", NULL);
        /* 2. the profile's own paths */
        for (char **q = p->read_only; q && *q; q++)
            vec_push3(&a, "--ro-bind-try", *q, *q);
        for (char **q = p->read_write; q && *q; q++)
            vec_push3(&a, "--bind-try", *q, *q);
        /* 3. what must stay invisible */
        const char *home_at = paths->home_at ? paths->home_at : paths->home;
        const char *hidden[8 + 2 * SANDBOX_PATHS_MAX];
        size_t nh = 0;
        for (const char *const *q = host_secrets; *q; q++)
            hidden[nh++] = *q;
        for (const char *const *q = paths->hide; q && *q; q++)
            if (nh < sizeof(hidden) / sizeof(hidden[0]))
                hidden[nh++] = *q;
            else
                a.err = AH_E_INVAL; /* never fewer hidden than asked */
        for (char **q = p->hidden; q && *q; q++)
            if (nh < sizeof(hidden) / sizeof(hidden[0]))
                hidden[nh++] = *q;
            else
                a.err = AH_E_INVAL;
        /* by their real paths: a symbolic link (the path itself or a directory on the way, as a
         * data directory or home linked in from another disk) is no mount point, and what it
         * leads to would stay readable by its own name */
        char *real[sizeof(hidden) / sizeof(hidden[0])];
        for (size_t i = 0; i < nh; i++)
            if ((real[i] = realpath(hidden[i], NULL)))
                hidden[i] = real[i];
        for (size_t i = 0; i < nh; i++)
            if (!covered(hidden, nh, i, paths->home ? home_at : NULL, paths->workspace))
                hide(&a, &remount, hidden[i]);
        for (size_t i = 0; i < nh; i++)
            free(real[i]);
        /* 4. the session's own trees and files */
        if (paths->home)
            vec_push3(&a, "--bind", paths->home, home_at);
        if (paths->workspace)
            vec_push3(&a, "--bind", paths->workspace, paths->workspace);
        for (const char *const *q = paths->ro_files; q && *q; q++)
            if (!visible(s, p, paths, *q))
                vec_push3(&a, "--ro-bind", *q, *q);
        if (relay) {
            /* the relay's sockets (connecting needs no write access to the mount) and the
             * names of the allowed hosts; both under the private /tmp, where a mount point can
             * be made */
            char hosts[4200];
            snprintf(hosts, sizeof(hosts), "%s/hosts", paths->net_dir);
            vec_push3(&a, "--ro-bind", paths->net_dir, SANDBOX_NET_INSIDE_DIR);
            vec_push3(&a, "--ro-bind", hosts, "/etc/hosts");
        }
        for (size_t i = 0; i < remount.n; i++) {
            /* a hidden directory that is also a mount point of ours ($HOME over the server
             * user's home) is that mount now: it stays writable */
            bool bound = (home_at && !strcmp(remount.v[i], home_at)) ||
                         (paths->workspace && !strcmp(remount.v[i], paths->workspace));
            for (const char *const *q = paths->ro_files; !bound && q && *q; q++)
                bound = !strcmp(remount.v[i], *q);
            if (!bound)
                vec_push3(&a, "--remount-ro", remount.v[i], NULL);
        }
        if (paths->workspace)
            vec_push3(&a, "--chdir", paths->workspace, NULL);
        if (home_at) {
            vec_push3(&a, "--setenv", "HOME", home_at);
        }
        vec_push3(&a, "--setenv", "TMPDIR", "/tmp");
        vec_push(&a, "--");
        if (relay) {
            /* the inside end: listens in the sandbox's own network namespace */
            if (paths->net_exe)
                vec_push3(&a, paths->net_exe, "forward", NULL);
            else
                vec_push3(&a, paths->self_exe, "agent", "net-forward");
            vec_push3(&a, "--dir", SANDBOX_NET_INSIDE_DIR, NULL);
            for (size_t i = 0; p->allow_hosts[i]; i++) {
                char ip[32], listen[64];
                const char *colon = strrchr(p->allow_hosts[i], ':');
                if (!sandbox_net_inside(p, i, ip, sizeof(ip))) {
                    a.err = AH_E_INVAL;
                    break;
                }
                snprintf(listen, sizeof(listen), "%s%s", ip, colon);
                vec_push3(&a, "--listen", listen, NULL);
            }
            vec_push(&a, "--");
        }
    }
    /* rlimits for what no cgroup enforces: prlimit sets them on itself, then runs the agent */
    bool fsize = lim && lim->file_size_mib > 0;
    bool as = lim && lim->memory_mib > 0 && !cgroup_ok;
    bool nproc = lim && lim->pids > 0 && !cgroup_ok;
    if (fsize || as || nproc) {
        vec_push(&a, "prlimit");
        if (fsize) {
            snprintf(num, sizeof(num), "--fsize=%lld", (long long)lim->file_size_mib << 20);
            vec_push(&a, num);
        }
        if (as) {
            snprintf(num, sizeof(num), "--as=%lld", (long long)lim->memory_mib << 20);
            vec_push(&a, num);
        }
        if (nproc) {
            snprintf(num, sizeof(num), "--nproc=%lld", (long long)lim->pids);
            vec_push(&a, num);
        }
        vec_push(&a, "--");
    }
    for (const char *const *q = agent_argv; *q; q++)
        vec_push(&a, *q);
    sandbox_argv_free(remount.v);
    if (a.err) {
        sandbox_argv_free(a.v);
        return a.err;
    }
    *ret_argv = a.v;
    return 0;
}

char *sandbox_describe(const struct sandbox_profile *p, const struct sandbox_limits *lim,
                       bool cgroup_ok) {
    char buf[768];
    size_t k = 0;
    const char *how = cgroup_ok ? "cgroup" : "rlimit";
#define ADD(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(buf + k, sizeof(buf) - k, __VA_ARGS__);                                  \
        if (w_ > 0)                                                                                \
            k = k + (size_t)w_ < sizeof(buf) ? k + (size_t)w_ : sizeof(buf) - 1;                  \
    } while (0)
    if (p->disabled)
        ADD("sandbox disabled: the agent runs with the server's rights");
    else
        ADD("sandbox %s: bubblewrap, network %s", p->name,
            p->network == SANDBOX_NET_NONE    ? "none"
            : p->network == SANDBOX_NET_ALLOW ? "allowed"
                                              : "only to the allow-list (");
    for (char **h = p->disabled || p->network != SANDBOX_NET_ALLOW_LIST ? NULL : p->allow_hosts;
         h && *h; h++)
        ADD("%s%s", *h, h[1] ? ", " : ")");
    const char *sep = "; limits: ";
    if (lim->memory_mib) {
        ADD("%smemory %lld MiB (%s)", sep, (long long)lim->memory_mib, how);
        sep = ", ";
    }
    if (lim->pids) {
        ADD("%spids %lld (%s)", sep, (long long)lim->pids,
            cgroup_ok ? "cgroup" : "rlimit, not enforced for root");
        sep = ", ";
    }
    if (lim->cpu_milli) {
        ADD("%scpu %lld.%03lld cores (%s)", sep, (long long)(lim->cpu_milli / 1000),
            (long long)(lim->cpu_milli % 1000), cgroup_ok ? "cgroup" : "not enforced: no cgroup");
        sep = ", ";
    }
    if (lim->file_size_mib) {
        ADD("%sfile size %lld MiB (rlimit)", sep, (long long)lim->file_size_mib);
        sep = ", ";
    }
    if (lim->wall_time_s)
        ADD("%swall time %lld s", sep, (long long)lim->wall_time_s);
#undef ADD
    return strdup(buf);
}
