/*
 * test-signer.c — the identity tokens `ah webui --remote-server` signs for the remote access
 * point (src/auth/signer.c, issue 14 item 5), checked by the access point's own verifier
 * (auth_jwt_verify with the key set the signer publishes): the principal survives the trip;
 * the claims are sub, tenant, roles, iss, aud, iat/nbf and exp 60 s later, with kid in the
 * header; the key is made once (0600) and read back with the same kid; another audience or a
 * key set without our key refuses the token; a foreign key file is refused clearly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <rhonabwy.h>

#include "../../src/auth/signer.h"

static char dir[64];

static void path_in(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static struct auth *verifier(const char *jwks_path, const char *aud) {
    struct auth_config ac = {.jwks = jwks_path, .issuer = "ah-webui", .audience = aud};
    struct auth *a = NULL;
    struct ah_problem p = {0};
    if (auth_new(&ac, &a, &p) < 0)
        fail_msg("auth_new: %s", p.detail);
    return a;
}

static void test_round_trip(void **state) {
    (void)state;
    char key[128], jwks[128];
    path_in(key, sizeof(key), "key.jwk");
    path_in(jwks, sizeof(jwks), "jwks.json");
    struct auth_signer *s = NULL;
    struct ah_problem p = {0};
    assert_int_equal(auth_signer_open(key, "ah-webui", "http://remote:1", &s, &p), 0);
    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    write_file(jwks, auth_signer_jwks(s));
    assert_null(strstr(auth_signer_jwks(s), "\"d\"")); /* public halves only */

    struct auth_principal who = {.role = AUTH_ROLE_OPERATOR};
    snprintf(who.kind, sizeof(who.kind), "session");
    snprintf(who.subject, sizeof(who.subject), "oidc:Alice");
    snprintf(who.tenant, sizeof(who.tenant), "acme");
    char *tok = auth_signer_mint(s, &who);
    assert_non_null(tok);
    char *again = auth_signer_mint(s, &who); /* reused while young */
    assert_string_equal(tok, again);
    free(again);

    /* the access point's verifier accepts it as Alice, operator of acme */
    struct auth *a = verifier(jwks, "http://remote:1");
    struct auth_principal got;
    char detail[256] = "";
    assert_int_equal(auth_jwt_verify(a, tok, &got, detail, sizeof(detail)), 0);
    assert_string_equal(got.kind, "jwt");
    assert_string_equal(got.subject, "jwt:Alice");
    assert_string_equal(got.credential_id, "Alice"); /* no jti: limits follow the person */
    assert_string_equal(got.tenant, "acme");
    assert_int_equal(got.role, AUTH_ROLE_OPERATOR);
    auth_free(a);

    /* the claims and header themselves */
    jwt_t *jwt = NULL;
    assert_int_equal(r_jwt_init(&jwt), RHN_OK);
    assert_int_equal(r_jwt_parse(jwt, tok, 0), RHN_OK);
    assert_int_equal(r_jwt_get_sign_alg(jwt), R_JWA_ALG_ES256);
    assert_string_equal(r_jwt_get_header_str_value(jwt, "kid"), auth_signer_kid(s));
    assert_string_equal(r_jwt_get_claim_str_value(jwt, "iss"), "ah-webui");
    assert_string_equal(r_jwt_get_claim_str_value(jwt, "aud"), "http://remote:1");
    assert_string_equal(r_jwt_get_claim_str_value(jwt, "sub"), "Alice");
    assert_string_equal(r_jwt_get_claim_str_value(jwt, "tenant"), "acme");
    json_t *roles = r_jwt_get_claim_json_t_value(jwt, "roles");
    assert_string_equal(json_string_value(json_array_get(roles, 0)), "operator");
    json_decref(roles);
    int64_t exp = r_jwt_get_claim_int_value(jwt, "exp"), iat = r_jwt_get_claim_int_value(jwt, "iat");
    assert_int_equal(exp - iat, AUTH_SIGNER_TTL_S);
    assert_true(iat <= time_now_ms() / 1000 && iat >= time_now_ms() / 1000 - 5);
    r_jwt_free(jwt);

    /* another principal: another token */
    who.role = AUTH_ROLE_VIEWER;
    char *viewer = auth_signer_mint(s, &who);
    assert_non_null(viewer);
    assert_string_not_equal(tok, viewer);
    free(viewer);

    /* another audience refuses it */
    a = verifier(jwks, "http://elsewhere:2");
    assert_int_equal(auth_jwt_verify(a, tok, &got, detail, sizeof(detail)), AH_E_AUTH);
    assert_non_null(strstr(detail, "audience"));
    auth_free(a);

    /* the key persists: a second open reads it, same kid */
    struct auth_signer *s2 = NULL;
    assert_int_equal(auth_signer_open(key, "ah-webui", "http://remote:1", &s2, &p), 0);
    assert_string_equal(auth_signer_kid(s), auth_signer_kid(s2));
    auth_signer_free(s2);

    /* a key set without our key refuses it */
    char other_key[128], other_jwks[128];
    path_in(other_key, sizeof(other_key), "other.jwk");
    path_in(other_jwks, sizeof(other_jwks), "other.json");
    assert_int_equal(auth_signer_open(other_key, "ah-webui", "http://remote:1", &s2, &p), 0);
    assert_string_not_equal(auth_signer_kid(s), auth_signer_kid(s2));
    write_file(other_jwks, auth_signer_jwks(s2));
    auth_signer_free(s2);
    a = verifier(other_jwks, "http://remote:1");
    assert_int_equal(auth_jwt_verify(a, tok, &got, detail, sizeof(detail)), AH_E_AUTH);
    auth_free(a);

    free(tok);
    auth_signer_free(s);
}

static void test_foreign_key_file(void **state) {
    (void)state;
    char key[128];
    path_in(key, sizeof(key), "public.jwk");
    write_file(key, "{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}");
    struct auth_signer *s = NULL;
    struct ah_problem p = {0};
    assert_int_equal(auth_signer_open(key, "i", "a", &s, &p), AH_E_INVAL);
    assert_null(s);
    assert_non_null(strstr(p.detail, "not a private EC P-256 JWK"));
    problem_clear(&p);
}

int main(void) {
    snprintf(dir, sizeof(dir), "/tmp/ah-signer-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_foreign_key_file),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
