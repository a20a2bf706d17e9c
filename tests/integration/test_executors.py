"""The fleet's REST side (issue 16 items 3, 4; D43): GET /executors and /executors/{id}, drain
and removal (admin only, audited), a restarted access point that still lists its executors,
placement's reasons on queued sessions, and the pure control-plane mode
(--max-concurrent-tasks 0).

Executors really enroll over QUIC in test_enroll_e2e.py; here the one executor is a row written
into the database while the access point is stopped — the restart-persistence path, exactly what
an access point finds after a restart.
"""

import json
import os
import subprocess
import time

import ahtest
from ahtest import Server, ServerTest
from sessiontest import create, session, task, wait_status

SPIFFE = "spiffe://example.org/ah/agent/w-gpu"
HELLO = {"type": "Hello", "executor_id": SPIFFE, "name": "w-gpu", "version": "0.9",
         "labels": {"gpu": "true", "region": "eu"}, "tags": ["ci"],
         "heartbeat_interval_ms": 5000, "max_concurrent_tasks": 4,
         "resources": {"cores": 8, "memory_bytes": 1 << 34},
         "host": {"os": "linux", "arch": "aarch64", "kernel": "6.1.0"},
         "snapshot_providers": ["git", "copy"], "runtimes": ["local"],
         "agents": [{"type": "scripted", "version": "0.9"}]}


def db_exec(db, sql):
    if "://" in db:
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                       check=True, stdin=subprocess.DEVNULL)
        return
    import sqlite3
    conn = sqlite3.connect(db)
    try:
        conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


def record_executor(server, hello=HELLO, seen_ms=None):
    """What the access point wrote when this executor enrolled (its Hello), as it finds it after
    a restart."""
    seen = seen_ms or int(time.time() * 1000) - 60000
    facts = json.dumps(hello).replace("'", "''")
    db_exec(server.db, "INSERT INTO executors (id, name, facts, drained, first_seen, last_seen)"
                       " VALUES ('%s', '%s', '%s', 0, %d, %d)"
                       % (hello["executor_id"], hello["name"], facts, seen, seen))


def make_key(server, role, tenant="default"):
    r = subprocess.run([ahtest.AH_BIN, "admin", "api-key", "create", "--role", role, "--tenant",
                        tenant, "--db", server.db], capture_output=True, text=True,
                       env=server.env(), timeout=60)
    assert r.returncode == 0, r
    return r.stdout.strip()


class Fleet(ServerTest):
    def test_local_runner_listed(self):
        r = self.server.get("/api/v1/executors")
        self.assertEqual(r.status, 200, r)
        local = r.json()["items"][0]
        self.assertEqual((local["id"], local["health"], local["status"]),
                         ("local", "online", "online"))
        r = self.server.get("/api/v1/executors/local")
        self.assertEqual(r.json()["id"], "local")
        self.assertProblem(self.server.get("/api/v1/executors/nobody"), 404, "not-found")
        # the local runner is neither drained nor removed over the API
        self.assertProblem(self.server.post("/api/v1/executors/local/drain"), 409)
        self.assertProblem(self.server.request("DELETE", "/api/v1/executors/local"), 409)
        self.assertProblem(self.server.post("/api/v1/executors/nobody/drain"), 404)
        self.assertProblem(self.server.request("DELETE", "/api/v1/executors/nobody"), 404)

    def test_pinned_to_unknown_executor_stays_queued(self):
        body = task([{"thought": "x"}], workspace={"snapshotPreference": ["copy"],
                                                 "executionHostId": "w-nowhere"})
        sid = create(self.server, body)["session_ids"][0]
        # it never starts; the reason is on the session
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            s = session(self.server, sid)
            self.assertEqual(s["status"], "queued", s)
            time.sleep(0.1)
        self.assertIn("w-nowhere names no known executor", s["queuedReason"])
        # the same task pinned to the local runner runs (as every task without a pin does)
        body["workspace"]["executionHostId"] = "local"
        sid2 = create(self.server, body)["session_ids"][0]
        s2 = wait_status(self.server, sid2, "completed")
        self.assertNotIn("queuedReason", s2)
        self.assertEqual(self.server.request("DELETE", "/api/v1/sessions/" + sid).status, 204)


