/*
 * obs.c — metric families, sharded counters and the Prometheus text exposition (obs.h).
 *
 * Invariants:
 *  - slots[shard][slot] is only ever changed by relaxed atomic adds; a series' value is the
 *    wrapping sum of its slot over all shards (so gauges may be decremented on another shard
 *    than the one that incremented them).
 *  - The family table only grows. n_families is published with a release store after the
 *    family is complete, so the renderer (acquire load) never sees a half-built family.
 *  - A histogram series holds its buckets non-cumulatively in nb + 1 slots (the last is +Inf),
 *    then the sum (in millionths) and the count.
 */
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "obs.h"

#define OBS_SHARDS 8
#define OBS_MAX_COLLECTORS 16

struct obs_family {
    char *name, *help;
    enum obs_type type;
    size_t n;       /* series */
    char **labels;  /* n label sets ("" for none) */
    size_t base;    /* first slot */
    size_t width;   /* slots per series: 1, or nb + 3 for a histogram */
    double bounds[OBS_MAX_BUCKETS];
    size_t nb;
};

/* One shard per cache-line-separated array; 8 × 8192 × 8 bytes = 512 KiB of zero pages until
 * used. */
static uint64_t slots[OBS_SHARDS][OBS_MAX_SLOTS] __attribute__((aligned(64)));
static struct obs_family families[OBS_MAX_FAMILIES];
static size_t n_families; /* published with release */
static size_t next_slot;  /* under mu */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static struct {
    obs_collect_fn fn;
    void *ctx;
} collectors[OBS_MAX_COLLECTORS];

/* Set when an append to the scrape buffer failed during this thread's obs_render. */
static __thread bool render_failed;

static void bputs(struct ah_buf *out, const char *s) {
    if (ah_buf_puts(out, s) < 0)
        render_failed = true;
}

static void bprintf(struct ah_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(struct ah_buf *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (ah_buf_vprintf(out, fmt, ap) < 0)
        render_failed = true;
    va_end(ap);
}

static unsigned shard_counter;
static __thread int my_shard = -1;

static inline uint64_t *slot_of(size_t slot) {
    if (__builtin_expect(my_shard < 0, 0))
        my_shard = (int)(__atomic_fetch_add(&shard_counter, 1, __ATOMIC_RELAXED) % OBS_SHARDS);
    return &slots[my_shard][slot];
}

static bool name_ok(const char *s) {
    if (!s || !(isalpha((unsigned char)*s) || *s == '_' || *s == ':'))
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == ':'))
            return false;
    return true;
}

struct obs_family *obs_register(const char *name, const char *help, enum obs_type type,
                                const char *const *labels, size_t n, const double *bounds,
                                size_t n_bounds) {
    if (!name_ok(name) || n == 0 || n_bounds > OBS_MAX_BUCKETS ||
        (type == OBS_HISTOGRAM && (!bounds || !n_bounds)))
        return NULL;
    pthread_mutex_lock(&mu);
    size_t nf = n_families;
    struct obs_family *f = NULL;
    size_t width = type == OBS_HISTOGRAM ? n_bounds + 3 : 1;
    for (size_t i = 0; i < nf; i++)
        if (strcmp(families[i].name, name) == 0)
            goto out; /* one family per name: a second registration is refused */
    if (nf == OBS_MAX_FAMILIES || next_slot + n * width > OBS_MAX_SLOTS)
        goto out;
    struct obs_family *nf_ = &families[nf];
    memset(nf_, 0, sizeof(*nf_));
    nf_->name = strdup(name);
    nf_->help = strdup(help ? help : "");
    nf_->labels = calloc(n, sizeof(char *));
    bool ok = nf_->name && nf_->help && nf_->labels;
    for (size_t i = 0; ok && i < n; i++)
        ok = (nf_->labels[i] = strdup(labels && labels[i] ? labels[i] : "")) != NULL;
    if (!ok) {
        for (size_t i = 0; nf_->labels && i < n; i++)
            free(nf_->labels[i]);
        free(nf_->labels);
        free(nf_->name);
        free(nf_->help);
        goto out;
    }
    nf_->type = type;
    nf_->n = n;
    nf_->base = next_slot;
    nf_->width = width;
    nf_->nb = type == OBS_HISTOGRAM ? n_bounds : 0;
    if (nf_->nb)
        memcpy(nf_->bounds, bounds, n_bounds * sizeof(double));
    next_slot += n * width;
    f = nf_;
    __atomic_store_n(&n_families, nf + 1, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&mu);
    return f;
}

