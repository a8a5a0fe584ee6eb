"""The authors' Zenodo record (fake server on 127.0.0.1), safe archive extraction, and the gbdata layout check."""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import socket
import stat
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from gbhet_lib.data import archives
from gbhet_lib.data.archives import MARKER, ArchiveError, UnsafeArchiveError, safe_extract
from gbhet_lib.data.stemri_layout import (MalformedNameError, check_gbdata_layout, parse_patch_name,
                                          parse_slide_name)
from gbhet_lib.data.zenodo import STEMRI_DOI, ZenodoError, fetch_record_file, record_files, zenodo_record_id

RECORD_ID = "15807412"


# ---------------------------------------------------------------- archive builders

def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _zip(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.create_system = 3  # unix, so the mode bits are read
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


# ---------------------------------------------------------------- unsafe archives are refused

@pytest.mark.parametrize("member, message", [
    (_file("../evil.txt"), "member '../evil.txt' has a '..' path component"),
    (_file("ok/../../evil.txt"), "member 'ok/../../evil.txt' has a '..' path component"),
    (_file("/tmp/evil.txt"), "member '/tmp/evil.txt' has an absolute path"),
    (_link("link", "../../outside"), "member 'link' is a symbolic link to '../../outside', outside the destination"),
    (_link("link", "/etc/passwd"), "member 'link' is a symbolic link to '/etc/passwd', outside the destination"),
    (_link("hard", "../outside.txt", tarfile.LNKTYPE),
     "member 'hard' is a hard link to '../outside.txt', outside the destination"),
    (_link("dev", "", tarfile.CHRTYPE), "member 'dev' is a device file or FIFO"),
    (_file(MARKER), f"member '{MARKER}' uses the name '{MARKER}', reserved for the extraction marker"),
])
def test_unsafe_tar_members_are_refused_and_nothing_is_written(tmp_path: Path, member, message: str) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", [_file("fine.txt"), member])
    dest = tmp_path / "out" / "data"
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, dest)
    assert message in str(caught.value)
    assert str(archive) in str(caught.value) and "Nothing was extracted" in str(caught.value)
    assert not dest.exists() and _leftovers(dest.parent) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()


def test_link_chain_is_caught_by_the_data_filter(tmp_path: Path) -> None:
    # "a" -> "." is harmless alone, so "a/b" -> ".." looks inside lexically but resolves outside on disk
    archive = _tar(tmp_path / "chain.tar", [_link("a", "."), _link("a/b", "..")])
    with pytest.raises(UnsafeArchiveError, match="member 'a/b' was rejected by the tar 'data' filter"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("name, reason", [
    ("../evil.txt", "has a '..' path component"),
    ("..\\evil.txt", "has a '..' path component"),
    ("/evil.txt", "has an absolute path"),
    ("C:/evil.txt", "has an absolute path"),
])
def test_unsafe_zip_names_are_refused(tmp_path: Path, name: str, reason: str) -> None:
    archive = _zip(tmp_path / "bad.zip", {"fine.txt": b"x", name: b"evil"})
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, tmp_path / "out")
    assert f"refusing to extract {archive}: member {name!r} {reason}" in str(caught.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "link.zip", {"fine.txt": b"x"}, symlink="passwd")
    with pytest.raises(UnsafeArchiveError, match="member 'passwd' is a symbolic link"):
        safe_extract(archive, tmp_path / "out")


def test_unsupported_corrupt_and_foreign_destinations_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match=r"not a supported archive \(the name must end in .tar.gz"):
        safe_extract(tmp_path / "data.rar", tmp_path / "out")
    (tmp_path / "cut.tar.gz").write_bytes(b"\x1f\x8b\x08not really gzip")
    with pytest.raises(ArchiveError, match="not a readable tar archive .* download it again"):
        safe_extract(tmp_path / "cut.tar.gz", tmp_path / "out")
    (tmp_path / "cut.zip").write_bytes(b"PK nonsense")
    with pytest.raises(ArchiveError, match="not a readable zip archive"):
        safe_extract(tmp_path / "cut.zip", tmp_path / "out")
    good = _tar(tmp_path / "good.tar", [_file("a.txt")])
    (tmp_path / "mine").mkdir()
    with pytest.raises(ArchiveError, match=r"mine exists but holds no completed extraction"):
        safe_extract(good, tmp_path / "mine")
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------- size and member-count limits (archive bombs)

