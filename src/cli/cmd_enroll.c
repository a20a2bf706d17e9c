/*
 * cmd_enroll.c — `ah agent enroll` (CLI-and-enrollment.md §4): the executor dials the access
 * point over QUIC with mutual TLS (D24, D42), says Hello with its host facts, heartbeats, and
 * reconnects until SIGTERM/SIGINT, when it says Goodbye.
 *
 * The flags of the transport and the identity are here; the host facts (labels, tags,
 * resources, name, max concurrent tasks) come from enroll/host_facts.h.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../enroll/host_facts.h"
#include "../enroll/link.h"
#include "cli.h"

#ifndef AH_VERSION
#define AH_VERSION "0.0.0"
#endif

#define MAX_LIST 64

static const char enroll_usage[] =
    "usage: ah agent enroll --remote-server quic://HOST:PORT [OPTIONS]\n\n"
    "Runs an executor: dials the access point over QUIC with mutual TLS, reports this host,\n"
    "heartbeats, and reconnects until stopped (SIGTERM/SIGINT: Goodbye, then exit 0).\n\n"
    "  --remote-server ADDR      the access point's QUIC address (quic://host:port; env\n"
    "                            AH_REMOTE_SERVER)\n"
    "  --identity MODE           files, exec, insecure; spiffe (the default) and vault are not\n"
    "                            built in to this version\n"
    "  --cert-file, --key-file, --ca-file PATH   [files] PEM certificate, key and CA bundle\n"
    "                            (the certificate's URI SAN: spiffe://<td>/ah/agent/<name>)\n"
    "  --dynamic-cert-cmd CMD    [exec] a command printing the PEM certificate and key\n"
    "  --dynamic-cert-ttl DUR    [exec] rerun it this often (e.g. 30m; default 1h)\n"
    "  --allow-insecure          accept --identity insecure (peer chain not verified; dev only)\n"
    "  --expected-server-id ID   the access point's SPIFFE id (spiffe://<td>/ah/serve)\n"
    "  --server-san LIST         or/and: comma list of dns=NAME, uri=URI, pin=SHA256 (SPKI)\n"
    "  --heartbeat-interval SEC  seconds between heartbeats (default 5; fractions allowed)\n"
    "  --name NAME, --labels K=V,..., --tags T,..., --resources JSON, --resources-file PATH,\n"
    "  --max-concurrent-tasks N, --data-dir DIR   what this executor reports\n"
    "  --log-level LEVEL         debug, info, warn or error";

void cmd_enroll_help(void) {
    puts(enroll_usage);
}

/* "30m", "45s", "500ms", "2h", "1d" or plain seconds → ms; -1 when malformed */
static int64_t parse_duration(const char *s) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0) || !isfinite(v))
        return -1;
    double mult = 1000;
    if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0 || !*end)
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else if (strcmp(end, "d") == 0)
        mult = 86400000;
    else
        return -1;
    double ms = v * mult;
    return ms >= 1 && ms < 1e12 ? (int64_t)ms : -1;
}

/* "a,b,c" → list (pointers into a copy); NULL-terminated */
static int split(char *s, const char **list, size_t max) {
    size_t n = 0;
    for (char *p = s, *save = NULL; (p = strtok_r(p, ",", &save)); p = NULL) {
        if (n + 1 >= max)
            return -1;
        list[n++] = p;
    }
    list[n] = NULL;
    return 0;
}

static json_t *hello_cb(void *ctx, const char *executor_id) {
    return host_facts_hello(ctx, executor_id);
}

static json_t *heartbeat_cb(void *ctx) {
    return host_facts_heartbeat(ctx);
}

