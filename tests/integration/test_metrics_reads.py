"""Issue 18 item 3: fast reads. GET /sessions/{id} and GET /sessions keep their rendered
representation, invalidated by the writer: an ETag on every answer, 304 for If-None-Match, and
never a stale answer — each write (event, transition, new task, purge) shows at once. The
speed itself is measured by bench/bench-read.c, not here."""

import time

import ahtest
from ahtest import ServerTest
from sessiontest import create, events, task, wait_for, wait_status


class Reads(ServerTest):
    server_args = ("--max-concurrent-tasks", "4")

    def get(self, path, **headers):
        return self.server.get(path, headers=headers)

    def test_etag_and_304(self):
        sid = create(self.server, task([{"log": "x"}]))["id"]
        wait_status(self.server, sid, "completed")
        path = "/api/v1/sessions/" + sid
        a = self.get(path)
        self.assertEqual(a.status, 200)
        etag = a.header("etag")
        self.assertRegex(etag, r'^"[0-9a-f]{16}"$')
        self.assertEqual(a.header("cache-control"), "no-cache")
        b = self.get(path)
        self.assertEqual((b.header("etag"), b.body), (etag, a.body), "same state, same bytes")
        for inm in (etag, "W/" + etag, '"0000000000000000", ' + etag, "*"):
            nm = self.get(path, **{"If-None-Match": inm})
            self.assertEqual(nm.status, 304, inm)
            self.assertEqual(nm.body, b"")
            self.assertEqual(nm.header("etag"), etag)
        other = self.get(path, **{"If-None-Match": '"0000000000000000"'})
        self.assertEqual((other.status, other.body), (200, a.body))
        # another tenant does not see the kept representation
        self.assertEqual(self.get(path, **{"X-Tenant-ID": "someone-else"}).status, 404)

    def test_events_and_transitions_show_at_once(self):
        scenario = [{"log": "step %d" % i} if i % 2 else {"sleep": 150} for i in range(30)]
        sid = create(self.server, task(scenario))["id"]
        path = "/api/v1/sessions/" + sid
        etags = set()
        seen_recent = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            evs = events(self.server, sid)
            latest = evs[-1]["seq"] if evs else 0
            s = self.get(path)
            self.assertEqual(s.status, 200)
            etags.add(s.header("etag"))
            body = s.json()
            if body["status"] in ("completed", "failed"):
                break
            recent = [e["seq"] for e in body["recent_events"]]
            # read after the history: the session's tail cannot be older than it
            if latest:
                self.assertTrue(recent and recent[-1] >= latest,
                                "stale recent_events %s, history at %d" % (recent, latest))
                seen_recent += 1
        self.assertEqual(self.get(path).json()["status"], "completed")
        self.assertGreater(seen_recent, 3)
        self.assertGreater(len(etags), 3, "the representation changed as events arrived")

    def test_list_changes_with_new_tasks_and_purge(self):
        a = self.get("/api/v1/sessions?perPage=100")
        self.assertEqual(a.status, 200)
        etag = a.header("etag")
        self.assertEqual(self.get("/api/v1/sessions?perPage=100",
                                  **{"If-None-Match": etag}).status, 304)
        sid = create(self.server, task([{"log": "x"}]))["id"]
        b = self.get("/api/v1/sessions?perPage=100", **{"If-None-Match": etag})
        self.assertEqual(b.status, 200, "a new task changes the list")
        self.assertIn(sid, [s["id"] for s in b.json()["items"]])
        # another query is another representation
        c = self.get("/api/v1/sessions?perPage=1")
        self.assertEqual(len(c.json()["items"]), 1)
        wait_status(self.server, sid, "completed")
        self.assertEqual(self.get("/api/v1/sessions/" + sid).status, 200)
        d = self.server.request("DELETE", "/api/v1/sessions/%s?purge=true" % sid)
        self.assertIn(d.status, (200, 202, 204), d)
        wait_for(lambda: self.get("/api/v1/sessions/" + sid).status == 404, timeout=30,
                 what="the purged session to be gone")
        self.assertNotIn(sid, [s["id"] for s in
                               self.get("/api/v1/sessions?perPage=100").json()["items"]])


if __name__ == "__main__":
    ahtest.main()
