/*
 * tm_mock.c — the mock task manager: sessions, drafts and repositories in memory, driven by an
 * ah_clock, so tests can run long scenarios on a virtual clock in a few milliseconds.
 *
 * Sessions are lazy state machines. Each one knows its status, the time of its next automatic
 * step (next_at, NEVER while it waits for a prompt, is paused or has ended) and its program (a
 * D20 scenario). tick(s, now) performs every step due by `now`, each at its own scheduled time,
 * so events carry exact, deterministic timestamps whoever looks and whenever:
 *
 *   queued ──queue_ms──▶ provisioning ──provision_ms──▶ running ──program…──▶ completed|failed
 *   running ──pause──▶ pausing ──transition_ms──▶ paused ──resume──▶ resuming ──▶ running
 *   running|paused ──stop──▶ stopping ──transition_ms──▶ stopped
 *   any non-terminal ──cancel──▶ cancelled (at once)
 *
 * (m_control performs the verbs; tick performs the timed arrows.) While paused the program's
 * clock stands still: the time left until its next step is kept in `remaining`.
 *
 * Streaming: a streamer delivers the session's events after its cursor, then sleeps on the
 * mock's condition variable; a clock timer armed at the session's next_at (and any control
 * verb) wakes it. Timer records live in a list owned by the mock; a firing timer unlinks and
 * frees its own record, and destroy cancels the rest (waiting for a callback in flight).
 *
 * Everything is guarded by one mutex; user callbacks run without it. Lock order:
 * mock → clock (timers are armed under the mock lock; clocks run callbacks unlocked).
 */
#include <pthread.h>
#include <string.h>

#include "client_internal.h"

#define NEVER INT64_MAX
#define RECENT_EVENTS 3

struct mtimer {
    struct mock *m;
    struct msession *s;
    int64_t deadline;
    uint64_t id;
    struct mtimer *next;
};

struct msession {
    char id[ULID_LEN + 1];
    char task_id[ULID_LEN + 1];
    json_t *view; /* prompt, repo, runtime, agent, delivery, labels, tenantId, projectId */
    char agent_type[AH_LIMIT_NAME + 1];
    enum ah_session_status status;
    int64_t created, updated, started, ended;
    json_t *program; /* array of steps */
    size_t pc;
    int64_t next_at;
    int64_t remaining;      /* paused: time left to the next step (NEVER when waiting a prompt) */
    json_t *pending_result; /* the tool_result a tool step emits after its `ms` */
    bool waiting_prompt;
    const char *error;
    bool has_exit;
    int exit_code;
    json_t *edited; /* {path: lines} of files the program wrote */
    int64_t lines_added, lines_removed;
    json_t *events; /* emitted events; seq = index + 1 */
    int64_t armed_at;
    unsigned tool_counter;
    char error_buf[256];
};

struct mdraft {
    char id[ULID_LEN + 8];
    json_t *body;
    int64_t created, updated;
};

struct mock {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    ah_clock *clock;
    bool own_clock;
    struct ah_mock_options o;
    char tenant[AH_LIMIT_NAME + 1];
    struct msession **sessions;
    size_t n_sessions, cap_sessions;
    struct mdraft **drafts;
    size_t n_drafts, cap_drafts;
    json_t *repos;    /* array of repository objects */
    json_t *branches; /* {repo id: [names]} */
    uint64_t counter;
    int fail_code[AH_TM_OP_COUNT_];
    int fail_count[AH_TM_OP_COUNT_];
    int64_t calls[AH_TM_OP_COUNT_];
    struct mtimer *timers;
};

static const struct ah_task_manager_ops mock_ops;

/* ---- helpers ----------------------------------------------------------------------------------
 */

static int64_t now_of(struct mock *m) {
    return ah_clock_now_ms(m->clock);
}

/* A deterministic ULID: 10 characters of time, 16 of a counter (under the lock). */
static void mock_id(struct mock *m, int64_t now, char out[ULID_LEN + 1]) {
    static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t t = (uint64_t)(now < 0 ? 0 : now) & ((1ULL << 48) - 1);
    uint64_t n = ++m->counter;
    for (int i = 9; i >= 0; i--, t >>= 5)
        out[i] = b32[t & 31];
    for (int i = 25; i >= 10; i--, n >>= 5)
        out[i] = b32[n & 31];
    out[ULID_LEN] = '\0';
}

/* Fills reterr with p as the server's Problem would carry it; clears p. */
static int fail_problem(struct ah_api_error *reterr, struct ah_problem *p) {
    int code = p->code;
    problem_from_core(reterr, p);
    problem_clear(p);
    return code;
}

/* Fills reterr as the server's Problem for code would look. */
static int fail(struct ah_api_error *reterr, int code, const char *current, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct ah_api_error *reterr, int code, const char *current, const char *fmt, ...) {
    struct ah_problem p = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p.detail, sizeof(p.detail), fmt, ap);
    va_end(ap);
    if (current)
        problem_extra(&p, "currentStatus", json_string(current));
    return fail_problem(reterr, &p);
}

static int oom(struct ah_api_error *reterr) {
    problem_local(reterr, AH_E_NOMEM, "out of memory");
    return AH_E_NOMEM;
}

/* Counts the call, applies injected failures and the call latency. */
static int enter(struct mock *m, enum ah_tm_op op, struct ah_api_error *reterr) {
    pthread_mutex_lock(&m->mu);
    m->calls[op]++;
    int code = 0;
    if (m->fail_count[op] != 0) {
        code = m->fail_code[op];
        if (m->fail_count[op] > 0)
            m->fail_count[op]--;
    }
    int64_t latency = m->o.call_latency_ms;
    pthread_mutex_unlock(&m->mu);
    if (code)
        return fail(reterr, code, NULL, "injected failure: %s", ah_strerror(code));
    if (latency > 0)
        ah_clock_sleep_ms(m->clock, latency);
    return 0;
}

