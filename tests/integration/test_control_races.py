"""Control actions in the narrow windows of a session's life. A hold point (AH_TEST_HOLD_AT,
AH_TEST_HOLD_FILE) stops the server inside the window until the test has done its part, so each
race is played every run instead of once in a while.

- An agent that finishes its work right after a resume sent SIGCONT, before `running` was stored
  again, completed: it is not failed "the agent exited while resuming" (seen under load on
  PostgreSQL, where the store write is slowest).
- A pause that arrives between `running` and the recorder's hello (the agent's process group is
  not known yet) answers `pausing` and completes on the hello: the agent never runs a step."""

import os
import tempfile
import threading
import unittest

import ahtest
from ahtest import Server
from sessiontest import (agent_group, create, events, session, statuses, task, wait_for,
                         wait_status)

TERMINAL = {"completed", "failed", "stopped", "cancelled"}


class Held:
    """A server that stops at hold point `at` while the returned file exists."""

    def __init__(self, at):
        self.hold = os.path.join(tempfile.mkdtemp(prefix="ah-hold-"), "hold")
        self.at = at
        self.server = Server(env={"AH_TEST_HOOKS": "1", "AH_TEST_HOLD_AT": at,
                                  "AH_TEST_HOLD_FILE": self.hold})

    def arm(self):
        open(self.hold, "w").close()

    def wait_held(self):
        wait_for(lambda: "holding at " + self.at in self.server.stderr(), 60, "the hold")

    def release(self):
        if os.path.exists(self.hold):
            os.unlink(self.hold)

    def close(self):
        self.release()
        os.rmdir(os.path.dirname(self.hold))
        self.server.close()


class Races(unittest.TestCase):
    def test_pause_before_the_recorder_says_hello(self):
        h = Held("recorder-hello")
        s = h.server
        try:
            h.arm()
            sid = create(s, task([{"wait_prompt": True}, {"log": "woke"}]))["id"]
            h.wait_held()
            self.assertEqual(session(s, sid)["status"], "running")
            r = s.post("/api/v1/sessions/%s/pause" % sid)
            self.assertEqual((r.status, r.json()), (202, {"status": "pausing"}))
            h.release()
            # the pause completes on the hello: the agent's whole group is stopped
            wait_status(s, sid, "paused")
            wait_for(lambda: (lambda g: g and all(v[0] == "T" for v in g.values()))(
                agent_group(sid, started=False)), 20, "the agent's group stopped")
            r = s.post("/api/v1/sessions/%s/resume" % sid)
            self.assertEqual((r.status, r.json()), (202, {"status": "running"}))
            r = s.post("/api/v1/sessions/%s/prompt" % sid,
                       body={"prompt": [{"type": "text", "text": "go on"}]})
            self.assertEqual(r.status, 202, r)
            wait_status(s, sid, "completed")
            self.assertIn("woke", [e.get("message") for e in events(s, sid, type="log")])
            self.assertEqual(statuses(s, sid),
                             ["queued", "provisioning", "running", "pausing", "paused",
                              "resuming", "running", "completed"])
        finally:
            h.close()

    def test_agent_ending_during_resume_completes(self):
        h = Held("resume-continued")
        s = h.server
        try:
            sid = create(s, task([{"log": "started"}, {"sleep": 300}, {"log": "done"}]))["id"]
            wait_for(lambda: "started" in [e.get("message") for e in events(s, sid)], 60,
                     "the agent's first step")
            r = s.post("/api/v1/sessions/%s/pause" % sid)
            self.assertEqual(r.status, 202, r)
            wait_status(s, sid, "paused")
            h.arm()
            answer = {}
            t = threading.Thread(target=lambda: answer.update(
                r=s.post("/api/v1/sessions/%s/resume" % sid)))
            t.start()
            h.wait_held()
            # the agent runs on (SIGCONT was sent), sleeps out its step and ends meanwhile. Read
            # from the database, not over HTTP: the held request occupies one of the server's
            # worker threads, and a new connection may be given to that one
            wait_for(lambda: ahtest.db_row(s.db, "SELECT status FROM sessions WHERE id = '%s'"
                                           % sid)[0] in TERMINAL, 60, "the agent's end")
            h.release()
            t.join(60)
            self.assertEqual(answer["r"].status, 202, answer["r"])
            final = session(s, sid)
            self.assertEqual(final["status"], "completed", final)
            self.assertIsNone(final.get("error"))
            stored = events(s, sid)
            self.assertIn("done", [e.get("message") for e in stored])
            self.assertEqual([e["status"] for e in stored if e["type"] == "status"][-3:],
                             ["paused", "resuming", "completed"])
        finally:
            h.close()


if __name__ == "__main__":
    ahtest.main()
