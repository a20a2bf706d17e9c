"""Issue 18 item 5 (label chaos): faults while sessions run. Each test ends with the database's
integrity_check, gapless seqs 1..N in every session, and no session stuck short of a terminal
state.

- kill -9 the server 20 times while 50 sessions run (restarting it on the same data each time):
  sessions whose recorder was already running finish `completed` with every event their agent
  emitted, exactly once and in order (acknowledged events are never lost nor doubled);
- SIGSTOP the server for 5 s: the sessions carry on and the server catches up;
- kill -9 an agent: its session ends `failed`, the others are untouched.

AH_CHAOS_SESSIONS / AH_CHAOS_KILLS scale the first test down on a small machine."""

import os
import random
import signal
import sqlite3
import time
import unittest

import ahtest
from ahtest import Server
from sessiontest import TERMINAL, create, events, processes, session, task, wait_for, wait_status

SESSIONS = int(os.environ.get("AH_CHAOS_SESSIONS", "50"))
KILLS = int(os.environ.get("AH_CHAOS_KILLS", "20"))
STEPS = 60


def scenario(steps=30, pause_ms=300):
    out = []
    for i in range(steps):
        out.append({"log": "step %d" % i})
        out.append({"sleep": pause_ms})
    out.append({"log": "finished"})
    return out


def integrity(db):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    try:
        return c.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        c.close()


class Chaos(unittest.TestCase):
    def check_sessions(self, s, ids, timeout):
        """Every session terminal within timeout, gapless; returns {id: (status, events)}."""
        out = {}
        deadline = time.monotonic() + timeout
        for sid in ids:
            st = wait_status(s, sid, TERMINAL, timeout=max(5, deadline - time.monotonic()))
            evs = events(s, sid)
            seqs = [e["seq"] for e in evs]
            self.assertEqual(seqs, list(range(1, len(evs) + 1)), "gap or repeat in " + sid)
            out[sid] = (st, evs)
        return out

    def finish(self, s):
        self.assertEqual(s.stop(), 0, s.stderr()[-3000:])
        s.check_clean()
        self.assertEqual(integrity(s.db), "ok")

    def test_kill_9_twenty_times_during_fifty_sessions(self):
        s = Server(args=("--max-concurrent-tasks", str(SESSIONS)))
        try:
            # long enough to outlast the kills: 60 steps of 0.5 s
            ids = create(s, task(scenario(steps=STEPS, pause_ms=500), count=SESSIONS))[
                "session_ids"]
            for sid in ids:  # every recorder running: from here no session may be lost
                wait_status(s, sid, "running", timeout=180)
            started = set(ids)
            rng = random.Random(18)
            t0 = time.monotonic()
            for k in range(KILLS):
                time.sleep(rng.uniform(0.3, 1.0))
                s.proc.send_signal(signal.SIGKILL)
                s.proc.wait(10)
                s.start()
            print("\n%d kills in %.1f s" % (KILLS, time.monotonic() - t0))
            res = self.check_sessions(s, ids, timeout=240)
            completed = 0
            for sid, (st, evs) in res.items():
                if st["status"] == "completed":
                    completed += 1
                    logs = [e["message"] for e in evs if e["type"] == "log"]
                    self.assertEqual(logs, ["step %d" % i for i in range(STEPS)] + ["finished"],
                                     "lost or doubled events in " + sid)
                else:
                    self.fail("%s ended %s: %s" % (sid, st["status"], st.get("error")))
            self.assertGreaterEqual(completed, len(started))
            print("%d/%d sessions completed with every event" % (completed, len(ids)))
            self.finish(s)
        finally:
            s.close()

    def test_sigstop_for_five_seconds(self):
        s = Server(args=("--max-concurrent-tasks", "10"))
        try:
            ids = create(s, task(scenario(steps=20, pause_ms=200), count=10))["session_ids"]
            for sid in ids:
                wait_status(s, sid, ("running",) + tuple(TERMINAL))
            s.proc.send_signal(signal.SIGSTOP)
            time.sleep(5)
            s.proc.send_signal(signal.SIGCONT)
            res = self.check_sessions(s, ids, timeout=120)
            for sid, (st, evs) in res.items():
                self.assertEqual(st["status"], "completed", st)
                self.assertEqual(len([e for e in evs if e["type"] == "log"]), 21, sid)
            self.finish(s)
        finally:
            s.close()

    def test_agent_killed(self):
        s = Server(args=("--max-concurrent-tasks", "4"))
        try:
            ids = create(s, task(scenario(steps=15, pause_ms=200), count=3))["session_ids"]
            victim = ids[0]
            wait_status(s, victim, "running")

            def agent_pid():
                for pid, (_, _, _, cmd) in processes(victim).items():
                    if " agent start " in cmd + " ":
                        return pid
                return None
            os.kill(wait_for(agent_pid, timeout=30, what="the agent"), signal.SIGKILL)
            res = self.check_sessions(s, ids, timeout=120)
            self.assertEqual(res[victim][0]["status"], "failed", res[victim][0])
            for sid in ids[1:]:
                self.assertEqual(res[sid][0]["status"], "completed", res[sid][0])
            self.finish(s)
        finally:
            s.close()


if __name__ == "__main__":
    ahtest.main()
