"""The authors' released data (``stemri`` profile): files of a Zenodo record, downloaded and verified.

Resolution (DOI -> record -> file URL + MD5) is our code; the download is :func:`pooch.retrieve` with
``known_hash="md5:<checksum from the record>"``, so a corrupt or truncated download is deleted and reported.

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
"""
from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

import pooch
import requests

from ..errors import GbhetError
from .archives import is_archive, safe_extract, strip_archive_suffix

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
                      extract: bool = True, timeout_s: float = 30.0, progressbar: bool = False) -> FetchedFile:
    """Download one file of a Zenodo record into ``cache_dir``, verify it, and extract it if an archive.

    A file already in ``cache_dir`` with the right checksum is not downloaded again (pooch), and an
    archive already extracted is not extracted again (:func:`safe_extract`). Archives are extracted to
    ``cache_dir/<name without suffix>`` (``wsi.tar.gz`` -> ``cache_dir/wsi``).

    Args:
        name: the file's name in the record, e.g. ``"wsi.tar.gz"``.
        cache_dir: download folder.
        known_hash: a pinned checksum (``md5:…``, ``sha256:…``); defaults to the record's MD5. A pinned MD5
            that differs from the record's is an error raised before downloading.
        doi, api_url, token, timeout_s: as in :func:`record_files`.
        extract: extract archives (``.tar``, ``.tar.gz``, ``.tgz``, ``.zip``).
        progressbar: show a download progress bar (needs tqdm).
    """
    cache = Path(cache_dir).expanduser()
    entry = _find(record_files(doi, api_url=api_url, token=token, timeout_s=timeout_s), name, doi)
    expected = known_hash or entry.known_hash
    if expected.lower().startswith("md5:") and expected[4:].lower() != entry.md5:
        raise ZenodoError(f"{name}: the pinned checksum {expected} differs from the one Zenodo record {doi} "
                          f"publishes (md5:{entry.md5}); the record has changed or the pin is stale. Check the "
                          "record and update the pin.")
    target = cache / name
    if not target.is_file():
        _check_free_space(cache, entry)
    downloader = pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout_s,
                                      headers=_auth_headers(token))
    try:
        path = Path(pooch.retrieve(entry.url, known_hash=expected, fname=name, path=cache,
                                   downloader=downloader))
    except ValueError as err:  # pooch's hash mismatch; the download was deleted
        raise ZenodoError(f"{name} from Zenodo record {doi}: {err} Nothing was kept in {cache}; "
                          "run again (the transfer may have been cut), and if it fails again the record "
                          "or the pinned checksum has changed.") from err
    except requests.RequestException as err:
        raise ZenodoError(f"{name}: download from {entry.url} failed ({err}). Check the network, "
                          "or place a verified copy in the cache folder.") from err
    source = f"doi:{doi}/{name}"
    if not (extract and is_archive(name)):
        return FetchedFile(path, source, None, [])
    dest = cache / strip_archive_suffix(name)
    return FetchedFile(path, source, dest, safe_extract(path, dest))


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
