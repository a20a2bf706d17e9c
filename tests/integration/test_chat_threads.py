"""Issue 15: chat threads (API.md §7.7): opened with POST …/chat/threads, messages sent to them
with thread_id, the agent's replies in the thread of the message they answer, GET …/chat
filtered by thread_id, GET …/chat/threads counting it all, and all of it surviving a restart."""

import ahtest
from ahtest import ServerTest
from sessiontest import create, task, wait_status
from test_chat import chat, received, said, send


class Threads(ServerTest):
    def threads(self, sid):
        r = self.server.get("/api/v1/sessions/%s/chat/threads" % sid)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_threads(self):
        scenario = [{"wait_prompt": True}, {"say": "Main answer."}, {"wait_prompt": True},
                    {"tool": "ls", "args": {"path": "."}, "output": "a.c"},
                    {"say": "Thread answer."}, {"wait_prompt": True}, {"say": "Second."},
                    {"wait_prompt": True}]
        sid = create(self.server, task(scenario))["id"]
        wait_status(self.server, sid, "running")
        self.assertEqual(self.threads(sid), {"threads": [], "total": 0})
        send(self.server, sid, "hello")
        said(self.server, sid, "Main answer.")
        # a thread without a first message is only recorded: nothing reaches the agent
        r = self.server.post("/api/v1/sessions/%s/chat/threads" % sid, body={"title": "Empty"})
        self.assertEqual(r.status, 201, r)
        empty = r.json()
        self.assertRegex(empty["id"], r"^thread-\d+$")
        self.assertIsNone(empty["initial_message_id"])
        r = self.server.post("/api/v1/sessions/%s/chat/threads" % sid, body={
            "title": "Refactor", "initial_message": {"content": "list files",
                                                     "context_files": ["a.c"]}})
        self.assertEqual(r.status, 201, r)
        t = r.json()
        self.assertEqual(t["title"], "Refactor")
        self.assertRegex(t["initial_message_id"], r"^msg-\d+$")
        received(self.server, sid, 2)
        said(self.server, sid, "Thread answer.")
        m = send(self.server, sid, "and then?", thread_id=t["id"])
        self.assertEqual(m["thread_id"], t["id"])
        said(self.server, sid, "Second.")

        def shape(h):
            return [(x["role"], x["content"], x.get("thread_id")) for x in h["messages"]]
        in_thread = chat(self.server, sid, "?thread_id=" + t["id"])
        self.assertEqual(shape(in_thread), [("user", "list files", t["id"]),
                                            ("assistant", "", t["id"]),
                                            ("assistant", "Thread answer.", t["id"]),
                                            ("user", "and then?", t["id"]),
                                            ("assistant", "Second.", t["id"])])
        self.assertEqual(in_thread["total"], 5)
        self.assertEqual(in_thread["messages"][0]["id"], t["initial_message_id"])
        self.assertEqual(in_thread["messages"][0]["context_files"], ["a.c"])
        self.assertEqual(in_thread["messages"][1]["tool_calls"][0]["function"]["name"], "ls")
        whole = chat(self.server, sid)
        self.assertEqual(shape(whole)[:2], [("user", "hello", None),
                                            ("assistant", "Main answer.", None)])
        self.assertEqual(whole["total"], 7)
        self.assertEqual(chat(self.server, sid, "?thread_id=" + empty["id"])["total"], 0)

        listed = self.threads(sid)
        self.assertEqual(listed["total"], 2)
        e, r = listed["threads"]
        self.assertEqual((e["id"], e["title"], e["message_count"], e["participants"],
                          e["status"]), (empty["id"], "Empty", 0, [], "active"))
        self.assertEqual((r["id"], r["message_count"], r["participants"]),
                         (t["id"], 5, ["user", "agent"]))
        self.assertEqual(r["last_activity"], in_thread["messages"][-1]["timestamp"])

        # unknown thread, bad bodies: 400, nothing stored
        r = self.server.post("/api/v1/sessions/%s/chat/messages" % sid,
                             body={"content": "x", "thread_id": "thread-999999"})
        body = self.assertProblem(r, 400)
        self.assertIn("thread_id", body["errors"])
        for bad, field in (({}, "title"), ({"title": ""}, "title"), ({"title": "x" * 257}, "title"),
                           ({"title": "t", "initial_message": {}}, "initial_message.content"),
                           ({"title": "t", "initial_message": {"content": "x", "y": 1}},
                            "initial_message.y"),
                           ({"title": "t", "other": 1}, "other")):
            r = self.server.post("/api/v1/sessions/%s/chat/threads" % sid, body=bad)
            body = self.assertProblem(r, 400)
            self.assertIn(field, body["errors"], (bad, body))
        self.assertEqual(self.threads(sid)["total"], 2)

        # a restart keeps it; an ended session's threads are closed and take nothing more
        self.server.post("/api/v1/sessions/%s/stop" % sid)
        wait_status(self.server, sid, {"stopped", "completed", "cancelled"})
        self.server.stop()
        self.server.start()
        after = self.threads(sid)
        self.assertEqual([x["status"] for x in after["threads"]], ["closed", "closed"])
        self.assertEqual([x["message_count"] for x in after["threads"]], [0, 5])
        self.assertEqual(chat(self.server, sid, "?thread_id=" + t["id"]), in_thread)
        r = self.server.post("/api/v1/sessions/%s/chat/threads" % sid,
                             body={"title": "late", "initial_message": {"content": "x"}})
        self.assertProblem(r, 410)


if __name__ == "__main__":
    ahtest.main()
