"""Self-test of the contract check (tests/integration/contract.py): it must pass conforming
responses and catch wrong ones, or a green integration suite proves nothing.

- fixtures.json holds responses, each marked "ok" or "fail" (with the words the failure must
  name): wrong shapes, undocumented statuses, paths and methods, missing headers, non-Problem
  errors. Every "fail" fixture must be caught, every "ok" one must pass, and every documented
  2xx JSON answer has an "ok" example (so no schema is unsatisfiable).
- The document must list every endpoint of API.md §6 except the R-only PUT /sessions/{id}, and
  hold the conventions every operation shares (Problem errors, X-Request-Id, Idempotency-Key).
- Through the real harness: a real server's answers pass, and the same answers with a wrong
  shape or an undocumented status make ahtest.record (what every test calls) raise.
"""

import copy
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.pop("AH_CONTRACT", None)  # this test is about the check: it is always on here

import ahtest  # noqa: E402
import contract  # noqa: E402

# API.md §6, rows 1–74 without row 9 (PUT /sessions/{id}, R only). Path parameters are named as
# in the document ({id} for every session route; API.md's {sessionId} in rows 56–58).
API_MD_ENDPOINTS = """
GET /api/v1/healthz
GET /api/v1/readyz
GET /api/v1/version
GET /api/v1/openapi.json
GET /api/docs
POST /api/v1/tasks
GET /api/v1/sessions
GET /api/v1/sessions/{id}
DELETE /api/v1/sessions/{id}
POST /api/v1/sessions/{id}/stop
POST /api/v1/sessions/{id}/pause
POST /api/v1/sessions/{id}/resume
POST /api/v1/sessions/{id}/prompt
GET /api/v1/sessions/{id}/info
GET /api/v1/sessions/{id}/logs
GET /api/v1/sessions/{id}/events
GET /api/v1/sessions/{id}/pty
GET /api/v1/sessions/{id}/files
GET /api/v1/sessions/{id}/files/{filePath}
GET /api/v1/sessions/{id}/files/{filePath}/preview
GET /api/v1/sessions/{id}/files/{filePath}/content
GET /api/v1/sessions/{id}/files/search
GET /api/v1/sessions/{id}/diff/{filePath}
GET /api/v1/sessions/{id}/diff
GET /api/v1/sessions/{id}/workspace/files
GET /api/v1/sessions/{id}/workspace/search/files
GET /api/v1/sessions/{id}/workspace/info
GET /api/v1/sessions/{id}/workspace/download
POST /api/v1/sessions/{id}/workspace/snapshot
POST /api/v1/sessions/{id}/open/ide
GET /api/v1/sessions/{id}/chat
POST /api/v1/sessions/{id}/chat/messages
PUT /api/v1/sessions/{id}/chat/messages/{messageId}
DELETE /api/v1/sessions/{id}/chat/messages/{messageId}
POST /api/v1/sessions/{id}/chat/messages/{messageId}/retry
POST /api/v1/sessions/{id}/chat/messages/{messageId}/attachments
GET /api/v1/sessions/{id}/chat/messages/{messageId}/attachments/{attachmentId}
DELETE /api/v1/sessions/{id}/chat/messages/{messageId}/attachments/{attachmentId}
GET /api/v1/sessions/{id}/chat/threads
POST /api/v1/sessions/{id}/chat/threads
GET /api/v1/sessions/{id}/chat/suggestions
POST /api/v1/sessions/{id}/chat/stream
GET /api/v1/sessions/{id}/context
PUT /api/v1/sessions/{id}/context
GET /api/v1/sessions/{id}/models
GET /api/v1/sessions/{id}/timeline
POST /api/v1/sessions/{id}/fs-snapshots
GET /api/v1/sessions/{id}/fs-snapshots
POST /api/v1/sessions/{id}/moments
POST /api/v1/sessions/{id}/seek
POST /api/v1/sessions/{id}/session-branch
GET /api/v1/sessions/{id}/branches
POST /api/v1/sessions/{id}/summarize
GET /api/v1/sessions/{id}/recording
GET /api/v1/sessions/{id}/executions/{executionId}/pipelines
GET /api/v1/sessions/{id}/executions/{executionId}/pipelines/{pipelineId}/steps/{stepId}
GET /api/v1/sessions/{id}/executions/{executionId}/pipelines/{pipelineId}/steps/{stepId}/stream
GET /api/v1/agents
GET /api/v1/runtimes
GET /api/v1/executors
GET /api/v1/projects
GET /api/v1/repos
GET /api/v1/repositories/{id}/branches
GET /api/v1/repositories/{id}/files
GET /api/v1/git/refs
GET /api/v1/workspaces
GET /api/v1/workspaces/{id}
GET /api/v1/drafts
POST /api/v1/drafts
GET /api/v1/drafts/{id}
PUT /api/v1/drafts/{id}
DELETE /api/v1/drafts/{id}
GET /api/v1/followers
"""


def fixture_body(case):
    body = case["body"]
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


