"""The devcontainer runtime (issue 19, D51) with the real podman: a local image made here from
Debian's busybox-static (nothing is pulled), a session whose agent runs in a container of it,
with the workspace bind-mounted: its edit lands in the workspace, its events and terminal are
recorded as for a local session, pause freezes the container, stop ends it, and the container
is removed after. Also: devcontainer.json (image and containerEnv, with comments), a bad
devcontainerPath failing its session with the reason, and the 422 and GET /runtimes answers of
a host without podman or without its OCI runtime."""

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time

import ahtest
from ahtest import Server
from sessiontest import create, events, session, wait_for, wait_status

BUSYBOX = "/bin/busybox"
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
IMAGE = "localhost/ah-test-devcontainer:%d" % os.getpid()

# The agent: a shell script the image's busybox runs; the prompt says what it does.
AGENT = r"""#!/bin/sh
case "$1" in
edit)
    echo "made in the container" > from-container.txt
    echo "IMAGE $(cat /etc/ah-test-image)"
    echo "ENV GREETING=$GREETING HOME=$HOME EVENTS=$AH_EVENTS_FD"
    ;;
stubborn)
    trap '' TERM
    echo "ignoring SIGTERM"
    while true; do sleep 0.1; done
    ;;
tick)
    i=0
    while [ ! -e stop ]; do
        i=$((i + 1))
        echo "tick $i" >> ticks.txt
        echo "tick $i"
        sleep 0.1
    done
    ;;
esac
"""


def make_image(tmp):
    """A root filesystem of busybox (as /bin/sh and the few applets the agent uses) and a
    marker file, imported as a local image."""
    root = os.path.join(tmp, "rootfs")
    os.makedirs(os.path.join(root, "bin"))
    os.makedirs(os.path.join(root, "etc"))
    os.makedirs(os.path.join(root, "tmp"), mode=0o1777)
    shutil.copy(BUSYBOX, os.path.join(root, "bin", "busybox"))
    for applet in ("sh", "cat", "sleep", "ls", "echo", "env"):
        os.symlink("busybox", os.path.join(root, "bin", applet))
    with open(os.path.join(root, "etc", "ah-test-image"), "w") as f:
        f.write("busybox-devcontainer\n")
    tar = os.path.join(tmp, "rootfs.tar")
    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=".")
    subprocess.run(PODMAN + ["import", "--change", "ENV PATH=/bin", tar, IMAGE], check=True,
                   capture_output=True, timeout=300)


