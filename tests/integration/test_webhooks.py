"""Issue 15 item 8: a task's webhooks receive its sessions' events. A real HTTP receiver started
by the test: deliveries at-least-once with `seq` for de-duplication, HMAC-SHA256 signatures,
retries with backoff, the delivery state durable across a server restart and visible at
GET /sessions/{id}/webhooks, a slow receiver that delays nobody else, and the targets a webhook
may (not) name."""

import hashlib
import hmac
import http.server
import json
import threading
import time
import unittest

import ahtest
from ahtest import ServerTest
from sessiontest import create, events, task, wait_for, wait_status

SECRET = "s3cret-for-the-test"


class Receiver:
    """A local HTTP server recording every POST: /flaky fails its first `fail_first` requests
    with 500, /slow answers after `slow_s` seconds, anything else answers 200 at once."""

    def __init__(self, fail_first=3, slow_s=4.0):
        self.lock = threading.Lock()
        self.got = []  # (path, headers dict (lower-case), body bytes, status answered)
        self.fail_first = fail_first
        self.slow_s = slow_s
        self.flaky_seen = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = 200
                with outer.lock:
                    if self.path == "/flaky":
                        outer.flaky_seen += 1
                        if outer.flaky_seen <= outer.fail_first:
                            status = 500
                    outer.got.append((self.path, {k.lower(): v for k, v in self.headers.items()},
                                      body, status))
                if self.path == "/slow":
                    time.sleep(outer.slow_s)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up (its timeout)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def received(self, path, ok_only=True):
        with self.lock:
            return [(h, b) for p, h, b, st in self.got if p == path and (st == 200 or not ok_only)]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def hooks_state(server, sid):
    r = server.get("/api/v1/sessions/%s/webhooks" % sid)
    assert r.status == 200, r
    return r.json()


