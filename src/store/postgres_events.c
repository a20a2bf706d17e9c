/*
 * postgres_events.c — the event log and the state machine's writes, the twin of
 * sqlite_events.c: same per-op rules, same results.
 *
 * store_apply runs a whole batch in one transaction (one durable commit), in a few round trips
 * however many events it holds:
 *   1. lock the batch's sessions (SELECT … FOR UPDATE, in key order so two writers never wait on
 *      each other crosswise) and read status, last_seq and recorder_rseq;
 *   2. decide every op in memory with the rules of sqlite_events.c (resends skipped as EXISTS,
 *      illegal transitions CONFLICT, events after a terminal status GONE, seq = last_seq + 1),
 *      writing each transition's session row as it comes (they are few);
 *   3. insert all the batch's events with one COPY … FROM STDIN (several times faster per row
 *      than an INSERT, which is what lets PostgreSQL ingest at the rate the bus delivers);
 *   4. write each touched session's counters back with one UPDATE … FROM unnest(arrays).
 * The row lock makes seq gapless per session even with several writers, and the primary key
 * (tenant_id, session_id, seq) refuses a duplicate should that ever fail (D45). An event is
 * only ever inserted here, for a session found and locked in step 1: that is why `events` needs
 * no foreign key to `sessions` (whose per-row check would cost a third of the insert).
 */
#include <string.h>

#include "postgres_internal.h"

/* Big enough for a batch of large events (PostgreSQL caps one value at 1 GB). */
#define ARRAY_MAX ((size_t)512 << 20)

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

/* A session as the batch sees it: locked and read once, its counters written back once. */
struct batch_session {
    const char *tenant, *id;
    bool found;
    enum session_status status;
    int64_t last_seq, rseq;
    bool dirty;
};

/* The batch's events as the text of one COPY: tab-separated columns, one line per event. */
struct batch_rows {
    struct ah_buf copy;
    size_t n;
};

/* Appends one COPY text field and its separator (\N for NULL; backslash, tab, newline and
 * carriage return escaped). */
static int copy_field(struct ah_buf *b, const char *s, char sep) {
    int rc = 0;
    if (!s)
        rc = ah_buf_append(b, "\\N", 2);
    for (const char *p = s; p && *p && rc == 0;) {
        size_t run = strcspn(p, "\\\t\n\r");
        if (run && (rc = ah_buf_append(b, p, run)) < 0)
            break;
        p += run;
        if (*p) {
            char esc[2] = {'\\', *p == '\t' ? 't' : *p == '\n' ? 'n' : *p == '\r' ? 'r' : '\\'};
            rc = ah_buf_append(b, esc, 2);
            p++;
        }
    }
    return rc == 0 ? ah_buf_append(b, &sep, 1) : rc;
}

static int cmp_session(const void *a, const void *b) {
    const struct batch_session *x = a, *y = b;
    int c = strcmp(x->tenant, y->tenant);
    return c ? c : strcmp(x->id, y->id);
}

static struct batch_session *find(struct batch_session *bs, size_t n, const struct store_op *op) {
    struct batch_session key = {.tenant = op->tenant, .id = op->session_id};
    return bsearch(&key, bs, n, sizeof(*bs), cmp_session);
}

/* The distinct sessions of the ops, sorted by (tenant, id): the lock order. */
static int collect_sessions(const struct store_op *ops, size_t n, struct batch_session **ret,
                            size_t *ret_n) {
    struct batch_session *bs = calloc(n ? n : 1, sizeof(*bs));
    if (!bs)
        return AH_E_NOMEM;
    for (size_t i = 0; i < n; i++)
        bs[i] = (struct batch_session){.tenant = ops[i].tenant, .id = ops[i].session_id};
    qsort(bs, n, sizeof(*bs), cmp_session);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || cmp_session(&bs[m - 1], &bs[i]) != 0)
            bs[m++] = bs[i];
    *ret = bs;
    *ret_n = m;
    return 0;
}

static char *array_text(struct ah_buf *b);

