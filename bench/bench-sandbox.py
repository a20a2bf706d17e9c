#!/usr/bin/env python3
"""bench-sandbox.py — what the sandbox adds to a session's start. Prints numbers; never fails.

    bench/bench-sandbox.py [BUILD_DIR] [N]

One server (temp database, `allow-disabled = true`), N sessions one after the other in each of
the profiles `disabled` (no sandbox), `default` and `offline` (bubblewrap, with and without a
network namespace), and `default` with memory/pids/cpu limits (cgroups). For each session the
time from its `running` status event to the agent's first log line, both stamped by the server
(milliseconds), i.e. recorder start + sandbox set-up + agent start. Medians and p90 per profile,
and the difference to `disabled`. The issue's goal: the sandbox adds at most 10 ms.
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
        f.write("[sandbox]\nallow-disabled = true\n")
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
        runs = [("disabled", {}), ("default", {}), ("offline", {}),
                ("default+limits", {"resources": {"cpu": 1, "memoryMiB": 512, "pids": 256}})]
        results = {}
        for name, extra in runs:
            profile = name.split("+")[0]
            times = []
            for _ in range(N):
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
                    times.append(ms(log[0]["ts"]) - ms(run[0]["ts"]))
            results[name] = sorted(times)
        base = statistics.median(results["disabled"])
        print("session start (running -> agent's first line), %d sessions each, ms:" % N)
        for name, t in results.items():
            med = statistics.median(t)
            p90 = t[int(len(t) * 0.9) - 1]
            print("  %-16s median %6.1f  p90 %6.1f  sandbox adds %+6.1f" %
                  (name, med, p90, med - base))
    finally:
        proc.terminate()
        proc.wait(30)
        err.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
