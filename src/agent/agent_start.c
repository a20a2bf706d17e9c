/*
 * agent_start.c — `ah agent start`: runs one agent non-interactively in a workspace and reports
 * what it does as events, one JSON object per line on AH_EVENTS_FD (the recorder's pipe), while
 * its terminal output (stdout, the PTY) shows a human rendering.
 *
 *   scripted            the built-in test/demo agent (D20): follows a scenario of thoughts, logs,
 *                       tool calls, real file edits, sleeps, prompt waits, exits and failures
 *   claude-code, codex,
 *   gemini, opencode    adapters (adapter.h) run the real CLI and map its JSON output
 *   --command/--format  a custom agent from configuration (D19)
 *
 * Further turns (issue 15): claude-code and codex run their CLI once per turn. Started with an
 * input pipe (AH_INPUT_FD, from `ah agent record --input-pipe`), the process stays after a
 * successful turn: each message that comes on the pipe ({"text", "model"?} lines; {"model"}
 * alone switches the model of the turns to come) runs the next turn, which resumes the CLI's own
 * conversation (the id the previous run named) with the chosen model. Messages already waiting
 * run at once; with none, it waits agents[].settings.chat_idle_seconds (default 0) for one, and
 * then ends with the last turn's outcome. A failed turn ends it at once.
 *
 * Exit status: 0 when the agent succeeded, 1 when it failed, 127 when its binary is missing,
 * 2 for usage errors. A failure is also reported as a `log` event of level error, whose message
 * becomes the session's `error`.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

#define SCENARIO_MAX_STEPS 100000 /* the request body limit bounds it too */

static int events_fd = -1;
/* The model of the turn running now (NULL: the CLI's default), stamped on its replies and usage
 * so that each reads with the model that produced it. */
static const char *turn_model;
/* A stop (SIGTERM/SIGINT) came: the CLI wraps up as it decides, and no further turn starts. */
static volatile sig_atomic_t stop_requested;

