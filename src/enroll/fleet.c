/*
 * fleet.c — the registry of enrolled executors (fleet.h).
 *
 * Invariants: f->mu guards f->ex and every entry; the store is written outside the lock (a
 * reader never waits on a disk write); an entry's `facts` is a validated Hello, so readers use
 * its members without checking types again; `last_mono` is 0 until the executor said Hello to
 * this process, so a recorded executor of a previous run is offline until it reconnects.
 */
#include "fleet.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/cleanup.h"
#include "../store/store.h"
#include "host_facts.h"

struct fleet_exec {
    char *id, *name;
    json_t *facts;       /* the last Hello (validated) */
    json_t *hb;          /* the last Heartbeat, or NULL */
    bool connected;
    bool drained;
    int64_t first_seen;  /* wall ms */
    int64_t last_seen;   /* wall ms of the last Hello or Heartbeat; 0 = never */
    int64_t last_mono;   /* monotonic ms of the same, this process only; 0 = not since start */
    int64_t interval_ms; /* the executor's heartbeat interval */
    int64_t beats;       /* heartbeats since the last store write */
    char gone[160];      /* why the last connection ended ("" while connected) */
};

struct fleet {
    pthread_mutex_t mu;
    struct store *store;
    int64_t heartbeat_ms;
    int missed;
    struct fleet_exec **ex;
    size_t n, cap;
};

/* ---- entries ---------------------------------------------------------------------------------- */

static void exec_free(struct fleet_exec *e) {
    if (!e)
        return;
    free(e->id);
    free(e->name);
    json_decref(e->facts);
    json_decref(e->hb);
    free(e);
}

/* The last segment of a SPIFFE id: the executor's name by default. */
static const char *id_tail(const char *id) {
    const char *s = strrchr(id, '/');
    return s && s[1] ? s + 1 : id;
}

/* The entry whose id or name is key (under mu). */
static struct fleet_exec *find(struct fleet *f, const char *key) {
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->ex[i]->id, key) == 0)
            return f->ex[i];
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->ex[i]->name, key) == 0 || strcmp(id_tail(f->ex[i]->id), key) == 0)
            return f->ex[i];
    return NULL;
}

static int add(struct fleet *f, struct fleet_exec *e) {
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 16;
        struct fleet_exec **g = realloc(f->ex, nc * sizeof(*g));
        if (!g)
            return AH_E_NOMEM;
        f->ex = g;
        f->cap = nc;
    }
    f->ex[f->n++] = e;
    return 0;
}

static void drop(struct fleet *f, struct fleet_exec *e) {
    for (size_t i = 0; i < f->n; i++)
        if (f->ex[i] == e) {
            memmove(&f->ex[i], &f->ex[i + 1], (f->n - i - 1) * sizeof(*f->ex));
            f->n--;
            break;
        }
    exec_free(e);
}

/* ---- creation --------------------------------------------------------------------------------- */

int fleet_new(const struct fleet_config *cfg, struct fleet **ret, struct ah_problem *reterr) {
    struct fleet *f = calloc(1, sizeof(*f));
    if (!f)
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    pthread_mutex_init(&f->mu, NULL);
    f->store = cfg->store;
    f->heartbeat_ms = cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : 5000;
    f->missed = cfg->missed_offline > 0 ? cfg->missed_offline : 3;
    if (f->store) {
        struct executor_row *rows = NULL;
        size_t n = 0;
        int rc = store_executor_list(f->store, &rows, &n);
        if (rc < 0) {
            fleet_free(f);
            return problem_set(reterr, rc, "cannot read the executors from the store");
        }
        for (size_t i = 0; rc == 0 && i < n; i++) {
            json_t *facts = json_loads(rows[i].facts, 0, NULL);
            if (!json_is_object(facts)) { /* written by us; a damaged row is skipped */
                json_decref(facts);
                continue;
            }
            struct fleet_exec *e = calloc(1, sizeof(*e));
            if (e) {
                e->id = strdup(rows[i].id);
                e->name = strdup(rows[i].name);
                e->facts = facts;
                e->drained = rows[i].drained;
                e->first_seen = rows[i].first_seen;
                e->last_seen = rows[i].last_seen;
                json_int_t hb = json_integer_value(json_object_get(facts, "heartbeat_interval_ms"));
                e->interval_ms = hb > 0 ? hb : f->heartbeat_ms;
                snprintf(e->gone, sizeof(e->gone), "the access point restarted");
            } else {
                json_decref(facts);
            }
            if (!e || !e->id || !e->name || add(f, e) < 0) {
                exec_free(e);
                rc = AH_E_NOMEM;
            }
        }
        executor_rows_free(rows, n);
        if (rc < 0) {
            fleet_free(f);
            return problem_set(reterr, rc, "out of memory");
        }
    }
    *ret = f;
    return 0;
}