struct obs_family *obs_register1(const char *name, const char *help, enum obs_type type,
                                 const double *bounds, size_t n_bounds) {
    return obs_register(name, help, type, NULL, 1, bounds, n_bounds);
}

void obs_add(struct obs_family *f, size_t i, int64_t v) {
    if (!f || i >= f->n || f->type == OBS_HISTOGRAM)
        return;
    __atomic_fetch_add(slot_of(f->base + i), (uint64_t)v, __ATOMIC_RELAXED);
}

void obs_observe(struct obs_family *f, size_t i, double v) {
    if (!f || i >= f->n || f->type != OBS_HISTOGRAM)
        return;
    size_t b = 0;
    while (b < f->nb && v > f->bounds[b])
        b++;
    size_t s = f->base + i * f->width;
    double m = v * 1e6;
    uint64_t micro = m > 0 ? (m < 1.8e19 ? (uint64_t)(m + 0.5) : UINT64_MAX / 4) : 0;
    __atomic_fetch_add(slot_of(s + b), 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(slot_of(s + f->nb + 1), micro, __ATOMIC_RELAXED);
    __atomic_fetch_add(slot_of(s + f->nb + 2), 1, __ATOMIC_RELAXED);
}

static uint64_t sum_slot(size_t slot) {
    uint64_t v = 0;
    for (size_t k = 0; k < OBS_SHARDS; k++)
        v += __atomic_load_n(&slots[k][slot], __ATOMIC_RELAXED);
    return v;
}

int64_t obs_value(const struct obs_family *f, size_t i) {
    if (!f || i >= f->n)
        return 0;
    if (f->type == OBS_HISTOGRAM)
        return (int64_t)sum_slot(f->base + i * f->width + f->nb + 2);
    return (int64_t)sum_slot(f->base + i);
}

int obs_collector_add(obs_collect_fn fn, void *ctx) {
    int rc = AH_E_NOMEM;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < OBS_MAX_COLLECTORS; i++)
        if (!collectors[i].fn) {
            collectors[i].fn = fn;
            collectors[i].ctx = ctx;
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&mu);
    return rc;
}

void obs_collector_remove(obs_collect_fn fn, void *ctx) {
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < OBS_MAX_COLLECTORS; i++)
        if (collectors[i].fn == fn && collectors[i].ctx == ctx) {
            collectors[i].fn = NULL;
            collectors[i].ctx = NULL;
        }
    pthread_mutex_unlock(&mu);
}

static const char *type_name(enum obs_type t) {
    return t == OBS_COUNTER ? "counter" : t == OBS_GAUGE ? "gauge" : "histogram";
}

/* HELP text escapes only \ and newline. */
static void put_help(struct ah_buf *out, const char *h) {
    for (; *h; h++) {
        if (*h == '\\')
            bputs(out, "\\\\");
        else if (*h == '\n')
            bputs(out, "\\n");
        else
            bprintf(out, "%c", *h);
    }
}

void obs_write_header(struct ah_buf *out, const char *name, const char *help, enum obs_type t) {
    bprintf(out, "# HELP %s ", name);
    put_help(out, help);
    bprintf(out, "\n# TYPE %s %s\n", name, type_name(t));
}

/* The shortest %g form that reads back as v (0.1, not 0.10000000000000001). */
static void fmt_double(char *dst, size_t n, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(dst, n, "%.*g", prec, v);
        if (strtod(dst, NULL) == v)
            return;
    }
}

/* A float the way Prometheus reads it: integers without a fraction, others in shortest form. */
static void put_value(struct ah_buf *out, double v) {
    if (isnan(v))
        bputs(out, "NaN");
    else if (isinf(v))
        bputs(out, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9e15)
        bprintf(out, "%lld", (long long)v);
    else {
        char d[40];
        fmt_double(d, sizeof(d), v);
        bputs(out, d);
    }
}

void obs_write_sample(struct ah_buf *out, const char *name, const char *labels, double v) {
    if (labels && *labels)
        bprintf(out, "%s{%s} ", name, labels);
    else
        bprintf(out, "%s ", name);
    put_value(out, v);
    bputs(out, "\n");
}