def containers(name):
    out = subprocess.run(PODMAN + ["ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                         text=True, timeout=120)
    return [n for n in out.stdout.split() if n == name]


def log_lines(server, sid):
    return [e.get("message", "") for e in events(server, sid, type="log")]


class DevcontainerTest(ahtest.ServerTest):
    extra_config = ""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ah-dc-")
        cls.agent = os.path.join(cls.tmp, "dc-agent.sh")
        with open(cls.agent, "w") as f:
            f.write(AGENT)
        os.chmod(cls.agent, 0o755)
        cfg = os.path.join(cls.tmp, "dc.toml")
        with open(cfg, "w") as f:
            f.write("[agents.dc]\ncommand = %s\nformat = \"text\"\n" % json.dumps(cls.agent))
            f.write(cls.extra_config)
        cls.server = Server(args=("--config", cfg, "--stop-grace-ms", "3000"), tmpdir=cls.tmp)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def body(self, prompt, **runtime):
        rt = {"type": "devcontainer"}
        rt.update(runtime)
        return {"prompt": prompt, "repo": {"mode": "none"}, "runtime": rt,
                "agents": [{"type": "dc", "count": 1}]}


class Devcontainer(DevcontainerTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        make_image(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            subprocess.run(PODMAN + ["rmi", "--force", IMAGE], capture_output=True, timeout=300)

    def test_runtimes_lists_devcontainer(self):
        rt = self.server.get("/api/v1/runtimes").json()
        self.assertIn({"type": "devcontainer"}, rt["items"])
        self.assertNotIn("devcontainer", [u["type"] for u in rt["unavailable"]])

    def test_agent_runs_in_the_container_and_edits_the_workspace(self):
        srv = self.server
        sid = create(srv, self.body("edit", image=IMAGE))["id"]
        s = wait_status(srv, sid, {"completed", "failed", "stopped"}, 120)
        self.assertEqual(s["status"], "completed", (s, srv.stderr()[-3000:]))
        ws = s["workspace"]["mountPath"]
        with open(os.path.join(ws, "from-container.txt")) as f:
            self.assertEqual(f.read(), "made in the container\n")
        lines = log_lines(srv, sid)
        # the image's own file: the agent ran inside, not on the host
        self.assertIn("IMAGE busybox-devcontainer", lines)
        env = [l for l in lines if l.startswith("ENV ")][0]
        self.assertIn("HOME=/", env)
        self.assertIn("EVENTS=3", env)  # the events pipe passed in, as outside
        evs = events(srv, sid)
        self.assertTrue([e for e in evs if e["type"] == "file_edit" and
                         e.get("file_path") == "from-container.txt"], evs[-5:])
        rec = srv.get("/api/v1/sessions/%s/recording" % sid, record_it=False)
        self.assertEqual(rec.status, 200)
        self.assertIn(b"IMAGE busybox-devcontainer", rec.body)
        wait_for(lambda: not containers("ah-" + sid), 60, "the container to be removed")
        wait_for(lambda: not os.path.exists("/sys/fs/cgroup/freezer/ah-devcontainer/ah-" + sid),
                 30, "the container's cgroups to be removed")

    def test_pause_freezes_the_container_and_stop_removes_it(self):
        srv = self.server
        sid = create(srv, self.body("tick", image=IMAGE))["id"]
        s = wait_status(srv, sid, "running", 120)
        ticks = os.path.join(s["workspace"]["mountPath"], "ticks.txt")
        wait_for(lambda: os.path.exists(ticks) and os.path.getsize(ticks) > 20, 120, "ticks")
        freezer = "/sys/fs/cgroup/freezer/ah-devcontainer/ah-%s/freezer.state" % sid
        self.assertEqual(srv.post("/api/v1/sessions/%s/pause" % sid).status, 202)
        wait_status(srv, sid, "paused")
        def frozen():
            with open(freezer) as f:
                return f.read().strip() == "FROZEN"
        wait_for(frozen, 30, "the container frozen")
        size = os.path.getsize(ticks)
        time.sleep(0.5)  # a frozen agent writes nothing: nothing to wait for but time
        self.assertEqual(os.path.getsize(ticks), size)
        self.assertEqual(srv.post("/api/v1/sessions/%s/resume" % sid).status, 202)
        wait_status(srv, sid, "running")
        wait_for(lambda: os.path.getsize(ticks) > size, 60, "ticks after the resume")
        self.assertEqual(srv.post("/api/v1/sessions/%s/stop" % sid).status, 202)
        wait_status(srv, sid, "stopped", 120)
        wait_for(lambda: not containers("ah-" + sid), 60, "the container to be removed")
        wait_for(lambda: not os.path.exists(os.path.dirname(freezer)), 30,
                 "the container's cgroup to be removed")
        rec = srv.get("/api/v1/sessions/%s/recording" % sid, record_it=False)
        self.assertIn(b"tick 1", rec.body)
        self.assertTrue([e for e in events(srv, sid) if e["type"] == "file_edit" and
                         e.get("file_path") == "ticks.txt"])

    def test_an_agent_that_ignores_stop_is_killed_and_its_container_removed(self):
        # the grace period ends with SIGKILL of the podman client, which cannot remove its
        # container then: the recorder does, before the session ends
        srv = self.server
        sid = create(srv, self.body("stubborn", image=IMAGE))["id"]
        wait_status(srv, sid, "running", 120)
        wait_for(lambda: "ignoring SIGTERM" in log_lines(srv, sid), 120, "the agent to start")
        self.assertEqual(len(containers("ah-" + sid)), 1)
        self.assertEqual(srv.post("/api/v1/sessions/%s/stop" % sid).status, 202)
        wait_status(srv, sid, "stopped", 120)
        self.assertEqual(containers("ah-" + sid), [])

    def test_devcontainer_json_gives_the_image_and_environment(self):
        srv = self.server
        repo = os.path.join(self.tmp, "repo")
        os.makedirs(os.path.join(repo, ".devcontainer"))
        with open(os.path.join(repo, ".devcontainer", "devcontainer.json"), "w") as f:
            f.write('// a devcontainer.json as editors write them\n'
                    '{\n  "name": "test", /* ignored */\n  "image": %s,\n'
                    '  "containerEnv": {"GREETING": "hello-from-devcontainer",},\n}\n'
                    % json.dumps(IMAGE))

        def git(*args):
            subprocess.run(("git",) + args, cwd=repo, check=True, capture_output=True)
        git("init", "-q", "-b", "main")
        git("add", ".")
        git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "dc")
        body = self.body("edit", devcontainerPath=".devcontainer/devcontainer.json")
        body["repo"] = {"mode": "git", "url": repo}
        sid = create(srv, body)["id"]
        s = wait_status(srv, sid, {"completed", "failed", "stopped"}, 120)
        self.assertEqual(s["status"], "completed", s)
        lines = log_lines(srv, sid)
        self.assertIn("IMAGE busybox-devcontainer", lines)
        self.assertTrue([l for l in lines if "GREETING=hello-from-devcontainer" in l], lines)
        self.assertEqual(s["runtime"]["devcontainerPath"], ".devcontainer/devcontainer.json")

    def test_a_missing_devcontainer_json_fails_the_session(self):
        sid = create(self.server, self.body("edit", devcontainerPath="nope/devcontainer.json"))["id"]
        s = wait_status(self.server, sid, {"completed", "failed", "stopped"}, 60)
        self.assertEqual(s["status"], "failed")
        self.assertIn("nope/devcontainer.json", s["error"])
        self.assertIn("not found", s["error"])

    def test_bad_images_are_refused(self):
        for image in ("--privileged", "a b", ""):
            r = self.server.post("/api/v1/tasks", body=self.body("edit", image=image))
            self.assertProblem(r, 400, "validation")
        r = self.server.post("/api/v1/tasks",
                             body=self.body("edit", devcontainerPath="../devcontainer.json"))
        self.assertProblem(r, 400, "validation")
        r = self.server.post("/api/v1/tasks", body=self.body("edit"))
        p = self.assertProblem(r, 400, "validation")
        self.assertIn("runtime.image", json.dumps(p))


class NoPodman(DevcontainerTest):
    extra_config = "[sandbox]\npodman = \"/nonexistent/podman\"\n"

    def test_refused_with_422_naming_podman(self):
        r = self.server.post("/api/v1/tasks", body=self.body("edit", image=IMAGE))
        p = self.assertProblem(r, 422, "runtime-unavailable")
        self.assertIn("devcontainer", p["detail"])
        self.assertIn("podman (/nonexistent/podman) is not installed", p["detail"])
        rt = self.server.get("/api/v1/runtimes").json()
        self.assertNotIn("devcontainer", [i["type"] for i in rt["items"]])
        (u,) = [u for u in rt["unavailable"] if u["type"] == "devcontainer"]
        self.assertIn("podman (/nonexistent/podman) is not installed", u["reason"])


class NoOciRuntime(DevcontainerTest):
    extra_config = "[sandbox]\npodman-runtime = \"/nonexistent/runc\"\n"

    def test_refused_with_422_naming_the_oci_runtime(self):
        r = self.server.post("/api/v1/tasks", body=self.body("edit", image=IMAGE))
        p = self.assertProblem(r, 422, "runtime-unavailable")
        self.assertIn("OCI runtime /nonexistent/runc", p["detail"])
        rt = self.server.get("/api/v1/runtimes").json()
        self.assertNotIn("devcontainer", [i["type"] for i in rt["items"]])


if __name__ == "__main__":
    ahtest.main()
