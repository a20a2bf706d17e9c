/*
 * recorder.c — `ah agent record`: runs the agent under a PTY, writes the terminal stream as an
 * asciicast v2 file (D18), turns the agent's AH_EVENTS_FD lines and the workspace's file changes
 * into events, and delivers them to the server over the recorder link (D17).
 *
 * Delivery is at-least-once on our side and exactly-once overall: every event gets the next
 * recorder sequence number (rseq) and stays queued until the server acknowledges it, which it
 * does only once the event is durable. When the link drops (a server restart) the recorder keeps
 * recording and queueing, reconnects with back-off, and on `welcome {acked}` drops what the
 * server already has and resends the rest; the server skips any rseq it stored before. The agent's
 * exit is the last message; the recorder leaves only when everything is acknowledged (or after
 * --linger-ms without a server), so a session that ends while the server is down is not lost.
 *
 * Input from the server (`prompt` frames) is typed into the PTY, where an agent that reads its
 * terminal (the scripted agent, custom agents) finds it. With --input-pipe (an agent that runs
 * its CLI once per turn: claude-code, codex) it goes instead as one JSON line per frame,
 * {"text", "model"?} or {"model"} (a `model` frame), on a pipe the agent reads as AH_INPUT_FD:
 * a message may hold newlines and carries the model its turn runs with (issue 15); it is still
 * recorded as the terminal's input.
 *
 * One thread, one epoll loop: PTY master, events pipe, inotify, the socket, the agent's pidfd,
 * a signalfd and a timerfd for reconnects. The queue is capped; past the cap the recorder stops
 * reading the agent's events (the agent then blocks), it never drops them.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "../obs/obs.h"
#include "../sandbox/sandbox.h"
#include "watch.h"

#define QUEUE_MAX_BYTES (256u * 1024 * 1024)
#define LINE_MAX_BYTES (1024 * 1024)
#define RECENT_EDITS 64
#define EVENTS_FD 3
#define INPUT_FD 4
#define INPUT_MAX_BYTES (4u * 1024 * 1024) /* input the agent has not read yet; more is refused */

extern char **environ;

struct pending {
    int64_t rseq;
    char *frame; /* encoded, length prefix included */
    size_t len;
};

struct recent_edit {
    char path[512];
    int64_t at;
};

struct rec {
    const char *session_id, *socket_path, *out_file, *workspace;
    char *token;
    int cols, rows;
    int64_t linger_ms;
    int epfd, master, events_rd, sock, sigfd, timerfd;
    /* the sandbox's limits (D52): cgroups the agent starts in, a wall-time deadline */
    struct sandbox_cgroup cg;
    int64_t wall_ms;
    int wallfd;
    bool wall_hit;
    const char *note; /* what the server applied, logged once at the start */
    bool hold_term;   /* start the command with SIGTERM blocked (a sandbox, see the usage) */
    bool input_pipe;  /* --input-pipe: input goes to the agent as JSON lines on INPUT_FD */
    int input_wr;     /* our end of that pipe, -1 without one (or once the agent closed it) */
    struct ah_buf input; /* lines the pipe did not take yet */
    /* a devcontainer: COMMAND is `podman run`, whose container is not in the agent's process
     * group (conmon's child): pause freezes its cgroup, and it is removed when COMMAND ends */
    const char *container, *podman, *podman_runtime;
    pid_t child;
    int child_pidfd;
    struct watcher *watch;
    struct cast_writer *cast;
    struct link_reader rd;
    struct ah_buf out;      /* bytes for the socket */
    uint32_t sock_ev;       /* the socket's epoll events now */
    bool send_due;          /* queued since the last send: sent before the loop waits again */
    bool welcomed;
    int backoff_ms;
    int64_t disconnected_at; /* monotonic ms, 0 while connected */
    struct pending *q;
    size_t q_head, q_n, q_cap, q_sent; /* q_sent: how many of the queued were written */
    size_t q_bytes;
    int64_t next_rseq;
    bool reading_paused;
    struct ah_buf line; /* partial events line */
    bool line_overflow;
    bool child_exited, exit_queued, refused, mirror;
    int exit_code, exit_signal;
    char last_error[1024];
    struct recent_edit recent[RECENT_EDITS];
    size_t recent_next;
};

/* ---- the queue ------------------------------------------------------------------------------- */

