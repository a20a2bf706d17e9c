"""Authentication, roles, tenants, rate limits and the audit trail (issue 13; D22, D23, D35, D37).

Each class starts the real `ah` on loopback with a temp database, makes API keys with the
offline `ah admin api-key create` (as an operator bootstrapping a server would) and talks to it.
"""

import json
import os
import socket
import shutil
import sqlite3
import subprocess
import tempfile
import time

import ahtest
from ahtest import Server, ServerTest

TASK = {"prompt": "hi", "repo": {"mode": "none"}, "runtime": {"type": "local"},
        "agents": [{"type": "scripted", "settings": {"scenario": [{"log": "ok"}]}}]}


def make_key(server, role, tenant, *extra):
    """A new API key in the server's database, made offline (D22); returns the key text."""
    r = subprocess.run([ahtest.AH_BIN, "admin", "api-key", "create", "--role", role, "--tenant",
                        tenant, "--db", server.db] + list(extra),
                       capture_output=True, text=True, env=server.env(), timeout=60)
    assert r.returncode == 0, r
    key = r.stdout.strip()
    assert key.startswith("ahk_"), r
    return key


def wait_closed(server):
    """Waits until the server requires credentials (it re-reads the key count each second)."""
    deadline = time.monotonic() + 30
    while server.get("/api/v1/sessions", record_it=False).status != 401:
        if time.monotonic() > deadline:
            raise AssertionError("the server never started requiring credentials")
        time.sleep(0.05)


def db_rows(db, sql):
    """Every row of sql on a server's database (SQLite file or PostgreSQL URL), as tuples."""
    if "://" in db:
        out = subprocess.run(["psql", "-X", "-A", "-t", "-F", "\t", "-d", db, "-c", sql],
                             capture_output=True, text=True, check=True).stdout
        return [tuple(line.split("\t")) for line in out.splitlines() if line]
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def auth(key):
    return {"Authorization": "ApiKey " + key}


class LocalMode(ServerTest):
    """D22: without any credential source every request is the local admin, as before."""

    def test_no_credentials_needed_and_bogus_ones_ignored(self):
        self.assertEqual(self.server.get("/api/v1/sessions").status, 200)
        r = self.server.get("/api/v1/sessions", headers={"Authorization": "ApiKey ahk_no_such"})
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.header("ratelimit-limit"))
        r = self.server.post("/api/v1/tasks", body=TASK, headers={"X-Tenant-ID": "other"})
        self.assertEqual(r.status, 201, r)


