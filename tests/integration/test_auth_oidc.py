"""OIDC sign-in for people (issue 13 item 3, D36) against a real glewlwyd (oidc_harness.py):
authorization code + PKCE S256 with state and nonce, the code exchanged off the HTTP threads,
the ID token verified, then a server-side session behind an HttpOnly SameSite=Lax cookie: API
calls through the cookie, CSRF refusals, role from the token's claims, idle and absolute
expiry, logout (revoked in the store, RP-initiated end_session URL), and the refusals: another
browser's or a replayed state, a tampered nonce or PKCE challenge, an issuer that is not the
provider's. Nothing secret (cookies, codes, states, tokens, the client secret) reaches the log
or the audit rows.
"""

import http.client
import http.cookies
import json
import time
import urllib.parse

import ahtest
import oidc_harness
from ahtest import ServerTest

USERS = {
    "alice": ("pw-alice-1", "acme", "operator"),
    "vic": ("pw-vic-1", "acme", "viewer"),
    "root": ("pw-root-1", "acme", "admin"),
    "nobody": ("pw-nobody-1", None, None),
}


class FixedPortServer(ahtest.Server):
    """An `ah` on a port chosen beforehand: the provider must know the redirect URI first."""

    def __init__(self, port, **kw):
        self.fixed_port = port
        super().__init__(**kw)

    def start(self, wait_ready=True, port=0):
        return super().start(wait_ready=wait_ready, port=port or self.fixed_port)


