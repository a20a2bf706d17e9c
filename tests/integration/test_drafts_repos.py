"""Drafts (API.md §7.14) and repositories (§7.12) on the real binary; every answer is held to
the OpenAPI document by the contract check."""

import os
import subprocess
import tempfile
import threading

import ahtest
from ahtest import ServerTest
from sessiontest import create, task, wait_status


class Drafts(ServerTest):
    def test_crud(self):
        body = {"prompt": "half a thought", "agents": [{"type": "scripted"}],
                "labels": {"team": "x"}}
        r = self.server.post("/api/v1/drafts", body=body)
        self.assertEqual(r.status, 201, r)
        created = r.json()
        did = created["id"]
        self.assertRegex(did, r"^draft-[0-9A-Z]{26}$")
        self.assertEqual(r.header("location"), "/api/v1/drafts/" + did)
        got = self.server.get("/api/v1/drafts/" + did).json()
        self.assertEqual((got["prompt"], got["labels"]), ("half a thought", {"team": "x"}))
        self.assertEqual(got["createdAt"], created["createdAt"])
        self.assertEqual(created, got)  # D38: POST answers the full draft, as GET shows it
        r = self.server.request("PUT", "/api/v1/drafts/" + did,
                                body={"prompt": "a whole thought",
                                      "repo": {"mode": "none"}})
        self.assertEqual(r.status, 200)
        updated = r.json()
        self.assertEqual(updated["prompt"], "a whole thought")
        self.assertEqual(updated["labels"], {"team": "x"})  # members not given are kept
        self.assertEqual(updated["repo"], {"mode": "none"})
        self.assertGreaterEqual(updated["updatedAt"], updated["createdAt"])
        second = self.server.post("/api/v1/drafts", body={"prompt": "newer"}).json()["id"]
        page = self.server.get("/api/v1/drafts?perPage=1").json()
        self.assertEqual(page["total"], 2)
        self.assertEqual(page["items"][0]["id"], second)  # newest first
        self.assertEqual(page["nextPage"], 2)
        # a complete draft can be posted as a task as it is
        d = self.server.get("/api/v1/drafts/" + did).json()
        for k in ("id", "createdAt", "updatedAt"):
            d.pop(k)
        d["runtime"] = {"type": "local"}
        d["agents"][0]["settings"] = {"scenario": [{"log": "from a draft"}]}
        sid = create(self.server, d)["id"]
        wait_status(self.server, sid, "completed")
        self.assertEqual(self.server.request("DELETE", "/api/v1/drafts/" + did).status, 204)
        self.assertProblem(self.server.get("/api/v1/drafts/" + did), 404)
        self.assertProblem(self.server.request("DELETE", "/api/v1/drafts/" + did), 404)
        self.assertProblem(self.server.request("PUT", "/api/v1/drafts/" + did,
                                               body={"prompt": "x"}), 404)
        self.assertProblem(self.server.get("/api/v1/drafts/not-a-draft"), 404)
        # another tenant sees none of them
        other = self.server.get("/api/v1/drafts", headers={"X-Tenant-ID": "other"}).json()
        self.assertEqual(other["total"], 0)

    def test_concurrent_updates_all_land(self):
        """PUTs of different members at the same moment each keep the others' (the merge runs
        in the store's write transaction, not read-then-write in the handler)."""
        parts = [{"prompt": "p"}, {"repo": {"mode": "none"}}, {"agents": [{"type": "scripted"}]},
                 {"runtime": {"type": "local"}}, {"delivery": {"mode": "pr"}},
                 {"labels": {"k": "v"}}]
        own = {"X-Tenant-ID": "concurrent"}  # the other tests count the default tenant's drafts
        for _ in range(10):
            did = self.server.post("/api/v1/drafts", body={}, headers=own).json()["id"]
            start = threading.Barrier(len(parts))
            statuses = []

            def put(part):
                start.wait()
                statuses.append(self.server.request("PUT", "/api/v1/drafts/" + did,
                                                    body=part, headers=own).status)
            threads = [threading.Thread(target=put, args=(p,)) for p in parts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(statuses, [200] * len(parts))
            got = self.server.get("/api/v1/drafts/" + did, headers=own).json()
            for part in parts:
                for k, v in part.items():
                    self.assertEqual(got.get(k), v, got)

    def test_validation(self):
        for body, field in (({"bogus": 1}, "bogus"), ({"prompt": 5}, "prompt"),
                            ({"agents": "codex"}, "agents"), ({"agents": ["codex"]}, "agents[0]"),
                            ({"repo": []}, "repo")):
            r = self.server.post("/api/v1/drafts", body=body)
            self.assertIn(field, self.assertProblem(r, 400)["errors"])
        self.assertProblem(self.server.post("/api/v1/drafts", body=b"[]",
                                            headers={"Content-Type": "application/json"}), 400)
        self.assertProblem(self.server.get("/api/v1/drafts?perPage=0"), 400)


class Repositories(ServerTest):
    def test_repos_branches_and_files(self):
        self.assertEqual(self.server.get("/api/v1/repos").json()["items"], [])
        repo = os.path.join(tempfile.mkdtemp(prefix="ah-repo-"), "widgets.git")
        git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x"] +
                                        list(a), cwd=repo, check=True, capture_output=True)
        os.makedirs(repo)
        git("init", "-q", "-b", "trunk")
        with open(os.path.join(repo, "main.c"), "w") as f:
            f.write("int main(void) { return 0; }\n")
        git("add", "main.c")
        git("commit", "-q", "-m", "one")
        git("branch", "feature-x")
        sid = create(self.server, task([{"log": "x"}], repo={"mode": "git", "url": repo},
                                       projectId="p1"))["id"]
        wait_status(self.server, sid, "completed")
        items = self.server.get("/api/v1/repos").json()["items"]
        self.assertEqual(len(items), 1)
        r = items[0]
        self.assertEqual((r["remoteUrl"], r["displayName"], r["scmProvider"]),
                         (repo, "widgets", "git"))
        self.assertEqual(r["defaultBranch"], "trunk")
        self.assertRegex(r["id"], r"^repo-[0-9a-f]{16}$")
        self.assertEqual(self.server.get("/api/v1/repos?projectId=p1").json()["total"], 1)
        self.assertEqual(self.server.get("/api/v1/repos?projectId=p2").json()["total"], 0)
        b = self.server.get("/api/v1/repositories/%s/branches" % r["id"]).json()
        self.assertEqual(b["repositoryId"], r["id"])
        names = {x["name"]: x for x in b["branches"]}
        self.assertEqual(set(names), {"trunk", "feature-x"})
        self.assertTrue(names["trunk"]["is_default"])
        self.assertFalse(names["feature-x"]["is_default"])
        self.assertRegex(names["trunk"]["last_commit"], r"^[0-9a-f]{40}$")
        f = self.server.get("/api/v1/repositories/%s/files" % r["id"]).json()
        self.assertEqual(f["files"], [{"path": "main.c", "detail": "Tracked file"}])
        self.assertProblem(self.server.get("/api/v1/repositories/repo-0000000000000000/branches"),
                           404)
        self.assertProblem(self.server.get("/api/v1/repositories/%s/files" % r["id"],
                                           headers={"X-Tenant-ID": "other"}), 404)


if __name__ == "__main__":
    ahtest.main()
