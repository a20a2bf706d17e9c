/* test-sandbox.c — sandbox profiles from configuration, the checks that refuse what this machine
 * cannot provide (422, D51), and the bubblewrap command line that is the policy (D52). The
 * integration tests (tests/integration/test_sandbox.py) run the real bubblewrap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/sandbox/sandbox.h"

/* The `sandbox.*` keys of a config file, with the prefix taken off as config.c does. */
static json_t *cfg_of(const char *toml) {
    json_t *all = NULL, *out = json_object();
    struct ah_problem p = {0};
    if (toml_parse(toml, strlen(toml), &all, &p) != 0)
        fail_msg("bad toml: %s", p.detail);
    const char *key;
    json_t *v;
    json_object_foreach(all, key, v) {
        if (!strncmp(key, "sandbox.", 8))
            json_object_set(out, key + 8, v);
    }
    json_decref(all);
    return out;
}

static struct sandbox_set *set_of(const char *toml) {
    json_t *cfg = cfg_of(toml);
    struct sandbox_set *s = NULL;
    struct ah_problem p = {0};
    if (sandbox_set_new(cfg, &s, &p) != 0)
        fail_msg("refused: %s", p.detail);
    json_decref(cfg);
    sandbox_set_fake_probe(s, true, NULL);
    return s;
}

static void refused(const char *toml, const char *want) {
    json_t *cfg = cfg_of(toml);
    struct sandbox_set *s = NULL;
    struct ah_problem p = {0};
    assert_int_equal(sandbox_set_new(cfg, &s, &p), AH_E_INVAL);
    assert_null(s);
    if (!strstr(p.detail, want))
        fail_msg("expected '%s' in '%s'", want, p.detail);
    json_decref(cfg);
    problem_clear(&p);
}

/* Index of the first `a` followed by `b` (and `c` when given) in argv, or -1. */
static int find3(char **argv, const char *a, const char *b, const char *c) {
    for (int i = 0; argv[i]; i++)
        if (!strcmp(argv[i], a) && (!b || (argv[i + 1] && !strcmp(argv[i + 1], b))) &&
            (!c || (argv[i + 1] && argv[i + 2] && !strcmp(argv[i + 2], c))))
            return i;
    return -1;
}

static void test_builtin_profiles(void **state) {
    (void)state;
    struct sandbox_set *s = set_of("");
    const struct sandbox_profile *d = sandbox_find(s, "default");
    const struct sandbox_profile *o = sandbox_find(s, "offline");
    const struct sandbox_profile *x = sandbox_find(s, "disabled");
    assert_non_null(d);
    assert_non_null(o);
    assert_non_null(x);
    assert_int_equal(d->network, SANDBOX_NET_ALLOW);
    assert_int_equal(o->network, SANDBOX_NET_NONE);
    assert_true(x->disabled);
    assert_false(d->disabled);
    assert_null(sandbox_find(s, "nope"));
    assert_string_equal(sandbox_default_name(s), "default");
    sandbox_set_free(s);
}

static void test_custom_profiles(void **state) {
    (void)state;
    struct sandbox_set *s = set_of("[sandbox]\ndefault = \"build\"\n"
                                   "[sandbox.build]\nnetwork = \"none\"\n"
                                   "read-only = [\"/opt/sdk\"]\nread-write = [\"/var/cache/x\"]\n"
                                   "hidden = [\"/srv/secret\"]\nmemory-mib = 512\npids = 64\n"
                                   "cpu = 2\nfile-size-mib = 10\nwall-time-s = 30\n"
                                   "[sandbox.default]\nmemory-mib = 1024\n");
    const struct sandbox_profile *b = sandbox_find(s, "build");
    assert_non_null(b);
    assert_int_equal(b->network, SANDBOX_NET_NONE);
    assert_string_equal(b->read_only[0], "/opt/sdk");
    assert_null(b->read_only[1]);
    assert_string_equal(b->read_write[0], "/var/cache/x");
    assert_string_equal(b->hidden[0], "/srv/secret");
    assert_int_equal(b->limits.memory_mib, 512);
    assert_int_equal(b->limits.pids, 64);
    assert_int_equal(b->limits.cpu_milli, 2000);
    assert_int_equal(b->limits.file_size_mib, 10);
    assert_int_equal(b->limits.wall_time_s, 30);
    assert_int_equal(sandbox_find(s, "default")->limits.memory_mib, 1024);
    assert_string_equal(sandbox_default_name(s), "build");
    sandbox_set_free(s);
}

