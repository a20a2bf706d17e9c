"""What the server keeps and shows about its users (issue 10 items 14 and 15):

- D28: the daemons run with umask 077: the data directory is 0700, the database and its WAL/SHM
  0600, and recordings, prompts and workspaces are the owner's alone, even when the directory
  and the database were left open by an earlier version;
- D29: the userinfo of a repository URL (`https://user:TOKEN@host/…`) is kept for git but shown
  as `***` in every answer, event, log line and error."""

import http.server
import os
import stat
import tempfile
import threading
import time
import unittest

import ahtest
from ahtest import Server
from sessiontest import create, events, task, wait_status

TOKEN = "ghp_TOPSECRET0123456789"


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


class PrivateFiles(unittest.TestCase):
    def setUp(self):
        self.server = None

    def tearDown(self):
        if self.server:
            self.server.close()

    def test_modes(self):
        tmp = tempfile.mkdtemp(prefix="ah-it-")
        data = os.path.join(tmp, "data")
        os.makedirs(data, mode=0o755)
        os.chmod(data, 0o755)
        db = os.path.join(data, "state.db")
        with open(db, "wb"):
            pass
        os.chmod(db, 0o644)  # as an older version left it
        template = os.path.join(tmp, "template")
        os.makedirs(template)
        os.chmod(template, 0o755)
        with open(os.path.join(template, "README"), "w") as f:
            f.write("hello\n")
        self.server = s = Server(tmpdir=tmp, db=db,
                                 args=("--data-dir", data, "--workspace-template", template))
        s.own_tmp = True
        sid = create(s, task([{"edit": "new.txt", "content": "x\n"}, {"log": "done"}]))["id"]
        wait_status(s, sid, "completed")
        self.assertEqual(mode(data), 0o700)
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            self.assertEqual(mode(os.path.join(data, name)), 0o600, name)
        sess = os.path.join(data, "sessions", sid)
        self.assertEqual(mode(sess), 0o700)
        for name in ("recording.cast", "prompt.txt", "settings.json", "recorder.log"):
            self.assertEqual(mode(os.path.join(sess, name)), 0o600, name)
        self.assertEqual(mode(os.path.join(data, "workspaces")), 0o700)
        ws = os.path.join(data, "workspaces", sid)
        self.assertEqual(mode(ws), 0o700)
        self.assertEqual(mode(os.path.join(ws, "new.txt")), 0o600)  # the agent's umask too


class NotFoundRemote:
    """An HTTP server that answers 404 to everything (git reports the repository missing)."""

    def __init__(self):
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.port = self.httpd.server_address[1]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class SecretsInUrls(ahtest.ServerTest):
    server_args = ("--log-level", "debug", "--clone-timeout-ms", "1500",
                   "--refs-timeout-ms", "1500")

    def test_userinfo_is_never_shown(self):
        s = self.server
        remote = NotFoundRemote()
        try:
            url = "http://bot:%s@127.0.0.1:%d/team/widgets.git" % (TOKEN, remote.port)
            shown = "http://***@127.0.0.1:%d/team/widgets.git" % remote.port
            start = len(ahtest.RESPONSES)
            r = s.post("/api/v1/tasks", body=task([{"log": "x"}],
                                                  repo={"mode": "git", "url": url}))
            self.assertEqual(r.status, 201, r)
            sid = r.json()["id"]
            st = wait_status(s, sid, "failed", timeout=60)
            self.assertIn(shown, st["error"])
            self.assertEqual(st["repo"]["url"], shown)
            evs = events(s, sid)
            self.assertTrue(any(shown in (e.get("error") or "") for e in evs), evs)
            repos = s.get("/api/v1/repos").json()["items"]
            self.assertEqual([x["remoteUrl"] for x in repos], [shown])
            path = "/api/v1/repositories/%s/branches" % repos[0]["id"]
            # asked in the background: "being fetched" at first, then git's own failure
            end = time.monotonic() + 60
            while time.monotonic() < end:
                b = s.get(path)
                self.assertEqual(b.status, 503, b)
                if "being fetched" not in b.json()["detail"]:
                    break
                time.sleep(0.1)
            self.assertIn(shown, b.json()["detail"])
            s.get("/api/v1/sessions/" + sid)
            s.get("/api/v1/sessions?perPage=200")
            s.get("/api/v1/sessions/%s/events" % sid,
                  headers={"Accept": "text/event-stream"}, timeout=30)
            seen = ahtest.RESPONSES[start:]
            self.assertGreater(len(seen), 6)
            for resp in seen:
                self.assertNotIn(TOKEN.encode(), resp.body, resp)
                for k, v in resp.headers.items():
                    self.assertNotIn(TOKEN, v, (k, resp))
            log = s.stderr()
            self.assertIn(shown.split("/team")[0], log)  # the URL was logged, redacted
            self.assertNotIn(TOKEN, log)
            for root, _, files in os.walk(os.path.join(s.tmp, "sessions")):
                for name in files:
                    if name.endswith(".log"):
                        with open(os.path.join(root, name), errors="replace") as f:
                            self.assertNotIn(TOKEN, f.read(), name)
        finally:
            remote.close()


if __name__ == "__main__":
    ahtest.main()
