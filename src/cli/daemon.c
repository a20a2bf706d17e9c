/*
 * daemon.c — `ah agent access-point` and `ah webui`: the same daemon path (CLI-and-enrollment.md
 * §1; `ah agent enroll --rest-api yes` runs it too, through daemon_start/daemon_stop), started in
 * this order so readiness means something:
 *   signals blocked → HTTP listening (healthz 200, readyz 503) → store open and migrated
 *   (readyz 200) → wait for SIGTERM/SIGINT → stop accepting, drain in-flight requests → close
 *   the store → exit 0.
 * A port in use, an unusable database or bad configuration is one line on stderr and exit 1.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../api/api.h"
#include "../auth/auth.h"
#include "../auth/signer.h"
#include "../enroll/link.h"
#include "../enroll/remote_ap.h"
#include "../obs/obs.h"
#include "cli.h"

#ifndef AH_VERSION
#define AH_VERSION "0.0.0"
#endif
#ifndef AH_GIT_COMMIT
#define AH_GIT_COMMIT ""
#endif
#ifndef AH_BUILD_DATE
#define AH_BUILD_DATE ""
#endif

/* SSE clients hold a descriptor each: allow as many as the hard limit permits. */
static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* $XDG_RUNTIME_DIR/ah, else /tmp/ah-<uid>: where the recorder socket lives (D17). */
static void runtime_dir(char *out, size_t n) {
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && *xdg)
        snprintf(out, n, "%s/ah", xdg);
    else
        snprintf(out, n, "/tmp/ah-%u", (unsigned)getuid());
}

/* Everything behind the HTTP front door, started once the port is bound. */
static int start_services(const char *command, const struct config *cfg,
                          const struct daemon_options *o, struct api_services *sv) {
    char self[4096], rundir[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        fprintf(stderr, "ah %s: cannot find its own executable\n", command);
        return AH_E_IO;
    }
    self[n] = '\0';
    runtime_dir(rundir, sizeof(rundir));
    struct exec_config ec = {
        .data_dir = cfg->data_dir,
        .runtime_dir = rundir,
        .self_exe = self,
        .config_path = cfg->config_path,
        .max_concurrent = cfg->max_concurrent_tasks,
        .no_local = cfg->max_concurrent_tasks == 0,
        .executor_lost_ms = cfg->executor_lost_timeout_ms,
        .tenant_max = cfg->max_sessions_per_tenant,
        .stop_grace_ms = cfg->stop_grace_ms,
        .clone_timeout_ms = cfg->clone_timeout_ms,
        .refs_timeout_ms = cfg->refs_timeout_ms,
        .lease_ms = cfg->replica_lease_ms,
        .snapshot_preference = (const char *const *)cfg->snapshot_preference,
        .workspace_template = cfg->workspace_template,
        .agents = cfg->agents,
        .n_agents = cfg->n_agents,
        .models = cfg->models,
        .env_allow = (const char *const *)cfg->agent_env,
        .sandbox = cfg->sandbox,
        .db_path = cfg->db,
        .webhook_allow_loopback = cfg->webhook_allow_loopback,
        .webhook_allow_private = cfg->webhook_allow_private,
        .webhook_timeout_ms = cfg->webhook_timeout_ms,
        .webhook_retry_base_ms = cfg->webhook_retry_base_ms,
        .webhook_retry_for_ms = cfg->webhook_retry_for_ms,
        /* `ah agent enroll --rest-api yes`: one budget with the executor's sessions */
        .slots_taken = o->slots_taken,
        .slots_changed = o->slots_changed,
        .slots_arg = o->slots_arg,
    };
    struct ah_problem p = {0};
    int rc = api_services_start(cfg->db, &ec, sv, &p);
    if (rc < 0)
        fprintf(stderr, "ah %s: %s\n", command, p.detail);
    problem_clear(&p);
    return rc;
}

/* `ah webui --open`: the default browser at url, through xdg-open when it is installed (quietly
 * nothing otherwise: a server or a container has no browser). Double fork: the opener is
 * nobody's child to reap, and the daemon never waits for it. */
static void open_browser(const char *url) {
    char exe[4096] = "";
    const char *path = getenv("PATH");
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int w = snprintf(exe, sizeof(exe), "%.*s/xdg-open", (int)len, p);
        if (w > 0 && (size_t)w < sizeof(exe) && access(exe, X_OK) == 0)
            break;
        exe[0] = '\0';
        p += len + (end ? 1 : 0);
    }
    if (!exe[0]) {
        log_msg(LOG_INFO, "--open: xdg-open is not installed; open %s yourself", url);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        if (fork() == 0) {
            int null = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (null >= 0) {
                dup2(null, 0);
                dup2(null, 1);
                dup2(null, 2);
            }
            execl(exe, "xdg-open", url, (char *)NULL);
        }
        _exit(0);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
    log_msg(LOG_INFO, "opened %s in the browser", url);
}

