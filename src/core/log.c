/*
 * log.c — the JSON-lines logger. One object per line, written with a single write(2) so lines
 * from concurrent threads never interleave. Library layers log at debug only; api/, cli/ and
 * main log what an operator needs (STYLE.md). The sink is set once by main before any thread
 * starts, which is why a plain static is safe here.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static int sink_fd = 2;
static enum log_level sink_min = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};
static __thread const char *trace_id, *span_id; /* D48: set by the HTTP layer per request */

void log_trace_set(const char *t, const char *s) {
    trace_id = t;
    span_id = s;
}

bool log_trace_get(char ret_trace_id[33], char ret_span_id[17]) {
    if (!trace_id || !span_id || strlen(trace_id) != 32 || strlen(span_id) != 16)
        return false;
    memcpy(ret_trace_id, trace_id, 33);
    memcpy(ret_span_id, span_id, 17);
    return true;
}

int log_level_parse(const char *s, enum log_level *ret) {
    for (int i = 0; s && i < 4; i++)
        if (strcmp(s, level_names[i]) == 0) {
            *ret = (enum log_level)i;
            return 0;
        }
    if (s && strcmp(s, "warning") == 0) {
        *ret = LOG_WARN;
        return 0;
    }
    return AH_E_INVAL;
}

const char *log_level_name(enum log_level l) {
    return (unsigned)l < 4 ? level_names[l] : "info";
}

void log_setup(int fd, enum log_level min) {
    sink_fd = fd;
    sink_min = min;
}

bool log_enabled(enum log_level l) {
    return l >= sink_min;
}

void log_json(enum log_level l, const char *msg, const json_t *fields) {
    if (!log_enabled(l))
        return;
    char ts[TIME_RFC3339_LEN + 1];
    time_format(time_now_ms(), ts);
    json_t *line = json_pack("{s:s, s:s, s:s}", "time", ts, "level", log_level_name(l), "msg", msg);
    if (!line)
        return;
    if (fields)
        json_object_update_missing(line, (json_t *)fields);
    if (trace_id && !json_object_get(line, "trace_id")) {
        json_object_set_new(line, "trace_id", json_string(trace_id));
        json_object_set_new(line, "span_id", json_string(span_id ? span_id : ""));
    }
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (text && text_has_userinfo(text)) { /* D29: no log line shows a URL's credentials */
        char *shown = text_redact_userinfo(text);
        free(text);
        text = shown;
    }
    if (!text)
        return;
    size_t n = strlen(text);
    text[n] = '\n'; /* replace the NUL: json_dumps allocated n + 1 bytes */
    const char *p = text;
    size_t left = n + 1;
    while (left > 0) {
        ssize_t w = write(sink_fd, p, left);
        if (w <= 0)
            break;
        p += w;
        left -= (size_t)w;
    }
    free(text);
}

void log_msg(enum log_level l, const char *fmt, ...) {
    if (!log_enabled(l))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_json(l, msg, NULL);
}