static void ep_mod(struct rec *r, int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
        epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void ep_add(struct rec *r, int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void flush_socket(struct rec *r);
static void disconnect(struct rec *r);

static void sync_reading(struct rec *r) {
    bool pause = r->q_bytes > QUEUE_MAX_BYTES;
    if (pause == r->reading_paused)
        return;
    r->reading_paused = pause;
    if (r->events_rd >= 0)
        ep_mod(r, r->events_rd, pause ? 0 : EPOLLIN);
    if (r->watch)
        ep_mod(r, watcher_fd(r->watch), pause ? 0 : EPOLLIN);
}

static void send_queued(struct rec *r) {
    if (r->sock < 0 || !r->welcomed)
        return;
    while (r->q_sent < r->q_n) {
        struct pending *p = &r->q[(r->q_head + r->q_sent) % r->q_cap];
        if (ah_buf_append(&r->out, p->frame, p->len) < 0)
            break; /* the socket buffer is full: the rest goes after a flush */
        r->q_sent++;
    }
    flush_socket(r);
}

/* Queues a message with the next rseq (msg gets "rseq"; the queue owns the frame). */
static void enqueue(struct rec *r, json_t *msg) {
    if (!msg)
        return;
    if (!r->socket_path) { /* standalone: nobody to deliver to */
        json_decref(msg);
        return;
    }
    if (r->q_n == r->q_cap) {
        size_t cap = r->q_cap ? r->q_cap * 2 : 256;
        struct pending *nq = malloc(cap * sizeof(*nq));
        if (!nq) {
            json_decref(msg);
            return;
        }
        for (size_t i = 0; i < r->q_n; i++)
            nq[i] = r->q[(r->q_head + i) % r->q_cap];
        free(r->q);
        r->q = nq;
        r->q_head = 0;
        r->q_cap = cap;
    }
    int64_t rseq = r->next_rseq++;
    json_object_set_new(msg, "rseq", json_integer(rseq));
    struct ah_buf f = {.max = LINK_MAX_FRAME + 8};
    if (link_frame(&f, msg) < 0) {
        json_decref(msg);
        ah_buf_clear(&f);
        return;
    }
    json_decref(msg);
    r->q[(r->q_head + r->q_n) % r->q_cap] = (struct pending){rseq, f.p, f.n};
    r->q_n++;
    r->q_bytes += f.n;
    sync_reading(r);
    /* sent once the current batch of epoll events is handled: the events of one read of the
     * agent's pipe go in one write, not one each (the executor's relay and QUIC then move them
     * in as few packets) */
    r->send_due = true;
}

static void drop_acked(struct rec *r, int64_t upto) {
    while (r->q_n && r->q[r->q_head].rseq <= upto) {
        struct pending *p = &r->q[r->q_head];
        r->q_bytes -= p->len;
        free(p->frame);
        r->q_head = (r->q_head + 1) % r->q_cap;
        r->q_n--;
        if (r->q_sent)
            r->q_sent--;
    }
    sync_reading(r);
}

static void queue_event(struct rec *r, json_t *event) {
    if (!event)
        return;
    enqueue(r, json_pack("{s:s, s:I, s:o}", "type", "event", "tsMs", (json_int_t)time_now_ms(),
                         "event", event));
}

static void log_event(struct rec *r, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_event(struct rec *r, const char *level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    queue_event(r, json_pack("{s:s, s:s, s:s, s:n}", "type", "log", "level", level, "message", msg,
                             "tool_execution_id"));
}

/* ---- the socket ------------------------------------------------------------------------------ */

static void arm_timer(struct rec *r, int ms) {
    struct itimerspec its = {.it_value = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L}};
    timerfd_settime(r->timerfd, 0, &its, NULL);
}

static void disconnect(struct rec *r) {
    if (r->sock >= 0) {
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->sock, NULL);
        close(r->sock);
    }
    r->sock = -1;
    r->welcomed = false;
    r->q_sent = 0;
    r->out.n = 0;
    link_reader_clear(&r->rd);
    if (!r->disconnected_at)
        r->disconnected_at = time_mono_ms();
    r->backoff_ms = r->backoff_ms ? (r->backoff_ms * 2 > 2000 ? 2000 : r->backoff_ms * 2) : 50;
    arm_timer(r, r->backoff_ms);
}

static void flush_socket(struct rec *r) {
    if (r->sock < 0)
        return;
    if (write_pending(r->sock, &r->out) < 0) {
        disconnect(r);
        return;
    }
    uint32_t ev = EPOLLIN | (r->out.n ? EPOLLOUT : 0);
    if (ev != r->sock_ev) { /* no epoll_ctl per write */
        ep_mod(r, r->sock, ev);
        r->sock_ev = ev;
    }
    if (!r->out.n && r->q_sent < r->q_n)
        send_queued(r);
}

static void try_connect(struct rec *r) {
    if (r->sock >= 0 || !r->socket_path)
        return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", r->socket_path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0)
            close(fd);
        r->backoff_ms = r->backoff_ms ? (r->backoff_ms * 2 > 2000 ? 2000 : r->backoff_ms * 2) : 50;
        arm_timer(r, r->backoff_ms);
        return;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    r->sock = fd;
    r->welcomed = false;
    ep_add(r, fd, EPOLLIN);
    r->sock_ev = EPOLLIN;
    json_t *hello = json_pack("{s:s, s:s, s:s, s:i, s:i}", "type", "hello", "sessionId",
                              r->session_id, "token", r->token ? r->token : "", "pid",
                              (int)getpid(), "agentPgid", (int)r->child);
    if (!hello || link_frame(&r->out, hello) < 0) {
        json_decref(hello);
        disconnect(r);
        return;
    }
    json_decref(hello);
    flush_socket(r);
}

/* Writes what the input pipe takes now; the rest waits for EPOLLOUT. */
static void flush_input(struct rec *r) {
    if (r->input_wr < 0)
        return;
    if (write_pending(r->input_wr, &r->input) < 0) { /* EPIPE: the agent is done reading */
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->input_wr, NULL);
        close(r->input_wr);
        r->input_wr = -1;
        ah_buf_clear(&r->input);
        return;
    }
    /* watched only while something waits: epoll reports a closed reader even unasked */
    if (r->input.n)
        ep_mod(r, r->input_wr, EPOLLOUT);
    else
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->input_wr, NULL);
}

