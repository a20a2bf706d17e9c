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



class StreamNames(ServerTest):
    """D26: SSE event names the WebUI listens for; tool results say tool_status; a running
    tool reports progress with last_line. D11: an ended stream with nothing left is a 204."""

    NAMES = {"thought": "thinking", "tool_use": "tool_execution",
             "tool_result": "tool_execution"}

    def test_names_progress_and_tool_status(self):
        scenario = [{"thought": "hmm"},
                    {"tool": "make", "args": {"target": "all"},
                     "output": "cc a.c\ncc b.c\nlinked", "ms": 300},
                    {"log": "done"}]
        sid = create(self.server, task(scenario))["id"]
        got = SSE(self.server, "/api/v1/sessions/%s/events" % sid).events()
        names = [(f["event"], f["json"]["type"]) for f in got]
        for name, typ in names:
            self.assertEqual(name, self.NAMES.get(typ, typ))
        self.assertIn(("thinking", "thought"), names)
        self.assertIn(("log", "log"), names)
        self.assertEqual(names[-1], ("status", "status"))
        tools = [f["json"] for f in got if f["event"] == "tool_execution"]
        self.assertEqual([(t["type"], t["status"]) for t in tools],
                         [("tool_use", "started")] + [("tool_use", "running")] * 3 +
                         [("tool_result", "completed")])
        self.assertEqual([t.get("last_line") for t in tools[1:4]], ["cc a.c", "cc b.c", "linked"])
        self.assertEqual(len({t["tool_execution_id"] for t in tools}), 1)
        self.assertEqual(tools[0]["tool_args"], {"target": "all"})
        self.assertEqual(tools[-1]["tool_status"], "success")
        self.assertEqual(tools[-1]["tool_output"], "cc a.c\ncc b.c\nlinked")
        # the history keeps the spec's types and the same payloads
        hist = [e for e in events(self.server, sid) if e["type"].startswith("tool_")]
        self.assertEqual(hist, tools)

    def test_ended_stream_is_204(self):
        sid = create(self.server, task([{"log": "one"}]))["id"]
        wait_status(self.server, sid, "completed")
        last = events(self.server, sid)[-1]["seq"]
        for headers, query in (({"Last-Event-ID": str(last)}, ""), ({}, "?after=%d" % last),
                               ({"Last-Event-ID": str(last + 5)}, "")):
            s = SSE(self.server, "/api/v1/sessions/%s/events%s" % (sid, query), headers=headers)
            self.assertEqual((s.status, s.raw), (204, b""), (headers, query))
            self.assertIsNone(s.headers.get("content-type"))
        # with events after the cursor: those, the final status, then the stream closes
        s = SSE(self.server, "/api/v1/sessions/%s/events" % sid,
                headers={"Last-Event-ID": str(last - 2)})
        self.assertEqual(s.status, 200)
        got = s.events()
        self.assertTrue(s.closed)
        self.assertEqual([int(f["id"]) for f in got], [last - 1, last])
        self.assertEqual(got[-1]["json"]["status"], "completed")
        # a live session's stream is not a 204 even when the cursor is at its end
        live = create(self.server, task([{"sleep": 30000}]))["id"]
        wait_status(self.server, live, "running")
        at = events(self.server, live)[-1]["seq"]
        s = SSE(self.server, "/api/v1/sessions/%s/events" % live,
                headers={"Last-Event-ID": str(at)})
        self.assertEqual(s.status, 200)
        s.close()
        self.assertEqual(self.server.post("/api/v1/sessions/%s/stop" % live).status, 202)
        wait_status(self.server, live, "stopped")




