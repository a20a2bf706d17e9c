"""A small SSE client for the tests: reads frames from a live stream and records the raw bytes,
so the contract check can hold every frame to the document when the stream is closed."""

import http.client
import json
import socket
import time

import ahtest


class SSE:
    def __init__(self, server, path, headers=None, timeout=30):
        self.server = server
        self.path = path
        h = {"Accept": "text/event-stream"}
        h.update(headers or {})
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
        self.conn.request("GET", path, headers=h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.raw = b""
        self.closed = False
        if self.status != 200:
            self.raw = self.resp.read()
            self.finish()

    def frames(self, timeout=30):
        """Yields ("comment", text) and ("event", {id, event, data}) until the server closes."""
        self.conn.sock.settimeout(timeout)
        frame = {}
        while True:
            try:
                line = self.resp.fp.readline() if False else self.resp.readline()
            except socket.timeout:
                raise AssertionError("no SSE data for %ss on %s" % (timeout, self.path))
            if not line:
                self.finish()
                return
            self.raw += line
            text = line.decode("utf-8").rstrip("\r\n")
            if text == "":
                if frame:
                    if "data" in frame:
                        frame["json"] = json.loads(frame["data"])
                    yield ("event", frame)
                frame = {}
            elif text.startswith(":"):
                yield ("comment", text[1:].strip())
            else:
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                frame[name] = frame[name] + "\n" + value if name in frame else value

    def events(self, n=None, timeout=30):
        """The next n events (all until close when n is None)."""
        out = []
        if n == 0:
            return out
        for kind, f in self.frames(timeout):
            if kind == "event" and "json" in f:
                out.append(f)
                if n is not None and len(out) >= n:
                    break
        return out

    def finish(self):
        if self.closed:
            return
        self.closed = True
        ahtest.record(ahtest.Response("GET", self.path, self.status, self.headers, self.raw))
        self.conn.close()

    def close(self):
        self.conn.close()
        self.closed = True
