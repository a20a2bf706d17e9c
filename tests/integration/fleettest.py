"""Shared start-up of the executor fleet tests: certificates (tests/enroll/mkcerts.sh), an
`ah agent access-point --quic-port 0` and `ah agent enroll` executors on loopback, each with its
own directory. Used by test_executor_link.py and test_ssh_tunnel.py."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import ahtest

HERE = os.path.dirname(os.path.abspath(__file__))
MKCERTS = os.path.join(HERE, "..", "enroll", "mkcerts.sh")
SERVE_ID = "spiffe://example.org/ah/serve"


def wait_for(what, cond, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class Executor:
    """One `ah agent enroll` process; stderr in its own file."""

    def __init__(self, tmp, args, env=None):
        self.dir = tempfile.mkdtemp(prefix="ah-exec-", dir=tmp)
        self.log = os.path.join(self.dir, "stderr.log")
        err = open(self.log, "wb")
        env = dict({k: v for k, v in os.environ.items() if not k.startswith("AH_")},
                   **(env or {}))
        env["HOME"] = self.dir
        self.proc = subprocess.Popen([ahtest.AH_BIN, "agent", "enroll"] + args,
                                     stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        err.close()

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("ah agent enroll did not stop:\n" + self.text())
        for marker in ahtest.SANITIZER_MARKERS:  # under the sanitizer build
            if marker in self.text():
                raise AssertionError("sanitizer report from ah agent enroll:\n" + self.text())
        return code


class FleetTestCase(unittest.TestCase):
    """Certificates made once per class in cls.tmp; access_point() and executor() start the
    processes and stop them at the test's end (or the class's, with cleanup=cls)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-link-")
        cls.certs = os.path.join(cls.tmp, "certs")
        subprocess.run(["sh", MKCERTS, cls.certs], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def c(cls, name):
        return os.path.join(cls.certs, name)

    @classmethod
    def start_access_point(cls, cert="serve", extra=(), server_cls=ahtest.Server, **kw):
        s = server_cls(args=["--quic-port", "0", "--quic-cert", cls.c(cert + ".pem"),
                                "--quic-key", cls.c(cert + ".key"), "--quic-ca",
                                cls.c("ca.pem"), "--executor-trust-domain", "example.org"]
                          + list(extra), **kw)
        try:
            m = wait_for("the QUIC listener", lambda: re.search(
                r"QUIC listening on 127\.0\.0\.1:(\d+)", s.stderr()))
        except AssertionError:
            s.close()
            raise
        s.quic_port = int(m.group(1))
        return s

    @classmethod
    def start_executor(cls, ap, cert="a", ca="ca", extra=None):
        args = ["--remote-server", "quic://127.0.0.1:%d" % ap.quic_port, "--identity", "files",
                "--cert-file", cls.c(cert + ".pem"), "--key-file", cls.c(cert + ".key"),
                "--ca-file", cls.c(ca + ".pem"), "--heartbeat-interval", "0.2"]
        args += extra if extra is not None else ["--expected-server-id", SERVE_ID]
        return Executor(cls.tmp, args)

    def access_point(self, cert="serve", extra=()):
        s = self.start_access_point(cert, extra)
        self.addCleanup(s.close)
        return s

    def executor(self, ap, cert="a", ca="ca", extra=None):
        e = self.start_executor(ap, cert, ca, extra)
        self.addCleanup(e.stop, signal.SIGKILL)
        return e
