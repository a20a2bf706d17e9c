#!/usr/bin/env python3
"""run.py — builds the libFuzzer targets (clang, fuzz/CMakeLists.txt) and, for each one, replays
its committed seed corpus and then fuzzes it for a time box. Fails on any crash, leak, sanitizer
report or broken invariant (the targets abort on those), printing the reproducer's path.

    fuzz/run.py --build DIR [--seconds N] [--only TARGET] [--keep]

N (default 8, or AH_FUZZ_SECONDS) is per target: 9 targets x 8 s leave room for the replay
and the clang build within about two minutes.
New inputs found go to a scratch copy of the corpus; --keep copies them back (then minimise
with `-merge=1` before committing: bench/fuzz.sh does that)."""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ["fuzz_head", "fuzz_task_request", "fuzz_toml", "fuzz_last_event_id", "fuzz_path",
           "fuzz_sse", "fuzz_link", "fuzz_adapters", "fuzz_frame"]


def build(bdir):
    clang = shutil.which("clang")
    if not clang:  # a missing compiler is a broken environment, not a pass
        sys.exit("fuzz/run.py: clang not found (scripts/deps.sh installs it)")
    if not os.path.exists(os.path.join(bdir, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", HERE, "-B", bdir, "-DCMAKE_C_COMPILER=" + clang],
                       check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", bdir, "-j2"], check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("AH_FUZZ_SECONDS", "8")))
    ap.add_argument("--only")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    build(a.build)
    failed = []
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    for t in TARGETS:
        if a.only and t != a.only:
            continue
        exe = os.path.join(a.build, t)
        seeds = os.path.join(HERE, "corpus", t)
        files = sorted(glob.glob(os.path.join(seeds, "*")))
        if not files:
            failed.append(t + ": no seed corpus in " + seeds)
            continue
        scratch = tempfile.mkdtemp(prefix="ah-fuzz-%s-" % t)
        try:
            work = os.path.join(scratch, "corpus")
            shutil.copytree(seeds, work)
            art = os.path.join(scratch, "crash-")
            # 1. replay: every seed once (the regression part, deterministic)
            r = subprocess.run([exe, "-runs=0", "-artifact_prefix=" + art, work], env=env,
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                failed.append("%s: replaying the corpus failed:\n%s" % (t, r.stderr[-3000:]))
                continue
            # 2. a bounded fuzzing run from the corpus
            t0 = time.monotonic()
            r = subprocess.run([exe, "-max_total_time=%d" % a.seconds, "-timeout=10",
                                "-rss_limit_mb=1024", "-max_len=16384", "-print_final_stats=1",
                                "-artifact_prefix=" + art, work], env=env,
                               capture_output=True, text=True, timeout=a.seconds + 300)
            m = re.search(r"stat::number_of_executed_units: (\d+)", r.stderr)
            execs = int(m.group(1)) if m else 0
            print("%-20s %2d seeds  %10d execs in %4.1f s  %s" % (
                t, len(files), execs, time.monotonic() - t0,
                "ok" if r.returncode == 0 else "FAILED"), flush=True)
            if r.returncode != 0:
                crashes = glob.glob(art + "*")
                failed.append("%s: exit %d, reproducer %s\n%s" % (
                    t, r.returncode, crashes, r.stderr[-4000:]))
                for c in crashes:  # keep them beside the build for the report
                    shutil.copy(c, a.build)
            elif a.keep:
                for f in os.listdir(work):
                    if not os.path.exists(os.path.join(seeds, f)):
                        shutil.copy(os.path.join(work, f), seeds)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        print("\n\n".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
