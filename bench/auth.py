#!/usr/bin/env python3
"""auth.py — what authentication costs (issue 13 acceptance): GET /api/v1/sessions/{id} req/s
with no credentials (local mode), with an API key and with a JWT (RS256), in one interleaved
run. Prints every run, the medians and the ratios to the unauthenticated rate. Never fails.

On a busy machine req/s swings with everyone else's load; the server's own CPU time per request
(utime + stime of its process over the run, /proc) does not, so each run prints it too, and the
ratios are given both ways: rate / rate, and CPU per request (no auth) / CPU per request (mode),
which is the rate ratio a machine of its own would show while the server is CPU-bound.

    bench/auth.py [BUILD_DIR] [--seconds N] [--rounds N] [--connections N]

Two servers (one per mode: a JWT issuer or an API key ends local mode) on temp directories, each
with one finished scripted session; wrk (Debian package) drives them with keep-alive
connections. Rate limits are raised out of the way. Needs python3-cryptography for the token.
"""
import base64
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = [a for a in sys.argv[1:] if not a.startswith("--")]
BUILD = os.path.abspath(args[0] if args and not args[0].isdigit() else os.path.join(ROOT, "build"))
AH = os.path.join(BUILD, "ah")


def opt(name, default):
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


SECONDS = opt("--seconds", 3)
ROUNDS = opt("--rounds", 3)
CONNS = opt("--connections", 32)
ISS, AUD = "https://bench.issuer", "bench"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Server:
    def __init__(self, extra=lambda tmp: [], prepare=None):
        self.tmp = tempfile.mkdtemp(prefix="ah-bench-auth-")
        self.db = os.path.join(self.tmp, "state.db")
        if prepare:
            prepare(self)
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(self.tmp, "run"),
                   XDG_CONFIG_HOME=os.path.join(self.tmp, "cfg"))
        os.makedirs(env["XDG_RUNTIME_DIR"], exist_ok=True)
        self.err = open(os.path.join(self.tmp, "stderr"), "w+")
        self.proc = subprocess.Popen([AH, "agent", "access-point", "--port", "0", "--db", self.db,
                                      "--data-dir", self.tmp, "--rate-limit", "1000000",
                                      "--rate-limit-burst", "1000000"] + extra(self.tmp),
                                     stdout=self.err, stderr=self.err, env=env)
        deadline = time.time() + 30
        self.port = None
        while time.time() < deadline and self.port is None:
            time.sleep(0.05)
            with open(os.path.join(self.tmp, "stderr")) as f:
                m = re.search(r'"msg":"listening".*?"port":(\d+)', f.read())
            if m:
                self.port = int(m.group(1))
        assert self.port, "server did not start"
        self.headers = {}

    def call(self, method, path, body=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), method=method,
                                     data=json.dumps(body).encode() if body else None,
                                     headers=dict(self.headers, **({"Content-Type":
                                                                    "application/json"}
                                                                   if body else {})))
        for _ in range(300):
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                if e.code != 503:
                    raise
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("no answer")

    def session(self):
        _, t = self.call("POST", "/api/v1/tasks", {
            "prompt": "bench", "repo": {"mode": "none"}, "runtime": {"type": "local"},
            "agents": [{"type": "scripted", "settings": {"scenario": [{"log": "x"}]}}]})
        sid = t["id"]
        for _ in range(600):
            _, s = self.call("GET", "/api/v1/sessions/" + sid)
            if s["status"] in ("completed", "failed", "stopped", "cancelled"):
                return sid
            time.sleep(0.1)
        return sid

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks


def wrk(port, path, header=None, pid=None):
    """(req/s, server CPU µs per request)."""
    cmd = ["wrk", "-t", "1", "-c", str(CONNS), "-d", "%ds" % SECONDS, "--latency"]
    if header:
        cmd += ["-H", header]
    t0 = cpu_ticks(pid) if pid else 0
    out = subprocess.run(cmd + ["http://127.0.0.1:%d%s" % (port, path)], capture_output=True,
                         text=True).stdout
    cpu = (cpu_ticks(pid) - t0) / os.sysconf("SC_CLK_TCK") if pid else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        print("  (warning: %s non-2xx answers)" % non2xx.group(1))
    n = int(total.group(1)) if total else 0
    return (float(m.group(1)) if m else 0.0), (cpu * 1e6 / n if n else 0.0)


def main():
    if not shutil.which("wrk"):
        print("auth.py: wrk is not installed (apt-get install wrk); nothing measured")
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = key.public_key().public_numbers()
    jwks = {"keys": [{"kty": "RSA", "kid": "k1", "n": b64(n.n.to_bytes(256, "big")),
                      "e": b64(n.e.to_bytes(3, "big"))}]}
    now = int(time.time())
    head = b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
    body = b64(json.dumps({"iss": ISS, "aud": AUD, "sub": "bench", "exp": now + 3600,
                           "tenant": "bench", "roles": ["admin"]}).encode())
    sig = key.sign((head + "." + body).encode(), padding.PKCS1v15(), hashes.SHA256())
    token = head + "." + body + "." + b64(sig)
    api_key = {}

    def prepare(s):
        with open(os.path.join(s.tmp, "jwks.json"), "w") as f:
            json.dump(jwks, f)
        r = subprocess.run([AH, "admin", "api-key", "create", "--role", "admin", "--tenant",
                            "bench", "--db", s.db], capture_output=True, text=True, check=True)
        api_key["key"] = r.stdout.strip()

    open_srv = Server()
    auth_srv = Server(lambda tmp: ["--jwks", os.path.join(tmp, "jwks.json"), "--jwt-issuer", ISS,
                                   "--jwt-audience", AUD], prepare=prepare)
    try:
        sid_open = open_srv.session()
        auth_srv.headers = {"Authorization": "ApiKey " + api_key["key"]}
        sid_auth = auth_srv.session()
        modes = [("no auth", open_srv, sid_open, None),
                 ("API key", auth_srv, sid_auth, "Authorization: ApiKey " + api_key["key"]),
                 ("JWT RS256", auth_srv, sid_auth, "Authorization: Bearer " + token)]
        results = {m[0]: [] for m in modes}
        cpu = {m[0]: [] for m in modes}
        print("GET /api/v1/sessions/{id}, %d connections, %d s per run, %d rounds" %
              (CONNS, SECONDS, ROUNDS))
        for rnd in range(ROUNDS):
            for name, srv, sid, header in modes:
                rate, us = wrk(srv.port, "/api/v1/sessions/" + sid, header, srv.proc.pid)
                results[name].append(rate)
                cpu[name].append(us)
                print("  round %d  %-10s %10.0f req/s  %6.1f µs server CPU/req" %
                      (rnd + 1, name, rate, us))
        base = statistics.median(results["no auth"]) or 1
        base_cpu = statistics.median(cpu["no auth"])
        print("medians:")
        for name, _, _, _ in modes:
            med, us = statistics.median(results[name]), statistics.median(cpu[name])
            print("  %-10s %10.0f req/s   %.2f of no auth   %6.1f µs CPU/req   %.2f of no auth "
                  "by CPU" % (name, med, med / base, us, base_cpu / us if us else 0))
    finally:
        open_srv.close()
        auth_srv.close()


if __name__ == "__main__":
    main()
