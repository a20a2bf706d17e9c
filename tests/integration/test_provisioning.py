"""Provisioning that waits on the network, and stopping before the agent runs (issue 10 items 5
and 16, D13): the git remote here is a TCP server that accepts connections and never answers,
so a clone or ls-remote against it hangs until our timeouts cut it short.

- a stop of a queued or provisioning session ends it at once as `stopped` (provisioning
  abandoned, workspace removed, slot freed for the next queued session);
- a clone that times out fails its session with a clear error and frees its slot;
- GET /repositories/{id}/branches never holds an HTTP thread on the network: /healthz answers
  while the remote is being asked, and the branch answer is a 503 with Retry-After until the
  background ls-remote ends (here: with its timeout)."""

import os
import socket
import threading
import time
import unittest

import ahtest
from ahtest import Server
from sessiontest import create, session, statuses, task, wait_for, wait_status


class SilentRemote:
    """Accepts TCP connections on loopback and never sends a byte (holds them open)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.accepted += 1

    def url(self, name="x.git", userinfo=""):
        return "http://%s127.0.0.1:%d/%s" % (userinfo, self.port, name)

    def close(self):
        self.closed = True
        for c in self.conns:
            c.close()
        self.sock.close()


def git_task(url, scenario=None):
    return task(scenario or [{"log": "never runs"}], repo={"mode": "git", "url": url})


def healthz_answers(server):
    r = server.get("/api/v1/healthz", record_it=False, timeout=20)
    return r.status == 200


class StopBeforeRunning(ahtest.ServerTest):
    server_args = ("--max-concurrent-tasks", "1", "--clone-timeout-ms", "600000")

    def setUp(self):
        self.remote = SilentRemote()

    def tearDown(self):
        self.remote.close()

    def test_stop_queued_and_provisioning(self):
        s = self.server
        blocked = create(s, git_task(self.remote.url()))["id"]
        wait_status(s, blocked, "provisioning")
        wait_for(lambda: self.remote.accepted > 0, 20, "git to reach the remote")
        # the one slot is held by the hanging clone: these wait queued
        queued = create(s, task([{"log": "x"}]))["id"]
        after = create(s, task([{"log": "runs once the slot is free"}]))["id"]
        self.assertEqual(session(s, queued)["status"], "queued")

        r = s.post("/api/v1/sessions/%s/stop" % queued)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json(), {"status": "stopped"})
        self.assertEqual(session(s, queued)["status"], "stopped")
        self.assertEqual(statuses(s, queued), ["queued", "stopped"])

        r = s.post("/api/v1/sessions/%s/stop" % blocked)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json(), {"status": "stopped"})
        self.assertEqual(statuses(s, blocked), ["queued", "provisioning", "stopped"])
        # the slot is free at once: the next queued session runs to its end
        wait_status(s, after, "completed", timeout=30)
        ws = os.path.join(s.tmp, "workspaces", blocked)
        wait_for(lambda: not os.path.exists(ws), 10, "the abandoned workspace removed")
        # a stopped session stays stopped
        self.assertProblem(s.post("/api/v1/sessions/%s/stop" % blocked), 409)
        self.assertEqual(session(s, blocked)["status"], "stopped")


class StopWhileWaitingForAWorker(ahtest.ServerTest):
    """Both provisioning workers hang on clones; a third session is provisioning with its job
    still waiting for a worker. Stopping it frees its slot at once, not when a worker is free."""
    server_args = ("--max-concurrent-tasks", "3", "--clone-timeout-ms", "600000")

    def test_slot_freed_without_waiting_for_a_worker(self):
        s = self.server
        remote = SilentRemote()
        try:
            hung = [create(s, git_task(remote.url("h%d.git" % i)))["id"] for i in range(2)]
            wait_for(lambda: remote.accepted >= 2, 20, "both workers to reach the remote")
            waiting = create(s, git_task(remote.url("w.git")))["id"]
            wait_status(s, waiting, "provisioning")
            nxt = create(s, task([{"log": "after"}]))["id"]
            self.assertEqual(session(s, nxt)["status"], "queued")
            r = s.post("/api/v1/sessions/%s/stop" % waiting)
            self.assertEqual(r.json(), {"status": "stopped"})
            wait_status(s, nxt, "provisioning", timeout=20)  # the freed slot, at once
            for sid in hung:  # their clones are abandoned: the workers are free again
                self.assertEqual(s.post("/api/v1/sessions/%s/stop" % sid).json(),
                                 {"status": "stopped"})
            wait_status(s, nxt, "completed", timeout=30)
            self.assertEqual(statuses(s, waiting), ["queued", "provisioning", "stopped"])
        finally:
            remote.close()


class NetworkTimeouts(ahtest.ServerTest):
    # the refs timeout leaves the burst of branch requests below ample time on a busy machine
    server_args = ("--max-concurrent-tasks", "1", "--clone-timeout-ms", "1500",
                   "--refs-timeout-ms", "8000")

    def setUp(self):
        self.remote = SilentRemote()

    def tearDown(self):
        self.remote.close()

    def test_clone_timeout_fails_the_session_and_frees_its_slot(self):
        s = self.server
        sid = create(s, git_task(self.remote.url("clone.git")))["id"]
        queued = create(s, task([{"log": "next"}]))["id"]
        st = wait_status(s, sid, "failed", timeout=60)
        self.assertIn("timed out", st["error"])
        self.assertIn("clone", st["error"])
        self.assertEqual(statuses(s, sid), ["queued", "provisioning", "failed"])
        wait_status(s, queued, "completed", timeout=30)

    def test_branches_never_block_an_http_thread(self):
        s = self.server
        url = self.remote.url("refs.git")
        sid = create(s, git_task(url))["id"]
        wait_status(s, sid, "failed", timeout=60)  # the clone timed out: no mirror of it
        rid = [r["id"] for r in s.get("/api/v1/repos").json()["items"]
               if r["remoteUrl"] == url]
        self.assertEqual(len(rid), 1)
        path = "/api/v1/repositories/%s/branches" % rid[0]
        before = self.remote.accepted
        # many at once, more than the HTTP threads: each answers at once, none waits on git
        answers = []

        def ask():
            answers.append(s.get(path, timeout=20))
        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in answers:
            body = self.assertProblem(r, 503)
            self.assertIn("being fetched", body["detail"])
            self.assertEqual(r.header("retry-after"), "1")
        # the background ls-remote is stuck on the remote now, and the server still answers
        wait_for(lambda: self.remote.accepted > before, 20, "ls-remote to reach the remote")
        self.assertTrue(healthz_answers(s))
        self.assertEqual(s.get("/api/v1/sessions/" + sid).status, 200)
        # once the refs timeout cut it short, the answer says the remote did not answer
        def settled():
            r = s.get(path)
            return r if "being fetched" not in r.json()["detail"] else None
        r = wait_for(settled, 60, "the ls-remote to time out")
        body = self.assertProblem(r, 503)
        self.assertIn("did not answer in time", body["detail"])


class StopServerDuringClone(unittest.TestCase):
    def test_sigterm_does_not_wait_for_a_hanging_clone(self):
        remote = SilentRemote()
        s = Server(args=("--clone-timeout-ms", "600000"))
        try:
            sid = create(s, git_task(remote.url()))["id"]
            wait_status(s, sid, "provisioning")
            wait_for(lambda: remote.accepted > 0, 20, "git to reach the remote")
            started = time.monotonic()
            self.assertEqual(s.stop(timeout=60), 0)
            self.assertLess(time.monotonic() - started, 30)  # not the 600 s clone timeout
            s.start()  # D15: a provisioning left behind fails as "server restarted"
            st = wait_status(s, sid, "failed")
            self.assertEqual(st["error"], "server restarted")
        finally:
            s.close()
            remote.close()


if __name__ == "__main__":
    ahtest.main()
