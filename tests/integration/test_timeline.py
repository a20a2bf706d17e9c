"""The timeline and time travel (issue 12, API.md §7.8, D31-D34): a scripted session with five
tool boundaries edits a file before each; its timeline has five automatic moments (the tools'
names) and six snapshots (base + one per boundary) whose seqs are the tool_result events' and
whose sizes are real; manual snapshots and moments join it; seek makes a read-only view of any
point without disturbing the running session, the files/diff routes read a point with ?at=, the
recording is served in slices; a branch starts from a snapshot with the parent's files and its
events 1..k (inherited), and continues its own numbering. The test waits for the condition it
needs (polling with a deadline), never for a fixed time."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

import ahtest
from ahtest import AH_BIN, Server
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


def seek(server, sid, body):
    """POST …/seek until the view is ready: the server writes it in the background and answers
    202 `preparing` meanwhile (any other answer is returned as it is)."""
    def ask():
        r = server.post("/api/v1/sessions/%s/seek" % sid, body=body)
        if r.status == 202:
            assert r.json()["status"] == "preparing", r
            return None
        return r
    return poll(ask, "the seek view of %r" % (body,))


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
        cls.hold = os.path.join(cls.root, "hold")  # exists only inside the hold test
        cls.server = Server(args=("--workspace-template", cls.template),
                            env={"AH_SEEK_VIEWS_MAX": "3", "AH_TEST_HOOKS": "1",
                                 "AH_TEST_HOLD_AT": "seek_checkout",
                                 "AH_TEST_HOLD_FILE": cls.hold})
        s = cls.server
        cls.sid = create(s, task(scenario()))["id"]
        wait_status(s, cls.sid, "running", timeout=60)
        # each round: wait for its boundary's snapshot, look at the running session, go on
        cls.during = {}
        for i in range(1, ROUNDS + 1):
            tl = poll(lambda: cls._timeline_with(i + 1), "snapshot %d" % i)
            if i == 3:
                cls.during["timeline"] = tl
                cls.during["seek"] = seek(s, cls.sid, {"fsSnapshotId": tl["fsSnapshots"][3]["id"]})
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

    def seek(self, body):
        r = seek(self.server, self.sid, body)
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
            root = self.seek({"fsSnapshotId": third["id"]}).json()["mountPath"]
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
        r = self.seek({"seq": snaps[2]["seq"]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["fsSnapshotId"], snaps[2]["id"])
        r = self.seek({"seq": snaps[2]["seq"] + 1, "pausePlayer": False})
        self.assertEqual(r.json()["fsSnapshotId"], snaps[2]["id"])  # the newest at or before
        self.assertFalse(r.json()["playerPaused"])
        r = self.seek({"ts": 1e6})
        self.assertEqual(r.status, 200, r)
        newest = max(self.timeline()["fsSnapshots"], key=lambda s: (s["ts"], s["id"]))
        self.assertEqual(r.json()["fsSnapshotId"], newest["id"])
        self.assertEqual(r.json()["seekTime"], 1e6)

    def test_seek_never_waits_for_the_checkout(self):
        # the view is written on a background worker: held there (the hold point), the POST
        # still answers at once (202 preparing), as do more seeks and other requests; once
        # released, the same POST answers 200 with the view in place
        snaps = self.snaps()
        target = snaps[1]["id"]
        view = os.path.join(self.server.data_dir, "sessions", self.sid, "views", target)
        shutil.rmtree(view, ignore_errors=True)  # made by another test: make it again
        open(self.hold, "w").close()
        try:
            r = self.post("seek", {"fsSnapshotId": target})
            self.assertEqual(r.status, 202, r)
            self.assertEqual(r.json()["status"], "preparing")
            self.assertEqual(r.json()["mountPath"], view)
            self.assertIsNotNone(r.header("Retry-After"))
            poll(lambda: "holding at seek_checkout" in self.server.stderr(), "the hold")
            for s in snaps[2:5]:  # more views than HTTP threads, all held: answered anyway
                r = self.post("seek", {"fsSnapshotId": s["id"]})
                self.assertIn(r.status, (200, 202), r)
            r = self.post("seek", {"fsSnapshotId": target})
            self.assertEqual(r.status, 202, r)
            self.assertEqual(self.get("timeline").status, 200)
            self.assertFalse(os.path.exists(view))
        finally:
            os.unlink(self.hold)
        r = self.seek({"fsSnapshotId": target})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "ready")
        self.assertTrue(os.path.isfile(os.path.join(view, "f1.txt")))
        for s in snaps[2:5]:  # settled before the next test counts the views
            self.assertEqual(self.seek({"fsSnapshotId": s["id"]}).status, 200)

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
            r = self.seek({"fsSnapshotId": s["id"]})
            self.assertEqual(r.status, 200, r)
            paths.append(r.json()["mountPath"])
        # the cap is 3: the two least recently used are gone, the newest three remain
        self.assertEqual([os.path.isdir(p) for p in paths], [False, False, True, True, True])
        r = self.seek({"fsSnapshotId": snaps[0]["id"]})
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

    # ---- 3. branches --------------------------------------------------------------------------

    BRANCH_SCENARIO = [{"thought": "trying another way"},
                       {"edit": "branch.txt", "content": "from the branch\n"},
                       {"tool": "btool", "args": {}, "output": "x"},
                       {"log": "branch done"}]

    def branch(self, sid, body):
        r = self.post("session-branch", body, sid=sid)
        self.assertEqual(r.status, 201, r)
        b = r.json()
        done = wait_status(self.server, b["id"], ("completed", "failed"), timeout=90)
        self.assertEqual(done["status"], "completed", done)
        return b

    def files_of(self, sid, q=""):
        r = self.server.get("/api/v1/sessions/%s/files%s" % (sid, q))
        self.assertEqual(r.status, 200, r)
        return {f["path"]: f["status"] for f in r.json()["items"]}

    def content(self, sid, path, q=""):
        r = self.server.get("/api/v1/sessions/%s/files/%s/content%s" % (sid, path, q))
        return r.json()["content"] if r.status == 200 else r.status

    def test_branch_from_the_third_snapshot(self):
        snaps = self.snaps()
        third = snaps[3]
        k = third["seq"]
        parent_events = events(self.server, self.sid)
        parent_final = snaps[-1]["id"]
        b = self.branch(self.sid, {"fsSnapshotId": third["id"], "name": "b1",
                                   "injectedMessage": "try another way",
                                   "agents": [{"settings": {"scenario": self.BRANCH_SCENARIO}}]})
        self.assertEqual((b["parentSessionId"], b["fsSnapshotId"], b["name"], b["seq"]),
                         (self.sid, third["id"], "b1", k))
        self.assertTrue(b["injectedMessageId"].startswith("msg-"))
        self.assertAlmostEqual(b["branchFromTs"], third["ts"], places=3)
        # history: the parent's 1..k, inherited, then its own from k+1
        evs = events(self.server, b["id"])
        self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)))
        inherited = evs[:k]
        self.assertTrue(all(e.get("inherited") is True for e in inherited))
        self.assertEqual([(e["seq"], e["type"]) for e in inherited],
                         [(e["seq"], e["type"]) for e in parent_events[:k]])
        self.assertTrue(all(e["sessionId"] == b["id"] for e in evs))
        own = evs[k:]
        self.assertFalse(any(e.get("inherited") for e in own))
        self.assertEqual((own[0]["type"], own[0]["status"]), ("status", "queued"))
        self.assertIn("btool", [e.get("tool_name") for e in own if e["type"] == "tool_result"])
        # workspace: the third snapshot's files plus what the branch wrote
        self.assertEqual(self.files_of(b["id"], "?from=" + third["id"]), {"branch.txt": "added"})
        self.assertEqual(self.content(b["id"], "notes.txt"), "round 1\nround 2\nround 3\n")
        self.assertEqual(self.content(b["id"], "f4.txt"), 404)
        # compared with the parent's final snapshot
        self.assertEqual(self.files_of(b["id"], "?from=" + parent_final),
                         {"branch.txt": "added", "f4.txt": "deleted", "f5.txt": "deleted",
                          "notes.txt": "modified"})
        r = self.server.get("/api/v1/sessions/%s/diff?from=%s" % (b["id"], parent_final))
        self.assertEqual(r.status, 200, r)
        self.assertIn("-round 5", r.json()["diff"] if "diff" in r.json() else r.body.decode())
        # and the other way round, from the parent
        bsnap = [x for x in self.server.get("/api/v1/sessions/%s/timeline" % b["id"]).json()
                 ["fsSnapshots"]][-1]["id"]
        self.assertEqual(self.files_of(self.sid, "?from=%s&to=%s" % (parent_final, bsnap)),
                         {"branch.txt": "added", "f4.txt": "deleted", "f5.txt": "deleted",
                          "notes.txt": "modified"})
        # the parent's files never changed
        self.assertNotIn("branch.txt", self.files_of(self.sid))
        self.assertIn("round 5", self.content(self.sid, "notes.txt"))
        # the agent got the transcript up to the branch point, and the message as its prompt
        sdir = os.path.join(self.server.data_dir, "sessions", b["id"])
        with open(os.path.join(sdir, "transcript.jsonl")) as f:
            lines = [json.loads(l) for l in f]
        self.assertEqual([e["seq"] for e in lines], list(range(1, k + 1)))
        with open(os.path.join(sdir, "prompt.txt")) as f:
            self.assertEqual(f.read(), "try another way")
        # listed as the parent's branch, and as a use of the snapshot
        r = self.get("branches")
        self.assertEqual(r.status, 200, r)
        mine = [x for x in r.json()["branches"] if x["id"] == b["id"]]
        self.assertEqual(len(mine), 1)
        self.assertEqual((mine[0]["fsSnapshotId"], mine[0]["status"]), (third["id"], "completed"))
        used = {x["id"]: x for x in self.get("fs-snapshots").json()["snapshots"]}
        self.assertIn(b["id"], used[third["id"]]["used_in_branches"])

        # branch of a branch, from the branch's newest snapshot
        c = self.branch(b["id"], {"fromTs": 1e6, "agents": [
            {"settings": {"scenario": [{"edit": "c.txt", "content": "c\n"},
                                       {"tool": "ctool", "output": "y"}]}}]})
        self.assertEqual(c["parentSessionId"], b["id"])
        self.assertEqual(self.content(c["id"], "branch.txt"), "from the branch\n")
        self.assertEqual(self.content(c["id"], "notes.txt"), "round 1\nround 2\nround 3\n")
        cev = events(self.server, c["id"])
        self.assertTrue(all(e.get("inherited") for e in cev[:c["seq"]]))
        self.assertEqual(cev[c["seq"]]["status"], "queued")
        # compared with its grandparent's first boundary
        self.assertEqual(self.files_of(c["id"], "?from=" + snaps[1]["id"]),
                         {"branch.txt": "added", "c.txt": "added", "f2.txt": "added",
                          "f3.txt": "added", "notes.txt": "modified"})
        # the same point twice: two independent branches
        b2 = self.branch(self.sid, {"seq": k, "injectedMessage": "again",
                                    "agents": [{"settings": {"scenario": [{"log": "b2"}]}}]})
        self.assertEqual(b2["fsSnapshotId"], third["id"])
        ids = [x["id"] for x in self.get("branches").json()["branches"]]
        self.assertIn(b["id"], ids)
        self.assertIn(b2["id"], ids)
        self.assertNotEqual(b["id"], b2["id"])

    def test_branch_bad_input(self):
        third = self.snaps()[3]["id"]
        for body, field in (({}, "fsSnapshotId"), ({"fromTs": -1}, "fromTs"),
                            ({"fromTs": "x"}, "fromTs"), ({"seq": 0}, "seq"),
                            ({"fsSnapshotId": third, "fromTs": 1}, "fsSnapshotId"),
                            ({"fsSnapshotId": third, "name": "n" * 200}, "name"),
                            ({"fsSnapshotId": third, "injectedMessage": 5}, "injectedMessage"),
                            ({"fsSnapshotId": third, "agents": [{"type": "codex"}]}, "agents"),
                            ({"fsSnapshotId": third, "agents": [{}, {}]}, "agents"),
                            ({"fsSnapshotId": third, "agents": [{"settings": {
                                "scenario": [{"nope": 1}]}}]}, "scenario"),
                            ({"fsSnapshotId": third, "autoSummarize": 1}, "autoSummarize"),
                            ({"fsSnapshotId": third, "autoSummarize": True}, "not supported"),
                            ({"fsSnapshotId": third, "extra": 1}, "extra")):
            r = self.post("session-branch", body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn(field, r.body.decode())
        r = self.post("session-branch", {"fsSnapshotId": "snap-01J0000000000000000000GH0S"})
        self.assertEqual(r.status, 404, r)
        r = self.server.post("/api/v1/sessions/01J0000000000000000000GH0S/session-branch",
                             body={"fromTs": 1})
        self.assertEqual(r.status, 404, r)
        self.assertEqual(self.server.get(
            "/api/v1/sessions/01J0000000000000000000GH0S/branches").status, 404)

    # ---- 4. the CLI (through libah-client) ------------------------------------------------------

    def ah(self, *args):
        home = os.path.join(self.root, "cli-home")
        os.makedirs(home, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env.update(HOME=home, XDG_CONFIG_HOME=os.path.join(home, "config"), NO_COLOR="1")
        p = subprocess.run([AH_BIN, *args, "--remote-server",
                            "http://127.0.0.1:%d" % self.server.port],
                           capture_output=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def test_cli(self):
        rc, out, err = self.ah("session", "timeline", self.sid)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out.splitlines()[0], r"^duration [0-9.]+s, \d+ moments, \d+ snapshots$")
        for i in range(1, ROUNDS + 1):
            self.assertIn("tool%d" % i, out)
        rc, out, err = self.ah("session", "timeline", self.sid, "--json")
        self.assertEqual(rc, 0, err)
        tl = json.loads(out)
        self.assertEqual(tl["sessionId"], self.sid)
        rc, out, err = self.ah("session", "snapshot", self.sid, "--label", "from the cli")
        self.assertEqual(rc, 0, err)
        snap = out.strip()
        self.assertTrue(snap.startswith("snap-"), out)
        labels = {s["id"]: s["label"] for s in self.timeline()["fsSnapshots"]}
        self.assertEqual(labels[snap], "from the cli")
        third = self.snaps()[3]
        rc, out, err = self.ah("session", "seek", self.sid, "--at", third["id"])
        self.assertEqual(rc, 0, err)
        with open(os.path.join(out.strip(), "notes.txt")) as f:
            self.assertEqual(f.read(), "round 1\nround 2\nround 3\n")
        rc, out, err = self.ah("session", "seek", self.sid, "--at", "seq:%d" % third["seq"],
                               "--json")
        self.assertEqual(json.loads(out)["fsSnapshotId"], third["id"])
        for bad in ("seq:0", "-3", "yesterday"):
            rc, out, err = self.ah("session", "seek", self.sid, "--at", bad)
            self.assertEqual(rc, 2, (bad, out, err))
        rc, out, err = self.ah("session", "seek", self.sid)
        self.assertEqual(rc, 2, err)
        rc, out, err = self.ah("session", "seek", self.sid, "--at",
                               "snap-01J0000000000000000000GH0S")
        self.assertNotEqual(rc, 0)
        self.assertIn("no snapshot", err)
        rc, out, err = self.ah("session", "branch", self.sid, "--at", third["id"], "--prompt",
                               "from the cli", "--settings",
                               json.dumps({"scenario": [{"edit": "cli.txt", "content": "x\n"},
                                                        {"log": "cli branch"}]}), "--follow")
        self.assertEqual(rc, 0, (out, err))
        bid = out.splitlines()[0].strip()
        self.assertIn("cli branch", out)
        self.assertNotIn("tool1", out)  # --follow shows the branch's own events only
        self.assertEqual(self.content(bid, "cli.txt"), "x\n")
        ids = [b["id"] for b in self.get("branches").json()["branches"]]
        self.assertIn(bid, ids)


class Resume(unittest.TestCase):
    """Branching a real agent resumes its CLI's own conversation (claude-code `--resume`, codex
    `exec resume`): the branch's agent is given the id of a saved conversation, written where
    the CLI keeps them, that holds the parent's first prompt and its turns up to the branch
    point and nothing after; the injected message is the new turn. The fake CLIs under
    tests/fixtures/bin record the argv and the conversation they were given."""

    FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="ah-resume-")
        # the fake CLIs stop at a line the test names until it opens their gate (FAKE_GATE)
        cls.gate = os.path.realpath(os.path.join(cls.root, "gate"))
        os.makedirs(cls.gate)
        tpl = os.path.join(cls.root, "template")
        os.makedirs(tpl)
        with open(os.path.join(tpl, "README.md"), "w") as f:
            f.write("the template\n")
        # the fake CLIs replay recordings from the checkout: readable inside the sandbox
        cfg = os.path.join(cls.root, "config.toml")
        with open(cfg, "w") as f:
            f.write("[sandbox.default]\nread-only = [%s, %s]\n"
                    % (json.dumps(os.path.realpath(cls.FIXTURES)), json.dumps(cls.gate)))
        path = os.path.join(cls.FIXTURES, "bin") + ":" + os.environ["PATH"]
        cls.server = Server(args=("--config", cfg, "--workspace-template", tpl,
                                  "--agent-env", "FAKE_GATE"),
                            env={"PATH": path, "FAKE_GATE": cls.gate})

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.root, ignore_errors=True)

    def open_gate(self, sid):
        open(os.path.join(self.gate, sid), "w").close()

    def branch_of(self, agent, record, gate_line):
        """Runs `agent` with its fake stopped after fixture line `gate_line` (its second tool
        result) until the snapshot of that boundary is on the timeline, then branches from that
        snapshot: a point with tool calls before it and after it, however loaded the machine
        (without the gate, boundaries close together may share one snapshot)."""
        s = self.server
        with open(os.path.join(self.gate, "%s.line" % record.rsplit("-", 1)[1]), "w") as f:
            f.write("%d\n" % gate_line)
        sid = create(s, task(agent=agent, prompt="fix the token check"))["id"]
        api = "/api/v1/sessions/" + sid
        second = poll(lambda: ([e["seq"] for e in events(s, sid) if e["type"] == "tool_result"]
                               + [None, None])[1], "the second tool result")
        point = poll(lambda: [x for x in s.get(api + "/timeline").json()["fsSnapshots"]
                              if x["seq"] >= second][:1], "the snapshot of that boundary")[0]
        self.open_gate(sid)
        done = wait_status(s, sid, ("completed", "failed"), timeout=90)
        self.assertEqual(done["status"], "completed", s.stderr()[-2000:])
        r = s.post(api + "/session-branch",
                   body={"fsSnapshotId": point["id"], "injectedMessage": "now try memcmp"})
        self.assertEqual(r.status, 201, r)
        bid = r.json()["id"]
        self.open_gate(bid)  # the branch replays the fixture too
        b = wait_status(s, bid, ("completed", "failed"), timeout=90)
        self.assertEqual(b["status"], "completed", (b, s.stderr()[-2000:]))
        ws = b["workspace"]["mountPath"]
        with open(os.path.join(ws, record, "argv")) as f:
            argv = f.read().split("\n")
        conv = os.path.join(ws, record, "conversation.jsonl" if agent == "claude-code"
                            else "rollout.jsonl")
        with open(conv) as f:
            lines = [json.loads(x) for x in f if x.strip()]
        # the branch's history: the parent's events up to the point, inherited
        evs = events(s, bid)
        inherited = [e for e in evs if e.get("inherited")]
        self.assertEqual(inherited[-1]["seq"], point["seq"])
        return argv, lines, events(s, sid), point["seq"]

    def test_claude_code_resumes_its_conversation(self):
        argv, lines, parent, k = self.branch_of("claude-code", ".fake-claude", 9)
        i = argv.index("--resume")
        sid = argv[i + 1]
        self.assertRegex(sid, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertEqual(argv[argv.index("-p") + 1], "now try memcmp")  # the new turn only
        self.assertTrue(all(x["sessionId"] == sid for x in lines))
        # a chain: each line's parent is the line before
        self.assertIsNone(lines[0]["parentUuid"])
        for a, b in zip(lines, lines[1:]):
            self.assertEqual(b["parentUuid"], a["uuid"])
        self.assertEqual(lines[0]["message"], {"role": "user", "content": "fix the token check"})
        calls = [c for x in lines if x["type"] == "assistant"
                 for c in x["message"]["content"] if c["type"] == "tool_use"]
        results = [c for x in lines if x["type"] == "user" and isinstance(x["message"]["content"], list)
                   for c in x["message"]["content"] if c["type"] == "tool_result"]
        # exactly the parent's tool calls up to the point, each with its result (a call still
        # running there gets a failed one), and nothing after it
        want = [e for e in parent if e["type"] == "tool_use" and e["seq"] <= k
                and e.get("status") != "running"]
        self.assertEqual([(c["id"], c["name"]) for c in calls],
                         [(e["tool_execution_id"], e["tool_name"]) for e in want])
        self.assertEqual([c["name"] for c in calls][:2], ["Read", "Edit"])
        self.assertEqual([r["tool_use_id"] for r in results], [c["id"] for c in calls])
        done = {e["tool_execution_id"] for e in parent if e["type"] == "tool_result" and e["seq"] <= k}
        for r in results:
            self.assertEqual(r["is_error"] and r["tool_use_id"] not in done,
                             r["tool_use_id"] not in done, r)
        before = [e for e in parent if e["seq"] <= k and e["type"] == "chat_message"]
        texts = [c["text"] for x in lines if x["type"] == "assistant"
                 for c in x["message"]["content"] if c["type"] == "text"]
        self.assertEqual(texts, [e["content"] for e in before])
        later = {e["tool_execution_id"] for e in parent if e["seq"] > k and e["type"] == "tool_use"}
        self.assertTrue(later, "the branch point should leave later tool calls out")
        self.assertFalse(later & {c["id"] for c in calls} - {e["tool_execution_id"] for e in want})

    def test_codex_resumes_its_rollout(self):
        argv, lines, parent, k = self.branch_of("codex", ".fake-codex", 13)
        self.assertEqual(argv[:3], ["exec", "--json", "--full-auto"])
        i = argv.index("resume")
        self.assertEqual(argv[i + 2], "now try memcmp")
        meta = lines[0]
        self.assertEqual(meta["type"], "session_meta")
        self.assertEqual(meta["payload"]["id"], argv[i + 1])
        items = [x["payload"] for x in lines[1:]]
        self.assertEqual(items[0]["role"], "user")
        self.assertEqual(items[0]["content"][0]["text"], "fix the token check")
        calls = [x["call_id"] for x in items if x["type"] == "function_call"]
        outs = [x["call_id"] for x in items if x["type"] == "function_call_output"]
        want = []  # the calls announced up to the point, once each (codex reports them again)
        for e in parent:
            if (e["type"] == "tool_use" and e["seq"] <= k and e.get("status") != "running"
                    and e["tool_execution_id"] not in want):
                want.append(e["tool_execution_id"])
        self.assertTrue(want)
        self.assertEqual(calls, want)
        self.assertEqual(sorted(outs), sorted(want))  # every call has its output
        later = [e for e in parent if e["type"] == "tool_result" and e["seq"] > k]
        self.assertTrue(later, "the branch point should leave later tool calls out")


class Retention(unittest.TestCase):
    """Beyond AH_SNAPSHOTS_MAX automatic snapshots a session's oldest ones that no branch was
    made from leave its timeline; disk usage is reported by workspace/info; DELETE ?purge=true
    removes a session's snapshots and views (the store stays while a branch borrows it)."""

    def test_cap_purge_and_usage(self):
        root = tempfile.mkdtemp(prefix="ah-retention-")
        tpl = os.path.join(root, "t")
        os.makedirs(tpl)
        with open(os.path.join(tpl, "a.txt"), "w") as f:
            f.write("a\n")
        s = Server(args=("--workspace-template", tpl),
                   env={"AH_SNAPSHOTS_MAX": "2", "AH_SNAPSHOTS_GC_GRACE_MS": "0"})
        try:
            steps = []
            # each round rewrites it; larger than the pack takes, so each is a loose file
            big = {i: "round %d\n" % i * 5000 for i in range(1, 5)}
            for i in range(1, 5):
                steps += [{"edit": "r%d.txt" % i, "content": "%d\n" % i},
                          {"edit": "big.txt", "content": big[i]},
                          {"tool": "tool%d" % i, "output": "ok"}]
                if i < 4:
                    steps.append({"wait_prompt": True})
            sid = create(s, task(steps))["id"]
            api = "/api/v1/sessions/" + sid

            def diffs(n):
                return len([e for e in events(s, sid, type="diff")]) >= n

            first = None
            for i in range(1, 5):
                poll(lambda: diffs(i), "round %d's snapshot" % i)
                if i == 1:
                    tl = s.get(api + "/timeline").json()
                    first = [x for x in tl["fsSnapshots"] if x["label"] == "tool1"][0]["id"]
                    r = s.post(api + "/session-branch", body={
                        "fsSnapshotId": first,
                        "agents": [{"settings": {"scenario": [{"log": "b"}]}}]})
                    self.assertEqual(r.status, 201, r)
                    bid = r.json()["id"]
                if i < 4:
                    self.assertEqual(s.post(api + "/prompt", body={"prompt": "go"}).status, 202)
            wait_status(s, sid, "completed", timeout=90)
            wait_status(s, bid, "completed", timeout=90)
            tl = s.get(api + "/timeline").json()
            # tool1 is kept (a branch was made from it), tool2 and tool3 went, tool4 is newest
            self.assertEqual([x["label"] for x in tl["fsSnapshots"]], ["base", "tool1", "tool4"])
            gone = [m["fsSnapshotId"] for m in tl["moments"]
                    if m["label"] == "tool2" and "fsSnapshotId" in m]
            self.assertEqual(gone, [])
            # the forgotten snapshots' disk is freed: big.txt of rounds 2 and 3 only they held
            def blob(i):
                data = big[i].encode()
                h = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                return os.path.join(s.data_dir, "sessions", sid, "snapshots", "objects",
                                    h[:2], h[2:])
            poll(lambda: not os.path.exists(blob(2)) and not os.path.exists(blob(3)),
                 "the forgotten snapshots' objects to be deleted (%s)" % s.stderr()[-3000:])
            self.assertTrue(os.path.exists(blob(1)))  # a branch was made there
            self.assertTrue(os.path.exists(blob(4)))
            # disk usage
            self.assertEqual(seek(s, sid, {"fsSnapshotId": first}).status, 200)
            info = s.get(api + "/workspace/info").json()
            self.assertGreater(info["snapshots_bytes"], 0)
            self.assertGreater(info["views_bytes"], 0)
            # purge: the branch's files go; the parent's store stays for the branch
            bdir = os.path.join(s.data_dir, "sessions", bid)
            pdir = os.path.join(s.data_dir, "sessions", sid)
            self.assertTrue(os.path.isdir(os.path.join(bdir, "snapshots")))
            r = s.request("DELETE", api + "?purge=true")
            self.assertEqual(r.status, 204, r)
            self.assertFalse(os.path.exists(os.path.join(pdir, "views")))
            self.assertTrue(os.path.isdir(os.path.join(pdir, "snapshots")))
            r = s.get("/api/v1/sessions/%s/files/a.txt/content" % bid)
            self.assertEqual(r.status, 200, r)
            r = s.request("DELETE", "/api/v1/sessions/%s?purge=true" % bid)
            self.assertEqual(r.status, 204, r)
            self.assertFalse(os.path.exists(os.path.join(bdir, "snapshots")))
        finally:
            s.close()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    ahtest.main()
