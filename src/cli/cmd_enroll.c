/*
 * cmd_enroll.c — `ah agent enroll` (CLI-and-enrollment §4): this machine becomes an executor of
 * an access point. It dials out over QUIC with mutual TLS (enroll/link.h), says Hello with what
 * it is and can do (enroll/host_facts.h), heartbeats, and stays connected until SIGINT/SIGTERM,
 * when it says Goodbye.
 *
 * With --rest-api yes the same process also runs the daemon path of `ah agent access-point`
 * (daemon.c, CLI-and-enrollment §1): its REST/SSE API, database and local runner, on --bind/
 * --port/--db, for tasks created there. Both runners share --max-concurrent-tasks (struct
 * shared_slots). Start: the API first (a port in use stops it before enrolling), then the
 * link. Stop: Goodbye on the link, then the API drains; sessions keep running (D15).
 *
 * Every flag of §4 is parsed and checked here before anything starts, so a mistake is one clear
 * line and exit 2 (a usage error), never a half-started executor. The identity rules (D42):
 *   spiffe   the default; forbids the file-based flags (--cert-file, --key-file, --ca-file,
 *            the --dynamic-cert-* and --vault-* ones); the Workload API is not built in (exit 8)
 *   files    --cert-file, --key-file, --ca-file and --server-san
 *   exec     --dynamic-cert-cmd and --server-san (the way a SPIRE agent plugs in)
 *   vault    --vault-addr, --vault-role and --server-san; not built in (exit 8)
 *
 * The sessions the access point places here are configured as an access point's own (D43 needs
 * an executor's custom agents, and a profile means what this machine's configuration says):
 * config_load reads the same file, environment and session flags (session_setting()) with or
 * without --rest-api; the Hello reports the configuration's custom agents through the catalog.
 * §4 requires --server-san for files/exec/vault; --expected-server-id (the access point's SPIFFE
 * id, §5.2's SpiffeId policy) is accepted in its place: either one pins the peer.
 *   insecure no verification of the access point: refused unless --allow-insecure, loud warning;
 *            its own certificate still comes from --cert-file/--key-file (mutual TLS)
 */
#include <errno.h>
#include <limits.h>
#include <unistd.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../enroll/host_facts.h"
#include "../enroll/link.h"
#include "../enroll/tunnel.h"
#include "../enroll/runner.h"
#include "../obs/obs.h"
#include "../os/os.h"
#include "../exec/exec.h"
#include "../exec/catalog.h"
#include "cli.h"

#ifndef AH_VERSION
#define AH_VERSION "0.0.0"
#endif

#define MAX_LIST 64  /* --labels / --tags values */
#define MAX_PASS 128 /* the REST API's own flags and their values */
#define REST_PORT_DEFAULT 3001 /* the access point's (D21) */

struct enroll {
    const char *rest_api, *bind, *db, *name, *resources, *resources_file;
    const char *ssh, *ssh_dst, *identity, *spiffe_socket, *expected_server_id, *spiffe_mode;
    const char *cert_file, *key_file, *ca_file, *server_san, *vault_addr, *vault_role;
    const char *vault_path, *dynamic_cert_cmd, *dynamic_cert_ttl, *data_dir, *log_level;
    const char *otlp_endpoint; /* D48: the executor's spans go to this collector */
    int64_t port, max_concurrent, heartbeat_ms, cert_ttl_ms;
    bool allow_insecure;
    const char *labels[MAX_LIST + 1], *tags[MAX_LIST + 1], *remotes[MAX_LIST + 1];
    size_t n_labels, n_tags, n_remotes;
    char *owned[2 * MAX_LIST]; /* copies made when splitting comma lists */
    size_t n_owned;
    /* --rest-api yes: the access point's own settings (--insecure-no-auth, --jwks, --tls-cert,
     * --public-url, --config …), handed to its parser as given (borrowed from argv) */
    const char *pass[MAX_PASS + 1];
    size_t n_pass;
};