void fleet_free(struct fleet *f) {
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        exec_free(f->ex[i]);
    free(f->ex);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

size_t fleet_count(struct fleet *f) {
    pthread_mutex_lock(&f->mu);
    size_t n = f->n;
    pthread_mutex_unlock(&f->mu);
    return n;
}

bool fleet_has_agent(struct fleet *f, const char *type) {
    bool found = false;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n && !found; i++) {
        size_t k;
        json_t *a;
        json_array_foreach(json_object_get(f->ex[i]->facts, "agents"), k, a) {
            const char *t = json_string_value(json_object_get(a, "type"));
            if (t && strcmp(t, type) == 0) {
                found = true;
                break;
            }
        }
    }
    pthread_mutex_unlock(&f->mu);
    return found;
}

/* ---- checking what an executor sends ---------------------------------------------------------- */

static bool short_text(const json_t *v, size_t max) {
    const char *s = json_string_value(v);
    if (!s || !s[0] || json_string_length(v) > max)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

static bool opt_text(const json_t *obj, const char *key, size_t max) {
    json_t *v = json_object_get(obj, key);
    return !v || json_is_null(v) || short_text(v, max);
}

static bool opt_int(const json_t *obj, const char *key, json_int_t lo, json_int_t hi) {
    json_t *v = json_object_get(obj, key);
    return !v || (json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi);
}

/* An array (optional) of at most max short strings. */
static bool opt_words(const json_t *obj, const char *key, size_t max) {
    json_t *v = json_object_get(obj, key);
    if (!v)
        return true;
    if (!json_is_array(v) || json_array_size(v) > max)
        return false;
    size_t i;
    json_t *w;
    json_array_foreach(v, i, w) if (!short_text(w, 128)) return false;
    return true;
}

static int check_hello(const char *spiffe_id, const json_t *h, struct ah_problem *p) {
    if (!json_is_object(h) || strcmp(json_string_value(json_object_get(h, "type")) ?: "", "Hello"))
        return problem_set(p, AH_E_INVAL, "not a Hello frame");
    char *text = json_dumps(h, JSON_COMPACT);
    size_t len = text ? strlen(text) : 0;
    free(text);
    if (!text)
        return problem_set(p, AH_E_NOMEM, "out of memory");
    if (len > FLEET_HELLO_MAX_BYTES)
        return problem_set(p, AH_E_TOOLARGE, "Hello of %zu bytes (at most %d)", len,
                           FLEET_HELLO_MAX_BYTES);
    const char *claimed = json_string_value(json_object_get(h, "executor_id"));
    if (json_object_get(h, "executor_id") && (!claimed || strcmp(claimed, spiffe_id) != 0))
        return problem_set(p, AH_E_INVAL,
                           "Hello names executor_id %.200s but the certificate proves %.200s",
                           claimed ? claimed : "(not a string)", spiffe_id);
    if (!opt_text(h, "name", 128) || !opt_text(h, "version", 64))
        return problem_set(p, AH_E_INVAL, "Hello: name and version must be short text");
    if (!opt_int(h, "heartbeat_interval_ms", 10, 600000) ||
        !opt_int(h, "max_concurrent_tasks", 0, 100000))
        return problem_set(p, AH_E_INVAL,
                           "Hello: heartbeat_interval_ms must be 10..600000 and "
                           "max_concurrent_tasks 0..100000");
    json_t *labels = json_object_get(h, "labels");
    if (labels && (!json_is_object(labels) || json_object_size(labels) > HOST_FACTS_MAX_LABELS))
        return problem_set(p, AH_E_INVAL, "Hello: labels must be an object of at most %d labels",
                           HOST_FACTS_MAX_LABELS);
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v) {
        if (!host_facts_label_key_ok(k) || !json_is_string(v) || json_string_length(v) > 256)
            return problem_set(p, AH_E_INVAL, "Hello: label '%.64s' is not a short key=text",
                               k);
    }
    if (!opt_words(h, "tags", HOST_FACTS_MAX_TAGS) || !opt_words(h, "snapshot_providers", 32) ||
        !opt_words(h, "runtimes", 32))
        return problem_set(p, AH_E_INVAL,
                           "Hello: tags, snapshot_providers and runtimes must be lists of words");
    json_t *host = json_object_get(h, "host"), *res = json_object_get(h, "resources");
    if ((host && !json_is_object(host)) || (res && !json_is_object(res)) ||
        !opt_text(host, "os", 64) || !opt_text(host, "arch", 64) || !opt_text(host, "kernel", 128))
        return problem_set(p, AH_E_INVAL, "Hello: host and resources must be objects");
    json_t *agents = json_object_get(h, "agents");
    if (agents && (!json_is_array(agents) || json_array_size(agents) > 256))
        return problem_set(p, AH_E_INVAL, "Hello: agents must be a list");
    size_t i;
    json_array_foreach(agents, i, v) {
        if (!json_is_object(v) || !short_text(json_object_get(v, "type"), 64))
            return problem_set(p, AH_E_INVAL, "Hello: agents[%zu] needs a type", i);
    }
    return 0;
}