class Bodies(ServerTest):
    """Every POST/PUT body is validated: unknown members, wrong types and over-long values are a
    400 with `errors`, never silently accepted (issue 10, item 11)."""

    BAD = [({"reason": {}}, "reason"), ({"reason": 5}, "reason"), ({"reason": []}, "reason"),
           ({"reason": "x" * 2000}, "reason"), ({"why": "x"}, "why"),
           ({"reason": "ok", "force": True}, "force")]

    def errors(self, r):
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.header("content-type"), "application/problem+json")
        return r.json()["errors"]

    def test_control_bodies(self):
        sid = create(self.server, task([{"sleep": 30000}]))["id"]
        wait_status(self.server, sid, "running")
        for action in ("pause", "resume", "stop"):
            for body, field in self.BAD:
                r = self.server.post("/api/v1/sessions/%s/%s" % (sid, action), body=body)
                self.assertIn(field, self.errors(r), (action, body))
        self.assertEqual(session(self.server, sid)["status"], "running")  # nothing happened
        # the limit is in characters: 1,024 of them in two bytes each pass
        r = self.server.post("/api/v1/sessions/%s/pause" % sid, body={"reason": "é" * 1024})
        self.assertEqual(r.status, 202, r)
        wait_status(self.server, sid, "paused")
        r = self.server.post("/api/v1/sessions/%s/resume" % sid, body={"reason": None})
        self.assertEqual(r.status, 202, r)
        wait_status(self.server, sid, "running")
        r = self.server.post("/api/v1/sessions/%s/stop" % sid, body={"reason": "done here"})
        self.assertEqual(r.status, 202, r)
        wait_status(self.server, sid, "stopped")

    def test_prompt_and_draft_bodies(self):
        sid = create(self.server, task([{"wait_prompt": True}]))["id"]
        wait_status(self.server, sid, "running")
        for body, field in self.BAD[:5] + [({"prompt": "x", "reason": "y"}, "reason"),
                                          ({"prompt": 5}, "prompt"), ({"message": {}}, "message")]:
            r = self.server.post("/api/v1/sessions/%s/prompt" % sid, body=body)
            self.assertIn(field, self.errors(r), body)
        self.assertEqual(self.server.post("/api/v1/sessions/%s/prompt" % sid,
                                          body={"prompt": "go"}).status, 202)
        wait_status(self.server, sid, "completed")
        for body, field in (({"agents": [{"type": "codex", "modle": "x"}]}, "agents[0].modle"),
                            ({"agents": [{"type": 5}]}, "agents[0].type"),
                            ({"agents": [{"type": "codex", "count": "2"}]}, "agents[0].count"),
                            ({"agents": [{"type": "x"}] * 17}, "agents"),
                            ({"prompt": "x" * 20000}, "prompt"), ({"title": "t"}, "title"),
                            ({"labels": []}, "labels")):
            self.assertIn(field, self.errors(self.server.post("/api/v1/drafts", body=body)),
                          body)
        did = self.server.post("/api/v1/drafts", body={"prompt": "p"}).json()["id"]
        r = self.server.request("PUT", "/api/v1/drafts/" + did,
                                body={"agents": [{"type": "codex", "modle": "x"}]})
        self.assertIn("agents[0].modle", self.errors(r))


def write_exe(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)


