/*
 * provider.c — provisioning a session's workspace.
 *
 * Providers are tried in the task's workspace.snapshotPreference order (or the configured
 * default); the first that works wins and its name is recorded on the session:
 *   git      a clone sharing objects with a local mirror of the repository (cache keyed by the
 *            repo URL, one mirror per URL, updated with fetch), checked out at branch/commit;
 *   reflink  a copy-on-write copy (cp --reflink=always) of a prepared source tree;
 *   btrfs    a subvolume snapshot of the source tree, when the data directory is on btrfs;
 *   copy     a plain recursive copy (always works; last resort).
 * zfs, overlay and agentfs are accepted names but not available in this build; they are skipped
 * with a reason. For repo.mode=git the source tree of the copy providers is a checkout of the
 * requested commit kept in the cache (keyed by URL and commit); for repo.mode=none it is the
 * configured template, or nothing (an empty workspace).
 *
 * Helper tools (git, cp, btrfs) run through run_command; their output is kept for the error.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "../os/os.h"
#include "internal.h"

#define BTRFS_MAGIC 0x9123683E

struct ctx {
    const struct workspace_request *wr;
    const char *mode;     /* repo.mode */
    const char *url, *branch, *commit;
    char ws[4096];        /* the workspace path */
    char cache[4096];     /* <data>/git-cache */
    char mirror[4096];    /* the URL's mirror (git mode) */
    char source[4096];    /* the source tree for copy providers ("" = empty workspace) */
    bool source_ready;
    char resolved[64];    /* the commit being checked out */
    struct ah_buf errors; /* "provider: reason; …" */
    struct run_limits limits; /* every helper command: the clone timeout and the abort fd */
};

/* Why a helper command gave up, in words, or NULL when it ran to its end. */
static const char *gave_up(const struct ctx *c, int rc, char *buf, size_t n) {
    if (rc == AH_E_TIMEOUT)
        snprintf(buf, n, "timed out after %lld ms (clone timeout)",
                 (long long)c->limits.timeout_ms);
    else if (rc == AH_E_CANCELED)
        snprintf(buf, n, "abandoned: the session was stopped");
    else
        return NULL;
    return buf;
}

static void note(struct ctx *c, const char *provider, const char *why) {
    char line[700];
    snprintf(line, sizeof(line), "%s%s: %.600s", c->errors.n ? "; " : "", provider, why);
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    ah_buf_puts(&c->errors, line);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
    return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int workspace_remove(const char *path) {
    if (!path || !*path || strcmp(path, "/") == 0)
        return AH_E_INVAL;
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : ah_err_from_errno(errno);
    int rc = ws_unmount(path); /* never delete through a mount (an overlay branch's files) */
    if (rc < 0)
        return rc;
    if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) == 0)
        return 0;
    /* a btrfs subvolume cannot be rmdir'ed */
    const char *argv[] = {"btrfs", "subvolume", "delete", path, NULL};
    return run_command(argv, NULL, NULL) == 0 ? 0 : AH_E_IO;
}

static void url_key(const char *url, char out[17]) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)url, strlen(url), md);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int git(struct ctx *c, const char *cwd, const char *const *args, char **out) {
    const char *argv[16] = {"git", "-c", "advice.detachedHead=false", "-c",
                            "init.defaultBranch=main"};
    size_t n = 5;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return run_command_ex(argv, cwd, &c->limits, out);
}

