"""`ah agent enroll --rest-api yes` (CLI-and-enrollment §1 and §4): the executor also runs the
access point's daemon path in the same process — its own REST/SSE API, database and local
runner — so a client can use it as an access point, while the sessions its upstream access point
places on it keep running there as remote sessions. Both kinds share --max-concurrent-tasks.
Real processes on loopback, mutual TLS with certificates from tests/enroll/mkcerts.sh."""

import json
import os
import subprocess
import tempfile

import ahtest
from fleettest import SERVE_ID, FleetTestCase, wait_for
from sessiontest import create, events, session, task, wait_status
from ssetest import SSE

EXEC_ID = "spiffe://example.org/ah/agent/a"


class EnrollRestApi(FleetTestCase):
    def upstream(self):
        """An access point that runs nothing itself: what it creates goes to executors."""
        ap = self.start_access_point(extra=["--max-concurrent-tasks", "0"])
        self.addCleanup(ap.kill_sessions)
        self.addCleanup(ap.close)
        return ap

    def identity(self, ap, cert="a"):
        return ["--remote-server", "quic://127.0.0.1:%d" % ap.quic_port, "--identity", "files",
                "--cert-file", self.c(cert + ".pem"), "--key-file", self.c(cert + ".key"),
                "--ca-file", self.c("ca.pem"), "--expected-server-id", SERVE_ID,
                "--heartbeat-interval", "0.2"]

    def rest_executor(self, ap, slots=2, extra=(), bind="127.0.0.1"):
        """`ah agent enroll --rest-api yes` as an ahtest.Server: it adds --port 0 and --db, reads
        the port from the "listening" line and waits for /readyz. Its data directory is inside
        the server's directory, so kill_sessions finds every recorder it left."""
        tmp = tempfile.mkdtemp(prefix="ah-restexec-", dir=self.tmp)
        args = self.identity(ap) + ["--rest-api", "yes", "--bind", bind,
                                    "--max-concurrent-tasks", str(slots),
                                    "--data-dir", os.path.join(tmp, "data")] + list(extra)
        ex = ahtest.Server(args=args, command=("agent", "enroll"), tmpdir=tmp,
                           db=os.path.join(tmp, "data", "rest-api", "state.db"))
        self.addCleanup(ex.kill_sessions)
        self.addCleanup(ex.close)
        ex.data = os.path.join(tmp, "data")
        self.wait_online(ap)
        return ex

    def wait_online(self, ap):
        return wait_for("the executor online", lambda: (lambda r: r.json() if r.status == 200 and
                        r.json()["health"] == "online" else None)(
            ap.get("/api/v1/executors/a")), timeout=60)

    def follow(self, server, sid):
        """Every event of the session over SSE, from the start until the stream closes at its
        end (D11)."""
        sse = SSE(server, "/api/v1/sessions/%s/events" % sid, timeout=90)
        self.assertEqual(sse.status, 200)
        evs = [f["json"] for f in sse.events(timeout=90)]
        self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)))
        return evs

    def test_serves_its_own_tasks_and_runs_the_upstreams(self):
        ap = self.upstream()
        ex = self.rest_executor(ap)
        # enrolled upstream, and an access point of its own
        wait_for("the Ack of its Hello", lambda: "enrolled at the access point" in ex.stderr())
        r = ex.get("/api/v1/healthz")
        self.assertEqual(r.status, 200, r)
        local = ex.get("/api/v1/executors").json()["items"]
        self.assertEqual([x["id"] for x in local], ["local"])
        self.assertEqual(local[0]["capacity"], 2)

        # a task created on the executor's own API runs there, stored in its database
        steps = [{"thought": "planning"}, {"log": "halfway"},
                 {"edit": "out.txt", "content": "local\n"}, {"log": "done"}]
        sid = create(ex, task(steps))["id"]
        evs = self.follow(ex, sid)
        self.assertEqual([e["status"] for e in evs if e["type"] == "status"],
                         ["queued", "provisioning", "running", "completed"])
        self.assertEqual([e["message"] for e in evs if e["type"] == "log"], ["halfway", "done"])
        self.assertIn("file_edit", [e["type"] for e in evs])
        with open(os.path.join(ex.data, "rest-api", "workspaces", sid, "out.txt")) as f:
            self.assertEqual(f.read(), "local\n")
        self.assertEqual(ap.get("/api/v1/sessions/" + sid).status, 404)  # not the upstream's
        self.assertEqual(ahtest.db_row(ex.db, "SELECT status FROM sessions WHERE id = '%s'"
                                       % sid)[0], "completed")

        # a task created upstream still runs here as a remote session: its events go upstream
        sid2 = create(ap, task([{"log": "remote"}, {"edit": "r.txt", "content": "up\n"}]))["id"]
        evs = self.follow(ap, sid2)
        self.assertEqual(evs[-1]["status"], "completed")
        self.assertIn("remote", [e.get("message") for e in evs if e["type"] == "log"])
        self.assertIn("launching on executor %s" % EXEC_ID, ap.stderr())
        with open(os.path.join(ex.data, "workspaces", sid2, "r.txt")) as f:
            self.assertEqual(f.read(), "up\n")
        self.assertEqual(ex.get("/api/v1/sessions/" + sid2).status, 404)  # not in its database

    def test_clients_use_it_as_an_access_point(self):
        """The CLI (libah-client) and `ah webui --remote-server` against the executor's API."""
        ap = self.upstream()
        ex = self.rest_executor(ap)
        url = "http://127.0.0.1:%d" % ex.port
        steps = os.path.join(ex.tmp, "steps.json")
        with open(steps, "w") as f:
            json.dump([{"log": "from the cli"}, {"edit": "c.txt", "content": "cli\n"}], f)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env.update(HOME=ex.tmp, XDG_CONFIG_HOME=os.path.join(ex.tmp, "cli-config"))
        p = subprocess.run([ahtest.AH_BIN, "task", "create", "--remote-server", url, "--prompt",
                            "via the cli", "--agent", "scripted", "--scenario", steps,
                            "--follow"], capture_output=True, text=True, timeout=120, env=env,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        sid = p.stdout.split()[0]
        self.assertIn("from the cli", p.stdout)
        self.assertEqual(session(ex, sid)["status"], "completed")
        self.assertTrue(os.path.exists(os.path.join(ex.data, "rest-api", "workspaces", sid,
                                                    "c.txt")))
        # the web UI proxies /api/v1 to it, event stream included
        ui = ahtest.Server(command=("webui",), args=("--remote-server", url))
        self.addCleanup(ui.close)
        r = ui.get("/api/v1/sessions/" + sid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["id"], sid)
        evs = self.follow(ui, create(ui, task([{"log": "via the ui"}]))["id"])
        self.assertIn("via the ui", [e.get("message") for e in evs])

    def test_one_budget_for_both(self):
        ap = self.upstream()
        ex = self.rest_executor(ap, slots=2)
        hold = [{"wait_prompt": True}, {"log": "released"}]
        # the executor's API fills the machine: the access point sees it full at once
        mine = create(ex, task(hold, count=2))["session_ids"]
        for sid in mine:
            wait_status(ex, sid, "running", timeout=60)
        e = wait_for("the executor reported full", lambda: (lambda x: x if x["running"] == 2
                     and x["freeSlots"] == 0 else None)(self.wait_online(ap)))
        self.assertEqual(e["capacity"], 2)
        # the access point's session waits until one of the API's own ends
        self.waits_for_a_slot(ap, "busy", (ex, mine[0]))

        # the other way round: the access point's sessions hold both slots
        theirs = create(ap, task(hold))["session_ids"]
        wait_status(ap, theirs[0], "running", timeout=60)  # with mine[1]: the machine is full
        self.waits_for_a_slot(ex, "waiting for a free slot on the local runner (2 of 2 busy)",
                              (ap, theirs[0]))
        self.release(ex, mine[1])

    def release(self, server, sid):
        """A session holding a slot (waiting for a prompt) is let go and ends."""
        self.assertEqual(server.post("/api/v1/sessions/%s/prompt" % sid,
                                     body={"prompt": "go"}).status, 202)
        wait_status(server, sid, "completed", timeout=60)

    def waits_for_a_slot(self, server, reason, holder):
        """A new task on `server` stays queued with `reason` until the holder's session ends,
        then runs to completion in the freed slot."""
        sid = create(server, task([{"log": "fits now"}]))["id"]
        self.assertIn(reason, wait_for("a reason", lambda: session(server, sid).get(
            "queuedReason")))
        self.assertEqual(session(server, sid)["status"], "queued")
        self.release(*holder)
        wait_status(server, sid, "completed", timeout=60)

    def test_sigterm_stops_both_halves_and_sessions_survive(self):
        ap = self.upstream()
        ex = self.rest_executor(ap)
        hold = [{"wait_prompt": True}, {"log": "after restart"}]
        local = create(ex, task(hold))["id"]
        remote = create(ap, task(hold))["id"]
        wait_status(ex, local, "running", timeout=60)
        wait_status(ap, remote, "running", timeout=60)
        self.assertEqual(ex.stop(), 0, ex.stderr())
        text = ex.stderr()
        self.assertIn("saying goodbye", text)
        self.assertTrue(text.rstrip().endswith('"msg":"stopped"}'), text[-800:])
        wait_for("goodbye upstream", lambda: "says goodbye" in ap.stderr())
        # the same executor again (same port, directory and database): both sessions re-attach
        port = ex.port
        ex.start(port=port)
        self.wait_online(ap)
        for server, sid in ((ex, local), (ap, remote)):
            r = wait_for("prompt accepted", lambda: (lambda r: r if r.status == 202 else None)(
                server.post("/api/v1/sessions/%s/prompt" % sid, body={"prompt": "go"})),
                timeout=60)
            wait_status(server, sid, "completed", timeout=60)
            evs = events(server, sid)
            self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)))
            self.assertIn("after restart", [e.get("message") for e in evs])

    def test_auth_on_a_public_address(self):
        """Bound beyond loopback, the API needs credentials, as ah agent access-point's does."""
        ap = self.upstream()
        tmp = tempfile.mkdtemp(prefix="ah-restauth-", dir=self.tmp)
        data = os.path.join(tmp, "data")
        db = os.path.join(tmp, "rest.db")
        args = ["agent", "enroll"] + self.identity(ap) + [
            "--rest-api", "yes", "--port", "0", "--data-dir", data, "--db", db]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env.update(HOME=tmp, XDG_RUNTIME_DIR=os.path.join(tmp, "run"))
        r = subprocess.run([ahtest.AH_BIN] + args, capture_output=True, text=True, timeout=60,
                           env=env, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 8, r.stderr)
        self.assertIn("ah agent enroll: refusing to serve 0.0.0.0 without credentials", r.stderr)
        self.assertIn("--db " + db, r.stderr)
        self.assertNotIn("enrolling", r.stderr)  # refused before it dialled
        # with an API key in its database it serves 0.0.0.0, and every request needs the key
        out = subprocess.run([ahtest.AH_BIN, "admin", "api-key", "create", "--role", "operator",
                              "--tenant", "default", "--db", db], capture_output=True,
                             text=True, timeout=60, env=env, check=True).stdout
        key = next(w for w in out.split() if w.startswith("ahk_"))
        ex = ahtest.Server(args=self.identity(ap) + ["--rest-api", "yes", "--data-dir", data],
                           command=("agent", "enroll"), tmpdir=tmp, db=db)
        self.addCleanup(ex.kill_sessions)
        self.addCleanup(ex.close)
        self.assertIn('"url":"http://0.0.0.0:', ex.stderr())
        self.wait_online(ap)
        self.assertEqual(ex.get("/api/v1/sessions").status, 401)
        auth = {"Authorization": "ApiKey " + key}
        sid = create(ex, task([{"log": "with a key"}]), headers=auth)["id"]
        wait_for("completed", lambda: ex.get("/api/v1/sessions/" + sid, headers=auth).json()
                 ["status"] == "completed", timeout=60)

    def test_port_in_use_and_bad_values(self):
        ap = self.upstream()
        tmp = tempfile.mkdtemp(prefix="ah-restbad-", dir=self.tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env.update(HOME=tmp, XDG_RUNTIME_DIR=os.path.join(tmp, "run"))

        def enroll(*extra):
            return subprocess.run([ahtest.AH_BIN, "agent", "enroll"] + self.identity(ap) +
                                  ["--data-dir", os.path.join(tmp, "data")] + list(extra),
                                  capture_output=True, text=True, timeout=60, env=env,
                                  stdin=subprocess.DEVNULL)
        # the access point's HTTP port is taken: one line, exit 1, nothing enrolled
        r = enroll("--rest-api", "yes", "--bind", "127.0.0.1", "--port", str(ap.port))
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = [l for l in r.stderr.splitlines() if not l.startswith("{")]
        self.assertEqual(lines, ["ah agent enroll: address 127.0.0.1:%d is already in use"
                                 % ap.port], r.stderr)
        self.assertNotIn("enrolling", r.stderr)
        self.assertEqual(ap.get("/api/v1/executors/a").status, 404)
        # the access point's settings are checked like its own flags
        r = enroll("--rest-api", "yes", "--bind", "127.0.0.1", "--sse-keepalive-ms", "5")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("sse-keepalive-ms", r.stderr)
        self.assertNotIn("enrolling", r.stderr)


if __name__ == "__main__":
    ahtest.main()
