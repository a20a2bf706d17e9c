/*
 * test-tls.c — TLS options against a throwaway HTTPS server (tls_server.py) with certificates
 * made at test time by `openssl req -x509`:
 *   - a self-signed server is refused with verification on, accepted with the insecure option,
 *     and accepted with verification on when its certificate is the CA file;
 *   - a server that requires a client certificate (mTLS) refuses a client without one and
 *     accepts one configured with ah_client_set_client_cert.
 * Skipped (with a reason) when openssl or python3 is missing.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/client/client_internal.h"

extern char **environ;

static char dir[256];
static char server_cert[300], server_key[300], client_cert[300], client_key[300];

static int run(char *const argv[]) {
    pid_t pid;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int make_cert(const char *cert, const char *key, const char *cn, const char *san) {
    char subj[128];
    snprintf(subj, sizeof(subj), "/CN=%s", cn);
    char *argv[] = {AH_OPENSSL,  "req",     "-x509",     "-newkey", "rsa:2048",
                    "-nodes",    "-keyout", (char *)key, "-out",    (char *)cert,
                    "-days",     "1",       "-subj",     subj,      san ? "-addext" : NULL,
                    (char *)san, NULL};
    return run(argv);
}

struct server {
    pid_t pid;
    int port;
};

static int start_server(const char *client_ca, struct server *s) {
    char port_file[300];
    snprintf(port_file, sizeof(port_file), "%s/port-%d", dir, client_ca ? 2 : 1);
    unlink(port_file);
    char *argv[] = {AH_PYTHON3, AH_TLS_SERVER_PY,  server_cert, server_key,
                    port_file,  (char *)client_ca, NULL};
    if (posix_spawnp(&s->pid, argv[0], NULL, NULL, argv, environ) != 0)
        return -1;
    for (int i = 0; i < 400; i++) { /* up to 20 s */
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", &s->port) == 1;
            fclose(f);
            if (ok)
                return 0;
        }
        usleep(50000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return -1;
}

static void stop_server(struct server *s) {
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
}

static ah_client *client_on(int port) {
    char url[64];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", port);
    ah_client *c = NULL;
    assert_int_equal(ah_client_new(url, &c), 0);
    struct ah_retry_policy p = {.max_attempts = 2, .base_delay_ms = 10, .max_delay_ms = 20};
    ah_client_set_retry(c, &p);
    return c;
}

static int setup(void **state) {
    if (access(AH_OPENSSL, X_OK) != 0 || access(AH_PYTHON3, X_OK) != 0) {
        printf("SKIP: openssl or python3 not found; TLS tests need both\n");
        return 0;
    }
    snprintf(dir, sizeof(dir), "/tmp/ah-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(server_cert, sizeof(server_cert), "%s/server.pem", dir);
    snprintf(server_key, sizeof(server_key), "%s/server.key", dir);
    snprintf(client_cert, sizeof(client_cert), "%s/client.pem", dir);
    snprintf(client_key, sizeof(client_key), "%s/client.key", dir);
    if (make_cert(server_cert, server_key, "localhost", "subjectAltName=IP:127.0.0.1") != 0 ||
        make_cert(client_cert, client_key, "ah-test-client", NULL) != 0) {
        printf("SKIP: openssl could not make test certificates\n");
        dir[0] = '\0';
    }
    return 0;
}

static int teardown(void **state) {
    if (dir[0]) {
        const char *files[] = {server_cert, server_key, client_cert, client_key};
        for (size_t i = 0; i < 4; i++)
            unlink(files[i]);
        char p[300];
        snprintf(p, sizeof(p), "%s/port-1", dir);
        unlink(p);
        snprintf(p, sizeof(p), "%s/port-2", dir);
        unlink(p);
        rmdir(dir);
    }
    return 0;
}

static void test_self_signed(void **state) {
    if (!dir[0])
        skip();
    struct server s;
    assert_int_equal(start_server(NULL, &s), 0);
    ah_client *c = client_on(s.port);
    struct ah_api_error e = {0};
    /* Verification on (the default): the self-signed certificate is refused. */
    assert_int_equal(ah_client_healthz(c, &e), AH_E_NETWORK);
    assert_int_equal(e.status, 0);
    assert_int_equal(e.attempts, 1); /* a certificate problem is not retried */
    assert_non_null(e.detail);
    ah_api_error_clear(&e);
    /* Insecure: accepted. */
    assert_int_equal(ah_client_set_insecure(c, true), 0);
    assert_int_equal(ah_client_healthz(c, &e), 0);
    /* Verification on again, with the certificate as the trusted CA: accepted. */
    assert_int_equal(ah_client_set_insecure(c, false), 0);
    assert_int_equal(ah_client_set_ca_file(c, server_cert), 0);
    assert_int_equal(ah_client_healthz(c, &e), 0);
    /* A CA that did not sign it: refused. */
    assert_int_equal(ah_client_set_ca_file(c, client_cert), 0);
    assert_int_equal(ah_client_healthz(c, &e), AH_E_NETWORK);
    ah_api_error_clear(&e);
    ah_client_free(c);
    stop_server(&s);
}

static void test_client_certificate(void **state) {
    if (!dir[0])
        skip();
    struct server s;
    assert_int_equal(start_server(client_cert, &s), 0);
    ah_client *c = client_on(s.port);
    ah_client_set_ca_file(c, server_cert);
    struct ah_api_error e = {0};
    assert_true(ah_client_healthz(c, &e) < 0); /* no client certificate: refused */
    ah_api_error_clear(&e);
    assert_int_equal(ah_client_set_client_cert(c, client_cert, client_key), 0);
    assert_int_equal(ah_client_healthz(c, &e), 0);
    if (e.code)
        fprintf(stderr, "mTLS: %s\n", e.detail);
    ah_api_error_clear(&e);
    ah_client_free(c);
    stop_server(&s);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_signed),
        cmocka_unit_test(test_client_certificate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
