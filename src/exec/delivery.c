/*
 * delivery.c — handing the result of a successful session over (issue 11 item 7): the task's
 * `delivery` says how.
 *   branch  commit the workspace as it ended (author: the agent, message: the prompt) on top of
 *           the checked-out commit and push it to the task's repository as `ah/<session-id>`
 *           (or `delivery.branch`);
 *   patch   keep the patch from the base snapshot to the final one (`git apply`-able, binary and
 *           renames included) as the session's artifact, served by GET /sessions/{id}/delivery;
 *   pr      refused when the task is created (no forge API here).
 * The outcome — commit, branch, URL, or the error — is one `delivery` event, stored before the
 * session's final status (no event follows a terminal status), and read back as the session's
 * `delivery` field.
 *
 * A push waits on the network, so it never runs on an HTTP thread, on the supervisor or on the
 * snapshot worker: the snapshot worker hands the agent's exit message here (delivery_then_exit)
 * and this module's own thread delivers, records the event, then posts CMD_EXIT as the snapshot
 * worker would have. Every git step runs within the clone timeout (--clone-timeout-ms) and is
 * abandoned when the server stops (its exit message was not acknowledged: the recorder resends
 * it to the next server, which delivers again). Errors never vanish: they become the event.
 *
 * The workspace's own index, HEAD and refs are not touched (D30), and no git command runs on its
 * .git at all (the agent writes it; git would run commands its config names): the commit is
 * built in a repository of ours under the session's directory (delivery.git, borrowing the
 * workspace's objects read-only) with a private index and `git commit-tree`, and pushed by id.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../workspace/workspace.h"
#include "executor.h"

#define DELIVERY_ERROR_MAX 2000     /* bytes of git's output kept in an error */
#define DELIVERY_MESSAGE_MAX 8192   /* bytes of the prompt in the commit message */
#define DELIVERY_PATCH_MAX (256u * 1024 * 1024)
#define COMMITTER_NAME "Agent Harbor"
#define COMMITTER_EMAIL "agent-harbor@localhost"

struct deliv_job {
    struct deliv_job *next;
    char *workdir;
    struct cmd *exit; /* CMD_EXIT, posted once the delivery is recorded */
};

struct deliveries {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running, stopping;
    struct deliv_job *head, *tail;
    int abort_fd; /* eventfd: written at stop, a running git step gives up */
    struct executor *ex;
};

char *exec_delivery_path(struct executor *ex, const char *id) {
    char *p = NULL;
    if (asprintf(&p, "%s/sessions/%s/delivery.patch", ex->cfg.data_dir, id) < 0)
        return NULL;
    return p;
}

/* ---- the two modes ------------------------------------------------------------------------- */

/* The last DELIVERY_ERROR_MAX bytes of a command's output, trimmed, for an error text. */
static void tail_of(const char *out, char *buf, size_t cap) {
    size_t n = out ? strlen(out) : 0;
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
        n--;
    size_t from = n > cap - 1 ? n - (cap - 1) : 0;
    snprintf(buf, cap, "%.*s", (int)(n - from), out ? out + from : "");
}

/* Runs one git step in the workspace; 0 with its first output line in line (when given), or
 * the error text in err. */
static int step(const struct run_limits *lim, const char *wd, const char *const *argv,
                const char *what, char *line, size_t line_cap, char *err, size_t err_cap) {
    char *out = NULL;
    int rc = run_command_ex(argv, wd, lim, &out);
    if (rc != 0) {
        char t[DELIVERY_ERROR_MAX + 1];
        tail_of(out, t, sizeof(t));
        if (rc == AH_E_TIMEOUT)
            snprintf(err, err_cap, "%s timed out: %s", what, t);
        else if (rc < 0)
            snprintf(err, err_cap, "%s: %s %s", what, ah_strerror(rc), t);
        else
            snprintf(err, err_cap, "%s failed (exit %d): %s", what, rc, t);
        free(out);
        return rc < 0 ? rc : AH_E_IO;
    }
    if (line) {
        size_t n = out ? strcspn(out, "\n") : 0;
        snprintf(line, line_cap, "%.*s", (int)n, out ? out : "");
    }
    free(out);
    return 0;
}

