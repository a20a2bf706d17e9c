/*
 * fanout.c — channels and subscribers.
 *
 * A channel exists only while a session has subscribers; publishing to a session nobody watches
 * costs one hash lookup. The ring holds the last BUS_RING events published while the channel
 * existed. A subscriber's cursor says what it was last given; bus_next serves from the ring when
 * the ring still has cursor+1, otherwise from the store (the store has every event before it is
 * published, so nothing can fall between the two).
 *
 * Locks: b->mapmu guards the bucket lists and channel refcounts; ch->mu guards a channel's ring
 * and subscriber list. Wake callbacks run under ch->mu, so once bus_unsubscribe has removed a
 * subscriber under that lock, its callback can no longer be running or called.
 */
#include <string.h>

#include "../obs/obs.h"
#include "internal.h"

static struct obs_family *m_subs;
__attribute__((constructor)) static void fanout_metrics(void) {
    m_subs = obs_register1("ah_bus_subscribers",
                           "Live followers of session events (event streams, terminal streams)",
                           OBS_GAUGE, NULL, 0);
}

struct channel {
    struct channel *next; /* bucket list */
    char *tenant, *session_id;
    unsigned refs; /* subscribers; under b->mapmu */
    pthread_mutex_t mu;
    struct bus_event *ring[BUS_RING];
    int64_t ring_first; /* seq of the oldest event in the ring; 0 when empty */
    size_t ring_n;
    struct bus_sub *subs;
};

struct bus_sub {
    struct bus *bus;
    struct channel *ch;
    struct bus_sub *prev, *next;
    int64_t cursor;
    void (*wake)(void *);
    void *arg;
};

