"""Agents in a sandbox (issue 19, D51, D52), with the real bubblewrap: every session here runs a
hostile agent (sandbox_agent.py, a custom agent whose prompt lists what it tries) and the test
judges what it managed. Covered: the default profile's isolation (database, other sessions'
workspaces, /etc/shadow, the server user's ~/.ssh, the recorder socket, writes outside the
workspace also through a planted symlink, other processes and signals); the offline profile's
network; memory, process, CPU, file-size and wall-time limits that fail their own session only;
pause/resume/stop, the PTY recording and file-change events inside the sandbox; 422 for what the
host cannot provide; GET /runtimes."""

import glob
import json
import os
import shutil
import socket
import tempfile
import threading
import time

import ahtest
from ahtest import Server
from sessiontest import (agent_group, create, events, processes, session, task, wait_for,
                         wait_status)

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT = os.path.join(HERE, "sandbox_agent.py")


def config(tmp, extra=""):
    """A config file: the hostile agent, and its directory visible read-only in the profiles
    used here (the checkout may live under /tmp, which a sandbox replaces by a private one)."""
    path = os.path.join(tmp, "sandbox.toml")
    with open(path, "w") as f:
        f.write("[agents.hostile]\ncommand = %s\nformat = \"text\"\n" % json.dumps(AGENT))
        for prof in ("default", "offline"):
            f.write("[sandbox.%s]\nread-only = [%s]\n" % (prof, json.dumps(HERE)))
        f.write(extra)
    return path


def hostile(actions, **runtime):
    body = task(agent="hostile", prompt=json.dumps(actions))
    body["runtime"].update(runtime)
    return body


def results(server, sid):
    """The agent's RESULT lines as [action, target, outcome, rest of the line]."""
    out = []
    for e in events(server, sid, type="log"):
        msg = e.get("message", "")
        if msg.startswith("RESULT "):
            out.append((msg.split(" ", 4) + [""])[1:5])
    return out


def result(server, sid, action, target=None):
    for r in results(server, sid):
        if r[0] == action and (target is None or r[1] == str(target)):
            return r
    raise AssertionError("no RESULT %s %s in %s" % (action, target, results(server, sid)))


class SandboxTest(ahtest.ServerTest):
    extra_config = ""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-sbx-")
        # the server user's secrets: its home is the server's temp directory (ahtest sets HOME)
        os.makedirs(os.path.join(cls.tmp, ".ssh"), mode=0o700)
        with open(os.path.join(cls.tmp, ".ssh", "id_ed25519"), "w") as f:
            f.write("-----BEGIN OPENSSH PRIVATE KEY----- server-secret\n")
        cls.server = Server(args=("--config", config(cls.tmp, cls.extra_config),
                                  "--max-concurrent-tasks", "8", "--stop-grace-ms", "1500"),
                            tmpdir=cls.tmp)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_agent(self, actions, status="completed", timeout=60, **runtime):
        sid = create(self.server, hostile(actions, **runtime))["id"]
        s = wait_status(self.server, sid, {"completed", "failed", "stopped"}, timeout)
        self.assertEqual(s["status"], status, s)
        return sid, s


