"""The access point on PostgreSQL, end to end (run under tests/pg/pgserver.py --env AH_TEST_DB_URL):
an unreachable database is a clear start-up error that keeps the password to itself; two servers
started together on one empty database both come up and the migrations are applied once; an SSE
client of one server follows a session another server runs, live; the database ending the
server's connections (a restart, an administrator) costs no request."""

import os
import subprocess
import tempfile
import time
import unittest

import ahtest
from ahtest import AH_BIN, Server
from sessiontest import create, events, task, wait_for, wait_status
from ssetest import SSE


def psql(url, sql):
    return subprocess.run(["psql", "-X", "-A", "-t", "-d", url, "-c", sql], capture_output=True,
                          text=True, check=True, stdin=subprocess.DEVNULL).stdout.strip()


class Postgres(unittest.TestCase):
    def test_unreachable_database_is_a_clear_error(self):
        cwd = tempfile.mkdtemp(prefix="ah-pg-cwd-")
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
            env.update(XDG_DATA_HOME=os.path.join(cwd, "data"), HOME=cwd,
                       XDG_RUNTIME_DIR=os.path.join(cwd, "run"))
            os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700)
            p = subprocess.run([AH_BIN, "agent", "access-point", "--port", "0", "--db",
                                "postgresql://ah:s3cr3t-pw@127.0.0.1:1/ah?connect_timeout=5"],
                               cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("cannot connect to PostgreSQL", p.stderr)
            self.assertNotIn("s3cr3t-pw", p.stderr + p.stdout)
            # the URL names no directory: nothing is created where the server was started
            self.assertEqual([n for n in os.listdir(cwd) if n not in ("data", "run")], [])
        finally:
            subprocess.run(["rm", "-rf", cwd])

    def test_two_servers_start_together_on_one_database(self):
        db = ahtest.new_test_db()
        a = b = None
        try:
            # both start before either has migrated: they race for the advisory lock
            a = Server(db=db, wait_ready=False)
            b = Server(db=db, wait_ready=False)
            a.wait_ready()
            b.wait_ready()
            applied = [next(l for l in s.log_lines() if l.get("msg") == "store open")
                       for s in (a, b)]
            version = applied[0]["schema_version"]
            self.assertEqual(applied[1]["schema_version"], version)
            n = max(x["migrations_applied"] for x in applied)
            self.assertEqual(sorted(x["migrations_applied"] for x in applied), [0, n])
            self.assertEqual(psql(db, "SELECT count(*) || ' ' || count(DISTINCT version) || ' '"
                                      " || max(version) FROM schema_migrations"),
                             "%d %d %d" % (n, n, version))
            # a database URL names no directory: the data directory is the XDG default
            for s in (a, b):
                listening = next(l for l in s.log_lines() if l.get("msg") == "listening")
                self.assertEqual(os.path.normpath(listening["data_dir"]),
                                 os.path.join(s.tmp, "data", "agent-harbor"))
        finally:
            for s in (a, b):
                if s:
                    s.close()

    def test_a_session_on_one_server_streams_live_from_another(self):
        """D46: an SSE client of server B follows a session that server A runs: A's commits
        notify, B reads the new events from the database, with the same ids and cursor rules,
        as they happen (not at B's next keep-alive, 15 s)."""
        db = ahtest.new_test_db()
        a = b = None
        try:
            a = Server(db=db)
            # started before any task: it has nothing to schedule or recover
            b = Server(db=db, args=("--sse-keepalive-ms", "15000"))
            sid = create(a, task([{"log": "one"}, {"wait_prompt": True}, {"log": "two"},
                                  {"wait_prompt": True}, {"log": "three"}]))["id"]
            stream = SSE(b, "/api/v1/sessions/%s/events" % sid)
            self.assertEqual(stream.status, 200)
            frames = stream.frames(timeout=60)
            seen = []

            def read_until(message):
                for kind, f in frames:
                    if kind == "event" and "json" in f:
                        seen.append(f)
                        if f["json"].get("message") == message:
                            return
                raise AssertionError("b's stream closed before %r" % message)

            def stored(message):
                return message in [e.get("message") for e in events(a, sid)]

            read_until("one")
            rec = "/api/v1/sessions/%s/recording" % sid
            for n, message in enumerate(("two", "three"), 1):
                # the agent waits: what follows its prompt reaches b only as it happens
                wait_for(lambda: a.get(rec).body.count(b"waiting for a prompt") >= n, 30,
                         "the agent's wait")
                r = a.post("/api/v1/sessions/%s/prompt" % sid,
                           body={"prompt": [{"type": "text", "text": "go on"}]})
                self.assertEqual(r.status, 202, r)
                wait_for(lambda: stored(message), 30, "a to store " + message)
                t0 = time.monotonic()
                read_until(message)
                self.assertLess(time.monotonic() - t0, 3.0, "b was told late of " + message)
            for kind, f in frames:  # until b closes the stream after the last status
                if kind == "event" and "json" in f:
                    seen.append(f)
            stream.finish()
            ids = [int(f["id"]) for f in seen]
            self.assertEqual(ids, list(range(1, len(ids) + 1)))
            self.assertEqual([f["json"] for f in seen], events(a, sid))
            self.assertEqual(seen[-1]["json"]["status"], "completed")
            # Last-Event-ID resumes on b as on a
            again = SSE(b, "/api/v1/sessions/%s/events" % sid, headers={"Last-Event-ID": "2"})
            self.assertEqual([int(f["id"]) for f in again.events(timeout=30)], ids[2:])
        finally:
            for s in (a, b):
                if s:
                    s.close()

    def test_connections_ended_by_the_database_cost_no_request(self):
        s = Server()
        try:
            sid = create(s, task([{"log": "before"}]))["id"]
            wait_status(s, sid, "completed")
            for _ in range(2):
                ended = psql(s.db, "SELECT count(pg_terminate_backend(pid, 10000))"
                                   " FROM pg_stat_activity WHERE datname = current_database()"
                                   " AND pid <> pg_backend_pid()")
                self.assertGreaterEqual(int(ended), 1)
                r = s.get("/api/v1/sessions/" + sid)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(s.get("/api/v1/readyz").status, 200)
            # the event writer's connection came back too
            sid2 = create(s, task([{"log": "after"}]))["id"]
            wait_status(s, sid2, "completed")
            self.assertIn("after", [e.get("message") for e in events(s, sid2)])
        finally:
            s.close()


if __name__ == "__main__":
    if not ahtest.TEST_DB_URL:
        raise SystemExit("test_postgres.py: run it under tests/pg/pgserver.py --env AH_TEST_DB_URL")
    ahtest.main()