static json_t *ack(struct fleet *f, int64_t interval) {
    char now[TIME_RFC3339_LEN + 1], hash[32];
    time_format(time_now_ms(), now);
    /* what the access point asks of executors today: the interval and the offline rule */
    uint64_t h = 1469598103934665603ull;
    char cfg[64];
    int n = snprintf(cfg, sizeof(cfg), "hb=%lld;missed=%d", (long long)interval, f->missed);
    for (int i = 0; i < n; i++)
        h = (h ^ (unsigned char)cfg[i]) * 1099511628211ull;
    snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)h);
    return json_pack("{s:s, s:s, s:s, s:I}", "type", "Ack", "now", now, "config_hash", hash,
                     "heartbeat_interval_ms", (json_int_t)interval);
}

/* ---- the transport's calls -------------------------------------------------------------------- */

int fleet_on_hello(struct fleet *f, const char *spiffe_id, const json_t *hello, json_t **ret_ack,
                   struct ah_problem *reterr) {
    if (!spiffe_id || !spiffe_id[0] || strlen(spiffe_id) > 512)
        return problem_set(reterr, AH_E_INVAL, "no executor id");
    int rc = check_hello(spiffe_id, hello, reterr);
    if (rc < 0)
        return rc;
    json_t *facts = json_deep_copy(hello);
    const char *name_in = json_string_value(json_object_get(hello, "name"));
    char *name = strdup(name_in ? name_in : id_tail(spiffe_id));
    char *text = facts ? json_dumps(facts, JSON_COMPACT) : NULL;
    json_int_t hb = json_integer_value(json_object_get(hello, "heartbeat_interval_ms"));
    int64_t interval = hb > 0 ? hb : f->heartbeat_ms;
    json_t *a = ack(f, interval);
    if (!facts || !name || !text || !a) {
        json_decref(facts);
        json_decref(a);
        free(name);
        free(text);
        return problem_set(reterr, AH_E_NOMEM, "out of memory");
    }
    int64_t now = time_now_ms();
    pthread_mutex_lock(&f->mu);
    struct fleet_exec *e = NULL;
    for (size_t i = 0; i < f->n && !e; i++)
        if (strcmp(f->ex[i]->id, spiffe_id) == 0)
            e = f->ex[i];
    if (!e && f->n >= FLEET_MAX_EXECUTORS) {
        rc = problem_set(reterr, AH_E_UNAVAIL, "the fleet is full (%d executors)",
                         FLEET_MAX_EXECUTORS);
    } else if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e || !(e->id = strdup(spiffe_id)) || add(f, e) < 0) {
            exec_free(e);
            e = NULL;
            rc = problem_set(reterr, AH_E_NOMEM, "out of memory");
        } else {
            e->first_seen = now;
        }
    }
    if (e) {
        free(e->name);
        e->name = AH_TAKE(name);
        json_decref(e->facts);
        e->facts = AH_TAKE(facts);
        json_decref(e->hb);
        e->hb = NULL;
        e->connected = true;
        e->last_seen = now;
        e->last_mono = time_mono_ms();
        e->interval_ms = interval;
        e->beats = 0;
        e->gone[0] = '\0';
    }
    char *persist_name = e ? strdup(e->name) : NULL;
    pthread_mutex_unlock(&f->mu);
    free(name);
    json_decref(facts);
    if (rc == 0 && f->store && persist_name)
        (void)store_executor_put(f->store, spiffe_id, persist_name, text, now); /* best effort:
                                                      the fleet in memory is the truth now */
    free(persist_name);
    free(text);
    if (rc < 0) {
        json_decref(a);
        return rc;
    }
    *ret_ack = a;
    return 0;
}

