/*
 * workspace.h — the workspace layer's whole interface: a private object store per session,
 * snapshots of a working directory, trees, reads, change lists and diffs (D30–D32).
 *
 * The store is a bare git repository (libgit2) in a directory of the session's data directory.
 * It is never the user's repository: the user's .git, index and refs are not read or written.
 * A snapshot is a commit on `refs/ah/snapshots/snap-<ULID>`; its parent is the snapshot taken
 * before it in the same store, its message carries the label. Snapshots are incremental: a stat
 * cache in the store directory (path → size, mtime, ctime, inode, mode → blob id) means only
 * files whose metadata changed are read and hashed.
 *
 * Errors: 0 (or a count) on success, a negative AH_E_* on failure; `ret_` out-params are written
 * only on success. Every list and buffer handed out belongs to the caller, who frees it with the
 * matching *_clear / *_free.
 *
 * Threading: any function may be called from any thread. One `struct ws_store` handle is used by
 * one thread at a time (the caller serialises; libgit2 objects are not shared between threads);
 * different handles, even on the same directory, may be used concurrently. A store has a single
 * writer: ws_snapshot takes an exclusive lock (flock on `<dir>/ah-snapshot.lock`) for its whole
 * run, so two snapshots of one store — from two handles or two processes — run one after the
 * other, never interleaved. Readers never block: refs and objects are written atomically.
 */
#ifndef AH_WORKSPACE_H
#define AH_WORKSPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

#define WS_SNAP_PREFIX "snap-"
#define WS_SNAP_ID_LEN (5 + ULID_LEN) /* "snap-" + ULID */
#define WS_PATH_MAX 4096              /* bytes of a workspace-relative path */
#define WS_EVENT_DIFF_MAX (64 * 1024) /* unified text carried by a `diff` event (D31) */
#define WS_CONTEXT_MAX 10             /* `context` of the diff routes (API.md §7.6) */

/* ---- paths --------------------------------------------------------------------------------- */

/*
 * Normalises a workspace-relative path given as `len` bytes: "./" and empty segments are dropped,
 * "a/../b" becomes "b", a trailing "/" is dropped. Refused with AH_E_INVAL: an absolute path, a
 * ".." that climbs out of the workspace, a NUL byte, invalid UTF-8, a ".git" segment (the
 * workspace's repository is not workspace content), and more than WS_PATH_MAX bytes in or out.
 * "" and "." normalise to "" (the workspace root). Pure; out holds WS_PATH_MAX + 1 bytes.
 */
int ws_path_normalise(const char *in, size_t len, char out[WS_PATH_MAX + 1]);

/*
 * How many of text's len bytes to keep so that at most max remain, cut after the last '\n' that
 * fits (or, when the first line alone is longer, at max on a UTF-8 character boundary). Sets
 * *ret_truncated when anything was cut. The `diff` event uses it with WS_EVENT_DIFF_MAX (D31).
 */
size_t ws_truncate_lines(const char *text, size_t len, size_t max, bool *ret_truncated);

/* ---- the store ----------------------------------------------------------------------------- */

struct ws_store;

/* Opens the store in dir, creating the directory and a bare repository there when missing.
 * 0, AH_E_IO (not a directory, not a repository, no permission) or AH_E_NOMEM. */
int ws_store_open(const char *dir, struct ws_store **ret_store);
void ws_store_free(struct ws_store *st); /* NULL-safe */
AH_DEFINE_CLEANUP(struct ws_store, ws_store_free)

/* What a snapshot did: entries seen, and how many files it had to read and hash (the rest came
 * from the stat cache). */
struct ws_snapshot_stats {
    uint64_t files;  /* regular files and symlinks in the snapshot */
    uint64_t hashed; /* of those, read and hashed this time */
    uint64_t bytes_hashed;
    uint64_t skipped; /* entries left out: sockets, fifos, devices, names git refuses */
};

