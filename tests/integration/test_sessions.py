"""Issue 3: tasks become supervised sessions that can be controlled with signals, on the real
binary with the scripted agent (and a CPU-burning custom agent for pause and stop)."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import ahtest
from ahtest import Server, ServerTest
from sessiontest import (FIXTURES, agent_group, burner_config, create, events, iso_ms,
                         processes, session, statuses, task, wait_for, wait_status)


class Lifecycle(ServerTest):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-burn-")
        cls.server_args = ("--config", burner_config(cls.tmp), "--stop-grace-ms", "1500",
                           "--max-concurrent-tasks", "8")
        super().setUpClass()

    def burner(self, stubborn=False):
        stop = os.path.join(self.tmp, "stop-%d" % time.monotonic_ns())
        t = create(self.server, task(agent="burner", prompt=stop + (":stubborn" if stubborn else "")))
        sid = t["id"]
        wait_status(self.server, sid, "running")
        # Its first line, "burning", comes after its `trap '' TERM`: seeing burn.sh in the
        # process list is not enough (under load the stop could beat the trap).
        wait_for(lambda: any(e.get("message") == "burning"
                             for e in events(self.server, sid, type="log")), 30,
                 "the burner's 'burning' line")
        return sid, stop

    def test_fan_out(self):
        body = task([{"log": "a"}])
        body["agents"] = [{"type": "scripted", "count": 2, "settings": {"scenario": [{"log": "x"}]}},
                          {"type": "scripted", "settings": {"scenario": [{"log": "y"}]}}]
        t = create(self.server, body)
        ids = t["session_ids"]
        self.assertEqual(len(ids), 3)
        self.assertEqual(len(set(ids)), 3)
        self.assertEqual(t["id"], ids[0])
        self.assertEqual(t["status"], "queued")
        self.assertEqual(t["links"]["self"], "/api/v1/sessions/" + ids[0])
        self.assertEqual(ids, sorted(ids))  # ULIDs in creation order
        for sid, word in zip(ids, ["x", "x", "y"]):
            s = wait_status(self.server, sid, "completed")
            self.assertEqual(s["taskId"], t["taskId"])
            logs = [e["message"] for e in events(self.server, sid, type="log")]
            self.assertIn(word, logs)

    def test_successful_session(self):
        scenario = [{"thought": "plan"}, {"tool": "grep", "args": {"q": "x"}, "output": "1 hit",
                                          "ms": 30},
                    {"edit": "src/a.txt", "content": "one\ntwo\n"}, {"append": "src/a.txt",
                                                                     "content": "three\n"},
                    {"log": "finished", "level": "info"}]
        sid = create(self.server, task(scenario))["id"]
        s = wait_status(self.server, sid, "completed")
        self.assertEqual(statuses(self.server, sid),
                         ["queued", "provisioning", "running", "completed"])
        self.assertEqual(s["exitCode"], 0)
        self.assertIsNone(s["error"])
        self.assertIsNotNone(s["startedAt"])
        self.assertIsNotNone(s["endedAt"])
        self.assertEqual(s["recent_events"], [])
        self.assertEqual(s["changes"], {"files_changed": 1, "lines_added": 3, "lines_removed": 0})
        evs = events(self.server, sid)
        self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)))
        types = [e["type"] for e in evs]
        for t in ("thought", "tool_use", "tool_result", "file_edit", "log"):
            self.assertIn(t, types)
        use = [e for e in evs if e["type"] == "tool_use"][0]
        result = [e for e in evs if e["type"] == "tool_result"][0]
        self.assertEqual(use["tool_execution_id"], result["tool_execution_id"])
        self.assertRegex(use["tool_execution_id"], r"^tool_exec_[0-9A-Z]{26}$")
        self.assertEqual(use["tool_args"], {"q": "x"})
        self.assertEqual(result["tool_output"], "1 hit")
        edits = [e for e in evs if e["type"] == "file_edit"]
        self.assertTrue(all(e["file_path"] == "src/a.txt" for e in edits), edits)
        self.assertEqual(sum(e["lines_added"] for e in edits), 3)
        with open(os.path.join(s["workspace"]["mountPath"], "src/a.txt")) as f:
            self.assertEqual(f.read(), "one\ntwo\nthree\n")
        # the recording plays with asciinema
        cast = os.path.join(self.server.data_dir, "sessions", sid, "recording.cast")
        p = subprocess.run(["asciinema", "play", "-s", "100", cast], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"thinking: plan", p.stdout)

    def test_failing_session(self):
        sid = create(self.server, task([{"log": "trying"}, {"fail": "the tests do not pass"}]))["id"]
        s = wait_status(self.server, sid, "failed")
        self.assertEqual(statuses(self.server, sid), ["queued", "provisioning", "running", "failed"])
        self.assertEqual(s["error"], "the tests do not pass")
        self.assertEqual(s["exitCode"], 1)
        self.assertNotIn("changes", s)
        sid = create(self.server, task([{"exit": 3}]))["id"]
        s = wait_status(self.server, sid, "failed")
        self.assertEqual(s["exitCode"], 3)
        self.assertIn("3", s["error"])

    def test_pause_resume(self):
        sid, stop = self.burner()
        def cpu():
            return sum(v[2] for v in agent_group(sid).values())
        c0 = cpu()
        wait_for(lambda: cpu() > c0, 20, "the burner to use CPU")
        r = self.server.post("/api/v1/sessions/%s/pause" % sid)
        self.assertEqual((r.status, r.json()), (202, {"status": "paused"}))
        self.assertEqual(session(self.server, sid)["status"], "paused")
        group = wait_for(lambda: (lambda g: g if g and all(v[0] == "T" for v in g.values())
                                  else None)(agent_group(sid)), 20, "every process stopped")
        self.assertGreaterEqual(len(group), 2)  # ah agent start and the burner
        c1 = cpu()
        time.sleep(1.0)
        self.assertEqual(cpu(), c1, "a paused session used CPU")
        # the recorder is not paused: it stays ready to report the agent's end
        rec = [v for v in processes(sid).values() if v[3].split(" ")[1:3] == ["agent", "record"]]
        self.assertEqual(len(rec), 1)
        self.assertNotEqual(rec[0][0], "T")
        r = self.server.post("/api/v1/sessions/%s/resume" % sid)
        self.assertEqual((r.status, r.json()), (202, {"status": "running"}))
        wait_for(lambda: cpu() > c1, 20, "the resumed burner to use CPU")
        self.assertTrue(all(v[0] != "T" for v in agent_group(sid).values()))
        open(stop, "w").close()
        wait_status(self.server, sid, "completed")
        self.assertEqual(statuses(self.server, sid),
                         ["queued", "provisioning", "running", "pausing", "paused", "resuming",
                          "running", "completed"])

    def test_stop_graceful_and_after_grace(self):
        sid = create(self.server, task([{"sleep": 60000}]))["id"]
        wait_status(self.server, sid, "running")
        wait_for(lambda: agent_group(sid), 10, "the agent")
        r = self.server.post("/api/v1/sessions/%s/stop" % sid, body={"reason": "enough"})
        self.assertEqual((r.status, r.json()), (202, {"status": "stopping"}))
        s = wait_status(self.server, sid, "stopped", timeout=30)
        self.assertEqual(s["exitCode"], 143)  # SIGTERM ended it, not the grace's SIGKILL
        self.assertEqual(statuses(self.server, sid)[-2:], ["stopping", "stopped"])
        wait_for(lambda: not processes(sid), 20, "no process left")
        # an agent that ignores SIGTERM is killed when the grace period (1.5 s) is over
        sid, _ = self.burner(stubborn=True)
        r = self.server.post("/api/v1/sessions/%s/stop" % sid)
        self.assertEqual(r.status, 202)
        s = wait_status(self.server, sid, "stopped", timeout=30)
        self.assertEqual(s["exitCode"], 137)
        # it stayed `stopping` for the whole grace: the server's own timestamps say so, however
        # slowly this test ran
        ts = {e["status"]: e["ts"] for e in events(self.server, sid, type="status")}
        self.assertGreaterEqual(iso_ms(ts["stopped"]) - iso_ms(ts["stopping"]), 1400)
        wait_for(lambda: not processes(sid), 20, "no process left")
        # stopping a paused session works too
        sid, _ = self.burner()
        self.assertEqual(self.server.post("/api/v1/sessions/%s/pause" % sid).status, 202)
        self.assertEqual(self.server.post("/api/v1/sessions/%s/stop" % sid).status, 202)
        wait_status(self.server, sid, "stopped", timeout=30)

    def test_delete_kills_at_once(self):
        sid, _ = self.burner()
        ws = session(self.server, sid)["workspace"]["mountPath"]
        self.assertTrue(os.path.isdir(ws))
        r = self.server.request("DELETE", "/api/v1/sessions/" + sid)
        self.assertEqual(r.status, 204)
        self.assertEqual(r.body, b"")
        self.assertEqual(session(self.server, sid)["status"], "cancelled")
        wait_for(lambda: not processes(sid), 20, "every process killed")
        wait_for(lambda: not os.path.exists(ws), 5, "the workspace removed")
        self.assertEqual(statuses(self.server, sid)[-1], "cancelled")
        # purge removes the record and its events
        r = self.server.request("DELETE", "/api/v1/sessions/%s?purge=true" % sid)
        self.assertEqual(r.status, 204)
        self.assertEqual(self.server.get("/api/v1/sessions/" + sid).status, 404)
        self.assertEqual(self.server.get("/api/v1/sessions/%s/events" % sid).status, 404)
        self.assertEqual(self.server.request("DELETE", "/api/v1/sessions/" + sid).status, 404)
        r = self.server.request("DELETE", "/api/v1/sessions/%s?purge=maybe" % sid)
        self.assertProblem(r, 400)

    def test_illegal_transitions(self):
        done = create(self.server, task([{"log": "x"}]))["id"]
        wait_status(self.server, done, "completed")
        for verb in ("pause", "resume", "stop"):
            r = self.server.post("/api/v1/sessions/%s/%s" % (done, verb))
            body = self.assertProblem(r, 409, "conflict")
            self.assertEqual(body["currentStatus"], "completed")
            self.assertIn("completed", body["detail"])
        sid, stop = self.burner()
        body = self.assertProblem(self.server.post("/api/v1/sessions/%s/resume" % sid), 409)
        self.assertEqual(body["currentStatus"], "running")
        self.assertEqual(self.server.post("/api/v1/sessions/%s/pause" % sid).status, 202)
        body = self.assertProblem(self.server.post("/api/v1/sessions/%s/pause" % sid), 409)
        self.assertEqual(body["currentStatus"], "paused")
        self.assertEqual(self.server.post("/api/v1/sessions/%s/resume" % sid).status, 202)
        open(stop, "w").close()
        wait_status(self.server, sid, "completed")
        for verb in ("pause", "resume", "stop"):
            self.assertProblem(self.server.post("/api/v1/sessions/NOPE/" + verb), 404)
            self.assertProblem(self.server.post("/api/v1/sessions/%s/%s" % ("0" * 26, verb)), 404)
        r = self.server.post("/api/v1/sessions/%s/pause" % sid, body=b"[",
                             headers={"Content-Type": "application/json"})
        self.assertProblem(r, 400)

    def test_prompt(self):
        sid = create(self.server, task([{"wait_prompt": True}, {"log": "after the prompt"}]))["id"]
        wait_status(self.server, sid, "running")
        # The agent prints this on its terminal once it reads its input: the recording shows it.
        rec = "/api/v1/sessions/%s/recording" % sid
        wait_for(lambda: "waiting for a prompt".encode() in self.server.get(rec).body, 30,
                 "the agent to wait for a prompt")
        r = self.server.post("/api/v1/sessions/%s/prompt" % sid,
                             body={"prompt": [{"type": "text", "text": "also run lint"}]})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["sessionId"], sid)
        self.assertIs(r.json()["accepted"], True)
        wait_status(self.server, sid, "completed")
        messages = [e["message"] for e in events(self.server, sid, type="log")]
        # The prompt is recorded before the agent can act on it, so the log reads in order
        # (recorded after delivery, a fast agent could finish first and the prompt got 410).
        self.assertLess(messages.index("user: also run lint"),
                        messages.index("received prompt: also run lint"), messages)
        self.assertIn("after the prompt", messages)
        # ended: 410
        body = self.assertProblem(self.server.post("/api/v1/sessions/%s/prompt" % sid,
                                                   body={"message": "late"}), 410, "gone")
        # paused: 409; legacy message works while running
        sid2, stop = self.burner()
        r = self.server.post("/api/v1/sessions/%s/prompt" % sid2, body={"message": "hello"})
        self.assertEqual(r.status, 202)
        self.server.post("/api/v1/sessions/%s/pause" % sid2)
        body = self.assertProblem(self.server.post("/api/v1/sessions/%s/prompt" % sid2,
                                                   body={"prompt": "x"}), 409)
        self.assertEqual(body["currentStatus"], "paused")
        self.server.post("/api/v1/sessions/%s/resume" % sid2)
        # bad bodies
        self.assertProblem(self.server.post("/api/v1/sessions/%s/prompt" % sid2,
                                            body={"prompt": "a", "message": "b"}), 400)
        self.assertProblem(self.server.post("/api/v1/sessions/%s/prompt" % sid2, body={}), 400)
        self.assertProblem(self.server.post("/api/v1/sessions/%s/prompt" % sid2,
                                            body={"prompt": "x", "extra": 1}), 400)
        self.assertProblem(self.server.post("/api/v1/sessions/%s/prompt" % sid2,
                                            body={"prompt": "x" * (16 * 1024 + 1)}), 413)
        self.assertEqual(self.server.post("/api/v1/sessions/%s/prompt" % sid2,
                                          body={"prompt": "x" * (16 * 1024)}).status, 202)
        self.assertProblem(self.server.post("/api/v1/sessions/%s/prompt" % sid2,
                                            body=b"x" * 200000,
                                            headers={"Content-Type": "application/json"}), 413)
        open(stop, "w").close()
        wait_status(self.server, sid2, "completed")
        logs = self.server.get("/api/v1/sessions/%s/logs?tail=2" % sid2).json()
        self.assertEqual(len(logs["items"]), 2)
        self.assertTrue(all(e["type"] == "log" for e in logs["items"]))
        self.assertLess(logs["items"][0]["seq"], logs["items"][1]["seq"])
        self.assertGreaterEqual(logs["total"], 2)
        self.assertProblem(self.server.get("/api/v1/sessions/%s/logs?tail=0" % sid2), 400)
        self.assertProblem(self.server.get("/api/v1/sessions/%s/logs?tail=x" % sid2), 400)

    def test_idempotent_create(self):
        key = "01J9Q0Z4YB6N8W2F3K5M7P9R1T"
        body = task([{"log": "once"}])
        r1 = self.server.post("/api/v1/tasks", body=body, headers={"Idempotency-Key": key})
        self.assertEqual(r1.status, 201)
        self.assertIsNone(r1.header("idempotent-replayed"))
        r2 = self.server.post("/api/v1/tasks", body=body, headers={"Idempotency-Key": key})
        self.assertEqual(r2.status, 201)
        self.assertEqual(r2.header("idempotent-replayed"), "true")
        self.assertEqual(r2.body, r1.body)
        self.assertEqual(r2.header("location"), r1.header("location"))
        other = dict(body, prompt="something else")
        r3 = self.server.post("/api/v1/tasks", body=other, headers={"Idempotency-Key": key})
        self.assertProblem(r3, 422)
        r4 = self.server.post("/api/v1/tasks", body=body, headers={"Idempotency-Key": "nope"})
        self.assertProblem(r4, 400)
        uuid = "123e4567-e89b-12d3-a456-426614174000"
        self.assertEqual(self.server.post("/api/v1/tasks", body=body,
                                          headers={"Idempotency-Key": uuid}).status, 201)
        # only one task was created for the replayed key
        sessions = self.server.get("/api/v1/sessions?perPage=200").json()["items"]
        self.assertEqual(sum(1 for s in sessions if s["id"] == r1.json()["id"]), 1)
        # keys are per tenant
        r5 = self.server.post("/api/v1/tasks", body=body,
                              headers={"Idempotency-Key": key, "X-Tenant-ID": "other"})
        self.assertEqual(r5.status, 201)
        self.assertIsNone(r5.header("idempotent-replayed"))

    def test_filters_and_paging(self):
        ok = create(self.server, task([{"log": "a"}], count=3, projectId="proj-a"))["session_ids"]
        bad = create(self.server, task([{"fail": "x"}], projectId="proj-b"))["session_ids"]
        for sid in ok:
            wait_status(self.server, sid, "completed")
        wait_status(self.server, bad[0], "failed")
        r = self.server.get("/api/v1/sessions?projectId=proj-a&perPage=2")
        body = r.json()
        self.assertEqual(body["total"], 3)
        self.assertEqual(len(body["items"]), 2)
        self.assertEqual(body["nextPage"], 2)
        self.assertEqual([s["id"] for s in body["items"]], sorted(ok, reverse=True)[:2])
        body2 = self.server.get("/api/v1/sessions?projectId=proj-a&perPage=2&page=2").json()
        self.assertEqual([s["id"] for s in body2["items"]], [min(ok)])
        self.assertIsNone(body2["nextPage"])
        body3 = self.server.get("/api/v1/sessions?projectId=proj-a&perPage=2&page=9").json()
        self.assertEqual((body3["items"], body3["total"]), ([], 3))
        asc = self.server.get("/api/v1/sessions?projectId=proj-a&sort=asc").json()["items"]
        self.assertEqual([s["id"] for s in asc], sorted(ok))
        failed = self.server.get("/api/v1/sessions?status=failed&projectId=proj-b").json()
        self.assertEqual([s["id"] for s in failed["items"]], bad)
        self.assertEqual(self.server.get("/api/v1/sessions?agent=burner&projectId=proj-a"
                                         ).json()["total"], 0)
        self.assertEqual(self.server.get("/api/v1/sessions?agent=scripted&projectId=proj-a"
                                         ).json()["total"], 3)
        other = self.server.get("/api/v1/sessions?tenantId=someone-else").json()
        self.assertEqual(other["total"], 0)
        self.assertEqual(self.server.get("/api/v1/sessions/%s" % ok[0],
                                         headers={"X-Tenant-ID": "someone-else"}).status, 404)
        for q in ("status=sleeping", "perPage=0", "perPage=201", "page=0", "page=x", "sort=up",
                  "tenantId=bad%20tenant"):
            self.assertProblem(self.server.get("/api/v1/sessions?" + q), 400)


class Concurrency(ServerTest):
    server_args = ("--max-concurrent-tasks", "2")

    def test_max_concurrent_tasks(self):
        ids = create(self.server, task([{"sleep": 400}], count=10))["session_ids"]
        threads_before = threads(self.server.proc.pid)
        peak, seen_queued = 0, 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            items = self.server.get("/api/v1/sessions?perPage=50").json()["items"]
            states = [s["status"] for s in items if s["id"] in ids]
            active = sum(1 for s in states if s in ("provisioning", "running"))
            peak = max(peak, active)
            seen_queued = max(seen_queued, states.count("queued"))
            self.assertLessEqual(active, 2, states)
            self.assertLessEqual(threads(self.server.proc.pid), threads_before + 1)
            if all(s == "completed" for s in states):
                break
            time.sleep(0.05)
        self.assertEqual(peak, 2)
        self.assertGreaterEqual(seen_queued, 7)
        # admitted in queue order: the provisioning transitions come in id order (two workers
        # then provision in parallel, so startedAt may interleave)
        admitted = [[e["ts"] for e in events(self.server, sid, type="status")
                     if e["status"] == "provisioning"][0] for sid in ids]
        self.assertEqual(admitted, sorted(admitted))


def threads(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"Threads:\s+(\d+)", f.read()).group(1))


class Adapters(ServerTest):
    server_env = {"PATH": os.path.join(FIXTURES, "bin") + ":" + os.environ["PATH"]}

    @classmethod
    def setUpClass(cls):
        # the fake CLIs replay recordings from the checkout's fixtures: readable inside the
        # sandbox even when the checkout lies under /tmp, which is private there (D52)
        cls.cfg_dir = tempfile.mkdtemp(prefix="ah-adapters-")
        cfg = os.path.join(cls.cfg_dir, "config.toml")
        with open(cfg, "w") as f:
            f.write("[sandbox.default]\nread-only = [%s]\n"
                    % json.dumps(os.path.realpath(FIXTURES)))
        cls.server_args = ("--config", cfg)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.cfg_dir, ignore_errors=True)

    def test_claude_code_with_a_fake_cli(self):
        sid = create(self.server, task(agent="claude-code", prompt="fix the token check"))["id"]
        s = wait_status(self.server, sid, ("completed", "failed"))
        self.assertEqual(s["status"], "completed", self.server.stderr()[-2000:])
        evs = events(self.server, sid)
        types = [e["type"] for e in evs]
        for t in ("thought", "tool_use", "tool_result", "file_edit", "log"):
            self.assertIn(t, types)
        tools = [e["tool_name"] for e in evs if e["type"] == "tool_use"]
        self.assertIn("Edit", tools)
        self.assertIn("Bash", tools)
        edit = [e for e in evs if e["type"] == "file_edit"]
        self.assertTrue(any(e["file_path"].endswith("src/auth.c") for e in edit), edit)

    def test_each_adapter_succeeds_and_fails(self):
        for agent in ("codex", "gemini", "opencode", "claude"):
            ok = create(self.server, task(agent=agent, prompt="fix it"))["id"]
            bad = create(self.server, task(agent=agent, prompt="FAIL please"))["id"]
            s = wait_status(self.server, ok, ("completed", "failed"))
            self.assertEqual(s["status"], "completed", (agent, s))
            s = wait_status(self.server, bad, ("completed", "failed"))
            self.assertEqual(s["status"], "failed", (agent, s))
            self.assertTrue(s["error"], s)
            self.assertIn("tool_use", [e["type"] for e in events(self.server, ok)])


class MissingBinary(ServerTest):
    server_env = {"PATH": "/usr/bin:/bin"}

    def test_missing_agent_binary_fails_the_session_only(self):
        sid = create(self.server, task(agent="codex"))["id"]
        s = wait_status(self.server, sid, "failed")
        self.assertIn("codex", s["error"])
        self.assertIn("not found", s["error"])
        self.assertEqual(s["exitCode"], 127)
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)


class Workspaces(ServerTest):
    def test_git_workspace_from_a_local_repository(self):
        repo = os.path.join(tempfile.mkdtemp(prefix="ah-repo-"), "origin")
        def git(*args, cwd=repo):
            subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x"] + list(args),
                           cwd=cwd, check=True, capture_output=True)
        os.makedirs(repo)
        git("init", "-q", "-b", "main")
        with open(os.path.join(repo, "README"), "w") as f:
            f.write("hello\nworld\n")
        git("add", "README")
        git("commit", "-q", "-m", "first")
        git("checkout", "-q", "-b", "feature")
        with open(os.path.join(repo, "FEATURE"), "w") as f:
            f.write("x\n")
        git("add", "FEATURE")
        git("commit", "-q", "-m", "feature")
        body = task([{"edit": "README", "content": "hello\nthere\nworld\n"}],
                    repo={"mode": "git", "url": repo, "branch": "feature"})
        sid = create(self.server, body)["id"]
        s = wait_status(self.server, sid, "completed")
        self.assertEqual(s["workspace"]["snapshotProvider"], "git")
        ws = s["workspace"]["mountPath"]
        self.assertTrue(os.path.exists(os.path.join(ws, "FEATURE")))
        out = subprocess.run(["git", "diff", "--numstat"], cwd=ws, capture_output=True, text=True)
        self.assertEqual(out.stdout.split()[:3], ["1", "0", "README"])
        self.assertEqual(s["changes"], {"files_changed": 1, "lines_added": 1, "lines_removed": 0})
        branch = subprocess.run(["git", "branch", "--show-current"], cwd=ws, capture_output=True,
                                text=True).stdout.strip()
        self.assertEqual(branch, "feature")
        # the copy providers work from the same cache; reflink falls through where unsupported
        body["workspace"] = {"snapshotPreference": ["zfs", "copy"]}
        sid = create(self.server, body)["id"]
        s = wait_status(self.server, sid, "completed")
        self.assertEqual(s["workspace"]["snapshotProvider"], "copy")
        self.assertTrue(os.path.exists(os.path.join(s["workspace"]["mountPath"], "FEATURE")))
        # a repository that does not exist fails the session with the reason
        body = task([{"log": "x"}], repo={"mode": "git", "url": repo + "-missing"})
        sid = create(self.server, body)["id"]
        s = wait_status(self.server, sid, "failed")
        self.assertIn("provisioning failed", s["error"])


if __name__ == "__main__":
    ahtest.main()
