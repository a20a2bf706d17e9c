/*
 * config.c — one table of settings drives the config file, the environment and the flags, so
 * the three can never disagree about a name. Precedence: flags > environment > file > defaults
 * (issue 2, CLI-and-enrollment.md §1). Every value is checked; an unknown key, a bad number or an
 * unreadable file is a one-line error, never a silent default.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

enum key_type { K_STR, K_INT, K_LIST, K_LEVEL, K_BOOL /* a flag without value is true */ };

struct key {
    const char *name; /* flag --name, env AH_NAME, file key name */
    enum key_type type;
    int64_t min, max;
    size_t offset;
    const char *help;
};

#define OFF(f) offsetof(struct config, f)
static const struct key keys[] = {
    {"bind", K_STR, 0, 0, OFF(bind), "address to listen on (default 127.0.0.1)"},
    {"port", K_INT, 0, 65535, OFF(port), "TCP port; 0 picks a free one"},
    {"db", K_STR, 0, 0, OFF(db),
     "state database: a SQLite path or :memory: (default $XDG_DATA_HOME/agent-harbor/state.db)"},
    {"data-dir", K_STR, 0, 0, OFF(data_dir),
     "where workspaces and recordings live (default: next to the database)"},
    {"log-level", K_LEVEL, 0, 0, OFF(log_level), "debug, info, warn or error (default info)"},
    {"max-concurrent-tasks", K_INT, 0, 100000, OFF(max_concurrent_tasks),
     "sessions running at once; the rest wait queued (default: number of cores); 0: none run "
     "here (a pure control plane for enrolled executors)"},
    {"max-body-bytes", K_INT, 1024, 1LL << 30, OFF(max_body_bytes),
     "largest request body accepted (default 1048576)"},
    {"http-threads", K_INT, 1, 256, OFF(http_threads), "HTTP worker threads (default: cores)"},
    {"shutdown-grace-ms", K_INT, 0, 600000, OFF(shutdown_grace_ms),
     "how long a stop waits for in-flight requests before it closes them and exits "
     "(default 10000)"},
    {"cors-origins", K_LIST, 0, 0, OFF(cors_origins),
     "origins allowed to call the API from a browser (comma list; * for any)"},
    {"sse-keepalive-ms", K_INT, 100, 15000, OFF(sse_keepalive_ms),
     "how often an idle event stream sends a keep-alive comment (default 15000, D11)"},
    {"sse-coalesce-ms", K_INT, 0, 100, OFF(sse_coalesce_ms),
     "events for a stream are gathered this long before its connection wakes (default 5)"},
    {"idle-timeout-ms", K_INT, 1000, 3600000, OFF(idle_timeout_ms),
     "an HTTP connection whose headers or body make no progress, or that sits idle between "
     "requests, this long is closed (default 30000; event streams are exempt)"},
    {"public-url", K_STR, 0, 0, OFF(public_url),
     "the URL users reach the server by when it is not localhost (e.g. "
     "http://build-box:3001): requests for other host names are refused while the API has no "
     "credentials"},
    {"metrics-bind", K_STR, 0, 0, OFF(metrics_bind),
     "also serve GET /metrics, and nothing else, on this ADDRESS:PORT without credentials "
     "(e.g. 127.0.0.1:9464; port 0 picks one); /metrics stays on the API port too"},
    {"otlp-endpoint", K_STR, 0, 0, OFF(otlp_endpoint),
     "export trace spans over OTLP/HTTP JSON to this collector URL (e.g. "
     "http://127.0.0.1:4318; /v1/traces is added to a URL without a path)"},
    {"stop-grace-ms", K_INT, 0, 3600000, OFF(stop_grace_ms),
     "how long a stopped agent has between SIGTERM and SIGKILL (default 10000)"},
    {"clone-timeout-ms", K_INT, 100, 86400000, OFF(clone_timeout_ms),
     "a git clone or fetch while provisioning is abandoned after this (default 120000)"},
    {"replica-lease-ms", K_INT, 300, 600000, OFF(replica_lease_ms),
     "with several access points on one PostgreSQL database: how long one may stop renewing "
     "its lease before another takes over its sessions (default 15000; renewed every third)"},
    {"refs-timeout-ms", K_INT, 100, 3600000, OFF(refs_timeout_ms),
     "asking a remote for its branches is abandoned after this (default 10000)"},
    {"snapshot-preference", K_LIST, 0, 0, OFF(snapshot_preference),
     "workspace providers in order (default git,reflink,btrfs,copy)"},
    {"workspace-template", K_STR, 0, 0, OFF(workspace_template),
     "directory copied as the workspace of repo.mode=none tasks (default: empty)"},
    {"webhook-allow-loopback", K_BOOL, 0, 0, OFF(webhook_allow_loopback),
     "tasks' webhooks may target loopback addresses, over http:// too (for tests and local "
     "receivers)"},
    {"webhook-allow-private", K_BOOL, 0, 0, OFF(webhook_allow_private),
     "tasks' webhooks may target private-network addresses (10/8, 172.16/12, 192.168/16, "
     "fc00::/7)"},
    {"webhook-timeout-ms", K_INT, 100, 600000, OFF(webhook_timeout_ms),
     "one webhook delivery attempt is abandoned after this (default 10000)"},
    {"webhook-retry-base-ms", K_INT, 10, 3600000, OFF(webhook_retry_base_ms),
     "the delay before a failed webhook delivery is retried, doubled at each further failure "
     "(default 1000)"},
    {"webhook-retry-for-ms", K_INT, 1000, 30LL * 86400000, OFF(webhook_retry_for_ms),
     "how long a failing webhook delivery is retried before the event is counted as failed "
     "(default 86400000: 24 h)"},
    {"agent-env", K_LIST, 0, 0, OFF(agent_env),
     "environment variables passed to agents, e.g. ANTHROPIC_API_KEY,OPENAI_API_KEY"},
    {"tls-cert", K_STR, 0, 0, OFF(tls_cert),
     "serve HTTPS with this certificate chain (PEM; needs --tls-key); answers carry HSTS"},
    {"tls-key", K_STR, 0, 0, OFF(tls_key), "the private key of --tls-cert (PEM, unencrypted)"},
    /* authentication (docs/auth.md) */
    {"insecure-no-auth", K_BOOL, 0, 0, OFF(insecure_no_auth),
     "allow binding to a non-loopback address without any credentials configured (D22; "
     "anyone who reaches the port is admin)"},
    {"rate-limit", K_INT, 1, 1000000, OFF(rate_limit),
     "requests per second per credential (default 20)"},
    {"rate-limit-burst", K_INT, 1, 1000000, OFF(rate_limit_burst),
     "burst of requests per credential (default 100)"},
    {"max-sessions-per-tenant", K_INT, 0, 100000, OFF(max_sessions_per_tenant),
     "admission (D43): sessions one tenant runs at once; the rest wait queued (default 0: no "
     "limit)"},
    {"auth-failure-rate", K_INT, 1, 100000, OFF(auth_failure_rate),
     "failed authentications per second per client address before 429 (default 30, burst 10 "
     "times that)"},
    {"task-rate-limit", K_INT, 1, 100000, OFF(task_rate_limit),
     "task creations per second per tenant (default 2, burst 5 times that)"},
    {"jwks", K_STR, 0, 0, OFF(jwks),
     "JSON Web Key Set (file or https URL) that signs accepted bearer tokens; turns JWT on"},
    {"jwt-issuer", K_STR, 0, 0, OFF(jwt_issuer), "the iss every bearer token must carry"},
    {"jwt-audience", K_STR, 0, 0, OFF(jwt_audience), "the aud every bearer token must carry"},
    {"jwt-claim-tenant", K_STR, 0, 0, OFF(jwt_claim_tenant),
     "claim naming the tenant (default tenant)"},
    {"jwt-claim-project", K_STR, 0, 0, OFF(jwt_claim_project),
     "claim naming the project (default project)"},
    {"jwt-claim-roles", K_STR, 0, 0, OFF(jwt_claim_roles),
     "claim listing the roles (default roles)"},
    {"audit-retention-days", K_INT, 1, 36500, OFF(audit_retention_days),
     "audit records older than this many days are deleted (default: kept for ever)"},
    {"jwt-leeway-s", K_INT, 0, 600, OFF(jwt_leeway_s),
     "clock skew allowed on exp and nbf, in seconds (default 60)"},
    /* the executor control plane (QUIC + mutual TLS, docs/executors.md) */
    {"quic-port", K_INT, 0, 65535, OFF(quic_port),
     "UDP port of the executor control plane (QUIC); unset: no listener; 0 picks a free one"},
    {"quic-bind", K_STR, 0, 0, OFF(quic_bind), "address the QUIC listener binds (default: --bind)"},
    {"quic-identity", K_STR, 0, 0, OFF(quic_identity),
     "where the access point's certificate comes from: files (default), exec or insecure"},
    {"quic-cert", K_STR, 0, 0, OFF(quic_cert),
     "PEM certificate of the access point (URI SAN spiffe://<trust-domain>/ah/serve)"},
    {"quic-key", K_STR, 0, 0, OFF(quic_key), "PEM private key of --quic-cert"},
    {"quic-ca", K_STR, 0, 0, OFF(quic_ca), "PEM CA bundle executors' certificates must chain to"},
    {"quic-cert-cmd", K_STR, 0, 0, OFF(quic_cert_cmd),
     "with --quic-identity exec: a command printing the PEM certificate and key"},
    {"quic-cert-ttl-ms", K_INT, 1000, 86400000LL * 365, OFF(quic_cert_ttl_ms),
     "with --quic-identity exec: how often the command is run again (default 3600000)"},
    {"allow-insecure", K_BOOL, 0, 0, OFF(allow_insecure),
     "accept --quic-identity insecure (executors' certificate chains are not verified; "
     "development only)"},
    {"executor-trust-domain", K_STR, 0, 0, OFF(executor_trust_domain),
     "trust domain of accepted executors, spiffe://<this>/ah/agent/<name> (default: the one of "
     "--quic-cert)"},
    {"executor-id-patterns", K_LIST, 0, 0, OFF(executor_id_patterns),
     "only executors whose SPIFFE id matches one of these shell patterns (comma list), e.g. "
     "spiffe://example.org/ah/agent/build-*"},
    {"quic-idle-timeout-ms", K_INT, 1000, 3600000, OFF(quic_idle_timeout_ms),
     "an executor connection silent this long is closed (default 30000)"},
    {"executor-lost-timeout-ms", K_INT, 1000, 86400000, OFF(executor_lost_timeout_ms),
     "a session on an executor unreachable this long is failed; one it never started is queued "
     "again (default 300000)"},
    /* OIDC sign-in for people (D36, docs/auth.md) */
    {"oidc-issuer", K_STR, 0, 0, OFF(oidc_issuer),
     "OpenID Provider whose users may sign in to the web UI (its issuer URL; discovery at "
     "/.well-known/openid-configuration); turns OIDC sign-in on"},
    {"oidc-client-id", K_STR, 0, 0, OFF(oidc_client_id), "this server's client id there"},
    {"oidc-client-secret-file", K_STR, 0, 0, OFF(oidc_client_secret_file),
     "file holding the client secret (confidential client, HTTP Basic); without it a public "
     "client (PKCE alone)"},
    {"oidc-redirect-uri", K_STR, 0, 0, OFF(oidc_redirect_uri),
     "the callback registered at the provider (default: public-url + "
     "/api/v1/auth/oidc/callback); https makes the cookies Secure"},
    {"oidc-scopes", K_STR, 0, 0, OFF(oidc_scopes),
     "scopes asked besides openid, space separated (e.g. \"profile email\")"},
    {"oidc-provider-name", K_STR, 0, 0, OFF(oidc_provider_name),
     "name on the web UI's sign-in button (default: your identity provider)"},
    {"oidc-claim-user", K_STR, 0, 0, OFF(oidc_claim_user),
     "ID token claim naming the user in audit records (default sub)"},
    {"oidc-claim-tenant", K_STR, 0, 0, OFF(oidc_claim_tenant),
     "ID token claim naming the tenant (default tenant)"},
    {"oidc-claim-roles", K_STR, 0, 0, OFF(oidc_claim_roles),
     "ID token claim with the role(s): viewer, operator, admin (default roles)"},
    {"oidc-default-tenant", K_STR, 0, 0, OFF(oidc_default_tenant),
     "tenant of users whose token names none (default: such sign-ins are refused)"},
    {"oidc-default-role", K_STR, 0, 0, OFF(oidc_default_role),
     "role of users whose token grants none (default: such sign-ins are refused)"},
    {"oidc-session-idle-s", K_INT, 1, 31536000, OFF(oidc_session_idle_s),
     "a browser session unused this long ends (default 3600)"},
    {"oidc-session-max-s", K_INT, 1, 31536000, OFF(oidc_session_max_s),
     "a browser session ends this long after sign-in whatever its use (default 43200)"},
    {"oidc-post-logout-uri", K_STR, 0, 0, OFF(oidc_post_logout_uri),
     "where the provider sends the browser after signing out there too (RP-initiated logout; "
     "default: sign out of this server only)"},
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static const struct key *find_key(const char *name, size_t len) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (strlen(keys[i].name) == len && memcmp(keys[i].name, name, len) == 0)
            return &keys[i];
    return NULL;
}

