/*
 * remote_ap.h — remote sessions, access point side (issue 16 item 5): what the supervisor's
 * remote hooks (exec_config.remote_launch / remote_signal) and the executors' streams meet.
 *
 *   - LaunchSession and Signal RPCs: one stream each, opened on the executor's connection from
 *     the link loop (the supervisor only posts: nothing here blocks it); each carries the
 *     traceparent of the span it is sent for and, with span export on, is a client span of
 *     its own (D48) that ends with the executor's answer;
 *   - SessionEvents streams from executors: a socketpair per stream, one end handed to the
 *     supervisor as if a recorder had connected to its socket (exec_attach_remote), the other
 *     relayed raw to the stream (relay.h);
 *   - SessionEnded reports: exec_remote_ended.
 * The executors' control stream still goes to the fleet (link_fleet_hooks); a Hello also kicks
 * the scheduler, since a new executor may take queued sessions.
 */
#ifndef AH_ENROLL_REMOTE_AP_H
#define AH_ENROLL_REMOTE_AP_H

#include "link.h"

struct executor;
struct remote_ap;

int remote_ap_new(struct remote_ap **ret);
void remote_ap_free(struct remote_ap *r); /* after link_server_stop; NULL-safe */
/* The supervisor to report to (before exec_start may launch). */
void remote_ap_set_exec(struct remote_ap *r, struct executor *ex);
/* Fills lc->handlers and lc->ctx, and wraps lc->control (already the fleet's hooks). */
void remote_ap_server_config(struct remote_ap *r, struct link_server_config *lc);
/* The link started (its loop carries the RPCs) or is about to stop (NULL): launches fail. */
void remote_ap_set_server(struct remote_ap *r, struct link_server *srv);

/* A read of a session's workspace (files, diffs), asked of the executor that holds it: msg is
 * its WorkspaceRead (taken; runner.h). The executor answers on the RPC stream with
 *   {type:"Reply", status, content_type, length} and then exactly `length` raw bytes, or
 *   {type:"Reply", problem:{code, detail[, errors]}}   (the route's own refusal: 404, 400 …)
 * done(arg, r) is called exactly once — on the link's loop thread, or on the caller's when the
 * read cannot be posted — and must not block. r->body (the caller may take it) and
 * r->content_type are the answer, unless r->problem.code is set (the caller may take it):
 *   the executor's refusal, as the route would answer it locally;
 *   502 the executor is not connected here, or its link broke before the answer was whole;
 *   413 the answer is larger than the cap (REMOTE_READ_MAX, env AH_REMOTE_READ_MAX_BYTES);
 *   504 no whole answer within REMOTE_READ_TIMEOUT_MS (env AH_REMOTE_READ_TIMEOUT_MS);
 *   503 too many reads in flight (REMOTE_READS_MAX), or the answers being received already
 *       hold REMOTE_READS_BYTES_MAX between them (env AH_REMOTE_READS_MAX_BYTES). */
#define REMOTE_READ_MAX (64u * 1024 * 1024)
#define REMOTE_READS_BYTES_MAX (256u * 1024 * 1024)
#define REMOTE_READ_TIMEOUT_MS 30000
#define REMOTE_READS_MAX 64
struct remote_read_result {
    struct ah_problem problem;
    const char *content_type; /* "application/json" or "text/x-diff; charset=utf-8" */
    char *body;
    size_t len;
};
typedef void (*remote_read_fn)(void *arg, struct remote_read_result *r);
void remote_ap_read(struct remote_ap *r, const char *executor, json_t *msg, remote_read_fn done,
                    void *arg);

/* exec_config hooks (arg: the remote_ap). */
int remote_ap_launch(void *arg, const char *executor, json_t *msg);
void remote_ap_signal(void *arg, const char *executor, const char *id, const char *action,
                      const char *traceparent);

#endif