static void render_histogram(struct ah_buf *out, const struct obs_family *f, size_t i) {
    size_t s = f->base + i * f->width;
    const char *l = f->labels[i];
    const char *sep = *l ? "," : "";
    uint64_t cum = 0;
    for (size_t b = 0; b <= f->nb; b++) {
        cum += sum_slot(s + b);
        char le[40];
        if (b < f->nb)
            fmt_double(le, sizeof(le), f->bounds[b]);
        else
            snprintf(le, sizeof(le), "+Inf");
        bprintf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, l, sep, le,
                      (unsigned long long)cum);
    }
    /* The count is the +Inf bucket: both are read from the same slots, so they always agree
     * even while observations land during the scrape. */
    uint64_t sum = sum_slot(s + f->nb + 1);
    char lb[1024];
    snprintf(lb, sizeof(lb), "%s", l);
    bprintf(out, "%s_sum%s%s%s ", f->name, *l ? "{" : "", lb, *l ? "}" : "");
    put_value(out, (double)sum / 1e6);
    bprintf(out, "\n%s_count%s%s%s %llu\n", f->name, *l ? "{" : "", lb, *l ? "}" : "",
                  (unsigned long long)cum);
}

int obs_render(struct ah_buf *out) {
    render_failed = false;
    size_t nf = __atomic_load_n(&n_families, __ATOMIC_ACQUIRE);
    for (size_t k = 0; k < nf; k++) {
        const struct obs_family *f = &families[k];
        obs_write_header(out, f->name, f->help, f->type);
        for (size_t i = 0; i < f->n; i++) {
            if (f->type == OBS_HISTOGRAM) {
                render_histogram(out, f, i);
                continue;
            }
            uint64_t v = sum_slot(f->base + i);
            double d = f->type == OBS_GAUGE ? (double)(int64_t)v : (double)v;
            obs_write_sample(out, f->name, f->labels[i], d);
        }
    }
    /* Collectors run outside the lock (they may query the store); a copy keeps the table
     * consistent while they do. */
    pthread_mutex_lock(&mu);
    __typeof__(collectors) c;
    memcpy(c, collectors, sizeof(c));
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < OBS_MAX_COLLECTORS; i++)
        if (c[i].fn)
            c[i].fn(out, c[i].ctx);
    return render_failed ? AH_E_NOMEM : 0; /* a scrape with a hole in it is not answered */
}

void obs_label_escape(char *dst, size_t dsz, const char *v) {
    size_t o = 0;
    if (!dsz)
        return;
    for (; v && *v && o + 3 < dsz; v++) {
        if (*v == '\\' || *v == '"') {
            dst[o++] = '\\';
            dst[o++] = *v;
        } else if (*v == '\n') {
            dst[o++] = '\\';
            dst[o++] = 'n';
        } else {
            dst[o++] = *v;
        }
    }
    dst[o] = 0;
}

const char *obs_status_class(int status) {
    static const char *const c[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    int k = status / 100;
    return k >= 1 && k <= 5 ? c[k - 1] : "5xx";
}

double obs_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- process figures ----------------------------------------------------------------------- */

static void process_collect(struct ah_buf *out, void *ctx) {
    (void)ctx;
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/stat", "re");
    char line[2048];
    unsigned long long ut = 0, st = 0, start = 0, rss = 0;
    if (f && fgets(line, sizeof(line), f)) {
        /* fields after the parenthesised command, which may contain spaces */
        const char *p = strrchr(line, ')');
        int field = 2;
        for (const char *q = p ? p + 1 : line; *q; q++) {
            if (*q != ' ')
                continue;
            field++;
            unsigned long long v = strtoull(q + 1, NULL, 10);
            if (field == 14)
                ut = v;
            else if (field == 15)
                st = v;
            else if (field == 22)
                start = v;
            else if (field == 24)
                rss = v;
        }
    }
    if (f)
        fclose(f);
    double boot = 0;
    if ((f = fopen("/proc/stat", "re"))) {
        while (fgets(line, sizeof(line), f))
            if (strncmp(line, "btime ", 6) == 0)
                boot = strtod(line + 6, NULL);
        fclose(f);
    }
    size_t fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            fds += e->d_name[0] != '.';
        closedir(d);
        fds--; /* the directory's own descriptor */
    }
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    obs_write_header(out, "ah_process_cpu_seconds_total", "CPU time used (user + system)",
                     OBS_COUNTER);
    obs_write_sample(out, "ah_process_cpu_seconds_total", NULL, (double)(ut + st) / (double)tick);
    obs_write_header(out, "ah_process_resident_memory_bytes", "Resident memory", OBS_GAUGE);
    obs_write_sample(out, "ah_process_resident_memory_bytes", NULL, (double)rss * (double)page);
    obs_write_header(out, "ah_process_open_fds", "Open file descriptors", OBS_GAUGE);
    obs_write_sample(out, "ah_process_open_fds", NULL, (double)fds);
    obs_write_header(out, "ah_process_max_fds", "Limit on open file descriptors", OBS_GAUGE);
    obs_write_sample(out, "ah_process_max_fds", NULL, (double)rl.rlim_cur);
    obs_write_header(out, "ah_process_start_time_seconds", "Start time (Unix seconds)",
                     OBS_GAUGE);
    obs_write_sample(out, "ah_process_start_time_seconds", NULL,
                     boot + (double)start / (double)tick);
}