/*
 * Records workdir as a new snapshot labelled `label` (NULL: "snapshot") and writes its id to
 * ret_id. Regular files keep their executable bit (100755/100644); symlinks are stored as
 * symlinks (120000, the target text), never followed; directories named ".git" are skipped at
 * every level; empty directories are not recorded (git cannot). The parent is the previous
 * snapshot of the store. ret_stats (nullable) gets the counts. Takes the store's writer lock.
 * AH_E_NOTFOUND when workdir does not exist, AH_E_IO on read errors (a file that vanishes while
 * being read is left out, as if deleted before the snapshot).
 */
int ws_snapshot(struct ws_store *st, const char *workdir, const char *label,
                char ret_id[WS_SNAP_ID_LEN + 1], struct ws_snapshot_stats *ret_stats);

/*
 * The same, when the caller knows which paths changed since the store's newest snapshot (the
 * workspace watcher's inotify events): only those paths are looked at, the rest of the tree is
 * the newest snapshot's. A path names a file, a symlink or a directory (walked whole); a path
 * that no longer exists is removed. The caller must name every change: after a lost event
 * (IN_Q_OVERFLOW) it calls ws_snapshot. Falls back to the full walk by itself when there is no
 * earlier snapshot of this workdir, for "" (the root), past 1000 paths, or when a directory
 * became a file or the reverse. AH_E_INVAL for a path ws_path_normalise refuses.
 */
int ws_snapshot_changed(struct ws_store *st, const char *workdir, const char *label,
                        const char *const *paths, size_t npaths, char ret_id[WS_SNAP_ID_LEN + 1],
                        struct ws_snapshot_stats *ret_stats);

struct ws_snapshot_info {
    char id[WS_SNAP_ID_LEN + 1];
    char parent[WS_SNAP_ID_LEN + 1]; /* "" for the first snapshot */
    char tree[41];                   /* the root tree's object id (hex) */
    char *label;                     /* owned; ws_snapshot_info_clear frees it */
    int64_t created_ms;
};
/* Reads a snapshot's metadata. AH_E_INVAL for a malformed id, AH_E_NOTFOUND for an unknown one. */
int ws_snapshot_info(struct ws_store *st, const char *id, struct ws_snapshot_info *ret);
void ws_snapshot_info_clear(struct ws_snapshot_info *info);
/* The newest snapshot's id, or AH_E_NOTFOUND when the store has none. */
int ws_snapshot_latest(struct ws_store *st, char ret_id[WS_SNAP_ID_LEN + 1]);

/* ---- trees and reads ----------------------------------------------------------------------- */

/* In every call below, a snapshot argument is a snapshot id, or NULL / "" for the empty tree
 * (nothing), which is how "all changes since nothing" is asked for. */

enum ws_type { WS_FILE, WS_SYMLINK, WS_DIR };

struct ws_entry {
    char *path; /* workspace-relative, no leading or trailing "/" */
    enum ws_type type;
    uint32_t mode; /* git mode: 0100644, 0100755, 0120000, 040000 */
    uint64_t size; /* bytes of the blob (a symlink: its target's length); 0 for directories */
};
struct ws_entries {
    struct ws_entry *v;
    size_t n;
};
void ws_entries_clear(struct ws_entries *e);

/* Lists the entries under dir ("" or NULL: the root; normalised by the caller) of a snapshot,
 * in git's order (byte order of full paths), all levels when recursive. AH_E_NOTFOUND when dir
 * is not a directory of the snapshot. */
int ws_tree(struct ws_store *st, const char *snap, const char *dir, bool recursive,
            struct ws_entries *ret);

/* One entry by path. AH_E_NOTFOUND when absent. ret->path is owned by the caller. */
int ws_stat(struct ws_store *st, const char *snap, const char *path, struct ws_entry *ret);

