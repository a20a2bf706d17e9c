"""The HTTP front door against clients nobody on the team wrote (issue 10 items 4, 10, 12, 13,
24–28): raw byte sequences on a socket, with the status line, the Problem+JSON body and the
close checked; idle and garbage connections closed; departed subscribers released at once;
the D27 host/origin guard; a shutdown that ends with stuck requests."""

import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import tempfile
import time
import unittest

import ahtest
from ahtest import Server, ServerTest
from sessiontest import create, task, wait_status


def raw(port, data, timeout=10, host="127.0.0.1"):
    """Sends data and reads until the server closes (True) or goes quiet for `timeout` (False).
    Returns (bytes, closed)."""
    s = socket.create_connection((host, port), timeout=timeout)
    out, closed = b"", False
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not b:
                closed = True
                break
            out += b
    finally:
        s.close()
    return out, closed


def parse(out):
    """(status, headers dict lower-case, body) of the first response in out."""
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    n = int(headers.get("content-length", ["0"])[0])
    return status, headers, body[:n]


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def socket_inodes(pid):
    """The sockets process pid holds open ("socket:[inode]"), but for Unix sockets with a path
    (an agent's recorder connecting to the server's socket is no HTTP client)."""
    named = set()
    with open("/proc/%d/net/unix" % pid) as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if len(cols) >= 8:
                named.add("socket:[%s]" % cols[6])
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:") and target not in named:
            out.add(target)
    return out


class FrontCase(unittest.TestCase):
    def assertRawProblem(self, out, closed, status):
        """One answer, a problem with `status`, and the connection closed after it."""
        self.assertTrue(out.startswith(b"HTTP/1.1 %d " % status), out[:300])
        st, headers, body = parse(out)
        end = out.index(b"\r\n\r\n") + 4 + len(body)
        self.assertEqual(out[end:], b"", "a second response was served: %r" % out)
        self.assertTrue(closed, "the connection was left open: %r" % out[:300])
        self.assertEqual(headers["content-type"], ["application/problem+json"], out[:300])
        doc = json.loads(body)
        self.assertEqual(doc["status"], status)
        self.assertTrue(doc["type"].startswith("/problems/"))
        self.assertTrue(doc["detail"])
        self.assertEqual(doc["requestId"], headers["x-request-id"][0])
        return doc


