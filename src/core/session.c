/*
 * session.c — the session state machine (D13, D15) as a table.
 *
 *                 POST /tasks
 *                      │
 *                  [queued] ── scheduler admits (sched_admit) ──▶ [provisioning]
 *                      │                                              │ workspace ready and
 *                      │                                              │ agent spawned (sup_start)
 *                      │                                              ▼
 *     [resuming] ◀── resume ── [paused] ◀── SIGSTOP done ── [pausing] ◀── pause ── [running]
 *          │  SIGCONT done                                                          │ │ │
 *          └──────────────────────────────────▶ [running]                           │ │ │
 *                                                                                    │ │ │
 *   running|paused ── stop (SIGTERM, grace, SIGKILL) ──▶ [stopping] ── exit ──▶ [stopped]
 *   queued|provisioning ── stop (exec_control: provisioning abandoned) ──▶ [stopped]
 *   running ── agent exits 0 ──▶ [completed]
 *   provisioning|running ── error or non-zero exit ──▶ [failed]
 *   pausing|paused|resuming|stopping ── process lost on restart (D15) ──▶ [failed]
 *   any non-terminal ── DELETE (SIGKILL) ──▶ [cancelled]
 *
 * Terminal: stopped, completed, failed, cancelled. The functions named above live in exec/;
 * every one of them asks session_transition_legal first, and every transition becomes a `status`
 * event. D13 lists provisioning|running → failed; D15 adds that a server restart fails any
 * started session whose recorder is gone, whatever transient state it was in, so the table also
 * allows pausing|paused|resuming|stopping → failed.
 */
#include <string.h>

#include "core.h"

static const char *const names[SESSION_STATUS_COUNT] = {
#define NAME_(name, str) [name] = str,
    SESSION_STATUSES(NAME_)
#undef NAME_
};

#define T(from, to) [from][to] = true
static const bool legal[SESSION_STATUS_COUNT][SESSION_STATUS_COUNT] = {
    T(SESSION_QUEUED, SESSION_PROVISIONING),
    T(SESSION_PROVISIONING, SESSION_RUNNING),
    T(SESSION_PROVISIONING, SESSION_QUEUED), /* its executor was lost before it started (D44) */
    T(SESSION_RUNNING, SESSION_PAUSING),
    T(SESSION_PAUSING, SESSION_PAUSED),
    T(SESSION_PAUSED, SESSION_RESUMING),
    T(SESSION_RESUMING, SESSION_RUNNING),
    T(SESSION_RUNNING, SESSION_STOPPING),
    T(SESSION_PAUSED, SESSION_STOPPING),
    T(SESSION_STOPPING, SESSION_STOPPED),
    T(SESSION_QUEUED, SESSION_STOPPED),       /* nothing runs yet: stop ends it at once (D13) */
    T(SESSION_PROVISIONING, SESSION_STOPPED), /* provisioning abandoned, workspace removed */
    T(SESSION_RUNNING, SESSION_COMPLETED),
    /* the agent finished its work as a pause or resume was under way: a SIGSTOP that came too
     * late, or an exit right after the SIGCONT, before `running` was stored again */
    T(SESSION_PAUSING, SESSION_COMPLETED),
    T(SESSION_RESUMING, SESSION_COMPLETED),
    T(SESSION_PROVISIONING, SESSION_FAILED),
    T(SESSION_RUNNING, SESSION_FAILED),
    T(SESSION_PAUSING, SESSION_FAILED),
    T(SESSION_PAUSED, SESSION_FAILED),
    T(SESSION_RESUMING, SESSION_FAILED),
    T(SESSION_STOPPING, SESSION_FAILED),
    T(SESSION_QUEUED, SESSION_CANCELLED),
    T(SESSION_PROVISIONING, SESSION_CANCELLED),
    T(SESSION_RUNNING, SESSION_CANCELLED),
    T(SESSION_PAUSING, SESSION_CANCELLED),
    T(SESSION_PAUSED, SESSION_CANCELLED),
    T(SESSION_RESUMING, SESSION_CANCELLED),
    T(SESSION_STOPPING, SESSION_CANCELLED),
};
#undef T

const char *session_status_name(enum session_status s) {
    return (unsigned)s < SESSION_STATUS_COUNT ? names[s] : "unknown";
}

int session_status_parse(const char *s, enum session_status *ret) {
    for (int i = 0; s && i < SESSION_STATUS_COUNT; i++)
        if (strcmp(s, names[i]) == 0) {
            *ret = (enum session_status)i;
            return 0;
        }
    return AH_E_INVAL;
}

bool session_status_terminal(enum session_status s) {
    return s == SESSION_STOPPED || s == SESSION_COMPLETED || s == SESSION_FAILED ||
           s == SESSION_CANCELLED;
}

bool session_status_active(enum session_status s) {
    return (unsigned)s < SESSION_STATUS_COUNT && !session_status_terminal(s);
}

bool session_transition_legal(enum session_status from, enum session_status to) {
    if ((unsigned)from >= SESSION_STATUS_COUNT || (unsigned)to >= SESSION_STATUS_COUNT)
        return false;
    return legal[from][to];
}
