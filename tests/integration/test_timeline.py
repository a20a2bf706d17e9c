"""The timeline and time travel (issue 12, API.md §7.8, D31-D34): a scripted session with five
tool boundaries edits a file before each; its timeline has five automatic moments (the tools'
names) and six snapshots (base + one per boundary) whose seqs are the tool_result events' and
whose sizes are real; manual snapshots and moments join it; seek makes a read-only view of any
point without disturbing the running session, the files/diff routes read a point with ?at=, the
recording is served in slices; a branch starts from a snapshot with the parent's files and its
events 1..k (inherited), and continues its own numbering. The test waits for the condition it
needs (polling with a deadline), never for a fixed time."""

import json
import os
import shutil
import stat
import tempfile
import time
import unittest

import ahtest
from ahtest import Server
from sessiontest import create, events, task, wait_status

ROUNDS = 5


def poll(fn, what, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def scenario():
    steps = []
    for i in range(1, ROUNDS + 1):
        steps.append({"edit": "notes.txt", "content": "".join("round %d\n" % k
                                                              for k in range(1, i + 1))})
        steps.append({"edit": "f%d.txt" % i, "content": "file %d\n" % i})
        steps.append({"tool": "tool%d" % i, "args": {"n": i}, "output": "ok %d" % i})
        if i < ROUNDS:
            steps.append({"wait_prompt": True})
    steps.append({"log": "all done"})
    return steps


class Timeline(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="ah-timeline-")
        t = cls.template = os.path.join(cls.root, "template")
        os.makedirs(t)
        with open(os.path.join(t, "README.md"), "w") as f:
            f.write("the template\n")
        cls.server = Server(args=("--workspace-template", cls.template),
                            env={"AH_SEEK_VIEWS_MAX": "3"})
        s = cls.server
        cls.sid = create(s, task(scenario()))["id"]
        wait_status(s, cls.sid, "running", timeout=60)
        # each round: wait for its boundary's snapshot, look at the running session, go on
        cls.during = {}
        for i in range(1, ROUNDS + 1):
            tl = poll(lambda: cls._timeline_with(i + 1), "snapshot %d" % i)
            if i == 3:
                cls.during["timeline"] = tl
                cls.during["seek"] = s.post("/api/v1/sessions/%s/seek" % cls.sid,
                                            body={"fsSnapshotId": tl["fsSnapshots"][3]["id"]})
                cls.during["manual"] = s.post("/api/v1/sessions/%s/fs-snapshots" % cls.sid,
                                              body={"label": "while running"})
            if i < ROUNDS:
                r = s.post("/api/v1/sessions/%s/prompt" % cls.sid, body={"prompt": "go on"})
                assert r.status == 202, r
        cls.final = wait_status(s, cls.sid, ("completed", "failed"), timeout=90)

    @classmethod
    def _timeline_with(cls, n):
        r = cls.server.get("/api/v1/sessions/%s/timeline" % cls.sid)
        assert r.status == 200, r
        tl = r.json()
        autos = [x for x in tl["fsSnapshots"] if x["kind"] != "manual"]
        return tl if len(autos) >= n else None

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.root, ignore_errors=True)

    def get(self, path, **kw):
        r = self.server.get("/api/v1/sessions/%s/%s" % (self.sid, path), **kw)
        self.assertLess(r.status, 500, r)
        return r

    def post(self, path, body=None, sid=None, **kw):
        r = self.server.post("/api/v1/sessions/%s/%s" % (sid or self.sid, path), body=body, **kw)
        self.assertLess(r.status, 500, r)
        return r

    def timeline(self):
        r = self.get("timeline")
        self.assertEqual(r.status, 200, r)
        return r.json()

    # ---- 1. the timeline ------------------------------------------------------------------

    def test_moments_and_snapshots(self):
        self.assertEqual(self.final["status"], "completed", self.final)
        tl = self.timeline()
        self.assertEqual(tl["sessionId"], self.sid)
        self.assertGreater(tl["durationSec"], 0)
        self.assertEqual(tl["recording"]["format"], "cast")
        self.assertEqual(tl["recording"]["uri"], "/api/v1/sessions/%s/recording" % self.sid)
        results = [e for e in events(self.server, self.sid) if e["type"] == "tool_result"]
        self.assertEqual(len(results), ROUNDS)
        autos = [m for m in tl["moments"] if m["kind"] == "auto"]
        self.assertEqual([m["label"] for m in autos], ["tool%d" % i for i in range(1, 6)])
        self.assertEqual([m["seq"] for m in autos], [e["seq"] for e in results])
        self.assertTrue(all(m["type"] == "tool_boundary" for m in autos))
        snaps = [s for s in tl["fsSnapshots"] if s["kind"] != "manual"]
        self.assertEqual([s["label"] for s in snaps], ["base"] + ["tool%d" % i for i in range(1, 6)])
        self.assertEqual([s["kind"] for s in snaps], ["base"] + ["auto"] * 5)
        # each boundary's snapshot follows its tool_result (D33) and is linked from its moment
        self.assertEqual([s["seq"] for s in snaps[1:]], [e["seq"] for e in results])
        self.assertEqual([m["fsSnapshotId"] for m in autos], [s["id"] for s in snaps[1:]])
        offsets = [s["ts"] for s in snaps]
        self.assertEqual(offsets, sorted(offsets))
        self.assertTrue(all(0 <= x <= tl["durationSec"] + 1 for x in offsets), offsets)
        for s in snaps:
            self.assertTrue(s["branchable"])
            self.assertEqual(s["snapshot"]["id"], s["id"])
            self.assertTrue(s["id"].startswith("snap-"))
            self.assertGreater(s["snapshot"]["size_bytes"], 0, s)
            # one changed file of a few bytes adds a few hundred bytes, not a copy
            self.assertLess(s["snapshot"]["size_bytes"], 8192, s)
        self.assertEqual(len(tl["moments"]), len({m["id"] for m in tl["moments"]}))

    def test_snapshot_while_running_and_after(self):
        r = self.during["manual"]
        self.assertEqual(r.status, 201, r)
        body = r.json()
        self.assertEqual(body["label"], "while running")
        self.assertEqual(body["kind"], "manual")
        r = self.post("fs-snapshots", {"label": "after", "description": "the end"})
        self.assertEqual(r.status, 201, r)
        after = r.json()
        r = self.get("fs-snapshots")
        self.assertEqual(r.status, 200, r)
        listed = r.json()
        ids = [s["id"] for s in listed["snapshots"]]
        self.assertIn(body["id"], ids)
        self.assertIn(after["id"], ids)
        self.assertEqual(listed["total"], len(ids))
        one = next(s for s in listed["snapshots"] if s["id"] == after["id"])
        self.assertEqual(one["description"], "the end")
        self.assertIsInstance(one["used_in_branches"], list)
        self.assertIn("created_at", one["snapshot"])
        r = self.get("fs-snapshots?limit=2")
        self.assertEqual(len(r.json()["snapshots"]), 2)
        self.assertEqual(self.get("fs-snapshots?branchable=false").json()["snapshots"], [])

    def test_manual_moment(self):
        r = self.post("moments", {"label": "look here", "description": "why", "type": "note"})
        self.assertEqual(r.status, 201, r)
        m = r.json()
        self.assertEqual((m["kind"], m["type"], m["label"]), ("manual", "note", "look here"))
        self.assertTrue(m["id"].startswith("mom-"))
        found = [x for x in self.timeline()["moments"] if x["id"] == m["id"]]
        self.assertEqual(len(found), 1)
        self.assertEqual(found[0]["description"], "why")

    def test_bad_input(self):
        s = self.server
        for path, body, field in (("moments", {}, "label"), ("moments", {"label": ""}, "label"),
                                  ("moments", {"label": "x", "type": 5}, "type"),
                                  ("moments", {"label": "x", "extra": 1}, "extra"),
                                  ("fs-snapshots", {"label": 7}, "label"),
                                  ("fs-snapshots", {"description": "d" * 5000}, "description")):
            r = self.post(path, body)
            self.assertEqual(r.status, 400, (path, body, r))
            self.assertIn(field, r.body.decode(), r)
        for q in ("limit=0", "limit=201", "limit=x", "branchable=maybe"):
            self.assertEqual(self.get("fs-snapshots?" + q).status, 400, q)
        ghost = "01J0000000000000000000GH0S"
        for method, path in (("GET", "timeline"), ("GET", "fs-snapshots"),
                             ("POST", "fs-snapshots"), ("POST", "moments")):
            r = s.request(method, "/api/v1/sessions/%s/%s" % (ghost, path),
                          body={"label": "x"} if method == "POST" else None)
            self.assertEqual(r.status, 404, (path, r))
        # another tenant sees nothing of it
        r = s.get("/api/v1/sessions/%s/timeline" % self.sid, headers={"X-Tenant-ID": "other"})
        self.assertEqual(r.status, 404, r)

    # ---- 2. seek, ?at=, recording slices -------------------------------------------------------

    def snaps(self):
        return [s for s in self.timeline()["fsSnapshots"] if s["kind"] != "manual"]

    def test_seek_while_running_shows_the_third_boundary(self):
        r = self.during["seek"]
        self.assertEqual(r.status, 200, r)
        view = r.json()
        third = self.during["timeline"]["fsSnapshots"][3]
        self.assertEqual(view["fsSnapshotId"], third["id"])
        self.assertEqual(view["workspaceView"], "readonly")
        self.assertEqual(view["seq"], third["seq"])
        root = view["mountPath"]
        if not os.path.isdir(root):  # reclaimed by a later test's seeks: make it again
            root = self.post("seek", {"fsSnapshotId": third["id"]}).json()["mountPath"]
        with open(os.path.join(root, "notes.txt")) as f:
            self.assertEqual(f.read(), "round 1\nround 2\nround 3\n")
        self.assertTrue(os.path.exists(os.path.join(root, "f3.txt")))
        self.assertFalse(os.path.exists(os.path.join(root, "f4.txt")))
        self.assertTrue(root.startswith(self.server.data_dir), root)
        for name in ("notes.txt", "f1.txt", "README.md"):
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            self.assertEqual(mode, 0o444, name)
        # the session went on unaffected: all five rounds, its workspace writable
        self.assertEqual(self.final["status"], "completed")
        r = self.get("files/notes.txt/content")
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"round 5", r.body)

    def test_seek_by_seq_and_ts(self):
        snaps = self.snaps()
        r = self.post("seek", {"seq": snaps[2]["seq"]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["fsSnapshotId"], snaps[2]["id"])
        r = self.post("seek", {"seq": snaps[2]["seq"] + 1, "pausePlayer": False})
        self.assertEqual(r.json()["fsSnapshotId"], snaps[2]["id"])  # the newest at or before
        self.assertFalse(r.json()["playerPaused"])
        r = self.post("seek", {"ts": 1e6})
        self.assertEqual(r.status, 200, r)
        newest = max(self.timeline()["fsSnapshots"], key=lambda s: (s["ts"], s["id"]))
        self.assertEqual(r.json()["fsSnapshotId"], newest["id"])
        self.assertEqual(r.json()["seekTime"], 1e6)

    def test_seek_bad_input(self):
        for body, field in (({}, "ts"), ({"ts": -1}, "ts"), ({"ts": "x"}, "ts"),
                            ({"seq": 0}, "seq"), ({"fsSnapshotId": 5}, "fsSnapshotId"),
                            ({"ts": 1, "seq": 2}, "seq"), ({"ts": 1, "mountReadonly": False},
                                                           "mountReadonly"),
                            ({"ts": 1, "bogus": 1}, "bogus")):
            r = self.post("seek", body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn(field, r.body.decode())
        r = self.post("seek", {"fsSnapshotId": "snap-01J0000000000000000000GH0S"})
        self.assertEqual(r.status, 404, r)
        r = self.server.post("/api/v1/sessions/01J0000000000000000000GH0S/seek", body={"ts": 1})
        self.assertEqual(r.status, 404, r)

    def test_views_are_reclaimed_lru(self):
        snaps = self.snaps()
        paths = []
        for s in snaps[:5]:
            r = self.post("seek", {"fsSnapshotId": s["id"]})
            self.assertEqual(r.status, 200, r)
            paths.append(r.json()["mountPath"])
        # the cap is 3: the two least recently used are gone, the newest three remain
        self.assertEqual([os.path.isdir(p) for p in paths], [False, False, True, True, True])
        r = self.post("seek", {"fsSnapshotId": snaps[0]["id"]})
        self.assertTrue(os.path.isdir(r.json()["mountPath"]))
        listed = {s["id"]: s for s in self.get("fs-snapshots").json()["snapshots"]}
        self.assertEqual(listed[snaps[0]["id"]]["snapshot"]["mount"], r.json()["mountPath"])
        self.assertIsNone(listed[snaps[1]["id"]]["snapshot"]["mount"])

    def test_files_and_diff_at_a_point(self):
        snaps = self.snaps()
        third, second = snaps[3]["id"], snaps[2]["id"]
        r = self.get("files/notes.txt/content?at=" + third)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["content"], "round 1\nround 2\nround 3\n")
        r = self.get("files?at=" + third)
        self.assertEqual(sorted(f["path"] for f in r.json()["items"]),
                         ["f1.txt", "f2.txt", "f3.txt", "notes.txt"])
        r = self.get("diff?from=%s&to=%s" % (second, third))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(sorted(f["path"] for f in r.json()["files"]), ["f3.txt", "notes.txt"])
        self.assertEqual(self.get("files?at=%s&to=%s" % (third, third)).status, 400)
        self.assertEqual(self.get("files?at=nonsense").status, 400)
        self.assertEqual(self.get("files?at=snap-01J0000000000000000000GH0S").status, 404)

    def test_recording_slice(self):
        whole = self.get("recording")
        self.assertEqual(whole.status, 200, whole)
        lines = whole.body.decode().splitlines()
        times = [json.loads(l)[0] for l in lines[1:]]
        self.assertGreater(len(times), 3)
        mid = times[len(times) // 2]
        r = self.get("recording?startTime=%s&endTime=%s" % (mid, times[-1]))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "application/x-asciicast")
        part = r.body.decode().splitlines()
        header = json.loads(part[0])
        self.assertEqual(header["version"], 2)
        evs = [json.loads(l) for l in part[1:]]
        self.assertEqual(len(evs), len([t for t in times if mid <= t <= times[-1]]))
        self.assertAlmostEqual(evs[0][0], 0.0, places=3)
        self.assertEqual([e[0] for e in evs], sorted(e[0] for e in evs))
        self.assertTrue(all(len(e) == 3 and e[1] in ("o", "i", "r", "m") for e in evs), evs)
        r = self.get("recording?endTime=%s" % mid)  # the terminal up to that time
        self.assertEqual(len(r.body.decode().splitlines()) - 1, len([t for t in times if t <= mid]))
        for q in ("startTime=-1", "startTime=x", "startTime=5&endTime=1", "endTime=1&format=ttyrec"):
            self.assertEqual(self.get("recording?" + q).status, 400, q)


if __name__ == "__main__":
    ahtest.main()