static int lock_sessions(struct pgs_conn *c, struct batch_session *bs, size_t n) {
    struct ah_buf tenants = {.max = ARRAY_MAX}, ids = {.max = ARRAY_MAX};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if ((rc = store_pg_array_add(&tenants, bs[i].tenant)) == 0)
            rc = store_pg_array_add(&ids, bs[i].id);
    AH_AUTOFREE char *ta = rc == 0 ? array_text(&tenants) : NULL;
    AH_AUTOFREE char *da = rc == 0 ? array_text(&ids) : NULL;
    ah_buf_clear(&tenants);
    ah_buf_clear(&ids);
    if (rc < 0)
        return rc;
    if (!ta || !da)
        return AH_E_NOMEM;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, ta);
    store_pg_arg_text(&a, da);
    PGresult *r = store_pg_run(c,
                               "SELECT s.tenant_id, s.id, s.status, s.last_seq, s.recorder_rseq"
                               " FROM sessions s JOIN unnest($1::text[], $2::text[]) AS k(t, i)"
                               " ON s.tenant_id = k.t AND s.id = k.i"
                               " ORDER BY s.tenant_id, s.id FOR UPDATE OF s",
                               &a, &rc);
    if (!r)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        struct batch_session key = {.tenant = PQgetvalue(r, i, 0), .id = PQgetvalue(r, i, 1)};
        struct batch_session *b = bsearch(&key, bs, n, sizeof(*bs), cmp_session);
        if (!b)
            continue;
        b->found = true;
        b->status = SESSION_FAILED;
        session_status_parse(PQgetvalue(r, i, 2), &b->status);
        b->last_seq = store_pg_int(r, i, 3);
        b->rseq = store_pg_int(r, i, 4);
    }
    PQclear(r);
    return 0;
}

/* The state machine's part of a transition: the session row's status, times and outcome. */
static int write_transition(struct pgs_conn *c, const struct store_op *op, int64_t ts) {
    AH_AUTOFREE char *changes = op->changes ? json_dumps(op->changes, JSON_COMPACT) : NULL;
    if (op->changes && !changes)
        return AH_E_NOMEM;
    struct pgs_args a = {0};
    store_pg_arg_text(&a, op->tenant);
    store_pg_arg_text(&a, op->session_id);
    store_pg_arg_text(&a, session_status_name(op->to));
    store_pg_arg_int(&a, ts);
    store_pg_arg_bool(&a, session_status_terminal(op->to));
    store_pg_arg_text(&a, op->error);
    store_pg_arg_bool(&a, op->has_exit_code);
    store_pg_arg_int(&a, op->exit_code);
    store_pg_arg_text(&a, changes);
    return store_pg_do(c,
                       "UPDATE sessions SET status = $3::text, updated_at = $4::bigint,"
                       " started_at = CASE WHEN $3::text = 'running' AND started_at IS NULL"
                       " THEN $4::bigint ELSE started_at END,"
                       " ended_at = CASE WHEN $5::boolean THEN $4::bigint ELSE ended_at END,"
                       " error = coalesce($6::text, error),"
                       " exit_code = CASE WHEN $7::boolean THEN $8::integer ELSE exit_code END,"
                       " changes = coalesce($9::json, changes)"
                       " WHERE tenant_id = $1 AND id = $2",
                       &a, NULL);
}

static int add_row(struct batch_rows *rows, const struct store_op *op, int64_t seq, int64_t ts,
                   const json_t *event, const char *text) {
    struct ah_buf *b = &rows->copy;
    size_t undo = b->n; /* a failed append leaves no half line behind */
    int rc;
    if ((rc = copy_field(b, op->tenant, '\t')) < 0 || (rc = copy_field(b, op->session_id, '\t')) < 0 ||
        (rc = ah_buf_printf(b, "%lld\t", (long long)seq)) < 0 ||
        (rc = copy_field(b, json_string_value(json_object_get(event, "type")), '\t')) < 0 ||
        (rc = copy_field(b, json_string_value(json_object_get(event, "level")), '\t')) < 0 ||
        (rc = ah_buf_printf(b, "%lld\t", (long long)ts)) < 0 ||
        (rc = copy_field(b, text, '\n')) < 0) {
        b->n = undo;
        if (b->p)
            b->p[undo] = '\0';
        return rc;
    }
    rows->n++;
    return 0;
}

