"""Fetch the manifest's datasets, verified: from a local mirror, the download cache, or the pinned source.

* With a mirror (argument, else ``$GBHET_DATA_MIRROR``) a dataset is ``<mirror>/<mirror_path>``: its sha256 is
  checked and that path is returned as is. No copy: the mirror is read-only, already local, and the checksum
  proves it holds the manifest's bytes; callers must not write to returned paths.
* Without a mirror the pinned ``url`` is downloaded into the cache (``$GBHET_CACHE_DIR`` or ``~/.cache/gbhet``),
  laid out like a mirror (``<cache>/<mirror_path>``), so a filled cache can serve as a mirror. Downloads go through
  the data layer's one engine (:func:`gbhet_lib.data.download.download`): they stream into ``<file>.part``,
  resume it with an HTTP Range request, and retry connection errors, 429 and 5xx answers with exponential
  back-off. A ``member`` is extracted from its zip/wheel container, which stays in ``<cache>/_archives/`` for the
  other members.

A file that fails verification is never used: a download is deleted, a mirror file is reported. The error says
whether the bytes are an HTML page, a Git LFS pointer, a truncated gzip or simply different, and how to get out.
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Sequence
from urllib.parse import urlparse

from ..config import ENV_CACHE_DIR, ENV_DATA_MIRROR
from ..io import atomic_path, file_sha256
from .download import HttpStatusError, RetriesExhaustedError, RetryPolicy, download, partial_path, unsafe_name
from .manifest import DataError, DatasetEntry, Manifest, load_manifest

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["DataError", "VerificationError", "ChecksumMismatchError", "HtmlPageError", "LfsPointerError",
           "CorruptGzipError", "MirrorFileMissingError", "NoSourceError", "RemoteNotFoundError", "DownloadError",
           "NetworkError", "RetryPolicy", "ResumableDownloader", "FetchResult", "fetch", "fetch_profile",
           "file_sha256", "default_cache_dir"]

Source = Literal["mirror", "cache", "download"]
ARCHIVE_DIR = "_archives"
_CHUNK = 1 << 20  # bytes read or written at a time
_SNIFF = 512  # bytes looked at to recognise an HTML page or a Git LFS pointer


class VerificationError(DataError):
    """A file's bytes are not the manifest's (base of the checksum-type errors)."""


class ChecksumMismatchError(VerificationError):
    """The sha256 of a file differs from the manifest's."""


class HtmlPageError(VerificationError):
    """An HTML page (login, error or rate-limit page) came instead of the data file."""


class LfsPointerError(VerificationError):
    """A Git LFS pointer came instead of the data file."""


class CorruptGzipError(VerificationError):
    """A gzip file ends early or is damaged."""


class MirrorFileMissingError(DataError):
    """The mirror lacks a dataset's file."""


class NoSourceError(DataError):
    """The dataset has no upstream URL (derived or transcribed): only a mirror has it."""


class RemoteNotFoundError(DataError):
    """The source answered 404 Not Found."""


class DownloadError(DataError):
    """The source refused the download (an HTTP error other than 404 and 5xx)."""


class NetworkError(DataError):
    """The source could not be reached, or kept failing, after every retry."""


@dataclasses.dataclass(frozen=True)
class FetchResult:
    """What fetching one dataset gave.

    Attributes:
        name: the dataset.
        path: the verified local file, or ``None`` when it failed or was skipped.
        size: the manifest's size of the dataset, bytes.
        sha256_ok: ``True`` verified, ``False`` the bytes were wrong, ``None`` never got bytes to check.
        licence: the manifest's licence.
        source: where the bytes came from (``mirror``, ``cache`` or ``download``), ``None`` if nowhere.
        status: ``ok``, ``failed``, or ``skipped`` (no upstream URL and no mirror: a derived file).
        message: why it failed or was skipped.
    """

    name: str
    path: Path | None
    size: int
    sha256_ok: bool | None
    licence: str
    source: Source | None
    status: Literal["ok", "failed", "skipped"]
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def default_cache_dir() -> Path:
    """The download cache: ``$GBHET_CACHE_DIR`` or ``~/.cache/gbhet`` (as :class:`~gbhet_lib.StudyConfig`)."""
    return Path(os.environ.get(ENV_CACHE_DIR) or "~/.cache/gbhet").expanduser()