/* The commit message: the prompt's first line (at most 72 bytes), the prompt, a trailer. */
static char *commit_message(const json_t *req, const char *id) {
    AH_AUTOFREE char *text = prompt_text(json_object_get(req, "prompt")); /* its text blocks */
    const char *prompt = text && *text ? text : "Agent Harbor session";
    size_t n = strnlen(prompt, DELIVERY_MESSAGE_MAX), first = strcspn(prompt, "\n");
    if (first > n)
        first = n;
    bool cut = false;
    size_t keep = ws_truncate_lines(prompt, first, 72, &cut);
    char *msg = NULL;
    if (asprintf(&msg, "%.*s\n\n%.*s\n\nAgent-Harbor-Session: %s\n", (int)keep, prompt, (int)n,
                 prompt, id) < 0)
        return NULL;
    return msg;
}

/* The first line of a file (at most cap-1 bytes), "" when unreadable. */
static void first_line(const char *path, char *out, size_t cap) {
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(out, (int)cap, f))
        out[0] = 0;
    fclose(f);
    out[strcspn(out, "\r\n")] = 0;
}

static bool is_object_id(const char *s) {
    size_t n = strlen(s);
    return (n == 40 || n == 64) && strspn(s, "0123456789abcdef") == n;
}

/* The commit the workspace's HEAD names, read from its files (no git runs in the agent's
 * repository): HEAD itself, or the loose or packed ref it points to. "" for none (an empty
 * repository, or files that make no sense: they are the agent's to write). */
static void workspace_head(const char *gitdir, char *out, size_t cap) {
    char path[4400], line[600];
    out[0] = 0;
    snprintf(path, sizeof(path), "%s/HEAD", gitdir);
    first_line(path, line, sizeof(line));
    if (is_object_id(line)) {
        snprintf(out, cap, "%s", line);
        return;
    }
    if (strncmp(line, "ref: refs/", 10) != 0 || strstr(line, ".."))
        return;
    char ref[600];
    snprintf(ref, sizeof(ref), "%s", line + 5);
    snprintf(path, sizeof(path), "%s/%s", gitdir, ref);
    first_line(path, line, sizeof(line));
    if (is_object_id(line)) {
        snprintf(out, cap, "%s", line);
        return;
    }
    snprintf(path, sizeof(path), "%s/packed-refs", gitdir);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *sp = strchr(line, ' ');
        if (sp && !strcmp(sp + 1, ref)) {
            *sp = 0;
            if (is_object_id(line))
                snprintf(out, cap, "%s", line);
            break;
        }
    }
    if (f)
        fclose(f);
}