/* A prompt (text, model?) or a model switch as one JSON line on the input pipe. */
static void send_input(struct rec *r, const json_t *msg) {
    const char *text = json_string_value(json_object_get(msg, "text"));
    const char *model = json_string_value(json_object_get(msg, "model"));
    if (!text && !model)
        return;
    json_t *line = json_object();
    if (line && text)
        json_object_set_new(line, "text", json_string(text));
    if (line && model)
        json_object_set_new(line, "model", json_string(model));
    char *s = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    size_t n = s ? strlen(s) : 0;
    if (!s || r->input_wr < 0 || r->input.n + n + 1 > INPUT_MAX_BYTES ||
        ah_buf_append(&r->input, s, n) < 0 || ah_buf_append(&r->input, "\n", 1) < 0) {
        log_event(r, "warn", "could not deliver %s to the agent: %s",
                  text ? "a prompt" : "a model switch",
                  r->input_wr < 0 ? "it no longer reads its input" : "too much input is waiting");
        free(s);
        return;
    }
    free(s);
    if (text && r->cast)
        cast_input(r->cast, text, strlen(text));
    flush_input(r);
}

static void on_server_msg(struct rec *r, json_t *msg) {
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!type)
        return;
    if (strcmp(type, "welcome") == 0) {
        drop_acked(r, json_integer_value(json_object_get(msg, "acked")));
        r->welcomed = true;
        r->backoff_ms = 0;
        r->disconnected_at = 0;
        r->q_sent = 0;
        send_queued(r);
    } else if (strcmp(type, "ack") == 0) {
        drop_acked(r, json_integer_value(json_object_get(msg, "rseq")));
    } else if (r->input_pipe && (strcmp(type, "prompt") == 0 || strcmp(type, "model") == 0)) {
        send_input(r, msg);
    } else if (strcmp(type, "prompt") == 0) {
        const char *text = json_string_value(json_object_get(msg, "text"));
        if (text && r->master >= 0) {
            size_t n = strlen(text);
            if (write(r->master, text, n) < 0 || write(r->master, "\n", 1) < 0)
                log_event(r, "warn", "could not deliver a prompt to the agent: %s",
                          strerror(errno));
            else if (r->cast)
                cast_input(r->cast, text, n);
        }
    } else if (strcmp(type, "resize") == 0) {
        int cols = (int)json_integer_value(json_object_get(msg, "cols"));
        int rows = (int)json_integer_value(json_object_get(msg, "rows"));
        if (cols > 0 && cols < 10000 && rows > 0 && rows < 10000 && r->master >= 0) {
            struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
            ioctl(r->master, TIOCSWINSZ, &ws);
            if (r->cast)
                cast_resize(r->cast, cols, rows);
        }
    } else if (strcmp(type, "stop") == 0) {
        if (!r->child_exited)
            kill(-r->child, SIGTERM);
    } else if (strcmp(type, "error") == 0) {
        fprintf(stderr, "ah agent record: the server refused us: %s\n",
                json_string_value(json_object_get(msg, "message")));
        r->refused = true;
    }
}

static void on_socket(struct rec *r, uint32_t events) {
    if (events & EPOLLOUT)
        flush_socket(r);
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || r->sock < 0)
        return;
    for (;;) {
        int n = link_read_fd(r->sock, &r->rd);
        if (n == AH_E_BUSY)
            break;
        if (n <= 0) {
            disconnect(r);
            return;
        }
        json_t *msg;
        int t;
        while ((t = link_take(&r->rd, &msg)) == 1) {
            on_server_msg(r, msg);
            json_decref(msg);
        }
        if (t < 0) {
            disconnect(r);
            return;
        }
    }
}

/* ---- agent output ---------------------------------------------------------------------------- */

static void on_master(struct rec *r) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(r->master, buf, sizeof(buf));
        if (n > 0) {
            if (r->cast)
                cast_output(r->cast, buf, (size_t)n);
            if (r->mirror && write(1, buf, (size_t)n) < 0)
                r->mirror = false;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        /* EIO: every holder of the slave is gone */
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->master, NULL);
        close(r->master);
        r->master = -1;
        return;
    }
}

