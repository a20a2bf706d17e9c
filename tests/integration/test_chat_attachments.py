"""Issue 15 item 2: attachments of chat messages on the real binary — workspace files (preview or
whole) and data: URL images, stored content-addressed under the data directory, checked by
content, counted in tokens, delivered to the agent; hostile ones refused with nothing stored."""

import base64
import json
import os
import struct
import tempfile
import zlib

import ahtest
from ahtest import ServerTest
from sessiontest import create, events, task, wait_for, wait_status
from test_chat import chat, said, send

NOTES = "".join("line %d of the notes\n" % i for i in range(1, 101))


def png(w=4, h=3):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    raw = b"".join(b"\0" + b"\xff\x00\x00" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def data_url(data, mime="image/png"):
    return "data:%s;base64,%s" % (mime, base64.b64encode(data).decode())


class Attachments(ServerTest):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-att-")
        script = os.path.join(cls.tmp, "wait.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho waiting\nwhile [ ! -e \"$1\" ]; do sleep 0.1; done\n")
        os.chmod(script, 0o755)
        cfg = os.path.join(cls.tmp, "agents.toml")
        with open(cfg, "w") as f:
            f.write("[agents.waiter]\ncommand = %s\nformat = \"text\"\n" % json.dumps(script))
            # the script and its stop file live here: visible (read-only) inside the sandbox,
            # whose /tmp is otherwise a private one (D52)
            f.write("[sandbox.default]\nread-only = [%s]\n" % json.dumps(cls.tmp))
        cls.server_args = ("--config", cfg)
        super().setUpClass()

    def stored(self):
        """Every file under the data directory's attachments/."""
        root = os.path.join(self.server.data_dir, "attachments")
        out = set()
        for d, _, files in os.walk(root):
            out |= {os.path.join(d, f) for f in files}
        return out

    def session(self):
        scenario = [{"edit": "notes.txt", "content": NOTES}, {"say": "ready"},
                    {"wait_prompt": True}, {"wait_prompt": True}, {"sleep": 120000}]
        sid = create(self.server, task(scenario))["id"]
        said(self.server, sid, "ready")
        s = self.server.get("/api/v1/sessions/" + sid).json()
        return sid, s["workspace"]["mountPath"]

    def attach(self, sid, mid, *items):
        return self.server.post("/api/v1/sessions/%s/chat/messages/%s/attachments" % (sid, mid),
                                body={"attachments": list(items)})

    def test_file_and_image(self):
        sid, ws = self.session()
        m = send(self.server, sid, "look at these")
        wait_for(lambda: any(e["message"] == "received prompt: look at these"
                             for e in events(self.server, sid, type="log")), 30, "the message read")
        r = self.attach(sid, m["id"], {"type": "file", "file_path": "notes.txt",
                                       "preview_lines": 2},
                        {"type": "file", "file_path": "./notes.txt", "include_full_content": True},
                        {"type": "image", "data_url": data_url(png()), "filename": "red.png"})
        self.assertEqual(r.status, 201, r)
        body = r.json()
        self.assertEqual(body["id"], m["id"])
        prev, full, img = body["attachments"]
        self.assertEqual(prev["content"], "line 1 of the notes\nline 2 of the notes\n")
        self.assertEqual(prev["size_bytes"], len(NOTES))
        self.assertEqual(prev["file_path"], "notes.txt")
        # o200k_base, as counted by tiktoken (not 40 bytes / 4 = 10)
        self.assertEqual(prev["token_count"], 14)
        self.assertEqual(full["content"], NOTES)
        self.assertEqual(full["sha256"], prev["sha256"])  # one stored copy
        self.assertEqual(img["type"], "image")
        self.assertEqual(img["filename"], "red.png")
        self.assertEqual(img["mime_type"], "image/png")
        self.assertEqual(img["token_count"], 255)  # one 512-px tile + 85
        for a in body["attachments"]:
            self.assertTrue(a["id"].startswith("att-"))
        # content-addressed under the data directory
        blobs = self.stored()
        self.assertEqual(len(blobs), 2)
        self.assertIn(os.path.join(self.server.data_dir, "attachments", prev["sha256"][:2],
                                   prev["sha256"]), blobs)
        # the agent got them in its prompt
        want = "received prompt: [attachments for %s]" % m["id"]
        try:
            wait_for(lambda: any(e["message"] == want
                                 for e in events(self.server, sid, type="log")), 30,
                     "the attachments delivered")
        except AssertionError:
            raise AssertionError("%s not in %s" % (want, [e.get("message") for e in
                                                          events(self.server, sid)]))
        # read back: the record, the text, the bytes
        url = "/api/v1/sessions/%s/chat/messages/%s/attachments/" % (sid, m["id"])
        g = self.server.get(url + prev["id"])
        self.assertEqual(g.status, 200, g)
        self.assertEqual(g.json()["content"], prev["content"])
        c = self.server.get(url + img["id"] + "/content")
        self.assertEqual(c.status, 200)
        self.assertEqual(c.header("content-type"), "image/png")
        self.assertEqual(c.body, png())
        c = self.server.get(url + full["id"] + "/content")
        self.assertEqual(c.body.decode(), NOTES)
        # the history shows them on the message
        h = chat(self.server, sid)["messages"]
        mine = [x for x in h if x["id"] == m["id"]][0]
        self.assertEqual([a["id"] for a in mine["attachments"]],
                         [prev["id"], full["id"], img["id"]])
        # detach one
        d = self.server.request("DELETE", url + full["id"])
        self.assertEqual(d.status, 204, d)
        mine = [x for x in chat(self.server, sid)["messages"] if x["id"] == m["id"]][0]
        self.assertEqual([a["id"] for a in mine["attachments"]], [prev["id"], img["id"]])
        self.assertProblem(self.server.get(url + full["id"]), 404)
        self.assertProblem(self.server.get(url + "att-nope"), 404)
        self.stop(sid)

    def stop(self, sid):
        r = self.server.post("/api/v1/sessions/%s/stop" % sid)
        self.assertEqual(r.status, 202, r)
        wait_status(self.server, sid, {"stopped", "completed", "failed"})

    def test_hostile(self):
        sid, ws = self.session()
        m = send(self.server, sid, "hostile")
        with open(os.path.join(ws, "big.txt"), "w") as f:
            f.write("x" * (5 * 1024 * 1024 + 1))
        with open(os.path.join(ws, "bin.dat"), "wb") as f:
            f.write(b"abc\0def")
        with open(os.path.join(ws, "latin1.txt"), "wb") as f:
            f.write(b"caf\xe9\n")
        os.symlink("/etc/passwd", os.path.join(ws, "passwd"))
        os.mkdir(os.path.join(ws, "dir"))
        before = self.stored()
        ok = {"type": "file", "file_path": "notes.txt"}
        cases = [
            (413, {"type": "file", "file_path": "big.txt"}),
            (415, {"type": "file", "file_path": "bin.dat"}),
            (415, {"type": "file", "file_path": "latin1.txt"}),
            (400, {"type": "file", "file_path": "../../etc/passwd"}),
            (400, {"type": "file", "file_path": "/etc/passwd"}),
            (400, {"type": "file", "file_path": ".git/config"}),
            (403, {"type": "file", "file_path": "passwd"}),
            (404, {"type": "file", "file_path": "missing.txt"}),
            (400, {"type": "file", "file_path": "dir"}),
            (400, {"type": "file", "file_path": "notes.txt", "preview_lines": -1}),
            (400, {"type": "file", "file_path": "notes.txt", "colour": "red"}),
            (400, {"type": "image", "data_url": "http://example.com/x.png"}),
            (400, {"type": "image", "data_url": "data:image/png,rawbytes"}),
            (400, {"type": "image", "data_url": "data:image/png;base64,@@@@"}),
            (400, {"type": "image", "data_url": "data:image/png;base64,abc"}),
            (400, {"type": "image", "data_url": data_url(png()), "filename": "../x.png"}),
            (415, {"type": "image", "data_url": data_url(b"hello", "text/plain")}),
            (415, {"type": "image", "data_url": data_url(png(), "image/jpeg")}),
            (415, {"type": "image", "data_url": data_url(b"GIF89a" + b"\0" * 20)}),
            (413, {"type": "image",
                   "data_url": data_url(png()[:16] + b"\0" * (5 * 1024 * 1024))}),
            (400, {"type": "video"}),
            (400, "notes.txt"),
        ]
        for status, item in cases:
            with self.subTest(item=str(item)[:80]):
                # a good item first: a bad one after it still stores nothing
                self.assertProblem(self.attach(sid, m["id"], ok, item), status)
        self.assertProblem(self.attach(sid, m["id"], *([ok] * 9)), 400)
        self.assertProblem(self.server.post(
            "/api/v1/sessions/%s/chat/messages/%s/attachments" % (sid, m["id"]), body={}), 400)
        self.assertProblem(self.attach(sid, "msg-99999", ok), 404)
        self.assertEqual(self.stored(), before)
        h = chat(self.server, sid)["messages"]
        self.assertEqual([x for x in h if x["id"] == m["id"]][0]["attachments"], [])
        # the agent's own messages take no attachments
        ready = [x for x in h if x["content"] == "ready"][0]
        self.assertProblem(self.attach(sid, ready["id"], ok), 409)
        self.stop(sid)

    def test_agent_without_images(self):
        stop = os.path.join(self.tmp, "stop-waiter")
        sid = create(self.server, task(agent="waiter", prompt=stop))["id"]
        wait_status(self.server, sid, "running")
        m = send(self.server, sid, "see this")
        before = self.stored()
        r = self.attach(sid, m["id"], {"type": "image", "data_url": data_url(png())})
        self.assertProblem(r, 422, "unsupported")
        self.assertIn("cannot take images", r.json()["detail"])
        self.assertEqual(self.stored(), before)
        open(stop, "w").close()
        wait_status(self.server, sid, "completed")
        self.assertProblem(self.attach(sid, m["id"], {"type": "file", "file_path": "x"}), 410)


if __name__ == "__main__":
    ahtest.main()
