"""ahtest — the harness of the integration tests: starts the real `ah` binary on a free loopback
port with a temporary database, talks HTTP to it, and checks what it left on stderr.

Every response goes through `Server.request`, which records it in RESPONSES, so the contract
check (tests/contract) can hold each one to the OpenAPI document.

Only the Python standard library is used (plus python3-jsonschema in the contract check).
"""

import ctypes
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

AH_BIN = os.environ.get("AH_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "ah")

# Every (method, path, status, headers, body) seen by any test in this process.
RESPONSES = []
# Callables run on each response as it is recorded (the contract check registers one).
RESPONSE_HOOKS = []

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer")

# A PostgreSQL URL (tests/pg/pgserver.py sets one): each Server then gets a fresh database on that
# server instead of a SQLite file, and its data directory is its temp directory as before.
TEST_DB_URL = os.environ.get("AH_TEST_DB_URL")
_test_dbs = [0]


def new_test_db():
    """A new empty database on TEST_DB_URL's server; returns its URL."""
    import urllib.parse
    _test_dbs[0] += 1
    name = "ah_it_%d_%d" % (os.getpid(), _test_dbs[0])
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", TEST_DB_URL, "-c",
                    "CREATE DATABASE " + name], check=True, stdin=subprocess.DEVNULL)
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(TEST_DB_URL)._replace(path="/" + name))


def db_row(db, sql):
    """The first row of `sql` (plain SQL both backends accept) on a server's database, as a
    tuple of strings: a SQLite file, or a PostgreSQL URL through psql."""
    if "://" in db:
        out = subprocess.run(["psql", "-X", "-A", "-t", "-F", "\t", "-d", db, "-c", sql],
                             capture_output=True, text=True, check=True).stdout
        return tuple(out.splitlines()[0].split("\t"))
    import sqlite3
    conn = sqlite3.connect(db)
    try:
        return tuple(str(v) for v in conn.execute(sql).fetchone())
    finally:
        conn.close()


class Response:
    def __init__(self, method, path, status, headers, body):
        self.method = method
        self.path = path
        self.status = status
        self.headers = headers  # dict with lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<%s %s → %d %r>" % (self.method, self.path, self.status, self.body[:300])


def record(resp):
    RESPONSES.append(resp)
    for hook in RESPONSE_HOOKS:
        hook(resp)


class Server:
    """One `ah agent access-point` process with its own temp directory.

    The port is chosen by the server (--port 0) and read from its "listening" log line, so two
    tests never race for a port."""

    def __init__(self, args=(), env=None, tmpdir=None, command=("agent", "access-point"),
                 db=None, wait_ready=True):
        self.own_tmp = tmpdir is None
        self.tmp = tmpdir or tempfile.mkdtemp(prefix="ah-it-")
        self.args = list(args)
        self.data_dir = self.tmp  # where the server keeps sessions/, workspaces/ (its db's dir)
        if db is None and TEST_DB_URL:
            db = new_test_db()
            self.args += ["--data-dir", self.data_dir]
        self.db = db or os.path.join(self.tmp, "state.db")
        self.command = list(command)
        self.extra_env = env or {}
        self.proc = None
        self.port = None
        self.stderr_path = None
        self.start(wait_ready=wait_ready)

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env.update({
            "XDG_CONFIG_HOME": os.path.join(self.tmp, "config"),
            "XDG_DATA_HOME": os.path.join(self.tmp, "data"),
            "XDG_STATE_HOME": os.path.join(self.tmp, "state"),
            "XDG_RUNTIME_DIR": os.path.join(self.tmp, "run"),
            "HOME": self.tmp,
        })
        os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
        env.update(self.extra_env)
        return env

    def start(self, wait_ready=True, port=0):
        self.stderr_path = os.path.join(self.tmp, "stderr-%d.log" % time.monotonic_ns())
        err = open(self.stderr_path, "wb")
        cmd = [AH_BIN] + self.command + ["--port", str(port), "--db", self.db] + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                     env=self.env())
        err.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = re.search(r'"msg":"listening".*?"port":(\d+)', self.stderr())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                raise AssertionError("ah exited with %d before listening:\n%s" %
                                     (self.proc.returncode, self.stderr()))
            time.sleep(0.02)
        else:
            raise AssertionError("ah did not start listening:\n" + self.stderr())
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/api/v1/readyz", record_it=False).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("ah never became ready:\n" + self.stderr())

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_lines(self):
        out = []
        for line in self.stderr().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def connect(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None, record_it=True,
                timeout=30):
        """Sends one request; `body` may be bytes, str, or a JSON-able object."""
        headers = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode("utf-8")
        own = conn is None
        c = conn or self.connect(timeout)
        try:
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            resp = Response(method, path, r.status, {k.lower(): v for k, v in r.getheaders()},
                            data)
        finally:
            if own:
                c.close()
        if record_it:
            record(resp)
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signals the server and returns its exit code (None if it was not running)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("ah did not exit within %ss of signal %d" % (timeout, sig))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def check_clean(self):
        """Fails if the server's stderr holds a sanitizer report."""
        text = self.stderr()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise AssertionError("sanitizer report in ah's stderr:\n" + text[-6000:])

    def kill_sessions(self):
        """Kills what the server's sessions left running: by design agents outlive the server
        (they re-attach to the next one), but a test run must not leave them behind."""
        groups = set()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    if self.tmp.encode() not in f.read():
                        continue
                groups.add(os.getpgid(int(name)))
            except OSError:
                continue
        for g in groups:
            if g > 1 and g != os.getpgid(0):
                try:
                    os.killpg(g, signal.SIGKILL)
                except OSError:
                    pass

    def unmount_all(self):
        """Unmounts what the server mounted under its directory (the overlays of branches'
        workspaces): by design they outlive the server (a restarted one finds them), but a test
        run must not leave them behind, nor delete files through them."""
        for path in mounts_under(self.tmp):
            umount_detach(path)

    def close(self):
        try:
            code = self.stop()
            self.check_clean()
            return code
        finally:
            self.kill_sessions()
            self.unmount_all()
            if self.own_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)