int config_flag_kind(const char *name, size_t len) {
    const struct key *k = find_key(name, len);
    return !k ? -1 : k->type == K_BOOL ? 1 : 0;
}

static void env_name(const char *key, char *out, size_t n) {
    size_t k = (size_t)snprintf(out, n, "AH_");
    for (const char *p = key; *p && k + 1 < n; p++)
        out[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[k] = '\0';
}

static void free_list(char **list) {
    for (char **p = list; p && *p; p++)
        free(*p);
    free(list);
}

/* Splits "a, b,c" into a NULL-terminated list. */
static char **split_list(const char *s) {
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    if (n > AH_LIMIT_LIST_ITEMS)
        return NULL;
    char **list = calloc(n + 1, sizeof(char *));
    if (!list)
        return NULL;
    size_t k = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        while (len && p[len - 1] == ' ')
            len--;
        if (len && !(list[k++] = strndup(p, len))) {
            free_list(list);
            return NULL;
        }
        p += strcspn(p, ",");
    }
    return list;
}

/* Sets one key from text (flag or environment). `source` names where it came from. */
static int set_text(struct config *c, const struct key *k, const char *value, const char *source) {
    void *field = (char *)c + k->offset;
    switch (k->type) {
    case K_STR: {
        if (!*value) {
            fprintf(stderr, "ah: %s: %s must not be empty\n", source, k->name);
            return EXIT_CONFIG;
        }
        char *copy = strdup(value);
        if (!copy)
            return EXIT_GENERAL;
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case K_INT: {
        int64_t v;
        if (parse_int64(value, k->min, k->max, &v) < 0) {
            fprintf(stderr, "ah: %s: %s must be an integer from %lld to %lld, not '%s'\n", source,
                    k->name, (long long)k->min, (long long)k->max, value);
            return EXIT_CONFIG;
        }
        *(int64_t *)field = v;
        return 0;
    }
    case K_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0) {
            *(bool *)field = true;
        } else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 ||
                   strcmp(value, "no") == 0) {
            *(bool *)field = false;
        } else {
            fprintf(stderr, "ah: %s: %s must be true or false, not '%s'\n", source, k->name,
                    value);
            return EXIT_CONFIG;
        }
        return 0;
    case K_LEVEL:
        if (log_level_parse(value, (enum log_level *)field) < 0) {
            fprintf(stderr, "ah: %s: %s must be debug, info, warn or error, not '%s'\n", source,
                    k->name, value);
            return EXIT_CONFIG;
        }
        return 0;
    case K_LIST: {
        char **list = split_list(value);
        if (!list) {
            fprintf(stderr, "ah: %s: %s has more than %d items\n", source, k->name,
                    AH_LIMIT_LIST_ITEMS);
            return EXIT_CONFIG;
        }
        free_list(*(char ***)field);
        *(char ***)field = list;
        return 0;
    }
    }
    return EXIT_CONFIG;
}

