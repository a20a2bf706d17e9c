"""Helpers for tests that run real sessions: task bodies, waiting for states, and looking at the
session's processes through /proc."""

import datetime
import json
import os
import time

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
TERMINAL = {"stopped", "completed", "failed", "cancelled"}


def task(scenario=None, agent="scripted", count=1, prompt="do the thing", **extra):
    a = {"type": agent, "count": count}
    if scenario is not None:
        a["settings"] = {"scenario": scenario}
    body = {"prompt": prompt, "repo": {"mode": "none"}, "runtime": {"type": "local"},
            "agents": [a]}
    body.update(extra)
    return body


def create(server, body, headers=None):
    r = server.post("/api/v1/tasks", body=body, headers=headers)
    assert r.status == 201, r
    return r.json()


def session(server, sid):
    r = server.get("/api/v1/sessions/" + sid)
    assert r.status == 200, r
    return r.json()


def wait_status(server, sid, wanted, timeout=30):
    """Polls until the session's status is in `wanted` (a string or a set)."""
    wanted = {wanted} if isinstance(wanted, str) else set(wanted)
    deadline = time.monotonic() + timeout
    s = None
    while time.monotonic() < deadline:
        s = session(server, sid)
        if s["status"] in wanted:
            return s
        if s["status"] in TERMINAL and not (wanted & TERMINAL):
            raise AssertionError("session ended as %s while waiting for %s: %s"
                                 % (s["status"], wanted, s))
        time.sleep(0.05)
    raise AssertionError("session %s still %s after %ss (wanted %s): %s\n%s"
                         % (sid, s and s["status"], timeout, wanted,
                            json.dumps(s and {k: s.get(k) for k in ("error", "exitCode")}),
                            server.stderr()[-3000:]))


def events(server, sid, **query):
    """Every event of a session, oldest first (follows pages)."""
    out, page = [], 1
    while True:
        q = dict(query, sort="asc", perPage="200", page=str(page))
        qs = "&".join("%s=%s" % kv for kv in q.items())
        r = server.get("/api/v1/sessions/%s/events?%s" % (sid, qs))
        assert r.status == 200, r
        body = r.json()
        out += body["items"]
        if body["nextPage"] is None:
            return out
        page = body["nextPage"]


def statuses(server, sid):
    return [e["status"] for e in events(server, sid, type="status")]


def processes(sid):
    """{pid: (state, pgrp, cpu ticks, cmdline)} of every process of the session (found by the
    AH_SESSION_ID the server puts in their environment)."""
    found = {}
    marker = ("AH_SESSION_ID=%s" % sid).encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                if marker not in f.read().split(b"\0"):
                    continue
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(name)] = (fields[0], int(fields[2]), int(fields[11]) + int(fields[12]), cmd)
    return found


def is_agent_start(cmd):
    args = cmd.split(" ")
    return args[1:3] == ["agent", "start"]


def is_sandbox(cmd):
    """The sandbox around `ah agent start` before it has started it (bwrap, named by its path
    or its name; env in earlier versions)."""
    return os.path.basename(cmd.split(" ")[0]) in ("bwrap", "env")


def agent_group(sid, started=True):
    """The processes of the agent's process group (everything but the recorder); with
    started=False also while the sandbox has not started `ah agent start` yet."""
    procs = processes(sid)
    leaders = [p for p, v in procs.items() if is_agent_start(v[3])]
    if not leaders and not started:
        leaders = [p for p, v in procs.items() if is_sandbox(v[3])]
    if not leaders:
        return {}
    pgrp = procs[leaders[0]][1]
    return {p: v for p, v in procs.items() if v[1] == pgrp}


def wait_for(predicate, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def iso_ms(ts):
    """Milliseconds since the epoch of an RFC 3339 UTC time with milliseconds (D3)."""
    return int(datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
               .replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def burner_config(tmp):
    """A config file declaring the custom agent `burner`: a shell loop that burns CPU until the
    file named by its prompt exists, ignoring SIGTERM when the prompt ends in ':stubborn'."""
    script = os.path.join(tmp, "burn.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\n"
                "stop=${1%:stubborn}\n"
                "[ \"$stop\" != \"$1\" ] && trap '' TERM\n"
                "echo burning\n"
                "i=0\n"
                "while [ ! -e \"$stop\" ]; do i=$((i+1)); done\n"
                "echo done $i\n")
    os.chmod(script, 0o755)
    cfg = os.path.join(tmp, "agents.toml")
    with open(cfg, "w") as f:
        f.write("[agents.burner]\ncommand = %s\nformat = \"text\"\n" % json.dumps(script))
        # the script and its stop files live here: visible (read-only) inside the sandbox,
        # whose /tmp is otherwise a private one (D52)
        f.write("[sandbox.default]\nread-only = [%s]\n" % json.dumps(tmp))
    return cfg