class Isolation(SandboxTest):
    def test_default_profile_hides_the_server_and_other_sessions(self):
        srv = self.server
        # a victim session whose workspace holds a secret, running while the attacker runs
        victim = create(srv, task([{"edit": "secret.txt", "content": "victim-secret\n"},
                                   {"sleep": 60000}]))["id"]
        wait_status(srv, victim, "running")
        vws = session(srv, victim)["workspace"]["mountPath"]
        wait_for(lambda: os.path.exists(os.path.join(vws, "secret.txt")), 30, "the victim's file")
        victim_recorder = [p for p, v in processes(victim).items() if " agent record " in v[3]][0]
        sock = glob.glob(os.path.join(self.tmp, "run", "ah", "*.sock"))[0]
        outside = os.path.join(self.tmp, "outside.txt")
        with open(outside, "w") as f:
            f.write("original\n")
        db = srv.db if os.path.isabs(srv.db) else None
        actions = [
            {"do": "read", "path": os.path.join(vws, "secret.txt"), "marker": "victim-secret"},
            {"do": "list", "path": vws},
            {"do": "list", "path": os.path.join(self.tmp, "workspaces")},
            {"do": "read", "path": "/etc/shadow", "marker": "root:"},
            {"do": "read", "path": os.path.join(self.tmp, ".ssh", "id_ed25519"),
             "marker": "PRIVATE"},
            {"do": "read", "path": os.path.join(self.tmp, "sandbox.toml"), "marker": "hostile"},
            {"do": "connect", "unix": sock},
            {"do": "write", "path": "/etc/ah-sandbox-pwned"},
            {"do": "write", "path": os.path.join(self.tmp, "pwned.txt")},
            {"do": "write", "path": os.path.join(vws, "pwned.txt")},
            {"do": "symlink-write", "link": "evil", "target": outside},
            {"do": "symlink-write", "link": "evil2", "target": os.path.join(vws, "secret.txt")},
            {"do": "processes"},
            {"do": "kill", "pid": srv.proc.pid},
            {"do": "kill", "pid": victim_recorder},
            {"do": "write", "path": "own.txt", "content": "mine"},
            {"do": "unshare-user"},
            {"do": "env", "names": ["HOME", "AH_SESSION_ID", "AH_EVENTS_FD", "AH_RECORDER_TOKEN"]},
        ]
        if db:
            actions.insert(0, {"do": "read", "path": db, "marker": "SQLite"})
        sid, s = self.run_agent(actions)
        ws = s["workspace"]["mountPath"]

        def denied(action, target, reason=None):
            r = result(srv, sid, action, target)
            # a hidden file reads as empty (/dev/null over it) or not at all; never its content
            ok = r[2] == "denied" or (action == "read" and r[2] == "ok" and r[3].endswith("-"))
            self.assertTrue(ok, "%s %s: %s" % (action, target, r))
            if reason and r[2] == "denied":
                self.assertIn(reason, r[3], r)

        if db:
            denied("read", db)
        denied("read", os.path.join(vws, "secret.txt"), "ENOENT")
        denied("list", vws, "ENOENT")
        # the workspaces directory shows the agent's own workspace and nothing else
        r = result(srv, sid, "list", os.path.join(self.tmp, "workspaces"))
        self.assertEqual(r[2:], ["ok", sid], r)
        denied("read", "/etc/shadow")
        denied("read", os.path.join(self.tmp, ".ssh", "id_ed25519"))
        denied("read", os.path.join(self.tmp, "sandbox.toml"))
        denied("connect", sock)
        denied("write", "/etc/ah-sandbox-pwned", "EROFS")
        denied("unshare-user", "self")  # no user namespace of its own (capabilities there)
        # writes to the data directory's path (or through links) may succeed inside, into the
        # sandbox's own throw-away /tmp when the data directory is under /tmp; what matters is
        # that nothing reached the server's files
        self.assertTrue(os.path.isdir(self.tmp))
        self.assertFalse(os.path.exists("/etc/ah-sandbox-pwned"))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "pwned.txt")))
        self.assertFalse(os.path.exists(os.path.join(vws, "pwned.txt")))
        with open(outside) as f:
            self.assertEqual(f.read(), "original\n")
        with open(os.path.join(vws, "secret.txt")) as f:
            self.assertEqual(f.read(), "victim-secret\n")
        # no process of the server or of another session is visible, nor can be signalled
        # (its own processes' command lines name the victim's paths: the prompt lists them)
        cmdlines = " | ".join(c for c in json.loads(result(srv, sid, "processes")[3])
                              if sid not in c and "sandbox_agent.py" not in c)
        self.assertLess(len(json.loads(result(srv, sid, "processes")[3])), 8)
        self.assertNotIn("access-point", cmdlines)
        self.assertNotIn("agent record", cmdlines)
        self.assertNotIn(victim, cmdlines)
        denied("kill", srv.proc.pid, "ESRCH")
        denied("kill", victim_recorder, "ESRCH")
        # ... and the victim is unharmed
        self.assertEqual(session(srv, victim)["status"], "running")
        # its own workspace and $HOME are writable, its home is not the server user's
        self.assertEqual(result(srv, sid, "write", "own.txt")[2], "ok")
        with open(os.path.join(ws, "own.txt")) as f:
            self.assertEqual(f.read(), "mine")
        env = json.loads(result(srv, sid, "env")[3])
        self.assertNotEqual(env["HOME"], self.tmp)
        self.assertEqual(env["AH_SESSION_ID"], sid)
        self.assertEqual(env["AH_EVENTS_FD"], "3")       # the events pipe passes in (D16)
        self.assertIsNone(env["AH_RECORDER_TOKEN"])      # the server link's token does not
        # the session says what it runs under
        self.assertEqual(s["runtime"]["sandbox"], "default")
        self.assertEqual(s["sandbox"]["profile"], "default")
        self.assertEqual(s["sandbox"]["network"], "allow")
        self.assertEqual(srv.post("/api/v1/sessions/%s/stop" % victim).status, 202)
        wait_status(srv, victim, "stopped")


