"""The contract says what the server does (issue 10, item 20), checked against the real server so
the document cannot go stale when routes land:

- every operation marked `x-ah-implemented: false` answers 501 (`/problems/not-implemented`),
  and says so in its description; every other operation never answers 501. When you implement a
  route, drop its mark (and the line) in api/openapi.json; this test tells you if you forgot.
- once an API key exists, every operation not marked public (`security: []`) answers 401 without
  credentials and documents 401, 429 and its role; public ones answer without credentials.
"""

import json
import os
import re
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import ahtest  # noqa: E402

DOC_PATH = os.path.join(HERE, "..", "..", "api", "openapi.json")
METHODS = ("get", "put", "post", "delete", "patch")
GHOST = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # a well-formed id that names nothing
NOT_IMPLEMENTED_LINE = "Not implemented yet"


def load_doc():
    with open(DOC_PATH, encoding="utf-8") as f:
        return json.load(f)


def operations(doc):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def sample(path):
    """A concrete path for a template: ids that name nothing, a plain file name."""
    def fill(m):
        name = m.group(1)
        if name == "filePath":
            return "src/a.c"
        if name == "asset":
            return "no-such-asset.js"
        return GHOST
    return re.sub(r"\{([^}]+)\}", fill, path)


class Honest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = load_doc()
        cls.server = ahtest.Server()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def answer(self, method, path):
        body = "{}" if method in ("POST", "PUT", "PATCH") else None
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return self.server.request(method, sample(path), body=body, headers=headers,
                                   record_it=False, timeout=20)

    def test_marks_match_the_server(self):
        wrong = []
        for method, path, op in operations(self.doc):
            marked_missing = op.get("x-ah-implemented", True) is False
            r = self.answer(method, path)
            is_501 = r.status == 501
            if is_501:
                self.assertEqual(r.json().get("type"), "/problems/not-implemented", r)
            if marked_missing and not is_501:
                wrong.append("%s %s answers %d: drop its x-ah-implemented: false (and the '%s' "
                             "line of its description)" % (method, path, r.status,
                                                          NOT_IMPLEMENTED_LINE))
            elif is_501 and not marked_missing:
                wrong.append("%s %s answers 501: mark it x-ah-implemented: false, with a '%s' "
                             "line in its description" % (method, path, NOT_IMPLEMENTED_LINE))
        self.assertEqual(wrong, [], "\n".join(wrong))

    def test_marks_are_well_formed(self):
        for method, path, op in operations(self.doc):
            mark = op.get("x-ah-implemented")
            with self.subTest(op="%s %s" % (method, path)):
                self.assertIn(mark, (None, False), "only false is a mark; omit it otherwise")
                said = NOT_IMPLEMENTED_LINE in op.get("description", "")
                self.assertEqual(said, mark is False,
                                 "the description says '%s' exactly when the operation is "
                                 "marked x-ah-implemented: false" % NOT_IMPLEMENTED_LINE)

    def test_auth_claims_are_true(self):
        """Once an API key exists, every operation the document does not mark public
        (`security: []`) answers 401 without credentials and lists 401 and 429; the public ones
        answer without credentials (D22)."""
        srv = ahtest.Server()
        try:
            subprocess.run([ahtest.AH_BIN, "admin", "api-key", "create", "--role", "viewer",
                            "--tenant", "t1", "--db", srv.db], check=True, capture_output=True,
                           env=srv.env())
            deadline = time.monotonic() + 30
            while srv.request("GET", "/api/v1/sessions", record_it=False).status != 401:
                self.assertLess(time.monotonic(), deadline, "the key never took effect")
                time.sleep(0.05)
            for method, path, op in operations(self.doc):
                public = op.get("security") == []
                with self.subTest(op="%s %s" % (method, path)):
                    body = "{}" if method in ("POST", "PUT", "PATCH") else None
                    headers = {"Content-Type": "application/json"} if body else {}
                    r = srv.request(method, sample(path), body=body, headers=headers,
                                    record_it=False, timeout=20)
                    if public:
                        self.assertNotEqual(r.status, 401, r)
                        self.assertNotIn("401", op["responses"])
                    else:
                        self.assertEqual(r.status, 401, r)
                        self.assertIn("401", op["responses"])
                        self.assertIn("429", op["responses"])
                        self.assertRegex(op.get("description", ""), r"Role: `(viewer|operator|admin)`")
        finally:
            srv.close()


if __name__ == "__main__":
    ahtest.main()
