"""ah admin backup (issue 18 item 7): an online backup of a running installation, restored into a
fresh server that serves the same sessions, events, recordings and files.

- taken while the server runs and a session keeps writing events: the copy is one consistent
  snapshot (integrity_check ok, every session's events numbered 1..N without a gap);
- the backup directory is a data directory: a new server started on it (--db DIR/state.db
  --data-dir DIR) answers the finished sessions' events, recordings and files exactly as the
  original did; the session that was running ends `failed` there, its events a prefix of the
  original's;
- the live database files (-wal/-shm) and git-cache/ are not copied; the copy is the owner's only;
- refusals: no --out, a non-empty directory, a missing database, PostgreSQL (names pg_dump)."""

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import unittest

import ahtest
from ahtest import AH_BIN, Server
from sessiontest import TERMINAL, create, events, task, wait_for, wait_status


def ah(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
    return subprocess.run([AH_BIN, *args], capture_output=True, text=True, env=env, timeout=300,
                          stdin=subprocess.DEVNULL)


def busy_scenario(n=400):
    out = []
    for i in range(n):
        out += [{"log": "tick %d" % i}, {"sleep": 50}]
    return out


class Backup(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ah-backup-")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def server(self, **kw):
        s = Server(**kw)
        self.servers.append(s)
        return s

    def test_online_backup_restores_into_a_fresh_server(self):
        s = self.server()
        done = []
        for i in range(3):
            done.append(create(s, task([{"log": "hello %d" % i},
                                        {"edit": "f%d.txt" % i, "content": "line\n" * (i + 1)},
                                        {"log": "bye %d" % i}]))["id"])
        for sid in done:
            wait_status(s, sid, "completed")
        busy = create(s, task(busy_scenario()))["id"]
        wait_for(lambda: len(events(s, busy, type="log")) >= 10, timeout=60,
                 what="the busy session's first events")

        out = os.path.join(self.tmp, "bk")
        p = ah("admin", "backup", "--db", s.db, "--out", out, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        summary = json.loads(p.stdout)
        # the busy session kept writing during the copy: it is still running afterwards
        self.assertEqual(wait_status(s, busy, "running")["status"], "running")

        copy = os.path.join(out, "state.db")
        c = sqlite3.connect("file:%s?mode=ro" % copy, uri=True)
        try:
            self.assertEqual(c.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            n_events = c.execute("SELECT count(*) FROM events").fetchone()[0]
            n_sessions = c.execute("SELECT count(*) FROM sessions").fetchone()[0]
            n_busy = c.execute("SELECT count(*) FROM events WHERE session_id = ?",
                               (busy,)).fetchone()[0]
            for sid, n, hi in c.execute(
                    "SELECT session_id, count(*), max(seq) FROM events GROUP BY session_id"):
                self.assertEqual(n, hi, "gap in the copied events of " + sid)
        finally:
            c.close()
        self.assertEqual(summary["sessions"], n_sessions)
        self.assertEqual(summary["events"], n_events)
        self.assertEqual(n_sessions, 4)
        self.assertGreater(summary["files"], 0)
        self.assertEqual(stat.S_IMODE(os.stat(copy).st_mode) & 0o077, 0)
        names = os.listdir(out)
        self.assertNotIn("state.db-wal", names)
        self.assertNotIn("state.db-shm", names)
        self.assertNotIn("git-cache", names)
        self.assertNotIn("state.db.part", names)
        for sid in done:
            self.assertTrue(os.path.isfile(os.path.join(out, "sessions", sid, "recording.cast")))

        # what the original answers about the finished sessions, to compare with the restore
        before = {}
        for sid in done:
            before[sid] = (events(s, sid), s.get("/api/v1/sessions/%s/recording" % sid).body,
                           s.get("/api/v1/sessions/%s/files" % sid).json())
        busy_before = events(s, busy)

        r = self.server(db=copy, args=("--data-dir", out))
        for sid in done:
            evs, rec, files = before[sid]
            self.assertEqual(wait_status(r, sid, "completed")["status"], "completed")
            self.assertEqual(events(r, sid), evs)
            got = r.get("/api/v1/sessions/%s/recording" % sid)
            self.assertEqual(got.status, 200, got)
            self.assertEqual(got.body, rec)
            got = r.get("/api/v1/sessions/%s/files" % sid)
            self.assertEqual(got.status, 200, got)
            self.assertEqual(got.json(), files)
            f = r.get("/api/v1/sessions/%s/files/f%d.txt" % (sid, done.index(sid)))
            self.assertEqual(f.status, 200, f)
        # the session that ran during the backup: its agent belongs to the first server, so the
        # restored one ends it, keeping the events the snapshot holds
        st = wait_status(r, busy, TERMINAL, timeout=60)
        self.assertEqual(st["status"], "failed", st)
        restored = events(r, busy)
        self.assertEqual([e["seq"] for e in restored], list(range(1, len(restored) + 1)))
        # the snapshot's events, then what the restored server added (its end)
        self.assertGreaterEqual(n_busy, 13)
        self.assertLessEqual(n_busy, len(busy_before))
        prefix = restored[:n_busy]
        self.assertEqual([(e["seq"], e["type"], e.get("message")) for e in prefix],
                         [(e["seq"], e["type"], e.get("message"))
                          for e in busy_before[:len(prefix)]])
        # and the restored server writes: a new session runs there
        sid = create(r, task([{"log": "after restore"}]))["id"]
        wait_status(r, sid, "completed")

    def test_db_only(self):
        s = self.server()
        sid = create(s, task([{"log": "x"}]))["id"]
        wait_status(s, sid, "completed")
        out = os.path.join(self.tmp, "dbonly")
        p = ah("admin", "backup", "--db", s.db, "--out", out, "--db-only")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("restore:", p.stdout)
        self.assertEqual(os.listdir(out), ["state.db"])

    def test_refusals(self):
        s = self.server()
        p = ah("admin", "backup", "--db", s.db)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--out", p.stderr)
        full = os.path.join(self.tmp, "full")
        os.makedirs(full)
        open(os.path.join(full, "x"), "w").close()
        p = ah("admin", "backup", "--db", s.db, "--out", full)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("not empty", p.stderr)
        self.assertEqual(os.listdir(full), ["x"])
        p = ah("admin", "backup", "--db", os.path.join(self.tmp, "nope.db"), "--out",
               os.path.join(self.tmp, "o1"))
        self.assertEqual(p.returncode, 8, p.stderr)
        self.assertIn("no database", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "nope.db")))
        p = ah("admin", "backup", "--db", "postgresql://ah@127.0.0.1:1/x", "--out",
               os.path.join(self.tmp, "o2"))
        self.assertEqual(p.returncode, 8, p.stderr)
        self.assertIn("pg_dump", p.stderr)


if __name__ == "__main__":
    ahtest.main()