def outside_tmp():
    """A writable directory outside /tmp and /var/tmp (which a sandbox replaces wholesale, so
    that nothing there is ever hidden mount by mount): the user's home, else the build
    directory, else /dev/shm."""
    for d in (os.path.expanduser("~"), os.path.dirname(os.path.abspath(ahtest.AH_BIN))):
        real = os.path.realpath(d)
        if (os.access(real, os.W_OK) and not real.startswith("/tmp/") and
                not real.startswith("/var/tmp/")):
            return real
    return "/dev/shm"


class HomeLayout(SandboxTest):
    """The usual layout: the server user's home outside /tmp, holding the data directory, the
    runtime directory and the configuration (here they are all that home, as ahtest lays them
    out). Each is hidden inside a hidden home; bubblewrap refused to start when the covered
    ones were remounted read-only as if they were mount points of their own."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-sbx-home-", dir=outside_tmp())
        os.makedirs(os.path.join(cls.tmp, ".ssh"), mode=0o700)
        with open(os.path.join(cls.tmp, ".ssh", "id_ed25519"), "w") as f:
            f.write("-----BEGIN OPENSSH PRIVATE KEY----- server-secret\n")
        cls.server = Server(args=("--config", config(cls.tmp), "--max-concurrent-tasks", "8"),
                            tmpdir=cls.tmp)

    def test_data_directory_inside_the_users_home(self):
        srv = self.server
        db = srv.db if os.path.isabs(srv.db) else None
        actions = [{"do": "write", "path": "own.txt", "content": "mine"},
                   {"do": "read", "path": os.path.join(self.tmp, ".ssh", "id_ed25519"),
                    "marker": "PRIVATE"},
                   {"do": "read", "path": os.path.join(self.tmp, "sandbox.toml"),
                    "marker": "hostile"},
                   {"do": "list", "path": os.path.join(self.tmp, "workspaces")},
                   {"do": "write", "path": os.path.join(self.tmp, "pwned.txt")},
                   {"do": "env", "names": ["HOME"]}]
        if db:
            actions.append({"do": "read", "path": db, "marker": "SQLite"})
        sid, s = self.run_agent(actions)
        self.assertEqual(result(srv, sid, "write", "own.txt")[2], "ok")
        with open(os.path.join(s["workspace"]["mountPath"], "own.txt")) as f:
            self.assertEqual(f.read(), "mine")
        for target in [os.path.join(self.tmp, ".ssh", "id_ed25519"),
                       os.path.join(self.tmp, "sandbox.toml")] + ([db] if db else []):
            r = result(srv, sid, "read", target)
            self.assertTrue(r[2] == "denied" or r[3].endswith("-"), r)
        # the workspaces directory shows the agent's own workspace and nothing else
        self.assertEqual(result(srv, sid, "list", os.path.join(self.tmp, "workspaces"))[2:],
                         ["ok", sid])
        self.assertEqual(result(srv, sid, "write", os.path.join(self.tmp, "pwned.txt"))[2],
                         "denied")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "pwned.txt")))
        self.assertNotEqual(json.loads(result(srv, sid, "env")[3])["HOME"], self.tmp)


def visible_dir():
    """A writable directory that a sandbox shows unless something hides it: outside /tmp,
    /var/tmp and /dev (private in a sandbox), the users' homes and /root (hidden as the server
    user's secrets): the build directory, else /var/lib (writable for root, as in CI)."""
    for d in (os.path.dirname(os.path.abspath(ahtest.AH_BIN)), "/var/lib", "/srv", "/opt"):
        real = os.path.realpath(d)
        if os.access(real, os.W_OK) and not any(
                real == p or real.startswith(p + "/")
                for p in ("/tmp", "/var/tmp", "/dev", "/root", "/home",
                          os.path.realpath(os.path.expanduser("~")))):
            return real
    raise AssertionError("no writable directory outside /tmp, /dev and the homes to test with")


