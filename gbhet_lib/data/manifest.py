"""The data manifest: every dataset of the study with its source, checksum, size, licence and citation.

``data_manifest/datasets.yaml`` is the one table of datasets; :func:`load_manifest` reads and validates it so
that a typo in the manifest stops with a message that names the entry and the field, not later in a download.
Schema and how to add an entry: ``data_manifest/README.md``.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Literal, Mapping

import yaml

from ..config import PROFILES
from ..errors import GbhetError

ROLES: tuple[str, ...] = ("upstream", "derived")
Role = Literal["upstream", "derived"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_]*")
_REQUIRED = ("name", "description", "url", "sha256", "size", "format", "licence", "citation", "profiles",
             "mirror_path", "role")
_OPTIONAL = ("member", "archive_sha256", "derived_from", "notes")


class DataError(GbhetError, ValueError):
    """A dataset cannot be found, read or verified; the message names it and says how to fix it."""


class ManifestError(DataError):
    """The manifest itself is invalid; the message names the entry and the field."""


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the manifest.

    Attributes:
        name: unique identifier (lower case, digits, ``_``), e.g. ``string_v12_ppi_rda``.
        description: what the file holds (content, shape).
        url: pinned source (commit-addressed raw GitHub URL or a versioned release/PyPI file), or ``None`` where
            no single upstream file exists (``derived`` files, tables transcribed from papers).
        sha256: SHA-256 (64 lower-case hex digits) of the dataset's bytes, i.e. of ``member`` when it is set.
        size: size of those bytes, in bytes.
        format: file format, e.g. ``rda``, ``tsv.gz``, ``gmt``, ``svs``; ``*.gz`` formats are gzip streams.
        licence: licence of the file as obtained (SPDX-like, with notes on the underlying data).
        citation: what to cite when using it.
        profiles: the study profiles that need it (subset of ``demo reference full stemri``).
        mirror_path: POSIX path of the file relative to a mirror directory (and to the download cache).
        role: ``upstream`` (the bytes as served at ``url``) or ``derived`` (converted once by the data curator; in
            a mirror only).
        member: path of the file inside the zip/wheel at ``url``, when ``url`` is a container.
        archive_sha256: SHA-256 of the container at ``url`` (only with ``member``).
        derived_from: names of the upstream entries a ``derived`` entry was made from.
        notes: provenance details, caveats.
    """

    name: str
    description: str
    url: str | None
    sha256: str
    size: int
    format: str
    licence: str
    citation: str
    profiles: tuple[str, ...]
    mirror_path: str
    role: Role
    member: str | None = None
    archive_sha256: str | None = None
    derived_from: tuple[str, ...] = ()
    notes: str | None = None


