/*
 * connect.c — SSH through the access point (issue 16 item 7, CLI-and-enrollment §5.7): the
 * HTTP CONNECT hook the front gate calls, and the access point's half of the OpenTcp tunnel.
 *
 *   CONNECT <executor>:22 HTTP/1.1
 *   Proxy-Authorization: Bearer <jwt> | ApiKey <key> | Basic base64(<any user>:<key or jwt>)
 *
 * Order of the checks (each refusal is a Problem+JSON answer and `Connection: close`):
 *   400 a target that is not NAME:PORT
 *   503 no executor control plane on this server (no --quic-port), or not started yet
 *   407 no credentials or bad ones (with Proxy-Authenticate), when credentials are configured
 *       (D22: without any, every caller is the local admin, as on every other route)
 *   429 too many failed authentications from this address, or too many requests with this
 *       credential (its rate limit, as on every route)
 *   403 a role below operator
 *   404 no executor by that name (or SPIFFE id); the name is the last segment of the id
 *       spiffe://<td>/ah/agent/<name>; a dotted host (w-1.internal) is also tried by its first
 *       label, so SSH configurations that add a domain work
 *   502 the executor is offline or not connected here
 * then the tunnel stream is opened on the link's loop thread and the answer waits, without
 * blocking any thread, for the executor's OpenTcpOk (200 Connection Established) or
 * OpenTcpErr (403 refused by the executor: --ssh disabled or a destination it does not allow;
 * 502 its sshd cannot be reached; 504 no answer in time).
 *
 * Port 22 in the target asks for the executor's SSH destination (OpenTcp dst "ssh", which the
 * executor maps to its --ssh-dst); any other port P asks for 127.0.0.1:P, which the executor
 * allows only when that is exactly its --ssh-dst.
 *
 * Every attempt is audited (action tunnel.open, the executor's SPIFFE id as target, the client's
 * address as source, outcome and status); a tunnel that opened also gets tunnel.close when it
 * ends, and a log line with the bytes each way and how long it was open.
 */
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../auth/auth.h"
#include "../enroll/fleet.h"
#include "../enroll/link.h"
#include "../enroll/tunnel.h"
#include "routes.h"

struct api_tunnels {
    struct api_ctx *ctx;
    _Atomic(struct link_server *) link;
    struct http_connect_hook hook;
};

/* One CONNECT on its way through the link's loop. */
struct treq {
    struct api_tunnels *t;
    int fd;
    char id[256], name[128], dst[80], peer[80], rid[40];
    char tenant[AUTH_NAME_MAX + 1], actor[AUTH_ID_MAX], cred[AUTH_ID_MAX];
    bool opened;
};

static const char *title(int status) {
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 407: return "Proxy Authentication Required";
    case 429: return "Too Many Requests";
    case 502: return "Bad Gateway";
    case 504: return "Gateway Timeout";
    default: return "Service Unavailable";
    }
}

static const char *slug(int status) {
    switch (status) {
    case 400: return "bad-request";
    case 403: return "forbidden";
    case 404: return "not-found";
    case 407: return "proxy-authentication-required";
    case 429: return "rate-limited";
    case 502: return "bad-gateway";
    case 504: return "gateway-timeout";
    default: return "service-unavailable";
    }
}

/* Writes a complete Problem+JSON answer to fd (a fresh socketpair end: it has room). */
static void answer(int fd, int status, const char *detail, const char *rid, const char *extra) {
    if (fd < 0)
        return;
    char type[64];
    snprintf(type, sizeof(type), "/problems/%s", slug(status));
    json_t *j = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", title(status),
                          "status", status, "detail", detail ? detail : "", "requestId", rid);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    char head[512];
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\n"
                      "Content-Length: %zu\r\nX-Request-Id: %s\r\nCache-Control: no-store\r\n"
                      "%sConnection: close\r\n\r\n",
                      status, title(status), body ? strlen(body) : 0, rid, extra ? extra : "");
    if (hn > 0 && (size_t)hn < sizeof(head) && write(fd, head, (size_t)hn) == hn && body &&
        write(fd, body, strlen(body)) < 0) {
        /* the client left: nothing to tell it */
    }
    free(body);
}