/* D22: a bind address only this machine can reach. */
static bool bind_is_loopback(const char *b) {
    return strcmp(b, "localhost") == 0 || strncmp(b, "127.", 4) == 0 || strcmp(b, "::1") == 0 ||
           strcmp(b, "[::1]") == 0;
}

/* The systemd watchdog is fed while the store answers (issue 18 item 7). */
static bool daemon_healthy(void *ctx) {
    return store_ready(api_store(ctx));
}

/* The executor control plane (QUIC, D24/D42), when --quic-port is given. */
static int start_link(const char *command, const struct config *cfg, struct fleet *fleet,
                      struct remote_ap *remote, struct link_server **ret) {
    struct link_server_config lc = {
        .bind = cfg->quic_bind ? cfg->quic_bind : cfg->bind,
        .port = (int)cfg->quic_port,
        .id = {.provider = cfg->quic_identity,
               .cert_file = cfg->quic_cert,
               .key_file = cfg->quic_key,
               .ca_file = cfg->quic_ca,
               .cert_cmd = cfg->quic_cert_cmd,
               .cert_ttl_ms = cfg->quic_cert_ttl_ms,
               .allow_insecure = cfg->allow_insecure},
        .trust_domain = cfg->executor_trust_domain,
        .id_patterns = (const char *const *)cfg->executor_id_patterns,
        .idle_timeout_ms = cfg->quic_idle_timeout_ms,
    };
    link_fleet_hooks(fleet, &lc.control);
    remote_ap_server_config(remote, &lc); /* sessions on executors (issue 16 item 5) */
    char err[512];
    if (link_server_start(&lc, ret, err, sizeof(err)) < 0) {
        fprintf(stderr, "ah %s: executor control plane: %s\n", command, err);
        return EXIT_CONFIG;
    }
    remote_ap_set_server(remote, *ret);
    return 0;
}

static void free_secret(char *s) {
    if (s)
        explicit_bzero(s, strlen(s));
    free(s);
}

/* The OIDC settings that need more than a copy (D36): the client secret read from its file
 * (trailing white space dropped), the redirect URI defaulting to public-url's callback. */
/* The OIDC sign-in settings both the access point and the proxy give auth (the secret and the
 * redirect URI are oidc_settings' to fill). */
static struct auth_oidc_config oidc_config(const struct config *cfg) {
    return (struct auth_oidc_config){
        .issuer = cfg->oidc_issuer,
        .client_id = cfg->oidc_client_id,
        .scopes = cfg->oidc_scopes,
        .provider_name = cfg->oidc_provider_name,
        .claim_user = cfg->oidc_claim_user,
        .claim_tenant = cfg->oidc_claim_tenant,
        .claim_roles = cfg->oidc_claim_roles,
        .default_tenant = cfg->oidc_default_tenant,
        .default_role = cfg->oidc_default_role,
        .idle_s = cfg->oidc_session_idle_s,
        .max_s = cfg->oidc_session_max_s,
        .post_logout_uri = cfg->oidc_post_logout_uri,
    };
}

static int oidc_settings(const char *command, const struct config *cfg, char **ret_secret,
                         char *redirect, size_t rn, struct auth_oidc_config *oc) {
    if (cfg->oidc_client_secret_file) {
        FILE *f = fopen(cfg->oidc_client_secret_file, "rb");
        char buf[1024];
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        bool big = f && n == sizeof(buf) - 1;
        if (f)
            fclose(f);
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
            n--;
        buf[n] = '\0';
        if (!f || big || !n || strlen(buf) != n) {
            explicit_bzero(buf, sizeof(buf));
            fprintf(stderr, "ah %s: oidc-client-secret-file %s is unreadable, empty or larger "
                            "than 1 KiB\n",
                    command, cfg->oidc_client_secret_file);
            return -1;
        }
        *ret_secret = strdup(buf);
        explicit_bzero(buf, sizeof(buf));
        if (!*ret_secret) {
            fprintf(stderr, "ah %s: out of memory\n", command);
            return -1;
        }
        oc->client_secret = *ret_secret;
    }
    if (cfg->oidc_redirect_uri) {
        oc->redirect_uri = cfg->oidc_redirect_uri;
    } else if (cfg->public_url) {
        size_t n = strlen(cfg->public_url);
        while (n && cfg->public_url[n - 1] == '/')
            n--;
        snprintf(redirect, rn, "%.*s/api/v1/auth/oidc/callback", (int)n, cfg->public_url);
        oc->redirect_uri = redirect;
    }
    return 0;
}