static void process_register(void) {
    obs_collector_add(process_collect, NULL);
}

void obs_process_collector(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, process_register);
}

/* ---- trace context --------------------------------------------------------------------------- */

static bool hex_lower(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool all_zero(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != '0')
            return false;
    return true;
}

int obs_traceparent_parse(const char *v, struct obs_trace *ret) {
    if (!v)
        return AH_E_INVAL;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    /* version(2) - trace-id(32) - parent-id(16) - flags(2) = 55 */
    if (n < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || !hex_lower(v, 2))
        return AH_E_INVAL;
    if (v[0] == 'f' && v[1] == 'f')
        return AH_E_INVAL; /* version ff is forbidden */
    bool v00 = v[0] == '0' && v[1] == '0';
    if (v00 ? n != 55 : (n > 55 && v[55] != '-'))
        return AH_E_INVAL; /* 00 has exactly four fields; later versions may add more */
    if (!hex_lower(v + 3, 32) || all_zero(v + 3, 32) || !hex_lower(v + 36, 16) ||
        all_zero(v + 36, 16) || !hex_lower(v + 53, 2))
        return AH_E_INVAL;
    memcpy(ret->trace_id, v + 3, 32);
    ret->trace_id[32] = 0;
    memcpy(ret->parent_id, v + 36, 16);
    ret->parent_id[16] = 0;
    ret->span_id[0] = 0;
    ret->flags = (uint8_t)strtoul((char[]){v[53], v[54], 0}, NULL, 16);
    return 0;
}

/* Ids need to be unique, not secret: a per-thread splitmix64 seeded once from getrandom keeps a
 * syscall off every request. */
static __thread uint64_t prng_state;
static __thread bool prng_seeded;

static int prng_next(uint64_t *ret) {
    if (!prng_seeded) {
        if (getrandom(&prng_state, sizeof(prng_state), 0) != sizeof(prng_state))
            return AH_E_IO;
        prng_seeded = true;
    }
    uint64_t z = (prng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    *ret = z ^ (z >> 31);
    return 0;
}

static int random_hex(char *out, size_t nbytes) {
    unsigned char b[16];
    static const char hx[] = "0123456789abcdef";
    do {
        for (size_t got = 0; got < nbytes; got += 8) {
            uint64_t r;
            if (prng_next(&r) < 0)
                return AH_E_IO;
            memcpy(b + got, &r, nbytes - got < 8 ? nbytes - got : 8);
        }
        for (size_t i = 0; i < nbytes; i++) {
            out[2 * i] = hx[b[i] >> 4];
            out[2 * i + 1] = hx[b[i] & 15];
        }
        out[2 * nbytes] = 0;
    } while (all_zero(out, 2 * nbytes)); /* all-zero ids are invalid */
    return 0;
}

int obs_trace_start(const char *traceparent, struct obs_trace *ret) {
    struct obs_trace t = {0};
    if (obs_traceparent_parse(traceparent, &t) < 0) {
        memset(&t, 0, sizeof(t));
        if (random_hex(t.trace_id, 16) < 0)
            return AH_E_IO;
        t.flags = 1; /* a root we start is recorded */
    }
    if (random_hex(t.span_id, 8) < 0)
        return AH_E_IO;
    *ret = t;
    return 0;
}

void obs_traceparent_format(const struct obs_trace *t, char out[56]) {
    snprintf(out, 56, "00-%s-%s-%02x", t->trace_id, t->span_id, t->flags);
}

bool obs_trace_current(char out[56]) {
    char trace_id[33], span_id[17];
    if (!log_trace_get(trace_id, span_id))
        return false;
    snprintf(out, 56, "00-%s-%s-01", trace_id, span_id);
    return true;
}

int obs_trace_child(struct obs_trace *ret) {
    char tp[56];
    if (!obs_trace_current(tp))
        return AH_E_NOTFOUND;
    return obs_trace_start(tp, ret);
}
