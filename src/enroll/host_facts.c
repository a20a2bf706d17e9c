/*
 * host_facts.c — the executor's Hello and Heartbeat (host_facts.h).
 *
 * Invariants: everything a user gave (labels, tags, resources) is checked once, in
 * host_facts_new, so the frames built later cannot fail for bad input; the fixed facts are
 * detected once too; a heartbeat reads only /proc/loadavg, sysinfo and statvfs.
 */
#include "host_facts.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "../core/cleanup.h"
#include "../exec/catalog.h"

struct host_facts {
    char *name, *version, *data_dir;
    json_t *labels;    /* object */
    json_t *tags;      /* array */
    json_t *resources; /* detected, then the user's members over them */
    json_t *host;      /* os, os_version, kernel, arch, hostname */
    json_t *snapshots; /* array of provider names */
    int64_t capacity, heartbeat_ms;
    int64_t started_mono;
    struct agent_catalog *catalog;
    _Atomic int64_t running;
    /* host_facts_share: the machine's other sessions (an in-process REST API's) */
    int64_t (*others)(void *arg);
    void (*changed)(void *arg);
    void *share_arg;
};

/* ---- checking what the user gave ------------------------------------------------------------ */

bool host_facts_label_key_ok(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._/-", *p))
            return false;
    return true;
}

static bool printable(const char *s, size_t max) {
    size_t n = strlen(s);
    if (n > max)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

int host_facts_parse_labels(const char *const *labels, json_t **ret, struct ah_problem *reterr) {
    json_t *obj = json_object();
    if (!obj)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    size_t count = 0;
    for (const char *const *l = labels; l && *l; l++, count++) {
        const char *eq = strchr(*l, '=');
        char key[64];
        size_t kn = eq ? (size_t)(eq - *l) : 0;
        if (count >= HOST_FACTS_MAX_LABELS) {
            json_decref(obj);
            return problem_set(reterr, AH_E_INVAL, "--labels: at most %d labels",
                               HOST_FACTS_MAX_LABELS);
        }
        if (!eq || kn == 0 || kn >= sizeof(key)) {
            json_decref(obj);
            return problem_set(reterr, AH_E_INVAL,
                               "--labels: '%.80s' is not KEY=VALUE (a key of 1 to 63 characters)",
                               *l);
        }
        memcpy(key, *l, kn);
        key[kn] = '\0';
        if (!host_facts_label_key_ok(key)) {
            json_decref(obj);
            return problem_set(reterr, AH_E_INVAL,
                               "--labels: key '%s' may only hold letters, digits and . _ / -", key);
        }
        json_t *val = printable(eq + 1, 256) ? json_string(eq + 1) : NULL; /* NULL: not UTF-8 */
        if (!val) {
            json_decref(obj);
            return problem_set(reterr, AH_E_INVAL,
                               "--labels: the value of '%s' must be printable text of at most "
                               "256 bytes", key);
        }
        if (json_object_get(obj, key)) {
            json_decref(val);
            json_decref(obj);
            return problem_set(reterr, AH_E_INVAL, "--labels: '%s' is given twice", key);
        }
        if (json_object_set_new(obj, key, val) < 0) {
            json_decref(obj);
            return problem_set(reterr, AH_E_NOMEM, "out of memory");
        }
    }
    *ret = obj;
    return 0;
}

static int parse_tags(const char *const *tags, json_t **ret, struct ah_problem *reterr) {
    json_t *arr = json_array();
    if (!arr)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    size_t count = 0;
    for (const char *const *t = tags; t && *t; t++, count++) {
        json_t *tag = count < HOST_FACTS_MAX_TAGS && **t && printable(*t, 64) && !strchr(*t, ' ')
                          ? json_string(*t) /* NULL: not UTF-8 */
                          : NULL;
        if (!tag) {
            json_decref(arr);
            if (count >= HOST_FACTS_MAX_TAGS)
                return problem_set(reterr, AH_E_INVAL, "--tags: at most %d tags",
                                   HOST_FACTS_MAX_TAGS);
            return problem_set(reterr, AH_E_INVAL,
                               "--tags: '%.80s' is not a tag (1 to 64 printable characters, no "
                               "spaces)",
                               *t);
        }
        bool dup = false;
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) dup |= strcmp(json_string_value(v), *t) == 0;
        if (dup)
            json_decref(tag);
        else if (json_array_append_new(arr, tag) < 0) {
            json_decref(arr);
            return problem_set(reterr, AH_E_NOMEM, "out of memory");
        }
    }
    *ret = arr;
    return 0;
}