static void test_bad_config(void **state) {
    (void)state;
    refused("[sandbox.x]\nnetwork = \"some\"\n", "allow");
    refused("[sandbox.x]\nread-only = [\"relative/path\"]\n", "absolute");
    refused("[sandbox.x]\nread-only = [\"/a/../etc\"]\n", "absolute");
    refused("[sandbox.x]\nmemory-mib = -1\n", "memory-mib");
    refused("[sandbox.x]\ncolour = \"red\"\n", "unknown setting");
    refused("[sandbox]\nflavour = 1\n", "unknown setting");
    refused("[sandbox]\ndefault = \"missing\"\n", "no profile named missing");
    refused("[sandbox]\ndefault = \"disabled\"\n", "allow-disabled");
    refused("[sandbox]\nallow-disabled = \"yes\"\n", "true or false");
    refused("[sandbox.disabled]\nnetwork = \"none\"\n", "no settings");
    refused("[sandbox.a.b]\nnetwork = \"none\"\n", "unknown setting");
    /* allow-list destinations: host:port, names or loopback addresses, the two keys together */
    refused("[sandbox.x]\nnetwork = \"allow-list\"\n", "lists no destination");
    refused("[sandbox.x]\nallow-hosts = [\"a.example:443\"]\n", "needs sandbox.x.network");
    static const char *const bad[] = {"a.example",      "a.example:0",    "a.example:65536",
                                      "a.example:44x",  ":443",           "a b:443",
                                      "10.0.0.1:443",   "[::1]:443",      "-a.example:443",
                                      "127.0.0.300:80", "a.example.:443", "a.example:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char toml[200];
        snprintf(toml, sizeof(toml), "[sandbox.x]\nnetwork = \"allow-list\"\n"
                                     "allow-hosts = [\"%s\"]\n", bad[i]);
        refused(toml, "is not \"host:port\"");
    }
}

/* network = "allow-list": the relay's two ends around bubblewrap, its own network namespace,
 * the hosts file, and the inside addresses (a loopback address as is, names 127.0.1.N). */
