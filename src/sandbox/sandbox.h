/*
 * sandbox.h — running an agent in a sandbox (D51, D52): the profiles a server offers, the
 * bubblewrap command line that puts an agent into one, the network policy, and the resource
 * limits (cgroups where the server may create them, rlimits otherwise).
 *
 * Who uses what:
 *   - the server (exec/) loads the profiles from configuration once (sandbox_set_new), probes
 *     what this machine can provide (sandbox_set_probe), refuses tasks asking for a profile or
 *     runtime it cannot provide (sandbox_check: 422, never a silent unsandboxed run), and at
 *     launch builds the wrapper command (sandbox_wrap) and the session's cgroups
 *     (sandbox_cgroup_create);
 *   - the recorder (agent/) starts the agent inside those cgroups (sandbox_cgroup_enter/leave
 *     around its spawn) and names an out-of-memory death (sandbox_cgroup_oom).
 * A `struct sandbox_set` is immutable after sandbox_set_probe: any thread may read it.
 */
#ifndef AH_SANDBOX_H
#define AH_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/core.h"

#define SANDBOX_NAME_MAX 64
#define SANDBOX_PATHS_MAX 64  /* read-only, read-write and hidden paths of one profile, each */
#define SANDBOX_CGROUPS_MAX 4 /* cgroup v1 hierarchies we use (memory, pids, cpu, freezer) */

/* Resource limits; 0 means "no limit". */
struct sandbox_limits {
    int64_t memory_mib;    /* cgroup memory limit, else RLIMIT_AS */
    int64_t pids;          /* cgroup pids.max, else RLIMIT_NPROC (not enforced for root) */
    int64_t cpu_milli;     /* thousandths of a core: cgroup CPU quota (no rlimit equivalent) */
    int64_t file_size_mib; /* RLIMIT_FSIZE: the largest file the agent may write */
    int64_t wall_time_s;   /* the recorder kills the agent after this long */
};

enum sandbox_network {
    SANDBOX_NET_ALLOW, /* the host's network: agents call their model APIs */
    SANDBOX_NET_NONE,  /* a network namespace of its own with only its own loopback */
    SANDBOX_NET_ALLOW_LIST, /* that namespace, plus relays to the profile's allow_hosts only */
};

#define SANDBOX_ALLOW_MAX 32 /* destinations of one allow-list profile */

struct sandbox_profile {
    char *name;
    bool disabled; /* the `disabled` profile: no sandbox at all */
    enum sandbox_network network;
    char **read_only, **read_write, **hidden; /* NULL-terminated absolute paths */
    char **allow_hosts; /* allow-list: NULL-terminated "host:port", host lower-case */
    struct sandbox_limits limits;             /* defaults; a task's runtime.resources win */
};

struct sandbox_set;

/* Builds the profiles: the built-in `default`, `offline` and `disabled`, then the custom ones
 * and overrides from configuration. `cfg` is the configuration's `sandbox.*` keys without that
 * prefix, as the config file parser gives them ({"allow-disabled": true, "default": "offline",
 * "bwrap": "/usr/bin/bwrap", "NAME.network": "none", "NAME.read-only": [...], ...}; may be NULL).
 * AH_E_INVAL with the offending key in reterr, AH_E_NOMEM. Free with sandbox_set_free. */
int sandbox_set_new(const json_t *cfg, struct sandbox_set **ret, struct ah_problem *reterr);
void sandbox_set_free(struct sandbox_set *s);
AH_DEFINE_CLEANUP(struct sandbox_set, sandbox_set_free)

/* Finds out what this machine provides: runs bubblewrap once (`--unshare-all ... true`), looks
 * for cgroups it may create under its own, and for podman. Blocks for as long as that takes
 * (a few ms); call once at start-up, before the set is shared. */
void sandbox_set_probe(struct sandbox_set *s);
/* For tests: declare what the probe would have found, without running anything. */
void sandbox_set_fake_probe(struct sandbox_set *s, bool bwrap_works, const char *why_not);

/* The profile of that name, or NULL. Lent until sandbox_set_free. */
const struct sandbox_profile *sandbox_find(const struct sandbox_set *s, const char *name);
/* The profile a task gets when it names none (`default` unless configured). */
const char *sandbox_default_name(const struct sandbox_set *s);

/* Whether a task may run with runtime `type` ("local", "devcontainer", "disabled") and sandbox
 * profile `profile` (NULL: the default) on this machine. 0, or AH_E_RUNTIME (422) with a detail
 * naming what is missing: an unknown profile (and the known ones), `disabled` when the
 * configuration does not allow it, bubblewrap missing or not working, podman missing. */
int sandbox_check(const struct sandbox_set *s, const char *type, const char *profile,
                  struct ah_problem *reterr);

