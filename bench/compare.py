#!/usr/bin/env python3
"""compare.py — delivery latency of two builds, measured in turns in the same window, so a
change is judged against a baseline that saw the same machine load (this machine is shared).

    bench/compare.py BASE_BUILD_DIR NEW_BUILD_DIR [ROUNDS] [--quick]

Each build needs `ah` and `bench-sse` (cmake --build DIR --target ah bench-sse). Prints each
round's run.py latency block (1,000 subscribers at 1,000 events/s, median of 3 runs) for the
base, then the new build.
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def bench_module():
    spec = importlib.util.spec_from_file_location("ah_bench_run", os.path.join(HERE, "run.py"))
    m = importlib.util.module_from_spec(spec)
    saved, sys.argv = sys.argv, [sys.argv[0]]  # run.py reads its build dir from argv at import
    try:
        spec.loader.exec_module(m)
    finally:
        sys.argv = saved
    return m


def use_build(m, build):
    m.BUILD = os.path.abspath(build)
    m.AH = os.path.join(m.BUILD, "ah")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) < 2:
        sys.exit(__doc__)
    base, new = args[0], args[1]
    rounds = int(args[2]) if len(args) > 2 else 2
    run = bench_module()
    run.QUICK = "--quick" in sys.argv
    for r in range(rounds):
        for name, build in (("base", base), ("new", new)):
            print("### round %d, %s: %s" % (r + 1, name, build), flush=True)
            use_build(run, build)
            run.bench_latency()
