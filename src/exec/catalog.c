/*
 * catalog.c — the agent catalog and the local executor's description (catalog.h).
 *
 * One thread per catalog: it runs `<binary> --version` for each adapter's CLI (through
 * run_command_ex: its own process group, a timeout, and an abort descriptor so that freeing the
 * catalog kills a run that hangs), stores what it learnt under the mutex, then sleeps on that
 * descriptor until the TTL passes. Custom agents are only looked up on PATH: their command is
 * arbitrary and `--version` may mean anything to it, so it is never run.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "catalog.h"
#include "executor.h"

#define VERSION_MAX 64 /* bytes of a version string we keep */

struct cat_agent {
    char *type;
    const char *const *aliases; /* the adapter's (static), or NULL */
    char *binary;               /* NULL for scripted (part of this server) */
    bool custom;
    /* under mu */
    bool checked;
    bool installed;
    char version[VERSION_MAX + 1]; /* "" when unknown */
    int64_t checked_at;            /* wall clock ms */
};

struct agent_catalog {
    pthread_mutex_t mu;
    pthread_t thread;
    bool started;
    int stop_pipe[2]; /* the write end closes to stop the thread */
    unsigned rounds;  /* under mu */
    struct cat_agent *agents;
    size_t n;
};

static const char *const builtin_types[] = {"claude-code", "codex", "gemini", "opencode"};

/* ---- finding and asking a binary ---------------------------------------------------------- */

/* Is the command found (an executable file: the path itself when it has a '/', else in PATH)? */
static bool on_path(const char *cmd) {
    struct stat st;
    if (strchr(cmd, '/'))
        return stat(cmd, &st) == 0 && S_ISREG(st.st_mode) && access(cmd, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    char full[4096];
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        if (n > 0 && snprintf(full, sizeof(full), "%.*s/%s", (int)n, p, cmd) < (int)sizeof(full) &&
            stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0)
            return true;
        p += n + (p[n] == ':');
    }
    return false;
}

/* The version in `--version` output: the first word of the first line that starts with a digit
 * and has a dot ("1.0.3" in "1.0.3 (Claude Code)", "0.42.0" in "codex-cli 0.42.0", "v1.2.3"
 * without its v); otherwise the first line itself, cut to VERSION_MAX. "" when there is none. */
static void parse_version(const char *out, char ret[VERSION_MAX + 1]) {
    ret[0] = '\0';
    const char *line = out;
    while (*line == '\n' || *line == '\r' || *line == ' ' || *line == '\t')
        line++;
    size_t len = strcspn(line, "\r\n");
    for (size_t i = 0; i < len;) {
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        size_t start = i;
        while (i < len && line[i] != ' ' && line[i] != '\t')
            i++;
        const char *w = line + start;
        size_t wl = i - start;
        if (wl > 1 && (w[0] == 'v' || w[0] == 'V') && w[1] >= '0' && w[1] <= '9') {
            w++;
            wl--;
        }
        if (wl > 0 && w[0] >= '0' && w[0] <= '9' && memchr(w, '.', wl)) {
            while (wl > 0 && (w[wl - 1] == ',' || w[wl - 1] == ')' || w[wl - 1] == ';'))
                wl--;
            snprintf(ret, VERSION_MAX + 1, "%.*s", (int)(wl < VERSION_MAX ? wl : VERSION_MAX), w);
            return;
        }
    }
    /* no version-looking word: the line, printable ASCII only (it goes into JSON and UIs) */
    size_t k = 0;
    for (size_t i = 0; i < len && k < VERSION_MAX; i++)
        if ((unsigned char)line[i] >= 0x20 && (unsigned char)line[i] < 0x7f)
            ret[k++] = line[i];
    ret[k] = '\0';
}