static void note_stop(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Writes one event line to the recorder (or nowhere when run without one). */
static void emit(json_t *event) {
    if (!event)
        return;
    if (events_fd >= 0) {
        char *text = json_dumps(event, JSON_COMPACT);
        if (text) {
            size_t n = strlen(text);
            text[n] = '\n';
            const char *p = text;
            size_t left = n + 1;
            while (left) {
                ssize_t w = write(events_fd, p, left);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    break;
                p += w;
                left -= (size_t)w;
            }
            free(text);
        }
    }
    json_decref(event);
}

static void emit_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit_log(const char *level, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(json_pack("{s:s, s:s, s:s, s:n}", "type", "log", "level", level, "message", msg,
                   "tool_execution_id"));
    if (strcmp(level, "error") == 0)
        fprintf(stderr, "error: %s\n", msg);
}

static void sleep_ms(int64_t ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

#define PROGRESS_MAX 50        /* progress events per tool step; the last line always goes */
#define PROGRESS_LINE_MAX 1024 /* bytes of one last_line */

/* One progress event of a running tool (D26): a tool_use with status `running` and the last
 * line of its output so far; the SSE stream names it `tool_execution` like the tool's start and
 * result. The line is cut at PROGRESS_LINE_MAX bytes, on a UTF-8 character boundary. */
static void emit_progress(const json_t *name, const char *id, const char *line, size_t len) {
    if (len > PROGRESS_LINE_MAX) {
        len = PROGRESS_LINE_MAX;
        while (len > 0 && ((unsigned char)line[len] & 0xC0) == 0x80)
            len--;
    }
    emit(json_pack("{s:s, s:O, s:s, s:s, s:s%}", "type", "tool_use", "tool_name", name,
                   "tool_execution_id", id, "status", "running", "last_line", line, len));
}

/* A tool step's `ms`: while it runs, the output's lines come out one by one, spread over the
 * time, each as a progress event (and on the terminal), as a real tool's output would. Returns
 * whether the output was shown that way (else the caller prints it at the end). */
static bool tool_progress(const json_t *name, const char *id, const char *output, int64_t ms) {
    size_t n = 0;
    for (const char *c = output; c && *c; c += strcspn(c, "\n"), c += *c == '\n')
        n++;
    if (ms <= 0 || n == 0) {
        sleep_ms(ms);
        return false;
    }
    size_t shown = n < PROGRESS_MAX ? n : PROGRESS_MAX;
    int64_t slice = ms / (int64_t)(shown + 1), slept = 0;
    size_t i = 0;
    for (const char *c = output; *c; i++) {
        size_t len = strcspn(c, "\n");
        /* With more lines than PROGRESS_MAX, the first ones and the very last are reported. */
        if (i + 1 < shown || i + 1 == n) {
            sleep_ms(slice);
            slept += slice;
            printf("%.*s\n", (int)len, c);
            emit_progress(name, id, c, len);
        } else {
            printf("%.*s\n", (int)len, c);
        }
        c += len;
        c += *c == '\n';
    }
    sleep_ms(ms - slept);
    return true;
}

/* ---- the scripted agent (D20) ---------------------------------------------------------------- */

static const char *const step_keys[] = {"thought", "log",   "tool",        "edit", "append",
                                        "delete",  "sleep", "wait_prompt", "exit", "fail",
                                        "say",     "rename",  "usage",       NULL};

static const char *step_kind(const json_t *step) {
    for (const char *const *k = step_keys; *k; k++)
        if (json_object_get(step, *k))
            return *k;
    return NULL;
}

/* A workspace-relative path that stays inside the workspace. */
static bool safe_path(const char *p) {
    if (!p || !*p || p[0] == '/' || strlen(p) > 1024)
        return false;
    for (const char *s = p; *s;) {
        size_t n = strcspn(s, "/");
        if (n == 2 && s[0] == '.' && s[1] == '.')
            return false;
        s += n;
        if (*s == '/')
            s++;
    }
    return true;
}

int agent_scenario_check(const json_t *scenario, const char *path, struct ah_problem *p) {
    if (!json_is_array(scenario)) {
        problem_field(p, path, "must be an array of steps");
        return AH_E_INVAL;
    }
    if (json_array_size(scenario) > SCENARIO_MAX_STEPS) {
        problem_field(p, path, "has more than %d steps", SCENARIO_MAX_STEPS);
        return AH_E_INVAL;
    }
    int rc = 0;
    size_t i;
    json_t *step;
    json_array_foreach(scenario, i, step) {
        char sp[128];
        snprintf(sp, sizeof(sp), "%s[%zu]", path, i);
        const char *kind = json_is_object(step) ? step_kind(step) : NULL;
        if (!kind) {
            problem_field(p, sp, "must be an object with one of thought, log, tool, edit, append, "
                                 "delete, rename, sleep, wait_prompt, exit, fail, say, usage");
            rc = AH_E_INVAL;
            continue;
        }
        json_t *v = json_object_get(step, kind);
        bool ok = true;
        if (!strcmp(kind, "thought") || !strcmp(kind, "log") || !strcmp(kind, "tool") ||
            !strcmp(kind, "fail") || !strcmp(kind, "say"))
            ok = json_is_string(v);
        else if (!strcmp(kind, "edit") || !strcmp(kind, "append") || !strcmp(kind, "delete"))
            ok = json_is_string(v) && safe_path(json_string_value(v)) &&
                 (!strcmp(kind, "delete") || json_is_string(json_object_get(step, "content")));
        else if (!strcmp(kind, "rename")) /* {"rename": old, "to": new} */
            ok = json_is_string(v) && safe_path(json_string_value(v)) &&
                 json_is_string(json_object_get(step, "to")) &&
                 safe_path(json_string_value(json_object_get(step, "to")));
        else if (!strcmp(kind, "sleep"))
            ok = json_is_integer(v) && json_integer_value(v) >= 0 &&
                 json_integer_value(v) <= 3600000;
        else if (!strcmp(kind, "exit"))
            ok = json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < 256;
        else if (!strcmp(kind, "wait_prompt"))
            ok = json_is_true(v);
        else if (!strcmp(kind, "usage")) { /* the end-of-turn token report a real agent makes */
            json_t *in = json_object_get(v, "input_tokens"), *out = json_object_get(v, "output_tokens");
            ok = json_is_object(v) && json_is_integer(in) && json_integer_value(in) >= 0 &&
                 json_integer_value(in) < (1LL << 40) && json_is_integer(out) &&
                 json_integer_value(out) >= 0 && json_integer_value(out) < (1LL << 40);
        }
        json_t *ms = json_object_get(step, "ms");
        if (ms && (!json_is_integer(ms) || json_integer_value(ms) < 0 ||
                   json_integer_value(ms) > 3600000))
            ok = false;
        if (!ok) {
            problem_field(p, sp, "is not a valid %s step (see DECISIONS.md D20)", kind);
            rc = AH_E_INVAL;
        }
    }
    return rc;
}

/* errno of a refused resolution: the path leads out of the workspace (a symlink, issue 10 item
 * 17) → AH_E_FORBIDDEN, which the caller words as such. */
static int path_error(int e) {
    return e == EXDEV || e == ELOOP ? AH_E_FORBIDDEN : ah_err_from_errno(e);
}

/* The directory holding `path` (workspace-relative), made as needed, each level resolved
 * beneath the workspace: a planted symlink to elsewhere is refused, never followed. An O_PATH
 * fd or a negative AH_E_*. */
static int parent_beneath(int root, const char *path) {
    char dir[2048];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) {
        int fd = fcntl(root, F_DUPFD_CLOEXEC, 0);
        return fd >= 0 ? fd : ah_err_from_errno(errno);
    }
    *slash = '\0';
    int parent = fcntl(root, F_DUPFD_CLOEXEC, 0);
    for (char *p = dir; parent >= 0 && p;) { /* one level at a time: "a", "a/b", … */
        char *next = strchr(p, '/');
        if (next)
            *next = '\0';
        int fd = open_beneath(root, dir, O_PATH | O_DIRECTORY, 0, false);
        if (fd < 0 && errno == ENOENT) {
            const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
            if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST) {
                int e = errno;
                close(parent);
                return path_error(e);
            }
            fd = open_beneath(root, dir, O_PATH | O_DIRECTORY, 0, false);
        }
        int e = errno;
        close(parent);
        if (fd < 0)
            return path_error(e);
        parent = fd;
        if (next)
            *next = '/';
        p = next ? next + 1 : NULL;
    }
    return parent >= 0 ? parent : ah_err_from_errno(errno);
}

