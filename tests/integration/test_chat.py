"""Issue 15: a session is a conversation. The chat routes on the real binary with the scripted
agent's wait_prompt/say steps: messages delivered through the prompt path, the agent's replies and
tool calls in the history, edits that never rewrite history silently, deletion, retry, paging,
and all of it surviving a server restart."""

import unittest

import ahtest
from ahtest import ServerTest
from sessiontest import create, events, task, wait_for, wait_status


def chat(server, sid, query=""):
    r = server.get("/api/v1/sessions/%s/chat%s" % (sid, query))
    assert r.status == 200, r
    return r.json()


def said(server, sid, text):
    """Waits until an assistant message with this text is in the history."""
    return wait_for(lambda: any(m["role"] == "assistant" and m["content"] == text
                                for m in chat(server, sid)["messages"]), 30,
                    "the agent saying %r" % text)


def send(server, sid, content, **extra):
    body = dict(extra, content=content)
    r = server.post("/api/v1/sessions/%s/chat/messages" % sid, body=body)
    assert r.status == 201, r
    return r.json()


def received(server, sid, n):
    """Waits until the scripted agent has read n prompts (its 'received prompt' logs)."""
    return wait_for(lambda: len([e for e in events(server, sid, type="log")
                                 if e["message"].startswith("received prompt: ")]) >= n, 30,
                    "%d prompts read by the agent" % n)