int fleet_on_heartbeat(struct fleet *f, const char *spiffe_id, const json_t *hb,
                       json_t **ret_ack) {
    if (!json_is_object(hb) ||
        strcmp(json_string_value(json_object_get(hb, "type")) ?: "", "Heartbeat") != 0 ||
        !opt_int(hb, "free_slots", 0, 100000) || !opt_int(hb, "running", 0, 100000))
        return AH_E_INVAL;
    char *text = json_dumps(hb, JSON_COMPACT);
    size_t len = text ? strlen(text) : 0;
    free(text);
    if (!text)
        return AH_E_NOMEM;
    if (len > FLEET_HELLO_MAX_BYTES)
        return AH_E_TOOLARGE;
    json_t *copy = json_deep_copy(hb);
    if (!copy)
        return AH_E_NOMEM;
    int64_t now = time_now_ms(), interval = 0;
    bool persist = false;
    pthread_mutex_lock(&f->mu);
    struct fleet_exec *e = NULL;
    for (size_t i = 0; i < f->n && !e; i++)
        if (strcmp(f->ex[i]->id, spiffe_id) == 0)
            e = f->ex[i];
    if (e && e->last_mono) { /* said Hello to this process */
        json_decref(e->hb);
        e->hb = copy;
        copy = NULL;
        e->connected = true;
        e->last_seen = now;
        e->last_mono = time_mono_ms();
        e->gone[0] = '\0';
        interval = e->interval_ms;
        if (++e->beats >= FLEET_PERSIST_EVERY) {
            e->beats = 0;
            persist = true;
        }
    }
    pthread_mutex_unlock(&f->mu);
    if (copy) {
        json_decref(copy);
        return AH_E_NOTFOUND;
    }
    if (persist && f->store)
        (void)store_executor_seen(f->store, spiffe_id, now);
    if (ret_ack && !(*ret_ack = ack(f, interval)))
        return AH_E_NOMEM;
    return 0;
}

void fleet_on_gone(struct fleet *f, const char *spiffe_id, const char *reason) {
    int64_t seen = 0;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n; i++) {
        struct fleet_exec *e = f->ex[i];
        if (strcmp(e->id, spiffe_id) != 0)
            continue;
        e->connected = false;
        snprintf(e->gone, sizeof(e->gone), "%s", reason && reason[0] ? reason : "disconnected");
        seen = e->last_seen;
        e->beats = 0;
    }
    pthread_mutex_unlock(&f->mu);
    if (seen && f->store)
        (void)store_executor_seen(f->store, spiffe_id, seen);
}

/* ---- reading ---------------------------------------------------------------------------------- */

enum health { H_ONLINE, H_DEGRADED, H_OFFLINE };
static const char *const health_names[] = {"online", "degraded", "offline"};

/* Under mu. */
static enum health health_of(struct fleet *f, const struct fleet_exec *e, int64_t mono) {
    if (!e->connected || !e->last_mono)
        return H_OFFLINE;
    int64_t late = mono - e->last_mono;
    if (late > e->interval_ms * f->missed)
        return H_OFFLINE;
    if (late > e->interval_ms * 3 / 2)
        return H_DEGRADED;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(e->hb, "health_checks"), i, c) {
        const char *st = json_string_value(json_object_get(c, "status"));
        if (st && strcmp(st, "ok") != 0)
            return H_DEGRADED;
    }
    return H_ONLINE;
}