static void test_allow_list(void **state) {
    (void)state;
    struct sandbox_set *s = set_of("[sandbox.egress]\nnetwork = \"allow-list\"\n"
                                   "allow-hosts = [\"API.Example.com:443\", \"127.0.0.1:8080\","
                                   " \"git.example:22\", \"api.example.com:80\"]\n");
    const struct sandbox_profile *p = sandbox_find(s, "egress");
    assert_int_equal(p->network, SANDBOX_NET_ALLOW_LIST);
    assert_string_equal(p->allow_hosts[0], "api.example.com:443"); /* names in lower case */
    char ip[32];
    assert_true(sandbox_net_inside(p, 0, ip, sizeof(ip)));
    assert_string_equal(ip, "127.0.1.1");
    assert_true(sandbox_net_inside(p, 1, ip, sizeof(ip)));
    assert_string_equal(ip, "127.0.0.1");
    assert_true(sandbox_net_inside(p, 2, ip, sizeof(ip)));
    assert_string_equal(ip, "127.0.1.2");
    assert_true(sandbox_net_inside(p, 3, ip, sizeof(ip))); /* the same name, the same address */
    assert_string_equal(ip, "127.0.1.1");
    assert_false(sandbox_net_inside(p, 4, ip, sizeof(ip)));

    char dir[] = "/tmp/ah-net-XXXXXX", net[64], hosts[80];
    assert_non_null(mkdtemp(dir));
    snprintf(net, sizeof(net), "%s/net", dir);
    assert_int_equal(sandbox_net_prepare(p, net), 0);
    snprintf(hosts, sizeof(hosts), "%s/hosts", net);
    FILE *f = fopen(hosts, "r");
    assert_non_null(f);
    char text[1024] = {0};
    assert_true(fread(text, 1, sizeof(text) - 1, f) > 0);
    fclose(f);
    assert_non_null(strstr(text, "127.0.1.1\tapi.example.com\n"));
    assert_non_null(strstr(text, "127.0.1.2\tgit.example\n"));
    assert_null(strstr(text, "127.0.0.1\t127.0.0.1")); /* an address needs no name */
    unlink(hosts);
    rmdir(net);
    rmdir(dir);

    struct sandbox_paths paths = {.workspace = "/w", .net_dir = "/d/net", .self_exe = "/bin/ah"};
    const char *agent[] = {"agent", NULL};
    struct sandbox_limits lim = {0};
    char **argv = NULL;
    assert_int_equal(sandbox_wrap(s, p, &lim, false, &paths, agent, &argv), 0);
    assert_int_equal(find3(argv, "/bin/ah", "agent", "net-relay"), 0); /* outside, first */
    int dir_o = find3(argv, "--dir", "/d/net", NULL);
    int to0 = find3(argv, "--to", "api.example.com:443", NULL);
    int to3 = find3(argv, "--to", "api.example.com:80", NULL);
    int bw = find3(argv, "bwrap", NULL, NULL);
    int unet = find3(argv, "--unshare-net", NULL, NULL);
    int mnt = find3(argv, "--ro-bind", "/d/net", SANDBOX_NET_INSIDE_DIR);
    int eh = find3(argv, "--ro-bind", "/d/net/hosts", "/etc/hosts");
    int tmp = find3(argv, "--tmpfs", "/tmp", NULL);
    int fw = find3(argv, "/bin/ah", "agent", "net-forward");
    int l0 = find3(argv, "--listen", "127.0.1.1:443", NULL);
    int l1 = find3(argv, "--listen", "127.0.0.1:8080", NULL);
    int l3 = find3(argv, "--listen", "127.0.1.1:80", NULL);
    int ag = 0;
    while (argv[ag + 1])
        ag++;
    int capd = find3(argv, "--cap-drop", "ALL", NULL);
    int capa = find3(argv, "--cap-add", "CAP_NET_BIND_SERVICE", NULL); /* to listen on 443 */
    assert_true(capd > bw && capa > capd);
    /* the inside end forbids nested user namespaces itself (bubblewrap's way would take the
     * netns out of its reach) */
    assert_int_equal(find3(argv, "--disable-userns", NULL, NULL), -1);
    assert_true(dir_o > 0 && to0 > dir_o && to3 > to0 && bw > to3 && unet > bw);
    assert_true(tmp > bw && mnt > tmp && eh > bw && fw > mnt && fw > eh);
    assert_true(l0 > fw && l1 > l0 && l3 > l1);
    assert_string_equal(argv[ag], "agent"); /* last, right after the inside end's -- */
    assert_string_equal(argv[ag - 1], "--");
    assert_true(ag - 1 > l3);
    sandbox_argv_free(argv);
    char *d = sandbox_describe(p, &lim, false);
    assert_non_null(strstr(d, "network only to the allow-list (api.example.com:443, "
                              "127.0.0.1:8080, git.example:22, api.example.com:80)"));
    free(d);
    /* with ah-net, the same ends in a program of their own */
    paths.net_exe = "/bin/ah-net";
    assert_int_equal(sandbox_wrap(s, p, &lim, false, &paths, agent, &argv), 0);
    assert_string_equal(argv[0], "/bin/ah-net");
    assert_string_equal(argv[1], "relay");
    assert_true(find3(argv, "/bin/ah-net", "forward", "--dir") > find3(argv, "bwrap", NULL, NULL));
    assert_int_equal(find3(argv, "net-relay", NULL, NULL), -1);
    sandbox_argv_free(argv);
    /* without the relay's directory and binary there is no command line */
    struct sandbox_paths bare = {.workspace = "/w"};
    assert_int_equal(sandbox_wrap(s, p, &lim, false, &bare, agent, &argv), AH_E_INVAL);
    json_t *rt = json_pack("{s:s, s:s}", "type", "local", "sandbox", "egress");
    json_t *sj = sandbox_session_json(s, rt);
    assert_string_equal(json_string_value(json_object_get(sj, "network")), "allow-list");
    assert_int_equal(json_array_size(json_object_get(sj, "allowHosts")), 4);
    json_decref(sj);
    json_decref(rt);
    sandbox_set_free(s);
}

