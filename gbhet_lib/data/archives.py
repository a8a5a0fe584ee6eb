"""Safe, atomic and idempotent extraction of ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` archives.

A downloaded archive is untrusted input: a member named ``../x`` or ``/etc/x``, or a link that points out of
the destination, could write anywhere ("tar slip", CVE-2007-4559). Every member is checked *before* anything
is written, and a refusal names the member and the archive. Tar extraction also runs under the PEP 706
``filter="data"`` (Python >= 3.10.12 / 3.11.4), a second line of defence that resolves links against the
real file system (it catches chains such as a link inside a linked folder) and drops set-uid bits.

Size: an archive may also be a "bomb", small on disk but huge (or with millions of members) once extracted.
Before anything is written, the member count and the sizes the archive declares are checked against
``max_members`` and ``max_bytes``. Those sizes bind: a tar header gives its member's exact size, and zipfile
stops a member at its declared size (a zip that understates one fails its CRC check). The defaults are generous
(:data:`MAX_BYTES`, :data:`MAX_MEMBERS`, far above the authors' released data); pass larger ones for an archive
you trust.

Atomicity: members go into a hidden temporary folder next to ``dest`` (same file system); a marker holding
the archive's SHA-256 is written last; then the folder is renamed to ``dest``. An interrupted extraction
leaves at most a hidden ``.<dest>.partial-*`` folder, never a ``dest`` that looks complete. A second call
with the same archive finds the marker and skips the work.
"""
from __future__ import annotations

import dataclasses
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PureWindowsPath
from typing import Literal

from ..errors import GbhetError
from ..io import file_sha256, read_json, write_json_atomic

#: written into ``dest`` when an extraction completes: ``{"archive", "sha256", "format"}``
MARKER = ".extracted.json"
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar", ".zip")

#: default limit on the bytes an archive may extract to (1 TiB)
MAX_BYTES = 1 << 40
#: default limit on the number of members (files, folders, links) of an archive
MAX_MEMBERS = 5_000_000

ArchiveFormat = Literal["tar", "zip"]


class ArchiveError(GbhetError, ValueError):
    """An archive cannot be extracted: unsupported format, corrupt file, or a destination conflict."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would be written outside the destination or is a special file, or the archive holds more
    members or bytes than the extraction limits allow."""


def is_archive(name: str | os.PathLike[str]) -> bool:
    """True when the file name ends in one of :data:`ARCHIVE_SUFFIXES` (case-insensitive)."""
    return str(name).lower().endswith(ARCHIVE_SUFFIXES)