static const char usage_text[] =
    "usage: ah agent enroll --remote-server ADDRESS [OPTIONS]\n"
    "\n"
    "Enroll this machine as an executor of an access point: it dials out over QUIC with mutual\n"
    "TLS (the access point never connects to it), reports what it is and can do, heartbeats,\n"
    "and stays connected until SIGINT or SIGTERM.\n"
    "\n"
    "Access point:\n"
    "  --remote-server ADDRESS[,...]  quic://HOST:PORT or HOST:PORT of the access point's QUIC\n"
    "                              listener (default: $AH_REMOTE_SERVER); repeatable: replicas\n"
    "                              of one access point, dialled in turn when one is lost\n"
    "  --rest-api yes|no           also serve the REST/SSE API here, as ah agent access-point\n"
    "                              does, so this machine is an access point of its own: its\n"
    "                              tasks run here and are kept in --db (default no)\n"
    "  --bind ADDRESS              with --rest-api yes: where the API listens (default\n"
    "                              0.0.0.0; any address but loopback needs an API key in\n"
    "                              --db, --jwks, or --insecure-no-auth)\n"
    "  --port P                    with --rest-api yes: its TCP port (default 3001; 0 picks one)\n"
    "  --db URL|PATH               with --rest-api yes: its database (default\n"
    "                              DATA-DIR/rest-api/state.db; the API's sessions' files are\n"
    "                              in DATA-DIR/rest-api)\n"
    "  With --rest-api yes the access point's other settings apply as well (ah help agent\n"
    "  access-point lists them: --insecure-no-auth, --jwks, --tls-cert, --public-url,\n"
    "  --cors-origins, ...), but not its executor control plane (--quic-*,\n"
    "  --executor-*). The API's sessions and the access point's share --max-concurrent-tasks.\n"
    "What this executor reports:\n"
    "  --name NAME                 friendly name (default: the last part of its SPIFFE id)\n"
    "  --labels KEY=VALUE[,...]    repeatable; tasks whose labels use the same keys are placed\n"
    "                              only on executors with the same values\n"
    "  --tags TAG[,...]            repeatable grouping tags\n"
    "  --resources JSON            a JSON object merged over the detected resources\n"
    "  --resources-file PATH       the same from a file (JSON)\n"
    "  --max-concurrent-tasks N    sessions at once, the REST API's included (default: the\n"
    "                              number of cores)\n"
    "  --heartbeat-interval SEC    heartbeat period, fractions allowed (default 5)\n"
    "  --data-dir DIR              where sessions' workspaces live; its disk is reported\n"
    "                              (default $XDG_DATA_HOME/ah/executor, that is\n"
    "                              ~/.local/share/ah/executor)\n"
    "Sessions (the access point's settings for them, read as ah agent access-point reads them):\n"
    "  --config FILE               configuration file (default $AH_CONFIG, else\n"
    "                              ~/.config/agent-harbor/config.toml when present): its custom\n"
    "                              agents ([agents.NAME], reported to the access point), models,\n"
    "                              sandbox profiles ([sandbox.NAME]) and the settings below\n"
    "  --agent-env VAR[,...]       environment variables passed to agents\n"
    "  --workspace-template DIR    copied as the workspace of tasks without a repository\n"
    "  --snapshot-preference LIST  workspace providers in order (default git,reflink,btrfs,copy)\n"
    "  --stop-grace-ms MS, --clone-timeout-ms MS, --refs-timeout-ms MS\n"
    "                              as for ah agent access-point; AH_* variables set them too\n"
    "SSH through the access point:\n"
    "  --ssh enabled|disabled      allow tunnels to --ssh-dst (default enabled)\n"
    "  --ssh-dst HOST:PORT         the only tunnel destination (default 127.0.0.1:22)\n"
    "Identity (exactly one mode; mutual TLS, SPIFFE ids):\n"
    "  --identity spiffe|files|vault|exec|insecure   (default spiffe)\n"
    "  --spiffe-socket PATH, --spiffe-mode x509|jwt  [spiffe] Workload API (not built in)\n"
    "  --expected-server-id ID     the access point's SPIFFE id, e.g. spiffe://example.org/ah/serve\n"
    "  --cert-file, --key-file, --ca-file PATH       [files] PEM certificate, key, CA bundle\n"
    "  --server-san LIST           [files|vault|exec] required (or --expected-server-id):\n"
    "                              comma list of dns=NAME, uri=URI, pin=SHA256 of the access\n"
    "                              point's public key\n"
    "  --vault-addr URL, --vault-role ROLE, --vault-path PATH   [vault] (not built in)\n"
    "  --dynamic-cert-cmd CMD      [exec] prints PEM certificate and key on stdout\n"
    "  --dynamic-cert-ttl DURATION [exec] rerun it this often (e.g. 30m; default 1h)\n"
    "  --allow-insecure            [insecure] required: no verification of the access point\n"
    "Other:\n"
    "  --log-level LEVEL           debug, info, warn or error (default info)\n"
    "  --otlp-endpoint URL         export trace spans over OTLP/HTTP JSON to this collector\n"
    "  -h, --help                  this help\n"
    "\n"
    "Exit status: 0 stopped by a signal; 1 the REST API's port is in use or its database\n"
    "cannot be opened; 2 a flag is wrong or missing; 8 the identity mode is not built in or\n"
    "its material cannot be loaded, the configuration file cannot be read or is wrong, or the\n"
    "REST API would be open without credentials.\n";

void cmd_enroll_help(void) {
    fputs(usage_text, stdout);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ah agent enroll: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(ah agent enroll --help lists every flag)\n", stderr);
    return EXIT_USAGE;
}

/* "a,b,c" → list entries (split copies kept in e->owned). */
static int add_list(struct enroll *e, const char **list, size_t *n, const char *flag,
                    const char *value) {
    char *copy = strdup(value);
    if (!copy || e->n_owned >= sizeof(e->owned) / sizeof(e->owned[0])) {
        free(copy);
        return usage_error("%s: too many values", flag);
    }
    e->owned[e->n_owned++] = copy;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n >= MAX_LIST)
            return usage_error("%s: at most 64 values", flag);
        list[(*n)++] = t;
    }
    list[*n] = NULL;
    return 0;
}

static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *ret) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !*s || *end || v < lo || v > hi)
        return false;
    *ret = v;
    return true;
}

/* "30m", "1h", "45s", "500ms", "2d" or plain seconds → ms. */
static bool parse_duration(const char *s, int64_t *ret) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0) || !isfinite(v))
        return false;
    double mult = !*end || !strcmp(end, "s") ? 1000 : !strcmp(end, "ms") ? 1 : !strcmp(end, "m") ? 60000
                : !strcmp(end, "h") ? 3600000 : !strcmp(end, "d") ? 86400000 : -1;
    if (mult < 0 || v * mult > 365.0 * 86400000 || v * mult < 1)
        return false;
    *ret = (int64_t)(v * mult);
    return true;
}