def fetch(name_or_entry: str | DatasetEntry, mirror: Path | None = None, cache_dir: Path | None = None,
          manifest: Manifest | None = None, progress: bool = False, retry: RetryPolicy | None = None) -> Path:
    """Return a verified local path of one dataset (see the module docstring for where it comes from).

    Args:
        name_or_entry: a manifest name such as ``"string_v12_ppi_rda"``, or an entry.
        mirror: a local mirror folder; default ``$GBHET_DATA_MIRROR``; ``None`` and no variable: download.
        cache_dir: the download cache; default :func:`default_cache_dir`.
        manifest: where names are looked up; default :func:`~gbhet_lib.data.manifest.load_manifest`.
        progress: show a progress bar (tqdm, on stderr) while downloading.
        retry: download retry policy; default :class:`RetryPolicy`.

    Raises:
        DataError: one of its subclasses above; the message names the dataset, the file or URL, and the fix.
    """
    entry = _entry(name_or_entry, manifest)
    return _fetch(entry, _resolve_mirror(mirror), cache_dir, progress, retry or RetryPolicy())[0]


def fetch_profile(profile: str, mirror: Path | None = None, cache_dir: Path | None = None, *,
                  only: Sequence[str] | None = None, manifest: Manifest | None = None, progress: bool = False,
                  retry: RetryPolicy | None = None) -> list[FetchResult]:
    """Fetch every dataset of ``profile`` (or the ``only`` ones), carrying on past failures.

    Without a mirror, entries that have no upstream URL are ``skipped``. Arguments as :func:`fetch`.

    Raises:
        DataError: before fetching anything, for an unknown profile or name, or a mirror that is not a folder.
    """
    manifest = manifest or load_manifest()
    entries = manifest.for_profile(profile)
    if only:
        wanted = {manifest[name].name for name in only}
        outside = sorted(wanted - {entry.name for entry in entries})
        if outside:
            raise DataError(f"dataset(s) {', '.join(outside)} are not in profile {profile!r}.")
        entries = [entry for entry in entries if entry.name in wanted]
    mirror_dir = _resolve_mirror(mirror)
    retry = retry or RetryPolicy()
    unreachable: dict[str, str] = {}  # host -> first dataset it failed for: not tried again in this call
    results = []
    for entry in entries:
        result, error = _fetch_reporting(entry, mirror_dir, cache_dir, progress, retry, unreachable)
        results.append(result)
        if isinstance(error, NetworkError) and entry.url:
            unreachable.setdefault(urlparse(entry.url).netloc, entry.name)
    return results


def _fetch_reporting(entry: DatasetEntry, mirror: Path | None, cache_dir: Path | None, progress: bool,
                     retry: RetryPolicy, unreachable: dict[str, str]) -> tuple[FetchResult, DataError | None]:
    """Fetch one entry; a :class:`DataError` becomes a failed (or, without a source, skipped) result."""
    try:
        path, source = _fetch(entry, mirror, cache_dir, progress, retry, unreachable)
    except DataError as err:
        status: Literal["failed", "skipped"] = "skipped" if isinstance(err, NoSourceError) else "failed"
        checked = False if isinstance(err, VerificationError) else None
        return FetchResult(entry.name, None, entry.size, checked, entry.licence, None, status, str(err)), err
    return FetchResult(entry.name, path, entry.size, True, entry.licence, source, "ok"), None


def _entry(name_or_entry: str | DatasetEntry, manifest: Manifest | None) -> DatasetEntry:
    if isinstance(name_or_entry, DatasetEntry):
        return name_or_entry
    return (manifest or load_manifest())[name_or_entry]


def _resolve_mirror(mirror: Path | None) -> Path | None:
    value = mirror if mirror is not None else os.environ.get(ENV_DATA_MIRROR) or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        origin = "--mirror" if mirror is not None else f"${ENV_DATA_MIRROR}"
        raise DataError(f"data mirror {str(path)!r} (from {origin}) is not a folder. Point it at a copy of the "
                        f"manifest's files (e.g. ../shared/data), or unset it to download from the sources.")
    return path


def _fetch(entry: DatasetEntry, mirror: Path | None, cache_dir: Path | None, progress: bool, retry: RetryPolicy,
           unreachable: dict[str, str] | None = None) -> tuple[Path, Source]:
    """Fetch one entry; ``unreachable`` (host -> dataset) lists hosts not to try again."""
    if mirror is not None:
        return _from_mirror(entry, mirror), "mirror"
    cache_root = Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser()
    target = cache_root / entry.mirror_path
    if target.is_file():
        if file_sha256(target) == entry.sha256:
            return target, "cache"
        target.unlink()  # damaged or outdated: the cache keeps only verified files
    if entry.url is None:
        made_from = f" made from {', '.join(entry.derived_from)}" if entry.derived_from else ""
        raise NoSourceError(f"dataset {entry.name!r} has no upstream URL: a {entry.role} file{made_from} (see its "
                            f"notes in data_manifest/datasets.yaml). Only a data mirror has it: pass --mirror DIR "
                            f"or set ${ENV_DATA_MIRROR}.")
    host = urlparse(entry.url).netloc
    if unreachable and host in unreachable:
        raise NetworkError(f"dataset {entry.name!r}: not tried, {host} was unreachable for "
                           f"{unreachable[host]!r} (see its error). Run again later, or use a local mirror: "
                           f"--mirror DIR or ${ENV_DATA_MIRROR}.")
    if entry.member is None:
        _download(entry.url, target, entry.sha256, entry.size, entry.name, entry.format, progress, retry)
    else:
        archive = cache_root / ARCHIVE_DIR / _container_name(entry)  # shared by all its members
        if not _usable_container(archive, entry.archive_sha256):
            _download(entry.url, archive, entry.archive_sha256, None, entry.name, "zip", progress, retry)
        _extract_member(entry, archive, target)
    return target, "download"