static void audit(struct api_tunnels *t, const struct treq *q, const char *action,
                  const char *outcome, int status) {
    struct store *st = api_store(t->ctx);
    if (!st)
        return;
    struct audit_entry e = {
        .ts = time_now_ms(),
        .tenant = q->tenant[0] ? q->tenant : NULL,
        .actor = q->actor[0] ? q->actor : NULL,
        .credential_id = q->cred[0] ? q->cred : NULL,
        .action = action,
        .target = q->id[0] ? q->id : q->name,
        .request_id = q->rid,
        .source = q->peer[0] ? q->peer : NULL,
        .outcome = outcome,
        .status = status,
    };
    if (store_audit_append(st, &e) < 0)
        log_msg(LOG_WARN, "cannot write the audit record of %s (request %s)", action, q->rid);
}

static void log_tunnel(const struct treq *q, const char *msg, int status, const char *code) {
    json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s}", "id", q->rid, "executor",
                          q->id[0] ? q->id : q->name, "source", q->peer, "actor",
                          q->actor[0] ? q->actor : "local", "status", status, "code",
                          code ? code : "", "component", "tunnel");
    log_json(status == 200 ? LOG_INFO : LOG_WARN, msg, f);
    json_decref(f);
}

/* ---- on the loop thread --------------------------------------------------------------------- */

static void on_result(void *arg, int fd, int status, const char *code, const char *detail) {
    struct treq *q = arg;
    if (status == 200) {
        static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
        if (fd >= 0 && write(fd, ok, sizeof(ok) - 1) < 0) {
            /* the client left: the relay sees it next */
        }
        q->opened = true;
        log_tunnel(q, "tunnel opened", 200, NULL);
        audit(q->t, q, "tunnel.open", "success", 200);
        return;
    }
    answer(fd, status, detail, q->rid, NULL);
    log_tunnel(q, "tunnel refused", status, code);
    audit(q->t, q, "tunnel.open", status == 403 ? "denied" : "failure", status);
}

static void on_closed(void *arg, uint64_t up, uint64_t down, int64_t ms) {
    struct treq *q = arg;
    if (q->opened) {
        json_t *f = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "id", q->rid, "executor",
                              q->id, "source", q->peer, "bytes_up", (json_int_t)up, "bytes_down",
                              (json_int_t)down, "duration_ms", (json_int_t)ms, "component",
                              "tunnel");
        log_json(LOG_INFO, "tunnel closed", f);
        json_decref(f);
        audit(q->t, q, "tunnel.close", "success", 0);
    }
    free(q);
}

static const struct tunnel_ap_hooks HOOKS = {.result = on_result, .closed = on_closed};

static void start(void *arg) {
    struct treq *q = arg;
    struct link_server *sv = atomic_load(&q->t->link);
    if (!sv) { /* stopping */
        on_result(q, q->fd, 503, "stopping", "the access point is stopping");
        close(q->fd);
        free(q);
        return;
    }
    tunnel_ap_open(sv, q->id, q->dst, q->fd, &HOOKS, q);
}

/* ---- on the gate's thread ------------------------------------------------------------------- */

/* The credential of a Proxy-Authorization value as the auth layer reads an Authorization one:
 * Bearer and ApiKey as they are; Basic carries an API key or a token as its password (so plain
 * proxy clients, which only speak Basic, can tunnel: the user name is ignored). */
