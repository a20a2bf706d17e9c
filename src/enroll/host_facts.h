/*
 * host_facts.h — what an executor tells its access point about itself (CLI-and-enrollment
 * §5.4): the Hello it sends once per connection (identity, version, labels, tags, resources,
 * host facts, snapshot providers, runtimes, installed agents) and the Heartbeat it sends every
 * interval (load, memory, disk, free slots, running sessions, health checks).
 *
 * Field names on the wire are snake_case as §5.4 names them; every frame is one JSON object
 * with a "type" (D41). The host is detected once by host_facts_new (cores, memory, OS, kernel,
 * arch, snapshot providers); what changes (load, free memory and disk) is read on each
 * heartbeat, from /proc and statvfs only, so building a frame never blocks.
 *
 * Threading: host_facts_hello/heartbeat from one thread (the link's); host_facts_set_running
 * from any thread.
 */
#ifndef AH_ENROLL_HOST_FACTS_H
#define AH_ENROLL_HOST_FACTS_H

#include <stdint.h>

#include "../core/core.h"

struct agent_catalog; /* exec/catalog.h: the detection GET /agents uses */

#define HOST_FACTS_MAX_LABELS 64
#define HOST_FACTS_MAX_TAGS 64
#define HOST_FACTS_MAX_RESOURCES_BYTES (64 * 1024) /* --resources text or --resources-file */

struct host_facts_config {
    const char *name;              /* --name; NULL: the last segment of the SPIFFE id */
    const char *version;           /* this ah's version */
    const char *const *labels;     /* --labels "key=value" each, NULL-terminated; may be NULL */
    const char *const *tags;       /* --tags, NULL-terminated; may be NULL */
    const char *resources_json;    /* --resources: one JSON object, or NULL */
    const char *resources_file;    /* --resources-file: a file holding one JSON object, or NULL */
    int64_t max_concurrent;        /* --max-concurrent-tasks; < 0: auto (online cores) */
    const char *data_dir;          /* workspaces live here: disk is measured here (NULL: ".") */
    int64_t heartbeat_ms;          /* the interval this executor heartbeats at (0: 5000) */
    struct agent_catalog *catalog; /* borrowed (must outlive hf); NULL: no agents reported */
};
struct host_facts;

/* Checks cfg — every label is key=value with a key of [A-Za-z0-9._/-], at most 63 bytes, no
 * duplicate; tags are non-empty printable words; --resources and --resources-file (not both)
 * hold one JSON object of at most HOST_FACTS_MAX_RESOURCES_BYTES — and detects the host.
 * 0, or AH_E_INVAL (AH_E_NOTFOUND for a missing file) with reterr saying which flag and why;
 * AH_E_NOMEM. */
int host_facts_new(const struct host_facts_config *cfg, struct host_facts **ret,
                   struct ah_problem *reterr);
void host_facts_free(struct host_facts *hf); /* NULL-safe */

/* The Hello frame (caller owns): {type:"Hello", executor_id, name, version, labels, tags,
 * heartbeat_interval_ms, max_concurrent_tasks, resources, host, snapshot_providers, runtimes,
 * agents}. executor_id is the SPIFFE id of this executor's certificate. NULL on OOM. */
json_t *host_facts_hello(struct host_facts *hf, const char *executor_id);
/* The Heartbeat frame (caller owns): {type:"Heartbeat", timestamp, uptime_ms, load, memory,
 * disk, free_slots, running, sessions, health_checks}. NULL on OOM. */
json_t *host_facts_heartbeat(struct host_facts *hf);
/* How many sessions this executor runs now for its access point (thread-safe). */
void host_facts_set_running(struct host_facts *hf, int64_t running);
int64_t host_facts_running(struct host_facts *hf);
/* One budget for the machine (`--rest-api yes`): others(arg) is how many sessions the
 * executor's own REST API runs now; heartbeats report running = both, free_slots = capacity
 * minus both. changed(arg) is called (from the thread of host_facts_set_running) whenever this
 * executor's own count changes. Both must not block. Set before the link starts. */
void host_facts_share(struct host_facts *hf, int64_t (*others)(void *arg),
                      void (*changed)(void *arg), void *arg);
/* The agent catalog the Hello lists agents from: set it (borrowed, must outlive hf) before the
 * link starts when it exists only after host_facts_new (`--rest-api yes`: the REST API's). */
void host_facts_set_catalog(struct host_facts *hf, struct agent_catalog *catalog);
struct agent_catalog *host_facts_catalog(const struct host_facts *hf); /* may be NULL */
/* The slots this executor offers (max concurrent sessions after auto-detection). */
int64_t host_facts_capacity(const struct host_facts *hf);

/* Parses "key=value" labels into an object (caller owns). Shared by the CLI and the access
 * point's checks. 0, or AH_E_INVAL with reterr naming the bad label; AH_E_NOMEM. */
int host_facts_parse_labels(const char *const *labels, json_t **ret, struct ah_problem *reterr);
/* True when s is a valid label key (what the access point accepts too). */
bool host_facts_label_key_ok(const char *s);

#endif
