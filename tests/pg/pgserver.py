#!/usr/bin/env python3
"""pgserver.py — runs a command against a throw-away PostgreSQL 15 server.

    pgserver.py [--timeout SECONDS] [--db NAME] [--env VAR] -- COMMAND [ARGS...]

Creates a temp directory owned by the `postgres` user, runs `initdb` in it as that user
(`runuser -u postgres --`), starts the server with `pg_ctl` listening only on a Unix socket in
that directory (no TCP port, so parallel tests never race for one), creates database NAME
(default ah_test) and runs COMMAND with

    AH_TEST_PG_URL=postgresql://postgres@/NAME?host=<socket dir>

in its environment (and in VAR too with --env VAR). The server is always stopped and the directory removed afterwards: on
success, on failure, on timeout (COMMAND is killed, exit 124), on SIGTERM/SIGINT, and even when
this script is killed with SIGKILL (a detached watchdog holding the read end of a pipe notices
the EOF and cleans up). Exits with COMMAND's status.

The binaries come from /usr/lib/postgresql/15/bin (Debian's `postgresql-15`); set PG_BINDIR to
use others. Runs as root (it must become `postgres`); as `postgres` itself it runs directly.
"""
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile

BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
PG_USER = "postgres"


def as_pg(argv):
    """The command line that runs argv as the postgres user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--"] + argv
    return argv


def pg_ctl(datadir, *args, check=True, timeout=120):
    return subprocess.run(as_pg([os.path.join(BINDIR, "pg_ctl"), "-D", datadir] + list(args)),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=check, timeout=timeout)


def stop_and_remove(top):
    datadir = os.path.join(top, "data")
    if os.path.exists(os.path.join(datadir, "postmaster.pid")):
        # immediate: a test database has nothing worth a clean checkpoint
        pg_ctl(datadir, "stop", "-m", "immediate", "-w", "-t", "60", check=False)
    shutil.rmtree(top, ignore_errors=True)


def start_watchdog(top):
    """A detached grandchild that cleans up when our end of the pipe closes, however we die."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            os.setsid()  # out of our process group: a kill of the group spares it
            if os.fork() != 0:
                os._exit(0)  # reparented to init, so no longer our descendant either
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            while os.read(r, 1):  # blocks until every write end is closed
                pass
            stop_and_remove(top)
        finally:
            os._exit(0)
    os.close(r)
    os.waitpid(pid, 0)
    os.set_inheritable(w, False)
    return w


def main():
    argv = sys.argv[1:]
    timeout, dbname, also = None, "ah_test", []
    while argv and argv[0] != "--":
        if argv[0] == "--timeout" and len(argv) > 1:
            timeout = float(argv[1])
            argv = argv[2:]
        elif argv[0] == "--env" and len(argv) > 1:
            also.append(argv[1])
            argv = argv[2:]
        elif argv[0] == "--db" and len(argv) > 1:
            dbname = argv[1]
            argv = argv[2:]
        else:
            sys.exit(__doc__)
    command = argv[1:]
    if not command:
        sys.exit(__doc__)
    if not os.path.exists(os.path.join(BINDIR, "initdb")):
        sys.exit("pgserver.py: no PostgreSQL in %s (scripts/deps.sh installs postgresql)" % BINDIR)

    top = tempfile.mkdtemp(prefix="ah-pg-")
    pw = pwd.getpwnam(PG_USER)
    if os.geteuid() == 0:
        os.chown(top, pw.pw_uid, pw.pw_gid)
    os.chmod(top, 0o700)
    watchdog = start_watchdog(top)

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)

    datadir = os.path.join(top, "data")
    status = 1
    try:
        subprocess.run(as_pg([os.path.join(BINDIR, "initdb"), "-D", datadir, "-U", PG_USER,
                              "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, check=True, timeout=300)
        # Only the Unix socket in `top`; enough connections for a test's servers and pools.
        opts = ("-c listen_addresses='' -c unix_socket_directories='%s' -c max_connections=200"
                " -c shared_buffers=64MB" % top)
        out = pg_ctl(datadir, "start", "-w", "-t", "120", "-l", os.path.join(top, "log"),
                     "-o", opts, check=False)
        if out.returncode != 0:
            log = ""
            try:
                with open(os.path.join(top, "log")) as f:
                    log = f.read()
            except OSError:
                pass
            raise RuntimeError("pg_ctl start failed:\n%s\n%s" % (out.stdout.decode(), log))
        subprocess.run([os.path.join(BINDIR, "createdb"), "-h", top, "-U", PG_USER, dbname],
                       stdin=subprocess.DEVNULL, check=True, timeout=120)
        url = "postgresql://%s@/%s?host=%s" % (PG_USER, dbname, top)
        env = dict(os.environ, AH_TEST_PG_URL=url)
        env.update({name: url for name in also})
        proc = subprocess.Popen(command, env=env)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            sys.stderr.write("pgserver.py: %s timed out after %gs\n" % (command[0], timeout))
            proc.kill()
            proc.wait()
            status = 124
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
            status = 130
    except subprocess.CalledProcessError as e:
        sys.stderr.write("pgserver.py: %s failed: %s\n" % (
            e.cmd[0] if isinstance(e.cmd, list) else e.cmd,
            (e.stderr or b"").decode(errors="replace")))
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        sys.stderr.write("pgserver.py: %s\n" % e)
    except KeyboardInterrupt:
        status = 130
    finally:
        stop_and_remove(top)
        os.close(watchdog)
    return status


if __name__ == "__main__":
    sys.exit(main())
