"""Issue 5: the `ah` client commands (`ah task create`, `ah session …`) as a user runs them: the
real binary as a subprocess against a real access point on a loopback port, checking what they
print, what the server ends up with, and the exit codes of CLI-and-enrollment.md §7.2
(0 ok, 1 general, 2 usage, 3 agent launch, 4 auth, 5 network, 6 resource, 7 validation,
8 configuration; 130 for a followed session that was stopped, cancelled or interrupted)."""

import http.server
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import ahtest
from ahtest import AH_BIN, SANITIZER_MARKERS, ServerTest, free_port
from sessiontest import TERMINAL, events, session, wait_for, wait_status

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")

OK_STEPS = [{"thought": "plan the change"},
            {"tool": "grep", "args": {"q": "needle"}, "output": "1 hit", "ms": 10},
            {"edit": "src/a.txt", "content": "one\ntwo\n"},
            {"log": "all finished", "level": "info"}]
FAIL_STEPS = [{"log": "about to break"}, {"fail": "the frobnicator broke"}]
SLEEP_STEPS = [{"log": "sleeping"}, {"sleep": 60000}, {"log": "woke up"}]


class CliMixin:
    """Runs `ah` as a user would: no AH_* variables from the test's environment, its own HOME
    and config directory, stdout a pipe (so no colours)."""

    def cli_env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env.pop("NO_COLOR", None)
        env["HOME"] = self.cli_home
        env["XDG_CONFIG_HOME"] = os.path.join(self.cli_home, "config")
        env.update(extra or {})
        return env

    def ah(self, *args, input=None, env=None, server=True, timeout=90, stdin=None):
        cmd = [AH_BIN] + list(args)
        if server:
            cmd += ["--remote-server", "http://127.0.0.1:%d" % self.server.port]
        p = subprocess.run(cmd, input=input, stdin=stdin, capture_output=True, timeout=timeout,
                           env=self.cli_env(env))
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        for marker in SANITIZER_MARKERS:
            self.assertNotIn(marker, err, "sanitizer report from %s:\n%s" % (args, err))
        return p.returncode, out, err

    def scenario_file(self, steps):
        fd, path = tempfile.mkstemp(suffix=".json", dir=self.cli_home)
        with os.fdopen(fd, "w") as f:
            json.dump(steps, f)
        return path

    def create(self, steps, prompt="cli test", *extra):
        rc, out, err = self.ah("task", "create", "--prompt", prompt, "--scenario",
                               self.scenario_file(steps), *extra)
        self.assertEqual(rc, 0, err)
        ids = out.split()
        self.assertTrue(ids and all(ULID.match(i) for i in ids), out)
        return ids[0] if len(ids) == 1 else ids


class CliTest(CliMixin, ServerTest):
    @classmethod
    def setUpClass(cls):
        cls.cli_home = tempfile.mkdtemp(prefix="ah-cli-home-")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.cli_home, ignore_errors=True)


