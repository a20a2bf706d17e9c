/*
 * diff.c — changes and diffs between two snapshots, in four formats.
 *
 * libgit2 computes the tree diff, the renames and the hunks (its xdiff is git's). The text is
 * written here, not by git_diff_to_buf, because libgit2's printer differs from the git CLI in
 * ways a byte comparison sees; what we do as git does:
 *   - the file order: git places a rename where its new path sorts, libgit2 sorts by old path;
 *   - `index` abbreviations: git extends the 7 hex digits until they are unique in the object
 *     database (libgit2 always prints 7);
 *   - `---`/`+++` lines get a trailing tab when the name has a space (git's rule);
 *   - hunk headers: git truncates the function line to 80 bytes, then trims trailing blanks
 *     (libgit2 trims, then truncates), so the function part is trimmed again here;
 *   - rename similarity: git's measure (diffcore-delta: chunks cut at LF or 64 bytes, hashed and
 *     counted; score = bytes copied / the larger size, sizes more than 2:1 apart never match)
 *     is plugged into libgit2 as its similarity metric, so "similarity index N%" and the pairs
 *     found agree with git's;
 *   - indent heuristic on (git's default since 2.14), paths quoted as core.quotePath=true.
 * The `patch` format is the same text with full object ids and libgit2's "GIT binary patch"
 * sections (literal/delta, base85), which `git apply` reads.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define MAX_SCORE 60000           /* git's fixed-point 100% */
#define MIN_SCORE (MAX_SCORE / 2) /* the default -M50% */
#define HASHBASE 107927           /* git's chunk hash modulus (diffcore-delta) */
#define BINARY_PROBE 8000         /* git looks for a NUL in this many leading bytes */
#define FULL_CONTEXT (1 << 30)

/* ---- git's similarity measure ---------------------------------------------------------------- */

struct span {
    uint32_t hash, cnt;
};
struct sig {
    bool regular;
    size_t size, n;
    struct span v[];
};

static int span_cmp(const void *a, const void *b) {
    uint32_t x = ((const struct span *)a)->hash, y = ((const struct span *)b)->hash;
    return x < y ? -1 : x > y;
}

/* Chunks end at a LF or after 64 bytes; in text, the CR of a CRLF is not counted. The result is
 * the multiset of chunk hashes with byte counts, sorted by hash. */
static struct sig *sig_new(bool regular, const char *buf, size_t len) {
    size_t chunks = 0; /* a chunk ends at a LF or after 64 bytes */
    if (regular) {
        for (const char *p = buf, *e = buf + len; (p = memchr(p, '\n', (size_t)(e - p))); p++)
            chunks++;
        chunks += len / 64 + 1;
    }
    struct sig *s = malloc(sizeof(*s) + (chunks + 1) * sizeof(struct span));
    if (!s)
        return NULL;
    s->regular = regular;
    s->size = len;
    s->n = 0;
    if (!regular)
        return s;
    bool text = !memchr(buf, 0, len < BINARY_PROBE ? len : BINARY_PROBE);
    uint32_t a1 = 0, a2 = 0, n = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t c = (unsigned char)buf[i], old1 = a1;
        if (text && c == '\r' && i + 1 < len && buf[i + 1] == '\n')
            continue;
        a1 = (a1 << 7) ^ (a2 >> 25);
        a2 = (a2 << 7) ^ (old1 >> 25);
        a1 += c;
        if (++n < 64 && c != '\n')
            continue;
        s->v[s->n++] = (struct span){(a1 + a2 * 0x61) % HASHBASE, n};
        n = a1 = a2 = 0;
    }
    if (n > 0)
        s->v[s->n++] = (struct span){(a1 + a2 * 0x61) % HASHBASE, n};
    qsort(s->v, s->n, sizeof(s->v[0]), span_cmp);
    size_t w = 0; /* merge equal hashes */
    for (size_t i = 0; i < s->n; i++) {
        if (w > 0 && s->v[w - 1].hash == s->v[i].hash)
            s->v[w - 1].cnt += s->v[i].cnt;
        else
            s->v[w++] = s->v[i];
    }
    s->n = w;
    return s;
}

static int metric_buffer(void **out, const git_diff_file *file, const char *buf, size_t len,
                         void *payload) {
    struct sig *s = sig_new((file->mode & 0170000) == 0100000, buf, len);
    if (!s)
        return -1;
    *out = s;
    return 0;
}

static int metric_file(void **out, const git_diff_file *file, const char *path, void *payload) {
    /* only called for working-directory files, which we never diff: read it anyway */
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    struct ah_buf b = {.max = (size_t)1 << 31};
    char tmp[65536];
    size_t r;
    int rc = 0;
    while (rc == 0 && (r = fread(tmp, 1, sizeof(tmp), f)) > 0)
        rc = ah_buf_append(&b, tmp, r);
    fclose(f);
    if (rc == 0)
        rc = metric_buffer(out, file, b.p ? b.p : "", b.n, payload);
    ah_buf_clear(&b);
    return rc;
}

static void metric_free(void *sig, void *payload) {
    free(sig);
}