/* edit/append/delete of the scripted agent: confined to the workspace (the current directory)
 * with openat2(RESOLVE_BENEATH), so neither the scenario nor a link in the workspace can make
 * it write elsewhere. */
static int write_step(const char *kind, const char *path, const char *content) {
    int root = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return ah_err_from_errno(errno);
    int parent = parent_beneath(root, path);
    if (parent < 0) {
        close(root);
        return parent;
    }
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (!strcmp(kind, "delete")) { /* removes a link itself, never its target */
        int rc = unlinkat(parent, name, 0) < 0 ? path_error(errno) : 0;
        close(parent);
        close(root);
        return rc;
    }
    close(parent);
    int fd = open_beneath(root, path,
                          O_WRONLY | O_CREAT | (strcmp(kind, "append") ? O_TRUNC : O_APPEND),
                          0644, false);
    int open_errno = errno;
    close(root);
    if (fd < 0)
        return path_error(open_errno);
    size_t n = strlen(content);
    ssize_t w = write(fd, content, n);
    int e = errno;
    close(fd);
    return w == (ssize_t)n ? 0 : ah_err_from_errno(w < 0 ? e : EIO);
}

/* rename of the scripted agent: both ends resolved beneath the workspace like write_step (the
 * new name's directories are made); a link is renamed itself, never followed. */
static int rename_step(const char *from, const char *to) {
    int root = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return ah_err_from_errno(errno);
    int pf = parent_beneath(root, from);
    int pt = pf < 0 ? pf : parent_beneath(root, to);
    close(root);
    int rc = pf < 0 ? pf : pt;
    if (rc >= 0) {
        const char *nf = strrchr(from, '/') ? strrchr(from, '/') + 1 : from;
        const char *nt = strrchr(to, '/') ? strrchr(to, '/') + 1 : to;
        rc = renameat(pf, nf, pt, nt) < 0 ? path_error(errno) : 0;
    }
    if (pf >= 0)
        close(pf);
    if (pt >= 0)
        close(pt);
    return rc;
}

