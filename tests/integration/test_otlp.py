"""OTLP/HTTP JSON span export (issue 18 item 2, D48), against a small OTLP receiver run by the
test on loopback:

- one trace connects client → server → recorder → agent environment: the server's span of
  `POST /api/v1/tasks` continues the client's traceparent; task admission (queued until the
  scheduler placed it) and provisioning are its children, the base snapshot a child of
  provisioning; the recorder's span ("agent session", its own service) is the child of that
  request span; the agent runs with TRACEPARENT naming the recorder's span; the session's
  later snapshots (the final one) are children of the request span, a manual snapshot a child
  of the request that asked for it;
- each store batch is the root of a trace of its own, linked to the spans its writes were made
  for (the session's, for its recorder's events), with its op, event and session counts;
- request spans are named by route template and method, never by ids, and carry the status;
- export is off the request path and bounded: with a collector that does not answer, requests
  are served as usual while the spans are dropped and counted (ah_otlp_spans_dropped_total,
  ah_otlp_export_failures_total);
- an --otlp-endpoint that is not an http(s) URL is refused at start."""

import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
import unittest

import ahtest
from ahtest import AH_BIN, Server
from sessiontest import is_agent_start, processes, task, wait_for, wait_status

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "00-%s-00f067aa0ba902b7-01" % TRACE
TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class Receiver:
    """An OTLP/HTTP collector that keeps every span posted to /v1/traces."""

    def __init__(self):
        spans, paths = self.spans, self.paths = [], []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                paths.append((self.path, self.headers.get("Content-Type")))
                doc = json.loads(body)
                for rs in doc["resourceSpans"]:
                    resource = {a["key"]: a["value"]["stringValue"]
                                for a in rs["resource"]["attributes"]}
                    for ss in rs["scopeSpans"]:
                        for s in ss["spans"]:
                            s["service"] = resource["service.name"]
                            s["resource"] = resource
                            s["attrs"] = {a["key"]: list(a["value"].values())[0]
                                          for a in s.get("attributes", [])}
                            spans.append(s)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def find(self, attrs=None, **want):
        for s in list(self.spans):
            if all(s.get(k) == v for k, v in want.items()) and \
                    all(s["attrs"].get(k) == v for k, v in (attrs or {}).items()):
                return s
        return None

    def batch_linking(self, trace, span):
        """A store batch span with a link to (trace, span)."""
        for s in list(self.spans):
            if s["name"] == "store batch" and {"traceId": trace, "spanId": span} in \
                    s.get("links", []):
                return s
        return None

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def metric(s, name):
    m = re.search(r"^%s (\d+)" % re.escape(name), s.get("/metrics").body.decode(), re.M)
    return int(m.group(1)) if m else 0