class Keys(ServerTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.server
        cls.admin = make_key(s, "admin", "acme")
        cls.operator = make_key(s, "operator", "acme")
        cls.viewer = make_key(s, "viewer", "acme", "--name", "dashboard")
        cls.other_admin = make_key(s, "admin", "globex")
        cls.other_op = make_key(s, "operator", "globex")
        cls.root = make_key(s, "admin", "ops", "--impersonate")
        cls.web = make_key(s, "operator", "acme", "--project", "web")
        wait_closed(s)

    def test_missing_and_bad_credentials_are_401_problems(self):
        s = self.server
        r = s.get("/api/v1/sessions")
        self.assertProblem(r, 401, "auth")
        self.assertEqual(r.header("www-authenticate"), "ApiKey, Bearer")
        good_id = self.admin.split("_")[1]
        bad = [
            {"Authorization": "ApiKey ahk_%s_%s" % (good_id, "0" * 64)},  # wrong secret
            {"Authorization": "ApiKey ahk_0123456789abcdef_" + "a" * 64},  # unknown id
            {"Authorization": "ApiKey nonsense"},
            {"Authorization": "ApiKey ahk__x"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."},
            {"Authorization": ""},
            {"X-API-Key": "ahk_%s_%s" % (good_id, "f" * 64)},
            {"X-API-Key": self.admin, "Authorization": "ApiKey " + self.admin},  # two at once
            {"Authorization": "ApiKey " + self.admin + "x"},
            {"Authorization": "ApiKey " + self.admin[:-1]},
            {"Authorization": "ApiKey " + "ahk_" + "a" * 300 + "_b"},
        ]
        for h in bad:
            with self.subTest(h=h):
                r = s.get("/api/v1/sessions", headers=h)
                body = self.assertProblem(r, 401, "auth")
                for v in h.values():  # the credential is never echoed
                    if len(v) > 12:
                        self.assertNotIn(v.split(" ")[-1], body["detail"])

    def test_huge_authorization_header_is_refused_not_crashed(self):
        # 431 comes from the front door, before any route (the document lists it for none)
        r = self.server.get("/api/v1/sessions", headers={"Authorization": "ApiKey " + "A" * 7000},
                            record_it=False)
        self.assertIn(r.status, (401, 431), r)
        r = self.server.get("/api/v1/sessions", headers={"Authorization": "Bearer " + "A" * 20000},
                            record_it=False)
        self.assertEqual(r.status, 431, r)
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)

    def test_both_header_forms_work(self):
        self.assertEqual(self.server.get("/api/v1/sessions", headers=auth(self.viewer)).status, 200)
        r = self.server.get("/api/v1/sessions", headers={"X-API-Key": self.viewer})
        self.assertEqual(r.status, 200, r)
        r = self.server.get("/api/v1/sessions", headers={"Authorization": "apikey " + self.viewer})
        self.assertEqual(r.status, 200, r)

    def test_public_routes_need_nothing(self):
        for path in ("/api/v1/healthz", "/api/v1/readyz", "/api/v1/version", "/api/v1/openapi.json"):
            self.assertEqual(self.server.get(path).status, 200, path)

    def test_stored_as_salted_hash_only(self):
        rows = db_rows(self.server.db, "SELECT id, salt, hash, tenant_id, role FROM api_keys")
        self.assertGreaterEqual(len(rows), 6)
        dump = "\n".join("\t".join(map(str, r)) for r in rows)
        for key in (self.admin, self.viewer, self.operator):
            self.assertNotIn(key.split("_", 2)[2], dump)
        if "://" not in self.server.db:
            with open(self.server.db, "rb") as f:
                raw = f.read()
            for key in (self.admin, self.viewer, self.operator):
                self.assertNotIn(key.split("_", 2)[2].encode(), raw)
        for kid, salt, h, _, _ in rows:
            self.assertEqual(len(salt), 32)
            self.assertEqual(len(h), 64)
        self.assertEqual(len({r[1] for r in rows}), len(rows), "salts are unique")

    def test_roles(self):
        s = self.server
        self.assertProblem(s.post("/api/v1/tasks", body=TASK, headers=auth(self.viewer)), 403,
                           "authz")
        r = s.post("/api/v1/tasks", body=TASK, headers=auth(self.operator))
        self.assertEqual(r.status, 201, r)
        self.assertProblem(s.get("/api/v1/api-keys", headers=auth(self.operator)), 403, "authz")
        self.assertProblem(s.get("/api/v1/audit", headers=auth(self.viewer)), 403, "authz")
        self.assertEqual(s.get("/api/v1/api-keys", headers=auth(self.admin)).status, 200)
        r = s.post("/api/v1/drafts", body={"prompt": "x"}, headers=auth(self.viewer))
        self.assertProblem(r, 403, "authz")
        self.assertEqual(s.post("/api/v1/drafts", body={"prompt": "x"},
                                headers=auth(self.operator)).status, 201)

    def test_tenant_comes_from_the_key(self):
        s = self.server
        r = s.post("/api/v1/tasks", body=dict(TASK, tenantId="globex"),
                   headers=dict(auth(self.operator), **{"X-Tenant-ID": "globex"}))
        self.assertEqual(r.status, 201, r)
        sid = r.json()["id"]
        got = s.get("/api/v1/sessions/" + sid, headers=auth(self.operator))
        self.assertEqual(got.status, 200)
        self.assertEqual(got.json()["tenantId"], "acme")  # D35: hints ignored
        for key in (self.other_op, self.other_admin):
            for h in ({}, {"X-Tenant-ID": "acme"}):
                r = s.get("/api/v1/sessions/" + sid, headers=dict(auth(key), **h))
                self.assertProblem(r, 404, "not-found")
                r = s.get("/api/v1/sessions?tenantId=acme", headers=dict(auth(key), **h))
                self.assertNotIn(sid, [i["id"] for i in r.json()["items"]])
        # an admin key allowed to impersonate reads acme's session with X-Tenant-ID (audited)
        r = s.get("/api/v1/sessions/" + sid, headers=dict(auth(self.root), **{"X-Tenant-ID": "acme"}))
        self.assertEqual(r.status, 200, r)
        self.assertProblem(s.get("/api/v1/sessions/" + sid, headers=auth(self.root)), 404)
        r = s.get("/api/v1/audit?action=tenant.impersonate",
                  headers=dict(auth(self.root), **{"X-Tenant-ID": "acme"}))
        self.assertEqual(r.status, 200, r)
        self.assertTrue(any(i["target"] == "/api/v1/sessions/" + sid for i in r.json()["items"]))

    def test_project_limited_key(self):
        s = self.server
        r = s.post("/api/v1/tasks", body=TASK, headers=auth(self.web))
        self.assertEqual(r.status, 201, r)
        mine = r.json()["id"]
        got = s.get("/api/v1/sessions/" + mine, headers=auth(self.web)).json()
        self.assertEqual(got["projectId"], "web")  # the key's project is the task's
        r = s.post("/api/v1/tasks", body=dict(TASK, projectId="api"), headers=auth(self.web))
        self.assertProblem(r, 403, "authz")
        r = s.post("/api/v1/tasks", body=dict(TASK, projectId="api"), headers=auth(self.operator))
        self.assertEqual(r.status, 201, r)
        other = r.json()["id"]
        # read by a tenant-wide key first: its kept representation must not reach the web key
        self.assertEqual(s.get("/api/v1/sessions/" + other, headers=auth(self.operator)).status,
                         200)
        s.get("/api/v1/sessions?perPage=200&projectId=api", headers=auth(self.operator))
        self.assertProblem(s.get("/api/v1/sessions/" + other, headers=auth(self.web)), 404)
        self.assertProblem(s.get("/api/v1/sessions/%s/events" % other, headers=auth(self.web)),
                           404)
        listed = s.get("/api/v1/sessions?perPage=200&projectId=api", headers=auth(self.web))
        ids = [i["id"] for i in listed.json()["items"]]
        self.assertIn(mine, ids)
        self.assertNotIn(other, ids)
        self.assertTrue(all(i.get("projectId") == "web" for i in listed.json()["items"]))
        # the tenant-wide key sees both
        self.assertEqual(s.get("/api/v1/sessions/" + mine, headers=auth(self.operator)).status,
                         200)

    def test_create_list_revoke_through_the_api(self):
        s = self.server
        r = s.post("/api/v1/api-keys", body={"role": "viewer", "name": "ci"},
                   headers=auth(self.admin))
        self.assertEqual(r.status, 201, r)
        made = r.json()
        key, kid = made["key"], made["id"]
        self.assertEqual(made["tenantId"], "acme")
        self.assertEqual(r.header("location"), "/api/v1/api-keys/" + kid)
        self.assertEqual(s.get("/api/v1/sessions", headers=auth(key)).status, 200)
        listed = s.get("/api/v1/api-keys?perPage=200", headers=auth(self.admin)).json()["items"]
        mine = [k for k in listed if k["id"] == kid]
        self.assertEqual(len(mine), 1)
        self.assertNotIn("key", mine[0])
        self.assertNotIn("hash", mine[0])
        self.assertTrue(all(k["tenantId"] == "acme" for k in listed))
        # another tenant's admin cannot see or revoke it
        other = s.get("/api/v1/api-keys?perPage=200", headers=auth(self.other_admin)).json()
        self.assertNotIn(kid, [k["id"] for k in other["items"]])
        self.assertProblem(s.request("DELETE", "/api/v1/api-keys/" + kid,
                                     headers=auth(self.other_admin)), 404)
        r = s.request("DELETE", "/api/v1/api-keys/" + kid, headers=auth(self.admin))
        self.assertEqual(r.status, 204, r)
        self.assertProblem(s.get("/api/v1/sessions", headers=auth(key)), 401, "auth")
        self.assertProblem(s.request("DELETE", "/api/v1/api-keys/" + kid,
                                     headers=auth(self.admin)), 404)
        # validation
        for body in ({"role": "god"}, {}, {"role": "viewer", "impersonate": True},
                     {"role": "viewer", "expiresAt": "2001-01-01T00:00:00Z"},
                     {"role": "viewer", "extra": 1}, {"role": "viewer", "projectId": "a b"}):
            with self.subTest(body=body):
                self.assertProblem(s.post("/api/v1/api-keys", body=body, headers=auth(self.admin)),
                                   400)

    def test_expired_key_is_refused(self):
        s = self.server
        soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
        r = s.post("/api/v1/api-keys", body={"role": "viewer", "expiresAt": soon},
                   headers=auth(self.admin))
        self.assertEqual(r.status, 201, r)
        key = r.json()["key"]
        self.assertEqual(s.get("/api/v1/sessions", headers=auth(key)).status, 200)
        deadline = time.monotonic() + 30
        while s.get("/api/v1/sessions", headers=auth(key)).status != 401:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.2)

    def test_audit_trail(self):
        s = self.server
        s.post("/api/v1/tasks", body=TASK, headers=auth(self.viewer))  # denied
        r = s.post("/api/v1/drafts", body={"prompt": "audited"}, headers=auth(self.operator))
        self.assertEqual(r.status, 201)
        items = s.get("/api/v1/audit?perPage=200", headers=auth(self.admin)).json()["items"]
        actions = {(i["action"], i["outcome"]) for i in items}
        self.assertIn(("authz.denied", "denied"), actions)
        self.assertIn(("POST /api/v1/drafts", "success"), actions)
        self.assertIn(("api-key.create", "success"), actions)
        draft = [i for i in items if i["action"] == "POST /api/v1/drafts"][0]
        self.assertEqual(draft["actor"], "apikey:" + self.operator.split("_")[1])
        self.assertEqual(draft["source"], "127.0.0.1")
        self.assertIsNone(draft["status"])  # recorded with the change, before the answer
        self.assertTrue(all(i["tenantId"] == "acme" for i in items))
        r = s.get("/api/v1/audit?outcome=denied", headers=auth(self.admin))
        self.assertTrue(all(i["outcome"] == "denied" for i in r.json()["items"]))
        self.assertProblem(s.get("/api/v1/audit?since=yesterday", headers=auth(self.admin)), 400)
        # authentication failures are recorded too (without a tenant: none is known)
        s.get("/api/v1/sessions", headers={"Authorization": "ApiKey ahk_bad_bad"})
        row = ahtest.db_row(s.db, "SELECT count(*) FROM audit_log WHERE action = 'auth.failed'")
        self.assertGreater(int(row[0]), 0)
        # there is no way to delete audit records
        r = s.request("DELETE", "/api/v1/audit", headers=auth(self.admin))
        self.assertEqual(r.status, 405)

    def test_guard_is_off_once_credentials_exist(self):
        # D27 protects an open server from DNS rebinding; with keys required it steps aside
        r = self.server.get("/api/v1/sessions",
                            headers=dict(auth(self.viewer), Host="build-box.example:3001"))
        self.assertEqual(r.status, 200, r)

    def test_cli_sends_the_key(self):
        env = dict(self.server.env(), AH_API_KEY=self.viewer,
                   AH_REMOTE_SERVER="http://127.0.0.1:%d" % self.server.port)
        r = subprocess.run([ahtest.AH_BIN, "session", "list"], capture_output=True, text=True,
                           env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r)
        env["AH_API_KEY"] = "ahk_0000_bad"
        r = subprocess.run([ahtest.AH_BIN, "session", "list"], capture_output=True, text=True,
                           env=env, timeout=60)
        self.assertEqual(r.returncode, 4, r)  # authentication
        self.assertIn("401", r.stderr)
        self.assertIn("AH_API_KEY", r.stderr)
        env["AH_API_KEY"] = self.viewer  # a role too low: the message says which role is needed
        r = subprocess.run([ahtest.AH_BIN, "task", "create", "--agent", "scripted", "--prompt",
                            "hi"], capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 4, r)
        self.assertIn("needs the operator role", r.stderr)
        self.assertIn("403", r.stderr)

    def test_secrets_never_reach_the_log(self):
        s = self.server
        s.get("/api/v1/sessions", headers=auth(self.admin))
        s.get("/api/v1/sessions", headers={"X-API-Key": self.viewer})
        text = s.stderr()
        for key in (self.admin, self.viewer, self.operator, self.root):
            self.assertNotIn(key.split("_", 2)[2], text)
        row = ahtest.db_row(s.db, "SELECT count(*) FROM audit_log WHERE"
                                  " coalesce(actor,'') || coalesce(target,'') LIKE '%ahk_%'")
        self.assertEqual(row[0], "0")


