/*
 * relay.c — the allow-list network of a sandbox (D52): the two ends of the relay that carry an
 * agent's TCP connections to the listed destinations, and nothing else (see sandbox.h).
 *
 *   ah agent net-relay --dir D --to HOST:PORT ... -- COMMAND...     (outside, host network)
 *   ah agent net-forward --dir D --listen IP:PORT ... -- COMMAND... (inside the sandbox)
 *
 * Entry i of one is entry i of the other: the outside end listens on the Unix socket D/i and
 * dials the i-th destination; the inside end listens on the i-th loopback address and dials D/i.
 * The outside end trusts nothing from the inside: whatever connects to D/i (the agent may do
 * it directly) reaches the i-th configured destination and no other.
 *
 * Each end runs COMMAND as its child (it stays in the session's process group, so pause stops
 * it with the agent), ignores SIGTERM as bubblewrap does (a stop lets the agent wrap up; the
 * relay keeps carrying its connections meanwhile), and exits as COMMAND did once it ends.
 * One thread and one poll loop per end; at most RELAY_CONNS connections at once (past that the
 * listeners wait). Names are resolved when a connection comes (blocking that end's loop for as
 * long as the resolver takes: it serves one session).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

#define RELAY_CONNS 64
#define RELAY_BUF 65536

/* ---- inside addresses and the hosts file --------------------------------------------------- */

static bool is_ipv4(const char *host, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (!((host[i] >= '0' && host[i] <= '9') || host[i] == '.'))
            return false;
    return true;
}

bool sandbox_net_inside(const struct sandbox_profile *p, size_t i, char *ip, size_t n) {
    if (!p->allow_hosts)
        return false;
    for (size_t k = 0; k <= i; k++)
        if (!p->allow_hosts[k])
            return false;
    const char *h = p->allow_hosts[i];
    size_t len = (size_t)(strrchr(h, ':') - h);
    if (is_ipv4(h, len)) {
        snprintf(ip, n, "%.*s", (int)len, h);
        return true;
    }
    /* names get 127.0.1.N, N counting the distinct names in order: two ports of one host
     * share its address (the hosts file maps a name to one address) */
    int num = 0;
    for (size_t k = 0; k <= i; k++) {
        const char *o = p->allow_hosts[k];
        size_t olen = (size_t)(strrchr(o, ':') - o);
        if (is_ipv4(o, olen))
            continue;
        bool seen = false;
        for (size_t j = 0; j < k && !seen; j++) {
            const char *q = p->allow_hosts[j];
            seen = (size_t)(strrchr(q, ':') - q) == olen && !memcmp(q, o, olen);
        }
        if (!seen)
            num++;
        if (olen == len && !memcmp(o, h, len))
            break;
    }
    snprintf(ip, n, "127.0.1.%d", num);
    return true;
}

int sandbox_net_prepare(const struct sandbox_profile *p, const char *dir) {
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return AH_E_IO;
    char path[4200];
    snprintf(path, sizeof(path), "%s/hosts", dir);
    FILE *f = fopen(path, "we");
    if (!f)
        return AH_E_IO;
    /* the loopback names, the sandbox's hostname, then each allowed name at its address (only
     * these resolve: the sandbox reaches no DNS server) */
    fprintf(f, "127.0.0.1\tlocalhost ah-sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (size_t i = 0; p->allow_hosts && p->allow_hosts[i]; i++) {
        const char *h = p->allow_hosts[i];
        size_t len = (size_t)(strrchr(h, ':') - h);
        char ip[32];
        if (!is_ipv4(h, len) && sandbox_net_inside(p, i, ip, sizeof(ip)))
            fprintf(f, "%s\t%.*s\n", ip, (int)len, h);
    }
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad)
        return AH_E_IO;
    chmod(path, 0644);
    return 0;
}

/* ---- the pump ------------------------------------------------------------------------------- */

/* One relayed connection: side 0 accepted, side 1 dialed. dir[d] carries bytes from side d to
 * side 1-d. */