/* The mirror of the repository, cloned or refreshed under a per-URL lock. */
static int ensure_mirror(struct ctx *c, struct ah_problem *reterr) {
    char key[17];
    url_key(c->url, key);
    snprintf(c->mirror, sizeof(c->mirror), "%s/%s.git", c->cache, key);
    char lock[4200];
    snprintf(lock, sizeof(lock), "%s/%s.lock", c->cache, key);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0)
        return problem_set(reterr, AH_E_IO, "cannot lock the git cache: %s", strerror(errno));
    flock(lfd, LOCK_EX);
    int rc;
    AH_AUTOFREE char *out = NULL;
    struct stat st;
    if (stat(c->mirror, &st) == 0) {
        const char *args[] = {"-C", c->mirror, "fetch", "--prune", "--quiet", NULL};
        rc = git(c, NULL, args, &out);
        if (rc == AH_E_CANCELED)
            rc = problem_set(reterr, rc, "provisioning abandoned: the session was stopped");
        else
            rc = 0; /* offline or too slow: work from what the cache has; the checkout will tell */
    } else {
        char tmp[4200];
        snprintf(tmp, sizeof(tmp), "%s.tmp", c->mirror);
        workspace_remove(tmp);
        const char *args[] = {"clone", "--mirror", "--quiet", c->url, tmp, NULL};
        rc = git(c, NULL, args, &out);
        if (rc == 0 && rename(tmp, c->mirror) < 0)
            rc = AH_E_IO;
        if (rc != 0) {
            workspace_remove(tmp);
            char why[128];
            const char *stopped = gave_up(c, rc, why, sizeof(why));
            AH_AUTOFREE char *shown = text_redact_userinfo(c->url);
            rc = problem_set(reterr, stopped ? rc : AH_E_INVAL, "cannot clone %s: %s",
                             shown ? shown : "the repository",
                             stopped                ? stopped
                             : out && *out          ? out
                                                    : ah_strerror(rc < 0 ? rc : AH_E_IO));
        }
    }
    flock(lfd, LOCK_UN);
    close(lfd);
    return rc;
}

/* Resolves commit or branch (or HEAD) in the mirror. */
static int resolve(struct ctx *c, struct ah_problem *reterr) {
    char spec[300];
    snprintf(spec, sizeof(spec), "%s^{commit}",
             c->commit ? c->commit : c->branch ? c->branch : "HEAD");
    const char *args[] = {"-C", c->mirror, "rev-parse", "--verify", "--quiet", spec, NULL};
    AH_AUTOFREE char *out = NULL;
    int rc = git(c, NULL, args, &out);
    if (rc != 0 || !out || strlen(out) < 40)
        return problem_set(reterr, AH_E_INVAL, "%s %s not found in %s",
                           c->commit ? "commit" : "branch",
                           c->commit ? c->commit : c->branch ? c->branch : "HEAD", c->url);
    snprintf(c->resolved, sizeof(c->resolved), "%.40s", out);
    return 0;
}

/* git clone --shared of the mirror into dir, checked out at the resolved commit on the
 * requested branch (or ah/<session>). */
static int checkout_into(struct ctx *c, const char *dir, char **out) {
    const char *clone[] = {"clone", "--quiet", "--shared", "--no-checkout", c->mirror, dir, NULL};
    int rc = git(c, NULL, clone, out);
    if (rc != 0)
        return rc;
    free(*out);
    *out = NULL;
    char branch[300];
    snprintf(branch, sizeof(branch), "%s%s", c->branch ? "" : "ah/",
             c->branch ? c->branch : c->wr->session_id);
    const char *co[] = {"-C", dir, "checkout", "--quiet", "-B", branch, c->resolved, NULL};
    rc = git(c, NULL, co, out);
    if (rc != 0)
        return rc;
    const char *remote[] = {"-C", dir, "remote", "set-url", "origin", c->url, NULL};
    free(*out);
    *out = NULL;
    return git(c, NULL, remote, out);
}

static int prov_git(struct ctx *c) {
    if (strcmp(c->mode, "git") != 0) {
        note(c, "git", "needs repo.mode git");
        return AH_E_NOTIMPL;
    }
    AH_AUTOFREE char *out = NULL;
    int rc = checkout_into(c, c->ws, &out);
    if (rc != 0) {
        note(c, "git", out && *out ? out : "git failed");
        workspace_remove(c->ws);
        return AH_E_IO;
    }
    return 0;
}

static bool on_btrfs(const char *path) {
    struct statfs sf;
    return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == BTRFS_MAGIC;
}