def _from_mirror(entry: DatasetEntry, mirror: Path) -> Path:
    path = mirror / entry.mirror_path
    if not path.is_file():
        raise MirrorFileMissingError(
            f"dataset {entry.name!r}: {path} is missing from the data mirror {mirror} (expected <mirror>/"
            f"{entry.mirror_path}; the mirror comes from --mirror or ${ENV_DATA_MIRROR}). Copy the file there "
            f"(sha256 {entry.sha256}" + (f", source {entry.url}" if entry.url else "") + "), point the mirror at a "
            "complete copy, or drop the mirror to download from the sources.")
    _verify(path, entry.sha256, entry.name, entry.format, _mirror_way_out(entry), size=entry.size)
    return path


def _download(url: str, target: Path, sha256: str | None, size: int | None, label: str, fmt: str, progress: bool,
              retry: RetryPolicy) -> None:
    """Download ``url`` to ``target`` (the one engine), verified against ``sha256`` and ``size`` (bytes) if given."""
    way_out = (f"The download was deleted, nothing was cached. Retry (gbhet fetch --only {label}); if it fails the "
               f"same way, the source changed: check {url} and, if the change is intended, update sha256/size of "
               f"{label!r} in data_manifest/datasets.yaml.")
    check = None if sha256 is None else (
        lambda path: _verify(path, sha256, label, fmt, way_out, size=size, shown=target))
    ResumableDownloader(part=partial_path(target), label=label, retry=retry, progress=progress, check=check,
                        total=size)(url, str(target))


def _container_name(entry: DatasetEntry) -> str:
    """The cache file name of an entry's container: the last part of its URL's path, if a plain name."""
    name = Path(urlparse(entry.url or "").path).name
    if problem := unsafe_name(name):
        raise DataError(f"dataset {entry.name!r}: the container URL {entry.url} does not end in a usable file name "
                        f"({name!r}: {problem}). Point 'url' in data_manifest/datasets.yaml at the file itself.")
    return name


def _usable_container(archive: Path, sha256: str | None) -> bool:
    """True when the cached container ``archive`` can serve its members: present, with ``sha256`` if pinned.

    A container that fails its pin is deleted; one without a pin is checked through its members' checksums.
    """
    if not archive.is_file():
        return False
    if sha256 is None or file_sha256(archive) == sha256:
        return True
    archive.unlink()
    return False