static struct msession *find_session(struct mock *m, const char *id) {
    for (size_t i = 0; i < m->n_sessions; i++)
        if (strcmp(m->sessions[i]->id, id) == 0)
            return m->sessions[i];
    return NULL;
}

/* ---- the session state machine ----------------------------------------------------------------
 */

/* Appends an event (stolen) stamped with seq, sessionId and ts. 0 or AH_E_NOMEM. */
static int emit(struct msession *s, int64_t t, json_t *ev) {
    char ts[TIME_RFC3339_LEN + 1];
    time_format(t, ts);
    if (!ev)
        return AH_E_NOMEM;
    if (json_object_set_new(ev, "seq", json_integer((json_int_t)json_array_size(s->events) + 1)) ||
        json_object_set_new(ev, "sessionId", json_string(s->id)) ||
        json_object_set_new(ev, "ts", json_string(ts))) {
        json_decref(ev);
        return AH_E_NOMEM;
    }
    if (json_array_append_new(s->events, ev)) /* steals ev even when it fails */
        return AH_E_NOMEM;
    s->updated = t;
    return 0;
}

static void set_status(struct msession *s, int64_t t, enum ah_session_status st) {
    s->status = st;
    emit(s, t, json_pack("{s:s, s:s}", "type", "status", "status", ah_session_status_name(st)));
    if (ah_session_status_terminal(st)) {
        s->ended = t;
        s->next_at = NEVER;
        s->waiting_prompt = false;
        json_decref(s->pending_result);
        s->pending_result = NULL;
    }
}

static void finish(struct msession *s, int64_t t, int exit_code, const char *error) {
    s->has_exit = true;
    s->exit_code = exit_code;
    if (error) {
        snprintf(s->error_buf, sizeof(s->error_buf), "%s", error);
        s->error = s->error_buf;
    }
    set_status(s, t, exit_code == 0 && !error ? AH_STATUS_COMPLETED : AH_STATUS_FAILED);
}

static int64_t count_lines(const char *text) {
    if (!text || !*text)
        return 0;
    int64_t n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n + (text[strlen(text) - 1] != '\n');
}

static int64_t step_ms_of(const struct mock *m, const json_t *step, const char *key) {
    json_t *v = json_object_get(step, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v)
                                                            : m->o.step_ms;
}

/* Runs the program's next step at time t (status running). */
static void run_step(struct mock *m, struct msession *s, int64_t t) {
    if (s->pending_result) {
        emit(s, t, s->pending_result);
        s->pending_result = NULL;
        s->next_at = t + m->o.step_ms;
        return;
    }
    if (s->pc >= json_array_size(s->program)) {
        finish(s, t, 0, NULL);
        return;
    }
    json_t *st = json_array_get(s->program, s->pc++);
    const char *text;
    s->next_at = t + m->o.step_ms;
    if ((text = json_string_value(json_object_get(st, "thought")))) {
        emit(s, t, json_pack("{s:s, s:s}", "type", "thought", "thought", text));
    } else if ((text = json_string_value(json_object_get(st, "log")))) {
        const char *level = json_string_value(json_object_get(st, "level"));
        emit(s, t,
             json_pack("{s:s, s:s, s:s, s:n}", "type", "log", "level", level ? level : "info",
                       "message", text, "tool_execution_id"));
    } else if ((text = json_string_value(json_object_get(st, "tool")))) {
        char exec_id[48];
        snprintf(exec_id, sizeof(exec_id), "tool_exec_%s_%u", s->id, ++s->tool_counter);
        json_t *args = json_object_get(st, "args");
        const char *out = json_string_value(json_object_get(st, "output"));
        json_t *targs = json_is_object(args) ? json_incref(args) : json_object();
        emit(s, t,
             json_pack("{s:s, s:s, s:o, s:s, s:s}", "type", "tool_use", "tool_name", text,
                       "tool_args", targs, "tool_execution_id", exec_id, "status",
                       "started")); /* 'o' takes targs, also when packing fails */
        s->pending_result = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "tool_result",
                                      "tool_name", text, "tool_output", out ? out : "",
                                      "tool_execution_id", exec_id, "status", "completed");
        s->next_at = t + step_ms_of(m, st, "ms");
    } else if ((text = json_string_value(json_object_get(st, "edit"))) ||
               (text = json_string_value(json_object_get(st, "append")))) {
        int64_t n = count_lines(json_string_value(json_object_get(st, "content")));
        bool edit = json_object_get(st, "edit") != NULL;
        json_t *prev = json_object_get(s->edited, text);
        int64_t removed = edit && prev ? (int64_t)json_integer_value(prev) : 0;
        int64_t total = (edit ? 0 : (prev ? (int64_t)json_integer_value(prev) : 0)) + n;
        json_object_set_new(s->edited, text, json_integer(total));
        s->lines_added += n;
        s->lines_removed += removed;
        emit(s, t,
             json_pack("{s:s, s:s, s:I, s:I}", "type", "file_edit", "file_path", text,
                       "lines_added", (json_int_t)n, "lines_removed", (json_int_t)removed));
    } else if ((text = json_string_value(json_object_get(st, "delete")))) {
        json_t *prev = json_object_get(s->edited, text);
        int64_t removed = prev ? (int64_t)json_integer_value(prev) : 0;
        json_object_set_new(s->edited, text, json_integer(0));
        s->lines_removed += removed;
        emit(s, t,
             json_pack("{s:s, s:s, s:i, s:I}", "type", "file_edit", "file_path", text,
                       "lines_added", 0, "lines_removed", (json_int_t)removed));
    } else if (json_object_get(st, "sleep")) {
        s->next_at = t + step_ms_of(m, st, "sleep");
    } else if (json_is_true(json_object_get(st, "wait_prompt"))) {
        s->waiting_prompt = true;
        s->next_at = NEVER;
    } else if (json_object_get(st, "exit")) {
        json_t *code = json_object_get(st, "exit");
        int c = json_is_integer(code) ? (int)json_integer_value(code) : 0;
        char err[64];
        snprintf(err, sizeof(err), "agent exited with code %d", c);
        finish(s, t, c, c ? err : NULL);
    } else if ((text = json_string_value(json_object_get(st, "fail")))) {
        finish(s, t, 1, text);
    } else {
        emit(s, t,
             json_pack("{s:s, s:s, s:s, s:n}", "type", "log", "level", "warn", "message",
                       "scripted: unknown scenario step skipped", "tool_execution_id"));
    }
}