static int run_scripted(const json_t *scenario, const char *prompt) {
    AH_AUTO(json_decrefp) json_t *fallback = NULL;
    if (!scenario) {
        fallback = json_pack("[{s:s}, {s:s, s:{s:s}, s:s, s:i}, {s:s, s:s}, {s:s}]", "thought",
                             "Reading the task and planning a small change.", "tool",
                             "read_prompt", "args", "source", "prompt-file", "output",
                             prompt, "ms", 20, "edit", "AGENT_NOTES.md", "content", prompt, "log",
                             "Wrote AGENT_NOTES.md.");
        /* the edit step wants content: put the prompt, followed by a newline */
        json_t *edit = json_array_get(fallback, 2);
        AH_AUTOFREE char *content = NULL;
        if (edit && asprintf(&content, "# Notes\n\n%s\n", prompt) >= 0)
            json_object_set_new(edit, "content", json_string(content));
        scenario = fallback;
    }
    struct ah_problem p = {0};
    if (agent_scenario_check(scenario, "scenario", &p) < 0) {
        emit_log("error", "the scenario is invalid: %s", p.detail);
        problem_clear(&p);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("scripted agent: %zu steps\n", json_array_size(scenario));
    size_t i;
    json_t *step;
    json_array_foreach(scenario, i, step) {
        const char *kind = step_kind(step);
        json_t *v = json_object_get(step, kind);
        if (!strcmp(kind, "thought")) {
            printf("thinking: %s\n", json_string_value(v));
            emit(json_pack("{s:s, s:O}", "type", "thought", "thought", v));
        } else if (!strcmp(kind, "say")) { /* the agent's reply in the chat (issue 15) */
            printf("%s\n", json_string_value(v));
            emit(json_pack("{s:s, s:s, s:O}", "type", "chat_message", "role", "assistant",
                           "content", v));
        } else if (!strcmp(kind, "usage")) { /* as claude-code's result, codex's turn.completed */
            printf("usage: %lld in, %lld out\n",
                   (long long)json_integer_value(json_object_get(v, "input_tokens")),
                   (long long)json_integer_value(json_object_get(v, "output_tokens")));
            emit(json_pack("{s:s, s:O, s:O}", "type", "usage", "input_tokens",
                           json_object_get(v, "input_tokens"), "output_tokens",
                           json_object_get(v, "output_tokens")));
        } else if (!strcmp(kind, "log")) {
            const char *level = json_string_value(json_object_get(step, "level"));
            if (!level || log_level_parse(level, &(enum log_level){0}) < 0)
                level = "info";
            printf("%s\n", json_string_value(v));
            emit(json_pack("{s:s, s:s, s:O, s:n}", "type", "log", "level", level, "message", v,
                           "tool_execution_id"));
        } else if (!strcmp(kind, "tool")) {
            char ulid[ULID_LEN + 1], id[64];
            ulid_new(ulid);
            snprintf(id, sizeof(id), "tool_exec_%s", ulid); /* D2 */
            json_t *args = json_object_get(step, "args");
            const char *output = json_string_value(json_object_get(step, "output"));
            printf("$ %s\n", json_string_value(v));
            emit(json_pack("{s:s, s:O, s:o, s:s, s:s}", "type", "tool_use", "tool_name", v,
                           "tool_args", json_is_object(args) ? json_incref(args) : json_object(),
                           "tool_execution_id", id, "status", "started"));
            if (!tool_progress(v, id, output, json_integer_value(json_object_get(step, "ms"))) &&
                output && *output)
                printf("%s\n", output);
            emit(json_pack("{s:s, s:O, s:s, s:s, s:s, s:s}", "type", "tool_result", "tool_name",
                           v, "tool_output", output ? output : "", "tool_execution_id", id,
                           "status", "completed", "tool_status", "success")); /* D26 */
        } else if (!strcmp(kind, "edit") || !strcmp(kind, "append") || !strcmp(kind, "delete")) {
            const char *path = json_string_value(v);
            printf("%s %s\n", !strcmp(kind, "delete") ? "deleting" : "editing", path);
            int rc = write_step(kind, path,
                                json_string_value(json_object_get(step, "content")));
            json_t *claim = json_object_get(step, "claim");
            if (rc == 0 && json_is_object(claim)) /* the edit as an agent's tool reports it */
                emit(json_pack("{s:s, s:s, s:I, s:I, s:s, s:s}", "type", "file_edit", "file_path",
                               path, "lines_added",
                               json_integer_value(json_object_get(claim, "lines_added")),
                               "lines_removed",
                               json_integer_value(json_object_get(claim, "lines_removed")),
                               "status", "completed", "description", "claimed by the agent"));
            if (rc < 0) {
                emit_log("error", "cannot %s %s: %s", kind, path,
                         rc == AH_E_FORBIDDEN ? "the path leads outside the workspace"
                                              : ah_strerror(rc));
                return 1;
            }
        } else if (!strcmp(kind, "rename")) {
            const char *from = json_string_value(v);
            const char *to = json_string_value(json_object_get(step, "to"));
            printf("renaming %s to %s\n", from, to);
            int rc = rename_step(from, to);
            if (rc < 0) {
                emit_log("error", "cannot rename %s to %s: %s", from, to,
                         rc == AH_E_FORBIDDEN ? "the path leads outside the workspace"
                                              : ah_strerror(rc));
                return 1;
            }
        } else if (!strcmp(kind, "sleep")) {
            sleep_ms(json_integer_value(v));
        } else if (!strcmp(kind, "wait_prompt")) {
            printf("waiting for a prompt…\n");
            char line[AH_LIMIT_PROMPT + 2];
            if (!fgets(line, sizeof(line), stdin)) {
                emit_log("error", "the terminal closed while waiting for a prompt");
                return 1;
            }
            line[strcspn(line, "\r\n")] = '\0';
            emit_log("info", "received prompt: %s", line);
        } else if (!strcmp(kind, "exit")) {
            int code = (int)json_integer_value(v);
            printf("exiting with %d\n", code);
            if (code)
                emit_log("error", "the scenario exited with code %d", code);
            return code;
        } else if (!strcmp(kind, "fail")) {
            emit_log("error", "%s", json_string_value(v));
            return 1;
        }
    }
    printf("done\n");
    return 0;
}

/* ---- adapters -------------------------------------------------------------------------------- */

/* One line for the terminal from an event (the recording is what a human replays). */
static void render(const json_t *ev) {
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!type)
        return;
    if (!strcmp(type, "thought"))
        printf("thinking: %.300s\n", json_string_value(json_object_get(ev, "thought")));
    else if (!strcmp(type, "log"))
        printf("%.500s\n", json_string_value(json_object_get(ev, "message")));
    else if (!strcmp(type, "chat_message"))
        printf("%.2000s\n", json_string_value(json_object_get(ev, "content")));
    else if (!strcmp(type, "tool_use"))
        printf("$ %s\n", json_string_value(json_object_get(ev, "tool_name")));
    else if (!strcmp(type, "tool_result"))
        printf("  %s (%s)\n", json_string_value(json_object_get(ev, "tool_name")),
               json_string_value(json_object_get(ev, "status")));
    else if (!strcmp(type, "file_edit"))
        printf("edited %s\n", json_string_value(json_object_get(ev, "file_path")));
}

