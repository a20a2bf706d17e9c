/*
 * pty.c — the terminal of a session (API.md §7.5, §7.8; D18).
 *
 *   GET /sessions/{id}/recording   the asciicast v2 file as written by the recorder
 *                                  (application/x-asciicast, zero-copy from the file), or with
 *                                  `Accept: application/json` the playback shape of §7.8,
 *                                  filtered by ?startTime= / ?endTime= (seconds)
 *   GET /sessions/{id}/pty         SSE: the recording's backlog, then live output, as
 *                                  `event: pty` frames {type: terminal, encoding: base64, data,
 *                                  timestamp} and {type: terminal_resize, cols, rows, timestamp}
 *
 * The live part follows the file: the streams thread wakes the stream when inotify sees the
 * recording grow, and the stream also subscribes to the session's events so it learns when the
 * session has ended — it then sends what is left and closes. Nothing is kept in memory beyond
 * the bytes not yet handed to the connection and one partial line.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "routes.h"

#define RECORDING_JSON_MAX (32u * 1024 * 1024) /* larger recordings are served as files only */
#define LINE_MAX_BYTES (4u * 1024 * 1024)

/* ---- parsing the recording ------------------------------------------------------------------- */

struct cast_header {
    int width, height;
    int64_t start_ms;
};

static bool parse_header(const char *line, size_t len, struct cast_header *h) {
    json_t *j = json_loadb(line, len, 0, NULL);
    bool ok = json_is_object(j) && json_integer_value(json_object_get(j, "version")) == 2;
    if (ok) {
        h->width = (int)json_integer_value(json_object_get(j, "width"));
        h->height = (int)json_integer_value(json_object_get(j, "height"));
        h->start_ms = json_integer_value(json_object_get(j, "timestamp")) * 1000;
    }
    json_decref(j);
    return ok;
}

/* [t, kind, text] → its parts (text borrowed from *ret_json, which the caller frees). */
static bool parse_event(const char *line, size_t len, double *t, const char **kind,
                        const char **text, size_t *text_len, json_t **ret_json) {
    json_t *j = json_loadb(line, len, 0, NULL);
    if (!json_is_array(j) || json_array_size(j) != 3 || !json_is_number(json_array_get(j, 0)) ||
        !json_is_string(json_array_get(j, 1)) || !json_is_string(json_array_get(j, 2))) {
        json_decref(j);
        return false;
    }
    *t = json_number_value(json_array_get(j, 0));
    *kind = json_string_value(json_array_get(j, 1));
    *text = json_string_value(json_array_get(j, 2));
    *text_len = json_string_length(json_array_get(j, 2));
    *ret_json = j;
    return true;
}

/* ---- GET …/recording ------------------------------------------------------------------------- */

static bool wants_json(const struct http_request *req) {
    const char *a = http_header(req, "Accept");
    return a && strstr(a, "application/json");
}

static void recording_json(struct http_request *req, struct http_response *res, int fd,
                           uint64_t size) {
    struct ah_problem p = {0};
    double from = 0, to = -1;
    const char *s = http_query(req, "startTime"), *e = http_query(req, "endTime");
    char *end;
    if (s && ((from = strtod(s, &end)) < 0 || *end || !*s))
        problem_field(&p, "startTime", "must be a number of seconds ≥ 0");
    if (e && ((to = strtod(e, &end)) < 0 || *end || !*e))
        problem_field(&p, "endTime", "must be a number of seconds ≥ 0");
    const char *format = http_query(req, "format");
    if (format && strcmp(format, "cast"))
        problem_field(&p, "format", "only cast is available");
    if (!p.code && size > RECORDING_JSON_MAX)
        problem_set(&p, AH_E_TOOLARGE,
                    "the recording is %llu bytes; as JSON the limit is %u bytes — fetch it as "
                    "application/x-asciicast instead",
                    (unsigned long long)size, RECORDING_JSON_MAX);
    if (p.code) {
        close(fd);
        http_fail(req, res, &p);
        return;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        http_error(req, res, AH_E_IO, "cannot read the recording");
        return;
    }
    struct cast_header h = {80, 24, 0};
    json_t *events = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    bool first = true;
    while (events && (n = getline(&line, &cap, f)) > 0) {
        if (first) {
            first = false;
            parse_header(line, (size_t)n, &h);
            continue;
        }
        double t;
        const char *kind, *text;
        size_t len;
        json_t *ev;
        if (!parse_event(line, (size_t)n, &t, &kind, &text, &len, &ev))
            continue;
        if (t >= from && (to < 0 || t <= to))
            json_array_append(events, ev);
        json_decref(ev);
    }
    free(line);
    fclose(f);
    http_json(req, res, 200,
              json_pack("{s:s, s:i, s:i, s:o, s:[]}", "format", "cast", "width", h.width,
                        "height", h.height, "events", events, "moments"));
}

