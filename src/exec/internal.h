/*
 * internal.h — private to exec/: the pieces the supervisor, the recorder and the agent runner
 * share (link framing, workspaces, diffs, asciicast, small process helpers).
 */
#ifndef AH_EXEC_INTERNAL_H
#define AH_EXEC_INTERNAL_H

#include <sys/types.h>

#include "exec.h"

/* ---- the recorder link (D17): 4-byte big-endian length + one JSON object ------------------- */

#define LINK_MAX_FRAME (4u * 1024 * 1024)

/* Appends one frame holding msg to out. */
int link_frame(struct ah_buf *out, const json_t *msg);
/* Incremental decoder: feed bytes with link_feed, take messages with link_take. */
struct link_reader {
    struct ah_buf in;
    size_t off; /* consumed prefix of in */
};
int link_feed(struct link_reader *r, const void *data, size_t len);
/* 1 and *ret (caller owns) when a whole frame is buffered, 0 when more bytes are needed,
 * AH_E_PROTOCOL for an oversized frame or a frame that is not a JSON object. */
int link_take(struct link_reader *r, json_t **ret);
void link_reader_clear(struct link_reader *r);
/* Reads what the (non-blocking) fd has into r: >0 bytes, 0 on EOF, AH_E_BUSY when it would
 * block, another AH_E_* on error. */
int link_read_fd(int fd, struct link_reader *r);
/* Writes as much of buf as the non-blocking fd takes and drops it from buf; 0 or AH_E_*. */
int write_pending(int fd, struct ah_buf *buf);

/* ---- workspaces ------------------------------------------------------------------------------ */

struct run_limits; /* below, with run_command_ex */

struct workspace_request {
    const char *data_dir;
    const char *session_id;
    const json_t *request;   /* the task's canonical create request */
    const char *const *default_preference; /* when the task has none */
    const char *template_dir; /* repo.mode=none: copied when set */
    int64_t clone_timeout_ms; /* each git/cp step is abandoned past it (0 = none) */
    int abort_fd;             /* -1, or readable when the session no longer wants it (stop) */
};
/* Makes <data_dir>/workspaces/<session_id> with the first provider that works; writes the
 * provider's name and the path (caller frees both). Errors name every provider tried. */
int workspace_provision(const struct workspace_request *wr, char **ret_provider, char **ret_path,
                        struct ah_problem *reterr);
/* A repository's branches [{name, is_default, last_commit}]: with remote NULL from our mirror
 * (local and quick; AH_E_NOTFOUND without one), else from a `git ls-remote` within those
 * limits (it waits on the network: never on an HTTP thread). AH_E_NETWORK when git cannot
 * reach it, AH_E_TIMEOUT / AH_E_CANCELED when the limits cut it short. */
int workspace_repo_branches(const char *data_dir, const char *url, const struct run_limits *remote,
                            json_t **ret);
/* The default branch of our mirror of url (caller frees); AH_E_NOTFOUND without a mirror. */
int workspace_repo_default(const char *data_dir, const char *url, char **ret);
/* Up to max tracked files [{path, detail}] of the mirror's HEAD; AH_E_NOTFOUND without one. */
int workspace_repo_files(const char *data_dir, const char *url, size_t max, json_t **ret);
/* Removes a workspace directory tree (btrfs subvolumes included). */
int workspace_remove(const char *path);

/* ---- processes ------------------------------------------------------------------------------- */

#include <spawn.h>
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

/* ---- diffs (libgit2) ------------------------------------------------------------------------- */

struct diff_stat {
    int64_t added, removed;
    bool binary;
};
/* Line counts of the change from old to new (either may be NULL = absent file). */
int diff_count(const char *old, size_t old_len, const char *new_text, size_t new_len,
               struct diff_stat *ret);

/* ---- asciicast v2 writer --------------------------------------------------------------------- */

struct cast_writer;
int cast_open(const char *path, int cols, int rows, const char *title, struct cast_writer **ret);
/* Appends output bytes (any bytes: incomplete UTF-8 at the end is held for the next call,
 * invalid sequences become U+FFFD). */
int cast_output(struct cast_writer *w, const char *data, size_t len);
int cast_input(struct cast_writer *w, const char *data, size_t len);
int cast_resize(struct cast_writer *w, int cols, int rows);
void cast_close(struct cast_writer *w);

#endif
