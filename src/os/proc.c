/*
 * proc.c — small process and file helpers below every layer: running a helper command (git, cp, btrfs)
 * to completion, pidfds, process start times, and whole-file reads and writes. Every fork is
 * posix_spawn, so nothing runs between fork and exec.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "os.h"

extern char **environ;

int pidfd_open_pid(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

void spawnattr_child(posix_spawnattr_t *attr) {
    posix_spawnattr_init(attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    posix_spawnattr_setpgroup(attr, 0);
    posix_spawnattr_setsigmask(attr, &none);
    posix_spawnattr_setsigdefault(attr, &defaults);
    posix_spawnattr_setflags(attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                       POSIX_SPAWN_SETSIGDEF);
}

int64_t process_start_time(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p += 2; /* field 3, the state: a zombie is as good as gone (its parent may never reap it) */
    if (*p == 'Z' || *p == 'X')
        return 0;
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    if (!p)
        return 0;
    return strtoll(p, NULL, 10);
}

int open_beneath(int dirfd, const char *path, int flags, mode_t mode, bool no_symlinks) {
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | (no_symlinks ? RESOLVE_NO_SYMLINKS : 0),
    };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int make_dirs(const char *path, mode_t mode) {
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return AH_E_TOOLARGE;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return ah_err_from_errno(errno);
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return ah_err_from_errno(errno);
    return 0;
}

int write_file(const char *path, const void *data, size_t len, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return ah_err_from_errno(errno);
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return ah_err_from_errno(e);
        }
        p += w;
        len -= (size_t)w;
    }
    return close(fd) < 0 ? ah_err_from_errno(errno) : 0;
}

int read_file(const char *path, size_t max, char **ret, size_t *ret_len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ah_err_from_errno(errno);
    struct ah_buf b = {.max = max};
    char chunk[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = ah_err_from_errno(errno);
            break;
        }
        if (n == 0)
            break;
        if ((rc = ah_buf_append(&b, chunk, (size_t)n)) < 0)
            break;
    }
    close(fd);
    if (rc < 0) {
        ah_buf_clear(&b);
        return rc;
    }
    *ret_len = b.n;
    *ret = ah_buf_steal(&b);
    return *ret ? 0 : AH_E_NOMEM;
}

int run_command(const char *const *argv, const char *cwd, char **ret_output) {
    return run_command_ex(argv, cwd, NULL, ret_output);
}

int run_command_ex(const char *const *argv, const char *cwd, const struct run_limits *lim,
                   char **ret_output) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return ah_err_from_errno(errno);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    if (cwd)
        posix_spawn_file_actions_addchdir_np(&fa, cwd);
    /* Its own process group: a timeout kills git and its remote helper together. */
    posix_spawnattr_t attr;
    spawnattr_child(&attr);
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(pipefd[1]);
    if (err) {
        close(pipefd[0]);
        return err == ENOENT ? AH_E_NOTFOUND : ah_err_from_errno(err);
    }
    int64_t deadline = lim && lim->timeout_ms > 0 ? time_mono_ms() + lim->timeout_ms : 0;
    int abort_fd = lim ? lim->abort_fd : -1;
    int gave_up = 0; /* AH_E_TIMEOUT or AH_E_CANCELED once the group was killed */
    struct ah_buf out = {.max = 64 * 1024};
    char chunk[4096];
    for (;;) {
        struct pollfd pfd[2] = {{.fd = pipefd[0], .events = POLLIN},
                                {.fd = gave_up ? -1 : abort_fd, .events = POLLIN}};
        int wait = -1;
        if (deadline) {
            int64_t left = deadline - time_mono_ms();
            wait = left > 0 ? (int)(left < INT32_MAX ? left : INT32_MAX) : 0;
        }
        int r = poll(pfd, 2, wait);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || (r == 0 && gave_up)) /* something left the group and holds the pipe */
            break;
        if (!gave_up && (r == 0 || (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))) {
            gave_up = r == 0 ? AH_E_TIMEOUT : AH_E_CANCELED;
            kill(-pid, SIGKILL); /* the pipe ends once every process of the group is gone */
            deadline = time_mono_ms() + 2000;
            continue;
        }
        if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t n = read(pipefd[0], chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (out.n < 64 * 1024 - 1)
            ah_buf_append(&out, chunk, (size_t)n < 64 * 1024 - 1 - out.n ? (size_t)n
                                                                         : 64 * 1024 - 1 - out.n);
    }
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (ret_output)
        *ret_output = ah_buf_steal(&out);
    else
        ah_buf_clear(&out);
    if (gave_up)
        return gave_up;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
