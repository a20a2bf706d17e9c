/*
 * test-webhooks.c — the targets a webhook may reach (exec/webhooks.c, issue 15 item 8): the
 * address classes checked on every connection (after DNS) and the URL check at task creation.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "../../src/exec/executor.h"

static bool v4(const struct exec_config *c, const char *ip) {
    struct sockaddr_in a = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return webhook_addr_allowed(c, (struct sockaddr *)&a);
}

static bool v6(const struct exec_config *c, const char *ip) {
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    return webhook_addr_allowed(c, (struct sockaddr *)&a);
}

static void test_addresses(void **state) {
    (void)state;
    struct exec_config none = {0}, lo = {.webhook_allow_loopback = true},
                       priv = {.webhook_allow_private = true};
    static const char *const public4[] = {"1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1"};
    for (size_t i = 0; i < 4; i++)
        assert_true(v4(&none, public4[i]));
    static const char *const loop4[] = {"127.0.0.1", "127.1.2.3"};
    static const char *const priv4[] = {"10.0.0.1", "172.16.0.1", "172.31.255.255",
                                        "192.168.1.1", "100.64.0.1"};
    static const char *const never4[] = {"169.254.169.254", "0.0.0.0", "224.0.0.1",
                                         "255.255.255.255"};
    for (size_t i = 0; i < 2; i++) {
        assert_false(v4(&none, loop4[i]));
        assert_true(v4(&lo, loop4[i]));
        assert_false(v4(&priv, loop4[i]));
    }
    for (size_t i = 0; i < 5; i++) {
        assert_false(v4(&none, priv4[i]));
        assert_false(v4(&lo, priv4[i]));
        assert_true(v4(&priv, priv4[i]));
    }
    struct exec_config all = {.webhook_allow_loopback = true, .webhook_allow_private = true};
    for (size_t i = 0; i < 4; i++)
        assert_false(v4(&all, never4[i])); /* cloud metadata, multicast: never */
    assert_true(v6(&none, "2606:4700::1111"));
    assert_false(v6(&none, "::1"));
    assert_true(v6(&lo, "::1"));
    assert_false(v6(&none, "::ffff:127.0.0.1")); /* v4-mapped: judged as the v4 address */
    assert_false(v6(&none, "::ffff:10.0.0.1"));
    assert_true(v6(&priv, "::ffff:10.0.0.1"));
    assert_false(v6(&none, "fd00::1"));
    assert_true(v6(&priv, "fd00::1"));
    assert_false(v6(&all, "fe80::1"));
    assert_false(v6(&all, "ff02::1"));
    assert_false(v6(&all, "::"));
}

static void test_urls(void **state) {
    (void)state;
    struct executor ex;
    memset(&ex, 0, sizeof(ex));
    char why[160];
    assert_int_equal(exec_webhook_url_check(&ex, "https://hooks.example.com/x", why, sizeof(why)),
                     0);
    static const char *const bad[] = {
        "http://hooks.example.com/x", "https://127.0.0.1/", "https://localhost:8080/",
        "https://a.localhost/", "https://[::1]/", "https://10.0.0.1/", "https://169.254.169.254/",
        "https://2130706433/", "ftp://hooks.example.com/", "https://", "not a url"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        if (exec_webhook_url_check(&ex, bad[i], why, sizeof(why)) != AH_E_INVAL)
            fail_msg("%s accepted", bad[i]);
        assert_true(why[0] != '\0');
    }
    ex.cfg.webhook_allow_loopback = true;
    assert_int_equal(exec_webhook_url_check(&ex, "http://127.0.0.1:9/x", why, sizeof(why)), 0);
    assert_int_equal(exec_webhook_url_check(&ex, "http://localhost/x", why, sizeof(why)), 0);
    assert_int_equal(exec_webhook_url_check(&ex, "https://[::1]/x", why, sizeof(why)), 0);
    assert_int_equal(exec_webhook_url_check(&ex, "http://example.com/", why, sizeof(why)),
                     AH_E_INVAL); /* http stays loopback-only */
    assert_int_equal(exec_webhook_url_check(&ex, "https://192.168.0.1/", why, sizeof(why)),
                     AH_E_INVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