/* Sets one key from a parsed config-file value. */
static int set_json(struct config *c, const struct key *k, const json_t *v, const char *file) {
    char source[512];
    snprintf(source, sizeof(source), "%s", file);
    if (k->type == K_BOOL) {
        if (!json_is_boolean(v)) {
            fprintf(stderr, "ah: %s: %s must be true or false\n", file, k->name);
            return EXIT_CONFIG;
        }
        *(bool *)((char *)c + k->offset) = json_is_true(v);
        return 0;
    }
    if (k->type == K_INT) {
        if (!json_is_integer(v)) {
            fprintf(stderr, "ah: %s: %s must be an integer\n", file, k->name);
            return EXIT_CONFIG;
        }
        char num[32];
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
        return set_text(c, k, num, source);
    }
    if (k->type == K_LIST) {
        if (!json_is_array(v) || json_array_size(v) > AH_LIMIT_LIST_ITEMS) {
            fprintf(stderr, "ah: %s: %s must be an array of at most %d strings\n", file, k->name,
                    AH_LIMIT_LIST_ITEMS);
            return EXIT_CONFIG;
        }
        char **list = calloc(json_array_size(v) + 1, sizeof(char *));
        if (!list)
            return EXIT_GENERAL;
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) {
            if (!json_is_string(item) || !(list[i] = strdup(json_string_value(item)))) {
                free_list(list);
                fprintf(stderr, "ah: %s: %s must be an array of strings\n", file, k->name);
                return EXIT_CONFIG;
            }
        }
        free_list(*(char ***)((char *)c + k->offset));
        *(char ***)((char *)c + k->offset) = list;
        return 0;
    }
    if (!json_is_string(v)) {
        fprintf(stderr, "ah: %s: %s must be a string\n", file, k->name);
        return EXIT_CONFIG;
    }
    return set_text(c, k, json_string_value(v), source);
}