class Restart(ServerTest):
    """An enrolled executor recorded by a previous run: listed offline with its facts, drained
    and removed by an admin (audited), the drain kept across a restart."""

    def test_restart_keeps_fleet_and_admin_actions(self):
        s = self.server
        s.stop()
        record_executor(s)
        admin, operator, viewer = (make_key(s, r) for r in ("admin", "operator", "viewer"))
        s.start()
        h = lambda k: {"Authorization": "ApiKey " + k}
        items = s.get("/api/v1/executors", headers=h(viewer)).json()["items"]
        self.assertEqual([e["id"] for e in items], ["local", SPIFFE])
        ex = items[1]
        self.assertEqual((ex["name"], ex["health"], ex["status"], ex["arch"], ex["os"]),
                         ("w-gpu", "offline", "offline", "aarch64", "linux"))
        self.assertEqual(ex["labels"], {"gpu": "true", "region": "eu"})
        self.assertEqual(ex["capacity"], 4)
        self.assertEqual(ex["freeSlots"], 0)
        self.assertEqual(ex["snapshotCapabilities"], ["git", "copy"])
        self.assertEqual(ex["agents"], [{"type": "scripted", "version": "0.9"}])
        self.assertFalse(ex["drained"])
        self.assertIsNotNone(ex["lastSeen"])
        self.assertEqual(ex["disconnectReason"], "the access point restarted")
        self.assertEqual(s.get("/api/v1/executors/w-gpu", headers=h(viewer)).json()["id"], SPIFFE)

        # a task whose labels only that executor has waits for it, and says so
        body = task([{"thought": "x"}], labels={"gpu": "true", "team": "ml"})
        sid = create(s, body, headers=h(operator))["session_ids"][0]
        q = s.get("/api/v1/sessions/" + sid, headers=h(viewer)).json()
        self.assertEqual(q["status"], "queued")
        self.assertIn("w-gpu: offline", q["queuedReason"])
        self.assertIn("local: label gpu does not match", q["queuedReason"])
        # labels no executor advertises are annotations: runs locally as always
        sid2 = create(s, task([{"thought": "y"}], labels={"team": "ml"}),
                      headers=h(operator))["session_ids"][0]
        deadline = time.monotonic() + 30
        while s.get("/api/v1/sessions/" + sid2, headers=h(viewer)).json()["status"] != "completed":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)

        # drain and remove are the admin's
        for key in (viewer, operator):
            self.assertProblem(s.post("/api/v1/executors/w-gpu/drain", headers=h(key)), 403)
            self.assertProblem(s.request("DELETE", "/api/v1/executors/w-gpu", headers=h(key)),
                               403)
        r = s.post("/api/v1/executors/w-gpu/drain", headers=h(admin))
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json()["drained"])
        # drained: the queued session's reason says so now
        q = s.get("/api/v1/sessions/" + sid, headers=h(viewer)).json()
        self.assertIn("w-gpu: drained", q["queuedReason"])

        s.stop()
        s.start()
        ex = s.get("/api/v1/executors/w-gpu", headers=h(viewer)).json()
        self.assertTrue(ex["drained"])  # kept across the restart
        self.assertEqual(ex["health"], "offline")

        r = s.request("DELETE", "/api/v1/executors/w-gpu", headers=h(admin))
        self.assertEqual(r.status, 204, r)
        # no runner advertises gpu any more: the waiting session is the local runner's now
        deadline = time.monotonic() + 30
        while s.get("/api/v1/sessions/" + sid, headers=h(viewer)).json()["status"] != "completed":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.assertProblem(s.get("/api/v1/executors/w-gpu", headers=h(viewer)), 404)
        self.assertEqual([e["id"] for e in
                          s.get("/api/v1/executors", headers=h(viewer)).json()["items"]],
                         ["local"])
        # audited, with who did it and the outcome (the refusals too)
        audit = s.get("/api/v1/audit?perPage=200", headers=h(admin)).json()["items"]
        seen = {(a["action"], a["outcome"]) for a in audit}
        self.assertIn(("POST /api/v1/executors/{id}/drain", "success"), seen)
        self.assertIn(("DELETE /api/v1/executors/{id}", "success"), seen)
        self.assertIn(("authz.denied", "denied"), seen)
        s.stop()
        s.start()
        self.assertEqual(len(s.get("/api/v1/executors", headers=h(viewer)).json()["items"]), 1)


