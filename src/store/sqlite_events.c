/*
 * sqlite_events.c — the event log and the state machine's writes.
 *
 * store_apply is the only writer of events and of session status. It runs a whole batch in one
 * IMMEDIATE transaction, so a batch costs one fsync however many events it holds (D9: seq is
 * assigned when the event is durably stored). Per op, inside the transaction:
 *   read the session's status, last_seq and recorder_rseq (NOTFOUND when absent);
 *   a recorder op whose rseq is not above recorder_rseq is a resend: skipped (EXISTS);
 *   a transition must be legal from the status found (CONFLICT otherwise);
 *   an event for a terminal session is acknowledged but not stored (GONE): nothing follows the
 *   final status event, which is what lets a stream close on it;
 *   the event gets seq = last_seq + 1 and is inserted with the session row updated.
 */
#include <string.h>

#include "sqlite_internal.h"

static int64_t now_or(int64_t ts) {
    return ts ? ts : time_now_ms();
}

/* {type, seq, sessionId, ts, …fields}: the stored and served form of an event. */
static json_t *finish_event(const json_t *payload, const char *session_id, int64_t seq,
                            int64_t ts) {
    char when[TIME_RFC3339_LEN + 1];
    time_format(ts, when);
    json_t *type = json_object_get(payload, "type");
    json_t *e = json_pack("{s:O, s:I, s:s, s:s}", "type", type, "seq", (json_int_t)seq,
                          "sessionId", session_id, "ts", when);
    if (!e)
        return NULL;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)payload, key, v) {
        if (strcmp(key, "type") && strcmp(key, "seq") && strcmp(key, "sessionId") &&
            strcmp(key, "ts") && json_object_set(e, key, v) < 0) {
            json_decref(e);
            return NULL;
        }
    }
    return e;
}

/* A session as the batch sees it: read once, kept in memory while the batch runs, its counters
 * written back once at the end (one UPDATE per session per batch instead of one per event). */
struct batch_session {
    const char *tenant, *id;
    enum session_status status;
    int64_t last_seq, rseq;
    bool dirty;
};

struct batch {
    struct batch_session *s;
    size_t n, cap;
};

/* The session's state in this batch; *ret NULL when the session does not exist. */
static int batch_session(struct conn *c, struct batch *b, const struct store_op *op,
                         struct batch_session **ret) {
    for (size_t i = b->n; i > 0; i--) /* recent first: batches come in runs per session */
        if (strcmp(b->s[i - 1].id, op->session_id) == 0 &&
            strcmp(b->s[i - 1].tenant, op->tenant) == 0) {
            *ret = &b->s[i - 1];
            return 0;
        }
    sqlite3_stmt *st = sq_prepare(c, "SELECT status, last_seq, recorder_rseq FROM sessions"
                                     " WHERE tenant_id = ?1 AND id = ?2");
    if (!st)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, op->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->session_id, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW) {
        sq_done(c, st);
        *ret = NULL;
        return step == SQLITE_DONE ? 0 : sq_code(step);
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        struct batch_session *ns = realloc(b->s, cap * sizeof(*ns));
        if (!ns) {
            sq_done(c, st);
            return AH_E_NOMEM;
        }
        b->s = ns;
        b->cap = cap;
    }
    struct batch_session *bs = &b->s[b->n++];
    *bs = (struct batch_session){.tenant = op->tenant, .id = op->session_id,
                                 .status = SESSION_FAILED};
    session_status_parse((const char *)sqlite3_column_text(st, 0), &bs->status);
    bs->last_seq = sqlite3_column_int64(st, 1);
    bs->rseq = sqlite3_column_int64(st, 2);
    sq_done(c, st);
    *ret = bs;
    return 0;
}