/* a is the rename source (old), b the destination (new). */
static int metric_similarity(int *score, void *siga, void *sigb, void *payload) {
    const struct sig *a = siga, *b = sigb;
    *score = 0;
    if (!a->regular || !b->regular || !b->size)
        return 0;
    uint64_t max = a->size > b->size ? a->size : b->size;
    uint64_t base = a->size < b->size ? a->size : b->size;
    if (max * (MAX_SCORE - MIN_SCORE) < (max - base) * MAX_SCORE)
        return 0;
    uint64_t copied = 0;
    size_t j = 0;
    for (size_t i = 0; i < a->n; i++) {
        while (j < b->n && b->v[j].hash < a->v[i].hash)
            j++;
        if (j < b->n && b->v[j].hash == a->v[i].hash) {
            copied += a->v[i].cnt < b->v[j].cnt ? a->v[i].cnt : b->v[j].cnt;
            j++;
        }
    }
    uint64_t s = copied * MAX_SCORE / max;
    *score = (int)(s * 100 / MAX_SCORE);
    return 0;
}

git_diff_similarity_metric ws_git_metric = {
    .file_signature = metric_file,
    .buffer_signature = metric_buffer,
    .free_signature = metric_free,
    .similarity = metric_similarity,
};

/* ---- building a diff ------------------------------------------------------------------------- */

struct dset {
    git_diff *diff;
    size_t *order; /* delta indexes in git's output order */
    size_t n;
};

static void dset_clear(struct dset *d) {
    git_diff_free(d->diff);
    free(d->order);
}

static const char *delta_key(const git_diff_delta *d) {
    return d->status == GIT_DELTA_DELETED ? d->old_file.path : d->new_file.path;
}

static __thread git_diff *tl_sort_diff; /* qsort has no payload: the diff being sorted */

static int order_cmp(const void *x, const void *y) {
    const git_diff_delta *a = git_diff_get_delta(tl_sort_diff, *(const size_t *)x);
    const git_diff_delta *b = git_diff_get_delta(tl_sort_diff, *(const size_t *)y);
    int c = strcmp(delta_key(a), delta_key(b));
    if (c)
        return c;
    /* a type change is a deletion then an addition of the same path */
    return (a->status != GIT_DELTA_DELETED) - (b->status != GIT_DELTA_DELETED);
}

static bool wanted(const git_diff_delta *d, const struct ws_diff_opts *o) {
    if (!o || !o->paths)
        return true;
    for (size_t i = 0; i < o->n_paths; i++)
        if (strcmp(d->new_file.path, o->paths[i]) == 0 ||
            strcmp(d->old_file.path, o->paths[i]) == 0)
            return true;
    return false;
}

/* ---- the paths that differ, without reading identical subtrees ------------------------------ */

/* libgit2's tree-to-tree diff reads every tree of both sides, even subtrees with the same id
 * (a snapshot after one edit shares all but one path of trees with the one before it). This
 * walk skips those: it collects every leaf path whose id or mode differs, every path under a
 * tree on one side only, and both sides of a file/tree clash. The diff restricted to exactly
 * these paths has the same deltas as the whole one: unchanged files are never deltas, and
 * rename detection pairs only deleted with added paths, which are all here. */
#define DIFFER_MAX 100000 /* past it, the whole diff (the walk saves nothing then) */

struct differ {
    struct ws_store *st;
    char **v;
    size_t n, cap;
    bool over;
};

static int differ_add(struct differ *d, const char *dir, const char *name) {
    if (d->n >= DIFFER_MAX) {
        d->over = true;
        return 0;
    }
    if (d->n == d->cap) {
        char **v = realloc(d->v, (d->cap = d->cap ? 2 * d->cap : 64) * sizeof(*v));
        if (!v)
            return AH_E_NOMEM;
        d->v = v;
    }
    char *p = NULL;
    if (asprintf(&p, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
        return AH_E_NOMEM;
    d->v[d->n++] = p;
    return 0;
}

static int differ_walk(struct differ *d, const git_tree *a, const git_tree *b, const char *dir);

/* One side's entry (the other has nothing there): itself, or every leaf under it. */
static int differ_one(struct differ *d, const git_tree_entry *e, const char *dir) {
    if (git_tree_entry_type(e) != GIT_OBJECT_TREE)
        return differ_add(d, dir, git_tree_entry_name(e));
    git_tree *t = NULL;
    char *sub = NULL;
    int rc = git_tree_lookup(&t, d->st->repo, git_tree_entry_id(e)) < 0 ? AH_E_IO : 0;
    if (rc == 0 && asprintf(&sub, "%s%s%s", dir, *dir ? "/" : "", git_tree_entry_name(e)) < 0)
        rc = AH_E_NOMEM;
    if (rc == 0)
        rc = differ_walk(d, NULL, t, sub);
    free(sub);
    git_tree_free(t);
    return rc;
}

/* a or b may be NULL (absent); entries of both are in git's name order, compared by name. */
static int differ_walk(struct differ *d, const git_tree *a, const git_tree *b, const char *dir) {
    size_t na = a ? git_tree_entrycount(a) : 0, nb = b ? git_tree_entrycount(b) : 0, i = 0, j = 0;
    int rc = 0;
    while (rc == 0 && !d->over && (i < na || j < nb)) {
        const git_tree_entry *x = i < na ? git_tree_entry_byindex(a, i) : NULL;
        const git_tree_entry *y = j < nb ? git_tree_entry_byindex(b, j) : NULL;
        int c = !x ? 1 : !y ? -1 : strcmp(git_tree_entry_name(x), git_tree_entry_name(y));
        if (c < 0) {
            rc = differ_one(d, x, dir);
            i++;
        } else if (c > 0) {
            rc = differ_one(d, y, dir);
            j++;
        } else {
            bool tx = git_tree_entry_type(x) == GIT_OBJECT_TREE;
            bool ty = git_tree_entry_type(y) == GIT_OBJECT_TREE;
            if (git_oid_equal(git_tree_entry_id(x), git_tree_entry_id(y)) &&
                git_tree_entry_filemode(x) == git_tree_entry_filemode(y)) {
                /* the same: nothing under it differs */
            } else if (tx && ty) {
                git_tree *sa = NULL, *sb = NULL;
                char *sub = NULL;
                rc = git_tree_lookup(&sa, d->st->repo, git_tree_entry_id(x)) < 0 ||
                             git_tree_lookup(&sb, d->st->repo, git_tree_entry_id(y)) < 0
                         ? AH_E_IO
                         : 0;
                if (rc == 0 &&
                    asprintf(&sub, "%s%s%s", dir, *dir ? "/" : "", git_tree_entry_name(x)) < 0)
                    rc = AH_E_NOMEM;
                if (rc == 0)
                    rc = differ_walk(d, sa, sb, sub);
                free(sub);
                git_tree_free(sa);
                git_tree_free(sb);
            } else { /* a leaf changed, or a file/tree clash: each side on its own */
                rc = differ_one(d, x, dir);
                if (rc == 0 && (tx || ty))
                    rc = differ_one(d, y, dir);
            }
            i++;
            j++;
        }
    }
    return rc;
}

static void differ_clear(struct differ *d) {
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i]);
    free(d->v);
    memset(d, 0, sizeof(*d));
}

