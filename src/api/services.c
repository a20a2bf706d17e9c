/*
 * services.c — starting and stopping what the handlers stand on: the store, the bus writer and
 * the executor, in that order, and stopping them in the reverse one. Shared by the daemon and
 * the in-process task manager (local.c).
 */
#include <string.h>

#include "../enroll/fleet.h"
#include "../enroll/remote_ap.h"
#include "../exec/catalog.h"
#include "api.h"

int api_services_start(const char *db, const struct exec_config *ec, struct api_services *ret,
                       struct ah_problem *reterr) {
    struct api_services sv = {0};
    int rc = store_open(db, &sv.store, reterr);
    if (rc < 0) { /* the database's own failures name it; the executor's below do not */
        char detail[sizeof(reterr->detail)];
        AH_AUTOFREE char *shown = text_redact_userinfo(db); /* D29: a postgres:// password */
        snprintf(detail, sizeof(detail), "%s: %s", shown ? shown : "the database", reterr->detail);
        memcpy(reterr->detail, detail, sizeof(detail));
        return rc;
    }
    int version = 0, applied = 0;
    store_schema_version(sv.store, &version, &applied);
    json_t *f = json_pack("{s:i, s:i}", "schema_version", version, "migrations_applied", applied);
    log_json(LOG_INFO, "store open", f);
    json_decref(f);
    /* the fleet before the executor: placement (D43) consults it from the first schedule on */
    if ((rc = fleet_new(&(struct fleet_config){.store = sv.store}, &sv.fleet, reterr)) < 0) {
        api_services_stop(&sv);
        return rc;
    }
    if ((rc = bus_new(sv.store, &sv.bus)) < 0) {
        problem_set(reterr, rc, "cannot start the event writer");
        api_services_stop(&sv);
        return rc;
    }
    struct exec_config ec_placed = *ec;
    if (!(sv.placer = calloc(1, sizeof(*sv.placer)))) {
        problem_set(reterr, AH_E_NOMEM, "out of memory");
        api_services_stop(&sv);
        return AH_E_NOMEM;
    }
    sv.placer->fleet = sv.fleet;
    ec_placed.place_local = api_place_local;
    ec_placed.place = api_place;
    ec_placed.remote_possible = api_remote_possible;
    ec_placed.place_arg = sv.placer;
    ec_placed.fair_next = placement_fair_next;
    if ((rc = remote_ap_new(&sv.remote)) < 0) {
        problem_set(reterr, rc, "out of memory");
        api_services_stop(&sv);
        return rc;
    }
    ec_placed.remote_launch = remote_ap_launch;
    ec_placed.remote_signal = remote_ap_signal;
    ec_placed.remote_arg = sv.remote;
    if ((rc = exec_new(&ec_placed, sv.store, sv.bus, &sv.exec, reterr)) < 0 ||
        ((sv.placer->exec = sv.exec), remote_ap_set_exec(sv.remote, sv.exec),
         (rc = exec_start(sv.exec, reterr)) < 0)) {
        api_services_stop(&sv);
        return rc;
    }
    if ((rc = agent_catalog_new(ec, &sv.catalog)) < 0) {
        problem_set(reterr, rc, "cannot start the agent catalog");
        api_services_stop(&sv);
        return rc;
    }
    *ret = sv;
    return 0;
}

void api_services_stop(struct api_services *sv) {
    agent_catalog_free(sv->catalog); /* kills a --version still running */
    sv->catalog = NULL;
    exec_stop(sv->exec);
    bus_free(sv->bus);
    exec_free(sv->exec);
    fleet_free(sv->fleet);
    sv->fleet = NULL;
    remote_ap_free(sv->remote);
    sv->remote = NULL;
    free(sv->placer);
    sv->placer = NULL;
    store_close(sv->store);
    sv->store = NULL;
    sv->bus = NULL;
    sv->exec = NULL;
}
