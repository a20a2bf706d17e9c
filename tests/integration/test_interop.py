"""Issue 10: interoperability with the Agent Harbor WebUI and the upstream API contract tests —
list pagination (D6), the `agent` shorthand and display aliases (D25), SSE event names and tool
progress (D26), 204 for an ended stream (D11), the catalog endpoints (API.md §7.11) and body
validation on every POST. Every answer is held to the OpenAPI document by the contract check."""

import json
import os
import shutil
import stat
import tempfile
import time
import unittest

import ahtest
from ahtest import Server, ServerTest
from sessiontest import create, events, session, task, wait_status
from ssetest import SSE


class Pagination(ServerTest):
    """D6: every list answer also carries pagination {page, perPage, total, totalPages}."""

    def test_every_list_has_pagination(self):
        sids = [create(self.server, task([{"log": "x"}]))["id"] for _ in range(3)]
        for sid in sids:
            wait_status(self.server, sid, "completed")
        self.server.post("/api/v1/drafts", body={"prompt": "p"})
        r = self.server.get("/api/v1/sessions?perPage=2")
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertEqual(body["pagination"],
                         {"page": 1, "perPage": 2, "total": body["total"],
                          "totalPages": (body["total"] + 1) // 2})
        self.assertGreaterEqual(body["pagination"]["totalPages"], 2)
        for path in ("/api/v1/sessions/%s/events" % sids[0], "/api/v1/drafts",
                     "/api/v1/repos"):
            r = self.server.get(path)
            self.assertEqual(r.status, 200, r)
            b = r.json()
            pg = b["pagination"]
            self.assertEqual((pg["page"], pg["perPage"], pg["total"]),
                             (b["page"], b["perPage"], b["total"]), path)
            self.assertEqual(pg["totalPages"], -(-b["total"] // b["perPage"]), path)
        # an empty list has no pages; a page past the end still says how many there are
        r = self.server.get("/api/v1/sessions?status=paused").json()
        self.assertEqual(r["pagination"]["totalPages"], 0)
        r = self.server.get("/api/v1/sessions?page=99&perPage=1").json()
        self.assertEqual((r["items"], r["pagination"]["page"]), ([], 99))
        self.assertEqual(r["pagination"]["totalPages"], r["total"])


if __name__ == "__main__":
    ahtest.main()