static void test_check_refuses_with_422(void **state) {
    (void)state;
    struct sandbox_set *s = set_of("");
    struct ah_problem p = {0};
    assert_int_equal(sandbox_check(s, "local", NULL, &p), 0);
    assert_int_equal(sandbox_check(s, "local", "offline", &p), 0);
    assert_int_equal(sandbox_check(s, "local", "nope", &p), AH_E_RUNTIME);
    assert_non_null(strstr(p.detail, "unknown sandbox profile nope"));
    assert_non_null(strstr(p.detail, "default, offline"));
    assert_null(strstr(p.detail, "disabled")); /* not offered: configuration forbids it */
    problem_clear(&p);
    assert_int_equal(sandbox_check(s, "local", "disabled", &p), AH_E_RUNTIME);
    assert_non_null(strstr(p.detail, "allow-disabled"));
    problem_clear(&p);
    assert_int_equal(sandbox_check(s, "disabled", NULL, &p), AH_E_RUNTIME);
    problem_clear(&p);
    assert_int_equal(sandbox_check(s, "devcontainer", NULL, &p), AH_E_RUNTIME);
    assert_non_null(strstr(p.detail, "podman"));
    problem_clear(&p);
    /* no working bubblewrap: a sandboxed task is refused, never run without one */
    sandbox_set_fake_probe(s, false, "bubblewrap (bwrap) is not installed on this host");
    assert_int_equal(sandbox_check(s, "local", NULL, &p), AH_E_RUNTIME);
    assert_non_null(strstr(p.detail, "not installed"));
    problem_clear(&p);
    json_t *rt = sandbox_runtimes_json(s);
    assert_int_equal(json_array_size(json_object_get(rt, "items")), 0);
    assert_int_equal(json_array_size(json_object_get(rt, "unavailable")), 2);
    json_decref(rt);
    sandbox_set_free(s);

    s = set_of("[sandbox]\nallow-disabled = true\n");
    assert_int_equal(sandbox_check(s, "local", "disabled", &p), 0);
    assert_int_equal(sandbox_check(s, "disabled", NULL, &p), 0);
    rt = sandbox_runtimes_json(s);
    json_t *local = json_array_get(json_object_get(rt, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(local, "type")), "local");
    assert_int_equal(json_array_size(json_object_get(local, "sandboxProfiles")), 3);
    json_decref(rt);
    sandbox_set_free(s);
}

