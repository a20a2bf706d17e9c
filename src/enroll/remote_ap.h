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

/* exec_config hooks (arg: the remote_ap). */
int remote_ap_launch(void *arg, const char *executor, json_t *msg);
void remote_ap_signal(void *arg, const char *executor, const char *id, const char *action,
                      const char *traceparent);

#endif