struct ws_blob {
    char *data; /* owned; NUL-terminated (the NUL is not counted in size) */
    size_t size;
    uint32_t mode; /* a symlink's data is its target text */
};
/* Reads a file or symlink of a snapshot. AH_E_TOOLARGE when it is larger than cap bytes (nothing
 * is read), AH_E_NOTFOUND when absent, AH_E_INVAL for a directory. */
int ws_read(struct ws_store *st, const char *snap, const char *path, size_t cap,
            struct ws_blob *ret);
void ws_blob_clear(struct ws_blob *b);

/* ---- changes ------------------------------------------------------------------------------- */

enum ws_status { WS_ADDED, WS_MODIFIED, WS_DELETED, WS_RENAMED };
const char *ws_status_name(enum ws_status s); /* "added", "modified", "deleted", "renamed" */

struct ws_change {
    char *path;     /* the new path (a deleted file: its old path) */
    char *old_path; /* renamed: the old path; otherwise NULL */
    enum ws_status status;
    uint32_t old_mode, new_mode;        /* 0 on the missing side */
    int similarity;                     /* renamed: 50..100 (git's similarity index); otherwise 0 */
    int64_t lines_added, lines_removed; /* from the diff; 0 for binary files */
    bool binary;   /* git's rule: a NUL byte in the first 8000 bytes of either side */
    uint64_t size; /* bytes of the new side (a deleted file: of the old side) */
};
struct ws_changes {
    struct ws_change *v;
    size_t n;
};
void ws_changes_clear(struct ws_changes *c);

/* The files that differ between two snapshots, in git's order, with rename detection as git's
 * default (50% similarity, measured as git does). A change of type (file ↔ symlink) is one
 * `modified` entry. */
int ws_changes(struct ws_store *st, const char *from, const char *to, struct ws_changes *ret);

/* ---- diffs --------------------------------------------------------------------------------- */

enum ws_format {
    WS_UNIFIED, /* byte-identical to `git diff --no-color -U<context>` for the same two trees */
    WS_PATCH,   /* `git diff --binary --full-index`: `git apply` turns `from` into `to` */
    WS_SPLIT,   /* JSON: {"files":[{path, old_path, status, binary, hunks:[{header, rows}]}]} */
    WS_HTML,    /* an escaped HTML5 fragment, no scripts, no event handlers, no external refs */
};

struct ws_diff_opts {
    enum ws_format format;
    int context;              /* lines of context 0..WS_CONTEXT_MAX (3 by ws_diff_opts_init) */
    bool full;                /* whole-file context (overrides context) */
    const char *const *paths; /* only files whose new or old path is one of these; NULL: all */
    size_t n_paths;
};
void ws_diff_opts_init(struct ws_diff_opts *o);

/*
 * Appends the diff from `from` to `to` in o->format to out (the caller's buffer; its cap applies
 * and gives AH_E_TOOLARGE). Compare a snapshot with the live workdir by snapshotting first.
 * Split rows: {"kind": context|add|del|change, "left": {"line": n, "text": s} | null,
 * "right": …}; texts drop the line's final newline, invalid UTF-8 becomes U+FFFD.
 */
int ws_diff(struct ws_store *st, const char *from, const char *to, const struct ws_diff_opts *o,
            struct ah_buf *out);

/* ---- providers: provisioning a session's workspace (provider.c) ------------------------------------------------------------------------------ */

struct run_limits; /* os/os.h: a timeout and an abort descriptor */

struct workspace_request {
    const char *data_dir;
    const char *session_id;
    const json_t *request;   /* the task's canonical create request */
    const char *const *default_preference; /* when the task has none */
    const char *template_dir; /* repo.mode=none: copied when set */
    int64_t clone_timeout_ms; /* each git/cp step is abandoned past it (0 = none) */
    int abort_fd;             /* -1, or readable when the session no longer wants it (stop) */
};
/* Makes <data_dir>/workspaces/<session_id> with the first provider that works; writes the
 * provider's name and the path (caller frees both). Errors name every provider tried. */
