"""contract — holds every HTTP response to the OpenAPI document (api/openapi.json).

ahtest.py registers `hook` in RESPONSE_HOOKS (unless AH_CONTRACT=0), so each response an
integration test receives through `Server.request` is checked as it arrives, and a mismatch fails
that test with an AssertionError naming the operation, the status and the JSON path.

What is checked, for the operation whose path template and method match the request:
  - the status is one the operation documents (no `default` response: an undocumented status
    fails);
  - every header the response documents as required is present (X-Request-Id everywhere, Allow
    on 405, Retry-After on 429, Location on 201 of POST /tasks …) and parses as its schema;
  - the Content-Type is one the response documents; a response without content has no body;
  - JSON bodies (application/json, application/problem+json) validate against the schema
    (JSON Schema 2020-12, $refs resolved in the document, date-time checked as RFC 3339);
  - Problem bodies repeat the HTTP status, the request path (`instance`) and the X-Request-Id;
  - other bodies (SSE, HTML, asciicast, archives) only get the status and content-type checks,
    except that complete SSE bodies have each `data:` validated when the media type names an
    `x-sse-data` schema.
Requests outside the document may only be answered 404 (no route), 405 (method not allowed,
with Allow), 501 (a route the document leaves out on purpose) or, for OPTIONS, the CORS 204.

Python standard library plus python3-jsonschema (4.10 in Debian 12; newer ones work too).
"""

import json
import os
import re
import urllib.parse

import jsonschema

