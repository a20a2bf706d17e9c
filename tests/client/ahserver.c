/*
 * ahserver.c — see ahserver.h.
 */
#include "ahserver.h"

#include <ah/client.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char url[64];

static char tmp[256], log_path[300];
static pid_t server_pid;

static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* The port from {"msg":"listening",…,"port":N}. */
static int find_port(const char *log) {
    const char *p = strstr(log, "\"msg\":\"listening\"");
    if (!p)
        return 0;
    const char *eol = strchr(p, '\n');
    const char *q = strstr(p, "\"port\":");
    if (!q || (eol && q > eol))
        return 0;
    long port = strtol(q + 7, NULL, 10);
    return port > 0 && port < 65536 ? (int)port : 0;
}

static int start_server(void) {
    snprintf(tmp, sizeof(tmp), "/tmp/ah-tm-remote-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    char db[300], run_dir[300], env_xdg[5][340];
    snprintf(db, sizeof(db), "%s/state.db", tmp);
    snprintf(log_path, sizeof(log_path), "%s/stderr.log", tmp);
    snprintf(run_dir, sizeof(run_dir), "%s/run", tmp);
    mkdir(run_dir, 0700);
    snprintf(env_xdg[0], sizeof(env_xdg[0]), "XDG_CONFIG_HOME=%s/config", tmp);
    snprintf(env_xdg[1], sizeof(env_xdg[1]), "XDG_DATA_HOME=%s/data", tmp);
    snprintf(env_xdg[2], sizeof(env_xdg[2]), "XDG_STATE_HOME=%s/state", tmp);
    snprintf(env_xdg[3], sizeof(env_xdg[3]), "XDG_RUNTIME_DIR=%s", run_dir);
    snprintf(env_xdg[4], sizeof(env_xdg[4]), "HOME=%s", tmp);
    char *envp[16];
    int ne = 0;
    for (int i = 0; i < 5; i++)
        envp[ne++] = env_xdg[i];
    const char *keep[] = {"PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
    static char kept[4][4096];
    for (int i = 0; i < 4; i++) {
        const char *v = getenv(keep[i]);
        if (v) {
            snprintf(kept[i], sizeof(kept[i]), "%s=%s", keep[i], v);
            envp[ne++] = kept[i];
        }
    }
    envp[ne] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *argv[] = {AH_BIN, "agent", "access-point", "--port", "0", "--db", db, NULL};
    int rc = posix_spawn(&server_pid, AH_BIN, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "cannot start %s\n", AH_BIN);
        return -1;
    }
    for (int i = 0; i < 600; i++) { /* 30 s */
        char *log = read_file(log_path);
        int port = log ? find_port(log) : 0;
        free(log);
        if (port > 0)
            return port;
        int st;
        if (waitpid(server_pid, &st, WNOHANG) == server_pid) {
            fprintf(stderr, "ah exited before listening\n");
            server_pid = 0;
            return -1;
        }
        usleep(50000);
    }
    return -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *f) {
    return remove(path) < 0 ? 0 : 0; /* best effort */
}

/* Agents outlive their server by design (they re-attach to the next one), but a test run must not
 * leave them behind: kill the process group of every process whose command line names our temp
 * directory, as the Python harness's kill_sessions() does. */
static void kill_sessions(void) {
    DIR *d = opendir("/proc");
    if (!d || !tmp[0]) {
        if (d)
            closedir(d);
        return;
    }
    pid_t own = getpgid(0);
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 1)
            continue;
        char path[64], cmd[4096];
        snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        size_t n = fread(cmd, 1, sizeof(cmd) - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++)
            if (cmd[i] == '\0')
                cmd[i] = ' ';
        cmd[n] = '\0';
        if (!strstr(cmd, tmp))
            continue;
        pid_t g = getpgid((pid_t)pid);
        if (g > 1 && g != own)
            kill(-g, SIGKILL);
    }
    closedir(d);
}

static int stop_server(void) {
    int bad = 0;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        int st = 0;
        waitpid(server_pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "ah did not exit cleanly (status %d)\n", st);
            bad = 1;
        }
    }
    kill_sessions();
    char *log = read_file(log_path);
    const char *markers[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"};
    for (size_t i = 0; log && i < 3; i++) {
        if (strstr(log, markers[i])) {
            fprintf(stderr, "sanitizer report in ah's stderr:\n%s\n", log);
            bad = 1;
            break;
        }
    }
    free(log);
    if (tmp[0] && !getenv("AH_KEEP_TMP"))
        nftw(tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return bad;
}

int ahserver_start(void) {
    signal(SIGPIPE, SIG_IGN);
    int port = start_server();
    if (port <= 0) {
        stop_server();
        return -1;
    }
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    ah_client *c = NULL;
    if (ah_client_new(url, &c) < 0)
        return -1;
    int ready = AH_E_UNAVAIL;
    for (int i = 0; i < 300 && ready != 0; i++) {
        ready = ah_client_readyz(c, NULL);
        if (ready != 0)
            usleep(100000);
    }
    ah_client_free(c);
    if (ready != 0) {
        fprintf(stderr, "ah never became ready\n");
        stop_server();
        return -1;
    }
    return port;
}

const char *ahserver_url(void) {
    return url;
}

int ahserver_stop(void) {
    return stop_server();
}