class TaskCreate(CliTest):
    def test_follow_success_shows_progress_and_exits_0(self):
        rc, out, err = self.ah("task", "create", "--prompt", "make a.txt", "--agent", "scripted",
                               "--scenario", self.scenario_file(OK_STEPS), "--follow")
        self.assertEqual(rc, 0, out + err)
        lines = out.splitlines()
        sid = lines[0]
        self.assertRegex(sid, ULID)
        body = "\n".join(lines[1:])
        # the progress display: each step of the scenario, in order, as readable lines
        for needle in ("running", "plan the change", "grep", "1 hit", "src/a.txt",
                       "all finished", "completed"):
            self.assertIn(needle, body)
        self.assertLess(body.index("plan the change"), body.index("src/a.txt"))
        self.assertLess(body.index("all finished"), body.rindex("completed"))
        self.assertRegex(body, r"\d\d:\d\d:\d\d +status +running")
        # a running tool's progress shows its last line, not an argument-less tool line (D26)
        self.assertRegex(body, r"tool +grep … 1 hit")
        self.assertIn("1 file changed, +2 -0", body)
        self.assertNotIn("\033[", out)  # not a terminal: no colours
        self.assertEqual(err, "")
        s = session(self.server, sid)
        self.assertEqual(s["status"], "completed")
        self.assertEqual(s["prompt"], "make a.txt")
        self.assertEqual(s["agent"]["settings"]["scenario"], OK_STEPS)

    def test_follow_failure_exits_1_with_the_error(self):
        rc, out, err = self.ah("task", "create", "--prompt", "break it", "--scenario",
                               self.scenario_file(FAIL_STEPS), "--follow")
        self.assertEqual(rc, 1, out + err)
        sid = out.splitlines()[0]
        self.assertIn("about to break", out)
        self.assertRegex(out, r"status +failed: the frobnicator broke \(exit code 1\)")
        self.assertIn("session %s failed: the frobnicator broke" % sid, err)
        self.assertEqual(session(self.server, sid)["status"], "failed")

    def test_follow_several_sessions_exits_non_zero_when_one_fails(self):
        ok, bad = self.scenario_file(OK_STEPS), self.scenario_file(FAIL_STEPS)
        rc, out, err = self.ah("task", "create", "--prompt", "fan out", "--agent", "scripted",
                               "--count", "2", "--scenario", ok, "--agent", "scripted",
                               "--scenario", bad, "--follow")
        self.assertEqual(rc, 1, out + err)
        ids = out.splitlines()[:3]
        self.assertTrue(all(ULID.match(i) for i in ids), out)
        self.assertEqual(len(set(ids)), 3)
        for sid in ids:
            self.assertIn(session(self.server, sid)["status"], TERMINAL)
            self.assertIn(sid[-8:] + " ", out)  # lines say which session they are about
        self.assertEqual([session(self.server, i)["status"] for i in ids],
                         ["completed", "completed", "failed"])
        self.assertIn("session %s failed" % ids[2], err)

        rc, out, err = self.ah("task", "create", "--prompt", "fan out", "--count", "2",
                               "--scenario", ok, "--follow")
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(len(re.findall(r"(?m)^[0-9A-Z]{8} completed [0-9A-Z]{26}", out)), 2, out)

    def test_follow_interrupted_exits_130_and_leaves_the_session_running(self):
        cmd = [AH_BIN, "task", "create", "--prompt", "long", "--scenario",
               self.scenario_file(SLEEP_STEPS), "--follow", "--remote-server",
               "http://127.0.0.1:%d" % self.server.port]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=self.cli_env())
        try:
            sid = p.stdout.readline().decode().strip()
            self.assertRegex(sid, ULID)
            # the follower printed the first log line: it is inside its stream, with Ctrl-C
            # handled, not still starting up
            first = b""
            while b"sleeping" not in first:
                line = p.stdout.readline()
                if not line:
                    self.fail("the follower ended early: %r" % p.stderr.read())
                first += line
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
            out = first + out
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 130, err)
        self.assertIn(b"goes on on the server", err)
        self.assertIn(b"sleeping", out)
        self.assertEqual(session(self.server, sid)["status"], "running")
        self.assertEqual(self.ah("session", "rm", sid)[0], 0)

    def test_prompt_from_file_stdin_dash_and_words(self):
        path = os.path.join(self.cli_home, "prompt.txt")
        with open(path, "w") as f:
            f.write("prompt from a file\nsecond line\n")
        steps = self.scenario_file([{"log": "x"}])
        cases = [
            (("--prompt-file", path), None, "prompt from a file\nsecond line"),
            ((), b"prompt from stdin\n", "prompt from stdin"),
            (("-",), b"prompt via dash", "prompt via dash"),
            (("--prompt-file", "-"), b"prompt via file dash\n", "prompt via file dash"),
            (("fix", "the", "bug"), None, "fix the bug"),
        ]
        for args, data, expected in cases:
            rc, out, err = self.ah("task", "create", "--scenario", steps, *args,
                                   input=data if data is not None else b"")
            self.assertEqual(rc, 0, (args, err))
            sid = out.strip()
            self.assertEqual(session(self.server, sid)["prompt"], expected, args)

    def test_json_output_is_the_servers_answer(self):
        rc, out, err = self.ah("task", "create", "--prompt", "json please", "--count", "2",
                               "--scenario", self.scenario_file([{"log": "j"}]), "--json")
        self.assertEqual(rc, 0, err)
        answer = json.loads(out)
        self.assertEqual(len(answer["session_ids"]), 2)
        self.assertEqual(answer["id"], answer["session_ids"][0])
        self.assertEqual(answer["status"], "queued")

        rc, out, err = self.ah("task", "create", "--prompt", "json follow", "--scenario",
                               self.scenario_file(OK_STEPS), "--json", "--follow")
        self.assertEqual(rc, 0, err)
        lines = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(lines[0]["session_ids"], [lines[0]["id"]])
        evs = lines[1:]
        self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)))
        self.assertEqual(evs[-1]["type"], "status")
        self.assertEqual(evs[-1]["status"], "completed")
        self.assertIn("thought", [e["type"] for e in evs])

    def test_task_fields_reach_the_server(self):
        repo = os.path.join(self.cli_home, "repo")
        os.makedirs(repo, exist_ok=True)
        subprocess.run(["git", "init", "-q", repo], check=True)
        rc, out, err = self.ah("task", "--prompt", "fields", "--repo", os.path.relpath(repo),
                               "--branch", "main", "--labels", "team=core,prio=high", "--labels",
                               "x=y", "--project", "proj-1", "--delivery", "branch",
                               "--target-branch", "release", "--agent", "scripted@latest",
                               "--scenario", self.scenario_file([{"sleep": 60000}]))
        self.assertEqual(rc, 0, err)
        s = session(self.server, out.strip())
        self.assertEqual(s["repo"]["url"], os.path.realpath(repo))
        self.assertEqual(s["repo"]["branch"], "main")
        self.assertEqual(s["labels"], {"team": "core", "prio": "high", "x": "y"})
        self.assertEqual(s["projectId"], "proj-1")
        self.assertEqual(s["delivery"], {"mode": "branch", "targetBranch": "release",
                                         "status": "pending"})  # nothing delivered yet
        self.assertEqual(s["agent"]["type"], "scripted")
        self.ah("session", "rm", s["id"])

    def test_sandbox_profile_reaches_the_server(self):
        # --sandbox PROFILE is runtime.sandbox (D52); `local` is the server's default profile
        steps = self.scenario_file([{"log": "inside"}])
        rc, out, err = self.ah("task", "--prompt", "sandboxed", "--sandbox", "offline",
                               "--scenario", steps)
        self.assertEqual(rc, 0, err)
        s = wait_status(self.server, out.strip(), TERMINAL, 60)
        self.assertEqual(s["runtime"]["sandbox"], "offline")
        self.assertEqual(s["sandbox"]["network"], "none")
        self.assertEqual(s["status"], "completed", s)
        rc, out, err = self.ah("task", "--prompt", "default one", "--sandbox", "local",
                               "--scenario", steps)
        self.assertEqual(rc, 0, err)
        self.assertEqual(session(self.server, out.strip())["runtime"]["sandbox"], "default")
        # what the server cannot provide is refused with its reason, before any session exists
        for args, reason in ((("--sandbox", "nope"), "unknown sandbox profile nope"),
                             (("--sandbox", "disabled"), "allow-disabled"),
                             (("--devcontainer", "/etc/devcontainer.json"),
                              "runtime.devcontainerPath")):
            rc, out, err = self.ah("task", "--prompt", "x", *args)
            self.assertEqual(rc, 7, err)
            self.assertEqual(out, "")
            self.assertIn(reason, err)

    def test_validation_error_exits_7_naming_the_field(self):
        rc, out, err = self.ah("task", "create", "--prompt", "x", "--agent", "no-such-agent")
        self.assertEqual(rc, 7, err)
        self.assertEqual(out, "")
        self.assertIn("agents[0].type", err)
        self.assertIn("no-such-agent", err)
        self.assertRegex(err, r"HTTP 400, request [0-9A-Z]{26}")

        rc, out, err = self.ah("task", "create", "--prompt", "")
        self.assertEqual(rc, 7, err)
        self.assertIn("prompt", err)
        # every line is a one-line message of the command
        self.assertTrue(all(l.startswith("ah task create: ") for l in err.splitlines()), err)

    def test_missing_agent_binary_is_exit_3(self):
        if shutil.which("codex", path="/usr/bin:/bin"):
            self.skipTest("a real codex is installed")
        server = ahtest.Server(env={"PATH": "/usr/bin:/bin"})
        try:
            rc, out, err = self.ah("task", "create", "--prompt", "x", "--agent", "codex",
                                   "--follow", "--remote-server",
                                   "http://127.0.0.1:%d" % server.port, server=False)
            self.assertEqual(rc, 3, out + err)
            self.assertIn("not found", err)
            self.assertIn("exit code 127", err)
        finally:
            server.close()

    def test_follow_on_a_terminal_colours_and_aligns_continuation_lines(self):
        """On a terminal the output is coloured; with several sessions each line starts with
        the id's tail, and a multi-line text continues under its first line (the colour codes
        take no columns)."""
        import pty
        master, slave = pty.openpty()
        cmd = [AH_BIN, "task", "create", "--prompt", "x", "--count", "2", "--scenario",
               self.scenario_file([{"thought": "first line\nsecond line"}]), "--follow",
               "--remote-server", "http://127.0.0.1:%d" % self.server.port]
        p = subprocess.Popen(cmd, stdout=slave, stderr=subprocess.PIPE, env=self.cli_env())
        os.close(slave)
        raw = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not chunk:
                break
            raw += chunk
        os.close(master)
        self.assertEqual(p.wait(timeout=60), 0, p.stderr.read())
        p.stderr.close()
        text = raw.decode("utf-8", "replace")
        self.assertIn("\x1b[", text)  # coloured
        lines = re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r\n", "\n").split("\n")
        firsts = [i for i, l in enumerate(lines) if l.endswith("first line")]
        self.assertEqual(len(firsts), 2, lines)
        for i in firsts:
            self.assertRegex(lines[i], r"^[0-9A-Z]{8} \d\d:\d\d:\d\d ")
            column = lines[i].index("first line")
            self.assertEqual(lines[i + 1], " " * column + "second line", lines)

    def test_missing_branch_is_a_failure_not_exit_3(self):
        # "not found" in a provisioning error is not a missing agent binary (exit 3 is only
        # for the agent's exit code 127)
        repo = os.path.join(self.cli_home, "repo-one-commit")
        git = ["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True)
        subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "one"], check=True)
        rc, out, err = self.ah("task", "create", "--prompt", "x", "--repo", repo, "--branch",
                               "nosuch", "--scenario", self.scenario_file(OK_STEPS), "--follow")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("not found", err)
        self.assertEqual(session(self.server, out.splitlines()[0])["status"], "failed")

    def test_usage_errors_exit_2(self):
        scenario = self.scenario_file([{"log": "x"}])
        cases = [
            ("task", "create", "--prompt", "x", "--frobnicate"),
            ("task", "create", "--prompt", "x", "--instances", "0"),
            ("task", "create", "--prompt", "x", "--count", "many"),
            ("task", "create", "--prompt", "x", "--labels", "novalue"),
            ("task", "create", "--prompt", "x", "--delivery", "carrier-pigeon"),
            ("task", "create", "--prompt", "x", "--prompt-file", scenario),
            ("task", "create", "--prompt", "x", "--branch", "main"),
            ("task", "create", "--prompt", "x", "--agent", "codex", "--scenario", scenario),
            ("task", "create", "--prompt", "x", "--scenario", "/nonexistent/steps.json"),
            ("task", "create", "--prompt"),
            ("task", "create", "--prompt", "x", "--sandbox", "offline", "--devcontainer", "dc"),
            ("task", "create", "--prompt", "x", "--sandbox", ""),
            ("session", "show"),
            ("session", "show", "a", "b"),
            ("session", "list", "--limit", "0"),
            ("session", "list", "--tail", "3"),
            ("session", "events", "X", "--tail", "-1"),
            ("session", "prompt", "X"),
            ("session", "list", "--client-key", "/dev/null"),
            ("session", "list", "--log-level", "loud"),
        ]
        for args in cases:
            rc, out, err = self.ah(*args)
            self.assertEqual(rc, 2, (args, out, err))
            self.assertEqual(len(err.splitlines()), 1, (args, err))
            self.assertTrue(err.startswith("ah %s %s: " % (args[0], args[1])), (args, err))
        # no prompt at all, and a terminal on stdin to type one into: usage, not a hang
        master, slave = os.openpty()
        try:
            rc, out, err = self.ah("task", "create", stdin=slave)
        finally:
            os.close(master)
            os.close(slave)
        self.assertEqual(rc, 2, err)
        self.assertIn("no prompt", err)


