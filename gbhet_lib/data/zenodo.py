"""The authors' released data (``stemri`` profile): files of a Zenodo record, downloaded and verified.

Resolution (DOI -> record -> file URL + MD5) is our code; the download goes through the data layer's one engine
(:func:`gbhet_lib.data.download.download`: retries, a resumable ``<name>.part``) and is checked against the record's
MD5 (or a pinned checksum), so a corrupt or truncated download is deleted and reported.

Why not ``pooch.retrieve(url="doi:10.5281/zenodo.15807412/<file>")`` directly? Pooch's ``DOIDownloader``
resolves every DOI through ``https://doi.org`` and accepts the answer only when its host is exactly
``zenodo.org`` (``ZenodoRepository.initialize``), so it cannot be pointed at a mirror or at a local test
server, and the code path could never run offline. It also reads the API's answer without checking its
HTTP status, and offers no listing with file sizes. A Zenodo DOI names its record directly
(``10.5281/zenodo.<record id>``), so no doi.org round trip is needed: we ask ``{api_url}/records/<id>``
(Zenodo's REST API) and read ``files[]``, in both shapes pooch supports:
legacy ``{key, size, checksum: "md5:…", links: {self}}`` and InvenioRDM ``{filename, filesize, checksum: "…",
links: {download}}``. ``api_url`` is the injection point (tests serve a fake record on 127.0.0.1).

The authors' README names ``tcga.tar.gz`` (extract into ``gbdata/rna``) and ``wsi.tar.gz`` (into
``gbdata/wsi``) and "trained models"; the record's full file list was not verified here (no network). The
README also says the data are shared on request for research use only: a record whose files are restricted
answers with no files or HTTP 403, reported as such; pass ``token=`` (a Zenodo personal access token of an
account that was granted access) in that case.

The token is sent only to the Zenodo host, the one ``api_url`` names: with the record request, and with a file
download whose link is on that host (scheme, host and port). A file link on another host gets no token, and
requests drops it from a redirect that leaves the host. A file name the record lists becomes a local path only
when it is a plain name (:func:`gbhet_lib.data.download.unsafe_name`: no ``/``, ``..``, absolute path or NUL).
"""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import GbhetError
from .archives import MAX_BYTES, MAX_MEMBERS, is_archive, safe_extract, strip_archive_suffix
from .download import (Checksum, DigestMismatchError, HttpStatusError, RetriesExhaustedError, RetryPolicy, download,
                       file_digest, partial_path, unsafe_name)

STEMRI_DOI = "10.5281/zenodo.15807412"
ZENODO_API = "https://zenodo.org/api"

_ZENODO_DOI = re.compile(r"^(?:doi:|https?://(?:dx\.)?doi\.org/)?10\.5281/zenodo\.(?P<id>\d+)/?$", re.IGNORECASE)
_MD5 = re.compile(r"^[0-9a-f]{32}$")


class ZenodoError(GbhetError, RuntimeError):
    """A Zenodo record or file cannot be listed or downloaded; the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class RecordFile:
    """One file of a Zenodo record.

    Attributes:
        name: file name in the record (``key``).
        size: size in bytes.
        md5: hex MD5 checksum published by Zenodo.
        url: download URL.
    """

    name: str
    size: int
    md5: str
    url: str

    @property
    def known_hash(self) -> str:
        """The checksum in pooch's notation, ``md5:<hex>``."""
        return f"md5:{self.md5}"


@dataclasses.dataclass(frozen=True)
class FetchedFile:
    """A downloaded record file and, for an archive, where it was extracted.

    Attributes:
        path: the verified download.
        source: ``doi:<doi>/<name>``, the provenance to cite (the form pooch's DOI URLs take).
        extracted: the extraction folder, or None (not an archive, or ``extract=False``).
        files: the extracted files (empty when not extracted).
    """

    path: Path
    source: str
    extracted: Path | None
    files: list[Path]


def zenodo_record_id(doi: str) -> str:
    """The record id of a Zenodo DOI: ``"10.5281/zenodo.15807412"`` -> ``"15807412"``.

    Accepts a bare DOI, ``doi:…`` or ``https://doi.org/…``.
    """
    match = _ZENODO_DOI.match(doi.strip())
    if match is None:
        raise ZenodoError(f"{doi!r} is not a Zenodo DOI; expected 10.5281/zenodo.<record id>, e.g. {STEMRI_DOI}.")
    return match["id"]