@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_too_many_members_are_refused_before_anything_is_written(tmp_path: Path, kind: str) -> None:
    names = {"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"}
    archive = (_tar(tmp_path / f"many.{kind}", [_file(n, d) for n, d in names.items()]) if kind == "tar.gz"
               else _zip(tmp_path / f"many.{kind}", names))
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, tmp_path / "out", max_members=2)
    message = str(caught.value)
    assert f"refusing to extract {archive}: it holds more than 2 members, over the limit max_members" in message
    assert "safe_extract(..., max_members=N)" in message and "Nothing was extracted" in message
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []
    assert len(safe_extract(archive, tmp_path / "out", max_members=3)) == 3  # the limit itself is allowed


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_too_many_bytes_are_refused_before_anything_is_written(tmp_path: Path, kind: str) -> None:
    names = {"small.txt": b"x" * 100, "big.bin": b"\0" * 5000}
    archive = (_tar(tmp_path / f"bomb.{kind}", [_file(n, d) for n, d in names.items()]) if kind == "tar"
               else _zip(tmp_path / f"bomb.{kind}", names))
    with pytest.raises(UnsafeArchiveError, match=r"members of more than 5,000 bytes .* over the limit max_bytes.*"
                                                 r"safe_extract\(\.\.\., max_bytes=N\)"):
        safe_extract(archive, tmp_path / "out", max_bytes=5000)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []
    assert len(safe_extract(archive, tmp_path / "out", max_bytes=5100)) == 2


