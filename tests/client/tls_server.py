"""tls_server.py — a throwaway HTTPS server for the client's TLS tests.

Usage: tls_server.py CERT KEY PORT_FILE [CLIENT_CA]
Serves GET /api/v1/healthz with {"status":"ok"} on 127.0.0.1 (ephemeral port, written to
PORT_FILE once listening). With CLIENT_CA, a client certificate signed by it is required (mTLS).
Runs until killed.
"""
import http.server
import json
import os
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"status": "ok", "timestamp": "2025-01-01T00:00:00.000Z"}).encode()
        status = 200 if self.path == "/api/v1/healthz" else 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def main():
    cert, key, port_file = sys.argv[1:4]
    client_ca = sys.argv[4] if len(sys.argv) > 4 else None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=client_ca)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
