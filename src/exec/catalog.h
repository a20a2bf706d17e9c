/*
 * catalog.h — what this server can run, for GET /agents and GET /executors (API.md §7.11):
 * the agent types (built in, and custom ones from configuration) with the version of each CLI
 * found on PATH, and the local executor.
 *
 * Versions are detected by running `<binary> --version`, which can take seconds or hang: that
 * happens on the catalog's own thread (at start, then again every CATALOG_TTL_MS), each run
 * within a timeout, never on an HTTP thread. Until a binary has been checked the catalog says
 * so (`installed: null`, `version: null`); handlers only read the cache.
 */
#ifndef AH_EXEC_CATALOG_H
#define AH_EXEC_CATALOG_H

#include "exec.h"

#define CATALOG_TTL_MS (10LL * 60 * 1000)  /* versions are checked again after this */
#define CATALOG_VERSION_TIMEOUT_MS 5000    /* one `--version` run */

struct agent_catalog;

/* Copies what it needs from cfg (the custom agents) and starts the detection thread. */
int agent_catalog_new(const struct exec_config *cfg, struct agent_catalog **ret);
/* Stops the thread (a `--version` still running is killed) and frees. NULL-safe. */
void agent_catalog_free(struct agent_catalog *c);
/* The items of GET /agents: one object per type, in a stable order (built-in types first).
 * `scripted` is part of this server and reports server_version. NULL on OOM. */
json_t *agent_catalog_items(struct agent_catalog *c, const char *server_version);
/* Is `type` the exact name of a custom agent from configuration? (They win over the display
 * aliases of D25.) */
bool agent_catalog_is_custom(const struct agent_catalog *c, const char *type);
/* Blocks until every binary has been checked once or timeout_ms passes (tests, tools). */
bool agent_catalog_wait(struct agent_catalog *c, int64_t timeout_ms);

/* The local executor as GET /executors lists it: id "local", os, arch, snapshotCapabilities,
 * health, status "online", capacity (max concurrent sessions) and running (sessions admitted
 * now). NULL on OOM. */
json_t *exec_local_executor(struct executor *ex);

#endif
