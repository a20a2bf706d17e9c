/*
 * fleet.h — the access point's view of its executors (issue 16, D41–D44): who enrolled, what
 * they said about themselves (Hello), how they are doing (Heartbeat), whether an admin drained
 * them; and placement (D43), the pure choice of where a session runs.
 *
 * The transport (QUIC, its own event-loop thread) reports what arrives on each executor's
 * control stream through fleet_on_hello / fleet_on_heartbeat / fleet_on_gone; HTTP handlers read
 * and change the fleet concurrently. One mutex guards the registry; no call waits on the network.
 * The store keeps one row per executor (written on Hello, drain, removal, and at most every
 * FLEET_PERSIST_EVERY heartbeats), so a restarted access point lists its fleet, offline until
 * each executor reconnects.
 *
 * Health is computed when read, from the time of the last heartbeat, so an executor that went
 * silent (killed, network cut) turns offline without any call:
 *   online    connected, heartbeats on time, every health check ok
 *   degraded  connected, but a heartbeat is late (over 1.5 intervals) or a check is failing
 *   offline   `missed_offline` intervals without a heartbeat, or the connection ended
 */
#ifndef AH_ENROLL_FLEET_H
#define AH_ENROLL_FLEET_H

#include <stdint.h>

#include "../core/core.h"

struct store;

#define FLEET_MAX_EXECUTORS 10000   /* a Hello past this many known executors is refused */
#define FLEET_PERSIST_EVERY 12      /* heartbeats between two last-seen writes */
#define FLEET_HELLO_MAX_BYTES 65536 /* a larger Hello (as JSON text) is refused */

struct fleet_config {
    struct store *store;  /* borrowed, outlives the fleet; NULL: memory only */
    int64_t heartbeat_ms; /* interval when a Hello announces none; 0 = 5000 */
    int missed_offline;   /* intervals without a heartbeat before offline; 0 = 3 */
};
struct fleet;

/* Loads the recorded executors (all offline). 0, or AH_E_* with reterr. */
int fleet_new(const struct fleet_config *cfg, struct fleet **ret, struct ah_problem *reterr);
void fleet_free(struct fleet *f); /* NULL-safe */

/* ---- the transport's calls ------------------------------------------------------------------ */

/* A connection proved spiffe_id (its certificate's URI SAN, allow-listed by the transport) and
 * sent `hello` (lent). 0 and *ret_ack, the Ack frame to answer with (caller owns); or
 * AH_E_INVAL with reterr->detail when the Hello is malformed or names another executor_id
 * (close the link, log the detail); AH_E_TOOLARGE / AH_E_UNAVAIL (fleet full) likewise. A Hello
 * of a known executor replaces its facts; its drained flag stays. */
int fleet_on_hello(struct fleet *f, const char *spiffe_id, const json_t *hello, json_t **ret_ack,
                   struct ah_problem *reterr);
/* A Heartbeat (lent). 0 and *ret_ack when ret_ack is not NULL; AH_E_NOTFOUND when this id never
 * said Hello since the access point started, or an admin removed it meanwhile: the transport
 * closes the link then (Goodbye, reason "removed"); AH_E_INVAL for a malformed one (log it). */
int fleet_on_heartbeat(struct fleet *f, const char *spiffe_id, const json_t *hb,
                       json_t **ret_ack);
/* The connection ended: a Goodbye (reason: its text) or a transport loss (reason: what
 * happened). Offline at once. Unknown ids are ignored. */
void fleet_on_gone(struct fleet *f, const char *spiffe_id, const char *reason);

/* ---- the REST API's calls ------------------------------------------------------------------- */

/* Every executor as GET /executors shows it (caller owns the array). NULL on OOM. */
json_t *fleet_list_json(struct fleet *f);
/* One executor by its SPIFFE id or its name (the last segment of the id). AH_E_NOTFOUND. */
int fleet_get_json(struct fleet *f, const char *key, json_t **ret);
/* Marks the executor drained (it gets no new sessions; running ones go on), recorded in the
 * store. *ret_id (caller frees) is its SPIFFE id. AH_E_NOTFOUND; a store error. */
int fleet_drain(struct fleet *f, const char *key, char **ret_id);
/* Forgets the executor: its row and its entry. A connected one is told to leave on its next
 * heartbeat (fleet_on_heartbeat answers AH_E_NOTFOUND). AH_E_NOTFOUND; a store error. */
int fleet_remove(struct fleet *f, const char *key, char **ret_id);

/* ---- placement (D43) ------------------------------------------------------------------------ */

/* One place a session can run: the local runner or an executor, as placement sees it. */
struct place_runner {
    char *id;           /* "local" or the SPIFFE id */
    char *name;         /* "local" or the executor's name */
    bool local;
    bool online;        /* health online or degraded */
    bool drained;
    int64_t capacity;   /* sessions at once */
    int64_t running;    /* sessions it runs now */
    json_t *labels;     /* object (may be empty) */
    json_t *runtimes;   /* array of runtime types; NULL: any */
    json_t *agents;     /* array of agent types; NULL: any */
};
struct place_request {
    const char *tenant;
    const char *pin;          /* workspace.executionHostId: an id or a name; NULL: none */
    const json_t *labels;     /* the task's labels (object) or NULL */
    const char *runtime;      /* runtime.type */
    const char *agent;        /* the session's agent type */
    int64_t tenant_running;   /* the tenant's sessions running now (all runners) */
    int64_t tenant_max;       /* admission: at most this many per tenant; 0: no limit */
};
struct place_result {
    int index;        /* the chosen runner (busy when `waiting`), or -1 when none fits */
    bool waiting;     /* no free slot now (the chosen runner is full, or the tenant is at its
                         limit, or the pinned runner is offline): try again later */
    char reason[320]; /* why none was chosen (index -1), in words for the session */
};
/* Chooses where the session of rq runs among runners[0..n) (D43):
 *  - pinned by rq->pin (a runner's id or name) or by the task's labels — every label key that
 *    some runner advertises must match; keys no runner knows are plain annotations;
 *  - otherwise any runner that is online, not drained, and supports the runtime and the agent;
 *  - among those the one with the most free slots (ties: the earlier runner, so the local
 *    runner when listed first); when every fitting runner is full, the first of them, waiting;
 *  - a tenant at tenant_max waits (index -1); so does a session pinned to an offline runner.
 * reason is filled whenever the session cannot start now (waiting or index -1).
 * Pure: no I/O, no clock. Always fills *ret. */
void placement_choose(const struct place_request *rq, const struct place_runner *runners,
                      size_t n, struct place_result *ret);
/* The fleet's executors as runners (caller frees with place_runners_free). 0 or AH_E_NOMEM. */
int fleet_runners(struct fleet *f, struct place_runner **ret, size_t *ret_n);
void place_runners_free(struct place_runner *r, size_t n);
/* How many executors are known (any health). */
size_t fleet_count(struct fleet *f);
/* Does a known executor (any health) report agent `type` installed (its Hello's agents)? */
bool fleet_has_agent(struct fleet *f, const char *type);

/* Fairness between tenants (D43 "per-tenant fairness"): among queued sessions of several
 * tenants, the index of the one to admit next — the oldest session of the tenant with the fewest
 * sessions running. tenants[i] is session i's tenant (in queue order), running(tenant) counts.
 * -1 when n is 0. Pure. */
int placement_fair_next(const char *const *tenants, size_t n,
                        int64_t (*running)(void *arg, const char *tenant), void *arg);

#endif
