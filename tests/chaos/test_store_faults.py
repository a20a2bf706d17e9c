"""Issue 18 item 5, D50 (label chaos): the database's disk fills up or fails while sessions run.

The test-only SQLite VFS shim (AH_TEST_HOOKS=1, AH_TEST_FAULT_FILE) makes every write of the
database fail as ENOSPC (SQLITE_FULL) or EIO (SQLITE_IOERR) while the fault file exists. Then:
- the server keeps running and keeps answering reads;
- writes answer 503 `storage-unavailable` Problem+JSON with `Retry-After`;
- /readyz answers 503 (healthz stays 200) until a write succeeds again;
- no acknowledged event is lost: what a client saw before and during the fault is still there,
  and every session, running or queued when the fault began, ends `completed` with each event
  of its agent exactly once, numbered without a gap;
- when the file goes (space is back) the server recovers by itself: /readyz is 200 again
  without any write from a client, and new tasks are accepted.
Each run ends with the database's integrity_check."""

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest
import uuid

import ahtest
from ahtest import Server
from sessiontest import TERMINAL, create, events, session, task, wait_for, wait_status

STEPS = 40


def scenario():
    out = []
    for i in range(STEPS):
        out += [{"log": "step %d" % i}, {"sleep": 100}]
    return out + [{"log": "finished"}]


def metric(s, name):
    text = s.get("/metrics").body.decode()
    m = re.search(r"^%s (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else 0


class StoreFaults(unittest.TestCase):
    def fault(self, kind):
        tmp = tempfile.mkdtemp(prefix="ah-fault-")
        self.addCleanup(shutil.rmtree, tmp, True)
        fault = os.path.join(tmp, "fault")
        s = Server(args=("--max-concurrent-tasks", "3"),
                   env={"AH_TEST_HOOKS": "1", "AH_TEST_FAULT_FILE": fault})
        try:
            ids = create(s, task(scenario(), count=5))["session_ids"]
            for sid in ids[:3]:
                wait_for(lambda: len(events(s, sid, type="log")) >= 3, timeout=60,
                         what="the first events of " + sid)
            with open(fault, "w") as f:
                f.write(kind)
            seen = {sid: events(s, sid) for sid in ids}  # acknowledged: they must stay

            r = s.post("/api/v1/tasks", body=task([{"log": "x"}]))
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.headers["content-type"], "application/problem+json")
            self.assertTrue(r.json()["type"].endswith("storage-unavailable"), r.json())
            self.assertIn("disk full or I/O error", r.json()["detail"])
            self.assertEqual(r.headers.get("retry-after"), "5")
            r = s.post("/api/v1/tasks", body=task([{"log": "x"}]),
                       headers={"Idempotency-Key": str(uuid.uuid4())})
            self.assertEqual(r.status, 503, r)
            self.assertIn("retry-after", r.headers)
            r = s.get("/api/v1/readyz")
            self.assertEqual(r.status, 503, r)
            self.assertIn("disk full", r.json()["detail"])
            self.assertEqual(s.get("/api/v1/healthz").status, 200)
            self.assertEqual(session(s, ids[0])["id"], ids[0])  # reads still work
            # the agents keep producing: their events are refused, not acknowledged, and kept by
            # their recorders (wait until several batches have been refused)
            wait_for(lambda: metric(s, "ah_store_batch_failures_total") >= 5, timeout=60,
                     what="refused batches")
            for sid in ids:
                got = events(s, sid)
                self.assertEqual(got[:len(seen[sid])], seen[sid])
                seen[sid] = got
            self.assertEqual(s.get("/api/v1/readyz").status, 503)
            self.assertIsNone(s.proc.poll())

            os.unlink(fault)  # space is back
            wait_for(lambda: s.get("/api/v1/readyz").status == 200, timeout=30,
                     what="readyz 200 after the fault")
            late = create(s, task([{"log": "after"}]))["id"]
            for sid in ids + [late]:
                st = wait_status(s, sid, TERMINAL, timeout=180)
                self.assertEqual(st["status"], "completed", st)
            for sid in ids:
                evs = events(s, sid)
                self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)), sid)
                self.assertEqual(evs[:len(seen[sid])], seen[sid], "lost an acknowledged event")
                self.assertEqual([e["message"] for e in evs if e["type"] == "log"],
                                 ["step %d" % i for i in range(STEPS)] + ["finished"], sid)
            self.assertGreater(metric(s, "ah_store_batch_failures_total"), 0)
            self.assertEqual(s.stop(), 0, s.stderr()[-3000:])
            s.check_clean()
            c = sqlite3.connect("file:%s?mode=ro" % s.db, uri=True)
            try:
                self.assertEqual(c.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            finally:
                c.close()
        finally:
            s.close()

    def test_disk_full(self):
        self.fault("ENOSPC")

    def test_io_error(self):
        self.fault("EIO")



class RealDiskFull(unittest.TestCase):
    """The same with no shim: the database on a small tmpfs that the test fills with a file, when
    this machine lets the test mount one (root in a container usually may; elsewhere skipped, the
    shim tests above cover the server's side). The WAL only grows below SQLite's checkpoint size,
    so every commit needs new space: the kernel's ENOSPC is what the server meets."""

    def test_tmpfs_full(self):
        tmp = tempfile.mkdtemp(prefix="ah-tmpfs-")
        self.addCleanup(shutil.rmtree, tmp, True)
        mnt = os.path.join(tmp, "db")
        os.makedirs(mnt)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: " + p.stderr.strip())
        self.addCleanup(subprocess.run, ["umount", "-l", mnt])
        s = Server(tmpdir=tmp, db=os.path.join(mnt, "state.db"),
                   args=("--data-dir", os.path.join(tmp, "data")))
        try:
            sid = create(s, task(scenario()))["id"]
            wait_for(lambda: len(events(s, sid, type="log")) >= 3, timeout=60,
                     what="the first events")
            filler = os.path.join(mnt, "filler")
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            seen = events(s, sid)
            r = wait_for(lambda: (lambda r: r if r.status == 503 else None)(
                s.post("/api/v1/tasks", body=task([{"log": "x"}]))), timeout=30,
                what="a 503 for a task on the full disk")
            self.assertTrue(r.json()["type"].endswith("storage-unavailable"), r.json())
            self.assertIn("retry-after", r.headers)
            self.assertEqual(s.get("/api/v1/readyz").status, 503)
            self.assertIsNone(s.proc.poll())
            os.unlink(filler)
            wait_for(lambda: s.get("/api/v1/readyz").status == 200, timeout=30,
                     what="readyz 200 once space is back")
            st = wait_status(s, sid, TERMINAL, timeout=120)
            self.assertEqual(st["status"], "completed", st)
            evs = events(s, sid)
            self.assertEqual(evs[:len(seen)], seen)
            self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)))
            self.assertEqual([e["message"] for e in evs if e["type"] == "log"],
                             ["step %d" % i for i in range(STEPS)] + ["finished"])
            self.assertEqual(s.stop(), 0, s.stderr()[-3000:])
            c = sqlite3.connect("file:%s?mode=ro" % s.db, uri=True)
            try:
                self.assertEqual(c.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            finally:
                c.close()
        finally:
            s.close()


if __name__ == "__main__":
    ahtest.main()
