/*
 * branch.c — session branches (API.md §7.8): POST /sessions/{id}/session-branch and
 * GET /sessions/{id}/branches.
 */
#include "timeline.h"

int api_timeline_branch_register(struct router *r, struct api_ctx *ctx) {
    (void)r;
    (void)ctx;
    return 0;
}
