#!/usr/bin/env python3
"""A hostile agent for tests/integration/test_sandbox.py: a custom agent (D19) whose prompt is a
JSON list of actions. It tries what an agent must not be able to do from inside the sandbox, and
prints one line per attempt ("RESULT <action> <target> <outcome>") that the test reads from the
session's log events. It never decides anything itself: the test judges the outcomes."""

import errno
import json
import os
import signal
import socket
import sys
import time


def say(*words):
    print("RESULT", *words, flush=True)


def err_name(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) else type(e).__name__


def act(a):
    kind = a["do"]
    if kind == "read":
        try:
            with open(a["path"], "rb") as f:
                data = f.read(1 << 20)
            say("read", a["path"], "ok", len(data), "marker" if a.get("marker", "\0") in
                data.decode("latin-1") else "-")
        except OSError as e:
            say("read", a["path"], "denied", err_name(e))
    elif kind == "list":
        try:
            say("list", a["path"], "ok", ",".join(sorted(os.listdir(a["path"]))) or "-")
        except OSError as e:
            say("list", a["path"], "denied", err_name(e))
    elif kind == "write":
        try:
            with open(a["path"], "w") as f:
                f.write(a.get("content", "pwned"))
            say("write", a["path"], "ok")
        except OSError as e:
            say("write", a["path"], "denied", err_name(e))
    elif kind == "symlink-write":  # plant a link in the workspace, then write through it
        try:
            os.symlink(a["target"], a["link"])
            with open(a["link"], "w") as f:
                f.write("pwned")
            say("symlink-write", a["target"], "ok")
        except OSError as e:
            say("symlink-write", a["target"], "denied", err_name(e))
    elif kind == "kill":
        try:
            os.kill(a["pid"], 0)
            say("kill", a["pid"], "ok")
        except OSError as e:
            say("kill", a["pid"], "denied", err_name(e))
    elif kind == "processes":
        cmds = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open("/proc/%s/cmdline" % name, "rb") as f:
                        cmds.append(f.read().replace(b"\0", b" ").decode("utf-8", "replace"))
                except OSError:
                    pass
        say("processes", "all", "ok", json.dumps(cmds))
    elif kind == "connect":
        s = socket.socket(socket.AF_UNIX if "unix" in a else socket.AF_INET)
        s.settimeout(3)
        try:
            s.connect(a["unix"] if "unix" in a else (a["host"], a["port"]))
            say("connect", a.get("unix", a.get("port")), "ok")
        except OSError as e:
            say("connect", a.get("unix", a.get("port")), "denied", err_name(e))
        finally:
            s.close()
    elif kind == "echo":  # connect, send a line, report the answer (a relayed connection)
        target = "%s:%d" % (a["host"], a["port"])
        try:
            with socket.create_connection((a["host"], a["port"]), timeout=10) as s:
                s.sendall(b"ping\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(100)
                    if not chunk:
                        break
                    data += chunk
            say("echo", target, "ok" if data else "closed", data.decode().strip() or "-")
        except OSError as e:
            say("echo", target, "denied", err_name(e))
    elif kind == "unshare-user":  # a user namespace of its own would give it capabilities
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        pid = os.fork()  # in a child: the namespace would change the agent itself
        if pid == 0:
            rc = libc.unshare(0x10000000)  # CLONE_NEWUSER
            os._exit(0 if rc == 0 else min(ctypes.get_errno(), 255) or 255)
        _, st = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(st)
        say("unshare-user", "self", "ok" if code == 0 else "denied",
            errno.errorcode.get(code, str(code)))
    elif kind == "env":
        say("env", "all", "ok", json.dumps({k: os.environ.get(k) for k in a["names"]}))
    elif kind == "hog":  # touch memory until something stops us
        chunks = []
        for i in range(a["mib"] // 8):
            chunks.append(b"\x01" * (8 << 20))
        say("hog", "survived", len(chunks) * 8)
    elif kind == "fork-count":  # children that wait; count forks until one is refused
        kids = []
        try:
            for _ in range(a["max"]):
                pid = os.fork()
                if pid == 0:
                    time.sleep(60)
                    os._exit(0)
                kids.append(pid)
            say("fork-count", "unlimited", len(kids))
        except OSError as e:
            say("fork-count", "refused", len(kids), err_name(e))
        for k in kids:
            os.kill(k, signal.SIGKILL)
        for k in kids:
            os.waitpid(k, 0)
        if a.get("fail"):
            sys.exit(3)
    elif kind == "fork-bomb":  # every process forks forever; only the sandbox stops it
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)
    elif kind == "file-size":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        written = 0
        try:
            with open(a["path"], "wb") as f:
                for _ in range(a["mib"]):
                    f.write(b"\x02" * (1 << 20))
                    f.flush()
                    written += 1 << 20
            say("file-size", "unlimited", written)
        except OSError as e:
            say("file-size", "refused", written, err_name(e))
    elif kind == "burn":  # busy processes until `stop` appears in the workspace
        kids = []
        for _ in range(a["procs"]):
            pid = os.fork()
            if pid == 0:
                deadline = time.monotonic() + a["seconds"]
                while not os.path.exists("stop") and time.monotonic() < deadline:
                    for _ in range(20000):
                        pass
                os._exit(0)
            kids.append(pid)
        for k in kids:
            os.waitpid(k, 0)
        say("burn", "done")
    elif kind == "tick":  # append a line to a workspace file until `stop` appears
        n = 0
        while not os.path.exists("stop"):
            n += 1
            with open(a["path"], "a") as f:
                f.write("tick %d\n" % n)
            print("tick", n, flush=True)
            time.sleep(0.1)
        say("tick", "stopped", n)
    elif kind == "sleep":
        time.sleep(a["seconds"])
    else:
        say(kind, "unknown-action")


def main():
    actions = json.loads(sys.argv[1])
    for a in actions:
        act(a)
    say("end", "ok")


if __name__ == "__main__":
    main()
