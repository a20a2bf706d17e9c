/*
 * tunnel.h — TCP tunnels over the executor link (CLI-and-enrollment §5.7, D41): SSH through the
 * access point.
 *
 *   AP → executor : OpenTcp    {"dst": "ssh" | "HOST:PORT", "reason": "ssh"}
 *   executor → AP : OpenTcpOk  {}  |  OpenTcpErr {"code": ..., "message": ...}
 *   then          : raw bytes both ways until EOF (FIN) or a reset on either side
 *
 * "ssh" names the executor's own SSH destination (--ssh-dst, default 127.0.0.1:22); an explicit
 * HOST:PORT is accepted only when it is exactly that destination. The executor never dials
 * anything else, and refuses every OpenTcp when started with --ssh disabled.
 *
 * Both ends relay between one descriptor and one QUIC stream on the link's loop thread (no
 * thread per tunnel): the executor's end is a non-blocking TCP socket to its sshd, the access
 * point's end is a socketpair whose other end the HTTP gate copies to and from the client of an
 * HTTP CONNECT. Back-pressure both ways: bytes from the descriptor are read only while the
 * stream's bounded send buffer has room, and bytes from the stream that the descriptor does not
 * take at once are held (at most the stream's receive window, LINK_STREAM_WINDOW) without
 * returning QUIC flow-control credit until they are written.
 *
 * Error codes in OpenTcpErr: "ssh_disabled", "dst_not_allowed", "connect_failed",
 * "too_many_tunnels", "bad_request".
 */
#ifndef AH_ENROLL_TUNNEL_H
#define AH_ENROLL_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "link.h"

#define TUNNEL_OPEN_TIMEOUT_MS 15000 /* access point: OpenTcpOk/Err must come within this */
#define TUNNEL_CONNECT_TIMEOUT_MS 10000 /* executor: the TCP connect must finish within this */
#define TUNNEL_MAX_PER_EXECUTOR 8 /* tunnels at once per executor connection (each may hold
                                     a stream window of the connection's credit) */
#define TUNNEL_EXEC_MAX 64        /* tunnels at once on one executor */

/* ---- executor ----------------------------------------------------------------------------- */

struct tunnel_exec_config {
    bool enabled;                  /* --ssh enabled */
    char dst[300];                 /* --ssh-dst as given, HOST:PORT */
    struct sockaddr_storage addr;  /* its address, resolved once at start */
    socklen_t addrlen;
};

/* Fills cfg from --ssh and --ssh-dst, resolving the destination (numeric or by name: this may
 * block, so it is done once before the link starts). 0, or AH_E_INVAL with err. */
int tunnel_exec_config_init(struct tunnel_exec_config *cfg, bool enabled, const char *dst,
                            char *err, size_t errn);

/* On the loop thread, for the first frame of a stream the access point opened: when it is an
 * OpenTcp the tunnel takes the stream over (its handlers are replaced) and 1 is returned; 0
 * when the frame is something else (the caller handles it). cfg is borrowed for the process's
 * life. */
int tunnel_exec_frame(const struct tunnel_exec_config *cfg, struct link_stream *s,
                      const json_t *msg);

/* Link handlers for an executor whose only access-point-opened streams are tunnels: on_stream
 * reads the first frame, tunnel_exec_frame takes OpenTcp, anything else resets the stream.
 * ctx: a struct tunnel_exec_config. */
extern const struct link_handlers tunnel_exec_handlers;

/* ---- access point ------------------------------------------------------------------------- */

/* What the owner of an access point tunnel hears, on the loop thread. */
struct tunnel_ap_hooks {
    /* Once: the executor's answer. status 200: OpenTcpOk (write the 200 to fd; the relay starts
     * after this returns); otherwise a refusal or failure (status 403/404/502/503/504, code
     * and detail in words; fd is closed after this returns, so write the answer now). */
    void (*result)(void *arg, int fd, int status, const char *code, const char *detail);
    /* Once, last: the tunnel is over (bytes each way, from the client and to it, and how long
     * it was open in ms; all 0 when it never opened). arg is not used after this. */
    void (*closed)(void *arg, uint64_t up, uint64_t down, int64_t ms);
};

/* On the loop thread: opens a tunnel stream to the executor with this SPIFFE id, sends
 * OpenTcp {dst, reason:"ssh"} and waits (without blocking) for its answer; fd (owned from now
 * on: closed when the tunnel ends) carries the client's bytes. hooks->result and then
 * hooks->closed are always called, the first possibly before this returns. */
void tunnel_ap_open(struct link_server *sv, const char *executor_id, const char *dst, int fd,
                    const struct tunnel_ap_hooks *hooks, void *arg);

/* Tunnels open at the access point now (any thread; for tests and logs). */
size_t tunnel_ap_count(void);

#endif