static int batch_flush(struct conn *c, struct batch *b) {
    for (size_t i = 0; i < b->n; i++) {
        struct batch_session *bs = &b->s[i];
        if (!bs->dirty)
            continue;
        sqlite3_stmt *st = sq_prepare(c, "UPDATE sessions SET last_seq = ?3, recorder_rseq = ?4"
                                         " WHERE tenant_id = ?1 AND id = ?2");
        if (!st)
            return AH_E_DB;
        sqlite3_bind_text(st, 1, bs->tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, bs->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, bs->last_seq);
        sqlite3_bind_int64(st, 4, bs->rseq);
        int rc = sq_code(sqlite3_step(st));
        sq_done(c, st);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The state machine's part of a transition: the session row's status, times and outcome. */
static int write_transition(struct conn *c, const struct store_op *op, int64_t ts) {
    sqlite3_stmt *st = sq_prepare(
        c, "UPDATE sessions SET status = ?3, updated_at = ?4,"
           " started_at = CASE WHEN ?3 = 'running' AND started_at IS NULL THEN ?4"
           " ELSE started_at END,"
           " ended_at = CASE WHEN ?5 THEN ?4 ELSE ended_at END,"
           " error = coalesce(?6, error),"
           " exit_code = CASE WHEN ?7 THEN ?8 ELSE exit_code END,"
           " changes = coalesce(?9, changes)"
           " WHERE tenant_id = ?1 AND id = ?2");
    if (!st)
        return AH_E_DB;
    AH_AUTOFREE char *changes = op->changes ? json_dumps(op->changes, JSON_COMPACT) : NULL;
    sqlite3_bind_text(st, 1, op->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->session_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, session_status_name(op->to), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, ts);
    sqlite3_bind_int(st, 5, session_status_terminal(op->to));
    sqlite3_bind_text(st, 6, op->error, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, op->has_exit_code);
    sqlite3_bind_int(st, 8, op->exit_code);
    sqlite3_bind_text(st, 9, changes, -1, SQLITE_STATIC);
    int rc = sq_code(sqlite3_step(st));
    sq_done(c, st);
    return rc;
}

static int apply_one(struct conn *c, struct batch *b, struct store_op *op) {
    struct batch_session *bs = NULL;
    int rc = batch_session(c, b, op, &bs);
    if (rc < 0)
        return rc;
    if (!bs) {
        op->result = AH_E_NOTFOUND;
        return 0;
    }
    op->status_before = bs->status;
    if (op->rseq && op->rseq <= bs->rseq) {
        op->result = AH_E_EXISTS;
        return 0;
    }
    if (op->kind == STORE_OP_TRANSITION ? !session_transition_legal(bs->status, op->to)
                                        : session_status_terminal(bs->status)) {
        op->result = op->kind == STORE_OP_TRANSITION ? AH_E_CONFLICT : AH_E_GONE;
        /* not stored, but remembered as seen, so the recorder's resend is not retried forever */
        if (op->rseq) {
            bs->rseq = op->rseq;
            bs->dirty = true;
        }
        return 0;
    }

    int64_t ts = now_or(op->ts);
    AH_AUTO(json_decrefp) json_t *payload = NULL;
    if (op->kind == STORE_OP_TRANSITION) {
        if ((rc = write_transition(c, op, ts)) < 0)
            return rc;
        payload = json_pack("{s:s, s:s}", "type", "status", "status", session_status_name(op->to));
        if (payload && op->error)
            json_object_set_new(payload, "error", json_string(op->error));
        if (payload && op->has_exit_code)
            json_object_set_new(payload, "exitCode", json_integer(op->exit_code));
        op->terminal = session_status_terminal(op->to);
    } else {
        payload = json_incref(op->payload);
    }
    if (!payload)
        return AH_E_NOMEM;

    int64_t seq = bs->last_seq + 1;
    AH_AUTO(json_decrefp) json_t *event = finish_event(payload, op->session_id, seq, ts);
    char *text = event ? json_dumps(event, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (!text)
        return AH_E_NOMEM;
    sqlite3_stmt *st = sq_prepare(c, "INSERT INTO events (tenant_id, session_id, seq, type, level,"
                                     " ts, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (!st) {
        free(text);
        return AH_E_DB;
    }
    sqlite3_bind_text(st, 1, op->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, op->session_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, seq);
    sqlite3_bind_text(st, 4, json_string_value(json_object_get(event, "type")), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, json_string_value(json_object_get(event, "level")), -1,
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, ts);
    sqlite3_bind_text(st, 7, text, -1, SQLITE_STATIC);
    rc = sq_code(sqlite3_step(st));
    sq_done(c, st);
    if (rc < 0) {
        free(text);
        return rc;
    }
    bs->last_seq = seq;
    if (op->rseq > bs->rseq)
        bs->rseq = op->rseq;
    if (op->kind == STORE_OP_TRANSITION)
        bs->status = op->to;
    bs->dirty = true;
    op->seq = seq;
    op->stored = text;
    op->result = 0;
    return 0;
}

int sq_apply(void *impl, struct store_op *ops, size_t n) {
    struct sq *s = impl;
    for (size_t i = 0; i < n; i++) {
        ops[i].result = 0;
        ops[i].seq = 0;
        ops[i].stored = NULL;
        ops[i].terminal = false;
    }
    struct batch b = {0};
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN IMMEDIATE");
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = apply_one(c, &b, &ops[i]);
    if (rc == 0)
        rc = batch_flush(c, &b);
    if (rc == 0) /* D37: the audit records of the stored ops commit with them */
        rc = sq_audit_ops(c, ops, n);
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    sq_release(s, c);
    free(b.s);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++) {
            free(ops[i].stored);
            ops[i].stored = NULL;
            ops[i].seq = 0;
            ops[i].result = rc;
        }
    }
    return rc;
}

#define EVENT_WHERE                                                                                \
    " WHERE tenant_id = ?1 AND session_id = ?2 AND seq > ?3"                                       \
    " AND (?4 IS NULL OR type IN (SELECT value FROM json_each(?4)))"                               \
    " AND (?5 IS NULL OR level = ?5) AND (?6 = 0 OR ts >= ?6) AND (?7 = 0 OR ts <= ?7)"

static int bind_event_filter(sqlite3_stmt *st, const char *tenant, const char *session_id,
                             const struct event_filter *f, char **types_json) {
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, session_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, f->after);
    if (f->types && !*types_json) {
        json_t *arr = json_array();
        for (const char *const *t = f->types; arr && *t; t++)
            json_array_append_new(arr, json_string(*t));
        *types_json = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
        json_decref(arr);
        if (!*types_json)
            return AH_E_NOMEM;
    }
    sqlite3_bind_text(st, 4, *types_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, f->level, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, f->since);
    sqlite3_bind_int64(st, 7, f->until);
    return 0;
}

