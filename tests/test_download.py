"""The data layer's one download engine (gbhet_lib.data.download) against a scripted local server (127.0.0.1)."""
from __future__ import annotations

import hashlib
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from gbhet_lib.data.download import (Checksum, DigestMismatchError, HttpStatusError, RetriesExhaustedError,
                                     RetryPolicy, SizeMismatchError, TransferStats, download, file_digest,
                                     partial_path, send_with_retries, unsafe_name)
from gbhet_lib.errors import GbhetError

FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.02, connect_timeout_s=2.0, read_timeout_s=5.0)
DATA = bytes(range(256)) * 4096  # 1 MiB

#: one scripted answer: (status, headers, body, bytes actually sent or None for all)
Answer = tuple[int, dict[str, str], bytes, "int | None"]


class Script(ThreadingHTTPServer):
    """Answers each request to a path with the next scripted answer (the last one repeats); records requests."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers: dict[str, list[Callable[[dict[str, str]], Answer]]] = {}
        self.seen: list[dict[str, Any]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def ranges(self, path: str) -> list[str | None]:
        return [r["headers"].get("Range") for r in self.seen if r["path"] == path]


class _Handler(BaseHTTPRequestHandler):
    server: Script

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.seen.append({"path": self.path, "headers": dict(self.headers)})
        script = self.server.answers.get(self.path) or [lambda h: (404, {}, b"no such path", None)]
        answer = script.pop(0) if len(script) > 1 else script[0]
        status, headers, body, sent = answer(dict(self.headers))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body if sent is None else body[:sent])
        self.wfile.flush()
        if sent is not None:
            self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


def whole(body: bytes = DATA) -> Callable[[dict[str, str]], Answer]:
    """200 with the body, or 206 with its tail for ``Range: bytes=N-``."""
    def answer(headers: dict[str, str]) -> Answer:
        start = int(headers["Range"].split("=")[1].rstrip("-")) if headers.get("Range") else 0
        extra = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"} if start else {}
        return (206 if start else 200), extra, body[start:], None
    return answer


def cut(body: bytes = DATA, sent: int = len(DATA) // 3) -> Callable[[dict[str, str]], Answer]:
    """200 announcing the whole body, then a hang-up after ``sent`` bytes."""
    return lambda headers: (200, {}, body, sent)


def status(code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Callable[[dict[str, str]], Answer]:
    return lambda _: (code, headers or {}, body, None)


@pytest.fixture()
def server() -> Iterator[Script]:
    srv = Script()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def md5(data: bytes) -> Checksum:
    return Checksum("md5", hashlib.md5(data).hexdigest())


def test_a_cut_transfer_resumes_with_range_and_is_verified(server: Script, tmp_path: Path) -> None:
    server.answers["/f"] = [cut(), whole()]
    dest = tmp_path / "f.bin"
    got: list[int] = []
    stats = download(server.url("/f"), dest, retry=FAST, checksum=md5(DATA), on_bytes=got.append)
    assert dest.read_bytes() == DATA and not partial_path(dest).exists()
    first, second = server.ranges("/f")
    assert first is None and 0 < int(second.split("=")[1].rstrip("-")) < len(DATA)
    assert stats == TransferStats(attempts=2, bytes_transferred=len(DATA)) and sum(got) == len(DATA)


def test_a_part_from_an_earlier_run_is_resumed_and_a_complete_one_not_fetched(server: Script, tmp_path: Path) -> None:
    server.answers["/f"] = [whole()]
    dest = tmp_path / "f.bin"
    partial_path(dest).write_bytes(DATA[:5000])
    assert download(server.url("/f"), dest, retry=FAST, expected_size=len(DATA)).bytes_transferred == len(DATA) - 5000
    assert dest.read_bytes() == DATA and server.ranges("/f") == ["bytes=5000-"]
    partial_path(tmp_path / "g.bin").write_bytes(DATA)
    stats = download(server.url("/f"), tmp_path / "g.bin", retry=FAST, expected_size=len(DATA), checksum=md5(DATA))
    assert stats.attempts == 0 and len(server.seen) == 1, "a complete part needs no request"


@pytest.mark.parametrize("first", [status(416), status(206, DATA[10:], {"Content-Range": "bytes 10-99/100"}),
                                   lambda headers: (200, {}, DATA, None)])
def test_a_refused_or_ignored_range_starts_over(server: Script, tmp_path: Path, first: Callable) -> None:
    server.answers["/f"] = [first, whole()]
    dest = tmp_path / "f.bin"
    partial_path(dest).write_bytes(DATA[:1000])
    download(server.url("/f"), dest, retry=FAST, checksum=md5(DATA))
    assert dest.read_bytes() == DATA


def test_429_and_5xx_are_retried_404_and_403_are_not(server: Script, tmp_path: Path) -> None:
    server.answers["/busy"] = [status(429), status(503), whole()]
    download(server.url("/busy"), tmp_path / "busy", retry=FAST)
    assert len(server.ranges("/busy")) == 3
    server.answers["/secret"] = [status(403, b"token abc has no access")]
    with pytest.raises(HttpStatusError) as caught:
        download(server.url("/secret"), tmp_path / "secret", retry=FAST)
    assert (caught.value.status, caught.value.excerpt) == (403, "token abc has no access")
    with pytest.raises(HttpStatusError, match=r"/gone answered HTTP 404"):
        download(server.url("/gone"), tmp_path / "gone", retry=FAST)
    assert len(server.ranges("/secret")) == len(server.ranges("/gone")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


def test_exhausted_retries_keep_the_part_for_the_next_run(server: Script, tmp_path: Path) -> None:
    server.answers["/f"] = [cut(sent=300_000)]  # several network reads arrive before the hang-up
    dest = tmp_path / "f.bin"
    stats = TransferStats()
    with pytest.raises(RetriesExhaustedError) as caught:
        download(server.url("/f"), dest, retry=FAST, stats=stats)
    err = caught.value
    assert err.attempts == 3 and err.part == partial_path(dest) and err.kept > 0 and "IncompleteRead" in err.last
    assert stats.attempts == 3 and partial_path(dest).stat().st_size == err.kept and not dest.exists()
    assert isinstance(err, GbhetError)


def test_wrong_bytes_are_deleted(server: Script, tmp_path: Path) -> None:
    server.answers["/f"] = [whole()]
    dest = tmp_path / "f.bin"
    with pytest.raises(DigestMismatchError) as caught:
        download(server.url("/f"), dest, retry=FAST, checksum=md5(b"other"))
    assert caught.value.actual == hashlib.md5(DATA).hexdigest()
    with pytest.raises(SizeMismatchError, match=f"sent {len(DATA):,} bytes, 1,000 were expected"):
        download(server.url("/f"), dest, retry=FAST, expected_size=1000)

    def reject(path: Path) -> None:
        raise ValueError(f"not the file: {path.name}")

    with pytest.raises(ValueError, match="not the file: f.bin.part"):
        download(server.url("/f"), dest, retry=FAST, check=reject)
    assert list(tmp_path.iterdir()) == []


def test_session_headers_are_sent_and_never_logged(server: Script, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    server.answers["/f"] = [status(500), whole()]
    session = requests.Session()
    session.headers["X-Auth-Token"] = "s3cret"
    with caplog.at_level(logging.DEBUG):
        download(server.url("/f"), tmp_path / "f", retry=FAST, session=session, headers={"X-Extra": "1"})
    sent = [(r["headers"].get("X-Auth-Token"), r["headers"].get("X-Extra")) for r in server.seen]
    assert sent == [("s3cret", "1")] * 2
    assert "retry 1/2" in caplog.text and "s3cret" not in caplog.text


def test_send_with_retries_returns_the_first_final_answer(server: Script) -> None:
    server.answers["/api"] = [status(502), status(200, b"{}")]
    with requests.Session() as session:
        assert send_with_retries(session, "GET", server.url("/api"), FAST).status_code == 200
        server.answers["/down"] = [status(503)]
        with pytest.raises(RetriesExhaustedError, match=r"/down failed 3 time\(s\), last with HTTP 503"):
            send_with_retries(session, "GET", server.url("/down"), FAST)


def test_checksums_and_digests(tmp_path: Path) -> None:
    assert Checksum.parse("MD5:ABC123") == Checksum("md5", "abc123") and str(Checksum.parse("ff")) == "sha256:ff"
    for bad in ("md5:xyz", "nope:00"):
        with pytest.raises(ValueError):
            Checksum.parse(bad)
    (tmp_path / "x").write_bytes(b"abc")
    assert file_digest(tmp_path / "x", "md5") == hashlib.md5(b"abc").hexdigest()
    assert file_digest(tmp_path / "x") == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        RetryPolicy(attempts=0)


@pytest.mark.parametrize("name, problem", [
    ("", "empty"), ("..", "names a folder"), ("/etc/passwd", "absolute"), ("C:x", "drive"),
    ("a/b", "path separator"), ("a\\b", "path separator"), ("a\x00b", "NUL"), ("a\nb", "control character"),
])
def test_unsafe_names(name: str, problem: str) -> None:
    assert problem in (unsafe_name(name) or "")


def test_plain_names_are_fine() -> None:
    assert unsafe_name("TCGA-02-0001.svs") is None and unsafe_name("wsi.tar.gz") is None and unsafe_name("a..b") is None
