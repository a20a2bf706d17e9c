"""Issue 2: the daemon, its HTTP pipeline and its store, tested on the real `ah` binary."""

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

import ahtest
from ahtest import AH_BIN, Server, ServerTest, raw_exchange

TASK = {"prompt": "hi", "repo": {"mode": "none"}, "runtime": {"type": "local"},
        "agents": [{"type": "scripted", "settings": {"scenario": [{"log": "ok"}]}}]}
ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


class Basics(ServerTest):
    server_args = ("--max-body-bytes", "4096", "--cors-origins", "http://ui.example")

    def test_health_ready_version(self):
        r = self.server.get("/api/v1/healthz")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["status"], "ok")
        self.assertRegex(r.json()["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        r = self.server.get("/api/v1/readyz")
        self.assertEqual((r.status, r.json()["status"]), (200, "ready"))
        r = self.server.get("/api/v1/version")
        self.assertEqual(r.status, 200)
        self.assertRegex(r.json()["version"], r"^\d+\.\d+\.\d+")
        self.assertIn("git_commit", r.json()["build_info"])
        self.assertEqual(self.server.get("/_ah/healthz").status, 200)

    def test_404_and_405(self):
        r = self.server.get("/api/v1/nope")
        body = self.assertProblem(r, 404, "not-found")
        self.assertEqual(body["instance"], "/api/v1/nope")
        r = self.server.request("DELETE", "/api/v1/healthz")
        self.assertProblem(r, 405, "method-not-allowed")
        allow = [m.strip() for m in r.header("allow").split(",")]
        self.assertIn("GET", allow)
        self.assertIn("HEAD", allow)
        self.assertNotIn("DELETE", allow)
        r = self.server.request("PUT", "/api/v1/tasks", body=b"{}",
                                headers={"Content-Type": "application/json"})
        self.assertProblem(r, 405)
        self.assertIn("POST", r.header("allow"))
        # a trailing slash is a different, unknown resource
        self.assertProblem(self.server.get("/api/v1/healthz/"), 404)

    def test_request_ids(self):
        r = self.server.get("/api/v1/healthz", headers={"X-Request-Id": "trace-abc.123_x"})
        self.assertEqual(r.header("x-request-id"), "trace-abc.123_x")
        r = self.server.get("/api/v1/nope", headers={"X-Request-Id": "mine-1"})
        self.assertEqual(r.json()["requestId"], "mine-1")
        for bad in ("has space", "x" * 129, "semi;colon", ""):
            r = self.server.get("/api/v1/healthz", headers={"X-Request-Id": bad})
            self.assertRegex(r.header("x-request-id"), ULID_RE, bad)
        r1 = self.server.get("/api/v1/healthz")
        r2 = self.server.get("/api/v1/healthz")
        self.assertRegex(r1.header("x-request-id"), ULID_RE)
        self.assertNotEqual(r1.header("x-request-id"), r2.header("x-request-id"))
        # the id is in the access log line of that request (written once it is answered)
        deadline = time.monotonic() + 20
        while not any(l.get("id") == "mine-1" for l in self.server.log_lines()
                      if l.get("msg") == "request"):
            self.assertLess(time.monotonic(), deadline, "no request log line with id mine-1")
            time.sleep(0.02)
        line = [l for l in self.server.log_lines() if l.get("id") == "mine-1"][0]
        for field in ("time", "method", "path", "status", "bytes", "duration_ms"):
            self.assertIn(field, line)
        self.assertEqual(line["status"], 404)

    def test_413_by_content_length(self):
        r = self.server.post("/api/v1/tasks", body=b"x" * 5000,
                             headers={"Content-Type": "application/json"})
        body = self.assertProblem(r, 413, "payload-too-large")
        self.assertIn("4096", body["detail"])

    def test_413_chunked_sent_slowly(self):
        head = (b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"400\r\n" + b"a" * 0x400 + b"\r\n"
        out = raw_exchange(self.server.port, None, chunks=[head] + [chunk] * 8 + [b"0\r\n\r\n"],
                           delay=0.05)
        self.assertTrue(out.startswith(b"HTTP/1.1 413"), out[:200])
        self.assertIn(b"application/problem+json", out)
        # and with a lying Content-Length, sent slowly
        head = (b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Content-Length: 4000\r\n\r\n")
        out = raw_exchange(self.server.port, None, chunks=[head] + [b"{" * 1000] * 5, delay=0.05)
        self.assertTrue(out.startswith(b"HTTP/1.1 4"), out[:200])
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)

    def test_header_budget(self):
        # 8 KiB per connection for request line and headers (docs/operations.md): a 7 KB header
        # (a fat bearer token) still fits; one that does not is 431, and the server carries on
        def get_with(n):
            return raw_exchange(self.server.port, b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\n"
                                b"X-Big: " + b"a" * n + b"\r\nConnection: close\r\n\r\n")
        self.assertTrue(get_with(7000).startswith(b"HTTP/1.1 200"))
        self.assertTrue(get_with(9000).startswith(b"HTTP/1.1 431"))
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)

    def test_415(self):
        r = self.server.post("/api/v1/tasks", body=json.dumps(TASK),
                             headers={"Content-Type": "text/plain"})
        self.assertProblem(r, 415, "unsupported-media-type")
        r = self.server.post("/api/v1/tasks", body=json.dumps(TASK), headers={})
        self.assertProblem(r, 415)
        # parameters and +json types are fine
        r = self.server.post("/api/v1/tasks", body=json.dumps(TASK),
                             headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(r.status, 201, r)

    def test_malformed_json(self):
        for body in (b"{", b"{\"prompt\": }", b"nul", b"\xff\xfe", b"{\"a\":1,\"a\":2}",
                     b"[" * 100 + b"]" * 100, b""):
            r = self.server.post("/api/v1/tasks", body=body,
                                 headers={"Content-Type": "application/json"})
            self.assertProblem(r, 400)
        r = self.server.post("/api/v1/tasks", body=b"[1,2]",
                             headers={"Content-Type": "application/json"})
        self.assertProblem(r, 400)
        r = self.server.post("/api/v1/tasks", body=b"{\"prompt\": ",
                             headers={"Content-Type": "application/json"})
        self.assertIn("line 1", r.json()["detail"])

    def test_validation_names_fields(self):
        r = self.server.post("/api/v1/tasks", body={"prompt": "", "agents": []})
        body = self.assertProblem(r, 400, "validation")
        for field in ("prompt[0].text", "repo", "runtime", "agents"):
            self.assertIn(field, body["errors"])
        r = self.server.post("/api/v1/tasks", body=dict(TASK, agents=[{"type": "nonesuch"}]))
        body = self.assertProblem(r, 400)
        self.assertIn("scripted", body["errors"]["agents[0].type"][0])

    def test_burst_of_garbage_leaves_server_healthy(self):
        garbage = [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                   b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                   b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n",
                   b"POST /api/v1/tasks HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                   b"POST /api/v1/tasks HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                   b"\x00\x01\x02\x03" * 100, b"GET /api/v1/healthz HTTP/1.1\r\n"]
        def blast(n):
            for i in range(n):
                try:
                    raw_exchange(self.server.port, None, chunks=[garbage[i % len(garbage)]],
                                 read_timeout=2)
                except OSError:
                    pass
        threads = [threading.Thread(target=blast, args=(40,)) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for _ in range(20):
            r = self.server.post("/api/v1/tasks", body=b"{oops",
                                 headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400)
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)
        self.assertEqual(self.server.proc.poll(), None)

    def test_cors(self):
        r = self.server.request("OPTIONS", "/api/v1/tasks", headers={
            "Origin": "http://ui.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        self.assertEqual(r.status, 204)
        self.assertIn("POST", r.header("access-control-allow-methods"))
        self.assertIn("Idempotency-Key", r.header("access-control-allow-headers"))
        r = self.server.request("OPTIONS", "/api/v1/tasks", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        self.assertProblem(r, 403)
        r = self.server.get("/api/v1/healthz", headers={"Origin": "http://ui.example"})
        self.assertEqual(r.header("access-control-allow-origin"), "http://ui.example")
        r = self.server.get("/api/v1/healthz", headers={"Origin": "http://evil.example"})
        self.assertIsNone(r.header("access-control-allow-origin"))
        self.assertProblem(self.server.request("OPTIONS", "/nowhere"), 404)


class Lifecycle(unittest.TestCase):
    def test_sigterm_answers_in_flight_request(self):
        s = Server()
        try:
            body = json.dumps(TASK).encode()
            sock = socket.create_connection(("127.0.0.1", s.port))
            # Expect: 100-continue makes the server say when it has the request's headers, so
            # the SIGTERM surely lands while the request is in flight (not before it was read)
            sock.sendall(b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                         b"application/json\r\nExpect: 100-continue\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body))
            sock.settimeout(20)
            self.assertTrue(sock.recv(100).startswith(b"HTTP/1.1 100"))
            sock.sendall(body[:10])
            s.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            self.assertIsNone(s.proc.poll(), "exited with a request in flight")
            sock.sendall(body[10:])
            sock.settimeout(10)
            answer = sock.recv(65536)
            sock.close()
            self.assertTrue(answer.startswith(b"HTTP/1.1 201"), answer[:200])
            self.assertEqual(s.proc.wait(15), 0)
            # no new connections after the stop
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", s.port), timeout=2).sendall(
                    b"GET /api/v1/healthz HTTP/1.1\r\n\r\n")
                raise OSError("connected")
        finally:
            s.close()

    def test_restart_keeps_data_and_does_not_rerun_migrations(self):
        s = Server()
        try:
            r = s.post("/api/v1/tasks", body=TASK)
            self.assertEqual(r.status, 201)
            sid = r.json()["id"]
            first = [l for l in s.log_lines() if l.get("msg") == "store open"][0]
            self.assertGreaterEqual(first["migrations_applied"], 2)
            self.assertEqual(s.stop(), 0)
            s.start()
            self.assertEqual(s.get("/api/v1/sessions/" + sid).status, 200)
            second = [l for l in s.log_lines() if l.get("msg") == "store open"][0]
            self.assertEqual(second["migrations_applied"], 0)
            self.assertEqual(second["schema_version"], first["schema_version"])
            self.assertEqual(s.stop(), 0)
            rows = [int(v) for v in ahtest.db_row(
                s.db, "SELECT count(*), count(DISTINCT version), max(version)"
                      " FROM schema_migrations")]
            # numbers may have gaps while work lands out of order (005 before 004)
            self.assertEqual(rows[2], first["schema_version"])
            self.assertEqual(rows[0], rows[1])
            self.assertEqual(rows[0], first["migrations_applied"])
        finally:
            s.close()

    def test_readyz_503_until_store_open(self):
        tmp = tempfile.mkdtemp(prefix="ah-it-")
        db_path = os.path.join(tmp, "state.db")
        sqlite3.connect(db_path).close()
        lock = sqlite3.connect(db_path, isolation_level=None, timeout=0)
        lock.execute("BEGIN EXCLUSIVE")
        s = Server(tmpdir=tmp, db=db_path, wait_ready=False)
        try:
            r = s.get("/api/v1/readyz")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json()["status"], "not_ready")
            self.assertEqual(s.get("/api/v1/healthz").status, 200)
            r = s.get("/api/v1/sessions")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json()["type"], "/problems/unavailable")
            self.assertEqual(r.header("retry-after"), "1")
            lock.execute("ROLLBACK")
            lock.close()
            s.wait_ready(timeout=20)
        finally:
            s.close()

    def test_port_in_use(self):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        tmp = tempfile.mkdtemp(prefix="ah-it-")
        try:
            p = subprocess.run([AH_BIN, "agent", "access-point", "--port", str(port), "--db",
                                os.path.join(tmp, "s.db")], capture_output=True, timeout=20,
                               env=dict(os.environ, XDG_RUNTIME_DIR=tmp))
            self.assertEqual(p.returncode, 1)
            lines = [l for l in p.stderr.decode().splitlines() if not l.startswith("{")]
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertIn("already in use", lines[0])
            self.assertIn(str(port), lines[0])
        finally:
            holder.close()

    def test_unusable_paths_are_one_clear_line_and_exit_1(self):
        tmp = tempfile.mkdtemp(prefix="ah-it-")
        blocker = os.path.join(tmp, "a-file")
        open(blocker, "w").close()
        cases = (
            # the database's own failure names the database
            (("--db", os.path.join(blocker, "s.db")), os.path.join(blocker, "s.db")),
            # the data directory's names the data directory, not the database (which is fine)
            (("--db", os.path.join(tmp, "s.db"), "--data-dir", os.path.join(blocker, "data")),
             "data directory " + os.path.join(blocker, "data")),
        )
        for args, named in cases:
            p = subprocess.run([AH_BIN, "agent", "access-point", "--port", "0"] + list(args),
                               capture_output=True, timeout=20,
                               env=dict(os.environ, XDG_RUNTIME_DIR=tmp))
            self.assertEqual(p.returncode, 1, p.stderr)
            lines = [l for l in p.stderr.decode().splitlines() if not l.startswith("{")]
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertTrue(lines[0].startswith("ah agent access-point: " + named), lines[0])
            if "--data-dir" in args:
                self.assertNotIn("s.db", lines[0])

    def test_config_precedence_and_errors(self):
        tmp = tempfile.mkdtemp(prefix="ah-it-")
        cfg = os.path.join(tmp, "config.toml")
        with open(cfg, "w") as f:
            f.write("# test\nmax-body-bytes = 2048\nlog-level = \"debug\"\n")
        # file only: 3000 bytes is too large
        s = Server(args=("--config", cfg))
        try:
            r = s.post("/api/v1/tasks", body=b"x" * 3000,
                       headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 413)
        finally:
            s.close()
        # env beats file, flag beats env
        s = Server(args=("--config", cfg), env={"AH_MAX_BODY_BYTES": "4000"})
        try:
            r = s.post("/api/v1/tasks", body=b"x" * 3000,
                       headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400)  # passed the limit, then failed as JSON
            r = s.post("/api/v1/tasks", body=b"x" * 5000,
                       headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 413)
        finally:
            s.close()
        s = Server(args=("--config", cfg, "--max-body-bytes", "8000"),
                   env={"AH_MAX_BODY_BYTES": "4000"})
        try:
            r = s.post("/api/v1/tasks", body=b"x" * 5000,
                       headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400)
        finally:
            s.close()
        # the client commands' settings share the file (CLI §1): the daemon leaves them alone
        with open(cfg, "w") as f:
            f.write("max-body-bytes = 2048\nremote-server = \"prod\"\n[[server]]\n"
                    "name = \"prod\"\nurl = \"http://127.0.0.1:1\"\n")
        s = Server(args=("--config", cfg))
        try:
            r = s.post("/api/v1/tasks", body=b"x" * 3000,
                       headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 413)
        finally:
            s.close()
        # a bad file is one line and the configuration exit code
        with open(cfg, "w") as f:
            f.write("port = 1\nbogus-key = 3\n")
        p = subprocess.run([AH_BIN, "agent", "access-point", "--config", cfg], capture_output=True,
                           timeout=20)
        self.assertEqual(p.returncode, 8)
        self.assertIn("bogus-key", p.stderr.decode())
        p = subprocess.run([AH_BIN, "agent", "access-point", "--port", "nope"],
                           capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 8)
        self.assertIn("--port", p.stderr.decode())
        p = subprocess.run([AH_BIN, "agent", "access-point", "--frobnicate"],
                           capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 2)

    def test_cli_help_and_version(self):
        p = subprocess.run([AH_BIN, "--version"], capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout.decode(), r"^ah \d+\.\d+\.\d+")
        p = subprocess.run([AH_BIN, "--help"], capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertIn("agent access-point", p.stdout.decode())
        self.assertIn("Exit codes", p.stdout.decode())
        p = subprocess.run([AH_BIN, "help", "agent", "access-point"], capture_output=True,
                           timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertIn("--max-concurrent-tasks", p.stdout.decode())
        self.assertIn("AH_MAX_CONCURRENT_TASKS", p.stdout.decode())
        p = subprocess.run([AH_BIN, "help", "agent", "record"], capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertIn("--socket", p.stdout.decode())
        p = subprocess.run([AH_BIN, "frobnicate"], capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown command", p.stderr.decode())


if __name__ == "__main__":
    ahtest.main()
