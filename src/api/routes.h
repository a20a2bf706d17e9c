/*
 * routes.h — private to api/: each resource file registers its own routes.
 */
#ifndef AH_API_ROUTES_H
#define AH_API_ROUTES_H

#include "api.h"

int api_health_register(struct router *r, struct api_ctx *ctx);

#endif