class SymlinkedDataDir(SandboxTest):
    """The data directory named through a symbolic link (a home or data disk mounted elsewhere
    and linked into place): hiding the link's own path hides nothing (a link is not a mount
    point, and one under /tmp is in the sandbox's private /tmp anyway), so the directory it
    leads to must be hidden by its real path."""

    @classmethod
    def setUpClass(cls):
        cls.real = tempfile.mkdtemp(prefix="ah-sbx-real-", dir=visible_dir())
        cls.link = tempfile.mktemp(prefix="ah-sbx-link-")
        os.symlink(cls.real, cls.link)
        cls.server = Server(args=("--config", config(cls.real), "--max-concurrent-tasks", "8"),
                            tmpdir=cls.link)

    @classmethod
    def tearDownClass(cls):
        cls.tmp = cls.real
        super().tearDownClass()
        os.unlink(cls.link)
        shutil.rmtree(cls.real, ignore_errors=True)

    def test_the_link_target_is_hidden(self):
        srv = self.server
        db = os.path.join(self.real, "state.db") if os.path.isabs(srv.db) else None
        actions = [{"do": "write", "path": "own.txt", "content": "mine"},
                   {"do": "read", "path": os.path.join(self.real, "sandbox.toml"),
                    "marker": "hostile"},
                   {"do": "list", "path": os.path.join(self.real, "workspaces")},
                   {"do": "write", "path": os.path.join(self.real, "pwned.txt")}]
        if db:
            actions.append({"do": "read", "path": db, "marker": "SQLite"})
        sid, s = self.run_agent(actions)
        self.assertEqual(result(srv, sid, "write", "own.txt")[2], "ok")
        for target in [os.path.join(self.real, "sandbox.toml")] + ([db] if db else []):
            r = result(srv, sid, "read", target)
            self.assertTrue(r[2] == "denied" or r[3].endswith("-"), r)
        self.assertEqual(result(srv, sid, "write", os.path.join(self.real, "pwned.txt"))[2],
                         "denied")
        self.assertFalse(os.path.exists(os.path.join(self.real, "pwned.txt")))


class Network(SandboxTest):
    def test_offline_has_no_network_and_default_has(self):
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(16)
        port = lst.getsockname()[1]
        accepted = []
        lst.settimeout(0.2)
        stop = threading.Event()

        def accept_loop():
            while not stop.is_set():
                try:
                    c, _ = lst.accept()
                    accepted.append(c)
                except OSError:
                    pass

        t = threading.Thread(target=accept_loop)
        t.start()
        try:
            act = [{"do": "connect", "host": "127.0.0.1", "port": port}]
            off, s = self.run_agent(act, sandbox="offline")
            self.assertEqual(s["sandbox"]["network"], "none")
            r = result(self.server, off, "connect", port)
            self.assertEqual(r[2], "denied", r)
            self.assertEqual(accepted, [])
            on, _ = self.run_agent(act)  # default: agents call their model APIs
            self.assertEqual(result(self.server, on, "connect", port)[2], "ok")
            wait_for(lambda: len(accepted) == 1, 20, "the default session's connection")
        finally:
            stop.set()
            t.join()
            lst.close()
            for c in accepted:
                c.close()


class EchoListener:
    """A loopback TCP listener outside the sandbox that answers each line with its name."""

    def __init__(self, name):
        self.name, self.seen = name, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            with c:
                c.settimeout(10)
                try:
                    line = c.makefile("rb").readline()
                    self.seen.append(line)
                    c.sendall(b"pong-" + self.name.encode() + b"\n")
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