/* Checks one agent, outside the lock. */
static void detect(struct agent_catalog *c, const struct cat_agent *a, bool *installed,
                   char version[VERSION_MAX + 1]) {
    version[0] = '\0';
    *installed = on_path(a->binary);
    if (!*installed || a->custom)
        return;
    const char *argv[] = {a->binary, "--version", NULL};
    struct run_limits lim = {.timeout_ms = CATALOG_VERSION_TIMEOUT_MS,
                             .abort_fd = c->stop_pipe[0]};
    char *out = NULL;
    int rc = run_command_ex(argv, NULL, &lim, &out);
    if (rc == AH_E_NOTFOUND)
        *installed = false;
    else if (rc == 0 && out)
        parse_version(out, version);
    free(out); /* a failing or hanging --version: installed, version unknown */
}

static void *catalog_main(void *arg) {
    struct agent_catalog *c = arg;
    for (;;) {
        for (size_t i = 0; i < c->n; i++) {
            struct cat_agent *a = &c->agents[i];
            if (!a->binary)
                continue;
            bool installed;
            char version[VERSION_MAX + 1];
            detect(c, a, &installed, version);
            pthread_mutex_lock(&c->mu);
            a->checked = true;
            a->installed = installed;
            memcpy(a->version, version, sizeof(version));
            a->checked_at = time_now_ms();
            pthread_mutex_unlock(&c->mu);
        }
        pthread_mutex_lock(&c->mu);
        c->rounds++;
        pthread_mutex_unlock(&c->mu);
        /* sleep until the TTL passes or the write end closes (POLLHUP: stop) */
        struct pollfd pfd = {.fd = c->stop_pipe[0], .events = POLLIN};
        int r;
        while ((r = poll(&pfd, 1, (int)CATALOG_TTL_MS)) < 0 && errno == EINTR)
            ;
        if (r != 0)
            return NULL;
    }
}

/* ---- the catalog ---------------------------------------------------------------------------- */

static int add(struct agent_catalog *c, const char *type, const char *const *aliases,
               const char *binary, bool custom) {
    struct cat_agent *a = &c->agents[c->n];
    *a = (struct cat_agent){.type = strdup(type), .aliases = aliases, .custom = custom};
    if (binary)
        a->binary = strdup(binary);
    if (!a->type || (binary && !a->binary)) {
        free(a->type);
        free(a->binary);
        return AH_E_NOMEM;
    }
    a->checked = !binary; /* scripted: nothing to check */
    a->installed = !binary;
    c->n++;
    return 0;
}

int agent_catalog_new(const struct exec_config *cfg, struct agent_catalog **ret) {
    struct agent_catalog *c = calloc(1, sizeof(*c));
    if (!c)
        return AH_E_NOMEM;
    c->stop_pipe[0] = c->stop_pipe[1] = -1;
    pthread_mutex_init(&c->mu, NULL);
    size_t n = 1 + sizeof(builtin_types) / sizeof(builtin_types[0]) + cfg->n_agents;
    int rc = (c->agents = calloc(n, sizeof(*c->agents))) ? 0 : AH_E_NOMEM;
    if (rc == 0)
        rc = add(c, "scripted", NULL, NULL, false);
    for (size_t i = 0; rc == 0 && i < sizeof(builtin_types) / sizeof(builtin_types[0]); i++) {
        const struct agent_adapter *ad = adapter_find(builtin_types[i]);
        rc = add(c, ad->type, ad->aliases, ad->binary, false);
    }
    for (size_t i = 0; rc == 0 && i < cfg->n_agents; i++)
        rc = add(c, cfg->agents[i].type, NULL, cfg->agents[i].command, true);
    if (rc == 0 && pipe2(c->stop_pipe, O_CLOEXEC) < 0)
        rc = ah_err_from_errno(errno);
    if (rc == 0 && pthread_create(&c->thread, NULL, catalog_main, c) != 0)
        rc = AH_E_NOMEM;
    if (rc < 0) {
        agent_catalog_free(c);
        return rc;
    }
    c->started = true;
    *ret = c;
    return 0;
}