static int apply_one(struct pgs_conn *c, struct batch_session *bs, size_t n_bs,
                     struct batch_rows *rows, struct store_op *op) {
    struct batch_session *b = find(bs, n_bs, op);
    if (!b || !b->found) {
        op->result = AH_E_NOTFOUND;
        return 0;
    }
    op->status_before = b->status;
    if (op->rseq && op->rseq <= b->rseq) {
        op->result = AH_E_EXISTS;
        return 0;
    }
    if (op->kind == STORE_OP_TRANSITION ? !session_transition_legal(b->status, op->to)
                                        : session_status_terminal(b->status)) {
        op->result = op->kind == STORE_OP_TRANSITION ? AH_E_CONFLICT : AH_E_GONE;
        /* not stored, but remembered as seen, so the recorder's resend is not retried forever */
        if (op->rseq) {
            b->rseq = op->rseq;
            b->dirty = true;
        }
        return 0;
    }

    int rc;
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

    int64_t seq = b->last_seq + 1;
    AH_AUTO(json_decrefp) json_t *event = finish_event(payload, op->session_id, seq, ts);
    char *text = event ? json_dumps(event, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (!text)
        return AH_E_NOMEM;
    if ((rc = add_row(rows, op, seq, ts, event, text)) < 0) {
        free(text);
        return rc;
    }
    b->last_seq = seq;
    if (op->rseq > b->rseq)
        b->rseq = op->rseq;
    if (op->kind == STORE_OP_TRANSITION)
        b->status = op->to;
    b->dirty = true;
    op->seq = seq;
    op->stored = text;
    op->result = 0;
    return 0;
}

/* "{…}" around a built list; NULL on OOM. */
static char *array_text(struct ah_buf *b) {
    size_t n = b->n;
    char *out = malloc(n + 3);
    if (!out)
        return NULL;
    out[0] = '{';
    if (n)
        memcpy(out + 1, b->p, n);
    out[n + 1] = '}';
    out[n + 2] = '\0';
    return out;
}

static int insert_rows(struct pgs_conn *c, struct batch_rows *rows) {
    if (!rows->n)
        return 0;
    PGresult *r = PQexec(c->db, "COPY events (tenant_id, session_id, seq, type, level, ts,"
                                " payload) FROM STDIN");
    if (!r || PQresultStatus(r) != PGRES_COPY_IN) {
        int rc = store_pg_code(r);
        PQclear(r);
        return rc;
    }
    PQclear(r);
    int rc = 0;
    /* in pieces: PQputCopyData takes an int length */
    for (size_t off = 0; off < rows->copy.n && rc == 0;) {
        size_t len = rows->copy.n - off < ((size_t)1 << 20) ? rows->copy.n - off : (size_t)1 << 20;
        if (PQputCopyData(c->db, rows->copy.p + off, (int)len) != 1)
            rc = AH_E_UNAVAIL;
        off += len;
    }
    if (PQputCopyEnd(c->db, rc == 0 ? NULL : "ah: batch abandoned") != 1 && rc == 0)
        rc = AH_E_UNAVAIL;
    while ((r = PQgetResult(c->db))) { /* the COPY's outcome, then NULL */
        if (PQresultStatus(r) != PGRES_COMMAND_OK && rc == 0)
            rc = store_pg_code(r);
        PQclear(r);
    }
    return rc;
}

static int flush_sessions(struct pgs_conn *c, const char *origin,
                          const struct batch_session *bs, size_t n) {
    struct ah_buf t = {.max = ARRAY_MAX}, d = {.max = ARRAY_MAX}, seq = {0}, rseq = {0};
    int rc = 0;
    size_t dirty = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!bs[i].dirty)
            continue;
        dirty++;
        if ((rc = store_pg_array_add(&t, bs[i].tenant)) == 0 &&
            (rc = store_pg_array_add(&d, bs[i].id)) == 0 &&
            (rc = store_pg_array_add_int(&seq, bs[i].last_seq)) == 0)
            rc = store_pg_array_add_int(&rseq, bs[i].rseq);
    }
    char *texts[4] = {0};
    if (rc == 0 && dirty) {
        struct ah_buf *cols[] = {&t, &d, &seq, &rseq};
        struct pgs_args a = {0};
        for (size_t i = 0; i < 4; i++) {
            if (!(texts[i] = array_text(cols[i])))
                rc = AH_E_NOMEM;
            store_pg_arg_text(&a, texts[i]);
        }
        store_pg_arg_text(&a, origin);
        /* the counters, and one notice per session for other processes (sent at COMMIT) */
        if (rc == 0)
            rc = store_pg_do(c,
                             "WITH done AS (UPDATE sessions s SET last_seq = u.last_seq,"
                             " recorder_rseq = u.rseq FROM unnest($1::text[], $2::text[],"
                             " $3::bigint[], $4::bigint[]) AS u(tenant_id, id, last_seq, rseq)"
                             " WHERE s.tenant_id = u.tenant_id AND s.id = u.id"
                             " RETURNING s.tenant_id, s.id, s.last_seq)"
                             " SELECT pg_notify('" PGS_CHANNEL "', $5::text || E'\\t' ||"
                             " tenant_id || E'\\t' || id || E'\\t' || last_seq) FROM done",
                             &a, NULL);
    }
    for (size_t i = 0; i < 4; i++)
        free(texts[i]);
    ah_buf_clear(&t);
    ah_buf_clear(&d);
    ah_buf_clear(&seq);
    ah_buf_clear(&rseq);
    return rc;
}

