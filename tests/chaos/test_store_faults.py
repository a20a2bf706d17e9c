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


if __name__ == "__main__":
    ahtest.main()
