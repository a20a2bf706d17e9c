/*
 * stream.c — following a session's events over SSE (D10, D11) until its terminal status.
 *
 * One loop, one connection at a time:
 *   connect (Last-Event-ID = last delivered seq) → parse frames → deliver each new event →
 *   on the terminal `status` event: stop, return 0;
 *   on a drop, an idle connection (no byte, not even a keep-alive, for the stream timeout),
 *   a connect failure or a 408/429/502/503/504: wait (back-off; Retry-After wins) and reconnect;
 *   on any other answer (404, 401, …) or a fatal transport error (TLS): return the error.
 *
 * Invariants: last_seq only grows; an event is delivered only when its seq is greater than
 * last_seq (the server may resend the seam after a reconnect), so nothing is delivered twice;
 * and because the reconnect asks for everything after last_seq, nothing is skipped. Events
 * without any seq (neither `id:` nor a `seq` member) cannot be de-duplicated and are delivered
 * as they come. The back-off counter resets whenever a connection delivered something.
 *
 * Other servers (the upstream mock, D26) send frames without `id:`, and data without `type`
 * (`event: status` + `{"status":"completed"}`): the event name then supplies the type
 * (`thinking` → thought, `tool_execution` → tool_use/tool_result). A clean close that cannot be
 * resumed (nothing delivered, or nothing with a seq) ends the stream when the session is over,
 * and so does a 204 (D11: an ended session with nothing after the cursor): reconnecting could
 * only replay the same frames forever.
 */
#include <limits.h>
#include <string.h>

#include "client_internal.h"

#define STREAM_DEFAULT_MAX_FAILURES 10
#define ERRBODY_MAX (64 * 1024)

struct stream {
    ah_client *c;
    CURL *h;
    ah_event_fn cb;
    void *userdata;
    ah_cancel *cancel;
    struct sse_parser parser;
    int64_t last_seq;
    int64_t idle_ms;
    int64_t last_byte_ms; /* monotonic */
    /* per connection */
    long status;
    bool status_known;
    bool is_sse;
    bool idle_timeout;
    int delivered;     /* events delivered on this connection */
    int delivered_seq; /* … of which carried a seq (a reconnect can resume after them) */
    struct ah_buf errbody;
    char *content_type, *request_id, *retry_after;
    /* outcome */
    bool terminal;
    bool stopped;
    int err; /* AH_E_NOMEM / AH_E_TOOLARGE while parsing */
};

static void conn_reset(struct stream *s) {
    s->status = 0;
    s->status_known = false;
    s->is_sse = false;
    s->idle_timeout = false;
    s->delivered = 0;
    s->delivered_seq = 0;
    s->errbody.n = 0;
    free(s->content_type);
    free(s->request_id);
    free(s->retry_after);
    s->content_type = s->request_id = s->retry_after = NULL;
    sse_parser_reset(&s->parser);
}

static bool parse_seq(const char *id, int64_t *ret) {
    return id && *id && parse_int64(id, 0, INT64_MAX, ret) == 0;
}

/* The type an event name stands for when the data has none (D26's names mapped back); NULL for
 * the names that say nothing (no `event:` line, R's `session`). */
static const char *type_from_name(const char *name, const json_t *j) {
    if (!name || !*name || !strcmp(name, "message") || !strcmp(name, "session"))
        return NULL;
    if (!strcmp(name, "thinking"))
        return "thought";
    if (!strcmp(name, "tool_execution"))
        return json_object_get(j, "tool_output") || json_object_get(j, "tool_status")
                   ? "tool_result"
                   : "tool_use";
    return name;
}