/* ?startTime=&endTime= without Accept: application/json — the slice as an asciicast v2 file of
 * its own (issue 12): the header line, then the events from startTime to endTime with their
 * times shifted to start at 0, so `asciinema play` plays that part. */
static void recording_slice(struct http_request *req, struct http_response *res, int fd,
                            uint64_t size) {
    struct ah_problem p = {0};
    double from = 0, to = -1;
    const char *s = http_query(req, "startTime"), *e = http_query(req, "endTime");
    char *end;
    if (s && ((from = strtod(s, &end)) < 0 || *end || !*s || from != from))
        problem_field(&p, "startTime", "must be a number of seconds ≥ 0");
    if (e && ((to = strtod(e, &end)) < 0 || *end || !*e || to != to))
        problem_field(&p, "endTime", "must be a number of seconds ≥ 0");
    if (!p.code && e && to < from)
        problem_field(&p, "endTime", "must not be before startTime");
    const char *format = http_query(req, "format");
    if (format && strcmp(format, "cast"))
        problem_field(&p, "format", "only cast is available");
    if (!p.code && size > RECORDING_JSON_MAX)
        problem_set(&p, AH_E_TOOLARGE,
                    "the recording is %llu bytes; slices are cut from recordings of at most %u "
                    "bytes — fetch it whole instead",
                    (unsigned long long)size, RECORDING_JSON_MAX);
    FILE *f = p.code ? NULL : fdopen(fd, "r");
    if (!f) {
        close(fd);
        if (!p.code)
            problem_set(&p, AH_E_IO, "cannot read the recording");
        http_fail(req, res, &p);
        return;
    }
    struct ah_buf out = {.max = RECORDING_JSON_MAX + 4096};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    bool first = true;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) > 0) {
        if (first) {
            first = false;
            struct cast_header h;
            if (!parse_header(line, (size_t)n, &h)) {
                rc = AH_E_IO;
                break;
            }
            rc = ah_buf_append(&out, line, (size_t)n);
            if (rc == 0 && line[n - 1] != '\n')
                rc = ah_buf_append(&out, "\n", 1);
            continue;
        }
        double t;
        const char *kind, *text;
        size_t len;
        json_t *ev;
        if (!parse_event(line, (size_t)n, &t, &kind, &text, &len, &ev))
            continue;
        if (t >= from && (to < 0 || t <= to)) {
            json_t *o = json_pack("[f, s, s%]", t - from, kind, text, len);
            char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
            rc = txt ? ah_buf_printf(&out, "%s\n", txt) : AH_E_NOMEM;
            free(txt);
            json_decref(o);
        }
        json_decref(ev);
    }
    free(line);
    fclose(f);
    if (rc < 0 || first) {
        ah_buf_clear(&out);
        http_error(req, res, rc < 0 ? rc : AH_E_NOTFOUND, "the recording has no header yet");
        return;
    }
    res->status = 200;
    res->body_len = out.n;
    res->body = ah_buf_steal(&out);
    res->content_type = "application/x-asciicast";
}

static void get_recording(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row)
        return;
    const char *id = row->id;
    AH_AUTOFREE char *path = exec_recording_path(ctx->exec, id);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        http_error(req, res, AH_E_NOTFOUND, "session %s has no recording yet (it is %s)", id,
                   session_status_name(row->status));
        return;
    }
    if (wants_json(req)) {
        recording_json(req, res, fd, (uint64_t)st.st_size);
        return;
    }
    if (http_query(req, "startTime") || http_query(req, "endTime")) {
        recording_slice(req, res, fd, (uint64_t)st.st_size);
        return;
    }
    res->status = 200;
    res->has_file = true;
    res->file_fd = fd;
    res->file_size = (uint64_t)st.st_size;
    res->content_type = "application/x-asciicast";
}

/* ---- GET …/pty ------------------------------------------------------------------------------- */

struct pty {
    struct sse_out out;
    struct http_stream *stream;
    struct bus_sub *sub;
    char *path;
    int fd;
    off_t offset;          /* of the first byte not yet parsed */
    struct ah_buf line;    /* a partial line */
    bool header_seen, ended;
    struct cast_header h;
};

static int frame(struct pty *p, json_t *data) {
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (!text)
        return AH_E_NOMEM;
    int rc = ah_buf_printf(&p->out.buf, "event: pty\ndata: %s\n\n", text);
    free(text);
    return rc;
}

