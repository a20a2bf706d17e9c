#!/usr/bin/env python3
"""run.py — the benchmarks of Agent Harbor. Prints numbers; never fails on speed.

    bench/run.py [BUILD_DIR] [--quick] [--only=N,M]

Measures, each on a fresh server with a temp database (medians over repeats where it says so):
  1. ingest: durable events/s of the bus writer vs one transaction per event (bench-ingest)
  2. sessions: 100 concurrent scripted sessions — wall time, server peak RSS, threads
  3. idle SSE subscribers: server RSS per subscriber
  4. delivery latency p50/p99 with 1,000 subscribers at ~1,000 events/s
  5. with AH_TEST_PG_URL (run under tests/pg/pgserver.py): the same across two servers sharing
     one PostgreSQL database, subscribers on the server that does not run the session (10 and
     1,000 subscribers)
"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = [a for a in sys.argv[1:] if not a.startswith("--")]
QUICK = "--quick" in sys.argv
# --only=1,5 runs those sections alone
ONLY = {int(x) for a in sys.argv if a.startswith("--only=") for x in a[7:].split(",") if x}
BUILD = os.path.abspath(args[0] if args else os.path.join(ROOT, "build"))
AH = os.path.join(BUILD, "ah")


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, *extra, db=None):
        self.tmp = tempfile.mkdtemp(prefix="ah-bench-")
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(self.tmp, "run"),
                   XDG_CONFIG_HOME=os.path.join(self.tmp, "cfg"))
        self.err = open(os.path.join(self.tmp, "stderr"), "w+")
        self.proc = subprocess.Popen([AH, "agent", "access-point", "--port", "0", "--db",
                                      db or os.path.join(self.tmp, "state.db"),
                                      "--data-dir", self.tmp, "--log-level", "warn",
                                      "--max-body-bytes", "16777216"] + list(extra),
                                     stdout=self.err, stderr=self.err, env=env)
        while True:
            # the listening line is at info level: read the port from /proc instead
            time.sleep(0.05)
            ports = self.listening_ports()
            if ports:
                self.port = ports[0]
                break
        self.base = "http://127.0.0.1:%d" % self.port
        for _ in range(200):
            try:
                if urllib.request.urlopen(self.base + "/api/v1/readyz").status == 200:
                    break
            except OSError:
                time.sleep(0.05)

    def listening_ports(self):
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        return [int(m.group(1)) for m in re.finditer(r"127\.0\.0\.1:(\d+) .*pid=%d," %
                                                      self.proc.pid, out)]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")

    def task(self, scenario, count=1):
        return self.call("POST", "/api/v1/tasks", {
            "prompt": "bench", "repo": {"mode": "none"}, "runtime": {"type": "local"},
            "agents": [{"type": "scripted", "count": count,
                        "settings": {"scenario": scenario}}]})

    def statuses(self, ids):
        items = self.call("GET", "/api/v1/sessions?perPage=200")["items"]
        return {s["id"]: s["status"] for s in items if s["id"] in ids}

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run(["pkill", "-9", "-f", self.tmp])
        shutil.rmtree(self.tmp, ignore_errors=True)


def bench_ingest():
    print("== 1. ingest (bench-ingest)")
    n = "20000" if QUICK else "100000"
    for sessions in ("1", "10"):
        out = subprocess.run([os.path.join(BUILD, "bench-ingest"), n, sessions],
                             capture_output=True, text=True).stdout
        print(out.rstrip())


def bench_sessions():
    n = 20 if QUICK else 100
    print("== 2. %d concurrent scripted sessions on %d cores" % (n, os.cpu_count()))
    s = Server("--max-concurrent-tasks", str(n))
    try:
        scenario = [{"thought": "plan"}, {"edit": "a.txt", "content": "x\n"},
                    {"tool": "test", "output": "ok", "ms": 100}, {"log": "done"},
                    {"append": "a.txt", "content": "y\n"}, {"sleep": 200}]
        base_threads = status_kib(s.proc.pid, "Threads")
        t0 = time.monotonic()
        ids = set(s.task(scenario, count=n)["session_ids"])
        peak_threads = base_threads
        while True:
            st = s.statuses(ids)
            peak_threads = max(peak_threads, status_kib(s.proc.pid, "Threads"))
            if len(st) == n and all(v in ("completed", "failed") for v in st.values()):
                break
            time.sleep(0.05)
        wall = time.monotonic() - t0
        failed = sum(1 for v in st.values() if v != "completed")
        print("  wall time %.2f s, %d failed, server peak RSS %.1f MiB, threads %d → %d" %
              (wall, failed, status_kib(s.proc.pid, "VmHWM") / 1024, base_threads, peak_threads))
    finally:
        s.close()


def bench_idle_subscribers():
    counts = [1000] if QUICK else [1000, 5000, 10000]
    print("== 3. idle SSE subscribers")
    for n in counts:
        s = Server()
        try:
            sid = s.task([{"sleep": 600000}])["id"]
            time.sleep(1.0)
            rss0 = status_kib(s.proc.pid, "VmRSS")
            client = subprocess.Popen([os.path.join(BUILD, "bench-sse"), str(s.port), sid,
                                       str(n), "8"], stdout=subprocess.PIPE, text=True)
            connected = int(client.stdout.readline().split()[1])
            time.sleep(3.0)
            rss1 = status_kib(s.proc.pid, "VmRSS")
            client.wait()
            print("  %5d subscribers: server RSS %.1f → %.1f MiB, %.1f KiB per subscriber" %
                  (connected, rss0 / 1024, rss1 / 1024, (rss1 - rss0) / max(connected, 1)))
        finally:
            s.close()


def bench_latency():
    subs = 200 if QUICK else 1000
    seconds = 5 if QUICK else 10
    print("== 4. delivery latency, %d subscribers, 1000 events/s for %d s" % (subs, seconds))
    tmp = tempfile.mkdtemp(prefix="ah-bench-cfg-")
    cfg = os.path.join(tmp, "ticker.toml")
    with open(cfg, "w") as f:  # a custom jsonl agent that emits events at a steady rate
        f.write("[agents.ticker]\ncommand = %s\nformat = \"jsonl\"\n" %
                json.dumps(os.path.join(ROOT, "bench", "ticker.py")))
    results = []
    for _ in range(1 if QUICK else 3):
        s = Server("--config", cfg)
        try:
            sid = s.call("POST", "/api/v1/tasks", {
                "prompt": "1000 %d 2" % seconds, "repo": {"mode": "none"},
                "runtime": {"type": "local"}, "agents": [{"type": "ticker"}]})["id"]
            out = subprocess.run([os.path.join(BUILD, "bench-sse"), str(s.port), sid, str(subs),
                                  str(seconds + 4)], capture_output=True, text=True).stdout
            m = re.search(r"p50 (\d+) p99 (\d+) max (\d+) samples (\d+)", out)
            if m:
                results.append(tuple(int(x) for x in m.groups()))
                print("  run: p50 %s ms, p99 %s ms, max %s ms, %s deliveries" % m.groups())
        finally:
            s.close()
    shutil.rmtree(tmp, ignore_errors=True)
    if results:
        print("  median of runs: p50 %d ms, p99 %d ms" %
              (statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)))


def pg_database():
    """A new empty database on the PostgreSQL server of AH_TEST_PG_URL; its URL."""
    import urllib.parse
    base = os.environ["AH_TEST_PG_URL"]
    name = "ah_bench_%d_%d" % (os.getpid(), time.monotonic_ns())
    subprocess.run(["psql", "-X", "-q", "-d", base, "-c", "CREATE DATABASE " + name], check=True)
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(base)._replace(path="/" + name))


def bench_replica_latency():
    """With AH_TEST_PG_URL (tests/pg/pgserver.py -- bench/run.py): the delivery latency of events
    that server A commits to subscribers of server B on the same PostgreSQL database (NOTIFY, then
    B reads the database), beside subscribers of A itself. Twice: with 10 subscribers (what
    crossing replicas adds to one event's trip) and with 1,000 (the fan-out on top)."""
    if not os.environ.get("AH_TEST_PG_URL"):
        return
    seconds = 5 if QUICK else 10
    tmp = tempfile.mkdtemp(prefix="ah-bench-cfg-")
    cfg = os.path.join(tmp, "ticker.toml")
    with open(cfg, "w") as f:
        f.write("[agents.ticker]\ncommand = %s\nformat = \"jsonl\"\n" %
                json.dumps(os.path.join(ROOT, "bench", "ticker.py")))
    for subs in (10, 200 if QUICK else 1000):
        print("== 5. PostgreSQL: delivery latency across servers, %d subscribers, 1000 events/s "
              "for %d s" % (subs, seconds))
        for where in ("same server (A)", "other server (B)"):
            db = pg_database()
            a = Server("--config", cfg, db=db)
            b = Server(db=db)  # started before the task: it only serves the subscribers
            try:
                sid = a.call("POST", "/api/v1/tasks", {
                    "prompt": "1000 %d 2" % seconds, "repo": {"mode": "none"},
                    "runtime": {"type": "local"}, "agents": [{"type": "ticker"}]})["id"]
                port = (a if where.startswith("same") else b).port
                out = subprocess.run([os.path.join(BUILD, "bench-sse"), str(port), sid, str(subs),
                                      str(seconds + 4)], capture_output=True, text=True).stdout
                m = re.search(r"p50 (\d+) p99 (\d+) max (\d+) samples (\d+)", out)
                print("  %-17s p50 %s ms, p99 %s ms, max %s ms, %s deliveries" %
                      ((where,) + (m.groups() if m else ("?",) * 4)))
            finally:
                a.close()
                b.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    subprocess.run(["cmake", "--build", BUILD, "--target", "benchmarks", "-j2"], check=True,
                   capture_output=True)
    print("ah benchmarks — %s, %d cores" % (time.strftime("%Y-%m-%d %H:%M"), os.cpu_count()))
    for n, section in enumerate((bench_ingest, bench_sessions, bench_idle_subscribers,
                                 bench_latency, bench_replica_latency), 1):
        if not ONLY or n in ONLY:
            section()