static void emit_all(json_t *events) {
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev) {
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (turn_model && type && (!strcmp(type, "usage") || !strcmp(type, "chat_message")))
            json_object_set_new(ev, "model", json_string(turn_model));
        render(ev);
        emit(json_incref(ev));
    }
    json_array_clear(events);
}

/* One run of the CLI. ret_conversation (128 bytes, may be NULL) gets the conversation id the
 * run named, when it named one. 0 when the run succeeded, else 1 (or 127: no binary). */
static int run_adapter(const struct agent_adapter *ad, const struct adapter_launch *l,
                       char *ret_conversation) {
    char **argv = NULL;
    int rc = ad->build_argv(l, &argv);
    if (rc < 0) {
        emit_log("error", "cannot build the %s command line: %s", ad->type, ah_strerror(rc));
        return 1;
    }
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0) {
        adapter_argv_free(argv);
        emit_log("error", "pipe: %s", strerror(errno));
        return 1;
    }
    /* A stop sends SIGTERM to the whole process group (D14). The agent CLI decides how to wrap
     * up; we stay to report what it does until it exits (or the grace period's SIGKILL), and
     * note the stop so that no further turn starts. */
    struct sigaction sa = {.sa_handler = note_stop, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawnattr_init(&attr);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(out[1]);
    if (err) {
        close(out[0]);
        if (err == ENOENT)
            emit_log("error", "the %s agent binary '%s' was not found in PATH", ad->type, argv[0]);
        else
            emit_log("error", "cannot run %s: %s", argv[0], strerror(err));
        adapter_argv_free(argv);
        return err == ENOENT ? 127 : 1;
    }
    adapter_argv_free(argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    void *state = ad->state_new();
    json_t *events = json_array();
    enum adapter_outcome outcome = ADAPTER_RUNNING;
    FILE *in = fdopen(out[0], "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (in && state && events && (n = getline(&line, &cap, in)) >= 0) {
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        ad->line(state, line, len, events, &outcome);
        emit_all(events);
    }
    free(line);
    if (in)
        fclose(in);
    else
        close(out[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (state && events) {
        outcome = ad->finish(state, code, events);
        emit_all(events);
    }
    const char *conv = state && ad->conversation ? ad->conversation(state) : NULL;
    if (conv && ret_conversation)
        snprintf(ret_conversation, 128, "%s", conv);
    if (state)
        ad->state_free(state);
    json_decref(events);
    if (outcome != ADAPTER_SUCCEEDED) {
        emit_log("error", "the %s agent did not finish successfully (exit code %d)", ad->type,
                 code);
        return 1;
    }
    return 0;
}

/* ---- further turns (issue 15) ----------------------------------------------------------------- */

#define TURN_WAIT_MAX_S 86400
#define INPUT_LINE_MAX (256 * 1024) /* a message of AH_LIMIT_PROMPT bytes, escaped, and a model */

struct input {
    int fd;
    struct ah_buf buf;
    bool eof, skip;
};

/* The next line of the input pipe as a JSON object: 1 and *ret (caller frees), 0 when none came
 * before deadline (monotonic ms; 0: only what is there now), -1 at its end or on a stop. */
static int input_next(struct input *in, int64_t deadline, json_t **ret) {
    for (;;) {
        char *nl = in->buf.p ? memchr(in->buf.p, '\n', in->buf.n) : NULL;
        if (nl) {
            size_t len = (size_t)(nl - in->buf.p);
            json_error_t e;
            json_t *j = json_loadb(in->buf.p, len, 0, &e);
            memmove(in->buf.p, nl + 1, in->buf.n - len - 1);
            in->buf.n -= len + 1;
            in->buf.p[in->buf.n] = '\0';
            if (json_is_object(j)) {
                *ret = j;
                return 1;
            }
            json_decref(j);
            emit_log("warn", "ignored an input line that is not a JSON object");
            continue;
        }
        if (in->eof)
            return -1;
        /* a stop between the check and the wait is not lost: ppoll unblocks it atomically */
        sigset_t term, old;
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        sigaddset(&term, SIGINT);
        sigprocmask(SIG_BLOCK, &term, &old);
        if (stop_requested) {
            sigprocmask(SIG_SETMASK, &old, NULL);
            return -1;
        }
        int64_t left = deadline - time_mono_ms();
        struct timespec ts = {.tv_sec = left > 0 ? left / 1000 : 0,
                              .tv_nsec = left > 0 ? (left % 1000) * 1000000L : 0};
        struct pollfd pfd = {.fd = in->fd, .events = POLLIN};
        int ready = ppoll(&pfd, 1, &ts, &old);
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            return 0;
        char chunk[65536];
        ssize_t r = read(in->fd, chunk, sizeof(chunk));
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0) {
            in->eof = true;
            continue;
        }
        const char *p = chunk;
        size_t n = (size_t)r;
        if (in->skip) { /* the rest of an oversized line goes, up to its newline */
            const char *end = memchr(p, '\n', n);
            if (!end)
                continue;
            in->skip = false;
            n -= (size_t)(end + 1 - p);
            p = end + 1;
        }
        if (ah_buf_append(&in->buf, p, n) < 0) {
            emit_log("error", "out of memory reading the input");
            return -1;
        }
        if (in->buf.n > INPUT_LINE_MAX && !memchr(in->buf.p, '\n', in->buf.n)) {
            emit_log("warn", "dropped an input line of over %d bytes", INPUT_LINE_MAX);
            in->buf.n = 0;
            in->buf.p[0] = '\0';
            in->skip = true;
        }
    }
}

/* After the first turn: each message of the input pipe is a turn that resumes the CLI's
 * conversation `conv` (see the top). rc is the first turn's result, and the result. */
static int run_turns(const struct agent_adapter *ad, const struct adapter_launch *l, int fd,
                     int64_t wait_s, char conv[128], int rc) {
    struct input in = {.fd = fd, .buf = {.max = INPUT_LINE_MAX + 2 * 65536}};
    char model[AH_LIMIT_NAME + 1] = "";
    if (l->model && *l->model)
        snprintf(model, sizeof(model), "%s", l->model);
    for (int turn = 2; rc == 0 && !stop_requested; turn++) {
        json_t *msg = NULL;
        int got = input_next(&in, 0, &msg);
        if (got == 0 && wait_s > 0) {
            emit_log("info", "turn %d done; waiting up to %lld s for the next message", turn - 1,
                     (long long)wait_s);
            int64_t deadline = time_mono_ms() + wait_s * 1000;
            got = input_next(&in, deadline, &msg);
            /* a model switch alone is taken and the wait goes on */
            while (got == 1 && !json_is_string(json_object_get(msg, "text"))) {
                const char *m = json_string_value(json_object_get(msg, "model"));
                if (m && *m && strlen(m) < sizeof(model)) {
                    snprintf(model, sizeof(model), "%s", m);
                    emit_log("info", "the next turn runs with model %s", model);
                }
                json_decref(msg);
                msg = NULL;
                got = input_next(&in, deadline, &msg);
            }
            if (got == 0)
                emit_log("info", "no message in %lld s: the session ends", (long long)wait_s);
        }
        if (got == 1 && !json_is_string(json_object_get(msg, "text"))) { /* switch, no turn yet */
            const char *m = json_string_value(json_object_get(msg, "model"));
            if (m && *m && strlen(m) < sizeof(model))
                snprintf(model, sizeof(model), "%s", m);
            json_decref(msg);
            turn--;
            continue;
        }
        if (got != 1)
            break;
        const char *m = json_string_value(json_object_get(msg, "model"));
        if (m && *m && strlen(m) < sizeof(model))
            snprintf(model, sizeof(model), "%s", m);
        if (!conv[0]) {
            emit_log("error", "cannot run turn %d: the %s CLI named no conversation to resume",
                     turn, ad->type);
            json_decref(msg);
            rc = 1;
            break;
        }
        char resume[128];
        snprintf(resume, sizeof(resume), "%s", conv);
        struct adapter_launch next = *l;
        next.prompt = json_string_value(json_object_get(msg, "text"));
        next.model = model[0] ? model : NULL;
        next.resume_id = resume;
        emit_log("info", "turn %d: resuming %s conversation %s with model %s", turn, ad->type,
                 resume, model[0] ? model : "(the CLI's default)");
        printf("--- turn %d ---\n", turn);
        turn_model = next.model;
        rc = run_adapter(ad, &next, conv);
        json_decref(msg);
    }
    ah_buf_clear(&in.buf);
    return rc;
}

/* agents[].settings.chat_idle_seconds, within 0..TURN_WAIT_MAX_S (0 when not given). */
static int64_t idle_seconds(const json_t *settings) {
    json_int_t v = json_integer_value(json_object_get(settings, "chat_idle_seconds"));
    return v < 0 ? 0 : v > TURN_WAIT_MAX_S ? TURN_WAIT_MAX_S : v;
}

/* ---- resuming (session branches) -------------------------------------------------------------- */

#define RESUME_FILE_MAX (64u * 1024 * 1024) /* the transcript the server wrote, and what we write */

/* A session branch: the CLI's saved conversation holding the parent's transcript (the server's
 * `from` file) goes where the CLI looks for it under $HOME — the session's private home in the
 * sandbox — and its new id into ret_id (a random UUID: the CLI resumes by that id). Written
 * here, inside the sandbox, because only here are the home and the workspace's path the CLI's. */
static int resume_prepare(const struct agent_adapter *ad, const char *from, const char *cwd,
                          char ret_id[37]) {
    if (!ad->resume_file) {
        emit_log("error", "the %s agent cannot resume a conversation", ad->type);
        return AH_E_NOTIMPL;
    }
    const char *home = getenv("HOME");
    if (!home || home[0] != '/') {
        emit_log("error", "cannot resume the conversation: HOME is not set");
        return AH_E_INVAL;
    }
    AH_AUTOFREE char *text = NULL;
    size_t len = 0;
    int rc = read_file(from, RESUME_FILE_MAX, &text, &len);
    json_error_t e;
    AH_AUTO(json_decrefp) json_t *t = rc == 0 ? json_loadb(text, len, 0, &e) : NULL;
    if (!json_is_object(t)) {
        emit_log("error", "cannot read the branch's transcript %s: %s", from,
                 rc < 0 ? ah_strerror(rc) : e.text);
        return rc < 0 ? rc : AH_E_INVAL;
    }
    unsigned char r[16];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        emit_log("error", "getrandom: %s", strerror(errno));
        return AH_E_IO;
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(ret_id, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
             r[13], r[14], r[15]);
    struct ah_buf file = {.max = RESUME_FILE_MAX};
    AH_AUTOFREE char *rel = NULL;
    rc = ad->resume_file(t, cwd, ret_id, time_now_ms(), &file, &rel);
    char path[8400];
    if (rc == 0 && (size_t)snprintf(path, sizeof(path), "%s/%s", home, rel) >= sizeof(path))
        rc = AH_E_TOOLARGE;
    if (rc == 0) {
        char *slash = strrchr(path, '/');
        *slash = '\0';
        rc = make_dirs(path, 0700);
        *slash = '/';
    }
    if (rc == 0)
        rc = write_file(path, file.p ? file.p : "", file.n, 0600);
    ah_buf_clear(&file);
    if (rc < 0)
        emit_log("error", "cannot write the conversation the %s agent resumes: %s", ad->type,
                 ah_strerror(rc));
    return rc;
}

/* ---- main ------------------------------------------------------------------------------------ */

static const char usage[] =
    "usage: ah agent start --agent TYPE [OPTIONS]\n\n"
    "Runs an agent non-interactively and reports its events on AH_EVENTS_FD.\n\n"
    "  --agent TYPE          scripted, claude-code (claude), codex, gemini, opencode, or a custom\n"
    "                        agent given with --command/--format\n"
    "  --cwd DIR             the workspace (default: the current directory)\n"
    "  --prompt TEXT         the task; or --prompt-file FILE\n"
    "  --settings-file FILE  agents[].settings of the task (JSON); scripted reads its scenario\n"
    "  --scenario FILE       scripted: a JSON array of steps (D20)\n"
    "  --model MODEL         the model for adapters that take one\n"
    "  --command CMD --format text|jsonl   a custom agent\n"
    "  --resume-from FILE    a session branch: the CLI resumes the conversation in FILE\n"
    "                        ({prompt, events[]}: the parent's, up to the branch point)\n"
    "  --non-interactive     accepted; every run is non-interactive\n";

int agent_start_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"agent", required_argument, 0, 'a'},       {"cwd", required_argument, 0, 'c'},
        {"prompt", required_argument, 0, 'p'},      {"prompt-file", required_argument, 0, 'P'},
        {"settings-file", required_argument, 0, 's'}, {"scenario", required_argument, 0, 'S'},
        {"model", required_argument, 0, 'm'},       {"command", required_argument, 0, 'x'},
        {"format", required_argument, 0, 'f'},      {"non-interactive", no_argument, 0, 'n'},
        {"from-snapshot", required_argument, 0, 'F'}, {"help", no_argument, 0, 'h'},
        {"resume-from", required_argument, 0, 'R'},
        {0, 0, 0, 0}};
    const char *agent = NULL, *cwd = NULL, *prompt = NULL, *prompt_file = NULL, *settings_file = NULL,
               *scenario_file = NULL, *model = NULL, *command = NULL, *format = NULL,
               *resume_from = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': agent = optarg; break;
        case 'c': cwd = optarg; break;
        case 'p': prompt = optarg; break;
        case 'P': prompt_file = optarg; break;
        case 's': settings_file = optarg; break;
        case 'S': scenario_file = optarg; break;
        case 'm': model = optarg; break;
        case 'x': command = optarg; break;
        case 'f': format = optarg; break;
        case 'R': resume_from = optarg; break;
        case 'n': case 'F': break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!agent) {
        fputs("ah agent start: --agent is required\n", stderr);
        return 2;
    }
    const char *fd_env = getenv("AH_EVENTS_FD");
    int64_t fdv;
    if (fd_env && parse_int64(fd_env, 0, 65535, &fdv) == 0)
        events_fd = (int)fdv;
    signal(SIGPIPE, SIG_IGN);
    /* A sandbox starts us with SIGTERM blocked (or ignored), for bubblewrap's sake: it must
     * outlive a stop's SIGTERM so that we can wrap up (D14, D52). From here on the signal is
     * ours, as without a sandbox: no `env --default-signal` process between us and it. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigaddset(&term, SIGINT);
    sigaddset(&term, SIGHUP);
    sigprocmask(SIG_UNBLOCK, &term, NULL);

    AH_AUTOFREE char *prompt_buf = NULL;
    size_t len;
    if (prompt_file) {
        int rc = read_file(prompt_file, AH_LIMIT_PROMPT * 4, &prompt_buf, &len);
        if (rc < 0) {
            emit_log("error", "cannot read the prompt file %s: %s", prompt_file, ah_strerror(rc));
            return 2;
        }
        prompt = prompt_buf;
    }
    if (!prompt)
        prompt = "";
    AH_AUTO(json_decrefp) json_t *settings = NULL;
    if (settings_file) {
        json_error_t e;
        settings = json_load_file(settings_file, 0, &e);
        if (!json_is_object(settings)) {
            emit_log("error", "cannot read the settings file %s: %s", settings_file, e.text);
            return 2;
        }
    }
    if (cwd && chdir(cwd) < 0) {
        emit_log("error", "cannot enter the workspace %s: %s", cwd, strerror(errno));
        return 2;
    }
    if (!strcmp(agent, "scripted")) {
        AH_AUTO(json_decrefp) json_t *scenario = NULL;
        if (scenario_file) {
            json_error_t e;
            if (!(scenario = json_load_file(scenario_file, 0, &e))) {
                emit_log("error", "cannot read the scenario %s: %s", scenario_file, e.text);
                return 2;
            }
        }
        return run_scripted(scenario ? scenario : json_object_get(settings, "scenario"), prompt);
    }
    const struct agent_adapter *ad = NULL;
    if (command) {
        ad = format && !strcmp(format, "jsonl") ? &adapter_custom_jsonl : &adapter_custom_text;
    } else if (!(ad = adapter_find(agent))) {
        emit_log("error", "unknown agent type %s", agent);
        return 2;
    }
    char here[4096];
    struct adapter_launch l = {
        .binary = command ? command : ad->binary,
        .prompt = prompt,
        .cwd = getcwd(here, sizeof(here)) ? here : ".",
        .model = model ? model : json_string_value(json_object_get(settings, "model")),
        .settings = settings,
    };
    char resume_id[37];
    if (resume_from && !command) {
        if (resume_prepare(ad, resume_from, l.cwd, resume_id) < 0)
            return 2;
        l.resume_id = resume_id;
    }
    /* further turns: an adapter that resumes its conversation, given an input pipe */
    const char *input_env = getenv("AH_INPUT_FD");
    int64_t input_fd = -1;
    if (command || !ad->conversation || !input_env ||
        parse_int64(input_env, 0, 65535, &input_fd) < 0)
        return run_adapter(ad, &l, NULL);
    fcntl((int)input_fd, F_SETFD, FD_CLOEXEC); /* the CLI has no business with it */
    turn_model = l.model && *l.model ? l.model : NULL;
    char conv[128] = "";
    int rc = run_adapter(ad, &l, conv);
    return run_turns(ad, &l, (int)input_fd, idle_seconds(settings), conv, rc);
}