/* [models."ID"] (D40): overrides or adds a model of GET …/models: agent, name, provider,
 * context_window, input_pricing, output_pricing (USD per million tokens), capabilities, status. */
static int set_model(struct config *c, const char *rest, const json_t *v, const char *file) {
    static const char *const fields[] = {"agent", "name", "provider", "context_window",
                                         "input_pricing", "output_pricing", "capabilities",
                                         "status", NULL};
    const char *dot = strrchr(rest, '.');
    const char *f = dot ? dot + 1 : "";
    bool known = false;
    for (const char *const *k = fields; *k; k++)
        known |= !strcmp(*k, f);
    bool ok = known && dot != rest && (size_t)(dot - rest) <= AH_LIMIT_NAME;
    if (ok && (!strcmp(f, "context_window")))
        ok = json_is_integer(v) && json_integer_value(v) > 0;
    else if (ok && (!strcmp(f, "input_pricing") || !strcmp(f, "output_pricing")))
        ok = json_is_number(v) && json_number_value(v) >= 0;
    else if (ok && !strcmp(f, "capabilities"))
        ok = json_is_array(v);
    else if (ok)
        ok = json_is_string(v);
    if (!ok) {
        fprintf(stderr, "ah: %s: models.%s: a model section takes agent, name, provider, status "
                        "(strings), context_window (a positive integer), input_pricing and "
                        "output_pricing (USD per million tokens) and capabilities (strings)\n",
                file, rest);
        return EXIT_CONFIG;
    }
    char id[AH_LIMIT_NAME + 1];
    snprintf(id, sizeof(id), "%.*s", (int)(dot - rest), rest);
    if (!c->models && !(c->models = json_object()))
        return EXIT_GENERAL;
    json_t *m = json_object_get(c->models, id);
    if (!m && (json_object_set_new(c->models, id, m = json_object()) < 0 || !m))
        return EXIT_GENERAL;
    return json_object_set(m, f, (json_t *)v) < 0 ? EXIT_GENERAL : 0;
}