static unsigned hash(const char *tenant, const char *id) {
    unsigned h = 2166136261u;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    for (const char *p = tenant; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % BUS_BUCKETS;
}

void bus_event_ref(struct bus_event *e) {
    __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
}

void bus_event_unref(struct bus_event *e) {
    if (e && __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(e);
}

/* The type of a stored event: stored events start with {"type":"…" (store writes type first). */
static void read_type(const char *json, char out[32]) {
    static const char prefix[] = "{\"type\":\"";
    out[0] = '\0';
    if (strncmp(json, prefix, sizeof(prefix) - 1) != 0)
        return;
    const char *p = json + sizeof(prefix) - 1;
    size_t n = strcspn(p, "\"\\");
    if (n < 32 && p[n] == '"') {
        memcpy(out, p, n);
        out[n] = '\0';
    }
}

/* D26: the SSE `event:` name is the one the Agent Harbor WebUI listens for — `thinking` for a
 * thought, `tool_execution` for a tool's start, progress and result — and the type itself for
 * every other event. The data keeps the spec's `type`, so clients that read it lose nothing. */
static const char *sse_event_name(const char *type) {
    if (!type[0])
        return "message";
    if (strcmp(type, "thought") == 0)
        return "thinking";
    if (strcmp(type, "tool_use") == 0 || strcmp(type, "tool_result") == 0)
        return "tool_execution";
    return type;
}

struct bus_event *bus_event_from(int64_t seq, char *json, bool terminal) {
    size_t len = strlen(json);
    char type[32];
    read_type(json, type);
    char head[96];
    int hl = snprintf(head, sizeof(head), "id: %lld\nevent: %s\ndata: ", (long long)seq,
                      sse_event_name(type));
    size_t frame_len = (size_t)hl + len + 2;
    struct bus_event *e = malloc(sizeof(*e) + frame_len + 1);
    if (!e) {
        free(json);
        return NULL;
    }
    e->refs = 1;
    e->seq = seq;
    e->terminal = terminal;
    memcpy(e->type, type, sizeof(type));
    memcpy(e->frame, head, (size_t)hl);
    memcpy(e->frame + hl, json, len);
    memcpy(e->frame + hl + len, "\n\n", 3);
    e->frame_len = frame_len;
    e->json = e->frame + hl;
    e->len = len;
    free(json);
    return e;
}

/* Is a stored event (read back from the store) the terminal status of its session? */
static bool stored_terminal(const struct bus_event *e) {
    if (strcmp(e->type, "status") != 0)
        return false;
    json_t *j = json_loadb(e->json, e->len, 0, NULL);
    enum session_status s;
    bool t = j && session_status_parse(json_string_value(json_object_get(j, "status")), &s) == 0 &&
             session_status_terminal(s);
    json_decref(j);
    return t;
}

static struct channel *find(struct bus *b, unsigned h, const char *tenant, const char *id) {
    for (struct channel *c = b->buckets[h]; c; c = c->next)
        if (strcmp(c->session_id, id) == 0 && strcmp(c->tenant, tenant) == 0)
            return c;
    return NULL;
}

/* Keeps an event in ch's ring (takes json); ch->mu held. The caller wakes the subscribers. */
static void ring_put(struct channel *ch, int64_t seq, char *json, bool terminal, bool stored) {
    struct bus_event *e = bus_event_from(seq, json, terminal);
    if (!e) /* OOM: subscribers will read the store */
        return;
    if (stored)
        e->terminal = stored_terminal(e);
    if (ch->ring_n && ch->ring_first + (int64_t)ch->ring_n != seq) {
        /* Not contiguous (the channel appeared mid-stream): restart the ring here. */
        for (size_t i = 0; i < ch->ring_n; i++)
            bus_event_unref(ch->ring[(ch->ring_first + (int64_t)i) % BUS_RING]);
        ch->ring_n = 0;
    }
    if (ch->ring_n == 0) {
        ch->ring_first = seq;
    } else if (ch->ring_n == BUS_RING) {
        bus_event_unref(ch->ring[ch->ring_first % BUS_RING]);
        ch->ring_first++;
        ch->ring_n--;
    }
    ch->ring[seq % BUS_RING] = e;
    ch->ring_n++;
}

static void wake_subs(struct channel *ch) {
    for (struct bus_sub *s = ch->subs; s; s = s->next)
        s->wake(s->arg);
}

void bus_publish(struct bus *b, const char *tenant, const char *session_id, int64_t seq,
                 char *json, bool terminal) {
    __atomic_add_fetch(&b->published, 1, __ATOMIC_RELAXED);
    unsigned h = hash(tenant, session_id);
    pthread_mutex_lock(&b->mapmu);
    struct channel *ch = find(b, h, tenant, session_id);
    if (!ch) { /* nobody watches: the store already has it */
        pthread_mutex_unlock(&b->mapmu);
        free(json);
        return;
    }
    pthread_mutex_lock(&ch->mu); /* taken before mapmu is released: ch cannot go away */
    pthread_mutex_unlock(&b->mapmu);
    ring_put(ch, seq, json, terminal, false);
    wake_subs(ch); /* even when the event could not be kept (OOM): they read the store */
    pthread_mutex_unlock(&ch->mu);
}

/* Another process committed events of a session up to `seq` (store_watch): read them from the
 * store once, into the ring, for every subscriber here; one read per notice, not one per
 * subscriber. The read happens under ch->mu (one query, for a session this process does not
 * write): the subscribers of that session wait for it, no one else does. */
void bus_remote_committed(struct bus *b, const char *tenant, const char *session_id,
                          int64_t seq) {
    pthread_mutex_lock(&b->mapmu); /* then ch->mu, as bus_publish */
    if (!session_id) { /* notices may have been lost: every subscriber reads the store */
        for (size_t i = 0; i < BUS_BUCKETS; i++)
            for (struct channel *ch = b->buckets[i]; ch; ch = ch->next) {
                pthread_mutex_lock(&ch->mu);
                wake_subs(ch);
                pthread_mutex_unlock(&ch->mu);
            }
        pthread_mutex_unlock(&b->mapmu);
        return;
    }
    struct channel *ch = find(b, hash(tenant, session_id), tenant, session_id);
    if (!ch) { /* nobody follows it here */
        pthread_mutex_unlock(&b->mapmu);
        return;
    }
    pthread_mutex_lock(&ch->mu);
    pthread_mutex_unlock(&b->mapmu);
    /* From the ring's end, or (empty ring) from the subscriber furthest behind. */
    int64_t from = INT64_MAX;
    if (ch->ring_n)
        from = ch->ring_first + (int64_t)ch->ring_n - 1;
    else
        for (struct bus_sub *s = ch->subs; s; s = s->next)
            from = s->cursor < from ? s->cursor : from;
    while (from < seq) {
        char **texts = NULL;
        int64_t *seqs = NULL;
        size_t got = 0;
        __atomic_add_fetch(&b->store_reads, 1, __ATOMIC_RELAXED);
        if (store_event_range(b->store, ch->tenant, ch->session_id, from, BUS_BATCH_MAX, &texts,
                              &seqs, &got) < 0)
            break; /* the subscribers, woken below, read the store themselves */
        for (size_t i = 0; i < got; i++)
            ring_put(ch, seqs[i], texts[i], false, true);
        if (got)
            from = seqs[got - 1];
        free(texts);
        free(seqs);
        if (!got)
            break;
    }
    wake_subs(ch);
    pthread_mutex_unlock(&ch->mu);
}

int bus_subscribe(struct bus *b, const char *tenant, const char *session_id, int64_t after,
                  void (*wake)(void *arg), void *arg, struct bus_sub **ret) {
    struct bus_sub *s = calloc(1, sizeof(*s));
    if (!s)
        return AH_E_NOMEM;
    s->bus = b;
    s->cursor = after < 0 ? 0 : after;
    s->wake = wake;
    s->arg = arg;
    unsigned h = hash(tenant, session_id);
    pthread_mutex_lock(&b->mapmu);
    struct channel *ch = find(b, h, tenant, session_id);
    if (!ch) {
        ch = calloc(1, sizeof(*ch));
        if (ch) {
            ch->tenant = strdup(tenant);
            ch->session_id = strdup(session_id);
        }
        if (!ch || !ch->tenant || !ch->session_id) {
            pthread_mutex_unlock(&b->mapmu);
            if (ch) {
                free(ch->tenant);
                free(ch->session_id);
                free(ch);
            }
            free(s);
            return AH_E_NOMEM;
        }
        pthread_mutex_init(&ch->mu, NULL);
        ch->next = b->buckets[h];
        b->buckets[h] = ch;
        __atomic_add_fetch(&b->channels, 1, __ATOMIC_RELAXED);
    }
    ch->refs++;
    s->ch = ch;
    pthread_mutex_lock(&ch->mu);
    s->next = ch->subs;
    if (s->next)
        s->next->prev = s;
    ch->subs = s;
    pthread_mutex_unlock(&ch->mu);
    pthread_mutex_unlock(&b->mapmu);
    __atomic_add_fetch(&b->subscribers, 1, __ATOMIC_RELAXED);
    obs_add(m_subs, 0, 1);
    *ret = s;
    return 0;
}

int64_t bus_cursor(const struct bus_sub *s) {
    return s->cursor;
}

int bus_next(struct bus_sub *s, struct bus_event **out, size_t max) {
    struct channel *ch = s->ch;
    size_t n = 0;
    pthread_mutex_lock(&ch->mu);
    if (ch->ring_n && ch->ring_first <= s->cursor + 1) {
        int64_t last = ch->ring_first + (int64_t)ch->ring_n - 1;
        while (n < max && s->cursor < last) {
            struct bus_event *e = ch->ring[(s->cursor + 1) % BUS_RING];
            bus_event_ref(e);
            out[n++] = e;
            s->cursor = e->seq;
        }
        pthread_mutex_unlock(&ch->mu);
        return (int)n;
    }
    pthread_mutex_unlock(&ch->mu);

    /* Behind the ring (or the ring is empty): read the gap from the store. */
    char **texts = NULL;
    int64_t *seqs = NULL;
    size_t got = 0;
    __atomic_add_fetch(&s->bus->store_reads, 1, __ATOMIC_RELAXED);
    int rc = store_event_range(s->bus->store, ch->tenant, ch->session_id, s->cursor, max, &texts,
                               &seqs, &got);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < got; i++) {
        struct bus_event *e = rc == 0 ? bus_event_from(seqs[i], texts[i], false) : NULL;
        if (rc < 0)
            free(texts[i]);
        if (!e) {
            rc = AH_E_NOMEM;
            continue;
        }
        e->terminal = stored_terminal(e);
        out[n++] = e;
    }
    free(texts);
    free(seqs);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            bus_event_unref(out[i]);
        return rc;
    }
    if (n)
        s->cursor = out[n - 1]->seq;
    return (int)n;
}

