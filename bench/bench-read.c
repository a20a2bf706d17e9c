/*
 * bench-read.c — fast reads (issue 18 item 3): GET /sessions/{id} and GET /sessions against the
 * ceiling of the same libmicrohttpd serving a fixed body, in one interleaved run.
 *
 *   bench-read AH_BIN [SECONDS_PER_RUN=3] [ROUNDS=5] [CONNECTIONS=32]
 *   tests/pg/pgserver.py --env AH_TEST_PG_URL -- bench-read AH_BIN …   (PostgreSQL side by side)
 *
 * Starts `ah agent access-point` on a temp directory, runs one scripted session to completion,
 * takes the bytes of its GET /api/v1/sessions/{id} answer and serves them from a bare
 * libmicrohttpd server in this process (keep-alive, thread pool of one per core, answer on the
 * handler's second call: the fastest way 0.9.75 serves a fixed body). Then, ROUNDS times, each of
 * raw / session / list / session-304 is loaded for SECONDS with CONNECTIONS keep-alive
 * connections from one epoll thread, one request in flight per connection. Prints each run and
 * the medians, and the ratio to the ceiling. Never fails on speed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* One blocking request; returns the status and the body (malloc'd) in *ret_body. */
static int http_once(int port, const char *method, const char *path, const char *body,
                     char **ret_body) {
    int fd = connect_port(port);
    if (fd < 0)
        return -1;
    char req[8192];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, body ? strlen(body) : 0, body ? body : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while (buf && len + 1 < cap && (r = read(fd, buf + len, cap - len - 1)) > 0)
        len += (size_t)r;
    close(fd);
    if (!buf)
        return -1;
    buf[len] = 0;
    int status = 0;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    char *b = strstr(buf, "\r\n\r\n");
    if (ret_body)
        *ret_body = strdup(b ? b + 4 : "");
    free(buf);
    return status;
}

/* ---- the ceiling: a bare libmicrohttpd server with a fixed body ----------------------------- */

static char *fixed_body;
static size_t fixed_len;