/* Performs every automatic step due by now. */
static void tick(struct mock *m, struct msession *s, int64_t now) {
    while (s->next_at != NEVER && s->next_at <= now) {
        int64_t t = s->next_at;
        switch (s->status) {
        case AH_STATUS_QUEUED:
            set_status(s, t, AH_STATUS_PROVISIONING);
            s->next_at = t + m->o.provision_ms;
            break;
        case AH_STATUS_PROVISIONING:
            s->started = t;
            set_status(s, t, AH_STATUS_RUNNING);
            s->next_at = t; /* the program starts at once */
            break;
        case AH_STATUS_RUNNING: run_step(m, s, t); break;
        case AH_STATUS_PAUSING:
            set_status(s, t, AH_STATUS_PAUSED);
            s->next_at = NEVER;
            break;
        case AH_STATUS_RESUMING:
            set_status(s, t, AH_STATUS_RUNNING);
            s->next_at = s->remaining == NEVER ? NEVER : t + s->remaining;
            break;
        case AH_STATUS_STOPPING: set_status(s, t, AH_STATUS_STOPPED); break;
        default: s->next_at = NEVER; break;
        }
    }
}

static void tick_all(struct mock *m, int64_t now) {
    for (size_t i = 0; i < m->n_sessions; i++)
        tick(m, m->sessions[i], now);
}

/* ---- wake-ups ---------------------------------------------------------------------------------
 */

static void wake(void *ud) {
    struct mock *m = ud;
    pthread_mutex_lock(&m->mu);
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
}

static void on_timer(void *ud) {
    struct mtimer *t = ud;
    struct mock *m = t->m;
    pthread_mutex_lock(&m->mu);
    for (struct mtimer **pp = &m->timers; *pp; pp = &(*pp)->next) {
        if (*pp == t) { /* still ours: free it (destroy unlinks before it cancels) */
            *pp = t->next;
            if (t->s->armed_at == t->deadline)
                t->s->armed_at = NEVER; /* fired: a later wait must arm again */
            free(t);
            break;
        }
    }
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
}

/* Arms a wake-up at the session's next step, once per deadline (under the lock). */
static void arm(struct mock *m, struct msession *s) {
    if (s->next_at == NEVER || s->armed_at == s->next_at)
        return;
    struct mtimer *t = calloc(1, sizeof(*t));
    if (!t)
        return; /* the streamer still wakes on the next control verb; OOM is not fatal */
    t->m = m;
    t->s = s;
    t->deadline = s->next_at;
    t->next = m->timers;
    m->timers = t;
    if (ah_clock_timer_add(m->clock, s->next_at, on_timer, t, &t->id) < 0) {
        m->timers = t->next;
        free(t);
        return;
    }
    s->armed_at = s->next_at;
}

/* ---- JSON views -------------------------------------------------------------------------------
 */

static json_t *links_json(const char *id) {
    char self[96], events[104], logs[104];
    snprintf(self, sizeof(self), "/api/v1/sessions/%s", id);
    snprintf(events, sizeof(events), "%s/events", self);
    snprintf(logs, sizeof(logs), "%s/logs", self);
    return json_pack("{s:s, s:s, s:s}", "self", self, "events", events, "logs", logs);
}

static int set_time(json_t *o, const char *key, int64_t ms) {
    char ts[TIME_RFC3339_LEN + 1];
    if (!ms)
        return json_object_set_new(o, key, json_null());
    time_format(ms, ts);
    return json_object_set_new(o, key, json_string(ts));
}

