"""A fake GDC API server for tests (127.0.0.1, ephemeral port): it answers as the public GDC API documents.

Search endpoints return ``data.hits`` with a ``pagination`` object, ``/status`` returns ``data_release``, and
``/data/{id}`` returns file bytes (``Range`` honoured). Tests set the knobs of :class:`FakeGDC` and read what
it received. Used by ``test_gdc.py`` and by the ``full``-profile notebook smoke test.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

class FakeGDC:
    """State and behaviour of the fake server; tests set the knobs and read what it received."""

    def __init__(self) -> None:
        self.url = ""
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, list[dict[str, Any]]] = {"files": [], "cases": []}
        self.received: list[dict[str, Any]] = []
        self.fail_once: set[str] = set()      # paths answered once with HTTP 500
        self.truncate_once: set[str] = set()  # file ids whose body is cut after half the bytes, once
        self.forbidden: set[str] = set()      # file ids answered 403 with the token echoed in the body
        self.redirects: dict[str, str] = {}   # file id -> Location
        self.delay_s = 0.0
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def data_requests(self, file_id: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"].startswith("/data/")
                and (file_id is None or r["path"] == f"/data/{file_id}")]

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length", 0))
        body = json.loads(h.rfile.read(length)) if length else None
        path = h.path.split("?", 1)[0]
        with self.lock:
            self.received.append({"method": method, "path": path, "headers": dict(h.headers), "body": body})
            fail = path in self.fail_once
            self.fail_once.discard(path)
        if fail:
            return _reply(h, 500, b'{"message": "internal error"}')
        if method == "POST" and path.strip("/") in self.hits:
            return _reply(h, 200, json.dumps(self._page(path.strip("/"), body)).encode())
        if method == "GET" and path == "/status":
            return _reply(h, 200, json.dumps({"data_release": "Data Release 99.0 - test", "status": "OK",
                                              "tag": "0.0.0", "version": 1}).encode())
        if method == "GET" and path.startswith("/data/"):
            with self.lock:
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            try:
                time.sleep(self.delay_s)
                return self._data(h, path.removeprefix("/data/"))
            finally:
                with self.lock:
                    self.active -= 1
        return _reply(h, 400, b'{"message": "unknown request"}')

    def _page(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        hits, size, start = self.hits[endpoint], int(body["size"]), int(body["from"])
        page = hits[start:start + size]
        return {"data": {"hits": page, "pagination": {
            "count": len(page), "total": len(hits), "size": size, "from": start, "sort": body.get("sort", ""),
            "page": start // size + 1, "pages": max(1, math.ceil(len(hits) / size))}}, "warnings": {}}

    def _data(self, h: BaseHTTPRequestHandler, file_id: str) -> None:
        if file_id in self.forbidden:
            return _reply(h, 403, f"token {h.headers.get('X-Auth-Token')} has no access".encode())
        if file_id in self.redirects:
            return _reply(h, 302, b"", {"Location": self.redirects[file_id]})
        if file_id not in self.files:
            return _reply(h, 404, b'{"message": "File not found"}')
        content = self.files[file_id]
        match = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", ""))
        start = int(match.group(1)) if match else 0
        headers = {"Content-Disposition": f"attachment; filename=server-name-{file_id}.bin"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
        if file_id in self.truncate_once:
            self.truncate_once.discard(file_id)
            h.close_connection = True
            return _reply(h, 206 if start else 200, content[start:], headers, cut=(len(content) - start) // 2)
        return _reply(h, 206 if start else 200, content[start:], headers)


def _reply(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None,
           cut: int | None = None) -> None:
    """Send a response; with ``cut``, announce the whole body but send only ``cut`` bytes, then hang up."""
    h.send_response(status)
    h.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.end_headers()
    h.wfile.write(body if cut is None else body[:cut])
    h.wfile.flush()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # seconds an idle keep-alive connection is held

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.server.fake.handle(self, "GET")  # type: ignore[attr-defined]

    def do_POST(self) -> None:  # noqa: N802
        self.server.fake.handle(self, "POST")  # type: ignore[attr-defined]

    def log_message(self, *args: Any) -> None:
        pass



@contextlib.contextmanager
def serve_fake_gdc() -> Iterator[FakeGDC]:
    """Run a :class:`FakeGDC` on 127.0.0.1 for the duration of the block; always shut down after."""
    fake = FakeGDC()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.fake = fake  # type: ignore[attr-defined]
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