struct flow {
    char *buf;
    size_t len, off;
    bool eof;  /* side d said it sends no more */
    bool shut; /* and side 1-d was told so (shutdown) */
};

struct conn {
    int fd[2];
    bool connecting;
    struct addrinfo *ai, *next; /* outside end: the addresses left to try */
    struct flow dir[2];
};

struct relay {
    bool outside;
    const char *dir;
    int n; /* entries */
    char *to[SANDBOX_ALLOW_MAX];
    int listener[SANDBOX_ALLOW_MAX];
    struct conn *conns[RELAY_CONNS];
    pid_t child;
    int pidfd;
};

static void conn_free(struct conn *c) {
    for (int s = 0; s < 2; s++) {
        if (c->fd[s] >= 0)
            close(c->fd[s]);
        free(c->dir[s].buf);
    }
    if (c->ai)
        freeaddrinfo(c->ai);
    free(c);
}

/* Tries the next address of a destination; false when none is left. */
static bool dial_next(struct conn *c) {
    while (c->next) {
        struct addrinfo *a = c->next;
        c->next = a->ai_next;
        if (c->fd[1] >= 0)
            close(c->fd[1]);
        c->fd[1] =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (c->fd[1] < 0)
            continue;
        if (connect(c->fd[1], a->ai_addr, a->ai_addrlen) == 0) {
            c->connecting = false;
            return true;
        }
        if (errno == EINPROGRESS) {
            c->connecting = true;
            return true;
        }
    }
    return false;
}

/* The other side of a connection accepted on entry i; NULL when it cannot be made. */
static struct conn *dial(struct relay *r, int i, int accepted) {
    struct conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->dir[0].buf = malloc(RELAY_BUF)) || !(c->dir[1].buf = malloc(RELAY_BUF))) {
        if (c)
            free(c->dir[0].buf);
        free(c);
        close(accepted);
        return NULL;
    }
    c->fd[0] = accepted;
    c->fd[1] = -1;
    if (r->outside) {
        char host[300];
        const char *colon = strrchr(r->to[i], ':');
        snprintf(host, sizeof(host), "%.*s", (int)(colon - r->to[i]), r->to[i]);
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
        if (getaddrinfo(host, colon + 1, &hints, &c->ai) != 0)
            c->ai = NULL;
        c->next = c->ai;
        if (!dial_next(c)) {
            conn_free(c);
            return NULL;
        }
    } else {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int w = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%d", r->dir, i);
        c->fd[1] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (w < 0 || (size_t)w >= sizeof(sa.sun_path) || c->fd[1] < 0 ||
            connect(c->fd[1], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            conn_free(c);
            return NULL;
        }
    }
    return c;
}

/* Moves what can move on one connection; false once it is finished (or failed). */
static bool pump(struct conn *c, const short *revents) {
    if (c->connecting) {
        if (!(revents[1] & (POLLOUT | POLLERR | POLLHUP)))
            return true;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr)
            return dial_next(c); /* refused there: the next address, if any */
        c->connecting = false;
    }
    /* an error on either side ends the connection (poll would report it at once forever,
     * a busy loop while the other side cannot take more) */
    if ((revents[0] | revents[1]) & (POLLERR | POLLNVAL))
        return false;
    for (int d = 0; d < 2; d++) {
        struct flow *f = &c->dir[d];
        int from = c->fd[d], to = c->fd[1 - d];
        if (!f->eof && f->len < RELAY_BUF && (revents[d] & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = recv(from, f->buf + f->len, RELAY_BUF - f->len, 0);
            if (n > 0)
                f->len += (size_t)n;
            else if (n == 0)
                f->eof = true;
            else if (errno != EAGAIN && errno != EINTR)
                return false;
        }
        while (f->off < f->len) {
            ssize_t n = send(to, f->buf + f->off, f->len - f->off, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    break;
                return false;
            }
            f->off += (size_t)n;
        }
        if (f->off == f->len)
            f->off = f->len = 0;
        if (f->eof && f->len == 0 && !f->shut) {
            shutdown(to, SHUT_WR);
            f->shut = true;
        }
    }
    return !(c->dir[0].shut && c->dir[1].shut);
}

