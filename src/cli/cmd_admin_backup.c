/*
 * cmd_admin_backup.c — `ah admin backup --out DIR`: a backup of an installation taken while its
 * server runs. DIR gets
 *   state.db       one consistent snapshot of the database (SQLite's online backup; checked with
 *                  integrity_check before it is kept), and
 *   everything else in the data directory (recordings, prompts, snapshots, workspaces,
 *                  attachments…), copied file by file after the database,
 * so DIR is itself a data directory: `ah agent access-point --db DIR/state.db --data-dir DIR`
 * serves it as it was. Left out: the live database files (state.db-wal/-shm, copied through the
 * snapshot instead), `git-cache/` (mirrors of remote repositories, fetched again on demand) and
 * sockets. Files copied after the snapshot may be newer than it (a recording that grew meanwhile):
 * a session's files are never older than its rows. A file that vanishes during the copy (a
 * session deleted meanwhile) is skipped, not an error.
 *
 * PostgreSQL has its own backup tools; with a postgresql:// --db the command says so and stops.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_DEPTH 64 /* deeper trees than any workspace we make: a loop guard */

struct copy_stats {
    int64_t files, bytes, skipped;
    const char *top_skip[8]; /* names skipped at the top level of the data directory */
    size_t n_top_skip;
    dev_t out_dev; /* the backup's own directory, never copied into itself */
    ino_t out_ino;
    char err[512];
};

static int copy_file(int sfd, int dfd, const char *name, const struct stat *sb,
                     struct copy_stats *cs) {
    int in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return errno == ENOENT ? (cs->skipped++, 0) : -errno;
    int out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, sb->st_mode & 07777);
    if (out < 0) {
        int e = errno;
        close(in);
        return -e;
    }
    int rc = 0;
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = -errno;
                break;
            }
            off += w;
            cs->bytes += w;
        }
        if (rc)
            break;
    }
    if (rc == 0 && fsync(out) < 0)
        rc = -errno;
    struct timespec times[2] = {sb->st_atim, sb->st_mtim};
    futimens(out, times);
    if (close(out) < 0 && rc == 0)
        rc = -errno;
    close(in);
    if (rc == 0)
        cs->files++;
    return rc;
}

