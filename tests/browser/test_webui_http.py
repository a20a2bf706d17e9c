"""`ah webui` serves the embedded web UI (issue 14): index.html at / and at the client-side
routes, hashed immutable assets with gzip variants and ETags, a strict CSP; the API keeps its
own answers; `ah agent access-point` serves no UI; a port in use is one line and exit 1;
--open runs xdg-open when there is one. The browser behaviour is in webui.mjs beside this file."""

import gzip
import os
import re
import stat
import subprocess
import tempfile
import time
import unittest

import ahtest

BUDGET_GZ = 250 * 1024


def ui_get(server, path, headers=None):
    # record_it=False: these answers are the UI's, not the API's, so the contract check skips them
    return server.request("GET", path, headers=headers, record_it=False)


class WebUi(ahtest.ServerTest):
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = ahtest.Server(command=("webui",))

    def index(self):
        r = ui_get(self.server, "/")
        self.assertEqual(r.status, 200, r)
        return r

    def assets(self):
        html = self.index().body.decode()
        js = re.search(r'src="(/assets/main-[A-Z0-9]+\.js)"', html)
        css = re.search(r'href="(/assets/main-[A-Z0-9]+\.css)"', html)
        self.assertTrue(js and css, html)
        return js.group(1), css.group(1)

    def test_index_is_html_with_a_strict_csp(self):
        r = self.index()
        self.assertTrue(r.header("content-type").startswith("text/html"), r)
        csp = r.header("content-security-policy")
        self.assertIsNotNone(csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertNotIn("unsafe-eval", csp)
        self.assertIn("default-src 'none'", csp)
        self.assertIn("script-src 'self'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertEqual(r.header("cache-control"), "no-cache")
        self.assertEqual(r.header("x-content-type-options"), "nosniff")
        body = r.body.decode()
        self.assertIn('<div id="app">', body)
        # no inline script or style: the CSP would block them
        self.assertNotRegex(body, r"<script(?![^>]*\bsrc=)[^>]*>")
        self.assertNotIn("<style", body)
        self.assertNotIn(" style=", body)

    def test_client_routes_answer_the_application(self):
        plain = self.index().body
        for path in ("/new", "/sessions/01J0000000000000000000000", "/new?draft=x"):
            r = ui_get(self.server, path)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, plain, path)

    def test_etag_and_304(self):
        r = self.index()
        etag = r.header("etag")
        self.assertRegex(etag, r'^"[0-9a-f]+-[0-9a-f]+"$')
        again = ui_get(self.server, "/", headers={"If-None-Match": etag})
        self.assertEqual(again.status, 304, again)
        self.assertEqual(again.body, b"")
        self.assertEqual(again.header("etag"), etag)
        other = ui_get(self.server, "/", headers={"If-None-Match": '"0-0"'})
        self.assertEqual(other.status, 200)

    def test_hashed_assets_are_immutable_and_gzipped(self):
        total = 0
        for path in self.assets():
            plain = ui_get(self.server, path)
            self.assertEqual(plain.status, 200, plain)
            self.assertIsNone(plain.header("content-encoding"))
            self.assertIn("immutable", plain.header("cache-control"))
            self.assertIn("max-age=31536000", plain.header("cache-control"))
            self.assertEqual(plain.header("vary"), "Accept-Encoding")
            z = ui_get(self.server, path, headers={"Accept-Encoding": "br, gzip;q=0.8"})
            self.assertEqual(z.header("content-encoding"), "gzip", z)
            self.assertEqual(gzip.decompress(z.body), plain.body)
            self.assertNotEqual(z.header("etag"), plain.header("etag"))
            refused = ui_get(self.server, path, headers={"Accept-Encoding": "gzip;q=0"})
            self.assertIsNone(refused.header("content-encoding"))
            ctype = "text/javascript" if path.endswith(".js") else "text/css"
            self.assertTrue(plain.header("content-type").startswith(ctype), plain)
            total += len(z.body)
        self.assertLessEqual(total, BUDGET_GZ, "bundle over budget: %d bytes gzipped" % total)
        print("web UI bundle: %d bytes gzipped" % total)

    def test_one_cache_control_per_answer(self):
        # Two Cache-Control headers would combine in the browser, and no-store would win over
        # immutable: each answer carries exactly the UI's own.
        js, _ = self.assets()
        for path, want in (("/", "no-cache"), (js, "public, max-age=31536000, immutable")):
            c = self.server.connect()
            try:
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                got = [v for k, v in r.getheaders() if k.lower() == "cache-control"]
            finally:
                c.close()
            self.assertEqual(got, [want], path)

    def test_unknown_files_and_api_paths_are_404_problems(self):
        for path in ("/assets/main-NOPE.js", "/nope.js", "/index.html.gz", "/assets/..%2Fx.js",
                     "/api/v1/no-such-thing", "/api/nope", "/_ah/nope"):
            r = ui_get(self.server, path)
            self.assertEqual(r.status, 404, (path, r))
            self.assertEqual(r.header("content-type"), "application/problem+json", (path, r))

    def test_api_still_answers(self):
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)
        self.assertEqual(ui_get(self.server, "/_ah/healthz").status, 200)
        r = self.server.get("/api/v1/sessions")
        self.assertEqual(r.status, 200, r)
        self.assertIn("items", r.json())

    def test_favicon(self):
        r = ui_get(self.server, "/favicon.svg")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-type"), "image/svg+xml")