class RevokedStreams(ServerTest):
    """Revoking a key also ends the event streams opened with it (issue 13): a watcher that lost
    its credential must not keep receiving a session's events."""
    server_args = ("--sse-keepalive-ms", "500")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.admin = make_key(cls.server, "admin", "acme")
        cls.watcher = make_key(cls.server, "viewer", "acme")
        cls.other = make_key(cls.server, "viewer", "acme")
        cls.offline = make_key(cls.server, "viewer", "acme")
        wait_closed(cls.server)

    @classmethod
    def tearDownClass(cls):
        cls.server.kill_sessions()
        super().tearDownClass()

    def test_revoking_a_key_closes_its_streams_only(self):
        from ssetest import SSE
        s = self.server
        body = dict(TASK, agents=[{"type": "scripted", "settings": {"scenario": [{"sleep": 60000}]}}])
        r = s.post("/api/v1/tasks", body, headers=auth(self.admin))
        self.assertEqual(r.status, 201, r)
        sid = r.json()["id"]
        path = "/api/v1/sessions/%s/events?tail=0" % sid
        mine = SSE(s, path, headers=auth(self.watcher))
        theirs = SSE(s, path, headers=auth(self.other))
        self.assertEqual((mine.status, theirs.status), (200, 200))
        for stream in (mine, theirs):  # both are live: a keep-alive each
            for kind, f in stream.frames(timeout=30):
                if kind == "comment" and f == "keep-alive":
                    break
        key_id = self.watcher.split("_")[1]
        self.assertEqual(s.request("DELETE", "/api/v1/api-keys/" + key_id,
                                   headers=auth(self.admin)).status, 204)
        t0 = time.monotonic()
        for kind, f in mine.frames(timeout=30):  # ends (frames returns), keep-alives stop
            self.assertLess(time.monotonic() - t0, 10, "the revoked key's stream goes on")
        self.assertTrue(mine.closed)
        self.assertLess(time.monotonic() - t0, 10)
        # the other key's stream goes on
        for kind, f in theirs.frames(timeout=30):
            if kind == "comment" and f == "keep-alive":
                break
        self.assertFalse(theirs.closed)
        theirs.finish()
        # and the revoked key opens nothing new
        self.assertEqual(SSE(s, path, headers=auth(self.watcher)).status, 401)

    def test_an_offline_revoke_ends_streams_and_requests_too(self):
        # `ah admin api-key revoke` works on the database, the server never hears of it: it
        # notices within a second or two all the same (D22)
        from ssetest import SSE
        s = self.server
        body = dict(TASK, agents=[{"type": "scripted", "settings": {"scenario": [{"sleep": 60000}]}}])
        r = s.post("/api/v1/tasks", body, headers=auth(self.admin))
        self.assertEqual(r.status, 201, r)
        path = "/api/v1/sessions/%s/events?tail=0" % r.json()["id"]
        mine = SSE(s, path, headers=auth(self.offline))
        theirs = SSE(s, path, headers=auth(self.other))
        self.assertEqual((mine.status, theirs.status), (200, 200))
        for stream in (mine, theirs):
            for kind, f in stream.frames(timeout=30):
                if kind == "comment" and f == "keep-alive":
                    break
        self.assertEqual(s.get("/api/v1/sessions", headers=auth(self.offline)).status, 200)
        key_id = self.offline.split("_")[1]
        out = subprocess.run([ahtest.AH_BIN, "admin", "api-key", "revoke", key_id, "--db", s.db],
                             capture_output=True, text=True, env=s.env(), timeout=60)
        self.assertEqual(out.returncode, 0, out)
        t0 = time.monotonic()
        for kind, f in mine.frames(timeout=30):
            self.assertLess(time.monotonic() - t0, 10, "the revoked key's stream goes on")
        self.assertTrue(mine.closed)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(s.get("/api/v1/sessions", headers=auth(self.offline)).status, 401)
        for kind, f in theirs.frames(timeout=30):
            if kind == "comment" and f == "keep-alive":
                break
        self.assertFalse(theirs.closed)
        theirs.finish()