/* --server-san: dns=NAME, uri=URI, pin=SHA256 (64 hex digits or 44 base64 characters). */
static int check_san(const char *list) {
    char buf[2048];
    if (strlen(list) >= sizeof(buf))
        return usage_error("--server-san: longer than 2047 characters");
    snprintf(buf, sizeof(buf), "%s", list);
    char *save = NULL;
    int n = 0;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save), n++) {
        while (*t == ' ')
            t++;
        const char *v = strchr(t, '=');
        if (!v || !v[1])
            return usage_error("--server-san: '%s' is not dns=NAME, uri=URI or pin=SHA256", t);
        v++;
        if (!strncmp(t, "dns=", 4) || !strncmp(t, "uri=", 4))
            continue;
        if (strncmp(t, "pin=", 4) != 0)
            return usage_error("--server-san: '%s' is not dns=NAME, uri=URI or pin=SHA256", t);
        size_t len = strlen(v), hex = strspn(v, "0123456789abcdefABCDEF");
        bool b64 = len == 44 && v[43] == '=' &&
                   strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") ==
                       43;
        if (!(len == 64 && hex == 64) && !b64)
            return usage_error("--server-san: pin=%s is not a SHA-256 (64 hex digits or base64)",
                               v);
    }
    if (n == 0)
        return usage_error("--server-san: empty list");
    return 0;
}

static int check_identity(const struct enroll *e) {
    const char *mode = e->identity;
    bool files = e->cert_file || e->key_file || e->ca_file;
    bool exec = e->dynamic_cert_cmd || e->dynamic_cert_ttl;
    bool vault = e->vault_addr || e->vault_role || e->vault_path;
    bool spiffe_flags = e->spiffe_socket || e->spiffe_mode;
    if (e->expected_server_id && strncmp(e->expected_server_id, "spiffe://", 9) != 0)
        return usage_error("--expected-server-id: '%s' is not a SPIFFE id (spiffe://...)",
                           e->expected_server_id);
    if (e->spiffe_mode && strcmp(e->spiffe_mode, "x509") && strcmp(e->spiffe_mode, "jwt"))
        return usage_error("--spiffe-mode: '%s' is not x509 or jwt", e->spiffe_mode);
    if (!strcmp(mode, "spiffe")) {
        if (files || exec || vault)
            return usage_error("--identity spiffe takes its certificate from the SPIFFE "
                               "Workload API: --cert-file, --key-file, --ca-file, "
                               "--dynamic-cert-* and --vault-* are not allowed with it (and the "
                               "Workload API is not built in to this version: use --identity "
                               "files or exec)");
        return 0;
    }
    if (spiffe_flags)
        return usage_error("--spiffe-socket and --spiffe-mode belong to --identity spiffe, "
                           "not %s",
                           mode);
    if (!strcmp(mode, "insecure")) {
        if (!e->allow_insecure)
            return usage_error("--identity insecure does not verify the access point (anyone "
                               "can pose as it): refused unless --allow-insecure is given too");
        if (exec || vault || e->server_san)
            return usage_error("--identity insecure takes its certificate from --cert-file and "
                               "--key-file only: no --server-san, --dynamic-cert-* or --vault-*");
        return 0;
    }
    if (strcmp(mode, "files") && strcmp(mode, "exec") && strcmp(mode, "vault"))
        return usage_error("--identity: '%s' is not spiffe, files, vault, exec or insecure", mode);
    if (e->allow_insecure)
        return usage_error("--allow-insecure only goes with --identity insecure");
    bool own_cert = e->cert_file || e->key_file; /* exec prints its own; --ca-file is shared */
    if ((!strcmp(mode, "files") && (exec || vault)) ||
        (!strcmp(mode, "exec") && (vault || own_cert)) ||
        (!strcmp(mode, "vault") && (exec || files)))
        return usage_error("--identity %s: flags of another identity mode were given (exactly "
                           "one mode is active)",
                           mode);
    if (!e->server_san && !e->expected_server_id)
        return usage_error("--identity %s needs --server-san (dns=, uri= or pin= of the access "
                           "point's certificate) or --expected-server-id (its SPIFFE id)",
                           mode);
    int rc = e->server_san ? check_san(e->server_san) : 0;
    if (rc)
        return rc;
    if (!strcmp(mode, "files") && (!e->cert_file || !e->key_file || !e->ca_file))
        return usage_error("--identity files needs --cert-file, --key-file and --ca-file");
    if (!strcmp(mode, "exec") && !e->dynamic_cert_cmd)
        return usage_error("--identity exec needs --dynamic-cert-cmd (a command printing the PEM "
                           "certificate and key)");
    if (!strcmp(mode, "vault") && (!e->vault_addr || !e->vault_role))
        return usage_error("--identity vault needs --vault-addr and --vault-role");
    return 0;
}

