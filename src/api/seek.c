/*
 * seek.c — read-only views of a session's workspace at a point of its timeline (API.md §7.8,
 * D34): POST /sessions/{id}/seek.
 */
#include <stdio.h>

#include "timeline.h"

char *tl_view_path(struct api_ctx *ctx, const char *session_id, const char *snap) {
    (void)ctx;
    (void)session_id;
    (void)snap;
    return NULL;
}

int api_timeline_seek_register(struct router *r, struct api_ctx *ctx) {
    (void)r;
    (void)ctx;
    return 0;
}