class AuditEveryChange(ServerTest):
    """D37: every state-changing route leaves exactly one audit record, with its action, target
    and outcome; a change the store commits carries its record in the same transaction (no
    status then: the answer was not made yet), what failed or changed no row is recorded after
    the answer, with its status."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.op = make_key(cls.server, "operator", "acme")
        wait_closed(cls.server)

    @classmethod
    def tearDownClass(cls):
        cls.server.kill_sessions()
        super().tearDownClass()

    def change(self, method, path, route, body=None, outcome="success", status=None):
        """Sends one change with its own request id; checks its one audit record."""
        rid = "audit-%d" % (time.monotonic_ns())
        r = self.server.request(method, path, body=body,
                                headers=dict(auth(self.op), **{"X-Request-Id": rid}))
        rows = db_rows(self.server.db, "SELECT action, target, outcome, status, tenant_id, actor"
                       " FROM audit_log WHERE request_id = '%s'" % rid)
        self.assertEqual(len(rows), 1, (method, path, r, rows))
        action, target, out, st, tenant, actor = rows[0]
        self.assertEqual(action, "%s %s" % (method, route))
        self.assertEqual(target, path.split("?")[0])
        self.assertEqual(out, outcome, (r, rows))
        self.assertEqual((tenant, actor), ("acme", "apikey:" + self.op.split("_")[1]))
        if status is not None:  # recorded after the answer: its status
            self.assertEqual(int(st), status)
        elif outcome == "success":  # recorded with the change: no status
            self.assertIn(st, (None, ""), (method, path))
        return r

    def wait_status(self, sid, want):
        deadline = time.monotonic() + 60
        while True:
            st = self.server.get("/api/v1/sessions/" + sid, headers=auth(self.op)).json()["status"]
            if st == want:
                return
            self.assertLess(time.monotonic(), deadline, "session %s stays %s" % (sid, st))
            time.sleep(0.1)

    def test_each_change_has_one_record(self):
        body = dict(TASK, agents=[{"type": "scripted", "settings": {"scenario": [
            {"wait_prompt": True}, {"sleep": 120000}]}}])
        r = self.change("POST", "/api/v1/tasks", "/api/v1/tasks", body)
        self.assertEqual(r.status, 201, r)
        sid = r.json()["id"]
        s = "/api/v1/sessions/" + sid
        r = self.change("POST", "/api/v1/drafts", "/api/v1/drafts", {"prompt": "d"})
        self.assertEqual(r.status, 201, r)
        d = "/api/v1/drafts/" + r.json()["id"]
        self.assertEqual(self.change("PUT", d, "/api/v1/drafts/{id}", {"prompt": "e"}).status, 200)
        self.assertEqual(self.change("DELETE", d, "/api/v1/drafts/{id}").status, 204)
        # a change of nothing (404), and a refused one (validation): recorded after the answer
        self.change("DELETE", d, "/api/v1/drafts/{id}", outcome="failure", status=404)
        self.change("POST", "/api/v1/drafts", "/api/v1/drafts", {"nope": 1},
                    outcome="failure", status=400)
        self.wait_status(sid, "running")
        r = self.change("POST", s + "/prompt", "/api/v1/sessions/{id}/prompt", {"prompt": "go"})
        self.assertLess(r.status, 300, r)
        r = self.change("POST", s + "/moments", "/api/v1/sessions/{id}/moments", {"label": "m"})
        self.assertLess(r.status, 300, r)
        r = self.change("PUT", s + "/context", "/api/v1/sessions/{id}/context",
                        {"enable_tools": []})
        self.assertLess(r.status, 300, r)
        r = self.change("POST", s + "/chat/messages", "/api/v1/sessions/{id}/chat/messages",
                        {"content": "hello"})
        self.assertLess(r.status, 300, r)
        r = self.change("POST", s + "/pause", "/api/v1/sessions/{id}/pause")
        self.assertLess(r.status, 300, r)
        self.wait_status(sid, "paused")
        self.change("POST", s + "/pause", "/api/v1/sessions/{id}/pause", outcome="failure",
                    status=409)
        self.assertLess(self.change("POST", s + "/resume", "/api/v1/sessions/{id}/resume").status,
                        300)
        self.wait_status(sid, "running")
        self.assertLess(self.change("POST", s + "/stop", "/api/v1/sessions/{id}/stop").status, 300)
        deadline = time.monotonic() + 60
        while self.server.get(s, headers=auth(self.op)).json()["status"] not in (
                "stopped", "completed", "failed", "cancelled"):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.1)
        r = self.change("DELETE", s + "?purge=true", "/api/v1/sessions/{id}")
        self.assertLess(r.status, 300, r)
        self.assertEqual(self.server.get(s, headers=auth(self.op)).status, 404)


class AuditAtomic(ServerTest):
    """D37: a change and its audit record commit together: a write fault that fails the commit
    (the test-only VFS shim) leaves neither the change nor a record of it as a success."""
    fault = os.path.join(tempfile.mkdtemp(prefix="ah-audit-fault-"), "fault")
    server_env = {"AH_TEST_HOOKS": "1", "AH_TEST_FAULT_FILE": fault}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.op = make_key(cls.server, "operator", "acme")
        wait_closed(cls.server)

    @classmethod
    def tearDownClass(cls):
        if os.path.exists(cls.fault):
            os.unlink(cls.fault)
        shutil.rmtree(os.path.dirname(cls.fault), True)
        super().tearDownClass()

    def test_a_failed_commit_leaves_neither(self):
        s = self.server
        pg = "://" in s.db
        # SQLite: every write fails (the VFS shim); PostgreSQL (no shim): the audit insert fails,
        # the table gone for a moment, which must take the change down with it
        if pg:
            db_rows(s.db, "ALTER TABLE audit_log RENAME TO audit_log_away")
        else:
            with open(self.fault, "w") as f:
                f.write("EIO")
        try:
            rids = []
            for path, body in (("/api/v1/drafts", {"prompt": "lost"}), ("/api/v1/tasks", TASK)):
                rid = "fault-%d" % time.monotonic_ns()
                rids.append(rid)
                r = s.post(path, body=body, headers=dict(auth(self.op), **{"X-Request-Id": rid}))
                self.assertGreaterEqual(r.status, 500, r)
        finally:
            if pg:
                db_rows(s.db, "ALTER TABLE audit_log_away RENAME TO audit_log")
            else:
                os.unlink(self.fault)
        deadline = time.monotonic() + 30  # D50: writable again within a second or so
        while s.get("/api/v1/readyz").status != 200:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.1)
        self.assertEqual(s.get("/api/v1/drafts", headers=auth(self.op)).json()["total"], 0)
        self.assertEqual(s.get("/api/v1/sessions", headers=auth(self.op)).json()["total"], 0)
        rows = db_rows(s.db, "SELECT request_id, outcome FROM audit_log WHERE request_id IN"
                       " ('%s', '%s') AND outcome = 'success'" % tuple(rids))
        self.assertEqual(rows, [])
        # and once the disk is back, the same change commits with its record
        rid = "fault-after-%d" % time.monotonic_ns()
        r = s.post("/api/v1/drafts", body={"prompt": "kept"},
                   headers=dict(auth(self.op), **{"X-Request-Id": rid}))
        self.assertEqual(r.status, 201, r)
        rows = db_rows(s.db, "SELECT outcome FROM audit_log WHERE request_id = '%s'" % rid)
        self.assertEqual(rows, [("success",)])


class RateLimits(ServerTest):
    server_args = ("--rate-limit", "1", "--rate-limit-burst", "3", "--task-rate-limit", "1")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key = make_key(cls.server, "operator", "acme")
        cls.key2 = make_key(cls.server, "operator", "acme")
        wait_closed(cls.server)

    def test_bucket_headers_and_429(self):
        s = self.server
        seen = []
        for _ in range(8):
            r = s.get("/api/v1/sessions", headers=auth(self.key))
            seen.append(r)
            if r.status == 429:
                break
        self.assertEqual(seen[0].status, 200)
        for h in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
            self.assertRegex(seen[0].header(h) or "", r"^\d+$", h)
        self.assertEqual(seen[0].header("ratelimit-limit"), "3")
        last = seen[-1]
        self.assertProblem(last, 429, "rate-limited")
        self.assertRegex(last.header("retry-after"), r"^[1-9]\d*$")
        self.assertEqual(last.header("ratelimit-remaining"), "0")
        # another credential has its own bucket
        self.assertEqual(s.get("/api/v1/sessions", headers=auth(self.key2)).status, 200)
        # and the bucket refills
        time.sleep(int(last.header("retry-after")))
        deadline = time.monotonic() + 20
        while s.get("/api/v1/sessions", headers=auth(self.key)).status == 429:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.3)


class FailureFlood(ServerTest):
    # 2 failures/s, burst 20: throttled however slowly a loaded machine answers (at the default
    # 30/s a request slower than 33 ms refilled the bucket faster than the test emptied it)
    server_args = ("--auth-failure-rate", "2")

    def test_bad_credentials_flood_is_throttled_and_not_audited_past_the_burst(self):
        s = self.server
        make_key(s, "viewer", "acme")
        wait_closed(s)
        before = int(db_rows(s.db, "SELECT count(*) FROM audit_log"
                                   " WHERE action = 'auth.failed'")[0][0])
        conn = s.connect()
        statuses = []
        try:
            for _ in range(200):
                r = s.request("GET", "/api/v1/sessions", conn=conn,
                              headers={"Authorization": "ApiKey ahk_dead_beef"})
                statuses.append(r.status)
                if r.status == 429:
                    self.assertProblem(r, 429, "rate-limited")
                    self.assertRegex(r.header("retry-after"), r"^[1-9]\d*$")
                    break
        finally:
            conn.close()
        self.assertEqual(statuses[-1], 429, "never throttled")
        self.assertTrue(all(x == 401 for x in statuses[:-1]))
        failed = int(db_rows(s.db, "SELECT count(*) FROM audit_log"
                                   " WHERE action = 'auth.failed'")[0][0])
        self.assertEqual(failed - before, len(statuses) - 1)  # the refused one left no record


class AuditRetention(ServerTest):
    """D37: no API deletes audit records; --audit-retention-days does, for old ones only."""
    server_args = ("--audit-retention-days", "30")

    def test_old_records_go_new_ones_stay(self):
        s = self.server
        key = make_key(s, "admin", "acme")
        wait_closed(s)
        old = int((time.time() - 40 * 86400) * 1000)
        if "://" in s.db:
            subprocess.run(["psql", "-X", "-q", "-d", s.db, "-c",
                            "INSERT INTO audit_log (ts, tenant_id, action, outcome) VALUES "
                            "(%d, 'acme', 'ancient', 'success')" % old], check=True)
        else:
            conn = sqlite3.connect(s.db)
            conn.execute("INSERT INTO audit_log (ts, tenant_id, action, outcome) VALUES "
                         "(?, 'acme', 'ancient', 'success')", (old,))
            conn.commit()
            conn.close()
        s.stop()
        s.start()  # the sweep runs with the first request, then hourly
        r = s.get("/api/v1/audit?perPage=200", headers=auth(key))
        self.assertEqual(r.status, 200, r)
        actions = [i["action"] for i in r.json()["items"]]
        self.assertNotIn("ancient", actions)
        self.assertIn("api-key.create", actions)


class Binding(ServerTest):
    """D22: a server bound to anything but loopback needs credentials or --insecure-no-auth."""

    def run_ah(self, *args, db):
        tmp = os.path.dirname(db)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env.update(HOME=tmp, XDG_RUNTIME_DIR=tmp, XDG_DATA_HOME=tmp, XDG_CONFIG_HOME=tmp)
        return subprocess.Popen([ahtest.AH_BIN, "agent", "access-point", "--port", "0", "--db",
                                 db] + list(args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)

    def test_refuses_open_wildcard_bind(self):
        db = os.path.join(self.server.tmp, "open.db")
        p = self.run_ah("--bind", "0.0.0.0", db=db)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 8, err)
        self.assertIn("refusing to serve 0.0.0.0 without credentials", err)
        self.assertIn("--insecure-no-auth", err)

    def test_insecure_flag_or_a_key_allow_it(self):
        db = os.path.join(self.server.tmp, "insecure.db")
        p = self.run_ah("--bind", "0.0.0.0", "--insecure-no-auth", db=db)
        self.wait_serving(p)
        db2 = os.path.join(self.server.tmp, "keyed.db")
        r = subprocess.run([ahtest.AH_BIN, "admin", "api-key", "create", "--role", "admin",
                            "--tenant", "t", "--db", db2], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r)
        p = self.run_ah("--bind", "0.0.0.0", db=db2)
        self.wait_serving(p)

    def wait_serving(self, p):
        """Waits until the server answers readyz, then stops it."""
        deadline = time.monotonic() + 30
        port = None
        line = ""
        try:
            while time.monotonic() < deadline and port is None:
                line = p.stderr.readline()
                if '"msg":"listening"' in line:
                    port = json.loads(line)["port"]
                if not line and p.poll() is not None:
                    break
            self.assertIsNotNone(port, line)
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                        c.sendall(b"GET /api/v1/readyz HTTP/1.1\r\nHost: localhost\r\n"
                                  b"Connection: close\r\n\r\n")
                        if b" 200 " in c.recv(100):
                            break
                except OSError:
                    pass
                self.assertIsNone(p.poll(), "the server exited")
                time.sleep(0.1)
            else:
                self.fail("never ready")
        finally:
            p.terminate()
            p.communicate(timeout=30)


if __name__ == "__main__":
    ahtest.main()
