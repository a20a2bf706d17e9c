/*
 * quic_fleet.c — the access point's control stream handed to the fleet registry (fleet.h):
 * Hello, Heartbeat and the end of a connection become fleet_on_hello / _heartbeat / _gone, and
 * the fleet's Ack goes back to the executor.
 */
#include "fleet.h"
#include "link.h"

static int hello(void *ctx, const char *id, const json_t *msg, json_t **ret_ack,
                 struct ah_problem *reterr) {
    return ctx ? fleet_on_hello(ctx, id, msg, ret_ack, reterr) : 0;
}

static int heartbeat(void *ctx, const char *id, const json_t *msg, json_t **ret_ack) {
    return ctx ? fleet_on_heartbeat(ctx, id, msg, ret_ack) : 0;
}

static void gone(void *ctx, const char *id, const char *reason) {
    if (ctx)
        fleet_on_gone(ctx, id, reason);
}

void link_fleet_hooks(struct fleet *f, struct link_control_hooks *out) {
    *out = (struct link_control_hooks){.hello = hello, .heartbeat = heartbeat, .gone = gone,
                                       .ctx = f};
}