static int build(struct ws_store *st, const char *from, const char *to, int context,
                 uint32_t extra_flags, const struct ws_diff_opts *filter, struct dset *ret) {
    git_tree *a = NULL, *b = NULL;
    int rc = ws_resolve_tree(st, from, &a);
    if (rc < 0)
        return rc;
    if ((rc = ws_resolve_tree(st, to, &b)) < 0) {
        git_tree_free(a);
        return rc;
    }
    struct dset d = {0};
    git_diff_options o;
    git_diff_options_init(&o, GIT_DIFF_OPTIONS_VERSION);
    o.flags = GIT_DIFF_INDENT_HEURISTIC | extra_flags;
    o.context_lines = (uint32_t)context;
    o.interhunk_lines = 0;
    git_diff_find_options fo;
    git_diff_find_options_init(&fo, GIT_DIFF_FIND_OPTIONS_VERSION);
    fo.flags = GIT_DIFF_FIND_RENAMES;
    fo.rename_threshold = 50;
    fo.rename_limit = 1000; /* git's diff.renameLimit default */
    fo.metric = &ws_git_metric;
    if (filter && filter->paths && filter->n_paths > 0) {
        /* Named files: diff only those paths first. A file present on both sides stays
         * `modified` whatever rename detection finds elsewhere (no -B, no -C), so when nothing
         * was added or deleted this is the answer, without walking the whole trees. */
        o.pathspec.strings = (char **)filter->paths;
        o.pathspec.count = filter->n_paths;
        o.flags |= GIT_DIFF_DISABLE_PATHSPEC_MATCH;
        if (git_diff_tree_to_tree(&d.diff, st->repo, a, b, &o) < 0) {
            rc = AH_E_IO;
            goto out;
        }
        bool whole = false;
        for (size_t i = 0; i < git_diff_num_deltas(d.diff) && !whole; i++) {
            git_delta_t t = git_diff_get_delta(d.diff, i)->status;
            whole = t != GIT_DELTA_MODIFIED;
        }
        if (whole) {
            git_diff_free(d.diff);
            d.diff = NULL;
        }
        o.pathspec.strings = NULL;
        o.pathspec.count = 0;
        o.flags &= ~(uint32_t)GIT_DIFF_DISABLE_PATHSPEC_MATCH;
    }
    if (!d.diff) {
        struct differ df = {.st = st};
        rc = differ_walk(&df, a, b, "");
        if (rc < 0) {
            differ_clear(&df);
            goto out;
        }
        static char *const none[] = {".git/none"}; /* no workspace path: the empty diff */
        if (!df.over) {
            o.pathspec.strings = df.n ? df.v : (char **)none;
            o.pathspec.count = df.n ? df.n : 1;
            o.flags |= GIT_DIFF_DISABLE_PATHSPEC_MATCH;
        }
        int grc = git_diff_tree_to_tree(&d.diff, st->repo, a, b, &o);
        o.pathspec.strings = NULL;
        o.pathspec.count = 0;
        differ_clear(&df);
        if (grc < 0) {
            rc = AH_E_IO;
            goto out;
        }
    }
    /* git skips inexact rename detection when sources x destinations passes renameLimit^2
     * (libgit2's limit is per file instead): then only identical contents pair up */
    size_t adds = 0, dels = 0;
    for (size_t i = 0; i < git_diff_num_deltas(d.diff); i++) {
        git_delta_t t = git_diff_get_delta(d.diff, i)->status;
        adds += t == GIT_DELTA_ADDED;
        dels += t == GIT_DELTA_DELETED;
    }
    uint64_t pairs = (uint64_t)adds * dels;
    if (pairs > (uint64_t)fo.rename_limit * fo.rename_limit)
        fo.flags |= GIT_DIFF_FIND_EXACT_MATCH_ONLY;
    /* libgit2 tries at most rename_limit sources per destination; git tries them all */
    fo.rename_limit = adds > dels ? adds : dels;
    if (fo.rename_limit < 1000)
        fo.rename_limit = 1000;
    /* libgit2 pairs identical contents in quadratic time (git uses a hash): past 10^8 pairs,
     * no rename detection at all */
    if (pairs <= 100000000ULL && git_diff_find_similar(d.diff, &fo) < 0) {
        rc = AH_E_IO;
        goto out;
    }
    size_t n = git_diff_num_deltas(d.diff);
    d.order = malloc((n ? n : 1) * sizeof(*d.order));
    if (!d.order) {
        rc = AH_E_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (wanted(git_diff_get_delta(d.diff, i), filter))
            d.order[d.n++] = i;
    tl_sort_diff = d.diff;
    qsort(d.order, d.n, sizeof(*d.order), order_cmp);
    tl_sort_diff = NULL;
out:
    git_tree_free(a);
    git_tree_free(b);
    if (rc < 0) {
        dset_clear(&d);
        return rc;
    }
    *ret = d;
    return 0;
}

/* ---- changes --------------------------------------------------------------------------------- */

const char *ws_status_name(enum ws_status s) {
    switch (s) {
    case WS_ADDED: return "added";
    case WS_DELETED: return "deleted";
    case WS_RENAMED: return "renamed";
    default: return "modified";
    }
}

static enum ws_status status_of(git_delta_t t) {
    switch (t) {
    case GIT_DELTA_ADDED: return WS_ADDED;
    case GIT_DELTA_DELETED: return WS_DELETED;
    case GIT_DELTA_RENAMED: return WS_RENAMED;
    default: return WS_MODIFIED;
    }
}

void ws_changes_clear(struct ws_changes *c) {
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].path);
        free(c->v[i].old_path);
    }
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

