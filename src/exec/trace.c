/*
 * trace.c — D48 across the scheduler: the traceparent of the request that created a session is
 * noted here and handed to the session's processes (recorder, agent) as TRACEPARENT when the
 * scheduler starts them, so their work joins the caller's trace.
 *
 * A small direct-mapped table in memory (a slot per hash of the session id, one mutex): a
 * session started after a restart, or whose slot was taken by a later one before it was
 * scheduled, starts without a parent. Nothing here is needed for a session to run.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "exec.h"

#define TRACE_SLOTS 256

static struct {
    char id[ULID_LEN + 1];
    char tp[56];
} table[TRACE_SLOTS];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static size_t slot(const char *id) {
    uint64_t h = 1469598103934665603ULL;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ULL;
    return (size_t)(h % TRACE_SLOTS);
}

void exec_trace_note(const char *session_id, const char *traceparent) {
    if (!session_id || !traceparent || strlen(session_id) > ULID_LEN || strlen(traceparent) > 55)
        return;
    pthread_mutex_lock(&mu);
    size_t s = slot(session_id);
    snprintf(table[s].id, sizeof(table[s].id), "%s", session_id);
    snprintf(table[s].tp, sizeof(table[s].tp), "%s", traceparent);
    pthread_mutex_unlock(&mu);
}

bool exec_trace_peek(const char *session_id, char out[56]) {
    bool found = false;
    pthread_mutex_lock(&mu);
    size_t s = slot(session_id);
    if (strcmp(table[s].id, session_id) == 0) {
        memcpy(out, table[s].tp, 56);
        found = true;
    }
    pthread_mutex_unlock(&mu);
    return found;
}

bool exec_trace_take(const char *session_id, char out[56]) {
    bool found = false;
    pthread_mutex_lock(&mu);
    size_t s = slot(session_id);
    if (strcmp(table[s].id, session_id) == 0) {
        memcpy(out, table[s].tp, 56);
        table[s].id[0] = 0;
        found = true;
    }
    pthread_mutex_unlock(&mu);
    return found;
}
