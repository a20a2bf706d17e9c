/*
 * tokens.c — token counts for the context window (D39): text is counted with the o200k_base BPE
 * vocabulary (exact for OpenAI's current models, an estimate for the others, which callers mark
 * `estimated`), never as bytes/4.
 *
 * The vocabulary and its pre-tokenizer pattern come from the npm package `tiktoken` (the WASM
 * build of OpenAI's reference implementation), embedded at build time. It is loaded once, on
 * first use, into an open-addressing table of byte strings → ranks (~200k entries, ~6 MiB); it is
 * read-only afterwards, so counting is thread-safe without locks.
 *
 * Counting is tiktoken's: the pattern splits the text into pieces, a piece that is a token counts
 * one, any other is merged pair by pair, lowest rank first, and counts what is left. A piece is
 * merged in slices of PIECE_MAX bytes (merging is quadratic in the piece's length; pieces that long
 * are runs of blanks or symbols, where the slices change the count by at most one per slice).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <openssl/evp.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chat_int.h"

extern const struct embedded_file api_o200k[];

#define PIECE_MAX 2048
#define TABLE_BITS 19 /* 524288 slots for ~200k tokens */

struct entry {
    uint32_t off;  /* into bytes */
    uint32_t rank; /* UINT32_MAX: empty */
    uint16_t len;
};

static struct {
    struct entry *slots;
    unsigned char *bytes;
    pcre2_code *re;
    bool ok;
} V;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static uint32_t hash(const unsigned char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    return h;
}

static uint32_t rank_of(const unsigned char *s, size_t n) {
    uint32_t mask = (1u << TABLE_BITS) - 1;
    for (uint32_t i = hash(s, n) & mask;; i = (i + 1) & mask) {
        const struct entry *e = &V.slots[i];
        if (e->rank == UINT32_MAX)
            return UINT32_MAX;
        if (e->len == n && !memcmp(V.bytes + e->off, s, n))
            return e->rank;
    }
}

static void load(void) {
    const struct embedded_file *f = api_o200k;
    json_error_t err;
    json_t *doc = f->name ? json_loadb(f->data, f->size, 0, &err) : NULL;
    const char *ranks = json_string_value(json_object_get(doc, "bpe_ranks"));
    const char *pat = json_string_value(json_object_get(doc, "pat_str"));
    size_t rlen = json_string_length(json_object_get(doc, "bpe_ranks"));
    V.slots = malloc(sizeof(*V.slots) << TABLE_BITS);
    V.bytes = malloc(rlen); /* decoded tokens are shorter than their base64 */
    if (!ranks || !pat || !V.slots || !V.bytes)
        goto fail;
    memset(V.slots, 0xff, sizeof(*V.slots) << TABLE_BITS);
    /* "! <first rank> <base64 token> <base64 token> …": consecutive ranks */
    const char *p = ranks;
    p += strcspn(p, " ");
    p += *p == ' ';
    uint32_t rank = (uint32_t)strtoul(p, NULL, 10), off = 0, mask = (1u << TABLE_BITS) - 1;
    p += strcspn(p, " ");
    while (*p == ' ' || *p == '\n') {
        p++;
        size_t n = strcspn(p, " \n");
        if (n == 0 || n % 4 || n > 1024)
            break;
        int d = EVP_DecodeBlock(V.bytes + off, (const unsigned char *)p, (int)n);
        if (d < 0)
            goto fail;
        d -= (p[n - 1] == '=') + (p[n - 2] == '=');
        for (uint32_t i = hash(V.bytes + off, (size_t)d) & mask;; i = (i + 1) & mask)
            if (V.slots[i].rank == UINT32_MAX) {
                V.slots[i] = (struct entry){.off = off, .rank = rank, .len = (uint16_t)d};
                break;
            }
        off += (uint32_t)d;
        rank++;
        p += n;
    }
    int ec;
    PCRE2_SIZE eo;
    V.re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
    if (!V.re || rank < 199000)
        goto fail;
    pcre2_jit_compile(V.re, PCRE2_JIT_COMPLETE); /* best effort */
    json_decref(doc);
    V.ok = true;
    log_msg(LOG_DEBUG, "o200k_base loaded: %u tokens", rank);
    return;
fail:
    log_msg(LOG_ERROR, "cannot load the o200k_base vocabulary; token counts are estimates");
    json_decref(doc);
}

