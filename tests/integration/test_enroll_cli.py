"""`ah agent enroll`'s flags (CLI-and-enrollment §4, D42): every mistake is one clear line on
stderr and exit status 2 before anything starts; modes that are not built in exit 8; --help
lists the flags. Nothing here needs an access point: the checks come first."""

import os
import subprocess
import tempfile
import unittest

import ahtest

AP = ["--remote-server", "quic://127.0.0.1:9"]


def enroll(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
    e.update(env or {})
    return subprocess.run([ahtest.AH_BIN, "agent", "enroll"] + list(args), capture_output=True,
                          text=True, timeout=60, env=e, stdin=subprocess.DEVNULL)


class EnrollFlags(unittest.TestCase):
    def refused(self, args, needle, code=2):
        r = enroll(*args)
        self.assertEqual(r.returncode, code, (args, r.stdout, r.stderr))
        self.assertIn(needle, r.stderr, args)
        self.assertTrue(r.stderr.startswith("ah agent enroll: "), r.stderr)
        self.assertNotIn("enrolling", r.stderr)  # nothing started
        for m in ahtest.SANITIZER_MARKERS:  # every early exit frees what it took
            self.assertNotIn(m, r.stderr)
        return r

    def test_help(self):
        r = enroll("--help")
        self.assertEqual(r.returncode, 0, r)
        for flag in ("--remote-server", "--rest-api", "--labels", "--resources-file", "--tags",
                     "--name", "--heartbeat-interval", "--max-concurrent-tasks", "--ssh-dst",
                     "--identity", "--spiffe-socket", "--expected-server-id", "--spiffe-mode",
                     "--cert-file", "--server-san", "--vault-path", "--dynamic-cert-ttl",
                     "--allow-insecure"):
            self.assertIn(flag, r.stdout)
        r = subprocess.run([ahtest.AH_BIN, "help", "agent", "enroll"], capture_output=True,
                           text=True, timeout=60)
        self.assertIn("--server-san", r.stdout)

    def test_remote_server_required(self):
        self.refused([], "--remote-server is required")

    def test_identity_rules(self):
        files = ["--cert-file", "c.pem", "--key-file", "k.pem", "--ca-file", "ca.pem"]
        # spiffe (the default) forbids the file-based flags
        r = self.refused(AP + ["--identity", "spiffe"] + files[:2],
                         "--identity spiffe takes its certificate from the SPIFFE")
        self.assertIn("not built in", r.stderr)
        self.refused(AP + files, "not allowed with it")  # the default is spiffe
        self.refused(AP + ["--dynamic-cert-cmd", "x"], "not allowed with it")
        self.refused(AP + ["--vault-addr", "https://v"], "not allowed with it")
        # files / exec / vault need --server-san
        self.refused(AP + ["--identity", "files"] + files, "--identity files needs --server-san")
        self.refused(AP + ["--identity", "exec", "--dynamic-cert-cmd", "x"],
                     "--identity exec needs --server-san")
        self.refused(AP + ["--identity", "vault", "--vault-addr", "https://v", "--vault-role",
                           "r"], "--identity vault needs --server-san")
        san = ["--server-san", "dns=ap.example.com"]
        self.refused(AP + ["--identity", "files", "--cert-file", "c.pem"] + san,
                     "needs --cert-file, --key-file and --ca-file")
        self.refused(AP + ["--identity", "exec"] + san, "needs --dynamic-cert-cmd")
        self.refused(AP + ["--identity", "files", "--dynamic-cert-cmd", "x"] + files + san,
                     "flags of another identity mode")
        self.refused(AP + ["--identity", "files", "--spiffe-socket", "/s"] + files + san,
                     "belong to --identity spiffe")
        # insecure needs the explicit allow, and nothing else
        self.refused(AP + ["--identity", "insecure"], "refused unless --allow-insecure")
        self.refused(AP + ["--identity", "insecure", "--allow-insecure"] + san,
                     "no --server-san")
        self.refused(AP + ["--identity", "exec", "--dynamic-cert-cmd", "x", "--cert-file", "c"]
                     + san, "flags of another identity mode")
        self.refused(AP + ["--identity", "vault", "--vault-addr", "v", "--vault-role", "r",
                           "--ca-file", "ca.pem"] + san, "flags of another identity mode")
        self.refused(AP + ["--allow-insecure", "--identity", "files"] + files + san,
                     "--allow-insecure only goes with --identity insecure")
        self.refused(AP + ["--identity", "kerberos"], "'kerberos' is not spiffe, files")
        # not built in: exit 8, with the way out
        r = self.refused(AP, "--identity spiffe is not built in", code=8)
        self.assertIn("--identity exec", r.stderr)
        self.refused(AP + ["--identity", "vault", "--vault-addr", "https://v", "--vault-role",
                           "r"] + san, "--identity vault is not built in", code=8)

    def test_server_san_syntax(self):
        base = AP + ["--identity", "exec", "--dynamic-cert-cmd", "x", "--server-san"]
        self.refused(base + ["ap.example.com"], "is not dns=NAME, uri=URI or pin=SHA256")
        self.refused(base + ["dns="], "is not dns=NAME")
        self.refused(base + ["pin=abcd"], "is not a SHA-256")
        self.refused(base + ["ip=1.2.3.4"], "is not dns=NAME")
        self.refused(AP + ["--expected-server-id", "https://ap"], "is not a SPIFFE id")

    def test_value_checks(self):
        ok_id = ["--identity", "insecure", "--allow-insecure"]
        self.refused(AP + ok_id + ["--heartbeat-interval", "0"], "--heartbeat-interval")
        self.refused(AP + ok_id + ["--heartbeat-interval", "soon"], "--heartbeat-interval")
        self.refused(AP + ok_id + ["--max-concurrent-tasks", "-1"], "--max-concurrent-tasks")
        self.refused(AP + ok_id + ["--ssh", "maybe"], "--ssh: 'maybe' is not enabled or disabled")
        self.refused(AP + ok_id + ["--ssh-dst", "localhost"], "--ssh-dst: 'localhost' is not")
        self.refused(AP + ok_id + ["--ssh-dst", "h:70000"], "is not HOST:PORT")
        self.refused(AP + ok_id + ["--rest-api", "maybe"], "is not yes or no")
        self.refused(AP + ok_id + ["--port", "8080"], "need --rest-api yes")
        self.refused(AP + ok_id + ["--rest-api", "no", "--port", "8080"], "need --rest-api yes")
        self.refused(AP + ok_id + ["--bind", "0.0.0.0"], "need --rest-api yes")
        self.refused(AP + ok_id + ["--db", "x.db"], "need --rest-api yes")
        # the access point's own settings belong to the REST API too
        self.refused(AP + ok_id + ["--insecure-no-auth"],
                     "--insecure-no-auth is a setting of the REST API: it needs --rest-api yes")
        self.refused(AP + ok_id + ["--jwks=keys.json"], "it needs --rest-api yes")
        # but not its executor control plane
        self.refused(AP + ok_id + ["--rest-api", "yes", "--quic-port", "4433"],
                     "--quic-port belongs to an access point's executor control plane")
        self.refused(AP + ok_id + ["--rest-api", "yes", "--executor-trust-domain=x"],
                     "--executor-trust-domain belongs to")
        self.refused(AP + ok_id + ["--rest-api", "yes", "--max-concurrent-tasks", "0"],
                     "no task created on this executor's API could ever run")
        self.refused(AP + ok_id + ["--rest-api", "yes", "--port", "65536"], "is not a port")
        self.refused(AP + ok_id + ["--rest-api", "yes", "--bind", ""], "--bind: empty address")
        self.refused(AP + ok_id + ["--rest-api", "yes", "--rate-limit"], "needs a value")
        self.refused(AP + ok_id + ["--dynamic-cert-ttl", "soon"], "is not a duration")
        self.refused(AP + ok_id + ["--bogus"], "unknown option '--bogus'")
        self.refused(AP + ok_id + ["--labels"], "--labels needs a value")
        self.refused(AP + ok_id + ["extra"], "unexpected argument 'extra'")
        # what the executor reports is checked before it dials
        self.refused(AP + ok_id + ["--labels", "region"], "'region' is not KEY=VALUE")
        self.refused(AP + ok_id + ["--labels", "a=1,a=2"], "'a' is given twice")
        self.refused(AP + ok_id + ["--resources", "{oops"], "--resources: not JSON")
        self.refused(AP + ok_id + ["--resources", "[]"], "must be a JSON object")
        self.refused(AP + ok_id + ["--resources-file", "/nonexistent.json"], "cannot read")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write("gpu: 1\n")
            f.flush()
            self.refused(AP + ok_id + ["--resources-file", f.name], "YAML is not supported")
        self.refused(["--remote-server", "quic://[::1"] + ok_id, "is not quic://HOST:PORT")


if __name__ == "__main__":
    ahtest.main()
