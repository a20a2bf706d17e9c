#!/usr/bin/env python3
"""ticker.py — a custom jsonl agent for the benchmarks: emits log events at a steady rate.
Its prompt (the last argument) is "RATE SECONDS [DELAY]": RATE events per second for SECONDS,
after DELAY seconds (subscribers connect meanwhile)."""
import json
import sys
import time

args = sys.argv[-1].split()
rate, seconds = float(args[0]), float(args[1])
delay = float(args[2]) if len(args) > 2 else 0.0
time.sleep(delay)
start = time.monotonic()
n = int(rate * seconds)
out = sys.stdout
for i in range(n):
    due = start + i / rate
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    out.write(json.dumps({"type": "log", "level": "info", "message": "tick %d" % i,
                          "tool_execution_id": None}) + "\n")
    out.flush()