int cmd_enroll(int argc, char **argv) {
    const char *remote = getenv("AH_REMOTE_SERVER"), *identity = "spiffe"; /* §4 */
    const char *level = "info", *name = NULL, *resources = NULL, *resources_file = NULL;
    const char *data_dir = NULL;
    char *labels_s = NULL, *tags_s = NULL;
    struct link_client_config cfg = {.heartbeat_ms = 5000};
    int64_t max_concurrent = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cmd_enroll_help();
            return EXIT_OK;
        }
        if (strcmp(a, "--allow-insecure") == 0) {
            cfg.id.allow_insecure = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc) {
            fprintf(stderr, "ah agent enroll: %s '%s' (see ah help agent enroll)\n",
                    strncmp(a, "--", 2) ? "unexpected argument" : "missing value for", a);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--remote-server") == 0)
            remote = v;
        else if (strcmp(a, "--identity") == 0)
            identity = v;
        else if (strcmp(a, "--cert-file") == 0)
            cfg.id.cert_file = v;
        else if (strcmp(a, "--key-file") == 0)
            cfg.id.key_file = v;
        else if (strcmp(a, "--ca-file") == 0)
            cfg.id.ca_file = v;
        else if (strcmp(a, "--dynamic-cert-cmd") == 0)
            cfg.id.cert_cmd = v;
        else if (strcmp(a, "--dynamic-cert-ttl") == 0) {
            if ((cfg.id.cert_ttl_ms = parse_duration(v)) < 0) {
                fprintf(stderr, "ah agent enroll: --dynamic-cert-ttl '%s' is not a duration "
                        "(e.g. 30m, 45s)\n", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--expected-server-id") == 0)
            cfg.expected_server_id = v;
        else if (strcmp(a, "--server-san") == 0)
            cfg.server_san = v;
        else if (strcmp(a, "--heartbeat-interval") == 0) {
            if ((cfg.heartbeat_ms = parse_duration(v)) < 0) {
                fprintf(stderr, "ah agent enroll: --heartbeat-interval '%s' is not a number of "
                        "seconds\n", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--log-level") == 0)
            level = v;
        else if (strcmp(a, "--name") == 0)
            name = v;
        else if (strcmp(a, "--labels") == 0)
            labels_s = (char *)v;
        else if (strcmp(a, "--tags") == 0)
            tags_s = (char *)v;
        else if (strcmp(a, "--resources") == 0)
            resources = v;
        else if (strcmp(a, "--resources-file") == 0)
            resources_file = v;
        else if (strcmp(a, "--data-dir") == 0)
            data_dir = v;
        else if (strcmp(a, "--max-concurrent-tasks") == 0) {
            char *end = NULL;
            max_concurrent = strtoll(v, &end, 10);
            if (*end || max_concurrent < 0 || max_concurrent > 100000) {
                fprintf(stderr, "ah agent enroll: --max-concurrent-tasks '%s' is not 0..100000\n",
                        v);
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "ah agent enroll: unknown option '%s' (see ah help agent enroll)\n",
                    a);
            return EXIT_USAGE;
        }
    }
    enum log_level ll;
    if (log_level_parse(level, &ll) < 0) {
        fprintf(stderr, "ah agent enroll: --log-level '%s' is not debug, info, warn or error\n",
                level);
        return EXIT_USAGE;
    }
    log_setup(2, ll);
    char host[256];
    int port = 0;
    if (!remote || link_parse_address(remote, 443, host, sizeof(host), &port) < 0) {
        fprintf(stderr, "ah agent enroll: --remote-server %s%s%s is needed as quic://HOST:PORT\n",
                remote ? "'" : "", remote ? remote : "", remote ? "'" : "");
        return EXIT_USAGE;
    }
    cfg.host = host;
    cfg.port = port;
    cfg.id.provider = identity;
    char err[512];
    int rc = link_identity_check(&cfg.id, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "ah agent enroll: %s\n", err);
        return rc == AH_E_NOTIMPL ? EXIT_CONFIG : EXIT_USAGE;
    }
    const char *labels[MAX_LIST + 1] = {NULL}, *tags[MAX_LIST + 1] = {NULL};
    AH_AUTOFREE char *lcopy = labels_s ? strdup(labels_s) : NULL;
    AH_AUTOFREE char *tcopy = tags_s ? strdup(tags_s) : NULL;
    if ((lcopy && split(lcopy, labels, MAX_LIST + 1) < 0) ||
        (tcopy && split(tcopy, tags, MAX_LIST + 1) < 0)) {
        fprintf(stderr, "ah agent enroll: at most %d labels and %d tags\n", MAX_LIST, MAX_LIST);
        return EXIT_USAGE;
    }
    struct host_facts_config hc = {
        .name = name,
        .version = AH_VERSION,
        .labels = lcopy ? labels : NULL,
        .tags = tcopy ? tags : NULL,
        .resources_json = resources,
        .resources_file = resources_file,
        .max_concurrent = max_concurrent,
        .data_dir = data_dir,
        .heartbeat_ms = cfg.heartbeat_ms,
    };
    struct host_facts *hf = NULL;
    struct ah_problem p = {0};
    if (host_facts_new(&hc, &hf, &p) < 0) {
        fprintf(stderr, "ah agent enroll: %s\n", p.detail);
        problem_clear(&p);
        return EXIT_USAGE;
    }
    cfg.control = (struct link_executor_hooks){.hello = hello_cb, .heartbeat = heartbeat_cb,
                                               .ctx = hf};
    /* stop signals: blocked in every thread (the link's inherits the mask), taken by sigwait */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc = link_client_run(&cfg, &stop, err, sizeof(err));
    host_facts_free(hf);
    if (rc < 0) {
        fprintf(stderr, "ah agent enroll: %s\n", err);
        return rc == AH_E_INVAL || rc == AH_E_NOTIMPL ? EXIT_CONFIG : EXIT_GENERAL;
    }
    log_msg(LOG_INFO, "stopped");
    return EXIT_OK;
}