/* Lines of a blob as a diff counts them (a last line without LF counts), and git's binary test. */
static int blob_lines(struct ws_store *st, const git_oid *id, size_t *ret, bool *binary) {
    git_odb_object *o = NULL;
    if (git_odb_read(&o, st->odb, id) < 0)
        return AH_E_IO;
    const char *d = git_odb_object_data(o);
    size_t n = git_odb_object_size(o), lines = 0;
    if (memchr(d, 0, n < BINARY_PROBE ? n : BINARY_PROBE))
        *binary = true;
    for (const char *p = d, *e = d + n; (p = memchr(p, '\n', (size_t)(e - p))); p++)
        lines++;
    if (n && d[n - 1] != '\n')
        lines++;
    git_odb_object_free(o);
    *ret = lines;
    return 0;
}

int ws_changes(struct ws_store *st, const char *from, const char *to, struct ws_changes *ret) {
    struct dset d;
    int rc = build(st, from, to, 0, GIT_DIFF_INCLUDE_TYPECHANGE, NULL, &d);
    if (rc < 0)
        return rc;
    struct ws_changes out = {.v = calloc(d.n ? d.n : 1, sizeof(struct ws_change))};
    if (!out.v) {
        dset_clear(&d);
        return AH_E_NOMEM;
    }
    for (size_t k = 0; k < d.n && rc == 0; k++) {
        git_patch *p = NULL;
        if (git_patch_from_diff(&p, d.diff, d.order[k]) < 0) {
            rc = AH_E_IO;
            break;
        }
        const git_diff_delta *dl = git_patch_get_delta(p);
        struct ws_change *c = &out.v[out.n++];
        c->status = status_of(dl->status);
        c->path = strdup(delta_key(dl));
        if (c->status == WS_RENAMED) {
            c->old_path = strdup(dl->old_file.path);
            c->similarity = dl->similarity;
        }
        c->old_mode = c->status == WS_ADDED ? 0 : dl->old_file.mode;
        c->new_mode = c->status == WS_DELETED ? 0 : dl->new_file.mode;
        c->binary = (dl->flags & GIT_DIFF_FLAG_BINARY) != 0;
        size_t add = 0, del = 0;
        if (dl->status == GIT_DELTA_TYPECHANGE) {
            /* git shows a type change as a deletion and an addition: every line counts */
            int r1 = blob_lines(st, &dl->old_file.id, &del, &c->binary);
            int r2 = blob_lines(st, &dl->new_file.id, &add, &c->binary);
            if (r1 < 0 || r2 < 0)
                rc = AH_E_IO;
            if (c->binary)
                add = del = 0;
        } else if (!c->binary) {
            git_patch_line_stats(NULL, &add, &del, p);
        }
        c->lines_added = (int64_t)add;
        c->lines_removed = (int64_t)del;
        const git_oid *id = c->status == WS_DELETED ? &dl->old_file.id : &dl->new_file.id;
        size_t len = 0;
        git_object_t type;
        if (git_odb_read_header(&len, &type, st->odb, id) < 0)
            rc = AH_E_IO;
        c->size = len;
        if (!c->path || (c->status == WS_RENAMED && !c->old_path))
            rc = AH_E_NOMEM;
        git_patch_free(p);
    }
    dset_clear(&d);
    if (rc < 0) {
        ws_changes_clear(&out);
        return rc;
    }
    *ret = out;
    return 0;
}

/* ---- unified and patch text ------------------------------------------------------------------ */

