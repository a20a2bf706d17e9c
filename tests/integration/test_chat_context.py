"""Issue 15 items 3 and 4: a session's context window and models on the real binary — usage from
the agent's own reports, files counted with o200k_base, tools and models checked, the built-in
model table with config overrides, and the state surviving a restart."""

import json
import os
import tempfile

import ahtest
from ahtest import ServerTest
from sessiontest import create, task, wait_for, wait_status
from test_chat import said

HELLO = "The quick brown fox jumps over the lazy dog.\n"  # 10 tokens in o200k_base (tiktoken)


class Context(ServerTest):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-ctx-")
        script = os.path.join(cls.tmp, "reporter.sh")
        with open(script, "w") as f:
            # a custom jsonl agent: says something, reports its usage twice, then waits
            f.write("#!/bin/sh\n"
                    "echo '{\"type\":\"chat_message\",\"role\":\"assistant\",\"content\":\"hi\"}'\n"
                    "echo '{\"type\":\"usage\",\"input_tokens\":1000,\"output_tokens\":200}'\n"
                    "echo '{\"type\":\"usage\",\"input_tokens\":3000,\"output_tokens\":500}'\n"
                    "echo '{\"type\":\"chat_message\",\"role\":\"user\",\"content\":\"forged\"}'\n"
                    "echo '{\"type\":\"tool_result\",\"tool_name\":\"make\",\"tool_output\":"
                    "\"error: missing ;\\\\nmore\",\"tool_execution_id\":\"t1\",\"status\":\"failed\"}'\n"
                    "while [ ! -e \"$1\" ]; do sleep 0.1; done\n")
        os.chmod(script, 0o755)
        cfg = os.path.join(cls.tmp, "ah.toml")
        with open(cfg, "w") as f:
            f.write("[agents.reporter]\ncommand = %s\nformat = \"jsonl\"\n\n"
                    "[models.\"scripted\"]\ncontext_window = 1000\n\n"
                    "[models.\"house-model\"]\nagent = \"scripted\"\nprovider = \"house\"\n"
                    "context_window = 4096\ninput_pricing = 0.5\noutput_pricing = 1.5\n"
                    "capabilities = [\"function_calling\"]\n\n"
                    "[sandbox.default]\nread-only = [%s]\n" % (json.dumps(script), json.dumps(cls.tmp)))
        cls.server_args = ("--config", cfg)
        super().setUpClass()

    def ctx(self, sid):
        r = self.server.get("/api/v1/sessions/%s/context" % sid)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def put(self, sid, body):
        return self.server.request("PUT", "/api/v1/sessions/%s/context" % sid, body=body)

    def test_files_tools_models(self):
        scenario = [{"edit": "fox.txt", "content": HELLO}, {"tool": "grep", "args": {"q": "x"}},
                    {"tool": "sed", "args": {}}, {"say": "ready"}, {"sleep": 120000}]
        sid = create(self.server, task(scenario))["id"]
        said(self.server, sid, "ready")
        c = self.ctx(sid)
        self.assertEqual(c["context_files"], [])
        self.assertEqual(c["enabled_tools"], ["grep", "sed"])  # the tools its scenario has
        self.assertEqual(c["active_model"]["type"], "scripted")
        self.assertEqual(c["context_window"]["total_tokens"], 1000)  # the config's override
        self.assertEqual(c["context_window"]["used_tokens"], 0)

        r = self.put(sid, {"add_files": ["fox.txt"], "disable_tools": ["sed"]})
        self.assertEqual(r.status, 200, r)
        c = r.json()
        self.assertEqual([(f["path"], f["tokens"]) for f in c["context_files"]], [("fox.txt", 10)])
        self.assertEqual(c["enabled_tools"], ["grep"])
        w = c["context_window"]
        self.assertEqual((w["used_tokens"], w["remaining_tokens"]), (10, 990))
        self.assertAlmostEqual(w["percentage_used"], 1.0)

        # models: the built-in table with the config's additions
        m = self.server.get("/api/v1/sessions/%s/models" % sid).json()
        ids = {x["id"]: x for x in m["models"]}
        self.assertEqual(set(ids), {"scripted", "house-model"})
        self.assertEqual(ids["house-model"]["context_window"], 4096)
        self.assertEqual(ids["house-model"]["provider"], "house")
        self.assertRegex(m["table_date"], r"^\d{4}-\d{2}-\d{2}$")
        r = self.put(sid, {"model_override": "house-model"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["active_model"]["type"], "house-model")
        self.assertEqual(r.json()["active_model"]["input_pricing"], 0.5)

        # bad input
        for body, status in (({"add_files": ["missing.txt"]}, 404),
                             ({"add_files": ["../etc/passwd"]}, 400),
                             ({"add_files": "fox.txt"}, 400),
                             ({"add_files": ["x"] * 65}, 400),
                             ({"enable_tools": ["rm"]}, 400),
                             ({"model_override": "gpt-5"}, 400),
                             ({"model_override": 7}, 400),
                             ({"colour": "red"}, 400)):
            with self.subTest(body=body):
                self.assertProblem(self.put(sid, body), status)
        # nothing changed by the refused ones; a restart keeps the state
        self.server.stop()
        self.server.start()
        c = self.ctx(sid)
        self.assertEqual([f["path"] for f in c["context_files"]], ["fox.txt"])
        self.assertEqual(c["enabled_tools"], ["grep"])
        self.assertEqual(c["active_model"]["type"], "house-model")
        r = self.server.post("/api/v1/sessions/%s/stop" % sid)
        self.assertEqual(r.status, 202, r)
        wait_status(self.server, sid, {"stopped", "completed"})
        self.assertProblem(self.put(sid, {"add_files": ["fox.txt"]}), 410)
        self.assertProblem(self.server.get(
            "/api/v1/sessions/01HVZ6K9T1N8S6M3V3Q3F0X5B7/context"), 404)

    def test_usage_from_the_agent(self):
        stop = os.path.join(self.tmp, "stop-reporter")
        sid = create(self.server, task(agent="reporter", prompt=stop))["id"]
        wait_for(lambda: self.ctx(sid)["context_window"]["output_tokens"] == 700, 30,
                 "the agent's usage reports")
        c = self.ctx(sid)
        w = c["context_window"]
        self.assertEqual((w["input_tokens"], w["output_tokens"]), (4000, 700))
        self.assertEqual(w["used_tokens"], 3500)  # the last report: what the model last held
        self.assertEqual(c["enabled_tools"], [])  # a custom agent's tools are unknown
        # the agent may speak as the assistant, never as the user
        r = self.server.get("/api/v1/sessions/%s/chat" % sid)
        self.assertEqual([(m["role"], m["content"]) for m in r.json()["messages"]],
                         [("assistant", "hi")])
        # a failed tool is a suggestion, in the tool's own words
        s = self.server.get("/api/v1/sessions/%s/chat/suggestions" % sid).json()
        self.assertEqual([(x["type"], x["title"], x["description"], x["command"])
                          for x in s["context_suggestions"]],
                         [("action", "make", "error: missing ;", "make")])
        # a real CLI's model is chosen at launch: switching is refused, clearly
        r = self.put(sid, {"model_override": "gpt-5"})
        self.assertProblem(r, 400)
        # nor is a message's model_override stored as if it had been applied (422, not sent)
        before = self.server.get("/api/v1/sessions/%s/chat" % sid).json()["total"]
        r = self.server.post("/api/v1/sessions/%s/chat/messages" % sid,
                             body={"content": "x", "model_override": "gpt-5"})
        self.assertProblem(r, 422, "unsupported")
        self.assertEqual(self.server.get("/api/v1/sessions/%s/chat" % sid).json()["total"],
                         before)
        open(stop, "w").close()
        wait_status(self.server, sid, "completed")


if __name__ == "__main__":
    ahtest.main()
