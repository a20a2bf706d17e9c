"""Every route of api/openapi.json under every role, and two tenants that never see each other
(issue 13 items 4 and 5; D4, D22, D35).

RoleMatrix: each operation × {no credentials, viewer, operator, admin} gets exactly the answer
class its `Role:` line promises: 401 without credentials, 403 below the role, and otherwise an
answer past authorization (2xx, or 4xx from validation / an unknown id, or 501 for a route not
implemented yet). Public operations (`security: []`) answer without credentials.

TwoTenants: tenant A runs a real session (events, files, a diff, a recording) and saves a draft;
tenant B's operator and admin then try every operation on A's ids (and lists) and must find
nothing: 404 for A's resources, lists without A's ids, totals and counts of B's own only.
"""

import json
import os
import re
import subprocess
import time
import urllib.parse

import ahtest
from ahtest import ServerTest

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = json.load(open(os.path.join(HERE, "..", "..", "api", "openapi.json"), encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "patch")
GHOST = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
RANK = {"viewer": 1, "operator": 2, "admin": 3}
MARKER = "tenant-a-secret-marker"


def operations():
    for path, item in DOC["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def role_of(op):
    if op.get("security") == []:
        return None
    m = re.search(r"Role: `(\w+)`", op.get("description", ""))
    assert m, op.get("operationId")
    return m.group(1)


def fill(path, ids):
    def sub(m):
        name = m.group(1)
        if name == "filePath":
            return ids.get("filePath", "src/a.c")
        if name == "asset":
            return "no-such-asset.js"
        return ids.get(name, GHOST)
    return re.sub(r"\{([^}]+)\}", sub, path)


def make_key(server, role, tenant, *extra):
    r = subprocess.run([ahtest.AH_BIN, "admin", "api-key", "create", "--role", role, "--tenant",
                        tenant, "--db", server.db] + list(extra),
                       capture_output=True, text=True, env=server.env(), timeout=60)
    assert r.returncode == 0, r
    return r.stdout.strip()


def call(server, method, path, key=None, body=None, accept="application/json"):
    headers = {"Accept": accept}
    if key:
        headers["Authorization"] = "ApiKey " + key
    if method in ("POST", "PUT", "PATCH"):
        headers["Content-Type"] = "application/json"
        body = "{}" if body is None else json.dumps(body)
    return server.request(method, path, body=body, headers=headers, timeout=30)


class RoleMatrix(ServerTest):
    server_args = ("--rate-limit", "100000", "--rate-limit-burst", "100000")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.keys = {r: make_key(cls.server, r, "acme") for r in RANK}
        deadline = time.monotonic() + 30
        while cls.server.get("/api/v1/sessions", record_it=False).status != 401:
            assert time.monotonic() < deadline
            time.sleep(0.05)

    def test_every_route_every_role(self):
        wrong = []
        n = 0
        for method, template, op in operations():
            need = role_of(op)
            path = fill(template, {})
            for who in (None, "viewer", "operator", "admin"):
                r = call(self.server, method, path, self.keys.get(who))
                n += 1
                if need is None:
                    ok = r.status not in (401, 403)
                    want = "not 401/403 (public)"
                elif who is None:
                    ok = r.status == 401
                    want = "401"
                elif RANK[who] < RANK[need]:
                    ok = r.status == 403 and r.json().get("type") == "/problems/authz"
                    want = "403 (%s < %s)" % (who, need)
                else:
                    ok = r.status not in (401, 403) and r.status < 500 or r.status in (501, 503)
                    want = "past authorization (%s >= %s)" % (who, need)
                if not ok:
                    wrong.append("%s %s as %s: %d, wanted %s" % (method, template, who or "nobody",
                                                                 r.status, want))
        self.assertGreater(n, 200)
        self.assertEqual(wrong, [], "\n".join(wrong))


class TwoTenants(ServerTest):
    server_args = ("--rate-limit", "100000", "--rate-limit-burst", "100000")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.server
        cls.a = make_key(s, "operator", "tenant-a")
        cls.a_admin = make_key(s, "admin", "tenant-a")
        cls.b = make_key(s, "operator", "tenant-b")
        cls.b_admin = make_key(s, "admin", "tenant-b")
        deadline = time.monotonic() + 30
        while s.get("/api/v1/sessions", record_it=False).status != 401:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        body = {"prompt": MARKER, "repo": {"mode": "none"}, "runtime": {"type": "local"},
                "labels": {"owner": MARKER},
                "agents": [{"type": "scripted", "settings": {"scenario": [
                    {"log": MARKER},
                    {"edit": "src/a.c", "content": "int %s;\n" % MARKER.replace("-", "_")},
                    {"thought": MARKER}]}}]}
        r = call(s, "POST", "/api/v1/tasks", cls.a, body)
        assert r.status == 201, r
        cls.sid = r.json()["id"]
        deadline = time.monotonic() + 120
        while True:
            st = call(s, "GET", "/api/v1/sessions/" + cls.sid, cls.a).json()["status"]
            if st in ("completed", "failed", "stopped", "cancelled"):
                assert st == "completed", call(s, "GET", "/api/v1/sessions/" + cls.sid, cls.a)
                break
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        r = call(s, "POST", "/api/v1/drafts", cls.a, {"prompt": MARKER})
        assert r.status == 201, r
        cls.draft = r.json()["id"]
        # tenant B has a session of its own, so its lists are not trivially empty
        b_body = {"prompt": "b's own", "repo": {"mode": "none"}, "runtime": {"type": "local"},
                  "agents": [{"type": "scripted", "settings": {"scenario": [{"log": "b"}]}}]}
        r = call(s, "POST", "/api/v1/tasks", cls.b, b_body)
        assert r.status == 201, r
        cls.b_sid = r.json()["id"]

    def a_ids(self):
        return {"id": self.sid, "filePath": "src/a.c"}

    def test_tenant_a_sees_its_own(self):
        # the probe below is not vacuous: as A, the same requests find A's data
        s = self.server
        self.assertEqual(call(s, "GET", "/api/v1/sessions/" + self.sid, self.a).status, 200)
        self.assertEqual(call(s, "GET", "/api/v1/drafts/" + self.draft, self.a).status, 200)
        ev = call(s, "GET", "/api/v1/sessions/%s/events?perPage=200" % self.sid, self.a)
        self.assertIn(MARKER, ev.body.decode())
        files = call(s, "GET", "/api/v1/sessions/%s/files" % self.sid, self.a)
        self.assertEqual(files.status, 200, files)
        self.assertIn("src/a.c", files.body.decode())

    def test_nothing_of_a_reaches_b(self):
        s = self.server
        leaks = []
        for method, template, op in operations():
            if op.get("security") == []:
                continue
            ids = self.a_ids()
            if template.startswith("/api/v1/drafts/"):
                ids = {"id": self.draft}
            path = fill(template, ids)
            for key in (self.b, self.b_admin):
                for hdrs in ({}, {"X-Tenant-ID": "tenant-a"}):
                    headers = dict(hdrs, Accept="application/json",
                                   Authorization="ApiKey " + key)
                    body = None
                    if method in ("POST", "PUT", "PATCH"):
                        headers["Content-Type"] = "application/json"
                        body = "{}"
                    q = path + ("&" if "?" in path else "?") + "tenantId=tenant-a"
                    r = s.request(method, q, body=body, headers=headers, timeout=30)
                    text = r.body.decode("utf-8", "replace")
                    bad = []
                    # A's ids may come back only as the echo of B's own request (instance,
                    # "no session X"); A's content never
                    if MARKER in text:
                        bad.append("A's data in the answer")
                    if 200 <= r.status < 300 and template != "/api/v1/audit" and (
                            self.sid in text or self.draft in text):  # B's audit: B's own paths
                        bad.append("A's ids in a success answer")
                    if "{id}" in template and 200 <= r.status < 300 and (
                            template.startswith("/api/v1/sessions/") or
                            template.startswith("/api/v1/drafts/")):
                        bad.append("2xx on A's resource")
                    if r.status >= 500 and r.status not in (501, 503):
                        bad.append("server error")
                    if bad:
                        leaks.append("%s %s as %s%s: %d %s: %s" % (
                            method, template, "admin" if key == self.b_admin else "operator",
                            " +X-Tenant-ID" if hdrs else "", r.status, ", ".join(bad),
                            text[:200]))
        self.assertEqual(leaks, [], "\n".join(leaks))

    def test_lists_and_totals_are_b_only(self):
        s = self.server
        r = call(s, "GET", "/api/v1/sessions?perPage=200", self.b)
        ids = [i["id"] for i in r.json()["items"]]
        self.assertEqual(ids, [self.b_sid])
        self.assertEqual(r.json()["total"], 1)
        self.assertEqual(call(s, "GET", "/api/v1/drafts", self.b).json()["total"], 0)
        keys = call(s, "GET", "/api/v1/api-keys", self.b_admin).json()
        self.assertEqual(keys["total"], 2)
        self.assertTrue(all(k["tenantId"] == "tenant-b" for k in keys["items"]))
        audit = call(s, "GET", "/api/v1/audit?perPage=200", self.b_admin).json()
        self.assertTrue(all(i["tenantId"] == "tenant-b" for i in audit["items"]), audit)

    def test_streams_and_files_of_a_are_404_for_b(self):
        s = self.server
        for path, accept in (("/api/v1/sessions/%s/events" % self.sid, "text/event-stream"),
                             ("/api/v1/sessions/%s/events?after=0" % self.sid, "text/event-stream"),
                             ("/api/v1/sessions/%s/recording" % self.sid, "*/*"),
                             ("/api/v1/sessions/%s/files/src/a.c/content" % self.sid, "*/*"),
                             ("/api/v1/sessions/%s/workspace/download" % self.sid, "*/*"),
                             ("/api/v1/sessions/%s/diff" % self.sid, "text/x-diff")):
            with self.subTest(path=path):
                r = call(s, "GET", path, self.b, accept=accept)
                self.assertEqual(r.status, 404, r)
                self.assertNotIn(MARKER, r.body.decode("utf-8", "replace"))
                r = call(s, "GET", path, self.a, accept=accept)
                self.assertLess(r.status, 300, r)


if __name__ == "__main__":
    ahtest.main()