static int deliver_branch(struct executor *ex, const struct session_row *row, const json_t *req,
                          const char *wd, json_t *ev, char *err, size_t err_cap) {
    const json_t *d = json_object_get(req, "delivery");
    const char *url = json_string_value(json_object_get(json_object_get(req, "repo"), "url"));
    const char *mode = json_string_value(json_object_get(json_object_get(req, "repo"), "mode"));
    const char *named = json_string_value(json_object_get(d, "branch"));
    char branch[AH_LIMIT_NAME + 8];
    snprintf(branch, sizeof(branch), named ? "%s" : "ah/%s", named ? named : row->id);
    json_object_set_new(ev, "branch", json_string(branch));
    char gitdir[4200];
    struct stat sb;
    snprintf(gitdir, sizeof(gitdir), "%s/.git", wd);
    if (!url || (mode && strcmp(mode, "git") != 0) || stat(gitdir, &sb) < 0 ||
        !S_ISDIR(sb.st_mode)) {
        snprintf(err, err_cap, "branch delivery needs a git workspace of the task's repository "
                               "(repo.mode git)");
        return AH_E_INVAL;
    }
    struct run_limits lim = {.timeout_ms = ex->cfg.clone_timeout_ms,
                             .abort_fd = ex->delivs ? ex->delivs->abort_fd : -1};
    /* Every git step runs on a repository of ours (GIT_DIR), never on the workspace's .git: its
     * config, hooks and info/ are the agent's to write, and git runs commands named there (a
     * filter driver during add, core.sshCommand or a credential helper during push, fsmonitor…)
     * as this server, outside any sandbox. Ours borrows the workspace's objects read-only
     * (alternates) for the parent commit; its index is private; the work tree is read as files,
     * with the tree's own .gitattributes naming drivers that are not configured here (ignored). */
    char gd[4300], alt[4400], env_gd[4400], env_wt[4300], env_idx[4400], parent[128] = "",
        tree[128], commit[128];
    snprintf(gd, sizeof(gd), "%s/sessions/%s/delivery.git", ex->cfg.data_dir, row->id);
    snprintf(env_gd, sizeof(env_gd), "GIT_DIR=%s", gd);
    snprintf(env_wt, sizeof(env_wt), "GIT_WORK_TREE=%s", wd);
    snprintf(env_idx, sizeof(env_idx), "GIT_INDEX_FILE=%s/delivery.index", gd);
    const char *rm[] = {"rm", "-rf", "--", gd, NULL};
    const char *init[] = {"git", "init", "-q", "--bare", "--", gd, NULL};
    int rc = step(&lim, NULL, rm, "rm", NULL, 0, err, err_cap);
    if (rc == 0)
        rc = step(&lim, NULL, init, "git init", NULL, 0, err, err_cap);
    if (rc < 0)
        return rc;
    snprintf(alt, sizeof(alt), "%s/objects/info/alternates", gd);
    FILE *f = fopen(alt, "w");
    if (!f || fprintf(f, "%s/objects\n", gitdir) < 0 || fclose(f) != 0) {
        if (f)
            fclose(f);
        snprintf(err, err_cap, "cannot prepare the delivery repository: %s", strerror(errno));
        return AH_E_IO;
    }
    char head[128];
    workspace_head(gitdir, head, sizeof(head));
    if (head[0]) { /* a commit our repository reaches through the alternates */
        char spec[160];
        snprintf(spec, sizeof(spec), "%s^{commit}", head);
        const char *rev[] = {"env", env_gd, "git", "rev-parse", "-q", "--verify", spec, NULL};
        if ((rc = step(&lim, NULL, rev, "git rev-parse", parent, sizeof(parent), err, err_cap)) <
            0)
            return rc;
    }
    const char *read_tree[] = {"env", env_gd, env_idx, "git", "read-tree",
                               parent[0] ? parent : "--empty", NULL};
    const char *add[] = {"env", env_gd, env_wt, env_idx, "git", "add", "-A", "--", ".", NULL};
    const char *write_tree[] = {"env", env_gd, env_idx, "git", "write-tree", NULL};
    rc = step(&lim, NULL, read_tree, "git read-tree", NULL, 0, err, err_cap);
    if (rc == 0)
        rc = step(&lim, wd, add, "git add", NULL, 0, err, err_cap);
    if (rc == 0)
        rc = step(&lim, NULL, write_tree, "git write-tree", tree, sizeof(tree), err, err_cap);
    if (rc < 0)
        return rc;
    AH_AUTOFREE char *msg = commit_message(req, row->id);
    char an[AH_LIMIT_NAME + 32], ae[AH_LIMIT_NAME + 64];
    snprintf(an, sizeof(an), "GIT_AUTHOR_NAME=%s", row->agent_type);
    snprintf(ae, sizeof(ae), "GIT_AUTHOR_EMAIL=%s@agents.agent-harbor.invalid", row->agent_type);
    if (!msg)
        return AH_E_NOMEM;
    const char *ct[] = {"env", env_gd, an, ae, "GIT_COMMITTER_NAME=" COMMITTER_NAME,
                        "GIT_COMMITTER_EMAIL=" COMMITTER_EMAIL, "git", "commit-tree", tree, "-m",
                        msg, parent[0] ? "-p" : NULL, parent, NULL};
    if ((rc = step(&lim, NULL, ct, "git commit-tree", commit, sizeof(commit), err, err_cap)) < 0)
        return rc;
    json_object_set_new(ev, "commit", json_string(commit));
    /* ah/<id> is ours to overwrite (a delivery repeated after a restart makes a new commit); a
     * branch the task named may hold someone's work: never forced */
    char refspec[400];
    snprintf(refspec, sizeof(refspec), "%s%s:refs/heads/%s", named ? "" : "+", commit, branch);
    /* --no-verify: no pre-push hook of the workspace runs (the remote's own hooks do) */
    const char *push[] = {"env", env_gd, "GIT_TERMINAL_PROMPT=0", "git", "push", "--no-verify",
                          "--porcelain", "--", url, refspec, NULL};
    if ((rc = step(&lim, NULL, push, "git push", NULL, 0, err, err_cap)) < 0)
        return rc;
    return 0;
}