/* [agents.NAME] command = "…", format = "text" | "jsonl" (D19): a custom agent. */
static int set_agent(struct config *c, const char *rest, const json_t *v, const char *file) {
    const char *dot = strrchr(rest, '.');
    if (!dot || dot == rest || !json_is_string(v) ||
        (strcmp(dot + 1, "command") && strcmp(dot + 1, "format"))) {
        fprintf(stderr, "ah: %s: agents.%s: an agent section takes command and format strings\n",
                file, rest);
        return EXIT_CONFIG;
    }
    size_t nlen = (size_t)(dot - rest);
    struct agent_config *a = NULL;
    for (size_t i = 0; i < c->n_agents; i++)
        if (strlen(c->agents[i].type) == nlen && !strncmp(c->agents[i].type, rest, nlen))
            a = &c->agents[i];
    if (!a) {
        if (c->n_agents == AH_LIMIT_AGENTS * 4) {
            fprintf(stderr, "ah: %s: too many custom agents\n", file);
            return EXIT_CONFIG;
        }
        struct agent_config *na = realloc(c->agents, (c->n_agents + 1) * sizeof(*na));
        if (!na)
            return EXIT_GENERAL;
        c->agents = na;
        a = &c->agents[c->n_agents++];
        memset(a, 0, sizeof(*a));
        if (!(a->type = strndup(rest, nlen)))
            return EXIT_GENERAL;
    }
    const char *val = json_string_value(v);
    if (!strcmp(dot + 1, "format") && strcmp(val, "text") && strcmp(val, "jsonl")) {
        fprintf(stderr, "ah: %s: agents.%s must be text or jsonl\n", file, rest);
        return EXIT_CONFIG;
    }
    char **field = !strcmp(dot + 1, "command") ? &a->command : &a->format;
    free(*field);
    return (*field = strdup(val)) ? 0 : EXIT_GENERAL;
}

