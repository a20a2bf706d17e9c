"""An executor's sessions are configured as an access point's own (issue 16 item 5: the executor
runs recorder + agent exactly as the local path does): `ah agent enroll` reads the configuration
file (--config), the AH_* environment and the session flags (--agent-env, ...) with config_load,
so the custom agents and sandbox profiles defined there run the sessions the access point places
on it, and its Hello reports those custom agents so placement (D43: the agent type must match)
chooses it. Real processes on loopback, mutual TLS, the real bubblewrap."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import types

import ahtest
import test_sandbox  # its hostile agent and visible_dir(); a module import runs none of its tests
from fleettest import SERVE_ID, Executor, FleetTestCase, wait_for
from sessiontest import create, wait_status

HERE = os.path.dirname(os.path.abspath(__file__))


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


class ExecutorConfig(FleetTestCase):
    def setUp(self):
        # a directory every sandbox shows unless its profile hides it (not under /tmp)
        self.secret = tempfile.mkdtemp(prefix="ah-execcfg-", dir=test_sandbox.visible_dir())
        self.addCleanup(shutil.rmtree, self.secret, True)
        write(os.path.join(self.secret, "secret.txt"), "executor-secret\n")
        self.dir = tempfile.mkdtemp(prefix="ah-execcfg-", dir=self.tmp)

    def identity(self, ap):
        return ["--remote-server", "quic://127.0.0.1:%d" % ap.quic_port, "--identity", "files",
                "--cert-file", self.c("a.pem"), "--key-file", self.c("a.key"),
                "--ca-file", self.c("ca.pem"), "--expected-server-id", SERVE_ID,
                "--heartbeat-interval", "0.2"]

    def test_custom_agent_profile_and_agent_env_of_the_executor(self):
        # the access point knows the profile's name (tasks are checked there) but neither the
        # agent nor what the executor's profile hides, and runs nothing itself
        ap_cfg = write(os.path.join(self.dir, "ap.toml"),
                       "[sandbox.sealed]\nread-only = [%s]\n" % json.dumps(HERE))
        ap = self.start_access_point(extra=["--max-concurrent-tasks", "0", "--config", ap_cfg])
        self.addCleanup(ap.kill_sessions)
        self.addCleanup(ap.close)
        actions = [{"do": "read", "path": os.path.join(self.secret, "secret.txt"),
                    "marker": "executor-secret"},
                   {"do": "env", "names": ["EXEC_CFG_MARK", "EXEC_CFG_HIDDEN"]}]
        body = test_sandbox.hostile(actions, sandbox="sealed")
        # no executor has the agent yet: unknown here
        r = ap.post("/api/v1/tasks", body=body)
        self.assertEqual(r.status, 400, r)
        self.assertIn("unknown agent type hostile", json.dumps(r.json()))

        ex_cfg = write(os.path.join(self.dir, "executor.toml"),
                       "[agents.hostile]\ncommand = %s\nformat = \"text\"\n"
                       "[sandbox.default]\nread-only = [%s]\n"
                       "[sandbox.sealed]\nread-only = [%s]\nhidden = [%s]\n"
                       % (json.dumps(test_sandbox.AGENT), json.dumps(HERE), json.dumps(HERE),
                          json.dumps(self.secret)))
        data = os.path.join(self.dir, "data")
        run = os.path.join(self.dir, "run")
        os.makedirs(run, mode=0o700)
        ex = Executor(self.tmp, self.identity(ap) + [
            "--config", ex_cfg, "--agent-env", "EXEC_CFG_MARK", "--data-dir", data],
            env={"EXEC_CFG_MARK": "from-the-executor", "EXEC_CFG_HIDDEN": "not-passed",
                 "XDG_RUNTIME_DIR": run})
        # recorders and agents outlive their executor by design: none is left behind
        self.addCleanup(ahtest.Server.kill_sessions, types.SimpleNamespace(tmp=self.dir))
        self.addCleanup(ex.stop, signal.SIGKILL)
        # its Hello lists the custom agent: the fleet view shows it, placement may use it
        info = wait_for("the executor online with its agents", lambda: (
            lambda r: r.json() if r.status == 200 and r.json()["health"] == "online" else None)(
            ap.get("/api/v1/executors/a")), timeout=60)
        self.assertIn("hostile", json.dumps(info), info)

        sid = create(ap, body)["id"]
        s = wait_status(ap, sid, {"completed", "failed", "stopped"}, 90)
        self.assertEqual(s["status"], "completed", (s, ex.text()))
        self.assertIn("launching on executor", ap.stderr())
        self.assertIn("session %s: launching" % sid, ex.text())
        # the executor's definition of the profile applied: the path it hides is unreadable
        r = test_sandbox.result(ap, sid, "read", os.path.join(self.secret, "secret.txt"))
        self.assertTrue(r[2] == "denied" or r[3].endswith("-"), r)
        # --agent-env passed the variable it names, and only that one
        env = json.loads(test_sandbox.result(ap, sid, "env")[3])
        self.assertEqual(env, {"EXEC_CFG_MARK": "from-the-executor", "EXEC_CFG_HIDDEN": None})

        # the contrast: the executor's default profile does not hide it
        sid2 = create(ap, test_sandbox.hostile(actions))["id"]
        s = wait_status(ap, sid2, {"completed", "failed", "stopped"}, 90)
        self.assertEqual(s["status"], "completed", (s, ex.text()))
        r = test_sandbox.result(ap, sid2, "read", os.path.join(self.secret, "secret.txt"))
        self.assertEqual(r[2:], ["ok", "16 marker"], r)

    def test_rest_api_executor_reports_the_custom_agents_of_its_configuration(self):
        """--rest-api yes: one configuration (and one agent detection) for its API and for the
        sessions of its access point."""
        ap = self.start_access_point(extra=["--max-concurrent-tasks", "0"])
        self.addCleanup(ap.kill_sessions)
        self.addCleanup(ap.close)
        cfg = write(os.path.join(self.dir, "executor.toml"),
                    "[agents.hostile]\ncommand = %s\nformat = \"text\"\n"
                    % json.dumps(test_sandbox.AGENT))
        data = os.path.join(self.dir, "data")
        ex = ahtest.Server(args=self.identity(ap) + [
            "--rest-api", "yes", "--bind", "127.0.0.1", "--max-concurrent-tasks", "2",
            "--data-dir", data, "--config", cfg], command=("agent", "enroll"), tmpdir=self.dir,
            db=os.path.join(data, "rest-api", "state.db"))
        self.addCleanup(ex.kill_sessions)
        self.addCleanup(ex.close)
        info = wait_for("the executor online", lambda: (
            lambda r: r.json() if r.status == 200 and r.json()["health"] == "online" else None)(
            ap.get("/api/v1/executors/a")), timeout=60)
        self.assertIn("hostile", json.dumps(info), info)
        own = ex.get("/api/v1/agents").json()["items"]
        self.assertIn("hostile", [a["type"] for a in own])
        # the access point places its hostile task here, where the custom agent runs it
        sid = create(ap, test_sandbox.hostile([{"do": "env", "names": ["HOME"]}],
                                              sandbox="default"))["id"]
        s = wait_status(ap, sid, {"completed", "failed", "stopped"}, 90)
        self.assertEqual(s["status"], "completed", (s, ex.stderr()))

    def test_bad_configuration_is_a_clear_error(self):
        ap = self.start_access_point()
        self.addCleanup(ap.close)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env.update(HOME=self.dir, XDG_RUNTIME_DIR=os.path.join(self.dir, "run"))

        def enroll(*extra):
            return subprocess.run([ahtest.AH_BIN, "agent", "enroll"] + self.identity(ap) +
                                  ["--data-dir", os.path.join(self.dir, "data")] + list(extra),
                                  capture_output=True, text=True, timeout=60, env=env,
                                  stdin=subprocess.DEVNULL)
        missing = os.path.join(self.dir, "missing.toml")
        r = enroll("--config", missing)
        self.assertEqual(r.returncode, 8, r.stderr)
        self.assertIn("cannot read config file %s" % missing, r.stderr)
        self.assertNotIn("enrolling", r.stderr)
        bad = write(os.path.join(self.dir, "bad.toml"), "[agents.x]\nformat = \"text\"\n")
        r = enroll("--config", bad)
        self.assertEqual(r.returncode, 8, r.stderr)
        self.assertIn("agents.x has no command", r.stderr)
        unknown = write(os.path.join(self.dir, "unknown.toml"), "no-such-setting = 1\n")
        r = enroll("--config", unknown)
        self.assertEqual(r.returncode, 8, r.stderr)
        self.assertIn("unknown setting 'no-such-setting'", r.stderr)
        # a bad session setting, as for an access point
        r = enroll("--stop-grace-ms", "x")
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn("stop-grace-ms", r.stderr)
        # the REST API's own settings still need --rest-api yes
        r = enroll("--tls-cert", missing)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--tls-cert is a setting of the REST API: it needs --rest-api yes",
                      r.stderr)
        self.assertEqual(ap.get("/api/v1/executors/a").status, 404)


if __name__ == "__main__":
    ahtest.main()