class Catalog(unittest.TestCase):
    """API.md §7.11: agents from configuration with the versions found by `--version` (run off
    the HTTP threads, with a timeout), the runtimes this server has, and the local executor."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-catalog-")
        cls.bin = os.path.join(cls.tmp, "bin")
        os.makedirs(cls.bin)
        # codex answers like the real CLI; claude's --version never returns (the catalog gives
        # up after its timeout); gemini fails; opencode is not installed; my-agent is custom
        write_exe(os.path.join(cls.bin, "codex"),
                  '[ "$1" = --version ] && { echo "codex-cli 0.42.0"; exit 0; }\nexit 2\n')
        write_exe(os.path.join(cls.bin, "claude"), "exec sleep 600\n")
        write_exe(os.path.join(cls.bin, "gemini"), "echo nope >&2\nexit 3\n")
        write_exe(os.path.join(cls.bin, "my-agent"),
                  '[ "$1" = --version ] && touch %s/ran\necho hi\n' % cls.tmp)
        cfg = os.path.join(cls.tmp, "ah.toml")
        with open(cfg, "w") as f:
            f.write('[agents.mine]\ncommand = "my-agent"\nformat = "text"\n'
                    '[agents.gpt-local]\ncommand = "my-agent"\nformat = "text"\n')
        path = cls.bin + ":/usr/bin:/bin"
        cls.server = Server(args=("--config", cfg, "--max-concurrent-tasks", "3"),
                            env={"PATH": path})

    @classmethod
    def tearDownClass(cls):
        code = cls.server.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if code not in (0, None):
            raise AssertionError("ah exited with %s" % code)

    def agents(self):
        r = self.server.get("/api/v1/agents")
        self.assertEqual(r.status, 200, r)
        return {a["type"]: a for a in r.json()["items"]}

    def test_agents(self):
        # answered at once, whatever the detection is doing (claude's --version hangs)
        t0 = time.monotonic()
        first = self.agents()
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(list(first)[:5], ["scripted", "claude-code", "codex", "gemini",
                                           "opencode"])
        deadline = time.monotonic() + 30
        while True:
            a = self.agents()
            if all(x["installed"] is not None for x in a.values()) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual((a["codex"]["installed"], a["codex"]["version"]), (True, "0.42.0"))
        self.assertEqual(a["codex"]["versions"], ["latest", "0.42.0"])
        self.assertEqual((a["claude-code"]["installed"], a["claude-code"]["version"]),
                         (True, None))  # found, but --version timed out
        self.assertEqual(a["claude-code"]["aliases"], ["claude"])
        self.assertEqual((a["gemini"]["installed"], a["gemini"]["version"]), (True, None))
        self.assertEqual((a["opencode"]["installed"], a["opencode"]["version"]), (False, None))
        self.assertEqual((a["scripted"]["installed"], a["scripted"]["source"]), (True, "builtin"))
        self.assertIsNotNone(a["scripted"]["version"])
        self.assertEqual((a["mine"]["source"], a["mine"]["installed"], a["mine"]["binary"]),
                         ("config", True, "my-agent"))
        self.assertIsNone(a["mine"]["version"])  # a custom command is never run to ask
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "ran")))
        for x in a.values():
            self.assertEqual(x["settingsSchemaRef"],
                             "/api/v1/schemas/agents/%s.json" % x["type"])
        # the hanging --version did not take an HTTP thread, and its process is gone
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)

    def test_runtimes_and_executors(self):
        r = self.server.get("/api/v1/runtimes")
        self.assertEqual(r.status, 200, r)
        # D51, D52: the sandbox profiles (bubblewrap works here) and devcontainers (podman
        # and runc, from scripts/deps.sh); test_sandbox*.py cover the rest
        self.assertEqual(r.json()["items"], [{"type": "local",
                                              "sandboxProfiles": ["default", "offline"]},
                                             {"type": "devcontainer"}])
        self.assertEqual(r.json()["unavailable"], [])
        r = self.server.get("/api/v1/executors")
        self.assertEqual(r.status, 200, r)
        (ex,) = r.json()["items"]
        self.assertEqual((ex["id"], ex["status"], ex["health"], ex["capacity"], ex["os"]),
                         ("local", "online", "online", 3, "linux"))
        self.assertEqual(ex["arch"], os.uname().machine)
        self.assertIn("git", ex["snapshotCapabilities"])
        before = ex["running"]
        sid = create(self.server, task([{"sleep": 30000}]))["id"]
        wait_status(self.server, sid, "running")
        ex = self.server.get("/api/v1/executors").json()["items"][0]
        self.assertEqual(ex["running"], before + 1)
        self.assertEqual(self.server.post("/api/v1/sessions/%s/stop" % sid).status, 202)
        wait_status(self.server, sid, "stopped")
        deadline = time.monotonic() + 30
        while self.server.get("/api/v1/executors").json()["items"][0]["running"] != before:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)

    def test_agent_shorthand_and_aliases(self):
        # the repro of issue 10: `agent` instead of `agents`
        body = {"prompt": "x", "repo": {"mode": "none"}, "runtime": {"type": "local"},
                "agent": {"type": "scripted"}}
        r = self.server.post("/api/v1/tasks", body=body)
        self.assertEqual(r.status, 201, r)
        s = session(self.server, r.json()["id"])
        self.assertEqual(s["agent"]["type"], "scripted")
        wait_status(self.server, s["id"], "completed")
        # both at once: 400 naming agent
        r = self.server.post("/api/v1/tasks", body=dict(body, agents=[{"type": "scripted"}]))
        self.assertIn("agent", self.assertProblemFields(r))
        # a display alias: claude + a model version → claude-code with that model
        r = self.server.post("/api/v1/tasks", body=dict(
            body, agent={"type": "claude", "version": "3.5-sonnet"}))
        self.assertEqual(r.status, 201, r)
        s = session(self.server, r.json()["id"])
        self.assertEqual((s["agent"]["type"], s["agent"]["version"]), ("claude-code", "latest"))
        self.assertEqual(s["agent"]["settings"], {"model": "3.5-sonnet"})
        r = self.server.post("/api/v1/tasks", body=dict(body, agent={"type": "gpt-4o"}))
        self.assertEqual(r.status, 201, r)
        s = session(self.server, r.json()["id"])
        self.assertEqual((s["agent"]["type"], s["agent"]["settings"]), ("codex", {"model": "gpt-4o"}))
        # a configured agent of that exact name wins over the alias rule
        r = self.server.post("/api/v1/tasks", body=dict(body, agent={"type": "gpt-local"}))
        self.assertEqual(r.status, 201, r)
        self.assertEqual(session(self.server, r.json()["id"])["agent"]["type"], "gpt-local")
        # an unknown type: 400 naming the known ones
        r = self.server.post("/api/v1/tasks", body=dict(body, agent={"type": "openhands"}))
        errors = self.assertProblemFields(r)
        msg = " ".join(errors["agent.type"])
        for known in ("scripted", "claude-code", "codex", "mine"):
            self.assertIn(known, msg)
        listed = {k: v for k, v in body.items() if k != "agent"}
        r = self.server.post("/api/v1/tasks", body=dict(
            listed, agents=[{"type": "scripted"}, {"type": "nope"}]))
        self.assertIn("agents[1].type", self.assertProblemFields(r))
        # drafts take the shorthand too, and keep the list
        r = self.server.post("/api/v1/drafts", body={"prompt": "p", "agent": {"type": "codex"}})
        self.assertEqual(r.status, 201, r)
        d = self.server.get("/api/v1/drafts/" + r.json()["id"]).json()
        self.assertEqual((d["agents"], "agent" in d), ([{"type": "codex"}], False))
        r = self.server.post("/api/v1/drafts", body={"agent": {"type": "codex"},
                                                     "agents": [{"type": "codex"}]})
        self.assertIn("agent", self.assertProblemFields(r))
        r = self.server.post("/api/v1/drafts", body={"agent": "codex"})
        self.assertIn("agent", self.assertProblemFields(r))

    def assertProblemFields(self, r):
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.header("content-type"), "application/problem+json")
        return r.json()["errors"]


if __name__ == "__main__":
    ahtest.main()
