"""The data layer's one download engine: retries with back-off, resumable partial files, checksums.

The manifest fetcher (:mod:`.fetch`), the GDC client (:mod:`.gdc`) and the Zenodo client (:mod:`.zenodo`) all
download through :func:`download`, and the GDC client's API requests retry through :func:`send_with_retries`:

* a download streams into ``<dest>.part``; a later attempt (or a later run) resumes it with an HTTP
  ``Range: bytes=N-`` request; a server that ignores the range (200) restarts the file, one that answers with
  another range or refuses it (416) makes the partial file start over;
* connection errors, timeouts, transfers cut short (fewer bytes than ``Content-Length`` or ``expected_size``), HTTP
  429 and 5xx are retried with exponential back-off (:class:`RetryPolicy`); 404 and the other 4xx are final;
* the complete file is checked (a :class:`Checksum`, and/or a caller's ``check``) before it gets its final name;
  a file that fails is deleted, so a ``dest`` that exists was verified.

The engine raises its own :class:`TransferError` subclasses with the facts (URL, HTTP status, attempts, both
digests); each client turns them into its own errors, whose messages say what to do in its terms. Headers are
the caller's (a token among them): the engine never logs or repeats headers or response bodies, except the
first bytes of an error answer, which it hands to the caller in :attr:`HttpStatusError.excerpt`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import time
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable

import requests

from ..errors import GbhetError

__all__ = ["RetryPolicy", "Checksum", "TransferStats", "TransferError", "HttpStatusError", "RetriesExhaustedError",
           "SizeMismatchError", "DigestMismatchError", "download", "send_with_retries", "file_digest",
           "partial_path", "unsafe_name", "RETRY_STATUS"]

log = logging.getLogger(__name__)

#: HTTP answers worth another try: rate limiting and server errors
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_CHUNK = 1 << 20  # bytes hashed at a time
#: bytes read from the network at a time: a transfer cut mid-read loses that read's bytes, so keep it small
_NET_CHUNK = 1 << 16
_EXCERPT = 300  # bytes of an error answer handed to the caller


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How hard a request or download tries.

    Attributes:
        attempts: requests made at most, the first one included (>= 1).
        backoff_s: wait before the 2nd attempt, seconds; doubles each time.
        max_backoff_s: longest wait between attempts, seconds.
        connect_timeout_s: seconds to wait for a connection.
        read_timeout_s: seconds to wait for the next bytes of an answer.
    """

    attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError(f"invalid {self}: attempts must be >= 1 and waits >= 0")
        if not (self.connect_timeout_s > 0 and self.read_timeout_s > 0):
            raise ValueError(f"invalid {self}: timeouts must be > 0 seconds")

    def wait_s(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)

    @property
    def timeout(self) -> tuple[float, float]:
        """``(connect, read)`` timeouts in seconds, as requests takes them."""
        return self.connect_timeout_s, self.read_timeout_s


@dataclasses.dataclass(frozen=True)
class Checksum:
    """An expected digest: ``algorithm`` (a :mod:`hashlib` name such as ``md5`` or ``sha256``) and ``hexdigest``."""

    algorithm: str
    hexdigest: str

    def __post_init__(self) -> None:
        if self.algorithm not in hashlib.algorithms_available:
            raise ValueError(f"checksum algorithm {self.algorithm!r} is not known to hashlib; use md5 or sha256")
        object.__setattr__(self, "hexdigest", self.hexdigest.lower())

    @classmethod
    def parse(cls, text: str) -> Checksum:
        """``"md5:<hex>"``, ``"sha256:<hex>"`` (pooch's notation), or bare hex, taken as SHA-256."""
        algorithm, _, digest = text.strip().rpartition(":")
        if not re.fullmatch(r"[0-9a-fA-F]+", digest):
            raise ValueError(f"checksum {text!r} is not '<algorithm>:<hex digits>', e.g. 'md5:' + 32 hex digits")
        return cls(algorithm.lower() or "sha256", digest)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


@dataclasses.dataclass
class TransferStats:
    """What a download did, updated as it goes (also when it fails).

    Attributes:
        attempts: requests made for the file's bytes.
        bytes_transferred: bytes received over the network (resumed bytes already on disk are not counted).
    """

    attempts: int = 0
    bytes_transferred: int = 0