static enum MHD_Result raw_handler(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version, const char *upload,
                                   size_t *upload_size, void **con_cls) {
    (void)cls, (void)url, (void)method, (void)version, (void)upload, (void)upload_size;
    static int marker;
    if (*con_cls != &marker) { /* first call: queueing now makes 0.9.75 close the connection */
        *con_cls = &marker;
        return MHD_YES;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(fixed_len, fixed_body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

/* ---- the load: CONNECTIONS keep-alive connections, one request in flight each ----------------- */

struct conn {
    int fd;
    char buf[65536];
    size_t have;
};

/* Complete responses at the start of c->buf: consumes them and returns how many (0 or 1). */
static int response_done(struct conn *c, int *status) {
    char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - c->buf) + 4;
    size_t clen = 0;
    char *cl = memmem(c->buf, head, "Content-Length:", 15);
    if (!cl)
        cl = memmem(c->buf, head, "content-length:", 15);
    if (cl)
        clen = strtoul(cl + 15, NULL, 10);
    if (c->have < head + clen)
        return 0;
    *status = atoi(c->buf + 9);
    memmove(c->buf, c->buf + head + clen, c->have - head - clen);
    c->have -= head + clen;
    return 1;
}

static double load(int port, const char *path, const char *extra, double secs, int nconn,
                   int want_status, long *ret_bad) {
    char req[2048];
    int rl = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", path,
                      extra ? extra : "");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *cs = calloc((size_t)nconn, sizeof(*cs));
    for (int i = 0; i < nconn; i++) {
        cs[i].fd = connect_port(port);
        if (cs[i].fd < 0) {
            fprintf(stderr, "bench-read: cannot connect to %d\n", port);
            exit(1);
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        if (write(cs[i].fd, req, (size_t)rl) != rl)
            exit(1);
    }
    long done = 0, bad = 0;
    double t0 = now_s(), end = t0 + secs;
    struct epoll_event evs[64];
    while (now_s() < end) {
        int n = epoll_wait(ep, evs, 64, 100);
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            ssize_t r = read(c->fd, c->buf + c->have, sizeof(c->buf) - c->have);
            if (r <= 0) {
                fprintf(stderr, "bench-read: connection closed by the server (%s)\n",
                        r < 0 ? strerror(errno) : "EOF");
                exit(1);
            }
            c->have += (size_t)r;
            int st;
            while (response_done(c, &st)) {
                done++;
                bad += st != want_status;
                if (write(c->fd, req, (size_t)rl) != rl)
                    exit(1);
            }
        }
    }
    double el = now_s() - t0;
    for (int i = 0; i < nconn; i++)
        close(cs[i].fd);
    free(cs);
    close(ep);
    *ret_bad = bad;
    return (double)done / el;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One `ah agent access-point` under test: its process, port, temp directory, and the session
 * whose representation is read. */
struct target {
    const char *name;
    pid_t pid;
    int port;
    char tmp[64], path[128], etag_hdr[256];
};

static void target_stop(struct target *t) {
    if (t->pid > 0) {
        kill(t->pid, SIGTERM);
        waitpid(t->pid, NULL, 0);
    }
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->tmp);
    if (t->tmp[0] && system(cmd) != 0)
        fprintf(stderr, "bench-read: could not remove %s\n", t->tmp);
}

/* Starts the server on `db_url` (NULL: an SQLite file in its temp directory), runs one scripted
 * session to completion and keeps its GET answer in *body (the caller frees it). 0 or -1. */
static int target_start(struct target *t, const char *ah, const char *db_url, char **body) {
    snprintf(t->tmp, sizeof(t->tmp), "/tmp/bench-read-XXXXXX");
    if (!mkdtemp(t->tmp))
        return -1;
    char log[600], db[600], run[600], env_data[700], env_run[700], env_home[700];
    snprintf(log, sizeof(log), "%s/server.log", t->tmp);
    snprintf(db, sizeof(db), "%s", db_url ? db_url : "");
    if (!db_url)
        snprintf(db, sizeof(db), "%s/state.db", t->tmp);
    snprintf(run, sizeof(run), "%s/run", t->tmp);
    mkdir(run, 0700);
    t->pid = fork();
    if (t->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        dup2(fd, 1);
        snprintf(env_data, sizeof(env_data), "XDG_DATA_HOME=%s", t->tmp);
        snprintf(env_run, sizeof(env_run), "XDG_RUNTIME_DIR=%s", run);
        snprintf(env_home, sizeof(env_home), "HOME=%s", t->tmp);
        putenv(env_data), putenv(env_run), putenv(env_home);
        execl(ah, ah, "agent", "access-point", "--port", "0", "--db", db, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300 && !t->port; i++) {
        usleep(50000);
        FILE *f = fopen(log, "r");
        char line[4096];
        while (f && fgets(line, sizeof(line), f)) {
            char *p = strstr(line, "\"port\":");
            if (p)
                t->port = atoi(p + 7);
        }
        if (f)
            fclose(f);
    }
    if (!t->port) {
        fprintf(stderr, "bench-read: the %s server did not start (see %s)\n", t->name, log);
        return -1;
    }
    char *resp = NULL;
    for (int i = 0; i < 200; i++) { /* ready */
        free(resp);
        resp = NULL;
        if (http_once(t->port, "GET", "/api/v1/readyz", NULL, &resp) == 200)
            break;
        usleep(50000);
    }
    free(resp);
    const char *task = "{\"prompt\":\"bench\",\"repo\":{\"mode\":\"none\"},\"runtime\":{\"type\":"
                       "\"local\"},\"agents\":[{\"type\":\"scripted\",\"settings\":{\"scenario\":"
                       "[{\"thought\":\"reading\"},{\"log\":\"done\"}]}}]}";
    if (http_once(t->port, "POST", "/api/v1/tasks", task, &resp) != 201) {
        fprintf(stderr, "bench-read: cannot create a task: %s\n", resp ? resp : "");
        free(resp);
        return -1;
    }
    char sid[64] = "";
    char *p = strstr(resp, "{\"id\":\"");
    if (p)
        sscanf(p + 7, "%26[0-9A-Z]", sid);
    free(resp);
    if (!sid[0]) {
        fprintf(stderr, "bench-read: no session id in the answer\n");
        return -1;
    }
    snprintf(t->path, sizeof(t->path), "/api/v1/sessions/%s", sid);
    for (int i = 0; i < 600; i++) { /* until it ended: the steady state of most reads */
        resp = NULL;
        http_once(t->port, "GET", t->path, NULL, &resp);
        bool ended = resp && strstr(resp, "\"status\":\"completed\"");
        if (ended || i == 599)
            break;
        free(resp);
        usleep(50000);
    }
    *body = resp;
    { /* the ETag of the representation, if the server sends one */
        int fd = connect_port(t->port);
        char req[512], buf[8192];
        int n = snprintf(req, sizeof(req),
                         "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", t->path);
        ssize_t got = 0, r;
        if (write(fd, req, (size_t)n) == n)
            while ((r = read(fd, buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
                got += r;
        buf[got > 0 ? got : 0] = 0;
        close(fd);
        char *e = strcasestr(buf, "\r\nETag: ");
        if (e) {
            char v[128] = "";
            sscanf(e + 8, "%127[^\r]", v);
            snprintf(t->etag_hdr, sizeof(t->etag_hdr), "If-None-Match: %s\r\n", v);
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: [tests/pg/pgserver.py --env AH_TEST_PG_URL --] bench-read AH_BIN "
                        "[SECONDS=3] [ROUNDS=5] [CONNECTIONS=32]\n");
        return 2;
    }
    double secs = argc > 2 ? atof(argv[2]) : 3;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    int nconn = argc > 4 ? atoi(argv[4]) : 32;
    signal(SIGPIPE, SIG_IGN);
    /* SQLite always; PostgreSQL side by side when AH_TEST_PG_URL names a database */
    const char *pg = getenv("AH_TEST_PG_URL");
    struct target tg[2] = {{.name = "sqlite"}, {.name = "postgres"}};
    int ntg = pg && *pg ? 2 : 1;
    char *pg_body = NULL;
    if (target_start(&tg[0], argv[1], NULL, &fixed_body) < 0 ||
        (ntg == 2 && target_start(&tg[1], argv[1], pg, &pg_body) < 0)) {
        target_stop(&tg[0]);
        target_stop(&tg[1]);
        return 1;
    }
    free(pg_body);
    fixed_len = strlen(fixed_body);
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, raw_handler, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(threads > 1 ? threads : 2),
        MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    const union MHD_DaemonInfo *di = d ? MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    if (!di) {
        fprintf(stderr, "bench-read: cannot start the raw libmicrohttpd server\n");
        for (int t = 0; t < ntg; t++)
            target_stop(&tg[t]);
        return 1;
    }
    int raw_port = di->port;
    printf("%zu-byte session body; %d connections, %.1f s per run, %d rounds%s\n", fixed_len,
           nconn, secs, rounds, ntg == 2 ? "; SQLite and PostgreSQL side by side" : "");
    /* kinds: the ceiling, then per target: one session, the list, the conditional GET */
    enum { PER = 3, KINDS = 1 + 2 * PER };
    static const char *what[PER] = {"GET /sessions/{id}", "GET /sessions", "GET /sessions/{id} 304"};
    char names[KINDS][64];
    snprintf(names[0], sizeof(names[0]), "raw libmicrohttpd");
    for (int t = 0; t < 2; t++)
        for (int w = 0; w < PER; w++)
            snprintf(names[1 + t * PER + w], sizeof(names[0]), "%-8s %s", tg[t].name, what[w]);
    double *v[KINDS];
    for (int k = 0; k < KINDS; k++)
        v[k] = calloc((size_t)rounds, sizeof(double));
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 1 + ntg * PER; k++) {
            long bad = 0;
            struct target *t = k ? &tg[(k - 1) / PER] : NULL;
            int w = k ? (k - 1) % PER : -1;
            if (w == 2 && !t->etag_hdr[0])
                continue;
            if (k == 0)
                v[k][r] = load(raw_port, "/", NULL, secs, nconn, 200, &bad);
            else if (w == 0)
                v[k][r] = load(t->port, t->path, NULL, secs, nconn, 200, &bad);
            else if (w == 1)
                v[k][r] = load(t->port, "/api/v1/sessions", NULL, secs, nconn, 200, &bad);
            else
                v[k][r] = load(t->port, t->path, t->etag_hdr, secs, nconn, 304, &bad);
            printf("round %d  %-34s %9.0f req/s%s\n", r + 1, names[k], v[k][r],
                   bad ? "  (unexpected statuses!)" : "");
            fflush(stdout);
        }
    }
    printf("\nmedians over %d interleaved rounds:\n", rounds);
    double ceiling = median(v[0], rounds);
    for (int k = 0; k < 1 + ntg * PER; k++) {
        struct target *t = k ? &tg[(k - 1) / PER] : NULL;
        if (k && (k - 1) % PER == 2 && !t->etag_hdr[0]) {
            printf("  %-34s (no ETag sent)\n", names[k]);
            continue;
        }
        double m = median(v[k], rounds);
        printf("  %-34s %9.0f req/s", names[k], m);
        if (k)
            printf("   ratio to the ceiling %.2f", m / ceiling);
        printf("\n");
    }
    for (int k = 0; k < KINDS; k++)
        free(v[k]);
    MHD_stop_daemon(d);
    for (int t = 0; t < ntg; t++)
        target_stop(&tg[t]);
    free(fixed_body);
    return 0;
}