int workspace_provision(const struct workspace_request *wr, char **ret_provider, char **ret_path,
                        struct ah_problem *reterr);
/* A repository's branches [{name, is_default, last_commit}]: with remote NULL from our mirror
 * (local and quick; AH_E_NOTFOUND without one), else from a `git ls-remote` within those
 * limits (it waits on the network: never on an HTTP thread). AH_E_NETWORK when git cannot
 * reach it, AH_E_TIMEOUT / AH_E_CANCELED when the limits cut it short. */
int workspace_repo_branches(const char *data_dir, const char *url, const struct run_limits *remote,
                            json_t **ret);
/* The default branch of our mirror of url (caller frees); AH_E_NOTFOUND without a mirror. */
int workspace_repo_default(const char *data_dir, const char *url, char **ret);
/* Up to max tracked files [{path, detail}] of the mirror's HEAD; AH_E_NOTFOUND without one. */
int workspace_repo_files(const char *data_dir, const char *url, size_t max, json_t **ret);
/* Removes a workspace directory tree (btrfs subvolumes included). */
int workspace_remove(const char *path);

/* "repo-<16 hex of SHA-256(url)>": the stable id of a repository (the git cache's key too). */
void workspace_repo_id(const char *url, char out[22]);

/* ---- line counts of one change (count.c, libgit2) ---------------------------------------- */

struct diff_stat {
    int64_t added, removed;
    bool binary;
};
/* Line counts of the change from old to new (either may be NULL = absent file). */
int diff_count(const char *old, size_t old_len, const char *new_text, size_t new_len,
               struct diff_stat *ret);

/* ---- the timeline (checkout.c) -------------------------------------------------------------- */

/* The bytes snapshot `id` added to the store on disk: its new loose objects (changed files,
 * the trees above them, the commit). Objects found elsewhere (packed, borrowed) count 0. */
int ws_snapshot_added_bytes(struct ws_store *st, const char *id, uint64_t *ret_bytes);

/* Writes snapshot `snap` out into dir (created 0700 when missing; it must hold none of the
 * snapshot's paths): files, executable bits, symlinks as symlinks. readonly: files are 0444
 * (0555 executable), directories stay writable by the owner so the view can be removed.
 * ret_files (nullable) gets the count of files and links written. */
int ws_checkout(struct ws_store *st, const char *snap, const char *dir, bool readonly,
                uint64_t *ret_files);
/* A branch's workspace: ws_checkout (writable), and st's stat cache seeded for dir with every
 * file written, so the next snapshot of dir (the branch's base) hashes nothing: it finds what
 * it needs in the cache and the trees in the store. The files' mtimes are set a little in the
 * past, so the cache entries are not "racy" and any later write is seen. */
int ws_checkout_seeded(struct ws_store *st, const char *snap, const char *dir,
                       uint64_t *ret_files);
/* The lower layer of overlay branches from snap (overlay.c): the snapshot written out at layer
 * (writable modes, mtimes in the past) with the stat cache of what was written in
 * <layer>.statcache, through a temporary directory renamed into place. Nothing is written when
 * layer exists; *ret_wrote says whether this call wrote it (ret_files: how many files). */
int ws_layer_write(struct ws_store *st, const char *snap, const char *layer, bool *ret_wrote,
                   uint64_t *ret_files);
/* Records a new snapshot of st whose tree is snap's (a snapshot st can read), without reading
 * any file: a workspace known to hold exactly snap (an overlay on its layer). cache_from
 * (nullable): a stat cache written for another directory with the same files (the layer's),
 * made st's cache for workdir, so the next snapshot of workdir hashes only what changed. */
int ws_snapshot_as(struct ws_store *st, const char *snap, const char *label,
                   const char *cache_from, const char *workdir, char ret_id[WS_SNAP_ID_LEN + 1]);

