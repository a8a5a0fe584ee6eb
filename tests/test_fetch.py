"""Fetching datasets: mirror, cache and download paths, and every way a download goes wrong.

Downloads go to a local HTTP server on 127.0.0.1 (ephemeral port, one thread per request); no test leaves the
machine.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from data_mirror import mirror_root

from gbhet_lib.cli import main
from gbhet_lib.data.fetch import (ChecksumMismatchError, CorruptGzipError, DataError, HtmlPageError, LfsPointerError,
                                  MirrorFileMissingError, NetworkError, NoSourceError, RemoteNotFoundError,
                                  RetryPolicy, fetch, fetch_profile)
from gbhet_lib.data.manifest import DatasetEntry, Manifest, load_manifest

@pytest.fixture(autouse=True)
def _no_mirror_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Download tests must not be served by the environment's mirror; tests that want one pass it."""
    monkeypatch.delenv("GBHET_DATA_MIRROR", raising=False)

FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.05, connect_timeout_s=2.0, read_timeout_s=5.0)
GOOD = b"gene\tvalue\nEGFR\t1.5\nPDGFRA\t0.3\n" * 100
BIG = bytes(range(256)) * (3 * 4096)  # 3 MiB: more than one 1 MiB chunk arrives before the drop
GZ = gzip.compress(GOOD * 50, mtime=0)
HTML = b"<!DOCTYPE html>\n<html><head><title>Rate limit</title></head><body>Too many requests</body></html>\n"
LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


INIT = b"# pkg\n"
WHEEL = zip_bytes({"pkg/data/genes.tsv": GOOD, "pkg/__init__.py": INIT})


class Server(ThreadingHTTPServer):
    """Routes paths to behaviours; records every request as (path, Range header)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str | None]] = []
        self.routes: dict[str, Callable[[Handler, int], None]] = {}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def hits(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.requests if p == path]


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append((self.path, self.headers.get("Range")))
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        route(self, len(self.server.hits(self.path)))

    def serve(self, body: bytes, content_type: str = "application/octet-stream") -> None:
        """200 with ``body``, or 206 with its tail for a ``Range: bytes=N-`` request."""
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args: Any) -> None:
        pass


def serve(body: bytes, content_type: str = "application/octet-stream") -> Callable[[Handler, int], None]:
    return lambda handler, hit: handler.serve(body, content_type)


def drop_first(body: bytes) -> Callable[[Handler, int], None]:
    """First request: announce the whole body, send half, hang up. Later ones: serve, honouring Range."""
    def route(handler: Handler, hit: int) -> None:
        if hit > 1:
            handler.serve(body)
            return
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.close_connection = True
    return route


def fail_first(status: int, body: bytes) -> Callable[[Handler, int], None]:
    return lambda handler, hit: handler.send_error(status) if hit == 1 else handler.serve(body)


@pytest.fixture()
def server() -> Iterator[Server]:
    srv = Server()
    srv.routes.update({
        "/good.tsv": serve(GOOD), "/wrong.tsv": serve(GOOD[::-1]), "/page.tsv": serve(HTML, "text/html"),
        "/lfs.tsv": serve(LFS), "/table.tsv.gz": serve(GZ[: len(GZ) // 2]), "/flaky.bin": drop_first(BIG),
        "/busy.tsv": fail_first(500, GOOD), "/pkg.whl": serve(WHEEL),
    })
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def entry(url: str | None, data: bytes, name: str = "tiny", fmt: str = "tsv", **fields: Any) -> DatasetEntry:
    values = dict(name=name, description="test data", url=url, sha256=sha(data), size=len(data), format=fmt,
                  licence="CC0-1.0", citation="nobody", profiles=("reference",), mirror_path=f"misc/{name}.{fmt}",
                  role="upstream" if url else "derived", notes=None if url else "made by hand")
    values.update(fields)
    return DatasetEntry(**values)


def cache_files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def _manifest_of(folder: Path, entries: list[DatasetEntry]) -> Manifest:
    """Write ``entries`` as a datasets.yaml in ``folder`` and load it."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for e in entries:
        row = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(e).items()}
        rows.append({k: v for k, v in row.items() if v not in (None, [])} | {"url": e.url})
    path = folder / "datasets.yaml"
    path.write_text(yaml.safe_dump({"manifest_version": 1, "datasets": rows}), encoding="utf-8")
    return load_manifest(path)


# --- downloads -------------------------------------------------------------------------------------------------

