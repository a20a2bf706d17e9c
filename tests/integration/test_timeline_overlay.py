"""Branches as overlay mounts (issue 12, D34: "an overlay where the kernel allows"): where the
server can mount (root, here and in CI), a branch's workspace IS an overlay mount in the
server's mount namespace, over the branch point written out once as a shared lower layer. The
branch's agent, in its sandbox, edits, deletes and creates files: the file watcher sees them,
the branch's snapshots read the merged tree, and neither the parent's workspace, nor its seek
view, nor the shared layer changes. A server restart while the branch runs keeps the mount; a
mount gone (a reboot) is mounted again at start; purge unmounts and the last user's purge
removes the layer; nothing is left mounted. With AH_BRANCH_OVERLAY=0 the same branch is
written out file by file (the fallback where the kernel refuses). The test waits for the
condition it needs (polling with a deadline), never for a fixed time."""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import ahtest
from ahtest import Server
from sessiontest import (create, events, is_agent_start, is_sandbox, processes, task, wait_for,
                         wait_status)


def mount_of(path):
    """(fstype, super options) of the mount whose root is path, else None."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            if point == path:
                sep = fields.index("-")
                return fields[sep + 1], fields[sep + 3]
    return None


def tree(root):
    """{relative path: (sha256, mode, mtime_ns)} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for n in files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = (hashlib.sha256(f.read()).hexdigest(),
                                                 st.st_mode, st.st_mtime_ns)
    return out


def read(path):
    with open(path) as f:
        return f.read()


def can_mount_overlay(tmp):
    """Whether this process may mount an overlay (the server runs as the same user)."""
    d = tempfile.mkdtemp(dir=tmp)
    for n in ("l", "u", "w", "m"):
        os.mkdir(os.path.join(d, n))
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        "lowerdir=%s/l,upperdir=%s/u,workdir=%s/w" % (d, d, d), d + "/m"],
                       capture_output=True)
    if r.returncode == 0:
        subprocess.run(["umount", d + "/m"], check=True)
    shutil.rmtree(d)
    return r.returncode == 0


PARENT = [{"edit": "keep.txt", "content": "kept\n"},
          {"tool": "t1", "args": {}, "output": "ok"},
          {"log": "parent done"}]
BRANCH = [{"edit": "a.txt", "content": "changed by the branch\n"},
          {"delete": "b.txt"},
          {"edit": "new.txt", "content": "new in the branch\n"},
          {"append": "sub/c.txt", "content": "more\n"},
          {"wait_prompt": True},
          {"edit": "after.txt", "content": "after the restart\n"},
          {"tool": "t2", "args": {}, "output": "ok"},
          {"log": "branch done"}]


