/*
 * ulid.c — ULIDs (D2): 48-bit millisecond time + 80 random bits, 26 chars of Crockford base32.
 *
 * Invariant: ids handed out by one struct ulid_state are strictly increasing as strings. When the
 * clock stands still or steps back, the previous random part is incremented; if those 80 bits
 * overflow (2^80 ids in one ms — never in practice) the timestamp is advanced by one ms instead of
 * failing, which keeps the order and costs at most a ms of skew.
 *
 * ulid_new() uses one process-wide state behind a mutex: D2 wants monotonic ids across the whole
 * process, which a per-caller state cannot give. That is the one global in core/.
 */
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#include "core.h"

static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static void encode(uint64_t ms, const uint8_t rnd[10], char out[ULID_LEN + 1]) {
    uint8_t b[16];
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (8 * (5 - i)));
    memcpy(b + 6, rnd, 10);
    /* 128 bits → 26 groups of 5 bits, the first group holding only 3 bits. */
    int bit = -2; /* 130 bits of output, the 2 leading bits are zero */
    for (int i = 0; i < ULID_LEN; i++, bit += 5) {
        unsigned v = 0;
        for (int k = 0; k < 5; k++) {
            int pos = bit + k;
            v <<= 1;
            if (pos >= 0)
                v |= (b[pos / 8] >> (7 - pos % 8)) & 1u;
        }
        out[i] = alphabet[v];
    }
    out[ULID_LEN] = '\0';
}

void ulid_state_next(struct ulid_state *st, uint64_t now_ms, const uint8_t fresh[10],
                     char out[ULID_LEN + 1]) {
    now_ms &= 0xFFFFFFFFFFFFull;
    if (!st->started || now_ms > st->last_ms) {
        st->last_ms = now_ms;
        memcpy(st->rnd, fresh, 10);
        st->started = true;
    } else {
        int i = 9;
        while (i >= 0 && ++st->rnd[i] == 0)
            i--;
        if (i < 0) /* 80-bit overflow: move to the next millisecond */
            st->last_ms++;
    }
    encode(st->last_ms, st->rnd, out);
}

static pthread_mutex_t process_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ulid_state process_state;

int ulid_new(char out[ULID_LEN + 1]) {
    uint8_t fresh[10];
    size_t got = 0;
    while (got < sizeof(fresh)) {
        ssize_t r = getrandom(fresh + got, sizeof(fresh) - got, 0);
        if (r < 0)
            return AH_E_IO;
        got += (size_t)r;
    }
    uint64_t now = (uint64_t)time_now_ms();
    pthread_mutex_lock(&process_lock);
    ulid_state_next(&process_state, now, fresh, out);
    pthread_mutex_unlock(&process_lock);
    return 0;
}

int ulid_new_prefixed(const char *prefix, char *out, size_t outsz) {
    size_t pl = strlen(prefix);
    if (outsz < pl + 1 + ULID_LEN + 1)
        return AH_E_INVAL;
    char id[ULID_LEN + 1];
    int r = ulid_new(id);
    if (r < 0)
        return r;
    memcpy(out, prefix, pl);
    out[pl] = '-';
    memcpy(out + pl + 1, id, ULID_LEN + 1);
    return 0;
}

static int value_of(char c) {
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

bool ulid_valid(const char *s) {
    if (!s || strlen(s) != ULID_LEN)
        return false;
    if (value_of(s[0]) > 7) /* first char holds 3 bits: max is '7' */
        return false;
    for (int i = 0; i < ULID_LEN; i++)
        if (value_of(s[i]) < 0)
            return false;
    return true;
}

uint64_t ulid_time_ms(const char *s) {
    uint64_t ms = 0;
    for (int i = 0; i < 10; i++)
        ms = (ms << 5) | (uint64_t)value_of(s[i]);
    return ms;
}

static bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool idempotency_key_valid(const char *s) {
    if (!s)
        return false;
    if (ulid_valid(s))
        return true;
    static const int groups[] = {8, 4, 4, 4, 12};
    const char *p = s;
    for (int g = 0; g < 5; g++) {
        for (int i = 0; i < groups[g]; i++, p++)
            if (!is_hex(*p))
                return false;
        if (g < 4 && *p++ != '-')
            return false;
    }
    return *p == '\0';
}