int bus_sub_ended(struct bus_sub *s) {
    struct channel *ch = s->ch;
    pthread_mutex_lock(&ch->mu);
    if (ch->ring_n) {
        const struct bus_event *last = ch->ring[(ch->ring_first + (int64_t)ch->ring_n - 1) %
                                               BUS_RING];
        if (last->seq > s->cursor)
            s->cursor = last->seq;
        int ended = last->terminal;
        pthread_mutex_unlock(&ch->mu);
        return ended;
    }
    pthread_mutex_unlock(&ch->mu);
    struct bus_event *evs[32];
    int n, ended = 0;
    while ((n = bus_next(s, evs, 32)) > 0)
        for (int i = 0; i < n; i++) {
            ended |= evs[i]->terminal;
            bus_event_unref(evs[i]);
        }
    return n < 0 ? n : ended;
}

void bus_unsubscribe(struct bus_sub *s) {
    if (!s)
        return;
    struct bus *b = s->bus;
    struct channel *ch = s->ch;
    pthread_mutex_lock(&b->mapmu);
    pthread_mutex_lock(&ch->mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        ch->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&ch->mu);
    bool last = --ch->refs == 0;
    if (last) { /* unlink the channel; publishers find it only under mapmu */
        unsigned h = hash(ch->tenant, ch->session_id);
        struct channel **pp = &b->buckets[h];
        while (*pp != ch)
            pp = &(*pp)->next;
        *pp = ch->next;
    }
    pthread_mutex_unlock(&b->mapmu);
    if (last) {
        for (size_t i = 0; i < ch->ring_n; i++)
            bus_event_unref(ch->ring[(ch->ring_first + (int64_t)i) % BUS_RING]);
        pthread_mutex_destroy(&ch->mu);
        free(ch->tenant);
        free(ch->session_id);
        free(ch);
        __atomic_sub_fetch(&b->channels, 1, __ATOMIC_RELAXED);
    }
    __atomic_sub_fetch(&b->subscribers, 1, __ATOMIC_RELAXED);
    obs_add(m_subs, 0, -1);
    free(s);
}