/* ---- overlay branches (overlay.c) ----------------------------------------------------------- */

/* Can this process mount overlays? Probed once (a mount of empty directories made under
 * scratch), then remembered. 0, AH_E_UNSUPPORTED (errno: the kernel's reason) or the scratch
 * directory's error (not remembered). */
int ws_overlay_probe(const char *scratch);
/* Mounts an overlay at ws (created when missing): lower layer `layer`, upper and work
 * directories made fresh in ovdir, which also records the layer; ws is recorded as a user of
 * the layer. AH_E_NOTFOUND when the layer is gone (released meanwhile: write it again),
 * AH_E_UNSUPPORTED when the kernel refuses (errno kept); nothing is left behind on failure. */
int ws_overlay_mount(const char *layer, const char *ovdir, const char *ws);
/* Mounts again what ovdir records at ws when ws is not mounted (after a reboot): 1 mounted,
 * 0 nothing to do (mounted already, or ovdir records nothing), AH_E_NOTFOUND when the layer or
 * the upper directory is gone, another AH_E_* when the mount failed. */
int ws_overlay_remount(const char *ovdir, const char *ws);
/* Unmounts ws, removes ovdir and, when ws was the layer's last user, the layer. Without a
 * record in ovdir only the unmount. 0 or the unmount's error (nothing removed then). */
int ws_overlay_release(const char *ovdir, const char *ws);
/* Is path the root of a mount? */
bool ws_is_mountpoint(const char *path);
/* Unmounts path when it is a mount's root (detached when busy). 0 or AH_E_*. */
int ws_unmount(const char *path);

/* Lets st read every object of the store in other_dir (git alternates), now and later: a
 * branch's store borrows its parent's, so it holds only what the branch adds. */
int ws_store_borrow(struct ws_store *st, const char *other_dir);
/* Makes snapshot `id` of `from` known to st by name (a ref to the same commit). AH_E_NOTFOUND
 * when from has no such snapshot or st cannot read its objects (not borrowed). */
int ws_snapshot_import(struct ws_store *st, struct ws_store *from, const char *id);
/* Forgets snapshot `id` by name (retention): it can no longer be read or compared. Its objects
 * stay while a later snapshot (whose history includes it) or a branch still needs them. */
int ws_snapshot_forget(struct ws_store *st, const char *id);
/* Frees the disk of forgotten snapshots: deletes st's loose objects that no snapshot of st (by
 * name; a snapshot's history is not followed) nor of the stores borrowing from it
 * (`borrowers`, their directories: a branch's store can name the parent's objects) needs, and
 * that are older than grace_ms (a borrower's snapshot being taken right now freshens the
 * objects it finds here, so they are spared). Excludes st's own snapshots meanwhile. The
 * bytes freed on disk go to ret_freed (nullable). 0 or AH_E_*; nothing is deleted on error. */
/* Forgets every snapshot of st whose id sorts before `before` (ids grow with time) that
 * keep(ctx, id) does not claim: retention's companion for the snapshots that never joined the
 * timeline (a read's "current" snapshot, a burst that changed nothing), which would otherwise
 * hold their objects for ever. Returns how many were forgotten, or AH_E_*. */
int ws_snapshots_forget_before(struct ws_store *st, const char *before,
                               bool (*keep)(void *ctx, const char *id), void *ctx);
int ws_store_gc(struct ws_store *st, const char *const *borrowers, size_t nborrowers,
                int64_t grace_ms, uint64_t *ret_freed);

/* ---- the answers of the files and diff routes (answer.c) ------------------------------------ */

/* API.md §7.6, D30–D32: what `GET …/files`, `…/files/{path}` (detail, preview, content),
 * `…/files/search`, `…/diff`, `…/diff/{path}`, `…/workspace/files` and
 * `…/workspace/search/files` answer, computed from a session's store alone, so the access point
 * (its own sessions) and an executor (a session it runs, asked over the link) answer with the
 * same code. Nothing here reads the live file system except through the `current` hook. */