static json_t *session_json(struct msession *s) {
    json_t *o = json_deep_copy(s->view);
    if (!o)
        return NULL;
    int rc = 0;
    rc |= json_object_set_new(o, "id", json_string(s->id));
    rc |= json_object_set_new(o, "taskId", json_string(s->task_id));
    rc |= json_object_set_new(o, "status", json_string(ah_session_status_name(s->status)));
    rc |= set_time(o, "createdAt", s->created);
    rc |= set_time(o, "updatedAt", s->updated);
    rc |= set_time(o, "startedAt", s->started);
    rc |= set_time(o, "endedAt", s->ended);
    rc |= json_object_set_new(o, "error", s->error ? json_string(s->error) : json_null());
    rc |=
        json_object_set_new(o, "exitCode", s->has_exit ? json_integer(s->exit_code) : json_null());
    char mount[64];
    snprintf(mount, sizeof(mount), "/mock/workspaces/%s", s->id);
    rc |= json_object_set_new(
        o, "workspace", json_pack("{s:s, s:s}", "snapshotProvider", "mock", "mountPath", mount));
    rc |= json_object_set_new(o, "links", links_json(s->id));
    json_t *recent = json_array();
    if (recent && !ah_session_status_terminal(s->status)) {
        size_t n = json_array_size(s->events);
        for (size_t i = n > RECENT_EVENTS ? n - RECENT_EVENTS : 0; i < n; i++)
            rc |= json_array_append(recent, json_array_get(s->events, i));
    }
    rc |= json_object_set_new(o, "recent_events", recent);
    if (s->status == AH_STATUS_COMPLETED)
        rc |= json_object_set_new(o, "changes",
                                  json_pack("{s:I, s:I, s:I}", "files_changed",
                                            (json_int_t)json_object_size(s->edited), "lines_added",
                                            (json_int_t)s->lines_added, "lines_removed",
                                            (json_int_t)s->lines_removed));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- launch -----------------------------------------------------------------------------------
 */

static void msession_free(struct msession *s) {
    if (!s)
        return;
    json_decref(s->view);
    json_decref(s->program);
    json_decref(s->pending_result);
    json_decref(s->edited);
    json_decref(s->events);
    free(s);
}

/* The default program: default_steps steps cycling thought, tool, edit, log. */
static json_t *default_program(const struct mock *m) {
    json_t *p = json_array();
    for (int i = 0; p && i < m->o.default_steps; i++) {
        char text[64], path[64];
        json_t *st;
        switch (i % 4) {
        case 0:
            snprintf(text, sizeof(text), "Step %d: looking at the code", i + 1);
            st = json_pack("{s:s}", "thought", text);
            break;
        case 1:
            st = json_pack("{s:s, s:{s:i}, s:s}", "tool", "run_tests", "args", "step", i + 1,
                           "output", "all tests passed");
            break;
        case 2:
            snprintf(path, sizeof(path), "src/mock_%d.c", i + 1);
            st = json_pack("{s:s, s:s}", "edit", path, "content", "int mock(void);\n");
            break;
        default:
            snprintf(text, sizeof(text), "step %d done", i + 1);
            st = json_pack("{s:s, s:s}", "log", text, "level", "info");
            break;
        }
        if (json_array_append_new(p, st) < 0) {
            json_decref(p);
            return NULL;
        }
    }
    return p;
}

/* The static part of a session's JSON from the validated request and one agent. */
static json_t *view_json(const struct mock *m, const struct task_request *r,
                         const struct task_agent *a) {
    AH_AUTOFREE char *prompt = prompt_text(r->prompt);
    json_t *v =
        json_pack("{s:s, s:s?, s:s, s:{s:s, s:s?, s:s?, s:s?}, s:{s:s}, s:{s:s, s:s}}", "tenantId",
                  r->tenant_id ? r->tenant_id : m->tenant, "projectId", r->project_id, "prompt",
                  prompt ? prompt : "", "repo", "mode", repo_mode_name(r->repo.mode), "url",
                  r->repo.url, "branch", r->repo.branch, "commit", r->repo.commit, "runtime",
                  "type", runtime_type_name(r->runtime.type), "agent", "type", a->type, "version",
                  a->version ? a->version : "latest");
    if (!v || !prompt) {
        json_decref(v);
        return NULL;
    }
    int rc = 0;
    if (a->settings)
        rc |= json_object_set(json_object_get(v, "agent"), "settings", a->settings);
    if (r->has_delivery)
        rc |= json_object_set_new(v, "delivery",
                                  json_pack("{s:s, s:s?}", "mode",
                                            delivery_mode_name(r->delivery_mode), "targetBranch",
                                            r->target_branch));
    if (r->labels)
        rc |= json_object_set(v, "labels", r->labels);
    if (rc) {
        json_decref(v);
        return NULL;
    }
    return v;
}

static int m_launch(void *impl, const struct ah_task_spec *spec, struct ah_task_created **ret,
                    struct ah_api_error *reterr) {
    struct mock *m = impl;
    int rc = enter(m, AH_TM_LAUNCH, reterr);
    if (rc < 0)
        return rc;
    json_t *body = task_spec_json(spec, false, reterr, &rc);
    if (!body)
        return rc;
    /* The server's own validator: the mock refuses exactly what the server refuses. */
    struct ah_problem p = {0};
    AH_AUTO(task_request_freep) struct task_request *req = NULL;
    rc = task_request_parse(body, &req, &p);
    json_decref(body);
    if (rc < 0) {
        problem_from_core(reterr, &p);
        problem_clear(&p);
        return rc;
    }
    /* Scenarios (D20): settings.scenario must be an array of step objects. */
    for (size_t i = 0; i < req->n_agents; i++) {
        json_t *sc = json_object_get(req->agents[i].settings, "scenario");
        if (sc && !json_is_array(sc)) {
            char path[64];
            snprintf(path, sizeof(path), "agents[%zu].settings.scenario", i);
            problem_field(&p, path, "must be an array of steps");
            return fail_problem(reterr, &p);
        }
    }

    size_t total = task_request_session_count(req);
    struct msession **made = calloc(total, sizeof(*made));
    json_t *ids = json_array();
    if (!made || !ids) {
        free(made);
        json_decref(ids);
        return oom(reterr);
    }
    pthread_mutex_lock(&m->mu);
    int64_t now = now_of(m);
    char task_id[ULID_LEN + 1];
    mock_id(m, now, task_id);
    size_t k = 0;
    rc = 0;
    for (size_t i = 0; i < req->n_agents && rc == 0; i++) {
        const struct task_agent *a = &req->agents[i];
        for (int64_t c = 0; c < a->count && rc == 0; c++) {
            struct msession *s = calloc(1, sizeof(*s));
            if (!s) {
                rc = AH_E_NOMEM;
                break;
            }
            made[k++] = s;
            mock_id(m, now, s->id);
            memcpy(s->task_id, task_id, sizeof(task_id));
            snprintf(s->agent_type, sizeof(s->agent_type), "%s", a->type);
            s->view = view_json(m, req, a);
            json_t *sc = json_object_get(a->settings, "scenario");
            s->program = sc ? json_deep_copy(sc) : default_program(m);
            s->events = json_array();
            s->edited = json_object();
            s->created = s->updated = now;
            s->armed_at = NEVER;
            if (!s->view || !s->program || !s->events || !s->edited ||
                json_array_append_new(ids, json_string(s->id)) < 0) {
                rc = AH_E_NOMEM;
                break;
            }
            set_status(s, now, AH_STATUS_QUEUED);
            s->next_at = now + m->o.queue_ms;
        }
    }
    if (rc == 0 && m->n_sessions + k > m->cap_sessions) {
        size_t cap = m->cap_sessions ? m->cap_sessions * 2 : 16;
        while (cap < m->n_sessions + k)
            cap *= 2;
        struct msession **n = realloc(m->sessions, cap * sizeof(*n));
        if (n) {
            m->sessions = n;
            m->cap_sessions = cap;
        } else {
            rc = AH_E_NOMEM;
        }
    }
    json_t *answer = NULL;
    if (rc == 0) {
        answer = json_pack("{s:s, s:O, s:s, s:o}", "id", made[0]->id, "session_ids", ids, "status",
                           "queued", "links", links_json(made[0]->id));
        if (!answer)
            rc = AH_E_NOMEM;
    }
    struct ah_task_created *t = NULL;
    if (rc == 0 && (rc = task_created_from_json_t(answer, &t)) == 0) {
        memcpy(m->sessions + m->n_sessions, made, k * sizeof(*made));
        m->n_sessions += k;
        k = 0; /* the mock owns them now */
        pthread_cond_broadcast(&m->cond);
    }
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < k; i++)
        msession_free(made[i]);
    free(made);
    json_decref(ids);
    json_decref(answer);
    if (rc < 0)
        return oom(reterr);
    *ret = t;
    return 0;
}

