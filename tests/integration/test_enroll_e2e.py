"""End to end (issue 16 items 3, 4, 8): a real `ah agent enroll` joins a real access point over
QUIC with mutual TLS and shows in GET /api/v1/executors with the facts it detected and was given;
placement sends a task only it fits to it, where it runs; an admin
drains it; kill -9 turns it offline after 3 missed heartbeats; a restarted access point still
lists it (offline, still drained) until it enrolls again; a stopped executor is offline at once
and can then be removed. Certificates come from tests/enroll/mkcerts.sh (certtool)."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import ahtest
from sessiontest import create, task, wait_status

HERE = os.path.dirname(os.path.abspath(__file__))
MKCERTS = os.path.join(HERE, "..", "enroll", "mkcerts.sh")
SERVE_ID = "spiffe://example.org/ah/serve"
EXEC_ID = "spiffe://example.org/ah/agent/a"


def wait_for(what, cond, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class EnrollEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-e2e-")
        cls.certs = os.path.join(cls.tmp, "certs")
        subprocess.run(["sh", MKCERTS, cls.certs], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def c(self, name):
        return os.path.join(self.certs, name)

    def quic_port(self, ap):
        m = wait_for("the QUIC listener", lambda: re.search(
            r"QUIC listening on 127\.0\.0\.1:(\d+)", ap.stderr()))
        return int(m.group(1))

    def enroll(self, ap):
        d = tempfile.mkdtemp(prefix="ah-exec-", dir=self.tmp)
        log = open(os.path.join(d, "stderr.log"), "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env["HOME"] = d
        args = ["--remote-server", "quic://127.0.0.1:%d" % self.quic_port(ap),
                "--identity", "files", "--cert-file", self.c("a.pem"), "--key-file",
                self.c("a.key"), "--ca-file", self.c("ca.pem"), "--expected-server-id",
                SERVE_ID, "--heartbeat-interval", "0.2", "--labels", "gpu=true,zone=z1",
                "--tags", "ci", "--max-concurrent-tasks", "3", "--data-dir", d,
                "--resources", json.dumps({"gpu": {"count": 1, "model": "test"}})]
        p = subprocess.Popen([ahtest.AH_BIN, "agent", "enroll"] + args, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, env=env)
        log.close()
        p.log = os.path.join(d, "stderr.log")

        def cleanup():
            if p.poll() is None:
                p.kill()
                p.wait()
        self.addCleanup(cleanup)
        return p

    def executor(self, ap, health=None):
        r = ap.get("/api/v1/executors/a")
        if r.status == 404:
            return None
        self.assertEqual(r.status, 200, r)
        e = r.json()
        return e if health is None or e["health"] == health else None

    def test_enroll_drain_kill_restart(self):
        ap = ahtest.Server(args=["--quic-port", "0", "--quic-cert", self.c("serve.pem"),
                                 "--quic-key", self.c("serve.key"), "--quic-ca",
                                 self.c("ca.pem"), "--executor-trust-domain", "example.org",
                                 "--quic-idle-timeout-ms", "60000"])
        self.addCleanup(ap.close)
        ex = self.enroll(ap)
        e = wait_for("online", lambda: self.executor(ap, "online"))
        # what it detected and what it was given
        self.assertEqual(e["id"], EXEC_ID)
        self.assertEqual((e["name"], e["status"], e["drained"]), ("a", "online", False))
        self.assertEqual(e["labels"], {"gpu": "true", "zone": "z1"})
        self.assertEqual(e["tags"], ["ci"])
        self.assertEqual((e["capacity"], e["heartbeatIntervalMs"]), (3, 200))
        self.assertEqual((e["os"], e["arch"]), ("linux", os.uname().machine))
        self.assertEqual(e["host"]["kernel"], os.uname().release)
        self.assertEqual(e["resources"]["gpu"], {"count": 1, "model": "test"})
        self.assertEqual(e["resources"]["cores"], os.cpu_count())
        self.assertGreater(e["resources"]["memory_bytes"], 0)
        self.assertIn("git", e["snapshotCapabilities"])
        self.assertIn("scripted", [a["type"] for a in e["agents"]])
        self.assertTrue(e["lastSeen"])
        self.assertIsNone(e["disconnectReason"])
        # its heartbeats: health checks, load, free slots
        e = wait_for("a heartbeat", lambda: (lambda x: x if x["healthChecks"] else None)(
            self.executor(ap)))
        self.assertEqual({c["name"] for c in e["healthChecks"]}, {"data-dir", "disk"})
        self.assertEqual((e["freeSlots"], e["running"]), (3, 0))
        self.assertIsInstance(e["load"], (int, float))

        # a task only this executor fits (its labels) is placed there and runs there (issue 16
        # item 5; tests/integration/test_remote_sessions.py has the rest)
        sid = create(ap, task([{"thought": "x"}], labels={"gpu": "true"}))["session_ids"][0]
        s = wait_status(ap, sid, "completed", timeout=60)
        self.assertNotIn("queuedReason", s)

        # drained: still online, no longer a place for sessions
        r = ap.post("/api/v1/executors/a/drain")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json()["drained"])
        self.assertEqual(r.json()["health"], "online")
        sid = create(ap, task([{"thought": "x"}], labels={"gpu": "true"}))["session_ids"][0]
        s = ap.get("/api/v1/sessions/" + sid).json()
        self.assertEqual(s["status"], "queued")
        self.assertIn("a: drained", s["queuedReason"])
        # connected: cannot be removed
        self.assertEqual(ap.request("DELETE", "/api/v1/executors/a").status, 409)

        # killed: no goodbye; offline once 3 heartbeats (0.6 s) are missed, not at the QUIC
        # idle timeout (60 s)
        ex.kill()
        ex.wait()
        t0 = time.monotonic()
        wait_for("offline", lambda: self.executor(ap, "offline"), timeout=20)
        self.assertLess(time.monotonic() - t0, 20)
        self.assertEqual(self.executor(ap)["freeSlots"], 0)

        # the access point restarts: the executor is still listed, offline, still drained
        ap.stop()
        ap.start()
        e = self.executor(ap)
        self.assertEqual((e["id"], e["health"], e["drained"]), (EXEC_ID, "offline", True))
        self.assertEqual(e["labels"], {"gpu": "true", "zone": "z1"})
        self.assertEqual(e["disconnectReason"], "the access point restarted")

        # it enrolls again: online, the drain kept
        ex = self.enroll(ap)
        e = wait_for("online again", lambda: self.executor(ap, "online"))
        self.assertTrue(e["drained"])
        # a clean stop says goodbye: offline at once, with the reason
        ex.send_signal(signal.SIGTERM)
        self.assertEqual(ex.wait(30), 0)
        with open(ex.log, encoding="utf-8", errors="replace") as f:
            log = f.read()
        for m in ahtest.SANITIZER_MARKERS:
            self.assertNotIn(m, log)
        e = wait_for("offline after goodbye", lambda: self.executor(ap, "offline"), timeout=10)
        self.assertIn("stopping", e["disconnectReason"])
        r = ap.request("DELETE", "/api/v1/executors/a")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(ap.get("/api/v1/executors/a").status, 404)
        self.assertEqual(ap.request("DELETE", "/api/v1/sessions/" + sid).status, 204)


if __name__ == "__main__":
    ahtest.main()
