/*
 * search.c — the answer of GET /sessions/{id}/files/search (API.md §7.6; ws_answer's
 * WS_ASK_SEARCH): a regular expression (PCRE2, UTF mode) over the text files of a snapshot (?to=,
 * default current), with include/exclude globs, an extension filter and facets. Every cost is
 * capped: the pattern's length, PCRE2's match limit and depth limit per line (a catastrophic
 * pattern fails that line, not the server), the bytes read per file and in total, and the
 * matches returned.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#include "internal.h"

#define PATTERN_MAX 1024
#define SEARCH_FILE_MAX (1024u * 1024)       /* larger files are not searched */
#define SEARCH_BYTES_MAX (256u * 1024 * 1024) /* read per request */
#define MATCHES_PER_FILE 20
#define LINE_SHOWN_MAX 500
#define MATCH_LIMIT 100000 /* PCRE2 backtracking steps per line */
#define DEPTH_LIMIT 10000

static void facet(json_t *obj, const char *key) {
    json_t *n = json_object_get(obj, key);
    json_object_set_new(obj, key, json_integer(n ? json_integer_value(n) + 1 : 1));
}

/* Checks the parameters into p; the compiled pattern in *ret_re (caller frees) and the
 * normalised directory in dir. */
static int search_query(const struct ws_ask *a, char dir[WS_PATH_MAX + 1], bool *cs,
                        int64_t *limit, pcre2_code **ret_re, struct ah_problem *p) {
    const char *pattern = ws_ask_param(a, "q");
    const char *inc = ws_ask_param(a, "include_pattern"), *exc = ws_ask_param(a, "exclude_pattern");
    const char *under = ws_ask_param(a, "path");
    *cs = param_bool(ws_ask_param(a, "case_sensitive"), "case_sensitive", false, p);
    *limit = param_int(ws_ask_param(a, "limit"), "limit", 50, 1, 200, p);
    if (!pattern || !*pattern)
        problem_field(p, "q", "is required (a regular expression)");
    else if (strlen(pattern) > PATTERN_MAX)
        problem_field(p, "q", "at most %d bytes", PATTERN_MAX);
    dir[0] = '\0';
    if (under && ws_path_normalise(under, strlen(under), dir) < 0)
        problem_field(p, "path", "must be a relative path inside the workspace");
    if ((inc && strlen(inc) > PATTERN_MAX) || (exc && strlen(exc) > PATTERN_MAX))
        problem_field(p, inc && strlen(inc) > PATTERN_MAX ? "include_pattern" : "exclude_pattern",
                      "at most %d bytes", PATTERN_MAX);
    if (p->code)
        return p->code;
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (*cs ? 0 : PCRE2_CASELESS),
                                   &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof(msg));
        problem_field(p, "q", "not a valid regular expression at offset %zu: %s", (size_t)off,
                      (const char *)msg);
        return p->code;
    }
    if (ret_re)
        *ret_re = re;
    else
        pcre2_code_free(re);
    return 0;
}

int ws_search_check(const struct ws_ask *a, struct ah_problem *p) {
    char dir[WS_PATH_MAX + 1];
    bool cs;
    int64_t limit;
    return search_query(a, dir, &cs, &limit, NULL, p);
}