/* ---- sessions ---------------------------------------------------------------------------------
 */

static bool matches(const struct msession *s, const struct ah_session_filter *f) {
    if (!f)
        return true;
    if (f->status && strcmp(f->status, ah_session_status_name(s->status)) != 0)
        return false;
    if (f->agent && strcmp(f->agent, s->agent_type) != 0)
        return false;
    const char *tenant = json_string_value(json_object_get(s->view, "tenantId"));
    const char *project = json_string_value(json_object_get(s->view, "projectId"));
    if (f->tenant_id && (!tenant || strcmp(f->tenant_id, tenant) != 0))
        return false;
    if (f->project_id && (!project || strcmp(f->project_id, project) != 0))
        return false;
    return true;
}

static int m_list_sessions(void *impl, const struct ah_session_filter *f,
                           struct ah_session_list **ret, struct ah_api_error *reterr) {
    struct mock *m = impl;
    int rc = enter(m, AH_TM_LIST_SESSIONS, reterr);
    if (rc < 0)
        return rc;
    int64_t page = f && f->page ? f->page : 1;
    int64_t per_page = f && f->per_page ? f->per_page : PAGE_DEFAULT_PER_PAGE;
    if (per_page > PAGE_MAX_PER_PAGE) {
        struct ah_problem p = {0};
        problem_field(&p, "perPage", "must be an integer from 1 to %d", PAGE_MAX_PER_PAGE);
        return fail_problem(reterr, &p);
    }
    json_t *items = json_array();
    if (!items)
        return oom(reterr);
    pthread_mutex_lock(&m->mu);
    tick_all(m, now_of(m));
    int64_t total = 0, skip = (page - 1) * per_page;
    for (size_t i = m->n_sessions; i-- > 0;) { /* newest first */
        struct msession *s = m->sessions[i];
        if (!matches(s, f))
            continue;
        if (total++ < skip || (int64_t)json_array_size(items) >= per_page)
            continue;
        if (json_array_append_new(items, session_json(s)) < 0)
            rc = AH_E_NOMEM;
    }
    pthread_mutex_unlock(&m->mu);
    struct page pg = {.page = page, .per_page = per_page};
    json_t *env = rc == 0 ? page_envelope(items, &pg, total) : (json_decref(items), NULL);
    rc = env ? session_list_from_json_t(env, ret) : AH_E_NOMEM;
    json_decref(env);
    return rc < 0 ? oom(reterr) : 0;
}

static int m_get_session(void *impl, const char *id, struct ah_session **ret,
                         struct ah_api_error *reterr) {
    struct mock *m = impl;
    int rc = enter(m, AH_TM_GET_SESSION, reterr);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&m->mu);
    struct msession *s = find_session(m, id);
    json_t *j = NULL;
    if (s) {
        tick(m, s, now_of(m));
        j = session_json(s);
    }
    pthread_mutex_unlock(&m->mu);
    if (!s)
        return fail(reterr, AH_E_NOTFOUND, NULL, "session %s does not exist", id);
    rc = j ? session_from_json_t(j, ret) : AH_E_NOMEM;
    json_decref(j);
    return rc < 0 ? oom(reterr) : 0;
}

static int m_control(void *impl, const char *id, enum ah_control op, const char *prompt,
                     enum ah_session_status *ret_status, struct ah_api_error *reterr) {
    static const char *const verbs[] = {"pause", "resume", "stop", "cancel", "prompt"};
    struct mock *m = impl;
    int rc = enter(m, AH_TM_CONTROL, reterr);
    if (rc < 0)
        return rc;
    if (op == AH_CONTROL_PROMPT && strlen(prompt) > AH_LIMIT_PROMPT) {
        return fail(reterr, AH_E_TOOLARGE, NULL, "the prompt is %zu bytes; the limit is %d bytes",
                    strlen(prompt), AH_LIMIT_PROMPT); /* as the server answers: 413 */
    }
    pthread_mutex_lock(&m->mu);
    struct msession *s = find_session(m, id);
    if (!s) {
        pthread_mutex_unlock(&m->mu);
        return fail(reterr, AH_E_NOTFOUND, NULL, "session %s does not exist", id);
    }
    int64_t now = now_of(m);
    tick(m, s, now);
    enum ah_session_status st = s->status;
    int code = 0;
    switch (op) {
    case AH_CONTROL_PAUSE:
        if (st != AH_STATUS_RUNNING) {
            code = AH_E_CONFLICT;
            break;
        }
        s->remaining = s->next_at == NEVER ? NEVER : s->next_at - now;
        set_status(s, now, AH_STATUS_PAUSING);
        s->next_at = now + m->o.transition_ms;
        break;
    case AH_CONTROL_RESUME:
        if (st != AH_STATUS_PAUSED) {
            code = AH_E_CONFLICT;
            break;
        }
        set_status(s, now, AH_STATUS_RESUMING);
        s->next_at = now + m->o.transition_ms;
        break;
    case AH_CONTROL_STOP:
        if (st != AH_STATUS_RUNNING && st != AH_STATUS_PAUSED) {
            code = AH_E_CONFLICT;
            break;
        }
        json_decref(s->pending_result);
        s->pending_result = NULL;
        s->waiting_prompt = false;
        set_status(s, now, AH_STATUS_STOPPING);
        s->next_at = now + m->o.transition_ms;
        break;
    case AH_CONTROL_CANCEL:
        if (ah_session_status_terminal(st)) {
            code = AH_E_CONFLICT;
            break;
        }
        set_status(s, now, AH_STATUS_CANCELLED);
        break;
    case AH_CONTROL_PROMPT:
        if (ah_session_status_terminal(st)) {
            code = AH_E_GONE;
            break;
        }
        if (st != AH_STATUS_RUNNING) {
            code = AH_E_CONFLICT;
            break;
        }
        emit(s, now,
             json_pack("{s:s, s:s, s:s+, s:n}", "type", "log", "level", "info", "message",
                       "user: ", prompt, "tool_execution_id"));
        if (s->waiting_prompt) {
            s->waiting_prompt = false;
            s->next_at = now + m->o.step_ms;
        }
        break;
    }
    enum ah_session_status after = s->status;
    if (!code)
        pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
    if (code == AH_E_GONE)
        return fail(reterr, code, ah_session_status_name(st), "session %s has ended (%s)", id,
                    ah_session_status_name(st));
    if (code)
        return fail(reterr, code, ah_session_status_name(st), "cannot %s a session that is %s",
                    verbs[op], ah_session_status_name(st));
    if (ret_status)
        *ret_status = after;
    return 0;
}