static bool recently_reported(struct rec *r, const char *rel) {
    int64_t now = time_mono_ms();
    size_t wl = strlen(r->workspace);
    for (size_t i = 0; i < RECENT_EDITS; i++) {
        const char *p = r->recent[i].path;
        if (!p[0] || now - r->recent[i].at > 5000)
            continue;
        if (strncmp(p, r->workspace, wl) == 0 && p[wl] == '/')
            p += wl + 1;
        if (strncmp(p, "./", 2) == 0)
            p += 2;
        if (strcmp(p, rel) == 0)
            return true;
    }
    return false;
}

static void on_agent_line(struct rec *r, const char *line, size_t len) {
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    if (!len)
        return;
    json_t *ev = json_loadb(line, len, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!json_is_object(ev) || !type || strcmp(type, "status") == 0) {
        json_decref(ev);
        log_event(r, "warn", "the agent wrote an event line that is not a valid event: %.200s",
                  line);
        return;
    }
    /* the server numbers and stamps events (D9, D12) */
    json_object_del(ev, "seq");
    json_object_del(ev, "sessionId");
    json_object_del(ev, "ts");
    if (strcmp(type, "file_edit") == 0) {
        const char *path = json_string_value(json_object_get(ev, "file_path"));
        if (path) {
            struct recent_edit *e = &r->recent[r->recent_next++ % RECENT_EDITS];
            snprintf(e->path, sizeof(e->path), "%s", path);
            e->at = time_mono_ms();
        }
    }
    if (strcmp(type, "log") == 0) {
        const char *level = json_string_value(json_object_get(ev, "level"));
        const char *message = json_string_value(json_object_get(ev, "message"));
        if (level && message && strcmp(level, "error") == 0)
            snprintf(r->last_error, sizeof(r->last_error), "%s", message);
    }
    queue_event(r, ev);
}

static void on_events(struct rec *r) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(r->events_rd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) { /* every writer closed it */
            epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->events_rd, NULL);
            close(r->events_rd);
            r->events_rd = -1;
            if (r->line.n)
                on_agent_line(r, r->line.p, r->line.n);
            r->line.n = 0;
            return;
        }
        const char *p = buf, *end = buf + n;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t chunk = nl ? (size_t)(nl - p) : (size_t)(end - p);
            if (!r->line_overflow && ah_buf_append(&r->line, p, chunk) < 0) {
                r->line_overflow = true;
                log_event(r, "warn", "the agent wrote an event line over %d bytes; dropped",
                          LINE_MAX_BYTES);
            }
            if (nl) {
                if (!r->line_overflow && r->line.n)
                    on_agent_line(r, r->line.p, r->line.n);
                r->line.n = 0;
                r->line_overflow = false;
            }
            p += chunk + (nl ? 1 : 0);
        }
    }
}

static void on_change(void *arg, const char *rel, const struct diff_stat *st, const char *what) {
    struct rec *r = arg;
    if (recently_reported(r, rel))
        return; /* the agent told us about this edit itself */
    queue_event(r, json_pack("{s:s, s:s, s:I, s:I, s:s}", "type", "file_edit", "file_path", rel,
                             "lines_added", (json_int_t)st->added, "lines_removed",
                             (json_int_t)st->removed, "description", what));
}

/* ---- D48: the recorder's span ------------------------------------------------------------------ */

/* With TRACEPARENT (the request that created the session) and AH_OTLP_ENDPOINT (the server
 * exports spans there), the recorder's run is a span of that trace, and the agent gets
 * TRACEPARENT naming it as parent: client → server → recorder → agent, one trace. Without an
 * endpoint the agent keeps the server's TRACEPARENT as it came. */
static bool trace_begin(struct obs_trace *ret) {
    const char *tp = getenv("TRACEPARENT"), *endpoint = getenv("AH_OTLP_ENDPOINT");
    if (!tp || !endpoint || !*endpoint || obs_trace_start(tp, ret) < 0 || !ret->parent_id[0] ||
        obs_otlp_start(endpoint, "agent-harbor-recorder") < 0)
        return false;
    char mine[56];
    obs_traceparent_format(ret, mine);
    setenv("TRACEPARENT", mine, 1);
    unsetenv("AH_OTLP_ENDPOINT"); /* the agent's business is TRACEPARENT alone */
    return true;
}

static void trace_end(const struct rec *r, const struct obs_trace *span, int64_t start, int code) {
    char exit_code[16];
    snprintf(exit_code, sizeof(exit_code), "%d", code);
    struct obs_span s = {
        .name = "agent session",
        .kind = 1,
        .trace = *span,
        .start_ns = start,
        .end_ns = obs_wall_ns(),
        .error = code != 0,
        .attrs = {{"ah.session_id", r->session_id}, {"ah.exit_code", exit_code}},
    };
    obs_span_export(&s);
    obs_otlp_stop(); /* delivers it before the process ends */
}

/* ---- the agent process ----------------------------------------------------------------------- */

