"""User documentation stands alone (issue 10, item 21): README.md, docs/*.md and every text of
the served API description (api/openapi.json: the overview, operation, schema, parameter and
response descriptions) explain behaviour themselves. They must not cite decision numbers (`D4`,
`D22`…) or the specification files (DECISIONS.md, API.md), which are not in the repository.
Code comments and tests may keep citing decisions; docs/design.md explains them for users.
"""

import json
import os
import re
import sys
import unittest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CITATION = re.compile(r"\bD[0-9]+\b|DECISIONS\.md|\bAPI\.md\b|CLI-and-enrollment\.md")


def user_docs():
    yield os.path.join(ROOT, "README.md")
    docs = os.path.join(ROOT, "docs")
    for name in sorted(os.listdir(docs)):
        if name.endswith(".md"):
            yield os.path.join(docs, name)


def strings(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from strings(v, path + "/" + k)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from strings(v, "%s/%d" % (path, i))
    elif isinstance(x, str):
        yield path, x


class StandaloneDocs(unittest.TestCase):
    def test_markdown_cites_nothing_outside(self):
        found = []
        for path in user_docs():
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    for m in CITATION.finditer(line):
                        found.append("%s:%d: %s" % (os.path.relpath(path, ROOT), n, m.group(0)))
        self.assertEqual(found, [], "explain the behaviour instead:\n" + "\n".join(found))

    def test_api_description_cites_nothing_outside(self):
        with open(os.path.join(ROOT, "api", "openapi.json"), encoding="utf-8") as f:
            doc = json.load(f)
        found = ["%s: %s" % (p, m.group(0)) for p, s in strings(doc)
                 for m in CITATION.finditer(s)]
        self.assertEqual(found, [], "explain the behaviour instead:\n" + "\n".join(found))

    def test_design_page_covers_the_basics(self):
        with open(os.path.join(ROOT, "docs", "design.md"), encoding="utf-8") as f:
            text = f.read().lower()
        for topic in ("ids", "errors", "pagination", "idempotency", "events", "resum",
                      "state machine", "restart", "limits"):
            self.assertIn(topic, text, "docs/design.md says nothing about " + topic)

    def test_the_check_catches_citations(self):
        for bad in ("see D4", "(D22)", "DECISIONS.md", "API.md §7.5"):
            self.assertTrue(CITATION.search(bad), bad)
        for fine in ("3D", "ID", "a D-Bus socket", "docs/api-guide.md", "UTF-8"):
            self.assertFalse(CITATION.search(fine), fine)


if __name__ == "__main__":
    prog = unittest.main(exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