def test_a_zip_that_understates_a_size_is_not_extracted(tmp_path: Path) -> None:
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", b"\0" * 100_000)
    data = bytearray(archive.read_bytes())
    central = data.index(b"PK\x01\x02")  # the central directory entry: its size field is what zipfile trusts
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="not a readable zip archive"):
        safe_extract(archive, tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("limits", [{"max_bytes": 0}, {"max_members": -1}, {"max_members": 2.5}])
def test_bad_limits_are_named(tmp_path: Path, limits: dict[str, object]) -> None:
    archive = _tar(tmp_path / "a.tar", [_file("a.txt")])
    (name, value), = limits.items()
    with pytest.raises(ArchiveError, match=rf"{name}={value!r}: the extraction limit must be a whole number >= 1"):
        safe_extract(archive, tmp_path / "out", **limits)


# ---------------------------------------------------------------- good archives

def test_good_tar_gz_extracts_files_and_inside_links(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "good.tgz", [
        _file("a.txt", b"alpha"), _file("sub/b.txt", b"beta"),
        _link("sub/link", "../a.txt"), _link("sub/hard", "a.txt", tarfile.LNKTYPE),
    ])
    dest = tmp_path / "out"
    files = safe_extract(archive, dest)
    assert [p.relative_to(dest).as_posix() for p in files] == ["a.txt", "sub/b.txt", "sub/hard", "sub/link"]
    assert (dest / "sub" / "link").is_symlink() and (dest / "sub" / "link").read_bytes() == b"alpha"
    assert (dest / "sub" / "hard").read_bytes() == b"alpha"
    marker = json.loads((dest / MARKER).read_text())
    assert marker == {"archive": "good.tgz", "format": "tar",
                      "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}


def test_good_zip_extracts(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "good.zip", {"a.txt": b"alpha", "sub/b.txt": b"beta"})
    files = safe_extract(archive, tmp_path / "out")
    assert [p.read_bytes() for p in files] == [b"alpha", b"beta"]


def test_re_extraction_is_skipped_and_a_new_archive_replaces_the_old(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _tar(tmp_path / "d.tar.gz", [_file("a.txt", b"v1"), _file("old.txt")])
    dest = tmp_path / "out"
    first = safe_extract(archive, dest)

    def must_not_run(*_: object) -> None:
        raise AssertionError("extracted again")

    with monkeypatch.context() as patch:
        patch.setattr(archives, "_extract_tar", must_not_run)
        assert safe_extract(archive, dest) == first
    _tar(archive, [_file("a.txt", b"v2")])
    assert [p.name for p in safe_extract(archive, dest)] == ["a.txt"]
    assert (dest / "a.txt").read_bytes() == b"v2" and _leftovers(tmp_path) == []


def test_interrupted_extraction_never_looks_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _tar(tmp_path / "d.tar", [_file("a.txt"), _file("b.txt")])
    dest = tmp_path / "out"

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(archives, "write_json_atomic", interrupted)  # dies after the members, before the marker
        with pytest.raises(KeyboardInterrupt):
            safe_extract(archive, dest)
    assert not dest.exists() and _leftovers(tmp_path) == []
    # a hard kill leaves a hidden partial folder: it is never taken for the extraction
    (tmp_path / ".out.partial-killed").mkdir()
    assert not dest.exists()
    assert [p.name for p in safe_extract(archive, dest)] == ["a.txt", "b.txt"]


# ---------------------------------------------------------------- fake Zenodo

class _FakeZenodo:
    """What the fake server serves: a record of ``files``; ``served`` may differ from what the record says."""

    def __init__(self) -> None:
        self.base = ""
        self.files: dict[str, bytes] = {}
        self.served: dict[str, bytes] = {}
        self.shape = "legacy"
        self.access = "open"
        self.file_requests: list[str] = []
        self.file_auth: list[tuple[str, str | None]] = []  # (host, Authorization header) of every file request
        self.links: dict[str, str] = {}  # name -> a file link other than the API's own
        self.redirects: dict[str, str] = {}  # name -> where its download redirects to
        self.record_auth: list[str | None] = []

    def record(self) -> dict[str, object]:
        entries = []
        for name, data in self.files.items():
            md5 = hashlib.md5(data).hexdigest()
            url = self.links.get(name, f"{self.base}/api/records/{RECORD_ID}/files/{name}/content")
            entries.append({"key": name, "size": len(data), "checksum": f"md5:{md5}", "links": {"self": url}}
                           if self.shape == "legacy" else
                           {"filename": name, "filesize": len(data), "checksum": md5, "links": {"download": url}})
        files = entries if self.access == "open" else []
        return {"id": int(RECORD_ID), "doi": STEMRI_DOI, "metadata": {"access_right": self.access}, "files": files}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        fake: _FakeZenodo = self.server.fake  # type: ignore[attr-defined]
        parts = self.path.strip("/").split("/")
        if parts == ["api", "records", RECORD_ID]:
            fake.record_auth.append(self.headers.get("Authorization"))
            self._send(200, json.dumps(fake.record()).encode(), "application/json")
        elif parts[:3] == ["api", "records", RECORD_ID] and parts[3:4] == ["files"] and parts[-1] == "content":
            name = "/".join(parts[4:-1])
            fake.file_requests.append(name)
            fake.file_auth.append((self.headers["Host"].split(":")[0], self.headers.get("Authorization")))
            if name in fake.redirects:
                self.send_response(302)
                self.send_header("Location", fake.redirects.pop(name))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send(200, fake.served.get(name, fake.files.get(name, b"")), "application/octet-stream")
        else:
            self._send(404, b'{"status": 404, "message": "not found"}', "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def zenodo(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FakeZenodo]:
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.fake = _FakeZenodo()  # type: ignore[attr-defined]
    server.fake.base = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.fake  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _api(fake: _FakeZenodo) -> str:
    return f"{fake.base}/api"


def _tar_bytes(tmp_path: Path) -> bytes:
    return _tar(tmp_path / "src.tar.gz", [_file("tcga/s1.tsv", b"gene\tv\n"), _file("tcga/s2.tsv")]).read_bytes()


def test_zenodo_doi_parsing() -> None:
    assert zenodo_record_id(STEMRI_DOI) == RECORD_ID
    assert zenodo_record_id(f"https://doi.org/{STEMRI_DOI}") == zenodo_record_id(f"doi:{STEMRI_DOI}") == RECORD_ID
    with pytest.raises(ZenodoError, match=r"'10.1000/xyz' is not a Zenodo DOI; expected 10.5281/zenodo.<record id>"):
        zenodo_record_id("10.1000/xyz")


@pytest.mark.parametrize("shape", ["legacy", "invenio"])
def test_record_files_lists_names_sizes_and_md5(zenodo: _FakeZenodo, tmp_path: Path, shape: str) -> None:
    zenodo.shape = shape
    zenodo.files = {"tcga.tar.gz": _tar_bytes(tmp_path), "README.txt": b"hello"}
    listed = {f.name: f for f in record_files(STEMRI_DOI, api_url=_api(zenodo), timeout_s=5)}
    assert sorted(listed) == ["README.txt", "tcga.tar.gz"]
    assert listed["README.txt"].size == 5
    assert listed["README.txt"].known_hash == "md5:" + hashlib.md5(b"hello").hexdigest()
    assert listed["README.txt"].url.startswith(zenodo.base)


def test_fetch_downloads_verifies_extracts_and_caches(zenodo: _FakeZenodo, tmp_path: Path) -> None:
    zenodo.files = {"tcga.tar.gz": _tar_bytes(tmp_path)}
    cache = tmp_path / "cache"
    got = fetch_record_file("tcga.tar.gz", cache, api_url=_api(zenodo), timeout_s=5)
    assert got.path == cache / "tcga.tar.gz" and got.source == f"doi:{STEMRI_DOI}/tcga.tar.gz"
    assert got.extracted == cache / "tcga"
    assert [p.relative_to(cache).as_posix() for p in got.files] == ["tcga/tcga/s1.tsv", "tcga/tcga/s2.tsv"]
    again = fetch_record_file("tcga.tar.gz", cache, api_url=_api(zenodo), timeout_s=5)
    assert again == got and zenodo.file_requests == ["tcga.tar.gz"]  # verified cache: no second download


def test_md5_mismatch_is_a_clear_error_and_nothing_is_kept(zenodo: _FakeZenodo, tmp_path: Path) -> None:
    zenodo.files = {"wsi.tar.gz": _tar_bytes(tmp_path)}
    zenodo.served = {"wsi.tar.gz": b"truncated"}
    cache = tmp_path / "cache"
    with pytest.raises(ZenodoError) as caught:
        fetch_record_file("wsi.tar.gz", cache, api_url=_api(zenodo), timeout_s=5)
    message = str(caught.value)
    assert message.startswith(f"wsi.tar.gz from Zenodo record {STEMRI_DOI}: MD5 hash of downloaded file")
    assert "does not match the known hash" in message and f"Nothing was kept in {cache}" in message
    assert list(cache.iterdir()) == []


def test_record_errors_are_clear(zenodo: _FakeZenodo, tmp_path: Path) -> None:
    zenodo.files = {"wsi.tar.gz": b"abc"}
    with pytest.raises(ZenodoError, match=r"has no file 'nope.zip'; it has: wsi.tar.gz"):
        fetch_record_file("nope.zip", tmp_path, api_url=_api(zenodo), timeout_s=5)
    with pytest.raises(ZenodoError, match=r"pinned checksum md5:0{32} differs from the one Zenodo record"):
        fetch_record_file("wsi.tar.gz", tmp_path, known_hash="md5:" + "0" * 32, api_url=_api(zenodo), timeout_s=5)
    assert zenodo.file_requests == []  # refused before downloading
    with pytest.raises(ZenodoError, match=r"no Zenodo record for DOI 10.5281/zenodo.1 .*HTTP 404"):
        record_files("10.5281/zenodo.1", api_url=_api(zenodo), timeout_s=5)
    zenodo.access = "restricted"
    with pytest.raises(ZenodoError, match=r"lists no files you can download \(file access: restricted\)"):
        record_files(STEMRI_DOI, api_url=_api(zenodo), timeout_s=5)


def test_the_token_goes_only_to_the_zenodo_host(zenodo: _FakeZenodo, tmp_path: Path) -> None:
    token = "zenodo-s3cret"
    zenodo.files = {"a.txt": b"alpha", "b.txt": b"beta", "c.txt": b"gamma"}
    port = zenodo.base.rsplit(":", 1)[1]
    elsewhere = f"http://localhost:{port}/api/records/{RECORD_ID}/files"  # same server, another host name
    zenodo.links["b.txt"] = f"{elsewhere}/b.txt/content"
    zenodo.redirects["c.txt"] = f"{elsewhere}/c.txt/content"
    for name in zenodo.files:
        got = fetch_record_file(name, tmp_path, api_url=_api(zenodo), token=token, timeout_s=5)
        assert got.path.read_bytes() == zenodo.files[name]
    bearer = f"Bearer {token}"
    assert zenodo.record_auth == [bearer] * 3
    assert zenodo.file_auth == [("127.0.0.1", bearer),  # a.txt: a link on the Zenodo host
                                ("localhost", None),  # b.txt: a link on another host gets no token
                                ("127.0.0.1", bearer), ("localhost", None)]  # c.txt: not through a redirect


@pytest.mark.parametrize("name", ["../evil.tar.gz", "sub/evil.txt", "/etc/passwd", "..", "C:evil", "a\x00b", " "])
def test_record_file_names_must_be_plain_names(zenodo: _FakeZenodo, tmp_path: Path, name: str) -> None:
    zenodo.files = {"fine.txt": b"x", name: b"evil"}
    with pytest.raises(ZenodoError, match=r"file name .* refused: .*nothing is downloaded from this record") as caught:
        fetch_record_file("fine.txt", tmp_path / "cache", api_url=_api(zenodo), timeout_s=5)
    assert f"file name {name!r} refused" in str(caught.value)
    assert zenodo.file_requests == [] and not (tmp_path / "cache").exists()


def test_a_cut_download_is_resumed_and_a_stale_cached_file_replaced(zenodo: _FakeZenodo, tmp_path: Path) -> None:
    data = bytes(range(256)) * 64
    zenodo.files = {"r.bin": data}
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "r.bin").write_bytes(b"stale")  # a wrong file in the cache is not taken for the download
    (cache / "r.bin.part").write_bytes(data[:1000])  # the fake ignores Range: the engine starts over (HTTP 200)
    assert fetch_record_file("r.bin", cache, api_url=_api(zenodo), timeout_s=5).path.read_bytes() == data
    assert sorted(p.name for p in cache.iterdir()) == ["r.bin"]


def test_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ZenodoError, match=rf"cannot reach http://127.0.0.1:{port}/api/records/{RECORD_ID}"):
        record_files(api_url=f"http://127.0.0.1:{port}/api", timeout_s=2)


# ---------------------------------------------------------------- gbdata layout

SLIDES = {"SRA1-M1-85": (3, 1), "SRA2-M2-90": (2, 0), "SRB1-M3-70": (2, 0), "SRB1-M4-75": (1, 0)}  # tumour, neutral


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _build_gbdata(root: Path) -> Path:
    """2 patients (SRA, SRB), 3 lineages, 4 slides / mice, 8 tumour + 1 neutral patches, in the authors' layout."""
    g = root / "gbdata"
    _write(g / "rna/gene_clustering/ppi_cluster_to_ensembl_genes.json",
           json.dumps({"0": ["ENSG01", "ENSG02"], "1": ["ENSG03"]}))
    for sample in ("s1", "s2", "s3"):
        _write(g / f"rna/tcga/{sample}.tsv", "gene_id\tvalue\nENSG01.1\t3\n")
    for split, samples in (("train", ["s1", "s2"]), ("val", ["s3"]), ("test", ["s3"])):
        rows = "".join(f"{i}\tgbdata/rna/tcga/{s}.tsv\n" for i, s in enumerate(samples))
        _write(g / f"rna/{split}_split.tsv", "\tSample paths\n" + rows)
    _write(g / "rna/oncopole_rna_raw.tsv", "gene\tSRA1\nENSG01_A\t5\n")
    for lineage in ("SRA1", "SRA2", "SRB1"):
        _write(g / f"rna/oncopole/{lineage}.tsv", "gene_id\tvalue\nENSG01.1\t2\n")
    _write(g / "wsi/metadata.yml", "tumorFiles: {}\n")
    for slide, counts in SLIDES.items():
        for kind, n in zip(("tumor", "neutral"), counts):
            folder = g / "wsi" / slide / kind
            folder.mkdir(parents=True, exist_ok=True)
            for idx in range(n):
                x = 256 * idx
                Image.new("RGB", (4, 4), (150, 90, 40)).save(
                    folder / f"{slide}_{idx:05d}_{x:05d}_00000_{x + 256:05d}_00256.png")
        _write(g / f"tiny/{slide}_x0.625_z0.tif", "tif")
    _write(g / "survival/patients.csv", "Biopsy number;Sex;Age;Tumor localization;PFS;OS\n"
                                        "SRA;M;61;frontal;200;400\nSRB;F;55;temporal;150;380\n")
    _write(g / "survival/lineage.csv", "lineage,spectro,NS_gen_1,NS_gen_2,radioresistance,NS_form_ratio\n"
                                       "SRA1,0,7,True,0.5,0.2\nSRA2,1,1000,False,0.3,\nSRB1,2,9,True,0.7,0.4\n")
    return root


def test_complete_tree_reports_the_right_counts(tmp_path: Path) -> None:
    report = check_gbdata_layout(_build_gbdata(tmp_path))
    assert report.ok, report.summary()
    assert report.missing == [] and report.problems == []
    assert report.counts == {
        "patients": 2, "lineages": 3, "slides": 4, "mice": 4, "tumor_patches": 8, "neutral_patches": 1,
        "rna_profiles": 3, "tcga_profiles": 3, "train_samples": 2, "val_samples": 1, "test_samples": 1,
        "ppi_clusters": 2, "ppi_cluster_genes": 3, "thumbnails": 4, "trained_models": 0,
        "patients_csv_rows": 2, "lineage_csv_rows": 3,
    }
    assert report.patches_per_lineage == {"SRA1": 3, "SRA2": 2, "SRB1": 3}
    assert report.lineages.loc["SRB1", ["slides", "mice"]].tolist() == [2, 2]
    assert {s.name: (s.patient, s.lineage, s.mouse, s.survival_days) for s in report.slides}["SRB1-M4-75"] == \
        ("SRB", "SRB1", "M4", 75)
    frame = report.to_frame().set_index("item")
    assert frame.loc["wsi_metadata", "status"] == "present"
    assert frame.loc["wsi_encoder", "status"] == "absent (optional)"
    assert "complete" in report.summary().splitlines()[0]


def test_missing_parts_are_named_exactly(tmp_path: Path) -> None:
    g = _build_gbdata(tmp_path) / "gbdata"
    for rel in ("rna/train_split.tsv", "wsi/metadata.yml", "survival/lineage.csv", "rna/oncopole/SRA2.tsv"):
        (g / rel).unlink()
    report = check_gbdata_layout(tmp_path)
    assert report.missing == ["gbdata/rna/train_split.tsv", "gbdata/wsi/metadata.yml", "gbdata/survival/lineage.csv"]
    assert report.problems == [
        f"lineage SRA2 has 2 tumour patches but no RNA profile ({g}/rna/oncopole/SRA2.tsv): they cannot be "
        "paired (the authors' code silently swaps each for a random other patch)"]
    assert not report.ok and report.counts["rna_profiles"] == 2 and report.counts["train_samples"] == 0
    text = report.summary()
    assert "3 required path(s) missing, 1 problem(s)" in text
    assert re.search(r"^  MISSING +gbdata/wsi/metadata.yml  \(patch train/val split", text, re.M)
    assert re.search(r"^  present +gbdata/rna/val_split.tsv", text, re.M)


def test_readme_paths_are_accepted_with_a_note(tmp_path: Path) -> None:
    g = _build_gbdata(tmp_path) / "gbdata"
    shutil.move(g / "rna/gene_clustering", g / "gene_clustering")
    _write(tmp_path / "trained_models/rna_encoder.bin", "weights")
    report = check_gbdata_layout(g)  # gbdata itself is accepted as root, too
    assert report.root == tmp_path and report.ok
    status = report.to_frame().set_index("item")["status"]
    assert status["ppi_cluster_to_ensembl_genes"] == status["rna_encoder"] == "present (README path)"
    assert any("found only at the README path trained_models/rna_encoder.bin; the authors' code reads "
               "trained_models/rna_encoder_ppi.bin" in note for note in report.notes)
    assert report.counts["trained_models"] == 1 and report.counts["ppi_clusters"] == 2


def test_bad_names_and_table_mismatches_are_problems(tmp_path: Path) -> None:
    g = _build_gbdata(tmp_path) / "gbdata"
    (g / "wsi/SRA1-M1-85/tumor/garbage.png").write_bytes(b"")
    (g / "wsi/SRA1-M1-85/tumor/SRA2-M2-90_00009_00000_00000_00256_00256.png").write_bytes(b"")
    (g / "wsi/notaslide").mkdir()
    (g / "wsi/SRC1-M9-10/tumor").mkdir(parents=True)
    (g / "wsi/SRC1-M9-10/tumor/SRC1-M9-10_00000_00000_00000_00256_00256.png").write_bytes(b"")
    _write(g / "rna/train_split.tsv", "\tSample paths\n0\tgbdata/rna/tcga/lost.tsv\n")
    report = check_gbdata_layout(tmp_path)
    joined = "\n".join(report.problems)
    assert "1 folder(s) in" in joined and "slide name 'notaslide' is not SR<patient letter" in joined
    assert "2 patch file(s)" in joined
    assert "SRA1-M1-85/tumor: patch file name 'garbage.png' has 1 '_'-separated fields" in joined
    assert "SRA1-M1-85/tumor/SRA2-M2-90_00009_00000_00000_00256_00256.png belongs to slide SRA2-M2-90" in joined
    assert "lineage(s) ['SRC1'] have slides but no row in" in joined
    assert "patient(s) ['SRC'] have slides but no row in" in joined
    assert "lineage SRC1 has 1 tumour patches but no RNA profile" in joined
    assert "train_split.tsv: 1 of 1 sample paths do not exist" in joined
    assert report.counts["patients"] == 3 and report.counts["slides"] == 5
    assert any("1 slide(s) have no thumbnail" in note for note in report.notes)


@pytest.mark.parametrize("name, message", [
    ("SRA1-M1-85_00001_00000_00000_00256_00256.jpg",
     "patch file name 'SRA1-M1-85_00001_00000_00000_00256_00256.jpg' does not end in .png"),
    ("SRA1-M1-85_00001_00000_00000_00256.png", "has 5 '_'-separated fields, expected 6"),
    ("SRA1-M1_00001_00000_00000_00256_00256.png",
     "slide name 'SRA1-M1' is not SR<patient letter A-Z><lineage digit 0-9>-<mouse id>-<mouse survival in days>, "
     "e.g. 'SRA1-M12-85': it has 2 '-'-separated fields, not 3."),
    ("SRa1-M1-85_00001_00000_00000_00256_00256.png",
     "'SRa1' is not SR + one patient letter A-Z + one lineage digit"),
    ("SRA1-M1-8d_00001_00000_00000_00256_00256.png", "the survival '8d' is not a whole number of days"),
    ("SRA1-M1-85_0000x_00000_00000_00256_00256.png", "index '0000x' is not a non-negative integer"),
    ("SRA1-M1-85_00001_00256_00000_00256_00256.png", "corner (256, 256) is not below-right of (256, 0)"),
])
def test_malformed_patch_names_raise_clear_errors(name: str, message: str) -> None:
    with pytest.raises(MalformedNameError) as caught:
        parse_patch_name(name)
    assert message in str(caught.value)


def test_names_parse_to_labels() -> None:
    patch = parse_patch_name(Path("wsi/SRB3-M12-85/tumor/SRB3-M12-85_00042_00256_00512_00512_00768.png"))
    assert (patch.index, patch.x1, patch.y1, patch.x2, patch.y2) == (42, 256, 512, 512, 768)
    assert (patch.slide.patient, patch.slide.lineage, patch.slide.mouse, patch.slide.survival_days) == \
        ("SRB", "SRB3", "M12", 85)
    assert (patch.slide.patient_label, patch.slide.lineage_label) == (1, 29)
    with pytest.raises(MalformedNameError, match=r"the mouse id 'M_1' is empty or contains '_'"):
        parse_slide_name("SRA1-M_1-85")


@pytest.mark.notebook
@pytest.mark.timeout(1200)  # one chapter
def test_chapter_1_runs_the_stemri_profile_against_a_fake_zenodo(zenodo: _FakeZenodo, tmp_path: Path) -> None:
    from gbhet_lib.config import StudyConfig
    from gbhet_lib.runner import run_study

    zenodo.files = {"tcga.tar.gz": _tar_bytes(tmp_path), "README.txt": b"hello"}
    gbdata = _build_gbdata(tmp_path / "authors")
    config = StudyConfig(profile="stemri", run_dir=tmp_path / "run", seed=0, device="cpu",
                         cache_dir=tmp_path / "cache")
    run_study(config, notebook_dir=Path(__file__).resolve().parents[1] / "notebooks", only=["01_data"],
              parameters={"zenodo_api": _api(zenodo), "stemri_download": ["tcga.tar.gz"],
                          "stemri_gbdata": str(gbdata)}, progress=False)
    assert zenodo.file_requests == ["tcga.tar.gz"]
    assert (tmp_path / "cache" / "stemri" / "tcga" / "tcga" / "s1.tsv").is_file()  # downloaded, verified, extracted
    executed = (config.run_dir / "notebooks" / "01_data.ipynb").read_text()
    first_line = check_gbdata_layout(gbdata).summary().splitlines()[0]
    assert json.dumps(first_line)[1:-1] in executed  # the layout summary is printed
    assert "README.txt" in executed  # the record's file table is shown