/* --resources or --resources-file: one JSON object. */
static int parse_resources(const struct host_facts_config *cfg, json_t **ret,
                           struct ah_problem *reterr) {
    *ret = NULL;
    if (cfg->resources_json && cfg->resources_file)
        return problem_set(reterr, AH_E_INVAL,
                           "--resources and --resources-file cannot be used together");
    const char *flag = cfg->resources_json ? "--resources" : "--resources-file";
    AH_AUTOFREE char *text = NULL;
    if (cfg->resources_json) {
        if (strlen(cfg->resources_json) > HOST_FACTS_MAX_RESOURCES_BYTES)
            return problem_set(reterr, AH_E_INVAL, "--resources: longer than %d bytes",
                               HOST_FACTS_MAX_RESOURCES_BYTES);
        text = strdup(cfg->resources_json);
        if (!text)
            return problem_set(reterr, AH_E_NOMEM, "out of memory");
    } else if (cfg->resources_file) {
        FILE *f = fopen(cfg->resources_file, "r");
        if (!f)
            return problem_set(reterr, errno == ENOENT ? AH_E_NOTFOUND : AH_E_INVAL,
                               "--resources-file: cannot read %s: %s", cfg->resources_file,
                               strerror(errno));
        text = malloc(HOST_FACTS_MAX_RESOURCES_BYTES + 2);
        size_t n = text ? fread(text, 1, HOST_FACTS_MAX_RESOURCES_BYTES + 1, f) : 0;
        bool bad = text && ferror(f);
        fclose(f);
        if (!text)
            return problem_set(reterr, AH_E_NOMEM, "out of memory");
        if (bad)
            return problem_set(reterr, AH_E_INVAL, "--resources-file: cannot read %s",
                               cfg->resources_file);
        if (n > HOST_FACTS_MAX_RESOURCES_BYTES)
            return problem_set(reterr, AH_E_INVAL, "--resources-file: %s is larger than %d bytes",
                               cfg->resources_file, HOST_FACTS_MAX_RESOURCES_BYTES);
        text[n] = '\0';
    } else {
        return 0;
    }
    json_error_t je;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!v)
        return problem_set(reterr, AH_E_INVAL,
                           "%s: not JSON (line %d, column %d: %s); YAML is not supported, give "
                           "the same content as a JSON object",
                           flag, je.line, je.column, je.text);
    if (!json_is_object(v)) {
        json_decref(v);
        return problem_set(reterr, AH_E_INVAL, "%s: must be a JSON object", flag);
    }
    *ret = v;
    return 0;
}

/* ---- detecting the host --------------------------------------------------------------------- */

/* A value of /etc/os-release ("ID", "VERSION_ID", "PRETTY_NAME"), unquoted, into out. */
static void os_release(const char *key, char *out, size_t n) {
    out[0] = '\0';
    FILE *f = fopen("/etc/os-release", "r");
    if (!f)
        f = fopen("/usr/lib/os-release", "r");
    if (!f)
        return;
    char line[512];
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, kl) != 0 || line[kl] != '=')
            continue;
        char *v = line + kl + 1;
        v[strcspn(v, "\n")] = '\0';
        size_t vl = strlen(v);
        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
            v[vl - 1] = '\0';
            v++;
        }
        snprintf(out, n, "%s", v);
        break;
    }
    fclose(f);
}

static json_t *detect_host(void) {
    struct utsname u;
    bool have = uname(&u) == 0;
    char id[64], ver[64], pretty[160], host[256] = "";
    os_release("ID", id, sizeof(id));
    os_release("VERSION_ID", ver, sizeof(ver));
    os_release("PRETTY_NAME", pretty, sizeof(pretty));
    if (gethostname(host, sizeof(host) - 1) < 0)
        host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    return json_pack("{s:s, s:s?, s:s?, s:s?, s:s, s:s, s:s?}", "os", "linux", "distribution",
                     id[0] ? id : NULL, "os_version", ver[0] ? ver : NULL, "os_name",
                     pretty[0] ? pretty : NULL, "kernel", have ? u.release : "unknown", "arch",
                     have ? u.machine : "unknown", "hostname", host[0] ? host : NULL);
}

/* What the workspace providers can really do under data_dir: git and copy always; reflink and
 * btrfs on btrfs (as the access point's own local runner reports). */
