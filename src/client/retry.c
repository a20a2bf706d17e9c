/*
 * retry.c — the retry policy as pure functions: how long to wait (exponential back-off with
 * "equal jitter", or exactly what Retry-After says), and whether a failure may be retried at
 * all. No I/O, no clock reads: callers pass the time and the randomness in, so tests can pin
 * every branch.
 */
#include <ctype.h>
#include <string.h>
#include <time.h>

#include "client_internal.h"

#define RETRY_AFTER_MAX_MS (24LL * 3600 * 1000)

void ah_retry_policy_default(struct ah_retry_policy *p) {
    if (!p)
        return;
    p->max_attempts = 4;
    p->base_delay_ms = 200;
    p->max_delay_ms = 10000;
    p->max_retry_after_ms = 120000;
}

int64_t ah_retry_delay_ms(const struct ah_retry_policy *p, int attempt, int64_t retry_after_ms,
                          uint32_t random) {
    if (!p || attempt < 1 || attempt >= p->max_attempts)
        return -1;
    if (retry_after_ms >= 0)
        return retry_after_ms <= p->max_retry_after_ms ? retry_after_ms : -1;
    int64_t d = p->base_delay_ms > 0 ? p->base_delay_ms : 0;
    int64_t cap = p->max_delay_ms > 0 ? p->max_delay_ms : 0;
    /* base * 2^(attempt-1) without overflow: stop doubling once past the cap. */
    for (int i = 1; i < attempt && d < cap && d <= INT64_MAX / 2; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    int64_t half = d / 2;
    return half + (int64_t)(random % (uint64_t)(d - half + 1));
}

static bool idempotent_method(const char *m) {
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "PUT") == 0 ||
           strcmp(m, "DELETE") == 0 || strcmp(m, "OPTIONS") == 0;
}

bool retry_should(const char *method, bool keyed, int status, enum transport_class tc) {
    if (!method)
        return false;
    bool safe = idempotent_method(method) || keyed;
    switch (tc) {
    case TRANSPORT_CONNECT: return true; /* nothing reached the server */
    case TRANSPORT_IO: return safe;
    case TRANSPORT_TIMEOUT:
    case TRANSPORT_FATAL: return false;
    case TRANSPORT_OK: break;
    }
    switch (status) {
    case 408:
    case 429:
    case 502:
    case 503:
    case 504: return safe;
    default: return false;
    }
}

int64_t retry_after_parse(const char *value, int64_t now_ms) {
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (!*value)
        return -1;
    if (isdigit((unsigned char)*value)) {
        int64_t secs = 0;
        const char *s = value;
        for (; isdigit((unsigned char)*s); s++) {
            if (secs < RETRY_AFTER_MAX_MS / 1000)
                secs = secs * 10 + (*s - '0');
        }
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        if (*s)
            return -1;
        int64_t ms = secs * 1000;
        return ms > RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS : ms;
    }
    /* IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" (the only form senders may use).
     * Parsed by hand: strptime's %a/%b follow the process locale. */
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *s = strchr(value, ',');
    if (!s || s - value != 3)
        return -1;
    char mon[4] = {0};
    int day, year, hh, mm, ss, used = 0;
    if (sscanf(s + 1, " %2d %3c %4d %2d:%2d:%2d GMT%n", &day, mon, &year, &hh, &mm, &ss, &used) !=
            6 ||
        used == 0)
        return -1;
    const char *end = s + 1 + used;
    const char *m = strstr(months, mon);
    if (!m || (m - months) % 3 != 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
        return -1;
    tm.tm_mday = day;
    tm.tm_mon = (int)((m - months) / 3);
    tm.tm_year = year - 1900;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
        end++;
    if (*end)
        return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    int64_t ms = (int64_t)t * 1000 - now_ms;
    if (ms < 0)
        return 0;
    return ms > RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS : ms;
}
