"""Issue 18 item 1: GET /metrics in the Prometheus text format (D49), checked by the real
`promtool check metrics`, with counters, gauges and histograms that the test moves: requests by
route template and status class, open streams and event followers, events stored, write
batches, store latency, sessions by state, snapshot durations, descriptor-exhaustion episodes
(issue 10 item 25) and first requests refused by the front gate."""

import http.client
import os
import re
import resource
import shutil
import socket
import subprocess
import time
import unittest

import ahtest
from ahtest import Server, ServerTest
from sessiontest import create, task, wait_for, wait_status
from ssetest import SSE

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def promtool():
    path = shutil.which("promtool")
    if not path:  # a missing tool is a broken environment, not a pass (scripts/deps.sh has it)
        raise AssertionError("promtool not found: install Debian's prometheus (scripts/deps.sh)")
    return path


def scrape(server):
    r = server.get("/metrics", record_it=True)
    assert r.status == 200, r
    assert r.header("content-type").startswith("text/plain; version=0.0.4"), r
    return r.body.decode("utf-8")


def parse(text):
    """{(name, frozenset(labels)): value} of every sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(samples, name, **labels):
    want = set(labels.items())
    total = None
    for (n, ls), v in samples.items():
        if n == name and want <= set(ls):
            total = (total or 0) + v
    return total


class Metrics(ServerTest):
    server_args = ("--max-concurrent-tasks", "4", "--sse-keepalive-ms", "500")

    def test_promtool_accepts_the_exposition(self):
        self.server.get("/api/v1/sessions")
        self.server.get("/api/v1/no-such-thing")
        text = scrape(self.server)
        p = subprocess.run([promtool(), "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)
        # promtool exits non-zero on errors and prints lint findings; both must be empty.
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        self.assertEqual(p.stdout.decode().strip() + p.stderr.decode().strip(), "",
                         "promtool findings")
        # D49: labels are templates and classes, never ids
        self.assertNotRegex(text, r'[0-9A-HJKMNP-TV-Z]{26}')
        for name in ("ah_http_requests_total", "ah_http_request_duration_seconds_bucket",
                     "ah_http_requests_in_flight", "ah_bus_subscribers",
                     "ah_events_ingested_total", "ah_store_batch_commit_seconds_count",
                     "ah_store_operation_seconds_count", "ah_store_errors_total",
                     "ah_http_fd_exhausted_episodes_total", "ah_snapshot_seconds_count",
                     "ah_sessions", "ah_process_resident_memory_bytes", "ah_process_open_fds"):
            self.assertIn("\n" + name, text, name)

    def test_requests_by_route_and_class(self):
        before = parse(scrape(self.server))
        for per_page in (7, 8, 9):  # three queries: three renders (the answers are kept)
            self.assertEqual(self.server.get("/api/v1/sessions?perPage=%d" % per_page).status,
                             200)
        self.assertEqual(self.server.get("/api/v1/sessions/not-an-id").status, 404)
        self.assertEqual(self.server.get("/api/v1/nothing/here").status, 404)
        after = parse(scrape(self.server))

        def delta(**labels):
            name = labels.pop("name", "ah_http_requests_total")
            return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)
        self.assertEqual(delta(route="/api/v1/sessions", method="GET", code="2xx"), 3)
        self.assertEqual(delta(route="/api/v1/sessions/{id}", method="GET", code="4xx"), 1)
        self.assertEqual(delta(route="unmatched", code="4xx"), 1)
        self.assertEqual(delta(name="ah_http_request_duration_seconds_count",
                               route="/api/v1/sessions", method="GET"), 3)
        # the list read the store three times
        self.assertGreaterEqual(delta(name="ah_store_operation_seconds_count", op="session_list"),
                                3)
        # the scrape itself is in flight while it renders
        self.assertGreaterEqual(value(after, "ah_http_requests_in_flight"), 1)

    def test_a_session_moves_events_streams_states_and_snapshots(self):
        before = parse(scrape(self.server))
        scenario = [{"thought": "start"}, {"edit": "a.txt", "content": "hello\n"},
                    {"sleep": 60000}]
        sid = create(self.server, task(scenario))["id"]
        wait_status(self.server, sid, "running")
        stream = SSE(self.server, "/api/v1/sessions/%s/events" % sid)
        self.assertEqual(stream.status, 200)
        try:
            def during():
                s = parse(scrape(self.server))
                return (value(s, "ah_bus_subscribers") >= 1 and
                        value(s, "ah_http_streams_open") >= 1 and
                        value(s, "ah_sessions", state="running") >= 1 and s)
            mid = wait_for(during, timeout=30, what="a follower and a running session")
            self.assertGreater(value(mid, "ah_events_ingested_total"),
                               value(before, "ah_events_ingested_total"))
            self.assertGreater(value(mid, "ah_store_batch_commit_seconds_count"),
                               value(before, "ah_store_batch_commit_seconds_count"))
            self.assertGreater(value(mid, "ah_store_batch_ops_sum"),
                               value(before, "ah_store_batch_ops_sum"))
            self.assertGreater(value(mid, "ah_snapshot_seconds_count", kind="base"),
                               value(before, "ah_snapshot_seconds_count", kind="base"))
        finally:
            stream.close()
            self.server.request("DELETE", "/api/v1/sessions/" + sid)
        wait_status(self.server, sid, {"cancelled", "failed", "stopped"})

        def after_close():
            s = parse(scrape(self.server))
            return (value(s, "ah_bus_subscribers") == value(before, "ah_bus_subscribers") and
                    value(s, "ah_sessions", state="running") ==
                    value(before, "ah_sessions", state="running") and s)
        end = wait_for(after_close, timeout=30, what="the follower and the session gone")
        self.assertGreater(value(end, "ah_http_stream_bytes_total"),
                           value(before, "ah_http_stream_bytes_total"))

    def test_gate_refusals_are_counted(self):
        before = value(parse(scrape(self.server)), "ah_http_gate_refused_total")
        reply = ahtest.raw_exchange(self.server.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03"
                                    b"\x03" + b"\0" * 64)
        self.assertIn(b"400", reply[:20])
        after = value(parse(scrape(self.server)), "ah_http_gate_refused_total")
        self.assertEqual(after - before, 1)


class AdminOnly(unittest.TestCase):
    """With credentials configured, /metrics needs an admin; without, it is open (D22 local)."""

    def test_admin_only_with_auth(self):
        from test_auth import auth, make_key, wait_closed
        s = Server()
        try:
            self.assertEqual(s.get("/metrics").status, 200)
            admin = make_key(s, "admin", "acme")
            viewer = make_key(s, "viewer", "acme")
            wait_closed(s)
            self.assertEqual(s.get("/metrics").status, 401)
            self.assertEqual(s.get("/metrics", headers=auth(viewer)).status, 403)
            r = s.get("/metrics", headers=auth(admin))
            self.assertEqual(r.status, 200)
            self.assertIn("ah_http_requests_total", r.body.decode())
        finally:
            s.close()


class SeparateBind(unittest.TestCase):
    """D49: --metrics-bind serves /metrics, and nothing else, on its own address without
    credentials, while the API port keeps it admin-only."""

    def test_metrics_port_open_api_port_closed(self):
        from test_auth import make_key, wait_closed
        s = Server(args=("--metrics-bind", "127.0.0.1:0"))
        try:
            port = int(wait_for(lambda: next((l["port"] for l in s.log_lines()
                                              if l.get("msg") == "metrics listening"), None),
                                timeout=30, what="the metrics listener's log line"))
            self.assertNotEqual(port, s.port)
            make_key(s, "admin", "acme")
            wait_closed(s)
            self.assertEqual(s.get("/metrics").status, 401)
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", "/metrics")
            r = c.getresponse()
            text = r.read().decode()
            self.assertEqual(r.status, 200)
            self.assertTrue(r.getheader("content-type").startswith("text/plain; version=0.0.4"))
            self.assertIn("ah_http_requests_total", text)
            self.assertIsNotNone(value(parse(text), "ah_sessions", state="queued"))
            p = subprocess.run([promtool(), "check", "metrics"], input=text.encode(),
                               capture_output=True, timeout=60)
            self.assertEqual((p.returncode, p.stdout + p.stderr), (0, b""))
            for path in ("/api/v1/sessions", "/api/v1/api-keys", "/"):  # nothing but /metrics
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                self.assertEqual(r.status, 404, path)
            c.close()
        finally:
            s.close()

    def test_bad_address_is_a_config_error(self):
        for bad in ("9464", "127.0.0.1:", "127.0.0.1:70000", ":9464", "127.0.0.1:x"):
            r = subprocess.run([ahtest.AH_BIN, "agent", "access-point", "--port", "0",
                                "--metrics-bind", bad], capture_output=True, text=True,
                               timeout=60, env={"PATH": os.environ.get("PATH", ""),
                                                "HOME": "/nonexistent"})
            self.assertEqual(r.returncode, 8, (bad, r.stderr))
            self.assertIn("--metrics-bind must be ADDRESS:PORT", r.stderr)


class Descriptors(unittest.TestCase):
    """Issue 10 item 25: an out-of-descriptors episode is a metric as well as a log line."""

    def test_episode_counted_once(self):
        s = Server()
        socks = []
        try:
            self.assertEqual(value(parse(scrape(s)), "ah_http_fd_exhausted_episodes_total"), 0)
            pid = s.proc.pid
            limit = len(os.listdir("/proc/%d/fd" % pid)) + 16
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
            for _ in range(60):
                socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=10))
            wait_for(lambda: any("out of file descriptors" in l.get("msg", "")
                                 for l in s.log_lines()), timeout=20, what="the episode")
            for c in socks:
                c.close()
            socks = []

            def scraped():
                try:
                    return parse(scrape(s))
                except (OSError, AssertionError):
                    return None
            m = wait_for(scraped, timeout=30, what="a scrape after the descriptors came back")
            self.assertEqual(value(m, "ah_http_fd_exhausted_episodes_total"), 1)
            self.assertEqual(value(m, "ah_process_max_fds"), limit)
        finally:
            for c in socks:
                c.close()
            s.close()


if __name__ == "__main__":
    ahtest.main()
