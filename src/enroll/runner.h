/*
 * runner.h — the executor's half of remote sessions (issue 16 item 5), inside `ah agent enroll`.
 *
 * The access point opens one RPC stream per request (D41 frames):
 *   LaunchSession {session_id, tenant, agent_type, agent_index, request, token[, traceparent]}
 *       → {type:"Accepted"} at once (or {type:"Error", error}); the session is then provisioned
 *         and its recorder spawned exactly as the access point's local path does (the same
 *         exec/ and workspace/ code), off the loop, on a fixed pool of two workers;
 *   Signal {session_id, action: pause|resume|stop|kill} → {type:"Done"} or {type:"Error"}:
 *         the signals the local path sends (SIGSTOP, SIGCONT, SIGCONT+SIGTERM, SIGKILL) to the
 *         agent's process group (learned from the recorder's hello) or the recorder's.
 *   WorkspaceRead {session_id, tenant, kind: files|file|diff|file_diff, tail, query, accept,
 *                  ended: the session reached a final state}
 *       → the answer of GET …/files or …/diff for that session's workspace and snapshots here,
 *         made by the access point's own code (workspace.h ws_answer) on a worker, never on
 *         the loop: {type:"Reply", status, content_type, length} then `length` raw bytes, or
 *         {type:"Reply", problem:{code, detail[, errors]}} (remote_ap.h). The stream's send
 *         buffer is the bound: the rest goes as the access point acknowledges.
 * The executor opens, per recorder connection to its Unix socket, a SessionEvents stream:
 *   {type:"SessionEvents", session_id} then the recorder link's raw bytes both ways (relay.h);
 * and, when a session's processes are gone or could not start, a report stream:
 *   {type:"SessionEnded", session_id, how, launch_failed}.
 * Reports made while the link is down wait (bounded) and go out after the next connection.
 *
 * Everything but provisioning runs on the link loop's thread. A restarted executor learns its
 * sessions again from the recorders that reconnect (their hello names the session and the
 * agent's group; the socket's peer credentials give the recorder's pid).
 */
#ifndef AH_ENROLL_RUNNER_H
#define AH_ENROLL_RUNNER_H

#include "link.h"

struct executor;
struct host_facts;
struct runner;

/* hf: told how many sessions run (heartbeats); borrowed, outlives the runner. */
int runner_new(struct host_facts *hf, struct runner **ret);
/* The link handlers to give link_client_config (handlers and ctx). Streams the access point
 * opens for a tunnel (OpenTcp, tunnel.h) go to the tunnel layer with tunnels (borrowed, may be
 * NULL: refused). */
struct tunnel_exec_config;
void runner_client_config(struct runner *r, struct link_client_config *cc,
                          const struct tunnel_exec_config *tunnels);
/* Once the client runs: starts the workers and watches the recorder socket on its loop. ex:
 * made by exec_new with no store (never started): configuration, sandbox, recorder socket;
 * borrowed, outlives the runner. Launches that came before wait for it (the link is started
 * first, so a slow sandbox probe never delays enrollment). */
int runner_start(struct runner *r, struct link_client *cl, struct executor *ex,
                 const char *broken);
/* ex NULL: no session can run here (broken says why, e.g. the recorder socket is taken by
 * another executor with the same data directory); launches are refused with that reason. */
/* Stops watching descriptors on the loop (waits for it) and joins the workers; call before
 * link_client_stop. NULL-safe. */
void runner_stop(struct runner *r);
/* After link_client_stop (the loop is gone): frees everything; NULL-safe. */
void runner_free(struct runner *r);

#endif