static int spawn_agent(struct rec *r, char **argv, int events_wr, int input_rd) {
    r->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (r->master < 0 || grantpt(r->master) < 0 || unlockpt(r->master) < 0)
        return ah_err_from_errno(errno);
    char slave[128];
    if (ptsname_r(r->master, slave, sizeof(slave)) != 0)
        return AH_E_IO;
    struct winsize ws = {.ws_row = (unsigned short)r->rows, .ws_col = (unsigned short)r->cols};
    ioctl(r->master, TIOCSWINSZ, &ws);

    size_t n = 0;
    for (char **e = environ; *e; e++)
        n++;
    char **env = calloc(n + 3, sizeof(char *));
    if (!env)
        return AH_E_NOMEM;
    size_t k = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "AH_RECORDER_TOKEN=", 18) != 0 && strncmp(*e, "AH_EVENTS_FD=", 13) != 0 &&
            strncmp(*e, "AH_INPUT_FD=", 12) != 0)
            env[k++] = *e;
    char events_var[32], input_var[32];
    snprintf(events_var, sizeof(events_var), "AH_EVENTS_FD=%d", EVENTS_FD);
    env[k++] = events_var;
    snprintf(input_var, sizeof(input_var), "AH_INPUT_FD=%d", INPUT_FD);
    if (input_rd >= 0)
        env[k++] = input_var;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    /* setsid happens before the file actions: opening the slave makes it the controlling
     * terminal of the agent's new session, whose process group is the one we signal. */
    posix_spawn_file_actions_addopen(&fa, 0, slave, O_RDWR, 0);
    posix_spawn_file_actions_adddup2(&fa, 0, 1);
    posix_spawn_file_actions_adddup2(&fa, 0, 2);
    posix_spawn_file_actions_adddup2(&fa, events_wr, EVENTS_FD);
    if (input_rd >= 0) /* both ends were moved past 10: neither dup2 clobbers the other */
        posix_spawn_file_actions_adddup2(&fa, input_rd, INPUT_FD);
    else if (r->container) /* `podman run --preserve-fds 2` passes fds 3 and 4: both must exist */
        posix_spawn_file_actions_addopen(&fa, INPUT_FD, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (r->hold_term)
        sigaddset(&none, SIGTERM);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    /* The agent is born inside the session's cgroups: we step in for the spawn and back out,
     * so no fork of the agent's can happen outside its limits, and ours never apply to us. */
    struct sandbox_cgroup saved;
    int err = 0, rc = r->cg.n ? sandbox_cgroup_enter(&r->cg, &saved) : 0;
    if (rc == 0) {
        err = posix_spawnp(&r->child, argv[0], &fa, &attr, argv, env);
        if (r->cg.n)
            sandbox_cgroup_leave(&saved);
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free(env);
    if (rc < 0)
        return rc; /* never without the limits the session was promised */
    if (err)
        return ah_err_from_errno(err);
    if (r->wall_ms > 0 && r->wallfd >= 0) {
        struct itimerspec its = {.it_value = {.tv_sec = r->wall_ms / 1000,
                                              .tv_nsec = (r->wall_ms % 1000) * 1000000L}};
        timerfd_settime(r->wallfd, 0, &its, NULL);
    }
    r->child_pidfd = pidfd_open_pid(r->child);
    fcntl(r->master, F_SETFL, fcntl(r->master, F_GETFL) | O_NONBLOCK);
    return 0;
}

/* A devcontainer after its podman client ended: a client that was killed (stop's grace over,
 * wall time) could not remove the container, which may still run: it goes now, before the exit
 * is reported, so nothing of the agent's outlives its session. Thawed first: a frozen process
 * cannot die. */
static void end_container(struct rec *r, bool force) {
    sandbox_container_freeze(r->container, false);
    if (force)
        sandbox_container_remove(r->podman, r->podman_runtime, r->container, true);
}

/* SIGCHLD: pause stops the agent's process group, which holds only the podman client; the
 * container follows it into the freezer, and out of it on resume. */
static void on_child_state(struct rec *r) {
    for (;;) {
        siginfo_t info = {0};
        if (r->child <= 0 || waitid(P_PID, (id_t)r->child, &info,
                                    WSTOPPED | WCONTINUED | WNOHANG) < 0 || !info.si_pid)
            return;
        bool frozen = info.si_code == CLD_STOPPED;
        if (!frozen && info.si_code != CLD_CONTINUED)
            return;
        int rc = sandbox_container_freeze(r->container, frozen);
        if (rc < 0)
            fprintf(stderr, "ah agent record: cannot %s container %s: %s\n",
                    frozen ? "freeze" : "thaw", r->container, ah_strerror(rc));
    }
}

static void on_child_exit(struct rec *r) {
    siginfo_t info = {0};
    if (waitid(P_PIDFD, (id_t)r->child_pidfd, &info, WEXITED | WNOHANG) < 0 || !info.si_pid)
        return;
    r->child_exited = true;
    if (info.si_code == CLD_EXITED)
        r->exit_code = info.si_status;
    else
        r->exit_signal = info.si_status;
    epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->child_pidfd, NULL);
    close(r->child_pidfd);
    r->child_pidfd = -1;
    /* the agent is done: whatever it left running in its process group goes with it */
    kill(-r->child, SIGKILL);
    if (r->container)
        end_container(r, r->exit_signal != 0);
    /* everything the agent said before it died comes before its exit */
    if (r->master >= 0)
        on_master(r);
    if (r->events_rd >= 0)
        on_events(r);
    json_t *changes = NULL;
    if (r->watch) {
        watcher_poll(r->watch, on_change, r);
        watcher_rescan(r->watch, on_change, r);
        changes = watcher_changes(r->watch);
    }
    bool ok = r->exit_code == 0 && r->exit_signal == 0;
    json_t *exit = json_pack("{s:s, s:i, s:i}", "type", "exit", "code", r->exit_code, "signal",
                             r->exit_signal);
    if (exit && changes)
        json_object_set_new(exit, "changes", changes);
    else
        json_decref(changes);
    /* a death the sandbox caused is named as such, not as a bare signal or exit code */
    if (!ok && r->wall_hit)
        snprintf(r->last_error, sizeof(r->last_error),
                 "wall time limit reached: the agent ran for %lld s and was killed",
                 (long long)(r->wall_ms / 1000));
    else if (!ok && sandbox_cgroup_oom_kills(&r->cg) > 0)
        snprintf(r->last_error, sizeof(r->last_error),
                 "out of memory: the agent exceeded its memory limit and the kernel killed it "
                 "(OOM)");
    else if (!ok && sandbox_cgroup_pids_hit(&r->cg) && !r->last_error[0])
        snprintf(r->last_error, sizeof(r->last_error),
                 "the agent failed after reaching its process limit (pids)");
    if (exit && !ok && r->last_error[0])
        json_object_set_new(exit, "error", json_string(r->last_error));
    enqueue(r, exit);
    r->exit_queued = true;
}

