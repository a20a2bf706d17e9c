#!/usr/bin/env python3
"""corpus.py — the workspace layer against the git CLI, case by case (issue 11, D30).

For each case, tree A then tree B are written into one working directory that is also a
throw-away git repository. Each state is recorded twice: a snapshot by ws-tool (our store, in
another directory) and `git add -A` + commit by the git CLI. Then, for the same two trees:
  - our snapshot's tree id equals git's (same blobs, modes, symlinks, names);
  - our `unified` diff is byte-identical to `git diff --no-color` with -U0, -U1, -U3 (default),
    -U10 and whole-file context;
  - `git apply --cached` of our `patch` onto an index of tree A writes tree B exactly;
  - our change list agrees with `git diff --name-status` and `--numstat`;
  - `split` is JSON with one entry per file, `html` parses and holds no script or handler;
  - every case's `html`, inside a minimal HTML5 page, passes the html-validate validator (npm,
    installed by scripts/deps.sh into node_modules) with its recommended rules.

    corpus.py WS_TOOL [CASE...]
"""
import html.parser
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

TOOL = sys.argv[1]
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
HTML_VALIDATE = os.environ.get("AH_HTML_VALIDATE") or os.path.join(ROOT, "node_modules", ".bin",
                                                                   "html-validate")
# The fragment is made to sit in a page under its h1/h2 (its file headings are h3).
PAGE = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<title>diff</title>\n</head>\n<body>\n<main>\n<h1>Session</h1>\n<h2>Changes</h2>\n'
        '%s</main>\n</body>\n</html>\n')
HTML_DIR = None  # set by main
ONLY = set(sys.argv[2:])
ENV = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null",
           GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
           GIT_COMMITTER_EMAIL="t@example.com", LC_ALL="C")
ENV.pop("GIT_DIR", None)
ENV.pop("GIT_INDEX_FILE", None)


def X(data):  # an executable file
    return ("x", data)


def L(target):  # a symlink
    return ("l", target)


def lines(n, fmt="line {}\n"):
    return "".join(fmt.format(i) for i in range(1, n + 1)).encode()


C_SRC = (b"#include <stdio.h>\n\nstatic int helper(int x)\n{\n" +
         b"".join(b"    x += %d;\n" % i for i in range(30)) +
         b"    return x;\n}\n\nint main(void)\n{\n" +
         b"".join(b"    printf(\"%%d\\n\", helper(%d));\n" % i for i in range(30)) +
         b"    return 0;\n}\n")
LONG_FUNC = (b"int a_function_with_a_very_long_name_and_arguments(int first_argument, int "
             b"second  \t  argument_name_here)\n{\n" + lines(20, "    step({});\n") + b"}\n")
BIG = lines(10000)
BIG_B = BIG.replace(b"line 10\n", b"line ten\n").replace(b"line 5000\n", b"").replace(
    b"line 9999\n", b"line 9999\nline extra\n")
TEXT = lines(60, "text line number {} with some words in it\n")
SIM60 = b"".join(l if i % 5 not in (1, 2) else b"changed %d\n" % i
                 for i, l in enumerate(TEXT.splitlines(True)))
BINARY = bytes(range(256)) * 40
BINARY_B = BINARY[:5000] + b"\x00changed\x00" + BINARY[5000:]
MANY_A = {"many/f%04d.txt" % i: b"file %d\nsecond line\n" % i for i in range(1000)}
MANY_B = {k: v.replace(b"second", b"2nd") for k, v in MANY_A.items()}

