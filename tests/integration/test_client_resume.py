"""libah-client's event stream across a real server crash: `ah session events --follow --json`
(ah_client_stream_events) follows a session, the server is killed with SIGKILL mid-stream and
started again on the same port; the client reconnects with Last-Event-ID and prints every event
exactly once, in order, until the session's end."""

import json
import os
import signal
import subprocess
import time
import unittest

import ahtest
from ahtest import AH_BIN, Server, free_port
from sessiontest import create, events, task


class ClientResume(unittest.TestCase):
    def test_follow_survives_a_server_kill_and_restart(self):
        port = free_port()
        s = Server(args=())
        s.stop()
        s.start(port=port)
        follower = None
        try:
            scenario = ([{"log": "before %d" % i} for i in range(10)] + [{"sleep": 3000}] +
                        [{"log": "after %d" % i} for i in range(10)])
            sid = create(s, task(scenario))["id"]
            follower = subprocess.Popen(
                [AH_BIN, "session", "events", sid, "--follow", "--json", "--remote-server",
                 "http://127.0.0.1:%d" % port], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=dict(os.environ, NO_COLOR="1"))
            lines = []
            while True:  # read until the stream is in the sleep
                line = follower.stdout.readline()
                if not line:
                    self.fail("the follower ended early: %r" % follower.stderr.read())
                lines.append(json.loads(line))
                if lines[-1].get("message") == "before 9":
                    break
            s.proc.send_signal(signal.SIGKILL)
            s.proc.wait(10)
            time.sleep(1.0)  # the client backs off and retries against a closed port
            s.start(port=port)
            # the rest, through the same buffered reader (communicate() would bypass its buffer)
            out = follower.stdout.read()
            err = follower.stderr.read()
            follower.wait(60)
            lines += [json.loads(l) for l in out.decode().splitlines() if l.strip()]
            self.assertEqual(follower.returncode, 0, err)
            seqs = [e["seq"] for e in lines]
            self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "lost or repeated events")
            self.assertEqual(lines[-1]["type"], "status")
            self.assertEqual(lines[-1]["status"], "completed")
            self.assertEqual([e["seq"] for e in events(s, sid)], seqs)
            logs = [e["message"] for e in lines if e["type"] == "log"]
            self.assertEqual(logs, ["before %d" % i for i in range(10)] +
                             ["after %d" % i for i in range(10)])
        finally:
            if follower and follower.poll() is None:
                follower.kill()
            s.close()


if __name__ == "__main__":
    ahtest.main()