static short wants(const struct conn *c, int side) {
    if (side == 1 && c->connecting)
        return POLLOUT;
    short ev = 0;
    if (!c->dir[side].eof && c->dir[side].len < RELAY_BUF)
        ev |= POLLIN;
    if (c->dir[1 - side].len > c->dir[1 - side].off)
        ev |= POLLOUT;
    return ev;
}

/* Serves until the child ends; returns the exit status to leave with. */
static int serve(struct relay *r) {
    struct pollfd pfd[1 + SANDBOX_ALLOW_MAX + 2 * RELAY_CONNS];
    for (;;) {
        int n = 0, nconns = 0;
        pfd[n++] = (struct pollfd){.fd = r->pidfd, .events = POLLIN};
        for (int i = 0; i < RELAY_CONNS; i++)
            nconns += r->conns[i] != NULL;
        for (int i = 0; i < r->n; i++) /* full: new connections wait in the backlog */
            pfd[n++] =
                (struct pollfd){.fd = r->listener[i], .events = nconns < RELAY_CONNS ? POLLIN : 0};
        for (int i = 0; i < RELAY_CONNS; i++)
            for (int s = 0; r->conns[i] && s < 2; s++)
                pfd[n++] =
                    (struct pollfd){.fd = r->conns[i]->fd[s], .events = wants(r->conns[i], s)};
        if (poll(pfd, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[0].revents) {
            int st;
            while (waitpid(r->child, &st, 0) < 0)
                if (errno != EINTR)
                    return 1;
            for (int i = 0; i < RELAY_CONNS; i++)
                if (r->conns[i])
                    conn_free(r->conns[i]);
            if (WIFSIGNALED(st)) {
                signal(WTERMSIG(st), SIG_DFL);
                raise(WTERMSIG(st));
                return 128 + WTERMSIG(st);
            }
            return WEXITSTATUS(st);
        }
        int k = 1 + r->n;
        for (int i = 0; i < RELAY_CONNS; i++) {
            if (!r->conns[i])
                continue;
            short rev[2] = {pfd[k].revents, pfd[k + 1].revents};
            k += 2;
            if (!pump(r->conns[i], rev)) {
                conn_free(r->conns[i]);
                r->conns[i] = NULL;
            }
        }
        for (int i = 0; i < r->n; i++) {
            if (!(pfd[1 + i].revents & POLLIN))
                continue;
            int fd = accept4(r->listener[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                continue;
            int slot = 0;
            while (slot < RELAY_CONNS && r->conns[slot])
                slot++;
            if (slot == RELAY_CONNS) {
                close(fd);
                continue;
            }
            r->conns[slot] = dial(r, i, fd);
        }
    }
    return 1;
}

static int listen_on(struct relay *r, int i, const char *what) {
    int fd;
    if (r->outside) {
        /* relative to the directory we are in: its path may exceed sun_path */
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%d", i);
        unlink(sa.sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
            goto fail;
    } else {
        char ip[64];
        const char *colon = strrchr(what, ':');
        struct sockaddr_in sa = {.sin_family = AF_INET};
        if (!colon || (size_t)(colon - what) >= sizeof(ip))
            return -1;
        snprintf(ip, sizeof(ip), "%.*s", (int)(colon - what), what);
        long port = strtol(colon + 1, NULL, 10);
        if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1 || port < 1 || port > 65535)
            return -1;
        sa.sin_port = htons((uint16_t)port);
        int one = 1;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
            goto fail;
    }
    r->listener[i] = fd;
    return 0;
fail:
    fprintf(stderr, "ah agent %s: cannot listen for %s: %s\n",
            r->outside ? "net-relay" : "net-forward", what, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* What bubblewrap's --disable-userns does, for the agent the inside end starts: a seccomp
 * filter that refuses new user namespaces (unshare or clone with CLONE_NEWUSER; clone3, whose
 * flags a filter cannot read, answers ENOSYS and C libraries fall back to clone), and every
 * system call of another ABI (i386, x32), through which the same calls would pass unchecked.
 * The sandbox already set no_new_privs, so no privilege is needed. */
static int deny_new_userns(void) {
#if defined(__x86_64__)
#define RELAY_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define RELAY_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif
#ifdef RELAY_AUDIT_ARCH
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RELAY_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#ifdef __x86_64__
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1), /* x32 */
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
#endif
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3),
        /* the flags: the first argument of both, its low 32 bits (little-endian) */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {.len = sizeof(prog) / sizeof(prog[0]), .filter = prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) < 0)
        return -1;
    return 0;
#else
    errno = ENOSYS;
    return -1;
#endif
}

static int relay_main(bool outside, int argc, char **argv) {
    const char *name = outside ? "net-relay" : "net-forward";
    struct relay r = {.outside = outside, .pidfd = -1};
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"to", required_argument, NULL, 't'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (c == 'd') {
            r.dir = optarg;
        } else if ((c == 't' && outside) || (c == 'l' && !outside)) {
            if (r.n == SANDBOX_ALLOW_MAX) {
                fprintf(stderr, "ah agent %s: at most %d destinations\n", name, SANDBOX_ALLOW_MAX);
                return 2;
            }
            r.to[r.n++] = optarg;
        } else {
            fprintf(stderr, "usage: ah agent %s --dir DIR %s ... -- COMMAND...\n", name,
                    outside ? "--to HOST:PORT" : "--listen IP:PORT");
            return 2;
        }
    }
    if (!r.dir || optind >= argc) {
        fprintf(stderr, "usage: ah agent %s --dir DIR %s ... -- COMMAND...\n", name,
                outside ? "--to HOST:PORT" : "--listen IP:PORT");
        return 2;
    }
    /* a stop's SIGTERM is for the agent; we keep relaying until it is gone */
    signal(SIGTERM, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    char cwd[4096];
    if (outside && (!getcwd(cwd, sizeof(cwd)) || chdir(r.dir) < 0)) {
        fprintf(stderr, "ah agent %s: %s: %s\n", name, r.dir, strerror(errno));
        return 1;
    }
    for (int i = 0; i < r.n; i++)
        if (listen_on(&r, i, r.to[i]) < 0)
            return 1;
    if (!outside) {
        /* listening done: the capability that allowed ports below 1024 is not the agent's
         * (best effort; an agent running as root inside its namespace may get it back, and
         * it only lets it listen there) */
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct none[2] = {{0}};
        syscall(SYS_capset, &hdr, none);
        if (deny_new_userns() < 0) {
            fprintf(stderr, "ah agent net-forward: cannot forbid new user namespaces: %s\n",
                    strerror(errno));
            return 1;
        }
    }
    if (outside && chdir(cwd) < 0) {
        fprintf(stderr, "ah agent %s: %s: %s\n", name, cwd, strerror(errno));
        return 1;
    }
    /* the child gets SIGPIPE back; SIGTERM stays ignored, as the command expects (bubblewrap
     * or `env --default-signal=TERM` next) */
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t def;
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &def);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    int err = posix_spawnp(&r.child, argv[optind], NULL, &attr, argv + optind, environ);
    posix_spawnattr_destroy(&attr);
    if (err) {
        fprintf(stderr, "ah agent %s: %s: %s\n", name, argv[optind], strerror(err));
        return 127;
    }
    r.pidfd = (int)syscall(SYS_pidfd_open, r.child, 0);
    if (r.pidfd < 0) {
        fprintf(stderr, "ah agent %s: pidfd_open: %s\n", name, strerror(errno));
        int st;
        waitpid(r.child, &st, 0);
        return 1;
    }
    return serve(&r);
}

int sandbox_net_relay_main(int argc, char **argv) {
    return relay_main(true, argc, argv);
}

int sandbox_net_forward_main(int argc, char **argv) {
    return relay_main(false, argc, argv);
}
