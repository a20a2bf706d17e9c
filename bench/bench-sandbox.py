#!/usr/bin/env python3
"""bench-sandbox.py — what the sandbox adds to a session's start. Prints numbers; never fails.

    bench/bench-sandbox.py [BUILD_DIR] [N]

One server (temp database, `allow-disabled = true`), N sessions one after the other in each of
the profiles `disabled` (no sandbox), `default` and `offline` (bubblewrap, with and without a
network namespace), `egress` (an allow-list: the relay's two ends around bubblewrap) and
`default` with memory/pids/cpu limits (cgroups), taken in turn (one of each, then the next
round) so that a machine whose load changes meanwhile weighs on every profile alike. For each
session the
time from its `running` status event to the agent's first log line, both stamped by the server
(milliseconds), i.e. recorder start + sandbox set-up + agent start. Minimum, median and p90 per
profile, and the difference of medians and of minimums to `disabled` (on a busy machine the
minimum is the better estimate of the work itself; the median adds the waits for a CPU, which
grow with the number of processes a start takes). The issue's goal: the sandbox adds at most 10 ms.
"""
import datetime
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
args = sys.argv[1:]
BUILD = os.path.abspath(args[0] if args else os.path.join(ROOT, "build"))
N = int(args[1]) if len(args) > 1 else 20
AH = os.path.join(BUILD, "ah")


def ms(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000


def call(port, method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


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
    proc = subprocess.Popen([AH, "agent", "access-point", "--port", "0", "--db",
                             os.path.join(tmp, "state.db"), "--config", cfg],
                            stdout=err, stderr=err, env=env)
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
        results = {name: [] for name, _ in runs}
        for _ in range(N):
            for name, extra in runs:
                profile = name.split("+")[0]
                body = {"prompt": "x", "repo": {"mode": "none"},
                        "runtime": dict({"type": "local", "sandbox": profile}, **extra),
                        "agents": [{"type": "scripted", "settings": {"scenario": [{"log": "hi"}]}}]}
                sid = call(port, "POST", "/api/v1/tasks", body)["id"]
                while call(port, "GET", "/api/v1/sessions/" + sid)["status"] not in (
                        "completed", "failed"):
                    time.sleep(0.01)
                evs = call(port, "GET", "/api/v1/sessions/%s/events?sort=asc&perPage=50" % sid)
                evs = evs["items"]
                run = [e for e in evs if e["type"] == "status" and e["status"] == "running"]
                log = [e for e in evs if e["type"] == "log" and e.get("message") == "hi"]
                if run and log:
                    results[name].append(ms(log[0]["ts"]) - ms(run[0]["ts"]))
        results = {name: sorted(t) for name, t in results.items()}
        base = statistics.median(results["disabled"])
        base_min = results["disabled"][0]
        print("session start (running -> agent's first line), %d sessions each, ms:" % N)
        for name, t in results.items():
            med = statistics.median(t)
            p90 = t[max(int(len(t) * 0.9) - 1, 0)]
            print("  %-16s min %6.1f  median %6.1f  p90 %6.1f  sandbox adds: median %+6.1f, "
                  "min %+6.1f" % (name, t[0], med, p90, med - base, t[0] - base_min))
        print("load average: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    finally:
        proc.terminate()
        proc.wait(30)
        err.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
