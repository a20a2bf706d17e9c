#!/usr/bin/env python3
"""bench-sandbox.py — what the sandbox adds to a session's start. Prints numbers; never fails.

    bench/bench-sandbox.py [BUILD_DIR] [N] [--rt]
    BENCH_PROFILES=disabled,default  only those profiles
    BENCH_WRAP="perf record -g -o F --"  the server (and all it starts) under that command

Measures the session start time: from the moment the client sends `POST /api/v1/tasks` to the
agent's first line (a scripted agent's one log line, stamped by its recorder when it reads it),
so the server's work for the start (queueing, the workspace, the sandbox's preparation: the
session's $HOME, its cgroups, bubblewrap's command line), the recorder's start, bubblewrap's
namespaces and mounts and the agent's own start all count. Both clocks are this machine's
wall clock; the stamps have millisecond resolution.

One server (temp database, `allow-disabled = true`), N sessions (after one warm-up round) in
each of the profiles `disabled` (no sandbox: the baseline), `default` and `offline` (bubblewrap,
with and without a network namespace), `egress` (an allow-list: the relay's two ends around
bubblewrap) and `default` with memory/pids/cpu limits, taken in turn (one of each, then the next
round) so that a machine whose load changes meanwhile weighs on every profile alike. Sessions
run one at a time; the client waits on the session's event stream, it does not poll.

Per profile: the median, p90 and minimum of the start time, the median of its second part
(the `running` status, stamped when the server has spawned the recorder, to the first line),
and the CPU time per session of the server and everything it started (recorder, bubblewrap, the
agent), from the server's cgroup when one can be made for it (cgroup v1 cpuacct), else from
its and its reaped children's times in /proc (10 ms ticks: a mean over N). Then what the
sandbox adds to each, against `disabled` measured in the same run. On a busy machine the wall
times include the waits for a CPU, which grow with the CPU time a start takes and with the
number of processes that must each be scheduled. `--rt` runs the server, and so everything
it starts, under SCHED_FIFO (root; real-time priority only while the bench runs): the waits for
a CPU go, what remains is the work and the hand-offs between processes, as on an idle machine.
The issue's goal: the sandbox adds at most 10 ms to the start.
"""
import datetime
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = [a for a in sys.argv[1:] if a != "--rt"]
RT = "--rt" in sys.argv[1:]
BUILD = os.path.abspath(args[0] if args else os.path.join(ROOT, "build"))
N = int(args[1]) if len(args) > 1 else 20
AH = os.path.join(BUILD, "ah")
CPUACCT = "/sys/fs/cgroup/cpuacct"
WRAP = os.environ.get("BENCH_WRAP", "").split()  # e.g. "perf record -g -o FILE --"
PROFILES = [p for p in os.environ.get("BENCH_PROFILES", "").split(",") if p]


