/*
 * link.h — the executor link: QUIC (ngtcp2 0.12 + GnuTLS, TLS 1.3, ALPN "ah-ctrl/1", mutual
 * authentication) between the access point (server) and its executors (clients), D24, D41, D42.
 *
 * One connection per executor; one event-loop thread per process side (epoll over the UDP socket,
 * one timerfd per connection for ngtcp2's retransmission/idle timers, one tick timerfd and one
 * eventfd for work posted from other threads). No thread per executor or per stream.
 *
 * Streams carry frames (frame.h) or, after a tunnel's first frame, raw bytes:
 *   - control: the first bidirectional stream the executor opens (Hello, Heartbeat, Goodbye ⇄
 *     Ack), handled by this layer and reported through struct link_control_hooks;
 *   - every other stream (RPCs opened by the access point, session event flows, tunnels) is
 *     handed to the application through link_handlers.on_stream or opened with
 *     link_stream_open.
 * Sending is bounded: each stream has a send buffer of LINK_STREAM_BUF bytes (bytes stay in it
 * until the peer acknowledges them); a write that does not fit is refused (AH_E_BUSY) and
 * on_writable is called when room comes back. Receiving is bounded by QUIC flow control: credit
 * is returned as the application consumes bytes.
 *
 * Threading: every link_* call below except link_post and link_loop_stop must be made on the
 * loop thread (inside a callback, or in a function given to link_post). Callbacks run on the loop
 * thread and must not block.
 */
#ifndef AH_ENROLL_LINK_H
#define AH_ENROLL_LINK_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

#define LINK_ALPN "ah-ctrl/1"
#define LINK_STREAM_BUF (256 * 1024)          /* bytes a stream may hold unacknowledged */
#define LINK_STREAM_WINDOW (256 * 1024)       /* receive window per stream */
#define LINK_CONN_WINDOW (4 * 1024 * 1024)    /* receive window per connection */
#define LINK_MAX_CONNS 10000                  /* connections (and handshakes) per access point */

/* ---- identity (D42) ---------------------------------------------------------------------- */

/* Where this side's TLS material comes from. */
struct link_identity {
    const char *provider;  /* "files" (default), "exec", "insecure"; "spiffe", "vault" refused */
    const char *cert_file; /* files: PEM certificate (chain), leaf first */
    const char *key_file;  /* files: PEM private key */
    const char *ca_file;   /* files/exec: PEM bundle the peer must chain to */
    const char *cert_cmd;  /* exec: prints PEM certificate(s) and key on stdout */
    int64_t cert_ttl_ms;   /* exec: rerun every this long (0: 1 hour) */
    bool allow_insecure;   /* insecure: refused unless this is set */
};

/* Checks the provider's name and required fields. 0, or AH_E_INVAL / AH_E_NOTIMPL with one
 * clear line in err ("identity provider 'vault' is not built in ..."). */
int link_identity_check(const struct link_identity *id, char *err, size_t errn);

/* True for "spiffe://<td>/ah/agent/<name>" with a valid trust domain and name; *td and *name
 * (optional) receive the parts. */
bool link_spiffe_agent_id(const char *id, char *td, size_t tdn, char *name, size_t namen);

/* ---- connections and streams -------------------------------------------------------------- */

struct link_loop;   /* the event loop of one side */
struct link_conn;   /* one executor connection */
struct link_stream; /* one QUIC stream */

struct link_stream_handlers {
    /* A whole frame (frame mode, the default). msg is lent. Negative: the stream is reset. */
    int (*on_frame)(void *sctx, struct link_stream *s, json_t *msg);
    /* Raw bytes (after link_stream_set_raw). Return how many were consumed (0..n): the rest is
     * the application's to keep, and it returns credit later with link_stream_consume. */
    size_t (*on_data)(void *sctx, struct link_stream *s, const void *p, size_t n);
    /* The peer finished its side (FIN). */
    void (*on_eof)(void *sctx, struct link_stream *s);
    /* Room came back in the send buffer after a refused write. */
    void (*on_writable)(void *sctx, struct link_stream *s);
    /* The stream is gone (both sides done, reset, or the connection closed): s is freed after
     * this returns. app_error is 0 for a clean end. */
    void (*on_close)(void *sctx, struct link_stream *s, uint64_t app_error);
};

struct link_handlers {
    /* A connection passed the handshake and the identity checks. Server side: peer_id is the
     * executor's SPIFFE id; client side: the access point's. */
    void (*on_connect)(void *ctx, struct link_conn *c, const char *peer_id);
    /* The peer opened a stream (other than the control stream): set its handlers with
     * link_stream_set_handlers, or return negative to reset it. */
    int (*on_stream)(void *ctx, struct link_conn *c, struct link_stream *s);
    /* The connection is gone (why: a readable reason); c is freed after this returns. */
    void (*on_close)(void *ctx, struct link_conn *c, const char *why);
};

