"""Files, diffs and workspace snapshots (issue 11, D30-D32): a scripted session edits, appends,
deletes and (by deleting a file and writing its content under a new name) renames files of a
workspace template; GET /files, /diff, the file_edit/diff events, the workspace tree and the
patch agree with each other and with `git diff` of the same two trees. Hostile paths
(traversal, encoded traversal, symlinks out, NUL, 4 KiB paths, invalid UTF-8) never expose a
byte from outside the workspace and never get a 5xx."""

import base64
import gzip
import http.client
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import unittest
import urllib.parse

import ahtest
from ahtest import Server
from sessiontest import create, events, task, wait_status

SECRET = "outside-secret-7d1c0e\n"
BIG = "".join("line %d\n" % i for i in range(200))


def git(cwd, *args):
    return subprocess.run(["git", "-c", "core.quotepath=off", *args], cwd=cwd, check=True,
                          capture_output=True).stdout


class Files(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="ah-files-")
        cls.outside = os.path.join(cls.root, "outside")
        os.makedirs(cls.outside)
        with open(os.path.join(cls.outside, "secret.txt"), "w") as f:
            f.write(SECRET)
        t = cls.template = os.path.join(cls.root, "template")
        os.makedirs(os.path.join(t, "src"))
        files = {"src/edit.txt": "one\ntwo\nthree\n", "src/append.txt": "first\n",
                 "gone.txt": "to be deleted\n", "old_name.txt": BIG,
                 "search": "a file named search\n", "bin.dat": "\0\1\2binary"}
        for p, c in files.items():
            with open(os.path.join(t, p), "w") as f:
                f.write(c)
        os.symlink(os.path.join(cls.outside, "secret.txt"), os.path.join(t, "leak"))
        os.symlink(cls.outside, os.path.join(t, "escape"))
        cls.base_files = files
        cls.server = Server(args=("--workspace-template", cls.template))
        steps = [
            {"thought": "changing files"},
            {"edit": "src/edit.txt", "content": "one\nTWO\nthree\nfour\n"},
            {"tool": "grep", "args": {"q": "x"}, "result": "ok"},
            {"append": "src/append.txt", "content": "second\nthird\n"},
            {"delete": "gone.txt"},
            {"delete": "old_name.txt"},
            {"edit": "new_name.txt", "content": BIG + "one more\n"},
            {"edit": "added/deep/file.py", "content": "print('hi')\n"},
            {"log": "done"},
        ]
        sid = create(cls.server, task(steps))["id"]
        cls.sid = sid
        cls.final = wait_status(cls.server, sid, ("completed", "failed"), timeout=90)

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.root, ignore_errors=True)

    def get(self, path, **kw):
        r = self.server.get("/api/v1/sessions/%s/%s" % (self.sid, path), **kw)
        self.assertLess(r.status, 500, (path, r.body[:500]))
        return r

    def git_diff(self, *extra):
        """`git diff` of the template (base) and the final workspace, as two commits."""
        d = tempfile.mkdtemp(prefix="ah-gd-", dir=self.root)
        ws = self.final["workspace"]["mountPath"]
        git(d, "init", "-q")
        for src in (self.template, ws):
            for name in os.listdir(d):
                if name != ".git":
                    p = os.path.join(d, name)
                    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
            for name in os.listdir(src):
                s, t = os.path.join(src, name), os.path.join(d, name)
                if os.path.islink(s):
                    os.symlink(os.readlink(s), t)
                elif os.path.isdir(s):
                    shutil.copytree(s, t, symlinks=True)
                else:
                    shutil.copy2(s, t)
            git(d, "add", "-A")
            git(d, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x",
                "--allow-empty")
        return git(d, "diff", "--no-color", *extra, "HEAD~1", "HEAD"), d

    def test_session_completed(self):
        self.assertEqual(self.final["status"], "completed", self.server.stderr()[-3000:])

    def test_files_list(self):
        r = self.get("files?perPage=200")
        self.assertEqual(r.status, 200, r)
        body = r.json()
        by = {f["path"]: f for f in body["items"]}
        self.assertEqual(by["src/edit.txt"]["status"], "modified")
        self.assertEqual((by["src/edit.txt"]["lines_added"], by["src/edit.txt"]["lines_removed"]),
                         (2, 1))
        self.assertEqual(by["src/append.txt"]["lines_added"], 2)
        self.assertEqual(by["gone.txt"]["status"], "deleted")
        self.assertEqual(by["new_name.txt"]["status"], "renamed")
        self.assertEqual(by["new_name.txt"]["old_path"], "old_name.txt")
        self.assertEqual(by["added/deep/file.py"]["status"], "added")
        self.assertEqual(body["total"], 5)
        self.assertIn("pagination", body)
        # the numbers agree with git's
        stat, _ = self.git_diff("--numstat", "-M")
        for line in stat.decode().splitlines():
            a, d, p = line.split("\t")
            p = p.split(" => ")[-1].rstrip("}") if "=>" in p else p
            self.assertEqual((by[p]["lines_added"], by[p]["lines_removed"]), (int(a), int(d)), p)
        # filters and paging
        r = self.get("files?status=deleted")
        self.assertEqual([f["path"] for f in r.json()["items"]], ["gone.txt"])
        r = self.get("files?path=src/*")
        self.assertEqual(sorted(f["path"] for f in r.json()["items"]),
                         ["src/append.txt", "src/edit.txt"])
        r = self.get("files?path=**/*.py")
        self.assertEqual([f["path"] for f in r.json()["items"]], ["added/deep/file.py"])
        r = self.get("files?perPage=2&page=2")
        self.assertEqual(len(r.json()["items"]), 2)
        self.assertEqual(r.json()["total"], 5)
        self.assertEqual(self.get("files?status=bogus").status, 400)

    def test_diff_matches_git(self):
        expected, _ = self.git_diff("-M")
        r = self.get("diff?format=patch")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("text/x-diff"))
        r2 = self.get("diff", headers={"Accept": "text/x-diff"})
        self.assertEqual(r2.body, r.body)
        uni = self.get("diff?format=unified").json()
        text = "".join(f["diff"] for f in uni["files"])
        self.assertEqual(text.encode(), expected)
        self.assertEqual(uni["total_lines_added"], sum(f["lines_added"] for f in uni["files"]))
        for ctx in (0, 10):
            exp, _ = self.git_diff("-M", "-U%d" % ctx)
            got = "".join(f["diff"] for f in self.get("diff?context=%d" % ctx).json()["files"])
            self.assertEqual(got.encode(), exp, ctx)
        self.assertEqual(self.get("diff?context=11").status, 400)
        self.assertEqual(self.get("diff?format=nope").status, 400)

    def test_patch_applies(self):
        patch = self.get("diff?format=patch").body
        d = tempfile.mkdtemp(prefix="ah-apply-", dir=self.root)
        shutil.copytree(self.template, os.path.join(d, "w"), symlinks=True)
        w = os.path.join(d, "w")
        git(w, "init", "-q")
        p = subprocess.run(["git", "apply", "--binary", "-"], cwd=w, input=patch,
                           capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        ws = self.final["workspace"]["mountPath"]
        for rel in ("src/edit.txt", "src/append.txt", "new_name.txt", "added/deep/file.py"):
            with open(os.path.join(w, rel), "rb") as a, open(os.path.join(ws, rel), "rb") as b:
                self.assertEqual(a.read(), b.read(), rel)
        self.assertFalse(os.path.exists(os.path.join(w, "gone.txt")))
        self.assertFalse(os.path.exists(os.path.join(w, "old_name.txt")))

    def test_file_diff_and_formats(self):
        r = self.get("diff/src/edit.txt")
        self.assertEqual(r.status, 200, r)
        o = r.json()
        self.assertEqual(o["status"], "modified")
        self.assertEqual(len(o["hunks"]), 1)
        h = o["hunks"][0]
        self.assertEqual((h["old_start"], h["old_lines"], h["new_start"], h["new_lines"]),
                         (1, 3, 1, 4))
        self.assertTrue(h["content"].startswith("@@ -1,3 +1,4 @@"))
        self.assertIsNone(o["file_content"])
        full = self.get("diff/src/edit.txt?full=true").json()
        self.assertEqual(full["file_content"], "one\nTWO\nthree\nfour\n")
        split = self.get("diff/src/edit.txt?format=split").json()
        kinds = [row["kind"] for f in split["split"]["files"] for hk in f["hunks"]
                 for row in hk["rows"]]
        self.assertIn("change", kinds)
        html = self.get("diff/src/edit.txt?format=html").json()["html"]
        self.assertIn("TWO", html)
        self.assertNotIn("<script", html)
        patch = self.get("diff/src/edit.txt?format=patch").body.decode()
        self.assertTrue(patch.startswith("diff --git a/src/edit.txt b/src/edit.txt"))
        self.assertEqual(self.get("diff/src/nothing.txt").status, 404)
        r = self.get("diff/new_name.txt").json()
        self.assertEqual((r["status"], r["old_path"]), ("renamed", "old_name.txt"))

    def test_file_detail_content_preview(self):
        o = self.get("files/src/edit.txt").json()
        self.assertEqual((o["status"], o["encoding"]), ("modified", "utf-8"))
        seqs = [h["seq"] for h in o["history"]]
        self.assertTrue(seqs and seqs == sorted(seqs), o["history"])
        c = self.get("files/src/edit.txt/content").json()
        self.assertEqual((c["content"], c["encoding"], c["is_modified"]),
                         ("one\nTWO\nthree\nfour\n", "utf-8", True))
        b = self.get("files/bin.dat/content").json()
        self.assertEqual(b["encoding"], "base64")
        self.assertEqual(base64.b64decode(b["content"]), b"\0\1\2binary")
        self.assertFalse(b["is_modified"])
        pv = self.get("files/new_name.txt/preview?max_lines=3").json()
        self.assertEqual(pv["content_preview"], "line 0\nline 1\nline 2\n")
        self.assertEqual(pv["lines"], 201)
        self.assertEqual(self.get("files/x/preview?max_lines=99").status, 400)
        # D32: a file named "search" through ?path=
        c = self.get("files/content?path=search").json()
        self.assertEqual(c["content"], "a file named search\n")
        self.assertEqual(self.get("files/search?path=search").status, 404)  # unchanged file
        # the base point reads the template's content
        c = self.get("files/gone.txt/content?to=base").json()
        self.assertEqual(c["content"], "to be deleted\n")
        self.assertEqual(self.get("files/gone.txt/content").status, 404)

    def test_search(self):
        r = self.get("files/search?limit=5&q=" + urllib.parse.quote("^line 19[0-9]$"))
        self.assertEqual(r.status, 200, r)
        res = r.json()["results"]
        self.assertEqual([x["path"] for x in res], ["new_name.txt"])
        self.assertEqual(len(res[0]["matches"]), 10)
        self.assertEqual(self.get("files/search?q=(unclosed").status, 400)
        r = self.get("files/search?q=" + urllib.parse.quote("(a+)+$"))
        self.assertEqual(r.status, 200)

    def test_events_agree(self):
        evs = events(self.server, self.sid)
        edits = [e for e in evs if e["type"] == "file_edit"]
        diffs = [e for e in evs if e["type"] == "diff"]
        self.assertTrue(diffs)
        # every file_edit names a snapshot, and the sum over snapshots of each file's numbers
        # equals what happened (files edited once each here)
        by = {}
        for e in edits:
            self.assertIn("snapshot_id", e)
            a, d = by.get(e["file_path"], (0, 0))
            by[e["file_path"]] = (a + e["lines_added"], d + e["lines_removed"])
        self.assertEqual(by["src/edit.txt"], (2, 1))
        self.assertEqual(by["src/append.txt"], (2, 0))
        self.assertEqual(by["gone.txt"], (0, 1))
        # each diff event's text is that snapshot's diff, as the diff route gives it
        for d in diffs:
            self.assertFalse(d["truncated"])
            url = d["url"]
            r = self.server.get(url)
            self.assertEqual(r.status, 200, r)
            self.assertEqual("".join(f["diff"] for f in r.json()["files"]), d["diff"])
        # the final changes are the totals since the base
        total = self.get("diff").json()
        self.assertEqual(self.final["changes"]["files_changed"], 5)
        self.assertEqual(self.final["changes"]["lines_added"], total["total_lines_added"])
        # the file_edit history of a file names those events' seq
        seqs = {e["seq"] for e in edits if e["file_path"] == "src/edit.txt"}
        hist = {h["seq"] for h in self.get("files/src/edit.txt").json()["history"]}
        self.assertEqual(seqs, hist)

    def test_tree_info_download(self):
        t = self.get("workspace/files?recursive=true").json()
        self.assertEqual(t["type"], "directory")
        names = {}

        def walk(n):
            for c in n.get("children", []):
                names[c["path"]] = c
                walk(c)
        walk(t)
        self.assertEqual(names["leak"]["type"], "symlink")
        self.assertEqual(names["escape"]["type"], "symlink")
        self.assertTrue(names["src/edit.txt"]["is_modified"])
        self.assertFalse(names["search"]["is_modified"])
        self.assertNotIn("gone.txt", names)
        m = self.get("workspace/files?recursive=true&modified_only=true").json()
        names.clear()
        walk(m)
        self.assertEqual(sorted(p for p, n in names.items() if n["type"] != "directory"),
                         ["added/deep/file.py", "new_name.txt", "src/append.txt",
                          "src/edit.txt"])
        top = self.get("workspace/files").json()
        self.assertNotIn("children", [c for c in top["children"] if c["path"] == "src"][0])
        info = self.get("workspace/info").json()
        self.assertEqual(info["session_id"], self.sid)
        self.assertGreaterEqual(info["file_count"], 8)
        r = self.get("workspace/download")
        self.assertEqual(r.status, 200)
        with tarfile.open(fileobj=io.BytesIO(r.body), mode="r:gz") as tf:
            members = {m.name: m for m in tf.getmembers()}
            self.assertEqual(tf.extractfile("src/edit.txt").read(), b"one\nTWO\nthree\nfour\n")
            self.assertTrue(members["leak"].issym())
            self.assertNotIn(SECRET.encode(), r.body)
            for m in members.values():
                if m.isfile():
                    self.assertNotIn(SECRET.encode(), tf.extractfile(m).read())

    def test_fuzzy_path_search(self):
        r = self.get("workspace/search/files?q=sedit")
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertEqual(body["files"][0]["path"], "src/edit.txt")
        self.assertEqual(body["files"][0]["preview"], "one\nTWO\nthree\nfour\n")
        self.assertTrue(body["files"][0]["is_modified"])
        r = self.get("workspace/search/files?q=deep&type=directory").json()
        self.assertEqual([d["path"] for d in r["directories"]], ["added/deep/"])
        self.assertEqual(r["files"], [])
        r = self.get("workspace/search/files?q=txt&modified_only=true&include_preview=false")
        self.assertEqual(sorted(f["path"] for f in r.json()["files"]),
                         ["new_name.txt", "src/append.txt", "src/edit.txt"])
        self.assertTrue(all(f["preview"] is None for f in r.json()["files"]))
        self.assertEqual(self.get("workspace/search/files?q=zzzzqqq").json()["total"], 0)
        self.assertEqual(self.get("workspace/search/files?type=x").status, 400)

    def test_hostile_paths(self):
        hostile = ["files/../../../../etc/passwd/content", "files/%2e%2e/%2e%2e/etc/passwd",
                   "files/leak/content", "files/escape/secret.txt/content",
                   "files/%2Fetc%2Fpasswd/content",
                   "diff/..%2F..%2Fsecret.txt", "files/" + "a/" * 2100 + "x/content",
                   "files/.git/config/content",
                   "files/content?path=../outside/secret.txt",
                   "files/content?path=/etc/passwd", "files/content?path=escape/secret.txt",
                   "workspace/files?path=../..", "workspace/files?path=escape",
                   "diff?files=../x", "files?path=" + "*" * 5000]
        for h in hostile:
            r = self.server.get("/api/v1/sessions/%s/%s" % (self.sid, h))
            self.assertLess(r.status, 500, (h, r.status, r.body[:300]))
            self.assertNotIn(SECRET.strip().encode(), r.body, h)
            self.assertNotIn(b"root:x:0", r.body, h)
        # NUL: sent raw (the contract hook cannot check a path the server cuts at the NUL)
        # and invalid UTF-8 (a problem's instance cannot hold it)
        for h in ("files/a%00b/content", "files/content?path=a%00b", "diff/..%00/x",
                  "files/%ff%fe/content", "files/content?path=%ff", "diff/%c0%ae%c0%ae/x"):
            c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            c.request("GET", "/api/v1/sessions/%s/%s" % (self.sid, h))
            resp = c.getresponse()
            body = resp.read()
            c.close()
            self.assertLess(resp.status, 500, (h, body[:300]))
            self.assertNotIn(SECRET.strip().encode(), body, h)
            if "%ff" in h or "%c0" in h:
                self.assertEqual(resp.status, 400, (h, body[:300]))
        # a symlink reads as its target text, not the target's content
        c = self.get("files/leak/content").json()
        self.assertEqual(c["type"], "symlink")
        self.assertEqual(c["content"], os.path.join(self.outside, "secret.txt"))
        self.assertEqual(self.get("files/%2e%2e/x/content").status, 400)
        self.assertEqual(self.get("files/content?path=../x").status, 400)

    def test_points(self):
        evs = events(self.server, self.sid, type="diff")
        first = evs[0]["snapshot_id"]
        r = self.get("files?to=" + first)
        self.assertEqual(r.status, 200)
        self.assertLessEqual(r.json()["total"], 5)
        self.assertEqual(self.get("files?from=current&to=current").json()["total"], 0)
        self.assertEqual(self.get("files?to=snap-nope").status, 400)
        self.assertEqual(self.get("files?to=snap-01ARZ3NDEKTSV4RRFFQ69G5FAV").status, 404)
        self.assertEqual(self.server.get("/api/v1/sessions/01ARZ3NDEKTSV4RRFFQ69G5FAV/files")
                         .status, 404)

    def test_large_diff_event_is_cut(self):
        # D31: a diff event carries at most 64 KiB of unified text, cut at a line end, with
        # truncated: true and the url of the whole diff
        big = "".join("a longer line of generated text number %06d\n" % i for i in range(3000))
        sid = create(self.server, task([{"edit": "big.txt", "content": big}]))["id"]
        st = wait_status(self.server, sid, ("completed", "failed"), timeout=90)
        self.assertEqual(st["status"], "completed")
        diffs = [e for e in events(self.server, sid) if e["type"] == "diff"]
        self.assertEqual(len(diffs), 1, diffs)
        d = diffs[0]
        self.assertTrue(d["truncated"])
        self.assertLessEqual(len(d["diff"].encode()), 64 * 1024)
        self.assertTrue(d["diff"].endswith("\n"))
        self.assertEqual(d["lines_added"], 3000)
        full = self.server.get(d["url"]).json()
        text = "".join(f["diff"] for f in full["files"])
        self.assertTrue(text.startswith(d["diff"]))
        self.assertGreater(len(text), len(d["diff"]))
        edits = [e for e in events(self.server, sid) if e["type"] == "file_edit"]
        self.assertEqual([(e["file_path"], e["lines_added"]) for e in edits], [("big.txt", 3000)])

    def cli(self, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env["HOME"] = self.root
        return subprocess.run([ahtest.AH_BIN, *args, "--remote-server",
                               "http://127.0.0.1:%d" % self.server.port],
                              capture_output=True, timeout=60, env=env)

    def test_cli_files_and_diff(self):
        p = self.cli("session", "files", self.sid)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.decode().splitlines()
        self.assertEqual(len(lines), 5, lines)
        self.assertTrue(any(l.startswith("M") and l.endswith("src/edit.txt") and "+2" in l
                            for l in lines), lines)
        self.assertTrue(any(l.startswith("R") and "old_name.txt -> new_name.txt" in l
                            for l in lines), lines)
        self.assertNotIn(b"\033[", p.stdout)  # piped: no colour
        p = self.cli("session", "files", self.sid, "--status", "deleted", "--json")
        self.assertEqual([json.loads(l)["path"] for l in p.stdout.decode().splitlines()],
                         ["gone.txt"])
        # unified: the text git prints
        expected, _ = self.git_diff("-M")
        p = self.cli("session", "diff", self.sid)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, expected)
        p = self.cli("session", "diff", self.sid, "src/edit.txt", "--context", "0")
        self.assertTrue(p.stdout.startswith(b"diff --git a/src/edit.txt"), p.stdout)
        self.assertIn(b"@@ -2 +2 @@ one\n-two\n+TWO\n@@ -3,0 +4 @@ three\n+four\n", p.stdout)
        # ah session diff ID --format patch | git apply
        d = tempfile.mkdtemp(prefix="ah-cli-apply-", dir=self.root)
        w = os.path.join(d, "w")
        shutil.copytree(self.template, w, symlinks=True)
        git(w, "init", "-q")
        sh = "%s session diff %s --format patch --remote-server http://127.0.0.1:%d | git apply" % (
            ahtest.AH_BIN, self.sid, self.server.port)
        p = subprocess.run(["sh", "-c", sh], cwd=w, capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(w, "new_name.txt")) as f:
            self.assertEqual(f.read(), BIG + "one more\n")
        self.assertFalse(os.path.exists(os.path.join(w, "gone.txt")))
        # usage errors never reach the server
        self.assertEqual(self.cli("session", "diff", self.sid, "--format", "x").returncode, 2)
        self.assertEqual(self.cli("session", "files").returncode, 2)
        p = self.cli("session", "diff", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"01ARZ3NDEKTSV4RRFFQ69G5FAV", p.stderr)


if __name__ == "__main__":
    unittest.main()
