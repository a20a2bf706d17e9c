"""Issue 18 item 2 (D48), the part that is built: W3C trace context on every request. A
traceparent is continued (same trace, our own span, the caller's flags), a missing or invalid one
starts a new trace; the answer carries our traceparent (and the caller's tracestate); the
request's log line names trace_id and span_id; and the agent of a session created by a traced
request runs with TRACEPARENT in that trace, its parent being the request's span."""

import re

import ahtest
from ahtest import ServerTest
from sessiontest import create, processes, task, wait_for, wait_status

TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Trace(ServerTest):
    def test_continued_trace(self):
        r = self.server.get("/api/v1/healthz", headers={"traceparent": CALLER,
                                                        "tracestate": "vendor=abc,other=1"})
        m = TP.match(r.header("traceparent"))
        self.assertTrue(m, r.header("traceparent"))
        self.assertEqual(m.group(1), "4bf92f3577b34da6a3ce929d0e0e4736")
        self.assertNotEqual(m.group(2), "00f067aa0ba902b7", "our own span, not the caller's")
        self.assertEqual(m.group(3), "01")
        self.assertEqual(r.header("tracestate"), "vendor=abc,other=1")
        rid = r.header("x-request-id")

        def line():
            return [l for l in self.server.log_lines() if l.get("id") == rid]
        entry = wait_for(line, what="the request's log line")[0]
        self.assertEqual(entry["trace_id"], m.group(1))
        self.assertEqual(entry["span_id"], m.group(2))

    def test_new_trace_when_absent_or_invalid(self):
        seen = set()
        for tp in (None, "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                   "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                   "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                   "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "garbage"):
            r = self.server.get("/api/v1/healthz",
                                headers={"traceparent": tp} if tp else {})
            self.assertEqual(r.status, 200)
            m = TP.match(r.header("traceparent"))
            self.assertTrue(m, (tp, r.header("traceparent")))
            self.assertNotEqual(m.group(1), "4bf92f3577b34da6a3ce929d0e0e4736", tp)
            seen.add(m.group(1))
        self.assertEqual(len(seen), 7, "each untraced request is a new trace")
        # a later version with more fields is read by its first four (W3C §3.2.4)
        r = self.server.get("/api/v1/healthz", headers={
            "traceparent": "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more"})
        m = TP.match(r.header("traceparent"))
        self.assertEqual((m.group(1), m.group(3)), ("4bf92f3577b34da6a3ce929d0e0e4736", "00"))

    def test_agent_gets_the_trace(self):
        r = self.server.post("/api/v1/tasks", body=task([{"sleep": 60000}]),
                             headers={"traceparent": CALLER})
        self.assertEqual(r.status, 201, r)
        sid = r.json()["id"]
        span = TP.match(r.header("traceparent")).group(2)
        try:
            wait_status(self.server, sid, "running")

            def agent_env():
                for pid, (_, _, _, cmd) in processes(sid).items():
                    if " agent start " in cmd + " ":
                        with open("/proc/%d/environ" % pid, "rb") as f:
                            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0")
                                       if b"=" in kv)
                        return env
                return None
            env = wait_for(agent_env, timeout=30, what="the agent process")
            tp = env.get(b"TRACEPARENT", b"").decode()
            self.assertEqual(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-%s-01" % span, env.keys())
        finally:
            self.server.request("DELETE", "/api/v1/sessions/" + sid)


if __name__ == "__main__":
    ahtest.main()