class AccessPointServesNoUi(ahtest.ServerTest):
    def test_root_is_not_found(self):
        r = ui_get(self.server, "/")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(ui_get(self.server, "/new").status, 404)


class WebUiCommand(unittest.TestCase):
    def test_port_in_use_is_one_line_and_exit_1(self):
        first = ahtest.Server(command=("webui",))
        try:
            with tempfile.TemporaryDirectory(prefix="ah-webui-") as tmp:
                env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
                env.update(HOME=tmp, XDG_DATA_HOME=tmp, XDG_CONFIG_HOME=tmp, XDG_STATE_HOME=tmp,
                           XDG_RUNTIME_DIR=tmp)
                p = subprocess.run([ahtest.AH_BIN, "webui", "--port", str(first.port), "--db",
                                    os.path.join(tmp, "db")], env=env, capture_output=True,
                                   timeout=60, stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, 1, p)
            lines = [l for l in p.stderr.decode().splitlines() if not l.startswith("{")]
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertIn(str(first.port), lines[0])
            self.assertTrue(lines[0].startswith("ah webui: "), lines[0])
        finally:
            self.assertEqual(first.close(), 0)

    def test_open_runs_xdg_open_with_the_url(self):
        with tempfile.TemporaryDirectory(prefix="ah-open-") as bindir:
            seen = os.path.join(bindir, "seen")
            opener = os.path.join(bindir, "xdg-open")
            with open(opener, "w") as f:
                f.write('#!/bin/sh\nprintf "%%s" "$1" > %s.tmp && mv %s.tmp %s\n' % (seen, seen, seen))
            os.chmod(opener, stat.S_IRWXU)
            s = ahtest.Server(command=("webui",), args=["--open"],
                              env={"PATH": bindir + ":" + os.environ.get("PATH", "")})
            try:
                deadline = time.monotonic() + 30
                while not os.path.exists(seen) and time.monotonic() < deadline:
                    time.sleep(0.05)
                with open(seen) as f:
                    self.assertEqual(f.read(), "http://127.0.0.1:%d" % s.port)
            finally:
                self.assertEqual(s.close(), 0)

    def test_open_without_xdg_open_is_skipped_quietly(self):
        with tempfile.TemporaryDirectory(prefix="ah-open-") as bindir:
            s = ahtest.Server(command=("webui",), args=["--open"], env={"PATH": bindir})
            try:
                self.assertEqual(ui_get(s, "/").status, 200)
                self.assertIn("xdg-open is not installed", s.stderr())
            finally:
                self.assertEqual(s.close(), 0)


if __name__ == "__main__":
    ahtest.main()