enum {
    O_REMOTE = 256, O_REST, O_BIND, O_PORT, O_DB, O_LABELS, O_RES, O_RESFILE, O_TAGS, O_NAME,
    O_HB, O_MAXC, O_SSH, O_SSHDST, O_ID, O_SOCK, O_EXPECT, O_SMODE, O_CERT, O_KEY, O_CA, O_SAN,
    O_VADDR, O_VROLE, O_VPATH, O_DCMD, O_DTTL, O_INSEC, O_DATA, O_LOG, O_OTLP,
};
static const struct option options[] = {
    {"remote-server", required_argument, 0, O_REMOTE},
    {"rest-api", required_argument, 0, O_REST},
    {"bind", required_argument, 0, O_BIND},
    {"port", required_argument, 0, O_PORT},
    {"db", required_argument, 0, O_DB},
    {"labels", required_argument, 0, O_LABELS},
    {"resources", required_argument, 0, O_RES},
    {"resources-file", required_argument, 0, O_RESFILE},
    {"tags", required_argument, 0, O_TAGS},
    {"name", required_argument, 0, O_NAME},
    {"heartbeat-interval", required_argument, 0, O_HB},
    {"max-concurrent-tasks", required_argument, 0, O_MAXC},
    {"ssh", required_argument, 0, O_SSH},
    {"ssh-dst", required_argument, 0, O_SSHDST},
    {"identity", required_argument, 0, O_ID},
    {"spiffe-socket", required_argument, 0, O_SOCK},
    {"expected-server-id", required_argument, 0, O_EXPECT},
    {"spiffe-mode", required_argument, 0, O_SMODE},
    {"cert-file", required_argument, 0, O_CERT},
    {"key-file", required_argument, 0, O_KEY},
    {"ca-file", required_argument, 0, O_CA},
    {"server-san", required_argument, 0, O_SAN},
    {"vault-addr", required_argument, 0, O_VADDR},
    {"vault-role", required_argument, 0, O_VROLE},
    {"vault-path", required_argument, 0, O_VPATH},
    {"dynamic-cert-cmd", required_argument, 0, O_DCMD},
    {"dynamic-cert-ttl", required_argument, 0, O_DTTL},
    {"allow-insecure", no_argument, 0, O_INSEC},
    {"data-dir", required_argument, 0, O_DATA},
    {"log-level", required_argument, 0, O_LOG},
    {"otlp-endpoint", required_argument, 0, O_OTLP},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

/* Takes the access point's own settings out of argv (compacting it; *argc shrinks) into
 * e->pass: any --NAME that is not an enroll flag but is one of config_load's, with its value.
 * Those of the executor control plane are refused: a REST API here has no QUIC listener. */
static int take_rest_flags(int *argc, char **argv, struct enroll *e) {
    int n = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) { /* the rest is not options */
            while (i < *argc)
                argv[n++] = argv[i++];
            break;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            argv[n++] = argv[i];
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct option *mine = NULL;
        for (const struct option *o = options; o->name && !mine; o++)
            if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
                mine = o;
        int kind = len == 6 && strncmp(name, "config", 6) == 0 ? 0 : config_flag_kind(name, len);
        if (mine || kind < 0) { /* enroll's own (with its value), or getopt's to refuse */
            argv[n++] = argv[i];
            if (mine && mine->has_arg == required_argument && !eq && i + 1 < *argc)
                argv[n++] = argv[++i];
            continue;
        }
        if ((len > 5 && strncmp(name, "quic-", 5) == 0) ||
            (len > 9 && strncmp(name, "executor-", 9) == 0))
            return usage_error("--%.*s belongs to an access point's executor control plane; an "
                               "executor's REST API has none",
                               (int)len, name);
        bool value = kind == 0 && !eq;
        if (value && i + 1 >= *argc)
            return usage_error("%s needs a value", a);
        if (e->n_pass + (value ? 2 : 1) > MAX_PASS)
            return usage_error("too many options for the REST API (at most %d)", MAX_PASS);
        e->pass[e->n_pass++] = a;
        if (value)
            e->pass[e->n_pass++] = argv[++i];
    }
    e->pass[e->n_pass] = NULL;
    *argc = n;
    return 0;
}

/* The access point's settings that concern the sessions this executor runs, accepted without
 * --rest-api (name: the flag without "--", maybe "NAME=VALUE"). The configuration file's
 * [agents.*], [models.*] and [sandbox.*] sections apply as well. */
static bool session_setting(const char *name) {
    static const char *const names[] = {"config", "agent-env", "workspace-template",
                                        "stop-grace-ms", "clone-timeout-ms", "refs-timeout-ms",
                                        "snapshot-preference", NULL};
    size_t len = strcspn(name, "=");
    for (const char *const *n = names; *n; n++)
        if (strlen(*n) == len && strncmp(*n, name, len) == 0)
            return true;
    return false;
}