/* GET /runtimes (API.md §7.11): {"items": [{"type":"local","sandboxProfiles":[...]}, ...],
 * "unavailable": [{"type":..., "reason":...}]} — items lists only what works here. NULL on OOM. */
json_t *sandbox_runtimes_json(const struct sandbox_set *s);

/* What one launch needs to know. Every path absolute; NULL members are left out. */
struct sandbox_paths {
    const char *workspace;       /* read-write, the agent's working directory */
    const char *home;            /* the session's private $HOME (read-write) */
    const char *home_at;         /* where $HOME appears inside (NULL: at `home`) */
    const char *const *ro_files; /* NULL-terminated: files the agent must read (prompt, ...) */
    const char *const *hide;     /* NULL-terminated: server paths to make invisible (data dir,
                                  * runtime dir, the server user's home) */
    /* allow-list profiles only: the session's relay directory (its sockets and the hosts file
     * sandbox_net_prepare wrote) and the `ah` binary that runs both ends of the relay */
    const char *net_dir;
    const char *self_exe;
    const char *net_exe; /* `ah-net` (the same ends, C library only: faster to start); NULL:
                          * `self_exe agent net-relay|net-forward` */
};

/* The limits a task asks for in runtime.resources (memoryMiB, cpu, pids, fileSizeMiB,
 * wallTimeSec; absent ones 0). resources may be NULL. */
void sandbox_limits_from_json(const json_t *resources, struct sandbox_limits *ret);

/* What a session with this `runtime` object (as stored with its task) runs under on this
 * server: {"profile", "network": "allow"|"none", "limits": {memoryMiB, pids, cpu, fileSizeMiB,
 * wallTimeSec — only those set}, "enforcement": "cgroup"|"rlimit", "summary"}; {"profile":
 * "disabled"} without a sandbox; NULL for other runtimes (or on OOM). */
json_t *sandbox_session_json(const struct sandbox_set *s, const json_t *runtime);

/* The effective limits: the profile's, each one overridden by the task's when that is set. */
struct sandbox_limits sandbox_limits_merge(const struct sandbox_limits *profile,
                                           const struct sandbox_limits *task);

/* Builds the command that runs `agent_argv` inside the profile: bwrap and its options, then
 * (when some limit must be an rlimit) prlimit, then agent_argv. `cgroup_ok` says whether the
 * memory, pids and CPU limits are applied by cgroups (then only the file size is an rlimit).
 * The result is a NULL-terminated array; its strings and the array belong to the caller (free
 * with sandbox_argv_free). AH_E_NOMEM, AH_E_INVAL (a relative path). */
int sandbox_wrap(const struct sandbox_set *s, const struct sandbox_profile *p,
                 const struct sandbox_limits *lim, bool cgroup_ok,
                 const struct sandbox_paths *paths, const char *const *agent_argv,
                 char ***ret_argv);
void sandbox_argv_free(char **argv);

/* One line for the session's log: what was applied and how ("sandbox default: bubblewrap,
 * network allowed; memory 256 MiB (cgroup), pids 64 (cgroup), file size 10 MiB (rlimit)").
 * Caller frees; NULL on OOM. */
char *sandbox_describe(const struct sandbox_profile *p, const struct sandbox_limits *lim,
                       bool cgroup_ok);

/* ---- cgroups ---------------------------------------------------------------------------------- */

/* The cgroups of one session: one directory per hierarchy (cgroup v1) or one (v2). */
struct sandbox_cgroup {
    int n;
    char dir[SANDBOX_CGROUPS_MAX][512];
};

/* Whether the probe found cgroups this server may create (memory, pids and cpu controllers). */
bool sandbox_cgroups_usable(const struct sandbox_set *s);
/* Creates the session's cgroups below the server's own and writes the limits into them.
 * 0 (ret filled), AH_E_NOTIMPL when this machine gives us none, AH_E_IO. */
int sandbox_cgroup_create(const struct sandbox_set *s, const char *session_id,
                          const struct sandbox_limits *lim, struct sandbox_cgroup *ret);
/* Removes them (they must be empty; best effort). */
void sandbox_cgroup_remove(const struct sandbox_cgroup *cg);
/* Removes whatever cgroups session_id still has (its recorder normally does it; this is for a
 * recorder that was killed). A few rmdir calls; false while one is still there (busy: its last
 * processes are still exiting), true once none is. */
bool sandbox_cgroup_forget(const struct sandbox_set *s, const char *session_id);

/* The recorder's side: moves the calling process into the session's cgroups, so the agent it
 * spawns next starts inside (no window in which a fork escapes), and back to where it was.
 * `saved` holds the original cgroups between the two calls. 0 or AH_E_IO. */
