"""HTTPS (issue 13 item 8): `--tls-cert`/`--tls-key` make the front gate terminate TLS (GnuTLS,
non-blocking handshakes in its event loop). API calls and an event stream over https with a
self-signed certificate made here by openssl, HSTS on every answer (the handler's, and the
problems the gate writes itself), plain HTTP on the TLS port refused with a readable 400 and a
close, slow or incomplete handshakes bounded in time and never in the way of other clients,
and certificate files that cannot be used refused at start with a clear line."""

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import ahtest
from ahtest import AH_BIN, Server
from sessiontest import create, task, wait_status

HSTS = "max-age=31536000"


def make_cert(directory):
    """A self-signed P-256 certificate for localhost and 127.0.0.1, and its key (PEM)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days",
                    "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class HttpsServer(Server):
    """A Server whose requests (readiness included) go over https, trusting `ca`."""

    def __init__(self, ca, *args, **kw):
        self.ctx = ssl.create_default_context(cafile=ca)
        super().__init__(*args, **kw)

    def connect(self, timeout=30):
        return http.client.HTTPSConnection("localhost", self.port, timeout=timeout,
                                           context=self.ctx)


def read_until_closed(sock, timeout):
    """Bytes until the peer closes (True) or `timeout` of silence (False)."""
    sock.settimeout(timeout)
    out = b""
    while True:
        try:
            b = sock.recv(65536)
        except socket.timeout:
            return out, False
        except (ConnectionResetError, ssl.SSLError):
            return out, True
        if not b:
            return out, True
        out += b


class Https(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="ah-tls-")
        cls.cert, cls.key = make_cert(cls.dir)
        # a short idle timeout bounds the handshake too (the smaller of it and 10 s)
        cls.server = HttpsServer(cls.cert, args=("--tls-cert", cls.cert, "--tls-key", cls.key,
                                                 "--idle-timeout-ms", "2000"))

    @classmethod
    def tearDownClass(cls):
        code = cls.server.close()
        shutil.rmtree(cls.dir, ignore_errors=True)
        if code not in (0, None):
            raise AssertionError("ah exited with %s" % code)

    def tls_socket(self):
        raw = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        return self.server.ctx.wrap_socket(raw, server_hostname="localhost")

    def test_listening_line_says_https(self):
        lines = [l for l in self.server.log_lines() if l.get("msg") == "listening"]
        self.assertTrue(lines[0]["url"].startswith("https://"), lines[0])

    def test_api_calls_carry_hsts(self):
        conn = self.server.connect()  # one kept-alive TLS connection for all of them
        try:
            r = self.server.get("/api/v1/healthz", conn=conn)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("strict-transport-security"), HSTS)
            r = self.server.post("/api/v1/drafts", body={"prompt": "over tls"}, conn=conn)
            self.assertEqual(r.status, 201, r)
            self.assertEqual(r.header("strict-transport-security"), HSTS)
            d = self.server.get("/api/v1/drafts/" + r.json()["id"], conn=conn)
            self.assertEqual((d.status, d.json()["prompt"]), (200, "over tls"))
            r = self.server.get("/api/v1/no-such-thing", conn=conn)
            self.assertEqual(r.status, 404)
            self.assertEqual(r.header("content-type"), "application/problem+json")
            self.assertEqual(r.header("strict-transport-security"), HSTS)
        finally:
            conn.close()

    def test_problems_the_gate_writes_carry_hsts(self):
        s = self.tls_socket()
        try:
            s.sendall(b"POST /api/v1/drafts HTTP/1.1\r\nHost: localhost\r\n"
                      b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}")
            out, closed = read_until_closed(s, 10)
        finally:
            s.close()
        self.assertTrue(closed)
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:200])
        head = out.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
        self.assertIn("strict-transport-security: " + HSTS, head)

    def test_event_stream_over_https(self):
        sid = create(self.server, task([{"log": "over tls"}, {"sleep": 600000}]))["id"]
        wait_status(self.server, sid, "running")
        s = self.tls_socket()
        try:
            s.sendall(("GET /api/v1/sessions/%s/events HTTP/1.1\r\nHost: localhost\r\n"
                       "Accept: text/event-stream\r\n\r\n" % sid).encode())
            got = b""
            deadline = time.monotonic() + 30
            while b"over tls" not in got and time.monotonic() < deadline:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "stream closed early: %r" % got)
                got += chunk
            self.assertIn(b"over tls", got)
            head = got.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
            self.assertIn("text/event-stream", head)
            self.assertIn("strict-transport-security: " + HSTS, head)
        finally:
            s.close()
        self.server.request("POST", "/api/v1/sessions/%s/stop" % sid, body={})

    def test_plain_http_is_refused_cleanly(self):
        out, closed = ahtest_raw(self.server.port,
                                 b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertTrue(closed, "the connection was left open")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:200])
        body = json.loads(out.partition(b"\r\n\r\n")[2])
        self.assertEqual(body["status"], 400)
        self.assertIn("https://", body["detail"])
        # bytes that are neither TLS nor HTTP: closed without a word, never left hanging
        out, closed = ahtest_raw(self.server.port, b"\x00\x01\x02\x03")
        self.assertEqual((out, closed), (b"", True))

    def test_slow_handshakes_do_not_block_others(self):
        silent = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        partial = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        # a TLS record header announcing a ClientHello that never comes
        partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        try:
            started = time.monotonic()
            for _ in range(5):  # each a new connection with its own handshake
                self.assertEqual(self.server.get("/api/v1/healthz").status, 200)
            self.assertLess(time.monotonic() - started, 20)
            # the stalled ones are closed once the handshake's time is up (2 s here)
            for s in (silent, partial):
                out, closed = read_until_closed(s, 30)
                self.assertTrue(closed, "a stalled handshake was never closed")
                self.assertEqual(out, b"")
        finally:
            silent.close()
            partial.close()

    def test_garbage_handshake_is_closed(self):
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        try:
            s.sendall(b"\x16\x03\x01\x40\x00" + b"\xee" * 70000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out, closed = read_until_closed(s, 30)
        s.close()
        self.assertTrue(closed)
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)


def ahtest_raw(port, data, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        return read_until_closed(s, timeout)
    finally:
        s.close()


class WebUiHttps(unittest.TestCase):
    def test_webui_serves_https_with_hsts(self):
        d = tempfile.mkdtemp(prefix="ah-tls-")
        try:
            cert, key = make_cert(d)
            srv = HttpsServer(cert, args=("--tls-cert", cert, "--tls-key", key),
                              command=("webui",))
            try:
                r = srv.get("/api/v1/healthz")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("strict-transport-security"), HSTS)
                r = srv.get("/", record_it=False)
                self.assertLess(r.status, 500)
                self.assertEqual(r.header("strict-transport-security"), HSTS)
            finally:
                srv.close()
        finally:
            shutil.rmtree(d, ignore_errors=True)


class BadFiles(unittest.TestCase):
    def start(self, *args):
        d = tempfile.mkdtemp(prefix="ah-tls-")
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
            env.update({"HOME": d, "XDG_RUNTIME_DIR": d, "XDG_CONFIG_HOME": d,
                        "XDG_DATA_HOME": d, "XDG_STATE_HOME": d})
            cert, key = make_cert(d)
            other = os.path.join(d, "other")
            os.mkdir(other)
            _, key2 = make_cert(other)
            subst = {"CERT": cert, "KEY": key, "KEY2": key2, "MISSING": os.path.join(d, "nope")}
            cmd = [AH_BIN, "agent", "access-point", "--port", "0", "--db",
                   os.path.join(d, "s.db")] + [subst.get(a, a) for a in args]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
            return p.returncode, p.stderr
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_refused_at_start_with_a_clear_line(self):
        code, err = self.start("--tls-cert", "CERT")
        self.assertNotEqual(code, 0)
        self.assertIn("both a certificate and its key", err)
        code, err = self.start("--tls-cert", "CERT", "--tls-key", "MISSING")
        self.assertNotEqual(code, 0)
        self.assertIn("cannot read the TLS key", err)
        code, err = self.start("--tls-cert", "CERT", "--tls-key", "KEY2")  # not its key
        self.assertNotEqual(code, 0)
        self.assertIn("cannot use the TLS certificate", err)
        code, err = self.start("--tls-cert", "KEY", "--tls-key", "KEY")  # not a certificate
        self.assertNotEqual(code, 0)
        self.assertIn("cannot use the TLS certificate", err)


if __name__ == "__main__":
    ahtest.main()