def record_files(doi: str = STEMRI_DOI, *, api_url: str = ZENODO_API, token: str | None = None,
                 timeout_s: float = 30.0) -> list[RecordFile]:
    """List the files of a Zenodo record (name, size in bytes, MD5, URL) from Zenodo's REST API.

    Args:
        doi: the record's DOI.
        api_url: base of the API (``https://zenodo.org/api``; a mirror or test server otherwise).
        token: Zenodo personal access token, for a record whose files are restricted.
        timeout_s: seconds to wait for the server to answer.
    """
    record = _get_record(doi, api_url, token, timeout_s)
    entries = record.get("files") or []
    if not entries:
        raise ZenodoError(f"Zenodo record {doi} lists no files you can download ({_access(record)}). The "
                          "authors share these data on request: ask for access on the record's page, then "
                          "pass token=<your Zenodo access token>.")
    return [_record_file(entry, doi, api_url, zenodo_record_id(doi)) for entry in entries]


def fetch_record_file(name: str, cache_dir: str | Path, known_hash: str | None = None, *,
                      doi: str = STEMRI_DOI, api_url: str = ZENODO_API, token: str | None = None,
                      extract: bool = True, timeout_s: float = 30.0, progressbar: bool = False,
                      retry: RetryPolicy | None = None, extract_max_bytes: int = MAX_BYTES,
                      extract_max_members: int = MAX_MEMBERS) -> FetchedFile:
    """Download one file of a Zenodo record into ``cache_dir``, verify it, and extract it if an archive.

    A file already in ``cache_dir`` with the right checksum is not downloaded again, a cut download resumes
    from ``<name>.part``, and an archive already extracted is not extracted again (:func:`safe_extract`).
    Archives are extracted to ``cache_dir/<name without suffix>`` (``wsi.tar.gz`` -> ``cache_dir/wsi``).

    Args:
        name: the file's name in the record, e.g. ``"wsi.tar.gz"``.
        cache_dir: download folder.
        known_hash: a pinned checksum (``md5:…``, ``sha256:…``; bare hex is SHA-256); defaults to the record's
            MD5. A pinned MD5 that differs from the record's is an error raised before downloading.
        doi, api_url, token, timeout_s: as in :func:`record_files`; the token goes only to ``api_url``'s host.
        extract: extract archives (``.tar``, ``.tar.gz``, ``.tgz``, ``.zip``).
        progressbar: show a download progress bar (tqdm, on stderr).
        retry: attempts and back-off of the download; default :class:`RetryPolicy` with ``timeout_s``.
        extract_max_bytes, extract_max_members: limits of the extraction (``safe_extract``'s ``max_bytes``,
            ``max_members``): an archive over them is refused.
    """
    cache = Path(cache_dir).expanduser()
    entry = _find(record_files(doi, api_url=api_url, token=token, timeout_s=timeout_s), name, doi)
    expected = _expected_checksum(known_hash, entry, doi)
    target = cache / entry.name  # a plain name: checked when the record was read
    if not _verified(target, expected):
        _check_free_space(cache, entry)
        _download(entry, target, expected, doi, _auth_headers(token) if _same_host(entry.url, api_url) else {},
                  retry or RetryPolicy(connect_timeout_s=timeout_s, read_timeout_s=timeout_s), progressbar)
    source = f"doi:{doi}/{name}"
    if not (extract and is_archive(name)):
        return FetchedFile(target, source, None, [])
    dest = cache / strip_archive_suffix(name)
    return FetchedFile(target, source, dest, safe_extract(target, dest, max_bytes=extract_max_bytes,
                                                          max_members=extract_max_members))


def _expected_checksum(known_hash: str | None, entry: RecordFile, doi: str) -> Checksum:
    """The pinned checksum, else the record's MD5; a pinned MD5 must be the record's."""
    if known_hash is None:
        return Checksum("md5", entry.md5)
    try:
        expected = Checksum.parse(known_hash)
    except ValueError as err:
        raise ZenodoError(f"{entry.name}: known_hash={known_hash!r}: {err}") from None
    if expected.algorithm == "md5" and expected.hexdigest != entry.md5:
        raise ZenodoError(f"{entry.name}: the pinned checksum {known_hash} differs from the one Zenodo record {doi} "
                          f"publishes (md5:{entry.md5}); the record has changed or the pin is stale. Check the "
                          "record and update the pin.")
    return expected


def _verified(target: Path, expected: Checksum) -> bool:
    """True when ``target`` holds the expected bytes; a file that does not is deleted (the cache keeps only
    verified files)."""
    if not target.is_file():
        return False
    if file_digest(target, expected.algorithm) == expected.hexdigest:
        return True
    target.unlink()
    return False