static int emit_line(struct pty *p, const char *line, size_t len) {
    if (!p->header_seen) {
        p->header_seen = true;
        if (!parse_header(line, len, &p->h))
            p->h = (struct cast_header){80, 24, 0};
        return frame(p, json_pack("{s:s, s:i, s:i, s:I}", "type", "terminal_resize", "cols",
                                  p->h.width, "rows", p->h.height, "timestamp",
                                  (json_int_t)p->h.start_ms));
    }
    double t;
    const char *kind, *text;
    size_t n;
    json_t *ev;
    if (!parse_event(line, len, &t, &kind, &text, &n, &ev))
        return 0; /* a line we do not understand is skipped, never fatal */
    json_int_t ts = (json_int_t)(p->h.start_ms + (int64_t)(t * 1000.0));
    int rc = 0;
    if (!strcmp(kind, "o")) {
        size_t b64_len = 4 * ((n + 2) / 3) + 1;
        char *b64 = malloc(b64_len);
        if (b64) {
            EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)text, (int)n);
            rc = frame(p, json_pack("{s:s, s:s, s:s, s:I}", "type", "terminal", "encoding",
                                    "base64", "data", b64, "timestamp", ts));
            free(b64);
        } else {
            rc = AH_E_NOMEM;
        }
    } else if (!strcmp(kind, "r")) {
        int cols = 0, rows = 0;
        if (sscanf(text, "%dx%d", &cols, &rows) == 2)
            rc = frame(p, json_pack("{s:s, s:i, s:i, s:I}", "type", "terminal_resize", "cols",
                                    cols, "rows", rows, "timestamp", ts));
    }
    json_decref(ev);
    return rc;
}

/* Parses what the file has grown by, up to a batch, into frames. */
static int read_file_batch(struct pty *p) {
    if (p->fd < 0) {
        p->fd = open(p->path, O_RDONLY | O_CLOEXEC);
        if (p->fd < 0)
            return 0; /* not written yet: the session's events will wake us */
        streams_watch(&p->out.entry, p->path);
    }
    char buf[65536];
    ssize_t n = pread(p->fd, buf, sizeof(buf), p->offset);
    if (n <= 0)
        return 0;
    p->offset += n;
    const char *s = buf, *end = buf + n;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
        if (ah_buf_append(&p->line, s, len) < 0)
            p->line.n = 0; /* a line over the cap is dropped */
        if (nl) {
            int rc = emit_line(p, p->line.p ? p->line.p : "", p->line.n);
            p->line.n = 0;
            if (rc < 0)
                return rc;
        }
        s += len + (nl ? 1 : 0);
    }
    return 1;
}

static int pty_fill(void *ctx, struct sse_out *o) {
    struct pty *p = ctx;
    /* the session's events only tell us whether it has ended */
    if (bus_sub_ended(p->sub) > 0)
        p->ended = true;
    int more = read_file_batch(p);
    if (more < 0)
        return more;
    if (more) /* there may be more in the file: ask to be called again */
        http_stream_wake(p->stream);
    else if (p->ended && !o->buf.n)
        o->done = true; /* the file is read to its end and nothing more will come */
    return 0;
}

static ssize_t pty_read(void *ctx, char *buf, size_t max) {
    struct pty *p = ctx;
    return sse_pump(&p->out, pty_fill, p, buf, max);
}

static void pty_close(void *ctx) {
    struct pty *p = ctx;
    streams_remove(&p->out.entry);
    bus_unsubscribe(p->sub);
    if (p->fd >= 0)
        close(p->fd);
    ah_buf_clear(&p->line);
    ah_buf_clear(&p->out.buf);
    free(p->path);
    http_stream_unref(p->stream);
    free(p);
}

static const struct http_stream_ops pty_ops = {.read = pty_read, .close = pty_close};

static void pty_wake(void *arg) {
    http_stream_wake(((struct pty *)arg)->stream);
}

static void get_pty(struct http_request *req, struct http_response *res) {
    struct api_ctx *ctx = api_ready(req, res);
    if (!ctx)
        return;
    AH_AUTO(session_row_freep) struct session_row *row = api_session_load(ctx, req, res, NULL);
    if (!row)
        return;
    const char *id = row->id;
    struct pty *p = calloc(1, sizeof(*p));
    if (!p || !(p->path = exec_recording_path(ctx->exec, id))) {
        free(p);
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    p->fd = -1;
    p->line.max = LINE_MAX_BYTES;
    p->out.buf.max = 2 * LINE_MAX_BYTES;
    p->ended = session_status_terminal(row->status);
    p->stream = http_stream_new(&pty_ops, p);
    if (!p->stream || bus_subscribe(ctx->bus, row->tenant_id, row->id, row->last_seq, pty_wake,
                                    p, &p->sub) < 0) {
        http_stream_unref(p->stream);
        free(p->path);
        free(p);
        http_error(req, res, AH_E_NOMEM, "out of memory");
        return;
    }
    streams_owner(&p->out.entry, req);
    streams_add(&p->out.entry, p->stream);
    res->status = 200;
    res->stream = p->stream;
    http_stream_ref(p->stream);
    res->content_type = "text/event-stream";
    http_header_add(req, res, "Cache-Control", "no-cache");
}

int api_pty_register(struct router *r, struct api_ctx *ctx) {
    int rc = 0;
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/recording", get_recording, ctx, 0, 0);
    rc |= router_add(r, "GET", "/api/v1/sessions/{id}/pty", get_pty, ctx, 0, 0);
    return rc ? AH_E_NOMEM : 0;
}
