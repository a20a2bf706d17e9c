"""Remote sessions (issue 16 item 5): an access point that runs nothing itself
(`--max-concurrent-tasks 0`) launches sessions on its enrolled executors (`ah agent enroll`, real
processes on loopback, mutual TLS with certificates from tests/enroll/mkcerts.sh). The
executor provisions and runs them exactly as the local path does; the recorder's link is relayed
over QUIC to the access point's supervisor, so events keep the recorder's own sequence and acks
end to end: gapless, never repeated — also when the executor's enroll process or the access
point is killed with SIGKILL mid-session and restarted."""

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import ahtest
from sessiontest import create, events, is_agent_start, processes, session, task, wait_status

HERE = os.path.dirname(os.path.abspath(__file__))
MKCERTS = os.path.join(HERE, "..", "enroll", "mkcerts.sh")
SERVE_ID = "spiffe://example.org/ah/serve"


def wait_for(what, cond, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def kill_tree_of(marker):
    """SIGKILL every process group whose command line names `marker` (a test directory): the
    recorders and agents an executor left (by design they outlive their executor)."""
    groups = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                if marker.encode() not in f.read():
                    continue
            groups.add(os.getpgid(int(name)))
        except (OSError, ProcessLookupError):
            continue
    for g in groups:
        if g > 1 and g != os.getpgid(0):
            try:
                os.killpg(g, signal.SIGKILL)
            except OSError:
                pass


class Executor:
    """One `ah agent enroll` process with its own data directory (kept across restarts, so the
    recorders it left find the restarted one at the same socket)."""

    def __init__(self, tmp, name, args, extra_env=None):
        self.dir = tempfile.mkdtemp(prefix="ah-rexec-%s-" % name, dir=tmp)
        self.extra_env = extra_env or {}
        self.args = args + ["--data-dir", self.dir]
        self.proc = None
        self.n = 0
        self.start()

    def start(self):
        self.n += 1
        self.log = os.path.join(self.dir, "stderr-%d.log" % self.n)
        err = open(self.log, "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env["HOME"] = self.dir
        env["XDG_RUNTIME_DIR"] = os.path.join(self.dir, "run")
        os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
        env.update(self.extra_env)
        self.proc = subprocess.Popen([ahtest.AH_BIN, "agent", "enroll"] + self.args,
                                     stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        err.close()

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_tree_of(self.dir)
        for marker in ahtest.SANITIZER_MARKERS:
            if marker in self.text():
                raise AssertionError("sanitizer report from ah agent enroll:\n" + self.text())


class UdpDropper:
    """A UDP relay between one executor and the access point that can drop every datagram, both
    ways: the network going away for a while, as the issue's acceptance asks (no event lost or
    repeated)."""

    def __init__(self, target_port):
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.target = ("127.0.0.1", target_port)
        self.client = None
        self.dropping = False
        self.dropped = 0
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            ready, _, _ = select.select([self.front, self.back], [], [], 0.2)
            for sock in ready:
                data, addr = sock.recvfrom(65535)
                if self.dropping:
                    self.dropped += 1
                    continue
                if sock is self.front:
                    self.client = addr
                    self.back.sendto(data, self.target)
                elif self.client:
                    self.front.sendto(data, self.client)

    def close(self):
        self.running = False
        self.thread.join()
        self.front.close()
        self.back.close()


class RemoteSessions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-remote-")
        cls.certs = os.path.join(cls.tmp, "certs")
        subprocess.run(["sh", MKCERTS, cls.certs], check=True, stdout=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def c(self, name):
        return os.path.join(self.certs, name)

    def access_point(self, port=0, extra=(), env=None):
        s = ahtest.Server(env=env, args=list(extra) + ["--max-concurrent-tasks", "0", "--quic-port", str(port),
                                "--quic-cert", self.c("serve.pem"), "--quic-key",
                                self.c("serve.key"), "--quic-ca", self.c("ca.pem"),
                                "--executor-trust-domain", "example.org",
                                "--quic-idle-timeout-ms", "3000"])
        self.addCleanup(s.kill_sessions)
        self.addCleanup(s.close)
        m = wait_for("the QUIC listener", lambda: re.search(
            r"QUIC listening on 127\.0\.0\.1:(\d+)", s.stderr()))
        s.quic_port = int(m.group(1))
        return s

    def executor(self, ap, cert, slots=4, env=None, port=None, extra=()):
        """port: where the executor dials (default the access point's QUIC port)."""
        args = list(extra) + ["--remote-server", "quic://127.0.0.1:%d" % (port or ap.quic_port),
                "--identity", "files",
                "--cert-file", self.c(cert + ".pem"), "--key-file", self.c(cert + ".key"),
                "--ca-file", self.c("ca.pem"), "--expected-server-id", SERVE_ID,
                "--heartbeat-interval", "0.2", "--max-concurrent-tasks", str(slots)]
        e = Executor(self.tmp, cert, args, env)
        self.addCleanup(e.stop)
        wait_for("executor %s online" % cert, lambda: (lambda r: r.status == 200 and
                 r.json()["health"] == "online")(ap.get("/api/v1/executors/" + cert)))
        return e

    def gapless(self, ap, sid):
        evs = events(ap, sid)
        seqs = [e["seq"] for e in evs]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), seqs)
        return evs

    def test_trace_crosses_the_link(self):
        """D48: the traceparent of the request that created a session travels in LaunchSession;
        the agent the executor runs has TRACEPARENT in that trace, its parent the request's span
        at the access point (the executor exports no spans, so the recorder hands it on as it
        came)."""
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        tp = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")
        ap = self.access_point()
        self.executor(ap, "a", slots=2)
        r = ap.post("/api/v1/tasks", body=task([{"log": "traced"}, {"sleep": 600000}]),
                    headers={"traceparent": "00-%s-00f067aa0ba902b7-01" % trace})
        self.assertEqual(r.status, 201, r)
        sid = r.json()["id"]
        span = tp.match(r.header("traceparent")).group(2)

        def agent_env():
            for pid, (_, _, _, cmd) in processes(sid).items():
                if is_agent_start(cmd):
                    with open("/proc/%d/environ" % pid, "rb") as f:
                        return dict(kv.split(b"=", 1) for kv in f.read().split(b"\0")
                                    if b"=" in kv)
            return None
        env = wait_for("the agent process on the executor", agent_env, timeout=60)
        m = tp.match(env.get(b"TRACEPARENT", b"").decode())
        self.assertTrue(m, sorted(env))
        self.assertEqual((m.group(1), m.group(2)), (trace, span))
        self.assertEqual(session(ap, sid)["executorId"], "spiffe://example.org/ah/agent/a")
        ap.request("POST", "/api/v1/sessions/%s/stop" % sid)

    def test_executor_exports_spans(self):
        """D48: with --otlp-endpoint the executor exports its own spans, one trace: client →
        the access point's request span → its task admission (placed on the executor) and its
        LaunchSession client span → the executor's LaunchSession span (service
        agent-harbor-executor, its SPIFFE id a resource attribute) → its provisioning span (the
        base snapshot inside) and its recorder's span → the agent's TRACEPARENT. A stop is a
        Signal: the access point's client span, a child of the stop request's span, and the
        executor's handler span, a child of that."""
        from test_otlp import Receiver
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        tp = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")
        rx = Receiver()
        self.addCleanup(rx.close)
        url = "http://127.0.0.1:%d" % rx.port
        ap = self.access_point(extra=("--otlp-endpoint", url))
        ex = self.executor(ap, "a", slots=2, extra=("--otlp-endpoint", url))
        r = ap.post("/api/v1/tasks", body=task([{"log": "traced"}, {"sleep": 600000}]),
                    headers={"traceparent": "00-%s-00f067aa0ba902b7-01" % trace})
        self.assertEqual(r.status, 201, r)
        sid = r.json()["id"]
        span = tp.match(r.header("traceparent")).group(2)

        def agent_env():
            for pid, (_, _, _, cmd) in processes(sid).items():
                if is_agent_start(cmd):
                    with open("/proc/%d/environ" % pid, "rb") as f:
                        return dict(kv.split(b"=", 1) for kv in f.read().split(b"\0")
                                    if b"=" in kv)
            return None
        env = wait_for("the agent process on the executor", agent_env, timeout=60)
        m = tp.match(env.get(b"TRACEPARENT", b"").decode())
        self.assertTrue(m, sorted(env))
        self.assertEqual(m.group(1), trace)
        req = wait_for("the access point's request span",
                       lambda: rx.find(traceId=trace, spanId=span), timeout=30)
        self.assertEqual(req["parentSpanId"], "00f067aa0ba902b7")
        self.assertEqual(req["service"], "agent-harbor")
        executor_id = "spiffe://example.org/ah/agent/a"
        adm = wait_for("the access point's task admission span",
                       lambda: rx.find(traceId=trace, name="task admission"), timeout=30)
        self.assertEqual(adm["parentSpanId"], span)
        self.assertEqual(adm["service"], "agent-harbor")
        self.assertEqual(adm["attrs"]["ah.placement"], "executor")
        self.assertEqual(adm["attrs"]["ah.executor_id"], executor_id)
        call = wait_for("the access point's LaunchSession client span",
                        lambda: rx.find(traceId=trace, name="LaunchSession",
                                        service="agent-harbor"), timeout=30)
        self.assertEqual(call["parentSpanId"], span)
        self.assertEqual(call["kind"], 3)
        self.assertEqual(call["attrs"]["ah.executor_id"], executor_id)
        self.assertEqual(call["attrs"]["ah.session_id"], sid)
        launch = wait_for("the executor's LaunchSession span",
                          lambda: rx.find(traceId=trace, name="LaunchSession",
                                          service="agent-harbor-executor"), timeout=30)
        self.assertEqual(launch["parentSpanId"], call["spanId"])  # access point → executor RPC
        self.assertEqual(launch["kind"], 2)
        self.assertEqual(launch["attrs"]["ah.session_id"], sid)
        self.assertEqual(launch["resource"].get("ah.executor_id"), executor_id)
        prov = wait_for("the executor's provisioning span",
                        lambda: rx.find(traceId=trace, name="provisioning"), timeout=30)
        self.assertEqual(prov["parentSpanId"], launch["spanId"])  # RPC → provisioning
        self.assertEqual(prov["service"], "agent-harbor-executor")
        self.assertEqual(prov["resource"].get("ah.executor_id"), executor_id)
        base = wait_for("the executor's base snapshot span",
                        lambda: rx.find(traceId=trace, name="snapshot"), timeout=30)
        self.assertEqual(base["parentSpanId"], prov["spanId"])
        self.assertEqual(base["service"], "agent-harbor-executor")
        self.assertEqual(base["attrs"]["ah.snapshot_kind"], "base")
        st = ap.request("POST", "/api/v1/sessions/%s/stop" % sid,
                        headers={"traceparent": "00-%s-00f067aa0ba902b7-01" % trace})
        self.assertIn(st.status, (200, 202), st)
        stop_span = tp.match(st.header("traceparent")).group(2)
        sig = wait_for("the access point's Signal client span",
                       lambda: rx.find(traceId=trace, name="Signal", service="agent-harbor"),
                       timeout=30)
        self.assertEqual(sig["parentSpanId"], stop_span)  # the stop request → its RPC
        self.assertEqual(sig["kind"], 3)
        self.assertEqual(sig["attrs"]["ah.signal_action"], "stop")
        handled = wait_for("the executor's Signal span",
                           lambda: rx.find(traceId=trace, name="Signal",
                                           service="agent-harbor-executor"), timeout=30)
        self.assertEqual(handled["parentSpanId"], sig["spanId"])
        self.assertEqual(handled["kind"], 2)
        self.assertEqual(handled["attrs"]["ah.signal_action"], "stop")
        self.assertEqual(handled["resource"].get("ah.executor_id"), executor_id)
        rec = wait_for("the recorder's span", lambda: rx.find(traceId=trace,
                       name="agent session"), timeout=60)
        self.assertEqual(rec["parentSpanId"], launch["spanId"])  # RPC → recorder
        self.assertEqual(rec["spanId"], m.group(2))  # recorder → agent's TRACEPARENT
        # the executor's log lines for the session carry its trace, as the access point's do
        with open(ex.log) as f:
            lines = [l for l in f if sid in l and "provisioned and started" in l]
        self.assertTrue(lines and trace in lines[0] and prov["spanId"] in lines[0], lines)

    def test_sessions_spread_and_complete(self):
        ap = self.access_point()
        ex_a = self.executor(ap, "a", slots=3)
        ex_b = self.executor(ap, "b", slots=3)
        steps = [{"thought": "planning"}, {"sleep": 300}, {"log": "halfway"},
                 {"edit": "out.txt", "content": "hello\n"}, {"log": "done"}]
        sids = create(ap, task(steps, count=12))["session_ids"]
        for sid in sids:
            s = wait_status(ap, sid, "completed", timeout=120)
            self.assertNotIn("queuedReason", s)
            evs = self.gapless(ap, sid)
            logs = [e.get("message") for e in evs if e["type"] == "log"]
            self.assertIn("halfway", logs)
            self.assertIn("done", logs)
            # one status event per transition, none repeated
            st = [e["status"] for e in evs if e["type"] == "status"]
            self.assertEqual(st, ["queued", "provisioning", "running", "completed"], st)
        # both executors ran some: the access point says where it launched each
        text = ap.stderr()
        on_a = len(re.findall(r"launching on executor spiffe://example.org/ah/agent/a\b", text))
        on_b = len(re.findall(r"launching on executor spiffe://example.org/ah/agent/b\b", text))
        self.assertEqual(on_a + on_b, 12, text[-3000:])
        self.assertGreater(on_a, 0)
        self.assertGreater(on_b, 0)
        # the executors did the work: their workspaces hold the written file
        made = [d for ex in (ex_a, ex_b)
                for d in os.listdir(os.path.join(ex.dir, "workspaces"))]
        self.assertEqual(sorted(made), sorted(sids))
        for ex in (ex_a, ex_b):
            for d in os.listdir(os.path.join(ex.dir, "workspaces")):
                with open(os.path.join(ex.dir, "workspaces", d, "out.txt")) as f:
                    self.assertEqual(f.read(), "hello\n")
                # private files (D28): what an executor's sessions write is its owner's only
                for p in (os.path.join(ex.dir, "workspaces", d),
                          os.path.join(ex.dir, "workspaces", d, "out.txt")):
                    self.assertEqual(os.stat(p).st_mode & 0o077, 0, oct(os.stat(p).st_mode))

    # A scenario that edits files: the same on an executor and on a local access point.
    EDITS = [{"edit": "a.txt", "content": "one\ntwo\n"},
             {"edit": "src/b.py", "content": "print(1)\n"},
             {"edit": "a.txt", "content": "one\nTWO\nthree\n"},
             {"log": "done"}]
    READS = ["/files", "/files?status=added", "/files/a.txt", "/files/a.txt/preview",
             "/files/a.txt/content", "/files?path=src/**", "/diff", "/diff?format=split",
             "/diff?files=src/b.py", "/diff/a.txt", "/diff/src/b.py?context=0",
             "/diff?format=patch", "/files/search?q=t[wh]", "/files/search?q=print&type=py",
             "/workspace/files?recursive=true", "/workspace/files?path=src",
             "/workspace/search/files?q=b", "/workspace/search/files?modified_only=true"]

    @staticmethod
    def comparable(j):
        """An answer without what differs between two runs: snapshot ids, times, and a file's
        history (the recorder may report two quick edits as one or two events)."""
        if isinstance(j, dict):
            return {k: RemoteSessions.comparable(v) for k, v in j.items()
                    if k not in ("from", "to", "snapshot_id", "last_modified", "history")}
        if isinstance(j, list):
            return [RemoteSessions.comparable(v) for v in j]
        return j

    def reads(self, server, sid):
        out = {}
        for path in self.READS:
            r = server.get("/api/v1/sessions/%s%s" % (sid, path))
            self.assertEqual(r.status, 200, (path, r))
            ctype = r.header("Content-Type") or ""
            out[path] = (ctype.split(";")[0],
                         self.comparable(r.json()) if ctype.startswith("application/json")
                         else r.body)
        return out

    def test_workspace_reads_of_a_remote_session(self):
        """Issue 16 item 5: files and diffs of a session on an executor are asked of that
        executor over the link (a WorkspaceRead RPC) and answered with the code the access point
        uses for its own sessions: the same scenario run locally answers the same (but for
        snapshot ids and times). A file's detail carries its history from the access point's
        events. The routes not forwarded yet answer 422 `unsupported` naming the executor."""
        ap = self.access_point()
        ex = self.executor(ap, "a")
        sid = create(ap, task(self.EDITS))["session_ids"][0]
        wait_status(ap, sid, "completed", timeout=120)
        with open(os.path.join(ex.dir, "workspaces", sid, "a.txt")) as f:
            self.assertEqual(f.read(), "one\nTWO\nthree\n")  # the file is on the executor
        remote = self.reads(ap, sid)
        # nothing changed since: `current` is the same snapshot read after read (the executor
        # keeps no snapshot per read)
        tos = {ap.get("/api/v1/sessions/%s/files" % sid).json()["to"] for _ in range(3)}
        self.assertEqual(len(tos), 1, tos)
        files = remote["/files"][1]
        self.assertEqual(sorted((f["path"], f["status"], f["lines_added"]) for f in files["items"]),
                         [("a.txt", "added", 3), ("src/b.py", "added", 1)])
        self.assertEqual(remote["/files/a.txt/content"][1]["content"], "one\nTWO\nthree\n")
        self.assertIn("+TWO", remote["/diff/a.txt"][1]["diff"])
        self.assertEqual(remote["/diff?format=patch"][0], "text/x-diff")
        self.assertIn(b"+++ b/src/b.py", remote["/diff?format=patch"][1])
        tree = remote["/workspace/files?recursive=true"][1]["children"]
        self.assertIn({"a.txt", "src"}, [{c["path"] for c in tree}])
        found = remote["/files/search?q=t[wh]"][1]
        self.assertEqual([(r["path"], [m["line_number"] for m in r["matches"]])
                          for r in found["results"]], [("a.txt", [2, 3])])
        history = ap.get("/api/v1/sessions/%s/files/a.txt" % sid).json()["history"]
        self.assertTrue(history and all(h["event_type"] == "file_edit" for h in history), history)
        # a 404 and a 400 made on the executor come back as the route's own problems
        r = ap.get("/api/v1/sessions/%s/diff/nope.txt" % sid)
        self.assertEqual(r.status, 404, r)
        self.assertIn("nope.txt", r.json()["detail"])
        r = ap.get("/api/v1/sessions/%s/files?from=snap-nope" % sid)
        self.assertEqual(r.status, 400, r)
        self.assertIn("from", r.json()["errors"])
        # the same scenario on an access point that runs it itself
        local = ahtest.Server()
        self.addCleanup(local.kill_sessions)
        self.addCleanup(local.close)
        lsid = create(local, task(self.EDITS))["session_ids"][0]
        wait_status(local, lsid, "completed", timeout=120)
        mine = self.reads(local, lsid)
        for path in self.READS:
            self.assertEqual(remote[path], mine[path], path)
        base = "/api/v1/sessions/" + sid
        r = ap.get("/api/v1/sessions/%s/files/search?q=(" % sid)  # refused before it goes out
        self.assertEqual(r.status, 400, r)
        self.assertIn("q", r.json()["errors"])
        for method, path, body in [("GET", "/workspace/info", None),
                                   ("GET", "/workspace/download", None),
                                   ("GET", "/fs-snapshots", None), ("POST", "/fs-snapshots", {}),
                                   ("POST", "/seek", {"seq": 1}),
                                   ("POST", "/session-branch", {"seq": 1})]:
            r = ap.request(method, base + path, body=body)
            self.assertEqual(r.status, 422, (path, r))
            p = r.json()
            self.assertTrue(p["type"].endswith("unsupported"), (path, p))
            self.assertIn("spiffe://example.org/ah/agent/a", p["detail"], (path, p))
        # what the events and the session say stays served from the access point
        self.assertEqual(ap.get(base + "/timeline").status, 200)
        self.assertEqual(ap.get(base + "/branches").status, 200)

    def test_workspace_read_of_a_running_remote_session(self):
        """`current` of a session still running on its executor is the workspace as it is."""
        ap = self.access_point()
        self.executor(ap, "a")
        big = "".join("%06d %s\n" % (i, "y" * 57) for i in range(6000))  # 384 KB
        sid = create(ap, task([{"edit": "w.txt", "content": "now\n"},
                               {"edit": "big.txt", "content": big}, {"log": "edited"},
                               {"sleep": 600000}]))["session_ids"][0]
        wait_for("the edit", lambda: any(e.get("type") == "log" for e in events(ap, sid)),
                 timeout=120)
        r = ap.get("/api/v1/sessions/%s/files/w.txt/content" % sid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["content"], "now\n")
        # an answer larger than the link's stream buffer (256 KiB) arrives whole
        r = ap.get("/api/v1/sessions/%s/files/big.txt/content" % sid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["content"], big)
        # unchanged between reads: the same snapshot, not one more per read
        tos = {ap.get("/api/v1/sessions/%s/files" % sid).json()["to"] for _ in range(3)}
        self.assertEqual(len(tos), 1, tos)
        ap.request("POST", "/api/v1/sessions/%s/stop" % sid)

    def test_workspace_reads_share_a_byte_budget(self):
        """The answers being received from executors share one byte budget (so 64 reads in
        flight cannot hold 64 times the per-answer cap): an answer past it is a clear 503, a
        refusal made on the executor still comes back as it is."""
        ap = self.access_point(env={"AH_REMOTE_READS_MAX_BYTES": "100"})
        self.executor(ap, "a")
        sid = create(ap, task([{"edit": "a.txt", "content": "one\n"},
                               {"log": "done"}]))["session_ids"][0]
        wait_status(ap, sid, "completed", timeout=120)
        r = ap.get("/api/v1/sessions/%s/files" % sid)
        self.assertEqual(r.status, 503, r)
        self.assertIn("past the 100 bytes they may hold together", r.json()["detail"])
        r = ap.get("/api/v1/sessions/%s/files/missing.txt" % sid)
        self.assertEqual(r.status, 404, r)

    def test_workspace_read_limits(self):
        """An answer over the access point's cap for relayed answers is a clear 413 naming the
        executor (smaller ones of the same session are served); one that does not come in time
        is a 504 naming it (the executor's late answer is dropped, and it answers the next read);
        an executor killed or gone makes a read answer 502 naming it, never a hang."""
        ap = self.access_point(env={"AH_REMOTE_READ_MAX_BYTES": "4000",
                                    "AH_REMOTE_READ_TIMEOUT_MS": "6000"})
        hold = os.path.join(self.tmp, "hold-read")
        self.addCleanup(lambda: os.path.exists(hold) and os.unlink(hold))
        ex = self.executor(ap, "a", env={"AH_TEST_HOOKS": "1", "AH_TEST_HOLD_AT": "executor-read",
                                         "AH_TEST_HOLD_FILE": hold})
        big = "".join("line %04d of a long file\n" % i for i in range(400))  # 10 KB
        sid = create(ap, task([{"edit": "big.txt", "content": big},
                               {"log": "done"}]))["session_ids"][0]
        wait_status(ap, sid, "completed", timeout=120)
        base = "/api/v1/sessions/%s" % sid
        r = ap.get(base + "/files")
        self.assertEqual(r.status, 200, r)
        r = ap.get(base + "/diff")
        self.assertEqual(r.status, 413, r)
        self.assertIn("spiffe://example.org/ah/agent/a", r.json()["detail"])
        self.assertIn("4000 bytes", r.json()["detail"])
        # an executor that does not answer in time: 504 naming it; its late answer is dropped
        open(hold, "w").close()
        r = ap.get(base + "/files", timeout=60)
        self.assertEqual(r.status, 504, r)
        self.assertIn("spiffe://example.org/ah/agent/a", r.json()["detail"])
        self.assertIn("within 6000 ms", r.json()["detail"])
        self.assertIn("holding at executor-read", ex.text())
        os.unlink(hold)
        wait_for("the held read to end", lambda: "released at executor-read" in ex.text())
        r = ap.get(base + "/files")
        self.assertEqual(r.status, 200, r)
        ex.kill9()
        t0 = time.monotonic()
        r = ap.get(base + "/files", timeout=60)
        self.assertIn(r.status, (502, 504), r)  # the link breaks (idle timeout) or time runs out
        self.assertIn("spiffe://example.org/ah/agent/a", r.json()["detail"])
        self.assertLess(time.monotonic() - t0, 30)
        wait_for("the executor's link to close", lambda: "not connected" in
                 ap.get(base + "/files").json().get("detail", ""), timeout=30)
        r = ap.get(base + "/diff/big.txt")
        self.assertEqual(r.status, 502, r)
        self.assertIn("offline", r.json()["detail"])

    def test_control_of_a_remote_session(self):
        ap = self.access_point()
        self.executor(ap, "a")
        # pause / resume, then a prompt the agent waits for, then it ends by itself
        sid = create(ap, task([{"sleep": 1500}, {"wait_prompt": True}, {"log": "after"}]))["id"]
        wait_status(ap, sid, "running", timeout=60)
        r = wait_for("pause accepted", lambda: (lambda r: r if r.status in (200, 202) else None)(
            ap.post("/api/v1/sessions/%s/pause" % sid)))
        wait_status(ap, sid, "paused", timeout=30)
        self.assertIn(ap.post("/api/v1/sessions/%s/resume" % sid).status, (200, 202))
        wait_status(ap, sid, "running")
        r = ap.post("/api/v1/sessions/%s/prompt" % sid, body={"prompt": "also run lint"})
        self.assertEqual(r.status, 202, r)
        wait_status(ap, sid, "completed", timeout=60)
        evs = self.gapless(ap, sid)
        messages = [e.get("message") for e in evs if e["type"] == "log"]
        self.assertIn("received prompt: also run lint", messages)
        self.assertIn("after", messages)
        st = [e["status"] for e in evs if e["type"] == "status"]
        self.assertEqual(st, ["queued", "provisioning", "running", "pausing", "paused",
                              "resuming", "running", "completed"], st)
        # stop: the agent gets SIGTERM on the executor and the session ends stopped
        sid2 = create(ap, task([{"sleep": 60000}]))["id"]
        wait_status(ap, sid2, "running", timeout=60)
        self.assertEqual(ap.post("/api/v1/sessions/%s/stop" % sid2).status, 202)
        wait_status(ap, sid2, "stopped", timeout=30)
        self.gapless(ap, sid2)
        # cancel (DELETE) of a running remote session
        sid3 = create(ap, task([{"sleep": 60000}]))["id"]
        wait_status(ap, sid3, "running", timeout=60)
        self.assertEqual(ap.request("DELETE", "/api/v1/sessions/" + sid3).status, 204)
        wait_status(ap, sid3, "cancelled", timeout=30)

    def many_steps(self, n):
        out = []
        for i in range(n):
            out += [{"log": "step %d" % i}, {"sleep": 100}]
        return out + [{"log": "the end"}]

    def check_complete_once(self, ap, sid, n):
        evs = self.gapless(ap, sid)
        logs = [e.get("message") for e in evs if e["type"] == "log"]
        wanted = ["step %d" % i for i in range(n)] + ["the end"]
        self.assertEqual([m for m in logs if m in wanted], wanted)  # each once, in order

    def test_executor_killed_and_restarted(self):
        ap = self.access_point()
        ex = self.executor(ap, "a")
        sid = create(ap, task(self.many_steps(40)))["id"]
        wait_for("a few events", lambda: len(events(ap, sid, type="log")) >= 5, timeout=60)
        ex.kill9()  # the recorder and agent go on; their link is gone
        time.sleep(0.5)  # events pile up at the recorder meanwhile
        ex.start()
        wait_status(ap, sid, "completed", timeout=90)
        self.check_complete_once(ap, sid, 40)
        self.assertIn("reconnected", ex.text())

    def test_access_point_killed_and_restarted(self):
        ap = self.access_point()
        self.executor(ap, "a")
        sid = create(ap, task(self.many_steps(40)))["id"]
        wait_for("a few events", lambda: len(events(ap, sid, type="log")) >= 5, timeout=60)
        port = ap.quic_port
        ap.kill()
        time.sleep(0.5)
        ap.args = [a if a != "0" or i == 0 or ap.args[i - 1] != "--quic-port" else str(port)
                   for i, a in enumerate(ap.args)]
        ap.start()
        wait_status(ap, sid, "completed", timeout=120)
        self.check_complete_once(ap, sid, 40)

    def test_udp_dropped_for_ten_seconds(self):
        """The executor's packets (both ways) vanish for 10 s mid-session: the link times out,
        the session shows `unreachable`, and once the network is back the executor reconnects,
        its recorder resends what was not acknowledged, and every event is there exactly once."""
        ap = self.access_point()
        net = UdpDropper(ap.quic_port)
        self.addCleanup(net.close)
        self.executor(ap, "a", port=net.port)
        sid = create(ap, task(self.many_steps(60)))["id"]
        wait_for("a few events", lambda: len(events(ap, sid, type="log")) >= 5, timeout=60)
        net.dropping = True
        wait_for("unreachable", lambda: session(ap, sid).get("executorStatus") == "unreachable",
                 timeout=30)
        time.sleep(10)  # the outage itself (what the test simulates), not a wait for a result
        net.dropping = False
        wait_status(ap, sid, "completed", timeout=120)
        self.check_complete_once(ap, sid, 60)
        self.assertGreater(net.dropped, 0)

    def test_executor_lost(self):
        """D44: an executor that is gone shows its sessions `unreachable`; they are re-attached
        when it returns; past --executor-lost-timeout-ms a started one fails with a clear error,
        and one it never started is queued again and runs elsewhere."""
        ap = self.access_point(extra=["--executor-lost-timeout-ms", "4000"])
        hold = os.path.join(self.tmp, "hold-%d" % os.getpid())
        ex = self.executor(ap, "a")
        sid = create(ap, task(self.many_steps(30)))["id"]
        s = wait_status(ap, sid, "running", timeout=60)
        self.assertEqual(s["executorStatus"], "connected")
        self.assertEqual(s["executorId"], "spiffe://example.org/ah/agent/a")
        ex.kill9()
        wait_for("unreachable", lambda: session(ap, sid)["executorStatus"] == "unreachable",
                 timeout=30)
        ex.start()  # back before the timeout: re-attached, nothing lost
        wait_for("connected", lambda: session(ap, sid).get("executorStatus") in
                 ("connected", None), timeout=30)
        wait_status(ap, sid, "completed", timeout=90)
        self.check_complete_once(ap, sid, 30)
        self.assertNotIn("executorStatus", session(ap, sid))  # over: nothing to reach

        # lost for good: the running session fails with the reason
        sid2 = create(ap, task([{"sleep": 60000}]))["id"]
        wait_status(ap, sid2, "running", timeout=60)
        ex.kill9()
        kill_tree_of(ex.dir)  # its recorder and agent too: nothing will come back
        s = wait_status(ap, sid2, "failed", timeout=60)
        self.assertIn("executor spiffe://example.org/ah/agent/a was unreachable for 4 s",
                      s["error"])

        # a launch accepted but never started (held before provisioning), then the executor
        # is lost: queued again, and another executor runs it
        open(hold, "w").close()
        self.addCleanup(lambda: os.path.exists(hold) and os.unlink(hold))
        ex_h = self.executor(ap, "a", env={"AH_TEST_HOOKS": "1",
                                            "AH_TEST_HOLD_AT": "executor-provision",
                                            "AH_TEST_HOLD_FILE": hold})
        sid3 = create(ap, task([{"log": "ran"}]))["id"]
        wait_for("held", lambda: "holding at executor-provision" in ex_h.text(), timeout=60)
        self.assertEqual(session(ap, sid3)["status"], "provisioning")
        ex_h.kill9()
        os.unlink(hold)
        self.executor(ap, "b")
        s = wait_status(ap, sid3, "completed", timeout=90)
        st = [e["status"] for e in self.gapless(ap, sid3) if e["type"] == "status"]
        self.assertEqual(st, ["queued", "provisioning", "queued", "provisioning", "running",
                              "completed"], st)
        self.assertIn("launching on executor spiffe://example.org/ah/agent/b", ap.stderr())


if __name__ == "__main__":
    unittest.main()