void agent_catalog_free(struct agent_catalog *c) {
    if (!c)
        return;
    if (c->stop_pipe[1] >= 0) { /* HUP on the read end: the thread and a running --version stop */
        close(c->stop_pipe[1]);
        c->stop_pipe[1] = -1;
    }
    if (c->started)
        pthread_join(c->thread, NULL);
    if (c->stop_pipe[0] >= 0)
        close(c->stop_pipe[0]);
    for (size_t i = 0; i < c->n; i++) {
        free(c->agents[i].type);
        free(c->agents[i].binary);
    }
    free(c->agents);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

bool agent_catalog_wait(struct agent_catalog *c, int64_t timeout_ms) {
    int64_t deadline = time_mono_ms() + timeout_ms;
    pthread_mutex_lock(&c->mu);
    while (c->rounds == 0 && time_mono_ms() < deadline) {
        pthread_mutex_unlock(&c->mu);
        struct pollfd none = {.fd = -1};
        poll(&none, 0, 10); /* short waits: a condvar with a monotonic timeout is not worth it */
        pthread_mutex_lock(&c->mu);
    }
    bool done = c->rounds > 0;
    pthread_mutex_unlock(&c->mu);
    return done;
}

bool agent_catalog_is_custom(const struct agent_catalog *c, const char *type) {
    for (size_t i = 0; c && type && i < c->n; i++)
        if (c->agents[i].custom && strcmp(c->agents[i].type, type) == 0)
            return true;
    return false;
}

static json_t *agent_json(const struct cat_agent *a, const char *server_version) {
    char ref[200], ts[TIME_RFC3339_LEN + 1];
    snprintf(ref, sizeof(ref), "/api/v1/schemas/agents/%s.json", a->type);
    const char *version = !a->binary ? server_version : a->version[0] ? a->version : NULL;
    json_t *versions = json_array(), *aliases = json_array();
    json_array_append_new(versions, json_string("latest"));
    if (version && strcmp(version, "latest") != 0)
        json_array_append_new(versions, json_string(version));
    for (const char *const *al = a->aliases; al && *al; al++)
        json_array_append_new(aliases, json_string(*al));
    if (a->checked_at)
        time_format(a->checked_at, ts);
    json_t *j = json_pack("{s:s, s:o, s:s, s:o, s:o, s:o, s:s, s:o, s:o}", "type", a->type,
                          "versions", versions, "settingsSchemaRef", ref, "installed",
                          a->checked ? json_boolean(a->installed) : json_null(), "version",
                          version ? json_string(version) : json_null(), "binary",
                          a->binary ? json_string(a->binary) : json_null(), "source",
                          a->custom ? "config" : "builtin", "aliases", aliases, "checkedAt",
                          a->checked_at ? json_string(ts) : json_null());
    return j;
}

json_t *agent_catalog_items(struct agent_catalog *c, const char *server_version) {
    json_t *items = json_array();
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; items && i < c->n; i++)
        if (json_array_append_new(items, agent_json(&c->agents[i], server_version)) < 0) {
            json_decref(items);
            items = NULL;
        }
    pthread_mutex_unlock(&c->mu);
    return items;
}

/* ---- the local executor --------------------------------------------------------------------- */

json_t *exec_local_executor(struct executor *ex) {
    struct utsname u;
    const char *arch = uname(&u) == 0 ? u.machine : "unknown";
    char host[256] = "localhost";
    if (gethostname(host, sizeof(host) - 1) < 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    /* what workspace.c can really do here: git and copy always; btrfs and reflink on btrfs */
    json_t *caps = json_pack("[s, s]", "git", "copy");
    struct statfs fs;
    if (caps && statfs(ex->cfg.data_dir, &fs) == 0 && fs.f_type == 0x9123683E /* BTRFS */) {
        json_array_append_new(caps, json_string("reflink"));
        json_array_append_new(caps, json_string("btrfs"));
    }
    pthread_mutex_lock(&ex->mu);
    size_t running = ex->n_live;
    pthread_mutex_unlock(&ex->mu);
    running += (size_t)exec_slots_taken(ex); /* a budget shared with an enrolled executor */
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:I, s:I, s:s}", "id", "local", "name",
                     host, "os", "linux", "arch", arch, "snapshotCapabilities", caps, "health",
                     "online", "status", "online", "capacity", (json_int_t)ex->cfg.max_concurrent,
                     "running", (json_int_t)running, "controller", "server");
}
