"""The server starts, and terminal streams stay live, without an inotify instance. The per-user
fs.inotify.max_user_instances (128 by default) is easily reached on a host running many agents,
each recorder watching its workspace: a server starting then failed with "out of memory". Now
it logs why and goes on: its terminal streams are woken by the session's events and, for output
no event announces, by every tick of the streams thread. The fail point AH_TEST_FAIL_AT=inotify
makes the instance unavailable."""

import base64
import unittest

import ahtest
from ahtest import Server
from sessiontest import create, task, wait_status
from ssetest import SSE


class WithoutInotify(unittest.TestCase):
    def test_starts_and_streams_the_terminal_live(self):
        s = Server(env={"AH_TEST_HOOKS": "1", "AH_TEST_FAIL_AT": "inotify"})
        try:
            self.assertTrue(any("no inotify instance" in l.get("msg", "")
                                and "max_user_instances" in l.get("msg", "")
                                for l in s.log_lines()), s.stderr())
            sid = create(s, task([{"log": "hello terminal"}, {"sleep": 600000}]))["id"]
            wait_status(s, sid, "running")
            stream = SSE(s, "/api/v1/sessions/%s/pty" % sid)
            self.assertEqual(stream.status, 200)
            text = b""
            for kind, f in stream.frames(timeout=60):
                if kind == "event" and f.get("json", {}).get("type") == "terminal":
                    text += base64.b64decode(f["json"]["data"])
                    if b"hello terminal" in text:
                        break
            self.assertIn(b"hello terminal", text)
            self.assertFalse(stream.closed)  # live, not the replay of an ended session
            self.assertEqual(s.get("/api/v1/sessions/" + sid).json()["status"], "running")
            stream.close()
        finally:
            s.kill_sessions()
            s.close()


if __name__ == "__main__":
    ahtest.main()