def mounts_under(root):
    """The mount points at or under root in this process's mount namespace, deepest first."""
    root = os.path.realpath(root).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if (point.rstrip("/") + "/").startswith(root):
                out.append(point)
    return sorted(out, key=len, reverse=True)


def umount_detach(path):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode(), 2) != 0:  # MNT_DETACH
        raise OSError(ctypes.get_errno(), "umount2 " + path)


def memory_slack_kib():
    """Extra memory a bound must allow when the server runs under AddressSanitizer: freed
    blocks wait in its quarantine (sized by quarantine_size_mb) and every block has redzones."""
    opts = os.environ.get("ASAN_OPTIONS", "")
    m = re.search(r"quarantine_size_mb=(\d+)", opts)
    if m:
        return int(m.group(1)) * 1024 * 2
    if "detect_leaks" in opts:  # ASan with its default 256 MiB quarantine
        return 512 * 1024
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_exchange(port, data, read_timeout=10, chunks=None, delay=0.0):
    """Sends raw bytes (optionally as several chunks with a delay between them) and returns
    everything the server answers until it closes or goes quiet."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    out = b""
    try:
        for i, part in enumerate(chunks or [data]):
            try:
                s.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
            if delay and i + 1 < len(chunks or [data]):
                time.sleep(delay)
            # like a real client, read an early answer while still sending: once the server
            # has answered and closed, further writes would reset the connection and lose it
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                try:
                    got = s.recv(65536)
                except ConnectionResetError:
                    got = b""
                out += got
                if not got or b"\r\n\r\n" in out:
                    break
        while True:
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            out += b
            if b"\r\n\r\n" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                m = re.search(rb"content-length: *(\d+)", head, re.I)
                if m and len(rest) >= int(m.group(1)):
                    break
        return out
    finally:
        s.close()


class ServerTest(unittest.TestCase):
    """A TestCase with one shared server per class (started in setUpClass)."""
    server_args = ()
    server_env = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server(args=cls.server_args, env=cls.server_env)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.close()
        if code not in (0, None):
            raise AssertionError("ah exited with %s:\n%s" % (code, cls.server.stderr()[-4000:]))

    def assertProblem(self, resp, status, type_slug=None):
        self.assertEqual(resp.status, status, resp)
        self.assertEqual(resp.header("content-type"), "application/problem+json", resp)
        body = resp.json()
        self.assertEqual(body["status"], status)
        self.assertIn("title", body)
        self.assertIn("detail", body)
        self.assertEqual(body["requestId"], resp.header("x-request-id"))
        if type_slug:
            self.assertEqual(body["type"], "/problems/" + type_slug)
        return body


def main():
    """Runs the calling module's tests; exits non-zero on any failure."""
    prog = unittest.main(module="__main__", exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)


# The contract check (contract.py beside this file): every recorded response is held to
# api/openapi.json, and a mismatch fails the test that received it. AH_CONTRACT=0 turns it off.
if os.environ.get("AH_CONTRACT", "1") != "0":
    if os.path.dirname(os.path.abspath(__file__)) not in map(os.path.abspath, sys.path):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import contract  # noqa: E402  (after RESPONSE_HOOKS exists)
    contract.install(RESPONSE_HOOKS)
