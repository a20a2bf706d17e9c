"""Issue 11 acceptance on a real checkout: a scripted session on a git workspace (repo.mode git)
edits, appends, deletes and renames files (a pure rename, a rename then an edit, a move into a
new directory), with tool runs between them so that several automatic snapshots happen. Then
GET /files, GET /diff (unified and patch), the file_edit and diff events, and the workspace tree
agree with each other and with `git diff -M` of the base commit and the final workspace, both
real git checkouts."""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

import ahtest
from ahtest import Server
from sessiontest import create, events, task, wait_status

LONG = "".join("paragraph %d of a long enough file\n" % i for i in range(40))
BASE = {
    "README.md": "# Project\n\nSome words.\n",
    "src/main.c": "int main(void) {\n    return 0;\n}\n",
    "src/util.c": "int add(int a, int b) {\n    return a + b;\n}\n",
    "notes/log.txt": "day 1\n",
    "docs/old.md": LONG,
    "docs/move_me.md": LONG.replace("paragraph", "section"),
    "obsolete.txt": "remove me\n",
    "pure.txt": LONG.replace("paragraph", "chapter"),
    "lib/a.txt": "library a\n",
    "lib/sub/b.txt": "library b\nline 2\n",
}
STEPS = [
    {"thought": "editing"},
    {"edit": "src/main.c", "content": "int main(void) {\n    return add(1, 2);\n}\n"},
    {"append": "notes/log.txt", "content": "day 2\nday 3\n"},
    {"tool": "make", "output": "ok"},
    {"sleep": 600},  # past the snapshot coalescing window: the next changes are a new snapshot
    {"delete": "obsolete.txt"},
    {"rename": "pure.txt", "to": "renamed.txt"},
    {"tool": "make", "output": "ok"},
    {"sleep": 600},  # past the snapshot coalescing window: the next changes are a new snapshot
    {"rename": "docs/old.md", "to": "docs/new.md"},
    {"append": "docs/new.md", "content": "one more paragraph\n"},
    {"rename": "docs/move_me.md", "to": "archive/2026/moved.md"},
    {"tool": "make", "output": "ok"},
    {"sleep": 600},  # past the snapshot coalescing window: the next changes are a new snapshot
    {"edit": "src/new_file.h", "content": "#pragma once\nint add(int a, int b);\n"},
    {"sleep": 600},
    # a whole directory moved: inotify tells of the directory alone, and the snapshot that
    # names only the paths the watcher reported must still see every file of it leave
    {"rename": "lib", "to": "vendor/lib"},
    {"sleep": 600},
    {"log": "done"},
]


def git(cwd, *args, **kw):
    return subprocess.run(["git", "-c", "core.quotepath=off", *args], cwd=cwd, check=True,
                          capture_output=True, **kw).stdout