class Fixtures(unittest.TestCase):
    def test_fixtures(self):
        c = contract.contract()
        with open(os.path.join(HERE, "fixtures.json"), encoding="utf-8") as f:
            cases = json.load(f)
        self.assertTrue(any(k["expect"] == "fail" for k in cases))
        for k in cases:
            with self.subTest(k["name"]):
                problems = c.check(k["method"], k["path"], k["status"], k["headers"],
                                   fixture_body(k))
                if k["expect"] == "ok":
                    self.assertEqual(problems, [], k["name"])
                else:
                    self.assertTrue(problems, "not caught: " + k["name"])
                    self.assertIn(k["why"], "\n".join(problems), k["name"])
                    with self.assertRaises(AssertionError):
                        c.assert_conforms(k["method"], k["path"], k["status"], k["headers"],
                                          fixture_body(k))


    def test_every_json_answer_has_an_example(self):
        # Each documented 2xx JSON answer has a conforming fixture, so every schema is known to
        # be satisfiable (an allOf of two closed objects, say, would accept nothing).
        c = contract.contract()
        with open(os.path.join(HERE, "fixtures.json"), encoding="utf-8") as f:
            cases = json.load(f)
        seen = set()
        for k in cases:
            if k["expect"] == "ok" and k["headers"].get("content-type") == "application/json":
                template, _ = c.match(k["path"].split("?")[0])
                seen.add((k["method"], template, str(k["status"])))
        missing = []
        for method, template in c.operations():
            for status, ref in c.doc["paths"][template][method.lower()]["responses"].items():
                resp, _ = c.deref(ref, None)
                if status.startswith("2") and "application/json" in resp.get("content", {}):
                    if (method, template, status) not in seen:
                        missing.append("%s %s %s" % (method, template, status))
        self.assertEqual(missing, [], "no conforming example in fixtures.json")


class Document(unittest.TestCase):
    def setUp(self):
        self.c = contract.contract()
        self.doc = self.c.doc

    def test_lists_every_api_md_endpoint(self):
        want = {tuple(line.split()) for line in API_MD_ENDPOINTS.strip().splitlines()}
        self.assertEqual(len(want), 73)
        have = set(self.c.operations())
        self.assertEqual(want - have, set(), "endpoints of API.md §6 missing from the document")
        self.assertNotIn(("PUT", "/api/v1/sessions/{id}"), have)

    def test_shared_conventions(self):
        for method, template in self.c.operations():
            op = self.doc["paths"][template][method.lower()]
            with self.subTest(op=op["operationId"]):
                self.assertNotIn("default", op["responses"], "a default hides undocumented codes")
                params = [p.get("$ref", "") for p in op.get("parameters", [])]
                self.assertIn("#/components/parameters/RequestId", params)
                if method == "POST":
                    self.assertIn("#/components/parameters/IdempotencyKey", params)
                for status in ("400", "404", "405", "500", "501", "503"):
                    self.assertIn(status, op["responses"])
                for status, ref in op["responses"].items():
                    resp, _ = self.c.deref(ref, None)
                    self.assertIn("X-Request-Id", resp.get("headers", {}), status)
                    if status >= "400":
                        self.assertIn("application/problem+json", resp["content"], status)

    def test_event_union_is_discriminated(self):
        event = self.doc["components"]["schemas"]["Event"]
        mapping = event["discriminator"]["mapping"]
        self.assertEqual(len(mapping), len(event["oneOf"]))
        for name in ("status", "log", "thought", "tool_use", "tool_result", "file_edit", "diff",
                     "moment", "delivery", "note", "followersCatalog", "fenceStarted",
                     "fenceResult", "hostStarted", "hostLog", "hostExited", "summary"):
            self.assertIn(name, mapping)


class ThroughTheHarness(unittest.TestCase):
    """The hook as the integration tests use it: ahtest.record raises on a bad answer."""

    @classmethod
    def setUpClass(cls):
        cls.server = ahtest.Server()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def test_hook_installed(self):
        self.assertIn(contract.hook, ahtest.RESPONSE_HOOKS)

    def test_real_answers_pass_and_altered_ones_fail(self):
        good = self.server.get("/api/v1/healthz")  # recorded: the hook passed it
        self.assertEqual(good.status, 200)

        body = good.json()
        body["status"] = "sort of"
        wrong_shape = copy.copy(good)
        wrong_shape.body = json.dumps(body).encode()
        with self.assertRaisesRegex(AssertionError, r"\$\.status"):
            ahtest.record(wrong_shape)

        wrong_status = copy.copy(good)
        wrong_status.status = 202
        with self.assertRaisesRegex(AssertionError, "status 202 is not documented"):
            ahtest.record(wrong_status)

        problem = self.server.get("/api/v1/no-such-route")
        self.assertEqual(problem.status, 404)
        no_problem = copy.copy(problem)
        no_problem.headers = dict(problem.headers, **{"content-type": "application/json"})
        with self.assertRaisesRegex(AssertionError, "problem\\+json"):
            ahtest.record(no_problem)

    def test_a_failing_hook_fails_the_test(self):
        # What a test author sees: the request call itself raises.
        def reject(resp):
            raise AssertionError("rejected " + resp.path)
        ahtest.RESPONSE_HOOKS.append(reject)
        try:
            with self.assertRaisesRegex(AssertionError, "rejected /api/v1/version"):
                self.server.get("/api/v1/version")
        finally:
            ahtest.RESPONSE_HOOKS.remove(reject)


if __name__ == "__main__":
    ahtest.main()
