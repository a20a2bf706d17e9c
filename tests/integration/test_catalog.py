"""Issue 15 item 5: the rest of the catalog on the real binary (SQLite, and PostgreSQL under
integration/pg-catalog) — projects per tenant, workspaces, a session's info, agents' settings
schemas (and the check at task creation), and git refs."""

import ahtest
from ahtest import ServerTest
from sessiontest import create, task, wait_status

OTHER = {"X-Tenant-ID": "other-tenant"}


class Catalog(ServerTest):
    def test_projects_per_tenant(self):
        for project in ("alpha", "beta", None, "alpha"):
            body = task([{"log": "x"}])
            if project:
                body["projectId"] = project
            create(self.server, body)
        create(self.server, dict(task([{"log": "x"}]), projectId="theirs"), headers=OTHER)
        r = self.server.get("/api/v1/projects")
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertEqual([p["id"] for p in body["items"]], ["alpha", "default", "beta"])
        self.assertEqual(body["total"], 3)
        self.assertEqual(body["items"][0]["displayName"], "alpha")
        self.assertRegex(body["items"][0]["lastUsedAt"], r"^\d{4}-\d\d-\d\dT")
        page2 = self.server.get("/api/v1/projects?perPage=2&page=2").json()
        self.assertEqual([p["id"] for p in page2["items"]], ["beta"])
        self.assertEqual(page2["total"], 3)
        past = self.server.get("/api/v1/projects?perPage=2&page=9").json()
        self.assertEqual((past["items"], past["total"]), ([], 3))
        theirs = self.server.get("/api/v1/projects", headers=OTHER).json()
        self.assertEqual([p["id"] for p in theirs["items"]], ["theirs"])
        self.assertProblem(self.server.get("/api/v1/projects?perPage=0"), 400)

    def test_workspaces_and_info(self):
        t = create(self.server, task([{"edit": "a.txt", "content": "hello\n"}]))
        sid = t["id"]
        wait_status(self.server, sid, "completed")
        r = self.server.get("/api/v1/workspaces")
        self.assertEqual(r.status, 200, r)
        mine = [w for w in r.json()["items"] if w["sessionId"] == sid]
        self.assertEqual(len(mine), 1)
        w = mine[0]
        self.assertEqual(w["id"], "ws-" + sid)
        self.assertEqual(w["executorId"], "local")
        self.assertEqual(w["taskHistory"], [t["taskId"]])
        self.assertIn(w["status"], ("retained", "removed"))
        d = self.server.get("/api/v1/workspaces/" + w["id"])
        self.assertEqual(d.status, 200, d)
        if d.json()["status"] == "retained":
            self.assertRegex(d.json()["storageUsed"], r"\d+(\.\d)? (KiB|MiB|GiB)$")
        self.assertEqual(
            len(self.server.get("/api/v1/workspaces?status=active").json()["items"]), 0)
        self.assertProblem(self.server.get("/api/v1/workspaces?status=busy"), 400)
        for bad in ("ws-nope", "nope", "ws-01HVZ6K9T1N8S6M3V3Q3F0X5B7"):
            self.assertProblem(self.server.get("/api/v1/workspaces/" + bad), 404)
        # another tenant sees none of it
        self.assertProblem(self.server.get("/api/v1/workspaces/" + w["id"], headers=OTHER), 404)
        self.assertNotIn(sid, [x["sessionId"] for x in
                               self.server.get("/api/v1/workspaces", headers=OTHER).json()["items"]])
        info = self.server.get("/api/v1/sessions/%s/info" % sid)
        self.assertEqual(info.status, 200, info)
        self.assertEqual(info.json(), {"id": sid, "status": "completed",
                                       "fleet": {"leader": "local", "followers": []},
                                       "endpoints": {"events": "/api/v1/sessions/%s/events" % sid}})
        self.assertProblem(self.server.get("/api/v1/sessions/%s/info" % sid, headers=OTHER), 404)

    def test_settings_schemas(self):
        agents = self.server.get("/api/v1/agents").json()["items"]
        for a in agents:
            r = self.server.get(a["settingsSchemaRef"])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("content-type"), "application/schema+json")
            self.assertEqual(r.json()["$id"], a["settingsSchemaRef"])
        s = self.server.get("/api/v1/schemas/agents/scripted.json").json()
        self.assertIn("scenario", s["properties"])
        self.assertFalse(s["additionalProperties"])
        for bad in ("nope.json", "scripted", "scripted.yaml", ".json"):
            self.assertProblem(self.server.get("/api/v1/schemas/agents/" + bad), 404)
        # task creation holds settings to the schema
        for settings, field in (({"bogus": 1}, "agents[0].settings.bogus"),
                                ({"model": 5}, "agents[0].settings.model"),
                                ({"model": ""}, "agents[0].settings.model"),
                                ({"scenario": {"log": "x"}}, "agents[0].settings.scenario")):
            body = task()
            body["agents"][0]["settings"] = settings
            r = self.server.post("/api/v1/tasks", body=body)
            p = self.assertProblem(r, 400)
            self.assertIn(field, p["errors"], p)
        body = task([{"log": "x"}])
        body["agents"][0]["settings"]["model"] = "scripted"
        self.assertEqual(self.server.post("/api/v1/tasks", body=body).status, 201)

    def test_git_refs(self):
        self.assertProblem(self.server.get("/api/v1/git/refs"), 400)
        self.assertProblem(self.server.get("/api/v1/git/refs?url="), 400)
        self.assertProblem(self.server.get("/api/v1/git/refs?url=" + "x" * 3000), 400)
        r = self.server.get("/api/v1/git/refs?url=https%3A%2F%2Fexample.invalid%2Fr.git")
        self.assertProblem(r, 404)


if __name__ == "__main__":
    ahtest.main()