class Deliveries(ServerTest):
    server_args = ("--webhook-allow-loopback", "--webhook-retry-base-ms", "200",
                   "--webhook-timeout-ms", "1000")

    @classmethod
    def setUpClass(cls):
        cls.rx = Receiver()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.rx.close()

    def test_every_event_once_by_seq_signed_across_restart(self):
        rx = self.rx
        scenario = [{"say": "Hello."}, {"wait_prompt": True},
                    {"tool": "grep", "args": {"pattern": "x"}, "output": "none"},
                    {"say": "Bye."}]
        hooks = [{"events": ["session.*"], "url": rx.url("/flaky"), "secret": SECRET},
                 {"event": "session.completed", "url": rx.url("/done")},
                 {"events": ["session.running"], "url": rx.url("/slow")}]
        sid = create(self.server, task(scenario, webhooks=hooks))["id"]
        # the first three attempts fail, the retries (with backoff) get through
        wait_for(lambda: len(rx.received("/flaky")) >= 1, 60, "a first successful delivery")
        self.assertGreaterEqual(len(rx.received("/flaky", ok_only=False)), 4)
        # restart while the session waits for its prompt: nothing delivered is lost or skipped
        self.server.stop()
        self.server.start()
        r = self.server.post("/api/v1/sessions/%s/chat/messages" % sid, body={"content": "go"})
        self.assertEqual(r.status, 201, r)
        wait_status(self.server, sid, "completed", timeout=60)
        all_seqs = [e["seq"] for e in events(self.server, sid)]
        wait_for(lambda: hooks_state(self.server, sid)["webhooks"][0]["status"] == "done", 60,
                 "the all-events webhook to finish")

        by_seq = {}
        for h, body in rx.received("/flaky"):
            # a valid signature over the exact body, with the webhook's secret
            want = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            self.assertEqual(h["x-ah-signature"], "sha256=" + want)
            doc = json.loads(body)
            self.assertEqual(doc["sessionId"], sid)
            self.assertEqual(int(h["x-ah-seq"]), doc["seq"])
            self.assertEqual(doc["data"]["seq"], doc["seq"])
            self.assertEqual(h["x-ah-event"], doc["event"])
            if doc["seq"] in by_seq:  # at-least-once: a repeat carries the same body
                self.assertEqual(by_seq[doc["seq"]], body)
            by_seq[doc["seq"]] = body
        # every event exactly once by seq, in order
        self.assertEqual(sorted(by_seq), all_seqs)
        # the cursor outlived the restart: at most the one event in flight then came again
        self.assertLessEqual(len(rx.received("/flaky")), len(all_seqs) + 1)
        seqs_in_order = [json.loads(b)["seq"] for _, b in rx.received("/flaky")]
        self.assertEqual(seqs_in_order, sorted(seqs_in_order))
        names = [json.loads(by_seq[s])["event"] for s in all_seqs]
        self.assertEqual(names[-1], "session.completed")
        self.assertIn("session.chat_message", names)
        self.assertIn("session.tool_use", names)

        # the filtered webhook: the one event it asked for, unsigned (it has no secret)
        wait_for(lambda: len(rx.received("/done")) == 1, 60, "the session.completed delivery")
        h, body = rx.received("/done")[0]
        self.assertNotIn("x-ah-signature", h)
        doc = json.loads(body)
        self.assertEqual((doc["event"], doc["data"]["type"], doc["data"]["status"]),
                         ("session.completed", "status", "completed"))

        st = hooks_state(self.server, sid)
        self.assertEqual(st["total"], 3)
        a, b, c = st["webhooks"]
        self.assertEqual((a["url"], a["events"], a["signed"]),
                         (rx.url("/flaky"), ["session.*"], True))
        self.assertNotIn("secret", json.dumps(st))
        self.assertEqual(a["lastDeliveredSeq"], all_seqs[-1])
        self.assertEqual(a["failed"], 0)
        self.assertGreaterEqual(a["delivered"], len(all_seqs))
        self.assertEqual((a["lastStatusCode"], a["lastError"]), (200, None))
        self.assertEqual((b["status"], b["delivered"], b["events"], b["signed"]),
                         ("done", 1, ["session.completed"], False))
        # the slow receiver (it answers after the 1 s timeout) is retried, and never held up
        # the others: they finished while it still has not had one answer in time
        self.assertEqual(c["delivered"], 0)
        c = wait_for(lambda: [h for h in hooks_state(self.server, sid)["webhooks"]
                              if h["index"] == 2 and h["attempts"] >= 1], 60,
                     "a timed-out attempt of the slow webhook")[0]
        self.assertEqual(c["status"], "retrying")
        self.assertEqual(c["delivered"], 0)
        self.assertGreaterEqual(c["attempts"], 1)
        self.assertIn("imeout", c["lastError"])
        self.assertIsNotNone(c["nextAttemptAt"])

    def test_state_before_any_delivery_and_without_webhooks(self):
        sid = create(self.server, task([{"wait_prompt": True}]))["id"]
        self.assertEqual(hooks_state(self.server, sid), {"webhooks": [], "total": 0})
        r = self.server.get("/api/v1/sessions/01J0000000000000000000000Z/webhooks")
        self.assertProblem(r, 404)
        self.server.post("/api/v1/sessions/%s/stop" % sid)

    def test_targets_and_bad_definitions(self):
        def refused(hook, field):
            r = self.server.post("/api/v1/tasks", body=task([], webhooks=[hook]))
            body = self.assertProblem(r, 400)
            self.assertIn(field, body.get("errors", {}), body)

        u = self.rx.url("/x")
        refused({"event": "session.completed", "url": "http://example.com/x"},
                "webhooks[0].url")  # http only to loopback
        refused({"event": "session.completed", "url": "https://169.254.169.254/latest"},
                "webhooks[0].url")  # link-local (cloud metadata): never
        refused({"event": "session.completed", "url": "https://10.1.2.3/x"}, "webhooks[0].url")
        refused({"event": "session.completed", "url": "https://[fd00::1]/x"}, "webhooks[0].url")
        refused({"event": "session.completed", "url": "ftp://127.0.0.1/x"}, "webhooks[0].url")
        refused({"event": "session.completed", "events": ["session.*"], "url": u},
                "webhooks[0].event")
        refused({"events": [], "url": u}, "webhooks[0].events")
        refused({"events": ["completed"], "url": u}, "webhooks[0].events[0]")
        refused({"events": ["session.x"] * 33, "url": u}, "webhooks[0].events")
        refused({"event": "session.completed", "url": u, "secret": "x" * 257},
                "webhooks[0].secret")
        refused({"event": "session.completed", "url": u, "secret": 7}, "webhooks[0].secret")
        refused({"url": u}, "webhooks[0].event")


class NoLoopback(ServerTest):
    """Without webhook-allow-loopback (the default) a webhook may not name this machine."""

    def test_loopback_refused(self):
        for url in ("http://127.0.0.1:9/x", "https://127.0.0.1:9/x", "https://localhost/x",
                    "https://[::1]/x", "https://2130706433/x", "http://[::ffff:127.0.0.1]/"):
            r = self.server.post("/api/v1/tasks", body=task([], webhooks=[
                {"event": "session.completed", "url": url}]))
            body = self.assertProblem(r, 400)
            self.assertIn("webhooks[0].url", body["errors"], (url, body))
        r = self.server.post("/api/v1/tasks", body=task([], webhooks=[
            {"event": "session.completed", "url": "https://hooks.example.com/x"}]))
        self.assertEqual(r.status, 201, r)


if __name__ == "__main__":
    ahtest.main()
