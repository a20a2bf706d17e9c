"""Several access points on one PostgreSQL database (D46), end to end (run under
tests/pg/pgserver.py --env AH_TEST_DB_URL): control and prompts sent to a replica that does not
run the session reach the one that does; a replica killed mid-stream loses its sessions to
another within the lease (a running one is failed "access point lost", a queued one runs there,
once), while an SSE client of the survivor reads every event exactly once; a session running on
an executor is adopted instead, when the executor reconnects to the survivor."""

import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

import ahtest
from ahtest import Server
from sessiontest import create, events, session, task, wait_for, wait_status
from ssetest import SSE
from test_remote_sessions import MKCERTS, SERVE_ID, Executor, wait_for as wait_until

LEASE_MS = 1500


def replica_id(server):
    with open(server.tmp + "/data/agent-harbor/replica-id") as f:
        return f.read().strip()


def owner(db, sid):
    return ahtest.db_row(db, "SELECT owner FROM sessions WHERE id = '%s'" % sid)[0]


def session_gets(server):
    """How many times the server read a session from the database (its store metrics)."""
    for line in server.get("/metrics").body.decode().splitlines():
        if line.startswith('ah_store_operation_seconds_count{op="session_get"}'):
            return int(float(line.split()[-1]))
    raise AssertionError("no session_get count in /metrics")


def recording(server, sid):
    r = server.get("/api/v1/sessions/%s/recording" % sid)
    return r.body if r.status == 200 else b""