int config_read(const char *command, const char *path, bool must_exist, json_t **ret_vals) {
    *ret_vals = NULL;
    char who[96];
    snprintf(who, sizeof(who), "ah%s%s", command ? " " : "", command ? command : "");
    FILE *f = fopen(path, "re");
    if (!f) {
        if (!must_exist && errno == ENOENT)
            return 0;
        fprintf(stderr, "%s: cannot read config file %s: %s\n", who, path, strerror(errno));
        return EXIT_CONFIG;
    }
    struct ah_buf b = {.max = 1024 * 1024};
    char chunk[4096];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (ah_buf_append(&b, chunk, n) < 0) {
            fprintf(stderr, "%s: config file %s is larger than 1 MiB\n", who, path);
            rc = EXIT_CONFIG;
            break;
        }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "%s: cannot read config file %s: %s\n", who, path, strerror(errno));
        rc = EXIT_CONFIG;
    }
    fclose(f);
    struct ah_problem p = {0};
    if (rc == 0 && toml_parse(b.p ? b.p : "", b.n, ret_vals, &p) < 0) {
        fprintf(stderr, "%s: %s: %s\n", who, path, p.detail);
        json_decref(*ret_vals);
        *ret_vals = NULL;
        rc = EXIT_CONFIG;
    }
    ah_buf_clear(&b);
    problem_clear(&p);
    return rc;
}

static int load_file(struct config *c, const char *path, bool must_exist) {
    json_t *vals = NULL;
    int rc = config_read(NULL, path, must_exist, &vals);
    if (rc || !vals)
        return rc;
    const char *key;
    json_t *v;
    json_object_foreach(vals, key, v) {
        if (rc)
            break;
        const struct key *k = find_key(key, strlen(key));
        if (!strcmp(key, "remote-server") || !strncmp(key, "server[", 7)) {
            continue; /* the client commands' settings (CLI §1) share the file */
        } else if (strncmp(key, "agents.", 7) == 0) {
            rc = set_agent(c, key + 7, v, path);
        } else if (strncmp(key, "models.", 7) == 0) {
            rc = set_model(c, key + 7, v, path);
        } else if (strncmp(key, "sandbox.", 8) == 0) {
            /* checked by the sandbox layer when the server starts (sandbox_set_new) */
            if (!c->sandbox && !(c->sandbox = json_object()))
                rc = EXIT_GENERAL;
            else if (json_object_set(c->sandbox, key + 8, v) < 0)
                rc = EXIT_GENERAL;
        } else if (!k) {
            fprintf(stderr, "ah: %s: unknown setting '%s' (see ah help agent access-point)\n",
                    path, key);
            rc = EXIT_CONFIG;
        } else {
            rc = set_json(c, k, v, path);
        }
    }
    json_decref(vals);
    if (rc == 0 && !(c->config_path = strdup(path)))
        rc = EXIT_GENERAL;
    return rc;
}

