"""ah admin migrate|export|import (issue 17 item 5, D47): an installation moves between
databases without losing or changing a row; a cut, altered or foreign archive and a non-empty
target are refused before anything is written. Without AH_TEST_DB_URL this runs on SQLite
alone; under tests/pg/pgserver.py it also moves SQLite → PostgreSQL → SQLite."""

import json
import os
import subprocess
import tempfile
import unittest
import uuid

import ahtest
from ahtest import AH_BIN, Server
from sessiontest import create, events, task, wait_status


def ah(*args, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
    p = subprocess.run([AH_BIN, *args], capture_output=True, text=True, env=env, timeout=300,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError("ah %s: exit %d\n%s" % (" ".join(args), p.returncode, p.stderr))
    return p


def rows_of(path):
    """The archive's rows as a sorted list of (table, canonical row), and its trailer."""
    with open(path) as f:
        lines = [json.loads(l) for l in f]
    head, body, end = lines[0], lines[1:-1], lines[-1]
    assert head["format"] == "agent-harbor-export", head
    assert end.get("end") is True, end
    rows = sorted((l["table"], json.dumps(l["row"], sort_keys=True)) for l in body)
    return rows, end["tables"]


def populate(server):
    """Real data in every kind of table a user has: finished sessions with their events (and
    snapshots), a draft, an idempotent request."""
    sids = []
    for i in range(3):
        sid = create(server, task([{"log": "hello %d" % i},
                                   {"edit": "f%d.txt" % i, "content": "x\n" * (i + 1)}]),
                     headers={"Idempotency-Key": str(uuid.uuid4())})["id"]
        sids.append(sid)
    for sid in sids:
        wait_status(server, sid, "completed")
    r = server.post("/api/v1/drafts", body={"prompt": "later", "repo": {"mode": "none"}})
    assert r.status == 201, r
    return sids


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ah-admin-db-")

    def tearDown(self):
        subprocess.run(["rm", "-rf", self.tmp])

    def path(self, name):
        return os.path.join(self.tmp, name)

    def source(self):
        s = Server(db=self.path("src.db"))
        try:
            sids = populate(s)
            expected = {sid: events(s, sid) for sid in sids}
        finally:
            s.close()
        # a key and its audit record, made offline like an operator would
        ah("admin", "api-key", "create", "--role", "admin", "--tenant", "default",
           "--db", self.path("src.db"))
        return sids, expected


class SqliteRoundTrip(Base):
    def test_migrate_reports_the_version(self):
        p = ah("admin", "migrate", "--db", self.path("new.db"), "--json")
        first = json.loads(p.stdout)
        self.assertGreaterEqual(first["schemaVersion"], 5)
        self.assertGreaterEqual(first["applied"], 5)
        again = json.loads(ah("admin", "migrate", "--db", self.path("new.db"), "--json").stdout)
        self.assertEqual(again, {"schemaVersion": first["schemaVersion"], "applied": 0})

    def test_round_trip_is_lossless_and_the_copy_serves(self):
        sids, expected = self.source()
        ah("admin", "export", "--db", self.path("src.db"), "--out", self.path("a.jsonl"))
        rows, tables = rows_of(self.path("a.jsonl"))
        for t in ("tasks", "sessions", "events", "drafts", "idempotency_keys", "api_keys",
                  "audit_log"):
            self.assertGreater(tables[t]["rows"], 0, t)
        p = ah("admin", "import", self.path("a.jsonl"), "--db", self.path("copy.db"), "--json")
        summary = json.loads(p.stdout)
        self.assertEqual(summary, {t: v["rows"] for t, v in tables.items()})
        ah("admin", "export", "--db", self.path("copy.db"), "--out", self.path("b.jsonl"))
        rows2, tables2 = rows_of(self.path("b.jsonl"))
        self.assertEqual(rows2, rows)
        self.assertEqual(tables2, tables)
        # a server on the copy answers the same events (the key moved too: use it)
        key_line = ah("admin", "api-key", "create", "--role", "viewer", "--tenant", "default",
                      "--db", self.path("copy.db")).stdout
        key = next(w for w in key_line.split() if w.startswith("ahk_"))
        s = Server(db=self.path("copy.db"))
        try:
            for sid in sids:
                r = s.get("/api/v1/sessions/%s/events?perPage=200&sort=asc" % sid,
                          headers={"Authorization": "ApiKey " + key})
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["items"], expected[sid])
        finally:
            s.close()

    def test_bad_archives_and_targets_are_refused_before_writing(self):
        self.source()
        ah("admin", "export", "--db", self.path("src.db"), "--out", self.path("a.jsonl"))
        with open(self.path("a.jsonl")) as f:
            lines = f.readlines()
        cases = {
            "cut.jsonl": lines[:len(lines) // 2],
            "no-trailer.jsonl": lines[:-1],
            "altered.jsonl": lines[:3] + [lines[3].replace("hello", "HELLO")] + lines[4:],
            "dropped.jsonl": lines[:3] + lines[4:],
            "foreign.jsonl": ['{"format": "something-else", "version": 1}\n'] + lines[1:],
            "garbage.jsonl": ["not json at all\n"],
        }
        for name, content in cases.items():
            with open(self.path(name), "w") as f:
                f.writelines(content)
            target = self.path("t-" + name + ".db")
            p = ah("admin", "import", self.path(name), "--db", target, check=False)
            self.assertEqual(p.returncode, 7, (name, p.stderr))
            self.assertIn("ah admin import: ", p.stderr)
            # nothing was written
            out = ah("admin", "export", "--db", target).stdout.splitlines()
            self.assertEqual(len(out), 2, (name, out[:3]))
        # a target that holds data is refused, and keeps exactly what it had
        before = rows_of(self.path("a.jsonl"))
        p = ah("admin", "import", self.path("a.jsonl"), "--db", self.path("src.db"), check=False)
        self.assertEqual(p.returncode, 7, p.stderr)
        self.assertIn("not empty", p.stderr)
        ah("admin", "export", "--db", self.path("src.db"), "--out", self.path("again.jsonl"))
        self.assertEqual(rows_of(self.path("again.jsonl")), before)
        # an export never overwrites a file
        p = ah("admin", "export", "--db", self.path("src.db"), "--out", self.path("a.jsonl"),
               check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(rows_of(self.path("a.jsonl")), before)


class AcrossBackends(Base):
    """SQLite → PostgreSQL → SQLite: every row arrives unchanged both ways."""

    def test_sqlite_to_postgres_and_back(self):
        sids, expected = self.source()
        ah("admin", "export", "--db", self.path("src.db"), "--out", self.path("a.jsonl"))
        rows, tables = rows_of(self.path("a.jsonl"))
        pg = ahtest.new_test_db()
        summary = json.loads(ah("admin", "import", self.path("a.jsonl"), "--db", pg,
                                "--json").stdout)
        self.assertEqual(summary, {t: v["rows"] for t, v in tables.items()})
        s = Server(db=pg, args=("--data-dir", self.path("pgdata")))
        try:
            # a key made on SQLite authenticates on PostgreSQL
            key_line = ah("admin", "api-key", "create", "--role", "viewer", "--tenant",
                          "default", "--db", pg).stdout
            key = next(w for w in key_line.split() if w.startswith("ahk_"))
            for sid in sids:
                r = s.get("/api/v1/sessions/%s/events?perPage=200&sort=asc" % sid,
                          headers={"Authorization": "ApiKey " + key})
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["items"], expected[sid])
        finally:
            s.close()
        # back again: the PostgreSQL copy exports the same rows (plus the second key)
        ah("admin", "export", "--db", pg, "--out", self.path("b.jsonl"))
        rows2, _ = rows_of(self.path("b.jsonl"))
        self.assertEqual([r for r in rows2 if r[0] not in ("api_keys", "audit_log")],
                         [r for r in rows if r[0] not in ("api_keys", "audit_log")])
        self.assertTrue(set(rows) <= set(rows2))
        ah("admin", "import", self.path("b.jsonl"), "--db", self.path("back.db"))
        ah("admin", "export", "--db", self.path("back.db"), "--out", self.path("c.jsonl"))
        self.assertEqual(rows_of(self.path("c.jsonl"))[0], rows2)


if __name__ == "__main__":
    if ahtest.TEST_DB_URL:  # integration/pg-admin-db: the PostgreSQL half
        del SqliteRoundTrip
    else:  # integration/admin-db
        del AcrossBackends
    ahtest.main()