static json_t *or_null(json_t *v) {
    return v ? json_incref(v) : json_null();
}

/* The list of agent types of a Hello's agents[]. */
static json_t *agent_types(const json_t *facts) {
    json_t *out = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(facts, "agents"), i, a)
        json_array_append(out, json_object_get(a, "type"));
    return out;
}

/* What an executor sent, reduced to the shapes the API promises (an executor is a peer, not
 * us: a field of the wrong type is left out rather than passed on). */
static json_t *clean_checks(const json_t *in) {
    json_t *out = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(in, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *st = json_string_value(json_object_get(c, "status"));
        if (!name || i >= 32)
            continue;
        json_t *o = json_pack("{s:s, s:s}", "name", name, "status",
                              st && !strcmp(st, "ok") ? "ok" : "failing");
        json_t *lat = json_object_get(c, "latency_ms"), *det = json_object_get(c, "details");
        if (o && json_is_integer(lat))
            json_object_set(o, "latency_ms", lat);
        if (o && json_is_string(det))
            json_object_set(o, "details", det);
        json_array_append_new(out, o);
    }
    return out;
}

static json_t *clean_agents(const json_t *in) {
    json_t *out = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(in, i, a) {
        json_t *ver = json_object_get(a, "version");
        json_array_append_new(out, json_pack("{s:O, s:O}", "type", json_object_get(a, "type"),
                                             "version", json_is_string(ver) ? ver : json_null()));
    }
    return out;
}

/* Under mu: the Executor representation (API.md §7.11). */
static json_t *exec_json(struct fleet *f, const struct fleet_exec *e, int64_t mono) {
    const json_t *h = e->facts;
    json_t *host = json_object_get(h, "host");
    enum health hl = health_of(f, e, mono);
    char seen[TIME_RFC3339_LEN + 1], first[TIME_RFC3339_LEN + 1];
    time_format(e->last_seen, seen);
    time_format(e->first_seen, first);
    json_int_t cap = json_integer_value(json_object_get(h, "max_concurrent_tasks"));
    json_int_t running = json_integer_value(json_object_get(e->hb, "running"));
    json_t *fs = json_object_get(e->hb, "free_slots");
    json_t *per_core = json_object_get(json_object_get(e->hb, "load"), "per_core");
    json_t *snaps = json_object_get(h, "snapshot_providers");
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:b, s:s, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o,"
        " s:o, s:s, s:s?, s:I, s:o, s:o, s:o, s:o}",
        "id", e->id, "name", e->name, "os",
        json_string_value(json_object_get(host, "os")) ?: "unknown", "arch",
        json_string_value(json_object_get(host, "arch")) ?: "unknown", "snapshotCapabilities",
        snaps ? json_incref(snaps) : json_array(), "health", health_names[hl], "status",
        hl == H_OFFLINE ? "offline" : "online", "drained", e->drained, "controller", "server",
        "capacity", cap, "running", running, "freeSlots",
        hl == H_OFFLINE ? (json_int_t)0 : json_is_integer(fs) ? json_integer_value(fs) : cap,
        "labels", or_null(json_object_get(h, "labels")), "tags",
        json_object_get(h, "tags") ? json_incref(json_object_get(h, "tags")) : json_array(),
        "resources", or_null(json_object_get(h, "resources")), "runtimes",
        json_object_get(h, "runtimes") ? json_incref(json_object_get(h, "runtimes"))
                                        : json_array(),
        "agents", clean_agents(json_object_get(h, "agents")),
        "host", or_null(host), "firstSeen", first, "lastSeen",
        e->last_seen ? seen : NULL, "heartbeatIntervalMs", (json_int_t)e->interval_ms,
        "load", json_is_number(per_core) ? json_incref(per_core) : json_null(), "healthChecks",
        clean_checks(json_object_get(e->hb, "health_checks")),
        "version", or_null(json_object_get(h, "version")), "disconnectReason",
        e->connected ? json_null() : json_string(e->gone));
    if (o && json_is_null(json_object_get(o, "labels")))
        json_object_set_new(o, "labels", json_object());
    if (o && json_is_null(json_object_get(o, "resources")))
        json_object_set_new(o, "resources", json_object());
    if (o && json_is_null(json_object_get(o, "host")))
        json_object_set_new(o, "host", json_object());
    return o;
}