/* ---- streaming --------------------------------------------------------------------------------
 */

static int m_stream(void *impl, const char *id, const struct ah_stream_options *opt, ah_event_fn cb,
                    void *ud, int64_t *ret_last_seq, struct ah_api_error *reterr) {
    struct mock *m = impl;
    int64_t last = opt ? opt->after_seq : 0;
    int rc = enter(m, AH_TM_STREAM, reterr);
    if (rc < 0)
        goto out_early;
    ah_cancel *k = opt ? opt->cancel : NULL;
    pthread_mutex_lock(&m->mu);
    struct msession *s = find_session(m, id);
    if (!s) {
        pthread_mutex_unlock(&m->mu);
        rc = fail(reterr, AH_E_NOTFOUND, NULL, "session %s does not exist", id);
        goto out_early;
    }
    if (opt && opt->tail > 0 && last == 0) {
        tick(m, s, now_of(m));
        int64_t n = (int64_t)json_array_size(s->events);
        last = n > opt->tail ? n - opt->tail : 0;
    }
    pthread_mutex_unlock(&m->mu);
    if ((rc = cancel_hook_add(k, wake, m)) < 0) {
        problem_local(reterr, rc, "too many waiters on one cancellation token");
        goto out_early;
    }
    bool done = false;
    pthread_mutex_lock(&m->mu);
    while (!done) {
        if (ah_cancel_triggered(k)) {
            rc = AH_E_CANCELED;
            break;
        }
        tick(m, s, now_of(m));
        size_t n = json_array_size(s->events);
        if ((size_t)last >= n) {
            if (ah_session_status_terminal(s->status)) {
                rc = 0; /* started after the end: nothing more will come */
                break;
            }
            arm(m, s);
            pthread_cond_wait(&m->cond, &m->mu);
            continue;
        }
        size_t cnt = n - (size_t)last;
        json_t **batch = calloc(cnt, sizeof(*batch));
        if (!batch) {
            rc = AH_E_NOMEM;
            break;
        }
        for (size_t i = 0; i < cnt; i++)
            batch[i] = json_incref(json_array_get(s->events, (size_t)last + i));
        pthread_mutex_unlock(&m->mu);
        size_t i = 0;
        for (; i < cnt && !done; i++) {
            struct ah_event *ev = NULL;
            if (event_from_json_t(batch[i], &ev) < 0) {
                rc = AH_E_NOMEM;
                done = true;
                break;
            }
            int stop = cb(ud, ev);
            last = ev->seq;
            bool terminal =
                strcmp(ev->type, "status") == 0 && ah_session_status_terminal(ev->status);
            ah_event_free(ev);
            if (stop) {
                rc = AH_E_CANCELED;
                done = true;
            } else if (terminal) {
                rc = 0;
                done = true;
            }
        }
        for (size_t j = 0; j < cnt; j++)
            json_decref(batch[j]);
        free(batch);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    cancel_hook_remove(k, wake, m);
    if (rc == AH_E_CANCELED)
        problem_local(reterr, rc, "the stream was stopped");
    else if (rc == AH_E_NOMEM)
        oom(reterr);
out_early:
    if (ret_last_seq)
        *ret_last_seq = last;
    return rc;
}

/* ---- drafts -----------------------------------------------------------------------------------
 */

/* The stored body with its id and times (the server's Draft schema). */
static json_t *draft_json(const struct mdraft *d) {
    json_t *o = json_deep_copy(d->body);
    if (!o)
        return NULL;
    int rc = json_object_set_new(o, "id", json_string(d->id));
    rc |= set_time(o, "createdAt", d->created);
    rc |= set_time(o, "updatedAt", d->updated);
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static struct mdraft *find_draft(struct mock *m, const char *id, size_t *ret_index) {
    for (size_t i = 0; i < m->n_drafts; i++) {
        if (strcmp(m->drafts[i]->id, id) == 0) {
            if (ret_index)
                *ret_index = i;
            return m->drafts[i];
        }
    }
    return NULL;
}

static int m_list_drafts(void *impl, struct ah_draft_list **ret, struct ah_api_error *reterr) {
    struct mock *m = impl;
    int rc = enter(m, AH_TM_LIST_DRAFTS, reterr);
    if (rc < 0)
        return rc;
    json_t *items = json_array();
    pthread_mutex_lock(&m->mu);
    size_t total = m->n_drafts;
    for (size_t i = m->n_drafts; items && i-- > 0;) /* newest first, one page of up to 200 */
        if (json_array_size(items) < PAGE_MAX_PER_PAGE &&
            json_array_append_new(items, draft_json(m->drafts[i])) < 0)
            rc = AH_E_NOMEM;
    pthread_mutex_unlock(&m->mu);
    struct page pg = {.page = 1, .per_page = PAGE_MAX_PER_PAGE};
    json_t *env = NULL;
    if (items && rc == 0)
        env = page_envelope(items, &pg, (int64_t)total);
    else
        json_decref(items);
    rc = env ? draft_list_from_json_t(env, ret) : AH_E_NOMEM;
    json_decref(env);
    return rc < 0 ? oom(reterr) : 0;
}

static int grow_drafts(struct mock *m) {
    size_t cap = m->cap_drafts ? m->cap_drafts * 2 : 8;
    struct mdraft **n = realloc(m->drafts, cap * sizeof(*n));
    if (!n)
        return AH_E_NOMEM;
    m->drafts = n;
    m->cap_drafts = cap;
    return 0;
}

static int m_save_draft(void *impl, const char *id, const struct ah_task_spec *spec,
                        struct ah_draft **ret, struct ah_api_error *reterr) {
    struct mock *m = impl;
    int rc = enter(m, AH_TM_SAVE_DRAFT, reterr);
    if (rc < 0)
        return rc;
    json_t *body = task_spec_json(spec, true, reterr, &rc);
    if (!body)
        return rc;
    pthread_mutex_lock(&m->mu);
    int64_t now = now_of(m);
    struct mdraft *d = id ? find_draft(m, id, NULL) : NULL;
    json_t *answer = NULL;
    if (id && !d) {
        rc = AH_E_NOTFOUND;
    } else if (d) {
        json_decref(d->body);
        d->body = body;
        body = NULL;
        d->updated = now;
        answer = draft_json(d);
    } else if (m->n_drafts == m->cap_drafts && grow_drafts(m) < 0) {
        rc = AH_E_NOMEM;
    } else if (!(d = calloc(1, sizeof(*d)))) {
        rc = AH_E_NOMEM;
    } else {
        char ulid[ULID_LEN + 1];
        mock_id(m, now, ulid);
        snprintf(d->id, sizeof(d->id), "draft-%s", ulid);
        d->body = body;
        body = NULL;
        d->created = d->updated = now;
        m->drafts[m->n_drafts++] = d;
        answer = draft_json(d);
    }
    pthread_mutex_unlock(&m->mu);
    json_decref(body);
    if (rc == AH_E_NOTFOUND)
        return fail(reterr, rc, NULL, "draft %s does not exist", id);
    if (rc < 0 || !answer)
        return oom(reterr);
    struct ah_draft *out = NULL;
    rc = draft_from_json_t(answer, &out);
    json_decref(answer);
    if (rc < 0)
        return oom(reterr);
    if (ret)
        *ret = out;
    else
        ah_draft_free(out);
    return 0;
}

static int m_delete_draft(void *impl, const char *id, struct ah_api_error *reterr) {
    struct mock *m = impl;
    int rc = enter(m, AH_TM_DELETE_DRAFT, reterr);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&m->mu);
    size_t i;
    struct mdraft *d = find_draft(m, id, &i);
    if (d) {
        memmove(m->drafts + i, m->drafts + i + 1, (m->n_drafts - i - 1) * sizeof(*m->drafts));
        m->n_drafts--;
    }
    pthread_mutex_unlock(&m->mu);
    if (!d)
        return fail(reterr, AH_E_NOTFOUND, NULL, "draft %s does not exist", id);
    json_decref(d->body);
    free(d);
    return 0;
}

/* ---- repositories -----------------------------------------------------------------------------
 */

static int m_list_repos(void *impl, struct ah_repo_list **ret, struct ah_api_error *reterr) {
    struct mock *m = impl;
    int rc = enter(m, AH_TM_LIST_REPOS, reterr);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&m->mu);
    json_t *items = json_deep_copy(m->repos);
    size_t total = json_array_size(m->repos);
    pthread_mutex_unlock(&m->mu);
    struct page pg = {.page = 1, .per_page = PAGE_MAX_PER_PAGE};
    json_t *env = items ? page_envelope(items, &pg, (int64_t)total) : NULL;
    rc = env ? repo_list_from_json_t(env, ret) : AH_E_NOMEM;
    json_decref(env);
    return rc < 0 ? oom(reterr) : 0;
}