class Conversation(ServerTest):
    def test_multi_turn_survives_restart(self):
        scenario = [{"say": "Hello! What should I look for?"}, {"wait_prompt": True},
                    {"tool": "grep", "args": {"pattern": "TODO"}, "output": "a.c:3: TODO"},
                    {"say": "Found one TODO in a.c."}, {"wait_prompt": True},
                    {"say": "Goodbye."}]
        sid = create(self.server, task(scenario))["id"]
        said(self.server, sid, "Hello! What should I look for?")
        m1 = send(self.server, sid, "look for TODO", context_files=["a.c"],
                  tools_enabled=["grep"], model_override="gpt-5")
        self.assertEqual(m1["role"], "user")
        self.assertEqual(m1["content"], "look for TODO")
        self.assertEqual(m1["context_files"], ["a.c"])
        self.assertEqual(m1["tools_enabled"], ["grep"])
        self.assertEqual(m1["model_override"], "gpt-5")
        self.assertRegex(m1["id"], r"^msg-\d+$")
        said(self.server, sid, "Found one TODO in a.c.")
        send(self.server, sid, "thanks")
        wait_status(self.server, sid, "completed")
        # the agent really read what was sent, in order
        logs = [e["message"] for e in events(self.server, sid, type="log")]
        self.assertIn("received prompt: look for TODO", logs)
        self.assertIn("received prompt: thanks", logs)

        def shape(h):
            return [(m["role"], m["content"],
                     [(c["function"]["name"], c["function"]["arguments"])
                      for c in m.get("tool_calls", [])]) for m in h["messages"]]
        expected = [("assistant", "Hello! What should I look for?", []),
                    ("user", "look for TODO", []),
                    ("assistant", "", [("grep", {"pattern": "TODO"})]),
                    ("assistant", "Found one TODO in a.c.", []),
                    ("user", "thanks", []),
                    ("assistant", "Goodbye.", [])]
        before = chat(self.server, sid)
        self.assertEqual(shape(before), expected)
        self.assertEqual(before["total"], 6)
        self.assertEqual(before["messages"][1]["id"], m1["id"])
        call = before["messages"][2]["tool_calls"][0]
        self.assertEqual(call["type"], "function")
        self.assertTrue(call["id"].startswith("tool_exec_"))
        # ids are the seq of their events: increasing
        seqs = [int(m["id"][4:]) for m in before["messages"]]
        self.assertEqual(seqs, sorted(seqs))
        # the chat is events: it streams and pages like them
        kinds = [(e["role"], e.get("content")) for e in events(self.server, sid,
                                                                type="chat_message")]
        self.assertEqual(kinds[1], ("user", "look for TODO"))

        # paging: newest `limit` first, then back with before, forward with after
        ids = [m["id"] for m in before["messages"]]
        last2 = chat(self.server, sid, "?limit=2")
        self.assertEqual([m["id"] for m in last2["messages"]], ids[4:])
        self.assertEqual(last2["total"], 6)
        prev = chat(self.server, sid, "?limit=3&before=" + ids[4])
        self.assertEqual([m["id"] for m in prev["messages"]], ids[1:4])
        nxt = chat(self.server, sid, "?limit=2&after=" + ids[1])
        self.assertEqual([m["id"] for m in nxt["messages"]], ids[2:4])
        both = chat(self.server, sid, "?after=%s&before=%s" % (ids[0], ids[3]))
        self.assertEqual([m["id"] for m in both["messages"]], ids[1:3])

        # a server restart keeps it all
        self.server.stop()
        self.server.start()
        self.assertEqual(chat(self.server, sid), before)
        # the session has ended: new messages are refused with 410, nothing stored
        r = self.server.post("/api/v1/sessions/%s/chat/messages" % sid, body={"content": "hi"})
        self.assertProblem(r, 410)
        self.assertEqual(chat(self.server, sid)["total"], 6)

    def test_edit_delete_retry(self):
        scenario = [{"wait_prompt": True}, {"wait_prompt": True}, {"say": "ok"},
                    {"wait_prompt": True}, {"wait_prompt": True}, {"say": "done"},
                    {"wait_prompt": True}]
        sid = create(self.server, task(scenario))["id"]
        wait_status(self.server, sid, "running")
        m1 = send(self.server, sid, "first try")
        received(self.server, sid, 1)
        url = "/api/v1/sessions/%s/chat/messages/%s" % (sid, m1["id"])
        # not answered yet: edited in place, same id, and the agent gets the new text
        r = self.server.request("PUT", url, body={"content": "first, better"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["id"], m1["id"])
        self.assertEqual(r.json()["content"], "first, better")
        self.assertIn("edited_at", r.json())
        self.assertNotIn("supersedes", r.json())
        said(self.server, sid, "ok")
        h = chat(self.server, sid)["messages"]
        self.assertEqual((h[0]["id"], h[0]["content"]), (m1["id"], "first, better"))
        self.assertIn("edited_at", h[0])
        # answered now: the edit is a new message that supersedes; the old one stays
        r = self.server.request("PUT", url, body={"content": "first, best"})
        self.assertEqual(r.status, 200, r)
        new_id = r.json()["id"]
        self.assertNotEqual(new_id, m1["id"])
        self.assertEqual(r.json()["supersedes"], m1["id"])
        received(self.server, sid, 3)
        h = chat(self.server, sid)["messages"]
        self.assertEqual([m["content"] for m in h], ["first, better", "ok", "first, best"])
        self.assertEqual(h[0]["superseded_by"], new_id)
        self.assertEqual(h[2]["supersedes"], m1["id"])
        # the event log keeps every version
        texts = [e.get("content") for e in events(self.server, sid, type="chat_message")]
        self.assertEqual(texts[:3], ["first try", "first, better", "ok"])
        # retry re-sends the text as a new user message
        r = self.server.post(url + "/retry")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["retry_of"], m1["id"])
        self.assertEqual(r.json()["content"], "first, better")
        said(self.server, sid, "done")
        logs = [e["message"] for e in events(self.server, sid, type="log")]
        self.assertEqual([x for x in logs if x.startswith("received prompt: ")],
                         ["received prompt: first try", "received prompt: first, better",
                          "received prompt: first, best", "received prompt: first, better"])
        # delete: gone from the chat, still in the log; the agent's messages cannot be deleted
        r = self.server.request("DELETE", "/api/v1/sessions/%s/chat/messages/%s" % (sid, new_id))
        self.assertEqual(r.status, 204, r)
        h = chat(self.server, sid)["messages"]
        self.assertNotIn(new_id, [m["id"] for m in h])
        self.assertEqual(len(h), 4)
        ok_id = [m["id"] for m in h if m["content"] == "ok"][0]
        r = self.server.request("DELETE", "/api/v1/sessions/%s/chat/messages/%s" % (sid, ok_id))
        self.assertProblem(r, 409)
        r = self.server.request("PUT", "/api/v1/sessions/%s/chat/messages/%s" % (sid, ok_id),
                                body={"content": "x"})
        self.assertProblem(r, 409)
        r = self.server.request("DELETE", "/api/v1/sessions/%s/chat/messages/%s" % (sid, new_id))
        self.assertProblem(r, 404)
        send(self.server, sid, "bye")
        wait_status(self.server, sid, "completed")

    def test_suggestions(self):
        scenario = [{"edit": "src/a.c", "content": "int a;\n"},
                    {"tool": "make", "args": {}, "output": "ok"},
                    {"edit": "README.md", "content": "# hi\nthere\n"},
                    {"tool": "make", "args": {}, "output": "ok"}]
        sid = create(self.server, task(scenario))["id"]
        wait_status(self.server, sid, "completed")
        r = self.server.get("/api/v1/sessions/%s/chat/suggestions" % sid)
        self.assertEqual(r.status, 200, r)
        s = r.json()
        files = [x["file_path"] for x in s["context_suggestions"] if x["type"] == "file"]
        # newest first; one snapshot may carry both edits, so only the set is certain
        self.assertEqual(sorted(files), ["README.md", "src/a.c"])
        readme = [x for x in s["context_suggestions"] if x.get("file_path") == "README.md"][0]
        self.assertEqual(readme["description"], "+2 −0")
        self.assertEqual([q["params"]["file_path"] for q in s["quick_actions"]], files)
        self.assertEqual([x for x in s["context_suggestions"] if x["type"] == "action"], [])
        self.assertProblem(self.server.get(
            "/api/v1/sessions/01HVZ6K9T1N8S6M3V3Q3F0X5B7/chat/suggestions"), 404)

    def test_bad_input(self):
        sid = create(self.server, task([{"wait_prompt": True}]))["id"]
        wait_status(self.server, sid, "running")
        base = "/api/v1/sessions/%s/chat" % sid
        for body in ({}, {"content": ""}, {"content": 5}, {"content": "x", "colour": 1},
                     {"content": "x", "context_files": "a"},
                     {"content": "x", "context_files": [""]},
                     {"content": "x", "context_files": ["a"] * 65},
                     {"content": "x", "tools_enabled": [1]},
                     {"content": "x", "model_override": ""},
                     {"content": "x", "model_override": "m" * 200}):
            self.assertProblem(self.server.post(base + "/messages", body=body), 400)
        self.assertProblem(self.server.post(base + "/messages", body="[1]",
                                            headers={"Content-Type": "application/json"}), 400)
        self.assertProblem(self.server.post(base + "/messages",
                                            body={"content": "x" * (16 * 1024 + 1)}), 413)
        for q in ("limit=0", "limit=201", "limit=x", "before=12", "after=msg-x", "before=msg-0"):
            self.assertProblem(self.server.get(base + "?" + q), 400)
        self.assertProblem(self.server.get("/api/v1/sessions/01HVZ6K9T1N8S6M3V3Q3F0X5B7/chat"),
                           404)
        self.assertProblem(self.server.post(
            "/api/v1/sessions/01HVZ6K9T1N8S6M3V3Q3F0X5B7/chat/messages", body={"content": "x"}),
            404)
        for mid in ("msg-999999", "nope", "msg-"):
            self.assertProblem(self.server.request("PUT", base + "/messages/" + mid,
                                                   body={"content": "x"}), 404)
            self.assertProblem(self.server.request("DELETE", base + "/messages/" + mid), 404)
            self.assertProblem(self.server.post(base + "/messages/%s/retry" % mid), 404)
        m = send(self.server, sid, "go")
        self.assertProblem(self.server.request("PUT", base + "/messages/" + m["id"],
                                               body={"content": ""}), 400)
        self.assertProblem(self.server.post(base + "/messages/%s/retry" % m["id"],
                                            body={"x": 1}), 400)
        wait_status(self.server, sid, "completed")
        self.assertProblem(self.server.request("PUT", base + "/messages/" + m["id"],
                                               body={"content": "again"}), 410)
        self.assertProblem(self.server.request("DELETE", base + "/messages/" + m["id"]), 410)
        self.assertEqual(chat(self.server, sid)["total"], 1)


if __name__ == "__main__":
    ahtest.main()