def _download(entry: RecordFile, target: Path, expected: Checksum, doi: str, headers: dict[str, str],
              retry: RetryPolicy, progressbar: bool) -> None:
    """Download a record file with the engine; its errors become :class:`ZenodoError` saying what to do."""
    bar = None
    if progressbar:
        from tqdm import tqdm

        bar = tqdm(total=entry.size, unit="B", unit_scale=True, unit_divisor=1024, desc=entry.name)
    try:
        download(entry.url, target, retry=retry, headers=headers, checksum=expected,
                 on_bytes=None if bar is None else bar.update)
    except DigestMismatchError as err:
        raise ZenodoError(
            f"{entry.name} from Zenodo record {doi}: {expected.algorithm.upper()} hash of downloaded file "
            f"({entry.name}) does not match the known hash: expected {expected}, got {expected.algorithm}:"
            f"{err.actual}. Nothing was kept in {target.parent}; run again (the transfer may have been cut), and "
            "if it fails again the record or the pinned checksum has changed.") from None
    except HttpStatusError as err:
        access = (" The file is restricted: ask for access on the record's page, then pass token=."
                  if err.status in (401, 403) else "")
        raise ZenodoError(f"{entry.name}: download from {entry.url} answered HTTP {err.status} {err.reason}."
                          f"{access}") from None
    except RetriesExhaustedError as err:
        kept = f" ({err.kept:,} bytes kept in {partial_path(target)}, resumed next time)" if err.kept else ""
        raise ZenodoError(f"{entry.name}: download from {entry.url} failed {err.attempts} time(s) (last: "
                          f"{err.last}){kept}. Check the network, or place a verified copy in {target.parent}.") \
            from None
    finally:
        if bar is not None:
            bar.close()


def _same_host(url: str, api_url: str) -> bool:
    """True when ``url`` is on the Zenodo host ``api_url`` names (same scheme, host and port)."""
    a, b = urlsplit(url), urlsplit(api_url)
    return (a.scheme.lower(), a.hostname, a.port) == (b.scheme.lower(), b.hostname, b.port)


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _get_record(doi: str, api_url: str, token: str | None, timeout_s: float) -> dict[str, Any]:
    url = f"{api_url.rstrip('/')}/records/{zenodo_record_id(doi)}"
    try:
        response = requests.get(url, headers=_auth_headers(token), timeout=timeout_s)
    except requests.RequestException as err:
        raise ZenodoError(f"cannot reach {url} ({err}). Check the network, or use a data mirror.") from err
    if response.status_code == 404:
        raise ZenodoError(f"no Zenodo record for DOI {doi} at {url} (HTTP 404). Check the DOI.")
    if response.status_code in (401, 403):
        raise ZenodoError(f"Zenodo refused access to record {doi} (HTTP {response.status_code}); its files "
                          "are restricted. Ask for access on the record's page, then pass token=.")
    if not response.ok:
        raise ZenodoError(f"{url} answered HTTP {response.status_code}; try again later.")
    try:
        record = response.json()
    except ValueError as err:
        raise ZenodoError(f"{url} did not answer with JSON ({err}); is api_url a Zenodo API?") from err
    if not isinstance(record, dict):
        raise ZenodoError(f"{url} answered {type(record).__name__}, not a Zenodo record object.")
    return record


def _access(record: dict[str, Any]) -> str:
    access = record.get("access") or {}
    rights = access.get("files") or (record.get("metadata") or {}).get("access_right") or "not stated"
    return f"file access: {rights}"


def _record_file(entry: dict[str, Any], doi: str, api_url: str, record_id: str) -> RecordFile:
    """One ``files[]`` entry in the legacy (``key``) or InvenioRDM (``filename``) shape."""
    name = entry.get("key") or entry.get("filename")
    if name and (problem := unsafe_name(name)):
        raise ZenodoError(f"Zenodo record {doi}: file name {name!r} refused: {problem}. A record's file names "
                          "become local paths; this one could write outside the cache folder, so nothing is "
                          "downloaded from this record. Check that api_url is a Zenodo API.")
    checksum = str(entry.get("checksum", ""))
    algorithm, _, digest = checksum.rpartition(":")
    if not name or (algorithm or "md5") != "md5" or not _MD5.match(digest.lower()):
        raise ZenodoError(f"Zenodo record {doi}: file entry {entry!r} lacks a name or an MD5 checksum; "
                          "the API format may have changed.")
    links = entry.get("links") or {}
    url = (links.get("download") or links.get("self")
           or f"{api_url.rstrip('/')}/records/{record_id}/files/{name}/content")
    return RecordFile(name=name, size=int(entry.get("size", entry.get("filesize", 0))), md5=digest.lower(), url=url)


def _find(files: list[RecordFile], name: str, doi: str) -> RecordFile:
    for entry in files:
        if entry.name == name:
            return entry
    raise ZenodoError(f"Zenodo record {doi} has no file {name!r}; it has: {', '.join(f.name for f in files)}.")


def _check_free_space(folder: Path, entry: RecordFile) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < entry.size:
        raise ZenodoError(f"{entry.name} needs {entry.size / 1e9:.1f} GB but {folder} has {free / 1e9:.1f} GB "
                          "free; pass another cache_dir.")
