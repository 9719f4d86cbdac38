"""A real HTTP server on 127.0.0.1 for the download tests: Range support, and switches to
truncate a transfer, fail with 500, serve the wrong bytes or ignore Range."""

import http.server
import re
import threading


class State:
    def __init__(self, payload):
        self.payload = payload
        self.truncate_next = 0      # how many coming transfers stop half-way
        self.requests = []          # (path, Range header or None)


def make_handler(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            state.requests.append((self.path, self.headers.get("Range")))
            if self.path == "/error.bin":
                return self._send(500, b"internal error")
            if self.path == "/missing.bin":
                return self._send(404, b"not found")
            body = state.payload if self.path != "/wrong.bin" else state.payload[::-1]
            start = 0
            match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
            if match and self.path != "/norange.bin":
                start = int(match.group(1))
                if start >= len(body):
                    return self._send(416, b"")
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            chunk = body[start:]
            if state.truncate_next > 0:
                state.truncate_next -= 1
                self.wfile.write(chunk[: len(chunk) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

        def _send(self, code, body):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


class Server:
    def __init__(self, payload):
        self.state = State(payload)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
