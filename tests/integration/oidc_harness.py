"""oidc_harness — a real OpenID Provider for the tests: glewlwyd (Debian package) on a free loopback
port, with its SQLite database, configuration, signing key, OIDC plugin, one client and users made
here in a temporary directory.

    idp = Glewlwyd(["http://127.0.0.1:PORT/api/v1/auth/oidc/callback"])
    idp.add_user("alice", "secret-pw", tenant="acme", roles="operator")
    ...  idp.issuer, idp.client_id, idp.client_secret_file
    idp.close()

Everything glewlwyd knows is set up through its own admin API (logged in as its built-in `admin`
user), except the database schema, which comes from the package's SQLite init script.

`login(url)` plays a person at the provider without a browser: it signs the user in with
glewlwyd's password API, grants the client the `openid` scope, then follows the authorization
request to the redirect back to the relying party, and returns that redirect's URL (code and
state in its query). The browser tests instead sign in on the provider from Chromium.

Only the Python standard library and the `openssl` command are used.
"""

import http.client
import http.cookies
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse

GLEWLWYD = shutil.which("glewlwyd") or "/usr/bin/glewlwyd"
WEBAPP = "/usr/share/glewlwyd/webapp"  # its login page, for the tests in a real browser
INIT_SQL = "/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3"
MODULES = "/usr/lib/glewlwyd"
ADMIN_PASSWORD = "password"  # the init script's built-in admin


