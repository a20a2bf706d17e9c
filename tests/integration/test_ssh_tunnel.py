"""SSH through the access point (issue 16 item 7; CLI-and-enrollment §5.7): HTTP CONNECT on the
access point's HTTP port → an OpenTcp tunnel stream over the executor's QUIC link → the
executor's sshd. A real OpenSSH sshd (Debian openssh-server) runs on a free loopback port with a
temporary host key and authorized_keys; `ssh` reaches it with a ProxyCommand (socat, which
speaks CONNECT with Basic proxy authentication: the API key is the password).

Refusals: 407 without or with bad credentials, 403 for a viewer, 404 for an unknown executor,
502 for an offline one, 403 from an executor started with --ssh disabled and for a destination
other than its --ssh-dst. Every attempt is in the audit log."""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import ahtest
from fleettest import FleetTestCase, wait_for

AID = "spiffe://example.org/ah/agent/a"


def make_key(server, role, tenant="acme"):
    r = subprocess.run([ahtest.AH_BIN, "admin", "api-key", "create", "--role", role, "--tenant",
                        tenant, "--db", server.db],
                       capture_output=True, text=True, env=server.env(), timeout=60)
    assert r.returncode == 0, r
    return r.stdout.strip()


def connect(port, target, auth=None, http10=False, timeout=30):
    """Sends one CONNECT; returns (status, headers, body or None, the socket)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = "CONNECT %s HTTP/1.%d\r\n" % (target, 0 if http10 else 1)
    if not http10:
        head += "Host: %s\r\n" % target
    if auth:
        head += "Proxy-Authorization: %s\r\n" % auth
    s.sendall((head + "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise AssertionError("connection closed before an answer: %r" % buf)
        buf += chunk
    raw, rest = buf.split(b"\r\n\r\n", 1)
    lines = raw.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, v = ln.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if status == 200:
        return status, headers, rest, s
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    s.close()
    return status, headers, json.loads(rest[:n]) if n else None, None


class SshTunnelTest(FleetTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack = []
        try:
            cls.start_sshd()
            cls.ap = cls.start_access_point()
            cls.stack.append(cls.ap.close)
            cls.operator = make_key(cls.ap, "operator")
            cls.viewer = make_key(cls.ap, "viewer")
            cls.admin = make_key(cls.ap, "admin")
            # credentials exist from now on (the key count is reread within a second)
            wait_for("auth on", lambda: cls.ap.get("/api/v1/executors").status == 401)
            cls.ex_a = cls.start_executor(cls.ap, "a", extra=[
                "--expected-server-id", "spiffe://example.org/ah/serve",
                "--ssh-dst", "127.0.0.1:%d" % cls.sshd_port])
            cls.stack.append(lambda: cls.ex_a.stop(signal.SIGKILL))
            cls.ex_b = cls.start_executor(cls.ap, "b", extra=[
                "--expected-server-id", "spiffe://example.org/ah/serve", "--ssh", "disabled"])
            cls.stack.append(lambda: cls.ex_b.stop(signal.SIGKILL))
            for name in ("a", "b"):
                wait_for("executor %s online" % name, lambda: cls.health(name) == "online")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for f in reversed(cls.stack):
            try:
                f()
            except Exception:  # keep stopping the rest
                pass
        super().tearDownClass()

    @classmethod
    def start_sshd(cls):
        d = tempfile.mkdtemp(prefix="sshd-", dir=cls.tmp)
        cls.sshd_dir = d
        for k in ("host", "client"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            os.path.join(d, k)], check=True)
        shutil.copy(os.path.join(d, "client.pub"), os.path.join(d, "authorized_keys"))
        if os.geteuid() == 0:  # privilege separation needs its empty directory
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        cls.sshd_port = ahtest.free_port()
        cfg = os.path.join(d, "sshd_config")
        with open(cfg, "w") as f:
            f.write("Port %d\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s\n"
                    "StrictModes no\nPermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                    "PidFile none\n" % (cls.sshd_port, os.path.join(d, "host"),
                                        os.path.join(d, "authorized_keys")))
        cls.sshd_log = os.path.join(d, "sshd.log")
        log = open(cls.sshd_log, "wb")
        cls.sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", cfg],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        cls.stack.append(cls.stop_sshd)
        wait_for("sshd listening", lambda: "Server listening" in cls.sshd_text() or
                 cls.sshd.poll() is not None)
        assert cls.sshd.poll() is None, cls.sshd_text()

    @classmethod
    def sshd_text(cls):
        with open(cls.sshd_log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    @classmethod
    def stop_sshd(cls):
        if cls.sshd.poll() is None:
            cls.sshd.terminate()
        cls.sshd.wait(30)

    @classmethod
    def health(cls, name):
        r = cls.ap.get("/api/v1/executors", headers={"Authorization": "ApiKey " + cls.admin})
        return next((x["health"] for x in r.json()["items"] if x["name"] == name), None)

    def audit(self, action):
        r = self.ap.get("/api/v1/audit?action=%s&perPage=200" % action,
                        headers={"Authorization": "ApiKey " + self.admin})
        self.assertEqual(r.status, 200, r)
        return r.json()["items"]

    def ssh(self, key, cmd="echo hello", host="a"):
        proxy = "socat - PROXY:127.0.0.1:%%h:%%p,proxyport=%d,proxyauth=ah:%s" % (
            self.ap.port, key)
        return subprocess.run(
            ["ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "ProxyCommand=" + proxy,
             "-o", "ConnectTimeout=30", "-i", os.path.join(self.sshd_dir, "client"),
             "-p", "22", "%s@%s" % (os.environ.get("USER") or "root", host), cmd],
            capture_output=True, text=True, timeout=120)

    def assertRefused(self, got, status, code_in_detail=None):
        st, headers, body, _ = got
        self.assertEqual(st, status, body)
        self.assertEqual(headers.get("content-type"), "application/problem+json")
        self.assertEqual(body["status"], status)
        if code_in_detail:
            self.assertIn(code_in_detail, body["detail"])
        return headers, body

    # ---- the way through --------------------------------------------------------------------

    def test_ssh_runs_a_command(self):
        r = self.ssh(self.operator)
        self.assertEqual(r.returncode, 0, r.stderr + "\n" + self.sshd_text())
        self.assertEqual(r.stdout, "hello\n")
        # who opened which tunnel, from where: audited, and closed with its byte counts logged
        rows = [x for x in self.audit("tunnel.open") if x["outcome"] == "success"]
        self.assertTrue(rows, self.audit("tunnel.open"))
        self.assertEqual(rows[0]["target"], AID)
        self.assertTrue(rows[0]["source"].startswith("127.0.0.1:"), rows[0])
        self.assertTrue(rows[0]["actor"], rows[0])
        self.assertEqual(rows[0]["status"], 200)
        wait_for("tunnel.close audited", lambda: self.audit("tunnel.close"))
        wait_for("tunnel closed log", lambda: '"msg":"tunnel closed"' in self.ap.stderr())

    def test_apikey_scheme_reaches_sshd(self):
        """Proxy-Authorization: ApiKey, over HTTP/1.1 and HTTP/1.0 (as nc -X connect sends it):
        the sshd's banner comes back through the tunnel. (Bearer takes a JWT through the same
        authentication call as every route.)"""
        for auth, http10 in (("ApiKey " + self.operator, False), ("ApiKey " + self.operator, True)):
            st, headers, rest, s = connect(self.ap.port, "a:22", auth, http10=http10)
            self.assertEqual(st, 200)
            buf = rest
            while b"\n" not in buf:
                chunk = s.recv(4096)
                self.assertTrue(chunk, "tunnel closed before the banner")
                buf += chunk
            self.assertTrue(buf.startswith(b"SSH-2.0-OpenSSH"), buf)
            s.close()

    def test_large_transfer_both_ways(self):
        """4 MiB each way (far past every buffer: socketpair, stream windows) arrive intact."""
        blob = os.urandom(4 << 20)
        r = subprocess.run(
            ["ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o",
             "ProxyCommand=socat - PROXY:127.0.0.1:%%h:%%p,proxyport=%d,proxyauth=ah:%s" % (
                 self.ap.port, self.operator),
             "-i", os.path.join(self.sshd_dir, "client"), "root@a", "cat"],
            input=blob, capture_output=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout), len(blob))
        self.assertTrue(r.stdout == blob)

    # ---- refusals -----------------------------------------------------------------------------

    def test_no_credentials_407(self):
        h, _ = self.assertRefused(connect(self.ap.port, "a:22"), 407)
        self.assertIn("Bearer", h.get("proxy-authenticate", ""))
        self.assertRefused(connect(self.ap.port, "a:22", "ApiKey ahk_nope_nope"), 407)
        basic = base64.b64encode(b"ah:ahk_nope_nope").decode()
        self.assertRefused(connect(self.ap.port, "a:22", "Basic " + basic), 407)
        r = self.ssh("ahk_nope_nope")
        self.assertNotEqual(r.returncode, 0)

    def test_viewer_403(self):
        self.assertRefused(connect(self.ap.port, "a:22", "ApiKey " + self.viewer), 403,
                           "operator")
        denied = [x for x in self.audit("tunnel.open") if x["status"] == 403]
        self.assertTrue(any(x["outcome"] == "denied" for x in denied), denied)

    def test_unknown_executor_404(self):
        self.assertRefused(connect(self.ap.port, "nobody:22", "ApiKey " + self.operator), 404,
                           "nobody")

    def test_dotted_host_maps_to_its_first_label(self):
        st, _, _, s = connect(self.ap.port, "a.internal:22", "ApiKey " + self.operator)
        self.assertEqual(st, 200)
        s.close()

    def test_bad_target_400(self):
        self.assertRefused(connect(self.ap.port, "a:notaport", "ApiKey " + self.operator), 400)

    def test_connect_only_as_first_request(self):
        """A CONNECT after another request on the same connection is refused (400): the
        connection is already libmicrohttpd's."""
        s = socket.create_connection(("127.0.0.1", self.ap.port), timeout=30)
        s.sendall(b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"CONNECT a:22 HTTP/1.1\r\nHost: a:22\r\nProxy-Authorization: ApiKey "
                  + self.operator.encode() + b"\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
        self.assertIn(b"HTTP/1.1 400", data)
        self.assertIn(b"CONNECT must be the first request", data)

    def test_over_https(self):
        """With --tls-cert the gate terminates TLS: CONNECT inside TLS reaches the sshd too."""
        class HttpsServer(ahtest.Server):
            def __init__(self, ca, *a, **kw):
                self.ctx = ssl.create_default_context(cafile=ca)
                super().__init__(*a, **kw)

            def connect(self, timeout=30):
                return http.client.HTTPSConnection("localhost", self.port, timeout=timeout,
                                                   context=self.ctx)
        ap = self.start_access_point(
            extra=["--tls-cert", self.c("serve.pem"), "--tls-key", self.c("serve.key")],
            server_cls=lambda **kw: HttpsServer(self.c("ca.pem"), **kw))
        self.addCleanup(ap.close)
        ex = self.executor(ap, "a", extra=["--expected-server-id", "spiffe://example.org/ah/serve",
                                           "--ssh-dst", "127.0.0.1:%d" % self.sshd_port])
        wait_for("enrolled", lambda: "enrolled at the access point" in ex.text())
        raw = socket.create_connection(("127.0.0.1", ap.port), timeout=30)
        s = ap.ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"CONNECT a:22 HTTP/1.1\r\nHost: a:22\r\n\r\n")  # local mode: no key
        buf = b""
        while b"SSH-2.0-" not in buf or not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            self.assertTrue(chunk, buf)
            buf += chunk
        self.assertTrue(buf.startswith(b"HTTP/1.1 200 Connection Established\r\n\r\nSSH-2.0-"),
                        buf)
        s.close()

    def test_bearer_jwt(self):
        """Proxy-Authorization: Bearer <JWT> (an access point with a JWT issuer): an operator
        token tunnels, also as Basic's password; a viewer token is 403."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils

        def b64(b):
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        key = ec.generate_private_key(ec.SECP256R1())
        pn = key.public_key().public_numbers()
        jwks = os.path.join(self.tmp, "jwks.json")
        with open(jwks, "w") as f:
            json.dump({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
                                 "x": b64(pn.x.to_bytes(32, "big")),
                                 "y": b64(pn.y.to_bytes(32, "big"))}]}, f)

        def token(role):
            now = int(time.time())
            h = b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "k1"}).encode())
            p = b64(json.dumps({"iss": "https://issuer.test", "aud": "ah", "sub": "alice",
                                "exp": now + 600, "iat": now, "tenant": "acme",
                                "roles": [role]}).encode())
            r, s_ = utils.decode_dss_signature(key.sign((h + "." + p).encode(),
                                                        ec.ECDSA(hashes.SHA256())))
            return h + "." + p + "." + b64(r.to_bytes(32, "big") + s_.to_bytes(32, "big"))
        ap = self.start_access_point(extra=["--jwks", jwks, "--jwt-issuer", "https://issuer.test",
                                            "--jwt-audience", "ah"])
        self.addCleanup(ap.close)
        ex = self.executor(ap, "a", extra=["--expected-server-id", "spiffe://example.org/ah/serve",
                                           "--ssh-dst", "127.0.0.1:%d" % self.sshd_port])
        wait_for("enrolled", lambda: "enrolled at the access point" in ex.text())
        op = token("operator")
        for auth in ("Bearer " + op, "Basic " + base64.b64encode(b"me:" + op.encode()).decode()):
            st, _, _, sock = wait_for("a online", lambda: (lambda g: g if g[0] != 502 else None)(
                connect(ap.port, "a:22", auth)))
            self.assertEqual(st, 200)
            sock.close()
        self.assertRefused(connect(ap.port, "a:22", "Bearer " + token("viewer")), 403)
        self.assertRefused(connect(ap.port, "a:22", "Bearer " + op[:-4] + "AAAA"), 407)

    def test_rate_limited_429(self):
        """A CONNECT takes a token from the credential's bucket, as any request does."""
        ap = self.start_access_point(extra=["--rate-limit", "1", "--rate-limit-burst", "2"])
        self.addCleanup(ap.close)
        key = make_key(ap, "viewer")
        wait_for("auth on", lambda: ap.get("/api/v1/executors").status == 401)
        got = [connect(ap.port, "nobody:22", "ApiKey " + key)[0] for _ in range(6)]
        self.assertIn(429, got, got)
        self.assertIn(403, got[:2], got)

    def test_ssh_disabled_refused(self):
        self.assertRefused(connect(self.ap.port, "b:22", "ApiKey " + self.operator), 403,
                           "ssh_disabled")
        wait_for("the executor's log line", lambda: "refused OpenTcp (ssh_disabled)"
                 in self.ex_b.text())

    def test_destination_not_allowed(self):
        """Port 22 means the executor's --ssh-dst; another port asks for 127.0.0.1:PORT, which
        the executor refuses unless that is exactly its --ssh-dst."""
        self.assertRefused(connect(self.ap.port, "a:2222", "ApiKey " + self.operator), 403,
                           "dst_not_allowed")
        st, _, _, s = connect(self.ap.port, "a:%d" % self.sshd_port, "ApiKey " + self.operator)
        self.assertEqual(st, 200)
        s.close()

    def test_offline_502(self):
        ev = self.start_executor(self.ap, "evil")
        try:
            wait_for("evil online", lambda: self.health("evil") == "online")
            ev.proc.kill()
            ev.proc.wait()
            wait_for("evil offline", lambda: self.health("evil") == "offline")
            self.assertRefused(connect(self.ap.port, "evil:22", "ApiKey " + self.operator), 502,
                               "offline")
        finally:
            ev.stop(signal.SIGKILL)


class NoLinkTest(unittest.TestCase):
    def test_connect_without_executor_link_503(self):
        s = ahtest.Server()
        try:
            st, _, body, _ = connect(s.port, "a:22")
            self.assertEqual(st, 503)
            self.assertIn("--quic-port", body["detail"])
        finally:
            s.close()


if __name__ == "__main__":
    unittest.main()
