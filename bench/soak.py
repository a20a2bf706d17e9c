#!/usr/bin/env python3
"""soak.py — load and soak of one access point (issue 18 item 6). Prints numbers; never fails on
speed. Not a test: run it by hand on a quiet machine.

    bench/soak.py [BUILD_DIR] [--minutes M] [--rate R] [--subscribers N] [--window S]
                  [--no-knee] [--knee-only] [--knee-seconds S] [--valgrind SECONDS]

1. knee: wrk drives a mixed read load (GET a session, the session list, a page of events,
   healthz) at 1, 2, 4, … connections, each level for --knee-seconds (default 5), until p99
   passes 100 ms; prints requests/s and p50/p99 per level and the knee (the last level under
   100 ms).
2. soak (default 30 minutes): --rate mixed requests/s (default 1000) paced over 32 keep-alive
   connections, --subscribers SSE followers (default 1000) of sessions that keep emitting, and
   sessions starting and ending all along (one every 2 s). Every --window seconds (default 60) it
   prints the achieved rate, errors, p50/p99/max latency, live streams and events they got,
   sessions completed, and the server's RSS and open fds; at the end the medians over the
   windows and the RSS drift (last window against the first window after warm-up).
3. --valgrind SECONDS: instead of 1 and 2, the server runs under valgrind memcheck for a short
   mixed load of that length (50 req/s, 20 subscribers, sessions churning), is stopped with
   SIGTERM, and memcheck's error summary and leak summary are printed.

Examples: `bench/soak.py build --minutes 30` (the issue's soak), `bench/soak.py build --minutes 2
--rate 300 --subscribers 200 --window 20` (a quick look), `bench/soak.py build --valgrind 60`.
"""
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def opt(name, default, conv=int):
    if name in sys.argv:
        return conv(sys.argv[sys.argv.index(name) + 1])
    return default


VALUE_OPTS = {"--minutes", "--rate", "--subscribers", "--window", "--knee-seconds", "--valgrind"}
positional = []
skip = False
for i, a in enumerate(sys.argv[1:]):
    if skip:
        skip = False
        continue
    if a in VALUE_OPTS:
        skip = True
    elif not a.startswith("--"):
        positional.append(a)
BUILD = os.path.abspath(positional[0] if positional else os.path.join(ROOT, "build"))
AH = os.path.join(BUILD, "ah")
MINUTES = opt("--minutes", 30.0, float)
RATE = opt("--rate", 1000)
SUBSCRIBERS = opt("--subscribers", 1000)
WINDOW = opt("--window", 60.0, float)
KNEE_SECONDS = opt("--knee-seconds", 5)
VALGRIND = opt("--valgrind", 0)
CONNECTIONS = 32


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


class Server:
    def __init__(self, wrap=(), ready_timeout=60):
        self.tmp = tempfile.mkdtemp(prefix="ah-soak-")
        self.port = free_port()
        env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(self.tmp, "run"),
                   XDG_CONFIG_HOME=os.path.join(self.tmp, "cfg"), HOME=self.tmp)
        os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700)
        self.err = open(os.path.join(self.tmp, "stderr"), "w+")
        cmd = list(wrap) + [AH, "agent", "access-point", "--port", str(self.port), "--db",
                            os.path.join(self.tmp, "state.db"), "--data-dir", self.tmp,
                            "--log-level", "warn", "--max-concurrent-tasks", "48"]
        self.proc = subprocess.Popen(cmd, stdout=self.err, stderr=self.err, env=env,
                                     stdin=subprocess.DEVNULL)
        self.base = "http://127.0.0.1:%d" % self.port
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                if urllib.request.urlopen(self.base + "/api/v1/readyz", timeout=5).status == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.err.seek(0)
                raise SystemExit("the server did not start:\n" + self.err.read()[-3000:])
            time.sleep(0.1)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")

    def task(self, scenario, count=1):
        return self.call("POST", "/api/v1/tasks", task_body(scenario, count))

    def rss_kib(self):
        return proc_status(self.proc.pid, "VmRSS")

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_sessions(self.tmp)
        self.err.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def kill_sessions(tmp):
    """Agents outlive the server by design: end the ones this run started (their command line
    names our temp directory), by pid."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                if tmp.encode() in f.read():
                    os.kill(int(name), signal.SIGKILL)
        except OSError:
            pass


def task_body(scenario, count=1):
    return {"prompt": "soak", "repo": {"mode": "none"}, "runtime": {"type": "local"},
            "agents": [{"type": "scripted", "count": count, "settings": {"scenario": scenario}}]}


def ticker(seconds, every_ms=1000):
    """A session that emits one log event every every_ms for `seconds`."""
    n = max(1, int(seconds * 1000 / every_ms))
    out = []
    for i in range(n):
        out += [{"log": "tick %d" % i}, {"sleep": every_ms}]
    return out


def short_session():
    out = []
    for i in range(20):
        out += [{"log": "step %d" % i}, {"sleep": 100}]
    return out + [{"edit": "out.txt", "content": "done\n"}]


def seed(server, minutes):
    """Finished sessions to read, and long-running tickers to follow."""
    done = server.task(short_session(), count=8)["session_ids"]
    tickers = server.task(ticker(minutes * 60 + 120), count=10)["session_ids"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        items = server.call("GET", "/api/v1/sessions?perPage=100")["items"]
        st = {s["id"]: s["status"] for s in items}
        if all(st.get(i) == "completed" for i in done) and all(
                st.get(i) == "running" for i in tickers):
            break
        time.sleep(0.5)
    return done, tickers


def mixed_paths(done, tickers):
    ids = done + tickers
    paths = []
    for sid in ids:
        paths += ["/api/v1/sessions/%s" % sid] * 5
        paths += ["/api/v1/sessions/%s/events?perPage=50" % sid] * 2
    paths += ["/api/v1/sessions?perPage=20"] * (2 * len(ids))
    paths += ["/api/v1/healthz"] * len(ids)
    return paths


# ---- 1. the knee (wrk) -------------------------------------------------------------------------

WRK_LUA = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
"""