static char *default_path(const char *xdg_var, const char *fallback, const char *file);

char *config_user_path(void) {
    return default_path("XDG_CONFIG_HOME", ".config", "config.toml");
}

char *config_default_db(void) {
    return default_path("XDG_DATA_HOME", ".local/share", "state.db");
}

int config_open_store(const char *what, const char *db, struct store **ret) {
    AH_AUTOFREE char *def = db && *db ? NULL : config_default_db();
    if (!(db && *db) && !(db = def)) {
        fprintf(stderr, "ah %s: out of memory\n", what);
        return EXIT_GENERAL;
    }
    struct ah_problem p = {0};
    if (store_open(db, ret, &p) < 0) { /* the detail keeps a URL's password to itself */
        fprintf(stderr, "ah %s: cannot open the database: %s\n", what, p.detail);
        problem_clear(&p);
        return EXIT_CONFIG;
    }
    return 0;
}

static char *default_path(const char *xdg_var, const char *fallback, const char *file) {
    const char *base = getenv(xdg_var);
    char path[4096];
    if (base && *base)
        snprintf(path, sizeof(path), "%s/agent-harbor/%s", base, file);
    else if (getenv("HOME"))
        snprintf(path, sizeof(path), "%s/%s/agent-harbor/%s", getenv("HOME"), fallback, file);
    else
        snprintf(path, sizeof(path), "/tmp/agent-harbor/%s", file);
    return strdup(path);
}

void config_clear(struct config *c) {
    json_decref(c->models);
    c->models = NULL;
    for (size_t i = 0; i < c->n_agents; i++) {
        free(c->agents[i].type);
        free(c->agents[i].command);
        free(c->agents[i].format);
    }
    free(c->agents);
    json_decref(c->sandbox);
    free(c->workspace_template);
    free(c->jwks);
    free(c->jwt_issuer);
    free(c->jwt_audience);
    free(c->jwt_claim_tenant);
    free(c->jwt_claim_project);
    free(c->jwt_claim_roles);
    char **oidc[] = {&c->oidc_issuer,        &c->oidc_client_id,      &c->oidc_client_secret_file,
                     &c->oidc_redirect_uri,  &c->oidc_scopes,         &c->oidc_provider_name,
                     &c->oidc_claim_user,    &c->oidc_claim_tenant,   &c->oidc_claim_roles,
                     &c->oidc_default_tenant, &c->oidc_default_role, &c->oidc_post_logout_uri};
    for (size_t i = 0; i < sizeof(oidc) / sizeof(oidc[0]); i++)
        free(*oidc[i]);
    free_list(c->snapshot_preference);
    free_list(c->agent_env);
    free(c->bind);
    free(c->public_url);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->otlp_endpoint);
    free(c->metrics_bind);
    free(c->db);
    free(c->data_dir);
    free(c->config_path);
    free_list(c->cors_origins);
    free(c->quic_bind);
    free(c->quic_identity);
    free(c->quic_cert);
    free(c->quic_key);
    free(c->quic_ca);
    free(c->quic_cert_cmd);
    free(c->executor_trust_domain);
    free_list(c->executor_id_patterns);
    memset(c, 0, sizeof(*c));
}

void config_print_help(const char *usage, const struct config_defaults *defs) {
    printf("%s\n\nOptions (each also AH_<NAME> in the environment and <name> in the config "
           "file;\nflags win over the environment, which wins over the file):\n",
           usage);
    for (size_t i = 0; i < N_KEYS; i++) {
        char env[64];
        env_name(keys[i].name, env, sizeof(env));
        printf("  --%-22s %s", keys[i].name, keys[i].help);
        if (strcmp(keys[i].name, "port") == 0)
            printf(" (default %lld)", (long long)defs->port);
        printf("\n  %-24s   env %s\n", "", env);
    }
    printf("  --%-22s %s\n", "config PATH",
           "config file (TOML subset; default $XDG_CONFIG_HOME/agent-harbor/config.toml)");
    printf("  --%-22s %s\n", "help", "show this help");
}