class ErrorsAreProblems(ServerTest, FrontCase):
    """Item 10: libmicrohttpd's own answers (HTML) and paths it would mangle."""

    def test_errors_libmicrohttpd_made_are_problems(self):
        cases = [
            (b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
             b"\r\nContent-Length: 1x\r\n\r\n{}", 400),
            (b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
             b"\r\nContent-Length: 99999999999999999999999\r\n\r\n{}", 413),
            (b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 9000 +
             b"\r\n\r\n", 431),
            (b"GET /api/v1/healthz?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414),
            (b"GET /api/v1/healthz HTTP/9.9\r\nHost: localhost\r\n\r\n", 505),
            (b"GET /api/v1/healthz?" + b"&".join(b"a%d=%s" % (i, b"v" * 100) for i in range(60))
             + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 431),
        ]
        for data, status in cases:
            out, closed = raw(self.server.port, data)
            self.assertRawProblem(out, closed, status)
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)

    def test_invalid_utf8_and_nul_in_path(self):
        out, closed = raw(self.server.port, b"GET /api/v1/drafts/%FF%FE HTTP/1.1\r\n"
                                            b"Host: localhost\r\n\r\n")
        doc = self.assertRawProblem(out, closed, 400)
        # the instance is the path as sent (decoded, it is not UTF-8 and could not be shown)
        self.assertEqual(doc.get("instance"), "/api/v1/drafts/%FF%FE")
        # the id would be cut at the NUL and the session found
        sid = create(self.server, task([{"log": "x"}]))["id"]
        wait_status(self.server, sid, "completed")
        out, closed = raw(self.server.port, b"GET /api/v1/sessions/%s%%00.json HTTP/1.1\r\n"
                                            b"Host: localhost\r\n\r\n" % sid.encode())
        doc = self.assertRawProblem(out, closed, 400)
        self.assertIn("%00", doc["detail"])
        self.assertEqual(doc.get("instance"), "/api/v1/sessions/%s%%00.json" % sid)
        self.assertEqual(self.server.get("/api/v1/sessions/" + sid).status, 200)

    def test_kept_alive_connection_gets_the_same_checks(self):
        """The gate checks a connection's first request from its bytes; later ones on the same
        connection are checked from libmicrohttpd's header list."""
        first = b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        for bad, status in [
                (b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/"
                 b"json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}", 400),
                (b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nHost: b\r\n\r\n", 400),
                (b"GET /api/v1/drafts/%FF HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
                (b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/"
                 b"json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501)]:
            out, closed = raw(self.server.port, first + bad +
                              b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:200])
            second = out[out.index(b"HTTP/1.1 ", 10):]
            self.assertRawProblem(second, closed, status)


def read_response(s, head_only=False):
    """Reads exactly one response (Content-Length or chunked body) from socket s; returns
    (status, headers, body). The bytes after it are left on the socket."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(1)  # byte by byte: nothing after the head may be consumed
        if not b:
            raise AssertionError("closed before a full response head: %r" % buf)
        buf += b
    status, headers, _ = parse(buf)

    def exactly(n):
        out = b""
        while len(out) < n:
            b = s.recv(min(65536, n - len(out)))
            if not b:
                raise AssertionError("closed inside a body")
            out += b
        return out

    def line():
        out = b""
        while not out.endswith(b"\r\n"):
            b = s.recv(1)
            if not b:
                raise AssertionError("closed inside a chunked body")
            out += b
        return out[:-2]
    if head_only or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    if "chunked" in ",".join(headers.get("transfer-encoding", [])):
        body = b""
        while True:
            size = int(line().split(b";")[0], 16)
            if not size:
                while line():
                    pass
                return status, headers, body
            body += exactly(size)
            line()
    return status, headers, exactly(int(headers.get("content-length", ["0"])[0]))


def read_to_close(s, timeout=15):
    """Everything until the server closes; (bytes, closed)."""
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return out, True
            out += b
    except socket.timeout:
        return out, False
    except ConnectionResetError:
        return out, True


GOOD = b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
POST_HEAD = (b"POST /api/v1/drafts HTTP/1.1\r\nHost: localhost\r\n"
             b"Content-Type: application/json\r\n")

# Hostile framings libmicrohttpd would parse itself (and answer in HTML, hang on, or split into
# two requests), each with the status and problem type the front door answers.
HOSTILE = [
    ("malformed Content-Length", POST_HEAD + b"Content-Length: 1x\r\n\r\n{}",
     400, "bad-request"),
    ("huge Content-Length", POST_HEAD + b"Content-Length: 99999999999999999999999\r\n\r\n{}",
     413, "payload-too-large"),
    ("two Content-Lengths", POST_HEAD + b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
     400, "bad-request"),
    ("space before the colon", POST_HEAD + b"Content-Length : 2\r\n\r\n{}", 400, "bad-request"),
    ("headers over 8 KiB", b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " +
     b"a" * 9000 + b"\r\n\r\n", 431, "request-header-fields-too-large"),
    ("request line over 8 KiB", b"GET /api/v1/healthz?" + b"a" * 9000 +
     b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414, "uri-too-long"),
    ("bad request line", b"GET /api/v1/healthz\r\nHost: localhost\r\n\r\n", 400, "bad-request"),
    ("unknown HTTP version", b"GET /api/v1/healthz HTTP/9.9\r\nHost: localhost\r\n\r\n",
     505, "http-version-not-supported"),
    ("too many query parameters", ("GET /api/v1/sessions?%s HTTP/1.1\r\nHost: localhost\r\n\r\n"
                                   % "&".join("p%d=1" % i for i in range(112))).encode(),
     400, "bad-request"),
    ("query over the memory pool", b"GET /api/v1/healthz?" + b"&".join(
        b"a%d=%s" % (i, b"v" * 100) for i in range(60)) + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
     431, "request-header-fields-too-large"),
    ("Transfer-Encoding identity", POST_HEAD + b"Transfer-Encoding: identity\r\n\r\n{}",
     400, "bad-request"),
    ("Transfer-Encoding gzip, chunked", POST_HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
     b"0\r\n\r\n", 501, "not-implemented"),
    ("Transfer-Encoding and Content-Length", POST_HEAD + b"Transfer-Encoding: chunked\r\n"
     b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400, "bad-request"),
    ("obsolete line folding", b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n"
     b" c\r\n\r\n", 400, "bad-request"),
    ("no Host", b"GET /api/v1/healthz HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, "bad-request"),
    ("chunk size 2^64-1", POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n"
     b"{}\r\n0\r\n\r\n", 400, "bad-request"),
    ("chunk over the body limit", POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n7fffffff\r\n"
     b"{}", 413, "payload-too-large"),
    ("a TLS ClientHello", bytes.fromhex("16030100f4010000f00303") + b"\x00" * 40,
     400, "bad-request"),
]


class KeptAliveConnections(ServerTest, FrontCase):
    """Item 10 on every request of a connection: a request sent after the previous answer
    arrived (not pipelined) is checked like a first one, so libmicrohttpd's own HTML answers and
    hangs are never reached on a kept-alive connection either."""

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.server.port), timeout=15)

    def assertProblemType(self, out, closed, status, slug, what):
        doc = self.assertRawProblem(out, closed, status)
        self.assertEqual(doc["type"], "/problems/" + slug, what)
        self.assertTrue(doc["title"], what)
        return doc

    def test_later_requests_get_problems(self):
        for what, bad, status, slug in HOSTILE:
            with self.subTest(what):
                s = self.connect()
                try:
                    for _ in range(2):  # the connection is kept alive and really used
                        s.sendall(GOOD)
                        st, headers, body = read_response(s)
                        self.assertEqual(st, 200, what)
                        self.assertEqual(json.loads(body)["status"], "ok")
                    s.sendall(bad)
                    out, closed = read_to_close(s)
                    self.assertProblemType(out, closed, status, slug, what)
                finally:
                    s.close()
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)

    def test_later_requests_after_a_body_get_problems(self):
        """The body of the request before (Content-Length or chunked) is followed to find where
        the hostile one starts."""
        body = json.dumps({"prompt": "p" * 3000}).encode()
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 700]), body[i:i + 700])
                           for i in range(0, len(body), 700)) + b"0\r\n\r\n"
        for first in (POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body,
                      POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked):
            for what, bad, status, slug in HOSTILE[:4] + HOSTILE[-3:]:
                with self.subTest(what):
                    s = self.connect()
                    try:
                        s.sendall(first)
                        st, _, got = read_response(s)
                        self.assertEqual(st, 201, got)
                        self.assertEqual(json.loads(got)["prompt"], "p" * 3000)
                        s.sendall(bad)
                        out, closed = read_to_close(s)
                        self.assertProblemType(out, closed, status, slug, what)
                    finally:
                        s.close()

    def test_pipelined_hostile_requests(self):
        """Sent in one go behind good requests: the good ones are answered in order, then the
        problem, then the close; what follows the hostile request is never served."""
        for what, bad, status, slug in HOSTILE:
            with self.subTest(what):
                s = self.connect()
                try:
                    s.sendall(GOOD + GOOD + bad + GOOD)
                    for _ in range(2):
                        st, _, _ = read_response(s)
                        self.assertEqual(st, 200, what)
                    out, closed = read_to_close(s)
                    self.assertProblemType(out, closed, status, slug, what)
                finally:
                    s.close()

    def test_idle_in_a_later_request_head(self):
        """A later request whose head stops coming gets the 408 problem too."""
        srv = Server(args=("--idle-timeout-ms", "1000"))
        try:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
            s.sendall(GOOD)
            self.assertEqual(read_response(s)[0], 200)
            s.sendall(b"GET /api/v1/healthz HTTP/1.1\r\nHost: loc")
            out, closed = read_to_close(s, timeout=20)
            s.close()
            self.assertProblemType(out, closed, 408, "request-timeout", "idle head")
        finally:
            srv.close()

    def test_many_requests_on_one_connection(self):
        c = self.server.connect()
        try:
            for i in range(300):
                r = self.server.get("/api/v1/healthz", conn=c, record_it=False)
                self.assertEqual(r.status, 200)
                if i == 0:
                    sock = c.sock
                self.assertIs(c.sock, sock, "the connection was not kept alive")
            # bodies in both framings between them
            body = json.dumps({"prompt": "kept"})
            for i in range(50):
                c.request("POST", "/api/v1/drafts", body=iter([body.encode()]) if i % 2 else body,
                          headers={"Content-Type": "application/json"},
                          encode_chunked=bool(i % 2))
                r = c.getresponse()
                self.assertEqual(r.status, 201)
                self.assertEqual(json.loads(r.read())["prompt"], "kept")
                self.assertIs(c.sock, sock)
        finally:
            c.close()

    def test_pipelined_good_requests_are_answered_in_order(self):
        s = self.connect()
        try:
            reqs = []
            for i in range(40):
                if i % 3 == 0:
                    b = json.dumps({"prompt": "n%d" % i}).encode()
                    reqs.append((POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(b) + b, i))
                elif i % 3 == 1:
                    b = json.dumps({"prompt": "n%d" % i}).encode()
                    reqs.append((POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n"
                                 b"0\r\n\r\n" % (len(b), b), i))
                else:
                    reqs.append((GOOD, i))
            s.sendall(b"".join(r for r, _ in reqs))
            for _, i in reqs:
                st, _, body = read_response(s)
                if i % 3 == 2:
                    self.assertEqual(st, 200)
                else:
                    self.assertEqual((st, json.loads(body)["prompt"]), (201, "n%d" % i))
        finally:
            s.close()


class BigBodies(ServerTest, FrontCase):
    """Large uploads and downloads cross the front door byte for byte, with Content-Length and
    chunked framing, on one kept-alive connection."""
    server_args = ("--max-body-bytes", "16777216")

    def test_upload_and_download_are_byte_exact(self):
        import random
        rnd = random.Random(7)
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 \n"
        content = "".join(rnd.choice(alphabet) for _ in range(3 * 1024 * 1024 + 17))
        c = self.server.connect(timeout=60)
        try:
            sids = []
            for chunked in (False, True):
                body = json.dumps(task([{"edit": "big.txt", "content": content}])).encode()
                if chunked:
                    parts = iter([body[i:i + 100003] for i in range(0, len(body), 100003)])
                    c.request("POST", "/api/v1/tasks", body=parts, encode_chunked=True,
                              headers={"Content-Type": "application/json"})
                else:
                    c.request("POST", "/api/v1/tasks", body=body,
                              headers={"Content-Type": "application/json"})
                r = c.getresponse()
                got = r.read()
                self.assertEqual(r.status, 201, got[:300])
                sids.append(json.loads(got)["id"])
                sock = c.sock
            for sid in sids:
                wait_status(self.server, sid, "completed")
                for _ in range(2):
                    c.request("GET", "/api/v1/sessions/%s/files/big.txt/content" % sid)
                    r = c.getresponse()
                    data = r.read()
                    self.assertEqual(r.status, 200, data[:300])
                    self.assertTrue(json.loads(data)["content"] == content,
                                    "the download differs from the upload")
                    self.assertIs(c.sock, sock)
        finally:
            c.close()


class OneCacheControl(ServerTest, FrontCase):
    """Item 4: no header twice (Set-Cookie and Vary aside), on a sample of routes and streams."""
    server_args = ("--cors-origins", "http://ui.example")

    def test_no_duplicated_headers(self):
        sid = create(self.server, task([{"log": "x"}]))["id"]
        wait_status(self.server, sid, "completed")
        targets = [("GET", "/api/v1/healthz", {}), ("GET", "/api/v1/sessions", {}),
                   ("GET", "/api/v1/sessions/" + sid, {}), ("GET", "/api/v1/nowhere", {}),
                   ("POST", "/api/v1/healthz", {}), ("GET", "/api/v1/openapi.json", {}),
                   ("OPTIONS", "/api/v1/tasks", {"Origin": "http://ui.example",
                                                 "Access-Control-Request-Method": "POST"}),
                   ("GET", "/api/v1/sessions/%s/events" % sid,
                    {"Accept": "text/event-stream", "Cache-Control": "no-cache",
                     "Origin": "http://ui.example"}),
                   ("GET", "/api/v1/sessions/%s/events?tail=1" % sid,
                    {"Accept": "text/event-stream"})]
        for method, path, headers in targets:
            head = "".join("%s: %s\r\n" % kv for kv in headers.items())
            out, _ = raw(self.server.port, ("%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: "
                                            "close\r\n%s\r\n" % (method, path, head)).encode())
            status, hdrs, _ = parse(out)
            for name, values in hdrs.items():
                if name not in ("set-cookie", "vary"):
                    self.assertEqual(len(values), 1, "%s %s → %d: %s twice: %r"
                                     % (method, path, status, name, values))
            if "events" in path and status == 200:
                self.assertEqual(hdrs["cache-control"], ["no-cache"])


class LiveStreams(ServerTest, FrontCase):
    """Items 24 and 28 on a session that keeps running."""
    server_args = ("--sse-keepalive-ms", "15000")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sid = create(cls.server, task([{"log": "started"}, {"sleep": 600000}]))["id"]
        wait_status(cls.server, cls.sid, "running")

    def open_stream(self):
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        s.sendall(("GET /api/v1/sessions/%s/events HTTP/1.1\r\nHost: localhost\r\n"
                   "Accept: text/event-stream\r\n\r\n" % self.sid).encode())
        return s

    def test_departed_subscribers_are_released_at_once(self):
        """Item 24: every socket a subscriber cost the server (the client's, and both ends of the
        gate's socketpair to libmicrohttpd) is closed soon after it hangs up, long before the
        15 s keep-alive or the 60 s stream timeout would notice — counted exactly, by socket
        inode, so a single straggler fails. Nothing else touches the server while it is
        watched: the regression was the last subscribers of a crowd that left at once, closed by
        libmicrohttpd but released only when something else woke its worker thread. A lone
        subscriber on a quiet server is that last one every time: it failed deterministically
        before the fix; the crowds are the scenario the issue saw."""
        pid = self.server.proc.pid
        for rnd, n in enumerate((1, 1, 150, 150)):
            before = socket_inodes(pid)
            socks = [self.open_stream() for _ in range(n)]
            for s in socks:  # every stream is open (headers and the retry hint arrived)
                got = b""
                while b"retry:" not in got:
                    chunk = s.recv(4096)
                    self.assertTrue(chunk, "stream closed early")
                    got += chunk
            held = socket_inodes(pid) - before
            self.assertGreaterEqual(len(held), 3 * len(socks))
            for i, s in enumerate(socks):  # all at once: half with a FIN, half with a reset
                if (i + rnd) % 2:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and held & socket_inodes(pid):
                time.sleep(0.05)
            left = held & socket_inodes(pid)
            self.assertFalse(left, "round %d: %d of the departed subscribers' %d sockets are "
                             "still open" % (rnd, len(left), len(held)))
        # their memory went with them: no stream is attached any more
        m = re.search(r"^ah_http_streams_open (\d+)", self.server.get("/metrics").body.decode(),
                      re.M)
        self.assertIsNotNone(m)
        self.assertEqual(int(m.group(1)), 0)
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)

    def test_head_on_streams_sends_headers_only(self):
        paths = ["/api/v1/sessions/%s/events" % self.sid, "/api/v1/sessions/%s/pty" % self.sid]
        for path in paths:
            out, closed = raw(self.server.port, ("HEAD %s HTTP/1.1\r\nHost: localhost\r\n"
                                                 "Accept: text/event-stream\r\nConnection: close"
                                                 "\r\n\r\n" % path).encode(), timeout=10)
            self.assertTrue(closed, out)
            self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out)
            head, sep, rest = out.partition(b"\r\n\r\n")
            self.assertEqual(sep, b"\r\n\r\n")
            self.assertEqual(rest, b"", "HEAD sent body bytes: %r" % rest)
            self.assertIn(b"text/event-stream", head)
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)


class DepartedBeforeSuspending(ServerTest, FrontCase):
    """Item 24 regression, made deterministic with a hold point: the client leaves while its
    stream, woken for a keep-alive, is between that write and suspending again (a worker thread
    preempted there, as under load). The stream then ends on libmicrohttpd's ready list, not in
    its timeout pass, and a connection once suspended is in no epoll set: its socket stayed open
    until something else woke that worker thread (here: the 60 s stream timeout)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-hold-")
        cls.hold = os.path.join(cls.tmp, "hold")
        cls.server_args = ("--sse-keepalive-ms", "1000", "--http-threads", "1")
        cls.server_env = {"AH_TEST_HOOKS": "1", "AH_TEST_HOLD_AT": "stream-idle",
                          "AH_TEST_HOLD_FILE": cls.hold}
        super().setUpClass()
        cls.sid = create(cls.server, task([{"log": "started"}, {"sleep": 600000}]))["id"]
        wait_status(cls.server, cls.sid, "running")

    @classmethod
    def tearDownClass(cls):
        if os.path.exists(cls.hold):
            os.unlink(cls.hold)
        super().tearDownClass()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def wait_for(self, cond, what, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.02)
        self.fail("timed out waiting for " + what)

    def test_left_before_the_stream_suspended(self):
        pid = self.server.proc.pid
        for _ in range(2):
            before = socket_inodes(pid)
            s = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
            s.sendall(("GET /api/v1/sessions/%s/events HTTP/1.1\r\nHost: localhost\r\n"
                       "Accept: text/event-stream\r\n\r\n" % self.sid).encode())
            got = b""
            while b": keep-alive" not in got:  # it was suspended, and woken once
                chunk = s.recv(4096)
                self.assertTrue(chunk, "stream closed early")
                got += chunk
            holds = self.server.stderr().count("holding at stream-idle")
            open(self.hold, "w").close()  # the next keep-alive stops before suspending again
            self.wait_for(lambda: self.server.stderr().count("holding at stream-idle") > holds,
                          "the stream to reach its hold point")
            held = socket_inodes(pid) - before
            self.assertEqual(len(held), 3, held)  # the client's, and the socketpair's two ends
            # a reset: the gate closes the client's socket and its end of the socketpair at
            # once, which shows from outside (a FIN leaves nothing to observe)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            self.wait_for(lambda: len(held & socket_inodes(pid)) == 1, "the gate to close")
            os.unlink(self.hold)  # the stream goes on, finds its client gone and ends
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and held & socket_inodes(pid):
                time.sleep(0.05)
            self.assertFalse(held & socket_inodes(pid),
                             "the departed subscriber's connection is still open")
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)


class TenantRule(ServerTest, FrontCase):
    """Item 28: X-Tenant-ID and ?tenantId= follow one rule: either names the tenant, the same
    syntax holds for both, and a request naming two different tenants is refused."""

    def test_header_and_query_alike(self):
        d = self.server.post("/api/v1/drafts", body={"prompt": "mine"},
                             headers={"X-Tenant-ID": "t-one"}).json()
        by_header = self.server.get("/api/v1/drafts/" + d["id"], headers={"X-Tenant-ID": "t-one"})
        by_query = self.server.get("/api/v1/drafts/%s?tenantId=t-one" % d["id"])
        self.assertEqual((by_header.status, by_query.status), (200, 200))
        both = self.server.get("/api/v1/drafts/%s?tenantId=t-one" % d["id"],
                               headers={"X-Tenant-ID": "t-one"})
        self.assertEqual(both.status, 200)
        self.assertEqual(self.server.get("/api/v1/drafts/" + d["id"]).status, 404)
        # two different tenants in one request: refused, whichever way round
        for q, h in (("t-one", "t-two"), ("t-two", "t-one")):
            r = self.server.get("/api/v1/drafts/%s?tenantId=%s" % (d["id"], q),
                                headers={"X-Tenant-ID": h})
            self.assertProblem(r, 400)
            r = self.server.get("/api/v1/sessions?tenantId=%s" % q, headers={"X-Tenant-ID": h})
            self.assertProblem(r, 400)
        for bad in ("a b", "x" * 200):
            self.assertProblem(self.server.get("/api/v1/sessions",
                                               headers={"X-Tenant-ID": bad}), 400)


class HostAndOrigin(ServerTest, FrontCase):
    """Item 13 (D27): DNS rebinding and cross-origin requests while there are no credentials."""
    server_args = ("--cors-origins", "http://ui.example", "--public-url",
                   "http://Build-Box.example:3001/harbor")

    def get(self, host, path="/api/v1/healthz", method="GET", headers="", body=b""):
        data = ("%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s" % (
            method, path, host, headers)).encode()
        if body:
            data += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        out, _ = raw(self.server.port, data + b"\r\n" + body)
        return out

    def test_host_must_be_loopback_or_public_url(self):
        for host in ("localhost", "localhost:1", "127.0.0.1", "127.3.4.5:99", "[::1]:3001",
                     "[::1]", "build-box.example:3001", "BUILD-BOX.example"):
            self.assertTrue(self.get(host).startswith(b"HTTP/1.1 200 "), host)
        for host in ("evil.example", "evil.example:%d" % self.server.port, "127.0.0.1.evil.example",
                     "10.0.0.1", "[::2]", "localhost.evil.example", "build-box.example.evil"):
            out = self.get(host)
            self.assertTrue(out.startswith(b"HTTP/1.1 421 "), (host, out[:200]))
            st, headers, body = parse(out)
            self.assertEqual(headers["content-type"], ["application/problem+json"])
            doc = json.loads(body)
            self.assertEqual((doc["status"], doc["type"]), (421, "/problems/misdirected-request"))

    def test_rebound_page_cannot_start_an_agent(self):
        # the attacker's page, once its name points at 127.0.0.1, is same-origin to itself
        body = json.dumps(task([{"log": "pwned"}])).encode()
        origin = "http://attacker.example:%d" % self.server.port
        out = self.get("attacker.example:%d" % self.server.port, "/api/v1/tasks", "POST",
                       "Origin: %s\r\n" % origin, body)
        self.assertTrue(out.startswith(b"HTTP/1.1 421 "), out[:200])
        # a page elsewhere posting to the real loopback address
        out = self.get("127.0.0.1:%d" % self.server.port, "/api/v1/tasks", "POST",
                       "Origin: http://evil.example\r\n", body)
        self.assertTrue(out.startswith(b"HTTP/1.1 403 "), out[:200])
        for origin in ("null", "http://127.0.0.1:1", "https://ui.example"):
            out = self.get("127.0.0.1:%d" % self.server.port, "/api/v1/drafts", "POST",
                           "Origin: %s\r\n" % origin, b"{}")
            self.assertTrue(out.startswith(b"HTTP/1.1 403 "), (origin, out[:200]))
        self.assertEqual(self.server.get("/api/v1/sessions").json()["total"], 0)

    def test_same_origin_and_allowed_origins_pass(self):
        port = self.server.port
        for host, origin in (("127.0.0.1:%d" % port, "http://127.0.0.1:%d" % port),
                             ("localhost:%d" % port, "http://localhost:%d" % port),
                             ("127.0.0.1:%d" % port, "http://ui.example"),
                             ("build-box.example:3001", "http://build-box.example:3001"),
                             ("127.0.0.1:%d" % port, "http://build-box.example:3001")):
            out = self.get(host, "/api/v1/drafts", "POST", "Origin: %s\r\n" % origin,
                           json.dumps({"prompt": "x"}).encode())
            self.assertFalse(out.startswith(b"HTTP/1.1 403 ") or out.startswith(b"HTTP/1.1 421 "),
                             (host, origin, out[:300]))
        # safe methods need no origin check
        out = self.get("127.0.0.1", "/api/v1/healthz", "GET", "Origin: http://evil.example\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:200])


class ReadableRefusals(ServerTest, FrontCase):
    """Item 12: a client that sends its whole over-limit body reads the 413."""

    def test_413_after_a_whole_2_mib_body(self):
        for _ in range(3):
            c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            c.request("POST", "/api/v1/tasks", body=b"x" * (2 * 1024 * 1024),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            body = r.read()
            self.assertEqual(r.status, 413)
            self.assertEqual(r.getheader("content-type"), "application/problem+json")
            self.assertIn("1048576", json.loads(body)["detail"])
            c.close()
        # also when the gate refuses (a framing error) while the client is still sending
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        s.sendall(b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n"
                  b"Content-Length: 2\r\n\r\n")
        for _ in range(16):
            s.sendall(b"y" * 65536)
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 400 "), got[:200])


class Timeouts(ServerTest, FrontCase):
    """Item 26: connections that never end."""
    server_args = ("--idle-timeout-ms", "1000", "--sse-keepalive-ms", "300")

    def test_idle_in_headers_is_closed(self):
        t0 = time.monotonic()
        out, closed = raw(self.server.port, b"GET /api/v1/healthz HTTP/1.1\r\nHost: loc",
                          timeout=20)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertRawProblem(out, closed, 408)
        # nothing at all sent: closed without a word
        t0 = time.monotonic()
        out, closed = raw(self.server.port, b"", timeout=20)
        self.assertTrue(closed)
        self.assertEqual(out, b"")
        self.assertLess(time.monotonic() - t0, 15)

    def test_idle_in_body_and_between_requests(self):
        t0 = time.monotonic()
        out, closed = raw(self.server.port, b"POST /api/v1/drafts HTTP/1.1\r\nHost: localhost\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":",
                          timeout=20)
        self.assertTrue(closed)
        self.assertLess(time.monotonic() - t0, 15)
        t0 = time.monotonic()
        out, closed = raw(self.server.port, b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost"
                                            b"\r\n\r\n", timeout=20)
        self.assertTrue(closed and out.startswith(b"HTTP/1.1 200 "), out[:100])
        self.assertLess(time.monotonic() - t0, 15)

    def test_garbage_gets_400_and_close(self):
        hello = bytes.fromhex("16030100f4010000f00303") + os.urandom(200)
        out, closed = raw(self.server.port, hello)
        self.assertRawProblem(out, closed, 400)
        q = "&".join("p%d=1" % i for i in range(112))
        out, closed = raw(self.server.port, ("GET /api/v1/sessions?%s HTTP/1.1\r\nHost: "
                                             "localhost\r\n\r\n" % q).encode())
        self.assertRawProblem(out, closed, 400)
        out, closed = raw(self.server.port, b"\x00\x01\x02\x03" * 50)
        self.assertRawProblem(out, closed, 400)
        # a query under the cap is served
        q = "&".join("p%d=1" % i for i in range(40))
        out, _ = raw(self.server.port, ("GET /api/v1/healthz?%s HTTP/1.1\r\nHost: localhost\r\n"
                                        "Connection: close\r\n\r\n" % q).encode())
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:200])

    def test_streams_are_exempt_while_they_get_keepalives(self):
        sid = create(self.server, task([{"log": "started"}, {"sleep": 600000}]))["id"]
        wait_status(self.server, sid, "running")
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        s.sendall(("GET /api/v1/sessions/%s/events HTTP/1.1\r\nHost: localhost\r\n"
                   "Accept: text/event-stream\r\n\r\n" % sid).encode())
        got, t0 = b"", time.monotonic()
        while time.monotonic() - t0 < 4:  # four idle timeouts
            chunk = s.recv(4096)
            self.assertTrue(chunk, "the stream was closed: %r" % got[-300:])
            got += chunk
        s.close()
        self.assertGreaterEqual(got.count(b": keep-alive"), 3)
        self.server.post("/api/v1/sessions/%s/stop" % sid, body={})


class Descriptors(unittest.TestCase):
    """Item 25: running out of descriptors is logged once per episode, with the limit."""

    def test_emfile_logged_once(self):
        s = Server()
        socks = []
        try:
            pid = s.proc.pid
            limit = fd_count(pid) + 16
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
            for _ in range(60):
                socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=10))

            def lines():
                return [l for l in s.log_lines() if "out of file descriptors" in l.get("msg", "")]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not lines():
                time.sleep(0.05)
            self.assertEqual(len(lines()), 1, s.stderr()[-2000:])
            self.assertEqual(lines()[0]["fd_limit"], limit)
            time.sleep(1)  # several accept attempts later (ticks of 200 ms): still one line
            self.assertEqual(len(lines()), 1)
            for c in socks:
                c.close()
            socks = []
            deadline = time.monotonic() + 20
            ok = False
            while time.monotonic() < deadline and not ok:
                try:
                    ok = s.get("/api/v1/healthz", record_it=False, timeout=5).status == 200
                except OSError:
                    time.sleep(0.1)
            self.assertTrue(ok, "the server does not recover")
            self.assertEqual(s.proc.poll(), None)
        finally:
            for c in socks:
                c.close()
            s.close()


class Shutdown(unittest.TestCase):
    """Item 27: SIGTERM with a request stuck for good: the server exits after the grace, and the
    running session keeps running (D15)."""

    def test_sigterm_with_a_stuck_request(self):
        s = Server(args=("--shutdown-grace-ms", "1000"),
                   env={"AH_TEST_HOOKS": "1", "AH_TEST_STALL_PATH": "/api/v1/repos"})
        try:
            sid = create(s, task([{"log": "started"}, {"sleep": 600000}]))["id"]
            wait_status(s, sid, "running")
            stuck = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            stuck.sendall(b"GET /api/v1/repos HTTP/1.1\r\nHost: localhost\r\n\r\n")
            deadline = time.monotonic() + 20
            while "test hook: stalling" not in s.stderr() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertIn("test hook: stalling", s.stderr())
            recorders = [p for p in os.listdir("/proc") if p.isdigit() and
                         self._cmdline(p).count(sid)]
            self.assertTrue(recorders)
            t0 = time.monotonic()
            code = s.stop(timeout=20)
            self.assertLess(time.monotonic() - t0, 10)
            self.assertEqual(code, 0)
            log = s.stderr()
            self.assertIn("still running after 1000 ms; closing them", log)
            self.assertIn("exiting without them", log)
            stuck.settimeout(5)
            self.assertEqual(stuck.recv(100), b"")  # closed with the process
            stuck.close()
            # the session's processes were left running (re-attached at the next start)
            self.assertTrue(any(os.path.exists("/proc/" + p) for p in recorders))
        finally:
            s.close()

    @staticmethod
    def _cmdline(pid):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


if __name__ == "__main__":
    ahtest.main()