class AllowList(SandboxTest):
    """network = "allow-list": TCP only to the listed destinations, through the relay (D52)."""

    @classmethod
    def setUpClass(cls):
        cls.listed = EchoListener("listed")
        cls.unlisted = EchoListener("unlisted")
        cls.extra_config = (
            "[sandbox.egress]\nnetwork = \"allow-list\"\nread-only = [%s]\n"
            "allow-hosts = [\"127.0.0.1:%d\", \"localhost:%d\", \"localhost:443\"]\n"
            % (json.dumps(HERE), cls.listed.port, cls.listed.port))
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.listed.close()
            cls.unlisted.close()

    def test_only_listed_destinations_are_reachable(self):
        lp, up = self.listed.port, self.unlisted.port
        act = [{"do": "echo", "host": "127.0.0.1", "port": lp},
               {"do": "echo", "host": "localhost", "port": lp},   # by name: the sandbox's hosts
               {"do": "echo", "host": "127.0.0.1", "port": up},   # listening, but not listed
               {"do": "echo", "host": "127.0.0.2", "port": lp},   # the listed port elsewhere
               {"do": "echo", "host": "localhost", "port": 443},  # listed: a port below 1024
               {"do": "connect", "host": "example.com", "port": 443},  # no DNS, no route
               {"do": "unshare-user"},
               {"do": "processes"}]
        sid, s = self.run_agent(act, sandbox="egress")
        self.assertEqual(s["sandbox"]["network"], "allow-list")
        self.assertEqual(s["sandbox"]["allowHosts"], ["127.0.0.1:%d" % lp, "localhost:%d" % lp,
                                                      "localhost:443"])
        ok = result(self.server, sid, "echo", "127.0.0.1:%d" % lp)
        self.assertEqual(ok[2:4], ["ok", "pong-listed"], ok)
        by_name = result(self.server, sid, "echo", "localhost:%d" % lp)
        self.assertEqual(by_name[2:4], ["ok", "pong-listed"], by_name)
        self.assertEqual(len(self.listed.seen), 2)
        self.assertEqual(self.listed.seen, [b"ping\n", b"ping\n"])
        for target in ("127.0.0.1:%d" % up, "127.0.0.2:%d" % lp):
            r = result(self.server, sid, "echo", target)
            self.assertEqual(r[2], "denied", r)
        self.assertEqual(self.unlisted.seen, [])
        self.assertEqual(result(self.server, sid, "connect", 443)[2], "denied")
        # the relay listens on a listed port below 1024 too: the connection is accepted inside
        # (and closed, or answered, by whatever the host has on that port)
        low = result(self.server, sid, "echo", "localhost:443")
        self.assertIn(low[2], ("ok", "closed"), low)
        # no nested user namespace, as in the other profiles
        self.assertEqual(result(self.server, sid, "unshare-user")[2:4], ["denied", "EPERM"])
        # the inside end is ah-net, the small program built beside ah (faster to start)
        cmds = json.loads(result(self.server, sid, "processes")[3])
        self.assertTrue(any(c.split(" ")[0].endswith("/ah-net") and " forward --dir " in c
                            for c in cmds), cmds)
        # without the sandbox's network the same agent reaches the unlisted port: the relay,
        # not the listener, is what refused it
        sid2, _ = self.run_agent([{"do": "echo", "host": "127.0.0.1", "port": up}])
        self.assertEqual(result(self.server, sid2, "echo", "127.0.0.1:%d" % up)[2:4],
                         ["ok", "pong-unlisted"])
        # the relay's processes ended with the session
        wait_for(lambda: not processes(sid), 20, "the relay's processes to be gone")


def cgroup_dirs(sid):
    """The --cgroup directories of the session's recorder (empty without cgroups)."""
    for _, v in processes(sid).items():
        if " agent record " in v[3]:
            words = v[3].split(" ")
            return [words[i + 1] for i, w in enumerate(words) if w == "--cgroup"]
    return []