class Sessions(CliTest):
    def test_list_table_filters_and_json(self):
        ok = self.create([{"log": "fine"}], "list me: the good one")
        bad = self.create(FAIL_STEPS, "list me: the bad one\nwith a second line")
        wait_status(self.server, ok, "completed")
        wait_status(self.server, bad, "failed")
        rc, out, err = self.ah("session", "list")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "STATUS", "AGENT", "AGE", "PROMPT"])
        rows = {l.split()[0]: l for l in lines[1:] if ULID.match(l.split()[0])}
        self.assertIn("completed", rows[ok].split())
        self.assertIn("failed", rows[bad].split())
        self.assertIn("scripted", rows[ok].split())
        self.assertRegex(rows[bad], r"list me: the bad one …$")  # first line only
        self.assertLess(lines.index(rows[bad]), lines.index(rows[ok]))  # newest first

        rc, out, err = self.ah("session", "list", "--status", "failed")
        self.assertEqual(rc, 0, err)
        self.assertIn(bad, out)
        self.assertNotIn(ok, out)

        rc, out, err = self.ah("session", "list", "--limit", "1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len([l for l in out.splitlines() if ULID.match(l.split()[0])]), 1)
        self.assertIn("--page 2 for more", out)

        rc, out, err = self.ah("session", "list", "--limit", "1", "--page", "2", "--json")
        self.assertEqual(rc, 0, err)
        page = json.loads(out)
        self.assertEqual(page["page"], 2)
        self.assertEqual(page["perPage"], 1)
        self.assertEqual(len(page["items"]), 1)

        rc, out, err = self.ah("session", "list", "--agent", "nobody-runs-this", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["items"], [])

    def test_show(self):
        sid = self.create(FAIL_STEPS, "show me")
        wait_status(self.server, sid, "failed")
        rc, out, err = self.ah("session", "show", sid)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^Session +%s$" % sid)
        self.assertRegex(out, r"(?m)^Status +failed: the frobnicator broke \(exit code 1\)$")
        self.assertRegex(out, r"(?m)^Agent +scripted@latest$")
        self.assertRegex(out, r"(?m)^Prompt +show me$")
        self.assertRegex(out, r"(?m)^Created +\d{4}-\d\d-\d\dT")
        rc, out, err = self.ah("session", "show", sid, "--json")
        self.assertEqual(rc, 0, err)
        s = json.loads(out)
        self.assertEqual(s["id"], sid)
        self.assertEqual(s["error"], "the frobnicator broke")
        rc, out2, err = self.ah("session", "get", sid, "--json")  # CLI.md's spelling
        self.assertEqual(json.loads(out2)["id"], sid)

    def test_events_history_types_and_tail(self):
        sid = self.create(OK_STEPS)
        wait_status(self.server, sid, "completed")
        all_events = events(self.server, sid)
        rc, out, err = self.ah("session", "events", sid)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.splitlines()), len(all_events))
        self.assertRegex(out.splitlines()[0], r"status +queued$")
        self.assertRegex(out.splitlines()[-1], r"status +completed")

        rc, out, err = self.ah("session", "events", sid, "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual([json.loads(l) for l in out.splitlines()], all_events)

        rc, out, err = self.ah("session", "events", sid, "--type", "thought,file_edit", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted({json.loads(l)["type"] for l in out.splitlines()}),
                         ["file_edit", "thought"])

        rc, out, err = self.ah("session", "events", sid, "--tail", "2", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual([json.loads(l) for l in out.splitlines()], all_events[-2:])

        rc, out, err = self.ah("session", "events", sid, "--tail", "1000")
        self.assertEqual(len(out.splitlines()), len(all_events))

    def test_events_follow_live(self):
        sid = self.create([{"log": "before"}, {"sleep": 1500}, {"log": "after the nap"}])
        rc, out, err = self.ah("session", "events", sid, "--follow")
        self.assertEqual(rc, 0, err)
        self.assertIn("before", out)
        self.assertIn("after the nap", out)
        self.assertRegex(out, r"status +completed")
        self.assertEqual(session(self.server, sid)["status"], "completed")

        rc, out, err = self.ah("session", "events", sid, "--follow", "--json", "--type", "log")
        self.assertEqual(rc, 0, err)
        self.assertEqual([json.loads(l)["message"] for l in out.splitlines()],
                         ["before", "after the nap"])

        bad = self.create(FAIL_STEPS)
        wait_status(self.server, bad, "failed")
        rc, out, err = self.ah("session", "events", bad, "--follow", "--tail", "1")
        self.assertEqual(rc, 1, err)
        self.assertEqual(len([l for l in out.splitlines() if "status" in l]), 1, out)
        self.assertIn("failed", out)

    def test_logs(self):
        sid = self.create([{"log": "line one"}, {"log": "line two", "level": "warn"},
                           {"sleep": 3000}, {"log": "line three"}])
        wait_for(lambda: len([e for e in events(self.server, sid) if e["type"] == "log"]) >= 2,
                 20, "two log lines")
        rc, out, err = self.ah("session", "logs", sid)
        self.assertEqual(rc, 0, err)
        self.assertIn("line one", out)
        self.assertRegex(out, r"\[warn\] line two")
        self.assertNotIn("status", out)
        rc, out, err = self.ah("session", "logs", sid, "--tail", "1", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual([json.loads(l)["message"] for l in out.splitlines()], ["line two"])
        rc, out, err = self.ah("session", "logs", sid, "-f")
        self.assertEqual(rc, 0, err)
        lines = [l for l in out.splitlines() if "line" in l]
        self.assertEqual(len(lines), 3, out)  # nothing repeated between history and stream
        self.assertIn("line three", lines[2])
        self.assertEqual(session(self.server, sid)["status"], "completed")

    def test_pause_resume_stop(self):
        sid = self.create(SLEEP_STEPS)
        wait_status(self.server, sid, "running")
        rc, out, err = self.ah("session", "pause", sid)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^%s (pausing|paused)\n$" % sid)
        wait_status(self.server, sid, "paused")

        rc, out, err = self.ah("session", "resume", sid, "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["id"], sid)
        self.assertIn(json.loads(out)["status"], ("resuming", "running"))
        wait_status(self.server, sid, "running")

        rc, out, err = self.ah("session", "stop", sid, "--reason", "enough of that")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^%s (stopping|stopped)\n$" % sid)
        wait_status(self.server, sid, "stopped")

        # illegal transition: 409 → exit 1, naming the state
        rc, out, err = self.ah("session", "pause", sid)
        self.assertEqual(rc, 1, err)
        self.assertIn("stopped", err)
        self.assertIn("HTTP 409", err)

        # following a stopped session ends at once with the stop's exit code
        rc, out, err = self.ah("session", "events", sid, "--follow")
        self.assertEqual(rc, 130, err)
        self.assertIn("stopped", err)

    def test_rm_and_purge(self):
        a = self.create(SLEEP_STEPS)
        b = self.create(SLEEP_STEPS)
        wait_status(self.server, a, "running")
        rc, out, err = self.ah("session", "rm", a)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "%s cancelled\n" % a)
        self.assertEqual(session(self.server, a)["status"], "cancelled")

        rc, out, err = self.ah("session", "rm", b, "--purge", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"id": b, "purged": True})
        self.assertEqual(self.server.get("/api/v1/sessions/" + b).status, 404)
        rc, out, err = self.ah("session", "show", b)
        self.assertEqual(rc, 1)
        self.assertIn(b, err)

    def test_prompt(self):
        sid = self.create([{"wait_prompt": True}, {"wait_prompt": True}, {"log": "done"}])
        wait_status(self.server, sid, "running")
        rc, out, err = self.ah("session", "prompt", sid, "hello", "there")
        self.assertEqual(rc, 0, err)
        self.assertIn(sid, out)
        wait_for(lambda: any("hello there" in (e.get("message") or "")
                             for e in events(self.server, sid)), 20, "the first prompt")
        rc, out, err = self.ah("session", "prompt", sid, "-", "--json", input=b"from stdin\n")
        self.assertEqual(rc, 0, err)
        ack = json.loads(out)
        self.assertEqual(ack["sessionId"], sid)
        self.assertTrue(ack["accepted"])
        wait_status(self.server, sid, "completed")
        messages = [e.get("message") for e in events(self.server, sid, type="log")]
        self.assertTrue(any("from stdin" in (m or "") for m in messages), messages)
        # a finished session takes no more input
        rc, out, err = self.ah("session", "prompt", sid, "too late")
        self.assertEqual(rc, 1, err)
        self.assertIn(sid, err)

    def test_unknown_session_is_a_clear_error(self):
        ghost = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
        for args in (("show",), ("events",), ("events", "--follow"), ("logs",), ("pause",),
                     ("resume",), ("stop",), ("rm",), ("prompt", "hi")):
            rc, out, err = self.ah("session", args[0], ghost, *args[1:])
            self.assertEqual(rc, 1, (args, err))
            self.assertEqual(out, "")
            self.assertIn(ghost, err)
            self.assertRegex(err, r"HTTP 404, request [0-9A-Z]{26}")
            self.assertEqual(len(err.splitlines()), 1, err)


class Connection(CliTest):
    def test_unreachable_server_exits_5(self):
        port = free_port()
        for args in (("session", "list"), ("task", "create", "--prompt", "x")):
            rc, out, err = self.ah(*args, "--remote-server", "http://127.0.0.1:%d" % port,
                                   server=False)
            self.assertEqual(rc, 5, err)
            self.assertIn("cannot reach http://127.0.0.1:%d" % port, err)
            self.assertEqual(len(err.splitlines()), 1, err)

    def test_missing_or_bad_server_exits_8(self):
        rc, out, err = self.ah("session", "list", server=False)
        self.assertEqual(rc, 8)
        self.assertIn("no server: use --remote-server URL or set AH_REMOTE_SERVER", err)
        rc, out, err = self.ah("task", "create", "--prompt", "x", server=False)
        self.assertEqual(rc, 8)
        rc, out, err = self.ah("session", "list", "--remote-server", "ftp://127.0.0.1/",
                               server=False)
        self.assertEqual(rc, 8, err)
        rc, out, err = self.ah("session", "list", "--remote-server", "nosuchname", server=False)
        self.assertEqual(rc, 8, err)
        self.assertIn("nosuchname", err)
        rc, out, err = self.ah("session", "list", "--ca-file", "/nonexistent/ca.pem")
        self.assertEqual(rc, 8, err)
        self.assertIn("/nonexistent/ca.pem", err)
        rc, out, err = self.ah("session", "list", "--config", "/nonexistent/ah.toml",
                               "--remote-server", "prod", server=False)
        self.assertEqual(rc, 8, err)

    def test_server_from_environment_and_config(self):
        url = "http://127.0.0.1:%d" % self.server.port
        rc, out, err = self.ah("session", "list", "--json", server=False,
                               env={"AH_REMOTE_SERVER": url})
        self.assertEqual(rc, 0, err)
        self.assertIn("items", json.loads(out))
        # the flag wins over the environment
        rc, out, err = self.ah("session", "list", server=True,
                               env={"AH_REMOTE_SERVER": "http://127.0.0.1:%d" % free_port()})
        self.assertEqual(rc, 0, err)

        cfg = os.path.join(self.cli_home, "servers.toml")
        with open(cfg, "w") as f:
            f.write("# servers\nport = 1\n\n[[server]]\nname = \"elsewhere\"\n"
                    "url = \"http://127.0.0.1:%d\"\n\n[[server]]\nname = 'here'\nurl = '%s'\n"
                    % (free_port(), url))
        rc, out, err = self.ah("session", "list", "--config", cfg, "--remote-server", "here",
                               "--json", server=False)
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ah("session", "list", "--config", cfg, "--remote-server",
                               "elsewhere", server=False)
        self.assertEqual(rc, 5, err)  # found, and it is that (unreachable) one
        rc, out, err = self.ah("session", "list", "--json", server=False,
                               env={"AH_CONFIG": cfg, "AH_REMOTE_SERVER": "here"})
        self.assertEqual(rc, 0, err)

        # the default config file's remote-server key, the lowest layer
        os.makedirs(os.path.join(self.cli_home, "config", "agent-harbor"), exist_ok=True)
        default = os.path.join(self.cli_home, "config", "agent-harbor", "config.toml")
        with open(default, "w") as f:
            f.write("remote-server = \"here\"\n[[server]]\nname = \"here\"\nurl = \"%s\"\n" % url)
        try:
            rc, out, err = self.ah("session", "list", "--json", server=False)
            self.assertEqual(rc, 0, err)
        finally:
            os.unlink(default)

        # a config file that does not parse says so, rather than "no such server"
        broken = os.path.join(self.cli_home, "broken.toml")
        with open(broken, "w") as f:
            f.write("[[server]]\nname = \"here\nurl = \"%s\"\n" % url)
        rc, out, err = self.ah("session", "list", "--config", broken, "--remote-server", "here",
                               server=False)
        self.assertEqual(rc, 8, err)
        self.assertTrue(err.startswith("ah session list: %s: " % broken), err)
        self.assertNotIn("neither a server URL", err)

    def test_help_documents_exit_codes(self):
        rc, out, err = self.ah("--help", server=False)
        self.assertEqual(rc, 0)
        for cmd in ("task create", "session list", "session events", "session prompt"):
            self.assertIn(cmd, out)
        self.assertIn("7 validation", out)
        self.assertIn("130", out)
        for args in (("help", "task", "create"), ("task", "create", "--help"),
                     ("help", "session", "list"), ("session", "show", "--help"),
                     ("session", "events", "-h"), ("session", "logs", "--help"),
                     ("session", "pause", "--help"), ("session", "stop", "--help"),
                     ("session", "rm", "--help"), ("session", "prompt", "--help")):
            rc, out, err = self.ah(*args, server=False)
            self.assertEqual(rc, 0, (args, err))
            self.assertTrue(out.startswith("usage: ah "), (args, out))
            self.assertIn("Exit codes", out, args)
            self.assertIn("8 configuration", out, args)


class FakeServer:
    """A few canned answers on a loopback port, and the requests that came in."""

    def __init__(self, status, body, headers=None, tls=None):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.command, self.path, dict(self.headers)))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/problem+json" if status >= 400
                                 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def problem(status, slug, detail):
    return {"type": "/problems/" + slug, "title": slug, "status": status, "detail": detail,
            "requestId": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}