def wrk_ms(text, pct):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % pct, text, re.M)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def knee(server, paths):
    print("== knee: mixed reads (wrk, %d s per level) until p99 > 100 ms" % KNEE_SECONDS)
    lua = os.path.join(server.tmp, "mixed.lua")
    random.shuffle(paths)
    with open(lua, "w") as f:
        f.write(WRK_LUA % ", ".join(json.dumps(p) for p in paths))
    print("%6s %10s %9s %9s" % ("conns", "req/s", "p50 ms", "p99 ms"))
    best = None
    for c in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
        out = subprocess.run(["wrk", "-t", str(min(2, c)), "-c", str(c), "-d", "%ds" % KNEE_SECONDS,
                              "--latency", "-s", lua, server.base], capture_output=True,
                             text=True).stdout
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        rps = float(m.group(1)) if m else 0.0
        p50, p99 = wrk_ms(out, 50), wrk_ms(out, 99)
        errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        print("%6d %10.0f %9.2f %9.2f%s" % (c, rps, p50, p99,
                                            "  (%s non-2xx)" % errs.group(1) if errs else ""))
        if not (p99 <= 100) or rps == 0:
            break
        best = (c, rps, p99)
    if best:
        print("knee: %d connections, %.0f req/s with p99 %.1f ms (the next level passes 100 ms)"
              % best)
    else:
        print("knee: p99 passed 100 ms already at 1 connection")


# ---- 2. the soak (asyncio) ----------------------------------------------------------------------

async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers


class Stats:
    def __init__(self):
        self.lat, self.errors, self.events, self.streams, self.stream_errors = [], 0, 0, 0, 0
        self.completed, self.started, self.create_errors = 0, 0, 0

    def take(self):
        lat, self.lat = self.lat, []
        return lat


async def request_worker(port, paths, interval, stats, stop):
    reader = writer = None
    nxt = time.monotonic() + random.random() * interval
    while not stop.is_set():
        now = time.monotonic()
        if now < nxt:
            await asyncio.sleep(nxt - now)
        nxt += interval
        if nxt < time.monotonic() - 1:  # fell behind by more than a second: do not burst
            nxt = time.monotonic()
        path = random.choice(paths)
        t0 = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
                          "\r\n" % path).encode())
            status, headers = await asyncio.wait_for(read_response(reader), 30)
            stats.lat.append(time.monotonic() - t0)
            if status >= 400:
                stats.errors += 1
            if headers.get("connection", "").lower() == "close":
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError,
                IndexError):
            stats.errors += 1
            if writer:
                writer.close()
            writer = None
    if writer:
        writer.close()