/* git's abbreviation: 7 hex digits, more while another object shares the prefix. */
static void abbrev(struct ws_store *st, const git_oid *id, bool full, char out[GIT_OID_HEXSZ + 1]) {
    git_oid_tostr(out, GIT_OID_HEXSZ + 1, id);
    if (full)
        return;
    size_t len = 7;
    if (!git_oid_is_zero(id))
        while (len < GIT_OID_HEXSZ &&
               git_odb_exists_prefix(NULL, st->odb, id, len) == GIT_EAMBIGUOUS)
            len++;
    out[len] = '\0';
}

static int put_label(struct ah_buf *b, const char *lead, bool valid, const char *prefix,
                     const char *path, bool tab) {
    int rc = ah_buf_puts(b, lead);
    if (rc < 0)
        return rc;
    if (!valid)
        return ah_buf_puts(b, "/dev/null");
    size_t before = b->n;
    if ((rc = ws_quote_path(b, prefix, path)) < 0)
        return rc;
    /* git adds a tab after a ---/+++ name that contains a space */
    if (tab && memchr(b->p + before, ' ', b->n - before))
        rc = ah_buf_puts(b, "\t");
    return rc;
}

static int put_header(struct ws_store *st, struct ah_buf *b, const git_diff_delta *d, bool full) {
    bool added = d->status == GIT_DELTA_ADDED, deleted = d->status == GIT_DELTA_DELETED;
    int rc = ah_buf_puts(b, "diff --git ");
    if (rc < 0 || (rc = ws_quote_path(b, "a/", d->old_file.path)) < 0 ||
        (rc = ah_buf_puts(b, " ")) < 0 || (rc = ws_quote_path(b, "b/", d->new_file.path)) < 0 ||
        (rc = ah_buf_puts(b, "\n")) < 0)
        return rc;
    if (added)
        rc = ah_buf_printf(b, "new file mode %06o\n", d->new_file.mode);
    else if (deleted)
        rc = ah_buf_printf(b, "deleted file mode %06o\n", d->old_file.mode);
    else if (d->old_file.mode != d->new_file.mode)
        rc = ah_buf_printf(b, "old mode %06o\nnew mode %06o\n", d->old_file.mode, d->new_file.mode);
    if (rc < 0)
        return rc;
    if (d->status == GIT_DELTA_RENAMED) {
        if ((rc = ah_buf_printf(b, "similarity index %d%%\nrename from ", d->similarity)) < 0 ||
            (rc = ws_quote_path(b, "", d->old_file.path)) < 0 ||
            (rc = ah_buf_puts(b, "\nrename to ")) < 0 ||
            (rc = ws_quote_path(b, "", d->new_file.path)) < 0 || (rc = ah_buf_puts(b, "\n")) < 0)
            return rc;
    }
    if (!git_oid_equal(&d->old_file.id, &d->new_file.id)) {
        char x[GIT_OID_HEXSZ + 1], y[GIT_OID_HEXSZ + 1];
        git_oid zero = {{0}};
        abbrev(st, added ? &zero : &d->old_file.id, full, x);
        abbrev(st, deleted ? &zero : &d->new_file.id, full, y);
        uint32_t om = added ? 0 : d->old_file.mode, nm = deleted ? 0 : d->new_file.mode;
        if (om == nm)
            rc = ah_buf_printf(b, "index %s..%s %06o\n", x, y, om);
        else
            rc = ah_buf_printf(b, "index %s..%s\n", x, y);
    }
    return rc;
}

/* The hunk header as git prints it: "@@ -a,b +c,d @@" and the function line, trimmed. */
static int put_hunk_header(struct ah_buf *b, const git_diff_hunk *h) {
    const char *s = h->header, *end = s + h->header_len;
    const char *at = h->header_len > 4 ? memmem(s + 2, h->header_len - 2, "@@", 2) : NULL;
    if (!at)
        return ah_buf_append(b, s, h->header_len);
    at += 2;
    int rc = ah_buf_append(b, s, (size_t)(at - s));
    const char *f = at;
    while (f < end && *f == ' ')
        f++;
    const char *fe = end;
    while (fe > f && (fe[-1] == ' ' || fe[-1] == '\t' || fe[-1] == '\n' || fe[-1] == '\r'))
        fe--;
    if (rc == 0 && fe > f) {
        if ((rc = ah_buf_puts(b, " ")) == 0)
            rc = ah_buf_append(b, f, (size_t)(fe - f));
    }
    return rc < 0 ? rc : ah_buf_puts(b, "\n");
}

static bool eofnl(char origin) {
    return origin == GIT_DIFF_LINE_CONTEXT_EOFNL || origin == GIT_DIFF_LINE_ADD_EOFNL ||
           origin == GIT_DIFF_LINE_DEL_EOFNL;
}

