"""Delivery of a session's result (issue 11 item 7): `branch` commits the workspace at the end of
a successful session and pushes it to the task's repository (here a local bare repository is the
remote); `patch` keeps the patch as GET /sessions/{id}/delivery, which `git apply` applies to the
base; `pr` is refused at creation with 422. The outcome is a `delivery` event (before the final
status) and the session's `delivery` field; a failed push is recorded there, never lost, and the
session still completes (the agent did its work)."""

import os
import shutil
import subprocess
import tempfile
import unittest

import ahtest
from ahtest import Server
from sessiontest import create, events, task, wait_status


def git(cwd, *args, **kw):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          **kw).stdout


STEPS = [
    {"edit": "README", "content": "hello\nchanged by the agent\n"},
    {"edit": "src/new.txt", "content": "new file\n"},
    {"delete": "gone.txt"},
    {"log": "done"},
]


class Delivery(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="ah-delivery-")
        src = os.path.join(cls.root, "src")
        os.makedirs(src)
        git(src, "init", "-q", "-b", "main")
        with open(os.path.join(src, "README"), "w") as f:
            f.write("hello\n")
        with open(os.path.join(src, "gone.txt"), "w") as f:
            f.write("to be deleted\n")
        git(src, "add", "-A")
        git(src, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")
        cls.base_commit = git(src, "rev-parse", "HEAD").strip()
        cls.remote = os.path.join(cls.root, "remote.git")
        git(cls.root, "clone", "-q", "--bare", src, cls.remote)
        # every git step of a delivery is bounded by the clone timeout
        cls.server = Server(args=("--clone-timeout-ms", "8000"))

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.root, ignore_errors=True)

    def run_session(self, delivery, url=None, prompt="Make the change\n\nWith some detail."):
        body = task(STEPS, prompt=prompt, delivery=delivery,
                    repo={"mode": "git", "url": url or self.remote})
        sid = create(self.server, body)["id"]
        s = wait_status(self.server, sid, ("completed", "failed"), timeout=120)
        self.assertEqual(s["status"], "completed", (s, self.server.stderr()[-3000:]))
        evs = events(self.server, sid)
        dl = [e for e in evs if e["type"] == "delivery"]
        self.assertEqual(len(dl), 1, evs)
        # recorded before the final status
        final = [e for e in evs if e["type"] == "status" and e["status"] == "completed"][0]
        self.assertLess(dl[0]["seq"], final["seq"])
        return sid, s, dl[0]

    def test_branch_pushed_to_remote(self):
        sid, s, ev = self.run_session({"mode": "branch"})
        branch = "ah/" + sid
        self.assertEqual(ev["status"], "delivered", ev)
        self.assertEqual(ev["mode"], "branch")
        self.assertEqual(ev["branch"], branch)
        self.assertEqual(ev["url"], self.remote)
        # the session's field says the same
        d = s["delivery"]
        self.assertEqual((d["mode"], d["status"], d["branch"], d["commit"]),
                         ("branch", "delivered", branch, ev["commit"]))
        # the remote has the branch at that commit: the agent's changes on top of the base
        self.assertEqual(git(self.remote, "rev-parse", "refs/heads/" + branch).strip(),
                         ev["commit"])
        self.assertEqual(git(self.remote, "rev-parse", ev["commit"] + "^").strip(),
                         self.base_commit)
        self.assertEqual(git(self.remote, "show", ev["commit"] + ":README"),
                         "hello\nchanged by the agent\n")
        self.assertEqual(git(self.remote, "show", ev["commit"] + ":src/new.txt"), "new file\n")
        names = git(self.remote, "ls-tree", "-r", "--name-only", ev["commit"]).split()
        self.assertNotIn("gone.txt", names)
        # author: the agent; message: the prompt
        fmt = git(self.remote, "log", "-1", "--format=%an%n%s%n%b", ev["commit"])
        self.assertTrue(fmt.startswith("scripted\nMake the change\n"), fmt)
        self.assertIn("With some detail.", fmt)
        self.assertIn("Agent-Harbor-Session: " + sid, fmt)
        # the workspace's own HEAD, index and branches are untouched (D30)
        ws = s["workspace"]["mountPath"]
        self.assertEqual(git(ws, "rev-parse", "HEAD").strip(), self.base_commit)
        self.assertIn("README", git(ws, "diff", "--name-only"))
        # a branch delivery has no patch artifact
        r = self.server.get("/api/v1/sessions/%s/delivery" % sid)
        self.assertEqual(r.status, 404)

    def test_the_agents_git_config_never_runs(self):
        """The workspace's .git is the agent's to write, and git runs commands named in a
        repository's config (a filter driver during add, core.sshCommand and credential helpers
        during push, fsmonitor) as the server, outside the sandbox. Delivery never runs git on
        it: the planted commands do not run, the URL is not rewritten, the content is not
        filtered."""
        steps = [{"wait_prompt": True}] + STEPS
        body = task(steps, delivery={"mode": "branch"}, repo={"mode": "git", "url": self.remote})
        sid = create(self.server, body)["id"]
        s = wait_status(self.server, sid, "running", timeout=120)
        ws = s["workspace"]["mountPath"]
        marker = os.path.join(self.root, "pwned-%s" % sid)
        evil = "touch %s" % marker
        decoy = os.path.join(self.root, "decoy-%s.git" % sid)
        git(self.root, "init", "-q", "--bare", decoy)
        with open(os.path.join(ws, ".git", "config"), "a") as f:
            f.write('[filter "evil"]\n\tclean = sh -c \'%s; cat\'\n\trequired = true\n' % evil)
            f.write('[core]\n\tfsmonitor = sh -c \'%s\'\n' % evil)
            f.write('\tsshCommand = sh -c \'%s\'\n' % evil)
            f.write('[credential]\n\thelper = !sh -c \'%s\'\n' % evil)
            f.write('[url "%s"]\n\tinsteadOf = %s\n' % (decoy, self.remote))
        with open(os.path.join(ws, ".gitattributes"), "w") as f:
            f.write("* filter=evil\n")
        hooks = os.path.join(ws, ".git", "hooks")
        for h in ("pre-commit", "pre-push", "post-commit", "reference-transaction"):
            with open(os.path.join(hooks, h), "w") as f:
                f.write("#!/bin/sh\n%s\n" % evil)
            os.chmod(os.path.join(hooks, h), 0o755)
        r = self.server.post("/api/v1/sessions/%s/prompt" % sid, body={"prompt": "go"})
        self.assertIn(r.status, (200, 202), r)
        s = wait_status(self.server, sid, ("completed", "failed"), timeout=120)
        self.assertEqual(s["status"], "completed", s)
        ev = [e for e in events(self.server, sid) if e["type"] == "delivery"][0]
        self.assertEqual(ev["status"], "delivered", ev)
        self.assertFalse(os.path.exists(marker), "a command from the agent's .git/config ran")
        # pushed where the task said, not where the agent's insteadOf pointed
        self.assertEqual(git(self.remote, "rev-parse", "refs/heads/ah/" + sid).strip(),
                         ev["commit"])
        self.assertEqual(git(decoy, "for-each-ref"), "")
        self.assertEqual(git(self.remote, "rev-parse", ev["commit"] + "^").strip(),
                         self.base_commit)
        self.assertEqual(git(self.remote, "show", ev["commit"] + ":README"),
                         "hello\nchanged by the agent\n")
        self.assertEqual(git(self.remote, "show", ev["commit"] + ":.gitattributes"),
                         "* filter=evil\n")

    def test_named_branch(self):
        sid, s, ev = self.run_session({"mode": "branch", "branch": "feature/agent-work"})
        self.assertEqual(ev["status"], "delivered", ev)
        self.assertEqual(git(self.remote, "rev-parse", "refs/heads/feature/agent-work").strip(),
                         ev["commit"])
        self.assertEqual(s["delivery"]["branch"], "feature/agent-work")

    def test_push_failure_recorded(self):
        """The remote disappears while the session runs: the push fails, the error is the
        delivery event and the session's field, and the session still completes."""
        sid, s, ev = self.run_broken()
        self.assertEqual(ev["status"], "failed", ev)
        self.assertIn("git push", ev["error"])
        self.assertIsNone(ev["url"])
        self.assertEqual(s["delivery"]["status"], "failed")
        self.assertIn("git push", s["delivery"]["error"])

    def test_push_timeout_recorded(self):
        """A remote that never answers (its pre-receive hook hangs): the push is abandoned at
        the timeout, the error recorded, and the session completes."""
        sid, s, ev = self.run_broken(hang=True)
        self.assertEqual(ev["status"], "failed", ev)
        self.assertIn("git push timed out", ev["error"])
        self.assertEqual(s["delivery"]["status"], "failed")

    def run_broken(self, hang=False):
        """A session whose remote disappears (or starts hanging) while it runs."""
        doomed = os.path.join(self.root, "doomed-%d.git" % hang)
        shutil.copytree(self.remote, doomed)
        steps = [{"wait_prompt": True}] + STEPS
        body = task(steps, delivery={"mode": "branch"}, repo={"mode": "git", "url": doomed})
        sid = create(self.server, body)["id"]
        wait_status(self.server, sid, "running", timeout=120)
        if hang:
            hook = os.path.join(doomed, "hooks", "pre-receive")
            with open(hook, "w") as f:
                f.write("#!/bin/sh\nexec sleep 600\n")
            os.chmod(hook, 0o755)
        else:
            shutil.rmtree(doomed)
        r = self.server.post("/api/v1/sessions/%s/prompt" % sid, body={"prompt": "go"})
        self.assertIn(r.status, (200, 202), r)
        s = wait_status(self.server, sid, ("completed", "failed"), timeout=120)
        self.assertEqual(s["status"], "completed", s)
        dl = [e for e in events(self.server, sid) if e["type"] == "delivery"]
        self.assertEqual(len(dl), 1)
        return sid, s, dl[0]

    def test_patch_artifact_applies(self):
        sid, s, ev = self.run_session({"mode": "patch"})
        self.assertEqual(ev["status"], "delivered", ev)
        url = "/api/v1/sessions/%s/delivery" % sid
        self.assertEqual(ev["url"], url)
        self.assertEqual(s["delivery"]["url"], url)
        self.assertEqual(ev["files"], 3)
        r = self.server.get(url)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("text/x-diff"))
        self.assertEqual(len(r.body), ev["bytes"])
        # the patch turns the base into the session's final tree
        w = os.path.join(self.root, "apply-" + sid)
        git(self.root, "clone", "-q", self.remote, w)
        git(w, "checkout", "-q", self.base_commit)
        p = subprocess.run(["git", "apply", "--binary", "-"], cwd=w, input=r.body,
                           capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(w, "README")) as f:
            self.assertEqual(f.read(), "hello\nchanged by the agent\n")
        self.assertFalse(os.path.exists(os.path.join(w, "gone.txt")))
        self.assertEqual(open(os.path.join(w, "src/new.txt")).read(), "new file\n")

    def test_pr_refused(self):
        body = task(STEPS, delivery={"mode": "pr"}, repo={"mode": "git", "url": self.remote})
        before = self.server.get("/api/v1/sessions").json()
        r = self.server.post("/api/v1/tasks", body=body)
        self.assertEqual(r.status, 422, r)
        p = r.json()
        self.assertEqual(p["type"], "/problems/unsupported")
        self.assertIn("delivery.mode", p["errors"])
        self.assertEqual(self.server.get("/api/v1/sessions").json().get("total"),
                         before.get("total"))

    def test_bad_branch_name(self):
        body = task(STEPS, delivery={"mode": "branch", "branch": "bad..name"})
        r = self.server.post("/api/v1/tasks", body=body)
        self.assertEqual(r.status, 400, r)
        self.assertIn("delivery.branch", r.json()["errors"])

    def test_no_delivery_artifact(self):
        sid = create(self.server, task([{"log": "x"}]))["id"]
        s = wait_status(self.server, sid, "completed", timeout=120)
        self.assertNotIn("delivery", s)
        r = self.server.get("/api/v1/sessions/%s/delivery" % sid)
        self.assertEqual(r.status, 404)

    def test_failed_session_not_delivered(self):
        steps = STEPS + [{"fail": "boom"}]
        body = task(steps, delivery={"mode": "patch"}, repo={"mode": "git", "url": self.remote})
        sid = create(self.server, body)["id"]
        s = wait_status(self.server, sid, ("completed", "failed"), timeout=120)
        self.assertEqual(s["status"], "failed")
        self.assertEqual(s["delivery"]["status"], "none")
        self.assertEqual([e for e in events(self.server, sid) if e["type"] == "delivery"], [])
        self.assertEqual(self.server.get("/api/v1/sessions/%s/delivery" % sid).status, 404)


if __name__ == "__main__":
    ahtest.main()
