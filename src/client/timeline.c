/*
 * timeline.c — libah-client calls for a session's timeline (API.md §7.8): the timeline, manual
 * snapshots and moments, seek (a read-only view of a point) and branches. Like files.c, answers
 * are handed over as the server's JSON text: the shapes are wide and mostly passed on.
 */
#include <jansson.h>
#include <string.h>

#include "client_internal.h"

#define SEEK_WAIT_MS (10 * 60 * 1000) /* a view of a very large workspace takes a while */

static int bad(struct ah_api_error *reterr, const char *what) {
    problem_local(reterr, AH_E_INVAL, "%s", what);
    return AH_E_INVAL;
}

/* METHOD /api/v1/sessions/<id>/<what> with body (a JSON object, stolen; NULL: none). */
static int call(ah_client *c, const char *method, const char *id, const char *what,
                json_t *body, char **ret_json, struct ah_api_error *reterr) {
    struct ah_buf p = {.max = AH_LIMIT_URL};
    int rc = ah_buf_puts(&p, "/api/v1/sessions/") ?: ah_buf_url_escape(&p, id) ?:
             ah_buf_printf(&p, "/%s", what);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (rc == 0 && body && !text)
        rc = AH_E_NOMEM;
    if (rc < 0) {
        ah_buf_clear(&p);
        free(text);
        problem_local(reterr, AH_E_NOMEM, "out of memory");
        return AH_E_NOMEM;
    }
    rc = ah_client_request(c, method, p.p, text, NULL, ret_json, reterr);
    ah_buf_clear(&p);
    free(text);
    return rc;
}

/* Adds the point (one of the three) to body; false when none or more than one is given. */
static bool add_point(json_t *body, const struct ah_timeline_point *at, const char *ts_name) {
    int given = !!at->fs_snapshot_id + !!at->has_ts + (at->seq > 0);
    if (given != 1)
        return false;
    if (at->fs_snapshot_id)
        json_object_set_new(body, "fsSnapshotId", json_string(at->fs_snapshot_id));
    if (at->has_ts)
        json_object_set_new(body, ts_name, json_real(at->ts));
    if (at->seq > 0)
        json_object_set_new(body, "seq", json_integer(at->seq));
    return true;
}

int ah_client_session_timeline(ah_client *c, const char *id, char **ret_json,
                               struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret_json)
        return bad(reterr, "client, id and ret_json are required");
    return call(c, "GET", id, "timeline", NULL, ret_json, reterr);
}

int ah_client_session_snapshots(ah_client *c, const char *id, int limit, char **ret_json,
                                struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret_json || limit < 0 || limit > 200)
        return bad(reterr, "client, id and ret_json are required; limit is 0..200");
    char what[64];
    if (limit)
        snprintf(what, sizeof(what), "fs-snapshots?limit=%d", limit);
    else
        snprintf(what, sizeof(what), "fs-snapshots");
    return call(c, "GET", id, what, NULL, ret_json, reterr);
}

int ah_client_session_snapshot(ah_client *c, const char *id, const char *label,
                               const char *description, char **ret_json,
                               struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret_json)
        return bad(reterr, "client, id and ret_json are required");
    json_t *b = json_object();
    if (b && label)
        json_object_set_new(b, "label", json_string(label));
    if (b && description)
        json_object_set_new(b, "description", json_string(description));
    if (!b) {
        problem_local(reterr, AH_E_NOMEM, "out of memory");
        return AH_E_NOMEM;
    }
    return call(c, "POST", id, "fs-snapshots", b, ret_json, reterr);
}

int ah_client_session_moment(ah_client *c, const char *id, const char *label,
                             const char *description, const char *type, char **ret_json,
                             struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !label || !ret_json)
        return bad(reterr, "client, id, label and ret_json are required");
    json_t *b = json_pack("{s:s}", "label", label);
    if (b && description)
        json_object_set_new(b, "description", json_string(description));
    if (b && type)
        json_object_set_new(b, "type", json_string(type));
    if (!b) {
        problem_local(reterr, AH_E_NOMEM, "out of memory");
        return AH_E_NOMEM;
    }
    return call(c, "POST", id, "moments", b, ret_json, reterr);
}

int ah_client_session_seek(ah_client *c, const char *id, const struct ah_timeline_point *at,
                           char **ret_json, struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !at || !ret_json)
        return bad(reterr, "client, id, at and ret_json are required");
    json_t *b = json_object();
    if (!b) {
        problem_local(reterr, AH_E_NOMEM, "out of memory");
        return AH_E_NOMEM;
    }
    if (!add_point(b, at, "ts")) {
        json_decref(b);
        return bad(reterr, "give exactly one of fs_snapshot_id, ts and seq");
    }
    /* 202 `preparing`: the server writes the view in the background; ask again (each ask a
     * new request, so a new idempotency key) until it is ready, within SEEK_WAIT_MS */
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (!body) {
        problem_local(reterr, AH_E_NOMEM, "out of memory");
        return AH_E_NOMEM;
    }
    int rc;
    int64_t waited = 0, delay = 50;
    for (;;) {
        char *answer = NULL;
        rc = call(c, "POST", id, "seek", json_loads(body, 0, NULL), &answer, reterr);
        json_t *j = rc == 0 ? json_loads(answer, 0, NULL) : NULL;
        bool preparing = j && !strcmp(json_string_value(json_object_get(j, "status")) ?: "",
                                      "preparing");
        json_decref(j);
        if (!preparing || waited >= SEEK_WAIT_MS) {
            if (rc == 0 && preparing) {
                free(answer);
                problem_local(reterr, AH_E_TIMEOUT, "the view is still being made; seek again");
                rc = AH_E_TIMEOUT;
            } else if (rc == 0)
                *ret_json = answer;
            break;
        }
        free(answer);
        cancel_sleep_ms(NULL, delay);
        waited += delay;
        delay = delay * 2 > 1000 ? 1000 : delay * 2;
    }
    free(body);
    return rc;
}

int ah_client_session_branch(ah_client *c, const char *id, const struct ah_branch_spec *spec,
                             char **ret_json, struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !spec || !ret_json)
        return bad(reterr, "client, id, spec and ret_json are required");
    json_t *b = json_object(), *settings = NULL;
    if (!b) {
        problem_local(reterr, AH_E_NOMEM, "out of memory");
        return AH_E_NOMEM;
    }
    if (!add_point(b, &spec->at, "fromTs")) {
        json_decref(b);
        return bad(reterr, "give exactly one of at.fs_snapshot_id, at.ts and at.seq");
    }
    if (spec->settings_json && !(settings = json_loads(spec->settings_json, 0, NULL))) {
        json_decref(b);
        return bad(reterr, "settings_json is not JSON");
    }
    if (spec->name)
        json_object_set_new(b, "name", json_string(spec->name));
    if (spec->injected_message)
        json_object_set_new(b, "injectedMessage", json_string(spec->injected_message));
    if (settings)
        json_object_set_new(b, "agents", json_pack("[{s:o}]", "settings", settings));
    return call(c, "POST", id, "session-branch", b, ret_json, reterr);
}

int ah_client_session_branches(ah_client *c, const char *id, char **ret_json,
                               struct ah_api_error *reterr) {
    if (!c || !client_id_ok(id) || !ret_json)
        return bad(reterr, "client, id and ret_json are required");
    return call(c, "GET", id, "branches", NULL, ret_json, reterr);
}