int config_load(int argc, char **argv, const char *command, const struct config_defaults *defs,
                struct config *ret) {
    struct config c = {
        .port = defs->port,
        .log_level = LOG_INFO,
        .max_body_bytes = AH_LIMIT_BODY_DEFAULT,
        .shutdown_grace_ms = 10000,
        .stop_grace_ms = 10000,
        .clone_timeout_ms = 120000,
        .refs_timeout_ms = 10000,
        .replica_lease_ms = 15000,
        .sse_keepalive_ms = 15000,
        .sse_coalesce_ms = 5,
        .idle_timeout_ms = 30000,
        .quic_port = -1, /* no executor listener unless asked */
    };
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c.max_concurrent_tasks = cores > 0 ? cores : 1;
    int rc = 0;

    /* 1. find --config first: the file is the lowest layer but named on the command line */
    const char *config_path = getenv("AH_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return -1;
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ah %s: --config needs a path\n", command);
                return EXIT_USAGE;
            }
            config_path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            config_path = argv[i] + 9;
        }
    }
    if (config_path && *config_path) {
        rc = load_file(&c, config_path, true);
    } else {
        char *user = config_user_path();
        rc = user ? load_file(&c, user, false) : EXIT_GENERAL;
        free(user);
    }

    /* 2. environment */
    for (size_t i = 0; rc == 0 && i < N_KEYS; i++) {
        char env[64];
        env_name(keys[i].name, env, sizeof(env));
        const char *v = getenv(env);
        if (v)
            rc = set_text(&c, &keys[i], v, env);
    }

    /* 3. flags */
    for (int i = 1; rc == 0 && i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0)
            continue;
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "ah %s: unexpected argument '%s' (see ah help %s)\n", command, a,
                    command);
            rc = EXIT_USAGE;
            break;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct key *k = find_key(name, len);
        if (!k) {
            fprintf(stderr, "ah %s: unknown option '%s' (see ah help %s)\n", command, a, command);
            rc = EXIT_USAGE;
            break;
        }
        const char *value = eq ? eq + 1
                            : k->type == K_BOOL ? "true"
                            : (i + 1 < argc ? argv[++i] : NULL);
        if (!value) {
            fprintf(stderr, "ah %s: --%s needs a value\n", command, k->name);
            rc = EXIT_USAGE;
            break;
        }
        char source[80];
        snprintf(source, sizeof(source), "--%s", k->name);
        rc = set_text(&c, k, value, source);
    }

    /* 4. defaults that depend on other settings */
    if (rc == 0 && !c.bind && !(c.bind = strdup("127.0.0.1")))
        rc = EXIT_GENERAL;
    if (rc == 0 && !c.db && !(c.db = default_path("XDG_DATA_HOME", ".local/share", "state.db")))
        rc = EXIT_GENERAL;
    if (rc == 0 && !c.data_dir) {
        char dir[4096];
        /* :memory: and database URLs (postgres://…) name no directory: the XDG default */
        if (strcmp(c.db, ":memory:") == 0 || strstr(c.db, "://")) {
            char *d = default_path("XDG_DATA_HOME", ".local/share", "");
            snprintf(dir, sizeof(dir), "%s", d ? d : "/tmp/agent-harbor/");
            free(d);
        } else {
            snprintf(dir, sizeof(dir), "%s", c.db);
            char *slash = strrchr(dir, '/');
            if (slash == dir)
                slash[1] = '\0';
            else if (slash)
                *slash = '\0';
            else
                snprintf(dir, sizeof(dir), ".");
        }
        if (!(c.data_dir = strdup(dir)))
            rc = EXIT_GENERAL;
    }
    for (size_t i = 0; rc == 0 && i < c.n_agents; i++) {
        if (!c.agents[i].command) {
            fprintf(stderr, "ah: agents.%s has no command\n", c.agents[i].type);
            rc = EXIT_CONFIG;
        } else if (!c.agents[i].format && !(c.agents[i].format = strdup("text"))) {
            rc = EXIT_GENERAL;
        }
    }
    if (rc) {
        config_clear(&c);
        return rc;
    }
    *ret = c;
    return 0;
}