def test_download_then_cache(server: Server, tmp_path: Path) -> None:
    e = entry(server.url("/good.tsv"), GOOD)
    path = fetch(e, cache_dir=tmp_path, retry=FAST)
    assert path == tmp_path / "misc" / "tiny.tsv" and path.read_bytes() == GOOD
    results = fetch_profile("reference", cache_dir=tmp_path, manifest=_manifest_of(tmp_path / "m", [e]))
    assert [(r.source, r.sha256_ok, r.status) for r in results] == [("cache", True, "ok")]
    assert len(server.hits("/good.tsv")) == 1, "a verified cached file is not downloaded again"


def test_download_with_progress_bar(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fetch(entry(server.url("/good.tsv"), GOOD), cache_dir=tmp_path, retry=FAST, progress=True)
    assert "tiny" in capsys.readouterr().err


def test_checksum_mismatch_keeps_nothing_and_says_how_out(server: Server, tmp_path: Path) -> None:
    e = entry(server.url("/wrong.tsv"), GOOD)
    with pytest.raises(ChecksumMismatchError) as err:
        fetch(e, cache_dir=tmp_path, retry=FAST)
    message = str(err.value)
    for part in ("dataset 'tiny'", str(tmp_path / "misc" / "tiny.tsv"), f"expected sha256 {sha(GOOD)}",
                 f"got {sha(GOOD[::-1])}", "The download was deleted", "update sha256/size of 'tiny'"):
        assert part in message
    assert cache_files(tmp_path) == [], "a file that failed verification must not stay in the cache"


def test_html_page_instead_of_the_file(server: Server, tmp_path: Path) -> None:
    with pytest.raises(HtmlPageError, match=r"is an HTML page, not the tsv file"):
        fetch(entry(server.url("/page.tsv"), GOOD), cache_dir=tmp_path, retry=FAST)
    assert cache_files(tmp_path) == []


def test_git_lfs_pointer_instead_of_the_file(server: Server, tmp_path: Path) -> None:
    with pytest.raises(LfsPointerError, match="is a Git LFS pointer"):
        fetch(entry(server.url("/lfs.tsv"), GOOD), cache_dir=tmp_path, retry=FAST)


def test_truncated_gzip(server: Server, tmp_path: Path) -> None:
    with pytest.raises(CorruptGzipError, match=r"is a truncated/corrupt gzip \(ends early"):
        fetch(entry(server.url("/table.tsv.gz"), GZ, fmt="tsv.gz"), cache_dir=tmp_path, retry=FAST)
    assert cache_files(tmp_path) == []


def test_404_names_the_url_and_is_not_retried(server: Server, tmp_path: Path) -> None:
    url = server.url("/gone.tsv")
    with pytest.raises(RemoteNotFoundError, match=f"{url} answered 404 Not Found"):
        fetch(entry(url, GOOD), cache_dir=tmp_path, retry=FAST)
    assert len(server.hits("/gone.tsv")) == 1


def test_dropped_transfer_resumes_with_range(server: Server, tmp_path: Path) -> None:
    path = fetch(entry(server.url("/flaky.bin"), BIG, fmt="bin"), cache_dir=tmp_path, retry=FAST)
    assert path.read_bytes() == BIG
    first, second = server.hits("/flaky.bin")
    assert first is None and second is not None and second.startswith("bytes=")
    assert 0 < int(second.split("=")[1].rstrip("-")) < len(BIG), "the second request resumes mid-file"
    assert cache_files(tmp_path) == ["misc/tiny.bin"], "no .part or temporary file left behind"


def test_partial_file_from_an_earlier_run_is_resumed(server: Server, tmp_path: Path) -> None:
    part = tmp_path / "misc" / "tiny.tsv.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(GOOD[:100])
    assert fetch(entry(server.url("/good.tsv"), GOOD), cache_dir=tmp_path, retry=FAST).read_bytes() == GOOD
    assert server.hits("/good.tsv") == ["bytes=100-"]


def test_server_error_is_retried(server: Server, tmp_path: Path) -> None:
    assert fetch(entry(server.url("/busy.tsv"), GOOD), cache_dir=tmp_path, retry=FAST).read_bytes() == GOOD
    assert len(server.hits("/busy.tsv")) == 2


def test_no_network_after_bounded_retries(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(NetworkError, match=r"after 3 attempt\(s\).*No network.*--mirror DIR or \$GBHET_DATA_MIRROR"):
        fetch(entry(f"http://127.0.0.1:{port}/x.tsv", GOOD), cache_dir=tmp_path, retry=FAST)
    assert time.perf_counter() - start < 10


def test_stale_cached_file_is_downloaded_again(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "misc" / "tiny.tsv"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old bytes")
    results = fetch_profile("reference", cache_dir=tmp_path, retry=FAST,
                            manifest=_manifest_of(tmp_path / "m", [entry(server.url("/good.tsv"), GOOD)]))
    assert results[0].source == "download" and target.read_bytes() == GOOD


def test_failed_download_also_removes_a_stale_cached_file(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "misc" / "tiny.tsv"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old bytes")
    with pytest.raises(ChecksumMismatchError):
        fetch(entry(server.url("/wrong.tsv"), GOOD), cache_dir=tmp_path, retry=FAST)
    assert cache_files(tmp_path) == []


def test_member_of_a_wheel_is_extracted_and_verified(server: Server, tmp_path: Path) -> None:
    e = entry(server.url("/pkg.whl"), GOOD, member="pkg/data/genes.tsv", archive_sha256=sha(WHEEL))
    assert fetch(e, cache_dir=tmp_path, retry=FAST).read_bytes() == GOOD
    assert cache_files(tmp_path) == ["_archives/pkg.whl", "misc/tiny.tsv"]
    other = entry(server.url("/pkg.whl"), INIT, name="init", member="pkg/__init__.py", archive_sha256=sha(WHEEL))
    assert fetch(other, cache_dir=tmp_path, retry=FAST).read_bytes() == INIT
    assert len(server.hits("/pkg.whl")) == 1, "the container is downloaded once for all its members"


def test_member_missing_or_wrong(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'pkg/data/nope.tsv' is not inside .*pkg.whl"):
        fetch(entry(server.url("/pkg.whl"), GOOD, member="pkg/data/nope.tsv"), cache_dir=tmp_path, retry=FAST)
    with pytest.raises(ChecksumMismatchError, match="The extracted file was deleted"):
        fetch(entry(server.url("/pkg.whl"), GOOD + b"x", member="pkg/data/genes.tsv"), cache_dir=tmp_path,
              retry=FAST)
    assert not (tmp_path / "misc" / "tiny.tsv").exists()


def test_container_with_wrong_checksum(server: Server, tmp_path: Path) -> None:
    e = entry(server.url("/pkg.whl"), GOOD, member="pkg/data/genes.tsv", archive_sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError, match="pkg.whl"):
        fetch(e, cache_dir=tmp_path, retry=FAST)
    assert cache_files(tmp_path) == []


@pytest.mark.parametrize("path", ["/pkg/..", "/"])
def test_container_url_must_end_in_a_plain_file_name(server: Server, tmp_path: Path, path: str) -> None:
    e = entry(server.url(path), GOOD, member="pkg/data/genes.tsv")
    with pytest.raises(DataError, match=r"does not end in a usable file name .*Point 'url'"):
        fetch(e, cache_dir=tmp_path / "cache", retry=FAST)
    assert server.requests == [] and not (tmp_path / "cache").exists()


# --- mirror ----------------------------------------------------------------------------------------------------

def test_mirror_file_is_verified_and_returned_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "misc").mkdir()
    (tmp_path / "misc" / "tiny.tsv").write_bytes(GOOD)
    e = entry("http://127.0.0.1:9/never-used", GOOD)
    assert fetch(e, mirror=tmp_path) == tmp_path / "misc" / "tiny.tsv"
    monkeypatch.setenv("GBHET_DATA_MIRROR", str(tmp_path))
    assert fetch(e) == tmp_path / "misc" / "tiny.tsv"


def test_missing_mirror_file(tmp_path: Path) -> None:
    with pytest.raises(MirrorFileMissingError) as err:
        fetch(entry("http://127.0.0.1:9/x", GOOD), mirror=tmp_path)
    message = str(err.value)
    assert f"{tmp_path / 'misc' / 'tiny.tsv'} is missing from the data mirror" in message
    assert "expected <mirror>/misc/tiny.tsv" in message and "--mirror or $GBHET_DATA_MIRROR" in message


def test_wrong_mirror_file_is_reported_not_touched(tmp_path: Path) -> None:
    (tmp_path / "misc").mkdir()
    (tmp_path / "misc" / "tiny.tsv").write_bytes(HTML)
    with pytest.raises(HtmlPageError, match="gbhet does not change a mirror"):
        fetch(entry("http://127.0.0.1:9/x", GOOD), mirror=tmp_path)
    assert (tmp_path / "misc" / "tiny.tsv").read_bytes() == HTML


def test_mirror_that_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        fetch(entry("http://127.0.0.1:9/x", GOOD), mirror=tmp_path / "nope")


def test_derived_entry_needs_a_mirror(tmp_path: Path) -> None:
    with pytest.raises(NoSourceError, match="has no upstream URL: a derived file made from tiny_rda"):
        fetch(entry(None, GOOD, derived_from=("tiny_rda",)), cache_dir=tmp_path)
    result, = fetch_profile("reference", cache_dir=tmp_path,
                            manifest=_manifest_of(tmp_path / "m", [entry(None, GOOD)]))
    assert result.status == "skipped" and result.sha256_ok is None


# --- profile and command line ----------------------------------------------------------------------------------

def test_profile_reports_every_dataset_and_skips_an_unreachable_host(server: Server, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    entries = [entry(server.url("/wrong.tsv"), GOOD, name="bad"), entry(f"{dead}/a", GOOD, name="down1"),
               entry(f"{dead}/b", GOOD, name="down2"), entry(server.url("/good.tsv"), GOOD, name="fine")]
    results = fetch_profile("reference", cache_dir=tmp_path, retry=FAST,
                            manifest=_manifest_of(tmp_path / "m", entries))
    assert [(r.name, r.status, r.sha256_ok) for r in results] == [
        ("bad", "failed", False), ("down1", "failed", None), ("down2", "failed", None), ("fine", "ok", True)]
    assert "not tried, 127.0.0.1" in (results[2].message or "")


def test_cli_fetch_failure_exits_1_and_reports_all(server: Server, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    manifest = _manifest_of(tmp_path / "m", [entry(server.url("/gone.tsv"), GOOD, name="gone"),
                                             entry(server.url("/good.tsv"), GOOD, name="fine")])
    status = main(["fetch", "--manifest", str(manifest.path), "--cache", str(tmp_path / "cache"), "--no-progress"])
    out, err = capsys.readouterr()
    assert status == 1
    assert "fine" in out and "download" in out and "1 of 2 datasets OK" in out and "1 failed" in out
    assert "gbhet fetch: gone FAILED: dataset 'gone':" in err and "404 Not Found" in err


@pytest.mark.parametrize("args, message", [
    (["--only", "string_ppi"], "no dataset named 'string_ppi'"),
    (["--mirror", "/nonexistent/mirror"], "is not a folder"),
])
def test_cli_fetch_usage_errors_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["fetch", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gbhet fetch: error:") and message in err


def test_cli_fetch_reference_profile_from_the_mirror(capsys: pytest.CaptureFixture) -> None:
    mirror = mirror_root()  # the session's mirror (read as the tests started): skips without one
    start = time.perf_counter()
    status = main(["fetch", "--profile", "reference", "--mirror", str(mirror)])
    seconds = time.perf_counter() - start
    out = capsys.readouterr().out
    rows = out.splitlines()[1:-1]
    assert status == 0, out
    assert len(rows) == len(load_manifest().for_profile("reference"))
    assert all(row.split()[3] == "ok" and row.split()[4] == "mirror" for row in rows), out
    assert seconds < 60, f"gbhet fetch --profile reference --mirror took {seconds:.1f} s"


# --- the tests' own mirror rule (tests/data_mirror.py) and local servers without a proxy ------------------------

def test_without_a_mirror_the_test_is_skipped_with_the_way_to_get_one(tmp_path: Path) -> None:
    absent = tmp_path / "no-shared-data"
    for environ in ({}, {"GBHET_DATA_MIRROR": ""}):
        with pytest.raises(pytest.skip.Exception, match="no data mirror: set GBHET_DATA_MIRROR to a copy of"):
            mirror_root(environ, default=absent)
    assert mirror_root({}, default=tmp_path) == tmp_path
    assert mirror_root({"GBHET_DATA_MIRROR": str(tmp_path)}, default=absent) == tmp_path


def test_a_required_or_misnamed_mirror_fails_instead_of_skipping(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="no data mirror.*GBHET_REQUIRE_MIRROR=1 makes a missing"):
        mirror_root({"GBHET_REQUIRE_MIRROR": "1"}, default=tmp_path / "absent")
    with pytest.raises(pytest.fail.Exception, match=r"GBHET_DATA_MIRROR='.*typo' is not a folder.*or unset it"):
        mirror_root({"GBHET_DATA_MIRROR": str(tmp_path / "typo")}, default=tmp_path)


def test_local_test_servers_bypass_a_proxy(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import LOCAL_HOSTS, bypass_proxy_for

    environ = {"no_proxy": "example.org, 127.0.0.1"}
    bypass_proxy_for(LOCAL_HOSTS, environ)
    assert environ == {"no_proxy": "example.org,127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://192.0.2.1:9")  # a proxy nobody can reach (TEST-NET-1)
    assert fetch(entry(server.url("/good.tsv"), GOOD), cache_dir=tmp_path, retry=FAST).read_bytes() == GOOD