static int on_event(void *ud, const struct sse_event *sev) {
    struct stream *s = ud;
    int perr = 0;
    json_t *j = json_parse_text(sev->data, sev->data_len, &perr);
    if (perr == AH_E_NOMEM) {
        s->err = perr;
        return 1;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        client_log(s->c, AH_LOG_DEBUG, "SSE: ignoring a %s frame whose data is not an object",
                   sev->type);
        return 0;
    }
    int64_t seq = 0;
    if (!(sev->id_in_event && parse_seq(sev->id, &seq))) {
        json_t *v = json_object_get(j, "seq");
        seq = json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
    }
    if (seq > 0 && seq <= s->last_seq) { /* the seam of a reconnect: seen already */
        json_decref(j);
        return 0;
    }
    const char *named = json_is_string(json_object_get(j, "type")) ? NULL
                                                                   : type_from_name(sev->type, j);
    if (named && json_object_set_new(j, "type", json_string(named)) < 0) {
        json_decref(j);
        s->err = AH_E_NOMEM;
        return 1;
    }
    struct ah_event *ev = NULL;
    int rc = event_from_json_t(j, &ev);
    json_decref(j);
    if (rc < 0) {
        s->err = rc;
        return 1;
    }
    if (ev->seq == 0)
        ev->seq = seq;
    int stop = s->cb(s->userdata, ev);
    if (seq > 0) {
        s->last_seq = seq;
        s->delivered_seq++;
    }
    s->delivered++;
    bool terminal = strcmp(ev->type, "status") == 0 && ah_session_status_terminal(ev->status);
    ah_event_free(ev);
    if (stop) {
        s->stopped = true;
        return 1;
    }
    if (terminal) {
        s->terminal = true;
        return 1;
    }
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    struct stream *s = ud;
    size_t len = size * n;
    s->last_byte_ms = time_mono_ms();
    if (!s->status_known) {
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
        s->status_known = true;
        s->is_sse = s->content_type && strncasecmp(s->content_type, "text/event-stream", 17) == 0;
    }
    if (s->status != 200 || !s->is_sse) {
        int rc = ah_buf_append(&s->errbody, p, len);
        if (rc == AH_E_NOMEM) {
            s->err = rc;
            return 0;
        }
        return len; /* past the cap: the rest is not worth keeping */
    }
    int rc = sse_feed(&s->parser, p, len, on_event, s);
    if (rc < 0)
        s->err = rc;
    return rc ? 0 : len; /* 0 aborts the transfer (stopped, terminal or an error) */
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    struct stream *s = ud;
    size_t len = size * n;
    s->last_byte_ms = time_mono_ms();
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        free(s->content_type);
        free(s->request_id);
        free(s->retry_after);
        s->content_type = s->request_id = s->retry_after = NULL;
        return len;
    }
    if (client_header_value(p, len, "Content-Type", &s->content_type) < 0 ||
        client_header_value(p, len, "X-Request-Id", &s->request_id) < 0 ||
        client_header_value(p, len, "Retry-After", &s->retry_after) < 0) {
        s->err = AH_E_NOMEM;
        return 0;
    }
    return len;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    struct stream *s = ud;
    if (ah_cancel_triggered(s->cancel))
        return 1;
    if (s->idle_ms > 0 && time_mono_ms() - s->last_byte_ms > s->idle_ms) {
        s->idle_timeout = true;
        return 1;
    }
    return 0;
}

/* One connection. Returns 0 when the transfer ended without an HTTP error status (including
 * drops and idle time-outs, see *tc), or the transport's AH_E_* with errbuf filled. */