/* Parses argv into e. 0, -1 after --help, or an exit code. */
static int parse(int argc, char **argv, struct enroll *e) {
    e->identity = "spiffe";
    e->ssh = "enabled";
    e->ssh_dst = "127.0.0.1:22";
    e->rest_api = "no";
    e->heartbeat_ms = 5000; /* D24 (§4's table says 30 s; the protocol section and D24 win) */
    e->max_concurrent = -1;
    e->port = -1;
    int rc = take_rest_flags(&argc, argv, e);
    if (rc)
        return rc;
    optind = 1;
    opterr = 0;
    int c;
    while (rc == 0 && (c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        const char *v = optarg;
        switch (c) {
        case 'h':
            cmd_enroll_help();
            return -1;
        case O_REMOTE:
            rc = add_list(e, e->remotes, &e->n_remotes, "--remote-server", v);
            break;
        case O_REST: e->rest_api = v; break;
        case O_BIND: e->bind = v; break;
        case O_PORT:
            if (!parse_int(v, 0, 65535, &e->port))
                rc = usage_error("--port: '%s' is not a port (0 to 65535)", v);
            break;
        case O_DB: e->db = v; break;
        case O_LABELS: rc = add_list(e, e->labels, &e->n_labels, "--labels", v); break;
        case O_RES: e->resources = v; break;
        case O_RESFILE: e->resources_file = v; break;
        case O_TAGS: rc = add_list(e, e->tags, &e->n_tags, "--tags", v); break;
        case O_NAME: e->name = v; break;
        case O_HB: {
            char *end = NULL;
            double s = strtod(v, &end);
            if (end == v || *end || !(s >= 0.01 && s <= 600))
                rc = usage_error("--heartbeat-interval: '%s' is not a number of seconds from "
                                 "0.01 to 600",
                                 v);
            else
                e->heartbeat_ms = (int64_t)(s * 1000 + 0.5);
            break;
        }
        case O_MAXC:
            if (!parse_int(v, 0, 100000, &e->max_concurrent))
                rc = usage_error("--max-concurrent-tasks: '%s' is not a number from 0 to 100000",
                                 v);
            break;
        case O_SSH: e->ssh = v; break;
        case O_SSHDST: e->ssh_dst = v; break;
        case O_ID: e->identity = v; break;
        case O_SOCK: e->spiffe_socket = v; break;
        case O_EXPECT: e->expected_server_id = v; break;
        case O_SMODE: e->spiffe_mode = v; break;
        case O_CERT: e->cert_file = v; break;
        case O_KEY: e->key_file = v; break;
        case O_CA: e->ca_file = v; break;
        case O_SAN: e->server_san = v; break;
        case O_VADDR: e->vault_addr = v; break;
        case O_VROLE: e->vault_role = v; break;
        case O_VPATH: e->vault_path = v; break;
        case O_DCMD: e->dynamic_cert_cmd = v; break;
        case O_DTTL:
            e->dynamic_cert_ttl = v;
            if (!parse_duration(v, &e->cert_ttl_ms))
                rc = usage_error("--dynamic-cert-ttl: '%s' is not a duration (e.g. 90s, 30m, 1h)",
                                 v);
            break;
        case O_INSEC: e->allow_insecure = true; break;
        case O_DATA: e->data_dir = v; break;
        case O_LOG: e->log_level = v; break;
        case O_OTLP: e->otlp_endpoint = v; break;
        case ':':
            rc = usage_error("%s needs a value", argv[optind - 1]);
            break;
        default:
            rc = usage_error("unknown option '%s'", argv[optind - 1]);
            break;
        }
    }
    if (rc)
        return rc;
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    const char *env = getenv("AH_REMOTE_SERVER");
    if (!e->n_remotes && env && *env && (rc = add_list(e, e->remotes, &e->n_remotes,
                                                       "$AH_REMOTE_SERVER", env)) != 0)
        return rc;
    if (e->n_remotes > LINK_ADDRESSES_MAX)
        return usage_error("--remote-server: at most %d addresses", LINK_ADDRESSES_MAX);
    if (!e->n_remotes)
        return usage_error("--remote-server is required (the access point's QUIC address, e.g. "
                           "quic://ap.example.com:443)");
    if (strcmp(e->rest_api, "yes") && strcmp(e->rest_api, "no"))
        return usage_error("--rest-api: '%s' is not yes or no", e->rest_api);
    if (!strcmp(e->rest_api, "no") && (e->bind || e->port >= 0 || e->db))
        return usage_error("--bind, --port and --db configure the REST API: they need "
                           "--rest-api yes");
    for (size_t i = 0; !strcmp(e->rest_api, "no") && i < e->n_pass; i++) {
        const char *a = e->pass[i];
        if (strncmp(a, "--", 2) != 0)
            continue; /* a value */
        if (!session_setting(a + 2))
            return usage_error("%s is a setting of the REST API: it needs --rest-api yes", a);
        if (!strchr(a, '='))
            i++; /* its value (each of them takes one) */
    }
    if (!strcmp(e->rest_api, "yes") && e->max_concurrent == 0)
        return usage_error("--max-concurrent-tasks 0 with --rest-api yes: no task created on "
                           "this executor's API could ever run");
    if (e->bind && !*e->bind)
        return usage_error("--bind: empty address");
    if (e->db && !*e->db)
        return usage_error("--db: empty path");
    if (strcmp(e->ssh, "enabled") && strcmp(e->ssh, "disabled"))
        return usage_error("--ssh: '%s' is not enabled or disabled", e->ssh);
    const char *colon = strrchr(e->ssh_dst, ':');
    int64_t port;
    if (!colon || colon == e->ssh_dst || !parse_int(colon + 1, 1, 65535, &port))
        return usage_error("--ssh-dst: '%s' is not HOST:PORT", e->ssh_dst);
    if (e->log_level && strcmp(e->log_level, "debug") && strcmp(e->log_level, "info") &&
        strcmp(e->log_level, "warn") && strcmp(e->log_level, "error"))
        return usage_error("--log-level: '%s' is not debug, info, warn or error", e->log_level);
    return check_identity(e);
}

/* ---- running ------------------------------------------------------------------------------ */

static json_t *hello_hook(void *ctx, const char *executor_id) {
    /* D48: the executor's spans name it (its SPIFFE id, known once the link has its
     * certificate); a no-op while export is off */
    if (obs_otlp_enabled() && executor_id && *executor_id) {
        obs_otlp_resource("ah.executor_id", executor_id);
        obs_otlp_resource("service.instance.id", executor_id);
    }
    return host_facts_hello(ctx, executor_id);
}

static json_t *heartbeat_hook(void *ctx) {
    return host_facts_heartbeat(ctx);
}

/* The exec layer of the access point, reused for this executor's sessions: never started (no
 * store, no scheduler), it gives the configuration, the sandbox and the recorder socket. */
static int exec_for_sessions(const struct enroll *e, const struct config *cfg, bool rest_api,
                             struct host_facts *hf, struct executor **ret_ex, char *why,
                             size_t whyn) {
    char self[4096], data[4096], rundir[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        snprintf(why, whyn, "cannot find its own executable");
        return AH_E_IO;
    }
    self[n] = '\0';
    const char *dir = e->data_dir;
    if (make_dirs(dir, 0700) < 0 || !realpath(dir, data)) {
        snprintf(why, whyn, "data directory %s: %s", dir, strerror(errno));
        return AH_E_IO;
    }
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && *xdg)
        snprintf(rundir, sizeof(rundir), "%s/ah", xdg);
    else
        snprintf(rundir, sizeof(rundir), "/tmp/ah-%u", (unsigned)getuid());
    /* the configuration's session settings, as the access point's start_services passes
     * them; the REST API's database (--rest-api yes) is hidden from sandboxed agents too */
    struct exec_config ec = {
        .data_dir = data,
        .runtime_dir = rundir,
        .self_exe = self,
        .config_path = cfg->config_path,
        .max_concurrent = host_facts_capacity(hf),
        .stop_grace_ms = cfg->stop_grace_ms,
        .clone_timeout_ms = cfg->clone_timeout_ms,
        .refs_timeout_ms = cfg->refs_timeout_ms,
        .snapshot_preference = (const char *const *)cfg->snapshot_preference,
        .workspace_template = cfg->workspace_template,
        .agents = cfg->agents,
        .n_agents = cfg->n_agents,
        .models = cfg->models,
        .env_allow = (const char *const *)cfg->agent_env,
        .sandbox = cfg->sandbox,
        .db_path = rest_api ? cfg->db : NULL,
    };
    struct ah_problem p = {0};
    int rc = exec_new(&ec, NULL, NULL, ret_ex, &p);
    if (rc < 0)
        snprintf(why, whyn, "%s", p.detail);
    problem_clear(&p);
    return rc;
}