static int m_list_branches(void *impl, const char *repo_id, struct ah_branch_list **ret,
                           struct ah_api_error *reterr) {
    struct mock *m = impl;
    int rc = enter(m, AH_TM_LIST_BRANCHES, reterr);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&m->mu);
    json_t *names = json_object_get(m->branches, repo_id);
    json_t *out = NULL;
    if (names) {
        json_t *arr = json_array();
        size_t i;
        json_t *n;
        json_array_foreach(names, i, n) {
            json_array_append_new(
                arr, json_pack("{s:O, s:b, s:n}", "name", n, "is_default", i == 0, "last_commit"));
        }
        out = arr ? json_pack("{s:s, s:o}", "repositoryId", repo_id, "branches", arr) : NULL;
    }
    pthread_mutex_unlock(&m->mu);
    if (!names)
        return fail(reterr, AH_E_NOTFOUND, NULL, "repository %s does not exist", repo_id);
    rc = out ? branch_list_from_json_t(out, ret) : AH_E_NOMEM;
    json_decref(out);
    return rc < 0 ? oom(reterr) : 0;
}

/* ---- life cycle -------------------------------------------------------------------------------
 */

static void m_destroy(void *impl) {
    struct mock *m = impl;
    /* Disarm every timer not fired yet. Each record is unlinked first, so a callback in flight
     * does not free it; timer_cancel waits for such a callback before we free the record. */
    for (;;) {
        pthread_mutex_lock(&m->mu);
        struct mtimer *t = m->timers;
        if (t)
            m->timers = t->next;
        pthread_mutex_unlock(&m->mu);
        if (!t)
            break;
        ah_clock_timer_cancel(m->clock, t->id);
        free(t);
    }
    for (size_t i = 0; i < m->n_sessions; i++)
        msession_free(m->sessions[i]);
    free(m->sessions);
    for (size_t i = 0; i < m->n_drafts; i++) {
        json_decref(m->drafts[i]->body);
        free(m->drafts[i]);
    }
    free(m->drafts);
    json_decref(m->repos);
    json_decref(m->branches);
    if (m->own_clock)
        ah_clock_free(m->clock);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static const struct ah_task_manager_ops mock_ops = {
    .size = sizeof(struct ah_task_manager_ops),
    .name = "mock",
    .launch_task = m_launch,
    .stream_events = m_stream,
    .list_sessions = m_list_sessions,
    .get_session = m_get_session,
    .list_drafts = m_list_drafts,
    .save_draft = m_save_draft,
    .delete_draft = m_delete_draft,
    .list_repositories = m_list_repos,
    .list_branches = m_list_branches,
    .control = m_control,
    .destroy = m_destroy,
};

void ah_mock_options_default(struct ah_mock_options *o) {
    if (!o)
        return;
    memset(o, 0, sizeof(*o));
    o->queue_ms = 100;
    o->provision_ms = 200;
    o->step_ms = 1000;
    o->transition_ms = 50;
    o->call_latency_ms = 0;
    o->default_steps = 8;
    o->tenant_id = "default";
}

/* Adds a repository under the lock. */
static int add_repo_locked(struct mock *m, const char *id, const char *name, const char *url,
                           const char *const *branches, size_t n) {
    json_t *names = json_array();
    for (size_t i = 0; names && i < n; i++)
        if (json_array_append_new(names, json_string(branches[i])) < 0) {
            json_decref(names);
            names = NULL;
        }
    json_t *repo =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:n}", "id", id, "displayName", name, "scmProvider",
                  "git", "remoteUrl", url, "defaultBranch", branches[0], "lastUsedAt");
    int rc = 0;
    if (!names || !repo || json_array_append(m->repos, repo) < 0 ||
        json_object_set(m->branches, id, names) < 0)
        rc = AH_E_NOMEM;
    json_decref(names);
    json_decref(repo);
    return rc;
}