class ControlPlane(ServerTest):
    """--max-concurrent-tasks 0: no session runs on the access point itself."""

    server_args = ("--max-concurrent-tasks", "0")

    def test_nothing_runs_locally(self):
        items = self.server.get("/api/v1/executors").json()["items"]
        self.assertEqual(items, [])
        self.assertProblem(self.server.get("/api/v1/executors/local"), 404)
        sid = create(self.server, task([{"thought": "x"}]))["session_ids"][0]
        deadline = time.monotonic() + 2  # every chance to (wrongly) start it
        while time.monotonic() < deadline:
            s = session(self.server, sid)
            self.assertEqual(s["status"], "queued", s)
            time.sleep(0.1)
        self.assertIn("no runner can take this session", s["queuedReason"])
        self.assertEqual(self.server.request("DELETE", "/api/v1/sessions/" + sid).status, 204)


class Fairness(ServerTest):
    """Per-tenant fairness (D43): a freed slot goes to the tenant running the fewest sessions,
    not to the oldest queued session of a tenant that already runs more."""

    server_args = ("--max-concurrent-tasks", "2")

    def test_freed_slot_goes_to_the_other_tenant(self):
        s = self.server
        a = {"X-Tenant-ID": "acme"}
        b = {"X-Tenant-ID": "bravo"}
        long = task([{"sleep": 60000}])
        a1, a2 = (create(s, long, headers=a)["session_ids"][0] for _ in range(2))
        for sid in (a1, a2):
            wait_status_h(s, sid, "running", a)
        a3 = create(s, task([{"thought": "a3"}]), headers=a)["session_ids"][0]
        b1 = create(s, task([{"thought": "b1"}]), headers=b)["session_ids"][0]
        q = s.get("/api/v1/sessions/" + a3, headers=a).json()
        self.assertIn("waiting for a free slot on the local runner (2 of 2 busy)",
                      q["queuedReason"])
        self.assertEqual(s.post("/api/v1/sessions/%s/stop" % a1, headers=a).status, 202)
        # bravo (0 running) gets the slot before acme's older a3 (acme still runs a2)
        st = wait_status_h(s, b1, {"provisioning", "running", "completed"}, b)
        self.assertEqual(s.get("/api/v1/sessions/" + a3, headers=a).json()["status"], "queued",
                         st)
        self.assertEqual(s.post("/api/v1/sessions/%s/stop" % a2, headers=a).status, 202)
        wait_status_h(s, a3, "completed", a)


class Admission(ServerTest):
    """--max-sessions-per-tenant (D43 admission): a tenant at its limit waits, others run."""

    server_args = ("--max-concurrent-tasks", "3", "--max-sessions-per-tenant", "1")

    def test_tenant_limit(self):
        s = self.server
        a = {"X-Tenant-ID": "acme"}
        b = {"X-Tenant-ID": "bravo"}
        a1 = create(s, task([{"sleep": 60000}]), headers=a)["session_ids"][0]
        wait_status_h(s, a1, "running", a)
        a2 = create(s, task([{"thought": "a2"}]), headers=a)["session_ids"][0]
        b1 = create(s, task([{"thought": "b1"}]), headers=b)["session_ids"][0]
        wait_status_h(s, b1, "completed", b)  # bravo is not held back by acme's limit
        q = s.get("/api/v1/sessions/" + a2, headers=a).json()
        self.assertEqual(q["status"], "queued")
        self.assertIn("tenant acme already runs 1 sessions, its limit", q["queuedReason"])
        self.assertEqual(s.post("/api/v1/sessions/%s/stop" % a1, headers=a).status, 202)
        wait_status_h(s, a2, "completed", a)


def wait_status_h(server, sid, wanted, headers, timeout=60):
    wanted = {wanted} if isinstance(wanted, str) else set(wanted)
    deadline = time.monotonic() + timeout
    while True:
        st = server.get("/api/v1/sessions/" + sid, headers=headers).json()
        if st["status"] in wanted:
            return st
        assert time.monotonic() < deadline, st
        time.sleep(0.05)


if __name__ == "__main__":
    ahtest.main()