/* ---- --rest-api yes: the daemon path in this process ---------------------------------------- */

/* One machine, one budget: --max-concurrent-tasks counts the sessions the access point placed
 * here (the runner's, in host_facts) and those the REST API's own runner runs (daemon_exec).
 * The REST API starts one only while both together are below it; the heartbeat reports both,
 * so the access point places nothing on a machine its own API filled. Whoever changes its count
 * tells the other at once: the REST API's scheduler is kicked, the access point gets a
 * heartbeat without waiting for the interval. */
struct shared_slots {
    struct host_facts *hf;
    struct executor *rest; /* the REST API's runner; set before the link starts */
    pthread_mutex_t mu;
    struct link_client *cl; /* under mu: NULL before the link runs and once it stops */
};

static int64_t slots_of_executor(void *arg) { /* the REST API's scheduler asks */
    struct shared_slots *sh = arg;
    return host_facts_running(sh->hf);
}

static void rest_changed(void *arg) { /* the REST API's runner started or ended one */
    struct shared_slots *sh = arg;
    pthread_mutex_lock(&sh->mu);
    link_client_heartbeat_soon(sh->cl);
    pthread_mutex_unlock(&sh->mu);
}

static int64_t slots_of_rest(void *arg) { /* a heartbeat is built */
    struct shared_slots *sh = arg;
    return sh->rest ? exec_local_running(sh->rest) : 0;
}

static void executor_changed(void *arg) { /* a session of the access point came or went */
    struct shared_slots *sh = arg;
    if (sh->rest)
        exec_kick(sh->rest); /* a freed slot may start a queued session of the API */
}

/* The access point's parser over argv (NULL-terminated, n entries). 0, or an exit code after
 * one line. */
static int load_passed(int n, const char **argv, struct config *cfg) {
    struct config_defaults defs = {.port = REST_PORT_DEFAULT};
    int rc = config_load(n, (char **)argv, "agent enroll", &defs, cfg);
    if (rc < 0) { /* a passed value that reads as --help */
        fprintf(stderr, "ah agent enroll: -h/--help is not a value (see ah agent enroll "
                        "--help)\n");
        return EXIT_USAGE;
    }
    return rc;
}

/* The configuration of this executor's sessions without --rest-api: the access point's parser
 * (the file named by --config or AH_CONFIG, else the user's default file; the AH_* environment;
 * the session settings passed), so custom agents, models, sandbox profiles, the agents'
 * environment and the workspace settings are the same as an access point's with that file.
 * Its other settings (listeners, authentication…) concern a REST API and are not used. */
static int sessions_config(const struct enroll *e, struct config *cfg) {
    const char *argv[MAX_PASS + 2];
    int n = 0;
    argv[n++] = "agent enroll";
    for (size_t i = 0; i < e->n_pass; i++)
        argv[n++] = e->pass[i];
    argv[n] = NULL;
    return load_passed(n, argv, cfg);
}

/* The daemon's configuration: the access point's parser over what was passed through, with
 * this command's own --bind/--port/--db/--data-dir/--max-concurrent-tasks/--log-level last
 * (flags win over the environment and the file). 0 or an exit code after one line. The
 * sessions the access point places here use it too. */
static int rest_config(const struct enroll *e, int64_t slots, struct config *cfg) {
    char dir[4200], db[4300], port[24], maxc[24];
    snprintf(dir, sizeof(dir), "%s/rest-api", e->data_dir);
    snprintf(db, sizeof(db), "%s/state.db", dir);
    snprintf(port, sizeof(port), "%lld",
             (long long)(e->port >= 0 ? e->port : REST_PORT_DEFAULT));
    snprintf(maxc, sizeof(maxc), "%lld", (long long)slots);
    const char *argv[MAX_PASS + 16];
    int n = 0;
    argv[n++] = "agent enroll";
    for (size_t i = 0; i < e->n_pass; i++)
        argv[n++] = e->pass[i];
    argv[n++] = "--bind";
    argv[n++] = e->bind ? e->bind : "0.0.0.0";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--db";
    argv[n++] = e->db ? e->db : db;
    argv[n++] = "--data-dir";
    argv[n++] = dir;
    argv[n++] = "--max-concurrent-tasks";
    argv[n++] = maxc;
    if (e->log_level) {
        argv[n++] = "--log-level";
        argv[n++] = e->log_level;
    }
    argv[n] = NULL;
    int rc = load_passed(n, argv, cfg);
    if (rc)
        return rc;
    if (cfg->quic_port >= 0) { /* from the environment or the config file: not for an executor */
        log_msg(LOG_INFO, "quic-port of the configuration ignored: an executor's REST API "
                          "has no executor control plane");
        cfg->quic_port = -1;
    }
    if (make_dirs(dir, 0700) < 0) {
        fprintf(stderr, "ah agent enroll: cannot create %s: %s\n", dir, strerror(errno));
        return EXIT_CONFIG;
    }
    return 0;
}

