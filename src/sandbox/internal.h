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
    /* cgroups: where this server's own cgroups are, per controller (v1) or once (v2) */
    enum cgroup_mode cg_mode;
    char cg_memory[512], cg_pids[512], cg_cpu[512];
};

/* Finds the cgroups below which the server may create the sessions' (cgroup.c). */
void cgroup_probe(struct sandbox_set *s);

#endif