class ServerAnswers(CliMixin, unittest.TestCase):
    """Answers the real server does not give yet (no authentication on loopback, D22): a fake
    one checks the credentials are sent and maps 401/429/503 to their exit codes."""

    @classmethod
    def setUpClass(cls):
        cls.cli_home = tempfile.mkdtemp(prefix="ah-cli-home-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.cli_home, ignore_errors=True)

    def run_against(self, status, slug, env=None, headers=None):
        fake = FakeServer(status, problem(status, slug, "canned %d" % status), headers)
        try:
            rc, out, err = self.ah("session", "list", "--remote-server",
                                   "http://127.0.0.1:%d" % fake.port, server=False, env=env)
        finally:
            fake.close()
        return rc, err, fake.requests

    def test_credentials_and_401(self):
        rc, err, reqs = self.run_against(401, "auth", env={"AH_API_KEY": "ahk_k1_secret"})
        self.assertEqual(rc, 4, err)
        self.assertIn("canned 401", err)
        self.assertIn("01ARZ3NDEKTSV4RRFFQ69G5FAV", err)
        self.assertEqual(reqs[0][2].get("Authorization"), "ApiKey ahk_k1_secret")
        rc, err, reqs = self.run_against(403, "authz", env={"AH_JWT": "jwt.token.here"})
        self.assertEqual(rc, 4, err)
        self.assertEqual(reqs[0][2].get("Authorization"), "Bearer jwt.token.here")
        rc, err, reqs = self.run_against(401, "auth", env={"AH_BEARER": "tok"})
        self.assertEqual(reqs[0][2].get("Authorization"), "Bearer tok")
        rc, err, reqs = self.run_against(401, "auth")
        self.assertIsNone(reqs[0][2].get("Authorization"))

    def test_rate_limit_is_6_and_unavailable_is_5(self):
        rc, err, reqs = self.run_against(429, "rate-limited", headers={"Retry-After": "0"})
        self.assertEqual(rc, 6, err)
        self.assertGreater(len(reqs), 1)  # retried before giving up
        rc, err, reqs = self.run_against(503, "unavailable", headers={"Retry-After": "0"})
        self.assertEqual(rc, 5, err)
        self.assertIn("canned 503", err)


EMPTY_PAGE = {"items": [], "page": 1, "perPage": 20, "total": 0, "nextPage": None}


class Tls(CliMixin, unittest.TestCase):
    """--ca-file, --insecure and --client-cert/--client-key against an HTTPS server with
    certificates made by openssl at test time."""

    @classmethod
    def setUpClass(cls):
        cls.cli_home = tempfile.mkdtemp(prefix="ah-cli-tls-")
        if not shutil.which("openssl"):
            raise unittest.SkipTest("openssl is not installed")
        def make(name, cn, san=None):
            cert, key = (os.path.join(cls.cli_home, name + ext) for ext in (".pem", ".key"))
            cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                   "-subj", "/CN=" + cn, "-keyout", key, "-out", cert]
            if san:
                cmd += ["-addext", "subjectAltName=" + san]
            subprocess.run(cmd, check=True, capture_output=True)
            return cert, key
        cls.server_cert, cls.server_key = make("server", "127.0.0.1", "IP:127.0.0.1")
        cls.client_cert, cls.client_key = make("client", "ah-cli-test")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.cli_home, ignore_errors=True)

    def https(self, require_client_cert=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=self.client_cert)
        fake = FakeServer(200, EMPTY_PAGE, tls=ctx)
        self.addCleanup(fake.close)
        return "https://127.0.0.1:%d" % fake.port

    def test_ca_file_and_insecure(self):
        url = self.https()
        rc, out, err = self.ah("session", "list", "--remote-server", url, server=False)
        self.assertEqual(rc, 5, err)  # an unknown CA: the connection is refused
        self.assertIn(url, err)
        rc, out, err = self.ah("session", "list", "--json", "--remote-server", url, "--ca-file",
                               self.server_cert, server=False)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), EMPTY_PAGE)
        rc, out, err = self.ah("session", "list", "--json", "--remote-server", url, "--insecure",
                               server=False)
        self.assertEqual(rc, 0, err)

    def test_client_certificate(self):
        url = self.https(require_client_cert=True)
        rc, out, err = self.ah("session", "list", "--remote-server", url, "--ca-file",
                               self.server_cert, server=False)
        self.assertEqual(rc, 5, err)  # the server hangs up on a client without a certificate
        rc, out, err = self.ah("session", "list", "--json", "--remote-server", url, "--ca-file",
                               self.server_cert, "--client-cert", self.client_cert,
                               "--client-key", self.client_key, server=False)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), EMPTY_PAGE)


if __name__ == "__main__":
    ahtest.main()
