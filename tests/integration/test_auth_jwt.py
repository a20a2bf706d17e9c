"""JWT bearer tokens (issue 13 item 2): verified against a JWKS file, claims checked, and the
attack list refused with 401 Problems (none, HS-with-the-public-key, expired, not yet valid,
wrong audience or issuer, unknown kid, tampered payload, embedded keys, no kid among several
keys). Tokens are made here with python3-cryptography (RS256, PS256, ES256, EdDSA).
"""

import base64
import hashlib
import hmac
import json
import os
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

import ahtest
from ahtest import ServerTest

ISS = "https://issuer.test"
AUD = "agent-harbor"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64int(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64(n.to_bytes(size, "big"))


class Keys:
    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @staticmethod
    def rsa_jwk(k, kid, alg=None):
        n = k.public_key().public_numbers()
        j = {"kty": "RSA", "kid": kid, "use": "sig", "n": b64int(n.n), "e": b64int(n.e)}
        if alg:
            j["alg"] = alg
        return j

    def jwks(self, rotated=False):
        en = self.ec.public_key().public_numbers()
        ed_raw = self.ed.public_key().public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw)
        keys = [self.rsa_jwk(self.rsa, "rsa1"),
                {"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig",
                 "x": b64int(en.x, 32), "y": b64int(en.y, 32)},
                {"kty": "OKP", "crv": "Ed25519", "kid": "ed1", "use": "sig", "x": b64(ed_raw)},
                self.rsa_jwk(self.rsa, "rsa-ps-only", "PS256")]
        if rotated:
            keys.append(self.rsa_jwk(self.rsa2, "rsa2"))
        return {"keys": keys}


def sign(alg, key, header_extra, claims, raw_header=None):
    header = dict({"alg": alg, "typ": "JWT"}, **header_extra)
    h = b64(json.dumps(raw_header or header).encode())
    p = b64(json.dumps(claims).encode())
    data = (h + "." + p).encode()
    if alg == "RS256":
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256":
        sig = key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                         salt_length=32), hashes.SHA256())
    elif alg == "ES256":
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "EdDSA":
        sig = key.sign(data)
    elif alg == "HS256":
        sig = hmac.new(key, data, hashlib.sha256).digest()
    elif alg == "none":
        sig = b""
    else:
        raise ValueError(alg)
    return h + "." + p + "." + b64(sig)


def claims(**over):
    now = int(time.time())
    c = {"iss": ISS, "aud": AUD, "sub": "alice", "exp": now + 600, "iat": now,
         "tenant": "acme", "roles": ["operator"]}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


KEYS = Keys()