int sandbox_cgroup_enter(const struct sandbox_cgroup *cg, struct sandbox_cgroup *saved);
void sandbox_cgroup_leave(const struct sandbox_cgroup *saved);
/* How many processes the kernel killed for memory in these cgroups (0 if none, or unknown). */
int64_t sandbox_cgroup_oom_kills(const struct sandbox_cgroup *cg);
/* Whether the pids limit refused a fork at least once. */
bool sandbox_cgroup_pids_hit(const struct sandbox_cgroup *cg);

/* ---- the devcontainer runtime (podman.c) -------------------------------------------------------
 * The agent runs in a podman container of the task's image; the recorder stays outside. */

/* The cgroup below which every container's goes (its own at SANDBOX_CONTAINER_CGROUP/NAME). */
#define SANDBOX_CONTAINER_CGROUP "/ah-devcontainer"

struct sandbox_container {
    const char *name;  /* the container's name ("ah-" and the session id) */
    const char *image; /* a local image (nothing is pulled by us; podman may) */
    const json_t *env; /* variables for inside ({NAME: "value"}), or NULL */
};

/* The podman binary and the OCI runtime it is told to use (sandbox.podman, .podman-runtime).
 * Lent until sandbox_set_free. */
const char *sandbox_podman(const struct sandbox_set *s);
const char *sandbox_podman_runtime(const struct sandbox_set *s);
/* Whether `image` may be given to podman as an image reference (no option, no blanks). */
bool sandbox_image_ok(const char *image);

/* Builds `podman run … IMAGE …agent_argv` (agent_argv[0] is the host's `ah`, run inside through
 * the host's loader): the workspace and $HOME bind-mounted read-write at their paths (home at
 * home_at when set), ro_files read-only, the limits as podman's. `paths->hide` and the profile
 * do not apply: the container shows nothing of the host but these. Caller frees with
 * sandbox_argv_free. AH_E_INVAL (a path podman cannot mount, a bad image or variable name),
 * AH_E_NOTFOUND (agent_argv[0] has no dynamic loader), AH_E_NOMEM. */
int sandbox_container_wrap(const struct sandbox_set *s, const struct sandbox_container *c,
                           const struct sandbox_limits *lim, const struct sandbox_paths *paths,
                           const char *const *agent_argv, char ***ret_argv);

/* Reads the devcontainer.json at `rel` (relative, inside `workspace`; comments and trailing
 * commas allowed): its "image" (NULL when absent) and "containerEnv" (NULL when absent), both
 * the caller's. An image built by the file (build, dockerFile, dockerComposeFile) is
 * AH_E_UNSUPPORTED; a missing file AH_E_NOTFOUND; anything malformed AH_E_INVAL — each with
 * the reason in reterr. Every other member is ignored. */
int sandbox_devcontainer_read(const char *workspace, const char *rel, char **ret_image,
                              json_t **ret_env, struct ah_problem *reterr);

/* The recorder's side: freezes (pause) or thaws the container's cgroup; 0 or an errno code
 * (AH_E_NOTFOUND while the container does not exist yet). */
int sandbox_container_freeze(const char *name, bool frozen);
/* Removes the container (force: `podman rm --force`, for a podman client that was killed before
 * it could) and the cgroups podman left behind, waiting up to 5 s for them to empty. Blocks
 * until done. */
void sandbox_container_remove(const char *podman, const char *runtime, const char *name,
                              bool force);

/* ---- the allow-list network (relay.c) ----------------------------------------------------------
 * An allow-list profile runs the agent in a network namespace of its own (only a loopback) and
 * makes each listed destination reachable by a pair of relays, both `ah` itself:
 *   - outside, `ah agent net-relay` (in the host's network) listens on one Unix socket per
 *     destination in the session's relay directory and connects each connection it accepts to
 *     that destination — the only destinations it ever dials are the configured ones;
 *   - inside, `ah agent net-forward` listens on a loopback address per destination (the IPv4
 *     address itself for 127.x.x.x, else 127.0.1.N which the sandbox's /etc/hosts gives the
 *     name) and carries each connection to the matching socket.
 * Everything else has no route: no DNS server, no other address. TCP only. */

/* Where the relay directory appears inside the sandbox (in its private /tmp). */
#define SANDBOX_NET_INSIDE_DIR "/tmp/.ah-net"
/* Where entry `i` of the profile's allow_hosts listens inside ("127.0.1.1"); false if none. */
bool sandbox_net_inside(const struct sandbox_profile *p, size_t i, char *ip, size_t n);
/* Creates `dir` (0700) and writes dir/hosts: the sandbox's /etc/hosts. 0 or AH_E_IO. */
int sandbox_net_prepare(const struct sandbox_profile *p, const char *dir);
/* `ah agent net-relay --dir D --to HOST:PORT... -- COMMAND...` and
 * `ah agent net-forward --dir D --listen IP:PORT... -- COMMAND...`: serve until COMMAND ends,
 * then exit as it did. */
int sandbox_net_relay_main(int argc, char **argv);
int sandbox_net_forward_main(int argc, char **argv);

#endif
