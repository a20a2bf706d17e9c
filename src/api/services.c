/*
 * services.c — starting and stopping what the handlers stand on: the store, the bus writer and
 * the executor, in that order, and stopping them in the reverse one. Shared by the daemon and
 * the in-process task manager (local.c).
 */
#include <string.h>

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
    if ((rc = bus_new(sv.store, &sv.bus)) < 0) {
        problem_set(reterr, rc, "cannot start the event writer");
        api_services_stop(&sv);
        return rc;
    }
    if ((rc = exec_new(ec, sv.store, sv.bus, &sv.exec, reterr)) < 0 ||
        (rc = exec_start(sv.exec, reterr)) < 0) {
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
    store_close(sv->store);
    sv->store = NULL;
    sv->bus = NULL;
    sv->exec = NULL;
}
