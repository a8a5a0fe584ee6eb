"""Safe, atomic and idempotent extraction of ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` archives.

A downloaded archive is untrusted input: a member named ``../x`` or ``/etc/x``, or a link that points out of
the destination, could write anywhere ("tar slip", CVE-2007-4559). Every member is checked *before* anything
is written, and a refusal names the member and the archive. Tar extraction also runs under the PEP 706
``filter="data"`` (Python >= 3.10.12 / 3.11.4), a second line of defence that resolves links against the
real file system (it catches chains such as a link inside a linked folder) and drops set-uid bits.

Atomicity: members go into a hidden temporary folder next to ``dest`` (same file system); a marker holding
the archive's SHA-256 is written last; then the folder is renamed to ``dest``. An interrupted extraction
leaves at most a hidden ``.<dest>.partial-*`` folder, never a ``dest`` that looks complete. A second call
with the same archive finds the marker and skips the work.
"""
from __future__ import annotations

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

ArchiveFormat = Literal["tar", "zip"]


class ArchiveError(GbhetError, ValueError):
    """An archive cannot be extracted: unsupported format, corrupt file, or a destination conflict."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would be written outside the destination, or is a special file."""


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


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Extract ``archive`` into the folder ``dest`` safely and atomically; return the extracted files.

    ``dest`` receives the archive's members (``dest/<member path>``). It must not exist, or must hold a
    previous extraction made by this function (its :data:`MARKER`): the same archive (same SHA-256) is
    skipped, a different one replaces it. Returns the regular files and links under ``dest`` (sorted,
    the marker excluded).

    Raises:
        UnsafeArchiveError: a member has an absolute path or a ``..`` component, is a link pointing
            outside ``dest``, or is a device file / FIFO. Nothing is extracted.
        ArchiveError: unsupported suffix, missing or corrupt archive, or ``dest`` exists and was not
            made by this function.
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_format(archive)
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
        _extract_tar(archive, tmp) if kind == "tar" else _extract_zip(archive, tmp)
        write_json_atomic(tmp / MARKER, {"archive": archive.name, "sha256": digest, "format": kind})
        _publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _listing(dest)


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


def _extract_tar(archive: Path, into: Path) -> None:
    if not hasattr(tarfile, "data_filter"):
        raise ArchiveError("this Python lacks tar extraction filters (PEP 706); use Python >= 3.10.12, "
                           ">= 3.11.4 or >= 3.12 to extract downloaded archives.")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
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


def _extract_zip(archive: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if problem := _zip_member_problem(info):
                    raise _refuse(archive, info.filename, problem)
            zf.extractall(into)
    except zipfile.BadZipFile as err:
        raise ArchiveError(f"{archive}: not a readable zip archive ({err}). "
                           "The download may be truncated: delete it and download it again.") from err