/* The wall-time limit: the whole sandbox goes, and the exit says why. */
static void on_wall_time(struct rec *r) {
    uint64_t t;
    while (read(r->wallfd, &t, sizeof(t)) > 0)
        ;
    if (r->child_exited)
        return;
    r->wall_hit = true;
    log_event(r, "error", "wall time limit of %lld s reached: stopping the agent",
              (long long)(r->wall_ms / 1000));
    kill(-r->child, SIGKILL);
}

/* ---- main ------------------------------------------------------------------------------------ */

static const char usage[] =
    "usage: ah agent record [OPTIONS] -- COMMAND [ARGS...]\n\n"
    "Runs COMMAND under a pseudo-terminal and records it as an asciicast v2 file; with --socket,\n"
    "streams its events to the access point (the server starts it this way, D16).\n\n"
    "  --session-id ID     the session (required with --socket)\n"
    "  --socket PATH       the access point's recorder socket\n"
    "  -o, --out-file FILE asciicast v2 recording to write\n"
    "  --workspace DIR     directory whose file changes become file_edit events\n"
    "  --cols N, --rows N  terminal size (default 120x40)\n"
    "  --linger-ms N       how long to wait for an absent server after the agent exits\n"
    "                      (default 3600000)\n"
    "  --config PATH       accepted for symmetry with the other commands\n"
    "  --cgroup DIR        start the agent in this cgroup (repeatable: one per hierarchy)\n"
    "  --wall-time-ms N    kill the agent after N ms\n"
    "  --note TEXT         logged as the session's first event (what the sandbox applies)\n"
    "  --input-pipe        give input to COMMAND as JSON lines on AH_INPUT_FD, not its terminal\n"
    "  --hold-term         start COMMAND with SIGTERM blocked: it is a sandbox (bubblewrap)\n"
    "                      that must outlive a stop's SIGTERM so the agent inside can wrap\n"
    "                      up; the agent (ah agent start) unblocks it for itself\n"
    "  --container NAME    COMMAND runs podman container NAME: freeze it while COMMAND is\n"
    "                      stopped (pause), remove it when COMMAND ends; with --podman PATH\n"
    "                      and --podman-runtime RUNTIME (what COMMAND runs it with)\n"
    "The token for --socket comes from the environment (AH_RECORDER_TOKEN).\n";

