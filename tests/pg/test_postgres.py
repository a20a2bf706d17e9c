"""The access point on PostgreSQL, end to end (run under tests/pg/pgserver.py --env AH_TEST_DB_URL):
an unreachable database is a clear start-up error that keeps the password to itself; two servers
started together on one empty database both come up and the migrations are applied once; the
database ending the server's connections (a restart, an administrator) costs no request."""

import os
import subprocess
import tempfile
import unittest

import ahtest
from ahtest import AH_BIN, Server
from sessiontest import create, events, task, wait_status


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
            self.assertEqual(sorted(x["migrations_applied"] for x in applied), [0, version])
            self.assertEqual(psql(db, "SELECT count(*) || ' ' || count(DISTINCT version)"
                                      " FROM schema_migrations"), "%d %d" % (version, version))
            # a database URL names no directory: the data directory is the XDG default
            for s in (a, b):
                listening = next(l for l in s.log_lines() if l.get("msg") == "listening")
                self.assertEqual(os.path.normpath(listening["data_dir"]),
                                 os.path.join(s.tmp, "data", "agent-harbor"))
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