/* Copies the entries of directory sfd into directory dfd; path names sfd in error messages. */
static int copy_dir(int sfd, int dfd, const char *path, int depth, struct copy_stats *cs) {
    if (depth > MAX_DEPTH) {
        snprintf(cs->err, sizeof(cs->err), "%s: nested too deep", path);
        return -ELOOP;
    }
    int fd = dup(sfd);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            close(fd);
        snprintf(cs->err, sizeof(cs->err), "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (errno = 0, e = readdir(d))) {
        const char *n = e->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        bool skip = false;
        for (size_t i = 0; depth == 0 && i < cs->n_top_skip; i++)
            skip |= strcmp(n, cs->top_skip[i]) == 0;
        struct stat sb;
        if (skip || fstatat(sfd, n, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            if (!skip && errno != ENOENT) {
                snprintf(cs->err, sizeof(cs->err), "cannot stat %s/%s: %s", path, n,
                         strerror(errno));
                rc = -1;
            }
            continue;
        }
        if (sb.st_dev == cs->out_dev && sb.st_ino == cs->out_ino)
            continue;
        char sub[PATH_MAX];
        snprintf(sub, sizeof(sub), "%s/%s", path, n);
        if (S_ISREG(sb.st_mode)) {
            int r = copy_file(sfd, dfd, n, &sb, cs);
            if (r < 0) {
                snprintf(cs->err, sizeof(cs->err), "cannot copy %s: %s", sub, strerror(-r));
                rc = -1;
            }
        } else if (S_ISLNK(sb.st_mode)) {
            char target[PATH_MAX];
            ssize_t len = readlinkat(sfd, n, target, sizeof(target) - 1);
            if (len < 0) {
                cs->skipped += errno == ENOENT;
                continue;
            }
            target[len] = '\0';
            if (symlinkat(target, dfd, n) < 0) {
                snprintf(cs->err, sizeof(cs->err), "cannot link %s: %s", sub, strerror(errno));
                rc = -1;
            }
        } else if (S_ISDIR(sb.st_mode)) {
            int s2 = openat(sfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (s2 < 0) {
                if (errno == ENOENT)
                    continue;
                snprintf(cs->err, sizeof(cs->err), "cannot open %s: %s", sub, strerror(errno));
                rc = -1;
                continue;
            }
            int d2 = -1;
            if (mkdirat(dfd, n, 0700) < 0 ||
                (d2 = openat(dfd, n, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
                snprintf(cs->err, sizeof(cs->err), "cannot create %s in the backup: %s", sub,
                         strerror(errno));
                rc = -1;
            } else {
                rc = copy_dir(s2, d2, sub, depth + 1, cs);
                fchmod(d2, sb.st_mode & 07777);
                struct timespec times[2] = {sb.st_atim, sb.st_mtim};
                futimens(d2, times);
            }
            if (d2 >= 0) {
                fsync(d2);
                close(d2);
            }
            close(s2);
        }
        /* sockets (the recorder's), fifos and devices are not data: left out */
    }
    if (rc == 0 && errno != 0) {
        snprintf(cs->err, sizeof(cs->err), "cannot read %s: %s", path, strerror(errno));
        rc = -1;
    }
    closedir(d);
    return rc;
}

/* The directory that holds db (the server's default data directory). */
static void dir_of(const char *db, char *out, size_t size) {
    snprintf(out, size, "%s", db);
    char *slash = strrchr(out, '/');
    if (slash == out)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(out, size, ".");
}

int cmd_admin_backup(int argc, char **argv) {
    static const char usage[] =
        "usage: ah admin backup --out DIR [--db FILE] [--data-dir DIR] [--db-only] [--json]\n\n"
        "Backs up an installation while its server runs: DIR/state.db is one consistent\n"
        "snapshot of the database (SQLite's online backup, integrity-checked), and the rest of\n"
        "the data directory (recordings, snapshots, workspaces) is copied beside it, so DIR is\n"
        "itself a data directory. Restore: stop the server and start it with\n"
        "  --db DIR/state.db --data-dir DIR   (or copy DIR's contents back into place).\n"
        "--db defaults to AH_DB, else $XDG_DATA_HOME/agent-harbor/state.db; --data-dir to the\n"
        "database's directory. git-cache/ (mirrors of remotes) is not copied.\n"
        "A PostgreSQL database is backed up with PostgreSQL's tools (pg_dump).\n";
    static const struct option longs[] = {
        {"db", required_argument, NULL, 'd'},
        {"out", required_argument, NULL, 'o'},
        {"data-dir", required_argument, NULL, 'D'},
        {"db-only", no_argument, NULL, 'O'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db = getenv("AH_DB"), *out = NULL, *data_dir = NULL;
    bool db_only = false, json = false;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'o': out = optarg; break;
        case 'D': data_dir = optarg; break;
        case 'O': db_only = true; break;
        case 'j': json = true; break;
        case 'h': printf("%s", usage); return EXIT_OK;
        default:
            fprintf(stderr, "ah admin backup: unknown or incomplete option %s\n%s",
                    argv[optind - 1], usage);
            return EXIT_USAGE;
        }
    }
    if (optind < argc || !out || !*out) {
        fprintf(stderr, "ah admin backup: %s\n%s",
                optind < argc ? "unexpected argument" : "--out DIR is required", usage);
        return EXIT_USAGE;
    }
    AH_AUTOFREE char *def = db && *db ? NULL : config_default_db();
    if (!(db && *db) && !(db = def)) {
        fprintf(stderr, "ah admin backup: out of memory\n");
        return EXIT_GENERAL;
    }
    if (strstr(db, "://")) {
        fprintf(stderr, "ah admin backup: the database is PostgreSQL: back it up with "
                        "PostgreSQL's own tools (pg_dump, or continuous archiving for "
                        "point-in-time recovery); the data directory's files with any file "
                        "tool. `ah admin export` writes a portable archive of the rows.\n");
        return EXIT_CONFIG;
    }
    struct stat sb;
    if (stat(db, &sb) < 0) {
        fprintf(stderr, "ah admin backup: no database at %s: %s\n", db, strerror(errno));
        return EXIT_CONFIG;
    }
    char dd[PATH_MAX];
    if (data_dir)
        snprintf(dd, sizeof(dd), "%s", data_dir);
    else
        dir_of(db, dd, sizeof(dd));

    /* DIR: new, or an empty directory; never inside the data directory it copies */
    if (mkdir(out, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "ah admin backup: cannot create %s: %s\n", out, strerror(errno));
        return EXIT_GENERAL;
    }
    int ofd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *od = ofd < 0 ? NULL : fdopendir(dup(ofd));
    int entries = 0;
    for (struct dirent *e; od && (e = readdir(od));)
        entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (od)
        closedir(od);
    if (ofd < 0 || entries > 0) {
        fprintf(stderr, "ah admin backup: %s %s\n", out,
                ofd < 0 ? "is not a directory" : "is not empty: give a new directory");
        if (ofd >= 0)
            close(ofd);
        return EXIT_GENERAL;
    }
    struct copy_stats cs = {0};
    fstat(ofd, &sb);
    cs.out_dev = sb.st_dev;
    cs.out_ino = sb.st_ino;

    char dest[PATH_MAX + 16];
    snprintf(dest, sizeof(dest), "%s/state.db", out);
    struct ah_problem p = {0};
    json_t *sum = NULL;
    if (store_backup(db, dest, &sum, &p) < 0) {
        fprintf(stderr, "ah admin backup: %s\n", p.detail);
        problem_clear(&p);
        close(ofd);
        return EXIT_GENERAL;
    }

    int rc = EXIT_OK;
    int sfd = -1;
    if (!db_only) {
        /* the live database files are in the snapshot; git-cache/ is fetched again on demand */
        char base[PATH_MAX], dbdir[PATH_MAX], wal[PATH_MAX + 8], shm[PATH_MAX + 8],
            journal[PATH_MAX + 16];
        const char *slash = strrchr(db, '/');
        snprintf(base, sizeof(base), "%s", slash ? slash + 1 : db);
        dir_of(db, dbdir, sizeof(dbdir));
        snprintf(wal, sizeof(wal), "%s-wal", base);
        snprintf(shm, sizeof(shm), "%s-shm", base);
        snprintf(journal, sizeof(journal), "%s-journal", base);
        char rdd[PATH_MAX], rdb[PATH_MAX];
        bool same = realpath(dd, rdd) && realpath(dbdir, rdb) && strcmp(rdd, rdb) == 0;
        cs.top_skip[cs.n_top_skip++] = "git-cache";
        if (same) {
            cs.top_skip[cs.n_top_skip++] = base;
            cs.top_skip[cs.n_top_skip++] = wal;
            cs.top_skip[cs.n_top_skip++] = shm;
            cs.top_skip[cs.n_top_skip++] = journal;
        }
        if ((sfd = open(dd, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            fprintf(stderr, "ah admin backup: cannot open the data directory %s: %s\n", dd,
                    strerror(errno));
            rc = EXIT_GENERAL;
        } else if (copy_dir(sfd, ofd, dd, 0, &cs) < 0) {
            fprintf(stderr, "ah admin backup: %s\n", cs.err);
            rc = EXIT_GENERAL;
        }
    }
    if (sfd >= 0)
        close(sfd);
    fsync(ofd);
    close(ofd);
    if (rc == EXIT_OK) {
        json_object_set_new(sum, "path", json_string(out));
        json_object_set_new(sum, "files", json_integer(cs.files));
        json_object_set_new(sum, "fileBytes", json_integer(cs.bytes));
        if (json) {
            json_dumpf(sum, stdout, JSON_COMPACT);
            putchar('\n');
        } else {
            printf("backed up the database (schema %lld: %lld sessions, %lld events, %lld "
                   "bytes) to %s\n",
                   (long long)json_integer_value(json_object_get(sum, "schemaVersion")),
                   (long long)json_integer_value(json_object_get(sum, "sessions")),
                   (long long)json_integer_value(json_object_get(sum, "events")),
                   (long long)json_integer_value(json_object_get(sum, "bytes")), dest);
            if (!db_only)
                printf("copied %lld files (%lld bytes) of %s\n", (long long)cs.files,
                       (long long)cs.bytes, dd);
            printf("restore: stop the server, then start it with --db %s --data-dir %s\n", dest,
                   out);
        }
    }
    json_decref(sum);
    return rc;
}