/* D49's optional separate address: a second, one-thread listener whose router has /metrics and
 * nothing else, so a scraper can reach it without credentials while the API port keeps /metrics
 * admin-only. No middleware and no host guard: it serves no secret and changes nothing. */
static int start_metrics_listener(const char *command, const struct config *cfg,
                                  struct api_ctx *api, struct router **ret_router,
                                  struct http_server **ret_http) {
    char host[256];
    const char *spec = cfg->metrics_bind, *colon = strrchr(spec, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    size_t hn = colon ? (size_t)(colon - spec) : 0;
    if (hn >= 2 && spec[0] == '[' && spec[hn - 1] == ']') { /* [::1]:9464 */
        spec++;
        hn -= 2;
    }
    if (!colon || hn == 0 || hn >= sizeof(host) || end == colon + 1 || *end || port < 0 ||
        port > 65535) {
        fprintf(stderr, "ah %s: --metrics-bind must be ADDRESS:PORT (e.g. 127.0.0.1:9464), not "
                        "'%s'\n", command, cfg->metrics_bind);
        return EXIT_CONFIG;
    }
    memcpy(host, spec, hn);
    host[hn] = 0;
    struct router *r = router_new();
    if (!r || api_metrics_register(r, api) < 0) {
        router_free(r);
        fprintf(stderr, "ah %s: out of memory\n", command);
        return EXIT_GENERAL;
    }
    struct http_config hc = {.bind = host, .port = (int)port, .max_body = 1024, .threads = 1,
                             .shutdown_grace_ms = (unsigned)cfg->shutdown_grace_ms,
                             .idle_timeout_ms = (unsigned)cfg->idle_timeout_ms};
    struct ah_problem p = {0};
    if (http_server_start(&hc, r, ret_http, &p) < 0) {
        fprintf(stderr, "ah %s: --metrics-bind: %s\n", command, p.detail);
        problem_clear(&p);
        router_free(r);
        return EXIT_GENERAL;
    }
    http_server_set_open_guard(*ret_http, false);
    *ret_router = r;
    json_t *f = json_pack("{s:s, s:i}", "bind", host, "port", http_server_port(*ret_http));
    log_json(LOG_INFO, "metrics listening", f);
    json_decref(f);
    return EXIT_OK;
}

void daemon_block_signals(sigset_t *ret_stop) {
    sigemptyset(ret_stop);
    sigaddset(ret_stop, SIGTERM);
    sigaddset(ret_stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, ret_stop, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Everything one daemon holds, from the HTTP front door to the store (heap: the handlers keep
 * pointers to api and hooks). */
struct daemon {
    const char *command;
    struct api_ctx api;
    struct http_hooks hooks;
    struct api_tunnels *tunnels; /* HTTP CONNECT to executors' sshd (issue 16 item 7) */
    struct router *router, *metrics_router;
    struct http_server *http, *metrics_http; /* --metrics-bind: the second */
    struct api_services sv;
    struct link_server *link; /* executors' QUIC listener, when configured */
    char *oidc_secret;
    char oidc_redirect[600];
    bool watchdog;
};

struct executor *daemon_exec(struct daemon *d) {
    return d->sv.exec;
}

struct agent_catalog *daemon_catalog(struct daemon *d) {
    return d->sv.catalog;
}

int daemon_port(struct daemon *d) {
    return http_server_port(d->http);
}

/* The stop order: no new request, the executors' link, then the services, the store last. */
static void daemon_teardown(struct daemon *d, int rc) {
    if (http_server_stop(d->metrics_http) == AH_E_TIMEOUT ||
        http_server_stop(d->http) == AH_E_TIMEOUT) {
        /* A handler still stuck after the shutdown grace (item 27): its thread may be using the
         * store, so nothing it shares is torn down. The database is crash-safe and sessions run
         * in their own processes (re-attached at the next start, D15). */
        log_msg(LOG_WARN, "stopped with stuck requests abandoned");
        _exit(rc);
    }
    api_tunnels_set_link(d->tunnels, NULL); /* the gate is stopped: no CONNECT comes any more */
    if (d->link)
        remote_ap_set_server(d->sv.remote, NULL); /* no more RPCs: the loop goes */
    link_server_stop(d->link); /* executors see a clean close; before the fleet goes */
    api_tunnels_free(d->tunnels);
    api_streams_stop();
    api_set_services(&d->api, NULL, NULL, NULL);
    auth_set_store(d->api.auth, NULL);
    api_services_stop(&d->sv);
    router_free(d->router);
    router_free(d->metrics_router);
    auth_free(d->api.auth);
    free_secret(d->oidc_secret);
    free(d);
}

void daemon_stop(struct daemon *d) {
    if (!d)
        return;
    if (d->watchdog)
        obs_watchdog_stop();
    obs_notify_stopping();
    daemon_teardown(d, EXIT_OK);
}

int daemon_start(const char *command, const struct config *cfg, const struct daemon_options *o,
                 struct daemon **ret) {
    static const struct daemon_options none = {0};
    if (!o)
        o = &none;
    raise_fd_limit();
    struct daemon *d = calloc(1, sizeof(*d));
    if (!d) {
        fprintf(stderr, "ah %s: out of memory\n", command);
        return EXIT_GENERAL;
    }
    d->command = command;
    d->api = (struct api_ctx){
        .version = AH_VERSION,
        .git_commit = *AH_GIT_COMMIT ? AH_GIT_COMMIT : NULL,
        .build_date = *AH_BUILD_DATE ? AH_BUILD_DATE : NULL,
        .keepalive_ms = cfg->sse_keepalive_ms,
    };
    struct auth_config ac = {
        .rate = (double)cfg->rate_limit,
        .burst = (double)cfg->rate_limit_burst,
        .task_rate = (double)cfg->task_rate_limit,
        .task_burst = (double)cfg->task_rate_limit * 5,
        .fail_rate = (double)cfg->auth_failure_rate,
        .jwks = cfg->jwks,
        .issuer = cfg->jwt_issuer,
        .audience = cfg->jwt_audience,
        .claim_tenant = cfg->jwt_claim_tenant,
        .claim_project = cfg->jwt_claim_project,
        .claim_roles = cfg->jwt_claim_roles,
        .leeway_s = cfg->jwt_leeway_s,
        .audit_retention_days = cfg->audit_retention_days,
        .oidc = oidc_config(cfg),
    };
    if (cfg->oidc_issuer && oidc_settings(command, cfg, &d->oidc_secret, d->oidc_redirect,
                                          sizeof(d->oidc_redirect), &ac.oidc) < 0) {
        free(d);
        return EXIT_CONFIG;
    }
    struct ah_problem ap = {0};
    /* auth borrows the secret until auth_free: freed after it */
    if (auth_new(&ac, &d->api.auth, &ap) < 0) {
        fprintf(stderr, "ah %s: %s\n", command, ap.detail);
        problem_clear(&ap);
        free_secret(d->oidc_secret);
        free(d);
        return EXIT_CONFIG;
    }
    api_access_hooks(&d->api, &d->hooks);
    /* without --quic-port a CONNECT is a clear 503 */
    if (api_tunnels_new(&d->api, &d->tunnels) < 0) {
        fprintf(stderr, "ah %s: out of memory\n", command);
        auth_free(d->api.auth);
        free_secret(d->oidc_secret);
        free(d);
        return EXIT_GENERAL;
    }
    d->router = router_new();
    /* the UI's routes come after every API route */
    bool routed = d->router && api_register(d->router, &d->api) == 0 &&
                  (!o->webui || api_webui_register(d->router, &d->api) == 0);
    if (!routed || api_streams_start(&d->api) < 0) {
        fprintf(stderr, "ah %s: %s\n", command,
                routed ? "cannot start the event-stream thread (see the log line above)"
                       : "out of memory");
        router_free(d->router);
        api_tunnels_free(d->tunnels);
        auth_free(d->api.auth);
        free_secret(d->oidc_secret);
        free(d);
        return EXIT_GENERAL;
    }
    struct http_config hc = {
        .bind = cfg->bind,
        .port = (int)cfg->port,
        .max_body = (size_t)cfg->max_body_bytes,
        .threads = (unsigned)cfg->http_threads,
        .cors_origins = (const char *const *)cfg->cors_origins,
        .shutdown_grace_ms = (unsigned)cfg->shutdown_grace_ms,
        .wake_coalesce_ms = (unsigned)cfg->sse_coalesce_ms,
        .idle_timeout_ms = (unsigned)cfg->idle_timeout_ms,
        .public_url = cfg->public_url,
        .hooks = &d->hooks,
        .tls_cert = cfg->tls_cert,
        .tls_key = cfg->tls_key,
        .connect = api_tunnels_hook(d->tunnels),
    };
    struct ah_problem p = {0};
    if (http_server_start(&hc, d->router, &d->http, &p) < 0) {
        fprintf(stderr, "ah %s: %s\n", command, p.detail);
        problem_clear(&p);
        api_streams_stop();
        router_free(d->router);
        api_tunnels_free(d->tunnels);
        auth_free(d->api.auth);
        free_secret(d->oidc_secret);
        free(d);
        return EXIT_GENERAL;
    }
    int port = http_server_port(d->http);
    bool v6 = strchr(cfg->bind, ':') != NULL;
    char url[300];
    snprintf(url, sizeof(url), "%s://%s%s%s:%d", cfg->tls_cert ? "https" : "http", v6 ? "[" : "",
             cfg->bind, v6 ? "]" : "", port);
    json_t *f = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s?}", "command", command, "url", url,
                          "port", port, "db", cfg->db, "data_dir", cfg->data_dir, "config",
                          cfg->config_path);
    log_json(LOG_INFO, "listening", f);
    json_decref(f);
    if (o->open) { /* a wildcard bind is reached on loopback */
        bool any = strcmp(cfg->bind, "0.0.0.0") == 0 || strcmp(cfg->bind, "::") == 0;
        char local[64];
        snprintf(local, sizeof(local), "%s://127.0.0.1:%d/", cfg->tls_cert ? "https" : "http", port);
        open_browser(any ? local : url);
    }

    int rc = EXIT_OK;
    if (cfg->metrics_bind && (rc = start_metrics_listener(command, cfg, &d->api,
                                                          &d->metrics_router,
                                                          &d->metrics_http)) != 0)
        goto fail;
    if (start_services(command, cfg, o, &d->sv) < 0) {
        rc = EXIT_GENERAL;
        goto fail;
    }
    auth_set_store(d->api.auth, d->sv.store);
    if (!bind_is_loopback(cfg->bind) && !cfg->insecure_no_auth && !auth_required(d->api.auth)) {
        /* D22: anyone who reaches this address would be admin */
        fprintf(stderr,
                "ah %s: refusing to serve %s without credentials: create an API key first "
                "(ah admin api-key create --role admin --tenant NAME --db %s), or bind to "
                "127.0.0.1, or pass --insecure-no-auth\n",
                command, cfg->bind, cfg->db);
        rc = EXIT_CONFIG;
        goto fail;
    }
    d->api.catalog = d->sv.catalog; /* before the store: api_set_services publishes it last */
    d->api.fleet = d->sv.fleet;
    d->api.remote = cfg->quic_port >= 0 ? d->sv.remote : NULL;
    api_set_services(&d->api, d->sv.store, d->sv.bus, d->sv.exec);
    if (cfg->quic_port >= 0 &&
        (rc = start_link(command, cfg, d->sv.fleet, d->sv.remote, &d->link)) != 0)
        goto fail;
    api_tunnels_set_link(d->tunnels, d->link);
    obs_notify_ready(); /* systemd Type=notify: serving from here */
    if (obs_watchdog_start(daemon_healthy, &d->api) < 0)
        log_msg(LOG_WARN, "cannot start the systemd watchdog thread");
    else
        d->watchdog = true;
    *ret = d;
    return EXIT_OK;
fail:
    daemon_teardown(d, rc);
    return rc;
}

static int run_daemon(const char *command, const struct config *cfg, bool open) {
    /* D28: everything the daemon and its sessions create (database, WAL/SHM, recordings,
     * prompts, workspaces) is readable by its owner only; children inherit the mask. */
    umask(077);
    log_setup(2, cfg->log_level);
    sigset_t stop;
    daemon_block_signals(&stop);
    /* D48: spans leave by their own thread, off the request path; off without an endpoint */
    if (obs_otlp_start(cfg->otlp_endpoint, "agent-harbor") < 0) {
        fprintf(stderr, "ah %s: --otlp-endpoint must be an http:// or https:// URL\n", command);
        return EXIT_CONFIG;
    }
    struct daemon_options o = {.webui = strcmp(command, "webui") == 0, .open = open};
    struct daemon *d = NULL;
    int rc = daemon_start(command, cfg, &o, &d);
    if (rc == EXIT_OK) {
        int sig = 0;
        while (sigwait(&stop, &sig) != 0)
            ;
        log_msg(LOG_INFO, "received %s; stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        daemon_stop(d);
    }
    obs_otlp_stop(); /* flushes the spans still queued */
    if (rc == EXIT_OK)
        log_msg(LOG_INFO, "stopped");
    return rc;
}

/* The proxy's own sign-in (issue 14 item 5, D36): with oidc-issuer set, `ah webui
 * --remote-server` signs people in itself, keeps their sessions in a database of its own, runs
 * the access hooks (cookie, CSRF, roles) in front of the proxied routes and names the caller to
 * the remote access point in a JWT it signs (auth/signer.h). Everything it starts is in here. */
struct proxy_auth {
    struct api_ctx api;
    struct http_hooks hooks;
    struct store *store;
    struct auth_signer *signer;
    char *secret;
};

static void proxy_auth_stop(struct proxy_auth *pa) {
    api_set_services(&pa->api, NULL, NULL, NULL);
    if (pa->api.auth)
        auth_set_store(pa->api.auth, NULL);
    store_close(pa->store);
    auth_free(pa->api.auth);
    auth_signer_free(pa->signer);
    free_secret(pa->secret);
    memset(pa, 0, sizeof(*pa));
}

/* Its sign-in sessions live in --db; the default database is a local server's, so the proxy's
 * default is a file of its own next to it. */
static char *proxy_db(const struct config *cfg) {
    AH_AUTOFREE char *def = config_default_db();
    if (!def || strcmp(cfg->db, def) != 0)
        return strdup(cfg->db);
    char *slash = strrchr(def, '/');
    size_t n = slash ? (size_t)(slash - def) + 1 : 0;
    char *out = malloc(n + sizeof("webui-proxy.db"));
    if (out)
        snprintf(out, n + sizeof("webui-proxy.db"), "%.*swebui-proxy.db", (int)n, def);
    return out;
}

static int proxy_auth_start(const struct config *cfg, struct proxy_config *pc,
                            struct proxy_auth *pa) {
    memset(pa, 0, sizeof(*pa));
    pa->api.version = AH_VERSION;
    struct auth_config ac = {
        .rate = (double)cfg->rate_limit,
        .burst = (double)cfg->rate_limit_burst,
        .fail_rate = (double)cfg->auth_failure_rate,
        .audit_retention_days = cfg->audit_retention_days,
        .oidc = oidc_config(cfg),
    };
    char redirect[600];
    if (oidc_settings("webui", cfg, &pa->secret, redirect, sizeof(redirect), &ac.oidc) < 0)
        return EXIT_CONFIG;
    struct ah_problem p = {0};
    int rc = EXIT_CONFIG;
    AH_AUTOFREE char *db = proxy_db(cfg);
    char key[4200], jwks_file[4200];
    snprintf(key, sizeof(key), "%s/webui-proxy-signing-key.jwk", cfg->data_dir);
    snprintf(jwks_file, sizeof(jwks_file), "%s/webui-proxy-jwks.json", cfg->data_dir);
    const char *iss = pc->jwt_issuer ? pc->jwt_issuer : "ah-webui";
    char aud[2100];
    snprintf(aud, sizeof(aud), "%s", pc->jwt_audience ? pc->jwt_audience : pc->url);
    for (size_t n = strlen(aud); !pc->jwt_audience && n > 0 && aud[n - 1] == '/';)
        aud[--n] = '\0'; /* the remote's URL as its base, like the proxy reads it */
    if (!db) {
        fprintf(stderr, "ah webui: out of memory\n");
        rc = EXIT_GENERAL;
    } else if (auth_new(&ac, &pa->api.auth, &p) < 0) {
        fprintf(stderr, "ah webui: %s\n", p.detail);
    } else if (store_open(db, &pa->store, &p) < 0) {
        fprintf(stderr, "ah webui: cannot open the database for sign-in sessions: %s\n",
                p.detail);
    } else if ((mkdir(cfg->data_dir, 0700) < 0 && errno != EEXIST) ||
               auth_signer_open(key, iss, aud, &pa->signer, &p) < 0) {
        fprintf(stderr, "ah webui: %s\n", p.code ? p.detail : "cannot create the data directory");
    } else {
        /* the public key set as a file too, for an access point started with jwks = that path */
        FILE *f = fopen(jwks_file, "we");
        bool ok = f && fputs(auth_signer_jwks(pa->signer), f) >= 0;
        if (f && fclose(f) != 0)
            ok = false;
        if (!ok)
            log_msg(LOG_WARN, "cannot write %s; the key set is served at /_ah/jwks.json",
                    jwks_file);
        auth_set_store(pa->api.auth, pa->store);
        api_set_services(&pa->api, pa->store, NULL, NULL); /* the audit records' store */
        api_access_hooks(&pa->api, &pa->hooks);
        pc->signer = pa->signer;
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "db", db, "iss", iss, "aud", aud,
                              "kid", auth_signer_kid(pa->signer), "jwks", jwks_file);
        log_json(LOG_INFO, "proxy sign-in on: callers go upstream as signed JWTs", j);
        json_decref(j);
        return 0;
    }
    problem_clear(&p);
    proxy_auth_stop(pa);
    return rc;
}

/* `ah webui --remote-server URL` (M17): the UI here, /api/v1 proxied to that access point; no
 * scheduler or executor in this process (and a store only for its own sign-in). Same signals,
 * logging and stop order. */
static int run_proxy(const struct config *cfg, const struct proxy_config *remote, bool open) {
    umask(077);
    log_setup(2, cfg->log_level);
    raise_fd_limit();
    sigset_t stop;
    daemon_block_signals(&stop);

    struct proxy_config conf = *remote, *pc = &conf;
    struct proxy_auth pa = {0};
    if (cfg->oidc_issuer && pc->api_key) {
        fprintf(stderr, "ah webui: oidc-issuer (the proxy's own sign-in) and "
                        "--remote-api-key-file exclude each other: choose one\n");
        return EXIT_USAGE;
    }
    if (pc->api_key && !bind_is_loopback(cfg->bind)) {
        /* whoever reaches this address would act with the configured key */
        fprintf(stderr, "ah webui: refusing to serve %s with --remote-api-key-file: bind to "
                        "127.0.0.1 (the key would be anyone's who reaches the address)\n",
                cfg->bind);
        return EXIT_CONFIG;
    }
    int arc = cfg->oidc_issuer ? proxy_auth_start(cfg, pc, &pa) : 0;
    if (arc)
        return arc;
    struct ah_problem p = {0};
    struct proxy *px = NULL;
    if (proxy_start(pc, &px, &p) < 0) {
        fprintf(stderr, "ah webui: %s\n", p.detail);
        int code = p.code;
        problem_clear(&p);
        proxy_auth_stop(&pa);
        return code == AH_E_INVAL ? EXIT_USAGE : EXIT_GENERAL;
    }
    struct api_ctx api = {.version = AH_VERSION};
    struct router *router = router_new();
    /* the sign-in routes, answered here, before the proxied /api/v1/... */
    if (!router || (pa.signer && api_auth_session_register(router, &pa.api) < 0) ||
        proxy_register(router, px) < 0 || api_webui_register(router, &api) < 0) {
        fprintf(stderr, "ah webui: out of memory\n");
        router_free(router);
        proxy_free(px);
        proxy_auth_stop(&pa);
        return EXIT_GENERAL;
    }
    struct http_config hc = {
        .bind = cfg->bind,
        .port = (int)cfg->port,
        .max_body = (size_t)cfg->max_body_bytes,
        .threads = (unsigned)cfg->http_threads,
        .cors_origins = (const char *const *)cfg->cors_origins,
        .shutdown_grace_ms = (unsigned)cfg->shutdown_grace_ms,
        .idle_timeout_ms = (unsigned)cfg->idle_timeout_ms,
        .public_url = cfg->public_url,
        .tls_cert = cfg->tls_cert,
        .tls_key = cfg->tls_key,
        .hooks = pa.signer ? &pa.hooks : NULL,
    };
    struct http_server *http = NULL;
    if (http_server_start(&hc, router, &http, &p) < 0) {
        fprintf(stderr, "ah webui: %s\n", p.detail);
        problem_clear(&p);
        router_free(router);
        proxy_free(px);
        proxy_auth_stop(&pa);
        return EXIT_GENERAL;
    }
    int port = http_server_port(http);
    bool v6 = strchr(cfg->bind, ':') != NULL;
    char url[300];
    snprintf(url, sizeof(url), "%s://%s%s%s:%d", cfg->tls_cert ? "https" : "http", v6 ? "[" : "",
             cfg->bind, v6 ? "]" : "", port);
    json_t *f = json_pack("{s:s, s:s, s:i, s:s}", "command", "webui", "url", url, "port", port,
                          "remote", pc->url);
    log_json(LOG_INFO, "listening", f);
    json_decref(f);
    if (open) {
        bool any = strcmp(cfg->bind, "0.0.0.0") == 0 || strcmp(cfg->bind, "::") == 0;
        char local[64];
        snprintf(local, sizeof(local), "%s://127.0.0.1:%d/", cfg->tls_cert ? "https" : "http", port);
        open_browser(any ? local : url);
    }
    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    log_msg(LOG_INFO, "received %s; stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    proxy_shutdown(px); /* waiting handlers answer now; open streams end */
    if (http_server_stop(http) == AH_E_TIMEOUT) {
        log_msg(LOG_WARN, "stopped with stuck requests abandoned");
        _exit(EXIT_OK);
    }
    proxy_free(px);
    router_free(router);
    proxy_auth_stop(&pa);
    log_msg(LOG_INFO, "stopped");
    return EXIT_OK;
}

static const char access_point_usage[] =
    "usage: ah agent access-point [OPTIONS]\n\n"
    "Runs the access point: the REST/SSE API of /api/v1, the scheduler and the local executor.";

static const char webui_usage[] =
    "usage: ah webui [OPTIONS]\n\n"
    "Runs the web UI with an in-process access point on one port: the application at /, "
    "the REST/SSE API under /api/v1.\n\n"
    "  --open   also open the UI in the default browser (xdg-open; skipped when not installed)\n"
    "  --remote-server URL  start no access point: serve the UI and pass every /api/v1 request\n"
    "                       to the access point at URL (http:// or https://)\n"
    "  --remote-ca PATH     verify that access point's TLS certificate with this CA bundle (PEM)\n"
    "  --remote-timeout MS  how long to wait for its answer to begin (default 60000; 504 after)\n"
    "  --remote-api-key-file PATH  send the API key in PATH to that access point for requests\n"
    "                       without their own credential (loopback --bind only)\n"
    "  With oidc-issuer set, the proxy signs people in itself and names each caller to that\n"
    "  access point in a 60 s ES256 JWT it signs (public keys at /_ah/jwks.json):\n"
    "  --remote-jwt-issuer ISS    the tokens' iss (default ah-webui)\n"
    "  --remote-jwt-audience AUD  the tokens' aud (default the --remote-server URL)";

static int run_command(int argc, char **argv, const char *command, const char *usage,
                       int64_t default_port, bool open, const struct proxy_config *remote) {
    struct config_defaults defs = {.port = default_port};
    struct config cfg;
    int rc = config_load(argc, argv, command, &defs, &cfg);
    if (rc < 0) {
        config_print_help(usage, &defs);
        return EXIT_OK;
    }
    if (rc)
        return rc;
    rc = remote && remote->url ? run_proxy(&cfg, remote, open) : run_daemon(command, &cfg, open);
    config_clear(&cfg);
    return rc;
}

int cmd_access_point(int argc, char **argv) {
    return run_command(argc, argv, "agent access-point", access_point_usage, 3001, false, NULL);
}

/* --remote-api-key-file: the key on its first line (never on the command line, where other
 * users could read it). One clear line when it cannot be used. */
static int read_key_file(const char *path, char *key, size_t n) {
    FILE *f = fopen(path, "re");
    if (!f) {
        fprintf(stderr, "ah webui: cannot read --remote-api-key-file %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    bool ok = fgets(key, (int)n, f) != NULL;
    fclose(f);
    size_t l = ok ? strcspn(key, "\r\n") : 0;
    if (ok)
        key[l] = '\0';
    if (!ok || l == 0 || l + 1 >= n || strpbrk(key, " \t")) {
        explicit_bzero(key, n);
        fprintf(stderr, "ah webui: --remote-api-key-file %s must hold one API key on its first "
                        "line\n", path);
        return -1;
    }
    return 0;
}

int cmd_webui(int argc, char **argv) {
    /* --open is webui's own flag: take it out before the shared option parser sees argv. */
    /* So are the proxy mode's --remote-* options (M17). */
    bool open = false;
    struct proxy_config remote = {0};
    static const char *const valued[] = {"--remote-server",       "--remote-ca",
                                         "--remote-timeout",      "--remote-api-key-file",
                                         "--remote-jwt-issuer",   "--remote-jwt-audience"};
    enum { N_VALUED = sizeof(valued) / sizeof(valued[0]) };
    const char *values[N_VALUED] = {NULL};
    int n = 0;
    for (int i = 0; i < argc; i++) {
        bool taken = false;
        for (size_t k = 0; i > 0 && k < N_VALUED && !taken; k++) {
            size_t l = strlen(valued[k]);
            if (strcmp(argv[i], valued[k]) == 0) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "ah webui: %s needs a value (see ah help webui)\n", valued[k]);
                    return EXIT_USAGE;
                }
                values[k] = argv[++i];
                taken = true;
            } else if (strncmp(argv[i], valued[k], l) == 0 && argv[i][l] == '=') {
                values[k] = argv[i] + l + 1;
                taken = true;
            }
        }
        if (taken)
            continue;
        if (i > 0 && strcmp(argv[i], "--open") == 0)
            open = true;
        else
            argv[n++] = argv[i];
    }
    remote.url = values[0];
    remote.ca_file = values[1];
    if (values[2]) {
        char *end = NULL;
        long ms = strtol(values[2], &end, 10);
        if (!*values[2] || *end || ms < 1 || ms > 3600000) {
            fprintf(stderr, "ah webui: --remote-timeout must be milliseconds from 1 to 3600000, "
                            "not '%s'\n", values[2]);
            return EXIT_USAGE;
        }
        remote.header_timeout_ms = ms;
    }
    if (!remote.url && (remote.ca_file || values[2] || values[3] || values[4] || values[5])) {
        fprintf(stderr, "ah webui: --remote-ca, --remote-timeout, --remote-api-key-file and "
                        "--remote-jwt-* need --remote-server\n");
        return EXIT_USAGE;
    }
    remote.jwt_issuer = values[4];
    remote.jwt_audience = values[5];
    char key[512] = "";
    if (values[3] && read_key_file(values[3], key, sizeof(key)) < 0)
        return EXIT_USAGE;
    remote.api_key = key[0] ? key : NULL;
    int rc = run_command(n, argv, "webui", webui_usage, 8080, open, &remote);
    explicit_bzero(key, sizeof(key));
    return rc;
}

void cmd_access_point_help(void) {
    struct config_defaults defs = {.port = 3001};
    config_print_help(access_point_usage, &defs);
}

void cmd_webui_help(void) {
    struct config_defaults defs = {.port = 8080};
    config_print_help(webui_usage, &defs);
}
