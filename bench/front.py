#!/usr/bin/env python3
"""front.py — what the front gate costs. Prints numbers; never fails on speed.

    bench/front.py [BUILD_DIR] [--quick]

The gate stays in every connection's path (src/http/gate.c): it reads the client's bytes, checks
each request head, follows body framing and copies both directions through a socketpair to
libmicrohttpd. Its baseline is libmicrohttpd alone: the same binary with the test hook
AH_TEST_GATE_DIRECT=1, which hands every accepted socket to libmicrohttpd unchecked. Both servers
run side by side and are measured in alternation in the same run (the machine may be shared, so
medians over repeats and the ratio gate/direct are what to read):

  1. keep-alive GETs: requests/s of wrk (1 thread, 8 connections) on GET /api/v1/healthz, and
     the server's CPU time per request (user + system, from /proc: unlike the rate, it hardly
     depends on what else the machine runs)
  2. large download: MB/s of wrk (1 connection) on an 8 MiB file answer (a session recording,
     sent by libmicrohttpd with sendfile), and the server's CPU time per MB
  3. idle SSE subscribers: server descriptors and RSS per subscriber (bench-sse, N streams)

Needs wrk (Debian package wrk).
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the Server helper of bench/run.py)

QUICK = "--quick" in sys.argv
REPEATS = 3 if QUICK else 5
SECONDS = 2 if QUICK else 4


def server(direct):
    env = {"AH_TEST_HOOKS": "1", "AH_TEST_GATE_DIRECT": "1" if direct else "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return run.Server()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url, conns, seconds, pid):
    c0 = cpu_s(pid)
    out = subprocess.run(["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, url],
                         capture_output=True, text=True).stdout
    cpu = cpu_s(pid) - c0
    done = re.search(r"(\d+) requests in", out)
    nreq = int(done.group(1)) if done else 0
    got = re.search(r"requests in [\d.]+\w+, ([\d.]+)([KMG]?B) read", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    tr = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    mb = 0.0
    if tr:
        mb = float(tr.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}[tr.group(2)]
        mb *= 1.048576 if tr.group(2) != "B" else 1  # wrk's units are binary
    total_mb = 0.0
    if got:
        total_mb = float(got.group(1)) * {"B": 1e-6, "KB": 1.024e-3, "MB": 1.048576,
                                          "GB": 1073.741824}[got.group(2)]
    return ((float(rps.group(1)) if rps else 0.0), mb, (errors.group(0) if errors else ""),
            cpu * 1e6 / max(nreq, 1), cpu * 1e3 / max(total_mb, 1e-9))


def big_recording(s):
    """A finished session whose recording is about 8 MiB; its URL."""
    scenario = [{"log": "x" * 262144} for _ in range(32)]
    sid = s.task(scenario)["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if s.statuses({sid}).get(sid) in ("completed", "failed"):
            break
        time.sleep(0.2)
    return "%s/api/v1/sessions/%s/recording" % (s.base, sid)


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def line(name, unit, direct, gate):
    d, g = statistics.median(direct), statistics.median(gate)
    print("  %-26s direct %10.1f %s   gate %10.1f %s   gate/direct %.2f   (runs: %s | %s)" %
          (name, d, unit, g, unit, g / d if d else 0, " ".join("%.0f" % x for x in direct),
           " ".join("%.0f" % x for x in gate)))


def main():
    if not shutil.which("wrk"):
        print("front.py: wrk is not installed (apt-get install wrk)")
        return
    subprocess.run(["cmake", "--build", run.BUILD, "--target", "benchmarks", "-j2"], check=True,
                   capture_output=True)
    print("ah front gate benchmark — %s, %d cores, load average %.1f, %d runs each, in "
          "alternation" % (time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), os.getloadavg()[0],
                           REPEATS))
    servers = {"direct": server(True), "gate": server(False)}
    try:
        urls = {k: big_recording(s) for k, s in servers.items()}
        size = int(subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}",
                                   urls["gate"]], capture_output=True, text=True).stdout or 0)
        rps, cpu_req, mbs, cpu_mb = ({"direct": [], "gate": []} for _ in range(4))
        for _ in range(REPEATS):
            for k, s in servers.items():
                r, _, err, us, _ = wrk(s.base + "/api/v1/healthz", 8, SECONDS, s.proc.pid)
                rps[k].append(r)
                cpu_req[k].append(us)
                if err:
                    print("  (%s: %s)" % (k, err))
                _, mb, err, _, ms = wrk(urls[k], 1, SECONDS, s.proc.pid)
                mbs[k].append(mb)
                cpu_mb[k].append(ms)
                if err:
                    print("  (%s: %s)" % (k, err))
        print("== 1. keep-alive GET /api/v1/healthz, wrk -t1 -c8")
        line("requests/s", "req/s", rps["direct"], rps["gate"])
        line("server CPU per request", "us   ", cpu_req["direct"], cpu_req["gate"])
        print("== 2. large download (a %.1f MiB recording), wrk -t1 -c1" % (size / 1048576))
        line("MB/s", "MB/s ", mbs["direct"], mbs["gate"])
        line("server CPU per MB", "ms   ", cpu_mb["direct"], cpu_mb["gate"])
    finally:
        for s in servers.values():
            s.close()
    n = 500 if QUICK else 2000
    print("== 3. %d idle SSE subscribers (bench-sse)" % n)
    for k in ("direct", "gate"):
        s = server(k == "direct")
        try:
            sid = s.task([{"sleep": 600000}])["id"]
            time.sleep(1.0)
            pid = s.proc.pid
            rss0, fd0 = run.status_kib(pid, "VmRSS"), fds(pid)
            client = subprocess.Popen([os.path.join(run.BUILD, "bench-sse"), str(s.port), sid,
                                       str(n), "6"], stdout=subprocess.PIPE, text=True)
            connected = int(client.stdout.readline().split()[1])
            time.sleep(3.0)
            rss1, fd1 = run.status_kib(pid, "VmRSS"), fds(pid)
            client.wait()
            deadline = time.monotonic() + 10  # departed subscribers are released at once
            while time.monotonic() < deadline and fds(pid) > fd0 + 5:
                time.sleep(0.05)
            print("  %-6s %5d subscribers: %.2f descriptors and %.1f KiB RSS per subscriber; "
                  "%d descriptors left 10 s after they left" %
                  (k, connected, (fd1 - fd0) / max(connected, 1),
                   (rss1 - rss0) / max(connected, 1), fds(pid) - fd0))
        finally:
            s.close()


if __name__ == "__main__":
    main()