class Otlp(unittest.TestCase):
    def test_one_trace_client_server_recorder_agent(self):
        rx = Receiver()
        self.addCleanup(rx.close)
        s = Server(args=("--otlp-endpoint", "http://127.0.0.1:%d" % rx.port))
        self.addCleanup(s.close)
        r = s.post("/api/v1/tasks", body=task([{"log": "hi"}, {"sleep": 1500}, {"log": "bye"}]),
                   headers={"traceparent": CALLER})
        self.assertEqual(r.status, 201, r)
        sid = r.json()["id"]
        server_span = TP.match(r.header("traceparent")).group(2)

        def agent_env():
            for pid, (_, _, _, cmd) in processes(sid).items():
                if is_agent_start(cmd):
                    with open("/proc/%d/environ" % pid, "rb") as f:
                        return dict(kv.split(b"=", 1) for kv in f.read().split(b"\0")
                                    if b"=" in kv)
            return None
        env = wait_for(agent_env, timeout=30, what="the agent process")
        agent_tp = TP.match(env.get(b"TRACEPARENT", b"").decode())
        self.assertTrue(agent_tp, env.keys())
        self.assertEqual(agent_tp.group(1), TRACE)
        self.assertNotIn(b"AH_OTLP_ENDPOINT", env)
        # a manual snapshot while it runs (the agent sleeps): a child of the request's span
        m = s.post("/api/v1/sessions/%s/fs-snapshots" % sid, body={"label": "mine"},
                   headers={"traceparent": CALLER})
        self.assertEqual(m.status, 201, m)
        manual_parent = TP.match(m.header("traceparent")).group(2)
        wait_status(s, sid, "completed")
        s.get("/api/v1/sessions/" + sid)

        req = wait_for(lambda: rx.find(traceId=TRACE, spanId=server_span), timeout=30,
                       what="the request's span")
        self.assertEqual(req["parentSpanId"], "00f067aa0ba902b7")  # the client's span
        self.assertEqual(req["name"], "POST /api/v1/tasks")
        self.assertEqual(req["kind"], 2)
        self.assertEqual(req["service"], "agent-harbor")
        self.assertEqual(req["attrs"]["http.response.status_code"], "201")
        self.assertEqual(req["attrs"]["http.route"], "/api/v1/tasks")
        self.assertLessEqual(int(req["startTimeUnixNano"]), int(req["endTimeUnixNano"]))
        rec = wait_for(lambda: rx.find(traceId=TRACE, name="agent session"), timeout=60,
                       what="the recorder's span")
        self.assertEqual(rec["parentSpanId"], server_span)  # server → recorder
        self.assertEqual(rec["spanId"], agent_tp.group(2))  # recorder → agent environment
        self.assertEqual(rec["service"], "agent-harbor-recorder")
        self.assertEqual(rec["attrs"]["ah.session_id"], sid)
        self.assertEqual(rec["attrs"]["ah.exit_code"], "0")
        prov = wait_for(lambda: rx.find(traceId=TRACE, name="provisioning"), timeout=30,
                        what="the provisioning span")
        self.assertEqual(prov["parentSpanId"], server_span)
        self.assertEqual(prov["attrs"]["ah.session_id"], sid)
        self.assertEqual(prov["attrs"]["ah.snapshot_provider"], "empty")
        # task admission: the scheduler's decision, a child of the request's span
        adm = wait_for(lambda: rx.find(traceId=TRACE, name="task admission"), timeout=30,
                       what="the task admission span")
        self.assertEqual(adm["parentSpanId"], server_span)
        self.assertEqual(adm["attrs"]["ah.session_id"], sid)
        self.assertEqual(adm["attrs"]["ah.placement"], "local")
        self.assertGreaterEqual(int(adm["attrs"]["ah.queue_wait_ms"]), 0)
        self.assertLessEqual(int(adm["startTimeUnixNano"]), int(adm["endTimeUnixNano"]))
        # snapshots: the base one inside provisioning, the final one in the session's trace
        base = wait_for(lambda: rx.find(traceId=TRACE, name="snapshot",
                                        attrs={"ah.snapshot_kind": "base"}),
                        timeout=30, what="the base snapshot's span")
        self.assertEqual(base["parentSpanId"], prov["spanId"])
        self.assertEqual(base["attrs"]["ah.session_id"], sid)
        self.assertTrue(base["attrs"]["ah.snapshot_id"].startswith("snap-"), base)
        final = wait_for(lambda: rx.find(traceId=TRACE, name="snapshot",
                                         attrs={"ah.snapshot_label": "final"}),
                         timeout=30, what="the final snapshot's span")
        self.assertEqual(final["parentSpanId"], server_span)
        self.assertEqual(final["attrs"]["ah.session_id"], sid)
        manual = wait_for(lambda: rx.find(traceId=TRACE, name="snapshot",
                                          attrs={"ah.snapshot_kind": "manual"}),
                          timeout=30, what="the manual snapshot's span")
        self.assertEqual(manual["parentSpanId"], manual_parent)
        self.assertEqual(manual["attrs"]["ah.snapshot_label"], "mine")
        # the store batches that committed the recorder's events: roots of their own traces,
        # linked to the session's span
        batch = wait_for(lambda: rx.batch_linking(TRACE, server_span), timeout=30,
                         what="a store batch span linked to the session")
        self.assertNotEqual(batch["traceId"], TRACE)
        self.assertNotIn("parentSpanId", batch)
        self.assertEqual(batch["kind"], 1)
        self.assertGreaterEqual(int(batch["attrs"]["ah.batch_ops"]), 1)
        self.assertGreaterEqual(int(batch["attrs"]["ah.batch_events"]), 1)
        self.assertGreaterEqual(int(batch["attrs"]["ah.batch_sessions"]), 1)
        # request spans carry route templates, never ids
        get = wait_for(lambda: rx.find(name="GET /api/v1/sessions/{id}"), timeout=30,
                       what="a GET span")
        self.assertNotIn(sid, get["name"])
        self.assertTrue(all(p == ("/v1/traces", "application/json") for p in rx.paths),
                        rx.paths)
        self.assertGreater(metric(s, "ah_otlp_spans_exported_total"), 0)
        self.assertEqual(metric(s, "ah_otlp_spans_dropped_total"), 0)

    def test_the_cli_sends_traceparent(self):
        """libah-client (and so `ah`) sends traceparent: a new trace per client, or the one in
        TRACEPARENT (an `ah` an agent runs joins the agent's trace)."""
        rx = Receiver()
        self.addCleanup(rx.close)
        s = Server(args=("--otlp-endpoint", "http://127.0.0.1:%d" % rx.port))
        self.addCleanup(s.close)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env.pop("TRACEPARENT", None)
        url = "http://127.0.0.1:%d" % s.port

        def ah(extra):
            p = subprocess.run([AH_BIN, "session", "list", "--remote-server", url],
                               capture_output=True, text=True, env=dict(env, **extra),
                               timeout=60, stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, 0, p.stderr)

        ah({"TRACEPARENT": CALLER})
        joined = wait_for(lambda: rx.find(traceId=TRACE, name="GET /api/v1/sessions"),
                          timeout=30, what="the CLI's request span")
        self.assertEqual(joined["parentSpanId"], "00f067aa0ba902b7")
        ah({})
        own = wait_for(lambda: [x for x in rx.spans if x["name"] == "GET /api/v1/sessions"
                                and x["traceId"] != TRACE], timeout=30, what="a second span")
        self.assertRegex(own[0].get("parentSpanId", ""), "^[0-9a-f]{16}$",
                         "the CLI sent no traceparent of its own")
        s.get("/api/v1/sessions")  # a client without traceparent: the trace starts here
        bare = wait_for(lambda: [x for x in rx.spans if x["name"] == "GET /api/v1/sessions"
                                 and x["traceId"] not in (TRACE, own[0]["traceId"])],
                        timeout=30, what="the bare request's span")
        self.assertNotIn("parentSpanId", bare[0])

    def test_a_dead_collector_drops_and_counts(self):
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        s = Server(args=("--otlp-endpoint", "http://127.0.0.1:%d/v1/traces" % port))
        self.addCleanup(s.close)
        t0 = time.monotonic()
        for _ in range(50):
            self.assertEqual(s.get("/api/v1/healthz").status, 200)
        self.assertLess(time.monotonic() - t0, 20)
        wait_for(lambda: metric(s, "ah_otlp_export_failures_total") >= 1, timeout=30,
                 what="a failed export")
        self.assertGreaterEqual(metric(s, "ah_otlp_spans_dropped_total"), 1)
        self.assertEqual(metric(s, "ah_otlp_spans_exported_total"), 0)

    def test_bad_endpoint_refused(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env["HOME"] = "/nonexistent-home"
        p = subprocess.run([AH_BIN, "agent", "access-point", "--port", "0", "--db", ":memory:",
                            "--otlp-endpoint", "ftp://x"], capture_output=True, text=True,
                           env=env, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 8, p.stderr)
        self.assertIn("--otlp-endpoint", p.stderr)


if __name__ == "__main__":
    ahtest.main()