def ms(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000


def call(port, method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def events_until_end(port, sid):
    """The session's events, read from its live stream until its final status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", "/api/v1/sessions/%s/events" % sid,
                 headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()
    out = []
    try:
        if resp.status == 204:  # already ended: the history has it all
            return call(port, "GET", "/api/v1/sessions/%s/events?sort=asc&perPage=100" %
                        sid)["items"]
        while True:
            line = resp.readline()
            if not line:
                return out
            if line.startswith(b"data:"):
                e = json.loads(line[5:])
                out.append(e)
                if e.get("type") == "status" and e.get("status") in (
                        "completed", "failed", "stopped", "cancelled"):
                    return out
    finally:
        conn.close()


class Cpu:
    """CPU time of the server and all it started: its own cgroup, else /proc."""

    def __init__(self, pid):
        self.pid, self.cg = pid, None
        d = os.path.join(CPUACCT, "ah-bench-sandbox-%d" % os.getpid())
        try:
            os.mkdir(d)
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))
            self.cg = d
        except OSError:
            try:
                os.rmdir(d)
            except OSError:
                pass

    def how(self):
        return "cgroup cpuacct" if self.cg else "/proc ticks"

    def ms(self):
        if self.cg:
            with open(os.path.join(self.cg, "cpuacct.usage")) as f:
                return int(f.read()) / 1e6
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) * 1000 / os.sysconf("SC_CLK_TCK")

    def settled(self):
        """Waits until the server has no child left (the recorder reaped: its time counted)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = ""
            for t in os.listdir("/proc/%d/task" % self.pid):
                try:
                    with open("/proc/%d/task/%s/children" % (self.pid, t)) as f:
                        kids += f.read().strip()
                except OSError:
                    pass
            if not kids:
                return
            time.sleep(0.005)

    def close(self):
        if self.cg:  # the server has ended: its cgroup is empty (but for sessions' own ones)
            for d, _, _ in sorted(os.walk(self.cg), reverse=True):
                try:
                    os.rmdir(d)
                except OSError:
                    pass


def main():
    tmp = tempfile.mkdtemp(prefix="ah-bench-sbx-")
    cfg = os.path.join(tmp, "config.toml")
    with open(cfg, "w") as f:
        f.write("[sandbox]\nallow-disabled = true\n"
                "[sandbox.egress]\nnetwork = \"allow-list\"\n"
                "allow-hosts = [\"127.0.0.1:9\", \"api.example.com:443\"]\n")
    err = open(os.path.join(tmp, "stderr.log"), "wb")
    env = dict(os.environ, HOME=tmp, XDG_RUNTIME_DIR=os.path.join(tmp, "run"))
    os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700)
    if RT:  # the server inherits it, and from it every recorder, bubblewrap and agent
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    proc = subprocess.Popen(WRAP + [AH, "agent", "access-point", "--port", "0", "--db",
                             os.path.join(tmp, "state.db"), "--config", cfg],
                            stdout=err, stderr=err, env=env)
    cpu = Cpu(proc.pid)
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            with open(os.path.join(tmp, "stderr.log")) as f:
                m = re.search(r'"msg":"listening".*?"port":(\d+)', f.read())
            port = int(m.group(1)) if m else None
            time.sleep(0.02)
        while True:  # ready: the store is open
            try:
                call(port, "GET", "/api/v1/readyz")
                break
            except OSError:
                time.sleep(0.05)
        runs = [("disabled", {}), ("default", {}), ("offline", {}), ("egress", {}),
                ("default+limits", {"resources": {"cpu": 1, "memoryMiB": 512, "pids": 256}})]
        if RT:  # a real-time task may not enter a cpu cgroup that has no real-time runtime
            runs = [r for r in runs if "limits" not in r[0]]
        if PROFILES:
            runs = [r for r in runs if r[0] in PROFILES]
        start = {name: [] for name, _ in runs}
        second = {name: [] for name, _ in runs}
        cpus = {name: [] for name, _ in runs}
        for rnd in range(N + 1):  # round 0 warms up (page cache, the server's first requests)
            for name, extra in runs:
                profile = name.split("+")[0]
                body = {"prompt": "x", "repo": {"mode": "none"},
                        "runtime": dict({"type": "local", "sandbox": profile}, **extra),
                        "agents": [{"type": "scripted", "settings": {"scenario": [{"log": "hi"}]}}]}
                c0 = cpu.ms()
                t0 = time.time() * 1000
                sid = call(port, "POST", "/api/v1/tasks", body)["id"]
                evs = events_until_end(port, sid)
                cpu.settled()
                c1 = cpu.ms()
                run = [e for e in evs if e["type"] == "status" and e["status"] == "running"]
                log = [e for e in evs if e["type"] == "log" and e.get("message") == "hi"]
                if rnd and run and log:
                    start[name].append(ms(log[0]["ts"]) - t0)
                    second[name].append(ms(log[0]["ts"]) - ms(run[0]["ts"]))
                    cpus[name].append(c1 - c0)
        base = statistics.median(start["disabled"]) if start.get("disabled") else 0
        base_cpu = statistics.mean(cpus["disabled"]) if cpus.get("disabled") else 0
        print("session start: POST /tasks -> the agent's first line, ms; %d sessions per profile "
              "(interleaved); CPU per session (%s, mean)" % (N, cpu.how()))
        print("  %-16s %7s %7s %7s %15s %9s %9s %9s" % (
            "profile", "median", "p90", "min", "running->line", "adds", "CPU", "adds CPU"))
        for name, t in start.items():
            if not t:
                print("  %-16s no session reached its first line" % name)
                continue
            t = sorted(t)
            med, c = statistics.median(t), statistics.mean(cpus[name])
            print("  %-16s %7.1f %7.1f %7.1f %15.1f %+9.1f %9.1f %+9.1f" % (
                name, med, t[max(int(len(t) * 0.9) - 1, 0)], t[0],
                statistics.median(second[name]), med - base, c, c - base_cpu))
        print("load average: %s%s (goal: the sandbox adds <= 10 ms)" % (
            " ".join(open("/proc/loadavg").read().split()[:3]),
            ", measured under SCHED_FIFO" if RT else ""))
    finally:
        proc.terminate()
        proc.wait(30)
        cpu.close()
        err.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
