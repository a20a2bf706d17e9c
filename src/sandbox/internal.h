/* internal.h — what the files of sandbox/ share; nothing outside sandbox/ includes it. */
#ifndef AH_SANDBOX_INTERNAL_H
#define AH_SANDBOX_INTERNAL_H

#include "sandbox.h"

enum cgroup_mode { CGROUP_NONE, CGROUP_V1, CGROUP_V2 };

struct sandbox_set {
    struct sandbox_profile *profiles; /* = storage */
    size_t n;
    struct sandbox_profile storage[32];
    char *default_name, *bwrap;
    bool allow_disabled;
    bool bwrap_ok;
    char bwrap_why[256], podman_why[256];
    /* the devcontainer runtime (podman.c): the podman binary, the OCI runtime it is told to
     * use, the containers' network, and whether the probe found them */
    char *podman, *podman_runtime, *podman_network;
    bool podman_ok;
    /* cgroups: where this server's own cgroups are, per controller (v1) or once (v2) */
    enum cgroup_mode cg_mode;
    char cg_memory[512], cg_pids[512], cg_cpu[512];
};

/* A growing NULL-terminated argv (argv.c): each string copied; err sticks at the first
 * AH_E_NOMEM, after which pushes do nothing. Free v with sandbox_argv_free. */
struct vec {
    char **v;
    size_t n, cap;
    int err;
};
void vec_push(struct vec *a, const char *s);
void vec_push3(struct vec *a, const char *x, const char *y, const char *z); /* z may be NULL */

/* Whether an executable of that name is on PATH (or is that path). */
bool on_path(const char *name);

/* Finds podman and its OCI runtime (podman.c); sets podman_ok or podman_why. */
void podman_probe(struct sandbox_set *s);

/* Finds the cgroups below which the server may create the sessions' (cgroup.c). */
void cgroup_probe(struct sandbox_set *s);

#endif