static int connect_once(struct stream *s, const struct ccfg *g, const char *path,
                        enum transport_class *tc, char *errbuf) {
    struct curl_slist *headers = NULL;
    char rid[ULID_LEN + 1];
    int rc = client_prepare(s->c, g, s->h, path, &headers, errbuf);
    if (rc == 0)
        rc = client_add_header(&headers, "Accept: text/event-stream");
    if (rc == 0)
        rc = client_add_header(&headers, "Cache-Control: no-cache");
    if (rc == 0 && s->last_seq > 0)
        rc = client_add_header(&headers, "Last-Event-ID: %lld", (long long)s->last_seq);
    if (rc == 0 && ulid_new(rid) == 0)
        rc = client_add_header(&headers, "X-Request-Id: %s", rid);
    if (rc < 0) {
        curl_slist_free_all(headers);
        *tc = TRANSPORT_FATAL;
        snprintf(errbuf, CURL_ERROR_SIZE, "%s", ah_strerror(rc));
        return rc;
    }
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(s->h, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(s->h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(s->h, CURLOPT_XFERINFODATA, s);
    curl_easy_setopt(s->h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(s->h, CURLOPT_CONNECTTIMEOUT_MS, (long)ccfg_connect_ms(g, AH_EP_STREAM));
    curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, 0L);
    /* No compression: a keep-alive must reach us when it is sent, not when a block fills. */
    curl_easy_setopt(s->h, CURLOPT_ACCEPT_ENCODING, NULL);
    s->last_byte_ms = time_mono_ms();
    CURLcode cc = curl_easy_perform(s->h);
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    if (!s->status_known) {
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
        s->status_known = s->status != 0;
        s->is_sse = s->content_type && strncasecmp(s->content_type, "text/event-stream", 17) == 0;
    }
    if (s->terminal || s->stopped || s->err) {
        *tc = TRANSPORT_OK;
        return 0;
    }
    if (cc == CURLE_ABORTED_BY_CALLBACK && s->idle_timeout) {
        *tc = TRANSPORT_IO;
        snprintf(errbuf, CURL_ERROR_SIZE, "no data for %lld ms", (long long)s->idle_ms);
        return AH_E_TIMEOUT;
    }
    rc = client_curl_error(cc, tc);
    if (rc < 0 && !errbuf[0])
        snprintf(errbuf, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cc));
    if (rc == AH_E_TIMEOUT) /* the connect time-out (there is no total one): worth retrying */
        *tc = TRANSPORT_CONNECT;
    return rc;
}

/* After a clean close that delivered nothing: has the session ended already (the caller asked
 * to start after its last event)? */
static bool session_is_over(ah_client *c, const char *id) {
    struct ah_session *sess = NULL;
    if (ah_client_get_session(c, id, &sess, NULL) < 0)
        return false;
    bool over = ah_session_status_terminal(sess->status);
    ah_session_free(sess);
    return over;
}

int ah_client_stream_events(ah_client *c, const char *id, const struct ah_stream_options *opt,
                            ah_event_fn cb, void *userdata, int64_t *ret_last_seq,
                            struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !cb) {
        problem_local(reterr, AH_E_INVAL, "client, id and cb are required");
        return AH_E_INVAL;
    }
    struct ah_stream_options o = {0};
    if (opt)
        o = *opt;
    if (o.after_seq < 0 || o.tail < 0) {
        problem_local(reterr, AH_E_INVAL, "after_seq and tail must be ≥ 0");
        return AH_E_INVAL;
    }
    int max_failures = o.max_failures == 0 ? STREAM_DEFAULT_MAX_FAILURES : o.max_failures;

    struct ah_api_error last = {.retry_after_ms = -1};
    struct stream s = {
        .c = c, .cb = cb, .userdata = userdata, .cancel = o.cancel, .last_seq = o.after_seq};
    s.errbody.max = ERRBODY_MAX;
    sse_parser_init(&s.parser);
    struct ccfg *g = client_cfg_get(c);
    struct ah_retry_policy policy = *ccfg_retry(g);
    policy.max_attempts = INT_MAX; /* the stream counts its failures itself */
    s.idle_ms = ccfg_total_ms(g, AH_EP_STREAM);
    s.h = client_handle_get(c);
    struct ah_buf path = {.max = AH_LIMIT_URL};
    int rc = s.h ? ah_buf_puts(&path, "/api/v1/sessions/") : AH_E_NOMEM;
    if (rc == 0)
        rc = ah_buf_url_escape(&path, id);
    if (rc == 0)
        rc = ah_buf_puts(&path, "/events");
    size_t base_len = path.n;
    if (rc < 0) {
        problem_local(&last, rc, "cannot start the stream: %s", ah_strerror(rc));
        goto out;
    }

    char errbuf[CURL_ERROR_SIZE];
    int failures = 0;
    for (;;) {
        if (ah_cancel_triggered(s.cancel)) {
            rc = AH_E_CANCELED;
            problem_local(&last, rc, "the stream was cancelled");
            break;
        }
        conn_reset(&s);
        path.n = base_len;
        path.p[path.n] = '\0';
        if (s.last_seq == 0 && o.tail > 0) { /* until something arrived: tail, not all */
            bool q = true;
            if ((rc = ah_buf_query_add_int(&path, &q, "tail", o.tail)) < 0) {
                problem_local(&last, rc, "cannot build the stream URL");
                break;
            }
        }
        enum transport_class tc = TRANSPORT_OK;
        errbuf[0] = '\0';
        rc = connect_once(&s, g, path.p, &tc, errbuf);
        if (s.terminal) {
            rc = 0;
            break;
        }
        if (s.stopped || (rc == AH_E_CANCELED && ah_cancel_triggered(s.cancel))) {
            rc = AH_E_CANCELED;
            problem_local(&last, rc, "the stream was stopped");
            break;
        }
        if (s.err) {
            rc = s.err;
            problem_local(&last, rc, "reading the stream: %s", ah_strerror(rc));
            break;
        }
        int64_t retry_after = -1;
        bool progress = s.delivered > 0;
        if (rc == 0 && s.status_known && s.status == 204) {
            /* D11: the session has ended and nothing follows the cursor */
            rc = 0;
            break;
        }
        if (rc == 0 && s.status_known && s.status != 200) {
            last.attempts = failures + 1;
            rc = problem_from_response(&last, (int)s.status, s.errbody.p, s.errbody.n, s.request_id,
                                       -1);
            if (!retry_should("GET", false, (int)s.status, TRANSPORT_OK))
                break;
            if (s.status == 429 || s.status == 503)
                retry_after = retry_after_parse(s.retry_after, time_now_ms());
            last.retry_after_ms = retry_after;
        } else if (rc == 0 && s.status_known && !s.is_sse) {
            rc = AH_E_PROTOCOL;
            problem_local(&last, rc, "the server answered %s instead of an event stream",
                          s.content_type ? s.content_type : "without a content type");
            last.status = (int)s.status;
            break;
        } else if (rc < 0 && tc == TRANSPORT_FATAL) {
            problem_local(&last, rc, "GET %s: %s", path.p, errbuf);
            break;
        } else if (rc == 0) {
            /* A clean end of the stream without the terminal event: the server went away, or
             * the caller started after the session's last event, or a server that sends no ids
             * closed it. Without a cursor to resume from, an ended session is the end. */
            if (s.delivered_seq == 0 && session_is_over(c, id)) {
                rc = 0;
                break;
            }
            rc = AH_E_NETWORK;
            problem_local(&last, rc, "the event stream ended before the session did");
        } else {
            problem_local(&last, rc, "GET %s: %s", path.p, errbuf);
        }
        failures = progress ? 1 : failures + 1;
        if (max_failures >= 0 && failures > max_failures && !progress) {
            client_log(c, AH_LOG_WARN, "event stream of %s: giving up after %d failures", id,
                       failures);
            break;
        }
        int64_t delay = ah_retry_delay_ms(&policy, failures, retry_after, client_random(c));
        if (delay < 0) /* Retry-After beyond what the policy accepts */
            break;
        /* The stream's own `retry:` is the least we wait after a drop (WHATWG: the
         * reconnection time), but Retry-After on an error answer wins. */
        if (retry_after < 0 && s.parser.retry_ms > delay)
            delay = s.parser.retry_ms > 60000 ? 60000 : s.parser.retry_ms;
        client_log(c, AH_LOG_DEBUG, "event stream of %s: reconnecting after seq %lld in %lld ms",
                   id, (long long)s.last_seq, (long long)delay);
        if (cancel_sleep_ms(s.cancel, delay) < 0) {
            rc = AH_E_CANCELED;
            problem_local(&last, rc, "the stream was cancelled");
            break;
        }
    }
out:
    /* Failures along the way (retried) are only reported when the stream failed in the end. */
    if (rc < 0 && reterr) {
        ah_api_error_clear(reterr);
        *reterr = last;
    } else {
        ah_api_error_clear(&last);
    }
    if (ret_last_seq)
        *ret_last_seq = s.last_seq;
    conn_reset(&s);
    ah_buf_clear(&s.errbody);
    sse_parser_clear(&s.parser);
    ah_buf_clear(&path);
    client_handle_put(c, s.h);
    client_cfg_put(g);
    return rc;
}