void ws_search_answer(struct ws_store *st, const char *to, const struct ws_ask *a,
                      struct ws_reply *r) {
    char dir[WS_PATH_MAX + 1];
    bool cs;
    int64_t limit;
    pcre2_code *re = NULL;
    if (search_query(a, dir, &cs, &limit, &re, &r->problem) < 0)
        return;
    const char *type = ws_ask_param(a, "type");
    const char *inc = ws_ask_param(a, "include_pattern"), *exc = ws_ask_param(a, "exclude_pattern");
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* best effort: the interpreter works too */
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    pcre2_set_match_limit(mc, MATCH_LIMIT);
    pcre2_set_depth_limit(mc, DEPTH_LIMIT);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    struct ws_entries es = {0};
    int rc = mc && md ? ws_tree(st, to, dir, true, &es) : AH_E_NOMEM;
    if (rc == AH_E_NOMEM) {
        problem_set(&r->problem, AH_E_NOMEM, "out of memory");
    } else if (rc < 0) {
        problem_set(&r->problem, rc == AH_E_NOTFOUND ? AH_E_NOTFOUND : AH_E_INTERNAL,
                    "cannot list %s: %s", dir[0] ? dir : "the workspace", ah_strerror(rc));
    } else {
        json_t *results = json_array(), *langs = json_object(), *types = json_object(),
               *dirs = json_object();
        size_t read = 0;
        int64_t total = 0;
        bool incomplete = false;
        for (size_t i = 0; results && i < es.n; i++) {
            const struct ws_entry *e = &es.v[i];
            if (e->type != WS_FILE || e->size > SEARCH_FILE_MAX)
                continue;
            const char *dot = strrchr(e->path, '.');
            if (type && (!dot || strchr(dot, '/') || strcmp(dot + 1, type) != 0))
                continue;
            if ((inc && !ws_glob(inc, e->path, 0)) || (exc && ws_glob(exc, e->path, 0)))
                continue;
            if (read + e->size > SEARCH_BYTES_MAX) {
                incomplete = true;
                break;
            }
            struct ws_blob b = {0};
            if (ws_read(st, to, e->path, SEARCH_FILE_MAX, &b) < 0)
                continue;
            read += b.size;
            if (memchr(b.data, 0, b.size < 8000 ? b.size : 8000)) { /* binary */
                ws_blob_clear(&b);
                continue;
            }
            json_t *matches = json_array();
            int64_t line_no = 0;
            for (const char *s = b.data, *end = b.data + b.size; s < end && matches;) {
                const char *nl = memchr(s, '\n', (size_t)(end - s));
                size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
                line_no++;
                int m = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, mc);
                if (m == PCRE2_ERROR_MATCHLIMIT || m == PCRE2_ERROR_DEPTHLIMIT)
                    incomplete = true;
                if (m > 0 && json_array_size(matches) < MATCHES_PER_FILE) {
                    size_t shown = len < LINE_SHOWN_MAX ? len : LINE_SHOWN_MAX;
                    while (shown < len && shown && ((unsigned char)s[shown] & 0xC0) == 0x80)
                        shown--;
                    json_t *text = json_stringn(s, shown);
                    if (!text)
                        text = json_string("");
                    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                    json_array_append_new(
                        matches, json_pack("{s:O, s:o, s:I, s:I, s:s}", "line", text, "content",
                                           text, "line_number", (json_int_t)line_no, "column",
                                           (json_int_t)(ov[0] + 1), "match_type", "text"));
                }
                s += len + 1;
            }
            ws_blob_clear(&b);
            size_t nm = json_array_size(matches);
            if (!nm) {
                json_decref(matches);
                continue;
            }
            total++;
            if ((int64_t)json_array_size(results) >= limit) {
                json_decref(matches);
                continue;
            }
            const char *lang = dot && !strchr(dot, '/') ? dot + 1 : "";
            json_array_append_new(results,
                                  json_pack("{s:s, s:o, s:f, s:s?}", "path", e->path, "matches",
                                            matches, "score", nm >= 10 ? 1.0 : nm / 10.0,
                                            "language", lang[0] ? lang : NULL));
            facet(types, lang[0] ? lang : "(none)");
            facet(langs, lang[0] ? lang : "(none)");
            const char *slash = strrchr(e->path, '/');
            char d[WS_PATH_MAX + 1];
            snprintf(d, sizeof(d), "%.*s", slash ? (int)(slash - e->path) : 1,
                     slash ? e->path : ".");
            facet(dirs, d);
        }
        json_t *body = results ? json_pack("{s:o, s:{s:o, s:o, s:o}, s:I, s:b}", "results",
                                           results, "facets", "languages", langs, "file_types",
                                           types, "directories", dirs, "total",
                                           (json_int_t)total, "incomplete", incomplete)
                               : NULL;
        if (body) {
            r->status = 200;
            r->json = body;
        } else {
            problem_set(&r->problem, AH_E_NOMEM, "out of memory while building the response");
        }
    }
    ws_entries_clear(&es);
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_code_free(re);
}
