"""Issue 15: POST /sessions/{id}/chat/stream sends a message and streams the agent's reply as SSE
(message_start, content_delta, tool_call, message_complete), closing when the agent reports the
end of its turn (the scripted agent's `usage` step, as claude-code's result) or the session
stops running; the reply is the same one GET …/chat shows afterwards."""

import json

import ahtest
from ahtest import ServerTest
from sessiontest import create, task, wait_status
from test_chat import chat, said

SSE = {"Accept": "text/event-stream"}


def frames(body):
    out = []
    for block in body.decode("utf-8").split("\n\n"):
        ev, data, fid = None, None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line.startswith("id: "):
                fid = int(line[4:])
        if ev:
            out.append((ev, data, fid))
    return out


class Stream(ServerTest):
    def stream(self, sid, body, status=200, headers=SSE):
        r = self.server.post("/api/v1/sessions/%s/chat/stream" % sid, body=body, headers=headers,
                             timeout=60)
        self.assertEqual(r.status, status, r)
        return r

    def test_turns_stream_and_match_the_history(self):
        scenario = [{"say": "Hello."}, {"wait_prompt": True},
                    {"tool": "grep", "args": {"pattern": "TODO"}, "output": "a.c:1: TODO"},
                    {"say": "Found one."}, {"say": "In a.c."},
                    {"usage": {"input_tokens": 1200, "output_tokens": 34}},
                    {"wait_prompt": True}, {"say": "Bye."}]
        sid = create(self.server, task(scenario))["id"]
        said(self.server, sid, "Hello.")
        r = self.stream(sid, {"content": "look for TODO", "context_files": ["a.c"],
                              "stream": True})
        self.assertEqual(r.header("content-type"), "text/event-stream")
        f = frames(r.body)
        self.assertEqual([e for e, _, _ in f], ["message_start", "tool_call", "content_delta",
                                                "content_delta", "message_complete"])
        start, call, d1, d2, done = [d for _, d, _ in f]
        self.assertEqual(call, {"tool_name": "grep", "tool_args": {"pattern": "TODO"}})
        self.assertEqual((d1["delta"], d2["delta"]), ("Found one.", "In a.c."))
        self.assertEqual(done, {"id": start["id"], "final_content": "Found one.\n\nIn a.c."})
        ids = [fid for _, _, fid in f]
        self.assertEqual(ids, sorted(ids))
        # the same turn in the history: the user message, then the reply starting at start.id
        h = chat(self.server, sid)["messages"]
        user = [m for m in h if m["role"] == "user"]
        self.assertEqual((user[-1]["content"], user[-1]["context_files"]),
                         ("look for TODO", ["a.c"]))
        reply = [m for m in h if m["id"] == start["id"]][0]
        self.assertEqual(reply["tool_calls"][0]["function"]["name"], "grep")
        self.assertGreater(int(start["id"][4:]), int(user[-1]["id"][4:]))

        # the last turn ends with the session: message_complete at its final status
        f = frames(self.stream(sid, {"content": "thanks"}).body)
        self.assertEqual([e for e, _, _ in f], ["message_start", "content_delta",
                                                "message_complete"])
        self.assertEqual(f[-1][1]["final_content"], "Bye.")
        wait_status(self.server, sid, "completed")
        # ended: refused, nothing stored
        total = chat(self.server, sid)["total"]
        self.assertProblem(self.stream(sid, {"content": "more?"}, 410), 410)
        self.assertEqual(chat(self.server, sid)["total"], total)

    def test_paused_session_and_bad_requests(self):
        for bad in ({"input_tokens": -1, "output_tokens": 0}, {"input_tokens": 1}, 5):
            r = self.server.post("/api/v1/tasks", body=task([{"usage": bad}]))
            body = self.assertProblem(r, 400)
            self.assertIn("agents[0].settings.scenario[0]", body["errors"], body)
        sid = create(self.server, task([{"wait_prompt": True}, {"say": "ok"}]))["id"]
        wait_status(self.server, sid, "running")
        self.assertProblem(self.stream(sid, {"content": "x", "stream": False}, 400), 400)
        self.assertProblem(self.stream(sid, {}, 400), 400)
        self.assertProblem(self.stream(sid, {"content": "x", "nope": 1}, 400), 400)
        self.assertProblem(self.stream(sid, {"content": "x", "attachments": [
            {"type": "file", "file_path": "a"}]}, 400), 400)
        self.assertProblem(self.stream(sid, {"content": "x"}, 406,
                                       headers={"Accept": "application/json"}), 406)
        self.assertProblem(self.stream("01J0000000000000000000000Z", {"content": "x"}, 404), 404)
        r = self.server.post("/api/v1/sessions/%s/pause" % sid)
        self.assertIn(r.status, (200, 202), r)
        wait_status(self.server, sid, "paused")
        self.assertProblem(self.stream(sid, {"content": "x"}, 409), 409)
        self.assertEqual(chat(self.server, sid)["total"], 0)
        self.server.post("/api/v1/sessions/%s/stop" % sid)

    def test_pause_during_a_turn_completes_the_stream(self):
        sid = create(self.server, task([{"wait_prompt": True}, {"say": "working"},
                                        {"sleep": 600000}]))["id"]
        wait_status(self.server, sid, "running")
        import threading
        got = {}
        t = threading.Thread(target=lambda: got.update(r=self.stream(sid, {"content": "go"})))
        t.start()
        said(self.server, sid, "working")
        r = self.server.post("/api/v1/sessions/%s/pause" % sid)
        self.assertIn(r.status, (200, 202), r)
        t.join(60)
        self.assertFalse(t.is_alive())
        f = frames(got["r"].body)
        self.assertEqual([e for e, _, _ in f], ["message_start", "content_delta",
                                                "message_complete"])
        self.assertEqual(f[-1][1]["final_content"], "working")
        self.server.post("/api/v1/sessions/%s/stop" % sid)


if __name__ == "__main__":
    ahtest.main()