/* The control stream, access point side (D41): called with the SPIFFE id proven by the TLS
 * handshake (never the one the message claims; a Hello claiming another executor_id is refused
 * before the hook). hello and heartbeat are lent. Each message is answered with an Ack: the one
 * the hook returns in *ret_ack (the transport takes it; "type" and "re" are filled in), or
 * {"type":"Ack","now":<RFC 3339>,"config_hash":...,"re":<type>} when it leaves it NULL.
 * hello: negative refuses the executor (connection closed; reterr->detail, if set, is logged and
 * sent). heartbeat: AH_E_NOTFOUND closes the connection (the executor reconnects and says Hello
 * again); other negatives are logged and the link kept. gone: a Goodbye arrived (reason: its
 * text) or the connection closed after a Hello (reason: what happened); once per connection. */
struct link_control_hooks {
    int (*hello)(void *ctx, const char *spiffe_id, const json_t *hello, json_t **ret_ack,
                 struct ah_problem *reterr);
    int (*heartbeat)(void *ctx, const char *spiffe_id, const json_t *heartbeat,
                     json_t **ret_ack);
    void (*gone)(void *ctx, const char *spiffe_id, const char *reason);
    void *ctx;
};

/* The control stream, executor side: builders for the messages (owned by the caller of the
 * hook: return a new reference; NULL: a minimal message is sent). */
struct link_executor_hooks {
    json_t *(*hello)(void *ctx, const char *executor_id); /* our SPIFFE id; "type" and
                                                              "executor_id" filled in if absent */
    json_t *(*heartbeat)(void *ctx); /* "type" is filled in if absent */
    void (*ack)(void *ctx, const json_t *ack);
    void *ctx;
};

/* ---- access point ------------------------------------------------------------------------- */

struct link_server_config {
    const char *bind;     /* default "0.0.0.0" */
    int port;             /* UDP port; 0 picks one (link_server_port tells which) */
    struct link_identity id;
    const char *trust_domain;            /* executors' trust domain; default: the one of our
                                            own certificate's SPIFFE id */
    const char *const *id_patterns;      /* optional fnmatch(3) patterns on the full SPIFFE id;
                                            NULL-terminated; none: any name in the domain */
    int64_t idle_timeout_ms;             /* QUIC idle timeout (default 30000) */
    const char *config_hash;             /* echoed in every Ack (default "") */
    struct link_control_hooks control;
    const struct link_handlers *handlers; /* optional */
    void *ctx;
};

struct link_server;

/* Binds the UDP socket, loads the identity and starts the loop thread. 0 or a negative AH_E_*
 * with one clear line in err. */
int link_server_start(const struct link_server_config *cfg, struct link_server **ret, char *err,
                      size_t errn);
int link_server_port(const struct link_server *s);
struct link_loop *link_server_loop(struct link_server *s);
/* Closes every connection (executors see a clean close), stops and joins the thread, frees. */
void link_server_stop(struct link_server *s);

/* ---- executor ----------------------------------------------------------------------------- */

/* One access point address (host name or address, UDP port). */
struct link_address {
    const char *host;
    int port;
};

struct link_client_config {
    const char *host;   /* access point host name or address */
    int port;           /* its UDP port */
    /* Failover: further access points (replicas sharing one database, D46), tried in turn
     * after host:port: a lost connection or a failed attempt moves to the next one, the list
     * wrapping around; the back-off doubles only after a whole round failed. Copied. */
    const struct link_address *more;
    size_t n_more; /* at most LINK_ADDRESSES_MAX - 1 */
    struct link_identity id;
    const char *expected_server_id; /* e.g. spiffe://example.org/ah/serve */
    const char *server_san;         /* comma list of dns=NAME, uri=URI, pin=SHA256 (hex or
                                       base64 of the SubjectPublicKeyInfo); any one matching */
    int64_t heartbeat_ms;           /* default 5000 (D24) */
    int64_t idle_timeout_ms;        /* default 30000 */
    int64_t reconnect_min_ms;       /* back-off after a lost connection: default 1000, doubled */
    int64_t reconnect_max_ms;       /* up to this (default 30000) */
    int64_t reload_check_ms;        /* files provider: how often files are checked (default 2000) */
    struct link_executor_hooks control;
    const struct link_handlers *handlers; /* optional */
    void *ctx;
};

#define LINK_ADDRESSES_MAX 16

struct link_client;

/* "quic://host:port", "host:port", "[v6]:port" or "host" (port default_port) → host, port.
 * 0 or AH_E_INVAL. */
int link_parse_address(const char *s, int default_port, char *host, size_t hostn, int *port);

