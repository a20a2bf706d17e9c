/*
 * page.c — page/perPage parsing and the list envelope (D6). Out-of-range values are refused, not
 * clamped, so a client learns about its mistake instead of getting a silently different page.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret) {
    if (!s || !*s || *s == '+' || *s == ' ')
        return AH_E_INVAL;
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p < '0' || *p > '9')
        return AH_E_INVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return AH_E_INVAL;
    *ret = v;
    return 0;
}

int page_parse(const char *page, const char *per_page, int64_t default_per_page, int64_t max,
               struct page *ret, struct ah_problem *reterr) {
    struct page pg = {1, default_per_page};
    int rc = 0;
    if (page && parse_int64(page, 1, INT32_MAX, &pg.page) < 0) {
        problem_field(reterr, "page", "must be an integer ≥ 1");
        rc = AH_E_INVAL;
    }
    if (per_page && parse_int64(per_page, 1, max, &pg.per_page) < 0) {
        problem_field(reterr, "perPage", "must be an integer from 1 to %lld", (long long)max);
        rc = AH_E_INVAL;
    }
    if (rc == 0)
        *ret = pg;
    return rc;
}

json_t *page_envelope(json_t *items, const struct page *pg, int64_t total) {
    if (!items)
        return NULL;
    bool more = page_offset(pg) + pg->per_page < total;
    int64_t pages = total > 0 ? (total + pg->per_page - 1) / pg->per_page : 0;
    /* D6: the same numbers again under `pagination`, with totalPages, for the Agent Harbor
     * WebUI, which reads them while rendering a list. */
    return json_pack("{s:o, s:I, s:I, s:I, s:o, s:{s:I, s:I, s:I, s:I}}", "items", items, "page",
                     (json_int_t)pg->page, "perPage", (json_int_t)pg->per_page, "total",
                     (json_int_t)total, "nextPage",
                     more ? json_integer(pg->page + 1) : json_null(), "pagination", "page",
                     (json_int_t)pg->page, "perPage", (json_int_t)pg->per_page, "total",
                     (json_int_t)total, "totalPages", (json_int_t)pages);
}

bool param_bool(const char *s, const char *name, bool def, struct ah_problem *p) {
    if (!s)
        return def;
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
        return true;
    if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
        return false;
    problem_field(p, name, "must be true or false");
    return def;
}

int64_t param_int(const char *s, const char *name, int64_t def, int64_t min, int64_t max,
                  struct ah_problem *p) {
    int64_t v;
    if (!s)
        return def;
    if (parse_int64(s, min, max, &v) < 0) {
        problem_field(p, name, "must be an integer from %lld to %lld", (long long)min,
                      (long long)max);
        return def;
    }
    return v;
}