/* The tree the copy providers copy from: a cached checkout (git) or the template (none). */
static int ensure_source(struct ctx *c, const char *provider) {
    if (c->source_ready)
        return 0;
    if (strcmp(c->mode, "none") == 0) {
        snprintf(c->source, sizeof(c->source), "%s",
                 c->wr->template_dir ? c->wr->template_dir : "");
        c->source_ready = true;
        return 0;
    }
    char key[17];
    url_key(c->url, key);
    snprintf(c->source, sizeof(c->source), "%s/%s-tree-%s", c->cache, key, c->resolved);
    struct stat st;
    if (stat(c->source, &st) == 0) {
        c->source_ready = true;
        return 0;
    }
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp-%s", c->source, c->wr->session_id);
    if (on_btrfs(c->cache)) { /* make it a subvolume so the btrfs provider can snapshot it */
        const char *argv[] = {"btrfs", "subvolume", "create", tmp, NULL};
        run_command(argv, NULL, NULL);
    }
    AH_AUTOFREE char *out = NULL;
    int rc = checkout_into(c, tmp, &out);
    if (rc == 0 && rename(tmp, c->source) < 0 && errno != EEXIST && errno != ENOTEMPTY)
        rc = AH_E_IO;
    if (rc != 0) {
        workspace_remove(tmp);
        note(c, provider, out && *out ? out : "cannot prepare the source tree");
        return AH_E_IO;
    }
    workspace_remove(tmp); /* a concurrent session renamed its copy first */
    c->source_ready = true;
    return 0;
}

static int copy_tree(struct ctx *c, const char *provider, const char *const *argv) {
    if (ensure_source(c, provider) < 0)
        return AH_E_IO;
    if (!c->source[0]) { /* repo.mode none without a template: an empty workspace */
        int rc = make_dirs(c->ws, 0700);
        if (rc < 0)
            note(c, provider, ah_strerror(rc));
        return rc;
    }
    AH_AUTOFREE char *out = NULL;
    int rc = run_command_ex(argv, NULL, &c->limits, &out);
    char why[128];
    if (rc != 0) {
        const char *stopped = gave_up(c, rc, why, sizeof(why));
        note(c, provider, stopped ? stopped : out && *out ? out : "copy failed");
        workspace_remove(c->ws);
        return AH_E_IO;
    }
    return 0;
}

static int prov_reflink(struct ctx *c) {
    if (ensure_source(c, "reflink") < 0)
        return AH_E_IO;
    char src[4200];
    snprintf(src, sizeof(src), "%s/.", c->source);
    if (c->source[0] && make_dirs(c->ws, 0700) < 0)
        return AH_E_IO;
    const char *argv[] = {"cp", "-a", "--reflink=always", src, c->ws, NULL};
    return copy_tree(c, "reflink", argv);
}

static int prov_btrfs(struct ctx *c) {
    if (!on_btrfs(c->wr->data_dir)) {
        note(c, "btrfs", "the data directory is not on btrfs");
        return AH_E_NOTIMPL;
    }
    if (ensure_source(c, "btrfs") < 0)
        return AH_E_IO;
    struct stat st;
    if (!c->source[0] || stat(c->source, &st) < 0 || st.st_ino != 256) {
        note(c, "btrfs", "the source tree is not a btrfs subvolume");
        return AH_E_NOTIMPL;
    }
    const char *argv[] = {"btrfs", "subvolume", "snapshot", c->source, c->ws, NULL};
    return copy_tree(c, "btrfs", argv);
}

static int prov_copy(struct ctx *c) {
    if (ensure_source(c, "copy") < 0)
        return AH_E_IO;
    char src[4200];
    snprintf(src, sizeof(src), "%s/.", c->source);
    if (c->source[0] && make_dirs(c->ws, 0700) < 0)
        return AH_E_IO;
    const char *argv[] = {"cp", "-a", src, c->ws, NULL};
    return copy_tree(c, "copy", argv);
}

static int try_provider(struct ctx *c, const char *name) {
    if (strcmp(name, "git") == 0)
        return prov_git(c);
    if (strcmp(name, "reflink") == 0)
        return prov_reflink(c);
    if (strcmp(name, "btrfs") == 0)
        return prov_btrfs(c);
    if (strcmp(name, "copy") == 0)
        return prov_copy(c);
    note(c, name, "not available in this build");
    return AH_E_NOTIMPL;
}