class OverlayBranch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="ah-tl-overlay-")
        t = cls.template = os.path.join(cls.root, "template")
        os.makedirs(os.path.join(t, "sub"))
        for name, text in (("a.txt", "a\n"), ("b.txt", "b\n"), ("sub/c.txt", "c\n")):
            with open(os.path.join(t, name), "w") as f:
                f.write(text)
        with open(os.path.join(t, "run.sh"), "w") as f:
            f.write("#!/bin/sh\necho run\n")
        os.chmod(os.path.join(t, "run.sh"), 0o755)
        cls.mountable = can_mount_overlay(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def start(self, env=None):
        s = Server(args=("--workspace-template", self.template), env=env or {})
        self.addCleanup(s.close)
        return s

    def parent(self, s):
        sid = create(s, task(PARENT))["id"]
        wait_status(s, sid, "completed", timeout=90)
        snaps = s.get("/api/v1/sessions/%s/fs-snapshots" % sid).json()["snapshots"]
        snap = [x for x in snaps if x["label"] == "t1"][0]["id"]
        return sid, snap

    def branch(self, s, sid, snap):
        r = s.post("/api/v1/sessions/%s/session-branch" % sid,
                   body={"fsSnapshotId": snap, "injectedMessage": "go",
                         "agents": [{"settings": {"scenario": BRANCH}}]})
        self.assertEqual(r.status, 201, r)
        return r.json()["id"]

    def edits(self, s, sid):
        return {e["file_path"] for e in events(s, sid, type="file_edit") if not e.get("inherited")}

    def test_branch_is_an_overlay_and_the_parent_never_changes(self):
        if not self.mountable:  # the fallback is what the next test checks
            self.fail("this machine cannot mount overlays: the test needs root (or a user "
                      "namespace that may), as here and in CI")
        s = self.start()
        sid, snap = self.parent(s)
        pws = os.path.join(s.tmp, "workspaces", sid)
        view = wait_for(lambda: (lambda r: r.status == 200 and r.json()["mountPath"])(
            s.post("/api/v1/sessions/%s/seek" % sid, body={"fsSnapshotId": snap})),
            what="the seek view")
        before = {"workspace": tree(pws), "view": tree(view)}

        bid = self.branch(s, sid, snap)
        wait_status(s, bid, "running", timeout=60)
        info = s.get("/api/v1/sessions/%s" % bid).json()
        ws = info["workspace"]["mountPath"]
        self.assertEqual(info["workspace"]["snapshotProvider"], "overlay")
        m = mount_of(ws)
        self.assertIsNotNone(m, "the branch's workspace is not a mount")
        self.assertEqual(m[0], "overlay")
        layer = os.path.join(s.tmp, "layers", snap)
        self.assertIn("lowerdir=" + layer, m[1])
        before["layer"] = tree(layer)

        # the agent (in its sandbox when the server has one) edits, deletes, creates: the
        # watcher sees it before any tool boundary (the agent now waits for a prompt)
        wait_for(lambda: {"a.txt", "b.txt", "new.txt", "sub/c.txt"} <= self.edits(s, bid),
                 timeout=60, what="file_edit events of the branch's edits")
        procs = processes(bid)
        sandboxed = [v[3] for v in procs.values() if is_sandbox(v[3])]
        if info["runtime"].get("sandbox"):
            self.assertTrue(any(ws in c for c in sandboxed), (info["runtime"], procs))
        self.assertTrue(any(is_agent_start(v[3]) for v in procs.values()), procs)
        self.assertEqual(read(os.path.join(ws, "a.txt")), "changed by the branch\n")
        self.assertFalse(os.path.exists(os.path.join(ws, "b.txt")))
        self.assertEqual(read(os.path.join(ws, "sub/c.txt")), "c\nmore\n")
        self.assertTrue(os.access(os.path.join(ws, "run.sh"), os.X_OK))

        # a restart while it runs: the mount stays, the agent goes on in it
        s.stop()
        s.start()
        self.assertEqual(mount_of(ws)[0], "overlay")
        r = s.post("/api/v1/sessions/%s/prompt" % bid, body={"prompt": "go on"})
        self.assertEqual(r.status, 202, r)
        wait_status(s, bid, "completed", timeout=90)
        self.assertEqual(read(os.path.join(ws, "after.txt")), "after the restart\n")

        # the branch's snapshots read the merged tree
        r = s.get("/api/v1/sessions/%s/files?from=%s" % (bid, snap))
        self.assertEqual(r.status, 200, r)
        self.assertEqual({f["path"]: f["status"] for f in r.json()["items"]},
                         {"a.txt": "modified", "b.txt": "deleted", "new.txt": "added",
                          "sub/c.txt": "modified", "after.txt": "added"})

        # the parent's workspace, its seek view and the shared layer never changed
        self.assertEqual(tree(pws), before["workspace"])
        self.assertEqual(tree(view), before["view"])
        self.assertEqual(tree(layer), before["layer"])

        # a mount gone (as after a reboot) is mounted again at start
        s.stop()
        subprocess.run(["umount", ws], check=True)
        self.assertIsNone(mount_of(ws))
        s.start()
        self.assertEqual(mount_of(ws)[0], "overlay")
        self.assertEqual(read(os.path.join(ws, "new.txt")), "new in the branch\n")

        # purge unmounts, and the layer goes with its last user; nothing stays mounted
        r = s.request("DELETE", "/api/v1/sessions/%s?purge=true" % bid)
        self.assertEqual(r.status, 204, r)
        self.assertIsNone(mount_of(ws))
        self.assertFalse(os.path.exists(layer))
        self.assertEqual(ahtest.mounts_under(s.tmp), [])
        self.assertEqual(tree(pws), before["workspace"])

    def test_two_branches_share_one_layer(self):
        if not self.mountable:
            self.fail("this machine cannot mount overlays")
        s = self.start()
        sid, snap = self.parent(s)
        one, two = self.branch(s, sid, snap), self.branch(s, sid, snap)
        for b in (one, two):
            wait_status(s, b, "running", timeout=60)
        layer = os.path.join(s.tmp, "layers", snap)
        self.assertEqual(sorted(os.listdir(layer + ".users")), sorted([one, two]))
        # the parent's purge leaves its branches' layer alone
        r = s.request("DELETE", "/api/v1/sessions/%s?purge=true" % sid)
        self.assertEqual(r.status, 204, r)
        self.assertTrue(os.path.isdir(layer))
        r = s.request("DELETE", "/api/v1/sessions/%s?purge=true" % one)
        self.assertEqual(r.status, 204, r)
        wait_for(lambda: mount_of(os.path.join(s.tmp, "workspaces", one)) is None,
                 what="the first branch unmounted")
        self.assertTrue(os.path.isdir(layer))  # the other branch still uses it
        # still mounted, reading the shared layer (run.sh is no branch's change)
        self.assertEqual(mount_of(os.path.join(s.tmp, "workspaces", two))[0], "overlay")
        self.assertEqual(read(os.path.join(s.tmp, "workspaces", two, "run.sh")),
                         "#!/bin/sh\necho run\n")
        r = s.request("DELETE", "/api/v1/sessions/%s?purge=true" % two)
        self.assertEqual(r.status, 204, r)
        wait_for(lambda: not os.path.exists(layer), what="the layer removed with its last user")
        self.assertEqual(ahtest.mounts_under(s.tmp), [])

    def test_fallback_writes_the_branch_out(self):
        s = self.start(env={"AH_BRANCH_OVERLAY": "0"})
        sid, snap = self.parent(s)
        bid = self.branch(s, sid, snap)
        wait_status(s, bid, "running", timeout=60)
        info = s.get("/api/v1/sessions/%s" % bid).json()
        ws = info["workspace"]["mountPath"]
        self.assertEqual(info["workspace"]["snapshotProvider"], "snapshot")
        self.assertIsNone(mount_of(ws))
        wait_for(lambda: {"a.txt", "b.txt", "new.txt"} <= self.edits(s, bid), timeout=60,
                 what="file_edit events of the branch's edits")
        self.assertEqual(read(os.path.join(ws, "a.txt")), "changed by the branch\n")
        self.assertFalse(os.path.exists(os.path.join(s.tmp, "layers", snap)))
        r = s.request("DELETE", "/api/v1/sessions/%s?purge=true" % bid)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(ahtest.mounts_under(s.tmp), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