/* Tokens of one piece (tiktoken's byte-pair merge). */
static int64_t merge(const unsigned char *s, size_t n) {
    if (n <= 1 || rank_of(s, n) != UINT32_MAX)
        return 1;
    size_t start[PIECE_MAX + 1];
    uint32_t rk[PIECE_MAX + 1];
    size_t k = n + 1; /* boundaries 0..n */
    for (size_t i = 0; i <= n; i++)
        start[i] = i;
    for (size_t i = 0; i + 2 < k; i++)
        rk[i] = rank_of(s + start[i], start[i + 2] - start[i]);
    if (k >= 2)
        rk[k - 2] = UINT32_MAX;
    rk[k - 1] = UINT32_MAX;
    for (;;) {
        uint32_t best = UINT32_MAX;
        size_t at = 0;
        for (size_t i = 0; i + 1 < k; i++)
            if (rk[i] < best) {
                best = rk[i];
                at = i;
            }
        if (best == UINT32_MAX)
            break;
        /* merge parts at and at+1: drop boundary at+1 */
        memmove(start + at + 1, start + at + 2, (k - at - 2) * sizeof(*start));
        memmove(rk + at + 1, rk + at + 2, (k - at - 2) * sizeof(*rk));
        k--;
        rk[at] = at + 2 < k ? rank_of(s + start[at], start[at + 2] - start[at]) : UINT32_MAX;
        if (at > 0)
            rk[at - 1] = rank_of(s + start[at - 1], start[at + 1] - start[at - 1]);
    }
    return (int64_t)k - 1;
}

int64_t tokens_count(const char *text, size_t len) {
    pthread_once(&once, load);
    if (!V.ok)
        return (int64_t)(len + 3) / 4;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(V.re, NULL);
    if (!md)
        return (int64_t)(len + 3) / 4;
    int64_t n = 0;
    size_t at = 0;
    while (at < len) {
        int rc = pcre2_match(V.re, (PCRE2_SPTR)text, len, at, 0, md, NULL);
        if (rc < 0) { /* no match (invalid UTF-8 there): count the rest by bytes */
            n += (int64_t)(len - at + 3) / 4;
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (b <= a) { /* an empty match cannot happen with this pattern; never loop */
            at = a + 1;
            continue;
        }
        for (size_t s = a; s < b; s += PIECE_MAX)
            n += merge((const unsigned char *)text + s, b - s < PIECE_MAX ? b - s : PIECE_MAX);
        at = b;
    }
    pcre2_match_data_free(md);
    return n;
}

/* OpenAI's rule for an image at high detail: fit in 2048×2048, shortest side to 768, then 170 per
 * 512-pixel tile plus 85. The size comes from the PNG or GIF header; others count as 1024×1024. */
int64_t tokens_image(const char *data, size_t len) {
    const unsigned char *d = (const unsigned char *)data;
    double w = 1024, h = 1024;
    if (len >= 24 && !memcmp(d, "\x89PNG", 4)) {
        w = (double)((uint32_t)d[16] << 24 | (uint32_t)d[17] << 16 | (uint32_t)d[18] << 8 | d[19]);
        h = (double)((uint32_t)d[20] << 24 | (uint32_t)d[21] << 16 | (uint32_t)d[22] << 8 | d[23]);
    } else if (len >= 10 && !memcmp(d, "GIF8", 4)) {
        w = d[6] | d[7] << 8;
        h = d[8] | d[9] << 8;
    }
    if (w < 1 || h < 1)
        return 85;
    double fit = 2048 / (w > h ? w : h);
    if (fit < 1) {
        w *= fit;
        h *= fit;
    }
    double shortest = w < h ? w : h;
    if (shortest > 768) {
        w *= 768 / shortest;
        h *= 768 / shortest;
    }
    int64_t tiles = (int64_t)((w + 511) / 512) * (int64_t)((h + 511) / 512);
    return 85 + 170 * tiles;
}