static int put_text_body(struct ah_buf *b, git_patch *p, const git_diff_delta *d) {
    size_t nh = git_patch_num_hunks(p);
    if (nh == 0)
        return 0;
    int rc;
    if ((rc = put_label(b, "--- ", d->status != GIT_DELTA_ADDED, "a/", d->old_file.path, true)) <
            0 ||
        (rc = ah_buf_puts(b, "\n")) < 0 ||
        (rc = put_label(b, "+++ ", d->status != GIT_DELTA_DELETED, "b/", d->new_file.path, true)) <
            0 ||
        (rc = ah_buf_puts(b, "\n")) < 0)
        return rc;
    for (size_t h = 0; h < nh; h++) {
        const git_diff_hunk *hunk;
        size_t nl;
        if (git_patch_get_hunk(&hunk, &nl, p, h) < 0)
            return AH_E_IO;
        if ((rc = put_hunk_header(b, hunk)) < 0)
            return rc;
        for (size_t l = 0; l < nl; l++) {
            const git_diff_line *line;
            if (git_patch_get_line_in_hunk(&line, p, h, l) < 0)
                return AH_E_IO;
            if (eofnl(line->origin)) {
                rc = ah_buf_puts(b, "\\ No newline at end of file\n");
            } else {
                char o = line->origin;
                rc = ah_buf_append(b, &o, 1);
                if (rc == 0)
                    rc = ah_buf_append(b, line->content, line->content_len);
                if (rc == 0 && (!line->content_len || line->content[line->content_len - 1] != '\n'))
                    rc = ah_buf_puts(b, "\n");
            }
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int put_binary_body(struct ah_buf *b, git_patch *p, const git_diff_delta *d, bool patch) {
    if (git_oid_equal(&d->old_file.id, &d->new_file.id))
        return 0;
    if (!patch) {
        int rc = put_label(b, "Binary files ", d->status != GIT_DELTA_ADDED, "a/", d->old_file.path,
                           false);
        if (rc < 0 || (rc = put_label(b, " and ", d->status != GIT_DELTA_DELETED, "b/",
                                      d->new_file.path, false)) < 0)
            return rc;
        return ah_buf_puts(b, " differ\n");
    }
    /* libgit2's printer writes git's "GIT binary patch" section: take it from its output */
    git_buf text = {0};
    if (git_patch_to_buf(&text, p) < 0)
        return AH_E_IO;
    const char *s = text.ptr ? strstr(text.ptr, "GIT binary patch\n") : NULL;
    int rc = s ? ah_buf_append(b, s, text.size - (size_t)(s - text.ptr)) : AH_E_INTERNAL;
    git_buf_dispose(&text);
    return rc;
}

static int write_text(struct ws_store *st, struct dset *d, bool patch, struct ah_buf *out) {
    for (size_t k = 0; k < d->n; k++) {
        git_patch *p = NULL;
        if (git_patch_from_diff(&p, d->diff, d->order[k]) < 0)
            return AH_E_IO;
        const git_diff_delta *dl = git_patch_get_delta(p);
        int rc = put_header(st, out, dl, patch);
        if (rc == 0)
            rc = dl->flags & GIT_DIFF_FLAG_BINARY ? put_binary_body(out, p, dl, patch)
                                                  : put_text_body(out, p, dl);
        git_patch_free(p);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- split (JSON) and HTML ------------------------------------------------------------------- */

struct row {
    const git_diff_line *l, *r;
};

/* Calls emit for each row of a hunk: a run of deletions followed by a run of additions pairs up
 * into `change` rows; the rest are `del`/`add`; context lines are one row with both sides. */
typedef int (*row_fn)(void *ctx, const char *kind, const git_diff_line *l, const git_diff_line *r);

static int hunk_rows(git_patch *p, size_t h, size_t nl, row_fn emit, void *ctx) {
    size_t l = 0;
    while (l < nl) {
        const git_diff_line *line;
        if (git_patch_get_line_in_hunk(&line, p, h, l) < 0)
            return AH_E_IO;
        if (eofnl(line->origin)) {
            l++;
            continue;
        }
        if (line->origin == GIT_DIFF_LINE_CONTEXT) {
            int rc = emit(ctx, "context", line, line);
            if (rc < 0)
                return rc;
            l++;
            continue;
        }
        size_t ds = l, de, as, ae;
        const git_diff_line *x;
        for (de = ds; de < nl; de++) {
            if (git_patch_get_line_in_hunk(&x, p, h, de) < 0)
                return AH_E_IO;
            if (x->origin != GIT_DIFF_LINE_DELETION && !eofnl(x->origin))
                break;
        }
        for (as = ae = de; ae < nl; ae++) {
            if (git_patch_get_line_in_hunk(&x, p, h, ae) < 0)
                return AH_E_IO;
            if (x->origin != GIT_DIFF_LINE_ADDITION && !eofnl(x->origin))
                break;
        }
        /* pair the i-th deletion with the i-th addition, skipping the EOF markers */
        size_t i = ds, j = as;
        for (;;) {
            const git_diff_line *dl = NULL, *al = NULL;
            while (i < de && !dl) {
                git_patch_get_line_in_hunk(&x, p, h, i++);
                if (x->origin == GIT_DIFF_LINE_DELETION)
                    dl = x;
            }
            while (j < ae && !al) {
                git_patch_get_line_in_hunk(&x, p, h, j++);
                if (x->origin == GIT_DIFF_LINE_ADDITION)
                    al = x;
            }
            if (!dl && !al)
                break;
            int rc = emit(ctx, dl && al ? "change" : dl ? "del" : "add", dl, al);
            if (rc < 0)
                return rc;
        }
        l = ae;
    }
    return 0;
}

static int line_text(struct ah_buf *tmp, const git_diff_line *l) {
    size_t n = l->content_len;
    if (n && l->content[n - 1] == '\n')
        n--;
    tmp->n = 0;
    if (tmp->p)
        tmp->p[0] = '\0';
    return ws_utf8_sanitise(tmp, l->content, n);
}

static json_t *side_json(struct ah_buf *tmp, const git_diff_line *l, bool left) {
    if (!l)
        return json_null();
    if (line_text(tmp, l) < 0)
        return NULL;
    return json_pack("{s:I, s:s#}", "line", (json_int_t)(left ? l->old_lineno : l->new_lineno),
                     "text", tmp->p ? tmp->p : "", tmp->n);
}

struct split_ctx {
    json_t *rows;
    struct ah_buf tmp;
};

static int split_row(void *ctx, const char *kind, const git_diff_line *l, const git_diff_line *r) {
    struct split_ctx *c = ctx;
    json_t *lj = side_json(&c->tmp, l, true), *rj = lj ? side_json(&c->tmp, r, false) : NULL;
    json_t *row = rj ? json_pack("{s:s, s:o, s:o}", "kind", kind, "left", lj, "right", rj) : NULL;
    if (!row) {
        if (!rj)
            json_decref(lj);
        return AH_E_NOMEM;
    }
    return json_array_append_new(c->rows, row) < 0 ? AH_E_NOMEM : 0;
}

static json_t *path_json(struct ah_buf *tmp, const char *path) {
    tmp->n = 0;
    if (ws_utf8_sanitise(tmp, path, strlen(path)) < 0)
        return NULL;
    return json_stringn(tmp->p ? tmp->p : "", tmp->n);
}

static int file_split(git_patch *p, const git_diff_delta *dl, struct split_ctx *c, json_t *files) {
    bool binary = dl->flags & GIT_DIFF_FLAG_BINARY;
    json_t *f = json_pack(
        "{s:o, s:o, s:s, s:b, s:i, s:i, s:o}", "path", path_json(&c->tmp, delta_key(dl)),
        "old_path",
        dl->status == GIT_DELTA_RENAMED ? path_json(&c->tmp, dl->old_file.path) : json_null(),
        "status", ws_status_name(status_of(dl->status)), "binary", binary, "old_mode",
        dl->status == GIT_DELTA_ADDED ? 0 : (int)dl->old_file.mode, "new_mode",
        dl->status == GIT_DELTA_DELETED ? 0 : (int)dl->new_file.mode, "hunks", json_array());
    if (!f || json_array_append_new(files, f) < 0)
        return AH_E_NOMEM;
    if (binary)
        return 0;
    json_t *hunks = json_object_get(f, "hunks");
    for (size_t h = 0; h < git_patch_num_hunks(p); h++) {
        const git_diff_hunk *hunk;
        size_t nl;
        if (git_patch_get_hunk(&hunk, &nl, p, h) < 0)
            return AH_E_IO;
        struct ah_buf hb = {0};
        int rc = put_hunk_header(&hb, hunk);
        if (rc == 0) {
            c->tmp.n = 0;
            rc = ws_utf8_sanitise(&c->tmp, hb.p, hb.n - 1);
        }
        ah_buf_clear(&hb);
        if (rc < 0)
            return rc;
        c->rows = json_array();
        json_t *hj =
            json_pack("{s:s#, s:i, s:i, s:i, s:i, s:o}", "header", c->tmp.p, c->tmp.n, "old_start",
                      hunk->old_start, "old_lines", hunk->old_lines, "new_start", hunk->new_start,
                      "new_lines", hunk->new_lines, "rows", c->rows);
        if (!hj || json_array_append_new(hunks, hj) < 0)
            return AH_E_NOMEM;
        if ((rc = hunk_rows(p, h, nl, split_row, c)) < 0)
            return rc;
    }
    return 0;
}

/* Escapes text for HTML: & < > " ' as entities, control characters as their U+2400 pictures
 * (a literal control character is a parse error in HTML5), invalid UTF-8 as U+FFFD. */
static int html_escape(struct ah_buf *b, struct ah_buf *tmp, const char *s, size_t n) {
    tmp->n = 0;
    int rc = ws_utf8_sanitise(tmp, s, n);
    for (size_t i = 0; rc == 0 && i < tmp->n; i++) {
        unsigned char c = (unsigned char)tmp->p[i];
        switch (c) {
        case '&': rc = ah_buf_puts(b, "&amp;"); break;
        case '<': rc = ah_buf_puts(b, "&lt;"); break;
        case '>': rc = ah_buf_puts(b, "&gt;"); break;
        case '"': rc = ah_buf_puts(b, "&quot;"); break;
        case '\'': rc = ah_buf_puts(b, "&#39;"); break;
        case '\t': rc = ah_buf_append(b, "\t", 1); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char pic[4] = {(char)0xe2, (char)0x90, (char)(0x80 + (c == 0x7f ? 0x21 : c)), 0};
                rc = ah_buf_puts(b, pic);
            } else if (c == 0xc2 && i + 1 < tmp->n && (unsigned char)tmp->p[i + 1] < 0xa0) {
                rc = ah_buf_puts(b, "\xef\xbf\xbd"); /* C1 controls */
                i++;
            } else {
                rc = ah_buf_append(b, &tmp->p[i], 1);
            }
        }
    }
    return rc;
}

struct html_ctx {
    struct ah_buf *out;
    struct ah_buf tmp;
};

static int html_row(void *ctx, const char *kind, const git_diff_line *l, const git_diff_line *r) {
    struct html_ctx *c = ctx;
    int rc = ah_buf_printf(c->out, "<tr class=\"ah-diff-%s\">", kind);
    for (int side = 0; side < 2 && rc == 0; side++) {
        const git_diff_line *x = side ? r : l;
        if (!x) {
            rc = ah_buf_puts(c->out,
                             "<td class=\"ah-diff-ln\"></td><td class=\"ah-diff-code\"></td>");
            continue;
        }
        size_t n = x->content_len;
        if (n && x->content[n - 1] == '\n')
            n--;
        rc = ah_buf_printf(c->out, "<td class=\"ah-diff-ln\">%d</td><td class=\"ah-diff-code\">",
                           side ? x->new_lineno : x->old_lineno);
        if (rc == 0)
            rc = html_escape(c->out, &c->tmp, x->content, n);
        if (rc == 0)
            rc = ah_buf_puts(c->out, "</td>");
    }
    return rc < 0 ? rc : ah_buf_puts(c->out, "</tr>\n");
}

static int file_html(git_patch *p, const git_diff_delta *dl, struct html_ctx *c) {
    struct ah_buf *b = c->out;
    const char *st = ws_status_name(status_of(dl->status));
    int rc = ah_buf_printf(
        b, "<section class=\"ah-diff-file ah-diff-%s\">\n<h3 class=\"ah-diff-path\">", st);
    if (rc == 0 && dl->status == GIT_DELTA_RENAMED) {
        rc = html_escape(b, &c->tmp, dl->old_file.path, strlen(dl->old_file.path));
        if (rc == 0)
            rc = ah_buf_puts(b, " \xe2\x86\x92 ");
    }
    const char *path = delta_key(dl);
    if (rc == 0)
        rc = html_escape(b, &c->tmp, path, strlen(path));
    if (rc == 0)
        rc = ah_buf_printf(b, "</h3>\n");
    if (rc < 0)
        return rc;
    if (dl->flags & GIT_DIFF_FLAG_BINARY)
        return ah_buf_puts(b, "<p class=\"ah-diff-binary\">Binary file changed</p>\n</section>\n");
    size_t nh = git_patch_num_hunks(p);
    if (nh == 0)
        return ah_buf_puts(b, "</section>\n");
    if ((rc = ah_buf_puts(b, "<table class=\"ah-diff-table\">\n<tbody>\n")) < 0)
        return rc;
    for (size_t h = 0; h < nh && rc == 0; h++) {
        const git_diff_hunk *hunk;
        size_t nl;
        if (git_patch_get_hunk(&hunk, &nl, p, h) < 0)
            return AH_E_IO;
        struct ah_buf hb = {0};
        rc = put_hunk_header(&hb, hunk);
        if (rc == 0)
            rc = ah_buf_puts(b, "<tr class=\"ah-diff-hunk\"><td colspan=\"4\">");
        if (rc == 0)
            rc = html_escape(b, &c->tmp, hb.p, hb.n - 1);
        ah_buf_clear(&hb);
        if (rc == 0)
            rc = ah_buf_puts(b, "</td></tr>\n");
        if (rc == 0)
            rc = hunk_rows(p, h, nl, html_row, c);
    }
    return rc < 0 ? rc : ah_buf_puts(b, "</tbody>\n</table>\n</section>\n");
}

/* ---- the entry point ------------------------------------------------------------------------- */

void ws_diff_opts_init(struct ws_diff_opts *o) {
    memset(o, 0, sizeof(*o));
    o->format = WS_UNIFIED;
    o->context = 3;
}

int ws_diff(struct ws_store *st, const char *from, const char *to, const struct ws_diff_opts *o,
            struct ah_buf *out) {
    if (!st || !o || !out || o->context < 0 || o->context > WS_CONTEXT_MAX)
        return AH_E_INVAL;
    int context = o->full ? FULL_CONTEXT : o->context;
    struct dset d;
    int rc = build(st, from, to, context, o->format == WS_PATCH ? GIT_DIFF_SHOW_BINARY : 0, o, &d);
    if (rc < 0)
        return rc;
    if (o->format == WS_UNIFIED || o->format == WS_PATCH) {
        rc = write_text(st, &d, o->format == WS_PATCH, out);
    } else if (o->format == WS_SPLIT) {
        struct split_ctx c = {.tmp = {.max = out->max}};
        json_t *files = json_array(), *doc = json_pack("{s:o}", "files", files);
        rc = doc ? 0 : AH_E_NOMEM;
        for (size_t k = 0; k < d.n && rc == 0; k++) {
            git_patch *p = NULL;
            if (git_patch_from_diff(&p, d.diff, d.order[k]) < 0) {
                rc = AH_E_IO;
                break;
            }
            rc = file_split(p, git_patch_get_delta(p), &c, files);
            git_patch_free(p);
        }
        if (rc == 0) {
            char *s = json_dumps(doc, JSON_COMPACT);
            rc = s ? ah_buf_puts(out, s) : AH_E_NOMEM;
            free(s);
        }
        json_decref(doc);
        ah_buf_clear(&c.tmp);
    } else {
        struct html_ctx c = {.out = out, .tmp = {.max = out->max}};
        rc = ah_buf_puts(out, "<div class=\"ah-diff\">\n");
        for (size_t k = 0; k < d.n && rc == 0; k++) {
            git_patch *p = NULL;
            if (git_patch_from_diff(&p, d.diff, d.order[k]) < 0) {
                rc = AH_E_IO;
                break;
            }
            rc = file_html(p, git_patch_get_delta(p), &c);
            git_patch_free(p);
        }
        if (rc == 0)
            rc = ah_buf_puts(out, "</div>\n");
        ah_buf_clear(&c.tmp);
    }
    dset_clear(&d);
    return rc;
}