class Jwt(ServerTest):
    @classmethod
    def setUpClass(cls):
        cls.tmp = ahtest.tempfile.mkdtemp(prefix="ah-jwt-")
        cls.jwks_path = os.path.join(cls.tmp, "jwks.json")
        with open(cls.jwks_path, "w") as f:
            json.dump(KEYS.jwks(), f)
        cls.server_args = ("--jwks", cls.jwks_path, "--jwt-issuer", ISS, "--jwt-audience", AUD)
        super().setUpClass()

    def get(self, token, path="/api/v1/sessions", **kw):
        return self.server.get(path, headers={"Authorization": "Bearer " + token}, **kw)

    def test_valid_tokens_of_every_accepted_algorithm(self):
        for alg, key, kid in (("RS256", KEYS.rsa, "rsa1"), ("PS256", KEYS.rsa, "rsa-ps-only"),
                              ("ES256", KEYS.ec, "ec1"), ("EdDSA", KEYS.ed, "ed1")):
            with self.subTest(alg=alg):
                r = self.get(sign(alg, key, {"kid": kid}, claims()))
                self.assertEqual(r.status, 200, r)
                self.assertRegex(r.header("ratelimit-limit") or "", r"^\d+$")

    def test_credentials_are_required_at_once(self):
        # a JWT issuer is a credential source: no local mode, even without any API key
        self.assertProblem(self.server.get("/api/v1/sessions"), 401, "auth")
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)

    def test_attack_list(self):
        now = int(time.time())
        pub_pem = KEYS.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        good = sign("RS256", KEYS.rsa, {"kid": "rsa1"}, claims())
        h, p, s = good.split(".")
        tampered_p = b64(json.dumps(claims(tenant="globex", roles=["admin"])).encode())
        attacker_jwk = Keys.rsa_jwk(KEYS.attacker, "rsa1")
        cases = {
            "alg none": sign("none", None, {"kid": "rsa1"}, claims()),
            "alg none, no signature part": sign("none", None, {"kid": "rsa1"}, claims())[:-1],
            "HS256 with the public key as secret": sign("HS256", pub_pem, {"kid": "rsa1"}, claims()),
            "HS256 with the modulus as secret": sign(
                "HS256", KEYS.rsa.public_key().public_numbers().n.to_bytes(256, "big"),
                {"kid": "rsa1"}, claims()),
            "expired beyond the leeway": sign("RS256", KEYS.rsa, {"kid": "rsa1"},
                                              claims(exp=now - 120)),
            "not yet valid beyond the leeway": sign("RS256", KEYS.rsa, {"kid": "rsa1"},
                                                    claims(nbf=now + 300)),
            "no exp": sign("RS256", KEYS.rsa, {"kid": "rsa1"}, claims(exp=None)),
            "wrong audience": sign("RS256", KEYS.rsa, {"kid": "rsa1"}, claims(aud="other")),
            "wrong issuer": sign("RS256", KEYS.rsa, {"kid": "rsa1"}, claims(iss="https://evil")),
            "unknown kid": sign("RS256", KEYS.rsa, {"kid": "nope"}, claims()),
            "no kid among several keys": sign("RS256", KEYS.rsa, {}, claims()),
            "tampered payload": h + "." + tampered_p + "." + s,
            "signature of another key": sign("RS256", KEYS.attacker, {"kid": "rsa1"}, claims()),
            "attacker key embedded in the header": sign("RS256", KEYS.attacker,
                                                        {"kid": "rsa1", "jwk": attacker_jwk},
                                                        claims()),
            "RS256 on a key pinned to PS256": sign("RS256", KEYS.rsa, {"kid": "rsa-ps-only"},
                                                   claims()),
            "ES256 alg on an RSA key": sign("ES256", KEYS.ec, {"kid": "rsa1"}, claims()),
            "RS512 (not accepted)": h.replace(h, b64(json.dumps({"alg": "RS512", "kid": "rsa1"})
                                                       .encode())) + "." + p + "." + s,
            "no tenant": sign("RS256", KEYS.rsa, {"kid": "rsa1"}, claims(tenant=None)),
            "bad tenant": sign("RS256", KEYS.rsa, {"kid": "rsa1"}, claims(tenant="a b")),
            "no sub": sign("RS256", KEYS.rsa, {"kid": "rsa1"}, claims(sub=None)),
            "garbage": "a.b.c",
            "two parts": "abc.def",
            "not base64": "!!!.???.***",
            "JSON array header": b64(b"[]") + "." + p + "." + s,
            "empty": "",
        }
        for name, token in cases.items():
            with self.subTest(case=name):
                r = self.get(token)
                body = self.assertProblem(r, 401, "auth")
                self.assertEqual(r.header("www-authenticate"), "ApiKey, Bearer")
                if len(token) > 20:
                    self.assertNotIn(token, body["detail"])
        self.assertEqual(self.server.get("/api/v1/healthz").status, 200)

    def test_leeway(self):
        now = int(time.time())
        for c in (claims(exp=now - 30), claims(nbf=now + 30)):
            r = self.get(sign("RS256", KEYS.rsa, {"kid": "rsa1"}, c))
            self.assertEqual(r.status, 200, r)

    def test_roles_and_tenant_from_claims(self):
        s = self.server
        viewer = sign("ES256", KEYS.ec, {"kid": "ec1"}, claims(roles=["viewer"], sub="v"))
        nobody = sign("ES256", KEYS.ec, {"kid": "ec1"}, claims(roles=[], sub="n"))
        op = sign("ES256", KEYS.ec, {"kid": "ec1"}, claims(roles="operator", sub="o"))
        other = sign("ES256", KEYS.ec, {"kid": "ec1"}, claims(tenant="globex", sub="g"))
        self.assertEqual(self.get(viewer).status, 200)
        self.assertProblem(self.get(nobody), 403, "authz")
        body = {"prompt": "x"}
        r = s.post("/api/v1/drafts", body=body, headers={"Authorization": "Bearer " + viewer})
        self.assertProblem(r, 403, "authz")
        r = s.post("/api/v1/drafts", body=body, headers={"Authorization": "Bearer " + op})
        self.assertEqual(r.status, 201, r)
        did = r.json()["id"]
        self.assertEqual(self.get(op, "/api/v1/drafts/" + did).status, 200)
        self.assertProblem(self.get(other, "/api/v1/drafts/" + did), 404)

    def test_rotated_key_is_picked_up(self):
        with open(self.jwks_path + ".new", "w") as f:
            json.dump(KEYS.jwks(rotated=True), f)
        os.replace(self.jwks_path + ".new", self.jwks_path)
        token = sign("RS256", KEYS.rsa2, {"kid": "rsa2"}, claims(sub="rotated"))
        # an unknown kid re-reads the set at most once per 30 s (another test may have just
        # spent that), so the new key is accepted within about that long, never refused for good
        deadline = time.monotonic() + 90
        while True:
            r = self.get(token, record_it=False)
            if r.status == 200 or time.monotonic() > deadline:
                break
            self.assertEqual(r.status, 401, r)
            time.sleep(1)
        self.assertEqual(r.status, 200, r)

    def test_tokens_never_reach_the_log_or_the_audit(self):
        good = sign("RS256", KEYS.rsa, {"kid": "rsa1"}, claims(sub="quiet"))
        bad = sign("RS256", KEYS.attacker, {"kid": "rsa1"}, claims(sub="quiet"))
        self.assertEqual(self.get(good).status, 200)
        self.assertEqual(self.get(bad).status, 401)
        self.server.post("/api/v1/drafts", body={"prompt": "x"},
                         headers={"Authorization": "Bearer " + good})
        text = self.server.stderr()
        for t in (good, bad):
            self.assertNotIn(t.split(".")[2], text)
            self.assertNotIn(t.split(".")[1], text)
        rows = ahtest.db_row(self.server.db, "SELECT count(*) FROM audit_log WHERE "
                             "coalesce(actor,'') || coalesce(target,'') || "
                             "coalesce(credential_id,'') LIKE '%eyJ%'")
        self.assertEqual(rows[0], "0")
        row = ahtest.db_row(self.server.db, "SELECT actor FROM audit_log WHERE action = "
                            "'POST /api/v1/drafts' ORDER BY id DESC LIMIT 1")
        self.assertEqual(row[0], "jwt:quiet")

    def test_huge_token(self):
        r = self.get("x" * 7900, record_it=False)
        self.assertIn(r.status, (401, 431), r)