int workspace_provision(const struct workspace_request *wr, char **ret_provider, char **ret_path,
                        struct ah_problem *reterr) {
    struct ctx c = {.wr = wr,
                    .errors = {.max = 4096},
                    .limits = {.timeout_ms = wr->clone_timeout_ms, .abort_fd = wr->abort_fd}};
    json_t *repo = json_object_get(wr->request, "repo");
    c.mode = json_string_value(json_object_get(repo, "mode"));
    c.url = json_string_value(json_object_get(repo, "url"));
    c.branch = json_string_value(json_object_get(repo, "branch"));
    c.commit = json_string_value(json_object_get(repo, "commit"));
    if (!c.mode)
        return problem_set(reterr, AH_E_INVAL, "the task has no repo.mode");
    snprintf(c.ws, sizeof(c.ws), "%s/workspaces/%s", wr->data_dir, wr->session_id);
    snprintf(c.cache, sizeof(c.cache), "%s/git-cache", wr->data_dir);
    int rc = make_dirs(c.cache, 0700);
    if (rc == 0) {
        char parent[4200];
        snprintf(parent, sizeof(parent), "%s/workspaces", wr->data_dir);
        rc = make_dirs(parent, 0700);
    }
    if (rc < 0)
        return problem_set(reterr, rc, "cannot create %s: %s", c.cache, ah_strerror(rc));
    workspace_remove(c.ws); /* a leftover from an earlier attempt */
    if (strcmp(c.mode, "git") == 0) {
        if (!c.url)
            return problem_set(reterr, AH_E_INVAL, "repo.url is missing");
        if ((rc = ensure_mirror(&c, reterr)) < 0 || (rc = resolve(&c, reterr)) < 0)
            return rc;
    } else if (strcmp(c.mode, "none") != 0) {
        return problem_set(reterr, AH_E_INVAL, "repo.mode %s cannot be provisioned", c.mode);
    }

    /* the order: the task's preference, else the configured default */
    const char *order[AH_LIMIT_LIST_ITEMS + 1];
    size_t n = 0;
    json_t *pref = json_object_get(json_object_get(wr->request, "workspace"), "snapshotPreference");
    size_t i;
    json_t *v;
    json_array_foreach(pref, i, v) {
        if (n < AH_LIMIT_LIST_ITEMS && json_string_value(v))
            order[n++] = json_string_value(v);
    }
    if (n == 0)
        for (const char *const *d = wr->default_preference; d && *d && n < AH_LIMIT_LIST_ITEMS; d++)
            order[n++] = *d;
    if (n == 0) {
        static const char *const builtin[] = {"git", "reflink", "btrfs", "copy"};
        for (; n < 4; n++)
            order[n] = builtin[n];
    }
    for (i = 0; i < n; i++) {
        if (try_provider(&c, order[i]) == 0) {
            const char *name = order[i];
            chmod(c.ws, 0700); /* D28: cp -a gives it the template's mode */
            if (strcmp(c.mode, "none") == 0 && !c.source[0])
                name = "empty";
            *ret_provider = strdup(name);
            *ret_path = strdup(c.ws);
            ah_buf_clear(&c.errors);
            if (!*ret_provider || !*ret_path) {
                free(*ret_provider);
                free(*ret_path);
                return problem_set(reterr, AH_E_NOMEM, "out of memory");
            }
            return 0;
        }
    }
    problem_set(reterr, AH_E_IO, "no workspace provider worked (%s)",
                c.errors.p ? c.errors.p : "none tried");
    ah_buf_clear(&c.errors);
    return AH_E_IO;
}

void workspace_repo_id(const char *url, char out[22]) {
    char key[17];
    url_key(url, key);
    snprintf(out, 22, "repo-%s", key);
}

static void mirror_path(const char *data_dir, const char *url, char *out, size_t n) {
    char key[17];
    url_key(url, key);
    snprintf(out, n, "%s/git-cache/%s.git", data_dir, key);
}

/* The mirror's HEAD branch, read from its HEAD file ("ref: refs/heads/<branch>"): GET /repos
 * asks this for every repository on the page, too often to start a git each time. */