class Checkout(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="ah-checkout-")
        src = cls.src = os.path.join(cls.root, "repo")
        for p, c in BASE.items():
            os.makedirs(os.path.dirname(os.path.join(src, p)), exist_ok=True)
            with open(os.path.join(src, p), "w") as f:
                f.write(c)
        git(src, "init", "-q", "-b", "main")
        git(src, "add", "-A")
        git(src, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")
        cls.server = Server()
        sid = create(cls.server, task(STEPS, repo={"mode": "git", "url": src}))["id"]
        cls.sid = sid
        cls.final = wait_status(cls.server, sid, ("completed", "failed"), timeout=120)
        # the final workspace as a commit on top of the base, in a copy of the real checkout
        # (the session's own checkout is left as it is)
        cls.check = os.path.join(cls.root, "check")
        shutil.copytree(cls.final["workspace"]["mountPath"], cls.check, symlinks=True)
        git(cls.check, "add", "-A")
        git(cls.check, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "end")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.root, ignore_errors=True)

    def get(self, path):
        r = self.server.get("/api/v1/sessions/%s/%s" % (self.sid, path))
        self.assertEqual(r.status, 200, (path, r.body[:500]))
        return r

    def gitdiff(self, *extra):
        return git(self.check, "diff", "--no-color", "-M", *extra, "HEAD~1", "HEAD")

    def test_completed(self):
        self.assertEqual(self.final["status"], "completed", self.server.stderr()[-3000:])

    def test_files_agree_with_git(self):
        items = self.get("files?perPage=200").json()["items"]
        ours = {f["path"]: f for f in items}
        status = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed"}
        theirs = {}
        for line in self.gitdiff("--name-status").decode().splitlines():
            parts = line.split("\t")
            kind = status[parts[0][0]]
            theirs[parts[-1]] = (kind, parts[1] if kind == "renamed" else None)
        self.assertEqual({p: (f["status"], f.get("old_path")) for p, f in ours.items()}, theirs)
        # what the session did, said plainly
        self.assertEqual(theirs["renamed.txt"], ("renamed", "pure.txt"))
        self.assertEqual(theirs["docs/new.md"], ("renamed", "docs/old.md"))
        self.assertEqual(theirs["archive/2026/moved.md"], ("renamed", "docs/move_me.md"))
        self.assertEqual(theirs["obsolete.txt"], ("deleted", None))
        self.assertEqual(theirs["src/new_file.h"], ("added", None))
        self.assertEqual(theirs["vendor/lib/sub/b.txt"], ("renamed", "lib/sub/b.txt"))
        for line in self.gitdiff("--numstat").decode().splitlines():
            a, d, p = line.split("\t")
            if "=>" in p:  # "{old => new}" or "old => new"
                pre, _, rest = p.partition("{")
                if rest:
                    mid, _, post = rest.partition("}")
                    p = (pre + mid.split(" => ")[1] + post).replace("//", "/")
                else:
                    p = p.split(" => ")[1]
            self.assertEqual((ours[p]["lines_added"], ours[p]["lines_removed"]), (int(a), int(d)),
                             p)
        changes = self.final["changes"]
        self.assertEqual(changes["files_changed"], len(theirs))
        self.assertEqual(changes["lines_added"], sum(f["lines_added"] for f in items))
        self.assertEqual(changes["lines_removed"], sum(f["lines_removed"] for f in items))

    def test_diff_agrees_with_git(self):
        uni = self.get("diff").json()
        self.assertEqual("".join(f["diff"] for f in uni["files"]).encode(), self.gitdiff())
        for ctx in (0, 1, 10):
            got = "".join(f["diff"] for f in self.get("diff?context=%d" % ctx).json()["files"])
            self.assertEqual(got.encode(), self.gitdiff("-U%d" % ctx), ctx)
        # the patch turns the base checkout into the final tree, exactly
        patch = self.get("diff?format=patch").body
        w = os.path.join(self.root, "apply")
        git(self.root, "clone", "-q", self.src, w)
        p = subprocess.run(["git", "apply", "--index", "--binary", "-"], cwd=w, input=patch,
                           capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(git(w, "write-tree"), git(self.check, "rev-parse", "HEAD^{tree}"))

    def test_events_agree(self):
        evs = events(self.server, self.sid)
        edits = [e for e in evs if e["type"] == "file_edit"]
        diffs = [e for e in evs if e["type"] == "diff"]
        self.assertGreaterEqual(len(diffs), 2, "several snapshots happened")
        # every diff event is its snapshot pair's diff, and its file_edit events are that pair's
        # changed files with the same numbers
        for d in diffs:
            r = self.server.get(d["url"])
            self.assertEqual(r.status, 200, r)
            files = r.json()["files"]
            self.assertEqual("".join(f["diff"] for f in files), d["diff"])
            mine = [e for e in edits if e["snapshot_id"] == d["snapshot_id"]]
            self.assertEqual(len(mine), d["files"])
            self.assertEqual(sorted((e["file_path"], e["lines_added"], e["lines_removed"])
                                    for e in mine),
                             sorted((f["path"], f["lines_added"], f["lines_removed"])
                                    for f in files))
            self.assertEqual(d["lines_added"], sum(e["lines_added"] for e in mine))
        # each file was touched in one snapshot (or renamed in one and edited in a later one),
        # so the events add up to the whole change
        total = {}
        for e in edits:
            a, r = total.get(e["file_path"], (0, 0))
            total[e["file_path"]] = (a + e["lines_added"], r + e["lines_removed"])
        files = {f["path"]: f for f in self.get("files?perPage=200").json()["items"]}
        for p, f in files.items():
            self.assertEqual(total[p], (f["lines_added"], f["lines_removed"]), p)
        renames = {e["file_path"]: e.get("old_path") for e in edits if e["change"] == "renamed"}
        self.assertEqual(renames.get("renamed.txt"), "pure.txt")
        self.assertEqual(renames.get("archive/2026/moved.md"), "docs/move_me.md")

    def test_watched_snapshots_name_paths(self):
        """The snapshots after watched edits look at the reported paths only (the fast path);
        the events above prove they saw everything."""
        r = self.server.get("/metrics")
        self.assertEqual(r.status, 200, r)
        counts = [l for l in r.body.decode().splitlines()
                  if l.startswith('ah_snapshot_seconds_count{kind="watched"}')]
        self.assertEqual(len(counts), 1, r.body[-2000:])
        self.assertGreaterEqual(float(counts[0].split()[-1]), 2)

    def test_tree_agrees_with_checkout(self):
        t = self.get("workspace/files?recursive=true").json()
        ours = {}

        def walk(n):
            for c in n.get("children", []):
                if c["type"] != "directory":
                    ours[c["path"]] = c
                walk(c)
        walk(t)
        tracked = git(self.check, "ls-tree", "-r", "-l", "HEAD").decode().splitlines()
        theirs = {}
        for line in tracked:
            meta, path = line.split("\t")
            theirs[path] = int(meta.split()[3])
        self.assertEqual({p: n["size_bytes"] for p, n in ours.items()}, theirs)
        changed = {f["path"] for f in self.get("files?perPage=200").json()["items"]
                   if f["status"] != "deleted"}
        self.assertEqual({p for p, n in ours.items() if n["is_modified"]}, changed)



class Current(unittest.TestCase):
    """`to=current` on a running session (item 6 of issue 11): the server knows which paths
    the workspace watcher reported since the newest snapshot, so `current` is that snapshot when
    nothing changed (no new snapshot at all) and a snapshot of the reported paths otherwise, never
    a walk of the whole tree on the HTTP thread. What the agent (here: the test, writing into the
    workspace) changes shows up once the watcher has reported it."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="ah-current-")
        cls.server = Server(env={"AH_SNAPSHOT_COALESCE_MS": "60000"})  # the worker stays away
        steps = [{"edit": "a.txt", "content": "a\n"}, {"wait_prompt": True}, {"log": "done"}]
        cls.sid = create(cls.server, task(steps))["id"]
        cls.ws = wait_status(cls.server, cls.sid, "running", timeout=120)["workspace"]["mountPath"]

    @classmethod
    def tearDownClass(cls):
        cls.server.post("/api/v1/sessions/%s/stop" % cls.sid)
        cls.server.close()
        shutil.rmtree(cls.root, ignore_errors=True)

    def files(self):
        r = self.server.get("/api/v1/sessions/%s/files?perPage=200" % self.sid)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def wait_for(self, path, status="added"):
        """GET /files until path has that status (None: until it is not listed)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = self.files()
            st = {f["path"]: f["status"] for f in body["items"]}.get(path)
            if st == status:
                return body
            time.sleep(0.05)
        self.fail("%s never %s in GET /files: %s" % (path, status, body))

    def test_current_follows_the_watcher(self):
        first = self.wait_for("a.txt")
        # nothing changed: `current` is the newest snapshot, not a new one per request
        again = self.files()
        self.assertEqual(again["to"], first["to"])
        # a file the agent writes, and a symlink it makes (a create with no close: the watcher
        # reports it at once), appear as soon as the watcher has told the server
        with open(os.path.join(self.ws, "b.txt"), "w") as f:
            f.write("one\ntwo\n")
        body = self.wait_for("b.txt")
        self.assertNotEqual(body["to"], first["to"])
        b = [f for f in body["items"] if f["path"] == "b.txt"][0]
        self.assertEqual((b["lines_added"], b["lines_removed"]), (2, 0))
        os.symlink("b.txt", os.path.join(self.ws, "link"))
        self.wait_for("link")
        os.remove(os.path.join(self.ws, "a.txt"))
        self.wait_for("a.txt", None)
        self.assertEqual(self.files()["to"], self.files()["to"])




class Claims(unittest.TestCase):
    """An agent's own file_edit (its edit tool's report, with `status`) does not double the
    snapshot's (D31): its counts move to claimed_lines_added/_removed, lines_added/_removed
    read 0, and the numbers that add up are the diff's."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        steps = [{"edit": "c.txt", "content": "one\ntwo\n",
                  "claim": {"lines_added": 99, "lines_removed": 7}},
                 {"log": "done"}]
        cls.sid = create(cls.server, task(steps))["id"]
        cls.final = wait_status(cls.server, cls.sid, ("completed", "failed"), timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def test_claim_does_not_count(self):
        self.assertEqual(self.final["status"], "completed")
        edits = [e for e in events(self.server, self.sid)
                 if e["type"] == "file_edit" and e["file_path"] == "c.txt"]
        claims = [e for e in edits if e.get("claimed")]
        measured = [e for e in edits if "snapshot_id" in e]
        self.assertEqual(len(claims), 1, edits)
        self.assertEqual((claims[0]["lines_added"], claims[0]["lines_removed"]), (0, 0))
        self.assertEqual((claims[0]["claimed_lines_added"], claims[0]["claimed_lines_removed"]),
                         (99, 7))
        self.assertEqual(claims[0]["status"], "completed")
        self.assertEqual(len(measured), 1, edits)
        self.assertEqual((measured[0]["lines_added"], measured[0]["lines_removed"]), (2, 0))
        self.assertEqual(sum(e["lines_added"] for e in edits), 2)
        self.assertEqual(self.final["changes"]["lines_added"], 2)


if __name__ == "__main__":
    ahtest.main()