int store_pg_apply(void *impl, struct store_op *ops, size_t n) {
    struct pgs *s = impl;
    for (size_t i = 0; i < n; i++) {
        ops[i].result = 0;
        ops[i].seq = 0;
        ops[i].stored = NULL;
        ops[i].terminal = false;
    }
    struct batch_session *bs = NULL;
    size_t n_bs = 0;
    struct batch_rows rows = {.copy.max = ARRAY_MAX};
    int rc = collect_sessions(ops, n, &bs, &n_bs);
    struct pgs_conn *c = rc == 0 ? store_pg_acquire(s) : NULL;
    if (rc == 0 && !c)
        rc = AH_E_UNAVAIL;
    if (rc == 0)
        rc = store_pg_exec(c, "BEGIN");
    if (rc == 0)
        rc = lock_sessions(c, bs, n_bs);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = apply_one(c, bs, n_bs, &rows, &ops[i]);
    if (rc == 0)
        rc = insert_rows(c, &rows);
    if (rc == 0)
        rc = flush_sessions(c, s->origin, bs, n_bs);
    if (rc == 0) /* D37: the audit records of the stored ops commit with them */
        rc = store_pg_audit_ops(c, ops, n);
    if (rc == 0)
        rc = store_pg_exec(c, "COMMIT");
    if (rc == AH_E_EXISTS) /* D45: a duplicate (session, seq) is a bug of ours: say so */
        log_msg(LOG_WARN, "store: a batch of %zu ops broke a constraint (a duplicate seq?)", n);
    store_pg_release(s, c);
    ah_buf_clear(&rows.copy);
    free(bs);
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
    " WHERE tenant_id = $1 AND session_id = $2 AND seq > $3"                                       \
    " AND ($4::json IS NULL OR type IN (SELECT json_array_elements_text($4::json)))"               \
    " AND ($5::text IS NULL OR level = $5) AND ($6::bigint = 0 OR ts >= $6)"                        \
    " AND ($7::bigint = 0 OR ts <= $7)"

static int bind_event_filter(struct pgs_args *a, const char *tenant, const char *session_id,
                             const struct event_filter *f, char **types_json) {
    if (f->types && !*types_json) {
        json_t *arr = json_array();
        for (const char *const *t = f->types; arr && *t; t++)
            json_array_append_new(arr, json_string(*t));
        *types_json = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
        json_decref(arr);
        if (!*types_json)
            return AH_E_NOMEM;
    }
    store_pg_arg_text(a, tenant);
    store_pg_arg_text(a, session_id);
    store_pg_arg_int(a, f->after);
    store_pg_arg_text(a, *types_json);
    store_pg_arg_text(a, f->level);
    store_pg_arg_int(a, f->since);
    store_pg_arg_int(a, f->until);
    return 0;
}

int store_pg_event_list(void *impl, const char *tenant, const char *session_id,
                        const struct event_filter *f, const struct page *pg, json_t **ret_items,
                        int64_t *ret_total) {
    struct pgs *s = impl;
    AH_AUTOFREE char *types = NULL;
    AH_AUTO(json_decrefp) json_t *items = json_array();
    if (!items)
        return AH_E_NOMEM;
    struct pgs_conn *c = store_pg_acquire(s);
    if (!c)
        return AH_E_UNAVAIL;
    int64_t total = 0;
    PGresult *r = NULL;
    /* One snapshot, so the count and the page agree. */
    int rc = store_pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (rc == 0) {
        struct pgs_args a = {0};
        if ((rc = bind_event_filter(&a, tenant, session_id, f, &types)) == 0 &&
            (r = store_pg_run(c, "SELECT count(*) FROM events" EVENT_WHERE, &a, &rc))) {
            total = store_pg_int(r, 0, 0);
            PQclear(r);
        }
    }
    if (rc == 0) {
        struct pgs_args a = {0};
        bind_event_filter(&a, tenant, session_id, f, &types);
        store_pg_arg_int(&a, pg->per_page);
        store_pg_arg_int(&a, page_offset(pg));
        r = store_pg_run(c,
                         f->ascending ? "SELECT payload FROM events" EVENT_WHERE
                                        " ORDER BY seq ASC LIMIT $8 OFFSET $9"
                                      : "SELECT payload FROM events" EVENT_WHERE
                                        " ORDER BY seq DESC LIMIT $8 OFFSET $9",
                         &a, &rc);
        for (int i = 0; r && rc == 0 && i < PQntuples(r); i++) {
            json_t *e = json_loads(PQgetvalue(r, i, 0), 0, NULL);
            if (!e || json_array_append_new(items, e) < 0)
                rc = AH_E_NOMEM;
        }
        PQclear(r);
    }
    if (rc == 0)
        rc = store_pg_exec(c, "COMMIT");
    store_pg_release(s, c); /* rolls back when the transaction is still open */
    if (rc < 0)
        return rc;
    *ret_items = AH_TAKE(items);
    *ret_total = total;
    return 0;
}

int store_pg_event_range(void *impl, const char *tenant, const char *session_id, int64_t after,
                         size_t limit, char ***ret_json, int64_t **ret_seq, size_t *ret_n) {
    struct pgs *s = impl;
    char **texts = calloc(limit ? limit : 1, sizeof(char *));
    int64_t *seqs = calloc(limit ? limit : 1, sizeof(int64_t));
    if (!texts || !seqs) {
        free(texts);
        free(seqs);
        return AH_E_NOMEM;
    }
    struct pgs_conn *c = store_pg_acquire(s);
    size_t n = 0;
    int rc = c ? 0 : AH_E_UNAVAIL;
    if (c) {
        struct pgs_args a = {0};
        store_pg_arg_text(&a, tenant);
        store_pg_arg_text(&a, session_id);
        store_pg_arg_int(&a, after);
        store_pg_arg_int(&a, (int64_t)limit);
        PGresult *r = store_pg_run(c,
                                   "SELECT seq, payload FROM events WHERE tenant_id = $1"
                                   " AND session_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                                   &a, &rc);
        for (int i = 0; r && i < PQntuples(r) && n < limit; i++) {
            seqs[n] = store_pg_int(r, i, 0);
            if (!(texts[n] = strdup(PQgetvalue(r, i, 1)))) {
                rc = AH_E_NOMEM;
                break;
            }
            n++;
        }
        PQclear(r);
        store_pg_release(s, c);
    }
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
