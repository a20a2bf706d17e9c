"""`ah webui --remote-server URL` (issue 14, M17): the UI served here, /api/v1 proxied to a remote
access point. Against a real second `ah` (tasks, idempotency, SSE live and resumed with
Last-Event-ID, 204 at the end, Problems passed through), and against small upstreams written
here for what a real server cannot show: the headers that arrive (Authorization, traceparent,
Idempotency-Key, X-Request-Id kept; hop-by-hop, Host, Origin, Cookie dropped), an upstream that
never answers (504), one that is down (502), and TLS verified with --remote-ca (502 without);
a configured API key (--remote-api-key-file) against an access point that requires one; and
the proxy's own sign-in through a real glewlwyd, forwarding each person as a JWT it signs."""

import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import ahtest
import oidc_harness
import test_auth_oidc

ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers every request with the headers and body it received, plus headers the proxy must
    drop (hop-by-hop, CORS) and one it must keep."""
    protocol_version = "HTTP/1.1"
    seen = []

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        Echo.seen.append({"method": self.command, "path": self.path,
                          "headers": [(k.lower(), v) for k, v in self.headers.items()],
                          "body": body})
        out = json.dumps({"ok": True}).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Keep-Alive", "timeout=5")
        self.send_header("X-Upstream", "kept")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("ETag", '"v1"')
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, *a):
        pass


def serve(handler, tls_context=None):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    if tls_context:
        srv.socket = tls_context.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def proxy(url, *extra, wait_ready=True):
    return ahtest.Server(command=("webui",), args=("--remote-server", url) + tuple(extra),
                         wait_ready=wait_ready)


def sse_events(server, sid, last_id=None, stop_after=None, timeout=60, headers=None):
    """Reads the event stream through the proxy; returns (status, [events])."""
    c = server.connect(timeout)
    headers = dict(headers or {}, Accept="text/event-stream")
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    c.request("GET", "/api/v1/sessions/%s/events" % sid, headers=headers)
    r = c.getresponse()
    events = []
    if r.status != 200:
        r.read()
        c.close()
        return r.status, events
    data = []
    while True:
        line = r.readline()
        if not line:
            break
        line = line.decode().rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "" and data:
            events.append(json.loads("\n".join(data)))
            data = []
            if stop_after and stop_after(events):
                break
    c.close()
    return r.status, events


class AgainstRealServer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = ahtest.Server()
        cls.server = proxy("http://127.0.0.1:%d/" % cls.upstream.port)

    @classmethod
    def tearDownClass(cls):
        for s in (cls.server, cls.upstream):
            code = s.close()
            if code not in (0, None):
                raise AssertionError("ah exited with %s:\n%s" % (code, s.stderr()[-4000:]))

    def task(self, steps, key=None):
        h = {"Idempotency-Key": key} if key else {}
        return self.server.post("/api/v1/tasks", {
            "prompt": "through the proxy", "repo": {"mode": "none"}, "runtime": {"type": "local"},
            "agents": [{"type": "scripted", "settings": {"scenario": steps}}]}, headers=h)

    def test_ui_and_own_health(self):
        r = self.server.request("GET", "/", record_it=False)
        self.assertEqual(r.status, 200)
        self.assertIn(b"<title>Agent Harbor", r.body)
        self.assertIn("script-src 'self'", r.header("content-security-policy"))
        r = self.server.get("/_ah/healthz")
        self.assertEqual((r.status, r.json()["status"]), (200, "ready"))
        # the log line names the upstream
        listening = [l for l in self.server.log_lines() if l.get("msg") == "listening"]
        self.assertEqual(listening[0]["remote"], "http://127.0.0.1:%d/" % self.upstream.port)

    def test_task_idempotent_and_problems_pass_through(self):
        key = "7c1f6c0e-2f59-4d7e-9a37-0f7f2d0d6b11"
        a = self.task([{"log": "x"}], key)
        b = self.task([{"log": "x"}], key)
        self.assertEqual((a.status, b.status), (201, 201), (a, b))
        self.assertEqual(a.json()["id"], b.json()["id"])
        # the upstream's own refusal, unchanged
        r = self.server.post("/api/v1/tasks", {"prompt": ""})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.header("content-type"), "application/problem+json")
        self.assertIn("errors", r.json())
        r = self.server.get("/api/v1/sessions/%s" % ULID)
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.json()["instance"], "/api/v1/sessions/%s" % ULID)
        # the client's request id reaches the upstream's log and comes back
        rid = "01M8Y0FM8YBMRCY3J90TATTCVZ"
        r = self.server.get("/api/v1/sessions?perPage=1", headers={"X-Request-Id": rid})
        self.assertEqual((r.status, r.header("x-request-id")), (200, rid))
        # (the access log line is written once the answer went out: wait for it)
        deadline = time.monotonic() + 30
        while rid not in [l.get("id") for l in self.upstream.log_lines()
                          if l.get("msg") == "request"]:
            self.assertLess(time.monotonic(), deadline, "the upstream never logged " + rid)
            time.sleep(0.05)

    def test_sse_live_resumed_and_ended(self):
        r = self.task([{"log": "before the prompt"}, {"wait_prompt": True}, {"log": "after it"}])
        self.assertEqual(r.status, 201, r)
        sid = r.json()["id"]
        # Live, not buffered: the first log arrives while the session still waits for a prompt.
        status, first = sse_events(self.server, sid, stop_after=lambda evs: any(
            e.get("message") == "before the prompt" for e in evs))
        self.assertEqual(status, 200)
        self.assertEqual(self.server.get("/api/v1/sessions/%s" % sid).json()["status"], "running")
        last = first[-1]["seq"]
        self.assertEqual([e["seq"] for e in first], list(range(1, last + 1)))
        p = self.server.post("/api/v1/sessions/%s/prompt" % sid, {"prompt": "go on"})
        self.assertEqual(p.status, 202, p)
        # Resumed with Last-Event-ID: the rest, from the next seq, to the end.
        status, rest = sse_events(self.server, sid, last_id=last)
        self.assertEqual(status, 200)
        self.assertEqual(rest[0]["seq"], last + 1)
        seqs = [e["seq"] for e in first + rest]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
        self.assertTrue(any(e.get("message") == "after it" for e in rest))
        self.assertEqual(rest[-1]["type"], "status")
        total = self.server.get("/api/v1/sessions/%s/events?perPage=1" % sid).json()["total"]
        self.assertEqual(len(seqs), total)
        # Everything seen: the upstream's 204 passes through.
        status, none = sse_events(self.server, sid, last_id=seqs[-1])
        self.assertEqual((status, none), (204, []))


class ConfiguredKey(unittest.TestCase):
    """--remote-api-key-file: the proxy signs in to an access point that requires credentials,
    for requests that bring none; a request with its own credential keeps it."""

    def test_configured_key(self):
        upstream = ahtest.Server()
        tmp = tempfile.mkdtemp(prefix="ah-proxy-key-")
        servers = [upstream]
        try:
            p = subprocess.run([ahtest.AH_BIN, "admin", "api-key", "create", "--role", "operator",
                                "--tenant", "default", "--db", upstream.db, "--json"],
                               capture_output=True, text=True, timeout=30, env=upstream.env())
            self.assertEqual(p.returncode, 0, p.stderr)
            key = json.loads(p.stdout)["key"]
            keyfile = os.path.join(tmp, "key")
            with open(keyfile, "w") as f:
                f.write(key + "\n")
            url = "http://127.0.0.1:%d" % upstream.port
            deadline = time.monotonic() + 30  # the server notices an offline key within a second
            while upstream.get("/api/v1/sessions", record_it=False).status != 401:
                self.assertLess(time.monotonic(), deadline, "the access point never required a key")
                time.sleep(0.05)
            with_key = proxy(url, "--remote-api-key-file", keyfile)
            without = proxy(url)
            servers += [with_key, without]
            r = with_key.get("/api/v1/sessions")
            self.assertEqual(r.status, 200, r)
            r = with_key.post("/api/v1/tasks", {
                "prompt": "signed in by the proxy", "repo": {"mode": "none"},
                "runtime": {"type": "local"},
                "agents": [{"type": "scripted", "settings": {"scenario": [{"log": "x"}]}}]})
            self.assertEqual(r.status, 201, r)
            # the browser's own (wrong) key is not replaced by the configured one
            r = with_key.get("/api/v1/sessions", headers={"Authorization": "ApiKey ahk_0_0"})
            self.assertEqual(r.status, 401, r)
            # without a configured key the access point's 401 reaches the browser (sign-in page)
            r = without.get("/api/v1/sessions")
            self.assertEqual(r.status, 401, r)
            self.assertEqual(r.header("www-authenticate"), "ApiKey, Bearer")
            # the key never appears in the proxy's log
            self.assertNotIn(key.split("_")[2], with_key.stderr())
            # refused: an address others can reach, and an unusable file
            for args, code, want in [(["--bind", "0.0.0.0", "--remote-api-key-file", keyfile], 8,
                                      "refusing to serve 0.0.0.0"),
                                     (["--remote-api-key-file", os.path.join(tmp, "none")], 2,
                                      "cannot read"),
                                     (["--remote-api-key-file", "/dev/null"], 2, "one API key")]:
                p = subprocess.run([ahtest.AH_BIN, "webui", "--port", "0", "--remote-server", url]
                                   + args, capture_output=True, text=True, timeout=30,
                                   stdin=subprocess.DEVNULL, env=upstream.env())
                self.assertEqual(p.returncode, code, (args, p.stderr))
                self.assertIn(want, p.stderr)
        finally:
            for s in reversed(servers):
                s.close()
            shutil.rmtree(tmp, ignore_errors=True)


class FixedPort(ahtest.Server):
    """An `ah` on a port chosen beforehand (the provider and the access point must know it)."""

    def __init__(self, port, **kw):
        self.fixed_port = port
        super().__init__(**kw)

    def start(self, wait_ready=True, port=0):
        return super().start(wait_ready=wait_ready, port=port or self.fixed_port)


@unittest.skipUnless(oidc_harness.available(), "glewlwyd is not installed (scripts/deps.sh)")
class ProxySignIn(unittest.TestCase):
    """The proxy's own sign-in (issue 14 item 5): people sign in at the proxy through a real
    glewlwyd; the remote access point, which requires credentials and trusts the proxy's key
    set (fetched from the proxy's /_ah/jwks.json), sees each request as that person, with
    their tenant and role, in a 60 s JWT the proxy signed. Without a sign-in: 401."""

    USERS = {"alice": ("pw-alice-1", "acme", "operator"),
             "vic": ("pw-vic-1", "acme", "viewer"),
             "root": ("pw-root-1", "acme", "admin")}

    @classmethod
    def setUpClass(cls):
        cls.port, up_port = ahtest.free_port(), ahtest.free_port()
        base, cls.remote = "http://127.0.0.1:%d" % cls.port, "http://127.0.0.1:%d" % up_port
        cls.idp = oidc_harness.Glewlwyd([base + "/api/v1/auth/oidc/callback"])
        cls.servers = []
        try:
            for name, (pw, tenant, roles) in cls.USERS.items():
                cls.idp.add_user(name, pw, tenant=tenant, roles=roles)
            # the proxy first: the access point reads its key set when it starts
            cls.server = FixedPort(cls.port, command=("webui",), args=(
                "--remote-server", cls.remote + "/", "--remote-jwt-issuer", "harbor-ui",
                "--oidc-issuer", cls.idp.issuer, "--oidc-client-id", cls.idp.client_id,
                "--oidc-client-secret-file", cls.idp.client_secret_file,
                "--oidc-redirect-uri", base + "/api/v1/auth/oidc/callback",
                "--oidc-claim-user", "name"), wait_ready=False)
            cls.servers.append(cls.server)
            cls.upstream = FixedPort(up_port, args=(
                "--jwks", base + "/_ah/jwks.json", "--jwt-issuer", "harbor-ui",
                "--jwt-audience", cls.remote))
            cls.servers.append(cls.upstream)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            for s in reversed(cls.servers):
                if s is getattr(cls, "upstream", None):
                    s.kill_sessions()  # the one left waiting for a prompt
                s.close()
        finally:
            cls.idp.close()

    def sign_in(self, user):
        b = test_auth_oidc.Browser(self.server)
        deadline = time.monotonic() + 60
        while True:  # 503 until the proxy has read the provider's discovery document
            r = b.request("GET", "/api/v1/auth/oidc/login?returnTo=%2F")
            if r.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(r.status, 302, r)
        back = self.idp.authorize(self.idp.sign_in(user, self.USERS[user][0]), r.header("location"))
        r = b.request("GET", test_auth_oidc.path_of(back))
        self.assertEqual(r.status, 303, r)
        info = b.wait_session()
        self.assertEqual(info["status"], "active", info)
        b.csrf = info["csrfToken"]
        return b

    def task(self, b, csrf=True):
        body = {"prompt": "via the proxy's sign-in", "repo": {"mode": "none"},
                "runtime": {"type": "local"},
                "agents": [{"type": "scripted", "settings": {"scenario": [{"log": "hi"}]}}]}
        return b.request("POST", "/api/v1/tasks", body,
                         headers={"X-CSRF-Token": b.csrf} if csrf else {})

    def test_without_sign_in_401(self):
        # the access point itself requires credentials
        self.assertEqual(self.upstream.get("/api/v1/sessions", record_it=False).status, 401)
        r = self.server.get("/api/v1/sessions", record_it=False)
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.header("content-type"), "application/problem+json")
        # a credential meant for the access point does not pass the proxy's door either
        r = self.server.get("/api/v1/sessions", headers={"Authorization": "ApiKey ahk_0_0"},
                            record_it=False)
        self.assertEqual(r.status, 401, r)
        # the public routes pass, as they are upstream; the key set is served
        r = self.server.get("/api/v1/version", record_it=False)
        self.assertEqual(r.status, 200, r)
        r = self.server.get("/_ah/jwks.json", record_it=False)  # the proxy's own, not the API's
        self.assertEqual(r.status, 200, r)
        keys = r.json()["keys"]
        self.assertEqual([(k["kty"], k["crv"], k["alg"]) for k in keys], [("EC", "P-256", "ES256")])
        self.assertNotIn("d", keys[0])
        info = self.server.get("/api/v1/auth/session", record_it=False).json()
        self.assertEqual(info["status"], "none", info)

    def test_signed_in_acts_as_that_person(self):
        alice = self.sign_in("alice")
        r = alice.request("GET", "/api/v1/sessions")
        self.assertEqual(r.status, 200, r)
        r = self.task(alice, csrf=False)  # the proxy's own CSRF rule (D36)
        self.assertEqual(r.status, 403, r)
        r = self.task(alice)
        self.assertEqual(r.status, 201, r)
        sid = r.json()["id"]
        # an operator cannot read the audit trail upstream (admin only there, D22)
        r = alice.request("GET", "/api/v1/audit")
        self.assertEqual(r.status, 403, r)
        self.assertIn("operator", r.json()["detail"])
        # an admin can: the access point recorded the task as made by Alice of acme, through a
        # token (the proxy's sign-in named her)
        root = self.sign_in("root")
        r = root.request("GET", "/api/v1/audit?actor=jwt:Alice&perPage=100")
        self.assertEqual(r.status, 200, r)
        made = [e for e in r.json()["items"] if e["action"] == "POST /api/v1/tasks"]
        self.assertEqual(len(made), 1, r.json())
        self.assertEqual((made[0]["tenantId"], made[0]["credentialId"]), ("acme", "Alice"))
        # the session's events stream through the proxy as Alice
        status, events = sse_events(self.server, sid, headers={
            "Cookie": "ah_session=" + alice.cookies["ah_session"]})
        self.assertEqual(status, 200)
        self.assertEqual(events[-1]["type"], "status")
        # a viewer reads but does not launch
        vic = self.sign_in("vic")
        self.assertEqual(vic.request("GET", "/api/v1/sessions/%s" % sid).status, 200)
        r = self.task(vic)
        self.assertEqual(r.status, 403, r)
        # a live stream of a session that waits for a prompt, open while Alice signs out
        body = {"prompt": "wait", "repo": {"mode": "none"}, "runtime": {"type": "local"},
                "agents": [{"type": "scripted", "settings": {"scenario": [
                    {"log": "waiting"}, {"wait_prompt": True}]}}]}
        r = alice.request("POST", "/api/v1/tasks", body, headers={"X-CSRF-Token": alice.csrf})
        self.assertEqual(r.status, 201, r)
        waiting = r.json()["id"]
        c = self.server.connect(60)
        c.request("GET", "/api/v1/sessions/%s/events" % waiting, headers={
            "Accept": "text/event-stream", "Cookie": "ah_session=" + alice.cookies["ah_session"]})
        live = c.getresponse()
        self.assertEqual(live.status, 200)
        while b"waiting" not in live.readline():
            pass
        # signed out: 401 again, and the open stream ends (not only at the token's expiry)
        r = alice.request("POST", "/api/v1/auth/logout", headers={"X-CSRF-Token": alice.csrf})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(alice.request("GET", "/api/v1/sessions").status, 401)
        started = time.monotonic()
        while live.readline():  # keep-alives at most, then the end
            self.assertLess(time.monotonic() - started, 30, "the stream outlived the sign-out")
        c.close()

    def test_key_and_sign_in_exclude_each_other(self):
        d = tempfile.mkdtemp(prefix="ah-proxy-both-")
        try:
            keyfile = os.path.join(d, "key")
            with open(keyfile, "w") as f:
                f.write("ahk_a_b\n")
            p = subprocess.run([ahtest.AH_BIN, "webui", "--port", "0", "--remote-server",
                                self.remote, "--remote-api-key-file", keyfile, "--oidc-issuer",
                                self.idp.issuer, "--oidc-client-id", "x"],
                               capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL, env=self.server.env())
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("exclude each other", p.stderr)
        finally:
            shutil.rmtree(d, ignore_errors=True)


class Sink(http.server.BaseHTTPRequestHandler):
    """Reads a request body piece by piece (Content-Length or chunked), `delay` seconds after each
    64 KiB, and answers its size and SHA-256 and when its first byte arrived."""
    protocol_version = "HTTP/1.1"
    delay = 0.0
    seen = []

    def pieces(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return
                left = size
                while left:
                    b = self.rfile.read(min(left, 65536))
                    if not b:
                        raise ConnectionError("cut off")
                    left -= len(b)
                    yield b
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            b = self.rfile.read(min(left, 65536))
            if not b:
                raise ConnectionError("cut off")
            left -= len(b)
            yield b

    def do_POST(self):
        h, n, first = hashlib.sha256(), 0, None
        try:
            for b in self.pieces():
                first = first or time.monotonic()
                h.update(b)
                n += len(b)
                if self.delay:
                    time.sleep(self.delay)
        except (ConnectionError, ValueError):
            Sink.seen.append({"path": self.path, "complete": False, "n": n})
            self.close_connection = True
            return
        Sink.seen.append({"path": self.path, "complete": True, "n": n,
                          "chunked": "Content-Length" not in self.headers})
        out = json.dumps({"n": n, "sha256": h.hexdigest(), "first": first}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_PUT = do_POST

    def log_message(self, *a):
        pass


class StreamedBodies(unittest.TestCase):
    """Request bodies go up as they arrive (issue 14 item 5), through a 256 KiB buffer, still
    under --max-body-bytes: a body several times the buffer, sent slowly, reaches the upstream
    before the client has finished; a slow upstream gets it whole; a chunked body goes up
    chunked; one over the limit is 413 and never reaches the upstream complete."""

    @classmethod
    def setUpClass(cls):
        cls.up = serve(Sink)
        cls.server = proxy("http://127.0.0.1:%d" % cls.up.server_address[1],
                           "--max-body-bytes", str(4 << 20), wait_ready=False)

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.up.shutdown()
        cls.up.server_close()

    def send(self, path, body, piece=65536, pause=0.0, chunked=False):
        """POSTs body in pieces; returns (status, answer, when the last piece went)."""
        c = self.server.connect(120)
        c.putrequest("POST", path)
        c.putheader("Content-Type", "application/octet-stream")
        if chunked:
            c.putheader("Transfer-Encoding", "chunked")
        else:
            c.putheader("Content-Length", str(len(body)))
        c.endheaders()
        for i in range(0, len(body), piece):
            b = body[i:i + piece]
            c.send(b"%x\r\n%s\r\n" % (len(b), b) if chunked else b)
            if pause:
                time.sleep(pause)
        if chunked:
            c.send(b"0\r\n\r\n")
        last = time.monotonic()
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data, last

    def test_slow_client_streamed_through(self):
        body = os.urandom(3 << 19)  # 1.5 MiB: six times the proxy's buffer
        status, data, last = self.send("/api/v1/slow-client", body, pause=0.05)
        self.assertEqual(status, 201, data)
        got = json.loads(data)
        self.assertEqual((got["n"], got["sha256"]), (len(body), hashlib.sha256(body).hexdigest()))
        # the upstream had its first bytes while the client was still sending (24 pieces, 50 ms
        # apart): the proxy did not wait for the whole body
        self.assertLess(got["first"], last - 0.5, got)

    def test_slow_upstream_and_chunked(self):
        Sink.delay = 0.01
        try:
            body = os.urandom(2 << 20)
            status, data, _ = self.send("/api/v1/slow-upstream", body, piece=1 << 20)
            self.assertEqual(status, 201, data)
            self.assertEqual(json.loads(data)["sha256"], hashlib.sha256(body).hexdigest())
        finally:
            Sink.delay = 0.0
        body = os.urandom(700000)
        status, data, _ = self.send("/api/v1/chunked", body, piece=50000, chunked=True)
        self.assertEqual(status, 201, data)
        self.assertEqual(json.loads(data)["sha256"], hashlib.sha256(body).hexdigest())
        seen = [x for x in Sink.seen if x["path"] == "/api/v1/chunked"]
        self.assertEqual([(x["complete"], x["chunked"]) for x in seen], [(True, True)])

    def test_over_the_limit_is_413(self):
        body = os.urandom(5 << 20)
        status, data, _ = self.send("/api/v1/too-big", body, piece=1 << 20, chunked=True)
        self.assertEqual(status, 413, data)
        self.assertIn("limit", json.loads(data)["detail"])
        deadline = time.monotonic() + 30  # the upstream sees the transfer end, cut off
        while not [x for x in Sink.seen if x["path"] == "/api/v1/too-big"]:
            self.assertLess(time.monotonic(), deadline, "the upstream never saw the end")
            time.sleep(0.05)
        self.assertEqual([x["complete"] for x in Sink.seen if x["path"] == "/api/v1/too-big"],
                         [False])
        # and the proxy goes on serving
        status, data, _ = self.send("/api/v1/after", b"{}")
        self.assertEqual(status, 201, data)


class StalledUpload(unittest.TestCase):
    def test_upstream_that_reads_nothing_is_504(self):
        """An upstream that takes none of a body: the client does not wait suspended for ever."""
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent.settimeout(60)
        server = proxy("http://127.0.0.1:%d" % silent.getsockname()[1], "--remote-timeout",
                       "1000", "--max-body-bytes", str(64 << 20), wait_ready=False)
        held = []
        try:
            c = server.connect(120)
            c.putrequest("POST", "/api/v1/stalled")
            c.putheader("Content-Type", "application/octet-stream")
            c.putheader("Content-Length", str(32 << 20))  # more than every buffer on the way
            c.endheaders()
            held.append(silent.accept()[0])  # the upstream connection: never read
            piece = b"x" * (1 << 20)
            try:
                for _ in range(32):
                    c.send(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered before the body was all sent
            r = c.getresponse()
            body = json.loads(r.read())
            c.close()
            self.assertEqual(r.status, 504, body)
            self.assertIn("took none of the request body", body["detail"])
        finally:
            server.close()
            for s in held:
                s.close()
            silent.close()


class AgainstTestUpstreams(unittest.TestCase):
    def test_headers_forwarded_and_dropped(self):
        up = serve(Echo)
        server = proxy("http://127.0.0.1:%d" % up.server_address[1])
        try:
            Echo.seen.clear()
            c = server.connect()
            c.putrequest("POST", "/api/v1/sessions?x=a%20b&y=%2F", skip_host=True,
                         skip_accept_encoding=True)
            for k, v in [("Host", "localhost:%d" % server.port),
                         ("Authorization", "ApiKey secret-1"),
                         ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                         ("Idempotency-Key", "6f1c2c36-0a54-4bd4-8f8e-0d6f3f6c0a11"),
                         ("X-Request-Id", ULID), ("Last-Event-ID", "7"),
                         ("Cookie", "ui=1"), ("Connection", "X-Hop"), ("X-Hop", "drop me"),
                         ("Keep-Alive", "timeout=9"), ("Origin", "http://localhost:%d" % server.port),
                         ("Content-Type", "application/json"), ("Content-Length", "9")]:
                c.putheader(k, v)
            c.endheaders(b'{"a": 1}\n')
            r = c.getresponse()
            body = r.read()
            c.close()
            self.assertEqual(r.status, 201, body)
            self.assertEqual(r.getheader("X-Upstream"), "kept")
            self.assertEqual(r.getheader("ETag"), '"v1"')
            self.assertIsNone(r.getheader("Keep-Alive"))
            self.assertIsNone(r.getheader("Access-Control-Allow-Origin"))
            self.assertEqual(r.getheader("X-Request-Id"), ULID)
            got = [s for s in Echo.seen if s["path"].startswith("/api/v1/sessions")][-1]
            h = dict(got["headers"])
            self.assertEqual(got["method"], "POST")
            self.assertEqual(got["path"], "/api/v1/sessions?x=a%20b&y=%2F")
            self.assertEqual(got["body"], '{"a": 1}\n')
            for k, v in [("authorization", "ApiKey secret-1"),
                         ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                         ("idempotency-key", "6f1c2c36-0a54-4bd4-8f8e-0d6f3f6c0a11"),
                         ("x-request-id", ULID), ("last-event-id", "7"),
                         ("content-type", "application/json")]:
                self.assertEqual(h.get(k), v, (k, got["headers"]))
            for k in ("cookie", "x-hop", "keep-alive", "origin"):
                self.assertNotIn(k, h, got["headers"])
            self.assertEqual(h["host"], "127.0.0.1:%d" % up.server_address[1])
            self.assertEqual([v for k, v in got["headers"] if k == "x-request-id"], [ULID])
        finally:
            server.close()
            up.shutdown()
            up.server_close()

    def test_upstream_down_is_502(self):
        server = proxy("http://127.0.0.1:%d" % ahtest.free_port(), wait_ready=False)
        try:
            r = server.get("/api/v1/sessions", record_it=False)
            self.assertEqual(r.status, 502, r)
            body = r.json()
            self.assertEqual((body["status"], body["title"]), (502, "Network Error"))
            self.assertIn("cannot be reached", body["detail"])
            self.assertEqual(r.header("x-request-id"), body["requestId"])
            # the UI itself is still served, and the proxy's own health answered here
            self.assertEqual(server.request("GET", "/", record_it=False).status, 200)
            self.assertEqual(server.get("/_ah/healthz").json()["status"], "ready")
        finally:
            server.close()

    def test_upstream_silent_is_504(self):
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        held = []
        stop = threading.Event()

        def accept():
            silent.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(silent.accept()[0])  # reads nothing, answers nothing
                except OSError:
                    pass
        t = threading.Thread(target=accept, daemon=True)
        t.start()
        server = proxy("http://127.0.0.1:%d" % silent.getsockname()[1], "--remote-timeout", "300",
                       wait_ready=False)
        try:
            r = server.get("/api/v1/sessions", record_it=False)
            self.assertEqual(r.status, 504, r)
            self.assertEqual(r.json()["title"], "Timed Out")
            self.assertIn("did not answer within 300 ms", r.json()["detail"])
        finally:
            server.close()
            stop.set()
            t.join()
            for s in held:
                s.close()
            silent.close()

    def test_tls_verified_with_remote_ca(self):
        d = tempfile.mkdtemp(prefix="ah-proxy-tls-")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        up = serve(Echo, ctx)
        url = "https://127.0.0.1:%d" % up.server_address[1]
        untrusted = proxy(url, wait_ready=False)
        trusted = proxy(url, "--remote-ca", cert, wait_ready=False)
        try:
            r = untrusted.get("/api/v1/version", record_it=False)
            self.assertEqual(r.status, 502, r)
            self.assertIn("certificate", r.json()["detail"].lower())
            r = trusted.get("/api/v1/version", record_it=False)
            self.assertEqual((r.status, r.json()), (200, {"ok": True}), r)
        finally:
            untrusted.close()
            trusted.close()
            up.shutdown()
            up.server_close()

    def test_bad_options(self):
        for args, want in [(["--remote-server", "ftp://x"], "http:// or https://"),
                           (["--remote-server"], "needs a value"),
                           (["--remote-ca", "/x.pem"], "need --remote-server"),
                           (["--remote-server", "http://x", "--remote-timeout", "0"], "milliseconds")]:
            p = subprocess.run([ahtest.AH_BIN, "webui", "--port", "0"] + args, capture_output=True,
                               text=True, timeout=30, stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertIn(want, p.stderr)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)


if __name__ == "__main__":
    ahtest.main()
