"""Issue 15 item 7: the CLI's chat and catalog commands against the real server — `ah session
chat ID MESSAGE`, `ah session chat ID` following the conversation from a pipe, `ah session
context`, `ah projects`, `ah agents`, `ah repos`."""

import json
import os
import subprocess
import tempfile

import ahtest
from ahtest import AH_BIN, ServerTest
from sessiontest import create, task, wait_status
from test_chat import chat, said


class ChatCli(ServerTest):
    def ah(self, *args, input=None, timeout=90):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
        env["HOME"] = tempfile.mkdtemp(prefix="ah-cli-")
        env["XDG_CONFIG_HOME"] = os.path.join(env["HOME"], "config")
        p = subprocess.run([AH_BIN] + list(args) +
                           ["--remote-server", "http://127.0.0.1:%d" % self.server.port],
                           input=input, capture_output=True, timeout=timeout, env=env)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def test_chat(self):
        scenario = [{"say": "What now?"}, {"wait_prompt": True},
                    {"tool": "grep", "args": {"q": "TODO"}, "output": "1"}, {"say": "Found it."},
                    {"wait_prompt": True}, {"say": "Bye."}]
        sid = create(self.server, dict(task(scenario), projectId="cli-proj"))["id"]
        said(self.server, sid, "What now?")
        rc, out, err = self.ah("session", "chat", sid, "find", "the", "TODO")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out.strip(), r"^msg-\d+$")
        said(self.server, sid, "Found it.")
        # interactive from a pipe: sends the line, follows until the session ends
        rc, out, err = self.ah("session", "chat", sid, input=b"thanks\n", timeout=60)
        self.assertEqual(rc, 0, err)
        lines = [l for l in out.splitlines() if l.strip()]
        self.assertEqual(lines[:2], ["agent: What now?", "you: find the TODO"])
        self.assertIn('  ⚙ grep {"q":"TODO"}', out)
        self.assertIn("you: thanks", out)
        self.assertEqual(lines[-1], "agent: Bye.")
        wait_status(self.server, sid, "completed")
        self.assertEqual([m["content"] for m in chat(self.server, sid)["messages"]
                          if m["role"] == "user"], ["find the TODO", "thanks"])
        # the ended session refuses more, with the server's reason
        rc, out, err = self.ah("session", "chat", sid, "more")
        self.assertNotEqual(rc, 0)
        self.assertIn("ended", err)
        rc, out, err = self.ah("session", "chat", sid, "--json", "x" * 20000)
        self.assertNotEqual(rc, 0)
        rc, out, err = self.ah("session", "chat")
        self.assertNotEqual(rc, 0)
        self.assertIn("which session", err)

        rc, out, err = self.ah("session", "context", sid)
        self.assertEqual(rc, 0, err)
        self.assertIn("model    scripted", out)
        rc, out, err = self.ah("session", "context", sid, "--json")
        self.assertEqual(json.loads(out)["active_model"]["type"], "scripted")

        rc, out, err = self.ah("projects")
        self.assertEqual(rc, 0, err)
        self.assertIn("cli-proj", out)
        rc, out, err = self.ah("agents")
        self.assertEqual(rc, 0, err)
        self.assertIn("scripted", out)
        rc, out, err = self.ah("repos", "--json")
        self.assertEqual(rc, 0, err)
        self.assertIn("items", json.loads(out))


if __name__ == "__main__":
    ahtest.main()