class TransferError(GbhetError):
    """A download or request failed; the clients turn it into their own errors (``url``: what was asked)."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class HttpStatusError(TransferError):
    """A final HTTP error answer (404 or another 4xx, or a 429/5xx on the last attempt of a request).

    Attributes:
        status, reason: the HTTP status code and reason phrase.
        excerpt: the first bytes of the answer's body, decoded (it may echo what was sent: redact it).
    """

    def __init__(self, url: str, status: int, reason: str, excerpt: str) -> None:
        super().__init__(f"{url} answered HTTP {status} {reason}", url)
        self.status, self.reason, self.excerpt = status, reason, excerpt


class RetriesExhaustedError(TransferError):
    """Every attempt failed with a transient error.

    Attributes:
        attempts: the attempts made; last: the last error, in one line; part: the partial file (download) or None.
        kept: bytes of ``part`` kept on disk, to be resumed by the next run.
    """

    def __init__(self, url: str, attempts: int, last: str, part: Path | None = None) -> None:
        self.attempts, self.last, self.part = attempts, last, part
        self.kept = part.stat().st_size if part is not None and part.exists() else 0
        super().__init__(f"{url} failed {attempts} time(s), last with {last}", url)


class SizeMismatchError(TransferError):
    """The server sent more bytes than ``expected_size``; the partial file was deleted."""

    def __init__(self, url: str, got: int, expected: int) -> None:
        super().__init__(f"{url} sent {got:,} bytes, {expected:,} were expected", url)
        self.got, self.expected = got, expected


class DigestMismatchError(TransferError):
    """The complete download's digest is not the expected one; the download was deleted.

    Attributes:
        expected: the :class:`Checksum` asked for; actual: the download's hex digest, same algorithm.
    """

    def __init__(self, url: str, expected: Checksum, actual: str) -> None:
        super().__init__(f"{url}: {expected.algorithm} {actual} differs from the expected {expected.hexdigest}", url)
        self.expected, self.actual = expected, actual


class _Retryable(GbhetError):
    """A transient failure inside :func:`download` (5xx, cut transfer, stale partial file); never leaves here."""


def partial_path(dest: Path) -> Path:
    """Where :func:`download` keeps the bytes of ``dest`` until they are complete and verified."""
    return dest.with_name(dest.name + ".part")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (read 1 MiB at a time)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def unsafe_name(name: Any) -> str | None:
    """Why ``name`` (from a server or a manifest) cannot be used as a plain file name in a folder, or ``None``.

    Refused: empty names, ``.`` and ``..``, any path separator (``/`` or ``\\``), absolute or drive paths, NUL
    and the other control characters.
    """
    if not isinstance(name, str) or not name.strip():
        return "it is empty"
    if name in (".", ".."):
        return "it names a folder ('.' or '..')"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        return "it is an absolute or drive path"
    if "/" in name or "\\" in name:
        return "it contains a path separator (it would leave the file's folder)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it contains NUL or another control character"
    return None


def download(url: str, dest: Path, *, retry: RetryPolicy | None = None, session: requests.Session | None = None,
             headers: dict[str, str] | None = None, expected_size: int | None = None,
             checksum: Checksum | None = None, check: Callable[[Path], None] | None = None,
             on_bytes: Callable[[int], None] | None = None, stats: TransferStats | None = None,
             part: Path | None = None) -> TransferStats:
    """Download ``url`` to ``dest``, resuming ``part``, retrying transient failures, verifying the result.

    Args:
        url: what to download.
        dest: the final file; written (renamed from ``part``) only once the bytes are complete and verified.
        retry: attempts, back-off and timeouts; default :class:`RetryPolicy`.
        session: the requests session to use (its headers, e.g. a token, and its redirect rules); default a
            plain request.
        headers: extra request headers.
        expected_size: the file's size in bytes when known for sure: a shorter answer is resumed, a longer one is
            a :class:`SizeMismatchError`, and a ``part`` already that long is not downloaded again.
        checksum: the digest the complete file must have (:class:`DigestMismatchError` otherwise).
        check: called with the complete ``part`` after the checksum; raises to reject it.
        on_bytes: called with the size of every chunk received (a progress bar's ``update``).
        stats: counters to update (kept by the caller even when the download fails); default a new one.
        part: the partial file; default :func:`partial_path` of ``dest``.

    Returns:
        the transfer's :class:`TransferStats`.

    Raises:
        HttpStatusError: 404 or another final 4xx. RetriesExhaustedError: every attempt failed (``part`` is kept
        for the next run). SizeMismatchError, DigestMismatchError, or what ``check`` raises: the download was
        deleted.
    """
    retry = retry or RetryPolicy()
    stats = stats if stats is not None else TransferStats()
    part = part or partial_path(dest)
    part.parent.mkdir(parents=True, exist_ok=True)
    _fill(url, part, retry, session, headers or {}, expected_size, on_bytes, stats)
    try:
        if checksum is not None:
            actual = file_digest(part, checksum.algorithm)
            if actual != checksum.hexdigest:
                raise DigestMismatchError(url, checksum, actual)
        if check is not None:
            check(part)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return stats


def send_with_retries(session: requests.Session, method: str, url: str, retry: RetryPolicy,
                      **kwargs: Any) -> requests.Response:
    """One API request, retried after connection errors, timeouts, HTTP 429 and 5xx (with back-off).

    Returns the first answer that is not retryable (the caller checks its status).

    Raises:
        RetriesExhaustedError: every attempt failed.
    """
    problem = "none"
    for attempt in range(1, retry.attempts + 1):
        try:
            response = session.request(method, url, timeout=retry.timeout, **kwargs)
        except _TRANSIENT as err:
            problem = _one_line(err)
        else:
            if response.status_code not in RETRY_STATUS:
                return response
            problem = f"HTTP {response.status_code}"
            response.close()
        _wait_before_retry(f"{method} {url}", problem, attempt, retry)
    raise RetriesExhaustedError(url, retry.attempts, problem)


def _fill(url: str, part: Path, retry: RetryPolicy, session: requests.Session | None, headers: dict[str, str],
          expected_size: int | None, on_bytes: Callable[[int], None] | None, stats: TransferStats) -> None:
    """Bring ``part`` to the complete file, attempt after attempt."""
    problem = "none"
    for attempt in range(1, retry.attempts + 1):
        have = _usable_part_size(part, expected_size)
        if expected_size is not None and have == expected_size:
            part.touch()  # an empty file has no bytes to fetch
            return
        stats.attempts += 1
        try:
            _attempt(url, part, have, retry, session, headers, on_bytes, stats)
            if expected_size is None:
                return
            size = part.stat().st_size
            if size > expected_size:
                part.unlink()
                raise SizeMismatchError(url, size, expected_size)
            if size == expected_size:
                return
            raise _Retryable(f"the answer ended after {size:,} of {expected_size:,} bytes")
        except (_Retryable, *_TRANSIENT) as err:
            problem = _one_line(err)
            _wait_before_retry(f"GET {url}", problem, attempt, retry)
    raise RetriesExhaustedError(url, retry.attempts, problem, part)


def _wait_before_retry(what: str, problem: str, attempt: int, retry: RetryPolicy) -> None:
    """Log the failed attempt and sleep before the next one (nothing after the last)."""
    if attempt == retry.attempts:
        return
    delay = retry.wait_s(attempt)
    log.warning("%s: %s; retry %d/%d in %.2f s", what, problem, attempt, retry.attempts - 1, delay)
    time.sleep(delay)


def _usable_part_size(part: Path, expected_size: int | None) -> int:
    """Bytes of ``part`` to resume from; a part longer than the file is deleted (start over)."""
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()
        return 0
    return have


def _attempt(url: str, part: Path, have: int, retry: RetryPolicy, session: requests.Session | None,
             headers: dict[str, str], on_bytes: Callable[[int], None] | None, stats: TransferStats) -> None:
    """One GET from byte ``have`` on, appended to ``part``; a cut transfer is a :class:`_Retryable`."""
    request_headers = {"Accept-Encoding": "identity", **headers}  # the bytes as stored: Range offsets and digests
    if have:
        request_headers["Range"] = f"bytes={have}-"
    get = session.get if session is not None else requests.get
    with get(url, headers=request_headers, stream=True, timeout=retry.timeout) as response:
        start = _resume_offset(response, url, part, have)
        expected = _content_length(response)
        written = _stream(response, part, start, on_bytes, stats)
    if expected is not None and written != expected:
        raise _Retryable(f"transfer ended after {written:,} of {expected:,} bytes")


def _resume_offset(response: requests.Response, url: str, part: Path, have: int) -> int:
    """Where this answer's body goes in ``part``: ``have`` (resumed) or 0; raise on errors."""
    status = response.status_code
    if status == 416 and have:  # the partial file does not fit the remote file: start again
        part.unlink(missing_ok=True)
        raise _Retryable(f"{url} refused to resume at byte {have} (HTTP 416)")
    if status in RETRY_STATUS:
        raise _Retryable(f"HTTP {status} {response.reason}")
    if status >= 400:
        excerpt = next(response.iter_content(_EXCERPT), b"").decode("utf-8", errors="replace").strip()
        raise HttpStatusError(url, status, response.reason or "", excerpt)
    if status == 206:
        if have and response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            return have
        part.unlink(missing_ok=True)
        raise _Retryable(f"{url} sent an unexpected range {response.headers.get('Content-Range')!r}")
    return 0  # a full answer (200): the server ignored the Range or none was asked


def _stream(response: requests.Response, part: Path, start: int, on_bytes: Callable[[int], None] | None,
            stats: TransferStats) -> int:
    """Write the body to ``part`` from byte ``start`` on; return the bytes written."""
    written = 0
    with open(part, "ab" if start else "wb") as out:
        for chunk in response.iter_content(chunk_size=_NET_CHUNK):
            out.write(chunk)
            written += len(chunk)
            stats.bytes_transferred += len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return written


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _one_line(err: BaseException) -> str:
    """``Type: message`` in one line of at most 300 characters (our own transient errors without their type)."""
    text = " ".join((str(err) if isinstance(err, _Retryable) else f"{type(err).__name__}: {err}").split())
    return text if len(text) <= 300 else text[:297] + "..."
