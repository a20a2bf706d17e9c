/*
 * placement.c — where a session runs (D43; fleet.h "placement"). Pure: it sees a snapshot of the
 * runners and the request, and nothing else, so every rule is a cmocka case.
 */
#include <stdio.h>
#include <string.h>

#include "fleet.h"

static const char *tail(const char *id) {
    const char *s = strrchr(id, '/');
    return s && s[1] ? s + 1 : id;
}

static bool names(const struct place_runner *r, const char *key) {
    return strcmp(r->id, key) == 0 || strcmp(r->name, key) == 0 || strcmp(tail(r->id), key) == 0;
}

static bool has_word(const json_t *arr, const char *w) {
    if (!arr)
        return true; /* not said: anything */
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        const char *s = json_string_value(v);
        if (s && w && strcmp(s, w) == 0)
            return true;
    }
    return false;
}

/* Does some runner advertise the label key? Only such keys constrain placement: the others
 * are the task's own annotations (labels existed before executors did). */
static bool key_known(const struct place_runner *rs, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (json_object_get(rs[i].labels, key))
            return true;
    return false;
}

/* The first label of the task this runner does not match, or NULL. */
static const char *label_miss(const struct place_request *rq, const struct place_runner *rs,
                              size_t n, const struct place_runner *r) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)rq->labels, k, v) {
        if (!key_known(rs, n, k))
            continue;
        const char *want = json_string_value(v);
        const char *have = json_string_value(json_object_get(r->labels, k));
        if (!want || !have || strcmp(want, have) != 0)
            return k;
    }
    return NULL;
}

static void note(char *buf, size_t cap, const char *name, const char *why) {
    size_t len = strlen(buf);
    if (len + 8 >= cap)
        return;
    int n = snprintf(buf + len, cap - len, "%s%s: %s", len ? "; " : "", name, why);
    if (n < 0 || (size_t)n >= cap - len)
        memcpy(buf + cap - 4, "...", 4); /* cut: say so */
}

void placement_choose(const struct place_request *rq, const struct place_runner *rs, size_t n,
                      struct place_result *ret) {
    memset(ret, 0, sizeof(*ret));
    ret->index = -1;
    if (rq->tenant_max > 0 && rq->tenant_running >= rq->tenant_max) {
        ret->waiting = true;
        snprintf(ret->reason, sizeof(ret->reason),
                 "tenant %s already runs %lld sessions, its limit; this one starts when one ends",
                 rq->tenant ? rq->tenant : "default", (long long)rq->tenant_running);
        return;
    }
    char why[sizeof(ret->reason)] = "";
    int best = -1, best_busy = -1, pinned_offline = -1;
    int64_t best_free = -1;
    bool pin_found = false;
    for (size_t i = 0; i < n; i++) {
        const struct place_runner *r = &rs[i];
        char w[160];
        if (rq->pin && !names(r, rq->pin))
            continue;
        pin_found |= rq->pin != NULL;
        const char *miss = label_miss(rq, rs, n, r);
        if (miss) {
            snprintf(w, sizeof(w), "label %.60s does not match", miss);
            note(why, sizeof(why), r->name, w);
            continue;
        }
        if (!has_word(r->runtimes, rq->runtime)) {
            snprintf(w, sizeof(w), "no runtime %.60s", rq->runtime ? rq->runtime : "?");
            note(why, sizeof(why), r->name, w);
            continue;
        }
        if (!has_word(r->agents, rq->agent)) {
            snprintf(w, sizeof(w), "agent %.60s is not installed", rq->agent ? rq->agent : "?");
            note(why, sizeof(why), r->name, w);
            continue;
        }
        if (r->drained) {
            note(why, sizeof(why), r->name, "drained");
            continue;
        }
        if (r->capacity <= 0) {
            note(why, sizeof(why), r->name, "takes no sessions (capacity 0)");
            continue;
        }
        if (!r->online) {
            note(why, sizeof(why), r->name, "offline");
            if (pinned_offline < 0)
                pinned_offline = (int)i;
            continue;
        }
        int64_t free_slots = r->capacity > r->running ? r->capacity - r->running : 0;
        if (free_slots > best_free) {
            best_free = free_slots;
            best = (int)i;
        }
        if (best_busy < 0)
            best_busy = (int)i;
    }
    if (best >= 0 && best_free > 0) {
        ret->index = best;
        return;
    }
    if (best_busy >= 0) { /* fits, but every such runner is full: the queue */
        ret->index = best_busy;
        ret->waiting = true;
        snprintf(ret->reason, sizeof(ret->reason),
                 "waiting for a free slot: every runner that fits is busy (%s runs %lld of %lld)",
                 rs[best_busy].name, (long long)rs[best_busy].running,
                 (long long)rs[best_busy].capacity);
        return;
    }
    if (rq->pin && !pin_found) {
        snprintf(ret->reason, sizeof(ret->reason),
                 "workspace.executionHostId %.100s names no known executor", rq->pin);
        return;
    }
    /* a runner that fits will do once it is back (an executor reconnects by itself) */
    ret->waiting = pinned_offline >= 0;
    snprintf(ret->reason, sizeof(ret->reason), "no runner can take this session%s%s",
             why[0] ? " — " : "", why);
}

int placement_fair_next(const char *const *tenants, size_t n,
                        int64_t (*running)(void *arg, const char *tenant), void *arg) {
    int best = -1;
    int64_t best_running = 0;
    for (size_t i = 0; i < n; i++) {
        bool seen = false; /* only a tenant's first (oldest) queued session competes */
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(tenants[j], tenants[i]) == 0;
        if (seen)
            continue;
        int64_t r = running(arg, tenants[i]);
        if (best < 0 || r < best_running) {
            best = (int)i;
            best_running = r;
        }
    }
    return best;
}