/* How the points `current` and "a snapshot of another session" are found (arg: the caller's). */
struct ws_point_hooks {
    /* The id of the workspace's current state (a snapshot now, or the last one). Required. */
    int (*current)(void *arg, struct ws_store *st, char out[WS_SNAP_ID_LEN + 1]);
    /* Makes snapshot id of another session of the lineage readable in st (0 or AH_E_NOTFOUND);
     * NULL: only the session's own snapshots. */
    int (*import)(void *arg, struct ws_store *st, const char *id);
    void *arg;
};

struct ws_points {
    char base[WS_SNAP_ID_LEN + 1];
    char from[WS_SNAP_ID_LEN + 1]; /* ?from=, default base */
    char to[WS_SNAP_ID_LEN + 1];   /* ?to= or ?at=, default current */
    int64_t to_ms;                 /* when `to` was taken */
};
/* Resolves from/to/at (each NULL when absent: base → current; D32: `at` reads one point, the
 * `to` end) against st, whose base snapshot is base. 0, or an AH_E_* with p set (400 for a
 * malformed point, 404 for an unknown one). */
int ws_points_resolve(struct ws_store *st, const char *base, const char *from, const char *to,
                      const char *at, const struct ws_point_hooks *h, struct ws_points *ret,
                      struct ah_problem *p);

enum ws_ask_kind {
    WS_ASK_FILES,     /* GET …/files */
    WS_ASK_FILE,      /* GET …/files/{path} (detail, /preview, /content) */
    WS_ASK_DIFF,      /* GET …/diff */
    WS_ASK_FILE_DIFF, /* GET …/diff/{path} */
    WS_ASK_SEARCH,    /* GET …/files/search?q= */
    WS_ASK_TREE,      /* GET …/workspace/files */
    WS_ASK_PATHS,     /* GET …/workspace/search/files */
};
/* "files", "file", "diff", "file_diff", "search", "tree", "paths" */
const char *ws_ask_kind_name(enum ws_ask_kind k);
int ws_ask_kind_parse(const char *s, enum ws_ask_kind *ret); /* 0 or AH_E_INVAL */

/* One request of those routes: what the client sent, nothing resolved yet. Lent. */
struct ws_ask {
    enum ws_ask_kind kind;
    const char *tail;     /* the route's {path...} tail, percent-decoded; NULL when none */
    const json_t *query;  /* object: query parameter → string (the first of a repeated one) */
    const char *accept;   /* the Accept header; NULL when absent */
};

/* The answer: problem.code set, or status 200 with json (JSON) or body (text/x-diff). */
struct ws_reply {
    int status;
    json_t *json;
    char *body;
    size_t body_len;
    const char *content_type; /* static; NULL for JSON */
    struct ah_problem problem;
};
void ws_reply_clear(struct ws_reply *r);

/* The checks of the request's parameters the routes make before they look for the session
 * (400 with the fields named). 0 or AH_E_INVAL with p set. */
int ws_ask_check(const struct ws_ask *a, struct ah_problem *p);
/* True when a asks for one file's detail (WS_ASK_FILE without /preview or /content): the
 * caller adds the file's history (the events are its own); path gets the normalised path. */
bool ws_ask_detail_path(const struct ws_ask *a, char path[WS_PATH_MAX + 1]);
/* Answers a from st, whose base snapshot is base. ret is zeroed first; ws_reply_clear it. */
void ws_answer(struct ws_store *st, const char *base, const struct ws_ask *a,
               const struct ws_point_hooks *h, struct ws_reply *ret);

/* The glob dialect of those routes: `**` any characters, `*` any but '/', `?` one but '/'.
 * depth starts at 0; deeper than 64 never matches (a hostile pattern's bound). */
bool ws_glob(const char *g, const char *s, int depth);

#endif