static int deliver_patch(struct executor *ex, const struct session_row *row, json_t *ev,
                         char *err, size_t err_cap) {
    char base[WS_SNAP_ID_LEN + 1], last[WS_SNAP_ID_LEN + 1];
    AH_AUTOFREE char *dir = exec_snapshot_dir(ex, row->id);
    AH_AUTOFREE char *path = exec_delivery_path(ex, row->id);
    if (!dir || !path)
        return AH_E_NOMEM;
    struct ws_store *st = NULL;
    int rc = exec_snapshot_base(ex, row->id, base);
    if (rc == 0)
        rc = ws_store_open(dir, &st);
    if (rc == 0)
        rc = ws_snapshot_latest(st, last);
    struct ah_buf text = {.max = DELIVERY_PATCH_MAX};
    struct ws_changes ch = {0};
    if (rc == 0)
        rc = ws_changes(st, base, last, &ch);
    if (rc == 0) {
        struct ws_diff_opts o;
        ws_diff_opts_init(&o);
        o.format = WS_PATCH;
        rc = ws_diff(st, base, last, &o, &text);
    }
    ws_store_free(st);
    char tmp[4400];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (rc == 0)
        rc = write_file(tmp, text.p ? text.p : "", text.n, 0600);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = ah_err_from_errno(errno);
    if (rc < 0) {
        unlink(tmp);
        snprintf(err, err_cap, "cannot make the patch of the session's changes: %s",
                 ah_strerror(rc));
    } else {
        char url[120];
        snprintf(url, sizeof(url), "/api/v1/sessions/%s/delivery", row->id);
        json_object_set_new(ev, "url", json_string(url));
        json_object_set_new(ev, "files", json_integer((json_int_t)ch.n));
        json_object_set_new(ev, "bytes", json_integer((json_int_t)text.n));
    }
    ws_changes_clear(&ch);
    ah_buf_clear(&text);
    return rc;
}

/* Delivers the session and records its `delivery` event (whatever happened). */
static void deliver(struct executor *ex, const char *tenant, const char *id, const char *wd) {
    struct session_row *row = NULL;
    if (store_session_get(ex->store, tenant, id, &row) < 0)
        return;
    json_t *req = session_row_request(row);
    const char *mode = json_string_value(json_object_get(json_object_get(req, "delivery"), "mode"));
    json_t *ev = mode ? json_pack("{s:s, s:s, s:n}", "type", "delivery", "mode", mode, "url")
                      : NULL;
    if (!ev) {
        session_row_free(row);
        return;
    }
    char err[DELIVERY_ERROR_MAX + 200] = "";
    int rc;
    if (strcmp(mode, "branch") == 0) {
        rc = deliver_branch(ex, row, req, wd, ev, err, sizeof(err));
        if (rc == 0) { /* where it went, without credentials (D29) */
            json_t *repo = json_redact_userinfo(json_object_get(req, "repo"));
            json_object_set(ev, "url", json_object_get(repo, "url"));
            json_decref(repo);
        }
    } else if (strcmp(mode, "patch") == 0) {
        rc = deliver_patch(ex, row, ev, err, sizeof(err));
    } else {
        rc = AH_E_INVAL;
        snprintf(err, sizeof(err), "delivery mode %s is not supported by this server", mode);
    }
    json_object_set_new(ev, "status", json_string(rc == 0 ? "delivered" : "failed"));
    if (rc < 0) {
        json_object_set_new(ev, "error", json_string(err[0] ? err : ah_strerror(rc)));
        log_msg(LOG_WARN, "session %s: delivery (%s) failed: %s", id, mode, err);
    }
    struct store_op op = {
        .kind = STORE_OP_EVENT, .tenant = tenant, .session_id = id, .payload = ev};
    if (bus_submit_wait(ex->bus, &op) < 0)
        log_msg(LOG_ERROR, "session %s: cannot record its delivery event", id);
    free(op.stored);
    json_decref(ev);
    session_row_free(row);
}