int cmd_enroll(int argc, char **argv) {
    struct enroll e = {0};
    int rc = parse(argc, argv, &e);
    if (rc) {
        for (size_t i = 0; i < e.n_owned; i++)
            free(e.owned[i]);
        return rc < 0 ? EXIT_OK : rc;
    }
    int exit_code = EXIT_OK;
    struct host_facts *hf = NULL;
    struct agent_catalog *cat = NULL;
    struct executor *ex = NULL;
    struct runner *runner = NULL;
    struct daemon *rest = NULL; /* --rest-api yes */
    struct config rcfg;
    bool have_rcfg = false;
    struct shared_slots sh = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char host[256];
    int qport = 0;
    char err[512] = "";
    enum log_level ll = LOG_INFO;
    if (e.log_level)
        (void)log_level_parse(e.log_level, &ll); /* checked by parse() */
    log_setup(2, ll);
    if (!strcmp(e.identity, "spiffe") || !strcmp(e.identity, "vault")) {
        fprintf(stderr,
                "ah agent enroll: --identity %s is not built in to this version; use --identity "
                "exec --dynamic-cert-cmd '...' (a SPIRE agent: 'spire-agent api fetch x509 "
                "-write DIR' then print the files) or --identity files\n",
                e.identity);
        exit_code = EXIT_CONFIG;
        goto out;
    }
    /* the first address, then the failover list (borrowed by the link until exit) */
    static char more_hosts[LINK_ADDRESSES_MAX][256];
    static struct link_address more[LINK_ADDRESSES_MAX];
    for (size_t i = 0; i < e.n_remotes; i++) {
        char *h = i ? more_hosts[i - 1] : host;
        int *pt = i ? &more[i - 1].port : &qport;
        if (link_parse_address(e.remotes[i], 443, h, i ? sizeof(more_hosts[0]) : sizeof(host),
                               pt) < 0) {
            fprintf(stderr, "ah agent enroll: --remote-server: '%s' is not quic://HOST:PORT or "
                            "HOST:PORT\n",
                    e.remotes[i]);
            exit_code = EXIT_USAGE;
            goto out;
        }
        if (i)
            more[i - 1].host = more_hosts[i - 1];
    }
    /* SIGINT/SIGTERM blocked before any thread starts (the agent catalog's included), so
     * every thread inherits it and the signal reaches only the sigwait below: a thread with
     * it unblocked would take it and die of it, without a Goodbye */
    sigset_t stop;
    daemon_block_signals(&stop);
    /* sessions' workspaces and recordings: --data-dir, else a directory of this user's (not
     * the current directory, whose mode the sessions' privacy would narrow to 0700) */
    /* D28: sessions' workspaces, recordings and (with --rest-api yes) the API's database are
     * this user's only, whatever the data directory's own mode; the agents inherit it */
    umask(077);
    char def_dir[4096];
    if (!e.data_dir) {
        const char *xdh = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
        if (xdh && *xdh)
            snprintf(def_dir, sizeof(def_dir), "%s/ah/executor", xdh);
        else
            snprintf(def_dir, sizeof(def_dir), "%s/.local/share/ah/executor",
                     home && *home ? home : ".");
        (void)make_dirs(def_dir, 0700); /* a failure shows in the health checks and below */
        e.data_dir = def_dir;
    }
    bool rest_api = !strcmp(e.rest_api, "yes");
    if (rest_api) {
        int64_t slots = e.max_concurrent;
        if (slots < 0) {
            long cores = sysconf(_SC_NPROCESSORS_ONLN);
            slots = cores > 0 ? cores : 1; /* host_facts' auto-detection, the same number */
        }
        rc = rest_config(&e, slots, &rcfg);
    } else {
        rc = sessions_config(&e, &rcfg);
    }
    if (rc != 0) {
        exit_code = rc;
        goto out;
    }
    have_rcfg = true;
    /* D48: the executor's spans (RPCs from the access point, provisioning) and its recorders'
     * go to this collector, one exporter thread with a bounded queue */
    if (obs_otlp_start(e.otlp_endpoint, "agent-harbor-executor") < 0) {
        fprintf(stderr, "ah agent enroll: --otlp-endpoint must be an http:// or https:// URL\n");
        exit_code = EXIT_USAGE;
        goto out;
    }
    /* the agents this machine has, its custom ones included: the same detection GET /agents
     * uses, waited for once. With --rest-api yes the REST API's catalog is that one (it reads
     * the same configuration), given to host_facts once the API runs. */
    struct exec_config ec = {.agents = rcfg.agents, .n_agents = rcfg.n_agents};
    if (!rest_api && agent_catalog_new(&ec, &cat) < 0)
        cat = NULL; /* then no agents are reported; the executor still enrolls */
    struct host_facts_config hc = {
        .name = e.name,
        .version = AH_VERSION,
        .labels = e.n_labels ? e.labels : NULL,
        .tags = e.n_tags ? e.tags : NULL,
        .resources_json = e.resources,
        .resources_file = e.resources_file,
        .max_concurrent = e.max_concurrent,
        .data_dir = e.data_dir,
        .heartbeat_ms = e.heartbeat_ms,
        .catalog = cat,
    };
    struct ah_problem p = {0};
    if (host_facts_new(&hc, &hf, &p) < 0) {
        fprintf(stderr, "ah agent enroll: %s\n", p.detail);
        problem_clear(&p);
        exit_code = EXIT_USAGE;
        goto out;
    }
    struct link_identity id = {
        .provider = e.identity,
        .cert_file = e.cert_file,
        .key_file = e.key_file,
        .ca_file = e.ca_file,
        .cert_cmd = e.dynamic_cert_cmd,
        .cert_ttl_ms = e.cert_ttl_ms,
        .allow_insecure = e.allow_insecure,
    };
    if (link_identity_check(&id, err, sizeof(err)) < 0) {
        fprintf(stderr, "ah agent enroll: %s\n", err);
        exit_code = EXIT_CONFIG;
        goto out;
    }
    if (!strcmp(e.identity, "insecure"))
        log_msg(LOG_WARN, "INSECURE: --identity insecure does not verify the access point; "
                          "anyone on the path can pose as it. Development only.");
    /* tunnels (§5.7): only to --ssh-dst, resolved now (the loop thread must not wait on DNS) */
    static struct tunnel_exec_config tc; /* borrowed by the link's loop until exit */
    if (tunnel_exec_config_init(&tc, strcmp(e.ssh, "enabled") == 0, e.ssh_dst, err,
                                sizeof(err)) < 0) {
        fprintf(stderr, "ah agent enroll: %s\n", err);
        exit_code = EXIT_USAGE;
        goto out;
    }
    struct link_client_config cc = {
        .host = host,
        .port = qport,
        .more = more,
        .n_more = e.n_remotes - 1,
        .id = id,
        .expected_server_id = e.expected_server_id,
        .server_san = e.server_san,
        .heartbeat_ms = e.heartbeat_ms,
        .control = {.hello = hello_hook, .heartbeat = heartbeat_hook, .ctx = hf},
    };
    /* Sessions (issue 16 item 5): the access point's own exec layer provisions and launches
     * them here, its recorders connect to this process's socket and are relayed to the access
     * point (enroll/runner.h). The socket's path comes from the data directory, so a restarted
     * executor is found again by the recorders it left running. */
    if (runner_new(hf, &runner) < 0) {
        fprintf(stderr, "ah agent enroll: out of memory\n");
        exit_code = EXIT_GENERAL;
        goto out;
    }
    /* streams the access point opens: sessions' RPCs, and tunnels (OpenTcp) */
    runner_client_config(runner, &cc, &tc);
    if (rest_api) {
        /* the REST API first: a port in use or a refused bind stops here, before enrolling */
        sh.hf = hf;
        struct daemon_options dopt = {.slots_taken = slots_of_executor,
                                      .slots_changed = rest_changed,
                                      .slots_arg = &sh};
        if ((rc = daemon_start("agent enroll", &rcfg, &dopt, &rest)) != 0) {
            exit_code = rc;
            goto out;
        }
        sh.rest = daemon_exec(rest);
        host_facts_set_catalog(hf, daemon_catalog(rest));
        host_facts_share(hf, slots_of_rest, executor_changed, &sh);
        json_t *rf = json_pack("{s:i, s:s, s:I}", "port", daemon_port(rest), "db", rcfg.db,
                               "slots", (json_int_t)host_facts_capacity(hf));
        log_json(LOG_INFO, "REST API serving; its sessions and the access point's share the "
                           "slots", rf);
        json_decref(rf);
    }
    if (host_facts_catalog(hf)) /* the Hello lists what the detection found by then */
        (void)agent_catalog_wait(host_facts_catalog(hf), 10000);
    json_t *f = json_pack("{s:s, s:i, s:s, s:I}", "access_point", host, "port", qport,
                          "identity", e.identity, "capacity",
                          (json_int_t)host_facts_capacity(hf));
    log_json(LOG_INFO, "enrolling", f);
    json_decref(f);
    struct link_client *cl = NULL;
    rc = link_client_start(&cc, &cl, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "ah agent enroll: %s\n", err);
        exit_code = rc == AH_E_INVAL || rc == AH_E_NOTIMPL ? EXIT_CONFIG : EXIT_GENERAL;
        goto out;
    }
    pthread_mutex_lock(&sh.mu);
    sh.cl = cl;
    pthread_mutex_unlock(&sh.mu);
    /* after the link: a slow sandbox probe must not delay enrollment. Without it the executor
     * stays enrolled (tunnels, the fleet view) and refuses launches with the reason. */
    char why[600] = "";
    if (exec_for_sessions(&e, &rcfg, rest_api, hf, &ex, why, sizeof(why)) < 0)
        log_msg(LOG_ERROR, "no session can run on this executor: %s", why);
    if (runner_start(runner, cl, ex, why) < 0)
        log_msg(LOG_ERROR, "cannot start the session runner: no session can run here");
    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    char reason[64];
    snprintf(reason, sizeof(reason), "executor stopping (%s)",
             sigabbrev_np(sig) ? sigabbrev_np(sig) : "signal");
    log_msg(LOG_INFO, "link: received SIG%s; saying goodbye",
            sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    runner_stop(runner);
    pthread_mutex_lock(&sh.mu); /* the REST API's runner tells the link nothing more */
    sh.cl = NULL;
    pthread_mutex_unlock(&sh.mu);
    link_client_stop(cl, reason);
    /* then the REST API: requests drain, its sessions keep running (re-attached by the next
     * start, D15) */
    daemon_stop(rest);
    rest = NULL;
    log_msg(LOG_INFO, "stopped");
out:
    daemon_stop(rest); /* a start that failed after the REST API came up */
    obs_otlp_stop(); /* flushes the spans still queued */
    runner_free(runner);
    exec_free(ex);
    host_facts_free(hf);
    agent_catalog_free(cat);
    if (have_rcfg)
        config_clear(&rcfg);
    for (size_t i = 0; i < e.n_owned; i++)
        free(e.owned[i]);
    return exit_code;
}
