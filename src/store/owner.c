/*
 * owner.c — who holds a pending claim (an Idempotency-Key being processed): the server process
 * that made it, named "<boot id>:<pid>:<process start time>" so that a reused pid is not taken
 * for it. Both backends use it; each decides what a claim it cannot judge means (backend.h).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

static char boot_id[40];
static char self_owner[128];
static pthread_once_t owner_once = PTHREAD_ONCE_INIT;

/* Start time of a process in clock ticks since boot (/proc/pid/stat field 22); 0 if gone. */
static long long start_time(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
        return 0;
    p += 2;
    for (int field = 3; field < 22 && p; field++)
        if ((p = strchr(p, ' ')))
            p++;
    return p ? strtoll(p, NULL, 10) : 0;
}

static void owner_init(void) {
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, boot_id, sizeof(boot_id) - 1) : -1;
    if (fd >= 0)
        close(fd);
    boot_id[n > 0 ? strcspn(boot_id, "\n") : 0] = '\0';
    snprintf(self_owner, sizeof(self_owner), "%s:%ld:%lld", boot_id[0] ? boot_id : "-",
             (long)getpid(), start_time((long)getpid()));
}

const char *store_owner_self(void) {
    pthread_once(&owner_once, owner_init);
    return self_owner;
}

enum store_owner store_owner_check(const char *owner) {
    if (strcmp(owner, store_owner_self()) == 0)
        return STORE_OWNER_SELF;
    char boot[40];
    long pid = 0;
    long long start = 0;
    if (sscanf(owner, "%39[^:]:%ld:%lld", boot, &pid, &start) != 3)
        return STORE_OWNER_ELSEWHERE;
    if (!boot_id[0] || strcmp(boot, boot_id) != 0)
        return STORE_OWNER_ELSEWHERE; /* another machine's, or this one before a reboot */
    return pid > 0 && start_time(pid) == start ? STORE_OWNER_ALIVE : STORE_OWNER_GONE;
}