static void test_wrap_default(void **state) {
    (void)state;
    struct sandbox_set *s = set_of("");
    /* outside /tmp and /var/tmp, which are private wholesale (nothing there needs hiding): the
     * build directory, or /dev/shm when the checkout itself lies under /tmp */
    char cwd[400], tmp[512];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    bool in_tmp = !strncmp(cwd, "/tmp/", 5) || !strncmp(cwd, "/var/tmp/", 9);
    snprintf(tmp, sizeof(tmp), "%s/ah-sbx-XXXXXX", in_tmp ? "/dev/shm" : cwd);
    assert_non_null(mkdtemp(tmp));
    char data[600], ws[700], home[700], prompt[700];
    snprintf(data, sizeof(data), "%s/data", tmp);
    snprintf(ws, sizeof(ws), "%s/workspaces/S1", data);
    snprintf(home, sizeof(home), "%s/sessions/S1/home", data);
    snprintf(prompt, sizeof(prompt), "%s/sessions/S1/prompt", data);
    mkdir(data, 0700);
    const char *ro[] = {prompt, NULL};
    const char *hide[] = {data, NULL};
    struct sandbox_paths paths = {.workspace = ws, .home = home, .home_at = "/home/agent",
                                  .ro_files = ro, .hide = hide};
    const char *agent[] = {"ah", "agent", "start", "--cwd", ws, NULL};
    struct sandbox_limits lim = {0};
    char **argv = NULL;
    assert_int_equal(sandbox_wrap(s, sandbox_find(s, "default"), &lim, false, &paths, agent,
                                  &argv),
                     0);
    /* bubblewrap first, no `env` before it or the agent: the recorder holds SIGTERM for
     * bubblewrap (--hold-term) and the agent takes it back itself */
    assert_string_equal(argv[0], "bwrap");
    assert_int_equal(find3(argv, "env", NULL, NULL), -1);
    int root = find3(argv, "--ro-bind", "/", "/");
    int hid = find3(argv, "--tmpfs", data, NULL);
    int wsb = find3(argv, "--bind", ws, ws);
    int hb = find3(argv, "--bind", home, "/home/agent");
    int pb = find3(argv, "--ro-bind", prompt, prompt);
    int rem = find3(argv, "--remount-ro", data, NULL);
    int dd = find3(argv, "--", NULL, NULL);
    assert_true(root >= 0 && hid > root && wsb > hid && hb > hid && pb > hid && rem > wsb);
    assert_true(find3(argv, "--unshare-user", NULL, NULL) >= 0);
    assert_int_equal(find3(argv, "--cap-add", NULL, NULL), -1); /* only the relay needs one */
    assert_true(find3(argv, "--unshare-pid", NULL, NULL) >= 0);
    assert_true(find3(argv, "--cap-drop", "ALL", NULL) >= 0);
    assert_true(find3(argv, "--tmpfs", "/tmp", NULL) >= 0);
    assert_true(find3(argv, "--ro-bind", "/dev/null", "/etc/shadow") >= 0 ||
                access("/etc/shadow", F_OK) != 0);
    assert_true(find3(argv, "--setenv", "HOME", "/home/agent") >= 0);
    assert_true(find3(argv, "--chdir", ws, NULL) >= 0);
    assert_int_equal(find3(argv, "--unshare-net", NULL, NULL), -1); /* default: network */
    assert_int_equal(find3(argv, "prlimit", NULL, NULL), -1);       /* no limits */
    assert_string_equal(argv[dd + 1], "ah");
    assert_string_equal(argv[dd + 5], ws);
    assert_null(argv[dd + 6]);
    sandbox_argv_free(argv);

    /* a file the read-only root already shows needs no mount of its own (each one costs
     * bubblewrap a parse of the mount table); one under a hidden tree, or reached through a
     * symbolic link, does */
    char sh[4096], link[800];
    assert_non_null(realpath("/bin/sh", sh));
    snprintf(link, sizeof(link), "%s/sh-link", cwd);
    unlink(link);
    assert_int_equal(symlink(sh, link), 0);
    const char *ro2[] = {prompt, sh, link, NULL};
    paths.ro_files = ro2;
    assert_int_equal(sandbox_wrap(s, sandbox_find(s, "default"), &lim, false, &paths, agent,
                                  &argv),
                     0);
    assert_true(find3(argv, "--ro-bind", prompt, prompt) >= 0);
    assert_int_equal(find3(argv, "--ro-bind", sh, sh), -1);
    assert_true(find3(argv, "--ro-bind", link, link) >= 0);
    sandbox_argv_free(argv);
    unlink(link);
    paths.ro_files = ro;

    /* offline: its own network namespace; limits without cgroups become rlimits */
    lim = (struct sandbox_limits){.memory_mib = 64, .pids = 20, .file_size_mib = 5};
    assert_int_equal(sandbox_wrap(s, sandbox_find(s, "offline"), &lim, false, &paths, agent,
                                  &argv),
                     0);
    assert_true(find3(argv, "--unshare-net", NULL, NULL) >= 0);
    int pl = find3(argv, "prlimit", NULL, NULL);
    assert_true(pl > find3(argv, "--", NULL, NULL));
    assert_string_equal(argv[pl + 1], "--fsize=5242880");
    assert_string_equal(argv[pl + 2], "--as=67108864");
    assert_string_equal(argv[pl + 3], "--nproc=20");
    assert_string_equal(argv[pl + 4], "--");
    assert_string_equal(argv[pl + 5], "ah");
    sandbox_argv_free(argv);
    /* with cgroups only the file size is an rlimit */
    assert_int_equal(sandbox_wrap(s, sandbox_find(s, "offline"), &lim, true, &paths, agent,
                                  &argv),
                     0);
    pl = find3(argv, "prlimit", NULL, NULL);
    assert_string_equal(argv[pl + 1], "--fsize=5242880");
    assert_string_equal(argv[pl + 2], "--");
    sandbox_argv_free(argv);

    /* The default layout: the data directory (workspaces, sessions) inside the server user's
     * home, both hidden. The home's mount hides the data directory too: no mount of its own,
     * and above all no read-only remount of its path at the end, which then leads into the
     * home's mount (bubblewrap refused to start: every sandboxed session failed) */
    char uhome[600], udata[700], uws[800], uhome2[800];
    snprintf(uhome, sizeof(uhome), "%s/user", tmp);
    snprintf(udata, sizeof(udata), "%s/.local", uhome);
    snprintf(uws, sizeof(uws), "%s/S1", udata);
    snprintf(uhome2, sizeof(uhome2), "%s/H1", udata);
    assert_int_equal(mkdir(uhome, 0700), 0);
    assert_int_equal(mkdir(udata, 0700), 0);
    const char *hide2[] = {udata, uhome, udata, NULL};
    struct sandbox_paths up = {.workspace = uws, .home = uhome2, .hide = hide2};
    lim = (struct sandbox_limits){0};
    assert_int_equal(sandbox_wrap(s, sandbox_find(s, "default"), &lim, false, &up, agent, &argv),
                     0);
    assert_true(find3(argv, "--tmpfs", uhome, NULL) >= 0);
    assert_true(find3(argv, "--remount-ro", uhome, NULL) > find3(argv, "--bind", uws, uws));
    assert_int_equal(find3(argv, "--tmpfs", udata, NULL), -1);
    assert_int_equal(find3(argv, "--remount-ro", udata, NULL), -1);
    assert_true(find3(argv, "--bind", uhome2, uhome2) >= 0);
    sandbox_argv_free(argv);
    /* ... and with the session's $HOME shown at the user's home: that bind covers both */
    up.home_at = uhome;
    assert_int_equal(sandbox_wrap(s, sandbox_find(s, "default"), &lim, false, &up, agent, &argv),
                     0);
    assert_int_equal(find3(argv, "--tmpfs", uhome, NULL), -1);
    assert_int_equal(find3(argv, "--tmpfs", udata, NULL), -1);
    assert_int_equal(find3(argv, "--remount-ro", uhome, NULL), -1);
    assert_int_equal(find3(argv, "--remount-ro", udata, NULL), -1);
    assert_true(find3(argv, "--bind", uhome2, uhome) >= 0);
    assert_true(find3(argv, "--ro-bind", "/dev/null", "/etc/shadow") >= 0 ||
                access("/etc/shadow", F_OK) != 0); /* the host's secrets still */
    sandbox_argv_free(argv);
    rmdir(udata);
    rmdir(uhome);

    /* What the server's user may neither read nor search needs no hiding (its agent has that
     * user, those groups and no capability): /etc/shadow and /root for a server that is not
     * root. Judged as another user (root reads everything) in a child process. */
    char closed[600], open_[600];
    snprintf(closed, sizeof(closed), "%s/closed", tmp);
    snprintf(open_, sizeof(open_), "%s/open", tmp);
    assert_int_equal(mkdir(closed, 0700), 0);
    assert_int_equal(mkdir(open_, 0755), 0);
    assert_int_equal(chmod(tmp, 0755), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 ? seteuid(65534) != 0 : chmod(closed, 0) != 0)
            _exit(2);
        const char *hide3[] = {closed, open_, NULL};
        struct sandbox_paths cp = {.workspace = ws, .hide = hide3};
        char **v = NULL;
        if (sandbox_wrap(s, sandbox_find(s, "default"), &lim, false, &cp, agent, &v) != 0)
            _exit(3);
        bool ok = find3(v, "--tmpfs", closed, NULL) < 0 && find3(v, "--tmpfs", open_, NULL) >= 0;
        _exit(ok ? 0 : 1);
    }
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst));
    assert_int_equal(WEXITSTATUS(wst), 0);
    chmod(closed, 0700);
    rmdir(closed);
    rmdir(open_);

    /* relative paths are refused: bubblewrap would resolve them somewhere else */
    paths.workspace = "relative";
    assert_int_equal(sandbox_wrap(s, sandbox_find(s, "default"), &lim, false, &paths, agent,
                                  &argv),
                     AH_E_INVAL);
    rmdir(data);
    rmdir(tmp);
    sandbox_set_free(s);
}