CASES = [
    ("add", {"a.txt": b"a\n"}, {"a.txt": b"a\n", "new.txt": b"one\ntwo\n"}),
    ("delete", {"a.txt": b"a\n", "gone.txt": b"bye\nbye\n"}, {"a.txt": b"a\n"}),
    ("modify", {"main.c": C_SRC}, {"main.c": C_SRC.replace(b"x += 17", b"x -= 17")
                                   .replace(b"helper(25)", b"helper(250)")}),
    ("rename", {"old/name.txt": TEXT, "z.txt": b"z\n"}, {"new/name.txt": TEXT, "z.txt": b"z\n"}),
    ("rename-modify", {"a.txt": TEXT, "m.txt": b"m\n"},
     {"m.txt": b"m\n", "z/b.txt": TEXT.replace(b"number 30 ", b"number thirty ")}),
    ("rename-60", {"src.txt": TEXT}, {"dst.txt": SIM60}),
    ("rename-below-50", {"src.txt": TEXT}, {"dst.txt": TEXT[: len(TEXT) // 3] + lines(40)}),
    ("mode-change", {"run.sh": b"#!/bin/sh\necho hi\n", "t.sh": b"x\n"},
     {"run.sh": X(b"#!/bin/sh\necho hi\n"), "t.sh": X(b"y\n")}),
    ("mode-remove-exec", {"run.sh": X(b"echo\n")}, {"run.sh": b"echo\n"}),
    ("empty-file", {"a.txt": b"a\n", "full.txt": b"x\n"},
     {"a.txt": b"a\n", "empty.txt": b"", "full.txt": b""}),
    ("empty-to-content", {"e.txt": b""}, {"e.txt": b"now\nsomething\n"}),
    ("no-newline", {"a.txt": b"a\nb", "b.txt": b"x\ny\n", "c.txt": b"p\nq"},
     {"a.txt": b"a\nb\n", "b.txt": b"x\ny", "c.txt": b"p\nQ"}),
    ("crlf", {"w.txt": b"int f()\r\n{\r\n  one;\r\n  two;\r\n}\r\n"},
     {"w.txt": b"int f()\r\n{\r\n  one;\r\n  TWO;\r\n}\r\n", "mixed.txt": b"a\r\nb\nc\r"}),
    ("non-utf8", {"latin1.txt": b"caf\xe9\nna\xefve\n"},
     {"latin1.txt": b"caf\xe9\nna\xefve!\n\xff\xfe\n", "bad.txt": b"\xc3\x28 \x80\n"}),
    ("binary", {"img.bin": BINARY, "del.bin": b"\x00\x01\x02"},
     {"img.bin": BINARY_B, "new.bin": b"\x00" * 100}),
    ("binary-odd-names", {"sp ace.bin": b"\x00a", "caf\u00e9 x.bin": b"\x00b"},
     {"sp ace.bin": b"\x00A", "caf\u00e9 x.bin": b"\x00B"}),
    ("binary-rename", {"a.bin": BINARY}, {"b.bin": BINARY}),
    ("unicode-names", {"plain.txt": b"p\n"},
     {"plain.txt": b"p\n", "café/naïve.txt": b"x\n", "日本語.md": b"y\n", "sp ace.txt": b"s\n",
      "quo\"te.txt": b"q\n", "back\\slash.txt": b"b\n", "tab\there.txt": b"t\n",
      "emoji-😀.txt": b"e\n", "dash -- name.txt": b"d\n"}),
    ("unicode-rename", {"ünï.txt": TEXT}, {"dir with space/ünï 2.txt": TEXT}),
    ("big-file", {"big.txt": BIG}, {"big.txt": BIG_B}),
    ("many-files", MANY_A, MANY_B),
    ("many-added", {"keep": b"k\n"}, dict(MANY_A, keep=b"k\n")),
    # 1001 x 1001 candidates pass git's renameLimit^2: only the identical one pairs up
    ("rename-limit", dict({"old/a%04d.txt" % i: b"common %d\nshared text\nmore\n" % i
                           for i in range(1001)}, **{"same.txt": TEXT}),
     dict({"new/b%04d.txt" % i: b"common %d\nshared text\nmore!\n" % i for i in range(1000)},
          **{"moved.txt": TEXT})),
    ("symlink", {"t.txt": b"t\n", "l1": L("t.txt")},
     {"t.txt": b"t\n", "l1": L("other.txt"), "l2": L("../outside/secret"), "l3": L("dir/")}),
    ("typechange", {"t": b"x\n", "u": L("t")}, {"t": L("target"), "u": b"now a file\n"}),
    ("rename-ambiguous", {"a1.txt": TEXT, "a2.txt": TEXT.replace(b"number 1 ", b"n1 ")},
     {"b1.txt": TEXT.replace(b"number 2 ", b"n2 "), "b2.txt": TEXT.replace(b"number 3 ", b"n3 ")}),
    ("rename-mode-change", {"tool.py": TEXT}, {"bin/tool": X(TEXT.replace(b"number 9 ", b"n9 "))}),
    ("deep-and-dotfiles", {".env": b"A=1\n", "a/b/c/d/e/f/g/h.txt": b"h\n"},
     {".env": b"A=2\n", ".hidden/x": b"x\n", "a/b/c/d/e/f/g/h.txt": b"h\n", "a/b/i.txt": b"i\n"}),
    ("long-function-line", {"f.c": LONG_FUNC}, {"f.c": LONG_FUNC.replace(b"step(15)", b"walk(15)")}),
    ("nested-delete", {"d/e/f/g.txt": b"g\n", "d/h.txt": b"h\n", "k.txt": b"k\n"},
     {"k.txt": b"K\n"}),
    ("html-hostile", {"page.html": b"<p>old & \"quoted\"</p>\n", "x.txt": b"a\n"},
     {"page.html": b"<script>alert('x&y')</script>\n</td></tr></table>\n<!-- c -->\n",
      "x.txt": b"a\x01b\x7fc\xc2\x85d\x1b[31m\n", "<b>&amp;.txt": b"]]>\n"}),
    ("dir-vs-file-order", {"a.b": b"1\n", "a/b": b"2\n", "a-c": b"3\n"},
     {"a.b": b"one\n", "a/b": b"two\n", "a-c": b"three\n", "a0": b"4\n"}),
]

failures = []


def run(args, cwd=None, env=ENV, input=None):
    p = subprocess.run(args, cwd=cwd, env=env, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(map(str, args)), p.returncode,
                                               p.stderr.decode(errors="replace")))
    return p.stdout


def write_tree(work, files):
    for name in os.listdir(work):
        if name == ".git":
            continue
        p = os.path.join(work, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)
    for path, spec in files.items():
        full = os.path.join(work, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if isinstance(spec, tuple) and spec[0] == "l":
            os.symlink(spec[1], full)
            continue
        data = spec[1] if isinstance(spec, tuple) else spec
        with open(full, "wb") as f:
            f.write(data)
        os.chmod(full, 0o755 if isinstance(spec, tuple) else 0o644)


def record(work, store, label):
    out = run([TOOL, "snapshot", store, work, label]).decode().split()
    run(["git", "add", "-A"], cwd=work)
    run(["git", "commit", "-q", "--allow-empty", "-m", label], cwd=work)
    tree = run(["git", "rev-parse", "HEAD^{tree}"], cwd=work).decode().strip()
    return out[0], out[1], tree


def check(name, what, ok, detail=""):
    if not ok:
        failures.append("%s: %s %s" % (name, what, detail))
        print("FAIL %s: %s %s" % (name, what, detail[:2000]))


class HtmlCheck(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.bad = []
        self.stack = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "iframe", "object", "embed", "link", "img", "style"):
            self.bad.append(tag)
        for k, v in attrs:
            if k.startswith("on") or (v and "javascript:" in v.lower()):
                self.bad.append(k)
        self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.bad.append("unbalanced </%s>" % tag)


def compare(name, work, store, a, b):
    snap_a, ours_a, git_a = a
    snap_b, ours_b, git_b = b
    check(name, "tree A id", ours_a == git_a, "%s != %s" % (ours_a, git_a))
    check(name, "tree B id", ours_b == git_b, "%s != %s" % (ours_b, git_b))
    for ctx in ("0", "1", "3", "10", "full"):
        uflag = "-U1073741824" if ctx == "full" else "-U" + ctx
        theirs = run(["git", "diff", "--no-color", "--no-ext-diff", uflag, "HEAD~", "HEAD"],
                     cwd=work)
        ours = run([TOOL, "diff", store, snap_a, snap_b, "unified", ctx])
        if ours != theirs:
            import difflib
            d = "".join(difflib.unified_diff(theirs.decode(errors="replace").splitlines(True),
                                             ours.decode(errors="replace").splitlines(True),
                                             "git", "ours", n=2))
            check(name, "unified -U%s byte-identical" % ctx, False, "\n" + d)
    # the patch applies to tree A and gives tree B
    patch = run([TOOL, "diff", store, snap_a, snap_b, "patch"])
    idx = os.path.join(os.path.dirname(work), "apply.index")
    env = dict(ENV, GIT_INDEX_FILE=idx)
    run(["git", "read-tree", "HEAD~"], cwd=work, env=env)
    try:
        run(["git", "apply", "--cached", "--whitespace=nowarn", "-"], cwd=work, env=env,
            input=patch)
        applied = run(["git", "write-tree"], cwd=work, env=env).decode().strip()
        check(name, "git apply of patch gives tree B", applied == git_b,
              "%s != %s" % (applied, git_b))
    except RuntimeError as e:
        check(name, "git apply of patch", False, str(e) + patch.decode(errors="replace")[:3000])
    os.unlink(idx)
    # the change list agrees with git's name-status and numstat
    changes = [json.loads(l) for l in run([TOOL, "changes", store, snap_a, snap_b]).splitlines()]
    ns = run(["git", "diff", "-z", "--name-status", "HEAD~", "HEAD"], cwd=work).split(b"\0")
    num = run(["git", "diff", "-z", "--numstat", "HEAD~", "HEAD"], cwd=work).split(b"\0")
    expect = []
    i = 0
    while i < len(ns) - 1:
        st = ns[i].decode()
        if st.startswith("R"):
            expect.append((ns[i + 2].decode(errors="surrogateescape"), "renamed",
                           ns[i + 1].decode(errors="surrogateescape"), int(st[1:])))
            i += 3
        else:
            s = {"A": "added", "D": "deleted", "M": "modified", "T": "modified"}[st]
            expect.append((ns[i + 1].decode(errors="surrogateescape"), s, None, 0))
            i += 2
    got = [(c["path"], c["status"], c.get("old_path"), c["similarity"]) for c in changes]
    # git lists a type change once (T); so do we
    check(name, "changes match name-status", sorted(got) == sorted(expect),
          "%r != %r" % (got, expect))
    counts = {}
    i = 0
    while i < len(num) - 1:
        f = num[i].split(b"\t", 2)
        if f[2] == b"":  # rename: the two paths follow
            counts[num[i + 2].decode(errors="surrogateescape")] = (f[0], f[1])
            i += 3
        else:
            counts[f[2].decode(errors="surrogateescape")] = (f[0], f[1])
            i += 1
    for c in changes:
        want = counts.get(c["path"])
        mine = (b"-", b"-") if c["binary"] else (str(c["lines_added"]).encode(),
                                                   str(c["lines_removed"]).encode())
        check(name, "numstat of %s" % c["path"], want == mine, "%r != %r" % (mine, want))
    # split is JSON, one entry per file; html is balanced and inert
    split = json.loads(run([TOOL, "diff", store, snap_a, snap_b, "split"]))
    check(name, "split files", len(split["files"]) == len(changes) or
          any(c["status"] == "modified" and c["old_mode"] and c["new_mode"] and
              (c["old_mode"] ^ c["new_mode"]) & 0o170000 for c in changes))
    for f in split["files"]:
        for h in f["hunks"]:
            for r in h["rows"]:
                check(name, "split row kind", r["kind"] in ("context", "add", "del", "change"))
                check(name, "split row sides", (r["left"] is None) == (r["kind"] == "add") and
                      (r["right"] is None) == (r["kind"] == "del"))
    page = run([TOOL, "diff", store, snap_a, snap_b, "html"]).decode()
    hc = HtmlCheck()
    hc.feed(page)
    hc.close()
    check(name, "html inert and balanced", not hc.bad and not hc.stack, repr(hc.bad + hc.stack))
    with open(os.path.join(HTML_DIR, name + ".html"), "w", encoding="utf-8") as f:
        f.write(PAGE % page)


def validate_html():
    """One html-validate run over every case's page; its report names the case and line."""
    files = sorted(os.path.join(HTML_DIR, n) for n in os.listdir(HTML_DIR))
    if not files:
        return
    if not os.access(HTML_VALIDATE, os.X_OK):
        check("html", "html-validate installed", False,
              "%s is missing: run scripts/deps.sh (npm ci)" % HTML_VALIDATE)
        return
    p = subprocess.run([HTML_VALIDATE, "--preset", "recommended", "--formatter", "text", *files],
                       capture_output=True)
    check("html", "html-validate accepts every page (%d)" % len(files), p.returncode == 0,
          (p.stdout + p.stderr).decode(errors="replace")[-6000:])
    if p.returncode == 0:
        print("ok   html-validate: %d pages" % len(files))


def main():
    global HTML_DIR
    tmp = tempfile.mkdtemp(prefix="ws-corpus-")
    HTML_DIR = os.path.join(tmp, "html")
    os.makedirs(HTML_DIR)
    try:
        for name, ta, tb in CASES:
            if ONLY and name not in ONLY:
                continue
            base = os.path.join(tmp, name)
            work, store = os.path.join(base, "work"), os.path.join(base, "store")
            os.makedirs(work)
            run(["git", "init", "-q", work])
            write_tree(work, ta)
            a = record(work, store, "A")
            write_tree(work, tb)
            b = record(work, store, "B")
            before = len(failures)
            compare(name, work, store, a, b)
            print("%s %s" % ("ok  " if len(failures) == before else "FAIL", name))
            shutil.rmtree(base)
        validate_html()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("all %d cases agree with git" % len([c for c in CASES if not ONLY or c[0] in ONLY]))


main()