int agent_record_main(int argc, char **argv) {
    struct rec r = {.cols = 120, .rows = 40, .linger_ms = 3600000, .next_rseq = 1, .master = -1,
                    .events_rd = -1, .sock = -1, .child_pidfd = -1, .sigfd = -1, .timerfd = -1,
                    .wallfd = -1, .input_wr = -1, .input = {.max = INPUT_MAX_BYTES},
                    .line = {.max = LINE_MAX_BYTES}, .out = {.max = 2 * LINK_MAX_FRAME + 64}};
    static const struct option opts[] = {
        {"session-id", required_argument, 0, 's'}, {"socket", required_argument, 0, 'S'},
        {"out-file", required_argument, 0, 'o'},   {"workspace", required_argument, 0, 'w'},
        {"cols", required_argument, 0, 'c'},       {"rows", required_argument, 0, 'r'},
        {"linger-ms", required_argument, 0, 'l'},  {"config", required_argument, 0, 'C'},
        {"cgroup", required_argument, 0, 'G'},     {"wall-time-ms", required_argument, 0, 'W'},
        {"note", required_argument, 0, 'N'},       {"hold-term", no_argument, 0, 'T'},
        {"input-pipe", no_argument, 0, 'I'},
        {"container", required_argument, 0, 'K'},  {"podman", required_argument, 0, 'P'},
        {"podman-runtime", required_argument, 0, 'R'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    int64_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+o:h", opts, NULL)) != -1) {
        switch (c) {
        case 's': r.session_id = optarg; break;
        case 'S': r.socket_path = optarg; break;
        case 'o': r.out_file = optarg; break;
        case 'w': r.workspace = optarg; break;
        case 'c':
        case 'r':
            if (parse_int64(optarg, 1, 9999, &v) < 0) {
                fprintf(stderr, "ah agent record: --%s must be 1..9999\n", c == 'c' ? "cols" : "rows");
                return 2;
            }
            *(c == 'c' ? &r.cols : &r.rows) = (int)v;
            break;
        case 'l':
            if (parse_int64(optarg, 0, INT64_MAX / 2, &r.linger_ms) < 0) {
                fprintf(stderr, "ah agent record: --linger-ms must be a number of milliseconds\n");
                return 2;
            }
            break;
        case 'C': break;
        case 'G':
            if (r.cg.n == SANDBOX_CGROUPS_MAX || strlen(optarg) >= sizeof(r.cg.dir[0])) {
                fputs("ah agent record: too many or too long --cgroup\n", stderr);
                return 2;
            }
            snprintf(r.cg.dir[r.cg.n++], sizeof(r.cg.dir[0]), "%s", optarg);
            break;
        case 'W':
            if (parse_int64(optarg, 0, INT64_MAX / 2, &r.wall_ms) < 0) {
                fputs("ah agent record: --wall-time-ms must be a number of milliseconds\n", stderr);
                return 2;
            }
            break;
        case 'N': r.note = optarg; break;
        case 'T': r.hold_term = true; break;
        case 'I': r.input_pipe = true; break;
        case 'K': r.container = optarg; break;
        case 'P': r.podman = optarg; break;
        case 'R': r.podman_runtime = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind >= argc) {
        fputs("ah agent record: no command given (put it after --)\n", stderr);
        return 2;
    }
    if (r.container && (!r.podman || !r.podman_runtime)) {
        fputs("ah agent record: --container needs --podman and --podman-runtime\n", stderr);
        return 2;
    }
    if (r.socket_path && !r.session_id) {
        fputs("ah agent record: --socket needs --session-id\n", stderr);
        return 2;
    }
    if (getenv("AH_RECORDER_TOKEN"))
        r.token = strdup(getenv("AH_RECORDER_TOKEN"));
    r.mirror = isatty(1);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGPIPE);
    if (r.container)
        sigaddset(&sigs, SIGCHLD);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    r.sigfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    r.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (r.wall_ms > 0)
        r.wallfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    r.epfd = epoll_create1(EPOLL_CLOEXEC);

    int pipefd[2] = {-1, -1};
    int rc = pipe2(pipefd, O_CLOEXEC) < 0 ? ah_err_from_errno(errno) : 0;
    int inputfd[2] = {-1, -1};
    if (rc == 0 && r.input_pipe) {
        rc = pipe2(inputfd, O_CLOEXEC) < 0 ? ah_err_from_errno(errno) : 0;
        int moved = rc == 0 ? fcntl(inputfd[0], F_DUPFD_CLOEXEC, 10) : -1;
        if (rc == 0 && moved < 0)
            rc = ah_err_from_errno(errno);
        if (inputfd[0] >= 0)
            close(inputfd[0]);
        inputfd[0] = moved;
    }
    if (rc == 0 && pipefd[1] < 10) { /* clear of EVENTS_FD and INPUT_FD for the dup2s (and
                                       * never dup2 onto itself, which would keep CLOEXEC) */
        int moved = fcntl(pipefd[1], F_DUPFD_CLOEXEC, 10);
        close(pipefd[1]);
        pipefd[1] = moved;
    }
    if (rc == 0 && r.out_file && (rc = cast_open(r.out_file, r.cols, r.rows, r.session_id,
                                                 &r.cast)) < 0)
        fprintf(stderr, "ah agent record: cannot write %s\n", r.out_file);
    if (rc == 0 && r.workspace && watcher_open(r.workspace, &r.watch) < 0)
        fprintf(stderr, "ah agent record: cannot watch %s; file edits will not be reported\n",
                r.workspace);
    if (rc == 0 && r.note) /* for whoever reads recorder.log; the session shows it too */
        fprintf(stderr, "ah agent record: %s\n", r.note);
    struct obs_trace span;
    int64_t span_start = obs_wall_ns();
    bool traced = rc == 0 && trace_begin(&span);
    if (rc == 0 && (rc = spawn_agent(&r, argv + optind, pipefd[1], inputfd[0])) < 0) {
        fprintf(stderr, "ah agent record: cannot start %s: %s\n", argv[optind], ah_strerror(rc));
        log_event(&r, "error", "cannot start the agent %s: %s", argv[optind], ah_strerror(rc));
        snprintf(r.last_error, sizeof(r.last_error), "cannot start the agent %s: %s",
                 argv[optind], ah_strerror(rc));
    }
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    if (inputfd[0] >= 0)
        close(inputfd[0]);
    r.input_wr = inputfd[1];
    if (r.input_wr >= 0) {
        fcntl(r.input_wr, F_SETFL, fcntl(r.input_wr, F_GETFL) | O_NONBLOCK);
    }
    r.events_rd = pipefd[0];
    if (r.events_rd >= 0) {
        fcntl(r.events_rd, F_SETFL, fcntl(r.events_rd, F_GETFL) | O_NONBLOCK);
        ep_add(&r, r.events_rd, EPOLLIN);
    }
    if (r.master >= 0)
        ep_add(&r, r.master, EPOLLIN);
    if (r.child_pidfd >= 0)
        ep_add(&r, r.child_pidfd, EPOLLIN);
    if (r.watch)
        ep_add(&r, watcher_fd(r.watch), EPOLLIN);
    ep_add(&r, r.sigfd, EPOLLIN);
    ep_add(&r, r.timerfd, EPOLLIN);
    if (r.wallfd >= 0)
        ep_add(&r, r.wallfd, EPOLLIN);
    try_connect(&r);
    if (rc < 0) { /* report the launch failure as an exit */
        r.child_exited = true;
        r.exit_code = 127;
        json_t *exit = json_pack("{s:s, s:i, s:i, s:s}", "type", "exit", "code", 127, "signal", 0,
                                 "error", r.last_error);
        enqueue(&r, exit);
        r.exit_queued = true;
    }

    while (!r.refused) {
        if (r.exit_queued && r.q_n == 0)
            break; /* all delivered */
        if (r.exit_queued && !r.socket_path)
            break;
        if (r.exit_queued && r.disconnected_at &&
            time_mono_ms() - r.disconnected_at > r.linger_ms) {
            fprintf(stderr, "ah agent record: no server for %lld ms; %zu events undelivered\n",
                    (long long)r.linger_ms, r.q_n);
            break;
        }
        if (r.send_due) {
            r.send_due = false;
            send_queued(&r);
        }
        struct epoll_event evs[16];
        int n = epoll_wait(r.epfd, evs, 16, r.exit_queued && r.disconnected_at ? 1000 : -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == r.master && r.master >= 0) {
                on_master(&r);
            } else if (fd == r.events_rd && r.events_rd >= 0) {
                on_events(&r);
            } else if (fd == r.input_wr && r.input_wr >= 0) {
                flush_input(&r);
            } else if (r.watch && fd == watcher_fd(r.watch)) {
                watcher_poll(r.watch, on_change, &r);
            } else if (fd == r.sock && r.sock >= 0) {
                on_socket(&r, evs[i].events);
            } else if (fd == r.child_pidfd && r.child_pidfd >= 0) {
                on_child_exit(&r);
            } else if (fd == r.wallfd && r.wallfd >= 0) {
                on_wall_time(&r);
            } else if (fd == r.timerfd) {
                uint64_t t;
                while (read(r.timerfd, &t, sizeof(t)) > 0)
                    ;
                try_connect(&r);
            } else if (fd == r.sigfd) {
                struct signalfd_siginfo si;
                while (read(r.sigfd, &si, sizeof(si)) == sizeof(si))
                    if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !r.child_exited)
                        kill(-r.child, SIGTERM); /* the agent decides how to wrap up */
                    else if (si.ssi_signo == SIGCHLD && r.container && !r.child_exited)
                        on_child_state(&r);
            }
        }
    }
    if (r.refused && !r.child_exited) {
        kill(-r.child, SIGKILL);
        if (r.container)
            end_container(&r, true);
    }

    int code = r.refused ? 1 : r.exit_signal ? 128 + r.exit_signal : r.exit_code;
    if (traced)
        trace_end(&r, &span, span_start, code);
    cast_close(r.cast);
    watcher_close(r.watch);
    disconnect(&r);
    for (size_t i = 0; i < r.q_n; i++)
        free(r.q[(r.q_head + i) % r.q_cap].frame);
    free(r.q);
    ah_buf_clear(&r.out);
    ah_buf_clear(&r.line);
    ah_buf_clear(&r.input);
    if (r.input_wr >= 0)
        close(r.input_wr);
    link_reader_clear(&r.rd);
    if (r.master >= 0)
        close(r.master);
    if (r.events_rd >= 0)
        close(r.events_rd);
    if (r.child_pidfd >= 0)
        close(r.child_pidfd);
    close(r.sigfd);
    close(r.timerfd);
    if (r.wallfd >= 0)
        close(r.wallfd);
    sandbox_cgroup_remove(&r.cg); /* empty now: the agent's processes are gone */
    if (r.container) /* its cgroups, once conmon has left them (after the exit is reported) */
        sandbox_container_remove(r.podman, r.podman_runtime, r.container, false);
    close(r.epfd);
    free(r.token);
    return code;
}