def _extract_member(entry: DatasetEntry, archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as container, container.open(entry.member or "") as src, \
                atomic_path(target) as tmp, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    except KeyError:
        raise DataError(f"dataset {entry.name!r}: {entry.member!r} is not inside {archive} (downloaded from "
                        f"{entry.url}). Fix 'member' in data_manifest/datasets.yaml.") from None
    except zipfile.BadZipFile as err:
        archive.unlink(missing_ok=True)
        raise DataError(f"dataset {entry.name!r}: {archive} (from {entry.url}) is not a zip/wheel ({err}); it was "
                        "deleted. Retry; set 'archive_sha256' in the manifest so a bad container is caught.") from err
    try:
        _verify(target, entry.sha256, entry.name, entry.format,
                f"The extracted file was deleted. The container {entry.url} no longer holds the manifest's bytes: "
                f"check it and, if intended, update sha256/size of {entry.name!r} in data_manifest/datasets.yaml.",
                size=entry.size)
    except VerificationError:
        target.unlink(missing_ok=True)
        raise


@dataclasses.dataclass
class ResumableDownloader:
    """A downloader in pooch's interface (``downloader(url, output_file, pooch)``) over the data layer's engine.

    It streams into a stable ``part`` file and resumes it (HTTP Range); connection errors, timeouts, 429 and 5xx
    answers are retried with exponential back-off (:class:`RetryPolicy`); 404 and other 4xx are final. ``check``
    (e.g. a checksum test) runs on the complete file; if it raises, the file is deleted. Errors are this module's
    (:class:`RemoteNotFoundError`, :class:`DownloadError`, :class:`NetworkError`), naming the dataset.

    Attributes:
        part: where the partial download lives between attempts and runs.
        label: the dataset name, for messages and the progress bar.
        retry: the retry policy.
        progress: show a tqdm progress bar on stderr.
        check: called with the path of the complete download; raises to reject it.
        total: the expected size in bytes, for the progress bar only (None: unknown).
    """

    part: Path
    label: str
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    progress: bool = False
    check: Callable[[Path], None] | None = None
    total: int | None = None

    def __call__(self, url: str, output_file: str, pooch_: object = None, check_only: bool = False) -> None:
        """Download ``url`` into ``output_file`` (the pooch interface; ``check_only`` is not supported)."""
        if check_only:
            raise NotImplementedError("ResumableDownloader only downloads; it cannot check availability")
        start = self.part.stat().st_size if self.part.exists() else 0
        bar = _progress_bar(self.label, self.total, start) if self.progress else None
        try:
            download(url, Path(output_file), retry=self.retry, check=self.check, part=self.part,
                     on_bytes=None if bar is None else bar.update)
        except HttpStatusError as err:
            raise self._refused(err) from None
        except RetriesExhaustedError as err:
            raise self._unreachable(err) from None
        finally:
            if bar is not None:
                bar.close()

    def _refused(self, err: HttpStatusError) -> DataError:
        if err.status == 404:
            return RemoteNotFoundError(
                f"dataset {self.label!r}: {err.url} answered 404 Not Found. The pinned source no longer serves the "
                "file (repository, commit or release removed?). Use a data mirror (--mirror DIR or "
                f"${ENV_DATA_MIRROR}), or point 'url' in data_manifest/datasets.yaml at a source of the same bytes.")
        return DownloadError(f"dataset {self.label!r}: {err.url} answered HTTP {err.status} {err.reason}. Check the "
                             "URL in data_manifest/datasets.yaml, or use a data mirror (--mirror DIR).")

    def _unreachable(self, err: RetriesExhaustedError) -> NetworkError:
        host = urlparse(err.url).netloc
        resume = f" (the {err.kept:,} bytes in {err.part} are kept and resumed)" if err.kept else ""
        return NetworkError(f"dataset {self.label!r}: could not download {err.url} after {err.attempts} "
                            f"attempt(s) (last error: {err.last}). No network, or {host} is down? Run again "
                            f"later{resume}, or use a local mirror: --mirror DIR or ${ENV_DATA_MIRROR} "
                            "(e.g. ../shared/data).")


def _verify(path: Path, sha256: str, label: str, fmt: str, way_out: str, *, size: int | None = None,
            shown: Path | None = None) -> None:
    """Raise a :class:`VerificationError` naming the problem unless ``path`` has the expected sha256."""
    actual = file_sha256(path)
    if actual == sha256:
        return
    shown = shown or path
    nbytes = path.stat().st_size
    sizes = f"{nbytes:,} bytes" + (f", the manifest says {size:,}" if size is not None and size != nbytes else "")
    facts = f"expected sha256 {sha256}, got {actual} ({sizes}). {way_out}"
    head = _head(path)
    if fmt != "html" and head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        raise HtmlPageError(f"dataset {label!r}: {shown} is an HTML page, not the {fmt} file (a login, error or "
                            f"rate-limit page served instead of the data?): {facts}")
    if head.startswith(b"version https://git-lfs"):
        raise LfsPointerError(f"dataset {label!r}: {shown} is a Git LFS pointer, not the {fmt} file (fetch it "
                              f"from the LFS media URL): {facts}")
    if fmt.endswith("gz"):
        problem = _gzip_problem(path)
        if problem:
            raise CorruptGzipError(f"dataset {label!r}: {shown} is a truncated/corrupt gzip ({problem}): {facts}")
    raise ChecksumMismatchError(f"dataset {label!r}: checksum mismatch for {shown}: {facts}")


def _mirror_way_out(entry: DatasetEntry) -> str:
    source = f"download {entry.url}" if entry.url else "get it from the data curator"
    return (f"gbhet does not change a mirror: delete or replace this file in the mirror ({source}), or point "
            f"--mirror/${ENV_DATA_MIRROR} at a good copy. If the upstream file changed on purpose, check it and "
            f"update sha256/size of {entry.name!r} in data_manifest/datasets.yaml.")


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(_SNIFF)


def _gzip_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete gzip stream, or ``None`` if it decompresses to the end."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(_CHUNK):
                pass
    except EOFError as err:
        return f"ends early: {err}"
    except (gzip.BadGzipFile, zlib.error, OSError) as err:
        return str(err)
    return None


def _progress_bar(label: str, total: int | None, start: int) -> tqdm:
    from tqdm import tqdm  # noqa: F811 (imported here: only downloads with a bar need it)

    return tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label)