/* Checks the configuration, loads the identity and starts the loop thread, which connects and
 * keeps reconnecting (with back-off) until link_client_stop. 0 or AH_E_* with err. */
int link_client_start(const struct link_client_config *cfg, struct link_client **ret, char *err,
                      size_t errn);
struct link_loop *link_client_loop(struct link_client *c);
/* True while a connection has passed its handshake and its Hello was acknowledged. */
bool link_client_enrolled(struct link_client *c);
/* Sends a Heartbeat as soon as the loop runs (any thread; never blocks; calls made while one
 * is pending are one): what it reports changed and the access point should know before the
 * next interval. Nothing while not enrolled. */
void link_client_heartbeat_soon(struct link_client *c);
/* Sends Goodbye (reason), closes the connection, stops and joins the thread, frees. */
void link_client_stop(struct link_client *c, const char *reason);

/* Blocking form for `ah agent enroll`: starts the client, waits (sigwait) for one of the
 * signals in *stop (the caller has blocked them in every thread), then stops it with Goodbye
 * "executor stopping (SIG…)". 0 on such a stop; AH_E_* with err when it cannot start. */
int link_client_run(const struct link_client_config *cfg, const sigset_t *stop, char *err,
                    size_t errn);

/* ---- access point: the fleet behind the control stream (quic_fleet.c) -------------------- */

struct fleet;
/* Control hooks that hand Hello/Heartbeat/gone to the fleet registry (enroll/fleet.h). With a
 * NULL fleet every Hello is accepted and nothing is recorded. */
void link_fleet_hooks(struct fleet *f, struct link_control_hooks *out);

/* ---- loop thread services ---------------------------------------------------------------- */

/* Runs fn(arg) on the loop thread soon (any thread may call it). 0 or AH_E_NOMEM. */
int link_post(struct link_loop *l, void (*fn)(void *arg), void *arg);

/* ---- on the loop thread ------------------------------------------------------------------- */

/* Descriptors watched by the loop (tunnels: a TCP socket or a socketpair end, a timerfd), so
 * their bytes move on the loop thread without a thread of their own. events are epoll bits
 * (level-triggered); cb runs on the loop thread, and what it queued on streams is sent right
 * after the batch of events it belongs to. The descriptor stays the caller's (never closed
 * here). */
struct link_watch;
int link_watch_add(struct link_loop *l, int fd, uint32_t events,
                   void (*cb)(void *arg, uint32_t events), void *arg, struct link_watch **ret);
int link_watch_set(struct link_watch *w, uint32_t events);
/* Stops watching: cb is not called again (w is freed after the current batch). NULL-safe. */
void link_watch_del(struct link_watch *w);

/* Access point: the live, enrolled connection of the executor with this SPIFFE id (the newest
 * when a reconnect overlaps the old one), or NULL. */
struct link_conn *link_server_conn(struct link_server *s, const char *peer_id);

const char *link_conn_peer_id(const struct link_conn *c);
/* The loop the connection belongs to (for link_watch_add). */
struct link_loop *link_conn_loop(struct link_conn *c);
/* Closes the connection with an application close carrying reason; on_close follows. */
void link_conn_close(struct link_conn *c, const char *reason);

/* Opens a bidirectional stream. AH_E_BUSY when the peer's stream limit is reached. */
int link_stream_open(struct link_conn *c, const struct link_stream_handlers *h, void *sctx,
                     struct link_stream **ret);
void link_stream_set_handlers(struct link_stream *s, const struct link_stream_handlers *h,
                              void *sctx);
struct link_conn *link_stream_conn(struct link_stream *s);
int64_t link_stream_id(const struct link_stream *s);
/* Incoming bytes are no longer framed from now on: they go to on_data (a tunnel after its
 * opening frames). Called in on_frame, it takes effect right after that frame. Sending is not
 * affected: link_stream_send_frame and link_stream_send may be mixed freely. */
void link_stream_set_raw(struct link_stream *s);
/* Queues one frame: 0, AH_E_BUSY (no room: wait for on_writable), AH_E_INVAL, AH_E_TOOLARGE,
 * AH_E_GONE (stream closed). */
int link_stream_send_frame(struct link_stream *s, const json_t *msg);
/* Queues raw bytes: how many were taken (0..n), or AH_E_GONE. */
int64_t link_stream_send(struct link_stream *s, const void *p, size_t n);
/* Room left in the send buffer. */
size_t link_stream_room(const struct link_stream *s);
/* Returns receive credit for n bytes an on_data callback kept. */
void link_stream_consume(struct link_stream *s, size_t n);
/* Ends our side after what is queued (FIN). */
void link_stream_finish(struct link_stream *s);
/* Aborts the stream both ways with an application error code (non-zero). */
void link_stream_reset(struct link_stream *s, uint64_t app_error);

#endif