json_t *fleet_list_json(struct fleet *f) {
    json_t *items = json_array();
    int64_t mono = time_mono_ms();
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; items && i < f->n; i++)
        if (json_array_append_new(items, exec_json(f, f->ex[i], mono)) < 0) {
            json_decref(items);
            items = NULL;
        }
    pthread_mutex_unlock(&f->mu);
    return items;
}

int fleet_get_json(struct fleet *f, const char *key, json_t **ret) {
    int rc = AH_E_NOTFOUND;
    pthread_mutex_lock(&f->mu);
    struct fleet_exec *e = find(f, key);
    if (e) {
        *ret = exec_json(f, e, time_mono_ms());
        rc = *ret ? 0 : AH_E_NOMEM;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

int fleet_drain(struct fleet *f, const char *key, char **ret_id) {
    pthread_mutex_lock(&f->mu);
    struct fleet_exec *e = find(f, key);
    char *id = e ? strdup(e->id) : NULL;
    if (id)
        e->drained = true;
    pthread_mutex_unlock(&f->mu);
    if (!e)
        return AH_E_NOTFOUND;
    if (!id)
        return AH_E_NOMEM;
    int rc = f->store ? store_executor_drain(f->store, id, true) : 0;
    if (rc == AH_E_NOTFOUND)
        rc = 0; /* its Hello was not recorded (store trouble then); the flag holds in memory */
    if (rc < 0) {
        free(id);
        return rc;
    }
    *ret_id = id;
    return 0;
}

int fleet_remove(struct fleet *f, const char *key, char **ret_id) {
    pthread_mutex_lock(&f->mu);
    struct fleet_exec *e = find(f, key);
    bool live = e && health_of(f, e, time_mono_ms()) != H_OFFLINE;
    char *id = e && !live ? strdup(e->id) : NULL;
    if (id)
        drop(f, e);
    pthread_mutex_unlock(&f->mu);
    if (!e)
        return AH_E_NOTFOUND;
    if (live)
        return AH_E_CONFLICT;
    if (!id)
        return AH_E_NOMEM;
    int rc = f->store ? store_executor_delete(f->store, id) : 0;
    if (rc < 0 && rc != AH_E_NOTFOUND) {
        free(id);
        return rc;
    }
    *ret_id = id;
    return 0;
}

/* ---- runners for placement -------------------------------------------------------------------- */

void place_runners_free(struct place_runner *r, size_t n) {
    for (size_t i = 0; r && i < n; i++) {
        free(r[i].id);
        free(r[i].name);
        json_decref(r[i].labels);
        json_decref(r[i].runtimes);
        json_decref(r[i].agents);
    }
    free(r);
}

int fleet_runners(struct fleet *f, struct place_runner **ret, size_t *ret_n) {
    int rc = 0;
    int64_t mono = time_mono_ms();
    pthread_mutex_lock(&f->mu);
    struct place_runner *r = calloc(f->n ? f->n : 1, sizeof(*r));
    size_t n = 0;
    for (size_t i = 0; r && i < f->n; i++) {
        struct fleet_exec *e = f->ex[i];
        struct place_runner *p = &r[n++];
        json_t *labels = json_object_get(e->facts, "labels");
        json_t *rt = json_object_get(e->facts, "runtimes");
        p->id = strdup(e->id);
        p->name = strdup(e->name);
        p->online = health_of(f, e, mono) != H_OFFLINE;
        p->drained = e->drained;
        p->capacity = json_integer_value(json_object_get(e->facts, "max_concurrent_tasks"));
        p->running = json_integer_value(json_object_get(e->hb, "running"));
        p->labels = labels ? json_incref(labels) : json_object();
        p->runtimes = rt ? json_incref(rt) : NULL;
        p->agents = agent_types(e->facts);
        if (!p->id || !p->name || !p->labels || !p->agents) {
            rc = AH_E_NOMEM;
            break;
        }
    }
    pthread_mutex_unlock(&f->mu);
    if (!r)
        return AH_E_NOMEM;
    if (rc < 0) {
        place_runners_free(r, n);
        return rc;
    }
    *ret = r;
    *ret_n = n;
    return 0;
}