class Limits(SandboxTest):
    def test_memory_hog_fails_its_own_session_with_oom(self):
        bystander = create(self.server, task([{"sleep": 1500}, {"log": "still here"}]))["id"]
        sid, s = self.run_agent([{"do": "hog", "mib": 1024}], status="failed", timeout=120,
                                resources={"cpu": 1, "memoryMiB": 64})
        self.assertEqual(s["sandbox"]["limits"]["memoryMiB"], 64)
        if s["sandbox"]["enforcement"] == "cgroup":
            self.assertIn("out of memory", s["error"])
        self.assertFalse([r for r in results(self.server, sid) if r[0] == "hog"])
        wait_status(self.server, bystander, "completed", 60)
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)

    def test_process_limit_refuses_forks(self):
        sid, s = self.run_agent([{"do": "fork-count", "max": 300}],
                                resources={"cpu": 1, "memoryMiB": 512, "pids": 24})
        r = result(self.server, sid, "fork-count")
        self.assertEqual(r[1], "refused", r)
        self.assertLess(int(r[2].split(" ")[0]), 24)
        self.assertEqual(s["sandbox"]["limits"]["pids"], 24)

    def test_fork_bomb_is_contained_and_ended_by_the_wall_time(self):
        bomb = create(self.server, hostile([{"do": "fork-bomb"}],
                                           resources={"cpu": 1, "memoryMiB": 256, "pids": 32,
                                                      "wallTimeSec": 4}))["id"]
        wait_status(self.server, bomb, "running")
        # meanwhile the server and another session go on
        other = create(self.server, task([{"log": "unbothered"}]))["id"]
        wait_status(self.server, other, "completed", 60)
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)
        s = wait_status(self.server, bomb, "failed", 60)
        self.assertIn("wall time limit", s["error"])
        wait_for(lambda: not processes(bomb), 20, "the bomb's processes to be gone")

    def test_file_size_limit(self):
        sid, s = self.run_agent([{"do": "file-size", "path": "big.bin", "mib": 10}],
                                resources={"cpu": 1, "memoryMiB": 256, "fileSizeMiB": 2})
        r = result(self.server, sid, "file-size")
        self.assertEqual(r[1], "refused", r)
        self.assertIn("EFBIG", r[3])
        self.assertLessEqual(os.path.getsize(os.path.join(s["workspace"]["mountPath"], "big.bin")),
                             2 << 20)

    def test_cpu_quota_throttles(self):
        # a twentieth of a core: throttled even when this (shared) machine is busy
        sid = create(self.server, hostile([{"do": "burn", "procs": 3, "seconds": 60}],
                                          resources={"cpu": 0.05, "memoryMiB": 256}))["id"]
        s = wait_status(self.server, sid, "running")
        self.assertEqual(s["sandbox"]["enforcement"], "cgroup")  # this host has cgroups
        self.assertEqual(s["sandbox"]["limits"]["cpu"], 0.05)
        cpu = wait_for(lambda: [d for d in cgroup_dirs(sid) if os.path.exists(
            os.path.join(d, "cpu.stat"))], 20, "the session's cpu cgroup")[0]

        def throttled():
            with open(os.path.join(cpu, "cpu.stat")) as f:
                stat = dict(line.split() for line in f)
            return int(stat.get("nr_throttled", 0)) > 0

        wait_for(throttled, 60, "the CPU quota to throttle the burners")
        with open(os.path.join(s["workspace"]["mountPath"], "stop"), "w"):
            pass
        wait_status(self.server, sid, "completed", 60)
        wait_for(lambda: not os.path.exists(cpu), 20, "the session's cgroup to be removed")


    def test_cgroups_go_with_a_killed_session(self):
        # DELETE kills the recorder too, so the server removes the session's cgroups itself
        sid = create(self.server, hostile([{"do": "sleep", "seconds": 60}],
                                          resources={"cpu": 1, "memoryMiB": 256,
                                                     "pids": 64}))["id"]
        wait_status(self.server, sid, "running")
        dirs = wait_for(lambda: cgroup_dirs(sid), 20, "the session's cgroups")
        self.assertTrue(all(os.path.isdir(d) for d in dirs), dirs)
        self.assertEqual(self.server.request("DELETE", "/api/v1/sessions/" + sid).status, 204)
        wait_for(lambda: not any(os.path.exists(d) for d in dirs), 30,
                 "the killed session's cgroups to be removed")


