/*
 * cgroup.c — resource limits of a session with cgroups, where the server may create them.
 *
 * A session's cgroups are created below the server's own (so whatever limits the server lives
 * under also bound its agents), one per hierarchy on cgroup v1 (memory, pids, cpu) or one on a
 * cgroup v2 tree whose controllers are delegated to us. The recorder steps into them just
 * before it spawns the agent and steps back right after (sandbox_cgroup_enter/leave): the
 * agent is born inside, so not even its first fork escapes, and the recorder itself is never
 * subject to the agent's limits. Which mode this machine has is found once (cgroup_probe);
 * without one, the limits fall back to rlimits (see argv.c) and sandbox_describe says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static int write_file(const char *dir, const char *name, const char *value) {
    char path[640];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return ah_err_from_errno(errno);
    ssize_t n = write(fd, value, strlen(value));
    int err = n < 0 ? errno : 0;
    close(fd);
    return n < 0 ? ah_err_from_errno(err) : 0;
}

/* The number after `key ` in a flat-keyed file (memory.events, pids.events, oom_control). */
static int64_t read_key(const char *dir, const char *name, const char *key) {
    char path[640], line[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int64_t v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, key, kl) && line[kl] == ' ') {
            v = strtoll(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static bool exists(const char *dir, const char *name) {
    char path[640];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* Our own cgroup path in the hierarchy that has `controller` (v1), or in the v2 tree ("" as
 * controller); false when there is none. */
static bool own_path(const char *controller, char *out, size_t n) {
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctls = c1 + 1;
        if (!*controller) {
            found = !strcmp(line, "0") && !*ctls;
        } else {
            size_t cl = strlen(controller);
            for (const char *p = ctls; *p;) {
                size_t len = strcspn(p, ",");
                if (len == cl && !strncmp(p, controller, cl))
                    found = true;
                p += len + (p[len] == ',');
            }
        }
        if (found)
            snprintf(out, n, "%s", strcmp(c2 + 1, "/") ? c2 + 1 : "");
    }
    fclose(f);
    return found;
}

/* Whether we may create a child cgroup in dir (tries one and removes it). */
static bool can_create(const char *dir) {
    char probe[640];
    snprintf(probe, sizeof(probe), "%s/ah-probe-%d", dir, (int)getpid());
    if (mkdir(probe, 0755) < 0 && errno != EEXIST)
        return false;
    rmdir(probe);
    return true;
}

void cgroup_probe(struct sandbox_set *s) {
    char path[400];
    s->cg_mode = CGROUP_NONE;
    s->cg_memory[0] = s->cg_pids[0] = s->cg_cpu[0] = '\0';
    if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) { /* a pure cgroup v2 host */
        char base[512];
        if (!own_path("", path, sizeof(path)))
            return;
        snprintf(base, sizeof(base), "/sys/fs/cgroup%s", path);
        /* the controllers must be enabled for our children; refused while we share the cgroup
         * with other processes (the no-internal-processes rule): then there is no delegation */
        write_file(base, "cgroup.subtree_control", "+memory +pids +cpu");
        char ctl[256] = "";
        snprintf(path, sizeof(path), "%s/cgroup.subtree_control", base);
        FILE *f = fopen(path, "re");
        if (f) {
            if (!fgets(ctl, sizeof(ctl), f))
                ctl[0] = '\0';
            fclose(f);
        }
        if (strstr(ctl, "memory") && strstr(ctl, "pids") && can_create(base)) {
            s->cg_mode = CGROUP_V2;
            snprintf(s->cg_memory, sizeof(s->cg_memory), "%s", base);
            snprintf(s->cg_pids, sizeof(s->cg_pids), "%s", base);
            if (strstr(ctl, "cpu"))
                snprintf(s->cg_cpu, sizeof(s->cg_cpu), "%s", base);
        }
        return;
    }
    /* cgroup v1: one hierarchy per controller, each at /sys/fs/cgroup/<controller> */
    static const char *const names[] = {"memory", "pids", "cpu"};
    char *dirs[] = {s->cg_memory, s->cg_pids, s->cg_cpu};
    for (int i = 0; i < 3; i++) {
        char dir[512];
        if (!own_path(names[i], path, sizeof(path)))
            continue;
        snprintf(dir, sizeof(dir), "/sys/fs/cgroup/%s%s", names[i], path);
        if (can_create(dir))
            snprintf(dirs[i], sizeof(s->cg_memory), "%s", dir);
    }
    if (s->cg_memory[0] && s->cg_pids[0])
        s->cg_mode = CGROUP_V1;
}

bool sandbox_cgroups_usable(const struct sandbox_set *s) {
    return s->cg_mode != CGROUP_NONE;
}

static int add_dir(struct sandbox_cgroup *cg, const char *base, const char *sid) {
    for (int i = 0; i < cg->n; i++) { /* v2: one directory serves every controller */
        char want[512];
        snprintf(want, sizeof(want), "%s/ah-%s", base, sid);
        if (!strcmp(cg->dir[i], want))
            return i;
    }
    if (cg->n == SANDBOX_CGROUPS_MAX)
        return AH_E_INVAL;
    int i = cg->n;
    snprintf(cg->dir[i], sizeof(cg->dir[i]), "%s/ah-%s", base, sid);
    if (mkdir(cg->dir[i], 0755) < 0 && errno != EEXIST)
        return ah_err_from_errno(errno);
    cg->n++;
    return i;
}

int sandbox_cgroup_create(const struct sandbox_set *s, const char *session_id,
                          const struct sandbox_limits *lim, struct sandbox_cgroup *ret) {
    if (s->cg_mode == CGROUP_NONE)
        return AH_E_NOTIMPL;
    struct sandbox_cgroup cg = {0};
    char v[64];
    int rc = 0, i;
    bool v2 = s->cg_mode == CGROUP_V2;
    if (lim->memory_mib > 0) {
        if ((i = add_dir(&cg, s->cg_memory, session_id)) < 0) {
            rc = i;
            goto fail;
        }
        snprintf(v, sizeof(v), "%lld", (long long)lim->memory_mib << 20);
        rc = write_file(cg.dir[i], v2 ? "memory.max" : "memory.limit_in_bytes", v);
        if (rc < 0)
            goto fail;
        /* no escape into swap: the limit is memory plus swap (ignored where there is none) */
        if (v2)
            write_file(cg.dir[i], "memory.swap.max", "0");
        else if (exists(cg.dir[i], "memory.memsw.limit_in_bytes"))
            write_file(cg.dir[i], "memory.memsw.limit_in_bytes", v);
    }
    if (lim->pids > 0) {
        if ((i = add_dir(&cg, s->cg_pids, session_id)) < 0) {
            rc = i;
            goto fail;
        }
        snprintf(v, sizeof(v), "%lld", (long long)lim->pids);
        if ((rc = write_file(cg.dir[i], "pids.max", v)) < 0)
            goto fail;
    }
    if (lim->cpu_milli > 0 && s->cg_cpu[0]) {
        if ((i = add_dir(&cg, s->cg_cpu, session_id)) < 0) {
            rc = i;
            goto fail;
        }
        long long quota = (long long)lim->cpu_milli * 100; /* of a 100 ms period */
        if (v2) {
            snprintf(v, sizeof(v), "%lld 100000", quota);
            rc = write_file(cg.dir[i], "cpu.max", v);
        } else {
            rc = write_file(cg.dir[i], "cpu.cfs_period_us", "100000");
            snprintf(v, sizeof(v), "%lld", quota);
            if (rc == 0)
                rc = write_file(cg.dir[i], "cpu.cfs_quota_us", v);
        }
        if (rc < 0)
            goto fail;
    }
    *ret = cg;
    return 0;
fail:
    sandbox_cgroup_remove(&cg);
    return rc;
}

bool sandbox_cgroup_forget(const struct sandbox_set *s, const char *session_id) {
    const char *bases[] = {s->cg_memory, s->cg_pids, s->cg_cpu};
    bool gone = true;
    for (int i = 0; i < 3; i++) {
        if (!bases[i][0])
            continue;
        char dir[700];
        snprintf(dir, sizeof(dir), "%s/ah-%s", bases[i], session_id);
        /* v2: the same directory thrice, gone after the first */
        if (rmdir(dir) < 0 && errno != ENOENT)
            gone = false;
    }
    return gone;
}

void sandbox_cgroup_remove(const struct sandbox_cgroup *cg) {
    for (int i = 0; i < cg->n; i++)
        rmdir(cg->dir[i]);
}

int sandbox_cgroup_enter(const struct sandbox_cgroup *cg, struct sandbox_cgroup *saved) {
    memset(saved, 0, sizeof(*saved));
    for (int i = 0; i < cg->n; i++) {
        /* the session's cgroup is a child of the one we were started in */
        snprintf(saved->dir[i], sizeof(saved->dir[i]), "%s", cg->dir[i]);
        char *slash = strrchr(saved->dir[i], '/');
        if (slash)
            *slash = '\0';
        int rc = write_file(cg->dir[i], "cgroup.procs", "0");
        if (rc < 0) {
            sandbox_cgroup_leave(saved);
            return rc;
        }
        saved->n = i + 1;
    }
    return 0;
}

void sandbox_cgroup_leave(const struct sandbox_cgroup *saved) {
    for (int i = 0; i < saved->n; i++)
        write_file(saved->dir[i], "cgroup.procs", "0");
}

int64_t sandbox_cgroup_oom_kills(const struct sandbox_cgroup *cg) {
    int64_t n = 0;
    for (int i = 0; i < cg->n; i++) {
        if (exists(cg->dir[i], "memory.events"))
            n += read_key(cg->dir[i], "memory.events", "oom_kill");
        else if (exists(cg->dir[i], "memory.oom_control"))
            n += read_key(cg->dir[i], "memory.oom_control", "oom_kill");
    }
    return n;
}

bool sandbox_cgroup_pids_hit(const struct sandbox_cgroup *cg) {
    for (int i = 0; i < cg->n; i++)
        if (exists(cg->dir[i], "pids.events") && read_key(cg->dir[i], "pids.events", "max") > 0)
            return true;
    return false;
}
