"""Control actions racing the agent's own end. An agent that finishes its work right after a
resume sent SIGCONT, before `running` was stored again, completed: it must not be failed with
"the agent exited while resuming" (seen under load on PostgreSQL, where the store write is
slowest). A hold point (AH_TEST_HOLD_AT) keeps the resume inside that window while the agent
ends, so the race is played every run instead of once in a while."""

import os
import tempfile
import threading
import unittest

import ahtest
from ahtest import Server
from sessiontest import create, events, session, task, wait_for, wait_status

TERMINAL = {"completed", "failed", "stopped", "cancelled"}


class ResumeRace(unittest.TestCase):
    def test_agent_ending_during_resume_completes(self):
        hold = os.path.join(tempfile.mkdtemp(prefix="ah-hold-"), "hold")
        s = Server(env={"AH_TEST_HOOKS": "1", "AH_TEST_HOLD_AT": "resume-continued",
                        "AH_TEST_HOLD_FILE": hold})
        try:
            sid = create(s, task([{"log": "started"}, {"sleep": 300}, {"log": "done"}]))["id"]
            wait_for(lambda: "started" in [e.get("message") for e in events(s, sid)], 60,
                     "the agent's first step")
            r = s.post("/api/v1/sessions/%s/pause" % sid)
            self.assertEqual(r.status, 202, r)
            wait_status(s, sid, "paused")
            open(hold, "w").close()
            answer = {}
            t = threading.Thread(target=lambda: answer.update(
                r=s.post("/api/v1/sessions/%s/resume" % sid)))
            t.start()
            wait_for(lambda: "holding at resume-continued" in s.stderr(), 30, "the hold")
            # the agent runs on (SIGCONT was sent), sleeps out its step and ends meanwhile
            wait_for(lambda: session(s, sid)["status"] in TERMINAL, 60, "the agent's end")
            os.unlink(hold)
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
            if os.path.exists(hold):
                os.unlink(hold)
            os.rmdir(os.path.dirname(hold))
            s.close()


if __name__ == "__main__":
    ahtest.main()