/* ---- the worker ------------------------------------------------------------------------------ */

static void job_free(struct deliv_job *j) {
    if (!j)
        return;
    free(j->workdir);
    cmd_free(j->exit);
    free(j);
}

static void *deliv_main(void *arg) {
    struct deliveries *D = arg;
    pthread_mutex_lock(&D->mu);
    while (!D->stopping) {
        struct deliv_job *j = D->head;
        if (!j) {
            pthread_cond_wait(&D->cv, &D->mu);
            continue;
        }
        D->head = j->next;
        if (!D->head)
            D->tail = NULL;
        pthread_mutex_unlock(&D->mu);
        deliver(D->ex, j->exit->tenant, j->exit->id, j->workdir);
        pthread_mutex_lock(&D->mu);
        if (!D->stopping) { /* stopping: unanswered, the recorder resends its exit */
            exec_post(D->ex, j->exit);
            j->exit = NULL;
        }
        job_free(j);
    }
    pthread_mutex_unlock(&D->mu);
    return NULL;
}

/* Does this exit end a session that wants a delivery? Only a clean exit of a running session
 * can complete it (supervisor.c exit_now decides the same way). */
static bool wants_delivery(struct executor *ex, const struct cmd *c) {
    if (json_integer_value(json_object_get(c->msg, "code")) != 0 ||
        json_integer_value(json_object_get(c->msg, "signal")) != 0)
        return false;
    struct session_row *row = NULL;
    if (store_session_get(ex->store, c->tenant, c->id, &row) < 0)
        return false;
    bool yes = row->status == SESSION_RUNNING &&
               json_object_get(json_object_get(session_row_request(row), "delivery"), "mode");
    session_row_free(row);
    return yes;
}

void delivery_then_exit(struct executor *ex, struct cmd *c, const char *workdir) {
    struct deliveries *D = ex->delivs;
    if (!D || !workdir || !wants_delivery(ex, c)) {
        exec_post(ex, c);
        return;
    }
    struct deliv_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->workdir = strdup(workdir))) {
        free(j);
        exec_post(ex, c); /* out of memory: complete without it rather than hang the session */
        return;
    }
    j->exit = c;
    pthread_mutex_lock(&D->mu);
    if (D->stopping) {
        pthread_mutex_unlock(&D->mu);
        job_free(j);
        return;
    }
    if (D->tail)
        D->tail->next = j;
    else
        D->head = j;
    D->tail = j;
    pthread_cond_signal(&D->cv);
    pthread_mutex_unlock(&D->mu);
}

int delivery_start(struct executor *ex) {
    struct deliveries *D = calloc(1, sizeof(*D));
    if (!D)
        return AH_E_NOMEM;
    D->ex = ex;
    D->abort_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&D->mu, NULL);
    pthread_cond_init(&D->cv, NULL);
    if (D->abort_fd < 0 || pthread_create(&D->thread, NULL, deliv_main, D) != 0) {
        if (D->abort_fd >= 0)
            close(D->abort_fd);
        pthread_cond_destroy(&D->cv);
        pthread_mutex_destroy(&D->mu);
        free(D);
        return AH_E_NOMEM;
    }
    D->running = true;
    ex->delivs = D;
    return 0;
}

void delivery_stop(struct executor *ex) {
    struct deliveries *D = ex->delivs;
    if (!D)
        return;
    pthread_mutex_lock(&D->mu);
    D->stopping = true;
    pthread_cond_broadcast(&D->cv);
    pthread_mutex_unlock(&D->mu);
    uint64_t one = 1;
    ssize_t w = write(D->abort_fd, &one, sizeof(one));
    (void)w;
    pthread_join(D->thread, NULL);
    ex->delivs = NULL;
    while (D->head) {
        struct deliv_job *j = D->head;
        D->head = j->next;
        job_free(j);
    }
    close(D->abort_fd);
    pthread_cond_destroy(&D->cv);
    pthread_mutex_destroy(&D->mu);
    free(D);
}
