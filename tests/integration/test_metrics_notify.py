"""Issue 18 item 7: the systemd service protocol (contrib/agent-harbor.service, Type=notify).
The server tells systemd READY=1 once it answers, feeds the watchdog (WATCHDOG=1 about every half
WatchdogSec) while its store answers, and says STOPPING=1 on SIGTERM. The test plays systemd's
part with a datagram socket in NOTIFY_SOCKET."""

import os
import socket
import tempfile
import time
import unittest

import ahtest
from ahtest import Server


class Notify(unittest.TestCase):
    def test_ready_watchdog_stopping(self):
        tmp = tempfile.mkdtemp(prefix="ah-notify-")
        path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.2)
        msgs = []

        def drain(until, want):
            deadline = time.monotonic() + until
            while time.monotonic() < deadline and not want():
                try:
                    msgs.append(sock.recv(4096).decode())
                except socket.timeout:
                    pass
        s = Server(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        try:
            self.assertEqual(s.get("/api/v1/readyz").status, 200)
            drain(10, lambda: any("READY=1" in m for m in msgs))
            self.assertTrue(any("READY=1" in m for m in msgs), msgs)
            # READY=1 comes once the store is up: nothing before it is a watchdog ping
            first = next(i for i, m in enumerate(msgs) if "READY=1" in m)
            self.assertFalse(any("WATCHDOG=1" in m for m in msgs[:first]), msgs)
            n = len(msgs)
            drain(10, lambda: sum("WATCHDOG=1" in m for m in msgs[n:]) >= 3)
            self.assertGreaterEqual(sum("WATCHDOG=1" in m for m in msgs[n:]), 3, msgs)
            self.assertEqual(s.stop(), 0)
            drain(5, lambda: any("STOPPING=1" in m for m in msgs))
            self.assertTrue(any("STOPPING=1" in m for m in msgs), msgs)
        finally:
            s.close()
            sock.close()
            os.unlink(path)
            os.rmdir(tmp)

    def test_silent_without_systemd(self):
        s = Server()  # no NOTIFY_SOCKET: nothing to do, nothing breaks
        try:
            self.assertEqual(s.get("/api/v1/readyz").status, 200)
        finally:
            self.assertEqual(s.close(), 0)


if __name__ == "__main__":
    ahtest.main()