static bool credential(const char *v, char *out, size_t outn) {
    if (!v)
        return false;
    if (strncasecmp(v, "Basic ", 6) != 0) {
        snprintf(out, outn, "%s", v);
        return true;
    }
    const char *b = v + 6;
    while (*b == ' ')
        b++;
    size_t n = strlen(b);
    if (n == 0 || n > 4096 || n % 4)
        return false;
    unsigned char dec[3 * 4096 / 4 + 8];
    int dn = EVP_DecodeBlock(dec, (const unsigned char *)b, (int)n);
    if (dn < 0)
        return false;
    while (dn > 0 && b[n - 1] == '=' && dec[dn - 1] == 0) /* padding decodes to zero bytes */
        dn--, n--;
    dec[dn] = '\0';
    char *colon = memchr(dec, ':', (size_t)dn);
    const char *pass = colon ? colon + 1 : (const char *)dec;
    bool ok = *pass && strlen(pass) == (size_t)(dn - (pass - (char *)dec));
    if (ok)
        snprintf(out, outn, "%s %s", strncmp(pass, "ahk_", 4) == 0 ? "ApiKey" : "Bearer", pass);
    explicit_bzero(dec, sizeof(dec));
    return ok;
}

static void refuse(struct treq *q, int status, const char *detail, const char *extra,
                   bool audited) {
    answer(q->fd, status, detail, q->rid, extra);
    close(q->fd);
    log_tunnel(q, "tunnel refused", status, NULL);
    if (audited)
        audit(q->t, q, "tunnel.open", status == 403 || status == 407 ? "denied" : "failure",
              status);
    free(q);
}

#define PROXY_AUTH "Proxy-Authenticate: Bearer, ApiKey, Basic realm=\"ah\"\r\n"

