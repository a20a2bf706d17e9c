"""The executor control plane between two real processes (D24, D41, D42): `ah agent
access-point --quic-port` and `ah agent enroll` on loopback, each with its own directory.
Certificates are made by tests/enroll/mkcerts.sh (certtool). Each identity refusal must be one
clear line in the logs of both processes, naming what was expected and what was presented."""

import os
import re
import signal
import subprocess
import time
import unittest

import ahtest
from fleettest import SERVE_ID, FleetTestCase, wait_for


class ExecutorLinkTest(FleetTestCase):
    def test_enroll_heartbeat_goodbye(self):
        ap = self.access_point()
        ex = self.executor(ap, extra=["--expected-server-id", SERVE_ID, "--labels", "zone=z1"])
        wait_for("enrolled (access point)", lambda: "executor spiffe://example.org/ah/agent/a "
                 "enrolled from 127.0.0.1:" in ap.stderr())
        wait_for("enrolled (executor)", lambda: "enrolled at the access point" in ex.text())
        self.assertEqual(ex.stop(), 0, ex.text())
        wait_for("goodbye", lambda: "executor spiffe://example.org/ah/agent/a says goodbye "
                 "(executor stopping (TERM))" in ap.stderr())

    def test_online_then_offline(self):
        """Enrolled over QUIC → online in GET /executors; kill -9 → offline after 3 missed
        heartbeats (0.2 s each), long before the QUIC idle timeout (60 s) could close the link."""
        ap = self.access_point(extra=["--quic-idle-timeout-ms", "60000"])
        ex = self.executor(ap, extra=["--expected-server-id", SERVE_ID, "--labels", "zone=z1"])
        aid = "spiffe://example.org/ah/agent/a"

        def mine():
            r = ap.get("/api/v1/executors")
            self.assertEqual(r.status, 200, r)
            return next((x for x in r.json()["items"] if x["id"] == aid), None)
        e = wait_for("online", lambda: (lambda x: x if x and x["health"] == "online" else None)(
            mine()))
        self.assertEqual(e["name"], "a")
        self.assertEqual(e["labels"], {"zone": "z1"})
        self.assertTrue(e["lastSeen"])
        ex.proc.kill()
        ex.proc.wait()
        t0 = time.monotonic()
        wait_for("offline", lambda: mine()["health"] == "offline", timeout=20)
        self.assertLess(time.monotonic() - t0, 20)
        self.assertNotIn("timed out", ap.stderr())  # the link itself is still open: heartbeats tell

    def test_failover_to_the_next_access_point(self):
        """Several --remote-server addresses (replicas of one access point, D46): the executor
        enrolls at the first; killed with SIGKILL (no goodbye, its port closed), the executor
        moves to the next one at once, long before the QUIC idle timeout (60 s) could tell; an
        executor whose first address is dead from the start enrolls at the next."""
        a = self.access_point(extra=["--quic-idle-timeout-ms", "60000"])
        b = self.access_point(extra=["--quic-idle-timeout-ms", "60000"])

        def online(ap, aid):
            r = ap.get("/api/v1/executors/" + aid)
            return r.status == 200 and r.json()["health"] == "online"
        ex = self.executor(a, extra=["--expected-server-id", SERVE_ID, "--remote-server",
                                     "127.0.0.1:%d" % b.quic_port])
        wait_for("online at A", lambda: online(a, "a"))
        self.assertFalse(online(b, "a"))
        a.proc.kill()
        a.proc.wait()
        t0 = time.monotonic()
        wait_for("online at B", lambda: online(b, "a"), timeout=30)
        self.assertLess(time.monotonic() - t0, 30)
        self.assertIn("reconnecting to 127.0.0.1:%d" % b.quic_port, ex.text())
        # a dead first address (A's): the next one
        self.executor(a, cert="b", extra=["--expected-server-id", SERVE_ID, "--remote-server",
                                          "quic://127.0.0.1:%d" % b.quic_port])
        wait_for("b online", lambda: online(b, "b"), timeout=30)

    def refused(self, ap, ex, needle, server_refuses=True):
        if server_refuses:
            wait_for("the access point's line", lambda: re.search(
                r"link: access point refused executor at 127\.0\.0\.1:\d+: " + re.escape(needle),
                ap.stderr()))
            wait_for("the executor's line", lambda: re.search(
                r"link: the access point at 127\.0\.0\.1:\d+ refused this executor \(.*\): "
                + re.escape(needle), ex.text()))
        else:
            wait_for("the executor's line", lambda: re.search(
                r"link: executor refused the access point at 127\.0\.0\.1:\d+: "
                + re.escape(needle), ex.text()))
            wait_for("the access point's line", lambda: re.search(
                r"link: executor at 127\.0\.0\.1:\d+ \(.*\) refused this access point: "
                + re.escape(needle), ap.stderr()))
        self.assertNotIn("enrolled", ex.text())

    def test_wrong_trust_domain(self):
        ap = self.access_point()
        ex = self.executor(ap, cert="othertd")
        self.refused(ap, ex, "executor presented 'spiffe://other.org/ah/agent/a': trust domain "
                     "'other.org' is not the allowed 'example.org'")

    def test_wrong_spiffe_id(self):
        ap = self.access_point(extra=["--executor-id-patterns",
                                      "spiffe://example.org/ah/agent/build-*"])
        ex = self.executor(ap, cert="a")
        self.refused(ap, ex, "executor presented 'spiffe://example.org/ah/agent/a', which "
                     "matches none of the allowed ids (spiffe://example.org/ah/agent/build-*)")

    def test_expired_certificate(self):
        ap = self.access_point()
        ex = self.executor(ap, cert="expired")
        self.refused(ap, ex, "certificate of 'spiffe://example.org/ah/agent/old' expired at "
                     "2020-01-01T00:00:00Z")

    def test_unexpected_access_point_id(self):
        ap = self.access_point(cert="evil")
        ex = self.executor(ap, cert="a")
        self.refused(ap, ex, "access point presented 'spiffe://example.org/ah/agent/evil', "
                     "expected 'spiffe://example.org/ah/serve' (--expected-server-id)",
                     server_refuses=False)

    def test_cli_refusals(self):
        def run(args):
            p = subprocess.run([ahtest.AH_BIN, "agent", "enroll"] + args,
                               capture_output=True, text=True, timeout=30)
            return p.returncode, p.stderr
        base = ["--remote-server", "quic://127.0.0.1:9", "--identity", "files",
                "--cert-file", self.c("a.pem"),
                "--key-file", self.c("a.key"), "--ca-file", self.c("ca.pem")]
        code, err = run(base + ["--identity", "vault"])
        self.assertEqual(code, 2, err)  # certificate files belong to the files mode
        self.assertIn("flags of another identity mode", err)
        code, err = run(base[:2] + base[4:])  # the default identity, spiffe, forbids them
        self.assertEqual(code, 2, err)
        self.assertIn("not allowed with it", err)
        self.assertIn("not built in", err)
        code, err = run(base[:2] + ["--identity", "vault", "--vault-addr", "https://v",
                                    "--vault-role", "r", "--server-san", "dns=ap"])
        self.assertEqual(code, 8, err)
        self.assertIn("--identity vault is not built in", err)
        code, err = run(base + ["--identity", "insecure"])
        self.assertEqual(code, 2, err)
        self.assertIn("refused unless --allow-insecure", err)
        code, err = run(base)  # files mode, but nothing pins the access point's identity
        self.assertEqual(code, 2, err)
        self.assertIn("--expected-server-id", err)
        code, err = run(["--cert-file", "x"])
        self.assertEqual(code, 2, err)
        self.assertIn("--remote-server", err)
        # an access point asked for a listener without its certificate: one line, exit 8
        p = subprocess.run([ahtest.AH_BIN, "agent", "access-point", "--port", "0", "--db",
                            ":memory:", "--quic-port", "0"], capture_output=True, text=True,
                           timeout=60, env={k: v for k, v in os.environ.items()
                                            if not k.startswith("AH_")} | {"HOME": self.tmp})
        self.assertEqual(p.returncode, 8, p.stderr)
        self.assertIn("executor control plane: identity 'files' needs a certificate", p.stderr)


if __name__ == "__main__":
    ahtest.main()
