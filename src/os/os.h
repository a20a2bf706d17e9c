/*
 * os.h — the os/ layer's whole interface: small process and file helpers that the workspace
 * providers, the agent processes and the server all use (running a helper command within limits,
 * pidfds, process start times, confined opens, whole-file reads and writes). Below every layer
 * but core/; no state, no threads of its own; every call is thread-safe.
 */
#ifndef AH_OS_H
#define AH_OS_H

#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../core/core.h"

/* ---- processes ------------------------------------------------------------------------------- */

/* Initialises attr for a child of the server: its own process group (signals aimed at it reach
 * its helpers too, a Ctrl-C to the server does not), an empty signal mask and default SIGPIPE,
 * SIGTERM and SIGINT (the server blocks or ignores them, and a child would inherit that).
 * The caller destroys attr. */
void spawnattr_child(posix_spawnattr_t *attr);

/* Runs argv (PATH lookup) in cwd with stdin /dev/null and output captured (at most 64 KiB kept),
 * waits, and returns the exit status (0 ok, >0 exit code, 128+n signal) or AH_E_*. */
int run_command(const char *const *argv, const char *cwd, char **ret_output);
/* Bounds for run_command_ex. The command runs in its own process group, so giving up kills its
 * helpers too (git's remote helper holds the network connection). */
struct run_limits {
    int64_t timeout_ms; /* 0 = none; past it the group is killed and AH_E_TIMEOUT returned */
    int abort_fd;       /* -1, or a descriptor that turns readable to give up (AH_E_CANCELED) */
};
/* run_command within limits (NULL = none). On AH_E_TIMEOUT and AH_E_CANCELED *ret_output still
 * gets what the command printed. */
int run_command_ex(const char *const *argv, const char *cwd, const struct run_limits *lim,
                   char **ret_output);
int pidfd_open_pid(pid_t pid);
/* Start time of a process in clock ticks since boot (/proc/pid/stat field 22); 0 if gone. */
int64_t process_start_time(pid_t pid);
/* openat2(dirfd, path) confined to dirfd's tree (RESOLVE_BENEATH, no /proc magic links): an
 * absolute path, a ".." above it or a symlink that leads out fails with EXDEV, so a workspace's
 * own links cannot make us touch a file outside it. With no_symlinks every symlink on the way is
 * refused (ELOOP). The fd, or -1 with errno. */
int open_beneath(int dirfd, const char *path, int flags, mode_t mode, bool no_symlinks);
/* mkdir -p with mode. */
int make_dirs(const char *path, mode_t mode);
/* Writes a whole file atomically enough for our use (create, write, close). */
int write_file(const char *path, const void *data, size_t len, mode_t mode);
/* Reads a whole file (at most max bytes; AH_E_TOOLARGE past it); caller frees. */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);

#endif