@dataclasses.dataclass(frozen=True)
class Manifest:
    """All dataset entries, by name (in file order). ``manifest[name]`` raises :class:`DataError` for unknown
    names, listing the closest known ones."""

    entries: Mapping[str, DatasetEntry]
    path: Path | None = None

    def __getitem__(self, name: str) -> DatasetEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise DataError(_unknown_name_message(name, list(self.entries), self.path)) from None

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[DatasetEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def for_profile(self, profile: str) -> list[DatasetEntry]:
        """The entries a profile needs, in manifest order (empty for ``demo``, which is synthetic)."""
        if profile not in PROFILES:
            raise DataError(f"profile={profile!r} is not one of {', '.join(PROFILES)}.")
        return [entry for entry in self.entries.values() if profile in entry.profiles]


def default_manifest_path() -> Path:
    """``data_manifest/datasets.yaml`` of the repository this package lives in."""
    import gbhet_lib

    return Path(gbhet_lib.__file__).resolve().parents[1] / "data_manifest" / "datasets.yaml"


def load_manifest(path: Path | None = None) -> Manifest:
    """Read and validate a manifest (default: :func:`default_manifest_path`).

    Raises:
        ManifestError: the file is missing, not YAML, or an entry or field is invalid (the message names both).
    """
    path = Path(path) if path is not None else default_manifest_path()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"data manifest {path} not found. Run from a checkout of the gbhet repository, or pass "
                            "the path of a datasets.yaml.") from None
    except yaml.YAMLError as err:
        raise ManifestError(f"data manifest {path} is not valid YAML: {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("datasets"), list):
        raise ManifestError(f"data manifest {path}: expected a mapping with a 'datasets:' list of entries.")
    entries: dict[str, DatasetEntry] = {}
    for index, raw in enumerate(document["datasets"], start=1):
        entry = _parse_entry(raw, f"{path}: entry {index}")
        if entry.name in entries:
            raise ManifestError(f"{path}: entry {index} {entry.name!r}, field 'name': duplicate name (also entry "
                                f"{list(entries).index(entry.name) + 1}). Names must be unique.")
        entries[entry.name] = entry
    _check_references(entries, path)
    return Manifest(entries=entries, path=path)


def _parse_entry(raw: Any, where: str) -> DatasetEntry:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a mapping of fields, got {type(raw).__name__}.")
    name = raw.get("name")
    where = f"{where} {name!r}" if isinstance(name, str) else where

    def fail(field: str, problem: str) -> ManifestError:
        return ManifestError(f"{where}, field {field!r}: {problem}")

    missing = [f for f in _REQUIRED if f not in raw]
    if missing:
        raise fail(missing[0], f"missing (required fields: {', '.join(_REQUIRED)}).")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise fail(unknown[0], f"unknown field; allowed: {', '.join(_REQUIRED + _OPTIONAL)}.")
    for field in ("name", "description", "format", "licence", "citation", "mirror_path"):
        if not isinstance(raw[field], str) or not raw[field].strip():
            raise fail(field, f"must be a non-empty string, got {raw[field]!r}.")
    if not _NAME.fullmatch(raw["name"]):
        raise fail("name", "use lower-case letters, digits and '_' (e.g. string_v12_ppi_rda).")
    for field in ("sha256", "archive_sha256"):
        value = raw.get(field)
        if (field == "sha256" or value is not None) and not (isinstance(value, str) and _SHA256.fullmatch(value)):
            raise fail(field, f"must be 64 lower-case hex digits (sha256sum output), got {value!r}.")
    if isinstance(raw["size"], bool) or not isinstance(raw["size"], int) or raw["size"] <= 0:
        raise fail("size", f"must be an integer number of bytes > 0, got {raw['size']!r}.")
    if raw["role"] not in ROLES:
        raise fail("role", f"must be one of {', '.join(ROLES)}, got {raw['role']!r}.")
    profiles = raw["profiles"]
    if not isinstance(profiles, list) or not profiles or not all(isinstance(p, str) for p in profiles):
        raise fail("profiles", f"must be a non-empty list of profile names, got {profiles!r}.")
    bad = [p for p in profiles if p not in PROFILES]
    if bad:
        raise fail("profiles", f"unknown profile(s) {', '.join(map(repr, bad))}; known: {', '.join(PROFILES)}.")
    _check_url(raw, fail)
    _check_relative(raw["mirror_path"], fail)
    derived_from = raw.get("derived_from") or []
    if not isinstance(derived_from, list) or not all(isinstance(n, str) for n in derived_from):
        raise fail("derived_from", f"must be a list of entry names, got {derived_from!r}.")
    if derived_from and raw["role"] != "derived":
        raise fail("derived_from", "only a 'derived' entry is derived from others.")
    notes = raw.get("notes")
    if notes is not None and not isinstance(notes, str):
        raise fail("notes", f"must be a string, got {notes!r}.")
    return DatasetEntry(name=raw["name"], description=raw["description"], url=raw["url"], sha256=raw["sha256"],
                        size=raw["size"], format=raw["format"], licence=raw["licence"], citation=raw["citation"],
                        profiles=tuple(profiles), mirror_path=raw["mirror_path"], role=raw["role"],
                        member=raw.get("member"), archive_sha256=raw.get("archive_sha256"),
                        derived_from=tuple(derived_from), notes=notes)


def _check_url(raw: dict[str, Any], fail: Any) -> None:
    url, member = raw["url"], raw.get("member")
    if url is None:
        if raw["role"] == "upstream":
            raise fail("url", "an 'upstream' entry needs the pinned URL that serves its bytes.")
        if not raw.get("notes"):
            raise fail("notes", "an entry without url must say in notes where its bytes came from.")
    elif not (isinstance(url, str) and url.startswith(("https://", "http://"))):
        raise fail("url", f"must be an http(s) URL or null, got {url!r}.")
    elif raw["role"] == "derived":
        raise fail("url", "a 'derived' entry has no upstream URL (set url: null and name derived_from).")
    if member is not None and (url is None or not isinstance(member, str) or not member):
        raise fail("member", "must be a path inside the container at 'url' (and needs a url).")
    if raw.get("archive_sha256") is not None and member is None:
        raise fail("archive_sha256", "only an entry with a 'member' has a container checksum.")


def _check_relative(mirror_path: str, fail: Any) -> None:
    pure = PurePosixPath(mirror_path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in mirror_path:
        raise fail("mirror_path", f"must be a relative POSIX path inside the mirror, got {mirror_path!r}.")


def _check_references(entries: dict[str, DatasetEntry], path: Path) -> None:
    for index, entry in enumerate(entries.values(), start=1):
        for source in entry.derived_from:
            if source not in entries:
                raise ManifestError(f"{path}: entry {index} {entry.name!r}, field 'derived_from': "
                                    + _unknown_name_message(source, list(entries), None))


def _unknown_name_message(name: str, known: list[str], path: Path | None) -> str:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    where = f" in {path}" if path is not None else ""
    return f"no dataset named {name!r}{where}.{hint} ({len(known)} datasets are listed; see data_manifest/README.md.)"
