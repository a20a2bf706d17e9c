"""Symlinks that lead out of a workspace (issue 10 item 17): a workspace template or a repository
may hold links to anywhere; the scripted agent's edit/append/delete refuse any path that resolves
outside the workspace (openat2 RESOLVE_BENEATH), and what the server reads for a session (the
file watcher's diffs) never follows a link out. Every scenario checks that the directory outside
is untouched afterwards."""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

import ahtest
from ahtest import Server
from sessiontest import create, events, task, wait_status

SECRET = "outside-secret-content-7f3a\n"


class Symlinks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="ah-links-")
        cls.outside = os.path.join(cls.root, "outside")
        os.makedirs(cls.outside)
        cls.template = os.path.join(cls.root, "template")
        os.makedirs(os.path.join(cls.template, "sub"))
        with open(os.path.join(cls.template, "sub", "inner.txt"), "w") as f:
            f.write("inside\n")
        os.symlink(cls.outside, os.path.join(cls.template, "escape"))  # a directory outside
        os.symlink(os.path.join(cls.outside, "secret.txt"), os.path.join(cls.template, "leak"))
        os.symlink("../outside/secret.txt", os.path.join(cls.template, "rel"))
        os.symlink("sub", os.path.join(cls.template, "inner"))  # stays inside: allowed
        cls.server = Server(args=("--workspace-template", cls.template))

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        with open(os.path.join(self.outside, "secret.txt"), "w") as f:
            f.write(SECRET)

    def assertOutsideUntouched(self):
        self.assertEqual(sorted(os.listdir(self.outside)), ["secret.txt"])
        with open(os.path.join(self.outside, "secret.txt")) as f:
            self.assertEqual(f.read(), SECRET)

    def run_steps(self, steps, body=None):
        sid = create(self.server, body or task(steps))["id"]
        st = wait_status(self.server, sid, ("completed", "failed"), timeout=60)
        return sid, st

    def test_writes_through_links_are_refused(self):
        for step in ({"edit": "escape/new.txt", "content": "x"},
                     {"edit": "escape/secret.txt", "content": "overwritten"},
                     {"append": "leak", "content": "appended"},
                     {"edit": "leak", "content": "overwritten"},
                     {"edit": "rel", "content": "overwritten"},
                     {"delete": "escape/secret.txt"},
                     {"edit": "escape/deeper/new.txt", "content": "x"}):
            sid, st = self.run_steps([step])
            self.assertEqual(st["status"], "failed", (step, st))
            logs = [e["message"] for e in events(self.server, sid) if e["type"] == "log"]
            self.assertTrue(any("leads outside the workspace" in m for m in logs), (step, logs))
            self.assertOutsideUntouched()

    def test_links_inside_and_deleting_a_link_itself_work(self):
        sid, st = self.run_steps([{"edit": "inner/made.txt", "content": "ok\n"},
                                  {"append": "sub/inner.txt", "content": "more\n"},
                                  {"delete": "leak"}, {"log": "done"}])
        self.assertEqual(st["status"], "completed", st)
        ws = os.path.join(self.server.tmp, "workspaces", sid)
        with open(os.path.join(ws, "sub", "made.txt")) as f:
            self.assertEqual(f.read(), "ok\n")
        self.assertFalse(os.path.lexists(os.path.join(ws, "leak")))
        self.assertOutsideUntouched()

    def test_watcher_never_reads_through_a_link(self):
        sid, st = self.run_steps([{"edit": "a.txt", "content": "a\n"}, {"delete": "rel"},
                                  {"log": "done"}])
        self.assertEqual(st["status"], "completed", st)
        text = json.dumps(events(self.server, sid))
        self.assertNotIn(SECRET.strip(), text)
        self.assertOutsideUntouched()

    def test_repository_with_a_link_out(self):
        repo = os.path.join(self.root, "repo")
        os.makedirs(repo, exist_ok=True)
        git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x"] +
                                        list(a), cwd=repo, check=True, capture_output=True)
        git("init", "-q", "-b", "main")
        os.symlink(self.outside, os.path.join(repo, "out"))
        with open(os.path.join(repo, "README"), "w") as f:
            f.write("r\n")
        git("add", "out", "README")
        git("commit", "-q", "-m", "a link out")
        body = task([{"edit": "out/planted.txt", "content": "x"}],
                    repo={"mode": "git", "url": repo})
        sid, st = self.run_steps(None, body=body)
        self.assertEqual(st["status"], "failed", st)
        self.assertOutsideUntouched()


if __name__ == "__main__":
    ahtest.main()