class Replicas(unittest.TestCase):
    def setUp(self):
        self.db = ahtest.new_test_db()
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.close()

    def server(self, *args, lease_ms=LEASE_MS):
        s = Server(db=self.db, args=("--replica-lease-ms", str(lease_ms)) + args)
        self.servers.append(s)
        return s

    def test_control_from_either_replica_reaches_the_owner(self):
        a, b = self.server(), self.server()
        self.assertNotEqual(replica_id(a), replica_id(b))
        sid = create(a, task([{"log": "one"}, {"wait_prompt": True}, {"log": "two"}]))["id"]
        stream = SSE(b, "/api/v1/sessions/%s/events" % sid)
        self.assertEqual(stream.status, 200)
        wait_status(b, sid, "running")
        self.assertEqual(owner(self.db, sid), replica_id(a))
        wait_for(lambda: b"waiting for a prompt" in recording(a, sid), 30, "the agent's wait")

        # pause on B: B answers with the state the owner moves it to first, A signals the agent
        r = b.post("/api/v1/sessions/%s/pause" % sid, body={"reason": "from b"})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["status"], "pausing")
        wait_status(b, sid, "paused")
        # an illegal transition is refused by B itself, from the stored state
        r = b.post("/api/v1/sessions/%s/pause" % sid)
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json()["currentStatus"], "paused")
        # resume on A (the owner: done at once), prompt on B (forwarded, delivered by A)
        r = a.post("/api/v1/sessions/%s/resume" % sid)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["status"], "running")
        r = b.post("/api/v1/sessions/%s/prompt" % sid,
                   body={"prompt": [{"type": "text", "text": "go on from b"}]})
        self.assertEqual(r.status, 202, r)
        wait_status(a, sid, "completed")
        # a chat message answers with the seq its owner stores it under: only the owner can
        # (D45), so another replica says where to send it instead of guessing
        sid2 = create(a, task([{"wait_prompt": True}]))["id"]
        wait_status(b, sid2, "running")
        r = b.post("/api/v1/sessions/%s/chat/messages" % sid2, body={"content": "hi"})
        self.assertEqual(r.status, 503, r)
        self.assertIn("runs on another access point (%s)" % replica_id(a), r.json()["detail"])
        r = a.post("/api/v1/sessions/%s/chat/messages" % sid2, body={"content": "hi"})
        self.assertEqual(r.status, 201, r)

        seen = [f for f in stream.events(timeout=60)]
        ids = [int(f["id"]) for f in seen]
        self.assertEqual(ids, list(range(1, len(ids) + 1)))
        stored = events(a, sid)
        self.assertEqual([f["json"] for f in seen], stored)
        statuses = [e["status"] for e in stored if e["type"] == "status"]
        self.assertEqual(statuses, ["queued", "provisioning", "running", "pausing", "paused",
                                    "resuming", "running", "completed"])
        messages = [e.get("message") for e in stored]
        self.assertIn("user: go on from b", messages)
        self.assertIn("two", messages)
        # the commands were taken: nothing waits in the table
        self.assertEqual(ahtest.db_row(self.db, "SELECT count(*) FROM commands")[0], "0")

    def test_a_killed_replica_loses_its_sessions_to_another(self):
        a = self.server("--max-concurrent-tasks", "1")
        b = self.server("--max-concurrent-tasks", "4")
        running = create(a, task([{"log": "started"}, {"wait_prompt": True}]))["id"]
        wait_status(a, running, "running")
        # A runs one at a time: this one waits in A's queue, owned by A
        queued = create(a, task([{"log": "ran"}]))["id"]
        self.assertEqual(session(b, queued)["status"], "queued")
        self.assertEqual(owner(self.db, queued), replica_id(a))
        stream = SSE(b, "/api/v1/sessions/%s/events" % running)
        frames = stream.frames(timeout=60)
        seen = []
        for kind, f in frames:
            if kind == "event" and "json" in f:
                seen.append(f)
                if f["json"].get("message") == "started":
                    break

        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        # B's client keeps reading: the session ends as lost, every event once, in order
        for kind, f in frames:
            if kind == "event" and "json" in f:
                seen.append(f)
        stream.finish()
        ids = [int(f["id"]) for f in seen]
        self.assertEqual(ids, list(range(1, len(ids) + 1)))
        self.assertEqual([f["json"] for f in seen], events(b, running))
        final = seen[-1]["json"]
        self.assertEqual((final["type"], final["status"]), ("status", "failed"))
        self.assertEqual(session(b, running)["error"], "access point lost")
        self.assertEqual(owner(self.db, running), replica_id(b))
        # the queued one runs on B, once
        wait_status(b, queued, "completed", timeout=60)
        self.assertEqual(owner(self.db, queued), replica_id(b))
        statuses = [e["status"] for e in events(b, queued) if e["type"] == "status"]
        self.assertEqual(statuses, ["queued", "provisioning", "running", "completed"])
        # control on a lost replica's session waits for the takeover instead of vanishing
        self.assertEqual(b.post("/api/v1/sessions/%s/stop" % running).status, 409)
        # A's agent outlived A (by design, to be re-attached within the lease); when A comes back
        # too late, its recorder reconnects, is refused (the session is B's and failed) and kills
        # the agent: no orphan keeps working on a session nobody owns
        pid = int(ahtest.db_row(self.db, "SELECT recorder_pid FROM sessions WHERE id = '%s'"
                                % running)[0])
        self.assertTrue(os.path.exists("/proc/%d" % pid), "the agent outlived its replica")
        a.start()
        wait_for(lambda: not os.path.exists("/proc/%d" % pid), 60, "the orphan's end")
        self.assertEqual(session(a, running)["status"], "failed")
        self.assertEqual(owner(self.db, running), replica_id(b))

    def test_the_read_cache_of_one_replica_drops_what_another_changed(self):
        """GET /sessions/{id} and /sessions are kept rendered on PostgreSQL too (issue 17, 18
        item 3): each replica hears every change of a session row (a trigger's notice), so B's
        kept answers never outlive a change made through A."""
        a, b = self.server(), self.server()
        sid = create(a, task([{"log": "x"}]))["id"]
        wait_status(a, sid, "completed")
        path = "/api/v1/sessions/" + sid
        first = b.get(path)
        self.assertEqual(first.status, 200)
        etag = first.header("etag")
        # the owner may still touch the row after the end (its recorder reaped): each touch
        # rightly drops B's copy, so look for a quiet spell of reads answered from memory
        def kept():
            gets = session_gets(b)
            for _ in range(5):
                r = b.get(path)
                self.assertEqual(r.status, 200)
            return session_gets(b) == gets
        wait_for(kept, 60, "five reads on B answered from its kept representation")
        first = b.get(path)
        etag = first.header("etag")
        self.assertEqual(b.get(path, headers={"If-None-Match": etag}).status, 304)
        listed = [s["id"] for s in b.get("/api/v1/sessions").json()["items"]]
        self.assertIn(sid, listed)
        # a new task through A shows in B's list; a purge through A is gone from B at once after
        other = create(a, task([{"log": "y"}]))["id"]
        wait_for(lambda: other in [s["id"] for s in b.get("/api/v1/sessions").json()["items"]],
                 30, "A's new task in B's list")
        wait_status(a, other, "completed")
        self.assertEqual(a.request("DELETE", path + "?purge=true").status, 204)
        wait_for(lambda: b.get(path).status == 404, 30, "the purge seen by B")
        self.assertEqual(b.get(path, headers={"If-None-Match": etag}).status, 404)

    def test_a_restart_within_the_lease_keeps_the_sessions(self):
        # a lease far longer than a restart takes on a busy machine: "within the lease" must hold
        a, b = self.server(lease_ms=60000), self.server(lease_ms=60000)
        sid = create(a, task([{"log": "one"}, {"wait_prompt": True}, {"log": "two"}]))["id"]
        wait_status(a, sid, "running")
        wait_for(lambda: b"waiting for a prompt" in recording(a, sid), 30, "the agent's wait")
        me = replica_id(a)
        a.stop()
        a.start()  # same data directory, same replica: it re-attaches the recorder (D15)
        self.assertEqual(replica_id(a), me)
        r = b.post("/api/v1/sessions/%s/prompt" % sid,
                   body={"prompt": [{"type": "text", "text": "after the restart"}]})
        self.assertEqual(r.status, 202, r)
        wait_status(b, sid, "completed")
        self.assertIn("two", [e.get("message") for e in events(b, sid)])
        self.assertEqual(owner(self.db, sid), me)

    def test_a_killed_replica_s_remote_session_is_adopted(self):
        """Issue 17 item 4: a session running on an executor, owned by A; A is killed (SIGKILL)
        mid-session; the executor (given both replicas' addresses) reconnects to B, which takes
        the session over once A's lease ran out and re-attaches its event flow: a client
        following B's stream reads every event exactly once, in order, to the session's end,
        and pause/resume through B reach the agent. A restarted A does not take it back."""
        tmp = tempfile.mkdtemp(prefix="ah-adopt-")
        certs = os.path.join(tmp, "certs")
        subprocess.run(["sh", MKCERTS, certs], check=True, stdout=subprocess.DEVNULL)
        c = lambda n: os.path.join(certs, n)
        quic = ["--max-concurrent-tasks", "0", "--quic-cert", c("serve.pem"), "--quic-key",
                c("serve.key"), "--quic-ca", c("ca.pem"), "--executor-trust-domain",
                "example.org", "--quic-idle-timeout-ms", "3000"]
        # a lease that outlasts the executor's move to B (at once: A's port answers that nothing
        # listens), so its recorder reaches B before B may take the session over, and must be
        # turned away without giving up (it ended its agent, failing the session, when told
        # "error")
        a = self.server(*(["--quic-port", "0"] + quic), lease_ms=6000)
        b = self.server(*(["--quic-port", "0"] + quic), lease_ms=6000)
        for s in (a, b):
            s.quic_port = int(wait_until("the QUIC listener", lambda: re.search(
                r"QUIC listening on 127\.0\.0\.1:(\d+)", s.stderr())).group(1))
        ex = Executor(tmp, "a", ["--remote-server", "quic://127.0.0.1:%d" % a.quic_port,
                                 "--remote-server", "quic://127.0.0.1:%d" % b.quic_port,
                                 "--identity", "files", "--cert-file", c("a.pem"),
                                 "--key-file", c("a.key"), "--ca-file", c("ca.pem"),
                                 "--expected-server-id", SERVE_ID, "--heartbeat-interval",
                                 "0.2", "--max-concurrent-tasks", "2"])
        self.addCleanup(ex.stop)
        wait_until("executor online at A", lambda: (lambda r: r.status == 200 and r.json()[
            "health"] == "online")(a.get("/api/v1/executors/a")))
        steps = []
        for i in range(40):
            steps += [{"log": "step %d" % i}, {"sleep": 150}]
        steps += [{"wait_prompt": True}, {"log": "the end"}]
        sid = create(a, task(steps))["id"]
        wait_status(a, sid, "running", timeout=60)
        self.assertEqual(owner(self.db, sid), replica_id(a))
        stream = SSE(b, "/api/v1/sessions/%s/events" % sid)
        self.assertEqual(stream.status, 200)
        frames = stream.frames(timeout=120)
        seen = []
        for kind, f in frames:
            if kind == "event" and "json" in f:
                seen.append(f)
                if f["json"].get("message") == "step 3":
                    break
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        wait_until("B owns the session", lambda: owner(self.db, sid) == replica_id(b), 60)
        wait_until("executor online at B", lambda: (lambda r: r.status == 200 and r.json()[
            "health"] == "online")(b.get("/api/v1/executors/a")), 60)
        wait_until("the executor re-attached at B", lambda: session(b, sid).get(
            "executorStatus") == "connected", 60)
        r = b.post("/api/v1/sessions/%s/pause" % sid)
        self.assertIn(r.status, (200, 202), r)
        wait_status(b, sid, "paused", timeout=30)
        self.assertIn(b.post("/api/v1/sessions/%s/resume" % sid).status, (200, 202))
        wait_status(b, sid, "running", timeout=30)
        wait_until("the agent's wait", lambda: any(
            e.get("message") == "step 39" for e in events(b, sid)), 120)
        a.start()  # back, with its old id: it must not take the session back
        r = a.post("/api/v1/sessions/%s/prompt" % sid,
                   body={"prompt": [{"type": "text", "text": "finish"}]})
        self.assertEqual(r.status, 202, r)
        for kind, f in frames:
            if kind == "event" and "json" in f:
                seen.append(f)
        stream.finish()
        ids = [int(f["id"]) for f in seen]
        self.assertEqual(ids, list(range(1, len(ids) + 1)))
        stored = events(b, sid)
        self.assertEqual([f["json"] for f in seen], stored)
        logs = [e.get("message") for e in stored if e["type"] == "log"]
        wanted = ["step %d" % i for i in range(40)] + ["the end"]
        self.assertEqual([m for m in logs if m in wanted], wanted)
        statuses = [e["status"] for e in stored if e["type"] == "status"]
        self.assertEqual(statuses, ["queued", "provisioning", "running", "pausing", "paused",
                                    "resuming", "running", "completed"])
        self.assertEqual(owner(self.db, sid), replica_id(b))
        self.assertIn("session %s: taken over from a lost access point; waiting for executor "
                      "spiffe://example.org/ah/agent/a" % sid, b.stderr())


if __name__ == "__main__":
    if not ahtest.TEST_DB_URL:
        raise SystemExit("test_replicas.py: run it under tests/pg/pgserver.py --env AH_TEST_DB_URL")
    ahtest.main()
