/*
 * jwt.c — bearer tokens: not configured yet in this build step (every Bearer is refused by
 * auth.c before it reaches here).
 */
#include <stdio.h>

#include "internal.h"

int auth_jwt_setup(struct auth *a, struct ah_problem *reterr) {
    if (a->cfg.jwks)
        return problem_set(reterr, AH_E_NOTIMPL, "JWT bearer tokens are not supported yet");
    return 0;
}

void auth_jwt_teardown(struct auth *a) {
    (void)a;
}

int auth_jwt_verify(struct auth *a, const char *token, struct auth_principal *ret, char *detail,
                    size_t detail_size) {
    (void)a;
    (void)token;
    (void)ret;
    snprintf(detail, detail_size, "bearer tokens are not accepted");
    return AH_E_AUTH;
}