int sq_event_list(void *impl, const char *tenant, const char *session_id,
                  const struct event_filter *f, const struct page *pg, json_t **ret_items,
                  int64_t *ret_total) {
    struct sq *s = impl;
    AH_AUTOFREE char *types = NULL;
    AH_AUTO(json_decrefp) json_t *items = json_array();
    if (!items)
        return AH_E_NOMEM;
    struct conn *c = sq_acquire(s);
    int rc = sq_exec(c, "BEGIN");
    int64_t total = 0;
    sqlite3_stmt *st = rc == 0 ? sq_prepare(c, "SELECT count(*) FROM events" EVENT_WHERE) : NULL;
    if (!st)
        rc = rc < 0 ? rc : AH_E_DB;
    if (rc == 0 && (rc = bind_event_filter(st, tenant, session_id, f, &types)) == 0)
        rc = sq_count(st, &total);
    sq_done(c, st);
    if (rc == 0) {
        st = sq_prepare(c, f->ascending
                               ? "SELECT payload FROM events" EVENT_WHERE
                                 " ORDER BY seq ASC LIMIT ?8 OFFSET ?9"
                               : "SELECT payload FROM events" EVENT_WHERE
                                 " ORDER BY seq DESC LIMIT ?8 OFFSET ?9");
        if (!st)
            rc = AH_E_DB;
    }
    if (rc == 0) {
        bind_event_filter(st, tenant, session_id, f, &types);
        sqlite3_bind_int64(st, 8, pg->per_page);
        sqlite3_bind_int64(st, 9, page_offset(pg));
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            json_t *e = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
            if (!e || json_array_append_new(items, e) < 0) {
                rc = AH_E_NOMEM;
                break;
            }
        }
        if (rc == 0 && step != SQLITE_DONE)
            rc = sq_code(step);
        sq_done(c, st);
    }
    if (rc == 0)
        rc = sq_exec(c, "COMMIT");
    sq_release(s, c); /* rolls back when the transaction is still open */
    if (rc < 0)
        return rc;
    *ret_items = AH_TAKE(items);
    *ret_total = total;
    return 0;
}

int sq_event_range(void *impl, const char *tenant, const char *session_id, int64_t after,
                   size_t limit, char ***ret_json, int64_t **ret_seq, size_t *ret_n) {
    struct sq *s = impl;
    char **texts = calloc(limit ? limit : 1, sizeof(char *));
    int64_t *seqs = calloc(limit ? limit : 1, sizeof(int64_t));
    if (!texts || !seqs) {
        free(texts);
        free(seqs);
        return AH_E_NOMEM;
    }
    struct conn *c = sq_acquire(s);
    sqlite3_stmt *st = sq_prepare(c, "SELECT seq, payload FROM events WHERE tenant_id = ?1"
                                     " AND session_id = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4");
    size_t n = 0;
    int rc = st ? 0 : AH_E_DB;
    if (st) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, session_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, after);
        sqlite3_bind_int64(st, 4, (int64_t)limit);
        int step = SQLITE_DONE;
        while (n < limit && (step = sqlite3_step(st)) == SQLITE_ROW) {
            seqs[n] = sqlite3_column_int64(st, 0);
            if (!(texts[n] = strdup((const char *)sqlite3_column_text(st, 1)))) {
                rc = AH_E_NOMEM;
                break;
            }
            n++;
        }
        if (rc == 0 && n < limit && step != SQLITE_DONE)
            rc = sq_code(step);
    }
    sq_done(c, st);
    sq_release(s, c);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            free(texts[i]);
        free(texts);
        free(seqs);
        return rc;
    }
    *ret_json = texts;
    *ret_seq = seqs;
    *ret_n = n;
    return 0;
}