def strip_archive_suffix(name: str) -> str:
    """``"wsi.tar.gz"`` -> ``"wsi"``; a name without an archive suffix is returned unchanged."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def archive_format(archive: str | os.PathLike[str]) -> ArchiveFormat:
    """``"tar"`` or ``"zip"`` from the file name; anything else is an :class:`ArchiveError`."""
    name = Path(archive).name
    if not is_archive(name):
        raise ArchiveError(f"{archive}: not a supported archive (the name must end in "
                           f"{', '.join(ARCHIVE_SUFFIXES)}).")
    return "zip" if name.lower().endswith(".zip") else "tar"


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES,
                 max_members: int = MAX_MEMBERS) -> list[Path]:
    """Extract ``archive`` into the folder ``dest`` safely and atomically; return the extracted files.

    ``dest`` receives the archive's members (``dest/<member path>``). It must not exist, or must hold a
    previous extraction made by this function (its :data:`MARKER`): the same archive (same SHA-256) is
    skipped, a different one replaces it. Returns the regular files and links under ``dest`` (sorted,
    the marker excluded).

    Args:
        archive: a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` file.
        dest: the folder to extract into.
        max_bytes: the most bytes the members may hold once extracted (default :data:`MAX_BYTES`, 1 TiB).
        max_members: the most members (files, folders, links) the archive may hold (default :data:`MAX_MEMBERS`).

    Raises:
        UnsafeArchiveError: a member has an absolute path or a ``..`` component, is a link pointing
            outside ``dest``, or is a device file / FIFO; or the archive exceeds ``max_members`` or
            ``max_bytes``. Nothing is extracted.
        ArchiveError: unsupported suffix, missing or corrupt archive, or ``dest`` exists and was not
            made by this function.
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_format(archive)
    limits = _Limits(archive, max_bytes, max_members)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: no such archive file.")
    digest = file_sha256(archive)
    previous = _completed_extraction(dest)
    if previous is not None and previous.get("sha256") == digest:
        return _listing(dest)
    if dest.exists() and previous is None:
        raise ArchiveError(f"{dest} exists but holds no completed extraction ({MARKER} is missing), so "
                           f"{archive.name} will not overwrite it. Move it away or choose another folder.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        _extract_tar(archive, tmp, limits) if kind == "tar" else _extract_zip(archive, tmp, limits)
        write_json_atomic(tmp / MARKER, {"archive": archive.name, "sha256": digest, "format": kind})
        _publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _listing(dest)


@dataclasses.dataclass(frozen=True)
class _Limits:
    """The extraction limits of one :func:`safe_extract` call, and the errors that name them."""

    archive: Path
    max_bytes: int
    max_members: int

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_members"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArchiveError(f"{name}={value!r}: the extraction limit must be a whole number >= 1.")

    def check_members(self, count: int) -> None:
        """Raise when ``count`` members exceed ``max_members``."""
        if count > self.max_members:
            raise self._exceeded(f"more than {self.max_members:,} members", "max_members")

    def check_bytes(self, total: int) -> None:
        """Raise when members of ``total`` bytes (their sizes as the archive declares them) exceed ``max_bytes``."""
        if total > self.max_bytes:
            raise self._exceeded(f"members of more than {self.max_bytes:,} bytes ({_gib(self.max_bytes)}) once "
                                 "extracted", "max_bytes")

    def _exceeded(self, what: str, limit: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"refusing to extract {self.archive}: it holds {what}, over the limit {limit}. Nothing was extracted. An "
            f"archive this large is damaged or an archive bomb; if you trust it, raise the limit: "
            f"safe_extract(..., {limit}=N) (fetch_record_file: extract_{limit}=N).")


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"


def _completed_extraction(dest: Path) -> dict[str, str] | None:
    marker = dest / MARKER
    if not marker.is_file():
        return None
    try:
        return read_json(marker)
    except ValueError:
        return {}  # a damaged marker: treat as a foreign extraction of some archive, to be replaced


def _publish(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``; an older extraction at ``dest`` is moved aside first, then deleted."""
    if not dest.exists():
        os.rename(tmp, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    os.rename(dest, old / dest.name)
    os.rename(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def _listing(dest: Path) -> list[Path]:
    files = [Path(top) / name
             for top, dirs, names in os.walk(dest)
             for name in names + [d for d in dirs if os.path.islink(os.path.join(top, d))]]
    return sorted(p for p in files if p != dest / MARKER)


def _refuse(archive: Path, member: str, reason: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"refusing to extract {archive}: member {member!r} {reason}. Nothing was "
                              "extracted; the archive is damaged or was not made for this study. "
                              "Download it again from its source.")


def _name_problem(name: str) -> str | None:
    """Why a member name is unsafe, or None. Both ``/`` and ``\\`` count as separators."""
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "has an absolute path"
    parts = re.split(r"[\\/]+", name)
    if ".." in parts:
        return "has a '..' path component (it would be written outside the destination)"
    if [p for p in parts if p not in ("", ".")] == [MARKER]:
        return f"uses the name {MARKER!r}, reserved for the extraction marker"
    return None


def _escapes(relative: str) -> bool:
    """True when a ``/``-separated path, taken from the destination root, leaves it."""
    normal = posixpath.normpath(relative)
    return normal == ".." or normal.startswith("../")


def _tar_member_problem(member: tarfile.TarInfo) -> str | None:
    if problem := _name_problem(member.name):
        return problem
    if member.isdev():
        return "is a device file or FIFO"
    if member.issym():
        target = posixpath.join(posixpath.dirname(member.name), member.linkname)
        if _name_problem(member.linkname) == "has an absolute path" or _escapes(target):
            return f"is a symbolic link to {member.linkname!r}, outside the destination"
    if member.islnk() and (_name_problem(member.linkname) == "has an absolute path"
                           or _escapes(member.linkname)):
        return f"is a hard link to {member.linkname!r}, outside the destination"
    return None


def _tar_members(tar: tarfile.TarFile, limits: _Limits) -> list[tarfile.TarInfo]:
    """The members of ``tar``, read one header at a time so that a huge count stops early; sizes checked."""
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:
        members.append(member)
        limits.check_members(len(members))
        total += member.size if member.isreg() else 0
        limits.check_bytes(total)
    return members


def _extract_tar(archive: Path, into: Path, limits: _Limits) -> None:
    if not hasattr(tarfile, "data_filter"):
        raise ArchiveError("this Python lacks tar extraction filters (PEP 706); use Python >= 3.10.12, "
                           ">= 3.11.4 or >= 3.12 to extract downloaded archives.")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _tar_members(tar, limits)  # a tar header states its member's exact size
            for member in members:
                if problem := _tar_member_problem(member):
                    raise _refuse(archive, member.name, problem)
            try:
                tar.extractall(into, members=members, filter="data")
            except tarfile.FilterError as err:  # what the lexical checks above cannot see (link chains)
                raise _refuse(archive, err.tarinfo.name, f"was rejected by the tar 'data' filter ({err})") from err
    except (tarfile.ReadError, EOFError) as err:
        raise ArchiveError(f"{archive}: not a readable tar archive ({err}). "
                           "The download may be truncated: delete it and download it again.") from err


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    if problem := _name_problem(info.filename):
        return problem
    mode = info.external_attr >> 16  # unix mode bits when the archive was made on unix, else 0
    if stat.S_ISLNK(mode):
        return "is a symbolic link (links in zip archives are not supported)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "is a device file or FIFO"
    return None


def _extract_zip(archive: Path, into: Path, limits: _Limits) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            limits.check_members(len(infos))
            limits.check_bytes(sum(info.file_size for info in infos))
            for info in infos:
                if problem := _zip_member_problem(info):
                    raise _refuse(archive, info.filename, problem)
            zf.extractall(into)
    except zipfile.BadZipFile as err:
        raise ArchiveError(f"{archive}: not a readable zip archive ({err}). "
                           "The download may be truncated: delete it and download it again.") from err