class Browser:
    """Cookies for one origin (the `ah` server), like a browser keeps them."""

    def __init__(self, server):
        self.server = server
        self.cookies = {}
        self.set_cookie_lines = []

    def request(self, method, target, body=None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            c.request(method, target, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            hs = r.getheaders()
        finally:
            c.close()
        for k, v in hs:
            if k.lower() == "set-cookie":
                self.set_cookie_lines.append(v)
                jar = http.cookies.SimpleCookie()
                jar.load(v)
                for name, m in jar.items():
                    if m.value and m["max-age"] != "0":
                        self.cookies[name] = m.value
                    else:
                        self.cookies.pop(name, None)
        resp = ahtest.Response(method, target.split("?")[0], r.status,
                               {k.lower(): v for k, v in hs}, data)
        ahtest.record(resp)
        return resp

    def session_info(self):
        r = self.request("GET", "/api/v1/auth/session")
        assert r.status == 200, r
        return r.json()

    def wait_session(self, want=("active",), timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            info = self.session_info()
            if info["status"] in want or info["status"] not in ("pending",):
                return info
            if time.monotonic() > deadline:
                raise AssertionError("the session stayed %s" % info)
            time.sleep(0.05)


def path_of(url):
    u = urllib.parse.urlsplit(url)
    return u.path + ("?" + u.query if u.query else "")


class Oidc(ServerTest):
    @classmethod
    def setUpClass(cls):
        cls.port = ahtest.free_port()
        cls.port2 = ahtest.free_port()
        base = "http://127.0.0.1:%d" % cls.port
        cls.idp = oidc_harness.Glewlwyd(
            ["%s/api/v1/auth/oidc/callback" % base,
             "http://127.0.0.1:%d/api/v1/auth/oidc/callback" % cls.port2],
            post_logout_redirect_uri=base + "/")
        try:
            for name, (pw, tenant, roles) in USERS.items():
                cls.idp.add_user(name, pw, tenant=tenant, roles=roles)
            cls.server = FixedPortServer(cls.port, args=cls.oidc_args(base))
        except BaseException:
            cls.idp.close()
            raise
        cls.secrets = [cls.idp.client_secret]

    @classmethod
    def oidc_args(cls, base, *extra):
        return ("--oidc-issuer", cls.idp.issuer, "--oidc-client-id", cls.idp.client_id,
                "--oidc-client-secret-file", cls.idp.client_secret_file,
                "--oidc-redirect-uri", base + "/api/v1/auth/oidc/callback",
                "--oidc-provider-name", "glewlwyd", "--oidc-claim-user", "name",
                "--oidc-post-logout-uri", base + "/") + tuple(extra)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.kill_sessions()
            super().tearDownClass()
        finally:
            cls.idp.close()

    # ---- helpers ----------------------------------------------------------------------------------

    def begin(self, browser, return_to="/sessions"):
        deadline = time.monotonic() + 30
        while True:  # discovery runs on the sign-in thread: 503 until it has
            r = browser.request("GET", "/api/v1/auth/oidc/login?returnTo=" +
                                urllib.parse.quote(return_to, safe=""))
            if r.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(r.status, 302, r)
        return r.header("location")

    def sign_in(self, user, server=None, return_to="/sessions", tamper=None):
        b = Browser(server or self.server)
        url = self.begin(b, return_to)
        if tamper:
            url = tamper(url)
        idp_session = self.idp.sign_in(user, USERS[user][0])
        back = self.idp.authorize(idp_session, url)
        self.secrets.append(urllib.parse.parse_qs(urllib.parse.urlsplit(back).query)["code"][0])
        self.secrets.append(b.cookies.get("ah_oidc_state"))
        r = b.request("GET", path_of(back))
        return b, r

    def signed_in(self, user, server=None):
        b, r = self.sign_in(user, server)
        self.assertEqual(r.status, 303, r)
        info = b.wait_session()
        self.assertEqual(info["status"], "active", info)
        self.secrets.append(b.cookies["ah_session"])
        return b, info

    # ---- the flow ---------------------------------------------------------------------------------

    def test_login_flow_cookie_api_csrf_and_logout(self):
        b = Browser(self.server)
        url = self.begin(b, "/sessions?status=running")
        u = urllib.parse.urlsplit(url)
        q = urllib.parse.parse_qs(u.query)
        self.assertEqual(u.scheme + "://" + u.netloc + u.path, self.idp.base + "/api/oidc/auth")
        self.assertEqual(q["response_type"], ["code"])
        self.assertEqual(q["client_id"], [self.idp.client_id])
        self.assertEqual(q["code_challenge_method"], ["S256"])
        self.assertRegex(q["code_challenge"][0], r"^[A-Za-z0-9_-]{43}$")
        self.assertIn("openid", q["scope"][0].split())
        for p in ("state", "nonce"):
            self.assertRegex(q[p][0], r"^[0-9a-f]{64}$")
        state_cookie = [c for c in b.set_cookie_lines if c.startswith("ah_oidc_state=")][0]
        for attr in ("HttpOnly", "SameSite=Lax", "Path=/api/v1/auth/oidc"):
            self.assertIn(attr, state_cookie)
        self.assertEqual(b.cookies["ah_oidc_state"], q["state"][0])

        back = self.idp.authorize(self.idp.sign_in("alice", USERS["alice"][0]), url)
        self.secrets.append(urllib.parse.parse_qs(urllib.parse.urlsplit(back).query)["code"][0])
        r = b.request("GET", path_of(back))
        self.assertEqual(r.status, 303, r)
        self.assertEqual(r.header("location"), "/sessions?status=running")
        line = [c for c in b.set_cookie_lines if c.startswith("ah_session=")][0]
        for attr in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="):
            self.assertIn(attr, line)
        self.assertNotIn("Secure", line)  # plain http redirect URI
        self.assertNotIn("ah_oidc_state", b.cookies)  # used up
        self.assertRegex(b.cookies["ah_session"], r"^[0-9a-f]{64}$")
        self.secrets.append(b.cookies["ah_session"])

        info = b.wait_session()
        self.assertEqual(info["status"], "active", info)
        self.assertEqual(info["user"]["id"], "Alice")  # --oidc-claim-user name
        self.assertEqual(info["user"]["tenantId"], "acme")
        self.assertEqual(info["user"]["role"], "operator")
        self.assertEqual(info["oidc"]["provider"], "glewlwyd")
        csrf = info["csrfToken"]

        # reads through the cookie
        r = b.request("GET", "/api/v1/sessions")
        self.assertEqual(r.status, 200, r)
        # an unsafe request through the cookie needs the CSRF token, and a same-site origin
        r = b.request("DELETE", "/api/v1/sessions/01HZZZZZZZZZZZZZZZZZZZZZZZ")
        self.assertProblem(r, 403, "authz")
        self.assertIn("CSRF", r.json()["detail"])
        r = b.request("DELETE", "/api/v1/sessions/01HZZZZZZZZZZZZZZZZZZZZZZZ",
                      headers={"X-CSRF-Token": "0" * 64})
        self.assertProblem(r, 403, "authz")
        r = b.request("DELETE", "/api/v1/sessions/01HZZZZZZZZZZZZZZZZZZZZZZZ",
                      headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"})
        self.assertProblem(r, 403, "authz")
        r = b.request("DELETE", "/api/v1/sessions/01HZZZZZZZZZZZZZZZZZZZZZZZ",
                      headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-origin"})
        self.assertEqual(r.status, 404, r)  # past authentication and CSRF: no such session
        r = b.request("POST", "/api/v1/drafts", {"prompt": "through the cookie"},
                      headers={"X-CSRF-Token": csrf})
        self.assertEqual(r.status, 201, r)
        # an operator cannot reach admin routes
        self.assertProblem(b.request("GET", "/api/v1/audit"), 403, "authz")

        # logout: CSRF token required; then the cookie is worthless
        self.assertProblem(b.request("POST", "/api/v1/auth/logout"), 403, "authz")
        old = b.cookies["ah_session"]
        r = b.request("POST", "/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
        self.assertEqual(r.status, 200, r)
        end = urllib.parse.urlsplit(r.json()["endSessionUrl"])
        self.assertEqual(end.scheme + "://" + end.netloc + end.path,
                         self.idp.base + "/api/oidc/end_session")
        eq = urllib.parse.parse_qs(end.query)
        self.assertEqual(eq["post_logout_redirect_uri"], ["http://127.0.0.1:%d/" % self.port])
        self.assertIn("id_token_hint", eq)
        self.secrets.append(eq["id_token_hint"][0])
        self.assertNotIn("ah_session", b.cookies)  # cleared
        b.cookies["ah_session"] = old  # a copy kept by an attacker is refused too
        r = b.request("GET", "/api/v1/sessions")
        self.assertProblem(r, 401, "auth")
        self.assertIn("signed out", r.json()["detail"])
        self.assertEqual(b.session_info()["status"], "signedOut")
        # signing out again is harmless (idempotent), and names no provider page
        r = b.request("POST", "/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("endSessionUrl", r.json())
        # a client asking for JSON gets the provider's URL instead of a redirect
        r = b.request("GET", "/api/v1/auth/oidc/login", headers={"Accept": "application/json"})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json()["authorizationUrl"].startswith(self.idp.base + "/api/oidc/auth?"))

        # the trail: login and logout of this session, by the user, in the tenant
        root, rinfo = self.signed_in("root")
        r = root.request("GET", "/api/v1/audit?action=auth.login&actor=oidc:Alice")
        self.assertEqual(r.status, 200, r)
        rows = r.json()["items"]
        self.assertTrue(rows and rows[0]["outcome"] == "success", rows)
        self.assertEqual(rows[0]["tenantId"], "acme")
        r = root.request("GET", "/api/v1/audit?action=auth.logout&actor=oidc:Alice")
        self.assertEqual(len(r.json()["items"]), 1, r)

    def test_viewer_reads_but_cannot_change(self):
        b, info = self.signed_in("vic")
        self.assertEqual(info["user"]["role"], "viewer")
        self.assertEqual(b.request("GET", "/api/v1/sessions").status, 200)
        r = b.request("POST", "/api/v1/drafts", {"prompt": "x"},
                      headers={"X-CSRF-Token": info["csrfToken"]})
        self.assertProblem(r, 403, "authz")
        self.assertIn("operator", r.json()["detail"])

    def test_a_header_credential_wins_over_the_cookie(self):
        b, info = self.signed_in("alice")
        r = b.request("GET", "/api/v1/sessions", headers={"X-API-Key": "ahk_0000_nope"})
        self.assertProblem(r, 401, "auth")

    def test_user_without_tenant_or_role_is_refused(self):
        b, r = self.sign_in("nobody")
        self.assertEqual(r.status, 303, r)
        info = b.wait_session(want=("failed",))
        self.assertEqual(info["status"], "failed", info)
        self.assertIn("tenant", info["error"])
        r = b.request("GET", "/api/v1/sessions")
        self.assertProblem(r, 401, "auth")
        self.assertIn("failed", r.json()["detail"])

    def test_logout_closes_the_sessions_streams(self):
        from ssetest import SSE
        b, info = self.signed_in("alice")
        task = {"prompt": "hi", "repo": {"mode": "none"}, "runtime": {"type": "local"},
                "agents": [{"type": "scripted", "settings": {"scenario": [{"sleep": 60000}]}}]}
        r = b.request("POST", "/api/v1/tasks", task, headers={"X-CSRF-Token": info["csrfToken"]})
        self.assertEqual(r.status, 201, r)
        stream = SSE(self.server, "/api/v1/sessions/%s/events?tail=0" % r.json()["id"],
                     headers={"Cookie": "ah_session=" + b.cookies["ah_session"]})
        self.assertEqual(stream.status, 200)
        self.assertEqual(b.request("POST", "/api/v1/auth/logout",
                                   headers={"X-CSRF-Token": info["csrfToken"]}).status, 200)
        t0 = time.monotonic()
        for kind, f in stream.frames(timeout=30):  # ends instead of sending keep-alives
            self.assertLess(time.monotonic() - t0, 20, "the signed-out session's stream goes on")
        self.assertTrue(stream.closed)

    # ---- refusals ---------------------------------------------------------------------------------

    def test_state_from_another_browser_or_replayed_is_refused(self):
        victim = Browser(self.server)
        attacker = Browser(self.server)
        url = self.begin(attacker)
        back = self.idp.authorize(self.idp.sign_in("alice", USERS["alice"][0]), url)
        # login CSRF: the attacker's callback URL opened in the victim's browser
        r = victim.request("GET", path_of(back))
        self.assertProblem(r, 400)
        self.assertIn("not started in this browser", r.json()["detail"])
        self.assertNotIn("ah_session", victim.cookies)
        # the right browser finishes it once; a replay is refused
        r = attacker.request("GET", path_of(back))
        self.assertEqual(r.status, 303, r)
        self.secrets.append(attacker.cookies["ah_session"])
        attacker.cookies["ah_oidc_state"] = urllib.parse.parse_qs(
            urllib.parse.urlsplit(back).query)["state"][0]
        r = attacker.request("GET", path_of(back))
        self.assertProblem(r, 400)
        self.assertIn("already used", r.json()["detail"])
        # a made-up state with a matching cookie is unknown
        fake = "ab" * 32
        victim.cookies["ah_oidc_state"] = fake
        r = victim.request("GET", "/api/v1/auth/oidc/callback?code=x&state=" + fake)
        self.assertProblem(r, 400)
        # the provider's refusal is a 403 naming its error code
        r = victim.request("GET", "/api/v1/auth/oidc/callback?error=access_denied&state=" + fake)
        self.assertProblem(r, 403, "authz")
        self.assertIn("access_denied", r.json()["detail"])

    def test_tampered_nonce_fails_the_sign_in(self):
        def nonce(url):
            return url.replace("&nonce=", "&nonce=0000")
        b, r = self.sign_in("alice", tamper=nonce)
        self.assertEqual(r.status, 303, r)
        info = b.wait_session(want=("failed",))
        self.assertEqual(info["status"], "failed", info)
        self.assertIn("nonce", info["error"])

    def test_pkce_is_checked_by_the_provider(self):
        def challenge(url):
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["code_challenge"][0]
            return url.replace(q, "A" * 43)
        b, r = self.sign_in("alice", tamper=challenge)
        self.assertEqual(r.status, 303, r)
        info = b.wait_session(want=("failed",))
        self.assertEqual(info["status"], "failed", info)
        self.assertIn("refused the code", info["error"])

    def test_bad_return_to_and_malformed_cookie(self):
        b = Browser(self.server)
        self.begin(b)  # discovery done
        for bad in ("//evil.example/", "https://evil.example/", "relative", "/a\\b"):
            r = b.request("GET", "/api/v1/auth/oidc/login?returnTo=" +
                          urllib.parse.quote(bad, safe=""))
            self.assertProblem(r, 400)
        b.cookies["ah_session"] = "not-hex"
        r = b.request("GET", "/api/v1/sessions")
        self.assertProblem(r, 401, "auth")
        self.assertEqual(b.session_info()["status"], "none")

    def test_expiry_idle_and_absolute(self):
        base = "http://127.0.0.1:%d" % self.port2
        s = FixedPortServer(self.port2, args=self.oidc_args(
            base, "--oidc-session-idle-s", "2", "--oidc-session-max-s", "5"))
        try:
            # idle: unused for longer than 2 s
            b, info = self.signed_in("alice", server=s)
            self.assertEqual(b.request("GET", "/api/v1/sessions").status, 200)
            deadline = time.monotonic() + 20
            while b.request("GET", "/api/v1/sessions").status == 200:  # noqa: each use renews
                self.assertLess(time.monotonic(), deadline)
                time.sleep(2.5)
            r = b.request("GET", "/api/v1/sessions")
            self.assertProblem(r, 401, "auth")
            self.assertIn("without activity", r.json()["detail"])
            # absolute: used every half second, it still ends 5 s after sign-in
            b, info = self.signed_in("alice", server=s)
            start = time.monotonic()
            while True:
                r = b.request("GET", "/api/v1/sessions")
                if r.status != 200:
                    break
                self.assertLess(time.monotonic() - start, 30)
                time.sleep(0.5)
            self.assertProblem(r, 401, "auth")
            self.assertIn("expired", r.json()["detail"])
            self.assertGreaterEqual(time.monotonic() - start, 3.5)
        finally:
            s.close()

    def test_issuer_mismatch_keeps_sign_in_closed(self):
        base = "http://127.0.0.1:%d" % self.port2
        args = list(self.oidc_args(base))
        args[1] = self.idp.issuer + "/"  # not the issuer its discovery document names
        s = FixedPortServer(self.port2, args=args)
        try:
            deadline = time.monotonic() + 30
            while "names the issuer" not in s.stderr():
                self.assertLess(time.monotonic(), deadline, s.stderr())
                time.sleep(0.1)
            b = Browser(s)
            r = b.request("GET", "/api/v1/auth/oidc/login")
            self.assertProblem(r, 503)
            self.assertFalse(b.session_info()["oidc"]["ready"])
            # credentials are required all the same: OIDC configured closes the local mode
            self.assertProblem(b.request("GET", "/api/v1/sessions"), 401, "auth")
        finally:
            s.close()

    def test_without_a_provider_the_routes_say_so(self):
        s = ahtest.Server()
        try:
            self.assertEqual(s.get("/api/v1/auth/session").json(), {"status": "none"})
            for path in ("/api/v1/auth/oidc/login", "/api/v1/auth/oidc/callback?code=x&state=y"):
                self.assertProblem(s.get(path), 422, "unsupported")
            self.assertProblem(s.post("/api/v1/auth/logout"), 422, "unsupported")
            # a cookie is no credential there: the local mode goes on
            self.assertEqual(s.get("/api/v1/sessions",
                                   headers={"Cookie": "ah_session=" + "ab" * 32}).status, 200)
        finally:
            s.close()

    def test_zz_secrets_never_reach_the_log_or_audit(self):
        # runs last (zz): everything the other tests handled
        self.signed_in("alice")
        text = self.server.stderr()
        secrets = [s for s in self.secrets if s]
        self.assertGreater(len(secrets), 5)
        for sec in secrets:
            self.assertNotIn(sec, text)
            n = ahtest.db_row(self.server.db,
                              "SELECT count(*) FROM audit_log WHERE coalesce(actor,'') ||"
                              " coalesce(credential_id,'') || coalesce(target,'') ||"
                              " coalesce(action,'') LIKE '%%%s%%'" % sec)
            self.assertEqual(n[0], "0", sec)
        # the store keeps hashes of cookies and states, never them
        for sec in secrets:
            n = ahtest.db_row(self.server.db, "SELECT count(*) FROM web_sessions WHERE"
                                              " token_hash = '%s' OR id = '%s'" % (sec, sec))
            self.assertEqual(n[0], "0")


if __name__ == "__main__":
    ahtest.main()