async def subscriber(port, sid, stats, stop):
    last = None
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            extra = "Last-Event-ID: %s\r\n" % last if last else ""
            writer.write(("GET /api/v1/sessions/%s/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Accept: text/event-stream\r\n%s\r\n" % (sid, extra)).encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n")[0]:
                stats.stream_errors += 1
                await asyncio.sleep(1)
                continue
            stats.streams += 1
            try:
                while not stop.is_set():
                    line = await reader.readline()
                    if not line:
                        break
                    if line.startswith(b"id:"):
                        last = line[3:].strip().decode()
                    elif line.startswith(b"data:"):
                        stats.events += 1
            finally:
                stats.streams -= 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            stats.stream_errors += 1
            await asyncio.sleep(1)
        finally:
            if writer:
                writer.close()
        await asyncio.sleep(0.5)  # the stream ended (session over): follow it again


async def churn(server, stats, stop, every=2.0):
    """Sessions starting and ending all along."""
    live = []
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            r = await loop.run_in_executor(None, server.task, short_session())
            live.append(r["id"])
            stats.started += 1
        except OSError:
            stats.create_errors += 1
        try:
            items = (await loop.run_in_executor(
                None, server.call, "GET", "/api/v1/sessions?perPage=100"))["items"]
            st = {s["id"]: s["status"] for s in items}
            ended = [i for i in live if st.get(i) in ("completed", "failed", "stopped",
                                                       "cancelled")]
            stats.completed += len(ended)
            live = [i for i in live if i not in ended]
        except OSError:
            pass
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


async def soak(server, paths, tickers, seconds, rate, n_subs, window):
    stats, stop = Stats(), asyncio.Event()
    interval = CONNECTIONS / rate
    tasks = [asyncio.create_task(request_worker(server.port, paths, interval, stats, stop))
             for _ in range(CONNECTIONS)]
    tasks += [asyncio.create_task(subscriber(server.port, tickers[i % len(tickers)], stats,
                                             stop)) for i in range(n_subs)]
    tasks.append(asyncio.create_task(churn(server, stats, stop)))
    print("== soak: %.0f s, %d req/s mixed over %d connections, %d SSE subscribers, a session "
          "started every 2 s" % (seconds, rate, CONNECTIONS, n_subs))
    print("%7s %8s %6s %8s %8s %8s %7s %9s %6s %8s %5s" % (
        "t s", "req/s", "errors", "p50 ms", "p99 ms", "max ms", "streams", "events/s",
        "ended", "RSS MiB", "fds"))
    rows = []
    t0 = time.monotonic()
    last_events, last_errors = 0, 0
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(min(window, seconds - (time.monotonic() - t0)))
        lat = stats.take()
        el = time.monotonic() - t0
        span = el - (rows[-1]["t"] if rows else 0)
        row = {"t": el, "rps": len(lat) / span, "errors": stats.errors - last_errors,
               "p50": pct(lat, 0.5) * 1000, "p99": pct(lat, 0.99) * 1000,
               "max": (max(lat) if lat else float("nan")) * 1000, "streams": stats.streams,
               "eps": (stats.events - last_events) / span, "ended": stats.completed,
               "rss": server.rss_kib() / 1024, "fds": open_fds(server.proc.pid)}
        last_events, last_errors = stats.events, stats.errors
        rows.append(row)
        print("%7.0f %8.0f %6d %8.2f %8.2f %8.1f %7d %9.0f %6d %8.1f %5d" % (
            row["t"], row["rps"], row["errors"], row["p50"], row["p99"], row["max"],
            row["streams"], row["eps"], row["ended"], row["rss"], row["fds"]))
        if server.proc.poll() is not None:
            print("the server exited with %d" % server.proc.returncode)
            break
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if not rows:
        return
    warm = rows[1] if len(rows) > 2 else rows[0]
    print("soak summary: %d windows; medians: %.0f req/s, p50 %.2f ms, p99 %.2f ms; worst p99 "
          "%.2f ms; %d request errors, %d stream errors, %d sessions started (%d create "
          "errors), %d ended" % (
              len(rows), statistics.median(r["rps"] for r in rows),
              statistics.median(r["p50"] for r in rows),
              statistics.median(r["p99"] for r in rows), max(r["p99"] for r in rows),
              stats.errors, stats.stream_errors, stats.started, stats.create_errors,
              stats.completed))
    drift = (rows[-1]["rss"] - warm["rss"]) / warm["rss"] * 100 if warm["rss"] else 0
    print("RSS: %.1f MiB after warm-up (t=%.0f s), %.1f MiB at the end: drift %+.1f %% "
          "(goal < 5 %%); fds %d → %d" % (warm["rss"], warm["t"], rows[-1]["rss"], drift,
                                          warm["fds"], rows[-1]["fds"]))


# ---- 3. valgrind ---------------------------------------------------------------------------------

def valgrind(seconds):
    log = tempfile.mktemp(prefix="ah-soak-valgrind-", suffix=".log")
    wrap = ("valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite", "--track-origins=no", "--num-callers=30",
            "--log-file=" + log)
    print("== valgrind memcheck: %d s of mixed load (50 req/s, 20 subscribers, sessions "
          "churning); log %s" % (seconds, log))
    server = Server(wrap=wrap, ready_timeout=300)
    try:
        done, tickers = seed(server, seconds / 60 + 1)
        asyncio.run(soak(server, mixed_paths(done, tickers), tickers, seconds, 50, 20,
                         max(10, seconds / 4)))
    finally:
        server.close()
    with open(log) as f:
        text = f.read()
    for pat in (r"ERROR SUMMARY: .*", r"definitely lost: .*", r"indirectly lost: .*",
                r"possibly lost: .*", r"Invalid (read|write) of size \d+"):
        for m in list(re.finditer(pat, text))[:3]:
            print("  " + m.group(0))
    print("(full report: %s; the agents' processes are not under valgrind)" % log)


def main():
    if not os.access(AH, os.X_OK):
        raise SystemExit("no %s: build first (cmake --build %s)" % (AH, BUILD))
    if VALGRIND:
        valgrind(VALGRIND)
        return
    server = Server()
    try:
        done, tickers = seed(server, MINUTES)
        paths = mixed_paths(done, tickers)
        if "--no-knee" not in sys.argv:
            knee(server, list(paths))
        if "--knee-only" not in sys.argv:
            asyncio.run(soak(server, paths, tickers, MINUTES * 60, RATE, SUBSCRIBERS, WINDOW))
    finally:
        server.close()


if __name__ == "__main__":
    main()