static void on_connect(void *arg, const struct http_connect_request *rq, int fd) {
    struct api_tunnels *t = arg;
    struct treq *q = calloc(1, sizeof(*q));
    if (!q) {
        close(fd);
        return;
    }
    q->t = t;
    q->fd = fd;
    snprintf(q->peer, sizeof(q->peer), "%s", rq->peer ? rq->peer : "");
    snprintf(q->rid, sizeof(q->rid), "%s", rq->request_id ? rq->request_id : "0");
    /* NAME:PORT */
    const char *a = rq->authority ? rq->authority : "";
    const char *colon = strrchr(a, ':');
    int64_t port = 0;
    size_t hl = colon ? (size_t)(colon - a) : 0;
    if (!colon || !hl || hl >= sizeof(q->name) || parse_int64(colon + 1, 1, 65535, &port) < 0) {
        snprintf(q->name, sizeof(q->name), "%.100s", a);
        refuse(q, 400, "CONNECT needs an EXECUTOR:PORT target (e.g. w-1:22)", NULL, false);
        return;
    }
    memcpy(q->name, a, hl);
    q->name[hl] = '\0';
    if (port == 22)
        snprintf(q->dst, sizeof(q->dst), "ssh");
    else
        snprintf(q->dst, sizeof(q->dst), "127.0.0.1:%d", (int)port);
    struct store *st = api_store(t->ctx);
    struct fleet *fl = st ? t->ctx->fleet : NULL;
    if (!st || !fl || !atomic_load(&t->link)) {
        refuse(q, 503,
               st ? "this server has no executor control plane (start it with --quic-port)"
                  : "the server is starting; try again in a moment",
               "Retry-After: 1\r\n", false);
        return;
    }
    /* who is asking (D22: no credential source → the local admin) */
    struct auth *au = t->ctx->auth;
    if (au && auth_required(au)) {
        char cred[4200] = "", detail[256];
        struct auth_principal p = {0};
        int rc = AH_E_AUTH;
        if (!rq->proxy_auth) {
            snprintf(detail, sizeof(detail), "CONNECT needs Proxy-Authorization: Bearer <token>, "
                                             "ApiKey <key> or Basic with the key as password");
        } else if (!credential(rq->proxy_auth, cred, sizeof(cred))) {
            snprintf(detail, sizeof(detail), "Proxy-Authorization is not Bearer, ApiKey or a "
                                             "Basic user:password");
        } else {
            rc = auth_authenticate(au, cred, NULL, &p, detail, sizeof(detail));
        }
        explicit_bzero(cred, sizeof(cred));
        if (rc == AH_E_UNAVAIL) {
            refuse(q, 503, detail, "Retry-After: 1\r\n", false);
            return;
        }
        if (rc < 0) {
            struct auth_limit lim;
            auth_fail_take(au, q->peer, time_mono_ms(), &lim);
            if (!lim.allowed) {
                refuse(q, 429, "too many failed authentications from this address", NULL, false);
                return;
            }
            refuse(q, 407, detail, PROXY_AUTH, rq->proxy_auth != NULL);
            return;
        }
        snprintf(q->tenant, sizeof(q->tenant), "%s", p.tenant);
        snprintf(q->actor, sizeof(q->actor), "%s", p.subject);
        snprintf(q->cred, sizeof(q->cred), "%s", p.credential_id);
        /* D23: the credential's own bucket, as on every route (it also bounds the audit writes
         * a stream of refused CONNECTs could cause) */
        struct auth_limit lim;
        auth_rate_take(au, &p, false, time_mono_ms(), &lim);
        if (!lim.allowed) {
            char ra[48];
            snprintf(ra, sizeof(ra), "Retry-After: %lld\r\n", (long long)lim.retry_after);
            refuse(q, 429, "too many requests with this credential", ra, false);
            return;
        }
        if (p.role < AUTH_ROLE_OPERATOR) {
            char d[200];
            snprintf(d, sizeof(d), "SSH through the access point needs the operator role; this "
                                   "credential has %s",
                     auth_role_name(p.role));
            refuse(q, 403, d, NULL, true);
            return;
        }
    }
    /* which executor: its name (or SPIFFE id); a dotted host also by its first label */
    json_t *ej = NULL;
    if (fleet_get_json(fl, q->name, &ej) < 0) {
        const char *dot = strchr(q->name, '.');
        char first[128];
        if (dot && dot != q->name) {
            snprintf(first, sizeof(first), "%.*s", (int)(dot - q->name), q->name);
            if (fleet_get_json(fl, first, &ej) < 0)
                ej = NULL;
        }
    }
    if (!ej) {
        char d[200];
        snprintf(d, sizeof(d), "no executor named '%.100s'", q->name);
        refuse(q, 404, d, NULL, true);
        return;
    }
    const char *id = json_string_value(json_object_get(ej, "id"));
    const char *health = json_string_value(json_object_get(ej, "health"));
    snprintf(q->id, sizeof(q->id), "%s", id ? id : "");
    bool offline = !health || strcmp(health, "offline") == 0;
    json_decref(ej);
    if (offline) {
        char d[200];
        snprintf(d, sizeof(d), "executor '%.100s' is offline", q->name);
        refuse(q, 502, d, NULL, true);
        return;
    }
    struct link_server *sv = atomic_load(&t->link);
    if (!sv || link_post(link_server_loop(sv), start, q) < 0)
        refuse(q, 503, "cannot reach the executor link; try again", NULL, true);
}

/* ---- lifetime ------------------------------------------------------------------------------- */

int api_tunnels_new(struct api_ctx *ctx, struct api_tunnels **ret) {
    struct api_tunnels *t = calloc(1, sizeof(*t));
    if (!t)
        return AH_E_NOMEM;
    t->ctx = ctx;
    atomic_init(&t->link, NULL);
    t->hook = (struct http_connect_hook){.open = on_connect, .arg = t};
    *ret = t;
    return 0;
}

const struct http_connect_hook *api_tunnels_hook(struct api_tunnels *t) {
    return t ? &t->hook : NULL;
}

void api_tunnels_set_link(struct api_tunnels *t, struct link_server *sv) {
    if (t)
        atomic_store(&t->link, sv);
}

void api_tunnels_free(struct api_tunnels *t) {
    free(t);
}