static json_t *detect_snapshots(const char *dir) {
    json_t *caps = json_pack("[s, s]", "git", "copy");
    struct statfs fs;
    if (caps && statfs(dir, &fs) == 0 && fs.f_type == 0x9123683E /* BTRFS_SUPER_MAGIC */) {
        json_array_append_new(caps, json_string("reflink"));
        json_array_append_new(caps, json_string("btrfs"));
    }
    return caps;
}

static json_t *detect_resources(const char *dir) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    struct statvfs vfs;
    json_t *r = json_object();
    if (!r)
        return NULL;
    json_object_set_new(r, "cores", json_integer(cores > 0 ? cores : 1));
    if (pages > 0 && psize > 0)
        json_object_set_new(r, "memory_bytes", json_integer((json_int_t)pages * psize));
    if (statvfs(dir, &vfs) == 0)
        json_object_set_new(r, "disk_bytes",
                            json_integer((json_int_t)(vfs.f_blocks * vfs.f_frsize)));
    return r;
}

int host_facts_new(const struct host_facts_config *cfg, struct host_facts **ret,
                   struct ah_problem *reterr) {
    json_t *labels = NULL, *tags = NULL, *user = NULL;
    int rc;
    if ((rc = host_facts_parse_labels(cfg->labels, &labels, reterr)) < 0)
        return rc;
    if ((rc = parse_tags(cfg->tags, &tags, reterr)) < 0 ||
        (rc = parse_resources(cfg, &user, reterr)) < 0) {
        json_decref(labels);
        json_decref(tags);
        return rc;
    }
    if (cfg->name && (!cfg->name[0] || !printable(cfg->name, 128))) {
        json_decref(labels);
        json_decref(tags);
        json_decref(user);
        return problem_set(reterr, AH_E_INVAL, "--name: 1 to 128 printable characters");
    }
    struct host_facts *hf = calloc(1, sizeof(*hf));
    const char *dir = cfg->data_dir ? cfg->data_dir : ".";
    if (hf) {
        hf->labels = labels;
        hf->tags = tags;
        hf->name = cfg->name ? strdup(cfg->name) : NULL;
        hf->version = strdup(cfg->version ? cfg->version : "unknown");
        hf->data_dir = strdup(dir);
        hf->host = detect_host();
        hf->snapshots = detect_snapshots(dir);
        hf->resources = detect_resources(dir);
        hf->catalog = cfg->catalog;
        hf->heartbeat_ms = cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : 5000;
        hf->started_mono = time_mono_ms();
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        hf->capacity = cfg->max_concurrent >= 0 ? cfg->max_concurrent : cores > 0 ? cores : 1;
    }
    if (!hf || (cfg->name && !hf->name) || !hf->version || !hf->data_dir || !hf->host ||
        !hf->snapshots || !hf->resources ||
        (user && json_object_update(hf->resources, user) < 0)) {
        json_decref(user);
        if (!hf) {
            json_decref(labels);
            json_decref(tags);
        }
        host_facts_free(hf);
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    }
    json_decref(user);
    *ret = hf;
    return 0;
}

void host_facts_free(struct host_facts *hf) {
    if (!hf)
        return;
    free(hf->name);
    free(hf->version);
    free(hf->data_dir);
    json_decref(hf->labels);
    json_decref(hf->tags);
    json_decref(hf->resources);
    json_decref(hf->host);
    json_decref(hf->snapshots);
    free(hf);
}

void host_facts_set_running(struct host_facts *hf, int64_t running) {
    int64_t old = atomic_exchange(&hf->running, running < 0 ? 0 : running);
    if (old != (running < 0 ? 0 : running) && hf->changed)
        hf->changed(hf->share_arg);
}

int64_t host_facts_running(struct host_facts *hf) {
    return atomic_load(&hf->running);
}

void host_facts_share(struct host_facts *hf, int64_t (*others)(void *arg),
                      void (*changed)(void *arg), void *arg) {
    hf->others = others;
    hf->changed = changed;
    hf->share_arg = arg;
}

int64_t host_facts_capacity(const struct host_facts *hf) {
    return hf->capacity;
}

void host_facts_set_catalog(struct host_facts *hf, struct agent_catalog *catalog) {
    hf->catalog = catalog;
}

struct agent_catalog *host_facts_catalog(const struct host_facts *hf) {
    return hf->catalog;
}

/* ---- the frames ----------------------------------------------------------------------------- */

/* The installed agents of the catalog: {type, version}. The built-in scripted agent is part of
 * ah itself and always present. */