class Control(SandboxTest):
    def test_pause_resume_stop_recording_and_file_events(self):
        srv = self.server
        sid = create(srv, hostile([{"do": "tick", "path": "ticks.txt"}]))["id"]
        s = wait_status(srv, sid, "running")
        ticks = os.path.join(s["workspace"]["mountPath"], "ticks.txt")
        wait_for(lambda: os.path.exists(ticks) and os.path.getsize(ticks) > 20, 30, "ticks")
        self.assertEqual(srv.post("/api/v1/sessions/%s/pause" % sid).status, 202)
        wait_status(srv, sid, "paused")
        group = agent_group(sid)
        self.assertGreaterEqual(len(group), 3)  # bwrap, its init, ah agent start, the agent
        wait_for(lambda: all(v[0] == "T" for v in agent_group(sid).values()), 20,
                 "every process in the sandbox to be stopped")
        size = os.path.getsize(ticks)
        time.sleep(0.5)  # a paused agent writes nothing: nothing to wait for but time
        self.assertEqual(os.path.getsize(ticks), size)
        self.assertEqual(srv.post("/api/v1/sessions/%s/resume" % sid).status, 202)
        wait_status(srv, sid, "running")
        wait_for(lambda: os.path.getsize(ticks) > size, 30, "ticks after the resume")
        self.assertEqual(srv.post("/api/v1/sessions/%s/stop" % sid).status, 202)
        wait_status(srv, sid, "stopped", 60)
        wait_for(lambda: not processes(sid), 20, "the sandbox's processes to be gone")
        # the PTY recording and the file-change events, as outside a sandbox
        rec = srv.get("/api/v1/sessions/%s/recording" % sid, record_it=False)
        self.assertEqual(rec.status, 200)
        self.assertIn(b"tick 1", rec.body)
        evs = events(srv, sid)
        self.assertTrue([e for e in evs if e["type"] == "file_edit" and
                         e.get("file_path") == "ticks.txt"], evs[-5:])


class Refusals(SandboxTest):
    # a host without podman (test_sandbox_devcontainer.py runs the one with it)
    extra_config = "[sandbox]\npodman = \"/nonexistent/podman\"\n"

    def assertRefused(self, body, *words):
        r = self.server.post("/api/v1/tasks", body=body)
        p = self.assertProblem(r, 422, "runtime-unavailable")
        for w in words:
            self.assertIn(w, p["detail"])

    def test_unavailable_runtimes_are_422(self):
        self.assertRefused(hostile([], sandbox="nope"), "unknown sandbox profile nope",
                           "default, offline")
        self.assertRefused(hostile([], sandbox="disabled"), "allow-disabled")
        body = hostile([])
        body["runtime"] = {"type": "disabled"}
        self.assertRefused(body, "allow-disabled")
        body["runtime"] = {"type": "devcontainer", "devcontainerPath": ".devcontainer.json"}
        self.assertRefused(body, "devcontainer", "podman")
        r = self.server.post("/api/v1/tasks", body=hostile([], sandbox=7))
        self.assertProblem(r, 400, "validation")
        rt = self.server.get("/api/v1/runtimes").json()
        self.assertEqual(rt["items"], [{"type": "local", "sandboxProfiles": ["default",
                                                                               "offline"]}])
        self.assertEqual(rt["defaultSandbox"], "default")
        self.assertIn("podman", rt["unavailable"][0]["reason"])


class NoBubblewrap(SandboxTest):
    extra_config = "[sandbox]\nbwrap = \"/nonexistent/bwrap\"\npodman = \"/nonexistent/podman\"\n"

    def test_a_missing_bubblewrap_refuses_sandboxed_tasks(self):
        r = self.server.post("/api/v1/tasks", body=hostile([]))
        p = self.assertProblem(r, 422, "runtime-unavailable")
        self.assertIn("bubblewrap", p["detail"])
        self.assertIn("not installed", p["detail"])
        rt = self.server.get("/api/v1/runtimes").json()
        self.assertEqual(rt["items"], [])
        self.assertEqual({u["type"] for u in rt["unavailable"]}, {"local", "devcontainer"})


class Disabled(SandboxTest):
    extra_config = "[sandbox]\nallow-disabled = true\n"

    def test_disabled_runs_unsandboxed_only_when_allowed(self):
        # the contrast that shows the sandbox is what hides the server: without one, the agent
        # sees the data directory
        sid, s = self.run_agent([{"do": "list", "path": self.tmp}], sandbox="disabled")
        self.assertEqual(result(self.server, sid, "list")[2], "ok")
        self.assertEqual(s["sandbox"]["profile"], "disabled")
        rt = self.server.get("/api/v1/runtimes").json()
        self.assertIn("disabled", rt["items"][0]["sandboxProfiles"])


if __name__ == "__main__":
    ahtest.main()
