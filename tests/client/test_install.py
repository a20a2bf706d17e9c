"""test_install.py — libah-client as a user gets it: `cmake --install` into a temporary prefix,
then examples/list-sessions.c built with nothing but `pkg-config ah-client` (shared library),
and once more against the installed static archive alone; both binaries run against a real
`ah` and print its version and sessions. Also: the installed headers compile on their own in
strict C17, and the shared library exports only ah_* symbols.

Environment (set by tests.cmake): AH_BUILD_DIR, AH_SOURCE_DIR, AH_BIN, AH_CC, AH_SANITIZE.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import ahtest

BUILD = os.environ["AH_BUILD_DIR"]
SOURCE = os.environ["AH_SOURCE_DIR"]
CC = os.environ.get("AH_CC") or "cc"
SANITIZE = os.environ.get("AH_SANITIZE", "OFF").upper() in ("ON", "1", "TRUE", "YES")
SAN_FLAGS = ["-fsanitize=address,undefined"] if SANITIZE else []


def run(cmd, env=None, check=True):
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stdout))
    return p


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-install-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        run(["cmake", "--install", BUILD, "--prefix", cls.prefix])
        pcs = glob.glob(os.path.join(cls.prefix, "**", "ah-client.pc"), recursive=True)
        if len(pcs) != 1:
            raise AssertionError("ah-client.pc not installed: %r" % pcs)
        cls.pcdir = os.path.dirname(pcs[0])
        cls.libdir = os.path.dirname(cls.pcdir)
        cls.env = dict(os.environ, PKG_CONFIG_PATH=cls.pcdir)
        cls.server = ahtest.Server()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.close()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def pkg(self, *args):
        return run(["pkg-config"] + list(args) + ["ah-client"], env=self.env).stdout.split()

    def test_layout(self):
        inc = os.path.join(self.prefix, "include", "ah")
        for h in ("client.h", "task_manager.h", "clock.h", "error.h"):
            self.assertTrue(os.path.exists(os.path.join(inc, h)), h)
        self.assertTrue(os.path.exists(os.path.join(self.libdir, "libah-client.a")))
        so = os.path.join(self.libdir, "libah-client.so")
        self.assertTrue(os.path.islink(so))
        soname = run(["objdump", "-p", so]).stdout
        self.assertIn("SONAME               libah-client.so.0", soname)
        self.assertEqual(run(["pkg-config", "--modversion", "ah-client"],
                             env=self.env).stdout.strip(), "0.1.0")

    def test_exports_only_public_names(self):
        so = os.path.realpath(os.path.join(self.libdir, "libah-client.so"))
        out = run(["nm", "-D", "--defined-only", so]).stdout
        names = [l.split()[-1].split("@")[0] for l in out.splitlines() if l.split()]
        bad = [n for n in names if not n.startswith("ah_") and n != "AH_CLIENT_0"]
        self.assertEqual(bad, [], "internal symbols exported")
        for n in ("ah_client_new", "ah_task_manager_new_mock", "ah_strerror",
                  "ah_clock_new_virtual", "ah_client_stream_events"):
            self.assertIn(n, names)

    def test_headers_are_strict_c17(self):
        src = os.path.join(self.tmp, "hdr.c")
        with open(src, "w") as f:
            f.write("#include <ah/task_manager.h>\n#include <ah/client.h>\n#include <ah/clock.h>\n"
                    "int main(void) { return ah_session_status_terminal(AH_STATUS_FAILED) ? 0 : 1; }\n")
        run([CC, "-std=c17", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", src, "-o",
             os.path.join(self.tmp, "hdr.o")] + self.pkg("--cflags"), env=self.env)

    def build_and_run(self, exe, link_args):
        example = os.path.join(SOURCE, "examples", "list-sessions.c")
        run([CC, "-std=c17", "-Wall", "-Wextra", "-Werror", example, "-o", exe] + SAN_FLAGS +
            link_args, env=self.env)
        url = "http://127.0.0.1:%d" % self.server.port
        # A session first, so there is something to list.
        self.server.post("/api/v1/tasks", {
            "prompt": "install test", "repo": {"mode": "none"}, "runtime": {"type": "local"},
            "agents": [{"type": "scripted", "settings": {"scenario": [{"exit": 0}]}}]})
        p = run([exe, url], env=self.env, check=False)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn("server 0.1.0", p.stdout)
        self.assertIn("STATUS", p.stdout)
        self.assertRegex(p.stdout, r"\d+ shown, \d+ in total")
        # A bad URL is a clean error, not a crash.
        p = run([exe, "ftp://nowhere"], env=self.env, check=False)
        self.assertEqual(p.returncode, 1, p.stdout)

    def test_example_shared(self):
        exe = os.path.join(self.tmp, "list-sessions")
        self.build_and_run(exe, self.pkg("--cflags", "--libs") +
                           ["-Wl,-rpath," + self.libdir])
        deps = run(["ldd", exe]).stdout
        self.assertIn(self.libdir, deps)  # the installed library, not the build tree's

    def test_example_static(self):
        exe = os.path.join(self.tmp, "list-sessions-static")
        deps = run(["pkg-config", "--libs", "libcurl", "jansson"]).stdout.split()
        self.build_and_run(exe, self.pkg("--cflags") +
                           [os.path.join(self.libdir, "libah-client.a")] + deps + ["-lpthread"])
        self.assertNotIn("libah-client", run(["ldd", exe]).stdout)


if __name__ == "__main__":
    ahtest.main()
