"""A real HTTP server on 127.0.0.1 for the download tests.

Plain files (``/good.bin``…) with Range support and switches to truncate a transfer, fail with
500, serve the wrong bytes or ignore Range; and imitations of the two hosts published weights
live on, answering as they do:

- Google Drive: ``/uc?export=download&id=ID`` redirects (303) to ``/download?id=ID&export=download``
  which, for a large file, is the "can't scan for viruses" HTML page with the ``#download-form``
  (hidden id, export, confirm=t and a per-page uuid); only the confirmed URL with that uuid serves
  the bytes (with Range). ``id=old-…`` is the older page (a ``confirm=TOKEN`` link),
  ``id=cookie-…`` the oldest (a ``download_warning`` cookie, no link), ``id=quota`` Drive's
  "too many users" error page, ``id=small`` a file small enough to be sent at once.
- Hugging Face hub: ``/<org>/<repo>/resolve/<rev>/<file>`` answers HEAD and GET with a 302 to
  ``/cdn/<sha256>?X-Amz-Signature=…`` carrying X-Linked-Etag / X-Linked-Size / X-Repo-Commit;
  the CDN serves the bytes with Range. ``…/gated/…`` wants ``Authorization: Bearer TOKEN``.
  ``…/changed.pt`` announces another file's sha256 (the hub moved on from the card).
"""

import hashlib
import http.server
import re
import threading
import urllib.parse
import uuid

HUB_TOKEN = "hf_test_token"
REVISION = "0123456789abcdef0123456789abcdef01234567"

DRIVE_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can't scan
this file for viruses.</p><p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={id}">
{name}</a> (1.9G)</span> is too large for Google to scan for viruses. Would you still like to
download this file?</p><form id="download-form" action="{action}" method="get"><input type="submit"
id="uc-download-link" class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{uuid}">
</form></div></div></body></html>"""

DRIVE_OLD_PAGE = """<html><body><p class="uc-warning-subcaption">{name} is too large for Google to
scan for viruses.</p><a id="uc-download-link" class="goog-inline-block jfk-button"
href="/uc?export=download&amp;confirm={token}&amp;id={id}">Download anyway</a></body></html>"""

DRIVE_COOKIE_PAGE = "<html><body><p>Google Drive can't scan this file for viruses.</p></body></html>"

DRIVE_QUOTA_PAGE = """<html><body><div class="uc-main"><p class="uc-error-caption">Sorry, you can't
view or download this file at this time.</p><p class="uc-error-subcaption">Too many users have
viewed or downloaded this file recently. Please try accessing the file again later.</p></div>
</body></html>"""

LOGIN_PAGE = "<html><body><form action='/login'><input name='user'></form></body></html>"


class State:
    def __init__(self, payload):
        self.payload = payload
        self.sha256 = hashlib.sha256(payload).hexdigest()
        self.truncate_next = 0      # how many coming transfers stop half-way
        self.requests = []          # (path, Range header or None) of every GET
        self.log = []               # {method, path, range, authorization, cookie} of every request
        self.uuids = set()          # uuids handed out in Drive's confirm forms


def make_handler(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self._route(head=True)

        def do_GET(self):
            state.requests.append((self.path, self.headers.get("Range")))
            self._route(head=False)

        def _route(self, head):
            state.log.append({"method": self.command, "path": self.path, "range": self.headers.get("Range"),
                              "authorization": self.headers.get("Authorization"),
                              "cookie": self.headers.get("Cookie")})
            split = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(split.query))
            if split.path in ("/uc", "/download"):
                return self._drive(split.path, query)
            if "/resolve/" in split.path:
                return self._hub(split.path)
            if split.path.startswith("/cdn/"):
                return self._bytes(head=head)
            if split.path == "/login.html":
                return self._send(200, LOGIN_PAGE.encode(), "text/html; charset=utf-8")
            if split.path == "/error.bin":
                return self._send(500, b"internal error")
            if split.path == "/missing.bin":
                return self._send(404, b"not found")
            if split.path == "/unannounced.bin":
                return self._unannounced()
            self._bytes(reverse=split.path == "/wrong.bin", ignore_range=split.path == "/norange.bin")

        def _unannounced(self):
            """The payload without a Content-Length (the end is the connection closing)."""
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            try:
                for start in range(0, len(state.payload), 1 << 16):
                    self.wfile.write(state.payload[start:start + (1 << 16)])
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        # -- plain bytes with Range ------------------------------------------------------------
        def _bytes(self, reverse=False, ignore_range=False, head=False, extra_headers=()):
            body = state.payload[::-1] if reverse else state.payload
            start = 0
            match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
            if match and not ignore_range:
                start = int(match.group(1))
                if start >= len(body):
                    return self._send(416, b"")
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("Accept-Ranges", "bytes")
            for name, value in extra_headers:
                self.send_header(name, value)
            self.end_headers()
            if head:
                return
            chunk = body[start:]
            if state.truncate_next > 0:
                state.truncate_next -= 1
                self.wfile.write(chunk[: len(chunk) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

        # -- Google Drive --------------------------------------------------------------------------
        def _drive(self, path, query):
            file_id = query.get("id", "")
            attachment = [("Content-Disposition", f'attachment; filename="{file_id}.pt"')]
            if path == "/uc" and file_id.startswith("old-"):
                if query.get("confirm") == "Xy12":
                    return self._bytes(extra_headers=attachment)
                return self._send(200, DRIVE_OLD_PAGE.format(id=file_id, name=file_id, token="Xy12").encode(),
                                  "text/html; charset=utf-8")
            if path == "/uc" and file_id.startswith("cookie-"):
                cookie = self.headers.get("Cookie") or ""
                if query.get("confirm") == "Ck34" and "download_warning_1_abc=Ck34" in cookie:
                    return self._bytes(extra_headers=attachment)
                return self._send(200, DRIVE_COOKIE_PAGE.encode(), "text/html; charset=utf-8",
                                  [("Set-Cookie", "download_warning_1_abc=Ck34; Path=/")])
            if path == "/uc":  # today's drive.google.com hands over to drive.usercontent.google.com
                self.send_response(303)
                self.send_header("Location", f"/download?id={file_id}&export=download")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            if file_id == "quota":
                return self._send(200, DRIVE_QUOTA_PAGE.encode(), "text/html; charset=utf-8")
            if file_id == "small" or (query.get("confirm") == "t" and query.get("uuid") in state.uuids):
                return self._bytes(extra_headers=attachment)
            page_uuid = str(uuid.uuid4())
            state.uuids.add(page_uuid)
            action = f"http://{self.headers.get('Host')}/download"
            page = DRIVE_PAGE.format(id=file_id, name=f"{file_id}.pt", action=action, uuid=page_uuid)
            self._send(200, page.encode(), "text/html; charset=utf-8")

        # -- Hugging Face hub ------------------------------------------------------------------------
        def _hub(self, path):
            if "/gated/" in path and self.headers.get("Authorization") != f"Bearer {HUB_TOKEN}":
                return self._send(401, b"Access to model gated/x is restricted.")
            announced = hashlib.sha256(b"another version").hexdigest() if path.endswith("/changed.pt") \
                else state.sha256
            self.send_response(302)
            self.send_header("Location", f"/cdn/{state.sha256}?X-Amz-Signature=abc&response-content-disposition=x")
            self.send_header("X-Linked-Etag", f'"{announced}"')
            self.send_header("X-Linked-Size", str(len(state.payload)))
            self.send_header("X-Repo-Commit", REVISION)
            self.send_header("ETag", f'"{announced}"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send(self, code, body, content_type="text/plain", headers=()):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
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
