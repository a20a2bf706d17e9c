#!/usr/bin/env python3
"""bench-sandbox-exec.py — the sandbox's own start cost, without the server around it.

    bench/bench-sandbox-exec.py [BUILD_DIR] [N]

Starts a server (temp database), runs one sleeping scripted session per profile (`default`,
`offline`, `egress` = an allow-list), and takes from /proc the exact command its recorder runs
(the agent wrapped in the sandbox). Then runs, N rounds, each round every variant once in turn:

  agent           the agent command alone (`ah agent start --agent scripted`, one log line)
  PROFILE         the wrapped command as the server builds it, started as the recorder does
                  (SIGTERM blocked: --hold-term)
  default+env     the same with the two `env` processes earlier versions put around bubblewrap
                  and the agent (`env --ignore-signal=TERM` ... `env --default-signal=TERM`)

and prints min / median per variant, the difference to `agent` and the ratio of medians, and
the median CPU time of each run (the command and all its processes, from a cgroup v1 cpuacct
group the bench makes for itself when it may; else not shown). On a busy machine the minimum is
the better estimate of the work; the median adds the waits for a CPU (each process a start takes
waits for one); the CPU time does not depend on the load. `--rt` runs the measurements under SCHED_FIFO
(root; a few seconds of real-time priority in all): the waits for a CPU go, what remains is the
work, as on an idle machine.
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
args = [a for a in sys.argv[1:] if a != "--rt"]
RT = "--rt" in sys.argv[1:]
BUILD = os.path.abspath(args[0] if args else os.path.join(ROOT, "build"))
N = int(args[1]) if len(args) > 1 else 30
AH = os.path.join(BUILD, "ah")


def call(port, method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def recorder_command(sid, deadline):
    """The argv after `--` of the session's `ah agent record`."""
    marker = ("AH_SESSION_ID=%s" % sid).encode()
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    if marker not in f.read().split(b"\0"):
                        continue
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = [a.decode() for a in f.read().split(b"\0")[:-1]]
            except OSError:
                continue
            if argv[1:3] == ["agent", "record"] and "--" in argv:
                return argv[argv.index("--") + 1:]
        time.sleep(0.05)
    raise SystemExit("no recorder for %s (is the session running?)" % sid)


CG = os.path.join("/sys/fs/cgroup/cpuacct", "ah-bench-sandbox-exec-%d" % os.getpid())


def hold_term():
    signal.pthread_sigmask(signal.SIG_SETMASK, {signal.SIGTERM})


def main():
    tmp = tempfile.mkdtemp(prefix="ah-bench-sbx-exec-")
    cfg = os.path.join(tmp, "config.toml")
    with open(cfg, "w") as f:
        f.write("[sandbox.egress]\nnetwork = \"allow-list\"\n"
                "allow-hosts = [\"127.0.0.1:9\", \"api.example.com:443\"]\n")
    err = open(os.path.join(tmp, "stderr.log"), "wb")
    env = dict(os.environ, HOME=tmp, XDG_RUNTIME_DIR=os.path.join(tmp, "run"))
    os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700)
    proc = subprocess.Popen([AH, "agent", "access-point", "--port", "0", "--db",
                             os.path.join(tmp, "state.db"), "--config", cfg,
                             "--max-concurrent-tasks", "8"],
                            stdout=err, stderr=err, env=env)
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            with open(os.path.join(tmp, "stderr.log")) as f:
                m = re.search(r'"msg":"listening".*?"port":(\d+)', f.read())
            port = int(m.group(1)) if m else None
            time.sleep(0.02)
        while True:
            try:
                call(port, "GET", "/api/v1/readyz")
                break
            except OSError:
                time.sleep(0.05)
        wrapped, sids = {}, []
        for profile in ("default", "offline", "egress"):
            body = {"prompt": "x", "repo": {"mode": "none"},
                    "runtime": {"type": "local", "sandbox": profile},
                    "agents": [{"type": "scripted",
                                "settings": {"scenario": [{"sleep": 600000}]}}]}
            sid = call(port, "POST", "/api/v1/tasks", body)["id"]
            sids.append(sid)
            wrapped[profile] = recorder_command(sid, time.monotonic() + 60)
        # the agent runs one log line instead of sleeping: its own settings file, outside
        settings = os.path.join(tmp, "settings.json")
        with open(settings, "w") as f:
            json.dump({"scenario": [{"log": "hi"}]}, f)
        variants = {}
        for profile, argv in wrapped.items():
            argv = list(argv)
            # the agent's settings file is bound read-only at its own path: swap its content
            i = argv.index("--settings-file")
            shutil.copy(settings, argv[i + 1] + ".bench")
            os.replace(argv[i + 1] + ".bench", argv[i + 1])
            variants[profile] = argv
        d = variants["default"]
        start = d.index("--", d.index("--chdir")) + 1  # bubblewrap's options end there
        variants = dict({"agent": d[start:]}, **variants)
        variants["default+env"] = (["env", "--ignore-signal=TERM"] + d[:start] +
                                   ["env", "--default-signal=TERM"] + d[start:])
        times = {k: [] for k in variants}
        cpu = {k: [] for k in variants}
        cg = CG
        try:  # the runs' CPU time: this process and its children, in a cgroup of their own
            os.mkdir(cg)
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            cg = None

        def cpu_ms():
            with open(os.path.join(cg, "cpuacct.usage")) as f:
                return int(f.read()) / 1e6
        if RT:  # children inherit it; the server and its sessions were started before
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        for _ in range(N):
            for k, argv in variants.items():
                c0 = cpu_ms() if cg else 0
                t0 = time.perf_counter()
                p = subprocess.run(argv, capture_output=True, preexec_fn=hold_term,
                                   env=dict(env, AH_EVENTS_FD="1"))
                times[k].append((time.perf_counter() - t0) * 1000)
                if cg:
                    cpu[k].append(cpu_ms() - c0)
                if p.returncode:
                    raise SystemExit("%s failed (%d): %s" % (k, p.returncode, p.stderr[:300]))
        base_min, base_med = min(times["agent"]), statistics.median(times["agent"])
        print("sandboxed agent start, %d rounds, ms (command exits after one log line):" % N)
        base_cpu = statistics.median(cpu["agent"]) if cg else 0
        for k, t in times.items():
            print("  %-12s min %6.1f  median %6.1f   over the agent alone: min %+6.1f, "
                  "median %+6.1f (x%.2f)%s" % (
                      k, min(t), statistics.median(t), min(t) - base_min,
                      statistics.median(t) - base_med, statistics.median(t) / base_med,
                      "; CPU %5.1f (%+.1f)" % (statistics.median(cpu[k]),
                                               statistics.median(cpu[k]) - base_cpu)
                      if cg else ""))

        if RT:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        print("load average: %s%s" % (" ".join(open("/proc/loadavg").read().split()[:3]),
                                      ", measured under SCHED_FIFO" if RT else ""))
        # the sleeping sessions end before their server does (else their recorders linger)
        for sid in sids:
            try:
                call(port, "POST", "/api/v1/sessions/%s/stop" % sid)
            except OSError:
                pass  # already ended (its relay's sockets were replaced by the runs above)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
                call(port, "GET", "/api/v1/sessions/" + sid)["status"] not in
                ("completed", "failed", "stopped", "cancelled") for sid in sids):
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
        err.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if os.path.isdir(CG):  # back where it was, and the group goes
            with open(os.path.join(os.path.dirname(CG), "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            os.rmdir(CG)


if __name__ == "__main__":
    main()
