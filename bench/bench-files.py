#!/usr/bin/env python3
"""bench-files.py — files and snapshots of a real session, through the server (issue 11).

    bench/bench-files.py [BUILD_DIR] [FILES] [MB]      (default build, 10000 files, 100 MB)

A workspace template of FILES files / MB is copied into a scripted session that waits for a
prompt; then, medians over the runs:
  - GET /files with nothing changed (`to=current` is the newest snapshot: no walk);
  - GET /files right after one file changed (a snapshot of the path the watcher reported,
    on the HTTP thread), and the time from the write until GET /files shows it;
  - the snapshot worker's watched snapshots (ws_snapshot_changed, after the watcher's
    file_edit): mean from the server's ah_snapshot_seconds{kind="watched"};
  - for comparison, the whole-tree walk with the stat cache (a tool boundary's snapshot): mean
    from ah_snapshot_seconds{kind="incremental"} after tool runs.
bench-workspace measures the same operations on the workspace layer alone (and the git CLI).
Prints numbers; never fails on speed.
"""
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
BUILD = os.path.abspath(args[0] if args else os.path.join(ROOT, "build"))
FILES = int(args[1]) if len(args) > 1 else 10000
MB = int(args[2]) if len(args) > 2 else 100
os.environ.setdefault("AH_BIN", os.path.join(BUILD, "ah"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import ahtest  # noqa: E402  (the integration tests' server harness)


def metric(server, name, kind):
    body = server.get("/metrics", record_it=False).body.decode()
    for line in body.splitlines():
        if line.startswith('%s{kind="%s"}' % (name, kind)):
            return float(line.split()[-1])
    return 0.0


def main():
    root = tempfile.mkdtemp(prefix="ah-bench-files-")
    tpl = os.path.join(root, "template")
    per = max(1, MB * 1024 * 1024 // FILES)
    for i in range(FILES):
        d = os.path.join(tpl, "d%02d" % (i % 100))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%05d.txt" % i), "w") as f:
            line = "file %d, a line of text to fill it\n" % i
            f.write((line * (per // len(line) + 1))[:per])
    print("workspace: %d files, %d MB" % (FILES, MB))
    server = ahtest.Server(args=("--workspace-template", tpl),
                           env={"AH_SNAPSHOT_COALESCE_MS": "0"})
    try:
        steps = [{"wait_prompt": True}, {"tool": "make", "output": "ok"},
                 {"wait_prompt": True}, {"log": "done"}]
        body = {"prompt": "bench", "repo": {"mode": "none"}, "runtime": {"type": "local"},
                "agents": [{"type": "scripted", "settings": {"scenario": steps}}]}
        r = server.post("/api/v1/tasks", body=body)
        sid = r.json()["id"]
        t0 = time.monotonic()
        while True:
            s = server.get("/api/v1/sessions/" + sid, record_it=False).json()
            if s["status"] == "running":
                break
            if time.monotonic() - t0 > 600:
                raise SystemExit("the session never ran: %s" % s)
            time.sleep(0.1)
        ws = s["workspace"]["mountPath"]
        print("provisioning + base snapshot: %.1f s" % (time.monotonic() - t0))
        url = "/api/v1/sessions/%s/files?perPage=100" % sid

        def get_files():
            t = time.monotonic()
            r = server.get(url, record_it=False)
            assert r.status == 200, r
            return (time.monotonic() - t) * 1e3, r.json()

        get_files()
        quiet = [get_files()[0] for _ in range(50)]
        changed, visible = [], []
        for i in range(30):
            rel = "d%02d/f%05d.txt" % (i % 100, i)
            t = time.monotonic()
            with open(os.path.join(ws, rel), "a") as f:
                f.write("changed in run %d\n" % i)
            while True:
                ms, body = get_files()
                item = [x for x in body["items"] if x["path"] == rel]
                if item and item[0]["lines_added"] == 1:
                    break
                changed.append(ms)  # answered before the watcher's report: the quiet path
            changed.append(ms)
            visible.append((time.monotonic() - t) * 1e3)
            time.sleep(0.05)  # let the worker's watched snapshot run too
        # a tool boundary: the whole-tree walk with the stat cache
        server.post("/api/v1/sessions/%s/prompt" % sid, body={"prompt": "go"})
        deadline = time.monotonic() + 120
        while metric(server, "ah_snapshot_seconds_count", "incremental") < 1:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        wn = metric(server, "ah_snapshot_seconds_count", "watched")
        ws_ = metric(server, "ah_snapshot_seconds_sum", "watched")
        fn = metric(server, "ah_snapshot_seconds_count", "incremental")
        fs = metric(server, "ah_snapshot_seconds_sum", "incremental")
        print("GET /files, nothing changed:       %7.2f ms median (goal <= 10 ms)"
              % statistics.median(quiet))
        print("GET /files, one file just changed: %7.2f ms median (a snapshot of that path)"
              % statistics.median(changed))
        print("write -> visible in GET /files:    %7.2f ms median (watcher + link + snapshot)"
              % statistics.median(visible))
        if wn:
            print("watched snapshot on the worker:    %7.2f ms mean of %d (goal <= 20 ms)"
                  % (ws_ / wn * 1e3, wn))
        if fn:
            print("whole-tree walk (tool boundary):   %7.2f ms mean of %d (stat cache)"
                  % (fs / fn * 1e3, fn))
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


main()
