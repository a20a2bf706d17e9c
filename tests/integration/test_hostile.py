"""No 5xx for any client input (D4): every documented operation, with hostile path parameters,
queries and bodies, answers with a 4xx (or 501 where the server does not implement the operation
yet), and the server stays healthy. Deterministic: a fixed seed."""

import json
import os
import random
import re
import socket
import time

import ahtest
from ahtest import ServerTest
from sessiontest import create, task, wait_status

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

PARAM_VALUES = ["01ARZ3NDEKTSV4RRFFQ69G5FAV", "x", "%00", "..%2F..%2Fetc%2Fpasswd", "a" * 300,
                "%F0%9F%92%A9", "draft-01ARZ3NDEKTSV4RRFFQ69G5FAV", "-1", "%25", "%20"]
QUERIES = ["", "?page=-1", "?perPage=99999999999999999999", "?status=%00", "?after=1e9",
           "?tail=-5", "?since=not-a-time", "?type=" + ",".join(["x"] * 100), "?limit=abc",
           "?startTime=nan", "?purge=yes", "?q=" + "%28" * 200, "?format=exe",
           "?context=999", "?page=1&page=2"]
BODIES = [b"", b"{", b"null", b"[]", b"\"s\"", b"1e999", b"{\"a\":" * 70 + b"1" + b"}" * 70,
          json.dumps({"prompt": None, "agents": [{"type": ["x"]}]}).encode(),
          json.dumps({"prompt": "x" * 20000}).encode(),
          json.dumps({"message": 5, "reason": {}, "ts": "soon", "label": [1]}).encode(),
          b"\xff\xfe\xfd", json.dumps({"\u0000": "\ud800"}).encode(),
          json.dumps({"content": "hi", "attachments": "no", "fsSnapshotId": 1}).encode()]


class Hostile(ServerTest):
    server_args = ("--max-body-bytes", "65536")

    def test_every_operation_rejects_garbage_with_4xx(self):
        # a real session, so routes under /sessions/{id} also meet an existing id
        sid = create(self.server, task([{"log": "x"}]))["id"]
        wait_status(self.server, sid, "completed")
        with open(os.path.join(ROOT, "api", "openapi.json")) as f:
            doc = json.load(f)
        rng = random.Random(1234)
        seen = 0
        for path, ops in sorted(doc["paths"].items()):
            for method in ops:
                if method not in ("get", "post", "put", "delete", "patch"):
                    continue
                for attempt in range(6):
                    values = PARAM_VALUES + [sid]
                    concrete = path
                    while "{" in concrete:
                        a = concrete.index("{")
                        b = concrete.index("}", a)
                        concrete = concrete[:a] + rng.choice(values) + concrete[b + 1:]
                    target = concrete + rng.choice(QUERIES)
                    body = rng.choice(BODIES) if method in ("post", "put", "patch") else None
                    headers = {"Content-Type": "application/json"}
                    if rng.random() < 0.2:
                        headers["Idempotency-Key"] = rng.choice(["bad key", "0" * 26,
                                                                 "01ARZ3NDEKTSV4RRFFQ69G5FAV"])
                    if rng.random() < 0.2:
                        headers["Last-Event-ID"] = rng.choice(["-3", "zzz", "999999999"])
                    if rng.random() < 0.2:
                        headers["X-Tenant-ID"] = rng.choice(["a b", "ok", "x" * 200])
                    r = self.server.request(method.upper(), target, body=body, headers=headers,
                                            record_it=False)
                    seen += 1
                    self.assertTrue(r.status < 500 or r.status in (501, 503),
                                    "%s %s → %d %r" % (method.upper(), target, r.status,
                                                       r.body[:300]))
                    if r.status >= 400:
                        self.assertEqual(r.header("content-type"), "application/problem+json",
                                         "%s %s → %d" % (method.upper(), target, r.status))
        self.assertGreater(seen, 300)
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)
        self.assertEqual(self.server.get("/api/v1/sessions/" + sid).status, 200)


SMUGGLING = [
    # (name, bytes, status): RFC 9112 §6.1, §6.3, §5.1, §5.2, §3.2
    ("two different Content-Length", b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\n"
     b"Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}", 400),
    ("space before the colon", b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\n"
     b"Content-Type: application/json\r\nContent-Length : 2\r\n\r\n{}", 400),
    ("Transfer-Encoding and Content-Length", b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost"
     b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n0\r\n\r\n", 400),
    ("obsolete line folding", b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n"
     b" b\r\n\r\n", 400),
    ("whitespace inside a header name", b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\n"
     b"X A: a\r\n\r\n", 400),
    ("HTTP/1.1 without Host", b"GET /api/v1/healthz HTTP/1.1\r\n\r\n", 400),
    ("two Host headers", b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nHost: other"
     b"\r\n\r\n", 400),
    ("Transfer-Encoding identity", b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\n"
     b"Content-Type: application/json\r\nTransfer-Encoding: identity\r\n\r\n{}", 400),
    ("Transfer-Encoding gzip, chunked", b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\n"
     b"Content-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     b"2\r\n{}\r\n0\r\n\r\n", 501),
    ("Transfer-Encoding xchunked", b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\n"
     b"Content-Type: application/json\r\nTransfer-Encoding: xchunked\r\n\r\n"
     b"2\r\n{}\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding chunked, identity", b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost"
     b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
     b"2\r\n{}\r\n0\r\n\r\n", 400),
    ("chunk size 2^64-1", b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\n"
     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"ffffffffffffffff\r\n{}", 400),
    ("a chunk over the body cap", b"POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\n"
     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"7fffffff\r\n{}", 413),
]
SMUGGLED = b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


class Smuggling(ServerTest):
    """Item 9: each is refused at once with a problem, and the connection is closed: the bytes
    after the headers are never served as a second request."""

    def test_ambiguous_framing_is_refused_and_closed(self):
        for name, data, status in SMUGGLING:
            t0 = time.monotonic()
            s = socket.create_connection(("127.0.0.1", self.server.port), timeout=20)
            try:
                s.sendall(data + SMUGGLED)
                out = b""
                while True:
                    try:
                        b = s.recv(65536)
                    except ConnectionResetError:
                        b = b""
                    if not b:
                        break
                    out += b
            finally:
                s.close()
            self.assertLess(time.monotonic() - t0, 10, name)
            self.assertTrue(out.startswith(b"HTTP/1.1 %d " % status), (name, out[:300]))
            head, _, body = out.partition(b"\r\n\r\n")
            self.assertIn(b"\r\nContent-Type: application/problem+json\r\n", head, name)
            n = int(re.search(rb"\r\nContent-Length: (\d+)", head).group(1))
            self.assertEqual(json.loads(body[:n])["status"], status, name)
            self.assertEqual(body[n:], b"", "%s: a second response was served" % name)
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)


if __name__ == "__main__":
    ahtest.main()