int workspace_repo_default(const char *data_dir, const char *url, char **ret) {
    char mirror[4200], head[4300];
    mirror_path(data_dir, url, mirror, sizeof(mirror));
    snprintf(head, sizeof(head), "%s/HEAD", mirror);
    FILE *f = fopen(head, "re");
    if (!f)
        return AH_E_NOTFOUND;
    char line[512];
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    static const char prefix[] = "ref: refs/heads/";
    if (!got || strncmp(line, prefix, sizeof(prefix) - 1) != 0)
        return AH_E_NOTFOUND; /* detached, or not a mirror we made */
    char *branch = line + sizeof(prefix) - 1;
    branch[strcspn(branch, "\r\n")] = '\0';
    if (!*branch)
        return AH_E_NOTFOUND;
    return (*ret = strdup(branch)) ? 0 : AH_E_NOMEM;
}

/* ---- what a repository has: branches and files (for GET /repositories/…) -------------------- */

/* Lines of `git …` output (within lim when given). */
static int git_lines(const char *const *argv, const struct run_limits *lim, char **ret) {
    int rc = run_command_ex(argv, NULL, lim, ret);
    if (rc != 0) {
        free(*ret);
        *ret = NULL;
        return rc < 0 ? rc : AH_E_NETWORK;
    }
    return 0;
}

int workspace_repo_branches(const char *data_dir, const char *url, const struct run_limits *remote,
                            json_t **ret) {
    char mirror[4200];
    mirror_path(data_dir, url, mirror, sizeof(mirror));
    struct stat st;
    bool cached = stat(mirror, &st) == 0;
    AH_AUTOFREE char *refs = NULL, *head = NULL;
    int rc;
    if (cached && !remote) {
        const char *a[] = {"git", "-C", mirror, "for-each-ref",
                           "--format=%(objectname) %(refname:short)", "refs/heads", NULL};
        rc = git_lines(a, NULL, &refs);
        if (rc == 0 && workspace_repo_default(data_dir, url, &head) < 0)
            head = NULL;
    } else if (remote) { /* never provisioned: ask the remote (a background worker, exec.c) */
        const char *a[] = {"git", "ls-remote", "--heads", "--symref", url, NULL};
        rc = git_lines(a, remote, &refs);
    } else {
        return AH_E_NOTFOUND;
    }
    if (rc < 0)
        return rc;
    json_t *out = json_array();
    char def[256] = "";
    if (head)
        snprintf(def, sizeof(def), "%.*s", (int)strcspn(head, "\r\n"), head);
    for (char *line = refs, *next; out && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, "ref: refs/heads/", 16) == 0) { /* ls-remote --symref: HEAD's branch */
            snprintf(def, sizeof(def), "%.*s", (int)strcspn(line + 16, "\t"), line + 16);
            continue;
        }
        char *sep = strpbrk(line, " \t");
        if (!sep || sep - line < 40)
            continue;
        *sep = '\0';
        const char *name = sep + 1;
        if (strncmp(name, "refs/heads/", 11) == 0)
            name += 11;
        json_array_append_new(out, json_pack("{s:s, s:b, s:s}", "name", name, "is_default", 0,
                                             "last_commit", line));
    }
    size_t i;
    json_t *b;
    json_array_foreach(out, i, b) {
        if (def[0] && strcmp(json_string_value(json_object_get(b, "name")), def) == 0)
            json_object_set_new(b, "is_default", json_true());
    }
    if (!out)
        return AH_E_NOMEM;
    *ret = out;
    return 0;
}

int workspace_repo_files(const char *data_dir, const char *url, size_t max, json_t **ret) {
    char mirror[4200];
    mirror_path(data_dir, url, mirror, sizeof(mirror));
    struct stat st;
    if (stat(mirror, &st) < 0)
        return AH_E_NOTFOUND; /* nothing fetched yet: no tree to list */
    const char *argv[] = {"git", "-C", mirror, "ls-tree", "-r", "--name-only", "HEAD", NULL};
    AH_AUTOFREE char *names = NULL;
    int rc = git_lines(argv, NULL, &names);
    if (rc < 0)
        return rc;
    json_t *out = json_array();
    size_t n = 0;
    for (char *line = names, *next; out && line && *line && n < max; line = next, n++) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        json_array_append_new(out, json_pack("{s:s, s:s}", "path", line, "detail",
                                             "Tracked file"));
    }
    if (!out)
        return AH_E_NOMEM;
    *ret = out;
    return 0;
}