static void test_wrap_disabled_and_describe(void **state) {
    (void)state;
    struct sandbox_set *s = set_of("[sandbox]\nallow-disabled = true\n");
    const char *agent[] = {"agent", NULL};
    struct sandbox_paths paths = {0};
    struct sandbox_limits lim = {0};
    char **argv = NULL;
    assert_int_equal(sandbox_wrap(s, sandbox_find(s, "disabled"), &lim, false, &paths, agent,
                                  &argv),
                     0);
    assert_string_equal(argv[0], "agent"); /* nothing around it */
    assert_null(argv[1]);
    sandbox_argv_free(argv);

    struct sandbox_limits prof = {.memory_mib = 100, .pids = 10, .wall_time_s = 5};
    struct sandbox_limits task = {.memory_mib = 64, .cpu_milli = 1500};
    lim = sandbox_limits_merge(&prof, &task);
    assert_int_equal(lim.memory_mib, 64);
    assert_int_equal(lim.pids, 10);
    assert_int_equal(lim.cpu_milli, 1500);
    assert_int_equal(lim.wall_time_s, 5);
    char *d = sandbox_describe(sandbox_find(s, "offline"), &lim, true);
    assert_non_null(strstr(d, "sandbox offline: bubblewrap, network none"));
    assert_non_null(strstr(d, "memory 64 MiB (cgroup)"));
    assert_non_null(strstr(d, "cpu 1.500 cores (cgroup)"));
    assert_non_null(strstr(d, "wall time 5 s"));
    free(d);
    d = sandbox_describe(sandbox_find(s, "default"), &lim, false);
    assert_non_null(strstr(d, "memory 64 MiB (rlimit)"));
    assert_non_null(strstr(d, "not enforced"));
    free(d);
    sandbox_set_free(s);
}

