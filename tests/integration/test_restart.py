"""D15: sessions survive the server. kill -9 the server while sessions run; the restarted server
re-attaches to their recorders, and every session finishes with gapless seq 1..N and its file
edits. Sessions whose recorder is gone fail with "server restarted"; queued ones stay queued."""

import http.client
import os
import signal
import time
import unittest

import ahtest
from ahtest import Server
from sessiontest import create, events, processes, session, statuses, task, wait_for, wait_status

# The agent waits for a prompt after its first edit: the server is killed while every session is
# surely still running (a sleep there would race a loaded machine), and the prompt sent after the
# restart reaches a re-attached session.
SCENARIO = [{"edit": "a.txt", "content": "one\n"}, {"log": "first edit done"},
            {"wait_prompt": True},
            {"append": "a.txt", "content": "two\nthree\n"}, {"log": "second edit done"},
            {"sleep": 1000},
            {"edit": "dir/b.txt", "content": "b\n"}, {"tool": "test", "output": "ok", "ms": 10},
            {"log": "finished"}]


def gone(pid):
    """Dead: no /proc entry, or a zombie nobody reaps (PID 1 in a container may not)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


class Restart(unittest.TestCase):
    def test_kill_9_and_restart_with_five_running_sessions(self):
        s = Server(args=("--max-concurrent-tasks", "8"))
        try:
            ids = create(s, task(SCENARIO, count=5))["session_ids"]
            for sid in ids:
                wait_status(s, sid, "running")
            wait_for(lambda: all(any(e.get("message") == "first edit done"
                                     for e in events(s, sid)) for sid in ids), 60,
                     "every session's first events")
            before = {sid: events(s, sid)[-1]["seq"] for sid in ids}
            s.proc.send_signal(signal.SIGKILL)
            s.proc.wait(10)
            time.sleep(0.5)  # the sessions go on without a server
            for sid in ids:
                self.assertTrue(processes(sid), "the agents died with the server")
            s.start()
            for sid in ids:
                r = s.post("/api/v1/sessions/%s/prompt" % sid, body={"prompt": "go on"})
                self.assertEqual(r.status, 202, r)
            for sid in ids:
                st = wait_status(s, sid, ("completed", "failed"), timeout=60)
                self.assertEqual(st["status"], "completed", st)
                evs = events(s, sid)
                seqs = [e["seq"] for e in evs]
                self.assertEqual(seqs, list(range(1, len(evs) + 1)), "gap or repeat in " + sid)
                self.assertGreater(len(evs), before[sid])
                self.assertEqual([e["message"] for e in evs if e["type"] == "log"],
                                 ["first edit done", "user: go on", "received prompt: go on",
                                  "second edit done", "finished"])
                paths = {e["file_path"] for e in evs if e["type"] == "file_edit"}
                self.assertEqual(paths, {"a.txt", "dir/b.txt"})
                self.assertEqual(statuses(s, sid), ["queued", "provisioning", "running",
                                                    "completed"])
                self.assertEqual(st["changes"], {"files_changed": 2, "lines_added": 4,
                                                 "lines_removed": 0})
            log = [l for l in s.log_lines() if "re-attached" in l.get("msg", "")]
            self.assertTrue(log and "5 re-attached" in log[-1]["msg"], log)
        finally:
            s.close()

    def test_dead_recorder_fails_and_queued_stays_queued(self):
        s = Server(args=("--max-concurrent-tasks", "1"))
        try:
            running = create(s, task([{"sleep": 30000}]))["id"]
            queued = create(s, task([{"log": "later"}]))["id"]
            wait_status(s, running, "running")
            wait_for(lambda: len(processes(running)) >= 2, 20, "the session's processes")
            self.assertEqual(session(s, queued)["status"], "queued")
            s.proc.send_signal(signal.SIGKILL)
            s.proc.wait(10)
            pids = list(processes(running))
            for pid in pids:  # the recorder and the agent die while we are away
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            wait_for(lambda: all(gone(pid) for pid in pids), 20, "the processes gone")
            s.start()
            st = wait_status(s, running, "failed")
            self.assertEqual(st["error"], "server restarted")
            # the freed slot goes to the queued session, which then runs normally
            wait_status(s, queued, "completed")
            self.assertEqual(statuses(s, queued), ["queued", "provisioning", "running",
                                                   "completed"])
        finally:
            s.close()


def crash_env(point):
    """The test-only crash point (src/core/testhook.c): the server SIGKILLs itself there."""
    return {"AH_TEST_HOOKS": "1", "AH_TEST_CRASH_AT": point}


def wait_dead(server, what):
    wait_for(lambda: server.proc.poll() is not None, 30, what)
    assert server.proc.returncode == -signal.SIGKILL, server.stderr()[-2000:]


class CrashWindows(unittest.TestCase):
    """kill -9 at the moments a crash used to lose work (issue 10 items 22 and 23), made
    deterministic by the crash points; the restarted server runs without them."""

    STEPS = [{"edit": "a.txt", "content": "one\n"}, {"log": "step one"}, {"sleep": 1500},
             {"log": "step two"}]

    def crash_while_provisioning(self, point):
        s = Server(env=crash_env(point))
        try:
            sid = create(s, task(self.STEPS))["id"]
            wait_dead(s, "the server's crash at " + point)
            # the recorder was spawned just before the crash: its agent goes on without us
            wait_for(lambda: os.path.exists(os.path.join(s.tmp, "workspaces", sid, "a.txt")),
                     20, "the agent's first edit")
            s.extra_env = {}
            s.start()
            st = wait_status(s, sid, ("completed", "failed"), timeout=60)
            self.assertEqual(st["status"], "completed", st)
            evs = events(s, sid)
            self.assertEqual([e["message"] for e in evs if e["type"] == "log"],
                             ["step one", "step two"])
            self.assertEqual({e["file_path"] for e in evs if e["type"] == "file_edit"},
                             {"a.txt"})
            self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)))
            self.assertEqual(statuses(s, sid), ["queued", "provisioning", "running",
                                                "completed"])
            self.assertNotIn("recorder hello refused", s.stderr())
        finally:
            s.close()

    def test_adopts_a_recorder_spawned_before_its_pid_was_stored(self):
        self.crash_while_provisioning("recorder-spawned")

    def test_adopts_a_recorder_of_a_provisioning_session(self):
        self.crash_while_provisioning("recorder-recorded")

    def test_pending_idempotency_key_does_not_outlive_its_server(self):
        s = Server(env=crash_env("idempotency-claimed"))
        try:
            key = "01J9Q0Z4YB6N8W2F3K5M7P9R1T"
            body = task([{"log": "exactly once"}])
            with self.assertRaises((OSError, http.client.HTTPException)):
                s.post("/api/v1/tasks", body=body, headers={"Idempotency-Key": key})
            wait_dead(s, "the crash with the key claimed")
            s.extra_env = {}
            s.start()
            r1 = s.post("/api/v1/tasks", body=body, headers={"Idempotency-Key": key})
            self.assertEqual(r1.status, 201, r1)
            self.assertIsNone(r1.header("idempotent-replayed"))
            r2 = s.post("/api/v1/tasks", body=body, headers={"Idempotency-Key": key})
            self.assertEqual(r2.status, 201, r2)
            self.assertEqual(r2.header("idempotent-replayed"), "true")
            self.assertEqual(r2.body, r1.body)
            self.assertEqual(s.get("/api/v1/sessions").json()["total"], 1)
            wait_status(s, r1.json()["id"], "completed")
        finally:
            s.close()


if __name__ == "__main__":
    ahtest.main()