def available():
    return os.path.exists(GLEWLWYD) and os.path.exists(INIT_SQL)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """A tiny cookie-keeping HTTP client for one origin (glewlwyd's session cookie)."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.cookies = {}

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        if self.cookies:
            headers["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            for k, v in r.getheaders():
                if k.lower() == "set-cookie":
                    jar = http.cookies.SimpleCookie()
                    jar.load(v)
                    for name, m in jar.items():
                        if m.value:
                            self.cookies[name] = m.value
                        else:
                            self.cookies.pop(name, None)
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def ok(self, method, path, body=None, want=(200,)):
        status, headers, data = self.request(method, path, body)
        if status not in want:
            raise AssertionError("glewlwyd %s %s: %d %s" % (method, path, status,
                                                            data[:500].decode("utf-8", "replace")))
        return data


class Glewlwyd:
    def __init__(self, redirect_uris, client_id="agent-harbor", confidential=True,
                 post_logout_redirect_uri=None, code_duration=600):
        if not available():
            raise RuntimeError("glewlwyd is not installed (Debian package glewlwyd)")
        self.tmp = tempfile.mkdtemp(prefix="ah-idp-")
        self.port = _free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.issuer = self.base + "/api/oidc"  # what the plugin's discovery document names
        self.client_id = client_id
        self.client_secret = "cs-" + os.urandom(12).hex() if confidential else None
        self.client_secret_file = None
        self.proc = None
        self.log_path = os.path.join(self.tmp, "glewlwyd.log")
        try:
            self._database()
            self._webapp()
            self._config()
            self._start()
            self.admin = Client("127.0.0.1", self.port)
            self.admin.ok("POST", "/api/auth/", {"username": "admin", "password": ADMIN_PASSWORD})
            self._plugin(code_duration)
            self._client(redirect_uris, post_logout_redirect_uri)
        except BaseException:
            self.close()
            raise

    # ---- setup ---------------------------------------------------------------------------------

    def _database(self):
        import sqlite3
        self.db = os.path.join(self.tmp, "glewlwyd.db")
        with open(INIT_SQL, encoding="utf-8") as f:
            sql = f.read()
        conn = sqlite3.connect(self.db)
        try:
            conn.executescript(sql)
            # The database user module keeps only the properties its data-format names: add the
            # ones the ID token carries for the relying party (tenant, roles).
            (params,) = conn.execute("SELECT gumi_parameters FROM g_user_module_instance"
                                     " WHERE gumi_name = 'database'").fetchone()
            p = json.loads(params)
            for prop in ("tenant", "roles"):
                p["data-format"][prop] = {"multiple": False, "read": True, "write": True,
                                          "profile-read": True, "profile-write": False}
            conn.execute("UPDATE g_user_module_instance SET gumi_parameters = ?"
                         " WHERE gumi_name = 'database'", (json.dumps(p),))
            # openid as shipped needs neither a password nor a scheme, which glewlwyd takes as
            # "never authenticated" and sends every request to its login page: a password it is.
            conn.execute("UPDATE g_scope SET gs_password_required = 1, gs_password_max_age = 3600"
                         " WHERE gs_name = 'openid'")
            conn.commit()
        finally:
            conn.close()

    def _webapp(self):
        """glewlwyd's own pages (login.html …) served at its root, as a person meets them: a copy
        (it serves no symbolic links; about 3 MB). The package's config.json is a link to a
        directory; ours names this instance's API."""
        self.webapp = os.path.join(self.tmp, "webapp")
        os.mkdir(self.webapp)
        conf = None
        for name in os.listdir(WEBAPP) if os.path.isdir(WEBAPP) else ():
            src = os.path.join(WEBAPP, name)
            if name == "config.json":
                real = os.path.realpath(src)
                conf = os.path.join(real, "config.json") if os.path.isdir(real) else real
                continue
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(self.webapp, name))
            else:
                shutil.copy(src, os.path.join(self.webapp, name))
        cfg = {}
        if conf and os.path.exists(conf):
            with open(conf, encoding="utf-8") as f:
                cfg = json.load(f)
        cfg.update({"GlewlwydUrl": "./", "LoginUrl": "login.html", "defaultScheme": ""})
        with open(os.path.join(self.webapp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f)

    def _config(self):
        self.conf = os.path.join(self.tmp, "glewlwyd.conf")
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write("""
port=%(port)d
bind_address="127.0.0.1"
external_url="%(base)s"
login_url="login.html"
api_prefix="api"
allow_origin="*"
log_mode="file"
log_level="INFO"
log_file="%(log)s"
cookie_secure=0
cookie_same_site="empty"
session_expiration=3600
session_key="GLEWLWYD2_SESSION_ID"
admin_session_authentication="cookie"
profile_session_authentication="cookie"
allow_multiple_user_per_session=true
login_api_enabled=true
add_x_frame_option_header_deny=true
max_post_size=1048576
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="%(mod)s/user"
client_module_path="%(mod)s/client"
user_auth_scheme_module_path="%(mod)s/scheme"
plugin_module_path="%(mod)s/plugin"
hash_algorithm = "SHA512"
static_files_path="%(webapp)s/"
static_files_mime_types =
(
  { extension = ".html" mime_type = "text/html" },
  { extension = ".css" mime_type = "text/css" },
  { extension = ".js" mime_type = "application/javascript" },
  { extension = ".json" mime_type = "application/json" },
  { extension = ".png" mime_type = "image/png" },
  { extension = ".ico" mime_type = "image/x-icon" },
  { extension = ".svg" mime_type = "image/svg+xml" },
  { extension = ".woff" mime_type = "font/woff" },
  { extension = ".woff2" mime_type = "font/woff2" },
  { extension = ".ttf" mime_type = "font/ttf" }
)
database =
{
  type = "sqlite3"
  path = "%(db)s"
};
""" % {"port": self.port, "base": self.base, "log": self.log_path, "mod": MODULES,
       "db": self.db, "webapp": self.webapp})

    def _start(self):
        out = open(os.path.join(self.tmp, "stdout.log"), "wb")
        self.proc = subprocess.Popen([GLEWLWYD, "--config-file=" + self.conf] + os.environ.get("GLEWLWYD_ARGS", "").split(),
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        out.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("glewlwyd exited with %d:\n%s" % (self.proc.returncode,
                                                                     self.logs()))
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/config")
                if c.getresponse().status == 200:
                    c.close()
                    return
                c.close()
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("glewlwyd did not answer within 60 s:\n" + self.logs())

    def _plugin(self, code_duration):
        key = os.path.join(self.tmp, "sign.key")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", key], check=True,
                       capture_output=True)
        pub = subprocess.run(["openssl", "pkey", "-in", key, "-pubout"], check=True,
                             capture_output=True).stdout.decode()
        with open(key, encoding="utf-8") as f:
            priv = f.read()
        claim = {"user-property": "", "type": "string", "boolean-value-true": "",
                 "boolean-value-false": "", "mandatory": True, "on-demand": False, "scope": []}
        params = {
            "iss": self.issuer,
            "jwt-type": "rsa", "jwt-key-size": "256", "key": priv, "cert": pub,
            "access-token-duration": 3600, "refresh-token-duration": 1209600,
            "code-duration": code_duration, "refresh-token-rolling": True,
            "allow-non-oidc": False,
            "auth-type-code-enabled": True, "auth-type-token-enabled": False,
            "auth-type-id-token-enabled": False, "auth-type-none-enabled": False,
            "auth-type-password-enabled": False, "auth-type-client-enabled": False,
            "auth-type-refresh-enabled": True,
            "scope": [], "additional-parameters": [],
            "claims": [dict(claim, name="tenant", **{"user-property": "tenant"}),
                       dict(claim, name="roles", **{"user-property": "roles"})],
            "jwks-show": True, "secret-type": "public",
            "address-claim": {"type": "no", "formatted": "", "street_address": "",
                              "locality": "", "region": "", "postal_code": "", "country": "",
                              "mandatory": False},
            "name-claim": "mandatory", "name-claim-scope": [],
            "email-claim": "no", "email-claim-scope": [],
            "scope-claim": "no", "scope-claim-scope": [],
            "allowed-scope": ["openid"],
            "pkce-allowed": True, "pkce-method-plain-allowed": False,
            "session-management-allowed": True,
            "session-cookie-name": "GLEWLWYD2_OIDC_SID", "session-cookie-expiration": 3600,
            "front-channel-logout-allowed": False, "back-channel-logout-allowed": False,
        }
        self.admin.ok("POST", "/api/mod/plugin/", {"module": "oidc", "name": "oidc",
                                                   "display_name": "OpenID Connect",
                                                   "parameters": params})

    def _client(self, redirect_uris, post_logout):
        if isinstance(redirect_uris, str):
            redirect_uris = [redirect_uris]
        body = {"client_id": self.client_id, "name": "Agent Harbor", "enabled": True,
                "confidential": self.client_secret is not None,
                "redirect_uri": list(redirect_uris), "authorization_type": ["code"],
                "scope": ["openid"]}
        if post_logout:
            body["post_logout_redirect_uri"] = post_logout
        if self.client_secret:
            body["client_secret"] = self.client_secret
            body["token_endpoint_auth_method"] = ["client_secret_basic"]
            self.client_secret_file = os.path.join(self.tmp, "client-secret")
            with open(self.client_secret_file, "w", encoding="utf-8") as f:
                f.write(self.client_secret + "\n")
        else:
            body["token_endpoint_auth_method"] = ["none"]
        self.admin.ok("POST", "/api/client/", body)

    def add_user(self, username, password, tenant=None, roles=None, name=None):
        body = {"username": username, "password": password, "enabled": True,
                "name": name or username.title(), "scope": ["openid", "g_profile"]}
        if tenant is not None:
            body["tenant"] = tenant
        if roles is not None:
            body["roles"] = roles
        self.admin.ok("POST", "/api/user/", body)

    # ---- a person at the provider --------------------------------------------------------------

    def sign_in(self, username, password):
        """A glewlwyd session for the user (a Client holding its cookie) with the client's
        `openid` scope granted."""
        c = Client("127.0.0.1", self.port)
        c.ok("POST", "/api/auth/", {"username": username, "password": password})
        c.ok("PUT", "/api/auth/grant/%s" % urllib.parse.quote(self.client_id),
             {"scope": "openid"})
        return c

    def authorize(self, session, url):
        """Follows an authorization URL (to this provider) with the signed-in session and
        returns the Location it redirects to (the relying party's callback with code and
        state, or an error)."""
        u = urllib.parse.urlsplit(url)
        if u.netloc != "127.0.0.1:%d" % self.port:
            raise AssertionError("the authorization URL is not this provider's: " + url)
        for _ in range(5):
            status, headers, data = session.request("GET", u.path + ("?" + u.query
                                                                     if u.query else ""))
            loc = headers.get("location")
            if status not in (301, 302, 303, 307) or not loc:
                raise AssertionError("glewlwyd answered %d to the authorization request: %s" %
                                     (status, data[:500]))
            target = urllib.parse.urljoin(self.base + u.path, loc)
            t = urllib.parse.urlsplit(target)
            if t.netloc != "127.0.0.1:%d" % self.port:
                return target
            if t.path.endswith("login.html"):
                # glewlwyd asks the person to confirm on its login page, which then goes back
                # to the authorization request with `g_continue` added: do what it does.
                q = urllib.parse.parse_qs(t.query)
                if "callback_url" not in q:
                    raise AssertionError("glewlwyd's login page has no way back: " + target)
                t = urllib.parse.urlsplit(q["callback_url"][0] + "&g_continue")
            u = t
        raise AssertionError("too many redirects at the provider")

    # ---- the rest ------------------------------------------------------------------------------

    def logs(self):
        text = ""
        for name in ("stdout.log", "glewlwyd.log"):
            p = os.path.join(self.tmp, name)
            if os.path.exists(p):
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")[-20000:]
        return text

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not os.environ.get("KEEP_IDP"): shutil.rmtree(self.tmp, ignore_errors=True)


def serve(argv):
    """`python3 oidc_harness.py REDIRECT_URI... [--post-logout URI]`: a provider for tests in
    other languages (the browser tests). Adds the users of USERS_JSON (env, a JSON object
    name -> [password, tenant, roles]), prints one JSON line (base, issuer, clientId,
    clientSecretFile) and runs until its standard input closes."""
    import sys
    post = None
    uris = []
    it = iter(argv)
    for a in it:
        if a == "--post-logout":
            post = next(it)
        else:
            uris.append(a)
    idp = Glewlwyd(uris, post_logout_redirect_uri=post)
    try:
        for name, (pw, tenant, roles) in json.loads(os.environ.get("USERS_JSON", "{}")).items():
            idp.add_user(name, pw, tenant=tenant, roles=roles)
        print(json.dumps({"base": idp.base, "issuer": idp.issuer, "clientId": idp.client_id,
                          "clientSecretFile": idp.client_secret_file}), flush=True)
        sys.stdin.read()
    finally:
        idp.close()


if __name__ == "__main__":
    import sys
    serve(sys.argv[1:])