/* The devcontainer's command line (podman.c): every setting this host's podman needs is on it,
 * the host's `ah` runs inside through the host's loader, the limits are podman's. */
static void test_container_wrap(void **state) {
    (void)state;
    struct sandbox_set *s = set_of("[sandbox]\npodman = \"/usr/bin/podman\"\n");
    char exe[4096];
    assert_non_null(realpath("/bin/true", exe)); /* any dynamically linked program */
    const char *ro[] = {"/srv/data/sessions/S1/prompt", exe, NULL};
    struct sandbox_paths paths = {.workspace = "/srv/data/workspaces/S1",
                                  .home = "/srv/data/sessions/S1/home",
                                  .home_at = "/home/agent",
                                  .ro_files = ro};
    const char *agent[] = {exe, "agent", "start", "--cwd", "/srv/data/workspaces/S1", NULL};
    json_t *env = json_pack("{s:s}", "GREETING", "hi there");
    struct sandbox_container c = {.name = "ah-S1", .image = "localhost/dev:1", .env = env};
    struct sandbox_limits lim = {.memory_mib = 64, .pids = 32, .cpu_milli = 1500};
    char **argv = NULL;
    assert_int_equal(sandbox_container_wrap(s, &c, &lim, &paths, agent, &argv), 0);
    assert_string_equal(argv[0], "/usr/bin/podman");
    assert_int_not_equal(find3(argv, "--runtime", "runc", NULL), -1);
    assert_int_not_equal(find3(argv, "--cgroup-manager", "cgroupfs", "run"), -1);
    assert_int_not_equal(find3(argv, "--cgroup-parent", "/ah-devcontainer/ah-S1", NULL), -1);
    assert_int_not_equal(find3(argv, "--name", "ah-S1", NULL), -1);
    assert_int_not_equal(find3(argv, "--preserve-fds", "2", NULL), -1);
    assert_int_not_equal(find3(argv, "--init", NULL, NULL), -1);
    assert_int_not_equal(find3(argv, "--memory", "64m", NULL), -1);
    assert_int_not_equal(find3(argv, "--pids-limit", "32", NULL), -1);
    assert_int_not_equal(find3(argv, "--cpus", "1.500", NULL), -1);
    assert_int_not_equal(find3(argv, "-e", "HOME=/home/agent", NULL), -1);
    assert_int_not_equal(find3(argv, "-e", "GREETING=hi there", NULL), -1);
    assert_int_not_equal(
        find3(argv, "-v", "/srv/data/workspaces/S1:/srv/data/workspaces/S1", NULL), -1);
    assert_int_not_equal(find3(argv, "-v", "/srv/data/sessions/S1/home:/home/agent", NULL), -1);
    assert_int_not_equal(
        find3(argv, "-v", "/srv/data/sessions/S1/prompt:/srv/data/sessions/S1/prompt:ro", NULL),
        -1);
    int img = find3(argv, "localhost/dev:1", NULL, NULL);
    assert_int_not_equal(img, -1);
    /* after the image: the host's loader runs the host's ah, mounted under /.ah */
    assert_memory_equal(argv[img + 1], "/.ah/lib/ld-", 12);
    assert_string_equal(argv[img + 2], "--library-path");
    assert_string_equal(argv[img + 3], "/.ah/lib");
    assert_string_equal(argv[img + 4], "/.ah/ah");
    assert_string_equal(argv[img + 5], "agent");
    sandbox_argv_free(argv);

    /* nothing podman would take for an option or split wrongly */
    c.image = "--privileged";
    assert_int_equal(sandbox_container_wrap(s, &c, &lim, &paths, agent, &argv), AH_E_INVAL);
    c.image = "localhost/dev:1";
    paths.workspace = "/srv/a:b";
    assert_int_equal(sandbox_container_wrap(s, &c, &lim, &paths, agent, &argv), AH_E_INVAL);
    paths.workspace = "/srv/data/workspaces/S1";
    json_object_set_new(env, "BAD NAME", json_string("x"));
    assert_int_equal(sandbox_container_wrap(s, &c, &lim, &paths, agent, &argv), AH_E_INVAL);
    json_decref(env);
    sandbox_set_free(s);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_devcontainer_read(void **state) {
    (void)state;
    char ws[] = "/tmp/ah-dc-XXXXXX";
    assert_non_null(mkdtemp(ws));
    char *image = NULL;
    json_t *env = NULL;
    struct ah_problem p = {0};
    /* JSON with comments and trailing commas, as editors write it */
    write_text(ws, "a.json",
               "// top\n{\n  \"name\": \"x // not a comment\", /* block\n comment */\n"
               "  \"image\": \"debian:12\",\n  \"containerEnv\": {\"A\": \"1\",},\n"
               "  \"customizations\": {\"vscode\": {}},\n}\n");
    assert_int_equal(sandbox_devcontainer_read(ws, "a.json", &image, &env, &p), 0);
    assert_string_equal(image, "debian:12");
    assert_string_equal(json_string_value(json_object_get(env, "A")), "1");
    free(image);
    json_decref(env);
    /* an image built by the file is not run */
    write_text(ws, "b.json", "{\"build\": {\"dockerfile\": \"Dockerfile\"}}");
    memset(&p, 0, sizeof(p));
    assert_int_equal(sandbox_devcontainer_read(ws, "b.json", &image, &env, &p), AH_E_UNSUPPORTED);
    assert_non_null(strstr(p.detail, "ready images"));
    /* no file; outside the workspace; bad contents */
    memset(&p, 0, sizeof(p));
    assert_int_equal(sandbox_devcontainer_read(ws, "none.json", &image, &env, &p), AH_E_NOTFOUND);
    memset(&p, 0, sizeof(p));
    assert_int_equal(sandbox_devcontainer_read(ws, "../x.json", &image, &env, &p), AH_E_INVAL);
    memset(&p, 0, sizeof(p));
    assert_int_equal(sandbox_devcontainer_read(ws, "/etc/passwd", &image, &env, &p), AH_E_INVAL);
    char link[600];
    snprintf(link, sizeof(link), "%s/out.json", ws);
    assert_int_equal(symlink("/etc/hostname", link), 0);
    memset(&p, 0, sizeof(p));
    assert_int_equal(sandbox_devcontainer_read(ws, "out.json", &image, &env, &p), AH_E_INVAL);
    write_text(ws, "c.json", "{\"image\": \"--privileged\"}");
    memset(&p, 0, sizeof(p));
    assert_int_equal(sandbox_devcontainer_read(ws, "c.json", &image, &env, &p), AH_E_INVAL);
    write_text(ws, "d.json", "{\"image\": \"x\", \"containerEnv\": {\"1A\": \"v\"}}");
    memset(&p, 0, sizeof(p));
    assert_int_equal(sandbox_devcontainer_read(ws, "d.json", &image, &env, &p), AH_E_INVAL);
    write_text(ws, "e.json", "[1, 2");
    memset(&p, 0, sizeof(p));
    assert_int_equal(sandbox_devcontainer_read(ws, "e.json", &image, &env, &p), AH_E_INVAL);
    assert_null(image);
    assert_null(env);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ws);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_profiles),
        cmocka_unit_test(test_custom_profiles),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_check_refuses_with_422),
        cmocka_unit_test(test_wrap_default),
        cmocka_unit_test(test_wrap_disabled_and_describe),
        cmocka_unit_test(test_container_wrap),
        cmocka_unit_test(test_devcontainer_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
