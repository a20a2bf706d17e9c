"""Issue 15 item 4: `model_override` on chat and context switches the model of claude-code and
codex sessions. Those CLIs run once per turn; a chat message runs the session's next turn, which
resumes the CLI's own conversation (`claude -p MSG --resume SID --model M`, `codex exec -m M
resume TID MSG`) with the chosen model, while the session stays one session: one running state,
one gapless seq, the active model in the context and the chat, usage per model.

The fake CLIs under tests/fixtures/bin start a conversation with a fresh id on each run without a
resume id, refuse (exit 2, the turn fails) a resume id they never started, and record each run's
resume id, model and prompt, so a wrong flag fails these tests."""

import json
import os
import shutil
import tempfile
import unittest

from ahtest import Server
from sessiontest import create, events, task, wait_for, wait_status

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


class Turns(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="ah-turns-")
        cfg = os.path.join(cls.root, "config.toml")
        with open(cfg, "w") as f:  # the fakes replay recordings from the checkout
            f.write("[sandbox.default]\nread-only = [%s]\n"
                    % json.dumps(os.path.realpath(FIXTURES)))
        path = os.path.join(FIXTURES, "bin") + ":" + os.environ["PATH"]
        cls.server = Server(args=("--config", cfg), env={"PATH": path})

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.root, ignore_errors=True)

    # ---- helpers ----

    def api(self, sid, path=""):
        return "/api/v1/sessions/%s%s" % (sid, path)

    def start(self, agent, prompt="fix the token check", **settings):
        body = task(agent=agent, prompt=prompt)
        if settings:
            body["agents"][0]["settings"] = settings
        sid = create(self.server, body)["id"]
        # a session left waiting for messages would hold its slot after a failure
        self.addCleanup(self.server.post, self.api(sid, "/stop"))
        return sid

    def logs(self, sid):
        return [e["message"] for e in events(self.server, sid, type="log")]

    def turn_done(self, sid, n):
        """Waits for the agent to wait for a message after turn n."""
        want = "turn %d done; waiting up to " % n
        wait_for(lambda: any(m.startswith(want) for m in self.logs(sid)), 60,
                 "turn %d of %s to end" % (n, sid))

    def record(self, sid, cli):
        """Where the fake CLI records its runs. The session's home is private under the sandbox
        (in the data dir), else the server's own HOME."""
        name = os.path.join(".fake-" + cli, sid + ".runs")
        for home in (os.path.join(self.server.data_dir, "sessions", sid, "home"), self.server.tmp):
            if os.path.exists(os.path.join(home, name)):
                return os.path.join(home, name)
        return None

    def runs(self, sid, cli):
        """The fake CLI's runs: (resume id, model, prompt) each."""
        p = self.record(sid, cli)
        if not p:
            return []
        with open(p) as f:
            return [tuple(line.rstrip("\n").split("\t", 2)) for line in f]

    def send(self, sid, content, **extra):
        r = self.server.post(self.api(sid, "/chat/messages"), body=dict(extra, content=content))
        self.assertEqual(r.status, 201, r)
        return r.json()

    def context(self, sid):
        r = self.server.get(self.api(sid, "/context"))
        self.assertEqual(r.status, 200, r)
        return r.json()

    def one_session(self, sid):
        """One session: every seq once, 1..n, and one run of states (no second start)."""
        evs = events(self.server, sid)
        self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)))
        states = [e["status"] for e in evs if e["type"] == "status"]
        self.assertEqual(states.count("running"), 1, states)
        return evs

    def stop(self, sid):
        r = self.server.post(self.api(sid, "/stop"))
        self.assertEqual(r.status, 202, r)
        wait_status(self.server, sid, "stopped", timeout=60)

    # ---- tests ----

    def test_claude_code_switches_model_between_turns(self):
        s = self.server
        sid = self.start("claude-code", chat_idle_seconds=300)
        self.turn_done(sid, 1)
        self.assertEqual(s.get(self.api(sid)).json()["status"], "running")
        first = self.runs(sid, "claude")
        self.assertEqual(first, [("", "", "fix the token check")])  # no model asked: none passed
        started = [m for m in self.logs(sid) if m.startswith("claude-code session ")]
        conv = started[0].split()[2]  # the id the CLI named, which the next turn resumes
        self.assertRegex(conv, r"^[0-9a-f-]{36}$")
        self.assertEqual(self.context(sid)["active_model"]["type"], "claude-sonnet-4-5")

        # a model the agent does not have is refused, and nothing is sent
        r = s.post(self.api(sid, "/chat/messages"), body={"content": "x", "model_override": "gpt-5"})
        self.assertEqual(r.status, 400, r)
        self.assertIn("model_override", json.dumps(r.json()))

        m = self.send(sid, "now use memcmp", model_override="claude-opus-4-1")
        self.assertEqual(m["model_override"], "claude-opus-4-1")
        self.turn_done(sid, 2)
        self.assertEqual(self.runs(sid, "claude")[1], (conv, "claude-opus-4-1", "now use memcmp"))
        self.assertIn("turn 2: resuming claude-code conversation %s with model claude-opus-4-1"
                      % conv, self.logs(sid))
        c = self.context(sid)
        self.assertEqual(c["active_model"]["type"], "claude-opus-4-1")
        self.assertEqual(c["active_model"]["input_pricing"], 15.0)

        # the context's model is the next turn's, with no override on the message
        r = s.request("PUT", self.api(sid, "/context"), body={"model_override": "claude-haiku-4-5"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["active_model"]["type"], "claude-haiku-4-5")
        self.send(sid, "and add a test")
        self.turn_done(sid, 3)
        self.assertEqual(self.runs(sid, "claude"),
                         [("", "", "fix the token check"),
                          (conv, "claude-opus-4-1", "now use memcmp"),
                          (conv, "claude-haiku-4-5", "and add a test")])

        # usage per model: each turn's report under the model it ran with
        evs = self.one_session(sid)
        usage = [e for e in evs if e["type"] == "usage"]
        self.assertEqual([u.get("model") for u in usage],
                         [None, "claude-opus-4-1", "claude-haiku-4-5"])
        c = self.context(sid)
        per = {u["model"]: (u["input_tokens"], u["output_tokens"]) for u in c["usage_by_model"]}
        self.assertEqual(per, {"claude-sonnet-4-5": (usage[0]["input_tokens"], usage[0]["output_tokens"]),
                               "claude-opus-4-1": (usage[1]["input_tokens"], usage[1]["output_tokens"]),
                               "claude-haiku-4-5": (usage[2]["input_tokens"], usage[2]["output_tokens"])})
        self.assertEqual(c["context_window"]["input_tokens"], sum(u["input_tokens"] for u in usage))
        self.assertEqual(c["active_model"]["type"], "claude-haiku-4-5")

        # the transcript: each turn's replies carry the model that wrote them
        chat = s.get(self.api(sid, "/chat?limit=200")).json()["messages"]
        users = [x for x in chat if x["role"] == "user"]
        self.assertEqual([x["content"] for x in users], ["now use memcmp", "and add a test"])
        replies = [x for x in chat if x["role"] == "assistant" and x["content"]]
        models = [x.get("model") for x in replies]
        k = len(replies) // 3  # the same recorded run three times
        self.assertEqual(models, [None] * k + ["claude-opus-4-1"] * k + ["claude-haiku-4-5"] * k)
        self.assertLess(chat.index(users[0]), chat.index(replies[k]))

        # switching says so, and is truthful about this agent
        m = s.get(self.api(sid, "/models")).json()
        self.assertIs(m["switches_model"], True)
        self.stop(sid)
        self.one_session(sid)
        r = s.post(self.api(sid, "/chat/messages"), body={"content": "too late"})
        self.assertEqual(r.status, 410, r)

    def test_codex_switches_model_between_turns(self):
        sid = self.start("codex", chat_idle_seconds=300, model="gpt-5-codex")
        self.turn_done(sid, 1)
        started = [m for m in self.logs(sid) if m.startswith("codex thread ")]
        tid = started[0].split()[2]
        self.assertEqual(self.runs(sid, "codex"), [("", "gpt-5-codex", "fix the token check")])
        # a server restart between turns: the agent waits on, re-attached (D15)
        self.server.stop()
        self.server.start()
        self.send(sid, "run the tests again", model_override="gpt-5-mini")
        self.turn_done(sid, 2)
        self.assertEqual(self.runs(sid, "codex")[1], (tid, "gpt-5-mini", "run the tests again"))
        # a model alone (PUT context) is the next message's
        r = self.server.request("PUT", self.api(sid, "/context"), body={"model_override": "gpt-5"})
        self.assertEqual(r.status, 200, r)
        self.send(sid, "line one\nline two")  # a message may span lines: still one turn
        self.turn_done(sid, 3)
        self.assertEqual(self.runs(sid, "codex")[2], (tid, "gpt-5", "line one line two"))
        evs = self.one_session(sid)
        self.assertEqual([e.get("model") for e in evs if e["type"] == "usage"],
                         ["gpt-5-codex", "gpt-5-mini", "gpt-5"])
        per = [u["model"] for u in self.context(sid)["usage_by_model"]]
        self.assertEqual(per, ["gpt-5-codex", "gpt-5-mini", "gpt-5"])
        self.assertIs(self.server.get(self.api(sid, "/models")).json()["switches_model"], True)
        self.stop(sid)

    def test_messages_sent_during_a_turn_run_after_it(self):
        # no wait after a turn (the default): a message sent while the first turn runs is still
        # the next turn, with its model, and the session completes after it
        sid = self.start("claude-code", prompt="fix WAIT")
        wait_for(lambda: self.record(sid, "claude"), 60, "the first turn to start")
        self.send(sid, "queued message", model_override="claude-opus-4-1")
        open(os.path.join(os.path.dirname(self.record(sid, "claude")), "go"), "w").close()
        done = wait_status(self.server, sid, ("completed", "failed"), timeout=60)
        self.assertEqual(done["status"], "completed", done)
        runs = self.runs(sid, "claude")
        self.assertEqual([r[1:] for r in runs], [("", "fix WAIT"), ("claude-opus-4-1", "queued message")])
        self.assertRegex(runs[1][0], r"^[0-9a-f-]{36}$")
        self.assertFalse([m for m in self.logs(sid) if "waiting up to" in m])
        self.one_session(sid)

    def test_idle_session_completes(self):
        # with a short wait and no message the session completes on its own (D13 running →
        # completed); with none (the default) it completes after its first turn as it always did
        sid = self.start("claude-code", chat_idle_seconds=1)
        done = wait_status(self.server, sid, ("completed", "failed"), timeout=60)
        self.assertEqual(done["status"], "completed", done)
        self.assertIn("no message in 1 s: the session ends", self.logs(sid))
        self.assertEqual(len(self.runs(sid, "claude")), 1)
        sid = self.start("codex")
        done = wait_status(self.server, sid, ("completed", "failed"), timeout=60)
        self.assertEqual(done["status"], "completed", done)
        self.assertFalse([m for m in self.logs(sid) if "waiting up to" in m])

    def test_settings_checked(self):
        for settings in ({"chat_idle_seconds": -1}, {"chat_idle_seconds": "10"},
                         {"chat_idle_seconds": 86401}):
            body = task(agent="claude-code")
            body["agents"][0]["settings"] = settings
            r = self.server.post("/api/v1/tasks", body=body)
            self.assertEqual(r.status, 400, (settings, r))
        body = task(agent="gemini")
        body["agents"][0]["settings"] = {"chat_idle_seconds": 10}
        self.assertEqual(self.server.post("/api/v1/tasks", body=body).status, 400)
        schema = self.server.get("/api/v1/schemas/agents/codex.json").json()
        self.assertEqual(schema["properties"]["chat_idle_seconds"]["type"], "integer")

    def test_models_say_who_switches(self):
        # gemini and the scripted agent take no model between turns: GET …/models says so (an
        # override for such an agent is a 422: test_chat_context)
        s = self.server
        gid = self.start("gemini")
        m = s.get(self.api(gid, "/models")).json()
        self.assertIs(m["switches_model"], False)
        sid = create(s, task([{"sleep": 100}]))["id"]
        self.assertIs(s.get(self.api(sid, "/models")).json()["switches_model"], False)
        wait_status(s, gid, ("completed", "failed"), timeout=60)


if __name__ == "__main__":
    unittest.main()