DOC_PATH = os.environ.get("AH_OPENAPI") or os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "api", "openapi.json"))
DOC_URI = "https://agent-harbor.invalid/api/v1/openapi.json"  # never fetched: only a name
METHODS = ("get", "put", "post", "delete", "patch")
# Path parameters that may span several segments (see FilePath in the document).
GREEDY_PARAMS = {"filePath"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")

# (method, path template or None, status) of every response checked in this process.
CHECKED = []


class ContractError(AssertionError):
    """A response does not match the document."""


def _format_checker():
    # Only the formats we rely on, checked by hand: jsonschema's own date-time check needs an
    # optional package and is silently skipped without it.
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("date-time")
    def _date_time(value):
        return not isinstance(value, str) or bool(RFC3339.match(value))
    return checker


def _escape(token):
    return token.replace("~", "~0").replace("/", "~1")


def _json_path(parts):
    out = "$"
    for p in parts:
        out += "[%d]" % p if isinstance(p, int) else "." + str(p)
    return out


def _media_type(value):
    return (value or "").split(";")[0].strip().lower()


def _is_json(media_type):
    return media_type == "application/json" or media_type.endswith("+json")


class Contract:
    def __init__(self, doc):
        self.doc = doc
        self.routes = []  # (regex, literal length, template, path item)
        for template, item in doc["paths"].items():
            rx, literal = "", 0
            for part in re.split(r"(\{[^}]+\})", template):
                if part.startswith("{"):
                    name = part[1:-1]
                    rx += "(.+)" if name in GREEDY_PARAMS else "([^/]+)"
                else:
                    rx += re.escape(part)
                    literal += len(part)
            self.routes.append((re.compile("^" + rx + "$"), literal, template, item))
        self._validators = {}
        self._checker = _format_checker()
        try:  # jsonschema >= 4.18 resolves $refs through `referencing`
            from referencing import Registry, Resource
            from referencing.jsonschema import DRAFT202012
            resource = Resource.from_contents(doc, default_specification=DRAFT202012)
            registry = Registry().with_resource(uri=DOC_URI, resource=resource)
            self._validator_kw = {"registry": registry}
        except ImportError:  # Debian 12's 4.10
            resolver = jsonschema.RefResolver(base_uri=DOC_URI, referrer=doc)
            self._validator_kw = {"resolver": resolver}

    # ---- the document ---------------------------------------------------------------------

    def pointer(self, ptr):
        node = self.doc
        for token in ptr.lstrip("/").split("/") if ptr else []:
            token = token.replace("~1", "/").replace("~0", "~")
            node = node[int(token)] if isinstance(node, list) else node[token]
        return node

    def deref(self, node, ptr):
        """Follows local $refs; returns (object, its JSON pointer)."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#"):
                raise ContractError("only local $refs are supported: " + ref)
            ptr = ref[1:]
            node = self.pointer(ptr)
            seen += 1
            if seen > 32:
                raise ContractError("$ref loop at " + ref)
        return node, ptr

    def match(self, path):
        """The path template the concrete path belongs to (the most literal one wins, as a
        literal route wins over a parameter in the server's router), or None."""
        best = None
        for rx, literal, template, item in self.routes:
            if rx.match(path) and (best is None or literal > best[0]):
                best = (literal, template, item)
        return (best[1], best[2]) if best else (None, None)

    def operations(self):
        for template, item in self.doc["paths"].items():
            for m in METHODS:
                if m in item:
                    yield m.upper(), template

    def validator(self, ptr):
        v = self._validators.get(ptr)
        if v is None:
            schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                      "$ref": DOC_URI + "#" + ptr}
            v = jsonschema.Draft202012Validator(schema, format_checker=self._checker,
                                                **self._validator_kw)
            self._validators[ptr] = v
        return v

    def schema_errors(self, ptr, instance, limit=5):
        """Readable messages for everything wrong with instance under the schema at ptr."""
        errors = sorted(self.validator(ptr).iter_errors(instance),
                        key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
        out = []
        for e in errors[:limit]:
            out.extend(self._explain(e))
        return out

    def _explain(self, error):
        # A failed oneOf says only "not valid under any of the given schemas"; when the schema
        # has a discriminator, validate against the branch the instance names instead.
        where = _json_path(error.absolute_path)
        schema = error.schema if isinstance(error.schema, dict) else {}
        disc = schema.get("discriminator")
        inst = error.instance
        if error.validator == "oneOf" and disc and isinstance(inst, dict):
            target = disc.get("mapping", {}).get(inst.get(disc["propertyName"]))
            if target is None:
                return ["%s: %s %r is not one of %s" % (
                    where, disc["propertyName"], inst.get(disc["propertyName"]),
                    sorted(disc.get("mapping", {})))]
            sub = self.schema_errors(target[1:], inst)
            prefix = where[1:]
            return ["$" + prefix + m[1:] for m in sub] or [where + ": " + error.message]
        if error.validator in ("oneOf", "anyOf") and error.context:
            best = jsonschema.exceptions.best_match(error.context)
            return ["%s: %s (%s)" % (where, error.message[:200], best.message[:300])]
        return ["%s: %s" % (where, error.message[:400])]

    # ---- checking one response ------------------------------------------------------------

    def check(self, method, path, status, headers, body):
        """Returns the list of contract violations of one response ([] when it conforms).
        headers: dict with lower-case names; body: bytes."""
        headers = {k.lower(): v for k, v in headers.items()}
        url = urllib.parse.urlsplit(path)
        template, item = self.match(url.path)
        method = method.upper()
        op_method = "GET" if method == "HEAD" else method
        CHECKED.append((method, template, status))
        problems = []
        if "x-request-id" not in headers:
            problems.append("no X-Request-Id header (D8)")

        op = item.get(op_method.lower()) if item else None
        if op is None:
            problems += self._check_outside(method, url, template, status, headers, body)
            return problems

        op_ptr = "/paths/%s/%s" % (_escape(template), op_method.lower())
        responses = op.get("responses", {})
        if str(status) not in responses:
            problems.append("status %d is not documented for %s %s (documented: %s)" % (
                status, op_method, template, ", ".join(sorted(responses))))
            return problems
        resp, resp_ptr = self.deref(responses[str(status)],
                                    op_ptr + "/responses/" + str(status))
        problems += self._check_headers(resp, resp_ptr, headers)
        content = resp.get("content")
        if not content:
            if body:
                problems.append("the response documents no content but has a %d-byte body" %
                                len(body))
            return problems
        ctype = headers.get("content-type")
        mt = _media_type(ctype)
        if mt not in content:
            problems.append("Content-Type %r is not documented (documented: %s)" % (
                ctype, ", ".join(sorted(content))))
            return problems
        if method == "HEAD":
            return problems
        schema_ptr = resp_ptr + "/content/" + _escape(mt) + "/schema"
        media = content[mt]
        if _is_json(mt):
            try:
                instance = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                problems.append("the %s body is not JSON: %s" % (mt, e))
                return problems
            if "schema" in media:
                problems += self.schema_errors(schema_ptr, instance)
            if mt == "application/problem+json":
                problems += self._check_problem(instance, status, url, headers)
        elif mt == "text/event-stream" and "x-sse-data" in media:
            problems += self._check_sse(body, resp_ptr + "/content/" + _escape(mt) +
                                        "/x-sse-data")
        return problems

    def _check_outside(self, method, url, template, status, headers, body):
        """A request the document has no operation for."""
        if template is None:
            allowed = {404}
            what = "path %s is not in the document" % url.path
        elif method == "OPTIONS":
            allowed = {204, 403, 404}
            what = "OPTIONS %s" % template
        else:
            allowed = {405, 501}
            what = "%s %s is not in the document" % (method, template)
        if status not in allowed:
            return ["%s, and the answer %d is not one of %s" % (what, status, sorted(allowed))]
        if status == 204:
            return [] if not body else ["a 204 with a body"]
        problems = []
        if status == 405 and "allow" not in headers:
            problems.append("405 without an Allow header (D4)")
        if _media_type(headers.get("content-type")) != "application/problem+json":
            problems.append("%d is not application/problem+json (D4)" % status)
        elif method != "HEAD":
            try:
                instance = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                return problems + ["the problem body is not JSON: %s" % e]
            problems += self.schema_errors("/components/schemas/Problem", instance)
            problems += self._check_problem(instance, status, url, headers)
        return problems

    def _check_headers(self, resp, resp_ptr, headers):
        problems = []
        for name, h in (resp.get("headers") or {}).items():
            h, h_ptr = self.deref(h, resp_ptr + "/headers/" + _escape(name))
            value = headers.get(name.lower())
            if value is None:
                if h.get("required"):
                    problems.append("required header %s is missing" % name)
                continue
            if "schema" not in h:
                continue
            schema, ptr = self.deref(h["schema"], h_ptr + "/schema")
            instance = value
            if schema.get("type") == "integer":
                try:
                    instance = int(value)
                except ValueError:
                    problems.append("header %s: %r is not an integer" % (name, value))
                    continue
            problems += ["header %s: %s" % (name, m) for m in self.schema_errors(ptr, instance)]
        return problems

    def _check_problem(self, body, status, url, headers):
        if not isinstance(body, dict):
            return []
        problems = []
        if body.get("status") != status:
            problems.append("$.status is %r but the HTTP status is %d" % (body.get("status"),
                                                                          status))
        rid = headers.get("x-request-id")
        if rid is not None and body.get("requestId") != rid:
            problems.append("$.requestId %r differs from X-Request-Id %r" % (
                body.get("requestId"), rid))
        if body.get("instance") not in (url.path, urllib.parse.unquote(url.path)):
            problems.append("$.instance %r is not the request path %r" % (body.get("instance"),
                                                                           url.path))
        return problems

    def _check_sse(self, body, data_ptr):
        problems = []
        text = body.decode("utf-8", "replace").replace("\r\n", "\n")
        for n, frame in enumerate(text.split("\n\n")):
            data = [line[5:].lstrip(" ") if line.startswith("data:") else None
                    for line in frame.split("\n")]
            data = [d for d in data if d is not None]
            if not data:
                continue
            try:
                instance = json.loads("\n".join(data))
            except ValueError as e:
                problems.append("SSE frame %d: data is not JSON: %s" % (n, e))
                continue
            problems += ["SSE frame %d: %s" % (n, m)
                         for m in self.schema_errors(data_ptr, instance)]
        return problems

    def assert_conforms(self, method, path, status, headers, body):
        problems = self.check(method, path, status, headers, body)
        if problems:
            raise ContractError("response to %s %s (%d) breaks the OpenAPI contract:\n  - %s\n"
                                "body: %r" % (method, path, status, "\n  - ".join(problems),
                                              body[:600]))


_CONTRACT = None


def contract():
    """The document at DOC_PATH, loaded once."""
    global _CONTRACT
    if _CONTRACT is None:
        with open(DOC_PATH, encoding="utf-8") as f:
            _CONTRACT = Contract(json.load(f))
    return _CONTRACT


def hook(resp):
    """RESPONSE_HOOKS entry: raises ContractError (an AssertionError) on a mismatch."""
    contract().assert_conforms(resp.method, resp.path, resp.status, resp.headers, resp.body)


def install(hooks):
    if hook not in hooks:
        contract()  # a broken document fails at import, not in the middle of a test
        hooks.append(hook)