class HangingKeySet(ServerTest):
    """The key set is re-read off the request threads: while its server hangs (accepts, never
    answers), a token with an unknown kid is refused at once, the same again while that re-read
    is in flight, every other request is answered, and the server still stops promptly."""

    @classmethod
    def setUpClass(cls):
        import http.server
        import threading
        cls.hang = threading.Event()
        cls.release = threading.Event()
        body = json.dumps(KEYS.jwks()).encode()

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if cls.hang.is_set():
                    cls.release.wait(120)  # the key set server hangs
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        cls.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        cls.httpd.daemon_threads = True
        threading.Thread(target=cls.httpd.serve_forever, daemon=True).start()
        url = "http://127.0.0.1:%d/jwks.json" % cls.httpd.server_address[1]
        cls.server_args = ("--jwks", url, "--jwt-issuer", ISS, "--jwt-audience", AUD)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        cls.release.set()
        cls.httpd.shutdown()
        cls.httpd.server_close()
        super().tearDownClass()

    def get(self, token):
        return self.server.get("/api/v1/sessions", headers={"Authorization": "Bearer " + token})

    def test_a_hanging_key_set_server_holds_up_nothing(self):
        good = sign("RS256", KEYS.rsa, {"kid": "rsa1"}, claims())
        self.assertEqual(self.get(good).status, 200)
        self.hang.set()
        unknown = sign("RS256", KEYS.rsa2, {"kid": "rsa2"}, claims(sub="new"))
        t0 = time.monotonic()
        r = self.get(unknown)  # asks for a re-read, which now hangs
        self.assertProblem(r, 401)
        self.assertIn("re-read", r.json()["detail"])
        self.assertLess(time.monotonic() - t0, 3)
        # while that re-read hangs (up to 10 s): every request is answered at once
        t1 = time.monotonic()
        for _ in range(20):
            self.assertEqual(self.get(good).status, 200)
            self.assertProblem(self.get(unknown), 401)
            self.assertEqual(self.server.get("/api/v1/healthz").status, 200)
        self.assertLess(time.monotonic() - t1, 6, "requests waited on the key set's server")
        # and the server stops at once, the transfer under way or not
        t2 = time.monotonic()
        self.assertEqual(self.server.stop(timeout=30), 0)
        self.assertLess(time.monotonic() - t2, 8)


class BadConfig(ServerTest):
    def test_jwks_needs_issuer_and_audience(self):
        import subprocess
        path = os.path.join(self.server.tmp, "jwks.json")
        with open(path, "w") as f:
            json.dump(KEYS.jwks(), f)
        db = os.path.join(self.server.tmp, "x.db")
        for args, words in ((["--jwks", path], "jwt-issuer"),
                            (["--jwks", path + ".missing", "--jwt-issuer", ISS,
                              "--jwt-audience", AUD], "cannot read"),
                            (["--jwks", db, "--jwt-issuer", ISS, "--jwt-audience", AUD],
                             "JSON Web Key Set")):
            with open(db, "w") as f:
                f.write("not json")
            r = subprocess.run([ahtest.AH_BIN, "agent", "access-point", "--port", "0", "--db",
                                os.path.join(self.server.tmp, "y.db")] + args,
                               capture_output=True, text=True, timeout=60, env=self.server.env())
            self.assertEqual(r.returncode, 8, r)
            self.assertIn(words, r.stderr)


if __name__ == "__main__":
    ahtest.main()