int ah_task_manager_new_mock(const struct ah_mock_options *o, ah_task_manager **ret) {
    if (!ret)
        return AH_E_INVAL;
    struct ah_mock_options opts;
    ah_mock_options_default(&opts);
    if (o) {
        opts = *o;
        if (!opts.tenant_id)
            opts.tenant_id = "default";
    }
    if (opts.queue_ms < 0 || opts.provision_ms < 0 || opts.step_ms < 0 || opts.transition_ms < 0 ||
        opts.call_latency_ms < 0 || opts.default_steps < 0 ||
        strlen(opts.tenant_id) > AH_LIMIT_NAME)
        return AH_E_INVAL;
    struct mock *m = calloc(1, sizeof(*m));
    if (!m)
        return AH_E_NOMEM;
    m->o = opts;
    snprintf(m->tenant, sizeof(m->tenant), "%s", opts.tenant_id);
    m->o.tenant_id = m->tenant;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cond, NULL);
    m->repos = json_array();
    m->branches = json_object();
    int rc = 0;
    if (opts.clock) {
        m->clock = opts.clock;
    } else {
        rc = ah_clock_new_real(&m->clock);
        m->own_clock = rc == 0;
    }
    static const char *const demo_branches[] = {"main", "develop"};
    if (rc == 0 && (!m->repos || !m->branches))
        rc = AH_E_NOMEM;
    if (rc == 0)
        rc = add_repo_locked(m, "repo-demo", "demo", "https://git.example.com/acme/demo.git",
                             demo_branches, 2);
    if (rc == 0)
        rc = ah_task_manager_new(&mock_ops, m, ret);
    if (rc < 0)
        m_destroy(m);
    return rc;
}

bool ah_task_manager_is_mock(const ah_task_manager *tm) {
    return tm_impl_if(tm, &mock_ops) != NULL;
}

int ah_mock_inject_failure(ah_task_manager *tm, enum ah_tm_op op, int code, int count) {
    struct mock *m = tm_impl_if(tm, &mock_ops);
    if (!m || (int)op < 0 || op >= AH_TM_OP_COUNT_ || (count != 0 && code >= 0))
        return AH_E_INVAL;
    pthread_mutex_lock(&m->mu);
    m->fail_code[op] = code;
    m->fail_count[op] = count;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

int64_t ah_mock_call_count(ah_task_manager *tm, enum ah_tm_op op) {
    struct mock *m = tm_impl_if(tm, &mock_ops);
    if (!m || (int)op < 0 || op >= AH_TM_OP_COUNT_)
        return AH_E_INVAL;
    pthread_mutex_lock(&m->mu);
    int64_t n = m->calls[op];
    pthread_mutex_unlock(&m->mu);
    return n;
}

int ah_mock_add_repository(ah_task_manager *tm, const char *id, const char *display_name,
                           const char *remote_url, const char *const *branches, size_t n) {
    struct mock *m = tm_impl_if(tm, &mock_ops);
    if (!m || !id || !*id || !display_name || !remote_url || !branches || n == 0)
        return AH_E_INVAL;
    for (size_t i = 0; i < n; i++)
        if (!branches[i])
            return AH_E_INVAL;
    pthread_mutex_lock(&m->mu);
    int rc = json_object_get(m->branches, id)
                 ? AH_E_EXISTS
                 : add_repo_locked(m, id, display_name, remote_url, branches, n);
    pthread_mutex_unlock(&m->mu);
    return rc;
}