static json_t *agents_json(struct host_facts *hf) {
    json_t *out = json_array();
    if (!out || !hf->catalog)
        return out;
    json_t *items = agent_catalog_items(hf->catalog, hf->version);
    size_t i;
    json_t *a;
    json_array_foreach(items, i, a) {
        json_t *inst = json_object_get(a, "installed");
        bool builtin = json_is_null(json_object_get(a, "binary"));
        if (!builtin && !json_is_true(inst))
            continue;
        json_t *ver = json_object_get(a, "version");
        json_array_append_new(out, json_pack("{s:O, s:O}", "type", json_object_get(a, "type"),
                                             "version", ver ? ver : json_null()));
    }
    json_decref(items);
    return out;
}

/* The last segment of a SPIFFE id (spiffe://td/ah/agent/<name>), the default name. */
static const char *id_tail(const char *id) {
    const char *s = id ? strrchr(id, '/') : NULL;
    return s && s[1] ? s + 1 : id ? id : "executor";
}

json_t *host_facts_hello(struct host_facts *hf, const char *executor_id) {
    return json_pack("{s:s, s:s?, s:s, s:s, s:O, s:O, s:I, s:I, s:O, s:O, s:O, s:[s, s], s:o}",
                     "type", "Hello", "executor_id", executor_id, "name",
                     hf->name ? hf->name : id_tail(executor_id), "version", hf->version, "labels",
                     hf->labels, "tags", hf->tags, "heartbeat_interval_ms",
                     (json_int_t)hf->heartbeat_ms, "max_concurrent_tasks",
                     (json_int_t)hf->capacity, "resources", hf->resources, "host", hf->host,
                     "snapshot_providers", hf->snapshots, "runtimes", "local", "disabled",
                     "agents", agents_json(hf));
}

/* One health check: its name, ok or failing, how long it took, and why when failing. */
static json_t *check(const char *name, bool ok, int64_t started, const char *details) {
    return json_pack("{s:s, s:s, s:I, s:s*}", "name", name, "status", ok ? "ok" : "failing",
                     "latency_ms", (json_int_t)(time_mono_ms() - started), "details",
                     ok ? NULL : details);
}

json_t *host_facts_heartbeat(struct host_facts *hf) {
    char ts[TIME_RFC3339_LEN + 1];
    time_format(time_now_ms(), ts);
    double load1 = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load1) != 1)
            load1 = -1;
        fclose(f);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    struct sysinfo si;
    bool have_si = sysinfo(&si) == 0;
    int64_t t0 = time_mono_ms();
    struct statvfs vfs;
    bool have_disk = statvfs(hf->data_dir, &vfs) == 0;
    uint64_t free_disk = have_disk ? (uint64_t)vfs.f_bavail * vfs.f_frsize : 0;
    bool writable = access(hf->data_dir, W_OK) == 0;
    /* a workspace needs room: under 1% free (or 64 MiB) the executor is degraded */
    uint64_t total = have_disk ? (uint64_t)vfs.f_blocks * vfs.f_frsize : 0;
    bool disk_ok = have_disk && free_disk >= 64ull * 1024 * 1024 && free_disk * 100 >= total;
    /* one budget for the machine: the sessions its own REST API runs hold slots too */
    int64_t others = hf->others ? hf->others(hf->share_arg) : 0;
    int64_t running = atomic_load(&hf->running) + (others > 0 ? others : 0);
    int64_t free_slots = hf->capacity > running ? hf->capacity - running : 0;
    json_t *load = load1 >= 0 ? json_pack("{s:f, s:f}", "load1", load1, "per_core",
                                          load1 / (cores > 0 ? (double)cores : 1.0))
                              : json_null();
    json_t *mem = have_si ? json_pack("{s:I, s:I}", "total_bytes",
                                      (json_int_t)((uint64_t)si.totalram * si.mem_unit),
                                      "free_bytes",
                                      (json_int_t)((uint64_t)si.freeram * si.mem_unit))
                          : json_null();
    json_t *disk = have_disk ? json_pack("{s:I}", "free_bytes", (json_int_t)free_disk) : json_null();
    json_t *checks = json_pack("[o, o]",
                               check("data-dir", writable, t0, "the data directory is not writable"),
                               check("disk", disk_ok, t0, "less than 1% (or 64 MiB) disk free"));
    return json_pack("{s:s, s:s, s:I, s:o, s:o, s:o, s:I, s:I, s:[], s:o}", "type", "Heartbeat",
                     "timestamp", ts, "uptime_ms", (json_int_t)(time_mono_ms() - hf->started_mono),
                     "load", load, "memory", mem, "disk", disk, "free_slots",
                     (json_int_t)free_slots, "running", (json_int_t)running, "sessions",
                     "health_checks", checks);
}
